/* metrics.h: the one logging interface between the training core and whatever records results.
 *
 * The core calls metrics_scalar / metrics_eval / metrics_prediction / metrics_artifact; a sink
 * decides where they go: the SQLite results store (db/), a JSON-lines journal file (for workers
 * on other nodes: the scheduler ingests it), stderr, or several at once (metrics_tee). The core
 * never knows which. Calls must be cheap: a sink buffers and writes in batches.
 */
#ifndef CG_METRICS_H
#define CG_METRICS_H

#include <stdint.h>

typedef struct metrics_sink metrics_sink;
struct metrics_sink {
    void *ctx;
    /* A step metric of the current task: "loss", "loss_gen", "loss_con", "lr", "grad_norm", ... */
    int (*scalar)(void *ctx, const char *name, int64_t step, double value);
    /* An evaluation figure; category "" is the overall value; n = number of items behind it. */
    int (*eval)(void *ctx, const char *benchmark, const char *metric, const char *category,
                double value, int64_t n);
    /* One benchmark question's prediction (chosen -1 = no answer extracted). */
    int (*prediction)(void *ctx, const char *benchmark, const char *method, const char *question_id,
                      const char *category, const char *skill, int chosen, int answer,
                      const char *scores_json);
    /* An artifact the task published (checkpoint, dataset). */
    int (*artifact)(void *ctx, const char *key, const char *path, int64_t size, const char *sha256);
    /* Commit what is buffered (called at checkpoints and at the end of a task). */
    int (*flush)(void *ctx);
    /* Release the sink (flushes first). */
    void (*close)(void *ctx);
};

/* Null-safe dispatch: a NULL sink or a NULL callback does nothing and returns CG_OK. */
int metrics_scalar(metrics_sink *s, const char *name, int64_t step, double value);
int metrics_eval(metrics_sink *s, const char *benchmark, const char *metric, const char *category,
                 double value, int64_t n);
int metrics_prediction(metrics_sink *s, const char *benchmark, const char *method,
                       const char *question_id, const char *category, const char *skill,
                       int chosen, int answer, const char *scores_json);
int metrics_artifact(metrics_sink *s, const char *key, const char *path, int64_t size,
                     const char *sha256);
int metrics_flush(metrics_sink *s);
void metrics_close(metrics_sink *s);

/* A sink that forwards every call to two sinks (either may be NULL). Free with metrics_close. */
metrics_sink *metrics_tee(metrics_sink *a, metrics_sink *b);

/* A JSON-lines journal: one object per call ({"t":"scalar","name":..,"step":..,"value":..,"wall":..}),
 * appended and fsync'ed at each flush; opening cuts a torn last line left by a killed writer.
 * journal_replay feeds a journal back into another sink (skipping a torn last line; refusing, with
 * CG_EUSER naming the record, a malformed line or one whose "t" is not scalar, eval, prediction,
 * artifact or outcome), which is how results written on another node reach the db
 * (db/sink.h store_ingest_journal). */
int metrics_journal_open(const char *path, metrics_sink **out);
int metrics_journal_replay(const char *path, metrics_sink *into, int64_t *n_records);

#endif
