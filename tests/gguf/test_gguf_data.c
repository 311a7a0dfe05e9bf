/* test_gguf_data.c - the GGUF reader and writer on the real files in
 * ../shared/testdata (models written by gguf-py and llama-quantize, vocab
 * files written by llama.cpp's converters). Facts checked come from the
 * testdata READMEs. Skips when the data is absent. */
#include <dirent.h>
#include <inttypes.h>

#include "gguf/gguf.h"
#include "gguf_test_util.h"
#include "qf_test.h"

static char g_root[1024];

static qf_gguf *open_rel(const char *rel) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    qf_err err = {0};
    qf_gguf *g = qf_gguf_open(path, &err);
    if (!g) fprintf(stderr, "open %s: %s\n", path, err.msg);
    return g;
}

static bool str_is(const qf_gguf *g, const char *key, const char *want) {
    qf_gguf_str s;
    return qf_gguf_get_str(g, key, &s) && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static int64_t get_i(const qf_gguf *g, const char *key) {
    int64_t v = -1;
    return qf_gguf_get_int(g, key, &v) ? v : -1;
}

static bool tensor_is(const qf_gguf *g, const char *name, uint32_t type, int64_t ne0, int64_t ne1) {
    const qf_gguf_tensor *t = qf_gguf_find_tensor(g, name);
    if (!t) {
        fprintf(stderr, "  tensor %s missing\n", name);
        return false;
    }
    if (t->type != type || t->ne[0] != ne0 || t->ne[1] != ne1) {
        fprintf(stderr, "  tensor %s: type %u [%" PRId64 ", %" PRId64 "]\n", name, t->type,
                t->ne[0], t->ne[1]);
        return false;
    }
    return true;
}

/* ---- per-file facts ---- */

static void test_stories260k(void) {
    qf_gguf *g = open_rel("models/stories260K.gguf");
    ASSERT(g);
    ASSERT_EQ_INT(qf_gguf_version(g), 3);
    ASSERT(str_is(g, "general.architecture", "llama"));
    ASSERT_EQ_INT(get_i(g, "llama.embedding_length"), 64);
    ASSERT_EQ_INT(get_i(g, "llama.block_count"), 5);
    ASSERT_EQ_INT(get_i(g, "llama.attention.head_count"), 8);
    ASSERT_EQ_INT(get_i(g, "llama.attention.head_count_kv"), 4);
    ASSERT_EQ_INT(get_i(g, "llama.feed_forward_length"), 172);
    ASSERT_EQ_INT(get_i(g, "llama.context_length"), 512);
    ASSERT_EQ_INT(get_i(g, "llama.rope.dimension_count"), 8);
    double eps;
    ASSERT(qf_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &eps));
    ASSERT_NEAR(eps, 1e-5, 1e-9);
    ASSERT(tensor_is(g, "token_embd.weight", 0, 64, 512));
    ASSERT_EQ_INT(qf_gguf_find_tensor(g, "token_embd.weight")->n_dims, 2);
    ASSERT_EQ_INT(qf_gguf_find_tensor(g, "token_embd.weight")->size, 64 * 512 * 4);
    ASSERT(qf_gguf_find_tensor(g, "output.weight") == NULL); /* tied embeddings */
    ASSERT(tensor_is(g, "blk.4.ffn_down.weight", 0, 172, 64));
    ASSERT(tensor_is(g, "blk.0.attn_k.weight", 0, 64, 32));
    ASSERT(tensor_is(g, "output_norm.weight", 0, 64, 1));
    ASSERT_EQ_INT(qf_gguf_n_tensors(g), 2 + 5 * 9);
    qf_gguf_arr a;
    ASSERT(qf_gguf_get_arr(g, "tokenizer.ggml.tokens", &a));
    ASSERT_EQ_INT(a.n, 512);
    qf_gguf_str s = qf_gguf_arr_str(g, &a, 1);
    ASSERT(s.len == 3 && memcmp(s.ptr, "<s>", 3) == 0);
    s = qf_gguf_arr_str(g, &a, 3);
    ASSERT(s.len == 6 && memcmp(s.ptr, "<0x00>", 6) == 0); /* bytes start at 3 */
    s = qf_gguf_arr_str(g, &a, 258);
    ASSERT(s.len == 6 && memcmp(s.ptr, "<0xFF>", 6) == 0);
    /* the F32 weights are finite and not all zero */
    const qf_gguf_tensor *t = qf_gguf_find_tensor(g, "output_norm.weight");
    const float *w = t->data;
    int nonzero = 0;
    for (int i = 0; i < 64; i++) {
        ASSERT(isfinite(w[i]));
        nonzero += w[i] != 0.0f;
    }
    ASSERT(nonzero > 32);
    qf_gguf_close(g);

    g = open_rel("models/stories260K-q8_0.gguf");
    ASSERT(g);
    ASSERT(tensor_is(g, "token_embd.weight", 8, 64, 512));
    ASSERT(tensor_is(g, "blk.0.ffn_down.weight", 0, 172, 64)); /* 172 % 32 != 0: kept F32 */
    ASSERT(tensor_is(g, "blk.0.ffn_up.weight", 8, 64, 172));
    ASSERT(tensor_is(g, "blk.0.attn_norm.weight", 0, 64, 1));
    ASSERT_EQ_INT(qf_gguf_find_tensor(g, "token_embd.weight")->size, 64 / 32 * 34 * 512);
    qf_gguf_close(g);
}

static void test_rand_llama_quants(void) {
    qf_gguf *g = open_rel("models/rand-llama-q4_k_m.gguf");
    ASSERT(g);
    ASSERT(tensor_is(g, "blk.1.ffn_down.weight", 14, 768, 256));
    ASSERT(tensor_is(g, "blk.0.ffn_down.weight", 12, 768, 256));
    ASSERT(tensor_is(g, "blk.1.attn_v.weight", 14, 256, 128));
    ASSERT(tensor_is(g, "blk.0.attn_v.weight", 12, 256, 128));
    ASSERT(tensor_is(g, "output.weight", 14, 256, 512));
    ASSERT(tensor_is(g, "token_embd.weight", 12, 256, 512));
    ASSERT(tensor_is(g, "output_norm.weight", 0, 256, 1));
    ASSERT_EQ_INT(qf_gguf_find_tensor(g, "output.weight")->size, 512 * 210);
    qf_gguf_close(g);

    g = open_rel("models/rand-llama-q4_0.gguf");
    ASSERT(g);
    ASSERT(tensor_is(g, "output.weight", 14, 256, 512));
    ASSERT(tensor_is(g, "token_embd.weight", 2, 256, 512));
    ASSERT(tensor_is(g, "blk.1.ffn_gate.weight", 2, 256, 768));
    qf_gguf_close(g);

    g = open_rel("models/rand-llama-q8_0.gguf");
    ASSERT(g);
    ASSERT(tensor_is(g, "output.weight", 8, 256, 512));
    ASSERT(tensor_is(g, "blk.0.attn_q.weight", 8, 256, 256));
    qf_gguf_close(g);

    g = open_rel("models/rand-llama-q6_k.gguf");
    ASSERT(g);
    ASSERT(tensor_is(g, "blk.0.ffn_up.weight", 14, 256, 768));
    qf_gguf_close(g);

    g = open_rel("models/rand-llama-f32.gguf");
    ASSERT(g);
    ASSERT(str_is(g, "general.architecture", "llama"));
    ASSERT_EQ_INT(get_i(g, "llama.embedding_length"), 256);
    ASSERT_EQ_INT(get_i(g, "llama.block_count"), 2);
    ASSERT(tensor_is(g, "blk.0.attn_k.weight", 0, 256, 128)); /* 2 kv heads x 64 */
    qf_gguf_close(g);
}

static void test_rand_qwen(void) {
    qf_gguf *g = open_rel("models/rand-qwen2-f32.gguf");
    ASSERT(g);
    ASSERT(str_is(g, "general.architecture", "qwen2"));
    ASSERT(qf_gguf_find_tensor(g, "output.weight") == NULL);
    ASSERT(tensor_is(g, "blk.0.attn_q.bias", 0, 128, 1));
    ASSERT(tensor_is(g, "blk.1.attn_k.bias", 0, 64, 1));
    double base;
    ASSERT(qf_gguf_get_float(g, "qwen2.rope.freq_base", &base) && base == 1e6);
    qf_gguf_close(g);

    g = open_rel("models/rand-qwen3-f32.gguf");
    ASSERT(g);
    ASSERT(str_is(g, "general.architecture", "qwen3"));
    ASSERT_EQ_INT(get_i(g, "qwen3.attention.key_length"), 64);
    ASSERT(tensor_is(g, "blk.0.attn_q_norm.weight", 0, 64, 1));
    ASSERT(tensor_is(g, "blk.0.attn_output.weight", 0, 256, 128));
    ASSERT(tensor_is(g, "blk.0.attn_q.weight", 0, 128, 256));
    qf_gguf_close(g);
}

/* ---- every file ---- */

typedef struct file_list {
    char paths[64][1400];
    int n;
} file_list;

static void list_dir(file_list *fl, const char *sub) {
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/%s", g_root, sub);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && fl->n < 64) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".gguf") == 0)
            snprintf(fl->paths[fl->n++], sizeof fl->paths[0], "%s/%s", dir, e->d_name);
    }
    closedir(d);
}

static file_list g_files;

/* Structure checks that hold for every valid file. */
static void check_structure(const char *path) {
    qf_err err = {0};
    qf_gguf *g = qf_gguf_open(path, &err);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT(gguf_walk(g) >= 0);
    ASSERT(qf_gguf_version(g) == 3);
    ASSERT(qf_gguf_alignment(g) == 32);
    qf_gguf_str model;
    ASSERT_MSG(qf_gguf_get_str(g, "tokenizer.ggml.model", &model), "%s", path);
    qf_gguf_arr toks, other;
    ASSERT_MSG(qf_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks), "%s", path);
    ASSERT(toks.type == QF_GGUF_STRING && toks.n > 0);
    /* parallel token arrays agree in length */
    if (qf_gguf_get_arr(g, "tokenizer.ggml.scores", &other)) ASSERT_EQ_INT(other.n, toks.n);
    if (qf_gguf_get_arr(g, "tokenizer.ggml.token_type", &other)) ASSERT_EQ_INT(other.n, toks.n);
    int64_t bos;
    if (qf_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos)) ASSERT(bos >= 0 && (uint64_t)bos < toks.n);
    const qf_gguf_tensor *emb = qf_gguf_find_tensor(g, "token_embd.weight");
    if (emb) ASSERT_MSG((uint64_t)emb->ne[1] == toks.n, "%s: vocab %" PRIu64, path, toks.n);
    /* tensors tile the data section in order, each padded to the alignment */
    uint64_t off = 0;
    for (int64_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        ASSERT_MSG(t->offset == off, "%s: tensor %s", path, t->name);
        off += (t->size + 31) / 32 * 32;
    }
    if (qf_gguf_n_tensors(g)) ASSERT_EQ_INT(qf_gguf_data_offset(g) + off, qf_gguf_file_size(g));
    qf_gguf_close(g);
}

static void test_all_files_structure(void) {
    ASSERT(g_files.n >= 9 + 10);
    for (int i = 0; i < g_files.n; i++) {
        int before = qf_test_failures;
        check_structure(g_files.paths[i]);
        if (qf_test_failures != before) fprintf(stderr, "  in %s\n", g_files.paths[i]);
    }
}

/* Same key/values (raw bytes) and tensors (meta and data bytes). */
static bool same_content(const qf_gguf *a, const qf_gguf *b) {
    if (qf_gguf_n_kv(a) != qf_gguf_n_kv(b) || qf_gguf_n_tensors(a) != qf_gguf_n_tensors(b))
        return false;
    for (int64_t i = 0; i < qf_gguf_n_kv(a); i++) {
        size_t la, lb;
        const uint8_t *ra = qf_gguf_kv_raw(a, i, &la), *rb = qf_gguf_kv_raw(b, i, &lb);
        if (strcmp(qf_gguf_kv_key(a, i), qf_gguf_kv_key(b, i)) != 0) return false;
        if (qf_gguf_kv_type(a, i) != qf_gguf_kv_type(b, i) || la != lb || memcmp(ra, rb, la))
            return false;
    }
    for (int64_t i = 0; i < qf_gguf_n_tensors(a); i++) {
        const qf_gguf_tensor *ta = qf_gguf_tensor_at(a, i), *tb = qf_gguf_tensor_at(b, i);
        if (strcmp(ta->name, tb->name) || ta->type != tb->type || ta->n_dims != tb->n_dims ||
            ta->size != tb->size || memcmp(ta->ne, tb->ne, sizeof ta->ne) ||
            memcmp(ta->data, tb->data, ta->size))
            return false;
    }
    return true;
}

/* Rewrites every file through the writer (all kv copied verbatim, all
 * tensors re-added in order). Files written by gguf-py or llama.cpp with
 * tensors come back byte for byte. Vocab-only files (no tensors) differ only
 * where their writer skipped the padding after the header: the writer always
 * pads the header to the alignment, as the format's data section requires. */
static void test_rewrite_identical(void) {
    char out[256];
    tmp_path(out, sizeof out, "rewrite");
    int identical = 0, padded_only = 0;
    for (int f = 0; f < g_files.n; f++) {
        const char *path = g_files.paths[f];
        qf_err err = {0};
        qf_gguf *g = qf_gguf_open(path, &err);
        ASSERT_MSG(g, "%s", err.msg);
        qf_gguf_writer *w = qf_gguf_writer_new();
        ASSERT(w);
        for (int64_t i = 0; i < qf_gguf_n_kv(g); i++)
            ASSERT_EQ_INT(qf_gguf_writer_copy_kv(w, g, i), QF_OK);
        for (int64_t i = 0; i < qf_gguf_n_tensors(g); i++) {
            const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
            ASSERT_MSG(qf_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data,
                                                 &err) == QF_OK,
                       "%s", err.msg);
        }
        ASSERT_MSG(qf_gguf_writer_write(w, out, &err) == QF_OK, "%s", err.msg);
        qf_gguf_writer_free(w);

        size_t n;
        uint8_t *p = read_file(out, &n);
        ASSERT(p);
        size_t on = qf_gguf_file_size(g);
        uint8_t *o = read_file(path, &on);
        ASSERT(o);
        if (n == on && memcmp(p, o, n) == 0) {
            identical++;
        } else {
            ASSERT_MSG(qf_gguf_n_tensors(g) == 0, "%s: rewrite differs (%zu vs %zu bytes)", path,
                       n, on);
            /* only padding added after the header */
            ASSERT_MSG(n > on && n - on < 32 && n % 32 == 0 && memcmp(p, o, on) == 0, "%s", path);
            for (size_t k = on; k < n; k++) ASSERT(p[k] == 0);
            padded_only++;
        }
        qf_gguf *g2 = qf_gguf_open(out, &err);
        ASSERT_MSG(g2, "%s", err.msg);
        ASSERT_MSG(same_content(g, g2), "%s", path);
        qf_gguf_close(g2);
        qf_gguf_close(g);
        free(p);
        free(o);
    }
    unlink(out);
    fprintf(stderr, "  %d files byte-identical, %d vocab files differ only by header padding\n",
            identical, padded_only);
    ASSERT(identical >= 9); /* every model file */
}

int main(void) {
    qf_testdata("", g_root, sizeof g_root);
    size_t l = strlen(g_root);
    if (l && g_root[l - 1] == '/') g_root[l - 1] = 0;
    list_dir(&g_files, "models");
    list_dir(&g_files, "vocab");
    RUN_TEST(test_stories260k);
    RUN_TEST(test_rand_llama_quants);
    RUN_TEST(test_rand_qwen);
    RUN_TEST(test_all_files_structure);
    RUN_TEST(test_rewrite_identical);
    TEST_MAIN_END();
}
