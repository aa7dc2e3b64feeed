# lib.sh: shared helpers of the Slurm tests (sourced after setting PORT_BASE; $1 = the cgvlm
# binary). Starts a private single-node cluster (cluster.sh) on ports PORT_BASE, PORT_BASE+1 and
# stops it on exit; exits 77 (skip) when the Slurm or munge binaries are missing.
set -u
BIN=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d /tmp/cgvlm-test-slurm.XXXXXX)
CLUSTER=$TMP/cluster
failed=0
bg_pids=""
cleanup() {
    for p in $bg_pids; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    bash "$HERE/cluster.sh" stop "$CLUSTER" >/dev/null 2>&1
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
contains() { case "$out" in *"$2"*) ;; *) fail "$1: output lacks '$2': $out";; esac; }
q() { sqlite3 -cmd ".timeout 30000" "$DB" "$1"; }
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
start_cluster() {
    local envs rc
    envs=$(CGVLM_SLURMCTLD_PORT=$PORT_BASE CGVLM_SLURMD_PORT=$((PORT_BASE + 1)) bash "$HERE/cluster.sh" start "$CLUSTER")
    rc=$?
    if [ $rc = 77 ]; then echo "SKIP: no Slurm binaries"; exit 77; fi
    [ $rc = 0 ] || { echo "FAIL: cannot start the test cluster: $envs"; tail -5 "$CLUSTER"/log/*.log; exit 1; }
    eval "$envs"
    JOBCOMP=$CLUSTER/log/jobcomp.txt
}
# The Slurm job id of the running attempt of the task KEY (empty until submitted).
job_of() { q "SELECT job_id FROM tasks WHERE key = '$1' AND state = 'running'"; }
