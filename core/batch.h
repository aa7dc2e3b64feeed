/* batch.h: training batches from the world's data, one per step, deterministic from (seed, step).
 *
 * A batch set holds every item of a dataset tokenized once, padded to one length T (the longest
 * item), with its image index. The batch of step s takes the rows g = s·B .. s·B+B-1 of an
 * endless stream of epochs over the set's order (all items, or a data-fraction subset); epoch e
 * is the order shuffled by rng (seed, e). So the batch of any step is a pure function of
 * (seed, step, data): a resumed run needs no data-loader state, and the same step gives the same
 * batch in every process.
 *
 * Kinds (the sequence layouts are core/data.h's, the one definition):
 *   text      corpus documents: tokens <bos> w.., targets w.. <eos>               (lm_pretrain)
 *   caption   image + <bos> caption; targets caption <eos>; content marks the caption's word
 *             positions (L_con, and the bag of words of the CLIP pretraining)       (align, clip)
 *   instruct  image + <bos> prompt answer; targets only over answer <eos>          (instruct)
 * Padding positions hold <pad> with target -1 and content 0.
 *
 * Nothing is allocated by batch_at: the step's buffers live in the set.
 */
#ifndef CG_BATCH_H
#define CG_BATCH_H

#include "core/data.h"
#include "core/model.h"

#include <stdint.h>

typedef enum { BATCH_TEXT = 0, BATCH_CAPTION, BATCH_INSTRUCT } batch_kind;

typedef struct {
    batch_kind kind;
    int n, T;                 /* items, padded text length */
    int *inputs, *targets;    /* (n,T) */
    uint8_t *content;         /* (n,T) caption word positions (BATCH_CAPTION), else NULL */
    int *image;               /* (n) image row, or NULL for text */
    const data_u8_array *images;  /* (N_img,S,S,3), borrowed */
    int S;
    int *order;               /* (n_order) the items used (all, or a subset) */
    int n_order;
    uint64_t seed;
    /* one step's buffers */
    int B;
    int *b_tokens, *b_targets;
    uint8_t *b_content, *b_images;
    int *perm;                /* (n_order) the current epoch's shuffle */
    int64_t perm_epoch;
    int64_t n_tokens;         /* text tokens of all items (not padding) */
} batch_set;

/* Tokenizes corpus documents (at most max_T tokens each, else CG_EUSER naming the document). */
int batch_text(batch_set *bs, const data_vocab *v, const data_lines *docs, int max_T);
/* Captions with their images (max_T text tokens: ctx minus the visual tokens). */
int batch_captions(batch_set *bs, const data_vocab *v, const data_captions *caps,
                   const data_u8_array *images, int max_T);
/* Instruction (prompt, answer) items with their images. */
int batch_instruct(batch_set *bs, const data_vocab *v, const data_convs *convs,
                   const data_u8_array *images, int max_T);
/* Restricts the stream to the items idx[0..n) (a data-fraction subset), in that order. */
void batch_use_subset(batch_set *bs, const int *idx, int n);
/* Allocates the step buffers for B rows and fixes the seed of the shuffles. */
void batch_prepare(batch_set *bs, int B, uint64_t seed);
/* The batch of step `step` (views into the set's buffers, valid until the next call). */
void batch_at(batch_set *bs, int64_t step, model_batch *out);
/* Fills out with rows item[0..B) of the set in order (evaluation), B <= the prepared B. */
void batch_rows(batch_set *bs, const int *items, int B, model_batch *out);
void batch_free(batch_set *bs);

#endif
