/* sched.c: recording sweeps in the results db and running their tasks (see sched.h for the task
 * lifecycle and the retry rules). */
#define _GNU_SOURCE
#include "sweeps/sched.h"
#include "sweeps/task.h"
#include "db/store.h"
#include "experiments/stage.h"
#include "util/json.h"
#include "util/util.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A task found running on another host whose heartbeat is older than this is taken as dead. */
#define SCHED_STALE_S 300.0
/* A scheduler owning a sweep from another host is taken as dead after this long without a beat. */
#define SCHED_OWNER_STALE_S 120.0
/* How long stopping tasks may take to checkpoint before they are killed. */
#define SCHED_STOP_GRACE_S 60.0

const char *sched_hostname(void) {
    static char host[256];
    if (!host[0] && gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    return host;
}

int sched_proc_alive(int64_t pid) {
    if (pid <= 0) return 0;
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM) return 0;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    FILE *fp = fopen(path, "r");
    if (!fp) return 1;   /* no /proc: trust kill() */
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    const char *paren = strrchr(buf, ')');   /* "PID (comm) STATE ..." */
    if (paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X')) return 0;
    /* a recycled pid: cgvlm's processes all run the cgvlm binary (argv[0]) */
    snprintf(path, sizeof path, "/proc/%lld/cmdline", (long long)pid);
    fp = fopen(path, "r");
    if (!fp) return 1;
    n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;   /* argv[0] ends at the first NUL */
    return n == 0 || strstr(buf, "cgvlm") != NULL;
}

/* ---------------------------------------------------------------- small SQL helpers */

static int sql_prep(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return cg_err(CG_EFAIL, "results db: %s (in: %.60s)", sqlite3_errmsg(db), sql);
    return CG_OK;
}

static int sql_done(sqlite3 *db, sqlite3_stmt *st) {
    int r = sqlite3_step(st);
    int rc = (r == SQLITE_DONE || r == SQLITE_ROW) ? CG_OK
             : cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_reset(st);
    return rc;
}

/* ---------------------------------------------------------------- ownership */

/* Inside a transaction: refuses when another live scheduler owns the sweep, else takes it. */
static int take_ownership(sqlite3 *db, int64_t sweep_id, const char *name) {
    sqlite3_stmt *st;
    int rc = sql_prep(db, "SELECT owner_host, owner_pid, owner_heartbeat FROM sweeps WHERE sweep_id = ?", &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sweep_id);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 1) != SQLITE_NULL) {
        const char *host = (const char *)sqlite3_column_text(st, 0);
        int64_t pid = sqlite3_column_int64(st, 1);
        double beat = sqlite3_column_double(st, 2), age = cg_wall_time() - beat;
        int same_host = host && !strcmp(host, sched_hostname());
        int alive = same_host ? (pid != getpid() && sched_proc_alive(pid)) : age < SCHED_OWNER_STALE_S;
        if (alive)
            rc = cg_err(CG_EUSER,
                        "sweep '%s' is already being run by cgvlm pid %lld on host '%s' (last heartbeat "
                        "%.0f s ago); wait for it to finish, or stop it with 'cgvlm cancel --sweep %s'",
                        name, (long long)pid, host ? host : "?", age, name);
        else
            cg_info("sweep '%s': taking over from a scheduler that is gone (pid %lld on '%s')", name,
                    (long long)pid, host ? host : "?");
    }
    sqlite3_finalize(st);
    if (rc) return rc;
    if ((rc = sql_prep(db, "UPDATE sweeps SET owner_host = ?, owner_pid = ?, owner_heartbeat = ? WHERE sweep_id = ?", &st)))
        return rc;
    sqlite3_bind_text(st, 1, sched_hostname(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, getpid());
    sqlite3_bind_double(st, 3, cg_wall_time());
    sqlite3_bind_int64(st, 4, sweep_id);
    rc = sql_done(db, st);
    sqlite3_finalize(st);
    return rc;
}

/* Refreshes the owner heartbeat; 0 rows changed means another scheduler took the sweep over. */
static int owner_beat(sqlite3 *db, int64_t sweep_id, int *still_owner) {
    sqlite3_stmt *st;
    int rc = sql_prep(db, "UPDATE sweeps SET owner_heartbeat = ? WHERE sweep_id = ? AND owner_pid = ? AND owner_host = ?", &st);
    if (rc) return rc;
    sqlite3_bind_double(st, 1, cg_wall_time());
    sqlite3_bind_int64(st, 2, sweep_id);
    sqlite3_bind_int64(st, 3, getpid());
    sqlite3_bind_text(st, 4, sched_hostname(), -1, SQLITE_STATIC);
    rc = sql_done(db, st);
    *still_owner = sqlite3_changes(db) > 0;
    sqlite3_finalize(st);
    return rc;
}

void sched_release(sqlite3 *db, int64_t sweep_id) {
    sqlite3_stmt *st;
    if (sql_prep(db, "UPDATE sweeps SET owner_host = NULL, owner_pid = NULL, owner_heartbeat = NULL "
                     "WHERE sweep_id = ? AND owner_pid = ? AND owner_host = ?", &st))
        return;
    sqlite3_bind_int64(st, 1, sweep_id);
    sqlite3_bind_int64(st, 2, getpid());
    sqlite3_bind_text(st, 3, sched_hostname(), -1, SQLITE_STATIC);
    sql_done(db, st);
    sqlite3_finalize(st);
}

int sched_cancel_sweep(sqlite3 *db, const char *name) {
    sqlite3_stmt *st;
    int rc = sql_prep(db, "SELECT owner_host, owner_pid FROM sweeps WHERE name = ?", &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = cg_err(CG_EUSER, "there is no sweep named '%s' in the results db; see 'cgvlm status'", name);
    } else if (sqlite3_column_type(st, 1) == SQLITE_NULL) {
        rc = cg_err(CG_EUSER, "sweep '%s' is not running", name);
    } else {
        const char *host = (const char *)sqlite3_column_text(st, 0);
        int64_t pid = sqlite3_column_int64(st, 1);
        if (!host || strcmp(host, sched_hostname()))
            rc = cg_err(CG_EUSER, "sweep '%s' is run by a scheduler on host '%s'; run 'cgvlm cancel' there",
                        name, host ? host : "?");
        else if (!sched_proc_alive(pid))
            rc = cg_err(CG_EUSER, "sweep '%s' is not running (its scheduler, pid %lld, is gone); "
                                  "re-run the sweep to resume it", name, (long long)pid);
        else if (kill((pid_t)pid, SIGTERM) != 0)
            rc = cg_err(CG_EFAIL, "cannot signal the scheduler of sweep '%s' (pid %lld): %s", name,
                        (long long)pid, strerror(errno));
        else
            printf("asked the scheduler of sweep '%s' (pid %lld) to stop; running tasks checkpoint and "
                   "are marked cancelled\n", name, (long long)pid);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---------------------------------------------------------------- recording */

typedef struct {
    sqlite3_stmt *run_ins, *run_id, *param, *unlink, *task_ins, *task_id, *dep, *link;
} rec_stmts;

static void rec_free(rec_stmts *s) {
    sqlite3_stmt **all = (sqlite3_stmt **)s;
    for (size_t i = 0; i < sizeof *s / sizeof *all; i++) sqlite3_finalize(all[i]);
}

static int rec_prepare(sqlite3 *db, rec_stmts *s) {
    memset(s, 0, sizeof *s);
    int rc;
    if ((rc = sql_prep(db, "INSERT INTO runs (sweep_id, name, config_json, params_json, seed, lambda, fraction, size, created_at) "
                           "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (sweep_id, name) DO UPDATE SET config_json = excluded.config_json",
                       &s->run_ins)) ||
        (rc = sql_prep(db, "SELECT run_id FROM runs WHERE sweep_id = ? AND name = ?", &s->run_id)) ||
        (rc = sql_prep(db, "INSERT OR REPLACE INTO run_params (run_id, path, value_json, value_num) VALUES (?,?,?,?)", &s->param)) ||
        (rc = sql_prep(db, "DELETE FROM run_tasks WHERE run_id = ?", &s->unlink)) ||
        (rc = sql_prep(db, "INSERT OR IGNORE INTO tasks (key, kind, config_json, state, max_attempts, queued_at) VALUES (?,?,?,'queued',?,?)", &s->task_ins)) ||
        (rc = sql_prep(db, "SELECT task_id FROM tasks WHERE key = ?", &s->task_id)) ||
        (rc = sql_prep(db, "INSERT OR IGNORE INTO task_deps (task_id, dep_id) VALUES (?,?)", &s->dep)) ||
        (rc = sql_prep(db, "INSERT OR IGNORE INTO run_tasks (run_id, task_id) VALUES (?,?)", &s->link)))
        rec_free(s);
    return rc;
}

static int64_t select_id(sqlite3_stmt *st) {
    int64_t id = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    return id;
}

static int record_run(sqlite3 *db, rec_stmts *s, int64_t sweep_id, const sweep *sw, const sweep_run *r) {
    char *config = cg_json_canonical(r->config), *params = cg_json_canonical(r->params);
    const cJSON *lambda = cg_json_path(r->config, "align.lambda");
    const cJSON *fraction = cg_json_path(r->config, "instruct.fraction");
    const cJSON *size = cg_json_path(r->config, "model.size");
    sqlite3_stmt *st = s->run_ins;
    sqlite3_bind_int64(st, 1, sweep_id);
    sqlite3_bind_text(st, 2, r->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, config, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, params, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, r->seed);
    sqlite3_bind_double(st, 6, lambda->valuedouble);
    sqlite3_bind_double(st, 7, fraction->valuedouble);
    sqlite3_bind_text(st, 8, size->valuestring, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 9, cg_wall_time());
    int rc = sql_done(db, st);
    free(config), free(params);
    if (rc) return rc;
    sqlite3_bind_int64(s->run_id, 1, sweep_id);
    sqlite3_bind_text(s->run_id, 2, r->name, -1, SQLITE_STATIC);
    int64_t run_id = select_id(s->run_id);
    assert(run_id > 0);
    for (const cJSON *p = r->params->child; p && rc == CG_OK; p = p->next) {
        char *v = cJSON_PrintUnformatted(p);
        sqlite3_bind_int64(s->param, 1, run_id);
        sqlite3_bind_text(s->param, 2, p->string, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->param, 3, v, -1, SQLITE_TRANSIENT);
        if (cJSON_IsNumber(p)) sqlite3_bind_double(s->param, 4, p->valuedouble);
        else if (cJSON_IsBool(p)) sqlite3_bind_double(s->param, 4, cJSON_IsTrue(p));
        else sqlite3_bind_null(s->param, 4);
        rc = sql_done(db, s->param);
        cJSON_free(v);
    }
    /* re-link: a new code version gives new task keys */
    sqlite3_bind_int64(s->unlink, 1, run_id);
    if (rc == CG_OK) rc = sql_done(db, s->unlink);
    int64_t ids[EXP_NSTAGES];
    for (int i = 0; i < EXP_NSTAGES && rc == CG_OK; i++) {
        const exp_task *t = &r->plan.task[i];
        char *cfg = cg_json_canonical(t->config);
        sqlite3_bind_text(s->task_ins, 1, t->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->task_ins, 2, t->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->task_ins, 3, cfg, -1, SQLITE_STATIC);
        sqlite3_bind_int(s->task_ins, 4, sw->max_attempts);
        sqlite3_bind_double(s->task_ins, 5, cg_wall_time());
        rc = sql_done(db, s->task_ins);
        free(cfg);
        sqlite3_bind_text(s->task_id, 1, t->key, -1, SQLITE_STATIC);
        ids[i] = select_id(s->task_id);
        assert(rc || ids[i] > 0);
        for (int d = 0; d < t->ndeps && rc == CG_OK; d++) {
            sqlite3_bind_int64(s->dep, 1, ids[i]);
            sqlite3_bind_int64(s->dep, 2, ids[t->deps[d]]);
            rc = sql_done(db, s->dep);
        }
        sqlite3_bind_int64(s->link, 1, run_id);
        sqlite3_bind_int64(s->link, 2, ids[i]);
        if (rc == CG_OK) rc = sql_done(db, s->link);
    }
    return rc;
}

int sched_record(sqlite3 *db, const sweep *sw, const char *code_version, int64_t *sweep_id) {
    char *spec = cg_json_canonical(sw->spec), *axes = cg_json_canonical(sw->axes);
    sqlite3_stmt *st = NULL;
    rec_stmts s;
    int have_stmts = 0;
    int rc = store_begin(db);
    if (rc) goto out;
    if ((rc = sql_prep(db, "SELECT sweep_id, spec_json FROM sweeps WHERE name = ?", &st))) goto fail;
    sqlite3_bind_text(st, 1, sw->name, -1, SQLITE_STATIC);
    int64_t id = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        if (strcmp((const char *)sqlite3_column_text(st, 1), spec)) {
            rc = cg_err(CG_EUSER,
                        "a sweep named '%s' with a different definition is already in the results db; "
                        "give this sweep another \"name\" (or use another --db)", sw->name);
            goto fail;
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if (id < 0) {
        if ((rc = sql_prep(db, "INSERT INTO sweeps (name, spec_json, axes_json, code_version, created_at) VALUES (?,?,?,?,?)", &st)))
            goto fail;
        sqlite3_bind_text(st, 1, sw->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, spec, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, axes, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, code_version, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 5, cg_wall_time());
        if ((rc = sql_done(db, st))) goto fail;
        id = sqlite3_last_insert_rowid(db);
    } else {
        if ((rc = sql_prep(db, "UPDATE sweeps SET code_version = ? WHERE sweep_id = ?", &st))) goto fail;
        sqlite3_bind_text(st, 1, code_version, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, id);
        if ((rc = sql_done(db, st))) goto fail;
    }
    if ((rc = take_ownership(db, id, sw->name))) goto fail;
    if ((rc = rec_prepare(db, &s))) goto fail;
    have_stmts = 1;
    for (int i = 0; i < sw->nruns && rc == CG_OK; i++) rc = record_run(db, &s, id, sw, &sw->runs[i]);
    if (rc) goto fail;
    rec_free(&s);
    have_stmts = 0;
    if ((rc = store_commit(db))) goto fail;
    *sweep_id = id;
    goto out;
fail:
    if (have_stmts) rec_free(&s);
    store_rollback(db);
out:
    sqlite3_finalize(st);
    free(spec), free(axes);
    return rc;
}

/* ---------------------------------------------------------------- the run loop */

typedef struct {
    int64_t id;
    char key[65];
    char kind[24];
    char label[40];    /* kind, or noop:STAGE */
    char state;        /* q(ueued) r(unning) d(one) f(ailed) c(rashed) x (cancelled) */
    int fails;         /* failures + crashes in this invocation */
    int mine;          /* running here */
    int attempt;
    int timed_out;
    int suspect;       /* running elsewhere with no live process: to recover */
    double started, limit;
    int ndeps, *deps;  /* indices */
} stask;

typedef struct {
    sqlite3 *db;
    int64_t sweep_id;
    sched_backend *be;
    const sched_opts *o;
    stask *t;
    int n;
    int running;       /* mine */
    int stopping;
    sqlite3_stmt *claim, *attempt_ins, *state_of, *requeue, *refresh;
    sqlite3_stmt *live;   /* running tasks' progress and last logged loss, for the terminal line */
} runner;

static char state_char(const char *s) {
    if (!strcmp(s, "queued")) return 'q';
    if (!strcmp(s, "running")) return 'r';
    if (!strcmp(s, "done")) return 'd';
    if (!strcmp(s, "failed")) return 'f';
    if (!strcmp(s, "crashed")) return 'c';
    return 'x';
}

static int find_task(const runner *r, int64_t id) {
    int lo = 0, hi = r->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (r->t[mid].id == id) return mid;
        if (r->t[mid].id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static int load_tasks(runner *r) {
    sqlite3_stmt *st;
    int rc = sql_prep(r->db, "SELECT DISTINCT t.task_id, t.key, t.kind, t.state, CASE WHEN t.kind = 'noop' THEN "
                             "'noop:' || json_extract(t.config_json, '$.stage') ELSE t.kind END FROM runs "
                             "JOIN run_tasks USING (run_id) JOIN tasks t USING (task_id) WHERE runs.sweep_id = ? ORDER BY t.task_id", &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, r->sweep_id);
    int cap = 64;
    r->t = cg_calloc((size_t)cap, sizeof *r->t);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (r->n == cap) {
            r->t = cg_realloc(r->t, sizeof *r->t * (size_t)(cap *= 2));
            memset(r->t + r->n, 0, sizeof *r->t * (size_t)(cap - r->n));
        }
        stask *t = &r->t[r->n++];
        t->id = sqlite3_column_int64(st, 0);
        snprintf(t->key, sizeof t->key, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(t->kind, sizeof t->kind, "%s", (const char *)sqlite3_column_text(st, 2));
        t->state = state_char((const char *)sqlite3_column_text(st, 3));
        const char *label = (const char *)sqlite3_column_text(st, 4);
        snprintf(t->label, sizeof t->label, "%s", label ? label : t->kind);
        double lim = r->o->time_limit;
        if (lim <= 0 && r->o->sw) lim = sweep_time_limit(r->o->sw, t->kind);
        t->limit = r->be->own_limits ? 0 : lim;
    }
    sqlite3_finalize(st);
    if ((rc = sql_prep(r->db, "SELECT d.task_id, d.dep_id FROM task_deps d WHERE d.task_id IN "
                              "(SELECT task_id FROM runs JOIN run_tasks USING (run_id) WHERE runs.sweep_id = ?)", &st)))
        return rc;
    sqlite3_bind_int64(st, 1, r->sweep_id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int a = find_task(r, sqlite3_column_int64(st, 0)), b = find_task(r, sqlite3_column_int64(st, 1));
        if (a < 0 || b < 0) continue;   /* a dep outside the sweep cannot happen: runs carry whole chains */
        r->t[a].deps = cg_realloc(r->t[a].deps, sizeof(int) * (size_t)(r->t[a].ndeps + 1));
        r->t[a].deps[r->t[a].ndeps++] = b;
    }
    sqlite3_finalize(st);
    return CG_OK;
}

/* An attempt found 'running' whose process is gone (its scheduler died): crashed, attempt
 * 'interrupted' (not counted). Done in one transaction with the liveness check. */
static int recover(runner *r, stask *t) {
    int rc = store_begin(r->db);
    if (rc) return rc;
    sqlite3_stmt *st;
    if ((rc = sql_prep(r->db, "SELECT state, host, pid, heartbeat_at, attempts FROM tasks WHERE task_id = ?", &st))) goto out;
    sqlite3_bind_int64(st, 1, t->id);
    int orphan = 0, attempt = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 0);
        const char *host = (const char *)sqlite3_column_text(st, 1);
        int64_t pid = sqlite3_column_type(st, 2) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 2);
        double beat = sqlite3_column_double(st, 3);
        attempt = sqlite3_column_int(st, 4);
        t->state = state_char(state);
        if (t->state == 'r')
            orphan = (host && !strcmp(host, sched_hostname())) ? !sched_proc_alive(pid)
                                                                : cg_wall_time() - beat > SCHED_STALE_S;
    }
    sqlite3_finalize(st);
    if (orphan) {
        const char *err = "interrupted: its process is gone (its scheduler or the machine stopped); retried";
        if ((rc = sql_prep(r->db, "UPDATE tasks SET state = 'crashed', ended_at = ?, error = ? WHERE task_id = ?", &st))) goto out;
        sqlite3_bind_double(st, 1, cg_wall_time());
        sqlite3_bind_text(st, 2, err, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, t->id);
        rc = sql_done(r->db, st);
        sqlite3_finalize(st);
        if (rc == CG_OK && (rc = sql_prep(r->db, "UPDATE task_attempts SET state = 'interrupted', ended_at = ?, error = ? "
                                                 "WHERE task_id = ? AND attempt = ? AND state = 'running'", &st)) == CG_OK) {
            sqlite3_bind_double(st, 1, cg_wall_time());
            sqlite3_bind_text(st, 2, err, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, t->id);
            sqlite3_bind_int(st, 4, attempt);
            rc = sql_done(r->db, st);
            sqlite3_finalize(st);
        }
        t->state = 'c';
    }
out:
    if (rc == CG_OK) rc = store_commit(r->db);
    if (rc) store_rollback(r->db);
    return rc;
}

/* Attempts an earlier scheduler left running that the backend still knows become ours again. */
static int adopt(runner *r) {
    int rc = CG_OK;
    for (int i = 0; r->be->adopt && i < r->n && rc == CG_OK; i++) {
        stask *t = &r->t[i];
        if (t->state != 'r') continue;
        sched_job job = {t->id, 0, t->key, t->kind};
        int adopted = 0;
        rc = r->be->adopt(r->be, &job, &t->attempt, &adopted);
        if (rc == CG_OK && adopted) {
            t->mine = 1, t->started = cg_mono_time();
            r->running++;
        }
    }
    return rc;
}

/* Re-reads the states of the tasks not running here (other schedulers share tasks) and recovers
 * orphans. */
static int refresh(runner *r) {
    sqlite3_stmt *st = r->refresh;
    sqlite3_bind_int64(st, 1, r->sweep_id);
    int orphans = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int i = find_task(r, sqlite3_column_int64(st, 0));
        if (i < 0 || r->t[i].mine) continue;
        stask *t = &r->t[i];
        t->state = state_char((const char *)sqlite3_column_text(st, 1));
        t->suspect = 0;
        if (t->state == 'r') {   /* running elsewhere: is its process still there? */
            const char *host = (const char *)sqlite3_column_text(st, 2);
            int64_t pid = sqlite3_column_type(st, 3) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 3);
            t->suspect = (host && !strcmp(host, sched_hostname())) ? !sched_proc_alive(pid)
                                                                   : cg_wall_time() - sqlite3_column_double(st, 4) > SCHED_STALE_S;
            orphans |= t->suspect;
        }
    }
    sqlite3_reset(st);
    int rc = CG_OK;
    for (int i = 0; orphans && i < r->n && rc == CG_OK; i++)
        if (r->t[i].suspect) rc = recover(r, &r->t[i]);   /* re-checked inside the write lock */
    return rc;
}

static int dead(const runner *r, int i, int depth) {
    const stask *t = &r->t[i];
    if (t->state == 'd') return 0;
    if ((t->state == 'f' || t->state == 'c') && t->fails >= r->o->max_attempts) return 1;
    if (depth > 64) return 0;
    for (int d = 0; d < t->ndeps; d++)
        if (dead(r, t->deps[d], depth + 1)) return 1;
    return 0;
}

static int ready(const runner *r, int i) {
    const stask *t = &r->t[i];
    if (t->mine || t->state == 'd' || t->state == 'r') return 0;
    if (t->fails >= r->o->max_attempts) return 0;
    for (int d = 0; d < t->ndeps; d++) {
        const stask *u = &r->t[t->deps[d]];
        if (u->state != 'd' && !(r->be->chains && u->mine)) return 0;
    }
    return 1;
}

/* sched_claim: queued/failed/crashed/cancelled -> running, one transaction. 0 = not claimed. */
static int claim(runner *r, stask *t, int *claimed) {
    *claimed = 0;
    int rc = store_begin(r->db);
    if (rc) return rc;
    double now = cg_wall_time();
    sqlite3_stmt *st = r->claim;
    sqlite3_bind_text(st, 1, sched_hostname(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, getpid());
    sqlite3_bind_double(st, 3, now);
    sqlite3_bind_double(st, 4, now);
    sqlite3_bind_int(st, 5, r->o->max_attempts);
    sqlite3_bind_int64(st, 6, t->id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        t->attempt = sqlite3_column_int(st, 0);
        *claimed = 1;
    } else if (step != SQLITE_DONE) {
        rc = cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(r->db));
    }
    sqlite3_reset(st);
    if (rc == CG_OK && *claimed) {
        st = r->attempt_ins;
        sqlite3_bind_int64(st, 1, t->id);
        sqlite3_bind_int(st, 2, t->attempt);
        sqlite3_bind_text(st, 3, sched_hostname(), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, getpid());
        sqlite3_bind_double(st, 5, now);
        rc = sql_done(r->db, st);
    }
    if (rc == CG_OK) rc = store_commit(r->db);
    if (rc) store_rollback(r->db);
    return rc;
}

static char *end_error(const stask *t, int wstatus) {
    if (t->timed_out) return cg_fmt("time limit of %g s exceeded", t->limit);
    if (wstatus == -1) return cg_strdup("its worker process died");
    if (WIFSIGNALED(wstatus))
        return cg_fmt("killed by signal %d (%s)", WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
    return cg_fmt("exited with status %d without recording a result", WEXITSTATUS(wstatus));
}

/* sched_reap + sched_retry for one ended attempt of ours. */
static int reap(runner *r, const sched_exit *ev) {
    int i = find_task(r, ev->task_id);
    assert(i >= 0 && r->t[i].mine);
    stask *t = &r->t[i];
    t->mine = 0;
    r->running--;
    int rc = store_begin(r->db);
    if (rc) return rc;
    sqlite3_stmt *st = r->state_of;
    sqlite3_bind_int64(st, 1, t->id);
    int attempts = 0;
    char state = 'x', *error = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        state = state_char((const char *)sqlite3_column_text(st, 0));
        attempts = sqlite3_column_int(st, 1);
        if (sqlite3_column_text(st, 2)) error = cg_strdup((const char *)sqlite3_column_text(st, 2));
    }
    sqlite3_reset(st);
    if (state == 'r' && attempts == t->attempt) {
        /* the process ended without recording its outcome */
        char *err = end_error(t, ev->wstatus);
        const char *ns = t->timed_out ? "failed" : r->stopping ? "cancelled" : "crashed";
        state = state_char(ns);
        sqlite3_stmt *u;
        if ((rc = sql_prep(r->db, "UPDATE tasks SET state = ?, ended_at = ?, error = ? WHERE task_id = ?", &u)) == CG_OK) {
            sqlite3_bind_text(u, 1, ns, -1, SQLITE_STATIC);
            sqlite3_bind_double(u, 2, cg_wall_time());
            sqlite3_bind_text(u, 3, err, -1, SQLITE_STATIC);
            sqlite3_bind_int64(u, 4, t->id);
            rc = sql_done(r->db, u);
            sqlite3_finalize(u);
        }
        if (rc == CG_OK &&
            (rc = sql_prep(r->db, "UPDATE task_attempts SET state = ?, ended_at = ?, exit_status = ?, error = ? "
                                  "WHERE task_id = ? AND attempt = ?", &u)) == CG_OK) {
            sqlite3_bind_text(u, 1, ns, -1, SQLITE_STATIC);
            sqlite3_bind_double(u, 2, cg_wall_time());
            if (ev->wstatus == -1) sqlite3_bind_null(u, 3);
            else sqlite3_bind_int(u, 3, WIFEXITED(ev->wstatus) ? WEXITSTATUS(ev->wstatus) : 128 + WTERMSIG(ev->wstatus));
            sqlite3_bind_text(u, 4, err, -1, SQLITE_STATIC);
            sqlite3_bind_int64(u, 5, t->id);
            sqlite3_bind_int(u, 6, t->attempt);
            rc = sql_done(r->db, u);
            sqlite3_finalize(u);
        }
        if (r->o->progress) cg_info("%-8s %-16s %.12s: %s (attempt %d)", ns, t->label, t->key, err, t->attempt);
        free(err);
    }
    t->state = state;
    /* a failure in the task's input (exit status 2) would fail every attempt: no retry */
    int permanent = state == 'f' && ev->wstatus >= 0 && WIFEXITED(ev->wstatus) && WEXITSTATUS(ev->wstatus) == TASK_BAD_INPUT;
    if (permanent) t->fails = r->o->max_attempts;
    if (state == 'f' || state == 'c') {
        t->fails++;
        if (t->fails < r->o->max_attempts && !r->stopping && rc == CG_OK) {
            sqlite3_bind_int64(r->requeue, 1, t->id);
            rc = sql_done(r->db, r->requeue);
            t->state = 'q';
        }
    }
    if (rc == CG_OK) rc = store_commit(r->db);
    if (rc) store_rollback(r->db);
    if (r->o->progress && (state == 'd' || state == 'f')) {
        if (cg_stderr_is_tty()) fprintf(stderr, "\r\033[K");
        cg_info("%-8s %-16s %.12s (attempt %d, %.1f s)%s%s", state == 'd' ? "done" : "failed", t->label, t->key,
                t->attempt, cg_mono_time() - t->started, state == 'f' && error ? ": " : "",
                state == 'f' && error ? error : "");
    }
    free(error);
    return rc;
}

/* On a terminal, the running tasks as the training loop reports them: its heartbeat's progress
 * and the last loss and tokens/s its metrics sink committed (at most ~10 s old). */
static void live_tasks(const runner *r, double now_wall) {
    if (!r->live) return;
    sqlite3_bind_int64(r->live, 1, r->sweep_id);
    for (int shown = 0; sqlite3_step(r->live) == SQLITE_ROW && shown < 2; shown++) {
        const char *kind = (const char *)sqlite3_column_text(r->live, 0);
        double p = sqlite3_column_double(r->live, 1), started = sqlite3_column_double(r->live, 2);
        fprintf(stderr, " | %s %.0f%%", kind ? kind : "?", 100 * p);
        if (sqlite3_column_type(r->live, 3) != SQLITE_NULL)
            fprintf(stderr, " loss %.4f", sqlite3_column_double(r->live, 3));
        if (sqlite3_column_type(r->live, 4) != SQLITE_NULL)
            fprintf(stderr, " %.0f tok/s", sqlite3_column_double(r->live, 4));
        if (p > 0.01 && started > 0) fprintf(stderr, " ETA %.0f s", (now_wall - started) * (1 - p) / p);
    }
    sqlite3_reset(r->live);
}

static void progress_line(const runner *r, double t0, int final) {
    int c[128] = {0};
    for (int i = 0; i < r->n; i++) c[(unsigned char)r->t[i].state]++;
    int tty = cg_stderr_is_tty();
    if (cg_quiet || (!tty && !final)) return;
    /* on a terminal the line is redrawn in place: only the counts that are not zero, so that it
     * stays one line with the running tasks' details */
    fprintf(stderr, "%stasks: %d/%d done, %d running, %d queued", tty ? "\r\033[K" : "", c['d'], r->n,
            c['r'], c['q']);
    static const struct { char state; const char *name; } bad[] = {{'f', "failed"}, {'c', "crashed"}, {'x', "cancelled"}};
    for (size_t i = 0; i < CG_ARRAY_LEN(bad); i++)
        if (c[(unsigned char)bad[i].state] || !tty || final)
            fprintf(stderr, ", %d %s", c[(unsigned char)bad[i].state], bad[i].name);
    fprintf(stderr, "; %.0f s", cg_mono_time() - t0);
    if (tty && !final) live_tasks(r, cg_wall_time());
    fputs(final || !tty ? "\n" : "", stderr);
}

int sched_run(sqlite3 *db, int64_t sweep_id, sched_backend *be, const sched_opts *o, sched_summary *out) {
    runner r = {.db = db, .sweep_id = sweep_id, .be = be, .o = o};
    double t0 = cg_mono_time(), last_refresh = t0, last_beat = t0, last_line = 0, stop_deadline = 0;
    int rc = CG_OK, lost = 0;
    memset(out, 0, sizeof *out);
    if ((rc = sql_prep(db, "UPDATE tasks SET state = 'running', attempts = attempts + 1, host = ?, pid = ?, job_id = NULL, "
                           "started_at = ?, ended_at = NULL, heartbeat_at = ?, progress = 0, error = NULL, max_attempts = ? "
                           "WHERE task_id = ? AND state IN ('queued','failed','crashed','cancelled') RETURNING attempts", &r.claim)) ||
        (rc = sql_prep(db, "INSERT OR REPLACE INTO task_attempts (task_id, attempt, state, host, pid, started_at) "
                           "VALUES (?,?,'running',?,?,?)", &r.attempt_ins)) ||
        (rc = sql_prep(db, "SELECT state, attempts, error FROM tasks WHERE task_id = ?", &r.state_of)) ||
        (rc = sql_prep(db, "UPDATE tasks SET state = 'queued' WHERE task_id = ? AND state IN ('failed','crashed')", &r.requeue)) ||
        (rc = sql_prep(db, "SELECT DISTINCT t.task_id, t.state, t.host, t.pid, t.heartbeat_at FROM runs JOIN run_tasks USING (run_id) "
                           "JOIN tasks t USING (task_id) WHERE runs.sweep_id = ?", &r.refresh)) ||
        (rc = sql_prep(db, "SELECT t.kind, t.progress, t.started_at, "
                           "(SELECT m.value FROM metrics m WHERE m.task_id = t.task_id AND m.name_id = "
                           "(SELECT name_id FROM metric_names WHERE name = 'loss') ORDER BY m.step DESC LIMIT 1), "
                           "(SELECT m.value FROM metrics m WHERE m.task_id = t.task_id AND m.name_id = "
                           "(SELECT name_id FROM metric_names WHERE name = 'tokens_per_s') ORDER BY m.step DESC LIMIT 1) "
                           "FROM tasks t WHERE t.state = 'running' AND t.task_id IN (SELECT task_id FROM runs "
                           "JOIN run_tasks USING (run_id) WHERE runs.sweep_id = ?) ORDER BY t.started_at", &r.live)) ||
        (rc = load_tasks(&r)) || (rc = adopt(&r)) || (rc = refresh(&r)))
        goto out;

    for (;;) {
        double now = cg_mono_time();
        if (*o->stop && !r.stopping) {
            r.stopping = 1;
            stop_deadline = now + SCHED_STOP_GRACE_S;
            if (o->progress) cg_info("stopping: %d running task(s) checkpoint and stop", r.running);
            for (int i = 0; i < r.n; i++)
                if (r.t[i].mine) be->cancel(be, r.t[i].id, r.t[i].attempt, 0);
        }
        if (r.stopping && (*o->stop > 1 || now > stop_deadline))
            for (int i = 0; i < r.n; i++)
                if (r.t[i].mine) be->cancel(be, r.t[i].id, r.t[i].attempt, 1);

        /* launch what is ready */
        for (int i = 0; !r.stopping && r.running < be->slots && i < r.n && rc == CG_OK; i++) {
            if (!ready(&r, i)) continue;
            stask *t = &r.t[i];
            int claimed;
            if ((rc = claim(&r, t, &claimed))) break;
            if (!claimed) {   /* another scheduler has it: see its state on the next refresh */
                t->state = 'r';
                continue;
            }
            sched_job job = {t->id, t->attempt, t->key, t->kind};
            int64_t pid;
            if ((rc = be->submit(be, &job, &pid))) break;
            t->mine = 1, t->state = 'r', t->timed_out = 0, t->started = cg_mono_time();
            r.running++;
            out->launched++;
        }
        if (rc) break;

        if (r.running == 0) {
            if (r.stopping) break;
            int waiting = 0;
            for (int i = 0; i < r.n && !waiting; i++)
                waiting = ready(&r, i) || (r.t[i].state == 'r' && !r.t[i].mine);
            if (!waiting) break;
        }

        /* wait for ends (at most until the next time limit) */
        double timeout = 0.5;
        for (int i = 0; i < r.n; i++)
            if (r.t[i].mine && r.t[i].limit > 0 && !r.t[i].timed_out) {
                double left = r.t[i].started + r.t[i].limit - now;
                if (left < timeout) timeout = left < 0 ? 0 : left;
            }
        sched_exit ev[64];
        int nev = 0;
        if (r.running) {
            if ((rc = be->poll(be, timeout, ev, 64, &nev))) break;
        } else {
            struct timespec ts = {0, 200 * 1000000L};   /* tasks run elsewhere: look again soon */
            nanosleep(&ts, NULL);
        }
        for (int k = 0; k < nev && rc == CG_OK; k++) rc = reap(&r, &ev[k]);
        if (rc) break;

        now = cg_mono_time();
        for (int i = 0; i < r.n; i++) {
            stask *t = &r.t[i];
            if (t->mine && t->limit > 0 && !t->timed_out && now - t->started >= t->limit) {
                t->timed_out = 1;
                be->cancel(be, t->id, t->attempt, 1);
            }
        }
        if (now - last_beat > 2.0) {
            int still;
            if ((rc = owner_beat(db, sweep_id, &still))) break;
            if (!still && !lost) {
                lost = 1;
                cg_warn("another scheduler took this sweep over; stopping");
                *o->stop = 1;
            }
            last_beat = now;
        }
        if (now - last_refresh > 1.0 || (r.running == 0 && nev == 0)) {
            if ((rc = refresh(&r))) break;
            last_refresh = now;
        }
        if (o->progress && now - last_line > 0.5) {
            progress_line(&r, t0, 0);
            last_line = now;
        }
    }
    if (rc) {   /* a db error: stop what runs, hard */
        for (int i = 0; i < r.n; i++)
            if (r.t[i].mine) be->cancel(be, r.t[i].id, r.t[i].attempt, 1);
    }
    if (o->progress) progress_line(&r, t0, 1);
out:
    out->tasks = r.n;
    for (int i = 0; i < r.n; i++) {
        stask *t = &r.t[i];
        if (t->state == 'd') out->done++;
        else if ((t->state == 'f' || t->state == 'c') && t->fails >= o->max_attempts) out->failed++;
        else if (t->state == 'x' || t->state == 'r') out->cancelled++;
        else if (dead(&r, i, 0)) out->blocked++;
        else out->cancelled++;
    }
    for (int i = 0; i < r.n; i++) free(r.t[i].deps);
    out->wall_s = cg_mono_time() - t0;
    free(r.t);
    sqlite3_finalize(r.claim);
    sqlite3_finalize(r.attempt_ins);
    sqlite3_finalize(r.state_of);
    sqlite3_finalize(r.requeue);
    sqlite3_finalize(r.refresh);
    sqlite3_finalize(r.live);
    if (rc == CG_OK && lost) rc = cg_err(CG_EFAIL, "another scheduler took the sweep over");
    if (rc == CG_OK && r.stopping) rc = STAGE_CANCELLED;
    if (rc == CG_OK && out->done < out->tasks)
        rc = cg_err(CG_EFAIL, "%d task(s) failed, %d blocked by them", out->failed, out->blocked);
    return rc;
}
