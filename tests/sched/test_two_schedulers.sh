#!/usr/bin/env bash
# test_two_schedulers.sh: a second scheduler on the same sweep and db refuses (exit 2, clear
# message, nothing changed); `cgvlm cancel` stops the first gracefully (tasks cancelled); a
# re-run resumes and completes; a stale owner (pid gone) is taken over.
. "$(dirname "$0")/lib.sh"
DB=$TMP/r.db
WS=$TMP/ws
cd "$TMP"
cat > s.json <<JSON
{"name": "pair", "base": {"pipeline": "noop", "noop": {"sleep_ms": 3000, "sleep_stage": "world"}}, "axes": {"align.lambda": [0, 1]}}
JSON
"$BIN" sweep s.json --db "$DB" --workspace "$WS" --workers 1 > first.out 2>&1 &
first=$!; bg_pids="$bg_pids $first"
wait_until 60 '[ "$(q "SELECT owner_pid FROM sweeps WHERE name = '"'pair'"'" 2>/dev/null)" = $first ]' || fail "first scheduler never owned the sweep"
before=$(q "SELECT COUNT(*) FROM task_attempts")
expect 2 "second scheduler" -- "$BIN" sweep s.json --db "$DB" --workspace "$WS"
contains "second scheduler" "sweep 'pair' is already being run by cgvlm pid $first"
contains "second scheduler says what to do" "cgvlm cancel --sweep pair"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "refusal is not one line: $out"

# cancel: the first stops, running tasks are cancelled
# (a task 3 s long that has shown progress is far from its end)
wait_until 60 '[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = '"'running'"' AND progress > 0")" -ge 1 ]' || fail "no task made progress"
expect 0 "cancel" -- "$BIN" cancel --db "$DB" --sweep pair
contains "cancel" "asked the scheduler of sweep 'pair' (pid $first) to stop"
wait $first; rc=$?
[ $rc = 130 ] || fail "cancelled scheduler: exit $rc, want 130: $(cat first.out)"
grep -q "run the same command again to resume" first.out || fail "no resume hint: $(cat first.out)"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'cancelled'")" -ge 1 ] || fail "no task cancelled: $(q "SELECT state, COUNT(*) FROM tasks GROUP BY 1")"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'running'")" = 0 ] || fail "tasks left running"
[ "$(q "SELECT owner_pid IS NULL FROM sweeps")" = 1 ] || fail "owner not released"
expect 2 "cancel a stopped sweep" -- "$BIN" cancel --db "$DB" --sweep pair
contains "cancel a stopped sweep" "is not running"

# a stale owner (a pid that is gone) is taken over
q "UPDATE sweeps SET owner_host = '$(hostname)', owner_pid = 999999999, owner_heartbeat = 0"
expect 0 "resume after a stale owner" -- "$BIN" sweep s.json --db "$DB" --workspace "$WS"
contains "takeover" "taking over from a scheduler that is gone"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'done'")" = 9 ] || fail "resume did not complete: $(q "SELECT state, COUNT(*) FROM tasks GROUP BY 1")"
[ "$(q "SELECT COUNT(*) FROM task_attempts WHERE state = 'cancelled'")" -ge 1 ] || fail "cancelled attempts not kept in the history"
[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check"
# an owner pid recycled by another program (not cgvlm) is not a live scheduler
sleep 60 & other=$!; bg_pids="$bg_pids $other"
q "UPDATE sweeps SET owner_host = '$(hostname)', owner_pid = $other, owner_heartbeat = 0 WHERE name = 'pair'"
expect 0 "owner pid recycled" -- "$BIN" sweep s.json --db "$DB" --workspace "$WS"
contains "owner pid recycled" "taking over"
kill $other 2>/dev/null

# two schedulers on two sweeps that share tasks, at the same time: each shared task runs once
cat > a.json <<JSON
{"name": "a", "base": {"pipeline": "noop", "world": {"seed": 5}, "noop": {"sleep_ms": 200, "log": "$TMP/shared.log"}}, "axes": {"align.lambda": [0, 1]}}
JSON
cat > b.json <<JSON
{"name": "b", "base": {"pipeline": "noop", "world": {"seed": 5}, "noop": {"sleep_ms": 200, "log": "$TMP/shared.log"}}, "axes": {"align.lambda": [1, 2]}}
JSON
"$BIN" sweep a.json --db "$DB" --workspace "$WS" > a.out 2>&1 &
ap=$!; bg_pids="$bg_pids $ap"
expect 0 "sweep b beside sweep a" -- "$BIN" sweep b.json --db "$DB" --workspace "$WS"
wait $ap || fail "sweep a beside sweep b: $(cat a.out)"
# a: world, lm, vit, 2 x (align, instruct, eval); b adds 1 x (align, instruct, eval)
[ "$(wc -l < "$TMP/shared.log")" = 12 ] || fail "shared sweeps: $(wc -l < "$TMP/shared.log") completions, want 12"
[ -z "$(cut -d' ' -f1 "$TMP/shared.log" | sort | uniq -d)" ] || fail "a shared task completed twice"
finish test_two_schedulers
