#!/usr/bin/env bash
# bench.sh: per-task overhead of the Slurm backend next to the local one, on a private
# single-node cluster (cluster.sh) started and stopped here. Not a test (no pass/fail): the figures
# go to docs/PERFORMANCE.md.   usage: bash tests/slurm/bench.sh BUILD/cgvlm [TASKS]
set -euo pipefail
BIN=$(realpath "$1"); TASKS=${2:-48}
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d /tmp/cgvlm-bench-slurm.XXXXXX)
trap 'bash "$HERE/cluster.sh" stop "$DIR/cluster" >/dev/null 2>&1; rm -rf "$DIR"' EXIT
envs=$(CGVLM_SLURMCTLD_PORT=${CGVLM_SLURMCTLD_PORT:-17390} CGVLM_SLURMD_PORT=${CGVLM_SLURMD_PORT:-17391} \
       bash "$HERE/cluster.sh" start "$DIR/cluster")
eval "$envs"
slots=$(sinfo -h -o %c | head -1)
echo "node: $slots CPUs in Slurm; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for backend in local slurm; do
    # CPU time includes the children the scheduler waited for (workers; sbatch, squeue, scontrol)
    /usr/bin/time -f "$backend: scheduler CPU %U s user + %S s sys, wall %e s" \
        "$BIN" bench sched --backend $backend --tasks "$TASKS" --workers "$slots"
done
# Slurm alone: the same shape (chains of 6 jobs, afterok) of `true` jobs, sbatch and squeue only
t0=$(date +%s.%N)
for c in $(seq $(( (TASKS + 5) / 6 ))); do
    prev=""
    for s in 1 2 3 4 5 6; do
        prev=$(sbatch --parsable -o /dev/null ${prev:+--dependency=afterok:$prev} --wrap true)
    done
done
while [ -n "$(squeue -h -o %i)" ]; do sleep 0.05; done
echo "slurm alone: $(( (TASKS + 5) / 6 * 6 )) chained 'true' jobs in $(echo "$(date +%s.%N) - $t0" | bc -l | cut -c1-5) s"
