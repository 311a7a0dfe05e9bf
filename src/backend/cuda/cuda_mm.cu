/* cuda_mm.cu - weight repacking and the matrix multiplications.
 *
 * Quantized weights (Q4_0, Q8_0, Q4_K, Q6_K) go through one kernel family,
 * mmq: a block owns MT tiles of 16 rows and NT groups of 8 tokens; its W
 * warps split the k range (the same split whatever the number of tokens,
 * so a token's result does not depend on its batch), each warp walks its
 * k-steps with an S-deep asynchronous prefetch of the weight tiles (issued
 * before the PDL wait: weights do not depend on the previous kernel),
 * unpacks them into int8 mma fragments and multiplies them with the
 * int8 activations on the tensor cores (mma.sync m16n8k32 / m16n8k16).
 * Every 32-value group (16 for Q6_K scales) is an exact integer dot; the
 * block scales of weights and activations are applied in float per group,
 * as the CPU's block dot products do. The W partial sums meet in shared
 * memory in a fixed order; the epilogue adds the bias and stores or adds
 * (residual) the result. The weight tiles stream through a per-warp ring of
 * k-steps in shared memory filled by cp.async (see "the k-step pipeline").
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

/* ---- mmq: quantized weights x int8 activations ---- */

typedef struct mmq_args {
    const uint4 *wq;  /* tile layout */
    const void *ws;   /* scales / headers */
    int ks;           /* k-steps */
    int rows;
    size_t tiles;     /* rows_pad / 16 */
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
template <> struct fmt_c<FMT_Q4_0> { static constexpr int UN = 1, KG = 2; };
template <> struct fmt_c<FMT_Q8_0> { static constexpr int UN = 2, KG = 2; };
template <> struct fmt_c<FMT_Q4_K> { static constexpr int UN = 1, KG = 2; };
template <> struct fmt_c<FMT_Q6_K> { static constexpr int UN = 3, KG = 4; };

/* ---- the k-step pipeline ----
 * Each lane streams exactly the bytes it multiplies (its 16-byte fragments
 * and the scales of its two rows) through an S-stage ring in shared memory
 * with cp.async: S k-steps of weights are in flight per warp, without
 * registers to hold them, and the first S are requested before the PDL
 * wait. A lane only ever reads its own slots, so a per-thread
 * cp.async.wait_group is the only synchronization the ring needs. */

DEV void cp16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
}
DEV void cp8(void *dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
}
DEV void cp4(void *dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
}
DEV void cp_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> DEV void cp_wait(void) { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

/* bytes per lane per tile per k-step in the ring, and ring depth */
template <int FMT> struct ring_c;
template <> struct ring_c<FMT_Q4_0> { static constexpr int LB = 32, S = 8; };
template <> struct ring_c<FMT_Q8_0> { static constexpr int LB = 48, S = 6; };
template <> struct ring_c<FMT_Q4_K> { static constexpr int LB = 48, S = 6; };
template <> struct ring_c<FMT_Q6_K> { static constexpr int LB = 80, S = 4; };

/* what a lane holds of one k-step of one tile */
template <int FMT, int MT> struct wstep {
    uint4 w[MT][fmt_c<FMT>::UN];
    uint4 sa[MT], sb[MT];
};

/* request k-step ks of tiles tile0.. into the lane's slot */
template <int FMT, int MT>
DEV void issue_step(uint8_t *slot, const mmq_args &a, int tile0, int ks, int lane) {
    constexpr int UN = fmt_c<FMT>::UN, LB = ring_c<FMT>::LB;
    const int g = lane >> 2;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        uint8_t *d = slot + mt * LB;
        size_t tile = (size_t)tile0 + mt;
#pragma unroll
        for (int u = 0; u < UN; u++) cp16(d + 16 * u, a.wq + ((tile * a.ks + ks) * UN + u) * 32 + lane);
        if (FMT == FMT_Q4_0 || FMT == FMT_Q8_0) {
            cp8(d + 16 * UN, (const uint2 *)a.ws + (tile * a.ks + ks) * 8 + g);
        } else if (FMT == FMT_Q4_K) {
            const uint4 *h = (const uint4 *)a.ws + (tile * (a.ks / 4) + ks / 4) * 16;
            cp16(d + 16, h + g);
            cp16(d + 32, h + g + 8);
        } else {
            const uint2 *sc = (const uint2 *)a.ws + (tile * a.ks + ks) * 16;
            cp8(d + 48, sc + g);
            cp8(d + 56, sc + g + 8);
            const uint32_t *dd = (const uint32_t *)((const uint2 *)a.ws + a.tiles * (size_t)a.ks * 16);
            cp4(d + 64, dd + (tile * (a.ks / 2) + ks / 2) * 8 + g);
        }
    }
}

template <int FMT, int MT> DEV void read_step(wstep<FMT, MT> &b, const uint8_t *slot) {
    constexpr int UN = fmt_c<FMT>::UN, LB = ring_c<FMT>::LB;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const uint8_t *d = slot + mt * LB;
#pragma unroll
        for (int u = 0; u < UN; u++) b.w[mt][u] = *(const uint4 *)(d + 16 * u);
        if (FMT == FMT_Q4_0 || FMT == FMT_Q8_0) {
            uint2 v = *(const uint2 *)(d + 16 * UN);
            b.sa[mt] = make_uint4(v.x, v.y, 0, 0);
        } else if (FMT == FMT_Q4_K) {
            b.sa[mt] = *(const uint4 *)(d + 16);
            b.sb[mt] = *(const uint4 *)(d + 32);
        } else {
            b.sa[mt] = *(const uint4 *)(d + 48);
            b.sb[mt] = make_uint4(*(const uint32_t *)(d + 64), 0, 0, 0);
        }
    }
}

template <int FMT, int MT, int NT>
DEV void compute_step(const wstep<FMT, MT> &b, const mmq_args &a, int tok0, int ks, int lane,
                      float (&acc)[MT][NT][4]) {
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
                    acc[mt][nt][0] += (float)(c1[0] * sa0 + c2[0] * sb0) * (d0 * ds.x);
                    acc[mt][nt][1] += (float)(c1[1] * sa0 + c2[1] * sb0) * (d0 * ds.z);
                    acc[mt][nt][2] += (float)(c1[2] * sa1 + c2[2] * sb1) * (d1 * ds.x);
                    acc[mt][nt][3] += (float)(c1[3] * sa1 + c2[3] * sb1) * (d1 * ds.z);
                }
            }
        }
    }
}

template <int FMT, int MT> constexpr size_t ring_bytes_per_warp(void) {
    return (size_t)ring_c<FMT>::S * 32 * ring_c<FMT>::LB * MT;
}

template <int FMT, int MT, int NT>
static __global__ void __launch_bounds__(256) mmq_kernel(const mmq_args a) {
    constexpr int S = ring_c<FMT>::S;
    constexpr size_t SLOT = (size_t)32 * ring_c<FMT>::LB * MT; /* one stage of one warp */
    extern __shared__ __align__(16) uint8_t smem[];
    const int lane = threadIdx.x, w = threadIdx.y, W = blockDim.y;
    const int tile0 = blockIdx.x * MT, tok0 = blockIdx.y * 8 * NT;
    const int k0 = (int)((long)a.ks * w / W), k1 = (int)((long)a.ks * (w + 1) / W);
    uint8_t *ring = smem + (size_t)w * S * SLOT + (size_t)lane * ring_c<FMT>::LB * MT;
    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[mt][nt][r] = 0.0f;

    /* weights do not depend on the previous kernel: request them first */
#pragma unroll
    for (int s = 0; s < S; s++) {
        if (k0 + s < k1) issue_step<FMT, MT>(ring + s * SLOT, a, tile0, k0 + s, lane);
        cp_commit();
    }
    pdl_trigger();
    pdl_wait();
    int slot = 0;
    for (int ks = k0; ks < k1; ks++) {
        cp_wait<S - 1>();
        wstep<FMT, MT> b;
        read_step<FMT, MT>(b, ring + slot * SLOT);
        compute_step<FMT, MT, NT>(b, a, tok0, ks, lane, acc);
        if (ks + S < k1) issue_step<FMT, MT>(ring + slot * SLOT, a, tile0, ks + S, lane);
        cp_commit();
        slot = slot + 1 == S ? 0 : slot + 1;
    }
    cp_wait<0>();

    constexpr int NO = MT * NT * 4;
    float *red = (float *)smem;
    if (W > 1) {
        __syncthreads(); /* every warp is done with its ring */
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
        float v = 0.0f;
        if (W > 1) {
            for (int ww = 0; ww < W; ww++) v += red[ww * NO * 32 + o];
        } else {
            /* W == 1: this thread owns exactly its own fragment values */
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

template <int FMT, int MT, int NT> static size_t mmq_smem(int W) {
    size_t ring = (size_t)W * ring_bytes_per_warp<FMT, MT>(), red = (size_t)W * MT * NT * 4 * 32 * sizeof(float);
    return ring > red ? ring : red;
}

template <int FMT, int MT, int NT>
static cudaError_t run_mmq(const mmq_args &a, int rows_pad, int W, int pdl, cudaStream_t st) {
    dim3 grid((unsigned)(rows_pad / (16 * MT)), (unsigned)((a.n + 8 * NT - 1) / (8 * NT)));
    return launch_k(mmq_kernel<FMT, MT, NT>, grid, dim3(32, (unsigned)W), mmq_smem<FMT, MT, NT>(W), st, pdl, a);
}

template <int FMT, int MT, int NT> static cudaError_t allow_smem(void) {
    return cudaFuncSetAttribute(mmq_kernel<FMT, MT, NT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)mmq_smem<FMT, MT, NT>(8));
}

template <int FMT> static cudaError_t allow_fmt(void) {
    cudaError_t e = allow_smem<FMT, 1, 1>();
    if (e == cudaSuccess) e = allow_smem<FMT, 1, 2>();
    if (e == cudaSuccess) e = allow_smem<FMT, 2, 4>();
    return e;
}

cudaError_t cu_mm_init(void) {
    cudaError_t e = allow_fmt<FMT_Q4_0>();
    if (e == cudaSuccess) e = allow_fmt<FMT_Q8_0>();
    if (e == cudaSuccess) e = allow_fmt<FMT_Q4_K>();
    if (e == cudaSuccess) e = allow_fmt<FMT_Q6_K>();
    return e;
}

template <int FMT>
static cudaError_t run_fmt(const mmq_args &a, int rows_pad, int pdl, cudaStream_t st) {
    int nt = a.n <= 8 ? 1 : a.n <= 16 ? 2 : 4;
    /* warps split k: at least 4 k-steps each, at most 8 warps */
    int W = a.ks / 4;
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
    mmq_args a = {(const uint4 *)w->q, w->s, w->ks, w->rows, (size_t)w->rows_pad / 16, (const uint4 *)as->q,
                  ab->kmax / 16, as->ds, ab->tok_pad, n, y, ldy, w->bias, add};
    switch (w->fmt) {
    case FMT_Q4_0: return run_fmt<FMT_Q4_0>(a, w->rows_pad, pdl, st);
    case FMT_Q8_0: return run_fmt<FMT_Q8_0>(a, w->rows_pad, pdl, st);
    case FMT_Q4_K: return run_fmt<FMT_Q4_K>(a, w->rows_pad, pdl, st);
    default: return run_fmt<FMT_Q6_K>(a, w->rows_pad, pdl, st);
    }
}
