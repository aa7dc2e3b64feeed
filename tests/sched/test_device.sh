#!/usr/bin/env bash
# test_device.sh: --device on `cgvlm run` and `cgvlm sweep`: parsed and validated like the config key
# (a bad value: exit 2, one line, nothing created), shown by --dry-run and --help, set in every
# run's config, given to every task (the worker log says which), and not part of any task key
# (the same experiment on another device reuses its tasks).
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
DB=$TMP/r.db
cd "$TMP"

for cmd in run sweep; do
    expect 0 "$cmd --help" -- "$BIN" $cmd --help
    contains "$cmd --help names --device" "--device D         auto, cpu, cuda or cuda:N"
    for bad in gpu cuda: cuda:x cuda:-1 CPU ""; do
        expect 2 "$cmd --device '$bad'" -- "$BIN" $cmd "$SRC/experiments/cgvlm-tiny.json" --device "$bad" --db "$DB"
        contains "$cmd --device '$bad'" "--device: config key 'device' = '$bad' must be 'auto', 'cpu', 'cuda' or 'cuda:N'"
        [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "$cmd --device '$bad': not one line: $out"
    done
done
[ ! -e "$DB" ] || fail "a refused --device created the db"

# dry runs show the device of every run; --device wins over the file's and over --set
expect 0 "run dry-run" -- "$BIN" run "$SRC/experiments/cgvlm-tiny.json" --dry-run
contains "run dry-run default device" '"device":	"auto"'
keys_auto=$(printf '%s\n' "$out" | grep -E '^(world|lm_pretrain|vit_pretrain|align|instruct|eval) ')
expect 0 "run dry-run --device cuda:1" -- "$BIN" run "$SRC/experiments/cgvlm-tiny.json" --set device=cpu --device cuda:1 --dry-run
contains "run dry-run device" '"device":	"cuda:1"'
keys_cuda=$(printf '%s\n' "$out" | grep -E '^(world|lm_pretrain|vit_pretrain|align|instruct|eval) ')
[ -n "$keys_auto" ] && [ "$keys_auto" = "$keys_cuda" ] || fail "the device changed task keys: $keys_auto / $keys_cuda"
expect 0 "sweep dry-run --device cpu" -- "$BIN" sweep "$SRC/sweeps/cgvlm-ablation-quick.json" --dry-run --device cpu
[ "$(printf '%s\n' "$out" | grep -c '(device cpu)$')" = 12 ] || fail "sweep dry-run: not 12 runs on device cpu: $out"
contains "same tasks" "12 runs, 29 distinct tasks"
expect 0 "sweep dry-run" -- "$BIN" sweep "$SRC/sweeps/cgvlm-ablation-quick.json" --dry-run
[ "$(printf '%s\n' "$out" | grep -c '(device auto)$')" = 12 ] || fail "sweep dry-run: not 12 runs on device auto: $out"

# --device cuda on a machine without a GPU: refused before anything is created
if ! nvidia-smi -L >/dev/null 2>&1; then
    expect 2 "run --device cuda without a GPU" -- "$BIN" run "$SRC/experiments/cgvlm-tiny.json" --device cuda --db "$TMP/gpu.db" --workspace ws-gpu
    contains "no GPU" "--device cuda: this machine has no usable GPU"
    [ ! -e "$TMP/gpu.db" ] && [ ! -e ws-gpu ] || fail "a refused --device cuda created the db or the workspace"
fi

# a noop run on the local backend: every task gets --device, the run config records it; again with
# another device: the same sweep (the name does not depend on the device), every task reused
printf '{"name": "dev", "pipeline": "noop", "device": "cuda"}\n' > exp.json
expect 0 "run --device cpu" -- "$BIN" run exp.json --device cpu --workers 2 --db "$DB" --workspace ws
contains "run --device cpu" "device cpu"
n=$(grep -c 'device cpu, ' ws/logs/worker-*.log | awk -F: '{s += $2} END {print s}')
[ "$n" = 6 ] || fail "the worker logs show $n tasks on device cpu, want 6: $(cat ws/logs/worker-*.log)"
[ "$(q "SELECT DISTINCT json_extract(config_json, '$.device') FROM runs")" = cpu ] || fail "runs.config_json device: $(q 'SELECT config_json FROM runs')"
expect 0 "run --device auto" -- "$BIN" run exp.json --device auto --workers 2 --db "$DB" --workspace ws
contains "run --device auto: all reused" "(0 run now, the rest reused)"
[ "$(q 'SELECT COUNT(*) FROM sweeps')" = 1 ] || fail "another device made another sweep: $(q 'SELECT name FROM sweeps')"
[ "$(q "SELECT DISTINCT json_extract(config_json, '$.device') FROM runs")" = auto ] || fail "runs.config_json device after --device auto"

# a sweep: the flag reaches the tasks; without it the run config's device does ("auto": the slot's)
printf '{"name": "devsweep", "base": {"pipeline": "noop", "device": "auto"}, "axes": {"world.seed": [7, 8]}}\n' > sw.json
rm -rf ws/logs
expect 0 "sweep --device cpu" -- "$BIN" sweep sw.json --device cpu --workers 1 --db "$DB" --workspace ws
n=$(grep -c 'device cpu, ' ws/logs/worker-0.log)
[ "$n" = 12 ] || fail "sweep: $n tasks logged device cpu, want 12: $(cat ws/logs/worker-0.log)"
finish test_device
