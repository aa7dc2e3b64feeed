/* sweep.c: sweep files: validation and expansion into planned runs (see sweep.h). */
#include "sweeps/sweep.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const sweep_keys[] = {"name", "base", "set", "axes", "zip", "seeds",
                                         "max_attempts", "time_limit_s", "resources", "description"};
static const char *const resource_keys[] = {"cpus", "gpus", "mem", "time", "partition"};

static int kind_known(const char *k) {
    return exp_stage_from_name(k) >= 0 || !strcmp(k, "noop") || !strcmp(k, "default");
}

static int check_top(const cJSON *spec) {
    for (const cJSON *it = spec->child; it; it = it->next) {
        int ok = 0;
        for (size_t i = 0; i < CG_ARRAY_LEN(sweep_keys); i++) ok |= !strcmp(it->string, sweep_keys[i]);
        if (!ok)
            return cg_err(CG_EUSER, "unknown sweep key '%s'; valid keys: name, base, set, axes, zip, "
                                    "seeds, max_attempts, time_limit_s, resources, description",
                          it->string);
    }
    return CG_OK;
}

static int check_limits(const cJSON *tl) {
    if (!tl) return CG_OK;
    if (cJSON_IsNumber(tl)) {
        if (!(tl->valuedouble > 0)) return cg_err(CG_EUSER, "time_limit_s must be > 0 seconds");
        return CG_OK;
    }
    if (!cJSON_IsObject(tl))
        return cg_err(CG_EUSER, "time_limit_s must be a number of seconds or an object {kind: seconds}");
    for (const cJSON *it = tl->child; it; it = it->next) {
        if (!kind_known(it->string))
            return cg_err(CG_EUSER, "time_limit_s: unknown task kind '%s'; use world, lm_pretrain, "
                                    "vit_pretrain, align, instruct, eval, noop or default", it->string);
        if (!cJSON_IsNumber(it) || !(it->valuedouble > 0))
            return cg_err(CG_EUSER, "time_limit_s.%s must be a number of seconds > 0", it->string);
    }
    return CG_OK;
}

/* Slurm's forms: mem "N[K|M|G|T]" (--mem); time "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S",
 * "UNLIMITED" (--time). */
static int slurm_mem_ok(const char *s) {
    size_t n = strspn(s, "0123456789");
    return n > 0 && (s[n] == '\0' || (strchr("KMGTkmgt", s[n]) && s[n + 1] == '\0'));
}

static int slurm_time_ok(const char *s) {
    const char *dash = strchr(s, '-');
    int fields = 0;
    if (!strcmp(s, "UNLIMITED") || !strcmp(s, "INFINITE")) return 1;
    if (dash) {
        size_t n = strspn(s, "0123456789");
        if (n == 0 || s + n != dash) return 0;
        s = dash + 1;
    }
    for (;;) {
        size_t n = strspn(s, "0123456789");
        if (n == 0) return 0;
        fields++;
        s += n;
        if (*s == '\0') break;
        if (*s++ != ':') return 0;
    }
    return fields <= 3;
}

static int check_resources(const cJSON *res) {
    if (!res) return CG_OK;
    if (!cJSON_IsObject(res)) return cg_err(CG_EUSER, "resources must be an object {kind: {cpus, gpus, mem, time}}");
    for (const cJSON *k = res->child; k; k = k->next) {
        if (!kind_known(k->string))
            return cg_err(CG_EUSER, "resources: unknown task kind '%s'", k->string);
        if (!cJSON_IsObject(k)) return cg_err(CG_EUSER, "resources.%s must be an object", k->string);
        for (const cJSON *f = k->child; f; f = f->next) {
            int ok = 0;
            for (size_t i = 0; i < CG_ARRAY_LEN(resource_keys); i++) ok |= !strcmp(f->string, resource_keys[i]);
            if (!ok)
                return cg_err(CG_EUSER, "resources.%s: unknown key '%s'; valid keys: cpus, gpus, mem, time, partition",
                              k->string, f->string);
            int is_count = !strcmp(f->string, "cpus") || !strcmp(f->string, "gpus");
            if (is_count ? !(cJSON_IsNumber(f) && f->valuedouble >= 0 && f->valuedouble == floor(f->valuedouble))
                         : !cJSON_IsString(f))
                return cg_err(CG_EUSER, "resources.%s.%s must be %s", k->string, f->string,
                              is_count ? "a count" : "a string");
            if (!strcmp(f->string, "mem") && !slurm_mem_ok(f->valuestring))
                return cg_err(CG_EUSER, "resources.%s.mem '%s' is not a Slurm memory size; e.g. \"4G\" or \"512M\"",
                              k->string, f->valuestring);
            if (!strcmp(f->string, "time") && !slurm_time_ok(f->valuestring))
                return cg_err(CG_EUSER, "resources.%s.time '%s' is not a Slurm time; e.g. \"1:00:00\" (H:M:S), \"90\" "
                              "(minutes) or \"1-12\" (days-hours)", k->string, f->valuestring);
        }
    }
    return CG_OK;
}

/* A value as it appears in a run name: strings bare, everything else as JSON. */
static void add_value(cg_buf *b, const cJSON *v) {
    if (cJSON_IsString(v)) {
        cg_buf_adds(b, v->valuestring);
        return;
    }
    char *t = cJSON_PrintUnformatted(v);
    cg_buf_adds(b, t);
    cJSON_free(t);
}

typedef struct {
    int naxes;
    int axis[16];   /* indices into the axes array */
    int len;
} dim;

static void free_runs(sweep *sw) {
    for (int i = 0; i < sw->nruns; i++) {
        free(sw->runs[i].name);
        cJSON_Delete(sw->runs[i].params);
        cJSON_Delete(sw->runs[i].config);
        exp_plan_free(&sw->runs[i].plan);
    }
    free(sw->runs);
    sw->runs = NULL;
    sw->nruns = 0;
}

void sweep_free(sweep *sw) {
    free_runs(sw);
    free(sw->name);
    cJSON_Delete(sw->spec);
    cJSON_Delete(sw->axes);
    memset(sw, 0, sizeof *sw);
}

double sweep_time_limit(const sweep *sw, const char *kind) {
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(sw->spec, "time_limit_s");
    if (cJSON_IsNumber(tl)) return tl->valuedouble;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tl, kind);
    if (!v) v = cJSON_GetObjectItemCaseSensitive(tl, "default");
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int cmp_eval_key(const void *a, const void *b) {
    const sweep_run *x = *(sweep_run *const *)a, *y = *(sweep_run *const *)b;
    return strcmp(x->plan.task[EXP_EVAL].key, y->plan.task[EXP_EVAL].key);
}

static int expand(sweep *sw, const cJSON *base, const cJSON *axes_obj, const dim *dims, int ndims,
                  const cJSON *seeds, const char *code_version) {
    const cJSON *axis_items[64];
    int naxes = 0;
    for (const cJSON *a = axes_obj ? axes_obj->child : NULL; a; a = a->next) axis_items[naxes++] = a;
    long npoints = 1;
    for (int d = 0; d < ndims; d++) npoints *= dims[d].len;
    int nseeds = cJSON_GetArraySize(seeds);
    if (npoints * nseeds > 100000)
        return cg_err(CG_EUSER, "the sweep has %ld runs; more than 100000 is surely a mistake", npoints * nseeds);
    sw->runs = cg_calloc((size_t)(npoints * nseeds), sizeof *sw->runs);
    int idx[64] = {0};
    int rc = CG_OK;
    for (long p = 0; p < npoints && rc == CG_OK; p++) {
        /* mixed-radix counter over the dims, the last dim fastest */
        long q = p;
        for (int d = ndims - 1; d >= 0; d--) {
            idx[d] = (int)(q % dims[d].len);
            q /= dims[d].len;
        }
        for (const cJSON *s = seeds->child; s && rc == CG_OK; s = s->next) {
            sweep_run *r = &sw->runs[sw->nruns];
            cJSON *cfg = cJSON_Duplicate(base, 1);
            cJSON *params = cJSON_CreateObject();
            cg_buf name;
            cg_buf_init(&name);
            for (int a = 0; a < naxes && rc == CG_OK; a++) {
                int d = 0;
                while (d < ndims) {
                    int in = 0;
                    for (int k = 0; k < dims[d].naxes; k++) in |= dims[d].axis[k] == a;
                    if (in) break;
                    d++;
                }
                const cJSON *v = cJSON_GetArrayItem(axis_items[a], idx[d]);
                cJSON_AddItemToObject(params, axis_items[a]->string, cJSON_Duplicate(v, 1));
                cg_buf_addf(&name, "%s%s=", name.len ? "," : "", axis_items[a]->string);
                add_value(&name, v);
                rc = exp_set(cfg, axis_items[a]->string, cJSON_Duplicate(v, 1));
            }
            cJSON_AddItemToObject(params, "seed", cJSON_Duplicate(s, 1));
            cg_buf_addf(&name, "%sseed=%d", name.len ? "," : "", (int)s->valuedouble);
            if (rc == CG_OK) rc = exp_set(cfg, "seed", cJSON_Duplicate(s, 1));
            r->name = cg_buf_steal(&name);
            r->params = params;
            r->config = cfg;
            r->seed = (int)s->valuedouble;
            sw->nruns++;
            if (rc == CG_OK) rc = exp_resolve(cfg);
            if (rc == CG_OK) rc = exp_plan_make(cfg, code_version, &r->plan);
            if (rc) cg_err_wrap(rc, "run '%s'", r->name);
        }
    }
    /* a duplicate run: two grid points with the same tasks (the eval key covers the whole chain) */
    if (rc == CG_OK && sw->nruns > 1) {
        sweep_run **by_key = cg_calloc((size_t)sw->nruns, sizeof *by_key);
        for (int i = 0; i < sw->nruns; i++) by_key[i] = &sw->runs[i];
        qsort(by_key, (size_t)sw->nruns, sizeof *by_key, cmp_eval_key);
        for (int i = 1; i < sw->nruns && rc == CG_OK; i++)
            if (!strcmp(by_key[i]->plan.task[EXP_EVAL].key, by_key[i - 1]->plan.task[EXP_EVAL].key)) {
                const sweep_run *a = by_key[i - 1] < by_key[i] ? by_key[i - 1] : by_key[i];
                const sweep_run *b = a == by_key[i] ? by_key[i - 1] : by_key[i];
                rc = cg_err(CG_EUSER, "duplicate run: '%s' and '%s' have the same config", a->name, b->name);
            }
        free(by_key);
    }
    return rc;
}

int sweep_from_spec(const cJSON *spec_in, const char *dir, const char *what, const char *code_version,
                    sweep *out) {
    memset(out, 0, sizeof *out);
    cJSON *spec = cJSON_Duplicate(spec_in, 1);
    cJSON *base = NULL;
    dim dims[64];
    int ndims = 0, rc = CG_OK;
    out->spec = spec;
    out->axes = cJSON_CreateArray();
    if (!cJSON_IsObject(spec)) {
        rc = cg_err(CG_EUSER, "a sweep must be a JSON object");
        goto out;
    }
    if ((rc = check_top(spec))) goto out;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(spec, "name");
    if (!cJSON_IsString(name) || !*name->valuestring) {
        rc = cg_err(CG_EUSER, "the sweep needs a \"name\" (a non-empty string)");
        goto out;
    }
    for (const char *c = name->valuestring; *c; c++)
        if (!(*c == '-' || *c == '_' || *c == '.' || (*c >= '0' && *c <= '9') ||
              (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))) {
            rc = cg_err(CG_EUSER, "sweep name '%s' may only use letters, digits, '-', '_' and '.'", name->valuestring);
            goto out;
        }
    out->name = cg_strdup(name->valuestring);

    /* base: a path relative to the sweep file, or an inline experiment */
    cJSON *b = cJSON_GetObjectItemCaseSensitive(spec, "base");
    if (cJSON_IsString(b)) {
        char *p = b->valuestring[0] == '/' || !dir ? cg_strdup(b->valuestring) : cg_path_join(dir, b->valuestring);
        rc = exp_load(p, &base);
        if (rc) cg_err_wrap(rc, "base");
        free(p);
        if (rc) goto out;
        cJSON_ReplaceItemInObjectCaseSensitive(spec, "base", cJSON_Duplicate(base, 1));
    } else if (cJSON_IsObject(b)) {
        base = cJSON_Duplicate(b, 1);
    } else {
        rc = cg_err(CG_EUSER, "\"base\" must be the path of an experiment file or an inline experiment object");
        goto out;
    }

    const cJSON *set = cJSON_GetObjectItemCaseSensitive(spec, "set");
    if (set && !cJSON_IsObject(set)) {
        rc = cg_err(CG_EUSER, "\"set\" must be an object {\"config.path\": value}");
        goto out;
    }
    for (const cJSON *it = set ? set->child : NULL; it; it = it->next)
        if ((rc = exp_set(base, it->string, cJSON_Duplicate(it, 1)))) {
            cg_err_wrap(rc, "set");
            goto out;
        }

    const cJSON *axes = cJSON_GetObjectItemCaseSensitive(spec, "axes");
    if (axes && !cJSON_IsObject(axes)) {
        rc = cg_err(CG_EUSER, "\"axes\" must be an object {\"config.path\": [values]}");
        goto out;
    }
    int naxes = 0;
    for (const cJSON *a = axes ? axes->child : NULL; a; a = a->next, naxes++) {
        if (naxes >= 64) {
            rc = cg_err(CG_EUSER, "too many axes (at most 64)");
            goto out;
        }
        if (!strcmp(a->string, "seed")) {
            rc = cg_err(CG_EUSER, "axis 'seed': give the seeds as \"seeds\": [...]");
            goto out;
        }
        if (set && cJSON_GetObjectItemCaseSensitive(set, a->string)) {
            rc = cg_err(CG_EUSER, "'%s' is both in \"set\" and in \"axes\"; keep one", a->string);
            goto out;
        }
        if (!cJSON_IsArray(a)) {
            rc = cg_err(CG_EUSER, "axis '%s' must be a list of values, e.g. [0, 1]", a->string);
            goto out;
        }
        if (cJSON_GetArraySize(a) == 0) {
            rc = cg_err(CG_EUSER, "axis '%s' is empty; give it a non-empty list of values", a->string);
            goto out;
        }
        for (const cJSON *v = a->child; v; v = v->next)
            if ((rc = exp_check_value(a->string, v))) {
                cg_err_wrap(rc, "axis '%s'", a->string);
                goto out;
            }
        cJSON_AddItemToArray(out->axes, cJSON_CreateString(a->string));
    }

    /* dims: zip groups first claim their axes; every other axis is its own dim */
    int owner[64];
    for (int i = 0; i < 64; i++) owner[i] = -1;
    const cJSON *zip = cJSON_GetObjectItemCaseSensitive(spec, "zip");
    if (zip && !cJSON_IsArray(zip)) {
        rc = cg_err(CG_EUSER, "\"zip\" must be a list of groups of axis paths, e.g. [[\"a.x\", \"b.y\"]]");
        goto out;
    }
    int ngroups = 0;
    for (const cJSON *g = zip ? zip->child : NULL; g; g = g->next, ngroups++) {
        if (!cJSON_IsArray(g) || cJSON_GetArraySize(g) < 2 || cJSON_GetArraySize(g) > 16) {
            rc = cg_err(CG_EUSER, "zip group %d must list 2 to 16 axis paths", ngroups + 1);
            goto out;
        }
        int len0 = -1;
        const char *first = NULL;
        for (const cJSON *p = g->child; p; p = p->next) {
            const cJSON *a = cJSON_IsString(p) ? cJSON_GetObjectItemCaseSensitive(axes, p->valuestring) : NULL;
            if (!a) {
                rc = cg_err(CG_EUSER, "zip group %d: '%s' is not an axis of this sweep", ngroups + 1,
                            cJSON_IsString(p) ? p->valuestring : "?");
                goto out;
            }
            int ai = 0;
            for (const cJSON *x = axes->child; x != a; x = x->next) ai++;
            if (owner[ai] >= 0) {
                rc = cg_err(CG_EUSER, "axis '%s' is in more than one zip group", p->valuestring);
                goto out;
            }
            int len = cJSON_GetArraySize(a);
            if (len0 >= 0 && len != len0) {
                rc = cg_err(CG_EUSER, "zip group %d: axis '%s' has %d values but '%s' has %d; zipped axes need equal lengths",
                            ngroups + 1, p->valuestring, len, first, len0);
                goto out;
            }
            len0 = len, first = p->valuestring;
            owner[ai] = ngroups;
        }
    }
    for (int a = 0; a < naxes; a++) {
        if (owner[a] == -2) continue;  /* already placed with its zip group */
        dim *d = &dims[ndims++];
        d->naxes = 0;
        d->len = cJSON_GetArraySize(cJSON_GetArrayItem(axes, a));
        if (owner[a] < 0) {
            d->axis[d->naxes++] = a;
        } else {
            int g = owner[a];
            for (int o = a; o < naxes; o++)
                if (owner[o] == g) {
                    d->axis[d->naxes++] = o;
                    owner[o] = -2;
                }
        }
    }

    cJSON *seeds = cJSON_GetObjectItemCaseSensitive(spec, "seeds");
    cJSON *seeds_own = NULL;
    if (!seeds) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(base, "seed");
        seeds = seeds_own = cJSON_CreateArray();
        cJSON_AddItemToArray(seeds, cJSON_CreateNumber(cJSON_IsNumber(s) ? s->valuedouble : 0));
    }
    if (!cJSON_IsArray(seeds) || cJSON_GetArraySize(seeds) == 0) {
        rc = cg_err(CG_EUSER, "\"seeds\" must be a non-empty list of integers");
        goto seeds_out;
    }
    for (const cJSON *s = seeds->child; s; s = s->next) {
        if ((rc = exp_check_value("seed", s))) {
            cg_err_wrap(rc, "seeds");
            goto seeds_out;
        }
        for (const cJSON *t = seeds->child; t != s; t = t->next)
            if (t->valuedouble == s->valuedouble) {
                rc = cg_err(CG_EUSER, "seed %d is listed twice in \"seeds\" (a duplicate run)", (int)s->valuedouble);
                goto seeds_out;
            }
    }

    int64_t ma = 3;
    if ((rc = cg_json_get_int(spec, "max_attempts", 0, &ma))) goto seeds_out;
    if (ma < 1 || ma > 1000) {
        rc = cg_err(CG_EUSER, "max_attempts = %lld must be between 1 and 1000", (long long)ma);
        goto seeds_out;
    }
    out->max_attempts = (int)ma;
    if ((rc = check_limits(cJSON_GetObjectItemCaseSensitive(spec, "time_limit_s"))) ||
        (rc = check_resources(cJSON_GetObjectItemCaseSensitive(spec, "resources"))))
        goto seeds_out;

    rc = expand(out, base, axes, dims, ndims, seeds, code_version);
seeds_out:
    cJSON_Delete(seeds_own);
out:
    cJSON_Delete(base);
    if (rc) {
        cg_err_wrap(rc, "sweep '%s'", what);
        sweep_free(out);
    }
    return rc;
}

int sweep_load(const char *path, const char *code_version, sweep *out) {
    cJSON *spec;
    int rc = cg_json_load(path, &spec);
    if (rc) return cg_err_wrap(rc, "cannot load sweep");
    const char *slash = strrchr(path, '/');
    char *dir = slash ? cg_strndup(path, (size_t)(slash - path)) : cg_strdup(".");
    rc = sweep_from_spec(spec, dir, path, code_version, out);
    free(dir);
    cJSON_Delete(spec);
    return rc;
}
