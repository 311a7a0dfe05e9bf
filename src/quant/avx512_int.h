/* avx512_int.h - what the AVX-512 kernel files share (internal to
 * src/quant/avx512*.c, compiled with the flags of cmake/isa.cmake): inline
 * decoders of the block formats, the per-thread scratch, and the AMX entry
 * points (avx512_amx.c) that avx512.c calls for batches.
 *
 * qf_avx512_scratch(bytes): a 64-byte aligned per-thread buffer of at least
 * bytes, valid until the next call on the same thread, owned by the thread
 * (freed when it exits); NULL when memory cannot be had (callers fall back
 * to kernels that need none).
 * qf_avx512_gemm_amx / qf_avx512_gemm_amx_f16: the AMX tile kernels, with
 * the contract of qf_gemm_fn (quant_int.h) for a weight kind AX_*; false
 * (nothing written) when scratch memory cannot be had or the build has no
 * AMX. Only called after qf_avx512_amx_enable() returned true (and, for
 * F16, the CPU has AMX-BF16).
 * qf_avx512_amx_enable(): the CPU has AMX-INT8 and the OS granted the tile
 * state (QF_AMX=0 refuses); call once, before any tile kernel.
 * x86-64 only: include it inside the files' __x86_64__ guard. */
#ifndef QF_QUANT_AVX512_INT_H
#define QF_QUANT_AVX512_INT_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant_int.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

enum { AX_Q4_0, AX_Q4_1, AX_Q5_0, AX_Q5_1, AX_Q8_0, AX_Q4_K, AX_Q5_K, AX_Q6_K };
/* Below these batch sizes the VNNI kernels win: the tile path repacks each
 * weight panel per call, a fixed cost per step whatever n. Measured on a
 * 2-core Sapphire Rapids VM with 1B-model matrices: Q4_0/Q8_0 (direct
 * transposed repack) 1.2-1.5x from n = 6; Q4_1/Q5 (row buffer) break even
 * at n = 8; K-quants break even at 16. */
#define AMX_MIN_N_FAST 6
#define AMX_MIN_N 10
#define AMX_MIN_N_K 16

uint8_t *qf_avx512_scratch(size_t bytes);
bool qf_avx512_amx_enable(void);
bool qf_avx512_gemm_amx(int kind, const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const void *xq,
                        size_t xs, int64_t n, float *y, int64_t ldy);
bool qf_avx512_gemm_amx_f16(const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const uint8_t *x,
                            size_t xs, int64_t n, float *y, int64_t ldy);

/* ---- small helpers ---- */

INLINE uint16_t ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

INLINE float h2f(const uint8_t *p) {
    return _cvtsh_ss(ld16(p));
}

INLINE __m256i ldu256(const uint8_t *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

INLINE __m128i ldu128(const uint8_t *p) {
    return _mm_loadu_si128((const __m128i *)p);
}

/* ---- 32-value blocks: decoding a pair ---- */


INLINE int b32_offset(int kind) {
    return kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : kind == K_Q8_0 ? 128 : 0;
}

/* Byte offset of the packed quants in a block. */
INLINE size_t b32_qs(int kind) {
    switch (kind) {
    case K_Q4_0: return 2;
    case K_Q4_1: return 4;
    case K_Q5_0: return 6;
    case K_Q5_1: return 8;
    default: return 2;
    }
}

/* ---- K-quant super-blocks ---- */

enum { KQ_Q4, KQ_Q5, KQ_Q6 };

/* One decoded weight super-block. */
typedef struct kq_row {
    __m512i lv[4];  /* levels of elements 64v .. 64v + 63 */
    __m512i sc[4];  /* int16 scale of each int16 lane of maddubs(lv[v], x) */
    __m256i mins;   /* Q4/Q5: int16 min of sub-block j in lanes 2j, 2j+1 */
    float d, dmin;
} kq_row;

INLINE void kq_decode(const int kind, const uint8_t *blk, kq_row *k) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (kind == KQ_Q6) {
        const qf_block_q6_K *b = (const qf_block_q6_K *)blk;
        k->d = h2f((const uint8_t *)&b->d);
        const __m128i s8 = ldu128((const uint8_t *)b->scales);
        const __m512i s16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(s8));
        UNROLL for (int h = 0; h < 2; h++) {
            const __m512i L = _mm512_loadu_si512(b->ql + 64 * h);
            const __m256i qh = ldu256(b->qh + 32 * h);
            const __m512i Q = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            const __m512i lo = _mm512_and_si512(L, m4), hi = _mm512_and_si512(_mm512_srli_epi16(L, 4), m4);
            const __m512i q0 = _mm512_and_si512(Q, _mm512_set1_epi8(3));
            const __m512i q1 = _mm512_and_si512(_mm512_srli_epi16(Q, 4), _mm512_set1_epi8(3));
            k->lv[2 * h] = _mm512_or_si512(lo, _mm512_slli_epi16(q0, 4));
            k->lv[2 * h + 1] = _mm512_or_si512(hi, _mm512_slli_epi16(q1, 4));
        }
        /* vector v covers sub-blocks 4v .. 4v+3: int16 lane i -> 4v + i/8 */
        UNROLL for (int v = 0; v < 4; v++) {
            const __m512i idx = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * v)),
                                                 _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 3));
            k->sc[v] = _mm512_permutexvar_epi16(idx, s16);
        }
        return;
    }
    const bool five = kind == KQ_Q5;
    k->d = h2f(blk);
    k->dmin = h2f(blk + 2);
    uint8_t sc[8], mn[8];
    qf_k4_scales(blk + 4, sc, mn);
    const __m128i dup = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    k->mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)mn), dup));
    const __m512i s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
    const uint8_t *qs = blk + 16 + (five ? QF_QK_K / 8 : 0);
    __m512i QH = _mm512_setzero_si512();
    if (five) {
        const __m256i qh = ldu256(blk + 16);
        QH = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 1), 1);
    }
    UNROLL for (int c = 0; c < 4; c++) {
        const __m256i v = ldu256(qs + 32 * c);
        const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
        __m512i lv = _mm512_and_si512(z, m4);
        if (five) {
            const __mmask64 hb = _mm512_test_epi8_mask(QH, _mm512_set1_epi8((char)(1 << (2 * c))));
            lv = _mm512_mask_add_epi8(lv, hb, lv, _mm512_set1_epi8(0x10));
        }
        k->lv[c] = lv;
        /* low 256 bits: sub-block 2c, high: 2c + 1 */
        const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)), _mm256_set1_epi16((short)(2 * c + 1)), 1);
        k->sc[c] = _mm512_permutexvar_epi16(idx, s16);
    }
}

/* ---- float rows ---- */

enum { F_F32, F_F16, F_BF16 };

/* 16 weights (m: which lanes exist) */
INLINE __m512 fw16(int kind, const uint8_t *row, int64_t i, __mmask16 m) {
    switch (kind) {
    case F_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
    case F_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * i)), 16));
    default:
        return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    }
}

INLINE __m512 fx16(int kind, const uint8_t *x, int64_t i, __mmask16 m) {
    return kind == F_F16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + 2 * i))
                         : _mm512_maskz_loadu_ps(m, (const float *)x + i);
}

#endif /* QF_QUANT_AVX512_INT_H */
