/* test_fwd_range.c - qf_fwd_decode_range, the per-layer CPU entry point
 * that partial GPU offload (--gpu-layers N) runs the first layers with.
 *
 * On small synthesized models (llama f32 and q4_0 with the kernels' encoded
 * activations, qwen3 q8_0 with q/k norms), a prompt batch of two sequences
 * and then single-token steps go through two forward passes, each with its
 * own kv cache:
 *   - qf_fwd_decode;
 *   - qf_fwd_decode_range over [0, k) then [k, n_layer) + head with the
 *     hidden states handed over in a caller's buffer (every k, and a
 *     three-way split);
 * and the logits must agree bit for bit at every step. Also: without the
 * head no logits are left; bad ranges, a missing hidden-state buffer and bad
 * batches are refused with QF_ERR_INVALID.
 */
#include <unistd.h>

#include "model/model.h"
#include "model/synth.h"
#include "qf_test.h"

#define N_LAYER 3

static char g_path[3][256];

static void make_models(void) {
    const qf_arch arch[3] = {QF_ARCH_LLAMA, QF_ARCH_LLAMA, QF_ARCH_QWEN3};
    const qf_ftype ft[3] = {QF_FTYPE_F32, QF_FTYPE_Q4_0, QF_FTYPE_Q8_0};
    for (int a = 0; a < 3; a++) {
        qf_synth_params p = {0};
        p.arch = arch[a];
        p.n_embd = 64;
        p.n_layer = N_LAYER;
        p.n_head = 4;
        p.n_head_kv = 2;
        p.n_ff = 96;
        p.head_dim = arch[a] == QF_ARCH_QWEN3 ? 32 : 0;
        p.ftype = ft[a];
        p.seed = 101 + a;
        p.n_threads = 2;
        snprintf(g_path[a], sizeof g_path[a], "/tmp/qf-test-fwd-range-%d-%d.gguf", (int)getpid(), a);
        qf_err e = {0};
        if (qf_model_synth(&p, g_path[a], &e) != QF_OK) {
            fprintf(stderr, "synth: %s\n", e.msg);
            exit(1);
        }
    }
}

typedef struct pass {
    qf_kv *kv;
    qf_fwd *f;
} pass;

static void pass_init(pass *p, const qf_model *m, qf_pool *pool) {
    qf_err e = {0};
    qf_kv_params kp = qf_model_kv_params(m, 128, 2, QF_TYPE_F32, 16);
    p->kv = qf_kv_new(&kp, &e);
    p->f = p->kv ? qf_fwd_new(m, p->kv, pool, 32, 64, &e) : NULL;
    ASSERT_MSG(p->f, "%s", e.msg);
}

static void pass_free(pass *p) {
    qf_fwd_free(p->f);
    qf_kv_free(p->kv);
}

/* Run b through the layers split at cuts[0..n_cuts) (ascending, inside
 * (0, n_layer)): one call per range, the hidden states in x between them. */
static qf_status split_decode(qf_fwd *f, const qf_batch *b, const int32_t *cuts, int n_cuts, int32_t n_layer,
                              float *x, qf_err *e) {
    int32_t l0 = 0;
    for (int c = 0; c <= n_cuts; c++) {
        int32_t l1 = c < n_cuts ? cuts[c] : n_layer;
        qf_status st = qf_fwd_decode_range(f, b, l0, l1, c == n_cuts, x, e);
        if (st != QF_OK) return st;
        if (c < n_cuts && qf_fwd_n_logits(f) != 0) return QF_ERR_INTERNAL;
        l0 = l1;
    }
    return QF_OK;
}

/* Logits of every requested row of the last decode of a and b, bit for bit. */
static bool same_logits(const qf_fwd *a, const qf_fwd *b, int nv, const char *what, int step) {
    if (qf_fwd_n_logits(a) != qf_fwd_n_logits(b) || qf_fwd_n_logits(a) == 0) {
        fprintf(stderr, "%s step %d: %d vs %d logits rows\n", what, step, qf_fwd_n_logits(a), qf_fwd_n_logits(b));
        return false;
    }
    for (int j = 0; j < qf_fwd_n_logits(a); j++)
        if (memcmp(qf_fwd_logits(a, j), qf_fwd_logits(b, j), sizeof(float) * (size_t)nv) != 0) {
            int i = 0;
            while (qf_fwd_logits(a, j)[i] == qf_fwd_logits(b, j)[i]) i++;
            fprintf(stderr, "%s step %d row %d: logit %d %.9g vs %.9g\n", what, step, j, i,
                    (double)qf_fwd_logits(a, j)[i], (double)qf_fwd_logits(b, j)[i]);
            return false;
        }
    return true;
}

static void check_split(const qf_model *m, qf_pool *pool, const int32_t *cuts, int n_cuts, const char *what) {
    pass whole, split;
    pass_init(&whole, m, pool);
    pass_init(&split, m, pool);
    if (!whole.f || !split.f) goto out;
    int nv = m->hp.n_vocab, E = m->hp.n_embd;
    int32_t tok[32], pos[32], seq[32];
    int8_t want[32];
    float *x = malloc(sizeof(float) * 32 * (size_t)E);
    /* prompts of 11 and 6 tokens, interleaved in one batch */
    int n = 0;
    for (int i = 0; i < 11; i++) {
        tok[n] = (i * 37 + 5) % nv, pos[n] = i, seq[n] = 0, want[n] = i == 10, n++;
        if (i < 6) tok[n] = (i * 53 + 9) % nv, pos[n] = i, seq[n] = 1, want[n] = i == 5, n++;
    }
    qf_err e = {0};
    qf_batch b = {n, tok, pos, seq, want};
    ASSERT_EQ_INT(qf_fwd_decode(whole.f, &b, &e), QF_OK);
    ASSERT_EQ_INT(split_decode(split.f, &b, cuts, n_cuts, m->hp.n_layer, x, &e), QF_OK);
    bool ok = same_logits(whole.f, split.f, nv, what, 0);
    ASSERT_MSG(ok, "%s: split logits differ from qf_fwd_decode", what);
    /* greedy steps, both sequences in each batch */
    int32_t next[2] = {11, 6};
    for (int step = 1; step <= 6 && ok; step++) {
        for (int s = 0; s < 2; s++) {
            const float *lg = qf_fwd_logits(whole.f, s);
            int best = 0;
            for (int i = 1; i < nv; i++)
                if (lg[i] > lg[best]) best = i;
            tok[s] = best, pos[s] = next[s]++, seq[s] = s, want[s] = 1;
        }
        qf_batch d = {2, tok, pos, seq, want};
        ASSERT_EQ_INT(qf_fwd_decode(whole.f, &d, &e), QF_OK);
        ASSERT_EQ_INT(split_decode(split.f, &d, cuts, n_cuts, m->hp.n_layer, x, &e), QF_OK);
        ok = same_logits(whole.f, split.f, nv, what, step);
        ASSERT_MSG(ok, "%s: split logits differ from qf_fwd_decode", what);
    }
    free(x);
out:
    pass_free(&whole);
    pass_free(&split);
}

static void test_splits_equal_whole(void) {
    qf_err e = {0};
    qf_pool *pool = qf_pool_new(1, NULL, &e);
    ASSERT(pool);
    for (int a = 0; a < 3; a++) {
        qf_model *m = qf_model_load(g_path[a], NULL, &e);
        ASSERT_MSG(m, "%s", e.msg);
        if (!m) continue;
        ASSERT_EQ_INT(m->hp.n_layer, N_LAYER);
        char what[64];
        for (int32_t k = 0; k <= N_LAYER; k++) {
            /* k = 0: the whole step in one range call; k = n_layer: only the head in the second */
            snprintf(what, sizeof what, "model %d split at %d", a, k);
            check_split(m, pool, &k, 1, what);
        }
        const int32_t three[2] = {1, 2};
        snprintf(what, sizeof what, "model %d split 1|2", a);
        check_split(m, pool, three, 2, what);
        qf_model_free(m);
    }
    qf_pool_free(pool);
}

static void test_hidden_state_handover(void) {
    /* the hidden states after [0, k) are what [k, n) needs: garbage in the
     * buffer between the calls changes the logits */
    qf_err e = {0};
    qf_pool *pool = qf_pool_new(1, NULL, &e);
    qf_model *m = qf_model_load(g_path[0], NULL, &e);
    ASSERT(pool && m);
    if (!pool || !m) return;
    pass a, b;
    pass_init(&a, m, pool);
    pass_init(&b, m, pool);
    int E = m->hp.n_embd, nv = m->hp.n_vocab;
    float *x = calloc((size_t)E, sizeof(float));
    int32_t tok[1] = {7}, pos[1] = {0}, seq[1] = {0};
    int8_t want[1] = {1};
    qf_batch bt = {1, tok, pos, seq, want};
    ASSERT_EQ_INT(qf_fwd_decode_range(a.f, &bt, 0, 1, false, x, &e), QF_OK);
    ASSERT_EQ_INT(qf_fwd_n_logits(a.f), 0);
    ASSERT(qf_fwd_logits(a.f, 0) == NULL);
    double norm = 0;
    for (int i = 0; i < E; i++) norm += fabs(x[i]);
    ASSERT_MSG(norm > 0, "no hidden state written");
    ASSERT_EQ_INT(qf_fwd_decode_range(a.f, &bt, 1, N_LAYER, true, x, &e), QF_OK);
    ASSERT_EQ_INT(qf_fwd_decode_range(b.f, &bt, 0, 1, false, x, &e), QF_OK);
    for (int i = 0; i < E; i++) x[i] += 1.0f;
    ASSERT_EQ_INT(qf_fwd_decode_range(b.f, &bt, 1, N_LAYER, true, x, &e), QF_OK);
    ASSERT_EQ_INT(qf_fwd_n_logits(a.f), 1);
    ASSERT(memcmp(qf_fwd_logits(a.f, 0), qf_fwd_logits(b.f, 0), sizeof(float) * (size_t)nv) != 0);
    free(x);
    pass_free(&a);
    pass_free(&b);
    qf_model_free(m);
    qf_pool_free(pool);
}

static void test_bad_ranges(void) {
    qf_err e = {0};
    qf_pool *pool = qf_pool_new(1, NULL, &e);
    qf_model *m = qf_model_load(g_path[1], NULL, &e);
    ASSERT(pool && m);
    if (!pool || !m) return;
    pass p;
    pass_init(&p, m, pool);
    float x[64 * 2] = {0};
    int32_t tok[1] = {3}, pos[1] = {0}, seq[1] = {0};
    int8_t want[1] = {1};
    qf_batch b = {1, tok, pos, seq, want};
    const int32_t bad[][3] = {
        {-1, 1, 0},          /* l0 < 0 */
        {2, 1, 0},           /* l1 < l0 */
        {0, N_LAYER + 1, 1}, /* past the last layer */
        {0, N_LAYER - 1, 1}, /* head before the last layer */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.msg[0] = 0;
        ASSERT_MSG(qf_fwd_decode_range(p.f, &b, bad[i][0], bad[i][1], bad[i][2], x, &e) == QF_ERR_INVALID,
                   "range %d..%d head %d", bad[i][0], bad[i][1], bad[i][2]);
        ASSERT(strstr(e.msg, "layer range") != NULL);
    }
    /* l0 > 0 needs the hidden states */
    ASSERT_EQ_INT(qf_fwd_decode_range(p.f, &b, 1, N_LAYER, true, NULL, &e), QF_ERR_INVALID);
    /* bad batches as qf_fwd_decode */
    tok[0] = m->hp.n_vocab;
    ASSERT_EQ_INT(qf_fwd_decode_range(p.f, &b, 0, 1, false, x, &e), QF_ERR_INVALID);
    tok[0] = 3;
    pos[0] = 64;
    ASSERT_EQ_INT(qf_fwd_decode_range(p.f, &b, 1, N_LAYER, true, x, &e), QF_ERR_RANGE);
    pos[0] = 0;
    seq[0] = 5;
    ASSERT_EQ_INT(qf_fwd_decode_range(p.f, &b, 0, N_LAYER, true, NULL, &e), QF_ERR_INVALID);
    /* an empty range is allowed: only the head */
    seq[0] = 0;
    ASSERT_EQ_INT(qf_fwd_decode_range(p.f, &b, 0, N_LAYER, false, x, &e), QF_OK);
    ASSERT_EQ_INT(qf_fwd_decode_range(p.f, &b, N_LAYER, N_LAYER, true, x, &e), QF_OK);
    ASSERT_EQ_INT(qf_fwd_n_logits(p.f), 1);
    pass_free(&p);
    qf_model_free(m);
    qf_pool_free(pool);
}

int main(void) {
    make_models();
    RUN_TEST(test_splits_equal_whole);
    RUN_TEST(test_hidden_state_handover);
    RUN_TEST(test_bad_ranges);
    for (int a = 0; a < 3; a++) unlink(g_path[a]);
    TEST_MAIN_END();
}
