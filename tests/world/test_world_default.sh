#!/usr/bin/env bash
# test_world_default.sh BIN PY3 CHECK_FORMATS TMP: a world with the default sizes, through
# `world check` and the Python format checks (slow: about 60 MB of images).
set -u
BIN=$1 PY3=$2 CHECK=$3 T=$4
rm -rf "$T" && mkdir -p "$T"
fail=0
"$BIN" --quiet world generate --seed 1 --out "$T/w" || { echo "FAIL: generate"; exit 1; }
"$BIN" world check "$T/w" || fail=1
"$PY3" "$CHECK" "$T/w" || fail=1
[ $fail = 0 ] && echo "test_world_default: ok" && rm -rf "$T"
exit $fail
