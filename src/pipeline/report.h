/* report.h - what `qforge gen` tells the user: progress, the final report
 * and the job's metrics.
 *
 * Progress: on a terminal one line redrawn in place (documents, chunks,
 * pairs, ETA, tokens/s, cache hit rate), at most 5 times a second; when
 * not a terminal, a plain line every 10 seconds. The final report (text,
 * and JSON with --report FILE.json) holds documents/s, pairs, failures by
 * reason, tokens in/out, cache hits and time per stage.
 *
 * JSON report keys (stable, used by tests and the benchmark):
 *   wall_s, docs_per_s, documents{total,processed,resumed,skipped},
 *   chunks{total,done,resumed}, pairs{accepted,rejected,duplicate},
 *   failures{<reason>: n}, failures_total, tokens{in,out,prefix_cached},
 *   cache{lookups,hits,hit_rate}, requests, stages_s{ingest,generate,curate,write},
 *   skipped_files[{path,reason}], model, backend, interrupted, dry_run,
 *   estimate{chunks,prompt_tokens,output_tokens} (dry runs),
 *   metrics (the job's metrics registry as qf_metrics_render_json writes
 *   it: {"metrics":[{name,type,help,series}]}, the names below)
 *
 * Metrics (a qf_metrics registry; the same names in the job database's
 * metrics_snapshot rows that `qforge top --db` reads, and in docs/metrics.md):
 *   qforge_gen_documents_total, _documents_done, _documents_skipped   gauges
 *   qforge_gen_chunks_total, _chunks_total_final (0/1), _chunks_done,
 *   _chunks_in_flight                                                   gauges
 *   qforge_gen_pairs_total{status="accepted|rejected|duplicate"}        counter
 *   qforge_prompt_tokens_total, qforge_generated_tokens_total,
 *   qforge_gen_prefix_cached_tokens_total, qforge_gen_requests_total,
 *   qforge_gen_cache_hits_total, qforge_gen_cache_misses_total,
 *   qforge_gen_failures_total{reason="..."}                             counters
 *   qforge_gen_cache_hit_ratio, qforge_tokens_per_second,
 *   qforge_gen_documents_per_second, qforge_gen_elapsed_seconds,
 *   qforge_gen_eta_seconds (absent while unknown)                       gauges
 *
 * Thread-safety: one thread.
 */
#ifndef QF_REPORT_H
#define QF_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "monitor/metrics.h"

enum { QF_STAGE_INGEST = 0, QF_STAGE_GENERATE, QF_STAGE_CURATE, QF_STAGE_WRITE, QF_STAGE_COUNT };

typedef struct qf_reason_count {
    char reason[24];
    int64_t n;
} qf_reason_count;

typedef struct qf_gen_report {
    double wall_s;
    double stage_s[QF_STAGE_COUNT]; /* ingest: worker CPU time summed; others: main-thread time */
    int64_t docs_total, docs_done, docs_resumed, docs_skipped;
    int64_t chunks_total, chunks_done, chunks_resumed;
    bool chunks_total_known;        /* every document has been chunked */
    int64_t pairs_accepted, pairs_rejected, pairs_duplicate;
    int64_t requests;               /* completions computed by the model (not cache hits) */
    int64_t cache_lookups, cache_hits;
    int64_t cache_shared;           /* of the hits: taken from an identical request then in flight */
    int64_t tokens_in, tokens_out, tokens_prefix_cached;
    qf_reason_count *failures;      /* owned */
    int n_failures;
    char **skipped_path, **skipped_reason; /* owned, n_skipped */
    int n_skipped;
    char model[128];
    char backend[64];
    bool interrupted, dry_run;
    int64_t est_chunks, est_prompt_tokens, est_output_tokens;
    char *metrics_json;             /* owned: the final qf_metrics_render_json, or NULL */
} qf_gen_report;

void qf_report_init(qf_gen_report *r);
void qf_report_deinit(qf_gen_report *r);
/* Count one failure under reason. */
void qf_report_add_failure(qf_gen_report *r, const char *reason, int64_t n);
void qf_report_add_skipped(qf_gen_report *r, const char *path, const char *reason);
int64_t qf_report_failures_total(const qf_gen_report *r);

/* Human-readable summary. */
void qf_report_print(const qf_gen_report *r, FILE *f);
/* JSON (keys above); malloc'ed string (qf_free) or NULL on oom. */
char *qf_report_json(const qf_gen_report *r);
qf_status qf_report_write_json(const qf_gen_report *r, const char *path, qf_err *err);

/* ---- metrics ---- */

/* What only the running job knows, for qf_report_metrics_update. */
typedef struct qf_gen_live {
    int64_t chunks_in_flight;
    double tokens_per_s; /* generated tokens per second */
    double eta_s;        /* < 0: unknown (the gauge stays absent) */
} qf_gen_live;

/* Declare the metric families above in m. Errors as qf_metrics_declare
 * (a name already declared: QF_ERR_INVALID). */
qf_status qf_report_metrics_declare(qf_metrics *m, qf_err *err);
/* Set every metric from r and live (live may be NULL: zeros, ETA unknown).
 * Counters only grow: a value below the current one is left alone. */
void qf_report_metrics_update(qf_metrics *m, const qf_gen_report *r, const qf_gen_live *live);
/* Seconds left, extrapolated from the chunks done in this run over
 * elapsed_s (resumed chunks excluded); -1 while unknown (chunks still being
 * counted, or none done yet). */
double qf_report_eta_s(const qf_gen_report *r, double elapsed_s);

typedef struct qf_progress {
    FILE *f;
    bool tty;      /* redraw one line */
    bool enabled;
    double t0, last;
    double last_tok_t;
    int64_t last_tok;
    double tok_rate;
    int width;     /* chars of the last line drawn */
} qf_progress;

/* mode: 0 auto (tty -> bar, else plain lines), 1 bar, 2 plain, -1 off. */
void qf_progress_init(qf_progress *p, FILE *f, int mode);
void qf_progress_update(qf_progress *p, const qf_gen_report *r, bool force);
/* Clear the bar line (before printing other text). */
void qf_progress_clear(qf_progress *p);

#endif
