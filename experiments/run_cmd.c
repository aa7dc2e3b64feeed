/* run_cmd.c: `cgvlm run`: one experiment = a sweep of one grid point, executed by the scheduler. */
#include "cli/commands.h"
#include "db/store.h"
#include "experiments/experiment.h"
#include "experiments/stage.h"
#include "sweeps/sched.h"
#include "sweeps/sched_cli.h"
#include "sweeps/sweep.h"
#include "util/json.h"
#include "util/sha256.h"
#include "util/util.h"
#include "util/ux_opt.h"
#include "version.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char run_usage_head[] = "usage: cgvlm run EXPERIMENT.json [--set PATH=VALUE ...] [--dry-run]";
static const char run_usage_body[] =
    "\n\n"
    "runs one experiment's stages (world, lm_pretrain, vit_pretrain, align, instruct, eval) through\n"
    "the task scheduler, as a sweep of one grid point named run-NAME-HASH. Stages done before (by\n"
    "any run or sweep with the same settings) are reused; re-running resumes. The options after\n"
    "--dry-run are the same as `cgvlm sweep`'s.\n"
    "\n"
    "  --set PATH=VALUE   override a config key, e.g. --set align.lambda=0 (repeatable)\n"
    "  --dry-run          print the resolved config (with its device) and the task keys; run nothing\n";

int cmd_run(int argc, char **argv) {
    enum { O_SET = 1000, O_DRY, O_HELP };
    static const struct option opts[] = {
        {"set", required_argument, NULL, O_SET}, {"dry-run", no_argument, NULL, O_DRY}, SCHED_CLI_LONG_OPTS,
        {"help", no_argument, NULL, O_HELP}, {NULL, 0, NULL, 0}};
    sched_cli cli;
    sched_cli_init(&cli);
    int dry = 0, rc = CG_OK, nsets = 0;
    const char **sets = cg_calloc((size_t)argc + 1, sizeof *sets);
    optind = 1;
    opterr = 0;
    int c;
    while (rc == CG_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int handled;
        if ((rc = sched_cli_option(&cli, c, optarg, &handled)) || handled) continue;
        switch (c) {
        case O_SET: sets[nsets++] = optarg; break;
        case O_DRY: dry = 1; break;
        case O_HELP: case 'h':
            printf("%s%s%s%s", run_usage_head, sched_cli_synopsis, run_usage_body, sched_cli_usage);
            free(sets);
            return CG_OK;
        default: rc = cg_opt_error("run", argv, opts);
        }
    }
    if (rc == CG_OK) rc = sched_cli_check("run");
    if (rc == CG_OK && optind < argc - 1)   /* e.g. "--set a.b 1": the value went astray */
        rc = cg_err(CG_EUSER, "run: unexpected argument '%s' after the experiment file '%s' (--set takes PATH=VALUE as one "
                    "word); see 'cgvlm run --help'", argv[optind + 1], argv[optind]);
    if (rc == CG_OK && optind != argc - 1)
        rc = cg_err(CG_EUSER, "run: give exactly one experiment file; see 'cgvlm run --help'");
    cJSON *cfg = NULL, *spec = NULL;
    sweep sw = {0};
    if (rc == CG_OK) rc = exp_load(argv[optind], &cfg);
    for (int i = 0; i < nsets && rc == CG_OK; i++) rc = exp_set_arg(cfg, sets[i]);
    if (rc == CG_OK) rc = exp_resolve(cfg);
    if (rc == CG_OK) {
        char *canon = cg_json_canonical(cfg), hex[65];
        cg_sha256_hex(canon, strlen(canon), hex);
        free(canon);
        const char *name = cJSON_GetObjectItemCaseSensitive(cfg, "name")->valuestring;
        char *sweep_name = cg_fmt("run-%s-%.8s", name, hex);
        for (char *p = sweep_name; *p; p++)
            if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= 'A' && *p <= 'Z')))
                *p = '_';
        spec = cJSON_CreateObject();
        cJSON_AddStringToObject(spec, "name", sweep_name);
        cJSON_AddItemToObject(spec, "base", cJSON_Duplicate(cfg, 1));
        free(sweep_name);
        rc = sweep_from_spec(spec, NULL, argv[optind], CGVLM_GIT, &sw);
        /* --device after the name: the same experiment on another device is the same run */
        if (rc == CG_OK) rc = sched_cli_apply(&cli, &sw);
    }
    if (rc == CG_OK && dry) {
        char *text = cJSON_Print(sw.runs[0].config);
        printf("%s\n", text);
        cJSON_free(text);
        for (int s = 0; s < EXP_NSTAGES; s++)
            printf("%-13s %s  %s\n", exp_stage_name((exp_stage)s), sw.runs[0].plan.task[s].key,
                   sw.runs[0].plan.task[s].kind);
    } else if (rc == CG_OK) {
        rc = sched_execute(&sw, &cli, 1);
    }
    if (sw.name) sweep_free(&sw);
    cJSON_Delete(cfg);
    cJSON_Delete(spec);
    free(sets);
    if (rc == STAGE_CANCELLED) return 130;
    return cg_report(rc);
}
