/* alert.h - the bottleneck detector: alerts over periodic snapshots of the
 * signals that say a run is starved, with what to change.
 *
 * The caller feeds a snapshot every few seconds (serve: every second from
 * its ticker). Counters in a snapshot are cumulative; the detector keeps the
 * snapshots of the last window_s seconds and turns them into rates over that
 * window. The alerts and the value each one watches:
 *
 *   memory_pressure   mem_pressure now (PSI some avg10, or 1 - avail/total)
 *                     fires above 0.95, critical
 *   response_latency  the slowest response that ended in the window, seconds
 *                     fires above 120, warning
 *   cache_hit_rate    cache hits / cache total over the window, once warm
 *                     (cache_min_lookups lookups in all), fires BELOW 0.70,
 *                     warning
 *   error_rate        errors / requests over the window, when the window
 *                     holds error_min_requests requests; fires above 0.02,
 *                     critical
 *   core_imbalance    share of cores idle (smoothed use <= imbalance_idle)
 *                     while at least one is saturated (>= imbalance_busy);
 *                     0 when none is saturated; fires above 0.4, warning
 *   kv_pool_full      share of engine steps in the window where admission
 *                     waited for kv blocks, when the window holds
 *                     kv_min_steps steps; fires above 0.25, warning
 *
 * Hysteresis: an alert fires once its value has been past the threshold for
 * for_s seconds (default 0: the first such snapshot) and clears once the
 * value has been back inside its clear level (default: 10% inside the
 * threshold) or unknown (no data in the window) for clear_for_s seconds.
 * While active its value and message follow each snapshot; `since` stays.
 *
 * On fire and on clear the detector logs (qf_warn / qf_info), calls every
 * registered callback, and, when a command is set, queues it to run with the
 * alert as JSON on stdin (see qf_alerts_set_command). Feeding never waits
 * for a command.
 *
 * Thread-safety: all functions may be called from any thread (one mutex);
 * callbacks run on the feeding thread without the lock held, so they may
 * call qf_alerts_active / qf_alerts_json but not qf_alerts_free.
 */
#ifndef QF_ALERT_H
#define QF_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "monitor/metrics.h"

typedef enum qf_alert_id {
    QF_ALERT_MEMORY_PRESSURE = 0,
    QF_ALERT_RESPONSE_LATENCY,
    QF_ALERT_CACHE_HIT_RATE,
    QF_ALERT_ERROR_RATE,
    QF_ALERT_CORE_IMBALANCE,
    QF_ALERT_KV_POOL_FULL,
    QF_ALERT_COUNT,
} qf_alert_id;

typedef enum qf_alert_severity {
    QF_ALERT_INFO = 0,
    QF_ALERT_WARNING,
    QF_ALERT_CRITICAL,
} qf_alert_severity;

/* "memory_pressure", "response_latency", "cache_hit_rate", "error_rate",
 * "core_imbalance", "kv_pool_full"; NULL outside the enum. */
const char *qf_alert_name(qf_alert_id id);
/* "info", "warning", "critical". */
const char *qf_alert_severity_name(qf_alert_severity s);

typedef struct qf_alert_rule {
    bool enabled;
    double threshold; /* fires when value > threshold (< for cache_hit_rate) */
    double clear;     /* clears when value <= clear (>= for cache_hit_rate);
                         NaN = threshold * 0.9 (* 1.1, at most 1, for cache_hit_rate) */
    double for_s;     /* past the threshold this long before firing; 0 = at once */
    qf_alert_severity severity;
} qf_alert_rule;

typedef struct qf_alert_config {
    qf_alert_rule rule[QF_ALERT_COUNT];
    double window_s;             /* rates and the latency maximum cover this; default 60 */
    double clear_for_s;          /* inside the clear level this long to clear; default 10 */
    uint64_t cache_min_lookups;  /* cache_hit_rate is watched after this many; default 100 */
    uint64_t error_min_requests; /* requests the window needs for error_rate; default 20 */
    uint64_t kv_min_steps;       /* steps the window needs for kv_pool_full; default 20 */
    double imbalance_busy;       /* a core at or above is saturated; default 0.9 */
    double imbalance_idle;       /* a core at or below is idle; default 0.25 */
    double imbalance_tau_s;      /* per-core smoothing time constant; default 30 */
    double cmd_timeout_s;        /* the alert command is killed after this; default 10 */
} qf_alert_config;

/* The defaults above: the brief's triggers (memory pressure > 95%, latency
 * > 120 s, cache hit rate < 70% once warm, errors > 2%) plus imbalance and
 * kv pool full; every alert enabled. */
qf_alert_config qf_alert_config_default(void);

/* Apply one "KEY=VALUE" setting (the --alert option). Keys:
 *   NAME=V           threshold of alert NAME (names above); ratios take
 *                    0.95 or 95%, response_latency takes seconds with an
 *                    optional s/m/h suffix; V = off / on disables / enables
 *   NAME.clear=V     clear level, same units
 *   NAME.for=S       seconds past the threshold before firing
 *   NAME.severity=info|warning|critical
 *   window=S  clear_for=S  cmd_timeout=S  imbalance_window=S (tau)
 *   cache_min_lookups=N  error_min_requests=N  kv_min_steps=N
 *   imbalance_busy=R  imbalance_idle=R
 * QF_ERR_INVALID with a message naming the setting for an unknown key, a
 * value that does not parse or is out of range (ratios 0..1, times > 0);
 * c is unchanged then. */
qf_status qf_alert_config_set(qf_alert_config *c, const char *setting, qf_err *err);

/* What one snapshot tells. Cumulative counters may restart from zero (a
 * model unloaded): a counter that goes down restarts the window. */
typedef struct qf_alert_snapshot {
    double t;             /* seconds, monotonic (qf_now_s); must not decrease */
    double t_unix;        /* wall clock of t for since_unix; 0 = now */
    double mem_pressure;  /* 0..1; NaN unknown */
    double latency_max_s; /* slowest response that ended since the previous
                             snapshot; NaN (or < 0) when none ended */
    uint64_t cache_lookups;         /* lookups made (warm-up count) */
    double cache_hits, cache_total; /* amounts hit / asked (tokens, entries) */
    uint64_t requests, errors;      /* finished requests, and those that failed */
    uint64_t steps, kv_wait_steps;  /* engine steps, and steps where admission
                                       waited for kv blocks */
    int n_cores;
    const double *core_util; /* (n_cores) 0..1, NaN unknown; borrowed for the call */
} qf_alert_snapshot;

/* A blank snapshot: NaN for the unknowns, zero counters, no cores. */
qf_alert_snapshot qf_alert_snapshot_blank(void);

/* One alert as reported to callbacks and by qf_alerts_active. */
typedef struct qf_alert {
    qf_alert_id id;
    const char *name; /* static, qf_alert_name(id) */
    qf_alert_severity severity;
    bool active;      /* false in the notification that it cleared */
    double value;     /* last known value */
    double threshold;
    double since;      /* snapshot t when it fired */
    double since_unix; /* wall clock when it fired, unix seconds */
    char message[384]; /* what was seen and what to change */
} qf_alert;

typedef struct qf_alerts qf_alerts;

/* New detector with a copy of c (NULL = defaults). QF_ERR_INVALID when c
 * holds out-of-range values; QF_ERR_NOMEM. Free with qf_alerts_free (NULL
 * is a no-op): it waits for a running command (at most its timeout) and
 * drops the queued ones. */
qf_alerts *qf_alerts_new(const qf_alert_config *c, qf_err *err);
void qf_alerts_free(qf_alerts *a);

/* Register a callback for fire and clear (at most 8). QF_ERR_RANGE when
 * full, QF_ERR_INVALID for NULL fn. */
typedef void (*qf_alert_fn)(void *ud, const qf_alert *a);
qf_status qf_alerts_add_callback(qf_alerts *a, qf_alert_fn fn, void *ud);

/* Run cmd (through /bin/sh -c) on every fire and clear, the alert as one
 * JSON object on stdin: the fields of GET /alerts plus "state" ("firing" or
 * "resolved"); environment: the process's plus QFORGE_ALERT=name and
 * QFORGE_ALERT_STATE=firing|resolved. Commands run one at a time on a
 * helper thread, in their own process group, killed (SIGKILL to the group)
 * after cmd_timeout_s; at most 16 wait, later ones are dropped with a
 * warning. A non-zero exit is logged. cmd NULL or "" turns it off. Copied.
 * QF_ERR_NOMEM / QF_ERR_INTERNAL (no thread). */
qf_status qf_alerts_set_command(qf_alerts *a, const char *cmd, qf_err *err);

/* Wait until no command is queued or running: QF_OK, or QF_ERR_TIMEOUT
 * after timeout_s. For tests and orderly shutdown. */
qf_status qf_alerts_cmd_wait(qf_alerts *a, double timeout_s);

typedef struct qf_alerts_cmd_stats {
    uint64_t started, failed, timed_out, dropped; /* failed: spawn error or exit != 0 */
} qf_alerts_cmd_stats;
void qf_alerts_get_cmd_stats(qf_alerts *a, qf_alerts_cmd_stats *out /* out */);

/* Evaluate one snapshot: fire / clear alerts as described above. */
void qf_alerts_feed(qf_alerts *a, const qf_alert_snapshot *s);

/* Copy the active alerts (in enum order) into out (cap entries); returns
 * how many are active (may exceed cap). */
int qf_alerts_active(qf_alerts *a, qf_alert *out /* out, cap */, int cap);

/* The last value computed for an alert (NaN when unknown or disabled), for
 * tests and dashboards. */
double qf_alerts_value(qf_alerts *a, qf_alert_id id);

/* {"alerts":[{"name","severity","message","value","threshold","since_unix"}]}
 * of the active alerts, in enum order (the GET /alerts body). NUL-
 * terminated, caller frees with qf_free; length in *len when not NULL. NULL
 * on allocation failure. */
char *qf_alerts_json(qf_alerts *a, size_t *len /* out */);

/* Publish into m (families declared on first use):
 *   qforge_alert_active{alert="NAME"}       gauge 0/1, every enabled alert
 *   qforge_alert_value{alert="NAME"}        gauge, the watched value when known
 *   qforge_alert_threshold{alert="NAME"}    gauge
 *   qforge_alerts_fired_total{alert="NAME"} counter
 * First registry error returned (the rest is still published). */
qf_status qf_alerts_to_metrics(qf_alerts *a, qf_metrics *m);

#endif
