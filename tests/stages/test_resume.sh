#!/bin/bash
# test_resume.sh DRIVER PY3 DIR: a short lm_pretrain (and align) interrupted by SIGKILL and by
# SIGINT, then resumed, logs exactly (bitwise) the losses of an uninterrupted run and publishes
# byte-identical weights.
set -u
driver=$1 py=$2 dir=$3
here=$(cd "$(dirname "$0")" && pwd)
cfg=$here/../../experiments/cgvlm-tiny.json
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
rm -rf "$dir" && mkdir -p "$dir"
sets=(--set world.n_align=200 --set world.n_instruct=100 --set world.n_corpus=300 --set world.n_bench=12
      --set world.n_heldout=20 --set lm_pretrain.steps=60 --set lm_pretrain.warmup=5
      --set lm_pretrain.batch=8 --set checkpoint_every=4)
fail() { echo "FAIL: $*"; exit 1; }

# the reference: uninterrupted
"$driver" "$dir/ref" "$cfg" "${sets[@]}" --until lm_pretrain >"$dir/ref.log" 2>&1 || { cat "$dir/ref.log"; fail "reference run"; }

# wait_ckpt WS: until the lm_pretrain task has a checkpoint
wait_ckpt() {
  for _ in $(seq 1 600); do
    ls "$1"/work/*/checkpoint.safetensors >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}
lm_artifact() { ls -d "$1"/artifacts/* | while read -r a; do [ -f "$a/model.safetensors" ] && echo "$a"; done; }

for sig in KILL INT; do
  ws=$dir/$sig
  "$driver" "$ws" "$cfg" "${sets[@]}" --until world >/dev/null 2>&1 || fail "world for $sig"
  "$driver" "$ws" "$cfg" "${sets[@]}" --until lm_pretrain >"$ws.1.log" 2>&1 &
  pid=$!
  wait_ckpt "$ws" || fail "no checkpoint appeared before the $sig"
  sleep 0.3
  kill -$sig $pid
  wait $pid
  rc=$?
  [ -z "$(lm_artifact "$ws")" ] || fail "the run finished before SIGINT/SIGKILL reached it: make it longer"
  if [ $sig = INT ]; then
    [ $rc = 3 ] || { cat "$ws.1.log"; fail "SIGINT: exit status $rc, expected 3 (cancelled)"; }
    grep -q "cancelled at step" "$ws.1.log" || fail "SIGINT: no 'cancelled at step' message"
  else
    [ $rc = 137 ] || fail "SIGKILL: exit status $rc"
  fi
  cp "$ws"/journal/lm_pretrain-*.jsonl "$ws.first.jsonl"
  : >"$(ls "$ws"/journal/lm_pretrain-*.jsonl)"
  "$driver" "$ws" "$cfg" "${sets[@]}" --until lm_pretrain >"$ws.2.log" 2>&1 || { cat "$ws.2.log"; fail "resume after $sig"; }
  grep -q "resuming from the checkpoint at step" "$ws.2.log" || fail "$sig: the second run did not resume"
  "$py" "$here/journal_losses.py" "$dir"/ref/journal/lm_pretrain-*.jsonl "$ws.first.jsonl" "$ws"/journal/lm_pretrain-*.jsonl \
    || fail "$sig: losses differ from the uninterrupted run"
  cmp "$(lm_artifact "$dir/ref")/model.safetensors" "$(lm_artifact "$ws")/model.safetensors" \
    || fail "$sig: the published weights differ from the uninterrupted run"
  echo "$sig: resumed bitwise"
done
echo "resume: ok"
