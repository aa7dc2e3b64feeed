/* test_kernels.c: finite-difference gradient checks of every CPU kernel (kernels/kernels.h) and of
 * the composite pieces of the losses (L_con with learnable τ, the bag-of-words CLIP text side).
 * Each check: L = Σ w·out for fixed random w; analytic gradients from the backward kernel with
 * dout = w; central differences in float inputs with L summed in double.
 * Tolerance: |analytic - numeric| <= atol + rtol·|numeric| with eps = 1e-2 or 1e-3 (stated per
 * check); float32 forward passes make ~1e-3 relative the honest limit of such checks — the exact
 * comparison is the PyTorch reference test. */
#include "kernels/kernels.h"
#include "tests/train/gradcheck.h"

#include <string.h>

static cg_rng rng;

static float *rnd(long n, float scale) {
    float *x = malloc(sizeof(float) * (size_t)n);
    gc_fill(x, n, &rng, scale);
    return x;
}
static float *zeros(long n) { return calloc((size_t)n, sizeof(float)); }

/* ---- matmul ---- */
typedef struct {
    int N, C, OC;
    float *inp, *w, *b, *out, *dout;
} mm_ctx;
static double mm_loss(void *p) {
    mm_ctx *c = p;
    matmul_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
    return gc_dot(c->out, c->dout, (long)c->N * c->OC);
}
static void test_matmul(void) {
    mm_ctx c = {.N = 7, .C = 5, .OC = 6};
    c.inp = rnd(c.N * c.C, 1), c.w = rnd(c.OC * c.C, 1), c.b = rnd(c.OC, 1);
    c.out = zeros(c.N * c.OC), c.dout = rnd(c.N * c.OC, 1);
    float *di = zeros(c.N * c.C), *dw = zeros(c.OC * c.C), *db = zeros(c.OC);
    matmul_forward(c.out, c.inp, c.w, c.b, c.N, c.C, c.OC);
    matmul_backward(di, dw, db, c.dout, c.inp, c.w, c.N, c.C, c.OC);
    gc_check("matmul.dinp", c.inp, c.N * c.C, di, mm_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    gc_check("matmul.dweight", c.w, c.OC * c.C, dw, mm_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    gc_check("matmul.dbias", c.b, c.OC, db, mm_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    /* NULL gradients are skipped and the others still accumulate */
    float *dw2 = zeros(c.OC * c.C);
    memcpy(dw2, dw, sizeof(float) * c.OC * c.C);
    matmul_backward(NULL, dw2, NULL, c.dout, c.inp, c.w, c.N, c.C, c.OC);
    CHECK_CLOSE(dw2[3], 2.0 * dw[3], 1e-5, 1e-5);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.dout), free(di), free(dw), free(db),
        free(dw2);
}

/* ---- layernorm ---- */
typedef struct {
    int N, C;
    float *inp, *w, *b, *out, *mean, *rstd, *dout;
} ln_ctx;
static double ln_loss(void *p) {
    ln_ctx *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C);
    return gc_dot(c->out, c->dout, (long)c->N * c->C);
}
static void test_layernorm(void) {
    ln_ctx c = {.N = 6, .C = 16};
    c.inp = rnd(c.N * c.C, 1), c.w = rnd(c.C, 1), c.b = rnd(c.C, 1), c.out = zeros(c.N * c.C);
    c.mean = zeros(c.N), c.rstd = zeros(c.N), c.dout = rnd(c.N * c.C, 1);
    float *di = zeros(c.N * c.C), *dw = zeros(c.C), *db = zeros(c.C);
    ln_loss(&c);
    layernorm_backward(di, dw, db, c.dout, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    gc_check("layernorm.dinp", c.inp, c.N * c.C, di, ln_loss, &c, 1e-3f, 1e-3, 1e-2, 1000);
    gc_check("layernorm.dweight", c.w, c.C, dw, ln_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    gc_check("layernorm.dbias", c.b, c.C, db, ln_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.mean), free(c.rstd), free(c.dout);
    free(di), free(dw), free(db);
}

/* ---- gelu ---- */
typedef struct {
    int N;
    float *inp, *out, *dout;
} gelu_ctx;
static double gelu_loss(void *p) {
    gelu_ctx *c = p;
    gelu_forward(c->out, c->inp, c->N);
    return gc_dot(c->out, c->dout, c->N);
}
static void test_gelu(void) {
    gelu_ctx c = {.N = 64};
    c.inp = rnd(c.N, 2), c.out = zeros(c.N), c.dout = rnd(c.N, 1);
    float *di = zeros(c.N);
    gelu_backward(di, c.inp, c.dout, c.N);
    gc_check("gelu.dinp", c.inp, c.N, di, gelu_loss, &c, 1e-3f, 1e-3, 1e-2, 1000);
    /* the tanh form at a known point: gelu(1) = 0.841192 */
    float one = 1.0f, g;
    gelu_forward(&g, &one, 1);
    CHECK_CLOSE(g, 0.8411920, 1e-6, 0);
    free(c.inp), free(c.out), free(c.dout), free(di);
}

/* ---- attention ---- */
typedef struct {
    int B, T, C, NH, causal;
    float *qkv, *out, *att, *dout;
} att_ctx;
static double att_loss(void *p) {
    att_ctx *c = p;
    attention_forward(c->out, c->att, c->qkv, c->B, c->T, c->C, c->NH, c->causal);
    return gc_dot(c->out, c->dout, (long)c->B * c->T * c->C);
}
static void test_attention(int causal) {
    att_ctx c = {.B = 2, .T = 5, .C = 8, .NH = 2, .causal = causal};
    long n = (long)c.B * c.T * 3 * c.C;
    c.qkv = rnd(n, 1), c.out = zeros(c.B * c.T * c.C), c.att = zeros(c.B * c.NH * c.T * c.T);
    c.dout = rnd(c.B * c.T * c.C, 1);
    float *dq = zeros(n), *datt = zeros(c.B * c.NH * c.T * c.T);
    att_loss(&c);
    attention_backward(dq, datt, c.dout, c.qkv, c.att, c.B, c.T, c.C, c.NH, c.causal);
    gc_check(causal ? "attention(causal).dqkv" : "attention(bidir).dqkv", c.qkv, n, dq, att_loss,
             &c, 1e-3f, 1e-3, 1e-2, 1000);
    if (causal) {
        /* the first position attends to itself only: out[0] = v[0] for every head */
        CHECK_CLOSE(c.out[0], c.qkv[2 * c.C], 1e-6, 1e-6);
        CHECK(c.att[1] == 0.0f);
    }
    free(c.qkv), free(c.out), free(c.att), free(c.dout), free(dq), free(datt);
}

/* ---- encoder (visual tokens + token embeddings + positions) ---- */
typedef struct {
    int B, T, P, C;
    int *tok;
    float *vis, *wte, *wpe, *out, *dout;
} enc_ctx;
static double enc_loss(void *p) {
    enc_ctx *c = p;
    encoder_forward(c->out, c->vis, c->tok, c->wte, c->wpe, c->B, c->T, c->P, c->C);
    return gc_dot(c->out, c->dout, (long)c->B * c->T * c->C);
}
static void test_encoder(void) {
    enc_ctx c = {.B = 2, .T = 6, .P = 2, .C = 4};
    int V = 5;
    int tok[8] = {1, 3, 3, 0, 4, 1, 1, 2};
    c.tok = tok;
    c.vis = rnd(c.B * c.P * c.C, 1), c.wte = rnd(V * c.C, 1), c.wpe = rnd(c.T * c.C, 1);
    c.out = zeros(c.B * c.T * c.C), c.dout = rnd(c.B * c.T * c.C, 1);
    float *dv = zeros(c.B * c.P * c.C), *dwte = zeros(V * c.C), *dwpe = zeros(c.T * c.C);
    encoder_backward(dv, dwte, dwpe, c.dout, c.tok, c.B, c.T, c.P, c.C);
    gc_check("encoder.dvis", c.vis, c.B * c.P * c.C, dv, enc_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    gc_check("encoder.dwte", c.wte, V * c.C, dwte, enc_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    gc_check("encoder.dwpe", c.wpe, c.T * c.C, dwpe, enc_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    free(c.vis), free(c.wte), free(c.wpe), free(c.out), free(c.dout), free(dv), free(dwte),
        free(dwpe);
}

/* ---- patch embedding: patchify + matmul + positions ---- */
typedef struct {
    int B, S, p, P, K, D;
    uint8_t *img;
    float *patches, *w, *b, *pos, *emb, *out, *dout;
} pe_ctx;
static double pe_loss(void *q) {
    pe_ctx *c = q;
    patchify_forward(c->patches, c->img, NULL, c->B, c->S, c->p);
    matmul_forward(c->emb, c->patches, c->w, c->b, c->B * c->P, c->K, c->D);
    encoder_forward(c->out, c->emb, NULL, NULL, c->pos, c->B, c->P, c->P, c->D);
    return gc_dot(c->out, c->dout, (long)c->B * c->P * c->D);
}
static void test_patch_embed(void) {
    pe_ctx c = {.B = 2, .S = 8, .p = 4, .D = 5};
    c.P = 4, c.K = 48;
    long npx = (long)c.B * c.S * c.S * 3;
    c.img = malloc((size_t)npx);
    for (long i = 0; i < npx; i++) c.img[i] = (uint8_t)cg_rng_below(&rng, 256);
    c.patches = zeros(c.B * c.P * c.K), c.w = rnd(c.D * c.K, 0.1f), c.b = rnd(c.D, 1);
    c.pos = rnd(c.P * c.D, 1), c.emb = zeros(c.B * c.P * c.D), c.out = zeros(c.B * c.P * c.D);
    c.dout = rnd(c.B * c.P * c.D, 1);
    pe_loss(&c);
    /* patch q=3 of image 1 (grid row 1, col 1), value (y=2, x=1, ch=2) */
    int b = 1, gy = 1, gx = 1, y = 2, x = 1, ch = 2;
    float want = c.img[(((long)b * c.S + gy * 4 + y) * c.S + gx * 4 + x) * 3 + ch] / 255.0f - 0.5f;
    CHECK_CLOSE(c.patches[((long)b * c.P + 3) * c.K + (y * 4 + x) * 3 + ch], want, 1e-7, 0);
    /* float images (already normalised) give the same patches */
    float *imgf = malloc(sizeof(float) * (size_t)npx), *pf = zeros(c.B * c.P * c.K);
    for (long i = 0; i < npx; i++) imgf[i] = c.img[i] / 255.0f - 0.5f;
    patchify_forward(pf, NULL, imgf, c.B, c.S, c.p);
    CHECK(memcmp(pf, c.patches, sizeof(float) * c.B * c.P * c.K) == 0);
    free(imgf), free(pf);
    float *demb = zeros(c.B * c.P * c.D), *dw = zeros(c.D * c.K), *db = zeros(c.D),
          *dpos = zeros(c.P * c.D);
    encoder_backward(demb, NULL, dpos, c.dout, NULL, c.B, c.P, c.P, c.D);
    matmul_backward(NULL, dw, db, demb, c.patches, c.w, c.B * c.P, c.K, c.D);
    gc_check("patch_embed.dweight", c.w, c.D * c.K, dw, pe_loss, &c, 1e-2f, 1e-3, 1e-3, 300);
    gc_check("patch_embed.dbias", c.b, c.D, db, pe_loss, &c, 1e-2f, 1e-3, 1e-3, 300);
    gc_check("patch_embed.dpos", c.pos, c.P * c.D, dpos, pe_loss, &c, 1e-2f, 1e-3, 1e-3, 300);
    free(c.img), free(c.patches), free(c.w), free(c.b), free(c.pos), free(c.emb), free(c.out);
    free(c.dout), free(demb), free(dw), free(db), free(dpos);
}

/* ---- classifier (tied head + softmax + CE) ---- */
typedef struct {
    int N, C, V;
    int *tg;
    float *x, *wte, *losses, *probs, *wl;
} cls_ctx;
static double cls_loss(void *p) {
    cls_ctx *c = p;
    classifier_forward(c->losses, c->probs, c->x, c->wte, c->tg, c->N, c->C, c->V);
    return gc_dot(c->losses, c->wl, c->N);
}
static void test_classifier(void) {
    cls_ctx c = {.N = 5, .C = 6, .V = 9};
    int tg[5] = {0, 8, 3, 3, 5};
    c.tg = tg;
    c.x = rnd(c.N * c.C, 1), c.wte = rnd(c.V * c.C, 1), c.losses = zeros(c.N);
    c.probs = zeros(c.N * c.V), c.wl = zeros(c.N);
    for (int i = 0; i < c.N; i++) c.wl[i] = 0.7f; /* backward of 0.7·Σ losses */
    float *dx = zeros(c.N * c.C), *dw = zeros(c.V * c.C);
    cls_loss(&c);
    /* loss = -log softmax at the target, recomputed in double */
    double z[9], mx = -1e30, s = 0;
    for (int j = 0; j < c.V; j++) {
        z[j] = gc_dot(c.x + 2 * c.C, c.wte + j * c.C, c.C);
        mx = z[j] > mx ? z[j] : mx;
    }
    for (int j = 0; j < c.V; j++) s += exp(z[j] - mx);
    CHECK_CLOSE(c.losses[2], -(z[3] - mx - log(s)), 1e-5, 1e-5);
    classifier_backward(dx, dw, c.probs, c.x, c.wte, c.tg, 0.7f, c.N, c.C, c.V);
    gc_check("classifier.dx", c.x, c.N * c.C, dx, cls_loss, &c, 1e-2f, 1e-3, 1e-2, 1000);
    gc_check("classifier.dwte", c.wte, c.V * c.C, dw, cls_loss, &c, 1e-2f, 1e-3, 1e-2, 1000);
    free(c.x), free(c.wte), free(c.losses), free(c.probs), free(c.wl), free(dx), free(dw);
}

/* ---- avgpool, l2norm, masked mean, embedding: one composite each ---- */
typedef struct {
    int B, gh, gw, k, C;
    float *inp, *out, *dout;
} pool_ctx;
static double pool_loss(void *p) {
    pool_ctx *c = p;
    avgpool_forward(c->out, c->inp, c->B, c->gh, c->gw, c->k, c->C);
    return gc_dot(c->out, c->dout, (long)c->B * (c->gh / c->k) * (c->gw / c->k) * c->C);
}
static void test_avgpool(void) {
    pool_ctx c = {.B = 2, .gh = 4, .gw = 4, .k = 2, .C = 3};
    long n = (long)c.B * 16 * c.C, no = (long)c.B * 4 * c.C;
    c.inp = rnd(n, 1), c.out = zeros(no), c.dout = rnd(no, 1);
    pool_loss(&c);
    /* output window (row 1, col 0) of image 0, channel 1 = mean of positions 8, 9, 12, 13 */
    double want = (c.inp[8 * 3 + 1] + c.inp[9 * 3 + 1] + c.inp[12 * 3 + 1] + c.inp[13 * 3 + 1]) / 4;
    CHECK_CLOSE(c.out[2 * 3 + 1], want, 1e-6, 1e-6);
    float *di = zeros(n);
    avgpool_backward(di, c.dout, c.B, c.gh, c.gw, c.k, c.C);
    gc_check("avgpool.dinp", c.inp, n, di, pool_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    free(c.inp), free(c.out), free(c.dout), free(di);
}

typedef struct {
    int N, C;
    float *inp, *out, *rn, *dout;
} l2_ctx;
static double l2_loss(void *p) {
    l2_ctx *c = p;
    l2norm_forward(c->out, c->rn, c->inp, c->N, c->C);
    return gc_dot(c->out, c->dout, (long)c->N * c->C);
}
static void test_l2norm(void) {
    l2_ctx c = {.N = 4, .C = 7};
    long n = (long)c.N * c.C;
    c.inp = rnd(n, 1), c.out = zeros(n), c.rn = zeros(c.N), c.dout = rnd(n, 1);
    l2_loss(&c);
    CHECK_CLOSE(gc_dot(c.out, c.out, c.C), 1.0, 1e-6, 0);
    float *di = zeros(n);
    l2norm_backward(di, c.dout, c.out, c.rn, c.N, c.C);
    gc_check("l2norm.dinp", c.inp, n, di, l2_loss, &c, 1e-3f, 1e-3, 1e-2, 1000);
    free(c.inp), free(c.out), free(c.rn), free(c.dout), free(di);
}

typedef struct {
    int B, T, C;
    const uint8_t *mask;
    float *inp, *out, *dout;
} mean_ctx;
static double mean_loss(void *p) {
    mean_ctx *c = p;
    masked_mean_forward(c->out, c->inp, c->mask, c->B, c->T, c->C);
    return gc_dot(c->out, c->dout, (long)c->B * c->C);
}
static void test_masked_mean(void) {
    static const uint8_t mask[12] = {1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0}; /* row 1 empty */
    for (int masked = 0; masked < 2; masked++) {
        mean_ctx c = {.B = 3, .T = 4, .C = 3, .mask = masked ? mask : NULL};
        long n = (long)c.B * c.T * c.C;
        c.inp = rnd(n, 1), c.out = zeros(c.B * c.C), c.dout = rnd(c.B * c.C, 1);
        mean_loss(&c);
        if (masked) {
            CHECK(c.out[3] == 0.0f); /* a row without content tokens gives 0 */
            CHECK_CLOSE(c.out[0], (c.inp[0] + c.inp[6] + c.inp[9]) / 3.0, 1e-6, 1e-6);
        }
        float *di = zeros(n);
        masked_mean_backward(di, c.dout, c.mask, c.B, c.T, c.C);
        gc_check(masked ? "masked_mean.dinp" : "mean.dinp", c.inp, n, di, mean_loss, &c, 1e-2f,
                 1e-3, 1e-3, 1000);
        free(c.inp), free(c.out), free(c.dout), free(di);
    }
}

/* ---- contrastive (symmetric InfoNCE) with learnable scale ---- */
typedef struct {
    int B, D;
    float *a, *b, *probs, ls;
} con_ctx;
static double con_loss(void *p) {
    con_ctx *c = p;
    return contrastive_forward(c->probs, c->a, c->b, c->ls, c->B, c->D);
}
static void test_contrastive(void) {
    con_ctx c = {.B = 4, .D = 5, .ls = 1.2f};
    c.a = rnd(c.B * c.D, 0.5f), c.b = rnd(c.B * c.D, 0.5f), c.probs = zeros(2 * c.B * c.B);
    double L = con_loss(&c);
    /* recompute in double: ½ (CE rows + CE columns) */
    double sc = exp(c.ls), tot = 0;
    for (int dir = 0; dir < 2; dir++)
        for (int i = 0; i < c.B; i++) {
            double mx = -1e30, s = 0, z[4];
            for (int j = 0; j < c.B; j++) {
                z[j] = sc * (dir ? gc_dot(c.a + j * c.D, c.b + i * c.D, c.D)
                                 : gc_dot(c.a + i * c.D, c.b + j * c.D, c.D));
                mx = z[j] > mx ? z[j] : mx;
            }
            for (int j = 0; j < c.B; j++) s += exp(z[j] - mx);
            tot += -(z[i] - mx - log(s));
        }
    CHECK_CLOSE(L, tot / (2 * c.B), 1e-5, 1e-5);
    float *da = zeros(c.B * c.D), *db = zeros(c.B * c.D), dls = 0;
    contrastive_backward(da, db, &dls, c.probs, c.a, c.b, c.ls, 1.0f, c.B, c.D);
    gc_check("contrastive.da", c.a, c.B * c.D, da, con_loss, &c, 1e-3f, 1e-3, 1e-2, 1000);
    gc_check("contrastive.db", c.b, c.B * c.D, db, con_loss, &c, 1e-3f, 1e-3, 1e-2, 1000);
    gc_check("contrastive.dlogit_scale", &c.ls, 1, &dls, con_loss, &c, 1e-3f, 1e-3, 1e-2, 1000);
    free(c.a), free(c.b), free(c.probs), free(da), free(db);
}

/* ---- L_con end to end: visual tokens → pool → unit → mean (v̄); wte rows of content tokens →
 * unit → mean (t̄); symmetric InfoNCE with a learnable log-scale ---- */
typedef struct {
    int B, g, k, d, T;
    int *tok;
    const uint8_t *content;
    float *vis, *wte, ls;
    float *pooled, *pu, *prn, *vbar, *te, *tu, *trn, *tbar, *probs;
} lcon_ctx;
static double lcon_loss(void *p) {
    lcon_ctx *c = p;
    int Pp = (c->g / c->k) * (c->g / c->k);
    avgpool_forward(c->pooled, c->vis, c->B, c->g, c->g, c->k, c->d);
    l2norm_forward(c->pu, c->prn, c->pooled, c->B * Pp, c->d);
    masked_mean_forward(c->vbar, c->pu, NULL, c->B, Pp, c->d);
    embedding_forward(c->te, c->tok, c->wte, c->B * c->T, c->d);
    l2norm_forward(c->tu, c->trn, c->te, c->B * c->T, c->d);
    masked_mean_forward(c->tbar, c->tu, c->content, c->B, c->T, c->d);
    return contrastive_forward(c->probs, c->vbar, c->tbar, c->ls, c->B, c->d);
}
static void test_lcon(void) {
    static int tok[12] = {1, 4, 2, 0, 3, 3, 5, 0, 2, 6, 1, 0};
    static const uint8_t content[12] = {1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 0};
    lcon_ctx c = {.B = 3,
                  .g = 4,
                  .k = 2,
                  .d = 6,
                  .T = 4,
                  .tok = tok,
                  .content = content,
                  .ls = logf(1.0f / 0.07f)};
    int V = 7, P = 16, Pp = 4;
    c.vis = rnd(c.B * P * c.d, 1), c.wte = rnd(V * c.d, 1);
    c.pooled = zeros(c.B * Pp * c.d), c.pu = zeros(c.B * Pp * c.d), c.prn = zeros(c.B * Pp);
    c.vbar = zeros(c.B * c.d), c.te = zeros(c.B * c.T * c.d), c.tu = zeros(c.B * c.T * c.d);
    c.trn = zeros(c.B * c.T), c.tbar = zeros(c.B * c.d), c.probs = zeros(2 * c.B * c.B);
    lcon_loss(&c);
    float *dvbar = zeros(c.B * c.d), *dtbar = zeros(c.B * c.d), dls = 0;
    contrastive_backward(dvbar, dtbar, &dls, c.probs, c.vbar, c.tbar, c.ls, 1.0f, c.B, c.d);
    float *dpu = zeros(c.B * Pp * c.d), *dpool = zeros(c.B * Pp * c.d),
          *dvis = zeros(c.B * P * c.d);
    masked_mean_backward(dpu, dvbar, NULL, c.B, Pp, c.d);
    l2norm_backward(dpool, dpu, c.pu, c.prn, c.B * Pp, c.d);
    avgpool_backward(dvis, dpool, c.B, c.g, c.g, c.k, c.d);
    float *dtu = zeros(c.B * c.T * c.d), *dte = zeros(c.B * c.T * c.d), *dwte = zeros(V * c.d);
    masked_mean_backward(dtu, dtbar, c.content, c.B, c.T, c.d);
    l2norm_backward(dte, dtu, c.tu, c.trn, c.B * c.T, c.d);
    embedding_backward(dwte, dte, c.tok, c.B * c.T, c.d);
    CHECK(dwte[0 * c.d] == 0.0f && dwte[0 * c.d + 3] == 0.0f); /* pad token 0: not content */
    gc_check("L_con.dvisual", c.vis, c.B * P * c.d, dvis, lcon_loss, &c, 1e-3f, 1e-3, 2e-2, 1000);
    gc_check("L_con.dwte", c.wte, V * c.d, dwte, lcon_loss, &c, 1e-3f, 1e-3, 2e-2, 1000);
    gc_check("L_con.dlogit_scale", &c.ls, 1, &dls, lcon_loss, &c, 1e-3f, 1e-3, 2e-2, 1000);
    free(c.vis), free(c.wte), free(c.pooled), free(c.pu), free(c.prn), free(c.vbar), free(c.te);
    free(c.tu), free(c.trn), free(c.tbar), free(c.probs), free(dvbar), free(dtbar), free(dpu);
    free(dpool), free(dvis), free(dtu), free(dte), free(dwte);
}

/* ---- the CLIP caption side: bag of words → mean → linear → unit ---- */
typedef struct {
    int B, T, D;
    int *tok;
    const uint8_t *content;
    float *emb, *w, *b, *e, *mean, *proj, *u, *rn, *dout;
} bow_ctx;
static double bow_loss(void *p) {
    bow_ctx *c = p;
    embedding_forward(c->e, c->tok, c->emb, c->B * c->T, c->D);
    masked_mean_forward(c->mean, c->e, c->content, c->B, c->T, c->D);
    matmul_forward(c->proj, c->mean, c->w, c->b, c->B, c->D, c->D);
    l2norm_forward(c->u, c->rn, c->proj, c->B, c->D);
    return gc_dot(c->u, c->dout, (long)c->B * c->D);
}
static void test_bow(void) {
    static int tok[8] = {1, 2, 2, 0, 3, 1, 0, 0};
    static const uint8_t content[8] = {1, 1, 1, 0, 1, 1, 0, 0};
    bow_ctx c = {.B = 2, .T = 4, .D = 5, .tok = tok, .content = content};
    int V = 4;
    c.emb = rnd(V * c.D, 1), c.w = rnd(c.D * c.D, 1), c.b = rnd(c.D, 1), c.e = zeros(8 * c.D);
    c.mean = zeros(c.B * c.D), c.proj = zeros(c.B * c.D), c.u = zeros(c.B * c.D), c.rn = zeros(c.B);
    c.dout = rnd(c.B * c.D, 1);
    bow_loss(&c);
    float *du = c.dout, *dproj = zeros(c.B * c.D), *dmean = zeros(c.B * c.D), *de = zeros(8 * c.D);
    float *demb = zeros(V * c.D), *dw = zeros(c.D * c.D), *db = zeros(c.D);
    l2norm_backward(dproj, du, c.u, c.rn, c.B, c.D);
    matmul_backward(dmean, dw, db, dproj, c.mean, c.w, c.B, c.D, c.D);
    masked_mean_backward(de, dmean, c.content, c.B, c.T, c.D);
    embedding_backward(demb, de, c.tok, c.B * c.T, c.D);
    gc_check("bow.dwte", c.emb, V * c.D, demb, bow_loss, &c, 1e-3f, 1e-3, 1e-2, 1000);
    gc_check("bow.dproj_w", c.w, c.D * c.D, dw, bow_loss, &c, 1e-3f, 1e-3, 1e-2, 1000);
    gc_check("bow.dproj_b", c.b, c.D, db, bow_loss, &c, 1e-3f, 1e-3, 1e-2, 1000);
    free(c.emb), free(c.w), free(c.b), free(c.e), free(c.mean), free(c.proj), free(c.u), free(c.rn);
    free(c.dout), free(dproj), free(dmean), free(de), free(demb), free(dw), free(db);
}

/* ---- optimizer kernels ---- */
static void test_optim(void) {
    /* one AdamW step from zero moments moves each weight by lr·(sign(g) + wd·p) (bias-corrected) */
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.3f, -0.1f, 0.0f}, m[3] = {0}, v[3] = {0};
    adamw_update(p, g, m, v, 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
    CHECK_CLOSE(p[0], 1.0 - 0.1 * (1.0 + 0.01 * 1.0), 1e-6, 1e-6);
    CHECK_CLOSE(p[1], -2.0 - 0.1 * (-1.0 + 0.01 * -2.0), 1e-6, 1e-6);
    CHECK_CLOSE(p[2], 0.5 - 0.1 * (0.01 * 0.5), 1e-6, 1e-6);
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = (float)(i % 7) - 3.0f;
    double want = 0;
    for (int i = 0; i < 1000; i++) want += (double)x[i] * x[i];
    CHECK(sumsq(x, 1000) == want);
}

int main(void) {
    cg_rng_seed(&rng, 1234);
    test_matmul();
    test_layernorm();
    test_gelu();
    test_attention(1);
    test_attention(0);
    test_encoder();
    test_patch_embed();
    test_classifier();
    test_avgpool();
    test_l2norm();
    test_masked_mean();
    test_contrastive();
    test_lcon();
    test_bow();
    test_optim();
    return test_summary("train_kernels");
}
