#!/usr/bin/env bash
# test_cli.sh: the command line's contract: help, version, env, unknown input -> one line, exit 2.
set -u
BIN=$1
fail=0
expect() { # expect STATUS DESCRIPTION -- command...
    local want=$1 what=$2; shift 3
    out=$("$@" 2>&1); got=$?
    if [ "$got" != "$want" ]; then echo "FAIL: $what: exit $got, want $want; output: $out"; fail=1; fi
}
expect 0 "--help" -- "$BIN" --help
"$BIN" --help | grep -q "sweep" || { echo "FAIL: --help lists no commands"; fail=1; }
expect 0 "--version" -- "$BIN" --version
"$BIN" --version | grep -Eq '^cgvlm [0-9]+\.[0-9]+\.[0-9]+ \(code [0-9a-f]' || { echo "FAIL: --version format: $("$BIN" --version)"; fail=1; }
expect 0 "env" -- "$BIN" env
"$BIN" env | grep -q '^blas ' || { echo "FAIL: env shows no BLAS"; fail=1; }
"$BIN" env | grep -Eq '^cuda +(no GPU|[0-9]+: )' || { echo "FAIL: env shows no CUDA line"; fail=1; }
expect 2 "no command" -- "$BIN"
expect 0 "help" -- "$BIN" help
[ "$("$BIN" help)" = "$("$BIN" --help)" ] || { echo "FAIL: 'cgvlm help' is not 'cgvlm --help'"; fail=1; }
expect 0 "help sweep" -- "$BIN" help sweep
[ "$("$BIN" help sweep)" = "$("$BIN" sweep --help)" ] || { echo "FAIL: 'cgvlm help sweep' is not 'cgvlm sweep --help'"; fail=1; }
expect 2 "help of an unknown command" -- "$BIN" help frobnicate
case "$out" in "cgvlm: error: unknown command 'frobnicate'"*) ;; *) echo "FAIL: help frobnicate: $out"; fail=1;; esac
expect 2 "ambiguous option" -- "$BIN" bench train --s tiny
case "$out" in "cgvlm: error: bench train: option '--s' is ambiguous: --size, --stage or --steps; see 'cgvlm bench train --help'") ;;
  *) echo "FAIL: ambiguous option: $out"; fail=1;; esac
expect 2 "ambiguous option with a value" -- "$BIN" sweep x.json --d=cuda
case "$out" in "cgvlm: error: sweep: option '--d' is ambiguous: "*"--device"*) ;; *) echo "FAIL: ambiguous --d=: $out"; fail=1;; esac
expect 2 "unknown command" -- "$BIN" frobnicate
expect 2 "unknown global flag" -- "$BIN" --frob
expect 2 "env with junk" -- "$BIN" env junk
msg=$("$BIN" frobnicate 2>&1)
[ "$(printf '%s\n' "$msg" | wc -l)" = 1 ] || { echo "FAIL: error is not one line: $msg"; fail=1; }
case "$msg" in "cgvlm: error: unknown command 'frobnicate'"*) ;; *) echo "FAIL: error text: $msg"; fail=1;; esac
# an option given without its value, or a flag given a value, is named as such (not "unknown")
for cmdline in "sweep --workers" "run --set" "status --interval" "cancel --sweep" "query --db" "runs --where" \
               "show --sweep" "compare --format" "report --sweep" "fetch --jobs" "world generate --out" \
               "world show --split" "bench train --size" "bench db --rows" "bench sched --tasks" "bench fetch --repeat" \
               "bench world --n" "task --key"; do
    set -- $cmdline
    opt=${!#}
    expect 2 "$cmdline (no value)" -- "$BIN" $cmdline
    case "$out" in *"option '$opt' needs a value; see 'cgvlm "*) ;; *) echo "FAIL: $cmdline: $out"; fail=1;; esac
done
out=$("$BIN" sweep x.json --dry-run=1 2>&1)
case "$out" in *"option '--dry-run' takes no value"*) ;; *) echo "FAIL: --dry-run=1: $out"; fail=1;; esac
out=$("$BIN" sweep x.json --dryrun 2>&1)
case "$out" in *"unknown option '--dryrun'"*) ;; *) echo "FAIL: --dryrun: $out"; fail=1;; esac
for sub in world run sweep status query runs show compare report fetch bench env; do
    expect 0 "$sub --help" -- "$BIN" $sub --help
done
[ $fail = 0 ] && echo "test_cli: ok"
exit $fail
