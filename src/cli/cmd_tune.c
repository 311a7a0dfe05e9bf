/* cmd_tune.c - `qforge tune`: the resource plan for this machine (or a
 * described one) and a model, and `--autotune`, which measures engine
 * settings on the real model and writes them to the config file that
 * gen, serve and bench read.
 */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cpu.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "tune/autotune.h"
#include "tune/config.h"
#include "tune/hw.h"
#include "tune/plan.h"

static const char *k_usage =
    "usage: qforge tune [-m MODEL] [--ctx N] [--parallel P] [--batch N] [-t N] [--kv-type T] "
    "[--json] [--hw FILE.json]\n"
    "       qforge tune --autotune -m MODEL [--budget-s S] [--write FILE | --no-write] [--json] "
    "[sweep options]\n"
    "\n"
    "Plan memory pools (weights, kv cache, buffers, system reserve), threads, parallel slots and "
    "batch\n"
    "for this machine and a model; without -m, plan the hardware only (threads, reserve).\n"
    "\n"
    "  -m, --model FILE     GGUF model (its size and shape; the weights are not read)\n"
    "  -c, --ctx N          positions per sequence (default: min(model's, 4096))\n"
    "      --parallel P     slots (default: the most that fit, capped)\n"
    "      --batch N        tokens per engine step (default: 512 CPU, 2048 GPU)\n"
    "  -t, --threads N      inference threads (default: performance cores)\n"
    "      --kv-type T      f16 (default), q8_0 or f32\n"
    "      --hw FILE.json   plan for a described machine instead of this one (docs/tune.md)\n"
    "      --json           the plan as JSON\n"
    "\n"
    "autotune: short measured sweeps of parallel slots, threads and batch on the model\n"
    "      --autotune       run them; then write the best settings to the config file\n"
    "      --budget-s S     time for all trials (default 60)\n"
    "      --write FILE     config file to write (default $XDG_CONFIG_HOME/qforge/config.yaml,\n"
    "                       else ~/.config/qforge/config.yaml)\n"
    "      --no-write       measure and print only\n"
    "      --parallel LIST  slot counts to try (default 1,2,4,8,16,32,64, those that fit)\n"
    "      --threads LIST   thread counts to try (default 1..performance cores)\n"
    "      --batch LIST     batch sizes to try (default 512,256,128,64)\n"
    "      --prompt-tokens N / --gen-tokens N   per request of a trial (default 32 / 16)\n"
    "\n"
    "exit status: 0 ok, 1 the plan does not fit (or autotune failed), 2 wrong usage\n";

typedef struct tune_opts {
    const char *model, *hw_path, *write, *parallel, *threads, *batch;
    long long ctx, prompt, gen;
    double budget;
    bool json, autotune, no_write, kv_set;
    qf_type kv_type;
} tune_opts;

/* ---- plan ---- */

static int do_plan(const tune_opts *o, const qf_hw *hw) {
    qf_err err = {0};
    qf_plan_params pp = qf_plan_params_default();
    pp.n_ctx = (int32_t)o->ctx;
    pp.kv_type = o->kv_type;
    int32_t *v = NULL, n = 0;
    if (o->parallel) {
        if (!cli_parse_int_list(o->parallel, &v, &n) || n != 1 || v[0] < 1 || v[0] > 256) {
            qf_free(v);
            return cli_usage_error(
                k_usage,
                "tune: --parallel takes one count in 1..256 (a list only with --autotune)");
        }
        pp.n_parallel = v[0];
        qf_free(v);
    }
    if (o->batch) {
        if (!cli_parse_int_list(o->batch, &v, &n) || n != 1 || v[0] < 1 || v[0] > (1 << 20)) {
            qf_free(v);
            return cli_usage_error(k_usage, "tune: --batch takes one size in 1..1048576");
        }
        pp.n_batch = v[0];
        qf_free(v);
    }
    if (o->threads) {
        if (!cli_parse_int_list(o->threads, &v, &n) || n != 1 || v[0] < 1 || v[0] > 1024) {
            qf_free(v);
            return cli_usage_error(k_usage, "tune: --threads takes one count in 1..1024");
        }
        pp.n_threads = v[0];
        qf_free(v);
    }
    qf_model *m = NULL;
    qf_tune_model tm, *tmp = NULL;
    if (o->model) {
        qf_model_params mp = {.no_tokenizer = true};
        if (!(m = qf_model_load(o->model, &mp, &err))) return cli_fail(&err);
        qf_tune_model_from(m, &tm);
        tmp = &tm;
    }
    qf_plan plan;
    qf_status st = qf_plan_make(hw, tmp, &pp, &plan, &err);
    int rc = QF_EXIT_OK;
    if (st != QF_OK && st != QF_ERR_RANGE) {
        rc = cli_fail(&err);
        goto out;
    }
    char *txt = o->json ? qf_plan_to_json(&plan, hw, tmp) : qf_plan_to_text(&plan, hw, tmp);
    if (!txt) {
        fprintf(stderr, "qforge: out of memory\n");
        rc = QF_EXIT_FAIL;
        goto out;
    }
    fputs(txt, stdout);
    if (o->json) fputc('\n', stdout);
    qf_free(txt);
    if (st == QF_ERR_RANGE) rc = cli_fail(&err);
out:
    qf_model_free(m);
    return rc;
}

/* ---- autotune ---- */

static void print_trial(void *ud, const qf_trial *t) {
    FILE *f = ud;
    if (t->skipped)
        fprintf(f, "  %-9s %7d %8d %6d %8s %8s %9s  %s\n", qf_trial_phase_name(t->phase),
                t->threads, (int)t->parallel, (int)t->batch, "-", "-", "-", t->note);
    else
        fprintf(f, "  %-9s %7d %8d %6d %8llu %8.2f %9.2f  %s\n", qf_trial_phase_name(t->phase),
                t->threads, (int)t->parallel, (int)t->batch, (unsigned long long)t->tokens,
                t->wall_s, t->tokens_per_s, t->note);
    fflush(f);
}

static bool parse_list(const char *s, long lo, long hi, int32_t **v, int32_t *n) {
    if (!cli_parse_int_list(s, v, n)) return false;
    for (int32_t i = 0; i < *n; i++)
        if ((*v)[i] < lo || (*v)[i] > hi) {
            qf_free(*v);
            *v = NULL;
            return false;
        }
    return *n > 0 && *n <= 64;
}

static void print_json_result(const tune_opts *o, const qf_autotune_result *r,
                              const char *written) {
    cJSON *j = cJSON_CreateObject(), *arr, *b;
    if (!j) return;
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "ctx", r->n_ctx);
    cJSON_AddNumberToObject(j, "max_parallel", r->max_parallel);
    cJSON_AddNumberToObject(j, "elapsed_s", r->elapsed_s);
    cJSON_AddBoolToObject(j, "budget_hit", r->budget_hit);
    if ((arr = cJSON_AddArrayToObject(j, "trials"))) {
        for (int i = 0; i < r->n_trials; i++) {
            const qf_trial *t = &r->trials[i];
            cJSON *x = cJSON_CreateObject();
            if (!x) break;
            cJSON_AddStringToObject(x, "phase", qf_trial_phase_name(t->phase));
            cJSON_AddNumberToObject(x, "threads", t->threads);
            cJSON_AddNumberToObject(x, "parallel", t->parallel);
            cJSON_AddNumberToObject(x, "batch", t->batch);
            cJSON_AddBoolToObject(x, "skipped", t->skipped);
            cJSON_AddBoolToObject(x, "cut", t->cut);
            cJSON_AddNumberToObject(x, "tokens", (double)t->tokens);
            cJSON_AddNumberToObject(x, "wall_s", t->wall_s);
            cJSON_AddNumberToObject(x, "tokens_per_s", t->tokens_per_s);
            cJSON_AddStringToObject(x, "note", t->note);
            cJSON_AddItemToArray(arr, x);
        }
    }
    if ((b = cJSON_AddObjectToObject(j, "best"))) {
        cJSON_AddNumberToObject(b, "threads", r->threads);
        cJSON_AddNumberToObject(b, "parallel", r->parallel);
        cJSON_AddNumberToObject(b, "batch", r->batch);
        cJSON_AddNumberToObject(b, "tokens_per_s", r->tokens_per_s);
    }
    cJSON_AddNumberToObject(j, "default_tokens_per_s", r->default_tokens_per_s);
    if (written)
        cJSON_AddStringToObject(j, "config", written);
    else
        cJSON_AddNullToObject(j, "config");
    char *s = cJSON_PrintUnformatted(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

static int do_autotune(const tune_opts *o, const qf_hw *hw) {
    qf_err err = {0};
    qf_autotune_params ap = qf_autotune_params_default();
    int32_t *par = NULL, *thr32 = NULL, *bat = NULL, n_par = 0, n_thr = 0, n_bat = 0;
    int thr[64];
    int rc = QF_EXIT_FAIL;
    qf_model *m = NULL;
    char *def_path = NULL;
    qf_autotune_result res = {0};
    if (o->parallel && !parse_list(o->parallel, 1, 256, &par, &n_par)) {
        rc = cli_usage_error(k_usage, "tune: --parallel takes counts like 1,2,4,8 (1..256)");
        goto out;
    }
    if (o->threads && !parse_list(o->threads, 1, 1024, &thr32, &n_thr)) {
        rc = cli_usage_error(k_usage, "tune: --threads takes counts like 1,2 (1..1024)");
        goto out;
    }
    if (o->batch && !parse_list(o->batch, 1, 1 << 20, &bat, &n_bat)) {
        rc = cli_usage_error(k_usage, "tune: --batch takes sizes like 128,512 (1..1048576)");
        goto out;
    }
    for (int32_t i = 0; i < n_thr; i++)
        thr[i] = thr32[i];
    const char *path = o->write;
    if (!o->no_write && !path) {
        if (!(def_path = qf_config_default_path())) {
            rc = cli_usage_error(
                k_usage, "tune: no HOME or XDG_CONFIG_HOME for the config file: give --write FILE");
            goto out;
        }
        path = def_path;
    }
    if (!(m = qf_model_load(o->model, NULL, &err))) { /* the engine needs the tokenizer */
        rc = cli_fail(&err);
        goto out;
    }
    ap.hw = hw;
    ap.n_ctx = (int32_t)o->ctx;
    ap.kv_type = o->kv_type;
    ap.parallel = par;
    ap.n_parallel = n_par;
    ap.threads = n_thr ? thr : NULL;
    ap.n_threads = n_thr;
    ap.batch = bat;
    ap.n_batch = n_bat;
    ap.prompt_tokens = (int32_t)o->prompt;
    ap.gen_tokens = (int32_t)o->gen;
    ap.budget_s = o->budget;
    FILE *prog = o->json ? stderr : stdout;
    ap.on_trial = print_trial;
    ap.ud = prog;
    int32_t np = o->prompt ? (int32_t)o->prompt : 32, ng = o->gen ? (int32_t)o->gen : 16;
    fprintf(
        prog,
        "qforge tune --autotune: %s on %s (%d performance + %d efficiency cores), budget %.0f s\n"
        "  each trial: P requests at once, %d prompt + %d generated tokens each; aggregate "
        "generated tokens/s\n"
        "  %-9s %7s %8s %6s %8s %8s %9s\n",
        m->name, hw->name, hw->n_perf, hw->n_eff, o->budget > 0 ? o->budget : 60.0, (int)np,
        (int)ng, "phase", "threads", "parallel", "batch", "tokens", "wall_s", "tok/s");
    fflush(prog);
    if (qf_autotune_run(m, &ap, &res, &err) != QF_OK) {
        rc = cli_fail(&err);
        goto out;
    }
    fprintf(prog, "best: --threads %d --parallel %d --batch %d: %.2f tokens/s", res.threads,
            (int)res.parallel, (int)res.batch, res.tokens_per_s);
    if (res.default_tokens_per_s > 0)
        fprintf(prog, " (defaults --threads %d --parallel 4 --batch 512: %.2f tokens/s, x%.2f)",
                qf_cpu_default_threads(), res.default_tokens_per_s,
                res.tokens_per_s / res.default_tokens_per_s);
    fprintf(prog, "; %d trials in %.1f s%s\n", res.n_trials, res.elapsed_s,
            res.budget_hit ? " (budget reached: some trials skipped or cut)" : "");
    if (path) {
        qf_config cfg;
        qf_config_init(&cfg);
        cfg.threads = res.threads;
        cfg.parallel = res.parallel;
        cfg.batch = res.batch;
        cfg.ctx = (int32_t)o->ctx;
        cfg.has_kv_type = o->kv_set;
        cfg.kv_type = o->kv_type;
        char abs[PATH_MAX];
        const char *mpath = realpath(o->model, abs) ? abs : o->model;
        if (strlen(mpath) < sizeof cfg.model)
            memcpy(cfg.model, mpath, strlen(mpath) + 1); /* else left out */
        cfg.tokens_per_s = res.tokens_per_s;
        char comment[1024], when[64];
        time_t now = time(NULL);
        struct tm tmv;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime_r(&now, &tmv));
        snprintf(comment, sizeof comment,
                 "qforge config, written by `qforge tune --autotune` on %s (docs/tune.md)\n"
                 "machine: %s, %d performance + %d efficiency cores; model: %s\n"
                 "best of %d trials: %.2f generated tokens/s aggregate (engine defaults: %.2f)\n"
                 "workload: P requests of %d prompt + %d generated tokens; flags on the command "
                 "line win",
                 when, hw->name, hw->n_perf, hw->n_eff, m->name, res.n_trials, res.tokens_per_s,
                 res.default_tokens_per_s, (int)np, (int)ng);
        if (qf_config_save(path, &cfg, comment, &err) != QF_OK) {
            rc = cli_fail(&err);
            goto out;
        }
        fprintf(prog, "wrote %s\n", path);
    }
    if (o->json) print_json_result(o, &res, path);
    rc = QF_EXIT_OK;
out:
    qf_autotune_result_deinit(&res);
    qf_model_free(m);
    qf_free(def_path);
    qf_free(par);
    qf_free(thr32);
    qf_free(bat);
    return rc;
}

int cmd_tune(int argc, char **argv) {
    tune_opts o;
    memset(&o, 0, sizeof o);
    o.kv_type = QF_TYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const char **sv = NULL;
        long long *iv = NULL, lo = 0, hi = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return QF_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
            continue;
        } else if (!strcmp(a, "--autotune")) {
            o.autotune = true;
            continue;
        } else if (!strcmp(a, "--no-write")) {
            o.no_write = true;
            continue;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            sv = &o.model;
        else if (!strcmp(a, "--hw"))
            sv = &o.hw_path;
        else if (!strcmp(a, "--write"))
            sv = &o.write;
        else if (!strcmp(a, "--parallel") || !strcmp(a, "-np"))
            sv = &o.parallel;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            sv = &o.threads;
        else if (!strcmp(a, "--batch"))
            sv = &o.batch;
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx"))
            iv = &o.ctx, lo = 64, hi = 1 << 24;
        else if (!strcmp(a, "--prompt-tokens"))
            iv = &o.prompt, lo = 1, hi = 4096;
        else if (!strcmp(a, "--gen-tokens"))
            iv = &o.gen, lo = 1, hi = 4096;
        else if (!strcmp(a, "--budget-s")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_float(v, 0.1, 86400, &o.budget))
                return cli_usage_error(k_usage, "tune: --budget-s takes seconds in 0.1..86400");
            continue;
        } else if (!strcmp(a, "--kv-type")) {
            if (!cli_parse_kv_type(cli_value(argc, argv, &i), &o.kv_type))
                return cli_usage_error(k_usage, "tune: --kv-type is f16, q8_0 or f32");
            o.kv_set = true;
            continue;
        } else {
            return cli_usage_error(k_usage, "tune: unknown option '%s'", a);
        }
        if (!(v = cli_value(argc, argv, &i)))
            return cli_usage_error(k_usage, "tune: %s needs a value", a);
        if (sv)
            *sv = v;
        else if (!cli_parse_int(v, lo, hi, iv))
            return cli_usage_error(k_usage, "tune: bad value '%s' for %s (%lld..%lld)", v, a, lo,
                                   hi);
    }
    if (o.autotune && !o.model) return cli_usage_error(k_usage, "tune: --autotune needs -m MODEL");
    if (!o.autotune && (o.write || o.no_write || o.budget > 0 || o.prompt || o.gen))
        return cli_usage_error(
            k_usage, "tune: --write, --no-write, --budget-s, --prompt-tokens and --gen-tokens "
                     "go with --autotune");
    if (o.write && o.no_write)
        return cli_usage_error(k_usage, "tune: --write and --no-write do not mix");
    if (o.autotune && o.hw_path)
        return cli_usage_error(k_usage,
                               "tune: --autotune measures this machine; --hw plans another one");

    qf_err err = {0};
    qf_hw hw;
    qf_status st = o.hw_path ? qf_hw_load(o.hw_path, &hw, &err) : qf_hw_detect(&hw, &err);
    if (st != QF_OK) return cli_fail(&err);
    return o.autotune ? do_autotune(&o, &hw) : do_plan(&o, &hw);
}
