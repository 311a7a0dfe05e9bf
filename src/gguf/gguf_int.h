/* gguf_int.h - helpers shared by the GGUF reader (gguf.c) and writer
 * (gguf_write.c). Not part of the public contract.
 *
 * - little-endian load/store of fixed-size fields (GGUF is little-endian;
 *   byte-wise access also makes unaligned fields safe);
 * - the byte size of fixed-size metadata value types;
 * - a name -> index hash table (open addressing, linear probing) whose keys
 *   live in the caller's storage: the table keeps (hash, index) pairs and asks
 *   the caller for the name of an index when it has to compare.
 */
#ifndef QF_GGUF_INT_H
#define QF_GGUF_INT_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

static inline uint16_t qf_gguf_rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t qf_gguf_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t qf_gguf_rd64(const uint8_t *p) {
    return (uint64_t)qf_gguf_rd32(p) | (uint64_t)qf_gguf_rd32(p + 4) << 32;
}

static inline void qf_gguf_wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void qf_gguf_wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void qf_gguf_wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Bytes of one value of a fixed-size type; 0 for STRING, ARRAY and ids
 * outside the enum. */
size_t qf_gguf_vtype_size(uint32_t type);

/* Short lower-case name of a value type ("u32", "string", ...), "invalid"
 * for unknown ids. */
const char *qf_gguf_vtype_name(uint32_t type);

/* ---- name index ---- */

typedef const char *(*qf_gguf_name_fn)(const void *ctx, int64_t i);

typedef struct qf_gguf_slot {
    uint64_t hash;
    int64_t idx; /* -1: empty */
} qf_gguf_slot;

typedef struct qf_gguf_index {
    qf_gguf_slot *slots; /* cap entries, cap a power of two (0 when empty) */
    uint64_t cap;
    uint64_t n;
} qf_gguf_index;

uint64_t qf_gguf_hash(const char *s);
/* Index stored for name (hash == qf_gguf_hash(name)), or -1. */
int64_t qf_gguf_index_find(const qf_gguf_index *ix, const char *name, uint64_t hash,
                           qf_gguf_name_fn name_of, const void *ctx);
/* Insert (hash, idx); the caller has checked that the name is absent.
 * Grows the table at half load. Returns QF_OK or QF_ERR_NOMEM (table
 * unchanged). */
qf_status qf_gguf_index_add(qf_gguf_index *ix, uint64_t hash, int64_t idx);
void qf_gguf_index_free(qf_gguf_index *ix);

#endif
