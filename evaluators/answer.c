/* answer.c: answer letters from model text (LLaVA's ScienceQA rules) and accuracy tables
 * (see answer.h). */
#include "evaluators/answer.h"
#include "util/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define ANSWER_SENTENCE "The answer is "

/* Letters the rules look for: LLaVA's A-E, or more when a question has more choices. */
static int is_candidate(char c, int n_options) {
    int n = n_options > 5 ? n_options : 5;
    return c >= 'A' && c < 'A' + n && c <= 'Z';
}

static int in_range(char c, int n_options) { return c - 'A' < n_options ? c - 'A' : -1; }

int answer_extract_letter(const char *text, int n_options) {
    if (!text || n_options < 1 || n_options > 26) return -1;
    const char *s = text, *e = text + strlen(text);
    while (s < e && isspace((unsigned char)*s)) s++;
    while (e > s && isspace((unsigned char)e[-1])) e--;
    size_t n = (size_t)(e - s);
    if (n == 1 && is_candidate(s[0], n_options)) return in_range(s[0], n_options);
    if (n >= 2 && is_candidate(s[0], n_options) && (s[1] == '.' || s[1] == ')') &&
        (n == 2 || isspace((unsigned char)s[2])))
        return in_range(s[0], n_options);
    /* the sentence, exactly once */
    const size_t k = strlen(ANSWER_SENTENCE);
    int found = 0;
    char letter = 0;
    for (const char *p = s; p + k + 2 <= e; p++) {
        if (memcmp(p, ANSWER_SENTENCE, k) != 0) continue;
        char c = p[k];
        if (c >= 'A' && c <= 'Z' && p[k + 1] == '.') {
            found++;
            letter = c;
            p += k + 1;
        }
    }
    if (found != 1) return -1;
    return in_range(letter, n_options);
}

typedef struct {
    const char *key;
    int correct;
} keyed;

static int cmp_keyed(const void *a, const void *b) {
    return strcmp(((const keyed *)a)->key, ((const keyed *)b)->key);
}

/* Groups by key: sort the (key, correct) pairs, then count runs. */
static answer_group *group_by(const answer_record *r, size_t n, int use_skill, size_t *n_out) {
    keyed *k = cg_malloc((n ? n : 1) * sizeof *k);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *key = use_skill ? r[i].skill : r[i].category;
        if (key) k[m].key = key, k[m++].correct = r[i].correct;
    }
    qsort(k, m, sizeof *k, cmp_keyed);
    answer_group *g = cg_calloc(m ? m : 1, sizeof *g);
    size_t ng = 0;
    for (size_t i = 0; i < m; i++) {
        if (ng == 0 || strcmp(g[ng - 1].key, k[i].key) != 0) g[ng++].key = cg_strdup(k[i].key);
        g[ng - 1].total++;
        g[ng - 1].correct += k[i].correct != 0;
    }
    for (size_t i = 0; i < ng; i++) g[i].accuracy = (double)g[i].correct / (double)g[i].total;
    free(k);
    *n_out = ng;
    return g;
}

void answer_summarize(const answer_record *records, size_t n, answer_summary *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) out->correct += records[i].correct != 0;
    out->total = (long)n;
    out->accuracy = n ? (double)out->correct / (double)n : 0.0;
    out->categories = group_by(records, n, 0, &out->n_categories);
    out->skills = group_by(records, n, 1, &out->n_skills);
}

void answer_summary_free(answer_summary *s) {
    for (size_t i = 0; i < s->n_categories; i++) free(s->categories[i].key);
    for (size_t i = 0; i < s->n_skills; i++) free(s->skills[i].key);
    free(s->categories);
    free(s->skills);
    memset(s, 0, sizeof *s);
}

static cJSON *counts_json(double acc, long correct, long total) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "accuracy", acc);
    cJSON_AddNumberToObject(o, "correct", (double)correct);
    cJSON_AddNumberToObject(o, "total", (double)total);
    return o;
}

static cJSON *groups_json(const answer_group *g, size_t n) {
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToObject(o, g[i].key, counts_json(g[i].accuracy, g[i].correct, g[i].total));
    return o;
}

cJSON *answer_summary_json(const answer_summary *s) {
    cJSON *o = counts_json(s->accuracy, s->correct, s->total);
    cJSON_AddItemToObject(o, "categories", groups_json(s->categories, s->n_categories));
    cJSON_AddItemToObject(o, "skills", groups_json(s->skills, s->n_skills));
    return o;
}
