/* attn_neon.c - the attention block kernel (qf_attn_f16) for aarch64 NEON;
 * compiled with neon.c's flags (cmake/isa.cmake) and filled into the NEON
 * table only after neon.c found the CPU able (fp16 conversions).
 *
 * Same scheme as attn_avx2.c: four key rows at a time against one query
 * row, four FMA chains reduced with pairwise adds; the weights through exp4
 * (Cody-Waite reduction, degree-6 Cephes polynomial, 2^n in the exponent
 * bits, 0 below -87.3). Head sizes that are not a multiple of 4 use the
 * scalar reference.
 */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>

#include "quant/blocks.h"
#include "quant/quant_int.h"

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

static inline float h2f(qf_half h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
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
        acc = vfmaq_n_f32(acc, t, h2f(b->d));
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
                const float dd = h2f(b->d);
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

void qf_kernels_fill_attn_neon(qf_kernel_table *t) {
    t->attn_sm_f16 = attn_sm_f16;
    t->attn_sm_q8_0 = attn_sm_q8_0;
    t->vmad_q8_0 = vmad_q8_0;
}

#endif /* __aarch64__ */
