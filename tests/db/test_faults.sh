#!/usr/bin/env bash
# test_faults.sh: a writer killed with SIGKILL mid-batch loses at most that batch; a full disk
# (RLIMIT_FSIZE) and an unwritable place give a clear error and keep what was committed.
set -u
BIN=$1 WRITER=$2
T=$(mktemp -d /tmp/cgvlm-db-faults.XXXXXX)
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
rows_of() { sqlite3 "$1" "SELECT COUNT(*) FROM metrics JOIN tasks USING (task_id) WHERE key = '$2'"; }

# ---- SIGKILL in the middle of writing: several trials at different moments ----
DB=$T/kill.db
B=5000
for trial in 1 2 3 4; do
    "$WRITER" write "$DB" "kill-$trial" 1000000000 $B > "$T/k$trial.out" 2>&1 &
    pid=$!
    # wait until it has committed something, then a little more (a different point each trial)
    for _ in $(seq 1 1500); do grep -q committed "$T/k$trial.out" && break; sleep 0.02; done  # up to 30 s on a loaded machine
    sleep "0.$((trial * 7))"
    kill -KILL $pid
    wait $pid 2>/dev/null
    last=$(grep '^committed' "$T/k$trial.out" | tail -1 | cut -d' ' -f2)
    last=${last:-0}
    n=$(rows_of "$DB" "kill-$trial")
    [ $((n % B)) = 0 ] || bad "trial $trial: $n rows is not a whole number of batches of $B"
    [ "$n" -ge "$last" ] || bad "trial $trial: $n rows < $last reported committed"
    # the batch being committed when killed may have landed without being reported: at most one
    [ "$n" -le $((last + B)) ] || bad "trial $trial: $n rows > $last reported + one batch"
    [ "$n" -gt 0 ] || bad "trial $trial: nothing committed"
    [ "$(sqlite3 "$DB" "PRAGMA integrity_check")" = ok ] || bad "trial $trial: integrity_check"
done
# the db still takes writes after the kills
"$WRITER" write "$DB" after-kill 10000 1000 > /dev/null || bad "writing after the kills failed"
[ "$(rows_of "$DB" after-kill)" = 10000 ] || bad "rows after the kills"

# ---- disk full: a file-size limit, SIGXFSZ ignored ----
DB=$T/full.db
"$WRITER" write "$DB" warmup 1000 1000 > /dev/null || bad "warmup"
"$WRITER" write "$DB" full 100000000 2000 --fsize $((4 * 1024 * 1024)) > "$T/full.out" 2> "$T/full.err"
st=$?
[ $st = 1 ] || bad "disk full: exit $st, want 1: $(cat "$T/full.err")"
grep -q "cgvlm: error: .*\(File too large\|disk full\)" "$T/full.err" || bad "disk full message: $(cat "$T/full.err")"
last=$(grep '^committed' "$T/full.out" | tail -1 | cut -d' ' -f2)
[ -n "$last" ] && [ "$last" -gt 0 ] || bad "disk full: nothing was committed before the limit"
[ "$(rows_of "$DB" full)" = "${last:-x}" ] || bad "disk full: $(rows_of "$DB" full) rows, $last reported committed"
[ "$(rows_of "$DB" warmup)" = 1000 ] || bad "disk full: earlier rows lost"
[ "$(sqlite3 "$DB" "PRAGMA integrity_check")" = ok ] || bad "disk full: integrity_check"
"$BIN" query --db "$DB" "SELECT COUNT(*) FROM metrics" > /dev/null || bad "disk full: query afterwards"
# the limit already reached when opening: refused at once, nothing changed
sum=$(sha256sum "$DB" | cut -d' ' -f1)
# (stderr through a pipe: the limit applies to every file the process writes, a log too)
zero=$("$WRITER" write "$DB" tiny 10 10 --fsize 0 2>&1 > /dev/null)
st=$?
[ $st != 0 ] || bad "fsize 0: succeeded"
case "$zero" in *"cgvlm: error: "*"File too large"* | *"cgvlm: error: "*"disk full"*) ;; *) bad "fsize 0 message: $zero";; esac
[ "$(rows_of "$DB" tiny)" = 0 ] || bad "fsize 0: rows written"

# ---- unwritable places ----
"$WRITER" write /proc/cgvlm-test.db k 10 10 > /dev/null 2> "$T/proc.err"
st=$?
[ $st = 2 ] || bad "db under /proc: exit $st, want 2"
grep -q "cannot open results db '/proc/cgvlm-test.db'" "$T/proc.err" || bad "db under /proc message: $(cat "$T/proc.err")"
if [ "$(id -u)" != 0 ]; then  # root writes anywhere: permission bits cannot stop it
    mkdir "$T/ro"; "$WRITER" write "$T/ro/r.db" k 10 10 > /dev/null || bad "ro setup"
    chmod a-w "$T/ro" "$T/ro/r.db"
    "$WRITER" write "$T/ro/r.db" k2 10 10 > /dev/null 2> "$T/ro.err"
    [ $? != 0 ] || bad "unwritable db: succeeded"
    grep -q "cgvlm: error:" "$T/ro.err" || bad "unwritable db message: $(cat "$T/ro.err")"
    chmod u+w "$T/ro" "$T/ro/r.db"
    [ "$(rows_of "$T/ro/r.db" k)" = 10 ] || bad "unwritable db: rows lost"
fi
[ $fail = 0 ] && echo "test_faults: ok"
exit $fail
