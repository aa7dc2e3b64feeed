/* task.h: the task process: one attempt of one task, from the db row to the published artifact.
 *
 *   fence in   UPDATE the task's pid WHERE state = 'running' AND attempts = ATTEMPT: a process
 *              whose attempt was taken over (recovered, cancelled) does nothing;
 *   run        build the stage_ctx (stage.h) and call stage_execute;
 *   finish     task_finish: on success publish staging -> <workspace>/artifacts/<key> by one
 *              rename, then in one transaction (fenced again): state done, the artifacts row, the
 *              attempt row and the task's metrics journal (db/sink.h store_ingest_journal, a
 *              savepoint inside it); else failed/cancelled with the error.
 * A crash at any point leaves either no artifact or a complete one (rename is atomic), and the
 * task 'running' until the scheduler reaps or recovers it.
 */
#ifndef CG_TASK_H
#define CG_TASK_H

#include <stdint.h>

/* Exit codes of a task process. */
enum { TASK_DONE = 0, TASK_FAILED = 1, TASK_BAD_INPUT = 2 /* failed, not worth retrying */,
       TASK_CANCELLED = 3, TASK_SUPERSEDED = 4 };

/* Runs one attempt. attempt 0: claim the task first (standalone use: `cgvlm task --key K`).
 * slot_device: "cpu" / "cuda" (the worker slot's: what "auto" means); forced_device: the
 * invocation's --device (NULL: the run config's "device" decides); threads: CPU threads. */
int task_main(const char *db_path, const char *workspace, const char *key, int attempt, int threads,
              const char *slot_device, const char *forced_device);

/* For device "cuda:N": pins this process to GPU N (CUDA_VISIBLE_DEVICES = the N-th entry of the
 * GPUs the scheduler or the Slurm job sees) and gives "cuda"; other devices pass through.
 * CG_EUSER when N is not visible. Call it before anything initialises CUDA. */
int task_pin_gpu(const char *device, const char **stage_device);

/* The local backend's fork server on stdin/stdout (see backend_local.c). */
int task_worker(const char *db_path, const char *workspace, int threads);

/* For the Slurm job (task_slurm.c): publish staging as the artifact dir by one rename (an artifact
 * already there is kept), and the artifact's digest (sha256 over its files) and size. */
int task_publish(const char *staging, const char *final);
int task_artifact_digest(const char *dir, int64_t *size, char hex[65]);

#endif
