/* stage_instruct.c: the `instruct` stage: instruction tuning of adapter + LM (ViT frozen) on the
 * fraction instruct.fraction of the world's LLaVA conversations. The subset is the first
 * ceil(f·N) items of the permutation of instruct.data_seed (data_fraction_subset: nested across
 * fractions, identical with contrastive on and off); the run seed orders the batches. It trains
 * for instruct.epochs epochs over the subset, steps = max(min_steps, ceil(epochs·n/batch)), so
 * less data means fewer steps, as when a lab simply has less data. Loss on answer + <eos> only.
 * instruct.mc_fraction of the items with a multiple-choice form become multiple-choice turns in
 * the benchmark's letter prompt (data_convs_mc, core/data.h: LLaVA-1.5's multiple-choice VQA
 * turns), chosen along the same permutation, so they too are nested across fractions.
 * Loads align's output; publishes the whole vision-language model. */
#include "core/batch.h"
#include "core/data.h"
#include "core/model.h"
#include "experiments/stage.h"
#include "experiments/stage_train.h"
#include "util/fs.h"
#include "util/util.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

/* Stream of the instruction batches' order (the run seed also orders align's batches). */
#define INSTRUCT_SEED_SALT 0x696e737472756374ULL /* "instruct" */

int stage_instruct(stage_ctx *ctx) {
    const cJSON *cfg = ctx->run_config;
    data_vocab vocab = {0};
    data_convs convs = {0};
    data_u8_array images = {0};
    batch_set bs = {0};
    model m;
    int have_model = 0, *subset = NULL;
    uint8_t *is_mc = NULL;
    char *world = NULL, *path = NULL;
    uint64_t seed = (uint64_t)stage_cfg_int(cfg, "seed");
    int rc = stage_vlm_open(ctx, seed, &world, &m, &have_model, &vocab);
    if (rc) goto out;
    const model_config mc = m.cfg;
    path = cg_path_join(world, "images/instruct.npy");
    if ((rc = data_load_npy_u8(path, &images))) goto out;
    free(path);
    path = cg_path_join(world, "instruct/conversations.json");
    if ((rc = data_load_conversations(path, "instruct", (int64_t)images.shape[0], &convs))) goto out;
    double f = stage_cfg_num(cfg, "instruct.fraction"), epochs = stage_cfg_num(cfg, "instruct.epochs");
    double mc_share = stage_cfg_num(cfg, "instruct.mc_fraction");
    uint64_t data_seed = (uint64_t)stage_cfg_int(cfg, "instruct.data_seed");
    int n_sub = 0, max_T = mc.ctx - model_num_patches(&m);
    subset = cg_malloc((size_t)convs.n * sizeof *subset);
    is_mc = cg_malloc((size_t)convs.n);
    if ((rc = data_fraction_subset(convs.n, f, data_seed, subset, &n_sub))) goto out;
    /* multiple-choice turns along the whole permutation: nested across fractions like the subsets */
    if ((rc = data_convs_mc(&convs, subset, convs.n, mc_share, data_seed, &vocab, max_T, is_mc, NULL))) {
        cg_err_wrap(rc, "instruct.mc_fraction = %g", mc_share);
        goto out;
    }
    if ((rc = batch_instruct(&bs, &vocab, &convs, &images, max_T))) goto out;
    if ((rc = stage_check_images(cfg, bs.S))) goto out;
    assert(bs.n == convs.n);
    batch_use_subset(&bs, subset, n_sub);
    int n_mc = 0;
    for (int k = 0; k < n_sub; k++) n_mc += is_mc[subset[k]];
    if ((rc = stage_load_upstream(ctx, &m, EXP_ALIGN, stage_vlm_prefixes))) goto out;
    stage_train_opts o;
    stage_train_opts_from(cfg, "instruct", &o);
    o.mode = MODE_INSTRUCT;
    o.seed = seed ^ INSTRUCT_SEED_SALT;
    int64_t min_steps = stage_cfg_int(cfg, "instruct.min_steps");
    o.steps = (int64_t)ceil(epochs * (double)n_sub / (double)o.batch - 1e-9);
    if (o.steps < min_steps) o.steps = min_steps;
    if (o.warmup > o.steps) o.warmup = (int)o.steps;
    metrics_scalar(ctx->metrics, "instruct_items", 0, n_sub);
    metrics_scalar(ctx->metrics, "instruct_steps", 0, (double)o.steps);
    metrics_scalar(ctx->metrics, "instruct_mc_items", 0, n_mc);
    if (!cg_quiet)
        cg_info("instruct: fraction %g = %d of %d conversations (%d multiple choice), %g epochs: %lld steps",
                f, n_sub, bs.n, n_mc, epochs, (long long)o.steps);
    if ((rc = stage_train_loop(ctx, &m, &bs, &o))) goto out;
    free(path);
    path = stage_weights_path(ctx->out_dir);
    if ((rc = stage_save_weights(ctx, &m, path, stage_vlm_prefixes))) goto out;
out:
    if (have_model) model_free(&m);
    batch_free(&bs);
    data_convs_free(&convs);
    data_u8_array_free(&images);
    data_vocab_free(&vocab);
    free(subset);
    free(is_mc);
    free(path);
    free(world);
    return rc;
}
