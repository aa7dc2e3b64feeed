/* plugin.h: the boundary between cgvlm and its CUDA plugin libcgvlm_cuda.so, shared by both sides.
 *
 * The CUDA code (the .cu files of kernels/cuda) is built as a shared library that cgvlm loads only when a GPU
 * question is first asked (kernels/gpu_loader.c, dlopen with RTLD_NOW | RTLD_LOCAL), so that a
 * process that never touches the GPU does not map cudart/cuBLAS/cuBLASLt (hundreds of MB, 0.1 s
 * and more of dynamic loading). The plugin exports one symbol, CGVLM_CUDA_ENTRY:
 *
 *     const cgvlm_cuda_api *cgvlm_cuda_plugin(int abi_version, const cgvlm_cuda_host *host);
 *
 * which returns the table of everything cgvlm calls (the device query of kernels/gpu.h, the
 * model_cuda_* API of model_cuda.h, cuda_bench_train), or NULL when abi_version (or one of the
 * struct sizes in host) is not the plugin's own: a plugin from another build is refused, never
 * half-used. What the plugin needs from cgvlm (the error messages of util.h, allocation, the CPU
 * model's bookkeeping of core/model.h) it takes from the host table, so that an error raised in
 * the plugin is the caller's cg_errmsg() and the plugin has no undefined symbol of cgvlm's.
 *
 * Bump CGVLM_CUDA_ABI on any change to the two tables below or to the meaning of an entry. */
#ifndef CG_CUDA_PLUGIN_H
#define CG_CUDA_PLUGIN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/model.h"
#include "kernels/cuda/model_cuda.h"
#include "util/rng.h"
#include "util/util.h"

#define CGVLM_CUDA_ABI 3
#define CGVLM_CUDA_PLUGIN_FILE "libcgvlm_cuda.so"
#define CGVLM_CUDA_ENTRY "cgvlm_cuda_plugin"

/* What cgvlm lends the plugin (util.h, rng.h and core/model.h functions of the same names). */
typedef struct {
    int abi_version;
    /* sizes of the structs that cross the boundary, checked by the plugin */
    size_t sizeof_model, sizeof_model_config, sizeof_model_batch, sizeof_bench_result;
    int (*err)(int rc, const char *fmt, ...) CG_PRINTF(2, 3);
    int (*err_wrap)(int rc, const char *fmt, ...) CG_PRINTF(2, 3);
    void *(*malloc)(size_t n);
    void *(*calloc)(size_t count, size_t size);
    double (*mono_time)(void);
    void (*buf_adds)(cg_buf *b, const char *s);
    void (*rng_seed)(cg_rng *r, uint64_t seed);
    uint32_t (*rng_below)(cg_rng *r, uint32_t n);
    int (*model_init)(model *m, const model_config *cfg, uint64_t seed);
    void (*model_free)(model *m);
    model_param *(*model_find_param)(model *m, const char *name);
    long (*model_num_values)(const model *m);
    int (*model_mode_trains)(int mode, int group);
    double (*model_step_flops)(const model *m, int mode, int B, int T, int n_targets);
    int (*model_batch_check)(const model_config *cfg, int P_image, const model_batch *batch, int mode);
} cgvlm_cuda_host;

/* What the plugin offers: each entry has the contract of the function of the same name in
 * kernels/gpu.h or kernels/cuda/model_cuda.h. */
typedef struct {
    int abi_version;
    int (*gpu_count)(void);
    void (*gpu_describe)(cg_buf *out);
    int (*create)(model_cuda **out, const model *m);
    void (*free)(model_cuda *g);
    int (*upload)(model_cuda *g, const model *m);
    int (*download)(model_cuda *g, model *m);
    int (*set_precision)(model_cuda *g, int prec);
    int (*set_attention)(model_cuda *g, int attn);
    int (*forward)(model_cuda *g, const model_batch *batch, int mode, model_losses *out);
    int (*backward)(model_cuda *g);
    int (*zero_grad)(model_cuda *g);
    int (*clip_grad)(model_cuda *g, float max_norm, float *norm);
    int (*adamw_step)(model_cuda *g, const adamw_params *hp, float lr);
    int (*logits)(model_cuda *g, const model_batch *batch, int mode, float *out);
    int (*step)(model_cuda *g, const model_batch *batch, int mode, const adamw_params *hp,
                float lr, float max_norm, model_losses *out, float *norm);
    int (*profile_step)(model_cuda *g, const model_batch *batch, int mode,
                        const adamw_params *hp, float lr, float max_norm, double ms[3]);
    void (*use_graphs)(model_cuda *g, int on);
    int (*profile_ops)(const model_cuda *g, cuda_op_time *out, int max);
    int (*graph_captures)(const model_cuda *g);
    int (*bench_train)(const model_config *cfg, int mode, int B, int T, int steps, int warmup,
                       int prec, int attn, cuda_bench_result *out);
    int (*bench_gemm)(int M, int N, int K, int ta, int tb, int kind, int iters, double *ms);
} cgvlm_cuda_api;

typedef const cgvlm_cuda_api *(*cgvlm_cuda_entry_fn)(int abi_version, const cgvlm_cuda_host *host);

/* Inside the plugin only (kernels/cuda/device.cu): the device query behind the table's gpu_count
 * and gpu_describe. */
int cuda_device_count(void);
void cuda_device_describe(cg_buf *out);

#ifdef __cplusplus
}
#endif

#endif
