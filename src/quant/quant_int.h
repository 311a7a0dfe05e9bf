/* quant_int.h - helpers shared inside the quant layer (not a public header).
 *
 * The scalar reference kernels of quant/ref.c, one set per type, with the
 * signatures of qf_to_float_fn / qf_from_float_fn / qf_dot_f32_fn (quant.h).
 * n is the number of values and must be a multiple of the type's block size
 * (checked with QF_ASSERT: a wrong n is a programmer error). ISA kernels are
 * tested against these.
 *
 * Quantizers implement llama.cpp's reference (no importance matrix)
 * algorithms operation for operation, to reproduce its bytes for finite
 * input. Non-finite input (inf, nan) gives unspecified but memory-safe
 * output.
 */
#ifndef QF_QUANT_INT_H
#define QF_QUANT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"

/* The 32-value block formats as the ISA kernel files number them (their
 * kernels are instantiated per kind), the bytes of one block, and whether
 * the format has a min m (its activations, Q8_1, carry s = d * sum(q)). */
enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };

static inline size_t b32_bytes(int kind) {
    switch (kind) {
    case K_Q4_0: return sizeof(qf_block_q4_0);
    case K_Q4_1: return sizeof(qf_block_q4_1);
    case K_Q5_0: return sizeof(qf_block_q5_0);
    case K_Q5_1: return sizeof(qf_block_q5_1);
    default: return sizeof(qf_block_q8_0);
    }
}

static inline bool b32_has_min(int kind) { return kind == K_Q4_1 || kind == K_Q5_1; }

/* Q4_K/Q5_K scales: the 8 six-bit scales and mins of a super-block from its
 * 12 packed bytes (blocks.h), four at a time with 32-bit masks; the SIMD
 * kernels' shared scalar step. */
static inline void qf_k4_scales(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    const uint32_t sc_lo = a & 0x3F3F3F3Fu, mn_lo = b & 0x3F3F3F3Fu;
    const uint32_t sc_hi = (c & 0x0F0F0F0Fu) | ((a >> 2) & 0x30303030u);
    const uint32_t mn_hi = ((c >> 4) & 0x0F0F0F0Fu) | ((b >> 2) & 0x30303030u);
    memcpy(sc, &sc_lo, 4);
    memcpy(sc + 4, &sc_hi, 4);
    memcpy(mn, &mn_lo, 4);
    memcpy(mn + 4, &mn_hi, 4);
}

#define QF_REF_DECL(t)                                                                             \
    void qf_ref_to_float_##t(const void *src, float *dst, int64_t n);                              \
    float qf_ref_dot_##t(int64_t n, const void *w, const float *x)

QF_REF_DECL(f32);
QF_REF_DECL(f16);
QF_REF_DECL(bf16);
QF_REF_DECL(q4_0);
QF_REF_DECL(q4_1);
QF_REF_DECL(q5_0);
QF_REF_DECL(q5_1);
QF_REF_DECL(q8_0);
QF_REF_DECL(q8_1);
QF_REF_DECL(q2_K);
QF_REF_DECL(q3_K);
QF_REF_DECL(q4_K);
QF_REF_DECL(q5_K);
QF_REF_DECL(q6_K);
QF_REF_DECL(q8_K);
#undef QF_REF_DECL

void qf_ref_from_float_f32(const float *src, void *dst, int64_t n);
void qf_ref_from_float_f16(const float *src, void *dst, int64_t n);
void qf_ref_from_float_bf16(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q4_0(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q4_1(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q5_0(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q5_1(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q8_0(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q8_1(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q2_K(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q3_K(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q4_K(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q5_K(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q6_K(const float *src, void *dst, int64_t n);
void qf_ref_from_float_q8_K(const float *src, void *dst, int64_t n);

/* ---- quantized dot products and the kernel table (quant/kernels.c) ----
 *
 * qf_ref_vdot_<w>: dot of one weight row of type w with one activation row
 * in the format qf_act_type(w) gives (quant/kernels.h), n values, with
 * llama.cpp's integer semantics (quant/ref_dot.c). Scales multiply in float,
 * block results are summed in double. If mag is not NULL it receives the sum
 * of the magnitudes of the individual products, scales included (e.g.
 * sum over blocks of |d_w * d_x| * sum |q_w * q_x|): the yardstick for the
 * tolerance of faster kernels, whose only freedom is the summation order. */
typedef float (*qf_vdot_fn)(int64_t n, const void *w, const void *xq, float *mag /* out */);

#define QF_VDOT_DECL(t) float qf_ref_vdot_##t(int64_t n, const void *w, const void *xq, float *mag)
QF_VDOT_DECL(f32);
QF_VDOT_DECL(f16);
QF_VDOT_DECL(bf16);
QF_VDOT_DECL(q4_0);
QF_VDOT_DECL(q4_1);
QF_VDOT_DECL(q5_0);
QF_VDOT_DECL(q5_1);
QF_VDOT_DECL(q8_0);
QF_VDOT_DECL(q2_K);
QF_VDOT_DECL(q3_K);
QF_VDOT_DECL(q4_K);
QF_VDOT_DECL(q5_K);
QF_VDOT_DECL(q6_K);
#undef QF_VDOT_DECL

/* One ISA's kernels. gemm[w] has qf_gemm's contract with the activation row
 * stride passed in (xq_stride bytes); act[a] encodes one activation row of
 * activation type a (Q8_0, Q8_1, Q8_K, F16, F32). A NULL entry falls back to
 * the scalar table's. */
typedef void (*qf_gemm_fn)(const void *W, size_t w_row_bytes, int64_t cols, int64_t r0,
                           int64_t r1, const void *xq, size_t xq_stride, int64_t n, float *y,
                           int64_t ldy);
typedef void (*qf_act_fn)(const float *x, void *xq, int64_t cols);

typedef void (*qf_vmad_fn)(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda,
                           int64_t nq, float *out, int64_t ldo);

/* The first half of qf_attn_f16 (kernels.h): scores of one block, the
 * online-softmax update of m, l and out, and the weights p (nq, n) that the
 * value sum (vmad_f16) then applies. */
typedef void (*qf_attn_sm_fn)(int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q, int64_t ldq,
                              int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo,
                              float *p);

/* qf_swiglu (kernels.h): g[i] = silu(g[i]) * u[i] for i < n. */
typedef void (*qf_swiglu_fn)(float *g, const float *u, int64_t n);

typedef struct qf_kernel_table {
    const char *name;
    qf_gemm_fn gemm[QF_TYPE_COUNT_MAX];
    qf_act_fn act[QF_TYPE_COUNT_MAX];
    qf_vmad_fn vmad_f16;        /* qf_vmad_f16 */
    qf_attn_sm_fn attn_sm_f16;  /* qf_attn_f16 before its value sum */
    qf_vmad_fn vmad_q8_0;       /* qf_vmad_f16's contract for Q8_0 rows (d a multiple of 32) */
    qf_attn_sm_fn attn_sm_q8_0; /* qf_attn_q8_0 before its value sum */
    qf_swiglu_fn swiglu;        /* qf_swiglu */
} qf_kernel_table;

/* qf_swiglu's scalar reference (ref_dot.c): g / (1 + expf(-g)) * u. */
void qf_ref_swiglu(float *g, const float *u, int64_t n);
/* qf_vmad_f16's scalar reference (ref_dot.c). */
void qf_ref_vmad_f16(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda, int64_t nq,
                     float *out, int64_t ldo);
/* The scalar references of the attention entries (attn.c). */
void qf_ref_attn_sm_f16(int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q, int64_t ldq,
                        int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p);
void qf_ref_attn_sm_q8_0(int64_t dk, int64_t n, const void *K, size_t k_row_bytes, const float *q, int64_t ldq,
                         int64_t nq, float scale, float *m, float *l, float *out, int64_t dv, int64_t ldo, float *p);
void qf_ref_vmad_q8_0(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda, int64_t nq,
                      float *out, int64_t ldo);

/* Fill the scalar table (every supported type; ref_dot.c). */
void qf_kernels_fill_scalar(qf_kernel_table *t);
/* Set the entries an ISA file has (the others stay as they are) and return
 * true, or return false with t untouched when this CPU cannot run the
 * file's code (each file checks the features it was compiled for). Only
 * defined in builds for that architecture: avx2.c and avx512.c on x86-64,
 * neon.c on aarch64. */
bool qf_kernels_fill_avx2(qf_kernel_table *t);
bool qf_kernels_fill_avx512(qf_kernel_table *t);
/* The AVX-512 attention entries (avx512_attn.c), replacing t's; called by
 * qf_kernels_fill_avx512 once the CPU checks passed. */
void qf_kernels_fill_avx512_attn(qf_kernel_table *t);
bool qf_kernels_fill_neon(qf_kernel_table *t);

#endif
