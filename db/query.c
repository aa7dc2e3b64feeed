/* query.c: result printing (table/csv/json) and the read-only statement guard (see query.h). */
#include "db/query.h"
#include "util/util.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int query_parse_format(const char *s, query_format *out) {
    if (!strcmp(s, "table")) *out = QUERY_TABLE;
    else if (!strcmp(s, "csv")) *out = QUERY_CSV;
    else if (!strcmp(s, "json")) *out = QUERY_JSON;
    else return cg_err(CG_EUSER, "unknown format '%s'; use table, csv or json", s);
    return CG_OK;
}

void query_format_double(double v, char *buf, size_t n) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* A column value as text; NULL -> "". Reals: exact (shortest round-trip) for programs, 10
 * significant digits for people (the table form). */
static char *cell_text(sqlite3_stmt *st, int c, int for_people) {
    char num[40];
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_NULL: return cg_strdup("");
    case SQLITE_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)sqlite3_column_int64(st, c));
        return cg_strdup(num);
    case SQLITE_FLOAT:
        if (for_people)
            snprintf(num, sizeof num, "%.10g", sqlite3_column_double(st, c));
        else
            query_format_double(sqlite3_column_double(st, c), num, sizeof num);
        return cg_strdup(num);
    case SQLITE_BLOB: {
        const unsigned char *b = sqlite3_column_blob(st, c);
        int len = sqlite3_column_bytes(st, c);
        char *hex = cg_malloc((size_t)len * 2 + 3);
        hex[0] = 'x', hex[1] = '\'';
        for (int i = 0; i < len; i++) snprintf(hex + 2 + 2 * i, 3, "%02x", b[i]);
        hex[2 + 2 * len] = 0;
        return hex;
    }
    default: return cg_strdup((const char *)sqlite3_column_text(st, c));
    }
}

static void csv_field(FILE *out, const char *s) {
    if (!s[strcspn(s, ",\"\r\n")]) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"') fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static void json_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

static void json_value(FILE *out, sqlite3_stmt *st, int c) {
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_NULL: fputs("null", out); return;
    case SQLITE_INTEGER: fprintf(out, "%lld", (long long)sqlite3_column_int64(st, c)); return;
    case SQLITE_FLOAT: {
        double v = sqlite3_column_double(st, c);
        char num[40];
        if (!isfinite(v)) {
            fputs("null", out);
            return;
        }
        query_format_double(v, num, sizeof num);
        fputs(num, out);
        return;
    }
    default: {
        char *t = cell_text(st, c, 0);
        json_string(out, t);
        free(t);
    }
    }
}

int query_error(sqlite3 *db, const char *what) {
    int code = sqlite3_errcode(db) & 0xff;
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
        return cg_err(CG_EUSER, "the results db is damaged (%s); restore it from a copy or pass another --db",
                      sqlite3_errmsg(db));
    return cg_err(CG_EFAIL, "%s: %s", what, sqlite3_errmsg(db));
}

void query_print_json_row(sqlite3_stmt *st, FILE *out) {
    fputc('{', out);
    for (int c = 0; c < sqlite3_column_count(st); c++) {
        if (c) fputc(',', out);
        json_string(out, sqlite3_column_name(st, c));
        fputc(':', out);
        json_value(out, st, c);
    }
    fputc('}', out);
}

static int step_error(sqlite3 *db) { return query_error(db, "query failed"); }

static int print_csv_json(sqlite3 *db, sqlite3_stmt *st, query_format fmt, FILE *out, int64_t *n_rows) {
    int nc = sqlite3_column_count(st), src;
    int64_t n = 0;
    if (fmt == QUERY_CSV) {
        for (int c = 0; c < nc; c++) {
            if (c) fputc(',', out);
            csv_field(out, sqlite3_column_name(st, c));
        }
        fputs("\r\n", out);
    } else {
        fputc('[', out);
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (fmt == QUERY_CSV) {
            for (int c = 0; c < nc; c++) {
                char *t = cell_text(st, c, 0);
                if (c) fputc(',', out);
                csv_field(out, t);
                free(t);
            }
            fputs("\r\n", out);
        } else {
            fputs(n ? ",\n" : "\n", out);
            query_print_json_row(st, out);
        }
        n++;
    }
    if (fmt == QUERY_JSON) fputs(n ? "\n]\n" : "]\n", out);
    if (n_rows) *n_rows = n;
    return src == SQLITE_DONE ? CG_OK : step_error(db);
}

/* Display width of UTF-8 text: code points (good enough for names and numbers). */
static size_t width(const char *s) {
    size_t w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

static int print_table(sqlite3 *db, sqlite3_stmt *st, FILE *out, int64_t *n_rows) {
    int nc = sqlite3_column_count(st), src;
    size_t n = 0, cap = 0;
    char **cells = NULL; /* row-major, row 0 = header */
    int *numeric = cg_calloc((size_t)nc + 1, sizeof *numeric);
    size_t *w = cg_calloc((size_t)nc + 1, sizeof *w);
    for (;;) {
        int is_header = n == 0;
        if (!is_header && (src = sqlite3_step(st)) != SQLITE_ROW) break;
        if ((n + 1) * (size_t)nc > cap) {
            cap = cap ? 2 * cap : 64 * (size_t)nc;
            cells = cg_realloc(cells, cap * sizeof *cells);
        }
        for (int c = 0; c < nc; c++) {
            char *t = is_header ? cg_strdup(sqlite3_column_name(st, c)) : cell_text(st, c, 1);
            if (!is_header) {
                int type = sqlite3_column_type(st, c);
                if (type == SQLITE_INTEGER || type == SQLITE_FLOAT) numeric[c] |= 1;
                else if (type != SQLITE_NULL) numeric[c] |= 2;
            }
            for (char *p = t; *p; p++) /* one row per line */
                if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
            size_t tw = width(t);
            if (tw > w[c]) w[c] = tw;
            cells[n * (size_t)nc + (size_t)c] = t;
        }
        n++;
    }
    int rc = src == SQLITE_DONE ? CG_OK : step_error(db);
    for (size_t r = 0; rc == CG_OK && r < n; r++) {
        for (int c = 0; c < nc; c++) {
            const char *t = cells[r * (size_t)nc + (size_t)c];
            int pad = (int)(w[c] - width(t));
            int right = r > 0 && numeric[c] == 1;
            if (c) fputs("  ", out);
            if (right) fprintf(out, "%*s", pad, "");
            fputs(t, out);
            if (!right && c + 1 < nc) fprintf(out, "%*s", pad, "");
        }
        fputc('\n', out);
        if (r == 0) {
            for (int c = 0; c < nc; c++) {
                if (c) fputs("  ", out);
                for (size_t i = 0; i < w[c]; i++) fputc('-', out);
            }
            fputc('\n', out);
        }
    }
    for (size_t i = 0; i < n * (size_t)nc; i++) free(cells[i]);
    free(cells), free(w), free(numeric);
    if (n_rows) *n_rows = n ? (int64_t)n - 1 : 0;
    return rc;
}

int query_print(sqlite3 *db, sqlite3_stmt *st, query_format fmt, FILE *out, int64_t *n_rows) {
    return fmt == QUERY_TABLE ? print_table(db, st, out, n_rows) : print_csv_json(db, st, fmt, out, n_rows);
}

/* ---- the read-only guard ---- */

typedef struct {
    char why[160];
} guard;

/* Pragmas that only report (any argument is a name to look at, never a value to set). */
static const char *const pragmas_report[] = {
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check", "database_list",
    "collation_list", "function_list", "module_list", "pragma_list", "compile_options",
};
/* Pragmas that are read-only when asked without a value. */
static const char *const pragmas_read[] = {
    "user_version", "schema_version", "application_id", "page_size", "page_count",
    "freelist_count", "journal_mode", "foreign_keys", "encoding", "data_version", "query_only",
};

static int in_list(const char *name, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(name, list[i])) return 1;
    return 0;
}

/* Keeps the first reason: SQLite goes on asking after a denial (DROP TABLE then asks about
 * deleting from sqlite_master). */
static void deny(guard *g, const char *fmt, ...) CG_PRINTF(2, 3);
static void deny(guard *g, const char *fmt, ...) {
    if (g->why[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->why, sizeof g->why, fmt, ap);
    va_end(ap);
}

static int authorize(void *ctx, int action, const char *a1, const char *a2, const char *db_name,
                     const char *trigger) {
    guard *g = ctx;
    switch (action) {
    case SQLITE_SELECT: case SQLITE_READ: case SQLITE_FUNCTION: case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_PRAGMA:
        if (a1 && (in_list(a1, pragmas_report, CG_ARRAY_LEN(pragmas_report)) ||
                   (!a2 && in_list(a1, pragmas_read, CG_ARRAY_LEN(pragmas_read)))))
            return SQLITE_OK;
        deny(g, "PRAGMA %s%s%s changes a setting", a1 ? a1 : "", a2 ? " = " : "", a2 ? a2 : "");
        return SQLITE_DENY;
    case SQLITE_ATTACH: deny(g, "ATTACH opens another database"); return SQLITE_DENY;
    case SQLITE_DETACH: deny(g, "DETACH changes the connection"); return SQLITE_DENY;
    case SQLITE_INSERT: case SQLITE_UPDATE: case SQLITE_DELETE:
        if (a1 && (!strcmp(a1, "sqlite_master") || !strcmp(a1, "sqlite_temp_master")))
            deny(g, "the statement changes the schema"); /* DDL asks about these first */
        else
            deny(g, "%s %s writes",
                 action == SQLITE_INSERT ? "INSERT INTO" : action == SQLITE_UPDATE ? "UPDATE" : "DELETE FROM",
                 a1 ? a1 : "?");
        return SQLITE_DENY;
    default:
        /* DDL (CREATE/DROP/ALTER), transactions, savepoints, ANALYZE, REINDEX, ... */
        deny(g, "the statement changes the database or the connection");
        return SQLITE_DENY;
    }
}

static int only_space(const char *s) {
    for (; *s; s++)
        if (*s != ';' && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return 0;
    return 1;
}

int query_prepare_readonly(sqlite3 *db, const char *sql, sqlite3_stmt **out) {
    guard g = {""};
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = CG_OK;
    *out = NULL;
    sqlite3_set_authorizer(db, authorize, &g);
    int src = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
    if (src != SQLITE_OK) {
        if (g.why[0])
            rc = cg_err(CG_EUSER, "query: refused: %s; 'cgvlm query' only reads the results db", g.why);
        else
            rc = cg_err(CG_EUSER, "query: %s (docs/DB.md lists every table and view with its columns)",
                        sqlite3_errmsg(db));
        goto out;
    }
    if (!st) {
        rc = cg_err(CG_EUSER, "query: no SQL statement given");
        goto out;
    }
    if (!sqlite3_stmt_readonly(st)) {
        rc = cg_err(CG_EUSER, "query: refused: the statement would write; 'cgvlm query' only reads the results db");
        goto out;
    }
    if (tail && !only_space(tail)) {
        sqlite3_stmt *next = NULL;
        const char *rest = NULL;
        /* comments alone after the statement are fine */
        if (sqlite3_prepare_v2(db, tail, -1, &next, &rest) != SQLITE_OK || next) {
            sqlite3_finalize(next);
            rc = cg_err(CG_EUSER, "query: one statement at a time, please (found more after '%.*s')",
                        (int)(tail - sql > 60 ? 60 : tail - sql), sql);
            goto out;
        }
    }
out:
    sqlite3_set_authorizer(db, NULL, NULL);
    if (rc)
        sqlite3_finalize(st);
    else
        *out = st;
    return rc;
}
