/* test_quant.c - block formats, conversions and reference kernels.
 *
 * The decoders here are deliberately independent of quant/ref.c: each
 * element is located bit by bit from the layout description (bit position
 * = 8 * byte + bit, LSB first) and evaluated in float64. Products of fp16
 * scales and small integers are exact in float64, so the float64 result
 * rounded once to float must equal the library's to_float exactly.
 *
 * Random data is fresh each run; the seed is printed (QF_SEED replays).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qf_test.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* ---- random numbers (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_unit(void) { /* [0, 1) */
    return (double)(rng_u64() >> 11) * 0x1p-53;
}

static double rng_gauss(void) {
    double u1 = rng_unit(), u2 = rng_unit();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- independent float64 decoders ---- */

/* n bits (n <= 16) starting at bit position pos, LSB first, one bit at a time. */
static unsigned getbits(const uint8_t *p, int pos, int n) {
    unsigned v = 0;
    for (int k = 0; k < n; k++) {
        const int bit = pos + k;
        v |= (unsigned)((p[bit / 8] >> (bit % 8)) & 1) << k;
    }
    return v;
}

static double half_value(unsigned h) {
    const int sign = (h >> 15) & 1, ex = (h >> 10) & 31, man = h & 1023;
    double v;
    if (ex == 0)
        v = ldexp((double)man, -24);
    else if (ex == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexp((double)(1024 + man), ex - 25);
    return sign ? -v : v;
}

static double bf16_value(unsigned h) {
    const int sign = (h >> 15) & 1, ex = (h >> 7) & 255, man = h & 127;
    double v;
    if (ex == 0)
        v = ldexp((double)man, -133);
    else if (ex == 255)
        v = man ? NAN : INFINITY;
    else
        v = ldexp((double)(128 + man), ex - 134);
    return sign ? -v : v;
}

static double half_at(const uint8_t *p, int byte) {
    return half_value(getbits(p, 8 * byte, 16));
}

static int sbyte(unsigned b) { /* two's complement int8 */
    return b >= 128 ? (int)b - 256 : (int)b;
}

/* Value of element e of one block. */
typedef double (*elem_fn)(const uint8_t *blk, int e);

static double el_f32(const uint8_t *b, int e) {
    float f;
    memcpy(&f, b + 4 * e, 4);
    return f;
}
static double el_f16(const uint8_t *b, int e) {
    return half_value(getbits(b, 16 * e, 16));
}
static double el_bf16(const uint8_t *b, int e) {
    return bf16_value(getbits(b, 16 * e, 16));
}

/* 32-value formats: element e's nibble is in byte (qs + e % 16), low nibble
 * for e < 16; the fifth bit is bit e of qh. */
static double el_q4_0(const uint8_t *b, int e) {
    const int q = (int)getbits(b, 8 * (2 + e % 16) + 4 * (e / 16), 4);
    return half_at(b, 0) * (q - 8);
}
static double el_q4_1(const uint8_t *b, int e) {
    const int q = (int)getbits(b, 8 * (4 + e % 16) + 4 * (e / 16), 4);
    return half_at(b, 0) * q + half_at(b, 2);
}
static double el_q5_0(const uint8_t *b, int e) {
    const int q =
        (int)(getbits(b, 8 * (6 + e % 16) + 4 * (e / 16), 4) | getbits(b, 16 + e, 1) << 4);
    return half_at(b, 0) * (q - 16);
}
static double el_q5_1(const uint8_t *b, int e) {
    const int q =
        (int)(getbits(b, 8 * (8 + e % 16) + 4 * (e / 16), 4) | getbits(b, 32 + e, 1) << 4);
    return half_at(b, 0) * q + half_at(b, 2);
}
static double el_q8_0(const uint8_t *b, int e) {
    return half_at(b, 0) * sbyte(getbits(b, 8 * (2 + e), 8));
}
static double el_q8_1(const uint8_t *b, int e) {
    return half_at(b, 0) * sbyte(getbits(b, 8 * (4 + e), 8));
}

/* Q2_K: scales @0 (16), qs @16 (64), d @80, dmin @82. */
static double el_q2_K(const uint8_t *b, int e) {
    const int q = (int)getbits(b, 8 * (16 + 32 * (e / 128) + e % 32) + 2 * ((e % 128) / 32), 2);
    const int sc = (int)getbits(b, 8 * (e / 16), 4), mn = (int)getbits(b, 8 * (e / 16) + 4, 4);
    return half_at(b, 80) * sc * q - half_at(b, 82) * mn;
}

/* Q3_K: hmask @0 (32), qs @32 (64), scales @96 (12), d @108. */
static double el_q3_K(const uint8_t *b, int e) {
    const int low = (int)getbits(b, 8 * (32 + 32 * (e / 128) + e % 32) + 2 * ((e % 128) / 32), 2);
    const int high = (int)getbits(b, 8 * (e % 32) + e / 32, 1);
    const int j = e / 16;
    const int s = (int)(getbits(b, 8 * (96 + j % 8) + 4 * (j / 8), 4) |
                        getbits(b, 8 * (96 + 8 + j % 4) + 2 * (j / 4), 2) << 4);
    return half_at(b, 108) * (s - 32) * (low + 4 * high - 4);
}

/* 6-bit scale (which = 0) or min (which = 1) of sub-block j, scales @4. */
static int k4_field(const uint8_t *b, int j, int which) {
    if (j < 4) return (int)getbits(b, 8 * (4 + j + 4 * which), 6);
    return (int)(getbits(b, 8 * (4 + j + 4) + 4 * which, 4) |
                 getbits(b, 8 * (4 + j - 4 + 4 * which) + 6, 2) << 4);
}

/* Q4_K: d @0, dmin @2, scales @4 (12), qs @16 (128). Sub-block = e / 32. */
static double el_q4_K(const uint8_t *b, int e) {
    const int q = (int)getbits(b, 8 * (16 + 32 * (e / 64) + e % 32) + 4 * ((e % 64) / 32), 4);
    return half_at(b, 0) * k4_field(b, e / 32, 0) * q - half_at(b, 2) * k4_field(b, e / 32, 1);
}

/* Q5_K: as Q4_K with qh @16 (32) and qs @48; fifth bit = bit e/32 of qh[e%32]. */
static double el_q5_K(const uint8_t *b, int e) {
    const int q = (int)(getbits(b, 8 * (48 + 32 * (e / 64) + e % 32) + 4 * ((e % 64) / 32), 4) |
                        getbits(b, 8 * (16 + e % 32) + e / 32, 1) << 4);
    return half_at(b, 0) * k4_field(b, e / 32, 0) * q - half_at(b, 2) * k4_field(b, e / 32, 1);
}

/* Q6_K: ql @0 (128), qh @128 (64), scales @192 (16 x int8), d @208. */
static double el_q6_K(const uint8_t *b, int e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const int low = (int)getbits(b, 8 * (64 * h + 32 * (k & 1) + l) + 4 * (k >> 1), 4);
    const int high = (int)getbits(b, 8 * (128 + 32 * h + l) + 2 * k, 2);
    const int sc = sbyte(getbits(b, 8 * (192 + e / 16), 8));
    return half_at(b, 208) * sc * (low + 16 * high - 32);
}

/* Q8_K: float d @0, qs @4 (256 x int8), bsums @260. */
static double el_q8_K(const uint8_t *b, int e) {
    float d;
    memcpy(&d, b, 4);
    return (double)d * sbyte(getbits(b, 8 * (4 + e), 8));
}

/* ---- the type table of this test (sizes from the format spec) ---- */

typedef struct tcase {
    qf_type id;
    const char *name;
    int blck;
    size_t bytes;
    elem_fn el;
    int half_off[2]; /* byte offsets of fp16 scales to make valid, -1 unused */
    double rmse_max; /* round-trip RMSE bound relative to the data's RMS */
} tcase;

static const tcase cases[] = {
    {QF_TYPE_F32, "f32", 1, 4, el_f32, {-1, -1}, 0.0},
    {QF_TYPE_F16, "f16", 1, 2, el_f16, {-1, -1}, 4e-4},
    {QF_TYPE_BF16, "bf16", 1, 2, el_bf16, {-1, -1}, 3e-3},
    {QF_TYPE_Q4_0, "q4_0", 32, 18, el_q4_0, {0, -1}, 0.12},
    {QF_TYPE_Q4_1, "q4_1", 32, 20, el_q4_1, {0, 2}, 0.10},
    {QF_TYPE_Q5_0, "q5_0", 32, 22, el_q5_0, {0, -1}, 0.06},
    {QF_TYPE_Q5_1, "q5_1", 32, 24, el_q5_1, {0, 2}, 0.05},
    {QF_TYPE_Q8_0, "q8_0", 32, 34, el_q8_0, {0, -1}, 0.0065},
    {QF_TYPE_Q8_1, "q8_1", 32, 36, el_q8_1, {0, 2}, 0.0065},
    {QF_TYPE_Q2_K, "q2_k", 256, 84, el_q2_K, {80, 82}, 0.40},
    {QF_TYPE_Q3_K, "q3_k", 256, 110, el_q3_K, {108, -1}, 0.20},
    {QF_TYPE_Q4_K, "q4_k", 256, 144, el_q4_K, {0, 2}, 0.10},
    {QF_TYPE_Q5_K, "q5_k", 256, 176, el_q5_K, {0, 2}, 0.05},
    {QF_TYPE_Q6_K, "q6_k", 256, 210, el_q6_K, {208, -1}, 0.025},
    {QF_TYPE_Q8_K, "q8_k", 256, 292, el_q8_K, {-1, -1}, 0.009},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* A finite fp16 of moderate magnitude (2^-10 .. 2^3), random sign, or 0. */
static uint16_t random_scale_half(void) {
    if (rng_u64() % 64 == 0) return 0;
    const unsigned ex = 5 + (unsigned)(rng_u64() % 13); /* biased 5..17 */
    return (uint16_t)((rng_u64() & 1) << 15 | ex << 10 | (rng_u64() & 1023));
}

/* n values of random encoded data of type c (n a multiple of the block). */
static uint8_t *random_encoded(const tcase *c, int64_t n) {
    const size_t size = (size_t)(n / c->blck) * c->bytes;
    uint8_t *p = malloc(size);
    for (size_t i = 0; i < size; i++)
        p[i] = (uint8_t)rng_u64();
    if (c->id == QF_TYPE_F32) {
        for (int64_t i = 0; i < n; i++) {
            const float f = (float)(rng_gauss() * 10);
            memcpy(p + 4 * i, &f, 4);
        }
    } else if (c->id == QF_TYPE_F16 || c->id == QF_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            /* any finite f16 (subnormals included); bf16 within 2^+-24 so
             * that dot products cannot overflow */
            uint16_t h;
            if (c->id == QF_TYPE_F16) {
                do
                    h = (uint16_t)rng_u64();
                while ((h & 0x7C00) == 0x7C00);
            } else {
                h = (uint16_t)((rng_u64() & 0x807F) | (103 + rng_u64() % 48) << 7);
            }
            memcpy(p + 2 * i, &h, 2);
        }
    } else {
        for (int64_t b = 0; b < n / c->blck; b++) {
            uint8_t *blk = p + (size_t)b * c->bytes;
            for (int k = 0; k < 2; k++) {
                if (c->half_off[k] < 0) continue;
                const uint16_t h = random_scale_half();
                blk[c->half_off[k]] = (uint8_t)h;
                blk[c->half_off[k] + 1] = (uint8_t)(h >> 8);
            }
            if (c->id == QF_TYPE_Q8_K) {
                const float d = (float)(rng_gauss() * 0.01);
                memcpy(blk, &d, 4);
            }
        }
    }
    return p;
}

static double decode64(const tcase *c, const uint8_t *p, int64_t i) {
    const int64_t b = i / c->blck;
    return c->el(p + (size_t)b * c->bytes, (int)(i % c->blck));
}

/* ---- tests ---- */

static void test_traits_table(void) {
    for (size_t k = 0; k < N_CASES; k++) {
        const tcase *c = &cases[k];
        const qf_type_traits *t = qf_type_get(c->id);
        ASSERT_MSG(t != NULL, "%s missing", c->name);
        ASSERT_STR_EQ(t->name, c->name);
        ASSERT_EQ_INT(t->blck_size, c->blck);
        ASSERT_EQ_INT(t->type_size, c->bytes);
        ASSERT_EQ_INT(t->quantized, c->blck > 1);
        ASSERT(t->to_float && t->dot_f32 && t->from_float);
    }
    /* struct sizes agree with the spec too */
    ASSERT_EQ_INT(sizeof(qf_block_q4_K), 144);
    ASSERT_EQ_INT(sizeof(qf_block_q6_K), 210);
    ASSERT_EQ_INT(sizeof(qf_block_q8_K), 292);
    /* ids that are not (or no longer) types */
    const uint32_t bad[] = {4, 5, 16, 29, 31, 63, 64, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT(qf_type_get(bad[i]) == NULL);
}

static void test_names(void) {
    for (size_t k = 0; k < N_CASES; k++) {
        const tcase *c = &cases[k];
        char upper[16];
        qf_type got = QF_TYPE_COUNT_MAX;
        ASSERT(qf_type_from_name(c->name, &got));
        ASSERT_EQ_INT(got, c->id);
        for (size_t i = 0; i <= strlen(c->name); i++)
            upper[i] =
                (char)(c->name[i] >= 'a' && c->name[i] <= 'z' ? c->name[i] - 32 : c->name[i]);
        got = QF_TYPE_COUNT_MAX;
        ASSERT(qf_type_from_name(upper, &got));
        ASSERT_EQ_INT(got, c->id);
    }
    qf_type got = QF_TYPE_COUNT_MAX;
    ASSERT(qf_type_from_name("Q4_k", &got) && got == QF_TYPE_Q4_K);
    const char *bad[] = {"", "q4_2", "q4_0 ", " q4_0", "f64", "q4", "q4_0x", "i8", "q4_k_m"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        got = QF_TYPE_COUNT_MAX;
        ASSERT_MSG(!qf_type_from_name(bad[i], &got), "accepted '%s'", bad[i]);
        ASSERT_EQ_INT(got, QF_TYPE_COUNT_MAX); /* out untouched */
    }
    ASSERT(!qf_type_from_name(NULL, &got));

    /* the list names exactly the supported types */
    char list[512];
    snprintf(list, sizeof list, "%s", qf_type_supported_list());
    int n_listed = 0;
    for (char *tok = strtok(list, ", "); tok; tok = strtok(NULL, ", ")) {
        ASSERT_MSG(qf_type_from_name(tok, &got), "listed '%s' does not parse", tok);
        ASSERT_STR_EQ(qf_type_get(got)->name, tok);
        n_listed++;
    }
    int n_supported = 0;
    for (uint32_t id = 0; id < QF_TYPE_COUNT_MAX; id++)
        n_supported += qf_type_get(id) != NULL;
    ASSERT_EQ_INT(n_listed, n_supported);
    ASSERT_EQ_INT(n_supported, N_CASES);
}

static void test_row_size(void) {
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_F32, 3), 12);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_F16, 4096), 8192);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_BF16, 7), 14);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_Q4_0, 4096), 128 * 18);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_Q8_0, 64), 68);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_Q5_1, 32), 24);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_Q4_K, 4096), 16 * 144);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_Q6_K, 256), 210);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_Q2_K, 512), 168);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_Q8_0, 0), 0);
    /* invalid: not a multiple, negative, unknown type, overflow */
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_Q8_0, 33), 0);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_Q4_K, 4000), 0);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_F32, -4), 0);
    ASSERT_EQ_INT(qf_type_row_size(4, 32), 0);
    ASSERT_EQ_INT(qf_type_row_size(999, 32), 0);
    ASSERT_EQ_INT(qf_type_row_size(QF_TYPE_F32, INT64_MAX), 0);
}

/* to_float against the bit-by-bit float64 decoder: exact. */
static void test_to_float_exact(void) {
    for (size_t k = 0; k < N_CASES; k++) {
        const tcase *c = &cases[k];
        const qf_type_traits *t = qf_type_get(c->id);
        for (int rep = 0; rep < 20; rep++) {
            const int64_t n =
                (int64_t)c->blck * (1 + (int64_t)(rng_u64() % 8)) * (c->blck == 1 ? 37 : 1);
            uint8_t *enc = random_encoded(c, n);
            float *out = malloc((size_t)n * sizeof(float));
            t->to_float(enc, out, n);
            for (int64_t i = 0; i < n; i++) {
                const float want = (float)decode64(c, enc, i);
                uint32_t a, b;
                memcpy(&a, &out[i], 4);
                memcpy(&b, &want, 4);
                if (a != b) {
                    fprintf(stderr, "%s: element %lld: got %.9g want %.9g\n", c->name, (long long)i,
                            out[i], want);
                    free(enc);
                    free(out);
                    ASSERT(a == b);
                }
            }
            free(enc);
            free(out);
        }
    }
}

/* dot_f32 against a float64 sum over the float64-decoded weights.
 * Tolerance: 1e-5 * sum|w*x| + 1e-6 (float partial sums of <= 256 terms). */
static void test_dot(void) {
    for (size_t k = 0; k < N_CASES; k++) {
        const tcase *c = &cases[k];
        const qf_type_traits *t = qf_type_get(c->id);
        for (int rep = 0; rep < 20; rep++) {
            int64_t n = (int64_t)c->blck * (1 + (int64_t)(rng_u64() % 6));
            if (c->blck == 1) n = 1 + (int64_t)(rng_u64() % 300); /* any length */
            uint8_t *enc = random_encoded(c, n);
            float *x = malloc((size_t)n * sizeof(float));
            for (int64_t i = 0; i < n; i++)
                x[i] = (float)(2 * rng_unit() - 1);
            double want = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) {
                const double w = decode64(c, enc, i);
                want += w * x[i];
                mag += fabs(w * x[i]);
            }
            const float got = t->dot_f32(n, enc, x);
            free(enc);
            free(x);
            ASSERT_MSG(fabs(got - want) <= 1e-5 * mag + 1e-6, "%s n=%lld: %.9g vs %.9g (mag %g)",
                       c->name, (long long)n, got, want, mag);
        }
        static const float xz[1] = {1};
        static const uint32_t wz[1] = {0};
        ASSERT_EQ_INT(t->dot_f32(0, wz, xz), 0); /* empty row */
    }
}

/* Encode then decode n values; returns RMS of the error. */
static double round_trip(const tcase *c, const float *x, int64_t n, float *y) {
    const qf_type_traits *t = qf_type_get(c->id);
    void *enc = malloc(qf_type_row_size(c->id, n));
    t->from_float(x, enc, n);
    t->to_float(enc, y, n);
    free(enc);
    double se = 0;
    for (int64_t i = 0; i < n; i++)
        se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
    return sqrt(se / (double)n);
}

static void test_round_trip_gauss(void) {
    const int64_t n = 256 * 64;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    for (size_t k = 0; k < N_CASES; k++) {
        const tcase *c = &cases[k];
        const double sigma = 0.02 + rng_unit(); /* scale shouldn't matter */
        double ss = 0;
        for (int64_t i = 0; i < n; i++) {
            x[i] = (float)(sigma * rng_gauss());
            ss += (double)x[i] * x[i];
        }
        const double rms = sqrt(ss / (double)n);
        const double rel = round_trip(c, x, n, y) / rms;
        fprintf(stderr, "  round trip %-5s relative rmse %.5f (bound %.4f)\n", c->name, rel,
                c->rmse_max);
        if (!(rel <= c->rmse_max)) {
            free(x);
            free(y);
        }
        ASSERT_MSG(rel <= c->rmse_max, "%s: relative rmse %g", c->name, rel);
    }
    free(x);
    free(y);
}

static void test_round_trip_edges(void) {
    enum { N = 512 };
    float x[N], y[N];
    for (size_t k = 0; k < N_CASES; k++) {
        const tcase *c = &cases[k];
        /* all zeros -> exact zeros */
        memset(x, 0, sizeof x);
        round_trip(c, x, N, y);
        for (int i = 0; i < N; i++)
            ASSERT_MSG(y[i] == 0, "%s zero row: y[%d] = %g", c->name, i, y[i]);

        /* constant rows, both signs: every value comes back close */
        const float consts[] = {0.7f, -3.25f, 20.0f};
        for (size_t ci = 0; ci < 3; ci++) {
            for (int i = 0; i < N; i++)
                x[i] = consts[ci];
            round_trip(c, x, N, y);
            for (int i = 0; i < N; i++)
                ASSERT_MSG(fabsf(y[i] - x[i]) <= 2e-3f * fabsf(x[i]), "%s const %g: y[%d] = %.9g",
                           c->name, consts[ci], i, y[i]);
        }

        /* negative-only data: still within the type's bound */
        double ss = 0;
        for (int i = 0; i < N; i++) {
            x[i] = (float)(-4.0 - fabs(rng_gauss()));
            ss += (double)x[i] * x[i];
        }
        const double rel = round_trip(c, x, N, y) / sqrt(ss / N);
        ASSERT_MSG(rel <= c->rmse_max, "%s negative data: relative rmse %g", c->name, rel);
        for (int i = 0; i < N; i++)
            ASSERT_MSG(y[i] < 0, "%s negative data: y[%d]=%g", c->name, i, y[i]);

        /* one huge value per 256: it survives, the rest stay finite and small */
        for (int i = 0; i < N; i++)
            x[i] = (float)(0.1 * rng_gauss());
        x[77] = 1000.0f;
        x[256 + 200] = -1000.0f;
        round_trip(c, x, N, y);
        ASSERT_MSG(fabsf(y[77] - 1000.0f) <= 1000.0f * 2 * c->rmse_max + 1, "%s: huge -> %g",
                   c->name, y[77]);
        ASSERT_MSG(fabsf(y[456] + 1000.0f) <= 1000.0f * 2 * c->rmse_max + 1, "%s: -huge -> %g",
                   c->name, y[456]);
        for (int i = 0; i < N; i++) {
            ASSERT(isfinite(y[i]));
            if (i != 77 && i != 456)
                ASSERT_MSG(fabsf(y[i]) < 200.0f, "%s: y[%d] = %g next to a huge value", c->name, i,
                           y[i]);
        }
    }
}

/* Non-finite input must not crash (output unspecified). */
static void test_nonfinite_input(void) {
    enum { N = 512 };
    float x[N], y[N];
    for (size_t k = 0; k < N_CASES; k++) {
        const tcase *c = &cases[k];
        for (int i = 0; i < N; i++)
            x[i] = (float)rng_gauss();
        x[3] = NAN;
        x[300] = INFINITY;
        x[301] = -INFINITY;
        x[400] = FLT_MAX;
        round_trip(c, x, N, y);
        /* blocks without special values are unaffected when blocks are small */
        if (c->blck == 32) ASSERT(fabsf(y[100] - x[100]) < 0.5f);
    }
}

/* Our own encoders for Q8_0 and Q4_0 written from llama.cpp's description,
 * to pin the quantizer rules (rounding, scale sign, clamping) byte for byte. */
static uint16_t half_rne_ref(double v); /* below */

static void test_q8_0_q4_0_bytes(void) {
    enum { N = 32 * 64 };
    float x[N];
    for (int rep = 0; rep < 10; rep++) {
        for (int i = 0; i < N; i++)
            x[i] = (float)(rng_gauss() * (rep + 1) * 0.3);
        if (rep == 1) x[5] = x[6] = 0; /* ties of the extreme: first one wins */
        qf_block_q8_0 q8[N / 32];
        qf_block_q4_0 q4[N / 32];
        qf_type_get(QF_TYPE_Q8_0)->from_float(x, q8, N);
        qf_type_get(QF_TYPE_Q4_0)->from_float(x, q4, N);
        for (int b = 0; b < N / 32; b++) {
            const float *xb = x + 32 * b;
            float amax = 0, max = 0;
            for (int j = 0; j < 32; j++) {
                if (fabsf(xb[j]) > amax) {
                    amax = fabsf(xb[j]);
                    max = xb[j];
                }
            }
            /* Q8_0: d = amax/127, q = roundf(x * (1/d)) */
            float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
            ASSERT_EQ_INT(q8[b].d, half_rne_ref(d));
            for (int j = 0; j < 32; j++) {
                volatile float v = xb[j] * id;
                ASSERT_EQ_INT(q8[b].qs[j], (int)roundf(v));
            }
            /* Q4_0: d = max/-8, q = min(15, trunc(x * (1/d) + 8.5)) */
            d = max / -8.0f;
            id = d != 0 ? 1.0f / d : 0.0f;
            ASSERT_EQ_INT(q4[b].d, half_rne_ref(d));
            for (int j = 0; j < 32; j++) {
                volatile float v = xb[j] * id;
                volatile float w = v + 8.5f;
                int q = (int)w;
                q = q > 15 ? 15 : q;
                const int stored = j < 16 ? (q4[b].qs[j] & 15) : (q4[b].qs[j - 16] >> 4);
                ASSERT_EQ_INT(stored, q);
            }
        }
    }
}

/* ---- fp16 / bf16 ---- */

/* Nearest binary16 of v (ties to even mantissa), found by binary search over
 * the ordered positive encodings; >= 65520 gives inf. */
static uint16_t half_rne_ref(double v) {
    const uint16_t sign = signbit(v) ? 0x8000 : 0;
    const double a = fabs(v);
    if (isnan(v)) return 0x7E00;
    if (a >= 65520.0) return sign | 0x7C00;
    unsigned lo = 0, hi = 0x7BFF; /* largest h with value(h) <= a */
    while (lo < hi) {
        const unsigned mid = (lo + hi + 1) / 2;
        if (half_value(mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    const double below = half_value(lo);
    const double above = lo == 0x7BFF ? 65536.0 : half_value(lo + 1);
    unsigned h;
    if (a - below < above - a)
        h = lo;
    else if (a - below > above - a)
        h = lo + 1;
    else
        h = (lo & 1) ? lo + 1 : lo;
    return (uint16_t)(sign | h);
}

static void test_fp16_exhaustive(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = qf_fp16_to_fp32((uint16_t)h);
        const double want = half_value(h);
        if (isnan(want)) {
            ASSERT(isnan(f));
            const uint16_t back = qf_fp32_to_fp16(f);
            ASSERT_MSG((back & 0x7C00) == 0x7C00 && (back & 0x3FF) != 0, "nan %04x -> %04x", h,
                       back);
            ASSERT_EQ_INT(back & 0x8000, h & 0x8000);
            continue;
        }
        ASSERT_MSG((double)f == want && !signbit(f) == !signbit(want), "half %04x -> %g", h, f);
        ASSERT_MSG(qf_fp32_to_fp16(f) == h, "half %04x round trip -> %04x", h, qf_fp32_to_fp16(f));
    }
}

static float float_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_fp32_to_fp16_rounding(void) {
    /* random floats over the whole half range, the subnormal range, and past
     * the overflow threshold, plus exact ties */
    for (int i = 0; i < 400000; i++) {
        float f;
        switch (i % 5) {
        case 0:
            f = float_from_bits((uint32_t)rng_u64());
            break; /* anything */
        case 1:
            f = (float)ldexp(rng_unit(), -14 - (int)(rng_u64() % 12));
            break; /* subnormal */
        case 2:
            f = (float)(60000 + rng_unit() * 10000);
            break; /* near overflow */
        case 3:
            f = (float)ldexp(rng_unit() + 0.5, -(int)(rng_u64() % 30) + 15);
            break;
        default: { /* exact midpoint between two adjacent halves */
            const unsigned h = (unsigned)(rng_u64() % 0x7BFF);
            f = (float)((half_value(h) + half_value(h + 1)) / 2);
            break;
        }
        }
        if (rng_u64() & 1) f = -f;
        if (isnan(f)) continue;
        const uint16_t want = half_rne_ref((double)f);
        ASSERT_MSG(qf_fp32_to_fp16(f) == want, "%.9g -> %04x want %04x", f, qf_fp32_to_fp16(f),
                   want);
    }
    ASSERT_EQ_INT(qf_fp32_to_fp16(INFINITY), 0x7C00);
    ASSERT_EQ_INT(qf_fp32_to_fp16(-INFINITY), 0xFC00);
    ASSERT_EQ_INT(qf_fp32_to_fp16(-0.0f), 0x8000);
    ASSERT_EQ_INT(qf_fp32_to_fp16(65504.0f), 0x7BFF);
    ASSERT_EQ_INT(qf_fp32_to_fp16(65519.99f), 0x7BFF);
    ASSERT_EQ_INT(qf_fp32_to_fp16(65520.0f), 0x7C00);
    ASSERT_EQ_INT(qf_fp32_to_fp16(0x1p-24f), 0x0001);
    ASSERT_EQ_INT(qf_fp32_to_fp16(0x1p-25f), 0x0000);   /* tie -> even (0) */
    ASSERT_EQ_INT(qf_fp32_to_fp16(0x1.8p-24f), 0x0002); /* tie -> even (2) */
    ASSERT_EQ_INT(qf_fp32_to_fp16(0x1.000002p-25f), 0x0001);
    const uint16_t n = qf_fp32_to_fp16(NAN);
    ASSERT((n & 0x7C00) == 0x7C00 && (n & 0x3FF) != 0);
    /* a nan whose payload sits only in low bits must stay a nan */
    const uint16_t n2 = qf_fp32_to_fp16(float_from_bits(0x7F800001u));
    ASSERT((n2 & 0x7C00) == 0x7C00 && (n2 & 0x3FF) != 0);
}

static uint16_t bf16_rne_ref(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const unsigned t = u >> 16; /* truncation: value(t) <= |f| < value(t+1) in magnitude */
    const double a = fabs((double)f);
    const double below = fabs(bf16_value(t));
    const double above = (t & 0x7FFF) == 0x7F7F ? ldexp(1.0, 128) : fabs(bf16_value(t + 1));
    if (a - below < above - a) return (uint16_t)t;
    if (a - below > above - a) return (uint16_t)(t + 1);
    return (uint16_t)((t & 1) ? t + 1 : t);
}

static void test_bf16(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = qf_bf16_to_fp32((uint16_t)h);
        const double want = bf16_value(h);
        if (isnan(want)) {
            ASSERT(isnan(f));
            const uint16_t back = qf_fp32_to_bf16(f);
            ASSERT((back & 0x7F80) == 0x7F80 && (back & 0x7F) != 0);
            continue;
        }
        ASSERT_MSG((double)f == want && !signbit(f) == !signbit(want), "bf16 %04x -> %g", h, f);
        ASSERT_EQ_INT(qf_fp32_to_bf16(f), h);
    }
    for (int i = 0; i < 400000; i++) {
        uint32_t u = (uint32_t)rng_u64();
        if (i % 4 == 1) u = (u & 0xFFFF0000u) | 0x8000u; /* exact ties */
        if (i % 4 == 2) u = 0x7F7F0000u | (u & 0xFFFFu); /* near overflow */
        const float f = float_from_bits(u);
        if (isnan(f)) continue;
        ASSERT_MSG(qf_fp32_to_bf16(f) == bf16_rne_ref(f), "%08x -> %04x want %04x", u,
                   qf_fp32_to_bf16(f), bf16_rne_ref(f));
    }
    ASSERT_EQ_INT(qf_fp32_to_bf16(INFINITY), 0x7F80);
    ASSERT_EQ_INT(qf_fp32_to_bf16(-INFINITY), 0xFF80);
    ASSERT_EQ_INT(qf_fp32_to_bf16(FLT_MAX), 0x7F80); /* rounds up to inf */
    ASSERT_EQ_INT(qf_fp32_to_bf16(1.0f), 0x3F80);
    /* nan with only low payload bits stays nan (and quiet) */
    const uint16_t n = qf_fp32_to_bf16(float_from_bits(0x7F800001u));
    ASSERT((n & 0x7F80) == 0x7F80 && (n & 0x40) != 0);
    const uint16_t n2 = qf_fp32_to_bf16(float_from_bits(0xFFC00000u));
    ASSERT(n2 == 0xFFC0);
}

int main(void) {
    rng_state = qf_test_seed();
    RUN_TEST(test_traits_table);
    RUN_TEST(test_names);
    RUN_TEST(test_row_size);
    RUN_TEST(test_to_float_exact);
    RUN_TEST(test_dot);
    RUN_TEST(test_round_trip_gauss);
    RUN_TEST(test_round_trip_edges);
    RUN_TEST(test_nonfinite_input);
    RUN_TEST(test_q8_0_q4_0_bytes);
    RUN_TEST(test_fp16_exhaustive);
    RUN_TEST(test_fp32_to_fp16_rounding);
    RUN_TEST(test_bf16);
    TEST_MAIN_END();
}
