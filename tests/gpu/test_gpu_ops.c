/* test_gpu_ops.c: every GPU kernel of kernels/cuda/cuda_ops.h against its CPU oracle of
 * kernels/kernels.h on the same random inputs. Exit 77 ("no GPU: skipped") without a GPU.
 *
 * Check: |gpu - cpu| <= atol + rtol·|cpu| element-wise, every element, with
 *   fp32 (plain fp32 products):   atol 2e-5, rtol 1e-4 (only the summation order differs);
 *   tf32 (tensor-core products):  atol 5e-3, rtol 1e-2 (inputs rounded to 10-bit mantissas);
 *   bf16 (bf16-rounded products): atol 3e-2, rtol 3e-2 (8-bit mantissas);
 * for ops without matrix products the fp32 tolerance applies whatever the precision. Inputs are
 * scaled so that outputs are O(1): activations N(0,1), weights N(0, 1/C). Forward outputs are
 * poisoned (NaN) before each GPU call, so an unwritten element fails; accumulating outputs start
 * from the same random values on both sides, so "+=" is checked too. */
#include "kernels/gpu.h"
#include "tests/test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#if CGVLM_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#include "kernels/kernels.h"
#include "util/rng.h"

static cg_rng rng;

typedef struct {
    double atol, rtol;
} tol;
static const tol TOL_EXACT = {2e-5, 1e-4};
static tol tol_mm; /* of the precision under test */

static float *rnd(long n, float scale) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) x[i] = scale * cg_rng_normal(&rng);
    return x;
}
static void *dev(const void *h, size_t bytes) {
    void *d = cuda_alloc(bytes);
    cuda_upload(d, h, bytes);
    return d;
}
static float *devf(const float *h, long n) { return dev(h, sizeof(float) * (size_t)n); }
static float *poison(long n) {
    float *d = cuda_alloc(sizeof(float) * (size_t)n);
    float *h = malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) h[i] = NAN;
    cuda_upload(d, h, sizeof(float) * (size_t)n);
    free(h);
    return d;
}

/* compares n host floats (from the device) with the reference; prints the worst element; frees h */
static void cmp_host(const char *what, float *h, const float *ref, long n, tol t) {
    long bad = 0, worst = 0;
    double worst_ratio = 0.0;
    for (long i = 0; i < n; i++) {
        double lim = t.atol + t.rtol * fabs(ref[i]), err = fabs((double)h[i] - ref[i]);
        if (!(err <= lim)) bad++;
        double ratio = isfinite(err) ? err / lim : INFINITY;
        if (ratio > worst_ratio || !isfinite(ratio)) worst_ratio = ratio, worst = i;
        if (!isfinite(ratio)) break;
    }
    test_checks++;
    if (bad) test_failures++;
    printf("  %-28s n=%-7ld worst [%ld] gpu %.7g cpu %.7g (%.2f of tolerance)%s\n", what, n, worst,
           (double)h[worst], (double)ref[worst], worst_ratio, bad ? "  FAIL" : "");
    free(h);
}

/* compares n device floats with the reference */
static void cmp(const char *what, const float *d, const float *ref, long n, tol t) {
    float *h = malloc(sizeof(float) * (size_t)n);
    CHECK(cuda_ctx_sync() == CG_OK);
    cuda_download(h, d, sizeof(float) * (size_t)n);
    cmp_host(what, h, ref, n, t);
}

/* bf16 on the host: rounding to nearest even (as the GPU's), and back */
static cuda_bf16 bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (cuda_bf16)((u >> 16) | 0x40u);
    return (cuda_bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float float_of(cuda_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* x rounded to bf16 (a new host array), and its bf16 copy on the device */
static float *rounded(const float *x, long n, cuda_bf16 **dev_bf) {
    float *r = malloc(sizeof(float) * (size_t)n);
    cuda_bf16 *h = malloc(sizeof(cuda_bf16) * (size_t)n);
    for (long i = 0; i < n; i++) h[i] = bf16_of(x[i]), r[i] = float_of(h[i]);
    *dev_bf = dev(h, sizeof(cuda_bf16) * (size_t)n);
    free(h);
    return r;
}
/* compares n device bf16 values with the reference */
static void cmp_bf16(const char *what, const cuda_bf16 *d, const float *ref, long n, tol t) {
    cuda_bf16 *hb = malloc(sizeof(cuda_bf16) * (size_t)n);
    float *h = malloc(sizeof(float) * (size_t)n);
    CHECK(cuda_ctx_sync() == CG_OK);
    cuda_download(hb, d, sizeof(cuda_bf16) * (size_t)n);
    for (long i = 0; i < n; i++) h[i] = float_of(hb[i]);
    free(hb);
    cmp_host(what, h, ref, n, t);
}
static cuda_bf16 *poison_bf16(long n) {
    cuda_bf16 *d = cuda_alloc(sizeof(cuda_bf16) * (size_t)n);
    cuda_bf16 *h = malloc(sizeof(cuda_bf16) * (size_t)n);
    for (long i = 0; i < n; i++) h[i] = 0x7fc1; /* a NaN */
    cuda_upload(d, h, sizeof(cuda_bf16) * (size_t)n);
    free(h);
    return d;
}

static void test_matmul(void) {
    int N = 111, C = 64, OC = 96;
    float *inp = rnd((long)N * C, 1), *w = rnd((long)OC * C, 0.125f), *b = rnd(OC, 1);
    float *dout = rnd((long)N * OC, 1);
    float *ref = malloc(sizeof(float) * N * OC);
    float *di = rnd((long)N * C, 1), *dw = rnd((long)OC * C, 1), *db = rnd(OC, 1);
    float *d_inp = devf(inp, (long)N * C), *d_w = devf(w, (long)OC * C), *d_b = devf(b, OC);
    float *d_dout = devf(dout, (long)N * OC), *d_out = poison((long)N * OC);
    float *d_di = devf(di, (long)N * C), *d_dw = devf(dw, (long)OC * C), *d_db = devf(db, OC);
    /* the products with a bias or a residual: through cuBLASLt's epilogue, then without it */
    float *res = rnd((long)N * OC, 1), *d_res = devf(res, (long)N * OC);
    for (int lt = 1; lt >= 0; lt--) {
        cuda_ctx_set_lt(lt);
        matmul_forward(ref, inp, w, b, N, C, OC);
        cuda_matmul_forward(d_out, d_inp, d_w, d_b, N, C, OC);
        cmp(lt ? "matmul_forward (cuBLASLt)" : "matmul_forward (cuBLAS)", d_out, ref, (long)N * OC, tol_mm);
        residual_forward(ref, res, ref, N * OC);
        cuda_matmul_residual_forward(d_out, d_inp, d_w, d_b, d_res, N, C, OC);
        cmp(lt ? "matmul_residual_forward (cuBLASLt)" : "matmul_residual_forward (cuBLAS)", d_out,
            ref, (long)N * OC, tol_mm);
        if (lt) printf("  cuBLASLt epilogues: %s\n", cuda_ctx_lt() ? "in use" : "refused, fell back");
    }
    cuda_ctx_set_lt(1);
    matmul_forward(ref, inp, w, NULL, N, C, OC);
    cuda_matmul_forward(d_out, d_inp, d_w, NULL, N, C, OC);
    cmp("matmul_forward (no bias)", d_out, ref, (long)N * OC, tol_mm);
    free(res);
    cuda_free(d_res);
    matmul_backward(di, dw, db, dout, inp, w, N, C, OC);
    cuda_matmul_backward(d_di, d_dw, d_db, d_dout, d_inp, d_w, N, C, OC);
    tol big = {tol_mm.atol * 10, tol_mm.rtol}; /* dweight sums N=111 products of O(1) terms */
    cmp("matmul_backward.dinp", d_di, di, (long)N * C, tol_mm);
    cmp("matmul_backward.dweight", d_dw, dw, (long)OC * C, big);
    cmp("matmul_backward.dbias", d_db, db, OC, (tol){1e-4, 1e-4});
    /* _to: dinp written over a poisoned buffer, the weight gradient still added to */
    float *di0 = calloc((size_t)N * C, sizeof(float)), *d_di0 = poison((long)N * C);
    matmul_backward(di0, dw, NULL, dout, inp, w, N, C, OC);
    cuda_matmul_backward_to(d_di0, d_dw, NULL, d_dout, d_inp, d_w, N, C, OC);
    cmp("matmul_backward_to.dinp", d_di0, di0, (long)N * C, tol_mm);
    cmp("matmul_backward_to.dweight", d_dw, dw, (long)OC * C, big);
    free(di0);
    cuda_free(d_di0);
    free(inp), free(w), free(b), free(dout), free(ref), free(di), free(dw), free(db);
    cuda_free(d_inp), cuda_free(d_w), cuda_free(d_b), cuda_free(d_dout), cuda_free(d_out);
    cuda_free(d_di), cuda_free(d_dw), cuda_free(d_db);
}

/* the bf16-operand products and the kernels that write bf16 copies: the products against the CPU
 * oracle on the same bf16-rounded operands (exact products, fp32 sums: fp32 tolerances), the
 * roundings bit for bit, and outputs rounded to bf16 within half a bf16 unit (rtol 2^-8) */
static void test_bf16_ops(void) {
    printf(" bf16 operands:\n");
    /* rounding: ties to even both ways, NaN, infinity, the largest finite, subnormals */
    float sp[12] = {1.0f, -2.5f, 3.14159265f, 1e-40f, -1e-42f, INFINITY, -INFINITY, NAN, 3.3895314e38f, 0.0f};
    uint32_t ties[2] = {0x3f808000u, 0x3f818000u}; /* 1 + 2^-8 (to even: down), 1 + 3·2^-8 (up) */
    memcpy(&sp[10], &ties[0], 4);
    memcpy(&sp[11], &ties[1], 4);
    long nr = 4096 + 12;
    float *xr = rnd(nr, 3);
    memcpy(xr, sp, sizeof sp);
    float *d_xr = devf(xr, nr);
    cuda_bf16 *d_r = poison_bf16(nr), *hr = malloc(sizeof(cuda_bf16) * (size_t)nr);
    cuda_to_bf16(d_r, d_xr, nr);
    CHECK(cuda_ctx_sync() == CG_OK);
    cuda_download(hr, d_r, sizeof(cuda_bf16) * (size_t)nr);
    long wrong = 0;
    for (long i = 0; i < nr; i++) wrong += hr[i] != bf16_of(xr[i]);
    CHECK(wrong == 0);
    CHECK(hr[10] == 0x3f80 && hr[11] == 0x3f82 && hr[5] == 0x7f80 && (hr[7] & 0x7fff) > 0x7f80);
    printf("  to_bf16                      n=%-7ld %ld not rounded as on the host%s\n", nr, wrong, wrong ? "  FAIL" : "");
    free(xr), free(hr);
    cuda_free(d_xr), cuda_free(d_r);

    int N = 111, C = 64, OC = 96;
    float *inp = rnd((long)N * C, 1), *w = rnd((long)OC * C, 0.125f), *b = rnd(OC, 1);
    float *dout = rnd((long)N * OC, 1), *res = rnd((long)N * OC, 1);
    cuda_bf16 *d_inp, *d_w, *d_dout_bf;
    float *inp_r = rounded(inp, (long)N * C, &d_inp), *w_r = rounded(w, (long)OC * C, &d_w);
    float *dout_r = rounded(dout, (long)N * OC, &d_dout_bf);
    float *d_b = devf(b, OC), *d_res = devf(res, (long)N * OC), *d_dout = devf(dout, (long)N * OC);
    float *ref = malloc(sizeof(float) * (size_t)N * OC), *d_out = poison((long)N * OC);
    tol sum_tol = {1e-4, 1e-4}; /* fp32 sums of exact products */
    for (int lt = 1; lt >= 0; lt--) {
        cuda_ctx_set_lt(lt);
        matmul_forward(ref, inp_r, w_r, b, N, C, OC);
        residual_forward(ref, ref, res, N * OC);
        cuda_matmul_forward_bf16(d_out, d_inp, d_w, d_b, d_res, N, C, OC);
        cmp(lt ? "matmul_forward_bf16 (cuBLASLt)" : "matmul_forward_bf16 (cuBLAS)", d_out, ref,
            (long)N * OC, sum_tol);
    }
    cuda_ctx_set_lt(1);
    matmul_forward(ref, inp_r, w_r, NULL, N, C, OC);
    cuda_matmul_forward_bf16(d_out, d_inp, d_w, NULL, NULL, N, C, OC);
    cmp("matmul_forward_bf16 (plain)", d_out, ref, (long)N * OC, sum_tol);
    /* backward: dinp added to (acc) and written over poison; dweight accumulates; dbias from fp32 */
    float *di = rnd((long)N * C, 1), *dw = rnd((long)OC * C, 1), *db = rnd(OC, 1);
    float *d_di = devf(di, (long)N * C), *d_dw = devf(dw, (long)OC * C), *d_db = devf(db, OC);
    matmul_backward(di, dw, NULL, dout_r, inp_r, w_r, N, C, OC);
    matmul_backward(NULL, NULL, db, dout, inp_r, w_r, N, C, OC);
    cuda_matmul_backward_bf16(d_di, d_dw, d_db, d_dout, d_dout_bf, d_inp, d_w, N, C, OC, 1);
    cmp("matmul_backward_bf16.dinp", d_di, di, (long)N * C, sum_tol);
    cmp("matmul_backward_bf16.dweight", d_dw, dw, (long)OC * C, (tol){1e-3, 1e-4});
    cmp("matmul_backward_bf16.dbias", d_db, db, OC, (tol){1e-4, 1e-4});
    float *di0 = calloc((size_t)N * C, sizeof(float)), *d_di0 = poison((long)N * C);
    matmul_backward(di0, NULL, NULL, dout_r, inp_r, w_r, N, C, OC);
    cuda_matmul_backward_bf16(d_di0, NULL, NULL, d_dout, d_dout_bf, d_inp, d_w, N, C, OC, 0);
    cmp("matmul_backward_bf16.dinp (=)", d_di0, di0, (long)N * C, sum_tol);
    free(inp), free(w), free(b), free(dout), free(res), free(inp_r), free(w_r), free(dout_r);
    free(ref), free(di), free(dw), free(db), free(di0);
    cuda_free(d_inp), cuda_free(d_w), cuda_free(d_dout_bf), cuda_free(d_b), cuda_free(d_res);
    cuda_free(d_dout), cuda_free(d_out), cuda_free(d_di), cuda_free(d_dw), cuda_free(d_db);
    cuda_free(d_di0);

    /* layernorm and GELU writing bf16; GELU's backward writing both */
    int R = 77, D = 96;
    long n = (long)R * D;
    /* rounding to bf16 moves x by at most half a unit, < 2^-8 |x|; on top, the fp32 difference of
     * the value rounded (TOL_EXACT) */
    tol half_unit = {TOL_EXACT.atol, 1.0 / 256 + TOL_EXACT.rtol};
    float *x = rnd(n, 2), *lw = rnd(D, 1), *lb = rnd(D, 1), *gd = rnd(n, 1);
    float *out = malloc(sizeof(float) * (size_t)n), *mean = malloc(sizeof(float) * R), *rstd = malloc(sizeof(float) * R);
    float *d_x = devf(x, n), *d_lw = devf(lw, D), *d_lb = devf(lb, D), *d_gd = devf(gd, n);
    float *d_mean = poison(R), *d_rstd = poison(R), *d_g = poison(n);
    cuda_bf16 *d_o = poison_bf16(n);
    layernorm_forward(out, mean, rstd, x, lw, lb, R, D);
    cuda_layernorm_forward_bf16(d_o, d_mean, d_rstd, d_x, d_lw, d_lb, R, D);
    cmp_bf16("layernorm_forward_bf16", d_o, out, n, half_unit);
    cmp("layernorm_forward_bf16.rstd", d_rstd, rstd, R, TOL_EXACT);
    gelu_forward(out, x, (int)n);
    cuda_gelu_forward_bf16(d_o, d_x, n);
    cmp_bf16("gelu_forward_bf16", d_o, out, n, half_unit);
    memset(out, 0, sizeof(float) * (size_t)n);
    gelu_backward(out, x, gd, (int)n);
    cuda_gelu_backward_to_bf16(d_g, d_o, d_x, d_gd, n);
    cmp("gelu_backward_to_bf16", d_g, out, n, TOL_EXACT);
    cmp_bf16("gelu_backward_to_bf16 (bf16)", d_o, out, n, half_unit);
    free(x), free(lw), free(lb), free(gd), free(out), free(mean), free(rstd);
    cuda_free(d_x), cuda_free(d_lw), cuda_free(d_lb), cuda_free(d_gd), cuda_free(d_mean);
    cuda_free(d_rstd), cuda_free(d_g), cuda_free(d_o);
}

static void test_layernorm_gelu_residual(void) {
    int N = 77, C = 96;
    long n = (long)N * C;
    float *x = rnd(n, 2), *w = rnd(C, 1), *b = rnd(C, 1), *dout = rnd(n, 1);
    float *out = malloc(sizeof(float) * n), *mean = malloc(sizeof(float) * N), *rstd = malloc(sizeof(float) * N);
    float *dx = rnd(n, 1), *dw = rnd(C, 1), *db = rnd(C, 1);
    float *d_x = devf(x, n), *d_w = devf(w, C), *d_b = devf(b, C), *d_dout = devf(dout, n);
    float *d_out = poison(n), *d_mean = poison(N), *d_rstd = poison(N);
    float *d_dx = devf(dx, n), *d_dw = devf(dw, C), *d_db = devf(db, C);
    layernorm_forward(out, mean, rstd, x, w, b, N, C);
    cuda_layernorm_forward(d_out, d_mean, d_rstd, d_x, d_w, d_b, N, C);
    cmp("layernorm_forward", d_out, out, n, TOL_EXACT);
    cmp("layernorm_forward.mean", d_mean, mean, N, TOL_EXACT);
    cmp("layernorm_forward.rstd", d_rstd, rstd, N, TOL_EXACT);
    layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, C);
    cuda_layernorm_backward(d_dx, d_dw, d_db, d_dout, d_x, d_w, d_mean, d_rstd, N, C);
    cmp("layernorm_backward.dinp", d_dx, dx, n, TOL_EXACT);
    cmp("layernorm_backward.dweight", d_dw, dw, C, (tol){1e-4, 1e-4});
    cmp("layernorm_backward.dbias", d_db, db, C, (tol){1e-4, 1e-4});
    /* GELU and the residual on the same buffers */
    gelu_forward(out, x, (int)n);
    cuda_gelu_forward(d_out, d_x, n);
    cmp("gelu_forward", d_out, out, n, TOL_EXACT);
    gelu_backward(dx, x, dout, (int)n);
    cuda_gelu_backward(d_dx, d_x, d_dout, n);
    cmp("gelu_backward", d_dx, dx, n, TOL_EXACT);
    float *gx0 = calloc((size_t)n, sizeof(float)), *d_gx0 = poison(n);
    gelu_backward(gx0, x, dout, (int)n);
    cuda_gelu_backward_to(d_gx0, d_x, d_dout, n);
    cmp("gelu_backward_to", d_gx0, gx0, n, TOL_EXACT);
    free(gx0);
    cuda_free(d_gx0);
    residual_forward(out, x, dout, (int)n);
    cuda_residual_forward(d_out, d_x, d_dout, n);
    cmp("residual_forward", d_out, out, n, TOL_EXACT);
    free(x), free(w), free(b), free(dout), free(out), free(mean), free(rstd), free(dx), free(dw), free(db);
    cuda_free(d_x), cuda_free(d_w), cuda_free(d_b), cuda_free(d_dout), cuda_free(d_out);
    cuda_free(d_mean), cuda_free(d_rstd), cuda_free(d_dx), cuda_free(d_dw), cuda_free(d_db);
}

static void test_encoder_embedding_patchify(void) {
    int B = 3, T = 13, P = 5, C = 40, V = 17, Tt = T - P;
    long n = (long)B * T * C;
    float *vis = rnd((long)B * P * C, 1), *wte = rnd((long)V * C, 1), *wpe = rnd((long)T * C, 1);
    int tok[3 * 8];
    for (int i = 0; i < B * Tt; i++) tok[i] = (int)cg_rng_below(&rng, (uint32_t)V);
    tok[0] = tok[1] = tok[7]; /* repeated tokens: the scatter-add must sum them */
    float *out = malloc(sizeof(float) * n), *dout = rnd(n, 1);
    float *dvis = rnd((long)B * P * C, 1), *dwte = rnd((long)V * C, 1), *dwpe = rnd((long)T * C, 1);
    float *d_vis = devf(vis, (long)B * P * C), *d_wte = devf(wte, (long)V * C), *d_wpe = devf(wpe, (long)T * C);
    int *d_tok = dev(tok, sizeof tok);
    float *d_out = poison(n), *d_dout = devf(dout, n);
    float *d_dvis = devf(dvis, (long)B * P * C), *d_dwte = devf(dwte, (long)V * C), *d_dwpe = devf(dwpe, (long)T * C);
    encoder_forward(out, vis, tok, wte, wpe, B, T, P, C);
    cuda_encoder_forward(d_out, d_vis, d_tok, d_wte, d_wpe, B, T, P, C);
    cmp("encoder_forward", d_out, out, n, TOL_EXACT);
    int start[18], rows[24];
    cuda_token_index(start, rows, tok, B * Tt, V, Tt, T, P);
    int *d_start = dev(start, sizeof start), *d_rows = dev(rows, sizeof rows);
    encoder_backward(dvis, dwte, dwpe, dout, tok, B, T, P, C);
    cuda_encoder_backward(d_dvis, d_dwte, d_dwpe, d_dout, d_start, d_rows, V, B, T, P, C);
    cmp("encoder_backward.dvis", d_dvis, dvis, (long)B * P * C, TOL_EXACT);
    cmp("encoder_backward.dwte", d_dwte, dwte, (long)V * C, TOL_EXACT);
    cmp("encoder_backward.dwpe", d_dwpe, dwpe, (long)T * C, TOL_EXACT);
    /* plain embedding over all B*Tt tokens with the identity index */
    long ne = (long)B * Tt * C;
    float *eout = malloc(sizeof(float) * ne), *edout = rnd(ne, 1), *d_eout = poison(ne), *d_edout = devf(edout, ne);
    embedding_forward(eout, tok, wte, B * Tt, C);
    cuda_embedding_forward(d_eout, d_tok, d_wte, B * Tt, C);
    cmp("embedding_forward", d_eout, eout, ne, TOL_EXACT);
    cuda_token_index(start, rows, tok, B * Tt, V, B * Tt, 0, 0);
    cuda_upload(d_start, start, sizeof start);
    cuda_upload(d_rows, rows, sizeof rows);
    embedding_backward(dwte, edout, tok, B * Tt, C);
    cuda_embedding_backward(d_dwte, d_edout, d_start, d_rows, V, C);
    cmp("embedding_backward", d_dwte, dwte, (long)V * C, TOL_EXACT);
    /* patchify from uint8 and from float images */
    int S = 16, p = 4, Pp = (S / p) * (S / p), K = p * p * 3;
    long npx = (long)B * S * S * 3, np = (long)B * Pp * K;
    uint8_t *img = malloc((size_t)npx);
    for (long i = 0; i < npx; i++) img[i] = (uint8_t)cg_rng_below(&rng, 256);
    float *imgf = rnd(npx, 1), *pref = malloc(sizeof(float) * np), *d_p = poison(np);
    uint8_t *d_img = dev(img, (size_t)npx);
    float *d_imgf = devf(imgf, npx);
    patchify_forward(pref, img, NULL, B, S, p);
    cuda_patchify_forward(d_p, d_img, NULL, B, S, p);
    cmp("patchify_forward (uint8)", d_p, pref, np, TOL_EXACT);
    patchify_forward(pref, NULL, imgf, B, S, p);
    cuda_patchify_forward(d_p, NULL, d_imgf, B, S, p);
    cmp("patchify_forward (float)", d_p, pref, np, TOL_EXACT);
    free(vis), free(wte), free(wpe), free(out), free(dout), free(dvis), free(dwte), free(dwpe);
    free(eout), free(edout), free(img), free(imgf), free(pref);
    cuda_free(d_vis), cuda_free(d_wte), cuda_free(d_wpe), cuda_free(d_tok), cuda_free(d_out);
    cuda_free(d_dout), cuda_free(d_dvis), cuda_free(d_dwte), cuda_free(d_dwpe), cuda_free(d_start);
    cuda_free(d_rows), cuda_free(d_eout), cuda_free(d_edout), cuda_free(d_p), cuda_free(d_img);
    cuda_free(d_imgf);
}

/* the matmul attention; its scratch starts one float past an allocation (so the pointer arrays
 * inside it must find their own 8-byte boundary) and is followed by a guard that must stay as set */
static void test_attention(int causal, int T, int NH) {
    int B = 3, C = 64;
    long n = (long)B * T * C, na = (long)B * NH * T * T;
    float *cpu_datt = malloc(sizeof(float) * (size_t)na); /* the CPU backward's scratch */
    float *qkv = rnd(3 * n, 1), *dout = rnd(n, 1), *dqkv = rnd(3 * n, 1);
    float *out = malloc(sizeof(float) * n), *att = malloc(sizeof(float) * na);
    float *d_qkv = devf(qkv, 3 * n), *d_dout = devf(dout, n), *d_dqkv = devf(dqkv, 3 * n);
    float *d_out = poison(n), *d_att = poison(na);
    long ns = cuda_attention_scratch_backward(B, T, C, NH);
    if (cuda_attention_scratch_forward(B, T, C, NH) > ns) ns = cuda_attention_scratch_forward(B, T, C, NH);
    enum { GUARD = 64 };
    float guard[GUARD], guard_after[GUARD];
    for (int i = 0; i < GUARD; i++) guard[i] = (float)(i + 1);
    float *d_scratch_mem = cuda_alloc(sizeof(float) * (size_t)(ns + 1 + GUARD));
    float *d_scratch = d_scratch_mem + 1;
    cuda_upload(d_scratch + ns, guard, sizeof guard);
    attention_forward(out, att, qkv, B, T, C, NH, causal);
    cuda_attention_forward(d_out, d_att, d_qkv, d_scratch, B, T, C, NH, causal);
    printf(" attention, %s, T %d, %d heads:\n", causal ? "causal" : "bidirectional", T, NH);
    cmp("attention_forward", d_out, out, n, tol_mm);
    cmp("attention_forward.att", d_att, att, na, tol_mm);
    attention_backward(dqkv, cpu_datt, dout, qkv, att, B, T, C, NH, causal);
    cuda_attention_backward(d_dqkv, d_dout, d_qkv, d_att, d_scratch, B, T, C, NH, causal);
    cmp("attention_backward.dqkv", d_dqkv, dqkv, 3 * n, tol_mm);
    float *dq0 = calloc((size_t)(3 * n), sizeof(float)), *d_dq0 = poison(3 * n);
    attention_backward(dq0, cpu_datt, dout, qkv, att, B, T, C, NH, causal);
    cuda_attention_backward_to(d_dq0, d_dout, d_qkv, d_att, d_scratch, B, T, C, NH, causal);
    cmp("attention_backward_to.dqkv", d_dq0, dq0, 3 * n, tol_mm);
    free(dq0);
    free(cpu_datt);
    cuda_free(d_dq0);
    /* determinism: the same call again gives the same bits */
    float *h1 = malloc(sizeof(float) * 3 * n), *h2 = malloc(sizeof(float) * 3 * n);
    cuda_memset0(d_dqkv, sizeof(float) * 3 * n);
    cuda_attention_backward(d_dqkv, d_dout, d_qkv, d_att, d_scratch, B, T, C, NH, causal);
    cuda_download(h1, d_dqkv, sizeof(float) * 3 * n);
    cuda_memset0(d_dqkv, sizeof(float) * 3 * n);
    cuda_attention_backward(d_dqkv, d_dout, d_qkv, d_att, d_scratch, B, T, C, NH, causal);
    cuda_download(h2, d_dqkv, sizeof(float) * 3 * n);
    CHECK(memcmp(h1, h2, sizeof(float) * 3 * n) == 0);
    cuda_download(guard_after, d_scratch + ns, sizeof guard_after);
    CHECK(memcmp(guard, guard_after, sizeof guard) == 0);
    free(qkv), free(dout), free(dqkv), free(out), free(att), free(h1), free(h2);
    cuda_free(d_qkv), cuda_free(d_dout), cuda_free(d_dqkv), cuda_free(d_out), cuda_free(d_att);
    cuda_free(d_scratch_mem);
}

/* the fused kernels: no (T,T) matrix, so only the output and the gradients are compared; they run
 * on CUDA cores in fp32 whatever the precision */
static void test_attention_fused(int causal, int hs) {
    int B = 3, T = 45, NH = 2, C = NH * hs;
    long n = (long)B * T * C, na = (long)B * NH * T * T;
    float *cpu_datt = malloc(sizeof(float) * (size_t)na); /* the CPU backward's scratch */
    float *qkv = rnd(3 * n, 1), *dout = rnd(n, 1), *dqkv = rnd(3 * n, 1);
    float *out = malloc(sizeof(float) * n), *att = malloc(sizeof(float) * na);
    float *d_qkv = devf(qkv, 3 * n), *d_dout = devf(dout, n), *d_dqkv = devf(dqkv, 3 * n);
    float *d_out = poison(n), *d_lse = poison((long)B * NH * T);
    float *d_scratch = cuda_alloc(sizeof(float) * (size_t)cuda_attention_fused_scratch(B, T, C, NH));
    attention_forward(out, att, qkv, B, T, C, NH, causal);
    cuda_attention_fused_forward(d_out, d_lse, d_qkv, d_scratch, B, T, C, NH, causal);
    printf(" fused attention, %s, head size %d:\n", causal ? "causal" : "bidirectional", hs);
    cmp("attention_fused_forward", d_out, out, n, TOL_EXACT);
    attention_backward(dqkv, cpu_datt, dout, qkv, att, B, T, C, NH, causal);
    cuda_attention_fused_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_scratch, B, T, C, NH, causal);
    cmp("attention_fused_backward.dqkv", d_dqkv, dqkv, 3 * n, TOL_EXACT);
    float *dq0 = calloc((size_t)(3 * n), sizeof(float)), *d_dq0 = poison(3 * n);
    attention_backward(dq0, cpu_datt, dout, qkv, att, B, T, C, NH, causal);
    cuda_attention_fused_backward_to(d_dq0, d_dout, d_qkv, d_out, d_lse, d_scratch, B, T, C, NH, causal);
    cmp("attention_fused_backward_to.dqkv", d_dq0, dq0, 3 * n, TOL_EXACT);
    free(dq0);
    free(cpu_datt);
    cuda_free(d_dq0);
    free(qkv), free(dout), free(dqkv), free(out), free(att);
    cuda_free(d_qkv), cuda_free(d_dout), cuda_free(d_dqkv), cuda_free(d_out), cuda_free(d_lse);
    cuda_free(d_scratch);
}

static void test_classifier(void) {
    int N = 45, C = 64, V = 200;
    float *x = rnd((long)N * C, 1), *wte = rnd((long)V * C, 0.125f);
    int tg[45], n = 0;
    for (int i = 0; i < N; i++) tg[i] = i % 4 == 1 ? -1 : (int)cg_rng_below(&rng, (uint32_t)V);
    /* the CPU classifier takes only rows with a target: compact them */
    float *xc = malloc(sizeof(float) * N * C);
    int tgc[45], rowof[45];
    for (int i = 0; i < N; i++)
        if (tg[i] >= 0) memcpy(xc + (long)n * C, x + (long)i * C, sizeof(float) * C), rowof[n] = i, tgc[n++] = tg[i];
    float *loss = malloc(sizeof(float) * n), *probs = malloc(sizeof(float) * n * V);
    float *dx = rnd((long)N * C, 1), *dwte = rnd((long)V * C, 1);
    float *dxc = malloc(sizeof(float) * n * C);
    for (int i = 0; i < n; i++) memcpy(dxc + (long)i * C, dx + (long)rowof[i] * C, sizeof(float) * C);
    float *d_x = devf(x, (long)N * C), *d_wte = devf(wte, (long)V * C), *d_loss = poison(N);
    float *d_probs = poison((long)N * V), *d_dx = devf(dx, (long)N * C), *d_dwte = devf(dwte, (long)V * C);
    int *d_tg = dev(tg, sizeof tg);
    float *d_scal = cuda_alloc(2 * sizeof(float));
    classifier_forward(loss, probs, xc, wte, tgc, n, C, V);
    cuda_classifier_forward(d_loss, d_probs, d_x, d_wte, d_tg, N, C, V);
    cuda_mean_loss(d_scal, d_scal + 1, d_loss, d_tg, N);
    /* the expected per-row values at the GPU's (uncompacted) rows */
    float *lref = calloc((size_t)N, sizeof(float)), *pref = malloc(sizeof(float) * N * V);
    float *hp = malloc(sizeof(float) * N * V);
    double mean = 0.0;
    for (int i = 0; i < n; i++) lref[rowof[i]] = loss[i], mean += loss[i];
    mean /= n;
    cmp("classifier_forward.losses", d_loss, lref, N, tol_mm);
    cuda_download(hp, d_probs, sizeof(float) * N * V);
    for (int i = 0; i < N; i++) memcpy(pref + (long)i * V, hp + (long)i * V, sizeof(float) * V);
    for (int i = 0; i < n; i++) memcpy(pref + (long)rowof[i] * V, probs + (long)i * V, sizeof(float) * V);
    cmp("classifier_forward.probs", d_probs, pref, (long)N * V, (tol){tol_mm.atol * 0.1, tol_mm.rtol});
    float mref[2] = {(float)mean, 1.0f / n};
    cmp("mean_loss", d_scal, mref, 2, tol_mm);
    classifier_backward(dxc, dwte, probs, xc, wte, tgc, 1.0f / n, n, C, V);
    cuda_classifier_backward(d_dx, d_dwte, d_probs, d_x, d_wte, d_tg, d_scal + 1, N, C, V);
    for (int i = 0; i < n; i++) memcpy(dx + (long)rowof[i] * C, dxc + (long)i * C, sizeof(float) * C);
    cmp("classifier_backward.dx", d_dx, dx, (long)N * C, tol_mm);
    cmp("classifier_backward.dwte", d_dwte, dwte, (long)V * C, tol_mm);
    free(x), free(wte), free(xc), free(loss), free(probs), free(dx), free(dwte), free(dxc);
    free(lref), free(pref), free(hp);
    cuda_free(d_x), cuda_free(d_wte), cuda_free(d_loss), cuda_free(d_probs), cuda_free(d_dx);
    cuda_free(d_dwte), cuda_free(d_tg), cuda_free(d_scal);
}

static void test_pool_norm_mean(void) {
    int B = 3, gh = 4, gw = 6, k = 2, C = 48, P = gh * gw, Q = P / (k * k);
    long ni = (long)B * P * C, no = (long)B * Q * C;
    float *inp = rnd(ni, 1), *out = malloc(sizeof(float) * no), *dout = rnd(no, 1), *dinp = rnd(ni, 1);
    float *d_inp = devf(inp, ni), *d_out = poison(no), *d_dout = devf(dout, no), *d_dinp = devf(dinp, ni);
    avgpool_forward(out, inp, B, gh, gw, k, C);
    cuda_avgpool_forward(d_out, d_inp, B, gh, gw, k, C);
    cmp("avgpool_forward", d_out, out, no, TOL_EXACT);
    avgpool_backward(dinp, dout, B, gh, gw, k, C);
    cuda_avgpool_backward(d_dinp, d_dout, B, gh, gw, k, C);
    cmp("avgpool_backward", d_dinp, dinp, ni, TOL_EXACT);
    /* l2norm with one all-zero row (the clamped branch) */
    int N = B * P;
    for (int i = 0; i < C; i++) inp[5 * C + i] = 0.0f;
    cuda_upload(d_inp, inp, sizeof(float) * ni);
    float *rn = malloc(sizeof(float) * N), *d_rn = poison(N), *d_o2 = poison(ni), *o2 = malloc(sizeof(float) * ni);
    l2norm_forward(o2, rn, inp, N, C);
    cuda_l2norm_forward(d_o2, d_rn, d_inp, N, C);
    cmp("l2norm_forward", d_o2, o2, ni, TOL_EXACT);
    cmp("l2norm_forward.rnorm", d_rn, rn, N, (tol){0, 1e-5});
    float *dn = rnd(ni, 1), *d_dn = devf(dn, ni);
    l2norm_backward(dinp, dn, o2, rn, N, C);
    cuda_l2norm_backward(d_dinp, d_dn, d_o2, d_rn, N, C);
    cmp("l2norm_backward", d_dinp, dinp, ni, (tol){TOL_EXACT.atol, 1e-4});
    /* masked mean over (B, P) with a mask that leaves row 2 empty, and without a mask */
    uint8_t *mask = malloc((size_t)B * P);
    for (int i = 0; i < B * P; i++) mask[i] = i / P == 2 ? 0 : (uint8_t)cg_rng_below(&rng, 2);
    mask[0] = 1;
    uint8_t *d_mask = dev(mask, (size_t)B * P);
    float *mo = malloc(sizeof(float) * B * C), *d_mo = poison((long)B * C), *dm = rnd((long)B * C, 1);
    float *d_dm = devf(dm, (long)B * C);
    for (int masked = 0; masked < 2; masked++) {
        masked_mean_forward(mo, inp, masked ? mask : NULL, B, P, C);
        cuda_masked_mean_forward(d_mo, d_inp, masked ? d_mask : NULL, B, P, C);
        cmp(masked ? "masked_mean_forward" : "masked_mean_forward (all)", d_mo, mo, (long)B * C, TOL_EXACT);
        masked_mean_backward(dinp, dm, masked ? mask : NULL, B, P, C);
        cuda_masked_mean_backward(d_dinp, d_dm, masked ? d_mask : NULL, B, P, C);
        cmp(masked ? "masked_mean_backward" : "masked_mean_backward (all)", d_dinp, dinp, ni, TOL_EXACT);
    }
    free(inp), free(out), free(dout), free(dinp), free(rn), free(o2), free(dn), free(mask), free(mo), free(dm);
    cuda_free(d_inp), cuda_free(d_out), cuda_free(d_dout), cuda_free(d_dinp), cuda_free(d_rn);
    cuda_free(d_o2), cuda_free(d_dn), cuda_free(d_mask), cuda_free(d_mo), cuda_free(d_dm);
}

static void test_contrastive(void) {
    int B = 7, D = 40;
    float *a = rnd((long)B * D, 1), *b = rnd((long)B * D, 1);
    float rn[7];
    l2norm_forward(a, rn, a, B, D); /* unit rows, as in the model */
    l2norm_forward(b, rn, b, B, D);
    float ls = 1.7f, probs[2 * 7 * 7];
    float *da = rnd((long)B * D, 1), *db = rnd((long)B * D, 1), dls = 0.25f;
    float *d_a = devf(a, (long)B * D), *d_b = devf(b, (long)B * D), *d_ls = devf(&ls, 1);
    float *d_loss = poison(1), *d_probs = poison(2L * B * B), *d_da = devf(da, (long)B * D);
    float *d_db = devf(db, (long)B * D), *d_dls = devf(&dls, 1), *d_scr = cuda_alloc(sizeof(float) * 2 * B * B);
    float loss = contrastive_forward(probs, a, b, ls, B, D);
    cuda_contrastive_forward(d_loss, d_probs, d_a, d_b, d_ls, B, D);
    cmp("contrastive_forward.loss", d_loss, &loss, 1, TOL_EXACT);
    cmp("contrastive_forward.probs", d_probs, probs, 2L * B * B, TOL_EXACT);
    contrastive_backward(da, db, &dls, probs, a, b, ls, 0.8f, B, D);
    cuda_contrastive_backward(d_da, d_db, d_dls, d_probs, d_a, d_b, d_ls, 0.8f, d_scr, B, D);
    cmp("contrastive_backward.da", d_da, da, (long)B * D, TOL_EXACT);
    cmp("contrastive_backward.db", d_db, db, (long)B * D, TOL_EXACT);
    cmp("contrastive_backward.dlogit_scale", d_dls, &dls, 1, TOL_EXACT);
    free(a), free(b), free(da), free(db);
    cuda_free(d_a), cuda_free(d_b), cuda_free(d_ls), cuda_free(d_loss), cuda_free(d_probs);
    cuda_free(d_da), cuda_free(d_db), cuda_free(d_dls), cuda_free(d_scr);
}

static void test_optimizer(void) {
    /* three tensors in one arena (64-float alignment like the model's), the middle one frozen */
    long off[3] = {0, 320, 640}, len[3] = {300, 200, 1001}, n = 1664;
    int decay[3] = {1, 0, 0};
    float *p = rnd(n, 1), *gr = rnd(n, 1), *m = rnd(n, 0.1f), *v = rnd(n, 0.1f);
    for (long i = 0; i < n; i++) v[i] = fabsf(v[i]);
    float *d_p = devf(p, n), *d_g = devf(gr, n), *d_m = devf(m, n), *d_v = devf(v, n);
    /* a second copy of the same state (uploaded before the CPU updates p, gr, m, v in place) */
    float *d_p2 = devf(p, n), *d_g2 = devf(gr, n), *d_m2 = devf(m, n), *d_v2 = devf(v, n);
    cuda_segment segs[2] = {{off[0], len[0], decay[0]}, {off[2], len[2], decay[2]}};
    cuda_segment *d_segs = dev(segs, sizeof segs);
    cuda_step_args args = {3e-3f, 4, 0.5f};
    cuda_step_args *d_args = dev(&args, sizeof args);
    double *d_part = cuda_alloc(sizeof(double) * (size_t)cuda_clip_partials(2));
    float *d_norm = poison(2);
    /* CPU: clip the two trainable tensors to 0.5, then AdamW on them */
    double ss = sumsq(gr + off[0], len[0]) + sumsq(gr + off[2], len[2]);
    float norm = (float)sqrt(ss), s = norm > 0.5f ? 0.5f / norm : 1.0f;
    scale_inplace(gr + off[0], len[0], s);
    scale_inplace(gr + off[2], len[2], s);
    for (int i = 0; i < 3; i += 2)
        adamw_update(p + off[i], gr + off[i], m + off[i], v + off[i], len[i], args.lr, 0.9f, 0.95f,
                     1e-8f, decay[i] ? 0.1f : 0.0f, args.t);
    /* the same AdamW twice from the same state: clipped in place, then with the factor applied
     * inside AdamW (apply = 0, grad_scale): the same bits */
    cuda_bf16 *d_pbf = poison_bf16(n); /* the bf16 copy: the updated values, the rest untouched */
    cuda_clip_grad(d_g2, d_segs, 2, 1001, d_args, d_part, d_norm, 0);
    cuda_adamw_update(d_p2, d_pbf, d_g2, d_m2, d_v2, d_segs, 2, 1001, d_args, d_norm + 1, 0.9f, 0.95f,
                      1e-8f, 0.1f);
    cuda_clip_grad(d_g, d_segs, 2, 1001, d_args, d_part, d_norm, 1);
    cuda_adamw_update(d_p, NULL, d_g, d_m, d_v, d_segs, 2, 1001, d_args, NULL, 0.9f, 0.95f, 1e-8f, 0.1f);
    float *h1 = malloc(sizeof(float) * n), *h2 = malloc(sizeof(float) * n);
    cuda_download(h1, d_p, sizeof(float) * n);
    cuda_download(h2, d_p2, sizeof(float) * n);
    CHECK(memcmp(h1, h2, sizeof(float) * n) == 0);
    cuda_bf16 *hb = malloc(sizeof(cuda_bf16) * (size_t)n);
    cuda_download(hb, d_pbf, sizeof(cuda_bf16) * (size_t)n);
    long bf_wrong = 0;
    for (long i = 0; i < n; i++) {
        int updated = (i >= off[0] && i < off[0] + len[0]) || (i >= off[2] && i < off[2] + len[2]);
        bf_wrong += updated ? hb[i] != bf16_of(h2[i]) : hb[i] != 0x7fc1;
    }
    printf("  adamw_update.params_bf       n=%-7ld %ld wrong%s\n", n, bf_wrong, bf_wrong ? "  FAIL" : "");
    CHECK(bf_wrong == 0);
    free(hb);
    cuda_free(d_pbf);
    free(h1), free(h2);
    cuda_free(d_p2), cuda_free(d_g2), cuda_free(d_m2), cuda_free(d_v2);
    float nref[2] = {norm, s};
    cmp("clip_grad.norm", d_norm, nref, 2, (tol){0, 1e-5});
    cmp("clip_grad.grads", d_g, gr, n, TOL_EXACT);
    cmp("adamw_update.m", d_m, m, n, TOL_EXACT);
    cmp("adamw_update.v", d_v, v, n, TOL_EXACT);
    cmp("adamw_update.params", d_p, p, n, (tol){1e-6, 1e-5});
    free(p), free(gr), free(m), free(v);
    cuda_free(d_p), cuda_free(d_g), cuda_free(d_m), cuda_free(d_v), cuda_free(d_segs);
    cuda_free(d_args), cuda_free(d_part), cuda_free(d_norm);
}

static int run(void) {
    int rc = cuda_ctx_init();
    if (rc) {
        fprintf(stderr, "%s\n", cg_errmsg());
        return 1;
    }
    cg_rng_seed(&rng, 2024);
    static const tol mm_tols[3] = {{2e-5, 1e-4}, {5e-3, 1e-2}, {3e-2, 3e-2}};
    for (int prec = CUDA_PREC_FP32; prec <= CUDA_PREC_BF16; prec++) {
        printf("precision %s (matrix products: atol %g, rtol %g)\n", cuda_prec_name(prec),
               mm_tols[prec].atol, mm_tols[prec].rtol);
        cuda_ctx_set_precision(prec);
        tol_mm = mm_tols[prec];
        test_matmul();
        /* odd T: the (T,T) blocks of att start at any float, so the strided products run, per
         * batch row (B 3 <= 4 heads) or per head (2 heads); even T: the pointer-array products */
        test_attention(1, 37, 4);
        test_attention(0, 37, 2);
        test_attention(1, 24, 2);
        test_attention(0, 24, 4);
        test_classifier();
        if (prec == CUDA_PREC_FP32) {
            test_layernorm_gelu_residual();
            test_bf16_ops();
            test_encoder_embedding_patchify();
            test_pool_norm_mean();
            test_contrastive();
            test_optimizer();
            test_attention_fused(1, 64);
            test_attention_fused(0, 64);
            test_attention_fused(1, 16);
            test_attention_fused(0, 40);
        }
    }
    CHECK(cuda_ctx_sync() == CG_OK);
    return test_summary("gpu_ops");
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
