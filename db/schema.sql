-- schema.sql: the cgvlm results database, schema version 1 (PRAGMA user_version = 1).
--
-- Everything a sweep learns lands here. The unit of work is the TASK (one stage execution,
-- keyed by the content hash of its config + upstream keys + code version); runs (grid points)
-- share tasks, so metrics, evaluations and predictions are stored per task and reach runs
-- through run_tasks. People and reports read the v_* views, which are the stable interface.
--
-- Task lifecycle (written down once; the scheduler's functions make the transitions):
--   queued --sched_claim--> running --task_finish(ok)--> done
--                                   --task_finish(error)--> failed     (attempts < max: queued again by sched_retry)
--                                   --sched_reap(pid gone / heartbeat lost)--> crashed (retried like failed)
--                                   --sched_cancel--> cancelled        (re-running the sweep queues it again)

CREATE TABLE IF NOT EXISTS sweeps (
  sweep_id      INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  spec_json     TEXT NOT NULL,            -- the sweep file, canonical JSON
  axes_json     TEXT NOT NULL,            -- JSON array of the axis config paths, in sweep order
  code_version  TEXT NOT NULL,
  created_at    REAL NOT NULL,            -- unix seconds
  owner_host    TEXT,                     -- the scheduler holding the sweep (two schedulers: the second refuses)
  owner_pid     INTEGER,
  owner_heartbeat REAL
);

CREATE TABLE IF NOT EXISTS runs (
  run_id        INTEGER PRIMARY KEY,
  sweep_id      INTEGER REFERENCES sweeps(sweep_id) ON DELETE CASCADE,   -- NULL for a lone `cgvlm run`
  name          TEXT NOT NULL,            -- "align.lambda=1,instruct.fraction=0.1,seed=0"
  config_json   TEXT NOT NULL,            -- the full resolved experiment config, canonical JSON
  params_json   TEXT NOT NULL,            -- this grid point's axis values {"align.lambda":1,...}
  seed          INTEGER NOT NULL,
  lambda        REAL,                     -- align.lambda (contrastive weight; 0 = generative only)
  fraction      REAL,                     -- instruct.fraction (instruction-data fraction, 0..1]
  size          TEXT,                     -- model size name (tiny/small/base/custom)
  created_at    REAL NOT NULL,
  UNIQUE (sweep_id, name)
);
CREATE INDEX IF NOT EXISTS runs_axes ON runs (sweep_id, lambda, fraction, seed);

-- Every axis value of every run, as an indexed column-like table (any sweep, any axis).
CREATE TABLE IF NOT EXISTS run_params (
  run_id        INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  path          TEXT NOT NULL,            -- config path, e.g. "align.lambda"
  value_json    TEXT NOT NULL,            -- the value as JSON
  value_num     REAL,                     -- the value when numeric (or boolean as 0/1)
  PRIMARY KEY (run_id, path)
);
CREATE INDEX IF NOT EXISTS run_params_by_path ON run_params (path, value_num);

CREATE TABLE IF NOT EXISTS environments (
  env_id        INTEGER PRIMARY KEY,
  code_version  TEXT NOT NULL,
  compiler      TEXT, blas TEXT, cuda TEXT, driver TEXT, device TEXT,
  host          TEXT, os TEXT,
  UNIQUE (code_version, compiler, blas, cuda, driver, device, host, os)
);

CREATE TABLE IF NOT EXISTS tasks (
  task_id       INTEGER PRIMARY KEY,
  key           TEXT NOT NULL UNIQUE,     -- sha256 of canonical stage config + upstream keys + code version
  kind          TEXT NOT NULL,            -- world, lm_pretrain, vit_pretrain, align, instruct, eval, noop
  config_json   TEXT NOT NULL,            -- the canonical stage config the key was computed from
  state         TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued','running','done','failed','crashed','cancelled')),
  attempts      INTEGER NOT NULL DEFAULT 0,
  max_attempts  INTEGER NOT NULL DEFAULT 3,
  host          TEXT, pid INTEGER,
  job_id        TEXT,                     -- Slurm job id when run through Slurm
  env_id        INTEGER REFERENCES environments(env_id),
  queued_at     REAL, started_at REAL, ended_at REAL,
  heartbeat_at  REAL,
  progress      REAL,                     -- 0..1, written with heartbeats
  error         TEXT,                     -- the last error text
  artifact_key  TEXT                      -- the task's output in the artifact store
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state);

CREATE TABLE IF NOT EXISTS task_deps (
  task_id       INTEGER NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
  dep_id        INTEGER NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
  PRIMARY KEY (task_id, dep_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS run_tasks (
  run_id        INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  task_id       INTEGER NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
  PRIMARY KEY (run_id, task_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_tasks_by_task ON run_tasks (task_id);

-- One row per attempt: the history behind tasks.attempts.
CREATE TABLE IF NOT EXISTS task_attempts (
  task_id       INTEGER NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
  attempt       INTEGER NOT NULL,
  state         TEXT NOT NULL,
  host          TEXT, pid INTEGER, job_id TEXT,
  started_at    REAL, ended_at REAL,
  exit_status   INTEGER,
  error         TEXT,
  PRIMARY KEY (task_id, attempt)
);

CREATE TABLE IF NOT EXISTS metric_names (
  name_id       INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE      -- "loss", "loss_gen", "loss_con", "lr", "grad_norm", "tokens_per_s", ...
);

-- Step metrics: the hot table (millions of rows). Names interned.
CREATE TABLE IF NOT EXISTS metrics (
  task_id       INTEGER NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
  name_id       INTEGER NOT NULL REFERENCES metric_names(name_id),
  step          INTEGER NOT NULL,
  value         REAL NOT NULL,
  wall          REAL NOT NULL             -- unix seconds when logged
);
CREATE INDEX IF NOT EXISTS metrics_by_task ON metrics (task_id, name_id, step);

-- Evaluation results: category '' is the overall figure; n = questions behind the value.
CREATE TABLE IF NOT EXISTS evals (
  task_id       INTEGER NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
  benchmark     TEXT NOT NULL,            -- "cgvlm-world", "scienceqa", "alignment"
  metric        TEXT NOT NULL,            -- "accuracy_likelihood", "accuracy_letter", "caption_ppl", "retrieval_r1", "retrieval_r5", "text_ppl"
  category      TEXT NOT NULL DEFAULT '', -- '' overall, else a category ("color") or "skill:<name>"
  value         REAL NOT NULL,
  n             INTEGER,
  PRIMARY KEY (task_id, benchmark, metric, category)
);

-- Every benchmark question's prediction.
CREATE TABLE IF NOT EXISTS predictions (
  task_id       INTEGER NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
  benchmark     TEXT NOT NULL,
  method        TEXT NOT NULL,            -- "likelihood" or "letter"
  question_id   TEXT NOT NULL,
  category      TEXT, skill TEXT,
  chosen        INTEGER,                  -- option index, -1 when no answer could be extracted
  answer        INTEGER NOT NULL,         -- the correct option index
  correct       INTEGER NOT NULL,         -- 0/1
  scores_json   TEXT,                     -- per-option scores (log-likelihoods) or the generated text
  PRIMARY KEY (task_id, benchmark, method, question_id)
);

CREATE TABLE IF NOT EXISTS artifacts (
  key           TEXT PRIMARY KEY,         -- content key (the task key for stage outputs)
  task_id       INTEGER REFERENCES tasks(task_id) ON DELETE SET NULL,
  path          TEXT NOT NULL,            -- path in the workspace's content-addressed store
  size          INTEGER NOT NULL,
  sha256        TEXT NOT NULL,
  created_at    REAL NOT NULL
);

-- ---------------------------------------------------------------- views (stable interface)

-- Each run with its sweep name and the state of its tasks.
CREATE VIEW IF NOT EXISTS v_runs AS
SELECT r.run_id, s.name AS sweep, r.name AS run, r.seed, r.lambda, r.fraction, r.size,
       (r.lambda > 0) AS contrastive,
       COUNT(t.task_id) AS n_tasks,
       SUM(t.state = 'done') AS n_done,
       SUM(t.state = 'failed') AS n_failed,
       SUM(t.state IN ('running')) AS n_running,
       CASE WHEN COUNT(t.task_id) > 0 AND SUM(t.state = 'done') = COUNT(t.task_id) THEN 'done'
            WHEN SUM(t.state = 'failed') > 0 THEN 'failed'
            WHEN SUM(t.state = 'running') > 0 THEN 'running'
            WHEN SUM(t.state IN ('crashed','cancelled')) > 0 THEN 'interrupted'
            ELSE 'queued' END AS state
FROM runs r LEFT JOIN sweeps s USING (sweep_id)
LEFT JOIN run_tasks rt USING (run_id) LEFT JOIN tasks t USING (task_id)
GROUP BY r.run_id;

-- Evaluation results by run (and category).
CREATE VIEW IF NOT EXISTS v_evals AS
SELECT r.run_id, s.name AS sweep, r.name AS run, r.seed, r.lambda, r.fraction,
       e.benchmark, e.metric, e.category, e.value, e.n, e.task_id
FROM evals e JOIN run_tasks rt USING (task_id) JOIN runs r USING (run_id)
LEFT JOIN sweeps s USING (sweep_id);

-- The data-efficiency table: one row per (sweep, contrastive on/off, fraction, seed) with the
-- overall benchmark accuracy of each scoring method.
CREATE VIEW IF NOT EXISTS v_data_efficiency AS
SELECT s.name AS sweep, r.run_id, r.lambda, (r.lambda > 0) AS contrastive, r.fraction, r.seed,
       e.benchmark, e.metric, e.value AS accuracy, e.n
FROM evals e JOIN run_tasks rt USING (task_id) JOIN runs r USING (run_id)
JOIN sweeps s USING (sweep_id)
WHERE e.category = '' AND e.metric LIKE 'accuracy%';

-- The last logged value of every step metric of every task of every run.
CREATE VIEW IF NOT EXISTS v_final_metrics AS
SELECT r.run_id, s.name AS sweep, r.name AS run, t.kind AS stage, n.name AS metric,
       m.step, m.value
FROM metrics m JOIN metric_names n USING (name_id) JOIN tasks t USING (task_id)
JOIN run_tasks rt USING (task_id) JOIN runs r USING (run_id) LEFT JOIN sweeps s USING (sweep_id)
WHERE m.step = (SELECT MAX(step) FROM metrics m2 WHERE m2.task_id = m.task_id AND m2.name_id = m.name_id);

-- Step metrics with names, for loss curves.
CREATE VIEW IF NOT EXISTS v_metrics AS
SELECT m.task_id, t.kind AS stage, t.key, n.name AS metric, m.step, m.value, m.wall
FROM metrics m JOIN metric_names n USING (name_id) JOIN tasks t USING (task_id);

-- Predictions with the run they belong to.
CREATE VIEW IF NOT EXISTS v_predictions AS
SELECT r.run_id, s.name AS sweep, r.name AS run, p.*
FROM predictions p JOIN run_tasks rt USING (task_id) JOIN runs r USING (run_id)
LEFT JOIN sweeps s USING (sweep_id);

-- Tasks with durations.
CREATE VIEW IF NOT EXISTS v_tasks AS
SELECT task_id, key, kind, state, attempts, max_attempts, host, pid, job_id,
       started_at, ended_at, ended_at - started_at AS seconds, progress, error
FROM tasks;

-- Later schema versions are migrations in db/store.c (`migrations[]`), applied in order:
--   2: index evals_by_category (task_id, category, metric, value, n, benchmark) for the views;
--      v_final_metrics redefined (same columns, same rows) to seek each last step by index.
