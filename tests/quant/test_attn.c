/* test_attn.c - the attention block kernels (qf_attn_f16, qf_attn_q8_0,
 * quant/kernels.h) on every ISA this CPU/build has, against attention
 * computed in double from the same cached keys and values: a full softmax over all positions,
 * no online rescaling. The kernel sees the positions in blocks of several
 * sizes (1, 5, 16, 64: rescaling happens between blocks), head sizes that
 * are and are not multiples of the vector width, 1 to 7 query heads, and
 * scores spread from flat to very peaked (weights that underflow to 0).
 * Separately, the weights of one block are checked against exp() in double
 * to within 2 ulp on [-87, 0], the SIMD exp's whole working range.
 * The SwiGLU entry (qf_swiglu), which uses the same exp, against silu in
 * double, on ordinary and extreme inputs, and split anywhere.
 * Random data is fresh each run; the seed is printed (QF_SEED replays).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qf_test.h"
#include "quant/kernels.h"
#include "quant/quant.h"

static const char *const isas[] = {"scalar", "avx2", "avx512", "neon"};

static double urand(void) { return (double)rand() / RAND_MAX; }

static float grand(void) {
    double u1 = urand(), u2 = urand();
    if (u1 < 1e-12) u1 = 1e-12;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* One case: ctx positions of dk-wide keys / dv-wide values for nq heads in
 * a cache of type t (F16 or Q8_0), fed to the kernel in blocks of bs rows;
 * keys scaled by spread (peakedness of the softmax). The reference uses the
 * cache's values decoded by the type's own to_float. Returns the largest
 * error relative to max |V|. */
static double run_case(qf_type t, int64_t dk, int64_t dv, int64_t ctx, int64_t nq, int64_t bs, float spread) {
    const qf_type_traits *tt = qf_type_get(t);
    size_t krb = qf_type_row_size(t, dk) + 6, vrb = qf_type_row_size(t, dv) + 2; /* padded: strides honoured */
    uint8_t *K = calloc((size_t)ctx, krb), *V = calloc((size_t)ctx, vrb);
    float *Kf = malloc(sizeof(float) * (size_t)(ctx * dk)), *Vf = malloc(sizeof(float) * (size_t)(ctx * dv));
    float *q = malloc(sizeof(float) * (size_t)(nq * dk + 1)), *out = calloc((size_t)(nq * dv + 1), sizeof(float));
    float *m = malloc(sizeof(float) * (size_t)nq), *l = calloc((size_t)nq, sizeof(float));
    float *p = malloc(sizeof(float) * (size_t)(nq * bs));
    double vmax = 0;
    for (int64_t r = 0; r < ctx; r++) {
        for (int64_t j = 0; j < dk; j++) Kf[r * dk + j] = grand() * spread;
        for (int64_t j = 0; j < dv; j++) Vf[r * dv + j] = grand();
        tt->from_float(Kf + r * dk, K + (size_t)r * krb, dk);
        tt->from_float(Vf + r * dv, V + (size_t)r * vrb, dv);
        tt->to_float(K + (size_t)r * krb, Kf + r * dk, dk);
        tt->to_float(V + (size_t)r * vrb, Vf + r * dv, dv);
        for (int64_t j = 0; j < dv; j++)
            if (fabs(Vf[r * dv + j]) > vmax) vmax = fabs(Vf[r * dv + j]);
    }
    for (int64_t i = 0; i < nq * dk; i++) q[i] = grand();
    for (int64_t g = 0; g < nq; g++) m[g] = -INFINITY;
    float scale = 1.0f / sqrtf((float)dk);
    for (int64_t b0 = 0; b0 < ctx; b0 += bs) {
        int64_t n = ctx - b0 < bs ? ctx - b0 : bs;
        (t == QF_TYPE_F16 ? qf_attn_f16 : qf_attn_q8_0)(dk, dv, n, K + (size_t)b0 * krb, krb, V + (size_t)b0 * vrb,
                                                         vrb, q, dk, nq, scale, m, l, out, dv, p);
    }
    double worst = 0;
    double *s = malloc(sizeof(double) * (size_t)ctx);
    for (int64_t g = 0; g < nq; g++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t r = 0; r < ctx; r++) {
            double d = 0;
            for (int64_t j = 0; j < dk; j++) d += (double)q[g * dk + j] * Kf[r * dk + j];
            s[r] = d * scale;
            if (s[r] > mx) mx = s[r];
        }
        for (int64_t r = 0; r < ctx; r++) sum += (s[r] = exp(s[r] - mx));
        for (int64_t j = 0; j < dv; j++) {
            double o = 0;
            for (int64_t r = 0; r < ctx; r++) o += s[r] * Vf[r * dv + j];
            double e = fabs(out[g * dv + j] / l[g] - o / sum) / vmax;
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
    }
    free(s);
    free(K), free(V), free(Kf), free(Vf), free(q), free(out), free(m), free(l), free(p);
    return worst;
}

static void test_against_double(void) {
    static const int64_t dims[][2] = {{64, 64}, {128, 128}, {40, 40}, {8, 24}, {96, 64}, {4, 4}, {32, 96}};
    static const int64_t blocks[] = {1, 5, 16, 64};
    static const float spreads[] = {0.05f, 1.0f, 6.0f};
    int tested = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (qf_kernels_set_isa(isas[i]) != 0) continue;
        tested++;
        for (int ti = 0; ti < 2; ti++) {
            qf_type t = ti ? QF_TYPE_Q8_0 : QF_TYPE_F16;
            for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
                if (t == QF_TYPE_Q8_0 && (dims[d][0] % 32 || dims[d][1] % 32)) continue;
                for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
                    for (size_t sp = 0; sp < sizeof spreads / sizeof spreads[0]; sp++) {
                        int64_t nq = 1 + rand() % 7, ctx = 1 + rand() % 200;
                        double e = run_case(t, dims[d][0], dims[d][1], ctx, nq, blocks[b], spreads[sp]);
                        ASSERT_MSG(e < 2e-5, "%s %s dk %lld dv %lld ctx %lld nq %lld block %lld spread %g: error %g",
                                   isas[i], qf_type_get(t)->name, (long long)dims[d][0], (long long)dims[d][1],
                                   (long long)ctx, (long long)nq, (long long)blocks[b], spreads[sp], e);
                    }
            }
        }
    }
    ASSERT(tested >= 1);
}

/* Scores that rise block after block: every block rescales what came
 * before, and the first blocks' weights end up ~e^-200 (0 in float). The
 * output must be the last row's value. */
static void test_rising_scores(void) {
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (qf_kernels_set_isa(isas[i]) != 0) continue;
        enum { DK = 16, DV = 16, CTX = 40, BS = 8 };
        uint16_t K[CTX][DK], V[CTX][DV];
        float q[DK] = {1.0f}, out[DV] = {0}, m = -INFINITY, l = 0, p[BS];
        for (int r = 0; r < CTX; r++) {
            for (int j = 0; j < DK; j++) K[r][j] = qf_fp32_to_fp16(j == 0 ? 10.0f * r : 0.5f);
            for (int j = 0; j < DV; j++) V[r][j] = qf_fp32_to_fp16((float)(r * DV + j) / 64);
        }
        for (int b0 = 0; b0 < CTX; b0 += BS)
            qf_attn_f16(DK, DV, BS, K[b0], sizeof K[0], V[b0], sizeof V[0], q, DK, 1, 1.0f, &m, &l, out, DV, p);
        ASSERT_NEAR(m, 10.0f * (CTX - 1), 1e-3);
        ASSERT_NEAR(l, 1.0, 1e-4); /* e^0 plus e^-10 and smaller */
        for (int j = 0; j < DV; j++)
            ASSERT_NEAR(out[j] / l, qf_fp16_to_fp32(V[CTX - 1][j]), 1e-3);
    }
}

/* The weights of one block are exp(s - max): with a one-hot query and
 * scale 1 the score is the key's fp16 value exactly, and m = 0 before the
 * block keeps the maximum at 0, so p[r] = exp(k_r) of the kernel's exp. */
static void test_exp_accuracy(void) {
    enum { N = 1024 };
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (qf_kernels_set_isa(isas[i]) != 0) continue;
        static uint16_t K[N][8];
        static float p[N];
        float q[8] = {1.0f}, m = 0.0f, l = 0.0f, out[1] = {0};
        for (int r = 0; r < N; r++) {
            float x = r == 0 ? 0.0f : r == 1 ? -87.0f : (float)(-87.0 * urand());
            K[r][0] = qf_fp32_to_fp16(x);
            for (int j = 1; j < 8; j++) K[r][j] = qf_fp32_to_fp16(grand());
        }
        qf_attn_f16(8, 0, N, K, sizeof K[0], NULL, 0, q, 8, 1, 1.0f, &m, &l, out, 1, p);
        ASSERT(m == 0.0f);
        double sum = 0;
        for (int r = 0; r < N; r++) {
            double want = exp((double)qf_fp16_to_fp32(K[r][0]));
            sum += want;
            ASSERT_MSG(fabs(p[r] - want) <= 2.0 * 0x1p-23 * want, "%s: exp(%g) = %.9g, want %.9g", isas[i],
                       (double)qf_fp16_to_fp32(K[r][0]), p[r], want);
        }
        ASSERT_NEAR(l, sum, 1e-5 * sum);
        /* far below the range: weight 0, no NaN */
        K[0][0] = qf_fp32_to_fp16(-200.0f);
        m = 0.0f, l = 0.0f;
        qf_attn_f16(8, 0, 1, K, sizeof K[0], NULL, 0, q, 8, 1, 1.0f, &m, &l, out, 1, p);
        ASSERT(p[0] >= 0.0f && p[0] < 1e-30f);
    }
}

/* qf_swiglu against x / (1 + e^-x) * u in double: within 4 ulp of the
 * result, plus |x u| e^-87.3 (below x = -87.3 the SIMD exp gives 0: the
 * result is 0 where the exact one is under 1e-36 |u|); inf and
 * NaN as the formula gives them; a row computed in one call or split at
 * any point gives the same bits (the engine splits rows over threads). */
static void test_swiglu(void) {
    enum { N = 1000 };
    static float x[N], u[N], g[N], h[N];
    static const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 20.0f, -20.0f, 87.0f, -87.0f,
                                    88.7f, -88.7f, 100.0f, -100.0f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN};
    const int ns = (int)(sizeof special / sizeof special[0]);
    int tested = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (qf_kernels_set_isa(isas[i]) != 0) continue;
        tested++;
        for (int k = 0; k < N; k++) {
            static const float spread[] = {0.01f, 1.0f, 8.0f, 60.0f};
            x[k] = k < ns ? special[k] : grand() * spread[k % 4];
            u[k] = k % 7 == 0 ? 1.0f : grand();
        }
        memcpy(g, x, sizeof x);
        qf_swiglu(g, u, N);
        for (int k = 0; k < N; k++) {
            double want = (double)x[k] / (1.0 + exp(-(double)x[k])) * (double)u[k];
            if (isnan(want) || isinf(want)) {
                ASSERT_MSG(isnan(want) ? isnan(g[k]) : g[k] == (float)want, "%s: swiglu(%g, %g) = %g, want %g",
                           isas[i], (double)x[k], (double)u[k], (double)g[k], want);
                continue;
            }
            double tol = 4.0 * 0x1p-23 * fabs(want) + fabs((double)x[k] * u[k]) * 1.3e-38;
            ASSERT_MSG(fabs(g[k] - want) <= tol, "%s: swiglu(%.9g, %.9g) = %.9g, want %.9g", isas[i], (double)x[k],
                       (double)u[k], (double)g[k], want);
        }
        for (int rep = 0; rep < 20; rep++) { /* split anywhere: the same bits */
            int a = rand() % N, b = a + rand() % (N - a + 1);
            memcpy(h, x, sizeof x);
            qf_swiglu(h, u, a);
            qf_swiglu(h + a, u + a, b - a);
            qf_swiglu(h + b, u + b, N - b);
            ASSERT_MSG(!memcmp(g + ns, h + ns, sizeof(float) * (N - ns)), "%s: split at %d, %d changes bits", isas[i],
                       a, b);
        }
        qf_swiglu(g, u, 0); /* nothing to do */
    }
    ASSERT(tested >= 1);
}

int main(void) {
    srand(qf_test_seed());
    RUN_TEST(test_swiglu);
    RUN_TEST(test_against_double);
    RUN_TEST(test_rising_scores);
    RUN_TEST(test_exp_accuracy);
    qf_kernels_set_isa("scalar");
    TEST_MAIN_END();
}
