#!/usr/bin/env bash
# test_bench.sh: `cgvlm bench train`'s contract: one JSON object per line with the documented
# fields, and user errors (unknown size/stage/flag, --device cuda in this build) exit 2 with one line.
set -u
BIN=$1
fail=0
expect() { # expect STATUS DESCRIPTION -- command...
    local want=$1 what=$2; shift 3
    out=$("$@" 2>&1); got=$?
    if [ "$got" != "$want" ]; then echo "FAIL: $what: exit $got, want $want; output: $out"; fail=1; fi
    if [ "$want" = 2 ] && [ "$(printf '%s\n' "$out" | wc -l)" != 1 ]; then echo "FAIL: $what: not one line: $out"; fail=1; fi
}
expect 0 "help" -- "$BIN" bench train --help
expect 2 "unknown size" -- "$BIN" bench train --size huge
expect 2 "unknown stage" -- "$BIN" bench train --stage dance
expect 2 "unknown flag" -- "$BIN" bench train --frob
expect 2 "bad steps" -- "$BIN" bench train --steps 0
expect 2 "cuda not built" -- "$BIN" bench train --device cuda
expect 2 "unknown device" -- "$BIN" bench train --device tpu
out=$(OMP_NUM_THREADS=2 "$BIN" bench train --size tiny --stage align --steps 1 --warmup 0 --json) || { echo "FAIL: bench run: $out"; fail=1; }
/usr/bin/python3 - "$out" <<'PY' || fail=1
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines()]
assert len(rows) == 1, rows
r = rows[0]
for k in ("ms_per_step", "tokens_per_s", "gflops_per_s", "peak_rss_mb", "arena_mb", "size", "stage", "batch", "threads"):
    assert k in r, k
assert r["size"] == "tiny" and r["stage"] == "align" and r["batch"] == 32 and r["seq"] == 64
assert r["ms_per_step"] > 0 and r["gflops_per_s"] > 0 and r["peak_rss_mb"] > 10 and r["arena_mb"] > 10
assert r["loss_first"] > 0
PY
[ $fail = 0 ] && echo "test_bench: ok"
exit $fail
