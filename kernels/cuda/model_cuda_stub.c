/* model_cuda_stub.c: the GPU model's entry points when the build has no CUDA: each one says so
 * (CG_EFAIL), so callers can offer --device cuda and fail with a clear line. The cuda_* kernels of
 * cuda_ops.h have no stubs: only CUDA builds (CGVLM_HAVE_CUDA) may call them. */
#include "kernels/cuda/model_cuda.h"
#include "util/util.h"

#include <string.h>

static int no_cuda(void) {
    return cg_err(CG_EFAIL, "this cgvlm was built without CUDA (no nvcc at configure time); "
                            "rebuild on a machine with the CUDA toolkit or use --device cpu");
}

int model_cuda_available(void) { return 0; }
int model_cuda_create(model_cuda **out, const model *m) {
    *out = NULL;
    return no_cuda();
}
void model_cuda_free(model_cuda *g) { (void)g; }
int model_cuda_upload(model_cuda *g, const model *m) { return no_cuda(); }
int model_cuda_download(model_cuda *g, model *m) { return no_cuda(); }
int model_cuda_set_precision(model_cuda *g, int prec) { return no_cuda(); }
int model_cuda_forward(model_cuda *g, const model_batch *batch, int mode, model_losses *out) {
    return no_cuda();
}
int model_cuda_backward(model_cuda *g) { return no_cuda(); }
int model_cuda_zero_grad(model_cuda *g) { return no_cuda(); }
int model_cuda_clip_grad(model_cuda *g, float max_norm, float *norm) { return no_cuda(); }
int model_cuda_adamw_step(model_cuda *g, const adamw_params *hp, float lr) { return no_cuda(); }
int model_cuda_logits(model_cuda *g, const model_batch *batch, int mode, float *out) {
    return no_cuda();
}
int model_cuda_step(model_cuda *g, const model_batch *batch, int mode, const adamw_params *hp,
                    float lr, float max_norm, model_losses *out, float *norm) {
    return no_cuda();
}
int model_cuda_profile_step(model_cuda *g, const model_batch *batch, int mode,
                            const adamw_params *hp, float lr, float max_norm, double ms[3]) {
    return no_cuda();
}
int model_cuda_set_attention(model_cuda *g, int attn) { return no_cuda(); }
void model_cuda_use_graphs(model_cuda *g, int on) { (void)g, (void)on; }
int model_cuda_graph_captures(const model_cuda *g) { return 0; }
int cuda_bench_train(const model_config *cfg, int mode, int B, int T, int steps, int warmup,
                     int prec, int attn, cuda_bench_result *out) {
    memset(out, 0, sizeof *out);
    return no_cuda();
}
