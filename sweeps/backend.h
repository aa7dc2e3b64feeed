/* backend.h: where the scheduler's task processes run. The scheduler decides what runs when and
 * keeps the database; a backend only starts task attempts, reports their ends, and stops them.
 *   local  worker processes on this machine (backend_local.c): one slot per CPU share or GPU
 *   slurm  one batch job per attempt (backend_slurm.c); `cgvlm task --spec` is the job's command
 * Every attempt runs `cgvlm task` logic in a process of its own: a crash kills a task, never the
 * scheduler. The task process itself records its outcome in the db (see task.h). */
#ifndef CG_BACKEND_H
#define CG_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t task_id;
    int attempt;
    const char *key;
    const char *kind;
} sched_job;

/* An attempt that ended: its wait status (as from waitpid), or -1 when the backend lost it. */
typedef struct {
    int64_t task_id;
    int attempt;
    int wstatus;
} sched_exit;

typedef struct sched_backend sched_backend;
struct sched_backend {
    const char *name;
    int slots;   /* attempts that may run at once */
    /* Starts an attempt in a free slot; *pid is its process id (0 when not local). */
    int (*submit)(sched_backend *b, const sched_job *job, int64_t *pid);
    /* Waits up to timeout_s for ends; fills at most max events into ev, *n of them. */
    int (*poll)(sched_backend *b, double timeout_s, sched_exit *ev, int max, int *n);
    /* Asks an attempt to stop: gracefully (SIGTERM: checkpoint, 'cancelled') or hard (SIGKILL). */
    void (*cancel)(sched_backend *b, int64_t task_id, int attempt, int hard);
    void (*close)(sched_backend *b);
    void *impl;
    /* Optional (NULL: none). Takes over an attempt found 'running' that an earlier scheduler started
     * and the backend still knows (a Slurm job queued, running or just ended): *attempt = its
     * number, *adopted = 1; its end is then reported by poll like any other. */
    int (*adopt)(sched_backend *b, const sched_job *job, int *attempt, int *adopted);
    int chains;      /* 1: an attempt may start while its upstream attempts of this backend still run
                      * (Slurm holds it with afterok) */
    int own_limits;  /* 1: the backend enforces time limits itself (Slurm --time): no timer here */
};

/* The local backend: `workers` slots. With gpus > 0 each slot is pinned to one GPU
 * (CUDA_VISIBLE_DEVICES: the k-th entry of the scheduler's own, when it has one) and workers must
 * equal gpus. threads = CPU threads per task. device (NULL: none) is --device, which every task
 * uses instead of its run config's "device" ("auto" = the slot's; workers get it as
 * CGVLM_DEVICE_FORCE, the slot's device as CGVLM_DEVICE). */
int backend_local_open(const char *db_path, const char *workspace, int workers, int gpus,
                       int threads, const char *device, sched_backend **out);

/* Entry k of a comma-separated GPU list as CUDA_VISIBLE_DEVICES holds it ("2,3": k = 1 gives
 * "3"); list NULL or "" gives "k". 0 when the list has no entry k. */
int sched_gpu_pick(const char *list, int k, char *out, size_t n);

#endif
