/* make_empty_db.c: creates a results db through store_open (the real schema and migrations), so
 * the report tests fill a database of the current schema version. Usage: make_empty_db PATH */
#include "db/store.h"
#include "util/util.h"

int main(int argc, char **argv) {
    if (argc != 2) return cg_report(cg_err(CG_EUSER, "usage: make_empty_db PATH"));
    sqlite3 *db;
    int rc = store_open(argv[1], STORE_CREATE, &db);
    if (rc) return cg_report(rc);
    store_close(db);
    return 0;
}
