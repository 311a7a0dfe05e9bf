/* avx512_attn.c - the attention block kernels (the attn_sm_* and vmad_*
 * entries behind qf_attn_f16 / qf_attn_q8_0, quant/kernels.h) on AVX-512
 * (x86-64; compiled with avx512.c's flags from cmake/isa.cmake, empty
 * elsewhere). The scalar reference is quant/attn.c, the AVX2 version the
 * "attention blocks" section of avx2.c.
 *
 * Decode attention reads each cached key and value row once per step and
 * should be bound by that read; the AVX2 kernels, one query head at a time
 * on 8 lanes, were not (a q8_0 cache, half the bytes of f16, ran no
 * faster). Here every key row is converted to float once, 16 values per
 * register, and used by up to four query heads (the heads that share a kv
 * head under grouped-query attention) before the next row; a Q8_0 row's
 * block scale is folded into the converted values. The value sum keeps up
 * to 4 heads x 64 outputs in registers while the rows stream by. Softmax:
 * exp16, the same range reduction and polynomial as avx2.c's exp8 (within
 * 2 ulp of expf for x <= 0, 0 below -87.3).
 *
 * The SwiGLU entry (qf_swiglu) lives here too: it is exp16 again.
 *
 * F16 key sizes that are not a multiple of 32 and value sizes that are not
 * a multiple of 16 keep the entries this file replaced (AVX2 or its scalar
 * fallback). Results equal the reference up to float summation order.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

#define INLINE static inline __attribute__((always_inline))

/* The entries replaced, for the shapes this file leaves alone. */
static qf_attn_sm_fn prev_sm_f16;
static qf_vmad_fn prev_vmad_f16;

enum { KV_F16, KV_Q8_0 };

INLINE float h2f(const void *p) {
    uint16_t h;
    __builtin_memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

INLINE float hsum16(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

INLINE __m512 exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps((__mmask16)~under, y, _mm512_castsi512_ps(e));
}

/* Values 16c .. 16c + 15 of a cache row as floats, unscaled (Q8_0: the
 * int8 levels; the caller applies the block scale). */
INLINE __m512 row16(const int kind, const uint8_t *row, int64_t c) {
    if (kind == KV_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 32 * c)));
    const qf_block_q8_0 *b = (const qf_block_q8_0 *)row + c / 2;
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + 16 * (c % 2)))));
}

/* The scale of a Q8_0 row's block c / 2 in every lane (1 for F16 rows). */
INLINE __m512 scale16(const int kind, const uint8_t *row, int64_t c) {
    if (kind == KV_F16) return _mm512_set1_ps(1.0f);
    const qf_block_q8_0 *b = (const qf_block_q8_0 *)row + c / 2;
    return _mm512_cvtph_ps(_mm256_set1_epi16((short)b->d));
}

/* The sums of four vectors' lanes: [sum a0, sum a1, sum a2, sum a3]. */
INLINE __m128 hsum4x16(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    /* per 128-bit lane: pairs, then quads, then across the four lanes */
    const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    const __m512 u = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))),
                                   _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))));
    const __m256 v = _mm256_add_ps(_mm512_castps512_ps256(u), _mm512_extractf32x8_ps(u, 1));
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

/* q_h . K_r for M (1..4) heads, unscaled, as one vector per head. */
INLINE void row_scores(const int kind, const int M, const int64_t dk, const uint8_t *row, const float *q, int64_t ldq,
                       __m512 acc[4]) {
    for (int h = 0; h < M; h++) acc[h] = _mm512_setzero_ps();
    for (int64_t c = 0; c < dk / 16; c += 2) { /* a Q8_0 block: two vectors, one scale */
        const __m512 d = scale16(kind, row, c);
        const __m512 k0 = _mm512_mul_ps(row16(kind, row, c), d), k1 = _mm512_mul_ps(row16(kind, row, c + 1), d);
        for (int h = 0; h < M; h++) {
            acc[h] = _mm512_fmadd_ps(k0, _mm512_loadu_ps(q + h * ldq + 16 * c), acc[h]);
            acc[h] = _mm512_fmadd_ps(k1, _mm512_loadu_ps(q + h * ldq + 16 * c + 16), acc[h]);
        }
    }
}

/* s[h * n + r] = scale * q_h . K_r for M (1..4) heads: each key row is
 * converted once for all M heads; four rows' sums are reduced together.
 * dk: a multiple of 32 (a compile-time constant where the caller knows it,
 * so that the row loop unrolls). */
INLINE void scores(const int kind, const int M, const int64_t dk, int64_t n, const uint8_t *K, size_t krb,
                   const float *q, int64_t ldq, float scale, float *s) {
    const __m128 vs = _mm_set1_ps(scale);
    int64_t r = 0;
    for (; r + 4 <= n; r += 4) {
        __m512 a[4][4];
        for (int i = 0; i < 4; i++) row_scores(kind, M, dk, K + (size_t)(r + i) * krb, q, ldq, a[i]);
        for (int h = 0; h < M; h++)
            _mm_storeu_ps(s + h * n + r, _mm_mul_ps(hsum4x16(a[0][h], a[1][h], a[2][h], a[3][h]), vs));
    }
    for (; r < n; r++) {
        __m512 a[4];
        row_scores(kind, M, dk, K + (size_t)r * krb, q, ldq, a);
        for (int h = 0; h < M; h++) s[h * n + r] = _mm512_reduce_add_ps(a[h]) * scale;
    }
}

/* The online-softmax step of one head over its n scores s (turned into
 * the weights exp(s - m) in place). */
INLINE void softmax_step(int64_t n, float *s, float *m, float *l, float *out, int64_t dv) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    int64_t r = 0;
    for (; r + 16 <= n; r += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(s + r));
    if (r < n) vm = _mm512_mask_max_ps(vm, (__mmask16)((1u << (n - r)) - 1), vm, _mm512_maskz_loadu_ps((__mmask16)((1u << (n - r)) - 1), s + r));
    float bm = _mm512_reduce_max_ps(vm);
    if (*m > bm) bm = *m;
    if (bm > *m) {
        const float c = expf(*m - bm); /* 0 on the first block */
        const __m512 vc = _mm512_set1_ps(c);
        int64_t j = 0;
        for (; j + 16 <= dv; j += 16) _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_loadu_ps(out + j), vc));
        for (; j < dv; j++) out[j] *= c;
        *l *= c;
        *m = bm;
    }
    const __m512 vb = _mm512_set1_ps(bm);
    __m512 sum = _mm512_setzero_ps();
    for (r = 0; r + 16 <= n; r += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + r), vb));
        _mm512_storeu_ps(s + r, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (r < n) {
        const __mmask16 k = (__mmask16)((1u << (n - r)) - 1);
        const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + r), vb)));
        _mm512_mask_storeu_ps(s + r, k, e);
        sum = _mm512_add_ps(sum, e);
    }
    *l += _mm512_reduce_add_ps(sum);
}

#define SCORES_M(kind, M, dk, n, K, krb, q, ldq, scale, s)                                                          \
    switch (M) {                                                                                                     \
    case 1: scores(kind, 1, dk, n, K, krb, q, ldq, scale, s); break;                                                \
    case 2: scores(kind, 2, dk, n, K, krb, q, ldq, scale, s); break;                                                \
    case 3: scores(kind, 3, dk, n, K, krb, q, ldq, scale, s); break;                                                \
    default: scores(kind, 4, dk, n, K, krb, q, ldq, scale, s); break;                                               \
    }

INLINE void attn_sm(const int kind, int64_t dk, int64_t n, const void *K, size_t krb, const float *q, int64_t ldq,
                    int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p) {
    for (int64_t g0 = 0; g0 < nq; g0 += 4) {
        const float *qg = q + g0 * ldq;
        float *s = p + g0 * n;
        const int64_t M = nq - g0 < 4 ? nq - g0 : 4;
        /* the common head sizes as constants (unrolled rows) */
        if (dk == 64) {
            SCORES_M(kind, M, 64, n, K, krb, qg, ldq, scale, s);
        } else if (dk == 128) {
            SCORES_M(kind, M, 128, n, K, krb, qg, ldq, scale, s);
        } else {
            SCORES_M(kind, M, dk, n, K, krb, qg, ldq, scale, s);
        }
    }
    for (int64_t g = 0; g < nq; g++) softmax_step(n, p + g * n, m + g, l + g, out + g * ldo, dv);
}

static void attn_sm_f16(int64_t dk, int64_t n, const void *K, size_t krb, const float *q, int64_t ldq, int64_t nq,
                        float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p) {
    if (dk % 32) {
        prev_sm_f16(dk, n, K, krb, q, ldq, nq, scale, m, l, out, dv, ldo, p);
        return;
    }
    attn_sm(KV_F16, dk, n, K, krb, q, ldq, nq, scale, m, l, out, dv, ldo, p);
}

static void attn_sm_q8_0(int64_t dk, int64_t n, const void *K, size_t krb, const float *q, int64_t ldq, int64_t nq,
                         float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p) {
    attn_sm(KV_Q8_0, dk, n, K, krb, q, ldq, nq, scale, m, l, out, dv, ldo, p);
}

/* out[h][j0 + 16c ..] += sum_r a[h][r] * V_r[...] for M (1..4) heads and JC
 * (1..4) vectors of 16 outputs, all in registers while the rows stream by;
 * each row's values are converted once for the M heads. */
INLINE void vmad_cols(const int kind, const int M, const int JC, int64_t j0, int64_t n, const uint8_t *V, size_t vrb,
                      const float *a, int64_t lda, float *out, int64_t ldo) {
    __m512 acc[4][4];
    for (int h = 0; h < M; h++)
        for (int c = 0; c < JC; c++) acc[h][c] = _mm512_loadu_ps(out + h * ldo + j0 + 16 * c);
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *row = V + (size_t)r * vrb;
        __m512 v[4];
        for (int c = 0; c < JC; c++) v[c] = row16(kind, row, j0 / 16 + c);
        if (kind == KV_Q8_0) /* j0 is a multiple of 64: vectors 0-1 share a block, 2-3 the next */
            for (int c = 0; c < JC; c += 2) {
                const __m512 d = scale16(kind, row, j0 / 16 + c);
                v[c] = _mm512_mul_ps(v[c], d);
                if (c + 1 < JC) v[c + 1] = _mm512_mul_ps(v[c + 1], d);
            }
        for (int h = 0; h < M; h++) {
            const __m512 w = _mm512_set1_ps(a[h * lda + r]);
            for (int c = 0; c < JC; c++) acc[h][c] = _mm512_fmadd_ps(v[c], w, acc[h][c]);
        }
    }
    for (int h = 0; h < M; h++)
        for (int c = 0; c < JC; c++) _mm512_storeu_ps(out + h * ldo + j0 + 16 * c, acc[h][c]);
}

#define VMAD_JC(kind, M, jc, j0, n, V, vrb, a, lda, out, ldo)                                                        \
    switch (jc) {                                                                                                    \
    case 1: vmad_cols(kind, M, 1, j0, n, V, vrb, a, lda, out, ldo); break;                                          \
    case 2: vmad_cols(kind, M, 2, j0, n, V, vrb, a, lda, out, ldo); break;                                          \
    case 3: vmad_cols(kind, M, 3, j0, n, V, vrb, a, lda, out, ldo); break;                                          \
    default: vmad_cols(kind, M, 4, j0, n, V, vrb, a, lda, out, ldo); break;                                         \
    }

INLINE void vmad(const int kind, int64_t d, int64_t n, const void *V, size_t vrb, const float *a, int64_t lda,
                 int64_t nq, float *out, int64_t ldo) {
    for (int64_t g0 = 0; g0 < nq; g0 += 4) {
        const int M = nq - g0 < 4 ? (int)(nq - g0) : 4;
        const float *ag = a + g0 * lda;
        float *og = out + g0 * ldo;
        for (int64_t j0 = 0; j0 < d; j0 += 64) {
            const int jc = d - j0 < 64 ? (int)((d - j0) / 16) : 4;
            switch (M) {
            case 1: VMAD_JC(kind, 1, jc, j0, n, V, vrb, ag, lda, og, ldo); break;
            case 2: VMAD_JC(kind, 2, jc, j0, n, V, vrb, ag, lda, og, ldo); break;
            case 3: VMAD_JC(kind, 3, jc, j0, n, V, vrb, ag, lda, og, ldo); break;
            default: VMAD_JC(kind, 4, jc, j0, n, V, vrb, ag, lda, og, ldo); break;
            }
        }
    }
}

static void vmad_f16(int64_t d, int64_t n, const void *V, size_t vrb, const float *a, int64_t lda, int64_t nq,
                     float *out, int64_t ldo) {
    if (d % 16) {
        prev_vmad_f16(d, n, V, vrb, a, lda, nq, out, ldo);
        return;
    }
    vmad(KV_F16, d, n, V, vrb, a, lda, nq, out, ldo);
}

static void vmad_q8_0(int64_t d, int64_t n, const void *V, size_t vrb, const float *a, int64_t lda, int64_t nq,
                      float *out, int64_t ldo) {
    vmad(KV_Q8_0, d, n, V, vrb, a, lda, nq, out, ldo);
}

/* SwiGLU (qf_swiglu) on 16 lanes, the tail masked (the same arithmetic
 * for every element): t = e^-|x| through exp16, so the polynomial stays in
 * its range, then silu(x) = x / (1 + t) for x >= 0 and x t / (1 + t) below
 * (the same value as x / (1 + e^-x); the scalar reference's e^-x would
 * overflow there). */
static void swiglu(float *g, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
        const __m512 t = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
        const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
        const __m512 num = _mm512_mask_mul_ps(x, neg, x, t);
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(_mm512_div_ps(num, _mm512_add_ps(one, t)), uv));
    }
}

void qf_kernels_fill_avx512_attn(qf_kernel_table *t) {
    prev_sm_f16 = t->attn_sm_f16 ? t->attn_sm_f16 : qf_ref_attn_sm_f16;
    prev_vmad_f16 = t->vmad_f16 ? t->vmad_f16 : qf_ref_vmad_f16;
    t->attn_sm_f16 = attn_sm_f16;
    t->attn_sm_q8_0 = attn_sm_q8_0;
    t->vmad_f16 = vmad_f16;
    t->vmad_q8_0 = vmad_q8_0;
    t->swiglu = swiglu;
}

#endif /* __x86_64__ */
