#!/usr/bin/env bash
# test_sweep_files.sh: sweep files and experiments are refused whole, before anything runs, with a
# message naming the problem (exit 2); the ablation's dry-run counts are exact.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
DB=$TMP/r.db
cd "$TMP"

# the 2 x 6 x 3 ablation: 36 runs, 1/1/1/6/36/36 tasks
expect 0 "dry-run ablation" -- "$BIN" sweep "$SRC/sweeps/cgvlm-ablation.json" --dry-run
contains "dry-run header" "36 runs, 81 distinct tasks (216 stage executions without sharing)"
for pair in "world 1" "lm_pretrain 1" "vit_pretrain 1" "align 6" "instruct 36" "eval 36"; do
    set -- $pair
    printf '%s\n' "$out" | grep -Eq "^  $1 +$2\$" || fail "dry-run: stage $1 should have $2 tasks: $out"
done
[ "$(printf '%s\n' "$out" | grep -c 'seed=')" = 36 ] || fail "dry-run lists $(printf '%s\n' "$out" | grep -c 'seed=') runs, want 36"
expect 0 "dry-run quick" -- "$BIN" sweep "$SRC/sweeps/cgvlm-ablation-quick.json" --dry-run
contains "quick ablation" "12 runs, 29 distinct tasks"

# bad sweep files: exit 2, the problem named, no db created
bad() { # bad NAME NEEDLE JSON
    printf '%s\n' "$3" > "$TMP/$1.json"
    expect 2 "bad sweep $1" -- "$BIN" sweep "$TMP/$1.json" --db "$DB" --workspace "$TMP/ws"
    contains "bad sweep $1" "$2"
    [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "bad sweep $1: not one line: $out"
    [ ! -e "$DB" ] || fail "bad sweep $1: a db was created"
}
B='"base": {"pipeline": "noop"}'
bad unknown_path "'align.lamda'" "{\"name\": \"x\", $B, \"axes\": {\"align.lamda\": [0, 1]}}"
bad unknown_section "'modle.size'" "{\"name\": \"x\", $B, \"axes\": {\"modle.size\": [\"tiny\"]}}"
bad empty_axis "axis 'align.lambda' is empty" "{\"name\": \"x\", $B, \"axes\": {\"align.lambda\": []}}"
bad axis_not_list "axis 'align.lambda' must be a list of values" "{\"name\": \"x\", $B, \"axes\": {\"align.lambda\": 0}}"
bad wrong_type "'align.lambda' must be a number" "{\"name\": \"x\", $B, \"axes\": {\"align.lambda\": [0, \"on\"]}}"
bad wrong_enum "'model.size' must be one of" "{\"name\": \"x\", $B, \"axes\": {\"model.size\": [\"huge\"]}}"
bad zip_lengths "zipped axes need equal lengths" "{\"name\": \"x\", $B, \"axes\": {\"align.lambda\": [0, 1], \"instruct.fraction\": [0.1, 0.5, 1]}, \"zip\": [[\"align.lambda\", \"instruct.fraction\"]]}"
bad zip_unknown "'align.tau' is not an axis" "{\"name\": \"x\", $B, \"axes\": {\"align.lambda\": [0, 1]}, \"zip\": [[\"align.lambda\", \"align.tau\"]]}"
bad duplicate_value "duplicate run" "{\"name\": \"x\", $B, \"axes\": {\"align.lambda\": [1, 1.0]}}"
bad duplicate_seed "listed twice" "{\"name\": \"x\", $B, \"seeds\": [0, 0]}"
bad unknown_key "unknown sweep key 'axis'" "{\"name\": \"x\", $B, \"axis\": {}}"
bad no_name "needs a \"name\"" "{$B}"
bad set_unknown "'instruct.fractoin'" "{\"name\": \"x\", $B, \"set\": {\"instruct.fractoin\": 0.5}}"
bad set_and_axis "both in \"set\" and in \"axes\"" "{\"name\": \"x\", $B, \"set\": {\"align.lambda\": 0}, \"axes\": {\"align.lambda\": [0, 1]}}"
bad impossible "model.lm_dim" "{\"name\": \"x\", $B, \"axes\": {\"model.lm_heads\": [4, 3]}}"
bad range "instruct.fraction" "{\"name\": \"x\", $B, \"axes\": {\"instruct.fraction\": [0.5, 0]}}"
bad time_limit "time_limit_s: unknown task kind 'algn'" "{\"name\": \"x\", $B, \"time_limit_s\": {\"algn\": 5}}"
bad resources "resources.align: unknown key 'gpu'" "{\"name\": \"x\", $B, \"resources\": {\"align\": {\"gpu\": 1}}}"
bad resources_mem "resources.align.mem 'lots' is not a Slurm memory size" "{\"name\": \"x\", $B, \"resources\": {\"align\": {\"mem\": \"lots\"}}}"
bad resources_time "resources.align.time '1h' is not a Slurm time" "{\"name\": \"x\", $B, \"resources\": {\"align\": {\"time\": \"1h\"}}}"
bad base_missing "cannot open" "{\"name\": \"x\", \"base\": \"nope.json\"}"
bad malformed "malformed JSON at line" '{"name": "x",'

# experiments: unknown key, wrong type, impossible size -> refused naming the key
expect 2 "run unknown key" -- "$BIN" run "$SRC/experiments/cgvlm-tiny.json" --set align.lamda=0 --db "$DB" --workspace "$TMP/ws"
contains "run unknown key" "'align.lamda'"
contains "run unknown key lists valid keys" "valid keys in 'align'"
expect 2 "run wrong type" -- "$BIN" run "$SRC/experiments/cgvlm-tiny.json" --set model.ctx=big --db "$DB"
contains "run wrong type" "'model.ctx' must be an integer"
expect 2 "run impossible shape" -- "$BIN" run "$SRC/experiments/cgvlm-tiny.json" --set model.vit_heads=3 --db "$DB"
contains "run impossible shape" "model.vit_dim = 64 is not a multiple of model.vit_heads = 3"
expect 2 "run seed out of range" -- "$BIN" run "$SRC/experiments/cgvlm-tiny.json" --set seed=-1 --db "$DB"
contains "run seed out of range" "'seed' = -1 is out of range [0, 2147483647]"
printf '{"model": {"size": "tiny", "lm_dimm": 3}}\n' > "$TMP/exp.json"
expect 2 "run unknown key in file" -- "$BIN" run "$TMP/exp.json" --db "$DB"
contains "run unknown key in file" "'model.lm_dimm'"
[ ! -e "$DB" ] || fail "a refused run created the db"
expect 0 "run --dry-run with a size" -- "$BIN" run "$SRC/experiments/cgvlm-tiny.json" --set model.size=small --dry-run
contains "small size applied" '"lm_dim":	512'

# command-line misuse
expect 2 "sweep without file" -- "$BIN" sweep
expect 2 "run --set with a space" -- "$BIN" run "$SRC/experiments/cgvlm-tiny.json" --set align.lambda 0 --dry-run
contains "run --set with a space" "unexpected argument '0' after the experiment file"
expect 2 "sweep with two files" -- "$BIN" sweep "$SRC/sweeps/cgvlm-ablation.json" "$SRC/sweeps/cgvlm-ablation-quick.json" --dry-run
contains "sweep with two files" "unexpected argument '$SRC/sweeps/cgvlm-ablation-quick.json' after the sweep file"
expect 2 "sweep bad flag" -- "$BIN" sweep --frob x.json
expect 2 "sweep bad backend" -- "$BIN" sweep "$SRC/sweeps/cgvlm-ablation.json" --backend slurm
expect 2 "status of unknown sweep" -- "$BIN" status --db "$DB" --sweep nope
expect 2 "cancel without sweep" -- "$BIN" cancel --db "$DB"
expect 2 "cancel with a missing db" -- "$BIN" cancel --db "$TMP/none.db" --sweep x
contains "cancel with a missing db" "results db '$TMP/none.db' does not exist"
finish test_sweep_files
