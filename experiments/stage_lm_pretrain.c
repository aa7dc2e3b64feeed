/* stage_lm_pretrain.c: the `lm_pretrain` stage: the LM alone, trained on the world's text corpus
 * (it "knows language" before it sees an image). Publishes the lm.* weights.
 *
 * The model is built from the LM's shape only (model.lm_*, ctx, vocab: the stage's sub-config)
 * with a fixed minimal ViT, so that the LM's initialisation never depends on keys outside the
 * sub-config. Also records the corpus's unigram entropy (benchmark "corpus", metric
 * "unigram_entropy", nats per target token): the loss a model that ignores context would reach,
 * the yardstick of the LM's final loss. */
#include "core/batch.h"
#include "core/data.h"
#include "core/model.h"
#include "experiments/stage.h"
#include "experiments/stage_train.h"
#include "util/fs.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>

/* Entropy (nats) of the unigram distribution of the targets of a tokenized set. */
static double unigram_entropy(const batch_set *bs, int V, int64_t *n_out) {
    int64_t *count = cg_calloc((size_t)V, sizeof *count), n = 0;
    for (size_t k = 0; k < (size_t)bs->n * (size_t)bs->T; k++) {
        int t = bs->targets[k];
        if (t >= 0 && t < V) count[t]++, n++;
    }
    double h = 0;
    for (int v = 0; v < V; v++)
        if (count[v]) {
            double p = (double)count[v] / (double)n;
            h -= p * log(p);
        }
    free(count);
    *n_out = n;
    return h;
}

int stage_lm_pretrain(stage_ctx *ctx) {
    const cJSON *cfg = ctx->run_config;
    data_vocab vocab = {0};
    data_lines docs = {0};
    batch_set bs = {0};
    model m;
    int have_model = 0;
    char *world = NULL, *path = NULL;
    int rc = stage_world_dir(ctx, &world);
    if (rc) goto out;
    model_config mc;
    stage_lm_only_config(cfg, &mc);
    if ((rc = stage_load_vocab(world, mc.vocab, &vocab))) goto out;
    path = cg_path_join(world, "corpus/train.txt");
    if ((rc = data_load_lines(path, &docs))) goto out;
    if ((rc = batch_text(&bs, &vocab, &docs, mc.ctx))) goto out;
    stage_train_opts o;
    stage_train_opts_from(cfg, "lm_pretrain", &o);
    o.mode = MODE_LM;
    o.seed = (uint64_t)stage_cfg_int(cfg, "lm_pretrain.seed");
    if ((rc = model_init(&m, &mc, o.seed))) goto out;
    have_model = 1;
    int64_t n_tok = 0;
    double h = unigram_entropy(&bs, mc.vocab, &n_tok);
    metrics_eval(ctx->metrics, "corpus", "unigram_entropy", "", h, n_tok);
    rc = stage_train_loop(ctx, &m, &bs, &o);
    if (rc) goto out;
    free(path);
    path = stage_weights_path(ctx->out_dir);
    if ((rc = stage_save_weights(ctx, &m, path, (const char *const[]){"lm.", NULL}))) goto out;
out:
    if (have_model) model_free(&m);
    batch_free(&bs);
    data_lines_free(&docs);
    data_vocab_free(&vocab);
    free(path);
    free(world);
    return rc;
}
