/* gguf_write.c - GGUF v3 writer.
 *
 * The writer keeps key/values as (key, type, encoded value bytes) in insertion
 * order -- the value bytes are exactly what goes into the file, so a value
 * copied from a reader (qf_gguf_kv_raw) is written back verbatim -- and
 * tensors as (name, type, shape, borrowed data) in the order added.
 * qf_gguf_writer_write lays the file out the way gguf-py and llama.cpp do:
 * header, kvs, tensor infos, zero padding to the alignment, then each
 * tensor's bytes followed by zero padding to the alignment (the last one
 * too). Tensor offsets are the running sum of the padded sizes. So rewriting
 * a file those tools made, with all its kvs and tensors, gives the same bytes.
 *
 * The file is written to PATH.tmp, flushed and fsync'ed, then renamed over
 * PATH; on any failure the .tmp is removed and PATH is left untouched.
 */
#include "gguf/gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "gguf/gguf_int.h"

typedef struct wkv {
    char *key;
    qf_gguf_vtype type;
    uint8_t *val; /* encoded value, as in the file */
    size_t len;
} wkv;

typedef struct wtensor {
    char name[QF_GGUF_MAX_NAME];
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[QF_GGUF_MAX_DIMS];
    const void *data; /* borrowed */
    size_t size;
} wtensor;

struct qf_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    qf_gguf_index t_ix; /* tensor name -> index, for duplicate checks */
};

static const char *wt_name_of(const void *ctx, int64_t i) {
    return ((const qf_gguf_writer *)ctx)->t[i].name;
}

qf_gguf_writer *qf_gguf_writer_new(void) { return qf_calloc(1, sizeof(qf_gguf_writer)); }

void qf_gguf_writer_free(qf_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        qf_free(w->kv[i].key);
        qf_free(w->kv[i].val);
    }
    qf_free(w->kv);
    qf_free(w->t);
    qf_gguf_index_free(&w->t_ix);
    qf_free(w);
}

/* ---- key/values ---- */

static int64_t wfind(const qf_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++) /* few keys: a scan is enough */
        if (strcmp(w->kv[i].key, key) == 0) return (int64_t)i;
    return -1;
}

/* Sets key to an encoded value; takes val (freed here on failure). */
static qf_status set_raw(qf_gguf_writer *w, const char *key, qf_gguf_vtype type, uint8_t *val,
                         size_t len) {
    int64_t i = wfind(w, key);
    if (i >= 0) {
        qf_free(w->kv[i].val);
        w->kv[i].type = type;
        w->kv[i].val = val;
        w->kv[i].len = len;
        return QF_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *p = qf_realloc(w->kv, cap * sizeof *p);
        if (!p) goto nomem;
        w->kv = p;
        w->cap_kv = cap;
    }
    char *k = qf_strdup(key);
    if (!k) goto nomem;
    w->kv[w->n_kv++] = (wkv){k, type, val, len};
    return QF_OK;
nomem:
    qf_free(val);
    return QF_ERR_NOMEM;
}

static bool key_ok(const qf_gguf_writer *w, const char *key) { return w && key; }

/* Little-endian encoding of one fixed-size value from host memory. */
static void encode_fixed(uint8_t *dst, qf_gguf_vtype type, const void *src) {
    switch (qf_gguf_vtype_size(type)) {
    case 1: memcpy(dst, src, 1); break;
    case 2: {
        uint16_t v;
        memcpy(&v, src, 2);
        qf_gguf_wr16(dst, v);
        break;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, src, 4);
        qf_gguf_wr32(dst, v);
        break;
    }
    case 8: {
        uint64_t v;
        memcpy(&v, src, 8);
        qf_gguf_wr64(dst, v);
        break;
    }
    }
}

qf_status qf_gguf_writer_set_val(qf_gguf_writer *w, const char *key, qf_gguf_vtype type,
                                 const void *v) {
    size_t es = qf_gguf_vtype_size(type);
    if (!key_ok(w, key) || !v || es == 0) return QF_ERR_INVALID;
    if (type == QF_GGUF_BOOL && *(const uint8_t *)v > 1) return QF_ERR_INVALID;
    uint8_t *val = qf_malloc(es);
    if (!val) return QF_ERR_NOMEM;
    encode_fixed(val, type, v);
    return set_raw(w, key, type, val, es);
}

qf_status qf_gguf_writer_set_u32(qf_gguf_writer *w, const char *key, uint32_t v) {
    return qf_gguf_writer_set_val(w, key, QF_GGUF_UINT32, &v);
}
qf_status qf_gguf_writer_set_i32(qf_gguf_writer *w, const char *key, int32_t v) {
    return qf_gguf_writer_set_val(w, key, QF_GGUF_INT32, &v);
}
qf_status qf_gguf_writer_set_u64(qf_gguf_writer *w, const char *key, uint64_t v) {
    return qf_gguf_writer_set_val(w, key, QF_GGUF_UINT64, &v);
}
qf_status qf_gguf_writer_set_f32(qf_gguf_writer *w, const char *key, float v) {
    return qf_gguf_writer_set_val(w, key, QF_GGUF_FLOAT32, &v);
}
qf_status qf_gguf_writer_set_bool(qf_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return qf_gguf_writer_set_val(w, key, QF_GGUF_BOOL, &b);
}

qf_status qf_gguf_writer_set_str(qf_gguf_writer *w, const char *key, const char *v) {
    if (!key_ok(w, key) || !v) return QF_ERR_INVALID;
    size_t n = strlen(v);
    if (n > SIZE_MAX - 8) return QF_ERR_RANGE;
    uint8_t *val = qf_malloc(8 + n);
    if (!val) return QF_ERR_NOMEM;
    qf_gguf_wr64(val, n);
    memcpy(val + 8, v, n);
    return set_raw(w, key, QF_GGUF_STRING, val, 8 + n);
}

qf_status qf_gguf_writer_set_arr(qf_gguf_writer *w, const char *key, qf_gguf_vtype type,
                                 const void *data, uint64_t n) {
    size_t es = qf_gguf_vtype_size(type);
    if (!key_ok(w, key) || es == 0 || (n && !data)) return QF_ERR_INVALID;
    size_t bytes;
    if (n > SIZE_MAX || qf_mul_overflow((size_t)n, es, &bytes) || bytes > SIZE_MAX - 12)
        return QF_ERR_RANGE;
    const uint8_t *src = data;
    if (type == QF_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (src[i] > 1) return QF_ERR_INVALID;
    uint8_t *val = qf_malloc(12 + bytes);
    if (!val) return QF_ERR_NOMEM;
    qf_gguf_wr32(val, (uint32_t)type);
    qf_gguf_wr64(val + 4, n);
    for (uint64_t i = 0; i < n; i++) encode_fixed(val + 12 + i * es, type, src + i * es);
    return set_raw(w, key, QF_GGUF_ARRAY, val, 12 + bytes);
}

qf_status qf_gguf_writer_set_arr_str(qf_gguf_writer *w, const char *key, const char *const *v,
                                     uint64_t n) {
    if (!key_ok(w, key) || (n && !v)) return QF_ERR_INVALID;
    size_t bytes = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!v[i]) return QF_ERR_INVALID;
        size_t l = strlen(v[i]);
        if (l > SIZE_MAX - 8 - bytes) return QF_ERR_RANGE;
        bytes += 8 + l;
    }
    uint8_t *val = qf_malloc(bytes);
    if (!val) return QF_ERR_NOMEM;
    qf_gguf_wr32(val, QF_GGUF_STRING);
    qf_gguf_wr64(val + 4, n);
    uint8_t *p = val + 12;
    for (uint64_t i = 0; i < n; i++) {
        size_t l = strlen(v[i]);
        qf_gguf_wr64(p, l);
        memcpy(p + 8, v[i], l);
        p += 8 + l;
    }
    return set_raw(w, key, QF_GGUF_ARRAY, val, bytes);
}

qf_status qf_gguf_writer_copy_kv(qf_gguf_writer *w, const qf_gguf *g, int64_t i) {
    const char *key = qf_gguf_kv_key(g, i);
    if (!key_ok(w, key)) return QF_ERR_INVALID;
    size_t len;
    const uint8_t *raw = qf_gguf_kv_raw(g, i, &len);
    uint8_t *val = qf_malloc(len);
    if (!val) return QF_ERR_NOMEM;
    memcpy(val, raw, len);
    return set_raw(w, key, qf_gguf_kv_type(g, i), val, len);
}

qf_status qf_gguf_writer_remove(qf_gguf_writer *w, const char *key) {
    if (!key_ok(w, key)) return QF_ERR_INVALID;
    int64_t i = wfind(w, key);
    if (i < 0) return QF_ERR_NOT_FOUND;
    qf_free(w->kv[i].key);
    qf_free(w->kv[i].val);
    memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - (size_t)i - 1) * sizeof *w->kv);
    w->n_kv--;
    return QF_OK;
}

/* ---- tensors ---- */

qf_status qf_gguf_writer_add_tensor(qf_gguf_writer *w, const char *name, uint32_t ggml_type,
                                    uint32_t n_dims, const int64_t *ne, const void *data,
                                    qf_err *err) {
    if (!w || !name || (n_dims && !ne))
        return QF_ERR_SET(err, QF_ERR_INVALID, "qf_gguf_writer_add_tensor: NULL argument");
    size_t nlen = strlen(name);
    if (nlen >= QF_GGUF_MAX_NAME)
        return QF_ERR_SET(err, QF_ERR_INVALID, "tensor '%s': name is %zu bytes (max %d)", name,
                          nlen, QF_GGUF_MAX_NAME - 1);
    int64_t blck;
    size_t tsize;
    if (!qf_gguf_type_info(ggml_type, &blck, &tsize, NULL))
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "tensor '%s': unknown ggml type id %" PRIu32,
                          name, ggml_type);
    if (n_dims > QF_GGUF_MAX_DIMS)
        return QF_ERR_SET(err, QF_ERR_INVALID, "tensor '%s': n_dims %" PRIu32 " > %d", name,
                          n_dims, QF_GGUF_MAX_DIMS);
    uint64_t h = qf_gguf_hash(name);
    if (qf_gguf_index_find(&w->t_ix, name, h, wt_name_of, w) >= 0)
        return QF_ERR_SET(err, QF_ERR_INVALID, "tensor '%s': duplicate name", name);

    wtensor t = {.type = ggml_type, .n_dims = n_dims, .data = data};
    memcpy(t.name, name, nlen + 1);
    int64_t nel = 1;
    for (uint32_t d = 0; d < QF_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 0)
            return QF_ERR_SET(err, QF_ERR_INVALID, "tensor '%s': ne[%" PRIu32 "] = %" PRId64 " < 0",
                              name, d, t.ne[d]);
        if (t.ne[d] && nel > INT64_MAX / t.ne[d])
            return QF_ERR_SET(err, QF_ERR_RANGE, "tensor '%s': element count overflows", name);
        nel *= t.ne[d];
    }
    if (t.ne[0] % blck)
        return QF_ERR_SET(err, QF_ERR_INVALID,
                          "tensor '%s': ne[0] = %" PRId64 " not a multiple of block size %" PRId64,
                          name, t.ne[0], blck);
    size_t size = (size_t)(t.ne[0] / blck);
    bool ovf = qf_mul_overflow(size, tsize, &size) != 0;
    for (int d = 1; d < QF_GGUF_MAX_DIMS && !ovf; d++)
        ovf = qf_mul_overflow(size, (size_t)t.ne[d], &size) != 0;
    if (ovf) return QF_ERR_SET(err, QF_ERR_RANGE, "tensor '%s': byte size overflows", name);
    if (size && !data) return QF_ERR_SET(err, QF_ERR_INVALID, "tensor '%s': data is NULL", name);
    t.size = size;

    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *p = qf_realloc(w->t, cap * sizeof *p);
        if (!p) return QF_ERR_SET(err, QF_ERR_NOMEM, "tensor '%s': out of memory", name);
        w->t = p;
        w->cap_t = cap;
    }
    w->t[w->n_t] = t;
    if (qf_gguf_index_add(&w->t_ix, h, (int64_t)w->n_t))
        return QF_ERR_SET(err, QF_ERR_NOMEM, "tensor '%s': out of memory", name);
    w->n_t++;
    return QF_OK;
}

/* ---- writing ---- */

typedef struct out {
    FILE *f;
    int err_no; /* first failure, 0 while all is well */
} out;

static void put(out *o, const void *p, size_t n) {
    if (o->err_no || n == 0) return;
    if (fwrite(p, 1, n, o->f) != n) o->err_no = errno ? errno : EIO;
}

static void put32(out *o, uint32_t v) {
    uint8_t b[4];
    qf_gguf_wr32(b, v);
    put(o, b, 4);
}

static void put64(out *o, uint64_t v) {
    uint8_t b[8];
    qf_gguf_wr64(b, v);
    put(o, b, 8);
}

static void put_str(out *o, const char *s) {
    size_t n = strlen(s);
    put64(o, n);
    put(o, s, n);
}

static void put_zeros(out *o, size_t n) {
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        put(o, zeros, k);
        n -= k;
    }
}

static size_t pad_to(uint64_t pos, uint32_t align) { return (size_t)((align - pos % align) % align); }

qf_status qf_gguf_writer_write(qf_gguf_writer *w, const char *path, qf_err *err) {
    if (!w || !path) return QF_ERR_SET(err, QF_ERR_INVALID, "qf_gguf_writer_write: NULL argument");
    uint32_t align = QF_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = wfind(w, "general.alignment");
    if (ai >= 0) {
        const wkv *e = &w->kv[ai];
        uint32_t a = e->type == QF_GGUF_UINT32 ? qf_gguf_rd32(e->val) : 0;
        if (a == 0 || (a & (a - 1)))
            return QF_ERR_SET(err, QF_ERR_INVALID,
                              "%s: general.alignment must be a u32 power of two", path);
        align = a;
    }
    /* offsets: running sum of padded sizes, checked so the u64 fields hold */
    uint64_t *offs = qf_malloc((w->n_t ? w->n_t : 1) * sizeof *offs);
    if (!offs) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        offs[i] = off;
        uint64_t padded = (uint64_t)w->t[i].size + pad_to(w->t[i].size, align);
        if (padded < w->t[i].size || off > UINT64_MAX - padded) {
            qf_free(offs);
            return QF_ERR_SET(err, QF_ERR_RANGE, "%s: tensor data exceeds 2^64 bytes", path);
        }
        off += padded;
    }

    qf_status st = QF_OK;
    size_t plen = strlen(path);
    char *tmp = qf_malloc(plen + 5);
    if (!tmp) {
        qf_free(offs);
        return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    out o = {fopen(tmp, "wb"), 0};
    if (!o.f) {
        st = QF_ERR_SET(err, QF_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    uint64_t pos = 0;
    put(&o, "GGUF", 4);
    put32(&o, 3);
    put64(&o, w->n_t);
    put64(&o, w->n_kv);
    pos += 24;
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *e = &w->kv[i];
        put_str(&o, e->key);
        put32(&o, (uint32_t)e->type);
        put(&o, e->val, e->len);
        pos += 8 + strlen(e->key) + 4 + e->len;
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&o, t->name);
        put32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put64(&o, (uint64_t)t->ne[d]);
        put32(&o, t->type);
        put64(&o, offs[i]);
        pos += 8 + strlen(t->name) + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    put_zeros(&o, pad_to(pos, align));
    for (size_t i = 0; i < w->n_t; i++) {
        put(&o, w->t[i].data, w->t[i].size);
        put_zeros(&o, pad_to(w->t[i].size, align));
    }
    if (!o.err_no && fflush(o.f) != 0) o.err_no = errno;
    if (!o.err_no && fsync(fileno(o.f)) != 0) o.err_no = errno;
    if (fclose(o.f) != 0 && !o.err_no) o.err_no = errno;
    o.f = NULL;
    if (o.err_no) {
        st = QF_ERR_SET(err, QF_ERR_IO, "%s: writing %s: %s", path, tmp, strerror(o.err_no));
        goto done;
    }
    if (rename(tmp, path) != 0)
        st = QF_ERR_SET(err, QF_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp,
                        strerror(errno));
done:
    if (st) unlink(tmp);
    qf_free(tmp);
    qf_free(offs);
    return st;
}
