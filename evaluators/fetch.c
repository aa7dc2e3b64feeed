/* fetch.c: the benchmark fetcher: manifest references, the cache, and concurrent, resumable,
 * verified downloads with libcurl's multi interface (see fetch.h for the cache layout and the
 * state machine of one file). */
#define _GNU_SOURCE
#include "evaluators/fetch.h"
#include "evaluators/manifest.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/rng.h"
#include "util/sha256.h"
#include "util/util.h"
#include "version.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FETCH_MANIFEST_MAX (64LL << 20) /* a manifest larger than this is refused */
#define FETCH_BACKOFF_MAX_S 30.0
#define FETCH_LOW_SPEED_BPS 1024L       /* slower than this for timeout_s: abandoned */
#define FETCH_CHUNK ((size_t)256 << 10)  /* read size when hashing files (fits in L2) */
#define FETCH_PIPE_MIN (8LL << 20)       /* files this large are hashed by a second thread */
#define FETCH_RECV_BUFFER (4L << 20)      /* libcurl's receive buffer for those (its maximum: 10 MiB) */
#define FETCH_SLAB ((size_t)256 << 10)    /* the hasher's unit: 16 of libcurl's 16 KiB pieces */
#define FETCH_SLABS 8                     /* slabs in flight between the receiver and the hasher */

void fetch_opts_init(fetch_opts *o) {
    memset(o, 0, sizeof *o);
    o->jobs = 8;
    o->timeout_s = 30;
    o->retries = 5;
    o->backoff_s = 0.5;
    o->progress = -1;
    o->hash_thread = -1;
}

int fetch_default_cache_dir(char **out) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/') {
        *out = cg_path_join(xdg, "cgvlm");
        return CG_OK;
    }
    if (!home || !*home)
        return cg_err(CG_EUSER, "no cache directory: neither XDG_CACHE_HOME nor HOME is set; pass --cache DIR");
    *out = cg_fmt("%s/.cache/cgvlm", home);
    return CG_OK;
}

/* ---------- curl handles: one safe configuration for every request ---------- */

static int curl_ready(void) {
    static int done = 0;
    if (!done && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return cg_err(CG_EFAIL, "cannot initialise libcurl");
    done = 1;
    return CG_OK;
}

static void setup_easy(CURL *e, const char *url, const fetch_opts *o, char *errbuf) {
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file");
    /* a redirect may never lead to a local file, whatever the first URL was */
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, FETCH_LOW_SPEED_BPS);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(o->timeout_s < 1 ? 1 : ceil(o->timeout_s)));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "cgvlm/" CGVLM_VERSION);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    errbuf[0] = 0;
}

/* Can another attempt help? Timeouts, resets, 5xx, 408 and 429: yes; other 4xx, refused
 * protocols, TLS verification, a missing local file: no. */
static int retryable(CURLcode res, long http_code) {
    switch (res) {
    case CURLE_HTTP_RETURNED_ERROR:
        return http_code >= 500 || http_code == 408 || http_code == 429;
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* One line for what went wrong with a finished request; `location` is the last Location header
 * seen (NULL if unknown). */
static char *describe_failure(CURL *e, CURLcode res, long http_code, const char *errbuf,
                              const char *location) {
    if (res == CURLE_HTTP_RETURNED_ERROR)
        return cg_fmt("the server answered HTTP %ld%s", http_code,
                      retryable(res, http_code) ? "" : " (check the URL in the manifest, or --base-url)");
    if (res == CURLE_UNSUPPORTED_PROTOCOL) {
        long redirects = 0;
        curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &redirects);
        if (redirects > 0 || (location && *location)) {
            if (location && *location)
                return cg_fmt("refused a redirect to '%s': redirects may only lead to http or https", location);
            return cg_strdup("refused a redirect: redirects may only lead to http or https");
        }
    }
    return cg_strdup(errbuf && errbuf[0] ? errbuf : curl_easy_strerror(res));
}

static double backoff_delay(const fetch_opts *o, int attempt, cg_rng *rng) {
    double d = o->backoff_s * pow(2.0, attempt - 1);
    if (d > FETCH_BACKOFF_MAX_S) d = FETCH_BACKOFF_MAX_S;
    return d * (0.5 + 0.5 * cg_rng_float(rng)); /* jitter: clients that failed together spread out */
}

static cg_rng *jitter_rng(void) {
    static _Thread_local cg_rng rng;
    static _Thread_local int seeded = 0;
    if (!seeded) cg_rng_seed(&rng, (uint64_t)getpid() ^ (uint64_t)(cg_wall_time() * 1e6));
    seeded = 1;
    return &rng;
}

/* ---------- the manifest by URL: a small in-memory download ---------- */

static size_t mem_write(char *data, size_t sz, size_t nm, void *ud) {
    cg_buf *b = ud;
    if ((long long)(b->len + sz * nm) > FETCH_MANIFEST_MAX) return 0;
    cg_buf_add(b, data, sz * nm);
    return sz * nm;
}

static int download_text(const char *url, const fetch_opts *o, char **text) {
    int rc = CG_OK;
    char errbuf[CURL_ERROR_SIZE];
    cg_buf b;
    cg_buf_init(&b);
    CURL *e = curl_easy_init();
    if (!e) return cg_err(CG_EFAIL, "cannot create a curl handle");
    for (int attempt = 1;; attempt++) {
        b.len = 0;
        setup_easy(e, url, o, errbuf);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, mem_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)FETCH_MANIFEST_MAX);
        CURLcode res = curl_easy_perform(e);
        long code = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        if (res == CURLE_OK) break;
        char *why = describe_failure(e, res, code, errbuf, NULL);
        if (!retryable(res, code) || attempt > o->retries) {
            rc = cg_err(CG_EFAIL, "cannot fetch manifest '%s': %s%s", url, why,
                        attempt > 1 ? " (after retries)" : "");
            free(why);
            goto out;
        }
        free(why);
        double d = backoff_delay(o, attempt, jitter_rng());
        usleep((useconds_t)(d * 1e6));
    }
    cg_buf_add(&b, "", 1); /* NUL */
    *text = cg_buf_steal(&b);
out:
    curl_easy_cleanup(e);
    cg_buf_free(&b);
    return rc;
}

/* ---------- manifest references: a path, a URL, or NAME[@VERSION] in the cache ---------- */

static int ref_is_manifest(const char *ref) {
    size_t n = strlen(ref);
    return strchr(ref, '/') || strchr(ref, ':') || (n >= 5 && !strcmp(ref + n - 5, ".json"));
}

static int load_cached_manifest(const char *cache, const char *ref, const char *base, manifest *m) {
    int rc = CG_OK;
    char *name = cg_strdup(ref), *version = NULL, *latest = NULL, *path = NULL;
    char *at = strchr(name, '@');
    if (at) *at = 0, version = cg_strdup(at + 1);
    if (!manifest_valid_name(name) || (version && !manifest_valid_name(version))) {
        rc = cg_err(CG_EUSER, "'%s' is neither a manifest (a path or a URL) nor a benchmark NAME[@VERSION]", ref);
        goto out;
    }
    if (!version) {
        char *lp = cg_fmt("%s/%s/.latest", cache, name);
        rc = cg_read_file(lp, &latest, NULL);
        free(lp);
        if (rc) {
            rc = cg_err(CG_EUSER, "no benchmark '%s' in the cache '%s'; fetch it once from its manifest: cgvlm fetch MANIFEST",
                        name, cache);
            goto out;
        }
        latest[strcspn(latest, "\n")] = 0;
        if (!manifest_valid_name(latest)) {
            rc = cg_err(CG_EUSER, "the cache's record '%s/%s/.latest' is damaged; fetch from the manifest again",
                        cache, name);
            goto out;
        }
        version = cg_strdup(latest);
    }
    path = cg_fmt("%s/%s/.manifest-%s.json", cache, name, version);
    if (!cg_file_exists(path)) {
        rc = cg_err(CG_EUSER, "no benchmark '%s' version '%s' in the cache '%s'; fetch it once from its manifest",
                    name, version, cache);
        goto out;
    }
    rc = manifest_load_file(path, base, m);
    if (rc == CG_OK && (strcmp(m->name, name) || strcmp(m->version, version))) {
        manifest_free(m);
        rc = cg_err(CG_EUSER, "the cached manifest '%s' does not describe %s@%s; fetch from the manifest again",
                    path, name, version);
    }
out:
    free(name);
    free(version);
    free(latest);
    free(path);
    return rc;
}

/* --offline with a manifest URL: the cached manifest fetched from that URL (the newest). */
static int load_cached_by_origin(const char *cache, const char *url, const char *base, manifest *m) {
    char *pattern = cg_fmt("%s/*/.manifest-*.json", cache), *best = NULL;
    double best_mtime = -1;
    glob_t g;
    int rc = CG_OK;
    if (glob(pattern, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            cJSON *j = NULL;
            struct stat st;
            if (cg_json_load(g.gl_pathv[i], &j) != CG_OK) continue;
            const cJSON *from = cJSON_GetObjectItemCaseSensitive(j, "fetched_from");
            if (cJSON_IsString(from) && !strcmp(from->valuestring, url) && stat(g.gl_pathv[i], &st) == 0 &&
                (double)st.st_mtime > best_mtime) {
                best_mtime = (double)st.st_mtime;
                free(best);
                best = cg_strdup(g.gl_pathv[i]);
            }
            cJSON_Delete(j);
        }
        globfree(&g);
    }
    cg_err_clear();
    if (best)
        rc = manifest_load_file(best, base, m);
    else
        rc = cg_err(CG_EUSER, "offline: the manifest '%s' was never fetched into the cache '%s'; run the same command with network access first",
                    url, cache);
    free(pattern);
    free(best);
    return rc;
}

static int load_manifest(const char *ref, const fetch_opts *o, const char *cache, manifest *m) {
    if (!ref_is_manifest(ref)) return load_cached_manifest(cache, ref, o->base_url, m);
    if (!strstr(ref, "://")) return manifest_load_file(ref, o->base_url, m);
    char scheme[16];
    manifest_url_scheme(ref, scheme, sizeof scheme);
    if (strcmp(scheme, "http") && strcmp(scheme, "https") && strcmp(scheme, "file"))
        return cg_err(CG_EUSER, "manifest URL '%s' uses '%s'; only http, https and file are allowed", ref,
                      scheme);
    if (o->offline) return load_cached_by_origin(cache, ref, o->base_url, m);
    char *text = NULL;
    int rc = download_text(ref, o, &text);
    if (rc == CG_OK) rc = manifest_parse(text, ref, ref, o->base_url, m);
    free(text);
    return rc;
}

/* ---------- the cache ---------- */

/* Hashes a local file with the fast hasher; CG_EUSER if it is missing. */
static int hash_file(const char *path, char hex[65], uint64_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return cg_err(CG_EUSER, "cannot open '%s': %s", path, strerror(errno));
    cg_sha256 s;
    cg_sha256_init(&s);
    uint8_t *chunk = cg_malloc(FETCH_CHUNK);
    ssize_t n;
    while ((n = read(fd, chunk, FETCH_CHUNK)) > 0) cg_sha256_update(&s, chunk, (size_t)n);
    int err = n < 0 ? errno : 0;
    close(fd);
    free(chunk);
    if (err) return cg_err(CG_EFAIL, "cannot read '%s': %s", path, strerror(err));
    uint8_t d[32];
    if (size) *size = s.nbytes;
    cg_sha256_final(&s, d);
    cg_sha256_to_hex(d, hex);
    return CG_OK;
}

/* Is the file at `path` exactly the manifest's file? */
static int cached_ok(const char *path, const manifest_file *f) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != f->size) return 0;
    char hex[65];
    return hash_file(path, hex, NULL) == CG_OK && !strcmp(hex, f->sha256);
}

static int save_manifest(const char *cache, const manifest *m) {
    char *path = cg_fmt("%s/%s/.manifest-%s.json", cache, m->name, m->version);
    char *latest = cg_fmt("%s/%s/.latest", cache, m->name);
    char *ver = cg_fmt("%s\n", m->version);
    int rc = cg_write_file_atomic(path, m->json, strlen(m->json));
    if (rc == CG_OK) rc = cg_write_file_atomic(latest, ver, strlen(ver));
    free(path);
    free(latest);
    free(ver);
    return rc;
}

/* One fetch of NAME@VERSION at a time in a cache: a second waits (sweeps evaluate in parallel). */
static int lock_version(const char *cache, const manifest *m, int *fd_out) {
    char *path = cg_fmt("%s/%s/.lock-%s", cache, m->name, m->version);
    int rc = CG_OK;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = cg_err(CG_EFAIL, "cannot create the lock '%s': %s", path, strerror(errno));
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        cg_info("waiting for another cgvlm fetch of %s %s to finish", m->name, m->version);
        if (flock(fd, LOCK_EX) != 0) {
            rc = cg_err(CG_EFAIL, "cannot lock '%s': %s", path, strerror(errno));
            close(fd);
            goto out;
        }
    }
    *fd_out = fd;
out:
    free(path);
    return rc;
}

/* ---------- downloads ---------- */

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_WAITING, JOB_DONE, JOB_FAILED };
enum job_why { WHY_NONE, WHY_TOO_LARGE, WHY_BAD_RANGE, WHY_IO };

typedef struct fetch_run fetch_run;

/* The hasher of a large file. libcurl hands the body over in pieces of at most 16 KiB
 * (CURL_MAX_WRITE_SIZE); on_body writes each piece to the .part as it comes and copies it into a
 * slab; each full slab goes to the hasher thread through a ring of FETCH_SLABS, so hashing
 * overlaps receiving, and the hasher reads the bytes from memory rather than from the .part.
 * The receiver waits only when the hasher is FETCH_SLABS slabs behind. While the thread runs it
 * owns the job's `sha`.
 *
 * The pieces are written as they come, not gathered into larger writes: on this project's
 * virtual machines (free page reporting to the host) a write(2) of 64 KiB or more makes the page
 * cache allocate large folios from memory the host has taken back, and such writes cost 3-10x
 * more system time than 16 KiB ones (docs/FETCH.md, "Throughput"). */
typedef struct {
    uint8_t *slab[FETCH_SLABS];
    size_t len[FETCH_SLABS];
    size_t fill;                  /* bytes in slab[head % FETCH_SLABS], the one being filled */
    unsigned head, tail;          /* slabs handed over / hashed (guarded by mu) */
    int stop;                     /* guarded by mu */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_free;
    cg_sha256 *sha;
} fetch_pipe;

typedef struct {
    const manifest_file *f;
    fetch_run *run;
    char *final_path, *part_path;
    enum job_state state;
    int attempts;
    int restarted_fresh;   /* a resumed download failed its checksum and started over once */
    int was_resumed;
    double not_before;     /* JOB_WAITING: when the next attempt may start */
    CURL *easy;
    int fd;
    cg_sha256 sha;         /* of the .part's bytes [0, got) */
    uint64_t offset;       /* bytes already in the .part when this attempt started */
    uint64_t got;          /* bytes in the .part now */
    int body_started;
    int have_content_range;
    uint64_t content_range_start;
    enum job_why why;
    char range[32];
    char errbuf[CURL_ERROR_SIZE];
    char location[512];    /* the last Location header (for a refused redirect's message) */
    char *error;           /* why it failed (last attempt) */
    fetch_pipe *pipe;      /* large files, while their body streams in */
} fetch_job;

struct fetch_run {
    const fetch_opts *o;
    const manifest *m;
    fetch_stats *st;
    CURLM *multi;
    fetch_job *jobs;
    size_t n_jobs, next_queued, running, waiting, failed;
    uint64_t done_bytes;   /* bytes of files finished (cache or download) */
    int show_progress;
    int hash_thread;       /* large files hashed by a second thread (a core is idle) */
    double t0, last_draw;
};

static size_t on_header(char *buf, size_t sz, size_t nm, void *ud) {
    fetch_job *j = ud;
    size_t n = sz * nm;
    if (n >= 5 && !strncmp(buf, "HTTP/", 5)) {
        j->have_content_range = 0; /* a new response (after a redirect or a 100) */
    } else if (n > 14 && !strncasecmp(buf, "content-range:", 14)) {
        char tmp[128];
        size_t k = n < sizeof tmp - 1 ? n : sizeof tmp - 1;
        memcpy(tmp, buf, k);
        tmp[k] = 0;
        unsigned long long start;
        if (sscanf(tmp + 14, " bytes %llu-", &start) == 1) {
            j->have_content_range = 1;
            j->content_range_start = start;
        }
    } else if (n > 9 && !strncasecmp(buf, "location:", 9)) {
        const char *v = buf + 9;
        size_t len = n - 9;
        while (len && (*v == ' ' || *v == '\t')) v++, len--;
        while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ')) len--;
        if (len >= sizeof j->location) len = sizeof j->location - 1;
        memcpy(j->location, v, len);
        j->location[len] = 0;
    }
    return n;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Restarts the .part from byte 0 (the server ignored our Range). */
static int part_truncate(fetch_job *j) {
    if (ftruncate(j->fd, 0) != 0 || lseek(j->fd, 0, SEEK_SET) != 0) return -1;
    cg_sha256_init(&j->sha);
    j->offset = j->got = 0;
    j->was_resumed = 0;
    return 0;
}

static void *pipe_main(void *arg) {
    fetch_pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->tail == p->head && !p->stop) pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->tail == p->head) break; /* stopped and drained */
        unsigned i = p->tail % FETCH_SLABS;
        pthread_mutex_unlock(&p->mu);
        cg_sha256_update(p->sha, p->slab[i], p->len[i]);
        pthread_mutex_lock(&p->mu);
        p->tail++;
        pthread_cond_signal(&p->cv_free);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pipe_start(fetch_job *j) {
    fetch_pipe *p = cg_calloc(1, sizeof *p);
    for (int i = 0; i < FETCH_SLABS; i++) p->slab[i] = cg_malloc(FETCH_SLAB);
    p->sha = &j->sha;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_free, NULL);
    if (pthread_create(&p->thread, NULL, pipe_main, p) != 0) { /* no thread: on_body hashes inline */
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv_work);
        pthread_cond_destroy(&p->cv_free);
        for (int i = 0; i < FETCH_SLABS; i++) free(p->slab[i]);
        free(p);
        return;
    }
    j->pipe = p;
}

/* Hands the slab being filled to the hasher, waiting for a free one when the ring is full. */
static void pipe_flush(fetch_pipe *p) {
    if (!p->fill) return;
    p->len[p->head % FETCH_SLABS] = p->fill;
    p->fill = 0;
    pthread_mutex_lock(&p->mu);
    p->head++;
    pthread_cond_signal(&p->cv_work);
    while (p->head - p->tail == FETCH_SLABS) pthread_cond_wait(&p->cv_free, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* Hashes `n` bytes of the body: inline, or through the hasher thread. */
static void job_hash(fetch_job *j, const char *data, size_t n) {
    fetch_pipe *p = j->pipe;
    if (!p) {
        cg_sha256_update(&j->sha, data, n);
        return;
    }
    for (size_t done = 0; done < n;) {
        size_t k = FETCH_SLAB - p->fill < n - done ? FETCH_SLAB - p->fill : n - done;
        memcpy(p->slab[p->head % FETCH_SLABS] + p->fill, data + done, k);
        p->fill += k, done += k;
        if (p->fill == FETCH_SLAB) pipe_flush(p);
    }
}

/* Waits for the hasher to hash everything received; `sha` is the job's again. */
static void pipe_stop(fetch_job *j) {
    fetch_pipe *p = j->pipe;
    if (!p) return;
    pipe_flush(p);
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_free);
    for (int i = 0; i < FETCH_SLABS; i++) free(p->slab[i]);
    free(p);
    j->pipe = NULL;
}

static size_t on_body(char *data, size_t sz, size_t nm, void *ud) {
    fetch_job *j = ud;
    size_t n = sz * nm;
    if (!j->body_started) {
        j->body_started = 1;
        if (j->offset > 0) {
            long code = 0;
            curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &code);
            if (code == 200) {
                /* the server ignored Range and sends the whole file: start over */
                if (part_truncate(j) != 0) {
                    j->why = WHY_IO;
                    return 0;
                }
            } else if (!j->have_content_range || j->content_range_start != j->offset) {
                j->why = WHY_BAD_RANGE;
                return 0;
            }
        }
        if (j->f->size >= FETCH_PIPE_MIN && j->run->hash_thread) pipe_start(j);
    }
    if (j->got + n > (uint64_t)j->f->size) {
        j->why = WHY_TOO_LARGE;
        return 0;
    }
    if (write_all(j->fd, data, n) != 0) {
        j->why = WHY_IO;
        free(j->error);
        j->error = cg_fmt("cannot write '%s': %s", j->part_path, strerror(errno));
        return 0;
    }
    job_hash(j, data, n);
    j->got += n;
    j->run->st->received += n;
    return n;
}

static void job_fail(fetch_run *r, fetch_job *j, char *why, int delete_part) {
    if (j->fd >= 0) close(j->fd);
    j->fd = -1;
    if (delete_part || j->got == 0) unlink(j->part_path); /* an empty .part tells nothing */
    free(j->error);
    j->error = cg_fmt("cannot fetch '%s' from '%s': %s", j->f->path, j->f->url, why);
    free(why);
    j->state = JOB_FAILED;
    r->failed++;
}

/* After a failed attempt: wait and try again, or give up when the attempts are spent. */
static void job_retry(fetch_run *r, fetch_job *j, char *why) {
    if (j->attempts > r->o->retries) {
        char *w = cg_fmt("%s (gave up after %d attempts; run the same command again to resume)", why,
                         j->attempts);
        free(why);
        job_fail(r, j, w, 0);
        return;
    }
    if (j->fd >= 0) close(j->fd);
    j->fd = -1;
    free(j->error);
    j->error = why;
    j->state = JOB_WAITING;
    j->not_before = cg_mono_time() + backoff_delay(r->o, j->attempts, jitter_rng());
    r->waiting++;
}

static void job_done(fetch_run *r, fetch_job *j) {
    close(j->fd);
    j->fd = -1;
    if (rename(j->part_path, j->final_path) != 0) {
        job_fail(r, j, cg_fmt("cannot rename into '%s': %s", j->final_path, strerror(errno)), 1);
        return;
    }
    j->state = JOB_DONE;
    r->st->downloaded++;
    r->st->resumed += (size_t)j->was_resumed;
    r->done_bytes += (uint64_t)j->f->size;
}

/* Opens the .part and positions it: resume what is there (http/https), else start empty. */
static int job_open_part(fetch_job *j) {
    j->fd = open(j->part_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (j->fd < 0) return -1;
    struct stat st;
    if (fstat(j->fd, &st) != 0) return -1;
    uint64_t have = (uint64_t)st.st_size;
    int is_file = !strncasecmp(j->f->url, "file:", 5);
    cg_sha256_init(&j->sha);
    j->offset = j->got = 0;
    if (have > (uint64_t)j->f->size || is_file || have == 0) {
        if (have && ftruncate(j->fd, 0) != 0) return -1;
        return 0;
    }
    /* hash what is already there, so the final hash covers the whole file */
    uint8_t *chunk = cg_malloc(FETCH_CHUNK);
    uint64_t pos = 0;
    while (pos < have) {
        ssize_t n = pread(j->fd, chunk, FETCH_CHUNK, (off_t)pos);
        if (n <= 0) break;
        cg_sha256_update(&j->sha, chunk, (size_t)n);
        pos += (uint64_t)n;
    }
    free(chunk);
    if (pos < have) return -1;
    if (lseek(j->fd, (off_t)have, SEEK_SET) < 0) return -1;
    j->offset = j->got = have;
    return 0;
}

/* Checks the complete .part against the manifest: done, or why not. */
static void job_verify(fetch_run *r, fetch_job *j) {
    uint8_t d[32];
    char hex[65];
    cg_sha256_final(&j->sha, d);
    cg_sha256_to_hex(d, hex);
    if (!strcmp(hex, j->f->sha256)) {
        job_done(r, j);
        return;
    }
    /* a resumed download may have joined two versions of the file: start over once */
    if (j->was_resumed && !j->restarted_fresh) {
        j->restarted_fresh = 1;
        unlink(j->part_path);
        job_retry(r, j, cg_fmt("checksum mismatch after resuming (got %.12s…); starting over", hex));
        return;
    }
    job_fail(r, j,
             cg_fmt("checksum mismatch: got sha256 %s, the manifest says %s; the server's file differs from the manifest",
                    hex, j->f->sha256),
             1);
}

static void job_start(fetch_run *r, fetch_job *j) {
    char *dir = cg_strdup(j->final_path);
    *strrchr(dir, '/') = 0;
    int rc = cg_mkdir_p(dir);
    free(dir);
    if (rc) {
        job_fail(r, j, cg_strdup(cg_errmsg()), 0);
        return;
    }
    j->attempts++;
    if (j->attempts > 1) r->st->retries++;
    j->why = WHY_NONE;
    j->body_started = j->have_content_range = 0;
    j->location[0] = 0;
    if (job_open_part(j) != 0) {
        job_fail(r, j, cg_fmt("cannot use '%s': %s", j->part_path, strerror(errno)), 0);
        return;
    }
    if (j->offset > 0) j->was_resumed = 1;
    /* large files: reserve the rest of the file's blocks now (the size stays what was received).
     * The writes then skip ext4's delayed allocation: ~0.08 CPU s less per GiB. Best effort. */
    if (j->f->size >= FETCH_PIPE_MIN && (uint64_t)j->f->size > j->offset)
        (void)fallocate(j->fd, FALLOC_FL_KEEP_SIZE, (off_t)j->offset, (off_t)((uint64_t)j->f->size - j->offset));
    if (j->offset == (uint64_t)j->f->size && j->offset > 0) { /* complete but never renamed */
        job_verify(r, j);
        return;
    }
    j->easy = curl_easy_init();
    if (!j->easy) {
        job_fail(r, j, cg_strdup("cannot create a curl handle"), 0);
        return;
    }
    setup_easy(j->easy, j->f->url, r->o, j->errbuf);
    curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(j->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(j->easy, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
    if (j->f->size > 0) curl_easy_setopt(j->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)j->f->size);
    /* large files: fewer, larger reads from the socket (less system time per byte) */
    if (j->f->size >= FETCH_PIPE_MIN) curl_easy_setopt(j->easy, CURLOPT_BUFFERSIZE, FETCH_RECV_BUFFER);
    if (j->offset > 0) {
        snprintf(j->range, sizeof j->range, "%llu-", (unsigned long long)j->offset);
        curl_easy_setopt(j->easy, CURLOPT_RANGE, j->range);
    }
    curl_multi_add_handle(r->multi, j->easy);
    j->state = JOB_RUNNING;
    r->running++;
}

static void job_finish(fetch_run *r, fetch_job *j, CURLcode res) {
    pipe_stop(j);
    long code = 0;
    curl_off_t clen = -1; /* the body length the server announced, -1 when it did not */
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(j->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
    char *why = NULL;
    if (res != CURLE_OK && j->why == WHY_NONE && res != CURLE_FILESIZE_EXCEEDED)
        why = describe_failure(j->easy, res, code, j->errbuf, j->location);
    int can_retry = retryable(res, code);
    curl_multi_remove_handle(r->multi, j->easy);
    curl_easy_cleanup(j->easy);
    j->easy = NULL;
    r->running--;
    if (j->why == WHY_IO) { /* our side failed (disk full, unreadable .part): retrying won't help */
        job_fail(r, j, cg_strdup(j->error ? j->error : "cannot write the partial file"), 0);
        return;
    }
    if (res == CURLE_OK) {
        if (j->got < (uint64_t)j->f->size) {
            char *w = cg_fmt("the transfer ended after %llu of the %lld bytes the manifest declares",
                             (unsigned long long)j->got, (long long)j->f->size);
            if (clen >= 0) /* a complete response, just shorter: the file is not the manifest's */
                job_fail(r, j, w, 1);
            else
                job_retry(r, j, w);
            return;
        }
        job_verify(r, j);
        return;
    }
    if (j->why == WHY_TOO_LARGE || res == CURLE_FILESIZE_EXCEEDED) {
        job_fail(r, j, cg_fmt("the server sent more than the %lld bytes the manifest declares",
                              (long long)j->f->size), 1);
    } else if (j->why == WHY_BAD_RANGE) {
        unlink(j->part_path);
        job_retry(r, j, cg_strdup("the server answered the resume request with the wrong range; starting over"));
    } else if (res == CURLE_HTTP_RETURNED_ERROR && code == 416) {
        unlink(j->part_path); /* our .part does not fit the server's file */
        job_retry(r, j, why);
    } else if (can_retry) {
        job_retry(r, j, why);
    } else {
        job_fail(r, j, why, 0);
    }
}

static void fmt_mb(char *buf, size_t cap, uint64_t bytes) {
    snprintf(buf, cap, "%.1f MB", (double)bytes / 1e6);
}

static void draw_progress(fetch_run *r, int final) {
    if (!r->show_progress) return;
    double now = cg_mono_time();
    if (!final && now - r->last_draw < 0.1) return;
    r->last_draw = now;
    uint64_t cur = r->done_bytes;
    size_t done_files = r->st->from_cache + r->st->downloaded;
    for (size_t i = 0; i < r->n_jobs; i++)
        if (r->jobs[i].state == JOB_RUNNING || r->jobs[i].state == JOB_WAITING) cur += r->jobs[i].got;
    uint64_t total = (uint64_t)r->m->total_size;
    double frac = total ? (double)cur / (double)total : 1.0;
    if (frac > 1) frac = 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    double dt = now - r->t0;
    char a[32], b[32];
    fmt_mb(a, sizeof a, cur);
    fmt_mb(b, sizeof b, total);
    fprintf(stderr, "\r\033[K%s %s [%s] %3d%% %s / %s %6.1f MB/s %zu/%zu files", r->m->name,
            r->m->version, bar, (int)(frac * 100), a, b,
            dt > 0 ? (double)r->st->received / 1e6 / dt : 0.0, done_files, r->n_jobs);
    if (final) fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

/* Runs every queued job to done or failed. */
static int run_jobs(fetch_run *r) {
    int rc = CG_OK;
    r->multi = curl_multi_init();
    if (!r->multi) return cg_err(CG_EFAIL, "cannot create a curl multi handle");
    curl_multi_setopt(r->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)r->o->jobs);
    for (;;) {
        double now = cg_mono_time(), next_wake = now + 0.1;
        /* start what may start: waiting retries whose backoff elapsed, then queued files */
        for (size_t i = 0; r->waiting && i < r->n_jobs && r->running < (size_t)r->o->jobs; i++) {
            fetch_job *j = &r->jobs[i];
            if (j->state != JOB_WAITING) continue;
            if (j->not_before <= now) {
                r->waiting--;
                job_start(r, j);
            } else if (j->not_before < next_wake) {
                next_wake = j->not_before;
            }
        }
        while (r->running < (size_t)r->o->jobs && r->next_queued < r->n_jobs) {
            fetch_job *j = &r->jobs[r->next_queued++];
            if (j->state == JOB_QUEUED) job_start(r, j);
        }
        if (r->running == 0 && r->waiting == 0 && r->next_queued >= r->n_jobs) break;
        int still = 0;
        CURLMcode mc = curl_multi_perform(r->multi, &still);
        if (mc != CURLM_OK) {
            rc = cg_err(CG_EFAIL, "curl: %s", curl_multi_strerror(mc));
            break;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(r->multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            fetch_job *j = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            job_finish(r, j, msg->data.result);
        }
        draw_progress(r, 0);
        int wait_ms = (int)((next_wake - cg_mono_time()) * 1000);
        if (wait_ms < 0) wait_ms = 0;
        if (still || r->waiting) curl_multi_poll(r->multi, NULL, 0, wait_ms, NULL);
    }
    draw_progress(r, 1);
    /* an error above leaves transfers in flight: close them, keeping their .part files */
    for (size_t i = 0; i < r->n_jobs; i++)
        if (r->jobs[i].easy) {
            pipe_stop(&r->jobs[i]);
            curl_multi_remove_handle(r->multi, r->jobs[i].easy);
            curl_easy_cleanup(r->jobs[i].easy);
            r->jobs[i].easy = NULL;
        }
    curl_multi_cleanup(r->multi);
    r->multi = NULL;
    return rc;
}

/* Can a hasher thread run beside the receiver? It costs one memcpy of the body (~0.05 CPU s per
 * GiB) and overlaps hashing with receiving; even on a busy machine the two threads finished
 * sooner than one hashing inline (docs/FETCH.md, "Throughput"), so only one CPU rules it out. */
static int second_cpu(void) { return sysconf(_SC_NPROCESSORS_ONLN) > 1; }

/* CG_EUSER naming the first few missing files, for --offline. */
static int report_missing(const manifest *m, const char *dir, const size_t *missing, size_t n) {
    cg_buf b;
    cg_buf_init(&b);
    for (size_t i = 0; i < n && i < 5; i++)
        cg_buf_addf(&b, "%s'%s'", i ? ", " : "", m->files[missing[i]].path);
    if (n > 5) cg_buf_addf(&b, " and %zu more", n - 5);
    int rc = cg_err(CG_EUSER,
                    "offline: %zu of %zu files of %s %s are missing or damaged in the cache '%s': %s; run 'cgvlm fetch %s@%s' with network access first",
                    n, m->n_files, m->name, m->version, dir, b.data ? b.data : "", m->name, m->version);
    cg_buf_free(&b);
    return rc;
}

static int check_opts(const fetch_opts *o) {
    if (o->jobs < 1 || o->jobs > 256) return cg_err(CG_EUSER, "--jobs must be in 1..256, not %d", o->jobs);
    if (!(o->timeout_s > 0)) return cg_err(CG_EUSER, "--timeout must be positive");
    if (o->retries < 0) return cg_err(CG_EUSER, "--retries must not be negative");
    if (o->backoff_s < 0) return cg_err(CG_EUSER, "the retry delay must not be negative");
    return CG_OK;
}

int fetch_benchmark_stats(const char *ref, const fetch_opts *opts, char **local_dir_out,
                          fetch_stats *stats_out) {
    fetch_opts defaults;
    fetch_opts_init(&defaults);
    const fetch_opts *o = opts ? opts : &defaults;
    fetch_stats st = {0};
    manifest m = {0};
    fetch_run r = {0};
    char *cache = NULL, *dir = NULL;
    size_t *missing = NULL, n_missing = 0;
    int lock_fd = -1, rc;
    double t0 = cg_mono_time();
    if ((rc = check_opts(o)) || (rc = curl_ready())) return rc;
    if (o->cache_dir)
        cache = cg_strdup(o->cache_dir);
    else if ((rc = fetch_default_cache_dir(&cache)))
        return rc;
    if (cg_file_exists(cache) && !cg_is_dir(cache)) {
        rc = cg_err(CG_EUSER, "the cache '%s' exists and is not a directory; pass --cache DIR", cache);
        goto out;
    }
    if ((rc = load_manifest(ref, o, cache, &m))) goto out;
    dir = cg_fmt("%s/%s/%s", cache, m.name, m.version);
    st.files = m.n_files;
    st.bytes = (uint64_t)m.total_size;
    if (!o->offline) {
        if ((rc = cg_mkdir_p(dir)) || (rc = lock_version(cache, &m, &lock_fd)) ||
            (rc = save_manifest(cache, &m))) {
            cg_err_wrap(rc, "cache '%s'", cache);
            goto out;
        }
    }
    r.o = o;
    r.m = &m;
    r.st = &st;
    r.n_jobs = m.n_files;
    r.jobs = cg_calloc(m.n_files ? m.n_files : 1, sizeof *r.jobs);
    r.t0 = t0;
    r.show_progress = !cg_quiet && (o->progress == 1 || (o->progress < 0 && cg_stderr_is_tty()));
    r.hash_thread = o->hash_thread < 0 ? second_cpu() : o->hash_thread;
    missing = cg_calloc(m.n_files ? m.n_files : 1, sizeof *missing);
    for (size_t i = 0; i < m.n_files; i++) {
        fetch_job *j = &r.jobs[i];
        j->f = &m.files[i];
        j->run = &r;
        j->fd = -1;
        j->final_path = cg_path_join(dir, m.files[i].path);
        j->part_path = cg_fmt("%s.part", j->final_path);
        if (cached_ok(j->final_path, j->f)) {
            j->state = JOB_DONE;
            st.from_cache++;
            r.done_bytes += (uint64_t)j->f->size;
        } else {
            /* a damaged copy must not sit under the final name, even if the download fails */
            if (!o->offline) unlink(j->final_path);
            j->state = JOB_QUEUED;
            missing[n_missing++] = i;
        }
    }
    if (o->offline) {
        if (n_missing) rc = report_missing(&m, dir, missing, n_missing);
        goto out;
    }
    if (n_missing && (rc = run_jobs(&r))) goto out;
    if (r.failed) {
        size_t shown = 0;
        const char *first = NULL;
        for (size_t i = 0; i < r.n_jobs; i++) {
            if (r.jobs[i].state != JOB_FAILED) continue;
            if (!first) first = r.jobs[i].error;
            else if (shown++ < 4) cg_warn("%s", r.jobs[i].error);
        }
        if (r.failed > 1)
            rc = cg_err(CG_EFAIL, "%zu of %zu files of %s %s failed; first: %s; run the same command again to resume",
                        r.failed, m.n_files, m.name, m.version, first);
        else
            rc = cg_err(CG_EFAIL, "%s", first);
    }
out:
    st.seconds = cg_mono_time() - t0;
    if (stats_out) *stats_out = st;
    if (rc == CG_OK && local_dir_out) {
        *local_dir_out = dir;
        dir = NULL;
    }
    for (size_t i = 0; i < r.n_jobs; i++) {
        if (r.jobs[i].fd >= 0) close(r.jobs[i].fd);
        free(r.jobs[i].final_path);
        free(r.jobs[i].part_path);
        free(r.jobs[i].error);
    }
    free(r.jobs);
    free(missing);
    if (lock_fd >= 0) close(lock_fd);
    manifest_free(&m);
    free(cache);
    free(dir);
    return rc;
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int fetch_list(const fetch_opts *opts, FILE *out) {
    char *cache = NULL, *pattern = NULL;
    int rc = CG_OK;
    glob_t g = {0};
    if (opts && opts->cache_dir)
        cache = cg_strdup(opts->cache_dir);
    else if ((rc = fetch_default_cache_dir(&cache)))
        return rc;
    pattern = cg_fmt("%s/*/.manifest-*.json", cache);
    if (glob(pattern, 0, NULL, &g) != 0) g.gl_pathc = 0;
    if (g.gl_pathc) qsort(g.gl_pathv, g.gl_pathc, sizeof *g.gl_pathv, cmp_cstr);
    else cg_info("the cache '%s' holds no benchmarks yet; fetch one with 'cgvlm fetch MANIFEST'", cache);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        manifest m;
        if (manifest_load_file(g.gl_pathv[i], NULL, &m) != CG_OK) {
            cg_warn("skipping the damaged cached manifest '%s': %s", g.gl_pathv[i], cg_errmsg());
            continue;
        }
        char *latest_path = cg_fmt("%s/%s/.latest", cache, m.name), *latest = NULL;
        int is_latest = cg_read_file(latest_path, &latest, NULL) == CG_OK &&
                        !strncmp(latest, m.version, strlen(m.version)) && latest[strlen(m.version)] == '\n';
        fprintf(out, "%s %s %zu %.1f %s/%s/%s%s\n", m.name, m.version, m.n_files, (double)m.total_size / 1e6,
                cache, m.name, m.version, is_latest ? " latest" : "");
        free(latest_path);
        free(latest);
        manifest_free(&m);
    }
    cg_err_clear();
    if (g.gl_pathv) globfree(&g);
    free(pattern);
    free(cache);
    return rc;
}

int fetch_benchmark(const char *ref, const fetch_opts *opts, char **local_dir_out) {
    return fetch_benchmark_stats(ref, opts, local_dir_out, NULL);
}

char *fetch_summary(const fetch_stats *s) {
    cg_buf b;
    cg_buf_init(&b);
    char mb[32];
    fmt_mb(mb, sizeof mb, s->bytes);
    cg_buf_addf(&b, "fetched %zu files (%s) in %.*f s, %zu from cache", s->files, mb,
                s->seconds < 0.1 ? 2 : 1, s->seconds, s->from_cache);
    if (s->resumed) cg_buf_addf(&b, ", %zu resumed", s->resumed);
    if (s->retries) cg_buf_addf(&b, ", %zu retries", s->retries);
    return cg_buf_steal(&b);
}
