#!/usr/bin/env bash
# test_report_cli.sh CGVLM SCHEMA PY3: `cgvlm report`'s contract: user errors exit 2 with one line
# (unknown sweep lists the sweeps, no evaluations yet, missing db, bad flags incl. --target-effect, --out that is not a
# report), gnuplot missing -> a clear warning, exit 0, Markdown/CSV written; a re-run replaces the
# report atomically (no temporary left behind); the database is never modified.
set -u
BIN=$(realpath "$1") SCHEMA=$(realpath "$2") PY3=$3
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
"$PY3" "$HERE/make_db.py" "$SCHEMA" "$T/t.db" || { echo "FAIL: make_db.py"; exit 1; }
sum0=$(sha256sum "$T/t.db" | cut -d' ' -f1)

expect() { # expect STATUS PATTERN DESCRIPTION -- command...: exit status, one line on stderr matching PATTERN
    local want=$1 pat=$2 what=$3; shift 4
    err=$("$@" 2>&1 >/dev/null); got=$?
    if [ "$got" != "$want" ]; then echo "FAIL: $what: exit $got, want $want: $err"; fail=1; return; fi
    if [ "$want" != 0 ] && [ "$(printf '%s\n' "$err" | wc -l)" != 1 ]; then echo "FAIL: $what: not one line: $err"; fail=1; fi
    if ! printf '%s\n' "$err" | grep -q -- "$pat"; then echo "FAIL: $what: message '$err' lacks '$pat'"; fail=1; fi
}

cd "$T"
expect 2 "no sweep named 'nope'.*'cg1', 'cg3', 'generic', 'noaxes', 'null1', 'null6', 'partial', 'pending', 'shift4', 'strings'" "unknown sweep" -- "$BIN" report --db t.db --sweep nope
expect 2 "sweep 'pending' has no evaluation results yet" "sweep without evals" -- "$BIN" report --db t.db --sweep pending
expect 2 "results db 'missing.db' does not exist" "missing db" -- "$BIN" report --db missing.db --sweep cg3
expect 2 "not a cgvlm results database" "not a db" -- "$BIN" report --db "$SCHEMA" --sweep cg3
expect 2 "^cgvlm: error: report: --sweep NAME is required" "no --sweep" -- "$BIN" report --db t.db
expect 2 "unknown option '--frob'" "unknown flag" -- "$BIN" report --db t.db --sweep cg3 --frob
expect 2 "--bootstrap" "bad --bootstrap" -- "$BIN" report --db t.db --sweep cg3 --bootstrap 5
expect 2 "--seed" "bad --seed" -- "$BIN" report --db t.db --sweep cg3 --seed x
for bad in -1 0 101 abc nan inf ""; do
    expect 2 "--target-effect" "bad --target-effect '$bad'" -- "$BIN" report --db t.db --sweep cg3 --out tgt --target-effect "$bad"
done
[ -e tgt ] && { echo "FAIL: a bad --target-effect left an output directory"; fail=1; }
expect 2 "unexpected argument 'extra'" "extra argument" -- "$BIN" report --db t.db --sweep cg3 extra
mkdir keep && echo precious > keep/notes.txt
expect 2 "exists and is not a cgvlm report" "--out onto a foreign dir" -- "$BIN" report --db t.db --sweep cg3 --out keep
[ "$(cat keep/notes.txt)" = precious ] && [ "$(ls keep)" = notes.txt ] || { echo "FAIL: foreign --out dir was touched"; fail=1; }
ls -d keep.tmp-* >/dev/null 2>&1 && { echo "FAIL: temporary dir left after an error"; fail=1; }
"$BIN" report --help | grep -q "usage: cgvlm report" || { echo "FAIL: --help"; fail=1; }

# default output directory, and a re-run replacing it
expect 0 "report-cg3/report.html" "report (default --out)" -- "$BIN" report --db t.db --sweep cg3 --bootstrap 200
for f in report.md report.html summary.json data_efficiency.csv metrics.csv runs.csv categories.csv headline.csv significance.csv losses.csv \
         data_efficiency.png data_efficiency.svg data_efficiency.gp data_efficiency.dat; do
    [ -s "report-cg3/$f" ] || { echo "FAIL: report-cg3/$f missing or empty"; fail=1; }
done
echo stale > report-cg3/stale.txt
expect 0 "" "re-run" -- "$BIN" report --db t.db --sweep cg3 --bootstrap 200
[ -e report-cg3/stale.txt ] && { echo "FAIL: the re-run did not replace the report directory"; fail=1; }
ls -d report-cg3.* >/dev/null 2>&1 && { echo "FAIL: temporary or old dirs left: $(ls -d report-cg3.*)"; fail=1; }
# --json prints the summary
"$BIN" report --db t.db --sweep cg3 --bootstrap 200 --json 2>/dev/null | "$PY3" -c 'import json,sys; s=json.load(sys.stdin); assert s["sweep"] == "cg3"' \
    || { echo "FAIL: --json"; fail=1; }

# gnuplot missing: a clear message, exit 0, Markdown/CSV/summary written, no figures
mkdir empty
err=$(PATH="$T/empty" "$BIN" report --db t.db --sweep cg3 --out nognuplot 2>&1 >/dev/null); got=$?
[ $got = 0 ] || { echo "FAIL: without gnuplot: exit $got: $err"; fail=1; }
printf '%s\n' "$err" | grep -q "gnuplot not found on PATH; install gnuplot-nox for figures; the Markdown and CSV parts were written" \
    || { echo "FAIL: without gnuplot: message '$err'"; fail=1; }
for f in report.md report.html data_efficiency.csv summary.json data_efficiency.gp data_efficiency.dat; do
    [ -s "nognuplot/$f" ] || { echo "FAIL: without gnuplot: $f missing"; fail=1; }
done
ls nognuplot/*.png nognuplot/*.svg >/dev/null 2>&1 && { echo "FAIL: without gnuplot: figures exist"; fail=1; }
grep -q "gnuplot was not found" nognuplot/report.md || { echo "FAIL: without gnuplot: report.md does not say so"; fail=1; }
grep -Eq '"gnuplot_found":[[:space:]]*false' nognuplot/summary.json || { echo "FAIL: without gnuplot: summary.json"; fail=1; }

[ "$(sha256sum t.db | cut -d' ' -f1)" = "$sum0" ] || { echo "FAIL: the database changed"; fail=1; }
[ $fail = 0 ] && echo "test_report_cli: ok"
exit $fail
