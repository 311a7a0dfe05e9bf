/* cuda_mm.cu - weight repacking and the matrix multiplications.
 *
 * Quantized weights (Q4_0, Q8_0, Q4_K, Q6_K) go through one kernel family,
 * mmq: a block owns MT tiles of 16 rows and NT groups of 8 tokens; its W
 * warps split the k range (the same split whatever the number of tokens,
 * so a token's result does not depend on its batch), each warp walks its
 * k-steps with a double-buffered register prefetch of the weight tiles
 * (the first group issued before the PDL wait: weights do not depend on
 * the previous kernel), unpacks them into int8 mma fragments and
 * multiplies them with the int8 activations on the tensor cores
 * (mma.sync m16n8k32 / m16n8k16). Up to 8 tokens, a block first copies
 * their encoded activation rows into shared memory (one coalesced copy)
 * so that the k loop reads them with shared-memory latency.
 * Every 32-value group (16 for Q6_K scales) is an exact integer dot; the
 * block scales of weights and activations are applied in float per group,
 * as the CPU's block dot products do. The W partial sums meet in shared
 * memory in a fixed order; the epilogue adds the bias and stores or adds
 * (residual) the result.
 *
 * One kernel serves generation (n = 1: 7 of the 8 token columns idle, the
 * tensor cores have room) and batches (n up to 32 per block, more blocks
 * beyond); its memory traffic is the weights once per 32 tokens.
 *
 * Float weights (F32, F16, BF16) use mmf: a warp per row, 8 tokens per
 * pass, activations in float (rounded to f16 for F16 weights, as the CPU
 * path encodes them).
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_int.h"

/* ---- repack: GGUF blocks -> tile layouts (see cuda_int.h) ---- */

DEV uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
DEV uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* one thread per (row, 32-group) */
static __global__ void repack_q4_0(const uint8_t *raw, size_t rb, int n_rows, int nkg, int row0, int KS,
                                   uint32_t *q, uint16_t *s) {
    long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long)n_rows * nkg) return;
    int r = (int)(idx / nkg), kg = (int)(idx % nkg);
    const uint8_t *b = raw + (size_t)r * rb + (size_t)kg * 18;
    int R = row0 + r, tile = R >> 4, g = R & 7, hi = (R >> 3) & 1, ks = kg >> 1, kk = kg & 1;
    size_t base = ((size_t)tile * KS + ks) * 32 + (size_t)g * 4;
    for (int t = 0; t < 4; t++) q[(base + t) * 4 + kk * 2 + hi] = rd32(b + 2 + 4 * t);
    s[(((size_t)tile * KS + ks) * 8 + g) * 4 + kk * 2 + hi] = rd16(b);
}

static __global__ void repack_q8_0(const uint8_t *raw, size_t rb, int n_rows, int nkg, int row0, int KS,
                                   uint32_t *q, uint16_t *s) {
    long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long)n_rows * nkg) return;
    int r = (int)(idx / nkg), kg = (int)(idx % nkg);
    const uint8_t *b = raw + (size_t)r * rb + (size_t)kg * 34;
    int R = row0 + r, tile = R >> 4, g = R & 7, hi = (R >> 3) & 1, ks = kg >> 1, kk = kg & 1;
    for (int w = 0; w < 8; w++) {
        size_t lane = (size_t)g * 4 + (w & 3);
        q[((((size_t)tile * KS + ks) * 2 + kk) * 32 + lane) * 4 + hi + 2 * (w >> 2)] = rd32(b + 2 + 4 * w);
    }
    s[(((size_t)tile * KS + ks) * 8 + g) * 4 + kk * 2 + hi] = rd16(b);
}

/* one thread per (row, super-block) */
static __global__ void repack_q4_k(const uint8_t *raw, size_t rb, int n_rows, int nsb, int row0, int KS,
                                   uint32_t *q, uint32_t *hdr) {
    long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long)n_rows * nsb) return;
    int r = (int)(idx / nsb), sb = (int)(idx % nsb);
    const uint8_t *b = raw + (size_t)r * rb + (size_t)sb * 144;
    int R = row0 + r, tile = R >> 4, g = R & 7, hi = (R >> 3) & 1, rr = R & 15;
    for (int i = 0; i < 4; i++) hdr[(((size_t)tile * (KS / 4) + sb) * 16 + rr) * 4 + i] = rd32(b + 4 * i);
    for (int c = 0; c < 4; c++) {
        size_t ks = (size_t)sb * 4 + c;
        for (int t = 0; t < 4; t++) {
            size_t o = (((size_t)tile * KS + ks) * 32 + (size_t)g * 4 + t) * 4;
            q[o + hi] = rd32(b + 16 + 4 * (8 * c + t));
            q[o + 2 + hi] = rd32(b + 16 + 4 * (8 * c + 4 + t));
        }
    }
}

/* one thread per (row, super-block); rows g and g+8 share the high-bit
 * words, hence atomicOr into the zeroed buffer */
static __global__ void repack_q6_k(const uint8_t *raw, size_t rb, int n_rows, int nsb, int row0, int KS,
                                   uint32_t *q, int8_t *sc, uint16_t *dd) {
    long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long)n_rows * nsb) return;
    int r = (int)(idx / nsb), sb = (int)(idx % nsb);
    const uint8_t *b = raw + (size_t)r * rb + (size_t)sb * 210;
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    int R = row0 + r, tile = R >> 4, g = R & 7, hi = (R >> 3) & 1, rr = R & 15;
    uint8_t v[256];
    for (int e = 0; e < 256; e++) {
        int h = e >> 7, l = e & 127, quarter = l >> 5, l32 = l & 31;
        int lo = quarter & 1 ? ql[64 * h + 32 + l32] : ql[64 * h + l32];
        lo = quarter & 2 ? lo >> 4 : lo & 15;
        int hb = (qh[32 * h + l32] >> (2 * quarter)) & 3;
        v[e] = (uint8_t)(lo | hb << 4);
    }
    for (int ksl = 0; ksl < 2; ksl++) {
        size_t ks = (size_t)sb * 2 + ksl;
        for (int j = 0; j < 4; j++)
            for (int t = 0; t < 4; t++) {
                uint32_t lo = 0, hb = 0;
                for (int i = 0; i < 4; i++) {
                    int e0 = 128 * ksl + 32 * j + 4 * t + i;
                    lo |= (uint32_t)((v[e0] & 15) | (v[e0 + 16] & 15) << 4) << (8 * i);
                    hb |= (uint32_t)(((v[e0] >> 4) & 3) | ((v[e0 + 16] >> 4) & 3) << 2) << (8 * i + 4 * hi);
                }
                size_t lane = (size_t)g * 4 + t;
                int wlo = 2 * j + hi, wh = 8 + j;
                q[((((size_t)tile * KS + ks) * 3 + wlo / 4) * 32 + lane) * 4 + wlo % 4] = lo;
                atomicOr(&q[((((size_t)tile * KS + ks) * 3 + wh / 4) * 32 + lane) * 4 + wh % 4], hb);
            }
        for (int i = 0; i < 8; i++) sc[(((size_t)tile * KS + ks) * 16 + rr) * 8 + i] = scales[8 * ksl + i];
    }
    dd[(((size_t)tile * (KS / 2) + sb) * 8 + g) * 2 + hi] = rd16(b + 208);
}

cudaError_t cu_repack(const dmat *m, const void *raw, size_t row_bytes, int n_rows, int row0, cudaStream_t st) {
    const uint8_t *r = (const uint8_t *)raw;
    int threads = 256;
    long n;
    switch (m->fmt) {
    case FMT_Q4_0:
        n = (long)n_rows * (m->cols / 32);
        repack_q4_0<<<(unsigned)((n + threads - 1) / threads), threads, 0, st>>>(
            r, row_bytes, n_rows, m->cols / 32, row0, m->ks, (uint32_t *)m->q, (uint16_t *)m->s);
        break;
    case FMT_Q8_0:
        n = (long)n_rows * (m->cols / 32);
        repack_q8_0<<<(unsigned)((n + threads - 1) / threads), threads, 0, st>>>(
            r, row_bytes, n_rows, m->cols / 32, row0, m->ks, (uint32_t *)m->q, (uint16_t *)m->s);
        break;
    case FMT_Q4_K:
        n = (long)n_rows * (m->cols / 256);
        repack_q4_k<<<(unsigned)((n + threads - 1) / threads), threads, 0, st>>>(
            r, row_bytes, n_rows, m->cols / 256, row0, m->ks, (uint32_t *)m->q, (uint32_t *)m->s);
        break;
    case FMT_Q6_K: {
        n = (long)n_rows * (m->cols / 256);
        /* scales then d, both in m->s */
        size_t tiles = (size_t)m->rows_pad / 16;
        int8_t *sc = (int8_t *)m->s;
        uint16_t *dd = (uint16_t *)(sc + tiles * m->ks * 16 * 8);
        repack_q6_k<<<(unsigned)((n + threads - 1) / threads), threads, 0, st>>>(
            r, row_bytes, n_rows, m->cols / 256, row0, m->ks, (uint32_t *)m->q, sc, dd);
        break;
    }
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

/* ---- mma wrappers ---- */

/* ---- mmq: quantized weights x int8 activations ---- */

typedef struct mmq_args {
    const uint4 *wq;  /* tile layout */
    const void *ws;   /* scales / headers */
    int ks;           /* k-steps */
    int rows;
    size_t tiles;     /* rows_pad / 16 */
    /* encoded activations */
    const uint8_t *aq; /* (tok_pad, kmax) int8 */
    int a_row;         /* bytes per token (kmax) */
    const float2 *ds;  /* (group, tok_pad) {d, sum} */
    int tok_pad;
    int n;
    float *y;
    int ldy;
    const float *bias;
    int add;
} mmq_args;

template <int FMT> struct fmt_c;
template <> struct fmt_c<FMT_Q4_0> { static constexpr int UN = 1, KG = 2; };
template <> struct fmt_c<FMT_Q8_0> { static constexpr int UN = 2, KG = 2; };
template <> struct fmt_c<FMT_Q4_K> { static constexpr int UN = 1, KG = 2; };
template <> struct fmt_c<FMT_Q6_K> { static constexpr int UN = 3, KG = 4; };

/* ---- weight loads ----
 * A lane loads exactly the bytes it multiplies (its 16-byte fragments and
 * the scales of its two rows) straight into registers, U k-steps at a time
 * and double-buffered: while one group of U k-steps is multiplied the next
 * is in flight. The first group is requested before the PDL wait. */

/* weights are read once per step: keep them out of L1 */
DEV uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}


/* what a lane holds of one k-step of one tile */
template <int FMT, int MT> struct wstep {
    uint4 w[MT][fmt_c<FMT>::UN];
    uint4 sa[MT], sb[MT];
};

template <int FMT, int MT>
DEV void load_step(wstep<FMT, MT> &b, const mmq_args &a, int tile0, int ks, int lane) {
    constexpr int UN = fmt_c<FMT>::UN;
    const int g = lane >> 2;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        size_t tile = (size_t)tile0 + mt;
#pragma unroll
        for (int u = 0; u < UN; u++) b.w[mt][u] = ld_stream(a.wq + ((tile * a.ks + ks) * UN + u) * 32 + lane);
        if (FMT == FMT_Q4_0 || FMT == FMT_Q8_0) {
            uint2 v = ((const uint2 *)a.ws)[(tile * a.ks + ks) * 8 + g];
            b.sa[mt] = make_uint4(v.x, v.y, 0, 0);
        } else if (FMT == FMT_Q4_K) {
            const uint4 *h = (const uint4 *)a.ws + (tile * (a.ks / 4) + ks / 4) * 16;
            b.sa[mt] = h[g];
            b.sb[mt] = h[g + 8];
        } else {
            const uint2 *sc = (const uint2 *)a.ws + (tile * a.ks + ks) * 16;
            uint2 s0 = sc[g], s1 = sc[g + 8];
            b.sa[mt] = make_uint4(s0.x, s0.y, s1.x, s1.y);
            const uint32_t *dd = (const uint32_t *)((const uint2 *)a.ws + a.tiles * (size_t)a.ks * 16);
            b.sb[mt] = make_uint4(dd[(tile * (a.ks / 2) + ks / 2) * 8 + g], 0, 0, 0);
        }
    }
}

/* Where a warp finds its activations: encoded rows in global memory (the
 * batched path) or the rows the kernel encoded into shared memory. */
typedef struct act_view {
    const uint8_t *q;  /* token 0, k-step ks_base */
    size_t tok_stride; /* bytes between tokens */
    size_t ks_stride;  /* bytes between k-steps */
    const float2 *ds;  /* group 0 (of k-step ks_base), token 0 */
    size_t kg_stride;  /* float2 between groups */
    int ntok;          /* tokens with data (others read as zero) */
    int ks_base;
    int ds_last;       /* last token slot of ds that may be read (even) */
} act_view;

template <int FMT, int MT, int NT>
DEV void compute_step(const wstep<FMT, MT> &b, const act_view &v, int ks, int lane, float (&acc)[MT][NT][4]) {
    constexpr int KG = fmt_c<FMT>::KG;
    const int g = lane >> 2, t = lane & 3, ksl = ks - v.ks_base;
    uint4 bq[NT][KG / 2];
    float4 dsv[NT][KG];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        int tok = nt * 8 + g, dt = nt * 8 + 2 * t < v.ds_last ? nt * 8 + 2 * t : v.ds_last;
#pragma unroll
        for (int u = 0; u < KG / 2; u++)
            bq[nt][u] = tok < v.ntok
                            ? *(const uint4 *)(v.q + (size_t)tok * v.tok_stride + (size_t)ksl * v.ks_stride + u * 64 + t * 16)
                            : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int j = 0; j < KG; j++) dsv[nt][j] = *(const float4 *)(v.ds + ((size_t)ksl * KG + j) * v.kg_stride + dt);
    }
    const uint32_t M4 = 0x0F0F0F0Fu;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        if (FMT == FMT_Q4_0 || FMT == FMT_Q8_0) {
            float dw[2][2] = {{h2f(b.sa[mt].x), h2f(b.sa[mt].x >> 16)}, {h2f(b.sa[mt].y), h2f(b.sa[mt].y >> 16)}};
#pragma unroll
            for (int j = 0; j < 2; j++) {
                uint32_t a0, a1, a2, a3;
                if (FMT == FMT_Q4_0) {
                    uint32_t x = j ? b.w[mt][0].z : b.w[mt][0].x, y = j ? b.w[mt][0].w : b.w[mt][0].y;
                    a0 = x & M4, a1 = y & M4, a2 = (x >> 4) & M4, a3 = (y >> 4) & M4;
                } else {
                    const uint4 &w = b.w[mt][j];
                    a0 = w.x, a1 = w.y, a2 = w.z, a3 = w.w;
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    int c[4];
                    uint32_t b0 = j ? bq[nt][0].z : bq[nt][0].x, b1 = j ? bq[nt][0].w : bq[nt][0].y;
                    float4 ds = dsv[nt][j];
                    if (FMT == FMT_Q4_0) {
                        mma_u8s8_k32(c, a0, a1, a2, a3, b0, b1);
                        int s0 = __float_as_int(ds.y), s1 = __float_as_int(ds.w);
                        acc[mt][nt][0] += (float)(c[0] - 8 * s0) * (dw[j][0] * ds.x);
                        acc[mt][nt][1] += (float)(c[1] - 8 * s1) * (dw[j][0] * ds.z);
                        acc[mt][nt][2] += (float)(c[2] - 8 * s0) * (dw[j][1] * ds.x);
                        acc[mt][nt][3] += (float)(c[3] - 8 * s1) * (dw[j][1] * ds.z);
                    } else {
                        mma_s8s8_k32(c, a0, a1, a2, a3, b0, b1);
                        acc[mt][nt][0] += (float)c[0] * (dw[j][0] * ds.x);
                        acc[mt][nt][1] += (float)c[1] * (dw[j][0] * ds.z);
                        acc[mt][nt][2] += (float)c[2] * (dw[j][1] * ds.x);
                        acc[mt][nt][3] += (float)c[3] * (dw[j][1] * ds.z);
                    }
                }
            }
        } else if (FMT == FMT_Q4_K) {
            float d0 = h2f(b.sa[mt].x), m0 = h2f(b.sa[mt].x >> 16);
            float d1 = h2f(b.sb[mt].x), m1 = h2f(b.sb[mt].x >> 16);
#pragma unroll
            for (int j = 0; j < 2; j++) {
                int sub = (ks & 3) * 2 + j, sc0, mn0, sc1, mn1;
                k4_scale_min(b.sa[mt], sub, &sc0, &mn0);
                k4_scale_min(b.sb[mt], sub, &sc1, &mn1);
                float dsc0 = d0 * (float)sc0, dm0 = m0 * (float)mn0, dsc1 = d1 * (float)sc1, dm1 = m1 * (float)mn1;
                const uint4 &w = b.w[mt][0];
                int sh = 4 * j;
                uint32_t a0 = (w.x >> sh) & M4, a1 = (w.y >> sh) & M4, a2 = (w.z >> sh) & M4, a3 = (w.w >> sh) & M4;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    int c[4];
                    uint32_t b0 = j ? bq[nt][0].z : bq[nt][0].x, b1 = j ? bq[nt][0].w : bq[nt][0].y;
                    mma_u8s8_k32(c, a0, a1, a2, a3, b0, b1);
                    float4 ds = dsv[nt][j];
                    float sx = ds.x * (float)__float_as_int(ds.y), sz = ds.z * (float)__float_as_int(ds.w);
                    acc[mt][nt][0] = k4_col(acc[mt][nt][0], c[0], ds.x, dsc0, dm0, sx);
                    acc[mt][nt][1] = k4_col(acc[mt][nt][1], c[1], ds.z, dsc0, dm0, sz);
                    acc[mt][nt][2] = k4_col(acc[mt][nt][2], c[2], ds.x, dsc1, dm1, sx);
                    acc[mt][nt][3] = k4_col(acc[mt][nt][3], c[3], ds.z, dsc1, dm1, sz);
                }
            }
        } else { /* Q6_K */
            uint32_t dpair = b.sb[mt].x;
            float d0 = h2f(dpair), d1 = h2f(dpair >> 16);
            const uint32_t *wv = (const uint32_t *)&b.w[mt][0];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                uint32_t lg = wv[2 * j], l8 = wv[2 * j + 1], h = wv[8 + j];
                uint32_t r0 = s6((lg & M4) | ((h << 4) & 0x30303030u));
                uint32_t r2 = s6(((lg >> 4) & M4) | ((h << 2) & 0x30303030u));
                uint32_t r1 = s6((l8 & M4) | (h & 0x30303030u));
                uint32_t r3 = s6(((l8 >> 4) & M4) | ((h >> 2) & 0x30303030u));
                uint32_t sg = j < 2 ? b.sa[mt].x : b.sa[mt].y, s8 = j < 2 ? b.sa[mt].z : b.sa[mt].w;
                int sh = 16 * (j & 1);
                int sa0 = (int)(int8_t)(sg >> sh), sb0 = (int)(int8_t)(sg >> (sh + 8));
                int sa1 = (int)(int8_t)(s8 >> sh), sb1 = (int)(int8_t)(s8 >> (sh + 8));
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    int c1[4], c2[4];
                    const uint4 &bv = bq[nt][j >> 1];
                    uint32_t b0 = (j & 1) ? bv.z : bv.x, b1 = (j & 1) ? bv.w : bv.y;
                    mma_s8s8_k16(c1, r0, r1, b0);
                    mma_s8s8_k16(c2, r2, r3, b1);
                    float4 ds = dsv[nt][j];
                    acc[mt][nt][0] = k6_col(acc[mt][nt][0], c1[0] * sa0 + c2[0] * sb0, d0, ds.x);
                    acc[mt][nt][1] = k6_col(acc[mt][nt][1], c1[1] * sa0 + c2[1] * sb0, d0, ds.z);
                    acc[mt][nt][2] = k6_col(acc[mt][nt][2], c1[2] * sa1 + c2[2] * sb1, d1, ds.x);
                    acc[mt][nt][3] = k6_col(acc[mt][nt][3], c1[3] * sa1 + c2[3] * sb1, d1, ds.z);
                }
            }
        }
    }
}


/* k-steps are split between warps in units of `gran`: a 256-block for the
 * K-quants, so that a warp can encode Q8_K blocks itself. The split is the
 * same with and without that encoding: a token's sums run in the same
 * order whatever its batch. */
template <int FMT> DEV int ks_gran(void) { return FMT == FMT_Q4_K ? 4 : FMT == FMT_Q6_K ? 2 : 1; }

/* Persistent blocks: block b takes tile groups b, b + gridDim.x, ... (MT
 * tiles each), stages the activations once, and requests the first k-steps
 * of its next tile group before the epilogue of the current one. */
template <int FMT, int MT, int NT, bool STAGED, int U>
static __global__ void __launch_bounds__(256) mmq_kernel(const mmq_args a) {
    constexpr int KST = FMT == FMT_Q6_K ? 128 : 64, KG = fmt_c<FMT>::KG, NO = MT * NT * 4;
    extern __shared__ __align__(16) uint8_t smem[];
    const int lane = threadIdx.x, w = threadIdx.y, W = blockDim.y, tid = w * 32 + lane;
    const int ngroups = (int)(a.tiles / MT), tok0 = blockIdx.y * 8 * NT;
    const int gran = ks_gran<FMT>(), units = a.ks / gran;
    const int k0 = (int)((long)units * w / W) * gran, k1 = (int)((long)units * (w + 1) / W) * gran;
    float *red = (float *)smem; /* (W, NO, 32) partial sums, then the staged activations */
    const size_t red_bytes = W > 1 ? (size_t)W * NO * 32 * sizeof(float) : 0;

    /* weights do not depend on the previous kernel: request them first */
    wstep<FMT, MT> A[U], B[U];
    int grp = blockIdx.x;
#pragma unroll
    for (int u = 0; u < U; u++)
        if (grp < ngroups && k0 + u < k1) load_step<FMT, MT>(A[u], a, grp * MT, k0 + u, lane);
    pdl_trigger();
    pdl_wait();

    act_view v;
    if (STAGED) {
        /* up to 8 tokens: their encoded rows and scales into shared memory
         * with one coalesced copy, so the k loop never waits on L2 */
        const int ntok = a.n - tok0 < 8 ? a.n - tok0 : 8, slots = ntok < 2 ? 2 : (ntok + 1) & ~1;
        const size_t kb = (size_t)a.ks * KST, nkg = (size_t)a.ks * KG;
        uint8_t *qs = smem + red_bytes;
        float2 *dss = (float2 *)(qs + (size_t)ntok * kb);
        const int nth = W * 32;
        for (size_t x = tid; x < (size_t)ntok * (kb / 16); x += nth) {
            size_t j = x / (kb / 16), o = x % (kb / 16);
            cp16(qs + j * kb + o * 16, a.aq + (size_t)(tok0 + j) * a.a_row + o * 16);
        }
        for (size_t x = tid; x < nkg * slots; x += nth) {
            size_t g2 = x / slots, j = x % slots;
            if ((int)j < ntok) cp8(dss + x, a.ds + g2 * a.tok_pad + tok0 + j);
            else dss[x] = make_float2(0.0f, 0.0f);
        }
        cp_commit();
        cp_wait_all();
        __syncthreads();
        v = {qs, kb, (size_t)KST, dss, (size_t)slots, ntok, 0, slots - 2};
    } else {
        v = {a.aq + (size_t)tok0 * a.a_row, (size_t)a.a_row, (size_t)KST, a.ds + tok0, (size_t)a.tok_pad,
             a.n - tok0, 0, 8 * NT - 2};
    }

    for (; grp < ngroups; grp += gridDim.x) {
        const int tile0 = grp * MT;
        float acc[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) acc[mt][nt][r] = 0.0f;
        for (int kc = k0; kc < k1; kc += 2 * U) {
#pragma unroll
            for (int u = 0; u < U; u++)
                if (kc + U + u < k1) load_step<FMT, MT>(B[u], a, tile0, kc + U + u, lane);
#pragma unroll
            for (int u = 0; u < U; u++)
                if (kc + u < k1) compute_step<FMT, MT, NT>(A[u], v, kc + u, lane, acc);
            if (kc + U >= k1) break;
#pragma unroll
            for (int u = 0; u < U; u++)
                if (kc + 2 * U + u < k1) load_step<FMT, MT>(A[u], a, tile0, kc + 2 * U + u, lane);
#pragma unroll
            for (int u = 0; u < U; u++)
                if (kc + U + u < k1) compute_step<FMT, MT, NT>(B[u], v, kc + U + u, lane, acc);
        }
        /* the next group's first k-steps fly during the epilogue */
        const int next = grp + gridDim.x;
#pragma unroll
        for (int u = 0; u < U; u++)
            if (next < ngroups && k0 + u < k1) load_step<FMT, MT>(A[u], a, next * MT, k0 + u, lane);

        if (W > 1) {
            __syncthreads(); /* the previous epilogue is done reading red */
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int r = 0; r < 4; r++)
                        red[((w * NO) + (mt * NT + nt) * 4 + r) * 32 + lane] = acc[mt][nt][r];
            __syncthreads();
        }
        for (int o = w * 32 + lane; o < NO * 32; o += W * 32) {
            int l = o & 31, r = (o >> 5) & 3, nt = (o >> 7) % NT, mt = (o >> 7) / NT;
            float val = 0.0f;
            if (W > 1) {
                for (int ww = 0; ww < W; ww++) val += red[ww * NO * 32 + o];
            } else {
                /* W == 1: this thread owns exactly its own fragment values */
#pragma unroll
                for (int m2 = 0; m2 < MT; m2++)
#pragma unroll
                    for (int n2 = 0; n2 < NT; n2++)
#pragma unroll
                        for (int r2 = 0; r2 < 4; r2++)
                            if (m2 == mt && n2 == nt && r2 == r) val = acc[m2][n2][r2];
            }
            int row = (tile0 + mt) * 16 + (l >> 2) + ((r >> 1) << 3);
            int tok = tok0 + nt * 8 + (l & 3) * 2 + (r & 1);
            if (row < a.rows && tok < a.n) {
                if (a.bias) val += a.bias[row];
                float *yp = a.y + (size_t)tok * a.ldy + row;
                *yp = a.add ? *yp + val : val;
            }
        }
    }
}

/* ---- mmf: float weights ---- */

typedef struct mmf_args {
    const uint8_t *w;
    size_t row_bytes;
    int rows, cols;
    const float *x;
    int ldx;
    int n;
    float *y;
    int ldy;
    const float *bias;
    int add;
} mmf_args;

template <int FMT> DEV void load4(const uint8_t *row, int c, float *w) {
    if (FMT == FMT_F32) {
        float4 v = *(const float4 *)(row + (size_t)c * 4);
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    } else {
        uint2 v = *(const uint2 *)(row + (size_t)c * 2);
        if (FMT == FMT_F16) {
            w[0] = h2f(v.x), w[1] = h2f(v.x >> 16), w[2] = h2f(v.y), w[3] = h2f(v.y >> 16);
        } else {
            w[0] = __uint_as_float(v.x << 16), w[1] = __uint_as_float(v.x & 0xffff0000u);
            w[2] = __uint_as_float(v.y << 16), w[3] = __uint_as_float(v.y & 0xffff0000u);
        }
    }
}

template <int FMT> static __global__ void __launch_bounds__(256) mmf_kernel(const mmf_args a) {
    pdl_trigger();
    pdl_wait();
    const int lane = threadIdx.x, row = blockIdx.x * blockDim.y + threadIdx.y, tok0 = blockIdx.y * 8;
    if (row >= a.rows) return;
    const uint8_t *wr = a.w + (size_t)row * a.row_bytes;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int c = lane * 4; c < a.cols; c += 128) {
        float w[4];
        load4<FMT>(wr, c, w);
#pragma unroll
        for (int tt = 0; tt < 8; tt++) {
            if (tok0 + tt >= a.n) break;
            float4 x = *(const float4 *)(a.x + (size_t)(tok0 + tt) * a.ldx + c);
            if (FMT == FMT_F16) {
                /* the CPU path multiplies F16 weights with activations encoded in f16 */
                x.x = __half2float(__float2half_rn(x.x)), x.y = __half2float(__float2half_rn(x.y));
                x.z = __half2float(__float2half_rn(x.z)), x.w = __half2float(__float2half_rn(x.w));
            }
            acc[tt] += w[0] * x.x + w[1] * x.y + w[2] * x.z + w[3] * x.w;
        }
    }
#pragma unroll
    for (int tt = 0; tt < 8; tt++) acc[tt] = warp_sum(acc[tt]);
    if (lane < 8 && tok0 + lane < a.n) {
        float v = 0.0f;
#pragma unroll
        for (int tt = 0; tt < 8; tt++)
            if (tt == lane) v = acc[tt];
        if (a.bias) v += a.bias[row];
        float *yp = a.y + (size_t)(tok0 + lane) * a.ldy + row;
        *yp = a.add ? *yp + v : v;
    }
}

/* ---- dispatch ---- */

static int env_int(const char *name, int def) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : def;
}

template <int FMT, int MT, int NT, bool STAGED> static size_t mmq_smem(int W, int ks, int ntok) {
    size_t need = W > 1 ? (size_t)W * MT * NT * 4 * 32 * sizeof(float) : 0;
    if (STAGED) {
        int kst = FMT == FMT_Q6_K ? 128 : 64, slots = ntok < 2 ? 2 : (ntok + 1) & ~1;
        need += (size_t)ntok * ks * kst + (size_t)ks * (kst / 32) * slots * sizeof(float2);
    }
    return need;
}

int cu_mm_unstaged = 0;

/* the device's opt-in shared memory per block (cu_mm_init) */
static int g_smem_max = 96 * 1024;

static int g_n_sm = 132;

/* As many blocks as fit on the device at once (persistent), at most one
 * per tile group. */
template <int FMT, int MT, int NT, bool STAGED, int U>
static cudaError_t run_mmq(const mmq_args &a, int rows_pad, int W, int pdl, cudaStream_t st) {
    size_t smem = mmq_smem<FMT, MT, NT, STAGED>(W, a.ks, a.n);
    if (smem > (size_t)g_smem_max) return cudaErrorInvalidConfiguration;
    int groups = rows_pad / (16 * MT);
    /* occupancy of this instance for the last (W, smem) asked */
    static int c_w = -1, c_per_sm = 1;
    static size_t c_smem;
    if (c_w != W || c_smem != smem) {
        int per_sm = 0;
        cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mmq_kernel<FMT, MT, NT, STAGED, U>,
                                                                      W * 32, smem);
        if (e != cudaSuccess) return e;
        c_w = W, c_smem = smem, c_per_sm = per_sm;
    }
    int per_sm = c_per_sm;
    long nb = (long)(per_sm > 0 ? per_sm : 1) * g_n_sm;
    static int persist = -2;
    if (persist == -2) persist = env_int("QF_CUDA_PERSIST", 1);
    if (!persist || nb > groups) nb = groups;
    dim3 grid((unsigned)nb, (unsigned)((a.n + 8 * NT - 1) / (8 * NT)));
    return launch_k(mmq_kernel<FMT, MT, NT, STAGED, U>, grid, dim3(32, (unsigned)W), smem, st, pdl, a);
}

template <int FMT, int MT, int NT, bool STAGED, int U> static cudaError_t allow_smem(void) {
    return cudaFuncSetAttribute(mmq_kernel<FMT, MT, NT, STAGED, U>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                g_smem_max);
}

/* k-steps per register buffer; batch 1 wants more bytes in flight */
template <int FMT> struct unroll_c {
    static constexpr int U1 = FMT == FMT_Q6_K ? 2 : FMT == FMT_Q8_0 ? 2 : 4; /* up to 8 tokens */
    static constexpr int U1B = 2 * U1;                                      /* QF_CUDA_UNROLL=2 */
    static constexpr int UN = FMT == FMT_Q6_K ? 1 : 2;                      /* more tokens */
};

template <int FMT> static cudaError_t allow_fmt(void) {
    cudaError_t e = allow_smem<FMT, 1, 1, true, unroll_c<FMT>::U1>();
    if (e == cudaSuccess) e = allow_smem<FMT, 1, 1, true, unroll_c<FMT>::U1B>();
    if (e == cudaSuccess) e = allow_smem<FMT, 1, 1, false, unroll_c<FMT>::U1>();
    if (e == cudaSuccess) e = allow_smem<FMT, 1, 2, false, unroll_c<FMT>::UN>();
    if (e == cudaSuccess) e = allow_smem<FMT, 2, 4, false, unroll_c<FMT>::UN>();
    return e;
}

cudaError_t cu_mm_init(void) {
    int dev = 0, v = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&g_n_sm, cudaDevAttrMultiProcessorCount, dev);
    if (e != cudaSuccess) return e;
    g_smem_max = v;
    e = allow_fmt<FMT_Q4_0>();
    if (e == cudaSuccess) e = allow_fmt<FMT_Q8_0>();
    if (e == cudaSuccess) e = allow_fmt<FMT_Q4_K>();
    if (e == cudaSuccess) e = allow_fmt<FMT_Q6_K>();
    if (e == cudaSuccess) e = cu_mv_init();
    return e;
}

/* warps split k: at least 4 k-steps each, at most 8 warps (QF_CUDA_WARPS
 * overrides); cu_matvec uses the same split */
int cu_mm_warps(int ks) {
    static int w_env = -2;
    if (w_env == -2) w_env = env_int("QF_CUDA_WARPS", 0);
    int W = w_env > 0 ? w_env : ks / 4;
    return W > 8 ? 8 : W < 1 ? 1 : W;
}

template <int FMT>
static cudaError_t run_fmt(const mmq_args &a, int rows_pad, int pdl, cudaStream_t st) {
    int nt = a.n <= 8 ? 1 : a.n <= 16 ? 2 : 4;
    int W = cu_mm_warps(a.ks);
    static int staged_env = -2, unroll_env;
    if (staged_env == -2) staged_env = env_int("QF_CUDA_STAGED", 1), unroll_env = env_int("QF_CUDA_UNROLL", 1);
    if (nt == 1 && staged_env && !cu_mm_unstaged && mmq_smem<FMT, 1, 1, true>(W, a.ks, a.n) <= (size_t)g_smem_max) {
        if (unroll_env == 2) return run_mmq<FMT, 1, 1, true, unroll_c<FMT>::U1B>(a, rows_pad, W, pdl, st);
        return run_mmq<FMT, 1, 1, true, unroll_c<FMT>::U1>(a, rows_pad, W, pdl, st);
    }
    if (nt == 1) return run_mmq<FMT, 1, 1, false, unroll_c<FMT>::U1>(a, rows_pad, W, pdl, st);
    if (nt == 2) return run_mmq<FMT, 1, 2, false, unroll_c<FMT>::UN>(a, rows_pad, W, pdl, st);
    return run_mmq<FMT, 2, 4, false, unroll_c<FMT>::UN>(a, rows_pad, W, pdl, st);
}

cudaError_t cu_matmul(const dmat *w, const act_bufs *ab, int n, float *y, int ldy, int add, int pdl,
                      cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    if (!fmt_is_quant(w->fmt)) {
        mmf_args a = {(const uint8_t *)w->q, w->row_bytes, w->rows, w->cols, ab->f, ab->kmax, n, y, ldy, w->bias, add};
        dim3 grid((unsigned)((w->rows + 7) / 8), (unsigned)((n + 7) / 8));
        switch (w->fmt) {
        case FMT_F32: return launch_k(mmf_kernel<FMT_F32>, grid, dim3(32, 8), 0, st, pdl, a);
        case FMT_F16: return launch_k(mmf_kernel<FMT_F16>, grid, dim3(32, 8), 0, st, pdl, a);
        default: return launch_k(mmf_kernel<FMT_BF16>, grid, dim3(32, 8), 0, st, pdl, a);
        }
    }
    const act_set *as = fmt_act(w->fmt) == ACT_Q8_0 ? &ab->a8_0 : &ab->a8_k;
    /* one token: the matrix-vector kernel (same bits; cu_mm_unstaged, set
     * by tests, forces mmq to compare the two) */
    if (n == 1 && !cu_mm_unstaged && cu_mv_ok(w)) {
        mv_in in = {};
        in.src = as;
        in.src_tok_pad = ab->tok_pad;
        return cu_matvec(w, &in, y, add, pdl, st);
    }
    mmq_args a;
    memset(&a, 0, sizeof a);
    a.wq = (const uint4 *)w->q;
    a.ws = w->s;
    a.ks = w->ks;
    a.rows = w->rows;
    a.tiles = (size_t)w->rows_pad / 16;
    a.aq = as->q;
    a.a_row = ab->kmax;
    a.ds = as->ds;
    a.tok_pad = ab->tok_pad;
    a.n = n;
    a.y = y;
    a.ldy = ldy;
    a.bias = w->bias;
    a.add = add;
    switch (w->fmt) {
    case FMT_Q4_0: return run_fmt<FMT_Q4_0>(a, w->rows_pad, pdl, st);
    case FMT_Q8_0: return run_fmt<FMT_Q8_0>(a, w->rows_pad, pdl, st);
    case FMT_Q4_K: return run_fmt<FMT_Q4_K>(a, w->rows_pad, pdl, st);
    default: return run_fmt<FMT_Q6_K>(a, w->rows_pad, pdl, st);
    }
}
