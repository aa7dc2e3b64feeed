/* store.h: the results database: opening (WAL, foreign keys, busy timeout), schema versioning
 * with forward migrations, and the refusal to touch a database written by a newer cgvlm.
 * The schema itself is db/schema.sql (compiled in). */
#ifndef CG_STORE_H
#define CG_STORE_H

#include <sqlite3.h>

#define STORE_SCHEMA_VERSION 1

enum {
    STORE_READONLY = 1,  /* open read-only (queries, reports); never creates or migrates */
    STORE_CREATE = 2,    /* create the file if missing */
};

/* Opens (and, unless read-only, creates/migrates) the results db at path. Errors: CG_EUSER for
 * a missing file (read-only), a file that is not an SQLite database, or one from a newer cgvlm;
 * CG_EFAIL for I/O. A refused file is left untouched. */
int store_open(const char *path, int flags, sqlite3 **out);
void store_close(sqlite3 *db);

/* The default db path: $CGVLM_DB, else "results.db". */
const char *store_default_path(void);

/* Runs SQL without results; CG_EFAIL with the SQLite message wrapped with `what`. */
int store_exec(sqlite3 *db, const char *sql, const char *what);
/* BEGIN IMMEDIATE / COMMIT / ROLLBACK helpers. */
int store_begin(sqlite3 *db);
int store_commit(sqlite3 *db);
void store_rollback(sqlite3 *db);

#endif
