#!/bin/bash
# test_threads.sh DRIVER PY3 DIR: the thread count does not change what a task produces. A short
# lm_pretrain, vit_pretrain, align and instruct run with OMP_NUM_THREADS=1 and again with 2 (in two
# workspaces) log bitwise the same losses and gradient norms in every stage's journal, and publish
# the same artifacts (same task keys) with byte-identical model.safetensors — a task's key does not
# include the thread count, so its content-addressed artifact must not depend on it.
set -u
driver=$1 py=$2 dir=$3
here=$(cd "$(dirname "$0")" && pwd)
cfg=$here/../../experiments/cgvlm-tiny.json
export OPENBLAS_NUM_THREADS=1
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
sets=(--set world.n_align=60 --set world.n_instruct=60 --set world.n_corpus=80 --set world.n_bench=12
      --set world.n_heldout=10 --set lm_pretrain.steps=4 --set lm_pretrain.warmup=1 --set lm_pretrain.batch=12
      --set vit_pretrain.steps=3 --set vit_pretrain.warmup=1 --set vit_pretrain.batch=19
      --set align.steps=3 --set align.warmup=1 --set align.batch=11
      --set instruct.min_steps=3 --set instruct.epochs=0.1 --set instruct.batch=13 --set instruct.warmup=1
      --set eval.retrieval=false)

for nt in 1 2; do
  OMP_NUM_THREADS=$nt "$driver" "$dir/t$nt" "$cfg" "${sets[@]}" --until instruct >"$dir/t$nt.log" 2>&1 \
    || { tail -n 20 "$dir/t$nt.log"; fail "the run at $nt threads"; }
done

# every scalar but the timings, per stage: (step, name) -> value, as logged (17 digits)
scalars() {
  "$py" - "$1" <<'P'
import json, sys
skip = ("tokens_per_s", "wall", "ms", "time", "rss", "elapsed", "per_s")
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except json.JSONDecodeError:
        continue
    if r.get("t") != "scalar" or any(s in r.get("name", "") for s in skip):
        continue
    print(r.get("step"), r["name"], repr(r["value"]))
P
}
for st in lm_pretrain vit_pretrain align instruct; do
  j1=$(ls "$dir"/t1/journal/$st-*.jsonl 2>/dev/null) j2=$(ls "$dir"/t2/journal/$st-*.jsonl 2>/dev/null)
  [ -n "$j1" ] && [ -n "$j2" ] || fail "$st: no journal"
  [ "$(basename "$j1")" = "$(basename "$j2")" ] || fail "$st: another task at 2 threads: $j1 / $j2"
  "$py" "$here/journal_losses.py" "$j1" "$j2" >/dev/null || fail "$st: losses differ between 1 and 2 threads"
  s1=$(scalars "$j1") s2=$(scalars "$j2")
  echo "$s1" | grep -q " loss " || fail "$st: no losses logged"
  echo "$s1" | grep -q "grad_norm" || fail "$st: no grad_norm logged"
  [ "$s1" = "$s2" ] || { diff <(echo "$s1") <(echo "$s2") | head -n 6; fail "$st: journal scalars differ between 1 and 2 threads"; }
  echo "$st: $(echo "$s1" | grep -c " loss ") step losses and $(echo "$s1" | wc -l) scalars identical"
done

# the same artifacts, and the published weights byte for byte
a1=$(cd "$dir/t1/artifacts" && ls) a2=$(cd "$dir/t2/artifacts" && ls)
[ "$a1" = "$a2" ] || fail "the artifacts differ: $a1 / $a2"
n=0
for f in "$dir"/t1/artifacts/*/model.safetensors; do
  g=$dir/t2/artifacts/$(basename "$(dirname "$f")")/model.safetensors
  cmp -s "$f" "$g" || fail "$(dirname "$f"): model.safetensors differ between 1 and 2 threads"
  n=$((n + 1))
done
[ $n -ge 4 ] || fail "only $n published models, expected lm_pretrain, vit_pretrain, align and instruct"
echo "threads: ok ($n published models byte-identical at 1 and 2 threads)"
