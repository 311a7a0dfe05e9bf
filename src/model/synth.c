/* synth.c - write a random-weight model.
 *
 * Weights: token_embd ~ N(0, 1), linear weights ~ N(0, 1/fan_in) so that
 * activations keep their scale through the layers, output ~ N(0, 1/n_embd),
 * norms = 1, biases ~ N(0, 0.1^2). Every row draws from its own generator
 * seeded by (seed, tensor, row), so the file does not depend on the thread
 * count. Rows are generated in f32 and encoded to the target type on the
 * pool.
 */
#include "model/synth.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/cpu.h"
#include "base/mem.h"
#include "base/pool.h"
#include "gguf/gguf.h"

/* splitmix64: small, good enough to seed and draw normals for weights */
static uint64_t mix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s) { return ((double)(mix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

typedef struct gen_task {
    float *dst;
    int64_t rows, cols;
    uint64_t seed;
    float mean, std;
} gen_task;

static void gen_region(void *p, int ith, int nth) {
    const gen_task *t = p;
    long lo, hi;
    qf_split_range((long)t->rows, ith, nth, &lo, &hi);
    for (long r = lo; r < hi; r++) {
        uint64_t s = t->seed ^ ((uint64_t)r * 0xd1b54a32d192ed03ull);
        float *row = t->dst + (size_t)r * t->cols;
        if (t->std == 0.0f) {
            for (int64_t c = 0; c < t->cols; c++) row[c] = t->mean;
            continue;
        }
        for (int64_t c = 0; c < t->cols; c += 2) { /* Box-Muller, two normals per draw */
            double u1 = unif(&s), u2 = unif(&s), rad = sqrt(-2.0 * log(u1));
            row[c] = t->mean + t->std * (float)(rad * cos(2 * M_PI * u2));
            if (c + 1 < t->cols) row[c + 1] = t->mean + t->std * (float)(rad * sin(2 * M_PI * u2));
        }
    }
}

typedef struct synth_ctx {
    const qf_synth_params *p;
    qf_gguf_writer *w;
    qf_pool *pool;
    void **bufs;
    int n_bufs, cap_bufs;
    float *f32;
    size_t f32_cap;
    qf_err *err;
} synth_ctx;

static qf_status add(synth_ctx *c, const char *name, int64_t cols, int64_t rows, float mean, float std,
                     bool is_output) {
    uint32_t n_dims = rows > 1 ? 2 : 1;
    qf_type type = qf_ftype_tensor_type(c->p->ftype, name, n_dims, cols, c->p->n_layer, is_output);
    size_t n = (size_t)rows * (size_t)cols;
    if (n > c->f32_cap) {
        float *nf = qf_realloc(c->f32, n * sizeof(float));
        if (!nf) return QF_ERR_SET(c->err, QF_ERR_NOMEM, "synth: out of memory for %s", name);
        c->f32 = nf;
        c->f32_cap = n;
    }
    uint64_t h = c->p->seed * 0x9e3779b97f4a7c15ull;
    for (const char *q = name; *q; q++) h = (h ^ (uint8_t)*q) * 0x100000001b3ull;
    gen_task gt = {c->f32, rows, cols, h, mean, std};
    qf_pool_run(c->pool, gen_region, &gt);
    if (c->n_bufs == c->cap_bufs) {
        int cap = c->cap_bufs ? c->cap_bufs * 2 : 64;
        void **nb = qf_realloc(c->bufs, (size_t)cap * sizeof *nb);
        if (!nb) return QF_ERR_SET(c->err, QF_ERR_NOMEM, "synth: out of memory");
        c->bufs = nb;
        c->cap_bufs = cap;
    }
    void *data = qf_malloc((size_t)rows * qf_type_row_size(type, cols));
    if (!data) return QF_ERR_SET(c->err, QF_ERR_NOMEM, "synth: out of memory for %s", name);
    c->bufs[c->n_bufs++] = data;
    qf_quantize_rows(c->pool, type, c->f32, data, rows, cols);
    int64_t ne[2] = {cols, rows};
    return qf_gguf_writer_add_tensor(c->w, name, (uint32_t)type, n_dims, ne, data, c->err);
}

static qf_status byte_vocab(qf_gguf_writer *w) {
    enum { N = 259 };
    char names[N][8];
    const char *toks[N];
    float scores[N];
    int32_t types[N];
    snprintf(names[0], 8, "<unk>");
    snprintf(names[1], 8, "<s>");
    snprintf(names[2], 8, "</s>");
    for (int i = 0; i < 256; i++) snprintf(names[3 + i], 8, "<0x%02X>", i);
    for (int i = 0; i < N; i++) {
        toks[i] = names[i];
        scores[i] = 0.0f;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : 6;
    }
    qf_status st = qf_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!st) st = qf_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
    if (!st) st = qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, N);
    if (!st) st = qf_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QF_GGUF_FLOAT32, scores, N);
    if (!st) st = qf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_INT32, types, N);
    if (!st) st = qf_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (!st) st = qf_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!st) st = qf_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (!st) st = qf_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (!st) st = qf_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (!st)
        st = qf_gguf_writer_set_str(w, "tokenizer.chat_template",
                                    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                                    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                                    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
    return st;
}

static qf_status copy_vocab(qf_gguf_writer *w, const char *path, int64_t *n_vocab, qf_err *err) {
    qf_gguf *g = qf_gguf_open(path, err);
    if (!g) return err ? err->code : QF_ERR_IO;
    qf_status st = QF_OK;
    qf_gguf_arr toks;
    if (!qf_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) || toks.type != QF_GGUF_STRING || toks.n == 0) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s: no tokenizer.ggml.tokens array: not a vocabulary", path);
        goto out;
    }
    *n_vocab = (int64_t)toks.n;
    for (int64_t i = 0; i < qf_gguf_n_kv(g); i++)
        if (!strncmp(qf_gguf_kv_key(g, i), "tokenizer.", 10) && (st = qf_gguf_writer_copy_kv(w, g, i)) != QF_OK) {
            QF_ERR_SET(err, st, "%s: cannot copy %s", path, qf_gguf_kv_key(g, i));
            goto out;
        }
out:
    qf_gguf_close(g); /* copy_kv copied the bytes */
    return st;
}

qf_status qf_model_synth(const qf_synth_params *p, const char *out_path, qf_err *err) {
    if (p->n_embd <= 0 || p->n_layer <= 0 || p->n_head <= 0 || p->n_head_kv <= 0 || p->n_ff <= 0 ||
        p->n_head % p->n_head_kv != 0 || (p->head_dim == 0 && p->n_embd % p->n_head != 0))
        return QF_ERR_SET(err, QF_ERR_INVALID,
                          "synth: bad shape (n_embd %d, layers %d, heads %d/%d, n_ff %d): heads must divide "
                          "n_embd and kv heads must divide heads",
                          p->n_embd, p->n_layer, p->n_head, p->n_head_kv, p->n_ff);
    synth_ctx c = {0};
    c.p = p;
    c.err = err;
    qf_status st = QF_OK;
    c.w = qf_gguf_writer_new();
    c.pool = qf_pool_new(p->n_threads > 0 ? p->n_threads : qf_cpu_default_threads(), NULL, err);
    if (!c.w || !c.pool) {
        st = QF_ERR_SET(err, QF_ERR_NOMEM, "synth: out of memory");
        goto out;
    }
    const char *arch = qf_arch_name(p->arch);
    int32_t hd = p->head_dim > 0 ? p->head_dim : p->n_embd / p->n_head;
    int64_t n_vocab = 259;
    char key[128];
#define KEY(k) (snprintf(key, sizeof key, "%s." k, arch), key)
    qf_gguf_writer_set_str(c.w, "general.architecture", arch);
    qf_gguf_writer_set_str(c.w, "general.name", "qforge synthetic (random weights)");
    qf_gguf_writer_set_u32(c.w, "general.file_type", (uint32_t)p->ftype);
    qf_gguf_writer_set_u32(c.w, "general.quantization_version", 2);
    qf_gguf_writer_set_u32(c.w, KEY("context_length"), (uint32_t)(p->n_ctx > 0 ? p->n_ctx : 4096));
    qf_gguf_writer_set_u32(c.w, KEY("embedding_length"), (uint32_t)p->n_embd);
    qf_gguf_writer_set_u32(c.w, KEY("block_count"), (uint32_t)p->n_layer);
    qf_gguf_writer_set_u32(c.w, KEY("feed_forward_length"), (uint32_t)p->n_ff);
    qf_gguf_writer_set_u32(c.w, KEY("attention.head_count"), (uint32_t)p->n_head);
    qf_gguf_writer_set_u32(c.w, KEY("attention.head_count_kv"), (uint32_t)p->n_head_kv);
    qf_gguf_writer_set_u32(c.w, KEY("attention.key_length"), (uint32_t)hd);
    qf_gguf_writer_set_u32(c.w, KEY("attention.value_length"), (uint32_t)hd);
    qf_gguf_writer_set_u32(c.w, KEY("rope.dimension_count"), (uint32_t)hd);
    qf_gguf_writer_set_f32(c.w, KEY("rope.freq_base"), p->arch == QF_ARCH_LLAMA ? 10000.0f : 1000000.0f);
    qf_gguf_writer_set_f32(c.w, KEY("attention.layer_norm_rms_epsilon"), p->arch == QF_ARCH_LLAMA ? 1e-5f : 1e-6f);
    st = p->vocab_from ? copy_vocab(c.w, p->vocab_from, &n_vocab, err) : byte_vocab(c.w);
    if (st != QF_OK) goto out;
    qf_gguf_writer_set_u32(c.w, KEY("vocab_size"), (uint32_t)n_vocab);
#undef KEY

    int64_t E = p->n_embd, qd = (int64_t)p->n_head * hd, kd = (int64_t)p->n_head_kv * hd;
    float s_e = 1.0f / sqrtf((float)E), s_o = 1.0f / sqrtf((float)qd), s_f = 1.0f / sqrtf((float)p->n_ff);
    bool tied = p->arch == QF_ARCH_QWEN2; /* small qwen2 models tie their embeddings */
    if ((st = add(&c, "token_embd.weight", E, n_vocab, 0, 1.0f, tied)) != QF_OK) goto out;
    if ((st = add(&c, "output_norm.weight", E, 1, 1.0f, 0, false)) != QF_OK) goto out;
    if (!tied && (st = add(&c, "output.weight", E, n_vocab, 0, s_e, true)) != QF_OK) goto out;
    for (int l = 0; l < p->n_layer; l++) {
        char nm[96];
#define ADD(suffix, cols, rows, mean, std)                                                         \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d." suffix, l);                                              \
        if ((st = add(&c, nm, cols, rows, mean, std, false)) != QF_OK) goto out;                   \
    } while (0)
        ADD("attn_norm.weight", E, 1, 1.0f, 0);
        ADD("attn_q.weight", E, qd, 0, s_e);
        ADD("attn_k.weight", E, kd, 0, s_e);
        ADD("attn_v.weight", E, kd, 0, s_e);
        ADD("attn_output.weight", qd, E, 0, s_o);
        if (p->arch == QF_ARCH_QWEN2) {
            ADD("attn_q.bias", qd, 1, 0, 0.1f);
            ADD("attn_k.bias", kd, 1, 0, 0.1f);
            ADD("attn_v.bias", kd, 1, 0, 0.1f);
        }
        if (p->arch == QF_ARCH_QWEN3) {
            ADD("attn_q_norm.weight", hd, 1, 1.0f, 0);
            ADD("attn_k_norm.weight", hd, 1, 1.0f, 0);
        }
        ADD("ffn_norm.weight", E, 1, 1.0f, 0);
        ADD("ffn_gate.weight", E, p->n_ff, 0, s_e);
        ADD("ffn_up.weight", E, p->n_ff, 0, s_e);
        ADD("ffn_down.weight", p->n_ff, E, 0, s_f);
#undef ADD
    }
    st = qf_gguf_writer_write(c.w, out_path, err);
out:
    for (int i = 0; i < c.n_bufs; i++) qf_free(c.bufs[i]);
    qf_free(c.bufs);
    qf_free(c.f32);
    qf_gguf_writer_free(c.w);
    qf_pool_free(c.pool);
    return st;
}
