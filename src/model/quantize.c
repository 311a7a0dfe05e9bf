/* quantize.c - model conversion between tensor types.
 *
 * Every tensor is decoded to f32 (row by row) and re-encoded in the type
 * chosen by qf_ftype_tensor_type; a tensor already in that type is copied
 * as is. All converted tensors are held in memory until the writer emits
 * the file (the writer borrows their data).
 */
#include "model/quantize.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "base/cpu.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/pool.h"
#include "gguf/gguf.h"

typedef struct ftype_name {
    const char *name;
    qf_ftype ft;
} ftype_name;

static const ftype_name k_ftypes[] = {
    {"f32", QF_FTYPE_F32},       {"f16", QF_FTYPE_F16},       {"bf16", QF_FTYPE_BF16},
    {"q4_0", QF_FTYPE_Q4_0},     {"q4_1", QF_FTYPE_Q4_1},     {"q5_0", QF_FTYPE_Q5_0},
    {"q5_1", QF_FTYPE_Q5_1},     {"q8_0", QF_FTYPE_Q8_0},     {"q4_k_s", QF_FTYPE_Q4_K_S},
    {"q4_k_m", QF_FTYPE_Q4_K_M}, {"q4_k", QF_FTYPE_Q4_K_M},   {"q5_k_s", QF_FTYPE_Q5_K_S},
    {"q5_k_m", QF_FTYPE_Q5_K_M}, {"q5_k", QF_FTYPE_Q5_K_M},   {"q6_k", QF_FTYPE_Q6_K},
};

bool qf_ftype_from_name(const char *name, qf_ftype *out) {
    char low[16];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof low) return false;
    for (size_t i = 0; i <= n; i++) low[i] = (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < sizeof k_ftypes / sizeof *k_ftypes; i++)
        if (!strcmp(low, k_ftypes[i].name)) {
            *out = k_ftypes[i].ft;
            return true;
        }
    return false;
}

const char *qf_ftype_name(qf_ftype ft) {
    for (size_t i = 0; i < sizeof k_ftypes / sizeof *k_ftypes; i++)
        if (k_ftypes[i].ft == ft) return k_ftypes[i].name;
    return "?";
}

const char *qf_ftype_names(void) {
    return "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k_s, q4_k_m (= q4_k), q5_k_s, q5_k_m (= q5_k), q6_k";
}

/* llama.cpp's rule for which layers get more bits in the _M mixes: the
 * first and last eighth of the layers, and every third one between. */
static bool use_more_bits(int i_layer, int n_layer) {
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

static int layer_of(const char *name) {
    int l;
    return sscanf(name, "blk.%d.", &l) == 1 ? l : -1;
}

static qf_type base_type(qf_ftype ft) {
    switch (ft) {
    case QF_FTYPE_F32: return QF_TYPE_F32;
    case QF_FTYPE_F16: return QF_TYPE_F16;
    case QF_FTYPE_BF16: return QF_TYPE_BF16;
    case QF_FTYPE_Q4_0: return QF_TYPE_Q4_0;
    case QF_FTYPE_Q4_1: return QF_TYPE_Q4_1;
    case QF_FTYPE_Q5_0: return QF_TYPE_Q5_0;
    case QF_FTYPE_Q5_1: return QF_TYPE_Q5_1;
    case QF_FTYPE_Q8_0: return QF_TYPE_Q8_0;
    case QF_FTYPE_Q4_K_S:
    case QF_FTYPE_Q4_K_M: return QF_TYPE_Q4_K;
    case QF_FTYPE_Q5_K_S:
    case QF_FTYPE_Q5_K_M: return QF_TYPE_Q5_K;
    case QF_FTYPE_Q6_K: return QF_TYPE_Q6_K;
    }
    return QF_TYPE_F32;
}

static bool fits(qf_type t, int64_t ne0) {
    const qf_type_traits *tt = qf_type_get(t);
    return tt && tt->from_float && ne0 % tt->blck_size == 0;
}

qf_type qf_ftype_tensor_type(qf_ftype ft, const char *name, uint32_t n_dims, int64_t ne0, int n_layer,
                             bool is_output) {
    if (n_dims < 2) return QF_TYPE_F32;
    qf_type t = base_type(ft);
    bool quantized = t != QF_TYPE_F32 && t != QF_TYPE_F16 && t != QF_TYPE_BF16;
    if (quantized && is_output && t != QF_TYPE_Q8_0) {
        t = QF_TYPE_Q6_K;
    } else if (ft == QF_FTYPE_Q4_K_M || ft == QF_FTYPE_Q5_K_M) {
        int l = layer_of(name);
        bool v_or_down = strstr(name, "attn_v.weight") || strstr(name, "ffn_down.weight");
        if (l >= 0 && v_or_down && use_more_bits(l, n_layer)) t = QF_TYPE_Q6_K;
    }
    if (fits(t, ne0)) return t;
    /* rows that do not fill whole blocks: nearest type with 32-wide blocks */
    qf_type fallback = t == QF_TYPE_Q4_K ? QF_TYPE_Q5_0 : t == QF_TYPE_Q5_K ? QF_TYPE_Q5_1 : QF_TYPE_Q8_0;
    if (fits(fallback, ne0)) return fallback;
    return QF_TYPE_F16;
}

/* ---- parallel row conversion ---- */

typedef struct conv_task {
    qf_type type;
    const float *src;
    uint8_t *dst;
    int64_t n_rows, n_cols;
    size_t row_bytes;
} conv_task;

static void conv_region(void *p, int ith, int nth) {
    const conv_task *t = p;
    const qf_type_traits *tt = qf_type_get(t->type);
    long lo, hi;
    qf_split_range((long)t->n_rows, ith, nth, &lo, &hi);
    for (long r = lo; r < hi; r++)
        tt->from_float(t->src + (size_t)r * t->n_cols, t->dst + (size_t)r * t->row_bytes, t->n_cols);
}

void qf_quantize_rows(qf_pool *pool, qf_type type, const float *src, void *dst, int64_t n_rows, int64_t n_cols) {
    conv_task t = {type, src, dst, n_rows, n_cols, qf_type_row_size(type, n_cols)};
    qf_pool_run(pool, conv_region, &t);
}

qf_status qf_model_quantize(const char *in, const char *out, qf_ftype ft, int n_threads, qf_err *err) {
    qf_status st = QF_OK;
    qf_gguf *g = NULL;
    qf_gguf_writer *w = NULL;
    qf_pool *pool = NULL;
    void **bufs = NULL;
    float *f32 = NULL;
    int64_t nt = 0;

    g = qf_gguf_open(in, err);
    if (!g) return err ? err->code : QF_ERR_IO;
    nt = qf_gguf_n_tensors(g);
    pool = qf_pool_new(n_threads > 0 ? n_threads : qf_cpu_default_threads(), NULL, err);
    w = qf_gguf_writer_new();
    bufs = qf_calloc((size_t)(nt ? nt : 1), sizeof *bufs);
    if (!pool || !w || !bufs) {
        st = QF_ERR_SET(err, QF_ERR_NOMEM, "quantize: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < qf_gguf_n_kv(g); i++) {
        const char *key = qf_gguf_kv_key(g, i);
        if (!strcmp(key, "general.file_type") || !strcmp(key, "general.quantization_version")) continue;
        if ((st = qf_gguf_writer_copy_kv(w, g, i)) != QF_OK) {
            QF_ERR_SET(err, st, "quantize: cannot copy metadata %s", key);
            goto out;
        }
    }
    qf_gguf_writer_set_u32(w, "general.file_type", (uint32_t)ft);
    qf_gguf_writer_set_u32(w, "general.quantization_version", 2);

    int64_t n_layer = 0;
    qf_gguf_str arch;
    if (qf_gguf_get_str(g, "general.architecture", &arch)) {
        char key[96];
        snprintf(key, sizeof key, "%.*s.block_count", (int)(arch.len < 32 ? arch.len : 32), arch.ptr);
        qf_gguf_get_int(g, key, &n_layer);
    }
    bool tied = qf_gguf_find_tensor(g, "output.weight") == NULL;
    for (int64_t i = 0; i < nt; i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        int64_t rows = t->ne[1] * t->ne[2] * t->ne[3], cols = t->ne[0];
        bool is_output = !strcmp(t->name, "output.weight") || (tied && !strcmp(t->name, "token_embd.weight"));
        qf_type dst = qf_ftype_tensor_type(ft, t->name, t->n_dims, cols, (int)n_layer, is_output);
        const qf_type_traits *src_tt = qf_type_get(t->type);
        const void *data = t->data;
        if ((qf_type)t->type != dst) {
            if (!src_tt) {
                st = QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "%s: tensor %s: type %u cannot be converted (supported: %s)",
                                in, t->name, t->type, qf_type_supported_list());
                goto out;
            }
            size_t rb = qf_type_row_size(dst, cols);
            float *nf = qf_realloc(f32, (size_t)rows * (size_t)cols * sizeof(float));
            if (nf) f32 = nf;
            bufs[i] = qf_malloc((size_t)rows * rb);
            if (!nf || !bufs[i]) {
                st = QF_ERR_SET(err, QF_ERR_NOMEM, "quantize: out of memory at tensor %s", t->name);
                goto out;
            }
            size_t src_rb = qf_type_row_size(t->type, cols);
            for (int64_t r = 0; r < rows; r++)
                src_tt->to_float((const uint8_t *)t->data + (size_t)r * src_rb, f32 + (size_t)r * cols, cols);
            qf_quantize_rows(pool, dst, f32, bufs[i], rows, cols);
            data = bufs[i];
        }
        if ((st = qf_gguf_writer_add_tensor(w, t->name, (uint32_t)dst, t->n_dims, t->ne, data, err)) != QF_OK)
            goto out;
    }
    st = qf_gguf_writer_write(w, out, err);
out:
    if (bufs)
        for (int64_t i = 0; i < nt; i++) qf_free(bufs[i]);
    qf_free(bufs);
    qf_free(f32);
    qf_gguf_writer_free(w);
    qf_pool_free(pool);
    qf_gguf_close(g);
    return st;
}
