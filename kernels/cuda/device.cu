/* device.cu: CUDA device discovery for `cgvlm env` and for choosing --device auto (inside the
 * plugin: kernels/gpu_loader.c's cg_gpu_count and cg_gpu_describe call these through the table of
 * kernels/cuda/plugin.h). */
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include "kernels/cuda/plugin.h"

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" void cuda_device_describe(cg_buf *out) {
    int n = 0, driver = 0, runtime = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    if (e != cudaSuccess || n == 0) {
        cg_buf_addf(out, "no GPU (%s; CUDA runtime %d.%d)\n",
                    e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA devices", runtime / 1000,
                    (runtime % 1000) / 10);
        cudaGetLastError();
        return;
    }
    int cublas_version = 0;
    cublasHandle_t h;
    if (cublasCreate(&h) == CUBLAS_STATUS_SUCCESS) {
        cublasGetVersion(h, &cublas_version);
        cublasDestroy(h);
    }
    for (int i = 0; i < n; i++) {
        cudaDeviceProp p;
        cudaGetDeviceProperties(&p, i);
        cg_buf_addf(out, "%d: %s, sm_%d%d, %.1f GiB, %d SMs, driver %d.%d, runtime %d.%d, cuBLAS %d\n",
                    i, p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0,
                    p.multiProcessorCount, driver / 1000, (driver % 1000) / 10, runtime / 1000,
                    (runtime % 1000) / 10, cublas_version);
    }
}
