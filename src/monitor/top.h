/* top.h - the data behind `qforge top` (the view itself lives in cli/).
 *
 * Two sources:
 *   serve  a running `qforge serve`: GET URL/metrics (Prometheus text) and
 *          GET URL/alerts (JSON {"alerts":[...]}; a 404 means the server
 *          has no alerts endpoint, not an error).
 *   gen    the job database of a `qforge gen` (OUT.jsonl.qforge.db, see
 *          pipeline/store.h): the newest row of its metrics_snapshot table
 *          (the JSON of qf_metrics_render_json, written about once a
 *          second) plus counts from its docs, chunks and failures tables.
 *          The database is opened read-only (URI mode=ro, short busy
 *          timeout, short read transactions), so a reader never blocks or
 *          changes the writer's database.
 *
 * Parsed metrics (qf_prom) are a flat list of samples as the text format
 * writes them: a histogram family `x` appears as `x_bucket{le=...}`,
 * `x_sum` and `x_count`. Quantiles are computed like Prometheus'
 * histogram_quantile over the buckets summed across all series of the
 * family (sum by (le)), since the process started.
 *
 * A snapshot (qf_top_snap) is a plain struct the caller owns (no pointers
 * inside): numbers that the source did not report are NaN, and the JSON
 * of qf_top_snap_json writes them as null. Its keys are listed at
 * qf_top_snap_json.
 *
 * Thread-safety: none shared; every function works on caller-owned objects.
 */
#ifndef QF_TOP_H
#define QF_TOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* ---- Prometheus samples ---- */

typedef struct qf_prom_label {
    char *name, *value; /* owned; value unescaped */
} qf_prom_label;

typedef struct qf_prom_sample {
    char *name;            /* owned: family name, or family + _bucket/_sum/_count */
    qf_prom_label *labels; /* owned, (n_labels) */
    int n_labels;
    double value;
} qf_prom_sample;

typedef struct qf_prom_family {
    char *name;    /* owned */
    char type[12]; /* counter, gauge, histogram, summary, untyped */
} qf_prom_family;

typedef struct qf_prom {
    qf_prom_sample *v; /* owned, (n), in input order */
    int n, cap;
    qf_prom_family *fam; /* owned, (n_fam): the families a # TYPE line declared */
    int n_fam, cap_fam;
} qf_prom;

/* Parse the text exposition format 0.0.4. Comment lines (# HELP, # TYPE,
 * others) are skipped; a sample line is `name[{l="v",...}] value
 * [timestamp]` with value a float, +Inf, -Inf or NaN. Errors
 * (QF_ERR_FORMAT, the message names the line number and what is wrong):
 * a malformed line, a body that does not end with a newline (truncated),
 * a histogram whose +Inf bucket and _count disagree or are missing (cut
 * inside its block). Returns NULL + err; free with qf_prom_free. */
qf_prom *qf_prom_parse_text(const char *text, size_t len, qf_err *err);

/* The same from the JSON of qf_metrics_render_json ({"metrics":[{name,
 * type, help, series:[{labels, value | count, sum, buckets:[{le, count}]}]}]})
 * into the samples the text format would hold. QF_ERR_FORMAT when it is
 * not that shape. */
qf_prom *qf_prom_parse_json(const char *json, size_t len, qf_err *err);

void qf_prom_free(qf_prom *p); /* NULL is a no-op */

/* Type a # TYPE line gave family (NULL when none did). */
const char *qf_prom_type(const qf_prom *p, const char *family);

/* Value of label name of s; NULL when s has no such label. */
const char *qf_prom_label_get(const qf_prom_sample *s, const char *name);

/* Sum of the samples called name, keeping only those whose label lname
 * equals lvalue (lname NULL: all of them). false (and *out untouched) when
 * there is no such sample. */
bool qf_prom_sum(const qf_prom *p, const char *name, const char *lname, const char *lvalue,
                 double *out /* out */);

/* histogram_quantile(q, sum by (le) (family_bucket)): find the bucket
 * where the cumulative count reaches q * total and interpolate linearly
 * between its lower bound (the previous bound; 0 for the first bucket when
 * its bound is positive) and its upper bound; a rank in the +Inf bucket
 * answers the highest finite bound. NaN when the family has no buckets,
 * no +Inf bucket, no observations or q is outside 0..1. *count (may be
 * NULL) receives the number of observations (0 when none). */
double qf_prom_quantile(const qf_prom *p, const char *family, double q, double *count /* out */);

/* ---- snapshots ---- */

#define QF_TOP_MAX_CORES    256
#define QF_TOP_MAX_ALERTS   32
#define QF_TOP_MAX_FAILURES 16

typedef enum qf_top_source { QF_TOP_SERVE = 0, QF_TOP_GEN = 1 } qf_top_source;

typedef struct qf_top_alert {
    char name[64];
    char severity[16];
    char message[320];
    double value, threshold; /* NaN when absent */
    int64_t since_unix;      /* 0 when absent */
} qf_top_alert;

typedef struct qf_top_snap {
    qf_top_source source;
    char target[512]; /* the URL (no trailing slash) or the database path */
    double t_mono;    /* when taken, qf_now_s() */
    int64_t t_unix;
    bool up;         /* the source answered and parsed */
    char error[512]; /* why not, when !up */

    /* serve (NaN when the server does not export it) */
    double tokens_per_s, queue_depth, running, kv_usage, kv_blocks_used, kv_blocks_total;
    double prefix_hit_ratio, rss_bytes, mem_pressure, uptime_s, models_loaded;
    double requests_total; /* qforge_http_requests_total on /v1/ and /api/ endpoints */
    double generated_tokens_total, prompt_tokens_total, cancelled_total;
    int n_cores;                        /* qforge_cpu_core_utilization{core="N"} series, by core */
    double core_util[QF_TOP_MAX_CORES]; /* 0..1, NaN for a core without a series */
    double lat_p[3], lat_count;         /* qforge_generation_seconds p50 p90 p99, observations */
    double ttft_p[3], ttft_count;       /* qforge_time_to_first_token_seconds */
    double requests_per_s;              /* from the previous snapshot (qf_top_rates); NaN first */

    int alerts_state; /* 1 read, 0 no /alerts endpoint (404), -1 error (alerts_error) */
    char alerts_error[640];
    int n_alerts; /* may exceed QF_TOP_MAX_ALERTS; only that many are kept */
    qf_top_alert alerts[QF_TOP_MAX_ALERTS];

    /* gen */
    char state[16];          /* running, done, interrupted, failed; "unknown" without a snapshot */
    double snapshot_age_s;   /* now - time of the newest snapshot row; NaN without one */
    double elapsed_s, eta_s; /* eta NaN while unknown */
    double docs_total, docs_done, docs_skipped;
    double chunks_total, chunks_done, chunks_in_flight, chunks_pending;
    bool chunks_total_final; /* every document is chunked */
    double pairs_accepted, pairs_rejected, pairs_duplicate;
    double tokens_in, tokens_out, gen_requests;
    double cache_hits, cache_misses, cache_hit_ratio;
    double failures_total;
    int n_failures;
    struct {
        char reason[32];
        double n;
    } failures[QF_TOP_MAX_FAILURES];
} qf_top_snap;

/* Every number NaN, nothing present; source and target set (target is
 * copied, truncated to fit). */
void qf_top_snap_init(qf_top_snap *s, qf_top_source source, const char *target);

/* Fill the serve fields of s from a /metrics body, and its alerts from the
 * /alerts reply (alerts_status: the HTTP status; 404 = no endpoint; body may
 * be NULL). The metrics text is required: QF_ERR_FORMAT when it does not
 * parse (s->up false, s->error says why). A bad alerts body does not fail
 * the snapshot: alerts_state -1 and alerts_error say why. */
qf_status qf_top_fill_serve(qf_top_snap *s, const char *metrics, size_t metrics_len,
                            long alerts_status, const char *alerts, size_t alerts_len, qf_err *err);

/* Parse an /alerts body into s (alerts_state 1). QF_ERR_FORMAT when it is
 * not JSON or not {"alerts":[...]} (s->alerts_state -1, alerts_error). */
qf_status qf_top_parse_alerts(qf_top_snap *s, const char *body, size_t len, qf_err *err);

/* Fetch URL/metrics and URL/alerts (libcurl, GET, timeout_s each; api_key:
 * sent as a bearer token when not NULL) and fill s as qf_top_fill_serve.
 * url: "http://host:port" (a trailing slash is dropped). Errors: QF_ERR_IO
 * when the server cannot be reached or answers /metrics with an error
 * status (the message names the URL and the reason), QF_ERR_FORMAT as
 * qf_top_fill_serve. On error s->up is false and s->error holds the
 * message. */
qf_status qf_top_fetch_serve(qf_top_snap *s, const char *url, const char *api_key, double timeout_s,
                             qf_err *err);

/* Read the gen job database at path (read-only) into s. Errors: QF_ERR_IO
 * (cannot open: missing, not a database, locked beyond the busy timeout),
 * QF_ERR_FORMAT (not a qforge job database, or a snapshot that does not
 * parse). On error s->up is false and s->error holds the message. */
qf_status qf_top_read_db(qf_top_snap *s, const char *path, qf_err *err);

/* Derive rates of cur from prev (same source, taken earlier): requests/s
 * from the request counter (a counter that went down means a restarted
 * server: no rate). prev may be NULL or not up (rates stay NaN). */
void qf_top_rates(qf_top_snap *cur, const qf_top_snap *prev);

/* The snapshot as a JSON object (pretty-printed), for `qforge top --once
 * --json`; absent numbers are null. Keys, both sources:
 *   source ("serve"|"gen"), target, time_unix, up, error (null when up)
 * serve:
 *   tokens_per_s, queue_depth, running_sequences, requests_total,
 *   requests_per_s, prompt_tokens_total, generated_tokens_total,
 *   requests_cancelled_total, models_loaded, uptime_s,
 *   kv{usage_ratio, blocks_used, blocks_total}, prefix_cache_hit_ratio,
 *   cpu{cores:[0..1 per core], mean}, memory{rss_bytes, pressure_ratio},
 *   latency_s{count, p50, p90, p99}, ttft_s{count, p50, p90, p99},
 *   alerts_endpoint (bool), alerts_error (string|null),
 *   alerts[{name, severity, message, value, threshold, since_unix}]
 * gen:
 *   state, snapshot_age_s, elapsed_s, eta_s, tokens_per_s,
 *   documents{total, done, skipped}, chunks{total, total_final, done,
 *   in_flight, pending}, pairs{accepted, rejected, duplicate},
 *   tokens{in, out}, requests_total, cache{hits, misses, hit_ratio},
 *   failures{<reason>: n}, failures_total
 * Returns a NUL-terminated string (qf_free) or NULL on allocation failure. */
char *qf_top_snap_json(const qf_top_snap *s);

#endif
