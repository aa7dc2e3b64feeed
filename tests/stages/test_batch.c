/* test_batch.c: batches are a pure function of (seed, step); an epoch visits every item of the
 * order exactly once; subsets restrict the stream; sequence layouts, padding and the L_con
 * content mask. */
#include "core/batch.h"
#include "core/data.h"
#include "tests/test.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

static const char *const words[] = {"<pad>", "<bos>", "<eos>", "<unk>", "a", "red", "blue",
                                    "circle", "square", "what", "color", "?"};

/* Reads the item a batch row came from: its first two tokens after <bos> encode it. */
static int row_item(const model_batch *b, int r) { return b->tokens[r * b->T + 1] * 100 + b->tokens[r * b->T + 2]; }

int main(void) {
    data_vocab v;
    CHECK(data_vocab_from_words(words, (int)CG_ARRAY_LEN(words), &v) == CG_OK);
    /* 10 documents "wX wY [circle]" with distinct first two tokens */
    enum { N = 10 };
    char *lines[N];
    for (int i = 0; i < N; i++)
        lines[i] = cg_fmt("%s %s%s", words[4 + i / 4], words[4 + i % 4], i % 2 ? " circle" : "");
    data_lines docs = {.lines = lines, .n = N};
    batch_set bs;
    CHECK(batch_text(&bs, &v, &docs, 16) == CG_OK);
    CHECK(bs.T == 4);  /* <bos> w w circle, the longest */
    CHECK(bs.inputs[0] == DATA_BOS && bs.targets[0] == bs.inputs[1]);
    /* doc 0 "a a": inputs <bos> a a <pad>, targets a a <eos> -1 */
    CHECK(bs.inputs[3] == DATA_PAD && bs.targets[2] == DATA_EOS && bs.targets[3] == DATA_IGNORE);

    batch_prepare(&bs, 3, 42);
    int key[N];
    for (int i = 0; i < N; i++) key[i] = bs.inputs[i * bs.T + 1] * 100 + bs.inputs[i * bs.T + 2];
    /* rows of steps 0..9 = 30 rows = 3 epochs of 10: each epoch has every item once */
    int seen[3][N];
    memset(seen, 0, sizeof seen);
    int first[30];
    for (int s = 0; s < 10; s++) {
        model_batch b;
        batch_at(&bs, s, &b);
        CHECK(b.B == 3 && b.T == 4 && b.images_u8 == NULL);
        for (int r = 0; r < 3; r++) {
            int g = s * 3 + r, k = row_item(&b, r), item = -1;
            for (int i = 0; i < N; i++)
                if (key[i] == k) item = i;
            CHECK(item >= 0);
            if (item >= 0) seen[g / N][item]++;
            first[g] = item;
        }
    }
    for (int e = 0; e < 3; e++)
        for (int i = 0; i < N; i++) CHECK(seen[e][i] == 1);
    /* the same step again, in any order, gives the same batch (no loader state) */
    model_batch b;
    batch_at(&bs, 7, &b);
    for (int r = 0; r < 3; r++) CHECK(row_item(&b, r) == key[first[21 + r]]);
    batch_at(&bs, 0, &b);
    for (int r = 0; r < 3; r++) CHECK(row_item(&b, r) == key[first[r]]);
    /* the epochs are shuffled differently, and another seed orders differently */
    CHECK(memcmp(first, first + 10, sizeof(int) * 10) != 0);
    batch_prepare(&bs, 3, 43);
    int diff = 0;
    for (int s = 0; s < 4; s++) {
        batch_at(&bs, s, &b);
        for (int r = 0; r < 3; r++) diff += row_item(&b, r) != key[first[s * 3 + r]];
    }
    CHECK(diff > 0);
    /* a subset: only its items appear */
    int sub[3] = {7, 2, 5};
    batch_use_subset(&bs, sub, 3);
    batch_prepare(&bs, 2, 1);
    for (int s = 0; s < 6; s++) {
        batch_at(&bs, s, &b);
        for (int r = 0; r < 2; r++) {
            int k = row_item(&b, r);
            CHECK(k == key[7] || k == key[2] || k == key[5]);
        }
    }
    batch_free(&bs);

    /* captions: images and the content mask (caption words only) */
    uint8_t px[2 * 2 * 2 * 3];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (uint8_t)i;
    data_u8_array img = {.data = px, .ndim = 4, .shape = {2, 2, 2, 3}, .size = sizeof px};
    data_caption items[2] = {{.id = "c0", .image = "align/1", .image_index = 1, .caption = "a red circle"},
                             {.id = "c1", .image = "align/0", .image_index = 0, .caption = "blue square"}};
    data_captions caps = {.items = items, .n = 2};
    CHECK(batch_captions(&bs, &v, &caps, &img, 8) == CG_OK);
    CHECK(bs.T == 4 && bs.content != NULL);
    const uint8_t want[8] = {0, 1, 1, 1, 0, 1, 1, 0};
    CHECK(memcmp(bs.content, want, 8) == 0);
    batch_prepare(&bs, 2, 0);
    int rows[2] = {0, 1};
    batch_rows(&bs, rows, 2, &b);
    CHECK(memcmp(b.images_u8, px + 12, 12) == 0 && memcmp(b.images_u8 + 12, px, 12) == 0);
    CHECK(b.content[1] == 1 && b.content[7] == 0);
    /* too long for the context: a clear error naming the caption */
    batch_free(&bs);
    CHECK(batch_captions(&bs, &v, &caps, &img, 3) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "c0") != NULL);

    for (int i = 0; i < N; i++) free(lines[i]);
    data_vocab_free(&v);
    return test_summary("batch");
}
