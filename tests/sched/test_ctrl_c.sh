#!/usr/bin/env bash
# test_ctrl_c.sh: Ctrl-C (SIGINT to the scheduler's whole process group, as a terminal sends it)
# stops gracefully: running tasks checkpoint and are marked cancelled, the scheduler exits 130;
# running the same command again resumes from the checkpoints and completes.
. "$(dirname "$0")/lib.sh"
DB=$TMP/r.db
WS=$TMP/ws
LOG=$TMP/completions.log
cd "$TMP"
cat > s.json <<JSON
{"name": "ctrlc", "base": {"pipeline": "noop", "noop": {"sleep_ms": 1500, "log": "$LOG", "metrics": true}}, "axes": {"align.lambda": [0, 1]}}
JSON
setsid "$BIN" sweep s.json --db "$DB" --workspace "$WS" --workers 2 > first.out 2>&1 &
sp=$!; bg_pids="$bg_pids $sp"
# wait until the two pretraining tasks run and have made progress
wait_until 60 '[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = '"'running'"' AND progress > 0.2" 2>/dev/null)" -ge 1 ]' || fail "tasks never made progress"
kill -INT -- -"$sp"
wait $sp; rc=$?
[ $rc = 130 ] || fail "interrupted scheduler: exit $rc, want 130: $(cat first.out)"
ncanc=$(q "SELECT COUNT(*) FROM tasks WHERE state = 'cancelled'")
ndone=$(q "SELECT COUNT(*) FROM tasks WHERE state = 'done'")
# the last line counts what is left, not every unfinished task as "cancelled"
grep -q "stopped: $ndone of 9 task(s) done, the other $((9 - ndone)) wait" first.out || fail "stop line: $(cat first.out)"
[ "$ncanc" -ge 1 ] || fail "no task cancelled: $(q "SELECT state, COUNT(*) FROM tasks GROUP BY 1")"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'running'")" = 0 ] || fail "tasks left running"
for k in $(q "SELECT key FROM tasks WHERE state = 'cancelled'"); do
    [ -s "$WS/work/$k/noop.ckpt" ] || fail "cancelled task $k left no checkpoint"
done
canc=$(q "SELECT key FROM tasks WHERE state = 'cancelled' LIMIT 1")
expect 0 "resume" -- "$BIN" sweep s.json --db "$DB" --workspace "$WS"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'done'")" = 9 ] || fail "resume did not complete"
grep -q '"resumed_ms":[1-9]' "$WS/artifacts/$canc/noop.json" || fail "task $canc did not resume from its checkpoint: $(cat "$WS/artifacts/$canc/noop.json")"
[ "$(wc -l < "$LOG")" = 9 ] || fail "completion log: $(wc -l < "$LOG") lines, want 9"
[ -z "$(cut -d' ' -f1 "$LOG" | sort | uniq -d)" ] || fail "a task completed twice"
[ -z "$(ls "$WS/work")" ] || fail "work dirs left after completion: $(ls "$WS/work")"
# metrics of the interrupted and resumed tasks: one value per step, up to the end, no duplicates
[ "$(q "SELECT COUNT(*) FROM (SELECT task_id, step FROM v_metrics WHERE metric = 'noop_ms' GROUP BY 1, 2 HAVING COUNT(*) > 1)")" = 0 ] || fail "duplicate metric steps after resume"
[ "$(q "SELECT COUNT(*) FROM (SELECT task_id FROM v_metrics WHERE metric = 'noop_ms' GROUP BY 1 HAVING MAX(step) = 1500)")" = 9 ] || fail "metrics do not reach the end for every task"
[ "$(q "SELECT COUNT(*) FROM evals WHERE benchmark = 'noop' AND metric = 'attempts' AND value = 2")" -ge 1 ] || fail "no eval from a resumed (second) attempt"
# task processes write to the worker logs: no sanitizer report may be there (ASan builds)
! grep -l "AddressSanitizer\|runtime error:" "$WS"/logs/*.log 2>/dev/null || fail "sanitizer reports in the task logs"
finish test_ctrl_c
