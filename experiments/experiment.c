/* experiment.c: experiment configs: the table of known keys, overrides, size presets,
 * validation, and the stage graph with its task keys (see experiment.h). */
#include "experiments/experiment.h"
#include "util/json.h"
#include "util/sha256.h"
#include "util/util.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the known keys */

typedef enum { K_INT, K_NUM, K_BOOL, K_STR, K_ENUM, K_LIST } key_type;

enum { LO_OPEN = 1 };  /* the lower bound is excluded: (lo, hi] */

typedef struct {
    const char *path;
    key_type type;
    double lo, hi;      /* numeric range, inclusive unless LO_OPEN */
    int flags;
    const char *def;    /* default as JSON text; NULL: filled by a rule (size preset, ...) */
    const char *choices; /* "a|b|c" for K_ENUM and the elements of K_LIST */
} exp_key;

#define BIG 1e9
static const exp_key keys[] = {
    {"name", K_STR, 0, 0, 0, "\"cgvlm\"", NULL},
    {"seed", K_INT, 0, 2147483647, 0, "0", NULL},
    {"device", K_STR, 0, 0, 0, "\"auto\"", NULL},
    {"precision", K_ENUM, 0, 0, 0, "\"tf32\"", "fp32|tf32|bf16"},
    {"pipeline", K_ENUM, 0, 0, 0, "\"cgvlm\"", "cgvlm|noop"},
    {"checkpoint_every", K_INT, 1, BIG, 0, "200", NULL},

    {"world.seed", K_INT, 0, 2147483647, 0, "1", NULL},
    {"world.image_size", K_INT, 8, 1024, 0, NULL, NULL},
    {"world.n_align", K_INT, 1, BIG, 0, "8000", NULL},
    {"world.n_instruct", K_INT, 1, BIG, 0, "10000", NULL},
    {"world.n_corpus", K_INT, 1, BIG, 0, "20000", NULL},
    {"world.n_corpus_heldout", K_INT, 0, BIG, 0, "1000", NULL},
    {"world.n_bench", K_INT, 1, BIG, 0, "600", NULL},
    {"world.n_heldout", K_INT, 0, BIG, 0, "500", NULL},

    {"model.size", K_ENUM, 0, 0, 0, "\"tiny\"", "tiny|small|base|custom"},
    {"model.image_size", K_INT, 8, 1024, 0, NULL, NULL},
    {"model.patch", K_INT, 1, 256, 0, NULL, NULL},
    {"model.vit_dim", K_INT, 1, 16384, 0, NULL, NULL},
    {"model.vit_layers", K_INT, 1, 256, 0, NULL, NULL},
    {"model.vit_heads", K_INT, 1, 256, 0, NULL, NULL},
    {"model.lm_dim", K_INT, 1, 16384, 0, NULL, NULL},
    {"model.lm_layers", K_INT, 1, 256, 0, NULL, NULL},
    {"model.lm_heads", K_INT, 1, 256, 0, NULL, NULL},
    {"model.ctx", K_INT, 2, 65536, 0, NULL, NULL},
    {"model.vocab", K_INT, 32, 1 << 20, 0, NULL, NULL},
    {"model.adapter", K_ENUM, 0, 0, 0, "\"mlp2x\"", "linear|mlp2x"},

    {"lm_pretrain.seed", K_INT, 0, 2147483647, 0, "0", NULL},
    {"lm_pretrain.steps", K_INT, 0, BIG, 0, "1500", NULL},
    {"lm_pretrain.batch", K_INT, 1, 65536, 0, "32", NULL},
    {"lm_pretrain.lr", K_NUM, 0, 10, LO_OPEN, "3e-3", NULL},
    {"lm_pretrain.warmup", K_INT, 0, BIG, 0, "100", NULL},
    {"lm_pretrain.weight_decay", K_NUM, 0, 10, 0, "0.1", NULL},
    {"lm_pretrain.clip", K_NUM, 0, 1e6, 0, "1.0", NULL},

    {"vit_pretrain.seed", K_INT, 0, 2147483647, 0, "0", NULL},
    {"vit_pretrain.mode", K_ENUM, 0, 0, 0, "\"clip\"", "random|clip"},
    {"vit_pretrain.steps", K_INT, 0, BIG, 0, "400", NULL},
    {"vit_pretrain.batch", K_INT, 2, 65536, 0, "64", NULL},
    {"vit_pretrain.lr", K_NUM, 0, 10, LO_OPEN, "2e-3", NULL},
    {"vit_pretrain.warmup", K_INT, 0, BIG, 0, "40", NULL},
    {"vit_pretrain.weight_decay", K_NUM, 0, 10, 0, "0.05", NULL},
    {"vit_pretrain.clip", K_NUM, 0, 1e6, 0, "1.0", NULL},

    {"align.steps", K_INT, 0, BIG, 0, "600", NULL},
    {"align.batch", K_INT, 2, 65536, 0, "32", NULL},
    {"align.lr", K_NUM, 0, 10, LO_OPEN, "2e-3", NULL},
    {"align.warmup", K_INT, 0, BIG, 0, "50", NULL},
    {"align.weight_decay", K_NUM, 0, 10, 0, "0.0", NULL},
    {"align.clip", K_NUM, 0, 1e6, 0, "1.0", NULL},
    {"align.lambda", K_NUM, 0, 1000, 0, "1.0", NULL},
    {"align.pool", K_INT, 1, 256, 0, "2", NULL},
    {"align.tau", K_NUM, 0, 100, LO_OPEN, "0.07", NULL},
    {"align.learn_tau", K_BOOL, 0, 0, 0, "false", NULL},

    {"instruct.fraction", K_NUM, 0, 1, LO_OPEN, "1.0", NULL},
    {"instruct.epochs", K_NUM, 0, 1000, LO_OPEN, "2", NULL},
    {"instruct.min_steps", K_INT, 0, BIG, 0, "30", NULL},
    {"instruct.data_seed", K_INT, 0, 2147483647, 0, "0", NULL},
    {"instruct.mc_fraction", K_NUM, 0, 1, 0, "0.0", NULL},
    {"instruct.batch", K_INT, 1, 65536, 0, "32", NULL},
    {"instruct.lr", K_NUM, 0, 10, LO_OPEN, "1e-3", NULL},
    {"instruct.warmup", K_INT, 0, BIG, 0, "30", NULL},
    {"instruct.weight_decay", K_NUM, 0, 10, 0, "0.0", NULL},
    {"instruct.clip", K_NUM, 0, 1e6, 0, "1.0", NULL},

    {"eval.benchmark", K_STR, 0, 0, 0, "\"world\"", NULL},
    {"eval.manifest", K_STR, 0, 0, 0, "\"\"", NULL},
    {"eval.split", K_STR, 0, 0, 0, "\"test\"", NULL},
    {"eval.methods", K_LIST, 0, 0, 0, "[\"likelihood\",\"letter\"]", "likelihood|letter"},
    {"eval.retrieval", K_BOOL, 0, 0, 0, "true", NULL},
    {"eval.max_questions", K_INT, 0, BIG, 0, "0", NULL},

    /* the noop pipeline's knobs (tests, benchmarks); ignored by the cgvlm pipeline */
    {"noop.sleep_ms", K_INT, 0, 86400000, 0, "0", NULL},
    {"noop.sleep_stage", K_ENUM, 0, 0, 0, "\"all\"",
     "all|world|lm_pretrain|vit_pretrain|align|instruct|eval"},
    {"noop.log", K_STR, 0, 0, 0, "\"\"", NULL},
    {"noop.output", K_BOOL, 0, 0, 0, "true", NULL},
    {"noop.metrics", K_BOOL, 0, 0, 0, "false", NULL},
    {"noop.fail_stage", K_ENUM, 0, 0, 0, "\"\"",
     "|all|world|lm_pretrain|vit_pretrain|align|instruct|eval"},
    {"noop.fail_message", K_STR, 0, 0, 0, "\"noop failure\"", NULL},
    {"noop.fail_input", K_BOOL, 0, 0, 0, "false", NULL},
    {"noop.crash_stage", K_ENUM, 0, 0, 0, "\"\"",
     "|all|world|lm_pretrain|vit_pretrain|align|instruct|eval"},
    {"noop.crash_attempts", K_INT, 0, 1000, 0, "1", NULL},
    {"noop.crash_mode", K_ENUM, 0, 0, 0, "\"kill\"", "kill|abort"},
};

static const char *const sections[] = {"world", "model", "lm_pretrain", "vit_pretrain",
                                       "align", "instruct", "eval", "noop"};

/* Standard sizes, DESIGN.md §1. */
typedef struct {
    const char *name;
    int image_size, patch, vit_dim, vit_layers, vit_heads, lm_dim, lm_layers, lm_heads, ctx, vocab;
} size_preset;
static const size_preset presets[] = {
    {"tiny", 32, 8, 64, 2, 4, 128, 4, 4, 64, 256},
    {"small", 64, 8, 256, 4, 4, 512, 8, 8, 192, 512},
    {"base", 128, 16, 384, 6, 6, 768, 12, 12, 320, 1024},
};
static const char *const shape_keys[] = {"image_size", "patch", "vit_dim", "vit_layers", "vit_heads",
                                         "lm_dim", "lm_layers", "lm_heads", "ctx", "vocab"};
const char *const exp_size_names[] = {"tiny", "small", "base", NULL};

/* The shortest text a run must fit after its visual tokens (a short caption or answer). */
#define EXP_MIN_TEXT 16

static const char *const stage_names[EXP_NSTAGES] = {"world", "lm_pretrain", "vit_pretrain",
                                                     "align", "instruct", "eval"};

const char *exp_stage_name(exp_stage s) {
    if ((int)s < 0 || s >= EXP_NSTAGES) return "?";
    return stage_names[s];
}

int exp_stage_from_name(const char *name) {
    for (int i = 0; i < EXP_NSTAGES; i++)
        if (!strcmp(stage_names[i], name)) return i;
    return -1;
}

static const exp_key *find_key(const char *path) {
    for (size_t i = 0; i < CG_ARRAY_LEN(keys); i++)
        if (!strcmp(keys[i].path, path)) return &keys[i];
    return NULL;
}

static int is_section(const char *name) {
    for (size_t i = 0; i < CG_ARRAY_LEN(sections); i++)
        if (!strcmp(sections[i], name)) return 1;
    return 0;
}

/* "valid keys in 'align': steps, batch, ..." (prefix "" = top level). */
static char *valid_keys(const char *prefix) {
    cg_buf b;
    cg_buf_init(&b);
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < CG_ARRAY_LEN(keys); i++) {
        const char *p = keys[i].path;
        if (plen ? strncmp(p, prefix, plen) || p[plen] != '.' : strchr(p, '.') != NULL) continue;
        cg_buf_addf(&b, "%s%s", b.len ? ", " : "", plen ? p + plen + 1 : p);
    }
    if (!plen)
        for (size_t i = 0; i < CG_ARRAY_LEN(sections); i++) cg_buf_addf(&b, ", %s", sections[i]);
    return cg_buf_steal(&b);
}

static int unknown_key(const char *path) {
    const char *dot = strrchr(path, '.');
    char *prefix = dot ? cg_strndup(path, (size_t)(dot - path)) : cg_strdup("");
    int rc;
    if (dot && !is_section(prefix)) {
        rc = cg_err(CG_EUSER, "unknown config key '%s': '%s' is not a section", path, prefix);
    } else {
        char *valid = valid_keys(prefix);
        if (dot)
            rc = cg_err(CG_EUSER, "unknown config key '%s'; valid keys in '%s': %s", path, prefix, valid);
        else
            rc = cg_err(CG_EUSER, "unknown config key '%s'; valid top-level keys: %s", path, valid);
        free(valid);
    }
    free(prefix);
    return rc;
}

static int in_choices(const char *choices, const char *s) {
    size_t n = strlen(s);
    for (const char *p = choices;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, s, n)) return 1;
        if (!bar) return 0;
        p = bar + 1;
    }
}

/* choices "a|b" shown as "'a', 'b'"; the empty choice as "''". */
static char *show_choices(const char *choices) {
    cg_buf b;
    cg_buf_init(&b);
    for (const char *p = choices;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        cg_buf_addf(&b, "%s'%.*s'", b.len ? ", " : "", (int)len, p);
        if (!bar) break;
        p = bar + 1;
    }
    return cg_buf_steal(&b);
}

static char *show_value(const cJSON *v) {
    char *t = cJSON_PrintUnformatted(v);
    char *s = cg_strdup(t ? t : "?");
    cJSON_free(t);
    return s;
}

static int type_error(const exp_key *k, const cJSON *v, const char *want) {
    char *got = show_value(v);
    int rc = cg_err(CG_EUSER, "config key '%s' must be %s, got %s", k->path, want, got);
    free(got);
    return rc;
}

static int check_type(const exp_key *k, const cJSON *v) {
    switch (k->type) {
    case K_INT:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 9e15)
            return type_error(k, v, "an integer");
        return CG_OK;
    case K_NUM:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return type_error(k, v, "a number");
        return CG_OK;
    case K_BOOL:
        if (!cJSON_IsBool(v)) return type_error(k, v, "true or false");
        return CG_OK;
    case K_STR:
        if (!cJSON_IsString(v)) return type_error(k, v, "a string");
        return CG_OK;
    case K_ENUM:
        if (!cJSON_IsString(v) || !in_choices(k->choices, v->valuestring)) {
            char *c = show_choices(k->choices), *want = cg_fmt("one of %s", c);
            int rc = type_error(k, v, want);
            free(c), free(want);
            return rc;
        }
        return CG_OK;
    case K_LIST: {
        char *c = show_choices(k->choices), *want = cg_fmt("a non-empty list of distinct %s", c);
        int rc = CG_OK;
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) rc = type_error(k, v, want);
        for (const cJSON *e = v->child; rc == CG_OK && e; e = e->next) {
            if (!cJSON_IsString(e) || !in_choices(k->choices, e->valuestring)) rc = type_error(k, v, want);
            for (const cJSON *f = v->child; rc == CG_OK && f != e; f = f->next)
                if (!strcmp(f->valuestring, e->valuestring)) rc = type_error(k, v, want);
        }
        free(c), free(want);
        return rc;
    }
    }
    return CG_OK;
}

static int check_range(const exp_key *k, const cJSON *v) {
    if (k->type != K_INT && k->type != K_NUM) return CG_OK;
    double x = v->valuedouble;
    int below = (k->flags & LO_OPEN) ? x <= k->lo : x < k->lo;
    if (below || x > k->hi)
        return cg_err(CG_EUSER, "config key '%s' = %.*g is out of range %s%.*g, %.*g]", k->path, DBL_DIG, x,
                      (k->flags & LO_OPEN) ? "(" : "[", DBL_DIG, k->lo, DBL_DIG, k->hi);
    return CG_OK;
}

int exp_check_value(const char *path, const cJSON *value) {
    const exp_key *k = find_key(path);
    if (!k) return unknown_key(path);
    return check_type(k, value);
}

/* Every key in cfg must be known and of its type. */
static int check_known(const cJSON *cfg) {
    if (!cJSON_IsObject(cfg)) return cg_err(CG_EUSER, "an experiment must be a JSON object");
    for (const cJSON *it = cfg->child; it; it = it->next) {
        if (is_section(it->string)) {
            if (!cJSON_IsObject(it))
                return cg_err(CG_EUSER, "config key '%s' must be an object (a section)", it->string);
            for (const cJSON *c = it->child; c; c = c->next) {
                char *path = cg_fmt("%s.%s", it->string, c->string);
                int rc = exp_check_value(path, c);
                free(path);
                if (rc) return rc;
            }
        } else {
            int rc = exp_check_value(it->string, it);
            if (rc) return rc;
        }
    }
    return CG_OK;
}

int exp_load(const char *path, cJSON **out) {
    cJSON *cfg;
    int rc = cg_json_load(path, &cfg);
    if (rc) return cg_err_wrap(rc, "cannot load experiment");
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return cg_err(CG_EUSER, "experiment '%s' must be a JSON object", path);
    }
    *out = cfg;
    return CG_OK;
}

static cJSON *section(cJSON *cfg, const char *name) {
    cJSON *s = cJSON_GetObjectItemCaseSensitive(cfg, name);
    return s ? s : cJSON_AddObjectToObject(cfg, name);
}

int exp_set(cJSON *cfg, const char *path, cJSON *value) {
    int rc = exp_check_value(path, value);
    if (rc) {
        cJSON_Delete(value);
        return rc;
    }
    if (!strcmp(path, "model.size")) {
        /* a new size means that size's standard shape: forget the shape the base file set */
        cJSON *model = cJSON_GetObjectItemCaseSensitive(cfg, "model");
        for (size_t i = 0; cJSON_IsObject(model) && i < CG_ARRAY_LEN(shape_keys); i++)
            cJSON_DeleteItemFromObjectCaseSensitive(model, shape_keys[i]);
        cJSON *world = cJSON_GetObjectItemCaseSensitive(cfg, "world");
        if (cJSON_IsObject(world)) cJSON_DeleteItemFromObjectCaseSensitive(world, "image_size");
    }
    return cg_json_set_path(cfg, path, value);
}

int exp_set_arg(cJSON *cfg, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return cg_err(CG_EUSER, "--set '%s': expected PATH=VALUE, e.g. align.lambda=0", assignment);
    char *path = cg_strndup(assignment, (size_t)(eq - assignment));
    const exp_key *k = find_key(path);
    cJSON *value = cg_json_from_arg(eq + 1);
    /* a string key takes the text as written: --set name=123 is the name "123" */
    if (k && (k->type == K_STR || k->type == K_ENUM) && !cJSON_IsString(value)) {
        cJSON_Delete(value);
        value = cJSON_CreateString(eq + 1);
    }
    int rc = exp_set(cfg, path, value);
    if (rc) cg_err_wrap(rc, "--set %s", assignment);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- resolution and validation */

static const size_preset *preset_of(const char *name) {
    for (size_t i = 0; i < CG_ARRAY_LEN(presets); i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return &presets[0];  /* "custom": missing fields come from tiny */
}

static int preset_value(const size_preset *p, size_t i) {
    const int v[] = {p->image_size, p->patch, p->vit_dim, p->vit_layers, p->vit_heads,
                     p->lm_dim, p->lm_layers, p->lm_heads, p->ctx, p->vocab};
    return v[i];
}

static int ival(const cJSON *cfg, const char *path) {
    const cJSON *v = cg_json_path(cfg, path);
    return v ? (int)v->valuedouble : 0;
}

int exp_resolve(cJSON *cfg) {
    int rc = check_known(cfg);
    if (rc) return rc;
    cJSON *model = section(cfg, "model");
    if (!cJSON_GetObjectItemCaseSensitive(model, "size")) cJSON_AddStringToObject(model, "size", "tiny");
    const char *size = cJSON_GetObjectItemCaseSensitive(model, "size")->valuestring;
    const size_preset *p = preset_of(size);
    int differs = 0;
    for (size_t i = 0; i < CG_ARRAY_LEN(shape_keys); i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(model, shape_keys[i]);
        if (!v) cJSON_AddNumberToObject(model, shape_keys[i], preset_value(p, i));
        else if ((int)v->valuedouble != preset_value(p, i)) differs = 1;
    }
    /* a named size whose shape was changed is no longer that size */
    if (differs && strcmp(size, "custom"))
        cJSON_ReplaceItemInObjectCaseSensitive(model, "size", cJSON_CreateString("custom"));
    cJSON *world = section(cfg, "world");
    if (!cJSON_GetObjectItemCaseSensitive(world, "image_size"))
        cJSON_AddNumberToObject(world, "image_size", ival(cfg, "model.image_size"));
    for (size_t i = 0; i < CG_ARRAY_LEN(keys); i++) {
        if (!keys[i].def || cg_json_path(cfg, keys[i].path)) continue;
        cJSON *v = cJSON_Parse(keys[i].def);
        assert(v);
        if ((rc = cg_json_set_path(cfg, keys[i].path, v))) return rc;
    }
    return exp_validate(cfg);
}

static int check_divides(const cJSON *cfg, const char *a, const char *b) {
    int x = ival(cfg, a), y = ival(cfg, b);
    if (y <= 0 || x % y)
        return cg_err(CG_EUSER, "impossible shape: %s = %d is not a multiple of %s = %d", a, x, b, y);
    return CG_OK;
}

int exp_validate(const cJSON *cfg) {
    int rc = check_known(cfg);
    if (rc) return rc;
    for (size_t i = 0; i < CG_ARRAY_LEN(keys); i++) {
        const cJSON *v = cg_json_path(cfg, keys[i].path);
        if (!v) return cg_err(CG_EUSER, "config key '%s' is missing", keys[i].path);
        if ((rc = check_range(&keys[i], v))) return rc;
    }
    const char *dev = cg_json_path(cfg, "device")->valuestring;
    int devn;
    if (strcmp(dev, "auto") && strcmp(dev, "cpu") && strcmp(dev, "cuda") &&
        !(strncmp(dev, "cuda:", 5) == 0 && cg_parse_int(dev + 5, "device", 0, 1023, &devn) == CG_OK))
        return cg_err(CG_EUSER, "config key 'device' = '%s' must be 'auto', 'cpu', 'cuda' or 'cuda:N'", dev);
    if ((rc = check_divides(cfg, "model.lm_dim", "model.lm_heads")) ||
        (rc = check_divides(cfg, "model.vit_dim", "model.vit_heads")) ||
        (rc = check_divides(cfg, "model.image_size", "model.patch")))
        return rc;
    int grid = ival(cfg, "model.image_size") / ival(cfg, "model.patch");
    int pool = ival(cfg, "align.pool");
    if (grid % pool)
        return cg_err(CG_EUSER,
                      "impossible shape: align.pool = %d does not divide the patch grid side %d "
                      "(model.image_size / model.patch)", pool, grid);
    int P = grid * grid, ctx = ival(cfg, "model.ctx");
    if (ctx < P + EXP_MIN_TEXT)
        return cg_err(CG_EUSER,
                      "impossible shape: model.ctx = %d leaves no room for text after the %d visual "
                      "tokens; it must be at least %d", ctx, P, P + EXP_MIN_TEXT);
    if (ival(cfg, "world.image_size") != ival(cfg, "model.image_size"))
        return cg_err(CG_EUSER, "world.image_size = %d must equal model.image_size = %d",
                      ival(cfg, "world.image_size"), ival(cfg, "model.image_size"));
    static const char *const trained[] = {"lm_pretrain", "vit_pretrain", "align"};
    for (size_t i = 0; i < CG_ARRAY_LEN(trained); i++) {
        char *w = cg_fmt("%s.warmup", trained[i]), *s = cg_fmt("%s.steps", trained[i]);
        int bad = ival(cfg, w) > ival(cfg, s);
        if (bad)
            rc = cg_err(CG_EUSER, "%s = %d is longer than %s = %d", w, ival(cfg, w), s, ival(cfg, s));
        free(w), free(s);
        if (bad) return rc;
    }
    return CG_OK;
}

/* ---------------------------------------------------------------- the stage graph */

static void copy_keys(cJSON *dst, const cJSON *src, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, names[i]);
        assert(v);
        cJSON_AddItemToObject(dst, names[i], cJSON_Duplicate(v, 1));
    }
}

static void copy_section(cJSON *dst, const cJSON *cfg, const char *name) {
    cJSON_AddItemToObject(dst, name, cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cfg, name), 1));
}

/* The canonical sub-config of stage s: exactly what its result depends on besides its upstream.
 * The training stages also depend on the GPU's precision (bf16 training is other arithmetic; the
 * CPU computes in fp32 whatever it says, as tf32 is close enough to fp32 to share tasks, like the
 * device). */
static cJSON *stage_subconfig(const cJSON *cfg, exp_stage s) {
    static const char *const lm_shape[] = {"lm_dim", "lm_layers", "lm_heads", "ctx", "vocab"};
    static const char *const vit_shape[] = {"image_size", "patch", "vit_dim", "vit_layers", "vit_heads"};
    static const char *const adapter[] = {"adapter"};
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(cfg, "model");
    cJSON *sub = cJSON_CreateObject();
    switch (s) {
    case EXP_WORLD:
        copy_section(sub, cfg, "world");
        break;
    case EXP_LM_PRETRAIN:
        copy_keys(cJSON_AddObjectToObject(sub, "model"), model, lm_shape, CG_ARRAY_LEN(lm_shape));
        copy_section(sub, cfg, "lm_pretrain");
        break;
    case EXP_VIT_PRETRAIN:
        copy_keys(cJSON_AddObjectToObject(sub, "model"), model, vit_shape, CG_ARRAY_LEN(vit_shape));
        copy_section(sub, cfg, "vit_pretrain");
        break;
    case EXP_ALIGN:
        copy_keys(cJSON_AddObjectToObject(sub, "model"), model, adapter, 1);
        copy_section(sub, cfg, "align");
        cJSON_AddItemToObject(sub, "seed", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cfg, "seed"), 1));
        break;
    case EXP_INSTRUCT:
        copy_section(sub, cfg, "instruct");
        cJSON_AddItemToObject(sub, "seed", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cfg, "seed"), 1));
        break;
    case EXP_EVAL:
        copy_section(sub, cfg, "eval");
        break;
    default:
        assert(0);
    }
    if (s == EXP_LM_PRETRAIN || s == EXP_VIT_PRETRAIN || s == EXP_ALIGN || s == EXP_INSTRUCT)
        cJSON_AddItemToObject(sub, "precision", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cfg, "precision"), 1));
    return sub;
}

/* The noop stand-in's own knobs: the ones aimed at this stage (or at all stages). */
static void add_noop_knobs(cJSON *sub, const cJSON *cfg, exp_stage s) {
    const cJSON *noop = cJSON_GetObjectItemCaseSensitive(cfg, "noop");
    cJSON *n = cJSON_AddObjectToObject(sub, "noop");
    static const char *const always[] = {"log", "output", "metrics"};
    copy_keys(n, noop, always, CG_ARRAY_LEN(always));
    const char *sleep = cJSON_GetObjectItemCaseSensitive(noop, "sleep_stage")->valuestring;
    int sleeps = !strcmp(sleep, "all") || !strcmp(sleep, stage_names[s]);
    cJSON_AddNumberToObject(n, "sleep_ms", sleeps ? cJSON_GetObjectItemCaseSensitive(noop, "sleep_ms")->valuedouble : 0);
    const char *fail = cJSON_GetObjectItemCaseSensitive(noop, "fail_stage")->valuestring;
    if (!strcmp(fail, "all") || !strcmp(fail, stage_names[s])) {
        static const char *const k[] = {"fail_message", "fail_input"};
        copy_keys(n, noop, k, 2);
    }
    const char *crash = cJSON_GetObjectItemCaseSensitive(noop, "crash_stage")->valuestring;
    if (!strcmp(crash, "all") || !strcmp(crash, stage_names[s])) {
        static const char *const k[] = {"crash_attempts", "crash_mode"};
        copy_keys(n, noop, k, 2);
    }
    cJSON_AddStringToObject(sub, "stage", stage_names[s]);
}

static void task_key(const char *kind, const cJSON *sub, const exp_plan *plan, const exp_task *t,
                     const char *code, char out[65]) {
    cJSON *k = cJSON_CreateObject();
    cJSON_AddStringToObject(k, "kind", kind);
    cJSON_AddItemToObject(k, "config", cJSON_Duplicate(sub, 1));
    cJSON *deps = cJSON_AddArrayToObject(k, "deps");
    for (int i = 0; i < t->ndeps; i++)
        cJSON_AddItemToArray(deps, cJSON_CreateString(plan->task[t->deps[i]].key));
    cJSON_AddStringToObject(k, "code", code);
    char *text = cg_json_canonical(k);
    cg_sha256_hex(text, strlen(text), out);
    free(text);
    cJSON_Delete(k);
}

int exp_plan_make(const cJSON *cfg, const char *code_version, exp_plan *plan) {
    static const struct {
        int ndeps;
        exp_stage deps[2];
    } graph[EXP_NSTAGES] = {
        [EXP_WORLD] = {0, {0, 0}},
        [EXP_LM_PRETRAIN] = {1, {EXP_WORLD, 0}},
        [EXP_VIT_PRETRAIN] = {1, {EXP_WORLD, 0}},
        [EXP_ALIGN] = {2, {EXP_LM_PRETRAIN, EXP_VIT_PRETRAIN}},
        [EXP_INSTRUCT] = {1, {EXP_ALIGN, 0}},
        [EXP_EVAL] = {1, {EXP_INSTRUCT, 0}},
    };
    memset(plan, 0, sizeof *plan);
    int rc = exp_validate(cfg);
    if (rc) return rc;
    int noop = !strcmp(cJSON_GetObjectItemCaseSensitive(cfg, "pipeline")->valuestring, "noop");
    for (int s = 0; s < EXP_NSTAGES; s++) {   /* index order is a dependency order */
        exp_task *t = &plan->task[s];
        t->stage = (exp_stage)s;
        t->kind = noop ? "noop" : stage_names[s];
        t->ndeps = graph[s].ndeps;
        memcpy(t->deps, graph[s].deps, sizeof t->deps);
        t->config = stage_subconfig(cfg, (exp_stage)s);
        if (noop) add_noop_knobs(t->config, cfg, (exp_stage)s);
        cg_json_sort(t->config);
        task_key(t->kind, t->config, plan, t, code_version, t->key);
    }
    return CG_OK;
}

void exp_plan_free(exp_plan *plan) {
    for (int s = 0; s < EXP_NSTAGES; s++) cJSON_Delete(plan->task[s].config);
    memset(plan, 0, sizeof *plan);
}
