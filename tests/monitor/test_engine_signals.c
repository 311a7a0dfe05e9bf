/* test_engine_signals.c - the engine counters the detector reads, from a
 * real engine on a small synthesized model: kv_wait_steps rises when
 * admission has a free slot but not enough kv blocks (and stays 0 when the
 * pool is ample), prefix_lookups counts admitted requests; fed to the
 * detector, a starved pool raises kv_pool_full with the brief's message. */
#include <pthread.h>
#include <unistd.h>

#include "base/log.h"
#include "engine/engine.h"
#include "model/synth.h"
#include "monitor/alert.h"
#include "qf_test.h"

static char g_path[256];
static qf_model *g_m;

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finals;
} waiter;

static void on_event(void *ud, const qf_event *ev) {
    waiter *w = ud;
    if (!ev->finish) return;
    pthread_mutex_lock(&w->mu);
    w->finals++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Run n requests of prompt 8 + max_tokens new tokens at once; stats out. */
static void run(int64_t kv_tokens, int n, int max_tokens, qf_engine_stats *st) {
    qf_engine_params p = qf_engine_params_default();
    p.n_parallel = n;
    p.kv_tokens = kv_tokens;
    p.kv_block = 16;
    p.n_threads = 1;
    qf_err err = {0};
    qf_engine *e = qf_engine_new(g_m, &p, &err);
    if (!e) {
        fprintf(stderr, "engine: %s\n", err.msg);
        memset(st, 0, sizeof *st);
        return;
    }
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    int32_t prompt[8];
    for (int r = 0; r < n; r++) {
        for (int i = 0; i < 8; i++)
            prompt[i] = 1 + (r * 8 + i) % 50; /* different prompts: no sharing */
        qf_request q;
        memset(&q, 0, sizeof q);
        q.prompt = prompt;
        q.n_prompt = 8;
        q.sample = qf_sample_params_default();
        q.sample.temperature = 0;
        q.max_tokens = max_tokens;
        q.ignore_eos = true;
        q.on_event = on_event;
        q.ud = &w;
        if (qf_engine_submit(e, &q, NULL, &err) != QF_OK) fprintf(stderr, "submit: %s\n", err.msg);
    }
    pthread_mutex_lock(&w.mu);
    while (w.finals < n)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    qf_engine_get_stats(e, st);
    qf_engine_free(e);
}

static void test_kv_wait_counter(void) {
    qf_engine_stats st;
    /* 4 blocks of 16 tokens; each request reserves 3 (8 + 40 tokens): the
     * second waits for the first to finish although a slot is free */
    run(64, 2, 40, &st);
    ASSERT(st.steps > 0);
    ASSERT_MSG(st.kv_wait_steps > 0, "kv_wait_steps %llu of %llu steps",
               (unsigned long long)st.kv_wait_steps, (unsigned long long)st.steps);
    ASSERT(st.kv_wait_steps <= st.steps);
    /* the second request waits while the first decodes its ~40 tokens */
    ASSERT(st.kv_wait_steps >= 20);
    ASSERT_EQ_INT(st.prefix_lookups, 2);
    ASSERT_EQ_INT(st.requests_total, 2);

    /* the default pool (n_ctx * n_parallel) never makes admission wait */
    qf_engine_stats ok;
    run(0, 2, 40, &ok);
    ASSERT(ok.steps > 0);
    ASSERT_EQ_INT(ok.kv_wait_steps, 0);
    ASSERT_EQ_INT(ok.prefix_lookups, 2);

    /* fed to the detector: kv_pool_full fires with the brief's advice */
    qf_alert_config c = qf_alert_config_default();
    c.kv_min_steps = 10;
    qf_alerts *a = qf_alerts_new(&c, NULL);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    s.t = 0;
    qf_alerts_feed(a, &s);
    s.t = 1;
    s.steps = st.steps;
    s.kv_wait_steps = st.kv_wait_steps;
    qf_alerts_feed(a, &s);
    qf_alert al;
    ASSERT_EQ_INT(qf_alerts_active(a, &al, 1), 1);
    ASSERT_STR_EQ(al.name, "kv_pool_full");
    ASSERT_NEAR(al.value, (double)st.kv_wait_steps / (double)st.steps, 1e-12);
    ASSERT(strstr(al.message, "raise --ctx budget or lower --parallel"));
    qf_alerts_free(a);
}

int main(void) {
    qf_log_set_level(QF_LOG_ERROR);
    snprintf(g_path, sizeof g_path, "/tmp/qf-test-monitor-%d.gguf", (int)getpid());
    qf_synth_params sp = {0};
    sp.arch = QF_ARCH_LLAMA;
    sp.n_embd = 64;
    sp.n_layer = 1;
    sp.n_head = 2;
    sp.n_head_kv = 2;
    sp.n_ff = 64;
    sp.ftype = QF_FTYPE_Q8_0;
    sp.seed = 7;
    qf_err err = {0};
    if (qf_model_synth(&sp, g_path, &err) != QF_OK || !(g_m = qf_model_load(g_path, NULL, &err))) {
        fprintf(stderr, "setup: %s\n", err.msg);
        unlink(g_path);
        return 1;
    }
    RUN_TEST(test_kv_wait_counter);
    qf_model_free(g_m);
    unlink(g_path);
    TEST_MAIN_END();
}
