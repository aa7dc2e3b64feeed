/* ref_export.c: writes what the PyTorch reference (tests/train/reference.py) needs to check the C
 * model: `ref_export MODE DIR` initialises a small model, builds a batch, and writes as .npy
 * files under DIR the config (config.txt), the batch, every named parameter (p0/NAME.npy), the
 * logits of the first forward, its losses, the gradients of the trainable tensors (g/NAME.npy),
 * then runs 5 AdamW steps (clip 1.0) on the same batch and writes the losses of each step and the
 * parameters after them (p5/NAME.npy). */
#include "core/model.h"
#include "util/rng.h"
#include "util/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STEPS 5

static void die(const char *what) {
    fprintf(stderr, "ref_export: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* a .npy v1.0 file: dtype '<f4', '<i4' or '|u1', C order */
static void write_npy(const char *dir, const char *name, const char *dtype, const void *data,
                      size_t elsize, int ndim, const long *shape) {
    char path[512], hdr[256], shp[128] = "";
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    size_t n = 1, off = 0;
    for (int i = 0; i < ndim; i++) {
        n *= (size_t)shape[i];
        off += (size_t)snprintf(shp + off, sizeof shp - off, "%ld,%s", shape[i],
                                ndim > 1 && i < ndim - 1 ? " " : "");
    }
    int len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                       dtype, shp);
    int total = 10 + len + 1, pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) die(path);
    unsigned short hl = (unsigned short)(len + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(&hl, 2, 1, f);
    fwrite(hdr, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    if (fwrite(data, elsize, n, f) != n || fclose(f)) die(path);
}

static void write_params(model *m, const char *dir, int which /* 0 data, 1 grad */,
                         int trainable_only) {
    mkdir(dir, 0755);
    for (int i = 0; i < model_num_params(m); i++) {
        model_param *p = model_param_at(m, i);
        if (trainable_only && !model_mode_trains(m->mode, p->group)) continue;
        long shape[2] = {p->shape[0], p->shape[1]};
        write_npy(dir, p->name, "<f4", which ? p->grad : p->data, 4, p->ndim, shape);
    }
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: ref_export lm|clip|align|instruct DIR [variant]\n"
                        "  variant 'linear': linear adapter, fixed tau, lambda 0.5\n");
        return 2;
    }
    static const char *modes[] = {"lm", "clip", "align", "instruct"};
    int mode = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(argv[1], modes[i])) mode = i;
    if (mode < 0) {
        fprintf(stderr, "ref_export: unknown mode '%s'\n", argv[1]);
        return 2;
    }
    const char *dir = argv[2];
    int linear = argc == 4 && !strcmp(argv[3], "linear");
    model_config cfg = {.image_size = 16,
                        .patch = 4,
                        .vit_dim = 32,
                        .vit_layers = 2,
                        .vit_heads = 2,
                        .lm_dim = 48,
                        .lm_layers = 2,
                        .lm_heads = 3,
                        .ctx = 32,
                        .vocab = 40,
                        .adapter = ADAPTER_MLP2X,
                        .pool = 2,
                        .tau = 0.07f,
                        .learn_tau = 1,
                        .lambda = 1.0f,
                        .batch = 4};
    if (linear) cfg.adapter = ADAPTER_LINEAR, cfg.learn_tau = 0, cfg.lambda = 0.5f;
    enum { B = 4, T = 12 };
    float lr = 1e-3f, clip = 1.0f;
    adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    model m;
    if (model_init(&m, &cfg, 2024) != CG_OK) return 1;
    /* a batch: uint8 images; <bos>=1 then words; targets on the last 7 text positions; content =
     * the words, shorter for later rows */
    static uint8_t img[B * 16 * 16 * 3], content[B * T];
    static int tok[B * T], tgt[B * T];
    cg_rng r;
    cg_rng_seed(&r, 77);
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)cg_rng_below(&r, 256);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            tok[i] = t == 0 ? 1 : 4 + (int)cg_rng_below(&r, (uint32_t)cfg.vocab - 4);
            content[i] = t > 0 && t < T - b;
        }
    for (int i = 0; i < B * T; i++) tgt[i] = i % T >= T - 8 && i % T < T - 1 ? tok[i + 1] : -1;
    int text_only = mode == MODE_LM;
    model_batch batch = {.B = B,
                         .T = T,
                         .images_u8 = text_only ? NULL : img,
                         .tokens = tok,
                         .targets = mode == MODE_CLIP ? NULL : tgt,
                         .content = content};

    if (mkdir(dir, 0755) && errno != EEXIST) die(dir);
    char sub[512];
    FILE *f = fopen((snprintf(sub, sizeof sub, "%s/config.txt", dir), sub), "w");
    if (!f) die(sub);
    fprintf(f,
            "mode %s\nimage_size %d\npatch %d\nvit_dim %d\nvit_layers %d\nvit_heads %d\n"
            "lm_dim %d\nlm_layers %d\nlm_heads %d\nctx %d\nvocab %d\nadapter %s\npool %d\n"
            "tau %.9g\nlearn_tau %d\nlambda %.9g\nlr %.9g\nclip %.9g\nbeta1 %.9g\nbeta2 %.9g\n"
            "eps %.9g\nweight_decay %.9g\nsteps %d\n",
            argv[1], cfg.image_size, cfg.patch, cfg.vit_dim, cfg.vit_layers, cfg.vit_heads,
            cfg.lm_dim, cfg.lm_layers, cfg.lm_heads, cfg.ctx, cfg.vocab,
            cfg.adapter == ADAPTER_MLP2X ? "mlp2x" : "linear", cfg.pool, (double)cfg.tau,
            cfg.learn_tau, (double)cfg.lambda, (double)lr, (double)clip, (double)hp.beta1,
            (double)hp.beta2, (double)hp.eps, (double)hp.weight_decay, STEPS);
    fprintf(f, "decay");
    for (int i = 0; i < model_num_params(&m); i++)
        if (model_param_at(&m, i)->decay) fprintf(f, " %s", model_param_at(&m, i)->name);
    fprintf(f, "\n");
    fclose(f);
    long ishape[4] = {B, 16, 16, 3}, tshape[2] = {B, T};
    write_npy(dir, "images", "|u1", img, 1, 4, ishape);
    write_npy(dir, "tokens", "<i4", tok, 4, 2, tshape);
    write_npy(dir, "targets", "<i4", tgt, 4, 2, tshape);
    write_npy(dir, "content", "|u1", content, 1, 2, tshape);
    write_params(&m, (snprintf(sub, sizeof sub, "%s/p0", dir), sub), 0, 0);

    if (mode != MODE_CLIP) {
        int Ttot = (text_only ? 0 : model_num_patches(&m)) + T;
        float *logits = cg_malloc(sizeof(float) * B * Ttot * cfg.vocab);
        if (model_logits(&m, &batch, mode, logits) != CG_OK) return 1;
        long lshape[3] = {B, Ttot, cfg.vocab};
        write_npy(dir, "logits", "<f4", logits, 4, 3, lshape);
        free(logits);
    }
    FILE *lf = fopen((snprintf(sub, sizeof sub, "%s/losses.txt", dir), sub), "w");
    if (!lf) die(sub);
    for (int s = 0; s < STEPS; s++) {
        model_losses l;
        model_zero_grad(&m);
        if (model_forward(&m, &batch, mode, &l) != CG_OK) {
            fprintf(stderr, "ref_export: %s\n", cg_errmsg());
            return 1;
        }
        model_backward(&m);
        fprintf(lf, "%.9g %.9g %.9g\n", (double)l.loss, (double)l.gen, (double)l.con);
        if (s == 0) write_params(&m, (snprintf(sub, sizeof sub, "%s/g", dir), sub), 1, 1);
        model_clip_grad(&m, clip);
        model_adamw_step(&m, &hp, lr);
    }
    fclose(lf);
    write_params(&m, (snprintf(sub, sizeof sub, "%s/p5", dir), sub), 0, 1);
    model_free(&m);
    return 0;
}
