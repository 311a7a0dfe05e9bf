/* test_kernels.c - the fast kernels (quant/kernels.h) against the scalar
 * reference (quant/ref_dot.c), and the reference against plain float math.
 *
 * 1. The reference integer dots are checked against dot products of the
 *    dequantized rows (ref.c's to_float, independent code) in double.
 * 2. Every ISA this CPU/build has (scalar, avx2, avx512, neon) computes
 *    qf_gemm for every weight type on random data - blocks of random bytes
 *    (every level, scale and sign pattern, e.g. Q8_0's -128) as well as
 *    quantized gaussian rows - with odd token counts (1, 3, 7, 17, and 33 to
 *    64 for the batch/AMX paths), row
 *    ranges that are not multiples of the tile, ldy > rows, and cols from
 *    32 to 4096. Tolerance: |fast - ref| <= 1e-5 * mag, where mag is the
 *    sum of the magnitudes of the individual products, scales included,
 *    as the reference reports it (the kernels may only add the same
 *    products in another order). Entries of y
 *    outside the requested rows must stay untouched.
 * 3. The ISA activation quantizers must reproduce the reference bytes
 *    exactly, including rounding ties.
 *
 * Random data is fresh each run; the seed is printed (QF_SEED replays).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qf_test.h"
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

/* ---- random numbers (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_unit(void) {
    return (double)(rng_u64() >> 11) * 0x1p-53;
}

static float rng_gauss(void) {
    double u1 = rng_unit(), u2 = rng_unit();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

/* Gaussian values with a per-32 block scale spread over 1e-3..1e2 and an
 * occasional outlier, like real activations. */
static void fill_floats(float *x, int64_t n) {
    float scale = 1;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0) scale = (float)pow(10.0, -3.0 + 5.0 * rng_unit());
        x[i] = rng_gauss() * scale;
        if (rng_u64() % 97 == 0) x[i] *= 20;
    }
}

/* A random fp16 in +-[2^-14, 2^2) (finite, normal, moderately sized). */
static uint16_t rand_half(void) {
    const int ex = 1 + (int)(rng_u64() % 16); /* biased exponent 1..16 */
    const uint16_t sign = (rng_u64() & 1) ? 0x8000 : 0;
    return (uint16_t)(sign | (ex << 10) | (rng_u64() & 0x3FF));
}

static void put_half(uint8_t *p, uint16_t h) {
    memcpy(p, &h, 2);
}

/* Overwrite the fp16 scale fields of every block (random bytes there could
 * be inf/nan) with random finite halves. */
static void fix_scales(qf_type type, uint8_t *row, int64_t cols) {
    const qf_type_traits *tr = qf_type_get(type);
    const int64_t nb = cols / tr->blck_size;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = row + (size_t)b * tr->type_size;
        switch (type) {
        case QF_TYPE_Q4_0:
        case QF_TYPE_Q5_0:
        case QF_TYPE_Q8_0:
            put_half(blk, rand_half());
            break;
        case QF_TYPE_Q4_1:
        case QF_TYPE_Q5_1:
        case QF_TYPE_Q4_K:
        case QF_TYPE_Q5_K:
            put_half(blk, rand_half());
            put_half(blk + 2, rand_half());
            break;
        case QF_TYPE_Q2_K:
            put_half(blk + offsetof(qf_block_q2_K, d), rand_half());
            put_half(blk + offsetof(qf_block_q2_K, dmin), rand_half());
            break;
        case QF_TYPE_Q3_K:
            put_half(blk + offsetof(qf_block_q3_K, d), rand_half());
            break;
        case QF_TYPE_Q6_K:
            put_half(blk + offsetof(qf_block_q6_K, d), rand_half());
            break;
        default:
            break;
        }
    }
}

/* One weight row: random bytes (quantized types, mode 0) or quantized
 * gaussian data (mode 1; always for the float types). */
static void make_row(qf_type type, uint8_t *row, int64_t cols, int mode, float *tmp) {
    const qf_type_traits *tr = qf_type_get(type);
    if (mode == 0 && tr->quantized) {
        const size_t bytes = qf_type_row_size(type, cols);
        for (size_t i = 0; i < bytes; i++)
            row[i] = (uint8_t)rng_u64();
        fix_scales(type, row, cols);
    } else {
        fill_floats(tmp, cols);
        tr->from_float(tmp, row, cols);
    }
}

static qf_vdot_fn ref_vdot(qf_type w) {
    switch (w) {
    case QF_TYPE_F32: return qf_ref_vdot_f32;
    case QF_TYPE_F16: return qf_ref_vdot_f16;
    case QF_TYPE_BF16: return qf_ref_vdot_bf16;
    case QF_TYPE_Q4_0: return qf_ref_vdot_q4_0;
    case QF_TYPE_Q4_1: return qf_ref_vdot_q4_1;
    case QF_TYPE_Q5_0: return qf_ref_vdot_q5_0;
    case QF_TYPE_Q5_1: return qf_ref_vdot_q5_1;
    case QF_TYPE_Q8_0: return qf_ref_vdot_q8_0;
    case QF_TYPE_Q2_K: return qf_ref_vdot_q2_K;
    case QF_TYPE_Q3_K: return qf_ref_vdot_q3_K;
    case QF_TYPE_Q4_K: return qf_ref_vdot_q4_K;
    case QF_TYPE_Q5_K: return qf_ref_vdot_q5_K;
    case QF_TYPE_Q6_K: return qf_ref_vdot_q6_K;
    default: return NULL;
    }
}

static const qf_type all_types[] = {
    QF_TYPE_F32,  QF_TYPE_F16,  QF_TYPE_BF16, QF_TYPE_Q4_0, QF_TYPE_Q4_1,
    QF_TYPE_Q5_0, QF_TYPE_Q5_1, QF_TYPE_Q8_0, QF_TYPE_Q2_K, QF_TYPE_Q3_K,
    QF_TYPE_Q4_K, QF_TYPE_Q5_K, QF_TYPE_Q6_K,
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

static const char *const isas[] = {"scalar", "avx2", "avx512", "neon"};

/* ---- API basics ---- */

static void test_act_types(void) {
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_Q4_0), QF_TYPE_Q8_0);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_Q5_0), QF_TYPE_Q8_0);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_Q8_0), QF_TYPE_Q8_0);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_Q4_1), QF_TYPE_Q8_1);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_Q5_1), QF_TYPE_Q8_1);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_Q2_K), QF_TYPE_Q8_K);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_Q6_K), QF_TYPE_Q8_K);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_F16), QF_TYPE_F16);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_BF16), QF_TYPE_F32);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_F32), QF_TYPE_F32);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_Q8_K), QF_TYPE_COUNT_MAX);
    ASSERT_EQ_INT(qf_act_type(QF_TYPE_Q8_1), QF_TYPE_COUNT_MAX);
    ASSERT_EQ_INT(qf_act_type((qf_type)99), QF_TYPE_COUNT_MAX);

    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_Q4_0, 64), 2 * sizeof(qf_block_q8_0));
    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_Q5_1, 96), 3 * sizeof(qf_block_q8_1));
    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_Q4_K, 512), 2 * sizeof(qf_block_q8_K));
    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_F16, 7), 14);
    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_BF16, 7), 28);
    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_F32, 0), 0);
    /* bad input: cols not a multiple of the weight's block, negative cols,
     * types without a kernel */
    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_Q4_0, 48), 0);
    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_Q4_K, 32), 0); /* Q8_0-sized, but Q4_K needs 256 */
    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_Q8_0, -32), 0);
    ASSERT_EQ_INT(qf_act_row_size(QF_TYPE_Q8_K, 256), 0);
    ASSERT_EQ_INT(qf_act_row_size((qf_type)63, 256), 0);
}

static void test_isa_switch(void) {
    const char *start = qf_kernels_isa();
    ASSERT(start != NULL);
    int found = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
        found |= strcmp(start, isas[i]) == 0;
    ASSERT(found);
    ASSERT_EQ_INT(qf_kernels_set_isa("bogus"), -1);
    ASSERT_EQ_INT(qf_kernels_set_isa(NULL), -1);
    ASSERT_STR_EQ(qf_kernels_isa(), start);
    ASSERT_EQ_INT(qf_kernels_set_isa("scalar"), 0);
    ASSERT_STR_EQ(qf_kernels_isa(), "scalar");
#if defined(__x86_64__)
    ASSERT_EQ_INT(qf_kernels_set_isa("neon"), -1);
#elif defined(__aarch64__)
    ASSERT_EQ_INT(qf_kernels_set_isa("avx2"), -1);
#endif
    ASSERT_EQ_INT(qf_kernels_set_isa(start), 0);
    fprintf(stderr, "  default isa: %s\n", start);
}

/* QF_ISA is read once, when the tables are built: run this program again
 * with it set and read back the ISA it chose ("--print-isa" mode). */
static int run_with_isa_env(const char *value, char *out, size_t cap) {
    char self[400], cmd[512];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return -1;
    self[len] = 0;
    snprintf(cmd, sizeof cmd, "QF_ISA=%s QF_LOG=error '%s' --print-isa 2>/dev/null", value, self);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    if (!fgets(out, (int)cap, f)) out[0] = 0;
    out[strcspn(out, "\n")] = 0;
    return pclose(f) == 0 ? 0 : -1;
}

static void test_isa_env(void) {
    char got[64];
    if (run_with_isa_env("scalar", got, sizeof got) != 0) {
        fprintf(stderr, "  (cannot re-run this program: QF_ISA not checked)\n");
        return;
    }
    ASSERT_STR_EQ(got, "scalar");
    /* an unknown name or an ISA this CPU lacks falls back to the best one
     * (which need not be ours: this run may itself have QF_ISA set) */
    const char *cur = qf_kernels_isa(), *best = "scalar";
    static const char *const pref[] = {"avx512", "neon", "avx2"};
    for (size_t i = 0; i < sizeof pref / sizeof pref[0]; i++) {
        if (qf_kernels_set_isa(pref[i]) == 0) {
            best = pref[i];
            break;
        }
    }
    ASSERT_EQ_INT(qf_kernels_set_isa(cur), 0);
    ASSERT_EQ_INT(run_with_isa_env("bogus", got, sizeof got), 0);
    ASSERT_STR_EQ(got, best);
#if defined(__x86_64__)
    ASSERT_EQ_INT(run_with_isa_env("neon", got, sizeof got), 0);
    ASSERT_STR_EQ(got, best);
    if (strcmp(best, "avx512") == 0) {
        ASSERT_EQ_INT(run_with_isa_env("avx2", got, sizeof got), 0);
        ASSERT_STR_EQ(got, "avx2");
    }
#endif
}

/* Degenerate shapes: nothing to do, or an empty dot (0). */
static void test_gemm_edges(void) {
    qf_block_q8_0 x[1];
    memset(x, 0, sizeof x);
    float y[4] = {7, 7, 7, 7};
    qf_block_q4_0 w[2];
    memset(w, 0x88, sizeof w);
    qf_gemm(QF_TYPE_Q4_0, w, sizeof w[0], 32, 0, 2, x, 0, y, 2); /* n = 0 */
    qf_gemm(QF_TYPE_Q4_0, w, sizeof w[0], 32, 1, 1, x, 1, y, 2); /* no rows */
    ASSERT(y[0] == 7 && y[1] == 7 && y[2] == 7 && y[3] == 7);
    qf_gemm(QF_TYPE_F32, w, 0, 0, 0, 2, x, 2, y, 2); /* cols = 0 */
    ASSERT(y[0] == 0 && y[1] == 0 && y[2] == 0 && y[3] == 0);
    float xf[1] = {1};
    qf_act_quantize(QF_TYPE_F32, xf, y, 0); /* writes nothing */
    ASSERT(y[0] == 0);
}

/* ---- the reference against dequantized float math ---- */

static void check_ref_one(qf_type w, int64_t cols, int mode) {
    const qf_type a = qf_act_type(w);
    const qf_type_traits *tw = qf_type_get(w), *ta = qf_type_get(a);
    uint8_t *row = malloc(qf_type_row_size(w, cols));
    uint8_t *xq = malloc(qf_act_row_size(w, cols) + 4);
    float *x = malloc(sizeof(float) * (size_t)cols);
    float *wf = malloc(sizeof(float) * (size_t)cols);
    float *xf = malloc(sizeof(float) * (size_t)cols);
    make_row(w, row, cols, mode, x);
    fill_floats(x, cols);
    ta->from_float(x, xq, cols);
    tw->to_float(row, wf, cols);
    ta->to_float(xq, xf, cols);
    double expect = 0, absdot = 0;
    for (int64_t i = 0; i < cols; i++) {
        expect += (double)wf[i] * xf[i];
        absdot += fabs((double)wf[i] * xf[i]);
    }
    /* Q4_1/Q5_1: the min term uses the activation's stored s = fp16(d *
     * sum(q)) instead of the exact sum, as llama.cpp does */
    if (w == QF_TYPE_Q4_1 || w == QF_TYPE_Q5_1) {
        const size_t bs = tw->type_size;
        for (int64_t b = 0; b < cols / 32; b++) {
            uint16_t mh;
            memcpy(&mh, row + (size_t)b * bs + 2, 2);
            const qf_block_q8_1 *ab = (const qf_block_q8_1 *)xq + b;
            double sx = 0;
            for (int j = 0; j < 32; j++)
                sx += xf[32 * b + j];
            const double m = qf_fp16_to_fp32(mh);
            expect += m * (qf_fp16_to_fp32(ab->s) - sx);
            absdot += fabs(m * qf_fp16_to_fp32(ab->s));
        }
    }
    float mag = -1;
    const float got = ref_vdot(w)(cols, row, xq, &mag);
    free(row);
    free(xq);
    free(x);
    free(wf);
    free(xf);
    ASSERT_MSG(mag >= 0, "%s: mag not set", tw->name);
    ASSERT_MSG(fabs(got - expect) <= 1e-5 * (mag + absdot) + 1e-30, "%s cols %lld mode %d: %.9g vs %.9g",
               tw->name, (long long)cols, mode, got, expect);
}

static void test_ref_vs_float(void) {
    for (size_t k = 0; k < N_TYPES; k++) {
        const int64_t blk = qf_type_get(all_types[k])->blck_size;
        const int64_t cols = blk == 256 ? 1024 : (blk == 32 ? 320 : 100);
        for (int mode = 0; mode < 2; mode++) {
            for (int rep = 0; rep < 4; rep++) {
                const int before = qf_test_failures;
                check_ref_one(all_types[k], cols, mode);
                if (qf_test_failures != before) return;
            }
        }
    }
}

/* A known small case: Q4_0 levels 8+1 against Q8_0 ones with d = 1 gives
 * 32 per block, independent of any decoder. */
static void test_ref_known(void) {
    qf_block_q4_0 w[2];
    qf_block_q8_0 x[2];
    for (int b = 0; b < 2; b++) {
        w[b].d = qf_fp32_to_fp16(b == 0 ? 1.0f : 0.5f);
        memset(w[b].qs, 0x99, sizeof w[b].qs); /* every level 9 -> 9 - 8 = 1 */
        x[b].d = qf_fp32_to_fp16(2.0f);
        memset(x[b].qs, 3, sizeof x[b].qs);
    }
    float mag = 0;
    /* block 0: 1 * 2 * 32 * 3 = 192, block 1: 0.5 * 2 * 96 = 96 */
    ASSERT_NEAR(qf_ref_vdot_q4_0(64, w, x, &mag), 288.0, 0);
    ASSERT_NEAR(mag, 288.0, 0);
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (qf_kernels_set_isa(isas[i]) != 0) continue;
        float y = -1;
        qf_gemm(QF_TYPE_Q4_0, w, sizeof w, 64, 0, 1, x, 1, &y, 1);
        ASSERT_NEAR(y, 288.0, 0);
    }
}

/* ---- every ISA against the reference ---- */

typedef struct gemm_case {
    int64_t cols, rows, r0, r1, n;
} gemm_case;

static int check_gemm(qf_type w, const gemm_case *c, int mode, const char *isa) {
    const qf_type_traits *tw = qf_type_get(w);
    /* mode 0 also pads the rows (stride > row size), keeping the alignment
     * GGUF guarantees: 2 bytes, 4 for F32 */
    const size_t pad = mode ? 0 : (w == QF_TYPE_F32 ? 8 : 6);
    const size_t wrb = qf_type_row_size(w, c->cols) + pad;
    const size_t xs = qf_act_row_size(w, c->cols);
    const int64_t ldy = c->rows + 3;
    uint8_t *W = malloc(wrb * (size_t)c->rows);
    void *xq = aligned_alloc(64, (xs * (size_t)c->n + 63) / 64 * 64);
    float *x = malloc(sizeof(float) * (size_t)c->cols);
    float *y = malloc(sizeof(float) * (size_t)(ldy * c->n));
    int fails = 0;
    for (int64_t r = 0; r < c->rows; r++)
        make_row(w, W + (size_t)r * wrb, c->cols, mode, x);
    for (int64_t t = 0; t < c->n; t++) {
        fill_floats(x, c->cols);
        qf_act_quantize(w, x, (uint8_t *)xq + (size_t)t * xs, c->cols);
    }
    for (int64_t i = 0; i < ldy * c->n; i++)
        y[i] = -12345.0f;
    qf_gemm(w, W, wrb, c->cols, c->r0, c->r1, xq, c->n, y, ldy);
    for (int64_t t = 0; t < c->n && fails < 3; t++) {
        for (int64_t r = 0; r < ldy && fails < 3; r++) {
            const float got = y[t * ldy + r];
            if (r < c->r0 || r >= c->r1) {
                if (got != -12345.0f) {
                    fprintf(stderr, "%s %s: y[%lld][%lld] written outside rows [%lld, %lld)\n", isa,
                            tw->name, (long long)t, (long long)r, (long long)c->r0, (long long)c->r1);
                    fails++;
                }
                continue;
            }
            float mag = 0;
            const float want = ref_vdot(w)(c->cols, W + (size_t)r * wrb, (uint8_t *)xq + (size_t)t * xs, &mag);
            if (!(fabsf(got - want) <= 1e-5f * mag)) {
                fprintf(stderr,
                        "%s %s mode %d cols %lld rows [%lld,%lld) n %lld: y[%lld][%lld] = %.9g, ref "
                        "%.9g (mag %.3g)\n",
                        isa, tw->name, mode, (long long)c->cols, (long long)c->r0, (long long)c->r1,
                        (long long)c->n, (long long)t, (long long)r, got, want, mag);
                fails++;
            }
        }
    }
    free(W);
    free(xq);
    free(x);
    free(y);
    return fails;
}

static void test_gemm_all_isas(void) {
    static const gemm_case cases[] = {
        {256, 13, 0, 13, 1}, {256, 13, 2, 11, 3}, {768, 9, 1, 8, 7}, {1024, 6, 5, 6, 17},
        {4096, 10, 0, 10, 1}, {4096, 7, 0, 7, 3}, {512, 5, 3, 3, 2}, {2048, 21, 3, 20, 5},
        /* batches (from n = 6 or 10 the tile/AMX path where there is one,
         * 16-token steps up to 16 left), partial 32-row and 32-token tiles,
         * a full 32-row tile */
        {512, 37, 3, 37, 40}, {256, 20, 1, 19, 33}, {1024, 32, 0, 32, 64}, {768, 70, 5, 69, 35},
        {256, 17, 0, 17, 16}, {512, 33, 1, 33, 21}, {4352, 18, 1, 18, 17}, {512, 20, 0, 20, 10},
        {256, 33, 1, 32, 12}, {768, 40, 0, 40, 15}, {512, 20, 0, 20, 6}, {256, 37, 3, 37, 7},
    };
    static const int64_t small_cols[] = {32, 96, 160, 33, 100};
    int tested = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (qf_kernels_set_isa(isas[i]) != 0) continue;
        tested++;
        fprintf(stderr, "  isa %s\n", isas[i]);
        for (size_t k = 0; k < N_TYPES; k++) {
            const qf_type w = all_types[k];
            const int64_t blk = qf_type_get(w)->blck_size;
            int fails = 0;
            for (int mode = 0; mode < 2; mode++) {
                for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
                    fails += check_gemm(w, &cases[c], mode, isas[i]);
                /* short rows: odd block counts and float tails */
                for (size_t c = 0; c < sizeof small_cols / sizeof small_cols[0]; c++) {
                    if (small_cols[c] % blk != 0) continue;
                    const gemm_case sc = {small_cols[c], 11, 1, 10, 5};
                    const gemm_case sc1 = {small_cols[c], 7, 0, 7, 1};
                    const gemm_case sc2 = {small_cols[c], 19, 2, 19, 20}; /* batch paths */
                    const gemm_case sc3 = {small_cols[c], 40, 0, 40, 13}; /* one 16-token tile step */
                    fails += check_gemm(w, &sc, mode, isas[i]);
                    fails += check_gemm(w, &sc1, mode, isas[i]);
                    fails += check_gemm(w, &sc2, mode, isas[i]);
                    fails += check_gemm(w, &sc3, mode, isas[i]);
                }
            }
            ASSERT_MSG(fails == 0, "%s %s: %d mismatches", isas[i], qf_type_get(w)->name, fails);
        }
    }
    ASSERT(tested >= 1);
    qf_kernels_set_isa(isas[0]);
}

/* ---- activation quantizers: byte-identical to the reference ---- */

static void test_act_quantize_exact(void) {
    static const qf_type weights[] = {QF_TYPE_Q8_0, QF_TYPE_Q4_1, QF_TYPE_Q4_K, QF_TYPE_F16,
                                      QF_TYPE_F32};
    const int64_t cols = 1024;
    float x[1024];
    uint8_t got[1024 * 4 + 64], want[1024 * 4 + 64];
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (qf_kernels_set_isa(isas[i]) != 0) continue;
        for (size_t k = 0; k < sizeof weights / sizeof weights[0]; k++) {
            const qf_type w = weights[k];
            const qf_type a = qf_act_type(w);
            const size_t bytes = qf_act_row_size(w, cols);
            for (int rep = 0; rep < 6; rep++) {
                fill_floats(x, cols);
                if (rep == 1) {
                    /* rounding ties: amax 127 makes 1/d = 1 for Q8_0/Q8_1,
                     * so k + 0.5 lands exactly on a tie */
                    for (int64_t j = 0; j < cols; j++)
                        x[j] = (j % 32 == 0) ? 127.0f : (float)((int)(rng_u64() % 253) - 126) + 0.5f;
                }
                if (rep == 2) {
                    /* Q8_K: +max and -max in one block (the first wins),
                     * ties at nearest-even, an all-zero block */
                    for (int64_t j = 0; j < cols; j++)
                        x[j] = (float)((int)(rng_u64() % 255) - 127) * 0.5f;
                    x[3] = -127.0f;
                    x[9] = 127.0f;
                    for (int64_t j = 256; j < 512; j++)
                        x[j] = 0.0f;
                }
                if (rep == 3) {
                    for (int64_t j = 0; j < cols; j++)
                        x[j] = (j / 32) % 2 ? 0.0f : -0.0f;
                }
                memset(got, 0xAA, sizeof got);
                memset(want, 0x55, sizeof want);
                qf_act_quantize(w, x, got, cols);
                qf_type_get(a)->from_float(x, want, cols);
                ASSERT_MSG(memcmp(got, want, bytes) == 0, "%s act %s rep %d differs from reference",
                           isas[i], qf_type_get(a)->name, rep);
                ASSERT_MSG(got[bytes] == 0xAA, "%s act %s wrote past the row", isas[i],
                           qf_type_get(a)->name);
            }
        }
    }
    qf_kernels_set_isa(isas[0]);
}

/* qf_vmad_f16 on every ISA against a float64 sum computed here: head sizes
 * with and without a 16-value tail, 1..8 weight vectors (groups of 4 plus a
 * remainder), strides wider than the data; the padding must stay as it was. */
static void test_vmad_all_isas(void) {
    static const int64_t ds[] = {16, 64, 128, 80, 8, 5};
    static const int64_t ns[] = {1, 7, 33};
    static const int64_t nqs[] = {1, 3, 4, 5, 8};
    int tested = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (qf_kernels_set_isa(isas[i]) != 0) continue;
        tested++;
        for (size_t a = 0; a < sizeof ds / sizeof *ds; a++)
            for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
                for (size_t c = 0; c < sizeof nqs / sizeof *nqs; c++) {
                    const int64_t d = ds[a], n = ns[b], nq = nqs[c], lda = n + 3, ldo = d + 5;
                    const size_t vrow = (size_t)(d + 7) * 2; /* rows further apart than d values */
                    uint16_t *V = malloc(vrow * (size_t)n);
                    float *w = malloc(sizeof(float) * (size_t)(lda * nq));
                    float *out = malloc(sizeof(float) * (size_t)(ldo * nq));
                    ASSERT(V && w && out);
                    for (size_t k = 0; k < vrow / 2 * (size_t)n; k++)
                        V[k] = qf_fp32_to_fp16(rng_gauss() * 4.0f);
                    for (int64_t k = 0; k < lda * nq; k++)
                        w[k] = (float)rng_unit();
                    for (int64_t k = 0; k < ldo * nq; k++)
                        out[k] = rng_gauss();
                    float *before = malloc(sizeof(float) * (size_t)(ldo * nq));
                    ASSERT(before);
                    memcpy(before, out, sizeof(float) * (size_t)(ldo * nq));
                    qf_vmad_f16(d, n, V, vrow, w, lda, nq, out, ldo);
                    int bad = 0;
                    for (int64_t q = 0; q < nq; q++)
                        for (int64_t j = 0; j < ldo; j++) {
                            const float got = out[q * ldo + j];
                            if (j >= d) {
                                bad += got != before[q * ldo + j];
                                continue;
                            }
                            double want = before[q * ldo + j], mag = fabs(want);
                            for (int64_t r = 0; r < n; r++) {
                                const double t = (double)w[q * lda + r] * qf_fp16_to_fp32(V[(size_t)r * vrow / 2 + j]);
                                want += t;
                                mag += fabs(t);
                            }
                            bad += fabs(got - want) > 1e-5 * mag + 1e-30;
                        }
                    if (bad)
                        fprintf(stderr, "  vmad_f16 isa %s d %lld n %lld nq %lld: %d bad outputs\n", isas[i],
                                (long long)d, (long long)n, (long long)nq, bad);
                    ASSERT_EQ_INT(bad, 0);
                    free(V);
                    free(w);
                    free(out);
                    free(before);
                }
    }
    ASSERT(tested >= 1);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--print-isa") == 0) {
        printf("%s\n", qf_kernels_isa());
        return 0;
    }
    rng_state = qf_test_seed();
    const char *best = qf_kernels_isa();
    char best_copy[16];
    snprintf(best_copy, sizeof best_copy, "%s", best);
    RUN_TEST(test_act_types);
    RUN_TEST(test_isa_switch);
    RUN_TEST(test_isa_env);
    RUN_TEST(test_gemm_edges);
    RUN_TEST(test_ref_known);
    RUN_TEST(test_ref_vs_float);
    RUN_TEST(test_act_quantize_exact);
    RUN_TEST(test_gemm_all_isas);
    RUN_TEST(test_vmad_all_isas);
    qf_kernels_set_isa(best_copy);
    TEST_MAIN_END();
}
