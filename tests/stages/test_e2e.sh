#!/bin/bash
# test_e2e.sh CGVLM DIR: a micro experiment (tiny model, a few steps, a small world) through
# `cgvlm run`: every stage runs, evaluations and predictions reach the results db.
set -u
cgvlm=$1 dir=$2
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
"$cgvlm" run "$here/../../experiments/cgvlm-tiny.json" --db "$dir/results.db" --workspace "$dir/ws" --workers 2 \
  --set world.n_align=200 --set world.n_instruct=200 --set world.n_corpus=300 --set world.n_bench=24 \
  --set world.n_heldout=20 --set lm_pretrain.steps=12 --set lm_pretrain.warmup=2 --set lm_pretrain.batch=8 \
  --set vit_pretrain.steps=6 --set vit_pretrain.warmup=1 --set vit_pretrain.batch=8 \
  --set align.steps=6 --set align.warmup=1 --set align.batch=8 \
  --set instruct.min_steps=4 --set instruct.epochs=0.1 --set instruct.batch=8 --set instruct.warmup=1 \
  --set checkpoint_every=5 >"$dir/log" 2>&1 || { tail -n 30 "$dir/log"; fail "cgvlm run"; }
q() { sqlite3 "$dir/results.db" "$1"; }
n_test=$(/usr/bin/python3 -c "
import json, glob
s = json.load(open(glob.glob('$dir/ws/**/benchmark/pid_splits.json', recursive=True)[0]))
print(len(s['test']))")
[ "$n_test" -gt 0 ] || fail "no test questions in the world"
for m in accuracy_likelihood accuracy_letter; do
  v=$(q "SELECT value FROM evals WHERE benchmark='cgvlm-world' AND metric='$m' AND category=''")
  [ -n "$v" ] || fail "no overall $m"
  n=$(q "SELECT n FROM evals WHERE benchmark='cgvlm-world' AND metric='$m' AND category=''")
  [ "$n" = "$n_test" ] || fail "$m over $n questions, expected $n_test"
  [ "$(q "SELECT COUNT(*) FROM evals WHERE metric='$m' AND category LIKE 'skill:%'")" -gt 0 ] || fail "no per-skill $m"
  [ "$(q "SELECT COUNT(*) FROM evals WHERE metric='$m' AND category NOT LIKE 'skill:%' AND category<>''")" -gt 0 ] \
    || fail "no per-category $m"
done
[ "$(q "SELECT COUNT(*) FROM predictions")" = $((2 * n_test)) ] || fail "expected $((2 * n_test)) predictions"
# the accuracies are those of the recorded predictions, overall and per category
for m in likelihood letter; do
  bad=$(q "SELECT COUNT(*) FROM (SELECT category, AVG(correct) AS a FROM predictions WHERE method='$m' GROUP BY category
           UNION ALL SELECT '', AVG(correct) FROM predictions WHERE method='$m') p
           JOIN evals e ON e.category = p.category AND e.metric = 'accuracy_$m' AND e.benchmark = 'cgvlm-world'
           WHERE ABS(e.value - p.a) > 1e-9")
  [ "$bad" = 0 ] || fail "$m: $bad accuracies differ from their predictions"
  [ "$(q "SELECT COUNT(*) FROM predictions WHERE method='$m' AND correct <> (chosen = answer)")" = 0 ] || fail "$m: correct flags"
done
for m in caption_ppl retrieval_r1 retrieval_r5 text_ppl; do
  [ -n "$(q "SELECT value FROM evals WHERE benchmark='alignment' AND metric='$m'")" ] || fail "no alignment $m"
done
for s in lm_pretrain vit_pretrain align instruct; do
  [ "$(q "SELECT COUNT(*) FROM v_metrics WHERE stage='$s' AND metric='loss'")" -gt 0 ] || fail "no $s losses"
done
# A device that is not there: refused as an input error (not retried), naming what to do.
if [ "$("$cgvlm" env | grep -c '^cuda  *[0-9]*:')" = 0 ]; then
  "$cgvlm" run "$here/../../experiments/cgvlm-tiny.json" --db "$dir/dev.db" --workspace "$dir/ws" \
    --set device=cuda --set world.n_align=200 --set world.n_instruct=200 --set world.n_corpus=300 \
    --set world.n_bench=24 --set world.n_heldout=20 >"$dir/devlog" 2>&1 && fail "device=cuda ran without a GPU"
  err=$(sqlite3 "$dir/dev.db" "SELECT error FROM tasks WHERE kind='lm_pretrain'")
  case "$err" in *"no usable GPU"*"set device to auto or cpu"*) ;; *) fail "device=cuda error: $err";; esac
  [ "$(sqlite3 "$dir/dev.db" "SELECT attempts FROM tasks WHERE kind='lm_pretrain'")" = 1 ] || fail "device=cuda retried"
fi
echo "e2e: ok ($n_test questions)"
