#!/usr/bin/env bash
# test_kill_scheduler.sh: the scheduler killed with SIGKILL at random moments (12 trials), then
# restarted each time: in the end every run is done, every task completed exactly once (the noop
# tasks append to a completion log), no worker or task outlives its scheduler unsupervised, and
# the db passes PRAGMA integrity_check.
. "$(dirname "$0")/lib.sh"
DB=$TMP/r.db
WS=$TMP/ws
LOG=$TMP/completions.log
cd "$TMP"
cat > s.json <<JSON
{"name": "killed", "base": {"pipeline": "noop", "noop": {"sleep_ms": 60, "log": "$LOG"}},
 "axes": {"align.lambda": [0, 1], "instruct.fraction": [0.1, 0.5, 1]}, "seeds": [0, 1]}
JSON
RANDOM=20261127   # reproducible kill moments
for trial in $(seq 1 12); do
    "$BIN" sweep s.json --db "$DB" --workspace "$WS" --workers 2 > "trial$trial.out" 2>&1 &
    sp=$!
    sleep "0.$(( RANDOM % 9 + 1 ))$(( RANDOM % 10 ))"
    kill -9 "$sp" 2>/dev/null
    wait "$sp" 2>/dev/null
    # a killed scheduler's workers die with it; its tasks checkpoint and stop at once
    wait_until 30 '! pgrep -f -- "--worker --db $DB" > /dev/null' || fail "trial $trial: workers outlived their scheduler"
done
for i in 1 2 3; do
    "$BIN" sweep s.json --db "$DB" --workspace "$WS" --workers 2 > final.out 2>&1 && break
done
grep -q "all 31 tasks done" final.out || fail "final run did not complete: $(cat final.out)"
[ "$(q "SELECT COUNT(*) FROM v_runs WHERE state = 'done'")" = 12 ] || fail "not every run done: $(q "SELECT run, state FROM v_runs")"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'done'")" = 31 ] || fail "not every task done"
sleep 0.5   # nothing may complete after the end
[ "$(wc -l < "$LOG")" = 31 ] || fail "completion log has $(wc -l < "$LOG") lines, want 31: $(sort "$LOG")"
dups=$(cut -d' ' -f1 "$LOG" | sort | uniq -d)
[ -z "$dups" ] || fail "tasks completed more than once: $dups"
[ "$(q "SELECT COUNT(*) FROM task_attempts WHERE state = 'done'")" = 31 ] || fail "done attempts: $(q "SELECT COUNT(*) FROM task_attempts WHERE state = 'done'")"
[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check: $(q "PRAGMA integrity_check")"
echo "attempts by state: $(q "SELECT state || '=' || COUNT(*) FROM task_attempts GROUP BY state" | tr '\n' ' ')"
finish test_kill_scheduler
