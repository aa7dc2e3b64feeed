/* bench_train.c: `cgvlm bench train`: the time of one training step of a standard size and stage
 * on synthetic batches (random images and tokens of the real shapes), with tokens/s, GFLOP/s
 * (model_step_flops: the matrix products and attention this implementation executes) and peak RSS.
 * Synthetic batches: B = the size's batch, every row a full sequence of ctx positions (P visual +
 * ctx-P text in image stages, ctx text in lm); targets on every text position but the last;
 * content mask (L_con, CLIP) on every text position but the first. */
#include "cli/commands.h"
#include "core/model.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/model_cuda.h"
#include "kernels/gpu.h"
#include "util/rng.h"
#include "util/util.h"
#include "util/ux_opt.h"

#include <cblas.h>
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void usage(FILE *fp) {
    fprintf(
        fp,
        "usage: cgvlm bench train [--size tiny|small|base] [--stage STAGE]\n"
        "                         [--device cpu|cuda] [--steps N] [--warmup N] [--threads N]\n"
        "                         [--precision fp32|tf32|bf16] [--attn matmul|fused] [--json]\n"
        "\n"
        "Times training steps (forward, backward, clipping, AdamW) of a standard model size on\n"
        "synthetic batches of the stage's shape and prints ms/step (median and best), tokens/s,\n"
        "GFLOP/s and peak RSS. Defaults: --size tiny --stage instruct --steps 10 --warmup 2,\n"
        "--threads = OpenMP's default. STAGE: lm_pretrain (lm), vit_pretrain (clip), align,\n"
        "instruct. With --device cuda (the CUDA plugin, one GPU): --precision of the matrix\n"
        "products (default tf32; bf16: bf16 operands, fp32 master weights and optimizer state)\n"
        "and the --attn kernels (default matmul); MFU = model FLOPs per step / step time / the\n"
        "H100 SXM dense peak of the precision (fp32 67, tf32 494, bf16 989 TFLOP/s). It also\n"
        "prints the step's CUDA graph timed alone (the rest is the host's share) and where one\n"
        "eager step goes, by section (\"lm bwd attention\", ...; JSON: all of them).\n");
}

/* the 1-minute load average: figures measured on a busy machine say so */
static double load_average(void) {
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1.0;
        fclose(f);
    }
    return l;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* --device cuda: the same synthetic step through the CUDA plugin (model_cuda_step, one graph). */
static int bench_train_cuda(const char *size, int mode, const char *precision, const char *attn,
                            int steps, int warmup, int json) {
    static const char *const precs[] = {"fp32", "tf32", "bf16"};
    static const double peak[] = {67e12, 494e12, 989e12};
    int prec = -1, at = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(precision, precs[i])) prec = i;
    if (prec < 0) return cg_err(CG_EUSER, "unknown --precision '%s'; use fp32, tf32 or bf16", precision);
    if (!strcmp(attn, "matmul")) at = CUDA_ATTN_MATMUL;
    else if (!strcmp(attn, "fused")) at = CUDA_ATTN_FUSED;
    else return cg_err(CG_EUSER, "unknown --attn '%s'; use matmul or fused", attn);
    if (!cg_gpu_built()) return cg_err(CG_EUSER, "--device cuda: this build has no CUDA (nvcc was not found); use --device cpu");
    if (cg_gpu_count() == 0) return cg_err(CG_EUSER, "--device cuda: no GPU found; use --device cpu (cgvlm env says why)");
    model_config cfg;
    int rc = model_config_preset(&cfg, size);
    if (rc) return rc;
    int P = (cfg.image_size / cfg.patch) * (cfg.image_size / cfg.patch);
    int T = mode == MODE_LM ? cfg.ctx : cfg.ctx - P;
    cuda_bench_result r;
    if ((rc = cuda_bench_train(&cfg, mode, cfg.batch, T, steps, warmup ? warmup : 1, prec, at, &r)))
        return rc;
    double s = r.ms_median * 1e-3, mfu = r.flops / s / peak[prec];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (json)
        printf("{\"bench\":\"train\",\"device\":\"cuda\",\"gpu\":\"%s\",\"size\":\"%s\",\"stage\":\"%s\","
               "\"precision\":\"%s\",\"attn\":\"%s\",\"batch\":%d,\"seq\":%d,\"steps\":%d,"
               "\"ms_per_step\":%.3f,\"ms_per_step_best\":%.3f,\"tokens_per_s\":%.0f,"
               "\"gflop_per_step\":%.3f,\"gflops_per_s\":%.1f,\"mfu\":%.4f,\"peak_rss_mb\":%.1f,"
               "\"params\":%ld,\"loss_first\":%.4f,\"loss_last\":%.4f,\"graph_ms\":%.3f,"
               "\"eager_fwd_ms\":%.3f,\"eager_bwd_ms\":%.3f,\"eager_opt_ms\":%.3f,\"sections\":[",
               r.device, size, model_mode_name(mode), precs[prec], attn, cfg.batch, r.seq, steps,
               r.ms_median, r.ms_best, cfg.batch * r.seq / s, r.flops * 1e-9, r.flops / s * 1e-9, mfu,
               ru.ru_maxrss / 1024.0, r.params, r.loss_first, r.loss_last, r.graph_ms, r.phase_ms[0],
               r.phase_ms[1], r.phase_ms[2]);
    else
        printf("train %s/%s cuda (%s, %s, %s attention), batch %d x %d: %.3f ms/step (best %.3f; "
               "the graph alone %.3f), %.0f tokens/s, %.1f TFLOP/s, MFU %.1f %%\n",
               size, model_mode_name(mode), r.device, precs[prec], attn, cfg.batch, r.seq,
               r.ms_median, r.ms_best, r.graph_ms, cfg.batch * r.seq / s, r.flops / s * 1e-12, 100 * mfu);
    /* where one eager step goes, largest sections first (all in JSON, the first 8 as text) */
    double all = 0.0;
    for (int i = 0; i < r.n_ops; i++) all += r.ops[i].ms;
    for (int i = 0; i < r.n_ops; i++) {
        if (json)
            printf("%s{\"name\":\"%s\",\"calls\":%d,\"ms\":%.4f}", i ? "," : "", r.ops[i].name,
                   r.ops[i].calls, r.ops[i].ms);
        else if (i < 8)
            printf("%s%s %.3f ms (%.0f %%)%s", i ? "; " : "  one eager step: ", r.ops[i].name,
                   r.ops[i].ms, all > 0 ? 100.0 * r.ops[i].ms / all : 0.0, i + 1 == r.n_ops || i == 7 ? "\n" : "");
    }
    if (json) printf("]}\n");
    return CG_OK;
}

int bench_train(int argc, char **argv) {
    static const struct option opts[] = {{"size", required_argument, 0, 's'},
                                         {"stage", required_argument, 0, 'g'},
                                         {"device", required_argument, 0, 'd'},
                                         {"steps", required_argument, 0, 'n'},
                                         {"warmup", required_argument, 0, 'w'},
                                         {"threads", required_argument, 0, 't'},
                                         {"precision", required_argument, 0, 'p'},
                                         {"attn", required_argument, 0, 'a'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *size = "tiny", *stage = "instruct", *device = "cpu";
    const char *precision = "tf32", *attn = "matmul";
    int steps = 10, warmup = 2, threads = omp_get_max_threads(), json = 0, mode = MODE_INSTRUCT;
    int rc = CG_OK, c;
    model m = {0};
    uint8_t *img = NULL;
    int *tok = NULL, *tgt = NULL;
    uint8_t *content = NULL;
    double *times = NULL;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': size = optarg; break;
        case 'g': stage = optarg; break;
        case 'd': device = optarg; break;
        case 'n': rc = cg_parse_int(optarg, "--steps", 1, 100000, &steps); break;
        case 'w': rc = cg_parse_int(optarg, "--warmup", 0, 100000, &warmup); break;
        case 't': rc = cg_parse_int(optarg, "--threads", 1, 1024, &threads); break;
        case 'p': precision = optarg; break;
        case 'a': attn = optarg; break;
        case 'j': json = 1; break;
        case 'h': usage(stdout); return CG_OK;
        default:
            rc = cg_opt_error("bench train", argv, opts);
        }
        if (rc) goto out;
    }
    if (optind < argc) {
        rc = cg_err(CG_EUSER, "unexpected argument '%s'; see 'cgvlm bench train --help'",
                    argv[optind]);
        goto out;
    }
    if (!strcmp(device, "cuda")) {
        if ((rc = model_mode_parse(stage, &mode)) == CG_OK)
            rc = bench_train_cuda(size, mode, precision, attn, steps, warmup, json);
        goto out;
    }
    if (strcmp(device, "cpu")) {
        rc = cg_err(CG_EUSER, "unknown device '%s'; use cpu or cuda", device);
        goto out;
    }
    model_config cfg;
    if ((rc = model_config_preset(&cfg, size)) || (rc = model_mode_parse(stage, &mode))) goto out;
    omp_set_num_threads(threads);
    if ((rc = model_init(&m, &cfg, 1))) goto out;

    int B = cfg.batch, P = model_num_patches(&m), T = mode == MODE_LM ? cfg.ctx : cfg.ctx - P;
    if (mode == MODE_CLIP) T = cfg.ctx - P; /* captions of the same length as in align */
    long npx = (long)B * cfg.image_size * cfg.image_size * 3;
    img = cg_malloc((size_t)npx);
    tok = cg_malloc(sizeof(int) * (size_t)B * T);
    tgt = cg_malloc(sizeof(int) * (size_t)B * T);
    content = cg_malloc((size_t)B * T);
    cg_rng r;
    cg_rng_seed(&r, 42);
    for (long i = 0; i < npx; i++) img[i] = (uint8_t)cg_rng_below(&r, 256);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            long i = (long)b * T + t;
            tok[i] = t == 0 ? 1 : 4 + (int)cg_rng_below(&r, (uint32_t)cfg.vocab - 4);
            content[i] = t > 0;
        }
    int ntg = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            long i = (long)b * T + t;
            tgt[i] = t + 1 < T ? tok[i + 1] : -1;
            ntg += tgt[i] >= 0;
        }
    model_batch batch = {.B = B,
                         .T = T,
                         .images_u8 = mode == MODE_LM ? NULL : img,
                         .tokens = tok,
                         .targets = tgt,
                         .content = content};
    model_reserve(&m, B, T);
    adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    times = cg_calloc((size_t)steps, sizeof(double));
    float loss_first = 0, loss_last = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = cg_mono_time();
        model_losses l;
        model_zero_grad(&m);
        if ((rc = model_forward(&m, &batch, mode, &l))) goto out;
        model_backward(&m);
        model_clip_grad(&m, 1.0f);
        model_adamw_step(&m, &hp, 1e-4f);
        double dt = cg_mono_time() - t0;
        if (s >= warmup) times[s - warmup] = dt;
        if (s == 0) loss_first = l.loss;
        loss_last = l.loss;
    }
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    double med = times[steps / 2], best = times[0];
    int seq = (mode == MODE_LM || mode == MODE_CLIP ? 0 : P) + T;
    double flops = model_step_flops(&m, mode, B, T, mode == MODE_CLIP ? 0 : ntg);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = ru.ru_maxrss / 1024.0;
    const char *wait = getenv("OMP_WAIT_POLICY");
    double arena_mb = model_arena_mb(&m);
    if (json)
        printf(
            "{\"bench\":\"train\",\"device\":\"cpu\",\"size\":\"%s\",\"stage\":\"%s\",\"batch\":%d,"
            "\"seq\":%d,\"threads\":%d,\"steps\":%d,\"ms_per_step\":%.2f,\"ms_per_step_best\":%.2f,"
            "\"tokens_per_s\":%.0f,\"gflop_per_step\":%.3f,\"gflops_per_s\":%.1f,"
            "\"peak_rss_mb\":%.1f,\"params\":%ld,\"loss_first\":%.4f,\"loss_last\":%.4f,"
            "\"arena_mb\":%.1f,\"blas_core\":\"%s\",\"omp_wait_policy\":\"%s\",\"load1\":%.2f}\n",
            size, model_mode_name(mode), B, seq, threads, steps, med * 1e3, best * 1e3,
            B * seq / med, flops * 1e-9, flops / med * 1e-9, rss_mb, model_num_values(&m),
            loss_first, loss_last, arena_mb, openblas_get_corename(), wait ? wait : "default",
            load_average());
    else
        printf(
            "train %s/%s cpu, batch %d x %d, %d threads: %.2f ms/step (best %.2f), %.0f tokens/s, "
            "%.1f GFLOP/s (%.3f GFLOP/step), peak RSS %.1f MB, load %.2f\n",
            size, model_mode_name(mode), B, seq, threads, med * 1e3, best * 1e3, B * seq / med,
            flops / med * 1e-9, flops * 1e-9, rss_mb, load_average());
out:
    free(img);
    free(tok);
    free(tgt);
    free(content);
    free(times);
    if (m.params) model_free(&m);
    return cg_report(rc);
}
