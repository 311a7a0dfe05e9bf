/* forward.c - the transformer forward pass over a batch of tokens.
 *
 * For each layer: RMSNorm -> Q,K,V projections (+bias, +per-head q/k norm)
 * -> RoPE -> K,V written into the paged cache -> causal attention of every
 * token over its own sequence's cached positions -> output projection +
 * residual -> RMSNorm -> SwiGLU FFN + residual. Finally the tokens that
 * asked for logits go through the output norm and projection.
 *
 * Parallelism: each step is a fork/join region on the pool. Matmuls split
 * the weight rows between threads, so every weight byte is read once per
 * batch whatever the number of tokens; for a batch of several tokens a row
 * is decoded once into a per-thread float buffer and dotted with every
 * token. Attention splits (token, kv head) pairs. Invariant between regions:
 * x holds the residual stream (n, n_embd) of the batch.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "model/model.h"
#include "quant/kernels.h"

struct qf_fwd {
    const qf_model *m;
    qf_kv *kv;
    qf_pool *pool;
    int32_t n_batch_max, n_ctx_max, n_threads;
    int32_t max_cols;
    float *x, *xn;          /* (n_batch_max, n_embd) */
    float *q, *k, *v;       /* (n_batch_max, n_head*hd) (., kvh*hd) (., kvh*hdv) */
    float *att;             /* (n_batch_max, n_head*hdv) */
    float *g, *u;           /* (n_batch_max, n_ff) */
    float *rope_cs;         /* (n_batch_max, n_rot/2, 2) cos, sin */
    float *wbuf;            /* (n_threads, max_cols) decoded weight row */
    float *kvrow;           /* (n_threads, max(hd, hdv)) decoded cache row */
    float *logits;          /* (cap_logits, n_vocab) */
    int32_t cap_logits, n_logits;
    int32_t *out_idx;       /* (n_batch_max) batch index of each logits row */
    bool exact;             /* float activations (reference path) instead of the kernels */
    uint8_t *act;           /* (n_batch_max, act row) activations encoded for the kernels */
    size_t act_row;         /* bytes per encoded row in act */
    qf_type act_type;       /* encoding of the rows in act */
    float *attn_tmp;        /* (n_threads, attn_tmp_stride) block weights, running max/sum, encoded q */
    bool kv_hm;             /* cache blocks head-major (kv_head) */
    size_t hb_k, hb_v;      /* bytes of one head's K / V values of one slot */
    size_t attn_tmp_stride; /* floats */
};

/* ---- region helpers ---- */

typedef struct mm_task {
    const qf_weight *w;
    const float *x;  /* (n, w->cols) */
    float *y;        /* (n, w->rows) */
    const float *bias;
    int32_t n;
    float *wbuf;
    int32_t wbuf_stride;
} mm_task;

static void mm_region(void *p, int ith, int nth) {
    const mm_task *t = p;
    const qf_weight *w = t->w;
    const qf_type_traits *tt = qf_type_get(w->type);
    const qf_dot_f32_fn fdot = qf_type_get(QF_TYPE_F32)->dot_f32;
    long r0, r1;
    qf_split_range(w->rows, ith, nth, &r0, &r1);
    float *buf = t->wbuf + (size_t)ith * t->wbuf_stride;
    for (long r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        float b = t->bias ? t->bias[r] : 0.0f;
        /* the same arithmetic whatever n is, so that a sequence's logits do
         * not depend on what else is in the batch */
        const float *rf = (const float *)row;
        if (w->type != QF_TYPE_F32) {
            tt->to_float(row, buf, w->cols);
            rf = buf;
        }
        for (int32_t i = 0; i < t->n; i++)
            t->y[(size_t)i * w->rows + r] = fdot(w->cols, rf, t->x + (size_t)i * w->cols) + b;
    }
}

/* ---- fast path: activations encoded once, then the ISA kernels ---- */

typedef struct act_task {
    qf_type wtype;
    const float *x;
    uint8_t *act;
    size_t row;
    int64_t cols;
    int32_t n;
} act_task;

static void act_region(void *p, int ith, int nth) {
    const act_task *t = p;
    long lo, hi;
    qf_split_range(t->n, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) qf_act_quantize(t->wtype, t->x + (size_t)i * t->cols, t->act + (size_t)i * t->row, t->cols);
}

typedef struct gemm_task {
    const qf_weight *w;
    const uint8_t *act;
    float *y;
    const float *bias;
    int32_t n;
} gemm_task;

static void gemm_region(void *p, int ith, int nth) {
    const gemm_task *t = p;
    const qf_weight *w = t->w;
    /* split on 16-row boundaries so every thread gets whole kernel tiles */
    long tiles = (long)((w->rows + 15) / 16), lo, hi;
    qf_split_range(tiles, ith, nth, &lo, &hi);
    int64_t r0 = lo * 16, r1 = hi * 16 < w->rows ? hi * 16 : w->rows;
    if (r0 >= r1) return;
    qf_gemm(w->type, w->data, w->row_bytes, w->cols, r0, r1, t->act, t->n, t->y, w->rows);
    if (t->bias)
        for (int32_t i = 0; i < t->n; i++)
            for (int64_t r = r0; r < r1; r++) t->y[(size_t)i * w->rows + r] += t->bias[r];
}

/* The FFN's gate and up products and SwiGLU in one region: each thread
 * computes the same rows of both and combines them while they are in its
 * cache (g = silu(g) * u). */
typedef struct glu_task {
    const qf_weight *gate, *up;
    const uint8_t *act;
    float *g, *u;
    int32_t n;
} glu_task;

static void glu_region(void *p, int ith, int nth) {
    const glu_task *t = p;
    int64_t rows = t->gate->rows;
    long tiles = (long)((rows + 15) / 16), lo, hi;
    qf_split_range(tiles, ith, nth, &lo, &hi);
    int64_t r0 = lo * 16, r1 = hi * 16 < rows ? hi * 16 : rows;
    if (r0 >= r1) return;
    qf_gemm(t->gate->type, t->gate->data, t->gate->row_bytes, t->gate->cols, r0, r1, t->act, t->n, t->g, rows);
    qf_gemm(t->up->type, t->up->data, t->up->row_bytes, t->up->cols, r0, r1, t->act, t->n, t->u, rows);
    for (int32_t i = 0; i < t->n; i++) qf_swiglu(t->g + (size_t)i * rows + r0, t->u + (size_t)i * rows + r0, r1 - r0);
}

/* y (n, w->rows) = x (n, w->cols) W^T (+ bias). reuse: x and the weight's
 * activation type are those of the previous call (Q/K/V, gate/up share
 * their input), so the encoded activations are reused. */
static void matmul(qf_fwd *f, const qf_weight *w, const float *x, float *y, const float *bias, int32_t n,
                   bool reuse) {
    if (f->exact) {
        mm_task t = {w, x, y, bias, n, f->wbuf, f->max_cols};
        qf_pool_run(f->pool, mm_region, &t);
        return;
    }
    size_t row = qf_act_row_size(w->type, w->cols);
    if (!reuse || qf_act_type(w->type) != f->act_type || row != f->act_row) {
        act_task at = {w->type, x, f->act, row, w->cols, n};
        qf_pool_run(f->pool, act_region, &at);
        f->act_row = row;
        f->act_type = qf_act_type(w->type);
    }
    gemm_task gt = {w, f->act, y, bias, n};
    qf_pool_run(f->pool, gemm_region, &gt);
}

void qf_fwd_set_exact(qf_fwd *f, bool exact) { f->exact = exact; }

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

typedef struct norm_task {
    float *out;
    const float *x;
    const float *w;
    int32_t n_rows, dim;
    float eps;
    qf_type wtype;  /* with act != NULL: encode each normed row for this weight type */
    uint8_t *act;
    size_t act_row;
} norm_task;

/* RMSNorm of rows, and (fast path) the normed rows encoded for the next
 * matmul in the same region: one pass, one barrier fewer. */
static void norm_region(void *p, int ith, int nth) {
    const norm_task *t = p;
    long lo, hi;
    qf_split_range(t->n_rows, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        float *o = t->out + i * (long)t->dim;
        rmsnorm(o, t->x + i * (long)t->dim, t->w, t->dim, t->eps);
        if (t->act) qf_act_quantize(t->wtype, o, t->act + (size_t)i * t->act_row, t->dim);
    }
}

/* next: the weight the normed rows go to (NULL: none known); on the fast
 * path its activation encoding is made here and reused by matmul. */
static void norm_rows(qf_fwd *f, float *out, const float *x, const float *w, int32_t n_rows, int32_t dim,
                      const qf_weight *next) {
    norm_task t = {out, x, w, n_rows, dim, f->m->hp.rms_eps, QF_TYPE_F32, NULL, 0};
    f->act_row = 0; /* whatever was encoded before is stale now */
    if (next && !f->exact && next->cols == dim) {
        t.wtype = next->type;
        t.act = f->act;
        t.act_row = qf_act_row_size(next->type, dim);
        f->act_row = t.act_row;
        f->act_type = qf_act_type(next->type);
    }
    qf_pool_run(f->pool, norm_region, &t);
}

/* ---- attention block ---- */

typedef struct attn_task {
    qf_fwd *f;
    const qf_batch *b;
    int32_t layer;
    _Atomic long next; /* attn_region: next work item to take */
} attn_task;

/* Rotate pairs of one head: NORM pairs (2i, 2i+1), NEOX pairs (i, i+n_rot/2). */
static void rope_head(float *v, const float *cs, int32_t n_rot, qf_rope_kind kind) {
    int32_t half = n_rot / 2;
    for (int32_t i = 0; i < half; i++) {
        int32_t a = kind == QF_ROPE_NORM ? 2 * i : i;
        int32_t b = kind == QF_ROPE_NORM ? 2 * i + 1 : i + half;
        float c = cs[2 * i], s = cs[2 * i + 1];
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

/* The layout of a cache block (forward.c is the only reader and writer of
 * the values; kv.c only sizes and moves whole blocks). Head-major,
 * [kv head][slot][head values], when one head's values are whole blocks of
 * the storage type (f32 and f16 always, q8_0 when the head size is a
 * multiple of 32): an attention work item, one kv head, then reads one
 * contiguous piece of each block, which the hardware prefetchers follow.
 * Otherwise row-major, [slot][every kv head], a quantized block possibly
 * spanning two heads. kv_head returns where head kvh's slot 0 starts, the
 * distance between slots and the value offset inside a slot (for
 * cache_row). */
static const uint8_t *kv_head(const qf_fwd *f, const uint8_t *blk, bool is_v, int32_t kvh, size_t *stride,
                              int32_t *off) {
    const qf_hparams *hp = &f->m->hp;
    if (f->kv_hm) {
        size_t hb = is_v ? f->hb_v : f->hb_k;
        *stride = hb;
        *off = 0;
        return blk + (size_t)kvh * (size_t)qf_kv_get_params(f->kv)->block_size * hb;
    }
    *stride = is_v ? qf_kv_row_bytes_v(f->kv) : qf_kv_row_bytes_k(f->kv);
    *off = kvh * (is_v ? hp->head_dim_v : hp->head_dim);
    return blk;
}

/* Per token: k head norm and RoPE, then the K,V rows into the cache (the
 * query heads get theirs inside attn_region, where they are read anyway). */
static void qk_post_region(void *p, int ith, int nth) {
    const attn_task *t = p;
    qf_fwd *f = t->f;
    const qf_hparams *hp = &f->m->hp;
    const qf_layer *ly = &f->m->layers[t->layer];
    const qf_kv_params *kp = qf_kv_get_params(f->kv);
    int32_t kd = kp->kv_dim, vd = kp->kv_dim_v;
    long lo, hi;
    qf_split_range(t->b->n, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        float *k = f->k + i * kd, *v = f->v + i * vd;
        const float *cs = f->rope_cs + i * hp->n_rot;
        for (int32_t h = 0; h < hp->n_head_kv; h++) {
            float *kh = k + h * hp->head_dim;
            if (ly->k_norm) rmsnorm(kh, kh, ly->k_norm, hp->head_dim, hp->rms_eps);
            rope_head(kh, cs, hp->n_rot, hp->rope_kind);
        }
        int32_t seq = t->b->seq[i], pos = t->b->pos[i], nb;
        const int32_t *table = qf_kv_seq_table(f->kv, seq, &nb);
        int32_t blk = table[pos / kp->block_size], slot = pos % kp->block_size;
        uint8_t *kdst = qf_kv_block_k(f->kv, t->layer, blk);
        uint8_t *vdst = qf_kv_block_v(f->kv, t->layer, blk);
        const qf_type_traits *tt = qf_type_get(kp->type);
        if (f->kv_hm) {
            for (int32_t h = 0; h < hp->n_head_kv; h++) {
                size_t sk, sv;
                int32_t ok, ov;
                uint8_t *kh = (uint8_t *)kv_head(f, kdst, false, h, &sk, &ok) + (size_t)slot * sk;
                uint8_t *vh = (uint8_t *)kv_head(f, vdst, true, h, &sv, &ov) + (size_t)slot * sv;
                tt->from_float(k + (size_t)h * hp->head_dim, kh, hp->head_dim);
                tt->from_float(v + (size_t)h * hp->head_dim_v, vh, hp->head_dim_v);
            }
        } else {
            tt->from_float(k, kdst + (size_t)slot * qf_kv_row_bytes_k(f->kv), kd);
            tt->from_float(v, vdst + (size_t)slot * qf_kv_row_bytes_v(f->kv), vd);
        }
    }
}

/* Row `slot` of a cache block, elements [off, off+len) as floats: a view
 * for f32 storage; otherwise the blocks covering the range are decoded
 * into tmp (a quantized block may span two heads). */
static const float *cache_row(const qf_fwd *f, const uint8_t *base, size_t row_bytes, int32_t slot, int32_t off,
                              int32_t len, float *tmp) {
    qf_type t = qf_kv_get_params(f->kv)->type;
    const uint8_t *row = base + (size_t)slot * row_bytes;
    if (t == QF_TYPE_F32) return (const float *)row + off;
    const qf_type_traits *tt = qf_type_get(t);
    int32_t blk = (int32_t)tt->blck_size, lo = off / blk * blk, hi = (off + len + blk - 1) / blk * blk;
    tt->to_float(row + (size_t)(lo / blk) * tt->type_size, tmp, hi - lo);
    return tmp + (off - lo);
}

/* Can the kernels compute q . K rows of this cache? f16/f32 storage only:
 * for q8_0 the kernels would quantize q as well, which costs more accuracy
 * than the cache itself (measured: greedy divergence after 5 instead of 32
 * steps on rand-qwen3), so q8_0 rows are decoded and dotted in float. */
static bool qk_kernel_ok(const qf_fwd *f) {
    qf_type t = qf_kv_get_params(f->kv)->type;
    return !f->exact && (t == QF_TYPE_F16 || t == QF_TYPE_F32);
}

/* Ask for len bytes at p into L2 (one request per cache line). */
static void prefetch_l2(const uint8_t *p, size_t len) {
    for (size_t o = 0; o < len; o += 64) __builtin_prefetch(p + o, 0, 2);
}

/* Query heads per attention work item: the heads that share a kv head go
 * together (each K and V row is read once for all of them), split further
 * only when there would be fewer than two items per thread (batch 1 with
 * few kv heads). */
static int32_t attn_heads_per_item(const qf_fwd *f, int32_t n_tokens) {
    const qf_hparams *hp = &f->m->hp;
    int32_t group = hp->n_head / hp->n_head_kv, split = 1;
    while (split < group && (long)n_tokens * hp->n_head_kv * split < 2L * f->n_threads) split++;
    return (group + split - 1) / split;
}

/* Attention of one token for the query heads [h0, h0 + gs) (all of one kv
 * head) over the attended positions of its sequence: [0, n_sink) and
 * [t0, pos], walked block by block in a single pass (each block's keys and
 * values are read once, one after the other; no buffer grows with the
 * context). The heads' q norm and RoPE are applied here, where q is read
 * anyway. Work items differ in length (sequences at different positions),
 * so threads take them one at a time from a shared counter; an item's
 * result does not depend on which thread computes it. */
static void attn_region(void *p, int ith, int nth) {
    attn_task *t = p;
    qf_fwd *f = t->f;
    const qf_hparams *hp = &f->m->hp;
    const qf_layer *ly = &f->m->layers[t->layer];
    const qf_kv_params *kp = qf_kv_get_params(f->kv);
    const qf_dot_f32_fn fdot = qf_type_get(QF_TYPE_F32)->dot_f32;
    int32_t hd = hp->head_dim, hdv = hp->head_dim_v, group = hp->n_head / hp->n_head_kv;
    int32_t bs = kp->block_size, gmax = attn_heads_per_item(f, t->b->n), per_kv = (group + gmax - 1) / gmax;
    qf_type kt = kp->type;
    float *tmp = f->kvrow + (size_t)ith * ((hd > hdv ? hd : hdv) + 64);
    float *tmpk = f->attn_tmp + (size_t)ith * f->attn_tmp_stride;          /* (group, bs) */
    float *mx = tmpk + (size_t)group * bs;                                 /* (n_head) running max */
    float *sm = mx + hp->n_head;                                           /* (n_head) running sum */
    uint8_t *qenc = (uint8_t *)(sm + hp->n_head);                          /* q rows encoded for the kernels */
    float scale = 1.0f / sqrtf((float)hd);
    /* f16 and (head-major) q8_0 caches: the flash kernels (scores, online
     * softmax and value sum in one call per block); f32: q.K through qf_gemm */
    bool flash = !f->exact && (kt == QF_TYPE_F16 || (kt == QF_TYPE_Q8_0 && f->kv_hm && hd % 32 == 0 && hdv % 32 == 0));
    bool fast_qk = !flash && qk_kernel_ok(f);
    size_t qrow = fast_qk ? qf_act_row_size(kt, hd) : 0;
    /* With enough tokens to keep every thread busy, an item is a whole
     * token: per block it walks all kv heads, whose pieces of a head-major
     * block lie one after the other, so a block is one contiguous read of
     * n_head_kv pieces (measured: ~15% less time per position than pieces
     * read one kv head at a time in a microbenchmark, 3-5% less gen time).
     * Fewer tokens split by kv head (and query
     * heads) so that every thread has work. Either way each head sees the
     * same kernel calls in the same order: the results are identical. */
    bool whole = flash && f->kv_hm && t->b->n >= 4L * nth;
    int32_t nkv = whole ? hp->n_head_kv : 1;
    long total = whole ? (long)t->b->n : (long)t->b->n * hp->n_head_kv * per_kv;
    for (long w; (w = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < total;) {
        long i;
        int32_t kv0, h0, gs, nh;
        if (whole) {
            i = w, kv0 = 0, h0 = 0, gs = group, nh = hp->n_head;
        } else {
            i = w / ((long)hp->n_head_kv * per_kv);
            int32_t rem = (int32_t)(w % ((long)hp->n_head_kv * per_kv));
            kv0 = rem / per_kv;
            h0 = kv0 * group + (rem % per_kv) * gmax;
            gs = kv0 * group + group - h0 < gmax ? kv0 * group + group - h0 : gmax;
            nh = gs;
        }
        int32_t seq = t->b->seq[i], pos = t->b->pos[i], nb, window, n_sink;
        const int32_t *table = qf_kv_seq_table(f->kv, seq, &nb);
        qf_kv_seq_get_window(f->kv, seq, &window, &n_sink);
        if (!window && hp->swa_window > 0) window = hp->swa_window, n_sink = 0;
        int32_t t0 = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
        if (t0 <= n_sink) t0 = 0, n_sink = 0;
        int32_t seg_lo[2] = {0, t0}, seg_hi[2] = {n_sink, pos + 1}; /* [lo, hi) */
        float *q = f->q + (size_t)i * hp->n_head * hd + (size_t)h0 * hd; /* nh heads, contiguous */
        const float *cs = f->rope_cs + (size_t)i * hp->n_rot;
        for (int32_t g = 0; g < nh; g++) {
            float *qh = q + (size_t)g * hd;
            if (ly->q_norm) rmsnorm(qh, qh, ly->q_norm, hd, hp->rms_eps);
            rope_head(qh, cs, hp->n_rot, hp->rope_kind);
        }
        const float *qk = q; /* q as the scores see it */
        if (flash && kt == QF_TYPE_F16) {
            /* rounded to fp16 like the keys, as the fp16 q.K kernels did */
            float *qr = (float *)qenc;
            for (int32_t j = 0; j < nh * hd; j++) qr[j] = qf_fp16_to_fp32(qf_fp32_to_fp16(q[j]));
            qk = qr;
        } else if (fast_qk) {
            for (int32_t g = 0; g < gs; g++) qf_act_quantize(kt, q + (size_t)g * hd, qenc + g * qrow, hd);
        }
        size_t krow = 0, vrow = 0; /* distance between slots of this head (set by kv_head) */
        int32_t koff = 0, voff = 0; /* value offset of this head inside a slot (row-major blocks) */
        /* one pass over the blocks, online softmax: per head a running
         * maximum mx and sum sm; when a block raises the maximum, what was
         * accumulated so far is rescaled by exp(old - new) */
        float *out = f->att + (size_t)i * hp->n_head * hdv + (size_t)h0 * hdv; /* nh heads, contiguous */
        memset(out, 0, (size_t)nh * hdv * sizeof(float));
        for (int32_t g = 0; g < nh; g++) mx[g] = -INFINITY, sm[g] = 0.0f;
        for (int sg = 0; sg < 2; sg++)
            for (int32_t b0 = seg_lo[sg] / bs * bs; b0 < seg_hi[sg]; b0 += bs) {
                int32_t r0 = seg_lo[sg] > b0 ? seg_lo[sg] - b0 : 0;
                int32_t r1 = seg_hi[sg] < b0 + bs ? seg_hi[sg] - b0 : bs;
                if (f->kv_hm) {
                    /* each block is a short contiguous piece per head, too
                     * short for the hardware prefetchers to ramp up: ask L2
                     * for this block's values and the next block's keys
                     * (measured: +13% at 16 sequences of ~350 positions;
                     * prefetching the next block's values too, or two
                     * blocks ahead, gained nothing); a whole item's heads
                     * are one piece */
                    const uint8_t *vb = kv_head(f, qf_kv_block_v(f->kv, t->layer, table[b0 / bs]), true, kv0, &vrow,
                                                &voff);
                    prefetch_l2(vb, (size_t)nkv * bs * vrow);
                    if (b0 + bs < seg_hi[sg])
                        prefetch_l2(kv_head(f, qf_kv_block_k(f->kv, t->layer, table[b0 / bs + 1]), false, kv0, &krow,
                                            &koff),
                                    (size_t)nkv * bs * krow);
                }
                for (int32_t kk = 0; kk < nkv; kk++) {
                    int32_t kvh = kv0 + kk, ho = kk * group; /* the item's heads of kv head kvh start at ho */
                    const uint8_t *kb = kv_head(f, qf_kv_block_k(f->kv, t->layer, table[b0 / bs]), false, kvh, &krow,
                                                &koff);
                    const uint8_t *vb = kv_head(f, qf_kv_block_v(f->kv, t->layer, table[b0 / bs]), true, kvh, &vrow,
                                                &voff);
                    if (flash) {
                        (kt == QF_TYPE_F16 ? qf_attn_f16 : qf_attn_q8_0)(
                            hd, hdv, r1 - r0, kb + (size_t)r0 * krow + qf_type_row_size(kt, koff), krow,
                            vb + (size_t)r0 * vrow + qf_type_row_size(kt, voff), vrow, qk + (size_t)ho * hd, hd, gs,
                            scale, mx + ho, sm + ho, out + (size_t)ho * hdv, hdv, tmpk);
                        continue;
                    }
                    /* (whole is off here: one kv head, ho = 0) */
                    if (fast_qk) {
                        qf_gemm(kt, kb, krow, hd, r0, r1, qenc, gs, tmpk, bs);
                    } else {
                        for (int32_t r = r0; r < r1; r++) {
                            const float *kr = cache_row(f, kb, krow, r, koff, hd, tmp);
                            for (int32_t g = 0; g < gs; g++) tmpk[g * bs + r] = fdot(hd, qk + (size_t)g * hd, kr);
                        }
                    }
                    /* scores -> unnormalised weights exp(s - mx), in place */
                    for (int32_t g = 0; g < gs; g++) {
                        float *wr = tmpk + (size_t)g * bs, bm = mx[g];
                        for (int32_t r = r0; r < r1; r++) {
                            wr[r] *= scale;
                            if (wr[r] > bm) bm = wr[r];
                        }
                        if (bm > mx[g]) {
                            float c = expf(mx[g] - bm); /* 0 for the first block */
                            float *o = out + (size_t)g * hdv;
                            if (c != 1.0f)
                                for (int32_t d = 0; d < hdv; d++) o[d] *= c;
                            sm[g] *= c;
                            mx[g] = bm;
                        }
                        for (int32_t r = r0; r < r1; r++) {
                            wr[r] = expf(wr[r] - mx[g]);
                            sm[g] += wr[r];
                        }
                    }
                    for (int32_t r = r0; r < r1; r++) {
                        const float *vr = cache_row(f, vb, vrow, r, voff, hdv, tmp);
                        for (int32_t g = 0; g < gs; g++) {
                            float a = tmpk[g * bs + r], *o = out + (size_t)g * hdv;
                            for (int32_t d = 0; d < hdv; d++) o[d] += a * vr[d];
                        }
                    }
                }
            }
        for (int32_t g = 0; g < nh; g++) {
            float inv = 1.0f / sm[g], *o = out + (size_t)g * hdv;
            for (int32_t d = 0; d < hdv; d++) o[d] *= inv;
        }
    }
}

/* ---- FFN ---- */

typedef struct swiglu_task {
    float *g;
    const float *u;
    long n;
    bool exact; /* the reference formula (libm expf), not the kernel */
} swiglu_task;

static void swiglu_region(void *p, int ith, int nth) {
    const swiglu_task *t = p;
    long lo, hi;
    qf_split_range(t->n, ith, nth, &lo, &hi);
    if (!t->exact) {
        if (hi > lo) qf_swiglu(t->g + lo, t->u + lo, hi - lo);
        return;
    }
    for (long i = lo; i < hi; i++) {
        float x = t->g[i];
        t->g[i] = x / (1.0f + expf(-x)) * t->u[i];
    }
}

/* ---- setup ---- */

static void rope_tables(qf_fwd *f, const qf_batch *b) {
    const qf_hparams *hp = &f->m->hp;
    int32_t half = hp->n_rot / 2;
    for (int32_t i = 0; i < b->n; i++) {
        float *cs = f->rope_cs + (size_t)i * hp->n_rot;
        for (int32_t j = 0; j < half; j++) {
            double freq = pow((double)hp->rope_base, -2.0 * j / hp->n_rot) * hp->rope_freq_scale;
            if (f->m->rope_freqs) freq /= f->m->rope_freqs[j];
            double theta = (double)b->pos[i] * freq;
            cs[2 * j] = (float)cos(theta);
            cs[2 * j + 1] = (float)sin(theta);
        }
    }
}

size_t qf_fwd_scratch_bytes(const qf_model *m, int32_t n_batch_max, int32_t n_ctx_max, int n_threads) {
    const qf_hparams *hp = &m->hp;
    size_t nb = (size_t)n_batch_max;
    size_t qd = (size_t)hp->n_head * hp->head_dim, kd = (size_t)hp->n_head_kv * hp->head_dim;
    size_t vd = (size_t)hp->n_head_kv * hp->head_dim_v, od = (size_t)hp->n_head * hp->head_dim_v;
    size_t mc = (size_t)hp->n_ff;
    if ((size_t)hp->n_embd > mc) mc = hp->n_embd;
    if (qd > mc) mc = qd;
    if (od > mc) mc = od;
    size_t hmax = (size_t)(hp->head_dim > hp->head_dim_v ? hp->head_dim : hp->head_dim_v) + 64;
    size_t group = (size_t)(hp->n_head / hp->n_head_kv);
    size_t attn = group * (64 + 2 + hmax + 16) + 64; /* attn_tmp (blocks of 64 at most) */
    size_t floats = nb * (2 * (size_t)hp->n_embd + qd + kd + vd + od + 2 * (size_t)hp->n_ff + hp->n_rot) +
                    (size_t)n_threads * (mc + attn + hmax) + (size_t)hp->n_vocab;
    return floats * sizeof(float) + nb * sizeof(int32_t) + nb * (mc * 4 + 64);
}

qf_fwd *qf_fwd_new(const qf_model *m, qf_kv *kv, qf_pool *pool, int32_t n_batch_max, int32_t n_ctx_max,
                   qf_err *err) {
    const qf_hparams *hp = &m->hp;
    const qf_kv_params *kp = qf_kv_get_params(kv);
    if (n_batch_max <= 0 || n_ctx_max <= 0 || kp->n_layer != hp->n_layer ||
        kp->kv_dim != hp->n_head_kv * hp->head_dim || kp->kv_dim_v != hp->n_head_kv * hp->head_dim_v) {
        QF_ERR_SET(err, QF_ERR_INVALID, "forward: batch %d / context %d / kv cache shape do not fit the model",
                   n_batch_max, n_ctx_max);
        return NULL;
    }
    qf_fwd *f = qf_calloc(1, sizeof *f);
    if (!f) goto nomem;
    f->m = m;
    f->kv = kv;
    f->pool = pool;
    f->n_batch_max = n_batch_max;
    f->n_ctx_max = n_ctx_max;
    f->n_threads = qf_pool_size(pool);
    int32_t qd = hp->n_head * hp->head_dim, od = hp->n_head * hp->head_dim_v;
    f->max_cols = hp->n_ff;
    if (hp->n_embd > f->max_cols) f->max_cols = hp->n_embd;
    if (qd > f->max_cols) f->max_cols = qd;
    if (od > f->max_cols) f->max_cols = od;
    size_t nb = (size_t)n_batch_max;
    int32_t hmax = hp->head_dim > hp->head_dim_v ? hp->head_dim : hp->head_dim_v;
    f->x = qf_calloc(nb * hp->n_embd, sizeof(float));
    f->xn = qf_calloc(nb * hp->n_embd, sizeof(float));
    f->q = qf_calloc(nb * qd, sizeof(float));
    f->k = qf_calloc(nb * kp->kv_dim, sizeof(float));
    f->v = qf_calloc(nb * kp->kv_dim_v, sizeof(float));
    f->att = qf_calloc(nb * od, sizeof(float));
    f->g = qf_calloc(nb * hp->n_ff, sizeof(float));
    f->u = qf_calloc(nb * hp->n_ff, sizeof(float));
    f->rope_cs = qf_calloc(nb * hp->n_rot, sizeof(float));
    f->wbuf = qf_calloc((size_t)f->n_threads * f->max_cols, sizeof(float));
    int32_t group = hp->n_head / hp->n_head_kv;
    f->kvrow = qf_calloc((size_t)f->n_threads * (hmax + 64), sizeof(float));
    f->out_idx = qf_calloc(nb, sizeof(int32_t));
    /* encoded activations take at most 4 bytes a value (f32), plus block headers */
    f->act = qf_malloc(nb * ((size_t)f->max_cols * 4 + 64));
    /* per thread: q.K of a block for each head of a group, then the group's
     * q rows encoded (at most 4 bytes a value) */
    /* (group, bs) weights; running max and sum per query head; encoded q
     * for every query head (a whole-token item's fp16-rounded q) */
    f->attn_tmp_stride = (size_t)group * (size_t)kp->block_size + 2 * (size_t)hp->n_head +
                         (size_t)hp->n_head * ((size_t)hmax + 16) + 64;
    f->attn_tmp = qf_calloc((size_t)f->n_threads * f->attn_tmp_stride, sizeof(float));
    f->hb_k = qf_type_row_size(kp->type, hp->head_dim);
    f->hb_v = qf_type_row_size(kp->type, hp->head_dim_v);
    f->kv_hm = f->hb_k && f->hb_v && f->hb_k * (size_t)hp->n_head_kv == qf_kv_row_bytes_k(kv) &&
               f->hb_v * (size_t)hp->n_head_kv == qf_kv_row_bytes_v(kv);
    const char *ex = getenv("QF_EXACT");
    f->exact = ex && *ex && strcmp(ex, "0") != 0;
    if (!f->x || !f->xn || !f->q || !f->k || !f->v || !f->att || !f->g || !f->u || !f->rope_cs ||
        !f->wbuf || !f->kvrow || !f->out_idx || !f->act || !f->attn_tmp)
        goto nomem;
    return f;
nomem:
    qf_fwd_free(f);
    QF_ERR_SET(err, QF_ERR_NOMEM, "forward: out of memory for scratch (%zu bytes)",
               qf_fwd_scratch_bytes(m, n_batch_max, n_ctx_max, qf_pool_size(pool)));
    return NULL;
}

void qf_fwd_free(qf_fwd *f) {
    if (!f) return;
    float *bufs[] = {f->x, f->xn, f->q, f->k, f->v, f->att, f->g, f->u, f->rope_cs, f->wbuf,
                     f->kvrow, f->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) qf_free(bufs[i]);
    qf_free(f->out_idx);
    qf_free(f->act);
    qf_free(f->attn_tmp);
    qf_free(f);
}

static qf_status check_batch(qf_fwd *f, const qf_batch *b, qf_err *err) {
    const qf_hparams *hp = &f->m->hp;
    const qf_kv_params *kp = qf_kv_get_params(f->kv);
    if (b->n <= 0 || b->n > f->n_batch_max)
        return QF_ERR_SET(err, QF_ERR_INVALID, "batch of %d tokens (1..%d allowed)", b->n, f->n_batch_max);
    for (int32_t i = 0; i < b->n; i++) {
        if (b->tok[i] < 0 || b->tok[i] >= hp->n_vocab)
            return QF_ERR_SET(err, QF_ERR_INVALID, "token %d at batch index %d is outside the vocabulary (%d)",
                              b->tok[i], i, hp->n_vocab);
        if (b->seq[i] < 0 || b->seq[i] >= kp->n_seq_max)
            return QF_ERR_SET(err, QF_ERR_INVALID, "sequence id %d outside 0..%d", b->seq[i], kp->n_seq_max - 1);
        /* a sliding-window sequence may run past n_ctx_max positions; what
         * must fit is the number of positions one token attends to */
        int32_t window = 0, n_sink = 0;
        if (b->seq[i] >= 0 && b->seq[i] < kp->n_seq_max) qf_kv_seq_get_window(f->kv, b->seq[i], &window, &n_sink);
        int64_t attended = window > 0 && b->pos[i] + 1 > window + n_sink ? window + n_sink : (int64_t)b->pos[i] + 1;
        if (b->pos[i] < 0 || attended > f->n_ctx_max || b->pos[i] >= INT32_MAX / 2)
            return QF_ERR_SET(err, QF_ERR_RANGE, "position %d is beyond the context of %d tokens", b->pos[i],
                              f->n_ctx_max);
    }
    /* make every sequence's written range its own: [first pos, last pos] */
    for (int32_t i = 0; i < b->n; i++) {
        int32_t s = b->seq[i], lo = b->pos[i], hi = b->pos[i];
        bool seen = false;
        for (int32_t j = 0; j < i && !seen; j++) seen = b->seq[j] == s;
        if (seen) continue;
        for (int32_t j = i + 1; j < b->n; j++)
            if (b->seq[j] == s) {
                if (b->pos[j] < lo) lo = b->pos[j];
                if (b->pos[j] > hi) hi = b->pos[j];
            }
        qf_status st = qf_kv_seq_prepare(f->kv, s, lo, hi + 1, err);
        if (st != QF_OK) return st;
    }
    return QF_OK;
}

qf_status qf_fwd_decode(qf_fwd *f, const qf_batch *b, qf_err *err) {
    return qf_fwd_decode_range(f, b, 0, f->m->hp.n_layer, true, NULL, err);
}

const float *qf_fwd_logits(const qf_fwd *f, int32_t j) {
    if (j < 0 || j >= f->n_logits) return NULL;
    return f->logits + (size_t)j * f->m->hp.n_vocab;
}

int32_t qf_fwd_n_logits(const qf_fwd *f) { return f->n_logits; }

/* ---- part of a step (layer ranges for a split with another device) ---- */

qf_status qf_fwd_decode_range(qf_fwd *f, const qf_batch *b, int32_t l0, int32_t l1, bool head, float *x_io,
                              qf_err *err) {
    const qf_model *m = f->m;
    const qf_hparams *hp = &m->hp;
    if (l0 < 0 || l1 < l0 || l1 > hp->n_layer || (head && l1 != hp->n_layer) || (l0 > 0 && !x_io))
        return QF_ERR_SET(err, QF_ERR_INVALID, "forward: layer range [%d, %d)%s of %d layers%s", l0, l1,
                          head ? " + head" : "", hp->n_layer, l0 > 0 && !x_io ? " without hidden states" : "");
    qf_status st = check_batch(f, b, err);
    if (st != QF_OK) return st;
    int32_t n = b->n, E = hp->n_embd;

    if (l0 == 0) {
        /* embeddings: decode the token rows */
        const qf_type_traits *et = qf_type_get(m->tok_embd.type);
        for (int32_t i = 0; i < n; i++)
            et->to_float((const uint8_t *)m->tok_embd.data + (size_t)b->tok[i] * m->tok_embd.row_bytes,
                         f->x + (size_t)i * E, E);
    } else {
        memcpy(f->x, x_io, (size_t)n * E * sizeof(float));
    }
    rope_tables(f, b);

    for (int32_t l = l0; l < l1; l++) {
        const qf_layer *ly = &m->layers[l];
        norm_rows(f, f->xn, f->x, ly->attn_norm, n, E, &ly->wq);
        matmul(f, &ly->wq, f->xn, f->q, ly->bq, n, true);
        matmul(f, &ly->wk, f->xn, f->k, ly->bk, n, true);
        matmul(f, &ly->wv, f->xn, f->v, ly->bv, n, true);
        attn_task at = {f, b, l, 0};
        qf_pool_run(f->pool, qk_post_region, &at);
        qf_pool_run(f->pool, attn_region, &at);
        matmul(f, &ly->wo, f->att, f->xn, NULL, n, false);
        for (size_t i = 0; i < (size_t)n * E; i++) f->x[i] += f->xn[i];

        norm_rows(f, f->xn, f->x, ly->ffn_norm, n, E, &ly->w_gate);
        if (!f->exact && qf_act_type(ly->w_up.type) == f->act_type && ly->w_up.rows == ly->w_gate.rows) {
            glu_task gt = {&ly->w_gate, &ly->w_up, f->act, f->g, f->u, n};
            qf_pool_run(f->pool, glu_region, &gt);
        } else {
            matmul(f, &ly->w_gate, f->xn, f->g, NULL, n, true);
            matmul(f, &ly->w_up, f->xn, f->u, NULL, n, true);
            swiglu_task sw = {f->g, f->u, (long)n * hp->n_ff, f->exact};
            qf_pool_run(f->pool, swiglu_region, &sw);
        }
        matmul(f, &ly->w_down, f->g, f->xn, NULL, n, false);
        for (size_t i = 0; i < (size_t)n * E; i++) f->x[i] += f->xn[i];
    }
    if (x_io) memcpy(x_io, f->x, (size_t)n * E * sizeof(float));
    if (!head) {
        f->n_logits = 0;
        return QF_OK;
    }

    /* gather the rows that want logits, then norm + output projection */
    int32_t n_out = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!b->logits || !b->logits[i]) continue;
        if (n_out != i) memcpy(f->x + (size_t)n_out * E, f->x + (size_t)i * E, (size_t)E * sizeof(float));
        f->out_idx[n_out++] = i;
    }
    f->n_logits = n_out;
    if (n_out == 0) return QF_OK;
    if (n_out > f->cap_logits) {
        float *nl = qf_realloc(f->logits, (size_t)n_out * hp->n_vocab * sizeof(float));
        if (!nl) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory for %d logits rows", n_out);
        f->logits = nl;
        f->cap_logits = n_out;
    }
    norm_rows(f, f->xn, f->x, m->output_norm, n_out, E, &m->output);
    matmul(f, &m->output, f->xn, f->logits, NULL, n_out, true);
    return QF_OK;
}
