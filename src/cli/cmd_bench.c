/* cmd_bench.c - `qforge bench`: prompt processing and generation speed,
 * measured like llama-bench: ppN evaluates N prompt tokens as one batch
 * sequence from an empty cache; tgN generates N tokens one at a time from an
 * empty cache. Each test runs -r times after one warm-up; mean and standard
 * deviation of tokens/s are reported.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "model/session.h"

static const char *k_usage =
    "usage: qforge bench -m MODEL [-p N] [-n N] [-t THREADS] [-r REPS] [--kv-type f16|f32] [--json]\n"
    "\n"
    "  -p N   prompt tokens for the pp test (default 512; 0 skips it)\n"
    "  -n N   generated tokens for the tg test (default 128; 0 skips it)\n"
    "  -r N   repetitions (default 5)\n"
    "  --json one JSON object per test per line: test, tokens_per_s, stddev, ...\n";

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

int cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    long long n_p = 512, n_g = 128, threads = 0, reps = 5;
    bool json = false;
    qf_type kv_type = QF_TYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long *dst = NULL, lo = 0, hi = 1 << 20;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return QF_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = true;
            continue;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = cli_value(argc, argv, &i))) return cli_usage_error(k_usage, "bench: -m needs a value");
            continue;
        } else if (!strcmp(a, "--kv-type")) {
            v = cli_value(argc, argv, &i);
            if (v && !strcmp(v, "f32")) kv_type = QF_TYPE_F32;
            else if (!v || strcmp(v, "f16")) return cli_usage_error(k_usage, "bench: --kv-type is f16 or f32");
            continue;
        } else if (!strcmp(a, "-p")) dst = &n_p;
        else if (!strcmp(a, "-n")) dst = &n_g;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) dst = &threads, lo = 1, hi = 1024;
        else if (!strcmp(a, "-r")) dst = &reps, lo = 1, hi = 1000;
        else return cli_usage_error(k_usage, "bench: unknown option '%s'", a);
        if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, lo, hi, dst))
            return cli_usage_error(k_usage, "bench: bad value for %s", a);
    }
    if (!model) return cli_usage_error(k_usage, "bench: -m MODEL is required");
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
