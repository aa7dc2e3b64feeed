/* stage_world.c: the `world` stage: generates the miniature world (experiments/world.h) from the
 * config's "world" section into the staging output. The world is a pure function of its options,
 * so a crashed attempt simply starts over; there is nothing to checkpoint. */
#include "experiments/stage.h"
#include "experiments/stage_train.h"
#include "experiments/world.h"
#include "util/util.h"

int stage_world_generate(stage_ctx *ctx) {
    const cJSON *cfg = ctx->run_config;
    world_options o;
    world_options_default(&o);
    o.seed = (uint64_t)stage_cfg_int(cfg, "world.seed");
    o.image_size = (int)stage_cfg_int(cfg, "world.image_size");
    o.n_align = (int)stage_cfg_int(cfg, "world.n_align");
    o.n_instruct = (int)stage_cfg_int(cfg, "world.n_instruct");
    o.n_corpus = (int)stage_cfg_int(cfg, "world.n_corpus");
    o.n_bench = (int)stage_cfg_int(cfg, "world.n_bench");
    o.n_heldout = (int)stage_cfg_int(cfg, "world.n_heldout");
    if (stage_progress(ctx, 0.0) == STAGE_CANCELLED) return STAGE_CANCELLED;
    double seconds = 0;
    int rc = world_generate(ctx->out_dir, &o, 0, &seconds);
    if (rc) return cg_err_wrap(rc, "cannot generate the world");
    if (!cg_quiet) cg_info("world: generated in %.1f s", seconds);
    metrics_scalar(ctx->metrics, "world_seconds", 0, seconds);
    return CG_OK;
}
