/* quant.c - the type traits table and type-name lookups.
 *
 * One static table indexed by ggml type id; a slot with a NULL name is a
 * type this build does not support. Today every kernel is the scalar
 * reference from quant/ref.c; ISA kernels will be chosen once at startup and
 * swapped into the same table.
 */
#include <string.h>
#include <strings.h>

#include "base/mem.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

#define QF_TRAITS(t, blck, bytes, quant)                                                           \
    {                                                                                              \
        .name = #t, .blck_size = (blck), .type_size = (bytes), .quantized = (quant),               \
        .to_float = qf_ref_to_float_##t, .from_float = qf_ref_from_float_##t,                      \
        .dot_f32 = qf_ref_dot_##t,                                                                 \
    }

/* Names are llama.cpp's, lower-case; the K types are spelled "q4_k" while
 * the kernels keep ggml's "q4_K". */
#define QF_TRAITS_K(t, name_lc, bytes)                                                             \
    {                                                                                              \
        .name = name_lc, .blck_size = QF_QK_K, .type_size = (bytes), .quantized = true,            \
        .to_float = qf_ref_to_float_##t, .from_float = qf_ref_from_float_##t,                      \
        .dot_f32 = qf_ref_dot_##t,                                                                 \
    }

static const qf_type_traits traits[QF_TYPE_COUNT_MAX] = {
    [QF_TYPE_F32] = QF_TRAITS(f32, 1, sizeof(float), false),
    [QF_TYPE_F16] = QF_TRAITS(f16, 1, sizeof(uint16_t), false),
    [QF_TYPE_BF16] = QF_TRAITS(bf16, 1, sizeof(uint16_t), false),
    [QF_TYPE_Q4_0] = QF_TRAITS(q4_0, QF_QK4_0, sizeof(qf_block_q4_0), true),
    [QF_TYPE_Q4_1] = QF_TRAITS(q4_1, QF_QK4_1, sizeof(qf_block_q4_1), true),
    [QF_TYPE_Q5_0] = QF_TRAITS(q5_0, QF_QK5_0, sizeof(qf_block_q5_0), true),
    [QF_TYPE_Q5_1] = QF_TRAITS(q5_1, QF_QK5_1, sizeof(qf_block_q5_1), true),
    [QF_TYPE_Q8_0] = QF_TRAITS(q8_0, QF_QK8_0, sizeof(qf_block_q8_0), true),
    [QF_TYPE_Q8_1] = QF_TRAITS(q8_1, QF_QK8_1, sizeof(qf_block_q8_1), true),
    [QF_TYPE_Q2_K] = QF_TRAITS_K(q2_K, "q2_k", sizeof(qf_block_q2_K)),
    [QF_TYPE_Q3_K] = QF_TRAITS_K(q3_K, "q3_k", sizeof(qf_block_q3_K)),
    [QF_TYPE_Q4_K] = QF_TRAITS_K(q4_K, "q4_k", sizeof(qf_block_q4_K)),
    [QF_TYPE_Q5_K] = QF_TRAITS_K(q5_K, "q5_k", sizeof(qf_block_q5_K)),
    [QF_TYPE_Q6_K] = QF_TRAITS_K(q6_K, "q6_k", sizeof(qf_block_q6_K)),
    [QF_TYPE_Q8_K] = QF_TRAITS_K(q8_K, "q8_k", sizeof(qf_block_q8_K)),
};

/* Order of the supported list (and of qf_type_supported_list's text). */
static const qf_type list_order[] = {
    QF_TYPE_F32,  QF_TYPE_F16,  QF_TYPE_BF16, QF_TYPE_Q4_0, QF_TYPE_Q4_1,
    QF_TYPE_Q5_0, QF_TYPE_Q5_1, QF_TYPE_Q8_0, QF_TYPE_Q8_1, QF_TYPE_Q2_K,
    QF_TYPE_Q3_K, QF_TYPE_Q4_K, QF_TYPE_Q5_K, QF_TYPE_Q6_K, QF_TYPE_Q8_K,
};

const qf_type_traits *qf_type_get(uint32_t type) {
    if (type >= QF_TYPE_COUNT_MAX || traits[type].name == NULL) return NULL;
    return &traits[type];
}

const char *qf_type_supported_list(void) {
    return "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, q2_k, q3_k, q4_k, q5_k, q6_k, "
           "q8_k";
}

size_t qf_type_row_size(uint32_t type, int64_t n) {
    const qf_type_traits *t = qf_type_get(type);
    size_t bytes;
    if (!t || n < 0 || n % t->blck_size != 0) return 0;
    if (qf_mul_overflow((size_t)(n / t->blck_size), t->type_size, &bytes) != 0) return 0;
    return bytes;
}

bool qf_type_from_name(const char *name, qf_type *out) {
    if (!name) return false;
    for (size_t i = 0; i < sizeof list_order / sizeof list_order[0]; i++) {
        const qf_type id = list_order[i];
        if (strcasecmp(name, traits[id].name) == 0) {
            if (out) *out = id;
            return true;
        }
    }
    return false;
}
