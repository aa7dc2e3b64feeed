/* bench_train.c: `cgvlm bench train`: the time of one training step of a standard size and stage
 * on synthetic batches (random images and tokens of the real shapes), with tokens/s, GFLOP/s
 * (model_step_flops: the matrix products and attention this implementation executes) and peak RSS.
 * Synthetic batches: B = the size's batch, every row a full sequence of ctx positions (P visual +
 * ctx-P text in image stages, ctx text in lm); targets on every text position but the last;
 * content mask (L_con, CLIP) on every text position but the first. */
#include "cli/commands.h"
#include "core/model.h"
#include "util/rng.h"
#include "util/util.h"

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
        "                         [--json]\n"
        "\n"
        "Times training steps (forward, backward, clipping, AdamW) of a standard model size on\n"
        "synthetic batches of the stage's shape and prints ms/step (median and best), tokens/s,\n"
        "GFLOP/s and peak RSS. Defaults: --size tiny --stage instruct --steps 10 --warmup 2,\n"
        "--threads = OpenMP's default. STAGE: lm_pretrain (lm), vit_pretrain (clip), align,\n"
        "instruct.\n");
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

int bench_train(int argc, char **argv) {
    static const struct option opts[] = {{"size", required_argument, 0, 's'},
                                         {"stage", required_argument, 0, 'g'},
                                         {"device", required_argument, 0, 'd'},
                                         {"steps", required_argument, 0, 'n'},
                                         {"warmup", required_argument, 0, 'w'},
                                         {"threads", required_argument, 0, 't'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *size = "tiny", *stage = "instruct", *device = "cpu";
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
        case 'j': json = 1; break;
        case 'h': usage(stdout); return CG_OK;
        default:
            rc = cg_err(CG_EUSER, "unknown option '%s'; see 'cgvlm bench train --help'",
                        argv[optind - 1]);
        }
        if (rc) goto out;
    }
    if (optind < argc) {
        rc = cg_err(CG_EUSER, "unexpected argument '%s'; see 'cgvlm bench train --help'",
                    argv[optind]);
        goto out;
    }
    if (!strcmp(device, "cuda")) {
        rc = cg_err(CG_EUSER,
                    "--device cuda: this build has no CUDA training path yet; use --device cpu");
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
