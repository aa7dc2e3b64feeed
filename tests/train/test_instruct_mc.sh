#!/bin/bash
# test_instruct_mc.sh CGVLM DRIVER PY3 DIR: instruct.mc_fraction end to end on a micro run:
# bad values are refused (exit 2, the key named) before anything runs; the key enters the
# instruct task's key only; the same seed gives bitwise-identical instruct losses and weights;
# the multiple-choice turns reach the training data (instruct_mc_items, another loss curve).
set -u
cgvlm=$1 driver=$2 py=$3 dir=$4
here=$(cd "$(dirname "$0")" && pwd)
cfg=$here/../../experiments/cgvlm-tiny.json
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
sets=(--set world.n_align=60 --set world.n_instruct=200 --set world.n_corpus=60 --set world.n_bench=12
      --set world.n_heldout=10 --set lm_pretrain.steps=4 --set lm_pretrain.warmup=1 --set lm_pretrain.batch=8
      --set vit_pretrain.steps=2 --set vit_pretrain.warmup=1 --set vit_pretrain.batch=8
      --set align.steps=2 --set align.warmup=1 --set align.batch=8
      --set instruct.min_steps=6 --set instruct.epochs=0.1 --set instruct.batch=8 --set instruct.warmup=1
      --set instruct.fraction=0.5 --set eval.retrieval=false)

# bad values: exit 2, one clear line naming the key, no workspace touched
for bad in 1.5 -0.1 '"half"' true; do
  "$cgvlm" run "$cfg" --dry-run --db "$dir/bad.db" --workspace "$dir/badws" --set "instruct.mc_fraction=$bad" \
    >"$dir/bad.out" 2>"$dir/bad.err"
  rc=$?
  [ $rc = 2 ] || fail "mc_fraction=$bad: exit $rc, expected 2"
  grep -q "instruct.mc_fraction" "$dir/bad.err" || fail "mc_fraction=$bad: message does not name the key: $(cat "$dir/bad.err")"
  case "$bad" in 1.5|-0.1) grep -q "out of range \[0, 1\]" "$dir/bad.err" || fail "mc_fraction=$bad: $(cat "$dir/bad.err")";; esac
done
[ ! -e "$dir/badws" ] || fail "a refused run created its workspace"

# the key: default 0 resolved; changes the instruct and eval keys only
keys() { "$cgvlm" run "$cfg" --dry-run --db "$dir/k.db" --workspace "$dir/kws" "${sets[@]}" "$@" 2>&1; }
k0=$(keys) || fail "dry run: $k0"
k1=$(keys --set instruct.mc_fraction=0.5) || fail "dry run with mc_fraction: $k1"
echo "$k0" | grep -q '"mc_fraction":[[:space:]]*0' || fail "the resolved config lacks instruct.mc_fraction = 0: $k0"
for s in world lm_pretrain vit_pretrain align instruct eval; do
  a=$(echo "$k0" | grep -E "^ *$s[ :]" | head -1) b=$(echo "$k1" | grep -E "^ *$s[ :]" | head -1)
  [ -n "$a" ] || fail "no key line for $s in: $k0"
  case $s in
    instruct|eval) [ "$a" != "$b" ] || fail "$s key unchanged by instruct.mc_fraction";;
    *) [ "$a" = "$b" ] || fail "$s key changed by instruct.mc_fraction: $a / $b";;
  esac
done

# determinism: two runs of the same config, in two workspaces
for ws in a b; do
  "$driver" "$dir/$ws" "$cfg" "${sets[@]}" --set instruct.mc_fraction=0.5 --until instruct >"$dir/$ws.log" 2>&1 \
    || { tail -n 20 "$dir/$ws.log"; fail "run $ws"; }
done
"$driver" "$dir/off" "$cfg" "${sets[@]}" --until instruct >"$dir/off.log" 2>&1 || { tail -n 20 "$dir/off.log"; fail "run off"; }
ja=$(ls "$dir"/a/journal/instruct-*.jsonl) jb=$(ls "$dir"/b/journal/instruct-*.jsonl) joff=$(ls "$dir"/off/journal/instruct-*.jsonl)
"$py" "$here/../stages/journal_losses.py" "$ja" "$jb" || fail "instruct losses differ between two identical runs"
[ "$(grep -c '"name":"loss"' "$ja")" -ge 6 ] || fail "fewer than 6 instruct steps logged"
if "$py" "$here/../stages/journal_losses.py" "$ja" "$joff" >/dev/null 2>&1; then fail "mc_fraction=0.5 gave the loss curve of mc_fraction=0"; fi
wa=$(ls "$dir"/a/artifacts/*/model.safetensors | while read -r f; do grep -l '"instruct"' "$f"; done)
wb=$(ls "$dir"/b/artifacts/*/model.safetensors | while read -r f; do grep -l '"instruct"' "$f"; done)
[ -n "$wa" ] && [ -n "$wb" ] || fail "no instruct weights published"
cmp -s "$wa" "$wb" || fail "instruct weights differ between two identical runs"
# the turns reached the data: about half of the 100-item subset (all but 'describe' questions have a form)
n_mc=$(grep '"name":"instruct_mc_items"' "$ja" | sed 's/.*"value":\([0-9.]*\).*/\1/')
n_it=$(grep '"name":"instruct_items"' "$ja" | sed 's/.*"value":\([0-9.]*\).*/\1/')
n_off=$(grep '"name":"instruct_mc_items"' "$joff" | sed 's/.*"value":\([0-9.]*\).*/\1/')
[ "$n_it" = 100 ] || fail "instruct_items = $n_it, expected 100"
[ "$n_off" = 0 ] || fail "instruct_mc_items = $n_off with mc_fraction 0"
awk -v m="$n_mc" 'BEGIN { exit !(m >= 40 && m <= 50) }' || fail "instruct_mc_items = $n_mc, expected 40..50 of 100"
echo "instruct_mc: ok ($n_mc of $n_it items multiple choice)"
