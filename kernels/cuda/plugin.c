/* plugin.c: the entry point of libcgvlm_cuda.so (kernels/cuda/plugin.h), the one symbol it exports,
 * and the plugin's side of the host table: the util.h / rng.h / core/model.h functions the CUDA
 * code calls, each forwarding to cgvlm's own (so an error recorded here is the caller's
 * cg_errmsg()). Built into the plugin only, with hidden visibility and -Bsymbolic, so these
 * definitions never meet cgvlm's. */
#include "kernels/cuda/plugin.h"

#include <stdarg.h>
#include <stdio.h>

static const cgvlm_cuda_host *host;

/* ---- the host's functions, as the CUDA code calls them ---- */

int cg_err(int rc, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return host->err(rc, "%s", msg);
}

int cg_err_wrap(int rc, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return host->err_wrap(rc, "%s", msg);
}

void cg_buf_addf(cg_buf *b, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    host->buf_adds(b, line);
}

void *cg_malloc(size_t n) { return host->malloc(n); }
void *cg_calloc(size_t count, size_t size) { return host->calloc(count, size); }
double cg_mono_time(void) { return host->mono_time(); }
void cg_rng_seed(cg_rng *r, uint64_t seed) { host->rng_seed(r, seed); }
uint32_t cg_rng_below(cg_rng *r, uint32_t n) { return host->rng_below(r, n); }
int model_init(model *m, const model_config *cfg, uint64_t seed) {
    return host->model_init(m, cfg, seed);
}
void model_free(model *m) { host->model_free(m); }
model_param *model_find_param(model *m, const char *name) { return host->model_find_param(m, name); }
long model_num_values(const model *m) { return host->model_num_values(m); }
int model_mode_trains(int mode, int group) { return host->model_mode_trains(mode, group); }
double model_step_flops(const model *m, int mode, int B, int T, int n_targets) {
    return host->model_step_flops(m, mode, B, T, n_targets);
}

int model_batch_check(const model_config *cfg, int P_image, const model_batch *batch, int mode) {
    return host->model_batch_check(cfg, P_image, batch, mode);
}

/* ---- the entry point ---- */

static const cgvlm_cuda_api api = {
    .abi_version = CGVLM_CUDA_ABI,
    .gpu_count = cuda_device_count,
    .gpu_describe = cuda_device_describe,
    .create = model_cuda_create,
    .free = model_cuda_free,
    .upload = model_cuda_upload,
    .download = model_cuda_download,
    .set_precision = model_cuda_set_precision,
    .set_attention = model_cuda_set_attention,
    .forward = model_cuda_forward,
    .backward = model_cuda_backward,
    .zero_grad = model_cuda_zero_grad,
    .clip_grad = model_cuda_clip_grad,
    .adamw_step = model_cuda_adamw_step,
    .logits = model_cuda_logits,
    .step = model_cuda_step,
    .profile_step = model_cuda_profile_step,
    .use_graphs = model_cuda_use_graphs,
    .profile_ops = model_cuda_profile_ops,
    .graph_captures = model_cuda_graph_captures,
    .bench_train = cuda_bench_train,
    .bench_gemm = cuda_bench_gemm,
};

__attribute__((visibility("default"))) const cgvlm_cuda_api *cgvlm_cuda_plugin(int abi_version,
                                                                             const cgvlm_cuda_host *h);

const cgvlm_cuda_api *cgvlm_cuda_plugin(int abi_version, const cgvlm_cuda_host *h) {
    if (abi_version != CGVLM_CUDA_ABI || !h || h->abi_version != CGVLM_CUDA_ABI ||
        h->sizeof_model != sizeof(model) || h->sizeof_model_config != sizeof(model_config) ||
        h->sizeof_model_batch != sizeof(model_batch) ||
        h->sizeof_bench_result != sizeof(cuda_bench_result))
        return NULL;
    host = h;
    return &api;
}
