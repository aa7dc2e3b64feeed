/* fetch_bench.c: `cgvlm bench fetch`: download throughput of the fetcher against the curl
 * command-line tool, and the bytes re-sent after a connection drop.
 *
 * The file (1 GiB of pseudo-random bytes by default) is served over loopback by a small HTTP
 * server in a child process (a thread per connection, the body sent with sendfile(2), Range
 * supported), so the server is never the bottleneck the way `python3 -m http.server` would be,
 * and neither client shares a process with it. Both clients fetch from the same server into the
 * same temporary directory (the fetcher through its cache: .part, sha256, rename; curl with -o),
 * --repeat rounds of one run each, the order swapped every round; each round's output is deleted
 * outside the timed part. The figures are medians with their range; the ratio is the median of
 * the rounds' ratios (the two runs of a round saw the same load). CPU time is each client's own
 * (getrusage for the in-process fetcher, wait4 for curl). The drop run serves half the file,
 * cuts the connection, and counts what the server sends in total: re-sent = sent - size.
 */
#define _GNU_SOURCE
#include "cli/commands.h"
#include "evaluators/fetch.h"
#include "util/fs.h"
#include "util/rng.h"
#include "util/sha256.h"
#include "util/util.h"
#include "util/ux_opt.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------- the loopback server ---------- */

/* Lives in memory shared with the server process: the counters are read by both; after the fork
 * only the bench writes the other fields, and the server reads none of them but path and size. */
typedef struct {
    int lfd, port;
    const char *path;         /* the file served at /file and /drop */
    int64_t size;
    atomic_ullong drop_sent;  /* body bytes sent for /drop */
    atomic_int drops_left;    /* /drop cuts the connection at half the file this many times */
    pid_t pid;                /* the server process */
} bench_server;

typedef struct {
    bench_server *s;
    int fd;
} bench_conn;

static double rusage_s(const struct rusage *ru) {
    return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
           (double)ru->ru_stime.tv_usec / 1e6;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Serves GET requests on one keep-alive connection until the client closes it. */
static void *bench_conn_main(void *arg) {
    bench_conn c = *(bench_conn *)arg;
    free(arg);
    int file = open(c.s->path, O_RDONLY);
    char req[8192];
    size_t have = 0;
    while (file >= 0) {
        char *end;
        while (!(end = memmem(req, have, "\r\n\r\n", 4))) {
            ssize_t n = recv(c.fd, req + have, sizeof req - 1 - have, 0);
            if (n <= 0 || have + (size_t)n >= sizeof req - 1) goto out;
            have += (size_t)n;
        }
        req[have] = 0;
        int drop = !strncmp(req, "GET /drop ", 10);
        int64_t start = 0;
        char *range = strcasestr(req, "\r\nRange: bytes=");
        if (range) start = strtoll(range + 15, NULL, 10);
        size_t used = (size_t)(end + 4 - req);
        memmove(req, req + used, have - used);
        have -= used;
        if (start < 0 || start >= c.s->size) goto out;
        char head[256];
        int hl = range ? snprintf(head, sizeof head,
                                  "HTTP/1.1 206 Partial Content\r\nContent-Length: %lld\r\n"
                                  "Content-Range: bytes %lld-%lld/%lld\r\n\r\n",
                                  (long long)(c.s->size - start), (long long)start,
                                  (long long)c.s->size - 1, (long long)c.s->size)
                       : snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\n\r\n",
                                  (long long)c.s->size);
        if (send_all(c.fd, head, (size_t)hl) != 0) goto out;
        int64_t stop = c.s->size;
        if (drop && atomic_fetch_sub(&c.s->drops_left, 1) > 0) stop = c.s->size / 2;
        off_t off = (off_t)start;
        while (off < stop) {
            ssize_t n = sendfile(c.fd, file, &off, (size_t)(stop - off));
            if (n <= 0) break;
            if (drop) atomic_fetch_add(&c.s->drop_sent, (unsigned long long)n);
        }
        if (off < stop) goto out;
        if (stop < c.s->size) goto out; /* the drop: close mid-body */
    }
out:
    if (file >= 0) close(file);
    close(c.fd);
    return NULL;
}

/* The server process's main loop; it ends when the bench kills it (or dies). */
static void bench_accept_main(bench_server *s, int lfd, pid_t bench) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != bench) return; /* the bench died before the line above */
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        bench_conn *c = cg_malloc(sizeof *c);
        c->s = s;
        c->fd = fd;
        pthread_t t;
        if (pthread_create(&t, NULL, bench_conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
}

/* Listens on a free loopback port and forks the server process (before this process has any
 * thread of its own). */
static int bench_server_start(bench_server *s) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 64) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0)
        return cg_err(CG_EFAIL, "bench: cannot listen on 127.0.0.1: %s", strerror(errno));
    s->port = ntohs(a.sin_port);
    fflush(NULL);
    pid_t bench = getpid(), pid = fork(); /* not into s->pid directly: the child would write 0 there too */
    if (pid < 0) return cg_err(CG_EFAIL, "bench: cannot start the server process: %s", strerror(errno));
    if (pid == 0) {
        bench_accept_main(s, s->lfd, bench);
        _exit(0);
    }
    s->pid = pid; /* the parent alone writes to s from here on */
    close(s->lfd);
    return CG_OK;
}

static void bench_server_stop(bench_server *s) {
    assert(s->pid > 0);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
}

/* ---------- the runs ---------- */

/* Writes `size` pseudo-random bytes to path and returns their sha256. */
static int write_test_file(const char *path, int64_t size, char hex[65]) {
    cg_afile af;
    int rc = cg_afile_open(&af, path);
    if (rc) return rc;
    cg_rng rng;
    cg_rng_seed(&rng, 2311);
    cg_sha256 sha;
    cg_sha256_init(&sha);
    static uint64_t chunk[1 << 17];
    for (int64_t done = 0; done < size;) {
        for (size_t i = 0; i < CG_ARRAY_LEN(chunk); i++) chunk[i] = cg_rng_u64(&rng);
        size_t n = size - done < (int64_t)sizeof chunk ? (size_t)(size - done) : sizeof chunk;
        cg_sha256_update(&sha, chunk, n);
        if (fwrite(chunk, 1, n, af.fp) != n) {
            cg_afile_abort(&af);
            return cg_err(CG_EFAIL, "bench: cannot write '%s': %s", path, strerror(errno));
        }
        done += (int64_t)n;
    }
    uint8_t d[32];
    cg_sha256_final(&sha, d);
    cg_sha256_to_hex(d, hex);
    return cg_afile_commit(&af);
}

/* Seconds the curl command-line tool takes to download url into out (and the CPU seconds it
 * used); < 0 when it failed. */
static double time_curl(const char *url, const char *out, double *cpu) {
    char *argv[] = {"curl", "-s", "-S", "-f", "-o", (char *)out, (char *)url, NULL};
    pid_t pid;
    unlink(out);
    double t0 = cg_mono_time();
    if (posix_spawnp(&pid, "curl", NULL, NULL, argv, environ) != 0) return -1;
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    *cpu = rusage_s(&ru);
    return cg_mono_time() - t0;
}

/* Seconds cgvlm's fetcher takes for the manifest (a fresh cache each time), and the CPU seconds
 * it used (this process's: the server is another). */
static int time_cgvlm(const char *manifest, const char *cache, int hash_thread, double *secs, double *cpu,
                      fetch_stats *st) {
    fetch_opts o;
    fetch_opts_init(&o);
    o.cache_dir = cache;
    o.progress = 0;
    o.backoff_s = 0.01;
    o.hash_thread = hash_thread;
    cg_rm_rf(cache);
    char *dir = NULL;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = cg_mono_time();
    int rc = fetch_benchmark_stats(manifest, &o, &dir, st);
    *secs = cg_mono_time() - t0;
    getrusage(RUSAGE_SELF, &r1);
    *cpu = rusage_s(&r1) - rusage_s(&r0);
    free(dir);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (sorted in place), and its least and greatest values (may be NULL). */
static double median_range(double *v, int n, double *lo, double *hi) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    if (lo) *lo = v[0];
    if (hi) *hi = v[n - 1];
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int write_manifest(const char *path, const char *url, const char *hex, int64_t size) {
    char *text = cg_fmt("{\"name\": \"bench\", \"version\": \"1\", \"format\": \"raw\", \"files\": "
                        "[{\"path\": \"file.bin\", \"url\": \"%s\", \"sha256\": \"%s\", \"size\": %lld}]}\n",
                        url, hex, (long long)size);
    int rc = cg_write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

int bench_fetch(int argc, char **argv) {
    static const struct option longopts[] = {{"json", no_argument, 0, 'j'},
                                             {"size-mb", required_argument, 0, 's'},
                                             {"repeat", required_argument, 0, 'r'},
                                             {"hash-thread", required_argument, 0, 't'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int json = 0, size_mb = 1024, repeat = 5, hash_thread = -1, rc = CG_OK, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 's': rc = cg_parse_int(optarg, "--size-mb", 1, 1 << 16, &size_mb); break;
        case 'r': rc = cg_parse_int(optarg, "--repeat", 1, 100, &repeat); break;
        case 't':
            if (!strcmp(optarg, "auto")) hash_thread = -1;
            else if (!strcmp(optarg, "on")) hash_thread = 1;
            else if (!strcmp(optarg, "off")) hash_thread = 0;
            else rc = cg_err(CG_EUSER, "--hash-thread must be auto, on or off, not '%s'", optarg);
            break;
        case 'h':
            printf("usage: cgvlm bench fetch [--json] [--size-mb N] [--repeat N] [--hash-thread auto|on|off]\n\n"
                   "Serves an N MiB file (default 1024) over loopback from a sendfile(2) server in a\n"
                   "child process and downloads it with cgvlm's fetcher (sha256 verified, renamed into\n"
                   "its cache) and with the curl command-line tool (curl -o), in --repeat rounds\n"
                   "(default 5) of one run each, the order swapped every round. Reports the median\n"
                   "and range of each in MB/s (10^6 bytes), the median of the rounds' ratios, the\n"
                   "median CPU seconds per GiB, the load average, and the bytes re-sent after a drop\n"
                   "at 50 %%. --hash-thread: hash files of 8 MiB and more in a second thread (auto:\n"
                   "when the machine has two CPUs or more).\n");
            return CG_OK;
        default:
            return cg_report(cg_opt_error("bench fetch", argv, longopts));
        }
        if (rc) return cg_report(rc);
    }
    if (optind != argc)
        return cg_report(cg_err(CG_EUSER, "bench fetch: unexpected argument '%s'", argv[optind]));
    signal(SIGPIPE, SIG_IGN);
    setenv("no_proxy", "127.0.0.1", 1); /* both clients talk to loopback directly */
    setenv("NO_PROXY", "127.0.0.1", 1);

    const char *tmpdir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *dir = cg_fmt("%s/cgvlm-bench-fetch-XXXXXX", tmpdir);
    if (!mkdtemp(dir)) {
        rc = cg_err(CG_EFAIL, "bench: cannot create a directory in '%s': %s", tmpdir, strerror(errno));
        free(dir);
        return cg_report(rc);
    }
    char *src = cg_path_join(dir, "source.bin"), *curl_out = cg_path_join(dir, "curl.out");
    char *cache = cg_path_join(dir, "cache"), *man = cg_path_join(dir, "manifest.json");
    char *man_drop = cg_path_join(dir, "manifest-drop.json"), *url = NULL, *url_drop = NULL;
    char hex[65];
    int64_t size = (int64_t)size_mb << 20;
    bench_server *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int server_up = 0;
    double *mb_cg = cg_calloc((size_t)repeat, sizeof(double)), *mb_curl = cg_calloc((size_t)repeat, sizeof(double));
    double *cpu_cg = cg_calloc((size_t)repeat, sizeof(double)), *cpu_curl = cg_calloc((size_t)repeat, sizeof(double));
    double *ratios = cg_calloc((size_t)repeat, sizeof(double)), load0[1] = {-1}, load1[1] = {-1};
    int have_curl = 1;
    fetch_stats st;
    if (s == MAP_FAILED) {
        s = NULL;
        rc = cg_err(CG_EFAIL, "bench: cannot map shared memory: %s", strerror(errno));
        goto out;
    }
    *s = (bench_server){.path = src, .size = size, .lfd = -1};
    if (!cg_quiet && !json) cg_info("bench fetch: writing a %d MiB test file in %s", size_mb, dir);
    if ((rc = write_test_file(src, size, hex)) || (rc = bench_server_start(s))) goto out;
    server_up = 1;
    url = cg_fmt("http://127.0.0.1:%d/file", s->port);
    url_drop = cg_fmt("http://127.0.0.1:%d/drop", s->port);
    if ((rc = write_manifest(man, url, hex, size)) || (rc = write_manifest(man_drop, url_drop, hex, size)))
        goto out;
    getloadavg(load0, 1);
    for (int i = 0; i < repeat; i++) {
        for (int k = 0; k < 2; k++) {
            double t, cpu = 0;
            if ((k == 0) == (i % 2 == 0)) { /* even rounds: the fetcher first; odd rounds: curl first */
                if ((rc = time_cgvlm(man, cache, hash_thread, &t, &cpu, &st))) goto out;
                cg_rm_rf(cache);
                mb_cg[i] = (double)size / 1e6 / t;
                cpu_cg[i] = cpu;
            } else if (have_curl) {
                t = time_curl(url, curl_out, &cpu);
                unlink(curl_out);
                if (t < 0) have_curl = 0;
                else mb_curl[i] = (double)size / 1e6 / t, cpu_curl[i] = cpu;
            }
        }
        if (have_curl) ratios[i] = mb_cg[i] / mb_curl[i];
    }
    getloadavg(load1, 1);
    atomic_store(&s->drops_left, 1);
    double t_drop, cpu_drop;
    if ((rc = time_cgvlm(man_drop, cache, hash_thread, &t_drop, &cpu_drop, &st))) goto out;
    long long resent = (long long)atomic_load(&s->drop_sent) - (long long)size;
    double gib = (double)size / (double)(1 << 30);
    double cg_lo, cg_hi, curl_lo = 0, curl_hi = 0, r_lo = 0, r_hi = 0;
    double mbps = median_range(mb_cg, repeat, &cg_lo, &cg_hi), cpu_med = median_range(cpu_cg, repeat, NULL, NULL);
    double curl_mbps = 0, ratio = 0, curl_cpu = 0;
    if (have_curl) {
        curl_mbps = median_range(mb_curl, repeat, &curl_lo, &curl_hi);
        ratio = median_range(ratios, repeat, &r_lo, &r_hi);
        curl_cpu = median_range(cpu_curl, repeat, NULL, NULL);
    }
    const char *ht = hash_thread < 0 ? "auto" : hash_thread ? "on" : "off";
    if (json) {
        char curl_s[96] = "null, \"curl_mb_per_s_range\": null", ratio_s[96] = "null, \"ratio_range\": null",
             curl_cpu_s[32] = "null";
        if (have_curl) {
            snprintf(curl_s, sizeof curl_s, "%.1f, \"curl_mb_per_s_range\": [%.1f, %.1f]", curl_mbps, curl_lo, curl_hi);
            snprintf(ratio_s, sizeof ratio_s, "%.3f, \"ratio_range\": [%.3f, %.3f]", ratio, r_lo, r_hi);
            snprintf(curl_cpu_s, sizeof curl_cpu_s, "%.3f", curl_cpu / gib);
        }
        printf("{\"bench\": \"fetch\", \"size_mb\": %d, \"mb_per_s\": %.1f, \"mb_per_s_range\": [%.1f, %.1f], "
               "\"curl_mb_per_s\": %s, \"ratio\": %s, \"cpu_s_per_gib\": %.3f, \"curl_cpu_s_per_gib\": %s, "
               "\"resent_bytes\": %lld, \"resumed\": %zu, \"sha256_accelerated\": %d, \"hash_thread\": \"%s\", "
               "\"repeat\": %d, \"load_avg\": [%.2f, %.2f], \"server\": \"sendfile, child process\"}\n",
               size_mb, mbps, cg_lo, cg_hi, curl_s, ratio_s, cpu_med / gib, curl_cpu_s, resent, st.resumed,
               cg_sha256_accelerated(), ht, repeat, load0[0], load1[0]);
    } else {
        printf("cgvlm fetch   %8.1f MB/s  (median of %d, %.1f-%.1f; %d MiB, sha256 verified%s, hash thread %s)\n",
               mbps, repeat, cg_lo, cg_hi, size_mb, cg_sha256_accelerated() ? ", SHA-NI" : "", ht);
        printf("              %8.3f CPU s per GiB (median)\n", cpu_med / gib);
        if (have_curl)
            printf("curl          %8.1f MB/s  (%.1f-%.1f), %.3f CPU s per GiB\n"
                   "ratio         %8.2f      (median of the rounds' ratios, %.2f-%.2f)\n",
                   curl_mbps, curl_lo, curl_hi, curl_cpu / gib, ratio, r_lo, r_hi);
        else
            printf("curl          (not found on PATH or failed)\n");
        printf("load average  %.2f before, %.2f after\n", load0[0], load1[0]);
        printf("after a drop at 50 %%: %lld bytes re-sent beyond the file's size\n", resent);
    }
out:
    if (server_up) bench_server_stop(s);
    if (s) munmap(s, sizeof *s);
    free(mb_cg);
    free(mb_curl);
    free(cpu_cg);
    free(cpu_curl);
    free(ratios);
    cg_rm_rf(dir);
    free(dir);
    free(src);
    free(curl_out);
    free(cache);
    free(man);
    free(man_drop);
    free(url);
    free(url_drop);
    return cg_report(rc);
}
