/* engine.h - the request scheduler: continuous batching over one model.
 *
 * This is the C API that `qforge serve` and `qforge gen` both use; neither
 * reaches into the model or the kv cache directly.
 *
 * An engine owns one scheduler thread, a thread pool, a paged kv cache with
 * prefix sharing, and the forward pass. Requests (prompt tokens + sampling
 * parameters) are submitted from any thread; each step the scheduler runs
 * one forward pass over the next token of every running sequence plus
 * chunks of waiting prompts (chunked prefill under a per-step token
 * budget), samples, and delivers events to the request's callback.
 *
 * Events: on_event is called from the scheduler thread, in order per
 * completion: zero or more token events, then exactly one final event
 * (finish != QF_FINISH_NONE) per completion. Every accepted request gets its
 * final events, also when it is cancelled, times out, or the engine is
 * freed. Callbacks must return quickly; they may call qf_engine_cancel and
 * qf_engine_submit but not qf_engine_free.
 *
 * Admission: at most n_parallel sequences run; at most max_queue requests
 * wait. Beyond that qf_engine_submit fails at once with QF_ERR_BUSY (the
 * server answers 503 + Retry-After). A prompt that can never fit (longer
 * than n_ctx under the refuse policy, or needing more kv blocks than the
 * whole pool) fails with QF_ERR_RANGE and a message holding both numbers.
 *
 * Ordering: higher priority first, FIFO within a priority. Determinism:
 * with greedy sampling a sequence's tokens do not depend on what else runs
 * in the same batch.
 *
 * Thread-safety: submit, cancel and stats may be called from any thread.
 */
#ifndef QF_ENGINE_H
#define QF_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "model/model.h"
#include "sample/sample.h"
#include "tok/chat.h"

typedef struct qf_engine qf_engine;

typedef struct qf_engine_params {
    int32_t n_ctx;        /* max positions per sequence; 0 = min(trained, 4096) */
    int32_t n_parallel;   /* running sequences (slots); 0 = 4 */
    int32_t max_queue;    /* waiting requests; 0 = 64 */
    int32_t n_batch;      /* tokens per step (chunked prefill budget); 0 = 512 */
    int n_threads;        /* 0 = performance cores */
    qf_type kv_type;      /* QF_TYPE_F16 (default), QF_TYPE_Q8_0, QF_TYPE_F32 */
    int32_t kv_block;     /* tokens per kv block; 0 = 16 */
    int64_t kv_tokens;    /* kv pool size in tokens; 0 = n_ctx * n_parallel */
    bool no_prefix_cache; /* disable reuse of cached prompt blocks */
    double timeout_s;     /* default per-request deadline; 0 = 1800 */
    size_t mem_budget;    /* bytes weights + kv + scratch must fit; 0 = available memory */
    /* Layers run on the GPU (backend/backend.h): 0 = CPU only, -1 = all,
     * N = the last N, QF_GPU_LAYERS_AUTO = what fits in device memory.
     * Default: QFORGE_GPU_LAYERS from the environment, else auto in a build
     * with a GPU backend, 0 without. When the GPU cannot run the layers
     * asked for (no GPU backend in the build, no device, device memory) the
     * engine warns and runs on the CPU; auto falls back quietly. */
    int32_t n_gpu_layers;
} qf_engine_params;

qf_engine_params qf_engine_params_default(void);

typedef enum qf_overflow {
    QF_OVERFLOW_REFUSE = 0, /* prompt + max_tokens beyond n_ctx: QF_ERR_RANGE */
    QF_OVERFLOW_TRUNCATE,   /* keep the last tokens of the prompt that fit */
    QF_OVERFLOW_WINDOW,     /* attention sinks (first 4 tokens) + most recent window */
} qf_overflow;

typedef enum qf_finish {
    QF_FINISH_NONE = 0,  /* token event: more to come */
    QF_FINISH_STOP,      /* end-of-generation token or a stop string */
    QF_FINISH_LENGTH,    /* max_tokens reached or the context is full */
    QF_FINISH_CANCELLED, /* qf_engine_cancel, or the engine was freed */
    QF_FINISH_TIMEOUT,   /* the deadline passed */
    QF_FINISH_ERROR,     /* see qf_event.error */
} qf_finish;

const char *qf_finish_name(qf_finish f); /* "stop", "length", ... */

typedef struct qf_usage {
    int32_t prompt_tokens;     /* after truncation */
    int32_t cached_tokens;     /* prompt tokens served from the prefix cache */
    int32_t completion_tokens; /* of this completion */
    double queue_s;            /* submit -> first scheduled */
    double ttft_s;             /* submit -> first token */
    double total_s;            /* submit -> final event */
} qf_usage;

typedef struct qf_event {
    uint64_t request_id;
    int32_t index;          /* completion index, 0 .. n-1 */
    int32_t token;          /* sampled id; -1 on a final event */
    const char *text;       /* decoded text now safe to emit (whole UTF-8, stop strings held back); borrowed */
    size_t len;
    qf_finish finish;       /* != NONE on the final event of this completion */
    const qf_usage *usage;  /* final events only */
    const char *error;      /* QF_FINISH_ERROR only */
} qf_event;

typedef void (*qf_event_fn)(void *ud, const qf_event *ev);

typedef struct qf_request {
    const int32_t *prompt;  /* copied by submit */
    int32_t n_prompt;
    qf_sample_params sample;
    int32_t max_tokens;     /* <= 0: until the context is full */
    const char *const *stop; /* stop strings, copied; may be NULL */
    int32_t n_stop;
    int32_t n;              /* completions sharing the prompt's kv; 0 = 1 */
    int32_t priority;       /* higher runs first */
    double timeout_s;       /* 0 = engine default */
    qf_overflow overflow;
    bool ignore_eos;
    /* Constrained decoding: NULL = free text; "json" = any JSON object;
     * otherwise a JSON Schema (text) the output must satisfy. Copied. */
    const char *json_schema;
    qf_event_fn on_event;   /* required */
    void *ud;
} qf_request;

/* The model is borrowed and must outlive the engine. Checks the memory
 * budget before allocating anything (QF_ERR_RANGE with the numbers). */
qf_engine *qf_engine_new(const qf_model *m, const qf_engine_params *p, qf_err *err);
/* Cancels everything (final CANCELLED events are delivered), joins the
 * scheduler thread, frees. NULL is a no-op. */
void qf_engine_free(qf_engine *e);

/* Queue a request. id (may be NULL) receives its id. QF_ERR_BUSY when the
 * queue is full, QF_ERR_RANGE when it can never fit, QF_ERR_INVALID on bad
 * fields. On failure no event is ever delivered for it. */
qf_status qf_engine_submit(qf_engine *e, const qf_request *r, uint64_t *id /* out */, qf_err *err);
/* Cancel a queued or running request: its kv blocks are freed at once (by
 * the next step) and final CANCELLED events delivered. QF_ERR_NOT_FOUND if
 * it already finished. */
qf_status qf_engine_cancel(qf_engine *e, uint64_t id);

/* Blocking convenience: submit and wait; texts[i] (malloc'ed, caller frees
 * with qf_free) and finish[i] for each of the r->n completions; usage of
 * completion 0. r->on_event is ignored. */
qf_status qf_engine_complete(qf_engine *e, const qf_request *r, char **texts /* out, n */,
                             qf_finish *finish /* out, n */, qf_usage *usage /* out */, qf_err *err);

typedef struct qf_engine_stats {
    int32_t running, queued;             /* now */
    int32_t n_parallel, max_queue, n_ctx;
    int64_t kv_blocks_total, kv_blocks_used, kv_blocks_cached; /* cached: free but holding a reusable prefix */
    int32_t kv_block_tokens;
    size_t kv_bytes;
    uint64_t requests_total, requests_rejected, requests_cancelled, requests_timeout;
    uint64_t prompt_tokens_total;        /* submitted prompt tokens */
    uint64_t prompt_tokens_computed;     /* actually run through the model */
    uint64_t prefix_hit_tokens;          /* served from the prefix cache */
    uint64_t generated_tokens_total;
    uint64_t steps;
    double busy_s;                       /* time spent in forward passes */
    uint64_t kv_wait_steps;              /* scheduler rounds (one per step while running) where the
                                            queue head had its slots but waited for kv blocks */
    uint64_t prefix_lookups;             /* admitted requests whose prompt was looked up in the prefix cache */
} qf_engine_stats;

void qf_engine_get_stats(qf_engine *e, qf_engine_stats *out /* out */);

/* Chat messages -> prompt tokens: the model's chat template (or the family
 * named by template_override), the assistant prefix appended, tokenized
 * with special tokens parsed and BOS added as the model asks. Returns
 * malloc'ed ids (caller frees with qf_free), count in *n_out; NULL + err
 * (unknown override, bad roles, empty content). Thread-safe. */
int32_t *qf_engine_chat_tokens(const qf_engine *e, const qf_chat_msg *msgs, size_t n, const char *template_override,
                               int32_t *n_out, qf_err *err);

/* Memory plan of an engine (bytes). fits: weights + kv + scratch + reserve
 * within the budget (mem_budget, else physical memory) and kv + scratch
 * within the memory available now. */
typedef struct qf_mem_plan {
    size_t weights, kv, scratch, reserve;
    size_t total, available, budget;
    bool fits;
} qf_mem_plan;
/* Fills out in every case; QF_ERR_RANGE with all the numbers when it does
 * not fit. qf_engine_new runs this first. */
qf_status qf_engine_plan(const qf_model *m, const qf_engine_params *p, qf_mem_plan *out /* out */, qf_err *err);
const qf_model *qf_engine_model(const qf_engine *e);

#endif
