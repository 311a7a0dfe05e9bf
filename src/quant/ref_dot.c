/* ref_dot.c - scalar reference of the quantized dot products and of the
 * "scalar" kernel table.
 *
 * A weight row of type w is multiplied with an activation row that was
 * quantized once per step (Q8_0, Q8_1 or Q8_K; F16 or F32 for the float
 * types), as llama.cpp does. The arithmetic is llama.cpp's (the generic
 * ggml_vec_dot_<w>_<a> functions): inside a block everything is integer
 * (levels times int8 activations, times the integer sub-block scales), and
 * each block contributes one or two float terms such as
 *     (d_w * d_x) * isum            (d_w from fp16, product in float)
 *     - (dmin_w * d_x) * sum_j m_j * bsum_j
 * Those terms are added in double here. The fast kernels add the same
 * products in float in some other order (e.g. scaling partial sums of a
 * block lane by lane before adding them up, as ggml's SIMD code does),
 * which is the only difference allowed between them
 * (tests/quant/test_kernels.c). Each function can also report "mag", the
 * sum of the magnitudes of the individual products, scales included
 * (|d_w * d_x| * sum |q * x| per block, and likewise for the min terms):
 * no summation order can err by more than a few float epsilons of it.
 *
 * Every element is decoded by the layout rules of blocks.h, one at a time,
 * for reading rather than speed.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "base/err.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

/* ---- shared helpers ---- */

/* Accumulates float terms in double together with their magnitudes. */
typedef struct term_sum {
    double sum, mag;
} term_sum;

/* term = scale * isum; iabs = the sum of the magnitudes of the integer
 * products that make up isum. */
static void add_term(term_sum *s, float scale, int isum, int iabs) {
    s->sum += scale * (float)isum;
    s->mag += fabsf(scale) * (float)iabs;
}

static float finish(const term_sum *s, float *mag) {
    if (mag) *mag = (float)s->mag;
    return (float)s->sum;
}

/* Fifth bit of element i (0..31) of a Q5_0/Q5_1 block. */
static int q5_bit(const uint8_t qh[4], int i) {
    return (qh[i / 8] >> (i % 8)) & 1;
}

/* Level of element i (0..31) of a 4-bit 32-value block (0..15). */
static int nibble(const uint8_t qs[16], int i) {
    return i < 16 ? (qs[i] & 0x0F) : (qs[i - 16] >> 4);
}

/* 6-bit scale and min of sub-block j (0..7) of Q4_K/Q5_K (blocks.h). */
static void k4_scale_min(const uint8_t s[12], int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* ---- 32-value blocks against Q8_0 / Q8_1 ----
 * Element j of a block is level(j) * activation q[j]; isum and iabs
 * accumulate the products and their magnitudes. */

#define DOT_ELEM(isum, iabs, p)                                                                    \
    do {                                                                                           \
        const int p_ = (p);                                                                        \
        (isum) += p_;                                                                              \
        (iabs) += p_ < 0 ? -p_ : p_;                                                               \
    } while (0)

float qf_ref_vdot_q4_0(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0 && n % QF_QK4_0 == 0);
    const qf_block_q4_0 *b = w;
    const qf_block_q8_0 *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n / QF_QK4_0; i++) {
        int isum = 0, iabs = 0;
        for (int j = 0; j < QF_QK4_0; j++)
            DOT_ELEM(isum, iabs, (nibble(b[i].qs, j) - 8) * a[i].qs[j]);
        const float d = qf_fp16_to_fp32(b[i].d) * qf_fp16_to_fp32(a[i].d);
        add_term(&s, d, isum, iabs);
    }
    return finish(&s, mag);
}

/* The min m of Q4_1/Q5_1 contributes m * sum(x) = m * s, s stored in the
 * activation block (fp16 of d * sum(q)). */
static void add_min_term(term_sum *s, qf_half m, qf_half sx) {
    const float t = qf_fp16_to_fp32(m) * qf_fp16_to_fp32(sx);
    s->sum += t;
    s->mag += fabsf(t);
}

float qf_ref_vdot_q4_1(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0 && n % QF_QK4_1 == 0);
    const qf_block_q4_1 *b = w;
    const qf_block_q8_1 *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n / QF_QK4_1; i++) {
        int isum = 0, iabs = 0;
        for (int j = 0; j < QF_QK4_1; j++)
            DOT_ELEM(isum, iabs, nibble(b[i].qs, j) * a[i].qs[j]);
        const float d = qf_fp16_to_fp32(b[i].d) * qf_fp16_to_fp32(a[i].d);
        add_term(&s, d, isum, iabs);
        add_min_term(&s, b[i].m, a[i].s);
    }
    return finish(&s, mag);
}

float qf_ref_vdot_q5_0(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0 && n % QF_QK5_0 == 0);
    const qf_block_q5_0 *b = w;
    const qf_block_q8_0 *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n / QF_QK5_0; i++) {
        int isum = 0, iabs = 0;
        for (int j = 0; j < QF_QK5_0; j++) {
            const int q = nibble(b[i].qs, j) | (q5_bit(b[i].qh, j) << 4);
            DOT_ELEM(isum, iabs, (q - 16) * a[i].qs[j]);
        }
        const float d = qf_fp16_to_fp32(b[i].d) * qf_fp16_to_fp32(a[i].d);
        add_term(&s, d, isum, iabs);
    }
    return finish(&s, mag);
}

float qf_ref_vdot_q5_1(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0 && n % QF_QK5_1 == 0);
    const qf_block_q5_1 *b = w;
    const qf_block_q8_1 *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n / QF_QK5_1; i++) {
        int isum = 0, iabs = 0;
        for (int j = 0; j < QF_QK5_1; j++) {
            const int q = nibble(b[i].qs, j) | (q5_bit(b[i].qh, j) << 4);
            DOT_ELEM(isum, iabs, q * a[i].qs[j]);
        }
        const float d = qf_fp16_to_fp32(b[i].d) * qf_fp16_to_fp32(a[i].d);
        add_term(&s, d, isum, iabs);
        add_min_term(&s, b[i].m, a[i].s);
    }
    return finish(&s, mag);
}

float qf_ref_vdot_q8_0(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0 && n % QF_QK8_0 == 0);
    const qf_block_q8_0 *b = w;
    const qf_block_q8_0 *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n / QF_QK8_0; i++) {
        int isum = 0, iabs = 0;
        for (int j = 0; j < QF_QK8_0; j++)
            DOT_ELEM(isum, iabs, b[i].qs[j] * a[i].qs[j]);
        const float d = qf_fp16_to_fp32(b[i].d) * qf_fp16_to_fp32(a[i].d);
        add_term(&s, d, isum, iabs);
    }
    return finish(&s, mag);
}

/* ---- K-quants against Q8_K ----
 * A super-block contributes (d_w * d_x) * sum_j scale_j * sum(level * q)
 * and, for the formats with a min (Q2_K, Q4_K, Q5_K), minus
 * (dmin_w * d_x) * sum_j min_j * bsum_j, where Q8_K's bsums[j] is the sum
 * of activations 16j..16j+15 (so the min never touches the elements). */

float qf_ref_vdot_q2_K(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    const qf_block_q2_K *b = w;
    const qf_block_q8_K *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        int isum = 0, iabs = 0, msum = 0, mabs = 0;
        for (int j = 0; j < QF_QK_K / 16; j++) {
            const int sc = b[i].scales[j] & 0x0F, m = b[i].scales[j] >> 4;
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l;
                const int h = e / 128, k = (e % 128) / 32, c = e % 32;
                const int q = (b[i].qs[32 * h + c] >> (2 * k)) & 3;
                DOT_ELEM(isum, iabs, sc * q * a[i].qs[e]);
            }
            DOT_ELEM(msum, mabs, m * a[i].bsums[j]);
        }
        add_term(&s, qf_fp16_to_fp32(b[i].d) * a[i].d, isum, iabs);
        add_term(&s, -(qf_fp16_to_fp32(b[i].dmin) * a[i].d), msum, mabs);
    }
    return finish(&s, mag);
}

float qf_ref_vdot_q3_K(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    const qf_block_q3_K *b = w;
    const qf_block_q8_K *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const uint8_t *sc = b[i].scales;
        int isum = 0, iabs = 0;
        for (int j = 0; j < QF_QK_K / 16; j++) {
            const int low = j < 8 ? (sc[j] & 0x0F) : (sc[j - 8] >> 4);
            const int scale = (low | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l;
                const int h = e / 128, k = (e % 128) / 32, c = e % 32;
                const int low2 = (b[i].qs[32 * h + c] >> (2 * k)) & 3;
                const int hbit = (b[i].hmask[e % 32] >> (e / 32)) & 1;
                DOT_ELEM(isum, iabs, scale * (low2 - (hbit ? 0 : 4)) * a[i].qs[e]);
            }
        }
        add_term(&s, qf_fp16_to_fp32(b[i].d) * a[i].d, isum, iabs);
    }
    return finish(&s, mag);
}

/* Q4_K and Q5_K (five: Q5_K, whose qh holds the fifth bits). */
static float vdot_k45(int64_t n, const uint8_t *w, size_t bsize, bool five, const void *xq,
                      float *mag) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    const qf_block_q8_K *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const uint8_t *blk = w + (size_t)i * bsize;
        /* both layouts start with d, dmin, scales[12]; Q5_K has qh[32]
         * before qs */
        qf_half d, dmin;
        memcpy(&d, blk, 2);
        memcpy(&dmin, blk + 2, 2);
        const uint8_t *scales = blk + 4;
        const uint8_t *qh = five ? blk + 16 : NULL;
        const uint8_t *qs = blk + 16 + (five ? QF_QK_K / 8 : 0);
        int isum = 0, iabs = 0, msum = 0, mabs = 0;
        for (int j = 0; j < QF_QK_K / 32; j++) {
            int sc, m;
            k4_scale_min(scales, j, &sc, &m);
            const int c = j / 2;
            for (int l = 0; l < 32; l++) {
                const uint8_t byte = qs[32 * c + l];
                int q = (j % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
                if (five) q |= ((qh[l] >> j) & 1) << 4; /* bit 2c or 2c+1 = bit j */
                DOT_ELEM(isum, iabs, sc * q * a[i].qs[32 * j + l]);
            }
            DOT_ELEM(msum, mabs, m * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]));
        }
        add_term(&s, qf_fp16_to_fp32(d) * a[i].d, isum, iabs);
        add_term(&s, -(qf_fp16_to_fp32(dmin) * a[i].d), msum, mabs);
    }
    return finish(&s, mag);
}

float qf_ref_vdot_q4_K(int64_t n, const void *w, const void *xq, float *mag) {
    return vdot_k45(n, w, sizeof(qf_block_q4_K), false, xq, mag);
}

float qf_ref_vdot_q5_K(int64_t n, const void *w, const void *xq, float *mag) {
    return vdot_k45(n, w, sizeof(qf_block_q5_K), true, xq, mag);
}

float qf_ref_vdot_q6_K(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0 && n % QF_QK_K == 0);
    const qf_block_q6_K *b = w;
    const qf_block_q8_K *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        int isum = 0, iabs = 0;
        for (int j = 0; j < QF_QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l;
                const int h = e / 128, k = (e % 128) / 32, c = e % 32;
                const uint8_t ql = b[i].ql[64 * h + 32 * (k % 2) + c];
                const int low4 = k < 2 ? (ql & 0x0F) : (ql >> 4);
                const int high2 = (b[i].qh[32 * h + c] >> (2 * k)) & 3;
                DOT_ELEM(isum, iabs, b[i].scales[j] * ((low4 | (high2 << 4)) - 32) * a[i].qs[e]);
            }
        }
        add_term(&s, qf_fp16_to_fp32(b[i].d) * a[i].d, isum, iabs);
    }
    return finish(&s, mag);
}

/* ---- float types ----
 * F16 weights pair with F16 activations (the product of two halves is exact
 * in float); F32 and BF16 weights with F32 activations. Terms are the
 * individual products. */

static void add_product(term_sum *s, float p) {
    s->sum += p;
    s->mag += fabsf(p);
}

float qf_ref_vdot_f16(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0);
    const uint16_t *b = w, *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n; i++)
        add_product(&s, qf_fp16_to_fp32(b[i]) * qf_fp16_to_fp32(a[i]));
    return finish(&s, mag);
}

float qf_ref_vdot_bf16(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0);
    const uint16_t *b = w;
    const float *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n; i++)
        add_product(&s, qf_bf16_to_fp32(b[i]) * a[i]);
    return finish(&s, mag);
}

float qf_ref_vdot_f32(int64_t n, const void *w, const void *xq, float *mag) {
    QF_ASSERT(n >= 0);
    const float *b = w, *a = xq;
    term_sum s = {0, 0};
    for (int64_t i = 0; i < n; i++)
        add_product(&s, b[i] * a[i]);
    return finish(&s, mag);
}

/* ---- the scalar kernel table ---- */

static void gemm_rows(qf_vdot_fn dot, const void *W, size_t w_row_bytes, int64_t cols, int64_t r0,
                      int64_t r1, const void *xq, size_t xq_stride, int64_t n, float *y,
                      int64_t ldy) {
    for (int64_t t = 0; t < n; t++) {
        const uint8_t *x = (const uint8_t *)xq + (size_t)t * xq_stride;
        for (int64_t r = r0; r < r1; r++)
            y[t * ldy + r] = dot(cols, (const uint8_t *)W + (size_t)r * w_row_bytes, x, NULL);
    }
}

#define QF_SCALAR_GEMM(t)                                                                          \
    static void gemm_##t(const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,          \
                         const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {            \
        gemm_rows(qf_ref_vdot_##t, W, wrb, cols, r0, r1, xq, xs, n, y, ldy);                       \
    }
QF_SCALAR_GEMM(f32)
QF_SCALAR_GEMM(f16)
QF_SCALAR_GEMM(bf16)
QF_SCALAR_GEMM(q4_0)
QF_SCALAR_GEMM(q4_1)
QF_SCALAR_GEMM(q5_0)
QF_SCALAR_GEMM(q5_1)
QF_SCALAR_GEMM(q8_0)
QF_SCALAR_GEMM(q2_K)
QF_SCALAR_GEMM(q3_K)
QF_SCALAR_GEMM(q4_K)
QF_SCALAR_GEMM(q5_K)
QF_SCALAR_GEMM(q6_K)
#undef QF_SCALAR_GEMM

/* The reference value accumulation: one row, one weight vector at a time
 * (also the SIMD kernels' tail for head sizes that are not multiples of
 * their vector width). */
void qf_ref_vmad_f16(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda, int64_t nq,
                     float *out, int64_t ldo) {
    for (int64_t q = 0; q < nq; q++) {
        float *o = out + q * ldo;
        for (int64_t r = 0; r < n; r++) {
            const uint16_t *v = (const uint16_t *)((const uint8_t *)V + (size_t)r * v_row_bytes);
            const float w = a[q * lda + r];
            for (int64_t j = 0; j < d; j++)
                o[j] += w * qf_fp16_to_fp32(v[j]);
        }
    }
}

void qf_ref_swiglu(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void qf_kernels_fill_scalar(qf_kernel_table *t) {
    memset(t, 0, sizeof *t);
    t->name = "scalar";
    t->vmad_f16 = qf_ref_vmad_f16;
    t->attn_sm_f16 = qf_ref_attn_sm_f16;
    t->vmad_q8_0 = qf_ref_vmad_q8_0;
    t->attn_sm_q8_0 = qf_ref_attn_sm_q8_0;
    t->swiglu = qf_ref_swiglu;
    t->gemm[QF_TYPE_F32] = gemm_f32;
    t->gemm[QF_TYPE_F16] = gemm_f16;
    t->gemm[QF_TYPE_BF16] = gemm_bf16;
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
    t->act[QF_TYPE_F32] = qf_ref_from_float_f32;
    t->act[QF_TYPE_F16] = qf_ref_from_float_f16;
    t->act[QF_TYPE_Q8_0] = qf_ref_from_float_q8_0;
    t->act[QF_TYPE_Q8_1] = qf_ref_from_float_q8_1;
    t->act[QF_TYPE_Q8_K] = qf_ref_from_float_q8_K;
}
