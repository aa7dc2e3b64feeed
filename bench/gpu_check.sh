#!/usr/bin/env bash
# bench/gpu_check.sh: the one script for a GPU machine (an H100: 16 cores, 10 minutes per call).
# Builds cgvlm with CUDA for sm_90 into its own build dir, prints `cgvlm env`, runs the GPU tests
# (every CUDA kernel and the whole GPU model against the CPU oracle), the training-step benchmarks
# (tiny/small/base x align/instruct x tf32/bf16, and instruct bf16 with the fused attention), where
# the time goes (one eager tf32 instruct step by section at each size, and the LM's products alone
# in fp32/tf32/bf16: gpu_bench --sections, --gemm), then compute-sanitizer memcheck on the kernel
# test and on a quick model test, and prints a table last (about 90 s on an H100). Each part is guarded by a timeout; a failure is reported in the table and the rest still
# runs. Without a GPU it builds and reports "no GPU" for the GPU parts.
#
# The GPU machine's image may lack the Debian -dev packages of the full build (SQLite, libcurl,
# cJSON, libpng, OpenBLAS). When the full CMake configure fails, a minimal build compiles only
# what the GPU parts need (util, the CPU model and kernels as the oracle, the plugin loader
# kernels/gpu_loader.c, tests/gpu, and the CUDA plugin libcgvlm_cuda.so from kernels/cuda next to
# the test binaries) with gcc and nvcc, linking a system CBLAS when one links, else
# tests/gpu/fallback/sgemm.c. The tests load the plugin as cgvlm does (kernels/cuda/plugin.h); the
# kernel tests also link kernels/cuda/ops.cu directly.
#
# Environment:
#   CGVLM_GPU_BUILD=DIR   build dir (default: build-gpu in the repository)
#   CGVLM_GPU_REUSE=1     reuse DIR as it is configured (only an incremental build), e.g. the
#                         normal build/ on a machine where a fresh -j16 build is too slow
#   CGVLM_GPU_MINIMAL=1   skip the full build and go straight to the minimal one
#   CGVLM_JOBS=N          parallel build jobs (default 16)
#   CGVLM_GPU_FALLBACK_BLAS=1  minimal build with the fallback sgemm even when a CBLAS links
#   CGVLM_GPU_BENCH=0     skip the benchmarks;  CGVLM_GPU_SANITIZE=0  skip compute-sanitizer
#   CGVLM_GPU_BUDGET_S=N  start no new part after N seconds (default 540: the device tool gives a
#                         command 600 s at most, and the summary must still be printed)
#   OUT=DIR               (the device tool's, which brings back at most 8 files) receives, as
#                         the run goes, so that they survive a run killed at the tool's limit:
#                         summary.txt (the table, rewritten after every part), results.jsonl,
#                         machine.txt, gpu_check.log (every part's log appended when it ends, long
#                         ones cut to their head and tail), and at the end logs.tgz (every log
#                         whole). The logs themselves are in DIR/gpu_check. The exit status is 1
#                         when a part failed or timed out.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${CGVLM_GPU_BUILD:-$ROOT/build-gpu}
JOBS=${CGVLM_JOBS:-16}
LOGS=$BUILD/gpu_check
OUTDIR=
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then OUTDIR=$OUT; fi
BUDGET=${CGVLM_GPU_BUDGET_S:-540}
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log "$LOGS/results.jsonl" "$LOGS/summary.txt"
[ -n "$OUTDIR" ] && rm -f "$OUTDIR/summary.txt" "$OUTDIR/results.jsonl" "$OUTDIR/gpu_check.log" \
    "$OUTDIR/machine.txt" "$OUTDIR/logs.tgz"
RESULTS=()
T0=$(date +%s)

# the summary so far (rewritten after each part: a run killed from outside still leaves it)
summary() {
    echo "=== gpu_check summary ($(($(date +%s) - T0)) s; logs in $LOGS)"
    printf '%s\n' "${RESULTS[@]}"
}
# record NAME STATUS DETAIL
FAILED=0
record() {
    RESULTS+=("$(printf '%-36s %-6s %s' "$1" "$2" "$3")")
    case $2 in FAIL | TIME) FAILED=1 ;; esac
    summary > "$LOGS/summary.txt"
    [ -n "$OUTDIR" ] && cp "$LOGS/summary.txt" "$OUTDIR/summary.txt"
}
# collect NAME: LOGS/NAME.log appended to OUT/gpu_check.log (head 300 + tail 1500 lines if long)
collect() {
    [ -n "$OUTDIR" ] || return 0
    local f=$LOGS/$1.log n
    n=$(wc -l < "$f")
    {
        echo "=================== $1 ($n lines, at $(($(date +%s) - T0)) s)"
        if [ "$n" -le 1800 ]; then
            cat "$f"
        else
            head -n 300 "$f"
            echo "[... $((n - 1800)) lines cut: logs.tgz or $f has them ...]"
            tail -n 1500 "$f"
        fi
    } >> "$OUTDIR/gpu_check.log"
}
# the last line a part printed (its log ends with "[exit RC]")
lastline() { grep -v '^\[exit [0-9]*\]$' "$1" | tail -n 1; }
status_of() { case $1 in 0) echo ok ;; 77) echo skip ;; 75) echo BUDGET ;; 124 | 137) echo TIME ;; *) echo FAIL ;; esac; }

# part NAME TIMEOUT_S CMD...: runs CMD with a timeout (cut to what is left of the budget), its
# output to LOGS/NAME.log, the tail shown; 75 when the budget is spent (the part is not run)
part() {
    local name=$1 limit=$2 left
    shift 2
    left=$((BUDGET - ($(date +%s) - T0)))
    if [ $left -lt 15 ]; then
        echo "=== $name: skipped, time budget spent"
        echo "skipped: time budget spent" > "$LOGS/$name.log"
        collect "$name"
        return 75
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name: $*"
    { echo "\$ $*"; echo; } > "$LOGS/$name.log"
    timeout --kill-after=10 "$limit" "$@" >> "$LOGS/$name.log" 2>&1
    local rc=$?
    echo "[exit $rc]" >> "$LOGS/$name.log"
    tail -n 30 "$LOGS/$name.log"
    collect "$name"
    return $rc
}

NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
CUDA_HOME=$(cd "$(dirname "$NVCC")/.." 2> /dev/null && pwd)

# where this run comes from and what it runs on, for reading the logs after the machine is gone
{
    echo "date:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $(git -C "$ROOT" rev-parse HEAD 2> /dev/null || echo '?')"
    git -C "$ROOT" status --short --untracked-files=no 2> /dev/null
    echo "host:   $(uname -srm), $(nproc) cores, $(free -g 2> /dev/null | awk '/^Mem/ {print $2 " GiB"}')"
    echo "nvcc:   $("$NVCC" --version 2>&1 | tail -1)"
    echo "cmake:  $(cmake --version 2>&1 | head -1)"
    echo "gcc:    $(gcc --version 2>&1 | head -1)"
    command -v nvidia-smi > /dev/null && nvidia-smi 2>&1
} > "$LOGS/machine.log" 2>&1
[ -n "$OUTDIR" ] && cp "$LOGS/machine.log" "$OUTDIR/machine.txt"

# ---- the minimal build (see the header) ----
min_build() {
    local dir=$BUILD/min obj=$BUILD/min/obj
    mkdir -p "$obj"
    local cuinc=$CUDA_HOME/include culib=$CUDA_HOME/lib64 d
    # the first place that has cuBLAS (toolkits lay their libraries out differently)
    for d in "$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME/targets/x86_64-linux/lib" \
        /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu; do
        if [ -e "$d/libcublas.so" ]; then
            culib=$d
            break
        fi
    done
    echo "minimal build: CUDA headers in $cuinc, libraries in $culib"
    # a CBLAS that compiles and links, with OpenBLAS's thread control (kernels/cpu/dense.c calls
    # openblas_set_num_threads), else the fallback
    local blas_cflags="" blas_libs="" extra_src=""
    printf '#include <cblas.h>\nvoid openblas_set_num_threads(int);\nint main(void){float a=1,b=1,c=0;openblas_set_num_threads(1);cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.0f,&a,1,&b,1,0.0f,&c,1);return c!=1.0f;}\n' > "$obj/blas_probe.c"
    [ "${CGVLM_GPU_FALLBACK_BLAS:-0}" = 1 ] && blas_libs=none # (to test the fallback)
    for inc in "" -I/usr/include/x86_64-linux-gnu/openblas-pthread -I/usr/include/openblas; do
        for lib in -lopenblas -lcblas -lblas; do
            if [ -z "$blas_libs" ] && gcc $inc "$obj/blas_probe.c" -o "$obj/blas_probe" $lib > /dev/null 2>&1 &&
                "$obj/blas_probe"; then
                blas_cflags=$inc blas_libs=$lib
            fi
        done
    done
    if [ -z "$blas_libs" ] || [ "$blas_libs" = none ]; then
        blas_libs=""
        blas_cflags="-I$ROOT/tests/gpu/fallback" extra_src=tests/gpu/fallback/sgemm.c
        echo "minimal build: no CBLAS found, using tests/gpu/fallback/sgemm.c"
    else
        echo "minimal build: CBLAS from $blas_libs $blas_cflags"
    fi
    local csrc="util/util.c util/rng.c core/model.c kernels/gpu_loader.c $(cd "$ROOT" && ls kernels/cpu/*.c tests/gpu/*.c) $extra_src"
    local cflags="-std=gnu17 -O2 -fopenmp -fPIC -I$ROOT -I$cuinc $blas_cflags -DCGVLM_HAVE_CUDA=1"
    (
        cd "$ROOT" || exit 1
        for f in $csrc; do echo "gcc $cflags -c $f -o $obj/$(echo "$f" | tr / _).o"; done
        # the plugin's objects: position-independent, hidden but for its entry point
        echo "gcc -std=gnu17 -O2 -fPIC -fvisibility=hidden -I$ROOT -DCGVLM_HAVE_CUDA=1 -c kernels/cuda/plugin.c -o $obj/plugin_entry.o"
        for f in kernels/cuda/*.cu; do
            echo "$NVCC -O2 -arch=sm_90 -Xcompiler -fPIC,-fvisibility=hidden -I$ROOT -DCGVLM_HAVE_CUDA=1 -c $f -o $obj/$(echo "$f" | tr / _).o"
        done
    ) | xargs -P "$JOBS" -I{} sh -c "echo {}; {}" || return 1
    # libcgvlm_cuda.so next to the binaries, where the loader looks (kernels/gpu_loader.c)
    g++ -shared -o "$dir/libcgvlm_cuda.so" "$obj/plugin_entry.o" "$obj"/kernels_cuda_*.cu.o \
        -L"$culib" -Wl,-rpath,"$culib" -Wl,-Bsymbolic -Wl,--no-undefined \
        -lcublas -lcublasLt -lcudart -lm || return 1
    # the binaries: the loader, and kernels/cuda/ops.cu for the tests that call the kernels
    local common="$obj/kernels_cuda_ops.cu.o"
    for o in "$obj"/*.c.o; do
        case $o in *tests_gpu_test_gpu_* | *tests_gpu_gpu_bench*) ;; *) common="$common $o" ;; esac
    done
    for exe in test_gpu_ops test_gpu_model gpu_bench; do
        g++ -fopenmp -o "$dir/$exe" "$obj/tests_gpu_$exe.c.o" $common -L"$culib" \
            -Wl,-rpath,"$culib" -lcublas -lcublasLt -lcudart $blas_libs -ldl -lpthread -lm || return 1
    done
}

# ---- build ----
MINIMAL=${CGVLM_GPU_MINIMAL:-0}
if [ "$MINIMAL" != 1 ]; then
    if [ "${CGVLM_GPU_REUSE:-0}" = 1 ] && [ -f "$BUILD/CMakeCache.txt" ]; then
        part build 480 nice cmake --build "$BUILD" -j"$JOBS"
        rc=$?
    else
        # no -Werror here: another compiler may warn where the development one does not
        part configure 120 cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_CUDA_ARCHITECTURES=90
        rc=$?
        if [ $rc -ne 0 ]; then
            record "full build" skip "configure failed (missing packages?), see configure.log"
            MINIMAL=1
        else
            part build 480 cmake --build "$BUILD" -j"$JOBS"
            rc=$?
        fi
    fi
    if [ "$MINIMAL" != 1 ]; then
        record "full build" "$(status_of $rc)" "$(($(date +%s) - T0)) s into $BUILD"
        [ $rc -ne 0 ] && MINIMAL=1
    fi
    # a build that did not find nvcc has no CUDA plugin: no use on a GPU machine
    if [ "$MINIMAL" != 1 ] && [ -x "$NVCC" ]; then
        part env 30 "$BUILD/cgvlm" env
        if ! grep -q "CUDA on" "$LOGS/env.log"; then
            record "full build" noCUDA "CMake did not enable CUDA (see configure.log); minimal build"
            MINIMAL=1
        fi
    fi
fi
if [ "$MINIMAL" = 1 ]; then
    export -f min_build
    export ROOT BUILD JOBS NVCC CUDA_HOME
    part build_min 480 bash -c min_build
    rc=$?
    record "minimal build" "$(status_of $rc)" "$(($(date +%s) - T0)) s into $BUILD/min"
    if [ $rc -ne 0 ]; then
        summary
        exit 1
    fi
    BIN=$BUILD/min
else
    BIN=$BUILD/tests/gpu
fi
BENCH=$BIN/gpu_bench

# ---- environment ----
if [ -x "$BUILD/cgvlm" ] && [ "$MINIMAL" != 1 ]; then
    [ -f "$LOGS/env.log" ] || part env 30 "$BUILD/cgvlm" env
    record "cgvlm env" "$(status_of $?)" "$(grep -m1 '^build' "$LOGS/env.log" | sed -E 's/^build +//')"
    # the CUDA plugin (libcgvlm_cuda.so next to cgvlm) must load; its line names the devices
    if grep -q 'cannot load libcgvlm_cuda' "$LOGS/env.log"; then
        record "cuda plugin" FAIL "$(grep -m1 '^cuda' "$LOGS/env.log" | cut -c12-120)"
    else
        record "cuda plugin" ok "$(grep -m1 '^cuda' "$LOGS/env.log" | cut -c12-90)"
    fi
fi
# the tests and the benchmark load the plugin of this build (not one found elsewhere)
if [ "$MINIMAL" = 1 ]; then
    export CGVLM_CUDA_PLUGIN=$BIN/libcgvlm_cuda.so
else
    export CGVLM_CUDA_PLUGIN=$BUILD/libcgvlm_cuda.so
fi
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit,driver_version \
        --format=csv > "$LOGS/nvidia-smi.log" 2>&1
    cat "$LOGS/nvidia-smi.log"
fi
BENCH_ENV="" # (the tests always run with graphs and cuBLASLt: they check both ways themselves)
part probe 60 "$BENCH" --size tiny --stage instruct --prec tf32 --steps 2 --warmup 2
rc=$?
HAVE_GPU=1
if [ $rc -eq 77 ]; then
    HAVE_GPU=0
    record device none "$(grep -m1 'no GPU' "$LOGS/probe.log")"
else
    record device "$(status_of $rc)" "$(lastline "$LOGS/probe.log" | sed -E 's/.* on //' | cut -c1-60)"
    if [ $rc -ne 0 ]; then
        # a training step that fails with CUDA graphs and cuBLASLt epilogues may still run without
        # them: then the benchmarks run that way (and the table says so) rather than not at all
        part probe_plain 60 env CGVLM_CUDA_GRAPHS=0 CGVLM_CUDA_LT=0 "$BENCH" --size tiny \
            --stage instruct --prec tf32 --steps 2 --warmup 2
        rc=$?
        record "device, no graphs/cuBLASLt" "$(status_of $rc)" "$(lastline "$LOGS/probe_plain.log" | cut -c1-60)"
        [ $rc -eq 0 ] && BENCH_ENV="CGVLM_CUDA_GRAPHS=0 CGVLM_CUDA_LT=0"
    fi
fi

# ---- tests (without a GPU they run too, and must report themselves skipped) ----
# (on an H100 each takes well under a minute; the limits only stop a hang from eating the budget)
for t in ops:150 model:240; do
    limit=${t#*:} t=${t%:*}
    part "test_gpu_$t" "$limit" "$BIN/test_gpu_$t"
    rc=$?
    record "test gpu_$t" "$(status_of $rc)" "$(grep -ohE "gpu_$t: [0-9]+ checks, [0-9]+ failed|no GPU: skipped.*" "$LOGS/test_gpu_$t.log" | head -1)"
    grep -E "FAIL" "$LOGS/test_gpu_$t.log" | head -n 20
done

# ---- benchmarks ----
if [ $HAVE_GPU = 1 ] && [ "${CGVLM_GPU_BENCH:-1}" = 1 ]; then
    : > "$LOGS/results.jsonl"
    # every size x stage x precision with the default (matmul) attention, then instruct bf16 with
    # the fused attention
    runs=""
    for size in tiny small base; do
        for stage in align instruct; do
            for prec in tf32 bf16; do runs="$runs $size/$stage/$prec/matmul"; done
        done
    done
    for size in tiny small base; do runs="$runs $size/instruct/bf16/fused"; done
    for run in $runs; do
        IFS=/ read -r size stage prec attn <<< "$run"
        name="bench_${size}_${stage}_${prec}_${attn}"
        part "$name" 90 env $BENCH_ENV "$BENCH" --size "$size" --stage "$stage" --prec "$prec" --attn "$attn" \
            --steps 30 --warmup 3 --json
        rc=$?
        line=$(grep -m1 '^{' "$LOGS/$name.log")
        if [ $rc -eq 0 ] && [ -n "$line" ]; then
            echo "$line" >> "$LOGS/results.jsonl"
            [ -n "$OUTDIR" ] && echo "$line" >> "$OUTDIR/results.jsonl"
            get() { echo "$line" | sed -E "s/.*\"$1\":([0-9.]+).*/\\1/"; }
            [ -n "$BENCH_ENV" ] && run="$run (eager)"
            record "$run" ok "$(get ms_per_step) ms/step (best $(get ms_per_step_best), graph alone $(get graph_ms)), $(get tflops_per_s) TFLOP/s, MFU $(awk "BEGIN{printf \"%.1f\", 100*$(get mfu)}")%; eager f/b/o $(get eager_fwd_ms)/$(get eager_bwd_ms)/$(get eager_opt_ms)"
        else
            record "$run" "$(status_of $rc)" "rc $rc: $(lastline "$LOGS/$name.log" | cut -c1-60)"
        fi
    done
fi

# ---- where the time goes: one eager step by section, and the LM's products alone ----
if [ $HAVE_GPU = 1 ] && [ "${CGVLM_GPU_BENCH:-1}" = 1 ]; then
    for size in tiny small base; do
        part "sections_$size" 60 env $BENCH_ENV "$BENCH" --size "$size" --stage instruct --prec tf32 \
            --steps 5 --warmup 2 --sections
        rc=$?
        # the three largest sections, "name ms share"
        top=$(awk '/^section/ {on = 1; next}
            on && NF >= 4 && $1 != "all" {name = $1; for (i = 2; i <= NF - 3; i++) name = name " " $i
                printf "%s%s %s ms %s", sep, name, $(NF-1), $NF; sep = "; "; if (++k == 3) exit}' "$LOGS/sections_$size.log")
        record "sections $size/instruct/tf32" "$(status_of $rc)" "$top"
        part "gemm_$size" 90 "$BENCH" --gemm --size "$size"
        rc=$?
        record "products $size (tf32 vs bf16 TF/s)" "$(status_of $rc)" "$(awk '/^fc forward/ {print "fc fwd " $10 " / " $14 " / " $18 " TF (tf32 / bf16-on-fp32 / bf16)"}' "$LOGS/gemm_$size.log")"
    done
fi

# ---- compute-sanitizer ----
SAN=$CUDA_HOME/bin/compute-sanitizer
command -v compute-sanitizer > /dev/null && SAN=$(command -v compute-sanitizer)
if [ $HAVE_GPU = 1 ] && [ "${CGVLM_GPU_SANITIZE:-1}" = 1 ]; then
    if [ -x "$SAN" ]; then
        part memcheck_ops 150 "$SAN" --tool memcheck --error-exitcode 9 "$BIN/test_gpu_ops"
        rc=$?
        record "memcheck test_gpu_ops" "$(status_of $rc)" "exit $rc; $(grep -m1 'ERROR SUMMARY' "$LOGS/memcheck_ops.log" | sed 's/^=* *//')"
        part memcheck_model 200 env CGVLM_GPU_TEST_QUICK=1 "$SAN" --tool memcheck --error-exitcode 9 "$BIN/test_gpu_model"
        rc=$?
        record "memcheck test_gpu_model quick" "$(status_of $rc)" "exit $rc; $(grep -m1 'ERROR SUMMARY' "$LOGS/memcheck_model.log" | sed 's/^=* *//')"
    else
        record memcheck skip "no compute-sanitizer at $SAN"
    fi
fi

echo
summary | tee "$LOGS/summary.txt"
if [ -n "$OUTDIR" ]; then
    cp "$LOGS/summary.txt" "$OUTDIR/summary.txt"
    tar -czf "$OUTDIR/logs.tgz" -C "$LOGS" . 2> /dev/null
fi
exit $FAILED
