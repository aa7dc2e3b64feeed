/* test_gpu_host.c: the host side of the CUDA part, which runs without a GPU: the token index of
 * the embedding scatter-adds (cuda_token_index, against a direct construction), and the clean
 * refusal of the GPU model where there is no GPU (or no CUDA in the build): CG_EFAIL, a message
 * saying why, no model handed out. Label quick. */
#include "core/model.h"
#include "kernels/cuda/model_cuda.h"
#include "kernels/gpu.h"
#include "tests/test.h"
#include "util/rng.h"
#include "util/util.h"

#include <stdlib.h>

#if CGVLM_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"

/* rows of token v in order, mapped as documented: (r / per) * stride + off + r % per */
static void check_index(const int *tok, int N, int V, int per, int stride, int off) {
    int *start = malloc(sizeof(int) * (size_t)(V + 1)), *rows = malloc(sizeof(int) * (size_t)(N + 1));
    cuda_token_index(start, rows, tok, N, V, per, stride, off);
    CHECK(start[0] == 0);
    int ok = 1, valid = 0;
    for (int r = 0; r < N; r++) valid += tok[r] >= 0 && tok[r] < V;
    CHECK(start[V] == valid);
    for (int v = 0; v < V && ok; v++) {
        int k = start[v];
        for (int r = 0; r < N; r++) {
            if (tok[r] != v) continue;
            if (k >= start[v + 1] || rows[k] != (r / per) * stride + off + r % per) ok = 0;
            k++;
        }
        if (k != start[v + 1]) ok = 0;
    }
    CHECK(ok);
    free(start);
    free(rows);
}

static void test_token_index(void) {
    cg_rng r;
    cg_rng_seed(&r, 3);
    int tok[200];
    for (int i = 0; i < 200; i++) tok[i] = (int)cg_rng_below(&r, 23) - 1; /* some -1: skipped */
    check_index(tok, 200, 21, 200, 0, 0);  /* identity rows (CLIP's bag of words); 21, 22 skipped */
    check_index(tok, 200, 22, 25, 41, 16); /* 8 rows of 25 text tokens after 16 visual ones */
    check_index(tok, 1, 22, 1, 0, 0);
}
#endif

static void test_refusal(void) {
    if (cg_gpu_count() > 0) return; /* tests/gpu/test_gpu_model covers the GPU */
    model_config cfg;
    CHECK(model_config_preset(&cfg, "tiny") == CG_OK);
    model m;
    CHECK(model_init(&m, &cfg, 1) == CG_OK);
    model_cuda *g = (model_cuda *)&m; /* must be overwritten with NULL */
    CHECK(model_cuda_create(&g, &m) == CG_EFAIL);
    CHECK(g == NULL);
    const char *msg = cg_errmsg();
    printf("refusal: %s\n", msg);
    CHECK(strstr(msg, "GPU") || strstr(msg, "CUDA"));
    cuda_bench_result br;
    CHECK(cuda_bench_train(&cfg, MODE_INSTRUCT, 2, 8, 1, 1, 1, 0, &br) == CG_EFAIL);
    CHECK(br.ms_median == 0.0);
    model_cuda_free(NULL);
    model_free(&m);
}

int main(void) {
#if CGVLM_HAVE_CUDA
    test_token_index();
    CHECK(model_cuda_available() == 1);
#else
    CHECK(model_cuda_available() == 0);
#endif
    test_refusal();
    return test_summary("gpu_host");
}
