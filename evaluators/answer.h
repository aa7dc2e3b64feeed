/* answer.h: multiple-choice answer extraction (LLaVA's ScienceQA rules) and accuracy aggregation
 * overall, per category and per skill. */
#ifndef CG_ANSWER_H
#define CG_ANSWER_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* The option index (0 for A) a model's answer text names, or -1 (counted wrong). After trimming
 * white space, in this order (LLaVA's eval_science_qa.py):
 *   1. the whole text is one capital letter: "B";
 *   2. it starts with a capital letter and '.' or ')' followed by the end or white space:
 *      "B.", "B) because ...", "B. The answer is C." (-> B);
 *   3. it contains "The answer is X." exactly once (X a capital letter, then a period).
 * A letter outside the n_options choices gives -1, as does anything else ("b", "(B)", "B.x",
 * "The answer is B" without the period, the sentence twice). Where LLaVA's regex reads '.' as
 * any character ("The answer is Blue." -> B), we require the period: answers are words here. */
int answer_extract_letter(const char *text, int n_options);

/* One scored question. category/skill may be NULL (then not counted in that breakdown). */
typedef struct {
    int correct;
    const char *category;
    const char *skill;
} answer_record;

typedef struct {
    char *key;
    long correct, total;
    double accuracy; /* correct / total, in [0, 1]; 0 when total is 0 */
} answer_group;

typedef struct {
    long correct, total;
    double accuracy;
    answer_group *categories; /* sorted by key */
    size_t n_categories;
    answer_group *skills;     /* sorted by key */
    size_t n_skills;
} answer_summary;

void answer_summarize(const answer_record *records, size_t n, answer_summary *out);
void answer_summary_free(answer_summary *s);
/* {"accuracy","correct","total","categories":{KEY:{"accuracy","correct","total"}},"skills":{...}} */
cJSON *answer_summary_json(const answer_summary *s);

#endif
