#!/usr/bin/env bash
# test_slurm_run.sh: `cgvlm run --backend slurm` with the options `cgvlm sweep` has (one parser,
# sweeps/sched_cli.h): one Slurm job per task attempt, --partition, --slurm-arg (the job uses the
# CPUs it was given), --device in every job's spec, --device cuda asks Slurm for a GPU (this test
# cluster has none: sbatch's refusal is the error), a re-run submits nothing, and the misuse errors.
PORT_BASE=17360
. "$(dirname "$0")/lib.sh"
cd "$TMP"
DB=$TMP/r.db
printf '{"name": "r", "pipeline": "noop", "noop": {"metrics": true, "sleep_ms": 50}}\n' > exp.json

# misuse, before any cluster: one line, exit 2, nothing created
expect 2 "run slurm options without slurm" -- "$BIN" run exp.json --db "$DB" --workspace ws --account a
contains "without slurm" "run: --partition, --account and --slurm-arg need --backend slurm"
expect 2 "run no sbatch" -- env PATH="$TMP" "$BIN" run exp.json --db "$DB" --workspace ws --backend slurm
contains "run no sbatch" "sbatch not found on PATH"
[ ! -e "$DB" ] || [ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'running'")" = 0 ] || fail "misuse left running tasks"

start_cluster
expect 2 "run unknown partition" -- "$BIN" run exp.json --db "$DB" --workspace ws --backend slurm --partition nope
contains "run unknown partition" "unknown Slurm partition 'nope'"
expect 0 "run through slurm" -- "$BIN" run exp.json --db "$DB" --workspace ws --backend slurm --partition debug \
    --slurm-arg=--cpus-per-task=2 --device cpu --max-attempts 2 --time-limit 120
contains "run through slurm" "one Slurm job per task attempt"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'done'")" = 6 ] || fail "tasks: $(q 'SELECT kind, state, error FROM tasks')"
[ "$(q "SELECT COUNT(DISTINCT job_id) FROM task_attempts WHERE job_id IS NOT NULL")" = 6 ] \
    || fail "not one job per attempt: $(q 'SELECT task_id, attempt, job_id FROM task_attempts')"
[ "$(q "SELECT COUNT(*) FROM metrics")" -gt 0 ] || fail "no metrics ingested"
job=$(q "SELECT job_id FROM task_attempts LIMIT 1")
info=$(scontrol -o show job "$job")
case "$info" in *"Partition=debug"*"NumCPUs=2"*|*"NumCPUs=2"*"Partition=debug"*) ;; *) fail "job $job: $info";; esac
case "$info" in *"TimeLimit=00:02:00"*) ;; *) fail "--time-limit 120 is not the job's --time: $info";; esac
n=$(cat ws/slurm/*.out | grep -c 'device cpu, 2 thread(s)')
[ "$n" = 6 ] || fail "jobs using the 2 CPUs on device cpu: $n of 6: $(cat ws/slurm/*.out)"
n=$(grep -l '"device":"cpu"' ws/slurm/*.json | wc -l)
[ "$n" = 6 ] || fail "specs with device cpu: $n of 6"
[ "$(q "SELECT DISTINCT json_extract(config_json, '$.device') FROM runs")" = cpu ] || fail "the run's config device"

# again: everything reused, nothing submitted
n0=$(squeue -h -t all -o %i | wc -l)
expect 0 "re-run" -- "$BIN" run exp.json --db "$DB" --workspace ws --backend slurm
contains "re-run" "(0 run now"
[ "$(squeue -h -t all -o %i | wc -l)" = "$n0" ] || fail "the re-run submitted jobs"

# --device cuda: every job asks for a GPU (--gres=gpu:1); this cluster has none, sbatch says so
printf '{"name": "g", "pipeline": "noop", "world": {"seed": 5}}\n' > gpu.json
expect 2 "run --device cuda" -- "$BIN" run gpu.json --db "$DB" --workspace ws --backend slurm --device cuda
contains "run --device cuda" "sbatch refused task noop"
[ "$(printf '%s\n' "$out" | grep -ci 'gres')" -ge 1 ] || fail "the refusal does not name the GPU request: $out"
grep -q '"device":"cuda"' ws/slurm/*.json || fail "no spec with device cuda"
[ -z "$(squeue -h -o %i)" ] || fail "jobs left: $(squeue)"
finish slurm_run
