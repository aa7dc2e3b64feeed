#!/usr/bin/env bash
# test_commands.sh: query/runs/show/compare on a populated results db; query refuses writes;
# the three output formats parse; bad --db files are refused and left untouched.
set -u
BIN=$1 WRITER=$2 PY=$3
T=$(mktemp -d /tmp/cgvlm-db-cmd.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
expect() { # expect STATUS DESCRIPTION -- command...   (output in $out)
    local want=$1 what=$2; shift 3
    out=$("$@" 2>&1); got=$?
    [ "$got" = "$want" ] || bad "$what: exit $got, want $want; output: $out"
}
DB=$T/r.db
"$WRITER" populate "$DB" || { echo "FAIL: populate"; exit 1; }
export CGVLM_DB=$DB
q() { "$BIN" query --format csv "$1" | tail -n +2 | tr -d '\r'; }

# ---- runs ----
expect 0 "runs" -- "$BIN" runs
[ "$(printf '%s\n' "$out" | wc -l)" = 7 ] || bad "runs: want header + rule + 5 rows, got: $out"
ids() { "$BIN" runs --format csv "$@" | tail -n +2 | cut -d, -f1 | tr -d '\r' | tr '\n' ' '; }
[ "$(ids --sweep demo)" = "1 2 3 4 " ] || bad "runs --sweep demo: $(ids --sweep demo)"
[ "$(ids --state failed)" = "4 " ] || bad "runs --state failed: $(ids --state failed)"
[ "$(ids --state queued)" = "5 " ] || bad "runs --state queued: $(ids --state queued)"
[ "$(ids --where align.lambda=1)" = "3 4 " ] || bad "runs --where align.lambda=1: $(ids --where align.lambda=1)"
[ "$(ids --where align.lambda=0 --where instruct.fraction=0.1)" = "1 " ] || bad "runs two --where"
[ "$(ids --where seed=7)" = "5 " ] || bad "runs --where seed=7: $(ids --where seed=7)"
[ "$(ids --where size=tiny --sweep demo --state done)" = "1 2 3 " ] || bad "runs --where size=tiny: $(ids --where size=tiny --sweep demo --state done)"
expect 2 "runs --where on an axis no run has" -- "$BIN" runs --where no.such.axis=1
case "$out" in *"no axis 'no.such.axis'; axes there: "*align.lambda*) ;; *) bad "runs --where missing axis: $out";; esac
expect 2 "runs --sweep of a sweep not in the db" -- "$BIN" runs --sweep demoo
case "$out" in *"no sweep 'demoo'; sweeps there: "*demo*) ;; *) bad "runs --sweep missing: $out";; esac
expect 2 "runs --state bogus" -- "$BIN" runs --state bogus
expect 2 "runs --where without =" -- "$BIN" runs --where align.lambda
expect 2 "runs --format xml" -- "$BIN" runs --format xml
expect 2 "runs junk" -- "$BIN" runs junk
expect 2 "runs --bogus" -- "$BIN" runs --bogus

# ---- show ----
expect 0 "show 4" -- "$BIN" show 4
for want in "align.lambda=1,instruct.fraction=1,seed=0" "state       failed" "model.adapter" '"mlp2x"' \
            "out of memory on device 0" "lm_pretrain" "tasks done  4/5"; do
    case "$out" in *"$want"*) ;; *) bad "show 4 lacks '$want': $out";; esac
done
# a key that is not a plain identifier to SQLite's json_tree (an underscore) is shown unquoted
case "$out" in *"instruct.data_seed"*) ;; *) bad "show 4 lacks instruct.data_seed: $out";; esac
case "$out" in *'"data_seed"'*) bad "show 4 quotes a key: $out";; esac
expect 0 "show 1" -- "$BIN" show 1
case "$out" in *accuracy_likelihood*color*0.48*) ;; *) bad "show 1 lacks the color accuracy: $out";; esac
expect 0 "show by name" -- "$BIN" show lone-run
case "$out" in *"(lone run)"*) ;; *) bad "show lone-run: $out";; esac
"$BIN" show --format json 4 > "$T/show.json" || bad "show --format json"
"$PY" - "$T/show.json" <<'PYEOF' || bad "show json content: $(cat "$T/show.json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["run"]["run_id"] == 4 and j["run"]["state"] == "failed" and j["run"]["sweep"] == "demo", j["run"]
assert j["config"]["model"]["adapter"] == "mlp2x" and j["config"]["tags"] == ["a", "b"], j["config"]
assert {p["path"] for p in j["params"]} == {"align.lambda", "instruct.fraction"}, j["params"]
assert [t["kind"] for t in j["tasks"]] == ["world", "lm_pretrain", "align", "instruct", "eval"], j["tasks"]
assert j["tasks"][-1]["error"] == "out of memory on device 0", j["tasks"]
assert {(m["stage"], m["metric"]) for m in j["final_metrics"]} >= {("instruct", "loss"), ("align", "lr")}
assert j["evals"] == [], j["evals"]
PYEOF
expect 2 "show --format csv" -- "$BIN" show --format csv 4
expect 2 "show missing run" -- "$BIN" show no-such-run
case "$out" in *"no run 'no-such-run'"*) ;; *) bad "show missing run message: $out";; esac
expect 2 "show without a run" -- "$BIN" show
expect 2 "show two runs" -- "$BIN" show 1 2

# ---- compare ----
expect 0 "compare 1 3" -- "$BIN" compare 1 3
"$BIN" compare --format json 1 3 > "$T/cmp.json" || bad "compare --format json"
"$PY" - "$T/cmp.json" <<'PYEOF' || bad "compare json content"
import json, sys
rows = json.load(open(sys.argv[1]))
cfg = [(r["name"], r["a"], r["b"]) for r in rows if r["kind"] == "config"]
assert cfg == [("align.lambda", 0, 1)], cfg
ev = {r["name"]: r for r in rows if r["kind"] == "eval"}
acc = ev["cgvlm-world:accuracy_likelihood"]
assert abs(acc["a"] - 0.43) < 1e-9 and abs(acc["b"] - 0.63) < 1e-9 and abs(acc["delta"] - 0.2) < 1e-9, acc
m = {r["name"]: r for r in rows if r["kind"] == "metric"}
assert m["lm_pretrain:loss"]["delta"] == 0, m   # a shared task: same value on both sides
assert abs(m["align:loss"]["delta"] - 1) < 1e-9, m   # align tasks differ (lambda 0 vs 1)
PYEOF
expect 2 "compare one run" -- "$BIN" compare 1
expect 2 "compare missing" -- "$BIN" compare 1 99

# ---- query formats ----
SQL="SELECT 'a,b' AS x, 'say \"hi\"' AS y, 'l1' || char(10) || 'l2' AS z, NULL AS n, 1.5 AS f, 42 AS i, 0.1 AS p"
"$BIN" query --format csv "$SQL" > "$T/q.csv" || bad "query csv"
"$BIN" query --format json "$SQL" > "$T/q.json" || bad "query json"
"$PY" - "$T/q.csv" "$T/q.json" <<'PYEOF' || bad "query csv/json content"
import csv, json, sys
raw = open(sys.argv[1], newline="").read()
assert raw.endswith("\r\n"), repr(raw)
rows = list(csv.reader(open(sys.argv[1], newline="")))
assert rows == [["x", "y", "z", "n", "f", "i", "p"], ["a,b", 'say "hi"', "l1\nl2", "", "1.5", "42", "0.1"]], rows
j = json.load(open(sys.argv[2]))
assert j == [{"x": "a,b", "y": 'say "hi"', "z": "l1\nl2", "n": None, "f": 1.5, "i": 42, "p": 0.1}], j
PYEOF
"$BIN" query --format json "SELECT * FROM runs WHERE 0" > "$T/empty.json"
"$PY" -c "import json,sys; assert json.load(open(sys.argv[1])) == []" "$T/empty.json" || bad "empty json is not []"
expect 0 "query table" -- "$BIN" query "SELECT run_id, name FROM runs WHERE run_id <= 2 ORDER BY run_id"
[ "$(printf '%s\n' "$out" | sed -n 2p)" = "------  -------------------------------------------" ] || bad "table rule: $out"
[ "$(printf '%s\n' "$out" | sed -n 3p)" = "     1  align.lambda=0,instruct.fraction=0.1,seed=0" ] || bad "table row: $out"
expect 0 "trailing semicolon and comment" -- "$BIN" query "SELECT 1; -- done"
expect 2 "query of a column that does not exist" -- "$BIN" query "SELECT nosuch FROM v_runs"
case "$out" in *"no such column: nosuch (docs/DB.md lists every table and view"*) ;; *) bad "bad column: $out";; esac
expect 0 "pragma table_info" -- "$BIN" query "PRAGMA table_info(runs)"
expect 0 "pragma user_version read" -- "$BIN" query "PRAGMA user_version"
expect 0 "views" -- "$BIN" query "SELECT COUNT(*) FROM v_data_efficiency"
[ "$(q "SELECT COUNT(*) FROM v_data_efficiency")" = 3 ] || bad "v_data_efficiency rows: $(q "SELECT COUNT(*) FROM v_data_efficiency")"
[ "$(q "SELECT COUNT(*) FROM predictions")" = 18 ] || bad "predictions"
[ "$(q "SELECT COUNT(*) FROM environments")" = 1 ] || bad "one environment"

# ---- query refuses writes (exit 2) and the file does not change ----
sum_before=$(sha256sum "$DB" | cut -d' ' -f1)
for sql in "INSERT INTO metric_names (name) VALUES ('x')" "UPDATE runs SET seed = 9" "DELETE FROM runs" \
           "DROP TABLE runs" "DROP VIEW v_runs" "CREATE TABLE t (a)" "CREATE TEMP TABLE t (a)" \
           "ALTER TABLE runs ADD COLUMN x" "ATTACH '$T/other.db' AS o" "PRAGMA user_version = 5" \
           "PRAGMA journal_mode = DELETE" "PRAGMA query_only = 0" "PRAGMA wal_checkpoint" "VACUUM" \
           "REINDEX" "ANALYZE" "BEGIN" "SELECT 1; DELETE FROM runs" \
           "WITH x AS (SELECT 1) INSERT INTO metric_names (name) SELECT 'y' FROM x" \
           "REPLACE INTO metric_names (name) VALUES ('z')"; do
    expect 2 "query refuses: $sql" -- "$BIN" query "$sql"
    case "$out" in "cgvlm: error: query: "*) ;; *) bad "refusal message for '$sql': $out";; esac
done
[ ! -e "$T/other.db" ] || bad "ATTACH created a file"
[ "$(q "SELECT COUNT(*) FROM runs")" = 5 ] || bad "runs changed"
[ "$(q "SELECT COUNT(*) FROM metric_names WHERE name IN ('x','y','z')")" = 0 ] || bad "metric_names changed"
expect 2 "syntax error" -- "$BIN" query "SELEC 1"
expect 2 "no such table" -- "$BIN" query "SELECT * FROM nope"
expect 2 "no SQL" -- "$BIN" query
expect 2 "empty SQL" -- "$BIN" query " ; "

# ---- bad --db files: refused with a clear message, bytes untouched ----
check_untouched() { # FILE DESCRIPTION -- command...
    local f=$1 what=$2; shift 3
    local before after; before=$(sha256sum "$f" | cut -d' ' -f1)
    expect 2 "$what" -- "$@"
    after=$(sha256sum "$f" | cut -d' ' -f1)
    [ "$before" = "$after" ] || bad "$what: the file changed"
    [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || bad "$what: error is not one line: $out"
}
printf 'this is not a database\n%.0s' {1..200} > "$T/text.db"
check_untouched "$T/text.db" "text file as --db" -- "$BIN" runs --db "$T/text.db"
case "$out" in *"not a cgvlm results database"*) ;; *) bad "text file message: $out";; esac
check_untouched "$T/text.db" "text file to query" -- "$BIN" query --db "$T/text.db" "SELECT 1"
# a real database, damaged in the middle (self-contained: journal mode DELETE)
cp "$DB" "$T/c.db"; [ -e "$DB-wal" ] && cp "$DB-wal" "$T/c.db-wal"
sqlite3 "$T/c.db" "PRAGMA journal_mode = DELETE" > /dev/null
"$PY" -c "
import os, sys; f = open(sys.argv[1], 'r+b'); n = os.path.getsize(sys.argv[1]); f.seek(4096 * 2); f.write(b'\xa5' * (n - 4096 * 2))" "$T/c.db"
check_untouched "$T/c.db" "damaged db: runs" -- "$BIN" runs --db "$T/c.db"
case "$out" in *damaged*) ;; *) bad "damaged db message: $out";; esac
check_untouched "$T/c.db" "damaged db: query" -- "$BIN" query --db "$T/c.db" "SELECT COUNT(*), SUM(value) FROM metrics"
# another program's SQLite db, and one from a newer cgvlm
sqlite3 "$T/other.sqlite" "CREATE TABLE notes (a); INSERT INTO notes VALUES (1)"
check_untouched "$T/other.sqlite" "foreign sqlite db" -- "$BIN" runs --db "$T/other.sqlite"
sqlite3 "$T/v99.db" "CREATE TABLE runs (a); PRAGMA user_version = 99"
check_untouched "$T/v99.db" "user_version 99" -- "$BIN" runs --db "$T/v99.db"
case "$out" in *"schema version 99, newer"*) ;; *) bad "v99 message: $out";; esac
expect 2 "missing db" -- "$BIN" runs --db "$T/none.db"
[ ! -e "$T/none.db" ] || bad "a read command created the db"

# options after the SQL, and '--' before SQL that starts with a comment
expect 0 "options after the SQL" -- "$BIN" query "SELECT 1 AS one" --format json
case "$out" in *'"one":1'*) ;; *) bad "options after the SQL: $out";; esac
expect 0 "-- before the SQL" -- "$BIN" query --format csv -- "-- a comment
SELECT 2 AS two"

# ---- bench db: the JSON lines and their keys (numbers, not speeds: no timed test) ----
"$BIN" bench db --json --rows 2000 --runs 30 --steps 200 > "$T/bench.json" || bad "bench db failed"
"$PY" - "$T/bench.json" <<'PYEOF' || bad "bench db output: $(cat "$T/bench.json")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
fig = {l["figure"]: l for l in lines}
assert set(fig) == {"ingest", "step", "view"}, fig
assert fig["ingest"]["rows"] == 2000 and fig["ingest"]["rows_per_s"] > 0
assert fig["step"]["us_per_step"] > 0 and fig["view"]["view_ms"] > 0
assert fig["view"]["runs"] == 30 and fig["view"]["view_rows"] == 60, fig["view"]
PYEOF
expect 2 "bench db --rows 0" -- "$BIN" bench db --rows 0
expect 2 "bench db --bogus" -- "$BIN" bench db --bogus

[ $fail = 0 ] && echo "test_commands: ok"
exit $fail
