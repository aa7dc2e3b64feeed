/* report_doc.c: the report for people: report.md (figures as files beside it) and report.html
 * (self-contained: CSS inline, figures as PNG data URIs, no scripts, no network). Both are built
 * in one pass by small writers that emit the same content as Markdown and as HTML. */
#include "reports/report.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    cg_buf md, html;
    const char *dir;
} doc;

static void html_esc(cg_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': cg_buf_adds(b, "&lt;"); break;
        case '>': cg_buf_adds(b, "&gt;"); break;
        case '&': cg_buf_adds(b, "&amp;"); break;
        case '"': cg_buf_adds(b, "&quot;"); break;
        default: cg_buf_add(b, s, 1);
        }
    }
}

/* Markdown table cells: a pipe would end the cell. */
static void md_esc(cg_buf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '|') cg_buf_adds(b, "\\|");
        else if (*s == '\n') cg_buf_adds(b, " ");
        else cg_buf_add(b, s, 1);
    }
}

static void doc_h(doc *d, int level, const char *text) {
    cg_buf_addf(&d->md, "\n%.*s %s\n\n", level, "######", text);
    cg_buf_addf(&d->html, "<h%d>", level);
    html_esc(&d->html, text);
    cg_buf_addf(&d->html, "</h%d>\n", level);
}

static void doc_p(doc *d, const char *text) {
    cg_buf_addf(&d->md, "%s\n\n", text);
    cg_buf_adds(&d->html, "<p>");
    html_esc(&d->html, text);
    cg_buf_adds(&d->html, "</p>\n");
}

static void doc_note(doc *d, const char *text) {
    cg_buf_addf(&d->md, "*%s*\n\n", text);
    cg_buf_adds(&d->html, "<p class=\"note\">");
    html_esc(&d->html, text);
    cg_buf_adds(&d->html, "</p>\n");
}

static void doc_pre(doc *d, const char *text) {
    cg_buf_addf(&d->md, "```\n%s\n```\n\n", text);
    cg_buf_adds(&d->html, "<pre>");
    html_esc(&d->html, text);
    cg_buf_adds(&d->html, "</pre>\n");
}

/* Tables: cells are plain text; the first `nleft` columns are left-aligned, the rest numbers. */
static void doc_table(doc *d, int ncols, int nleft, const char *const *head, char **cells, int nrows) {
    cg_buf_adds(&d->md, "|");
    for (int c = 0; c < ncols; c++) {
        cg_buf_adds(&d->md, " ");
        md_esc(&d->md, head[c]);
        cg_buf_adds(&d->md, " |");
    }
    cg_buf_adds(&d->md, "\n|");
    for (int c = 0; c < ncols; c++) cg_buf_adds(&d->md, c < nleft ? ":---|" : "---:|");
    cg_buf_adds(&d->md, "\n");
    cg_buf_adds(&d->html, "<div class=\"tw\"><table>\n<thead><tr>");
    for (int c = 0; c < ncols; c++) {
        cg_buf_adds(&d->html, c < nleft ? "<th class=\"l\">" : "<th>");
        html_esc(&d->html, head[c]);
        cg_buf_adds(&d->html, "</th>");
    }
    cg_buf_adds(&d->html, "</tr></thead>\n<tbody>\n");
    for (int r = 0; r < nrows; r++) {
        cg_buf_adds(&d->md, "|");
        cg_buf_adds(&d->html, "<tr>");
        for (int c = 0; c < ncols; c++) {
            const char *v = cells[r * ncols + c] ? cells[r * ncols + c] : "";
            cg_buf_adds(&d->md, " ");
            md_esc(&d->md, v);
            cg_buf_adds(&d->md, " |");
            cg_buf_adds(&d->html, c < nleft ? "<td class=\"l\">" : "<td>");
            html_esc(&d->html, v);
            cg_buf_adds(&d->html, "</td>");
        }
        cg_buf_adds(&d->md, "\n");
        cg_buf_adds(&d->html, "</tr>\n");
    }
    cg_buf_adds(&d->md, "\n");
    cg_buf_adds(&d->html, "</tbody></table></div>\n");
    for (int i = 0; i < ncols * nrows; i++) free(cells[i]);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64(cg_buf *b, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        char o[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < n ? b64[v >> 6 & 63] : '=', i + 2 < n ? b64[v & 63] : '='};
        cg_buf_add(b, o, 4);
    }
}

static void doc_fig(doc *d, const report_fig *f) {
    if (!f->ok) return;
    cg_buf_addf(&d->md, "![%s](%s.png)\n\n*%s* ([SVG](%s.svg), data: `%s.dat`, script: `%s.gp`)\n\n", f->title, f->name,
                f->caption, f->name, f->name, f->name);
    char *p = cg_fmt("%s/%s.png", d->dir, f->name), *data = NULL;
    size_t len = 0;
    if (cg_read_file(p, &data, &len) == CG_OK) {
        cg_buf_adds(&d->html, "<figure><img alt=\"");
        html_esc(&d->html, f->title);
        cg_buf_adds(&d->html, "\" src=\"data:image/png;base64,");
        base64(&d->html, (const unsigned char *)data, len);
        cg_buf_adds(&d->html, "\"><figcaption>");
        html_esc(&d->html, f->caption);
        cg_buf_adds(&d->html, "</figcaption></figure>\n");
    }
    free(data);
    free(p);
}

static const report_fig *fig_named(const report_fig *figs, int n, const char *prefix, int exact) {
    for (int i = 0; i < n; i++)
        if (exact ? !strcmp(figs[i].name, prefix) : !strncmp(figs[i].name, prefix, strlen(prefix))) return &figs[i];
    return NULL;
}

/* "41.3 %" / "41.3 % [38.0, 44.6]" for fractions of 1, in percent. */
static char *pct(double v) { return isnan(v) ? cg_strdup("—") : cg_fmt("%.1f %%", 100 * v); }
static char *pct_ci(const report_ci *ci) {
    if (isnan(ci->mean)) return cg_strdup("—");
    if (isnan(ci->lo)) return cg_fmt("%.1f %%", 100 * ci->mean);
    return cg_fmt("%.1f %% [%.1f, %.1f]", 100 * ci->mean, 100 * ci->lo, 100 * ci->hi);
}
static char *pp_ci(const report_ci *ci) {
    if (isnan(ci->mean)) return cg_strdup("—");
    if (isnan(ci->lo)) return cg_fmt("%+.1f pp", 100 * ci->mean);
    return cg_fmt("%+.1f pp [%+.1f, %+.1f]", 100 * ci->mean, 100 * ci->lo, 100 * ci->hi);
}
static char *num_ci(const report_ci *ci, int is_acc) {
    if (is_acc) return pct_ci(ci);
    if (isnan(ci->mean)) return cg_strdup("—");
    if (isnan(ci->lo)) return cg_fmt("%.4g", ci->mean);
    return cg_fmt("%.4g [%.4g, %.4g]", ci->mean, ci->lo, ci->hi);
}

static const char *short_ci(int ci) {
    switch (ci) {
    case REPORT_CI_T: return "t, seeds";
    case REPORT_CI_BOOT_Q: return "bootstrap, questions";
    case REPORT_CI_BOOT_SEEDS: return "bootstrap, seeds";
    default: return "none";
    }
}

/* One table per metric: rows x, columns the lines, "mean [lo, hi]" with n. */
static void metric_table(doc *d, const report_model *m, int mt) {
    int ncols = 1 + m->nlines + 1;
    const char **head = cg_calloc((size_t)ncols, sizeof *head);
    char **heads_own = cg_calloc((size_t)ncols, sizeof *heads_own);
    head[0] = m->xaxis >= 0 ? m->axes[m->xaxis] : "";
    for (int l = 0; l < m->nlines; l++) head[1 + l] = m->lines[l].label;
    head[ncols - 1] = "interval (n)";
    char **cells = cg_calloc((size_t)ncols * m->nx + 1, sizeof *cells);
    int nrows = 0;
    for (int k = 0; k < m->nx; k++) {
        int any = 0, ci = REPORT_CI_NONE, nmax = 0;
        for (int l = 0; l < m->nlines; l++) {
            const report_cell *c = REPORT_CELL(m, mt, l, k);
            if (!c->n) continue;
            any = 1;
            if (c->ci.ci > ci) ci = c->ci.ci;
            if (c->n > nmax) nmax = c->n;
        }
        if (!any) continue;
        char **row = &cells[(size_t)nrows++ * ncols];
        row[0] = m->xaxis >= 0 ? report_fmt_x(m, m->xs[k]) : cg_strdup("all");
        for (int l = 0; l < m->nlines; l++) {
            const report_cell *c = REPORT_CELL(m, mt, l, k);
            row[1 + l] = c->n ? num_ci(&c->ci, m->metrics[mt].is_acc) : cg_strdup("—");
        }
        row[ncols - 1] = cg_fmt("%s (%d)", short_ci(ci), nmax);
    }
    doc_table(d, ncols, 1, head, cells, nrows);
    free(cells);
    free(head);
    free(heads_own);
}

/* ------------------------------------------------------------------ significance and power */

static char *fmt_p(double p) {
    if (isnan(p)) return cg_strdup("—");
    if (p < 0.001) return cg_strdup("< 0.001");
    return cg_fmt("%.3g", p);
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of the finite v[n] (sorted in place); 0 when none. */
static int summarize(double *v, int n, double *med, double *lo, double *hi) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) v[k++] = v[i];
    if (!k) return 0;
    qsort(v, (size_t)k, sizeof *v, cmp_dbl);
    *med = k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
    *lo = v[0];
    *hi = v[k - 1];
    return k;
}

/* "about 4.1 points or more (median over the 6 fractions; 2.0 to 6.3 by fraction)" pieces. */
static void add_spread(cg_buf *t, double med, double lo, double hi, int k, const char *unit, int decimals) {
    cg_buf_addf(t, "%.*f %s", decimals, med, unit);
    if (k > 1 && hi - lo >= 0.05)
        cg_buf_addf(t, " (median over the %d fractions; %.*f to %.*f by fraction)", k, decimals, lo, decimals, hi);
}

/* The headline's plain-language line on the paired test of contrastive line l and its power. NULL when
 * nothing was tested. */
static char *sig_sentence(const report_model *m, int l) {
    int k = 0, nsig = 0, nmin = 0, nmax = 0, method = REPORT_TEST_NONE, holm_k = 0, nq = 0;
    double *mde = cg_malloc(((size_t)m->nheads + 1) * sizeof *mde);
    int nm = 0, nt = 0, nflip = 0;
    for (int i = 0; i < m->nheads; i++)
        if (m->heads[i].line == l && !isnan(m->heads[i].test.p)) {
            nt += m->heads[i].test.method == REPORT_TEST_T;
            nflip += m->heads[i].test.method == REPORT_TEST_SIGNFLIP;
        }
    method = nt ? REPORT_TEST_T : REPORT_TEST_SIGNFLIP;   /* a fraction left with one seed pair among several */
    for (int i = 0; i < m->nheads; i++) {
        const report_head *h = &m->heads[i];
        if (h->line != l || h->test.method == REPORT_TEST_NONE || isnan(h->test.p)) continue;
        k++;
        holm_k = h->test.holm_k;
        if (h->test.p_holm < REPORT_ALPHA) nsig++;
        else if (h->test.method == method) mde[nm++] = 100 * h->test.mde;
        if (!nmin || h->diff.n < nmin) nmin = h->diff.n;
        if (h->diff.n > nmax) nmax = h->diff.n;
        if (h->test.nq > nq) nq = h->test.nq;
    }
    if (!k) {
        free(mde);
        return NULL;
    }
    cg_buf t;
    cg_buf_init(&t);
    const char *how = nt && nflip ? "paired t-test over seeds; exact sign-flip test over questions where one seed pair is left"
                      : method == REPORT_TEST_T ? "paired t-test over seeds"
                                                : "exact sign-flip test over benchmark questions";
    if (nsig == 0) {
        cg_buf_addf(&t, "No fraction shows a significant on − off difference (%s, Holm over %d fraction%s, α = 0.05); ", how,
                    holm_k, holm_k == 1 ? "" : "s");
    } else {
        cg_buf_addf(&t, "The on − off difference is significant (%s, Holm over %d fraction%s, α = 0.05) at ", how, holm_k,
                    holm_k == 1 ? "" : "s");
        int j = 0;
        for (int i = 0; i < m->nheads; i++) {
            const report_head *h = &m->heads[i];
            if (h->line != l || !(h->test.p_holm < REPORT_ALPHA)) continue;
            char *xs = report_fmt_x(m, m->xs[h->xi]), *ps = fmt_p(h->test.p_holm);
            cg_buf_addf(&t, "%s%s (%+.1f pp, Holm-adjusted p %s%s)", j == 0 ? "" : j == nsig - 1 ? " and " : ", ", xs,
                        100 * h->diff.mean, ps[0] == '<' ? "" : "= ", ps);
            free(xs);
            free(ps);
            j++;
        }
        if (method == REPORT_TEST_SIGNFLIP)
            cg_buf_adds(&t, ". With one seed this says that these two trained models differ on these questions, not that "
                            "the difference holds across training seeds");
        cg_buf_adds(&t, method == REPORT_TEST_T && nsig < k ? "; at the other fractions, " : ".");
        if (method == REPORT_TEST_SIGNFLIP && nsig < k) cg_buf_adds(&t, " With");
    }
    double med, lo, hi;
    int kk = summarize(mde, nm, &med, &lo, &hi);
    if (method == REPORT_TEST_T && kk) {
        cg_buf_addf(&t, "with %d", nmin);
        if (nmax != nmin) cg_buf_addf(&t, "–%d", nmax);
        cg_buf_adds(&t, " seeds this sweep could detect differences of about ");
        add_spread(&t, med, lo, hi, kk, "points or more at 80 % power", 1);
        cg_buf_adds(&t, " — smaller effects are not ruled out.");
    } else if (method == REPORT_TEST_SIGNFLIP && nsig < k) {
        cg_buf_adds(&t, nsig ? " a single seed" : "with a single seed");
        cg_buf_adds(&t, " the detectable effect over seeds cannot be computed (the variation between "
                        "training seeds is unknown).");
        if (kk) {
            cg_buf_addf(&t, " Over the %d questions alone the test could detect about ", nq);
            add_spread(&t, med, lo, hi, kk, "points at 80 % power", 1);
            cg_buf_adds(&t, ", but that counts only the sampling of questions, not the variation between training "
                            "seeds: a real effect would have to be larger to show, and its absence here rules out little.");
        }
    }
    free(mde);
    return cg_buf_steal(&t);
}

/* The --target-effect line: seeds needed to detect D points at 80 % power. NULL when not asked. */
static char *target_sentence(const report_model *m, int l) {
    if (isnan(m->target_effect)) return NULL;
    double *n = cg_malloc(((size_t)m->nheads + 1) * sizeof *n);
    int k = 0, over = 0, tested = 0;
    for (int i = 0; i < m->nheads; i++) {
        const report_head *h = &m->heads[i];
        if (h->line != l) continue;
        if (h->test.method == REPORT_TEST_T) {
            tested++;
            if (h->test.seeds_needed > 0) n[k++] = h->test.seeds_needed;
            else over++;
        }
    }
    cg_buf t;
    cg_buf_init(&t);
    double med, lo, hi;
    if (!tested) {
        cg_buf_addf(&t, "The seeds needed to detect a difference of %g points cannot be estimated from a single seed: "
                        "run at least 2 seeds per point to measure the variation between seeds.", 100 * m->target_effect);
    } else {
        cg_buf_addf(&t, "To detect a paired difference of %g points at 80 %% power (two-sided α = 0.05, from the observed "
                        "sd of the differences), this sweep would need about ", 100 * m->target_effect);
        int kk = summarize(n, k, &med, &lo, &hi);
        if (kk) {
            cg_buf_addf(&t, "%.0f seeds per point", ceil(med));
            if (kk > 1 && hi > lo) cg_buf_addf(&t, " (median over the %d fractions; %.0f to %.0f by fraction)", kk, lo, hi);
        }
        if (over) cg_buf_addf(&t, "%smore than %d seeds at %d fraction%s", kk ? "; " : "", REPORT_SEEDS_MAX, over,
                              over == 1 ? "" : "s");
        cg_buf_adds(&t, ".");
    }
    free(n);
    return cg_buf_steal(&t);
}

/* The table of the paired tests: one row per headline row. */
static void test_table(doc *d, const report_model *m) {
    int nlines = 0;
    for (int i = 0; i < m->nheads; i++) nlines += i == 0 || m->heads[i].line != m->heads[i - 1].line;
    int target = !isnan(m->target_effect), holm_k = 0;
    for (int i = 0; i < m->nheads; i++)
        if (m->heads[i].test.holm_k > holm_k) holm_k = m->heads[i].test.holm_k;
    char *hk = cg_fmt("p, Holm over %d", holm_k), *hm = cg_fmt("MDE at α/%d", holm_k > 0 ? holm_k : 1);
    char *ht = target ? cg_fmt("seeds for %g pp", 100 * m->target_effect) : NULL;
    const char *head[10];
    int nc = 0;
    if (nlines > 1) head[nc++] = "line";
    head[nc++] = "fraction";
    head[nc++] = "on − off";
    head[nc++] = "test";
    head[nc++] = "statistic";
    head[nc++] = "p";
    head[nc++] = hk;
    head[nc++] = "MDE (80 % power, α = 0.05)";
    head[nc++] = hm;
    if (target) head[nc++] = ht;
    char **cells = cg_calloc((size_t)m->nheads * nc + 1, sizeof *cells);
    for (int i = 0; i < m->nheads; i++) {
        const report_head *h = &m->heads[i];
        const report_test *t = &h->test;
        char **row = &cells[(size_t)i * nc];
        int c = 0;
        if (nlines > 1) row[c++] = cg_strdup(m->lines[h->line].label);
        row[c++] = report_fmt_x(m, m->xs[h->xi]);
        row[c++] = isnan(h->diff.mean) ? cg_strdup("—") : cg_fmt("%+.1f pp", 100 * h->diff.mean);
        row[c++] = cg_strdup(t->method == REPORT_TEST_T ? "paired t, seeds"
                             : t->method == REPORT_TEST_SIGNFLIP ? "sign-flip, questions" : "none");
        if (t->method == REPORT_TEST_T) row[c++] = isinf(t->t) ? cg_fmt("t = %s∞ (df %g)", t->t < 0 ? "−" : "", t->df)
                                                             : isnan(t->t) ? cg_fmt("t undefined (sd 0)")
                                                                           : cg_fmt("t = %.2f (df %g)", t->t, t->df);
        else if (t->method == REPORT_TEST_SIGNFLIP) row[c++] = cg_fmt("%d vs %d of %d", t->b, t->c, t->nq);
        else row[c++] = cg_strdup("—");
        row[c++] = fmt_p(t->p);
        row[c++] = fmt_p(t->p_holm);
        row[c++] = isnan(t->mde) ? cg_strdup("—") : cg_fmt("%.1f pp%s", 100 * t->mde, t->method == REPORT_TEST_SIGNFLIP ? " (questions)" : "");
        row[c++] = isnan(t->mde_holm) ? cg_strdup("—") : cg_fmt("%.1f pp", 100 * t->mde_holm);
        if (target) row[c++] = t->seeds_needed > 0 ? cg_fmt("%d", t->seeds_needed)
                               : t->method == REPORT_TEST_T ? cg_fmt("> %d", REPORT_SEEDS_MAX) : cg_strdup("—");
    }
    doc_table(d, nc, nlines > 1 ? 2 : 1, head, cells, m->nheads);
    free(cells);
    free(hk);
    free(hm);
    free(ht);
}

static void headline_box(doc *d, const report_model *m) {
    cg_buf t;
    cg_buf_init(&t);
    const report_metric *pm = &m->metrics[m->primary];
    int l = m->heads[0].line;
    double f = report_smallest_95(m, l, 0), fc = report_smallest_95(m, l, 1), fb = report_smallest_95(m, m->base_line, 0);
    cg_buf_adds(&d->html, "<div class=\"headline\"><div class=\"q\">Does contrastive alignment make the model a more "
                          "data-efficient instruction learner?</div>\n");
    cg_buf_adds(&d->md, "> **Does contrastive alignment make the model a more data-efficient instruction learner?**\n>\n");
    if (!isnan(f)) {
        char *fs = report_fmt_x(m, f);
        const report_head *h = NULL;
        for (int i = 0; i < m->nheads; i++)
            if (m->heads[i].line == l && m->xs[m->heads[i].xi] == f) h = &m->heads[i];
        char *r = pct_ci(&h->ratio);
        cg_buf_addf(&t, "%s: %s first reaches 95 %% of the generative-only accuracy at 100 %% (%.1f %%) "
                        "with %s of the instruction data, where it stands at %s of it",
                    !(isnan(fb) || f < fb)               ? "Not in this sweep"
                    : !isnan(fc) && (isnan(fb) || fc < fb) ? "Yes, in this sweep"
                                                           : "By the point estimates, yes",
                    m->lines[l].label, 100 * m->base_value, fs, r);
        free(r);
        free(fs);
        if (!isnan(fc)) {
            char *s = report_fmt_x(m, fc);
            cg_buf_addf(&t, " (with the interval's lower end above 95 %% from %s)", s);
            free(s);
        } else {
            cg_buf_adds(&t, " (though at no fraction is the interval's lower end above 95 %)");
        }
        if (!isnan(fb) && fb < m->xs[m->nx - 1]) {
            char *s = report_fmt_x(m, fb);
            cg_buf_addf(&t, "; generative-only alignment needs %s.", s);
            free(s);
        } else {
            cg_buf_adds(&t, "; generative-only alignment reaches it only with all the data.");
        }
    } else {
        double best = -INFINITY, bx = NAN;
        for (int i = 0; i < m->nheads; i++)
            if (m->heads[i].line == l && m->heads[i].ratio.mean > best) best = m->heads[i].ratio.mean, bx = m->xs[m->heads[i].xi];
        char *s = report_fmt_x(m, bx);
        cg_buf_addf(&t, "Not within the fractions run: %s does not reach 95 %% of the generative-only accuracy at 100 %% "
                        "(%.1f %%); its best is %.1f %% of it, at %s.",
                    m->lines[l].label, 100 * m->base_value, 100 * best, s);
        free(s);
    }
    cg_buf_adds(&d->html, "<div class=\"a\">");
    html_esc(&d->html, t.data);
    cg_buf_adds(&d->html, "</div>\n");
    cg_buf_addf(&d->md, "> %s\n>\n", t.data);
    /* one key number: the difference at 10 % (or the smallest fraction run) */
    const report_head *h = NULL;
    for (int i = 0; i < m->nheads; i++)
        if (m->heads[i].line == l && (!h || fabs(m->xs[m->heads[i].xi] - 0.1) < fabs(m->xs[h->xi] - 0.1))) h = &m->heads[i];
    if (h) {
        char *xs = report_fmt_x(m, m->xs[h->xi]), *dd = pp_ci(&h->diff);
        const report_cell *on = REPORT_CELL(m, m->primary, l, h->xi), *off = REPORT_CELL(m, m->primary, m->lines[l].base, h->xi);
        cg_buf_free(&t);   /* empties it for the next line */
        cg_buf_addf(&t, "At %s: contrastive %.1f %%, generative-only %.1f %%, difference %s (%s).", xs, 100 * on->ci.mean,
                    100 * off->ci.mean, dd, report_ci_name(h->diff.ci));
        cg_buf_adds(&d->html, "<div class=\"kv\">");
        html_esc(&d->html, t.data);
        cg_buf_adds(&d->html, "</div>\n");
        cg_buf_addf(&d->md, "> %s\n>\n", t.data);
        free(xs);
        free(dd);
    }
    for (int which = 0; which < 2; which++) {   /* the paired test and its power; the seeds for --target-effect */
        char *line = which == 0 ? sig_sentence(m, l) : target_sentence(m, l);
        if (!line) continue;
        cg_buf_adds(&d->html, "<div class=\"kv\">");
        html_esc(&d->html, line);
        cg_buf_adds(&d->html, "</div>\n");
        cg_buf_addf(&d->md, "> %s\n>\n", line);
        free(line);
    }
    cg_buf_free(&t);   /* empties it for the next line */
    if (m->max_seeds == 1)
        cg_buf_addf(&t, "Primary metric: %s on %s, a single seed per point; its 95 %% intervals are bootstraps over the "
                        "benchmark questions.", pm->metric, pm->bench);
    else
        cg_buf_addf(&t, "Primary metric: %s on %s, mean over seeds (%d per point at most); intervals are 95 %%.", pm->metric,
                    pm->bench, m->max_seeds);
    cg_buf_adds(&d->html, "<div class=\"fine\">");
    html_esc(&d->html, t.data);
    cg_buf_adds(&d->html, "</div></div>\n");
    cg_buf_addf(&d->md, "> %s\n\n", t.data);
    cg_buf_free(&t);
}

static void headline_table(doc *d, const report_model *m) {
    static const char *head[] = {"line", "fraction", "contrastive", "generative only", "contrastive / gen.-only at 100 %",
                                 "on − off", "intervals (ratio; difference)"};
    int nlines = 0;   /* one contrastive line (the usual case): no line column */
    for (int i = 0; i < m->nheads; i++) nlines += i == 0 || m->heads[i].line != m->heads[i - 1].line;
    char **cells = cg_calloc((size_t)m->nheads * 7 + 1, sizeof *cells);
    for (int i = 0; i < m->nheads; i++) {
        const report_head *h = &m->heads[i];
        char **row = &cells[(size_t)i * 7];
        const report_cell *on = REPORT_CELL(m, m->primary, h->line, h->xi),
                          *off = REPORT_CELL(m, m->primary, m->lines[h->line].base, h->xi);
        row[0] = cg_strdup(m->lines[h->line].label);
        row[1] = report_fmt_x(m, m->xs[h->xi]);
        row[2] = pct(on->ci.mean);
        row[3] = off->n ? pct(off->ci.mean) : cg_strdup("—");
        row[4] = pct_ci(&h->ratio);
        row[5] = pp_ci(&h->diff);
        row[6] = cg_fmt("%s; %s (%d pair%s)", short_ci(h->ratio.ci), short_ci(h->diff.ci), h->diff.n, h->diff.n == 1 ? "" : "s");
        if (nlines == 1) {
            free(row[0]);
            memmove(row, row + 1, 6 * sizeof *row);
            row[6] = NULL;
        }
    }
    if (nlines == 1) {   /* compact the rows of 7 into rows of 6 */
        for (int i = 0; i < m->nheads; i++) memmove(&cells[(size_t)i * 6], &cells[(size_t)i * 7], 6 * sizeof *cells);
        doc_table(d, 6, 1, head + 1, cells, m->nheads);
    } else {
        doc_table(d, 7, 2, head, cells, m->nheads);
    }
    free(cells);
}

static void category_table(doc *d, const report_model *m) {
    int ncols = 1 + m->nx * m->nlines;
    const char **head = cg_calloc((size_t)ncols, sizeof *head);
    char **own = cg_calloc((size_t)ncols, sizeof *own);
    head[0] = "category";
    for (int k = 0; k < m->nx; k++)
        for (int l = 0; l < m->nlines; l++) {
            char *xs = report_fmt_x(m, m->xs[k]);
            const char *lab = m->cg && !isnan(m->lines[l].lambda) ? (m->lines[l].lambda > 0 ? "on" : "off") : m->lines[l].key;
            if (m->xaxis < 0) own[1 + k * m->nlines + l] = cg_strdup(m->lines[l].label);
            else own[1 + k * m->nlines + l] = m->cg ? cg_fmt("%s %s", xs, lab) : cg_fmt("%s; %s", xs, lab);
            head[1 + k * m->nlines + l] = own[1 + k * m->nlines + l];
            free(xs);
        }
    char **cells = cg_calloc((size_t)ncols * m->ncats + 1, sizeof *cells);
    for (int c = 0; c < m->ncats; c++) {
        cells[(size_t)c * ncols] = cg_strdup(m->cats[c]);
        for (int k = 0; k < m->nx; k++)
            for (int l = 0; l < m->nlines; l++) {
                const report_cell *cc = REPORT_CATCELL(m, c, l, k);
                cells[(size_t)c * ncols + 1 + k * m->nlines + l] = cc->n ? cg_fmt("%.1f", 100 * cc->ci.mean) : cg_strdup("—");
            }
    }
    doc_table(d, ncols, 1, head, cells, m->ncats);
    free(cells);
    for (int i = 0; i < ncols; i++) free(own[i]);
    free(own);
    free(head);
}

static const char *css =
    ":root{--ink:#1d232b;--muted:#5c6670;--rule:#e2e5e9;--accent:#D1495B;--blue:#3B6FB6;--bg:#fbfbfa}"
    "*{box-sizing:border-box}"
    "body{margin:0;background:var(--bg);color:var(--ink);font:16px/1.6 'DejaVu Serif',Georgia,'Times New Roman',serif}"
    "main{max-width:1040px;margin:0 auto;padding:48px 40px 80px;background:#fff;box-shadow:0 0 0 1px var(--rule)}"
    "h1,h2,h3{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;line-height:1.25;letter-spacing:-.01em}"
    "h1{font-size:30px;margin:0 0 4px}h2{font-size:21px;margin:44px 0 12px;padding-top:12px;border-top:1px solid var(--rule)}"
    "h3{font-size:17px;margin:28px 0 8px;color:#333}"
    ".sub{color:var(--muted);font:14px 'DejaVu Sans',Helvetica,Arial,sans-serif;margin-bottom:28px}"
    ".headline{border-left:6px solid var(--accent);background:linear-gradient(90deg,#fdf1f2,#fff);padding:20px 26px;"
    "margin:8px 0 32px;border-radius:4px}"
    ".headline .q{font:600 14px 'DejaVu Sans',Helvetica,Arial,sans-serif;text-transform:uppercase;letter-spacing:.06em;"
    "color:var(--accent);margin-bottom:8px}"
    ".headline .a{font-size:21px;line-height:1.45;margin-bottom:10px}.headline .kv{font-size:16px;margin-bottom:8px}"
    ".headline .fine{font:13px 'DejaVu Sans',Helvetica,Arial,sans-serif;color:var(--muted)}"
    "p.note{color:var(--muted);font-size:14px}"
    "figure{margin:18px 0 30px}figure img{width:100%;height:auto;border:1px solid var(--rule);border-radius:4px}"
    "figcaption{font:13.5px/1.5 'DejaVu Sans',Helvetica,Arial,sans-serif;color:var(--muted);margin-top:6px}"
    ".tw{overflow-x:auto;margin:10px 0 24px}"
    "table{border-collapse:collapse;font:13.5px/1.4 'DejaVu Sans',Helvetica,Arial,sans-serif;"
    "font-variant-numeric:tabular-nums;min-width:50%}"
    "th{font-weight:600;text-align:right;border-bottom:2px solid var(--ink);padding:6px 10px;vertical-align:bottom}"
    "td{text-align:right;padding:5px 10px;border-bottom:1px solid var(--rule);white-space:nowrap}"
    "th.l,td.l{text-align:left}tbody tr:nth-child(even){background:#f7f8f9}"
    "pre{background:#f5f6f7;border:1px solid var(--rule);border-radius:4px;padding:12px 14px;overflow-x:auto;"
    "font:12.5px/1.5 'DejaVu Sans Mono',monospace;tab-size:4}"
    "footer{margin-top:48px;color:var(--muted);font:13px 'DejaVu Sans',Helvetica,Arial,sans-serif}";

int report_write_docs(const report_model *m, const char *dir, const report_fig *figs, int nfigs, int gnuplot_found) {
    doc d;
    cg_buf_init(&d.md);
    cg_buf_init(&d.html);
    d.dir = dir;
    char *title = cg_fmt("Report: sweep %s", m->sweep);
    cg_buf_addf(&d.md, "# %s\n\n", title);
    cg_buf_adds(&d.html, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                         "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>");
    html_esc(&d.html, title);
    cg_buf_addf(&d.html, "</title><style>%s</style></head>\n<body><main>\n<h1>", css);
    html_esc(&d.html, title);
    cg_buf_adds(&d.html, "</h1>\n");
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
    char *sub = cg_fmt("%d runs (%d done, %d failed, %d other) · code %s · rendered %s by cgvlm report", m->nruns,
                       m->n_done, m->n_failed, m->n_other, m->code_version, when);
    cg_buf_addf(&d.md, "%s\n\n", sub);
    cg_buf_adds(&d.html, "<div class=\"sub\">");
    html_esc(&d.html, sub);
    cg_buf_adds(&d.html, "</div>\n");
    free(sub);

    if (!gnuplot_found)
        doc_note(&d, "Figures were not rendered: gnuplot was not found on PATH (install gnuplot-nox). "
                     "The tables, CSV files and the gnuplot scripts and data (*.gp, *.dat) are complete.");
    int cg_head = m->cg && m->primary >= 0 && m->nheads > 0 && m->base_line >= 0;
    if (cg_head && m->xs[m->nx - 1] != 1.0) {
        char *full = report_fmt_x(m, m->xs[m->nx - 1]);
        char *n = cg_fmt("The largest instruction-data fraction in this sweep is %s: the baseline called "
                         "\"generative-only at 100 %%\" below is generative-only at %s.", full, full);
        doc_note(&d, n);
        free(n);
        free(full);
    }
    if (cg_head) headline_box(&d, m);
    else if (m->cg)
        doc_note(&d, "No headline: the sweep has no generative-only (λ = 0) accuracy at the largest fraction yet.");

    if (m->cg && m->primary >= 0) {
        doc_h(&d, 2, "Data efficiency");
        const report_fig *f = fig_named(figs, nfigs, "data_efficiency", 1);
        if (f) doc_fig(&d, f);
        {
            char *h = cg_fmt("%s on %s (primary)", m->metrics[m->primary].metric, m->metrics[m->primary].bench);
            doc_h(&d, 3, h);
            free(h);
            metric_table(&d, m, m->primary);
        }
        if (cg_head) {
            doc_h(&d, 2, "Headline numbers");
            char *p = cg_fmt("For each fraction: the contrastive accuracy as a percentage of the generative-only accuracy "
                             "with 100 %% of the data (%.1f %%), and the paired difference contrastive − generative-only "
                             "at the same fraction (percentage points, paired by seed). 95 %% intervals: the ratio by a "
                             "percentile bootstrap (over seeds with ≥ 2 seeds, else over benchmark questions); the difference "
                             "by a t-interval over seed pairs (bootstrap over questions with one seed).",
                             100 * m->base_value);
            doc_p(&d, p);
            free(p);
            headline_table(&d, m);
            doc_h(&d, 3, "Paired test and detectable effect");
            doc_p(&d, m->max_seeds >= 2
                          ? "For each fraction, the paired t-test of contrastive − generative-only over seeds (t = mean/(s/√n), "
                            "df = n − 1, two-sided p), its p-value adjusted by Holm's method over the fractions tested (the "
                            "family: all fractions of this contrastive line), and the minimum detectable effect (MDE): the "
                            "smallest true paired difference the two-sided t-test at α = 0.05 would detect with 80 % power, "
                            "given this many seeds and the observed sd of the paired differences (noncentral t, exact). "
                            "The column \"MDE at α/K\" is the same computed at α/K, the threshold of Holm's first (strictest) step. An interval containing 0 with a large "
                            "MDE means the sweep cannot tell; it is not evidence of no effect. significance.csv has the numbers."
                          : "With one seed per point: the exact sign-flip (permutation) test over the benchmark questions "
                            "answered by both runs (statistic |Σ d| of the per-question differences on − off; equivalent to the "
                            "exact McNemar test on the discordant questions, shown as on-only vs off-only correct), Holm over the "
                            "fractions. The MDE is over questions only (paired t power with the per-question sd): it ignores the "
                            "variation between training seeds, which one seed cannot measure. significance.csv has the numbers.");
            test_table(&d, m);
        }
        for (int mt = 0; mt < m->nmetrics; mt++) {   /* the other scoring methods and benchmarks */
            if (mt == m->primary || !m->metrics[mt].is_acc || !strcmp(m->metrics[mt].bench, "alignment")) continue;
            char *h = cg_fmt("Data efficiency: %s on %s", m->metrics[mt].metric, m->metrics[mt].bench);
            doc_h(&d, 2, h);
            free(h);
            {
                char *nm = cg_fmt("data_efficiency_%s_%s", m->metrics[mt].bench, m->metrics[mt].metric);
                for (char *c = nm; *c; c++)
                    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", *c)) *c = '_';
                const report_fig *g = fig_named(figs, nfigs, nm, 1);
                if (g) doc_fig(&d, g);
                free(nm);
            }
            metric_table(&d, m, mt);
        }
    } else if (m->primary < 0 && m->cg) {
        doc_note(&d, "No benchmark accuracy in this sweep's evaluations yet.");
    }

    if (!m->cg) {
        doc_h(&d, 2, "Results");
        const report_fig *f = m->xaxis >= 0 ? fig_named(figs, nfigs, "by_", 0) : NULL;
        if (f) doc_fig(&d, f);
        doc_p(&d, "Mean and 95 % interval of every evaluation metric for each combination of the sweep's axes "
                  "(t-interval over seeds; bootstrap over questions for a single-seed accuracy).");
        for (int mt = 0; mt < m->nmetrics; mt++) {
            char *h = cg_fmt("%s on %s", m->metrics[mt].metric, m->metrics[mt].bench);
            doc_h(&d, 3, h);
            free(h);
            metric_table(&d, m, mt);
        }
    }

    if (m->ncats) {
        char *h = cg_fmt("Accuracy by category (%s, %%)", m->metrics[m->primary].metric);
        doc_h(&d, 2, h);
        free(h);
        doc_p(&d, m->cg ? "Mean over seeds of the per-category accuracy at each fraction, generative-only (off) and "
                           "contrastive (on); intervals are in categories.csv."
                         : "Mean over seeds of the per-category accuracy; intervals are in categories.csv.");
        const report_fig *f = fig_named(figs, nfigs, "categories", 1);
        if (f) doc_fig(&d, f);
        category_table(&d, m);
    }

    int nalign = 0;
    for (int mt = 0; mt < m->nmetrics; mt++) nalign += m->cg && !strcmp(m->metrics[mt].bench, "alignment");
    if (nalign) {
        doc_h(&d, 2, "Alignment quality");
        doc_p(&d, "Caption perplexity, image→caption retrieval R@1 / R@5 and text-only perplexity (the LM's text ability), "
                  "mean and 95 % interval over seeds.");
        const report_fig *f = fig_named(figs, nfigs, "alignment", 1);
        if (f) doc_fig(&d, f);
        for (int mt = 0; mt < m->nmetrics; mt++) {
            if (strcmp(m->metrics[mt].bench, "alignment")) continue;
            doc_h(&d, 3, m->metrics[mt].metric);
            metric_table(&d, m, mt);
        }
    }
    if (m->cg)   /* other metrics of a CG sweep (neither benchmark accuracy nor alignment) */
        for (int mt = 0; mt < m->nmetrics; mt++) {
            if ((m->metrics[mt].is_acc && strcmp(m->metrics[mt].bench, "alignment")) || !strcmp(m->metrics[mt].bench, "alignment"))
                continue;
            char *h = cg_fmt("%s on %s", m->metrics[mt].metric, m->metrics[mt].bench);
            doc_h(&d, 3, h);
            free(h);
            metric_table(&d, m, mt);
        }

    int nloss = 0;
    for (int i = 0; i < nfigs; i++) nloss += !strncmp(figs[i].name, "loss_", 5);
    if (nloss || m->nseries) {
        doc_h(&d, 2, "Training loss");
        if (m->loss_note) {
            char *n = cg_fmt("Curves average the tasks of each group at each step (%s).", m->loss_note);
            doc_note(&d, n);
            free(n);
        }
        for (int i = 0; i < nfigs; i++)
            if (!strncmp(figs[i].name, "loss_", 5)) doc_fig(&d, &figs[i]);
        if (!gnuplot_found) doc_p(&d, "The loss curves are in losses.csv.");
    }

    doc_h(&d, 2, "Runs");
    {
        static const char *head[] = {"state", "runs"};
        char **cells = cg_calloc(9, sizeof *cells);
        cells[0] = cg_strdup("done"), cells[1] = cg_fmt("%d", m->n_done);
        cells[2] = cg_strdup("failed"), cells[3] = cg_fmt("%d", m->n_failed);
        cells[4] = cg_strdup("other (queued, running, interrupted)"), cells[5] = cg_fmt("%d", m->n_other);
        cells[6] = cg_strdup("total"), cells[7] = cg_fmt("%d", m->nruns);
        doc_table(&d, 2, 1, head, cells, 4);
        free(cells);
    }

    doc_h(&d, 2, "Sweep configuration");
    {
        cJSON *j = cJSON_Parse(m->spec_json);
        char *pretty = j ? cJSON_Print(j) : NULL;
        doc_pre(&d, pretty ? pretty : m->spec_json);
        free(pretty);
        cJSON_Delete(j);
        char *a = cg_fmt("Axes: %s.", m->axes_json);
        doc_p(&d, a);
        free(a);
    }

    doc_h(&d, 2, "Code and environment");
    {
        char *c = cg_fmt("Sweep created with code version %s.", m->code_version);
        doc_p(&d, c);
        free(c);
        if (m->nenvs) {
            cg_buf e;
            cg_buf_init(&e);
            for (int i = 0; i < m->nenvs; i++) cg_buf_addf(&e, "%s%s", i ? "\n" : "", m->envs[i]);
            doc_pre(&d, e.data);
            cg_buf_free(&e);
        } else {
            doc_p(&d, "No task of this sweep recorded its environment.");
        }
    }

    doc_h(&d, 2, "Statistics");
    {
        char *s = cg_fmt(
            "Point estimates are means over seeds. With n ≥ 2 seeds the 95 %% interval is mean ± t(0.975, n−1)·s/√n "
            "(s the sample standard deviation; the Student t quantile is computed by cgvlm from the regularized incomplete "
            "beta function). With a single seed it is a percentile bootstrap over the benchmark questions (resampling the "
            "per-question correctness, B = %d). The ratio to generative-only at 100 %% is bootstrapped over seeds (each "
            "cell resampled independently) or, with one seed, over questions (paired by question). Bootstraps are "
            "deterministic: seed %llu, one random stream per cell (summary.json names each). The paired on − off "
            "difference is tested per fraction by a paired t-test over seeds (with one seed: the exact sign-flip test over "
            "questions, i.e. exact McNemar), with Holm-adjusted p-values over the fractions of each contrastive line; the "
            "minimum detectable effect is the smallest difference with 80 %% power at two-sided α = 0.05, from the "
            "noncentral t with the observed sd. Chance is the mean of "
            "1/#options over the benchmark's questions. Files: summary.json (every number), data_efficiency.csv, "
            "metrics.csv, runs.csv, categories.csv, headline.csv, significance.csv, losses.csv, and for each figure NAME.gp + NAME.dat "
            "(re-render with 'gnuplot NAME.gp').",
            m->B, (unsigned long long)m->seed);
        doc_p(&d, s);
        free(s);
    }
    cg_buf_adds(&d.html, "<footer>cgvlm report · self-contained HTML (no scripts, no network)</footer>\n</main></body></html>\n");

    char *p = cg_path_join(dir, "report.md");
    int rc = cg_write_file_atomic(p, d.md.data, d.md.len);
    free(p);
    p = cg_path_join(dir, "report.html");
    if (!rc) rc = cg_write_file_atomic(p, d.html.data, d.html.len);
    free(p);
    free(title);
    cg_buf_free(&d.md);
    cg_buf_free(&d.html);
    return rc;
}
