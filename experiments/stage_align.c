/* stage_align.c: the `align` stage: the adapter learns to turn the frozen ViT's patch features
 * into visual tokens for the frozen pretrained LM, on the world's captions, with
 * L = L_gen + λ·L_con (λ = align.lambda; 0 is the LLaVA-style generative-only baseline).
 * Loads lm.* from lm_pretrain's output and vit.* from vit_pretrain's; the adapter is initialised
 * from the run seed. Publishes the whole vision-language model (vit., adapter., lm., con.). */
#include "core/batch.h"
#include "core/data.h"
#include "core/model.h"
#include "experiments/stage.h"
#include "experiments/stage_train.h"
#include "util/fs.h"
#include "util/util.h"

#include <stdlib.h>

int stage_align(stage_ctx *ctx) {
    const cJSON *cfg = ctx->run_config;
    data_vocab vocab = {0};
    data_captions caps = {0};
    data_u8_array images = {0};
    batch_set bs = {0};
    model m;
    int have_model = 0;
    char *world = NULL, *path = NULL;
    uint64_t seed = (uint64_t)stage_cfg_int(cfg, "seed");
    int rc = stage_vlm_open(ctx, seed, &world, &m, &have_model, &vocab);
    if (rc) goto out;
    const model_config mc = m.cfg;
    path = cg_path_join(world, "images/align.npy");
    if ((rc = data_load_npy_u8(path, &images))) goto out;
    free(path);
    path = cg_path_join(world, "captions/align.jsonl");
    if ((rc = data_load_captions(path, "align", (int64_t)images.shape[0], &caps))) goto out;
    if ((rc = batch_captions(&bs, &vocab, &caps, &images, mc.ctx - model_num_patches(&m)))) goto out;
    if ((rc = stage_check_images(cfg, bs.S))) goto out;
    if ((rc = stage_load_upstream(ctx, &m, EXP_LM_PRETRAIN, (const char *const[]){"lm.", NULL})) ||
        (rc = stage_load_upstream(ctx, &m, EXP_VIT_PRETRAIN, (const char *const[]){"vit.", NULL})))
        goto out;
    stage_train_opts o;
    stage_train_opts_from(cfg, "align", &o);
    o.mode = MODE_ALIGN;
    o.seed = seed;
    if ((rc = stage_train_loop(ctx, &m, &bs, &o))) goto out;
    free(path);
    path = stage_weights_path(ctx->out_dir);
    if ((rc = stage_save_weights(ctx, &m, path, stage_vlm_prefixes))) goto out;
out:
    if (have_model) model_free(&m);
    batch_free(&bs);
    data_captions_free(&caps);
    data_u8_array_free(&images);
    data_vocab_free(&vocab);
    free(path);
    free(world);
    return rc;
}
