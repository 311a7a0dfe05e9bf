/* attn_avx2.c - the attention block kernel (qf_attn_f16) for AVX2 + FMA +
 * F16C; compiled with avx2.c's flags (cmake/isa.cmake). AVX-512 machines
 * use it too (their table starts as a copy of this one).
 *
 * Scores: four key rows at a time against one query row, four independent
 * FMA chains over dk, reduced together with two rounds of hadd. Softmax:
 * eight weights at a time through exp8, a Cody-Waite range reduction
 * x = n ln2 + r, |r| <= ln2/2, and a degree-6 polynomial for exp(r) (the
 * Cephes expf coefficients), 2^n put straight into the exponent bits;
 * within 2 ulp of expf over the range the kernel uses (x <= 0), and 0 below
 * -87.3 where expf's result would be subnormal. Head sizes that are not a
 * multiple of 8 use the scalar reference.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>

#include "quant/blocks.h"
#include "quant/quant_int.h"

#define INLINE static inline __attribute__((always_inline))

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

INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Rows of an F16 or a Q8_0 cache (the kernels are instantiated per type). */
enum { KV_F16, KV_Q8_0 };

INLINE __m256 load8i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

INLINE float h2f(qf_half h) {
    return _cvtsh_ss(h);
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
        acc = _mm256_fmadd_ps(t, _mm256_set1_ps(h2f(b->d)), acc);
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
        s[r] = hsum8(row_dot(kind, K + (size_t)r * krb, q, dk, _mm256_setzero_ps())) * scale;
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
        l[g] += hsum8(sum) + tail;
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
                const float dd = h2f(b->d);
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

void qf_kernels_fill_attn_avx2(qf_kernel_table *t) {
    t->attn_sm_f16 = attn_sm_f16;
    t->attn_sm_q8_0 = attn_sm_q8_0;
    t->vmad_q8_0 = vmad_q8_0;
}

#endif /* __x86_64__ */
