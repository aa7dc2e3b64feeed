/* test_threads.c: the CPU training core gives the same bits for any OpenMP thread count. Every
 * kernel (forward and backward) and whole model steps (forward, backward, clipping, AdamW, in each
 * mode) run at 1, 2, 3 and 4 threads on awkward sizes (row counts that are a multiple of no chunk
 * or tile: 37, 1000, 2049) must give memcmp-identical outputs and gradients. A content-addressed
 * artifact must not depend on how many cores the machine that trained it had. */
#include "core/model.h"
#include "kernels/kernels.h"
#include "tests/train/gradcheck.h"
#include "util/util.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#define MAX_THREADS 4

/* ---- an output record: every float a case produces, concatenated ---- */
typedef struct {
    float *v;
    long n, cap;
} rec;

static void put(rec *o, const float *x, long n) {
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2;
        o->v = realloc(o->v, sizeof(float) * (size_t)o->cap);
        if (!o->v) abort();
    }
    memcpy(o->v + o->n, x, sizeof(float) * (size_t)n);
    o->n += n;
}

static float *rnd(cg_rng *r, long n, float scale) {
    float *x = malloc(sizeof(float) * (size_t)n);
    gc_fill(x, n, r, scale);
    return x;
}
static float *zeros(long n) { return calloc((size_t)n, sizeof(float)); }
static int *ints(cg_rng *r, long n, int below) {
    int *x = malloc(sizeof(int) * (size_t)n);
    for (long i = 0; i < n; i++) x[i] = (int)cg_rng_below(r, (uint32_t)below);
    return x;
}

typedef void (*case_fn)(int n, rec *out);

/* runs f(n) at 1..MAX_THREADS threads; all outputs must be bitwise those of 1 thread */
static void check_threads(const char *name, case_fn f, int n) {
    rec ref = {0};
    omp_set_num_threads(1);
    f(n, &ref);
    int ok = 1;
    for (int nt = 2; nt <= MAX_THREADS; nt++) {
        rec o = {0};
        omp_set_num_threads(nt);
        f(n, &o);
        if (o.n != ref.n || memcmp(o.v, ref.v, sizeof(float) * (size_t)o.n) != 0) {
            long i = 0, ndiff = 0;
            for (long k = 0; k < o.n && k < ref.n; k++)
                if (memcmp(o.v + k, ref.v + k, sizeof(float)) != 0 && !ndiff++) i = k;
            fprintf(stderr, "  %s n=%d: %d threads differ from 1 thread in %ld of %ld values "
                    "(first [%ld]: %.9g vs %.9g)\n", name, n, nt, ndiff, ref.n, i,
                    (double)(i < o.n ? o.v[i] : 0.0f), (double)(i < ref.n ? ref.v[i] : 0.0f));
            ok = 0;
        }
        free(o.v);
    }
    CHECK(ok);
    printf("  %-22s n=%-5d %8ld values  %s\n", name, n, ref.n, ok ? "identical at 1-4 threads"
                                                                : "DIFFER");
    free(ref.v);
}

/* ---- the kernels ---- */

static void case_gemm(int n, rec *out) {
    cg_rng r;
    cg_rng_seed(&r, (uint64_t)n);
    int N = 70, K = 45;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float *A = rnd(&r, (long)n * K, 1), *B = rnd(&r, (long)K * N, 1);
            float *C = rnd(&r, (long)n * N, 1);
            gemm(ta, tb, n, N, K, A, ta ? n : K, B, tb ? K : N, 1.0f, C, N);
            put(out, C, (long)n * N);
            free(A), free(B), free(C);
        }
}

static void case_matmul(int n, rec *out) {
    cg_rng r;
    cg_rng_seed(&r, (uint64_t)n + 1);
    int C = 48, OC = 131;
    float *x = rnd(&r, (long)n * C, 1), *w = rnd(&r, (long)OC * C, 0.2f), *b = rnd(&r, OC, 1);
    float *y = zeros((long)n * OC), *dy = rnd(&r, (long)n * OC, 1);
    float *dx = zeros((long)n * C), *dw = zeros((long)OC * C), *db = zeros(OC);
    matmul_forward(y, x, w, b, n, C, OC);
    matmul_backward(dx, dw, db, dy, x, w, n, C, OC);
    put(out, y, (long)n * OC), put(out, dx, (long)n * C), put(out, dw, (long)OC * C);
    put(out, db, OC);
    /* the transposed shape too: few rows, many output channels (dweight splits OC) */
    float *dw2 = zeros((long)n * C);
    matmul_backward(NULL, dw2, NULL, dy, w, w, OC, C, n); /* dout (OC,n), inp (OC,C): M = n */
    put(out, dw2, (long)n * C);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(dw2);
}

static void case_layernorm(int n, rec *out) {
    cg_rng r;
    cg_rng_seed(&r, (uint64_t)n + 2);
    int C = 72;
    float *x = rnd(&r, (long)n * C, 2), *w = rnd(&r, C, 1), *b = rnd(&r, C, 1);
    float *y = zeros((long)n * C), *mean = zeros(n), *rstd = zeros(n), *dy = rnd(&r, (long)n * C, 1);
    float *dx = zeros((long)n * C), *dw = zeros(C), *db = zeros(C);
    layernorm_forward(y, mean, rstd, x, w, b, n, C);
    layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, n, C);
    put(out, y, (long)n * C), put(out, mean, n), put(out, rstd, n), put(out, dx, (long)n * C);
    put(out, dw, C), put(out, db, C);
    free(x), free(w), free(b), free(y), free(mean), free(rstd), free(dy), free(dx), free(dw),
        free(db);
}

static void case_elementwise(int n, rec *out) {
    cg_rng r;
    cg_rng_seed(&r, (uint64_t)n + 3);
    long N = (long)n * 37 + 5;
    float *x = rnd(&r, N, 2), *b = rnd(&r, N, 1), *y = zeros(N), *dy = rnd(&r, N, 1),
          *dx = rnd(&r, N, 1);
    gelu_forward(y, x, (int)N);
    put(out, y, N);
    gelu_backward(dx, x, dy, (int)N);
    put(out, dx, N);
    residual_forward(y, x, b, (int)N);
    put(out, y, N);
    scale_inplace(y, N, 0.37f);
    put(out, y, N);
    float s = (float)sumsq(x, N);
    put(out, &s, 1);
    /* AdamW: two updates (m, v non-zero in the second) */
    float *m = zeros(N), *v = zeros(N);
    for (int t = 1; t <= 2; t++) adamw_update(x, dy, m, v, N, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
    put(out, x, N), put(out, m, N), put(out, v, N);
    free(x), free(b), free(y), free(dy), free(dx), free(m), free(v);
}

static void case_encoder(int n, rec *out) {
    cg_rng r;
    cg_rng_seed(&r, (uint64_t)n + 4);
    int B = 1 + n / 100, T = 37, P = 5, C = 24, V = 29;
    float *vis = rnd(&r, (long)B * P * C, 1), *wte = rnd(&r, (long)V * C, 1),
          *wpe = rnd(&r, (long)T * C, 1);
    int *tok = ints(&r, (long)B * (T - P), V);
    float *y = zeros((long)B * T * C), *dy = rnd(&r, (long)B * T * C, 1);
    float *dvis = zeros((long)B * P * C), *dwte = zeros((long)V * C), *dwpe = zeros((long)T * C);
    encoder_forward(y, vis, tok, wte, wpe, B, T, P, C);
    encoder_backward(dvis, dwte, dwpe, dy, tok, B, T, P, C);
    put(out, y, (long)B * T * C), put(out, dvis, (long)B * P * C), put(out, dwte, (long)V * C);
    put(out, dwpe, (long)T * C);
    /* embeddings */
    float *e = zeros((long)n * C), *de = rnd(&r, (long)n * C, 1), *dtab = zeros((long)V * C);
    int *tk = ints(&r, n, V);
    embedding_forward(e, tk, wte, n, C);
    embedding_backward(dtab, de, tk, n, C);
    put(out, e, (long)n * C), put(out, dtab, (long)V * C);
    free(vis), free(wte), free(wpe), free(tok), free(y), free(dy), free(dvis), free(dwte),
        free(dwpe), free(e), free(de), free(dtab), free(tk);
}

static void case_attention(int n, rec *out) {
    cg_rng r;
    cg_rng_seed(&r, (uint64_t)n + 5);
    int B = 3, T = n < 77 ? n : 77, C = 32, NH = 4;
    long nqkv = (long)B * T * 3 * C, ny = (long)B * T * C, na = (long)B * NH * T * T;
    for (int causal = 0; causal < 2; causal++) {
        float *qkv = rnd(&r, nqkv, 1), *y = zeros(ny), *att = zeros(na), *dy = rnd(&r, ny, 1);
        float *dqkv = zeros(nqkv), *datt = zeros(na);
        attention_forward(y, att, qkv, B, T, C, NH, causal);
        attention_backward(dqkv, datt, dy, qkv, att, B, T, C, NH, causal);
        put(out, y, ny), put(out, att, na), put(out, dqkv, nqkv);
        free(qkv), free(y), free(att), free(dy), free(dqkv), free(datt);
    }
}

static void case_classifier(int n, rec *out) {
    cg_rng r;
    cg_rng_seed(&r, (uint64_t)n + 6);
    int C = 32, V = 53;
    float *x = rnd(&r, (long)n * C, 1), *wte = rnd(&r, (long)V * C, 0.5f);
    int *tg = ints(&r, n, V);
    float *loss = zeros(n), *probs = zeros((long)n * V), *dx = zeros((long)n * C),
          *dwte = zeros((long)V * C);
    classifier_forward(loss, probs, x, wte, tg, n, C, V);
    put(out, loss, n), put(out, probs, (long)n * V);
    classifier_backward(dx, dwte, probs, x, wte, tg, 1.0f / n, n, C, V);
    put(out, dx, (long)n * C), put(out, dwte, (long)V * C);
    free(x), free(wte), free(tg), free(loss), free(probs), free(dx), free(dwte);
}

static void case_pool_norm(int n, rec *out) {
    cg_rng r;
    cg_rng_seed(&r, (uint64_t)n + 7);
    int B = 1 + n / 37, g = 4, k = 2, C = 24, P = g * g, Q = P / (k * k);
    float *x = rnd(&r, (long)B * P * C, 1), *y = zeros((long)B * Q * C),
          *dy = rnd(&r, (long)B * Q * C, 1), *dx = zeros((long)B * P * C);
    avgpool_forward(y, x, B, g, g, k, C);
    avgpool_backward(dx, dy, B, g, g, k, C);
    put(out, y, (long)B * Q * C), put(out, dx, (long)B * P * C);
    float *u = zeros((long)n * C), *rn = zeros(n), *a = rnd(&r, (long)n * C, 1),
          *du = rnd(&r, (long)n * C, 1), *da = zeros((long)n * C);
    l2norm_forward(u, rn, a, n, C);
    l2norm_backward(da, du, u, rn, n, C);
    put(out, u, (long)n * C), put(out, rn, n), put(out, da, (long)n * C);
    int T = 37, Bm = 1 + n / T;
    uint8_t *mask = malloc((size_t)Bm * T);
    for (long i = 0; i < (long)Bm * T; i++) mask[i] = (uint8_t)cg_rng_below(&r, 3) != 0;
    float *mi = rnd(&r, (long)Bm * T * C, 1), *mo = zeros((long)Bm * C),
          *dmo = rnd(&r, (long)Bm * C, 1), *dmi = zeros((long)Bm * T * C);
    masked_mean_forward(mo, mi, mask, Bm, T, C);
    masked_mean_backward(dmi, dmo, mask, Bm, T, C);
    put(out, mo, (long)Bm * C), put(out, dmi, (long)Bm * T * C);
    free(x), free(y), free(dy), free(dx), free(u), free(rn), free(a), free(du), free(da),
        free(mask), free(mi), free(mo), free(dmo), free(dmi);
}

static void case_contrastive(int n, rec *out) {
    cg_rng r;
    cg_rng_seed(&r, (uint64_t)n + 8);
    int B = n < 64 ? n : 64, D = 24;
    float *a = rnd(&r, (long)B * D, 0.3f), *b = rnd(&r, (long)B * D, 0.3f),
          *probs = zeros(2L * B * B), *da = zeros((long)B * D), *db = zeros((long)B * D), dls = 0;
    float loss = contrastive_forward(probs, a, b, 1.5f, B, D);
    contrastive_backward(da, db, &dls, probs, a, b, 1.5f, 0.7f, B, D);
    put(out, &loss, 1), put(out, probs, 2L * B * B), put(out, da, (long)B * D);
    put(out, db, (long)B * D), put(out, &dls, 1);
    free(a), free(b), free(probs), free(da), free(db);
}

/* ---- whole model steps ---- */

#define MB 5
#define MT 13
#define MS 32

static int model_mode;

/* two steps of forward, backward, clipping and AdamW on a model whose LM rows (B·(P+T) = 385)
 * and ViT rows (B·P = 320, plus the batch-sized contrastive rows) fit no chunk evenly */
static void case_model(int n, rec *out) {
    (void)n;
    model_config c = {.image_size = MS,
                      .patch = 4,
                      .vit_dim = 24,
                      .vit_layers = 2,
                      .vit_heads = 2,
                      .lm_dim = 40,
                      .lm_layers = 2,
                      .lm_heads = 2,
                      .ctx = 80,
                      .vocab = 37,
                      .adapter = ADAPTER_MLP2X,
                      .pool = 2,
                      .tau = 0.07f,
                      .learn_tau = 1,
                      .lambda = 1.0f,
                      .batch = MB};
    model m;
    if (model_init(&m, &c, 7) != CG_OK) abort();
    cg_rng r;
    cg_rng_seed(&r, 3);
    static uint8_t img[MB * MS * MS * 3], content[MB * MT];
    static int tok[MB * MT], tgt[MB * MT];
    adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)cg_rng_below(&r, 256);
        for (int i = 0; i < MB * MT; i++) {
            tok[i] = i % MT == 0 ? 1 : 4 + (int)cg_rng_below(&r, (uint32_t)c.vocab - 4);
            content[i] = i % MT > 0 && i % MT < MT - 1 - i / MT;
        }
        for (int i = 0; i < MB * MT; i++) tgt[i] = i % MT >= 1 && i % MT < MT - 1 ? tok[i + 1] : -1;
        model_batch b = {.B = MB, .T = MT, .images_u8 = img, .tokens = tok, .targets = tgt,
                         .content = content};
        model_losses l;
        model_zero_grad(&m);
        if (model_forward(&m, &b, model_mode, &l) != CG_OK) abort();
        model_backward(&m);
        float norm = model_clip_grad(&m, 1.0f);
        float v[4] = {l.loss, l.gen, l.con, norm};
        put(out, v, 4);
        put(out, m.grads_mem, m.nvalues);
        model_adamw_step(&m, &hp, 3e-3f);
    }
    put(out, m.params_mem, m.nvalues);
    model_free(&m);
}

int main(void) {
    static const int sizes[] = {37, 1000, 2049};
    static const struct {
        const char *name;
        case_fn f;
    } cases[] = {{"gemm", case_gemm},           {"matmul", case_matmul},
                 {"layernorm", case_layernorm}, {"gelu/residual/adamw", case_elementwise},
                 {"encoder/embedding", case_encoder}, {"attention", case_attention},
                 {"classifier", case_classifier},     {"avgpool/l2norm/mean", case_pool_norm},
                 {"contrastive", case_contrastive}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            check_threads(cases[c].name, cases[c].f, sizes[s]);
    static const char *modes[] = {"model lm", "model clip", "model align", "model instruct"};
    for (model_mode = MODE_LM; model_mode <= MODE_INSTRUCT; model_mode++)
        check_threads(modes[model_mode], case_model, 0);
    printf("%d checks, %d failures\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}
