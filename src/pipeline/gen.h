/* gen.h - `qforge gen`: documents in, a question-answer dataset out.
 *
 * Stages: walk the inputs -> extract text (workers threads) -> chunk by
 * tokens -> ask the model for pairs (all passes of a chunk in one group
 * sharing the chunk's prefix; many chunks in flight) -> parse tolerantly,
 * repair once, record failures -> drop short answers and duplicate
 * questions -> optionally curate (score 1..10, rejects file) -> append to
 * the dataset. The job lives in OUT.qforge.db (see store.h): every model
 * reply is cached under a hash of model + prompt + sampling + pass, every
 * finished chunk is recorded together with the dataset size after its
 * lines, so a killed job resumes (--resume) with nothing lost or written
 * twice, and a re-run computes nothing already computed.
 *
 * Files (OUT = the -o path):
 *   OUT                   dataset, JSON Lines (writer.h formats)
 *   OUT.qforge.db         job store + response cache (also -wal, -shm)
 *   OUT minus ".jsonl" + ".rejects.jsonl"   pairs curation rejected (with --curate)
 *
 * Thread-safety: qf_gen_run runs one job; it starts and joins its workers.
 */
#ifndef QF_GEN_H
#define QF_GEN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "pipeline/preset.h"
#include "pipeline/provider.h"
#include "pipeline/report.h"
#include "pipeline/writer.h"

typedef struct qf_gen_opts {
    const char *const *inputs;  /* files and folders */
    int n_inputs;
    const char *output;         /* OUT.jsonl (required unless dry_run) */
    const char *db_path;        /* NULL: OUT + ".qforge.db" */
    const char *rejects_path;   /* NULL: derived from OUT */
    const char *report_path;    /* --report FILE.json or NULL */

    /* backend: provider if given, else endpoints (HTTP), else model_path */
    qf_provider *provider;      /* borrowed */
    const char *model_path;
    const char *const *endpoints;
    int n_endpoints;
    bool ollama;                /* endpoints speak Ollama's /api/chat */
    const char *model_name;     /* HTTP model name (NULL: ask the server) */
    const char *api_key;
    const char *chat_template;  /* embedded: template family override */
    int32_t n_ctx;              /* embedded: 0 = min(trained, 4096) */
    int n_threads;              /* embedded: 0 = performance cores */
    int n_gpu_layers;           /* embedded: layers on the GPU, -1 all, 0 none (QF_GPU_LAYERS_AUTO:
                                   what fits; default: $QFORGE_GPU_LAYERS, else auto with a GPU backend) */
    qf_type kv_type;            /* embedded: kv cache elements, QF_TYPE_F16 (default), Q8_0 or F32 */

    qf_preset preset;           /* processing keys (flags already applied) */
    qf_format format;
    int32_t curate;             /* threshold 1..10; 0 = no curation */
    const char *prompts_dir;    /* NULL: built-in templates */
    const char *jsonl_field;    /* NULL: "text" */
    int32_t chunk_tokens;       /* 0 = 512 */
    int32_t chunk_overlap;      /* < 0 = 64 */
    int32_t max_tokens;         /* reply budget per request; 0 = derived */
    float top_p;                /* 0 = 0.95 */
    uint64_t seed;              /* pass p uses seed + p */
    double timeout_s;           /* per request; 0 = 1800 */
    int32_t retries;            /* HTTP retries; < 0 = 5 */
    double backoff_s;           /* HTTP first retry delay; 0 = 1 */
    double cooldown_s;          /* HTTP: how long a failing endpoint is left out; 0 = 30 */
    bool near_dedup;            /* also near-duplicate questions (default true via qf_gen_opts_default) */

    bool resume;
    bool dry_run;
    bool naive;                 /* benchmark baseline: one request at a time, no prefix sharing */
    int progress;               /* 0 auto, 1 bar, 2 plain lines, -1 off */
    FILE *log;                  /* progress, dry-run listing, report; NULL = stderr */
    volatile sig_atomic_t *stop; /* set (e.g. by SIGINT) to stop cleanly; may be NULL */
} qf_gen_opts;

/* speed preset, qa format, seed 42, near_dedup, everything else 0/NULL. */
void qf_gen_opts_default(qf_gen_opts *o);

/* Run the job. rep (initialised here; caller deinits) is filled also on
 * failure, as far as the job got. Errors: INVALID (options), IO (inputs,
 * output, database; "disk full" named), BUSY (another process has the
 * output), UNSUPPORTED/FORMAT (model), and the provider's. An interrupted
 * job (stop set) returns QF_ERR_CANCELLED after saving its state. */
qf_status qf_gen_run(const qf_gen_opts *o, qf_gen_report *rep, qf_err *err);

/* The derived paths for an output (malloc'ed, qf_free). */
char *qf_gen_db_path(const char *output);
char *qf_gen_rejects_path(const char *output);

#endif
