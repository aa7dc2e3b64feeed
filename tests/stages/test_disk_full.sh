#!/bin/bash
# test_disk_full.sh MODE CGVLM DRIVER JOURNAL_FAULT PY3 MAKE_EMPTY_DB DIR: writes that fail while
# each writer runs. MODE ulimit: a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes past it
# fail with EFBIG "File too large"); MODE tmpfs: a full tmpfs ("No space left on device"), in a
# private mount namespace (exit 77, skipped, where unshare or mount is not allowed).
# For each writer: the command fails with exit status 1 and one error naming the file, the cause
# and what to do; nothing half-written is left where a later run would trust it (no world dir,
# no published artifact, the previous checkpoint still loads, no torn journal line, the previous
# report untouched); the results db passes integrity_check; and once the limit is lifted the
# same command completes with results bitwise identical to an uninterrupted run.
set -u
mode=$1 cgvlm=$2 driver=$3 jfault=$4 py=$5 schema=$6 dir=$7
here=$(cd "$(dirname "$0")" && pwd)
cfg=$here/../../experiments/cgvlm-tiny.json
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*"; exit 1; }

if [ "$mode" = tmpfs ] && [ "${DISK_FULL_IN_NS:-}" != 1 ]; then
  # a private mount namespace: the tmpfs mounts vanish with the test, whatever happens
  command -v unshare >/dev/null || { echo "SKIP: no unshare"; exit 77; }
  if [ "$(id -u)" = 0 ]; then ns=(unshare -m --propagation private); else ns=(unshare -r -m --propagation private); fi
  "${ns[@]}" true 2>/dev/null || { echo "SKIP: cannot create a mount namespace here"; exit 77; }
  DISK_FULL_IN_NS=1 exec "${ns[@]}" bash "$0" "$@"
fi

rm -rf "$dir" && mkdir -p "$dir" || fail "cannot create $dir"
mnt=$dir/mnt
if [ "$mode" = tmpfs ]; then
  mkdir -p "$mnt"
  mount -t tmpfs -o size=1m tmpfs "$mnt" 2>/dev/null || { echo "SKIP: cannot mount a tmpfs"; exit 77; }
  cause="No space left on device" hint="the disk is full: free space on it and run the same command again"
else
  cause="File too large" hint="a file-size limit ('ulimit -f') was reached: raise it and run the same command again"
fi
# resize SIZE (1536k, 16m): the tmpfs's size (files are kept); the way a full disk gets room again
resize() { mount -o remount,size="$1" "$mnt" || fail "cannot resize the tmpfs"; }

# limited KB CMD...: CMD under the fault: with ulimit, a limit of KB KiB per file (SIGXFSZ ignored
# so the write fails instead of killing); with tmpfs, as is. Its stderr (through a pipe: a log
# file would be limited too) in $err, its exit status in $st.
limited() {
  local kb=$1; shift
  if [ "$mode" = ulimit ]; then
    err=$( ( ulimit -f "$kb"; trap '' XFSZ; exec "$@" ) 2>&1 >/dev/null )
  else
    err=$("$@" 2>&1 >/dev/null)
  fi
  st=$?
}
# expect_error WHAT FILE-PATTERN: exit status 1, one "cgvlm: error:" naming the file, cause, hint
expect_error() {
  [ "$st" = 1 ] || fail "$1: exit status $st, expected 1: $err"
  printf '%s\n' "$err" | grep -q "cgvlm: error: .*'$2': $cause; $hint" \
    || fail "$1: the error does not name '$2', '$cause' and what to do: $err"
  echo "$1: $(printf '%s\n' "$err" | grep 'cgvlm: error:' | cut -c1-160)..."
}
nothing_like() { ! ls -d "$@" >/dev/null 2>&1; }

W=(--n-align 200 --n-instruct 100 --n-corpus 300 --n-bench 12 --n-heldout 20)
sets=(--set world.n_align=200 --set world.n_instruct=100 --set world.n_corpus=300 --set world.n_bench=12
      --set world.n_heldout=20 --set lm_pretrain.steps=60 --set lm_pretrain.warmup=5
      --set lm_pretrain.batch=8 --set checkpoint_every=4)
lm_artifact() { ls -d "$1"/artifacts/* 2>/dev/null | while read -r a; do [ -f "$a/model.safetensors" ] && echo "$a"; done; }
world_artifact() { ls -d "$1"/artifacts/* 2>/dev/null | while read -r a; do [ -f "$a/world.json" ] && echo "$a"; done; }

# the references: uninterrupted, outside any limit
"$cgvlm" world generate --out "$dir/world.ref" "${W[@]}" >/dev/null 2>&1 || fail "reference world"
"$driver" "$dir/ref" "$cfg" "${sets[@]}" --until lm_pretrain >"$dir/ref.log" 2>&1 || { cat "$dir/ref.log"; fail "reference run"; }

# ---- world generation: align.npy (600 KB) does not fit ----
[ "$mode" = tmpfs ] && wdir=$mnt || wdir=$dir
limited 256 "$cgvlm" world generate --out "$wdir/world" "${W[@]}"
expect_error "world generate" "[a-z_/.]*' in '$wdir/world.tmp-[^']*"
[ -e "$wdir/world" ] && fail "world generate: a world directory was left behind"
nothing_like "$wdir"/world.tmp-* || fail "world generate: its temporary directory was left behind"
# over an existing world (--force, another seed): the old world stays whole and checks
cp -a "$dir/world.ref" "$dir/world.old"
if [ "$mode" = tmpfs ]; then
  resize 2m; rm -rf "$dir/world.old"; cp -a "$dir/world.ref" "$mnt/world.old"; old=$mnt/world.old
else old=$dir/world.old; fi
limited 256 "$cgvlm" world generate --out "$old" --force --seed 7 "${W[@]}"
expect_error "world generate --force" "[a-z_/.]*' in '$old.tmp-[^']*"
diff -r "$dir/world.ref" "$old" >/dev/null || fail "world generate --force: the previous world was changed"
"$cgvlm" world check "$old" >/dev/null 2>&1 || fail "world generate --force: the previous world no longer checks"
nothing_like "$old".tmp-* || fail "world generate --force: its temporary directory was left behind"
# lifted: the same command writes the same world
[ "$mode" = tmpfs ] && { rm -rf "$old"; resize 8m; }
"$cgvlm" world generate --out "$wdir/world" "${W[@]}" >/dev/null 2>&1 || fail "world generate after the limit was lifted"
diff -r "$dir/world.ref" "$wdir/world" >/dev/null || fail "world generate: the world differs from the uninterrupted one"
"$cgvlm" world check "$wdir/world" >/dev/null 2>&1 || fail "world generate: the world does not check"
echo "world generate: lifted, identical"
# and had a half-written .npy ever been left in a world, `world check` would refuse it
cp -a "$dir/world.ref" "$dir/world.cut"
truncate -s $(( $(stat -c %s "$dir/world.cut/images/align.npy") / 2 )) "$dir/world.cut/images/align.npy"
"$cgvlm" world check "$dir/world.cut" >/dev/null 2>&1 && fail "world check accepts a half-written images/align.npy"
rm -rf "$dir/world.cut"
[ "$mode" = tmpfs ] && { rm -rf "$wdir/world"; resize 1m; }

# ---- the world stage's artifact (stage driver: staging, then one rename) ----
[ "$mode" = tmpfs ] && ws=$mnt/ws || ws=$dir/ws
limited 256 "$driver" "$ws" "$cfg" "${sets[@]}" --until world
expect_error "world stage" "[a-z_/.]*' in '$ws/staging/[0-9a-f]*.tmp-[^']*"
[ -z "$(ls -A "$ws/artifacts" 2>/dev/null)" ] || fail "world stage: something was published: $(ls "$ws/artifacts")"
[ -z "$(find "$ws/staging" -mindepth 2 2>/dev/null)" ] || fail "world stage: files left in staging: $(find "$ws/staging" -mindepth 2 | head -3)"
[ "$mode" = tmpfs ] && resize 16m   # room for the world, its journal and one checkpoint, not two
"$driver" "$ws" "$cfg" "${sets[@]}" --until world >/dev/null 2>&1 || fail "world stage after the limit was lifted"
diff -r "$(world_artifact "$dir/ref")" "$(world_artifact "$ws")" >/dev/null \
  || fail "world stage: the published world differs from the uninterrupted run's"
echo "world stage: lifted, the artifact is identical"

# ---- a training checkpoint: the limit arrives once a first checkpoint (10 MB) is on disk ----
if [ "$mode" = ulimit ]; then
  command -v prlimit >/dev/null || fail "prlimit (util-linux) is needed"
  ( trap '' XFSZ; exec "$driver" "$ws" "$cfg" "${sets[@]}" --until lm_pretrain ) 2>"$dir/ckpt.err" >/dev/null &
  pid=$!
  for _ in $(seq 1 600); do ls "$ws"/work/*/checkpoint.safetensors >/dev/null 2>&1 && break; sleep 0.05; done
  prlimit --pid $pid --fsize=1048576 || fail "prlimit"
  wait $pid
  st=$? err=$(cat "$dir/ckpt.err")
else
  # the tmpfs holds one checkpoint: writing the second beside it fills it
  limited 0 "$driver" "$ws" "$cfg" "${sets[@]}" --until lm_pretrain
fi
expect_error "checkpoint" "$ws/work/[0-9a-f]*/checkpoint.safetensors"
[ -z "$(lm_artifact "$ws")" ] || fail "checkpoint: weights were published (the run ended before the fault: make it longer)"
ck=$(ls "$ws"/work/*/checkpoint.safetensors) || fail "checkpoint: the previous checkpoint is gone"
[ "$(ls -A "$(dirname "$ck")")" = checkpoint.safetensors ] \
  || fail "checkpoint: files left beside it: $(ls -A "$(dirname "$ck")")"
step=$("$py" -c "
import sys, numpy as np
sys.path.insert(0, '$here')
from safetensors_np import load
meta, t = load('$ck')
assert all(np.isfinite(v).all() for v in t.values() if v.dtype.kind == 'f')
print(meta['step'])") || fail "checkpoint: the kept checkpoint does not load"
[ "$step" -gt 0 ] && [ "$step" -lt 60 ] && [ $((step % 4)) = 0 ] || fail "checkpoint: kept at step $step"
[ "$mode" = tmpfs ] && resize 64m
"$driver" "$ws" "$cfg" "${sets[@]}" --until lm_pretrain >"$dir/ckpt.2.log" 2>&1 || { cat "$dir/ckpt.2.log"; fail "checkpoint: the run after the limit was lifted"; }
grep -q "resuming from the checkpoint at step $step of 60" "$dir/ckpt.2.log" || fail "checkpoint: did not resume from step $step"
"$py" "$here/journal_losses.py" "$dir"/ref/journal/lm_pretrain-*.jsonl "$ws"/journal/lm_pretrain-*.jsonl \
  || fail "checkpoint: the losses differ from the uninterrupted run"
cmp "$(lm_artifact "$dir/ref")/model.safetensors" "$(lm_artifact "$ws")/model.safetensors" \
  || fail "checkpoint: the published weights differ from the uninterrupted run"
echo "checkpoint: kept step $step loaded, resumed, bitwise identical"

# ---- the metrics journal: the limit falls in the middle of a record ----
if [ "$mode" = tmpfs ]; then
  rm -rf "$ws"; resize 1m
  head -c $((1024 * 1024 - 9000)) /dev/zero >"$mnt/filler" 2>/dev/null   # leaves about 9 KB
  jr=$mnt/m.jsonl jlimit=0
else
  jr=$dir/m.jsonl jlimit=9000   # journal_fault sets it itself
fi
err=$("$jfault" "$jr" $jlimit 400 2>&1 >"$dir/jr.out"); st=$?
flushed=$(sed -n 's/^flushed //p' "$dir/jr.out" | tail -1)
expect_error "journal" "$jr"
[ "$(tail -c 1 "$jr" | od -An -c | tr -d ' ')" = '\n' ] || fail "journal: it ends in a torn record"
[ "$(stat -c %s "$jr")" -le 9000 ] || fail "journal: written past the fault"
n1=$("$py" -c "
import json
steps = [json.loads(l)['step'] for l in open('$jr')]
assert steps == list(range(len(steps))), 'records lost or out of order'
print(len(steps))") || fail "journal: not whole records in order after the fault"
[ -n "$flushed" ] && [ "$n1" -ge "$flushed" ] || fail "journal: $n1 records left, ${flushed:-none} were flushed"
[ "$mode" = tmpfs ] && rm -f "$mnt/filler"
"$jfault" "$jr" 0 400 >/dev/null || fail "journal: appending after the limit was lifted"
"$py" -c "
import json
got = {}
for l in open('$jr'):
    r = json.loads(l)
    assert got.setdefault(r['step'], r['value']) == r['value'], r
assert sorted(got) == list(range(400)) and all(v == s + 0.25 for s, v in got.items())
" || fail "journal: after the limit was lifted it does not hold every record once, intact"
echo "journal: $n1 whole records kept, none torn; lifted, complete"

# ---- a training stage's journal filling up on its own (its own tiny tmpfs) ----
# experiments/stage_train.c flushes the metrics before it writes a checkpoint, so a journal that
# fills up fails the stage without losing the steps logged since the previous checkpoint.
if [ "$mode" = tmpfs ]; then
  jws=$dir/jws
  "$driver" "$jws" "$cfg" "${sets[@]}" --until world >/dev/null 2>&1 || fail "journal in training: world"
  mkdir -p "$jws/journal" && mount -t tmpfs -o size=8k tmpfs "$jws/journal" || fail "journal in training: mount"
  limited 0 "$driver" "$jws" "$cfg" "${sets[@]}" --until lm_pretrain
  expect_error "journal in training" "$jws/journal/lm_pretrain-[0-9a-f]*.jsonl"
  cp "$jws"/journal/lm_pretrain-*.jsonl "$dir/jws.first.jsonl"
  umount "$jws/journal"
  "$driver" "$jws" "$cfg" "${sets[@]}" --until lm_pretrain >"$dir/jws.2.log" 2>&1 || { cat "$dir/jws.2.log"; fail "journal in training: after room was made"; }
  "$py" "$here/journal_losses.py" "$dir"/ref/journal/lm_pretrain-*.jsonl "$dir/jws.first.jsonl" "$jws"/journal/lm_pretrain-*.jsonl \
    || fail "journal in training: step losses were lost or differ"
  cmp "$(lm_artifact "$dir/ref")/model.safetensors" "$(lm_artifact "$jws")/model.safetensors" \
    || fail "journal in training: the published weights differ from the uninterrupted run"
  echo "journal in training: every step logged, identical"
fi

# ---- the report directory ----
"$py" "$here/../reports/make_db.py" "$schema" "$dir/r.db" >/dev/null || fail "make_db.py"
"$cgvlm" report --db "$dir/r.db" --sweep cg3 --bootstrap 200 --out "$dir/rep.ref" >/dev/null 2>&1 || fail "reference report"
sum=$(sha256sum "$dir/r.db" | cut -d' ' -f1)
# sizes that let every figure (0.9 MB) fit and not report.html (0.7 MB); without gnuplot (no
# figures) the largest file is summary.json (35 KB), and reading the db needs 32 KB (its -shm)
if command -v gnuplot >/dev/null; then rlim=256 rfs1=1536k rfs2=3m; else rlim=33 rfs1=128k rfs2=300k; fi
[ "$mode" = tmpfs ] && { rm -rf "$mnt"/*; resize $rfs1; }
[ "$mode" = tmpfs ] && rdir=$mnt || rdir=$dir
limited $rlim "$cgvlm" report --db "$dir/r.db" --sweep cg3 --bootstrap 200 --out "$rdir/rep"
expect_error "report" "$rdir/rep.tmp-[^/]*/[a-z_.]*"
[ -e "$rdir/rep" ] && fail "report: a report directory was left behind"
nothing_like "$rdir"/rep.tmp-* || fail "report: its temporary directory was left behind"
# over a previous report: it stays as it was
[ "$mode" = tmpfs ] && resize $rfs2   # the previous report and less than a new one
cp -a "$dir/rep.ref" "$rdir/rep"
limited $rlim "$cgvlm" report --db "$dir/r.db" --sweep cg3 --bootstrap 100 --out "$rdir/rep"
expect_error "report over a previous one" "$rdir/rep.tmp-[^/]*/[a-z_.]*"
diff -r "$dir/rep.ref" "$rdir/rep" >/dev/null || fail "report: the previous report was changed"
nothing_like "$rdir"/rep.tmp-* "$rdir"/rep.old-* || fail "report: temporary directories left behind"
[ "$(sha256sum "$dir/r.db" | cut -d' ' -f1)" = "$sum" ] || fail "report: the results db was modified"
[ "$mode" = tmpfs ] && resize 8m
"$cgvlm" report --db "$dir/r.db" --sweep cg3 --bootstrap 200 --out "$rdir/rep" >/dev/null 2>&1 || fail "report after the limit was lifted"
# (report.md/html say when they were rendered, to the minute)
diff -r -I 'rendered 20[0-9-]* [0-9:]* UTC' "$dir/rep.ref" "$rdir/rep" >/dev/null || fail "report: differs from the uninterrupted one"
echo "report: lifted, identical"
# gnuplot exits 0 when the disk fills under it, its figure cut short: not published either
mkdir -p "$dir/fakebin"
printf '#!/bin/bash\n"%s" "$@" || exit\npng=${1%%.gp}.png\n[ -f "$png" ] && truncate -s 1000 "$png"\nexit 0\n' \
  "$(command -v gnuplot)" >"$dir/fakebin/gnuplot"
chmod +x "$dir/fakebin/gnuplot"
if command -v gnuplot >/dev/null; then
  err=$(PATH=$dir/fakebin:$PATH "$cgvlm" report --db "$dir/r.db" --sweep cg3 --bootstrap 200 --out "$dir/rep.cut" 2>&1 >/dev/null); st=$?
  [ "$st" = 1 ] || fail "report with a figure cut short: exit status $st, expected 1: $err"
  printf '%s\n' "$err" | grep -q "cgvlm: error: gnuplot left the figure '$dir/rep.cut.tmp-[^/]*/[a-z_]*.png' incomplete (.*): is the disk full or a file-size limit ('ulimit -f') reached?" \
    || fail "report with a figure cut short: no clear error: $err"
  nothing_like "$dir"/rep.cut* || fail "report with a figure cut short: something was left behind"
  echo "report: a figure gnuplot left cut short is refused"
fi

# ---- `cgvlm run` with its results db: the checkpoints (1-10 MB) do not fit ----
[ "$mode" = tmpfs ] && { rm -rf "$mnt"/*; resize 4m; }
[ "$mode" = tmpfs ] && rws=$mnt/rws || rws=$dir/rws
rsets=(--set world.n_align=200 --set world.n_instruct=200 --set world.n_corpus=300 --set world.n_bench=24
       --set world.n_heldout=20 --set lm_pretrain.steps=12 --set lm_pretrain.warmup=2 --set lm_pretrain.batch=8
       --set vit_pretrain.steps=6 --set vit_pretrain.warmup=1 --set vit_pretrain.batch=8 --set align.steps=6
       --set align.warmup=1 --set align.batch=8 --set instruct.min_steps=4 --set instruct.epochs=0.1
       --set instruct.batch=8 --set instruct.warmup=1 --set checkpoint_every=5)
"$cgvlm" run "$cfg" --db "$dir/run.ref.db" --workspace "$dir/run.ref" --workers 2 "${rsets[@]}" >"$dir/run.ref.log" 2>&1 \
  || { tail "$dir/run.ref.log"; fail "reference cgvlm run"; }
limited 1024 "$cgvlm" run "$cfg" --db "$dir/run.db" --workspace "$rws" --workers 2 --max-attempts 1 "${rsets[@]}"
[ "$st" = 1 ] || fail "cgvlm run: exit status $st, expected 1: $err"
printf '%s\n' "$err" | grep -q "cgvlm: error: sweep 'run-.*task(s) failed" || fail "cgvlm run: no clear error: $err"
q() { sqlite3 "$1" "$2"; }
[ "$(q "$dir/run.db" "PRAGMA integrity_check")" = ok ] || fail "cgvlm run: the results db fails integrity_check"
[ "$(q "$dir/run.db" "SELECT state FROM tasks WHERE kind = 'world'")" = done ] || fail "cgvlm run: the world task is not done"
e=$(q "$dir/run.db" "SELECT error FROM tasks WHERE kind = 'lm_pretrain' AND state = 'failed'")
printf '%s\n' "$e" | grep -q "'$rws/work/[0-9a-f]*/checkpoint.safetensors': $cause; $hint" \
  || fail "cgvlm run: lm_pretrain's recorded error does not name its checkpoint, '$cause' and what to do: $e"
for a in "$rws"/artifacts/*; do
  [ "$(q "$dir/run.db" "SELECT state FROM tasks WHERE key = '$(basename "$a")'")" = done ] \
    || fail "cgvlm run: artifact $(basename "$a") of a task that is not done"
done
[ "$(q "$dir/run.db" "SELECT COUNT(*) FROM artifacts a JOIN tasks t USING (task_id) WHERE t.state <> 'done'")" = 0 ] \
  || fail "cgvlm run: the db records an artifact of a task that is not done"
echo "cgvlm run: lm_pretrain failed naming its checkpoint; db intact"
[ "$mode" = tmpfs ] && resize 64m
"$cgvlm" run "$cfg" --db "$dir/run.db" --workspace "$rws" --workers 2 "${rsets[@]}" >"$dir/run.2.log" 2>&1 \
  || { tail "$dir/run.2.log"; fail "cgvlm run after the limit was lifted"; }
[ "$(q "$dir/run.db" "PRAGMA integrity_check")" = ok ] || fail "cgvlm run: integrity_check after the rerun"
dump() {
  q "$1" "SELECT benchmark, metric, category, printf('%.17g', value), n FROM evals ORDER BY 1, 2, 3"
  q "$1" "SELECT benchmark, method, question_id, chosen, answer, scores_json FROM predictions ORDER BY 1, 2, 3"
  q "$1" "SELECT stage, metric, step, printf('%.17g', value) FROM v_metrics WHERE metric LIKE 'loss%' ORDER BY 1, 2, 3"
  q "$1" "SELECT kind, state FROM tasks ORDER BY kind"
}
dump "$dir/run.ref.db" >"$dir/run.ref.dump"; dump "$dir/run.db" >"$dir/run.dump"
[ "$(grep -c . "$dir/run.ref.dump")" -gt 20 ] || fail "cgvlm run: the reference db holds almost nothing"
diff "$dir/run.ref.dump" "$dir/run.dump" >"$dir/run.diff" || { head "$dir/run.diff"; fail "cgvlm run: results differ from the uninterrupted run"; }
for a in "$dir"/run.ref/artifacts/*; do
  diff -r "$a" "$rws/artifacts/$(basename "$a")" >/dev/null || fail "cgvlm run: artifact $(basename "$a") differs"
done
echo "cgvlm run: lifted, evaluations, predictions, losses and artifacts identical"
echo "disk full ($mode): ok"
