/* cuda_runtime.h (emulation): the few CUDA runtime calls of kernels/cuda/model_cuda.cu, for
 * compiling it as host C++ in tests/gpu's gpu_emu test. Graphs are lists of closures: every op of
 * tests/gpu/emu/emu_ops.cc goes through emu_record, which runs it at once, or appends it to the
 * graph being captured; cudaGraphLaunch runs the list again. So a value the step baked in at
 * capture time (instead of reading it from "device" memory at run time) shows as a wrong replay,
 * and a synchronising call inside a capture aborts the test. Not the real header: never on the
 * include path of the CUDA build. */
#ifndef CG_EMU_CUDA_RUNTIME_H
#define CG_EMU_CUDA_RUNTIME_H

#include <functional>

typedef void *cudaStream_t;
typedef int cudaError_t;
enum { cudaSuccess = 0 };
typedef void *cudaGraph_t;
typedef void *cudaGraphExec_t;
typedef void *cudaEvent_t;
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal,
    cudaStreamCaptureModeThreadLocal,
    cudaStreamCaptureModeRelaxed
};
struct cudaDeviceProp {
    char name[256];
};

/* runs f now, or appends it to the graph being captured */
void emu_record(std::function<void()> f);

cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode);
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *, cudaGraph_t, unsigned long long);
cudaError_t cudaGraphDestroy(cudaGraph_t);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t);
cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t);
cudaError_t cudaEventCreate(cudaEvent_t *);
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t);
cudaError_t cudaEventElapsedTime(float *, cudaEvent_t, cudaEvent_t);
cudaError_t cudaEventSynchronize(cudaEvent_t);
cudaError_t cudaEventDestroy(cudaEvent_t);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *, int);

#endif
