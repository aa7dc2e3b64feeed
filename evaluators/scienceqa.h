/* scienceqa.h: the ScienceQA benchmark format (the real schema; the world's benchmark uses it
 * too): problems.json (pid -> problem) + pid_splits.json (split -> [pid]) + images/PID/IMAGE.
 *
 * Required per problem: question (string), choices (2-5 strings), answer (integer index into
 * choices), hint (string, may be ""), image (null or a file name). Optional strings, kept when
 * present: task, grade, subject, topic, category, skill, lecture, solution, split. A malformed
 * problem is CG_EUSER naming the file, the problem id and the field.
 */
#ifndef CG_SCIENCEQA_H
#define CG_SCIENCEQA_H

#include "core/data.h"

typedef struct {
    char *pid;
    char *question;
    char *hint;                             /* "" when none */
    char *choices[DATA_MAX_CHOICES];
    int n_choices;
    int answer;                             /* 0-based index into choices */
    char *image;                            /* file name inside images/PID/, NULL when text-only */
    char *category, *skill, *subject, *topic, *grade, *task, *split;  /* "" when absent */
    char *lecture, *solution;
} sqa_problem;

typedef struct {
    char *dir;                              /* the benchmark directory */
    char *split;
    sqa_problem *items;                     /* in pid_splits.json order */
    int n;
} sqa_set;

/* Loads the problems of one split ("test", "val", "minitest", ...) from dir/problems.json and
 * dir/pid_splits.json. An unknown split names the splits the file has. */
int sqa_load(const char *dir, const char *split, sqa_set *out);
void sqa_free(sqa_set *s);
/* The image file of a problem, dir/images/PID/IMAGE (malloc'ed), or NULL for a text-only one. */
char *sqa_image_path(const sqa_set *s, const sqa_problem *p);
/* The multiple-choice prompt of a problem (data_mc_prompt with its hint, question, choices). */
char *sqa_prompt(const sqa_problem *p);

#endif
