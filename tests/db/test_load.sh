#!/usr/bin/env bash
# test_load.sh: 8 processes each write 100 000 step metrics through the sink (batches of 1000)
# into one new results db, all starting at once, while 2 others keep reading (counts, views).
# No "database is locked" or any other failure, no lost row, integrity_check ok.
set -u
BIN=$1 WRITER=$2
T=$(mktemp -d /tmp/cgvlm-db-load.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
DB=$T/load.db
W=8 N=100000
pids=()
for i in $(seq 1 $W); do
    "$WRITER" write "$DB" "writer-$i" $N 1000 > "$T/w$i.out" 2> "$T/w$i.err" &
    pids+=($!)
done
# readers: loop until the writers are gone; any failed read is recorded
reader() {
    local sql=$1 k=0
    while [ ! -e "$T/writers-done" ]; do
        if [ -e "$DB" ]; then
            "$BIN" query --db "$DB" --format csv "$sql" > /dev/null 2>> "$T/r$2.err" || {
                # before the first writer has created the schema the db may not be a results db yet
                grep -q "schema version 0\|does not exist" "$T/r$2.err" || echo "read failed" >> "$T/r$2.fail"
                : > "$T/r$2.err"; }
            k=$((k + 1))
        fi
        sleep 0.05
    done
    echo $k > "$T/r$2.count"
}
reader "SELECT COUNT(*), MAX(step) FROM metrics" 1 &
rp1=$!
reader "SELECT run, metric, step, value FROM v_final_metrics" 2 &
rp2=$!
for i in $(seq 1 $W); do
    wait "${pids[$((i - 1))]}" || bad "writer $i exit status $?: $(cat "$T/w$i.err")"
    grep -q "^done $N$" "$T/w$i.out" || bad "writer $i did not finish: $(tail -2 "$T/w$i.out")"
done
touch "$T/writers-done"
wait $rp1 $rp2
for r in 1 2; do
    [ -e "$T/r$r.fail" ] && bad "reader $r failed: $(cat "$T/r$r.err")"
    [ "$(cat "$T/r$r.count" 2>/dev/null || echo 0)" -gt 0 ] || bad "reader $r never read"
done
cat "$T"/*.err | grep -i "locked" && bad "someone saw 'database is locked'"
total=$(sqlite3 "$DB" "SELECT COUNT(*) FROM metrics")
[ "$total" = $((W * N)) ] || bad "metrics rows: $total, want $((W * N))"
per=$(sqlite3 "$DB" "SELECT COUNT(DISTINCT n) || ',' || MIN(n) FROM (SELECT COUNT(*) AS n FROM metrics GROUP BY task_id)")
[ "$per" = "1,$N" ] || bad "rows per writer: $per"
dups=$(sqlite3 "$DB" "SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY task_id, name_id, step HAVING COUNT(*) > 1)")
[ "$dups" = 0 ] || bad "$dups duplicated (task, metric, step) rows"
[ "$(sqlite3 "$DB" "SELECT COUNT(*) FROM metric_names")" = 5 ] || bad "metric names interned more than once"
final=$(sqlite3 "$DB" "SELECT COUNT(*) || ',' || MIN(step) || ',' || MAX(step) FROM v_final_metrics")
[ "$final" = "$((W * 5)),$((N / 5 - 1)),$((N / 5 - 1))" ] || bad "v_final_metrics: $final"
[ "$(sqlite3 "$DB" "PRAGMA integrity_check")" = ok ] || bad "integrity_check"
echo "readers: $(cat "$T/r1.count") + $(cat "$T/r2.count") queries"
[ $fail = 0 ] && echo "test_load: ok"
exit $fail
