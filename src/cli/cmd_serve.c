/* cmd_serve.c - `qforge serve`: the OpenAI- and Ollama-compatible server.
 *
 * Settings come from the environment first (names like Ollama's: see the
 * usage text), then the command line, which wins. The process runs until
 * SIGINT or SIGTERM, then stops in order (cancel, join, unload).
 */
#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "cli/cli.h"
#include "serve/models.h"
#include "serve/serve.h"
#include "tune/config.h"
#include "monitor/alert.h"

static const char *k_usage =
    "usage: qforge serve (-m MODEL.gguf | --models-dir DIR) [options]\n"
    "\n"
    "A local server for OpenAI clients (/v1, like LM Studio) and Ollama clients (/api).\n"
    "A model's name is its file name without .gguf; models load on first use.\n"
    "\n"
    "  -m, --model FILE        a GGUF model\n"
    "      --models-dir DIR    serve every *.gguf in DIR                 [QFORGE_MODELS]\n"
    "      --host ADDR         address to listen on (default 127.0.0.1; 0.0.0.0 = every\n"
    "                          interface, only when you mean it)          "
    "[QFORGE_HOST=host[:port]]\n"
    "      --port N            (default 1234; 0 = any free port)\n"
    "  -np, --parallel N       sequences generated at once per model (default 4)\n"
    "                                                                    [QFORGE_NUM_PARALLEL]\n"
    "      --max-queue N       waiting requests per model; beyond: 503 + Retry-After (default 64)\n"
    "                                                                    [QFORGE_MAX_QUEUE]\n"
    "      --timeout S         per-request deadline in seconds (default 1800) [QFORGE_TIMEOUT]\n"
    "  -c, --ctx N             context length per sequence (default: min(model's, 4096))\n"
    "                                                                    [QFORGE_CONTEXT_LENGTH]\n"
    "      --max-loaded N      models loaded at once; the least recently used idle one is\n"
    "                          unloaded for a new one (default 1)        "
    "[QFORGE_MAX_LOADED_MODELS]\n"
    "      --keep-alive D      keep an idle model loaded for D: 5m (default), 1h, 30s, -1 = "
    "forever,\n"
    "                          0 = unload after each request             [QFORGE_KEEP_ALIVE]\n"
    "      --api-key KEY       every API route needs 'Authorization: Bearer KEY' [QFORGE_API_KEY]\n"
    "      --cors ORIGIN       allow browser pages from ORIGIN (e.g. '*')  [QFORGE_ORIGINS]\n"
    "      --mem-budget SIZE   memory for loaded models, e.g. 24G (default: available memory)\n"
    "  -t, --threads N         compute threads per model (default: performance cores)\n"
    "      --batch N           tokens per engine step (default 512)\n"
    "      --kv-type TYPE      f16 (default), q8_0 or f32\n"
    "  -ngl, --gpu-layers N    layers on the GPU: -1 = all, 0 = none, auto = what fits\n"
    "                          (default auto with a GPU backend, else 0) [QFORGE_GPU_LAYERS]\n"
    "      --chat-template NAME   template family instead of the models' own\n"
    "      --max-body SIZE     request body limit (default 8M; beyond: 413)\n"
    "      --http-timeout S    close connections idle this long (slow clients; default 60)\n"
    "      --max-connections N (default 256)\n"
    "  -v, --verbose           log every request\n"
    "      --config FILE       threads, parallel, batch, ctx, kv_type from a config file (written by\n"
    "                          `qforge tune --autotune`; default ~/.config/qforge/config.yaml if\n"
    "                          present; flags and environment win)   --no-config: ignore it\n"
    "      --alert KEY=VALUE   alert setting, repeatable: memory_pressure=90%, response_latency=60,\n"
    "                          cache_hit_rate=off, error_rate=5%, window=120, ... (docs/metrics.md)\n"
    "      --alert-cmd CMD     run CMD (sh -c) on every alert fired or cleared, the alert as JSON\n"
    "                          on stdin\n"
    "\n"
    "Stop with Ctrl-C (SIGINT) or SIGTERM.\n";

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* "16G", "512M", "1.5G", "1024" (bytes); K/M/G/T are powers of 1024. */
static bool parse_size(const char *s, size_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0) return false;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        mul = 1024.0;
        end++;
        break;
    case 'M':
        mul = 1024.0 * 1024;
        end++;
        break;
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        end++;
        break;
    case 'T':
        mul = 1024.0 * 1024 * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if (!strcasecmp(end, "iB") || !strcasecmp(end, "B")) end += strlen(end);
    if (*end) return false;
    double b = v * mul;
    if (b > 1e18) return false;
    *out = (size_t)b;
    return true;
}

/* "host", "host:port", "http://host:port", "[::1]:port" -> host (static
 * buffer) and port (unchanged when absent). */
static bool parse_host(const char *v, const char **host, int *port) {
    static char buf[256];
    if (!strncmp(v, "http://", 7)) v += 7;
    snprintf(buf, sizeof buf, "%s", v);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '/')
        buf[--n] = 0;
    char *h = buf, *colon = NULL;
    if (buf[0] == '[') {
        char *rb = strchr(buf, ']');
        if (!rb) return false;
        *rb = 0;
        h = buf + 1;
        if (rb[1] == ':')
            colon = rb + 1;
        else if (rb[1])
            return false;
    } else if (strchr(buf, ':') == strrchr(buf, ':')) {
        colon = strchr(buf, ':');
    }
    if (colon) {
        *colon = 0;
        long long p;
        if (!cli_parse_int(colon + 1, 0, 65535, &p)) return false;
        *port = (int)p;
    }
    if (*h) *host = h;
    return true;
}

static bool parse_keep_alive(const char *v, double *out) {
    return qf_models_parse_duration(v, out) == QF_OK;
}

static const char *env2(const char *a, const char *b) {
    const char *v = getenv(a);
    if (v && *v) return v;
    v = b ? getenv(b) : NULL;
    return v && *v ? v : NULL;
}

/* Apply environment settings; false + message on a bad value. */
static bool from_env(qf_serve_opts *o) {
    const char *v;
    long long n;
    if ((v = env2("QFORGE_HOST", "OLLAMA_HOST")) && !parse_host(v, &o->host, &o->port)) {
        fprintf(stderr, "qforge: serve: bad QFORGE_HOST '%s' (host[:port])\n", v);
        return false;
    }
    if ((v = env2("QFORGE_MODELS", "OLLAMA_MODELS"))) o->models_dir = v;
    struct {
        const char *a, *b;
        int *dst;
        long long lo, hi;
    } ints[] = {
        {"QFORGE_NUM_PARALLEL", "OLLAMA_NUM_PARALLEL", &o->n_parallel, 1, 4096},
        {"QFORGE_MAX_QUEUE", "OLLAMA_MAX_QUEUE", &o->max_queue, 1, 1 << 20},
        {"QFORGE_MAX_LOADED_MODELS", "OLLAMA_MAX_LOADED_MODELS", &o->max_loaded, 1, 1024},
        {"QFORGE_CONTEXT_LENGTH", "OLLAMA_CONTEXT_LENGTH", &o->n_ctx, 1, 1 << 24},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (!(v = env2(ints[i].a, ints[i].b))) continue;
        if (!cli_parse_int(v, ints[i].lo, ints[i].hi, &n)) {
            fprintf(stderr, "qforge: serve: bad %s '%s' (an integer in [%lld, %lld])\n", ints[i].a,
                    v, ints[i].lo, ints[i].hi);
            return false;
        }
        *ints[i].dst = (int)n;
    }
    if ((v = env2("QFORGE_KEEP_ALIVE", "OLLAMA_KEEP_ALIVE")) &&
        !parse_keep_alive(v, &o->keep_alive_s)) {
        fprintf(stderr, "qforge: serve: bad QFORGE_KEEP_ALIVE '%s' (5m, 1h, 30s, -1, 0)\n", v);
        return false;
    }
    if ((v = env2("QFORGE_TIMEOUT", NULL))) {
        double d;
        if (!cli_parse_float(v, 1, 1e7, &d)) {
            fprintf(stderr, "qforge: serve: bad QFORGE_TIMEOUT '%s' (seconds)\n", v);
            return false;
        }
        o->timeout_s = d;
    }
    if ((v = env2("QFORGE_ORIGINS", "OLLAMA_ORIGINS"))) o->cors_origin = v;
    if ((v = env2("QFORGE_API_KEY", NULL))) o->api_key = v;
    return true;
}

int cmd_serve(int argc, char **argv) {
    qf_serve_opts o = qf_serve_opts_default();
    const char *alert_kv[64]; /* --alert settings */
    qf_alert_config alert_check = qf_alert_config_default();
    if (!from_env(&o)) return QF_EXIT_USAGE;
    const char *config = NULL;
    bool kv_set = false, no_config = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        long long n;
        double d;
#define VAL() ((v = cli_value(argc, argv, &i)) != NULL)
#define NEED()                                                                                     \
    do {                                                                                           \
        if (!VAL()) return cli_usage_error(k_usage, "serve: %s needs a value", a);                 \
    } while (0)
#define BAD() return cli_usage_error(k_usage, "serve: bad value '%s' for %s", v, a)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return QF_EXIT_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED();
            o.model_path = v;
        } else if (!strcmp(a, "--models-dir")) {
            NEED();
            o.models_dir = v;
        } else if (!strcmp(a, "--host")) {
            NEED();
            o.host = v;
        } else if (!strcmp(a, "--port")) {
            NEED();
            if (!cli_parse_int(v, 0, 65535, &n)) BAD();
            o.port = (int)n;
        } else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) {
            NEED();
            if (!cli_parse_int(v, 1, 4096, &n)) BAD();
            o.n_parallel = (int)n;
        } else if (!strcmp(a, "--max-queue")) {
            NEED();
            if (!cli_parse_int(v, 1, 1 << 20, &n)) BAD();
            o.max_queue = (int)n;
        } else if (!strcmp(a, "--timeout")) {
            NEED();
            if (!cli_parse_float(v, 0.001, 1e7, &d)) BAD();
            o.timeout_s = d;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NEED();
            if (!cli_parse_int(v, 1, 1 << 24, &n)) BAD();
            o.n_ctx = (int)n;
        } else if (!strcmp(a, "--max-loaded")) {
            NEED();
            if (!cli_parse_int(v, 1, 1024, &n)) BAD();
            o.max_loaded = (int)n;
        } else if (!strcmp(a, "--keep-alive")) {
            NEED();
            if (!parse_keep_alive(v, &o.keep_alive_s)) BAD();
        } else if (!strcmp(a, "--api-key")) {
            NEED();
            o.api_key = v;
        } else if (!strcmp(a, "--cors")) {
            NEED();
            o.cors_origin = v;
        } else if (!strcmp(a, "--mem-budget")) {
            NEED();
            if (!parse_size(v, &o.mem_budget) || o.mem_budget == 0) BAD();
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED();
            if (!cli_parse_int(v, 1, 1024, &n)) BAD();
            o.n_threads = (int)n;
        } else if (!strcmp(a, "--batch")) {
            NEED();
            if (!cli_parse_int(v, 1, 1 << 20, &n)) BAD();
            o.n_batch = (int)n;
        } else if (!strcmp(a, "--kv-type")) {
            NEED();
            kv_set = true;
            if (!cli_parse_kv_type(v, &o.kv_type)) BAD();
        } else if (!strcmp(a, "-ngl") || !strcmp(a, "--gpu-layers") || !strcmp(a, "--n-gpu-layers")) {
            NEED();
            if (!cli_parse_gpu_layers(v, &n)) BAD();
            o.n_gpu_layers = (int)n;
        } else if (!strcmp(a, "--chat-template")) {
            NEED();
            o.chat_template = v;
        } else if (!strcmp(a, "--max-body")) {
            NEED();
            if (!parse_size(v, &o.max_body) || o.max_body == 0) BAD();
        } else if (!strcmp(a, "--http-timeout")) {
            NEED();
            if (!cli_parse_int(v, 1, 86400, &n)) BAD();
            o.http_timeout_s = (int)n;
        } else if (!strcmp(a, "--max-connections")) {
            NEED();
            if (!cli_parse_int(v, 1, 65536, &n)) BAD();
            o.max_connections = (int)n;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o.log_requests = true;
        } else if (!strcmp(a, "--config")) {
            NEED();
            config = v;
        } else if (!strcmp(a, "--no-config")) {
            no_config = true;
        } else if (!strcmp(a, "--alert")) {
            NEED();
            qf_err aerr = {0};
            if (o.n_alert_settings == 64) return cli_usage_error(k_usage, "serve: over 64 --alert");
            if (qf_alert_config_set(&alert_check, v, &aerr) != QF_OK)
                return cli_usage_error(k_usage, "serve: --alert: %s", aerr.msg);
            alert_kv[o.n_alert_settings++] = v;
            o.alert_settings = alert_kv;
        } else if (!strcmp(a, "--alert-cmd")) {
            NEED();
            o.alert_cmd = v;
        } else {
            return cli_usage_error(k_usage, "serve: unknown option '%s'", a);
        }
#undef VAL
#undef NEED
#undef BAD
    }
    if (!o.model_path && !o.models_dir)
        return cli_usage_error(
            k_usage, "serve: give a model (-m FILE) or a folder of models (--models-dir DIR)");
    { /* config file: below flags and environment, above the built-in defaults */
        qf_config cfg;
        bool found;
        qf_err cerr = {0};
        if (qf_config_resolve(config, !no_config, &cfg, &found, &cerr) != QF_OK) return cli_fail(&cerr);
        if (found) {
            if (!o.n_threads) o.n_threads = cfg.threads;
            if (!o.n_parallel) o.n_parallel = cfg.parallel;
            if (!o.n_batch) o.n_batch = cfg.batch;
            if (!o.n_ctx) o.n_ctx = cfg.ctx;
            if (!kv_set && cfg.has_kv_type) o.kv_type = cfg.kv_type;
            fprintf(stderr, "qforge: serve: settings from %s\n", cfg.path);
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that vanishes mid-write is not fatal */
    if (qf_log_get_level() > QF_LOG_INFO && o.log_requests) qf_log_set_level(QF_LOG_INFO);

    qf_err err = {0};
    qf_serve *s = qf_serve_new(&o, &err);
    if (!s) return cli_fail(&err);
    bool v6 = strchr(o.host, ':') != NULL;
    printf("qforge: serving on http://%s%s%s:%d/ (OpenAI /v1, Ollama /api, dashboard /, metrics "
           "/metrics)\n",
           v6 ? "[" : "", o.host, v6 ? "]" : "", qf_serve_port(s));
    fflush(stdout);
    if (!strcmp(o.host, "0.0.0.0") || !strcmp(o.host, "::"))
        fprintf(stderr, "qforge: serve: listening on every interface (%s)%s\n", o.host,
                o.api_key ? "" : " without --api-key: anyone on the network can use it");
    while (!g_stop) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "qforge: serve: stopping\n");
    qf_serve_free(s);
    return QF_EXIT_OK;
}
