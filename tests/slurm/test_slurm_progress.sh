#!/usr/bin/env bash
# test_slurm_progress.sh: a task running as a Slurm job is visible live although the job never opens
# the db: the job rewrites work/KEY/progress.json, the scheduler's poll records it (tasks.progress,
# heartbeat_at, the last loss and tokens/s), `cgvlm status` shows it, all before the job ends.
# Then `cgvlm run --backend slurm` (the same Slurm options as sweep): a run through Slurm, its
# --device and --slurm-arg in each job's spec and sbatch line.
PORT_BASE=17350
. "$(dirname "$0")/lib.sh"
cd "$TMP"
DB=$TMP/r.db
start_cluster
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# a noop world stage that works 60 s: its progress grows in the db while its job runs
cat > p.json <<JSON
{"name": "p", "base": {"pipeline": "noop", "noop": {"sleep_ms": 60000, "sleep_stage": "world"}}, "seeds": [0]}
JSON
"$BIN" sweep p.json --db "$DB" --workspace ws --backend slurm > p.out 2>&1 &
sched=$!; bg_pids="$bg_pids $sched"
live="SELECT progress FROM tasks WHERE state = 'running' AND job_id IS NOT NULL AND progress > 0 AND progress < 1"
wait_until 60 '[ -n "$(q "$live")" ]' || fail "no progress of the running job reached the db: $(q 'SELECT kind, state, progress, job_id FROM tasks')"
p1=$(q "$live")
key=$(q "SELECT key FROM tasks WHERE state = 'running' AND progress > 0")
[ "$(squeue -h -j "$(job_of "$key")" -o %T)" = RUNNING ] || fail "the job is not running any more"
wait_until 30 "[ \"\$(q \"SELECT progress > $p1 FROM tasks WHERE key = '$key' AND state = 'running'\")\" = 1 ]" \
    || fail "the progress did not grow past $p1 while the job ran"
beat=$(q "SELECT strftime('%s', 'now') - heartbeat_at < 10 FROM tasks WHERE key = '$key'")
[ "$beat" = 1 ] || fail "the heartbeat is old: $(q "SELECT heartbeat_at, strftime('%s', 'now') FROM tasks WHERE key = '$key'")"
expect 0 "status while running" -- "$BIN" status --db "$DB" --sweep p
contains "status shows the running job" "Slurm job $(job_of "$key")"
printf '%s\n' "$out" | grep -Eq "noop:world +${key:0:12} +[0-9]+%" || fail "status shows no progress: $out"
[ -f "ws/work/$key/progress.json" ] || fail "no progress file"
expect 0 "cancel" -- "$BIN" cancel --db "$DB" --sweep p
wait $sched; rc=$?
[ $rc = 130 ] || fail "cancelled sweep: exit $rc: $(cat p.out)"

# a real training stage: its loss and tokens/s reach the db (and status) while its job runs
cat > t.json <<JSON
{"name": "t", "base": "$(cd "$HERE/../.." && pwd)/experiments/cgvlm-tiny.json",
 "set": {"world.n_align": 200, "world.n_instruct": 200, "world.n_corpus": 300, "world.n_bench": 24,
   "world.n_heldout": 20, "lm_pretrain.steps": 100000, "lm_pretrain.warmup": 2, "lm_pretrain.batch": 8,
   "checkpoint_every": 100000},
 "seeds": [0]}
JSON
"$BIN" sweep t.json --db "$DB" --workspace ws --backend slurm > t.out 2>&1 &
sched=$!; bg_pids="$bg_pids $sched"
lm="SELECT COUNT(DISTINCT n.name) FROM tasks t JOIN metrics m USING (task_id) JOIN metric_names n USING (name_id) WHERE t.kind = 'lm_pretrain' AND t.state = 'running' AND n.name IN ('loss', 'tokens_per_s')"
wait_until 120 '[ "$(q "$lm")" = 2 ]' || fail "no live loss and tokens/s of the running lm_pretrain job: $(q 'SELECT kind, state, progress FROM tasks')"
expect 0 "status with a loss" -- "$BIN" status --db "$DB" --sweep t
printf '%s\n' "$out" | grep -Eq "lm_pretrain +[0-9a-f]{12} +[0-9]+%  loss [0-9.]+  [0-9]+ tok/s  Slurm job" \
    || fail "status shows no live loss: $out"
kill -INT $sched
wait $sched; rc=$?
[ $rc = 130 ] || fail "interrupted sweep: exit $rc: $(cat t.out)"
[ "$(q "SELECT state FROM tasks WHERE kind = 'lm_pretrain'")" = cancelled ] || fail "lm_pretrain: $(q "SELECT state, error FROM tasks WHERE kind = 'lm_pretrain'")"
finish slurm_progress
