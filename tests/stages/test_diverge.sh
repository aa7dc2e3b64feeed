#!/bin/bash
# test_diverge.sh DRIVER PY3 DIR: a run that blows up (lr 1, weight decay 10, no clipping) stops
# with a clear error naming the step, publishes nothing, and keeps its last good checkpoint
# (every value finite, read back by numpy).
set -u
driver=$1 py=$2 dir=$3
here=$(cd "$(dirname "$0")" && pwd)
cfg=$here/../../experiments/cgvlm-tiny.json
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
"$driver" "$dir/ws" "$cfg" --set world.n_align=50 --set world.n_instruct=50 --set world.n_corpus=100 \
  --set world.n_bench=6 --set world.n_heldout=10 --set lm_pretrain.steps=60 --set lm_pretrain.warmup=20 \
  --set lm_pretrain.batch=4 --set lm_pretrain.lr=1 --set lm_pretrain.weight_decay=10 \
  --set lm_pretrain.clip=0 --set checkpoint_every=4 --until lm_pretrain >"$dir/log" 2>&1
rc=$?
cat "$dir/log" | tail -n 3
[ $rc = 2 ] || fail "exit status $rc, expected 2"
grep -Eq "error: .*lm_pretrain diverged at step [0-9]+: the (loss|gradient norm|weights' norm) is (nan|inf|-nan)" "$dir/log" \
  || fail "no clear divergence message"
grep -q "the last good checkpoint (step [0-9]*) is kept" "$dir/log" || fail "the message does not name the kept checkpoint"
ls "$dir"/ws/artifacts/*/model.safetensors >/dev/null 2>&1 && fail "weights were published"
ck=$(ls "$dir"/ws/work/*/checkpoint.safetensors) || fail "no checkpoint kept"
step=$(sed -n 's/.*last good checkpoint (step \([0-9]*\)).*/\1/p' "$dir/log")
"$py" -c "
import sys, numpy as np
sys.path.insert(0, '$here')
from safetensors_np import load
meta, t = load('$ck')
assert meta['step'] == '$step', (meta['step'], '$step')
bad = [k for k, v in t.items() if v.dtype.kind == 'f' and not np.isfinite(v).all()]
assert not bad, bad
print('kept checkpoint at step', meta['step'], 'finite:', len(t), 'tensors')
" || fail "the kept checkpoint is not finite or not at the step named"
# a damaged checkpoint in the work dir: the re-run refuses it with a clear error naming it
head -c 1000 "$ck" >"$ck.cut" && mv "$ck.cut" "$ck"
"$driver" "$dir/ws" "$cfg" --set world.n_align=50 --set world.n_instruct=50 --set world.n_corpus=100 \
  --set world.n_bench=6 --set world.n_heldout=10 --set lm_pretrain.steps=60 --set lm_pretrain.warmup=20 \
  --set lm_pretrain.batch=4 --set lm_pretrain.lr=1 --set lm_pretrain.weight_decay=10 \
  --set lm_pretrain.clip=0 --set checkpoint_every=4 --until lm_pretrain >"$dir/log2" 2>&1
rc=$?
tail -n 1 "$dir/log2"
[ $rc = 2 ] || fail "a truncated checkpoint: exit status $rc, expected 2"
grep -q "cannot resume lm_pretrain: checkpoint '.*checkpoint.safetensors' is truncated" "$dir/log2" \
  || fail "a truncated checkpoint: no clear error"
echo "diverge: ok"
