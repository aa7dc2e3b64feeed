/* db_cmd.c: the commands that read the results database: query, runs, show, compare. */
#include "cli/commands.h"
#include "db/query.h"
#include "db/store.h"
#include "util/json.h"
#include "util/util.h"
#include "util/ux_opt.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared option handling ---- */

typedef struct {
    const char *db;
    query_format fmt;
} common_opts;

enum { OPT_DB = 1000, OPT_FORMAT, OPT_SWEEP, OPT_STATE, OPT_WHERE };

/* Handles --db / --format; CG_EUSER for a bad value, -1 when c is not one of them. */
static int common_opt(common_opts *o, int c) {
    if (c == OPT_DB) {
        o->db = optarg;
        return CG_OK;
    }
    if (c == OPT_FORMAT) return query_parse_format(optarg, &o->fmt);
    return -1;
}

static int unknown_opt(const char *cmd, char **argv, const struct option *opts) {
    return cg_opt_error(cmd, argv, opts);
}

static int open_ro(const common_opts *o, sqlite3 **db) {
    return store_open(o->db ? o->db : store_default_path(), STORE_READONLY, db);
}

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) return query_error(db, "cannot read the results db");
    return CG_OK;
}

/* ---- cgvlm query ---- */

static void query_usage(FILE *fp) {
    fprintf(fp,
            "usage: cgvlm query [--db PATH] [--format table|csv|json] \"SQL\"\n"
            "\n"
            "runs one read-only SQL statement on the results database and prints its rows: an\n"
            "aligned table (default), CSV (RFC 4180, with a header) or JSON (an array of objects).\n"
            "Statements that would write (INSERT, UPDATE, DELETE, DDL, ATTACH, pragmas that set\n"
            "something) are refused with exit status 2. The v_* views are the stable interface;\n"
            "see docs/DB.md.\n"
            "\n"
            "  --db PATH     the results db (default $CGVLM_DB, else results.db)\n"
            "  --format F    table, csv or json\n"
            "  --            ends the options (for SQL that starts with a '--' comment)\n"
            "\n"
            "example: cgvlm query \"SELECT sweep, fraction, contrastive, AVG(accuracy) FROM v_data_efficiency\n"
            "                      GROUP BY 1, 2, 3\"\n");
}

int cmd_query(int argc, char **argv) {
    static const struct option opts[] = {{"db", required_argument, 0, OPT_DB},
                                         {"format", required_argument, 0, OPT_FORMAT},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    common_opts o = {NULL, QUERY_TABLE};
    int rc = CG_OK, c;
    optind = 1;
    opterr = 0;
    while (rc == CG_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            query_usage(stdout);
            return CG_OK;
        }
        rc = common_opt(&o, c);
        if (rc < 0) rc = unknown_opt("query", argv, opts);
    }
    if (rc == CG_OK && optind != argc - 1)
        rc = cg_err(CG_EUSER, optind >= argc ? "query: no SQL given; see 'cgvlm query --help'"
                                             : "query: give the SQL as one argument (quote it)");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (!rc) rc = open_ro(&o, &db);
    if (!rc) rc = query_prepare_readonly(db, argv[optind], &st);
    if (!rc) rc = query_print(db, st, o.fmt, stdout, NULL);
    sqlite3_finalize(st);
    store_close(db);
    return cg_report(rc);
}

/* ---- cgvlm runs ---- */

static void runs_usage(FILE *fp) {
    fprintf(fp,
            "usage: cgvlm runs [--db PATH] [--sweep NAME] [--state S] [--where AXIS=VALUE ...]\n"
            "                  [--format table|csv|json]\n"
            "\n"
            "lists runs (grid points) with their sweep, seed, contrastive weight, data fraction,\n"
            "size, state and done/total tasks (from v_runs).\n"
            "\n"
            "  --sweep NAME        only this sweep's runs\n"
            "  --state S           queued, running, done, failed or interrupted\n"
            "  --where AXIS=VALUE  only runs whose axis (a config path from the sweep, e.g.\n"
            "                      align.lambda=0, or seed/lambda/fraction/size) has this value;\n"
            "                      repeatable (all must hold)\n"
            "  --db PATH, --format F   as for 'cgvlm query'\n");
}

static const char *const run_states[] = {"queued", "running", "done", "failed", "interrupted"};
/* --where names that are columns of runs rather than sweep axes */
static const char *const run_columns[] = {"seed", "lambda", "fraction", "size"};

static int is_run_column(const char *name) {
    for (size_t k = 0; k < CG_ARRAY_LEN(run_columns); k++)
        if (!strcmp(name, run_columns[k])) return 1;
    return 0;
}

/* CG_EUSER naming WHAT and listing the WHATS there are (LIST_SQL), unless SQL (one ?1 parameter) finds NAME. */
static int must_exist(sqlite3 *db, const char *sql, const char *list_sql, const char *name, const char *what,
                      const char *whats) {
    sqlite3_stmt *st = NULL;
    int rc = prep(db, sql, &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (found) return CG_OK;
    if ((rc = prep(db, list_sql, &st))) return rc;
    const char *have = sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    rc = cg_err(CG_EUSER, "runs: the results db has no %s '%s'; %s there: %s", what, name, whats, have ? have : "none");
    sqlite3_finalize(st);
    return rc;
}

int cmd_runs(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, 0, OPT_DB},       {"format", required_argument, 0, OPT_FORMAT},
        {"sweep", required_argument, 0, OPT_SWEEP}, {"state", required_argument, 0, OPT_STATE},
        {"where", required_argument, 0, OPT_WHERE}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    common_opts o = {NULL, QUERY_TABLE};
    const char *sweep = NULL, *state = NULL;
    char **wheres = cg_calloc((size_t)argc + 1, sizeof *wheres);
    int n_where = 0, rc = CG_OK, c;
    optind = 1;
    opterr = 0;
    while (rc == CG_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': runs_usage(stdout); free(wheres); return CG_OK;
        case OPT_SWEEP: sweep = optarg; break;
        case OPT_STATE: state = optarg; break;
        case OPT_WHERE: wheres[n_where++] = optarg; break;
        default:
            rc = common_opt(&o, c);
            if (rc < 0) rc = unknown_opt("runs", argv, opts);
        }
    }
    if (rc == CG_OK && optind < argc)
        rc = cg_err(CG_EUSER, "runs: unexpected argument '%s'; see 'cgvlm runs --help'", argv[optind]);
    if (rc == CG_OK && state) {
        int ok = 0;
        for (size_t i = 0; i < CG_ARRAY_LEN(run_states); i++) ok |= !strcmp(state, run_states[i]);
        if (!ok) rc = cg_err(CG_EUSER, "runs: unknown state '%s'; use queued, running, done, failed or interrupted", state);
    }
    cg_buf sql;
    cg_buf_init(&sql);
    cg_buf_adds(&sql,
                "SELECT v.run_id, v.sweep, v.run, v.seed, v.lambda, v.fraction, v.size, v.state, "
                "v.n_done || '/' || v.n_tasks AS tasks FROM v_runs v WHERE (?1 IS NULL OR v.sweep = ?1) "
                "AND (?2 IS NULL OR v.state = ?2)");
    /* each --where uses three parameters: the axis, the value as text (canonical JSON for an
     * axis, the plain string for a column) and the value as a number (NULL when not one) */
    cJSON **values = cg_calloc((size_t)n_where + 1, sizeof *values);
    for (int i = 0; rc == CG_OK && i < n_where; i++) {
        char *eq = strchr(wheres[i], '=');
        if (!eq || eq == wheres[i]) {
            rc = cg_err(CG_EUSER, "runs: --where wants AXIS=VALUE, got '%s'", wheres[i]);
            break;
        }
        *eq = 0;
        values[i] = cg_json_from_arg(eq + 1);
        int p = 3 + 3 * i;
        if (is_run_column(wheres[i]))
            cg_buf_addf(&sql, " AND (v.%s = ?%d OR v.%s = ?%d)", wheres[i], p + 2, wheres[i], p + 1);
        else
            cg_buf_addf(&sql,
                        " AND EXISTS (SELECT 1 FROM run_params rp WHERE rp.run_id = v.run_id AND "
                        "rp.path = ?%d AND (rp.value_num = ?%d OR rp.value_json = ?%d))",
                        p, p + 2, p + 1);
    }
    cg_buf_adds(&sql, " ORDER BY v.run_id");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (!rc) rc = open_ro(&o, &db);
    /* a typo in a sweep or axis name lists what there is instead of printing no runs */
    if (!rc && sweep)
        rc = must_exist(db, "SELECT 1 FROM sweeps WHERE name = ?1",
                        "SELECT group_concat(name, ', ') FROM (SELECT name FROM sweeps ORDER BY name)", sweep, "sweep", "sweeps");
    for (int i = 0; !rc && i < n_where; i++)
        if (!is_run_column(wheres[i]))
            rc = must_exist(db, "SELECT 1 FROM run_params WHERE path = ?1 LIMIT 1",
                            "SELECT group_concat(path, ', ') FROM (SELECT DISTINCT path FROM run_params ORDER BY path)",
                            wheres[i], "axis", "axes");
    if (!rc) rc = prep(db, sql.data, &st);
    if (!rc) {
        sqlite3_bind_text(st, 1, sweep, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
        for (int i = 0; i < n_where; i++) {
            const cJSON *v = values[i];
            int p = 3 + 3 * i;
            sqlite3_bind_text(st, p, wheres[i], -1, SQLITE_STATIC);
            if (cJSON_IsString(v) && is_run_column(wheres[i]))
                sqlite3_bind_text(st, p + 1, v->valuestring, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_text(st, p + 1, cg_json_canonical(v), -1, free);
            if (cJSON_IsNumber(v)) sqlite3_bind_double(st, p + 2, v->valuedouble);
            else if (cJSON_IsBool(v)) sqlite3_bind_int(st, p + 2, cJSON_IsTrue(v));
        }
        rc = query_print(db, st, o.fmt, stdout, NULL);
    }
    sqlite3_finalize(st);
    for (int i = 0; i < n_where; i++) cJSON_Delete(values[i]);
    free(values);
    cg_buf_free(&sql);
    free(wheres);
    store_close(db);
    return cg_report(rc);
}

/* ---- finding a run by id or name ---- */

static int all_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* RUN is a run id or a run name (unique, or unique within --sweep). */
static int find_run(sqlite3 *db, const char *run, const char *sweep, int64_t *run_id) {
    sqlite3_stmt *st;
    int rc = prep(db,
                  "SELECT r.run_id FROM runs r LEFT JOIN sweeps s USING (sweep_id) WHERE "
                  "(r.run_id = ?1 OR (?1 IS NULL AND r.name = ?2)) AND (?3 IS NULL OR s.name = ?3) "
                  "ORDER BY r.run_id LIMIT 11",
                  &st);
    if (rc) return rc;
    int64_t id;
    if (all_digits(run) && cg_parse_i64(run, "RUN", 0, INT64_MAX, &id) == CG_OK)
        sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, run, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sweep, -1, SQLITE_STATIC);
    cg_buf ids;
    cg_buf_init(&ids);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        *run_id = sqlite3_column_int64(st, 0);
        cg_buf_addf(&ids, "%s%lld", n++ ? ", " : "", (long long)*run_id);
    }
    sqlite3_finalize(st);
    if (n == 0)
        rc = cg_err(CG_EUSER, "no run '%s'%s%s in the results db; see 'cgvlm runs'", run,
                    sweep ? " in sweep " : "", sweep ? sweep : "");
    else if (n > 1)
        rc = cg_err(CG_EUSER, "run name '%s' matches several runs (ids %s%s); pass the run id or --sweep",
                    run, ids.data, n > 10 ? ", ..." : "");
    cg_buf_free(&ids);
    return rc;
}

/* A run's config as (path, value) rows: every leaf of the JSON, path in dotted form with [i]
 * for array items, value as JSON text. (json_tree quotes labels that are not plain identifiers,
 * e.g. "data_seed": config keys never hold a '"', so the quotes are dropped.) */
#define CONFIG_LEAVES(param)                                                                   \
    "SELECT replace(substr(j.fullkey, 3), '\"', '') AS path, CASE j.type WHEN 'true' THEN 'true' WHEN 'false' "   \
    "THEN 'false' WHEN 'null' THEN 'null' WHEN 'text' THEN json_quote(j.atom) ELSE j.atom END " \
    "AS value FROM runs r, json_tree(r.config_json) j WHERE r.run_id = " param                   \
    " AND j.type NOT IN ('object', 'array')"

/* ---- cgvlm show ---- */

static void show_usage(FILE *fp) {
    fprintf(fp,
            "usage: cgvlm show [--db PATH] [--sweep NAME] [--format table|json] RUN\n"
            "\n"
            "shows one run (RUN = run id or name): its sweep and axis values, the full config as\n"
            "dotted paths, its tasks with states, attempts, times and errors, the final value of\n"
            "every step metric and every evaluation result.\n"
            "\n"
            "  --sweep NAME   look the run name up in this sweep (names are unique per sweep)\n"
            "  --format F     table (for people, default) or json (one object: run, config,\n"
            "                 params, tasks, final_metrics, evals)\n"
            "  --db PATH      the results db (default $CGVLM_DB, else results.db)\n");
}

/* parses [--db] [--sweep] [--format] and n_runs RUN arguments */
static int run_args(const char *cmd, int argc, char **argv, int n_runs, void (*usage)(FILE *),
                    common_opts *o, const char **sweep, int *done) {
    static const struct option opts[] = {{"db", required_argument, 0, OPT_DB},
                                         {"format", required_argument, 0, OPT_FORMAT},
                                         {"sweep", required_argument, 0, OPT_SWEEP},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int rc = CG_OK, c;
    *done = 0;
    optind = 1;
    opterr = 0;
    while (rc == CG_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            *done = 1;
            return CG_OK;
        }
        if (c == OPT_SWEEP) {
            *sweep = optarg;
            continue;
        }
        rc = common_opt(o, c);
        if (rc < 0) rc = unknown_opt(cmd, argv, opts);
    }
    if (rc == CG_OK && argc - optind != n_runs)
        rc = cg_err(CG_EUSER, "%s: give %s (id or name); see 'cgvlm %s --help'", cmd,
                    n_runs == 1 ? "one RUN" : "two RUNs", cmd);
    return rc;
}

static const struct {
    const char *title, *key, *sql;
} show_sections[] = {
    {"params", "params", "SELECT path, value_json AS value FROM run_params WHERE run_id = ?1 ORDER BY path"},
    {"config", NULL, CONFIG_LEAVES("?1") " ORDER BY j.id"},
    {"tasks", "tasks",
     "SELECT t.task_id, t.kind, t.state, t.attempts, t.host, "
     "strftime('%Y-%m-%d %H:%M:%S', t.started_at, 'unixepoch') AS started, "
     "round(t.ended_at - t.started_at, 3) AS seconds, substr(t.key, 1, 12) AS key, t.error "
     "FROM run_tasks rt JOIN tasks t USING (task_id) WHERE rt.run_id = ?1 ORDER BY t.queued_at, t.task_id"},
    {"final metrics", "final_metrics",
     "SELECT stage, metric, step, value FROM v_final_metrics WHERE run_id = ?1 ORDER BY stage, metric"},
    {"evals", "evals",
     "SELECT benchmark, metric, category, value, n FROM v_evals WHERE run_id = ?1 "
     "ORDER BY benchmark, metric, category"},
};

/* The run's own line: labels for people, column names for JSON. */
static const char show_run_sql[] =
    "SELECT v.run_id, v.run AS name, v.sweep, v.seed, v.lambda, v.fraction, v.size, v.state, "
    "v.n_done || '/' || v.n_tasks AS tasks_done, "
    "strftime('%Y-%m-%d %H:%M:%S UTC', r.created_at, 'unixepoch') AS created "
    "FROM v_runs v JOIN runs r USING (run_id) WHERE v.run_id = ?1";

static int show_header(sqlite3 *db, int64_t run_id, query_format fmt) {
    static const char *const labels[] = {"run", "name", "sweep", "seed", "lambda",
                                         "fraction", "size", "state", "tasks done", "created"};
    sqlite3_stmt *st;
    int rc = prep(db, show_run_sql, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = query_error(db, "cannot read run");
    } else if (fmt == QUERY_JSON) {
        /* {"run": {...}, "config": <the config itself>, then the sections */
        fputs("{\"run\":", stdout);
        query_print_json_row(st, stdout);
        sqlite3_stmt *cfg;
        rc = prep(db, "SELECT json(config_json) FROM runs WHERE run_id = ?1", &cfg);
        if (!rc) {
            sqlite3_bind_int64(cfg, 1, run_id);
            if (sqlite3_step(cfg) == SQLITE_ROW)
                printf(",\n\"config\":%s", (const char *)sqlite3_column_text(cfg, 0));
            else
                rc = query_error(db, "cannot read the run's config");
            sqlite3_finalize(cfg);
        }
    } else {
        for (int c = 0; c < (int)CG_ARRAY_LEN(labels); c++) {
            int type = sqlite3_column_type(st, c);
            if (type == SQLITE_FLOAT)
                printf("%-11s %.10g\n", labels[c], sqlite3_column_double(st, c));
            else if (type != SQLITE_NULL)
                printf("%-11s %s\n", labels[c], (const char *)sqlite3_column_text(st, c));
            else if (c == 2)
                printf("%-11s (lone run)\n", labels[c]);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int cmd_show(int argc, char **argv) {
    common_opts o = {NULL, QUERY_TABLE};
    const char *sweep = NULL;
    int done;
    int rc = run_args("show", argc, argv, 1, show_usage, &o, &sweep, &done);
    if (done) return CG_OK;
    if (!rc && o.fmt == QUERY_CSV)
        rc = cg_err(CG_EUSER, "show: --format csv does not fit several tables; use table or json "
                              "(or 'cgvlm query --format csv')");
    sqlite3 *db = NULL;
    int64_t run_id = 0;
    if (!rc) rc = open_ro(&o, &db);
    if (!rc) rc = find_run(db, argv[optind], sweep, &run_id);
    if (!rc) rc = show_header(db, run_id, o.fmt);
    for (size_t i = 0; rc == CG_OK && i < CG_ARRAY_LEN(show_sections); i++) {
        if (o.fmt == QUERY_JSON && !show_sections[i].key) continue; /* the config is there whole */
        sqlite3_stmt *st;
        rc = prep(db, show_sections[i].sql, &st);
        if (rc) break;
        sqlite3_bind_int64(st, 1, run_id);
        if (o.fmt == QUERY_JSON)
            printf(",\n\"%s\":", show_sections[i].key);
        else
            printf("\n%s\n", show_sections[i].title);
        rc = query_print(db, st, o.fmt, stdout, NULL);
        sqlite3_finalize(st);
    }
    if (!rc && o.fmt == QUERY_JSON) printf("}\n");
    store_close(db);
    return cg_report(rc);
}

/* ---- cgvlm compare ---- */

static void compare_usage(FILE *fp) {
    fprintf(fp,
            "usage: cgvlm compare [--db PATH] [--sweep NAME] [--format table|csv|json] RUN_A RUN_B\n"
            "\n"
            "compares two runs (id or name): the config paths whose values differ (both configs\n"
            "flattened to dotted paths), then every final step metric and evaluation result of\n"
            "either run with both values and the delta (b - a).\n"
            "\n"
            "  --sweep NAME   look run names up in this sweep\n"
            "  --db PATH, --format F   as for 'cgvlm query'\n");
}

#define RUN_RESULTS(param)                                                                     \
    "SELECT 'metric' AS kind, stage || ':' || metric AS name, MAX(value) AS value "           \
    "FROM v_final_metrics WHERE run_id = " param " GROUP BY stage, metric "                   \
    "UNION ALL SELECT 'eval', benchmark || ':' || metric || CASE WHEN category = '' THEN '' " \
    "ELSE '[' || category || ']' END, value FROM v_evals WHERE run_id = " param

/* One table for every format: the differing config paths (kind 'config'), then every final
 * metric ('metric', as stage:name) and evaluation ('eval', as benchmark:metric[category]). */
static const char compare_sql[] =
    "WITH ca AS (" CONFIG_LEAVES("?1") "), cb AS (" CONFIG_LEAVES("?2") "), "
    "ck AS (SELECT path FROM ca UNION SELECT path FROM cb), "
    "ra AS (" RUN_RESULTS("?1") "), rb AS (" RUN_RESULTS("?2") "), "
    "rk AS (SELECT kind, name FROM ra UNION SELECT kind, name FROM rb) "
    "SELECT kind, name, a, b, delta FROM ("
    " SELECT 0 AS o, 'config' AS kind, ck.path AS name, ca.value AS a, cb.value AS b, NULL AS delta"
    " FROM ck LEFT JOIN ca USING (path) LEFT JOIN cb USING (path) WHERE ca.value IS NOT cb.value"
    " UNION ALL"
    " SELECT CASE rk.kind WHEN 'metric' THEN 1 ELSE 2 END, rk.kind, rk.name, ra.value, rb.value,"
    " rb.value - ra.value FROM rk LEFT JOIN ra USING (kind, name) LEFT JOIN rb USING (kind, name)"
    ") ORDER BY o, name";

int cmd_compare(int argc, char **argv) {
    common_opts o = {NULL, QUERY_TABLE};
    const char *sweep = NULL;
    int done;
    int rc = run_args("compare", argc, argv, 2, compare_usage, &o, &sweep, &done);
    if (done) return CG_OK;
    sqlite3 *db = NULL;
    int64_t a = 0, b = 0;
    if (!rc) rc = open_ro(&o, &db);
    if (!rc) rc = find_run(db, argv[optind], sweep, &a);
    if (!rc) rc = find_run(db, argv[optind + 1], sweep, &b);
    sqlite3_stmt *st = NULL;
    if (!rc) rc = prep(db, compare_sql, &st);
    if (!rc) {
        sqlite3_bind_int64(st, 1, a);
        sqlite3_bind_int64(st, 2, b);
        if (o.fmt == QUERY_TABLE) printf("a = run %lld, b = run %lld; delta = b - a\n\n", (long long)a, (long long)b);
        rc = query_print(db, st, o.fmt, stdout, NULL);
    }
    sqlite3_finalize(st);
    store_close(db);
    return cg_report(rc);
}
