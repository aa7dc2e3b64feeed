/* util.c: the error channel, allocation wrappers, string buffers and strict parsers (see util.h). */
#include "util/util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char err_msg[2048];
int cg_quiet = 0;

int cg_err(int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return rc;
}

int cg_err_wrap(int rc, const char *fmt, ...) {
    char prefix[1024], old[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    size_t n = strlen(prefix);
    memcpy(err_msg, prefix, n + 1);
    if (old[0] && n + 2 < sizeof err_msg) {
        memcpy(err_msg + n, ": ", 3);
        size_t room = sizeof err_msg - n - 3;
        strncat(err_msg + n + 2, old, room);
    }
    return rc;
}

const char *cg_errmsg(void) { return err_msg[0] ? err_msg : "unknown error"; }
void cg_err_clear(void) { err_msg[0] = 0; }

int cg_report(int rc) {
    if (rc != CG_OK) fprintf(stderr, "cgvlm: error: %s\n", cg_errmsg());
    return rc;
}

void cg_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cgvlm: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cg_info(const char *fmt, ...) {
    if (cg_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static long alloc_fail_countdown = -1;

void cg_alloc_fail_after(long n) { alloc_fail_countdown = n; }

void *cg_try_malloc(size_t n) {
    if (alloc_fail_countdown >= 0 && alloc_fail_countdown-- == 0) return NULL;
    return malloc(n ? n : 1);
}

static void oom(size_t n) {
    fprintf(stderr, "cgvlm: error: out of memory allocating %zu bytes\n", n);
    abort();
}

void *cg_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *cg_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *cg_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *cg_strdup(const char *s) { return cg_strndup(s, strlen(s)); }

char *cg_strndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *d = cg_malloc(len + 1);
    memcpy(d, s, len);
    d[len] = 0;
    return d;
}

void cg_buf_init(cg_buf *b) { memset(b, 0, sizeof *b); }
void cg_buf_free(cg_buf *b) { free(b->data); cg_buf_init(b); }

static void buf_reserve(cg_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = cg_realloc(b->data, cap);
    b->cap = cap;
}

void cg_buf_add(cg_buf *b, const void *data, size_t n) {
    buf_reserve(b, n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
}

void cg_buf_adds(cg_buf *b, const char *s) { cg_buf_add(b, s, strlen(s)); }

static void buf_vaddf(cg_buf *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return;
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void cg_buf_addf(cg_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(b, fmt, ap);
    va_end(ap);
}

char *cg_buf_steal(cg_buf *b) {
    if (!b->data) buf_reserve(b, 0), b->data[0] = 0;
    char *d = b->data;
    cg_buf_init(b);
    return d;
}

char *cg_fmt(const char *fmt, ...) {
    cg_buf b;
    cg_buf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(&b, fmt, ap);
    va_end(ap);
    return cg_buf_steal(&b);
}

int cg_parse_i64(const char *s, const char *what, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    if (!s || !*s) return cg_err(CG_EUSER, "%s: expected an integer, got an empty value", what);
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return cg_err(CG_EUSER, "%s: '%s' is not an integer", what, s);
    if (v < lo || v > hi)
        return cg_err(CG_EUSER, "%s: %lld is out of range [%lld, %lld]", what, v, (long long)lo,
                      (long long)hi);
    *out = v;
    return CG_OK;
}

int cg_parse_int(const char *s, const char *what, int lo, int hi, int *out) {
    int64_t v = 0;
    int rc = cg_parse_i64(s, what, lo, hi, &v);
    if (rc == CG_OK) *out = (int)v;
    return rc;
}

int cg_parse_double(const char *s, const char *what, double *out) {
    char *end;
    errno = 0;
    if (!s || !*s) return cg_err(CG_EUSER, "%s: expected a number, got an empty value", what);
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return cg_err(CG_EUSER, "%s: '%s' is not a finite number", what, s);
    *out = v;
    return CG_OK;
}

double cg_wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double cg_mono_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cg_stderr_is_tty(void) { return isatty(STDERR_FILENO); }
