/* cuda_common.cuh - device helpers shared by the CUDA backend's kernels.
 *
 * Programmatic dependent launch (PDL, sm_90): a kernel launched with the
 * programmatic-serialization attribute may start while its predecessor
 * finishes; it must call pdl_wait() before it reads anything the
 * predecessor wrote (weights and other constant data may be read before).
 * Every kernel here calls pdl_wait() on every path before it exits, so that
 * "predecessor complete" chains through the whole sequence, and
 * pdl_trigger() early so the next kernel's blocks can be scheduled. Without
 * the attribute (or below sm_90) both are no-ops.
 */
#ifndef QF_CUDA_COMMON_CUH
#define QF_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#define DEV static __device__ __forceinline__

DEV void pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

DEV void pdl_trigger(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

DEV float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

DEV double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

DEV float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Launch with or without the PDL attribute. */
template <typename... Exp, typename... Act>
static cudaError_t launch_k(void (*kernel)(Exp...), dim3 grid, dim3 block, size_t smem, cudaStream_t st, int pdl,
                            Act &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

#endif
