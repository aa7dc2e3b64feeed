# lib.sh: shared helpers of the scheduler's shell tests, and of the Slurm tests that build on them
# (sourced; $1 of the test = the cgvlm binary). A sourcing script may set LIB_NAME (names the
# temporary directory) and define cleanup_more (runs on exit before the directory goes).
set -u
BIN=$1
TMP=$(mktemp -d "/tmp/cgvlm-test-${LIB_NAME:-sched}.XXXXXX")
failed=0
bg_pids=""
cleanup() {
    for p in $bg_pids; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    if declare -F cleanup_more >/dev/null; then cleanup_more; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; failed=1; }
# expect STATUS DESCRIPTION -- command...: runs it, keeps its output in $out.
expect() {
    local want=$1 what=$2; shift 3
    out=$("$@" 2>&1); local got=$?
    if [ "$got" != "$want" ]; then fail "$what: exit $got, want $want; output: $out"; fi
}
# contains DESCRIPTION NEEDLE: $out must contain NEEDLE.
contains() { case "$out" in *"$2"*) ;; *) fail "$1: output lacks '$2': $out";; esac; }
q() { sqlite3 -cmd ".timeout 30000" "$DB" "$1"; }
# wait_until SECONDS SHELL-CONDITION: polls every 50 ms; 1 on timeout.
wait_until() {
    local end=$(( $(date +%s) + $1 ))
    while ! eval "$2" 2>/dev/null; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.05
    done
}
finish() {
    [ $failed = 0 ] && echo "$1: ok"
    exit $failed
}
