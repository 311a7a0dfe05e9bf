/* kv.c - block pool, reference counts, the prefix hash map and LRU.
 *
 * Every block is in exactly one of three states:
 *   free    ref == 0, not registered      -> on the free stack
 *   cached  ref == 0, registered          -> on the LRU list and in the map
 *   used    ref >= 1 (registered or not)  -> in one or more block tables
 * Allocation pops the free stack, else evicts the least recently used
 * cached block. The map goes from a chain hash to a block; the block keeps
 * its token ids so a lookup verifies the match instead of trusting 64 bits.
 * Per sequence the table also keeps the chain hash of each block, so
 * registration continues where it stopped.
 */
#include "kv/kv.h"

#include <string.h>
#include <xxhash.h>

#include "base/mem.h"

#define CHAIN_SEED 0x51f0c0ffee123457ull

typedef struct seq_table {
    int32_t *blocks;  /* (cap) block ids, -1 = dropped */
    uint64_t *chain;  /* (cap) chain hash after each registered block */
    int32_t n, cap;
    int32_t n_reg;    /* leading blocks whose chain hash is known */
    int32_t window, n_sink;
} seq_table;

struct qf_kv {
    qf_kv_params p;
    size_t k_row, v_row;            /* bytes per position */
    size_t k_block_bytes, v_block_bytes;
    uint8_t **k, **v;               /* (n_layer) -> (n_blocks, block_size, row) */
    int32_t *ref;                   /* (n_blocks) */
    uint8_t *hashed;                /* (n_blocks) */
    uint64_t *hash;                 /* (n_blocks) */
    int32_t *toks;                  /* (n_blocks, block_size) tokens of registered blocks */
    int32_t *free_stack;            /* (n_blocks) */
    int64_t n_free;
    int32_t *lru_prev, *lru_next;   /* (n_blocks) cached list: head = least recent */
    int32_t lru_head, lru_tail;
    int64_t n_cached;
    int32_t *bucket;                /* (n_buckets) map heads */
    int32_t *chain_next;            /* (n_blocks) map chains */
    uint64_t n_buckets;
    seq_table *seqs;                /* (n_seq_max) */
    uint64_t evictions, cow_copies, prefix_hits;
};

/* ---- pool ---- */

size_t qf_kv_pool_bytes(const qf_kv_params *p) {
    size_t per_tok = qf_type_row_size(p->type, p->kv_dim) + qf_type_row_size(p->type, p->kv_dim_v);
    return per_tok * (size_t)p->block_size * (size_t)p->n_blocks * (size_t)p->n_layer;
}

static bool type_ok(const qf_kv_params *p) {
    if (p->type == QF_TYPE_F32 || p->type == QF_TYPE_F16) return true;
    return p->type == QF_TYPE_Q8_0 && p->kv_dim % 32 == 0 && p->kv_dim_v % 32 == 0;
}

qf_kv *qf_kv_new(const qf_kv_params *p, qf_err *err) {
    if (p->n_layer <= 0 || p->kv_dim <= 0 || p->kv_dim_v <= 0 || p->block_size <= 0 || p->block_size > 4096 ||
        p->n_blocks <= 0 || p->n_blocks > INT32_MAX / 2 || p->n_seq_max <= 0 || !type_ok(p)) {
        QF_ERR_SET(err, QF_ERR_INVALID,
                   "kv cache: invalid parameters (layers %d, dim %d/%d, block %d, blocks %lld, seqs %d, type %s)",
                   p->n_layer, p->kv_dim, p->kv_dim_v, p->block_size, (long long)p->n_blocks, p->n_seq_max,
                   qf_type_get(p->type) ? qf_type_get(p->type)->name : "?");
        return NULL;
    }
    qf_kv *kv = qf_calloc(1, sizeof *kv);
    if (!kv) goto nomem;
    kv->p = *p;
    size_t nb = (size_t)p->n_blocks;
    kv->k_row = qf_type_row_size(p->type, p->kv_dim);
    kv->v_row = qf_type_row_size(p->type, p->kv_dim_v);
    kv->k_block_bytes = (size_t)p->block_size * kv->k_row;
    kv->v_block_bytes = (size_t)p->block_size * kv->v_row;
    kv->n_buckets = 16;
    while (kv->n_buckets < 2 * nb) kv->n_buckets *= 2;
    kv->k = qf_calloc((size_t)p->n_layer, sizeof *kv->k);
    kv->v = qf_calloc((size_t)p->n_layer, sizeof *kv->v);
    kv->ref = qf_calloc(nb, sizeof *kv->ref);
    kv->hashed = qf_calloc(nb, 1);
    kv->hash = qf_calloc(nb, sizeof *kv->hash);
    kv->toks = qf_calloc(nb * (size_t)p->block_size, sizeof *kv->toks);
    kv->free_stack = qf_calloc(nb, sizeof *kv->free_stack);
    kv->lru_prev = qf_calloc(nb, sizeof *kv->lru_prev);
    kv->lru_next = qf_calloc(nb, sizeof *kv->lru_next);
    kv->bucket = qf_calloc(kv->n_buckets, sizeof *kv->bucket);
    kv->chain_next = qf_calloc(nb, sizeof *kv->chain_next);
    kv->seqs = qf_calloc((size_t)p->n_seq_max, sizeof *kv->seqs);
    if (!kv->k || !kv->v || !kv->ref || !kv->hashed || !kv->hash || !kv->toks || !kv->free_stack ||
        !kv->lru_prev || !kv->lru_next || !kv->bucket || !kv->chain_next || !kv->seqs)
        goto nomem;
    for (int32_t l = 0; l < p->n_layer; l++) {
        kv->k[l] = qf_calloc(nb, kv->k_block_bytes);
        kv->v[l] = qf_calloc(nb, kv->v_block_bytes);
        if (!kv->k[l] || !kv->v[l]) goto nomem;
    }
    for (uint64_t i = 0; i < kv->n_buckets; i++) kv->bucket[i] = -1;
    /* lowest ids on top so a fresh cache hands out blocks 0, 1, 2, ... */
    for (size_t i = 0; i < nb; i++) kv->free_stack[i] = (int32_t)(nb - 1 - i);
    kv->n_free = (int64_t)nb;
    kv->lru_head = kv->lru_tail = -1;
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
        for (int32_t s = 0; s < kv->p.n_seq_max; s++) {
            qf_free(kv->seqs[s].blocks);
            qf_free(kv->seqs[s].chain);
        }
    void *arrs[] = {kv->k,          kv->v,        kv->ref,        kv->hashed,     kv->hash,
                    kv->toks,       kv->free_stack, kv->lru_prev, kv->lru_next,   kv->bucket,
                    kv->chain_next, kv->seqs};
    for (size_t i = 0; i < sizeof arrs / sizeof *arrs; i++) qf_free(arrs[i]);
    qf_free(kv);
}

const qf_kv_params *qf_kv_get_params(const qf_kv *kv) { return &kv->p; }

/* ---- LRU of cached blocks ---- */

static void lru_remove(qf_kv *kv, int32_t b) {
    int32_t p = kv->lru_prev[b], n = kv->lru_next[b];
    if (p >= 0) kv->lru_next[p] = n;
    else kv->lru_head = n;
    if (n >= 0) kv->lru_prev[n] = p;
    else kv->lru_tail = p;
    kv->n_cached--;
}

static void lru_push(qf_kv *kv, int32_t b) {
    kv->lru_prev[b] = kv->lru_tail;
    kv->lru_next[b] = -1;
    if (kv->lru_tail >= 0) kv->lru_next[kv->lru_tail] = b;
    else kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

/* ---- hash map ---- */

static uint64_t chain_hash(uint64_t prev, const int32_t *toks, int32_t bs) {
    return XXH3_64bits_withSeed(toks, (size_t)bs * sizeof *toks, prev);
}

static int32_t map_find(const qf_kv *kv, uint64_t h, const int32_t *toks) {
    for (int32_t b = kv->bucket[h & (kv->n_buckets - 1)]; b >= 0; b = kv->chain_next[b])
        if (kv->hash[b] == h &&
            !memcmp(kv->toks + (size_t)b * kv->p.block_size, toks, (size_t)kv->p.block_size * sizeof *toks))
            return b;
    return -1;
}

static void map_insert(qf_kv *kv, int32_t b, uint64_t h, const int32_t *toks) {
    uint64_t i = h & (kv->n_buckets - 1);
    kv->hash[b] = h;
    kv->hashed[b] = 1;
    memcpy(kv->toks + (size_t)b * kv->p.block_size, toks, (size_t)kv->p.block_size * sizeof *toks);
    kv->chain_next[b] = kv->bucket[i];
    kv->bucket[i] = b;
}

static void map_remove(qf_kv *kv, int32_t b) {
    int32_t *pp = &kv->bucket[kv->hash[b] & (kv->n_buckets - 1)];
    while (*pp >= 0 && *pp != b) pp = &kv->chain_next[*pp];
    if (*pp == b) *pp = kv->chain_next[b];
    kv->hashed[b] = 0;
}

/* ---- block life cycle ---- */

static int32_t block_alloc(qf_kv *kv) {
    int32_t b;
    if (kv->n_free > 0) {
        b = kv->free_stack[--kv->n_free];
    } else if (kv->lru_head >= 0) {
        b = kv->lru_head;
        lru_remove(kv, b);
        map_remove(kv, b);
        kv->evictions++;
    } else {
        return -1;
    }
    kv->ref[b] = 1;
    return b;
}

static void block_release(qf_kv *kv, int32_t b) {
    if (b < 0) return;
    if (--kv->ref[b] > 0) return;
    if (kv->hashed[b]) lru_push(kv, b);
    else kv->free_stack[kv->n_free++] = b;
}

int64_t qf_kv_free_blocks(const qf_kv *kv) { return kv->n_free + kv->n_cached; }

static qf_status table_grow(seq_table *t, int32_t need) {
    if (need <= t->cap) return QF_OK;
    int32_t cap = t->cap ? t->cap : 8;
    while (cap < need) cap *= 2;
    int32_t *nb = qf_realloc(t->blocks, (size_t)cap * sizeof *nb);
    if (!nb) return QF_ERR_NOMEM;
    t->blocks = nb;
    uint64_t *nc = qf_realloc(t->chain, (size_t)cap * sizeof *nc);
    if (!nc) return QF_ERR_NOMEM;
    t->chain = nc;
    t->cap = cap;
    return QF_OK;
}

static bool seq_ok(const qf_kv *kv, int32_t seq) { return seq >= 0 && seq < kv->p.n_seq_max; }

qf_status qf_kv_seq_prepare(qf_kv *kv, int32_t seq, int32_t pos0, int32_t pos1, qf_err *err) {
    if (!seq_ok(kv, seq) || pos0 < 0 || pos1 < pos0)
        return QF_ERR_SET(err, QF_ERR_INVALID, "kv cache: sequence %d positions [%d, %d) out of range", seq,
                          pos0, pos1);
    seq_table *t = &kv->seqs[seq];
    int32_t bs = kv->p.block_size;
    int32_t need = (int32_t)(((int64_t)pos1 + bs - 1) / bs);
    int32_t first = pos0 / bs, last = need < t->n ? need : t->n; /* existing blocks written */
    int64_t want = need > t->n ? need - t->n : 0;
    for (int32_t i = first; i < last; i++)
        if (t->blocks[i] >= 0 && kv->ref[t->blocks[i]] > 1) want++;
    if (want > qf_kv_free_blocks(kv))
        return QF_ERR_SET(err, QF_ERR_RANGE,
                          "kv cache full: sequence %d needs %lld more blocks of %d tokens, %lld available", seq,
                          (long long)want, bs, (long long)qf_kv_free_blocks(kv));
    if (table_grow(t, need) != QF_OK) return QF_ERR_SET(err, QF_ERR_NOMEM, "kv cache: out of memory for block table");
    for (int32_t i = first; i < last; i++) {
        int32_t b = t->blocks[i];
        if (b < 0) continue;
        if (kv->ref[b] > 1) { /* copy on write */
            int32_t nb = block_alloc(kv);
            for (int32_t l = 0; l < kv->p.n_layer; l++) {
                memcpy(kv->k[l] + (size_t)nb * kv->k_block_bytes, kv->k[l] + (size_t)b * kv->k_block_bytes,
                       kv->k_block_bytes);
                memcpy(kv->v[l] + (size_t)nb * kv->v_block_bytes, kv->v[l] + (size_t)b * kv->v_block_bytes,
                       kv->v_block_bytes);
            }
            block_release(kv, b);
            t->blocks[i] = nb;
            kv->cow_copies++;
        } else if (kv->hashed[b]) { /* sole owner rewrites it: no longer what the hash says */
            map_remove(kv, b);
        }
        if (t->n_reg > i) t->n_reg = i;
    }
    while (t->n < need) t->blocks[t->n++] = block_alloc(kv);
    return QF_OK;
}

qf_status qf_kv_seq_reserve(qf_kv *kv, int32_t seq, int32_t n_pos, qf_err *err) {
    if (!seq_ok(kv, seq) || n_pos < 0)
        return QF_ERR_SET(err, QF_ERR_INVALID, "kv cache: sequence %d / %d positions out of range", seq, n_pos);
    int32_t cap = qf_kv_seq_capacity(kv, seq);
    return qf_kv_seq_prepare(kv, seq, cap < n_pos ? cap : n_pos, n_pos, err);
}

void qf_kv_seq_truncate(qf_kv *kv, int32_t seq, int32_t n_pos) {
    if (!seq_ok(kv, seq) || n_pos < 0) return;
    seq_table *t = &kv->seqs[seq];
    int32_t bs = kv->p.block_size;
    int32_t keep = (int32_t)(((int64_t)n_pos + bs - 1) / bs);
    while (t->n > keep) block_release(kv, t->blocks[--t->n]);
    if (t->n_reg > n_pos / bs) t->n_reg = n_pos / bs;
    if (n_pos == 0) t->window = t->n_sink = 0;
}

int32_t qf_kv_seq_capacity(const qf_kv *kv, int32_t seq) {
    if (!seq_ok(kv, seq)) return 0;
    return kv->seqs[seq].n * kv->p.block_size;
}

/* ---- prefix sharing ---- */

int32_t qf_kv_seq_attach_prefix(qf_kv *kv, int32_t seq, const int32_t *tokens, int32_t n, int32_t max_pos) {
    if (!seq_ok(kv, seq)) return 0;
    seq_table *t = &kv->seqs[seq];
    int32_t bs = kv->p.block_size, i = t->n;
    if (t->n != t->n_reg) return t->n_reg * bs; /* holds computed, unregistered data: nothing to attach */
    int32_t start = i;
    uint64_t h = i ? t->chain[i - 1] : CHAIN_SEED;
    for (; (int64_t)(i + 1) * bs <= n && (int64_t)(i + 1) * bs <= max_pos; i++) {
        const int32_t *bt = tokens + (size_t)i * bs;
        uint64_t hi = chain_hash(h, bt, bs);
        int32_t b = map_find(kv, hi, bt);
        if (b < 0 || table_grow(t, i + 1) != QF_OK) break;
        if (kv->ref[b] == 0) lru_remove(kv, b);
        kv->ref[b]++;
        t->blocks[i] = b;
        t->chain[i] = hi;
        t->n = t->n_reg = i + 1;
        h = hi;
    }
    kv->prefix_hits += (uint64_t)(i - start);
    return i * bs;
}

void qf_kv_seq_register(qf_kv *kv, int32_t seq, const int32_t *tokens, int32_t n) {
    if (!seq_ok(kv, seq)) return;
    seq_table *t = &kv->seqs[seq];
    int32_t bs = kv->p.block_size;
    for (int32_t i = t->n_reg; i < t->n && (int64_t)(i + 1) * bs <= n; i++) {
        int32_t b = t->blocks[i];
        if (b < 0) break; /* dropped by a sliding window: the chain ends */
        uint64_t prev = i ? t->chain[i - 1] : CHAIN_SEED;
        const int32_t *bt = tokens + (size_t)i * bs;
        uint64_t h = chain_hash(prev, bt, bs);
        if (!kv->hashed[b] && map_find(kv, h, bt) < 0) map_insert(kv, b, h, bt);
        t->chain[i] = h;
        t->n_reg = i + 1;
    }
}

qf_status qf_kv_seq_fork(qf_kv *kv, int32_t src, int32_t dst, qf_err *err) {
    if (!seq_ok(kv, src) || !seq_ok(kv, dst) || src == dst || kv->seqs[dst].n != 0)
        return QF_ERR_SET(err, QF_ERR_INVALID, "kv cache: cannot fork sequence %d into %d", src, dst);
    seq_table *s = &kv->seqs[src], *d = &kv->seqs[dst];
    if (table_grow(d, s->n) != QF_OK) return QF_ERR_SET(err, QF_ERR_NOMEM, "kv cache: out of memory for block table");
    for (int32_t i = 0; i < s->n; i++) {
        d->blocks[i] = s->blocks[i];
        d->chain[i] = s->chain[i];
        if (s->blocks[i] >= 0) kv->ref[s->blocks[i]]++;
    }
    d->n = s->n;
    d->n_reg = s->n_reg;
    d->window = s->window;
    d->n_sink = s->n_sink;
    return QF_OK;
}

void qf_kv_seq_drop_range(qf_kv *kv, int32_t seq, int32_t pos0, int32_t pos1) {
    if (!seq_ok(kv, seq)) return;
    seq_table *t = &kv->seqs[seq];
    int32_t bs = kv->p.block_size;
    for (int32_t i = (pos0 + bs - 1) / bs; i < t->n && (int64_t)(i + 1) * bs <= pos1; i++) {
        block_release(kv, t->blocks[i]);
        t->blocks[i] = -1;
    }
}

void qf_kv_seq_set_window(qf_kv *kv, int32_t seq, int32_t window, int32_t n_sink) {
    if (!seq_ok(kv, seq)) return;
    kv->seqs[seq].window = window > 0 ? window : 0;
    kv->seqs[seq].n_sink = n_sink > 0 ? n_sink : 0;
}

void qf_kv_seq_get_window(const qf_kv *kv, int32_t seq, int32_t *window, int32_t *n_sink) {
    *window = kv->seqs[seq].window;
    *n_sink = kv->seqs[seq].n_sink;
}

/* ---- access ---- */

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

size_t qf_kv_row_bytes_k(const qf_kv *kv) { return kv->k_row; }
size_t qf_kv_row_bytes_v(const qf_kv *kv) { return kv->v_row; }

void qf_kv_get_stats(const qf_kv *kv, qf_kv_stats *out) {
    out->total = kv->p.n_blocks;
    out->free = kv->n_free;
    out->cached = kv->n_cached;
    out->used = kv->p.n_blocks - kv->n_free - kv->n_cached;
    out->evictions = kv->evictions;
    out->cow_copies = kv->cow_copies;
    out->prefix_hits_blocks = kv->prefix_hits;
}
