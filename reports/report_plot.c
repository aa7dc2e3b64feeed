/* report_plot.c: the report's figures: gnuplot data (.dat) and scripts (.gp) written into the
 * report directory, so they can be inspected and re-rendered (`cd DIR && gnuplot NAME.gp`), then
 * rendered to PNG (pngcairo) and SVG by the external gnuplot program. */
#define _GNU_SOURCE
#include "reports/report.h"
#include "util/fs.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIG_W 1200
#define FIG_H 640

static const char *palette[] = {"#3B6FB6", "#D1495B", "#2A9D8F", "#E9A03B", "#7B5EA7", "#6C757D"};

/* The colour of a line: in CG sweeps generative-only is blue and contrastive red. */
static const char *line_color(const report_model *m, int l) {
    if (m->cg && !isnan(m->lines[l].lambda)) {
        int npos = 0;
        for (int i = 0; i < l; i++) npos += m->lines[i].lambda > 0;
        if (m->lines[l].lambda == 0) return npos == 0 ? palette[0] : palette[(2 + l) % 6];
        return npos == 0 ? palette[1] : palette[(2 + l) % 6];
    }
    return palette[l % 6];
}

/* A double-quoted gnuplot string for enhanced text: quotes, backslashes and markup escaped. */
static void gp_str(cg_buf *b, const char *s) {
    cg_buf_adds(b, "\"");
    for (; *s; s++) {
        if (*s == '\n') {
            cg_buf_adds(b, "\\n");
            continue;
        }
        if (strchr("_^{}@&~", *s)) cg_buf_adds(b, "\\\\");
        else if (*s == '"' || *s == '\\') cg_buf_adds(b, "\\");
        cg_buf_add(b, s, 1);
    }
    cg_buf_adds(b, "\"");
}

char *report_find_gnuplot(void) {
    const char *path = getenv("PATH");
    if (!path) return NULL;
    char *copy = cg_strdup(path), *save = NULL, *found = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *f = cg_path_join(*d ? d : ".", "gnuplot");
        if (access(f, X_OK) == 0) found = f;
        else free(f);
    }
    free(copy);
    return found;
}

static int write_text(const char *dir, const char *name, const cg_buf *b) {
    char *p = cg_path_join(dir, name);
    int rc = cg_write_file_atomic(p, b->data ? b->data : "", b->len);
    free(p);
    return rc;
}

/* Runs `gnuplot NAME.gp` inside dir with its output in NAME.log (removed on success). */
static int run_gnuplot(const char *gnuplot, const char *dir, const char *name) {
    char *gp = cg_fmt("%s.gp", name), *log = cg_fmt("%s.log", name);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(126);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(gnuplot, "gnuplot", gp, (char *)NULL);
        _exit(127);
    }
    int status = 0, rc = CG_OK;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) rc = cg_err(CG_EFAIL, "cannot run '%s': %s", gnuplot, strerror(errno));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = cg_err(CG_EFAIL, "gnuplot failed on %s; its messages are kept in %s in the report directory", gp, log);
    if (rc == CG_OK) {
        char *lp = cg_path_join(dir, log);
        unlink(lp);
        free(lp);
    }
    free(gp);
    free(log);
    return rc;
}

/* The script preamble (PNG first) and the part that renders the same plot to SVG. */
static void gp_begin(cg_buf *b, const char *name) {
    cg_buf_addf(b,
                "# %s.gp: written by cgvlm report; re-render with: gnuplot %s.gp\n"
                "set encoding utf8\n"
                "set terminal pngcairo size %d,%d enhanced font 'DejaVu Sans,14' linewidth 1.3 background rgb 'white'\n"
                "set output '%s.png'\n"
                "set border 3 lw 1.2 lc rgb '#555555'\n"
                "set tics nomirror out scale 0.6 textcolor rgb '#333333'\n"
                "set grid xtics ytics lc rgb '#e3e3e3' lw 1 dt 1\n"
                "set key outside right top vertical Left reverse spacing 1.4 samplen 2.5 width 1 noopaque\n"
                "set lmargin 11\n",
                name, name, FIG_W, FIG_H, name);
}

static void gp_end(cg_buf *b, const char *name) {
    cg_buf_addf(b,
                "set terminal svg size %d,%d enhanced font 'DejaVu Sans,14' linewidth 1.3 background rgb 'white'\n"
                "set output '%s.svg'\nreplot\nunset output\n",
                FIG_W, FIG_H, name);
}

static void add_fig(report_fig **figs, int *n, const char *name, char *title, char *caption) {
    *figs = cg_realloc(*figs, ((size_t)*n + 1) * sizeof **figs);
    (*figs)[*n] = (report_fig){cg_strdup(name), title, caption, 0};
    (*n)++;
}

static char *interval_words(const report_model *m, int metric) {
    int t = 0, bq = 0, none = 0;
    for (int l = 0; l < m->nlines; l++)
        for (int k = 0; k < m->nx; k++) {
            const report_cell *c = REPORT_CELL(m, metric, l, k);
            if (!c->n) continue;
            t += c->ci.ci == REPORT_CI_T;
            bq += c->ci.ci == REPORT_CI_BOOT_Q;
            none += c->ci.ci == REPORT_CI_NONE;
        }
    if (bq && !t) return cg_fmt("single seed; shaded: 95 %% bootstrap interval over benchmark questions (B = %d)", m->B);
    if (t && !bq && !none) return cg_fmt("mean over seeds (up to %d); shaded: 95 %% t-interval over seeds", m->max_seeds);
    if (t) return cg_fmt("mean over seeds; shaded: 95 %% t-interval over seeds (bootstrap over questions where a point has one seed)");
    return cg_strdup("one run per point; no interval");
}

/* A metric against the x axis, one line per line of the sweep (the data-efficiency curve in CG sweeps). */
static int curve_fig(const report_model *m, const char *dir, int metric, const char *name, report_fig **figs, int *nfigs) {
    const report_metric *mt = &m->metrics[metric];
    double scale = mt->is_acc ? 100.0 : 1.0;
    cg_buf dat, gp;
    cg_buf_init(&dat);
    cg_buf_init(&gp);
    cg_buf_addf(&dat, "# %s.dat: %s / %s by %s; one block per line (gnuplot index)\n"
                      "# columns: x mean lo hi n has_interval (lo = hi = mean when there is no interval)\n",
                name, mt->bench, mt->metric, m->axes[m->xaxis]);
    double ymin = INFINITY, ymax = -INFINITY;
    int block = 0, *blk = cg_calloc((size_t)m->nlines + 1, sizeof *blk);
    for (int l = 0; l < m->nlines; l++) {
        blk[l] = -1;
        int any = 0;
        for (int k = 0; k < m->nx; k++) any |= REPORT_CELL(m, metric, l, k)->n > 0;
        if (!any) continue;
        blk[l] = block++;
        cg_buf_addf(&dat, "%s# line %d: %s\n", blk[l] ? "\n\n" : "", l, m->lines[l].label);
        for (int k = 0; k < m->nx; k++) {
            const report_cell *c = REPORT_CELL(m, metric, l, k);
            if (!c->n) continue;
            int has = !isnan(c->ci.lo);
            double lo = has ? c->ci.lo : c->ci.mean, hi = has ? c->ci.hi : c->ci.mean;
            cg_buf_addf(&dat, "%.17g %.17g %.17g %.17g %d %d\n", m->xs[k], c->ci.mean, lo, hi, c->n, has);
            if (lo * scale < ymin) ymin = lo * scale;
            if (hi * scale > ymax) ymax = hi * scale;
        }
    }
    char *datname = cg_fmt("%s.dat", name);
    int rc = write_text(dir, datname, &dat);
    free(datname);
    int is_base_fig = m->cg && metric == m->primary && !isnan(m->base_value);
    double v95 = is_base_fig ? 0.95 * m->base_value * scale : NAN;
    double chance = (m->cg && mt->is_acc && !isnan(m->chance)) ? m->chance * scale : NAN;
    if (!isnan(v95)) ymin = fmin(ymin, v95), ymax = fmax(ymax, v95);
    if (!isnan(chance)) ymin = fmin(ymin, chance), ymax = fmax(ymax, chance);
    double pad = (ymax - ymin) * 0.08 + (mt->is_acc ? 1.0 : 1e-9);
    ymin -= pad, ymax += pad;
    if (mt->is_acc) ymin = fmax(ymin, 0), ymax = fmin(ymax, 100);

    gp_begin(&gp, name);
    char *xwords = m->cg ? cg_strdup("instruction-data fraction (log scale)") : cg_strdup(m->axes[m->xaxis]);
    char *title = m->cg ? cg_fmt("Data efficiency: %s on %s", mt->metric, mt->bench)
                        : cg_fmt("%s on %s by %s", mt->metric, mt->bench, m->axes[m->xaxis]);
    char *sub = interval_words(m, metric);
    cg_buf_adds(&gp, "set title ");
    cg_buf t;
    cg_buf_init(&t);
    cg_buf_addf(&t, "%s\n%s", title, sub);
    gp_str(&gp, t.data);
    cg_buf_free(&t);
    cg_buf_adds(&gp, " font 'DejaVu Sans,15'\nset xlabel ");
    gp_str(&gp, xwords);
    cg_buf_adds(&gp, "\nset ylabel ");
    char *ylab = mt->is_acc ? cg_fmt("%s (%%)", mt->metric) : cg_strdup(mt->metric);
    gp_str(&gp, ylab);
    /* intervals are clamped to the plotted range: gnuplot clips filled areas badly */
    cg_buf_addf(&gp, "\nylo = %.10g\nyhi = %.10g\nclamp(v) = v < ylo ? ylo : (v > yhi ? yhi : v)\nset yrange [ylo:yhi]\n", ymin, ymax);
    if (mt->is_acc) cg_buf_adds(&gp, "set format y '%g %%'\n");
    int logx = m->cg && m->xs[0] > 0;
    if (logx) {
        cg_buf_addf(&gp, "set logscale x\nset xrange [%.6g:%.6g]\n", fmin(m->xs[0], 0.01) / 1.4, fmax(m->xs[m->nx - 1], 1.0) * 1.4);
        cg_buf_adds(&gp, "set xtics (\"1 %%\" 0.01, \"5 %%\" 0.05, \"10 %%\" 0.1, \"25 %%\" 0.25, \"50 %%\" 0.5, \"100 %%\" 1)\n");
    } else if (m->nx > 1) {
        double span = m->xs[m->nx - 1] - m->xs[0];
        cg_buf_addf(&gp, "set xrange [%.6g:%.6g]\n", m->xs[0] - 0.05 * span, m->xs[m->nx - 1] + 0.05 * span);
    }
    cg_buf_adds(&gp, "set style fill transparent solid 0.16 noborder\nset bars small\nplot ");
    int first = 1;
    for (int l = 0; l < m->nlines; l++) {
        if (blk[l] < 0) continue;
        const char *c = line_color(m, l);
        int pt = m->cg && m->lines[l].lambda > 0 ? 7 : 5;
        cg_buf_addf(&gp, "%s'%s.dat' index %d using 1:(clamp($3*%g)):(clamp($4*%g)) with filledcurves fc rgb '%s' notitle, \\\n",
                    first ? "" : ", \\\n     ", name, blk[l], scale, scale, c);
        cg_buf_addf(&gp, "     '' index %d using 1:($2*%g):(clamp($3*%g)):(clamp($4*%g)) with yerrorbars lc rgb '%s' lw 1.3 pt -1 notitle, \\\n",
                    blk[l], scale, scale, scale, c);
        cg_buf_addf(&gp, "     '' index %d using 1:($2*%g) with linespoints lc rgb '%s' lw 2.6 pt %d ps 1.5 title ",
                    blk[l], scale, c, pt);
        gp_str(&gp, m->lines[l].label);
        first = 0;
    }
    if (!isnan(v95)) {
        char *lab = cg_strdup("95 % of gen.-only at 100 %");
        cg_buf_addf(&gp, ", \\\n     %.10g with lines dt (8,6) lc rgb '#333333' lw 1.8 title ", v95);
        gp_str(&gp, lab);
        free(lab);
    }
    if (!isnan(chance)) {
        char *lab = cg_strdup("chance");
        cg_buf_addf(&gp, ", \\\n     %.10g with lines dt (2,5) lc rgb '#999999' lw 1.8 title ", chance);
        gp_str(&gp, lab);
        free(lab);
    }
    cg_buf_adds(&gp, "\n");
    gp_end(&gp, name);
    char *gpname = cg_fmt("%s.gp", name);
    if (!rc) rc = write_text(dir, gpname, &gp);
    free(gpname);
    cg_buf *cap = &t;
    cg_buf_init(cap);
    cg_buf_addf(cap, "%s %s vs %s; %s.", mt->bench, mt->metric, xwords, sub);
    if (!isnan(v95)) cg_buf_addf(cap, " Dashed: 95 %% of the generative-only accuracy with 100 %% of the data (%.1f %%).", v95);
    if (!isnan(chance)) cg_buf_addf(cap, " Dotted: chance (mean of 1/#options, %.1f %%).", chance);
    add_fig(figs, nfigs, name, title, cg_buf_steal(cap));
    free(xwords);
    free(sub);
    free(ylab);
    free(blk);
    cg_buf_free(&dat);
    cg_buf_free(&gp);
    return rc;
}

/* Training-loss curves of one stage kind: one colour per group, one dash pattern per loss. */
static int loss_fig(const report_model *m, const char *dir, const char *stage, report_fig **figs, int *nfigs) {
    char *name = cg_fmt("loss_%s", stage);
    cg_buf dat, gp;
    cg_buf_init(&dat);
    cg_buf_init(&gp);
    cg_buf_addf(&dat, "# %s.dat: training losses of the %s stage, mean over tasks at each step; one block per curve\n"
                      "# columns: step value\n", name, stage);
    gp_begin(&gp, name);
    char *title = cg_fmt("Training loss: %s", stage);
    cg_buf_adds(&gp, "set title ");
    gp_str(&gp, title);
    cg_buf_adds(&gp, " font 'DejaVu Sans,15'\nset xlabel 'step'\nset ylabel 'loss'\nplot ");
    int block = 0, ntasks_max = 0;
    static const char *groups[] = {"generative only", "contrastive", "shared by on and off", "all"};
    static const char *losses[] = {"loss", "loss_gen", "loss_con"};
    for (int o = 0; o < 12; o++)   /* in legend order: group, then total / generative / contrastive */
    for (int i = 0; i < m->nseries; i++) {
        const report_series *s = &m->series[i];
        if (strcmp(s->stage, stage) || strcmp(s->group, groups[o / 3]) || strcmp(s->metric, losses[o % 3])) continue;
        cg_buf_addf(&dat, "%s# curve %d: %s %s (%d tasks)\n", block ? "\n\n" : "", block, s->group, s->metric, s->ntasks);
        for (int j = 0; j < s->n; j++) cg_buf_addf(&dat, "%.17g %.17g\n", s->step[j], s->val[j]);
        const char *c = !strcmp(s->group, "generative only") ? palette[0] : !strcmp(s->group, "contrastive") ? palette[1] : "#444444";
        const char *dt = !strcmp(s->metric, "loss") ? "1" : !strcmp(s->metric, "loss_gen") ? "(10,5)" : "(3,4)";
        cg_buf_addf(&gp, "%s'%s.dat' index %d using 1:2 with lines lc rgb '%s' dt %s lw 2.2 title ", block ? ", \\\n     " : "",
                    name, block, c, dt);
        char *lab = cg_fmt("%s%s%s", s->metric, strcmp(s->group, "all") ? ", " : "", strcmp(s->group, "all") ? s->group : "");
        gp_str(&gp, lab);
        free(lab);
        if (s->ntasks > ntasks_max) ntasks_max = s->ntasks;
        block++;
    }
    cg_buf_adds(&gp, "\n");
    gp_end(&gp, name);
    char *f = cg_fmt("%s.dat", name);
    int rc = write_text(dir, f, &dat);
    free(f);
    f = cg_fmt("%s.gp", name);
    if (!rc) rc = write_text(dir, f, &gp);
    free(f);
    char *cap = cg_fmt("Training loss of the %s stage vs step (mean over the tasks of each curve, up to %d). "
                       "Solid: total loss; dashed: generative loss; dotted: contrastive loss.", stage, ntasks_max);
    add_fig(figs, nfigs, name, title, cap);
    cg_buf_free(&dat);
    cg_buf_free(&gp);
    free(name);
    return rc;
}

/* Small multiples: one panel per category (or alignment metric), each the lines of the sweep against
 * the x axis with their 95 % bands. cells[(p * nlines + l) * nx + k] are the panel's cells. */
static int multiples_fig(const report_model *m, const char *dir, const char *name, char *title, char *caption,
                         int npanels, char **ptitles, const report_cell *const *cells, const int *pct,
                         report_fig **figs, int *nfigs) {
    int cols = npanels <= 3 ? npanels : npanels == 4 ? 2 : 3, rows = (npanels + cols - 1) / cols;
    int H = 110 + 330 * rows;
    cg_buf dat, body, gp;
    cg_buf_init(&dat);
    cg_buf_init(&body);
    cg_buf_init(&gp);
    cg_buf_addf(&dat, "# %s.dat: one block per panel and line (gnuplot index)\n"
                      "# columns: x mean lo hi n has_interval (lo = hi = mean when there is no interval)\n", name);
    cg_buf_addf(&body, "set multiplot layout %d,%d title ", rows, cols);
    gp_str(&body, title);
    cg_buf_addf(&body, " font 'DejaVu Sans,15' margins 0.07,0.98,%.3f,%.3f spacing 0.07,%.3f\n", 60.0 / H,
                1.0 - (105.0 + 20.0 * ((m->nlines - 1) / 3)) / H, 80.0 / H);
    cg_buf_adds(&body, "set key off\nset style fill transparent solid 0.16 noborder\nset bars small\n");
    int logx = m->cg && m->xs[0] > 0;
    if (logx)
        cg_buf_addf(&body, "set logscale x\nset xrange [%.6g:%.6g]\nset xtics (\"1 %%%%\" 0.01, \"10 %%%%\" 0.1, \"100 %%%%\" 1)\n",
                    fmin(m->xs[0], 0.01) / 1.4, fmax(m->xs[m->nx - 1], 1.0) * 1.4);
    /* the legend: coloured labels above the panels, drawn with the first panel */
    for (int l = 0; l < m->nlines; l++) {
        cg_buf_addf(&body, "set label %d ", 900 + l);
        char *lab = cg_fmt("■ %s", m->lines[l].label);
        gp_str(&body, lab);
        free(lab);
        cg_buf_addf(&body, " at screen %.3f,%.3f tc rgb '%s' font 'DejaVu Sans,13'\n", 0.07 + 0.3 * (l % 3),
                    1.0 - (48.0 + 20.0 * (l / 3)) / H, line_color(m, l));
    }
    int block = 0;
    for (int p = 0; p < npanels; p++) {
        double scale = pct[p] ? 100.0 : 1.0;
        cg_buf_adds(&body, "set title ");
        gp_str(&body, ptitles[p]);
        cg_buf_adds(&body, " font 'DejaVu Sans,13'\n");
        /* accuracy panels share one scale, so categories compare at a glance */
        cg_buf_adds(&body, pct[p] ? "set format y '%g %%'\nylo = 0\nyhi = 100\nset yrange [0:100]\nset ytics 0,25,100\n"
                                  : "set format y '%g'\nylo = -1e300\nyhi = 1e300\nset yrange [*:*]\nset ytics autofreq\n");
        cg_buf_adds(&body, "clamp(v) = v < ylo ? ylo : (v > yhi ? yhi : v)\nplot ");
        int first = 1;
        for (int l = 0; l < m->nlines; l++) {
            int any = 0;
            for (int k = 0; k < m->nx; k++) any |= cells[((size_t)p * m->nlines + l) * m->nx + k]->n > 0;
            if (!any) continue;
            cg_buf_addf(&dat, "%s# panel %d line %d: %s | %s\n", block ? "\n\n" : "", p, l, ptitles[p], m->lines[l].label);
            for (int k = 0; k < m->nx; k++) {
                const report_cell *c = cells[((size_t)p * m->nlines + l) * m->nx + k];
                if (!c->n) continue;
                int has = !isnan(c->ci.lo);
                cg_buf_addf(&dat, "%.17g %.17g %.17g %.17g %d %d\n", m->xs[k], c->ci.mean, has ? c->ci.lo : c->ci.mean,
                            has ? c->ci.hi : c->ci.mean, c->n, has);
            }
            const char *col = line_color(m, l);
            cg_buf_addf(&body, "%s'%s.dat' index %d using 1:(clamp($3*%g)):(clamp($4*%g)) with filledcurves fc rgb '%s', \\\n"
                               "     '' index %d using 1:($2*%g) with linespoints lc rgb '%s' lw 2.2 pt 7 ps 1.0",
                        first ? "" : ", \\\n     ", name, block, scale, scale, col, block, scale, col);
            block++;
            first = 0;
        }
        if (first) cg_buf_adds(&body, "NaN notitle");   /* an empty panel keeps the grid in place */
        cg_buf_adds(&body, "\n");
        if (p == 0)
            for (int l = 0; l < m->nlines; l++) cg_buf_addf(&body, "unset label %d\n", 900 + l);
    }
    cg_buf_adds(&body, "unset multiplot\n");
    cg_buf_addf(&gp,
                "# %s.gp: written by cgvlm report; re-render with: gnuplot %s.gp\n"
                "set encoding utf8\n"
                "set border 3 lw 1.2 lc rgb '#555555'\n"
                "set tics nomirror out scale 0.6 textcolor rgb '#333333'\n"
                "set grid xtics ytics lc rgb '#e3e3e3' lw 1 dt 1\n"
                "set terminal pngcairo size %d,%d enhanced font 'DejaVu Sans,12' linewidth 1.3 background rgb 'white'\n"
                "set output '%s.png'\n%s"
                "set terminal svg size %d,%d enhanced font 'DejaVu Sans,12' linewidth 1.3 background rgb 'white'\n"
                "set output '%s.svg'\n%sunset output\n",
                name, name, FIG_W, H, name, body.data, FIG_W, H, name, body.data);
    char *f = cg_fmt("%s.dat", name);
    int rc = write_text(dir, f, &dat);
    free(f);
    f = cg_fmt("%s.gp", name);
    if (!rc) rc = write_text(dir, f, &gp);
    free(f);
    add_fig(figs, nfigs, name, title, caption);
    cg_buf_free(&dat);
    cg_buf_free(&body);
    cg_buf_free(&gp);
    return rc;
}

/* Per-category accuracy (primary metric) and the alignment metrics, as small multiples. */
static int panel_figs(const report_model *m, const char *dir, report_fig **figs, int *nfigs) {
    int rc = CG_OK;
    if (m->xaxis < 0) return CG_OK;
    if (m->ncats > 0 && m->primary >= 0) {
        const report_cell **cells = cg_malloc(((size_t)m->ncats * m->nlines * m->nx + 1) * sizeof *cells);
        int *pct = cg_malloc(((size_t)m->ncats + 1) * sizeof *pct);
        for (int c = 0; c < m->ncats; c++) {
            pct[c] = 1;
            for (int l = 0; l < m->nlines; l++)
                for (int k = 0; k < m->nx; k++) cells[((size_t)c * m->nlines + l) * m->nx + k] = REPORT_CATCELL(m, c, l, k);
        }
        char *title = cg_fmt("Accuracy by category (%s on %s)", m->metrics[m->primary].metric, m->metrics[m->primary].bench);
        char *cap = cg_fmt("Per-category %s vs %s, one panel per category; mean over seeds with a shaded 95 %% t-interval "
                           "over seeds (none with a single seed).", m->metrics[m->primary].metric,
                           m->cg ? "instruction-data fraction (log scale)" : m->axes[m->xaxis]);
        rc = multiples_fig(m, dir, "categories", title, cap, m->ncats, m->cats, cells, pct, figs, nfigs);
        free(cells);
        free(pct);
    }
    int na = 0;
    for (int mt = 0; mt < m->nmetrics; mt++) na += !strcmp(m->metrics[mt].bench, "alignment");
    if (!rc && na > 0 && m->cg) {
        const report_cell **cells = cg_malloc(((size_t)na * m->nlines * m->nx + 1) * sizeof *cells);
        int *pct = cg_malloc(((size_t)na + 1) * sizeof *pct);
        char **titles = cg_malloc(((size_t)na + 1) * sizeof *titles);
        int p = 0;
        for (int mt = 0; mt < m->nmetrics; mt++) {
            if (strcmp(m->metrics[mt].bench, "alignment")) continue;
            pct[p] = 0;
            titles[p] = m->metrics[mt].metric;
            for (int l = 0; l < m->nlines; l++)
                for (int k = 0; k < m->nx; k++) cells[((size_t)p * m->nlines + l) * m->nx + k] = REPORT_CELL(m, mt, l, k);
            p++;
        }
        rc = multiples_fig(m, dir, "alignment", cg_strdup("Alignment quality"),
                           cg_strdup("Caption perplexity, image→caption retrieval R@1 / R@5 and text-only perplexity vs "
                                     "instruction-data fraction; mean over seeds with a shaded 95 % t-interval over seeds."),
                           na, titles, cells, pct, figs, nfigs);
        free(cells);
        free(pct);
        free(titles);
    }
    return rc;
}

static void sanitize(char *s) {
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-')) *s = '_';
}

int report_plot(const report_model *m, const char *dir, const char *gnuplot, report_fig **figs, int *nfigs) {
    int rc = CG_OK;
    *figs = NULL;
    *nfigs = 0;
    if (m->xaxis >= 0) {
        for (int mt = 0; mt < m->nmetrics && !rc; mt++) {
            const report_metric *me = &m->metrics[mt];
            /* CG sweeps: every benchmark accuracy; others: the primary metric (or the first) */
            int want = m->cg ? (me->is_acc && strcmp(me->bench, "alignment")) : (mt == (m->primary >= 0 ? m->primary : 0));
            if (!want) continue;
            char *name;
            if (m->cg) name = mt == m->primary ? cg_strdup("data_efficiency") : cg_fmt("data_efficiency_%s_%s", me->bench, me->metric);
            else name = cg_fmt("by_%s", m->axes[m->xaxis]);
            sanitize(name);
            rc = curve_fig(m, dir, mt, name, figs, nfigs);
            free(name);
        }
    }
    if (!rc) rc = panel_figs(m, dir, figs, nfigs);
    for (int i = 0; i < m->nseries && !rc; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= !strcmp(m->series[j].stage, m->series[i].stage);
        if (!seen) {
            char *stage = cg_strdup(m->series[i].stage);
            sanitize(stage);
            rc = loss_fig(m, dir, stage, figs, nfigs);
            free(stage);
        }
    }
    if (rc || !gnuplot) return rc;
    for (int i = 0; i < *nfigs; i++) {
        if (run_gnuplot(gnuplot, dir, (*figs)[i].name) != CG_OK) {
            cg_warn("%s", cg_errmsg());
            continue;
        }
        char *png = cg_fmt("%s/%s.png", dir, (*figs)[i].name), *svg = cg_fmt("%s/%s.svg", dir, (*figs)[i].name);
        (*figs)[i].ok = cg_file_exists(png) && cg_file_exists(svg);
        free(png);
        free(svg);
    }
    return CG_OK;
}

void report_figs_free(report_fig *figs, int n) {
    for (int i = 0; i < n; i++) {
        free(figs[i].name);
        free(figs[i].title);
        free(figs[i].caption);
    }
    free(figs);
}
