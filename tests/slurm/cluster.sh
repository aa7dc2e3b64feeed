#!/usr/bin/env bash
# cluster.sh: a real single-node Slurm cluster (munge, slurmctld, slurmd from Debian's packages)
# for tests, everything under one private directory, stopped by pid (never by name).
#
#   cluster.sh start DIR   start it; prints the lines to eval (export SLURM_CONF=...)
#   cluster.sh stop DIR    cancel every job, stop the daemons by their pid files
#   cluster.sh env DIR     print the environment lines again
#
# Facts behind the settings: ../shared/notes/slurm.md (proctrack/pgid, batch_sched_delay=0,
# CR_Core, RealMemory under what slurmd sees, no sacct without slurmdbd).
set -euo pipefail

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
node=$(hostname -s)

env_lines() {
    echo "export SLURM_CONF=$dir/etc/slurm.conf"
    echo "export CGVLM_SLURM_DIR=$dir"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    local t=0
    until "$@" >/dev/null 2>&1; do
        sleep 0.1; t=$((t + 1))
        if [ $t -ge $((limit * 10)) ]; then echo "cluster.sh: timed out waiting for $what" >&2; return 1; fi
    done
}

start() {
    for p in munged mungekey slurmctld slurmd sbatch squeue scontrol; do
        command -v $p >/dev/null || [ -x /usr/sbin/$p ] || { echo "cluster.sh: $p not found; install slurmctld slurmd slurm-client munge" >&2; exit 77; }
    done
    export PATH=$PATH:/usr/sbin
    mkdir -p "$dir"/{munge,etc,log,spool/ctld,spool/d,run}
    chmod 0755 "$dir/munge"
    if [ ! -f "$dir/munge/munge.key" ]; then
        mungekey --create --keyfile "$dir/munge/munge.key" >/dev/null 2>&1 || mungekey -c -k "$dir/munge/munge.key"
    fi
    chmod 0600 "$dir/munge/munge.key"
    munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed" --force
    wait_for 10 munge bash -c "munge -S '$dir/munge/munge.sock' -n | unmunge -S '$dir/munge/munge.sock'"

    local mem_kb mem_mb
    mem_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
    mem_mb=$((mem_kb * 9 / 10 / 1024))
    cat > "$dir/etc/slurm.conf" <<CONF
ClusterName=cgvlmtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=${CGVLM_SLURMCTLD_PORT:-6817}
SlurmdPort=${CGVLM_SLURMD_PORT:-6818}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.sock
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MinJobAge=3600
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir/etc/slurm.conf"
    slurmctld -c -f "$SLURM_CONF"
    wait_for 20 "slurmctld" bash -c "scontrol ping | grep -q UP"
    slurmd -f "$SLURM_CONF" -N "$node"
    wait_for 20 "an idle node" bash -c "sinfo -h -n '$node' -o %T | grep -Eq '^idle'"
    env_lines
}

stop() {
    export PATH=$PATH:/usr/sbin
    export SLURM_CONF="$dir/etc/slurm.conf"
    if [ -f "$SLURM_CONF" ] && [ -f "$dir/run/slurmctld.pid" ]; then
        scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
    fi
    # TERM the Slurm daemons together (slurmctld alone takes ~5 s), then munged once they are gone
    for group in "slurmd slurmctld" munged; do
        pids=""
        for d in $group; do
            f="$dir/run/$d.pid"
            [ -f "$f" ] || continue
            pid=$(cat "$f")
            kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null && pids="$pids $pid"
            rm -f "$f"
        done
        for pid in $pids; do
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
}

case $cmd in
    start) start ;;
    stop) stop ;;
    env) env_lines ;;
    *) echo "usage: $0 start|stop|env DIR" >&2; exit 2 ;;
esac
