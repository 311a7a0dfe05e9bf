/* test_forward.c - forward-pass properties that need no reference data,
 * on small synthesized models of each architecture:
 *   - a prompt evaluated as one batch == token by token == in chunks;
 *   - several sequences in one batch give each sequence's solo logits;
 *   - bad batches (token outside the vocabulary, position past the
 *     context, unknown sequence, kv cache full) are refused cleanly;
 *   - allocation failures while loading return errors, never crash.
 */
#include <unistd.h>

#include "base/mem.h"
#include "model/session.h"
#include "model/synth.h"
#include "qf_test.h"

static char g_path[3][256];

static double max_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void make_models(void) {
    for (int a = 0; a < 3; a++) {
        qf_synth_params p = {0};
        p.arch = (qf_arch)a;
        p.n_embd = 64;
        p.n_layer = 2;
        p.n_head = 4;
        p.n_head_kv = 2;
        p.n_ff = 96;
        p.head_dim = a == QF_ARCH_QWEN3 ? 32 : 0; /* qwen3: q dim != n_embd */
        p.ftype = QF_FTYPE_F32;
        p.seed = 11 + a;
        p.n_threads = 2;
        snprintf(g_path[a], sizeof g_path[a], "/tmp/qf-test-forward-%d-%d.gguf", (int)getpid(), a);
        qf_err e = {0};
        if (qf_model_synth(&p, g_path[a], &e) != QF_OK) {
            fprintf(stderr, "synth: %s\n", e.msg);
            exit(1);
        }
    }
}

static void test_batch_equals_steps(void) {
    int32_t toks[40];
    for (int i = 0; i < 40; i++) toks[i] = (i * 37 + 5) % 259;
    for (int a = 0; a < 3; a++) {
        qf_err e = {0};
        qf_model *m = qf_model_load(g_path[a], NULL, &e);
        ASSERT_MSG(m, "%s", e.msg);
        qf_session_params sp = qf_session_params_default();
        sp.kv_type = QF_TYPE_F32;
        sp.n_ctx = 64;
        qf_session *whole = qf_session_new(m, &sp, &e);
        sp.n_batch = 7; /* chunks that cut across kv blocks */
        qf_session *chunks = qf_session_new(m, &sp, &e);
        sp.n_batch = 1;
        qf_session *steps = qf_session_new(m, &sp, &e);
        ASSERT(whole && chunks && steps);
        ASSERT_EQ_INT(qf_session_eval(whole, toks, 40, &e), QF_OK);
        ASSERT_EQ_INT(qf_session_eval(chunks, toks, 40, &e), QF_OK);
        ASSERT_EQ_INT(qf_session_eval(steps, toks, 40, &e), QF_OK);
        int nv = m->hp.n_vocab;
        double d1 = max_diff(qf_session_logits(whole), qf_session_logits(steps), nv);
        double d2 = max_diff(qf_session_logits(whole), qf_session_logits(chunks), nv);
        /* rewinding and re-evaluating gives the same logits again */
        qf_session_rewind(whole, 20);
        ASSERT_EQ_INT(qf_session_eval(whole, toks + 20, 20, &e), QF_OK);
        double d3 = max_diff(qf_session_logits(whole), qf_session_logits(steps), nv);
        qf_session_free(whole);
        qf_session_free(chunks);
        qf_session_free(steps);
        qf_model_free(m);
        ASSERT_MSG(d1 < 1e-4 && d2 < 1e-4 && d3 < 1e-4, "arch %d: %g %g %g", a, d1, d2, d3);
    }
}

/* Three sequences of different lengths interleaved in each batch. */
static void test_multi_sequence_batch(void) {
    qf_err e = {0};
    qf_model *m = qf_model_load(g_path[0], NULL, &e);
    ASSERT(m);
    int nv = m->hp.n_vocab;
    qf_pool *pool = qf_pool_new(2, NULL, &e);
    qf_kv_params kp = qf_model_kv_params(m, 3 * 64, 3, QF_TYPE_F32, 16);
    qf_kv *kv = qf_kv_new(&kp, &e);
    qf_fwd *f = qf_fwd_new(m, kv, pool, 64, 64, &e);
    ASSERT(pool && kv && f);
    int len[3] = {5, 17, 30};
    int32_t tok[64], pos[64], seq[64];
    int8_t want[64];
    int n = 0;
    for (int i = 0; i < 30; i++) /* interleave: token i of each sequence */
        for (int s = 0; s < 3; s++)
            if (i < len[s]) {
                tok[n] = (i * 31 + s * 7 + 3) % nv;
                pos[n] = i;
                seq[n] = s;
                want[n] = i == len[s] - 1;
                n++;
            }
    /* positions of a sequence must be in order within the batch: they are */
    qf_batch b = {n, tok, pos, seq, want};
    ASSERT_EQ_INT(qf_fwd_decode(f, &b, &e), QF_OK);
    ASSERT_EQ_INT(qf_fwd_n_logits(f), 3);
    float *got = malloc(sizeof(float) * 3 * nv);
    int order[3], k = 0;
    for (int i = 0; i < n; i++)
        if (want[i]) order[k++] = seq[i];
    for (int j = 0; j < 3; j++) memcpy(got + (size_t)order[j] * nv, qf_fwd_logits(f, j), sizeof(float) * nv);
    qf_session_params sp = qf_session_params_default();
    sp.kv_type = QF_TYPE_F32;
    sp.n_ctx = 64;
    double worst = 0;
    for (int s = 0; s < 3; s++) {
        qf_session *solo = qf_session_new(m, &sp, &e);
        int32_t t[64];
        for (int i = 0; i < len[s]; i++) t[i] = (i * 31 + s * 7 + 3) % nv;
        qf_session_eval(solo, t, len[s], &e);
        worst = fmax(worst, max_diff(qf_session_logits(solo), got + (size_t)s * nv, nv));
        qf_session_free(solo);
    }
    free(got);
    qf_fwd_free(f);
    qf_kv_free(kv);
    qf_pool_free(pool);
    qf_model_free(m);
    ASSERT_MSG(worst < 1e-4, "batched vs solo max diff %g", worst);
}

static void test_bad_batches(void) {
    qf_err e = {0};
    qf_model *m = qf_model_load(g_path[1], NULL, &e);
    ASSERT(m);
    qf_pool *pool = qf_pool_new(1, NULL, &e);
    qf_kv_params kp = qf_model_kv_params(m, 32, 2, QF_TYPE_F16, 16);
    qf_kv *kv = qf_kv_new(&kp, &e);
    qf_fwd *f = qf_fwd_new(m, kv, pool, 8, 64, &e);
    int32_t tok[1] = {m->hp.n_vocab}, pos[1] = {0}, seq[1] = {0};
    int8_t want[1] = {1};
    qf_batch b = {1, tok, pos, seq, want};
    int rc1 = qf_fwd_decode(f, &b, &e);
    tok[0] = 1;
    pos[0] = 64;
    int rc2 = qf_fwd_decode(f, &b, &e);
    pos[0] = 0;
    seq[0] = 2;
    int rc3 = qf_fwd_decode(f, &b, &e);
    seq[0] = 0;
    pos[0] = 40; /* needs 3 blocks of 16, the pool has 2 */
    int rc4 = qf_fwd_decode(f, &b, &e);
    b.n = 9;
    int rc5 = qf_fwd_decode(f, &b, &e);
    qf_fwd_free(f);
    qf_kv_free(kv);
    qf_pool_free(pool);
    qf_model_free(m);
    ASSERT_EQ_INT(rc1, QF_ERR_INVALID);
    ASSERT_EQ_INT(rc2, QF_ERR_RANGE);
    ASSERT_EQ_INT(rc3, QF_ERR_INVALID);
    ASSERT_EQ_INT(rc4, QF_ERR_RANGE);
    ASSERT_EQ_INT(rc5, QF_ERR_INVALID);
}

static void test_load_alloc_failures(void) {
    int ok_at = -1;
    for (long n = 0; n < 2000; n++) {
        qf_err e = {0};
        qf_mem_fail_after(n);
        qf_model *m = qf_model_load(g_path[2], NULL, &e);
        qf_mem_fail_after(-1);
        if (m) {
            qf_model_free(m);
            ok_at = (int)n;
            break;
        }
        ASSERT_MSG(e.code != QF_OK && e.msg[0], "failure %ld returned no error", n);
    }
    ASSERT(ok_at > 0);
}

static void test_missing_tensor(void) {
    /* a qwen2 file without its biases is refused by name */
    qf_gguf *g = qf_gguf_open(g_path[1], NULL);
    ASSERT(g);
    qf_gguf_writer *w = qf_gguf_writer_new();
    for (int64_t i = 0; i < qf_gguf_n_kv(g); i++) qf_gguf_writer_copy_kv(w, g, i);
    for (int64_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        if (!strcmp(t->name, "blk.1.attn_k.bias")) continue;
        qf_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, NULL);
    }
    char path[300];
    snprintf(path, sizeof path, "%s.nobias", g_path[1]);
    qf_err e = {0};
    ASSERT_EQ_INT(qf_gguf_writer_write(w, path, &e), QF_OK);
    qf_gguf_writer_free(w);
    qf_gguf_close(g);
    qf_model *m = qf_model_load(path, NULL, &e);
    remove(path);
    ASSERT(m == NULL);
    ASSERT(strstr(e.msg, "blk.1.attn_k.bias"));
}

int main(void) {
    make_models();
    RUN_TEST(test_batch_equals_steps);
    RUN_TEST(test_multi_sequence_batch);
    RUN_TEST(test_bad_batches);
    RUN_TEST(test_load_alloc_failures);
    RUN_TEST(test_missing_tensor);
    for (int a = 0; a < 3; a++) remove(g_path[a]);
    TEST_MAIN_END();
}
