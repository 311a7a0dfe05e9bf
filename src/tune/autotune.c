/* autotune.c - measured sweeps over the engine's public API.
 *
 * Each trial builds a fresh engine (the settings are fixed at qf_engine_new),
 * submits its requests at once and waits on a condition variable that the
 * event callback signals at the last final event. The callback runs on the
 * engine's scheduler thread, so the counters it bumps sit under a mutex.
 * Nothing here reads the model beyond its vocabulary size and what the
 * memory plan needs.
 *
 * The trial list only grows (skipped trials are recorded too, so the
 * caller can print what was not run and why); choices are made from
 * completed, uncut trials only.
 */
#include "tune/autotune.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "tune/plan.h"

const char *qf_trial_phase_name(qf_trial_phase p) {
    static const char *names[] = {"parallel", "threads", "batch"};
    return (unsigned)p < 3 ? names[p] : "?";
}

qf_autotune_params qf_autotune_params_default(void) {
    qf_autotune_params p;
    memset(&p, 0, sizeof p);
    p.kv_type = QF_TYPE_F16;
    return p;
}

void qf_autotune_result_deinit(qf_autotune_result *r) {
    if (!r) return;
    qf_free(r->trials);
    r->trials = NULL;
    r->n_trials = 0;
}

/* ---- one trial ---- */

typedef struct trial_sync {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int left;
    int timeouts;
    uint64_t tokens;
} trial_sync;

static void on_event(void *ud, const qf_event *ev) {
    trial_sync *s = ud;
    pthread_mutex_lock(&s->mu);
    if (ev->token >= 0) s->tokens++;
    if (ev->finish == QF_FINISH_TIMEOUT) s->timeouts++;
    if (ev->finish && --s->left == 0) pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void rand_tokens(int32_t *t, int32_t n, int32_t n_vocab, uint64_t seed) {
    for (int32_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((seed >> 33) % (uint64_t)n_vocab);
    }
}

typedef struct ctx {
    const qf_model *m;
    const qf_autotune_params *p;
    int32_t prompt, gen;
    double deadline; /* qf_now_s() value */
    qf_autotune_result *out;
    double best_rate; /* highest completed rate so far (for time estimates) */
} ctx;

/* Run P requests of n_prompt + n_gen tokens; fills t (tokens, wall, cut). */
static qf_status run_load(ctx *c, int threads, int32_t P, int32_t batch, int32_t n_prompt,
                          int32_t n_gen, qf_trial *t, qf_err *err) {
    qf_engine_params ep = qf_engine_params_default();
    ep.n_ctx = ((n_prompt + n_gen + 16 + 15) / 16) * 16;
    ep.n_parallel = P;
    ep.max_queue = P + 1;
    ep.n_batch = batch;
    ep.n_threads = threads;
    ep.kv_type = c->p->kv_type;
    ep.kv_tokens = (int64_t)ep.n_ctx * P;
    ep.no_prefix_cache = true; /* distinct prompts: nothing to share, measure the compute */
    qf_engine *e = qf_engine_new(c->m, &ep, err);
    if (!e) return err && err->code ? err->code : QF_ERR_INTERNAL;
    int32_t *prompt = qf_malloc((size_t)n_prompt * sizeof *prompt);
    if (!prompt) {
        qf_engine_free(e);
        return QF_ERR_SET(err, QF_ERR_NOMEM, "autotune: out of memory");
    }
    trial_sync s;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    s.left = P;
    s.timeouts = 0;
    s.tokens = 0;
    double left_s = c->deadline - qf_now_s();
    qf_status st = QF_OK;
    double t0 = qf_now_s();
    int submitted = 0;
    for (int32_t i = 0; i < P; i++) {
        rand_tokens(prompt, n_prompt, c->m->hp.n_vocab, 1000003u * (uint64_t)(i + 1) + (uint64_t)P);
        qf_request r;
        memset(&r, 0, sizeof r);
        r.prompt = prompt;
        r.n_prompt = n_prompt;
        r.sample = qf_sample_params_default();
        r.sample.temperature = 0;
        r.sample.seed = 1;
        r.max_tokens = n_gen;
        r.ignore_eos = true;
        r.timeout_s = left_s > 0.001 ? left_s : 0.001;
        r.on_event = on_event;
        r.ud = &s;
        if ((st = qf_engine_submit(e, &r, NULL, err)) != QF_OK) break;
        submitted++;
    }
    pthread_mutex_lock(&s.mu);
    s.left -= P - submitted; /* requests never accepted deliver no events */
    while (s.left > 0)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    double wall = qf_now_s() - t0;
    qf_engine_free(e); /* after the wait: no event can arrive any more */
    qf_free(prompt);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    if (st != QF_OK) return st;
    t->tokens = s.tokens;
    t->wall_s = wall;
    t->tokens_per_s = wall > 0 ? (double)s.tokens / wall : 0;
    t->cut = s.timeouts > 0;
    return QF_OK;
}

static qf_status add_trial(ctx *c, const qf_trial *t, qf_err *err) {
    qf_autotune_result *o = c->out;
    qf_trial *nt = qf_realloc(o->trials, (size_t)(o->n_trials + 1) * sizeof *nt);
    if (!nt) return QF_ERR_SET(err, QF_ERR_NOMEM, "autotune: out of memory");
    o->trials = nt;
    o->trials[o->n_trials++] = *t;
    if (c->p->on_trial) c->p->on_trial(c->p->ud, t);
    return QF_OK;
}

/* Run (or skip for time) one trial and record it; *rate = its rate, or -1
 * when skipped or cut. */
static qf_status trial(ctx *c, qf_trial_phase ph, int threads, int32_t P, int32_t batch,
                       double *rate, qf_err *err) {
    qf_trial t;
    memset(&t, 0, sizeof t);
    t.phase = ph;
    t.threads = threads;
    t.parallel = P;
    t.batch = batch;
    *rate = -1;
    double left = c->deadline - qf_now_s();
    double est = c->best_rate > 0 ? (double)P * c->gen / c->best_rate : 0;
    if (left <= 0 || est > left) {
        t.skipped = true;
        snprintf(t.note, sizeof t.note, "skipped: %s",
                 left <= 0 ? "the budget is spent" : "would not finish within the budget");
        c->out->budget_hit = true;
        return add_trial(c, &t, err);
    }
    qf_status st = run_load(c, threads, P, batch, c->prompt, c->gen, &t, err);
    if (st != QF_OK) return st;
    if (t.cut) {
        c->out->budget_hit = true;
        snprintf(t.note, sizeof t.note, "cut at the budget: partial");
    } else {
        *rate = t.tokens_per_s;
        if (t.tokens_per_s > c->best_rate) c->best_rate = t.tokens_per_s;
    }
    return add_trial(c, &t, err);
}

/* The rate of a completed trial with these settings, or -1. */
static double rate_of(const qf_autotune_result *o, int threads, int32_t P, int32_t batch) {
    for (int i = o->n_trials - 1; i >= 0; i--) {
        const qf_trial *t = &o->trials[i];
        if (!t->skipped && !t->cut && t->threads == threads && t->parallel == P &&
            t->batch == batch)
            return t->tokens_per_s;
    }
    return -1;
}

/* ---- the sweeps ---- */

static qf_status check_list(const char *what, const void *list, int n, bool is_int, long lo,
                            long hi, qf_err *err) {
    if (!list) return QF_OK;
    if (n <= 0 || n > 64)
        return QF_ERR_SET(err, QF_ERR_INVALID, "autotune: %s list: 1..64 values", what);
    for (int i = 0; i < n; i++) {
        long v = is_int ? ((const int *)list)[i] : ((const int32_t *)list)[i];
        if (v < lo || v > hi)
            return QF_ERR_SET(err, QF_ERR_INVALID, "autotune: %s %ld: not in %ld..%ld", what, v, lo,
                              hi);
    }
    return QF_OK;
}

qf_status qf_autotune_run(const qf_model *m, const qf_autotune_params *p, qf_autotune_result *out,
                          qf_err *err) {
    memset(out, 0, sizeof *out);
    double start = qf_now_s();
    qf_status st;
    if ((st = check_list("threads", p->threads, p->n_threads, true, 1, 1024, err)) ||
        (st = check_list("parallel", p->parallel, p->n_parallel, false, 1, 256, err)) ||
        (st = check_list("batch", p->batch, p->n_batch, false, 1, 1 << 20, err)))
        return st;
    if (p->prompt_tokens < 0 || p->prompt_tokens > 4096 || p->gen_tokens < 0 ||
        p->gen_tokens > 4096 || p->budget_s < 0 || p->budget_s > 1e6 || p->n_ctx < 0 ||
        p->n_ctx > (1 << 24))
        return QF_ERR_SET(err, QF_ERR_INVALID,
                          "autotune: prompt %d / generated %d tokens (0..4096), budget %g s, ctx "
                          "%d: out of range",
                          p->prompt_tokens, p->gen_tokens, p->budget_s, p->n_ctx);
    ctx c = {m,
             p,
             p->prompt_tokens ? p->prompt_tokens : 32,
             p->gen_tokens ? p->gen_tokens : 16,
             start + (p->budget_s > 0 ? p->budget_s : 60),
             out,
             0};

    /* how many slots the memory plan allows at the target context */
    qf_hw hw_det;
    const qf_hw *hw = p->hw;
    if (!hw) {
        if ((st = qf_hw_detect(&hw_det, err)) != QF_OK) return st;
        hw = &hw_det;
    }
    qf_tune_model tm;
    qf_tune_model_from(m, &tm);
    qf_plan_params pp = qf_plan_params_default();
    pp.n_ctx = p->n_ctx;
    pp.kv_type = p->kv_type;
    pp.max_parallel = 256;
    qf_plan plan;
    if ((st = qf_plan_make(hw, &tm, &pp, &plan, err)) != QF_OK) return st;
    out->max_parallel = plan.n_parallel;
    out->n_ctx = plan.n_ctx;

    int n_perf = qf_cpu_default_threads();
    static const int32_t k_par[] = {1, 2, 4, 8, 16, 32, 64};
    static const int32_t k_batch[] = {512, 256, 128,
                                      64}; /* nearest the default first: the budget may end */
    int thr_def[64], n_thr_def = 0;
    for (int t = 1; t <= n_perf && n_thr_def < 63; t++)
        if (n_perf <= 8 || (t & (t - 1)) == 0) thr_def[n_thr_def++] = t;
    if (thr_def[n_thr_def - 1] != n_perf) thr_def[n_thr_def++] = n_perf;
    const int *thr = p->threads ? p->threads : thr_def;
    int n_thr = p->threads ? p->n_threads : n_thr_def;
    const int32_t *par = p->parallel ? p->parallel : k_par;
    int n_par = p->parallel ? p->n_parallel : (int)(sizeof k_par / sizeof *k_par);
    const int32_t *bat = p->batch ? p->batch : k_batch;
    int n_bat = p->batch ? p->n_batch : (int)(sizeof k_batch / sizeof *k_batch);

    /* phase 1 runs at the default thread count if the list has it */
    int t1 = thr[n_thr - 1];
    for (int i = 0; i < n_thr; i++)
        if (thr[i] == n_perf) t1 = n_perf;
    const int32_t b_def = 512;

    /* warm-up: page the weights in (not recorded) */
    {
        qf_trial w;
        memset(&w, 0, sizeof w);
        if ((st = run_load(&c, t1, 1, b_def, 8, 4, &w, err)) != QF_OK) return st;
    }

    /* 1. parallel slots */
    double best = -1, r;
    for (int i = 0; i < n_par; i++) {
        int32_t P = par[i];
        if (P > out->max_parallel) {
            qf_trial t;
            memset(&t, 0, sizeof t);
            t.phase = QF_TRIAL_PARALLEL;
            t.threads = t1;
            t.parallel = P;
            t.batch = b_def;
            t.skipped = true;
            snprintf(t.note, sizeof t.note,
                     "skipped: %d slots of %d tokens do not fit memory (at most %d)", P, out->n_ctx,
                     out->max_parallel);
            if ((st = add_trial(&c, &t, err)) != QF_OK) return st;
            continue;
        }
        if ((st = trial(&c, QF_TRIAL_PARALLEL, t1, P, b_def, &r, err)) != QF_OK) return st;
        if (r > best) best = r;
        if (r >= 0 && r < 0.9 * best && !p->parallel) break; /* past the peak */
    }
    if (best < 0)
        return QF_ERR_SET(err, QF_ERR_TIMEOUT,
                          "autotune: the budget ended before any trial completed");
    int32_t P_best = 0;
    for (int i = 0; i < n_par; i++) { /* the fewest slots within 5% of the best */
        double ri = rate_of(out, t1, par[i], b_def);
        if (ri >= 0.95 * best && (!P_best || par[i] < P_best)) P_best = par[i];
    }
    out->default_tokens_per_s = t1 == n_perf ? rate_of(out, n_perf, 4, b_def) : -1;
    if (out->default_tokens_per_s < 0) out->default_tokens_per_s = 0;

    /* 2. threads, at the chosen slot count */
    int t_best = t1;
    double r_t = rate_of(out, t1, P_best, b_def);
    for (int i = 0; i < n_thr; i++) {
        if (thr[i] == t1) continue;
        if ((st = trial(&c, QF_TRIAL_THREADS, thr[i], P_best, b_def, &r, err)) != QF_OK) return st;
        if (r > 1.05 * r_t) {
            t_best = thr[i];
            r_t = r;
        }
    }

    /* 3. batch, at the chosen slots and threads */
    int32_t b_best = b_def;
    double r_b = r_t;
    int32_t ran_eff[64];
    int n_eff = 0;
    int32_t work = P_best * c.prompt; /* prompt tokens a trial feeds in */
    int32_t eff_def = b_def < work ? b_def : work;
    if (eff_def < P_best) eff_def = P_best;
    ran_eff[n_eff++] = eff_def;
    for (int i = 0; i < n_bat; i++) {
        int32_t eff = bat[i] < work ? bat[i] : work;
        if (eff < P_best) eff = P_best;
        bool dup = false;
        for (int k = 0; k < n_eff; k++)
            dup |= ran_eff[k] == eff;
        if (dup) {
            if (bat[i] == b_def) continue;
            qf_trial t;
            memset(&t, 0, sizeof t);
            t.phase = QF_TRIAL_BATCH;
            t.threads = t_best;
            t.parallel = P_best;
            t.batch = bat[i];
            t.skipped = true;
            snprintf(t.note, sizeof t.note,
                     "skipped: acts as a batch already measured (%d prompt tokens per trial)",
                     work);
            if ((st = add_trial(&c, &t, err)) != QF_OK) return st;
            continue;
        }
        if (n_eff < 64) ran_eff[n_eff++] = eff;
        if ((st = trial(&c, QF_TRIAL_BATCH, t_best, P_best, bat[i], &r, err)) != QF_OK) return st;
        if (r > 1.05 * r_b) {
            b_best = bat[i];
            r_b = r;
        }
    }
    out->threads = t_best;
    out->parallel = P_best;
    out->batch = b_best;
    out->tokens_per_s = r_b;
    out->elapsed_s = qf_now_s() - start;
    return QF_OK;
}
