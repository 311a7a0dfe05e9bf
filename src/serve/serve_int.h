/* serve_int.h - what the files of the serve layer share (not public).
 *
 * Flow of a generation request: http.c accumulates the body and routes it;
 * request.c parses and validates the JSON into a serve_req (no model
 * needed: this is what the fuzz target drives); gen.c acquires the model,
 * builds the prompt tokens, submits to the engine and either waits for the
 * whole answer or streams it; openai.c / ollama.c render events and final
 * bodies in their API's shape through a serve_api_ops table. job.c is the
 * bridge from the engine's scheduler thread to the connection thread.
 */
#ifndef QF_SERVE_INT_H
#define QF_SERVE_INT_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "sample/sample.h"
#include "monitor/alert.h"
#include "monitor/metrics.h"
#include "monitor/sys.h"
#include "serve/models.h"
#include "serve/serve.h"

#define SERVE_VERSION "0.1.0"

/* ---- byte buffer (buf.c) ---- */

typedef struct serve_buf {
    char *p; /* NUL-terminated when non-NULL */
    size_t len, cap;
    bool oom; /* an append failed; contents are incomplete */
} serve_buf;

void serve_buf_add(serve_buf *b, const void *d, size_t n);
void serve_buf_puts(serve_buf *b, const char *s);
void serve_buf_printf(serve_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void serve_buf_free(serve_buf *b);

/* Offset of the first byte that breaks UTF-8 (overlongs, surrogates and
 * code points above U+10FFFF included), or n when all of s is valid. */
size_t serve_utf8_check(const char *s, size_t n);
/* Copy of s with every invalid byte replaced by U+FFFD; NUL-terminated,
 * qf_free; length in *out_len. NULL on allocation failure. */
char *serve_utf8_clean(const char *s, size_t n, size_t *out_len);

/* cJSON string item from bytes that may be invalid UTF-8 (cleaned). */
cJSON *serve_json_str(const char *s, size_t n);
/* Print j compactly (cJSON_PrintUnformatted) into b; false on OOM. */
bool serve_json_append(serve_buf *b, const cJSON *j);

/* RFC 3339 UTC time with nanoseconds ("2024-05-01T12:00:00.123456789Z")
 * of wall-clock seconds t (< 0: now). */
void serve_rfc3339(double t, char *buf, size_t cap);
double serve_wall_s(void);

/* See qf_models_parse_duration (models.h); lives here so the request
 * parser (and its fuzz target) need nothing of the model manager. */
qf_status serve_parse_duration(const char *s, double *out_s /* out */);

/* ---- requests (request.c) ---- */

typedef enum serve_api {
    SERVE_OPENAI_CHAT = 0,
    SERVE_OPENAI_COMPLETION,
    SERVE_OLLAMA_CHAT,
    SERVE_OLLAMA_GENERATE,
} serve_api;

typedef struct serve_msg {
    char *role, *content; /* owned, valid UTF-8 */
} serve_msg;

#define SERVE_MAX_STOP 16
#define SERVE_MAX_N    16

typedef struct serve_req {
    serve_api api;
    char *model;     /* NULL when absent */
    serve_msg *msgs; /* chat; n_msgs may be 0 (Ollama: load request) */
    int n_msgs;
    char *prompt;        /* completion / generate text, or NULL */
    int32_t *prompt_ids; /* completion token prompt, or Ollama's context */
    int n_prompt_ids;
    char *system; /* Ollama generate */
    bool raw;     /* Ollama generate: no chat template */
    bool stream;
    bool include_usage; /* OpenAI stream_options.include_usage */
    int n;              /* completions, 1..SERVE_MAX_N */
    qf_sample_params sample;
    int64_t max_tokens; /* > 0 given; 0 = until the context is full */
    char *stop[SERVE_MAX_STOP];
    int n_stop;
    char *json_schema; /* "json", a JSON Schema text, or NULL */
    bool has_keep_alive;
    double keep_alive_s;
    bool ignore_eos;
} serve_req;

/* Parse and validate a request body. On failure returns a qf_status with
 * err's message for the client and, when one field is at fault, its name
 * in param (cap bytes, "" otherwise). r is then deinitialised. Checks: valid
 * UTF-8, valid JSON, an object, no unknown fields, types and ranges. */
qf_status serve_req_parse(serve_api api, const char *body, size_t len, serve_req *r /* out */,
                          char *param, size_t param_cap, qf_err *err);
void serve_req_deinit(serve_req *r);

/* ---- engine events -> connection thread (job.c) ---- */

typedef struct serve_ev {
    int32_t index, token;
    char *text; /* owned (qf_free), may be NULL */
    size_t len;
    qf_finish finish;
    qf_usage usage; /* final events */
    char *error;    /* owned, QF_FINISH_ERROR */
} serve_ev;

typedef struct serve_job serve_job;
struct qf_serve;

/* A queue for the events of one request of n completions. Two references:
 * the connection's and the engine's (dropped after the n-th final event,
 * or with serve_job_submit_failed). */
serve_job *serve_job_new(struct qf_serve *srv, int n);
void serve_job_on_event(void *ud, const qf_event *ev); /* the qf_event_fn */
void serve_job_submit_failed(serve_job *j);
void serve_job_unref(serve_job *j);
/* Next event: 1 (ev filled; clear with serve_ev_clear), 0 after timeout_ms
 * without one, -1 when all final events were already taken. */
int serve_job_next(serve_job *j, serve_ev *ev /* out */, int timeout_ms);
void serve_ev_clear(serve_ev *ev);

/* ---- server and connections ---- */

typedef enum serve_family { FAM_PLAIN = 0, FAM_OPENAI, FAM_OLLAMA } serve_family;

typedef struct serve_gen serve_gen;

typedef struct serve_conn {
    struct qf_serve *srv;
    struct MHD_Connection *conn;
    const char *route; /* metrics label: the route pattern, or "other" */
    serve_family fam;
    serve_buf body;
    bool replied;   /* a response is queued */
    bool too_big;   /* body over max_body: dropped, 413 at the end */
    size_t dropped; /* body bytes dropped */
    int status;     /* of the queued response */
    double t0;
    serve_gen *gen; /* generation state (owned) */
} serve_conn;

struct qf_serve {
    qf_serve_opts o; /* strings point into the copies below */
    char *s_host, *s_model, *s_dir, *s_key, *s_cors, *s_tmpl;
    struct MHD_Daemon *daemon;
    qf_models *models;
    qf_metrics *metrics;
    int port;
    double t_start;
    atomic_bool stopping;
    atomic_uint_fast64_t seq;        /* ids for chatcmpl-/cmpl- */
    atomic_uint_fast64_t gen_tokens; /* generated tokens, all models */
    atomic_uint_fast64_t prompt_tokens;
    atomic_uint_fast64_t cancelled;
    pthread_t ticker;
    bool ticker_started;
    pthread_mutex_t tick_mu;
    pthread_cond_t tick_cv;
    double tok_rate; /* generated tokens/s, last window */
    /* monitoring (serve.c): the sampler belongs to the ticker thread */
    char *s_alert_cmd;
    qf_sys *sys;
    qf_alerts *alerts;
    atomic_uint_fast64_t gen_requests; /* generation requests answered */
    atomic_uint_fast64_t gen_errors;   /* of which failed (5xx, error or timeout) */
    double lat_max_tick; /* under tick_mu: slowest generation ended since the
                            last tick, seconds; < 0 when none */
};

/* Responses (http.c). Each queues one response and records its status. */
enum MHD_Result serve_reply(serve_conn *c, int status, const char *ctype, const char *body,
                            size_t len, const char *retry_after);
/* Error in the connection's family shape: OpenAI {"error":{...}}, Ollama
 * {"error":"..."}, plain {"error":"..."}. param/code may be NULL. */
enum MHD_Result serve_reply_error(serve_conn *c, int status, const char *msg, const char *param,
                                  const char *code);
/* Takes j (deleted here). */
enum MHD_Result serve_reply_json(serve_conn *c, int status, cJSON *j);
/* Adds the CORS header when configured (for responses built elsewhere). */
void serve_add_common_headers(serve_conn *c, struct MHD_Response *r);
/* True when the peer closed the connection (peek on the socket). */
bool serve_client_gone(serve_conn *c);

/* Bind o.host:o.port and start the MHD daemon (s->port gets the bound
 * port); stop it (joins every connection thread). */
qf_status serve_http_start(struct qf_serve *s, qf_err *err);
void serve_http_stop(struct qf_serve *s);

/* HTTP status for a qf_status. */
int serve_http_status(qf_status st);

/* ---- generation (gen.c) ---- */

typedef struct serve_api_ops {
    const char *stream_ctype;
    /* one event -> bytes of the stream (token or final) */
    void (*stream_event)(serve_gen *g, const serve_ev *ev, serve_buf *out);
    /* after the last final event */
    void (*stream_end)(serve_gen *g, serve_buf *out);
    /* a failure after the response started */
    void (*stream_error)(serve_gen *g, const char *msg, serve_buf *out);
    /* non-streaming: the whole body */
    cJSON *(*body)(serve_gen *g);
} serve_api_ops;

struct serve_gen {
    struct qf_serve *srv;
    serve_conn *c;
    const serve_api_ops *ops;
    serve_req req;
    qf_models_entry *ent;
    char model_name[256];
    serve_job *job;
    uint64_t id;
    bool submitted;
    int n; /* completions */
    int n_final;
    serve_buf *text;           /* (n) whole texts (non-streaming) */
    qf_finish *finish;         /* (n) */
    bool *started;             /* (n) OpenAI stream: first chunk sent */
    int64_t completion_tokens; /* over all completions */
    qf_usage usage0;           /* of completion 0 */
    int32_t *prompt_ids;
    int32_t n_prompt;
    int32_t *out_ids; /* completion 0's tokens (Ollama context) */
    int32_t n_out, cap_out;
    char err_msg[QF_ERR_MSG_MAX];
    qf_finish err_finish; /* ERROR / TIMEOUT / CANCELLED seen, or NONE */
    char oid[64];         /* chatcmpl-... / cmpl-... */
    int64_t created;      /* unix seconds */
    double t0, load_s;
    double next_check; /* when to look at the socket next (qf_now_s) */
    serve_buf out;     /* streaming: bytes not yet handed to MHD */
    size_t out_pos;
    bool done, closed;
};

/* Run a generation endpoint for body; queues the response. */
enum MHD_Result serve_generate(serve_conn *c, serve_api api);
/* Cancel if still running, drop references, free. NULL is a no-op. */
void serve_gen_free(serve_gen *g);

extern const serve_api_ops serve_ops_openai_chat, serve_ops_openai_completion;
extern const serve_api_ops serve_ops_ollama_chat, serve_ops_ollama_generate;

/* ---- route handlers ---- */

enum MHD_Result serve_openai_models(serve_conn *c, const char *one /* NULL = list */);
enum MHD_Result serve_ollama_tags(serve_conn *c);
enum MHD_Result serve_ollama_ps(serve_conn *c);
enum MHD_Result serve_ollama_show(serve_conn *c);
enum MHD_Result serve_ollama_version(serve_conn *c);
/* Ollama's model-only requests (no messages / prompt): load or unload. */
enum MHD_Result serve_ollama_load(serve_conn *c, serve_req *r);
/* Ollama details object for a model file (format, family, sizes). */
cJSON *serve_ollama_details(const qf_model_file *f);

/* serve.c */
enum MHD_Result serve_metrics_page(serve_conn *c);
enum MHD_Result serve_alerts_page(serve_conn *c);
void serve_note_request(struct qf_serve *s, const char *route, int status, double seconds);
/* A generation request ended (any status): feeds the error-rate and
 * latency alerts. failed: 5xx, or the generation ended in error/timeout. */
void serve_note_generation(struct qf_serve *s, bool failed, double seconds);

extern const char serve_dashboard_html[];

#endif
