/* gpu_bench.c: the GPU benchmarks of bench/gpu_check.sh, built with the plugin of the same build.
 * Training steps (cuda_bench_train, as `cgvlm bench train --device cuda`): one line per run, or
 * JSON with --json: ms/step (median, best), tokens/s, TFLOP/s of model_step_flops, MFU against
 * the H100 SXM dense peak of the precision (bf16 989, tf32 494, fp32 67 TFLOP/s), and where the
 * time of one eager step went, by section (--sections prints them as a table).
 * --gemm: the size's matrix products alone (cuda_bench_gemm) in each precision cuBLAS offers.
 * Exit 77 without a GPU. */
#include "core/model.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/model_cuda.h"
#include "kernels/gpu.h"
#include "util/util.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char *stages[] = {"lm", "clip", "align", "instruct"};

static int parse_name(const char *s, const char *const *names, int n, const char *what, int *out) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return *out = i, CG_OK;
    return cg_err(CG_EUSER, "unknown %s '%s'", what, s);
}

/* the LM's products of one training step at this size (N rows through the LM, Nt text rows),
 * each in every precision: ms and TFLOP/s */
static int bench_gemm(const model_config *cfg, const char *size, int B, int seq, int T) {
    int N = B * seq, Nt = B * (T - 1), C = cfg->lm_dim, V = cfg->vocab;
    const struct {
        const char *name;
        int M, Nn, K, ta, tb;
    } shapes[] = {
        {"qkv forward", N, 3 * C, C, 0, 1},       {"attn proj forward", N, C, C, 0, 1},
        {"fc forward", N, 4 * C, C, 0, 1},        {"mlp proj forward", N, C, 4 * C, 0, 1},
        {"fc backward dinp", N, C, 4 * C, 0, 0},  {"fc backward dweight", 4 * C, C, N, 1, 0},
        {"classifier forward", Nt, V, C, 0, 1},
    };
    static const char *kinds[] = {"fp32", "tf32", "bf16-on-fp32", "bf16"};
    printf("%s LM products (N = %d rows, C = %d): ms and TFLOP/s\n%-22s %-17s", size, N, C, "product",
           "M x N x K");
    for (int k = 0; k < 4; k++) printf(" %20s", kinds[k]);
    printf("\n");
    for (size_t i = 0; i < CG_ARRAY_LEN(shapes); i++) {
        char dims[40];
        snprintf(dims, sizeof dims, "%dx%dx%d", shapes[i].M, shapes[i].Nn, shapes[i].K);
        printf("%-22s %-17s", shapes[i].name, dims);
        for (int k = 0; k < 4; k++) {
            double ms = 0.0;
            int rc = cuda_bench_gemm(shapes[i].M, shapes[i].Nn, shapes[i].K, shapes[i].ta, shapes[i].tb,
                                     k, 20, &ms);
            if (rc) return cg_report(rc);
            double tf = 2.0 * shapes[i].M * shapes[i].Nn * shapes[i].K / (ms * 1e-3) * 1e-12;
            printf(" %8.3f ms %6.1f TF", ms, tf);
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"size", required_argument, 0, 's'}, {"stage", required_argument, 0, 'g'},
        {"prec", required_argument, 0, 'p'}, {"steps", required_argument, 0, 'n'},
        {"warmup", required_argument, 0, 'w'}, {"batch", required_argument, 0, 'b'},
        {"attn", required_argument, 0, 'a'}, {"json", no_argument, 0, 'j'},
        {"gemm", no_argument, 0, 'G'}, {"sections", no_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    static const char *precs[] = {"fp32", "tf32", "bf16"}, *attns[] = {"matmul", "fused"};
    const char *size = "tiny";
    int mode = MODE_INSTRUCT, prec = CUDA_PREC_BF16, attn = CUDA_ATTN_MATMUL, steps = 20, warmup = 3;
    int batch = 0, json = 0, gemm = 0, sections = 0;
    int rc = CG_OK, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': size = optarg; break;
        case 'g': rc = parse_name(optarg, stages, 4, "stage", &mode); break;
        case 'p': rc = parse_name(optarg, precs, 3, "precision", &prec); break;
        case 'a': rc = parse_name(optarg, attns, 2, "attention", &attn); break;
        case 'n': rc = cg_parse_int(optarg, "--steps", 1, 100000, &steps); break;
        case 'w': rc = cg_parse_int(optarg, "--warmup", 1, 100000, &warmup); break;
        case 'b': rc = cg_parse_int(optarg, "--batch", 1, 4096, &batch); break;
        case 'j': json = 1; break;
        case 'G': gemm = 1; break;
        case 'S': sections = 1; break;
        case 'h':
            printf("usage: gpu_bench [--size tiny|small|base] [--stage lm|clip|align|instruct]\n"
                   "                 [--prec fp32|tf32|bf16] [--attn matmul|fused] [--steps N]\n"
                   "                 [--warmup N] [--batch B] [--json] [--sections]\n"
                   "       gpu_bench --gemm [--size tiny|small|base] [--stage ...] [--batch B]\n");
            return 0;
        default: rc = cg_err(CG_EUSER, "unknown option '%s'", argv[optind - 1]);
        }
        if (rc) return cg_report(rc);
    }
    model_config cfg;
    if ((rc = model_config_preset(&cfg, size))) return cg_report(rc);
    if (cg_gpu_count() == 0) {
        printf("no GPU: skipped (%s)\n", cg_gpu_built() ? "no CUDA device" : "built without CUDA");
        return 77;
    }
    int B = batch ? batch : cfg.batch, P = (cfg.image_size / cfg.patch) * (cfg.image_size / cfg.patch);
    int T = mode == MODE_LM ? cfg.ctx : cfg.ctx - P;
    if (gemm) return bench_gemm(&cfg, size, B, mode == MODE_LM ? T : P + T, T);
    cuda_bench_result r;
    if ((rc = cuda_bench_train(&cfg, mode, B, T, steps, warmup, prec, attn, &r))) return cg_report(rc);
    static const double peak[] = {67e12, 494e12, 989e12};
    double s = r.ms_median * 1e-3, tflops = r.flops / s * 1e-12, mfu = r.flops / s / peak[prec];
    if (json)
        printf("{\"bench\":\"train\",\"device\":\"cuda\",\"gpu\":\"%s\",\"size\":\"%s\",\"stage\":\"%s\","
               "\"prec\":\"%s\",\"attn\":\"%s\",\"batch\":%d,\"seq\":%d,\"steps\":%d,\"ms_per_step\":%.3f,"
               "\"ms_per_step_best\":%.3f,\"tokens_per_s\":%.0f,\"tflops_per_s\":%.2f,\"mfu\":%.4f,"
               "\"gflop_per_step\":%.3f,\"params\":%ld,\"loss_first\":%.4f,\"loss_last\":%.4f,"
               "\"graph_ms\":%.3f,\"eager_fwd_ms\":%.3f,\"eager_bwd_ms\":%.3f,\"eager_opt_ms\":%.3f,\"sections\":[",
               r.device, size, stages[mode], precs[prec], attns[attn], B, r.seq, steps, r.ms_median,
               r.ms_best, B * r.seq / s, tflops, mfu, r.flops * 1e-9, r.params, (double)r.loss_first,
               (double)r.loss_last, r.graph_ms, r.phase_ms[0], r.phase_ms[1], r.phase_ms[2]);
    if (json) {
        for (int i = 0; i < r.n_ops; i++)
            printf("%s{\"name\":\"%s\",\"calls\":%d,\"ms\":%.4f}", i ? "," : "", r.ops[i].name,
                   r.ops[i].calls, r.ops[i].ms);
        printf("]}\n");
    } else
        printf("train %s/%s cuda %s %s attention, batch %d x %d: %.3f ms/step (best %.3f), %.0f tokens/s, "
               "%.2f TFLOP/s, MFU %.1f%% (loss %.4f -> %.4f) on %s; the graph alone %.3f ms; one "
               "eager step: forward %.3f, backward %.3f, clip + AdamW %.3f ms\n",
               size, stages[mode], precs[prec], attns[attn], B, r.seq, r.ms_median, r.ms_best,
               B * r.seq / s, tflops, 100.0 * mfu, (double)r.loss_first, (double)r.loss_last, r.device,
               r.graph_ms, r.phase_ms[0], r.phase_ms[1], r.phase_ms[2]);
    if (sections) {
        double all = 0.0;
        for (int i = 0; i < r.n_ops; i++) all += r.ops[i].ms;
        printf("%-28s %6s %9s %6s\n", "section (one eager step)", "calls", "ms", "share");
        for (int i = 0; i < r.n_ops; i++)
            printf("%-28s %6d %9.3f %5.1f%%\n", r.ops[i].name, r.ops[i].calls, r.ops[i].ms,
                   all > 0 ? 100.0 * r.ops[i].ms / all : 0.0);
        printf("%-28s %6s %9.3f\n", "all", "", all);
    }
    return 0;
}
