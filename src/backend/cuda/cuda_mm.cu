/* cuda_mm.cu - weight repacking and the matrix multiplications.
 *
 * Quantized weights (Q4_0, Q8_0, Q4_K, Q6_K) go through one kernel family,
 * mmq: a block owns MT tiles of 16 rows and NT groups of 8 tokens; its W
 * warps split the k range (the same split whatever the number of tokens,
 * so a token's result does not depend on its batch), each warp walks its
 * k-steps with a double-buffered register prefetch of the weight tiles
 * (issued before the PDL wait: weights do not depend on the previous
 * kernel), unpacks them into int8 mma fragments and multiplies them with the
 * int8 activations on the tensor cores (mma.sync m16n8k32 / m16n8k16).
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

DEV void mma_s8s8_k16(int c[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(0));
}

/* weights are read once per step: keep them out of L1 */
DEV uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* 6-bit values (bytes 0..63) minus 32, as signed bytes */
DEV uint32_t s6(uint32_t x) {
    uint32_t y = x ^ 0x20202020u, t = y & 0x20202020u;
    return y | (t << 1) | (t << 2);
}

DEV float h2f(uint32_t bits16) { return __half2float(__ushort_as_half((unsigned short)(bits16 & 0xffff))); }

/* 6-bit scale and min of sub-block j of a Q4_K header (bytes 4..15 of h) */
DEV void k4_scale_min(const uint4 &h, int j, int *sc, int *m) {
    uint32_t w[3] = {h.y, h.z, h.w};
#define SB(i) ((int)((w[(i) >> 2] >> (8 * ((i) & 3))) & 0xff))
    if (j < 4) {
        *sc = SB(j) & 63;
        *m = SB(j + 4) & 63;
    } else {
        *sc = (SB(j + 4) & 15) | ((SB(j - 4) >> 6) << 4);
        *m = (SB(j + 4) >> 4) | ((SB(j) >> 6) << 4);
    }
#undef SB
}

/* ---- mmq: quantized weights x int8 activations ---- */

typedef struct mmq_args {
    const uint4 *wq;  /* tile layout */
    const void *ws;   /* scales / headers */
    int ks;           /* k-steps */
    int rows;
    const uint4 *aq;  /* activations, a_row uint4 per token */
    int a_row;
    const float2 *ds; /* (group, tok_pad) {d, sum} */
    int tok_pad;
    int n;
    float *y;
    int ldy;
    const float *bias;
    int add;
} mmq_args;

template <int FMT> struct fmt_c;
template <> struct fmt_c<FMT_Q4_0> { enum { UN = 1, KG = 2 }; };
template <> struct fmt_c<FMT_Q8_0> { enum { UN = 2, KG = 2 }; };
template <> struct fmt_c<FMT_Q4_K> { enum { UN = 1, KG = 2 }; };
template <> struct fmt_c<FMT_Q6_K> { enum { UN = 3, KG = 4 }; };

/* what a warp holds of one k-step of one tile */
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
            uint2 s = ((const uint2 *)a.ws)[(tile * a.ks + ks) * 8 + g];
            b.sa[mt] = make_uint4(s.x, s.y, 0, 0);
        } else if (FMT == FMT_Q4_K) {
            const uint4 *h = (const uint4 *)a.ws + (tile * (a.ks / 4) + ks / 4) * 16;
            b.sa[mt] = h[g];
            b.sb[mt] = h[g + 8];
        } else {
            const uint2 *sc = (const uint2 *)a.ws + (tile * a.ks + ks) * 16;
            uint2 s0 = sc[g], s1 = sc[g + 8];
            b.sa[mt] = make_uint4(s0.x, s0.y, s1.x, s1.y);
        }
    }
}

template <int FMT, int MT, int NT>
DEV void compute_step(const wstep<FMT, MT> &b, const mmq_args &a, const uint32_t *dd6, int tile0, int tok0, int ks,
                      int lane, float (&acc)[MT][NT][4]) {
    constexpr int KG = fmt_c<FMT>::KG;
    const int g = lane >> 2, t = lane & 3;
    /* activations of this k-step for NT groups of 8 tokens */
    uint4 bq[NT][KG / 2];
    float4 dsv[NT][KG];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        int tok = tok0 + nt * 8 + g;
#pragma unroll
        for (int v = 0; v < KG / 2; v++)
            bq[nt][v] = tok < a.n ? a.aq[(size_t)tok * a.a_row + ((size_t)ks * (KG / 2) + v) * 4 + t]
                                  : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int j = 0; j < KG; j++)
            dsv[nt][j] = *(const float4 *)(a.ds + ((size_t)ks * KG + j) * a.tok_pad + tok0 + nt * 8 + 2 * t);
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
                    acc[mt][nt][0] += ds.x * ((float)c[0] * dsc0) - dm0 * sx;
                    acc[mt][nt][1] += ds.z * ((float)c[1] * dsc0) - dm0 * sz;
                    acc[mt][nt][2] += ds.x * ((float)c[2] * dsc1) - dm1 * sx;
                    acc[mt][nt][3] += ds.z * ((float)c[3] * dsc1) - dm1 * sz;
                }
            }
        } else { /* Q6_K */
            uint32_t dpair = dd6[((size_t)(tile0 + mt) * (a.ks / 2) + ks / 2) * 8 + g];
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
                    acc[mt][nt][0] += (float)(c1[0] * sa0 + c2[0] * sb0) * (d0 * ds.x);
                    acc[mt][nt][1] += (float)(c1[1] * sa0 + c2[1] * sb0) * (d0 * ds.z);
                    acc[mt][nt][2] += (float)(c1[2] * sa1 + c2[2] * sb1) * (d1 * ds.x);
                    acc[mt][nt][3] += (float)(c1[3] * sa1 + c2[3] * sb1) * (d1 * ds.z);
                }
            }
        }
    }
}

template <int FMT, int NT> struct unroll_c {
    enum { U = FMT == FMT_Q6_K ? (NT == 1 ? 2 : 1) : (NT == 1 ? 4 : 2) };
};

template <int FMT, int MT, int NT>
static __global__ void __launch_bounds__(256) mmq_kernel(const mmq_args a) {
    constexpr int U = unroll_c<FMT, NT>::U;
    extern __shared__ float red[];
    const int lane = threadIdx.x, w = threadIdx.y, W = blockDim.y;
    const int tile0 = blockIdx.x * MT, tok0 = blockIdx.y * 8 * NT;
    const int k0 = (int)((long)a.ks * w / W), k1 = (int)((long)a.ks * (w + 1) / W);
    const uint32_t *dd6 = NULL;
    if (FMT == FMT_Q6_K) dd6 = (const uint32_t *)((const uint2 *)a.ws + (size_t)(gridDim.x * MT) * a.ks * 16);
    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[mt][nt][r] = 0.0f;

    wstep<FMT, MT> A[U], B[U];
#pragma unroll
    for (int u = 0; u < U; u++)
        if (k0 + u < k1) load_step<FMT, MT>(A[u], a, tile0, k0 + u, lane);
    pdl_trigger();
    pdl_wait();
    for (int kc = k0; kc < k1; kc += 2 * U) {
#pragma unroll
        for (int u = 0; u < U; u++)
            if (kc + U + u < k1) load_step<FMT, MT>(B[u], a, tile0, kc + U + u, lane);
#pragma unroll
        for (int u = 0; u < U; u++)
            if (kc + u < k1) compute_step<FMT, MT, NT>(A[u], a, dd6, tile0, tok0, kc + u, lane, acc);
        if (kc + U >= k1) break;
#pragma unroll
        for (int u = 0; u < U; u++)
            if (kc + 2 * U + u < k1) load_step<FMT, MT>(A[u], a, tile0, kc + 2 * U + u, lane);
#pragma unroll
        for (int u = 0; u < U; u++)
            if (kc + U + u < k1) compute_step<FMT, MT, NT>(B[u], a, dd6, tile0, tok0, kc + U + u, lane, acc);
    }

    constexpr int NO = MT * NT * 4;
    if (W > 1) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) red[((w * NO) + (mt * NT + nt) * 4 + r) * 32 + lane] = acc[mt][nt][r];
        __syncthreads();
    }
    for (int o = w * 32 + lane; o < NO * 32; o += W * 32) {
        int l = o & 31, r = (o >> 5) & 3, nt = (o >> 7) % NT, mt = (o >> 7) / NT;
        float v;
        if (W > 1) {
            v = 0.0f;
            for (int ww = 0; ww < W; ww++) v += red[ww * NO * 32 + o];
        } else {
            /* W == 1: this thread owns exactly its own fragment values */
            v = 0.0f;
#pragma unroll
            for (int m2 = 0; m2 < MT; m2++)
#pragma unroll
                for (int n2 = 0; n2 < NT; n2++)
#pragma unroll
                    for (int r2 = 0; r2 < 4; r2++)
                        if (m2 == mt && n2 == nt && r2 == r) v = acc[m2][n2][r2];
        }
        int row = (tile0 + mt) * 16 + (l >> 2) + ((r >> 1) << 3);
        int tok = tok0 + nt * 8 + (l & 3) * 2 + (r & 1);
        if (row < a.rows && tok < a.n) {
            if (a.bias) v += a.bias[row];
            float *yp = a.y + (size_t)tok * a.ldy + row;
            *yp = a.add ? *yp + v : v;
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

template <int FMT, int MT, int NT>
static cudaError_t run_mmq(const mmq_args &a, int rows_pad, int W, int pdl, cudaStream_t st) {
    dim3 grid((unsigned)(rows_pad / (16 * MT)), (unsigned)((a.n + 8 * NT - 1) / (8 * NT)));
    size_t smem = W > 1 ? (size_t)W * MT * NT * 4 * 32 * sizeof(float) : 0;
    return launch_k(mmq_kernel<FMT, MT, NT>, grid, dim3(32, (unsigned)W), smem, st, pdl, a);
}

template <int FMT>
static cudaError_t run_fmt(const mmq_args &a, int rows_pad, int pdl, cudaStream_t st) {
    int nt = a.n <= 8 ? 1 : a.n <= 16 ? 2 : 4;
    int u = nt == 1 ? unroll_c<FMT, 1>::U : unroll_c<FMT, 4>::U;
    int W = a.ks / (2 * u);
    static int w_env = -2;
    if (w_env == -2) w_env = env_int("QF_CUDA_WARPS", 0);
    if (w_env > 0) W = w_env;
    if (W > 8) W = 8;
    if (W < 1) W = 1;
    if (nt == 1) return run_mmq<FMT, 1, 1>(a, rows_pad, W, pdl, st);
    if (nt == 2) return run_mmq<FMT, 1, 2>(a, rows_pad, W, pdl, st);
    return run_mmq<FMT, 2, 4>(a, rows_pad, W, pdl, st);
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
    mmq_args a = {(const uint4 *)w->q, w->s, w->ks, w->rows, (const uint4 *)as->q, ab->kmax / 16, as->ds,
                  ab->tok_pad, n, y, ldy, w->bias, add};
    switch (w->fmt) {
    case FMT_Q4_0: return run_fmt<FMT_Q4_0>(a, w->rows_pad, pdl, st);
    case FMT_Q8_0: return run_fmt<FMT_Q8_0>(a, w->rows_pad, pdl, st);
    case FMT_Q4_K: return run_fmt<FMT_Q4_K>(a, w->rows_pad, pdl, st);
    default: return run_fmt<FMT_Q6_K>(a, w->rows_pad, pdl, st);
    }
}
