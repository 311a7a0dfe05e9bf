/* quant.h - tensor element types: block layouts, conversion and dot products.
 *
 * Type ids are ggml's (the values stored in GGUF). Each supported type has a
 * traits record with its block geometry and three kernels:
 *   to_float   decode n values (n a multiple of blck_size)
 *   from_float encode n values (NULL where this build cannot quantize to it)
 *   dot_f32    sum_i w[i] * x[i] over one encoded row of n values and float x
 * The kernels here are the scalar reference (quant/ref.c), written for
 * reading; faster ISA kernels are tested against them.
 *
 * Kernel contract: n >= 0 and a multiple of blck_size (a wrong n is a
 * programmer error: QF_ASSERT). Encoded buffers hold
 * qf_type_row_size(type, n) bytes and must be 2-byte aligned (4 for Q8_K,
 * and F32), as GGUF tensor data is. to_float is exact: each value is the
 * format's formula evaluated with one float rounding. dot_f32 sums w*x in
 * float per block (32 values for F32/F16/BF16) and adds block sums in
 * double. from_float implements llama.cpp's reference quantizers
 * (quantize_row_*_ref, no importance matrix) operation for operation; the
 * bytes are checked identical to llama-quantize's for Q8_0, Q4_0, Q4_K and
 * Q6_K (tests/quant/test_quant_data.c), the other types follow the same
 * algorithms but have no reference file to check against. Finite input only:
 * inf/nan input gives unspecified (memory-safe) output. Q8_1 and Q8_K are
 * activation formats (used for the other operand of quantized dots), fully
 * supported here but not produced by llama-quantize for weights.
 *
 * Thread-safety: all functions are pure and reentrant.
 */
#ifndef QF_QUANT_H
#define QF_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef enum qf_type {
    QF_TYPE_F32 = 0,
    QF_TYPE_F16 = 1,
    QF_TYPE_Q4_0 = 2,
    QF_TYPE_Q4_1 = 3,
    QF_TYPE_Q5_0 = 6,
    QF_TYPE_Q5_1 = 7,
    QF_TYPE_Q8_0 = 8,
    QF_TYPE_Q8_1 = 9,
    QF_TYPE_Q2_K = 10,
    QF_TYPE_Q3_K = 11,
    QF_TYPE_Q4_K = 12,
    QF_TYPE_Q5_K = 13,
    QF_TYPE_Q6_K = 14,
    QF_TYPE_Q8_K = 15,
    QF_TYPE_BF16 = 30,
    QF_TYPE_COUNT_MAX = 64
} qf_type;

typedef void (*qf_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*qf_from_float_fn)(const float *src, void *dst, int64_t n);
typedef float (*qf_dot_f32_fn)(int64_t n, const void *w, const float *x);

typedef struct qf_type_traits {
    const char *name;  /* lower-case, as llama.cpp spells it: "q4_k" */
    int64_t blck_size; /* values per block */
    size_t type_size;  /* bytes per block */
    bool quantized;
    qf_to_float_fn to_float;
    qf_from_float_fn from_float; /* NULL: cannot encode */
    qf_dot_f32_fn dot_f32;
} qf_type_traits;

/* Traits of a supported type, NULL for anything else (unknown id or a type
 * the engine cannot compute with). */
const qf_type_traits *qf_type_get(uint32_t type);

/* "f32, f16, bf16, q4_0, ..." - the supported types, for error messages. */
const char *qf_type_supported_list(void);

/* Bytes of one row of n values (n must be a multiple of the block size).
 * Returns 0 for an unsupported type, negative n, n not a multiple of the
 * block size, or a size that overflows size_t. */
size_t qf_type_row_size(uint32_t type, int64_t n);

/* Parse a type name case-insensitively ("Q8_0", "f16"). Returns false if
 * unknown or unsupported. */
bool qf_type_from_name(const char *name, qf_type *out /* out */);

/* ---- scalar conversions ---- */
float qf_fp16_to_fp32(uint16_t h);
uint16_t qf_fp32_to_fp16(float f); /* round to nearest even, inf/nan kept */
float qf_bf16_to_fp32(uint16_t h);
uint16_t qf_fp32_to_bf16(float f); /* round to nearest even, nan kept quiet */

#endif
