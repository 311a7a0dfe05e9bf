/* model.c - load a GGUF model: hyperparameters from metadata, weights bound
 * by name as borrowed views into the mapping, every shape and type checked
 * so that the forward pass can trust them.
 */
#include "model/model.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

static const char *k_arch_names[QF_ARCH_COUNT] = {"llama", "qwen2", "qwen3"};

const char *qf_arch_name(qf_arch a) { return a < QF_ARCH_COUNT ? k_arch_names[a] : "?"; }

typedef struct loader {
    qf_model *m;
    const qf_gguf *g;
    const char *path;
    qf_err *err;
} loader;

static bool get_arch_int(loader *L, const char *key, int64_t *out, bool required) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", L->m->hp.arch_name, key);
    if (qf_gguf_get_int(L->g, full, out)) return true;
    if (required) QF_ERR_SET(L->err, QF_ERR_FORMAT, "%s: metadata %s missing or not an integer", L->path, full);
    return false;
}

static bool get_arch_float(loader *L, const char *key, double *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", L->m->hp.arch_name, key);
    return qf_gguf_get_float(L->g, full, out);
}

static qf_status read_hparams(loader *L) {
    qf_hparams *hp = &L->m->hp;
    qf_gguf_str s;
    if (!qf_gguf_get_str(L->g, "general.architecture", &s))
        return QF_ERR_SET(L->err, QF_ERR_FORMAT, "%s: general.architecture missing", L->path);
    snprintf(hp->arch_name, sizeof hp->arch_name, "%.*s", (int)(s.len < 31 ? s.len : 31), s.ptr);
    int a;
    for (a = 0; a < QF_ARCH_COUNT; a++)
        if (strlen(k_arch_names[a]) == s.len && !memcmp(k_arch_names[a], s.ptr, s.len)) break;
    if (a == QF_ARCH_COUNT)
        return QF_ERR_SET(L->err, QF_ERR_UNSUPPORTED,
                          "%s: architecture '%.*s' is not supported (supported: llama, qwen2, qwen3)",
                          L->path, (int)(s.len < 64 ? s.len : 64), s.ptr);
    hp->arch = (qf_arch)a;

    int64_t v;
    if (!get_arch_int(L, "embedding_length", &v, true)) return L->err ? L->err->code : QF_ERR_FORMAT;
    hp->n_embd = (int32_t)v;
    if (!get_arch_int(L, "block_count", &v, true)) return QF_ERR_FORMAT;
    hp->n_layer = (int32_t)v;
    if (!get_arch_int(L, "feed_forward_length", &v, true)) return QF_ERR_FORMAT;
    hp->n_ff = (int32_t)v;
    if (!get_arch_int(L, "attention.head_count", &v, true)) return QF_ERR_FORMAT;
    hp->n_head = (int32_t)v;
    hp->n_head_kv = get_arch_int(L, "attention.head_count_kv", &v, false) ? (int32_t)v : hp->n_head;
    hp->n_ctx_train = get_arch_int(L, "context_length", &v, false) ? (int32_t)v : 2048;
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_ff <= 0 || hp->n_head <= 0 ||
        hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv != 0 || hp->n_layer > 4096 ||
        hp->n_embd > (1 << 20) || hp->n_ff > (1 << 22) || hp->n_head > 4096)
        return QF_ERR_SET(L->err, QF_ERR_FORMAT,
                          "%s: inconsistent hyperparameters (n_embd %d, layers %d, n_ff %d, heads %d/%d)",
                          L->path, hp->n_embd, hp->n_layer, hp->n_ff, hp->n_head, hp->n_head_kv);
    hp->head_dim = get_arch_int(L, "attention.key_length", &v, false) ? (int32_t)v : hp->n_embd / hp->n_head;
    hp->head_dim_v = get_arch_int(L, "attention.value_length", &v, false) ? (int32_t)v : hp->head_dim;
    hp->n_rot = get_arch_int(L, "rope.dimension_count", &v, false) ? (int32_t)v : hp->head_dim;
    if (hp->head_dim <= 0 || hp->head_dim_v <= 0 || hp->head_dim > 1024 || hp->head_dim_v > 1024 ||
        hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return QF_ERR_SET(L->err, QF_ERR_FORMAT, "%s: bad head dims (key %d, value %d, rope %d)",
                          L->path, hp->head_dim, hp->head_dim_v, hp->n_rot);
    double f;
    hp->rms_eps = get_arch_float(L, "attention.layer_norm_rms_epsilon", &f) ? (float)f : 1e-5f;
    hp->rope_base = get_arch_float(L, "rope.freq_base", &f) ? (float)f : 10000.0f;
    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch_name);
    qf_gguf_str st;
    if (qf_gguf_get_str(L->g, key, &st) && st.len == 6 && !memcmp(st.ptr, "linear", 6)) {
        if (get_arch_float(L, "rope.scaling.factor", &f) && f > 0) hp->rope_freq_scale = (float)(1.0 / f);
    } else if (qf_gguf_get_str(L->g, key, &st) && !(st.len == 4 && !memcmp(st.ptr, "none", 4))) {
        /* yarn and longrope change attention beyond the trained context; not
         * implemented: within n_ctx_train the plain rope is what they use */
        qf_warn("%s: rope scaling '%.*s' is not implemented; keep the context within %d tokens",
                L->path, (int)(st.len < 16 ? st.len : 16), st.ptr, hp->n_ctx_train);
    } else if (get_arch_float(L, "rope.scale_linear", &f) && f > 0) {
        hp->rope_freq_scale = (float)(1.0 / f);
    }
    hp->rope_kind = hp->arch == QF_ARCH_LLAMA ? QF_ROPE_NORM : QF_ROPE_NEOX;
    hp->swa_window = get_arch_int(L, "attention.sliding_window", &v, false) ? (int32_t)v : 0;
    return QF_OK;
}

/* Find a tensor; check its shape (ne0, ne1) and that the engine can use its
 * type. ne1 == 0 means a 1-D tensor. */
static const qf_gguf_tensor *find(loader *L, const char *name, int64_t ne0, int64_t ne1, bool required) {
    const qf_gguf_tensor *t = qf_gguf_find_tensor(L->g, name);
    if (!t) {
        if (required) QF_ERR_SET(L->err, QF_ERR_FORMAT, "%s: tensor %s missing", L->path, name);
        return NULL;
    }
    int64_t want1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1) {
        QF_ERR_SET(L->err, QF_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                   L->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                   (long long)t->ne[3], (long long)ne0, (long long)want1);
        return NULL;
    }
    if (!qf_type_get(t->type)) {
        int64_t blk;
        size_t ts;
        const char *tn = "unknown";
        qf_gguf_type_info(t->type, &blk, &ts, &tn);
        QF_ERR_SET(L->err, QF_ERR_UNSUPPORTED, "%s: tensor %s: type %s (%u) is not supported (supported: %s)",
                   L->path, name, tn, t->type, qf_type_supported_list());
        return NULL;
    }
    L->m->weight_bytes += t->size;
    return t;
}

static bool bind_vec(loader *L, const float **out, const char *name, int64_t n, bool required) {
    const qf_gguf_tensor *t = find(L, name, n, 0, required);
    if (!t) {
        *out = NULL;
        return !required && !qf_gguf_find_tensor(L->g, name);
    }
    if (t->type != QF_TYPE_F32) {
        QF_ERR_SET(L->err, QF_ERR_UNSUPPORTED, "%s: tensor %s: norm/bias vectors must be f32", L->path, name);
        return false;
    }
    if (((uintptr_t)t->data & 3) != 0) {
        QF_ERR_SET(L->err, QF_ERR_FORMAT, "%s: tensor %s: data not 4-byte aligned", L->path, name);
        return false;
    }
    *out = (const float *)t->data;
    return true;
}

static bool bind_mat(loader *L, qf_weight *w, const char *name, int64_t cols, int64_t rows, bool required) {
    const qf_gguf_tensor *t = find(L, name, cols, rows, required);
    if (!t) return !required && !qf_gguf_find_tensor(L->g, name);
    w->data = t->data;
    w->type = (qf_type)t->type;
    w->cols = cols;
    w->rows = rows;
    w->row_bytes = qf_type_row_size(t->type, cols);
    return true;
}

static qf_status bind_weights(loader *L) {
    qf_model *m = L->m;
    const qf_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
    int64_t kd = (int64_t)hp->n_head_kv * hp->head_dim, vd = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int64_t od = (int64_t)hp->n_head * hp->head_dim_v;
    const qf_gguf_tensor *te = qf_gguf_find_tensor(L->g, "token_embd.weight");
    if (!te) return QF_ERR_SET(L->err, QF_ERR_FORMAT, "%s: tensor token_embd.weight missing", L->path);
    m->hp.n_vocab = (int32_t)te->ne[1];
    if (te->ne[1] <= 0 || te->ne[1] > (1 << 24))
        return QF_ERR_SET(L->err, QF_ERR_FORMAT, "%s: bad vocabulary size %lld", L->path, (long long)te->ne[1]);
    if (!bind_mat(L, &m->tok_embd, "token_embd.weight", E, hp->n_vocab, true)) goto fail;
    if (!bind_vec(L, &m->output_norm, "output_norm.weight", E, true)) goto fail;
    if (!bind_mat(L, &m->output, "output.weight", E, hp->n_vocab, false)) goto fail;
    if (!m->output.data) {
        m->output = m->tok_embd;
        m->hp.tied_output = true;
    }
    if (!bind_vec(L, &m->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, false)) goto fail;

    m->layers = qf_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return QF_ERR_SET(L->err, QF_ERR_NOMEM, "%s: out of memory", L->path);
    char name[96];
#define NM(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
    for (int l = 0; l < hp->n_layer; l++) {
        qf_layer *ly = &m->layers[l];
        bool qwen2 = hp->arch == QF_ARCH_QWEN2, qwen3 = hp->arch == QF_ARCH_QWEN3;
        if (!bind_vec(L, &ly->attn_norm, NM("attn_norm.weight"), E, true)) goto fail;
        if (!bind_mat(L, &ly->wq, NM("attn_q.weight"), E, qd, true)) goto fail;
        if (!bind_mat(L, &ly->wk, NM("attn_k.weight"), E, kd, true)) goto fail;
        if (!bind_mat(L, &ly->wv, NM("attn_v.weight"), E, vd, true)) goto fail;
        if (!bind_mat(L, &ly->wo, NM("attn_output.weight"), od, E, true)) goto fail;
        /* biases: required for qwen2, accepted on llama (some finetunes) */
        if (!bind_vec(L, &ly->bq, NM("attn_q.bias"), qd, qwen2)) goto fail;
        if (!bind_vec(L, &ly->bk, NM("attn_k.bias"), kd, qwen2)) goto fail;
        if (!bind_vec(L, &ly->bv, NM("attn_v.bias"), vd, qwen2)) goto fail;
        if (!bind_vec(L, &ly->q_norm, NM("attn_q_norm.weight"), hp->head_dim, qwen3)) goto fail;
        if (!bind_vec(L, &ly->k_norm, NM("attn_k_norm.weight"), hp->head_dim, qwen3)) goto fail;
        if (!bind_vec(L, &ly->ffn_norm, NM("ffn_norm.weight"), E, true)) goto fail;
        if (!bind_mat(L, &ly->w_gate, NM("ffn_gate.weight"), E, hp->n_ff, true)) goto fail;
        if (!bind_mat(L, &ly->w_up, NM("ffn_up.weight"), E, hp->n_ff, true)) goto fail;
        if (!bind_mat(L, &ly->w_down, NM("ffn_down.weight"), hp->n_ff, E, true)) goto fail;
    }
#undef NM
    return QF_OK;
fail:
    return L->err && L->err->code ? L->err->code : QF_ERR_FORMAT;
}

qf_model *qf_model_load(const char *path, const qf_model_params *p, qf_err *err) {
    qf_err local;
    if (!err) err = &local;
    qf_err_clear(err);
    qf_model *m = qf_calloc(1, sizeof *m);
    if (!m) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    m->gguf = qf_gguf_open(path, err);
    if (!m->gguf) goto fail;
    loader L = {m, m->gguf, path, err};
    if (read_hparams(&L) != QF_OK) goto fail;
    if (bind_weights(&L) != QF_OK) goto fail;
    qf_gguf_str nm;
    if (qf_gguf_get_str(m->gguf, "general.name", &nm) && nm.len > 0) {
        snprintf(m->name, sizeof m->name, "%.*s", (int)(nm.len < 127 ? nm.len : 127), nm.ptr);
    } else {
        const char *base = strrchr(path, '/');
        snprintf(m->name, sizeof m->name, "%s", base ? base + 1 : path);
    }
    if (!(p && p->no_tokenizer)) {
        m->tok = qf_tok_new_from_gguf(m->gguf, err);
        if (!m->tok) {
            qf_err_prefix(err, "%s", path);
            goto fail;
        }
    }
    return m;
fail:
    qf_model_free(m);
    return NULL;
}

void qf_model_free(qf_model *m) {
    if (!m) return;
    qf_tok_free(m->tok);
    qf_free(m->layers);
    qf_gguf_close(m->gguf);
    qf_free(m);
}

qf_kv_params qf_model_kv_params(const qf_model *m, int64_t n_tokens, int32_t n_seq_max, qf_type kv_type,
                                int32_t block_size) {
    qf_kv_params p = {0};
    p.n_layer = m->hp.n_layer;
    p.kv_dim = m->hp.n_head_kv * m->hp.head_dim;
    p.kv_dim_v = m->hp.n_head_kv * m->hp.head_dim_v;
    p.block_size = block_size > 0 ? block_size : 16;
    p.n_blocks = (n_tokens + p.block_size - 1) / p.block_size;
    p.n_seq_max = n_seq_max > 0 ? n_seq_max : 1;
    p.type = kv_type;
    return p;
}
