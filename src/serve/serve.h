/* serve.h - `qforge serve`: a local OpenAI- and Ollama-compatible server.
 *
 * Routes (HTTP/1.1 via libmicrohttpd, one thread per connection):
 *
 *   OpenAI   POST /v1/chat/completions, POST /v1/completions,
 *            GET /v1/models, GET /v1/models/{name}
 *            streaming: server-sent events ending in `data: [DONE]`;
 *            errors: {"error": {"message", "type", "param", "code"}}
 *   Ollama   POST /api/chat, POST /api/generate (NDJSON streaming by
 *            default), GET /api/tags, GET /api/ps, POST /api/show,
 *            GET /api/version; errors: {"error": "message"}
 *   other    GET /health, GET /metrics (Prometheus text), GET / (dashboard),
 *            GET /alerts (active alerts: {"alerts":[{"name", "severity",
 *            "message", "value", "threshold", "since_unix"}]})
 *
 * Monitoring: once a second the server samples the system (monitor/sys.h:
 * CPU per core, memory, memory pressure, I/O, GPU) and its engines into
 * /metrics and feeds the bottleneck detector (monitor/alert.h); alerts go
 * to the log, /alerts, /metrics (qforge_alert_active{alert=...}), the
 * dashboard, and the alert command when one is set. Names: docs/metrics.md.
 *
 * Every generation request goes to the engine of its model (see models.h
 * for loading and keep-alive): a full queue answers 503 with Retry-After,
 * a prompt that cannot fit 400 with both token counts, an unknown model
 * 404, a body over max_body 413, and a client that disconnects cancels its
 * generation at once (the connection is watched while waiting for tokens).
 * With api_key set every route except /health and / needs
 * `Authorization: Bearer KEY` (401 otherwise).
 *
 * Thread-safety: qf_serve_new / qf_serve_free from one thread; the server
 * runs on its own threads in between.
 */
#ifndef QF_SERVE_H
#define QF_SERVE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "quant/quant.h"

typedef struct qf_serve_opts {
    const char *host;          /* address to bind; default "127.0.0.1" */
    int port;                  /* default 1234; 0 = any free port (see qf_serve_port) */
    const char *model_path;    /* -m FILE */
    const char *models_dir;    /* --models-dir DIR */
    int n_parallel;            /* sequences per model; 0 = engine default */
    int max_queue;             /* waiting requests per model; 0 = engine default */
    double timeout_s;          /* per-request deadline; 0 = 1800 */
    int n_ctx;                 /* 0 = engine default */
    int n_threads;             /* 0 = engine default */
    int n_batch;               /* 0 = engine default */
    qf_type kv_type;           /* kv cache elements: F16 (default), Q8_0, F32 */
    int n_gpu_layers;          /* layers on the GPU: -1 all, 0 none (QF_GPU_LAYERS_AUTO: what fits;
                                  default: $QFORGE_GPU_LAYERS, else auto with a GPU backend, 0 without) */
    int max_loaded;            /* 0 = 1 */
    double keep_alive_s;       /* default 300; < 0 forever */
    size_t mem_budget;         /* 0 = available memory */
    const char *api_key;       /* NULL = no authentication */
    const char *cors_origin;   /* NULL = no CORS headers */
    const char *chat_template; /* NULL = the models' own */
    size_t max_body;           /* request body limit in bytes; 0 = 8 MiB */
    int http_timeout_s;        /* idle connection timeout (slow clients); 0 = 60 */
    int max_connections;       /* 0 = 256 */
    bool log_requests;         /* one info line per request */
    const char *alert_cmd;     /* --alert-cmd: run with each alert as JSON on stdin; NULL = none */
    const char *const *alert_settings; /* --alert KEY=VALUE (qf_alert_config_set); borrowed */
    int n_alert_settings;
} qf_serve_opts;

/* Defaults as documented above (host, port 1234, keep-alive 300 s). */
qf_serve_opts qf_serve_opts_default(void);

typedef struct qf_serve qf_serve;

/* Check the options, bind host:port and start serving (models load on first
 * use). NULL + err: QF_ERR_INVALID (bad option, bad alert setting: the
 * message names it), QF_ERR_IO (cannot bind, model file or folder
 * missing). */
qf_serve *qf_serve_new(const qf_serve_opts *o, qf_err *err);
/* The bound port (useful with port 0). */
int qf_serve_port(const qf_serve *s);
/* Stop accepting, cancel running generations, unload models, free. NULL is
 * a no-op. */
void qf_serve_free(qf_serve *s);

/* qf_serve_new, then wait until *stop becomes non-zero (set it from a
 * signal handler), then qf_serve_free. */
qf_status qf_serve_run(const qf_serve_opts *o, volatile sig_atomic_t *stop, qf_err *err);

#endif
