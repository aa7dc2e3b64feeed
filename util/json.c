/* json.c: cJSON helpers (see json.h). */
#include "util/json.h"
#include "util/fs.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int cg_json_parse(const char *text, const char *what, cJSON **out) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
    if (!j) {
        int line = 1, col = 1;
        const char *stop = end ? end : text;
        for (const char *p = text; p < stop && *p; p++) {
            if (*p == '\n') line++, col = 1;
            else col++;
        }
        return cg_err(CG_EUSER, "%s: malformed JSON at line %d, column %d", what, line, col);
    }
    *out = j;
    return CG_OK;
}

int cg_json_load(const char *path, cJSON **out) {
    char *text;
    int rc = cg_read_file(path, &text, NULL);
    if (rc) return rc;
    rc = cg_json_parse(text, path, out);
    free(text);
    return rc;
}

static int cmp_items(const void *a, const void *b) {
    const cJSON *x = *(cJSON *const *)a, *y = *(cJSON *const *)b;
    return strcmp(x->string, y->string);
}

void cg_json_sort(cJSON *j) {
    if (!j) return;
    for (cJSON *c = j->child; c; c = c->next) cg_json_sort(c);
    if (!cJSON_IsObject(j) || !j->child) return;
    int n = cJSON_GetArraySize(j);
    cJSON **items = cg_malloc(sizeof *items * (size_t)n);
    int i = 0;
    for (cJSON *c = j->child; c; c = c->next) items[i++] = c;
    qsort(items, (size_t)n, sizeof *items, cmp_items);
    for (i = 0; i < n; i++) {
        items[i]->prev = i ? items[i - 1] : items[n - 1];  /* cJSON: head->prev is the tail */
        items[i]->next = i + 1 < n ? items[i + 1] : NULL;
    }
    j->child = items[0];
    free(items);
}

char *cg_json_canonical(const cJSON *j) {
    cJSON *copy = cJSON_Duplicate(j, 1);
    cg_json_sort(copy);
    char *text = cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    char *out = cg_strdup(text);
    cJSON_free(text);
    return out;
}

int cg_json_save(const char *path, const cJSON *j, int pretty) {
    char *text = pretty ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
    size_t n = strlen(text);
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_add(&b, text, n);
    cg_buf_adds(&b, "\n");
    cJSON_free(text);
    int rc = cg_write_file_atomic(path, b.data, b.len);
    cg_buf_free(&b);
    return rc;
}

cJSON *cg_json_path(const cJSON *root, const char *dotted) {
    char *copy = cg_strdup(dotted), *save = NULL;
    const cJSON *cur = root;
    for (char *part = strtok_r(copy, ".", &save); part && cur; part = strtok_r(NULL, ".", &save))
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, part) : NULL;
    free(copy);
    return (cJSON *)cur;
}

int cg_json_set_path(cJSON *root, const char *dotted, cJSON *value) {
    char *copy = cg_strdup(dotted), *save = NULL;
    cJSON *cur = root;
    char *part = strtok_r(copy, ".", &save);
    int rc = CG_OK;
    while (part) {
        char *next = strtok_r(NULL, ".", &save);
        if (!cJSON_IsObject(cur)) {
            rc = cg_err(CG_EUSER, "'%s': '%s' is not inside an object", dotted, part);
            break;
        }
        if (!next) {
            if (cJSON_GetObjectItemCaseSensitive(cur, part))
                cJSON_ReplaceItemInObjectCaseSensitive(cur, part, value);
            else
                cJSON_AddItemToObject(cur, part, value);
            value = NULL;
            break;
        }
        cJSON *child = cJSON_GetObjectItemCaseSensitive(cur, part);
        if (!child) child = cJSON_AddObjectToObject(cur, part);
        cur = child;
        part = next;
    }
    if (value) cJSON_Delete(value);
    free(copy);
    return rc;
}

cJSON *cg_json_from_arg(const char *text) {
    cJSON *j = cJSON_ParseWithOpts(text, NULL, 1);
    return j ? j : cJSON_CreateString(text);
}

static int want(const cJSON *obj, const char *key, int required, const cJSON **item) {
    *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!*item && required) return cg_err(CG_EUSER, "missing required key '%s'", key);
    return CG_OK;
}

int cg_json_get_int(const cJSON *obj, const char *key, int required, int64_t *out) {
    const cJSON *it;
    int rc = want(obj, key, required, &it);
    if (rc || !it) return rc;
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
        fabs(it->valuedouble) > 9.0e15)
        return cg_err(CG_EUSER, "key '%s' must be an integer", key);
    *out = (int64_t)it->valuedouble;
    return CG_OK;
}

int cg_json_get_num(const cJSON *obj, const char *key, int required, double *out) {
    const cJSON *it;
    int rc = want(obj, key, required, &it);
    if (rc || !it) return rc;
    if (!cJSON_IsNumber(it)) return cg_err(CG_EUSER, "key '%s' must be a number", key);
    *out = it->valuedouble;
    return CG_OK;
}

int cg_json_get_bool(const cJSON *obj, const char *key, int required, int *out) {
    const cJSON *it;
    int rc = want(obj, key, required, &it);
    if (rc || !it) return rc;
    if (!cJSON_IsBool(it)) return cg_err(CG_EUSER, "key '%s' must be true or false", key);
    *out = cJSON_IsTrue(it);
    return CG_OK;
}

int cg_json_get_str(const cJSON *obj, const char *key, int required, const char **out) {
    const cJSON *it;
    int rc = want(obj, key, required, &it);
    if (rc || !it) return rc;
    if (!cJSON_IsString(it)) return cg_err(CG_EUSER, "key '%s' must be a string", key);
    *out = it->valuestring;
    return CG_OK;
}
