#!/usr/bin/env bash
# test_slurm_faults.sh: faults of jobs on a real Slurm cluster. kill -9 of a task's process on the
# node -> the attempt is crashed and retried; scancel of a job from outside -> the attempt is
# cancelled (it checkpointed: the next attempt resumes); a stage that always fails -> failed after
# max_attempts, the jobs held behind it cancelled and nothing left in the queue; Ctrl-C of the
# scheduler and `cgvlm cancel` -> scancel, tasks cancelled, and the same command resumes.
# (The TIMEOUT mapping is in test_slurm_map: Slurm's limits are whole minutes.)
PORT_BASE=17320
. "$(dirname "$0")/lib.sh"
start_cluster
cd "$TMP"
DB=$TMP/r.db
sweep_file() { # NAME STAGE SLEEP_MS [extra noop knobs]
    cat > "$1.json" <<JSON
{"name": "$1", "base": {"pipeline": "noop", "noop": {"sleep_ms": $3, "sleep_stage": "$2"${4:-}}}, "seeds": [0], "max_attempts": 2}
JSON
}
key_of() { q "SELECT t.key FROM tasks t JOIN run_tasks USING (task_id) JOIN runs r USING (run_id) JOIN sweeps s USING (sweep_id) WHERE s.name = '$1' AND json_extract(t.config_json, '$.stage') = '$2'"; }
# the pid of the task process of KEY's running attempt (the job's batch step: the script execs it)
task_pid() { pgrep -f "task --spec $TMP/ws/slurm/$1\\." | head -1; }
running_job() { # KEY -> job id once the job is RUNNING in Slurm and its process exists
    local j; j=$(job_of "$1"); [ -n "$j" ] || return 1
    [ "$(squeue -h -j "$j" -o %T)" = RUNNING ] && [ -n "$(task_pid "$1")" ] && echo "$j"
}

# kill -9 of the task process on the node
sweep_file k world 3000
"$BIN" sweep k.json --db "$DB" --workspace ws --backend slurm > k.out 2>&1 &
sched=$!; bg_pids="$bg_pids $sched"
wait_until 30 '[ -n "$(key_of k world)" ] && running_job "$(key_of k world)" >/dev/null' || fail "world's job never ran"
sleep 0.3
kill -9 "$(task_pid "$(key_of k world)")"
wait $sched; rc=$?
[ $rc = 0 ] || fail "kill sweep: exit $rc: $(cat k.out)"
w=$(q "SELECT task_id FROM tasks WHERE key = '$(key_of k world)'")
[ "$(q "SELECT state || ' ' || attempts FROM tasks WHERE task_id = $w")" = "done 2" ] || fail "killed task: $(q "SELECT state, attempts, error FROM tasks WHERE task_id = $w")"
[ "$(q "SELECT state FROM task_attempts WHERE task_id = $w AND attempt = 1")" = crashed ] || fail "attempt 1 of the killed task: $(q "SELECT * FROM task_attempts WHERE task_id = $w")"
q "SELECT error FROM task_attempts WHERE task_id = $w AND attempt = 1" | grep -q "signal 9" || fail "crash error: $(q "SELECT error FROM task_attempts WHERE task_id = $w")"
[ "$(q "SELECT COUNT(DISTINCT job_id) FROM task_attempts WHERE task_id = $w")" = 2 ] || fail "the retry did not get a job of its own"

# scancel of a job from outside: cancelled, resumed from its checkpoint by the next attempt
sweep_file c lm_pretrain 3000
"$BIN" sweep c.json --db "$DB" --workspace ws --backend slurm > c.out 2>&1 &
sched=$!; bg_pids="$bg_pids $sched"
wait_until 30 '[ -n "$(key_of c lm_pretrain)" ] && running_job "$(key_of c lm_pretrain)" >/dev/null' || fail "lm's job never ran"
sleep 1
scancel "$(job_of "$(key_of c lm_pretrain)")"
wait $sched; rc=$?
[ $rc = 0 ] || fail "scancel sweep: exit $rc: $(cat c.out)"
l=$(q "SELECT task_id FROM tasks WHERE key = '$(key_of c lm_pretrain)'")
[ "$(q "SELECT state FROM task_attempts WHERE task_id = $l AND attempt = 1")" = cancelled ] || fail "scancelled attempt: $(q "SELECT * FROM task_attempts WHERE task_id = $l")"
[ "$(q "SELECT state FROM tasks WHERE task_id = $l")" = done ] || fail "the scancelled task did not finish on its retry"
grep -Eq '"resumed_ms":[1-9]' "ws/artifacts/$(key_of c lm_pretrain)/noop.json" || fail "the retry did not resume from the checkpoint: $(cat "ws/artifacts/$(key_of c lm_pretrain)/noop.json")"

# a stage that always fails: failed after 2 attempts with its message; nothing left queued in Slurm
sweep_file f align 10 ', "fail_stage": "align", "fail_message": "align went wrong"'
expect 1 "failing sweep" -- "$BIN" sweep f.json --db "$DB" --workspace ws --backend slurm
contains "failing sweep" "1 task(s) failed"
a=$(q "SELECT task_id FROM tasks WHERE key = '$(key_of f align)'")
[ "$(q "SELECT state || ' ' || attempts FROM tasks WHERE task_id = $a")" = "failed 2" ] || fail "failing task: $(q "SELECT state, attempts FROM tasks WHERE task_id = $a")"
q "SELECT error FROM tasks WHERE task_id = $a" | grep -q "align went wrong" || fail "failure message: $(q "SELECT error FROM tasks WHERE task_id = $a")"
[ "$(q "SELECT state FROM tasks WHERE key = '$(key_of f eval)'")" = queued ] || fail "eval behind the failure: $(q "SELECT state, error FROM tasks WHERE key = '$(key_of f eval)'")"
[ -z "$(squeue -h -o %i)" ] || fail "jobs left in the queue: $(squeue)"

# Ctrl-C of the scheduler: scancel, cancelled; then `cgvlm cancel`; each time the same command resumes
sweep_file i instruct 4000
for how in sigint cancel; do
    "$BIN" sweep i.json --db "$DB" --workspace ws --backend slurm > i.out 2>&1 &
    sched=$!; bg_pids="$bg_pids $sched"
    wait_until 40 '[ -n "$(key_of i instruct)" ] && running_job "$(key_of i instruct)" >/dev/null' || fail "$how: instruct's job never ran"
    sleep 0.5
    if [ $how = sigint ]; then kill -INT $sched; else "$BIN" cancel --sweep i --db "$DB" >/dev/null || fail "cgvlm cancel failed"; fi
    wait $sched; rc=$?
    [ $rc = 130 ] || fail "$how: exit $rc, want 130: $(cat i.out)"
    [ "$(q "SELECT state FROM tasks WHERE key = '$(key_of i instruct)'")" = cancelled ] || fail "$how: instruct: $(q "SELECT state, error FROM tasks WHERE key = '$(key_of i instruct)'")"
    [ "$(q "SELECT state FROM tasks WHERE key = '$(key_of i eval)'")" = cancelled ] || fail "$how: eval (held in Slurm): $(q "SELECT state, error FROM tasks WHERE key = '$(key_of i eval)'")"
    wait_until 20 '[ -z "$(squeue -h -o %i)" ]' || fail "$how: jobs left in Slurm: $(squeue)"
done
expect 0 "resume" -- "$BIN" sweep i.json --db "$DB" --workspace ws --backend slurm
[ "$(q "SELECT state FROM tasks WHERE key = '$(key_of i eval)'")" = done ] || fail "resume did not finish"
grep -Eq '"resumed_ms":[1-9]' "ws/artifacts/$(key_of i instruct)/noop.json" || fail "instruct did not resume from its checkpoint"
finish slurm_faults
