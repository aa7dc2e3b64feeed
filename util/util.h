/* util.h: errors, allocation, strings and strict number parsing shared by every part of cgvlm.
 *
 * Error convention (curl/git style):
 *   - functions return an int rc: CG_OK (0) on success, CG_EUSER (2) when the input was bad
 *     (a flag, a file, a config), CG_EFAIL (1) when something outside the user's input failed
 *     (I/O, a library). The message is kept with cg_err() and read with cg_errmsg().
 *   - a command returns its rc to main(), which prints "cgvlm: error: MSG" and exits with rc.
 *   - messages are lowercase, name what failed and the value that made it fail, and say what
 *     to do: "cannot open results db 'x.db': permission denied".
 *   - a bug is an assert, never an error message.
 */
#ifndef CG_UTIL_H
#define CG_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { CG_OK = 0, CG_EFAIL = 1, CG_EUSER = 2 };

#if defined(__GNUC__)
#define CG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CG_PRINTF(a, b)
#endif

/* Records an error message (thread-local) and returns rc, so that `return cg_err(CG_EUSER, ...)` works. */
int cg_err(int rc, const char *fmt, ...) CG_PRINTF(2, 3);
/* Prefixes the current message: "CONTEXT: previous message". Returns rc. */
int cg_err_wrap(int rc, const char *fmt, ...) CG_PRINTF(2, 3);
const char *cg_errmsg(void);
void cg_err_clear(void);

/* Prints "cgvlm: error: MSG" for the recorded error (when rc != 0) and returns rc. */
int cg_report(int rc);
/* Warnings and progress go to stderr; cg_verbose() is 0 with --quiet. */
void cg_warn(const char *fmt, ...) CG_PRINTF(1, 2);
void cg_info(const char *fmt, ...) CG_PRINTF(1, 2);
extern int cg_quiet;

/* Allocation that aborts on out-of-memory (an OOM in a CLI tool is not recoverable). Under
 * tests, cg_alloc_fail_after(n) makes the n-th next allocation through cg_try_malloc fail. */
void *cg_malloc(size_t n);
void *cg_calloc(size_t count, size_t size);
void *cg_realloc(void *p, size_t n);
char *cg_strdup(const char *s);
char *cg_strndup(const char *s, size_t n);
void *cg_try_malloc(size_t n);
void cg_alloc_fail_after(long n);

/* A growable string buffer. */
typedef struct {
    char *data;
    size_t len, cap;
} cg_buf;
void cg_buf_init(cg_buf *b);
void cg_buf_free(cg_buf *b);
void cg_buf_add(cg_buf *b, const void *data, size_t n);
void cg_buf_adds(cg_buf *b, const char *s);
void cg_buf_addf(cg_buf *b, const char *fmt, ...) CG_PRINTF(2, 3);
char *cg_buf_steal(cg_buf *b);   /* returns the NUL-terminated data, leaves b empty */
char *cg_fmt(const char *fmt, ...) CG_PRINTF(1, 2);  /* malloc'ed formatted string */

/* Strict parsers: the whole string must be a number in range. Return CG_OK or CG_EUSER with a
 * message naming `what` (e.g. "--seed"). */
int cg_parse_i64(const char *s, const char *what, int64_t lo, int64_t hi, int64_t *out);
int cg_parse_int(const char *s, const char *what, int lo, int hi, int *out);
int cg_parse_double(const char *s, const char *what, double *out);

/* Seconds since the epoch with sub-second precision, and a monotonic clock. */
double cg_wall_time(void);
double cg_mono_time(void);

/* Is stderr a terminal (progress lines only there)? */
int cg_stderr_is_tty(void);

#define CG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
