/* cuda_dev.cu - the CUDA device of the GPU backend (qf_dev_cuda_ops).
 *
 * open: every layer matrix is uploaded once and repacked into the tile
 * layouts of cuda_int.h (Q/K/V rows are concatenated into one matrix when
 * they share a format, gate/up likewise, so a layer runs 4 matrix kernels);
 * types the kernels do not take are expanded to f16 on the host first. The
 * kv pool is one allocation, block-major (a block's keys and values of all
 * layers are contiguous, so a copy-on-write copy is one memcpy). A partial
 * offload (cfg->layer0 > 0) uploads and keeps kv for layers [layer0,
 * n_layer) only; d->L, the kv pool and the kernels number them from 0.
 *
 * step: one host-to-device copy of the packed step, then per layer:
 *   act(RMSNorm, encode) -> QKV -> k_store (k norm + RoPE, K/V into the
 *   cache) -> attention (q norm + RoPE; for Q8_0-style Wo it also encodes
 *   its output) -> [act(encode)] -> Wo (+= residual) -> act(RMSNorm, encode)
 *   -> gate|up -> act(SwiGLU, encode) -> down (+= residual)
 * and the output head over the rows that want logits, then one copy of the
 * logits back. One token (generation at batch 1) with Q4_0/Q8_0 weights
 * takes the matrix-vector kernel (cuda_mv.cu) and, by default, 7 kernels
 * a layer: act -> QKV, whose epilogue also stores K (rotated) and V in the
 * cache (llama-style RoPE, no k norm) -> attention -> Wo -> act -> gate|up
 * with a SwiGLU epilogue -> down. Kernels are chained with programmatic dependent
 * launch; the whole sequence is captured once per step shape (tokens,
 * logits rows, attention split, heads per block, one token per sequence or
 * not) into a CUDA graph and replayed, so a decode step costs one graph
 * launch. Steps where every sequence has one token and the context is
 * short take cu_attention_short (every attended key and value copied into
 * shared memory before the PDL wait, one block per token and query head or
 * kv group, no split; it lets the next kernel launch at its start, and
 * stores the step's K/V itself where k_store would run); otherwise the
 * split kernel, which prefetches the cached keys/values it will read into
 * L2 before its PDL wait (QF_CUDA_ATT_PF) and, split over several blocks,
 * combines the splits in the last block to finish (QF_CUDA_ATT_COMBINE=1:
 * a combine kernel). The one-token Wo kernel also prefetches the first
 * tile of every gate|up block into L2 (QF_CUDA_MV_PF). QF_CUDA_GRAPHS=0,
 * QF_CUDA_PDL=0, QF_CUDA_ATT_ENC=0, QF_CUDA_MV=0, QF_CUDA_SWIGLU=0,
 * QF_CUDA_QKV_STORE=0, QF_CUDA_ATT_PF=0, QF_CUDA_ATT_SHORT=0 (=2: only for
 * few tokens), QF_CUDA_ATT_SHORT_EARLY=0, QF_CUDA_ATT_SHORT_FUSE=0 and
 * QF_CUDA_MV_PF=0 turn these off; QF_CUDA_ATT_FUSE=1 turns on what
 * measured slower (debugging, measurements); QF_CUDA_PROFILE=1 times every kernel (serialized; any
 * program prints the totals when the backend closes), QF_CUDA_TRACE=1
 * records the timeline of the graph-replayed step (qf_cuda_trace_get).
 *
 * Invariant: every device buffer a captured graph names is allocated before
 * the capture and lives as long as the graph; the only buffer that can move
 * (the step buffer, when a step's tables outgrow it) drops all graphs when
 * it does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern "C" {
#include "backend/backend_int.h"
#include "backend/cuda/cuda.h"
#include "base/log.h"
#include "base/mem.h"
#include "quant/quant.h"
}
#include "backend/cuda/cuda_int.h"

#define N_GRAPHS 16

typedef struct dlayer {
    dmat qkv[3], wo, gu[2], down;
    int n_qkv, n_gu;
    float *attn_norm, *ffn_norm, *q_norm, *k_norm;
    int act_qkv, act_wo, act_gu, act_down;
} dlayer;

typedef struct graph_ent {
    int key[6]; /* n_tok, n_out, n_split, hpc, one token per sequence, short attention's lcap */
    cudaGraphExec_t exec;
    unsigned long last;
} graph_ent;

struct qf_dev {
    const qf_model *m;
    qf_dev_config cfg;
    int n_sm;
    cudaStream_t st;
    dlayer *L;
    dmat out;
    float *out_norm;
    int act_out;
    double *freq;
    void *kv;
    size_t kv_bytes;
    int kv_f32;
    float *x, *qkv, *att, *gu, *logits, *cs, *part;
    int *att_cnt;   /* (n_batch_max, n_head) split counters of attention (zero between steps) */
    int att_combine; /* QF_CUDA_ATT_COMBINE=1: a combine kernel instead of the last split block */
    int qkv_stride, att_stride, gu_stride;
    size_t part_floats;
    act_bufs act;
    void *stage_h, *stage_d;
    size_t stage_cap, stage_dcap;
    float *logits_h;
    graph_ent graphs[N_GRAPHS];
    unsigned long tick;
    int use_graphs, use_pdl, use_att_enc;
    /* batch-1 fusions (QF_CUDA_SWIGLU, QF_CUDA_QKV_STORE, QF_CUDA_ATT_FUSE) */
    int use_mv, use_swiglu, use_att_fuse, use_qkv_store;
    int split_min;  /* most attended positions that run unsplit (QF_CUDA_SPLIT_MIN) */
    int split_len;  /* fewest positions per split (QF_CUDA_SPLIT_LEN) */
    int hpc_env;    /* QF_CUDA_HPC: query heads per attention block, 0 = chosen per step */
    int att_early;  /* QF_CUDA_ATT_EARLY: attention triggers the next kernel at its start */
    int att_pf;     /* QF_CUDA_ATT_PF: attention prefetches its cached keys/values before the PDL wait */
    /* QF_CUDA_ATT_SHORT: cu_attention_short for one token per sequence
     * over short contexts (2: few tokens only) */
    int att_short;
    int short_early; /* QF_CUDA_ATT_SHORT_EARLY: it lets the next kernel launch at its start */
    int short_fuse; /* QF_CUDA_ATT_SHORT_FUSE: it stores the step's K/V itself where k_store would run */
    int mv_pf;      /* QF_CUDA_MV_PF=t: Wo prefetches the first t tiles of each gate|up block into L2 */
    act_set h8;     /* SwiGLU output of a fused gate/up matvec: token 0, ds stride 1 */
    /* QF_CUDA_PROFILE=1: events around every kernel of a step (no graphs) */
    int prof;
    cudaEvent_t *pev;
    int *pcat, n_pev, cap_pev;
    /* QF_CUDA_TRACE=1: every launch of the step that takes a slot records
     * its blocks' start / wait / loop / end times (trace_ev) */
    unsigned long long *tr_d, *tr_h;
    int tr_n, tr_layer;
    signed char *tr_cat;
    short *tr_lay;
    size_t w_bytes, step_bytes, scratch_bytes;
};

/* ---- profiling: device time per kind of kernel (QF_CUDA_PROFILE=1) ---- */

enum { PC_ROPE = 0, PC_EMBED, PC_ACT, PC_QKV, PC_KSTORE, PC_ATTN, PC_WO, PC_GU, PC_DOWN, PC_HEAD, PC_COUNT };
static const char *const k_pc_name[PC_COUNT] = {"rope",      "embed", "act",     "qkv",  "k_store",
                                                "attention", "wo",    "gate_up", "down", "head"};
static double g_pc_ms[PC_COUNT], g_pc_bytes[PC_COUNT];
static long g_pc_calls[PC_COUNT], g_pc_steps;

/* An event before the next launch, which belongs to category cat; bytes:
 * weight bytes it streams. */
static void prof_mark(qf_dev *d, int cat, size_t bytes) {
    if (!d->prof || d->n_pev >= d->cap_pev) return;
    cudaEventRecord(d->pev[d->n_pev], d->st);
    d->pcat[d->n_pev++] = cat;
    if (cat >= 0) g_pc_bytes[cat] += (double)bytes;
}

static void prof_collect(qf_dev *d) {
    if (!d->prof || d->n_pev < 2) return;
    cudaEventSynchronize(d->pev[d->n_pev - 1]);
    for (int i = 0; i + 1 < d->n_pev; i++) {
        float ms = 0.0f;
        if (d->pcat[i] < 0 || cudaEventElapsedTime(&ms, d->pev[i], d->pev[i + 1]) != cudaSuccess) continue;
        g_pc_ms[d->pcat[i]] += ms;
        g_pc_calls[d->pcat[i]]++;
    }
    g_pc_steps++;
    d->n_pev = 0;
}

/* ---- timeline: QF_CUDA_TRACE=1 ---- */

#define TR_MAX 1024
static double g_tr_us[TR_MAX][8];
static long g_tr_cnt[TR_MAX][4], g_tr_steps;
static int g_tr_n;
static signed char g_tr_cat[TR_MAX];
static short g_tr_lay[TR_MAX];

/* The trace slot of the next launch (category cat, the current layer), or
 * NULL when not tracing. */
static unsigned long long *tr_take(qf_dev *d, int cat) {
    if (!d->tr_d || d->tr_n >= TR_MAX) return NULL;
    d->tr_cat[d->tr_n] = (signed char)cat;
    d->tr_lay[d->tr_n] = (short)d->tr_layer;
    return d->tr_d + 8 * (size_t)d->tr_n++;
}

/* After a step: its slots, relative to the earliest block start, into the
 * running sums (reset when the launch sequence changes). */
static void tr_collect(qf_dev *d) {
    if (!d->tr_d || d->tr_n <= 0) return;
    if (cudaMemcpy(d->tr_h, d->tr_d, (size_t)d->tr_n * 8 * sizeof(unsigned long long), cudaMemcpyDeviceToHost) !=
        cudaSuccess) {
        cudaGetLastError();
        return;
    }
    unsigned long long t0 = ~0ull;
    for (int i = 0; i < d->tr_n; i++)
        if (d->tr_h[8 * i + 1] && ~d->tr_h[8 * i] < t0) t0 = ~d->tr_h[8 * i];
    if (t0 == ~0ull) return;
    bool same = g_tr_n == d->tr_n;
    for (int i = 0; same && i < d->tr_n; i++) same = g_tr_cat[i] == d->tr_cat[i] && g_tr_lay[i] == d->tr_lay[i];
    if (!same) {
        memset(g_tr_us, 0, sizeof g_tr_us);
        memset(g_tr_cnt, 0, sizeof g_tr_cnt);
        g_tr_steps = 0;
        g_tr_n = d->tr_n;
        memcpy(g_tr_cat, d->tr_cat, (size_t)d->tr_n);
        memcpy(g_tr_lay, d->tr_lay, (size_t)d->tr_n * sizeof(short));
    }
    for (int i = 0; i < d->tr_n; i++)
        for (int e = 0; e < 4; e++) {
            const unsigned long long lo = d->tr_h[8 * i + 2 * e], hi = d->tr_h[8 * i + 2 * e + 1];
            if (!hi) continue;
            g_tr_us[i][2 * e] += (double)(~lo - t0) * 1e-3;
            g_tr_us[i][2 * e + 1] += (double)(hi - t0) * 1e-3;
            g_tr_cnt[i][e]++;
        }
    g_tr_steps++;
}

static void prof_hold(void *ud) {
    (void)ud;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* ---- errors and allocation ---- */

static qf_status cu_fail(qf_err *err, cudaError_t e, const char *what) {
    return QF_ERR_SET(err, e == cudaErrorMemoryAllocation ? QF_ERR_NOMEM : QF_ERR_INTERNAL, "cuda: %s: %s", what,
                      cudaGetErrorString(e));
}

#define CU(call, what)                                                                            \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) return cu_fail(err, e_, what);                                     \
    } while (0)

static qf_status dalloc(void **p, size_t bytes, size_t *counter, const char *what, qf_err *err) {
    *p = NULL;
    if (bytes == 0) bytes = 16;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        cudaGetLastError();
        return QF_ERR_SET(err, QF_ERR_NOMEM, "cuda: cannot allocate %zu bytes of device memory for %s (%s)", bytes,
                          what, cudaGetErrorString(e));
    }
    if (counter) *counter += bytes;
    e = cudaMemset(*p, 0, bytes);
    return e == cudaSuccess ? QF_OK : cu_fail(err, e, "memset");
}

static int env_on(const char *name, int def) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    return strcmp(s, "0") != 0;
}

static size_t round_up(size_t n, size_t k) { return (n + k - 1) / k * k; }

/* ---- weights ---- */

static int native_fmt(qf_type t) {
    switch (t) {
    case QF_TYPE_F32: return FMT_F32;
    case QF_TYPE_F16: return FMT_F16;
    case QF_TYPE_BF16: return FMT_BF16;
    case QF_TYPE_Q4_0: return FMT_Q4_0;
    case QF_TYPE_Q8_0: return FMT_Q8_0;
    case QF_TYPE_Q4_K: return FMT_Q4_K;
    case QF_TYPE_Q6_K: return FMT_Q6_K;
    default: return -1;
    }
}

/* format on the device: native, or f16 after host expansion */
static int dev_fmt(const qf_weight *w) {
    int f = native_fmt(w->type);
    return f >= 0 ? f : FMT_F16;
}

static qf_status mat_alloc(qf_dev *d, dmat *m, int fmt, int rows, int cols, const char *name, qf_err *err) {
    memset(m, 0, sizeof *m);
    m->fmt = fmt;
    m->rows = rows;
    m->cols = cols;
    m->rows_pad = (int)round_up((size_t)rows, 32);
    size_t qb, sb = 0;
    if (fmt_is_quant(fmt)) {
        int kst = fmt_kstep(fmt);
        m->kpad = (int)round_up((size_t)cols, (size_t)kst);
        m->ks = m->kpad / kst;
        size_t tiles = (size_t)m->rows_pad / 16, ks = (size_t)m->ks;
        switch (fmt) {
        case FMT_Q4_0: qb = tiles * ks * 32 * 16, sb = tiles * ks * 64; break;
        case FMT_Q8_0: qb = tiles * ks * 2 * 32 * 16, sb = tiles * ks * 64; break;
        case FMT_Q4_K: qb = tiles * ks * 32 * 16, sb = tiles * (ks / 4) * 16 * 16; break;
        default: qb = tiles * ks * 3 * 32 * 16, sb = tiles * ks * 16 * 8 + tiles * (ks / 2) * 8 * 4; break;
        }
    } else {
        if (cols % 4 != 0)
            return QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "cuda: %s: %d columns (float weights need a multiple of 4)",
                              name, cols);
        m->kpad = cols;
        m->row_bytes = (size_t)cols * (fmt == FMT_F32 ? 4 : 2);
        qb = (size_t)rows * m->row_bytes;
    }
    qf_status st = dalloc(&m->q, qb, &d->w_bytes, name, err);
    if (st == QF_OK && sb) st = dalloc(&m->s, sb, &d->w_bytes, name, err);
    m->bytes = qb + sb;
    m->qbytes = qb;
    return st;
}

/* Upload w into rows [row0, row0 + w->rows) of m; raw_d: device scratch of
 * at least w->rows * w->row_bytes bytes for the repack. */
static qf_status mat_fill(qf_dev *d, dmat *m, const qf_weight *w, int row0, void *raw_d, const char *name,
                          qf_err *err) {
    size_t bytes = (size_t)w->rows * w->row_bytes;
    if (native_fmt(w->type) == m->fmt) {
        if (fmt_is_quant(m->fmt)) {
            CU(cudaMemcpyAsync(raw_d, w->data, bytes, cudaMemcpyHostToDevice, d->st), "weight upload");
            CU(cu_repack(m, raw_d, w->row_bytes, (int)w->rows, row0, d->st), "repack");
            CU(cudaStreamSynchronize(d->st), "repack");
        } else {
            CU(cudaMemcpy((uint8_t *)m->q + (size_t)row0 * m->row_bytes, w->data, bytes, cudaMemcpyHostToDevice),
               "weight upload");
        }
        return QF_OK;
    }
    /* expand on the host to f16 */
    const qf_type_traits *tt = qf_type_get(w->type);
    float *row = (float *)qf_malloc((size_t)w->cols * sizeof(float));
    uint16_t *h = (uint16_t *)qf_malloc((size_t)w->rows * w->cols * sizeof(uint16_t));
    if (!row || !h || !tt) {
        qf_free(row);
        qf_free(h);
        return QF_ERR_SET(err, QF_ERR_NOMEM, "cuda: %s: out of host memory to expand %s to f16", name,
                          tt ? tt->name : "?");
    }
    for (int64_t r = 0; r < w->rows; r++) {
        tt->to_float((const uint8_t *)w->data + (size_t)r * w->row_bytes, row, w->cols);
        for (int64_t c = 0; c < w->cols; c++) h[(size_t)r * w->cols + c] = qf_fp32_to_fp16(row[c]);
    }
    cudaError_t e = cudaMemcpy((uint8_t *)m->q + (size_t)row0 * m->row_bytes, h, (size_t)w->rows * w->cols * 2,
                               cudaMemcpyHostToDevice);
    qf_free(row);
    qf_free(h);
    if (e != cudaSuccess) return cu_fail(err, e, "weight upload");
    return QF_OK;
}

static qf_status vec_upload(qf_dev *d, float **dst, const float *src, size_t n, qf_err *err) {
    *dst = NULL;
    if (!src) return QF_OK;
    qf_status st = dalloc((void **)dst, n * sizeof(float), &d->w_bytes, "norm weights", err);
    if (st != QF_OK) return st;
    CU(cudaMemcpy(*dst, src, n * sizeof(float), cudaMemcpyHostToDevice), "vector upload");
    return QF_OK;
}

/* Upload n weights (their rows in order) as matrices: each run of
 * consecutive weights that share a format and width becomes one matrix
 * (rows concatenated, biases likewise), so Q/K/V is one matrix when they
 * agree and e.g. [Q|K] + [V] when V alone is Q6_K (Q4_K_M). *n_out:
 * matrices made. */
static qf_status upload_group(qf_dev *d, const qf_weight *const *ws, const float *const *bias, int n, dmat *out,
                              int *n_out, void *raw_d, const char *name, qf_err *err) {
    const bool nofuse = getenv("QF_CUDA_NOFUSE") && env_on("QF_CUDA_NOFUSE", 0);
    qf_status st;
    *n_out = 0;
    for (int i = 0; i < n;) {
        int j = i + 1, rows = (int)ws[i]->rows;
        while (!nofuse && j < n && dev_fmt(ws[j]) == dev_fmt(ws[i]) && ws[j]->cols == ws[i]->cols)
            rows += (int)ws[j++]->rows;
        dmat *m = &out[(*n_out)++];
        bool any_bias = false;
        for (int k = i; k < j; k++) any_bias = any_bias || (bias && bias[k]);
        if ((st = mat_alloc(d, m, dev_fmt(ws[i]), rows, (int)ws[i]->cols, name, err)) != QF_OK) return st;
        if (any_bias && (st = dalloc((void **)&m->bias, (size_t)rows * 4, &d->w_bytes, name, err)) != QF_OK) return st;
        for (int k = i, r0 = 0; k < j; r0 += (int)ws[k]->rows, k++) {
            if ((st = mat_fill(d, m, ws[k], r0, raw_d, name, err)) != QF_OK) return st;
            if (bias && bias[k])
                CU(cudaMemcpy(m->bias + r0, bias[k], (size_t)ws[k]->rows * 4, cudaMemcpyHostToDevice), "bias");
            else if (any_bias)
                CU(cudaMemset(m->bias + r0, 0, (size_t)ws[k]->rows * 4), "bias");
        }
        i = j;
    }
    return QF_OK;
}

static int acts_of(const dmat *m, int n) {
    int a = 0;
    for (int i = 0; i < n; i++) a |= fmt_act(m[i].fmt);
    return a;
}

static void mat_free(dmat *m) {
    cudaFree(m->q);
    cudaFree(m->s);
    cudaFree(m->bias);
    memset(m, 0, sizeof *m);
}

/* ---- open / close ---- */

static bool cuda_probe(char *name, size_t cap) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
        cudaGetLastError();
        return false;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess || p.major < 8) {
        cudaGetLastError();
        return false;
    }
    if (name && cap) snprintf(name, cap, "%s", p.name);
    return true;
}

static bool cuda_mem_info(size_t *free_b, size_t *total_b) {
    if (cudaSetDevice(0) != cudaSuccess || cudaMemGetInfo(free_b, total_b) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return true;
}

/* the bytes mat_alloc gives w: tiles of the native quantized formats (as
 * many bytes per weight as GGUF, rows padded to 32), f16 for the rest */
static size_t cuda_weight_bytes(const qf_weight *w) {
    const size_t rows = round_up((size_t)w->rows, 32);
    switch (dev_fmt(w)) {
    case FMT_F32: return (size_t)w->rows * (size_t)w->cols * 4;
    case FMT_F16:
    case FMT_BF16: return (size_t)w->rows * (size_t)w->cols * 2;
    default: return rows * w->row_bytes;
    }
}

static void cuda_close(qf_dev *d);

static qf_status check_model(const qf_model *m, qf_err *err) {
    const qf_hparams *hp = &m->hp;
    if (hp->head_dim % 8 || hp->head_dim_v % 8 || hp->head_dim > 256 || hp->head_dim_v > 256)
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "cuda: head dims %d/%d (multiples of 8 up to 256 supported)",
                          hp->head_dim, hp->head_dim_v);
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv)
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "cuda: %d heads over %d kv heads", hp->n_head, hp->n_head_kv);
    if (hp->n_rot % 2 || hp->n_rot > hp->head_dim)
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "cuda: %d rotary dims for head dim %d", hp->n_rot, hp->head_dim);
    if (hp->n_embd % 4 || hp->n_ff % 4)
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "cuda: n_embd %d / n_ff %d not multiples of 4", hp->n_embd,
                          hp->n_ff);
    return QF_OK;
}

static qf_dev *cuda_open(const qf_model *m, const qf_dev_config *cfg, qf_err *err) {
    const qf_hparams *hp = &m->hp;
    if (check_model(m, err) != QF_OK) return NULL;
    qf_dev *d = (qf_dev *)qf_calloc(1, sizeof *d);
    if (!d) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "cuda: out of host memory");
        return NULL;
    }
    d->m = m;
    d->cfg = *cfg;
    d->use_graphs = env_on("QF_CUDA_GRAPHS", 1);
    d->use_pdl = env_on("QF_CUDA_PDL", 1);
    d->use_att_enc = env_on("QF_CUDA_ATT_ENC", 1);
    d->use_mv = env_on("QF_CUDA_MV", 1);
    /* measured slower than the act kernel + matrix-vector kernel (docs) */
    d->use_swiglu = env_on("QF_CUDA_SWIGLU", 1);
    d->use_qkv_store = env_on("QF_CUDA_QKV_STORE", 1);
    /* measured slower than the kernel chain with PDL (docs/backend.md) */
    /* measured slower than k_store + attention on the H100 (docs/backend.md) */
    d->use_att_fuse = env_on("QF_CUDA_ATT_FUSE", 0);
    d->split_min = getenv("QF_CUDA_SPLIT_MIN") ? atoi(getenv("QF_CUDA_SPLIT_MIN")) : 64;
    d->split_len = getenv("QF_CUDA_SPLIT_LEN") ? atoi(getenv("QF_CUDA_SPLIT_LEN")) : 32;
    if (d->split_len < 8) d->split_len = 8;
    d->hpc_env = getenv("QF_CUDA_HPC") ? atoi(getenv("QF_CUDA_HPC")) : 0;
    d->att_early = env_on("QF_CUDA_ATT_EARLY", 0);
    d->att_pf = env_on("QF_CUDA_ATT_PF", 1);
    d->att_combine = env_on("QF_CUDA_ATT_COMBINE", 0);
    /* 2: only for few tokens (one query head per block; measurements) */
    d->att_short = getenv("QF_CUDA_ATT_SHORT") && *getenv("QF_CUDA_ATT_SHORT") ? atoi(getenv("QF_CUDA_ATT_SHORT")) : 1;
    d->short_early = env_on("QF_CUDA_ATT_SHORT_EARLY", 1);
    d->short_fuse = env_on("QF_CUDA_ATT_SHORT_FUSE", 1);
    d->mv_pf = getenv("QF_CUDA_MV_PF") ? atoi(getenv("QF_CUDA_MV_PF")) : 1;
    d->prof = env_on("QF_CUDA_PROFILE", 0);
    if (env_on("QF_CUDA_TRACE", 0)) {
        d->tr_h = (unsigned long long *)qf_malloc((size_t)TR_MAX * 8 * sizeof(unsigned long long));
        d->tr_cat = (signed char *)qf_malloc(TR_MAX);
        d->tr_lay = (short *)qf_malloc(TR_MAX * sizeof(short));
        if (!d->tr_h || !d->tr_cat || !d->tr_lay ||
            cudaMalloc((void **)&d->tr_d, (size_t)TR_MAX * 8 * sizeof(unsigned long long)) != cudaSuccess) {
            cudaGetLastError();
            d->tr_d = NULL;
        }
    }
    if (d->prof) {
        /* kernels one after the other, each between two events */
        d->use_graphs = 0;
        d->use_pdl = 0;
        d->cap_pev = 16 * (hp->n_layer + 2);
        d->pev = (cudaEvent_t *)qf_calloc((size_t)d->cap_pev, sizeof *d->pev);
        d->pcat = (int *)qf_calloc((size_t)d->cap_pev, sizeof *d->pcat);
        if (!d->pev || !d->pcat) d->cap_pev = 0;
        for (int i = 0; i < d->cap_pev; i++)
            if (cudaEventCreate(&d->pev[i]) != cudaSuccess) {
                d->cap_pev = i;
                break;
            }
    }
    qf_status st = QF_OK;
    void *raw_d = NULL;
    /* the device's layers: [layer0, n_layer) of the model, 0.. here */
    const int layer0 = cfg->layer0, nl = hp->n_layer - cfg->layer0;
    int nb = cfg->n_batch_max, E = hp->n_embd;
    int qd = hp->n_head * hp->head_dim, kd = hp->n_head_kv * hp->head_dim, vd = hp->n_head_kv * hp->head_dim_v;
    int od = hp->n_head * hp->head_dim_v;
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, 0);
    if (e == cudaSuccess) e = cudaSetDevice(0);
    /* a blocking stream: ordered after the legacy-stream memsets and copies of the setup */
    if (e == cudaSuccess) e = cudaStreamCreate(&d->st);
    if (e != cudaSuccess) {
        cu_fail(err, e, "device setup");
        goto fail;
    }
    d->n_sm = prop.multiProcessorCount;
    e = cu_mm_init();
    if (e != cudaSuccess) {
        cu_fail(err, e, "kernel setup");
        goto fail;
    }

    {   /* weights */
        size_t raw_max = 0;
        for (int l = 0; l < nl; l++) {
            const qf_layer *ly = &m->layers[layer0 + l];
            const qf_weight *ws[7] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down};
            for (int i = 0; i < 7; i++)
                if ((size_t)ws[i]->rows * ws[i]->row_bytes > raw_max) raw_max = (size_t)ws[i]->rows * ws[i]->row_bytes;
        }
        if ((size_t)m->output.rows * m->output.row_bytes > raw_max) raw_max = (size_t)m->output.rows * m->output.row_bytes;
        if ((st = dalloc(&raw_d, raw_max, NULL, "weight staging", err)) != QF_OK) goto fail;
        d->L = (dlayer *)qf_calloc((size_t)nl, sizeof *d->L);
        if (!d->L) {
            QF_ERR_SET(err, QF_ERR_NOMEM, "cuda: out of host memory");
            goto fail;
        }
        bool warned = false;
        for (int l = 0; l < nl; l++) {
            const qf_layer *ly = &m->layers[layer0 + l];
            dlayer *D = &d->L[l];
            char name[64];
            snprintf(name, sizeof name, "blk.%d", layer0 + l);
            const qf_weight *ws[7] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down};
            for (int i = 0; i < 7 && !warned; i++)
                if (native_fmt(ws[i]->type) < 0) {
                    qf_warn("cuda: %s: %s weights are expanded to f16 on the device (no native kernel)", name,
                            qf_type_get(ws[i]->type) ? qf_type_get(ws[i]->type)->name : "?");
                    warned = true;
                }
            const qf_weight *qkv[3] = {&ly->wq, &ly->wk, &ly->wv};
            const float *qb[3] = {ly->bq, ly->bk, ly->bv};
            if ((st = upload_group(d, qkv, qb, 3, D->qkv, &D->n_qkv, raw_d, name, err)) != QF_OK) goto fail;
            const qf_weight *wo[1] = {&ly->wo};
            int one;
            if ((st = upload_group(d, wo, NULL, 1, &D->wo, &one, raw_d, name, err)) != QF_OK) goto fail;
            const qf_weight *gu[2] = {&ly->w_gate, &ly->w_up};
            if ((st = upload_group(d, gu, NULL, 2, D->gu, &D->n_gu, raw_d, name, err)) != QF_OK) goto fail;
            const qf_weight *dn[1] = {&ly->w_down};
            if ((st = upload_group(d, dn, NULL, 1, &D->down, &one, raw_d, name, err)) != QF_OK) goto fail;
            if ((st = vec_upload(d, &D->attn_norm, ly->attn_norm, (size_t)E, err)) != QF_OK ||
                (st = vec_upload(d, &D->ffn_norm, ly->ffn_norm, (size_t)E, err)) != QF_OK ||
                (st = vec_upload(d, &D->q_norm, ly->q_norm, (size_t)hp->head_dim, err)) != QF_OK ||
                (st = vec_upload(d, &D->k_norm, ly->k_norm, (size_t)hp->head_dim, err)) != QF_OK)
                goto fail;
            D->act_qkv = acts_of(D->qkv, D->n_qkv);
            D->act_wo = acts_of(&D->wo, 1);
            D->act_gu = acts_of(D->gu, D->n_gu);
            D->act_down = acts_of(&D->down, 1);
        }
        const qf_weight *ow[1] = {&m->output};
        int one;
        if ((st = upload_group(d, ow, NULL, 1, &d->out, &one, raw_d, "output", err)) != QF_OK) goto fail;
        if ((st = vec_upload(d, &d->out_norm, m->output_norm, (size_t)E, err)) != QF_OK) goto fail;
        d->act_out = acts_of(&d->out, 1);
        cudaFree(raw_d);
        raw_d = NULL;
        d->step_bytes = d->out.bytes;
        for (int l = 0; l < nl; l++) {
            dlayer *D = &d->L[l];
            for (int i = 0; i < D->n_qkv; i++) d->step_bytes += D->qkv[i].bytes;
            for (int i = 0; i < D->n_gu; i++) d->step_bytes += D->gu[i].bytes;
            d->step_bytes += D->wo.bytes + D->down.bytes;
        }
    }

    {   /* rope frequencies (double, as the CPU's rope_tables) */
        int half = hp->n_rot / 2;
        double *fr = (double *)qf_malloc((size_t)(half > 0 ? half : 1) * sizeof(double));
        if (!fr) {
            QF_ERR_SET(err, QF_ERR_NOMEM, "cuda: out of host memory");
            goto fail;
        }
        for (int j = 0; j < half; j++) {
            double f = pow((double)hp->rope_base, -2.0 * j / hp->n_rot) * hp->rope_freq_scale;
            if (m->rope_freqs) f /= m->rope_freqs[j];
            fr[j] = f;
        }
        st = dalloc((void **)&d->freq, (size_t)(half > 0 ? half : 1) * sizeof(double), &d->scratch_bytes, "rope", err);
        if (st == QF_OK) {
            e = cudaMemcpy(d->freq, fr, (size_t)half * sizeof(double), cudaMemcpyHostToDevice);
            if (e != cudaSuccess) st = cu_fail(err, e, "rope upload");
        }
        qf_free(fr);
        if (st != QF_OK) goto fail;
    }

    {   /* kv pool */
        const qf_kv_params *kp = &cfg->kv;
        d->kv_f32 = kp->type == QF_TYPE_F32;
        size_t es = d->kv_f32 ? 4 : 2;
        d->kv_bytes = (size_t)kp->n_blocks * (size_t)nl * (size_t)kp->block_size *
                      (size_t)(kp->kv_dim + kp->kv_dim_v) * es;
        if ((st = dalloc(&d->kv, d->kv_bytes, NULL, "the kv cache", err)) != QF_OK) goto fail;
        if (kp->type == QF_TYPE_Q8_0) qf_info("cuda: kv cache kept in f16 on the device (host kv type q8_0)");
    }

    {   /* scratch */
        size_t kmax = round_up((size_t)(E > od ? E : od), 256);
        if (round_up((size_t)hp->n_ff, 256) > kmax) kmax = round_up((size_t)hp->n_ff, 256);
        size_t tp = round_up((size_t)nb, 32);
        d->act.kmax = (int)kmax;
        d->act.tok_pad = (int)tp;
        d->qkv_stride = qd + kd + vd;
        d->att_stride = od;
        d->gu_stride = 2 * hp->n_ff;
        d->part_floats = (size_t)32 * d->n_sm * (size_t)(hp->head_dim_v + 2);
        size_t *sc = &d->scratch_bytes;
        if ((st = dalloc((void **)&d->act.a8_0.q, tp * kmax, sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->act.a8_0.ds, kmax / 32 * tp * sizeof(float2), sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->act.a8_k.q, tp * kmax, sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->act.a8_k.ds, kmax / 32 * tp * sizeof(float2), sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->act.f, tp * kmax * 4, sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->x, (size_t)nb * E * 4, sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->qkv, (size_t)nb * d->qkv_stride * 4, sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->att, (size_t)nb * od * 4, sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->gu, (size_t)nb * d->gu_stride * 4, sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->logits, (size_t)nb * hp->n_vocab * 4, sc, "logits", err)) != QF_OK ||
            (st = dalloc((void **)&d->cs, (size_t)nb * (hp->n_rot > 0 ? hp->n_rot : 1) * 4, sc, "rope", err)) != QF_OK ||
            (st = dalloc((void **)&d->part, d->part_floats * 4, sc, "attention", err)) != QF_OK ||
            (st = dalloc((void **)&d->att_cnt, (size_t)nb * hp->n_head * sizeof(int), sc, "attention", err)) !=
                QF_OK ||
            (st = dalloc((void **)&d->h8.q, kmax, sc, "activations", err)) != QF_OK ||
            (st = dalloc((void **)&d->h8.ds, kmax / 32 * sizeof(float2), sc, "activations", err)) != QF_OK)
            goto fail;
        e = cudaMallocHost((void **)&d->logits_h, (size_t)nb * hp->n_vocab * 4);
        if (e != cudaSuccess) {
            d->logits_h = NULL;
            cu_fail(err, e, "pinned logits buffer");
            goto fail;
        }
    }
    e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        cu_fail(err, e, "setup");
        goto fail;
    }
    return d;
fail:
    cudaFree(raw_d);
    cuda_close(d);
    return NULL;
}

static void graphs_clear(qf_dev *d) {
    for (int i = 0; i < N_GRAPHS; i++) {
        if (d->graphs[i].exec) cudaGraphExecDestroy(d->graphs[i].exec);
        memset(&d->graphs[i], 0, sizeof d->graphs[i]);
    }
}

static void cuda_close(qf_dev *d) {
    if (!d) return;
    if (d->st) cudaStreamSynchronize(d->st);
    if (d->prof && g_pc_steps > 0) { /* QF_CUDA_PROFILE=1 in any program: the totals at exit */
        double tot = 0;
        for (int c = 0; c < PC_COUNT; c++) tot += g_pc_ms[c];
        qf_info("cuda profile: %ld steps, %.1f ms of kernels (%.3f ms a step)", g_pc_steps, tot, tot / g_pc_steps);
        for (int c = 0; c < PC_COUNT; c++)
            if (g_pc_calls[c])
                qf_info("  %-10s %9.1f ms %5.1f%% %8ld calls", k_pc_name[c], g_pc_ms[c],
                        tot > 0 ? 100 * g_pc_ms[c] / tot : 0.0, g_pc_calls[c]);
    }
    graphs_clear(d);
    if (d->L)
        for (int l = 0; l < d->m->hp.n_layer - d->cfg.layer0; l++) {
            dlayer *D = &d->L[l];
            for (int i = 0; i < 3; i++) mat_free(&D->qkv[i]);
            for (int i = 0; i < 2; i++) mat_free(&D->gu[i]);
            mat_free(&D->wo);
            mat_free(&D->down);
            cudaFree(D->attn_norm);
            cudaFree(D->ffn_norm);
            cudaFree(D->q_norm);
            cudaFree(D->k_norm);
        }
    qf_free(d->L);
    mat_free(&d->out);
    void *bufs[] = {d->out_norm, d->freq, d->kv,      d->x,          d->qkv,        d->att,
                    d->gu,       d->logits, d->cs, d->part,     d->act.a8_0.q, d->act.a8_0.ds, d->att_cnt,
                    d->act.a8_k.q, d->act.a8_k.ds, d->act.f, d->stage_d, d->h8.q,     d->h8.ds};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) cudaFree(bufs[i]);
    if (d->stage_h) cudaFreeHost(d->stage_h);
    if (d->logits_h) cudaFreeHost(d->logits_h);
    if (d->st) cudaStreamDestroy(d->st);
    for (int i = 0; i < d->cap_pev; i++) cudaEventDestroy(d->pev[i]);
    qf_free(d->pev);
    qf_free(d->pcat);
    cudaFree(d->tr_d);
    qf_free(d->tr_h);
    qf_free(d->tr_cat);
    qf_free(d->tr_lay);
    cudaGetLastError();
    qf_free(d);
}

/* ---- steps ---- */

static void *cuda_staging(qf_dev *d, size_t bytes) {
    if (bytes <= d->stage_cap) return d->stage_h;
    size_t cap = d->stage_cap ? d->stage_cap : 65536;
    while (cap < bytes) cap *= 2;
    void *p = NULL;
    if (cudaMallocHost(&p, cap) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    if (d->stage_h) cudaFreeHost(d->stage_h);
    d->stage_h = p;
    d->stage_cap = cap;
    return p;
}

static qf_status cuda_copy_blocks(qf_dev *d, const int32_t *pairs, int32_t n, qf_err *err) {
    const qf_kv_params *kp = &d->cfg.kv;
    size_t blk = d->kv_bytes / (size_t)kp->n_blocks;
    for (int32_t i = 0; i < n; i++) {
        int32_t s = pairs[2 * i], t = pairs[2 * i + 1];
        if (s < 0 || t < 0 || s >= kp->n_blocks || t >= kp->n_blocks)
            return QF_ERR_SET(err, QF_ERR_INVALID, "cuda: kv block copy %d -> %d outside the pool", s, t);
        CU(cudaMemcpyAsync((uint8_t *)d->kv + (size_t)t * blk, (uint8_t *)d->kv + (size_t)s * blk, blk,
                           cudaMemcpyDeviceToDevice, d->st),
           "kv block copy");
    }
    return QF_OK;
}

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) return e_;                                                         \
    } while (0)

/* A group of matrices that share their input (Q/K/V, gate/up): one act
 * kernel encodes it for all of them, outputs at consecutive row offsets
 * (cu_matmul takes one token through the matrix-vector kernel where the
 * format allows). cat: profiling category of the matrices. */
static cudaError_t mm_group(qf_dev *d, const dmat *m, int nm, int acts, const act_args *in, float *y, int ldy,
                            int add, int cat) {
    act_args a = *in;
    a.modes = acts;
    a.trace = tr_take(d, PC_ACT);
    prof_mark(d, PC_ACT, 0);
    CK(cu_act(&a, &d->act, d->use_pdl, d->st));
    for (int i = 0, off = 0; i < nm; off += m[i].rows, i++) {
        prof_mark(d, cat, m[i].bytes);
        CK(cu_matmul(&m[i], &d->act, a.n, y + off, ldy, add, d->use_pdl, d->st));
    }
    return cudaSuccess;
}

/* Q|K|V of device layer l through the matrix-vector kernel with the kv
 * store epilogue (one token of a llama-style model: RoPE on adjacent
 * pairs, no k norm), no k_store kernel; every matrix of the group (one,
 * or e.g. [Q|K] and [V] of two formats) stores the K / V rows it holds. */
static bool qkv_store_ok(const qf_dev *d, const attn_params *ap, int l, bool one) {
    const qf_hparams *hp = &d->m->hp;
    const dlayer *D = &d->L[l];
    if (!one || !d->use_qkv_store || ap->fuse_store || D->k_norm || hp->rope_kind != QF_ROPE_NORM) return false;
    for (int i = 0; i < D->n_qkv; i++)
        if (!cu_mv_ok(&D->qkv[i]) || (D->n_qkv > 1 && D->qkv[i].rows % 2)) return false;
    return true;
}

/* The launch sequence of one step (captured into a graph or run directly).
 * One token (n == 1) takes the fused kernels where the formats allow: the
 * RMSNorms inside the Q/K/V and gate/up matrix-vector kernels, SwiGLU in
 * the gate/up epilogue, the kv store inside attention (any step with one
 * token per sequence), so a layer is 5 kernels instead of 9. */
static cudaError_t enqueue(qf_dev *d, const qf_step *s, int n_split, int hpc, int lcap) {
    const qf_hparams *hp = &d->m->hp;
    cu_mv_off = !d->use_mv;
    const int n = s->n_tok, E = hp->n_embd, pdl = d->use_pdl;
    const float eps = hp->rms_eps;
    const bool one = n == 1 && cu_mv_enabled();
    qf_step_layout L;
    qf_step_layout_get(s->n_tok, s->n_out, E, s->n_tab, &L);
    const uint8_t *sd = (const uint8_t *)d->stage_d;
    d->tr_n = 0;
    d->tr_layer = -1;
    if (d->tr_d) CK(cudaMemsetAsync(d->tr_d, 0, (size_t)TR_MAX * 8 * sizeof(unsigned long long), d->st));
    const int *tok = (const int *)(sd + L.off_tok), *out = (const int *)(sd + L.off_out);
    const int *tab = (const int *)(sd + L.off_tab);
    prof_mark(d, PC_ROPE, 0);
    CK(cu_rope_table(tok, n, d->freq, hp->n_rot, d->cs, pdl, d->st));
    prof_mark(d, PC_EMBED, 0);
    CK(cudaMemcpyAsync(d->x, sd + L.off_x, (size_t)n * E * sizeof(float), cudaMemcpyDeviceToDevice, d->st));
    attn_params ap;
    memset(&ap, 0, sizeof ap);
    ap.qkv = d->qkv;
    ap.qkv_stride = d->qkv_stride;
    ap.tok = tok;
    ap.tables = tab;
    ap.kv = d->kv;
    ap.kv_f32 = d->kv_f32;
    const int nl = hp->n_layer - d->cfg.layer0; /* the device's layers, numbered from 0 */
    ap.n_layer = nl;
    ap.bs = d->cfg.kv.block_size;
    ap.kv_dim = d->cfg.kv.kv_dim;
    ap.kv_dim_v = d->cfg.kv.kv_dim_v;
    ap.hd = hp->head_dim;
    ap.hdv = hp->head_dim_v;
    ap.n_head = hp->n_head;
    ap.n_head_kv = hp->n_head_kv;
    ap.scale = 1.0f / sqrtf((float)hp->head_dim);
    ap.cs = d->cs;
    ap.n_rot = hp->n_rot;
    ap.neox = hp->rope_kind == QF_ROPE_NEOX;
    ap.eps = eps;
    ap.n_tok = n;
    ap.hpc = hpc;
    ap.n_split = n_split;
    /* short attention where k_store would run (no QKV epilogue store): it stores K/V itself */
    ap.fuse_store = (d->use_att_fuse || (lcap && d->short_fuse && !one)) && s->one_per_seq;
    ap.early_trigger = lcap ? d->short_early : d->att_early;
    ap.prefetch = d->att_pf;
    ap.lcap = lcap;
    ap.out = d->att;
    ap.part = d->part;
    ap.cnt = d->att_combine ? NULL : d->att_cnt;
    ap.a_kmax = d->act.kmax;
    ap.a_tok_pad = d->act.tok_pad;
    for (int l = 0; l < nl; l++) {
        const dlayer *D = &d->L[l];
        d->tr_layer = l;
        /* Q/K/V; one token of a llama-style model: the matrix-vector kernel
         * also stores K (rotated) and V in the cache, no k_store */
        const bool qkv_store = qkv_store_ok(d, &ap, l, one);
        mv_kv kvs;
        memset(&kvs, 0, sizeof kvs);
        if (qkv_store) {
            kvs.kv = d->kv;
            kvs.kv_f32 = d->kv_f32;
            kvs.q_rows = hp->n_head * hp->head_dim;
            kvs.kv_dim = d->cfg.kv.kv_dim;
            kvs.kv_dim_v = d->cfg.kv.kv_dim_v;
            kvs.hd = hp->head_dim;
            kvs.hdv = hp->head_dim_v;
            kvs.n_rot = hp->n_rot;
            kvs.bs = d->cfg.kv.block_size;
            kvs.layer = l;
            kvs.n_layer = nl;
            kvs.tok = tok;
            kvs.tables = tab;
            kvs.cs = d->cs;
        }
        if (qkv_store) {
            act_args s_in = {d->x, NULL, E, NULL, D->attn_norm, eps, E, D->act_qkv, n, NULL};
            s_in.trace = tr_take(d, PC_ACT);
            prof_mark(d, PC_ACT, 0);
            CK(cu_act(&s_in, &d->act, pdl, d->st));
            /* each matrix's rows start at off of Q|K|V: its key heads begin
             * q_rows - off rows in (negative: it holds none or only values) */
            const int q_rows = kvs.q_rows;
            for (int i = 0, off = 0; i < D->n_qkv; off += D->qkv[i].rows, i++) {
                mv_in in;
                memset(&in, 0, sizeof in);
                in.src = fmt_act(D->qkv[i].fmt) == ACT_Q8_0 ? &d->act.a8_0 : &d->act.a8_k;
                in.src_tok_pad = d->act.tok_pad;
                kvs.q_rows = q_rows - off;
                in.kv = &kvs;
                in.trace = tr_take(d, PC_QKV);
                prof_mark(d, PC_QKV, D->qkv[i].bytes);
                CK(cu_matvec(&D->qkv[i], &in, d->qkv + off, 0, pdl, d->st));
            }
        } else {
            act_args s_in = {d->x, NULL, E, NULL, D->attn_norm, eps, E, 0, n, NULL};
            CK(mm_group(d, D->qkv, D->n_qkv, D->act_qkv, &s_in, d->qkv, d->qkv_stride, 0, PC_QKV));
        }
        /* attention (and the kv store) */
        ap.layer = l;
        ap.q_norm = D->q_norm;
        ap.k_norm = D->k_norm;
        if (!ap.fuse_store && !qkv_store) {
            prof_mark(d, PC_KSTORE, 0);
            CK(cu_k_store(&ap, pdl, d->st));
        }
        /* Q8_0-style Wo input: attention encodes its own output */
        bool att_enc = d->use_att_enc && D->act_wo == ACT_Q8_0 && hp->head_dim_v % 32 == 0;
        ap.aq8 = att_enc ? d->act.a8_0.q : NULL;
        ap.ads8 = att_enc ? d->act.a8_0.ds : NULL;
        ap.trace = tr_take(d, PC_ATTN);
        prof_mark(d, PC_ATTN, 0);
        CK(lcap ? cu_attention_short(&ap, pdl, d->st) : cu_attention(&ap, pdl, d->st));
        /* feed-forward: gate|up, SwiGLU, down */
        const bool gu_mv = one && D->n_gu == 1 && cu_mv_ok(&D->gu[0]);
        const bool sw = gu_mv && d->use_swiglu && D->act_down == ACT_Q8_0 && hp->n_ff % 32 == 0 &&
                        cu_mv_ok(&D->down);
        if (att_enc && one && cu_mv_ok(&D->wo)) {
            mv_in in;
            memset(&in, 0, sizeof in);
            in.src = &d->act.a8_0;
            in.src_tok_pad = d->act.tok_pad;
            if (sw)
                in.pf = &D->gu[0], in.pf_n_ff = hp->n_ff, in.pf_tiles = d->mv_pf;
            in.trace = tr_take(d, PC_WO);
            prof_mark(d, PC_WO, D->wo.bytes);
            CK(cu_matvec(&D->wo, &in, d->x, 1, pdl, d->st));
        } else if (att_enc) {
            prof_mark(d, PC_WO, D->wo.bytes);
            CK(cu_matmul(&D->wo, &d->act, n, d->x, E, 1, pdl, d->st));
        } else {
            act_args s_att = {d->att, NULL, d->att_stride, NULL, NULL, eps, d->att_stride, 0, n, NULL};
            CK(mm_group(d, &D->wo, 1, D->act_wo, &s_att, d->x, E, 1, PC_WO));
        }
        if (sw) {
            act_args s_ffn = {d->x, NULL, E, NULL, D->ffn_norm, eps, E, ACT_Q8_0, n, NULL};
            s_ffn.trace = tr_take(d, PC_ACT);
            prof_mark(d, PC_ACT, 0);
            CK(cu_act(&s_ffn, &d->act, pdl, d->st));
            mv_in in;
            memset(&in, 0, sizeof in);
            in.src = &d->act.a8_0;
            in.src_tok_pad = d->act.tok_pad;
            in.h = &d->h8;
            in.h_tok_pad = 1;
            in.n_ff = hp->n_ff;
                in.trace = tr_take(d, PC_GU);
            prof_mark(d, PC_GU, D->gu[0].bytes);
            CK(cu_matvec(&D->gu[0], &in, d->gu, 0, pdl, d->st));
        } else {
            act_args s_ffn = {d->x, NULL, E, NULL, D->ffn_norm, eps, E, 0, n, NULL};
            CK(mm_group(d, D->gu, D->n_gu, D->act_gu, &s_ffn, d->gu, d->gu_stride, 0, PC_GU));
        }
        if (sw) {
            mv_in in;
            memset(&in, 0, sizeof in);
            in.src = &d->h8;
            in.src_tok_pad = 1;
            in.trace = tr_take(d, PC_DOWN);
            prof_mark(d, PC_DOWN, D->down.bytes);
            CK(cu_matvec(&D->down, &in, d->x, 1, pdl, d->st));
        } else {
            act_args s_h = {d->gu, d->gu + hp->n_ff, d->gu_stride, NULL, NULL, eps, hp->n_ff, 0, n, NULL};
            CK(mm_group(d, &D->down, 1, D->act_down, &s_h, d->x, E, 1, PC_DOWN));
        }
    }
    d->tr_layer = -1;
    if (s->n_out > 0) {
        act_args s_out = {d->x, NULL, E, out, d->out_norm, eps, E, 0, s->n_out, NULL};
        CK(mm_group(d, &d->out, 1, d->act_out, &s_out, d->logits, hp->n_vocab, 0, PC_HEAD));
    }
    prof_mark(d, -1, 0);
    return cudaGetLastError();
}

/* Query heads per attention block: the whole kv group (its keys and values
 * read once for all its heads), or one when a block per query head still
 * fits one wave on the device (a token or a few: latency bound, more blocks
 * win). In between, one head per block reads every key and value G times:
 * gen's steps of ~40 tokens at a kv group of 7 (Qwen2.5-0.5B's shape) took
 * 2.2x the attention time with one head per block (docs/benchmarks.md). */
static int pick_hpc(const qf_dev *d, const qf_step *s) {
    const qf_hparams *hp = &d->m->hp;
    int G = hp->n_head / hp->n_head_kv, h = 8;
    while (h > 1 && (G % h || !cu_hpc_ok(h))) h--; /* the largest one built that divides the group */
    if ((long)s->n_tok * hp->n_head <= d->n_sm) h = 1;
    if (d->hpc_env > 0 && G % d->hpc_env == 0 && cu_hpc_ok(d->hpc_env)) h = d->hpc_env; /* measurements */
    return h;
}

/* Splits of the attended positions: enough blocks to fill the device, each
 * split at least two chunks of 32 positions; none up to split_min attended
 * positions (a combine kernel costs more than a few chunks). */
static int pick_split(const qf_dev *d, const qf_step *s, int hpc) {
    const qf_hparams *hp = &d->m->hp;
    long ctas = (long)s->n_tok * (hp->n_head / hpc);
    if (ctas >= d->n_sm || s->max_attend <= (d->split_min > 64 ? d->split_min : 64)) return 1;
    long by_len = (s->max_attend + d->split_len - 1) / d->split_len, by_sm = 4L * d->n_sm / ctas;
    long ns = by_len < by_sm ? by_len : by_sm;
    int p2 = 1;
    while (p2 * 2 <= ns && p2 < 64) p2 *= 2;
    while (p2 > 1 && (size_t)s->n_tok * hp->n_head * p2 * (size_t)(hp->head_dim_v + 2) > d->part_floats) p2 /= 2;
    return p2;
}

/* Positions cu_attention_short holds for this step (a multiple of 64, so
 * that a graph serves 64 steps of a growing context), or 0: the split
 * kernel. Only when every sequence has one token (the others' positions
 * are then all from earlier steps) and its shared memory fits (hpc query
 * heads per block, pick_hpc: one for few tokens, the kv group for many). */
static int pick_short(const qf_dev *d, const qf_step *s, int hpc) {
    const qf_hparams *hp = &d->m->hp;
    if (!d->att_short || !s->one_per_seq || (d->att_short == 2 && (long)s->n_tok * hp->n_head_kv >= d->n_sm))
        return 0;
    attn_params p;
    memset(&p, 0, sizeof p);
    p.hd = hp->head_dim, p.hdv = hp->head_dim_v, p.n_rot = hp->n_rot, p.kv_f32 = d->kv_f32, p.hpc = hpc;
    int lcap = (int)round_up((size_t)(s->max_attend > 0 ? s->max_attend : 1), 64);
    return cu_attention_short_smem(&p, lcap) ? lcap : 0;
}

static qf_status cuda_step(qf_dev *d, const qf_step *s, qf_err *err) {
    const qf_hparams *hp = &d->m->hp;
    if (s->bytes > d->stage_dcap) {
        CU(cudaStreamSynchronize(d->st), "step buffer");
        graphs_clear(d);
        cudaFree(d->stage_d);
        d->stage_d = NULL;
        size_t cap = round_up(s->bytes * 2, 65536);
        qf_status st = dalloc(&d->stage_d, cap, NULL, "the step buffer", err);
        if (st != QF_OK) {
            d->stage_dcap = 0;
            return st;
        }
        d->stage_dcap = cap;
    }
    CU(cudaMemcpyAsync(d->stage_d, s->buf, s->bytes, cudaMemcpyHostToDevice, d->st), "step upload");
    int hpc = pick_hpc(d, s), n_split = pick_split(d, s, hpc), lcap = pick_short(d, s, hpc);
    if (lcap) n_split = 1;
    int key[6] = {s->n_tok, s->n_out, n_split, hpc, s->one_per_seq ? 1 : 0, lcap};
    bool done = false;
    if (d->use_graphs) {
        graph_ent *hit = NULL, *victim = &d->graphs[0];
        for (int i = 0; i < N_GRAPHS; i++) {
            graph_ent *g = &d->graphs[i];
            if (g->exec && !memcmp(g->key, key, sizeof key)) hit = g;
            if (!g->exec || g->last < victim->last) victim = g;
        }
        /* tables are read through the step buffer: a new n_tab needs no new graph */
        if (!hit) {
            cudaGraph_t graph = NULL;
            CU(cudaStreamBeginCapture(d->st, cudaStreamCaptureModeThreadLocal), "graph capture");
            cudaError_t e = enqueue(d, s, n_split, hpc, lcap);
            cudaError_t e2 = cudaStreamEndCapture(d->st, &graph);
            if (e != cudaSuccess || e2 != cudaSuccess) {
                if (graph) cudaGraphDestroy(graph);
                return cu_fail(err, e != cudaSuccess ? e : e2, "graph capture");
            }
            if (victim->exec) cudaGraphExecDestroy(victim->exec);
            victim->exec = NULL;
            e = cudaGraphInstantiate(&victim->exec, graph, 0);
            cudaGraphDestroy(graph);
            if (e != cudaSuccess) {
                victim->exec = NULL;
                return cu_fail(err, e, "graph instantiate");
            }
            memcpy(victim->key, key, sizeof key);
            hit = victim;
        }
        hit->last = ++d->tick;
        CU(cudaGraphLaunch(hit->exec, d->st), "graph launch");
        done = true;
    }
    if (!done) {
        /* profiling: hold the stream until every launch is queued, so the
         * events time the kernels, not the host */
        if (d->prof) CU(cudaLaunchHostFunc(d->st, prof_hold, NULL), "profile");
        CU(enqueue(d, s, n_split, hpc, lcap), "step launch");
    }
    if (s->n_out > 0)
        CU(cudaMemcpyAsync(d->logits_h, d->logits, (size_t)s->n_out * hp->n_vocab * sizeof(float),
                           cudaMemcpyDeviceToHost, d->st),
           "logits download");
    CU(cudaStreamSynchronize(d->st), "step");
    prof_collect(d);
    tr_collect(d);
    return QF_OK;
}

static const float *cuda_logits(const qf_dev *d) { return d->logits_h; }

static void cuda_mem(const qf_dev *d, size_t *w, size_t *kv, size_t *scratch) {
    *w = d->w_bytes;
    *kv = d->kv_bytes;
    *scratch = d->scratch_bytes + d->stage_dcap;
}

static size_t cuda_step_weight_bytes(const qf_dev *d) { return d->step_bytes; }

extern "C" const qf_dev_ops qf_dev_cuda_ops = {
    "cuda",   cuda_probe,    cuda_open,        cuda_close,        cuda_staging,      cuda_copy_blocks,
    cuda_step, cuda_logits,  cuda_mem,         cuda_step_weight_bytes, cuda_mem_info, cuda_weight_bytes,
};

/* ---- test and benchmark entry points (cuda.h) ---- */

extern "C" double qf_cuda_copy_bandwidth(size_t bytes, int reps) {
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double best = 0.0;
    float *ms = (float *)qf_malloc((size_t)(reps > 0 ? reps : 1) * sizeof(float));
    if (!ms || cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
        cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess)
        goto out;
    cudaMemset(a, 1, bytes);
    cudaMemset(b, 0, bytes);
    for (int i = 0; i < 3; i++) cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    for (int i = 0; i < reps; i++) {
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(i & 1 ? a : b, i & 1 ? b : a, bytes, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms[i], e0, e1);
    }
    /* median */
    for (int i = 1; i < reps; i++)
        for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
            float t = ms[j];
            ms[j] = ms[j - 1];
            ms[j - 1] = t;
        }
    if (reps > 0 && ms[reps / 2] > 0) best = 2.0 * (double)bytes / (ms[reps / 2] * 1e-3);
out:
    qf_free(ms);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    cudaGetLastError();
    return best;
}

static __global__ void read_kernel(const uint4 *p, size_t n, uint4 *sink) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    uint4 acc = make_uint4(0, 0, 0, 0);
    for (; i + 3 * stride < n; i += 4 * stride) {
        uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride),
              e = __ldcs(p + i + 3 * stride);
        acc.x ^= a.x ^ b.x ^ c.x ^ e.x, acc.y ^= a.y ^ b.y ^ c.y ^ e.y;
        acc.z ^= a.z ^ b.z ^ c.z ^ e.z, acc.w ^= a.w ^ b.w ^ c.w ^ e.w;
    }
    for (; i < n; i += stride) {
        uint4 a = __ldcs(p + i);
        acc.x ^= a.x, acc.y ^= a.y, acc.z ^= a.z, acc.w ^= a.w;
    }
    if ((acc.x & acc.y & acc.z & acc.w) == 0xffffffffu) *sink = acc; /* keeps the loads */
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

extern "C" double qf_cuda_read_bandwidth(size_t bytes, int reps) {
    void *a = NULL, *sink = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double bw = 0.0;
    int n_sm = 0;
    float *ms = (float *)qf_malloc((size_t)(reps > 0 ? reps : 1) * sizeof(float));
    bytes &= ~(size_t)15;
    if (!ms || reps < 1 || cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&sink, 16) != cudaSuccess ||
        cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess ||
        cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess)
        goto out;
    cudaMemset(a, 1, bytes);
    for (int i = -2; i < reps; i++) {
        cudaEventRecord(e0, 0);
        read_kernel<<<n_sm * 8, 256>>>((const uint4 *)a, bytes / 16, (uint4 *)sink);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        if (i >= 0) cudaEventElapsedTime(&ms[i], e0, e1);
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_f);
    if (ms[reps / 2] > 0) bw = (double)bytes / (ms[reps / 2] * 1e-3);
out:
    qf_free(ms);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(sink);
    cudaGetLastError();
    return bw;
}

extern "C" double qf_cuda_bench_matvec(qf_type type, int32_t rows, int32_t cols, int32_t n_ff, int reps) {
    int fmt = native_fmt(type);
    if ((fmt != FMT_Q4_0 && fmt != FMT_Q8_0) || rows <= 0 || cols <= 0 || reps < 1) return 0.0;
    qf_dev d;
    memset(&d, 0, sizeof d);
    dmat m;
    memset(&m, 0, sizeof m);
    act_set a8 = {NULL, NULL}, h8 = {NULL, NULL};
    float *y = NULL, *ms = (float *)qf_malloc((size_t)reps * sizeof(float));
    cudaEvent_t e0 = NULL, e1 = NULL;
    double us = 0.0;
    qf_err err;
    memset(&err, 0, sizeof err);
    size_t kmax = round_up((size_t)(cols > n_ff ? cols : n_ff), 256);
    cu_mv_off = 0;
    if (!ms || cu_mm_init() != cudaSuccess || cudaStreamCreate(&d.st) != cudaSuccess) goto out;
    if (mat_alloc(&d, &m, fmt, rows, cols, "bench", &err) != QF_OK ||
        dalloc((void **)&a8.q, kmax, NULL, "bench", &err) != QF_OK ||
        dalloc((void **)&a8.ds, kmax / 32 * sizeof(float2), NULL, "bench", &err) != QF_OK ||
        dalloc((void **)&h8.q, kmax, NULL, "bench", &err) != QF_OK ||
        dalloc((void **)&h8.ds, kmax / 32 * sizeof(float2), NULL, "bench", &err) != QF_OK ||
        dalloc((void **)&y, (size_t)rows * sizeof(float), NULL, "bench", &err) != QF_OK ||
        cudaMemset(m.q, 0x5a, m.qbytes) != cudaSuccess || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess || !cu_mv_ok(&m))
        goto out;
    {
        mv_in in;
        memset(&in, 0, sizeof in);
        in.src = &a8;
        in.src_tok_pad = 1;
        if (n_ff > 0) in.h = &h8, in.h_tok_pad = 1, in.n_ff = n_ff;
        for (int i = -3; i < reps; i++) {
            cudaEventRecord(e0, d.st);
            if (cu_matvec(&m, &in, y, 0, 0, d.st) != cudaSuccess) goto out;
            cudaEventRecord(e1, d.st);
            cudaEventSynchronize(e1);
            if (i >= 0) cudaEventElapsedTime(&ms[i], e0, e1);
        }
        qsort(ms, (size_t)reps, sizeof *ms, cmp_f);
        us = ms[reps / 2] * 1e3;
    }
out:
    mat_free(&m);
    void *bufs[] = {a8.q, a8.ds, h8.q, h8.ds, y};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) cudaFree(bufs[i]);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (d.st) cudaStreamDestroy(d.st);
    qf_free(ms);
    cudaGetLastError();
    return us;
}

extern "C" qf_status qf_cuda_test_matmul(qf_type type, int32_t rows, int32_t cols, int32_t n, const void *w,
                                         const float *x, float *y, bool check_staging, qf_err *err) {
    int fmt = native_fmt(type);
    if (fmt < 0) return QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "cuda: no kernel for type %d", (int)type);
    if (rows <= 0 || cols <= 0 || n <= 0) return QF_ERR_SET(err, QF_ERR_INVALID, "cuda: bad matmul shape");
    qf_dev d;
    memset(&d, 0, sizeof d);
    dmat m;
    memset(&m, 0, sizeof m);
    qf_weight qw = {w, type, cols, rows, qf_type_row_size(type, cols)};
    void *raw = NULL;
    float *yd = NULL, *xd = NULL;
    size_t kmax = round_up((size_t)cols, 256), tp = round_up((size_t)n, 32);
    qf_status st = QF_OK;
    cudaError_t e = cu_mm_init();
    if (e == cudaSuccess) e = cudaStreamCreate(&d.st);
    if (e != cudaSuccess) return cu_fail(err, e, "stream");
    d.act.kmax = (int)kmax;
    d.act.tok_pad = (int)tp;
    if ((st = mat_alloc(&d, &m, fmt, rows, cols, "test", err)) != QF_OK ||
        (st = dalloc(&raw, (size_t)rows * qw.row_bytes, NULL, "test", err)) != QF_OK ||
        (st = mat_fill(&d, &m, &qw, 0, raw, "test", err)) != QF_OK ||
        (st = dalloc((void **)&d.act.a8_0.q, tp * kmax, NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&d.act.a8_0.ds, kmax / 32 * tp * sizeof(float2), NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&d.act.a8_k.q, tp * kmax, NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&d.act.a8_k.ds, kmax / 32 * tp * sizeof(float2), NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&d.act.f, tp * kmax * 4, NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&xd, (size_t)n * cols * 4, NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&yd, (size_t)n * rows * 4, NULL, "test", err)) != QF_OK)
        goto out;
    e = cudaMemcpy(xd, x, (size_t)n * cols * 4, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        act_args a = {xd, NULL, cols, NULL, NULL, 0.0f, cols, fmt_act(fmt), n, NULL};
        e = cu_act(&a, &d.act, 0, d.st);
    }
    cu_mv_off = 0;
    if (e == cudaSuccess) e = cu_matmul(&m, &d.act, n, yd, rows, 0, 0, d.st);
    if (e == cudaSuccess && check_staging && n <= 8) {
        /* the same product by mmq without staging the activations in shared
         * memory (n = 1: against the matrix-vector kernel) */
        float *y2 = (float *)qf_malloc((size_t)n * rows * sizeof(float));
        e = y2 ? cudaStreamSynchronize(d.st) : cudaErrorMemoryAllocation;
        if (e == cudaSuccess) e = cudaMemcpy(y, yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost);
        cu_mm_unstaged = 1;
        if (e == cudaSuccess) e = cu_matmul(&m, &d.act, n, yd, rows, 0, 0, d.st);
        cu_mm_unstaged = 0;
        if (e == cudaSuccess) e = cudaMemcpy(y2, yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost);
        for (size_t i = 0; e == cudaSuccess && i < (size_t)n * rows; i++)
            if (y2[i] != y[i]) {
                st = QF_ERR_SET(err, QF_ERR_INTERNAL,
                                "cuda: %s and unstaged mmq differ at %zu: %g vs %g", n == 1 ? "cu_matvec" : "staged mmq",
                                i, (double)y[i], (double)y2[i]);
                break;
            }
        qf_free(y2);
        if (e != cudaSuccess) st = cu_fail(err, e, "test matmul");
        goto out;
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(d.st);
    if (e == cudaSuccess) e = cudaMemcpy(y, yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) st = cu_fail(err, e, "test matmul");
out:
    mat_free(&m);
    void *bufs[] = {raw, xd, yd, d.act.a8_0.q, d.act.a8_0.ds, d.act.a8_k.q, d.act.a8_k.ds, d.act.f};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) cudaFree(bufs[i]);
    cudaStreamDestroy(d.st);
    return st;
}

extern "C" qf_status qf_cuda_test_matvec_fused(qf_type type, int32_t rows, int32_t cols, const void *w,
                                               const float *x, const float *norm, float eps, int32_t n_ff, float *y,
                                               qf_err *err) {
    int fmt = native_fmt(type);
    if (fmt != FMT_Q4_0 && fmt != FMT_Q8_0)
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "cuda: no matrix-vector kernel for type %d", (int)type);
    if (rows <= 0 || cols <= 0 || cols % 32 || (n_ff && (n_ff % 32 || rows != 2 * n_ff)))
        return QF_ERR_SET(err, QF_ERR_INVALID, "cuda: bad fused matvec shape %dx%d (n_ff %d)", rows, cols, n_ff);
    qf_dev d;
    memset(&d, 0, sizeof d);
    dmat m;
    memset(&m, 0, sizeof m);
    qf_weight qw = {w, type, cols, rows, qf_type_row_size(type, cols)};
    void *raw = NULL;
    float *xd = NULL, *nd = NULL, *yr = NULL, *yf = NULL, *yh = NULL;
    act_set h8 = {NULL, NULL};
    size_t kmax = round_up((size_t)(cols > n_ff ? cols : n_ff), 256), tp = 32, nh = n_ff > 0 ? (size_t)n_ff : 0;
    uint8_t *hq_ref = NULL, *hq = NULL;
    float2 *hd_ref = NULL, *hd = NULL;
    qf_status st = QF_OK;
    cu_mv_off = 0;
    cudaError_t e = cu_mm_init();
    if (e == cudaSuccess) e = cudaStreamCreate(&d.st);
    if (e != cudaSuccess) return cu_fail(err, e, "stream");
    d.act.kmax = (int)kmax;
    d.act.tok_pad = (int)tp;
    if ((st = mat_alloc(&d, &m, fmt, rows, cols, "test", err)) != QF_OK ||
        (st = dalloc(&raw, (size_t)rows * qw.row_bytes, NULL, "test", err)) != QF_OK ||
        (st = mat_fill(&d, &m, &qw, 0, raw, "test", err)) != QF_OK ||
        (st = dalloc((void **)&d.act.a8_0.q, tp * kmax, NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&d.act.a8_0.ds, kmax / 32 * tp * sizeof(float2), NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&h8.q, kmax, NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&h8.ds, kmax / 32 * sizeof(float2), NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&xd, (size_t)cols * 4, NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&nd, (size_t)cols * 4, NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&yr, (size_t)rows * 4, NULL, "test", err)) != QF_OK ||
        (st = dalloc((void **)&yf, (size_t)rows * 4, NULL, "test", err)) != QF_OK)
        goto out;
    yh = (float *)qf_malloc((size_t)rows * 4);
    hq_ref = (uint8_t *)qf_malloc(kmax), hq = (uint8_t *)qf_malloc(kmax);
    hd_ref = (float2 *)qf_malloc((nh / 32 + 1) * sizeof(float2)), hd = (float2 *)qf_malloc((nh / 32 + 1) * sizeof(float2));
    if (!yh || !hq_ref || !hq || !hd_ref || !hd) {
        st = QF_ERR_SET(err, QF_ERR_NOMEM, "cuda: test: out of host memory");
        goto out;
    }
    e = cudaMemcpy(xd, x, (size_t)cols * 4, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(nd, norm, (size_t)cols * 4, cudaMemcpyHostToDevice);
    /* reference: act kernel (norm + encode), mmq; act kernel for SwiGLU */
    if (e == cudaSuccess) {
        act_args a = {xd, NULL, cols, NULL, nd, eps, cols, ACT_Q8_0, 1, NULL};
        e = cu_act(&a, &d.act, 0, d.st);
    }
    cu_mm_unstaged = 1;
    if (e == cudaSuccess) e = cu_matmul(&m, &d.act, 1, yr, rows, 0, 0, d.st);
    cu_mm_unstaged = 0;
    if (e == cudaSuccess && nh) {
        act_args a = {yr, yr + nh, rows, NULL, NULL, eps, (int)nh, ACT_Q8_0, 1, NULL};
        e = cu_act(&a, &d.act, 0, d.st);
        if (e == cudaSuccess) e = cudaMemcpy(hq_ref, d.act.a8_0.q, kmax, cudaMemcpyDeviceToHost);
        if (e == cudaSuccess)
            e = cudaMemcpy2D(hd_ref, sizeof(float2), d.act.a8_0.ds, tp * sizeof(float2), sizeof(float2), nh / 32,
                             cudaMemcpyDeviceToHost);
    }
    if (e == cudaSuccess) e = cudaMemcpy(y, yr, (size_t)rows * 4, cudaMemcpyDeviceToHost);
    /* the matrix-vector kernel with its epilogue, twice (a rerun must not
     * depend on state the first left), on the act kernel's encoded row */
    for (int rep = 0; rep < 2 && e == cudaSuccess && st == QF_OK; rep++) {
        act_args an = {xd, NULL, cols, NULL, nd, eps, cols, ACT_Q8_0, 1, NULL};
        e = cu_act(&an, &d.act, 0, d.st);
        mv_in in;
        memset(&in, 0, sizeof in);
        in.src = &d.act.a8_0;
        in.src_tok_pad = (int)tp;
        if (nh) in.h = &h8, in.h_tok_pad = 1, in.n_ff = n_ff;
        if (e == cudaSuccess) e = cudaMemset(h8.q, 0x55, kmax);
        if (e == cudaSuccess) e = cudaMemset(yf, 0xff, (size_t)rows * 4);
        if (e == cudaSuccess) e = cu_matvec(&m, &in, yf, 0, 0, d.st);
        if (e == cudaSuccess) e = cudaStreamSynchronize(d.st);
        if (e == cudaSuccess) e = cudaMemcpy(yh, yf, (size_t)rows * 4, cudaMemcpyDeviceToHost);
        for (int32_t i = 0; e == cudaSuccess && i < rows; i++)
            if (memcmp(&yh[i], &y[i], 4) != 0) {
                st = QF_ERR_SET(err, QF_ERR_INTERNAL, "cuda: fused matvec (run %d) row %d: %.9g, unfused %.9g", rep, i,
                                (double)yh[i], (double)y[i]);
                break;
            }
        if (e == cudaSuccess && st == QF_OK && nh) {
            e = cudaMemcpy(hq, h8.q, kmax, cudaMemcpyDeviceToHost);
            if (e == cudaSuccess) e = cudaMemcpy(hd, h8.ds, nh / 32 * sizeof(float2), cudaMemcpyDeviceToHost);
            for (size_t i = 0; e == cudaSuccess && i < nh; i++) {
                /* value i's byte in fragment order (frag_off of cuda_common.cuh) */
                size_t e64 = i & 63, b = e64 & 31, wd = b >> 2;
                size_t o = (i >> 6) * 64 + (wd & 3) * 16 + ((e64 >> 5) * 2 + (wd >> 2)) * 4 + (b & 3);
                if (hq[o] != hq_ref[o] || (i % 32 == 0 && memcmp(&hd[i / 32], &hd_ref[i / 32], sizeof(float2)) != 0)) {
                    st = QF_ERR_SET(err, QF_ERR_INTERNAL,
                                    "cuda: SwiGLU epilogue (run %d) value %zu: %d vs %d, group scale %g vs %g", rep, i,
                                    (int)(int8_t)hq[o], (int)(int8_t)hq_ref[o], (double)hd[i / 32].x,
                                    (double)hd_ref[i / 32].x);
                    break;
                }
            }
        }
    }
    if (e != cudaSuccess) st = cu_fail(err, e, "test fused matvec");
out:
    mat_free(&m);
    void *bufs[] = {raw, xd, nd, yr, yf, d.act.a8_0.q, d.act.a8_0.ds, h8.q, h8.ds};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) cudaFree(bufs[i]);
    qf_free(yh), qf_free(hq_ref), qf_free(hq), qf_free(hd_ref), qf_free(hd);
    cudaStreamDestroy(d.st);
    return st;
}

extern "C" int qf_cuda_profile_get(qf_cuda_prof *out, int cap) {
    int n = 0;
    for (int c = 0; c < PC_COUNT && n < cap; c++) {
        if (!g_pc_calls[c]) continue;
        out[n].name = k_pc_name[c];
        out[n].ms = g_pc_ms[c];
        out[n].calls = g_pc_calls[c];
        out[n].bytes = g_pc_bytes[c];
        n++;
    }
    return n;
}

extern "C" long qf_cuda_profile_steps(void) { return g_pc_steps; }

extern "C" void qf_cuda_profile_reset(void) {
    memset(g_pc_ms, 0, sizeof g_pc_ms);
    memset(g_pc_bytes, 0, sizeof g_pc_bytes);
    memset(g_pc_calls, 0, sizeof g_pc_calls);
    g_pc_steps = 0;
}

extern "C" int qf_cuda_trace_get(qf_cuda_trace_ev *out, int cap) {
    int n = 0;
    for (int i = 0; i < g_tr_n && n < cap && g_tr_steps > 0; i++, n++) {
        out[n].name = g_tr_cat[i] >= 0 && g_tr_cat[i] < PC_COUNT ? k_pc_name[g_tr_cat[i]] : "?";
        out[n].layer = g_tr_lay[i];
        for (int e = 0; e < 4; e++)
            for (int k = 0; k < 2; k++)
                out[n].us[2 * e + k] = g_tr_cnt[i][e] ? g_tr_us[i][2 * e + k] / (double)g_tr_cnt[i][e] : -1.0;
    }
    return n;
}

extern "C" long qf_cuda_trace_steps(void) { return g_tr_steps; }

extern "C" void qf_cuda_trace_reset(void) {
    memset(g_tr_us, 0, sizeof g_tr_us);
    memset(g_tr_cnt, 0, sizeof g_tr_cnt);
    g_tr_steps = 0;
    g_tr_n = 0;
}
