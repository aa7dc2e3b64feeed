#!/usr/bin/env bash
# bench/gpu_emu_plugin.sh: builds, on a machine without a GPU, an EMULATED CUDA plugin: a
# libcgvlm_cuda.so made of kernels/cuda/model_cuda.cu compiled as host C++ against the fake CUDA
# runtime and host cuda_ops.h of tests/gpu/emu (the gpu_emu test's), the CPU kernels, and
# kernels/cuda/plugin.c, plus stubs for device discovery ("0: emulated GPU") and the cuBLAS
# benchmark. cgvlm loads it like the real one (CGVLM_CUDA_PLUGIN=PATH), so `--device cuda` takes
# every GPU code path of cgvlm itself (the scheduler's GPU slots, stage_train.c's model_cuda_*
# calls, checkpoints downloaded from the "device", graph capture and replay) on the CPU. What it
# does not check: the CUDA kernels (kernels/cuda/ops.cu), cuBLAS, memory, speed.
#
#   bash bench/gpu_emu_plugin.sh                  # -> build/emu-plugin/libcgvlm_cuda.so
#   CGVLM_CUDA_PLUGIN=$PWD/build/emu-plugin/libcgvlm_cuda.so CGVLM_EMU_JITTER=1e-3 \
#     bash bench/gpu_e2e.sh                       # the GPU half on the emulation
#
# CGVLM_EMU_JITTER=E (read by the plugin at run time) perturbs the products' outputs by a relative
# E, a stand-in for the GPU's rounding (TF32) and summation order: the two runs of gpu_e2e.sh then
# drift apart as they would on a GPU, which exercises bench/compare_runs.py's tolerances.
# Environment: CGVLM_EMU_DIR=DIR (default build/emu-plugin). Needs gcc, g++, OpenBLAS (-dev).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CGVLM_EMU_DIR:-$ROOT/build/emu-plugin}
mkdir -p "$DIR/obj"
cd "$DIR"
cat > obj/stubs.c << 'EOF'
/* the emulated plugin's device discovery (one device) and what the emulation lacks */
#include "kernels/cuda/plugin.h"
int cuda_device_count(void) { return 1; }
void cuda_device_describe(cg_buf *out) {
    cg_buf_addf(out, "0: emulated GPU (tests/gpu/emu on the CPU), sm_00, 0.0 GiB, 0 SMs, driver 0.0, "
                     "runtime 0.0, cuBLAS 0\n");
}
int cuda_bench_gemm(int M, int N, int K, int ta, int tb, int kind, int iters, double *ms) {
    (void)M, (void)N, (void)K, (void)ta, (void)tb, (void)kind, (void)iters, (void)ms;
    return cg_err(CG_EUSER, "emulated GPU: no cuBLAS benchmark");
}
void cg_buf_adds(cg_buf *b, const char *s) { cg_buf_addf(b, "%s", s); }
EOF
cp "$ROOT/kernels/cuda/model_cuda.cu" obj/model_cuda_emu.cc
BLAS_INC=
for d in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas; do
    [ -f "$d/cblas.h" ] && BLAS_INC=-I$d && break
done
F="-O2 -fPIC -fvisibility=hidden -fopenmp -I$ROOT -DCGVLM_HAVE_CUDA=1 $BLAS_INC"
jobs=()
# shellcheck disable=SC2086 # ($F: flags, split on purpose)
compile() { # compile LANG SRC OBJ [FLAGS...]
    local lang=$1 src=$2 obj=$3
    shift 3
    if [ "$lang" = c ]; then gcc -std=gnu17 $F "$@" -c "$src" -o "$obj"; else g++ $F "$@" -c "$src" -o "$obj"; fi
}
compile c "$ROOT/kernels/cuda/plugin.c" obj/plugin.o &
jobs+=($!)
compile c obj/stubs.c obj/stubs.o &
jobs+=($!)
compile cc obj/model_cuda_emu.cc obj/model_cuda.o -I"$ROOT/tests/gpu/emu" -w &
jobs+=($!)
wait "${jobs[@]}"
compile cc "$ROOT/tests/gpu/emu/emu_ops.cc" obj/emu_ops.o -I"$ROOT/tests/gpu/emu"
for f in "$ROOT"/kernels/cpu/*.c; do compile c "$f" "obj/cpu_$(basename "$f" .c).o"; done
g++ -shared -o libcgvlm_cuda.so obj/*.o -fopenmp -Wl,-Bsymbolic -Wl,--no-undefined -lopenblas -lm
echo "gpu_emu_plugin: $DIR/libcgvlm_cuda.so (emulated GPU; use with CGVLM_CUDA_PLUGIN=$DIR/libcgvlm_cuda.so)"
