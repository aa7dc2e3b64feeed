#!/usr/bin/env bash
# test_journal.sh: the task's journal through the one ingestion (db/sink.h store_ingest_journal)
# on the local backend: a resumed task's re-logged steps are not doubled, and a journal that is not
# cgvlm's (another program wrote the file) fails its task with the reason, once (not retried),
# without stopping the scheduler or the tasks that do not depend on it.
. "$(dirname "$0")/lib.sh"
DB=$TMP/r.db
cd "$TMP"

# a noop run whose stages log noop_ms every 10 ms slice and checkpoint: crashed once at the
# align stage, resumed: every step once in the db
printf '{"name": "j", "pipeline": "noop", "noop": {"metrics": true, "sleep_ms": 300, "sleep_stage": "align", "crash_stage": "align", "crash_attempts": 1}}\n' > exp.json
expect 0 "noop run with a crash" -- "$BIN" run exp.json --workers 2 --db "$DB" --workspace ws
dups=$(q "SELECT COUNT(*) FROM (SELECT task_id, name_id, step FROM metrics GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)")
[ "$dups" = 0 ] || fail "$dups re-logged steps are doubled"
[ "$(q "SELECT attempts FROM tasks WHERE kind = 'noop' AND json_extract(config_json, '$.stage') = 'align'")" = 2 ] \
    || fail "the align stand-in did not crash once: $(q 'SELECT kind, attempts, error FROM tasks')"
n=$(q "SELECT COUNT(*) FROM metrics JOIN tasks USING (task_id) WHERE json_extract(config_json, '$.stage') = 'align'")
[ "$n" -ge 5 ] || fail "the resumed align stand-in has $n noop_ms rows, want one per slice of its 300 ms"

# another program's file where the instruct task's journal goes
printf '{"name": "k", "pipeline": "noop", "world": {"seed": 9}, "noop": {"metrics": true}}\n' > exp2.json
expect 0 "dry run" -- "$BIN" run exp2.json --dry-run
key=$(printf '%s\n' "$out" | awk '$1 == "instruct" {print $2}')
[ -n "$key" ] || fail "no instruct key in: $out"
mkdir -p "ws/work/$key"
printf '{"level":"info","msg":"not cgvlm"}\n' > "ws/work/$key/metrics.jsonl"
expect 1 "run with a foreign journal" -- "$BIN" run exp2.json --workers 2 --db "$DB" --workspace ws
contains "the failure is reported" "not a cgvlm metrics record"
row=$(q "SELECT state, attempts FROM tasks WHERE key = '$key'")
[ "$row" = "failed|1" ] || fail "the task with the foreign journal: '$row', want failed once (not retried)"
q "SELECT error FROM tasks WHERE key = '$key'" | grep -q "metrics.jsonl': record 1 is not a cgvlm metrics record" \
    || fail "error text: $(q "SELECT error FROM tasks WHERE key = '$key'")"
[ -e "ws/work/$key/metrics.jsonl" ] || fail "the refused journal was removed"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'done'")" -ge 10 ] || fail "the other tasks did not finish"
finish test_journal
