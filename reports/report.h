/* report.h: the report of one sweep. report_model.c loads it from the results database (through
 * the v_* views and the sweeps/runs/run_params/environments tables) and computes every number;
 * report_plot.c renders figures with gnuplot; report_doc.c writes CSV, summary.json, Markdown and
 * HTML; report_cmd.c is the command that ties them together.
 *
 * The shape of a sweep's results, for any sweep: runs are grouped into LINES (one per value of the
 * axes other than the x axis; seeds are replicates) and, along the x axis, into CELLS
 * (metric × line × x). A CG-VLM sweep (axes align.lambda and instruct.fraction) has x = the
 * instruction-data fraction (log scale) and one line per λ; other sweeps use their first
 * numeric axis as x (or none). */
#ifndef CG_REPORT_H
#define CG_REPORT_H

#include <sqlite3.h>
#include <stdint.h>

enum { REPORT_CI_NONE = 0, REPORT_CI_T = 1, REPORT_CI_BOOT_Q = 2, REPORT_CI_BOOT_SEEDS = 3 };

typedef struct {
    int n;             /* replicates (seeds, or pairs of seeds for differences) */
    double mean, sd;   /* point estimate and sample sd over the replicates */
    double lo, hi;     /* the 95 % interval; NAN when none */
    double tq;         /* the t quantile used (REPORT_CI_T), else NAN */
    int ci;            /* REPORT_CI_* */
    char *boot_label;  /* the bootstrap stream label (stats.h), NULL unless bootstrapped */
} report_ci;

typedef struct {
    int64_t id;
    int seed;
    char *name, *state;
    char **vals;       /* value_json of each axis (NULL when missing) */
    double *nums;      /* value_num of each axis (NAN when not numeric) */
    int line, xi;      /* its line and x index; xi = -1 when it has no x value */
    double lambda;     /* runs.lambda, NAN when unset */
} report_run;

typedef struct {
    char *key;         /* "align.lambda=1" — the axes other than x; "" when there are none */
    char *other;       /* the key without align.lambda (pairs a contrastive line with its baseline) */
    char *label;       /* for people: "contrastive (λ = 1)" */
    int exemplar;      /* a run of the line (for sorting) */
    double lambda;     /* NAN outside CG sweeps */
    int base;          /* CG: the λ = 0 line with the same other axes, else -1 */
} report_line;

typedef struct {
    char *bench, *metric;
    int is_acc;        /* an accuracy_* metric (a fraction of questions) */
} report_metric;

typedef struct {
    int n;
    int *runs;         /* run indices with a value */
    double *vals;
    report_ci ci;
} report_cell;

enum { REPORT_TEST_NONE = 0, REPORT_TEST_T = 1, REPORT_TEST_SIGNFLIP = 2 };
#define REPORT_ALPHA 0.05
#define REPORT_POWER 0.8

typedef struct {       /* the paired on − off test of a headline row, and what it could detect */
    int method;        /* REPORT_TEST_*: paired t over seeds, or (one seed) the exact sign-flip over questions */
    double t, df;      /* REPORT_TEST_T */
    int b, c, nq;      /* REPORT_TEST_SIGNFLIP: questions on right / off wrong, the reverse, questions paired */
    double p;          /* two-sided p-value, NAN when none */
    double p_holm;     /* Holm-adjusted over the holm_k rows of the same contrastive line with a p-value */
    int holm_k;
    double mde;        /* minimum detectable paired difference (accuracy units) at 80 % power, two-sided α = 0.05:
                        * over seeds (REPORT_TEST_T), over questions only (REPORT_TEST_SIGNFLIP); NAN when none */
    double mde_holm;   /* the same at α/holm_k (the first step of Holm) */
    int seeds_needed;  /* report_target: seeds to detect the target effect; -1 not computable, 0 not asked */
} report_test;

typedef struct {       /* one CG headline row: a contrastive line at one fraction */
    int line, xi;
    report_ci ratio;   /* on(f) / generative-only(100 %) */
    report_ci diff;    /* on(f) − off(f), paired by seed */
    report_test test;  /* the paired test of diff */
} report_head;

typedef struct {       /* one training-loss curve: mean over tasks at each step */
    char *stage, *group, *metric;
    int n, cap, ntasks;
    double *step, *val;
} report_series;

typedef struct {
    char *sweep, *spec_json, *axes_json, *code_version;
    double created_at;
    int B;
    uint64_t seed;

    char **axes;
    int naxes;
    int cg;            /* align.lambda and instruct.fraction are both axes */
    int xaxis;         /* index into axes, -1 when no numeric axis */
    double *xs;
    int nx;

    report_run *runs;
    int nruns, n_done, n_failed, n_other;
    report_line *lines;
    int nlines;
    report_metric *metrics;
    int nmetrics;
    report_cell *cells;     /* [metric][line][x]: cell(m, metric, line, xi) */
    int primary;            /* the primary accuracy metric, -1 when none */
    int max_seeds;          /* largest replicate count of a primary cell */

    char **cats;            /* categories of the primary metric */
    int ncats;
    report_cell *catcells;  /* [cat][line][x] */

    double chance;          /* mean of 1/#options over the benchmark questions, NAN when unknown */
    int base_line;          /* CG: the λ = 0 line of the headline (first one), -1 */
    double base_value;      /* its primary accuracy at the largest fraction */
    report_head *heads;
    int nheads;
    double target_effect;   /* report_target's effect (accuracy units), NAN when not asked */

    report_series *series;
    int nseries;
    char *loss_note;        /* e.g. which instruct tasks the curves show */

    char **envs;            /* environment lines */
    int nenvs;
} report_model;

#define REPORT_CELL(m, metric, line, xi) (&(m)->cells[((size_t)(metric) * (m)->nlines + (line)) * (m)->nx + (xi)])
#define REPORT_CATCELL(m, cat, line, xi) (&(m)->catcells[((size_t)(cat) * (m)->nlines + (line)) * (m)->nx + (xi)])

/* Loads and computes the report of `sweep` (B bootstrap replicates, bootstrap seed). CG_EUSER for
 * an unknown sweep (the message lists the sweeps there are) or one without evaluation results. */
int report_load(sqlite3 *db, const char *sweep, int B, uint64_t seed, report_model *m);
void report_free(report_model *m);
/* For each headline row tested over seeds: the seeds needed to detect a paired difference of
 * `effect` (accuracy units, > 0) at 80 % power, two-sided α = 0.05, from the row's observed sd. */
void report_target(report_model *m, double effect);
#define REPORT_SEEDS_MAX 100000

/* Text helpers shared by the writers. */
const char *report_ci_name(int ci);   /* "t-interval over seeds", ... */
char *report_fmt_x(const report_model *m, double x);   /* "10 %" for fractions, else "%g" */
/* The smallest fraction at which `line` reaches 95 % of the generative-only accuracy at 100 %:
 * by its point estimate, or (confident) by the lower end of its ratio interval; NAN if none. */
double report_smallest_95(const report_model *m, int line, int confident);

typedef struct {
    char *name;        /* file stem: NAME.gp, NAME.dat, NAME.png, NAME.svg */
    char *title;
    char *caption;
    int ok;            /* rendered (PNG and SVG exist) */
} report_fig;

/* Finds gnuplot on PATH; malloc'ed full path or NULL. */
char *report_find_gnuplot(void);
/* Writes every figure's .dat and .gp into dir and, when gnuplot is given, runs it there. A figure
 * gnuplot fails on is reported with a warning and left out (ok = 0); its log stays as NAME.log. */
int report_plot(const report_model *m, const char *dir, const char *gnuplot, report_fig **figs, int *nfigs);
void report_figs_free(report_fig *figs, int n);

/* CSVs (data_efficiency.csv, metrics.csv, categories.csv, headline.csv, losses.csv) and summary.json. */
int report_write_data(const report_model *m, const char *dir, const report_fig *figs, int nfigs, int gnuplot_found);
/* report.md and the self-contained report.html. */
int report_write_docs(const report_model *m, const char *dir, const report_fig *figs, int nfigs, int gnuplot_found);

#endif
