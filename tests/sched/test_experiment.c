/* test_experiment.c: experiment configs: overrides, size presets, validation messages, and the
 * task graph's sharing (distinct keys per stage over the 2 x 6 x 3 ablation grid). */
#include "experiments/experiment.h"
#include "sweeps/backend.h"
#include "sweeps/task.h"
#include "tests/test.h"
#include "util/json.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

static const char *recipe;

static cJSON *load(void) {
    cJSON *cfg = NULL;
    CHECK(exp_load(recipe, &cfg) == CG_OK);
    return cfg;
}

/* Applies the --set assignments (NULL-terminated) and resolves; returns the rc. */
static int resolve_with(const char *const *sets, cJSON **out) {
    cJSON *cfg = load();
    int rc = CG_OK;
    for (int i = 0; sets[i] && rc == CG_OK; i++) rc = exp_set_arg(cfg, sets[i]);
    if (rc == CG_OK) rc = exp_resolve(cfg);
    if (out) *out = cfg;
    else cJSON_Delete(cfg);
    return rc;
}

static void expect_refused(const char *set, const char *needle) {
    const char *sets[] = {set, NULL};
    int rc = resolve_with(sets, NULL);
    CHECK(rc == CG_EUSER);
    if (!strstr(cg_errmsg(), needle)) {
        fprintf(stderr, "--set %s: message '%s' lacks '%s'\n", set, cg_errmsg(), needle);
        CHECK(0);
    }
}

static int ival(const cJSON *cfg, const char *path) { return (int)cg_json_path(cfg, path)->valuedouble; }

static void test_resolve(void) {
    const char *none[] = {NULL};
    cJSON *cfg;
    CHECK(resolve_with(none, &cfg) == CG_OK);
    CHECK(ival(cfg, "lm_pretrain.seed") == 0);   /* filled default */
    CHECK_STR(cg_json_path(cfg, "model.size")->valuestring, "tiny");
    cJSON_Delete(cfg);

    const char *small[] = {"model.size=small", NULL};
    CHECK(resolve_with(small, &cfg) == CG_OK);
    CHECK(ival(cfg, "model.lm_dim") == 512 && ival(cfg, "model.lm_heads") == 8);
    CHECK(ival(cfg, "model.image_size") == 64 && ival(cfg, "world.image_size") == 64);
    CHECK(ival(cfg, "model.ctx") == 192 && ival(cfg, "model.vocab") == 512);
    cJSON_Delete(cfg);

    const char *base[] = {"model.size=base", "model.lm_layers=2", NULL};
    CHECK(resolve_with(base, &cfg) == CG_OK);
    CHECK(ival(cfg, "model.patch") == 16 && ival(cfg, "model.vit_dim") == 384);
    CHECK(ival(cfg, "model.lm_layers") == 2);  /* explicit field overrides the preset */
    CHECK_STR(cg_json_path(cfg, "model.size")->valuestring, "custom");
    cJSON_Delete(cfg);
}

static void test_refusals(void) {
    expect_refused("align.lamda=1", "'align.lamda'");
    expect_refused("align.lamda=1", "lambda");           /* lists the valid keys */
    expect_refused("modle.x=1", "'modle.x'");
    expect_refused("align.lambda=abc", "'align.lambda' must be a number");
    expect_refused("model.lm_heads=3", "model.lm_dim");
    expect_refused("model.vit_heads=5", "model.vit_dim");
    expect_refused("model.patch=7", "model.image_size");
    expect_refused("align.pool=3", "align.pool");
    expect_refused("model.ctx=20", "model.ctx");
    expect_refused("instruct.fraction=0", "instruct.fraction");
    expect_refused("instruct.fraction=1.5", "instruct.fraction");
    expect_refused("world.image_size=64", "world.image_size");
    expect_refused("model.adapter=conv", "model.adapter");
    expect_refused("eval.methods=[\"likelihood\",\"likelihood\"]", "eval.methods");
    expect_refused("model.lm_dim=1.5", "must be an integer");
    expect_refused("device=tpu", "device");
    expect_refused("lm_pretrain.warmup=99999", "lm_pretrain.warmup");
    expect_refused("noequals", "PATH=VALUE");

    /* an unknown key inside the file itself */
    cJSON *cfg = load();
    cJSON_AddNumberToObject(cJSON_GetObjectItem(cfg, "vit_pretrain"), "stepz", 3);
    CHECK(exp_resolve(cfg) == CG_EUSER && strstr(cg_errmsg(), "'vit_pretrain.stepz'"));
    cJSON_Delete(cfg);
    cfg = load();
    cJSON_AddNumberToObject(cfg, "sed", 3);
    CHECK(exp_resolve(cfg) == CG_EUSER && strstr(cg_errmsg(), "'sed'"));
    cJSON_Delete(cfg);
}

/* 2 lambdas x 6 fractions x 3 seeds: 1 world, 1 lm, 1 vit, 6 align, 36 instruct, 36 eval. */
static void test_sharing(const char *pipeline) {
    static const char *lambdas[] = {"0", "1"};
    static const char *fractions[] = {"0.01", "0.05", "0.1", "0.25", "0.5", "1"};
    char keys[EXP_NSTAGES][36][65];
    int nkeys[EXP_NSTAGES] = {0};
    for (int l = 0; l < 2; l++)
        for (int f = 0; f < 6; f++)
            for (int s = 0; s < 3; s++) {
                char a[64], b[64], c[64], d[64];
                snprintf(a, sizeof a, "align.lambda=%s", lambdas[l]);
                snprintf(b, sizeof b, "instruct.fraction=%s", fractions[f]);
                snprintf(c, sizeof c, "seed=%d", s);
                snprintf(d, sizeof d, "pipeline=%s", pipeline);
                const char *sets[] = {a, b, c, d, NULL};
                cJSON *cfg;
                CHECK(resolve_with(sets, &cfg) == CG_OK);
                exp_plan plan;
                CHECK(exp_plan_make(cfg, "test", &plan) == CG_OK);
                for (int st = 0; st < EXP_NSTAGES; st++) {
                    int seen = 0;
                    for (int k = 0; k < nkeys[st]; k++) seen |= !strcmp(keys[st][k], plan.task[st].key);
                    if (!seen) memcpy(keys[st][nkeys[st]++], plan.task[st].key, 65);
                }
                exp_plan_free(&plan);
                cJSON_Delete(cfg);
            }
    const int want[EXP_NSTAGES] = {1, 1, 1, 6, 36, 36};
    for (int st = 0; st < EXP_NSTAGES; st++) {
        if (nkeys[st] != want[st])
            fprintf(stderr, "%s: stage %s: %d keys, want %d\n", pipeline, exp_stage_name(st), nkeys[st], want[st]);
        CHECK(nkeys[st] == want[st]);
    }
}

static void test_keys(void) {
    const char *none[] = {NULL};
    cJSON *cfg;
    CHECK(resolve_with(none, &cfg) == CG_OK);
    exp_plan a, b;
    CHECK(exp_plan_make(cfg, "v1", &a) == CG_OK);
    CHECK(exp_plan_make(cfg, "v2", &b) == CG_OK);
    CHECK(strcmp(a.task[EXP_WORLD].key, b.task[EXP_WORLD].key) != 0);  /* code version counts */
    CHECK(strlen(a.task[EXP_EVAL].key) == 64);
    exp_plan_free(&b);
    /* a world change reaches every downstream key */
    CHECK(exp_set_arg(cfg, "world.seed=7") == CG_OK && exp_resolve(cfg) == CG_OK);
    CHECK(exp_plan_make(cfg, "v1", &b) == CG_OK);
    for (int s = 0; s < EXP_NSTAGES; s++) CHECK(strcmp(a.task[s].key, b.task[s].key) != 0);
    exp_plan_free(&a), exp_plan_free(&b);
    cJSON_Delete(cfg);
}

/* Every shipped recipe resolves and keeps its standard size name (its shape is the standard). */
static void test_recipes(int n, char **paths) {
    for (int i = 0; i < n; i++) {
        cJSON *cfg = NULL;
        CHECK(exp_load(paths[i], &cfg) == CG_OK);
        const char *size = cg_json_path(cfg, "model.size")->valuestring;
        char *want = cg_strdup(size);
        CHECK(exp_resolve(cfg) == CG_OK);
        CHECK_STR(cg_json_path(cfg, "model.size")->valuestring, want);
        free(want);
        cJSON_Delete(cfg);
    }
}

/* cuda:N picks the N-th GPU of the scheduler's (or the Slurm job's) list and pins the process to it. */
static void test_gpu_pick(void) {
    char g[16];
    CHECK(sched_gpu_pick("2,3", 1, g, sizeof g) && !strcmp(g, "3"));
    CHECK(sched_gpu_pick("2,3", 0, g, sizeof g) && !strcmp(g, "2"));
    CHECK(!sched_gpu_pick("2,3", 2, g, sizeof g));
    CHECK(sched_gpu_pick(NULL, 5, g, sizeof g) && !strcmp(g, "5"));
    CHECK(sched_gpu_pick("", 1, g, sizeof g) && !strcmp(g, "1"));
    const char *dev = NULL;
    setenv("CGVLM_GPU_LIST", "4,6", 1);
    setenv("CUDA_VISIBLE_DEVICES", "4", 1);   /* a worker slot pinned to its GPU */
    CHECK(task_pin_gpu("cuda:1", &dev) == CG_OK && !strcmp(dev, "cuda") && !strcmp(getenv("CUDA_VISIBLE_DEVICES"), "6"));
    CHECK(task_pin_gpu("cuda:2", &dev) == CG_EUSER && strstr(cg_errmsg(), "use cuda:0 to cuda:1"));
    cg_err_clear();
    CHECK(task_pin_gpu("cpu", &dev) == CG_OK && !strcmp(dev, "cpu"));
    CHECK(task_pin_gpu("cuda", &dev) == CG_OK && !strcmp(dev, "cuda") && !strcmp(getenv("CUDA_VISIBLE_DEVICES"), "6"));
    unsetenv("CGVLM_GPU_LIST");
    setenv("CUDA_VISIBLE_DEVICES", "1,0", 1);   /* a Slurm job's GPUs */
    CHECK(task_pin_gpu("cuda:1", &dev) == CG_OK && !strcmp(getenv("CUDA_VISIBLE_DEVICES"), "0"));
    unsetenv("CUDA_VISIBLE_DEVICES");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_experiment RECIPE.json\n");
        return 2;
    }
    recipe = argv[1];
    test_resolve();
    test_refusals();
    test_sharing("cgvlm");
    test_sharing("noop");
    test_keys();
    test_gpu_pick();
    test_recipes(argc - 1, argv + 1);
    return test_summary("experiment");
}
