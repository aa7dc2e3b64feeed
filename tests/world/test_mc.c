/* test_mc.c: multiple-choice instruction turns (data_convs_mc, core/data.h): the turn is the
 * benchmark's letter prompt byte for byte (through the evaluator's own prompt builder, sqa_prompt)
 * and token for token (through the training batches), the letter target names the original answer,
 * the mixing share holds in every data-fraction subset, the same seed gives the same data, a
 * generated world's turns contain no benchmark question or image, and bad shares are refused. */
#include "core/batch.h"
#include "core/data.h"
#include "evaluators/scienceqa.h"
#include "experiments/world.h"
#include "tests/test.h"
#include "util/fs.h"
#include "util/png.h"
#include "util/sha256.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *tmpdir;

static int msg_has(const char *a) {
    const char *m = cg_errmsg();
    int ok = m && strstr(m, a);
    if (!ok) fprintf(stderr, "  message was: %s\n", m ? m : "(none)");
    return ok;
}

static data_vocab world_vocab(void) {
    int n;
    const char *const *w = world_vocab_words(&n);
    data_vocab v;
    CHECK(data_vocab_from_words(w, n, &v) == CG_OK);
    return v;
}

/* A conversation set from (question, answer) pairs, image i % n_images. */
static void make_convs(data_convs *c, const char *const (*qa)[2], int n) {
    c->n = n;
    c->items = cg_calloc((size_t)n, sizeof *c->items);
    for (int i = 0; i < n; i++) {
        c->items[i].id = cg_fmt("c%d", i);
        c->items[i].image = cg_fmt("instruct/%06d", i % 4);
        c->items[i].image_index = i % 4;
        c->items[i].prompt = cg_strdup(qa[i][0]);
        c->items[i].answer = cg_strdup(qa[i][1]);
    }
}

/* Reads the options back out of "question: Q options: A. x B. y answer:" (the test's own parser:
 * option letters are the only capitals). Returns the number of options, *q the question. */
static int parse_mc(const char *prompt, char **q, char **opt) {
    const char *o = strstr(prompt, " options:"), *end = strstr(prompt, " answer:");
    if (strncmp(prompt, "question: ", 10) || !o || !end) return 0;
    *q = cg_strndup(prompt + 10, (size_t)(o - prompt - 10));
    int n = 0;
    const char *p = o + 9;
    while (p < end && n < DATA_MAX_CHOICES) {
        if (p[0] != ' ' || p[1] != "ABCDE"[n] || p[2] != '.' || p[3] != ' ') break;
        p += 4;
        const char *next = end;
        for (const char *s = p; s < end; s++)
            if (s[0] == ' ' && s[1] >= 'A' && s[1] <= 'E' && s[2] == '.') {
                next = s;
                break;
            }
        opt[n++] = cg_strndup(p, (size_t)(next - p));
        p = next;
    }
    return n;
}

/* The format, the letter target and the batches, on a hand-made set. */
static void test_format(void) {
    data_vocab v = world_vocab();
    static const char *const qa[][2] = {
        {"what color is the circle at the top ?", "red"},
        {"what color is the square at the center ?", "blue"},
        {"what color is the cross at the left ?", "green"},
        {"what color is the triangle at the right ?", "yellow"},
        {"what color is the circle at the bottom ?", "purple"},
        {"what color is the square at the top left ?", "orange"},
        {"how many objects are there ?", "two"},
        {"how many crosses are there ?", "zero"},
        {"where is the red circle ?", "top left"},
        {"where is the blue square ?", "bottom right"},
        {"is there a red cross ?", "yes"},              /* its kind has one answer only: no form */
        {"describe the image .", "a small red circle at the top left"},  /* too long an option */
        {"describe the image .", "a large blue square at the center"},
    };
    const int n = (int)CG_ARRAY_LEN(qa);
    data_convs c = {0}, orig = {0};
    make_convs(&c, qa, n);
    make_convs(&orig, qa, n);
    int order[64], n_mc = -1;
    uint8_t is_mc[64];
    for (int i = 0; i < n; i++) order[i] = n - 1 - i;
    CHECK(data_convs_mc(&c, order, n, 1.0, 7, &v, 48, is_mc, &n_mc) == CG_OK);
    CHECK(n_mc == 10);
    for (int i = 0; i < n; i++) CHECK(is_mc[i] == (i < 10));
    uint8_t img[4 * 8 * 8 * 3] = {0};
    data_u8_array images = {img, 4, {4, 8, 8, 3}, sizeof img};
    batch_set bs;
    CHECK(batch_instruct(&bs, &v, &c, &images, 48) == CG_OK);
    for (int i = 0; i < n; i++) {
        if (!is_mc[i]) {  /* untouched */
            CHECK_STR(c.items[i].prompt, orig.items[i].prompt);
            CHECK_STR(c.items[i].answer, orig.items[i].answer);
            continue;
        }
        char *q = NULL, *opt[DATA_MAX_CHOICES] = {0};
        int k = parse_mc(c.items[i].prompt, &q, opt);
        CHECK(k >= 2 && k <= DATA_MAX_CHOICES);
        if (k < 2) continue;
        CHECK_STR(q, orig.items[i].prompt);
        /* the evaluator's prompt of the same problem is the same text, byte for byte */
        sqa_problem p = {0};
        p.question = q;
        p.hint = "";
        p.n_choices = k;
        for (int j = 0; j < k; j++) p.choices[j] = opt[j];
        char *eval_prompt = sqa_prompt(&p);
        CHECK_STR(c.items[i].prompt, eval_prompt);
        /* the answer is the letter of the original answer; the options are distinct answers of
         * the same kind of question */
        int letter = -1;
        for (int j = 0; j < k; j++) {
            if (!strcmp(opt[j], orig.items[i].answer)) letter = j;
            for (int j2 = 0; j2 < j; j2++) CHECK(strcmp(opt[j], opt[j2]));
            int same_kind = 0;
            for (int i2 = 0; i2 < n; i2++)
                same_kind |= !strcmp(orig.items[i2].answer, opt[j]) && !strncmp(orig.items[i2].prompt, q, 8);
            CHECK(same_kind);
        }
        CHECK(letter >= 0);
        if (letter >= 0) CHECK_STR(c.items[i].answer, data_mc_letter(letter));
        /* tokens: the training row is the evaluator's prompt, then the letter; the loss falls on
         * the letter and <eos> only */
        int ein[64], eT = 0;
        CHECK(data_seq_prompt(&v, eval_prompt, 64, ein, &eT, NULL) == CG_OK);
        const int *in = bs.inputs + (size_t)i * bs.T, *tg = bs.targets + (size_t)i * bs.T;
        CHECK(eT + 1 <= bs.T && !memcmp(in, ein, sizeof(int) * (size_t)eT));
        if (letter >= 0 && eT + 1 <= bs.T) {
            CHECK(in[eT] == data_mc_letter_id(&v, letter));
            for (int t = 0; t < eT - 1; t++) CHECK(tg[t] == DATA_IGNORE);
            CHECK(tg[eT - 1] == data_mc_letter_id(&v, letter) && tg[eT] == DATA_EOS);
        }
        free(eval_prompt);
        free(q);
        for (int j = 0; j < k; j++) free(opt[j]);
    }
    batch_free(&bs);
    /* share 0 changes nothing */
    data_convs_free(&c);
    make_convs(&c, qa, n);
    CHECK(data_convs_mc(&c, order, n, 0.0, 7, &v, 48, is_mc, &n_mc) == CG_OK && n_mc == 0);
    for (int i = 0; i < n; i++) CHECK(!strcmp(c.items[i].prompt, qa[i][0]) && !strcmp(c.items[i].answer, qa[i][1]) && !is_mc[i]);
    /* a short context drops options (down to two) and then the form */
    CHECK(data_convs_mc(&c, order, n, 1.0, 7, &v, 20, is_mc, &n_mc) == CG_OK);
    for (int i = 0; i < n; i++) {
        if (!is_mc[i]) continue;
        int len = 0;
        data_encode(&v, c.items[i].prompt, NULL, 0, &len, NULL);
        CHECK(len + 2 <= 20);
        char *q = NULL, *opt[DATA_MAX_CHOICES] = {0};
        int k = parse_mc(c.items[i].prompt, &q, opt);
        CHECK(k >= 2);
        free(q);
        for (int j = 0; j < k; j++) free(opt[j]);
    }
    CHECK(n_mc >= 1 && n_mc < 10);
    /* bad shares; no item with a form */
    data_convs_free(&c);
    make_convs(&c, qa, n);
    CHECK(data_convs_mc(&c, order, n, 1.5, 7, &v, 48, NULL, NULL) == CG_EUSER && msg_has("out of range"));
    CHECK(data_convs_mc(&c, order, n, -0.1, 7, &v, 48, NULL, NULL) == CG_EUSER && msg_has("[0, 1]"));
    CHECK(data_convs_mc(&c, order, n, NAN, 7, &v, 48, NULL, NULL) == CG_EUSER);
    int order2[2] = {0, 1};
    data_convs two = {0};
    make_convs(&two, qa + 11, 2);
    CHECK(data_convs_mc(&two, order2, 2, 0.5, 7, &v, 48, NULL, NULL) == CG_EUSER &&
          msg_has("no instruction item has a multiple-choice form"));
    CHECK(!strcmp(two.items[0].prompt, qa[11][0]));  /* left as it was */
    data_convs_free(&two);
    data_convs_free(&c);
    data_convs_free(&orig);
    data_vocab_free(&v);
}

/* Hashes of (S,S,3) images for the leakage check. */
static void image_hash(const uint8_t *rgb, size_t n, char out[65]) { cg_sha256_hex(rgb, n, out); }

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int in_sorted(char **set, int n, const char *s) {
    return bsearch(&s, set, (size_t)n, sizeof *set, cmp_str) != NULL;
}

/* The benchmark's prompts, questions and image hashes (every split). */
typedef struct {
    char **prompts, **questions, **images;
    int n, n_img;
} bench_index;

static void bench_load(const char *world, bench_index *b) {
    memset(b, 0, sizeof *b);
    char *dir = cg_path_join(world, "benchmark");
    const char *splits[] = {"test", "val"};
    for (int s = 0; s < 2; s++) {
        sqa_set set;
        CHECK(sqa_load(dir, splits[s], &set) == CG_OK);
        b->prompts = cg_realloc(b->prompts, sizeof(char *) * (size_t)(b->n + set.n));
        b->questions = cg_realloc(b->questions, sizeof(char *) * (size_t)(b->n + set.n));
        b->images = cg_realloc(b->images, sizeof(char *) * (size_t)(b->n_img + set.n));
        for (int i = 0; i < set.n; i++) {
            const sqa_problem *p = &set.items[i];
            b->prompts[b->n] = sqa_prompt(p);
            b->questions[b->n++] = cg_strdup(p->question);
            char *path = sqa_image_path(&set, p);
            if (path) {
                uint8_t *rgb = NULL;
                int w = 0, h = 0;
                CHECK(cg_png_read_rgb(path, &rgb, &w, &h) == CG_OK);
                char hx[65];
                image_hash(rgb, (size_t)w * h * 3, hx);
                b->images[b->n_img++] = cg_strdup(hx);
                free(rgb);
                free(path);
            }
        }
        sqa_free(&set);
    }
    qsort(b->prompts, (size_t)b->n, sizeof(char *), cmp_str);
    qsort(b->questions, (size_t)b->n, sizeof(char *), cmp_str);
    qsort(b->images, (size_t)b->n_img, sizeof(char *), cmp_str);
    free(dir);
}

static void bench_free(bench_index *b) {
    for (int i = 0; i < b->n; i++) free(b->prompts[i]), free(b->questions[i]);
    for (int i = 0; i < b->n_img; i++) free(b->images[i]);
    free(b->prompts), free(b->questions), free(b->images);
}

/* How many instruction items repeat a benchmark prompt or question, or show a benchmark image. */
static int leaks(const data_convs *c, const data_u8_array *images, const bench_index *b) {
    int n = 0;
    size_t isz = (size_t)images->shape[1] * images->shape[2] * 3;
    for (int i = 0; i < c->n; i++) {
        const char *prompt = c->items[i].prompt, *q = prompt;
        char *mq = NULL, *opt[DATA_MAX_CHOICES] = {0};
        int k = parse_mc(prompt, &mq, opt);
        if (k) q = mq;
        char hx[65];
        image_hash(images->data + isz * (size_t)c->items[i].image_index, isz, hx);
        n += in_sorted(b->prompts, b->n, prompt) || in_sorted(b->questions, b->n, q) ||
             in_sorted(b->images, b->n_img, hx) || strncmp(c->items[i].image, "instruct/", 9);
        free(mq);
        for (int j = 0; j < k; j++) free(opt[j]);
    }
    return n;
}

/* A generated world: shares, determinism, no leakage. */
static void test_world(void) {
    char *world = cg_path_join(tmpdir, "world");
    world_options o;
    world_options_default(&o);
    o.seed = 3;
    o.n_align = 20, o.n_instruct = 600, o.n_corpus = 20, o.n_corpus_heldout = 5, o.n_bench = 120, o.n_heldout = 5;
    CHECK(world_generate(world, &o, 1, NULL) == CG_OK);
    data_vocab v;
    char *vp = cg_path_join(world, "vocab.txt"), *cp = cg_path_join(world, "instruct/conversations.json");
    char *ip = cg_path_join(world, "images/instruct.npy");
    CHECK(data_vocab_load(vp, &v) == CG_OK);
    data_u8_array images;
    CHECK(data_load_npy_u8(ip, &images) == CG_OK);
    data_convs c, again;
    CHECK(data_load_conversations(cp, "instruct", images.shape[0], &c) == CG_OK);
    int N = c.n, *order = cg_malloc(sizeof(int) * (size_t)N), n_sub;
    uint8_t *is_mc = cg_malloc((size_t)N), *is_mc2 = cg_malloc((size_t)N);
    CHECK(data_fraction_subset(N, 1.0, 5, order, &n_sub) == CG_OK);
    /* the share holds in every prefix of the permutation, i.e. every data-fraction subset */
    const double shares[] = {0.1, 0.25, 0.3, 0.5, 1.0};
    for (size_t s = 0; s < CG_ARRAY_LEN(shares); s++) {
        data_convs_free(&c);
        CHECK(data_load_conversations(cp, "instruct", images.shape[0], &c) == CG_OK);
        int n_mc = 0;
        CHECK(data_convs_mc(&c, order, N, shares[s], 5, &v, 48, is_mc, &n_mc) == CG_OK);
        int turned = 0, with_form = 0, ok = 1, untouched_ok = 1;
        for (int k = 0; k < N; k++) {
            int i = order[k];
            turned += is_mc[i];
            /* an item with a form: a turned one, or one whose kind has several short answers */
            with_form += is_mc[i] || (strncmp(c.items[i].prompt, "describe", 8) != 0);
            ok &= fabs(turned - shares[s] * with_form) < 1.0 + 1e-9;
            if (!is_mc[i]) untouched_ok &= strncmp(c.items[i].prompt, "question:", 9) != 0;
        }
        CHECK(ok && untouched_ok && turned == n_mc);
        /* in the world only "describe the image ." lacks a form, about 1 item in 14 */
        CHECK(with_form > 0.85 * N && with_form < N);
        /* the same seed: the same data; another data seed: other options */
        CHECK(data_load_conversations(cp, "instruct", images.shape[0], &again) == CG_OK);
        CHECK(data_convs_mc(&again, order, N, shares[s], 5, &v, 48, is_mc2, NULL) == CG_OK);
        int same = !memcmp(is_mc, is_mc2, (size_t)N);
        for (int i = 0; i < N; i++)
            same &= !strcmp(c.items[i].prompt, again.items[i].prompt) && !strcmp(c.items[i].answer, again.items[i].answer);
        CHECK(same);
        data_convs_free(&again);
        CHECK(data_load_conversations(cp, "instruct", images.shape[0], &again) == CG_OK);
        CHECK(data_convs_mc(&again, order, N, shares[s], 6, &v, 48, NULL, NULL) == CG_OK);
        int differ = 0;
        for (int i = 0; i < N; i++) differ += is_mc[i] && strcmp(c.items[i].prompt, again.items[i].prompt);
        CHECK(differ > 0);
        data_convs_free(&again);
        /* the letters are spread over the positions (not always A) */
        int per_letter[DATA_MAX_CHOICES] = {0};
        for (int i = 0; i < N; i++)
            if (is_mc[i]) per_letter[c.items[i].answer[0] - 'A']++;
        CHECK(per_letter[0] < n_mc && per_letter[1] > 0);
    }
    /* no leakage: with every item turned, no instruction item repeats a benchmark prompt or
     * question or shows a benchmark image; the check itself finds a planted benchmark question */
    bench_index b;
    bench_load(world, &b);
    CHECK(b.n == o.n_bench && b.n_img > 0);
    CHECK(leaks(&c, &images, &b) == 0);
    free(c.items[3].prompt);
    c.items[3].prompt = cg_strdup(b.prompts[0]);
    CHECK(leaks(&c, &images, &b) == 1);
    bench_free(&b);
    data_convs_free(&c);
    data_u8_array_free(&images);
    data_vocab_free(&v);
    free(order), free(is_mc), free(is_mc2);
    free(vp), free(cp), free(ip), free(world);
}

int main(int argc, char **argv) {
    tmpdir = argc > 1 ? argv[1] : "mc_tmp";
    cg_rm_rf(tmpdir);
    if (cg_mkdir_p(tmpdir)) {
        fprintf(stderr, "%s\n", cg_errmsg());
        return 1;
    }
    test_format();
    test_world();
    int rc = test_summary("test_mc");
    if (!rc) cg_rm_rf(tmpdir);
    return rc;
}
