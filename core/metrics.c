/* metrics.c: dispatch for the logging interface, the tee sink and the JSON-lines journal sink. */
#define _GNU_SOURCE /* memrchr */
#include "core/metrics.h"
#include "util/faults_hint.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio_ext.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int metrics_scalar(metrics_sink *s, const char *name, int64_t step, double value) {
    return s && s->scalar ? s->scalar(s->ctx, name, step, value) : CG_OK;
}
int metrics_eval(metrics_sink *s, const char *benchmark, const char *metric, const char *category,
                 double value, int64_t n) {
    return s && s->eval ? s->eval(s->ctx, benchmark, metric, category ? category : "", value, n)
                        : CG_OK;
}
int metrics_prediction(metrics_sink *s, const char *benchmark, const char *method,
                       const char *question_id, const char *category, const char *skill,
                       int chosen, int answer, const char *scores_json) {
    return s && s->prediction ? s->prediction(s->ctx, benchmark, method, question_id, category,
                                              skill, chosen, answer, scores_json)
                              : CG_OK;
}
int metrics_artifact(metrics_sink *s, const char *key, const char *path, int64_t size,
                     const char *sha256) {
    return s && s->artifact ? s->artifact(s->ctx, key, path, size, sha256) : CG_OK;
}
int metrics_flush(metrics_sink *s) { return s && s->flush ? s->flush(s->ctx) : CG_OK; }
void metrics_close(metrics_sink *s) {
    if (s && s->close) s->close(s->ctx);
}

/* ---- tee ---- */

typedef struct {
    metrics_sink self;
    metrics_sink *a, *b;
} tee_sink;

#define TEE_BOTH(call)               \
    do {                             \
        tee_sink *t = ctx;           \
        int rc_a = call(t->a);       \
        int rc_b = call(t->b);       \
        return rc_a ? rc_a : rc_b;   \
    } while (0)

static int tee_scalar(void *ctx, const char *name, int64_t step, double value) {
#define C(s) metrics_scalar(s, name, step, value)
    TEE_BOTH(C);
#undef C
}
static int tee_eval(void *ctx, const char *bench, const char *metric, const char *cat, double v,
                    int64_t n) {
#define C(s) metrics_eval(s, bench, metric, cat, v, n)
    TEE_BOTH(C);
#undef C
}
static int tee_prediction(void *ctx, const char *bench, const char *method, const char *qid,
                          const char *cat, const char *skill, int chosen, int answer,
                          const char *scores) {
#define C(s) metrics_prediction(s, bench, method, qid, cat, skill, chosen, answer, scores)
    TEE_BOTH(C);
#undef C
}
static int tee_artifact(void *ctx, const char *key, const char *path, int64_t size,
                        const char *sha) {
#define C(s) metrics_artifact(s, key, path, size, sha)
    TEE_BOTH(C);
#undef C
}
static int tee_flush(void *ctx) { TEE_BOTH(metrics_flush); }
static void tee_close(void *ctx) { free(ctx); }

metrics_sink *metrics_tee(metrics_sink *a, metrics_sink *b) {
    tee_sink *t = cg_calloc(1, sizeof *t);
    t->a = a, t->b = b;
    t->self = (metrics_sink){t, tee_scalar, tee_eval, tee_prediction, tee_artifact, tee_flush, tee_close};
    return &t->self;
}

/* ---- JSON-lines journal ---- */

typedef struct {
    metrics_sink self;
    FILE *fp;
    char *path;
    int err;      /* the errno of the first failed write (0: none); the sink writes no more */
} journal_sink;

static int journal_cut_torn_tail(const char *path);

/* A write failed (disk full, file-size limit, I/O error): stdio has dropped what it buffered and
 * may have written part of a record. Cut that torn part at once, so no torn line ever sits in the
 * middle of the journal (replay would stop there), and refuse every later record: the stage fails
 * at its next flush, and the attempt that resumes from its last checkpoint logs again the records
 * since (which holds when a stage flushes before it writes a checkpoint). */
static int journal_fail(journal_sink *j, int err, const char *what) {
    if (!j->err) {
        j->err = err ? err : EIO;
        if (journal_cut_torn_tail(j->path) != CG_OK) cg_err_clear();   /* cut again at the next open */
    }
    return cg_err(CG_EFAIL, "cannot %s journal '%s': %s%s", what, j->path, strerror(j->err),
                  cg_write_hint(j->err));
}

static int journal_write(journal_sink *j, cJSON *obj) {
    if (j->err) {
        cJSON_Delete(obj);
        return journal_fail(j, j->err, "write");
    }
    cJSON_AddNumberToObject(obj, "wall", cg_wall_time());
    char *line = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    int ok = fputs(line, j->fp) >= 0 && fputc('\n', j->fp) != EOF;
    int e = errno;
    cJSON_free(line);
    return ok ? CG_OK : journal_fail(j, e, "write");
}

static int journal_scalar(void *ctx, const char *name, int64_t step, double value) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "t", "scalar");
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddNumberToObject(o, "value", value);
    return journal_write(ctx, o);
}
static int journal_eval(void *ctx, const char *bench, const char *metric, const char *cat,
                        double v, int64_t n) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "t", "eval");
    cJSON_AddStringToObject(o, "benchmark", bench);
    cJSON_AddStringToObject(o, "metric", metric);
    cJSON_AddStringToObject(o, "category", cat);
    cJSON_AddNumberToObject(o, "value", v);
    cJSON_AddNumberToObject(o, "n", (double)n);
    return journal_write(ctx, o);
}
static int journal_prediction(void *ctx, const char *bench, const char *method, const char *qid,
                              const char *cat, const char *skill, int chosen, int answer,
                              const char *scores) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "t", "prediction");
    cJSON_AddStringToObject(o, "benchmark", bench);
    cJSON_AddStringToObject(o, "method", method);
    cJSON_AddStringToObject(o, "question_id", qid);
    cJSON_AddStringToObject(o, "category", cat ? cat : "");
    cJSON_AddStringToObject(o, "skill", skill ? skill : "");
    cJSON_AddNumberToObject(o, "chosen", chosen);
    cJSON_AddNumberToObject(o, "answer", answer);
    cJSON_AddStringToObject(o, "scores", scores ? scores : "");
    return journal_write(ctx, o);
}
static int journal_artifact(void *ctx, const char *key, const char *path, int64_t size,
                            const char *sha) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "t", "artifact");
    cJSON_AddStringToObject(o, "key", key);
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddNumberToObject(o, "size", (double)size);
    cJSON_AddStringToObject(o, "sha256", sha);
    return journal_write(ctx, o);
}
static int journal_flush(void *ctx) {
    journal_sink *j = ctx;
    if (j->err) return journal_fail(j, j->err, "write");
    /* ferror: an earlier buffer write failed and stdio dropped those records; fflush alone would
     * then report success for the empty buffer */
    if (fflush(j->fp) != 0 || ferror(j->fp)) return journal_fail(j, errno, "flush");
    if (fsync(fileno(j->fp)) != 0) return journal_fail(j, errno, "sync");
    return CG_OK;
}
static void journal_close(void *ctx) {
    journal_sink *j = ctx;
    if (!j->err && journal_flush(j) != CG_OK) cg_err_clear();   /* flushed by its caller first */
    if (j->err) __fpurge(j->fp);   /* nothing more reaches the file after a failed write */
    fclose(j->fp);
    free(j->path);
    free(j);
}

/* A journal whose writer was killed mid-record ends in a torn line: cut it, so the records
 * appended next start on a line of their own (replay would otherwise stop at the torn one). */
static int journal_cut_torn_tail(const char *path) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? CG_OK : cg_err(CG_EFAIL, "cannot open journal '%s': %s", path, strerror(errno));
    struct stat sb;
    off_t keep = 0;
    if (fstat(fd, &sb) == 0 && sb.st_size > 0) {
        char buf[4096];
        off_t pos = sb.st_size;
        while (pos > 0) {
            size_t n = pos < (off_t)sizeof buf ? (size_t)pos : sizeof buf;
            if (pread(fd, buf, n, pos - (off_t)n) != (ssize_t)n) break;
            char *nl = memrchr(buf, '\n', n);
            if (nl) {
                keep = pos - (off_t)n + (nl - buf) + 1;
                break;
            }
            pos -= (off_t)n;
        }
        if (keep < sb.st_size && ftruncate(fd, keep) != 0) {
            close(fd);
            return cg_err(CG_EFAIL, "cannot cut the torn end of journal '%s': %s", path, strerror(errno));
        }
    }
    close(fd);
    return CG_OK;
}

int metrics_journal_open(const char *path, metrics_sink **out) {
    int rc = journal_cut_torn_tail(path);
    if (rc) return rc;
    FILE *fp = fopen(path, "a");
    if (!fp) {
        int e = errno;
        return cg_err(CG_EFAIL, "cannot open journal '%s': %s%s", path, strerror(e), cg_write_hint(e));
    }
    journal_sink *j = cg_calloc(1, sizeof *j);
    j->fp = fp;
    j->path = cg_strdup(path);
    j->self = (metrics_sink){j, journal_scalar, journal_eval, journal_prediction, journal_artifact,
                             journal_flush, journal_close};
    *out = &j->self;
    return CG_OK;
}

static const char *str_or(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}
static double num_or(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int metrics_journal_replay(const char *path, metrics_sink *into, int64_t *n_records) {
    char *text;
    size_t len;
    int rc = cg_read_file(path, &text, &len);
    if (rc) return rc;
    int64_t n = 0;
    char *line = text;
    while (rc == CG_OK && line < text + len) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) break; /* a torn last line: the writer died mid-record; it was never flushed */
        *nl = 0;
        cJSON *o = cJSON_Parse(line);
        if (!o) {
            rc = cg_err(CG_EUSER, "journal '%s': malformed record %lld", path, (long long)n + 1);
            break;
        }
        const char *t = str_or(o, "t");
        /* the outcome record is the Slurm job's (sweeps/task_slurm.c), read by the scheduler */
        if (!cJSON_IsObject(o) || (strcmp(t, "scalar") && strcmp(t, "eval") && strcmp(t, "prediction") &&
                                   strcmp(t, "artifact") && strcmp(t, "outcome"))) {
            cJSON_Delete(o);
            rc = cg_err(CG_EUSER, "journal '%s': record %lld is not a cgvlm metrics record (\"t\" is not "
                        "scalar, eval, prediction, artifact or outcome); is it another program's file?",
                        path, (long long)n + 1);
            break;
        }
        if (!strcmp(t, "scalar"))
            rc = metrics_scalar(into, str_or(o, "name"), (int64_t)num_or(o, "step"), num_or(o, "value"));
        else if (!strcmp(t, "eval"))
            rc = metrics_eval(into, str_or(o, "benchmark"), str_or(o, "metric"), str_or(o, "category"),
                              num_or(o, "value"), (int64_t)num_or(o, "n"));
        else if (!strcmp(t, "prediction"))
            rc = metrics_prediction(into, str_or(o, "benchmark"), str_or(o, "method"),
                                    str_or(o, "question_id"), str_or(o, "category"),
                                    str_or(o, "skill"), (int)num_or(o, "chosen"),
                                    (int)num_or(o, "answer"), str_or(o, "scores"));
        else if (!strcmp(t, "artifact"))
            rc = metrics_artifact(into, str_or(o, "key"), str_or(o, "path"),
                                  (int64_t)num_or(o, "size"), str_or(o, "sha256"));
        cJSON_Delete(o);
        n++;
        line = nl + 1;
    }
    free(text);
    if (n_records) *n_records = n;
    return rc;
}
