/* metrics.h - a small metrics registry rendered as Prometheus text or JSON.
 *
 * A registry holds metric families (counter, gauge, histogram), declared
 * once by name with a help text; each family holds series told apart by a
 * label set. Labels are passed already formatted in Prometheus syntax
 * without the braces (`endpoint="/v1/models",status="200"`), built with
 * qf_metrics_labels so values are escaped; NULL or "" is the series
 * without labels. A series is created on first use.
 *
 * qf_metrics_render writes the text exposition format 0.0.4: per family a
 * `# HELP` and `# TYPE` line, then its series in creation order; a
 * histogram writes cumulative `_bucket{le="..."}` lines (the +Inf bucket
 * included), `_sum` and `_count`.
 *
 * Sizes: at most QF_METRICS_MAX_FAMILIES families and
 * QF_METRICS_MAX_SERIES series per family; beyond that updates fail with
 * QF_ERR_RANGE (so a client that invents label values cannot grow memory
 * without bound).
 *
 * Thread-safety: every function may be called from any thread (one mutex).
 */
#ifndef QF_METRICS_H
#define QF_METRICS_H

#include <stddef.h>

#include "base/err.h"

#define QF_METRICS_MAX_FAMILIES 128
#define QF_METRICS_MAX_SERIES   256
#define QF_METRICS_MAX_BUCKETS  32

typedef enum qf_metric_kind {
    QF_METRIC_COUNTER = 0,
    QF_METRIC_GAUGE,
    QF_METRIC_HISTOGRAM,
} qf_metric_kind;

typedef struct qf_metrics qf_metrics;

/* New empty registry; NULL + err (QF_ERR_NOMEM). Free with qf_metrics_free. */
qf_metrics *qf_metrics_new(qf_err *err);
void qf_metrics_free(qf_metrics *m); /* NULL is a no-op */

/* Declare a family. name: [a-zA-Z_:][a-zA-Z0-9_:]*, unique; help: one line
 * (newlines and backslashes are escaped on output). Histograms take n_buckets
 * strictly ascending finite upper bounds (copied; +Inf is implicit); other
 * kinds take none (buckets NULL, n_buckets 0).
 * QF_ERR_INVALID for a bad name, duplicate, bad buckets; QF_ERR_RANGE when
 * the registry is full. */
qf_status qf_metrics_declare(qf_metrics *m, const char *name, qf_metric_kind kind, const char *help,
                             const double *buckets, int n_buckets);

/* Counter: add v (>= 0, finite). Gauge: add v (any finite sign).
 * QF_ERR_NOT_FOUND for an undeclared name, QF_ERR_INVALID for a wrong kind
 * or v, QF_ERR_RANGE when the family has too many series. */
qf_status qf_metrics_add(qf_metrics *m, const char *name, const char *labels, double v);
/* Gauge: set to v. A counter may also be set (for totals kept elsewhere)
 * but never to a value below its current one (QF_ERR_INVALID). */
qf_status qf_metrics_set(qf_metrics *m, const char *name, const char *labels, double v);
/* Histogram: record one observation v (finite). */
qf_status qf_metrics_observe(qf_metrics *m, const char *name, const char *labels, double v);

/* Current value of a counter or gauge series, the observation count of a
 * histogram series; 0 when the series does not exist. For tests and the
 * dashboard. */
double qf_metrics_get(qf_metrics *m, const char *name, const char *labels);

/* The q-quantile (0..1) of a histogram series, linearly interpolated inside
 * the bucket that holds it (as Prometheus' histogram_quantile); NaN when the
 * series is empty or absent. */
double qf_metrics_quantile(qf_metrics *m, const char *name, const char *labels, double q);

/* Format label pairs: (k1, v1, k2, v2, ..., NULL) -> `k1="v1",k2="v2"` with
 * values escaped (\\, \", \n). Writes at most cap bytes including the NUL;
 * returns buf (truncated output is still NUL-terminated). */
char *qf_metrics_labels(char *buf, size_t cap, ...);

/* Prometheus text for the whole registry: NUL-terminated, caller frees with
 * qf_free; the length (without NUL) in *len when len is not NULL. NULL on
 * allocation failure. */
char *qf_metrics_render(qf_metrics *m, size_t *len /* out */);

/* The same registry as one JSON object, for `--json` reports and tools that
 * would rather not parse Prometheus text. Names, help texts and label values
 * are exactly those qf_metrics_render writes (labels unescaped into a JSON
 * object); families and series keep the same order:
 *
 *   {"metrics":[
 *     {"name":"qforge_x_total","type":"counter","help":"...",
 *      "series":[{"labels":{"k":"v"},"value":3}]},
 *     {"name":"qforge_y_seconds","type":"histogram","help":"...",
 *      "series":[{"labels":{},"count":2,"sum":0.7,
 *                 "buckets":[{"le":0.5,"count":1},{"le":"+Inf","count":2}]}]}]}
 *
 * Bucket counts are cumulative, as in the text format; the +Inf bound is the
 * string "+Inf" (JSON has no infinity), and a non-finite value (only possible
 * for a histogram sum, never here since updates reject them) is null.
 * NUL-terminated, caller frees with qf_free; length without NUL in *len when
 * len is not NULL. NULL on allocation failure or m NULL. */
char *qf_metrics_render_json(qf_metrics *m, size_t *len /* out */);

#endif
