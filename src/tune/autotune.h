/* autotune.h - short measured sweeps of the engine settings on a real
 * model: parallel slots, compute threads, batch (the per-step token budget
 * of chunked prefill).
 *
 * Workload of one trial: P requests submitted at once to a fresh engine
 * (qf_engine_new with the trial's settings), each prompt_tokens random
 * token ids (distinct per request, so no prefix sharing) and gen_tokens
 * generated greedily with end-of-sequence ignored. Measure: generated
 * tokens / wall time from the first submit to the last final event
 * (prefill included), the aggregate tokens/s that `qforge bench --parallel`
 * reports. One warm-up request pages the weights in before the first trial.
 *
 * Sweeps, each at the best of the ones before (coordinate descent):
 *   1. parallel: the list (default 1, 2, 4, 8, 16, 32, 64), only counts
 *      whose kv cache fits the memory plan (plan.h) at the target context;
 *      stops going up once a count is 10% below the best so far.
 *      Chosen: the smallest count within 5% of the best rate (fewer slots,
 *      same throughput: lower latency, less memory).
 *   2. threads: the list (default 1..n_perf; above 8 cores the powers of
 *      two and n_perf). Chosen: the default (n_perf) unless another count
 *      is more than 5% faster.
 *   3. batch: the list (default 512, 256, 128, 64; values at or above
 *      P * prompt_tokens all act alike, only one of them runs). Chosen:
 *      512 unless another is more than 5% faster.
 * The 5% margins keep noise from moving a setting away from its default.
 *
 * Time: budget_s bounds the whole run from the call on. A trial that would
 * start past the budget, or whose estimated length (its tokens at the best
 * rate seen) does not fit what is left, is skipped; a running trial is cut
 * at the budget (its requests time out) and not used for choices.
 *
 * Thread-safety: one call runs on the calling thread plus the engine's
 * threads; on_trial is called on the calling thread.
 */
#ifndef QF_TUNE_AUTOTUNE_H
#define QF_TUNE_AUTOTUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tune/hw.h"

typedef enum qf_trial_phase {
    QF_TRIAL_PARALLEL = 0,
    QF_TRIAL_THREADS,
    QF_TRIAL_BATCH
} qf_trial_phase;

const char *qf_trial_phase_name(qf_trial_phase p); /* "parallel", "threads", "batch" */

typedef struct qf_trial {
    qf_trial_phase phase;
    int threads;
    int32_t parallel, batch;
    uint64_t tokens; /* generated */
    double wall_s;
    double tokens_per_s; /* tokens / wall_s */
    bool cut;            /* stopped at the budget: partial, not used for choices */
    bool skipped;  /* not run (budget, or the kv cache does not fit): tokens and times are 0 */
    char note[96]; /* why skipped, or "" */
} qf_trial;

typedef struct qf_autotune_params {
    const qf_hw *hw;    /* memory for the fit check; NULL = detect */
    int32_t n_ctx;      /* context the result is for (slots must fit it); 0 = min(trained, 4096) */
    qf_type kv_type;    /* default QF_TYPE_F16 */
    const int *threads; /* NULL = default list (above) */
    int n_threads;
    const int32_t *parallel; /* NULL = default list */
    int n_parallel;
    const int32_t *batch; /* NULL = default list */
    int n_batch;
    int32_t prompt_tokens;                         /* per request; 0 = 32 */
    int32_t gen_tokens;                            /* per request; 0 = 16 */
    double budget_s;                               /* 0 = 60 */
    void (*on_trial)(void *ud, const qf_trial *t); /* progress, may be NULL */
    void *ud;
} qf_autotune_params;

qf_autotune_params qf_autotune_params_default(void);

typedef struct qf_autotune_result {
    int threads; /* chosen */
    int32_t parallel, batch;
    double tokens_per_s;         /* of the trial with the chosen settings */
    double default_tokens_per_s; /* of the engine defaults (n_perf threads, 4 slots, batch 512); 0 =
                                    not measured */
    int32_t max_parallel;        /* most slots the memory plan allows at n_ctx */
    int32_t n_ctx;
    qf_trial *trials; /* (n_trials) owned; qf_autotune_result_deinit */
    int n_trials;
    double elapsed_s;
    bool budget_hit; /* a trial was skipped or cut for time */
} qf_autotune_result;

/* Run the sweeps on m (borrowed). out is initialised here; deinit it also
 * on failure. Errors: QF_ERR_INVALID (bad lists or sizes), QF_ERR_RANGE
 * (not even one slot fits memory at n_ctx: the plan's message), the
 * engine's errors (QF_ERR_NOMEM ...), QF_ERR_TIMEOUT when the budget ends
 * before any trial completed. */
qf_status qf_autotune_run(const qf_model *m, const qf_autotune_params *p, qf_autotune_result *out,
                          qf_err *err);
void qf_autotune_result_deinit(qf_autotune_result *r); /* NULL is a no-op */

#endif
