/* kv.h - paged key/value cache with prefix sharing.
 *
 * One pool of fixed-size blocks (block_size token positions each) is
 * allocated up front. A sequence owns a block table: position p of sequence
 * s lives in block table[p / block_size], slot p % block_size. Per layer:
 *   K(layer, block) : (block_size, kv_dim)   rows of type f32, f16 or q8_0
 *   V(layer, block) : (block_size, kv_dim_v)
 *
 * Prefix sharing: a full block whose keys/values are final can be
 * registered under the hash chain of the tokens it holds (hash of the
 * previous block's hash and this block's token ids). A new sequence
 * attaches the longest chain of registered blocks matching its prompt and
 * computes only the rest. Blocks are reference-counted; a block referenced
 * by several sequences is copied before one of them writes into it (copy on
 * write, for the partly filled last block of a prompt shared by n
 * completions). A registered block nobody references stays cached and is
 * evicted least-recently-used only when the pool needs room.
 *
 * Ownership: the cache owns its memory; pointers returned by the accessors
 * are borrowed until qf_kv_free. Thread-safety: the forward pass reads and
 * writes disjoint rows from several threads; every other call is
 * single-threaded (the engine's scheduler thread).
 */
#ifndef QF_KV_H
#define QF_KV_H

#include <stdbool.h>
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
    qf_type type;       /* QF_TYPE_F32, QF_TYPE_F16 or QF_TYPE_Q8_0 (dims multiple of 32) */
} qf_kv_params;

typedef struct qf_kv qf_kv;

/* Bytes the pool of p will take (without the small tables). */
size_t qf_kv_pool_bytes(const qf_kv_params *p);

qf_kv *qf_kv_new(const qf_kv_params *p, qf_err *err);
void qf_kv_free(qf_kv *kv); /* NULL is a no-op */
const qf_kv_params *qf_kv_get_params(const qf_kv *kv);

/* Make positions [pos0, pos1) of seq writable: allocate blocks up to pos1,
 * and give seq its own copy of any shared block in the range (a registered
 * block written by its only owner is unregistered). QF_ERR_RANGE when the
 * pool (free + evictable cached blocks) is too small; nothing changes then. */
qf_status qf_kv_seq_prepare(qf_kv *kv, int32_t seq, int32_t pos0, int32_t pos1, qf_err *err);
/* Same as prepare(seq, capacity, n_pos): room without touching shared blocks. */
qf_status qf_kv_seq_reserve(qf_kv *kv, int32_t seq, int32_t n_pos, qf_err *err);
/* Drop every position >= n_pos of seq; blocks no longer referenced return
 * to the pool (registered ones stay cached). n_pos = 0 clears the sequence. */
void qf_kv_seq_truncate(qf_kv *kv, int32_t seq, int32_t n_pos);
/* Positions covered by seq's block table (a multiple of block_size). */
int32_t qf_kv_seq_capacity(const qf_kv *kv, int32_t seq);

/* Attach the longest registered prefix of tokens[0..n) to seq, which must
 * be empty or hold only attached/registered blocks (then matching goes on
 * after them: a prefix another sequence has just computed can be picked up
 * later). Returns the positions now covered from 0 (a multiple of
 * block_size, at most max_pos). */
int32_t qf_kv_seq_attach_prefix(qf_kv *kv, int32_t seq, const int32_t *tokens, int32_t n, int32_t max_pos);
/* Register every full block of seq covering tokens[0..n) whose contents
 * are final (all its positions computed). Safe to call repeatedly. */
void qf_kv_seq_register(qf_kv *kv, int32_t seq, const int32_t *tokens, int32_t n);
/* dst (empty) shares all of src's blocks (reference counts up). */
qf_status qf_kv_seq_fork(qf_kv *kv, int32_t src, int32_t dst, qf_err *err);

/* Release the blocks of seq that lie wholly inside [pos0, pos1) (sliding
 * window: they will never be read again); their table entries become -1. */
void qf_kv_seq_drop_range(qf_kv *kv, int32_t seq, int32_t pos0, int32_t pos1);

/* Attention window of seq: 0 = attend to all positions; otherwise each
 * token attends to the first n_sink positions and the last `window`. */
void qf_kv_seq_set_window(qf_kv *kv, int32_t seq, int32_t window, int32_t n_sink);
void qf_kv_seq_get_window(const qf_kv *kv, int32_t seq, int32_t *window, int32_t *n_sink);

/* Block table of seq: n entries (borrowed; changes on prepare/truncate). */
const int32_t *qf_kv_seq_table(const qf_kv *kv, int32_t seq, int32_t *n /* out */);
/* K or V rows of one block of one layer: (block_size, kv_dim[_v]) rows of
 * qf_type_row_size(type, dim) bytes each. */
void *qf_kv_block_k(const qf_kv *kv, int32_t layer, int32_t block);
void *qf_kv_block_v(const qf_kv *kv, int32_t layer, int32_t block);
size_t qf_kv_row_bytes_k(const qf_kv *kv);
size_t qf_kv_row_bytes_v(const qf_kv *kv);

typedef struct qf_kv_stats {
    int64_t total, free, cached, used; /* blocks: used = referenced by a sequence */
    uint64_t evictions, cow_copies, prefix_hits_blocks;
} qf_kv_stats;
void qf_kv_get_stats(const qf_kv *kv, qf_kv_stats *out /* out */);
/* Blocks available to new allocations: free + cached (evictable). */
int64_t qf_kv_free_blocks(const qf_kv *kv);

#endif
