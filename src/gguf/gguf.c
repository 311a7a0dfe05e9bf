/* gguf.c - GGUF v2/v3 reader (mmap, zero-copy) and the ggml type table.
 *
 * Algorithm: map the file read-only (or take the caller's buffer) and walk
 * the header once with a bounds-checked cursor: magic, version, the two
 * counts, every key/value, every tensor info; then place the data section at
 * the next multiple of the alignment and check each tensor against it.
 * Nothing read from the file is trusted: every length and count is compared
 * with the bytes left before it is used, so a count of 2^60 fails at once
 * instead of driving an allocation; every size product is overflow-checked.
 * The kv and tensor tables grow by doubling as entries are actually parsed,
 * so memory follows the header that exists, not the counts it claims.
 *
 * Invariants after a successful open (what makes every accessor safe):
 * - each kv's encoded value lies inside the buffer and was validated: value
 *   type ids known, bools 0/1, nested arrays at most MAX_NEST deep;
 * - each string array has an offsets table (element i -> its u64 length
 *   prefix), so qf_gguf_arr_str is O(1);
 * - each tensor has a known ggml type, n_dims <= 4, ne >= 0 with a product
 *   that fits int64, ne[0] a multiple of the block size, an offset that is a
 *   multiple of the alignment, and data inside the buffer;
 * - keys and tensor names are unique and hash-indexed.
 * The reader is immutable afterwards, so threads may share it.
 */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "gguf/gguf_int.h"

#define MAX_NEST 8 /* array nesting levels accepted (an array of arrays is 2) */

/* ---- ggml type table ---- */

typedef struct type_row {
    int64_t blck;   /* elements per block; 0 marks an unused id */
    size_t size;    /* bytes per block */
    const char *name;
} type_row;

/* Block geometry of every ggml type id that can appear in a GGUF file
 * (ids 4, 5 and 31..33, 36..38 were removed from ggml or never stored). */
static const type_row k_types[] = {
    [0] = {1, 4, "f32"},        [1] = {1, 2, "f16"},        [2] = {32, 18, "q4_0"},
    [3] = {32, 20, "q4_1"},     [6] = {32, 22, "q5_0"},     [7] = {32, 24, "q5_1"},
    [8] = {32, 34, "q8_0"},     [9] = {32, 36, "q8_1"},     [10] = {256, 84, "q2_K"},
    [11] = {256, 110, "q3_K"},  [12] = {256, 144, "q4_K"},  [13] = {256, 176, "q5_K"},
    [14] = {256, 210, "q6_K"},  [15] = {256, 292, "q8_K"},  [16] = {256, 66, "iq2_xxs"},
    [17] = {256, 74, "iq2_xs"}, [18] = {256, 98, "iq3_xxs"}, [19] = {256, 50, "iq1_s"},
    [20] = {32, 18, "iq4_nl"},  [21] = {256, 110, "iq3_s"}, [22] = {256, 82, "iq2_s"},
    [23] = {256, 136, "iq4_xs"}, [24] = {1, 1, "i8"},       [25] = {1, 2, "i16"},
    [26] = {1, 4, "i32"},       [27] = {1, 8, "i64"},       [28] = {1, 8, "f64"},
    [29] = {256, 56, "iq1_m"},  [30] = {1, 2, "bf16"},      [34] = {256, 54, "tq1_0"},
    [35] = {256, 66, "tq2_0"},  [39] = {32, 17, "mxfp4"},   [40] = {64, 36, "nvfp4"},
    [41] = {128, 18, "q1_0"},
};

bool qf_gguf_type_info(uint32_t ggml_type, int64_t *blck_size, size_t *type_size,
                       const char **name) {
    if (ggml_type >= sizeof k_types / sizeof k_types[0] || k_types[ggml_type].blck == 0)
        return false;
    const type_row *r = &k_types[ggml_type];
    if (blck_size) *blck_size = r->blck;
    if (type_size) *type_size = r->size;
    if (name) *name = r->name;
    return true;
}

/* ---- value types and the name index (shared with the writer) ---- */

size_t qf_gguf_vtype_size(uint32_t type) {
    switch (type) {
    case QF_GGUF_UINT8:
    case QF_GGUF_INT8:
    case QF_GGUF_BOOL: return 1;
    case QF_GGUF_UINT16:
    case QF_GGUF_INT16: return 2;
    case QF_GGUF_UINT32:
    case QF_GGUF_INT32:
    case QF_GGUF_FLOAT32: return 4;
    case QF_GGUF_UINT64:
    case QF_GGUF_INT64:
    case QF_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *qf_gguf_vtype_name(uint32_t type) {
    static const char *names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return type < QF_GGUF_VTYPE_COUNT ? names[type] : "invalid";
}

uint64_t qf_gguf_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: keys are short, quality is ample */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

int64_t qf_gguf_index_find(const qf_gguf_index *ix, const char *name, uint64_t hash,
                           qf_gguf_name_fn name_of, const void *ctx) {
    if (ix->cap == 0) return -1;
    uint64_t mask = ix->cap - 1;
    for (uint64_t i = hash & mask;; i = (i + 1) & mask) {
        const qf_gguf_slot *s = &ix->slots[i];
        if (s->idx < 0) return -1; /* load <= 1/2, so an empty slot always ends the probe */
        if (s->hash == hash && strcmp(name_of(ctx, s->idx), name) == 0) return s->idx;
    }
}

static void slot_put(qf_gguf_slot *slots, uint64_t cap, uint64_t hash, int64_t idx) {
    uint64_t mask = cap - 1;
    uint64_t i = hash & mask;
    while (slots[i].idx >= 0) i = (i + 1) & mask;
    slots[i].hash = hash;
    slots[i].idx = idx;
}

qf_status qf_gguf_index_add(qf_gguf_index *ix, uint64_t hash, int64_t idx) {
    if ((ix->n + 1) * 2 > ix->cap) {
        uint64_t cap = ix->cap ? ix->cap * 2 : 16;
        if (cap > SIZE_MAX / sizeof(qf_gguf_slot)) return QF_ERR_NOMEM;
        qf_gguf_slot *slots = qf_malloc((size_t)cap * sizeof *slots);
        if (!slots) return QF_ERR_NOMEM;
        for (uint64_t i = 0; i < cap; i++) slots[i].idx = -1;
        for (uint64_t i = 0; i < ix->cap; i++)
            if (ix->slots[i].idx >= 0) slot_put(slots, cap, ix->slots[i].hash, ix->slots[i].idx);
        qf_free(ix->slots);
        ix->slots = slots;
        ix->cap = cap;
    }
    slot_put(ix->slots, ix->cap, hash, idx);
    ix->n++;
    return QF_OK;
}

void qf_gguf_index_free(qf_gguf_index *ix) {
    qf_free(ix->slots);
    ix->slots = NULL;
    ix->cap = ix->n = 0;
}

/* ---- reader state ---- */

typedef struct kv_ent {
    char *key;               /* NUL-terminated copy */
    qf_gguf_vtype type;
    const uint8_t *val;      /* encoded value inside the buffer */
    size_t len;              /* its byte length */
    /* arrays only: */
    qf_gguf_vtype arr_type;
    uint64_t arr_n;
    const uint8_t *arr_data; /* first element */
    uint64_t *str_off;       /* string arrays: element i's length prefix at arr_data + str_off[i] */
} kv_ent;

typedef struct tensor_ent {
    qf_gguf_tensor t; /* t.name points at name below once the table stops moving */
    char name[QF_GGUF_MAX_NAME];
} tensor_ent;

struct qf_gguf {
    char *name;          /* path or caller's name, for messages */
    const uint8_t *buf;
    size_t size;
    void *map;           /* mmap'd region (NULL for open_mem or an empty file) */
    uint32_t version;
    uint32_t alignment;
    size_t data_offset;
    kv_ent *kv;
    int64_t n_kv, cap_kv;
    tensor_ent *tensors;
    int64_t n_tensors, cap_tensors;
    qf_gguf_index kv_ix, t_ix;
};

static const char *kv_name_of(const void *ctx, int64_t i) {
    return ((const qf_gguf *)ctx)->kv[i].key;
}

static const char *tensor_name_of(const void *ctx, int64_t i) {
    return ((const qf_gguf *)ctx)->tensors[i].name;
}

/* ---- bounds-checked cursor ---- */

typedef struct cur {
    const uint8_t *b;
    size_t size;
    size_t pos; /* invariant: pos <= size */
} cur;

static size_t left(const cur *c) { return c->size - c->pos; }

static qf_status need(const cur *c, size_t n, const char *what, qf_err *err) {
    if (left(c) >= n) return QF_OK;
    return QF_ERR_SET(err, QF_ERR_FORMAT, "truncated: %s needs %zu bytes at offset %zu, %zu left",
                      what, n, c->pos, left(c));
}

static qf_status get_u32(cur *c, uint32_t *v, const char *what, qf_err *err) {
    qf_status st = need(c, 4, what, err);
    if (st) return st;
    *v = qf_gguf_rd32(c->b + c->pos);
    c->pos += 4;
    return QF_OK;
}

static qf_status get_u64(cur *c, uint64_t *v, const char *what, qf_err *err) {
    qf_status st = need(c, 8, what, err);
    if (st) return st;
    *v = qf_gguf_rd64(c->b + c->pos);
    c->pos += 8;
    return QF_OK;
}

/* A GGUF string: u64 length + bytes. *s points at the bytes. */
static qf_status get_str(cur *c, const uint8_t **s, uint64_t *len, const char *what,
                         qf_err *err) {
    size_t at = c->pos;
    qf_status st = get_u64(c, len, what, err);
    if (st) return st;
    if (*len > left(c)) {
        c->pos = at;
        return QF_ERR_SET(err, QF_ERR_FORMAT,
                          "%s: length %" PRIu64 " at offset %zu exceeds the %zu bytes left", what,
                          *len, at, left(c) - 8);
    }
    *s = c->b + c->pos;
    c->pos += (size_t)*len;
    return QF_OK;
}

/* ---- value validation ---- */

static qf_status skip_value(cur *c, uint32_t type, int depth, qf_err *err);

/* n elements of type et starting at the cursor; depth = nesting level of the
 * array that holds them (1 for a top-level array). */
static qf_status skip_elems(cur *c, uint32_t et, uint64_t n, int depth, qf_err *err) {
    size_t at = c->pos;
    if (et >= QF_GGUF_VTYPE_COUNT)
        return QF_ERR_SET(err, QF_ERR_FORMAT, "array element type %" PRIu32 " invalid at offset %zu",
                          et, at);
    size_t es = qf_gguf_vtype_size(et);
    if (es) {
        if (n > left(c) / es)
            return QF_ERR_SET(err, QF_ERR_FORMAT,
                              "truncated: array of %" PRIu64 " %s at offset %zu needs more than "
                              "the %zu bytes left",
                              n, qf_gguf_vtype_name(et), at, left(c));
        if (et == QF_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (c->b[at + i] > 1)
                    return QF_ERR_SET(err, QF_ERR_FORMAT,
                                      "bool array element %" PRIu64 " is %u (not 0/1) at offset %zu",
                                      i, c->b[at + i], at + (size_t)i);
        }
        c->pos += (size_t)n * es;
        return QF_OK;
    }
    /* variable-size elements: each takes at least its length/header bytes,
     * so the count is bounded by the bytes left and the loop is linear */
    size_t min = et == QF_GGUF_STRING ? 8 : 12;
    if (n > left(c) / min)
        return QF_ERR_SET(err, QF_ERR_FORMAT,
                          "truncated: array of %" PRIu64 " %s at offset %zu cannot fit in the %zu "
                          "bytes left",
                          n, qf_gguf_vtype_name(et), at, left(c));
    for (uint64_t i = 0; i < n; i++) {
        qf_status st = skip_value(c, et, depth, err);
        if (st) {
            qf_err_prefix(err, "array element %" PRIu64, i);
            return st;
        }
    }
    return QF_OK;
}

/* One value of the given type; depth = number of arrays around it. */
static qf_status skip_value(cur *c, uint32_t type, int depth, qf_err *err) {
    size_t at = c->pos;
    if (type >= QF_GGUF_VTYPE_COUNT)
        return QF_ERR_SET(err, QF_ERR_FORMAT, "value type %" PRIu32 " invalid at offset %zu", type,
                          at);
    size_t es = qf_gguf_vtype_size(type);
    if (es) {
        qf_status st = need(c, es, qf_gguf_vtype_name(type), err);
        if (st) return st;
        if (type == QF_GGUF_BOOL && c->b[at] > 1)
            return QF_ERR_SET(err, QF_ERR_FORMAT, "bool value %u (not 0/1) at offset %zu", c->b[at],
                              at);
        c->pos += es;
        return QF_OK;
    }
    if (type == QF_GGUF_STRING) {
        const uint8_t *s;
        uint64_t len;
        return get_str(c, &s, &len, "string", err);
    }
    if (depth >= MAX_NEST)
        return QF_ERR_SET(err, QF_ERR_FORMAT, "arrays nested more than %d deep at offset %zu",
                          MAX_NEST, at);
    uint32_t et;
    uint64_t n;
    qf_status st = get_u32(c, &et, "array element type", err);
    if (!st) st = get_u64(c, &n, "array length", err);
    if (!st) st = skip_elems(c, et, n, depth + 1, err);
    return st;
}

/* ---- open ---- */

static qf_status grow(void **arr, int64_t *cap, int64_t n, uint64_t limit, size_t elem) {
    if (n < *cap) return QF_OK;
    uint64_t nc = *cap ? (uint64_t)*cap * 2 : 16;
    if (nc > limit) nc = limit; /* limit >= n + 1: the count claimed in the header */
    if (nc > SIZE_MAX / elem) return QF_ERR_NOMEM;
    void *p = qf_realloc(*arr, (size_t)nc * elem);
    if (!p) return QF_ERR_NOMEM;
    *arr = p;
    *cap = (int64_t)nc;
    return QF_OK;
}

/* Builds the offsets table of a validated string array. */
static qf_status index_strings(kv_ent *e, qf_err *err) {
    e->str_off = qf_malloc(e->arr_n ? (size_t)e->arr_n * sizeof(uint64_t) : 1);
    if (!e->str_off)
        return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory indexing %" PRIu64 " strings", e->arr_n);
    uint64_t off = 0;
    for (uint64_t i = 0; i < e->arr_n; i++) {
        e->str_off[i] = off;
        off += 8 + qf_gguf_rd64(e->arr_data + off);
    }
    return QF_OK;
}

static qf_status parse_kv(qf_gguf *g, cur *c, uint64_t i, uint64_t n_kv, qf_err *err) {
    const uint8_t *ks;
    uint64_t klen;
    size_t at = c->pos;
    qf_status st = get_str(c, &ks, &klen, "key", err);
    if (st) goto fail;
    if (memchr(ks, 0, (size_t)klen)) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "key at offset %zu contains a NUL byte", at);
        goto fail;
    }
    if (grow((void **)&g->kv, &g->cap_kv, g->n_kv, n_kv, sizeof(kv_ent))) goto nomem;
    kv_ent *e = &g->kv[g->n_kv];
    memset(e, 0, sizeof *e);
    e->key = qf_strndup((const char *)ks, (size_t)klen);
    if (!e->key) goto nomem;
    g->n_kv++;

    uint64_t h = qf_gguf_hash(e->key);
    if (qf_gguf_index_find(&g->kv_ix, e->key, h, kv_name_of, g) >= 0) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "duplicate key at offset %zu", at);
        goto fail_key;
    }

    uint32_t type;
    st = get_u32(c, &type, "value type", err);
    if (st) goto fail_key;
    if (type >= QF_GGUF_VTYPE_COUNT) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "value type %" PRIu32 " invalid at offset %zu", type,
                        c->pos - 4);
        goto fail_key;
    }
    e->type = (qf_gguf_vtype)type;
    e->val = c->b + c->pos;
    if (type == QF_GGUF_ARRAY) {
        uint32_t et;
        st = get_u32(c, &et, "array element type", err);
        if (!st) st = get_u64(c, &e->arr_n, "array length", err);
        if (st) goto fail_key;
        e->arr_type = (qf_gguf_vtype)et;
        e->arr_data = c->b + c->pos;
        st = skip_elems(c, et, e->arr_n, 1, err);
        if (st) goto fail_key;
        if (et == QF_GGUF_STRING && (st = index_strings(e, err))) goto fail_key;
    } else {
        st = skip_value(c, type, 0, err);
        if (st) goto fail_key;
    }
    e->len = (size_t)(c->b + c->pos - e->val);
    if (qf_gguf_index_add(&g->kv_ix, h, g->n_kv - 1)) goto nomem;
    return QF_OK;

nomem:
    st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
fail:
    qf_err_prefix(err, "kv %" PRIu64, i);
    return st;
fail_key:
    qf_err_prefix(err, "kv %" PRIu64 " '%s'", i, g->kv[g->n_kv - 1].key);
    return st;
}

static qf_status parse_tensor(qf_gguf *g, cur *c, uint64_t i, uint64_t n_t, qf_err *err) {
    const uint8_t *ns;
    uint64_t nlen;
    size_t at = c->pos;
    qf_status st = get_str(c, &ns, &nlen, "tensor name", err);
    if (st) goto fail;
    if (nlen >= QF_GGUF_MAX_NAME) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "name at offset %zu is %" PRIu64 " bytes (max %d)", at,
                        nlen, QF_GGUF_MAX_NAME - 1);
        goto fail;
    }
    if (memchr(ns, 0, (size_t)nlen)) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "name at offset %zu contains a NUL byte", at);
        goto fail;
    }
    if (grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors, n_t, sizeof(tensor_ent))) {
        st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    tensor_ent *te = &g->tensors[g->n_tensors];
    memset(te, 0, sizeof *te);
    memcpy(te->name, ns, (size_t)nlen);
    te->name[nlen] = 0;
    qf_gguf_tensor *t = &te->t;

    uint64_t h = qf_gguf_hash(te->name);
    if (qf_gguf_index_find(&g->t_ix, te->name, h, tensor_name_of, g) >= 0) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "duplicate tensor name");
        goto fail_name;
    }
    if ((st = get_u32(c, &t->n_dims, "n_dims", err))) goto fail_name;
    if (t->n_dims > QF_GGUF_MAX_DIMS) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "n_dims %" PRIu32 " > %d", t->n_dims,
                        QF_GGUF_MAX_DIMS);
        goto fail_name;
    }
    int64_t nel = 1;
    for (int d = 0; d < QF_GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if ((uint32_t)d < t->n_dims && (st = get_u64(c, &v, "ne", err))) goto fail_name;
        if (v > INT64_MAX) {
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "ne[%d] = %" PRId64 " is negative", d, (int64_t)v);
            goto fail_name;
        }
        t->ne[d] = (int64_t)v;
        if (t->ne[d] && nel > INT64_MAX / t->ne[d]) {
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "element count overflows (ne[%d] = %" PRId64 ")", d,
                            t->ne[d]);
            goto fail_name;
        }
        nel *= t->ne[d];
    }
    if ((st = get_u32(c, &t->type, "tensor type", err))) goto fail_name;
    if ((st = get_u64(c, &t->offset, "tensor offset", err))) goto fail_name;

    int64_t blck;
    size_t tsize;
    if (!qf_gguf_type_info(t->type, &blck, &tsize, NULL)) {
        st = QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "unknown ggml type id %" PRIu32, t->type);
        goto fail_name;
    }
    if (t->ne[0] % blck) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "ne[0] = %" PRId64 " not a multiple of block size %" PRId64,
                        t->ne[0], blck);
        goto fail_name;
    }
    /* bytes = ne0/blck * tsize * ne1 * ne2 * ne3; nel fits int64 and each
     * factor is nonnegative, but tsize/blck can exceed 1 (f32: 4 bytes) */
    size_t size = (size_t)(t->ne[0] / blck);
    bool ovf = qf_mul_overflow(size, tsize, &size) != 0;
    for (int d = 1; d < QF_GGUF_MAX_DIMS && !ovf; d++)
        ovf = qf_mul_overflow(size, (size_t)t->ne[d], &size) != 0;
    if (ovf) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "byte size overflows");
        goto fail_name;
    }
    t->size = size;
    g->n_tensors++;
    if (qf_gguf_index_add(&g->t_ix, h, g->n_tensors - 1)) {
        st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        goto fail_name;
    }
    return QF_OK;

fail:
    qf_err_prefix(err, "tensor %" PRIu64, i);
    return st;
fail_name:
    qf_err_prefix(err, "tensor %" PRIu64 " '%s'", i, te->name);
    return st;
}

/* Validates the header of g->buf and fills g. Messages lack the file name;
 * the caller adds it. */
static qf_status parse(qf_gguf *g, qf_err *err) {
    cur c = {g->buf, g->size, 0};
    qf_status st;
    if (g->size < 4 || memcmp(g->buf, "GGUF", 4) != 0) {
        if (g->size < 4)
            return QF_ERR_SET(err, QF_ERR_FORMAT, "truncated: %zu bytes, not a GGUF file", g->size);
        return QF_ERR_SET(err, QF_ERR_FORMAT,
                          "not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")",
                          g->buf[0], g->buf[1], g->buf[2], g->buf[3]);
    }
    c.pos = 4;
    if ((st = get_u32(&c, &g->version, "version", err))) return st;
    uint32_t v = g->version;
    uint32_t swapped = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
    if (v == 1)
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "GGUF version 1 is not supported (only 2 and 3)");
    if ((v & 0xffff) == 0 && swapped >= 1 && swapped <= 3)
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED,
                          "big-endian GGUF (version field 0x%08" PRIx32 ") is not supported", v);
    if (v != 2 && v != 3)
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED,
                          "GGUF version %" PRIu32 " is not supported (only 2 and 3)", v);

    uint64_t n_t, n_kv;
    if ((st = get_u64(&c, &n_t, "tensor count", err))) return st;
    if ((st = get_u64(&c, &n_kv, "kv count", err))) return st;
    /* smallest kv: empty key (8) + type (4) + 1-byte value; smallest tensor
     * info: empty name (8) + n_dims (4) + type (4) + offset (8) */
    if (n_kv > left(&c) / 13 || n_t > (left(&c) - n_kv * 13) / 24)
        return QF_ERR_SET(err, QF_ERR_FORMAT,
                          "truncated: %" PRIu64 " kv and %" PRIu64 " tensors cannot fit in the "
                          "%zu bytes after the header",
                          n_kv, n_t, left(&c));

    for (uint64_t i = 0; i < n_kv; i++)
        if ((st = parse_kv(g, &c, i, n_kv, err))) return st;

    g->alignment = QF_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = qf_gguf_find_kv(g, "general.alignment");
    if (ai >= 0) {
        const kv_ent *e = &g->kv[ai];
        if (e->type != QF_GGUF_UINT32)
            return QF_ERR_SET(err, QF_ERR_FORMAT, "general.alignment has type %s, expected u32",
                              qf_gguf_vtype_name(e->type));
        uint32_t a = qf_gguf_rd32(e->val);
        if (a == 0 || (a & (a - 1)) != 0)
            return QF_ERR_SET(err, QF_ERR_FORMAT,
                              "general.alignment %" PRIu32 " is not a nonzero power of two", a);
        g->alignment = a;
    }

    for (uint64_t i = 0; i < n_t; i++)
        if ((st = parse_tensor(g, &c, i, n_t, err))) return st;

    /* the data section starts at the next multiple of the alignment; with no
     * tensors it may lie past the end (vocab-only files are not padded) */
    uint64_t a = g->alignment;
    uint64_t data = ((uint64_t)c.pos + a - 1) / a * a;
    g->data_offset = data < g->size ? (size_t)data : g->size;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        qf_gguf_tensor *t = &g->tensors[i].t;
        t->name = g->tensors[i].name; /* table no longer moves */
        if (t->offset % a)
            return QF_ERR_SET(err, QF_ERR_FORMAT,
                              "tensor %" PRId64 " '%s': offset %" PRIu64
                              " is not a multiple of the alignment %" PRIu64,
                              i, t->name, t->offset, a);
        if (data > g->size || t->offset > g->size - data || t->size > g->size - data - t->offset) {
            uint64_t beg = data + t->offset;
            if (beg < data)
                return QF_ERR_SET(err, QF_ERR_FORMAT,
                                  "tensor %" PRId64 " '%s': data offset %" PRIu64
                                  " past end of file (size %zu)",
                                  i, t->name, t->offset, g->size);
            return QF_ERR_SET(err, QF_ERR_FORMAT,
                              "tensor %" PRId64 " '%s': data [%" PRIu64 "..%" PRIu64
                              ") past end of file (size %zu)",
                              i, t->name, beg, beg + t->size, g->size);
        }
        t->data = g->buf + data + t->offset;
    }
    return QF_OK;
}

static qf_gguf *open_impl(const uint8_t *buf, size_t size, void *map, const char *name,
                          qf_err *err) {
    qf_gguf *g = qf_calloc(1, sizeof *g);
    if (!g) {
        if (map) munmap(map, size);
        QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    g->buf = buf;
    g->size = size;
    g->map = map;
    g->name = qf_strdup(name);
    if (!g->name) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", name);
        qf_gguf_close(g);
        return NULL;
    }
    qf_status st = parse(g, err);
    if (st) {
        qf_err_prefix(err, "%s", name);
        qf_gguf_close(g);
        return NULL;
    }
    return g;
}

qf_gguf *qf_gguf_open(const char *path, qf_err *err) {
    if (!path) {
        QF_ERR_SET(err, QF_ERR_INVALID, "qf_gguf_open: path is NULL");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        QF_ERR_SET(err, QF_ERR_RANGE, "%s: file too large to map", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    static const uint8_t empty[1];
    const uint8_t *buf = empty;
    if (size > 0) { /* mmap of length 0 fails; an empty file still gets a format error */
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            QF_ERR_SET(err, QF_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size,
                       strerror(errno));
            close(fd);
            return NULL;
        }
        buf = map;
    }
    close(fd); /* the mapping keeps the file */
    return open_impl(buf, size, map, path, err);
}

qf_gguf *qf_gguf_open_mem(const void *buf, size_t size, const char *name, qf_err *err) {
    if (!name) name = "<memory>";
    if (!buf && size) {
        QF_ERR_SET(err, QF_ERR_INVALID, "%s: NULL buffer of %zu bytes", name, size);
        return NULL;
    }
    static const uint8_t empty[1];
    return open_impl(buf ? buf : empty, size, NULL, name, err);
}

void qf_gguf_close(qf_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        qf_free(g->kv[i].key);
        qf_free(g->kv[i].str_off);
    }
    qf_free(g->kv);
    qf_free(g->tensors);
    qf_gguf_index_free(&g->kv_ix);
    qf_gguf_index_free(&g->t_ix);
    if (g->map) munmap(g->map, g->size);
    qf_free(g->name);
    qf_free(g);
}

uint32_t qf_gguf_version(const qf_gguf *g) { return g->version; }
uint32_t qf_gguf_alignment(const qf_gguf *g) { return g->alignment; }
size_t qf_gguf_file_size(const qf_gguf *g) { return g->size; }
size_t qf_gguf_data_offset(const qf_gguf *g) { return g->data_offset; }
const char *qf_gguf_path(const qf_gguf *g) { return g->name; }

/* ---- metadata ---- */

int64_t qf_gguf_n_kv(const qf_gguf *g) { return g->n_kv; }

static const kv_ent *kv_at(const qf_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

const char *qf_gguf_kv_key(const qf_gguf *g, int64_t i) {
    const kv_ent *e = kv_at(g, i);
    return e ? e->key : NULL;
}

qf_gguf_vtype qf_gguf_kv_type(const qf_gguf *g, int64_t i) {
    const kv_ent *e = kv_at(g, i);
    return e ? e->type : QF_GGUF_VTYPE_COUNT;
}

int64_t qf_gguf_find_kv(const qf_gguf *g, const char *key) {
    if (!g || !key) return -1;
    return qf_gguf_index_find(&g->kv_ix, key, qf_gguf_hash(key), kv_name_of, g);
}

/* Integer value of a fixed-size integer element at p (types u8..i64). */
static bool int_at(qf_gguf_vtype type, const uint8_t *p, int64_t *out) {
    switch (type) {
    case QF_GGUF_UINT8: *out = p[0]; return true;
    case QF_GGUF_INT8: *out = (int8_t)p[0]; return true;
    case QF_GGUF_UINT16: *out = qf_gguf_rd16(p); return true;
    case QF_GGUF_INT16: *out = (int16_t)qf_gguf_rd16(p); return true;
    case QF_GGUF_UINT32: *out = qf_gguf_rd32(p); return true;
    case QF_GGUF_INT32: *out = (int32_t)qf_gguf_rd32(p); return true;
    case QF_GGUF_INT64: *out = (int64_t)qf_gguf_rd64(p); return true;
    case QF_GGUF_UINT64: {
        uint64_t v = qf_gguf_rd64(p);
        if (v > INT64_MAX) return false;
        *out = (int64_t)v;
        return true;
    }
    default: return false;
    }
}

static bool float_at(qf_gguf_vtype type, const uint8_t *p, double *out) {
    if (type == QF_GGUF_FLOAT32) {
        uint32_t u = qf_gguf_rd32(p);
        float f;
        memcpy(&f, &u, 4);
        *out = f;
        return true;
    }
    if (type == QF_GGUF_FLOAT64) {
        uint64_t u = qf_gguf_rd64(p);
        memcpy(out, &u, 8);
        return true;
    }
    if (type == QF_GGUF_UINT64) { /* beyond int64 but still a number */
        *out = (double)qf_gguf_rd64(p);
        return true;
    }
    int64_t v;
    if (!int_at(type, p, &v)) return false;
    *out = (double)v;
    return true;
}

bool qf_gguf_kv_int(const qf_gguf *g, int64_t i, int64_t *out) {
    const kv_ent *e = kv_at(g, i);
    int64_t v;
    if (!e || !int_at(e->type, e->val, &v)) return false;
    if (out) *out = v;
    return true;
}

bool qf_gguf_kv_float(const qf_gguf *g, int64_t i, double *out) {
    const kv_ent *e = kv_at(g, i);
    double v;
    if (!e || !float_at(e->type, e->val, &v)) return false;
    if (out) *out = v;
    return true;
}

bool qf_gguf_kv_bool(const qf_gguf *g, int64_t i, bool *out) {
    const kv_ent *e = kv_at(g, i);
    if (!e || e->type != QF_GGUF_BOOL) return false;
    if (out) *out = e->val[0] != 0;
    return true;
}

bool qf_gguf_kv_str(const qf_gguf *g, int64_t i, qf_gguf_str *out) {
    const kv_ent *e = kv_at(g, i);
    if (!e || e->type != QF_GGUF_STRING) return false;
    if (out) {
        out->len = qf_gguf_rd64(e->val);
        out->ptr = (const char *)e->val + 8;
    }
    return true;
}

bool qf_gguf_kv_arr(const qf_gguf *g, int64_t i, qf_gguf_arr *out) {
    const kv_ent *e = kv_at(g, i);
    if (!e || e->type != QF_GGUF_ARRAY) return false;
    if (out) {
        out->type = e->arr_type;
        out->n = e->arr_n;
        out->data = e->arr_data;
        out->kv_index = i;
    }
    return true;
}

const uint8_t *qf_gguf_kv_raw(const qf_gguf *g, int64_t i, size_t *len) {
    const kv_ent *e = kv_at(g, i);
    if (len) *len = e ? e->len : 0;
    return e ? e->val : NULL;
}

bool qf_gguf_get_int(const qf_gguf *g, const char *key, int64_t *out) {
    return qf_gguf_kv_int(g, qf_gguf_find_kv(g, key), out);
}
bool qf_gguf_get_float(const qf_gguf *g, const char *key, double *out) {
    return qf_gguf_kv_float(g, qf_gguf_find_kv(g, key), out);
}
bool qf_gguf_get_bool(const qf_gguf *g, const char *key, bool *out) {
    return qf_gguf_kv_bool(g, qf_gguf_find_kv(g, key), out);
}
bool qf_gguf_get_str(const qf_gguf *g, const char *key, qf_gguf_str *out) {
    return qf_gguf_kv_str(g, qf_gguf_find_kv(g, key), out);
}
bool qf_gguf_get_arr(const qf_gguf *g, const char *key, qf_gguf_arr *out) {
    return qf_gguf_kv_arr(g, qf_gguf_find_kv(g, key), out);
}

qf_gguf_str qf_gguf_arr_str(const qf_gguf *g, const qf_gguf_arr *arr, uint64_t i) {
    qf_gguf_str s = {NULL, 0};
    /* re-derive everything from the reader: arr is a caller's struct */
    const kv_ent *e = arr ? kv_at(g, arr->kv_index) : NULL;
    if (!e || e->type != QF_GGUF_ARRAY || e->arr_type != QF_GGUF_STRING || i >= e->arr_n)
        return s;
    const uint8_t *p = e->arr_data + e->str_off[i];
    s.len = qf_gguf_rd64(p);
    s.ptr = (const char *)p + 8;
    return s;
}

int64_t qf_gguf_arr_int(const qf_gguf_arr *arr, uint64_t i) {
    if (!arr || i >= arr->n) return 0;
    size_t es = qf_gguf_vtype_size(arr->type);
    const uint8_t *p = arr->data + i * es;
    if (arr->type == QF_GGUF_BOOL) return p[0];
    if (arr->type == QF_GGUF_UINT64) return (int64_t)qf_gguf_rd64(p); /* wraps above INT64_MAX */
    int64_t v;
    return int_at(arr->type, p, &v) ? v : 0;
}

double qf_gguf_arr_float(const qf_gguf_arr *arr, uint64_t i) {
    if (!arr || i >= arr->n) return 0.0;
    double v;
    return float_at(arr->type, arr->data + i * qf_gguf_vtype_size(arr->type), &v) ? v : 0.0;
}

/* ---- tensors ---- */

int64_t qf_gguf_n_tensors(const qf_gguf *g) { return g->n_tensors; }

const qf_gguf_tensor *qf_gguf_tensor_at(const qf_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i].t : NULL;
}

const qf_gguf_tensor *qf_gguf_find_tensor(const qf_gguf *g, const char *name) {
    if (!g || !name) return NULL;
    int64_t i = qf_gguf_index_find(&g->t_ix, name, qf_gguf_hash(name), tensor_name_of, g);
    return i >= 0 ? &g->tensors[i].t : NULL;
}
