/* query.h: printing query results for people and programs: aligned table, CSV (RFC 4180) or
 * JSON (an array of objects), and the read-only guard for user SQL. */
#ifndef CG_QUERY_H
#define CG_QUERY_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { QUERY_TABLE, QUERY_CSV, QUERY_JSON } query_format;

/* "table" | "csv" | "json"; CG_EUSER naming the value otherwise. */
int query_parse_format(const char *s, query_format *out);

/* Steps st to the end and prints its rows with a header (column names). The table form reads
 * every row first to align the columns. *n_rows (optional) gets the count. CG_EFAIL with the
 * SQLite message when a step fails (nothing printed for the table form then). */
int query_print(sqlite3 *db, sqlite3_stmt *st, query_format fmt, FILE *out, int64_t *n_rows);

/* The current row of st as one JSON object {"column": value, ...}. */
void query_print_json_row(sqlite3_stmt *st, FILE *out);

/* Compiles one user statement for a read-only connection: refuses (CG_EUSER) anything that
 * would write -- INSERT/UPDATE/DELETE/DDL, ATTACH/DETACH, pragmas that set a value or change
 * the connection -- and more than one statement (a trailing ';' is fine). */
int query_prepare_readonly(sqlite3 *db, const char *sql, sqlite3_stmt **out);

/* The error of a failed read: CG_EUSER "the results db is damaged (...)" when SQLite found the
 * file corrupt, else CG_EFAIL "WHAT: MESSAGE". */
int query_error(sqlite3 *db, const char *what);

/* A number as the shortest text that reads back to the same double ("0.1", "1e-05"). */
void query_format_double(double v, char *buf, size_t n);

#endif
