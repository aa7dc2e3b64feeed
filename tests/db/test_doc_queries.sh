#!/usr/bin/env bash
# test_doc_queries.sh: every ```sql block of docs/DB.md runs in the plain sqlite3 shell (and in
# `cgvlm query`) against a populated results db, succeeds and returns rows.
set -u
BIN=$1 WRITER=$2 DOC=$3
T=$(mktemp -d /tmp/cgvlm-db-doc.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
"$WRITER" populate "$T/r.db" || { echo "FAIL: populate"; exit 1; }
awk -v dir="$T" '/^```sql$/ { n++; f = sprintf("%s/q%02d.sql", dir, n); inq = 1; next }
                 /^```$/ { inq = 0; next }
                 inq { print > f }' "$DOC"
count=0
for q in "$T"/q*.sql; do
    [ -e "$q" ] || break
    count=$((count + 1))
    sql=$(cat "$q")
    out=$(sqlite3 -readonly -bail "$T/r.db" "$sql" 2>&1) || { echo "FAIL: sqlite3 rejects $(basename "$q"): $sql: $out"; fail=1; continue; }
    [ -n "$out" ] || { echo "FAIL: no rows from $(basename "$q"): $sql"; fail=1; }
    out=$("$BIN" query --db "$T/r.db" --format csv "$sql" 2>&1) || { echo "FAIL: cgvlm query rejects $(basename "$q"): $out"; fail=1; continue; }
    [ "$(printf '%s\n' "$out" | wc -l)" -ge 2 ] || { echo "FAIL: cgvlm query: no rows from $(basename "$q")"; fail=1; }
done
[ $count -ge 10 ] || { echo "FAIL: only $count example queries found in $DOC"; fail=1; }
[ $fail = 0 ] && echo "test_doc_queries: $count queries ok"
exit $fail
