#!/bin/bash
# test_gpu_emu_run.sh CGVLM DIR: `cgvlm run --device cuda` on a machine without a GPU, through the
# emulated CUDA plugin of bench/gpu_emu_plugin.sh (kernels/cuda/model_cuda.cu on the host
# emulation of tests/gpu/emu): the scheduler's GPU slot, stage_train.c's model_cuda_* path,
# checkpoints downloaded from the "device", and the config key `precision`. A micro experiment
# (tiny model, a few steps, a small world) runs four times:
#   cpu        --device cpu                    the reference
#   gpu        --device cuda                   precision tf32 (the emulation multiplies in fp32):
#                                              the CPU's tasks would be reused, so its own db;
#                                              the losses match the CPU's within 1e-3
#   bf16       --device cuda, precision bf16   other task keys for the training stages (the
#                                              world's shared); the products on bf16-rounded
#                                              operands: other losses, within a few percent
#   cpu_bf16   --device cpu, precision bf16    runs, and says that precision is for the GPU
set -u
cgvlm=$1 dir=$2
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
CGVLM_EMU_DIR="$dir/plugin" bash "$here/../../bench/gpu_emu_plugin.sh" > "$dir/plugin.log" 2>&1 ||
  { tail -n 20 "$dir/plugin.log"; fail "building the emulated plugin"; }
export CGVLM_CUDA_PLUGIN=$dir/plugin/libcgvlm_cuda.so
SETS=(--set world.n_align=200 --set world.n_instruct=200 --set world.n_corpus=300 --set world.n_bench=24
  --set world.n_heldout=20 --set lm_pretrain.steps=12 --set lm_pretrain.warmup=2 --set lm_pretrain.batch=8
  --set vit_pretrain.steps=6 --set vit_pretrain.warmup=1 --set vit_pretrain.batch=8
  --set align.steps=6 --set align.warmup=1 --set align.batch=8
  --set instruct.min_steps=4 --set instruct.epochs=0.1 --set instruct.batch=8 --set instruct.warmup=1)
run() { # NAME ARGS...
  local name=$1
  shift
  "$cgvlm" run "$here/../../experiments/cgvlm-tiny.json" --db "$dir/$name.db" --workspace "$dir/ws-$name" \
    "${SETS[@]}" "$@" > "$dir/$name.log" 2>&1 || { tail -n 30 "$dir/$name.log"; fail "cgvlm run ($name)"; }
}
run cpu --device cpu
run gpu --device cuda
run bf16 --device cuda --set precision=bf16
run cpu_bf16 --device cpu --set precision=bf16
q() { sqlite3 "$dir/$1.db" "$2"; }
# the GPU runs ran their training stages on the (emulated) GPU
n=$(grep -h -c 'device cuda' "$dir"/ws-gpu/logs/worker-*.log | awk '{s += $1} END {print s}')
[ "$n" = 6 ] || fail "the gpu run's worker logs show $n tasks on device cuda, want 6"
grep -q "emulated GPU" "$dir/ws-gpu/logs/"*.log "$dir/gpu.log" 2> /dev/null ||
  [ "$(q gpu "SELECT COUNT(*) FROM environments WHERE device LIKE '%emulated GPU%'")" -gt 0 ] ||
  fail "no trace of the emulated GPU in the gpu run's environment or logs"
# the CPU run's tasks recorded device "cpu" (CUDA not started for them), the GPU run's the GPU
[ "$(q cpu "SELECT DISTINCT e.device FROM tasks t JOIN environments e USING (env_id)")" = cpu ] ||
  fail "the cpu run's environments: $(q cpu "SELECT DISTINCT device FROM environments")"
[ "$(q gpu "SELECT COUNT(DISTINCT env_id) FROM tasks WHERE env_id IS NOT NULL")" -ge 1 ] || fail "no environments in the gpu run"
# final training losses: gpu = cpu (within 1e-3), bf16 != gpu (within 5 %)
last() { q "$1" "SELECT value FROM v_metrics WHERE stage='$2' AND metric='loss' ORDER BY step DESC LIMIT 1"; }
for s in lm_pretrain vit_pretrain align instruct; do
  c=$(last cpu $s) g=$(last gpu $s) b=$(last bf16 $s)
  [ -n "$c" ] && [ -n "$g" ] && [ -n "$b" ] || fail "$s: no final loss (cpu '$c', gpu '$g', bf16 '$b')"
  /usr/bin/python3 - "$s" "$c" "$g" "$b" << 'PY' || fail "$s losses: cpu $c, gpu $g, bf16 $b"
import sys
s, c, g, b = sys.argv[1], *map(float, sys.argv[2:])
assert abs(g - c) <= 1e-3 * abs(c), f"{s}: gpu {g} vs cpu {c}"
assert abs(b - g) <= 5e-2 * abs(g), f"{s}: bf16 {b} vs gpu {g}"
assert b != g, f"{s}: bf16 gave exactly the tf32 loss {g}"
PY
done
# precision is in the training stages' keys, not the world's
for s in world lm_pretrain instruct; do
  kg=$(q gpu "SELECT key FROM tasks WHERE kind='$s'") kb=$(q bf16 "SELECT key FROM tasks WHERE kind='$s'")
  if [ $s = world ]; then [ "$kg" = "$kb" ] || fail "precision changed the world's key"
  else [ "$kg" != "$kb" ] || fail "precision did not change the $s key"; fi
done
grep -q "precision bf16 is for GPU steps; on the CPU every product is fp32" "$dir"/ws-cpu_bf16/logs/*.log "$dir/cpu_bf16.log" ||
  fail "the CPU run with precision bf16 did not say that it computes in fp32"
# `cgvlm bench train --device cuda` through the same plugin: the JSON of the CPU's keys plus the
# graph's own time and the sections of one eager step, adding up to its phases
"$cgvlm" bench train --device cuda --precision bf16 --steps 2 --warmup 1 --json > "$dir/bench.json" 2> "$dir/bench.err" ||
  { cat "$dir/bench.err"; fail "bench train --device cuda"; }
head -n 1 "$dir/bench.json" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in ("ms_per_step", "tokens_per_s", "gflop_per_step", "mfu", "graph_ms", "loss_first", "loss_last"):
    assert k in d, k
assert d["device"] == "cuda" and d["precision"] == "bf16" and d["graph_ms"] > 0, d
names = [s["name"] for s in d["sections"]]
assert len(names) >= 10 and "lm bwd attention" in names and "optimizer adamw" in names, names
total = sum(s["ms"] for s in d["sections"]); phases = d["eager_fwd_ms"] + d["eager_bwd_ms"] + d["eager_opt_ms"]
assert 0.9 * phases - 0.05 <= total <= 1.01 * phases + 0.05, (total, phases)
' || fail "bench train --device cuda JSON: $(head -c 600 "$dir/bench.json")"
echo "ok: cpu / gpu (emulated) / bf16 / cpu with bf16 / bench train --device cuda"
