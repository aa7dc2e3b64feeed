/* backend_local.c: the local backend: one long-lived worker process per slot, each a fork server.
 *
 * Why workers: exec'ing the cgvlm binary costs 8 ms (80 ms with the CUDA libraries), far more than
 * the scheduler's whole budget per task. So each slot execs `cgvlm task --worker` once (with its
 * GPU in CUDA_VISIBLE_DEVICES); the worker never opens the db nor initialises CUDA, and forks one
 * fresh child per attempt, which runs the task and exits: one process per task, as before.
 *
 * Protocol on the worker's stdin/stdout, one line each:
 *   scheduler -> worker   RUN ATTEMPT KEY
 *   worker -> scheduler   PID CHILD_PID          (at once, after the fork)
 *   worker -> scheduler   EXIT CHILD_PID WSTATUS (when the child ended)
 * Supervision: the worker dies with the scheduler (PR_SET_PDEATHSIG SIGKILL); a task child gets
 * SIGTERM when its worker dies (PR_SET_PDEATHSIG SIGTERM), checkpoints and records 'cancelled'.
 * So a killed scheduler leaves nothing running unsupervised for longer than a checkpoint takes.
 */
#define _GNU_SOURCE
#include "sweeps/backend.h"
#include "util/fs.h"
#include "util/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    pid_t pid;          /* the worker; 0 when not started */
    int to, from;       /* pipes to its stdin, from its stdout */
    int busy;
    int64_t task_id;
    int attempt;
    pid_t child;
    char line[256];
    size_t used;
    int gpu;            /* -1: none */
    int share;          /* CPU threads last written to its threads file (0: none written) */
    char *threads_file; /* its task's share of the cores (CGVLM_THREADS_FILE); NULL: fixed */
} worker;

typedef struct {
    sched_backend self;
    char *db, *ws;
    char *device;       /* --device for every task (CGVLM_DEVICE_FORCE); NULL: the run configs say */
    int threads;        /* per worker slot when all are busy */
    int n;
    worker *w;
} local_backend;

int sched_gpu_pick(const char *list, int k, char *out, size_t n) {
    if (!list || !*list) {
        snprintf(out, n, "%d", k);
        return 1;
    }
    for (int i = 0; i < k; i++) {
        list = strchr(list, ',');
        if (!list) return 0;
        list++;
    }
    size_t len = strcspn(list, ",");
    if (len == 0) return 0;
    snprintf(out, n, "%.*s", (int)len, list);
    return 1;
}

static void worker_stop(worker *w) {
    if (w->to >= 0) close(w->to);
    if (w->from >= 0) close(w->from);
    w->to = w->from = -1;
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        waitpid(w->pid, NULL, 0);
    }
    w->pid = 0;
    w->used = 0;
}

static int worker_start(local_backend *lb, worker *w) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return cg_err(CG_EFAIL, "cannot create a pipe: %s", strerror(errno));
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]), close(in[1]);
        return cg_err(CG_EFAIL, "cannot create a pipe: %s", strerror(errno));
    }
    pid_t parent = getpid();
    char threads[16];
    snprintf(threads, sizeof threads, "%d", lb->threads);
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        return cg_err(CG_EFAIL, "cannot start a worker process: %s", strerror(errno));
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(111);   /* the scheduler died before prctl */
        dup2(in[0], 0);
        dup2(out[1], 1);
        char slot[16];
        snprintf(slot, sizeof slot, "%d", (int)(w - lb->w));
        setenv("CGVLM_WORKER_SLOT", slot, 1);
        /* Workers share the machine: OpenMP threads that spin while waiting steal the cores
         * other workers compute on (measured: 0.1 s steps became 0.5-3 s). Read at library
         * load, so it must be set before exec. A user's own setting wins. */
        setenv("OMP_WAIT_POLICY", "passive", 0);
        /* GPU k of this machine is the k-th of the scheduler's CUDA_VISIBLE_DEVICES when it has
         * one (a task with device cuda:N picks from the same list: CGVLM_GPU_LIST) */
        const char *list = getenv("CUDA_VISIBLE_DEVICES");
        setenv("CGVLM_GPU_LIST", list ? list : "", 1);   /* "": all of them, numbered as CUDA does */
        if (w->threads_file) setenv("CGVLM_THREADS_FILE", w->threads_file, 1);
        else unsetenv("CGVLM_THREADS_FILE");
        if (lb->device) setenv("CGVLM_DEVICE_FORCE", lb->device, 1);
        else unsetenv("CGVLM_DEVICE_FORCE");
        if (w->gpu >= 0) {
            char g[64];
            if (!sched_gpu_pick(list, w->gpu, g, sizeof g)) snprintf(g, sizeof g, "%d", w->gpu);
            setenv("CUDA_VISIBLE_DEVICES", g, 1);
            setenv("CGVLM_DEVICE", "cuda", 1);
        } else {
            setenv("CGVLM_DEVICE", "cpu", 1);
        }
        char *argv[] = {"cgvlm", "task", "--worker", "--db", lb->db, "--workspace", lb->ws,
                        "--threads", threads, NULL};
        /* /proc/self/exe, not its path: a binary rebuilt during the sweep must not serve it */
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    w->pid = pid;
    w->to = in[1];
    w->from = out[0];
    w->used = 0;
    w->busy = 0;
    return CG_OK;
}

/* Reads one line from the worker (blocking). CG_EFAIL when the worker is gone. */
static int worker_line(worker *w, char *out, size_t cap) {
    for (;;) {
        char *nl = memchr(w->line, '\n', w->used);
        if (nl) {
            size_t n = (size_t)(nl - w->line);
            if (n >= cap) n = cap - 1;
            memcpy(out, w->line, n);
            out[n] = 0;
            size_t rest = w->used - (size_t)(nl + 1 - w->line);
            memmove(w->line, nl + 1, rest);
            w->used = rest;
            return CG_OK;
        }
        if (w->used == sizeof w->line) return CG_EFAIL;
        ssize_t r = read(w->from, w->line + w->used, sizeof w->line - w->used);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return CG_EFAIL;
        w->used += (size_t)r;
    }
}

static int line_ready(const worker *w) { return memchr(w->line, '\n', w->used) != NULL; }

/* Shares the CPU slots' threads (threads x workers) out over the busy workers, the remainder to
 * the lower slots, and writes each busy worker's share to its threads file when it changed: a
 * task running alone (the LM pretraining while nothing else can start, the last task of a sweep)
 * gets every core instead of idling the rest. The task takes its share between steps
 * (stage_follow_threads); results do not depend on it. A file that cannot be written only costs
 * speed: the task keeps its count. */
static void rebalance(local_backend *lb) {
    int busy = 0, k = 0, total = lb->threads * lb->n;
    for (int i = 0; i < lb->n; i++) busy += lb->w[i].busy && lb->w[i].threads_file;
    if (busy == 0) return;
    for (int i = 0; i < lb->n; i++) {
        worker *w = &lb->w[i];
        if (!w->busy || !w->threads_file) continue;
        int share = total / busy + (k++ < total % busy);
        if (share == w->share) continue;
        char *tmp = cg_fmt("%s.tmp", w->threads_file);
        FILE *fp = fopen(tmp, "w");
        int ok = fp && fprintf(fp, "%d\n", share) > 0;
        if (fp && fclose(fp) != 0) ok = 0;
        if (ok && rename(tmp, w->threads_file) == 0) w->share = share;
        else unlink(tmp);
        free(tmp);
    }
}

static int local_submit(sched_backend *b, const sched_job *job, int64_t *pid) {
    local_backend *lb = b->impl;
    for (int tries = 0; tries < 2; tries++) {
        worker *w = NULL;
        for (int i = 0; i < lb->n && !w; i++)
            if (!lb->w[i].busy) w = &lb->w[i];
        assert(w);
        if (!w->pid) {
            int rc = worker_start(lb, w);
            if (rc) return rc;
        }
        char msg[128], reply[128];
        int n = snprintf(msg, sizeof msg, "RUN %d %s\n", job->attempt, job->key);
        long long child = 0;
        if (write(w->to, msg, (size_t)n) == n && worker_line(w, reply, sizeof reply) == CG_OK &&
            sscanf(reply, "PID %lld", &child) == 1 && child > 0) {
            w->busy = 1;
            w->task_id = job->task_id;
            w->attempt = job->attempt;
            w->child = (pid_t)child;
            *pid = child;
            rebalance(lb);
            return CG_OK;
        }
        worker_stop(w);   /* a dead worker: start a fresh one and try once more */
    }
    return cg_err(CG_EFAIL, "cannot start task %s: the worker process keeps dying", job->key);
}

static int local_poll(sched_backend *b, double timeout_s, sched_exit *ev, int max, int *n) {
    local_backend *lb = b->impl;
    struct pollfd pfd[256];
    int map[256], np = 0;
    *n = 0;
    for (int i = 0; i < lb->n && np < 256; i++)
        if (lb->w[i].busy) {
            if (line_ready(&lb->w[i])) timeout_s = 0;
            pfd[np] = (struct pollfd){.fd = lb->w[i].from, .events = POLLIN};
            map[np++] = i;
        }
    int ms = timeout_s <= 0 ? 0 : (int)(timeout_s * 1000 + 0.5);
    int r = poll(pfd, (nfds_t)np, ms);
    if (r < 0 && errno != EINTR) return cg_err(CG_EFAIL, "poll: %s", strerror(errno));
    for (int k = 0; k < np && *n < max; k++) {
        worker *w = &lb->w[map[k]];
        if (!line_ready(w) && (r <= 0 || !(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))) continue;
        char line[128];
        long long pid;
        int status;
        if (worker_line(w, line, sizeof line) == CG_OK && sscanf(line, "EXIT %lld %d", &pid, &status) == 2) {
            ev[(*n)++] = (sched_exit){w->task_id, w->attempt, status};
        } else {
            /* the worker died (killed by hand?): its child got SIGTERM; report the attempt lost */
            ev[(*n)++] = (sched_exit){w->task_id, w->attempt, -1};
            worker_stop(w);
        }
        w->busy = 0;
        w->child = 0;
    }
    if (*n > 0) rebalance(lb);
    return CG_OK;
}

static void local_cancel(sched_backend *b, int64_t task_id, int attempt, int hard) {
    local_backend *lb = b->impl;
    for (int i = 0; i < lb->n; i++)
        if (lb->w[i].busy && lb->w[i].task_id == task_id && lb->w[i].attempt == attempt && lb->w[i].child > 0)
            kill(lb->w[i].child, hard ? SIGKILL : SIGTERM);
}

static void local_close(sched_backend *b) {
    local_backend *lb = b->impl;
    for (int i = 0; i < lb->n; i++) {
        worker *w = &lb->w[i];
        if (w->to >= 0) close(w->to);   /* EOF: the worker exits */
        w->to = -1;
    }
    for (int i = 0; i < lb->n; i++) {
        worker *w = &lb->w[i];
        if (w->pid > 0) waitpid(w->pid, NULL, 0);
        if (w->from >= 0) close(w->from);
        if (w->threads_file) unlink(w->threads_file);
        free(w->threads_file);
    }
    free(lb->w);
    free(lb->db);
    free(lb->ws);
    free(lb->device);
    free(lb);
}

int backend_local_open(const char *db_path, const char *workspace, int workers, int gpus,
                       int threads, const char *device, sched_backend **out) {
    assert(workers > 0 && (gpus == 0 || gpus == workers));
    local_backend *lb = cg_calloc(1, sizeof *lb);
    lb->db = cg_strdup(db_path);
    lb->device = device ? cg_strdup(device) : NULL;
    lb->ws = cg_strdup(workspace);
    lb->threads = threads;
    lb->n = workers;
    lb->w = cg_calloc((size_t)workers, sizeof *lb->w);
    /* CPU slots share the cores out as tasks start and end (rebalance); CGVLM_ELASTIC_THREADS=0
     * keeps every task at its fixed share (for A/B timing) */
    const char *elastic = getenv("CGVLM_ELASTIC_THREADS");
    int share_cores = gpus == 0 && !(elastic && !strcmp(elastic, "0"));
    char *logs = cg_path_join(workspace, "logs");
    if (share_cores && cg_mkdir_p(logs) != CG_OK) {
        cg_err_clear();   /* no threads files: fixed shares; the worker reports the directory */
        share_cores = 0;
    }
    for (int i = 0; i < workers; i++) {
        lb->w[i].to = lb->w[i].from = -1;
        lb->w[i].gpu = gpus ? i : -1;
        if (share_cores) lb->w[i].threads_file = cg_fmt("%s/threads-%d.%d", logs, (int)getpid(), i);
    }
    free(logs);
    /* a worker that dies must not kill the scheduler through a write to its pipe */
    signal(SIGPIPE, SIG_IGN);
    lb->self = (sched_backend){"local", workers, local_submit, local_poll, local_cancel, local_close, lb, NULL, 0, 0};
    *out = &lb->self;
    return CG_OK;
}
