#!/usr/bin/env bash
# test_slurm_errors.sh: user errors of the Slurm backend, each one line and exit 2 with nothing
# left running: no sbatch on PATH, an unknown partition, a submission Slurm refuses (its message
# passed on), Slurm options without --backend slurm, an unknown backend.
PORT_BASE=17340
. "$(dirname "$0")/lib.sh"
cd "$TMP"
DB=$TMP/r.db
cat > s.json <<JSON
{"name": "s", "base": {"pipeline": "noop"}, "seeds": [0]}
JSON
mkdir empty
expect 2 "no sbatch" -- env PATH="$TMP/empty" "$BIN" sweep s.json --db "$DB" --workspace ws --backend slurm
contains "no sbatch" "sbatch not found on PATH; is this a Slurm login node? use --backend local"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "no sbatch: more than one line: $out"
expect 2 "options without slurm" -- "$BIN" sweep s.json --db "$DB" --workspace ws --partition debug
contains "options without slurm" "need --backend slurm"
expect 2 "unknown backend" -- "$BIN" sweep s.json --db "$DB" --workspace ws --backend pbs
contains "unknown backend" "'local' or 'slurm'"

start_cluster
expect 2 "unknown partition" -- "$BIN" sweep s.json --db "$DB" --workspace ws --backend slurm --partition nope
contains "unknown partition" "unknown Slurm partition 'nope'"
# more memory than the node has: sbatch refuses, its message is the error
expect 2 "refused" -- "$BIN" sweep s.json --db "$DB" --workspace ws --backend slurm --slurm-arg=--mem=900000000
contains "refused" "sbatch refused task noop"
contains "refused" "Requested node configuration is not available"
[ "$(q "SELECT COUNT(*) FROM tasks WHERE state = 'running'")" = 0 ] || fail "refused: tasks left running: $(q "SELECT state, COUNT(*) FROM tasks GROUP BY 1")"
[ "$(q "SELECT owner_pid IS NULL FROM sweeps WHERE name = 's'")" = 1 ] || fail "ownership not released"
[ -z "$(squeue -h -o %i)" ] || fail "jobs left: $(squeue)"
# a submit limit (QOS MaxSubmitJobs needs slurmdbd: an sbatch in front of the real one refuses
# a third live job with Slurm's message): the rest wait, nothing fails, each attempt runs once
mkdir limit
cat > limit/sbatch <<'SH'
#!/bin/sh
if [ "$(squeue -h -o %i | wc -l)" -ge 2 ]; then
    echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2
    echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)" >&2
    exit 1
fi
exec /usr/bin/sbatch "$@"
SH
chmod +x limit/sbatch
cat > lim.json <<JSON
{"name": "lim", "base": {"pipeline": "noop", "noop": {"sleep_ms": 200}}, "axes": {"world.seed": [1, 2]}}
JSON
expect 0 "submit limit" -- env PATH="$TMP/limit:$PATH" "$BIN" sweep lim.json --db "$DB" --workspace ws --backend slurm
contains "submit limit" "submit limit reached"
[ "$(q "SELECT COUNT(*) || ' ' || SUM(attempts) FROM tasks t JOIN run_tasks USING (task_id) JOIN runs USING (run_id) JOIN sweeps s USING (sweep_id) WHERE s.name = 'lim' AND t.state = 'done'")" = "12 12" ] || fail "submit limit: $(q "SELECT state, attempts, error FROM tasks")"

# and the same sweep then runs
expect 0 "after the errors" -- "$BIN" sweep s.json --db "$DB" --workspace ws --backend slurm
finish slurm_errors
