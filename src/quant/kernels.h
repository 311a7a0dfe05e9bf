/* kernels.h - fast matrix-times-activations kernels for the forward pass.
 *
 * A weight matrix W (rows x cols, one GGUF row every w_row_bytes bytes, in
 * any type qf_act_type accepts) is multiplied with n activation rows X
 * (n x cols floats). The activations are first encoded once per step with
 * qf_act_quantize into the format the weight type pairs with (as llama.cpp
 * does: integer dot products for the quantized types):
 *
 *   weight type                    activation type
 *   Q4_0, Q5_0, Q8_0               Q8_0
 *   Q4_1, Q5_1                     Q8_1
 *   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K   Q8_K
 *   F16                            F16
 *   BF16, F32                      F32
 *
 * then qf_gemm computes Y[t][r] = dot(W row r, X row t). Results equal the
 * scalar reference (quant/ref_dot.c, llama.cpp's integer semantics: e.g.
 * Q4_0 x Q8_0 = sum over blocks of d_w * d_x * sum(int products)) up to
 * float summation order: |fast - ref| <= 1e-5 * (sum of the magnitudes of
 * the individual products, scales included), checked by
 * tests/quant/test_kernels.c.
 *
 * The ISA is picked once (first call of any function here) from the CPU:
 * x86-64 AVX-512 (F+BW+VL+DQ+VNNI) > AVX2+FMA+F16C > scalar, aarch64 NEON
 * with dotprod (checked in the hwcaps). The environment variable
 * QF_ISA=scalar|avx2|avx512|neon forces one; an ISA the CPU lacks falls
 * back to the best available with a warning. Within "avx512", batches of
 * n >= 16 tokens use AMX tiles where the CPU has AMX-INT8 (Sapphire Rapids
 * and later) and Linux grants the tile state; QF_AMX=0 turns that off
 * (e.g. under valgrind, which does not know AMX).
 *
 * Memory: the AVX-512 kernels keep a per-thread scratch buffer (activation
 * and weight panels, a few MB at most for n > 1), grown on demand and freed
 * when the thread exits; if it cannot be allocated they fall back to the
 * AVX2 kernels, so qf_gemm never fails.
 *
 * Buffers: W rows need no alignment beyond what GGUF gives (2 bytes, 4 for
 * F32); the activation buffer xq must be 4-byte aligned (64 is best); y is
 * float.
 * Thread-safety: every function is reentrant and may run on many threads at
 * once (the caller splits the rows [r0, r1) of a matrix among threads);
 * qf_kernels_set_isa must not race with running kernels (tests only).
 */
#ifndef QF_QUANT_KERNELS_H
#define QF_QUANT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

/* Activation type that weights of type w are multiplied with (table above),
 * or QF_TYPE_COUNT_MAX when qf_gemm has no kernel for w (Q8_1, Q8_K,
 * unknown ids). */
qf_type qf_act_type(qf_type w);

/* Bytes of one encoded activation row of cols values for weights of type w:
 * qf_type_row_size(qf_act_type(w), cols). 0 when w is unsupported or cols is
 * negative or not a multiple of w's block size (32 or 256). */
size_t qf_act_row_size(qf_type w, int64_t cols);

/* Encode one activation row: x (cols floats) -> xq (qf_act_row_size(w, cols)
 * bytes, 4-byte aligned). Byte-identical to the scalar reference quantizer
 * (qf_ref_from_float_q8_0 etc.) for finite input. cols must be valid for w
 * (qf_act_row_size(w, cols) != 0): anything else is a programmer error
 * (QF_ASSERT). */
void qf_act_quantize(qf_type w, const float *x, void *xq, int64_t cols);

/* y[t * ldy + r] = dot(W row r, activation row t) for r in [r0, r1) and t in
 * [0, n). W points at row 0 (row r starts at W + r * w_row_bytes, which must
 * be >= qf_type_row_size(w, cols)); xq holds n activation rows encoded by
 * qf_act_quantize, qf_act_row_size(w, cols) bytes apart; ldy >= r1. Other
 * entries of y are not touched. n == 1 (generation) streams the weights
 * once; n > 1 reuses each decoded weight block for several tokens.
 * Programmer errors (QF_ASSERT): unsupported w, invalid cols, r0 > r1,
 * n < 0, ldy < r1. */
void qf_gemm(qf_type w, const void *W, size_t w_row_bytes, int64_t cols, int64_t r0, int64_t r1,
             const void *xq, int64_t n, float *y, int64_t ldy);

/* The SwiGLU of a feed-forward block: g[i] = silu(g[i]) * u[i] for i in
 * [0, n), silu(x) = x / (1 + e^-x). The SIMD versions compute e^-|x| with
 * a polynomial (within 2 ulp of expf) and are within a few ulp of the
 * scalar reference (below x = -87.3, where e^x is subnormal, they give 0,
 * the exact result being under 1e-36 |u|); every element takes the same
 * path whatever n and its
 * position (the result does not depend on how a row is split). n >= 0; g
 * and u do not overlap. */
void qf_swiglu(float *g, const float *u, int64_t n);

/* Weighted sum of fp16 rows, attention's value accumulation: for q in
 * [0, nq) and j in [0, d),
 *   out[q * ldo + j] += sum over r in [0, n) of a[q * lda + r] * V_r[j]
 * where V_r is row r of fp16 values starting at V + r * v_row_bytes. The
 * rows are read once for all nq weight vectors (the query heads that share
 * a kv head). Results equal the scalar reference up to rounding (fused
 * multiply-add; each output sums its terms in r order). */
void qf_vmad_f16(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda, int64_t nq,
                 float *out, int64_t ldo);

/* One block of attention over an fp16 kv cache, flash-attention style: the
 * nq query heads that share a kv head see each key and value row once, and
 * no buffer grows with the context. Over the blocks of a sequence, per
 * query head g (q row g at q + g * ldq, dk floats, used as given: round it
 * to fp16 first to match an fp16 cache's keys):
 *   s_r   = scale * dot(q_g, K_r)  for the n key rows of the block
 *           (row r: dk fp16 values at K + r * k_row_bytes)
 *   m[g]  = running maximum of the s_r seen so far (-INFINITY before the
 *           first block)
 *   l[g]  = running sum of exp(s_r - m[g]) (0 before the first block)
 *   out[g * ldo + j] = running sum of exp(s_r - m[g]) * V_r[j], j < dv
 *           (V_r: dv fp16 values at V + r * v_row_bytes; 0 before the
 *           first block)
 * When a block raises m[g], what was summed so far is rescaled by
 * exp(old - new). After the last block out[g] / l[g] is the attention
 * output. p is scratch for nq * n floats (the block's weights). Results
 * equal the scalar reference up to float rounding: the SIMD exp is within
 * 2 ulp of expf and sums are taken in another order (tests/quant/
 * test_attn.c checks against float64 attention). Programmer errors
 * (QF_ASSERT): negative sizes, ldq < dk or ldo < dv with nq > 1. */
void qf_attn_f16(int64_t dk, int64_t dv, int64_t n, const void *K, size_t k_row_bytes, const void *V,
                 size_t v_row_bytes, const float *q, int64_t ldq, int64_t nq, float scale, float *m, float *l,
                 float *out, int64_t ldo, float *p);
/* The same for a Q8_0 cache: K and V rows are Q8_0 blocks (value j = d * q
 * of block j / 32), dk and dv multiples of 32 (QF_ASSERT). q stays float
 * (no rounding needed): the only rounding is the cache's own. */
void qf_attn_q8_0(int64_t dk, int64_t dv, int64_t n, const void *K, size_t k_row_bytes, const void *V,
                  size_t v_row_bytes, const float *q, int64_t ldq, int64_t nq, float scale, float *m, float *l,
                  float *out, int64_t ldo, float *p);

/* The ISA in use: "scalar", "avx2", "avx512" or "neon". Never NULL. */
const char *qf_kernels_isa(void);

/* Switch to an ISA by name (tests and benchmarks). Returns 0, or -1 when the
 * name is unknown or the CPU/build lacks it (the current ISA stays). */
int qf_kernels_set_isa(const char *name);

#endif
