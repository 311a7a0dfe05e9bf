/* session.h - one sequence over a model: the simplest way to run it.
 *
 * A session owns a thread pool, a kv cache for one sequence of n_ctx
 * positions and a forward pass (on the CPU, or on the GPU with
 * n_gpu_layers). qf_session_eval appends tokens (in chunks of
 * n_batch) and leaves the logits of the last one. Used by `qforge run`,
 * `qforge bench` and the reference tests; the multi-sequence scheduler is
 * the engine layer's job.
 *
 * Ownership: borrows the model (must outlive the session).
 * Thread-safety: one thread at a time.
 */
#ifndef QF_SESSION_H
#define QF_SESSION_H

#include "model/model.h"

typedef struct qf_session_params {
    int32_t n_ctx;    /* positions; 0 = min(model's trained context, 4096) */
    int32_t n_batch;  /* tokens per forward call; 0 = 512 */
    int n_threads;    /* 0 = performance cores */
    qf_type kv_type;  /* QF_TYPE_F16 (default), QF_TYPE_Q8_0 or QF_TYPE_F32 */
    bool exact;       /* float-activation reference matmuls (see qf_fwd_set_exact) */
    /* Layers on the GPU (backend/backend.h): 0 = CPU only, -1 = all, N =
     * the last N, QF_GPU_LAYERS_AUTO = what fits; the default is
     * QFORGE_GPU_LAYERS from the environment, else auto in a build with a
     * GPU backend, 0 without. When the GPU cannot run them the session
     * warns (auto: quietly) and runs on the CPU. Ignored with exact. */
    int32_t n_gpu_layers;
} qf_session_params;

typedef struct qf_session qf_session;

qf_session_params qf_session_params_default(void);
qf_session *qf_session_new(const qf_model *m, const qf_session_params *p, qf_err *err);
void qf_session_free(qf_session *s);

/* Append n tokens. QF_ERR_RANGE (both numbers in the message) when they do
 * not fit the context; nothing is evaluated then. */
qf_status qf_session_eval(qf_session *s, const int32_t *tokens, int32_t n, qf_err *err);
/* Logits (n_vocab) after the last eval; borrowed until the next eval. */
const float *qf_session_logits(const qf_session *s);
int32_t qf_session_n_past(const qf_session *s);
int32_t qf_session_n_ctx(const qf_session *s);
/* Forget all positions >= n_past (0 = start over). */
void qf_session_rewind(qf_session *s, int32_t n_past);

#endif
