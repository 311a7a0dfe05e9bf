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

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
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

/* Timeline tracing (QF_CUDA_TRACE=1, cuda_dev.cu): a launch given a trace
 * slot (8 words, zeroed before the step) records, from thread 0 of every
 * block, the global timer (ns) at its events (TR_START: block start,
 * TR_WAIT: PDL wait returned, TR_LOOP: main work done, TR_END: outputs
 * written) as atomic maxima of ~t (word 2e: the earliest block) and of t
 * (word 2e + 1: the latest). NULL slot: nothing. */
enum { TR_START = 0, TR_WAIT, TR_LOOP, TR_END };
DEV void trace_ev(unsigned long long *tr, int ev) {
    if (!tr || threadIdx.x != 0) return;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    atomicMax(tr + 2 * ev, ~t);
    atomicMax(tr + 2 * ev + 1, t);
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

/* ---- activation encoding helpers (qf_act_quantize semantics) ---- */

/* roundf (ties away from zero) clamped to [-127, 127]; nan gives 0 */
DEV int round_away_127(float v) {
    if (!(fabsf(v) <= 127.0f)) return v > 0 ? 127 : (v < 0 ? -127 : 0);
    return (int)roundf(v);
}

/* nearest, ties to even; out of range and nan clamped */
DEV int round_even(float v) {
    if (!(fabsf(v) <= 4194303.0f)) return v > 0 ? 4194303 : (v < 0 ? -4194303 : 0);
    return (int)rintf(v);
}

/* byte offset of value e of an int8 activation row in mma fragment order
 * (cuda_int.h): per 64 values, lane t's 16 bytes are {group 0 bytes 4t..,
 * group 0 bytes 16+4t.., group 1 bytes 4t.., group 1 bytes 16+4t..} */
DEV int frag_off(int e) {
    int u = e >> 6, e64 = e & 63, kg = e64 >> 5, b = e64 & 31, w = b >> 2, i = b & 3;
    return u * 64 + (w & 3) * 16 + (kg * 2 + (w >> 2)) * 4 + i;
}

/* int8 tensor-core products (sm_80): C = A (16 x 32, rows g and g + 8 of
 * lane g*4+t hold bytes 4t.. and 16+4t..) times B (32 x 8, column g). */
DEV void mma_u8s8_k32(int c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%10,%10,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}

DEV void mma_s8s8_k32(int c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%10,%10,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}

/* Asynchronous copies global -> shared (sm_80): issue many, then wait once. */
DEV void mma_s8s8_k16(int c[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(0));
}

/* 6-bit values (bytes 0..63) minus 32, as signed bytes */
DEV uint32_t s6(uint32_t x) {
    uint32_t y = x ^ 0x20202020u, t = y & 0x20202020u;
    return y | (t << 1) | (t << 2);
}

DEV float h2f(uint32_t bits16) { return __half2float(__ushort_as_half((unsigned short)(bits16 & 0xffff))); }

/* 6-bit scale and min of sub-block j of a Q4_K header (bytes 4..15 of h) */
DEV void k4_scale_min(const uint4 &h, int j, int *sc, int *m) {
    /* byte i of the 12 scale bytes, without a run-time indexed array */
#define SB(i) ((int)((((i) < 4 ? h.y : (i) < 8 ? h.z : h.w) >> (8 * ((i) & 3))) & 0xff))
    if (j < 4) {
        *sc = SB(j) & 63;
        *m = SB(j + 4) & 63;
    } else {
        *sc = (SB(j + 4) & 15) | ((SB(j - 4) >> 6) << 4);
        *m = (SB(j + 4) >> 4) | ((SB(j) >> 6) << 4);
    }
#undef SB
}

/* The K-quant column arithmetic shared by mmq (cuda_mm.cu) and the
 * one-token kernel (cuda_mv.cu), with every rounding spelled out (no
 * multiply-add contraction left to the compiler), so that a token's result
 * is the same bits in both. Q4_K: acc + (d_a (c d sc) - dmin m (d_a sum_a));
 * Q6_K: acc + ci (d d_a) as one fused multiply-add. */
DEV float k4_col(float acc, int c, float dsx, float dsc, float dm, float sx) {
    return __fadd_rn(acc, __fsub_rn(__fmul_rn(dsx, __fmul_rn((float)c, dsc)), __fmul_rn(dm, sx)));
}
DEV float k6_col(float acc, int ci, float d, float dsx) { return __fmaf_rn((float)ci, __fmul_rn(d, dsx), acc); }

/* RoPE of one pair (x0, x1) by (cos, sin) = (c, s), roundings spelled out:
 * the kv-store epilogue of the matrix kernel (one instance per weight
 * format), k_store and attention rotate the same keys and must agree bit
 * for bit whatever contraction each instance would pick. */
DEV float rope_0(float x0, float x1, float c, float s) { return __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)); }
DEV float rope_1(float x0, float x1, float c, float s) { return __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c)); }

DEV void cp16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
}
DEV void cp8(void *dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
}
DEV void cp_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
DEV void cp_wait_all(void) { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

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
