/* main.c: the `cgvlm` command: global flags, help, version and dispatch to subcommands. */
#include "cli/commands.h"
#include "util/util.h"
#include "version.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command commands[] = {
    {"world", cmd_world, "generate, inspect and check the miniature vision-language world"},
    {"run", cmd_run, "run one experiment's stages (train, evaluate)"},
    {"sweep", cmd_sweep, "run an ablation sweep with the task scheduler"},
    {"status", cmd_status, "show the progress of a sweep"},
    {"cancel", cmd_cancel, "cancel a running sweep"},
    {"query", cmd_query, "run a read-only SQL query on the results database"},
    {"runs", cmd_runs, "list runs in the results database"},
    {"show", cmd_show, "show one run: config, tasks, metrics"},
    {"compare", cmd_compare, "compare two runs: config diff and metric diff"},
    {"report", cmd_report, "render a sweep's report: data-efficiency curve, tables, HTML"},
    {"fetch", cmd_fetch, "download a benchmark from its manifest into the cache"},
    {"bench", cmd_bench, "measure speed: world, train, db, sched, fetch"},
    {"env", cmd_env, "print the build configuration, BLAS and CUDA devices"},
    {"task", cmd_task, "(internal) execute one scheduled task"},
};

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: cgvlm [--quiet] COMMAND [ARGS...]\n"
            "\n"
            "cgvlm runs vision-language alignment experiments (CG-VLM: contrastive + generative\n"
            "alignment) end to end: a built-in world, a C training core, sweeps, an SQLite results\n"
            "database, benchmark fetching and reports.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < CG_ARRAY_LEN(commands); i++)
        if (strcmp(commands[i].name, "task") != 0)
            fprintf(fp, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp,
            "\n"
            "  cgvlm COMMAND --help   help for one command (or: cgvlm help COMMAND)\n"
            "  cgvlm --quiet COMMAND  no progress or info lines on stderr (errors and warnings still)\n"
            "  cgvlm --version        the version and the code version it was built from\n");
}

int cg_not_yet(int argc, char **argv, const char *what, const char *issue) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: %s ...\n\nnot implemented yet (tracked in %s)\n", what, issue);
            return CG_OK;
        }
    return cg_report(cg_err(CG_EUSER, "'%s' is not implemented yet (tracked in %s)", what, issue));
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("cgvlm %s (code %s)\n", CGVLM_VERSION, CGVLM_GIT);
            return 0;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            cg_quiet = 1;
        } else {
            fprintf(stderr, "cgvlm: error: unknown option '%s'; see 'cgvlm --help'\n", argv[i]);
            return CG_EUSER;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CG_EUSER;
    }
    /* `cgvlm help [COMMAND]`: the same as `cgvlm --help` / `cgvlm COMMAND --help` */
    const char *help_of = NULL;
    if (!strcmp(argv[i], "help")) {
        if (i + 1 >= argc) {
            usage(stdout);
            return 0;
        }
        help_of = argv[++i];
    }
    for (size_t c = 0; c < CG_ARRAY_LEN(commands); c++)
        if (!strcmp(argv[i], commands[c].name)) {
            if (!help_of) return commands[c].fn(argc - i, argv + i);
            char *help_argv[] = {argv[i], "--help", NULL};
            return commands[c].fn(2, help_argv);
        }
    fprintf(stderr, "cgvlm: error: unknown command '%s'; see 'cgvlm --help'\n", argv[i]);
    return CG_EUSER;
}
