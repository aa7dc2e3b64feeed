/* backend_slurm.c: the Slurm backend: one batch job per task attempt (see backend_slurm.h).
 *
 *   submit   writes the spec and the batch script under <workspace>/slurm/, runs `sbatch
 *            --parsable` (with --dependency=afterok:<ids> for upstream attempts still in Slurm and
 *            the kind's resources), stores the job id in tasks.job_id and task_attempts.job_id;
 *   poll     one `squeue -h -t all -j IDS -o '%i %T %r'` per 0.2 s at most (never sbatch --wait);
 *            a job that ended is read (`scontrol show job` for its ExitCode), mapped
 *            (slurm_map_end) and recorded (slurm_ingest) before its end is reported; a running
 *            job's progress file (task_slurm.c) is read every SLURM_PROGRESS_S and recorded
 *            (tasks.progress, heartbeat_at, its last loss and tokens/s as metric rows, which the
 *            ingestion at the end replaces): the jobs never open the db, the scheduler does;
 *   cancel   collected and sent with one `scancel` per poll (hard: --signal=KILL);
 *   adopt    a restarted scheduler takes over jobs still known to Slurm instead of submitting
 *            them again (job id from the db, else found by the job name cgvlm.KEY.ATTEMPT).
 * A job whose upstream attempt ended without its artifact can never start: it is cancelled and
 * its task goes back to 'queued', to be submitted again behind the upstream's retry.
 */
#define _GNU_SOURCE
#include "sweeps/backend_slurm.h"
#include "db/store.h"
#include "experiments/experiment.h"
#include "sweeps/sched.h"
#include "sweeps/task.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

slurm_opts sched_slurm;

#define SLURM_POLL_S 0.2
#define SLURM_MAX_DEPS 16

typedef struct {
    int64_t task_id;
    int attempt;
    char key[65], kind[24];
    char id[32];            /* "" = not in Slurm (its submission was refused on a dead upstream) */
    int64_t deps[SLURM_MAX_DEPS];
    int ndeps;
    int cancel;             /* 0, 1 graceful, 2 hard: wanted */
    int cancel_sent;        /* the level already sent */
    int upstream_failed;    /* held on an upstream that did not finish: queued again, not an attempt */
    int over_limit;         /* refused by a submit limit (MaxSubmitJobs): queued again likewise */
    int running;            /* squeue said RUNNING at the last poll */
    double progress_read;   /* monotonic time its progress file was last read */
    double progress_wall;   /* the "wall" of the last progress recorded (a new one differs) */
} sjob;

typedef struct {
    sched_backend self;
    sqlite3 *db;
    char *ws, *dir, *exe;
    const sweep *sw;
    double time_limit;
    char *device;           /* --device for every task; NULL: the run configs say */
    slurm_opts o;
    sjob *jobs;
    int n, cap;
    double last_poll;
    int squeue_failing;     /* warned once until squeue answers again */
} slurm_backend;

/* ---------------------------------------------------------------- running Slurm's commands */

/* Runs argv (PATH lookup), collecting stdout and stderr; *status = exit status (-1: not run). */
static int run_cmd(char *const argv[], char **out, char **err, int *status) {
    int po[2], pe[2];
    *status = -1;
    if (pipe2(po, O_CLOEXEC) != 0) return cg_err(CG_EFAIL, "cannot create a pipe: %s", strerror(errno));
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]), close(po[1]);
        return cg_err(CG_EFAIL, "cannot create a pipe: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return cg_err(CG_EFAIL, "cannot run %s: %s", argv[0], strerror(errno));
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execvp(argv[0], argv);
        dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]), close(pe[1]);
    cg_buf b[2];
    cg_buf_init(&b[0]), cg_buf_init(&b[1]);
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !fds[i].revents) continue;
            char buf[4096];
            ssize_t k = read(fds[i].fd, buf, sizeof buf);
            if (k > 0) {
                cg_buf_add(&b[i], buf, (size_t)k);
            } else if (k == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    cg_buf_add(&b[0], "", 1), cg_buf_add(&b[1], "", 1);
    char *o = cg_buf_steal(&b[0]), *e = cg_buf_steal(&b[1]);
    /* one line for messages: Slurm's stderr without its trailing newline */
    for (size_t k = strlen(e); k > 0 && (e[k - 1] == '\n' || e[k - 1] == ' '); k--) e[k - 1] = 0;
    if (out) *out = o;
    else free(o);
    if (err) *err = e;
    else free(e);
    return CG_OK;
}

static int on_path(const char *prog) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char *copy = cg_strdup(path), *save = NULL;
    int found = 0;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *p = cg_path_join(*d ? d : ".", prog);
        found = access(p, X_OK) == 0;
        free(p);
    }
    free(copy);
    return found;
}

/* ---------------------------------------------------------------- the job table */

static sjob *find_job(slurm_backend *sb, int64_t task_id) {
    for (int i = 0; i < sb->n; i++)
        if (sb->jobs[i].task_id == task_id) return &sb->jobs[i];
    return NULL;
}

static sjob *add_job(slurm_backend *sb, const sched_job *job, int attempt) {
    if (sb->n == sb->cap) sb->jobs = cg_realloc(sb->jobs, sizeof *sb->jobs * (size_t)(sb->cap = sb->cap ? sb->cap * 2 : 64));
    sjob *j = &sb->jobs[sb->n++];
    memset(j, 0, sizeof *j);
    j->task_id = job->task_id;
    j->attempt = attempt;
    snprintf(j->key, sizeof j->key, "%s", job->key);
    snprintf(j->kind, sizeof j->kind, "%s", job->kind);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(sb->db, "SELECT dep_id FROM task_deps WHERE task_id = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, job->task_id);
        while (sqlite3_step(st) == SQLITE_ROW && j->ndeps < SLURM_MAX_DEPS) j->deps[j->ndeps++] = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    return j;
}

static void remove_job(slurm_backend *sb, sjob *j) {
    *j = sb->jobs[--sb->n];
}

static int set_job_id(slurm_backend *sb, const sjob *j) {
    char *sql = cg_fmt("UPDATE tasks SET job_id = '%s' WHERE task_id = %lld AND attempts = %d; "
                       "UPDATE task_attempts SET job_id = '%s' WHERE task_id = %lld AND attempt = %d",
                       j->id, (long long)j->task_id, j->attempt, j->id, (long long)j->task_id, j->attempt);
    int rc = store_exec(sb->db, sql, "cannot record the Slurm job id");
    free(sql);
    return rc;
}

/* ---------------------------------------------------------------- resources */

static const cJSON *resource(const slurm_backend *sb, const char *kind, const char *what) {
    const cJSON *res = sb->sw ? cJSON_GetObjectItemCaseSensitive(sb->sw->spec, "resources") : NULL;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(res, kind);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(k, what);
    if (!v) v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(res, "default"), what);
    return v;
}

/* ---------------------------------------------------------------- submit */

/* The attempt's spec: the stage and run configs and the upstream artifact dirs, from the db. */
static int write_spec(slurm_backend *sb, const sjob *j, const char *path, const char *journal, int threads,
                      const char *slot_device, char *device, size_t device_cap) {
    sqlite3_stmt *st = NULL;
    cJSON *spec = cJSON_CreateObject(), *up = NULL, *run = NULL, *stage = NULL;
    int rc = CG_OK;
    cJSON_AddStringToObject(spec, "key", j->key);
    cJSON_AddStringToObject(spec, "kind", j->kind);
    cJSON_AddNumberToObject(spec, "attempt", j->attempt);
    cJSON_AddStringToObject(spec, "workspace", sb->ws);
    cJSON_AddStringToObject(spec, "journal", journal);
    cJSON_AddNumberToObject(spec, "threads", threads);
    if (sqlite3_prepare_v2(sb->db, "SELECT config_json, (SELECT r.config_json FROM run_tasks rt JOIN runs r USING (run_id) "
                                   "WHERE rt.task_id = t.task_id ORDER BY r.run_id LIMIT 1) FROM tasks t WHERE task_id = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(sb->db));
        goto out;
    }
    sqlite3_bind_int64(st, 1, j->task_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        if ((rc = cg_json_parse((const char *)sqlite3_column_text(st, 0), "task config", &stage))) goto out;
        if (sqlite3_column_text(st, 1) && (rc = cg_json_parse((const char *)sqlite3_column_text(st, 1), "run config", &run)))
            goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (!stage) stage = cJSON_CreateObject();
    if (!run) run = cJSON_CreateObject();
    /* --device, else the config's; "auto" is the job's (cuda when it has GPUs) */
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(run, "device");
    const char *want = sb->device ? sb->device : cJSON_IsString(d) ? d->valuestring : "auto";
    snprintf(device, device_cap, "%s", strcmp(want, "auto") ? want : slot_device);
    cJSON_AddStringToObject(spec, "device", device);
    cJSON_AddItemToObject(spec, "stage_config", stage);
    cJSON_AddItemToObject(spec, "run_config", run);
    up = cJSON_AddObjectToObject(spec, "upstream");
    /* every ancestor, by the stage it is (a noop stand-in says which it stands for) */
    if (sqlite3_prepare_v2(sb->db, "WITH RECURSIVE anc(id) AS (SELECT dep_id FROM task_deps WHERE task_id = ?1 "
                                   "UNION SELECT d.dep_id FROM task_deps d JOIN anc ON d.task_id = anc.id) "
                                   "SELECT t.kind, t.key, json_extract(t.config_json, '$.stage') FROM tasks t JOIN anc ON t.task_id = anc.id",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(sb->db));
        goto out;
    }
    sqlite3_bind_int64(st, 1, j->task_id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *kind = (const char *)sqlite3_column_text(st, 0), *sname = (const char *)sqlite3_column_text(st, 2);
        int s = exp_stage_from_name(kind);
        if (s < 0 && sname) s = exp_stage_from_name(sname);
        if (s < 0 || cJSON_GetObjectItemCaseSensitive(up, exp_stage_name((exp_stage)s))) continue;
        char *dir = cg_fmt("%s/artifacts/%s", sb->ws, (const char *)sqlite3_column_text(st, 1));
        cJSON_AddStringToObject(up, exp_stage_name((exp_stage)s), dir);
        free(dir);
    }
    char *text = cJSON_PrintUnformatted(spec);
    rc = cg_write_file_atomic(path, text, strlen(text));
    cJSON_free(text);
out:
    sqlite3_finalize(st);
    cJSON_Delete(spec);
    return rc;
}

/* A refused submission: the claimed attempt is recorded failed with Slurm's message, not left
 * 'running' behind the scheduler that stops on it. */
static void record_refusal(slurm_backend *sb, const sjob *j, const char *msg) {
    char *keep = cg_strdup(msg);
    slurm_end end = {"failed", cg_strdup(msg), -1, 0};
    slurm_outcome none = {0};
    int applied;
    char *journal = cg_fmt("%s/work/%s/metrics.jsonl", sb->ws, j->key);
    slurm_ingest(sb->db, j->task_id, j->attempt, j->key, journal, &end, &none, &applied);
    cg_err(CG_EUSER, "%s", keep);   /* the refusal stays the error reported */
    free(keep);
    free(end.error);
    free(journal);
}

static int slurm_submit(sched_backend *b, const sched_job *job, int64_t *pid) {
    slurm_backend *sb = b->impl;
    *pid = 0;
    sjob *j = add_job(sb, job, job->attempt);
    char *base = cg_fmt("%s/%s.%d", sb->dir, j->key, j->attempt);
    char *spec = cg_fmt("%s.json", base), *script = cg_fmt("%s.sh", base), *log = cg_fmt("%s.out", base);
    char *journal = cg_fmt("%s/work/%s/metrics.jsonl", sb->ws, j->key);
    char *argv[64 + 32], *owned[16], *out = NULL, *err = NULL;
    int na = 0, no = 0, status, rc;
    const cJSON *cpus = resource(sb, j->kind, "cpus"), *gpus = resource(sb, j->kind, "gpus");
    const cJSON *mem = resource(sb, j->kind, "mem"), *tim = resource(sb, j->kind, "time");
    const cJSON *part = resource(sb, j->kind, "partition");
    int threads = cJSON_IsNumber(cpus) && cpus->valueint > 0 ? cpus->valueint : 1;
    int ngpu = cJSON_IsNumber(gpus) ? gpus->valueint : 0;
    char device[32];
    if ((rc = write_spec(sb, j, spec, journal, threads, ngpu > 0 ? "cuda" : "cpu", device, sizeof device))) goto out;
    /* a task that must compute on a GPU gets one (cuda:N: N + 1 of them) even when its kind's
     * resources name none */
    int want_gpus = !strcmp(device, "cuda") ? 1 : !strncmp(device, "cuda:", 5) ? 1 + (int)strtol(device + 5, NULL, 10) : 0;
    if (ngpu < want_gpus) ngpu = want_gpus;
    char *body = cg_fmt("#!/bin/sh\n# cgvlm task %s %s, attempt %d (written by cgvlm sweep --backend slurm)\n"
                        "exec '%s' task --spec '%s'\n", j->kind, j->key, j->attempt, sb->exe, spec);
    rc = cg_write_file_atomic(script, body, strlen(body));
    free(body);
    if (rc) goto out;

    /* upstream attempts still in Slurm hold this one (afterok); done ones need nothing */
    cg_buf dep;
    cg_buf_init(&dep);
    for (int d = 0; d < j->ndeps; d++) {
        sjob *u = find_job(sb, j->deps[d]);
        if (!u) continue;
        if (!u->id[0] || u->upstream_failed) j->upstream_failed = 1;
        else cg_buf_addf(&dep, "%s%s", dep.len ? ":" : "afterok:", u->id);
    }
    cg_buf_add(&dep, "", 1);
    char *deps = cg_buf_steal(&dep);
    if (j->upstream_failed) {   /* never submitted: reported (queued again) by the next poll */
        free(deps);
        goto out;
    }
#define ARG(s) (argv[na++] = (s))
#define OWN(s) (argv[na++] = owned[no++] = (s))
    ARG("sbatch"), ARG("--parsable"), ARG("--kill-on-invalid-dep=yes");
    OWN(cg_fmt("--job-name=cgvlm.%s.%d", j->key, j->attempt));
    OWN(cg_fmt("--output=%s", log));
    OWN(cg_fmt("--chdir=%s", sb->ws));
    const char *partition = sb->o.partition ? sb->o.partition : cJSON_IsString(part) ? part->valuestring : NULL;
    if (partition) OWN(cg_fmt("--partition=%s", partition));
    if (sb->o.account) OWN(cg_fmt("--account=%s", sb->o.account));
    OWN(cg_fmt("--cpus-per-task=%d", threads));
    if (ngpu > 0) OWN(cg_fmt("--gres=gpu:%d", ngpu));
    if (cJSON_IsString(mem)) OWN(cg_fmt("--mem=%s", mem->valuestring));
    double limit = sb->time_limit > 0 ? sb->time_limit : sb->sw ? sweep_time_limit(sb->sw, j->kind) : 0;
    if (cJSON_IsString(tim) && sb->time_limit <= 0) OWN(cg_fmt("--time=%s", tim->valuestring));
    else if (limit > 0) OWN(cg_fmt("--time=%lld", (long long)((limit + 59) / 60)));   /* minutes, rounded up */
    if (deps[0]) OWN(cg_fmt("--dependency=%s", deps));
    for (int i = 0; i < sb->o.nargs; i++) ARG((char *)sb->o.args[i]);
    ARG(script);
    argv[na] = NULL;
#undef ARG
#undef OWN
    free(deps);
    rc = run_cmd(argv, &out, &err, &status);
    for (int i = 0; i < no; i++) free(owned[i]);
    if (rc) goto out;
    if (status != 0) {
        if (strstr(err, "ependency")) {   /* an upstream job already gone: submit again behind its retry */
            j->upstream_failed = 1;
            goto out;
        }
        if (strstr(err, "MaxSubmit") || strstr(err, "job submit limit")) {   /* the user's submit limit: no more jobs at once than now */
            int live = 0;
            for (int i = 0; i < sb->n; i++) live += sb->jobs[i].id[0] != 0;
            if (!cg_quiet && b->slots > live) cg_info("Slurm's submit limit reached at %d jobs; the rest wait for them", live);
            b->slots = live > 0 ? live : 1;
            j->upstream_failed = j->over_limit = 1;
            goto out;
        }
        rc = cg_err(CG_EUSER, "sbatch refused task %s %.12s: %s", j->kind, j->key,
                    err[0] ? err : "(no message; exit status nonzero)");
        record_refusal(sb, j, cg_errmsg());
        goto out;
    }
    char *semi = strpbrk(out, ";\n");
    if (semi) *semi = 0;
    snprintf(j->id, sizeof j->id, "%s", out);
    if (!j->id[0]) rc = cg_err(CG_EFAIL, "sbatch printed no job id for task %.12s", j->key);
    else rc = set_job_id(sb, j);
out:
    if (rc) remove_job(sb, j);
    free(base), free(spec), free(script), free(log), free(journal), free(out), free(err);
    return rc;
}

/* ---------------------------------------------------------------- poll */

/* Sends the cancellations asked for since the last poll: one scancel per level. */
static void send_cancels(slurm_backend *sb) {
    for (int level = 1; level <= 2; level++) {
        char *argv[8 + 4096];
        int na = 0, nid = 0;
        argv[na++] = "scancel";
        if (level == 2) argv[na++] = "--signal=KILL", argv[na++] = "--full";
        for (int i = 0; i < sb->n; i++) {
            sjob *j = &sb->jobs[i];
            if (j->cancel < level || j->cancel_sent >= level || !j->id[0] || nid >= 4096) continue;
            argv[na++] = j->id;
            nid++;
            j->cancel_sent = level;
        }
        argv[na] = NULL;
        int status;
        char *err = NULL;
        if (nid && run_cmd(argv, NULL, &err, &status) == CG_OK && status != 0 && err[0])
            cg_warn("scancel: %s", err);
        free(err);
    }
}

static int terminal(const char *s) {
    static const char *const live[] = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED",
                                       "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
                                       "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"};
    for (size_t i = 0; i < CG_ARRAY_LEN(live); i++)
        if (!strcmp(s, live[i])) return 0;
    return 1;
}

/* A job's final state as Slurm tells it. */
typedef struct {
    char state[32];     /* "" when Slurm no longer knows the job */
    char reason[64];
    int code, sig;      /* ExitCode "code:signal" */
} job_end;

/* `scontrol -o show job ID`: JobState, Reason and ExitCode (squeue has no exit code). */
static void show_job(const char *id, job_end *e) {
    char *argv[] = {"scontrol", "-o", "show", "job", (char *)id, NULL}, *out = NULL;
    int status;
    if (run_cmd(argv, &out, NULL, &status) == CG_OK && status == 0) {
        const char *p;
        if ((p = strstr(out, "JobState="))) sscanf(p, "JobState=%31s", e->state);
        if ((p = strstr(out, " Reason="))) sscanf(p, " Reason=%63s", e->reason);
        if ((p = strstr(out, " ExitCode="))) sscanf(p, " ExitCode=%d:%d", &e->code, &e->sig);
    }
    free(out);
}

/* Records the end of job j and queues its event; cascades to jobs held on it when it did not
 * finish. state/reason: squeue's, NULL when squeue no longer lists the job. */
static int job_ended(slurm_backend *sb, sjob *j, const char *state, const char *reason, sched_exit *ev, int *nev) {
    job_end je = {"", "", 0, 0};
    if (state) {
        snprintf(je.state, sizeof je.state, "%s", state);
        snprintf(je.reason, sizeof je.reason, "%s", reason ? reason : "");
    }
    /* the exit code tells a signal from an exit; scontrol also knows jobs squeue stopped listing */
    if (j->id[0] && (!state || !strcmp(state, "FAILED") || !strcmp(state, "COMPLETED") || !strcmp(state, "CANCELLED")))
        show_job(j->id, &je);
    int code = je.code, sig = je.sig;
    char *journal = cg_fmt("%s/work/%s/metrics.jsonl", sb->ws, j->key);
    slurm_outcome oc;
    int rc = slurm_read_outcome(journal, j->attempt, &oc);
    slurm_end end;
    if (rc == CG_OK) {
        slurm_map_end(j->id[0] ? j->id : "(none)", je.state[0] ? je.state : NULL, je.reason, code, sig, &oc,
                      j->cancel > 0, j->upstream_failed, &end);
        if (j->over_limit) {
            free(end.error);
            end.error = cg_strdup("not submitted: Slurm's submit limit (MaxSubmitJobs) was reached; submitted later");
        }
        int applied;
        rc = slurm_ingest(sb->db, j->task_id, j->attempt, j->key, journal, &end, &oc, &applied);
        char *staging = cg_fmt("%s/staging/%s.%d", sb->ws, j->key, j->attempt);
        cg_rm_rf(staging);   /* what a killed attempt left */
        free(staging);
        if (rc == CG_OK && applied && !strcmp(end.state, "done")) {
            char *work = cg_fmt("%s/work/%s", sb->ws, j->key);
            cg_rm_rf(work);   /* journal ingested, checkpoints no longer needed */
            free(work);
        }
        if (rc == CG_OK && strcmp(end.state, "done")) {
            for (int i = 0; i < sb->n; i++) {
                sjob *d = &sb->jobs[i];
                for (int k = 0; k < d->ndeps; k++)
                    if (d->deps[k] == j->task_id && !d->upstream_failed && !d->cancel) {
                        d->upstream_failed = 1;   /* it can never start: free its place */
                        d->cancel = 1;            /* (a job being stopped anyway stays 'cancelled') */
                    }
            }
        }
        /* the wait status the scheduler reads (exit status 2: bad input, not retried) */
        int wstatus = end.journal_refused ? TASK_BAD_INPUT << 8
                      : oc.present ? (oc.exit_status & 0xff) << 8 : sig ? sig : (code & 0xff) << 8;
        ev[*nev] = (sched_exit){j->task_id, j->attempt, wstatus};
        (*nev)++;
        free(end.error);
    }
    slurm_outcome_free(&oc);
    free(journal);
    return rc;
}

/* ---------------------------------------------------------------- live progress */

/* One metric row the job reported live ({"step":S,"value":V}): it replaces the task's rows of
 * that name at step S and later (a resumed attempt's steps come again), as the ingestion does. */
static int live_metric(sqlite3 *db, int64_t task_id, const char *name, const cJSON *m) {
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(m, "step"), *value = cJSON_GetObjectItemCaseSensitive(m, "value");
    if (!cJSON_IsNumber(step) || !cJSON_IsNumber(value)) return CG_OK;
    char *sql = cg_fmt("INSERT OR IGNORE INTO metric_names (name) VALUES ('%s'); "
                       "DELETE FROM metrics WHERE task_id = %lld AND step >= %lld AND name_id = "
                       "(SELECT name_id FROM metric_names WHERE name = '%s'); "
                       "INSERT INTO metrics (task_id, name_id, step, value, wall) SELECT %lld, name_id, %lld, %.17g, %.3f "
                       "FROM metric_names WHERE name = '%s'",
                       name, (long long)task_id, (long long)step->valuedouble, name, (long long)task_id,
                       (long long)step->valuedouble, value->valuedouble, cg_wall_time(), name);
    int rc = store_exec(db, sql, "cannot record a live metric");
    free(sql);
    return rc;
}

/* Reads the progress file of running job j (at most every SLURM_PROGRESS_S) and, when the job
 * wrote a new one for this attempt, records it, inside the poll's transaction (*began). */
static int job_progress(slurm_backend *sb, sjob *j, int *began) {
    double now = cg_mono_time();
    if (now - j->progress_read < SLURM_PROGRESS_S) return CG_OK;
    j->progress_read = now;
    char *path = cg_fmt("%s/work/%s/progress.json", sb->ws, j->key), *text = NULL;
    size_t len;
    cJSON *o = NULL;
    if (cg_read_file(path, &text, &len) == CG_OK) o = cJSON_Parse(text);
    cg_err_clear();   /* not written yet: nothing to show */
    free(path), free(text);
    const cJSON *att = cJSON_GetObjectItemCaseSensitive(o, "attempt"), *frac = cJSON_GetObjectItemCaseSensitive(o, "fraction");
    const cJSON *wall = cJSON_GetObjectItemCaseSensitive(o, "wall");
    int rc = CG_OK;
    if (!cJSON_IsNumber(att) || att->valueint != j->attempt || !cJSON_IsNumber(frac) || !cJSON_IsNumber(wall) ||
        wall->valuedouble == j->progress_wall)
        goto out;   /* an earlier attempt's, a stranger's, or nothing new */
    if (!*began && (rc = store_begin(sb->db)) == CG_OK) *began = 1;
    if (rc) goto out;
    char *sql = cg_fmt("UPDATE tasks SET progress = %.4f, heartbeat_at = %.3f WHERE task_id = %lld AND attempts = %d "
                       "AND state = 'running'", frac->valuedouble < 0 ? 0 : frac->valuedouble > 1 ? 1 : frac->valuedouble,
                       cg_wall_time(), (long long)j->task_id, j->attempt);
    rc = store_exec(sb->db, sql, "cannot record a task's progress");
    free(sql);
    if (rc == CG_OK && sqlite3_changes(sb->db) == 1) {   /* still ours */
        rc = live_metric(sb->db, j->task_id, "loss", cJSON_GetObjectItemCaseSensitive(o, "loss"));
        if (rc == CG_OK) rc = live_metric(sb->db, j->task_id, "tokens_per_s", cJSON_GetObjectItemCaseSensitive(o, "tokens_per_s"));
    }
    if (rc == CG_OK) j->progress_wall = wall->valuedouble;
out:
    cJSON_Delete(o);
    return rc;
}

static int slurm_poll(sched_backend *b, double timeout_s, sched_exit *ev, int max, int *n) {
    slurm_backend *sb = b->impl;
    *n = 0;
    send_cancels(sb);
    double wait = sb->last_poll + SLURM_POLL_S - cg_mono_time();
    if (wait > timeout_s) wait = timeout_s;
    if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
    sb->last_poll = cg_mono_time();
    /* one squeue for all of them */
    cg_buf ids;
    cg_buf_init(&ids);
    for (int i = 0; i < sb->n; i++)
        if (sb->jobs[i].id[0]) cg_buf_addf(&ids, "%s%s", ids.len ? "," : "", sb->jobs[i].id);
    cg_buf_add(&ids, "", 1);
    char *idlist = cg_buf_steal(&ids), *out = NULL, *err = NULL;
    int rc = CG_OK, status = 0;
    if (idlist[0]) {
        char *argv[] = {"squeue", "-h", "-t", "all", "-j", idlist, "-o", "%i %T %r", NULL};
        rc = run_cmd(argv, &out, &err, &status);
        if (rc == CG_OK && status != 0 && !strstr(err, "Invalid job id")) {
            /* a controller restart or an overloaded controller: not the tasks' fault */
            if (!sb->squeue_failing) cg_warn("squeue failed (%s); trying again", err);
            sb->squeue_failing = 1;
            free(out), free(err), free(idlist);
            return CG_OK;
        }
        if (sb->squeue_failing) cg_info("squeue answers again");
        sb->squeue_failing = 0;
    }
    /* which jobs squeue listed, and how */
    for (int i = 0; i < sb->n && rc == CG_OK && *n < max;) {
        sjob *j = &sb->jobs[i];
        char state[32] = "", reason[64] = "";
        int listed = 0;
        if (j->id[0] && out) {
            for (char *line = out; *line;) {
                char *nl = strchr(line, '\n');
                char id[32];
                if (sscanf(line, "%31s %31s %63s", id, state, reason) >= 2 && !strcmp(id, j->id)) {
                    listed = 1;
                    break;
                }
                if (!nl) break;
                line = nl + 1;
            }
        }
        if (listed && !terminal(state)) {
            if (!strcmp(reason, "DependencyNeverSatisfied") && !j->upstream_failed) j->upstream_failed = 1, j->cancel = 1;
            j->running = !strcmp(state, "RUNNING");
            i++;
            continue;
        }
        rc = job_ended(sb, j, listed ? state : NULL, listed ? reason : NULL, ev, n);
        if (rc == CG_OK) remove_job(sb, j);   /* the last job moved here: look at index i again */
        else i++;
    }
    /* the running jobs' progress, one transaction for all; a failure to record it (a busy db)
     * is not the tasks' fault: the next read tries again */
    int began = 0, prc = CG_OK;
    for (int i = 0; i < sb->n && rc == CG_OK && prc == CG_OK; i++)
        if (sb->jobs[i].running) prc = job_progress(sb, &sb->jobs[i], &began);
    if (began && prc == CG_OK) prc = store_commit(sb->db);
    if (began && prc) store_rollback(sb->db);
    if (prc) {
        for (int i = 0; i < sb->n; i++) sb->jobs[i].progress_wall = 0;   /* record it again next time */
        cg_err_clear();
    }
    free(out), free(err), free(idlist);
    return rc;
}

/* ---------------------------------------------------------------- cancel, adopt, close */

static void slurm_cancel(sched_backend *b, int64_t task_id, int attempt, int hard) {
    slurm_backend *sb = b->impl;
    sjob *j = find_job(sb, task_id);
    if (!j || j->attempt != attempt) return;
    int level = hard ? 2 : 1;
    if (j->cancel < level) j->cancel = level;
}

static int slurm_adopt(sched_backend *b, const sched_job *job, int *attempt, int *adopted) {
    slurm_backend *sb = b->impl;
    sqlite3_stmt *st;
    *adopted = 0;
    if (sqlite3_prepare_v2(sb->db, "SELECT attempts, job_id FROM tasks WHERE task_id = ? AND state = 'running'", -1, &st,
                           NULL) != SQLITE_OK)
        return cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(sb->db));
    sqlite3_bind_int64(st, 1, job->task_id);
    char id[32] = "";
    int att = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        att = sqlite3_column_int(st, 0);
        if (sqlite3_column_text(st, 1)) snprintf(id, sizeof id, "%s", (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    if (att <= 0) return CG_OK;
    int rc = CG_OK;
    if (!id[0]) {   /* killed between sbatch and recording its id: find the job by its name */
        char *name = cg_fmt("cgvlm.%s.%d", job->key, att), *out = NULL;
        char *argv[] = {"squeue", "-h", "-t", "all", "-n", name, "-o", "%i", "--sort=-i", NULL};
        int status;
        if (run_cmd(argv, &out, NULL, &status) == CG_OK && status == 0) sscanf(out, "%31s", id);
        free(name), free(out);
        if (!id[0]) return CG_OK;   /* never submitted: the scheduler recovers it as crashed */
    }
    sjob *j = add_job(sb, job, att);
    snprintf(j->id, sizeof j->id, "%s", id);
    rc = set_job_id(sb, j);
    if (rc == CG_OK) {
        *attempt = att;
        *adopted = 1;
        if (!cg_quiet) cg_info("adopted Slurm job %s of task %s %.12s (attempt %d)", id, job->kind, job->key, att);
    } else {
        remove_job(sb, j);
    }
    return rc;
}

static void slurm_close(sched_backend *b) {
    slurm_backend *sb = b->impl;
    send_cancels(sb);
    store_close(sb->db);
    free(sb->jobs);
    free(sb->ws), free(sb->dir), free(sb->exe), free(sb->device);
    free(sb);
}

int backend_slurm_open(const char *db_path, const char *workspace, const sweep *sw, double time_limit,
                       const char *device, sched_backend **out) {
    if (!on_path("sbatch"))
        return cg_err(CG_EUSER, "sbatch not found on PATH; is this a Slurm login node? use --backend local");
    const char *partition = sched_slurm.partition;
    if (partition) {
        char *argv[] = {"sinfo", "-h", "-p", (char *)partition, "-o", "%P", NULL}, *o = NULL, *e = NULL;
        int status, rc = run_cmd(argv, &o, &e, &status);
        int known = rc == CG_OK && status == 0 && o[0];
        if (rc == CG_OK && !known)
            rc = cg_err(CG_EUSER, "unknown Slurm partition '%s'%s%s; see 'sinfo -s' for the partitions", partition,
                        e[0] ? ": " : "", e);
        free(o), free(e);
        if (rc) return rc;
    }
    char *exe = realpath("/proc/self/exe", NULL);
    if (!exe) return cg_err(CG_EFAIL, "cannot find the path of the cgvlm binary: %s", strerror(errno));
    slurm_backend *sb = cg_calloc(1, sizeof *sb);
    sb->exe = exe;
    sb->ws = cg_strdup(workspace);
    sb->dir = cg_fmt("%s/slurm", workspace);
    sb->sw = sw;
    sb->time_limit = time_limit;
    sb->device = device ? cg_strdup(device) : NULL;
    sb->o = sched_slurm;
    int rc = cg_mkdir_p(sb->dir);
    if (rc == CG_OK) rc = store_open(db_path, 0, &sb->db);
    if (rc) {
        free(sb->exe), free(sb->ws), free(sb->dir), free(sb->device), free(sb);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);
    sb->self = (sched_backend){"slurm", 1 << 20, slurm_submit, slurm_poll, slurm_cancel, slurm_close, sb,
                               slurm_adopt, 1, 1};
    *out = &sb->self;
    return CG_OK;
}

int slurm_cancel_orphans(void *sqlite_db, const char *name, int *ncancelled) {
    sqlite3 *db = sqlite_db;
    sqlite3_stmt *st;
    *ncancelled = 0;
    /* only a sweep whose scheduler is gone from this host, or that has none */
    if (sqlite3_prepare_v2(db, "SELECT owner_host, owner_pid FROM sweeps WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
        return cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int orphaned = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *host = (const char *)sqlite3_column_text(st, 0);
        orphaned = sqlite3_column_type(st, 1) == SQLITE_NULL ||
                   (host && !strcmp(host, sched_hostname()) && !sched_proc_alive(sqlite3_column_int64(st, 1)));
    }
    sqlite3_finalize(st);
    if (!orphaned || !on_path("scancel")) return CG_OK;
    if (sqlite3_prepare_v2(db, "SELECT DISTINCT t.job_id FROM runs JOIN run_tasks USING (run_id) JOIN tasks t USING (task_id) "
                               "JOIN sweeps s USING (sweep_id) WHERE s.name = ? AND t.state = 'running' AND t.job_id IS NOT NULL",
                           -1, &st, NULL) != SQLITE_OK)
        return cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    char *argv[4096 + 2];
    int na = 0;
    argv[na++] = "scancel";
    while (sqlite3_step(st) == SQLITE_ROW && na < 4096) argv[na++] = cg_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    argv[na] = NULL;
    int rc = CG_OK, status;
    char *err = NULL;
    if (na > 1) {
        rc = run_cmd(argv, NULL, &err, &status);
        if (rc == CG_OK && status != 0) rc = cg_err(CG_EFAIL, "scancel of the jobs of sweep '%s' failed: %s", name, err);
        if (rc == CG_OK) *ncancelled = na - 1;
    }
    for (int i = 1; i < na; i++) free(argv[i]);
    free(err);
    return rc;
}