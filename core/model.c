/* model.c: the CG-VLM model (ViT, adapter, LM, losses) on the CPU kernels: parameter and
 * activation arenas, init, forward and backward for each mode, the evaluation helpers. The maths
 * is DESIGN.md §1; the API and the naming scheme are documented in core/model.h. */
#include "core/model.h"

#include "kernels/kernels.h"
#include "util/rng.h"
#include "util/util.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Private structures */

struct block_params {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    float *ln2_w, *ln2_b, *fc_w, *fc_b, *fcp_w, *fcp_b;
};

/* what one transformer block keeps for its backward pass; N = B*T rows. ln1, atty, ln2 and
 * fch_gelu are the inputs of the block's matrix products, needed only for weight gradients: a
 * stack that does not train points them all at one shared set (see stack_bind). */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd; /* (N,C) (N) (N) */
    float *qkv;                       /* (N,3C) */
    float *att;                       /* (B,NH,T,T) */
    float *atty;                      /* (N,C) attention output before the projection */
    float *res2;                      /* (N,C) x + attn */
    float *ln2, *ln2_mean, *ln2_rstd; /* (N,C) (N) (N) */
    float *fch, *fch_gelu;            /* (N,4C) */
    float *res3;                      /* (N,C) the block's output */
} layer_acts;

/* a stack of blocks (the ViT or the LM) and its parameters */
typedef struct {
    int L, C, NH, causal;
    block_params *bp;
    float *lnf_w, *lnf_b;
    layer_acts *la;                   /* (L) */
    float *x0;                        /* (N,C) input */
    float *lnf, *lnf_mean, *lnf_rstd; /* (N,C) (N) (N) output */
    long Ncap;                        /* rows the buffers hold */
    float *shared_wi;                 /* (7,Ncap,C) one set of weight-gradient inputs */
    float *kept_wi;                   /* (L,7,Ncap,C) one set per layer, allocated on first use */
    int kept;                         /* 1: the last forward kept every layer's set */
} stack;

struct acts {
    stack vit, lm;
    float *patches, *patch_emb;  /* (B,P,K) (B,P,dv) */
    float *ad_h, *ad_g, *ad_out; /* (B,P,d); ad_out == ad_h for `linear` */
    float *scratch;              /* (N,C) projection outputs (forward) */
    /* L_gen on the target rows */
    float *xg, *probs, *tok_losses; /* (Nt,d) (Nt,V) (Nt) */
    int *rows, *tg;                 /* (Nt) sequence row, target */
    /* L_con */
    float *pooled, *pooled_u, *pooled_rn, *vbar; /* (B,P',d) (B,P',d) (B*P') (B,d) */
    float *tok_e, *tok_u, *tok_rn, *tbar;        /* (B,T,d) (B,T,d) (B*T) (B,d) */
    float *con_probs;                            /* (2,B,B) */
    /* CLIP */
    float *vit_mean, *img_e, *img_u, *img_rn; /* (B,dv) ... (B) */
    float *bow_emb, *bow_mean, *txt_e, *txt_u, *txt_rn;
    float *clip_probs;
    /* backward scratch, shared by the layers (each zeroed before use) */
    float *dres, *dln, *datty, *dqkv, *dfch, *dfchg, *dlnf, *datt;
    float *dxg, *d_adout, *d_adg, *d_adh, *dpooled_u, *dpooled, *dvbar;
    float *dimg_u, *dimg_e, *dvit_mean, *dtxt_u, *dtxt_e, *dbow_mean, *dbow_emb, *dvit_out,
        *dpatch_emb;
};

#define GRAD(m, p) ((m)->grads_mem + ((p) - (m)->params_mem))

static void zero(float *p, long n) { memset(p, 0, sizeof(float) * (size_t)n); }

/* ---------------------------------------------------------------------------------------------
 * Configuration */

int model_config_preset(model_config *cfg, const char *name) {
    static const struct {
        const char *name;
        int S, p, dv, Lv, hv, d, L, h, ctx, V;
    } sizes[] = {
        {"tiny", 32, 8, 64, 2, 4, 128, 4, 4, 64, 256},
        {"small", 64, 8, 256, 4, 4, 512, 8, 8, 192, 512},
        {"base", 128, 16, 384, 6, 6, 768, 12, 12, 320, 1024},
    };
    for (size_t i = 0; i < CG_ARRAY_LEN(sizes); i++) {
        if (strcmp(name, sizes[i].name)) continue;
        *cfg = (model_config){.image_size = sizes[i].S,
                              .patch = sizes[i].p,
                              .vit_dim = sizes[i].dv,
                              .vit_layers = sizes[i].Lv,
                              .vit_heads = sizes[i].hv,
                              .lm_dim = sizes[i].d,
                              .lm_layers = sizes[i].L,
                              .lm_heads = sizes[i].h,
                              .ctx = sizes[i].ctx,
                              .vocab = sizes[i].V,
                              .adapter = ADAPTER_MLP2X,
                              .pool = 2,
                              .tau = 0.07f,
                              .learn_tau = 0,
                              .lambda = 1.0f,
                              .batch = 32};
        return CG_OK;
    }
    return cg_err(CG_EUSER, "unknown model size '%s'; use tiny, small or base", name);
}

int model_config_check(const model_config *c) {
#define REQUIRE(cond, ...)                                                                         \
    if (!(cond)) return cg_err(CG_EUSER, __VA_ARGS__)
    REQUIRE(c->patch > 0 && c->image_size > 0 && c->image_size % c->patch == 0,
            "image size %d is not a multiple of the patch size %d", c->image_size, c->patch);
    int g = c->image_size / c->patch;
    REQUIRE(c->vit_dim > 0 && c->vit_heads > 0 && c->vit_dim % c->vit_heads == 0,
            "vit width %d is not a multiple of its %d heads", c->vit_dim, c->vit_heads);
    REQUIRE(c->lm_dim > 0 && c->lm_heads > 0 && c->lm_dim % c->lm_heads == 0,
            "lm width %d is not a multiple of its %d heads", c->lm_dim, c->lm_heads);
    REQUIRE(c->vit_layers >= 1 && c->lm_layers >= 1, "layer counts must be >= 1 (vit %d, lm %d)",
            c->vit_layers, c->lm_layers);
    REQUIRE(c->vocab >= 4, "vocab %d is too small (4 specials at least)", c->vocab);
    REQUIRE(c->ctx > g * g, "ctx %d leaves no room for text after %d visual tokens", c->ctx, g * g);
    REQUIRE(c->ctx <= 4096, "ctx %d is larger than 4096", c->ctx);
    REQUIRE(c->adapter == ADAPTER_LINEAR || c->adapter == ADAPTER_MLP2X, "unknown adapter kind %d",
            c->adapter);
    REQUIRE(c->pool >= 1 && g % c->pool == 0, "pool %d does not divide the %dx%d patch grid",
            c->pool, g, g);
    REQUIRE(c->tau > 0.0f, "tau %g must be > 0", (double)c->tau);
    REQUIRE(c->lambda >= 0.0f, "lambda %g must be >= 0", (double)c->lambda);
#undef REQUIRE
    return CG_OK;
}

static const char *const mode_names[][2] = {
    {"lm_pretrain", "lm"}, {"vit_pretrain", "clip"}, {"align", "align"}, {"instruct", "instruct"}};

int model_mode_parse(const char *name, int *mode) {
    for (int i = 0; i < (int)CG_ARRAY_LEN(mode_names); i++)
        if (!strcmp(name, mode_names[i][0]) || !strcmp(name, mode_names[i][1]))
            return *mode = i, CG_OK;
    return cg_err(CG_EUSER, "unknown stage '%s'; use lm_pretrain, vit_pretrain, align or instruct",
                  name);
}

const char *model_mode_name(int mode) {
    return mode >= 0 && mode < (int)CG_ARRAY_LEN(mode_names) ? mode_names[mode][0] : "?";
}

int model_adapter_parse(const char *name, int *adapter) {
    if (!strcmp(name, "linear")) return *adapter = ADAPTER_LINEAR, CG_OK;
    if (!strcmp(name, "mlp2x")) return *adapter = ADAPTER_MLP2X, CG_OK;
    return cg_err(CG_EUSER, "unknown adapter '%s'; use linear or mlp2x", name);
}

int model_mode_trains(int mode, int group) {
    switch (mode) {
    case MODE_LM: return group == GROUP_LM;
    case MODE_CLIP: return group == GROUP_VIT || group == GROUP_CLIP;
    case MODE_ALIGN: return group == GROUP_ADAPTER || group == GROUP_CON;
    case MODE_INSTRUCT: return group == GROUP_ADAPTER || group == GROUP_LM;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Parameters: registered in a fixed order twice — once to count, once to place and initialise. */

enum { INIT_NORMAL, INIT_ZERO, INIT_ONE, INIT_CONST };

typedef struct {
    model *m;
    int pass; /* 0: count, 1: place + init */
    uint64_t seed;
    int n;
    long off;
} param_builder;

static float *add_param(param_builder *pb, const char *name, int d0, int d1, int group, int decay,
                        int init, float value) {
    long numel = (long)d0 * (d1 ? d1 : 1);
    float *p = NULL;
    if (pb->pass == 1) {
        model *m = pb->m;
        model_param *mp = &m->params[pb->n];
        int len = snprintf(mp->name, sizeof mp->name, "%s", name);
        assert(len > 0 && (size_t)len < sizeof mp->name);
        mp->ndim = d1 ? 2 : 1;
        mp->shape[0] = d0;
        mp->shape[1] = d1;
        mp->numel = numel;
        mp->data = p = m->params_mem + pb->off;
        mp->grad = m->grads_mem + pb->off;
        mp->m = m->m_mem + pb->off;
        mp->v = m->v_mem + pb->off;
        mp->group = group;
        mp->decay = decay;
        cg_rng r;
        cg_rng_seed2(&r, pb->seed, (uint64_t)pb->n);
        for (long i = 0; i < numel; i++)
            p[i] = init == INIT_NORMAL  ? value * cg_rng_normal(&r)
                   : init == INIT_ONE   ? 1.0f
                   : init == INIT_CONST ? value
                                        : 0.0f;
    }
    pb->n++;
    pb->off += (numel + 15) & ~15L; /* 64-byte aligned tensors */
    return p;
}

static void add_stack_params(param_builder *pb, const char *prefix, block_params *bp, int L, int C,
                             int group, float **lnf_w, float **lnf_b) {
    char nm[40];
    float res_std = 0.02f / sqrtf(2.0f * L);
#define P(field, suffix, d0, d1, decay, init, val)                                                 \
    snprintf(nm, sizeof nm, "%s.h.%d.%s", prefix, l, suffix);                                      \
    p = add_param(pb, nm, d0, d1, group, decay, init, val);                                        \
    if (bp) bp[l].field = p
    for (int l = 0; l < L; l++) {
        float *p;
        P(ln1_w, "ln1.w", C, 0, 0, INIT_ONE, 0);
        P(ln1_b, "ln1.b", C, 0, 0, INIT_ZERO, 0);
        P(qkv_w, "attn.qkv.w", 3 * C, C, 1, INIT_NORMAL, 0.02f);
        P(qkv_b, "attn.qkv.b", 3 * C, 0, 0, INIT_ZERO, 0);
        P(proj_w, "attn.proj.w", C, C, 1, INIT_NORMAL, res_std);
        P(proj_b, "attn.proj.b", C, 0, 0, INIT_ZERO, 0);
        P(ln2_w, "ln2.w", C, 0, 0, INIT_ONE, 0);
        P(ln2_b, "ln2.b", C, 0, 0, INIT_ZERO, 0);
        P(fc_w, "mlp.fc.w", 4 * C, C, 1, INIT_NORMAL, 0.02f);
        P(fc_b, "mlp.fc.b", 4 * C, 0, 0, INIT_ZERO, 0);
        P(fcp_w, "mlp.proj.w", C, 4 * C, 1, INIT_NORMAL, res_std);
        P(fcp_b, "mlp.proj.b", C, 0, 0, INIT_ZERO, 0);
        (void)p;
    }
#undef P
    snprintf(nm, sizeof nm, "%s.lnf.w", prefix);
    *lnf_w = add_param(pb, nm, C, 0, group, 0, INIT_ONE, 0);
    snprintf(nm, sizeof nm, "%s.lnf.b", prefix);
    *lnf_b = add_param(pb, nm, C, 0, group, 0, INIT_ZERO, 0);
}

static void build_params(param_builder *pb) {
    model *m = pb->m;
    const model_config *c = &m->cfg;
    int dv = c->vit_dim, d = c->lm_dim, V = c->vocab;
    float ls = logf(1.0f / c->tau);
    block_params *vb = pb->pass ? m->vit_blocks : NULL, *lb = pb->pass ? m->lm_blocks : NULL;
    m->vit_patch_w = add_param(pb, "vit.patch.w", dv, m->K, GROUP_VIT, 1, INIT_NORMAL, 0.02f);
    m->vit_patch_b = add_param(pb, "vit.patch.b", dv, 0, GROUP_VIT, 0, INIT_ZERO, 0);
    m->vit_pos = add_param(pb, "vit.pos", m->P, dv, GROUP_VIT, 0, INIT_NORMAL, 0.02f);
    add_stack_params(pb, "vit", vb, c->vit_layers, dv, GROUP_VIT, &m->vit_lnf_w, &m->vit_lnf_b);
    m->ad_fc1_w = add_param(pb, "adapter.fc1.w", d, dv, GROUP_ADAPTER, 1, INIT_NORMAL, 0.02f);
    m->ad_fc1_b = add_param(pb, "adapter.fc1.b", d, 0, GROUP_ADAPTER, 0, INIT_ZERO, 0);
    if (c->adapter == ADAPTER_MLP2X) {
        m->ad_fc2_w = add_param(pb, "adapter.fc2.w", d, d, GROUP_ADAPTER, 1, INIT_NORMAL, 0.02f);
        m->ad_fc2_b = add_param(pb, "adapter.fc2.b", d, 0, GROUP_ADAPTER, 0, INIT_ZERO, 0);
    }
    m->wte = add_param(pb, "lm.wte", V, d, GROUP_LM, 0, INIT_NORMAL, 0.02f);
    m->wpe = add_param(pb, "lm.wpe", c->ctx, d, GROUP_LM, 0, INIT_NORMAL, 0.01f);
    add_stack_params(pb, "lm", lb, c->lm_layers, d, GROUP_LM, &m->lm_lnf_w, &m->lm_lnf_b);
    if (c->learn_tau)
        m->con_logit_scale = add_param(pb, "con.logit_scale", 1, 0, GROUP_CON, 0, INIT_CONST, ls);
    /* CLIP's projections N(0, dv^-1/2) and nn.Embedding's N(0, 1) for the bag of words: the
     * embeddings are unit-normalised right after, and tiny vectors would make that ill-conditioned */
    float proj_std = 1.0f / sqrtf((float)dv);
    m->clip_img_w = add_param(pb, "clip.img_proj.w", dv, dv, GROUP_CLIP, 1, INIT_NORMAL, proj_std);
    m->clip_img_b = add_param(pb, "clip.img_proj.b", dv, 0, GROUP_CLIP, 0, INIT_ZERO, 0);
    m->clip_bow_wte = add_param(pb, "clip.bow.wte", V, dv, GROUP_CLIP, 0, INIT_NORMAL, 1.0f);
    m->clip_txt_w = add_param(pb, "clip.txt_proj.w", dv, dv, GROUP_CLIP, 1, INIT_NORMAL, proj_std);
    m->clip_txt_b = add_param(pb, "clip.txt_proj.b", dv, 0, GROUP_CLIP, 0, INIT_ZERO, 0);
    if (c->learn_tau)
        m->clip_logit_scale =
            add_param(pb, "clip.logit_scale", 1, 0, GROUP_CLIP, 0, INIT_CONST, ls);
}

static void acts_free(struct acts *x) {
    free(x->vit.la);
    free(x->lm.la);
    free(x->vit.kept_wi);
    free(x->lm.kept_wi);
    free(x);
}

int model_init(model *m, const model_config *cfg, uint64_t seed) {
    memset(m, 0, sizeof *m);
    int rc = model_config_check(cfg);
    if (rc) return rc;
    m->cfg = *cfg;
    int g = cfg->image_size / cfg->patch;
    m->P = g * g;
    m->K = cfg->patch * cfg->patch * 3;
    m->vit_blocks = cg_calloc((size_t)cfg->vit_layers, sizeof(block_params));
    m->lm_blocks = cg_calloc((size_t)cfg->lm_layers, sizeof(block_params));
    param_builder pb = {.m = m, .pass = 0, .seed = seed};
    build_params(&pb);
    m->nparams = pb.n;
    m->nvalues = pb.off;
    m->params = cg_calloc((size_t)pb.n, sizeof(model_param));
    size_t bytes = sizeof(float) * (size_t)m->nvalues;
    m->params_mem = cg_calloc(1, bytes);
    m->grads_mem = cg_calloc(1, bytes);
    m->m_mem = cg_calloc(1, bytes);
    m->v_mem = cg_calloc(1, bytes);
    pb = (param_builder){.m = m, .pass = 1, .seed = seed};
    build_params(&pb);
    assert(pb.n == m->nparams && pb.off == m->nvalues);
    return CG_OK;
}

void model_free(model *m) {
    if (m->acts) acts_free(m->acts);
    free(m->acts_mem);
    free(m->ints_mem);
    free(m->params);
    free(m->params_mem);
    free(m->grads_mem);
    free(m->m_mem);
    free(m->v_mem);
    free(m->vit_blocks);
    free(m->lm_blocks);
    memset(m, 0, sizeof *m);
}

int model_num_params(const model *m) { return m->nparams; }
model_param *model_param_at(model *m, int i) {
    return i >= 0 && i < m->nparams ? &m->params[i] : NULL;
}
int model_num_patches(const model *m) { return m->P; }
int model_step_count(const model *m) { return m->opt_step; }
void model_set_step_count(model *m, int t) { m->opt_step = t; }

model_param *model_find_param(model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

int model_copy_params(model *dst, model *src, const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < dst->nparams; i++) {
        model_param *d = &dst->params[i];
        if (strncmp(d->name, prefix, n)) continue;
        model_param *s = model_find_param(src, d->name);
        if (!s) return cg_err(CG_EUSER, "source model has no tensor '%s'", d->name);
        if (s->ndim != d->ndim || s->shape[0] != d->shape[0] || s->shape[1] != d->shape[1])
            return cg_err(CG_EUSER, "tensor '%s' is %dx%d in the source but %dx%d here", d->name,
                          s->shape[0], s->shape[1], d->shape[0], d->shape[1]);
        memcpy(d->data, s->data, sizeof(float) * (size_t)d->numel);
    }
    return CG_OK;
}

long model_num_values(const model *m) {
    long n = 0;
    for (int i = 0; i < m->nparams; i++) n += m->params[i].numel;
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Activations: one arena laid out twice (count, then place) for cap_B rows of cap_T text tokens. */

typedef struct {
    float *base;
    long off;
} arena;

static float *take(arena *a, long n) {
    float *p = a->base ? a->base + a->off : NULL;
    a->off += (n + 15) & ~15L;
    return p;
}

static void layout_stack(arena *a, stack *s, int N, int B, int T) {
    int C = s->C;
    s->Ncap = N;
    s->x0 = take(a, (long)N * C);
    s->shared_wi = take(a, 7L * N * C);
    for (int l = 0; l < s->L; l++) {
        layer_acts *la = &s->la[l];
        la->ln1_mean = take(a, N);
        la->ln1_rstd = take(a, N);
        la->qkv = take(a, 3L * N * C);
        la->att = take(a, (long)B * s->NH * T * T);
        la->res2 = take(a, (long)N * C);
        la->ln2_mean = take(a, N);
        la->ln2_rstd = take(a, N);
        la->fch = take(a, 4L * N * C);
        la->res3 = take(a, (long)N * C);
    }
    s->lnf = take(a, (long)N * C);
    s->lnf_mean = take(a, N);
    s->lnf_rstd = take(a, N);
}

static long lmax(long a, long b) { return a > b ? a : b; }

static void layout_acts(model *m, arena *a, int B, int T) {
    struct acts *x = m->acts;
    const model_config *c = &m->cfg;
    int P = m->P, dv = c->vit_dim, d = c->lm_dim, V = c->vocab;
    int Tlm = T + P > c->ctx ? c->ctx : T + P; /* longest LM sequence: T text (+ P visual) tokens */
    long Nv = (long)B * P, Nl = (long)B * Tlm, Nt = (long)B * T;
    int Pp = P / (c->pool * c->pool);
    layout_stack(a, &x->vit, (int)Nv, B, P);
    layout_stack(a, &x->lm, (int)Nl, B, Tlm);
    x->patches = take(a, Nv * m->K);
    x->patch_emb = take(a, Nv * dv);
    x->ad_h = take(a, Nv * d);
    x->ad_g = c->adapter == ADAPTER_MLP2X ? take(a, Nv * d) : NULL;
    x->ad_out = c->adapter == ADAPTER_MLP2X ? take(a, Nv * d) : x->ad_h;
    x->scratch = take(a, lmax(Nv * dv, Nl * d));
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
    long NC = lmax(Nv * dv, Nl * d);
    x->dres = take(a, NC);
    x->dln = take(a, NC);
    x->datty = take(a, NC);
    x->dqkv = take(a, 3 * NC);
    x->dfch = take(a, 4 * NC);
    x->dfchg = take(a, 4 * NC);
    x->dlnf = take(a, NC);
    x->datt = take(a, lmax((long)B * c->vit_heads * P * P, (long)B * c->lm_heads * Tlm * Tlm));
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

void model_reserve(model *m, int B, int T) {
    assert(B > 0 && T > 0 && T <= m->cfg.ctx);
    if (m->acts && B <= m->cap_B && T <= m->cap_T) return;
    if (m->acts) {
        B = B > m->cap_B ? B : m->cap_B;
        T = T > m->cap_T ? T : m->cap_T;
        acts_free(m->acts);
        free(m->acts_mem);
        free(m->ints_mem);
    }
    const model_config *c = &m->cfg;
    struct acts *x = m->acts = cg_calloc(1, sizeof *x);
    x->vit = (stack){.L = c->vit_layers,
                     .C = c->vit_dim,
                     .NH = c->vit_heads,
                     .causal = 0,
                     .bp = m->vit_blocks,
                     .lnf_w = m->vit_lnf_w,
                     .lnf_b = m->vit_lnf_b};
    x->lm = (stack){.L = c->lm_layers,
                    .C = c->lm_dim,
                    .NH = c->lm_heads,
                    .causal = 1,
                    .bp = m->lm_blocks,
                    .lnf_w = m->lm_lnf_w,
                    .lnf_b = m->lm_lnf_b};
    x->vit.la = cg_calloc((size_t)c->vit_layers, sizeof(layer_acts));
    x->lm.la = cg_calloc((size_t)c->lm_layers, sizeof(layer_acts));
    arena a = {0};
    layout_acts(m, &a, B, T);
    m->acts_size = a.off;
    m->acts_mem = cg_calloc((size_t)a.off, sizeof(float));
    a = (arena){.base = m->acts_mem};
    layout_acts(m, &a, B, T);
    m->ints_mem = cg_calloc(2 * (size_t)B * (size_t)T, sizeof(int));
    x->rows = m->ints_mem;
    x->tg = m->ints_mem + (long)B * T;
    m->cap_B = B;
    m->cap_T = T;
}

/* ---------------------------------------------------------------------------------------------
 * Transformer stacks */

/* Points each layer's weight-gradient inputs (ln1, atty, ln2, fch_gelu) at its own kept set when
 * the stack trains in this forward (allocated the first time: frozen stacks, e.g. the LM in align,
 * never pay for it), else every layer at the one shared set. */
static void stack_bind(stack *s, int keep) {
    long NC = s->Ncap * s->C;
    if (keep && !s->kept_wi) s->kept_wi = cg_malloc(sizeof(float) * 7 * (size_t)NC * (size_t)s->L);
    for (int l = 0; l < s->L; l++) {
        float *w = keep ? s->kept_wi + 7 * NC * l : s->shared_wi;
        layer_acts *a = &s->la[l];
        a->ln1 = w, a->atty = w + NC, a->ln2 = w + 2 * NC, a->fch_gelu = w + 3 * NC;
    }
    s->kept = keep;
}

static void stack_forward(stack *s, float *scratch, int B, int T, int keep) {
    int C = s->C, N = B * T;
    stack_bind(s, keep);
    for (int l = 0; l < s->L; l++) {
        const block_params *p = &s->bp[l];
        layer_acts *a = &s->la[l];
        const float *x = l ? s->la[l - 1].res3 : s->x0;
        layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, N, C);
        matmul_forward(a->qkv, a->ln1, p->qkv_w, p->qkv_b, N, C, 3 * C);
        attention_forward(a->atty, a->att, a->qkv, B, T, C, s->NH, s->causal);
        matmul_forward(scratch, a->atty, p->proj_w, p->proj_b, N, C, C);
        residual_forward(a->res2, x, scratch, N * C);
        layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, p->ln2_w, p->ln2_b, N, C);
        matmul_forward(a->fch, a->ln2, p->fc_w, p->fc_b, N, C, 4 * C);
        gelu_forward(a->fch_gelu, a->fch, N * 4 * C);
        matmul_forward(scratch, a->fch_gelu, p->fcp_w, p->fcp_b, N, 4 * C, C);
        residual_forward(a->res3, a->res2, scratch, N * C);
    }
    layernorm_forward(s->lnf, s->lnf_mean, s->lnf_rstd, s->la[s->L - 1].res3, s->lnf_w, s->lnf_b, N,
                      C);
}

/* From dlnf (N,C), the gradient of the stack's output, to x->dres = the gradient of its input;
 * weight gradients only when wgrad. */
static void stack_backward(model *m, stack *s, const float *dlnf, int B, int T, int wgrad) {
    struct acts *x = m->acts;
    int C = s->C, N = B * T;
    long NC = (long)N * C;
    assert(s->kept || !wgrad);
#define WG(p) (wgrad ? GRAD(m, p) : NULL)
    zero(x->dres, NC);
    layernorm_backward(x->dres, WG(s->lnf_w), WG(s->lnf_b), dlnf, s->la[s->L - 1].res3, s->lnf_w,
                       s->lnf_mean, s->lnf_rstd, N, C);
    for (int l = s->L - 1; l >= 0; l--) {
        const block_params *p = &s->bp[l];
        layer_acts *a = &s->la[l];
        const float *in = l ? s->la[l - 1].res3 : s->x0;
        /* MLP: res3 = res2 + proj(gelu(fc(ln2(res2)))) */
        zero(x->dfchg, 4 * NC);
        matmul_backward(x->dfchg, WG(p->fcp_w), WG(p->fcp_b), x->dres, a->fch_gelu, p->fcp_w, N,
                        4 * C, C);
        zero(x->dfch, 4 * NC);
        gelu_backward(x->dfch, a->fch, x->dfchg, 4 * N * C);
        zero(x->dln, NC);
        matmul_backward(x->dln, WG(p->fc_w), WG(p->fc_b), x->dfch, a->ln2, p->fc_w, N, C, 4 * C);
        layernorm_backward(x->dres, WG(p->ln2_w), WG(p->ln2_b), x->dln, a->res2, p->ln2_w,
                           a->ln2_mean, a->ln2_rstd, N, C);
        /* attention: res2 = in + proj(attn(qkv(ln1(in)))) */
        zero(x->datty, NC);
        matmul_backward(x->datty, WG(p->proj_w), WG(p->proj_b), x->dres, a->atty, p->proj_w, N, C,
                        C);
        zero(x->dqkv, 3 * NC);
        attention_backward(x->dqkv, x->datt, x->datty, a->qkv, a->att, B, T, C, s->NH, s->causal);
        zero(x->dln, NC);
        matmul_backward(x->dln, WG(p->qkv_w), WG(p->qkv_b), x->dqkv, a->ln1, p->qkv_w, N, C, 3 * C);
        layernorm_backward(x->dres, WG(p->ln1_w), WG(p->ln1_b), x->dln, in, p->ln1_w, a->ln1_mean,
                           a->ln1_rstd, N, C);
    }
#undef WG
}

/* ---------------------------------------------------------------------------------------------
 * Forward pieces */

static int is_image_mode(int mode) { return mode != MODE_LM; }

static float logit_scale_of(const model *m, const float *param) {
    return param ? param[0] : logf(1.0f / m->cfg.tau);
}

int model_batch_check(const model_config *c, int P_image, const model_batch *b, int mode) {
    if (mode < MODE_LM || mode > MODE_INSTRUCT)
        return cg_err(CG_EUSER, "unknown model mode %d", mode);
    if (b->B <= 0 || b->T <= 0) return cg_err(CG_EUSER, "empty batch (B=%d, T=%d)", b->B, b->T);
    int P = is_image_mode(mode) && mode != MODE_CLIP ? P_image : 0;
    if (P + b->T > c->ctx)
        return cg_err(CG_EUSER, "sequence of %d visual + %d text tokens exceeds ctx %d", P, b->T,
                      c->ctx);
    if (is_image_mode(mode) && !b->images_u8 && !b->images_f32)
        return cg_err(CG_EUSER, "this stage needs images but the batch has none");
    if (!b->tokens) return cg_err(CG_EUSER, "batch has no tokens");
    long n = (long)b->B * b->T;
    for (long i = 0; i < n; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= c->vocab)
            return cg_err(CG_EUSER, "token id %d at position %ld is outside the vocabulary [0, %d)",
                          b->tokens[i], i, c->vocab);
        if (b->targets && (b->targets[i] < -1 || b->targets[i] >= c->vocab))
            return cg_err(CG_EUSER, "target id %d at position %ld is outside [-1, %d)",
                          b->targets[i], i, c->vocab);
    }
    if (mode == MODE_ALIGN && c->lambda > 0.0f && !b->content)
        return cg_err(CG_EUSER, "L_con needs the caption content mask (batch.content)");
    return CG_OK;
}

/* images → ViT features in x->vit.lnf (B,P,dv) */
static void vit_forward(model *m, const model_batch *b) {
    struct acts *x = m->acts;
    int B = b->B, P = m->P, dv = m->cfg.vit_dim;
    patchify_forward(x->patches, b->images_u8, b->images_f32, B, m->cfg.image_size, m->cfg.patch);
    matmul_forward(x->patch_emb, x->patches, m->vit_patch_w, m->vit_patch_b, B * P, m->K, dv);
    encoder_forward(x->vit.x0, x->patch_emb, NULL, NULL, m->vit_pos, B, P, P, dv);
    stack_forward(&x->vit, x->scratch, B, P, m->train && model_mode_trains(m->mode, GROUP_VIT));
}

/* ViT features → visual tokens x->ad_out (B,P,d) */
static void adapter_forward(model *m, int B) {
    struct acts *x = m->acts;
    int N = B * m->P, dv = m->cfg.vit_dim, d = m->cfg.lm_dim;
    matmul_forward(x->ad_h, x->vit.lnf, m->ad_fc1_w, m->ad_fc1_b, N, dv, d);
    if (m->cfg.adapter == ADAPTER_MLP2X) {
        gelu_forward(x->ad_g, x->ad_h, N * d);
        matmul_forward(x->ad_out, x->ad_g, m->ad_fc2_w, m->ad_fc2_b, N, d, d);
    }
}

/* mean token cross-entropy over the target positions of the LM output */
static float gen_forward(model *m, const int *targets, int B, int T, int P) {
    struct acts *x = m->acts;
    int d = m->cfg.lm_dim, Ttot = P + T, n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int y = targets[(long)b * T + t];
            if (y < 0) continue;
            x->rows[n] = b * Ttot + P + t;
            x->tg[n++] = y;
        }
    m->n_targets = n;
    if (!n) return 0.0f;
#pragma omp parallel for schedule(static) if ((long)n * d >= 32768) /* CG_PAR of kernels/cpu */
    for (int i = 0; i < n; i++)
        memcpy(x->xg + (long)i * d, x->lm.lnf + (long)x->rows[i] * d, sizeof(float) * d);
    classifier_forward(x->tok_losses, x->probs, x->xg, m->wte, x->tg, n, d, m->cfg.vocab);
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x->tok_losses[i];
    return (float)(s / n);
}

/* v̄ (B,d) from the visual tokens */
static void con_image_forward(model *m, int B) {
    struct acts *x = m->acts;
    int g = m->cfg.image_size / m->cfg.patch, k = m->cfg.pool, d = m->cfg.lm_dim;
    int Pp = m->P / (k * k);
    avgpool_forward(x->pooled, x->ad_out, B, g, g, k, d);
    l2norm_forward(x->pooled_u, x->pooled_rn, x->pooled, B * Pp, d);
    masked_mean_forward(x->vbar, x->pooled_u, NULL, B, Pp, d);
}

/* t̄ (B,d) from the captions' content tokens */
static void con_text_forward(model *m, const model_batch *b) {
    struct acts *x = m->acts;
    int d = m->cfg.lm_dim, N = b->B * b->T;
    embedding_forward(x->tok_e, b->tokens, m->wte, N, d);
    l2norm_forward(x->tok_u, x->tok_rn, x->tok_e, N, d);
    masked_mean_forward(x->tbar, x->tok_u, b->content, b->B, b->T, d);
}

static float clip_forward(model *m, const model_batch *b) {
    struct acts *x = m->acts;
    int B = b->B, T = b->T, dv = m->cfg.vit_dim;
    masked_mean_forward(x->vit_mean, x->vit.lnf, NULL, B, m->P, dv);
    matmul_forward(x->img_e, x->vit_mean, m->clip_img_w, m->clip_img_b, B, dv, dv);
    l2norm_forward(x->img_u, x->img_rn, x->img_e, B, dv);
    embedding_forward(x->bow_emb, b->tokens, m->clip_bow_wte, B * T, dv);
    masked_mean_forward(x->bow_mean, x->bow_emb, b->content, B, T, dv);
    matmul_forward(x->txt_e, x->bow_mean, m->clip_txt_w, m->clip_txt_b, B, dv, dv);
    l2norm_forward(x->txt_u, x->txt_rn, x->txt_e, B, dv);
    return contrastive_forward(x->clip_probs, x->img_u, x->txt_u,
                               logit_scale_of(m, m->clip_logit_scale), B, dv);
}

/* the LM over [visual tokens | text tokens] (visual part from x->ad_out when P > 0) */
static void lm_forward(model *m, const int *tokens, int B, int T, int P) {
    struct acts *x = m->acts;
    encoder_forward(x->lm.x0, P ? x->ad_out : NULL, tokens, m->wte, m->wpe, B, P + T, P,
                    m->cfg.lm_dim);
    stack_forward(&x->lm, x->scratch, B, P + T, m->train && model_mode_trains(m->mode, GROUP_LM));
}

/* The forward pass; train = 0 for evaluations (no per-layer weight-gradient inputs kept, no
 * backward allowed after it). */
static int forward(model *m, const model_batch *b, int mode, model_losses *out, int train) {
    int rc = model_batch_check(&m->cfg, m->P, b, mode);
    if (rc) return rc;
    model_reserve(m, b->B, b->T);
    struct acts *x = m->acts;
    int B = b->B, T = b->T;
    memset(out, 0, sizeof *out);
    m->train = train;
    m->mode = mode;
    m->B = B;
    m->T = T;
    m->batch = *b;
    m->has_con = 0;
    m->n_targets = 0;
    if (mode == MODE_CLIP) {
        m->Ttot = 0;
        vit_forward(m, b);
        out->con = out->loss = clip_forward(m, b);
        return CG_OK;
    }
    int P = is_image_mode(mode) ? m->P : 0;
    m->Ttot = P + T;
    if (P) {
        vit_forward(m, b);
        adapter_forward(m, B);
    }
    lm_forward(m, b->tokens, B, T, P);
    if (b->targets) out->gen = gen_forward(m, b->targets, B, T, P);
    out->n_targets = m->n_targets;
    out->loss = out->gen;
    if (mode == MODE_ALIGN && m->cfg.lambda > 0.0f) {
        m->has_con = 1;
        con_image_forward(m, B);
        con_text_forward(m, b);
        out->con = contrastive_forward(x->con_probs, x->vbar, x->tbar,
                                       logit_scale_of(m, m->con_logit_scale), B, m->cfg.lm_dim);
        out->loss += m->cfg.lambda * out->con;
    }
    return CG_OK;
}

int model_forward(model *m, const model_batch *b, int mode, model_losses *out) {
    return forward(m, b, mode, out, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Backward */

static void clip_backward(model *m) {
    struct acts *x = m->acts;
    const model_batch *b = &m->batch;
    int B = m->B, T = m->T, P = m->P, dv = m->cfg.vit_dim;
    zero(x->dimg_u, (long)B * dv);
    zero(x->dtxt_u, (long)B * dv);
    float *dls = m->clip_logit_scale ? GRAD(m, m->clip_logit_scale) : NULL;
    contrastive_backward(x->dimg_u, x->dtxt_u, dls, x->clip_probs, x->img_u, x->txt_u,
                         logit_scale_of(m, m->clip_logit_scale), 1.0f, B, dv);
    /* caption side: bag of words */
    zero(x->dtxt_e, (long)B * dv);
    l2norm_backward(x->dtxt_e, x->dtxt_u, x->txt_u, x->txt_rn, B, dv);
    zero(x->dbow_mean, (long)B * dv);
    matmul_backward(x->dbow_mean, GRAD(m, m->clip_txt_w), GRAD(m, m->clip_txt_b), x->dtxt_e,
                    x->bow_mean, m->clip_txt_w, B, dv, dv);
    zero(x->dbow_emb, (long)B * T * dv);
    masked_mean_backward(x->dbow_emb, x->dbow_mean, b->content, B, T, dv);
    embedding_backward(GRAD(m, m->clip_bow_wte), x->dbow_emb, b->tokens, B * T, dv);
    /* image side: projection, mean pool, ViT, patch embedding */
    zero(x->dimg_e, (long)B * dv);
    l2norm_backward(x->dimg_e, x->dimg_u, x->img_u, x->img_rn, B, dv);
    zero(x->dvit_mean, (long)B * dv);
    matmul_backward(x->dvit_mean, GRAD(m, m->clip_img_w), GRAD(m, m->clip_img_b), x->dimg_e,
                    x->vit_mean, m->clip_img_w, B, dv, dv);
    zero(x->dvit_out, (long)B * P * dv);
    masked_mean_backward(x->dvit_out, x->dvit_mean, NULL, B, P, dv);
    stack_backward(m, &x->vit, x->dvit_out, B, P, 1);
    zero(x->dpatch_emb, (long)B * P * dv);
    encoder_backward(x->dpatch_emb, NULL, GRAD(m, m->vit_pos), x->dres, NULL, B, P, P, dv);
    matmul_backward(NULL, GRAD(m, m->vit_patch_w), GRAD(m, m->vit_patch_b), x->dpatch_emb,
                    x->patches, m->vit_patch_w, B * P, m->K, dv);
}

void model_backward(model *m) {
    assert(m->acts && m->B > 0 && m->train); /* right after model_forward, not an evaluation */
    struct acts *x = m->acts;
    const model_batch *b = &m->batch;
    int mode = m->mode, B = m->B, T = m->T;
    if (mode == MODE_CLIP) {
        clip_backward(m);
        return;
    }
    int lm_w = model_mode_trains(mode, GROUP_LM), ad_w = model_mode_trains(mode, GROUP_ADAPTER);
    int P = is_image_mode(mode) ? m->P : 0, Ttot = P + T, d = m->cfg.lm_dim, V = m->cfg.vocab;
    long NP = (long)B * P;
    if (ad_w) zero(x->d_adout, NP * d);
    /* L_gen: classifier, LM, input embeddings */
    int nt = m->n_targets;
    if (nt > 0 && (lm_w || ad_w)) {
        zero(x->dxg, (long)nt * d);
        classifier_backward(x->dxg, lm_w ? GRAD(m, m->wte) : NULL, x->probs, x->xg, m->wte, x->tg,
                            1.0f / nt, nt, d, V);
        zero(x->dlnf, (long)B * Ttot * d);
#pragma omp parallel for schedule(static) if ((long)nt * d >= 32768) /* CG_PAR of kernels/cpu */
        for (int i = 0; i < nt; i++)
            memcpy(x->dlnf + (long)x->rows[i] * d, x->dxg + (long)i * d, sizeof(float) * d);
        stack_backward(m, &x->lm, x->dlnf, B, Ttot, lm_w);
        encoder_backward(ad_w && P ? x->d_adout : NULL, lm_w ? GRAD(m, m->wte) : NULL,
                         lm_w ? GRAD(m, m->wpe) : NULL, x->dres, b->tokens, B, Ttot, P, d);
    }
    /* λ·L_con: through v̄ to the visual tokens (t̄ is constant: the LM is frozen in align) */
    if (m->has_con) {
        assert(!lm_w);
        int g = m->cfg.image_size / m->cfg.patch, k = m->cfg.pool, Pp = P / (k * k);
        zero(x->dvbar, (long)B * d);
        float *dls = m->con_logit_scale ? GRAD(m, m->con_logit_scale) : NULL;
        contrastive_backward(x->dvbar, NULL, dls, x->con_probs, x->vbar, x->tbar,
                             logit_scale_of(m, m->con_logit_scale), m->cfg.lambda, B, d);
        zero(x->dpooled_u, (long)B * Pp * d);
        masked_mean_backward(x->dpooled_u, x->dvbar, NULL, B, Pp, d);
        zero(x->dpooled, (long)B * Pp * d);
        l2norm_backward(x->dpooled, x->dpooled_u, x->pooled_u, x->pooled_rn, B * Pp, d);
        avgpool_backward(x->d_adout, x->dpooled, B, g, g, k, d);
    }
    /* adapter (the ViT is frozen in every mode that trains the adapter) */
    if (ad_w && P) {
        int dv = m->cfg.vit_dim, N = (int)NP;
        const float *dh = x->d_adout;
        if (m->cfg.adapter == ADAPTER_MLP2X) {
            zero(x->d_adg, NP * d);
            matmul_backward(x->d_adg, GRAD(m, m->ad_fc2_w), GRAD(m, m->ad_fc2_b), x->d_adout,
                            x->ad_g, m->ad_fc2_w, N, d, d);
            zero(x->d_adh, NP * d);
            gelu_backward(x->d_adh, x->ad_h, x->d_adg, N * d);
            dh = x->d_adh;
        }
        matmul_backward(NULL, GRAD(m, m->ad_fc1_w), GRAD(m, m->ad_fc1_b), dh, x->vit.lnf,
                        m->ad_fc1_w, N, dv, d);
    }
}

void model_zero_grad(model *m) { zero(m->grads_mem, m->nvalues); }

/* ---------------------------------------------------------------------------------------------
 * Optimizer */

float model_clip_grad(model *m, float max_norm) {
    double ss = 0.0;
    for (int i = 0; i < m->nparams; i++) {
        model_param *p = &m->params[i];
        if (model_mode_trains(m->mode, p->group)) ss += sumsq(p->grad, p->numel);
    }
    float norm = (float)sqrt(ss);
    if (max_norm > 0.0f && norm > max_norm) {
        float s = max_norm / norm;
        for (int i = 0; i < m->nparams; i++) {
            model_param *p = &m->params[i];
            if (model_mode_trains(m->mode, p->group)) scale_inplace(p->grad, p->numel, s);
        }
    }
    return norm;
}

void model_adamw_step(model *m, const adamw_params *hp, float lr) {
    m->opt_step++;
    for (int i = 0; i < m->nparams; i++) {
        model_param *p = &m->params[i];
        if (!model_mode_trains(m->mode, p->group)) continue;
        adamw_update(p->data, p->grad, p->m, p->v, p->numel, lr, hp->beta1, hp->beta2, hp->eps,
                     p->decay ? hp->weight_decay : 0.0f, m->opt_step);
    }
}

float lr_cosine(int step, int warmup, int total_steps, float max_lr, float min_lr) {
    if (step < warmup) return max_lr * (float)(step + 1) / (float)warmup;
    if (step >= total_steps) return min_lr;
    double r =
        (double)(step - warmup) / (double)(total_steps - warmup > 0 ? total_steps - warmup : 1);
    return min_lr + (float)(0.5 * (1.0 + cos(M_PI * r))) * (max_lr - min_lr);
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation */

/* The forward an evaluation needs: the LM over text (MODE_LM) or over image + text (every image
 * mode; no L_con, so align batches need no content mask). */
static int eval_mode(int mode) { return mode == MODE_LM ? MODE_LM : MODE_INSTRUCT; }

int model_sequence_logprob(model *m, const model_batch *b, int mode, double *logprob, int *count) {
    if (!b->targets) return cg_err(CG_EUSER, "log-likelihood needs targets");
    model_losses l;
    int rc = forward(m, b, eval_mode(mode), &l, 0);
    if (rc) return rc;
    for (int i = 0; i < b->B; i++) logprob[i] = 0.0, count[i] = 0;
    for (int i = 0; i < m->n_targets; i++) {
        int row = m->acts->rows[i] / m->Ttot;
        logprob[row] -= m->acts->tok_losses[i];
        count[row]++;
    }
    return CG_OK;
}

int model_logits(model *m, const model_batch *b, int mode, float *out) {
    model_batch nb = *b;
    nb.targets = NULL;
    model_losses l;
    int rc = forward(m, &nb, eval_mode(mode), &l, 0);
    if (rc) return rc;
    matmul_forward(out, m->acts->lm.lnf, m->wte, NULL, b->B * m->Ttot, m->cfg.lm_dim, m->cfg.vocab);
    return CG_OK;
}

int model_generate(model *m, const model_batch *b, int mode, const int *prompt_len, int n_new,
                   int *out) {
    int B = b->B, T = b->T, maxlen = 0;
    mode = eval_mode(mode);
    for (int i = 0; i < B; i++) {
        if (prompt_len[i] < 1 || prompt_len[i] > T)
            return cg_err(CG_EUSER, "prompt length %d of row %d is outside [1, %d]", prompt_len[i],
                          i, T);
        maxlen = prompt_len[i] > maxlen ? prompt_len[i] : maxlen;
    }
    int P = is_image_mode(mode) ? m->P : 0, Tend = maxlen + n_new - 1;
    if (n_new < 1 || P + Tend > m->cfg.ctx)
        return cg_err(CG_EUSER, "generating %d tokens after a %d-token prompt exceeds ctx %d",
                      n_new, maxlen, m->cfg.ctx);
    int *work = cg_calloc((size_t)B * (size_t)Tend, sizeof(int));
    int *packed = cg_calloc((size_t)B * (size_t)Tend, sizeof(int));
    int rc = CG_OK, d = m->cfg.lm_dim, V = m->cfg.vocab;
    for (int i = 0; i < B; i++)
        memcpy(work + (long)i * Tend, b->tokens + (long)i * T, sizeof(int) * prompt_len[i]);
    for (int s = 0; s < n_new; s++) {
        int Tc = maxlen + s;
        for (int i = 0; i < B; i++)
            memcpy(packed + (long)i * Tc, work + (long)i * Tend, sizeof(int) * Tc);
        model_batch nb = *b;
        nb.tokens = packed;
        nb.T = Tc;
        nb.targets = NULL;
        model_losses l;
        rc = forward(m, &nb, mode, &l, 0);
        if (rc) goto out;
        for (int i = 0; i < B; i++) {
            int pos = P + prompt_len[i] + s - 1;
            const float *h = m->acts->lm.lnf + ((long)i * m->Ttot + pos) * d;
            int best = 0;
            float bestv = -INFINITY;
            for (int v = 0; v < V; v++) {
                const float *w = m->wte + (long)v * d;
                float z = 0.0f;
                for (int c = 0; c < d; c++) z += h[c] * w[c];
                if (z > bestv) bestv = z, best = v;
            }
            out[(long)i * n_new + s] = best;
            if (prompt_len[i] + s < Tend) work[(long)i * Tend + prompt_len[i] + s] = best;
        }
    }
out:
    free(work);
    free(packed);
    return rc;
}

int model_image_embed(model *m, const model_batch *b, float *out) {
    if (!b->images_u8 && !b->images_f32) return cg_err(CG_EUSER, "image embedding needs images");
    if (b->B <= 0) return cg_err(CG_EUSER, "empty batch (B=%d)", b->B);
    model_reserve(m, b->B, 1);
    m->train = 0;
    vit_forward(m, b);
    adapter_forward(m, b->B);
    con_image_forward(m, b->B);
    memcpy(out, m->acts->vbar, sizeof(float) * (size_t)b->B * m->cfg.lm_dim);
    return CG_OK;
}

int model_caption_embed(model *m, const model_batch *b, float *out) {
    model_batch nb = *b;
    nb.targets = NULL;
    nb.images_u8 = NULL;
    nb.images_f32 = NULL;
    int rc = model_batch_check(&m->cfg, m->P, &nb, MODE_LM);
    if (rc) return rc;
    model_reserve(m, b->B, b->T);
    con_text_forward(m, b);
    memcpy(out, m->acts->tbar, sizeof(float) * (size_t)b->B * m->cfg.lm_dim);
    return CG_OK;
}

double model_arena_mb(const model *m) {
    double floats = 4.0 * m->nvalues + m->acts_size;
    if (m->acts) {
        const stack *st[2] = {&m->acts->vit, &m->acts->lm};
        for (int i = 0; i < 2; i++)
            if (st[i]->kept_wi) floats += 7.0 * st[i]->Ncap * st[i]->C * st[i]->L;
    }
    return floats * sizeof(float) / (1024.0 * 1024.0);
}

/* ---------------------------------------------------------------------------------------------
 * FLOPs of one training step, counting what this implementation executes in `mode`:
 *   a matrix product (N,C)x(C,OC) is 2·N·C·OC per pass: forward 1 pass; backward 1 pass for the
 *   input gradient when one is needed, 1 more for the weight gradient when the weight trains;
 *   attention per (batch, head) is 4·hs per attended pair forward (q·k and a·v) and 8·hs backward,
 *   with T(T+1)/2 pairs causal and T² bidirectional;
 *   the tied head is 2·n_targets·d·V per pass (forward, dx, and dwte when the LM trains).
 * Elementwise work (layernorm, GELU, softmax, optimizer) is not counted. */
static double stack_flops(int B, int T, int C, int NH, int L, int causal, int bwd_in, int bwd_w) {
    double N = (double)B * T,
           mm = 2.0 * N * C * C * 12.0; /* qkv 3C² + proj C² + fc 4C² + fcp 4C² */
    double pairs = causal ? (double)T * (T + 1) / 2.0 : (double)T * T;
    double att = (double)B * NH * pairs * (C / NH);
    double f = mm + 4.0 * att;
    if (bwd_in) f += mm + 8.0 * att;
    if (bwd_w) f += mm;
    return f * L;
}

double model_step_flops(const model *m, int mode, int B, int T, int n_targets) {
    const model_config *c = &m->cfg;
    int P = m->P, dv = c->vit_dim, d = c->lm_dim, V = c->vocab;
    int lm_w = model_mode_trains(mode, GROUP_LM), ad_w = model_mode_trains(mode, GROUP_ADAPTER);
    double f = 0.0;
    if (is_image_mode(mode)) {
        int vit_w = mode == MODE_CLIP;
        double patch = 2.0 * B * P * m->K * dv;
        f += patch * (vit_w ? 2.0 : 1.0);
        f += stack_flops(B, P, dv, c->vit_heads, c->vit_layers, 0, vit_w, vit_w);
    }
    if (mode == MODE_CLIP) return f + 2.0 * 2.0 * B * dv * dv * 3.0; /* two projections */
    if (mode != MODE_LM) {
        /* forward fc1 (+ fc2); backward: fc1 weight gradient only (the ViT is frozen), fc2 both */
        double fc1 = 2.0 * B * P * dv * d,
               fc2 = c->adapter == ADAPTER_MLP2X ? 2.0 * B * P * d * d : 0.0;
        f += fc1 + fc2 + (ad_w ? fc1 + 2.0 * fc2 : 0.0);
    }
    int Ttot = (mode == MODE_LM ? 0 : P) + T;
    f += stack_flops(B, Ttot, d, c->lm_heads, c->lm_layers, 1, 1, lm_w);
    f += 2.0 * n_targets * d * V * (lm_w ? 3.0 : 2.0);
    return f;
}
