/* experiment.h: experiment configs (the recipe JSON): loading, `--set path=value` overrides,
 * standard model sizes, validation against the table of known keys, and the stage graph with its
 * content-addressed task keys.
 *
 * A config goes through three steps, all before any work starts:
 *   exp_load (file) -> exp_set / exp_set_arg (overrides, in order) -> exp_resolve (size presets,
 *   defaults, then exp_validate: unknown keys, types, ranges, impossible shapes).
 * The resolved config is complete (every known key present), so stages read it without defaults.
 *
 * The stage graph of one run (DESIGN.md §1, §3):
 *   world -> lm_pretrain, world -> vit_pretrain, (lm_pretrain, vit_pretrain) -> align
 *   -> instruct -> eval
 * Each stage's key is sha256 over (kind, its canonical sub-config, its upstream keys, the code
 * version). The sub-config holds exactly the config sections the stage's result depends on, so
 * runs that differ only downstream share the upstream task: one lm_pretrain and one vit_pretrain
 * serve a whole sweep (they have their own seeds), one align serves all instruction fractions.
 * Invariant for stage code: runs sharing a task agree on every key in that task's sub-config and
 * in its upstream tasks' sub-configs; any other key of the run config may differ between them.
 *
 * With "pipeline": "noop" the same graph is built from `noop` tasks (tests, benchmarks): same
 * sharing, same keys' structure, no training.
 */
#ifndef CG_EXPERIMENT_H
#define CG_EXPERIMENT_H

#include <cjson/cJSON.h>

typedef enum {
    EXP_WORLD,
    EXP_LM_PRETRAIN,
    EXP_VIT_PRETRAIN,
    EXP_ALIGN,
    EXP_INSTRUCT,
    EXP_EVAL,
    EXP_NSTAGES
} exp_stage;

/* "world", "lm_pretrain", ...; exp_stage_from_name returns -1 for an unknown name. */
const char *exp_stage_name(exp_stage s);
int exp_stage_from_name(const char *name);

/* Loads an experiment file (no validation yet). CG_EUSER naming the file on error. */
int exp_load(const char *path, cJSON **out);

/* Sets one known config path to value (taking ownership of value). Refuses (CG_EUSER) an unknown
 * path, naming it and the valid keys, or a value of the wrong type. Setting model.size resets the
 * model shape (and world.image_size) to that size's standard: set shape fields after it. */
int exp_set(cJSON *cfg, const char *path, cJSON *value);
/* "path=value" as given to --set (value parsed by cg_json_from_arg). */
int exp_set_arg(cJSON *cfg, const char *assignment);

/* Checks that `path` is a known config key and that `value` has its type (no range check). Used by
 * sweeps to refuse bad axes before expanding them. */
int exp_check_value(const char *path, const cJSON *value);

/* Applies model.size's standard shapes to missing fields, fills every other default, then
 * validates. After CG_OK the config is complete. */
int exp_resolve(cJSON *cfg);
/* Validation alone (exp_resolve calls it): unknown keys anywhere (full dotted path + the valid
 * keys), types, ranges, and shapes that cannot work (lm_dim % lm_heads, image_size % patch, the
 * pool window dividing the patch grid, ctx too small for the visual tokens plus text, ...). */
int exp_validate(const cJSON *cfg);

/* One task of a run's graph. */
typedef struct {
    exp_stage stage;       /* which stage it is (also for noop stand-ins) */
    const char *kind;      /* the executing kind: exp_stage_name(stage), or "noop" */
    char key[65];          /* content key (sha256 hex) */
    cJSON *config;         /* the canonical stage sub-config the key was computed from (owned) */
    int ndeps;
    exp_stage deps[2];     /* upstream stages */
} exp_task;

/* The tasks of one run, in dependency order (index = exp_stage). */
typedef struct {
    exp_task task[EXP_NSTAGES];
} exp_plan;

/* Builds the graph and the keys of a resolved config. `code_version` is normally CGVLM_GIT. */
int exp_plan_make(const cJSON *cfg, const char *code_version, exp_plan *plan);
void exp_plan_free(exp_plan *plan);

/* The standard size names (DESIGN.md §1); NULL-terminated. */
extern const char *const exp_size_names[];

#endif
