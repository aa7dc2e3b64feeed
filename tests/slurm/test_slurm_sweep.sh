#!/usr/bin/env bash
# test_slurm_sweep.sh: a small noop sweep (metrics, evals, one stage crashing on its first attempt)
# runs to completion through a real Slurm cluster, one batch job per attempt chained with afterok,
# and leaves the same results in its db as the local backend leaves in another: task keys, states
# and attempts, runs, every metric and eval value, artifact digests. A re-run submits nothing.
# Then a real micro experiment (tiny model, a few steps, a small world: tests/stages/test_e2e.sh's)
# gives the same losses, evaluations and predictions through Slurm as locally.
PORT_BASE=17310
. "$(dirname "$0")/lib.sh"
start_cluster
cd "$TMP"
cat > s.json <<JSON
{"name": "s", "base": {"pipeline": "noop",
  "noop": {"sleep_ms": 100, "metrics": true, "crash_stage": "lm_pretrain"}},
 "axes": {"align.lambda": [0, 1], "instruct.fraction": [0.5, 1]}, "seeds": [0],
 "resources": {"noop": {"cpus": 1, "mem": "64M", "time": "0:10:00"}}}
JSON
DB=$TMP/slurm.db
expect 0 "slurm sweep" -- "$BIN" sweep s.json --db slurm.db --workspace ws-slurm --backend slurm --partition debug \
    --slurm-arg=--comment=cgvlm-test
contains "slurm sweep" "all 13 tasks done"
expect 0 "local sweep" -- "$BIN" sweep s.json --db local.db --workspace ws-local --workers 2

[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'done'")" = 13 ] || fail "slurm: want 13 done tasks: $(q "SELECT state, COUNT(*) FROM tasks GROUP BY 1")"
# every attempt had its own job, recorded with the task and the attempt
[ "$(q "SELECT COUNT(*) FROM task_attempts WHERE job_id IS NULL")" = 0 ] || fail "attempts without a job id"
[ "$(q "SELECT COUNT(DISTINCT job_id) FROM task_attempts")" = "$(q "SELECT SUM(attempts) FROM tasks")" ] || fail "job ids not one per attempt"
# one job ran per attempt (jobs held behind the crashed attempt were cancelled before they started)
ran=$(squeue -h -t all -o '%j %T' | grep -v CANCELLED)
[ "$(echo "$ran" | wc -l)" = "$(q "SELECT SUM(attempts) FROM tasks")" ] || fail "Slurm ran $(echo "$ran" | wc -l) jobs for $(q "SELECT SUM(attempts) FROM tasks") attempts: $ran"
[ -z "$(echo "$ran" | cut -d' ' -f1 | sort | uniq -d)" ] || fail "an attempt ran twice"
# the kind's resources and the extra arguments reached sbatch
job=$(q "SELECT job_id FROM tasks LIMIT 1")
info=$(scontrol -o show job "$job")
for want in TimeLimit=00:10:00 MinMemoryNode=64M CPUs/Task=1 Comment=cgvlm-test Partition=debug; do
    case "$info" in *" $want "*) ;; *) fail "job $job lacks $want: $info";; esac
done
# the crash of lm_pretrain's first attempt (SIGKILL to itself) was read from Slurm and retried
lm=$(q "SELECT task_id FROM tasks WHERE json_extract(config_json, '$.stage') = 'lm_pretrain'")
[ "$(q "SELECT state FROM task_attempts WHERE task_id = $lm AND attempt = 1")" = crashed ] || fail "lm attempt 1: $(q "SELECT * FROM task_attempts WHERE task_id = $lm")"
q "SELECT error FROM task_attempts WHERE task_id = $lm AND attempt = 1" | grep -q "signal 9" || fail "lm crash error: $(q "SELECT error FROM task_attempts WHERE task_id = $lm")"
# the journals were ingested and removed; no staging left
[ "$(q "SELECT COUNT(*) FROM metrics")" -gt 0 ] || fail "no metrics ingested"
[ -z "$(ls ws-slurm/work 2>/dev/null)" ] || fail "work dirs left: $(ls ws-slurm/work)"
[ -z "$(ls ws-slurm/staging 2>/dev/null)" ] || fail "staging left: $(ls ws-slurm/staging)"
# deps respected: every task started after its deps ended
[ "$(q "SELECT COUNT(*) FROM task_deps d JOIN tasks t ON t.task_id = d.task_id JOIN tasks u ON u.task_id = d.dep_id WHERE t.started_at < u.ended_at")" = 0 ] || fail "a task started before its dependency ended"

# the same results as the local backend
cmp_query() { # DESCRIPTION SQL (over the schema alias X)
    local a b
    a=$(sqlite3 slurm.db "${2//X./main.}")
    b=$(sqlite3 local.db "${2//X./main.}")
    [ -n "$a" ] || fail "$1: empty"
    [ "$a" = "$b" ] || fail "$1 differ: slurm: $(echo "$a" | head -3) ... local: $(echo "$b" | head -3)"
}
cmp_query "tasks" "SELECT key, kind, state, attempts FROM X.tasks ORDER BY key"
cmp_query "attempt states" "SELECT t.key, a.attempt, a.state FROM X.task_attempts a JOIN X.tasks t USING (task_id) ORDER BY 1, 2"
cmp_query "runs" "SELECT run, state, n_done, n_tasks FROM X.v_runs ORDER BY run"
# step counts depend on timing (10 ms slices): compare their range and last value
cmp_query "metrics" "SELECT t.key, n.name, COUNT(*) > 5, MIN(m.step), MAX(m.step), MAX(m.value) FROM X.metrics m JOIN X.tasks t USING (task_id) JOIN X.metric_names n USING (name_id) GROUP BY 1, 2 ORDER BY 1, 2"
cmp_query "evals" "SELECT t.key, e.benchmark, e.metric, e.category, e.value, e.n FROM X.evals e JOIN X.tasks t USING (task_id) ORDER BY 1, 2, 3, 4"
cmp_query "artifacts" "SELECT key, path FROM X.artifacts ORDER BY key"

# a re-run submits nothing
n0=$(squeue -h -t all -o %i | wc -l)
expect 0 "re-run" -- "$BIN" sweep s.json --db slurm.db --workspace ws-slurm --backend slurm
contains "re-run" "(0 run now"
[ "$(squeue -h -t all -o %i | wc -l)" = "$n0" ] || fail "the re-run submitted jobs"

# a real micro experiment, one thread per task both ways (the jobs inherit the environment)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cat > real.json <<JSON
{"name": "real", "base": "$(cd "$HERE/../.." && pwd)/experiments/cgvlm-tiny.json",
 "set": {"world.n_align": 200, "world.n_instruct": 200, "world.n_corpus": 300, "world.n_bench": 24,
   "world.n_heldout": 20, "lm_pretrain.steps": 12, "lm_pretrain.warmup": 2, "lm_pretrain.batch": 8,
   "vit_pretrain.steps": 6, "vit_pretrain.warmup": 1, "vit_pretrain.batch": 8,
   "align.steps": 6, "align.warmup": 1, "align.batch": 8, "instruct.min_steps": 4, "instruct.epochs": 0.1,
   "instruct.batch": 8, "instruct.warmup": 1, "checkpoint_every": 5},
 "seeds": [0]}
JSON
expect 0 "real sweep, slurm" -- "$BIN" sweep real.json --db real-slurm.db --workspace ws-real-slurm --backend slurm
expect 0 "real sweep, local" -- "$BIN" sweep real.json --db real-local.db --workspace ws-real-local --workers 2
cmp_real() { # DESCRIPTION SQL
    local a b
    a=$(sqlite3 real-slurm.db "$2"); b=$(sqlite3 real-local.db "$2")
    [ -n "$a" ] || fail "real: no $1"
    [ "$a" = "$b" ] || fail "real: $1 differ between Slurm and local"
}
cmp_real "tasks" "SELECT key, kind, state FROM tasks ORDER BY key"
cmp_real "losses" "SELECT t.kind, n.name, m.step, m.value FROM metrics m JOIN tasks t USING (task_id) JOIN metric_names n USING (name_id) WHERE n.name LIKE 'loss%' ORDER BY 1, 2, 3"
cmp_real "evals" "SELECT t.kind, e.benchmark, e.metric, e.category, e.value, e.n FROM evals e JOIN tasks t USING (task_id) ORDER BY 1, 2, 3, 4"
cmp_real "predictions" "SELECT benchmark, method, question_id, chosen, answer, scores_json FROM predictions ORDER BY 1, 2, 3"
finish slurm_sweep
