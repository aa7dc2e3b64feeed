/* gpu_loader.c: the CUDA part as cgvlm sees it (kernels/gpu.h, kernels/cuda/model_cuda.h):
 * loads the plugin libcgvlm_cuda.so (kernels/cuda/plugin.h) on the first GPU question and
 * forwards to its table, so that a process that never asks does not map cudart and cuBLAS.
 *
 * Where the plugin is looked for: $CGVLM_CUDA_PLUGIN when set (a path), else next to the running
 * binary (/proc/self/exe), else in the build directory (CGVLM_CUDA_PLUGIN_DIR, for test binaries
 * in its subdirectories). Without a plugin every answer is "no GPU": a build without CUDA says
 * "built without CUDA", a plugin that does not load (file missing, libcublas missing, another
 * build's plugin) says "cannot load libcgvlm_cuda.so: WHY", and the model entry points fail with
 * CG_EFAIL and that reason. */
#include "kernels/cuda/plugin.h"
#include "kernels/gpu.h"

#include <string.h>

#ifndef CGVLM_HAVE_CUDA
#define CGVLM_HAVE_CUDA 0
#endif

#if CGVLM_HAVE_CUDA
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_once_t loader_once = PTHREAD_ONCE_INIT;
static const cgvlm_cuda_api *loader_api; /* NULL: not loaded, loader_why says why */
static char loader_why[4608]; /* room for a whole path */

static const cgvlm_cuda_host loader_host = {
    .abi_version = CGVLM_CUDA_ABI,
    .sizeof_model = sizeof(model),
    .sizeof_model_config = sizeof(model_config),
    .sizeof_model_batch = sizeof(model_batch),
    .sizeof_bench_result = sizeof(cuda_bench_result),
    .err = cg_err,
    .err_wrap = cg_err_wrap,
    .malloc = cg_malloc,
    .calloc = cg_calloc,
    .mono_time = cg_mono_time,
    .buf_adds = cg_buf_adds,
    .rng_seed = cg_rng_seed,
    .rng_below = cg_rng_below,
    .model_init = model_init,
    .model_free = model_free,
    .model_find_param = model_find_param,
    .model_num_values = model_num_values,
    .model_mode_trains = model_mode_trains,
    .model_step_flops = model_step_flops,
    .model_batch_check = model_batch_check,
};

/* the plugin's path (see the header); 0 when it does not fit */
static int loader_path(char *path, size_t n) {
    const char *env = getenv("CGVLM_CUDA_PLUGIN");
    if (env && *env) return (size_t)snprintf(path, n, "%s", env) < n;
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        if ((size_t)snprintf(path, n, "%s/%s", exe, CGVLM_CUDA_PLUGIN_FILE) >= n) return 0;
        if (access(path, F_OK) == 0) return 1;
    }
#ifdef CGVLM_CUDA_PLUGIN_DIR
    char alt[4096];
    if ((size_t)snprintf(alt, sizeof alt, "%s/%s", CGVLM_CUDA_PLUGIN_DIR, CGVLM_CUDA_PLUGIN_FILE) <
            sizeof alt &&
        access(alt, F_OK) == 0)
        return (size_t)snprintf(path, n, "%s", alt) < n;
#endif
    return len > 0; /* next to the binary: dlopen's error names it */
}

static void loader_load(void) {
    char path[4096];
    if (!loader_path(path, sizeof path)) {
        snprintf(loader_why, sizeof loader_why, "cannot load %s: path too long or /proc missing",
                 CGVLM_CUDA_PLUGIN_FILE);
        return;
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(loader_why, sizeof loader_why, "cannot load %s: %s", CGVLM_CUDA_PLUGIN_FILE,
                 dlerror());
        return;
    }
    cgvlm_cuda_entry_fn entry;
    *(void **)&entry = dlsym(lib, CGVLM_CUDA_ENTRY); /* POSIX's idiom for a function pointer */
    const cgvlm_cuda_api *api = entry ? entry(CGVLM_CUDA_ABI, &loader_host) : NULL;
    if (!api || api->abi_version != CGVLM_CUDA_ABI) {
        snprintf(loader_why, sizeof loader_why,
                 "cannot load %s: %s is %s (this cgvlm wants plugin ABI %d); rebuild it with cgvlm",
                 CGVLM_CUDA_PLUGIN_FILE, path,
                 entry ? "from another build" : "not a cgvlm CUDA plugin", CGVLM_CUDA_ABI);
        dlclose(lib);
        return;
    }
    loader_api = api; /* the library stays loaded for the life of the process */
}

static const cgvlm_cuda_api *plugin(void) {
    pthread_once(&loader_once, loader_load);
    return loader_api;
}
#else
static const cgvlm_cuda_api *plugin(void) { return NULL; }
#endif

/* CG_EFAIL with the reason there is no plugin */
static int no_cuda(void) {
#if CGVLM_HAVE_CUDA
    return cg_err(CG_EFAIL,
                  "the CUDA part of this cgvlm is unavailable (%s); put %s next to the cgvlm "
                  "binary (or set CGVLM_CUDA_PLUGIN to its path) or use --device cpu",
                  loader_why, CGVLM_CUDA_PLUGIN_FILE);
#else
    return cg_err(CG_EFAIL, "this cgvlm was built without CUDA (no nvcc at configure time); "
                            "rebuild on a machine with the CUDA toolkit or use --device cpu");
#endif
}

/* ---- kernels/gpu.h ---- */

int cg_gpu_built(void) { return CGVLM_HAVE_CUDA; }

int cg_gpu_count(void) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->gpu_count() : 0;
}

void cg_gpu_describe(cg_buf *out) {
    const cgvlm_cuda_api *a = plugin();
    if (a) {
        a->gpu_describe(out);
        return;
    }
#if CGVLM_HAVE_CUDA
    cg_buf_addf(out, "no GPU (%s)\n", loader_why);
#else
    cg_buf_adds(out, "no GPU (built without CUDA)\n");
#endif
}

/* ---- kernels/cuda/model_cuda.h ---- */

int model_cuda_available(void) { return plugin() != NULL; }

int model_cuda_create(model_cuda **out, const model *m) {
    *out = NULL;
    const cgvlm_cuda_api *a = plugin();
    return a ? a->create(out, m) : no_cuda();
}

void model_cuda_free(model_cuda *g) {
    const cgvlm_cuda_api *a = g ? plugin() : NULL;
    if (a) a->free(g);
}

int model_cuda_upload(model_cuda *g, const model *m) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->upload(g, m) : no_cuda();
}

int model_cuda_download(model_cuda *g, model *m) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->download(g, m) : no_cuda();
}

int model_cuda_set_precision(model_cuda *g, int prec) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->set_precision(g, prec) : no_cuda();
}

int model_cuda_set_attention(model_cuda *g, int attn) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->set_attention(g, attn) : no_cuda();
}

int model_cuda_forward(model_cuda *g, const model_batch *batch, int mode, model_losses *out) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->forward(g, batch, mode, out) : no_cuda();
}

int model_cuda_backward(model_cuda *g) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->backward(g) : no_cuda();
}

int model_cuda_zero_grad(model_cuda *g) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->zero_grad(g) : no_cuda();
}

int model_cuda_clip_grad(model_cuda *g, float max_norm, float *norm) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->clip_grad(g, max_norm, norm) : no_cuda();
}

int model_cuda_adamw_step(model_cuda *g, const adamw_params *hp, float lr) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->adamw_step(g, hp, lr) : no_cuda();
}

int model_cuda_logits(model_cuda *g, const model_batch *batch, int mode, float *out) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->logits(g, batch, mode, out) : no_cuda();
}

int model_cuda_step(model_cuda *g, const model_batch *batch, int mode, const adamw_params *hp,
                    float lr, float max_norm, model_losses *out, float *norm) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->step(g, batch, mode, hp, lr, max_norm, out, norm) : no_cuda();
}

int model_cuda_profile_step(model_cuda *g, const model_batch *batch, int mode,
                            const adamw_params *hp, float lr, float max_norm, double ms[3]) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->profile_step(g, batch, mode, hp, lr, max_norm, ms) : no_cuda();
}

void model_cuda_use_graphs(model_cuda *g, int on) {
    const cgvlm_cuda_api *a = plugin();
    if (a) a->use_graphs(g, on);
}

int model_cuda_profile_ops(const model_cuda *g, cuda_op_time *out, int max) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->profile_ops(g, out, max) : 0;
}

int model_cuda_graph_captures(const model_cuda *g) {
    const cgvlm_cuda_api *a = plugin();
    return a ? a->graph_captures(g) : 0;
}

int cuda_bench_train(const model_config *cfg, int mode, int B, int T, int steps, int warmup,
                     int prec, int attn, cuda_bench_result *out) {
    const cgvlm_cuda_api *a = plugin();
    if (a) return a->bench_train(cfg, mode, B, T, steps, warmup, prec, attn, out);
    memset(out, 0, sizeof *out);
    return no_cuda();
}

int cuda_bench_gemm(int M, int N, int K, int ta, int tb, int kind, int iters, double *ms) {
    const cgvlm_cuda_api *a = plugin();
    *ms = 0.0;
    return a ? a->bench_gemm(M, N, K, ta, tb, kind, iters, ms) : no_cuda();
}
