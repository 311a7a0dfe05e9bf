/* gguf_test_util.h - helpers for the GGUF tests: a byte builder to craft
 * files by hand (independent of the writer under test), temp paths, and a
 * walker that touches everything a reader exposes (ASan then flags any
 * accessor that reads outside the buffer).
 */
#ifndef QF_GGUF_TEST_UTIL_H
#define QF_GGUF_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"

/* ---- byte builder ---- */

typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static inline void bb_put(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) abort();
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }

static void bb_u32(bb *b, uint32_t v) {
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    bb_put(b, x, 4);
}

static void bb_u64(bb *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    bb_put(b, x, 8);
}

static inline void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}

static inline void bb_hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}

/* key + type header of a kv; the caller appends the value */
static inline void bb_key(bb *b, const char *key, uint32_t type) {
    bb_str(b, key);
    bb_u32(b, type);
}

static inline void bb_tinfo(bb *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                     uint64_t offset) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims && i < 5; i++) bb_u64(b, (uint64_t)ne[i]); /* ne: >= min(n_dims, 5) */
    bb_u32(b, type);
    bb_u64(b, offset);
}

static inline void bb_pad(bb *b, size_t align) {
    while (b->n % align) bb_u8(b, 0);
}

static inline void bb_free(bb *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- files ---- */

static inline void tmp_path(char *buf, size_t cap, const char *tag) {
    snprintf(buf, cap, "/tmp/qf_gguf_test_%ld_%s.gguf", (long)getpid(), tag);
}

static inline int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(sz > 0 ? (size_t)sz : 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return p;
}

/* ---- walker ---- */

/* Reads every byte view the reader hands out; returns a checksum so the
 * compiler keeps the reads. Returns -1 on an inconsistency. */
static inline long long gguf_walk(const qf_gguf *g) {
    unsigned long long sum = 0;
    int64_t n_kv = qf_gguf_n_kv(g);
    for (int64_t i = 0; i < n_kv; i++) {
        const char *key = qf_gguf_kv_key(g, i);
        if (!key || qf_gguf_find_kv(g, key) != i) return -1;
        sum += (unsigned char)key[0];
        size_t len;
        const uint8_t *raw = qf_gguf_kv_raw(g, i, &len);
        if (!raw || len == 0) return -1;
        sum += raw[0] + raw[len - 1];
        int64_t iv;
        double dv;
        bool bv;
        qf_gguf_str s;
        qf_gguf_arr a;
        if (qf_gguf_kv_int(g, i, &iv)) sum += (unsigned long long)iv;
        if (qf_gguf_kv_float(g, i, &dv)) sum += dv == dv;
        if (qf_gguf_kv_bool(g, i, &bv)) sum += bv;
        if (qf_gguf_kv_str(g, i, &s) && s.len) sum += (unsigned char)(s.ptr[0] + s.ptr[s.len - 1]);
        if (qf_gguf_kv_arr(g, i, &a)) {
            for (uint64_t j = 0; j < a.n; j++) {
                if (a.type == QF_GGUF_STRING) {
                    qf_gguf_str e = qf_gguf_arr_str(g, &a, j);
                    if (!e.ptr) return -1;
                    if (e.len) sum += (unsigned char)(e.ptr[0] + e.ptr[e.len - 1]);
                } else {
                    sum += (unsigned long long)qf_gguf_arr_int(&a, j);
                    sum += qf_gguf_arr_float(&a, j) == 0.0;
                }
            }
            if (a.n && qf_gguf_arr_str(g, &a, a.n).ptr) return -1; /* out of range */
        }
    }
    int64_t n_t = qf_gguf_n_tensors(g);
    for (int64_t i = 0; i < n_t; i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        if (!t || qf_gguf_find_tensor(g, t->name) != t) return -1;
        if (t->size) {
            const uint8_t *d = t->data;
            sum += d[0] + d[t->size - 1];
        }
    }
    return (long long)(sum & 0x3fffffffffffffffull);
}

#endif
