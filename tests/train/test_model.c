/* test_model.c: the whole model on a tiny config — finite-difference gradient checks in every mode
 * (each trainable tensor; frozen tensors must get exactly zero gradient), bitwise determinism of a
 * 20-step run, a learning smoke test, the evaluation helpers and bad input.
 *
 * Whole-model gradient check: for each trainable tensor W with analytic gradient g, a direction
 * u = normalise(g/|g| + r) (r a random unit vector, so errors orthogonal to g show too) and the
 * central difference (L(W+εu) - L(W-εu)) / 2ε, ε = 1e-3, must match g·u within
 * 2e-3 + 3e-2·|g·u| (float32 forward passes). Plus the 3 largest entries of g element-wise. */
#include "core/model.h"
#include "tests/train/gradcheck.h"
#include "util/util.h"

#include <assert.h>

#include <stdlib.h>
#include <string.h>

#define B_ 3
#define T_ 8

static model_config test_config(void) {
    model_config c = {.image_size = 16,
                      .patch = 4,
                      .vit_dim = 16,
                      .vit_layers = 2,
                      .vit_heads = 2,
                      .lm_dim = 32,
                      .lm_layers = 2,
                      .lm_heads = 2,
                      .ctx = 24,
                      .vocab = 20,
                      .adapter = ADAPTER_MLP2X,
                      .pool = 2,
                      .tau = 0.07f,
                      .learn_tau = 1,
                      .lambda = 1.0f,
                      .batch = B_};
    return c;
}

typedef struct {
    uint8_t img[B_ * 16 * 16 * 3];
    int tok[B_ * T_], tgt[B_ * T_];
    uint8_t content[B_ * T_];
    model_batch b;
} test_batch;

static void make_batch(test_batch *tb, cg_rng *r, int V) {
    for (size_t i = 0; i < sizeof tb->img; i++) tb->img[i] = (uint8_t)cg_rng_below(r, 256);
    for (int b = 0; b < B_; b++)
        for (int t = 0; t < T_; t++) {
            int i = b * T_ + t;
            tb->tok[i] = t == 0 ? 1 : 4 + (int)cg_rng_below(r, (uint32_t)V - 4);
            tb->content[i] = t > 0 && t < T_ - 2 - b;
        }
    for (int i = 0; i < B_ * T_; i++)
        tb->tgt[i] = (i % T_) >= 2 && (i % T_) < T_ - 1 ? tb->tok[i + 1] : -1;
    tb->b = (model_batch){.B = B_,
                          .T = T_,
                          .images_u8 = tb->img,
                          .tokens = tb->tok,
                          .targets = tb->tgt,
                          .content = tb->content};
}

typedef struct {
    model *m;
    test_batch *tb;
    int mode;
} fd_ctx;

static double fd_loss(void *p) {
    fd_ctx *c = p;
    model_losses l;
    int rc = model_forward(c->m, &c->tb->b, c->mode, &l);
    assert(rc == CG_OK);
    return l.loss;
}

static const char *mode_name(int mode) {
    static const char *n[] = {"lm", "clip", "align", "instruct"};
    return n[mode];
}

static void check_mode(int mode) {
    printf("mode %s\n", mode_name(mode));
    model_config cfg = test_config();
    model m;
    CHECK(model_init(&m, &cfg, 7) == CG_OK);
    test_batch tb;
    cg_rng r;
    cg_rng_seed(&r, 11);
    make_batch(&tb, &r, cfg.vocab);
    model_losses l;
    CHECK(model_forward(&m, &tb.b, mode, &l) == CG_OK);
    CHECK(isfinite(l.loss) && l.loss > 0);
    if (mode == MODE_ALIGN)
        CHECK(l.con > 0 && l.gen > 0 && fabsf(l.loss - (l.gen + l.con)) < 1e-5f);
    model_zero_grad(&m);
    model_backward(&m);
    fd_ctx c = {&m, &tb, mode};
    float *g = malloc(sizeof(float) * (size_t)m.nvalues),
          *u = malloc(sizeof(float) * (size_t)m.nvalues);
    memcpy(g, m.grads_mem, sizeof(float) * (size_t)m.nvalues);
    int ntrain = 0;
    double worst = 0;
    for (int i = 0; i < model_num_params(&m); i++) {
        model_param *p = model_param_at(&m, i);
        const float *gp = g + (p->data - m.params_mem);
        if (!model_mode_trains(mode, p->group)) {
            int nz = 0;
            for (long k = 0; k < p->numel; k++) nz += gp[k] != 0.0f;
            if (nz) fprintf(stderr, "frozen %s has %d non-zero gradients\n", p->name, nz);
            CHECK(nz == 0);
            continue;
        }
        ntrain++;
        double gn = sqrt(gc_dot(gp, gp, p->numel));
        if (gn == 0.0) {
            /* only a tensor the loss cannot reach may have no gradient */
            fprintf(stderr, "trainable %s has a zero gradient\n", p->name);
            CHECK(0);
            continue;
        }
        gc_fill(u, p->numel, &r, 1.0f);
        double rn = sqrt(gc_dot(u, u, p->numel));
        for (long k = 0; k < p->numel; k++) u[k] = (float)(gp[k] / gn + u[k] / rn);
        double un = sqrt(gc_dot(u, u, p->numel));
        for (long k = 0; k < p->numel; k++) u[k] = (float)(u[k] / un);
        double want = gc_dot(gp, u, p->numel);
        const float eps = 1e-3f;
        float *save = malloc(sizeof(float) * (size_t)p->numel);
        memcpy(save, p->data, sizeof(float) * (size_t)p->numel);
        for (long k = 0; k < p->numel; k++) p->data[k] = save[k] + eps * u[k];
        double lp = fd_loss(&c);
        for (long k = 0; k < p->numel; k++) p->data[k] = save[k] - eps * u[k];
        double lm = fd_loss(&c);
        memcpy(p->data, save, sizeof(float) * (size_t)p->numel);
        free(save);
        double num = (lp - lm) / (2.0 * eps);
        double err = fabs(num - want) / (2e-3 + 3e-2 * fabs(want));
        if (err > worst) worst = err;
        test_checks++;
        if (err > 1.0) {
            test_failures++;
            fprintf(stderr, "  %s: directional analytic %.6g numeric %.6g\n", p->name, want, num);
        }
        /* the largest entry element-wise */
        long kmax = 0;
        for (long k = 1; k < p->numel; k++)
            if (fabsf(gp[k]) > fabsf(gp[kmax])) kmax = k;
        gc_check(p->name, p->data + kmax, 1, gp + kmax, fd_loss, &c, 1e-3f, 2e-3, 3e-2, 1);
    }
    printf("  %d trainable tensors, worst directional err/tol %.3f\n", ntrain, worst);
    CHECK(ntrain > 0);
    free(g);
    free(u);
    model_free(&m);
}

/* 20 AdamW steps; returns the loss curve */
static void run_steps(int mode, uint64_t seed, float *curve, int steps) {
    model_config cfg = test_config();
    model m;
    model_init(&m, &cfg, seed);
    test_batch tb;
    cg_rng r;
    cg_rng_seed(&r, seed + 1);
    adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    for (int s = 0; s < steps; s++) {
        make_batch(&tb, &r, cfg.vocab);
        model_losses l;
        model_zero_grad(&m);
        model_forward(&m, &tb.b, mode, &l);
        model_backward(&m);
        model_clip_grad(&m, 1.0f);
        model_adamw_step(&m, &hp, lr_cosine(s, 3, steps, 3e-3f, 3e-4f));
        curve[s] = l.loss;
    }
    model_free(&m);
}

/* Same seed: bitwise the same loss curve; another seed: another curve. (Another thread count gives
 * the same bits too: test_threads.c.) */
static void test_determinism(void) {
    for (int mode = MODE_LM; mode <= MODE_INSTRUCT; mode++) {
        float a[20], b[20], c[20];
        run_steps(mode, 5, a, 20);
        run_steps(mode, 5, b, 20);
        run_steps(mode, 6, c, 20);
        CHECK(memcmp(a, b, sizeof a) == 0);
        CHECK(memcmp(a, c, sizeof a) != 0); /* the seed matters */
        printf("determinism %s: step 0 %.6f step 19 %.6f (bitwise equal over 20 steps: %s)\n",
               mode_name(mode), a[0], a[19], memcmp(a, b, sizeof a) ? "no" : "yes");
    }
}

/* A learnable task through the whole image path: each image is a flat colour of class c (0-3),
 * the text is "<bos> w_c <eos>" with w_c = token 4+c, targets w_c and <eos>, content token w_c.
 * instruct (adapter + LM) must fit it; align (adapter only, L_gen + L_con against a frozen random
 * LM) must lower both losses, L_con clearly. Averages over the first and last 10 of 150 steps. */
static void test_learns(int mode) {
    model_config cfg = test_config();
    model m;
    model_init(&m, &cfg, 3);
    enum { B = 8, T = 3, STEPS = 150 };
    static uint8_t img[B * 16 * 16 * 3], content[B * T];
    int tok[B * T], tgt[B * T];
    cg_rng r;
    cg_rng_seed(&r, 4);
    adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.0f};
    double first[3] = {0}, last[3] = {0}; /* loss, gen, con */
    for (int s = 0; s < STEPS; s++) {
        for (int b = 0; b < B; b++) {
            int c = (int)cg_rng_below(&r, 4);
            for (int i = 0; i < 16 * 16; i++)
                for (int ch = 0; ch < 3; ch++)
                    img[(b * 256 + i) * 3 + ch] = (uint8_t)(ch == c % 3 ? 200 : 40 + 60 * (c / 3));
            int *tk = tok + b * T, *tg = tgt + b * T;
            tk[0] = 1, tk[1] = 4 + c, tk[2] = 2;
            tg[0] = 4 + c, tg[1] = 2, tg[2] = -1;
            content[b * T] = 0, content[b * T + 1] = 1, content[b * T + 2] = 0;
        }
        model_batch bt = {.B = B, .T = T, .images_u8 = img, .tokens = tok, .targets = tgt,
                          .content = content};
        model_losses l;
        model_zero_grad(&m);
        CHECK(model_forward(&m, &bt, mode, &l) == CG_OK);
        model_backward(&m);
        model_clip_grad(&m, 1.0f);
        model_adamw_step(&m, &hp, 3e-3f);
        double v[3] = {l.loss, l.gen, l.con};
        for (int k = 0; k < 3; k++) {
            if (s < 10) first[k] += v[k] / 10;
            if (s >= STEPS - 10) last[k] += v[k] / 10;
        }
    }
    printf("learning smoke %s: loss %.4f -> %.4f (L_gen %.4f -> %.4f, L_con %.4f -> %.4f)\n",
           mode_name(mode), first[0], last[0], first[1], last[1], first[2], last[2]);
    if (mode == MODE_INSTRUCT) {
        CHECK(first[0] > 1.5);
        CHECK(last[0] < 0.1 * first[0]);
    } else {
        /* a frozen random LM is hard to steer through 16 visual tokens: L_gen only has to move;
         * L_con's floor is ~ln 2 here (each caption appears ~twice in a batch of 8) */
        CHECK(last[1] < first[1]);
        CHECK(last[2] < 0.8 * first[2]);
    }
    model_free(&m);
}

static void test_eval_and_errors(void) {
    model_config cfg = test_config();
    model m;
    model_init(&m, &cfg, 9);
    test_batch tb;
    cg_rng r;
    cg_rng_seed(&r, 2);
    make_batch(&tb, &r, cfg.vocab);
    /* per-row log-likelihood sums to -L_gen·n */
    double lp[B_];
    int cnt[B_];
    model_losses l;
    CHECK(model_forward(&m, &tb.b, MODE_INSTRUCT, &l) == CG_OK);
    CHECK(model_sequence_logprob(&m, &tb.b, MODE_INSTRUCT, lp, cnt) == CG_OK);
    CHECK_CLOSE(-(lp[0] + lp[1] + lp[2]) / (cnt[0] + cnt[1] + cnt[2]), l.gen, 1e-5, 1e-5);
    CHECK(cnt[0] == 5);
    /* an align-mode evaluation needs no content mask and gives the same numbers */
    model_batch nocontent = tb.b;
    nocontent.content = NULL;
    double lp2[B_];
    CHECK(model_sequence_logprob(&m, &nocontent, MODE_ALIGN, lp2, cnt) == CG_OK);
    CHECK(lp2[1] == lp[1]);
    /* greedy generation agrees with the argmax of the full logits */
    int P = model_num_patches(&m), V = cfg.vocab;
    float *logits = malloc(sizeof(float) * B_ * (P + T_) * V);
    CHECK(model_logits(&m, &tb.b, MODE_INSTRUCT, logits) == CG_OK);
    int plen[B_] = {3, 5, 7}, gen[B_ * 2];
    CHECK(model_generate(&m, &tb.b, MODE_INSTRUCT, plen, 2, gen) == CG_OK);
    for (int b = 0; b < B_; b++) {
        const float *z = logits + ((long)b * (P + T_) + P + plen[b] - 1) * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (z[v] > z[best]) best = v;
        CHECK(gen[b * 2] == best);
    }
    /* embeddings: s = v̄·t̄ is what L_con uses; t̄ is a mean of unit vectors so |t̄| <= 1 */
    float vbar[B_ * 32], tbar[B_ * 32];
    CHECK(model_image_embed(&m, &tb.b, vbar) == CG_OK);
    CHECK(model_caption_embed(&m, &tb.b, tbar) == CG_OK);
    for (int b = 0; b < B_; b++) {
        CHECK(gc_dot(vbar + b * 32, vbar + b * 32, 32) <= 1.0 + 1e-5);
        CHECK(gc_dot(tbar + b * 32, tbar + b * 32, 32) <= 1.0 + 1e-5);
        CHECK(gc_dot(tbar + b * 32, tbar + b * 32, 32) > 0.0);
    }
    /* bad input: clear errors, no state change needed */
    model_batch bad = tb.b;
    int badtok[B_ * T_];
    memcpy(badtok, tb.tok, sizeof badtok);
    badtok[4] = cfg.vocab;
    bad.tokens = badtok;
    CHECK(model_forward(&m, &bad, MODE_INSTRUCT, &l) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "outside the vocabulary") != NULL);
    bad = tb.b;
    bad.images_u8 = NULL;
    CHECK(model_forward(&m, &bad, MODE_ALIGN, &l) == CG_EUSER);
    bad = tb.b;
    bad.T = cfg.ctx; /* 16 visual + 24 text > ctx 24 */
    CHECK(model_forward(&m, &bad, MODE_INSTRUCT, &l) == CG_EUSER);
    bad = tb.b;
    bad.content = NULL;
    CHECK(model_forward(&m, &bad, MODE_ALIGN, &l) == CG_EUSER);
    model_config badcfg = cfg;
    badcfg.pool = 3;
    model m2;
    CHECK(model_init(&m2, &badcfg, 1) == CG_EUSER);
    CHECK(model_config_preset(&badcfg, "huge") == CG_EUSER);
    CHECK(model_config_preset(&badcfg, "tiny") == CG_OK && badcfg.lm_dim == 128);
    /* evaluations keep no per-layer weight-gradient inputs: a fresh model's arenas do not grow
     * from a log-likelihood pass, and do from a training forward of a mode that trains the LM */
    model m5;
    model_init(&m5, &cfg, 3);
    CHECK(model_sequence_logprob(&m5, &tb.b, MODE_INSTRUCT, lp, cnt) == CG_OK);
    double eval_mb = model_arena_mb(&m5);
    CHECK(model_forward(&m5, &tb.b, MODE_ALIGN, &l) == CG_OK); /* LM frozen: still no growth */
    CHECK(model_arena_mb(&m5) == eval_mb);
    CHECK(model_forward(&m5, &tb.b, MODE_INSTRUCT, &l) == CG_OK);
    CHECK(model_arena_mb(&m5) > eval_mb);
    model_free(&m5);
    /* names */
    CHECK(model_find_param(&m, "lm.h.1.attn.qkv.w") &&
          model_find_param(&m, "lm.h.1.attn.qkv.w")->shape[0] == 96);
    CHECK(model_find_param(&m, "con.logit_scale") != NULL);
    CHECK(model_find_param(&m, "lm.h.2.ln1.w") == NULL);
    /* stage names, adapters, copying a stage's tensors into the next stage's model */
    int mode = -1, ad = -1;
    CHECK(model_mode_parse("vit_pretrain", &mode) == CG_OK && mode == MODE_CLIP);
    CHECK(model_mode_parse("lm", &mode) == CG_OK && mode == MODE_LM);
    CHECK(model_mode_parse("dance", &mode) == CG_EUSER);
    CHECK_STR(model_mode_name(MODE_INSTRUCT), "instruct");
    CHECK(model_adapter_parse("linear", &ad) == CG_OK && ad == ADAPTER_LINEAR);
    CHECK(model_adapter_parse("mlp3x", &ad) == CG_EUSER);
    model m3;
    CHECK(model_init(&m3, &cfg, 10) == CG_OK);
    CHECK(model_copy_params(&m3, &m, "vit.") == CG_OK);
    CHECK(memcmp(model_find_param(&m3, "vit.h.1.mlp.fc.w")->data,
                 model_find_param(&m, "vit.h.1.mlp.fc.w")->data, sizeof(float) * 16 * 64) == 0);
    CHECK(memcmp(model_find_param(&m3, "lm.wte")->data, model_find_param(&m, "lm.wte")->data,
                 sizeof(float) * 20 * 32) != 0);
    model_config other = cfg;
    other.lm_dim = 48;
    model m4;
    CHECK(model_init(&m4, &other, 1) == CG_OK);
    CHECK(model_copy_params(&m4, &m, "lm.") == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "lm.wte") != NULL);
    model_free(&m3);
    model_free(&m4);
    free(logits);
    model_free(&m);
}

/* Nothing is allocated inside the step loop: this binary counts every malloc/calloc/realloc
 * (glibc's own entry points behind a counter; not under ASan, which intercepts them itself), and
 * after one warm-up step (arena, OpenMP threads, OpenBLAS buffers) 5 more steps of each mode make
 * no call at all. */
#if !defined(__SANITIZE_ADDRESS__)
extern void *__libc_malloc(size_t), *__libc_calloc(size_t, size_t), *__libc_realloc(void *, size_t);
static long n_allocs;
void *malloc(size_t n) {
    return __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED), __libc_malloc(n);
}
void *calloc(size_t c, size_t n) {
    return __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED), __libc_calloc(c, n);
}
void *realloc(void *p, size_t n) {
    return __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED), __libc_realloc(p, n);
}

static void test_no_alloc_in_loop(void) {
    model_config cfg = test_config();
    model m;
    model_init(&m, &cfg, 12);
    test_batch tb;
    cg_rng r;
    cg_rng_seed(&r, 13);
    make_batch(&tb, &r, cfg.vocab);
    adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    for (int mode = MODE_LM; mode <= MODE_INSTRUCT; mode++) {
        long before = 0;
        for (int s = 0; s < 6; s++) {
            if (s == 1) before = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED);
            model_losses l;
            model_zero_grad(&m);
            model_forward(&m, &tb.b, mode, &l);
            model_backward(&m);
            model_clip_grad(&m, 1.0f);
            model_adamw_step(&m, &hp, 1e-3f);
        }
        long made = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED) - before;
        if (made) fprintf(stderr, "mode %s: %ld allocations in 5 steps\n", mode_name(mode), made);
        CHECK(made == 0);
    }
    /* the counter does count: a forward of a larger batch grows the arena */
    long before = n_allocs;
    model_reserve(&m, 2 * B_, T_);
    CHECK(n_allocs > before);
    model_free(&m);
}
#else
static void test_no_alloc_in_loop(void) {}
#endif

static void test_schedule(void) {
    CHECK_CLOSE(lr_cosine(0, 10, 110, 1e-3f, 1e-4f), 1e-4, 1e-9, 0);    /* warmup 1/10 */
    CHECK_CLOSE(lr_cosine(9, 10, 110, 1e-3f, 1e-4f), 1e-3, 1e-9, 0);    /* warmup done */
    CHECK_CLOSE(lr_cosine(10, 10, 110, 1e-3f, 1e-4f), 1e-3, 1e-9, 0);   /* cosine start */
    CHECK_CLOSE(lr_cosine(60, 10, 110, 1e-3f, 1e-4f), 5.5e-4, 1e-9, 0); /* halfway */
    CHECK_CLOSE(lr_cosine(110, 10, 110, 1e-3f, 1e-4f), 1e-4, 1e-9, 0);  /* the end */
    CHECK_CLOSE(lr_cosine(0, 0, 0, 1e-3f, 0.0f), 0.0, 1e-9, 0);         /* degenerate */
    CHECK(lr_cosine(30, 10, 110, 1e-3f, 1e-4f) > lr_cosine(31, 10, 110, 1e-3f, 1e-4f));
}

int main(void) {
    test_schedule();
    test_no_alloc_in_loop();
    for (int mode = MODE_LM; mode <= MODE_INSTRUCT; mode++) check_mode(mode);
    test_eval_and_errors();
    test_determinism();
    test_learns(MODE_INSTRUCT);
    test_learns(MODE_ALIGN);
    return test_summary("train_model");
}
