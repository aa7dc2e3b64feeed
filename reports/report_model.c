/* report_model.c: loads a sweep's results from the database and computes the report's numbers
 * (cells with their intervals, the CG-VLM headline, loss curves). Reads only the v_* views and
 * the sweeps, runs, run_params, run_tasks, tasks (env_id) and environments tables. */
#include "reports/report.h"
#include "reports/stats.h"
#include "util/json.h"
#include "util/util.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AX_LAMBDA "align.lambda"
#define AX_FRACTION "instruct.fraction"

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return cg_err(CG_EFAIL, "cannot query results db: %s (is it a cgvlm results db?)", sqlite3_errmsg(db));
    return CG_OK;
}

static int step_err(sqlite3 *db, sqlite3_stmt *st) {
    sqlite3_finalize(st);
    return cg_err(CG_EFAIL, "cannot read results db: %s", sqlite3_errmsg(db));
}

static char *col_str(sqlite3_stmt *st, int i) {
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? cg_strdup((const char *)s) : NULL;
}

static double col_num(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

const char *report_ci_name(int ci) {
    switch (ci) {
    case REPORT_CI_T: return "95 % t-interval over seeds";
    case REPORT_CI_BOOT_Q: return "95 % bootstrap interval over benchmark questions, single seed";
    case REPORT_CI_BOOT_SEEDS: return "95 % bootstrap interval over seeds";
    default: return "no interval (one replicate)";
    }
}

char *report_fmt_x(const report_model *m, double x) {
    if (m->cg) return cg_fmt("%g %%", x * 100.0);
    return cg_fmt("%g", x);
}

double report_smallest_95(const report_model *m, int line, int confident) {
    if (isnan(m->base_value) || m->primary < 0) return NAN;
    for (int k = 0; k < m->nx; k++) {
        const report_cell *c = REPORT_CELL(m, m->primary, line, k);
        if (!c->n) continue;
        if (!confident && c->ci.mean >= 0.95 * m->base_value) return m->xs[k];
        if (confident)
            for (int i = 0; i < m->nheads; i++)
                if (m->heads[i].line == line && m->heads[i].xi == k && m->heads[i].ratio.lo >= 0.95) return m->xs[k];
    }
    return NAN;
}

/* ------------------------------------------------------------------ sweep, axes, runs */

static int load_sweep(sqlite3 *db, const char *sweep, report_model *m, int64_t *sweep_id) {
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT sweep_id, spec_json, axes_json, code_version, created_at FROM sweeps WHERE name = ?", &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, sweep, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *sweep_id = sqlite3_column_int64(st, 0);
        m->spec_json = col_str(st, 1);
        m->axes_json = col_str(st, 2);
        m->code_version = col_str(st, 3);
        m->created_at = col_num(st, 4);
        sqlite3_finalize(st);
        return CG_OK;
    }
    if (s != SQLITE_DONE) return step_err(db, st);
    sqlite3_finalize(st);
    /* Unknown: say which sweeps there are. */
    cg_buf names;
    cg_buf_init(&names);
    if ((rc = prep(db, "SELECT name FROM sweeps ORDER BY name", &st))) return rc;
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n++ < 20) cg_buf_addf(&names, "%s'%s'", n > 1 ? ", " : "", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    if (n > 20) cg_buf_addf(&names, ", ... (%d in all)", n);
    rc = n ? cg_err(CG_EUSER, "no sweep named '%s' in the results db; sweeps there: %s", sweep, names.data)
           : cg_err(CG_EUSER, "no sweep named '%s': the results db has no sweeps yet; run 'cgvlm sweep' first", sweep);
    cg_buf_free(&names);
    return rc;
}

static int load_axes(report_model *m) {
    cJSON *j = NULL;
    int rc = cg_json_parse(m->axes_json, "sweeps.axes_json", &j);
    if (rc) return rc;
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return cg_err(CG_EUSER, "sweep '%s': axes_json is not a JSON array", m->sweep);
    }
    m->axes = cg_calloc((size_t)cJSON_GetArraySize(j) + 1, sizeof *m->axes);
    const cJSON *a;
    cJSON_ArrayForEach(a, j) {
        if (cJSON_IsString(a) && strcmp(a->valuestring, "seed") != 0) m->axes[m->naxes++] = cg_strdup(a->valuestring);
    }
    cJSON_Delete(j);
    return CG_OK;
}

static int find_axis(const report_model *m, const char *path) {
    for (int i = 0; i < m->naxes; i++)
        if (!strcmp(m->axes[i], path)) return i;
    return -1;
}

static int find_run(const report_model *m, int64_t id) {
    int lo = 0, hi = m->nruns - 1;   /* runs are sorted by id */
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (m->runs[mid].id == id) return mid;
        if (m->runs[mid].id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static int load_runs(sqlite3 *db, int64_t sweep_id, report_model *m) {
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT r.run_id, r.name, r.seed, r.lambda, v.state FROM runs r JOIN v_runs v USING (run_id) "
                      "WHERE r.sweep_id = ? ORDER BY r.run_id", &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sweep_id);
    int cap = 0, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (m->nruns == cap) {
            cap = cap ? 2 * cap : 64;
            m->runs = cg_realloc(m->runs, (size_t)cap * sizeof *m->runs);
        }
        report_run *r = &m->runs[m->nruns++];
        memset(r, 0, sizeof *r);
        r->id = sqlite3_column_int64(st, 0);
        r->name = col_str(st, 1);
        r->seed = sqlite3_column_int(st, 2);
        r->lambda = col_num(st, 3);
        r->state = col_str(st, 4);
        r->vals = cg_calloc((size_t)m->naxes + 1, sizeof *r->vals);
        r->nums = cg_malloc(((size_t)m->naxes + 1) * sizeof *r->nums);
        for (int a = 0; a < m->naxes; a++) r->nums[a] = NAN;
        r->line = r->xi = -1;
        if (!strcmp(r->state, "done")) m->n_done++;
        else if (!strcmp(r->state, "failed")) m->n_failed++;
        else m->n_other++;
    }
    if (s != SQLITE_DONE) return step_err(db, st);
    sqlite3_finalize(st);

    if ((rc = prep(db, "SELECT p.run_id, p.path, p.value_json, p.value_num FROM run_params p "
                       "JOIN runs r USING (run_id) WHERE r.sweep_id = ?", &st)))
        return rc;
    sqlite3_bind_int64(st, 1, sweep_id);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int ri = find_run(m, sqlite3_column_int64(st, 0));
        int ai = find_axis(m, (const char *)sqlite3_column_text(st, 1));
        if (ri < 0 || ai < 0) continue;
        free(m->runs[ri].vals[ai]);
        m->runs[ri].vals[ai] = col_str(st, 2);
        m->runs[ri].nums[ai] = col_num(st, 3);
    }
    if (s != SQLITE_DONE) return step_err(db, st);
    sqlite3_finalize(st);
    return CG_OK;
}

/* ------------------------------------------------------------------ lines and the x axis */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Orders runs by their axis values other than x: numbers numerically, the rest as text. */
static const report_model *sort_model;
static int cmp_line(const void *pa, const void *pb) {
    const report_line *la = pa, *lb = pb;
    const report_run *a = &sort_model->runs[la->exemplar], *b = &sort_model->runs[lb->exemplar];
    for (int i = 0; i < sort_model->naxes; i++) {
        if (i == sort_model->xaxis) continue;
        if (!isnan(a->nums[i]) && !isnan(b->nums[i])) {
            if (a->nums[i] != b->nums[i]) return a->nums[i] < b->nums[i] ? -1 : 1;
        } else {
            int c = strcmp(a->vals[i] ? a->vals[i] : "", b->vals[i] ? b->vals[i] : "");
            if (c) return c;
        }
    }
    return 0;
}

static char *axes_key(const report_model *m, const report_run *r, int skip_lambda) {
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, "");
    for (int i = 0; i < m->naxes; i++) {
        if (i == m->xaxis || (skip_lambda && !strcmp(m->axes[i], AX_LAMBDA))) continue;
        cg_buf_addf(&b, "%s%s=%s", b.len ? ", " : "", m->axes[i], r->vals[i] ? r->vals[i] : "?");
    }
    return cg_buf_steal(&b);
}

static void build_lines(report_model *m) {
    int ia = find_axis(m, AX_LAMBDA), ifr = find_axis(m, AX_FRACTION);
    m->cg = ia >= 0 && ifr >= 0;
    m->xaxis = -1;
    if (m->cg) m->xaxis = ifr;
    for (int a = 0; a < m->naxes && m->xaxis < 0; a++) {
        int numeric = m->nruns > 0;
        for (int r = 0; r < m->nruns; r++)
            if (isnan(m->runs[r].nums[a])) numeric = 0;
        if (numeric) m->xaxis = a;
    }
    /* x values */
    m->xs = cg_malloc(((size_t)m->nruns + 1) * sizeof *m->xs);
    if (m->xaxis >= 0) {
        for (int r = 0; r < m->nruns; r++)
            if (!isnan(m->runs[r].nums[m->xaxis])) m->xs[m->nx++] = m->runs[r].nums[m->xaxis];
        qsort(m->xs, (size_t)m->nx, sizeof *m->xs, cmp_double);
        int k = 0;
        for (int i = 0; i < m->nx; i++)
            if (k == 0 || m->xs[i] != m->xs[k - 1]) m->xs[k++] = m->xs[i];
        m->nx = k;
    } else {
        m->xs[m->nx++] = NAN;
    }
    /* lines */
    m->lines = cg_calloc((size_t)m->nruns + 1, sizeof *m->lines);
    for (int r = 0; r < m->nruns; r++) {
        char *key = axes_key(m, &m->runs[r], 0);
        int l = 0;
        while (l < m->nlines && strcmp(m->lines[l].key, key)) l++;
        if (l == m->nlines) {
            report_line *ln = &m->lines[m->nlines++];
            ln->key = key;
            ln->other = axes_key(m, &m->runs[r], 1);
            ln->exemplar = r;
            ln->lambda = m->cg ? m->runs[r].nums[ia] : NAN;
            ln->base = -1;
        } else {
            free(key);
        }
    }
    sort_model = m;
    qsort(m->lines, (size_t)m->nlines, sizeof *m->lines, cmp_line);
    for (int l = 0; l < m->nlines; l++) {
        report_line *ln = &m->lines[l];
        if (m->cg && !isnan(ln->lambda)) {
            const char *what = ln->lambda > 0 ? "contrastive" : "generative only";
            ln->label = ln->other[0] ? cg_fmt("%s (λ = %g; %s)", what, ln->lambda, ln->other)
                                     : cg_fmt("%s (λ = %g)", what, ln->lambda);
        } else {
            ln->label = cg_strdup(ln->key[0] ? ln->key : "all runs");
        }
    }
    for (int l = 0; l < m->nlines && m->cg; l++)
        for (int b = 0; b < m->nlines; b++)
            if (m->lines[l].lambda > 0 && m->lines[b].lambda == 0 && !strcmp(m->lines[l].other, m->lines[b].other))
                m->lines[l].base = b;
    for (int r = 0; r < m->nruns; r++) {
        report_run *run = &m->runs[r];
        char *key = axes_key(m, run, 0);
        for (int l = 0; l < m->nlines; l++)
            if (!strcmp(m->lines[l].key, key)) run->line = l;
        free(key);
        if (m->xaxis < 0) run->xi = 0;
        else
            for (int k = 0; k < m->nx; k++)
                if (run->nums[m->xaxis] == m->xs[k]) run->xi = k;
    }
}

/* ------------------------------------------------------------------ evaluations and cells */

static int find_metric(report_model *m, const char *bench, const char *metric, int add) {
    for (int i = 0; i < m->nmetrics; i++)
        if (!strcmp(m->metrics[i].bench, bench) && !strcmp(m->metrics[i].metric, metric)) return i;
    if (!add) return -1;
    m->metrics = cg_realloc(m->metrics, ((size_t)m->nmetrics + 1) * sizeof *m->metrics);
    report_metric *mt = &m->metrics[m->nmetrics];
    mt->bench = cg_strdup(bench);
    mt->metric = cg_strdup(metric);
    mt->is_acc = !strncmp(metric, "accuracy", 8);
    return m->nmetrics++;
}

static void cell_add(report_cell *c, int run, double v) {
    c->runs = cg_realloc(c->runs, ((size_t)c->n + 1) * sizeof *c->runs);
    c->vals = cg_realloc(c->vals, ((size_t)c->n + 1) * sizeof *c->vals);
    c->runs[c->n] = run;
    c->vals[c->n++] = v;
}

/* Per-question correctness of one run (questions sorted by id, bytewise). */
typedef struct {
    int n;
    char **qid;
    unsigned char *ok;
} preds;

static void preds_free(preds *p) {
    for (int i = 0; i < p->n; i++) free(p->qid[i]);
    free(p->qid);
    free(p->ok);
    memset(p, 0, sizeof *p);
}

static int load_preds(sqlite3 *db, int64_t run_id, const char *bench, const char *metric, preds *p) {
    memset(p, 0, sizeof *p);
    const char *method = strchr(metric, '_') ? strchr(metric, '_') + 1 : metric;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT question_id, correct FROM v_predictions WHERE run_id = ? AND benchmark = ? AND method = ? "
                      "ORDER BY question_id", &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, bench, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, method, -1, SQLITE_STATIC);
    int cap = 0, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (p->n == cap) {
            cap = cap ? 2 * cap : 256;
            p->qid = cg_realloc(p->qid, (size_t)cap * sizeof *p->qid);
            p->ok = cg_realloc(p->ok, (size_t)cap);
        }
        p->qid[p->n] = col_str(st, 0);
        p->ok[p->n++] = sqlite3_column_int(st, 1) != 0;
    }
    if (s != SQLITE_DONE) {
        preds_free(p);
        return step_err(db, st);
    }
    sqlite3_finalize(st);
    return CG_OK;
}

/* The questions two runs share, as two aligned 0/1 columns. */
static int pair_preds(const preds *a, const preds *b, unsigned char **ca, unsigned char **cb) {
    int n = 0, i = 0, j = 0;
    *ca = cg_malloc((size_t)a->n + 1);
    *cb = cg_malloc((size_t)a->n + 1);
    while (i < a->n && j < b->n) {
        int c = strcmp(a->qid[i], b->qid[j]);
        if (c == 0) {
            (*ca)[n] = a->ok[i++];
            (*cb)[n++] = b->ok[j++];
        } else if (c < 0) i++;
        else j++;
    }
    return n;
}

static void ci_none(report_ci *ci, double mean, int n) {
    memset(ci, 0, sizeof *ci);
    ci->n = n;
    ci->mean = mean;
    ci->lo = ci->hi = ci->tq = NAN;
    ci->ci = REPORT_CI_NONE;
}

static void ci_from_values(report_ci *ci, const double *v, int n) {
    ci_none(ci, stats_mean(v, (size_t)n), n);
    ci->sd = stats_sd(v, (size_t)n);
    if (n >= 2) {
        stats_t_interval(v, (size_t)n, 0.05, &ci->lo, &ci->hi, &ci->tq);
        ci->ci = REPORT_CI_T;
    }
}

/* A question bootstrap over one run (STATS_MEAN) or a pair of runs (STATS_RATIO / STATS_DIFF). */
static int ci_boot_questions(sqlite3 *db, report_model *m, int metric, int r0, int r1, int stat,
                             char *label, report_ci *ci) {
    preds a, b;
    const report_metric *mt = &m->metrics[metric];
    int rc = load_preds(db, m->runs[r0].id, mt->bench, mt->metric, &a);
    if (rc) return rc;
    if ((rc = load_preds(db, m->runs[r1 >= 0 ? r1 : r0].id, mt->bench, mt->metric, &b))) {
        preds_free(&a);
        return rc;
    }
    unsigned char *ca, *cb;
    int nq = pair_preds(&a, &b, &ca, &cb);
    if (nq > 0) {
        const unsigned char *cols[2] = {ca, cb};
        stats_boot_questions(cols, (size_t)nq, stat, m->B, m->seed, label, &ci->lo, &ci->hi);
        ci->ci = REPORT_CI_BOOT_Q;
        ci->boot_label = label;
        label = NULL;
    }
    free(label);
    free(ca);
    free(cb);
    preds_free(&a);
    preds_free(&b);
    return CG_OK;
}

static int load_evals(sqlite3 *db, report_model *m) {
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT run_id, benchmark, metric, category, value FROM v_evals WHERE sweep = ? "
                      "ORDER BY benchmark, metric, category, run_id", &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->sweep, -1, SQLITE_STATIC);
    typedef struct { int run, metric; char *cat; double v; } row;
    row *rows = NULL;
    int n = 0, cap = 0, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int ri = find_run(m, sqlite3_column_int64(st, 0));
        if (ri < 0 || m->runs[ri].line < 0 || m->runs[ri].xi < 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            rows = cg_realloc(rows, (size_t)cap * sizeof *rows);
        }
        rows[n].run = ri;
        rows[n].metric = find_metric(m, (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2), 1);
        rows[n].cat = col_str(st, 3);
        rows[n++].v = sqlite3_column_double(st, 4);
    }
    if (s != SQLITE_DONE) {
        free(rows);
        return step_err(db, st);
    }
    sqlite3_finalize(st);
    if (n == 0) {
        free(rows);
        return cg_err(CG_EUSER, "sweep '%s' has no evaluation results yet (%d runs: %d done, %d failed, %d other); "
                                "run or resume it with 'cgvlm sweep' first", m->sweep, m->nruns, m->n_done, m->n_failed, m->n_other);
    }
    /* primary metric: accuracy_likelihood on a benchmark other than alignment, else any accuracy */
    m->primary = -1;
    for (int i = 0; i < m->nmetrics; i++)
        if (m->metrics[i].is_acc && strcmp(m->metrics[i].bench, "alignment") &&
            (m->primary < 0 || (!strcmp(m->metrics[i].metric, "accuracy_likelihood") &&
                                strcmp(m->metrics[m->primary].metric, "accuracy_likelihood"))))
            m->primary = i;
    size_t ncells = (size_t)m->nmetrics * m->nlines * m->nx;
    m->cells = cg_calloc(ncells + 1, sizeof *m->cells);
    m->cats = cg_calloc((size_t)n + 1, sizeof *m->cats);
    for (int i = 0; i < n; i++) {
        const report_run *r = &m->runs[rows[i].run];
        if (rows[i].cat[0] == 0) {
            cell_add(REPORT_CELL(m, rows[i].metric, r->line, r->xi), rows[i].run, rows[i].v);
        } else if (rows[i].metric == m->primary) {
            int c = 0;
            while (c < m->ncats && strcmp(m->cats[c], rows[i].cat)) c++;
            if (c == m->ncats) m->cats[m->ncats++] = cg_strdup(rows[i].cat);
        }
    }
    m->catcells = cg_calloc((size_t)m->ncats * m->nlines * m->nx + 1, sizeof *m->catcells);
    for (int i = 0; i < n; i++) {
        const report_run *r = &m->runs[rows[i].run];
        if (rows[i].cat[0] && rows[i].metric == m->primary) {
            int c = 0;
            while (strcmp(m->cats[c], rows[i].cat)) c++;
            cell_add(REPORT_CATCELL(m, c, r->line, r->xi), rows[i].run, rows[i].v);
        }
        free(rows[i].cat);
    }
    free(rows);
    for (size_t i = 0; i < (size_t)m->ncats * m->nlines * m->nx; i++)
        ci_from_values(&m->catcells[i].ci, m->catcells[i].vals, m->catcells[i].n);
    /* overall cells: t over seeds, or a question bootstrap for a single seed */
    for (int mt = 0; mt < m->nmetrics; mt++)
        for (int l = 0; l < m->nlines; l++)
            for (int k = 0; k < m->nx; k++) {
                report_cell *c = REPORT_CELL(m, mt, l, k);
                ci_from_values(&c->ci, c->vals, c->n);
                if (mt == m->primary && c->n > m->max_seeds) m->max_seeds = c->n;
                if (c->n == 1 && m->metrics[mt].is_acc) {
                    char *label = cg_fmt("acc|%s|%s|%s|x=%.17g", m->metrics[mt].bench, m->metrics[mt].metric,
                                         m->lines[l].key, m->xs[k]);
                    if ((rc = ci_boot_questions(db, m, mt, c->runs[0], -1, STATS_MEAN, label, &c->ci))) return rc;
                }
            }
    return CG_OK;
}

/* ------------------------------------------------------------------ the CG-VLM headline */

/* The paired test over seeds of differences d[n] (n >= 2): t = mean/(sd/√n), df = n − 1. */
static void test_seeds(report_test *t, const double *d, int n) {
    double mean = stats_mean(d, (size_t)n), sd = stats_sd(d, (size_t)n);
    t->method = REPORT_TEST_T;
    t->df = n - 1;
    if (sd > 0) {
        t->t = mean / (sd / sqrt((double)n));
        t->p = stats_t_p2(t->t, t->df);
    } else {   /* every pair differs by the same amount */
        t->t = mean > 0 ? INFINITY : mean < 0 ? -INFINITY : NAN;
        t->p = mean != 0 ? 0.0 : 1.0;
    }
    t->mde = stats_mde(sd, n, REPORT_ALPHA, REPORT_POWER);
}

/* One seed: the exact sign-flip test over the questions both runs answered, and the question-level
 * MDE (paired t power over questions, from the sd of the per-question differences). */
static int test_questions(sqlite3 *db, report_model *m, int metric, int r_on, int r_off, report_test *t) {
    preds a, b;
    const report_metric *mt = &m->metrics[metric];
    int rc = load_preds(db, m->runs[r_on].id, mt->bench, mt->metric, &a);
    if (rc) return rc;
    if ((rc = load_preds(db, m->runs[r_off].id, mt->bench, mt->metric, &b))) {
        preds_free(&a);
        return rc;
    }
    unsigned char *ca, *cb;
    int nq = pair_preds(&a, &b, &ca, &cb);
    if (nq > 0) {
        double *d = cg_malloc((size_t)nq * sizeof *d);
        t->b = t->c = 0;
        for (int i = 0; i < nq; i++) {
            t->b += ca[i] && !cb[i];
            t->c += !ca[i] && cb[i];
            d[i] = (double)ca[i] - (double)cb[i];
        }
        t->method = REPORT_TEST_SIGNFLIP;
        t->nq = nq;
        t->p = stats_signflip_p2(t->b, t->c);
        t->mde = nq >= 2 ? stats_mde(stats_sd(d, (size_t)nq), nq, REPORT_ALPHA, REPORT_POWER) : NAN;
        free(d);
    }
    free(ca);
    free(cb);
    preds_free(&a);
    preds_free(&b);
    return CG_OK;
}

/* Holm over the rows of each contrastive line, and the MDE at α/K. */
static void holm_by_line(report_model *m) {
    double *p = cg_malloc(((size_t)m->nheads + 1) * sizeof *p), *adj = cg_malloc(((size_t)m->nheads + 1) * sizeof *adj);
    int *idx = cg_malloc(((size_t)m->nheads + 1) * sizeof *idx);
    for (int l = 0; l < m->nlines; l++) {
        int k = 0, nfinite = 0;
        for (int i = 0; i < m->nheads; i++)
            if (m->heads[i].line == l) {
                idx[k] = i;
                p[k++] = m->heads[i].test.p;
                nfinite += !isnan(m->heads[i].test.p);
            }
        if (!k) continue;
        stats_holm(p, (size_t)k, adj);
        for (int j = 0; j < k; j++) {
            report_test *t = &m->heads[idx[j]].test;
            t->p_holm = adj[j];
            t->holm_k = isnan(t->p) ? 0 : nfinite;
            if (t->method == REPORT_TEST_T && nfinite > 0) {
                double sd = m->heads[idx[j]].diff.sd;
                t->mde_holm = stats_mde(sd, (int)t->df + 1, REPORT_ALPHA / nfinite, REPORT_POWER);
            }
        }
    }
    free(p);
    free(adj);
    free(idx);
}

void report_target(report_model *m, double effect) {
    assert(effect > 0);
    m->target_effect = effect;
    for (int i = 0; i < m->nheads; i++) {
        report_head *h = &m->heads[i];
        h->test.seeds_needed = h->test.method == REPORT_TEST_T
                                   ? stats_n_needed(effect, h->diff.sd, REPORT_ALPHA, REPORT_POWER, REPORT_SEEDS_MAX)
                                   : -1;
    }
}

static int build_headline(sqlite3 *db, report_model *m) {
    m->base_line = -1;
    m->base_value = NAN;
    if (!m->cg || m->primary < 0 || m->nx == 0) return CG_OK;
    int p = m->primary, full = m->nx - 1, rc;
    m->heads = cg_calloc((size_t)m->nlines * m->nx + 1, sizeof *m->heads);
    for (int l = 0; l < m->nlines; l++) {
        int b = m->lines[l].base;
        if (b < 0) continue;
        const report_cell *base = REPORT_CELL(m, p, b, full);
        if (base->n == 0) continue;
        if (m->base_line < 0) {
            m->base_line = b;
            m->base_value = base->ci.mean;
        }
        for (int k = 0; k < m->nx; k++) {
            const report_cell *on = REPORT_CELL(m, p, l, k), *off = REPORT_CELL(m, p, b, k);
            if (on->n == 0) continue;
            report_head *h = &m->heads[m->nheads++];
            h->line = l;
            h->xi = k;
            h->test.method = REPORT_TEST_NONE;
            h->test.t = h->test.df = h->test.p = h->test.p_holm = h->test.mde = h->test.mde_holm = NAN;
            /* ratio: on(f) / off(100 %) */
            ci_none(&h->ratio, on->ci.mean / base->ci.mean, on->n);
            char *label = cg_fmt("ratio|%s|%s|%s|x=%.17g", m->metrics[p].bench, m->metrics[p].metric, m->lines[l].key, m->xs[k]);
            if (on->n >= 2 && base->n >= 2) {
                stats_boot_ratio_seeds(on->vals, (size_t)on->n, base->vals, (size_t)base->n, m->B, m->seed, label,
                                       &h->ratio.lo, &h->ratio.hi);
                h->ratio.ci = REPORT_CI_BOOT_SEEDS;
                h->ratio.boot_label = label;
            } else if ((rc = ci_boot_questions(db, m, p, on->runs[0], base->runs[0], STATS_RATIO, label, &h->ratio))) {
                return rc;
            }
            /* difference on(f) − off(f), paired by seed */
            double *d = cg_malloc(((size_t)on->n + 1) * sizeof *d);
            int nd = 0, r_on = -1, r_off = -1;
            for (int i = 0; i < on->n; i++)
                for (int j = 0; j < off->n; j++)
                    if (m->runs[on->runs[i]].seed == m->runs[off->runs[j]].seed) {
                        d[nd++] = on->vals[i] - off->vals[j];
                        r_on = on->runs[i];
                        r_off = off->runs[j];
                    }
            if (nd > 0) ci_from_values(&h->diff, d, nd);
            else ci_none(&h->diff, NAN, 0);
            if (nd >= 2) test_seeds(&h->test, d, nd);
            free(d);
            if (nd == 1) {
                label = cg_fmt("diff|%s|%s|%s|x=%.17g", m->metrics[p].bench, m->metrics[p].metric, m->lines[l].key, m->xs[k]);
                if ((rc = ci_boot_questions(db, m, p, r_on, r_off, STATS_DIFF, label, &h->diff))) return rc;
                if ((rc = test_questions(db, m, p, r_on, r_off, &h->test))) return rc;
            }
        }
    }
    holm_by_line(m);
    return CG_OK;
}

/* ------------------------------------------------------------------ chance, counts, environment */

static int load_chance(sqlite3 *db, report_model *m) {
    m->chance = NAN;
    if (m->primary < 0) return CG_OK;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT AVG(1.0 / json_array_length(scores_json)) FROM v_predictions "
                      "WHERE sweep = ? AND benchmark = ? AND method = 'likelihood' AND json_valid(scores_json) "
                      "AND json_type(scores_json) = 'array' AND json_array_length(scores_json) > 0", &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->sweep, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->metrics[m->primary].bench, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) m->chance = col_num(st, 0);
    sqlite3_finalize(st);
    return CG_OK;
}

static int load_envs(sqlite3 *db, int64_t sweep_id, report_model *m) {
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT e.code_version, e.compiler, e.blas, e.cuda, e.driver, e.device, e.host, e.os, "
                      "COUNT(DISTINCT t.task_id) "
                      "FROM environments e JOIN tasks t ON t.env_id = e.env_id JOIN run_tasks rt ON rt.task_id = t.task_id "
                      "JOIN runs r ON r.run_id = rt.run_id WHERE r.sweep_id = ? GROUP BY e.env_id ORDER BY e.env_id", &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sweep_id);
    static const char *names[] = {"code", "compiler", "blas", "cuda", "driver", "device", "host", "os"};
    while (sqlite3_step(st) == SQLITE_ROW) {
        cg_buf b;
        cg_buf_init(&b);
        for (int i = 0; i < 8; i++) {
            const unsigned char *v = sqlite3_column_text(st, i);
            if (v && *v) cg_buf_addf(&b, "%s%s: %s", b.len ? "; " : "", names[i], v);
        }
        cg_buf_addf(&b, "%s%d tasks", b.len ? "; " : "", sqlite3_column_int(st, 8));
        m->envs = cg_realloc(m->envs, ((size_t)m->nenvs + 1) * sizeof *m->envs);
        m->envs[m->nenvs++] = cg_buf_steal(&b);
    }
    sqlite3_finalize(st);
    return CG_OK;
}

/* ------------------------------------------------------------------ loss curves */

typedef struct {
    int64_t id;
    char *kind;
    int con_min, con_max, has_lambda;
    double frac_max;
} task_info;

static int cmp_task(const void *a, const void *b) {
    int64_t x = ((const task_info *)a)->id, y = ((const task_info *)b)->id;
    return (x > y) - (x < y);
}

static int cmp_point(const void *a, const void *b) {
    const double *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

static const char *task_group(const task_info *t) {
    if (!t->has_lambda) return "all";
    if (t->con_min != t->con_max) return "shared by on and off";
    return t->con_max ? "contrastive" : "generative only";
}

static int load_losses(sqlite3 *db, int64_t sweep_id, report_model *m) {
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT rt.task_id, t.kind, MIN(r.lambda > 0), MAX(r.lambda > 0), COUNT(r.lambda), MAX(r.fraction) "
                      "FROM run_tasks rt JOIN runs r ON r.run_id = rt.run_id JOIN tasks t ON t.task_id = rt.task_id "
                      "WHERE r.sweep_id = ? GROUP BY rt.task_id ORDER BY rt.task_id", &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sweep_id);
    task_info *tasks = NULL;
    int nt = 0, cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (nt == cap) {
            cap = cap ? 2 * cap : 64;
            tasks = cg_realloc(tasks, (size_t)cap * sizeof *tasks);
        }
        task_info *t = &tasks[nt++];
        t->id = sqlite3_column_int64(st, 0);
        t->kind = col_str(st, 1);
        t->con_min = sqlite3_column_int(st, 2);
        t->con_max = sqlite3_column_int(st, 3);
        t->has_lambda = sqlite3_column_int(st, 4) > 0;
        t->frac_max = col_num(st, 5);
    }
    sqlite3_finalize(st);
    /* A stage whose tasks differ in fraction (instruct) is shown at its largest fraction. */
    cg_buf note;
    cg_buf_init(&note);
    int *drop = cg_calloc((size_t)nt + 1, sizeof *drop);
    char **dropped_kind = cg_calloc((size_t)nt + 1, sizeof *dropped_kind);
    double *stage_fmax = cg_calloc((size_t)nt + 1, sizeof *stage_fmax);
    for (int i = 0; i < nt; i++) {
        double fmax = -INFINITY, fmin = INFINITY;
        for (int j = 0; j < nt; j++)
            if (!strcmp(tasks[j].kind, tasks[i].kind) && !isnan(tasks[j].frac_max)) {
                if (tasks[j].frac_max > fmax) fmax = tasks[j].frac_max;
                if (tasks[j].frac_max < fmin) fmin = tasks[j].frac_max;
            }
        if (fmin < fmax && tasks[i].frac_max < fmax) {
            drop[i] = 1;
            dropped_kind[i] = cg_strdup(tasks[i].kind);
            stage_fmax[i] = fmax;
        }
    }
    for (int i = 0; i < nt; i++)
        if (drop[i]) tasks[i].kind[0] = 0;
    free(drop);
    if ((rc = prep(db, "SELECT task_id, stage, metric, step, value FROM v_metrics WHERE task_id IN "
                       "(SELECT rt.task_id FROM run_tasks rt JOIN runs r ON r.run_id = rt.run_id WHERE r.sweep_id = ?) "
                       "AND metric IN ('loss', 'loss_gen', 'loss_con') ORDER BY stage, metric, task_id, step", &st))) {
        for (int i = 0; i < nt; i++) free(tasks[i].kind), free(dropped_kind[i]);
        free(dropped_kind);
        free(stage_fmax);
        free(tasks);
        cg_buf_free(&note);
        return rc;
    }
    sqlite3_bind_int64(st, 1, sweep_id);
    int64_t last_task = -1;
    report_series *last = NULL;
    while (sqlite3_step(st) == SQLITE_ROW) {
        task_info key = {.id = sqlite3_column_int64(st, 0)};
        task_info *t = bsearch(&key, tasks, (size_t)nt, sizeof *tasks, cmp_task);
        if (!t || !t->kind[0]) continue;
        const char *group = task_group(t), *metric = (const char *)sqlite3_column_text(st, 2);
        report_series *s = NULL;
        for (int i = 0; i < m->nseries && !s; i++)
            if (!strcmp(m->series[i].stage, t->kind) && !strcmp(m->series[i].group, group) && !strcmp(m->series[i].metric, metric))
                s = &m->series[i];
        if (!s) {
            m->series = cg_realloc(m->series, ((size_t)m->nseries + 1) * sizeof *m->series);
            s = &m->series[m->nseries++];
            memset(s, 0, sizeof *s);
            s->stage = cg_strdup(t->kind);
            s->group = cg_strdup(group);
            s->metric = cg_strdup(metric);
        }
        if (s != last || t->id != last_task) s->ntasks++;
        last = s;
        last_task = t->id;
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 256;
            s->step = cg_realloc(s->step, (size_t)s->cap * 2 * sizeof *s->step);
        }
        s->step[2 * s->n] = sqlite3_column_double(st, 3);
        s->step[2 * s->n++ + 1] = sqlite3_column_double(st, 4);
    }
    sqlite3_finalize(st);
    /* mean over tasks at each step: sort (step, value) pairs by step and merge */
    for (int i = 0; i < m->nseries; i++) {
        report_series *s = &m->series[i];
        qsort(s->step, (size_t)s->n, 2 * sizeof *s->step, cmp_point);
        double *pts = s->step;
        s->step = cg_malloc(((size_t)s->n + 1) * sizeof *s->step);
        s->val = cg_malloc(((size_t)s->n + 1) * sizeof *s->val);
        int k = 0;
        for (int j = 0; j < s->n;) {
            int e = j;
            double sum = 0;
            while (e < s->n && pts[2 * e] == pts[2 * j]) sum += pts[2 * e++ + 1];
            s->step[k] = pts[2 * j];
            s->val[k++] = sum / (e - j);
            j = e;
        }
        s->n = k;
        free(pts);
    }
    /* say which stages show only their largest-fraction tasks */
    for (int i = 0; i < m->nseries; i++) {
        int first = 1;
        for (int j = 0; j < i; j++) first &= strcmp(m->series[j].stage, m->series[i].stage) != 0;
        if (!first) continue;
        for (int k = 0; k < nt; k++)
            if (dropped_kind[k] && !strcmp(dropped_kind[k], m->series[i].stage)) {
                cg_buf_addf(&note, "%s%s: the tasks at the largest fraction (%g %%)", note.len ? "; " : "",
                            m->series[i].stage, 100 * stage_fmax[k]);
                break;
            }
    }
    m->loss_note = note.len ? cg_buf_steal(&note) : NULL;
    cg_buf_free(&note);
    for (int i = 0; i < nt; i++) free(tasks[i].kind), free(dropped_kind[i]);
    free(dropped_kind);
    free(stage_fmax);
    free(tasks);
    return CG_OK;
}

/* ------------------------------------------------------------------ entry points */

int report_load(sqlite3 *db, const char *sweep, int B, uint64_t seed, report_model *m) {
    memset(m, 0, sizeof *m);
    m->sweep = cg_strdup(sweep);
    m->B = B;
    m->seed = seed;
    m->primary = m->base_line = -1;
    m->chance = m->base_value = m->target_effect = NAN;
    int64_t sweep_id = 0;
    int rc = load_sweep(db, sweep, m, &sweep_id);
    if (!rc) rc = load_axes(m);
    if (!rc) rc = load_runs(db, sweep_id, m);
    if (!rc) build_lines(m);
    if (!rc) rc = load_evals(db, m);
    if (!rc) rc = build_headline(db, m);
    if (!rc) rc = load_chance(db, m);
    if (!rc) rc = load_envs(db, sweep_id, m);
    if (!rc) rc = load_losses(db, sweep_id, m);
    return rc;
}

static void cells_free(report_cell *c, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(c[i].runs);
        free(c[i].vals);
        free(c[i].ci.boot_label);
    }
    free(c);
}

void report_free(report_model *m) {
    for (int r = 0; r < m->nruns; r++) {
        for (int a = 0; a < m->naxes; a++) free(m->runs[r].vals[a]);
        free(m->runs[r].vals);
        free(m->runs[r].nums);
        free(m->runs[r].name);
        free(m->runs[r].state);
    }
    free(m->runs);
    for (int l = 0; l < m->nlines; l++) {
        free(m->lines[l].key);
        free(m->lines[l].other);
        free(m->lines[l].label);
    }
    free(m->lines);
    if (m->cells) cells_free(m->cells, (size_t)m->nmetrics * m->nlines * m->nx);
    if (m->catcells) cells_free(m->catcells, (size_t)m->ncats * m->nlines * m->nx);
    for (int i = 0; i < m->nmetrics; i++) {
        free(m->metrics[i].bench);
        free(m->metrics[i].metric);
    }
    free(m->metrics);
    for (int i = 0; i < m->ncats; i++) free(m->cats[i]);
    free(m->cats);
    for (int i = 0; i < m->nheads; i++) {
        free(m->heads[i].ratio.boot_label);
        free(m->heads[i].diff.boot_label);
    }
    free(m->heads);
    for (int i = 0; i < m->nseries; i++) {
        free(m->series[i].stage);
        free(m->series[i].group);
        free(m->series[i].metric);
        free(m->series[i].step);
        free(m->series[i].val);
    }
    free(m->series);
    for (int i = 0; i < m->nenvs; i++) free(m->envs[i]);
    free(m->envs);
    for (int a = 0; a < m->naxes; a++) free(m->axes[a]);
    free(m->axes);
    free(m->xs);
    free(m->loss_note);
    free(m->sweep);
    free(m->spec_json);
    free(m->axes_json);
    free(m->code_version);
    memset(m, 0, sizeof *m);
}
