/* neon.c - AArch64 NEON kernels with the dot-product extension (sdot);
 * compiled with -march=armv8.2-a+dotprod+fp16 (cmake/isa.cmake), empty on
 * other architectures. Apple Silicon and recent Arm cores all have sdot;
 * on Linux the hwcaps are checked before this table is used.
 *
 * SDOT multiplies signed int8 by signed int8, so every format is decoded to
 * its signed levels directly (Q4_0: q - 8, Q3_K: q - 4, Q6_K: q - 32, ...)
 * and no offset correction is needed. Tiles of R rows x T tokens reuse
 * each decoded weight block for T tokens, as in avx2.c. 32-value blocks
 * scale their int32 sums by d_w * d_x per block; K-quants multiply each
 * sub-block sum by its integer scale (vmlaq_n_s32), reduce the super-block
 * to one exact int32 and apply the float scales once per super-block (mins
 * through Q8_K's bsums). F16 weights are widened to float (each product
 * of two halves is exact in float, which fp16 accumulation would not keep).
 *
 * Activation quantizers reproduce ref.c's bytes: FCVTAS rounds half away
 * from zero like roundf (Q8_0/Q8_1), FCVTNS to nearest even (Q8_K), and
 * scales go through the reference fp16 conversion.
 */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#if defined(__linux__)
#include <sys/auxv.h>
#endif

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")
#define TT_MAX 4
#define ACT_CHUNK_BYTES (256 * 1024)

INLINE float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return qf_fp16_to_fp32(h);
}

/* ---- tiling driver (as in avx2.c) ---- */

typedef struct gemm_args {
    const uint8_t *w;
    size_t wrb;
    int64_t cols;
    const uint8_t *x;
    size_t xs;
    float *y;
    int64_t ldy;
} gemm_args;

#define DEFINE_DRIVER(name, TILE)                                                                  \
    static void name(const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,              \
                     const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {                \
        int64_t chunk = (int64_t)(ACT_CHUNK_BYTES / (xs ? xs : 1));                                \
        chunk = chunk < TT_MAX ? TT_MAX : chunk - chunk % TT_MAX;                                  \
        for (int64_t t0 = 0; t0 < n; t0 += chunk) {                                               \
            const int64_t t1 = n - t0 < chunk ? n : t0 + chunk;                                    \
            for (int64_t r = r0; r < r1;) {                                                        \
                const int R = r1 - r >= 4 ? 4 : 1;                                                 \
                for (int64_t t = t0; t < t1;) {                                                    \
                    const int T = t1 - t >= TT_MAX ? TT_MAX : 1;                                   \
                    gemm_args a = {(const uint8_t *)W + (size_t)r * wrb, wrb, cols,                \
                                   (const uint8_t *)xq + (size_t)t * xs, xs, y + t * ldy + r, ldy}; \
                    if (R == 4 && T == TT_MAX) TILE(4, TT_MAX, &a);                                \
                    else if (R == 4) TILE(4, 1, &a);                                               \
                    else if (T == TT_MAX) TILE(1, TT_MAX, &a);                                     \
                    else TILE(1, 1, &a);                                                           \
                    t += T;                                                                        \
                }                                                                                  \
                r += R;                                                                            \
            }                                                                                      \
        }                                                                                          \
    }

/* ---- 32-value blocks ---- */


/* 16 fifth bits (bits 0-15 of qh >> shift) as bytes 0x10 / 0. */
INLINE uint8x16_t q5_bits(uint32_t qh) {
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)qh), vdup_n_u8((uint8_t)(qh >> 8)));
    return vandq_u8(vtstq_u8(v, vld1q_u8(bits)), vdupq_n_u8(0x10));
}

/* Signed levels of one block: elements 0-15 in *lo, 16-31 in *hi. */
INLINE void b32_decode(int kind, const uint8_t *b, int8x16_t *lo, int8x16_t *hi, float *d, float *m) {
    *d = h2f(b);
    if (kind == K_Q8_0) {
        *lo = vld1q_s8((const int8_t *)b + 2);
        *hi = vld1q_s8((const int8_t *)b + 18);
        return;
    }
    size_t qs = 2;
    uint32_t qh = 0;
    switch (kind) {
    case K_Q4_1: *m = h2f(b + 2); qs = 4; break;
    case K_Q5_0: memcpy(&qh, b + 2, 4); qs = 6; break;
    case K_Q5_1: *m = h2f(b + 2); memcpy(&qh, b + 4, 4); qs = 8; break;
    default: break;
    }
    const uint8x16_t v = vld1q_u8(b + qs);
    uint8x16_t l = vandq_u8(v, vdupq_n_u8(0x0F)), h = vshrq_n_u8(v, 4);
    if (kind == K_Q5_0 || kind == K_Q5_1) {
        l = vorrq_u8(l, q5_bits(qh));
        h = vorrq_u8(h, q5_bits(qh >> 16));
    }
    const int off = kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : 0;
    *lo = vsubq_s8(vreinterpretq_s8_u8(l), vdupq_n_s8((int8_t)off));
    *hi = vsubq_s8(vreinterpretq_s8_u8(h), vdupq_n_s8((int8_t)off));
}

INLINE void tile_b32(const int kind, const int R, const int T, const gemm_args *g) {
    const size_t bw = b32_bytes(kind);
    const bool has_min = b32_has_min(kind);
    const size_t bx = has_min ? sizeof(qf_block_q8_1) : sizeof(qf_block_q8_0);
    const size_t xqs = has_min ? 4 : 2;
    const int64_t nb = g->cols / 32;
    float32x4_t acc[4][TT_MAX];
    float accm[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++) {
            acc[r][t] = vdupq_n_f32(0);
            accm[r][t] = 0;
        }
    }
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t lo[4], hi[4];
        float dw[4], mw[4] = {0, 0, 0, 0};
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wb = g->w + (size_t)r * g->wrb + (size_t)b * bw;
            __builtin_prefetch(wb + 4 * R * g->wrb);
            b32_decode(kind, wb, &lo[r], &hi[r], &dw[r], &mw[r]);
        }
        UNROLL for (int t = 0; t < T; t++) {
            const uint8_t *xb = g->x + (size_t)t * g->xs + (size_t)b * bx;
            const int8x16_t x0 = vld1q_s8((const int8_t *)xb + xqs);
            const int8x16_t x1 = vld1q_s8((const int8_t *)xb + xqs + 16);
            const float dx = h2f(xb);
            UNROLL for (int r = 0; r < R; r++) {
                const int32x4_t s = vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo[r], x0), hi[r], x1);
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(s), dw[r] * dx);
                if (has_min) accm[r][t] += mw[r] * h2f(xb + 2);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            g->y[t * g->ldy + r] = vaddvq_f32(acc[r][t]) + accm[r][t];
    }
}

#define TILE_Q4_0(R, T, a) tile_b32(K_Q4_0, R, T, a)
#define TILE_Q4_1(R, T, a) tile_b32(K_Q4_1, R, T, a)
#define TILE_Q5_0(R, T, a) tile_b32(K_Q5_0, R, T, a)
#define TILE_Q5_1(R, T, a) tile_b32(K_Q5_1, R, T, a)
#define TILE_Q8_0(R, T, a) tile_b32(K_Q8_0, R, T, a)
DEFINE_DRIVER(gemm_q4_0, TILE_Q4_0)
DEFINE_DRIVER(gemm_q4_1, TILE_Q4_1)
DEFINE_DRIVER(gemm_q5_0, TILE_Q5_0)
DEFINE_DRIVER(gemm_q5_1, TILE_Q5_1)
DEFINE_DRIVER(gemm_q8_0, TILE_Q8_0)

/* ---- K-quants against Q8_K ---- */

/* sum_j m_j * (bsums[2j] + bsums[2j+1]) */
INLINE int32_t min_dot(const uint8_t mn[8], const int16_t *bsums) {
    const int16x8_t pair = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));
    const int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
    const int32x4_t s = vmlal_s16(vmull_s16(vget_low_s16(m), vget_low_s16(pair)), vget_high_s16(m), vget_high_s16(pair));
    return vaddvq_s32(s);
}

/* Q4_K / Q5_K: sub-block j (32 levels) as two vectors. Sub-block j = 2c
 * (+1) is the low (high) nibbles of qs[32c .. 32c+31]. */
INLINE void k45_sub(bool five, const uint8_t *blk, int j, int8x16_t v[2]) {
    const int c = j / 2;
    const uint8_t *qs = blk + 16 + (five ? QF_QK_K / 8 : 0) + 32 * c;
    const uint8x16_t a = vld1q_u8(qs), b = vld1q_u8(qs + 16);
    uint8x16_t l0, l1;
    if (j % 2 == 0) {
        l0 = vandq_u8(a, vdupq_n_u8(0x0F));
        l1 = vandq_u8(b, vdupq_n_u8(0x0F));
    } else {
        l0 = vshrq_n_u8(a, 4);
        l1 = vshrq_n_u8(b, 4);
    }
    if (five) {
        /* fifth bit of element 32j + l: bit j of qh[l] */
        const uint8x16_t bit = vdupq_n_u8((uint8_t)(1 << j)), x10 = vdupq_n_u8(0x10);
        l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(vld1q_u8(blk + 16), bit), x10));
        l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(vld1q_u8(blk + 32), bit), x10));
    }
    v[0] = vreinterpretq_s8_u8(l0);
    v[1] = vreinterpretq_s8_u8(l1);
}

INLINE void tile_k45(const bool five, const int R, const int T, const gemm_args *g) {
    const size_t bw = five ? sizeof(qf_block_q5_K) : sizeof(qf_block_q4_K);
    const int64_t nsb = g->cols / QF_QK_K;
    float acc[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = 0;
    }
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *blk[4];
        uint8_t sc[4][8], mn[4][8];
        int32x4_t ia[4][TT_MAX];
        UNROLL for (int r = 0; r < R; r++) {
            blk[r] = g->w + (size_t)r * g->wrb + (size_t)s * bw;
            __builtin_prefetch(blk[r] + 4 * R * g->wrb);
            qf_k4_scales(blk[r] + 4, sc[r], mn[r]);
            UNROLL for (int t = 0; t < T; t++)
                ia[r][t] = vdupq_n_s32(0);
        }
        const qf_block_q8_K *xb[TT_MAX];
        UNROLL for (int t = 0; t < T; t++)
            xb[t] = (const qf_block_q8_K *)(g->x + (size_t)t * g->xs) + s;
        for (int j = 0; j < QF_QK_K / 32; j++) {
            int8x16_t v[4][2];
            UNROLL for (int r = 0; r < R; r++)
                k45_sub(five, blk[r], j, v[r]);
            UNROLL for (int t = 0; t < T; t++) {
                const int8x16_t x0 = vld1q_s8(xb[t]->qs + 32 * j), x1 = vld1q_s8(xb[t]->qs + 32 * j + 16);
                UNROLL for (int r = 0; r < R; r++) {
                    const int32x4_t d = vdotq_s32(vdotq_s32(vdupq_n_s32(0), v[r][0], x0), v[r][1], x1);
                    ia[r][t] = vmlaq_n_s32(ia[r][t], d, sc[r][j]);
                }
            }
        }
        UNROLL for (int r = 0; r < R; r++) {
            const float d = h2f(blk[r]), dmin = h2f(blk[r] + 2);
            UNROLL for (int t = 0; t < T; t++) {
                acc[r][t] += (d * xb[t]->d) * (float)vaddvq_s32(ia[r][t]);
                acc[r][t] -= (dmin * xb[t]->d) * (float)min_dot(mn[r], xb[t]->bsums);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            g->y[t * g->ldy + r] = acc[r][t];
    }
}

#define TILE_Q4_K(R, T, a) tile_k45(false, R, T, a)
#define TILE_Q5_K(R, T, a) tile_k45(true, R, T, a)
DEFINE_DRIVER(gemm_q4_K, TILE_Q4_K)
DEFINE_DRIVER(gemm_q5_K, TILE_Q5_K)

/* Q6_K: the 16 signed levels of sub-block j = 8h + 2k + u (elements
 * 128h + 32k + 16u + l). */
INLINE int8x16_t q6_sub(const qf_block_q6_K *b, int j) {
    const int h = j / 8, k = (j % 8) / 2, u = j % 2;
    const uint8x16_t ql = vld1q_u8(b->ql + 64 * h + 32 * (k % 2) + 16 * u);
    const uint8x16_t qh = vld1q_u8(b->qh + 32 * h + 16 * u);
    const uint8x16_t low = k < 2 ? vandq_u8(ql, vdupq_n_u8(0x0F)) : vshrq_n_u8(ql, 4);
    uint8x16_t high;
    switch (k) {
    case 0: high = vandq_u8(qh, vdupq_n_u8(0x03)); break;
    case 1: high = vandq_u8(vshrq_n_u8(qh, 2), vdupq_n_u8(0x03)); break;
    case 2: high = vandq_u8(vshrq_n_u8(qh, 4), vdupq_n_u8(0x03)); break;
    default: high = vshrq_n_u8(qh, 6); break;
    }
    return vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, vshlq_n_u8(high, 4))), vdupq_n_s8(32));
}

INLINE void tile_q6_K(const int R, const int T, const gemm_args *g) {
    const int64_t nsb = g->cols / QF_QK_K;
    float acc[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = 0;
    }
    for (int64_t s = 0; s < nsb; s++) {
        const qf_block_q6_K *blk[4];
        int32x4_t ia[4][TT_MAX];
        UNROLL for (int r = 0; r < R; r++) {
            blk[r] = (const qf_block_q6_K *)(g->w + (size_t)r * g->wrb) + s;
            __builtin_prefetch((const uint8_t *)blk[r] + 4 * R * g->wrb);
            UNROLL for (int t = 0; t < T; t++)
                ia[r][t] = vdupq_n_s32(0);
        }
        const qf_block_q8_K *xb[TT_MAX];
        UNROLL for (int t = 0; t < T; t++)
            xb[t] = (const qf_block_q8_K *)(g->x + (size_t)t * g->xs) + s;
        for (int j = 0; j < QF_QK_K / 16; j++) {
            int8x16_t v[4];
            UNROLL for (int r = 0; r < R; r++)
                v[r] = q6_sub(blk[r], j);
            UNROLL for (int t = 0; t < T; t++) {
                const int8x16_t xv = vld1q_s8(xb[t]->qs + 16 * j);
                UNROLL for (int r = 0; r < R; r++)
                    ia[r][t] = vmlaq_n_s32(ia[r][t], vdotq_s32(vdupq_n_s32(0), v[r], xv), blk[r]->scales[j]);
            }
        }
        UNROLL for (int r = 0; r < R; r++) {
            const float d = h2f((const uint8_t *)&blk[r]->d);
            UNROLL for (int t = 0; t < T; t++)
                acc[r][t] += (d * xb[t]->d) * (float)vaddvq_s32(ia[r][t]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            g->y[t * g->ldy + r] = acc[r][t];
    }
}

#define TILE_Q6_K(R, T, a) tile_q6_K(R, T, a)
DEFINE_DRIVER(gemm_q6_K, TILE_Q6_K)

/* ---- K-quants with 16-value sub-blocks: Q2_K, Q3_K against Q8_K ----
 * Sub-block j = 8h + 2k + u holds elements 128h + 32k + 16u + l (l < 16),
 * whose low two bits are bits 2k..2k+1 of qs[32h + 16u + l] (blocks.h).
 * Q2_K levels (0..3) are already valid signed int8; its min term,
 * dmin * sum_j min_j * bsums[j], never touches the elements. Q3_K levels
 * low2 - 4 * (1 - hbit) (-4..3) are formed before the dot, so no offset
 * correction is needed either. */

/* Q3_K: the 16 signed 6-bit scales (stored + 32, blocks.h). */
INLINE void q3_scales(const uint8_t *s, int8_t sc[16]) {
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    /* byte i of word w is sub-block 4w + i: low nibble from a or b, bits
     * 4-5 from bit pair w of byte i of c */
    const uint32_t w[4] = {
        (a & 0x0F0F0F0Fu) | ((c << 4) & 0x30303030u),
        (b & 0x0F0F0F0Fu) | ((c << 2) & 0x30303030u),
        ((a >> 4) & 0x0F0F0F0Fu) | (c & 0x30303030u),
        ((b >> 4) & 0x0F0F0F0Fu) | ((c >> 2) & 0x30303030u),
    };
    const uint8x16_t u = vld1q_u8((const uint8_t *)w);
    vst1q_s8(sc, vsubq_s8(vreinterpretq_s8_u8(u), vdupq_n_s8(32)));
}

/* Signed levels of sub-block j of a Q2_K (three false) or Q3_K block. */
INLINE int8x16_t k23_sub(const bool three, const uint8_t *blk, int j) {
    const int h = j / 8, k = (j % 8) / 2, u = j % 2;
    const size_t qs_off = three ? offsetof(qf_block_q3_K, qs) : offsetof(qf_block_q2_K, qs);
    const uint8x16_t q = vld1q_u8(blk + qs_off + 32 * h + 16 * u);
    uint8x16_t low;
    switch (k) {
    case 0: low = vandq_u8(q, vdupq_n_u8(0x03)); break;
    case 1: low = vandq_u8(vshrq_n_u8(q, 2), vdupq_n_u8(0x03)); break;
    case 2: low = vandq_u8(vshrq_n_u8(q, 4), vdupq_n_u8(0x03)); break;
    default: low = vshrq_n_u8(q, 6); break;
    }
    if (!three) return vreinterpretq_s8_u8(low);
    /* high bit of element e: bit e / 32 = 4h + k of hmask[e % 32] */
    const uint8x16_t hm = vld1q_u8(blk + offsetof(qf_block_q3_K, hmask) + 16 * u);
    const uint8x16_t set = vtstq_u8(hm, vdupq_n_u8((uint8_t)(1 << (4 * h + k))));
    /* low2 - 4 where the bit is clear */
    return vreinterpretq_s8_u8(vsubq_u8(low, vbicq_u8(vdupq_n_u8(4), set)));
}

/* Q2_K: sum_j min_j * bsums[j] over the 16 sub-blocks (mins: the high
 * nibbles of scales). */
INLINE int32_t q2_min_dot(const uint8_t *scales, const int16_t *bsums) {
    const uint8x16_t m = vshrq_n_u8(vld1q_u8(scales), 4);
    const int16x8_t m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m)));
    const int16x8_t m1 = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(m)));
    const int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
    int32x4_t s = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
    s = vmlal_s16(s, vget_high_s16(m0), vget_high_s16(b0));
    s = vmlal_s16(s, vget_low_s16(m1), vget_low_s16(b1));
    s = vmlal_s16(s, vget_high_s16(m1), vget_high_s16(b1));
    return vaddvq_s32(s);
}

INLINE void tile_k23(const bool three, const int R, const int T, const gemm_args *g) {
    const size_t bw = three ? sizeof(qf_block_q3_K) : sizeof(qf_block_q2_K);
    const size_t d_off = three ? offsetof(qf_block_q3_K, d) : offsetof(qf_block_q2_K, d);
    const int64_t nsb = g->cols / QF_QK_K;
    float acc[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = 0;
    }
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *blk[4];
        int8_t sc[4][16];
        int32x4_t ia[4][TT_MAX];
        UNROLL for (int r = 0; r < R; r++) {
            blk[r] = g->w + (size_t)r * g->wrb + (size_t)s * bw;
            __builtin_prefetch(blk[r] + 4 * R * g->wrb);
            __builtin_prefetch(blk[r] + 4 * R * g->wrb + 64);
            if (three) {
                q3_scales(blk[r] + offsetof(qf_block_q3_K, scales), sc[r]);
            } else {
                const uint8x16_t v = vandq_u8(vld1q_u8(blk[r] + offsetof(qf_block_q2_K, scales)), vdupq_n_u8(0x0F));
                vst1q_s8(sc[r], vreinterpretq_s8_u8(v));
            }
            UNROLL for (int t = 0; t < T; t++)
                ia[r][t] = vdupq_n_s32(0);
        }
        const qf_block_q8_K *xb[TT_MAX];
        UNROLL for (int t = 0; t < T; t++)
            xb[t] = (const qf_block_q8_K *)(g->x + (size_t)t * g->xs) + s;
        for (int j = 0; j < QF_QK_K / 16; j++) {
            int8x16_t v[4];
            UNROLL for (int r = 0; r < R; r++)
                v[r] = k23_sub(three, blk[r], j);
            UNROLL for (int t = 0; t < T; t++) {
                const int8x16_t xv = vld1q_s8(xb[t]->qs + 16 * j);
                UNROLL for (int r = 0; r < R; r++)
                    ia[r][t] = vmlaq_n_s32(ia[r][t], vdotq_s32(vdupq_n_s32(0), v[r], xv), sc[r][j]);
            }
        }
        UNROLL for (int r = 0; r < R; r++) {
            const float d = h2f(blk[r] + d_off);
            const float dmin = three ? 0.0f : h2f(blk[r] + offsetof(qf_block_q2_K, dmin));
            UNROLL for (int t = 0; t < T; t++) {
                acc[r][t] += (d * xb[t]->d) * (float)vaddvq_s32(ia[r][t]);
                if (!three)
                    acc[r][t] -= (dmin * xb[t]->d) *
                                 (float)q2_min_dot(blk[r] + offsetof(qf_block_q2_K, scales), xb[t]->bsums);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            g->y[t * g->ldy + r] = acc[r][t];
    }
}

#define TILE_Q2_K(R, T, a) tile_k23(false, R, T, a)
#define TILE_Q3_K(R, T, a) tile_k23(true, R, T, a)
DEFINE_DRIVER(gemm_q2_K, TILE_Q2_K)
DEFINE_DRIVER(gemm_q3_K, TILE_Q3_K)

/* ---- float types ---- */

enum { F_F32, F_F16, F_BF16 };

INLINE float32x4_t fw4(int kind, const uint8_t *row, int64_t i) {
    switch (kind) {
    case F_F16:
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)row + i)));
    case F_BF16:
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)row + i), 16));
    default:
        return vld1q_f32((const float *)row + i);
    }
}

INLINE float fw1(int kind, const uint8_t *row, int64_t i) {
    uint16_t h;
    switch (kind) {
    case F_F16:
        return h2f(row + 2 * i);
    case F_BF16:
        memcpy(&h, row + 2 * i, 2);
        return qf_bf16_to_fp32(h);
    default:
        return ((const float *)row)[i];
    }
}

INLINE float32x4_t fx4(int kind, const uint8_t *x, int64_t i) {
    return kind == F_F16 ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)x + i)))
                         : vld1q_f32((const float *)x + i);
}

INLINE float fx1(int kind, const uint8_t *x, int64_t i) {
    return kind == F_F16 ? h2f(x + 2 * i) : ((const float *)x)[i];
}

INLINE void tile_f(const int kind, const int R, const int T, const gemm_args *g) {
    float32x4_t acc[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = vdupq_n_f32(0);
    }
    const int64_t n4 = g->cols - g->cols % 4;
    for (int64_t i = 0; i < n4; i += 4) {
        float32x4_t wv[4];
        UNROLL for (int r = 0; r < R; r++)
            wv[r] = fw4(kind, g->w + (size_t)r * g->wrb, i);
        UNROLL for (int t = 0; t < T; t++) {
            const float32x4_t xv = fx4(kind, g->x + (size_t)t * g->xs, i);
            UNROLL for (int r = 0; r < R; r++)
                acc[r][t] = vfmaq_f32(acc[r][t], wv[r], xv);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++) {
            float s = vaddvq_f32(acc[r][t]);
            for (int64_t i = n4; i < g->cols; i++)
                s += fw1(kind, g->w + (size_t)r * g->wrb, i) * fx1(kind, g->x + (size_t)t * g->xs, i);
            g->y[t * g->ldy + r] = s;
        }
    }
}

#define TILE_F32(R, T, a)  tile_f(F_F32, R, T, a)
#define TILE_F16(R, T, a)  tile_f(F_F16, R, T, a)
#define TILE_BF16(R, T, a) tile_f(F_BF16, R, T, a)
DEFINE_DRIVER(gemm_f32, TILE_F32)
DEFINE_DRIVER(gemm_f16, TILE_F16)
DEFINE_DRIVER(gemm_bf16, TILE_BF16)

/* ---- activation quantizers ---- */

/* One Q8_0/Q8_1 block: d = amax / 127, q = roundf(x / d); returns sum(q). */
INLINE int quant_b32(const float *x, int8_t *qs, float *dout) {
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0);
    for (int k = 0; k < 8; k++) {
        v[k] = vld1q_f32(x + 4 * k);
        amax = vmaxq_f32(amax, vabsq_f32(v[k]));
    }
    const float d = vmaxvq_f32(amax) / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int32x4_t sum = vdupq_n_s32(0);
    for (int k = 0; k < 8; k += 2) {
        int32x4_t a = vcvtaq_s32_f32(vmulq_n_f32(v[k], id));
        int32x4_t b = vcvtaq_s32_f32(vmulq_n_f32(v[k + 1], id));
        a = vmaxq_s32(vminq_s32(a, vdupq_n_s32(127)), vdupq_n_s32(-127));
        b = vmaxq_s32(vminq_s32(b, vdupq_n_s32(127)), vdupq_n_s32(-127));
        sum = vaddq_s32(sum, vaddq_s32(a, b));
        const int16x8_t ab = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
        vst1_s8(qs + 4 * k, vmovn_s16(ab));
    }
    *dout = d;
    return vaddvq_s32(sum);
}

static void act_q8_0(const float *x, void *xq, int64_t cols) {
    qf_block_q8_0 *y = xq;
    for (int64_t i = 0; i < cols / QF_QK8_0; i++) {
        float d;
        quant_b32(x + i * QF_QK8_0, y[i].qs, &d);
        y[i].d = qf_fp32_to_fp16(d);
    }
}

static void act_q8_1(const float *x, void *xq, int64_t cols) {
    qf_block_q8_1 *y = xq;
    for (int64_t i = 0; i < cols / QF_QK8_1; i++) {
        float d;
        const int sum = quant_b32(x + i * QF_QK8_1, y[i].qs, &d);
        y[i].d = qf_fp32_to_fp16(d);
        y[i].s = qf_fp32_to_fp16((float)sum * d);
    }
}

static void act_q8_K(const float *x, void *xq, int64_t cols) {
    qf_block_q8_K *y = xq;
    for (int64_t i = 0; i < cols / QF_QK_K; i++) {
        const float *xb = x + i * QF_QK_K;
        float32x4_t amax = vdupq_n_f32(0);
        for (int k = 0; k < QF_QK_K / 4; k++)
            amax = vmaxq_f32(amax, vabsq_f32(vld1q_f32(xb + 4 * k)));
        const float am = vmaxvq_f32(amax);
        memset(&y[i], 0, sizeof y[i]);
        if (am == 0) continue;
        float max = 0;
        for (int j = 0; j < QF_QK_K; j++) {
            if (xb[j] == am || xb[j] == -am) { /* the first of largest magnitude */
                max = xb[j];
                break;
            }
        }
        const float iscale = -127.f / max;
        for (int k = 0; k < QF_QK_K / 16; k++) {
            int16x8_t h[2];
            for (int u = 0; u < 2; u++) {
                int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(xb + 16 * k + 8 * u), iscale));
                int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(xb + 16 * k + 8 * u + 4), iscale));
                h[u] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
            }
            const int8x16_t q = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
            vst1q_s8(y[i].qs + 16 * k, q);
            y[i].bsums[k] = (int16_t)vaddlvq_s8(q);
        }
        y[i].d = 1 / iscale;
    }
}

static void act_f16(const float *x, void *xq, int64_t cols) {
    uint16_t *h = xq;
    int64_t i = 0;
    for (; i + 4 <= cols; i += 4)
        vst1_u16(h + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < cols; i++)
        h[i] = qf_fp32_to_fp16(x[i]);
}

/* Value accumulation: 16 outputs of up to 4 weight vectors stay in
 * registers while the rows stream by, each row converted once. */
static void vmad_f16(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda, int64_t nq,
                     float *out, int64_t ldo) {
    const uint8_t *vb = V;
    for (int64_t q0 = 0; q0 < nq; q0 += 4) {
        const int m = nq - q0 < 4 ? (int)(nq - q0) : 4;
        const float *aq = a + q0 * lda;
        float *oq = out + q0 * ldo;
        int64_t j = 0;
        for (; j + 16 <= d; j += 16) {
            float32x4_t acc[4][4];
            for (int q = 0; q < m; q++)
                for (int k = 0; k < 4; k++)
                    acc[q][k] = vld1q_f32(oq + q * ldo + j + 4 * k);
            for (int64_t r = 0; r < n; r++) {
                const uint16_t *v = (const uint16_t *)(vb + (size_t)r * v_row_bytes) + j;
                const uint16x8_t h0 = vld1q_u16(v), h1 = vld1q_u16(v + 8);
                float32x4_t x[4];
                x[0] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h0)));
                x[1] = vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h0)));
                x[2] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h1)));
                x[3] = vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h1)));
                for (int q = 0; q < m; q++) {
                    const float w = aq[q * lda + r];
                    for (int k = 0; k < 4; k++)
                        acc[q][k] = vfmaq_n_f32(acc[q][k], x[k], w);
                }
            }
            for (int q = 0; q < m; q++)
                for (int k = 0; k < 4; k++)
                    vst1q_f32(oq + q * ldo + j + 4 * k, acc[q][k]);
        }
        if (j < d) /* tail: head sizes that are not multiples of 16 */
            qf_ref_vmad_f16(d - j, n, vb + 2 * j, v_row_bytes, aq, lda, m, oq + j, ldo);
    }
}


/* ---- attention blocks: qf_attn_f16, qf_attn_q8_0 ----
 *
 * Same scheme as avx2.c's: four key rows at a time against one query row,
 * four FMA chains reduced with pairwise adds (Q8_0 rows as d * int8 per
 * block, the query in float); the weights through exp4 (Cody-Waite
 * reduction, degree-6 Cephes polynomial, 2^n in the exponent bits, 0 below
 * -87.3). F16 head sizes that are not a multiple of 4 use the scalar
 * reference.
 */
static inline float32x4_t exp4(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.33654f);
    const uint32x4_t under = vcltq_f32(x, lo);
    x = vmaxq_f32(x, lo);
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t y = vdupq_n_f32(1.9875691500e-4f);
    y = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), y, r);
    y = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), y, r);
    y = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), y, r);
    y = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), y, r);
    y = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), y, r);
    y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), y, vmulq_f32(r, r));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    const float32x4_t v = vmulq_f32(y, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), under));
}

static inline float32x4_t load4h(const uint16_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

/* Rows of an F16 or a Q8_0 cache (the kernels are instantiated per type). */
enum { KV_F16, KV_Q8_0 };

/* 8 int8 -> two float vectors */
static inline void load8i8(const int8_t *p, float32x4_t *lo, float32x4_t *hi) {
    const int16x8_t w = vmovl_s8(vld1_s8(p));
    *lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
    *hi = vcvtq_f32_s32(vmovl_s16(vget_high_s16(w)));
}

/* acc += q[0..dk) . row, lane-wise (summed by the caller). */
static inline __attribute__((always_inline)) float32x4_t row_dot(const int kind, const uint8_t *row, const float *q,
                                                                 int64_t dk, float32x4_t acc) {
    if (kind == KV_F16) {
        const uint16_t *k = (const uint16_t *)row;
        for (int64_t j = 0; j < dk; j += 4)
            acc = vfmaq_f32(acc, load4h(k + j), vld1q_f32(q + j));
        return acc;
    }
    const qf_block_q8_0 *b = (const qf_block_q8_0 *)row;
    for (int64_t j = 0; j < dk; j += 32, b++) {
        float32x4_t t = vdupq_n_f32(0.0f);
        for (int u = 0; u < 32; u += 8) {
            float32x4_t lo, hi;
            load8i8(b->qs + u, &lo, &hi);
            t = vfmaq_f32(t, lo, vld1q_f32(q + j + u));
            t = vfmaq_f32(t, hi, vld1q_f32(q + j + u + 4));
        }
        acc = vfmaq_n_f32(acc, t, h2f((const uint8_t *)&b->d));
    }
    return acc;
}

/* s[0..n) = scale * q . K_r, four rows at a time (independent chains). */
static inline __attribute__((always_inline)) void scores(const int kind, int64_t dk, int64_t n, const uint8_t *K,
                                                         size_t krb, const float *q, float scale, float *s) {
    int64_t r = 0;
    for (; r + 4 <= n; r += 4) {
        const uint8_t *k = K + (size_t)r * krb;
        const float32x4_t z = vdupq_n_f32(0.0f);
        const float32x4_t a0 = row_dot(kind, k, q, dk, z), a1 = row_dot(kind, k + krb, q, dk, z);
        const float32x4_t a2 = row_dot(kind, k + 2 * krb, q, dk, z), a3 = row_dot(kind, k + 3 * krb, q, dk, z);
        const float32x4_t t = vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3));
        vst1q_f32(s + r, vmulq_n_f32(t, scale));
    }
    for (; r < n; r++)
        s[r] = vaddvq_f32(row_dot(kind, K + (size_t)r * krb, q, dk, vdupq_n_f32(0.0f))) * scale;
}

static inline __attribute__((always_inline)) void attn_sm(const int kind, int64_t dk, int64_t n, const void *K,
                                                          size_t k_row_bytes, const float *q, int64_t ldq, int64_t nq,
                                                          float scale, float *m, float *l, float *out, int64_t dv,
                                                          int64_t ldo, float *p) {
    const int64_t n4 = n - n % 4;
    for (int64_t g = 0; g < nq; g++) {
        float *s = p + g * n;
        scores(kind, dk, n, K, k_row_bytes, q + g * ldq, scale, s);
        float bm = m[g];
        for (int64_t r = 0; r < n4; r += 4) {
            const float b = vmaxvq_f32(vld1q_f32(s + r));
            bm = b > bm ? b : bm;
        }
        for (int64_t r = n4; r < n; r++)
            bm = s[r] > bm ? s[r] : bm;
        if (bm > m[g]) {
            const float c = expf(m[g] - bm);
            float *o = out + g * ldo;
            int64_t j = 0;
            for (; j + 4 <= dv; j += 4)
                vst1q_f32(o + j, vmulq_n_f32(vld1q_f32(o + j), c));
            for (; j < dv; j++)
                o[j] *= c;
            l[g] *= c;
            m[g] = bm;
        }
        const float32x4_t vb = vdupq_n_f32(bm);
        float32x4_t sum = vdupq_n_f32(0.0f);
        for (int64_t r = 0; r < n4; r += 4) {
            const float32x4_t e = exp4(vsubq_f32(vld1q_f32(s + r), vb));
            vst1q_f32(s + r, e);
            sum = vaddq_f32(sum, e);
        }
        float tail = 0.0f;
        for (int64_t r = n4; r < n; r++) {
            s[r] = expf(s[r] - bm);
            tail += s[r];
        }
        l[g] += vaddvq_f32(sum) + tail;
    }
}

static void attn_sm_f16(int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q, int64_t ldq,
                        int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p) {
    if (dk % 4 != 0) {
        qf_ref_attn_sm_f16(dk, n, K, k_row_bytes, q, ldq, nq, scale, m, l, out, dv, ldo, p);
        return;
    }
    attn_sm(KV_F16, dk, n, K, k_row_bytes, q, ldq, nq, scale, m, l, out, dv, ldo, p);
}

static void attn_sm_q8_0(int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q, int64_t ldq,
                         int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p) {
    attn_sm(KV_Q8_0, dk, n, K, k_row_bytes, q, ldq, nq, scale, m, l, out, dv, ldo, p);
}

/* Value sum of Q8_0 rows: 16 outputs (half a block) of up to 4 weight
 * vectors stay in registers while the rows stream by; the block scale
 * folds into each weight. */
static void vmad_q8_0(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda, int64_t nq,
                      float *out, int64_t ldo) {
    const uint8_t *vb = V;
    for (int64_t q0 = 0; q0 < nq; q0 += 4) {
        const int mq = nq - q0 < 4 ? (int)(nq - q0) : 4;
        const float *aq = a + q0 * lda;
        float *oq = out + q0 * ldo;
        for (int64_t j = 0; j < d; j += 16) {
            float32x4_t acc[4][4];
            for (int g = 0; g < mq; g++)
                for (int k = 0; k < 4; k++)
                    acc[g][k] = vld1q_f32(oq + g * ldo + j + 4 * k);
            for (int64_t r = 0; r < n; r++) {
                const qf_block_q8_0 *b = (const qf_block_q8_0 *)(vb + (size_t)r * v_row_bytes) + j / 32;
                float32x4_t x[4];
                load8i8(b->qs + j % 32, &x[0], &x[1]);
                load8i8(b->qs + j % 32 + 8, &x[2], &x[3]);
                const float dd = h2f((const uint8_t *)&b->d);
                for (int g = 0; g < mq; g++) {
                    const float w = aq[g * lda + r] * dd;
                    for (int k = 0; k < 4; k++)
                        acc[g][k] = vfmaq_n_f32(acc[g][k], x[k], w);
                }
            }
            for (int g = 0; g < mq; g++)
                for (int k = 0; k < 4; k++)
                    vst1q_f32(oq + g * ldo + j + 4 * k, acc[g][k]);
        }
    }
}

bool qf_kernels_fill_neon(qf_kernel_table *t) {
#if defined(__linux__)
    /* sdot (asimddp) and half-precision conversions (fphp/asimdhp) */
    const unsigned long hw = getauxval(AT_HWCAP);
    if (!(hw & HWCAP_ASIMDDP) || !(hw & HWCAP_FPHP) || !(hw & HWCAP_ASIMDHP)) return false;
#endif
    t->gemm[QF_TYPE_Q4_0] = gemm_q4_0;
    t->gemm[QF_TYPE_Q4_1] = gemm_q4_1;
    t->gemm[QF_TYPE_Q5_0] = gemm_q5_0;
    t->gemm[QF_TYPE_Q5_1] = gemm_q5_1;
    t->gemm[QF_TYPE_Q8_0] = gemm_q8_0;
    t->gemm[QF_TYPE_Q2_K] = gemm_q2_K;
    t->gemm[QF_TYPE_Q3_K] = gemm_q3_K;
    t->gemm[QF_TYPE_Q4_K] = gemm_q4_K;
    t->gemm[QF_TYPE_Q5_K] = gemm_q5_K;
    t->gemm[QF_TYPE_Q6_K] = gemm_q6_K;
    t->gemm[QF_TYPE_F32] = gemm_f32;
    t->gemm[QF_TYPE_F16] = gemm_f16;
    t->gemm[QF_TYPE_BF16] = gemm_bf16;
    t->act[QF_TYPE_Q8_0] = act_q8_0;
    t->act[QF_TYPE_Q8_1] = act_q8_1;
    t->act[QF_TYPE_Q8_K] = act_q8_K;
    t->act[QF_TYPE_F16] = act_f16;
    t->vmad_f16 = vmad_f16;
    t->attn_sm_f16 = attn_sm_f16;
    t->attn_sm_q8_0 = attn_sm_q8_0;
    t->vmad_q8_0 = vmad_q8_0;
    return true;
}

#endif /* __aarch64__ */
