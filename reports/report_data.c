/* report_data.c: the report's machine-readable parts: CSV tables and summary.json (every number
 * the report shows, with the interval method and bootstrap labels, for scripts and tests). */
#include "reports/report.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void csv_field(cg_buf *b, const char *s, int last) {
    if (strpbrk(s, ",\"\n")) {
        cg_buf_adds(b, "\"");
        for (; *s; s++) {
            if (*s == '"') cg_buf_adds(b, "\"");
            cg_buf_add(b, s, 1);
        }
        cg_buf_adds(b, "\"");
    } else {
        cg_buf_adds(b, s);
    }
    cg_buf_adds(b, last ? "\n" : ",");
}

static void csv_num(cg_buf *b, double v, int last) {
    if (isnan(v)) cg_buf_adds(b, "");
    else cg_buf_addf(b, "%.10g", v);
    cg_buf_adds(b, last ? "\n" : ",");
}

static const char *ci_key(int ci) {
    switch (ci) {
    case REPORT_CI_T: return "t";
    case REPORT_CI_BOOT_Q: return "bootstrap_questions";
    case REPORT_CI_BOOT_SEEDS: return "bootstrap_seeds";
    default: return "none";
    }
}

static int save(const char *dir, const char *name, cg_buf *b) {
    char *p = cg_path_join(dir, name);
    int rc = cg_write_file_atomic(p, b->data ? b->data : "", b->len);
    free(p);
    cg_buf_free(b);
    return rc;
}

/* metrics.csv (all metrics) or data_efficiency.csv (accuracy metrics of a CG sweep). */
static int write_cells_csv(const report_model *m, const char *dir, const char *name, int acc_only) {
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_addf(&b, "benchmark,metric,line,%s,n,mean,sd,lo,hi,interval\n", m->cg ? "lambda,fraction" : "x");
    for (int mt = 0; mt < m->nmetrics; mt++) {
        if (acc_only && (!m->metrics[mt].is_acc || !strcmp(m->metrics[mt].bench, "alignment"))) continue;
        for (int l = 0; l < m->nlines; l++)
            for (int k = 0; k < m->nx; k++) {
                const report_cell *c = REPORT_CELL(m, mt, l, k);
                if (!c->n) continue;
                csv_field(&b, m->metrics[mt].bench, 0);
                csv_field(&b, m->metrics[mt].metric, 0);
                csv_field(&b, m->lines[l].key, 0);
                if (m->cg) csv_num(&b, m->lines[l].lambda, 0);
                csv_num(&b, m->xs[k], 0);
                cg_buf_addf(&b, "%d,", c->n);
                csv_num(&b, c->ci.mean, 0);
                csv_num(&b, c->ci.sd, 0);
                csv_num(&b, c->ci.lo, 0);
                csv_num(&b, c->ci.hi, 0);
                csv_field(&b, ci_key(c->ci.ci), 1);
            }
    }
    return save(dir, name, &b);
}

static int write_runs_csv(const report_model *m, const char *dir) {
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, "run_id,run,seed,line,x,benchmark,metric,value\n");
    for (int mt = 0; mt < m->nmetrics; mt++)
        for (size_t i = 0; i < (size_t)m->nlines * m->nx; i++) {
            const report_cell *c = &m->cells[(size_t)mt * m->nlines * m->nx + i];
            for (int j = 0; j < c->n; j++) {
                const report_run *r = &m->runs[c->runs[j]];
                cg_buf_addf(&b, "%lld,", (long long)r->id);
                csv_field(&b, r->name, 0);
                cg_buf_addf(&b, "%d,", r->seed);
                csv_field(&b, m->lines[r->line].key, 0);
                csv_num(&b, m->xs[r->xi], 0);
                csv_field(&b, m->metrics[mt].bench, 0);
                csv_field(&b, m->metrics[mt].metric, 0);
                csv_num(&b, c->vals[j], 1);
            }
        }
    return save(dir, "runs.csv", &b);
}

static int write_cats_csv(const report_model *m, const char *dir) {
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, "category,line,x,n,mean,lo,hi,interval\n");
    for (int c = 0; c < m->ncats; c++)
        for (int l = 0; l < m->nlines; l++)
            for (int k = 0; k < m->nx; k++) {
                const report_cell *cc = REPORT_CATCELL(m, c, l, k);
                if (!cc->n) continue;
                csv_field(&b, m->cats[c], 0);
                csv_field(&b, m->lines[l].key, 0);
                csv_num(&b, m->xs[k], 0);
                cg_buf_addf(&b, "%d,", cc->n);
                csv_num(&b, cc->ci.mean, 0);
                csv_num(&b, cc->ci.lo, 0);
                csv_num(&b, cc->ci.hi, 0);
                csv_field(&b, ci_key(cc->ci.ci), 1);
            }
    return save(dir, "categories.csv", &b);
}

static int write_head_csv(const report_model *m, const char *dir) {
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, "line,fraction,ratio,ratio_lo,ratio_hi,ratio_interval,diff,diff_lo,diff_hi,diff_interval,diff_pairs\n");
    for (int i = 0; i < m->nheads; i++) {
        const report_head *h = &m->heads[i];
        csv_field(&b, m->lines[h->line].key, 0);
        csv_num(&b, m->xs[h->xi], 0);
        csv_num(&b, h->ratio.mean, 0);
        csv_num(&b, h->ratio.lo, 0);
        csv_num(&b, h->ratio.hi, 0);
        csv_field(&b, ci_key(h->ratio.ci), 0);
        csv_num(&b, h->diff.mean, 0);
        csv_num(&b, h->diff.lo, 0);
        csv_num(&b, h->diff.hi, 0);
        csv_field(&b, ci_key(h->diff.ci), 0);
        cg_buf_addf(&b, "%d\n", h->diff.n);
    }
    return save(dir, "headline.csv", &b);
}

static const char *test_key(int method) {
    switch (method) {
    case REPORT_TEST_T: return "paired_t_seeds";
    case REPORT_TEST_SIGNFLIP: return "signflip_questions_exact";
    default: return "none";
    }
}

/* significance.csv: the paired on − off test per headline row, Holm-adjusted, and the MDE. */
static int write_sig_csv(const report_model *m, const char *dir) {
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, "line,fraction,n,diff,sd,test,t,df,discordant_on,discordant_off,questions,p,p_holm,holm_k,"
                    "significant_holm,mde,mde_over,mde_holm,target_effect,seeds_needed\n");
    for (int i = 0; i < m->nheads; i++) {
        const report_head *h = &m->heads[i];
        const report_test *t = &h->test;
        int q = t->method == REPORT_TEST_SIGNFLIP;
        csv_field(&b, m->lines[h->line].key, 0);
        csv_num(&b, m->xs[h->xi], 0);
        cg_buf_addf(&b, "%d,", h->diff.n);
        csv_num(&b, h->diff.mean, 0);
        csv_num(&b, t->method == REPORT_TEST_T ? h->diff.sd : NAN, 0);
        csv_field(&b, test_key(t->method), 0);
        if (isinf(t->t)) cg_buf_addf(&b, "%sinf,", t->t < 0 ? "-" : "");
        else csv_num(&b, t->t, 0);
        csv_num(&b, t->df, 0);
        if (q) cg_buf_addf(&b, "%d,%d,%d,", t->b, t->c, t->nq);
        else cg_buf_adds(&b, ",,,");
        csv_num(&b, t->p, 0);
        csv_num(&b, t->p_holm, 0);
        cg_buf_addf(&b, "%d,%s,", t->holm_k, isnan(t->p_holm) ? "" : t->p_holm < REPORT_ALPHA ? "1" : "0");
        csv_num(&b, t->mde, 0);
        csv_field(&b, t->method == REPORT_TEST_T ? "seeds" : q ? "questions" : "", 0);
        csv_num(&b, t->mde_holm, 0);
        csv_num(&b, m->target_effect, 0);
        if (t->seeds_needed > 0) cg_buf_addf(&b, "%d\n", t->seeds_needed);
        else cg_buf_adds(&b, "\n");
    }
    return save(dir, "significance.csv", &b);
}

static int write_loss_csv(const report_model *m, const char *dir) {
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, "stage,group,metric,step,value\n");
    for (int i = 0; i < m->nseries; i++)
        for (int j = 0; j < m->series[i].n; j++) {
            csv_field(&b, m->series[i].stage, 0);
            csv_field(&b, m->series[i].group, 0);
            csv_field(&b, m->series[i].metric, 0);
            csv_num(&b, m->series[i].step[j], 0);
            csv_num(&b, m->series[i].val[j], 1);
        }
    return save(dir, "losses.csv", &b);
}

static cJSON *jnum(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static cJSON *ci_json(const report_ci *ci) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", ci->n);
    cJSON_AddItemToObject(o, "mean", jnum(ci->mean));
    cJSON_AddItemToObject(o, "sd", jnum(ci->sd));
    cJSON_AddItemToObject(o, "lo", jnum(ci->lo));
    cJSON_AddItemToObject(o, "hi", jnum(ci->hi));
    cJSON_AddItemToObject(o, "t_quantile", jnum(ci->tq));
    cJSON_AddStringToObject(o, "interval", ci_key(ci->ci));
    if (ci->boot_label) cJSON_AddStringToObject(o, "boot_label", ci->boot_label);
    return o;
}

static cJSON *cell_json(const report_model *m, const report_cell *c) {
    cJSON *o = ci_json(&c->ci), *seeds = cJSON_AddArrayToObject(o, "seeds"), *vals = cJSON_AddArrayToObject(o, "values");
    cJSON *runs = cJSON_AddArrayToObject(o, "run_ids");
    for (int j = 0; j < c->n; j++) {
        cJSON_AddItemToArray(seeds, cJSON_CreateNumber(m->runs[c->runs[j]].seed));
        cJSON_AddItemToArray(vals, cJSON_CreateNumber(c->vals[j]));
        cJSON_AddItemToArray(runs, cJSON_CreateNumber((double)m->runs[c->runs[j]].id));
    }
    return o;
}

static int write_summary(const report_model *m, const char *dir, const report_fig *figs, int nfigs, int gnuplot_found) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "sweep", m->sweep);
    cJSON_AddBoolToObject(s, "cg", m->cg);
    cJSON *axes = cJSON_AddArrayToObject(s, "axes");
    for (int a = 0; a < m->naxes; a++) cJSON_AddItemToArray(axes, cJSON_CreateString(m->axes[a]));
    if (m->xaxis >= 0) cJSON_AddStringToObject(s, "x_axis", m->axes[m->xaxis]);
    else cJSON_AddNullToObject(s, "x_axis");
    cJSON *xs = cJSON_AddArrayToObject(s, "xs");
    for (int k = 0; k < m->nx; k++) cJSON_AddItemToArray(xs, jnum(m->xs[k]));
    cJSON *bs = cJSON_AddObjectToObject(s, "bootstrap");
    cJSON_AddNumberToObject(bs, "B", m->B);
    cJSON_AddNumberToObject(bs, "seed", (double)m->seed);
    cJSON_AddStringToObject(bs, "scheme", "cg_rng_seed2(seed, fnv1a64(boot_label)); percentile 2.5/97.5, linear interpolation");
    cJSON *runs = cJSON_AddObjectToObject(s, "runs");
    cJSON_AddNumberToObject(runs, "total", m->nruns);
    cJSON_AddNumberToObject(runs, "done", m->n_done);
    cJSON_AddNumberToObject(runs, "failed", m->n_failed);
    cJSON_AddNumberToObject(runs, "other", m->n_other);
    if (m->primary >= 0) {
        cJSON *p = cJSON_AddObjectToObject(s, "primary");
        cJSON_AddStringToObject(p, "benchmark", m->metrics[m->primary].bench);
        cJSON_AddStringToObject(p, "metric", m->metrics[m->primary].metric);
    } else {
        cJSON_AddNullToObject(s, "primary");
    }
    cJSON *lines = cJSON_AddArrayToObject(s, "lines");
    for (int l = 0; l < m->nlines; l++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", m->lines[l].key);
        cJSON_AddStringToObject(o, "label", m->lines[l].label);
        cJSON_AddItemToObject(o, "lambda", jnum(m->lines[l].lambda));
        cJSON_AddNumberToObject(o, "baseline", m->lines[l].base);
        cJSON_AddItemToArray(lines, o);
    }
    cJSON *cells = cJSON_AddArrayToObject(s, "cells");
    for (int mt = 0; mt < m->nmetrics; mt++)
        for (int l = 0; l < m->nlines; l++)
            for (int k = 0; k < m->nx; k++) {
                const report_cell *c = REPORT_CELL(m, mt, l, k);
                if (!c->n) continue;
                cJSON *o = cell_json(m, c);
                cJSON_AddStringToObject(o, "benchmark", m->metrics[mt].bench);
                cJSON_AddStringToObject(o, "metric", m->metrics[mt].metric);
                cJSON_AddNumberToObject(o, "line", l);
                cJSON_AddItemToObject(o, "x", jnum(m->xs[k]));
                cJSON_AddItemToArray(cells, o);
            }
    cJSON *cats = cJSON_AddArrayToObject(s, "categories");
    for (int c = 0; c < m->ncats; c++)
        for (int l = 0; l < m->nlines; l++)
            for (int k = 0; k < m->nx; k++) {
                const report_cell *cc = REPORT_CATCELL(m, c, l, k);
                if (!cc->n) continue;
                cJSON *o = cell_json(m, cc);
                cJSON_AddStringToObject(o, "category", m->cats[c]);
                cJSON_AddNumberToObject(o, "line", l);
                cJSON_AddItemToObject(o, "x", jnum(m->xs[k]));
                cJSON_AddItemToArray(cats, o);
            }
    if (m->cg) {
        cJSON *h = cJSON_AddObjectToObject(s, "headline");
        cJSON_AddNumberToObject(h, "baseline_line", m->base_line);
        cJSON_AddItemToObject(h, "baseline_value", jnum(m->base_value));
        cJSON_AddItemToObject(h, "chance", jnum(m->chance));
        cJSON *rows = cJSON_AddArrayToObject(h, "rows");
        for (int i = 0; i < m->nheads; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "line", m->heads[i].line);
            cJSON_AddItemToObject(o, "x", jnum(m->xs[m->heads[i].xi]));
            cJSON_AddItemToObject(o, "ratio", ci_json(&m->heads[i].ratio));
            cJSON_AddItemToObject(o, "diff", ci_json(&m->heads[i].diff));
            const report_test *t = &m->heads[i].test;
            cJSON *tj = cJSON_AddObjectToObject(o, "test");
            cJSON_AddStringToObject(tj, "method", test_key(t->method));
            if (t->method == REPORT_TEST_T) {
                /* ±inf (identical differences) is written as a string: JSON has no infinity */
                if (isinf(t->t)) cJSON_AddStringToObject(tj, "t", t->t > 0 ? "inf" : "-inf");
                else cJSON_AddItemToObject(tj, "t", jnum(t->t));
                cJSON_AddItemToObject(tj, "df", jnum(t->df));
            }
            if (t->method == REPORT_TEST_SIGNFLIP) {
                cJSON_AddNumberToObject(tj, "discordant_on", t->b);
                cJSON_AddNumberToObject(tj, "discordant_off", t->c);
                cJSON_AddNumberToObject(tj, "questions", t->nq);
            }
            cJSON_AddItemToObject(tj, "p", jnum(t->p));
            cJSON_AddItemToObject(tj, "p_holm", jnum(t->p_holm));
            cJSON_AddNumberToObject(tj, "holm_k", t->holm_k);
            if (isnan(t->p_holm)) cJSON_AddNullToObject(tj, "significant_holm");
            else cJSON_AddBoolToObject(tj, "significant_holm", t->p_holm < REPORT_ALPHA);
            cJSON_AddItemToObject(tj, "mde", jnum(t->mde));
            cJSON_AddStringToObject(tj, "mde_over", t->method == REPORT_TEST_T ? "seeds" : t->method ? "questions" : "none");
            cJSON_AddItemToObject(tj, "mde_holm", jnum(t->mde_holm));
            if (t->seeds_needed > 0) cJSON_AddNumberToObject(tj, "seeds_needed", t->seeds_needed);
            else if (t->seeds_needed < 0) cJSON_AddNullToObject(tj, "seeds_needed");
            cJSON_AddItemToArray(rows, o);
        }
        cJSON *pw = cJSON_AddObjectToObject(h, "testing");
        cJSON_AddNumberToObject(pw, "alpha", REPORT_ALPHA);
        cJSON_AddNumberToObject(pw, "power", REPORT_POWER);
        cJSON_AddStringToObject(pw, "family", "Holm over the fractions of each contrastive line");
        cJSON_AddStringToObject(pw, "mde_method", "noncentral t: smallest paired difference with 80 % power of the "
                                                  "two-sided t-test, from the observed sd and n (seeds; questions with one seed)");
        cJSON_AddItemToObject(pw, "target_effect", jnum(m->target_effect));
        int l = m->nheads ? m->heads[0].line : -1;
        cJSON_AddItemToObject(h, "smallest_fraction_95", jnum(l >= 0 ? report_smallest_95(m, l, 0) : NAN));
        cJSON_AddItemToObject(h, "smallest_fraction_95_confident", jnum(l >= 0 ? report_smallest_95(m, l, 1) : NAN));
        cJSON_AddItemToObject(h, "baseline_smallest_fraction_95", jnum(m->base_line >= 0 ? report_smallest_95(m, m->base_line, 0) : NAN));
    }
    cJSON_AddBoolToObject(s, "gnuplot_found", gnuplot_found);
    cJSON *fj = cJSON_AddArrayToObject(s, "figures");
    for (int i = 0; i < nfigs; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", figs[i].name);
        cJSON_AddBoolToObject(o, "rendered", figs[i].ok);
        cJSON_AddItemToArray(fj, o);
    }
    char *p = cg_path_join(dir, "summary.json");
    int rc = cg_json_save(p, s, 1);
    free(p);
    cJSON_Delete(s);
    return rc;
}

int report_write_data(const report_model *m, const char *dir, const report_fig *figs, int nfigs, int gnuplot_found) {
    int rc = write_cells_csv(m, dir, "metrics.csv", 0);
    if (!rc && m->cg) rc = write_cells_csv(m, dir, "data_efficiency.csv", 1);
    if (!rc) rc = write_runs_csv(m, dir);
    if (!rc && m->ncats) rc = write_cats_csv(m, dir);
    if (!rc && m->cg) rc = write_head_csv(m, dir);
    if (!rc && m->cg) rc = write_sig_csv(m, dir);
    if (!rc && m->nseries) rc = write_loss_csv(m, dir);
    if (!rc) rc = write_summary(m, dir, figs, nfigs, gnuplot_found);
    return rc;
}
