/* model_cuda.cu: the CG-VLM model on the GPU (model_cuda.h): device arenas at the host model's
 * offsets, the activation arena, batch upload, forward and backward for every mode (a line-for-line
 * mirror of core/model.c on the cuda_* kernels), clipping and AdamW over per-mode segments of the
 * arenas, and whole training steps captured as CUDA graphs. */
#include <cuda_runtime.h>

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/model_cuda.h"
#include "util/rng.h"
#include "util/util.h"
}

/* ---------------------------------------------------------------------------------------------
 * Structures: device pointers into the arenas */

typedef struct {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    float *ln2_w, *ln2_b, *fc_w, *fc_b, *fcp_w, *fcp_b;
} dblock;

typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *res2, *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu, *res3;
    /* bf16 precision: the products' inputs as bf16 (ln1, ln2 and fch_gelu then exist only so) */
    cuda_bf16 *ln1_bf, *atty_bf, *ln2_bf, *fchg_bf;
} dlayer;

typedef struct {
    int L, C, NH, causal;
    int fused;               /* 1: fused attention (la->att keeps the log-sum-exp (B,NH,T)) */
    int bf16;                /* 1: the four products per layer take bf16 operands */
    dblock *bp;
    float *lnf_w, *lnf_b;
    dlayer *la;
    float *x0, *lnf, *lnf_mean, *lnf_rstd;
} dstack;

typedef struct {
    dstack vit, lm;
    float *patches, *patch_emb, *ad_h, *ad_g, *ad_out, *att_scratch;
    float *xg, *probs, *tok_losses;
    float *pooled, *pooled_u, *pooled_rn, *vbar, *tok_e, *tok_u, *tok_rn, *tbar, *con_probs;
    float *vit_mean, *img_e, *img_u, *img_rn, *bow_emb, *bow_mean, *txt_e, *txt_u, *txt_rn,
        *clip_probs, *con_scratch;
    float *dres, *dln, *datty, *dqkv, *dfch, *dfchg, *dlnf;
    cuda_bf16 *dres_bf, *dfch_bf, *dqkv_bf; /* bf16 copies of the products' output gradients */
    float *dxg, *d_adout, *d_adg, *d_adh, *dpooled_u, *dpooled, *dvbar;
    float *dimg_u, *dimg_e, *dvit_mean, *dtxt_u, *dtxt_e, *dbow_mean, *dbow_emb, *dvit_out,
        *dpatch_emb;
} dacts;

/* scalars the step writes (downloaded together after it) */
enum { S_GEN, S_INV_NT, S_CON, S_NORM, S_CLIP_FACTOR, S_LS_CONST, S_COUNT };

typedef struct {
    int mode, B, T, img_u8, has_targets, has_content, prec, fused;
    float beta1, beta2, eps, wd;
} graph_key;

struct model_cuda {
    model_config cfg;
    int P, K, nparams;
    long nvalues;
    model_param *hparams;     /* copy of the host's table (its pointers are the host's) */
    long *offs;               /* (nparams) offset of each tensor in the arenas */
    float *params, *grads, *m, *v;
    cuda_bf16 *params_bf;     /* bf16 precision: the parameters' bf16 copy (NULL before) */
    /* typed views (device) */
    float *vit_patch_w, *vit_patch_b, *vit_pos, *ad_fc1_w, *ad_fc1_b, *ad_fc2_w, *ad_fc2_b;
    float *wte, *wpe, *con_logit_scale;
    float *clip_img_w, *clip_img_b, *clip_bow_wte, *clip_txt_w, *clip_txt_b, *clip_logit_scale;
    dblock *vit_blocks, *lm_blocks;
    /* activations */
    float *acts_mem;
    dacts x;
    int cap_B, cap_T;
    /* the batch on the device, and its host-side token indexes */
    uint8_t *d_img_u8, *d_content;
    float *d_img_f32;
    int *d_tokens, *d_targets, *d_tok_start, *d_tok_rows, *d_bow_start, *d_bow_rows;
    int *h_tok_start, *h_tok_rows;
    /* optimizer */
    cuda_segment *d_segs;     /* (4 modes, nparams) */
    int nseg[4];
    long max_seg[4];
    double *d_partial;
    cuda_step_args *d_args;
    float *d_scal;            /* (S_COUNT) */
    int opt_step;
    /* the last forward */
    int mode, B, T, Ttot, n_targets, has_con, has_targets, has_content;
    /* graphs */
    int use_graphs, captures, prec;
    cudaGraphExec_t exec;
    graph_key key;
    graph_key warm_key; /* the shape of the last eager warm-up step */
    int warm;           /* 1: warm_key is set */
    /* the section timings of the last profile step (model_cuda_profile_ops) */
    cuda_op_time ops[CUDA_OP_TIMES_MAX];
    int n_ops;
};

/* ---------------------------------------------------------------------------------------------
 * Section timing, for model_cuda_profile_step only: mark(group, name) records a CUDA event that
 * ends the section before it and starts the named one. The sections follow each other on the one
 * stream, so their times add up to the step's (launch gaps included). Off outside the profile
 * step (one branch per mark), so never inside a graph capture. One profile step at a time per
 * process, as there is one stream. */

#define PROF_EVENTS 4096

static struct {
    int on, n;
    cudaEvent_t ev[PROF_EVENTS];
    const char *group[PROF_EVENTS], *name[PROF_EVENTS];
} prof;

static void mark(const char *group, const char *name) {
    if (!prof.on || prof.n >= PROF_EVENTS) return;
    if (cudaEventCreate(&prof.ev[prof.n]) != cudaSuccess) {
        cudaGetLastError();
        prof.on = 0; /* (model_cuda_profile_step reports that the timing broke off) */
        return;
    }
    cudaEventRecord(prof.ev[prof.n], (cudaStream_t)cuda_ctx_stream());
    prof.group[prof.n] = group;
    prof.name[prof.n] = name;
    prof.n++;
}

/* after the step has finished: the sections' times into g->ops (largest first); the events freed */
static int prof_collect(model_cuda *g) {
    int rc = CG_OK, broke = !prof.on || prof.n >= PROF_EVENTS;
    g->n_ops = 0;
    for (int i = 0; i + 1 < prof.n && !rc; i++) {
        float t = 0.0f;
        cudaError_t e = cudaEventElapsedTime(&t, prof.ev[i], prof.ev[i + 1]);
        if (e != cudaSuccess) {
            rc = cg_err(CG_EFAIL, "cannot time the training step's sections: %s", cudaGetErrorString(e));
            break;
        }
        char key[32];
        snprintf(key, sizeof key, "%s %s", prof.group[i], prof.name[i]);
        int k = 0;
        while (k < g->n_ops && strcmp(g->ops[k].name, key)) k++;
        if (k == g->n_ops) {
            if (k == CUDA_OP_TIMES_MAX) k--, broke = 1; /* (more names than the table holds) */
            else {
                memset(&g->ops[k], 0, sizeof g->ops[k]);
                snprintf(g->ops[k].name, sizeof g->ops[k].name, "%s", key);
                g->n_ops++;
            }
        }
        g->ops[k].calls++;
        g->ops[k].ms += t;
    }
    for (int i = 0; i < prof.n; i++) cudaEventDestroy(prof.ev[i]);
    prof.n = prof.on = 0;
    for (int i = 1; i < g->n_ops; i++) /* largest first */
        for (int j = i; j > 0 && g->ops[j].ms > g->ops[j - 1].ms; j--) {
            cuda_op_time t = g->ops[j];
            g->ops[j] = g->ops[j - 1];
            g->ops[j - 1] = t;
        }
    if (!rc && broke) rc = cg_err(CG_EFAIL, "the section timing of the training step broke off");
    return rc;
}

extern "C" int model_cuda_profile_ops(const model_cuda *g, cuda_op_time *out, int max) {
    int n = g->n_ops < max ? g->n_ops : max;
    memcpy(out, g->ops, sizeof(cuda_op_time) * (size_t)(n > 0 ? n : 0));
    return n;
}

#define GRAD(g, p) ((g)->grads + ((p) - (g)->params))
#define BF16(g, p) ((g)->params_bf + ((p) - (g)->params))

static int is_image_mode(int mode) { return mode != MODE_LM; }

/* ---------------------------------------------------------------------------------------------
 * Parameters */

static float *dparam(model_cuda *g, const model *m, const char *name) {
    model_param *p = model_find_param((model *)m, name);
    if (!p) return NULL;
    return g->params + (p->data - m->params_mem);
}

static void resolve_stack(model_cuda *g, const model *m, const char *prefix, dblock *bp, int L) {
    char nm[64];
#define R(field, suffix)                                                \
    snprintf(nm, sizeof nm, "%s.h.%d.%s", prefix, l, suffix);           \
    bp[l].field = dparam(g, m, nm);                                     \
    assert(bp[l].field)
    for (int l = 0; l < L; l++) {
        R(ln1_w, "ln1.w");
        R(ln1_b, "ln1.b");
        R(qkv_w, "attn.qkv.w");
        R(qkv_b, "attn.qkv.b");
        R(proj_w, "attn.proj.w");
        R(proj_b, "attn.proj.b");
        R(ln2_w, "ln2.w");
        R(ln2_b, "ln2.b");
        R(fc_w, "mlp.fc.w");
        R(fc_b, "mlp.fc.b");
        R(fcp_w, "mlp.proj.w");
        R(fcp_b, "mlp.proj.b");
    }
#undef R
}

/* the trainable tensors of each mode as segments; neighbours with the same decay merge (the
 * padding between tensors is zero in every arena, so updating it changes nothing) */
static void build_segments(model_cuda *g) {
    cuda_segment *h = (cuda_segment *)cg_calloc((size_t)4 * g->nparams, sizeof(cuda_segment));
    for (int mode = 0; mode < 4; mode++) {
        cuda_segment *s = h + (long)mode * g->nparams;
        int n = 0;
        long mx = 0;
        for (int i = 0; i < g->nparams; i++) {
            const model_param *p = &g->hparams[i];
            if (!model_mode_trains(mode, p->group)) continue;
            long off = g->offs[i];
            if (n && s[n - 1].decay == p->decay && s[n - 1].off + ((s[n - 1].n + 15) & ~15L) == off)
                s[n - 1].n = off + p->numel - s[n - 1].off;
            else
                s[n++] = cuda_segment{off, p->numel, p->decay};
        }
        for (int i = 0; i < n; i++) mx = s[i].n > mx ? s[i].n : mx;
        g->nseg[mode] = n;
        g->max_seg[mode] = mx;
    }
    g->d_segs = (cuda_segment *)cuda_alloc(sizeof(cuda_segment) * 4 * (size_t)g->nparams);
    cuda_upload(g->d_segs, h, sizeof(cuda_segment) * 4 * (size_t)g->nparams);
    free(h);
}

extern "C" int model_cuda_create(model_cuda **out, const model *m) {
    *out = NULL;
    int rc = cuda_ctx_init();
    if (rc) return cg_err_wrap(rc, "cannot start the CUDA model");
    model_cuda *g = (model_cuda *)cg_calloc(1, sizeof *g);
    const model_config *c = &m->cfg;
    g->cfg = *c;
    g->P = m->P;
    g->K = m->K;
    g->nparams = m->nparams;
    g->nvalues = m->nvalues;
    g->hparams = (model_param *)cg_calloc((size_t)m->nparams, sizeof(model_param));
    memcpy(g->hparams, m->params, sizeof(model_param) * (size_t)m->nparams);
    g->offs = (long *)cg_calloc((size_t)m->nparams, sizeof(long));
    for (int i = 0; i < m->nparams; i++) g->offs[i] = m->params[i].data - m->params_mem;
    size_t bytes = sizeof(float) * (size_t)m->nvalues;
    g->params = (float *)cuda_alloc(bytes);
    g->grads = (float *)cuda_alloc(bytes);
    g->m = (float *)cuda_alloc(bytes);
    g->v = (float *)cuda_alloc(bytes);
    g->vit_patch_w = dparam(g, m, "vit.patch.w");
    g->vit_patch_b = dparam(g, m, "vit.patch.b");
    g->vit_pos = dparam(g, m, "vit.pos");
    g->ad_fc1_w = dparam(g, m, "adapter.fc1.w");
    g->ad_fc1_b = dparam(g, m, "adapter.fc1.b");
    g->ad_fc2_w = dparam(g, m, "adapter.fc2.w");
    g->ad_fc2_b = dparam(g, m, "adapter.fc2.b");
    g->wte = dparam(g, m, "lm.wte");
    g->wpe = dparam(g, m, "lm.wpe");
    g->con_logit_scale = dparam(g, m, "con.logit_scale");
    g->clip_img_w = dparam(g, m, "clip.img_proj.w");
    g->clip_img_b = dparam(g, m, "clip.img_proj.b");
    g->clip_bow_wte = dparam(g, m, "clip.bow.wte");
    g->clip_txt_w = dparam(g, m, "clip.txt_proj.w");
    g->clip_txt_b = dparam(g, m, "clip.txt_proj.b");
    g->clip_logit_scale = dparam(g, m, "clip.logit_scale");
    g->vit_blocks = (dblock *)cg_calloc((size_t)c->vit_layers, sizeof(dblock));
    g->lm_blocks = (dblock *)cg_calloc((size_t)c->lm_layers, sizeof(dblock));
    resolve_stack(g, m, "vit", g->vit_blocks, c->vit_layers);
    resolve_stack(g, m, "lm", g->lm_blocks, c->lm_layers);
    g->x.vit = dstack{c->vit_layers, c->vit_dim, c->vit_heads, 0, 0, 0, g->vit_blocks,
                        dparam(g, m, "vit.lnf.w"), dparam(g, m, "vit.lnf.b"), NULL, NULL, NULL, NULL, NULL};
    g->x.lm = dstack{c->lm_layers, c->lm_dim, c->lm_heads, 1, 0, 0, g->lm_blocks,
                       dparam(g, m, "lm.lnf.w"), dparam(g, m, "lm.lnf.b"), NULL, NULL, NULL, NULL, NULL};
    g->x.vit.la = (dlayer *)cg_calloc((size_t)c->vit_layers, sizeof(dlayer));
    g->x.lm.la = (dlayer *)cg_calloc((size_t)c->lm_layers, sizeof(dlayer));
    build_segments(g);
    g->d_partial = (double *)cuda_alloc(sizeof(double) * (size_t)cuda_clip_partials(g->nparams));
    g->d_args = (cuda_step_args *)cuda_alloc(sizeof(cuda_step_args));
    g->d_scal = (float *)cuda_alloc(sizeof(float) * S_COUNT);
    float ls = logf(1.0f / c->tau);
    cuda_upload(g->d_scal + S_LS_CONST, &ls, sizeof ls);
    const char *graphs_env = getenv("CGVLM_CUDA_GRAPHS"); /* "0": every step eagerly */
    g->use_graphs = !(graphs_env && !strcmp(graphs_env, "0"));
    g->prec = CUDA_PREC_TF32;
    g->mode = -1;
    rc = model_cuda_upload(g, m);
    if (rc) {
        model_cuda_free(g);
        return rc;
    }
    *out = g;
    return CG_OK;
}

static void free_batch_buffers(model_cuda *g) {
    cuda_free(g->acts_mem);
    cuda_free(g->d_img_u8);
    cuda_free(g->d_img_f32);
    cuda_free(g->d_content);
    cuda_free(g->d_tokens);
    cuda_free(g->d_targets);
    cuda_free(g->d_tok_start);
    cuda_free(g->d_tok_rows);
    cuda_free(g->d_bow_start);
    cuda_free(g->d_bow_rows);
    free(g->h_tok_start);
    free(g->h_tok_rows);
}

static void drop_graph(model_cuda *g) {
    if (g->exec) cudaGraphExecDestroy(g->exec);
    g->exec = NULL;
}

extern "C" void model_cuda_free(model_cuda *g) {
    if (!g) return;
    cuda_ctx_sync();
    drop_graph(g);
    free_batch_buffers(g);
    cuda_free(g->params);
    cuda_free(g->grads);
    cuda_free(g->m);
    cuda_free(g->v);
    cuda_free(g->params_bf);
    cuda_free(g->d_segs);
    cuda_free(g->d_partial);
    cuda_free(g->d_args);
    cuda_free(g->d_scal);
    free(g->hparams);
    free(g->offs);
    free(g->vit_blocks);
    free(g->lm_blocks);
    free(g->x.vit.la);
    free(g->x.lm.la);
    free(g);
}

static int same_layout(const model_cuda *g, const model *m) {
    if (m->nvalues != g->nvalues || m->nparams != g->nparams) return 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].data - m->params_mem != g->offs[i]) return 0;
    return 1;
}

extern "C" int model_cuda_upload(model_cuda *g, const model *m) {
    if (!same_layout(g, m)) return cg_err(CG_EUSER, "host model has a different configuration from the GPU model");
    size_t bytes = sizeof(float) * (size_t)g->nvalues;
    cuda_upload(g->params, m->params_mem, bytes);
    cuda_upload(g->grads, m->grads_mem, bytes);
    cuda_upload(g->m, m->m_mem, bytes);
    cuda_upload(g->v, m->v_mem, bytes);
    if (g->params_bf) cuda_to_bf16(g->params_bf, g->params, g->nvalues);
    g->opt_step = m->opt_step;
    return CG_OK;
}

extern "C" int model_cuda_download(model_cuda *g, model *m) {
    if (!same_layout(g, m)) return cg_err(CG_EUSER, "host model has a different configuration from the GPU model");
    int rc = cuda_ctx_sync();
    if (rc) return rc;
    size_t bytes = sizeof(float) * (size_t)g->nvalues;
    cuda_download(m->params_mem, g->params, bytes);
    cuda_download(m->grads_mem, g->grads, bytes);
    cuda_download(m->m_mem, g->m, bytes);
    cuda_download(m->v_mem, g->v, bytes);
    m->opt_step = g->opt_step;
    return CG_OK;
}

extern "C" int model_cuda_set_precision(model_cuda *g, int prec) {
    if (prec < CUDA_PREC_FP32 || prec > CUDA_PREC_BF16)
        return cg_err(CG_EUSER, "unknown GPU precision %d; use fp32, tf32 or bf16", prec);
    g->prec = prec;
    g->x.vit.bf16 = g->x.lm.bf16 = prec == CUDA_PREC_BF16;
    if (prec == CUDA_PREC_BF16) {
        /* the bf16 copy of the weights, refreshed by AdamW while the precision stays bf16 */
        if (!g->params_bf) g->params_bf = (cuda_bf16 *)cuda_alloc(sizeof(cuda_bf16) * (size_t)g->nvalues);
        cuda_to_bf16(g->params_bf, g->params, g->nvalues);
    }
    return CG_OK;
}

extern "C" void model_cuda_use_graphs(model_cuda *g, int on) { g->use_graphs = on; }

extern "C" int model_cuda_set_attention(model_cuda *g, int attn) {
    if (attn != CUDA_ATTN_MATMUL && attn != CUDA_ATTN_FUSED)
        return cg_err(CG_EUSER, "unknown GPU attention kind %d; use matmul or fused", attn);
    int fused = attn == CUDA_ATTN_FUSED;
    if (fused && (g->cfg.vit_dim / g->cfg.vit_heads > 64 || g->cfg.lm_dim / g->cfg.lm_heads > 64))
        return cg_err(CG_EUSER, "fused attention needs head sizes <= 64 (vit %d, lm %d)",
                      g->cfg.vit_dim / g->cfg.vit_heads, g->cfg.lm_dim / g->cfg.lm_heads);
    g->x.vit.fused = g->x.lm.fused = fused;
    return CG_OK;
}
extern "C" int model_cuda_graph_captures(const model_cuda *g) { return g->captures; }

/* ---------------------------------------------------------------------------------------------
 * Activations: laid out twice (count, then place) like core/model.c, plus the attention scratch,
 * the contrastive scratch and the batch buffers. */

typedef struct {
    float *base;
    long off;
} arena;

static float *take(arena *a, long n) {
    float *p = a->base ? a->base + a->off : NULL;
    a->off += (n + 63) & ~63L; /* 256-byte aligned */
    return p;
}

static cuda_bf16 *take_bf16(arena *a, long n) { return (cuda_bf16 *)take(a, (n + 1) / 2); }

static long lmax(long a, long b) { return a > b ? a : b; }

static void layout_stack(arena *a, dstack *s, long N, int B, int T) {
    long C = s->C;
    s->x0 = take(a, N * C);
    for (int l = 0; l < s->L; l++) {
        dlayer *la = &s->la[l];
        la->ln1 = take(a, N * C);
        la->ln1_mean = take(a, N);
        la->ln1_rstd = take(a, N);
        la->qkv = take(a, 3 * N * C);
        la->att = take(a, (long)B * s->NH * T * T);
        la->atty = take(a, N * C);
        la->res2 = take(a, N * C);
        la->ln2 = take(a, N * C);
        la->ln2_mean = take(a, N);
        la->ln2_rstd = take(a, N);
        la->fch = take(a, 4 * N * C);
        la->fch_gelu = take(a, 4 * N * C);
        la->res3 = take(a, N * C);
        la->ln1_bf = take_bf16(a, N * C);
        la->atty_bf = take_bf16(a, N * C);
        la->ln2_bf = take_bf16(a, N * C);
        la->fchg_bf = take_bf16(a, 4 * N * C);
    }
    s->lnf = take(a, N * C);
    s->lnf_mean = take(a, N);
    s->lnf_rstd = take(a, N);
}

static void layout_acts(model_cuda *g, arena *a, int B, int T) {
    dacts *x = &g->x;
    const model_config *c = &g->cfg;
    int P = g->P, dv = c->vit_dim, d = c->lm_dim, V = c->vocab;
    int Tlm = T + P > c->ctx ? c->ctx : T + P;
    long Nv = (long)B * P, Nl = (long)B * Tlm, Nt = (long)B * T;
    int Pp = P / (c->pool * c->pool);
    layout_stack(a, &x->vit, Nv, B, P);
    layout_stack(a, &x->lm, Nl, B, Tlm);
    x->patches = take(a, Nv * g->K);
    x->patch_emb = take(a, Nv * dv);
    x->ad_h = take(a, Nv * d);
    x->ad_g = c->adapter == ADAPTER_MLP2X ? take(a, Nv * d) : NULL;
    x->ad_out = c->adapter == ADAPTER_MLP2X ? take(a, Nv * d) : x->ad_h;
    long att_scr = 0;
    int Ts[2] = {P, Tlm}, Cs[2] = {dv, d}, NHs[2] = {c->vit_heads, c->lm_heads};
    for (int i = 0; i < 2; i++) {
        att_scr = lmax(att_scr, cuda_attention_scratch_forward(B, Ts[i], Cs[i], NHs[i]));
        att_scr = lmax(att_scr, cuda_attention_scratch_backward(B, Ts[i], Cs[i], NHs[i]));
        att_scr = lmax(att_scr, cuda_attention_fused_scratch(B, Ts[i], Cs[i], NHs[i]));
    }
    x->att_scratch = take(a, att_scr);
    x->xg = take(a, Nt * d);
    x->probs = take(a, Nt * V);
    x->tok_losses = take(a, Nt);
    x->pooled = take(a, (long)B * Pp * d);
    x->pooled_u = take(a, (long)B * Pp * d);
    x->pooled_rn = take(a, (long)B * Pp);
    x->vbar = take(a, (long)B * d);
    x->tok_e = take(a, Nt * d);
    x->tok_u = take(a, Nt * d);
    x->tok_rn = take(a, Nt);
    x->tbar = take(a, (long)B * d);
    x->con_probs = take(a, 2L * B * B);
    x->vit_mean = take(a, (long)B * dv);
    x->img_e = take(a, (long)B * dv);
    x->img_u = take(a, (long)B * dv);
    x->img_rn = take(a, B);
    x->bow_emb = take(a, Nt * dv);
    x->bow_mean = take(a, (long)B * dv);
    x->txt_e = take(a, (long)B * dv);
    x->txt_u = take(a, (long)B * dv);
    x->txt_rn = take(a, B);
    x->clip_probs = take(a, 2L * B * B);
    x->con_scratch = take(a, 2L * B * B);
    long NC = lmax(Nv * dv, Nl * d);
    x->dres = take(a, NC);
    x->dln = take(a, NC);
    x->datty = take(a, NC);
    x->dqkv = take(a, 3 * NC);
    x->dfch = take(a, 4 * NC);
    x->dfchg = take(a, 4 * NC);
    x->dlnf = take(a, NC);
    x->dres_bf = take_bf16(a, NC);
    x->dfch_bf = take_bf16(a, 4 * NC);
    x->dqkv_bf = take_bf16(a, 3 * NC);
    x->dxg = take(a, Nt * d);
    x->d_adout = take(a, Nv * d);
    x->d_adg = take(a, Nv * d);
    x->d_adh = take(a, Nv * d);
    x->dpooled_u = take(a, (long)B * Pp * d);
    x->dpooled = take(a, (long)B * Pp * d);
    x->dvbar = take(a, (long)B * d);
    x->dimg_u = take(a, (long)B * dv);
    x->dimg_e = take(a, (long)B * dv);
    x->dvit_mean = take(a, (long)B * dv);
    x->dtxt_u = take(a, (long)B * dv);
    x->dtxt_e = take(a, (long)B * dv);
    x->dbow_mean = take(a, (long)B * dv);
    x->dbow_emb = take(a, Nt * dv);
    x->dvit_out = take(a, Nv * dv);
    x->dpatch_emb = take(a, Nv * dv);
}

static void reserve(model_cuda *g, int B, int T) {
    if (g->acts_mem && B <= g->cap_B && T <= g->cap_T) return;
    if (g->acts_mem) {
        B = B > g->cap_B ? B : g->cap_B;
        T = T > g->cap_T ? T : g->cap_T;
        cuda_ctx_sync();
        drop_graph(g);
        free_batch_buffers(g);
    }
    const model_config *c = &g->cfg;
    arena a = {NULL, 0};
    layout_acts(g, &a, B, T);
    g->acts_mem = (float *)cuda_alloc(sizeof(float) * (size_t)a.off);
    a = arena{g->acts_mem, 0};
    layout_acts(g, &a, B, T);
    size_t npx = (size_t)B * c->image_size * c->image_size * 3, nt = (size_t)B * T;
    g->d_img_u8 = (uint8_t *)cuda_alloc(npx);
    g->d_img_f32 = (float *)cuda_alloc(npx * sizeof(float));
    g->d_content = (uint8_t *)cuda_alloc(nt);
    g->d_tokens = (int *)cuda_alloc(nt * sizeof(int));
    g->d_targets = (int *)cuda_alloc(nt * sizeof(int));
    g->d_tok_start = (int *)cuda_alloc(sizeof(int) * (size_t)(c->vocab + 1));
    g->d_tok_rows = (int *)cuda_alloc(nt * sizeof(int));
    g->d_bow_start = (int *)cuda_alloc(sizeof(int) * (size_t)(c->vocab + 1));
    g->d_bow_rows = (int *)cuda_alloc(nt * sizeof(int));
    g->h_tok_start = (int *)cg_calloc((size_t)c->vocab + 1, sizeof(int));
    g->h_tok_rows = (int *)cg_calloc(nt, sizeof(int));
    g->cap_B = B;
    g->cap_T = T;
}

/* ---------------------------------------------------------------------------------------------
 * Batch: checked by core/model.c's model_batch_check, then copied to the device with the token
 * indexes of the scatter-adds. */

/* enqueues the batch's copies; sets the shape of the step */
static int upload_batch(model_cuda *g, const model_batch *b, int mode) {
    int rc = model_batch_check(&g->cfg, g->P, b, mode);
    if (rc) return rc;
    reserve(g, b->B, b->T);
    const model_config *c = &g->cfg;
    int B = b->B, T = b->T, V = c->vocab;
    size_t nt = (size_t)B * T, npx = (size_t)B * c->image_size * c->image_size * 3;
    g->mode = mode;
    g->B = B;
    g->T = T;
    int P = mode == MODE_CLIP ? 0 : is_image_mode(mode) ? g->P : 0;
    g->Ttot = mode == MODE_CLIP ? 0 : P + T;
    g->has_con = mode == MODE_ALIGN && c->lambda > 0.0f;
    g->has_targets = b->targets != NULL && mode != MODE_CLIP;
    g->has_content = b->content != NULL;
    if (is_image_mode(mode)) {
        if (b->images_u8) cuda_upload_async(g->d_img_u8, b->images_u8, npx);
        else cuda_upload_async(g->d_img_f32, b->images_f32, npx * sizeof(float));
    }
    cuda_upload_async(g->d_tokens, b->tokens, nt * sizeof(int));
    g->n_targets = 0;
    if (g->has_targets) {
        cuda_upload_async(g->d_targets, b->targets, nt * sizeof(int));
        for (size_t i = 0; i < nt; i++) g->n_targets += b->targets[i] >= 0;
    }
    if (b->content) cuda_upload_async(g->d_content, b->content, nt);
    /* token indexes: LM text rows (sequence rows b*Ttot + P + t); CLIP's bag of words (row = i).
     * Reusing the host buffers at the next step is safe: a copy from pageable memory returns only
     * once the data is staged (and every step synchronises before it returns anyway). */
    if (mode == MODE_CLIP) {
        cuda_token_index(g->h_tok_start, g->h_tok_rows, b->tokens, (int)nt, V, (int)nt, 0, 0);
        cuda_upload_async(g->d_bow_start, g->h_tok_start, sizeof(int) * (size_t)(V + 1));
        cuda_upload_async(g->d_bow_rows, g->h_tok_rows, nt * sizeof(int));
    } else {
        cuda_token_index(g->h_tok_start, g->h_tok_rows, b->tokens, (int)nt, V, T, P + T, P);
        cuda_upload_async(g->d_tok_start, g->h_tok_start, sizeof(int) * (size_t)(V + 1));
        cuda_upload_async(g->d_tok_rows, g->h_tok_rows, nt * sizeof(int));
    }
    return CG_OK;
}

/* ---------------------------------------------------------------------------------------------
 * A layer's LayerNorms and dense products in the stack's precision: with s->bf16 the products take
 * the bf16 copies (of the input: written by its producer; of the weight: BF16), else fp32. */

static void layernorm_fwd(const dstack *s, float *out, cuda_bf16 *out_bf, float *mean, float *rstd,
                          const float *inp, const float *w, const float *b, int N, int C) {
    if (s->bf16) cuda_layernorm_forward_bf16(out_bf, mean, rstd, inp, w, b, N, C);
    else cuda_layernorm_forward(out, mean, rstd, inp, w, b, N, C);
}

/* out = inp · wᵀ + b (+ res when not NULL) */
static void dense_fwd(model_cuda *g, const dstack *s, float *out, const float *inp,
                      const cuda_bf16 *inp_bf, const float *w, const float *b, const float *res,
                      int N, int C, int OC) {
    if (s->bf16) cuda_matmul_forward_bf16(out, inp_bf, BF16(g, w), b, res, N, C, OC);
    else if (res) cuda_matmul_residual_forward(out, inp, w, b, res, N, C, OC);
    else cuda_matmul_forward(out, inp, w, b, N, C, OC);
}

/* the backward of dense_fwd, dinp written (the _to contract); in bf16 dout_bf is dout's bf16 copy,
 * made here from dout unless its producer wrote it (dout_bf_ready) */
static void dense_bwd(model_cuda *g, const dstack *s, float *dinp, float *dw, float *db,
                      const float *dout, cuda_bf16 *dout_bf, int dout_bf_ready, const float *inp,
                      const cuda_bf16 *inp_bf, const float *w, int N, int C, int OC) {
    if (!s->bf16) {
        cuda_matmul_backward_to(dinp, dw, db, dout, inp, w, N, C, OC);
        return;
    }
    if (!dout_bf_ready) cuda_to_bf16(dout_bf, dout, (long)N * OC);
    cuda_matmul_backward_bf16(dinp, dw, db, dout, dout_bf, inp_bf, BF16(g, w), N, C, OC, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Forward (mirrors core/model.c) */

static void stack_forward(model_cuda *g, dstack *s, float *att_scratch, int B, int T) {
    int C = s->C, N = B * T;
    const char *grp = s->causal ? "lm fwd" : "vit fwd";
    for (int l = 0; l < s->L; l++) {
        const dblock *p = &s->bp[l];
        dlayer *a = &s->la[l];
        const float *x = l ? s->la[l - 1].res3 : s->x0;
        mark(grp, "layernorm");
        layernorm_fwd(s, a->ln1, a->ln1_bf, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, N, C);
        mark(grp, "qkv");
        dense_fwd(g, s, a->qkv, a->ln1, a->ln1_bf, p->qkv_w, p->qkv_b, NULL, N, C, 3 * C);
        mark(grp, "attention");
        if (s->fused)
            cuda_attention_fused_forward(a->atty, a->att, a->qkv, att_scratch, B, T, C, s->NH, s->causal);
        else
            cuda_attention_forward(a->atty, a->att, a->qkv, att_scratch, B, T, C, s->NH, s->causal);
        mark(grp, "attn proj");
        if (s->bf16) cuda_to_bf16(a->atty_bf, a->atty, (long)N * C);
        dense_fwd(g, s, a->res2, a->atty, a->atty_bf, p->proj_w, p->proj_b, x, N, C, C);
        mark(grp, "layernorm");
        layernorm_fwd(s, a->ln2, a->ln2_bf, a->ln2_mean, a->ln2_rstd, a->res2, p->ln2_w, p->ln2_b, N, C);
        mark(grp, "fc");
        dense_fwd(g, s, a->fch, a->ln2, a->ln2_bf, p->fc_w, p->fc_b, NULL, N, C, 4 * C);
        mark(grp, "gelu");
        if (s->bf16) cuda_gelu_forward_bf16(a->fchg_bf, a->fch, 4L * N * C);
        else cuda_gelu_forward(a->fch_gelu, a->fch, 4L * N * C);
        mark(grp, "mlp proj");
        dense_fwd(g, s, a->res3, a->fch_gelu, a->fchg_bf, p->fcp_w, p->fcp_b, a->res2, N, 4 * C, C);
    }
    mark(grp, "layernorm");
    cuda_layernorm_forward(s->lnf, s->lnf_mean, s->lnf_rstd, s->la[s->L - 1].res3, s->lnf_w,
                           s->lnf_b, N, C);
}

static void vit_forward(model_cuda *g, int B, int img_u8) {
    dacts *x = &g->x;
    int P = g->P, dv = g->cfg.vit_dim;
    mark("vit fwd", "patches");
    cuda_patchify_forward(x->patches, img_u8 ? g->d_img_u8 : NULL, img_u8 ? NULL : g->d_img_f32, B,
                          g->cfg.image_size, g->cfg.patch);
    cuda_matmul_forward(x->patch_emb, x->patches, g->vit_patch_w, g->vit_patch_b, B * P, g->K, dv);
    cuda_encoder_forward(x->vit.x0, x->patch_emb, NULL, NULL, g->vit_pos, B, P, P, dv);
    stack_forward(g, &x->vit, x->att_scratch, B, P);
}

static void adapter_forward(model_cuda *g, int B) {
    dacts *x = &g->x;
    int N = B * g->P, dv = g->cfg.vit_dim, d = g->cfg.lm_dim;
    mark("adapter", "fwd");
    cuda_matmul_forward(x->ad_h, x->vit.lnf, g->ad_fc1_w, g->ad_fc1_b, N, dv, d);
    if (g->cfg.adapter == ADAPTER_MLP2X) {
        cuda_gelu_forward(x->ad_g, x->ad_h, (long)N * d);
        cuda_matmul_forward(x->ad_out, x->ad_g, g->ad_fc2_w, g->ad_fc2_b, N, d, d);
    }
}

static const float *logit_scale_of(model_cuda *g, const float *param) {
    return param ? param : g->d_scal + S_LS_CONST;
}

static void enqueue_forward(model_cuda *g, int img_u8) {
    dacts *x = &g->x;
    const model_config *c = &g->cfg;
    int B = g->B, T = g->T, mode = g->mode, d = c->lm_dim, dv = c->vit_dim;
    if (mode == MODE_CLIP) {
        vit_forward(g, B, img_u8);
        mark("clip", "head fwd");
        cuda_masked_mean_forward(x->vit_mean, x->vit.lnf, NULL, B, g->P, dv);
        cuda_matmul_forward(x->img_e, x->vit_mean, g->clip_img_w, g->clip_img_b, B, dv, dv);
        cuda_l2norm_forward(x->img_u, x->img_rn, x->img_e, B, dv);
        cuda_embedding_forward(x->bow_emb, g->d_tokens, g->clip_bow_wte, B * T, dv);
        cuda_masked_mean_forward(x->bow_mean, x->bow_emb, g->has_content ? g->d_content : NULL, B, T, dv);
        cuda_matmul_forward(x->txt_e, x->bow_mean, g->clip_txt_w, g->clip_txt_b, B, dv, dv);
        cuda_l2norm_forward(x->txt_u, x->txt_rn, x->txt_e, B, dv);
        cuda_contrastive_forward(g->d_scal + S_CON, x->clip_probs, x->img_u, x->txt_u,
                                 logit_scale_of(g, g->clip_logit_scale), B, dv);
        return;
    }
    int P = is_image_mode(mode) ? g->P : 0;
    if (P) {
        vit_forward(g, B, img_u8);
        adapter_forward(g, B);
    }
    mark("lm fwd", "embedding");
    cuda_encoder_forward(x->lm.x0, P ? x->ad_out : NULL, g->d_tokens, g->wte, g->wpe, B, P + T, P, d);
    stack_forward(g, &x->lm, x->att_scratch, B, P + T);
    if (g->has_targets) {
        mark("lm fwd", "classifier");
        cuda_text_rows(x->xg, x->lm.lnf, B, T, P, d, 0);
        cuda_classifier_forward(x->tok_losses, x->probs, x->xg, g->wte, g->d_targets, B * T, d, c->vocab);
        cuda_mean_loss(g->d_scal + S_GEN, g->d_scal + S_INV_NT, x->tok_losses, g->d_targets, B * T);
    }
    if (g->has_con) {
        int gr = c->image_size / c->patch, k = c->pool, Pp = g->P / (k * k);
        mark("contrastive", "fwd");
        cuda_avgpool_forward(x->pooled, x->ad_out, B, gr, gr, k, d);
        cuda_l2norm_forward(x->pooled_u, x->pooled_rn, x->pooled, B * Pp, d);
        cuda_masked_mean_forward(x->vbar, x->pooled_u, NULL, B, Pp, d);
        cuda_embedding_forward(x->tok_e, g->d_tokens, g->wte, B * T, d);
        cuda_l2norm_forward(x->tok_u, x->tok_rn, x->tok_e, B * T, d);
        cuda_masked_mean_forward(x->tbar, x->tok_u, g->d_content, B, T, d);
        cuda_contrastive_forward(g->d_scal + S_CON, x->con_probs, x->vbar, x->tbar,
                                 logit_scale_of(g, g->con_logit_scale), B, d);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Backward (mirrors core/model.c) */

static void stack_backward(model_cuda *g, dstack *s, const float *dlnf, int B, int T, int wgrad) {
    dacts *x = &g->x;
    int C = s->C, N = B * T;
    size_t NC = sizeof(float) * (size_t)N * C;
    const char *grp = s->causal ? "lm bwd" : "vit bwd";
#define WG(p) (wgrad ? GRAD(g, p) : NULL)
    mark(grp, "layernorm");
    cuda_memset0(x->dres, NC);
    cuda_layernorm_backward(x->dres, WG(s->lnf_w), WG(s->lnf_b), dlnf, s->la[s->L - 1].res3,
                            s->lnf_w, s->lnf_mean, s->lnf_rstd, N, C);
    /* the scratch gradients (dfchg, dfch, dln, datty, dqkv) are written by the _to variants, not
     * zeroed and added to; dres accumulates the residual stream as on the CPU */
    for (int l = s->L - 1; l >= 0; l--) {
        const dblock *p = &s->bp[l];
        dlayer *a = &s->la[l];
        const float *in = l ? s->la[l - 1].res3 : s->x0;
        mark(grp, "mlp proj");
        dense_bwd(g, s, x->dfchg, WG(p->fcp_w), WG(p->fcp_b), x->dres, x->dres_bf, 0, a->fch_gelu,
                  a->fchg_bf, p->fcp_w, N, 4 * C, C);
        mark(grp, "gelu");
        if (s->bf16) cuda_gelu_backward_to_bf16(x->dfch, x->dfch_bf, a->fch, x->dfchg, 4L * N * C);
        else cuda_gelu_backward_to(x->dfch, a->fch, x->dfchg, 4L * N * C);
        mark(grp, "fc");
        dense_bwd(g, s, x->dln, WG(p->fc_w), WG(p->fc_b), x->dfch, x->dfch_bf, 1, a->ln2, a->ln2_bf,
                  p->fc_w, N, C, 4 * C);
        mark(grp, "layernorm");
        cuda_layernorm_backward(x->dres, WG(p->ln2_w), WG(p->ln2_b), x->dln, a->res2, p->ln2_w,
                                a->ln2_mean, a->ln2_rstd, N, C);
        mark(grp, "attn proj");
        dense_bwd(g, s, x->datty, WG(p->proj_w), WG(p->proj_b), x->dres, x->dres_bf, 0, a->atty,
                  a->atty_bf, p->proj_w, N, C, C);
        mark(grp, "attention");
        if (s->fused)
            cuda_attention_fused_backward_to(x->dqkv, x->datty, a->qkv, a->atty, a->att,
                                             x->att_scratch, B, T, C, s->NH, s->causal);
        else
            cuda_attention_backward_to(x->dqkv, x->datty, a->qkv, a->att, x->att_scratch, B, T, C,
                                       s->NH, s->causal);
        mark(grp, "qkv");
        dense_bwd(g, s, x->dln, WG(p->qkv_w), WG(p->qkv_b), x->dqkv, x->dqkv_bf, 0, a->ln1, a->ln1_bf,
                  p->qkv_w, N, C, 3 * C);
        mark(grp, "layernorm");
        cuda_layernorm_backward(x->dres, WG(p->ln1_w), WG(p->ln1_b), x->dln, in, p->ln1_w,
                                a->ln1_mean, a->ln1_rstd, N, C);
    }
#undef WG
}

static void clip_backward(model_cuda *g) {
    dacts *x = &g->x;
    int B = g->B, T = g->T, P = g->P, dv = g->cfg.vit_dim, V = g->cfg.vocab;
    size_t Bdv = sizeof(float) * (size_t)B * dv;
    mark("clip", "head bwd");
    cuda_memset0(x->dimg_u, Bdv);
    cuda_memset0(x->dtxt_u, Bdv);
    float *dls = g->clip_logit_scale ? GRAD(g, g->clip_logit_scale) : NULL;
    cuda_contrastive_backward(x->dimg_u, x->dtxt_u, dls, x->clip_probs, x->img_u, x->txt_u,
                              logit_scale_of(g, g->clip_logit_scale), 1.0f, x->con_scratch, B, dv);
    cuda_memset0(x->dtxt_e, Bdv);
    cuda_l2norm_backward(x->dtxt_e, x->dtxt_u, x->txt_u, x->txt_rn, B, dv);
    cuda_memset0(x->dbow_mean, Bdv);
    cuda_matmul_backward(x->dbow_mean, GRAD(g, g->clip_txt_w), GRAD(g, g->clip_txt_b), x->dtxt_e,
                         x->bow_mean, g->clip_txt_w, B, dv, dv);
    cuda_memset0(x->dbow_emb, sizeof(float) * (size_t)B * T * dv);
    cuda_masked_mean_backward(x->dbow_emb, x->dbow_mean, g->has_content ? g->d_content : NULL, B, T, dv);
    cuda_embedding_backward(GRAD(g, g->clip_bow_wte), x->dbow_emb, g->d_bow_start, g->d_bow_rows, V, dv);
    cuda_memset0(x->dimg_e, Bdv);
    cuda_l2norm_backward(x->dimg_e, x->dimg_u, x->img_u, x->img_rn, B, dv);
    cuda_memset0(x->dvit_mean, Bdv);
    cuda_matmul_backward(x->dvit_mean, GRAD(g, g->clip_img_w), GRAD(g, g->clip_img_b), x->dimg_e,
                         x->vit_mean, g->clip_img_w, B, dv, dv);
    cuda_memset0(x->dvit_out, sizeof(float) * (size_t)B * P * dv);
    cuda_masked_mean_backward(x->dvit_out, x->dvit_mean, NULL, B, P, dv);
    stack_backward(g, &x->vit, x->dvit_out, B, P, 1);
    mark("vit bwd", "patches");
    cuda_memset0(x->dpatch_emb, sizeof(float) * (size_t)B * P * dv);
    cuda_encoder_backward(x->dpatch_emb, NULL, GRAD(g, g->vit_pos), x->dres, NULL, NULL, V, B, P, P, dv);
    cuda_matmul_backward(NULL, GRAD(g, g->vit_patch_w), GRAD(g, g->vit_patch_b), x->dpatch_emb,
                         x->patches, g->vit_patch_w, B * P, g->K, dv);
}

static void enqueue_backward(model_cuda *g) {
    dacts *x = &g->x;
    const model_config *c = &g->cfg;
    int mode = g->mode, B = g->B, T = g->T;
    if (mode == MODE_CLIP) {
        clip_backward(g);
        return;
    }
    int lm_w = model_mode_trains(mode, GROUP_LM), ad_w = model_mode_trains(mode, GROUP_ADAPTER);
    int P = is_image_mode(mode) ? g->P : 0, Ttot = P + T, d = c->lm_dim, V = c->vocab;
    long NP = (long)B * P;
    if (ad_w) cuda_memset0(x->d_adout, sizeof(float) * (size_t)NP * d);
    if (g->has_targets && (lm_w || ad_w)) {
        mark("lm bwd", "classifier");
        cuda_memset0(x->dxg, sizeof(float) * (size_t)B * T * d);
        cuda_classifier_backward(x->dxg, lm_w ? GRAD(g, g->wte) : NULL, x->probs, x->xg, g->wte,
                                 g->d_targets, g->d_scal + S_INV_NT, B * T, d, V);
        cuda_memset0(x->dlnf, sizeof(float) * (size_t)B * Ttot * d);
        cuda_text_rows(x->dxg, x->dlnf, B, T, P, d, 1);
        stack_backward(g, &x->lm, x->dlnf, B, Ttot, lm_w);
        mark("lm bwd", "embedding");
        cuda_encoder_backward(ad_w && P ? x->d_adout : NULL, lm_w ? GRAD(g, g->wte) : NULL,
                              lm_w ? GRAD(g, g->wpe) : NULL, x->dres, g->d_tok_start,
                              g->d_tok_rows, V, B, Ttot, P, d);
    }
    if (g->has_con) {
        int gr = c->image_size / c->patch, k = c->pool, Pp = P / (k * k);
        mark("contrastive", "bwd");
        cuda_memset0(x->dvbar, sizeof(float) * (size_t)B * d);
        float *dls = g->con_logit_scale ? GRAD(g, g->con_logit_scale) : NULL;
        cuda_contrastive_backward(x->dvbar, NULL, dls, x->con_probs, x->vbar, x->tbar,
                                  logit_scale_of(g, g->con_logit_scale), c->lambda, x->con_scratch, B, d);
        cuda_memset0(x->dpooled_u, sizeof(float) * (size_t)B * Pp * d);
        cuda_masked_mean_backward(x->dpooled_u, x->dvbar, NULL, B, Pp, d);
        cuda_memset0(x->dpooled, sizeof(float) * (size_t)B * Pp * d);
        cuda_l2norm_backward(x->dpooled, x->dpooled_u, x->pooled_u, x->pooled_rn, B * Pp, d);
        cuda_avgpool_backward(x->d_adout, x->dpooled, B, gr, gr, k, d);
    }
    if (ad_w && P) {
        int dv = c->vit_dim, N = (int)NP;
        const float *dh = x->d_adout;
        mark("adapter", "bwd");
        if (c->adapter == ADAPTER_MLP2X) {
            cuda_memset0(x->d_adg, sizeof(float) * (size_t)NP * d);
            cuda_matmul_backward(x->d_adg, GRAD(g, g->ad_fc2_w), GRAD(g, g->ad_fc2_b), x->d_adout,
                                 x->ad_g, g->ad_fc2_w, N, d, d);
            cuda_memset0(x->d_adh, sizeof(float) * (size_t)NP * d);
            cuda_gelu_backward(x->d_adh, x->ad_h, x->d_adg, NP * d);
            dh = x->d_adh;
        }
        cuda_matmul_backward(NULL, GRAD(g, g->ad_fc1_w), GRAD(g, g->ad_fc1_b), dh, x->vit.lnf,
                             g->ad_fc1_w, N, dv, d);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Optimizer */

static void write_args(model_cuda *g, float lr, int t, float max_norm) {
    cuda_step_args a = {lr, t, max_norm};
    cuda_upload_async(g->d_args, &a, sizeof a);
}

/* apply = 0: the clipping factor is left in d_scal[S_CLIP_FACTOR] for enqueue_adamw(.., 1) */
static void enqueue_clip(model_cuda *g, int apply) {
    int mode = g->mode;
    cuda_clip_grad(g->grads, g->d_segs + (long)mode * g->nparams, g->nseg[mode], g->max_seg[mode],
                   g->d_args, g->d_partial, g->d_scal + S_NORM, apply);
}

static void enqueue_adamw(model_cuda *g, const adamw_params *hp, int clip_factor) {
    int mode = g->mode;
    cuda_adamw_update(g->params, g->prec == CUDA_PREC_BF16 ? g->params_bf : NULL, g->grads, g->m,
                      g->v, g->d_segs + (long)mode * g->nparams,
                      g->nseg[mode], g->max_seg[mode], g->d_args,
                      clip_factor ? g->d_scal + S_CLIP_FACTOR : NULL, hp->beta1, hp->beta2,
                      hp->eps, hp->weight_decay);
}

/* ---------------------------------------------------------------------------------------------
 * Public entry points */

static int read_losses(model_cuda *g, model_losses *out, float *norm) {
    int rc = cuda_ctx_sync();
    if (rc) return rc;
    float s[S_COUNT];
    cuda_download(s, g->d_scal, sizeof s);
    if (out) {
        memset(out, 0, sizeof *out);
        out->n_targets = g->n_targets;
        if (g->mode == MODE_CLIP) {
            out->con = out->loss = s[S_CON];
        } else {
            out->gen = g->has_targets ? s[S_GEN] : 0.0f;
            out->loss = out->gen;
            if (g->has_con) {
                out->con = s[S_CON];
                out->loss += g->cfg.lambda * out->con;
            }
        }
    }
    if (norm) *norm = s[S_NORM];
    return CG_OK;
}

extern "C" int model_cuda_forward(model_cuda *g, const model_batch *b, int mode, model_losses *out) {
    int rc = upload_batch(g, b, mode);
    if (rc) return rc;
    cuda_ctx_set_precision(g->prec);
    cuda_memset0(g->d_scal, sizeof(float) * S_LS_CONST);
    enqueue_forward(g, b->images_u8 != NULL);
    if ((rc = cuda_ctx_check("forward"))) return rc;
    return read_losses(g, out, NULL);
}

extern "C" int model_cuda_backward(model_cuda *g) {
    assert(g->mode >= 0 && g->B > 0);
    cuda_ctx_set_precision(g->prec);
    enqueue_backward(g);
    int rc = cuda_ctx_check("backward");
    return rc ? rc : cuda_ctx_sync();
}

extern "C" int model_cuda_zero_grad(model_cuda *g) {
    cuda_memset0(g->grads, sizeof(float) * (size_t)g->nvalues);
    return cuda_ctx_sync();
}

extern "C" int model_cuda_clip_grad(model_cuda *g, float max_norm, float *norm) {
    assert(g->mode >= 0);
    write_args(g, 0.0f, g->opt_step, max_norm);
    enqueue_clip(g, 1);
    return read_losses(g, NULL, norm);
}

extern "C" int model_cuda_adamw_step(model_cuda *g, const adamw_params *hp, float lr) {
    assert(g->mode >= 0);
    g->opt_step++;
    write_args(g, lr, g->opt_step, 0.0f);
    enqueue_adamw(g, hp, 0);
    int rc = cuda_ctx_check("adamw");
    return rc ? rc : cuda_ctx_sync();
}

extern "C" int model_cuda_logits(model_cuda *g, const model_batch *b, int mode, float *out) {
    model_batch nb = *b;
    nb.targets = NULL;
    /* as core/model.c's eval_mode: text alone, or image + text without L_con (an align batch
     * needs no content mask here) */
    mode = mode == MODE_LM ? MODE_LM : MODE_INSTRUCT;
    int rc = model_cuda_forward(g, &nb, mode, NULL);
    if (rc) return rc;
    long rows = (long)g->B * g->Ttot;
    size_t bytes = sizeof(float) * (size_t)rows * g->cfg.vocab;
    float *d = (float *)cuda_alloc(bytes);
    cuda_matmul_forward(d, g->x.lm.lnf, g->wte, NULL, (int)rows, g->cfg.lm_dim, g->cfg.vocab);
    rc = cuda_ctx_sync();
    if (!rc) cuda_download(out, d, bytes);
    cuda_free(d);
    return rc;
}

static void enqueue_step(model_cuda *g, const adamw_params *hp, int img_u8) {
    cuda_memset0(g->grads, sizeof(float) * (size_t)g->nvalues);
    cuda_memset0(g->d_scal, sizeof(float) * S_LS_CONST);
    enqueue_forward(g, img_u8);
    enqueue_backward(g);
    enqueue_clip(g, 0);
    enqueue_adamw(g, hp, 1);
}

extern "C" int model_cuda_step(model_cuda *g, const model_batch *b, int mode, const adamw_params *hp,
                               float lr, float max_norm, model_losses *out, float *norm) {
    int rc = upload_batch(g, b, mode);
    if (rc) return rc;
    g->opt_step++;
    write_args(g, lr, g->opt_step, max_norm);
    cuda_ctx_set_precision(g->prec);
    int img_u8 = b->images_u8 != NULL;
    if (!g->use_graphs) {
        enqueue_step(g, hp, img_u8);
        if ((rc = cuda_ctx_check("training step"))) return rc;
        return read_losses(g, out, norm);
    }
    graph_key k;
    memset(&k, 0, sizeof k); /* compared with memcmp: no stray padding */
    k.mode = mode;
    k.B = g->B;
    k.T = g->T;
    k.img_u8 = img_u8;
    k.has_targets = g->has_targets;
    k.has_content = b->content != NULL;
    k.prec = g->prec;
    k.fused = g->x.lm.fused;
    k.beta1 = hp->beta1;
    k.beta2 = hp->beta2;
    k.eps = hp->eps;
    k.wd = hp->weight_decay;
    if (!g->exec || memcmp(&k, &g->key, sizeof k)) {
        drop_graph(g);
        if (!g->warm || memcmp(&k, &g->warm_key, sizeof k)) {
            /* a new shape's first step runs eagerly: every kernel it uses (ours, cuBLAS's and
             * cuBLASLt's, loaded lazily by CUDA 12+) is then loaded and initialised before the
             * next step of the shape is captured, as CUDA graph users warm up before capturing */
            g->warm_key = k;
            g->warm = 1;
            enqueue_step(g, hp, img_u8);
            if ((rc = cuda_ctx_check("training step"))) return rc;
            return read_losses(g, out, norm);
        }
        cudaStream_t st = (cudaStream_t)cuda_ctx_stream();
        if ((rc = cuda_ctx_sync())) return rc;
        cudaGraph_t graph;
        cudaError_t e = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
        if (e == cudaSuccess) {
            enqueue_step(g, hp, img_u8);
            e = cudaStreamEndCapture(st, &graph);
        }
        if (e == cudaSuccess) {
            e = cudaGraphInstantiate(&g->exec, graph, 0);
            cudaGraphDestroy(graph);
        }
        if (e != cudaSuccess) {
            /* run on without graphs: slower, the same maths */
            g->exec = NULL;
            cudaGetLastError();
            fprintf(stderr, "cgvlm: warning: cannot capture the training step as a CUDA graph (%s); "
                    "running it eagerly\n", cudaGetErrorString(e));
            g->use_graphs = 0;
            enqueue_step(g, hp, img_u8);
            if ((rc = cuda_ctx_check("training step"))) return rc;
            return read_losses(g, out, norm);
        }
        g->key = k;
        g->captures++;
    }
    cudaError_t e = cudaGraphLaunch(g->exec, (cudaStream_t)cuda_ctx_stream());
    if (e != cudaSuccess) return cg_err(CG_EFAIL, "cannot launch the training step graph: %s", cudaGetErrorString(e));
    return read_losses(g, out, norm);
}

extern "C" int model_cuda_profile_step(model_cuda *g, const model_batch *b, int mode,
                                       const adamw_params *hp, float lr, float max_norm,
                                       double ms[3]) {
    int rc = upload_batch(g, b, mode);
    if (rc) return rc;
    g->opt_step++;
    write_args(g, lr, g->opt_step, max_norm);
    cuda_ctx_set_precision(g->prec);
    cudaStream_t st = (cudaStream_t)cuda_ctx_stream();
    cudaEvent_t ev[4] = {NULL, NULL, NULL, NULL};
    cudaError_t e = cudaSuccess;
    for (int i = 0; i < 4 && e == cudaSuccess; i++) e = cudaEventCreate(&ev[i]);
    if (e == cudaSuccess) e = cudaEventRecord(ev[0], st);
    if (e != cudaSuccess) {
        for (int i = 0; i < 4; i++)
            if (ev[i]) cudaEventDestroy(ev[i]);
        return cg_err(CG_EFAIL, "cannot time the training step: %s", cudaGetErrorString(e));
    }
    prof.on = 1;
    prof.n = 0;
    mark("optimizer", "zero grad");
    cuda_memset0(g->grads, sizeof(float) * (size_t)g->nvalues);
    cuda_memset0(g->d_scal, sizeof(float) * S_LS_CONST);
    enqueue_forward(g, b->images_u8 != NULL);
    cudaEventRecord(ev[1], st); /* (a failure shows in cudaEventElapsedTime below) */
    enqueue_backward(g);
    cudaEventRecord(ev[2], st);
    mark("optimizer", "clip");
    enqueue_clip(g, 0);
    mark("optimizer", "adamw");
    enqueue_adamw(g, hp, 1);
    mark("end", "");
    cudaEventRecord(ev[3], st);
    rc = read_losses(g, NULL, NULL);
    int prc = prof_collect(g);
    if (!rc) rc = prc;
    for (int i = 0; i < 3; i++) {
        float t = 0.0f;
        if (!rc && (e = cudaEventElapsedTime(&t, ev[i], ev[i + 1])) != cudaSuccess)
            rc = cg_err(CG_EFAIL, "cannot time the training step: %s", cudaGetErrorString(e));
        ms[i] = t;
    }
    for (int i = 0; i < 4; i++) cudaEventDestroy(ev[i]);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Benchmark */

/* the device time of the captured step alone: n replays back to back between two events, the
 * median of 10 such runs, per replay (0 when there is no graph) */
static double time_graph_replays(model_cuda *g, int n) {
    if (!g->exec) return 0.0;
    cudaStream_t st = (cudaStream_t)cuda_ctx_stream();
    cudaEvent_t e0, e1;
    if (cudaEventCreate(&e0) != cudaSuccess) return cudaGetLastError(), 0.0;
    if (cudaEventCreate(&e1) != cudaSuccess) return cudaEventDestroy(e0), cudaGetLastError(), 0.0;
    double t[10];
    int ok = 1;
    for (int r = 0; r < 10 && ok; r++) {
        float ms = 0.0f;
        ok = cudaEventRecord(e0, st) == cudaSuccess;
        for (int i = 0; i < n && ok; i++) ok = cudaGraphLaunch(g->exec, st) == cudaSuccess;
        ok = ok && cudaEventRecord(e1, st) == cudaSuccess && cudaEventSynchronize(e1) == cudaSuccess &&
             cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess;
        t[r] = ms / n;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (!ok) return cudaGetLastError(), 0.0;
    for (int i = 1; i < 10; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    return t[5];
}

extern "C" int cuda_bench_train(const model_config *cfg, int mode, int B, int T, int steps,
                                int warmup, int prec, int attn, cuda_bench_result *out) {
    memset(out, 0, sizeof *out);
    model m;
    model_cuda *g = NULL;
    uint8_t *img = NULL, *content = NULL;
    int *tok = NULL, *tgt = NULL;
    double *times = NULL;
    int rc = model_init(&m, cfg, 1);
    if (rc) return rc;
    if ((rc = model_cuda_create(&g, &m))) goto out;
    if ((rc = model_cuda_set_precision(g, prec)) || (rc = model_cuda_set_attention(g, attn))) goto out;
    {
        long npx = (long)B * cfg->image_size * cfg->image_size * 3;
        img = (uint8_t *)cg_malloc((size_t)npx);
        tok = (int *)cg_malloc(sizeof(int) * (size_t)B * T);
        tgt = (int *)cg_malloc(sizeof(int) * (size_t)B * T);
        content = (uint8_t *)cg_malloc((size_t)B * T);
        cg_rng r;
        cg_rng_seed(&r, 42);
        for (long i = 0; i < npx; i++) img[i] = (uint8_t)cg_rng_below(&r, 256);
        int ntg = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                long i = (long)b * T + t;
                tok[i] = t == 0 ? 1 : 4 + (int)cg_rng_below(&r, (uint32_t)cfg->vocab - 4);
                content[i] = t > 0;
            }
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                long i = (long)b * T + t;
                tgt[i] = t + 1 < T ? tok[i + 1] : -1;
                ntg += tgt[i] >= 0;
            }
        model_batch batch = {B, T, mode == MODE_LM ? NULL : img, NULL, tok, tgt, content};
        adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
        times = (double *)cg_calloc((size_t)steps, sizeof(double));
        for (int s = 0; s < warmup + steps; s++) {
            model_losses l;
            double t0 = cg_mono_time();
            if ((rc = model_cuda_step(g, &batch, mode, &hp, 1e-4f, 1.0f, &l, NULL))) goto out;
            double dt = cg_mono_time() - t0;
            if (s >= warmup) times[s - warmup] = dt;
            if (s == 0) out->loss_first = l.loss;
            out->loss_last = l.loss;
        }
        for (int i = 1; i < steps; i++) /* insertion sort: steps is small */
            for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
                double t = times[j];
                times[j] = times[j - 1];
                times[j - 1] = t;
            }
        /* the graph alone (it trains on: the replays are steps too, after the timed ones) */
        out->graph_ms = time_graph_replays(g, 5);
        /* where the time goes: eager steps with events between the phases (the last of 3) */
        for (int s = 0; s < 3; s++)
            if ((rc = model_cuda_profile_step(g, &batch, mode, &hp, 1e-4f, 1.0f, out->phase_ms))) goto out;
        out->n_ops = model_cuda_profile_ops(g, out->ops, CUDA_OP_TIMES_MAX);
        out->ms_median = times[steps / 2] * 1e3;
        out->ms_best = times[0] * 1e3;
        out->flops = model_step_flops(&m, mode, B, T, mode == MODE_CLIP ? 0 : ntg);
        out->params = model_num_values(&m);
        out->seq = (mode == MODE_LM || mode == MODE_CLIP ? 0 : m.P) + T;
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) snprintf(out->device, sizeof out->device, "%s", p.name);
    }
out:
    free(img);
    free(tok);
    free(tgt);
    free(content);
    free(times);
    model_cuda_free(g);
    model_free(&m);
    return rc;
}
