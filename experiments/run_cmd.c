/* run_cmd.c: `cgvlm run`: one experiment = a sweep of one grid point, executed by the scheduler. */
#include "cli/commands.h"
#include "db/store.h"
#include "experiments/experiment.h"
#include "experiments/stage.h"
#include "sweeps/sched.h"
#include "sweeps/sweep.h"
#include "util/json.h"
#include "util/sha256.h"
#include "util/util.h"
#include "version.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char run_usage[] =
    "usage: cgvlm run EXPERIMENT.json [--set PATH=VALUE ...] [--db PATH] [--workspace DIR]\n"
    "                 [--workers N] [--dry-run]\n"
    "\n"
    "runs one experiment's stages (world, lm_pretrain, vit_pretrain, align, instruct, eval) through\n"
    "the task scheduler, as a sweep of one grid point named run-NAME-HASH. Stages done before (by\n"
    "any run or sweep with the same settings) are reused; re-running resumes.\n"
    "\n"
    "  --set PATH=VALUE   override a config key, e.g. --set align.lambda=0 (repeatable)\n"
    "  --db PATH          results db (default $CGVLM_DB or results.db)\n"
    "  --workspace DIR    artifacts, checkpoints, logs (default $CGVLM_WORKSPACE or workspace)\n"
    "  --workers N        tasks at once (default: one per GPU, else one per CPU core)\n"
    "  --dry-run          print the resolved config and the task keys; run nothing\n";

int cmd_run(int argc, char **argv) {
    enum { O_SET = 1000, O_DB, O_WS, O_WORKERS, O_DRY, O_HELP };
    static const struct option opts[] = {
        {"set", required_argument, NULL, O_SET}, {"db", required_argument, NULL, O_DB},
        {"workspace", required_argument, NULL, O_WS}, {"workers", required_argument, NULL, O_WORKERS},
        {"dry-run", no_argument, NULL, O_DRY}, {"help", no_argument, NULL, O_HELP}, {NULL, 0, NULL, 0}};
    const char *db = store_default_path(), *ws = getenv("CGVLM_WORKSPACE");
    if (!ws || !*ws) ws = "workspace";
    int workers = 0, dry = 0, rc = CG_OK, nsets = 0;
    const char **sets = cg_calloc((size_t)argc + 1, sizeof *sets);
    optind = 1;
    opterr = 0;
    int c;
    while (rc == CG_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_SET: sets[nsets++] = optarg; break;
        case O_DB: db = optarg; break;
        case O_WS: ws = optarg; break;
        case O_WORKERS: rc = cg_parse_int(optarg, "--workers", 1, 1024, &workers); break;
        case O_DRY: dry = 1; break;
        case O_HELP: case 'h':
            fputs(run_usage, stdout);
            free(sets);
            return CG_OK;
        default: rc = cg_err(CG_EUSER, "run: unknown option '%s'; see 'cgvlm run --help'", argv[optind - 1]);
        }
    }
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
    }
    if (rc == CG_OK && dry) {
        char *text = cJSON_Print(sw.runs[0].config);
        printf("%s\n", text);
        cJSON_free(text);
        for (int s = 0; s < EXP_NSTAGES; s++)
            printf("%-13s %s  %s\n", exp_stage_name((exp_stage)s), sw.runs[0].plan.task[s].key,
                   sw.runs[0].plan.task[s].kind);
    } else if (rc == CG_OK) {
        rc = sched_execute(&sw, db, ws, workers, 0, 0, 1);
    }
    if (sw.name) sweep_free(&sw);
    cJSON_Delete(cfg);
    cJSON_Delete(spec);
    free(sets);
    if (rc == STAGE_CANCELLED) return 130;
    return cg_report(rc);
}
