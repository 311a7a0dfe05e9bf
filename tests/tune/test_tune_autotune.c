/* test_tune_autotune.c - the sweeps on a tiny synthetic model: trial
 * bookkeeping (every completed trial generated exactly P x gen tokens),
 * the choice rules, skipping what does not fit, and the budget.
 */
#include <unistd.h>

#include "model/synth.h"
#include "qf_test.h"
#include "tune/autotune.h"

static char g_model[256];

static qf_model *tiny(void) {
    qf_err err = {0};
    qf_model *m = qf_model_load(g_model, NULL, &err);
    if (!m) fprintf(stderr, "load: %s\n", err.msg);
    return m;
}

static int g_calls;
static void count_trial(void *ud, const qf_trial *t) {
    (void)t;
    (*(int *)ud)++;
}

static void test_sweeps(void) {
    qf_model *m = tiny();
    ASSERT(m);
    int threads[] = {1};
    int32_t par[] = {1, 2, 3};
    int32_t bat[] = {512, 8};
    qf_autotune_params p = qf_autotune_params_default();
    p.threads = threads;
    p.n_threads = 1;
    p.parallel = par;
    p.n_parallel = 3;
    p.batch = bat;
    p.n_batch = 2;
    p.prompt_tokens = 20;
    p.gen_tokens = 5;
    p.budget_s = 120;
    g_calls = 0;
    p.on_trial = count_trial;
    p.ud = &g_calls;
    qf_autotune_result r;
    qf_err err = {0};
    qf_status st = qf_autotune_run(m, &p, &r, &err);
    ASSERT_MSG(st == QF_OK, "%s", err.msg);
    /* parallel 1, 2, 3 at 1 thread; no other thread count; batch 8 (512 is the measured default) */
    ASSERT_EQ_INT(r.n_trials, 4);
    ASSERT_EQ_INT(g_calls, 4);
    for (int i = 0; i < r.n_trials; i++) {
        const qf_trial *t = &r.trials[i];
        ASSERT(!t->skipped && !t->cut);
        ASSERT_EQ_INT(t->threads, 1);
        ASSERT_EQ_INT(t->tokens, (uint64_t)t->parallel * 5);
        ASSERT(t->wall_s > 0);
        ASSERT_NEAR(t->tokens_per_s, t->tokens / t->wall_s, 1e-6 * t->tokens_per_s);
    }
    ASSERT_EQ_INT(r.trials[0].phase, QF_TRIAL_PARALLEL);
    ASSERT_EQ_INT(r.trials[2].parallel, 3);
    ASSERT_EQ_INT(r.trials[3].phase, QF_TRIAL_BATCH);
    ASSERT_EQ_INT(r.trials[3].batch, 8);
    /* the choice rules, re-derived from the trials */
    double best = 0;
    for (int i = 0; i < 3; i++)
        if (r.trials[i].tokens_per_s > best) best = r.trials[i].tokens_per_s;
    int32_t want_p = 0;
    for (int i = 0; i < 3; i++)
        if (r.trials[i].tokens_per_s >= 0.95 * best && (!want_p || r.trials[i].parallel < want_p))
            want_p = r.trials[i].parallel;
    ASSERT_EQ_INT(r.parallel, want_p);
    ASSERT_EQ_INT(r.threads, 1);
    double r512 = 0;
    for (int i = 0; i < 3; i++)
        if (r.trials[i].parallel == want_p) r512 = r.trials[i].tokens_per_s;
    ASSERT_EQ_INT(r.batch, r.trials[3].tokens_per_s > 1.05 * r512 ? 8 : 512);
    ASSERT_NEAR(r.tokens_per_s, r.batch == 8 ? r.trials[3].tokens_per_s : r512, 1e-9);
    ASSERT(!r.budget_hit);
    ASSERT_EQ_INT(r.n_ctx, 64); /* the synthetic model's trained context */
    qf_autotune_result_deinit(&r);
    qf_model_free(m);
}

static void test_fit_and_budget(void) {
    qf_model *m = tiny();
    ASSERT(m);
    /* a machine so small that only a few slots of the full context fit */
    qf_hw hw;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_hw_parse("{\"cores\":{\"performance\":1},\"memory\":{\"total\":\"2G\"}}",
                              "small.json", &hw, &err),
                  QF_OK);
    int32_t par[] = {1, 256};
    qf_autotune_params p = qf_autotune_params_default();
    p.hw = &hw;
    p.parallel = par;
    p.n_parallel = 2;
    p.n_ctx =
        1 << 24; /* 16M positions x 256 B per token = 4 GiB per slot: not even one fits 2 GiB */
    p.budget_s = 30;
    qf_autotune_result r;
    ASSERT_EQ_INT(qf_autotune_run(m, &p, &r, &err), QF_ERR_RANGE);
    qf_autotune_result_deinit(&r);
    p.n_ctx = 1 << 20; /* 256 MiB per slot: a few fit, 256 does not */
    p.gen_tokens = 2;
    p.prompt_tokens = 4;
    ASSERT_EQ_INT(qf_autotune_run(m, &p, &r, &err), QF_OK);
    ASSERT(r.max_parallel >= 1 && r.max_parallel < 256);
    bool skipped256 = false;
    for (int i = 0; i < r.n_trials; i++)
        if (r.trials[i].parallel == 256)
            skipped256 = r.trials[i].skipped && strstr(r.trials[i].note, "fit");
    ASSERT(skipped256);
    ASSERT_EQ_INT(r.parallel, 1);
    qf_autotune_result_deinit(&r);

    /* a budget too short for anything: every trial skipped or cut, QF_ERR_TIMEOUT */
    p = qf_autotune_params_default();
    p.budget_s = 1e-6;
    qf_status st = qf_autotune_run(m, &p, &r, &err);
    ASSERT_EQ_INT(st, QF_ERR_TIMEOUT);
    ASSERT(r.budget_hit);
    for (int i = 0; i < r.n_trials; i++)
        ASSERT(r.trials[i].skipped || r.trials[i].cut);
    qf_autotune_result_deinit(&r);

    /* bad lists */
    int bad_t[] = {0};
    p = qf_autotune_params_default();
    p.threads = bad_t;
    p.n_threads = 1;
    ASSERT_EQ_INT(qf_autotune_run(m, &p, &r, &err), QF_ERR_INVALID);
    qf_autotune_result_deinit(&r);
    p = qf_autotune_params_default();
    p.gen_tokens = -1;
    ASSERT_EQ_INT(qf_autotune_run(m, &p, &r, &err), QF_ERR_INVALID);
    qf_autotune_result_deinit(&r);
    qf_model_free(m);
}

int main(void) {
    snprintf(g_model, sizeof g_model, "/tmp/qf_tune_autotune_%d.gguf", (int)getpid());
    qf_synth_params sp = {0};
    sp.arch = QF_ARCH_LLAMA;
    sp.n_embd = 64;
    sp.n_layer = 2;
    sp.n_head = 4;
    sp.n_head_kv = 2;
    sp.n_ff = 128;
    sp.n_ctx = 64;
    sp.ftype = QF_FTYPE_F16;
    sp.seed = 7;
    qf_err err = {0};
    if (qf_model_synth(&sp, g_model, &err) != QF_OK) {
        fprintf(stderr, "synth: %s\n", err.msg);
        return 1;
    }
    RUN_TEST(test_sweeps);
    RUN_TEST(test_fit_and_budget);
    unlink(g_model);
    TEST_MAIN_END();
}
