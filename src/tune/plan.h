/* plan.h - a resource plan for a machine and a model: memory pools, thread
 * counts, parallel slots and batch size, each with the reason it was
 * chosen.
 *
 * Memory pools (bytes, and shares of the memory they are planned in):
 *   weights   the model's tensor bytes (mapped from the file; on a discrete
 *             GPU uploaded once)
 *   kv cache  ctx x parallel token positions, every layer, keys + values
 *   buffers   the engine's per-step scratch for the batch size
 *   reserve   left to the OS, the page cache and other programs: 1/8 of
 *             memory, at least 1 GiB, at most 16 GiB (on a discrete GPU:
 *             1/20 of device memory, at least 512 MiB, for the driver)
 *   free      what is left
 * The kv and buffer sizes come from qf_engine_plan (engine/engine.h), the
 * same arithmetic the engine checks its own budget with.
 *
 * A plan fits when weights + kv + buffers + reserve <= memory and, on the
 * host, kv + buffers <= the memory available now (weights are file pages
 * the kernel can drop; the kv cache and buffers are anonymous memory).
 * Where the pools live: host memory, unless the machine has a GPU with a
 * known memory size that holds weights + kv + buffers + its reserve (then
 * the device); unified memory is host memory shared with the GPU.
 *
 * Threads: inference = one per performance core (at most 4 when the
 * forward pass runs on the GPU); I/O = the efficiency cores (at most 4)
 * where there are any, else 1 (2 above 8 cores) shared with inference.
 * Parallel slots: the value asked for, else the largest that fits, capped
 * at 4 per performance core within 4..64 (64 on a GPU). Batch (tokens per
 * engine step, the chunked-prefill budget): 512 on the CPU, 2048 on a GPU,
 * at least the slot count.
 *
 * Thread-safety: pure functions of their arguments.
 */
#ifndef QF_TUNE_PLAN_H
#define QF_TUNE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tune/hw.h"

/* What the plan needs of a model: its shape and tensor bytes. Filled from
 * a loaded model (qf_tune_model_from) or by hand (tests, what-if plans). */
typedef struct qf_tune_model {
    char name[128];
    size_t weight_bytes;
    qf_hparams hp; /* n_layer, n_head, n_head_kv, head_dim(_v), n_embd, n_ff, n_vocab, n_rot,
                      n_ctx_train */
} qf_tune_model;

void qf_tune_model_from(const qf_model *m, qf_tune_model *out /* out */);

typedef struct qf_plan_params {
    int32_t n_ctx;        /* positions per sequence; 0 = min(trained, 4096) */
    int32_t n_parallel;   /* slots; 0 = the largest that fits (capped) */
    int32_t n_batch;      /* tokens per engine step; 0 = the plan's choice */
    int n_threads;        /* inference threads; 0 = the plan's choice */
    qf_type kv_type;      /* QF_TYPE_F16 (default), QF_TYPE_Q8_0, QF_TYPE_F32 */
    int32_t max_parallel; /* cap when n_parallel = 0; 0 = the plan's cap, else 1..4096 */
} qf_plan_params;

qf_plan_params qf_plan_params_default(void);

typedef enum qf_plan_pool {
    QF_PLAN_WEIGHTS = 0,
    QF_PLAN_KV,
    QF_PLAN_BUFFERS,
    QF_PLAN_RESERVE,
    QF_PLAN_FREE,
    QF_PLAN_POOLS
} qf_plan_pool;

const char *
qf_plan_pool_name(qf_plan_pool p); /* "weights", "kv_cache", "buffers", "reserve", "free" */

typedef struct qf_plan_mem {
    size_t bytes;
    double share; /* bytes / qf_plan.mem_total */
    char reason[256];
} qf_plan_mem;

typedef struct qf_plan {
    bool has_model; /* false: hardware only (threads, reserve) */
    bool fits;
    bool on_gpu;    /* the forward pass runs on a GPU (discrete or unified) */
    bool on_device; /* the pools are planned in discrete GPU memory */
    size_t
        mem_total; /* memory the pools share: host total, or device memory when on a discrete GPU */
    size_t mem_available; /* host: available now (0 unknown); device: its total */
    size_t need;          /* weights + kv + buffers + reserve */
    qf_plan_mem mem[QF_PLAN_POOLS];
    int threads; /* inference */
    int io_threads;
    bool io_on_eff; /* I/O threads have efficiency cores of their own */
    char threads_reason[256], io_reason[256];
    int32_t n_ctx, n_parallel, n_batch;
    bool parallel_auto; /* n_parallel chosen by the plan */
    char ctx_reason[256], parallel_reason[256], batch_reason[256];
    qf_type kv_type;
    size_t kv_bytes_per_token; /* all layers, keys + values */
    char note[768]; /* what else to know (hardware-only plan, GPU memory unknown, NUMA) */
} qf_plan;

/* Plan hw for model m (NULL: hardware only: threads and reserve). out is
 * filled in every case. QF_ERR_RANGE when the plan does not fit (with
 * n_parallel given, or not even one slot fits), the message holding the
 * numbers: "needs 14.2 GiB (weights 4.1 + kv 8.0 + buffers 0.6 + reserve
 * 1.5), have 8.0 GiB; ...". QF_ERR_INVALID on bad parameters (negative
 * sizes, kv type not f16/q8_0/f32, a model with no layers). */
qf_status qf_plan_make(const qf_hw *hw, const qf_tune_model *m, const qf_plan_params *p,
                       qf_plan *out /* out */, qf_err *err);

/* The plan for people (several lines, ending in a newline) or as a JSON
 * object with the keys hw, model, fits, memory {total, available, where,
 * need, pools {weights, kv_cache, buffers, reserve, free: {bytes, share,
 * reason}}}, threads {inference, io: {count, reason}}, ctx, parallel,
 * batch ({value, reason}), kv_type, gpu_layers (-1: the pools are on the
 * device, else 0), note. m may be NULL. Returns malloc'ed
 * text (caller frees with qf_free), NULL when out of memory. */
char *qf_plan_to_text(const qf_plan *plan, const qf_hw *hw, const qf_tune_model *m);
char *qf_plan_to_json(const qf_plan *plan, const qf_hw *hw, const qf_tune_model *m);

#endif
