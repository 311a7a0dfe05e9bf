/* quantize.h - whole-model type conversion, and the file-type mixes.
 *
 * A file type (ftype, the value of GGUF general.file_type) names a mix of
 * tensor types, as llama.cpp defines them: Q4_K_M is Q4_K for most matrices
 * but Q6_K for the output projection and for attn_v / ffn_down of some
 * layers. qf_ftype_tensor_type is that rule, used both by
 * qf_model_quantize and by `qforge model synth`.
 *
 * Thread-safety: qf_model_quantize uses its own pool; the rest is pure.
 */
#ifndef QF_QUANTIZE_H
#define QF_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "quant/quant.h"

typedef enum qf_ftype {
    QF_FTYPE_F32 = 0,
    QF_FTYPE_F16 = 1,
    QF_FTYPE_Q4_0 = 2,
    QF_FTYPE_Q4_1 = 3,
    QF_FTYPE_Q8_0 = 7,
    QF_FTYPE_Q5_0 = 8,
    QF_FTYPE_Q5_1 = 9,
    QF_FTYPE_Q4_K_S = 14,
    QF_FTYPE_Q4_K_M = 15,
    QF_FTYPE_Q5_K_S = 16,
    QF_FTYPE_Q5_K_M = 17,
    QF_FTYPE_Q6_K = 18,
    QF_FTYPE_BF16 = 32,
} qf_ftype;

/* Case-insensitive: "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1",
 * "q8_0", "q4_k_s", "q4_k_m", "q4_k" (= q4_k_m), "q5_k_s", "q5_k_m",
 * "q5_k" (= q5_k_m), "q6_k". */
bool qf_ftype_from_name(const char *name, qf_ftype *out /* out */);
const char *qf_ftype_name(qf_ftype ft);
const char *qf_ftype_names(void); /* for usage messages */

/* Tensor type for a tensor under ftype. name is the GGUF tensor name,
 * n_dims/ne0 its shape, n_layer the model's layer count; is_output is true
 * for output.weight (or token_embd.weight when the model ties them).
 * Vectors (n_dims == 1) stay f32. When ne0 is not a multiple of the chosen
 * type's block, a fallback that fits is used (k-quant -> q5_0/q5_1/q8_0 ->
 * f16). */
qf_type qf_ftype_tensor_type(qf_ftype ft, const char *name, uint32_t n_dims, int64_t ne0, int n_layer,
                             bool is_output);

/* Convert every tensor of in to ftype's mix and write out (metadata copied,
 * general.file_type updated). n_threads 0 = performance cores. */
qf_status qf_model_quantize(const char *in, const char *out, qf_ftype ft, int n_threads, qf_err *err);

/* Encode n_rows rows of n_cols f32 values into type (rows split over the
 * pool). dst must hold n_rows * qf_type_row_size(type, n_cols) bytes. */
struct qf_pool;
void qf_quantize_rows(struct qf_pool *pool, qf_type type, const float *src, void *dst, int64_t n_rows,
                      int64_t n_cols);

#endif
