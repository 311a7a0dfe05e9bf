/* avx2.c - AVX2 + FMA + F16C kernels (x86-64; compiled with -mavx2 -mfma
 * -mf16c, see cmake/isa.cmake; empty elsewhere).
 *
 * qf_gemm is computed in register tiles of R weight rows x T tokens: each
 * weight block is decoded once per tile and used for T tokens, each
 * activation block is loaded once and used for R rows, and every (row,
 * token) pair keeps a float accumulator that is summed horizontally once at
 * the end of the row. With n == 1 (generation) the tile is 4 rows x 1 token,
 * which streams four weight rows at a time.
 *
 * Integer dots follow ggml's AVX2 scheme: _mm256_maddubs_epi16 multiplies
 * unsigned weight levels with signed int8 activations into int16 pair sums
 * (never saturating: |q| <= 63 for the levels used here, or the sign trick
 * for Q8_0 with |x| <= 127), _mm256_madd_epi16 widens to int32 (by 1, or by
 * the int16 sub-block scale of the K-quants). Formats whose levels carry an
 * offset (Q4_0: q - 8, Q5_0: q - 16, Q3_K: q - 4, Q6_K: q - 32) subtract
 * offset * x from the int16 pair sums (computed once per token, shared by
 * the R rows), so every lane holds exact sums of the true products;
 * subtracting the offset later (e.g. through Q8_K's bsums) would leave
 * large cancelling lane values whose float conversion loses bits. Mins
 * (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) are a term of their own in the reference,
 * so they come from the activation sums (Q8_1's s, Q8_K's bsums). Scales and
 * mins are applied in float once per block (32 values) or super-block
 * (256), exactly the terms of the scalar reference in ref_dot.c, only
 * summed in another order.
 *
 * Activation quantizers reproduce the reference bytes: same float
 * operations, same rounding (round-half-away for Q8_0/Q8_1, nearest-even
 * for Q8_K and fp16).
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")

/* Tokens processed in one pass over a row tile; activations of this many
 * tokens stay in L1/L2 while the weights of the tile are reused. */
#define TT_MAX 4
/* Bytes of activations per cache chunk of tokens (fits in L2). */
#define ACT_CHUNK_BYTES (256 * 1024)

/* ---- small helpers ---- */

INLINE float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE __m256i loadu256(const uint8_t *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

INLINE __m128i loadu128(const uint8_t *p) {
    return _mm_loadu_si128((const __m128i *)p);
}

/* 16 bytes of packed nibbles -> 32 bytes: low nibbles, then high nibbles
 * (the element order of the 32-value 4-bit blocks). */
INLINE __m256i nibbles(__m128i x) {
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* Fifth bits of a Q5_0/Q5_1 block: byte i = 0x10 if bit i of qh is set. */
INLINE __m256i q5_high(const uint8_t *qh_bytes) {
    uint32_t qh;
    memcpy(&qh, qh_bytes, sizeof qh);
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                             0x0101010101010101LL, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* 8 int32 lanes -> float, times scale, into acc. */
INLINE __m256 fma_i32(__m256i v, __m256 scale, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), scale, acc);
}

/* ---- tiling driver ----
 * A kernel family provides tile(R, T, ...) for R in {1, 4} (rows) and T in
 * 1..TT_MAX (tokens); drive() walks the rows in tiles of 4 (then single
 * rows) and the tokens in chunks that fit in L2, tiles of T inside. */

typedef struct gemm_args {
    const uint8_t *w;
    size_t wrb;
    int64_t cols;
    const uint8_t *x;
    size_t xs;
    float *y;
    int64_t ldy;
} gemm_args;

#define DEFINE_DRIVER(name, TILE, TT)                                                              \
    static void name(const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,              \
                     const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {                \
        int64_t chunk = (int64_t)(ACT_CHUNK_BYTES / (xs ? xs : 1));                                \
        chunk = chunk < (TT) ? (TT) : chunk - chunk % (TT);                                        \
        for (int64_t t0 = 0; t0 < n; t0 += chunk) {                                               \
            const int64_t t1 = n - t0 < chunk ? n : t0 + chunk;                                    \
            for (int64_t r = r0; r < r1;) {                                                        \
                const int R = r1 - r >= 4 ? 4 : 1;                                                 \
                for (int64_t t = t0; t < t1;) {                                                    \
                    const int T = t1 - t >= (TT) ? (TT) : (int)(t1 - t);                           \
                    gemm_args a = {(const uint8_t *)W + (size_t)r * wrb, wrb, cols,                \
                                   (const uint8_t *)xq + (size_t)t * xs, xs, y + t * ldy + r, ldy}; \
                    if (R == 4) {                                                                  \
                        switch (T) {                                                               \
                        case 1: TILE(4, 1, &a); break;                                             \
                        case 2: TILE(4, 2, &a); break;                                             \
                        case 3: TILE(4, (TT) >= 3 ? 3 : 1, &a); break;                             \
                        default: TILE(4, (TT) >= 4 ? 4 : 1, &a); break;                            \
                        }                                                                          \
                    } else {                                                                       \
                        switch (T) {                                                               \
                        case 1: TILE(1, 1, &a); break;                                             \
                        case 2: TILE(1, 2, &a); break;                                             \
                        case 3: TILE(1, (TT) >= 3 ? 3 : 1, &a); break;                             \
                        default: TILE(1, (TT) >= 4 ? 4 : 1, &a); break;                            \
                        }                                                                          \
                    }                                                                              \
                    t += T;                                                                        \
                }                                                                                  \
                r += R;                                                                            \
            }                                                                                      \
        }                                                                                          \
    }

/* ---- 32-value blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 ---- */


/* Level offset subtracted from the unsigned levels (0: none or signed). */
INLINE int b32_offset(int kind) {
    return kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : 0;
}

/* Decode one weight block: 32 levels (unsigned, or signed for Q8_0), d, m. */
INLINE __m256i b32_decode(int kind, const uint8_t *b, float *d, float *m) {
    *d = h2f(b);
    switch (kind) {
    case K_Q4_0:
        return nibbles(loadu128(b + 2));
    case K_Q4_1:
        *m = h2f(b + 2);
        return nibbles(loadu128(b + 4));
    case K_Q5_0:
        return _mm256_or_si256(nibbles(loadu128(b + 6)), q5_high(b + 2));
    case K_Q5_1:
        *m = h2f(b + 2);
        return _mm256_or_si256(nibbles(loadu128(b + 8)), q5_high(b + 4));
    default:
        return loadu256(b + 2);
    }
}

INLINE void tile_b32(const int kind, const int R, const int T, const gemm_args *g) {
    const size_t bw = b32_bytes(kind);
    const bool has_min = b32_has_min(kind);
    const size_t bx = has_min ? sizeof(qf_block_q8_1) : sizeof(qf_block_q8_0);
    const int off = b32_offset(kind);
    const int64_t nb = g->cols / 32;
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc[4][TT_MAX];
    float accm[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++) {
            acc[r][t] = _mm256_setzero_ps();
            accm[r][t] = 0;
        }
    }
    for (int64_t b = 0; b < nb; b++) {
        __m256i q[4], aq[4];
        float dw[4], mw[4] = {0, 0, 0, 0};
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wb = g->w + (size_t)r * g->wrb + (size_t)b * bw;
            /* the same spot four row tiles ahead: at n = 1 from DRAM
             * about 1.4x faster than one tile ahead, 1.7x than none */
            _mm_prefetch((const char *)wb + 16 * R * g->wrb, _MM_HINT_T1);
            q[r] = b32_decode(kind, wb, &dw[r], &mw[r]);
            if (kind == K_Q8_0) aq[r] = _mm256_sign_epi8(q[r], q[r]);
        }
        UNROLL for (int t = 0; t < T; t++) {
            const uint8_t *xb = g->x + (size_t)t * g->xs + (size_t)b * bx;
            const __m256i xv = loadu256(xb + (has_min ? 4 : 2));
            const float dx = h2f(xb);
            __m256i ox = _mm256_setzero_si256();
            if (off) ox = _mm256_maddubs_epi16(_mm256_set1_epi8((char)off), xv);
            UNROLL for (int r = 0; r < R; r++) {
                __m256i p;
                if (kind == K_Q8_0) {
                    p = _mm256_maddubs_epi16(aq[r], _mm256_sign_epi8(xv, q[r]));
                } else {
                    p = _mm256_maddubs_epi16(q[r], xv);
                    if (off) p = _mm256_sub_epi16(p, ox);
                }
                acc[r][t] = fma_i32(_mm256_madd_epi16(p, ones16), _mm256_set1_ps(dw[r] * dx),
                                    acc[r][t]);
                if (has_min) accm[r][t] += mw[r] * h2f(xb + 2);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            g->y[t * g->ldy + r] = hsum(acc[r][t]) + accm[r][t];
    }
}

#define TILE_Q4_0(R, T, a) tile_b32(K_Q4_0, R, T, a)
#define TILE_Q4_1(R, T, a) tile_b32(K_Q4_1, R, T, a)
#define TILE_Q5_0(R, T, a) tile_b32(K_Q5_0, R, T, a)
#define TILE_Q5_1(R, T, a) tile_b32(K_Q5_1, R, T, a)
#define TILE_Q8_0(R, T, a) tile_b32(K_Q8_0, R, T, a)
DEFINE_DRIVER(gemm_q4_0, TILE_Q4_0, 2)
DEFINE_DRIVER(gemm_q4_1, TILE_Q4_1, 2)
DEFINE_DRIVER(gemm_q5_0, TILE_Q5_0, 2)
DEFINE_DRIVER(gemm_q5_1, TILE_Q5_1, 2)
DEFINE_DRIVER(gemm_q8_0, TILE_Q8_0, 2)

/* ---- K-quants: Q4_K, Q5_K, Q6_K against Q8_K ---- */

/* Fifth bit j of each byte of qh moved to bit 4 (0x10). */
INLINE __m256i bit_to_0x10(__m256i qh, int j) {
    const __m256i b = _mm256_and_si256(qh, _mm256_set1_epi8((char)(1 << j)));
    if (j < 4) return _mm256_slli_epi16(b, 4 - j);
    if (j > 4) return _mm256_srli_epi16(b, j - 4);
    return b;
}

INLINE void tile_k45(const bool five, const int R, const int T, const gemm_args *g) {
    const size_t bw = five ? sizeof(qf_block_q5_K) : sizeof(qf_block_q4_K);
    const int64_t nsb = g->cols / QF_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    /* duplicates byte j of 8 into int16 lanes 2j, 2j+1 (pairs with bsums) */
    const __m128i dup = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    __m256 acc[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t s = 0; s < nsb; s++) {
        uint8_t sc[4][8], mn[4][8];
        float dw[4], dmin[4];
        __m256i mins[4];
        const uint8_t *blk[4];
        UNROLL for (int r = 0; r < R; r++) {
            blk[r] = g->w + (size_t)r * g->wrb + (size_t)s * bw;
            dw[r] = h2f(blk[r]);
            dmin[r] = h2f(blk[r] + 2);
            qf_k4_scales(blk[r] + 4, sc[r], mn[r]);
            mins[r] = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)mn[r]), dup));
        }
        const qf_block_q8_K *xb[TT_MAX];
        __m256i iacc[4][TT_MAX];
        UNROLL for (int t = 0; t < T; t++) {
            xb[t] = (const qf_block_q8_K *)(g->x + (size_t)t * g->xs) + s;
            UNROLL for (int r = 0; r < R; r++)
                iacc[r][t] = _mm256_setzero_si256();
        }
        const size_t qs_off = five ? 16 + QF_QK_K / 8 : 16;
        for (int c = 0; c < 4; c++) {
            __m256i lo[4], hi[4];
            UNROLL for (int r = 0; r < R; r++) {
                const __m256i v = loadu256(blk[r] + qs_off + 32 * c);
                lo[r] = _mm256_and_si256(v, m4);
                hi[r] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (five) {
                    const __m256i qh = loadu256(blk[r] + 16);
                    lo[r] = _mm256_or_si256(lo[r], bit_to_0x10(qh, 2 * c));
                    hi[r] = _mm256_or_si256(hi[r], bit_to_0x10(qh, 2 * c + 1));
                }
            }
            UNROLL for (int t = 0; t < T; t++) {
                const __m256i xlo = loadu256((const uint8_t *)xb[t]->qs + 64 * c);
                const __m256i xhi = loadu256((const uint8_t *)xb[t]->qs + 64 * c + 32);
                UNROLL for (int r = 0; r < R; r++) {
                    const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo[r], xlo),
                                                          _mm256_set1_epi16(sc[r][2 * c]));
                    const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi[r], xhi),
                                                          _mm256_set1_epi16(sc[r][2 * c + 1]));
                    iacc[r][t] = _mm256_add_epi32(iacc[r][t], _mm256_add_epi32(plo, phi));
                }
            }
        }
        UNROLL for (int t = 0; t < T; t++) {
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb[t]->bsums);
            UNROLL for (int r = 0; r < R; r++) {
                acc[r][t] = fma_i32(iacc[r][t], _mm256_set1_ps(dw[r] * xb[t]->d), acc[r][t]);
                acc[r][t] = fma_i32(_mm256_madd_epi16(mins[r], bsums),
                                    _mm256_set1_ps(-dmin[r] * xb[t]->d), acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            g->y[t * g->ldy + r] = hsum(acc[r][t]);
    }
}

#define TILE_Q4_K(R, T, a) tile_k45(false, R, T, a)
#define TILE_Q5_K(R, T, a) tile_k45(true, R, T, a)
DEFINE_DRIVER(gemm_q4_K, TILE_Q4_K, 2)
DEFINE_DRIVER(gemm_q5_K, TILE_Q5_K, 2)

/* Q6_K: 8 vectors of 32 levels per super-block; vector v = 4h + k holds
 * elements 128h + 32k .. +31 (sub-blocks 2v, 2v + 1). */
INLINE __m256i q6_levels(const qf_block_q6_K *b, int v) {
    const int h = v / 4, k = v % 4;
    const __m256i ql = loadu256(b->ql + 64 * h + 32 * (k % 2));
    const __m256i qh = loadu256(b->qh + 32 * h);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03);
    const __m256i low = k < 2 ? _mm256_and_si256(ql, m4)
                              : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m3);
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
}

INLINE void tile_q6_K(const int R, const int T, const gemm_args *g) {
    const int64_t nsb = g->cols / QF_QK_K;
    __m256 acc[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t s = 0; s < nsb; s++) {
        const qf_block_q6_K *blk[4];
        __m128i sc8[4];
        UNROLL for (int r = 0; r < R; r++) {
            blk[r] = (const qf_block_q6_K *)(g->w + (size_t)r * g->wrb) + s;
            sc8[r] = _mm_loadu_si128((const __m128i *)blk[r]->scales);
        }
        const qf_block_q8_K *xb[TT_MAX];
        __m256i iacc[4][TT_MAX];
        UNROLL for (int t = 0; t < T; t++) {
            xb[t] = (const qf_block_q8_K *)(g->x + (size_t)t * g->xs) + s;
            UNROLL for (int r = 0; r < R; r++)
                iacc[r][t] = _mm256_setzero_si256();
        }
        for (int v = 0; v < 8; v++) {
            __m256i q[4], scv[4];
            /* int16 scales: sub-block 2v in the low 128 bits, 2v+1 high */
            const __m128i pick = _mm_set_epi64x(0x0101010101010101LL * (2 * v + 1),
                                                0x0101010101010101LL * (2 * v));
            UNROLL for (int r = 0; r < R; r++) {
                q[r] = q6_levels(blk[r], v);
                scv[r] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8[r], pick));
            }
            UNROLL for (int t = 0; t < T; t++) {
                const __m256i xv = loadu256((const uint8_t *)xb[t]->qs + 32 * v);
                /* the -32 offset per int16 lane (shared by the rows), so
                 * every lane holds exact (q - 32) * x sums: no large
                 * cancelling lane values that would lose bits in float */
                const __m256i ox = _mm256_maddubs_epi16(_mm256_set1_epi8(32), xv);
                UNROLL for (int r = 0; r < R; r++) {
                    const __m256i d = _mm256_sub_epi16(_mm256_maddubs_epi16(q[r], xv), ox);
                    iacc[r][t] = _mm256_add_epi32(iacc[r][t], _mm256_madd_epi16(d, scv[r]));
                }
            }
        }
        UNROLL for (int t = 0; t < T; t++) {
            UNROLL for (int r = 0; r < R; r++)
                acc[r][t] = fma_i32(iacc[r][t], _mm256_set1_ps(h2f((const uint8_t *)&blk[r]->d) * xb[t]->d),
                                    acc[r][t]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            g->y[t * g->ldy + r] = hsum(acc[r][t]);
    }
}

#define TILE_Q6_K(R, T, a) tile_q6_K(R, T, a)
DEFINE_DRIVER(gemm_q6_K, TILE_Q6_K, 2)

/* ---- K-quants with 16-value sub-blocks: Q2_K, Q3_K against Q8_K ----
 * Both formats keep 2-bit low parts in qs like Q6_K's high bits: vector
 * v = 4h + k of 32 levels (elements 128h + 32k .. +31, sub-blocks 2v and
 * 2v + 1) is bits 2k..2k+1 of qs[32h .. 32h + 31]. Each row's 16 sub-block
 * scales are widened to int16 once per super-block; for vector v one
 * in-lane byte shuffle puts scale 2v in the low 128 bits and 2v + 1 in the
 * high 128 bits, the lanes that hold the pair sums of those sub-blocks. */

/* 16 int16 scales (s16: element j = scale of sub-block j) -> the two
 * halves with elements 0-7 (*lo) or 8-15 (*hi) in both 128-bit lanes. */
INLINE void k16_halves(__m256i s16, __m256i *lo, __m256i *hi) {
    *lo = _mm256_permute2x128_si256(s16, s16, 0x00);
    *hi = _mm256_permute2x128_si256(s16, s16, 0x11);
}

/* Byte shuffle that makes every int16 lane of the low 128 bits element
 * 2(v % 4) of a half from k16_halves, of the high 128 bits element
 * 2(v % 4) + 1. */
INLINE __m256i k16_pick(int v) {
    const int e = 2 * (v % 4);
    const char a0 = (char)(2 * e), a1 = (char)(2 * e + 1);
    const char b0 = (char)(2 * e + 2), b1 = (char)(2 * e + 3);
    return _mm256_setr_epi8(a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1,
                            b0, b1, b0, b1, b0, b1, b0, b1, b0, b1, b0, b1, b0, b1, b0, b1);
}

/* Q3_K: the 16 signed 6-bit scales (stored + 32, blocks.h) as int8. */
INLINE __m128i q3_scales(const uint8_t *s) {
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    /* byte i of each word is sub-block 4w + i: low nibble from a or b,
     * bits 4-5 from bit pair w of byte i of c */
    const uint32_t w0 = (a & 0x0F0F0F0Fu) | ((c << 4) & 0x30303030u);
    const uint32_t w1 = (b & 0x0F0F0F0Fu) | ((c << 2) & 0x30303030u);
    const uint32_t w2 = ((a >> 4) & 0x0F0F0F0Fu) | (c & 0x30303030u);
    const uint32_t w3 = ((b >> 4) & 0x0F0F0F0Fu) | ((c >> 2) & 0x30303030u);
    const __m128i u = _mm_setr_epi32((int)w0, (int)w1, (int)w2, (int)w3);
    return _mm_sub_epi8(u, _mm_set1_epi8(32));
}

/* Q3_K level bit 2 of vector v: bit v of hmask[l] moved to 0x04. */
INLINE __m256i q3_high(__m256i hm, int v) {
    const __m256i b = v < 2 ? _mm256_slli_epi16(hm, 2 - v) : v > 2 ? _mm256_srli_epi16(hm, v - 2) : hm;
    return _mm256_and_si256(b, _mm256_set1_epi8(0x04));
}

/* three: Q3_K (levels low2 | hbit << 2 in 0..7, offset 4, signed scales),
 * else Q2_K (levels 0..3, unsigned scale and min nibbles). Q2_K's min
 * term, dmin * min_j * sum(x in sub-block j), comes from Q8_K's bsums
 * (one int16 madd per super-block); Q3_K's offset is subtracted as 4 * x
 * from the int16 pair sums per token (shared by the rows), as Q6_K does. */
INLINE void tile_k23(const bool three, const int R, const int T, const gemm_args *g) {
    const size_t bw = three ? sizeof(qf_block_q3_K) : sizeof(qf_block_q2_K);
    const size_t qs_off = three ? offsetof(qf_block_q3_K, qs) : offsetof(qf_block_q2_K, qs);
    const size_t d_off = three ? offsetof(qf_block_q3_K, d) : offsetof(qf_block_q2_K, d);
    const int64_t nsb = g->cols / QF_QK_K;
    const __m256i m3 = _mm256_set1_epi8(0x03);
    __m256 acc[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *blk[4];
        __m256i sc16[4], mins[4];
        float dw[4], dmin[4];
        UNROLL for (int r = 0; r < R; r++) {
            blk[r] = g->w + (size_t)r * g->wrb + (size_t)s * bw;
            /* the same spot four row tiles ahead: at n = 1 from DRAM
             * about 1.4x faster than one tile ahead, 1.7x than none */
            _mm_prefetch((const char *)blk[r] + 4 * R * g->wrb, _MM_HINT_T0);
            _mm_prefetch((const char *)blk[r] + 4 * R * g->wrb + 64, _MM_HINT_T0);
            dw[r] = h2f(blk[r] + d_off);
            if (three) {
                sc16[r] = _mm256_cvtepi8_epi16(q3_scales(blk[r] + offsetof(qf_block_q3_K, scales)));
            } else {
                const __m128i sm = loadu128(blk[r] + offsetof(qf_block_q2_K, scales));
                const __m128i m4 = _mm_set1_epi8(0x0F);
                sc16[r] = _mm256_cvtepu8_epi16(_mm_and_si128(sm, m4));
                mins[r] = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
                dmin[r] = h2f(blk[r] + offsetof(qf_block_q2_K, dmin));
            }
        }
        const qf_block_q8_K *xb[TT_MAX];
        __m256i iacc[4][TT_MAX];
        UNROLL for (int t = 0; t < T; t++) {
            xb[t] = (const qf_block_q8_K *)(g->x + (size_t)t * g->xs) + s;
            UNROLL for (int r = 0; r < R; r++)
                iacc[r][t] = _mm256_setzero_si256();
        }
        for (int h = 0; h < 2; h++) {
            __m256i qv[4], sch[4];
            UNROLL for (int r = 0; r < R; r++) {
                __m256i lo, hi;
                qv[r] = loadu256(blk[r] + qs_off + 32 * h);
                k16_halves(sc16[r], &lo, &hi);
                sch[r] = h == 0 ? lo : hi;
            }
            UNROLL for (int k = 0; k < 4; k++) {
                const int v = 4 * h + k;
                const __m256i pick = k16_pick(v);
                __m256i q[4], scv[4];
                UNROLL for (int r = 0; r < R; r++) {
                    q[r] = _mm256_and_si256(_mm256_srli_epi16(qv[r], 2 * k), m3);
                    if (three) q[r] = _mm256_or_si256(q[r], q3_high(loadu256(blk[r]), v));
                    scv[r] = _mm256_shuffle_epi8(sch[r], pick);
                }
                UNROLL for (int t = 0; t < T; t++) {
                    const __m256i xv = loadu256((const uint8_t *)xb[t]->qs + 32 * v);
                    /* Q3_K: exact (q - 4) * x pair sums in every lane */
                    const __m256i ox = three ? _mm256_maddubs_epi16(_mm256_set1_epi8(4), xv)
                                             : _mm256_setzero_si256();
                    UNROLL for (int r = 0; r < R; r++) {
                        __m256i p = _mm256_maddubs_epi16(q[r], xv);
                        if (three) p = _mm256_sub_epi16(p, ox);
                        iacc[r][t] = _mm256_add_epi32(iacc[r][t], _mm256_madd_epi16(p, scv[r]));
                    }
                }
            }
        }
        UNROLL for (int t = 0; t < T; t++) {
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb[t]->bsums);
            UNROLL for (int r = 0; r < R; r++) {
                acc[r][t] = fma_i32(iacc[r][t], _mm256_set1_ps(dw[r] * xb[t]->d), acc[r][t]);
                if (!three)
                    acc[r][t] = fma_i32(_mm256_madd_epi16(mins[r], bsums),
                                        _mm256_set1_ps(-(dmin[r] * xb[t]->d)), acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            g->y[t * g->ldy + r] = hsum(acc[r][t]);
    }
}

#define TILE_Q2_K(R, T, a) tile_k23(false, R, T, a)
#define TILE_Q3_K(R, T, a) tile_k23(true, R, T, a)
DEFINE_DRIVER(gemm_q2_K, TILE_Q2_K, 4)
DEFINE_DRIVER(gemm_q3_K, TILE_Q3_K, 4)

/* ---- float types: F32 x F32, F16 x F16, BF16 x F32 ---- */

enum { F_F32, F_F16, F_BF16 };

INLINE __m256 load8_w(int kind, const uint8_t *row, int64_t i) {
    switch (kind) {
    case F_F16:
        return _mm256_cvtph_ps(loadu128(row + 2 * i));
    case F_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(row + 2 * i)), 16));
    default:
        return _mm256_loadu_ps((const float *)row + i);
    }
}

INLINE float load1_w(int kind, const uint8_t *row, int64_t i) {
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

/* activations: F16 for F16 weights, else F32 */
INLINE __m256 load8_x(int kind, const uint8_t *x, int64_t i) {
    return kind == F_F16 ? _mm256_cvtph_ps(loadu128(x + 2 * i)) : _mm256_loadu_ps((const float *)x + i);
}

INLINE float load1_x(int kind, const uint8_t *x, int64_t i) {
    return kind == F_F16 ? h2f(x + 2 * i) : ((const float *)x)[i];
}

INLINE void tile_f(const int kind, const int R, const int T, const gemm_args *g) {
    __m256 acc[4][TT_MAX];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
    }
    const int64_t n8 = g->cols - g->cols % 8;
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 wv[4];
        UNROLL for (int r = 0; r < R; r++)
            wv[r] = load8_w(kind, g->w + (size_t)r * g->wrb, i);
        UNROLL for (int t = 0; t < T; t++) {
            const __m256 xv = load8_x(kind, g->x + (size_t)t * g->xs, i);
            UNROLL for (int r = 0; r < R; r++)
                acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++) {
            float s = hsum(acc[r][t]);
            for (int64_t i = n8; i < g->cols; i++)
                s += load1_w(kind, g->w + (size_t)r * g->wrb, i) * load1_x(kind, g->x + (size_t)t * g->xs, i);
            g->y[t * g->ldy + r] = s;
        }
    }
}

#define TILE_F32(R, T, a)  tile_f(F_F32, R, T, a)
#define TILE_F16(R, T, a)  tile_f(F_F16, R, T, a)
#define TILE_BF16(R, T, a) tile_f(F_BF16, R, T, a)
DEFINE_DRIVER(gemm_f32, TILE_F32, 2)
DEFINE_DRIVER(gemm_f16, TILE_F16, 2)
DEFINE_DRIVER(gemm_bf16, TILE_BF16, 2)

/* ---- activation quantizers ---- */

INLINE float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

INLINE __m256 absps(__m256 v) {
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

/* roundf (half away from zero), exactly: trunc, then step away from zero
 * when the exact remainder is at least one half. */
INLINE __m256 round_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = absps(_mm256_sub_ps(v, t));
    const __m256 step = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
    const __m256 ge = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(ge, step));
}

/* 4 x 8 int32 (each in -128..127) -> 32 int8 in order. */
INLINE __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i v = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* One Q8_0/Q8_1 block: d = amax / 127, q = roundf(x / d) (ref.c). Returns
 * sum(q), stores q and returns d through *d. */
INLINE int quant_b32(const float *x, int8_t *qs, float *dout) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(amax, absps(v[k]));
    }
    const float d = hmax(amax) / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    __m256i q[4];
    const __m256 lim = _mm256_set1_ps(127.0f);
    for (int k = 0; k < 4; k++) {
        __m256 r = round_away(_mm256_mul_ps(v[k], _mm256_set1_ps(id)));
        r = _mm256_min_ps(_mm256_max_ps(r, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
        q[k] = _mm256_cvttps_epi32(r);
    }
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_hadd_epi32(s4, s4);
    s4 = _mm_hadd_epi32(s4, s4);
    _mm256_storeu_si256((__m256i *)qs, pack32(q[0], q[1], q[2], q[3]));
    *dout = d;
    return _mm_cvtsi128_si32(s4);
}

static void act_q8_0(const float *x, void *xq, int64_t cols) {
    qf_block_q8_0 *y = xq;
    for (int64_t i = 0; i < cols / QF_QK8_0; i++) {
        float d;
        quant_b32(x + i * QF_QK8_0, y[i].qs, &d);
        y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    }
}

static void act_q8_1(const float *x, void *xq, int64_t cols) {
    qf_block_q8_1 *y = xq;
    for (int64_t i = 0; i < cols / QF_QK8_1; i++) {
        float d;
        const int sum = quant_b32(x + i * QF_QK8_1, y[i].qs, &d);
        y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        y[i].s = _cvtss_sh((float)sum * d, _MM_FROUND_TO_NEAREST_INT);
    }
}

/* Q8_K: scale from the signed value of largest magnitude (the first one
 * on ties), q = nearest-even(-127 / max * x), bsums of 16. */
static void act_q8_K(const float *x, void *xq, int64_t cols) {
    qf_block_q8_K *y = xq;
    for (int64_t i = 0; i < cols / QF_QK_K; i++) {
        const float *xb = x + i * QF_QK_K;
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < QF_QK_K / 8; k++)
            amax = _mm256_max_ps(amax, absps(_mm256_loadu_ps(xb + 8 * k)));
        const float am = hmax(amax);
        memset(&y[i], 0, sizeof y[i]);
        if (am == 0) continue;
        float max = 0;
        const __m256 amv = _mm256_set1_ps(am);
        for (int k = 0; k < QF_QK_K / 8; k++) {
            const int m = _mm256_movemask_ps(_mm256_cmp_ps(absps(_mm256_loadu_ps(xb + 8 * k)), amv, _CMP_EQ_OQ));
            if (m) {
                max = xb[8 * k + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        for (int k = 0; k < QF_QK_K / 32; k++) {
            __m256i q[4];
            for (int j = 0; j < 4; j++)
                q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(xb + 32 * k + 8 * j)));
            const __m256i p = pack32(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * k), p);
            /* sums of 4 bytes, then of 16 within each 128-bit half */
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(1));
            s = _mm256_hadd_epi32(s, s);
            s = _mm256_hadd_epi32(s, s);
            y[i].bsums[2 * k] = (int16_t)_mm256_extract_epi32(s, 0);
            y[i].bsums[2 * k + 1] = (int16_t)_mm256_extract_epi32(s, 4);
        }
        y[i].d = 1 / iscale;
    }
}

static void act_f16(const float *x, void *xq, int64_t cols) {
    uint16_t *h = xq;
    int64_t i = 0;
    for (; i + 8 <= cols; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < cols; i++)
        h[i] = qf_fp32_to_fp16(x[i]);
}

/* Value accumulation: 16 outputs of M (1..4, a compile-time constant so
 * the accumulators stay in registers) weight vectors while the rows stream
 * by, each row converted once (F16C). */
static inline __attribute__((always_inline)) void vmad_cols(const int M, int64_t j, int64_t n, const uint8_t *vb,
                                                             size_t v_row_bytes, const float *aq, int64_t lda,
                                                             float *oq, int64_t ldo) {
    __m256 acc[4][2];
    for (int q = 0; q < M; q++) {
        acc[q][0] = _mm256_loadu_ps(oq + q * ldo + j);
        acc[q][1] = _mm256_loadu_ps(oq + q * ldo + j + 8);
    }
    for (int64_t r = 0; r < n; r++) {
        const uint16_t *v = (const uint16_t *)(vb + (size_t)r * v_row_bytes) + j;
        const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)v));
        const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + 8)));
        for (int q = 0; q < M; q++) {
            const __m256 w = _mm256_broadcast_ss(aq + q * lda + r);
            acc[q][0] = _mm256_fmadd_ps(w, v0, acc[q][0]);
            acc[q][1] = _mm256_fmadd_ps(w, v1, acc[q][1]);
        }
    }
    for (int q = 0; q < M; q++) {
        _mm256_storeu_ps(oq + q * ldo + j, acc[q][0]);
        _mm256_storeu_ps(oq + q * ldo + j + 8, acc[q][1]);
    }
}

static void vmad_f16(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda, int64_t nq,
                     float *out, int64_t ldo) {
    const uint8_t *vb = V;
    for (int64_t q0 = 0; q0 < nq; q0 += 4) {
        const int m = nq - q0 < 4 ? (int)(nq - q0) : 4;
        const float *aq = a + q0 * lda;
        float *oq = out + q0 * ldo;
        int64_t j = 0;
        for (; j + 16 <= d; j += 16) {
            switch (m) {
            case 1: vmad_cols(1, j, n, vb, v_row_bytes, aq, lda, oq, ldo); break;
            case 2: vmad_cols(2, j, n, vb, v_row_bytes, aq, lda, oq, ldo); break;
            case 3: vmad_cols(3, j, n, vb, v_row_bytes, aq, lda, oq, ldo); break;
            default: vmad_cols(4, j, n, vb, v_row_bytes, aq, lda, oq, ldo); break;
            }
        }
        if (j < d) /* tail: head sizes that are not multiples of 16 */
            qf_ref_vmad_f16(d - j, n, vb + 2 * j, v_row_bytes, aq, lda, m, oq + j, ldo);
    }
}


/* ---- attention blocks: qf_attn_f16, qf_attn_q8_0 ----
 *
 * (AVX-512 machines use these too: their table starts as a copy of this
 * one.) Scores: four key rows at a time against one query row, four
 * independent FMA chains over dk, reduced together with two rounds of hadd;
 * Q8_0 rows as d * (int8 -> float) per 32-value block, the query in float.
 * Softmax: eight weights at a time through exp8, a Cody-Waite range
 * reduction x = n ln2 + r, |r| <= ln2/2, and a degree-6 polynomial for
 * exp(r) (the Cephes expf coefficients), 2^n put straight into the exponent
 * bits; within 2 ulp of expf over the range the kernel uses (x <= 0), and 0
 * below -87.3 where expf's result would be subnormal. F16 head sizes that
 * are not a multiple of 8 use the scalar reference.
 */
INLINE __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

INLINE __m256 load8h(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* Rows of an F16 or a Q8_0 cache (the kernels are instantiated per type). */
enum { KV_F16, KV_Q8_0 };

INLINE __m256 load8i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* acc += q[0..dk) . row, lane-wise (summed by the caller). */
INLINE __m256 row_dot(const int kind, const uint8_t *row, const float *q, int64_t dk, __m256 acc) {
    if (kind == KV_F16) {
        const uint16_t *k = (const uint16_t *)row;
        for (int64_t j = 0; j < dk; j += 8)
            acc = _mm256_fmadd_ps(load8h(k + j), _mm256_loadu_ps(q + j), acc);
        return acc;
    }
    const qf_block_q8_0 *b = (const qf_block_q8_0 *)row;
    for (int64_t j = 0; j < dk; j += 32, b++) {
        __m256 t = _mm256_mul_ps(load8i8(b->qs), _mm256_loadu_ps(q + j));
        t = _mm256_fmadd_ps(load8i8(b->qs + 8), _mm256_loadu_ps(q + j + 8), t);
        t = _mm256_fmadd_ps(load8i8(b->qs + 16), _mm256_loadu_ps(q + j + 16), t);
        t = _mm256_fmadd_ps(load8i8(b->qs + 24), _mm256_loadu_ps(q + j + 24), t);
        acc = _mm256_fmadd_ps(t, _mm256_set1_ps(h2f((const uint8_t *)&b->d)), acc);
    }
    return acc;
}

/* s[0..n) = scale * q . K_r, four rows at a time (independent chains). */
INLINE void scores(const int kind, int64_t dk, int64_t n, const uint8_t *K, size_t krb, const float *q, float scale,
                   float *s) {
    int64_t r = 0;
    for (; r + 4 <= n; r += 4) {
        const uint8_t *k = K + (size_t)r * krb;
        __m256 a0, a1, a2, a3;
        if (kind == KV_F16) {
            const uint16_t *k0 = (const uint16_t *)k, *k1 = (const uint16_t *)(k + krb);
            const uint16_t *k2 = (const uint16_t *)(k + 2 * krb), *k3 = (const uint16_t *)(k + 3 * krb);
            a0 = a1 = a2 = a3 = _mm256_setzero_ps();
            for (int64_t j = 0; j < dk; j += 8) {
                const __m256 qv = _mm256_loadu_ps(q + j);
                a0 = _mm256_fmadd_ps(load8h(k0 + j), qv, a0);
                a1 = _mm256_fmadd_ps(load8h(k1 + j), qv, a1);
                a2 = _mm256_fmadd_ps(load8h(k2 + j), qv, a2);
                a3 = _mm256_fmadd_ps(load8h(k3 + j), qv, a3);
            }
        } else {
            a0 = row_dot(kind, k, q, dk, _mm256_setzero_ps());
            a1 = row_dot(kind, k + krb, q, dk, _mm256_setzero_ps());
            a2 = row_dot(kind, k + 2 * krb, q, dk, _mm256_setzero_ps());
            a3 = row_dot(kind, k + 3 * krb, q, dk, _mm256_setzero_ps());
        }
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        const __m128 t = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        _mm_storeu_ps(s + r, _mm_mul_ps(t, _mm_set1_ps(scale)));
    }
    for (; r < n; r++)
        s[r] = hsum(row_dot(kind, K + (size_t)r * krb, q, dk, _mm256_setzero_ps())) * scale;
}

INLINE void attn_sm(const int kind, int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q,
                    int64_t ldq, int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo,
                    float *p) {
    const int64_t n8 = n - n % 8;
    for (int64_t g = 0; g < nq; g++) {
        float *s = p + g * n;
        scores(kind, dk, n, K, k_row_bytes, q + g * ldq, scale, s);
        __m256 vm = _mm256_set1_ps(-INFINITY);
        for (int64_t r = 0; r < n8; r += 8)
            vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + r));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float bm = _mm_cvtss_f32(h);
        for (int64_t r = n8; r < n; r++)
            bm = s[r] > bm ? s[r] : bm;
        if (m[g] > bm) bm = m[g];
        if (bm > m[g]) {
            const float c = expf(m[g] - bm);
            float *o = out + g * ldo;
            int64_t j = 0;
            for (; j + 8 <= dv; j += 8)
                _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_loadu_ps(o + j), _mm256_set1_ps(c)));
            for (; j < dv; j++)
                o[j] *= c;
            l[g] *= c;
            m[g] = bm;
        }
        const __m256 vb = _mm256_set1_ps(bm);
        __m256 sum = _mm256_setzero_ps();
        for (int64_t r = 0; r < n8; r += 8) {
            const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + r), vb));
            _mm256_storeu_ps(s + r, e);
            sum = _mm256_add_ps(sum, e);
        }
        float tail = 0.0f;
        for (int64_t r = n8; r < n; r++) {
            s[r] = expf(s[r] - bm);
            tail += s[r];
        }
        l[g] += hsum(sum) + tail;
    }
}

static void attn_sm_f16(int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q, int64_t ldq,
                        int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p) {
    if (dk % 8 != 0) {
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
            __m256 acc[4][2];
            for (int g = 0; g < mq; g++) {
                acc[g][0] = _mm256_loadu_ps(oq + g * ldo + j);
                acc[g][1] = _mm256_loadu_ps(oq + g * ldo + j + 8);
            }
            for (int64_t r = 0; r < n; r++) {
                const qf_block_q8_0 *b = (const qf_block_q8_0 *)(vb + (size_t)r * v_row_bytes) + j / 32;
                const int8_t *x = b->qs + j % 32;
                const __m256 x0 = load8i8(x), x1 = load8i8(x + 8);
                const float dd = h2f((const uint8_t *)&b->d);
                for (int g = 0; g < mq; g++) {
                    const __m256 w = _mm256_set1_ps(aq[g * lda + r] * dd);
                    acc[g][0] = _mm256_fmadd_ps(x0, w, acc[g][0]);
                    acc[g][1] = _mm256_fmadd_ps(x1, w, acc[g][1]);
                }
            }
            for (int g = 0; g < mq; g++) {
                _mm256_storeu_ps(oq + g * ldo + j, acc[g][0]);
                _mm256_storeu_ps(oq + g * ldo + j + 8, acc[g][1]);
            }
        }
    }
}

/* SwiGLU (qf_swiglu) on 8 lanes, avx512_attn.c's arithmetic with exp8: t =
 * e^-|x|, silu(x) = (x >= 0 ? x : x t) / (1 + t). The tail goes through the
 * same lanes from a padded copy, so every element's result is the same
 * wherever a row is split. */
INLINE __m256 swiglu8(__m256 x, __m256 uv) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 t = exp8(_mm256_sub_ps(zero, ax));
    const __m256 num = _mm256_blendv_ps(x, _mm256_mul_ps(x, t), _mm256_cmp_ps(x, zero, _CMP_LT_OQ));
    return _mm256_mul_ps(_mm256_div_ps(num, _mm256_add_ps(one, t)), uv);
}

static void swiglu(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(g + i, swiglu8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        float xb[8] = {0}, ub[8] = {0}, r[8];
        memcpy(xb, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(ub, u + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(r, swiglu8(_mm256_loadu_ps(xb), _mm256_loadu_ps(ub)));
        memcpy(g + i, r, (size_t)(n - i) * sizeof(float));
    }
}

bool qf_kernels_fill_avx2(qf_kernel_table *t) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
        !__builtin_cpu_supports("f16c"))
        return false;
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
    t->swiglu = swiglu;
    t->vmad_q8_0 = vmad_q8_0;
    return true;
}

#endif /* __x86_64__ */
