/* cuda_int.h - shared between the CUDA backend's translation units (C++).
 *
 * Weight layouts on the device ("tile" layouts, built once by the repack
 * kernels of cuda_mm.cu from the GGUF blocks). Rows are grouped in tiles
 * of 16; a warp multiplies a tile with 8 tokens through
 * mma.sync.m16n8k32 (int8), so each lane needs, for rows g and g+8
 * (g = lane / 4) and t = lane % 4, the bytes 4t..4t+3 and 16+4t..16+4t+3 of
 * every 32-value group. The layouts store exactly those bytes for one lane
 * next to each other, so a warp loads a tile's k-step with one coalesced
 * 16-byte load per lane; the byte count per weight is that of the GGUF
 * format (no expansion):
 *
 *   Q4_0  per (tile, kstep of 64, lane): uint4 {qs word t of row g group 0,
 *         row g+8 group 0, row g group 1, row g+8 group 1}; low nibbles are
 *         k 4t.., high nibbles k 16+4t.. (the GGUF nibble order).
 *         scales: per (tile, kstep, g) 4 halves {d(g,0), d(g+8,0), d(g,1), d(g+8,1)}
 *   Q8_0  per (tile, kstep, group, lane): uint4 {row g word t, row g+8
 *         word t, row g word t+4, row g+8 word t+4}; scales as Q4_0
 *   Q4_K  per (tile, kstep = 64 values = sub-blocks 2c and 2c+1, lane):
 *         uint4 {row g qs word 8c+t, row g+8 8c+t, row g 8c+4+t, row g+8
 *         8c+4+t} (low nibbles sub-block 2c, high 2c+1); header per (tile,
 *         super-block, row): the 16 bytes d, dmin, scales[12] verbatim
 *   Q6_K  per (tile, kstep of 128, lane): 12 words, for groups j = 0..3:
 *         lo(j, g), lo(j, g+8) (low 4 bits: k 4t.. in low nibbles, k 16+4t..
 *         in high), then h(j) for j = 0..3 (2 high bits of the four bytes:
 *         bits 0-1 row g k 4t.., 2-3 row g k 16+4t.., 4-5 row g+8 k 4t..,
 *         6-7 row g+8 k 16+4t..); scales per (tile, kstep, row): 8 int8 (the
 *         sub-blocks of 16 that the kstep covers); d per (tile, super-block,
 *         g): half2 {d(g), d(g+8)}
 *   F32/F16/BF16: GGUF rows as they are.
 *
 * Activations for the quantized formats are int8 rows in the same
 * fragment order (per 64 values, lane t's 16 bytes are {group 0 bytes 4t..,
 * group 0 bytes 16+4t.., group 1 bytes 4t.., group 1 bytes 16+4t..}) with
 * one float scale d and the int sum of the group's quants per (group, token),
 * stored group-major ([group][tok_pad], a float2 {d, sum} each) so that a
 * lane reads its two tokens' {d, sum} with one 16-byte load.
 */
#ifndef QF_CUDA_INT_H
#define QF_CUDA_INT_H

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

enum { FMT_F32 = 0, FMT_F16, FMT_BF16, FMT_Q4_0, FMT_Q8_0, FMT_Q4_K, FMT_Q6_K, FMT_COUNT };

/* activation encodings a matrix needs */
enum { ACT_F32 = 1, ACT_Q8_0 = 2, ACT_Q8_K = 4 };

static inline int fmt_is_quant(int fmt) { return fmt >= FMT_Q4_0; }
static inline int fmt_act(int fmt) {
    return fmt == FMT_Q4_0 || fmt == FMT_Q8_0 ? ACT_Q8_0 : fmt_is_quant(fmt) ? ACT_Q8_K : ACT_F32;
}
/* values per kstep of the tile layout */
static inline int fmt_kstep(int fmt) { return fmt == FMT_Q6_K ? 128 : 64; }

/* A weight matrix on the device. */
typedef struct dmat {
    int fmt;
    int rows, cols;   /* logical shape (rows outputs, cols inputs) */
    int rows_pad;     /* multiple of 32 */
    int kpad;         /* cols padded to the kstep (quantized) */
    int ks;           /* ksteps */
    void *q;          /* tile layout quants, or the raw rows (float formats) */
    void *s;          /* scales / headers (quantized) */
    size_t row_bytes; /* float formats: bytes per row */
    float *bias;      /* (rows) or NULL */
    size_t bytes;     /* device bytes of q + s */
    size_t qbytes;    /* device bytes of q */
} dmat;

/* Encoded activations of up to tok_pad tokens of up to kmax values. */
typedef struct act_set {
    uint8_t *q; /* (tok_pad, kmax) int8, fragment order */
    float2 *ds; /* (kmax / 32, tok_pad) {d, sum of the group's quants as int bits} */
} act_set;

typedef struct act_bufs {
    act_set a8_0, a8_k; /* Q8_0-style (32-blocks, fp16 scale) and Q8_K-style (256-blocks) */
    float *f;           /* (tok_pad, kmax) floats for float weights */
    int kmax, tok_pad;
} act_bufs;

/* ---- launchers (cuda_mm.cu) ---- */

/* Repack n_rows GGUF rows (raw, row_bytes apart, on the device) of a
 * quantized matrix into m at row offset row0. */
cudaError_t cu_repack(const dmat *m, const void *raw, size_t row_bytes, int n_rows, int row0, cudaStream_t st);

/* Once per process before the first cu_matmul: raises the shared-memory
 * limit of the matrix kernels (their k-step rings need more than 48 KB). */
cudaError_t cu_mm_init(void);

/* y[tok * ldy + r] (+)= W[r] . act[tok] (+ bias[r]) for tok < n, r < rows,
 * the activations encoded in ab by cu_act. Up to 8 tokens the kernel first
 * copies their encoded rows into shared memory ("staged"). */
cudaError_t cu_matmul(const dmat *w, const act_bufs *ab, int n, float *y, int ldy, int add, int pdl,
                      cudaStream_t st);

/* tests: nonzero makes cu_matmul skip the staged variant */
extern int cu_mm_unstaged;

/* ---- one token (cuda_mv.cu) ---- */

/* Input and epilogue of cu_matvec. The row is pre-encoded (src: token 0 of
 * the act_set of the matrix's format, ds stride src_tok_pad). With h, the
 * matrix is gate|up (2 n_ff rows,
 * n_ff a multiple of 32) and h = silu(gate) * up is encoded into h (token
 * 0, ds stride h_tok_pad) for the down matrix, as cu_act would. */
typedef struct mv_kv {
    void *kv;           /* device pool, element type f32 (kv_f32) or f16 */
    int kv_f32;
    int q_rows;         /* rows before the key heads */
    int kv_dim, kv_dim_v, hd, hdv, n_rot, bs, layer, n_layer;
    const int *tok;     /* token 0's {pos, table offset, ...} */
    const int *tables;
    const float *cs;    /* token 0's (n_rot) cos, sin pairs */
} mv_kv;

typedef struct mv_in {
    const act_set *src;
    int src_tok_pad;
    const act_set *h;
    int h_tok_pad, n_ff;
    /* with kv (the Q|K|V matrix of a llama-style model: adjacent-pair RoPE,
     * no k norm): the epilogue also stores the token's key heads, rotated,
     * and value heads into the cache, as cu_k_store would */
    const mv_kv *kv;
    unsigned long long *trace; /* QF_CUDA_TRACE slot (trace_ev) or NULL */
    /* with pf (the matrix of the next cu_matvec, pf_n_ff > 0 for gate|up
     * with the SwiGLU epilogue): after requesting its own weights, the
     * kernel prefetches into L2 the first pf_tiles tiles of each of that
     * launch's blocks (at most 2 for gate|up) */
    const dmat *pf;
    int pf_n_ff, pf_tiles;
} mv_in;

/* batch-1 products go through cu_matvec unless cu_mv_off; the device sets
 * it from its QF_CUDA_MV before it enqueues a step (one value per process
 * in practice: the environment is read when a device opens) */
extern int cu_mv_off;
int cu_mv_enabled(void);
/* once per process, after cu_mm_init (shared-memory limits) */
cudaError_t cu_mv_init(void);
/* cu_matvec takes this matrix (Q4_0 or Q8_0, row fits shared memory) */
int cu_mv_ok(const dmat *w);
/* y[r] (+)= W[r] . row (+ bias[r]) for one token; the same bits as
 * cu_matmul gives that token in any batch */
cudaError_t cu_matvec(const dmat *w, const mv_in *in, float *y, int add, int pdl, cudaStream_t st);
/* warps splitting k per tile in mmq and cu_matvec */
int cu_mm_warps(int ks);

/* ---- launchers (cuda_ops.cu) ---- */

typedef struct act_args {
    const float *x;    /* input rows, ldx apart */
    const float *x2;   /* SwiGLU: up rows (same ldx); h = silu(x) * x2 */
    int ldx;
    const int *rows;   /* gather: token i reads input row rows[i], else i */
    const float *norm; /* RMSNorm weights or NULL */
    float eps;
    int k;             /* values per row */
    int modes;         /* ACT_* to produce */
    int n;             /* tokens */
    unsigned long long *trace; /* QF_CUDA_TRACE slot (trace_ev) or NULL */
} act_args;
cudaError_t cu_act(const act_args *a, const act_bufs *out, int pdl, cudaStream_t st);

typedef struct attn_params {
    const float *qkv;   /* (n_tok, qkv_stride): q (n_head*hd), k (kvh*hd), v (kvh*hdv) */
    int qkv_stride;
    const int *tok;     /* (n_tok, 4) pos, table offset, sink_end, t0 */
    const int *tables;
    void *kv;           /* device pool: (n_blocks, n_layer, {K (bs, kv_dim), V (bs, kv_dim_v)}) */
    int kv_f32;         /* element type: 1 f32, 0 f16 */
    int layer, n_layer, bs, kv_dim, kv_dim_v;
    int hd, hdv, n_head, n_head_kv;
    float scale;
    const float *cs;    /* (n_tok, n_rot) cos, sin pairs */
    int n_rot, neox;
    const float *q_norm, *k_norm;
    float eps;
    int n_tok;
    int hpc;            /* query heads per block: one of 1, 2, 4, 6, 7, 8 (cu_hpc_ok), dividing
                           n_head / n_head_kv */
    int fuse_store;     /* no sequence has two tokens in the step: cu_attention stores K/V itself
                           (no cu_k_store before it) */
    int early_trigger;  /* PDL: let the next kernel launch at once, not after the attention loop */
    int prefetch;       /* sm_90: the cached keys/values into L2 before the PDL wait */
    int n_split;
    float *out;         /* (n_tok, n_head * hdv) */
    float *part;        /* (n_tok, n_head, n_split, hdv + 2) when n_split > 1 */
    int *cnt;           /* (n_tok, n_head / hpc) zeroed counters: the last split block combines
                           (left zeroed again); NULL: a combine kernel does */
    /* when set (hdv a multiple of 32): out also encoded Q8_0-style for Wo,
     * as cu_act would encode it */
    uint8_t *aq8;       /* (tok_pad, a_kmax) */
    float2 *ads8;       /* (a_kmax / 32, a_tok_pad) */
    int a_kmax, a_tok_pad;
    /* short contexts, one token per sequence, few tokens: cu_attention_short
     * (lcap: positions its shared memory holds, >= every token's attended
     * count; a multiple of 32) */
    int lcap;
    unsigned long long *trace; /* QF_CUDA_TRACE slot (trace_ev) or NULL */
} attn_params;
/* keys (normed, rotated) and values of the step's tokens into the cache */
cudaError_t cu_k_store(const attn_params *p, int pdl, cudaStream_t st);
/* attention of every token; its query heads normed and rotated here; with
 * fuse_store also its key (normed, rotated) and value stored into the cache */
cudaError_t cu_attention(const attn_params *p, int pdl, cudaStream_t st);
/* The attention of one token per sequence over a short context (p->lcap
 * positions at most): one block per (token, query head) holding every
 * attended key and value in shared memory, the cached ones copied in before
 * the PDL wait; no split, no combine. Needs every sequence to have one
 * token in the step (the other positions were written by earlier steps),
 * no fuse_store, head dims multiples of 8 up to 256. Same outputs as
 * cu_attention (out, and the Q8_0 encoding when aq8), not the same bits
 * (another summation order). */
cudaError_t cu_attention_short(const attn_params *p, int pdl, cudaStream_t st);
/* shared memory of cu_attention_short for lcap positions (0: too much) */
size_t cu_attention_short_smem(const attn_params *p, int lcap);

/* Query heads per attention block the kernels are built for: the powers of
 * two, and 6 and 7 for the kv groups of Qwen2.5 (12/2, 14/2, 28/4), so
 * that a whole group shares each key and value read. */
static inline int cu_hpc_ok(int h) { return h == 1 || h == 2 || h == 4 || h == 6 || h == 7 || h == 8; }
cudaError_t cu_rope_table(const int *tok, int n_tok, const double *freq, int n_rot, float *cs, int pdl,
                          cudaStream_t st);

#endif
