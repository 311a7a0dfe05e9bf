/* cmd_bench.c - `qforge bench`: prompt processing and generation speed,
 * measured like llama-bench: ppN evaluates N prompt tokens as one batch
 * sequence from an empty cache; tgN generates N tokens one at a time from an
 * empty cache. Each test runs -r times after one warm-up; mean and standard
 * deviation of tokens/s are reported.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "base/clock.h"
#include "base/cpu.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "engine/engine.h"
#include "model/session.h"
#include "tune/config.h"

static const char *k_usage =
    "usage: qforge bench -m MODEL [-p N] [-n N] [-t THREADS] [-r REPS] [--kv-type f16|f32|q8_0] [--json]\n"
    "                    [--gpu-layers N]\n"
    "\n"
    "  -p N   prompt tokens for the pp test (default 512; 0 skips it)\n"
    "  -n N   generated tokens for the tg test (default 128; 0 skips it)\n"
    "  -r N   repetitions (default 5)\n"
    "  --json one JSON object per test per line: test, tokens_per_s, stddev, ...\n"
    "  --config FILE  threads, batch and kv_type from a config file (`qforge tune --autotune` writes\n"
    "         one; default: ~/.config/qforge/config.yaml if present); flags win; --no-config ignores it\n"
    "  -ngl, --gpu-layers N  layers on the GPU: -1 = all, 0 = none, auto = what fits\n"
    "                        (default: $QFORGE_GPU_LAYERS, else auto with a GPU backend)\n"
    "\n"
    "engine (continuous batching) benchmarks:\n"
    "  --parallel 1,4,8,16   aggregate generation tokens/s of N concurrent sequences (-n tokens each)\n"
    "  --shared-prefix N --seqs S --suffix K [--no-prefix-cache]\n"
    "                        S requests sharing an N-token prefix plus K own tokens, -n tokens each:\n"
    "                        prompt tokens actually computed and wall time\n";

static qf_status run_once(qf_session *s, const int32_t *toks, int32_t n, bool one_by_one, double *secs, qf_err *err) {
    qf_session_rewind(s, 0);
    double t0 = qf_now_s();
    if (one_by_one) {
        for (int32_t i = 0; i < n; i++)
            if (qf_session_eval(s, &toks[i], 1, err) != QF_OK) return err->code;
    } else if (qf_session_eval(s, toks, n, err) != QF_OK) {
        return err->code;
    }
    *secs = qf_now_s() - t0;
    return QF_OK;
}

/* ---- engine benchmarks ---- */

typedef struct bench_sync {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int left;
    uint64_t tokens;
} bench_sync;

static void bench_event(void *ud, const qf_event *ev) {
    bench_sync *b = ud;
    pthread_mutex_lock(&b->mu);
    if (ev->token >= 0) b->tokens++;
    if (ev->finish && --b->left == 0) pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void rand_tokens(int32_t *t, int n, int32_t n_vocab, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((seed >> 33) % (uint64_t)n_vocab);
    }
}

/* Submit nseq requests (prompt i = prefix + own suffix) and wait for all. */
static int run_engine_load(qf_engine *e, int32_t n_vocab, int nseq, int prefix, int suffix, int n_gen,
                           double *wall, uint64_t *gen_tokens, qf_err *err) {
    int32_t *prompt = qf_malloc((size_t)(prefix + suffix) * sizeof(int32_t));
    if (!prompt) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    bench_sync b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, nseq, 0};
    rand_tokens(prompt, prefix, n_vocab, 77);
    double t0 = qf_now_s();
    for (int i = 0; i < nseq; i++) {
        rand_tokens(prompt + prefix, suffix, n_vocab, 1000 + (uint64_t)i);
        qf_request r;
        memset(&r, 0, sizeof r);
        r.prompt = prompt;
        r.n_prompt = prefix + suffix;
        r.sample = qf_sample_params_default();
        r.sample.temperature = 0;
        r.sample.seed = 1;
        r.max_tokens = n_gen;
        r.ignore_eos = true;
        r.on_event = bench_event;
        r.ud = &b;
        qf_status st = qf_engine_submit(e, &r, NULL, err);
        if (st != QF_OK) {
            qf_free(prompt);
            return st;
        }
    }
    pthread_mutex_lock(&b.mu);
    while (b.left > 0) pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    *wall = qf_now_s() - t0;
    *gen_tokens = b.tokens;
    qf_free(prompt);
    return QF_OK;
}

typedef struct engine_bench_opts {
    const char *parallel;
    long long shared_prefix, seqs, suffix, n_gen, threads, gpu_layers, batch;
    bool no_prefix_cache, json;
    qf_type kv_type;
} engine_bench_opts;

static int bench_engine(const char *model, const engine_bench_opts *o) {
    qf_err err = {0};
    qf_model *m = qf_model_load(model, NULL, &err);
    if (!m) return cli_fail(&err);
    int rc = QF_EXIT_FAIL;
    int32_t *plist = NULL, np = 0;
    if (o->parallel && !cli_parse_int_list(o->parallel, &plist, &np)) {
        qf_model_free(m);
        return cli_usage_error(k_usage, "bench: --parallel takes a list like 1,4,8,16");
    }
    if (o->shared_prefix > 0) {
        qf_engine_params p = qf_engine_params_default();
        p.n_parallel = (int32_t)(np ? plist[0] : o->seqs);
        p.n_ctx = (int32_t)(o->shared_prefix + o->suffix + o->n_gen + 16);
        p.kv_tokens = (int64_t)p.n_ctx * p.n_parallel;
        p.max_queue = (int32_t)o->seqs + 1;
        p.n_threads = (int)o->threads;
        p.n_batch = (int32_t)o->batch;
        p.kv_type = o->kv_type;
        p.n_gpu_layers = (int32_t)o->gpu_layers;
        p.no_prefix_cache = o->no_prefix_cache;
        qf_engine *e = qf_engine_new(m, &p, &err);
        if (!e) goto fail;
        double wall;
        uint64_t gen;
        if (run_engine_load(e, m->hp.n_vocab, (int)o->seqs, (int)o->shared_prefix, (int)o->suffix, (int)o->n_gen,
                            &wall, &gen, &err) != QF_OK) {
            qf_engine_free(e);
            goto fail;
        }
        qf_engine_stats st;
        qf_engine_get_stats(e, &st);
        qf_engine_free(e);
        printf("{\"engine\":\"qforge\",\"test\":\"shared_prefix\",\"model\":\"%s\",\"shared_prefix\":%lld,"
               "\"seqs\":%lld,\"suffix\":%lld,\"n_gen\":%lld,\"prefix_cache\":%s,\"prompt_tokens_total\":%llu,"
               "\"prompt_tokens_computed\":%llu,\"prefix_hit_tokens\":%llu,\"generated_tokens\":%llu,"
               "\"wall_s\":%.3f}\n",
               model, o->shared_prefix, o->seqs, o->suffix, o->n_gen, o->no_prefix_cache ? "false" : "true",
               (unsigned long long)st.prompt_tokens_total, (unsigned long long)st.prompt_tokens_computed,
               (unsigned long long)st.prefix_hit_tokens, (unsigned long long)gen, wall);
        fflush(stdout);
    }
    for (int32_t k = 0; k < np && o->shared_prefix <= 0; k++) {
        int P = plist[k];
        if (P < 1 || P > 256) {
            QF_ERR_SET(&err, QF_ERR_INVALID, "--parallel %d: 1..256", P);
            goto fail;
        }
        qf_engine_params p = qf_engine_params_default();
        p.n_parallel = P;
        p.n_ctx = (int32_t)(16 + o->n_gen + 16);
        p.n_threads = (int)o->threads;
        p.n_batch = (int32_t)o->batch;
        p.kv_type = o->kv_type;
        p.n_gpu_layers = (int32_t)o->gpu_layers;
        p.no_prefix_cache = true; /* distinct prompts anyway; measure decode only */
        qf_engine *e = qf_engine_new(m, &p, &err);
        if (!e) goto fail;
        double wall;
        uint64_t gen;
        /* warm-up: page the weights in */
        if (run_engine_load(e, m->hp.n_vocab, 1, 0, 16, 4, &wall, &gen, &err) != QF_OK ||
            run_engine_load(e, m->hp.n_vocab, P, 0, 16, (int)o->n_gen, &wall, &gen, &err) != QF_OK) {
            qf_engine_free(e);
            goto fail;
        }
        qf_engine_free(e);
        printf("{\"engine\":\"qforge\",\"test\":\"parallel\",\"model\":\"%s\",\"parallel\":%d,\"n_gen\":%lld,"
               "\"generated_tokens\":%llu,\"wall_s\":%.3f,\"tokens_per_s\":%.3f}\n",
               model, P, o->n_gen, (unsigned long long)gen, wall, gen / wall);
        fflush(stdout);
    }
    rc = QF_EXIT_OK;
    goto out;
fail:
    rc = cli_fail(&err);
out:
    qf_free(plist);
    qf_model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    long long n_p = 512, n_g = 128, threads = 0, reps = 5, gpu_layers = qf_gpu_layers_env();
    bool json = false, kv_set = false, no_config = false;
    const char *config = NULL;
    qf_type kv_type = QF_TYPE_F16;
    engine_bench_opts eo = {0};
    eo.seqs = 16;
    eo.suffix = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long *dst = NULL, lo = 0, hi = 1 << 20;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return QF_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = true;
            continue;
        } else if (!strcmp(a, "--no-prefix-cache")) {
            eo.no_prefix_cache = true;
            continue;
        } else if (!strcmp(a, "--no-config")) {
            no_config = true;
            continue;
        } else if (!strcmp(a, "--config")) {
            if (!(config = cli_value(argc, argv, &i))) return cli_usage_error(k_usage, "bench: --config needs a file");
            continue;
        } else if (!strcmp(a, "--parallel")) {
            if (!(eo.parallel = cli_value(argc, argv, &i))) return cli_usage_error(k_usage, "bench: --parallel needs a list");
            continue;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = cli_value(argc, argv, &i))) return cli_usage_error(k_usage, "bench: -m needs a value");
            continue;
        } else if (!strcmp(a, "--kv-type")) {
            if (!cli_parse_kv_type(cli_value(argc, argv, &i), &kv_type))
                return cli_usage_error(k_usage, "bench: --kv-type is f16, q8_0 or f32");
            kv_set = true;
            continue;
        } else if (!strcmp(a, "-p")) dst = &n_p;
        else if (!strcmp(a, "-n")) dst = &n_g;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) dst = &threads, lo = 1, hi = 1024;
        else if (!strcmp(a, "-r")) dst = &reps, lo = 1, hi = 1000;
        else if (!strcmp(a, "-ngl") || !strcmp(a, "--gpu-layers") || !strcmp(a, "--n-gpu-layers")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_gpu_layers(v, &gpu_layers))
                return cli_usage_error(k_usage, "bench: bad value for %s", a);
            continue;
        }
        else if (!strcmp(a, "--shared-prefix")) dst = &eo.shared_prefix, lo = 1;
        else if (!strcmp(a, "--seqs")) dst = &eo.seqs, lo = 1, hi = 256;
        else if (!strcmp(a, "--suffix")) dst = &eo.suffix, lo = 1;
        else return cli_usage_error(k_usage, "bench: unknown option '%s'", a);
        if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, lo, hi, dst))
            return cli_usage_error(k_usage, "bench: bad value for %s", a);
    }
    if (!model) return cli_usage_error(k_usage, "bench: -m MODEL is required");
    { /* config file: below the flags, above the built-in defaults */
        qf_config cfg;
        bool found;
        qf_err cerr = {0};
        if (qf_config_resolve(config, !no_config, &cfg, &found, &cerr) != QF_OK) return cli_fail(&cerr);
        if (found) {
            if (!threads) threads = cfg.threads;
            if (!kv_set && cfg.has_kv_type) kv_type = cfg.kv_type;
            eo.batch = cfg.batch;
            fprintf(stderr, "qforge: bench: settings from %s\n", cfg.path);
        }
    }
    if (eo.parallel || eo.shared_prefix > 0) {
        eo.n_gen = n_g;
        eo.threads = threads;
        eo.json = json;
        eo.kv_type = kv_type;
        eo.gpu_layers = gpu_layers;
        return bench_engine(model, &eo);
    }
    if (!n_p && !n_g) return cli_usage_error(k_usage, "bench: nothing to do (-p 0 -n 0)");

    qf_err err = {0};
    int rc = QF_EXIT_FAIL;
    qf_model *m = qf_model_load(model, NULL, &err);
    qf_session *s = NULL;
    int32_t *toks = NULL;
    if (!m) return cli_fail(&err);
    qf_session_params sp = qf_session_params_default();
    sp.n_ctx = (int32_t)(n_p > n_g ? n_p : n_g);
    sp.n_batch = n_p > 0 ? (int32_t)n_p : 1;
    sp.n_threads = (int)threads;
    sp.kv_type = kv_type;
    sp.n_gpu_layers = (int32_t)gpu_layers;
    s = qf_session_new(m, &sp, &err);
    long long nmax = n_p > n_g ? n_p : n_g;
    toks = qf_malloc((size_t)nmax * sizeof *toks);
    if (!s || !toks) {
        if (!toks && s) QF_ERR_SET(&err, QF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    uint64_t r = 12345;
    for (long long i = 0; i < nmax; i++) { /* arbitrary valid ids */
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((r >> 33) % (uint64_t)m->hp.n_vocab);
    }
    int nt = threads > 0 ? (int)threads : qf_cpu_default_threads();
    if (!json) printf("| model | size | type | threads | test | t/s |\n|---|---|---|---|---|---|\n");
    for (int test = 0; test < 2; test++) {
        long long n = test == 0 ? n_p : n_g;
        if (n == 0) continue;
        double secs, sum = 0, sum2 = 0;
        /* warm-up: pages in the weights, settles the clocks */
        if (run_once(s, toks, (int32_t)(test == 0 ? n : (n < 16 ? n : 16)), test == 1, &secs, &err) != QF_OK) goto fail;
        for (long long k = 0; k < reps; k++) {
            if (run_once(s, toks, (int32_t)n, test == 1, &secs, &err) != QF_OK) goto fail;
            double tps = (double)n / secs;
            sum += tps;
            sum2 += tps * tps;
        }
        double mean = sum / reps, sd = reps > 1 ? sqrt(fmax(0, (sum2 - reps * mean * mean) / (reps - 1))) : 0;
        char name[32];
        snprintf(name, sizeof name, "%s%lld", test == 0 ? "pp" : "tg", n);
        if (json)
            printf("{\"engine\":\"qforge\",\"model\":\"%s\",\"size_bytes\":%zu,\"threads\":%d,\"test\":\"%s\","
                   "\"n_tokens\":%lld,\"reps\":%lld,\"tokens_per_s\":%.3f,\"stddev\":%.3f}\n",
                   model, m->weight_bytes, nt, name, n, reps, mean, sd);
        else
            printf("| %s | %.2f GiB | %s | %d | %s | %.2f ± %.2f |\n", m->name, m->weight_bytes / 1073741824.0,
                   m->hp.arch_name, nt, name, mean, sd);
        fflush(stdout);
    }
    rc = QF_EXIT_OK;
    goto out;
fail:
    rc = cli_fail(&err);
out:
    qf_free(toks);
    qf_session_free(s);
    qf_model_free(m);
    return rc;
}
