#!/usr/bin/env bash
# bench/gpu_e2e.sh: the end-to-end check of the cgvlm binary on a GPU machine (runs THERE, from
# the repository root, after bench/gpu_check.sh). The binary is the one bench/gpu_carry.sh packed
# here into .gpu-carry/ (the GPU image cannot build the full cgvlm); its libraries are unpacked
# into /tmp/cgvlm-libs and put on LD_LIBRARY_PATH for cgvlm only, and cgvlm loads the CUDA plugin
# that bench/gpu_check.sh built there. Steps, each with a timeout, none started once the budget
# is spent:
#   libs     the carried libraries unpacked; cgvlm resolves every library (ldd)
#   env      `cgvlm env`: is the plugin loaded, is the GPU seen?
#   run_gpu  the tiny experiment end to end (world, lm_pretrain, vit_pretrain, align, instruct,
#            eval) with --device cuda into gpu.db / ws-gpu, timed
#   run_cpu  the same experiment, same seed, with --device cpu into cpu.db / ws-cpu, timed
#   compare  bench/compare_runs.py gpu.db cpu.db: loss curves and eval figures side by side,
#            fails beyond its tolerances (final loss 2 % or 0.02 nats: see its header)
#   sweep    the quick ablation sweep with --device cuda into sweep-gpu.db / ws-sweep, timed
#   report   `cgvlm report` of that sweep (without gnuplot: no figures, a warning, exit 0)
# and at the end the dbs (plus the report's text and the workers' logs) into e2e_dbs.tgz.
#
# Environment:
#   CGVLM_E2E_DEVICE=cuda|cpu  the device of the "GPU" half (default cuda; cpu rehearses the
#                         whole script on a machine without a GPU)
#   CGVLM_CUDA_PLUGIN=PATH the plugin (default: build-gpu/min/libcgvlm_cuda.so, else
#                         build-gpu/libcgvlm_cuda.so, both from bench/gpu_check.sh, else the
#                         fallback .gpu-carry/libcgvlm_cuda.so built with the carried binary)
#   CGVLM_E2E_BUDGET_S=N  start no new step after N seconds (default 240)
#   CGVLM_E2E_SETS="P=V ..."  --set overrides of the two single runs (default: a shortened tiny
#                         run, see SETS below; "none" for the experiment as it is)
#   CGVLM_E2E_EXPERIMENT=FILE  (default experiments/cgvlm-tiny.json)
#   CGVLM_E2E_SWEEP=FILE  (default sweeps/cgvlm-ablation-quick.json); CGVLM_E2E_SWEEP_ARGS extra
#                         `cgvlm sweep` options (e.g. "--workers 4")
#   CGVLM_E2E_SKIP="sweep report ..."  steps not to run
#   CGVLM_E2E_DIR=DIR     where the dbs and workspaces go (default e2e-work; emptied first)
#   CGVLM_CARRY=DIR       the bundle (default .gpu-carry);  CGVLM_E2E_LIBS=DIR (default
#                         /tmp/cgvlm-libs)
#   OUT=DIR               (the device tool's) receives e2e.log (every step's log appended as it
#                         ends), e2e_summary.txt (the table, rewritten after every step) and
#                         e2e_dbs.tgz; without OUT they go to e2e-out/. Three files: with
#                         gpu_check.sh's five, the tool's limit of eight.
# Exit status: 0 when every step passed, 1 when one failed, timed out or was cut by the budget.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
T0=$(date +%s)
DEVICE=${CGVLM_E2E_DEVICE:-cuda}
BUDGET=${CGVLM_E2E_BUDGET_S:-240}
CARRY=${CGVLM_CARRY:-$ROOT/.gpu-carry}
LIBS=${CGVLM_E2E_LIBS:-/tmp/cgvlm-libs}
WORK=${CGVLM_E2E_DIR:-$ROOT/e2e-work}
EXPERIMENT=${CGVLM_E2E_EXPERIMENT:-experiments/cgvlm-tiny.json}
SWEEP=${CGVLM_E2E_SWEEP:-sweeps/cgvlm-ablation-quick.json}
SKIP=" ${CGVLM_E2E_SKIP:-} "
BIN=$CARRY/cgvlm
# The tiny experiment shortened to about a third of its CPU time (on 2 shared cores ~55 s instead
# of ~200 s; docs/PERFORMANCE.md): lm_pretrain, align and instruct shortened (each still well past
# its warmup), the eval on 200 of the 600 questions. vit_pretrain keeps its 400 steps (5 s): cut to
# 100 its contrastive loss is still falling steeply at the end, where TF32's drift alone moved it
# by 12 % in the emulation (bench/compare_runs.py's header).
SETS=${CGVLM_E2E_SETS:-"lm_pretrain.steps=200 align.steps=150 instruct.fraction=0.25 eval.max_questions=200"}
[ "$SETS" = none ] && SETS=""
case $DEVICE in cuda | cuda:* | cpu) ;; *)
    echo "gpu_e2e: CGVLM_E2E_DEVICE='$DEVICE': use cuda, cuda:N or cpu" >&2
    exit 2
    ;;
esac

if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then OUTDIR=$OUT; else OUTDIR=$ROOT/e2e-out; fi
mkdir -p "$OUTDIR" || exit 1
LOG=$OUTDIR/e2e.log SUMMARY=$OUTDIR/e2e_summary.txt
rm -f "$LOG" "$SUMMARY" "$OUTDIR/e2e_dbs.tgz"
rm -rf "$WORK"
mkdir -p "$WORK/logs" || exit 1

RESULTS=()
FAILED=0
summary() {
    echo "=== gpu_e2e summary ($(($(date +%s) - T0)) s of budget $BUDGET s; device $DEVICE; logs in $WORK/logs)"
    printf '%s\n' "${RESULTS[@]}"
}
# record NAME STATUS DETAIL: a row of the table, the table rewritten
record() {
    RESULTS+=("$(printf '%-10s %-6s %s' "$1" "$2" "$3")")
    case $2 in ok | skip | warn) ;; *) FAILED=1 ;; esac
    summary > "$SUMMARY"
}
status_of() { case $1 in 0) echo ok ;; 75) echo BUDGET ;; 124 | 137) echo TIME ;; *) echo FAIL ;; esac; }
lastline() { grep -v '^\[exit [0-9]*\]$' "$1" | grep -v '^$' | tail -n 1 | cut -c1-110; }

# step NAME LIMIT_S CMD...: CMD in WORK with a timeout (cut to what is left of the budget), its
# output to WORK/logs/NAME.log, appended to OUT/e2e.log when it ends, its tail shown; 75 when the
# budget is spent (not run). STEP_S: its wall seconds.
STEP_S=0
step() {
    local name=$1 limit=$2 left rc t
    shift 2
    left=$((BUDGET - ($(date +%s) - T0)))
    if [ $left -lt 10 ]; then
        echo "=== $name: not started, the time budget ($BUDGET s) is spent"
        echo "=================== $name: not started, the time budget ($BUDGET s) is spent" >> "$LOG"
        STEP_S=0
        return 75
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit $limit s): $*"
    { echo "\$ $*"; echo; } > "$WORK/logs/$name.log"
    t=$(date +%s.%N)
    (cd "$WORK" && timeout --kill-after=10 "$limit" "$@") >> "$WORK/logs/$name.log" 2>&1
    rc=$?
    STEP_S=$(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t}")
    echo "[exit $rc]" >> "$WORK/logs/$name.log"
    tail -n 25 "$WORK/logs/$name.log"
    {
        echo "=================== $name ($STEP_S s, exit $rc, at $(($(date +%s) - T0)) s)"
        if [ "$(wc -l < "$WORK/logs/$name.log")" -le 600 ]; then
            cat "$WORK/logs/$name.log"
        else
            head -n 100 "$WORK/logs/$name.log"
            echo "[... cut: e2e_dbs.tgz has the whole log ...]"
            tail -n 400 "$WORK/logs/$name.log"
        fi
    } >> "$LOG"
    return $rc
}
skipped() { case $SKIP in *" $1 "*) record "$1" skip "CGVLM_E2E_SKIP"; return 0 ;; esac; return 1; }

# ---- the bundle and the plugin ----
PLUGIN=${CGVLM_CUDA_PLUGIN:-}
if [ -z "$PLUGIN" ]; then
    for p in "$ROOT/build-gpu/min/libcgvlm_cuda.so" "$ROOT/build-gpu/libcgvlm_cuda.so" "$CARRY/libcgvlm_cuda.so"; do
        if [ -f "$p" ]; then PLUGIN=$p; break; fi
    done
fi
# the CUDA libraries' directory (as gpu_check.sh looks for it), after the carried ones: the
# fallback plugin was linked where they are on the development machine
CUDA_LIBDIR=
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
CUDA_HOME=$(cd "$(dirname "$NVCC")/.." 2> /dev/null && pwd)
for d in "$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME/targets/x86_64-linux/lib" /usr/local/cuda/lib64 \
    /usr/local/cuda/lib; do
    if ls "$d"/libcublas.so.* > /dev/null 2>&1; then CUDA_LIBDIR=$d; break; fi
done
{
    echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit:  $(git rev-parse HEAD 2> /dev/null || echo '?')"
    echo "host:    $(uname -srm), $(nproc) cores, $(ldd --version 2> /dev/null | head -1)"
    echo "device:  $DEVICE;  budget $BUDGET s"
    echo "binary:  $BIN"
    echo "plugin:  ${PLUGIN:-none found} $([ -n "$PLUGIN" ] && stat -c '(%s bytes, %y)' "$PLUGIN" 2> /dev/null)"
    echo "cuda:    libraries in ${CUDA_LIBDIR:-?}"
    echo "sets:    ${SETS:-none}"
    [ -f "$CARRY/MANIFEST" ] && sed -n '1,3p' "$CARRY/MANIFEST" | sed 's/^/bundle:  /'
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} | tee "$LOG"
cat "$LOG" > "$WORK/logs/machine.log"

if [ ! -x "$BIN" ] || [ ! -f "$CARRY/libs.tar.xz" ]; then
    record bundle FAIL "no $BIN or $CARRY/libs.tar.xz: run bash bench/gpu_carry.sh on the development machine and carry .gpu-carry"
    summary
    exit 1
fi
# the plugin built here and the carried binary must come from the same sources (the plugin checks
# its ABI and the sizes of the shared structs, not the code): say so when the commits differ
packed=$(sed -nE 's/^commit: ([0-9a-f]+).*/\1/p' "$CARRY/MANIFEST" 2> /dev/null)
here=$(git rev-parse HEAD 2> /dev/null)
if [ -n "$packed" ] && [ -n "$here" ] && [ "$packed" != "$here" ]; then
    record bundle warn "packed at commit ${packed:0:12}, the tree here is at ${here:0:12}: rerun bench/gpu_carry.sh?"
fi
CG=(env "LD_LIBRARY_PATH=$LIBS${CUDA_LIBDIR:+:$CUDA_LIBDIR}" "CGVLM_CUDA_PLUGIN=$PLUGIN" "$BIN")

# shellcheck disable=SC2317 # (run through step's bash -c)
unpack() {
    rm -rf "$LIBS" && mkdir -p "$LIBS" || return 1
    if command -v xz > /dev/null; then
        tar -C "$LIBS" -xJf "$CARRY/libs.tar.xz" || return 1
    else # (a minimal image may lack xz-utils: Python's tarfile reads .xz with its lzma module)
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
            "$CARRY/libs.tar.xz" "$LIBS" || return 1
    fi
    # the compiler's runtime: this system's own is newer, and the plugin's libstdc++ (built here)
    # may need its newer symbols; the carried copy only serves a system without one
    if { ldconfig -p || /sbin/ldconfig -p; } 2> /dev/null | grep -q 'libgcc_s.so.1 '; then rm -f "$LIBS/libgcc_s.so.1"; fi
    echo "unpacked $(ls "$LIBS" | wc -l) libraries into $LIBS"
    env LD_LIBRARY_PATH="$LIBS" ldd "$BIN" | tee "$WORK/logs/ldd.txt"
    ! grep -q 'not found' "$WORK/logs/ldd.txt"
}
export -f unpack
export LIBS CARRY BIN WORK
step libs 60 bash -c unpack
rc=$?
if [ $rc -ne 0 ]; then
    record libs "$(status_of $rc)" "$(grep -m1 'not found' "$WORK/logs/ldd.txt" 2> /dev/null || lastline "$WORK/logs/libs.log")"
    summary
    exit 1
fi
record libs ok "$(grep -c "=> $LIBS/" "$WORK/logs/ldd.txt") from the bundle, $(grep -c '=> /' "$WORK/logs/ldd.txt") in all"

# ---- a. cgvlm env ----
step env 30 "${CG[@]}" env
rc=$?
cuda_line=$(grep -m1 '^cuda' "$WORK/logs/env.log" | sed -E 's/^cuda +//' | cut -c1-100)
if [ $rc -ne 0 ]; then
    record env "$(status_of $rc)" "$(lastline "$WORK/logs/env.log")"
elif [ "$DEVICE" = cpu ]; then
    record env ok "cuda: ${cuda_line:-?} (not needed: device cpu)"
elif [ -z "$PLUGIN" ] || grep -q 'cannot load\|no GPU\|without CUDA' <<< "$cuda_line"; then
    record env FAIL "no usable GPU: ${cuda_line:-no cuda line}; plugin ${PLUGIN:-not found (run bench/gpu_check.sh first)}"
else
    record env ok "cuda: $cuda_line"
fi

# ---- b. one tiny experiment on the device and on the CPU ----
set_args=()
for s in $SETS; do set_args+=(--set "$s"); done
# run NAME DEVICE DB WS LIMIT: the experiment end to end; a row with the wall time and stage times
run_exp() {
    local name=$1 dev=$2 db=$3 ws=$4 limit=$5
    skipped "$name" && return 0
    step "$name" "$limit" "${CG[@]}" run "$ROOT/$EXPERIMENT" "${set_args[@]}" --device "$dev" --db "$db" --workspace "$ws"
    local rc=$?
    # the scheduler's "done     align   KEY (attempt 1, 42.3 s)" lines, as "align 42.3"
    local stages
    stages=$(awk '$1 == "done" && $4 == "(attempt" {sub(/,/, "", $5); printf "%s%s %s", sep, $2, $6; sep = ", "}' "$WORK/logs/$name.log")
    if [ $rc -eq 0 ]; then
        record "$name" ok "$STEP_S s wall (--device $dev): $stages"
    elif [ $rc -eq 75 ]; then
        record "$name" BUDGET "not started: the time budget ($BUDGET s) is spent"
    else
        # the first error cgvlm printed, else the scheduler's last line
        local why
        why=$(grep -m1 -E '^(cgvlm|error|failed)' "$WORK/logs/$name.log" | cut -c1-110)
        record "$name" "$(status_of $rc)" "$STEP_S s, exit $rc: ${why:-$(lastline "$WORK/logs/$name.log")}"
    fi
    return $rc
}
run_exp run_gpu "$DEVICE" gpu.db ws-gpu 150
rc_gpu=$?
run_exp run_cpu cpu cpu.db ws-cpu 180
rc_cpu=$?

# ---- c. the two runs side by side ----
if ! skipped compare; then
    if [ $rc_gpu -ne 0 ] || [ $rc_cpu -ne 0 ] || [ ! -f "$WORK/gpu.db" ] || [ ! -f "$WORK/cpu.db" ]; then
        record compare skip "a run failed or was skipped: nothing to compare"
    else
        PY=$(command -v python3 || echo /usr/bin/python3)
        step compare 60 "$PY" "$ROOT/bench/compare_runs.py" gpu.db cpu.db
        rc=$?
        if [ $rc -eq 0 ]; then
            record compare ok "$(grep -E '^(align|instruct) +loss ' "$WORK/logs/compare.log" |
                awk '{printf "%s%s final %s vs %s (%s)", sep, $1, $6, $7, $8; sep = "; "}')"
        else
            record compare "$(status_of $rc)" "$(grep -m1 -A1 '^DIFFERENT' "$WORK/logs/compare.log" | tail -1 | sed 's/^ *//' | cut -c1-110)"
        fi
    fi
fi

# ---- d. the quick ablation sweep on the device, and its report ----
if ! skipped sweep; then
    # shellcheck disable=SC2086 # (CGVLM_E2E_SWEEP_ARGS: options, split on purpose)
    step sweep 600 "${CG[@]}" sweep "$ROOT/$SWEEP" --device "$DEVICE" --db sweep-gpu.db --workspace ws-sweep ${CGVLM_E2E_SWEEP_ARGS:-}
    rc=$?
    n=$(grep -c '^done ' "$WORK/logs/sweep.log" 2> /dev/null)
    if [ $rc -eq 75 ]; then
        record sweep BUDGET "not started: the time budget ($BUDGET s) is spent"
    else
        record sweep "$(status_of $rc)" "$STEP_S s wall, $n tasks done (--device $DEVICE)$([ $rc -ne 0 ] && echo ": $(lastline "$WORK/logs/sweep.log")")"
    fi
    if ! skipped report; then
        if [ $rc -ne 0 ]; then
            record report skip "the sweep did not finish"
        else
            name=$(sed -nE 's/.*"name": *"([^"]+)".*/\1/p' "$ROOT/$SWEEP" | head -1)
            step report 60 "${CG[@]}" report --sweep "$name" --db sweep-gpu.db --out report-sweep --bootstrap 200
            rc=$?
            figs=$(ls "$WORK/report-sweep"/*.png 2> /dev/null | wc -l)
            if [ $rc -eq 0 ]; then
                record report ok "$figs figures$(grep -q 'gnuplot not found' "$WORK/logs/report.log" && echo ' (gnuplot not found: text and CSV only)'), report.md $(wc -l < "$WORK/report-sweep/report.md" 2> /dev/null || echo 0) lines"
            else
                record report "$(status_of $rc)" "$(lastline "$WORK/logs/report.log")"
            fi
        fi
    fi
fi

# ---- e. the dbs, the report's text and the logs ----
(
    cd "$WORK" || exit 1
    # a db's WAL folded in, so that the copy is one file
    PY=$(command -v python3 || echo /usr/bin/python3)
    for db in gpu.db cpu.db sweep-gpu.db; do
        [ -f "$db" ] && "$PY" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()" "$db" 2> /dev/null
    done
    files=$(ls -d gpu.db cpu.db sweep-gpu.db logs report-sweep/*.md report-sweep/*.csv ws-*/logs 2> /dev/null)
    # shellcheck disable=SC2086
    [ -n "$files" ] && tar -czf "$OUTDIR/e2e_dbs.tgz" $files
)
if [ -f "$OUTDIR/e2e_dbs.tgz" ]; then
    record dbs ok "$OUTDIR/e2e_dbs.tgz ($(stat -c %s "$OUTDIR/e2e_dbs.tgz") bytes)"
else
    record dbs FAIL "nothing to pack"
fi

echo
summary | tee "$SUMMARY"
# each failure in words
[ $FAILED -ne 0 ] && printf '%s\n' "${RESULTS[@]}" | awk '$2 != "ok" && $2 != "skip" && $2 != "warn" {print "gpu_e2e: failed: " $0}' >&2
exit $FAILED
