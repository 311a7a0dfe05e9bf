/* ref.c - scalar reference kernels: conversion, dequantize, dot, quantize.
 *
 * Everything here is written to be read and checked against the format
 * description in blocks.h, not to be fast. Faster ISA kernels are tested
 * against these functions.
 *
 * Dequantization computes each value with exactly the float operations the
 * format defines (products of an fp16 scale and small integers are exact in
 * float, so every value is rounded once), which makes results bit-exact and
 * reproducible across compilers. The build uses -std=c11, under which GCC
 * and clang never fuse a*b+c into an FMA, so the evaluation order written
 * here is the one executed.
 *
 * dot_f32 decodes one block at a time, sums w*x over the block in float and
 * adds the block sums in double, so the error does not grow with the row
 * length.
 *
 * Quantizers implement llama.cpp's reference algorithms (quantize_row_*_ref,
 * no importance matrix) operation for operation, so that our files carry the
 * same bytes as llama-quantize's. Where llama.cpp relies on a float to
 * integer conversion we clamp first, which only changes results for
 * non-finite input (where llama.cpp's behaviour is undefined).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

/* ---- scalar conversions ---- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float qf_fp16_to_fp32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t man = h & 0x3FFu;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in float */
        const float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) /* inf (man == 0) or nan (payload kept) */
        return f32_from_bits(sign | 0x7F800000u | (man << 13));
    return f32_from_bits(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

uint16_t qf_fp32_to_fp16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7FFFFFFFu; /* |f| */
    if (a > 0x7F800000u) {
        /* nan: keep the top payload bits and force quiet so it stays a nan */
        return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
    }
    if (a >= 0x477FF000u) {
        /* >= 65520 (half-way between 65504, the largest half, and 65536):
         * rounds to infinity; inf itself lands here too */
        return (uint16_t)(sign | 0x7C00u);
    }
    if (a >= 0x38800000u) {
        /* normal half (>= 2^-14): rebias the exponent (127 -> 15) and round
         * the 23-bit mantissa to 10 bits, ties to even. A carry out of the
         * mantissa correctly bumps the exponent. */
        const uint32_t r = a - ((uint32_t)(127 - 15) << 23);
        const uint32_t rounded = r + 0xFFFu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (rounded >> 13));
    }
    if (a <= 0x33000000u) {
        /* <= 2^-25, half of the smallest subnormal: rounds (ties to even)
         * to zero */
        return sign;
    }
    /* subnormal half: value = m * 2^(e - 150) with the implicit bit in m;
     * in units of 2^-24 that is m >> (126 - e), rounded to nearest even.
     * A result of 0x400 is the smallest normal, also correct. */
    const uint32_t e = a >> 23;
    const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - e; /* 14..24 */
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

/* bfloat16 is the top half of a float32. */
float qf_bf16_to_fp32(uint16_t h) {
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t qf_fp32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet nan */
    /* round to nearest, ties to even; overflow carries into inf */
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* ---- rounding helpers ---- */

/* Nearest integer, ties to even (what rintf does in the default rounding
 * mode, and what llama.cpp's nearest_int computes for |v| < 2^22). Out of
 * range and nan are clamped instead of being undefined. */
static int round_even(float v) {
    if (!(fabsf(v) <= 4194303.0f)) return v > 0 ? 4194303 : (v < 0 ? -4194303 : 0);
    return (int)rintf(v);
}

/* Truncation toward zero of a value expected in [0, hi]; negatives and nan
 * give 0 and large values hi. */
static int trunc_clamp(float v, int hi) {
    if (!(v > 0)) return 0;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* roundf (ties away from zero) clamped to [-127, 127]; nan gives 0. */
static int round_away_127(float v) {
    if (!(fabsf(v) <= 127.0f)) return v > 0 ? 127 : (v < 0 ? -127 : 0);
    return (int)roundf(v);
}

/* 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block (layout in
 * blocks.h). */
static void k4_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* 6-bit scale j (0..15) of a Q3_K block, still offset by 32. */
static int q3k_scale(const uint8_t *s, int j) {
    const int low = j < 8 ? (s[j] & 0x0F) : (s[j - 8] >> 4);
    const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return low | (high << 4);
}

/* ---- block decoders: one block -> its float values ---- */

typedef void (*block_decoder)(const void *blk, float *out);

static void decode_q4_0(const void *blk, float *out) {
    const qf_block_q4_0 *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    for (int j = 0; j < QF_QK4_0 / 2; j++) {
        out[j] = (float)((b->qs[j] & 0x0F) - 8) * d;
        out[j + QF_QK4_0 / 2] = (float)((b->qs[j] >> 4) - 8) * d;
    }
}

static void decode_q4_1(const void *blk, float *out) {
    const qf_block_q4_1 *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    const float m = qf_fp16_to_fp32(b->m);
    for (int j = 0; j < QF_QK4_1 / 2; j++) {
        out[j] = (float)(b->qs[j] & 0x0F) * d + m;
        out[j + QF_QK4_1 / 2] = (float)(b->qs[j] >> 4) * d + m;
    }
}

/* The 32 fifth bits of Q5_0/Q5_1, element i in bit i. */
static uint32_t q5_high_bits(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | ((uint32_t)qh[1] << 8) | ((uint32_t)qh[2] << 16) |
           ((uint32_t)qh[3] << 24);
}

static void decode_q5_0(const void *blk, float *out) {
    const qf_block_q5_0 *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    const uint32_t qh = q5_high_bits(b->qh);
    for (int j = 0; j < QF_QK5_0 / 2; j++) {
        const int lo = (b->qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
        const int hi = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        out[j] = (float)(lo - 16) * d;
        out[j + QF_QK5_0 / 2] = (float)(hi - 16) * d;
    }
}

static void decode_q5_1(const void *blk, float *out) {
    const qf_block_q5_1 *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    const float m = qf_fp16_to_fp32(b->m);
    const uint32_t qh = q5_high_bits(b->qh);
    for (int j = 0; j < QF_QK5_1 / 2; j++) {
        const int lo = (b->qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
        const int hi = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        out[j] = (float)lo * d + m;
        out[j + QF_QK5_1 / 2] = (float)hi * d + m;
    }
}

static void decode_q8_0(const void *blk, float *out) {
    const qf_block_q8_0 *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    for (int j = 0; j < QF_QK8_0; j++)
        out[j] = (float)b->qs[j] * d;
}

static void decode_q8_1(const void *blk, float *out) {
    const qf_block_q8_1 *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    for (int j = 0; j < QF_QK8_1; j++)
        out[j] = (float)b->qs[j] * d;
}

static void decode_q2_K(const void *blk, float *out) {
    const qf_block_q2_K *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    const float dmin = qf_fp16_to_fp32(b->dmin);
    for (int e = 0; e < QF_QK_K; e++) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        const int q = (b->qs[32 * h + l] >> (2 * k)) & 3;
        const uint8_t sm = b->scales[e / 16];
        const float dl = d * (float)(sm & 0x0F);  /* exact */
        const float ml = dmin * (float)(sm >> 4); /* exact */
        out[e] = dl * (float)q - ml;
    }
}

static void decode_q3_K(const void *blk, float *out) {
    const qf_block_q3_K *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    for (int e = 0; e < QF_QK_K; e++) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        const int low2 = (b->qs[32 * h + l] >> (2 * k)) & 3;
        const int high = (b->hmask[e % 32] >> (e / 32)) & 1;
        const int q = low2 - (high ? 0 : 4);
        const float dl = d * (float)(q3k_scale(b->scales, e / 16) - 32); /* exact */
        out[e] = dl * (float)q;
    }
}

static void decode_q4_K(const void *blk, float *out) {
    const qf_block_q4_K *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    const float dmin = qf_fp16_to_fp32(b->dmin);
    for (int c = 0; c < 4; c++) {
        uint8_t sc_lo, m_lo, sc_hi, m_hi;
        k4_scale_min(b->scales, 2 * c, &sc_lo, &m_lo);
        k4_scale_min(b->scales, 2 * c + 1, &sc_hi, &m_hi);
        const float d_lo = d * (float)sc_lo, min_lo = dmin * (float)m_lo;
        const float d_hi = d * (float)sc_hi, min_hi = dmin * (float)m_hi;
        for (int l = 0; l < 32; l++) {
            const uint8_t byte = b->qs[32 * c + l];
            out[64 * c + l] = d_lo * (float)(byte & 0x0F) - min_lo;
            out[64 * c + 32 + l] = d_hi * (float)(byte >> 4) - min_hi;
        }
    }
}

static void decode_q5_K(const void *blk, float *out) {
    const qf_block_q5_K *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    const float dmin = qf_fp16_to_fp32(b->dmin);
    for (int c = 0; c < 4; c++) {
        uint8_t sc_lo, m_lo, sc_hi, m_hi;
        k4_scale_min(b->scales, 2 * c, &sc_lo, &m_lo);
        k4_scale_min(b->scales, 2 * c + 1, &sc_hi, &m_hi);
        const float d_lo = d * (float)sc_lo, min_lo = dmin * (float)m_lo;
        const float d_hi = d * (float)sc_hi, min_hi = dmin * (float)m_hi;
        for (int l = 0; l < 32; l++) {
            const uint8_t byte = b->qs[32 * c + l];
            const int q_lo = (byte & 0x0F) | (((b->qh[l] >> (2 * c)) & 1) << 4);
            const int q_hi = (byte >> 4) | (((b->qh[l] >> (2 * c + 1)) & 1) << 4);
            out[64 * c + l] = d_lo * (float)q_lo - min_lo;
            out[64 * c + 32 + l] = d_hi * (float)q_hi - min_hi;
        }
    }
}

static void decode_q6_K(const void *blk, float *out) {
    const qf_block_q6_K *b = blk;
    const float d = qf_fp16_to_fp32(b->d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h;
        const uint8_t *qh = b->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            /* the four elements that share ql[l], ql[l + 32] and qh[l] */
            const int q[4] = {
                (ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4),
                (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            };
            for (int k = 0; k < 4; k++) {
                const int e = 128 * h + 32 * k + l;
                const float ds = d * (float)b->scales[e / 16]; /* exact */
                out[e] = ds * (float)(q[k] - 32);
            }
        }
    }
}

static void decode_q8_K(const void *blk, float *out) {
    const qf_block_q8_K *b = blk;
    for (int j = 0; j < QF_QK_K; j++)
        out[j] = b->d * (float)b->qs[j];
}

/* ---- to_float and dot_f32 over whole rows ---- */

static void decode_blocks(const void *src, float *dst, int64_t n, int64_t qk, size_t bsize,
                          block_decoder dec) {
    QF_ASSERT(n >= 0 && n % qk == 0);
    const uint8_t *p = src;
    for (int64_t i = 0; i < n / qk; i++)
        dec(p + (size_t)i * bsize, dst + i * qk);
}

static float dot_blocks(int64_t n, const void *w, const float *x, int64_t qk, size_t bsize,
                        block_decoder dec) {
    QF_ASSERT(n >= 0 && n % qk == 0);
    const uint8_t *p = w;
    float vals[QF_QK_K];
    double total = 0;
    for (int64_t i = 0; i < n / qk; i++) {
        dec(p + (size_t)i * bsize, vals);
        float sum = 0;
        for (int64_t j = 0; j < qk; j++)
            sum += vals[j] * x[i * qk + j];
        total += sum;
    }
    return (float)total;
}

#define QF_REF_ROW_KERNELS(t, qk)                                                                  \
    void qf_ref_to_float_##t(const void *src, float *dst, int64_t n) {                             \
        decode_blocks(src, dst, n, (qk), sizeof(qf_block_##t), decode_##t);                        \
    }                                                                                              \
    float qf_ref_dot_##t(int64_t n, const void *w, const float *x) {                               \
        return dot_blocks(n, w, x, (qk), sizeof(qf_block_##t), decode_##t);                        \
    }

QF_REF_ROW_KERNELS(q4_0, QF_QK4_0)
QF_REF_ROW_KERNELS(q4_1, QF_QK4_1)
QF_REF_ROW_KERNELS(q5_0, QF_QK5_0)
QF_REF_ROW_KERNELS(q5_1, QF_QK5_1)
QF_REF_ROW_KERNELS(q8_0, QF_QK8_0)
QF_REF_ROW_KERNELS(q8_1, QF_QK8_1)
QF_REF_ROW_KERNELS(q2_K, QF_QK_K)
QF_REF_ROW_KERNELS(q3_K, QF_QK_K)
QF_REF_ROW_KERNELS(q4_K, QF_QK_K)
QF_REF_ROW_KERNELS(q5_K, QF_QK_K)
QF_REF_ROW_KERNELS(q6_K, QF_QK_K)
QF_REF_ROW_KERNELS(q8_K, QF_QK_K)
#undef QF_REF_ROW_KERNELS

/* Plain float types: the dot sums chunks of 32 values in float and adds the
 * chunk sums in double, like the block formats; n need not be a multiple. */
#define QF_PLAIN_CHUNK 32

static float load_f32(const void *w, int64_t i) {
    return ((const float *)w)[i];
}

static float load_f16(const void *w, int64_t i) {
    return qf_fp16_to_fp32(((const uint16_t *)w)[i]);
}

static float load_bf16(const void *w, int64_t i) {
    return qf_bf16_to_fp32(((const uint16_t *)w)[i]);
}

static float dot_plain(int64_t n, const void *w, const float *x,
                       float (*load)(const void *, int64_t)) {
    QF_ASSERT(n >= 0);
    double total = 0;
    for (int64_t i0 = 0; i0 < n; i0 += QF_PLAIN_CHUNK) {
        const int64_t end = n - i0 < QF_PLAIN_CHUNK ? n : i0 + QF_PLAIN_CHUNK;
        float sum = 0;
        for (int64_t i = i0; i < end; i++)
            sum += load(w, i) * x[i];
        total += sum;
    }
    return (float)total;
}

void qf_ref_to_float_f32(const void *src, float *dst, int64_t n) {
    QF_ASSERT(n >= 0);
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void qf_ref_to_float_f16(const void *src, float *dst, int64_t n) {
    QF_ASSERT(n >= 0);
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = qf_fp16_to_fp32(h[i]);
}

void qf_ref_to_float_bf16(const void *src, float *dst, int64_t n) {
    QF_ASSERT(n >= 0);
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = qf_bf16_to_fp32(h[i]);
}

float qf_ref_dot_f32(int64_t n, const void *w, const float *x) {
    return dot_plain(n, w, x, load_f32);
}

float qf_ref_dot_f16(int64_t n, const void *w, const float *x) {
    return dot_plain(n, w, x, load_f16);
}

float qf_ref_dot_bf16(int64_t n, const void *w, const float *x) {
    return dot_plain(n, w, x, load_bf16);
}

/* ---- quantizers: plain and 32-value formats ---- */

void qf_ref_from_float_f32(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0);
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void qf_ref_from_float_f16(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0);
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = qf_fp32_to_fp16(src[i]);
}

void qf_ref_from_float_bf16(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0);
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = qf_fp32_to_bf16(src[i]);
}

/* The value of largest magnitude, with its sign (the first one on ties). */
static float signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* Q4_0: d = max / -8 where max is the signed extreme, so that extreme maps
 * to q = 0 exactly and the other side gets the 7 positive steps;
 * q = trunc(x / d + 8.5), at most 15. */
void qf_ref_from_float_q4_0(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK4_0 == 0);
    qf_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QF_QK4_0; i++) {
        const float *x = src + i * QF_QK4_0;
        const float d = signed_absmax(x, QF_QK4_0) / -8;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = qf_fp32_to_fp16(d);
        for (int j = 0; j < QF_QK4_0 / 2; j++) {
            const float v0 = x[j] * id;
            const float v1 = x[j + QF_QK4_0 / 2] * id;
            const int q0 = trunc_clamp(v0 + 8.5f, 15);
            const int q1 = trunc_clamp(v1 + 8.5f, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void block_min_max(const float *x, int n, float *min, float *max) {
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min) *min = x[j];
        if (x[j] > *max) *max = x[j];
    }
}

/* Q4_1: m = min, d = (max - min) / 15, q = trunc((x - min) / d + 0.5). */
void qf_ref_from_float_q4_1(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK4_1 == 0);
    qf_block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QF_QK4_1; i++) {
        const float *x = src + i * QF_QK4_1;
        float min, max;
        block_min_max(x, QF_QK4_1, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = qf_fp32_to_fp16(d);
        y[i].m = qf_fp32_to_fp16(min);
        for (int j = 0; j < QF_QK4_1 / 2; j++) {
            const float v0 = (x[j] - min) * id;
            const float v1 = (x[j + QF_QK4_1 / 2] - min) * id;
            const int q0 = trunc_clamp(v0 + 0.5f, 15);
            const int q1 = trunc_clamp(v1 + 0.5f, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Store 32 five-bit values: low nibbles into qs (element j low, j + 16 high),
 * fifth bits into qh (bit i of a little-endian uint32). */
static void q5_pack(const int q[32], uint8_t qs[16], uint8_t qh[4]) {
    uint32_t bits = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        bits |= (uint32_t)((q[j] >> 4) & 1) << j;
        bits |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(bits >> (8 * k));
}

/* Q5_0: as Q4_0 with 32 levels: d = max / -16, q = trunc(x / d + 16.5). */
void qf_ref_from_float_q5_0(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK5_0 == 0);
    qf_block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QF_QK5_0; i++) {
        const float *x = src + i * QF_QK5_0;
        const float d = signed_absmax(x, QF_QK5_0) / -16;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = qf_fp32_to_fp16(d);
        int q[QF_QK5_0];
        for (int j = 0; j < QF_QK5_0; j++) {
            const float v = x[j] * id;
            q[j] = trunc_clamp(v + 16.5f, 31);
        }
        q5_pack(q, y[i].qs, y[i].qh);
    }
}

/* Q5_1: as Q4_1 with d = (max - min) / 31. */
void qf_ref_from_float_q5_1(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK5_1 == 0);
    qf_block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QF_QK5_1; i++) {
        const float *x = src + i * QF_QK5_1;
        float min, max;
        block_min_max(x, QF_QK5_1, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = qf_fp32_to_fp16(d);
        y[i].m = qf_fp32_to_fp16(min);
        int q[QF_QK5_1];
        for (int j = 0; j < QF_QK5_1; j++) {
            const float v = (x[j] - min) * id;
            q[j] = trunc_clamp(v + 0.5f, 31);
        }
        q5_pack(q, y[i].qs, y[i].qh);
    }
}

static float absmax(const float *x, int n) {
    float amax = 0;
    for (int j = 0; j < n; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    return amax;
}

/* Q8_0: d = amax / 127, q = round(x / d) (ties away from zero). */
void qf_ref_from_float_q8_0(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK8_0 == 0);
    qf_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QF_QK8_0; i++) {
        const float *x = src + i * QF_QK8_0;
        const float d = absmax(x, QF_QK8_0) / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = qf_fp32_to_fp16(d);
        for (int j = 0; j < QF_QK8_0; j++)
            y[i].qs[j] = (int8_t)round_away_127(x[j] * id);
    }
}

/* Q8_1: Q8_0 plus s = d * sum(q), computed in float from the int sum. */
void qf_ref_from_float_q8_1(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK8_1 == 0);
    qf_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QF_QK8_1; i++) {
        const float *x = src + i * QF_QK8_1;
        const float d = absmax(x, QF_QK8_1) / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = qf_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QF_QK8_1; j++) {
            y[i].qs[j] = (int8_t)round_away_127(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = qf_fp32_to_fp16((float)sum * d);
    }
}

/* Q8_K: float scale; q = nearest_even(-127 / max * x), at most 127, where
 * max is the signed extreme (so q spans -127..127 either way); bsums hold
 * the sums of 16 quants. */
void qf_ref_from_float_q8_K(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    qf_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const float *x = src + i * QF_QK_K;
        const float max = signed_absmax(x, QF_QK_K);
        memset(&y[i], 0, sizeof y[i]);
        if (max == 0) continue;
        const float iscale = -127.f / max;
        for (int j = 0; j < QF_QK_K; j++) {
            const int v = round_even(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
        }
        for (int s = 0; s < QF_QK_K / 16; s++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += y[i].qs[16 * s + j];
            y[i].bsums[s] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- scale searches used by the K-quants ----
 * These are llama.cpp's make_qkx2_quants, make_qx_quants (rmse_type 1, no
 * importance weights) and make_q3_quants, with the same float operations in
 * the same order so that the chosen levels and scales match bit for bit. */

#define GROUP_MAX_EPS 1e-15f

/* Asymmetric fit of x[0..n) to x ~ scale * L - min_out, L in 0..nmax, min_out
 * >= 0 (the block minimum is only subtracted when negative). Start from the
 * min/max grid, then try nstep+1 grids with nmax + rmin + rdelta*is levels
 * over the range; for each, solve weighted least squares for scale and min
 * (min clipped to <= 0) and keep the one with the smallest weighted error
 * (absolute error if use_mad, else squared). Returns the scale; L (n values)
 * receives the levels; Laux is scratch of n bytes. */
static float fit_scale_min(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                           float *min_out, uint8_t *Laux, float rmin, float rdelta, int nstep,
                           bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *min_out = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = round_even(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : (l > nmax ? nmax : l));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *min_out = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = round_even(iscale * (x[i] - min));
            l = l < 0 ? 0 : (l > nmax ? nmax : l);
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            const float lf = (float)l;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *min_out = -min;
    return scale;
}

/* Symmetric fit x ~ scale * (L - nmax), L in 0..2*nmax-1, weighting each
 * value by x^2. Tries 19 grids (nmax + 0.1*is levels over the signed
 * extreme) and keeps the least-squares scale with the best sum(w x l)^2 /
 * sum(w l^2). Returns the scale (0 for an all-zero group). */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
    const float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = round_even(iscale * x[i]);
        l = l < -nmax ? -nmax : (l > nmax - 1 ? nmax - 1 : l);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = round_even(iscale * x[i]);
            l = l < -nmax ? -nmax : (l > nmax - 1 ? nmax - 1 : l);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = round_even(iscale * x[i]);
                l = l < -nmax ? -nmax : (l > nmax - 1 ? nmax - 1 : l);
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's symmetric fit: start from the extreme-value grid, then up to 5
 * passes of coordinate descent that move one level at a time when that
 * raises sum(w x l)^2 / sum(w l^2) (w = x^2). L in 0..2*nmax-1 (offset by
 * nmax). Returns the least-squares scale. */
static float fit_q3(int n, int nmax, const float *x, int8_t *L) {
    const float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = round_even(iscale * x[i]);
        l = l < -nmax ? -nmax : (l > nmax - 1 ? nmax - 1 : l);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = round_even(x[i] * sl2 / slx);
                new_l = new_l < -nmax ? -nmax : (new_l > nmax - 1 ? nmax - 1 : new_l);
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Pack 256 two-bit values the Q2_K/Q3_K way: element 128h + 32k + l goes to
 * bits 2k..2k+1 of qs[32h + l]. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++) {
        for (int l = 0; l < 32; l++) {
            const uint8_t *e = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(e[0] | (e[32] << 2) | (e[64] << 4) | (e[96] << 6));
        }
    }
}

/* ---- K-quant quantizers ---- */

/* Q2_K: per 16-value sub-block an asymmetric fit (weights |x|, absolute
 * error, 16 grids from nmax - 0.5 in steps of 0.1), then scales and mins
 * quantized to 4 bits against their maxima (d = max_scale / 15, dmin =
 * max_min / 15), then every value re-quantized with the stored scales. */
void qf_ref_from_float_q2_K(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    qf_block_q2_K *y = dst;
    uint8_t L[QF_QK_K], Laux[16];
    float weights[16], mins[QF_QK_K / 16], scales[QF_QK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const float *x = src + i * QF_QK_K;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QF_QK_K / 16; j++) {
            for (int l = 0; l < 16; l++)
                weights[l] = fabsf(x[16 * j + l]);
            scales[j] = fit_scale_min(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                      0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QF_QK_K / 16; j++)
                y[i].scales[j] = (uint8_t)round_even(iscale * scales[j]);
            y[i].d = qf_fp32_to_fp16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = qf_fp32_to_fp16(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QF_QK_K / 16; j++)
                y[i].scales[j] |= (uint8_t)((unsigned)round_even(iscale * mins[j]) << 4);
            y[i].dmin = qf_fp32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = qf_fp32_to_fp16(0.f);
        }
        /* re-quantize against the scales as stored; a zero scale keeps the
         * levels of the fit (they decode to -min anyway) */
        for (int j = 0; j < QF_QK_K / 16; j++) {
            const float d = qf_fp16_to_fp32(y[i].d) * (float)(y[i].scales[j] & 0x0F);
            if (d == 0) continue;
            const float dm = qf_fp16_to_fp32(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) {
                const int q = round_even((x[16 * j + l] + dm) / d);
                L[16 * j + l] = (uint8_t)(q < 0 ? 0 : (q > 3 ? 3 : q));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

/* Q3_K: per 16-value sub-block a signed fit (fit_q3), then the 16 scales
 * quantized to signed 6 bits against the signed extreme (d = max / -32),
 * then every value re-quantized to -4..3 with the stored scales. */
void qf_ref_from_float_q3_K(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    qf_block_q3_K *y = dst;
    int8_t L[QF_QK_K];
    float scales[QF_QK_K / 16];
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const float *x = src + i * QF_QK_K;
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QF_QK_K / 16; j++) {
            scales[j] = fit_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale != 0) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QF_QK_K / 16; j++) {
                int l = round_even(iscale * scales[j]);
                l = (l < -32 ? -32 : (l > 31 ? 31 : l)) + 32; /* 0..63 */
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0x0F);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0x0F) << 4);
                y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = qf_fp32_to_fp16(1 / iscale);
        } else {
            y[i].d = qf_fp32_to_fp16(0.f);
        }
        for (int j = 0; j < QF_QK_K / 16; j++) {
            const float d = qf_fp16_to_fp32(y[i].d) * (float)(q3k_scale(y[i].scales, j) - 32);
            if (d == 0) continue;
            for (int l = 0; l < 16; l++) {
                int q = round_even(x[16 * j + l] / d);
                q = q < -4 ? -4 : (q > 3 ? 3 : q);
                L[16 * j + l] = (int8_t)(q + 4);
            }
        }
        /* high bit of element e -> hmask[e % 32] bit e / 32; low 2 bits to qs */
        uint8_t low[QF_QK_K];
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int e = 0; e < QF_QK_K; e++) {
            int q = L[e];
            if (q > 3) {
                y[i].hmask[e % 32] |= (uint8_t)(1u << (e / 32));
                q -= 4;
            }
            low[e] = (uint8_t)q;
        }
        pack_2bit(low, y[i].qs);
    }
}

/* Pack 8 six-bit scales and mins into the 12 bytes of Q4_K/Q5_K. */
static void k4_pack_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t s[12]) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4));
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Shared first half of Q4_K and Q5_K: per 32-value sub-block an asymmetric
 * fit with weights rms(sub-block) + |x| and squared error, then scales and
 * mins quantized to 6 bits (d = max_scale / 63, dmin = max_min / 63), then
 * every value re-quantized to 0..nmax with the stored scales. Fills
 * d/dmin/scales and returns the levels in L. */
static void k4_quantize_block(const float *x, int nmax, float rmin, int nstep, qf_half *d_out,
                              qf_half *dmin_out, uint8_t scales_out[12], uint8_t L[QF_QK_K]) {
    uint8_t Laux[32];
    float weights[32], mins[QF_QK_K / 32], scales[QF_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QF_QK_K / 32; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(xs[l]);
        scales[j] = fit_scale_min(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f,
                                  nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < QF_QK_K / 32; j++) {
        /* as llama.cpp: the int goes through uint8_t before the clamp */
        ls[j] = (uint8_t)round_even(inv_scale * scales[j]);
        lm[j] = (uint8_t)round_even(inv_min * mins[j]);
        if (ls[j] > 63) ls[j] = 63;
        if (lm[j] > 63) lm[j] = 63;
    }
    memset(scales_out, 0, 12);
    k4_pack_scales(ls, lm, scales_out);
    *d_out = qf_fp32_to_fp16(max_scale / 63.f);
    *dmin_out = qf_fp32_to_fp16(max_min / 63.f);
    for (int j = 0; j < QF_QK_K / 32; j++) {
        uint8_t sc, m;
        k4_scale_min(scales_out, j, &sc, &m);
        const float d = qf_fp16_to_fp32(*d_out) * (float)sc;
        if (d == 0) continue;
        const float dm = qf_fp16_to_fp32(*dmin_out) * (float)m;
        for (int l = 0; l < 32; l++) {
            const int q = round_even((x[32 * j + l] + dm) / d);
            L[32 * j + l] = (uint8_t)(q < 0 ? 0 : (q > nmax ? nmax : q));
        }
    }
}

/* Q4_K: k4_quantize_block with 16 levels, 21 grids from nmax - 1. */
void qf_ref_from_float_q4_K(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    qf_block_q4_K *y = dst;
    uint8_t L[QF_QK_K];
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        k4_quantize_block(src + i * QF_QK_K, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
        }
    }
}

/* Q5_K: k4_quantize_block with 32 levels, 16 grids from nmax - 0.5. */
void qf_ref_from_float_q5_K(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    qf_block_q5_K *y = dst;
    uint8_t L[QF_QK_K];
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        k4_quantize_block(src + i * QF_QK_K, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
                y[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            }
        }
    }
}

/* Q6_K: per 16-value sub-block a symmetric fit with 64 levels, then the 16
 * scales quantized to int8 against the signed extreme (d = max / -128),
 * then every value re-quantized to -32..31 with the stored scales. An
 * all-zero block is stored as zeros. */
void qf_ref_from_float_q6_K(const float *src, void *dst, int64_t n) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    qf_block_q6_K *y = dst;
    int8_t L[QF_QK_K];
    float scales[QF_QK_K / 16];
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const float *x = src + i * QF_QK_K;
        float max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < QF_QK_K / 16; j++) {
            scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(&y[i], 0, sizeof y[i]);
        if (max_abs_scale < GROUP_MAX_EPS) continue;
        const float iscale = -128.f / max_scale;
        y[i].d = qf_fp32_to_fp16(1 / iscale);
        for (int j = 0; j < QF_QK_K / 16; j++) {
            const int s = round_even(iscale * scales[j]);
            y[i].scales[j] = (int8_t)(s > 127 ? 127 : (s < -128 ? -128 : s));
        }
        for (int j = 0; j < QF_QK_K / 16; j++) {
            const float d = qf_fp16_to_fp32(y[i].d) * (float)y[i].scales[j];
            if (d == 0) continue;
            for (int l = 0; l < 16; l++) {
                int q = round_even(x[16 * j + l] / d);
                q = q < -32 ? -32 : (q > 31 ? 31 : q);
                L[16 * j + l] = (int8_t)(q + 32);
            }
        }
        /* layout in blocks.h: four elements 32 apart share ql/qh bytes */
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = y[i].ql + 64 * h;
            uint8_t *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                const int q0 = L[128 * h + l], q1 = L[128 * h + 32 + l];
                const int q2 = L[128 * h + 64 + l], q3 = L[128 * h + 96 + l];
                ql[l] = (uint8_t)((q0 & 0x0F) | ((q2 & 0x0F) << 4));
                ql[l + 32] = (uint8_t)((q1 & 0x0F) | ((q3 & 0x0F) << 4));
                qh[l] =
                    (uint8_t)((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
            }
        }
    }
}
