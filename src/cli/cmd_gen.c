/* cmd_gen.c - `qforge gen`: documents in, a question-answer dataset out.
 *
 * Parses the options into a qf_gen_opts (preset first, then the flags that
 * override its keys), resolves the model (-m, $QFORGE_MODEL, or the default
 * model downloaded once into the cache), installs a SIGINT handler that asks
 * the job to stop cleanly, runs it and prints the report.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "pipeline/fetch.h"
#include "pipeline/gen.h"
#include "pipeline/prompt.h"
#include "tune/config.h"

static const char *k_usage =
    "usage: qforge gen INPUT... -o OUT.jsonl [-m MODEL.gguf | --endpoint URL ... | --ollama URL]\n"
    "                  [--preset speed|quality|FILE.yaml] [--format qa|alpaca|sharegpt|openai] [--resume] [--dry-run]\n"
    "\n"
    "Turn documents (.txt .md .html .pdf .docx .jsonl; folders are walked) into question-answer pairs.\n"
    "\n"
    "model (default: the embedded engine with -m, else $QFORGE_MODEL, else a small default model\n"
    "downloaded once into ~/.cache/qforge/models)\n"
    "  -m, --model FILE        GGUF model for the embedded engine\n"
    "      --endpoint URL      OpenAI-compatible server (LM Studio, llama-server, vLLM, qforge serve);\n"
    "                          repeat it to spread requests over several servers\n"
    "      --ollama URL        Ollama server (its native /api/chat)\n"
    "      --model-name NAME   model to ask the server for (default: the first it lists)\n"
    "      --api-key KEY       bearer token for --endpoint (default: $OPENAI_API_KEY)\n"
    "  -c, --ctx N             embedded: context length (default: min(model's, 4096))\n"
    "  -t, --threads N         embedded: compute threads (default: performance cores)\n"
    "      --chat-template NAME  embedded: chat template family instead of the model's\n"
    "  -ngl, --gpu-layers N    embedded: layers on the GPU, -1 = all, 0 = none, auto = what fits\n"
    "                          (default: $QFORGE_GPU_LAYERS, else auto with a GPU backend)\n"
    "      --kv-type TYPE      embedded: kv cache elements, f16 (default), q8_0 (half the bytes: more\n"
    "                          sequences in memory, faster attention) or f32\n"
    "      --fetch-model       download the default model if needed, print its path, exit\n"
    "      --config FILE       embedded: threads, ctx, parallel slots and kv_type from a config file (written by\n"
    "                          `qforge tune --autotune`; default ~/.config/qforge/config.yaml if present;\n"
    "                          flags, --max-concurrent and a preset file win)   --no-config: ignore it\n"
    "\n"
    "job\n"
    "  -o, --output FILE       dataset (JSON Lines); the job store is FILE.qforge.db beside it\n"
    "      --preset P          speed (default), quality, or a YAML file (keys: docs/gen.md)\n"
    "      --workers N  --max-concurrent N  --temperature T  --passes N  --pairs N  --min-answer N\n"
    "                          override the preset's workers, max_concurrent_requests, temperature,\n"
    "                          generation_passes, qa_pairs_per_chunk, min_answer_length\n"
    "      --format F          qa (default), alpaca, sharegpt, openai\n"
    "      --curate T          score each pair 1..10 against its chunk; under T goes to OUT.rejects.jsonl\n"
    "      --prompts DIR       prompt templates (system.txt generate.txt repair.txt curate.txt)\n"
    "      --prompts-init DIR  write the built-in templates into DIR to edit, then exit\n"
    "      --chunk-tokens N    tokens per chunk (default 512)   --chunk-overlap N (default 64)\n"
    "      --jsonl-field NAME  field holding the text in .jsonl inputs (default \"text\")\n"
    "      --max-tokens N      reply budget per request (default: from pairs and min answer length)\n"
    "      --top-p P (default 0.95)   --seed S (default 42; pass p uses S+p)\n"
    "      --timeout S         per request (default 1800)   --retries N  HTTP retries (default 5)\n"
    "      --backoff S         HTTP: first retry after S seconds, doubling, with jitter (default 1)\n"
    "      --cooldown S        HTTP: an endpoint failing 3 times in a row is left out S seconds (default 30)\n"
    "      --no-near-dedup     drop only exact duplicate questions\n"
    "      --resume            continue the job in OUT's store (same arguments)\n"
    "      --dry-run           list what would be processed and estimate tokens; nothing is generated\n"
    "      --report FILE.json  also write the final report as JSON\n"
    "      --progress MODE     auto (default), bar, plain, off\n"
    "      --naive             benchmark baseline: one request at a time, no prefix sharing\n";

static volatile sig_atomic_t g_stop = 0;

static void on_sigint(int sig) {
    (void)sig;
    if (g_stop) _exit(130); /* second Ctrl-C: now */
    g_stop = 1;
}

static int add_str(const char ***v, int *n, const char *s) {
    const char **nv = qf_realloc(*v, (size_t)(*n + 1) * sizeof *nv);
    if (!nv) return -1;
    nv[(*n)++] = s;
    *v = nv;
    return 0;
}

int cmd_gen(int argc, char **argv) {
    qf_gen_opts o;
    qf_gen_opts_default(&o);
    const char **inputs = NULL, **eps = NULL;
    int n_inputs = 0, n_eps = 0;
    const char *preset = "speed", *ollama = NULL, *prompts_init = NULL, *progress = "auto";
    long long workers = -1, maxc = -1, passes = -1, pairs = -1, minans = -1, n;
    double temp = -1, d;
    bool fetch_only = false, no_config = false, kv_set = false;
    const char *config = NULL;
    int rc = QF_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
#define VAL() ((v = cli_value(argc, argv, &i)) != NULL)
#define NEED()                                                                                                        \
    do {                                                                                                              \
        if (!VAL()) {                                                                                                 \
            rc = cli_usage_error(k_usage, "gen: %s needs a value", a);                                                \
            goto out;                                                                                                 \
        }                                                                                                             \
    } while (0)
#define BAD()                                                                                                         \
    do {                                                                                                              \
        rc = cli_usage_error(k_usage, "gen: bad value '%s' for %s", v, a);                                            \
        goto out;                                                                                                     \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            goto out;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            NEED();
            o.output = v;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED();
            o.model_path = v;
        } else if (!strcmp(a, "--endpoint")) {
            NEED();
            if (add_str(&eps, &n_eps, v)) goto nomem;
        } else if (!strcmp(a, "--ollama")) {
            NEED();
            ollama = v;
        } else if (!strcmp(a, "--model-name")) {
            NEED();
            o.model_name = v;
        } else if (!strcmp(a, "--api-key")) {
            NEED();
            o.api_key = v;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NEED();
            if (!cli_parse_int(v, 64, 1 << 24, &n)) BAD();
            o.n_ctx = (int32_t)n;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED();
            if (!cli_parse_int(v, 1, 1024, &n)) BAD();
            o.n_threads = (int)n;
        } else if (!strcmp(a, "--chat-template")) {
            NEED();
            o.chat_template = v;
        } else if (!strcmp(a, "-ngl") || !strcmp(a, "--gpu-layers") || !strcmp(a, "--n-gpu-layers")) {
            NEED();
            if (!cli_parse_gpu_layers(v, &n)) BAD();
            o.n_gpu_layers = (int)n;
        } else if (!strcmp(a, "--kv-type")) {
            NEED();
            kv_set = true;
            if (!cli_parse_kv_type(v, &o.kv_type)) BAD();
        } else if (!strcmp(a, "--fetch-model")) {
            fetch_only = true;
        } else if (!strcmp(a, "--preset")) {
            NEED();
            preset = v;
        } else if (!strcmp(a, "--workers")) {
            NEED();
            if (!cli_parse_int(v, 1, 1024, &workers)) BAD();
        } else if (!strcmp(a, "--max-concurrent")) {
            NEED();
            if (!cli_parse_int(v, 1, 4096, &maxc)) BAD();
        } else if (!strcmp(a, "--temperature") || !strcmp(a, "--temp")) {
            NEED();
            if (!cli_parse_float(v, 0, 2, &temp)) BAD();
        } else if (!strcmp(a, "--passes")) {
            NEED();
            if (!cli_parse_int(v, 1, 100, &passes)) BAD();
        } else if (!strcmp(a, "--pairs")) {
            NEED();
            if (!cli_parse_int(v, 1, 100, &pairs)) BAD();
        } else if (!strcmp(a, "--min-answer")) {
            NEED();
            if (!cli_parse_int(v, 0, 100000, &minans)) BAD();
        } else if (!strcmp(a, "--format")) {
            NEED();
            if (!qf_format_from_name(v, &o.format)) BAD();
        } else if (!strcmp(a, "--curate")) {
            NEED();
            if (!cli_parse_int(v, 1, 10, &n)) BAD();
            o.curate = (int32_t)n;
        } else if (!strcmp(a, "--prompts")) {
            NEED();
            o.prompts_dir = v;
        } else if (!strcmp(a, "--prompts-init")) {
            NEED();
            prompts_init = v;
        } else if (!strcmp(a, "--chunk-tokens")) {
            NEED();
            if (!cli_parse_int(v, 16, 1 << 20, &n)) BAD();
            o.chunk_tokens = (int32_t)n;
        } else if (!strcmp(a, "--chunk-overlap")) {
            NEED();
            if (!cli_parse_int(v, 0, 1 << 19, &n)) BAD();
            o.chunk_overlap = (int32_t)n;
        } else if (!strcmp(a, "--jsonl-field")) {
            NEED();
            o.jsonl_field = v;
        } else if (!strcmp(a, "--max-tokens")) {
            NEED();
            if (!cli_parse_int(v, 1, 1 << 20, &n)) BAD();
            o.max_tokens = (int32_t)n;
        } else if (!strcmp(a, "--top-p")) {
            NEED();
            if (!cli_parse_float(v, 0.01, 1, &d)) BAD();
            o.top_p = (float)d;
        } else if (!strcmp(a, "--seed")) {
            NEED();
            if (!cli_parse_int(v, 0, INT64_MAX, &n)) BAD();
            o.seed = (uint64_t)n;
        } else if (!strcmp(a, "--timeout")) {
            NEED();
            if (!cli_parse_float(v, 0.001, 1e7, &d)) BAD();
            o.timeout_s = d;
        } else if (!strcmp(a, "--backoff")) {
            NEED();
            if (!cli_parse_float(v, 0.001, 3600, &d)) BAD();
            o.backoff_s = d;
        } else if (!strcmp(a, "--cooldown")) {
            NEED();
            if (!cli_parse_float(v, 0.001, 86400, &d)) BAD();
            o.cooldown_s = d;
        } else if (!strcmp(a, "--retries")) {
            NEED();
            if (!cli_parse_int(v, 0, 100, &n)) BAD();
            o.retries = (int32_t)n;
        } else if (!strcmp(a, "--no-near-dedup")) {
            o.near_dedup = false;
        } else if (!strcmp(a, "--resume")) {
            o.resume = true;
        } else if (!strcmp(a, "--dry-run")) {
            o.dry_run = true;
        } else if (!strcmp(a, "--report")) {
            NEED();
            o.report_path = v;
        } else if (!strcmp(a, "--db")) {
            NEED();
            o.db_path = v;
        } else if (!strcmp(a, "--progress")) {
            NEED();
            progress = v;
            if (strcmp(v, "auto") && strcmp(v, "bar") && strcmp(v, "plain") && strcmp(v, "off")) BAD();
        } else if (!strcmp(a, "--naive")) {
            o.naive = true;
        } else if (!strcmp(a, "--config")) {
            NEED();
            config = v;
        } else if (!strcmp(a, "--no-config")) {
            no_config = true;
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error(k_usage, "gen: unknown option '%s'", a);
            goto out;
        } else {
            if (add_str(&inputs, &n_inputs, a)) goto nomem;
        }
#undef VAL
#undef NEED
#undef BAD
    }
    qf_err err = {0};
    if (prompts_init) {
        if (qf_prompts_write_defaults(prompts_init, &err) != QF_OK) {
            rc = cli_fail(&err);
            goto out;
        }
        printf("wrote the built-in prompt templates to %s/ (edit them, then pass --prompts %s)\n", prompts_init,
               prompts_init);
        goto out;
    }
    if (n_eps && ollama) {
        rc = cli_usage_error(k_usage, "gen: --endpoint and --ollama do not mix");
        goto out;
    }
    if ((n_eps || ollama) && o.model_path) {
        rc = cli_usage_error(k_usage, "gen: -m is for the embedded engine; with a server use --model-name");
        goto out;
    }
    if (ollama && add_str(&eps, &n_eps, ollama)) goto nomem;
    o.ollama = ollama != NULL;
    o.endpoints = eps;
    o.n_endpoints = n_eps;
    if (!fetch_only) {
        if (!n_inputs) {
            rc = cli_usage_error(k_usage, "gen: no INPUT given (files or folders of documents)");
            goto out;
        }
        if (!o.output && !o.dry_run) {
            rc = cli_usage_error(k_usage, "gen: -o OUT.jsonl is required");
            goto out;
        }
    }
    if (qf_preset_resolve(preset, &o.preset, &err) != QF_OK) {
        rc = cli_fail(&err);
        goto out;
    }
    if (workers > 0) o.preset.workers = (int32_t)workers;
    if (maxc > 0) o.preset.max_concurrent_requests = (int32_t)maxc;
    if (temp >= 0) o.preset.temperature = (float)temp;
    if (passes > 0) o.preset.generation_passes = (int32_t)passes;
    if (pairs > 0) o.preset.qa_pairs_per_chunk = (int32_t)pairs;
    if (minans >= 0) o.preset.min_answer_length = (int32_t)minans;
    { /* config file (embedded engine only): below the flags, above the built-in defaults */
        qf_config cfg;
        qf_preset builtin;
        bool found;
        if (qf_config_resolve(config, !no_config, &cfg, &found, &err) != QF_OK) {
            rc = cli_fail(&err);
            goto out;
        }
        if (found && !o.n_endpoints) {
            if (!o.n_threads) o.n_threads = cfg.threads;
            if (!o.n_ctx) o.n_ctx = cfg.ctx;
            if (!kv_set && cfg.has_kv_type) o.kv_type = cfg.kv_type;
            /* engine slots = max_concurrent_requests x generation_passes (pipeline/gen.c) */
            if (cfg.parallel && maxc <= 0 && qf_preset_builtin(preset, &builtin) == QF_OK) {
                int32_t mc = cfg.parallel / o.preset.generation_passes;
                o.preset.max_concurrent_requests = mc > 0 ? mc : 1;
            }
            fprintf(stderr, "qforge: gen: settings from %s\n", cfg.path);
        }
    }
    o.progress = !strcmp(progress, "bar") ? 1 : !strcmp(progress, "plain") ? 2 : !strcmp(progress, "off") ? -1 : 0;
    o.inputs = inputs;
    o.n_inputs = n_inputs;
    o.log = stderr;

    /* the model: -m, else $QFORGE_MODEL, else the default one (cached) */
    char *default_path = NULL;
    if (!o.n_endpoints && !o.model_path) {
        const char *env = getenv("QFORGE_MODEL");
        if (env && *env && !fetch_only) {
            o.model_path = env;
        } else {
            default_path = qf_fetch_default_path();
            struct stat st;
            if (!default_path) {
                fprintf(stderr, "qforge: error: no model given and no cache folder (HOME unset).\n%s\n",
                        qf_fetch_help());
                rc = QF_EXIT_FAIL;
                goto out;
            }
            if (stat(default_path, &st) == 0) {
                o.model_path = default_path;
            } else if (!o.dry_run || fetch_only) {
                if (qf_fetch(qf_fetch_default_url(), default_path, NULL, stderr, &err) != QF_OK) {
                    fprintf(stderr, "qforge: error: no model given (-m, QFORGE_MODEL) and %s\n", err.msg);
                    qf_free(default_path);
                    rc = QF_EXIT_FAIL;
                    goto out;
                }
                o.model_path = default_path;
            }
        }
    }
    if (fetch_only) {
        printf("%s\n", o.model_path ? o.model_path : "");
        qf_free(default_path);
        goto out;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    o.stop = &g_stop;

    qf_gen_report rep;
    qf_status st = qf_gen_run(&o, &rep, &err);
    if (st == QF_OK || st == QF_ERR_CANCELLED || rep.dry_run) qf_report_print(&rep, stderr);
    if (st == QF_OK && !rep.dry_run) {
        fprintf(stderr, "  dataset:    %s", o.output);
        if (o.curate) {
            char *rp = qf_gen_rejects_path(o.output);
            fprintf(stderr, "  (rejects: %s)", rp ? rp : "");
            qf_free(rp);
        }
        fputc('\n', stderr);
    }
    if (st != QF_OK) {
        rc = cli_fail(&err);
        if (st == QF_ERR_IO && strstr(err.msg, "disk full"))
            fprintf(stderr, "qforge: the job state is saved; free some space and run the same command with --resume\n");
    }
    qf_report_deinit(&rep);
    qf_free(default_path);
    goto out;
nomem:
    fprintf(stderr, "qforge: out of memory\n");
    rc = QF_EXIT_FAIL;
out:
    qf_free(inputs);
    qf_free(eps);
    return rc;
}
