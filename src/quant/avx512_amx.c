/* avx512_amx.c - AMX tile kernels for batches (x86-64, Sapphire Rapids and
 * later; compiled with the flags of cmake/isa.cmake, empty elsewhere).
 * avx512.c sends batches of n >= AMX_MIN_N* tokens here: int8 tiles for
 * the quantized types, bf16 tiles for F16 weights. The contract is in
 * avx512_int.h; the layouts and the arithmetic are described with each
 * kernel below. Results equal ref_dot.c up to float summation order. */
#if defined(__x86_64__)

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "quant/avx512_int.h"
#include "quant/blocks.h"
#include "quant/quant.h"

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

/* The next sz bytes of the scratch block *m (the plan's arrays, in order). */
INLINE void *carve(uint8_t **m, size_t sz) {
    void *p = *m;
    *m += sz;
    return p;
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
    uint8_t *m = qf_avx512_scratch(sz_dx + sz_sx + sz_bs + sz_b + sz_dw + sz_mw + sz_xa + sz_acc + sz_c);
    if (!m) return false;
    p->dx = carve(&m, sz_dx);
    p->sx = carve(&m, sz_sx);
    p->bs = carve(&m, sz_bs);
    p->b = carve(&m, sz_b);
    p->dw = carve(&m, sz_dw);
    p->mw = carve(&m, sz_mw);
    p->xa = carve(&m, sz_xa);
    p->acc = carve(&m, sz_acc);
    p->c = carve(&m, sz_c);
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
                qf_k4_scales(blk + 4, s8, m8);
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

bool qf_avx512_gemm_amx(int kind, const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
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
    uint8_t *m = qf_avx512_scratch(sz_b + sz_a + sizeof(float) * 4 * 256);
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

bool qf_avx512_gemm_amx_f16(const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const uint8_t *x,
                            size_t xs, int64_t n, float *y, int64_t ldy) {
    for (int64_t k0 = 0; k0 < cols; k0 += F16_KS) {
        const int64_t kc = cols - k0 < F16_KS ? cols - k0 : F16_KS;
        /* a slice failing (no memory) can only be the first: nothing written */
        if (!amx_f16_slice(w + 2 * k0, wrb, kc, r0, r1, x + 2 * k0, xs, n, y, ldy, k0 > 0)) return false;
    }
    return true;
}

#else

bool qf_avx512_gemm_amx_f16(const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const uint8_t *x,
                            size_t xs, int64_t n, float *y, int64_t ldy) {
    (void)w, (void)wrb, (void)cols, (void)r0, (void)r1, (void)x, (void)xs, (void)n, (void)y, (void)ldy;
    return false;
}

#endif /* __AMX_BF16__ */

#else /* compiler without AMX support: the VNNI kernels do all the work */

bool qf_avx512_gemm_amx_f16(const uint8_t *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1, const uint8_t *x,
                            size_t xs, int64_t n, float *y, int64_t ldy) {
    (void)w, (void)wrb, (void)cols, (void)r0, (void)r1, (void)x, (void)xs, (void)n, (void)y, (void)ldy;
    return false;
}

bool qf_avx512_gemm_amx(int kind, const void *W, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                        const void *xq, size_t xs, int64_t n, float *y, int64_t ldy) {
    (void)kind, (void)W, (void)wrb, (void)cols, (void)r0, (void)r1, (void)xq, (void)xs, (void)n, (void)y, (void)ldy;
    return false;
}

#endif

/* AMX needs the CPU feature and, on Linux, permission for the tile data
 * state (arch_prctl ARCH_REQ_XCOMP_PERM, once per process). QF_AMX=0
 * turns it off (e.g. for valgrind, which does not know AMX). */
bool qf_avx512_amx_enable(void) {
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

#endif /* __x86_64__ */
