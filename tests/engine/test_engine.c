/* test_engine.c - the scheduler: batch invariance, n completions, prefix
 * cache, cancellation, timeouts, queue limits, priorities, eviction,
 * refusal, overflow policies, and no leaked kv blocks after random
 * submit/cancel traffic. Uses a small synthesized model (no shared data).
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "model/synth.h"
#include "qf_test.h"

static char g_model_path[256];
static qf_model *g_m;

typedef struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t toks[8][512];
    int32_t n_toks[8];
    char text[8][4096];
    size_t text_len[8];
    qf_finish finish[8];
    qf_usage usage[8];
    int finals, want_finals;
    uint64_t order[64]; /* request ids in the order their first token came */
    int n_order;
    int seen_first;
} collect;

static void collect_init(collect *c, int want) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->want_finals = want;
}

static void on_event(void *ud, const qf_event *ev) {
    collect *c = ud;
    pthread_mutex_lock(&c->mu);
    int i = ev->index;
    if (ev->token >= 0 && c->n_toks[i] < 512) c->toks[i][c->n_toks[i]++] = ev->token;
    if (ev->len && c->text_len[i] + ev->len < sizeof c->text[i]) {
        memcpy(c->text[i] + c->text_len[i], ev->text, ev->len);
        c->text_len[i] += ev->len;
    }
    if (ev->finish) {
        c->finish[i] = ev->finish;
        c->usage[i] = *ev->usage;
        c->finals++;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static void collect_wait(collect *c) {
    pthread_mutex_lock(&c->mu);
    while (c->finals < c->want_finals) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static qf_request greedy_req(const int32_t *prompt, int32_t n, int32_t max_tokens, void *ud) {
    qf_request r;
    memset(&r, 0, sizeof r);
    r.prompt = prompt;
    r.n_prompt = n;
    r.sample = qf_sample_params_default();
    r.sample.temperature = 0;
    r.sample.seed = 1;
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    r.on_event = on_event;
    r.ud = ud;
    return r;
}

static void make_prompt(int32_t *p, int n, int salt) {
    p[0] = 1;
    for (int i = 1; i < n; i++) p[i] = 3 + (i * 31 + salt * 17) % 256;
}

static qf_engine *engine(int parallel, int queue, qf_type kv, int64_t kv_tokens, bool prefix) {
    qf_engine_params p = qf_engine_params_default();
    p.n_ctx = 256;
    p.n_parallel = parallel;
    p.max_queue = queue;
    p.kv_type = kv;
    p.kv_tokens = kv_tokens;
    p.no_prefix_cache = !prefix;
    p.n_threads = 2;
    qf_err e = {0};
    qf_engine *eng = qf_engine_new(g_m, &p, &e);
    if (!eng) fprintf(stderr, "engine: %s\n", e.msg);
    return eng;
}

/* 16 different prompts alone, then all together: same greedy tokens. */
static void test_batch_invariance(void) {
    enum { N = 16, GEN = 24 };
    static int32_t prompts[N][40];
    static collect solo[N], together;
    qf_engine *e = engine(16, 64, QF_TYPE_F16, 0, false);
    ASSERT(e);
    for (int i = 0; i < N; i++) make_prompt(prompts[i], 10 + i, i);
    for (int i = 0; i < N; i++) {
        collect_init(&solo[i], 1);
        qf_request r = greedy_req(prompts[i], 10 + i, GEN, &solo[i]);
        ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
        collect_wait(&solo[i]);
    }
    static collect each[N];
    for (int i = 0; i < N; i++) {
        collect_init(&each[i], 1);
        qf_request r = greedy_req(prompts[i], 10 + i, GEN, &each[i]);
        ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    }
    for (int i = 0; i < N; i++) collect_wait(&each[i]);
    qf_engine_stats st;
    qf_engine_get_stats(e, &st);
    qf_engine_free(e);
    (void)together;
    for (int i = 0; i < N; i++) {
        ASSERT_EQ_INT(each[i].n_toks[0], GEN);
        ASSERT_EQ_INT(each[i].finish[0], QF_FINISH_LENGTH);
        ASSERT_MSG(!memcmp(each[i].toks[0], solo[i].toks[0], sizeof(int32_t) * GEN), "prompt %d differs in a batch", i);
    }
    /* batching really happened: fewer steps than tokens generated */
    ASSERT_MSG(st.steps < (uint64_t)(N * GEN + N * 40), "steps %llu", (unsigned long long)st.steps);
}

/* n completions share one prefill; greedy completions are identical, and
 * the prompt is computed once. */
static void test_n_completions(void) {
    static int32_t prompt[37];
    make_prompt(prompt, 37, 5);
    qf_engine *e = engine(4, 8, QF_TYPE_F16, 0, true);
    ASSERT(e);
    static collect c;
    collect_init(&c, 4);
    qf_request r = greedy_req(prompt, 37, 12, &c);
    r.n = 4;
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    collect_wait(&c);
    qf_engine_stats st;
    qf_engine_get_stats(e, &st);
    /* sampled completions with different seeds are allowed to differ */
    static collect s;
    collect_init(&s, 3);
    qf_request r2 = greedy_req(prompt, 37, 12, &s);
    r2.n = 3;
    r2.sample.temperature = 1.5f;
    r2.sample.top_k = 0;
    r2.sample.top_p = 1;
    r2.sample.min_p = 0;
    ASSERT_EQ_INT(qf_engine_submit(e, &r2, NULL, NULL), QF_OK);
    collect_wait(&s);
    qf_engine_free(e);
    for (int i = 1; i < 4; i++) ASSERT(!memcmp(c.toks[0], c.toks[i], sizeof(int32_t) * 12));
    ASSERT_EQ_INT(st.prompt_tokens_computed, 37);
    ASSERT(memcmp(s.toks[0], s.toks[1], sizeof(int32_t) * 12) || memcmp(s.toks[1], s.toks[2], sizeof(int32_t) * 12));
}

/* the second request with the same long prefix computes only its tail */
static void test_prefix_cache(void) {
    static int32_t a[100], b[100];
    make_prompt(a, 100, 9);
    memcpy(b, a, sizeof a);
    for (int i = 90; i < 100; i++) b[i] = 3 + (i * 7) % 256;
    for (int pass = 0; pass < 2; pass++) {
        qf_engine *e = engine(2, 8, QF_TYPE_F16, 0, pass == 0);
        ASSERT(e);
        static collect c1, c2, c3;
        collect_init(&c1, 1);
        collect_init(&c2, 1);
        collect_init(&c3, 1);
        qf_request r = greedy_req(a, 100, 8, &c1);
        ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
        collect_wait(&c1);
        r = greedy_req(b, 100, 8, &c2);
        ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
        collect_wait(&c2);
        r = greedy_req(a, 100, 8, &c3); /* identical prompt: all but the last block cached */
        ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
        collect_wait(&c3);
        qf_engine_stats st;
        qf_engine_get_stats(e, &st);
        qf_engine_free(e);
        ASSERT(!memcmp(c1.toks[0], c3.toks[0], sizeof(int32_t) * 8)); /* cached kv gives the same tokens */
        if (pass == 0) {
            /* b shares 5 full blocks of 16 (80 tokens); a again shares 6 (96, last token recomputed) */
            ASSERT_EQ_INT(c2.usage[0].cached_tokens, 80);
            ASSERT_EQ_INT(c3.usage[0].cached_tokens, 96);
            ASSERT_EQ_INT(st.prompt_tokens_computed, 100 + 20 + 4);
        } else {
            ASSERT_EQ_INT(st.prompt_tokens_computed, 300);
            ASSERT_EQ_INT(c3.usage[0].cached_tokens, 0);
        }
    }
}

/* 16 requests sharing a 160-token prefix, submitted at once: the prefix
 * is computed once (the others wait for it, then attach its blocks) */
static void test_shared_prefix_group(void) {
    enum { N = 16, PRE = 160, SUF = 12 };
    static int32_t prompts[N][PRE + SUF];
    static collect c[N];
    qf_engine *e = engine(N, 32, QF_TYPE_F16, 0, true);
    ASSERT(e);
    for (int i = 0; i < N; i++) {
        make_prompt(prompts[i], PRE + SUF, 3);
        for (int k = PRE; k < PRE + SUF; k++) prompts[i][k] = 3 + (k * 13 + i * 29) % 256;
        collect_init(&c[i], 1);
    }
    for (int i = 0; i < N; i++) {
        qf_request r = greedy_req(prompts[i], PRE + SUF, 4, &c[i]);
        ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    }
    for (int i = 0; i < N; i++) collect_wait(&c[i]);
    qf_engine_stats st;
    qf_engine_get_stats(e, &st);
    qf_engine_free(e);
    fprintf(stderr, "  computed %llu of %llu prompt tokens\n", (unsigned long long)st.prompt_tokens_computed,
            (unsigned long long)st.prompt_tokens_total);
    ASSERT(st.prompt_tokens_computed <= (uint64_t)(PRE + N * SUF + N * 16));
}

static void test_cancel_running_and_queued(void) {
    static int32_t prompt[20];
    make_prompt(prompt, 20, 3);
    qf_engine *e = engine(1, 8, QF_TYPE_F16, 0, false);
    ASSERT(e);
    static collect c1, c2;
    collect_init(&c1, 1);
    collect_init(&c2, 1);
    uint64_t id1, id2;
    qf_request r = greedy_req(prompt, 20, 0 /* until the context is full */, &c1);
    ASSERT_EQ_INT(qf_engine_submit(e, &r, &id1, NULL), QF_OK);
    r.ud = &c2;
    ASSERT_EQ_INT(qf_engine_submit(e, &r, &id2, NULL), QF_OK); /* waits: one slot */
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&c1.mu);
        int n = c1.n_toks[0];
        pthread_mutex_unlock(&c1.mu);
        if (n >= 3) break;
        usleep(5000);
    }
    ASSERT_EQ_INT(qf_engine_cancel(e, id2), QF_OK);
    ASSERT_EQ_INT(qf_engine_cancel(e, id1), QF_OK);
    collect_wait(&c1);
    collect_wait(&c2);
    ASSERT_EQ_INT(qf_engine_cancel(e, id1), QF_ERR_NOT_FOUND);
    usleep(20000);
    qf_engine_stats st;
    qf_engine_get_stats(e, &st);
    qf_engine_free(e);
    ASSERT_EQ_INT(c1.finish[0], QF_FINISH_CANCELLED);
    ASSERT_EQ_INT(c2.finish[0], QF_FINISH_CANCELLED);
    ASSERT(c1.n_toks[0] >= 3 && c1.n_toks[0] < 236);
    ASSERT_EQ_INT(c2.n_toks[0], 0);
    ASSERT_EQ_INT(st.running, 0);
    ASSERT_EQ_INT(st.kv_blocks_used, 0); /* cancelled blocks freed */
}

static void test_timeout(void) {
    static int32_t prompt[10];
    make_prompt(prompt, 10, 4);
    qf_engine *e = engine(1, 8, QF_TYPE_F16, 0, false);
    ASSERT(e);
    static collect c1, c2;
    collect_init(&c1, 1);
    collect_init(&c2, 1);
    qf_request r = greedy_req(prompt, 10, 1000000, &c1); /* a window never fills: only the deadline ends it */
    r.overflow = QF_OVERFLOW_WINDOW;
    r.timeout_s = 0.05;
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    r.ud = &c2; /* queued behind it, times out while waiting or right after */
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    collect_wait(&c1);
    collect_wait(&c2);
    qf_engine_stats st;
    qf_engine_get_stats(e, &st);
    qf_engine_free(e);
    ASSERT_EQ_INT(c1.finish[0], QF_FINISH_TIMEOUT);
    ASSERT_EQ_INT(c2.finish[0], QF_FINISH_TIMEOUT);
    ASSERT_EQ_INT(st.requests_timeout, 2);
}

static void test_queue_full_and_refusals(void) {
    static int32_t prompt[300];
    make_prompt(prompt, 300, 1);
    qf_engine *e = engine(1, 2, QF_TYPE_F16, 0, false);
    ASSERT(e);
    static collect c[4];
    qf_err err = {0};
    uint64_t ids[4];
    for (int i = 0; i < 3; i++) {
        collect_init(&c[i], 1);
        qf_request r = greedy_req(prompt, 8, 0, &c[i]);
        ASSERT_EQ_INT(qf_engine_submit(e, &r, &ids[i], &err), QF_OK);
        for (int k = 0; i == 0 && k < 400; k++) { /* first one running: the other two wait */
            qf_engine_stats st;
            qf_engine_get_stats(e, &st);
            if (st.running == 1) break;
            usleep(5000);
        }
    }
    collect_init(&c[3], 1);
    qf_request r4 = greedy_req(prompt, 8, 0, &c[3]);
    ASSERT_EQ_INT(qf_engine_submit(e, &r4, &ids[3], &err), QF_ERR_BUSY);
    ASSERT(strstr(err.msg, "queue full"));
    /* a prompt longer than the context: refused with both numbers */
    qf_request r = greedy_req(prompt, 300, 4, &c[3]);
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, &err), QF_ERR_RANGE);
    ASSERT(strstr(err.msg, "300") && strstr(err.msg, "256"));
    /* bad requests */
    r = greedy_req(prompt, 0, 4, &c[3]);
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, &err), QF_ERR_INVALID);
    int32_t bad[2] = {1, 100000};
    r = greedy_req(bad, 2, 4, &c[3]);
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, &err), QF_ERR_INVALID);
    r = greedy_req(prompt, 8, 4, &c[3]);
    r.n = 5;
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, &err), QF_ERR_INVALID);
    qf_engine_free(e); /* cancels all three: final events delivered */
    for (int i = 0; i < 3; i++) ASSERT_EQ_INT(c[i].finish[0], QF_FINISH_CANCELLED);
}

static void test_truncate_and_window(void) {
    static int32_t prompt[300];
    make_prompt(prompt, 300, 2);
    qf_engine *e = engine(1, 4, QF_TYPE_F16, 0, false);
    ASSERT(e);
    static collect c1, c2;
    collect_init(&c1, 1);
    collect_init(&c2, 1);
    qf_request r = greedy_req(prompt, 300, 8, &c1);
    r.overflow = QF_OVERFLOW_TRUNCATE;
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    collect_wait(&c1);
    ASSERT_EQ_INT(c1.n_toks[0], 8);
    ASSERT(c1.usage[0].prompt_tokens <= 256 - 8);
    /* window: 300-token prompt + 300 new tokens in a 256-token context */
    r = greedy_req(prompt, 300, 300, &c2);
    r.overflow = QF_OVERFLOW_WINDOW;
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    collect_wait(&c2);
    qf_engine_stats st;
    qf_engine_get_stats(e, &st);
    qf_engine_free(e);
    ASSERT_EQ_INT(c2.finish[0], QF_FINISH_LENGTH);
    ASSERT_EQ_INT(c2.n_toks[0], 300);
    ASSERT_EQ_INT(st.kv_blocks_used, 0);
}

/* higher priority runs first, FIFO within a priority */
static void test_priority_order(void) {
    static int32_t prompt[8];
    make_prompt(prompt, 8, 7);
    qf_engine *e = engine(1, 16, QF_TYPE_F16, 0, false);
    ASSERT(e);
    static collect blocker, c[5];
    collect_init(&blocker, 1);
    /* long enough that all five are queued before it ends, even on a
     * loaded machine (checked below) */
    qf_request r = greedy_req(prompt, 8, 200, &blocker);
    ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    int prio[5] = {0, 5, 0, 5, 9};
    double t_sub[5];
    for (int i = 0; i < 5; i++) {
        collect_init(&c[i], 1);
        r = greedy_req(prompt, 8, 2, &c[i]);
        r.priority = prio[i];
        t_sub[i] = qf_now_s();
        ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    }
    for (int i = 0; i < 5; i++) collect_wait(&c[i]);
    qf_engine_free(e);
    ASSERT_MSG(c[4].usage[0].queue_s > 0.0, "the blocker finished before the last submission: no queue to order");
    for (int i = 0; i < 4; i++) /* nobody started before the last submission */
        ASSERT_MSG(t_sub[i] + c[i].usage[0].queue_s >= t_sub[4], "request %d started before the last submission", i);
    /* start time (submission + time queued) orders the requests: 4 (prio
     * 9), 1, 3 (prio 5), 0, 2 (prio 0). Start times, not queue times: a
     * request submitted later waits less for the same start. */
    int expect[5] = {4, 1, 3, 0, 2};
    for (int k = 1; k < 5; k++)
        ASSERT_MSG(t_sub[expect[k - 1]] + c[expect[k - 1]].usage[0].queue_s <=
                       t_sub[expect[k]] + c[expect[k]].usage[0].queue_s,
                   "order broken at %d", k);
}

/* a pool too small for everyone: cached blocks get evicted, every request
 * still completes correctly, and a request that can never fit is refused */
static void test_eviction_under_pressure(void) {
    qf_engine *e = engine(2, 64, QF_TYPE_F16, 128 /* 8 blocks */, true);
    ASSERT(e);
    static int32_t prompts[12][60];
    static collect c[12];
    for (int i = 0; i < 12; i++) {
        make_prompt(prompts[i], 40, 100 + i);
        collect_init(&c[i], 1);
        qf_request r = greedy_req(prompts[i], 40, 8, &c[i]);
        ASSERT_EQ_INT(qf_engine_submit(e, &r, NULL, NULL), QF_OK);
    }
    for (int i = 0; i < 12; i++) collect_wait(&c[i]);
    qf_err err = {0};
    static int32_t big[200];
    make_prompt(big, 200, 1);
    qf_request r = greedy_req(big, 200, 8, &c[0]);
    qf_status st = qf_engine_submit(e, &r, NULL, &err);
    qf_engine_stats s;
    qf_engine_get_stats(e, &s);
    qf_engine_free(e);
    for (int i = 0; i < 12; i++) ASSERT_EQ_INT(c[i].finish[0], QF_FINISH_LENGTH);
    ASSERT_EQ_INT(st, QF_ERR_RANGE);
    ASSERT(strstr(err.msg, "blocks"));
    ASSERT_EQ_INT(s.kv_blocks_used, 0);
    ASSERT(s.kv_blocks_cached <= 8);
}

/* 1,000 random submits and cancels; at the end every block is free or
 * cached (none leaked), nothing runs, every request got its final event. */
static void test_random_submit_cancel_no_leak(void) {
    qf_engine *e = engine(4, 700, QF_TYPE_F16, 0, true);
    ASSERT(e);
    static int32_t prompts[8][50];
    for (int i = 0; i < 8; i++) make_prompt(prompts[i], 50, i);
    static collect c;
    collect_init(&c, 0);
    unsigned seed = qf_test_seed();
    uint64_t ids[1000];
    int accepted = 0;
    for (int i = 0; i < 1000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned x = seed >> 8;
        if (x % 3 == 0 && accepted > 0) {
            qf_engine_cancel(e, ids[(x >> 4) % accepted]);
            continue;
        }
        qf_request r = greedy_req(prompts[x % 8], 10 + (int)(x % 40), 1 + (int)(x % 6), &c);
        r.n = 1 + (int)((x >> 6) % 2);
        pthread_mutex_lock(&c.mu);
        c.want_finals += r.n;
        pthread_mutex_unlock(&c.mu);
        if (qf_engine_submit(e, &r, &ids[accepted], NULL) == QF_OK) {
            accepted++;
        } else {
            pthread_mutex_lock(&c.mu);
            c.want_finals -= r.n;
            pthread_mutex_unlock(&c.mu);
        }
        if (i % 50 == 0) usleep(1000);
    }
    collect_wait(&c);
    usleep(20000);
    qf_engine_stats st;
    qf_engine_get_stats(e, &st);
    qf_engine_free(e);
    ASSERT(accepted > 100);
    ASSERT_EQ_INT(st.running, 0);
    ASSERT_EQ_INT(st.queued, 0);
    ASSERT_EQ_INT(st.kv_blocks_used, 0);
    ASSERT_EQ_INT(st.kv_blocks_total - st.kv_blocks_cached - st.kv_blocks_used >= 0, 1);
}

static void test_complete_and_stop(void) {
    qf_engine *e = engine(2, 8, QF_TYPE_Q8_0, 0, true);
    ASSERT(e);
    static int32_t prompt[12];
    make_prompt(prompt, 12, 3);
    qf_request r = greedy_req(prompt, 12, 16, NULL);
    char *texts[2];
    qf_finish fin[2];
    qf_usage u;
    qf_err err = {0};
    r.n = 2;
    ASSERT_EQ_INT(qf_engine_complete(e, &r, texts, fin, &u, &err), QF_OK);
    ASSERT_EQ_INT(fin[0], QF_FINISH_LENGTH);
    ASSERT_STR_EQ(texts[0], texts[1]);
    ASSERT_EQ_INT(u.completion_tokens, 16);
    /* a stop string cut from the greedy text ends it right before */
    size_t len = strlen(texts[0]);
    char stop[4] = {0};
    if (len >= 6) {
        memcpy(stop, texts[0] + 3, 3);
        const char *stops[1] = {stop};
        r.n = 1;
        r.stop = stops;
        r.n_stop = 1;
        char *t2[1];
        ASSERT_EQ_INT(qf_engine_complete(e, &r, t2, fin, &u, &err), QF_OK);
        ASSERT_EQ_INT(fin[0], QF_FINISH_STOP);
        ASSERT(strlen(t2[0]) <= 3 && !strncmp(t2[0], texts[0], strlen(t2[0])));
        qf_free(t2[0]);
    }
    qf_free(texts[0]);
    qf_free(texts[1]);
    qf_engine_free(e);
}

/* constrained decoding: a random model still writes schema-valid JSON */
static void test_json_schema(void) {
    qf_engine *e = engine(2, 8, QF_TYPE_F16, 0, true);
    ASSERT(e);
    static int32_t prompt[12];
    make_prompt(prompt, 12, 8);
    qf_request r = greedy_req(prompt, 12, 200, NULL);
    r.ignore_eos = false;
    r.sample.temperature = 0.8f;
    r.json_schema = "{\"type\":\"object\",\"properties\":{\"question\":{\"type\":\"string\",\"maxLength\":12},"
                    "\"n\":{\"type\":\"integer\"}},\"required\":[\"question\",\"n\"]}";
    r.n = 2;
    char *texts[2];
    qf_finish fin[2];
    qf_err err = {0};
    ASSERT_EQ_INT(qf_engine_complete(e, &r, texts, fin, NULL, &err), QF_OK);
    for (int i = 0; i < 2; i++) {
        cJSON *j = cJSON_Parse(texts[i]);
        bool ok = j && cJSON_IsString(cJSON_GetObjectItem(j, "question")) && cJSON_IsNumber(cJSON_GetObjectItem(j, "n"));
        if (!ok) fprintf(stderr, "not schema-valid: %s\n", texts[i]);
        cJSON_Delete(j);
        ASSERT(ok);
        ASSERT_EQ_INT(fin[i], QF_FINISH_STOP);
        qf_free(texts[i]);
    }
    r.json_schema = "{\"type\": nope}";
    qf_status bad = qf_engine_submit(e, &r, NULL, &err);
    ASSERT(bad == QF_ERR_FORMAT || bad == QF_ERR_INVALID);
    ASSERT(err.msg[0]);
    r.json_schema = "json";
    r.n = 1;
    ASSERT_EQ_INT(qf_engine_complete(e, &r, texts, fin, NULL, &err), QF_OK);
    cJSON *j = cJSON_Parse(texts[0]);
    bool obj = cJSON_IsObject(j);
    cJSON_Delete(j);
    qf_free(texts[0]);
    qf_engine_free(e);
    ASSERT(obj);
}

/* Schema-constrained completions decoded together (the draws of a step
 * spread over the engine's threads: each completion's sampler and grammar
 * are its own) equal the same requests decoded one at a time (greedy: the
 * engine's logits do not depend on the batch, test_batch_invariance); and
 * sampled ones drawn together all keep to the schema. */
static void test_parallel_draws(void) {
    enum { N = 8 };
    static int32_t prompts[N][24];
    static collect solo[N], each[N];
    const char *schema = "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\",\"maxLength\":40}},"
                         "\"required\":[\"q\"]}";
    qf_engine *e = engine(N, 32, QF_TYPE_F16, 0, false);
    ASSERT(e);
    qf_request r[N];
    for (int i = 0; i < N; i++) {
        make_prompt(prompts[i], 12 + i, 40 + i);
        r[i] = greedy_req(prompts[i], 12 + i, 80, &solo[i]);
        r[i].ignore_eos = false;
        r[i].json_schema = schema;
    }
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) /* greedy, one at a time */
            for (int i = 0; i < N; i++) {
                collect_init(&solo[i], 1);
                r[i].ud = &solo[i];
                ASSERT_EQ_INT(qf_engine_submit(e, &r[i], NULL, NULL), QF_OK);
                collect_wait(&solo[i]);
            }
        for (int i = 0; i < N; i++) {
            collect_init(&each[i], 1);
            r[i].ud = &each[i];
            if (pass == 1) r[i].sample.temperature = 0.9f, r[i].sample.seed = 100 + (uint64_t)i;
            ASSERT_EQ_INT(qf_engine_submit(e, &r[i], NULL, NULL), QF_OK);
        }
        for (int i = 0; i < N; i++) collect_wait(&each[i]);
        for (int i = 0; i < N; i++) {
            ASSERT_EQ_INT(each[i].finish[0], QF_FINISH_STOP);
            cJSON *j = cJSON_Parse(each[i].text[0]);
            ASSERT_MSG(cJSON_IsString(cJSON_GetObjectItem(j, "q")), "not schema-valid: %s", each[i].text[0]);
            cJSON_Delete(j);
            if (pass == 0)
                ASSERT_MSG(each[i].n_toks[0] == solo[i].n_toks[0] && !strcmp(each[i].text[0], solo[i].text[0]),
                           "request %d: alone %s, together %s", i, solo[i].text[0], each[i].text[0]);
        }
    }
    qf_engine_free(e);
}

static void test_memory_plan(void) {
    qf_engine_params p = qf_engine_params_default();
    p.n_ctx = 256;
    p.mem_budget = 1 << 20; /* 1 MiB: too small */
    qf_mem_plan plan;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_engine_plan(g_m, &p, &plan, &err), QF_ERR_RANGE);
    ASSERT(strstr(err.msg, "budget"));
    ASSERT(qf_engine_new(g_m, &p, &err) == NULL);
    p.mem_budget = 0;
    ASSERT_EQ_INT(qf_engine_plan(g_m, &p, &plan, &err), QF_OK);
    ASSERT(plan.kv > 0 && plan.weights > 0 && plan.fits);
}

int main(void) {
    snprintf(g_model_path, sizeof g_model_path, "/tmp/qf-test-engine-%d.gguf", (int)getpid());
    qf_synth_params sp = {0};
    sp.arch = QF_ARCH_LLAMA;
    sp.n_embd = 128; /* head dim 32: a q8_0 kv cache needs 32-wide blocks */
    sp.n_layer = 2;
    sp.n_head = 4;
    sp.n_head_kv = 2;
    sp.n_ff = 128;
    sp.ftype = QF_FTYPE_Q8_0;
    sp.seed = 5;
    qf_err err = {0};
    if (qf_model_synth(&sp, g_model_path, &err) != QF_OK || !(g_m = qf_model_load(g_model_path, NULL, &err))) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    RUN_TEST(test_batch_invariance);
    RUN_TEST(test_n_completions);
    RUN_TEST(test_prefix_cache);
    RUN_TEST(test_shared_prefix_group);
    RUN_TEST(test_cancel_running_and_queued);
    RUN_TEST(test_timeout);
    RUN_TEST(test_queue_full_and_refusals);
    RUN_TEST(test_truncate_and_window);
    RUN_TEST(test_priority_order);
    RUN_TEST(test_eviction_under_pressure);
    RUN_TEST(test_random_submit_cancel_no_leak);
    RUN_TEST(test_complete_and_stop);
    RUN_TEST(test_json_schema);
    RUN_TEST(test_parallel_draws);
    RUN_TEST(test_memory_plan);
    qf_model_free(g_m);
    remove(g_model_path);
    TEST_MAIN_END();
}
