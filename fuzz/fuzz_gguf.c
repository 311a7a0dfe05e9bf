/* fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Each input is opened with qf_gguf_open_mem (libFuzzer hands us an exact-size
 * heap buffer, so ASan sees any read past its end). A rejected input must
 * come back with a negative code and a message that starts with the name; an
 * accepted one is walked through every accessor, touching every byte view the
 * reader returns (first and last byte of each string, array element and
 * tensor), and every name must find its own entry again. Violations abort.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

static volatile uint64_t g_sink;

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_gguf: invariant violated: %s\n", what);
        abort();
    }
}

static void touch(const void *p, uint64_t n) {
    if (!n) return;
    const uint8_t *b = p;
    g_sink += b[0] + b[n - 1];
}

static void walk(const qf_gguf *g) {
    int64_t n_kv = qf_gguf_n_kv(g);
    for (int64_t i = 0; i < n_kv; i++) {
        const char *key = qf_gguf_kv_key(g, i);
        check(key != NULL, "key");
        check(qf_gguf_find_kv(g, key) == i, "find_kv(key) == i");
        qf_gguf_vtype type = qf_gguf_kv_type(g, i);
        check(type < QF_GGUF_VTYPE_COUNT, "kv type");
        size_t len;
        const uint8_t *raw = qf_gguf_kv_raw(g, i, &len);
        check(raw && len > 0, "raw");
        touch(raw, len);
        int64_t iv;
        double dv;
        bool bv;
        qf_gguf_str s;
        qf_gguf_arr a;
        if (qf_gguf_kv_int(g, i, &iv)) g_sink += (uint64_t)iv;
        if (qf_gguf_kv_float(g, i, &dv)) g_sink += dv != dv;
        if (qf_gguf_kv_bool(g, i, &bv)) g_sink += bv;
        if (qf_gguf_kv_str(g, i, &s)) {
            check(type == QF_GGUF_STRING && s.len + 8 == len, "string view");
            touch(s.ptr, s.len);
        }
        /* the by-name getters agree with the by-index ones */
        check(qf_gguf_get_int(g, key, &iv) == qf_gguf_kv_int(g, i, NULL), "get_int");
        check(qf_gguf_get_str(g, key, &s) == (type == QF_GGUF_STRING), "get_str");
        if (qf_gguf_kv_arr(g, i, &a)) {
            check(type == QF_GGUF_ARRAY, "array type");
            for (uint64_t j = 0; j < a.n; j++) {
                if (a.type == QF_GGUF_STRING) {
                    qf_gguf_str e = qf_gguf_arr_str(g, &a, j);
                    check(e.ptr != NULL, "arr_str");
                    touch(e.ptr, e.len);
                } else {
                    g_sink += (uint64_t)qf_gguf_arr_int(&a, j);
                    g_sink += qf_gguf_arr_float(&a, j) != 0.0;
                }
            }
            check(qf_gguf_arr_str(g, &a, a.n).ptr == NULL, "arr_str out of range");
        }
    }
    check(qf_gguf_kv_key(g, n_kv) == NULL, "kv_key out of range");

    int64_t n_t = qf_gguf_n_tensors(g);
    uint32_t align = qf_gguf_alignment(g);
    check(align && (align & (align - 1)) == 0, "alignment");
    for (int64_t i = 0; i < n_t; i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        check(t && t->name && strlen(t->name) < QF_GGUF_MAX_NAME, "tensor name");
        check(qf_gguf_find_tensor(g, t->name) == t, "find_tensor(name) == t");
        check(t->n_dims <= QF_GGUF_MAX_DIMS && t->offset % align == 0, "tensor dims/offset");
        int64_t blck;
        size_t ts;
        check(qf_gguf_type_info(t->type, &blck, &ts, NULL), "tensor type");
        check(qf_gguf_data_offset(g) + t->offset + t->size <= qf_gguf_file_size(g), "bounds");
        touch(t->data, t->size);
    }
    check(qf_gguf_tensor_at(g, n_t) == NULL, "tensor_at out of range");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qf_err err;
    memset(&err, 0, sizeof err);
    qf_gguf *g = qf_gguf_open_mem(data, size, "fuzz.gguf", &err);
    if (!g) {
        check(err.code < 0, "error code");
        check(strncmp(err.msg, "fuzz.gguf: ", 11) == 0, "message names the input");
        return 0;
    }
    check(qf_gguf_file_size(g) == size, "file size");
    check(qf_gguf_data_offset(g) <= size, "data offset");
    walk(g);
    qf_gguf_close(g);
    return 0;
}
