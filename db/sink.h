/* sink.h: the results-store sink: a metrics_sink (core/metrics.h) that writes one task's step
 * metrics, evaluations, predictions and artifacts into the results db.
 *
 * Calls only append to memory; rows reach the database in one BEGIN IMMEDIATE transaction per
 * flush (metrics_flush, at checkpoints and at the end), whenever batch_rows rows are waiting,
 * or when the oldest waiting row is flush_seconds old; prepared statements are reused. Metric names are interned in metric_names
 * and cached in memory. A flush that finds the database busy waits (busy timeout, then
 * retries with backoff), so other writers never make it fail with "database is locked".
 * A failed flush rolls back and keeps its rows buffered; the next flush tries them again.
 * A sink is not thread-safe: one thread logs through it. */
#ifndef CG_SINK_H
#define CG_SINK_H

#include "core/metrics.h"

#include <sqlite3.h>
#include <stdint.h>

#define STORE_SINK_BATCH_ROWS 65536

#define STORE_SINK_FLUSH_SECONDS 10.0

typedef struct {
    int batch_rows;       /* rows (of any kind) buffered before a flush happens by itself; 0 = default */
    double flush_seconds; /* also flush when the oldest buffered row is this old (so that people
                             watching a long run see it move); 0 = default, < 0 = never */
    int64_t *committed;   /* when set, incremented by the number of rows each successful flush committed */
} store_sink_opts;

/* A sink writing into db for task_id (which must exist in tasks). The db handle stays owned by
 * the caller and must outlive the sink; one sink per handle at a time (it owns the transaction). */
int store_sink_open(sqlite3 *db, int64_t task_id, metrics_sink **out);
int store_sink_open_opts(sqlite3 *db, int64_t task_id, const store_sink_opts *opts,
                         metrics_sink **out);

/* THE journal ingestion (the scheduler's, for every backend; docs/DB.md): replays a task's
 * JSON-lines journal (core/metrics.h, metrics_journal_replay: the one parser) into the db,
 * replacing what the task had there, so that ingesting again changes nothing:
 *   - the task's metrics, evals and predictions are cleared first (what a live sink or an
 *     earlier ingestion wrote);
 *   - a step logged again (a resumed attempt redoes the steps after its checkpoint) replaces
 *     the records of its metric at that step and later that came before it;
 *   - a torn last line (a writer killed mid-record) is ignored;
 *   - a malformed line, or a record that is not a cgvlm one (another program's JSON lines),
 *     refuses the whole journal: CG_EUSER naming the file and the record; nothing is written.
 * The caller chooses the transaction: with none open this is one transaction of its own; inside
 * the caller's (the scheduler's fenced finish of an attempt) it is a savepoint, so a refused
 * journal leaves the caller's other writes to commit or roll back. A missing file is CG_OK
 * (nothing reported). *n_records (optional) gets the records replayed. */
int store_ingest_journal(sqlite3 *db, int64_t task_id, const char *path, int64_t *n_records);

#endif
