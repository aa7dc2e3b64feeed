/* batch.c: tokenized datasets and the deterministic per-step batches of the training stages
 * (see batch.h). */
#include "core/batch.h"
#include "util/rng.h"
#include "util/util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Stream ids of the epoch shuffles (distinct from any other use of the run seed). */
#define BATCH_RNG_STREAM 0x62617463680000ULL /* "batch" */

static void set_init(batch_set *bs, batch_kind kind, int n, int max_T) {
    memset(bs, 0, sizeof *bs);
    bs->kind = kind;
    bs->n = n;
    bs->T = max_T;
    bs->inputs = cg_malloc((size_t)n * (size_t)max_T * sizeof *bs->inputs);
    bs->targets = cg_malloc((size_t)n * (size_t)max_T * sizeof *bs->targets);
    bs->perm_epoch = -1;
}

/* Pads row i from length len to the set's max_T, then (at the end) shrinks the stride to T. */
static void pad_row(batch_set *bs, int i, int len, int max_T) {
    for (int t = len; t < max_T; t++) {
        bs->inputs[(size_t)i * max_T + t] = DATA_PAD;
        bs->targets[(size_t)i * max_T + t] = DATA_IGNORE;
    }
}

static void shrink(batch_set *bs, int max_T, int T) {
    assert(T <= max_T);
    for (int i = 0; i < bs->n; i++) {
        memmove(bs->inputs + (size_t)i * T, bs->inputs + (size_t)i * max_T, (size_t)T * sizeof(int));
        memmove(bs->targets + (size_t)i * T, bs->targets + (size_t)i * max_T, (size_t)T * sizeof(int));
    }
    bs->T = T;
    bs->order = cg_malloc((size_t)(bs->n ? bs->n : 1) * sizeof *bs->order);
    for (int i = 0; i < bs->n; i++) bs->order[i] = i;
    bs->n_order = bs->n;
}

int batch_text(batch_set *bs, const data_vocab *v, const data_lines *docs, int max_T) {
    set_init(bs, BATCH_TEXT, docs->n, max_T);
    int T = 1;
    for (int i = 0; i < docs->n; i++) {
        int len = 0;
        int rc = data_seq_text(v, docs->lines[i], max_T, bs->inputs + (size_t)i * max_T,
                               bs->targets + (size_t)i * max_T, &len, NULL);
        if (rc) {
            batch_free(bs);
            return cg_err_wrap(rc, "corpus document %d", i + 1);
        }
        pad_row(bs, i, len, max_T);
        bs->n_tokens += len;
        if (len > T) T = len;
    }
    shrink(bs, max_T, T);
    return CG_OK;
}

/* The image side of a set: (N,S,S,3) uint8. */
static int check_images(const data_u8_array *images) {
    if (images->ndim != 4 || images->shape[1] != images->shape[2] || images->shape[3] != 3)
        return cg_err(CG_EUSER, "images must be an (N,S,S,3) uint8 array");
    return CG_OK;
}

int batch_captions(batch_set *bs, const data_vocab *v, const data_captions *caps,
                   const data_u8_array *images, int max_T) {
    int rc = check_images(images);
    if (rc) return rc;
    set_init(bs, BATCH_CAPTION, caps->n, max_T);
    bs->images = images;
    bs->S = (int)images->shape[1];
    bs->image = cg_malloc((size_t)(caps->n ? caps->n : 1) * sizeof *bs->image);
    int T = 1;
    for (int i = 0; i < caps->n; i++) {
        int len = 0;
        rc = data_seq_text(v, caps->items[i].caption, max_T, bs->inputs + (size_t)i * max_T,
                           bs->targets + (size_t)i * max_T, &len, NULL);
        if (rc) {
            batch_free(bs);
            return cg_err_wrap(rc, "caption '%s'", caps->items[i].id);
        }
        pad_row(bs, i, len, max_T);
        bs->image[i] = caps->items[i].image_index;
        assert(bs->image[i] >= 0 && bs->image[i] < images->shape[0]);
        bs->n_tokens += len;
        if (len > T) T = len;
    }
    shrink(bs, max_T, T);
    /* content: the caption's words, i.e. every input position but <bos> and padding */
    bs->content = cg_calloc((size_t)bs->n * (size_t)T, 1);
    for (size_t k = 0; k < (size_t)bs->n * (size_t)T; k++) {
        int tok = bs->inputs[k];
        bs->content[k] = tok != DATA_PAD && tok != DATA_BOS && tok != DATA_EOS && tok != DATA_UNK;
    }
    return CG_OK;
}

int batch_instruct(batch_set *bs, const data_vocab *v, const data_convs *convs,
                   const data_u8_array *images, int max_T) {
    int rc = check_images(images);
    if (rc) return rc;
    set_init(bs, BATCH_INSTRUCT, convs->n, max_T);
    bs->images = images;
    bs->S = (int)images->shape[1];
    bs->image = cg_malloc((size_t)(convs->n ? convs->n : 1) * sizeof *bs->image);
    int T = 1;
    for (int i = 0; i < convs->n; i++) {
        int len = 0;
        rc = data_seq_prompt_answer(v, convs->items[i].prompt, convs->items[i].answer, max_T,
                                    bs->inputs + (size_t)i * max_T, bs->targets + (size_t)i * max_T,
                                    &len, NULL);
        if (rc) {
            batch_free(bs);
            return cg_err_wrap(rc, "conversation '%s'", convs->items[i].id);
        }
        pad_row(bs, i, len, max_T);
        bs->image[i] = convs->items[i].image_index;
        assert(bs->image[i] >= 0 && bs->image[i] < images->shape[0]);
        bs->n_tokens += len;
        if (len > T) T = len;
    }
    shrink(bs, max_T, T);
    return CG_OK;
}

void batch_use_subset(batch_set *bs, const int *idx, int n) {
    assert(n >= 1 && n <= bs->n);
    for (int i = 0; i < n; i++) {
        assert(idx[i] >= 0 && idx[i] < bs->n);
        bs->order[i] = idx[i];
    }
    bs->n_order = n;
    bs->perm_epoch = -1;
}

void batch_prepare(batch_set *bs, int B, uint64_t seed) {
    assert(B >= 1 && bs->n_order >= 1);
    bs->B = B;
    bs->seed = seed;
    free(bs->b_tokens);
    free(bs->b_targets);
    free(bs->b_content);
    free(bs->b_images);
    free(bs->perm);
    bs->b_tokens = cg_malloc((size_t)B * bs->T * sizeof(int));
    bs->b_targets = cg_malloc((size_t)B * bs->T * sizeof(int));
    bs->b_content = bs->content ? cg_malloc((size_t)B * bs->T) : NULL;
    bs->b_images = bs->images ? cg_malloc((size_t)B * bs->S * bs->S * 3) : NULL;
    bs->perm = cg_malloc((size_t)bs->n_order * sizeof *bs->perm);
    bs->perm_epoch = -1;
}

/* Copies item i of the set into row b of the step buffers. */
static void put_row(batch_set *bs, int b, int i) {
    size_t T = (size_t)bs->T;
    memcpy(bs->b_tokens + b * T, bs->inputs + i * T, T * sizeof(int));
    memcpy(bs->b_targets + b * T, bs->targets + i * T, T * sizeof(int));
    if (bs->content) memcpy(bs->b_content + b * T, bs->content + i * T, T);
    if (bs->images) {
        size_t isz = (size_t)bs->S * bs->S * 3;
        memcpy(bs->b_images + b * isz, bs->images->data + (size_t)bs->image[i] * isz, isz);
    }
}

static void view(batch_set *bs, int B, model_batch *out) {
    memset(out, 0, sizeof *out);
    out->B = B;
    out->T = bs->T;
    out->tokens = bs->b_tokens;
    out->targets = bs->b_targets;
    out->content = bs->b_content;
    out->images_u8 = bs->b_images;
}

void batch_at(batch_set *bs, int64_t step, model_batch *out) {
    assert(bs->B >= 1);
    for (int b = 0; b < bs->B; b++) {
        int64_t g = step * bs->B + b;
        int64_t epoch = g / bs->n_order;
        if (epoch != bs->perm_epoch) {
            cg_rng r;
            cg_rng_seed2(&r, bs->seed, BATCH_RNG_STREAM + (uint64_t)epoch);
            for (int k = 0; k < bs->n_order; k++) bs->perm[k] = k;
            cg_rng_shuffle(&r, bs->perm, bs->n_order);
            bs->perm_epoch = epoch;
        }
        put_row(bs, b, bs->order[bs->perm[g % bs->n_order]]);
    }
    view(bs, bs->B, out);
}

void batch_rows(batch_set *bs, const int *items, int B, model_batch *out) {
    assert(B >= 1 && B <= bs->B);
    for (int b = 0; b < B; b++) put_row(bs, b, items[b]);
    view(bs, B, out);
}

void batch_free(batch_set *bs) {
    free(bs->inputs);
    free(bs->targets);
    free(bs->content);
    free(bs->image);
    free(bs->order);
    free(bs->b_tokens);
    free(bs->b_targets);
    free(bs->b_content);
    free(bs->b_images);
    free(bs->perm);
    memset(bs, 0, sizeof *bs);
}
