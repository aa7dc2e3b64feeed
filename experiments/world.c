/* world.c: the world generator: scenes, integer rendering, the world's language (captions and
 * question templates) and the files of a world directory (see world.h for the layout). */
#define _GNU_SOURCE
#include "experiments/world.h"
#include "core/data.h"
#include "util/faults_hint.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/png.h"
#include "util/sha256.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the world's things and words ---- */

static const char *const shape_names[WORLD_N_SHAPES] = {"circle", "square", "triangle", "cross"};
static const char *const shape_plurals[WORLD_N_SHAPES] = {"circles", "squares", "triangles", "crosses"};
static const char *const color_names[WORLD_N_COLORS] = {"red", "green", "blue", "yellow",
                                                        "purple", "orange", "black"};
static const uint8_t color_rgb[WORLD_N_COLORS][3] = {
    {215, 35, 35}, {35, 160, 55}, {40, 80, 220}, {235, 195, 20}, {135, 55, 185}, {245, 125, 15}, {25, 25, 25}};
static const char *const size_names[WORLD_N_SIZES] = {"small", "large"};
static const char *const cell_names[WORLD_N_CELLS] = {"top left", "top", "top right", "left", "center",
                                                      "right", "bottom left", "bottom", "bottom right"};
static const char *const numbers[5] = {"zero", "one", "two", "three", "four"};
static const char *const yes_no[2] = {"yes", "no"};
/* Relations of A to B on the grid. */
static const char *const relations[4] = {"above", "below", "left of", "right of"};

/* The closed vocabulary, in id order. Every word the generator writes is here; `world check`
 * and the tests verify that no generated text has an unknown word. */
static const char *const vocab_words[] = {
    "<pad>", "<bos>", "<eos>", "<unk>", "<image>",
    ".", ",", "?", ":",
    "A", "B", "C", "D", "E",
    /* captions */
    "a", "the", "at", "and", "small", "large",
    "red", "green", "blue", "yellow", "purple", "orange", "black",
    "circle", "square", "triangle", "cross", "circles", "squares", "triangles", "crosses",
    "top", "bottom", "left", "right", "center",
    /* instruction questions and answers */
    "what", "color", "shape", "size", "is", "where", "how", "many", "object", "objects", "are",
    "there", "describe", "image", "yes", "no", "above", "below", "of",
    "zero", "one", "two", "three", "four",
    /* benchmark questions (only in the benchmark and the text corpus) */
    "which", "does", "have", "can", "be", "seen", "in", "number", "part", "compared", "to", "these",
    /* the multiple-choice prompt */
    "context", "question", "options", "answer",
};

const char *const *world_vocab_words(int *n) {
    *n = (int)CG_ARRAY_LEN(vocab_words);
    return vocab_words;
}

void world_options_default(world_options *o) {
    memset(o, 0, sizeof *o);
    o->seed = 0;
    o->image_size = 32;
    o->n_align = 8000;
    o->n_instruct = 10000;
    o->n_corpus = 20000;
    o->n_corpus_heldout = 1000;
    o->n_bench = 600;
    o->n_heldout = 500;
}

/* ---- scenes ---- */

static int cmp_cell(const void *a, const void *b) {
    return ((const world_object *)a)->cell - ((const world_object *)b)->cell;
}

void world_scene_sample(cg_rng *r, world_scene *s) {
    memset(s, 0, sizeof *s);
    s->n = 1 + (int)cg_rng_below(r, WORLD_MAX_OBJECTS);
    for (int i = 0; i < s->n; i++) {
        world_object *o = &s->obj[i];
        int clash;
        do {
            o->cell = (int)cg_rng_below(r, WORLD_N_CELLS);
            o->shape = (int)cg_rng_below(r, WORLD_N_SHAPES);
            o->color = (int)cg_rng_below(r, WORLD_N_COLORS);
            clash = 0;
            for (int j = 0; j < i; j++)
                clash |= s->obj[j].cell == o->cell || (s->obj[j].shape == o->shape && s->obj[j].color == o->color);
        } while (clash);
        o->size = (int)cg_rng_below(r, WORLD_N_SIZES);
    }
    qsort(s->obj, (size_t)s->n, sizeof s->obj[0], cmp_cell);
}

/* ---- rendering: integer only, 4x4 supersampling in units of 1/8 pixel ---- */

#define SUB 8  /* units per pixel; sample points at (2k+1)/8, k = 0..3 */

static int inside(int shape, int64_t dx, int64_t dy, int64_t r) {
    int64_t ax = dx < 0 ? -dx : dx, ay = dy < 0 ? -dy : dy;
    switch (shape) {
    case 0: return dx * dx + dy * dy <= r * r;                          /* circle */
    case 1: return 8 * ax <= 7 * r && 8 * ay <= 7 * r;                  /* square, side 1.75 r */
    case 2: return 5 * dy <= 4 * r && 9 * ax <= 5 * (dy + r);           /* triangle, apex up */
    default: {                                                          /* cross (plus sign) */
        int64_t t = 3 * r;  /* arm half-thickness 0.3 r, compared at x10 */
        return (10 * ax <= t && ay <= r) || (10 * ay <= t && ax <= r);
    }
    }
}

static uint8_t clamp_u8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

void world_render(const world_scene *s, int S, cg_rng *r, uint8_t *rgb) {
    /* light noise: a per-scene grey level with a faint tint, and per-pixel noise */
    int base = 212 + (int)cg_rng_below(r, 32), tint[3];
    for (int c = 0; c < 3; c++) tint[c] = (int)cg_rng_below(r, 13) - 6;
    /* per-pixel noise in -10..10: each byte b of a 64-bit draw gives (21 b) >> 8 */
    uint64_t bits = 0;
    for (int i = 0, left = 0; i < S * S * 3; i++, left--) {
        if (!left) bits = cg_rng_u64(r), left = 8;
        int noise = (int)(((bits & 0xff) * 21) >> 8) - 10;
        bits >>= 8;
        rgb[i] = clamp_u8(base + tint[i % 3] + noise);
    }
    for (int k = 0; k < s->n; k++) {
        const world_object *o = &s->obj[k];
        int col[3];
        for (int c = 0; c < 3; c++) col[c] = clamp_u8(color_rgb[o->color][c] + (int)cg_rng_below(r, 25) - 12);
        int64_t rad = o->size ? (int64_t)S * SUB * 16 / 100 : (int64_t)S * SUB * 9 / 100;
        int64_t half_cell = (int64_t)S * SUB / 6, margin = (int64_t)S * SUB / 50;
        int64_t cx = (int64_t)(2 * (o->cell % 3) + 1) * S * SUB / 6;
        int64_t cy = (int64_t)(2 * (o->cell / 3) + 1) * S * SUB / 6;
        int64_t room = half_cell - rad - margin;  /* small shapes wander inside their cell */
        if (room > 0) {
            cx += (int64_t)cg_rng_below(r, (uint32_t)(2 * room + 1)) - room;
            cy += (int64_t)cg_rng_below(r, (uint32_t)(2 * room + 1)) - room;
        }
        int x0 = (int)((cx - rad) / SUB) - 1, x1 = (int)((cx + rad) / SUB) + 1;
        int y0 = (int)((cy - rad) / SUB) - 1, y1 = (int)((cy + rad) / SUB) + 1;
        for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < S; y++)
            for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < S; x++) {
                int cover = 0;
                for (int sy = 0; sy < 4; sy++)
                    for (int sx = 0; sx < 4; sx++)
                        cover += inside(o->shape, (int64_t)x * SUB + 2 * sx + 1 - cx,
                                        (int64_t)y * SUB + 2 * sy + 1 - cy, rad);
                if (!cover) continue;
                uint8_t *p = rgb + ((size_t)y * S + x) * 3;
                for (int c = 0; c < 3; c++) p[c] = (uint8_t)((p[c] * (16 - cover) + col[c] * cover + 8) / 16);
            }
    }
}

void world_render_many(uint64_t seed, int S, int n, uint8_t *rgb) {
    for (int i = 0; i < n; i++) {
        cg_rng r;
        cg_rng_seed2(&r, seed, (uint64_t)i);
        world_scene s;
        world_scene_sample(&r, &s);
        world_render(&s, S, &r, rgb + (size_t)i * S * S * 3);
    }
}

/* ---- the language ---- */

static void describe_object(const world_object *o, int with_size, char *out, size_t n) {
    snprintf(out, n, "%s%s%s %s", with_size ? size_names[o->size] : "", with_size ? " " : "",
             color_names[o->color], shape_names[o->shape]);
}

void world_caption(const world_scene *s, cg_buf *out) {
    for (int i = 0; i < s->n; i++) {
        char d[64];
        describe_object(&s->obj[i], 1, d, sizeof d);
        if (i) cg_buf_adds(out, i + 1 == s->n ? " and " : " , ");
        cg_buf_addf(out, "a %s at the %s", d, cell_names[s->obj[i].cell]);
    }
}

static char *caption_str(const world_scene *s) {
    cg_buf b;
    cg_buf_init(&b);
    world_caption(s, &b);
    return cg_buf_steal(&b);
}

/* Fills the multiple-choice form: the correct entry of `space` and up to max_choices - 1 wrong
 * ones (those with wrong[i] set), in random order. */
static void make_choices(world_qa *qa, const char *const *space, int n_space, int correct,
                         const int *wrong, int max_choices, cg_rng *r) {
    int pool[16], np = 0;
    for (int i = 0; i < n_space; i++)
        if (i != correct && (!wrong || wrong[i])) pool[np++] = i;
    assert(np >= 1 && n_space <= 16);
    int most = max_choices - 1 < np ? max_choices - 1 : np;
    int n_wrong = 1 + (int)cg_rng_below(r, (uint32_t)most);
    cg_rng_shuffle(r, pool, np);
    int pick[DATA_MAX_CHOICES];
    pick[0] = correct;
    for (int i = 0; i < n_wrong; i++) pick[i + 1] = pool[i];
    qa->n_choices = n_wrong + 1;
    cg_rng_shuffle(r, pick, qa->n_choices);
    for (int i = 0; i < qa->n_choices; i++) {
        snprintf(qa->choices[i], sizeof qa->choices[i], "%s", space[pick[i]]);
        if (pick[i] == correct) qa->correct = i;
    }
    snprintf(qa->answer, sizeof qa->answer, "%s", space[correct]);
}

enum { Q_COLOR, Q_SHAPE, Q_SIZE, Q_POSITION, Q_COUNT, Q_EXIST, Q_RELATION, Q_DESCRIBE, Q_N };
static const char *const q_categories[Q_N] = {"color", "shape", "size", "position",
                                              "count", "existence", "relation", "describe"};

/* The relation of object a to object b: 0 above, 1 below, 2 left of, 3 right of; -1 when they
 * share neither a row nor a column (two relations would hold). */
static int relation_of(const world_object *a, const world_object *b) {
    int ra = a->cell / 3, ca = a->cell % 3, rb = b->cell / 3, cb = b->cell % 3;
    if (ca == cb) return ra < rb ? 0 : 1;
    if (ra == rb) return ca < cb ? 2 : 3;
    return -1;
}

/* Is there an object of this colour and shape? */
static int scene_has(const world_scene *s, int color, int shape) {
    for (int i = 0; i < s->n; i++)
        if (s->obj[i].color == color && s->obj[i].shape == shape) return 1;
    return 0;
}

static void q_instruct(const world_scene *s, int cat, int max_choices, cg_rng *r, world_qa *qa) {
    const world_object *o = &s->obj[cg_rng_below(r, (uint32_t)s->n)];
    char d[64];
    describe_object(o, 0, d, sizeof d);
    switch (cat) {
    case Q_COLOR:
        snprintf(qa->question, sizeof qa->question, "what color is the %s at the %s ?", shape_names[o->shape],
                 cell_names[o->cell]);
        make_choices(qa, color_names, WORLD_N_COLORS, o->color, NULL, max_choices, r);
        break;
    case Q_SHAPE:
        snprintf(qa->question, sizeof qa->question, "what shape is the %s object at the %s ?",
                 color_names[o->color], cell_names[o->cell]);
        make_choices(qa, shape_names, WORLD_N_SHAPES, o->shape, NULL, max_choices, r);
        break;
    case Q_SIZE:
        snprintf(qa->question, sizeof qa->question, "what size is the %s ?", d);
        make_choices(qa, size_names, WORLD_N_SIZES, o->size, NULL, max_choices, r);
        break;
    case Q_POSITION:
        snprintf(qa->question, sizeof qa->question, "where is the %s ?", d);
        make_choices(qa, cell_names, WORLD_N_CELLS, o->cell, NULL, max_choices, r);
        break;
    case Q_COUNT: {
        int kind = (int)cg_rng_below(r, 3), count = 0;
        if (kind == 0) {
            snprintf(qa->question, sizeof qa->question, "how many objects are there ?");
            count = s->n;
        } else if (kind == 1) {
            int color = (int)cg_rng_below(r, WORLD_N_COLORS);
            snprintf(qa->question, sizeof qa->question, "how many %s objects are there ?", color_names[color]);
            for (int i = 0; i < s->n; i++) count += s->obj[i].color == color;
        } else {
            int shape = (int)cg_rng_below(r, WORLD_N_SHAPES);
            snprintf(qa->question, sizeof qa->question, "how many %s are there ?", shape_plurals[shape]);
            for (int i = 0; i < s->n; i++) count += s->obj[i].shape == shape;
        }
        make_choices(qa, numbers, 5, count, NULL, max_choices, r);
        break;
    }
    case Q_EXIST: {
        int color = o->color, shape = o->shape;
        if (cg_rng_below(r, 2)) /* ask about an absent object half of the time */
            do {
                color = (int)cg_rng_below(r, WORLD_N_COLORS);
                shape = (int)cg_rng_below(r, WORLD_N_SHAPES);
            } while (scene_has(s, color, shape));
        snprintf(qa->question, sizeof qa->question, "is there a %s %s ?", color_names[color], shape_names[shape]);
        make_choices(qa, yes_no, 2, scene_has(s, color, shape) ? 0 : 1, NULL, max_choices, r);
        break;
    }
    case Q_RELATION: {
        assert(s->n >= 2);
        int a = (int)cg_rng_below(r, (uint32_t)s->n), b = (int)cg_rng_below(r, (uint32_t)s->n - 1);
        if (b >= a) b++;
        const world_object *oa = &s->obj[a], *ob = &s->obj[b];
        int rel = (int)cg_rng_below(r, 4), ra = oa->cell / 3, ca = oa->cell % 3, rb = ob->cell / 3, cb = ob->cell % 3;
        int holds = rel == 0 ? ra < rb : rel == 1 ? ra > rb : rel == 2 ? ca < cb : ca > cb;
        char da[64], db[64];
        describe_object(oa, 0, da, sizeof da);
        describe_object(ob, 0, db, sizeof db);
        snprintf(qa->question, sizeof qa->question, "is the %s %s the %s ?", da, relations[rel], db);
        make_choices(qa, yes_no, 2, holds ? 0 : 1, NULL, max_choices, r);
        break;
    }
    default: {
        snprintf(qa->question, sizeof qa->question, "describe the image .");
        char *cap = caption_str(s);
        snprintf(qa->answer, sizeof qa->answer, "%s", cap);
        free(cap);
        qa->n_choices = 0;  /* no multiple-choice form */
        break;
    }
    }
}

/* Returns 0 when the scene has no pair for a relation question of this family. */
static int q_bench(const world_scene *s, int cat, int max_choices, cg_rng *r, world_qa *qa) {
    const world_object *o = &s->obj[cg_rng_below(r, (uint32_t)s->n)];
    char d[64];
    describe_object(o, 0, d, sizeof d);
    switch (cat) {
    case Q_COLOR:
        snprintf(qa->question, sizeof qa->question, "which color does the %s at the %s have ?",
                 shape_names[o->shape], cell_names[o->cell]);
        make_choices(qa, color_names, WORLD_N_COLORS, o->color, NULL, max_choices, r);
        return 1;
    case Q_SHAPE:
        snprintf(qa->question, sizeof qa->question, "which shape can be seen at the %s ?", cell_names[o->cell]);
        make_choices(qa, shape_names, WORLD_N_SHAPES, o->shape, NULL, max_choices, r);
        return 1;
    case Q_SIZE:
        snprintf(qa->question, sizeof qa->question, "which size does the %s have ?", d);
        make_choices(qa, size_names, WORLD_N_SIZES, o->size, NULL, max_choices, r);
        return 1;
    case Q_POSITION:
        snprintf(qa->question, sizeof qa->question, "in which part of the image is the %s ?", d);
        make_choices(qa, cell_names, WORLD_N_CELLS, o->cell, NULL, max_choices, r);
        return 1;
    case Q_COUNT:
        if (cg_rng_below(r, 2)) {
            snprintf(qa->question, sizeof qa->question, "what is the number of objects in the image ?");
            make_choices(qa, numbers + 1, 4, s->n - 1, NULL, max_choices, r);
        } else {
            int shape = (int)cg_rng_below(r, WORLD_N_SHAPES), count = 0;
            for (int i = 0; i < s->n; i++) count += s->obj[i].shape == shape;
            snprintf(qa->question, sizeof qa->question, "what is the number of %s in the image ?",
                     shape_plurals[shape]);
            make_choices(qa, numbers, 4, count, NULL, max_choices, r);
        }
        return 1;
    case Q_EXIST: {
        /* "a red circle" for each (colour, shape); the present one is correct, absent ones wrong */
        char names[WORLD_N_COLORS * WORLD_N_SHAPES][40];
        const char *space[WORLD_N_COLORS * WORLD_N_SHAPES];
        int wrong[WORLD_N_COLORS * WORLD_N_SHAPES];
        for (int c = 0; c < WORLD_N_COLORS; c++)
            for (int sh = 0; sh < WORLD_N_SHAPES; sh++) {
                int i = c * WORLD_N_SHAPES + sh;
                snprintf(names[i], sizeof names[i], "a %s %s", color_names[c], shape_names[sh]);
                space[i] = names[i];
                wrong[i] = !scene_has(s, c, sh);
            }
        /* make_choices draws from at most 16 entries: take a random window of 16 that holds the
         * correct one */
        int correct = o->color * WORLD_N_SHAPES + o->shape, start = (int)cg_rng_below(r, 13);
        if (correct < start) start = correct;
        if (correct >= start + 16) start = correct - 15;
        snprintf(qa->question, sizeof qa->question, "which of these objects can be seen in the image ?");
        make_choices(qa, space + start, 16, correct - start, wrong + start, max_choices, r);
        return 1;
    }
    case Q_RELATION: {
        int pairs[6][2], np = 0;
        for (int a = 0; a < s->n; a++)
            for (int b = 0; b < s->n; b++)
                if (a != b && relation_of(&s->obj[a], &s->obj[b]) >= 0) pairs[np][0] = a, pairs[np++][1] = b;
        if (!np) return 0;
        int k = (int)cg_rng_below(r, (uint32_t)np);
        const world_object *oa = &s->obj[pairs[k][0]], *ob = &s->obj[pairs[k][1]];
        char da[64], db[64];
        describe_object(oa, 0, da, sizeof da);
        describe_object(ob, 0, db, sizeof db);
        snprintf(qa->question, sizeof qa->question, "where is the %s compared to the %s ?", da, db);
        make_choices(qa, relations, 4, relation_of(oa, ob), NULL, max_choices, r);
        return 1;
    }
    default:
        assert(0);
        return 0;
    }
}

void world_question(const world_scene *s, int family, int max_choices, cg_rng *r, world_qa *qa) {
    memset(qa, 0, sizeof *qa);
    assert(max_choices >= 2 && max_choices <= DATA_MAX_CHOICES);
    if (family == WORLD_Q_INSTRUCT) {
        /* weights: color 2, shape 2, size 1, position 2, count 2, existence 2, relation 2, describe 1 */
        static const int w[Q_N] = {2, 2, 1, 2, 2, 2, 2, 1};
        int cat;
        do {
            int x = (int)cg_rng_below(r, 14);
            for (cat = 0; x >= w[cat]; cat++) x -= w[cat];
        } while (cat == Q_RELATION && s->n < 2);
        qa->category = q_categories[cat];
        q_instruct(s, cat, max_choices, r, qa);
    } else {
        int cat;
        do cat = (int)cg_rng_below(r, Q_DESCRIBE);
        while (!q_bench(s, cat, max_choices, r, qa));
        qa->category = q_categories[cat];
    }
}

/* ---- writing a world ---- */

enum { ST_ALIGN = 1, ST_INSTRUCT, ST_CORPUS, ST_CORPUS_HELDOUT, ST_HELDOUT, ST_BENCH };

/* The rng of item i of a split: one independent stream each. */
static void item_rng(cg_rng *r, uint64_t seed, int split, int i) {
    cg_rng_seed2(r, seed, ((uint64_t)split << 40) + (uint64_t)i);
}

typedef struct {
    const char *root;       /* the temporary directory being filled */
    cJSON *files;           /* world.json's file list */
    cJSON *bench_files;     /* the benchmark manifest's file list */
    data_vocab vocab;
    int S;
} world_out;

/* Records a written file (path relative to the world root) in the file lists. */
static int out_record(world_out *w, const char *rel) {
    char *full = cg_path_join(w->root, rel), hex[65];
    uint64_t size;
    int rc = cg_sha256_file(full, hex, &size);
    free(full);
    if (rc) return rc;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "path", rel);
    cJSON_AddStringToObject(f, "sha256", hex);
    cJSON_AddNumberToObject(f, "size", (double)size);
    cJSON_AddItemToArray(w->files, f);
    if (!strncmp(rel, "benchmark/", 10) && strcmp(rel, "benchmark/manifest.json")) {
        assert(w->bench_files);
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "path", rel + 10);
        cJSON_AddStringToObject(b, "url", rel + 10);  /* relative to the manifest */
        cJSON_AddStringToObject(b, "sha256", hex);
        cJSON_AddNumberToObject(b, "size", (double)size);
        cJSON_AddItemToArray(w->bench_files, b);
    }
    return CG_OK;
}

/* Opens root/rel for writing, creating its directory. The whole world directory is published
 * at once by a rename, so single files need no temporary names of their own. */
static int out_open(world_out *w, const char *rel, FILE **fp) {
    char *full = cg_path_join(w->root, rel);
    char *slash = strrchr(full, '/');
    *slash = 0;
    int rc = cg_mkdir_p(full);
    *slash = '/';
    if (rc == CG_OK && !(*fp = fopen(full, "wb")))
        rc = cg_err(CG_EFAIL, "cannot create '%s': %s%s", full, strerror(errno), cg_write_hint(errno));
    free(full);
    return rc;
}

/* A failed write of root/rel: the file, the cause and what to do (nothing is published). */
static int out_fail(const world_out *w, const char *rel, int err) {
    return cg_err(CG_EFAIL, "cannot write '%s' in '%s': %s%s", rel, w->root, strerror(err),
                  cg_write_hint(err));
}

static int out_close(world_out *w, const char *rel, FILE *fp) {
    int bad = ferror(fp), e = errno;   /* errno of the failed write, if one failed */
    if (fclose(fp) != 0) e = errno, bad = 1;
    if (bad) return out_fail(w, rel, e);
    return out_record(w, rel);
}

static int out_put(world_out *w, const char *rel, const void *data, size_t len) {
    FILE *fp;
    int rc = out_open(w, rel, &fp);
    if (rc) return rc;
    if (len && fwrite(data, 1, len, fp) != len) {
        int e = errno;
        fclose(fp);
        return out_fail(w, rel, e);
    }
    return out_close(w, rel, fp);
}

static int out_npy(world_out *w, const char *rel, const uint8_t *rgb, int n) {
    FILE *fp;
    int rc = out_open(w, rel, &fp);
    if (rc) return rc;
    int64_t shape[4] = {n, w->S, w->S, 3};
    if (data_write_npy_u8(fp, rgb, 4, shape) != CG_OK) {   /* its message lacks the file's name */
        int e = errno;
        fclose(fp);
        return out_fail(w, rel, e);
    }
    return out_close(w, rel, fp);
}

/* Appends one JSON value as a line (compact, with cJSON's escaping). */
static void add_json_line(cg_buf *b, cJSON *j, const char *prefix, const char *suffix) {
    char *t = cJSON_PrintUnformatted(j);
    cg_buf_adds(b, prefix);
    cg_buf_adds(b, t);
    cg_buf_adds(b, suffix);
    cJSON_free(t);
}

static int count_tokens(const world_out *w, const char *text) {
    int n, unk;
    data_encode(&w->vocab, text, NULL, 0, &n, &unk);
    assert(unk == 0 && "the world wrote a word that is not in its vocabulary");
    (void)unk;
    return n;
}

/* Drops wrong choices until the prompt (plus the answer letter) fits WORLD_MAX_DOC_TOKENS.
 * Returns the prompt, or NULL when even two choices do not fit. */
static char *fit_mc_prompt(const world_out *w, world_qa *qa, const char *hint) {
    for (;;) {
        const char *ch[DATA_MAX_CHOICES];
        for (int i = 0; i < qa->n_choices; i++) ch[i] = qa->choices[i];
        char *p = data_mc_prompt(hint, qa->question, ch, qa->n_choices);
        if (count_tokens(w, p) + 1 <= WORLD_MAX_DOC_TOKENS) return p;
        free(p);
        if (qa->n_choices <= 2) return NULL;
        int drop = qa->n_choices - 1 == qa->correct ? qa->n_choices - 2 : qa->n_choices - 1;
        for (int i = drop; i + 1 < qa->n_choices; i++) memcpy(qa->choices[i], qa->choices[i + 1], sizeof qa->choices[i]);
        if (qa->correct > drop) qa->correct--;
        qa->n_choices--;
    }
}

static char *image_name(const char *split, int i) { return cg_fmt("%s/%06d", split, i); }

/* A set of strings (open addressing), for unique held-out captions. */
typedef struct {
    char **slot;
    size_t cap;
} str_set;

static void set_init(str_set *st, int n) {
    st->cap = 16;
    while (st->cap < 2 * (size_t)n) st->cap *= 2;
    st->slot = cg_calloc(st->cap, sizeof *st->slot);
}

/* Adds s (taking ownership; freed when already present); returns 1 if it was added. */
static int set_add(str_set *st, char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = s; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    for (size_t i = h & (st->cap - 1);; i = (i + 1) & (st->cap - 1)) {
        if (!st->slot[i]) {
            st->slot[i] = s;
            return 1;
        }
        if (!strcmp(st->slot[i], s)) {
            free(s);
            return 0;
        }
    }
}

static void set_free(str_set *st) {
    for (size_t i = 0; i < st->cap; i++) free(st->slot[i]);
    free(st->slot);
}

/* Images + captions (.jsonl) of the align and heldout splits. Held-out captions are made
 * unique within their split (retrieval needs one right answer per query). */
static int gen_captioned(world_out *w, const char *split, int st, uint64_t seed, int n, int unique) {
    size_t isz = (size_t)w->S * w->S * 3;
    uint8_t *rgb = cg_malloc(isz * (size_t)n);
    str_set seen = {0};
    if (unique) set_init(&seen, n);
    cg_buf lines;
    cg_buf_init(&lines);
    for (int i = 0; i < n; i++) {
        cg_rng r;
        item_rng(&r, seed, st, i);
        world_scene s;
        char *cap = NULL;
        for (int attempt = 0;; attempt++) {  /* redraw a duplicate (a bounded number of times) */
            world_scene_sample(&r, &s);
            free(cap);
            cap = caption_str(&s);
            if (!unique || attempt >= 1000 || set_add(&seen, cg_strdup(cap))) break;
        }
        count_tokens(w, cap);
        world_render(&s, w->S, &r, rgb + isz * (size_t)i);
        char *name = image_name(split, i);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "id", name);
        cJSON_AddStringToObject(j, "image", name);
        cJSON_AddStringToObject(j, "caption", cap);
        add_json_line(&lines, j, "", "\n");
        cJSON_Delete(j);
        free(name);
        free(cap);
    }
    char *npy = cg_fmt("images/%s.npy", split), *jsonl = cg_fmt("captions/%s.jsonl", split);
    int rc = out_npy(w, npy, rgb, n);
    if (rc == CG_OK) rc = out_put(w, jsonl, lines.data, lines.len);
    free(npy);
    free(jsonl);
    if (unique) set_free(&seen);
    free(rgb);
    cg_buf_free(&lines);
    return rc;
}

/* Images + LLaVA conversations of the instruct split (one question per image). */
static int gen_instruct(world_out *w, uint64_t seed, int n) {
    size_t isz = (size_t)w->S * w->S * 3;
    uint8_t *rgb = cg_malloc(isz * (size_t)n);
    cg_buf out;
    cg_buf_init(&out);
    cg_buf_adds(&out, "[\n");
    for (int i = 0; i < n; i++) {
        cg_rng r;
        item_rng(&r, seed, ST_INSTRUCT, i);
        world_scene s;
        world_scene_sample(&r, &s);
        world_render(&s, w->S, &r, rgb + isz * (size_t)i);
        world_qa qa;
        world_question(&s, WORLD_Q_INSTRUCT, 5, &r, &qa);
        count_tokens(w, qa.question);
        count_tokens(w, qa.answer);
        char *name = image_name("instruct", i), *human = cg_fmt("<image>\n%s", qa.question);
        cJSON *j = cJSON_CreateObject(), *conv = cJSON_CreateArray(), *t;
        cJSON_AddStringToObject(j, "id", name);
        cJSON_AddStringToObject(j, "image", name);
        cJSON_AddItemToArray(conv, t = cJSON_CreateObject());
        cJSON_AddStringToObject(t, "from", "human");
        cJSON_AddStringToObject(t, "value", human);
        cJSON_AddItemToArray(conv, t = cJSON_CreateObject());
        cJSON_AddStringToObject(t, "from", "gpt");
        cJSON_AddStringToObject(t, "value", qa.answer);
        cJSON_AddItemToObject(j, "conversations", conv);
        add_json_line(&out, j, "", i + 1 < n ? ",\n" : "\n");
        cJSON_Delete(j);
        free(name);
        free(human);
    }
    cg_buf_adds(&out, "]\n");
    int rc = out_npy(w, "images/instruct.npy", rgb, n);
    if (rc == CG_OK) rc = out_put(w, "instruct/conversations.json", out.data, out.len);
    free(rgb);
    cg_buf_free(&out);
    return rc;
}

/* One corpus document about a scene: its caption, then an open question and answer or a
 * multiple-choice question in the benchmark's prompt layout with the caption as context. */
static void corpus_doc(const world_out *w, const world_scene *s, cg_rng *r, cg_buf *out) {
    char *cap = caption_str(s);
    int kind = (int)cg_rng_below(r, 20);
    world_qa qa;
    if (kind >= 9) {  /* multiple choice: 30 % benchmark templates, 25 % instruction templates */
        do world_question(s, kind < 15 ? WORLD_Q_BENCH : WORLD_Q_INSTRUCT, 5, r, &qa);
        while (qa.n_choices == 0);
        char *p = fit_mc_prompt(w, &qa, cap);
        if (p) {
            cg_buf_addf(out, "%s %s\n", p, data_mc_letter(qa.correct));
            free(p);
            free(cap);
            return;
        }
        kind = 2;  /* too long even with two options: the open form instead */
    }
    if (kind < 2) {
        cg_buf_addf(out, "%s .\n", cap);
    } else {
        do world_question(s, WORLD_Q_INSTRUCT, 5, r, &qa);
        while (qa.n_choices == 0);
        char *doc = cg_fmt("%s . %s %s .", cap, qa.question, qa.answer);
        if (count_tokens(w, doc) > WORLD_MAX_DOC_TOKENS) {
            free(doc);
            doc = cg_fmt("%s %s .", qa.question, qa.answer);
        }
        cg_buf_addf(out, "%s\n", doc);
        free(doc);
    }
    free(cap);
}

static int gen_corpus(world_out *w, const char *rel, int st, uint64_t seed, int n) {
    cg_buf out;
    cg_buf_init(&out);
    for (int i = 0; i < n; i++) {
        cg_rng r;
        item_rng(&r, seed, st, i);
        world_scene s;
        world_scene_sample(&r, &s);
        corpus_doc(w, &s, &r, &out);
    }
    int rc = out_put(w, rel, out.data, out.len);
    cg_buf_free(&out);
    return rc;
}

static const char *skill_of(const char *category) {
    static const char *const map[][2] = {
        {"color", "identify colors"},     {"shape", "identify shapes"},     {"size", "compare sizes"},
        {"position", "locate objects"},   {"count", "count objects"},       {"existence", "find objects"},
        {"relation", "spatial relations"}};
    for (size_t i = 0; i < CG_ARRAY_LEN(map); i++)
        if (!strcmp(map[i][0], category)) return map[i][1];
    assert(0);
    return "";
}

/* The benchmark in ScienceQA's schema and layout, with its manifest. One problem in ten has no
 * image and describes its scene in the hint instead (as ScienceQA's text-only problems do). */
static int gen_bench(world_out *w, uint64_t seed, int n) {
    int rc = CG_OK;
    uint8_t *rgb = cg_malloc((size_t)w->S * w->S * 3);
    cg_buf png, probs;
    cg_buf_init(&png);
    cg_buf_init(&probs);
    cg_buf_adds(&probs, "{\n");
    cJSON *val = cJSON_CreateArray(), *test = cJSON_CreateArray();
    for (int i = 0; i < n && rc == CG_OK; i++) {
        char pid[16];
        snprintf(pid, sizeof pid, "%d", i + 1);
        cg_rng r;
        item_rng(&r, seed, ST_BENCH, i);
        world_scene s;
        world_scene_sample(&r, &s);
        int text_only = cg_rng_below(&r, 10) == 0;
        char *cap = caption_str(&s), *hint = text_only ? cg_fmt("%s .", cap) : cg_strdup("");
        world_qa qa;
        char *prompt;
        do {
            world_question(&s, WORLD_Q_BENCH, 5, &r, &qa);
            prompt = fit_mc_prompt(w, &qa, hint);
        } while (!prompt);
        free(prompt);
        const char *split = i % 6 == 5 ? "val" : "test";
        cJSON_AddItemToArray(i % 6 == 5 ? val : test, cJSON_CreateString(pid));
        cJSON *p = cJSON_CreateObject(), *choices = cJSON_CreateArray();
        cJSON_AddStringToObject(p, "question", qa.question);
        for (int k = 0; k < qa.n_choices; k++) cJSON_AddItemToArray(choices, cJSON_CreateString(qa.choices[k]));
        cJSON_AddItemToObject(p, "choices", choices);
        cJSON_AddNumberToObject(p, "answer", qa.correct);
        cJSON_AddStringToObject(p, "hint", hint);
        if (text_only) cJSON_AddNullToObject(p, "image");
        else cJSON_AddStringToObject(p, "image", "image.png");
        cJSON_AddStringToObject(p, "task", "closed choice");
        cJSON_AddStringToObject(p, "grade", "grade1");
        cJSON_AddStringToObject(p, "subject", "natural science");
        cJSON_AddStringToObject(p, "topic", "shapes and colors");
        cJSON_AddStringToObject(p, "category", qa.category);
        cJSON_AddStringToObject(p, "skill", skill_of(qa.category));
        cJSON_AddStringToObject(p, "lecture", "");
        char *sol = cg_fmt("the image shows %s . so the answer is %s .", cap, qa.choices[qa.correct]);
        cJSON_AddStringToObject(p, "solution", sol);
        cJSON_AddStringToObject(p, "split", split);
        char *prefix = cg_fmt("\"%s\": ", pid);
        add_json_line(&probs, p, prefix, i + 1 < n ? ",\n" : "\n");
        free(prefix);
        free(sol);
        cJSON_Delete(p);
        if (!text_only) {
            world_render(&s, w->S, &r, rgb);
            png.len = 0;
            char *rel = cg_fmt("benchmark/images/%s/image.png", pid);
            rc = cg_png_encode_rgb(rgb, w->S, w->S, &png);
            if (rc == CG_OK) rc = out_put(w, rel, png.data, png.len);
            free(rel);
        }
        free(cap);
        free(hint);
    }
    cg_buf_adds(&probs, "}\n");
    cJSON *splits = cJSON_CreateObject(), *mv = cJSON_CreateArray(), *mt = cJSON_CreateArray();
    for (int k = 0; k < cJSON_GetArraySize(val) && k < 50; k++)
        cJSON_AddItemToArray(mv, cJSON_Duplicate(cJSON_GetArrayItem(val, k), 1));
    for (int k = 0; k < cJSON_GetArraySize(test) && k < 100; k++)
        cJSON_AddItemToArray(mt, cJSON_Duplicate(cJSON_GetArrayItem(test, k), 1));
    cJSON_AddItemToObject(splits, "train", cJSON_CreateArray());
    cJSON_AddItemToObject(splits, "val", val);
    cJSON_AddItemToObject(splits, "test", test);
    cJSON_AddItemToObject(splits, "trainval", cJSON_Duplicate(val, 1));
    cJSON_AddItemToObject(splits, "minitrain", cJSON_CreateArray());
    cJSON_AddItemToObject(splits, "minival", mv);
    cJSON_AddItemToObject(splits, "minitest", mt);
    char *st = cJSON_PrintUnformatted(splits);
    cg_buf sb;
    cg_buf_init(&sb);
    cg_buf_adds(&sb, st);
    cg_buf_adds(&sb, "\n");
    cJSON_free(st);
    cJSON_Delete(splits);
    /* the manifest lists problems.json and pid_splits.json first, then the images */
    cJSON *imgs = w->bench_files;
    w->bench_files = cJSON_CreateArray();
    if (rc == CG_OK) rc = out_put(w, "benchmark/problems.json", probs.data, probs.len);
    if (rc == CG_OK) rc = out_put(w, "benchmark/pid_splits.json", sb.data, sb.len);
    cJSON *img;
    while ((img = cJSON_DetachItemFromArray(imgs, 0))) cJSON_AddItemToArray(w->bench_files, img);
    cJSON_Delete(imgs);
    cg_buf_free(&sb);
    cg_buf_free(&png);
    cg_buf_free(&probs);
    free(rgb);
    return rc;
}

static int write_manifest(world_out *w, const world_options *o) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", "cgvlm-world");
    char *version = cg_fmt("%d.seed%llu.s%d.n%d", WORLD_FORMAT_VERSION, (unsigned long long)o->seed,
                           o->image_size, o->n_bench);
    cJSON_AddStringToObject(m, "version", version);
    cJSON_AddStringToObject(m, "format", "scienceqa");
    cJSON_AddItemToObject(m, "files", w->bench_files);
    w->bench_files = NULL;
    char *t = cJSON_Print(m);
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, t);
    cg_buf_adds(&b, "\n");
    cJSON_free(t);
    cJSON_Delete(m);
    free(version);
    int rc = out_put(w, "benchmark/manifest.json", b.data, b.len);
    cg_buf_free(&b);
    return rc;
}

static int write_world_json(world_out *w, const world_options *o) {
    cJSON *j = cJSON_CreateObject(), *opt = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "cgvlm-world");
    cJSON_AddNumberToObject(j, "format_version", WORLD_FORMAT_VERSION);
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddItemToObject(j, "seed", cJSON_CreateRaw(seed));  /* exact for any 64-bit seed */
    cJSON_AddNumberToObject(opt, "image_size", o->image_size);
    cJSON_AddNumberToObject(opt, "n_align", o->n_align);
    cJSON_AddNumberToObject(opt, "n_instruct", o->n_instruct);
    cJSON_AddNumberToObject(opt, "n_corpus", o->n_corpus);
    cJSON_AddNumberToObject(opt, "n_corpus_heldout", o->n_corpus_heldout);
    cJSON_AddNumberToObject(opt, "n_bench", o->n_bench);
    cJSON_AddNumberToObject(opt, "n_heldout", o->n_heldout);
    cJSON_AddItemToObject(j, "options", opt);
    cJSON_AddNumberToObject(j, "vocab_size", w->vocab.n);
    cJSON_AddNumberToObject(j, "max_doc_tokens", WORLD_MAX_DOC_TOKENS);
    cJSON_AddStringToObject(j, "image_layout", "(N, S, S, 3) uint8, row-major RGB");
    cJSON_AddStringToObject(j, "mc_prompt", "context: HINT question: Q options: A. x B. y ... answer:");
    cJSON_AddItemToObject(j, "files", w->files);
    w->files = NULL;
    char *t = cJSON_Print(j);
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, t);
    cg_buf_adds(&b, "\n");
    cJSON_free(t);
    cJSON_Delete(j);
    FILE *fp;
    int rc = out_open(w, "world.json", &fp);
    if (rc == CG_OK) {
        int e = 0;
        if (fwrite(b.data, 1, b.len, fp) != b.len) e = errno;
        if (fclose(fp) != 0 && !e) e = errno;
        if (e) rc = out_fail(w, "world.json", e);
    }
    cg_buf_free(&b);
    return rc;
}

/* 1 if dir has entries, 0 if empty, -1 if it does not exist or is not a directory. */
static int dir_nonempty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int any = 0;
    while (!any && (e = readdir(d))) any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return any;
}

static int check_target(const char *dir, int force) {
    if (cg_file_exists(dir) && !cg_is_dir(dir))
        return cg_err(CG_EUSER, "'%s' exists and is not a directory; choose another --out", dir);
    if (!force && dir_nonempty(dir) == 1)
        return cg_err(CG_EUSER, "'%s' exists and is not empty; choose another --out or pass --force to replace it", dir);
    return CG_OK;
}

/* Moves the finished temporary directory into place. With an existing world (--force) the two
 * are exchanged atomically and the old one is removed after. */
static int publish(const char *tmp, const char *dir, int force) {
    int rc = check_target(dir, force);
    if (rc) return rc;
    int state = dir_nonempty(dir);
    if (state == 0 && rmdir(dir) != 0)
        return cg_err(CG_EFAIL, "cannot replace empty directory '%s': %s", dir, strerror(errno));
    if (state == 1) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) != 0)
            return cg_err(CG_EFAIL, "cannot replace '%s': %s", dir, strerror(errno));
        cg_rm_rf(tmp);  /* now the old world */
        return CG_OK;
    }
    if (rename(tmp, dir) != 0) return cg_err(CG_EFAIL, "cannot rename '%s' to '%s': %s", tmp, dir, strerror(errno));
    return CG_OK;
}

/* SIGINT/SIGTERM/SIGHUP during generation: stop after the current phase and remove the
 * temporary directory, so an interrupted run leaves nothing behind. */
static volatile sig_atomic_t world_stop;
static void on_stop(int sig) { world_stop = sig; }

static int phase_done(int rc) {
    if (rc == CG_OK && world_stop)
        return cg_err(CG_EFAIL, "interrupted by signal %d; nothing was written", (int)world_stop);
    return rc;
}

int world_generate(const char *dir, const world_options *o, int force, double *seconds) {
    double t0 = cg_mono_time();
    int rc = check_target(dir, force);
    if (rc) return rc;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    char *base = cg_strndup(dir, dl), *tmp = cg_fmt("%s.tmp-XXXXXX", base);
    if (!mkdtemp(tmp)) {
        rc = cg_err(CG_EFAIL, "cannot create a temporary directory beside '%s': %s%s", dir, strerror(errno),
                    cg_write_hint(errno));
        free(tmp);
        free(base);
        return rc;
    }
    chmod(tmp, 0755);
    static const int stop_signals[3] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction act, old_act[3];
    memset(&act, 0, sizeof act);
    act.sa_handler = on_stop;
    sigemptyset(&act.sa_mask);
    world_stop = 0;
    for (int i = 0; i < 3; i++) sigaction(stop_signals[i], &act, &old_act[i]);
    world_out w = {.root = tmp, .files = cJSON_CreateArray(), .bench_files = cJSON_CreateArray(), .S = o->image_size};
    int nv;
    const char *const *words = world_vocab_words(&nv);
    rc = data_vocab_from_words(words, nv, &w.vocab);
    assert(rc == CG_OK);
    cg_buf vb;
    cg_buf_init(&vb);
    for (int i = 0; i < nv; i++) cg_buf_addf(&vb, "%s\n", words[i]);
    rc = out_put(&w, "vocab.txt", vb.data, vb.len);
    cg_buf_free(&vb);
    if (rc == CG_OK) rc = phase_done(gen_captioned(&w, "align", ST_ALIGN, o->seed, o->n_align, 0));
    if (rc == CG_OK) rc = phase_done(gen_captioned(&w, "heldout", ST_HELDOUT, o->seed, o->n_heldout, 1));
    if (rc == CG_OK) rc = phase_done(gen_instruct(&w, o->seed, o->n_instruct));
    if (rc == CG_OK) rc = phase_done(gen_corpus(&w, "corpus/train.txt", ST_CORPUS, o->seed, o->n_corpus));
    if (rc == CG_OK)
        rc = phase_done(gen_corpus(&w, "corpus/heldout.txt", ST_CORPUS_HELDOUT, o->seed, o->n_corpus_heldout));
    if (rc == CG_OK) rc = phase_done(gen_bench(&w, o->seed, o->n_bench));
    if (rc == CG_OK) rc = write_manifest(&w, o);
    if (rc == CG_OK) rc = phase_done(write_world_json(&w, o));
    if (rc == CG_OK) {
        /* every file is durable before the directory appears: a failed sync (an I/O error, a
         * full disk on delayed allocation) publishes nothing */
        int fd = open(tmp, O_RDONLY | O_DIRECTORY);
        if (fd < 0 || syncfs(fd) != 0) {
            int e = errno;
            rc = cg_err(CG_EFAIL, "cannot sync the new world '%s': %s%s", tmp, strerror(e), cg_write_hint(e));
        }
        if (fd >= 0) close(fd);
        if (rc == CG_OK) rc = publish(tmp, base, force);
        if (rc == CG_OK) {
            char *parent = strrchr(base, '/') ? cg_strndup(base, (size_t)(strrchr(base, '/') - base)) : cg_strdup(".");
            cg_fsync_dir(parent[0] ? parent : "/");
            free(parent);
        }
    }
    if (rc) cg_rm_rf(tmp);
    for (int i = 0; i < 3; i++) sigaction(stop_signals[i], &old_act[i], NULL);
    cJSON_Delete(w.files);
    cJSON_Delete(w.bench_files);
    data_vocab_free(&w.vocab);
    free(tmp);
    free(base);
    if (seconds) *seconds = cg_mono_time() - t0;
    return rc;
}
