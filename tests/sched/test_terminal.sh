#!/usr/bin/env bash
# test_terminal.sh: what `cgvlm run` shows. On a terminal (util-linux `script` gives it one) one
# line redrawn in place with the running task's progress and ETA; without a terminal, no redrawn
# lines, and a final summary with every count.
source "$(dirname "$0")/lib.sh"
EXP="$(dirname "$0")/../../experiments/cgvlm-tiny.json"
cd "$TMP"
command -v script >/dev/null || { echo "no 'script' command (util-linux): skipped"; exit 77; }
script -q -c "'$BIN' run '$EXP' --db tty.db --workspace ws1 --set pipeline=noop --set noop.sleep_ms=1500" tty.log \
    >/dev/null 2>&1 || fail "run on a terminal failed: $(tail -c 400 tty.log)"
tr '\r' '\n' < tty.log > tty.lines
grep -Eq '^.*tasks: [0-9]+/6 done, 1 running, [0-9]+ queued; [0-9]+ s \| noop [0-9]+%' tty.lines \
    || fail "no live line with the running task's progress: $(head -c 600 tty.lines)"
grep -Eq '\| noop [0-9]+% .*ETA [0-9]+ s' tty.lines || fail "no ETA for the running task"
grep -q 'all 6 tasks done' tty.lines || fail "no final summary on the terminal"

"$BIN" run "$EXP" --db plain.db --workspace ws2 --set pipeline=noop --set noop.sleep_ms=300 > plain.out 2> plain.err \
    || fail "run without a terminal failed: $(cat plain.err)"
grep -q $'\r' plain.err && fail "carriage returns without a terminal"
grep -q '^tasks: 6/6 done, 0 running, 0 queued, 0 failed, 0 crashed, 0 cancelled; ' plain.err \
    || fail "final counts missing: $(cat plain.err)"
finish test_terminal
