/* test_quant_data.c - our quantizers and decoders against llama.cpp's files.
 *
 * ../shared/testdata/models holds one set of random weights as F32 and as
 * llama-quantize made it into Q8_0, Q4_0, Q6_K and Q4_K_M (no importance
 * matrix). (a) Quantizing the F32 tensors with our from_float must give
 * llama.cpp's bytes exactly, for every quantized tensor of every file (Q8_0,
 * Q4_0, Q4_K and Q6_K). (b) llama.cpp's tensors decoded with our to_float are
 * close to the F32 originals (relative RMSE bounds per type; the weights are
 * Gaussian, so the bounds are those of test_quant's round trip, tightened
 * for this fixed data). Skips when the shared data is absent.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "qf_test.h"
#include "quant/quant.h"

/* Relative RMSE bound for llama.cpp's tensors of this type. */
static double rmse_bound(uint32_t type) {
    switch (type) {
    case QF_TYPE_Q8_0:
        return 0.0060;
    case QF_TYPE_Q4_0:
        return 0.095;
    case QF_TYPE_Q4_K:
        return 0.080;
    case QF_TYPE_Q6_K:
        return 0.020;
    default:
        return -1;
    }
}

static qf_gguf *open_model(const char *name) {
    char rel[128], path[512];
    qf_err err;
    snprintf(rel, sizeof rel, "models/%s", name);
    qf_gguf *g = qf_gguf_open(qf_testdata(rel, path, sizeof path), &err);
    if (!g) fprintf(stderr, "open %s: %s\n", path, err.msg);
    return g;
}

/* Compare every quantized tensor of `quant_file` against the same tensor of
 * `f32_file`; RMSE bounds are multiplied by `slack` (trained weights are not
 * Gaussian). counts[type] collects how many tensors of each type passed.
 * Returns false (after printing why) on the first failure. */
static bool check_file(const char *f32_file, const char *quant_file, double slack,
                       int counts[QF_TYPE_COUNT_MAX]) {
    qf_gguf *ref = open_model(f32_file);
    qf_gguf *q = open_model(quant_file);
    if (!ref || !q) {
        qf_gguf_close(ref);
        qf_gguf_close(q);
        return false;
    }
    int failed = 0;
    for (int64_t i = 0; i < qf_gguf_n_tensors(q) && !failed; i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(q, i);
        if (t->type == QF_TYPE_F32) continue;
        const qf_gguf_tensor *o = qf_gguf_find_tensor(ref, t->name);
        const qf_type_traits *tr = qf_type_get(t->type);
        if (!o || o->type != QF_TYPE_F32 || !tr || rmse_bound(t->type) < 0) {
            fprintf(stderr, "%s: %s: unexpected tensor (type %u)\n", quant_file, t->name, t->type);
            failed = 1;
            break;
        }
        const int64_t ne0 = t->ne[0];
        const int64_t n = (int64_t)(o->size / sizeof(float));
        const size_t row = qf_type_row_size(t->type, ne0);
        if (memcmp(o->ne, t->ne, sizeof t->ne) != 0 || row == 0 ||
            row * (size_t)(n / ne0) != t->size) {
            fprintf(stderr, "%s: %s: shape/size mismatch\n", quant_file, t->name);
            failed = 1;
            break;
        }
        /* (a) our bytes == llama.cpp's bytes, row by row */
        uint8_t *ours = malloc(t->size);
        const float *x = o->data;
        for (int64_t r = 0; r < n / ne0; r++)
            tr->from_float(x + r * ne0, ours + (size_t)r * row, ne0);
        size_t first_diff = SIZE_MAX, n_diff_blocks = 0;
        for (size_t b = 0; b < t->size / tr->type_size; b++) {
            if (memcmp(ours + b * tr->type_size, (const uint8_t *)t->data + b * tr->type_size,
                       tr->type_size) != 0) {
                if (first_diff == SIZE_MAX) first_diff = b;
                n_diff_blocks++;
            }
        }
        free(ours);
        if (n_diff_blocks) {
            fprintf(stderr, "%s: %s (%s): %zu blocks differ from llama.cpp, first %zu\n",
                    quant_file, t->name, tr->name, n_diff_blocks, first_diff);
            failed = 1;
            break;
        }
        /* (b) llama.cpp's tensor decodes close to the original */
        float *y = malloc((size_t)n * sizeof(float));
        tr->to_float(t->data, y, n);
        double se = 0, ss = 0;
        for (int64_t k = 0; k < n; k++) {
            se += ((double)y[k] - x[k]) * ((double)y[k] - x[k]);
            ss += (double)x[k] * x[k];
        }
        free(y);
        const double rel = sqrt(se / ss);
        fprintf(stderr, "  %-22s %-26s %-5s bit-identical, relative rmse %.5f\n", quant_file,
                t->name, tr->name, rel);
        if (!(rel <= slack * rmse_bound(t->type))) {
            fprintf(stderr, "%s: %s: relative rmse %g above %g\n", quant_file, t->name, rel,
                    slack * rmse_bound(t->type));
            failed = 1;
            break;
        }
        counts[t->type]++;
    }
    qf_gguf_close(q);
    qf_gguf_close(ref);
    return !failed;
}

static void test_q8_0_file(void) {
    int counts[QF_TYPE_COUNT_MAX] = {0};
    ASSERT(check_file("rand-llama-f32.gguf", "rand-llama-q8_0.gguf", 1.0, counts));
    ASSERT(counts[QF_TYPE_Q8_0] >= 16); /* every matrix incl. token_embd and output */
}

static void test_q4_0_file(void) {
    int counts[QF_TYPE_COUNT_MAX] = {0};
    ASSERT(check_file("rand-llama-f32.gguf", "rand-llama-q4_0.gguf", 1.0, counts));
    ASSERT(counts[QF_TYPE_Q4_0] >= 15);
    ASSERT_EQ_INT(counts[QF_TYPE_Q6_K], 1); /* output.weight */
}

static void test_q6_k_file(void) {
    int counts[QF_TYPE_COUNT_MAX] = {0};
    ASSERT(check_file("rand-llama-f32.gguf", "rand-llama-q6_k.gguf", 1.0, counts));
    ASSERT(counts[QF_TYPE_Q6_K] >= 16);
}

static void test_q4_k_m_file(void) {
    int counts[QF_TYPE_COUNT_MAX] = {0};
    ASSERT(check_file("rand-llama-f32.gguf", "rand-llama-q4_k_m.gguf", 1.0, counts));
    ASSERT(counts[QF_TYPE_Q4_K] >= 13);
    ASSERT_EQ_INT(counts[QF_TYPE_Q6_K], 3); /* output, blk.1.attn_v, blk.1.ffn_down */
}

/* The real tiny model: Q8_0 everywhere except F32 ffn_down and norms. */
static void test_stories_q8_0(void) {
    int counts[QF_TYPE_COUNT_MAX] = {0};
    ASSERT(check_file("stories260K.gguf", "stories260K-q8_0.gguf", 2.0, counts));
    ASSERT(counts[QF_TYPE_Q8_0] >= 10);
}

int main(void) {
    char buf[512];
    qf_testdata("models", buf, sizeof buf); /* skip (77) when absent */
    RUN_TEST(test_q8_0_file);
    RUN_TEST(test_q4_0_file);
    RUN_TEST(test_q6_k_file);
    RUN_TEST(test_q4_k_m_file);
    RUN_TEST(test_stories_q8_0);
    TEST_MAIN_END();
}
