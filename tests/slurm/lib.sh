# lib.sh: shared helpers of the Slurm tests (sourced after setting PORT_BASE; $1 = the cgvlm
# binary). Starts a private single-node cluster (cluster.sh) on ports PORT_BASE, PORT_BASE+1 and
# stops it on exit; exits 77 (skip) when the Slurm or munge binaries are missing.
LIB_NAME=slurm
source "$(dirname "${BASH_SOURCE[0]}")/../sched/lib.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER=$TMP/cluster
cleanup_more() { bash "$HERE/cluster.sh" stop "$CLUSTER" >/dev/null 2>&1; }
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
