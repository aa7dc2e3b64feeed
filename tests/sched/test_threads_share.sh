#!/usr/bin/env bash
# test_threads_share.sh: the local backend shares the cores out over the running tasks: a task
# that runs alone (here a noop lm_pretrain sleeping 3 s after the rest of its wave is done) takes
# every worker slot's threads (the worker log says "T -> 2T threads" with 2 workers), not with
# CGVLM_ELASTIC_THREADS=0, and the threads files are gone after the sweep. That results do not
# depend on the thread count is tests/train/test_threads.c and tests/stages/test_threads.sh.
. "$(dirname "$0")/lib.sh"
cd "$TMP"
printf '{"name": "share", "pipeline": "noop", "noop": {"sleep_ms": 3000, "sleep_stage": "lm_pretrain"}}\n' > exp.json

expect 0 "run, cores shared" -- "$BIN" run exp.json --workers 2 --db r.db --workspace ws
per=$(printf '%s\n' "$out" | sed -n 's/.* 2 CPU worker(s), \([0-9]*\) thread(s) each.*/\1/p')
[ -n "$per" ] || fail "no 'N thread(s) each' in the sweep's first line: $out"
grep -q "noop: $per -> $((2 * per)) threads (the scheduler's share of the cores)" ws/logs/worker-*.log ||
    fail "the task running alone did not take both slots' threads ($per -> $((2 * per))): $(cat ws/logs/worker-*.log)"
ls ws/logs/threads-* >/dev/null 2>&1 && fail "threads files left after the sweep: $(ls ws/logs)"

expect 0 "run, fixed shares" -- env CGVLM_ELASTIC_THREADS=0 "$BIN" run exp.json --workers 2 --set noop.sleep_ms=3001 --db r2.db --workspace ws2
grep -q "threads (the scheduler's share" ws2/logs/worker-*.log &&
    fail "CGVLM_ELASTIC_THREADS=0 still changed a task's threads: $(cat ws2/logs/worker-*.log)"
finish test_threads_share
