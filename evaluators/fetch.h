/* fetch.h: downloads a benchmark's files (from its manifest) into the local cache.
 *
 * Cache layout (CACHE = $XDG_CACHE_HOME/cgvlm, else ~/.cache/cgvlm, or --cache DIR):
 *   CACHE/NAME/VERSION/PATH              the files, each verified by size and sha256
 *   CACHE/NAME/VERSION/PATH.part         a partial download (resumed with HTTP Range)
 *   CACHE/NAME/.manifest-VERSION.json    the manifest, with its base_url and origin filled in
 *   CACHE/NAME/.latest                   the version last fetched (for `cgvlm fetch NAME`)
 *   CACHE/NAME/.lock-VERSION             flock()ed while a fetch of that version runs
 *
 * A file already in the cache is used when its size and sha256 match the manifest (it is hashed
 * on every run, so a damaged cache heals itself; that is also why files are not fsync'ed).
 * Every download streams into PATH.part while its sha256 is computed, and is renamed to PATH
 * only once the size and the hash match; a mismatch deletes the .part.
 *
 * The state machine of one file's download (fetch.c; each arrow is named after its function):
 *   QUEUED --job_start--> RUNNING --job_finish--> (size reached) --job_verify--> --job_done--> DONE
 *   RUNNING --job_retry--> WAITING (timeout, reset, 5xx, 408, 429, a drop: the .part is kept and
 *                                   resumed) --job_start, once the backoff has elapsed--> RUNNING
 *   RUNNING --job_fail--> FAILED (other 4xx, a refused redirect, an unknown host, a bad TLS
 *                                 certificate, more bytes than declared, a complete response with
 *                                 fewer, a checksum mismatch on a fresh download, attempts spent)
 *   A checksum mismatch after a resume deletes the .part and retries from byte 0 once.
 */
#ifndef CG_FETCH_H
#define CG_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *cache_dir;  /* NULL: the default cache (fetch_default_cache_dir) */
    const char *base_url;   /* NULL: the manifest's base_url, else its own location */
    int offline;            /* use the cache only; CG_EUSER listing what is missing */
    int jobs;               /* concurrent transfers (default 8) */
    double timeout_s;       /* connect timeout, and how long a transfer may stay under
                               1 KiB/s before it is abandoned (default 30) */
    int retries;            /* further attempts per file after the first (default 5) */
    double backoff_s;       /* first retry delay; doubles each attempt, with jitter (0.5) */
    int progress;           /* -1: a progress bar when stderr is a terminal; 0 never; 1 always */
    int hash_thread;        /* files of 8 MiB and more: hash them in a second thread fed through a
                               ring of buffers: -1 when the machine has two CPUs or more (default),
                               0 never (inline), 1 always */
} fetch_opts;

typedef struct {
    size_t files;           /* in the manifest */
    size_t from_cache;      /* already present and valid */
    size_t downloaded;      /* fetched in this run */
    size_t resumed;         /* of those, continued from a .part */
    size_t retries;         /* attempts after the first, all files together */
    uint64_t bytes;         /* the benchmark's size (sum of the manifest's sizes) */
    uint64_t received;      /* body bytes received in this run */
    double seconds;
} fetch_stats;

void fetch_opts_init(fetch_opts *o);
/* $XDG_CACHE_HOME/cgvlm when XDG_CACHE_HOME is an absolute path, else $HOME/.cache/cgvlm. */
int fetch_default_cache_dir(char **out);

/* Fetches a benchmark. `ref` is a manifest (a local path or an http/https/file URL) or the NAME
 * (or NAME@VERSION) of a benchmark fetched before, whose manifest is kept in the cache. On success
 * *local_dir_out (malloc'ed) is CACHE/NAME/VERSION, where every file of the manifest now is.
 * Errors: CG_EUSER for a bad manifest or reference, or --offline with files missing; CG_EFAIL
 * when a download failed (the message names the file, the URL and why). */
int fetch_benchmark(const char *ref, const fetch_opts *opts, char **local_dir_out);
/* The same, also filling *stats (may be NULL). */
int fetch_benchmark_stats(const char *ref, const fetch_opts *opts, char **local_dir_out,
                          fetch_stats *stats);

/* Lists the benchmarks in the cache (opts->cache_dir or the default), one line each:
 * "NAME VERSION FILES SIZE_MB DIR" and "latest" on the version `cgvlm fetch NAME` would use.
 * Only the manifests are read: the files are not checked (see --offline for that). */
int fetch_list(const fetch_opts *opts, FILE *out);

/* "fetched 612 files (3.4 MB) in 0.8 s, 0 from cache" (+ ", 1 resumed, 2 retries"); malloc'ed. */
char *fetch_summary(const fetch_stats *s);

#endif
