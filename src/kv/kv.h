/* kv.h - paged key/value cache.
 *
 * One pool of fixed-size blocks (block_size token positions each) is
 * allocated up front. A sequence owns a block table: position p of sequence
 * s lives in block table[p / block_size], slot p % block_size. Each block
 * holds, for every layer, the K rows and the V rows of its positions:
 *   K(layer, block) : (block_size, kv_dim)   element type f32 or f16
 *   V(layer, block) : (block_size, kv_dim_v)
 * Blocks are only appended to a sequence's table as it grows and all go
 * back to the free list when it is cleared, so a sequence never sees another
 * sequence's data.
 *
 * Ownership: the cache owns its memory; pointers returned by the accessors
 * are borrowed until qf_kv_free. Thread-safety: the model's forward pass
 * reads and writes disjoint rows from several threads; the table operations
 * (reserve, clear) are single-threaded.
 */
#ifndef QF_KV_H
#define QF_KV_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "quant/quant.h"

typedef struct qf_kv_params {
    int32_t n_layer;
    int32_t kv_dim;     /* n_head_kv * head_dim (keys) */
    int32_t kv_dim_v;   /* n_head_kv * head_dim_v (values) */
    int32_t block_size; /* token positions per block (e.g. 16) */
    int64_t n_blocks;   /* blocks in the pool */
    int32_t n_seq_max;  /* sequence ids are 0 .. n_seq_max-1 */
    qf_type type;       /* QF_TYPE_F32 or QF_TYPE_F16 */
} qf_kv_params;

typedef struct qf_kv qf_kv;

/* Bytes the pool of p will take (without the small tables). */
size_t qf_kv_pool_bytes(const qf_kv_params *p);

qf_kv *qf_kv_new(const qf_kv_params *p, qf_err *err);
void qf_kv_free(qf_kv *kv); /* NULL is a no-op */
const qf_kv_params *qf_kv_get_params(const qf_kv *kv);

/* Make room for positions [0, n_pos) of seq (allocates blocks as needed).
 * QF_ERR_RANGE when the pool has too few free blocks (nothing changes). */
qf_status qf_kv_seq_reserve(qf_kv *kv, int32_t seq, int32_t n_pos, qf_err *err);
/* Drop every position >= n_pos of seq; blocks no longer needed are freed.
 * n_pos = 0 clears the sequence. */
void qf_kv_seq_truncate(qf_kv *kv, int32_t seq, int32_t n_pos);
/* Positions reserved for seq (a multiple of block_size, or 0). */
int32_t qf_kv_seq_capacity(const qf_kv *kv, int32_t seq);
int64_t qf_kv_free_blocks(const qf_kv *kv);

/* Block table of seq: n entries (borrowed; changes on reserve/truncate). */
const int32_t *qf_kv_seq_table(const qf_kv *kv, int32_t seq, int32_t *n /* out */);
/* K or V rows of one block of one layer: (block_size, kv_dim[_v]). */
void *qf_kv_block_k(const qf_kv *kv, int32_t layer, int32_t block);
void *qf_kv_block_v(const qf_kv *kv, int32_t layer, int32_t block);

#endif
