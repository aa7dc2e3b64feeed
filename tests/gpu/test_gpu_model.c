/* test_gpu_model.c: the GPU model (kernels/cuda/model_cuda.h) against the CPU model (core/model.h)
 * on the tiny size (learnable temperature on, so every parameter group has a gradient somewhere):
 * the same weights and batch must give the same logits, losses and every gradient, and five whole
 * training steps (zero-grad, forward, backward, clipping to 1.0, AdamW; CUDA graphs on the GPU)
 * the same losses, gradient norms, parameters and moments. Exit 77 ("no GPU: skipped") without a
 * GPU. The same file is also the gpu_emu test (tests/gpu/CMakeLists.txt): linked with model_cuda.cu
 * compiled for the host and tests/gpu/emu's host cuda_ops.h, it checks the orchestration without
 * a GPU.
 *
 * Tolerances (fp32 = plain fp32 products; tf32 and bf16 = the faster precisions):
 *   losses and norms:        |x - ref| <= rtol·|ref|, rtol 1e-5 / 1e-4 / 1e-3 (over the 5 steps:
 *                            3e-4 / 1e-2 / 3e-2: the gradient norm of instruct drifts most; the
 *                            emulation with real bf16 rounding (gpu_emu) moves it by 0.95 % at
 *                            step 5, with tf32-sized noise (CGVLM_EMU_JITTER=1e-3) by 0.27 %);
 *   logits, per tensor:      ‖x - ref‖ / ‖ref‖ <= 5e-5 / 3e-3 / 2e-2;
 *   gradients, per tensor:   ‖x - ref‖ / ‖ref‖ <= 1e-4 / 5e-3 / 3e-2, and in fp32 also every element
 *                            |x - ref| <= 1e-4·max|ref| + 1e-3·|ref|;
 *   frozen tensors:          gradient exactly 0 on the GPU;
 *   after 5 AdamW steps (fp32 only, lr rising 2e-4 .. 1e-3, so that a replayed graph must read
 *                            it): every element |x - ref| <= 1e-5 + 1e-4·|ref| except
 *                            at most 0.1 % of them (an element whose gradient is ~0 can take the
 *                            other sign, AdamW then moves it by up to lr per step the other way),
 *                            and none beyond the AdamW bound 2·lr·steps + 1e-5.
 * Calibration of the fp32 bounds (no GPU needed): the GPU model's orchestration run on the CPU
 * kernels (model_cuda.cu against a host implementation of cuda_ops.h) with every product's output
 * perturbed by a relative 1e-6 (about what another summation order gives at these sizes) stays
 * within them with 3x to 10x margin: logits 1.2e-6, step norms 3e-5 apart after 5 steps, 26 of
 * 834k values outside; at 1e-5 the logits (1.2e-5) and the step norms (3.4e-4) fail.
 * Graph replay must equal eager execution bit for bit in every precision (in bf16 that includes
 * AdamW refreshing the weights' bf16 copy), and a shape is captured once. The fused
 * attention (model_cuda_set_attention) is checked the same way in instruct and clip, fp32.
 * Calibration of the tf32/bf16 bounds (no GPU needed): the CPU model with the inputs of every sgemm
 * rounded to 10 / 7 mantissa bits (cblas_sgemm interposed) differs from plain fp32 on this batch by
 * at most 1.3e-6 / 1.5e-5 in the losses and 8.5e-4 / 6.8e-3 in the worst gradient tensor (align,
 * instruct); the GPU also rounds the attention products, hence the margin of about 5x. */
#include "kernels/gpu.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>

#if CGVLM_HAVE_CUDA
#include "core/model.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/model_cuda.h"
#include "util/rng.h"

#define STEPS 5
#define LR 1e-3f

typedef struct {
    double loss_rtol, logit_rel, grad_rel, step_rtol;
} tols;
static const tols TOLS[3] = {{1e-5, 5e-5, 1e-4, 3e-4}, {1e-4, 3e-3, 5e-3, 1e-2}, {1e-3, 2e-2, 3e-2, 3e-2}};

static const char *mode_name(int mode) {
    static const char *n[] = {"lm", "clip", "align", "instruct"};
    return n[mode];
}

typedef struct {
    int B, T;
    uint8_t *img, *content;
    int *tok, *tgt;
    model_batch b;
} batch_buf;

/* rows: <bos>, a prompt of 3 + b%5 tokens without loss, then answer tokens with targets; content
 * = the caption tokens after <bos> up to a row-dependent end */
static void make_batch(batch_buf *bb, const model_config *c, int mode, cg_rng *r) {
    int B = c->batch, P = (c->image_size / c->patch) * (c->image_size / c->patch);
    int T = mode == MODE_LM ? c->ctx : c->ctx - P;
    long npx = (long)B * c->image_size * c->image_size * 3;
    bb->B = B, bb->T = T;
    bb->img = malloc((size_t)npx);
    bb->content = malloc((size_t)B * T);
    bb->tok = malloc(sizeof(int) * (size_t)B * T);
    bb->tgt = malloc(sizeof(int) * (size_t)B * T);
    for (long i = 0; i < npx; i++) bb->img[i] = (uint8_t)cg_rng_below(r, 256);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            long i = (long)b * T + t;
            bb->tok[i] = t == 0 ? 1 : 4 + (int)cg_rng_below(r, (uint32_t)c->vocab - 4);
            bb->content[i] = t > 0 && t < T - 1 - b % 7;
        }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            long i = (long)b * T + t;
            bb->tgt[i] = t >= 3 + b % 5 && t + 1 < T ? bb->tok[i + 1] : -1;
        }
    bb->b = (model_batch){.B = B, .T = T, .images_u8 = mode == MODE_LM ? NULL : bb->img,
                          .tokens = bb->tok, .targets = bb->tgt, .content = bb->content};
}

static void free_batch(batch_buf *bb) {
    free(bb->img), free(bb->content), free(bb->tok), free(bb->tgt);
}

static double rel_err(const float *x, const float *ref, long n, double *maxref) {
    double num = 0.0, den = 0.0, mx = 0.0;
    for (long i = 0; i < n; i++) {
        double d = (double)x[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    }
    if (maxref) *maxref = mx;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void close_loss(const char *what, float x, float ref, double rtol) {
    test_checks++;
    if (!(fabs((double)x - ref) <= rtol * fabs(ref) + 1e-7)) {
        test_failures++;
        printf("    %s: gpu %.8g cpu %.8g  FAIL\n", what, (double)x, (double)ref);
    }
}

/* every gradient of gm (downloaded from the GPU) against cpu's */
static void compare_grads(model *cpu, model *gm, int mode, int prec) {
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < model_num_params(cpu); i++) {
        model_param *p = model_param_at(cpu, i), *q = model_param_at(gm, i);
        if (!model_mode_trains(mode, p->group)) {
            long nz = 0;
            for (long k = 0; k < q->numel; k++) nz += q->grad[k] != 0.0f;
            CHECK(nz == 0);
            if (nz) printf("    frozen %s has %ld non-zero gradients  FAIL\n", p->name, nz);
            continue;
        }
        double mx, rel = rel_err(q->grad, p->grad, p->numel, &mx);
        long bad = 0;
        if (prec == CUDA_PREC_FP32)
            for (long k = 0; k < p->numel; k++)
                bad += !(fabs((double)q->grad[k] - p->grad[k]) <= 1e-4 * mx + 1e-3 * fabs(p->grad[k]));
        test_checks++;
        if (!(rel <= TOLS[prec].grad_rel) || bad) {
            test_failures++;
            printf("    grad %-24s rel %.3g, %ld elements out  FAIL\n", p->name, rel, bad);
        }
        if (rel > worst) worst = rel, worst_name = p->name;
    }
    printf("    gradients: worst relative error %.3g (%s)\n", worst, worst_name);
}

static void compare_after_steps(model *cpu, model *gm, int mode) {
    long n = 0, out = 0, beyond = 0;
    double bound = 2.0 * LR * STEPS + 1e-5;
    for (int i = 0; i < model_num_params(cpu); i++) {
        model_param *p = model_param_at(cpu, i), *q = model_param_at(gm, i);
        if (!model_mode_trains(mode, p->group)) {
            CHECK(memcmp(p->data, q->data, sizeof(float) * (size_t)p->numel) == 0);
            continue;
        }
        for (long k = 0; k < p->numel; k++) {
            double d = fabs((double)q->data[k] - p->data[k]);
            out += !(d <= 1e-5 + 1e-4 * fabs(p->data[k]));
            beyond += !(d <= bound);
        }
        n += p->numel;
    }
    printf("    after %d steps: %ld of %ld trained values outside 1e-5 + 1e-4|ref|, %ld beyond the "
           "AdamW bound\n", STEPS, out, n, beyond);
    CHECK(out <= n / 1000);
    CHECK(beyond == 0);
    CHECK(model_step_count(gm) == model_step_count(cpu));
}

static void check_mode(const model_config *cfg, int mode, int prec, int attn) {
    printf("  mode %s, %s, %s attention\n", mode_name(mode), cuda_prec_name(prec),
           attn == CUDA_ATTN_FUSED ? "fused" : "matmul");
    const tols *t = &TOLS[prec];
    model cpu, gm;
    model_cuda *g = NULL;
    CHECK(model_init(&cpu, cfg, 5) == CG_OK);
    CHECK(model_init(&gm, cfg, 5) == CG_OK);
    CHECK(model_cuda_create(&g, &cpu) == CG_OK);
    if (!g) return;
    CHECK(model_cuda_set_precision(g, prec) == CG_OK);
    CHECK(model_cuda_set_attention(g, attn) == CG_OK);
    model_cuda_use_graphs(g, 1); /* whatever CGVLM_CUDA_GRAPHS says */
    cg_rng r;
    cg_rng_seed(&r, 99 + (uint64_t)mode);
    batch_buf bb;
    make_batch(&bb, cfg, mode, &r);
    /* logits */
    if (mode != MODE_CLIP) {
        long n = (long)bb.B * (bb.T + (mode == MODE_LM ? 0 : model_num_patches(&cpu))) * cfg->vocab;
        float *l1 = malloc(sizeof(float) * (size_t)n), *l2 = malloc(sizeof(float) * (size_t)n);
        CHECK(model_logits(&cpu, &bb.b, mode, l1) == CG_OK);
        CHECK(model_cuda_logits(g, &bb.b, mode, l2) == CG_OK);
        double rel = rel_err(l2, l1, n, NULL);
        printf("    logits: relative error %.3g\n", rel);
        CHECK(rel <= t->logit_rel);
        free(l1), free(l2);
    }
    /* one forward and backward */
    model_losses lc, lg;
    model_zero_grad(&cpu);
    CHECK(model_forward(&cpu, &bb.b, mode, &lc) == CG_OK);
    model_backward(&cpu);
    CHECK(model_cuda_zero_grad(g) == CG_OK);
    CHECK(model_cuda_forward(g, &bb.b, mode, &lg) == CG_OK);
    CHECK(model_cuda_backward(g) == CG_OK);
    printf("    losses: gpu %.6f (gen %.6f, con %.6f), cpu %.6f (gen %.6f, con %.6f)\n",
           (double)lg.loss, (double)lg.gen, (double)lg.con, (double)lc.loss, (double)lc.gen,
           (double)lc.con);
    close_loss("loss", lg.loss, lc.loss, t->loss_rtol);
    close_loss("gen", lg.gen, lc.gen, t->loss_rtol);
    close_loss("con", lg.con, lc.con, t->loss_rtol);
    CHECK(lg.n_targets == lc.n_targets);
    CHECK(model_cuda_download(g, &gm) == CG_OK);
    compare_grads(&cpu, &gm, mode, prec);
    {
        /* five whole steps, graphs on; the same steps eagerly on a second GPU model (in tf32 and
         * bf16 the losses and norms within the step tolerance of the precision; the parameters
         * are compared in fp32 only) */
        model_cuda *ge = NULL;
        model fresh, em;
        CHECK(model_init(&fresh, cfg, 5) == CG_OK);
        CHECK(model_init(&em, cfg, 5) == CG_OK);
        CHECK(model_cuda_upload(g, &fresh) == CG_OK);
        CHECK(model_cuda_create(&ge, &fresh) == CG_OK);
        CHECK(model_cuda_set_precision(ge, prec) == CG_OK);
        CHECK(ge && model_cuda_set_attention(ge, attn) == CG_OK);
        model_cuda_use_graphs(ge, 0);
        model_free(&cpu);
        CHECK(model_init(&cpu, cfg, 5) == CG_OK);
        adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
        int captures0 = model_cuda_graph_captures(g);
        for (int s = 0; s < STEPS; s++) {
            model_zero_grad(&cpu);
            CHECK(model_forward(&cpu, &bb.b, mode, &lc) == CG_OK);
            model_backward(&cpu);
            float nc = model_clip_grad(&cpu, 1.0f), ng = 0.0f, ne = 0.0f;
            /* a learning rate that changes every step: a replayed graph must read it, not keep
             * the one of the step it was captured at */
            float lr = LR * (float)(s + 1) / STEPS;
            model_adamw_step(&cpu, &hp, lr);
            model_losses le;
            CHECK(model_cuda_step(g, &bb.b, mode, &hp, lr, 1.0f, &lg, &ng) == CG_OK);
            CHECK(ge && model_cuda_step(ge, &bb.b, mode, &hp, lr, 1.0f, &le, &ne) == CG_OK);
            printf("    step %d: loss gpu %.6f cpu %.6f, norm gpu %.6f cpu %.6f\n", s + 1,
                   (double)lg.loss, (double)lc.loss, (double)ng, (double)nc);
            close_loss("step loss", lg.loss, lc.loss, t->step_rtol);
            close_loss("step norm", ng, nc, t->step_rtol);
            CHECK(le.loss == lg.loss && ne == ng);
        }
        CHECK(model_cuda_graph_captures(g) == captures0 + 1);
        CHECK(model_cuda_download(g, &gm) == CG_OK);
        CHECK(ge && model_cuda_download(ge, &em) == CG_OK);
        if (prec == CUDA_PREC_FP32) compare_after_steps(&cpu, &gm, mode);
        CHECK(memcmp(gm.params_mem, em.params_mem, sizeof(float) * (size_t)gm.nvalues) == 0);
        CHECK(memcmp(gm.m_mem, em.m_mem, sizeof(float) * (size_t)gm.nvalues) == 0);
        model_cuda_free(ge);
        model_free(&fresh);
        model_free(&em);
    }
    free_batch(&bb);
    model_cuda_free(g);
    model_free(&cpu);
    model_free(&gm);
}

/* model_cuda_profile_step: the same step as model_cuda_step (bitwise), and its section times
 * (model_cuda_profile_ops) cover the step: one section per layer and kind, adding up to the
 * phases' time */
static void check_profile(const model_config *cfg, int mode) {
    printf("  profile step, mode %s\n", mode_name(mode));
    model m, mp, ms;
    model_cuda *gp = NULL, *gs = NULL;
    CHECK(model_init(&m, cfg, 7) == CG_OK);
    CHECK(model_init(&mp, cfg, 7) == CG_OK);
    CHECK(model_init(&ms, cfg, 7) == CG_OK);
    CHECK(model_cuda_create(&gp, &m) == CG_OK);
    CHECK(model_cuda_create(&gs, &m) == CG_OK);
    if (!gp || !gs) return;
    cuda_op_time ops[CUDA_OP_TIMES_MAX];
    CHECK(model_cuda_profile_ops(gp, ops, CUDA_OP_TIMES_MAX) == 0); /* none yet */
    model_cuda_use_graphs(gs, 0);
    cg_rng r;
    cg_rng_seed(&r, 123 + (uint64_t)mode);
    batch_buf bb;
    make_batch(&bb, cfg, mode, &r);
    adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    double ph[3] = {-1, -1, -1};
    model_losses l;
    CHECK(model_cuda_profile_step(gp, &bb.b, mode, &hp, LR, 1.0f, ph) == CG_OK);
    CHECK(model_cuda_step(gs, &bb.b, mode, &hp, LR, 1.0f, &l, NULL) == CG_OK);
    CHECK(model_cuda_download(gp, &mp) == CG_OK);
    CHECK(model_cuda_download(gs, &ms) == CG_OK);
    CHECK(memcmp(mp.params_mem, ms.params_mem, sizeof(float) * (size_t)mp.nvalues) == 0);
    int n = model_cuda_profile_ops(gp, ops, CUDA_OP_TIMES_MAX);
    double sum = 0.0, total = ph[0] + ph[1] + ph[2];
    int layer_kinds = 0, adamw = 0;
    const char *stack = mode == MODE_CLIP ? "vit" : "lm";
    int layers = mode == MODE_CLIP ? cfg->vit_layers : cfg->lm_layers;
    char want[2][32];
    snprintf(want[0], sizeof want[0], "%s fwd qkv", stack);
    snprintf(want[1], sizeof want[1], "%s bwd attention", stack);
    for (int i = 0; i < n; i++) {
        CHECK(ops[i].ms >= 0.0 && ops[i].calls >= 1 && ops[i].name[0]);
        CHECK(i == 0 || ops[i].ms <= ops[i - 1].ms);
        sum += ops[i].ms;
        for (int k = 0; k < 2; k++) layer_kinds += !strcmp(ops[i].name, want[k]) && ops[i].calls == layers;
        adamw += !strcmp(ops[i].name, "optimizer adamw") && ops[i].calls == 1;
    }
    printf("    %d sections, %.3f ms in all; phases %.3f + %.3f + %.3f ms\n", n, sum, ph[0], ph[1], ph[2]);
    CHECK(n >= 10 && n < CUDA_OP_TIMES_MAX);
    CHECK(layer_kinds == 2 && adamw == 1);
    CHECK(sum <= total * 1.01 + 0.01 && sum >= total * 0.9 - 0.05);
    free_batch(&bb);
    model_cuda_free(gp);
    model_cuda_free(gs);
    model_free(&m);
    model_free(&mp);
    model_free(&ms);
}

/* cuda_bench_train (`cgvlm bench train --device cuda`): a few bf16 steps give a time, the graph's
 * own time, the sections, and finite losses that go down */
static void check_bench(const model_config *cfg) {
    cuda_bench_result r;
    CHECK(cuda_bench_train(cfg, MODE_INSTRUCT, 4, 16, 4, 2, CUDA_PREC_BF16, CUDA_ATTN_MATMUL, &r) == CG_OK);
    printf("  bench: %.3f ms/step, graph %.3f ms, %d sections, loss %.4f -> %.4f\n", r.ms_median,
           r.graph_ms, r.n_ops, (double)r.loss_first, (double)r.loss_last);
    CHECK(r.ms_median > 0 && r.ms_best <= r.ms_median && r.graph_ms > 0 && r.flops > 0);
    CHECK(r.n_ops >= 10 && isfinite(r.loss_first) && r.loss_last < r.loss_first);
}

static void check_bad_input(const model_config *cfg) {
    model m;
    model_cuda *g = NULL;
    CHECK(model_init(&m, cfg, 1) == CG_OK);
    CHECK(model_cuda_create(&g, &m) == CG_OK);
    int tok[4] = {1, 5, 9999, 2};
    model_batch b = {.B = 1, .T = 4, .tokens = tok};
    model_losses l;
    CHECK(model_cuda_forward(g, &b, MODE_LM, &l) == CG_EUSER);
    CHECK(model_cuda_forward(g, &b, MODE_INSTRUCT, &l) == CG_EUSER); /* no images */
    CHECK(model_cuda_set_precision(g, 7) == CG_EUSER);
    CHECK(model_cuda_set_attention(g, 5) == CG_EUSER);
    model other;
    model_config c2 = *cfg;
    c2.lm_layers++;
    CHECK(model_init(&other, &c2, 1) == CG_OK);
    CHECK(model_cuda_download(g, &other) == CG_EUSER);
    model_free(&other);
    model_cuda_free(g);
    model_free(&m);
}

static int run(void) {
    model_config cfg;
    /* CGVLM_GPU_TEST_QUICK=1: batch 4, align in fp32 only (for compute-sanitizer, which is slow) */
    const char *q = getenv("CGVLM_GPU_TEST_QUICK");
    int quick = q && *q && strcmp(q, "0");
    CHECK(model_config_preset(&cfg, "tiny") == CG_OK);
    cfg.learn_tau = 1;
    cfg.batch = quick ? 4 : 16;
    printf("tiny model, batch %d, learnable temperature\n", cfg.batch);
    int modes[] = {MODE_ALIGN, MODE_INSTRUCT, MODE_LM, MODE_CLIP};
    for (int i = 0; i < (quick ? 1 : 4); i++) check_mode(&cfg, modes[i], CUDA_PREC_FP32, CUDA_ATTN_MATMUL);
    for (int prec = CUDA_PREC_TF32; prec <= CUDA_PREC_BF16 && !quick; prec++) {
        check_mode(&cfg, MODE_ALIGN, prec, CUDA_ATTN_MATMUL);
        check_mode(&cfg, MODE_INSTRUCT, prec, CUDA_ATTN_MATMUL);
    }
    /* the fused attention: causal (the LM) and bidirectional with gradients (the ViT in clip) */
    check_mode(&cfg, MODE_INSTRUCT, CUDA_PREC_FP32, CUDA_ATTN_FUSED);
    if (!quick) check_mode(&cfg, MODE_CLIP, CUDA_PREC_FP32, CUDA_ATTN_FUSED);
    check_profile(&cfg, MODE_ALIGN);
    check_bench(&cfg);
    if (!quick) check_profile(&cfg, MODE_CLIP);
    check_bad_input(&cfg);
    return test_summary("gpu_model");
}
#endif

int main(void) {
    if (cg_gpu_count() == 0) {
        printf("no GPU: skipped (%s)\n", cg_gpu_built() ? "no CUDA device" : "built without CUDA");
        return 77;
    }
#if CGVLM_HAVE_CUDA
    return run();
#else
    return 77;
#endif
}
