/* blocks.h - the block formats of quantized tensors, byte-identical to GGUF.
 *
 * Every quantized type stores a row of values as a sequence of fixed-size
 * blocks. Each struct below is exactly one block as it lies in a GGUF file
 * (little-endian, no padding: the static_asserts pin every size). Half
 * precision scales are stored as raw IEEE binary16 bits (uint16_t); convert
 * them with qf_fp16_to_fp32 from quant.h.
 *
 * Which bits hold which element is part of the format; it is spelled out
 * next to each struct and implemented (for reading) in quant/ref.c.
 *
 * The structs only contain byte arrays, uint16_t and (Q8_K) one float, so
 * their natural layout has no padding; a block's alignment requirement is
 * that of its widest field (2, or 4 for Q8_K). GGUF tensor data starts at a
 * 32-byte boundary, so rows read straight from a mapping are aligned.
 */
#ifndef QF_QUANT_BLOCKS_H
#define QF_QUANT_BLOCKS_H

#include <assert.h>
#include <stdint.h>

/* Values per block. */
#define QF_QK4_0        32
#define QF_QK4_1        32
#define QF_QK5_0        32
#define QF_QK5_1        32
#define QF_QK8_0        32
#define QF_QK8_1        32
#define QF_QK_K         256 /* super-block of the K-quants */
#define QF_K_SCALE_SIZE 12  /* packed 6-bit scales of Q3_K, Q4_K, Q5_K */

typedef uint16_t qf_half; /* IEEE binary16 bits */

/* ---- 32-value blocks ----
 * In the 4/5-bit formats, byte qs[j] (j < 16) holds element j in its low
 * nibble and element j + 16 in its high nibble. In Q5_0/Q5_1 the fifth bit
 * of element i (0..31) is bit i of the little-endian uint32 in qh[4]. */

/* Q4_0: x = d * (q - 8), q in 0..15. */
typedef struct qf_block_q4_0 {
    qf_half d;
    uint8_t qs[QF_QK4_0 / 2];
} qf_block_q4_0;
static_assert(sizeof(qf_block_q4_0) == 2 + QF_QK4_0 / 2, "q4_0 block size");

/* Q4_1: x = d * q + m, q in 0..15. */
typedef struct qf_block_q4_1 {
    qf_half d;
    qf_half m;
    uint8_t qs[QF_QK4_1 / 2];
} qf_block_q4_1;
static_assert(sizeof(qf_block_q4_1) == 4 + QF_QK4_1 / 2, "q4_1 block size");

/* Q5_0: x = d * (q - 16), q in 0..31. */
typedef struct qf_block_q5_0 {
    qf_half d;
    uint8_t qh[4];
    uint8_t qs[QF_QK5_0 / 2];
} qf_block_q5_0;
static_assert(sizeof(qf_block_q5_0) == 2 + 4 + QF_QK5_0 / 2, "q5_0 block size");

/* Q5_1: x = d * q + m, q in 0..31. */
typedef struct qf_block_q5_1 {
    qf_half d;
    qf_half m;
    uint8_t qh[4];
    uint8_t qs[QF_QK5_1 / 2];
} qf_block_q5_1;
static_assert(sizeof(qf_block_q5_1) == 4 + 4 + QF_QK5_1 / 2, "q5_1 block size");

/* Q8_0: x = d * q, q in -128..127 (the quantizer uses -127..127). */
typedef struct qf_block_q8_0 {
    qf_half d;
    int8_t qs[QF_QK8_0];
} qf_block_q8_0;
static_assert(sizeof(qf_block_q8_0) == 2 + QF_QK8_0, "q8_0 block size");

/* Q8_1: x = d * q; s = d * sum(q) (an activation format: the sum lets a
 * dot product with Q4_1/Q5_1 fold in their offset m). */
typedef struct qf_block_q8_1 {
    qf_half d;
    qf_half s;
    int8_t qs[QF_QK8_1];
} qf_block_q8_1;
static_assert(sizeof(qf_block_q8_1) == 4 + QF_QK8_1, "q8_1 block size");

/* ---- 256-value super-blocks (K-quants) ---- */

/* Q2_K: 16 sub-blocks of 16. scales[s] = scale (low nibble) | min (high
 * nibble) of sub-block s; x = d * scale * q - dmin * min, q in 0..3.
 * qs: element 128*h + 32*k + l (h < 2, k < 4, l < 32) is bits 2k..2k+1 of
 * qs[32*h + l]. */
typedef struct qf_block_q2_K {
    uint8_t scales[QF_QK_K / 16];
    uint8_t qs[QF_QK_K / 4];
    qf_half d;
    qf_half dmin;
} qf_block_q2_K;
static_assert(sizeof(qf_block_q2_K) == QF_QK_K / 16 + QF_QK_K / 4 + 4, "q2_K block size");

/* Q3_K: 16 sub-blocks of 16 with signed 6-bit scales (stored + 32).
 * x = d * (scale - 32) * q, q = low2 - (high bit ? 0 : 4) in -4..3.
 * low2 of element 128*h + 32*k + l is bits 2k..2k+1 of qs[32*h + l] (as
 * Q2_K); its high bit is bit (4*h + k) of hmask[l], i.e. element e uses
 * hmask[e % 32] bit e / 32.
 * scales (12 bytes, 16 values of 6 bits): value j has its low 4 bits in
 * scales[j] (j < 8, low nibble) or scales[j - 8] (j >= 8, high nibble), and
 * its high 2 bits at bit 2*(j/4) of scales[8 + j%4]. */
typedef struct qf_block_q3_K {
    uint8_t hmask[QF_QK_K / 8];
    uint8_t qs[QF_QK_K / 4];
    uint8_t scales[QF_K_SCALE_SIZE];
    qf_half d;
} qf_block_q3_K;
static_assert(sizeof(qf_block_q3_K) == QF_QK_K / 8 + QF_QK_K / 4 + 12 + 2, "q3_K block size");

/* Q4_K: 8 sub-blocks of 32, each with a 6-bit scale sc and 6-bit min m:
 * x = d * sc * q - dmin * m, q in 0..15.
 * scales (12 bytes, 8 scales + 8 mins): for j < 4, sc_j = scales[j] & 63 and
 * m_j = scales[j + 4] & 63; for j >= 4 the low 4 bits are the nibbles of
 * scales[j + 4] (sc low, m high) and the high 2 bits are the top two bits
 * of scales[j - 4] (sc) and scales[j] (m).
 * qs: chunk c (c < 4) of 64 elements uses qs[32c .. 32c+31]: element
 * 64c + l is the low nibble of qs[32c + l] (sub-block 2c), element
 * 64c + 32 + l its high nibble (sub-block 2c + 1). */
typedef struct qf_block_q4_K {
    qf_half d;
    qf_half dmin;
    uint8_t scales[QF_K_SCALE_SIZE];
    uint8_t qs[QF_QK_K / 2];
} qf_block_q4_K;
static_assert(sizeof(qf_block_q4_K) == 4 + 12 + QF_QK_K / 2, "q4_K block size");

/* Q5_K: Q4_K plus a fifth bit, q in 0..31. The fifth bit of element
 * 64c + l is bit 2c of qh[l], of element 64c + 32 + l bit 2c + 1 of qh[l]. */
typedef struct qf_block_q5_K {
    qf_half d;
    qf_half dmin;
    uint8_t scales[QF_K_SCALE_SIZE];
    uint8_t qh[QF_QK_K / 8];
    uint8_t qs[QF_QK_K / 2];
} qf_block_q5_K;
static_assert(sizeof(qf_block_q5_K) == 4 + 12 + QF_QK_K / 8 + QF_QK_K / 2, "q5_K block size");

/* Q6_K: 16 sub-blocks of 16 with int8 scales; x = d * scale * (q - 32),
 * q in 0..63. Each half h (128 elements) uses ql[64h..64h+63] and
 * qh[32h..32h+31]; for l < 32:
 *   element 128h +      l: low4 = ql[64h + l]      & 15, high2 = qh bits 0-1
 *   element 128h + 32 + l: low4 = ql[64h + 32 + l] & 15, high2 = qh bits 2-3
 *   element 128h + 64 + l: low4 = ql[64h + l]      >> 4, high2 = qh bits 4-5
 *   element 128h + 96 + l: low4 = ql[64h + 32 + l] >> 4, high2 = qh bits 6-7
 * where qh means qh[32h + l]. Element e uses scales[e / 16]. */
typedef struct qf_block_q6_K {
    uint8_t ql[QF_QK_K / 2];
    uint8_t qh[QF_QK_K / 4];
    int8_t scales[QF_QK_K / 16];
    qf_half d;
} qf_block_q6_K;
static_assert(sizeof(qf_block_q6_K) == QF_QK_K / 2 + QF_QK_K / 4 + QF_QK_K / 16 + 2,
              "q6_K block size");

/* Q8_K: x = d * q with a float32 scale; bsums[s] = sum of qs[16s..16s+15]
 * (an activation format for dot products with the K-quants). */
typedef struct qf_block_q8_K {
    float d;
    int8_t qs[QF_QK_K];
    int16_t bsums[QF_QK_K / 16];
} qf_block_q8_K;
static_assert(sizeof(qf_block_q8_K) == 4 + QF_QK_K + QF_QK_K / 16 * 2, "q8_K block size");

#endif
