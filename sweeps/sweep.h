/* sweep.h: sweep files: parsing, validation and expansion into runs (grid points x seeds), each
 * with its resolved config and its task plan. Everything is checked here, before anything runs.
 *
 * A sweep file (docs/SWEEPS.md):
 *   {"name": "cgvlm-ablation",
 *    "base": "../experiments/cgvlm-tiny.json" | {inline experiment},
 *    "set":  {"path": value, ...},                 overrides applied to the base first
 *    "axes": {"path": [values], ...},              grid product, in file order
 *    "zip":  [["path", "path"], ...],              axes that move together (equal lengths)
 *    "seeds": [0, 1, 2],                           the run seed ("seed"), innermost
 *    "max_attempts": 3,                            failures+crashes allowed per task and invocation
 *    "time_limit_s": 3600 | {"kind": s, "default": s},
 *    "resources": {"kind": {"cpus": n, "gpus": n, "mem": "8G", "time": "2:00:00"}}}  (Slurm: docs/SLURM.md)
 */
#ifndef CG_SWEEP_H
#define CG_SWEEP_H

#include "experiments/experiment.h"

#include <cjson/cJSON.h>

typedef struct {
    char *name;         /* "align.lambda=1,instruct.fraction=0.1,seed=0" */
    cJSON *params;      /* {"align.lambda":1,"instruct.fraction":0.1,"seed":0} */
    cJSON *config;      /* resolved experiment config */
    int seed;
    exp_plan plan;
} sweep_run;

typedef struct {
    char *name;
    cJSON *spec;        /* the sweep file as given (base inlined when it was a path) */
    cJSON *axes;        /* array of axis paths in sweep order */
    int max_attempts;
    int nruns;
    sweep_run *runs;
} sweep;

/* Loads and validates a sweep file and expands it (runs resolved and planned with code_version).
 * CG_EUSER naming the problem: unknown sweep key, unknown config path, empty axis, wrong value
 * type, zip lengths that differ, duplicate runs, a run whose config is invalid. */
int sweep_load(const char *path, const char *code_version, sweep *out);
/* The same from an already parsed spec; `dir` resolves a relative "base" path. */
int sweep_from_spec(const cJSON *spec, const char *dir, const char *what, const char *code_version,
                    sweep *out);
void sweep_free(sweep *sw);

/* The time limit in seconds for a task kind ("align", "noop", ...): its own, else "default",
 * else 0 (none). */
double sweep_time_limit(const sweep *sw, const char *kind);

#endif
