/* stage_vit_pretrain.c: the `vit_pretrain` stage: the vision encoder that alignment will freeze.
 *   mode "random"  the seeded initialisation, untrained (the control);
 *   mode "clip"    image-level InfoNCE against a bag-of-words caption encoder on the alignment
 *                  captions (model MODE_CLIP), vit_pretrain.steps steps.
 * Publishes the vit.* weights. The model is the run's ViT with a fixed stand-in LM, so nothing
 * outside the stage's sub-config (the ViT's shape, vit_pretrain.*) and the world shapes it. */
#include "core/batch.h"
#include "core/data.h"
#include "core/model.h"
#include "experiments/stage.h"
#include "experiments/stage_train.h"
#include "util/fs.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

int stage_vit_pretrain(stage_ctx *ctx) {
    const cJSON *cfg = ctx->run_config;
    data_vocab vocab = {0};
    data_captions caps = {0};
    data_u8_array images = {0};
    batch_set bs = {0};
    model m;
    int have_model = 0;
    char *world = NULL, *path = NULL;
    int clip = strcmp(stage_cfg_str(cfg, "vit_pretrain.mode"), "clip") == 0;
    uint64_t seed = (uint64_t)stage_cfg_int(cfg, "vit_pretrain.seed");
    int rc = stage_world_dir(ctx, &world);
    if (rc) goto out;
    if ((rc = stage_load_vocab(world, 0, &vocab))) goto out;
    model_config mc;
    if (clip) {
        path = cg_path_join(world, "images/align.npy");
        if ((rc = data_load_npy_u8(path, &images))) goto out;
        free(path);
        path = cg_path_join(world, "captions/align.jsonl");
        if ((rc = data_load_captions(path, "align", (int64_t)images.shape[0], &caps))) goto out;
        if ((rc = batch_captions(&bs, &vocab, &caps, &images, 1024))) goto out;
        if ((rc = stage_check_images(cfg, bs.S))) goto out;
        stage_vit_only_config(cfg, vocab.n, bs.T, &mc);
    } else {
        stage_vit_only_config(cfg, vocab.n, 1, &mc);
    }
    if ((rc = model_init(&m, &mc, seed))) goto out;
    have_model = 1;
    if (clip) {
        stage_train_opts o;
        stage_train_opts_from(cfg, "vit_pretrain", &o);
        o.mode = MODE_CLIP;
        o.seed = seed;
        if ((rc = stage_train_loop(ctx, &m, &bs, &o))) goto out;
    }
    free(path);
    path = stage_weights_path(ctx->out_dir);
    if ((rc = stage_save_weights(ctx, &m, path, (const char *const[]){"vit.", NULL}))) goto out;
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
