/* avx512.c - AVX-512 (F, BW, VL, DQ, VNNI) kernels (x86-64; compiled with
 * the flags of cmake/isa.cmake; empty elsewhere).
 *
 * 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) use vpdpbusd on
 * pairs of blocks. The 64 levels of a pair are laid out "interleaved": the
 * four 128-bit lanes hold elements 0-15 of block 0, 0-15 of block 1, 16-31
 * of block 0, 16-31 of block 1 (which is simply the low and high nibbles of
 * the two blocks' 16 packed bytes), and the activations are permuted the
 * same way. Levels are unsigned (Q8_0's are flipped by 0x80), so a block's
 * dot is sum(q * x) - offset * sum(x) with offset 8, 16, 128 (or 0 for
 * Q4_1/Q5_1, whose min is added as m * s from the Q8_1 activation).
 *  - n == 1: the int32 lanes of 8 pairs are reduced in registers to one
 *    vector of 16 per-block sums (a fixed lane permutation, PERM16), which
 *    is scaled once with 16 block scales fetched by one gather; this costs
 *    far fewer instructions per block than scaling every lane, which keeps
 *    generation bound by memory rather than by decoding. Rows are finished
 *    16 at a time (sum16: one transpose-add tree instead of 16 horizontal
 *    sums), as in the K-quant and float gemv paths; every cache line is
 *    prefetched 2 KB ahead.
 *  - n > 1: per-token data (permuted levels, scale and offset vectors) is
 *    prepared once per call into a per-thread scratch "token panel", then
 *    tiles of 4 rows x 4 tokens scale the lanes of each pair directly.
 * K-quants (Q4_K, Q5_K, Q6_K) multiply unsigned levels with vpmaddubsw and
 * accumulate with their integer sub-block scales through vpdpwssd, so the
 * float scale is applied once per 256 values. Float types use FMA on 16
 * lanes with masked tails.
 * Float batches (n >= 6) convert a chunk of activations and each 4-row
 * weight panel to float once and run a 4 x 6 FMA tile.
 * Batches of n >= AMX_MIN_N* tokens go to AMX tiles where available (the
 * AMX sections below: int8 for the quantized types, bf16 for F16);
 * everything else in this file needs AVX-512 only.
 *
 * Results equal ref_dot.c up to float summation order, like avx2.c.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/mem.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* Entries of the table this file replaced: used when scratch memory cannot
 * be had (allocation failure), so that a kernel never fails. */
static qf_gemm_fn fallback[QF_TYPE_COUNT_MAX];

static bool amx_ok;      /* AMX-INT8 tiles usable (CPU + OS permission), see the AMX section */
static bool amx_bf16_ok; /* AMX-BF16 too (F16 batches) */
static bool gemm_amx_f16(const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const uint8_t *x,
                         size_t xs, int64_t n, float *y, int64_t ldy);
static bool gemm_amx(int kind, const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                     const void *xq, size_t xs, int64_t n, float *y, int64_t ldy);
enum { AX_Q4_0, AX_Q4_1, AX_Q5_0, AX_Q5_1, AX_Q8_0, AX_Q4_K, AX_Q5_K, AX_Q6_K };
/* Below these batch sizes the VNNI kernels win: the tile path repacks each
 * weight panel per call, a fixed cost per step whatever n. Measured on a
 * 2-core Sapphire Rapids VM with 1B-model matrices: Q4_0/Q8_0 (direct
 * transposed repack) 1.2-1.5x from n = 6; Q4_1/Q5 (row buffer) break even
 * at n = 8; K-quants break even at 16. */
#define AMX_MIN_N_FAST 6
#define AMX_MIN_N 10
#define AMX_MIN_N_K 16

/* ---- per-thread scratch ----
 * One growing buffer per thread, 64-byte aligned, freed by the key's
 * destructor when the thread exits. */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_ok;

typedef struct scratch_buf {
    void *raw;      /* from qf_malloc */
    uint8_t *data;  /* raw rounded up to 64 */
    size_t cap;
} scratch_buf;

static void scratch_destroy(void *p) {
    scratch_buf *s = p;
    if (s) qf_free(s->raw);
    qf_free(s);
}

static void scratch_init(void) {
    scratch_ok = pthread_key_create(&scratch_key, scratch_destroy) == 0;
}

/* A 64-byte aligned buffer of at least bytes, or NULL. Valid until the next
 * call on the same thread. */
static uint8_t *scratch_get(size_t bytes) {
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_ok) return NULL;
    scratch_buf *s = pthread_getspecific(scratch_key);
    if (s && s->cap >= bytes) return s->data;
    if (!s) {
        s = qf_calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            qf_free(s);
            return NULL;
        }
    }
    const size_t cap = bytes + bytes / 2 + 4096;
    void *raw = qf_malloc(cap + 64);
    if (!raw) return NULL;
    qf_free(s->raw);
    s->raw = raw;
    s->data = (uint8_t *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    s->cap = cap;
    return s->data;
}

/* ---- small helpers ---- */

INLINE uint16_t ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

INLINE float h2f(const uint8_t *p) {
    return _cvtsh_ss(ld16(p));
}

INLINE __m256i ldu256(const uint8_t *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

INLINE __m128i ldu128(const uint8_t *p) {
    return _mm_loadu_si128((const __m128i *)p);
}

/* ---- 32-value blocks: decoding a pair ---- */

enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };

INLINE size_t b32_bytes(int kind) {
    switch (kind) {
    case K_Q4_0: return sizeof(qf_block_q4_0);
    case K_Q4_1: return sizeof(qf_block_q4_1);
    case K_Q5_0: return sizeof(qf_block_q5_0);
    case K_Q5_1: return sizeof(qf_block_q5_1);
    default: return sizeof(qf_block_q8_0);
    }
}

INLINE bool b32_has_min(int kind) {
    return kind == K_Q4_1 || kind == K_Q5_1;
}

INLINE int b32_offset(int kind) {
    return kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : kind == K_Q8_0 ? 128 : 0;
}

/* Byte offset of the packed quants in a block. */
INLINE size_t b32_qs(int kind) {
    switch (kind) {
    case K_Q4_0: return 2;
    case K_Q4_1: return 4;
    case K_Q5_0: return 6;
    case K_Q5_1: return 8;
    default: return 2;
    }
}

/* [a, b] (two 128-bit halves) as one 256-bit vector. */
INLINE __m256i cat128(__m128i a, __m128i b) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1);
}

/* Interleave two 32-byte rows: [a0-15, b0-15, a16-31, b16-31]. */
INLINE __m512i interleave32(__m256i a, __m256i b) {
    const __m512i ab = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    return _mm512_shuffle_i64x2(ab, ab, _MM_SHUFFLE(3, 1, 2, 0));
}

/* Fifth bits of two Q5 blocks as a byte mask in the interleaved order. */
INLINE __mmask64 q5_mask(const uint8_t *qh0, const uint8_t *qh1) {
    uint32_t h0, h1 = 0;
    memcpy(&h0, qh0, 4);
    if (qh1) memcpy(&h1, qh1, 4);
    return (__mmask64)((uint64_t)(h0 & 0xFFFF) | ((uint64_t)(h1 & 0xFFFF) << 16) |
                       ((uint64_t)(h0 >> 16) << 32) | ((uint64_t)(h1 >> 16) << 48));
}

/* The 64 unsigned levels of blocks b0 and b1 (b1 NULL: zeros) in the
 * interleaved order. */
INLINE __m512i b32_levels(int kind, const uint8_t *b0, const uint8_t *b1) {
    if (kind == K_Q8_0) {
        const __m256i w0 = ldu256(b0 + 2);
        const __m256i w1 = b1 ? ldu256(b1 + 2) : _mm256_set1_epi8((char)0x80);
        return _mm512_xor_si512(interleave32(w0, w1), _mm512_set1_epi8((char)0x80));
    }
    const size_t qs = b32_qs(kind);
    const __m256i q = cat128(ldu128(b0 + qs), b1 ? ldu128(b1 + qs) : _mm_setzero_si128());
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    __m512i lv = _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
    if (kind == K_Q5_0 || kind == K_Q5_1) {
        const size_t qh = kind == K_Q5_0 ? 2 : 4;
        const __mmask64 m = q5_mask(b0 + qh, b1 ? b1 + qh : NULL);
        lv = _mm512_mask_add_epi8(lv, m, lv, _mm512_set1_epi8(0x10));
    }
    return lv;
}

/* Activations of Q8_0/Q8_1 blocks a0, a1 (a1 NULL: zeros), interleaved. */
INLINE __m512i act_pair(const uint8_t *a0, const uint8_t *a1, size_t qs) {
    return interleave32(ldu256(a0 + qs), a1 ? ldu256(a1 + qs) : _mm256_setzero_si256());
}

/* ---- 32-value blocks, n == 1 ----
 * Groups of 16 blocks. The 8 pair vectors of int32 partial sums are reduced
 * to one vector whose lane 4k + j holds block PERM16[4k + j] of the group:
 * k, 8 + k, 4 + k, 12 + k for j = 0..3 (see reduce8). */

static const int perm16[16] = {0, 8, 4, 12, 1, 9, 5, 13, 2, 10, 6, 14, 3, 11, 7, 15};

/* s[0..7]: pair p holds blocks 2p, 2p+1 interleaved. */
INLINE __m512i reduce8(const __m512i s[8]) {
    __m512i v[4];
    UNROLL for (int i = 0; i < 4; i++) {
        const __m512i x = _mm512_shuffle_i64x2(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i y = _mm512_shuffle_i64x2(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2));
        v[i] = _mm512_add_epi32(x, y); /* 128-bit lane k: block 4i + k */
    }
    const __m512i p = _mm512_add_epi32(_mm512_unpacklo_epi64(v[0], v[1]), _mm512_unpackhi_epi64(v[0], v[1]));
    const __m512i q = _mm512_add_epi32(_mm512_unpacklo_epi64(v[2], v[3]), _mm512_unpackhi_epi64(v[2], v[3]));
    const __m512i p2 = _mm512_add_epi32(p, _mm512_shuffle_epi32(p, _MM_PERM_CDAB));
    const __m512i q2 = _mm512_add_epi32(q, _mm512_shuffle_epi32(q, _MM_PERM_CDAB));
    return _mm512_mask_blend_epi32(0xAAAA, p2, q2);
}

/* Per-token data of the n == 1 kernel, per group of 16 blocks: the
 * interleaved activations of its 8 pairs, then (in PERM16 order) the
 * offset corrections offset * sum(x) as int32, the activation scales and,
 * for Q8_1, the sums s, as floats. Blocks past the row's end are zero. */
typedef struct gv_group {
    __m512i x[8];
    __m512i corr;
    __m512 dx;
    __m512 sx;
} gv_group;

static void gv_prepare(int kind, const uint8_t *xq, int64_t nb, gv_group *g) {
    const bool has_min = b32_has_min(kind);
    const size_t bx = has_min ? sizeof(qf_block_q8_1) : sizeof(qf_block_q8_0);
    const size_t qs = has_min ? 4 : 2;
    const int off = b32_offset(kind);
    for (int64_t g0 = 0; g0 < nb; g0 += 16) {
        gv_group *G = g + g0 / 16;
        for (int p = 0; p < 8; p++) {
            const int64_t b = g0 + 2 * p;
            G->x[p] = b < nb ? act_pair(xq + (size_t)b * bx, b + 1 < nb ? xq + (size_t)(b + 1) * bx : NULL, qs)
                             : _mm512_setzero_si512();
        }
        int32_t corr[16];
        float dx[16], sx[16];
        for (int l = 0; l < 16; l++) {
            const int64_t b = g0 + perm16[l];
            corr[l] = 0;
            dx[l] = sx[l] = 0;
            if (b >= nb) continue;
            const uint8_t *xb = xq + (size_t)b * bx;
            int sum = 0;
            for (int j = 0; j < 32; j++)
                sum += (int8_t)xb[qs + j];
            corr[l] = off * sum;
            dx[l] = h2f(xb);
            if (has_min) sx[l] = h2f(xb + 2);
        }
        G->corr = _mm512_loadu_si512(corr);
        G->dx = _mm512_loadu_ps(dx);
        G->sx = _mm512_loadu_ps(sx);
    }
}

/* Sum of each of 16 vectors, as one vector (lane i: sum of v[i]): a
 * transpose-and-add tree, cheaper than 16 horizontal sums. */
static __m512 sum16(const __m512 v[16]) {
    __m512 a[8], b[4], c[2];
    for (int i = 0; i < 8; i++) { /* lanes 0-7: v[2i], 8-15: v[2i+1], each 2 partials */
        const __m512 x = _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512 y = _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2));
        a[i] = _mm512_add_ps(x, y);
    }
    for (int i = 0; i < 4; i++) { /* 128-bit lane k: [a[2i] k, a[2i+1] k] halves added */
        const __m512 x = _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512 y = _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1));
        b[i] = _mm512_add_ps(x, y);
    }
    /* b[i] lane l holds 4 partial sums of vector 4i + l (l = 0..3) */
    for (int i = 0; i < 2; i++) {
        const __m512 x = _mm512_unpacklo_ps(b[2 * i], b[2 * i + 1]);
        const __m512 y = _mm512_unpackhi_ps(b[2 * i], b[2 * i + 1]);
        c[i] = _mm512_add_ps(x, y);
    }
    const __m512 x = _mm512_unpacklo_ps(c[0], c[1]), y = _mm512_unpackhi_ps(c[0], c[1]);
    /* lane 4l + j now holds vector PERM16[4l + j] (as in reduce8): put
     * vector i into lane i */
    static const int inv16[16] = {0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15};
    return _mm512_permutexvar_ps(_mm512_loadu_si512(inv16), _mm512_add_ps(x, y));
}

/* One row (n == 1): the unreduced accumulator of dot(row, activations). */
INLINE __m512 gv_row(int kind, const uint8_t *w, int64_t nb, const gv_group *g) {
    const size_t bw = b32_bytes(kind);
    const bool has_min = b32_has_min(kind);
    const __m512i idx = _mm512_mullo_epi32(_mm512_loadu_si512(perm16), _mm512_set1_epi32((int)bw));
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < nb; g0 += 16) {
        const gv_group *G = g + g0 / 16;
        const uint8_t *wg = w + (size_t)g0 * bw;
        const bool full = nb - g0 >= 16;
        __m512i s[8];
        UNROLL for (int p = 0; p < 8; p++) {
            const int64_t b = g0 + 2 * p;
            if (full || b < nb) {
                const uint8_t *b1 = (full || b + 1 < nb) ? wg + (size_t)(2 * p + 1) * bw : NULL;
                s[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), b32_levels(kind, wg + (size_t)(2 * p) * bw, b1), G->x[p]);
            } else {
                s[p] = _mm512_setzero_si512();
            }
        }
        /* every line of the group 2 KB ahead: measured ~10% over relying on
         * the hardware prefetcher alone (distance 1-8 KB and T0/T1 hints
         * perform the same; NTA is slower) */
        for (size_t o = 0; o < 16 * bw; o += 64)
            _mm_prefetch((const char *)wg + 2048 + o, _MM_HINT_T0);
        const __m512i sum = _mm512_sub_epi32(reduce8(s), G->corr);
        const __mmask16 live = full ? 0xFFFF : _mm512_cmplt_epi32_mask(_mm512_loadu_si512(perm16), _mm512_set1_epi32((int)(nb - g0)));
        const __m512i dh = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, wg, 1);
        const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dh));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, G->dx), acc);
        if (has_min) {
            const __m512i mh = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, wg + 2, 1);
            acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(mh)), G->sx, acc);
        }
    }
    return acc;
}

/* ---- 32-value blocks, n > 1 ----
 * Token panel: per token and pair, the interleaved activations, the scale
 * vector [dx0 x4, dx1 x4, dx0 x4, dx1 x4], the offset correction
 * -offset * sum(x) per lane and, for Q8_1, s / 8 in the same pattern (the
 * 16 lanes of m * s / 8 add up to m0 * s0 + m1 * s1). */
typedef struct tp_pair {
    __m512i x;
    __m512i corr;
    __m512 dx;
    __m512 sx;
} tp_pair;

INLINE __m512 pair_scale(float a, float b) {
    const __m128 ab = _mm_setr_ps(a, a, a, a); /* lanes 0-3 */
    const __m128 bb = _mm_set1_ps(b);
    const __m256 h = _mm256_insertf128_ps(_mm256_castps128_ps256(ab), bb, 1);
    return _mm512_insertf32x8(_mm512_castps256_ps512(h), h, 1);
}

/* [h0 x4, h1 x4, h0 x4, h1 x4] as floats from two fp16 scales. */
INLINE __m512 pair_scale_h(const uint8_t *p0, const uint8_t *p1) {
    const uint32_t both = (uint32_t)ld16(p0) | (p1 ? (uint32_t)ld16(p1) << 16 : 0);
    const __m128i v = _mm_shuffle_epi8(_mm_cvtsi32_si128((int)both),
                                       _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3));
    const __m256 f = _mm256_cvtph_ps(v);
    return _mm512_insertf32x8(_mm512_castps256_ps512(f), f, 1);
}

static void tp_prepare(int kind, const uint8_t *xq, size_t xs, int64_t n, int64_t nb, tp_pair *tp) {
    const bool has_min = b32_has_min(kind);
    const size_t bx = has_min ? sizeof(qf_block_q8_1) : sizeof(qf_block_q8_0);
    const size_t qs = has_min ? 4 : 2;
    const int off = b32_offset(kind);
    const int64_t np = (nb + 1) / 2;
    for (int64_t t = 0; t < n; t++) {
        const uint8_t *x = xq + (size_t)t * xs;
        for (int64_t p = 0; p < np; p++) {
            tp_pair *P = tp + t * np + p;
            const uint8_t *a0 = x + (size_t)(2 * p) * bx;
            const uint8_t *a1 = 2 * p + 1 < nb ? a0 + bx : NULL;
            P->x = act_pair(a0, a1, qs);
            const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)off), P->x);
            P->corr = _mm512_sub_epi32(_mm512_setzero_si512(), s);
            P->dx = pair_scale_h(a0, a1);
            if (has_min) {
                const float s0 = h2f(a0 + 2) * 0.125f, s1 = a1 ? h2f(a1 + 2) * 0.125f : 0.0f;
                P->sx = pair_scale(s0, s1);
            }
        }
    }
}

#define B32_R 4
#define B32_T 4

INLINE void b32_tile(const int kind, const int R, const int T, const uint8_t *w, size_t wrb, int64_t nb,
                     const tp_pair *tp, int64_t np, float *y, int64_t ldy) {
    const size_t bw = b32_bytes(kind);
    const bool has_min = b32_has_min(kind);
    __m512 acc[B32_R][B32_T];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < np; p++) {
        __m512i lv[B32_R];
        __m512 dw[B32_R], mw[B32_R];
        const bool two = 2 * p + 1 < nb;
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *b0 = w + (size_t)r * wrb + (size_t)(2 * p) * bw;
            lv[r] = b32_levels(kind, b0, two ? b0 + bw : NULL);
            dw[r] = pair_scale_h(b0, two ? b0 + bw : NULL);
            if (has_min) mw[r] = pair_scale_h(b0 + 2, two ? b0 + bw + 2 : NULL);
        }
        UNROLL for (int t = 0; t < T; t++) {
            const tp_pair *P = tp + t * np + p;
            const __m512i corr = P->corr;
            const __m512 dx = P->dx;
            UNROLL for (int r = 0; r < R; r++) {
                const __m512i s = _mm512_dpbusd_epi32(corr, lv[r], P->x);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[r], dx), acc[r][t]);
                if (has_min) acc[r][t] = _mm512_fmadd_ps(mw[r], P->sx, acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

/* Tokens per token panel (per-thread scratch), a multiple of B32_T. */
#define B32_TC 16

INLINE void gemm_b32(const int kind, qf_type type, const void *W, size_t wrb, int64_t cols, int64_t r0,
                     int64_t r1, const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {
    const int64_t nb = cols / 32, np = (nb + 1) / 2;
    const uint8_t *w = W;
    if (n == 1) {
        gv_group *g = (gv_group *)scratch_get(sizeof(gv_group) * (size_t)((nb + 15) / 16));
        if (!g) {
            fallback[type](W, wrb, cols, r0, r1, xq, xs, n, y, ldy);
            return;
        }
        gv_prepare(kind, xq, nb, g);
        for (int64_t r = r0; r < r1; r += 16) {
            const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
            __m512 acc[16];
            for (int i = 0; i < 16; i++)
                acc[i] = i < nr ? gv_row(kind, w + (size_t)(r + i) * wrb, nb, g) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(y + r, (__mmask16)((1u << nr) - 1), sum16(acc));
        }
        return;
    }
    if (amx_ok && n >= (kind == K_Q4_0 || kind == K_Q8_0 ? AMX_MIN_N_FAST : AMX_MIN_N)) {
        static const int ax[] = {AX_Q4_0, AX_Q4_1, AX_Q5_0, AX_Q5_1, AX_Q8_0};
        if (gemm_amx(ax[kind], W, wrb, cols, r0, r1, xq, xs, n, y, ldy)) return;
        fallback[type](W, wrb, cols, r0, r1, xq, xs, n, y, ldy);
        return;
    }
    const int64_t tc = n < B32_TC ? n : B32_TC;
    tp_pair *tp = (tp_pair *)scratch_get(sizeof(tp_pair) * (size_t)(tc * np));
    if (!tp) {
        fallback[type](W, wrb, cols, r0, r1, xq, xs, n, y, ldy);
        return;
    }
    for (int64_t t0 = 0; t0 < n; t0 += tc) {
        const int64_t nt = n - t0 < tc ? n - t0 : tc;
        tp_prepare(kind, (const uint8_t *)xq + (size_t)t0 * xs, xs, nt, nb, tp);
        for (int64_t r = r0; r < r1;) {
            const int R = r1 - r >= B32_R ? B32_R : 1;
            const uint8_t *wr = w + (size_t)r * wrb;
            for (int64_t t = 0; t < nt;) {
                const int T = nt - t >= B32_T ? B32_T : 1;
                float *yt = y + (t0 + t) * ldy + r;
                const tp_pair *pt = tp + t * np;
                if (R == B32_R && T == B32_T) b32_tile(kind, B32_R, B32_T, wr, wrb, nb, pt, np, yt, ldy);
                else if (R == B32_R) b32_tile(kind, B32_R, 1, wr, wrb, nb, pt, np, yt, ldy);
                else if (T == B32_T) b32_tile(kind, 1, B32_T, wr, wrb, nb, pt, np, yt, ldy);
                else b32_tile(kind, 1, 1, wr, wrb, nb, pt, np, yt, ldy);
                t += T;
            }
            r += R;
        }
    }
}

#define DEFINE_B32(name, kind, type)                                                               \
    static void name(const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,              \
                     const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {                \
        gemm_b32(kind, type, W, wrb, cols, r0, r1, xq, xs, n, y, ldy);                             \
    }
DEFINE_B32(gemm_q4_0, K_Q4_0, QF_TYPE_Q4_0)
DEFINE_B32(gemm_q4_1, K_Q4_1, QF_TYPE_Q4_1)
DEFINE_B32(gemm_q5_0, K_Q5_0, QF_TYPE_Q5_0)
DEFINE_B32(gemm_q5_1, K_Q5_1, QF_TYPE_Q5_1)
DEFINE_B32(gemm_q8_0, K_Q8_0, QF_TYPE_Q8_0)

/* ---- K-quants: Q4_K, Q5_K, Q6_K against Q8_K ----
 * A super-block is 4 vectors of 64 levels, each matching 64 consecutive
 * activations; vpmaddubsw gives int16 pair sums which vpdpwssd multiplies
 * by the int16 sub-block scale (permuted into place with vpermw) and adds
 * to int32. The float scale d_w * d_x (and the Q4_K/Q5_K min term through
 * the activation's bsums) is applied once per super-block. */

enum { KQ_Q4, KQ_Q5, KQ_Q6 };

INLINE void k4_scales(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
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

/* One decoded weight super-block. */
typedef struct kq_row {
    __m512i lv[4];  /* levels of elements 64v .. 64v + 63 */
    __m512i sc[4];  /* int16 scale of each int16 lane of maddubs(lv[v], x) */
    __m256i mins;   /* Q4/Q5: int16 min of sub-block j in lanes 2j, 2j+1 */
    float d, dmin;
} kq_row;

INLINE void kq_decode(const int kind, const uint8_t *blk, kq_row *k) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (kind == KQ_Q6) {
        const qf_block_q6_K *b = (const qf_block_q6_K *)blk;
        k->d = h2f((const uint8_t *)&b->d);
        const __m128i s8 = ldu128((const uint8_t *)b->scales);
        const __m512i s16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(s8));
        UNROLL for (int h = 0; h < 2; h++) {
            const __m512i L = _mm512_loadu_si512(b->ql + 64 * h);
            const __m256i qh = ldu256(b->qh + 32 * h);
            const __m512i Q = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            const __m512i lo = _mm512_and_si512(L, m4), hi = _mm512_and_si512(_mm512_srli_epi16(L, 4), m4);
            const __m512i q0 = _mm512_and_si512(Q, _mm512_set1_epi8(3));
            const __m512i q1 = _mm512_and_si512(_mm512_srli_epi16(Q, 4), _mm512_set1_epi8(3));
            k->lv[2 * h] = _mm512_or_si512(lo, _mm512_slli_epi16(q0, 4));
            k->lv[2 * h + 1] = _mm512_or_si512(hi, _mm512_slli_epi16(q1, 4));
        }
        /* vector v covers sub-blocks 4v .. 4v+3: int16 lane i -> 4v + i/8 */
        UNROLL for (int v = 0; v < 4; v++) {
            const __m512i idx = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * v)),
                                                 _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 3));
            k->sc[v] = _mm512_permutexvar_epi16(idx, s16);
        }
        return;
    }
    const bool five = kind == KQ_Q5;
    k->d = h2f(blk);
    k->dmin = h2f(blk + 2);
    uint8_t sc[8], mn[8];
    k4_scales(blk + 4, sc, mn);
    const __m128i dup = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    k->mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)mn), dup));
    const __m512i s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
    const uint8_t *qs = blk + 16 + (five ? QF_QK_K / 8 : 0);
    __m512i QH = _mm512_setzero_si512();
    if (five) {
        const __m256i qh = ldu256(blk + 16);
        QH = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 1), 1);
    }
    UNROLL for (int c = 0; c < 4; c++) {
        const __m256i v = ldu256(qs + 32 * c);
        const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
        __m512i lv = _mm512_and_si512(z, m4);
        if (five) {
            const __mmask64 hb = _mm512_test_epi8_mask(QH, _mm512_set1_epi8((char)(1 << (2 * c))));
            lv = _mm512_mask_add_epi8(lv, hb, lv, _mm512_set1_epi8(0x10));
        }
        k->lv[c] = lv;
        /* low 256 bits: sub-block 2c, high: 2c + 1 */
        const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)), _mm256_set1_epi16((short)(2 * c + 1)), 1);
        k->sc[c] = _mm512_permutexvar_epi16(idx, s16);
    }
}

#define KQ_R 4
#define KQ_T 4

/* raw != NULL (T == 1 only): store the R unreduced accumulators there
 * instead of their sums into y (the caller reduces 16 rows at once). */
INLINE void kq_tile(const int kind, const int R, const int T, const uint8_t *w, size_t wrb, int64_t nsb,
                    const uint8_t *x, size_t xs, float *y, int64_t ldy, __m512 *raw) {
    const size_t bw = kind == KQ_Q4 ? sizeof(qf_block_q4_K) : kind == KQ_Q5 ? sizeof(qf_block_q5_K) : sizeof(qf_block_q6_K);
    __m512 acc[KQ_R][KQ_T];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t s = 0; s < nsb; s++) {
        kq_row k[KQ_R];
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + (size_t)r * wrb + (size_t)s * bw;
            if (T == 1) { /* generation: every line 2 KB ahead in the row */
                for (size_t o = 0; o < bw; o += 64)
                    _mm_prefetch((const char *)blk + 2048 + o, _MM_HINT_T0);
            }
            kq_decode(kind, blk, &k[r]);
        }
        UNROLL for (int t = 0; t < T; t++) {
            const qf_block_q8_K *xb = (const qf_block_q8_K *)(x + (size_t)t * xs) + s;
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb->bsums);
            __m512i ia[KQ_R];
            UNROLL for (int r = 0; r < R; r++)
                ia[r] = _mm512_setzero_si512();
            UNROLL for (int v = 0; v < 4; v++) {
                const __m512i xv = _mm512_loadu_si512(xb->qs + 64 * v);
                /* Q6_K's -32 offset per int16 lane, shared by the rows:
                 * lanes then hold exact (q - 32) * x sums (see avx2.c) */
                const __m512i ox = kind == KQ_Q6 ? _mm512_maddubs_epi16(_mm512_set1_epi8(32), xv) : _mm512_setzero_si512();
                UNROLL for (int r = 0; r < R; r++) {
                    __m512i p = _mm512_maddubs_epi16(k[r].lv[v], xv);
                    if (kind == KQ_Q6) p = _mm512_sub_epi16(p, ox);
                    ia[r] = _mm512_dpwssd_epi32(ia[r], p, k[r].sc[v]);
                }
            }
            UNROLL for (int r = 0; r < R; r++) {
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r]), _mm512_set1_ps(k[r].d * xb->d), acc[r][t]);
                if (kind != KQ_Q6) {
                    const __m256i m = _mm256_madd_epi16(k[r].mins, bsums);
                    const __m512 mf = _mm512_cvtepi32_ps(_mm512_inserti64x4(_mm512_castsi256_si512(m), _mm256_setzero_si256(), 1));
                    acc[r][t] = _mm512_fmadd_ps(mf, _mm512_set1_ps(-k[r].dmin * xb->d), acc[r][t]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        if (raw) {
            raw[r] = acc[r][0];
            continue;
        }
        UNROLL for (int t = 0; t < T; t++)
            y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

INLINE void gemm_kq(const int kind, const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                    const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {
    if (amx_ok && n >= AMX_MIN_N_K) {
        const int ax = kind == KQ_Q4 ? AX_Q4_K : kind == KQ_Q5 ? AX_Q5_K : AX_Q6_K;
        if (gemm_amx(ax, W, wrb, cols, r0, r1, xq, xs, n, y, ldy)) return;
    }
    const int64_t nsb = cols / QF_QK_K;
    const uint8_t *w = W, *x = xq;
    if (n == 1) { /* rows in groups of 16, reduced together */
        for (int64_t r = r0; r < r1; r += 16) {
            const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
            __m512 acc[16];
            float unused[KQ_R]; /* y of the tile, not written when raw is given */
            int i = 0;
            for (; i + KQ_R <= nr; i += KQ_R)
                kq_tile(kind, KQ_R, 1, w + (size_t)(r + i) * wrb, wrb, nsb, x, xs, unused, 0, acc + i);
            for (; i < nr; i++)
                kq_tile(kind, 1, 1, w + (size_t)(r + i) * wrb, wrb, nsb, x, xs, unused, 0, acc + i);
            for (; i < 16; i++)
                acc[i] = _mm512_setzero_ps();
            _mm512_mask_storeu_ps(y + r, (__mmask16)((1u << nr) - 1), sum16(acc));
        }
        return;
    }
    /* token chunks that stay in L2 while a row tile is reused */
    int64_t chunk = (int64_t)((256 * 1024) / xs);
    chunk = chunk < KQ_T ? KQ_T : chunk - chunk % KQ_T;
    for (int64_t t0 = 0; t0 < n; t0 += chunk) {
        const int64_t t1 = n - t0 < chunk ? n : t0 + chunk;
        for (int64_t r = r0; r < r1;) {
            const int R = r1 - r >= KQ_R ? KQ_R : 1;
            const uint8_t *wr = w + (size_t)r * wrb;
            for (int64_t t = t0; t < t1;) {
                const int T = t1 - t >= KQ_T ? KQ_T : 1;
                const uint8_t *xt = x + (size_t)t * xs;
                float *yt = y + t * ldy + r;
                if (R == KQ_R && T == KQ_T) kq_tile(kind, KQ_R, KQ_T, wr, wrb, nsb, xt, xs, yt, ldy, NULL);
                else if (R == KQ_R) kq_tile(kind, KQ_R, 1, wr, wrb, nsb, xt, xs, yt, ldy, NULL);
                else if (T == KQ_T) kq_tile(kind, 1, KQ_T, wr, wrb, nsb, xt, xs, yt, ldy, NULL);
                else kq_tile(kind, 1, 1, wr, wrb, nsb, xt, xs, yt, ldy, NULL);
                t += T;
            }
            r += R;
        }
    }
}

#define DEFINE_KQ(name, kind)                                                                      \
    static void name(const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,              \
                     const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {                \
        gemm_kq(kind, W, wrb, cols, r0, r1, xq, xs, n, y, ldy);                                    \
    }
DEFINE_KQ(gemm_q4_K, KQ_Q4)
DEFINE_KQ(gemm_q5_K, KQ_Q5)
DEFINE_KQ(gemm_q6_K, KQ_Q6)

/* ---- float types: F32 x F32, F16 x F16, BF16 x F32 ---- */

enum { F_F32, F_F16, F_BF16 };

/* 16 weights (m: which lanes exist) */
INLINE __m512 fw16(int kind, const uint8_t *row, int64_t i, __mmask16 m) {
    switch (kind) {
    case F_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
    case F_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * i)), 16));
    default:
        return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    }
}

INLINE __m512 fx16(int kind, const uint8_t *x, int64_t i, __mmask16 m) {
    return kind == F_F16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + 2 * i))
                         : _mm512_maskz_loadu_ps(m, (const float *)x + i);
}

#define F_R 4
#define F_T 4

/* raw: as in kq_tile */
INLINE void f_tile(const int kind, const int R, const int T, const uint8_t *w, size_t wrb, int64_t cols,
                   const uint8_t *x, size_t xs, float *y, int64_t ldy, __m512 *raw) {
    __m512 acc[F_R][F_T];
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < cols; i += 16) {
        const __mmask16 m = cols - i >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - i)) - 1);
        __m512 wv[F_R];
        UNROLL for (int r = 0; r < R; r++) {
            if (T == 1) /* one line per 16 values is at most 64 bytes (F32) */
                _mm_prefetch((const char *)(w + (size_t)r * wrb) + (kind == F_F32 ? 4 : 2) * i + 2048, _MM_HINT_T0);
            wv[r] = fw16(kind, w + (size_t)r * wrb, i, m);
        }
        UNROLL for (int t = 0; t < T; t++) {
            const __m512 xv = fx16(kind, x + (size_t)t * xs, i, m);
            UNROLL for (int r = 0; r < R; r++)
                acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        if (raw) {
            raw[r] = acc[r][0];
            continue;
        }
        UNROLL for (int t = 0; t < T; t++)
            y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

#define FB_T 6 /* tokens per tile of the batch path (below) */
static bool gemm_f_batch(int kind, const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                         const uint8_t *x, size_t xs, int64_t n, float *y, int64_t ldy);

/* One token: rows in groups of 16, reduced together (sum16). */
INLINE void gemv_f(const int kind, const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                   const uint8_t *x, size_t xs, float *y) {
    for (int64_t r = r0; r < r1; r += 16) {
        const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
        __m512 acc[16];
        float unused[F_R]; /* y of the tile, not written when raw is given */
        int i = 0;
        for (; i + F_R <= nr; i += F_R)
            f_tile(kind, F_R, 1, w + (size_t)(r + i) * wrb, wrb, cols, x, xs, unused, 0, acc + i);
        for (; i < nr; i++)
            f_tile(kind, 1, 1, w + (size_t)(r + i) * wrb, wrb, cols, x, xs, unused, 0, acc + i);
        for (; i < 16; i++)
            acc[i] = _mm512_setzero_ps();
        _mm512_mask_storeu_ps(y + r, (__mmask16)((1u << nr) - 1), sum16(acc));
    }
}

INLINE void gemm_f(const int kind, const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                   const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {
    const uint8_t *w = W, *x = xq;
    /* one token; or a few tokens over a small matrix that stays in L1 (an
     * attention block of keys for the query heads of one kv head): token by
     * token, the 16-row reduction beats a horizontal sum per output */
    if (n == 1 || (n < FB_T && (size_t)(r1 - r0) * wrb <= 16384)) {
        for (int64_t t = 0; t < n; t++)
            gemv_f(kind, w, wrb, cols, r0, r1, x + (size_t)t * xs, xs, y + t * ldy);
        return;
    }
    if (kind == F_F16 && amx_bf16_ok && n >= AMX_MIN_N_K && gemm_amx_f16(w, wrb, cols, r0, r1, x, xs, n, y, ldy))
        return;
    if (n >= FB_T && gemm_f_batch(kind, w, wrb, cols, r0, r1, x, xs, n, y, ldy)) return;
    int64_t chunk = (int64_t)((256 * 1024) / (xs ? xs : 1));
    chunk = chunk < F_T ? F_T : chunk - chunk % F_T;
    for (int64_t t0 = 0; t0 < n; t0 += chunk) {
        const int64_t t1 = n - t0 < chunk ? n : t0 + chunk;
        for (int64_t r = r0; r < r1;) {
            const int R = r1 - r >= F_R ? F_R : 1;
            const uint8_t *wr = w + (size_t)r * wrb;
            for (int64_t t = t0; t < t1;) {
                const int T = t1 - t >= F_T ? F_T : 1;
                const uint8_t *xt = x + (size_t)t * xs;
                float *yt = y + t * ldy + r;
                if (R == F_R && T == F_T) f_tile(kind, F_R, F_T, wr, wrb, cols, xt, xs, yt, ldy, NULL);
                else if (R == F_R) f_tile(kind, F_R, 1, wr, wrb, cols, xt, xs, yt, ldy, NULL);
                else if (T == F_T) f_tile(kind, 1, F_T, wr, wrb, cols, xt, xs, yt, ldy, NULL);
                else f_tile(kind, 1, 1, wr, wrb, cols, xt, xs, yt, ldy, NULL);
                t += T;
            }
            r += R;
        }
    }
}

/* Batches (n > 1): the activations of a chunk of tokens and each 4-row
 * weight panel are converted to float once (scratch), then a 4 x 6 tile
 * of pure FMAs runs over them: conversions no longer sit in the inner loop
 * (vcvtph2ps costs as much as an FMA). */
#define FB_R  4
#define FB_TC 48 /* tokens per chunk, a multiple of FB_T */

INLINE void fb_tile(const int T, const float *wp, int64_t cols, const float *xp, float *y, int64_t ldy, int R) {
    __m512 acc[FB_R][FB_T];
    UNROLL for (int r = 0; r < FB_R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < cols; i += 16) {
        __m512 wv[FB_R];
        UNROLL for (int r = 0; r < FB_R; r++)
            wv[r] = _mm512_load_ps(wp + r * cols + i);
        UNROLL for (int t = 0; t < T; t++) {
            const __m512 xv = _mm512_load_ps(xp + t * cols + i);
            UNROLL for (int r = 0; r < FB_R; r++)
                acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    for (int r = 0; r < R; r++) {
        UNROLL for (int t = 0; t < T; t++)
            y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

/* n values of one row (weights or activations) as floats; pads to cp. */
INLINE void f_row(int kind, bool act, const uint8_t *src, int64_t cols, int64_t cp, float *dst) {
    for (int64_t i = 0; i < cp; i += 16) {
        const __mmask16 m = cols - i >= 16 ? 0xFFFF : cols > i ? (__mmask16)((1u << (cols - i)) - 1) : 0;
        _mm512_store_ps(dst + i, act ? fx16(kind, src, i, m) : fw16(kind, src, i, m));
    }
}

static bool gemm_f_batch(int kind, const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                         const uint8_t *x, size_t xs, int64_t n, float *y, int64_t ldy) {
    const int64_t cp = (cols + 15) / 16 * 16;
    float *xp = (float *)scratch_get(sizeof(float) * (size_t)((FB_TC + FB_R) * cp));
    if (!xp) return false;
    float *wp = xp + FB_TC * cp;
    for (int64_t t0 = 0; t0 < n; t0 += FB_TC) {
        const int64_t nt = n - t0 < FB_TC ? n - t0 : FB_TC;
        for (int64_t t = 0; t < nt; t++)
            f_row(kind, true, x + (size_t)(t0 + t) * xs, cols, cp, xp + t * cp);
        for (int64_t r = r0; r < r1; r += FB_R) {
            const int R = r1 - r < FB_R ? (int)(r1 - r) : FB_R;
            for (int i = 0; i < FB_R; i++) {
                if (i < R) f_row(kind, false, w + (size_t)(r + i) * wrb, cols, cp, wp + i * cp);
                else memset(wp + i * cp, 0, sizeof(float) * (size_t)cp);
            }
            for (int64_t t = 0; t < nt;) {
                const int T = nt - t >= FB_T ? FB_T : 1;
                float *yt = y + (t0 + t) * ldy + r;
                if (T == FB_T) fb_tile(FB_T, wp, cp, xp + t * cp, yt, ldy, R);
                else fb_tile(1, wp, cp, xp + t * cp, yt, ldy, R);
                t += T;
            }
        }
    }
    return true;
}

#define DEFINE_F(name, kind)                                                                       \
    static void name(const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,              \
                     const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {                \
        gemm_f(kind, W, wrb, cols, r0, r1, xq, xs, n, y, ldy);                                     \
    }
DEFINE_F(gemm_f32, F_F32)
DEFINE_F(gemm_f16, F_F16)
DEFINE_F(gemm_bf16, F_BF16)

#if defined(__AMX_TILE__) && defined(__AMX_INT8__)

/* ---- AMX: tile kernels for prompt processing (n >= AMX_MIN_N) ----
 * Sapphire Rapids and later multiply int8 tiles in one instruction
 * (TDPBSSD: C[16 x 16 int32] += A[16 x K] * B[K x 16], K <= 64). Here A is
 * 16 tokens' activations, read in place from the Q8_0/Q8_1/Q8_K rows, and
 * B is 16 weight rows repacked per row tile into the "VNNI" layout (4
 * consecutive values of a row per int32 column), so C[t][r] holds one
 * token per tile row and results leave as one vector store per token.
 * On this hardware a TDPBSSD costs about the same for K = 32 and 64, and
 * storing C about as much as the product, so the kernels accumulate as many
 * values per store as the scales allow:
 *  - 32-value blocks: one K = 32 product per block, stored and scaled right
 *    away: acc[t][r] += C[t][r] * d_w[r] * d_x[t] (+ m_w * s_x for
 *    Q4_1/Q5_1).
 *  - K-quants: the integer sub-block scale is folded into the weights,
 *    p = level * scale (Q6_K: (q - 32) * scale), split exactly into two
 *    int8 planes p = 128 * hi + lo (lo in 0..127); each plane accumulates a
 *    whole 256-value super-block with K = 64 products, so C = C_lo + 128 *
 *    C_hi is the reference's integer sum, stored once per super-block and
 *    scaled by d_w * d_x. The Q4_K/Q5_K min term (dmin_w * m_j) * (bsum_j *
 *    d_x) is subtracted in float.
 * The activations are repacked once per call into contiguous tiles (tile
 * loads of 16 rows 2 KB apart are markedly slower), zero-padded to whole
 * 32-token steps. Tokens go in chunks that stay in L2; each row tile's B
 * panel is built once per chunk. C tiles are double-buffered so that the
 * float work of one group overlaps the tile work of the next. The tile
 * configuration is loaded at the start of each call and released at its
 * end. */

#define AMX_TOK 32 /* tokens per step: two A tiles */

typedef struct amx_cfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) amx_cfg;

INLINE bool ax_is_k(int kind) {
    return kind >= AX_Q4_K;
}

INLINE bool ax_b32_min(int kind) {
    return kind == AX_Q4_1 || kind == AX_Q5_1;
}

INLINE bool ax_k_min(int kind) {
    return kind == AX_Q4_K || kind == AX_Q5_K;
}

/* Scratch of one call. Blocks: G = 32, RT = 32 rows (two B tiles) per
 * step, ns = number of blocks; K-quants: G = 64, RT = 16, ns = number of
 * super-blocks. */
typedef struct ax_plan {
    int kind, G, RT;
    bool perm;        /* B columns (weight rows) in ax_perm order within each 16 (ax_weights_b32) */
    const uint8_t *pf; /* next row tile's weights, fetched into L2 during this tile's tile work (NULL: none) */
    int pf_rows;
    size_t pf_wrb, pf_bw;
    int64_t cols, ns, n, tch;
    size_t xs, qoff;  /* activation row stride; offset of group g's values */
    float *dx;        /* [n][ns] d_x per block / super-block */
    float *sx;        /* [n][ns] s_x (Q4_1/Q5_1) */
    float *bs;        /* [n][ns][8] (bsum_2j + bsum_2j+1) * d_x (Q4_K/Q5_K) */
    int8_t *b;        /* blocks: [ns][RT/16][8][64]; K: [ns][4][2][16][64] */
    float *dw;        /* [ns][RT] d_w */
    float *mw;        /* blocks: [ns][RT] m_w; K: [ns][8][16] dmin_w * m_j */
    int8_t *xa;       /* activations in tile order: [npad/16][ng][16][G] */
    float *acc;       /* [AMX_TOK][RT] */
    int32_t *c;       /* [2][4][16][16]: C tiles of two consecutive groups */
} ax_plan;

INLINE size_t al64(size_t n) {
    return (n + 63) & ~(size_t)63;
}

static bool ax_plan_init(ax_plan *p, int kind, int64_t cols, int64_t n, size_t xs) {
    const bool k = ax_is_k(kind);
    p->kind = kind;
    p->perm = !k; /* every 32-value block format takes ax_weights_rows */
    p->G = k ? 64 : 32;
    p->RT = k ? 16 : 32;
    p->cols = cols;
    p->ns = k ? cols / QF_QK_K : cols / 32;
    p->n = n;
    p->xs = xs;
    /* packed activations of a chunk stay in L2 (about 1 MB) */
    int64_t tch = (int64_t)((1u << 20) / (size_t)cols);
    tch = tch < AMX_TOK ? AMX_TOK : tch - tch % AMX_TOK;
    p->tch = tch;
    /* per-token scales for n rounded up to whole steps (the padding tokens
     * get zeros) */
    const int64_t npad = (n + AMX_TOK - 1) / AMX_TOK * AMX_TOK;
    const size_t sz_dx = al64(sizeof(float) * (size_t)(npad * p->ns));
    const size_t sz_sx = ax_b32_min(kind) ? sz_dx : 0;
    const size_t sz_bs = ax_k_min(kind) ? al64(sizeof(float) * (size_t)(npad * p->ns * 8)) : 0;
    const size_t sz_b = al64((size_t)(p->RT * cols) * (k ? 2 : 1));
    const size_t sz_dw = al64(sizeof(float) * (size_t)(p->ns * p->RT));
    const size_t sz_mw = al64(sizeof(float) * (size_t)(p->ns * (k ? 8 * 16 : p->RT)));
    const size_t sz_xa = al64((size_t)(npad * cols));
    const size_t sz_acc = sizeof(float) * AMX_TOK * (size_t)p->RT, sz_c = sizeof(int32_t) * 2 * 4 * 256;
    uint8_t *m = scratch_get(sz_dx + sz_sx + sz_bs + sz_b + sz_dw + sz_mw + sz_xa + sz_acc + sz_c);
    if (!m) return false;
    p->dx = (float *)m;
    m += sz_dx;
    p->sx = (float *)m;
    m += sz_sx;
    p->bs = (float *)m;
    m += sz_bs;
    p->b = (int8_t *)m;
    m += sz_b;
    p->dw = (float *)m;
    m += sz_dw;
    p->mw = (float *)m;
    m += sz_mw;
    p->xa = (int8_t *)m;
    m += sz_xa;
    p->acc = (float *)m;
    m += sz_acc;
    p->c = (int32_t *)m;
    return true;
}

/* The int8 activations of all n tokens in tile order (once per call): tile
 * (token tile i, group g) is 16 rows of G bytes, contiguous, so that tile
 * loads read 1 KB (512 B) in one piece instead of 16 rows 2 KB apart.
 * Padding tokens are zero. */
static void ax_token_pack(const ax_plan *p, const uint8_t *xq) {
    const int G = p->G;
    const int64_t npad = (p->n + AMX_TOK - 1) / AMX_TOK * AMX_TOK, ng = p->cols / G;
    const bool k = ax_is_k(p->kind), one = ax_b32_min(p->kind);
    const size_t bx = one ? sizeof(qf_block_q8_1) : sizeof(qf_block_q8_0), qo = one ? 4 : 2;
    for (int64_t t = 0; t < npad; t++) {
        int8_t *dst = p->xa + (size_t)(t / 16) * (size_t)(ng * 16 * G) + (size_t)(t % 16) * (size_t)G;
        if (t >= p->n) {
            for (int64_t g = 0; g < ng; g++)
                memset(dst + (size_t)g * 16 * (size_t)G, 0, (size_t)G);
            continue;
        }
        const uint8_t *x = xq + (size_t)t * p->xs;
        for (int64_t g = 0; g < ng; g++) {
            const uint8_t *src = k ? (const uint8_t *)((const qf_block_q8_K *)x + (g * G) / QF_QK_K)->qs + (g * G) % QF_QK_K
                                   : x + (size_t)g * bx + qo;
            if (G == 64) _mm512_storeu_si512(dst + (size_t)g * 16 * 64, _mm512_loadu_si512(src));
            else _mm256_storeu_si256((__m256i *)(dst + (size_t)g * 16 * 32), ldu256(src));
        }
    }
}

/* Float scales of all n tokens (once per call), zeros for the padding. */
static void ax_token_scales(const ax_plan *p, const uint8_t *xq) {
    const int kind = p->kind;
    const int64_t npad = (p->n + AMX_TOK - 1) / AMX_TOK * AMX_TOK;
    memset(p->dx + p->n * p->ns, 0, sizeof(float) * (size_t)((npad - p->n) * p->ns));
    if (ax_b32_min(kind)) memset(p->sx + p->n * p->ns, 0, sizeof(float) * (size_t)((npad - p->n) * p->ns));
    if (ax_k_min(kind)) memset(p->bs + p->n * p->ns * 8, 0, sizeof(float) * (size_t)((npad - p->n) * p->ns * 8));
    for (int64_t t = 0; t < p->n; t++) {
        const uint8_t *x = xq + (size_t)t * p->xs;
        float *dx = p->dx + t * p->ns;
        if (ax_is_k(kind)) {
            for (int64_t s = 0; s < p->ns; s++) {
                const qf_block_q8_K *b = (const qf_block_q8_K *)x + s;
                dx[s] = b->d;
                if (ax_k_min(kind)) {
                    float *bs = p->bs + (t * p->ns + s) * 8;
                    for (int j = 0; j < 8; j++)
                        bs[j] = (float)(b->bsums[2 * j] + b->bsums[2 * j + 1]) * b->d;
                }
            }
        } else {
            const bool one = ax_b32_min(kind);
            const size_t bx = one ? sizeof(qf_block_q8_1) : sizeof(qf_block_q8_0);
            for (int64_t g = 0; g < p->ns; g++) {
                dx[g] = h2f(x + (size_t)g * bx);
                if (one) p->sx[t * p->ns + g] = h2f(x + (size_t)g * bx + 2);
            }
        }
    }
}

/* Store 16 rows x G/4 dwords (rows 64 bytes apart in src, the first G
 * bytes used) as the B tile: dword (k4, r) at dst[64 k4 + 4 r]. */
static void ax_vnni16(const int8_t *src, int G, int8_t *dst) {
    /* transpose 16 x 16 dwords (only G/4 columns are needed) */
    __m512i v[16];
    for (int r = 0; r < 16; r++)
        v[r] = _mm512_loadu_si512(src + 64 * r);
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* v[4q + j]: 128-bit lane l holds dword column 4l + j' of rows 4q..4q+3
     * (j' = 0, 1, 2, 3 for j = 0, 1, 2, 3 in that order) */
    for (int j = 0; j < 4; j++) {
        const __m512i a = _mm512_shuffle_i32x4(v[j], v[4 + j], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i b = _mm512_shuffle_i32x4(v[8 + j], v[12 + j], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i c = _mm512_shuffle_i32x4(v[j], v[4 + j], _MM_SHUFFLE(3, 1, 3, 1));
        const __m512i d = _mm512_shuffle_i32x4(v[8 + j], v[12 + j], _MM_SHUFFLE(3, 1, 3, 1));
        /* column 4l + j of rows 0..15 for l = 0, 2 (from a, b) and 1, 3 */
        const __m512i c0 = _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i c2 = _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        const __m512i c1 = _mm512_shuffle_i32x4(c, d, _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i c3 = _mm512_shuffle_i32x4(c, d, _MM_SHUFFLE(3, 1, 3, 1));
        const __m512i cols[4] = {c0, c1, c2, c3};
        for (int l = 0; l < 4; l++) {
            const int k4 = 4 * l + j;
            if (k4 < G / 4) _mm512_storeu_si512(dst + 64 * k4, cols[l]);
        }
    }
}

/* Column order of a B tile built by ax_weights_rows: position p holds
 * weight row 4 * (p % 4) + p / 4 (a 4 x 4 transpose, its own inverse). */
static const int32_t ax_perm[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

/* 16 bytes of each of rows r0..r0+3 (zero past nr) as one vector. */
INLINE __m512i ax_rows4(const uint8_t *w, size_t wrb, int r0, int nr) {
    __m512i z = _mm512_setzero_si512();
    if (r0 < nr) z = _mm512_castsi128_si512(ldu128(w + (size_t)r0 * wrb));
    if (r0 + 1 < nr) z = _mm512_inserti32x4(z, ldu128(w + (size_t)(r0 + 1) * wrb), 1);
    if (r0 + 2 < nr) z = _mm512_inserti32x4(z, ldu128(w + (size_t)(r0 + 2) * wrb), 2);
    if (r0 + 3 < nr) z = _mm512_inserti32x4(z, ldu128(w + (size_t)(r0 + 3) * wrb), 3);
    return z;
}

/* 16 bytes (4 dwords) of 16 rows, transposed: o[j] holds dword j of every
 * row, in ax_perm column order. Within each 128-bit lane this is the 4 x 4
 * dword transpose of four registers, no lane crossing: lane l of z[m] is
 * row 4m + l, so o[j] lane l is rows l, 4 + l, 8 + l, 12 + l. */
INLINE void ax_rows16_t(const uint8_t *w, size_t wrb, int nr, __m512i o[4]) {
    const __m512i z0 = ax_rows4(w, wrb, 0, nr), z1 = ax_rows4(w, wrb, 4, nr);
    const __m512i z2 = ax_rows4(w, wrb, 8, nr), z3 = ax_rows4(w, wrb, 12, nr);
    const __m512i t0 = _mm512_unpacklo_epi32(z0, z1), t1 = _mm512_unpackhi_epi32(z0, z1);
    const __m512i t2 = _mm512_unpacklo_epi32(z2, z3), t3 = _mm512_unpackhi_epi32(z2, z3);
    o[0] = _mm512_unpacklo_epi64(t0, t2);
    o[1] = _mm512_unpackhi_epi64(t0, t2);
    o[2] = _mm512_unpacklo_epi64(t1, t3);
    o[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 rows straight into VNNI order (no row
 * buffer): a tile row holds dword kq of 16 weight rows, and dword j of a
 * Q4/Q5 block's nibble bytes carries values 4j..4j+3 (low nibbles) and
 * 16+4j.. (high), so one transpose of the 16-byte nibble rows gives tile
 * rows j and 4 + j after a mask and a shift. Scales come in with one
 * gather per 16 rows; so do Q5's 32 high bits: bits 4j..4j+3 (and
 * 16+4j..) of a row's qh become bit 4 of the four bytes of its dword in
 * tile row j (4 + j). vpmultishiftqb (VBMI, which every AMX CPU has) does
 * that in one instruction: output byte k of a qword is the 8 bits of the
 * qword from a bit offset (mod 64), so offset 4j + k - 4 puts qh bit
 * 4j + k at the byte's bit 4 (+32 for the dword in the qword's upper half;
 * j = 0 wraps around to the qword's top bits, which is what makes bit 0
 * land at bit 4). */
#define AX_TARGET_VBMI __attribute__((target("avx512vbmi")))

/* Byte k of the qword: offset (4j + k - 4 + (k >= 4 ? 28 : 0) + add) mod 64
 * with k' = k mod 4 in place of k. */
static AX_TARGET_VBMI inline __m512i q5_ctrl(int j, int add) {
    uint64_t c = 0;
    for (int k = 0; k < 8; k++) {
        int off = (4 * j + (k & 3) - 4 + (k >= 4 ? 32 : 0) + add) & 63;
        c |= (uint64_t)off << (8 * k);
    }
    return _mm512_set1_epi64((long long)c);
}

static AX_TARGET_VBMI inline __m512i q5_spread(__m512i qh, __m512i ctrl) {
    return _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, qh), _mm512_set1_epi8(0x10));
}

static AX_TARGET_VBMI void ax_weights_rows(const ax_plan *p, int bk, const uint8_t *w, size_t wrb, int nr) {
    const size_t bw = b32_bytes(bk), qs = b32_qs(bk);
    const __m512i perm = _mm512_loadu_si512(ax_perm);
    const __m512i lo4 = _mm512_set1_epi8(0x0F), off = _mm512_set1_epi8(bk == K_Q4_0 ? 8 : bk == K_Q5_0 ? 16 : 0);
    const bool q5 = bk == K_Q5_0 || bk == K_Q5_1;
    const size_t qh_at = bk == K_Q5_0 ? 2 : 4; /* Q5_0: d, qh; Q5_1: d, m, qh */
    for (int rt = 0; rt < p->RT / 16; rt++) {
        const int n16 = nr - 16 * rt < 0 ? 0 : nr - 16 * rt > 16 ? 16 : nr - 16 * rt;
        const uint8_t *wr = w + (size_t)(16 * rt) * wrb;
        const __mmask16 live = _mm512_cmplt_epi32_mask(perm, _mm512_set1_epi32(n16));
        const __m512i idx = _mm512_mullo_epi32(perm, _mm512_set1_epi32((int)wrb));
        for (int64_t g = 0; g < p->ns; g++) {
            const uint8_t *blk = wr + (size_t)g * bw;
            int8_t *dst = p->b + ((size_t)g * (size_t)(p->RT / 16) + (size_t)rt) * 512;
            const __m512i dm = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, blk, 1);
            _mm512_store_ps(p->dw + g * p->RT + 16 * rt, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm)));
            if (bk == K_Q4_1 || bk == K_Q5_1)
                _mm512_store_ps(p->mw + g * p->RT + 16 * rt,
                                _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16))));
            __m512i o[4];
            ax_rows16_t(blk + qs, wrb, n16, o);
            if (bk == K_Q8_0) {
                UNROLL for (int j = 0; j < 4; j++)
                    _mm512_store_si512(dst + 64 * j, o[j]);
                ax_rows16_t(blk + qs + 16, wrb, n16, o);
                UNROLL for (int j = 0; j < 4; j++)
                    _mm512_store_si512(dst + 64 * (4 + j), o[j]);
            } else {
                const __m512i qh = q5 ? _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, blk + qh_at, 1)
                                      : _mm512_setzero_si512();
                UNROLL for (int j = 0; j < 4; j++) {
                    __m512i lo = _mm512_and_si512(o[j], lo4), hi = _mm512_and_si512(_mm512_srli_epi16(o[j], 4), lo4);
                    if (q5) {
                        lo = _mm512_or_si512(lo, q5_spread(qh, q5_ctrl(j, 0)));
                        hi = _mm512_or_si512(hi, q5_spread(qh, q5_ctrl(j, 16)));
                    }
                    _mm512_store_si512(dst + 64 * j, _mm512_sub_epi8(lo, off));
                    _mm512_store_si512(dst + 64 * (4 + j), _mm512_sub_epi8(hi, off));
                }
            }
        }
    }
}

/* Weight rows [0, nr) of a row tile (the rest zero) into the B panel. */
static void ax_weights_b32(const ax_plan *p, const uint8_t *w, size_t wrb, int nr) {
    static const int kmap[] = {K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0};
    ax_weights_rows(p, kmap[p->kind], w, wrb, nr);
}

/* 32 int16 products -> the two int8 planes (lo = p & 127, hi = p >> 7). */
INLINE void ax_planes(__m512i p16, __m256i *lo, __m256i *hi) {
    *lo = _mm512_cvtepi16_epi8(_mm512_and_si512(p16, _mm512_set1_epi16(127)));
    *hi = _mm512_cvtepi16_epi8(_mm512_srai_epi16(p16, 7));
}

static void ax_weights_k(const ax_plan *p, const uint8_t *w, size_t wrb, int nr) {
    const int kind = p->kind;
    const int kq = kind == AX_Q4_K ? KQ_Q4 : kind == AX_Q5_K ? KQ_Q5 : KQ_Q6;
    const size_t bw = kq == KQ_Q4 ? sizeof(qf_block_q4_K) : kq == KQ_Q5 ? sizeof(qf_block_q5_K) : sizeof(qf_block_q6_K);
    /* planes of 16 rows: [c][plane][16 rows][64] */
    int8_t rows[4 * 2 * 16 * 64] __attribute__((aligned(64)));
    for (int64_t s = 0; s < p->ns; s++) {
        for (int r = 0; r < 16; r++) {
            float *dw = p->dw + s * 16 + r;
            if (r >= nr) {
                for (int cp = 0; cp < 8; cp++)
                    _mm512_store_si512(rows + (cp * 16 + r) * 64, _mm512_setzero_si512());
                *dw = 0.0f;
                for (int j = 0; j < 8; j++)
                    p->mw[(s * 8 + j) * 16 + r] = 0.0f;
                continue;
            }
            const uint8_t *blk = w + (size_t)r * wrb + (size_t)s * bw;
            kq_row k;
            kq_decode(kq, blk, &k);
            *dw = k.d;
            int16_t sc[16];
            if (kq == KQ_Q6) {
                const qf_block_q6_K *b6 = (const qf_block_q6_K *)blk;
                for (int j = 0; j < 16; j++)
                    sc[j] = b6->scales[j];
            } else {
                uint8_t s8[8], m8[8];
                k4_scales(blk + 4, s8, m8);
                for (int j = 0; j < 8; j++) {
                    sc[j] = s8[j];
                    p->mw[(s * 8 + j) * 16 + r] = k.dmin * (float)m8[j];
                }
            }
            for (int c = 0; c < 4; c++) {
                __m512i lv = k.lv[c];
                if (kq == KQ_Q6) lv = _mm512_sub_epi8(lv, _mm512_set1_epi8(32));
                /* elements 64c + 0..31 and 64c + 32..63 as int16 */
                const __m512i e0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(lv));
                const __m512i e1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(lv, 1));
                __m512i s0, s1;
                if (kq == KQ_Q6) { /* sub-blocks of 16: 4c .. 4c+3 */
                    s0 = _mm512_inserti64x4(_mm512_set1_epi16(sc[4 * c]), _mm256_set1_epi16(sc[4 * c + 1]), 1);
                    s1 = _mm512_inserti64x4(_mm512_set1_epi16(sc[4 * c + 2]), _mm256_set1_epi16(sc[4 * c + 3]), 1);
                } else { /* sub-blocks of 32: 2c, 2c + 1 */
                    s0 = _mm512_set1_epi16(sc[2 * c]);
                    s1 = _mm512_set1_epi16(sc[2 * c + 1]);
                }
                __m256i lo0, hi0, lo1, hi1;
                ax_planes(_mm512_mullo_epi16(e0, s0), &lo0, &hi0);
                ax_planes(_mm512_mullo_epi16(e1, s1), &lo1, &hi1);
                int8_t *lo = rows + ((c * 2) * 16 + r) * 64, *hi = rows + ((c * 2 + 1) * 16 + r) * 64;
                _mm256_store_si256((__m256i *)lo, lo0);
                _mm256_store_si256((__m256i *)(lo + 32), lo1);
                _mm256_store_si256((__m256i *)hi, hi0);
                _mm256_store_si256((__m256i *)(hi + 32), hi1);
            }
        }
        for (int cp = 0; cp < 8; cp++)
            ax_vnni16(rows + cp * 16 * 64, 64, p->b + ((size_t)s * 8 + (size_t)cp) * 1024);
    }
}

/* acc rows (16 tokens, stride RT floats) += C * dw * dx[t] (dx stride ns),
 * where C is c (or c + 128 * c_hi when c_hi is given). */
INLINE void ax_epilogue(float *acc, int RT, const int32_t *c, const int32_t *c_hi, __m512 dw, const float *dx,
                        int64_t dx_stride) {
    UNROLL for (int t = 0; t < 16; t++) {
        __m512i ci = _mm512_load_si512(c + 16 * t);
        if (c_hi) ci = _mm512_add_epi32(ci, _mm512_slli_epi32(_mm512_load_si512(c_hi + 16 * t), 7));
        float *a = acc + t * RT;
        _mm512_store_ps(a, _mm512_fmadd_ps(_mm512_cvtepi32_ps(ci), _mm512_mul_ps(dw, _mm512_set1_ps(dx[t * dx_stride])),
                                           _mm512_load_ps(a)));
    }
}

/* The float part of one block for 32 tokens (16 when !two) x 32 rows: C
 * tiles in c. */
INLINE void ax_finish_b32(const ax_plan *p, const int32_t *c, int64_t g, const float *dx, const float *sx,
                          bool two) {
    const int64_t ns = p->ns;
    float *acc = p->acc;
    const __m512 dw0 = _mm512_load_ps(p->dw + g * 32), dw1 = _mm512_load_ps(p->dw + g * 32 + 16);
    ax_epilogue(acc, 32, c, NULL, dw0, dx + g, ns);
    ax_epilogue(acc + 16, 32, c + 256, NULL, dw1, dx + g, ns);
    if (two) {
        ax_epilogue(acc + 16 * 32, 32, c + 512, NULL, dw0, dx + 16 * ns + g, ns);
        ax_epilogue(acc + 16 * 32 + 16, 32, c + 768, NULL, dw1, dx + 16 * ns + g, ns);
    }
    if (sx) {
        const __m512 m0 = _mm512_load_ps(p->mw + g * 32), m1 = _mm512_load_ps(p->mw + g * 32 + 16);
        for (int t = 0; t < (two ? AMX_TOK : 16); t++) {
            const __m512 sv = _mm512_set1_ps(sx[t * ns + g]);
            float *ar = acc + t * 32;
            _mm512_store_ps(ar, _mm512_fmadd_ps(m0, sv, _mm512_load_ps(ar)));
            _mm512_store_ps(ar + 16, _mm512_fmadd_ps(m1, sv, _mm512_load_ps(ar + 16)));
        }
    }
}

/* 32 tokens (token tiles i0, i0 + 1; global index t0) x 32 rows over all
 * blocks; with !two only the 16 tokens of tile i0 (a batch of 16 or fewer
 * left: the padding tile would double the work). The tiles of block g are
 * stored to one half of c while the float work of block g - 1 runs on the
 * other half, so that the tile unit and the vector units overlap. */
static void ax_compute_b32(const ax_plan *p, int64_t i0, int64_t t0, bool two) {
    const int64_t ns = p->ns;
    memset(p->acc, 0, sizeof(float) * AMX_TOK * 32);
    const float *dx = p->dx + t0 * ns, *sx = ax_b32_min(p->kind) ? p->sx + t0 * ns : NULL;
    const int8_t *a0 = p->xa + (size_t)i0 * (size_t)ns * 512, *a1 = a0 + (size_t)ns * 512;
    for (int64_t g = 0; g < ns; g++) {
        int32_t *c = p->c + (g & 1) * 1024;
        const int8_t *b = p->b + (size_t)g * 1024;
        /* the next tile's block g, one request per row when it starts a
         * new cache line: its rows are read while this tile computes */
        if (p->pf && (g == 0 || ((g * p->pf_bw) >> 6) != (((g + 1) * p->pf_bw - 1) >> 6)))
            for (int i = 0; i < p->pf_rows; i++)
                _mm_prefetch((const char *)p->pf + (size_t)i * p->pf_wrb + (size_t)(g + 1) * p->pf_bw - 1, _MM_HINT_T1);
        _tile_loadd(4, a0 + g * 512, 32);
        _tile_loadd(6, b, 64);
        _tile_loadd(7, b + 512, 64);
        _tile_zero(0);
        _tile_zero(1);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_stored(0, c, 64);
        _tile_stored(1, c + 256, 64);
        if (two) {
            _tile_loadd(5, a1 + g * 512, 32);
            _tile_zero(2);
            _tile_zero(3);
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
            _tile_stored(2, c + 512, 64);
            _tile_stored(3, c + 768, 64);
        }
        if (g > 0) ax_finish_b32(p, p->c + ((g - 1) & 1) * 1024, g - 1, dx, sx, two);
    }
    ax_finish_b32(p, p->c + ((ns - 1) & 1) * 1024, ns - 1, dx, sx, two);
}

/* The float part of one super-block for 32 tokens (16 when !two) x 16 rows. */
INLINE void ax_finish_k(const ax_plan *p, const int32_t *c, int64_t s, int64_t t0, bool two) {
    const int64_t ns = p->ns;
    float *acc = p->acc;
    const float *dx = p->dx + t0 * ns;
    const __m512 dw = _mm512_load_ps(p->dw + s * 16);
    ax_epilogue(acc, 16, c, c + 256, dw, dx + s, ns);
    if (two) ax_epilogue(acc + 16 * 16, 16, c + 512, c + 768, dw, dx + 16 * ns + s, ns);
    if (ax_k_min(p->kind)) {
        __m512 mv[8];
        UNROLL for (int j = 0; j < 8; j++)
            mv[j] = _mm512_load_ps(p->mw + (s * 8 + j) * 16);
        const float *bs = p->bs + (t0 * ns + s) * 8;
        for (int t = 0; t < (two ? AMX_TOK : 16); t++) {
            const float *bt = bs + t * ns * 8;
            float *ar = acc + t * 16;
            __m512 v = _mm512_load_ps(ar);
            UNROLL for (int j = 0; j < 8; j++)
                v = _mm512_fnmadd_ps(mv[j], _mm512_set1_ps(bt[j]), v);
            _mm512_store_ps(ar, v);
        }
    }
}

/* 32 tokens (16 when !two) x 16 rows over all super-blocks (C
 * double-buffered as above). */
static void ax_compute_k(const ax_plan *p, int64_t i0, int64_t t0, bool two) {
    const int64_t ns = p->ns, ng = p->cols / 64;
    memset(p->acc, 0, sizeof(float) * AMX_TOK * 16);
    const int8_t *a0 = p->xa + (size_t)i0 * (size_t)ng * 1024, *a1 = a0 + (size_t)ng * 1024;
    for (int64_t s = 0; s < ns; s++) {
        int32_t *c = p->c + (s & 1) * 1024;
        const int8_t *b = p->b + (size_t)s * 8 * 1024;
        _tile_zero(0);
        _tile_zero(1);
        if (two) {
            _tile_zero(2);
            _tile_zero(3);
        }
        for (int q = 0; q < 4; q++) {
            const size_t g = (size_t)(4 * s + q) * 1024;
            _tile_loadd(4, a0 + g, 64);
            _tile_loadd(6, b + q * 2048, 64);
            _tile_loadd(7, b + q * 2048 + 1024, 64);
            _tile_dpbssd(0, 4, 6); /* tokens 0-15, lo */
            _tile_dpbssd(1, 4, 7); /* tokens 0-15, hi */
            if (two) {
                _tile_loadd(5, a1 + g, 64);
                _tile_dpbssd(2, 5, 6); /* tokens 16-31, lo */
                _tile_dpbssd(3, 5, 7); /* tokens 16-31, hi */
            }
        }
        _tile_stored(0, c, 64);
        _tile_stored(1, c + 256, 64);
        if (two) {
            _tile_stored(2, c + 512, 64);
            _tile_stored(3, c + 768, 64);
        }
        if (s > 0) ax_finish_k(p, p->c + ((s - 1) & 1) * 1024, s - 1, t0, two);
    }
    ax_finish_k(p, p->c + ((ns - 1) & 1) * 1024, ns - 1, t0, two);
}

static bool gemm_amx(int kind, const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                     const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {
    ax_plan p;
    if (!ax_plan_init(&p, kind, cols, n, xs)) return false;
    const bool k = ax_is_k(kind);
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg.rows[i] = 16;
        cfg.colsb[i] = 64;
    }
    if (!k) { /* A: 16 tokens x 32 values, B: 8 rows (K = 32) */
        cfg.colsb[4] = cfg.colsb[5] = 32;
        cfg.rows[6] = cfg.rows[7] = 8;
    }
    _tile_loadconfig(&cfg);
    ax_token_scales(&p, xq);
    ax_token_pack(&p, xq);
    const __m512i permv = _mm512_loadu_si512(ax_perm);
    const uint8_t *w = W;
    for (int64_t c0 = 0; c0 < n; c0 += p.tch) {
        const int64_t nt = n - c0 < p.tch ? n - c0 : p.tch;
        for (int64_t rb = r0; rb < r1; rb += p.RT) {
            const int nr = r1 - rb < p.RT ? (int)(r1 - rb) : p.RT;
            if (k) ax_weights_k(&p, w + (size_t)rb * wrb, wrb, nr);
            else ax_weights_b32(&p, w + (size_t)rb * wrb, wrb, nr);
            if (!k && c0 + p.tch >= n && rb + p.RT < r1) { /* last token chunk: fetch the next row tile */
                static const size_t bws[] = {sizeof(qf_block_q4_0), sizeof(qf_block_q4_1), sizeof(qf_block_q5_0),
                                             sizeof(qf_block_q5_1), sizeof(qf_block_q8_0)};
                p.pf = w + (size_t)(rb + p.RT) * wrb;
                p.pf_rows = r1 - rb - p.RT < p.RT ? (int)(r1 - rb - p.RT) : p.RT;
                p.pf_wrb = wrb;
                p.pf_bw = bws[kind];
            } else {
                p.pf = NULL;
            }
            const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
            const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
            for (int64_t t = c0; t < c0 + nt; t += AMX_TOK) {
                const int64_t tt = c0 + nt - t < AMX_TOK ? c0 + nt - t : AMX_TOK;
                if (k) ax_compute_k(&p, t / 16, t, tt > 16);
                else ax_compute_b32(&p, t / 16, t, tt > 16);
                for (int64_t i = 0; i < tt; i++) {
                    float *yt = y + (t + i) * ldy + rb;
                    __m512 v0 = _mm512_load_ps(p.acc + i * p.RT), v1 = _mm512_setzero_ps();
                    if (p.RT == 32) v1 = _mm512_load_ps(p.acc + i * p.RT + 16);
                    if (p.perm) { /* ax_perm is its own inverse */
                        v0 = _mm512_permutexvar_ps(permv, v0);
                        v1 = _mm512_permutexvar_ps(permv, v1);
                    }
                    _mm512_mask_storeu_ps(yt, m0, v0);
                    if (p.RT == 32) _mm512_mask_storeu_ps(yt + 16, m1, v1);
                }
            }
        }
    }
    _tile_release();
    return true;
}

/* ---- AMX-BF16: F16 weights x F16 activations (n >= AMX_MIN_N) ----
 * An fp16 value splits exactly into two bf16: hi = its top 16 bits as a
 * float (truncation) and lo = v - hi (at most 3 significant bits, exact in
 * bf16); a product of two bf16 is exact in fp32. TDPBF16PS multiplies bf16
 * pairs and accumulates in fp32, so with B holding the activations as
 * (x_hi, x_lo) pairs and A the weights as (w_hi, w_hi) pairs, then (w_lo,
 * w_lo): C += x * w_hi + x * w_lo = x * w, every product exact; only the
 * fp32 summation order differs from the reference. No per-block scale: C
 * accumulates a whole row in the tiles and is stored once. (Duplicating
 * the weights rather than the activations keeps the activation panel at 4
 * bytes per value, so twice as many tokens share each rebuild of the
 * weight panel, which re-reads the fp16 weights.)
 * Weights are A (16 rows x 16 pairs per tile, row-major: no transposition
 * in the per-row-tile work); the activations of a chunk of tokens are
 * transposed once into B tiles; C tiles (rows x tokens) are transposed on
 * the way out. Tiles per step: 32 rows x 32 tokens, 16 values of k. */

#if defined(__AMX_BF16__)

/* 16 floats (fp16 values) -> hi (top 16 bits) and lo = v - hi, as bf16 in
 * the low 16 bits of each dword. */
INLINE void bf16_split(__m512 v, __m512i *hi, __m512i *lo) {
    const __m512i h = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0xFFFF0000u));
    const __m512 l = _mm512_sub_ps(v, _mm512_castsi512_ps(h));
    *hi = _mm512_srli_epi32(h, 16);
    *lo = _mm512_srli_epi32(_mm512_castps_si512(l), 16);
}

/* Columns per slice: longer rows are done in slices whose results are
 * added into y, so that a chunk of tokens (whose activation panel stays in
 * L2) is long enough to amortize the weight panel: each chunk re-reads the
 * fp16 weights of the slice. */
#define F16_KS 2048

/* One slice of columns (cols <= F16_KS); accumulate: add to y. */
static bool amx_f16_slice(const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const uint8_t *x,
                          size_t xs, int64_t n, float *y, int64_t ldy, bool accumulate) {
    const int64_t cp = (cols + 15) / 16 * 16, nk = cp / 16;
    int64_t tch = (int64_t)((1u << 20) / (size_t)(4 * cp)); /* 128 tokens at F16_KS */
    tch = tch < AMX_TOK ? AMX_TOK : tch - tch % AMX_TOK;
    const int64_t npad = (n + AMX_TOK - 1) / AMX_TOK * AMX_TOK;
    if (tch > npad) tch = npad;
    /* B: [token tile][k / 16][16 pairs][16 tokens]; A: [k / 16][hi, lo][row
     * tile][16 rows][16 pairs] */
    const size_t sz_b = al64((size_t)(tch * cp) * 4), sz_a = al64((size_t)(32 * cp) * 8);
    uint8_t *m = scratch_get(sz_b + sz_a + sizeof(float) * 4 * 256);
    if (!m) return false;
    int8_t *bp = (int8_t *)m, *ap = (int8_t *)(m + sz_b);
    float *c = (float *)(m + sz_b + sz_a);
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg.rows[i] = 16;
        cfg.colsb[i] = 64;
    }
    _tile_loadconfig(&cfg);
    int8_t buf[16 * 64] __attribute__((aligned(64)));
    for (int64_t c0 = 0; c0 < n; c0 += tch) {
        const int64_t nt = n - c0 < tch ? n - c0 : tch, ntt = (nt + AMX_TOK - 1) / AMX_TOK * 2;
        for (int64_t jt = 0; jt < ntt; jt++) {
            for (int64_t kc = 0; kc < nk; kc++) {
                const __mmask16 mk = cols - 16 * kc >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - 16 * kc)) - 1);
                for (int i = 0; i < 16; i++) { /* token row i: 16 k -> pairs */
                    const int64_t t = 16 * jt + i;
                    __m512i hi = _mm512_setzero_si512(), lo = _mm512_setzero_si512();
                    if (t < nt) bf16_split(fx16(F_F16, x + (size_t)(c0 + t) * xs, 16 * kc, mk), &hi, &lo);
                    _mm512_store_si512(buf + 64 * i, _mm512_or_si512(hi, _mm512_slli_epi32(lo, 16)));
                }
                ax_vnni16(buf, 64, bp + (size_t)(jt * nk + kc) * 1024);
            }
        }
        for (int64_t rb = r0; rb < r1; rb += 32) {
            const int nr = r1 - rb < 32 ? (int)(r1 - rb) : 32;
            /* A: (w_hi, w_hi) and (w_lo, w_lo) pairs, row-major; written in
             * panel order (k outer) so that the stores are sequential */
            for (int64_t kc = 0; kc < nk; kc++) {
                const __mmask16 mk = cols - 16 * kc >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - 16 * kc)) - 1);
                int8_t *dst = ap + (size_t)kc * 4096;
                for (int r = 0; r < 32; r++) {
                    __m512i hi = _mm512_setzero_si512(), lo = _mm512_setzero_si512();
                    if (r < nr) bf16_split(fw16(F_F16, w + (size_t)(rb + r) * wrb, 16 * kc, mk), &hi, &lo);
                    _mm512_store_si512(dst + 64 * r, _mm512_or_si512(hi, _mm512_slli_epi32(hi, 16)));
                    _mm512_store_si512(dst + 2048 + 64 * r, _mm512_or_si512(lo, _mm512_slli_epi32(lo, 16)));
                }
            }
            for (int64_t t = 0; t < nt; t += AMX_TOK) {
                const int8_t *b = bp + (size_t)(t / 16) * (size_t)nk * 1024;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int64_t kc = 0; kc < nk; kc++) {
                    const int8_t *a = ap + (size_t)kc * 4096;
                    const int8_t *b0 = b + (size_t)kc * 1024, *b1 = b0 + (size_t)nk * 1024;
                    _tile_loadd(6, b0, 64);
                    _tile_loadd(7, b1, 64);
                    _tile_loadd(4, a, 64); /* w_hi pairs, rows 0-15 */
                    _tile_loadd(5, a + 1024, 64);
                    _tile_dpbf16ps(0, 4, 6); /* rows 0-15, tokens 0-15 */
                    _tile_dpbf16ps(1, 4, 7); /* rows 0-15, tokens 16-31 */
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                    _tile_loadd(4, a + 2048, 64); /* w_lo pairs */
                    _tile_loadd(5, a + 3072, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
                _tile_stored(0, c, 64);
                _tile_stored(1, c + 256, 64);
                _tile_stored(2, c + 512, 64);
                _tile_stored(3, c + 768, 64);
                /* C tiles are [rows][tokens]: transpose to [tokens][rows] */
                float ct[4][256] __attribute__((aligned(64)));
                for (int q = 0; q < 4; q++)
                    ax_vnni16((const int8_t *)(c + 256 * q), 64, (int8_t *)ct[q]);
                const int64_t tt = nt - t < AMX_TOK ? nt - t : AMX_TOK;
                const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
                const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
                for (int64_t i = 0; i < tt; i++) {
                    const int hi = i >= 16, ti = (int)(i % 16);
                    float *yt = y + (c0 + t + i) * ldy + rb;
                    __m512 v0 = _mm512_load_ps(ct[hi] + 16 * ti), v1 = _mm512_load_ps(ct[2 + hi] + 16 * ti);
                    if (accumulate) {
                        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, yt));
                        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, yt + 16));
                    }
                    _mm512_mask_storeu_ps(yt, m0, v0);
                    _mm512_mask_storeu_ps(yt + 16, m1, v1);
                }
            }
        }
    }
    _tile_release();
    return true;
}

static bool gemm_amx_f16(const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const uint8_t *x,
                         size_t xs, int64_t n, float *y, int64_t ldy) {
    for (int64_t k0 = 0; k0 < cols; k0 += F16_KS) {
        const int64_t kc = cols - k0 < F16_KS ? cols - k0 : F16_KS;
        /* a slice failing (no memory) can only be the first: nothing written */
        if (!amx_f16_slice(w + 2 * k0, wrb, kc, r0, r1, x + 2 * k0, xs, n, y, ldy, k0 > 0)) return false;
    }
    return true;
}

#else

static bool gemm_amx_f16(const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const uint8_t *x,
                         size_t xs, int64_t n, float *y, int64_t ldy) {
    (void)w, (void)wrb, (void)cols, (void)r0, (void)r1, (void)x, (void)xs, (void)n, (void)y, (void)ldy;
    return false;
}

#endif /* __AMX_BF16__ */

#else /* compiler without AMX support: the VNNI kernels do all the work */

static bool gemm_amx_f16(const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const uint8_t *x,
                         size_t xs, int64_t n, float *y, int64_t ldy) {
    (void)w, (void)wrb, (void)cols, (void)r0, (void)r1, (void)x, (void)xs, (void)n, (void)y, (void)ldy;
    return false;
}

static bool gemm_amx(int kind, const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                     const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {
    (void)kind, (void)W, (void)wrb, (void)cols, (void)r0, (void)r1, (void)xq, (void)xs, (void)n, (void)y, (void)ldy;
    return false;
}

#endif

/* AMX needs the CPU feature and, on Linux, permission for the tile data
 * state (arch_prctl ARCH_REQ_XCOMP_PERM, once per process). QF_AMX=0
 * turns it off (e.g. for valgrind, which does not know AMX). */
static bool amx_enable(void) {
#if !defined(__AMX_TILE__) || !defined(__AMX_INT8__)
    return false;
#endif
    const char *env = getenv("QF_AMX");
    if (env && strcmp(env, "0") == 0) return false;
    if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-int8")) return false;
#if defined(__linux__)
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
    return false;
#endif
}

bool qf_kernels_fill_avx512(qf_kernel_table *t) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq") ||
        !__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx2") ||
        !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c"))
        return false;
    memcpy(fallback, t->gemm, sizeof fallback);
    amx_ok = amx_enable() && __builtin_cpu_supports("avx512vbmi"); /* ax_weights_rows uses VBMI */
#if defined(__AMX_BF16__)
    amx_bf16_ok = amx_ok && __builtin_cpu_supports("amx-bf16");
#endif
    t->gemm[QF_TYPE_Q4_0] = gemm_q4_0;
    t->gemm[QF_TYPE_Q4_1] = gemm_q4_1;
    t->gemm[QF_TYPE_Q5_0] = gemm_q5_0;
    t->gemm[QF_TYPE_Q5_1] = gemm_q5_1;
    t->gemm[QF_TYPE_Q8_0] = gemm_q8_0;
    t->gemm[QF_TYPE_Q4_K] = gemm_q4_K;
    t->gemm[QF_TYPE_Q5_K] = gemm_q5_K;
    t->gemm[QF_TYPE_Q6_K] = gemm_q6_K;
    t->gemm[QF_TYPE_F32] = gemm_f32;
    t->gemm[QF_TYPE_F16] = gemm_f16;
    t->gemm[QF_TYPE_BF16] = gemm_bf16;
    qf_kernels_fill_avx512_attn(t);
    return true;
}

#endif /* __x86_64__ */
