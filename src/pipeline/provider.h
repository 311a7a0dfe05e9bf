/* provider.h - where `qforge gen` sends its requests: the embedded engine or
 * an HTTP server (OpenAI-compatible or Ollama).
 *
 * A request is a list of chat messages plus sampling parameters and an
 * optional JSON Schema for the reply. n > 1 asks for n completions of the
 * same prompt with seeds seed, seed+1, ... (generation passes); the
 * embedded engine computes the prompt once for all of them, HTTP providers
 * send n requests. Submitting never blocks and never fails for lack of
 * room: requests beyond what is in flight wait inside the provider.
 * qf_provider_wait blocks until at least one completion has finished (or
 * the timeout passes) and hands out finished completions, each exactly once,
 * one result per (tag, index).
 *
 * Results carry a status: QF_OK with the reply text, or a failure with a
 * short reason key ("timeout", "http_500", "http_429", "bad_response",
 * "connect", "engine", "cancelled", "length"?) and a detail message. A reply
 * cut by max_tokens is QF_OK with finish "length" (the caller decides).
 *
 * Thread-safety: one thread drives a provider (submit, wait, free); the
 * embedded provider's engine runs its own threads internally.
 */
#ifndef QF_PROVIDER_H
#define QF_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "quant/quant.h"
#include "tok/chat.h"

typedef struct qf_preq {
    uint64_t tag;              /* caller's id, given back in each result */
    const qf_chat_msg *msgs;   /* copied by submit */
    int n_msgs;
    int32_t n;                 /* completions, seeds seed..seed+n-1; 0 = 1 */
    float temperature, top_p;
    uint64_t seed;
    int32_t max_tokens;
    const char *json_schema;   /* reply constraint (copied); NULL = free text */
} qf_preq;

typedef struct qf_presult {
    uint64_t tag;
    int32_t index;             /* completion index 0..n-1 */
    qf_status status;          /* QF_OK or the failure */
    char *text;                /* reply (owned; qf_presult_deinit frees) */
    size_t len;
    char finish[16];           /* "stop", "length", ... */
    char reason[24];           /* failure key, "" on success */
    char detail[256];          /* failure message */
    int32_t tokens_in, tokens_out, tokens_cached;
    int32_t attempts;          /* HTTP: tries made */
} qf_presult;

void qf_presult_deinit(qf_presult *r);

typedef struct qf_provider_stats {
    uint64_t submitted, completed, failed, retries;
    uint64_t tokens_in, tokens_out, tokens_cached;
    int32_t in_flight, waiting;
} qf_provider_stats;

typedef struct qf_provider qf_provider;

qf_status qf_provider_submit(qf_provider *p, const qf_preq *r, qf_err *err);
/* Up to cap finished results into out (caller deinits each); blocks up to
 * timeout_s when none is ready. Returns the number written. */
int qf_provider_wait(qf_provider *p, qf_presult *out, int cap, double timeout_s);
/* Completions submitted and not yet handed out. */
int64_t qf_provider_pending(const qf_provider *p);
/* Tokens of text by the model's tokenizer, or -1 when the provider has none
 * (HTTP): callers then estimate. Thread-safe. */
int32_t qf_provider_count_tokens(const qf_provider *p, const char *text, size_t len);
/* Largest prompt + reply in tokens, or 0 when unknown. */
int32_t qf_provider_n_ctx(const qf_provider *p);
/* Model identity for cache keys and records: "file.gguf#<hash>" for the
 * engine, the model name for HTTP. Borrowed. */
const char *qf_provider_model_id(const qf_provider *p);
/* Short display name of the model. Borrowed. */
const char *qf_provider_model_name(const qf_provider *p);
void qf_provider_get_stats(const qf_provider *p, qf_provider_stats *out /* out */);
/* Cancel everything in flight (results for them are dropped), free. */
void qf_provider_free(qf_provider *p);

/* ---- embedded engine ---- */

typedef struct qf_provider_engine_params {
    const char *model_path;
    int32_t n_ctx;             /* 0: min(trained, 4096) */
    int32_t n_parallel;        /* sequences decoded together; 0 = 8 */
    int64_t kv_tokens;         /* kv cache size in tokens; 0 = n_ctx * n_parallel */
    int n_threads;             /* 0: performance cores */
    int n_gpu_layers;          /* layers on the GPU: -1 all, 0 none, QF_GPU_LAYERS_AUTO what fits */
    qf_type kv_type;           /* kv cache elements: QF_TYPE_F16 (the usual), Q8_0 or F32; set it
                                  explicitly (a zeroed struct means F32) */
    const char *chat_template; /* family name override, NULL = the model's */
    bool no_prefix_cache;      /* for the naive baseline of the benchmark */
    double timeout_s;          /* per request; 0 = 1800 */
} qf_provider_engine_params;

qf_provider *qf_provider_engine_new(const qf_provider_engine_params *p, qf_err *err);

/* ---- HTTP ---- */

typedef enum qf_http_api { QF_HTTP_OPENAI = 0, QF_HTTP_OLLAMA } qf_http_api;

typedef struct qf_provider_http_params {
    qf_http_api api;
    const char *const *urls;   /* base URLs ("http://host:port" or ".../v1"), n_urls >= 1 */
    int n_urls;
    const char *model;         /* model name; NULL: ask the server (first listed), else "default" */
    const char *api_key;       /* Authorization: Bearer (OpenAI); NULL: $OPENAI_API_KEY if set */
    int32_t max_in_flight;     /* requests on the wire at once, all endpoints; 0 = 4 */
    double timeout_s;          /* per request; 0 = 1800 */
    int32_t max_retries;       /* per request on 429/5xx/timeout/connection/garbage; < 0 = 5 */
    double backoff_base_s;     /* first retry delay; doubles each time, +-50% jitter; 0 = 1 */
    double backoff_max_s;      /* cap; 0 = 60 */
    int32_t fail_threshold;    /* consecutive failures that take an endpoint out; 0 = 3 */
    double cooldown_s;         /* how long it stays out (doubles on repeat up to 8x, max 10 min); 0 = 30 */
} qf_provider_http_params;

/* Validates the URLs; does not connect (the model name query, when
 * needed, is the only request made here: a server that is down is an IO
 * error naming the URL). */
qf_provider *qf_provider_http_new(const qf_provider_http_params *p, qf_err *err);

/* ---- implementation interface (provider_*.c) ---- */

typedef struct qf_provider_vt {
    qf_status (*submit)(qf_provider *p, const qf_preq *r, qf_err *err);
    int (*wait)(qf_provider *p, qf_presult *out, int cap, double timeout_s);
    int32_t (*count_tokens)(const qf_provider *p, const char *text, size_t len);
    void (*free)(qf_provider *p);
} qf_provider_vt;

struct qf_provider {
    const qf_provider_vt *vt;
    char model_id[256];
    char model_name[128];
    int32_t n_ctx;
    int64_t pending;
    qf_provider_stats stats;
};

#endif
