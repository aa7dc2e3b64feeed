/* fetch_bench.c: `cgvlm bench fetch`: download throughput of the fetcher against the curl
 * command-line tool, and the bytes re-sent after a connection drop.
 *
 * The file (1 GiB of pseudo-random bytes by default) is served over loopback by a small HTTP
 * server inside this process (a thread per connection, the body sent with sendfile(2), Range
 * supported), so the server is never the bottleneck the way `python3 -m http.server` would be.
 * Both clients fetch from the same server into the same temporary directory, alternately, and
 * the best of --repeat runs is kept for each, with the least CPU time each used (less sensitive
 * to other load on the machine than the wall time). The drop run serves half the file, cuts the
 * connection, and counts what the server sends in total: re-sent = sent - size.
 */
#define _GNU_SOURCE
#include "cli/commands.h"
#include "evaluators/fetch.h"
#include "util/fs.h"
#include "util/rng.h"
#include "util/sha256.h"
#include "util/util.h"

#include <arpa/inet.h>
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
#include <sys/sendfile.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------- the loopback server ---------- */

typedef struct {
    int lfd, port;
    const char *path;         /* the file served at /file and /drop */
    int64_t size;
    atomic_ullong drop_sent;  /* body bytes sent for /drop */
    atomic_int drops_left;    /* /drop cuts the connection at half the file this many times */
    atomic_ullong cpu_ns;     /* CPU time the server spent sending (to subtract from ours) */
    pthread_t accept_thread;
} bench_server;

typedef struct {
    bench_server *s;
    int fd;
} bench_conn;

static uint64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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
        uint64_t cpu0 = thread_cpu_ns();
        while (off < stop) {
            ssize_t n = sendfile(c.fd, file, &off, (size_t)(stop - off));
            if (n <= 0) break;
            if (drop) atomic_fetch_add(&c.s->drop_sent, (unsigned long long)n);
        }
        atomic_fetch_add(&c.s->cpu_ns, thread_cpu_ns() - cpu0);
        if (off < stop) goto out;
        if (stop < c.s->size) goto out; /* the drop: close mid-body */
    }
out:
    if (file >= 0) close(file);
    close(c.fd);
    return NULL;
}

static void *bench_accept_main(void *arg) {
    bench_server *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return NULL; /* the listening socket was shut down */
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

static int bench_server_start(bench_server *s) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 64) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0)
        return cg_err(CG_EFAIL, "bench: cannot listen on 127.0.0.1: %s", strerror(errno));
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->accept_thread, NULL, bench_accept_main, s) != 0)
        return cg_err(CG_EFAIL, "bench: cannot start the server thread");
    return CG_OK;
}

static void bench_server_stop(bench_server *s) {
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->accept_thread, NULL);
    close(s->lfd);
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
 * it used (this process's, less the server thread's). */
static int time_cgvlm(bench_server *s, const char *manifest, const char *cache, int hash_thread, double *secs,
                      double *cpu, fetch_stats *st) {
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
    unsigned long long server0 = atomic_load(&s->cpu_ns);
    double t0 = cg_mono_time();
    int rc = fetch_benchmark_stats(manifest, &o, &dir, st);
    *secs = cg_mono_time() - t0;
    getrusage(RUSAGE_SELF, &r1);
    *cpu = rusage_s(&r1) - rusage_s(&r0) - (double)(atomic_load(&s->cpu_ns) - server0) / 1e9;
    free(dir);
    return rc;
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
    int json = 0, size_mb = 1024, repeat = 3, hash_thread = -1, rc = CG_OK, c;
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
                   "Serves an N MiB file (default 1024) over loopback from an in-process sendfile(2)\n"
                   "server and downloads it with cgvlm's fetcher (sha256 verified) and with the curl\n"
                   "command-line tool, alternately; reports the best of --repeat runs (default 3)\n"
                   "of each in MB/s (10^6 bytes) and CPU seconds per GiB, and the bytes re-sent after\n"
                   "a drop at 50 %%. --hash-thread: hash large files in a second thread (auto: when\n"
                   "the load average leaves a core idle).\n");
            return CG_OK;
        default:
            return cg_report(cg_err(CG_EUSER, "bench fetch: unknown or incomplete option '%s'; see 'cgvlm bench fetch --help'",
                                    argv[optind - 1]));
        }
        if (rc) return cg_report(rc);
    }
    if (optind != argc)
        return cg_report(cg_err(CG_EUSER, "bench fetch: unexpected argument '%s'", argv[optind]));
    signal(SIGPIPE, SIG_IGN); /* the drop closes sockets under sendfile */
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
    bench_server s = {.path = src, .size = size, .lfd = -1};
    int server_up = 0;
    double best_cg = 1e30, best_curl = 1e30, cpu_cg = 1e30, cpu_curl = 1e30;
    int have_curl = 1;
    fetch_stats st;
    if (!cg_quiet && !json) cg_info("bench fetch: writing a %d MiB test file in %s", size_mb, dir);
    if ((rc = write_test_file(src, size, hex)) || (rc = bench_server_start(&s))) goto out;
    server_up = 1;
    url = cg_fmt("http://127.0.0.1:%d/file", s.port);
    url_drop = cg_fmt("http://127.0.0.1:%d/drop", s.port);
    if ((rc = write_manifest(man, url, hex, size)) || (rc = write_manifest(man_drop, url_drop, hex, size)))
        goto out;
    for (int i = 0; i < repeat; i++) {
        double t, cpu = 0;
        if ((rc = time_cgvlm(&s, man, cache, hash_thread, &t, &cpu, &st))) goto out;
        if (t < best_cg) best_cg = t;
        if (cpu < cpu_cg) cpu_cg = cpu;
        cg_rm_rf(cache);
        if (have_curl) {
            t = time_curl(url, curl_out, &cpu);
            if (t < 0) have_curl = 0;
            else if (t < best_curl) best_curl = t;
            if (t >= 0 && cpu < cpu_curl) cpu_curl = cpu;
            unlink(curl_out);
        }
    }
    atomic_store(&s.drops_left, 1);
    double t_drop, cpu_drop;
    if ((rc = time_cgvlm(&s, man_drop, cache, hash_thread, &t_drop, &cpu_drop, &st))) goto out;
    long long resent = (long long)atomic_load(&s.drop_sent) - (long long)size;
    double gib = (double)size / (double)(1 << 30);
    double mbps = (double)size / 1e6 / best_cg, curl_mbps = have_curl ? (double)size / 1e6 / best_curl : 0;
    if (json) {
        char curl_s[32] = "null", ratio_s[32] = "null", curl_cpu_s[32] = "null";
        if (have_curl) {
            snprintf(curl_s, sizeof curl_s, "%.1f", curl_mbps);
            snprintf(ratio_s, sizeof ratio_s, "%.3f", mbps / curl_mbps);
            snprintf(curl_cpu_s, sizeof curl_cpu_s, "%.3f", cpu_curl / gib);
        }
        printf("{\"bench\": \"fetch\", \"size_mb\": %d, \"mb_per_s\": %.1f, \"curl_mb_per_s\": %s, "
               "\"ratio\": %s, \"cpu_s_per_gib\": %.3f, \"curl_cpu_s_per_gib\": %s, \"resent_bytes\": %lld, "
               "\"resumed\": %zu, \"sha256_accelerated\": %d, \"hash_thread\": \"%s\", \"repeat\": %d, "
               "\"server\": \"in-process sendfile\"}\n",
               size_mb, mbps, curl_s, ratio_s, cpu_cg / gib, curl_cpu_s, resent, st.resumed,
               cg_sha256_accelerated(), hash_thread < 0 ? "auto" : hash_thread ? "on" : "off", repeat);
    } else {
        printf("cgvlm fetch   %8.1f MB/s  (best of %d, %d MiB, sha256 verified%s)\n", mbps, repeat, size_mb,
               cg_sha256_accelerated() ? ", SHA-NI" : "");
        printf("              %8.3f CPU s per GiB (least of %d)\n", cpu_cg / gib, repeat);
        if (have_curl)
            printf("curl          %8.1f MB/s  ratio %.2f, %.3f CPU s per GiB\n", curl_mbps, mbps / curl_mbps,
                   cpu_curl / gib);
        else
            printf("curl          (not found on PATH or failed)\n");
        printf("after a drop at 50 %%: %lld bytes re-sent beyond the file's size\n", resent);
    }
out:
    if (server_up) bench_server_stop(&s);
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
