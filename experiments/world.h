/* world.h: the miniature vision-language world (DESIGN.md §2): scenes of 1-3 coloured shapes on
 * a 3x3 grid, rendered with integer arithmetic only, described in a small closed language, and
 * written as alignment captions, LLaVA instruction conversations, a text corpus, held-out
 * captions and a ScienceQA-format benchmark.
 *
 * Everything is a pure function of (seed, options): item i of split k is drawn from its own rng
 * stream (seed, k, i), so the same options give byte-identical files on any machine, and
 * changing one split's size never changes another split's items.
 *
 * Layout of a world directory (WORLD_FORMAT_VERSION 1):
 *   world.json                 seed, options, counts, format version, every file's sha256/size
 *   vocab.txt                  word-level vocabulary (id = line number)
 *   images/align.npy           (n_align, S, S, 3) uint8      images/instruct.npy  (n_instruct, ..)
 *   images/heldout.npy         (n_heldout, S, S, 3) uint8
 *   captions/align.jsonl       {"id","image":"align/000000","caption"} per line
 *   captions/heldout.jsonl     held-out captions (retrieval, caption perplexity)
 *   instruct/conversations.json LLaVA conversations, "image": "instruct/000000"
 *   corpus/train.txt           LM pretraining text, one document per line
 *   corpus/heldout.txt         held-out text (text perplexity)
 *   benchmark/manifest.json    {"name","version","format":"scienceqa","files":[...]}
 *   benchmark/problems.json    ScienceQA problems (pid -> problem)
 *   benchmark/pid_splits.json  {"train":[],"val","test","trainval","minitrain","minival","minitest"}
 *   benchmark/images/PID/image.png
 */
#ifndef CG_WORLD_H
#define CG_WORLD_H

#include "util/rng.h"
#include "util/util.h"

#include <stdint.h>

#define WORLD_FORMAT_VERSION 1
#define WORLD_MAX_OBJECTS 3
/* Corpus documents and benchmark prompts are kept within this many tokens (the tiny model's
 * context of 64 minus <bos> and <eos>). */
#define WORLD_MAX_DOC_TOKENS 62

enum { WORLD_N_SHAPES = 4, WORLD_N_COLORS = 7, WORLD_N_SIZES = 2, WORLD_N_CELLS = 9 };

typedef struct {
    int shape, color, size, cell;   /* cell 0..8 in reading order (0 top left, 4 center) */
} world_object;

typedef struct {
    int n;                          /* 1..WORLD_MAX_OBJECTS, sorted by cell */
    world_object obj[WORLD_MAX_OBJECTS];
} world_scene;

typedef struct {
    uint64_t seed;
    int image_size;                 /* S: 32 (tiny), 64 (small), 128 (base); 24..512 */
    int n_align, n_instruct, n_corpus, n_corpus_heldout, n_bench, n_heldout;
} world_options;

void world_options_default(world_options *o);

/* Draws a scene: 1-3 objects, distinct cells, distinct (colour, shape) pairs. */
void world_scene_sample(cg_rng *r, world_scene *s);
/* Renders a scene into (S,S,3) pixels: light noise background, 4x4-supersampled shapes, integer
 * arithmetic only. */
void world_render(const world_scene *s, int S, cg_rng *r, uint8_t *rgb /* (S,S,3) */);
/* "a large red circle at the top left and a small blue square at the center". Appends. */
void world_caption(const world_scene *s, cg_buf *out);

/* A question about a scene with both an open answer and a multiple-choice form. */
typedef struct {
    const char *category;           /* color shape size position count existence relation describe */
    char question[160];
    char answer[160];               /* open-form answer */
    char choices[5][40];
    int n_choices, correct;         /* choices[correct] is the answer in MC form */
} world_qa;

/* Question template families: WORLD_Q_INSTRUCT for the instruction data (open-ended),
 * WORLD_Q_BENCH for the benchmark (other wordings, multiple choice). */
enum { WORLD_Q_INSTRUCT = 0, WORLD_Q_BENCH = 1 };
/* Draws a question of the family about the scene; n_choices is 2..max_choices. */
void world_question(const world_scene *s, int family, int max_choices, cg_rng *r, world_qa *qa);

/* The closed vocabulary: the words, in id order, specials first. */
const char *const *world_vocab_words(int *n);

/* Generates a world into `dir` (atomically: a temporary directory renamed into place). An
 * existing non-empty dir is refused with CG_EUSER unless `force`. */
int world_generate(const char *dir, const world_options *o, int force, double *seconds);
/* Renders n images of image size S (the benchmark of `cgvlm bench world`); no files. */
void world_render_many(uint64_t seed, int S, int n, uint8_t *rgb /* (n,S,S,3) */);

#endif
