/* scienceqa.c: loading ScienceQA problems.json + pid_splits.json for one split (see scienceqa.h). */
#include "evaluators/scienceqa.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void problem_free(sqa_problem *p) {
    free(p->pid);
    free(p->question);
    free(p->hint);
    for (int k = 0; k < p->n_choices; k++) free(p->choices[k]);
    free(p->image);
    free(p->category);
    free(p->skill);
    free(p->subject);
    free(p->topic);
    free(p->grade);
    free(p->task);
    free(p->split);
    free(p->lecture);
    free(p->solution);
    memset(p, 0, sizeof *p);
}

static int str_field(const cJSON *obj, const char *key, int required, const char *file, const char *pid,
                     char **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return cg_err(CG_EUSER, "%s: problem '%s': missing field '%s'", file, pid, key);
        *out = cg_strdup("");
        return CG_OK;
    }
    if (!cJSON_IsString(it)) return cg_err(CG_EUSER, "%s: problem '%s': field '%s' must be a string", file, pid, key);
    *out = cg_strdup(it->valuestring);
    return CG_OK;
}

static int parse_problem(const cJSON *j, const char *file, const char *pid, sqa_problem *p) {
    memset(p, 0, sizeof *p);
    p->pid = cg_strdup(pid);
    if (!pid[0] || strchr(pid, '/') || !strcmp(pid, "..") || !strcmp(pid, "."))
        return cg_err(CG_EUSER, "%s: problem id '%s' is not usable as a directory name", file, pid);
    if (!cJSON_IsObject(j)) return cg_err(CG_EUSER, "%s: problem '%s' must be a JSON object", file, pid);
    int rc;
    if ((rc = str_field(j, "question", 1, file, pid, &p->question))) return rc;
    if ((rc = str_field(j, "hint", 1, file, pid, &p->hint))) return rc;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
    if (!ch) return cg_err(CG_EUSER, "%s: problem '%s': missing field 'choices'", file, pid);
    int nc = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : -1;
    if (nc < 2 || nc > DATA_MAX_CHOICES)
        return cg_err(CG_EUSER, "%s: problem '%s': field 'choices' must be an array of 2 to %d strings", file,
                      pid, DATA_MAX_CHOICES);
    for (const cJSON *c = ch->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return cg_err(CG_EUSER, "%s: problem '%s': field 'choices' must hold only strings", file, pid);
        p->choices[p->n_choices++] = cg_strdup(c->valuestring);
    }
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(j, "answer");
    if (!ans) return cg_err(CG_EUSER, "%s: problem '%s': missing field 'answer'", file, pid);
    if (!cJSON_IsNumber(ans) || ans->valuedouble != floor(ans->valuedouble))
        return cg_err(CG_EUSER, "%s: problem '%s': field 'answer' must be an integer index", file, pid);
    if (ans->valuedouble < 0 || ans->valuedouble >= nc)
        return cg_err(CG_EUSER, "%s: problem '%s': field 'answer' is %g, out of range for %d choices", file,
                      pid, ans->valuedouble, nc);
    p->answer = (int)ans->valuedouble;
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(j, "image");
    if (!img) return cg_err(CG_EUSER, "%s: problem '%s': missing field 'image'", file, pid);
    if (cJSON_IsString(img)) {
        if (!img->valuestring[0] || strchr(img->valuestring, '/') || !strcmp(img->valuestring, ".."))
            return cg_err(CG_EUSER, "%s: problem '%s': field 'image' must be a plain file name, not '%s'", file,
                          pid, img->valuestring);
        p->image = cg_strdup(img->valuestring);
    } else if (!cJSON_IsNull(img)) {
        return cg_err(CG_EUSER, "%s: problem '%s': field 'image' must be a file name or null", file, pid);
    }
    struct {
        const char *key;
        char **dst;
    } opt[] = {{"category", &p->category}, {"skill", &p->skill},     {"subject", &p->subject},
               {"topic", &p->topic},       {"grade", &p->grade},     {"task", &p->task},
               {"split", &p->split},       {"lecture", &p->lecture}, {"solution", &p->solution}};
    for (size_t i = 0; i < CG_ARRAY_LEN(opt); i++)
        if ((rc = str_field(j, opt[i].key, 0, file, pid, opt[i].dst))) return rc;
    return CG_OK;
}

int sqa_load(const char *dir, const char *split, sqa_set *out) {
    memset(out, 0, sizeof *out);
    char *ppath = cg_path_join(dir, "problems.json"), *spath = cg_path_join(dir, "pid_splits.json");
    cJSON *probs = NULL, *splits = NULL;
    int rc = cg_json_load(ppath, &probs);
    if (rc == CG_OK) rc = cg_json_load(spath, &splits);
    if (rc) goto out;
    if (!cJSON_IsObject(probs)) {
        rc = cg_err(CG_EUSER, "%s: must be a JSON object mapping problem ids to problems", ppath);
        goto out;
    }
    if (!cJSON_IsObject(splits)) {
        rc = cg_err(CG_EUSER, "%s: must be a JSON object mapping split names to lists of problem ids", spath);
        goto out;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(splits, split);
    if (!list) {
        cg_buf names;
        cg_buf_init(&names);
        for (const cJSON *c = splits->child; c; c = c->next) cg_buf_addf(&names, "%s%s", names.len ? ", " : "", c->string);
        rc = cg_err(CG_EUSER, "%s: no split '%s'; it has: %s", spath, split, names.len ? names.data : "(none)");
        cg_buf_free(&names);
        goto out;
    }
    if (!cJSON_IsArray(list)) {
        rc = cg_err(CG_EUSER, "%s: split '%s' must be an array of problem ids", spath, split);
        goto out;
    }
    out->dir = cg_strdup(dir);
    out->split = cg_strdup(split);
    out->items = cg_calloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *out->items);
    for (const cJSON *id = list->child; id && rc == CG_OK; id = id->next) {
        if (!cJSON_IsString(id)) {
            rc = cg_err(CG_EUSER, "%s: split '%s' holds a problem id that is not a string", spath, split);
            break;
        }
        const cJSON *pj = cJSON_GetObjectItemCaseSensitive(probs, id->valuestring);
        if (!pj) {
            rc = cg_err(CG_EUSER, "%s: split '%s' names problem '%s', which %s does not have", spath, split,
                        id->valuestring, ppath);
            break;
        }
        rc = parse_problem(pj, ppath, id->valuestring, &out->items[out->n]);
        out->n++;  /* counted even when it failed, so that sqa_free frees it */
    }
out:
    cJSON_Delete(probs);
    cJSON_Delete(splits);
    free(ppath);
    free(spath);
    if (rc) sqa_free(out);
    return rc;
}

void sqa_free(sqa_set *s) {
    for (int i = 0; i < s->n; i++) problem_free(&s->items[i]);
    free(s->items);
    free(s->dir);
    free(s->split);
    memset(s, 0, sizeof *s);
}

char *sqa_image_path(const sqa_set *s, const sqa_problem *p) {
    if (!p->image) return NULL;
    return cg_fmt("%s/images/%s/%s", s->dir, p->pid, p->image);
}

char *sqa_prompt(const sqa_problem *p) {
    return data_mc_prompt(p->hint, p->question, (const char *const *)p->choices, p->n_choices);
}
