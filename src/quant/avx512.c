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
 * Batches of n >= AMX_MIN_N* tokens go to AMX tiles where available
 * (avx512_amx.c: int8 for the quantized types, bf16 for F16); everything
 * else here needs AVX-512 only. Decoders shared with it: avx512_int.h.
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

#include "base/mem.h"
#include "quant/avx512_int.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_int.h"

/* Entries of the table this file replaced: used when scratch memory cannot
 * be had (allocation failure), so that a kernel never fails. */
static qf_gemm_fn fallback[QF_TYPE_COUNT_MAX];

static bool amx_ok;      /* AMX-INT8 tiles usable (CPU + OS permission): avx512_amx.c */
static bool amx_bf16_ok; /* AMX-BF16 too (F16 batches) */

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
uint8_t *qf_avx512_scratch(size_t bytes) {
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
        gv_group *g = (gv_group *)qf_avx512_scratch(sizeof(gv_group) * (size_t)((nb + 15) / 16));
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
        if (qf_avx512_gemm_amx(ax[kind], W, wrb, cols, r0, r1, xq, xs, n, y, ldy)) return;
        fallback[type](W, wrb, cols, r0, r1, xq, xs, n, y, ldy);
        return;
    }
    const int64_t tc = n < B32_TC ? n : B32_TC;
    tp_pair *tp = (tp_pair *)qf_avx512_scratch(sizeof(tp_pair) * (size_t)(tc * np));
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
        if (qf_avx512_gemm_amx(ax, W, wrb, cols, r0, r1, xq, xs, n, y, ldy)) return;
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
    if (kind == F_F16 && amx_bf16_ok && n >= AMX_MIN_N_K &&
        qf_avx512_gemm_amx_f16(w, wrb, cols, r0, r1, x, xs, n, y, ldy))
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
    float *xp = (float *)qf_avx512_scratch(sizeof(float) * (size_t)((FB_TC + FB_R) * cp));
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

bool qf_kernels_fill_avx512(qf_kernel_table *t) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq") ||
        !__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx2") ||
        !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c"))
        return false;
    memcpy(fallback, t->gemm, sizeof fallback);
    amx_ok = qf_avx512_amx_enable() && __builtin_cpu_supports("avx512vbmi"); /* ax_weights_rows uses VBMI */
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
