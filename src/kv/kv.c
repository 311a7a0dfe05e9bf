/* kv.c - block pool with a free stack, and per-sequence block tables.
 *
 * Memory: K and V pools per layer, (n_blocks, block_size, dim) each, in
 * one allocation per pool. The free list is a stack of block ids, so
 * reserve and truncate are O(blocks moved).
 */
#include "kv/kv.h"

#include <string.h>

#include "base/mem.h"

typedef struct seq_table {
    int32_t *blocks;
    int32_t n, cap;
} seq_table;

struct qf_kv {
    qf_kv_params p;
    size_t elt;             /* bytes per element */
    size_t k_block_bytes;   /* block_size * kv_dim * elt */
    size_t v_block_bytes;
    uint8_t **k;            /* (n_layer) -> (n_blocks, block_size, kv_dim) */
    uint8_t **v;
    int32_t *free_stack;    /* (n_blocks) */
    int64_t n_free;
    seq_table *seqs;        /* (n_seq_max) */
};

static size_t elt_size(qf_type t) { return t == QF_TYPE_F16 ? 2 : 4; }

size_t qf_kv_pool_bytes(const qf_kv_params *p) {
    size_t per_tok = ((size_t)p->kv_dim + (size_t)p->kv_dim_v) * elt_size(p->type);
    return per_tok * (size_t)p->block_size * (size_t)p->n_blocks * (size_t)p->n_layer;
}

qf_kv *qf_kv_new(const qf_kv_params *p, qf_err *err) {
    if (p->n_layer <= 0 || p->kv_dim <= 0 || p->kv_dim_v <= 0 || p->block_size <= 0 ||
        p->n_blocks <= 0 || p->n_blocks > INT32_MAX || p->n_seq_max <= 0 ||
        (p->type != QF_TYPE_F32 && p->type != QF_TYPE_F16)) {
        QF_ERR_SET(err, QF_ERR_INVALID, "kv cache: invalid parameters (layers %d, dim %d/%d, "
                   "block %d, blocks %lld, seqs %d, type %d)", p->n_layer, p->kv_dim, p->kv_dim_v,
                   p->block_size, (long long)p->n_blocks, p->n_seq_max, (int)p->type);
        return NULL;
    }
    qf_kv *kv = qf_calloc(1, sizeof *kv);
    if (!kv) goto nomem;
    kv->p = *p;
    kv->elt = elt_size(p->type);
    kv->k_block_bytes = (size_t)p->block_size * (size_t)p->kv_dim * kv->elt;
    kv->v_block_bytes = (size_t)p->block_size * (size_t)p->kv_dim_v * kv->elt;
    kv->k = qf_calloc((size_t)p->n_layer, sizeof *kv->k);
    kv->v = qf_calloc((size_t)p->n_layer, sizeof *kv->v);
    kv->free_stack = qf_calloc((size_t)p->n_blocks, sizeof *kv->free_stack);
    kv->seqs = qf_calloc((size_t)p->n_seq_max, sizeof *kv->seqs);
    if (!kv->k || !kv->v || !kv->free_stack || !kv->seqs) goto nomem;
    for (int32_t l = 0; l < p->n_layer; l++) {
        kv->k[l] = qf_calloc((size_t)p->n_blocks, kv->k_block_bytes);
        kv->v[l] = qf_calloc((size_t)p->n_blocks, kv->v_block_bytes);
        if (!kv->k[l] || !kv->v[l]) goto nomem;
    }
    /* lowest ids on top so a fresh cache hands out blocks 0, 1, 2, ... */
    for (int64_t i = 0; i < p->n_blocks; i++) kv->free_stack[i] = (int32_t)(p->n_blocks - 1 - i);
    kv->n_free = p->n_blocks;
    return kv;
nomem:
    qf_kv_free(kv);
    QF_ERR_SET(err, QF_ERR_NOMEM, "kv cache: cannot allocate %zu bytes", qf_kv_pool_bytes(p));
    return NULL;
}

void qf_kv_free(qf_kv *kv) {
    if (!kv) return;
    for (int32_t l = 0; l < kv->p.n_layer; l++) {
        if (kv->k) qf_free(kv->k[l]);
        if (kv->v) qf_free(kv->v[l]);
    }
    if (kv->seqs)
        for (int32_t s = 0; s < kv->p.n_seq_max; s++) qf_free(kv->seqs[s].blocks);
    qf_free(kv->k);
    qf_free(kv->v);
    qf_free(kv->free_stack);
    qf_free(kv->seqs);
    qf_free(kv);
}

const qf_kv_params *qf_kv_get_params(const qf_kv *kv) { return &kv->p; }

qf_status qf_kv_seq_reserve(qf_kv *kv, int32_t seq, int32_t n_pos, qf_err *err) {
    if (seq < 0 || seq >= kv->p.n_seq_max || n_pos < 0)
        return QF_ERR_SET(err, QF_ERR_INVALID, "kv cache: sequence %d / %d positions out of range",
                          seq, n_pos);
    seq_table *t = &kv->seqs[seq];
    int32_t need = (int32_t)(((int64_t)n_pos + kv->p.block_size - 1) / kv->p.block_size);
    if (need <= t->n) return QF_OK;
    if (need - t->n > kv->n_free)
        return QF_ERR_SET(err, QF_ERR_RANGE,
                          "kv cache full: sequence %d needs %d more blocks of %d tokens, %lld free",
                          seq, need - t->n, kv->p.block_size, (long long)kv->n_free);
    if (need > t->cap) {
        int32_t cap = t->cap ? t->cap : 8;
        while (cap < need) cap *= 2;
        int32_t *nb = qf_realloc(t->blocks, (size_t)cap * sizeof *nb);
        if (!nb) return QF_ERR_SET(err, QF_ERR_NOMEM, "kv cache: out of memory for block table");
        t->blocks = nb;
        t->cap = cap;
    }
    while (t->n < need) t->blocks[t->n++] = kv->free_stack[--kv->n_free];
    return QF_OK;
}

void qf_kv_seq_truncate(qf_kv *kv, int32_t seq, int32_t n_pos) {
    if (seq < 0 || seq >= kv->p.n_seq_max || n_pos < 0) return;
    seq_table *t = &kv->seqs[seq];
    int32_t keep = (int32_t)(((int64_t)n_pos + kv->p.block_size - 1) / kv->p.block_size);
    while (t->n > keep) kv->free_stack[kv->n_free++] = t->blocks[--t->n];
}

int32_t qf_kv_seq_capacity(const qf_kv *kv, int32_t seq) {
    if (seq < 0 || seq >= kv->p.n_seq_max) return 0;
    return kv->seqs[seq].n * kv->p.block_size;
}

int64_t qf_kv_free_blocks(const qf_kv *kv) { return kv->n_free; }

const int32_t *qf_kv_seq_table(const qf_kv *kv, int32_t seq, int32_t *n) {
    *n = kv->seqs[seq].n;
    return kv->seqs[seq].blocks;
}

void *qf_kv_block_k(const qf_kv *kv, int32_t layer, int32_t block) {
    return kv->k[layer] + (size_t)block * kv->k_block_bytes;
}

void *qf_kv_block_v(const qf_kv *kv, int32_t layer, int32_t block) {
    return kv->v[layer] + (size_t)block * kv->v_block_bytes;
}
