#!/usr/bin/env bash
# bench/gpu_check.sh: the one script for a GPU machine (an H100: 16 cores, 10 minutes per call).
# Builds cgvlm with CUDA for sm_90 into its own build dir, prints `cgvlm env`, runs the gpu-labelled
# tests (every CUDA kernel and the whole GPU model against the CPU oracle), compute-sanitizer
# memcheck on the kernel test and on a quick model test, then the training-step benchmarks
# (tiny/small/base x align/instruct x tf32/bf16), and prints a table last. Each part is guarded by
# a timeout; a failure is reported in the table and the rest still runs. Without a GPU it builds
# and reports "no GPU" for each part.
#
# Environment:
#   CGVLM_GPU_BUILD=DIR   build dir (default: build-gpu in the repository)
#   CGVLM_GPU_REUSE=1     reuse DIR as it is configured (only an incremental build), e.g. the
#                         normal build/ on a machine where a fresh -j16 build is too slow
#   CGVLM_JOBS=N          parallel build jobs (default 16)
#   CGVLM_GPU_BENCH=0     skip the benchmarks;  CGVLM_GPU_SANITIZE=0  skip compute-sanitizer
#   OUT=DIR               where logs and results.jsonl go (default: DIR/gpu_check)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${CGVLM_GPU_BUILD:-$ROOT/build-gpu}
JOBS=${CGVLM_JOBS:-16}
LOGS=${OUT:-$BUILD/gpu_check}
mkdir -p "$LOGS"
RESULTS=()
T0=$(date +%s)

# record NAME STATUS DETAIL
record() { RESULTS+=("$(printf '%-34s %-7s %s' "$1" "$2" "$3")"); }

# part NAME TIMEOUT_S CMD...: runs CMD with a timeout, its output to LOGS/NAME.log and the screen
part() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*"
    timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    cat "$LOGS/$name.log" | tail -n 40
    return $rc
}

# ---- build ----
if [ "${CGVLM_GPU_REUSE:-0}" = 1 ] && [ -f "$BUILD/CMakeCache.txt" ]; then
    part build 480 nice cmake --build "$BUILD" -j"$JOBS"
else
    part configure 120 cmake -S "$ROOT" -B "$BUILD" -DCGVLM_WERROR=ON -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CUDA_ARCHITECTURES=90 &&
        part build 480 cmake --build "$BUILD" -j"$JOBS"
fi
rc=$?
if [ $rc -ne 0 ]; then
    record build FAIL "rc $rc, see $LOGS/build.log"
    printf '%s\n' "${RESULTS[@]}"
    exit 1
fi
record build ok "$(($(date +%s) - T0)) s into $BUILD"
CGVLM=$BUILD/cgvlm
BENCH=$BUILD/tests/gpu/gpu_bench

# ---- environment ----
part env 30 "$CGVLM" env
rc=$?
CUDA_LINE=$(grep -m1 '^cuda' "$LOGS/env.log" | sed -E 's/^cuda +//')
record "cgvlm env" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "$(grep -m1 '^build' "$LOGS/env.log" | sed -E 's/^build +//')"
record "device" "$(case "$CUDA_LINE" in "") echo FAIL ;; "no GPU"*) echo none ;; *) echo ok ;; esac)" "$(echo "$CUDA_LINE" | cut -c1-90)"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv > "$LOGS/nvidia-smi.log" 2>&1
    cat "$LOGS/nvidia-smi.log"
fi
HAVE_GPU=1
case "$CUDA_LINE" in
"" | "no GPU"*)
    HAVE_GPU=0
    record "gpu parts" skip "no GPU: tests, memcheck and benchmarks skipped"
    ;;
esac

# ---- tests ----
# (without a GPU they run too, and must report themselves skipped)
part gpu_tests 300 ctest --test-dir "$BUILD" -L gpu --output-on-failure
rc=$?
for t in gpu_ops gpu_model; do
    line=$(grep -E "Test +#[0-9]+: $t " "$LOGS/gpu_tests.log" | head -1)
    case "$line" in
    *Passed*) st=ok ;;
    *Skipped* | *"Not Run"*) st=skip ;;
    *) st=FAIL ;;
    esac
    checks=$(grep -ohE "$t: [0-9]+ checks, [0-9]+ failed" "$BUILD/Testing/Temporary/LastTest.log" 2>/dev/null | head -1)
    record "test $t" "$st" "$(echo "$line" | grep -oE '[0-9.]+ sec' | head -1) ${checks:-rc $rc}"
done

# ---- compute-sanitizer ----
SAN=/usr/local/cuda/bin/compute-sanitizer
command -v compute-sanitizer > /dev/null && SAN=$(command -v compute-sanitizer)
if [ $HAVE_GPU = 1 ] && [ "${CGVLM_GPU_SANITIZE:-1}" = 1 ]; then
    if [ -x "$SAN" ]; then
        part memcheck_ops 180 "$SAN" --tool memcheck --leak-check full --error-exitcode 9 "$BUILD/tests/gpu/test_gpu_ops"
        rc=$?
        record "memcheck test_gpu_ops" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "$(grep -m1 'ERROR SUMMARY' "$LOGS/memcheck_ops.log" || echo "rc $rc")"
        part memcheck_model 240 env CGVLM_GPU_TEST_QUICK=1 "$SAN" --tool memcheck --error-exitcode 9 "$BUILD/tests/gpu/test_gpu_model"
        rc=$?
        record "memcheck test_gpu_model (quick)" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "$(grep -m1 'ERROR SUMMARY' "$LOGS/memcheck_model.log" || echo "rc $rc")"
    else
        record memcheck skip "no compute-sanitizer at $SAN"
    fi
fi

# ---- benchmarks ----
if [ $HAVE_GPU = 1 ] && [ "${CGVLM_GPU_BENCH:-1}" = 1 ]; then
    : > "$LOGS/results.jsonl"
    for size in tiny small base; do
        for stage in align instruct; do
            for prec in tf32 bf16; do
                name="bench_${size}_${stage}_${prec}"
                part "$name" 90 "$BENCH" --size $size --stage $stage --prec $prec --steps 30 --warmup 3 --json
                rc=$?
                line=$(grep -m1 '^{' "$LOGS/$name.log")
                if [ $rc -eq 0 ] && [ -n "$line" ]; then
                    echo "$line" >> "$LOGS/results.jsonl"
                    ms=$(echo "$line" | sed -E 's/.*"ms_per_step":([0-9.]+).*/\1/')
                    tf=$(echo "$line" | sed -E 's/.*"tflops_per_s":([0-9.]+).*/\1/')
                    mfu=$(echo "$line" | sed -E 's/.*"mfu":([0-9.]+).*/\1/')
                    record "$size/$stage/$prec" ok "$ms ms/step, $tf TFLOP/s, MFU $(awk "BEGIN{printf \"%.1f\", 100*$mfu}")%"
                else
                    record "$size/$stage/$prec" FAIL "rc $rc: $(tail -1 "$LOGS/$name.log" | cut -c1-60)"
                fi
            done
        done
    done
fi

echo
echo "=== gpu_check summary ($(($(date +%s) - T0)) s; logs in $LOGS)"
printf '%s\n' "${RESULTS[@]}"
