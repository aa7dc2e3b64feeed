#!/usr/bin/env bash
# test_sched_basic.sh: a noop sweep runs to the end with shared tasks run once; a re-run skips
# done tasks; a task whose process dies (SIGKILL, abort, or killed from outside) is marked crashed
# and retried; a task that always fails ends failed after max_attempts with its error while the
# rest of the sweep completes; artifacts are published and recorded; status shows it all.
. "$(dirname "$0")/lib.sh"
DB=$TMP/r.db
WS=$TMP/ws
LOG=$TMP/completions.log
cd "$TMP"

cat > ok.json <<JSON
{"name": "ok", "base": {"pipeline": "noop", "noop": {"sleep_ms": 20, "log": "$LOG"}},
 "axes": {"align.lambda": [0, 1], "instruct.fraction": [0.1, 0.5, 1]}, "seeds": [0, 1]}
JSON
expect 0 "noop sweep" -- "$BIN" sweep ok.json --db "$DB" --workspace "$WS" --workers 2
# 12 runs: 1 world + 1 lm + 1 vit + 4 align + 12 instruct + 12 eval
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'done'")" = 31 ] || fail "want 31 done tasks: $(q "SELECT state, COUNT(*) FROM tasks GROUP BY 1")"
[ "$(wc -l < "$LOG")" = 31 ] || fail "completion log has $(wc -l < "$LOG") lines, want 31 (each task once)"
[ -z "$(cut -d' ' -f1 "$LOG" | sort | uniq -d)" ] || fail "a task completed twice"
[ "$(q "SELECT COUNT(*) FROM runs")" = 12 ] || fail "want 12 runs"
[ "$(q "SELECT COUNT(*) FROM run_tasks")" = 72 ] || fail "want 72 run_tasks"
[ "$(q "SELECT COUNT(*) FROM run_params WHERE path = 'align.lambda'")" = 12 ] || fail "run_params lack align.lambda"
[ "$(q "SELECT COUNT(*) FROM runs WHERE lambda IS NULL OR fraction IS NULL OR size != 'tiny'")" = 0 ] || fail "run columns not filled"
[ "$(q "SELECT COUNT(*) FROM v_runs WHERE state = 'done'")" = 12 ] || fail "v_runs: not all runs done"
[ "$(q "SELECT COUNT(*) FROM artifacts")" = 31 ] || fail "want 31 artifacts rows"
[ "$(ls "$WS/artifacts" | wc -l)" = 31 ] || fail "want 31 published artifact dirs"
[ -z "$(ls "$WS/staging")" ] || fail "staging dirs left behind: $(ls "$WS/staging")"
k=$(q "SELECT key FROM tasks WHERE kind = 'noop' LIMIT 1")
grep -q "\"key\":\"$k\"" "$WS/artifacts/$k/noop.json" || fail "artifact content of $k"
# a stage gets every ancestor's artifact (eval: all five upstream stages)
e=$(q "SELECT key FROM tasks WHERE config_json LIKE '%\"stage\":\"eval\"%' LIMIT 1")
grep -q '"upstream":\["world","lm_pretrain","vit_pretrain","align","instruct"\]' "$WS/artifacts/$e/noop.json" || fail "eval's upstream: $(cat "$WS/artifacts/$e/noop.json")"
w=$(q "SELECT key FROM tasks WHERE config_json LIKE '%\"stage\":\"world\"%' LIMIT 1")
grep -q '"upstream":\[\]' "$WS/artifacts/$w/noop.json" || fail "world's upstream: $(cat "$WS/artifacts/$w/noop.json")"
[ "$(q "SELECT owner_pid IS NULL FROM sweeps WHERE name = 'ok'")" = 1 ] || fail "ownership not released"
# deps are respected: every task started after its deps ended
[ "$(q "SELECT COUNT(*) FROM task_deps d JOIN tasks t ON t.task_id = d.task_id JOIN tasks u ON u.task_id = d.dep_id WHERE t.started_at < u.ended_at")" = 0 ] || fail "a task started before its dependency ended"

# re-run: nothing runs again
expect 0 "re-run" -- "$BIN" sweep ok.json --db "$DB" --workspace "$WS"
contains "re-run" "(0 run now"
[ "$(wc -l < "$LOG")" = 31 ] || fail "re-run executed tasks again"
# a second sweep sharing the upstream tasks reuses them
cat > more.json <<JSON
{"name": "more", "base": {"pipeline": "noop", "noop": {"sleep_ms": 20, "log": "$LOG"}},
 "axes": {"align.lambda": [1], "instruct.fraction": [0.25]}, "seeds": [0]}
JSON
expect 0 "sharing sweep" -- "$BIN" sweep more.json --db "$DB" --workspace "$WS"
contains "sharing sweep" "(2 run now"
[ "$(wc -l < "$LOG")" = 33 ] || fail "sharing sweep: want 33 completions, have $(wc -l < "$LOG")"

# crashes: the align tasks die on attempt 1 (SIGKILL to themselves), eval aborts on attempt 1
cat > crash.json <<JSON
{"name": "crash", "base": {"pipeline": "noop", "world": {"seed": 7}, "noop": {"log": "$LOG.crash", "crash_stage": "align", "crash_attempts": 1}},
 "axes": {"align.lambda": [0, 1]}, "seeds": [0], "max_attempts": 2}
JSON
expect 0 "crashing tasks are retried" -- "$BIN" sweep crash.json --db "$DB" --workspace "$WS"
[ "$(q "SELECT COUNT(*) FROM task_attempts a JOIN tasks t USING (task_id) WHERE a.state = 'crashed' AND a.error LIKE 'killed by signal 9%' AND t.config_json LIKE '%\"stage\":\"align\"%'")" = 2 ] \
    || fail "crashed attempts not recorded: $(q "SELECT task_id, attempt, state, error FROM task_attempts WHERE state != 'done'")"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE config_json LIKE '%crash_attempts%' AND state = 'done' AND attempts = 2")" = 2 ] || fail "crashed tasks not done on attempt 2"
cat > abort.json <<JSON
{"name": "abort", "base": {"pipeline": "noop", "world": {"seed": 8}, "noop": {"crash_stage": "eval", "crash_mode": "abort", "crash_attempts": 1}}}
JSON
expect 0 "aborting task retried" -- "$BIN" sweep abort.json --db "$DB" --workspace "$WS"
[ "$(q "SELECT COUNT(*) FROM task_attempts WHERE error LIKE 'killed by signal 6%'")" = 1 ] || fail "abort not recorded as signal 6"

# a task killed from outside while it runs: crashed, retried
cat > slow.json <<JSON
{"name": "slow", "base": {"pipeline": "noop", "world": {"seed": 9}, "noop": {"sleep_ms": 3000}}, "max_attempts": 2}
JSON
"$BIN" sweep slow.json --db "$DB" --workspace "$WS" > slow.out 2>&1 &
sp=$!; bg_pids="$bg_pids $sp"
slow_pid() { q "SELECT pid FROM tasks WHERE state = 'running' AND config_json LIKE '%\"seed\":9%'"; }
wait_until 60 '[ -n "$(slow_pid)" ] && [ "$(slow_pid)" != $sp ]' || fail "slow task never started"
tp=$(slow_pid)
kill -9 "$tp" 2>/dev/null || fail "cannot kill task pid '$tp'"
wait $sp; rc=$?
[ $rc = 0 ] || fail "sweep with a killed task: exit $rc: $(cat slow.out)"
[ "$(q "SELECT COUNT(*) FROM task_attempts a JOIN tasks t USING (task_id) WHERE t.config_json LIKE '%\"seed\":9%' AND a.state = 'crashed'")" = 1 ] || fail "killed task not crashed once"

# a task that always fails: failed after max_attempts with its message; the rest completes
cat > fail.json <<JSON
{"name": "fail", "base": {"pipeline": "noop", "world": {"seed": 3}, "noop": {"fail_message": "the noop says no"}},
 "axes": {"noop.fail_stage": ["", "instruct"]}, "seeds": [0], "max_attempts": 3}
JSON
expect 1 "failing sweep" -- "$BIN" sweep fail.json --db "$DB" --workspace "$WS"
contains "failing sweep" "1 task(s) failed, 1 blocked"
[ "$(q "SELECT state || ' ' || attempts || ' ' || error FROM tasks WHERE config_json LIKE '%the noop says no%'")" = "failed 3 the noop says no" ] \
    || fail "failing task row: $(q "SELECT state, attempts, error FROM tasks WHERE config_json LIKE '%the noop says no%'")"
[ "$(q "SELECT state FROM v_runs WHERE sweep = 'fail' ORDER BY run")" = "$(printf 'done\nfailed')" ] || fail "runs of the failing sweep: $(q "SELECT run, state FROM v_runs WHERE sweep = 'fail'")"
expect 0 "status" -- "$BIN" status --db "$DB" --sweep fail
contains "status shows the error" "the noop says no"
contains "status shows runs" "noop.fail_stage=instruct,seed=0"
expect 0 "status of all" -- "$BIN" status --db "$DB"
contains "status lists sweeps" "sweep crash: not running"
# re-running retries the failed task (a fresh budget)
expect 1 "failing sweep re-run" -- "$BIN" sweep fail.json --db "$DB" --workspace "$WS" --max-attempts 1
[ "$(q "SELECT attempts FROM tasks WHERE config_json LIKE '%the noop says no%'")" = 4 ] || fail "re-run did not retry the failed task"

# an error in the task's input fails at once: no retry
cat > input.json <<JSON
{"name": "input", "base": {"pipeline": "noop", "world": {"seed": 5}, "noop": {"fail_stage": "align", "fail_input": true, "fail_message": "bad setting"}}, "max_attempts": 3}
JSON
expect 1 "input error" -- "$BIN" sweep input.json --db "$DB" --workspace "$WS"
[ "$(q "SELECT state || ' ' || attempts || ' ' || error FROM tasks WHERE config_json LIKE '%bad setting%'")" = "failed 1 bad setting" ] \
    || fail "input error retried: $(q "SELECT state, attempts, error FROM tasks WHERE config_json LIKE '%bad setting%'")"
[ "$(q "SELECT exit_status FROM task_attempts JOIN tasks USING (task_id) WHERE config_json LIKE '%bad setting%'")" = 2 ] || fail "input error: exit status not 2"

# a time limit kills and fails the attempt
cat > limit.json <<JSON
{"name": "limit", "base": {"pipeline": "noop", "world": {"seed": 4}, "noop": {"sleep_ms": 20000}}, "max_attempts": 1, "time_limit_s": {"noop": 0.5}}
JSON
expect 1 "time limit" -- "$BIN" sweep limit.json --db "$DB" --workspace "$WS"
[ "$(q "SELECT error FROM tasks WHERE config_json LIKE '%\"seed\":4%' AND state = 'failed'")" = "time limit of 0.5 s exceeded" ] || fail "time limit not recorded: $(q "SELECT state, error FROM tasks WHERE config_json LIKE '%\"seed\":4%'")"

[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check"
# cgvlm task by hand (what a Slurm job runs): refuses a done task and an unknown key
d=$(q "SELECT key FROM tasks WHERE state = 'done' LIMIT 1")
expect 2 "task on a done task" -- "$BIN" task --db "$DB" --workspace "$WS" --key "$d"
contains "task on a done task" "the task is done or already running"
expect 2 "task with an unknown key" -- "$BIN" task --db "$DB" --workspace "$WS" --key nope
contains "task with an unknown key" "no task with key 'nope'"
# ... and runs a failed one (claiming it itself)
f=$(q "SELECT key FROM tasks WHERE config_json LIKE '%the noop says no%'")
expect 1 "task by hand" -- "$BIN" task --db "$DB" --workspace "$WS" --key "$f"
[ "$(q "SELECT attempts FROM tasks WHERE key = '$f'")" = 5 ] || fail "task by hand did not claim an attempt"

# cgvlm run: one experiment through the same machinery
printf '{"name": "one", "pipeline": "noop", "world": {"seed": 11}, "noop": {"log": "%s"}}\n' "$LOG.run" > one.json
expect 0 "cgvlm run" -- "$BIN" run one.json --set align.lambda=0 --db "$DB" --workspace "$WS"
contains "cgvlm run" "all 6 tasks done"
[ "$(wc -l < "$LOG.run")" = 6 ] || fail "cgvlm run: 6 completions expected"
[ "$(q "SELECT COUNT(*) FROM v_runs WHERE sweep LIKE 'run-one-%' AND state = 'done' AND lambda = 0")" = 1 ] || fail "cgvlm run: run not recorded"
expect 0 "cgvlm run again" -- "$BIN" run one.json --set align.lambda=0 --db "$DB" --workspace "$WS"
contains "cgvlm run again" "(0 run now"

# task processes write to the worker logs: no sanitizer report may be there (ASan builds)
! grep -l "AddressSanitizer\|runtime error:" "$WS"/logs/*.log 2>/dev/null || fail "sanitizer reports in the task logs"
finish test_sched_basic
