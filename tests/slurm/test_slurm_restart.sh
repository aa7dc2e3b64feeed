#!/usr/bin/env bash
# test_slurm_restart.sh: the scheduler SIGKILLed mid-sweep (twice: once while jobs queue and run,
# once right after the restart) leaves its jobs to Slurm; each restart adopts the jobs still known
# to Slurm (tasks.job_id) instead of submitting them again, ingests the journals of those that
# ended meanwhile, and the sweep completes with exactly one job per task attempt.
PORT_BASE=17330
. "$(dirname "$0")/lib.sh"
start_cluster
cd "$TMP"
DB=$TMP/r.db
cat > s.json <<JSON
{"name": "s", "base": {"pipeline": "noop", "noop": {"sleep_ms": 400, "metrics": true, "log": "$TMP/LOG"}},
 "axes": {"align.lambda": [0, 1], "instruct.fraction": [0.5, 1]}, "seeds": [0]}
JSON
done_count() { q "SELECT COUNT(*) FROM tasks WHERE state = 'done'"; }

"$BIN" sweep s.json --db "$DB" --workspace ws --backend slurm > run1.out 2>&1 &
sched=$!; bg_pids="$bg_pids $sched"
wait_until 40 '[ "$(done_count)" -ge 3 ]' || fail "the first scheduler never got 3 tasks done: $(cat run1.out)"
kill -9 $sched; wait $sched 2>/dev/null
live=$(squeue -h -o %i | wc -l)
[ "$live" -gt 0 ] || fail "no jobs left in Slurm after the scheduler died (the test needs some)"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'running' AND job_id IS NULL")" = 0 ] || fail "running tasks without a job id"

"$BIN" sweep s.json --db "$DB" --workspace ws --backend slurm > run2.out 2>&1 &
sched=$!; bg_pids="$bg_pids $sched"
sleep 1.5
kill -9 $sched; wait $sched 2>/dev/null
grep -q "adopted Slurm job" run2.out || fail "the restart adopted no job: $(cat run2.out)"

expect 0 "third run" -- "$BIN" sweep s.json --db "$DB" --workspace ws --backend slurm
contains "third run" "all 13 tasks done"
[ "$(done_count)" = 13 ] || fail "want 13 done: $(q "SELECT state, COUNT(*) FROM tasks GROUP BY 1")"
# no task submitted twice: one job per attempt, each attempt once, each task completed once
[ "$(q "SELECT SUM(attempts) FROM tasks")" = 13 ] || fail "attempts: $(q "SELECT key, attempts FROM tasks WHERE attempts != 1")"
names=$(squeue -h -t all -o %j)
[ "$(echo "$names" | wc -l)" = 13 ] || fail "Slurm saw $(echo "$names" | wc -l) jobs for 13 tasks: $names"
[ -z "$(echo "$names" | sort | uniq -d)" ] || fail "a job name submitted twice: $(echo "$names" | sort | uniq -d)"
[ "$(grep -c 'JobState=COMPLETED' "$JOBCOMP")" = 13 ] || fail "jobcomp: $(grep -c 'JobState=COMPLETED' "$JOBCOMP") completed jobs, want 13"
[ "$(wc -l < LOG)" = 13 ] || fail "completion log has $(wc -l < LOG) lines, want 13"
[ -z "$(cut -d' ' -f1 LOG | sort | uniq -d)" ] || fail "a task completed twice"
[ "$(q "SELECT COUNT(DISTINCT job_id) FROM task_attempts")" = 13 ] || fail "attempt job ids: $(q "SELECT task_id, attempt, job_id FROM task_attempts")"
# the metrics of tasks whose jobs ended while no scheduler ran were ingested too
[ "$(q "SELECT COUNT(DISTINCT task_id) FROM metrics")" = 13 ] || fail "metrics of $(q "SELECT COUNT(DISTINCT task_id) FROM metrics") tasks, want 13"

# cgvlm cancel with no scheduler alive: its jobs are scancelled, the next run resumes
cat > o.json <<JSON
{"name": "o", "base": {"pipeline": "noop", "noop": {"sleep_ms": 3000, "sleep_stage": "world"}}, "seeds": [0]}
JSON
"$BIN" sweep o.json --db "$DB" --workspace ws --backend slurm > o.out 2>&1 &
sched=$!; bg_pids="$bg_pids $sched"
wait_until 30 '[ "$(squeue -h -t running -o %i | wc -l)" -ge 1 ]' || fail "o: no job ran"
kill -9 $sched; wait $sched 2>/dev/null
expect 0 "cancel orphans" -- "$BIN" cancel --sweep o --db "$DB"
contains "cancel orphans" "cancelled its 6 Slurm job(s)"
wait_until 20 '[ -z "$(squeue -h -o %i)" ]' || fail "jobs left after cgvlm cancel: $(squeue)"
expect 0 "resume after cancel" -- "$BIN" sweep o.json --db "$DB" --workspace ws --backend slurm
w=$(q "SELECT t.task_id FROM tasks t JOIN run_tasks USING (task_id) JOIN runs USING (run_id) JOIN sweeps s USING (sweep_id) WHERE s.name = 'o' AND json_extract(t.config_json, '$.stage') = 'world'")
[ "$(q "SELECT state FROM task_attempts WHERE task_id = $w AND attempt = 1")" = cancelled ] || fail "o: world's first attempt: $(q "SELECT * FROM task_attempts WHERE task_id = $w")"
[ "$(q "SELECT state FROM tasks WHERE task_id = $w")" = done ] || fail "o: world not done after the resume"
finish slurm_restart
