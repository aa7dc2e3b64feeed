/* report_cmd.c: `cgvlm report`: reads one sweep from the results database (read-only) and writes
 * its report directory: report.md, report.html, figures (PNG + SVG via gnuplot, with their .gp
 * scripts and .dat data), CSV tables and summary.json.
 *
 * The directory is built under a temporary name beside the destination and renamed into place
 * when complete, so a half-written report never sits under the final name. An existing
 * destination is replaced only when it is a previous report (it holds summary.json).
 *
 * Exit status: 0 when the report was written — also when gnuplot is missing (a warning says so;
 * the figures are left out, the Markdown, HTML tables, CSVs and the .gp/.dat files are written);
 * 2 for user errors (unknown sweep, no evaluations yet, missing db, bad flags); 1 for failures. */
#define _GNU_SOURCE
#include "cli/commands.h"
#include "db/store.h"
#include "reports/report.h"
#include "util/faults_hint.h"
#include "util/fs.h"
#include "util/png.h"
#include "util/util.h"
#include "util/ux_opt.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: cgvlm report [--db PATH] --sweep NAME [--out DIR] [--bootstrap N] [--seed N]\n"
            "                    [--target-effect D] [--json]\n"
            "\n"
            "Renders a sweep's report from the results database (read-only): the data-efficiency curve\n"
            "(benchmark accuracy vs instruction-data fraction, contrastive on vs off, mean over seeds with\n"
            "95 %% intervals), the headline numbers, training-loss curves, per-category accuracy,\n"
            "alignment metrics, the sweep's configuration and environment.\n"
            "\n"
            "  --db PATH        results database (default: $CGVLM_DB, else results.db)\n"
            "  --sweep NAME     the sweep to report on\n"
            "  --out DIR        output directory (default: report-NAME); replaced if it holds a previous report\n"
            "  --bootstrap N    bootstrap replicates for intervals over questions / ratios (default 2000)\n"
            "  --seed N         bootstrap random seed (default 0; the same seed gives the same intervals)\n"
            "  --target-effect D  also say how many seeds would detect a paired on − off difference of D\n"
            "                   percentage points (0 < D <= 100) at 80 %% power, from the observed sd\n"
            "  --json           also print summary.json (every computed number) on stdout\n"
            "\n"
            "Writes report.md, report.html (self-contained), *.png/*.svg figures with their *.gp scripts and\n"
            "*.dat data, data_efficiency.csv, metrics.csv, runs.csv, categories.csv, headline.csv,\n"
            "losses.csv, significance.csv and summary.json. Figures need gnuplot on PATH (Debian: gnuplot-nox); without it the\n"
            "rest is written, a warning says so and the exit status stays 0.\n");
}

/* Publishes the finished temporary directory under `out`, replacing a previous report. */
static int publish(const char *tmp, const char *out) {
    int rc = CG_OK;
    char *old = NULL;
    /* gnuplot's figures were never fsync'ed: make every file durable before the directory
     * appears under its final name (a failed sync publishes nothing) */
    int fd = open(tmp, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || syncfs(fd) != 0) {
        int e = errno;
        rc = cg_err(CG_EFAIL, "cannot sync the new report '%s': %s%s", tmp, strerror(e), cg_write_hint(e));
    }
    if (fd >= 0) close(fd);
    if (rc) goto out;
    if (cg_is_dir(out)) {
        old = cg_fmt("%s.old-%ld", out, (long)getpid());
        if (rename(out, old) != 0) {
            rc = cg_err(CG_EFAIL, "cannot move the previous report '%s' aside: %s", out, strerror(errno));
            goto out;
        }
    }
    if (rename(tmp, out) != 0) {
        rc = cg_err(CG_EFAIL, "cannot rename '%s' to '%s': %s", tmp, out, strerror(errno));
        if (old && rename(old, out) != 0) cg_warn("the previous report is left at '%s'", old);
        goto out;
    }
    if (old) cg_rm_rf(old);
    char *slash = strrchr(out, '/');
    char *parent = slash ? cg_strndup(out, (size_t)(slash - out)) : cg_strdup(".");
    cg_fsync_dir(parent[0] ? parent : "/");
    free(parent);
out:
    free(old);
    return rc;
}

/* gnuplot exits 0 when the disk fills while it writes a figure, leaving the PNG or SVG cut short:
 * every figure it rendered must decode (PNG) and end with </svg>, else nothing is published. */
static int check_figures(const char *dir, const report_fig *figs, int nfigs) {
    int rc = CG_OK;
    for (int i = 0; rc == CG_OK && i < nfigs; i++) {
        if (!figs[i].ok) continue;
        char *png = cg_fmt("%s/%s.png", dir, figs[i].name), *svg = cg_fmt("%s/%s.svg", dir, figs[i].name);
        uint8_t *rgb = NULL;
        char *text = NULL;
        size_t len = 0;
        int w, h;
        const char *bad = NULL;
        cg_err_clear();
        if (cg_png_read_rgb(png, &rgb, &w, &h) != CG_OK) bad = png;
        else if (cg_read_file(svg, &text, &len) != CG_OK) bad = svg;
        else {
            while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ')) len--;
            if (len < 6 || memcmp(text + len - 6, "</svg>", 6) != 0) bad = svg;
        }
        if (bad) {
            char *why = cg_strdup(cg_errmsg()[0] ? cg_errmsg() : "it ends early");
            rc = cg_err(CG_EFAIL, "gnuplot left the figure '%s' incomplete (%s): is the disk full or a file-size "
                        "limit ('ulimit -f') reached? free space or raise it and run the same command again", bad, why);
            free(why);
        }
        free(rgb);
        free(text);
        free(png);
        free(svg);
    }
    return rc;
}

int cmd_report(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},   {"sweep", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},  {"bootstrap", required_argument, NULL, 'B'},
        {"seed", required_argument, NULL, 'S'}, {"json", no_argument, NULL, 'j'},
        {"target-effect", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *dbpath = store_default_path(), *sweep = NULL, *out_arg = NULL;
    int B = 2000, json = 0, c, rc = CG_OK, nfigs = 0;
    int64_t seed = 0;
    double target = NAN;
    sqlite3 *db = NULL;
    report_model m;
    int loaded = 0;
    report_fig *figs = NULL;
    char *out = NULL, *tmp = NULL, *gnuplot = NULL;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dbpath = optarg; break;
        case 's': sweep = optarg; break;
        case 'o': out_arg = optarg; break;
        case 'B':
            if ((rc = cg_parse_int(optarg, "--bootstrap", 100, 1000000, &B))) goto out;
            break;
        case 'S':
            if ((rc = cg_parse_i64(optarg, "--seed", 0, INT64_MAX, &seed))) goto out;
            break;
        case 'j': json = 1; break;
        case 'T':
            if ((rc = cg_parse_double(optarg, "--target-effect", &target))) goto out;
            if (!(target > 0 && target <= 100)) {
                rc = cg_err(CG_EUSER, "--target-effect: %s is not a difference in percentage points in (0, 100]; "
                                      "e.g. --target-effect 2 for 2 points", optarg);
                goto out;
            }
            break;
        case 'h': usage(stdout); return CG_OK;
        default:
            rc = cg_opt_error("report", argv, opts);
            goto out;
        }
    }
    if (optind < argc) {
        rc = cg_err(CG_EUSER, "report: unexpected argument '%s'; see 'cgvlm report --help'", argv[optind]);
        goto out;
    }
    if (!sweep || !*sweep) {
        rc = cg_err(CG_EUSER, "report: --sweep NAME is required; see 'cgvlm report --help'");
        goto out;
    }
    if (out_arg) {
        out = cg_strdup(out_arg);
    } else {
        out = cg_fmt("report-%s", sweep);
        for (char *p = out; *p; p++)
            if (*p == '/') *p = '_';
    }
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/') out[--ol] = 0;
    if (cg_file_exists(out) && !cg_is_dir(out)) {
        rc = cg_err(CG_EUSER, "--out '%s' is a file, not a directory; choose another --out", out);
        goto out;
    }
    if (cg_is_dir(out)) {
        char *probe = cg_path_join(out, "summary.json");
        int ok = cg_file_exists(probe);
        free(probe);
        if (!ok) {
            rc = cg_err(CG_EUSER, "--out '%s' exists and is not a cgvlm report (no summary.json); choose another --out", out);
            goto out;
        }
    }

    if ((rc = store_open(dbpath, STORE_READONLY, &db))) goto out;
    if ((rc = report_load(db, sweep, B, (uint64_t)seed, &m))) {
        loaded = 1;
        goto out;
    }
    loaded = 1;
    if (!isnan(target)) report_target(&m, target / 100.0);

    /* build in a temporary directory beside the destination */
    char *slash = strrchr(out, '/');
    if (slash && slash != out) {
        char *parent = cg_strndup(out, (size_t)(slash - out));
        rc = cg_mkdir_p(parent);
        free(parent);
        if (rc) goto out;
    }
    tmp = cg_fmt("%s.tmp-XXXXXX", out);
    if (!mkdtemp(tmp)) {
        rc = cg_err(CG_EFAIL, "cannot create a directory beside '%s': %s%s", out, strerror(errno), cg_write_hint(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    gnuplot = report_find_gnuplot();
    if (!gnuplot) cg_warn("gnuplot not found on PATH; install gnuplot-nox for figures; the Markdown and CSV parts were written");
    if ((rc = report_plot(&m, tmp, gnuplot, &figs, &nfigs))) goto out;
    if ((rc = check_figures(tmp, figs, nfigs))) goto out;
    if ((rc = report_write_data(&m, tmp, figs, nfigs, gnuplot != NULL))) goto out;
    if ((rc = report_write_docs(&m, tmp, figs, nfigs, gnuplot != NULL))) goto out;
    if ((rc = publish(tmp, out))) goto out;
    free(tmp);
    tmp = NULL;
    int rendered = 0;
    for (int i = 0; i < nfigs; i++) rendered += figs[i].ok;
    cg_info("report: %s/report.html (%d of %d figures rendered)", out, rendered, nfigs);
    if (json) {
        char *p = cg_path_join(out, "summary.json"), *text = NULL;
        if ((rc = cg_read_file(p, &text, NULL)) == CG_OK) fputs(text, stdout);
        free(text);
        free(p);
    }
out:
    if (tmp) cg_rm_rf(tmp);
    free(tmp);
    free(out);
    free(gnuplot);
    report_figs_free(figs, nfigs);
    if (loaded) report_free(&m);
    if (db) store_close(db);
    return cg_report(rc);
}
