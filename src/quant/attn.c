/* attn.c - scalar references of the attention block kernels (qf_attn_f16
 * and qf_attn_q8_0 in kernels.h), written for reading; the SIMD versions
 * live beside the other kernels of their ISA and must agree with these up
 * to rounding (avx2.c, neon.c: section "attention blocks").
 *
 * One block: the scores s_r = scale * q . K_r, then per query head the
 * online-softmax step: the new running maximum bm = max(m, max_r s_r); if it
 * grew, the sums so far (l and the output row) are multiplied by
 * exp(m - bm), which is 0 on the first block (m = -inf) and never above 1;
 * the block's weights p_r = exp(s_r - bm) <= 1 are added to l. Keeping every
 * exponent <= 0 is what makes the single pass safe from overflow. The value
 * sum out += p . V is the separate vmad kernel of the cache type.
 *
 * Q8_0 rows are used as d * q per 32-value block, the query staying in
 * float: quantizing q as well (to use integer dots) would add its own
 * rounding to the cache's.
 */
#include <math.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

/* Value j of a cache row of type t (F16 or Q8_0). */
static float elem(qf_type t, const void *row, int64_t j) {
    if (t == QF_TYPE_F16) return qf_fp16_to_fp32(((const uint16_t *)row)[j]);
    const qf_block_q8_0 *b = (const qf_block_q8_0 *)row + j / QF_QK8_0;
    return qf_fp16_to_fp32(b->d) * (float)b->qs[j % QF_QK8_0];
}

static void attn_sm(qf_type t, int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q, int64_t ldq,
                    int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p) {
    for (int64_t g = 0; g < nq; g++) {
        const float *qg = q + g * ldq;
        float *pg = p + g * n, bm = m[g];
        for (int64_t r = 0; r < n; r++) {
            const void *k = (const uint8_t *)K + (size_t)r * k_row_bytes;
            float s = 0.0f;
            for (int64_t j = 0; j < dk; j++)
                s += qg[j] * elem(t, k, j);
            pg[r] = s * scale;
            if (pg[r] > bm) bm = pg[r];
        }
        if (bm > m[g]) {
            const float c = expf(m[g] - bm);
            float *o = out + g * ldo;
            for (int64_t j = 0; j < dv; j++)
                o[j] *= c;
            l[g] *= c;
            m[g] = bm;
        }
        for (int64_t r = 0; r < n; r++) {
            pg[r] = expf(pg[r] - bm);
            l[g] += pg[r];
        }
    }
}

void qf_ref_attn_sm_f16(int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q, int64_t ldq,
                        int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p) {
    attn_sm(QF_TYPE_F16, dk, n, K, k_row_bytes, q, ldq, nq, scale, m, l, out, dv, ldo, p);
}

void qf_ref_attn_sm_q8_0(int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q, int64_t ldq,
                         int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p) {
    attn_sm(QF_TYPE_Q8_0, dk, n, K, k_row_bytes, q, ldq, nq, scale, m, l, out, dv, ldo, p);
}

void qf_ref_vmad_q8_0(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda, int64_t nq,
                      float *out, int64_t ldo) {
    for (int64_t q = 0; q < nq; q++) {
        float *o = out + q * ldo;
        for (int64_t r = 0; r < n; r++) {
            const void *v = (const uint8_t *)V + (size_t)r * v_row_bytes;
            const float w = a[q * lda + r];
            for (int64_t j = 0; j < d; j++)
                o[j] += w * elem(QF_TYPE_Q8_0, v, j);
        }
    }
}
