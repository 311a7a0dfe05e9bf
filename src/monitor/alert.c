/* alert.c - the bottleneck detector: windows over snapshots, hysteresis,
 * messages and notification.
 *
 * State: a ring of the recent snapshots' counters (time, cumulative
 * counters, latency maximum of the interval). The window baseline is the
 * oldest entry no older than window_s; rates are (newest - baseline) /
 * (newest - baseline) of the matching counters, so they cover the events of
 * (baseline.t, newest.t]. A counter that went down (its source restarted)
 * empties the ring: the window starts again from the newest snapshot rather
 * than reporting a negative rate. Per-core use is smoothed with an
 * exponential moving average (time constant imbalance_tau_s) because one
 * second of one core is noise.
 *
 * Each alert is a small state machine: inactive -> (past threshold for
 * for_s) -> active -> (inside clear level, or unknown, for clear_for_s) ->
 * inactive. Transitions are collected under the lock and announced after it
 * is released (log, callbacks, command queue), so a callback may read the
 * detector.
 */
#include "monitor/alert.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "base/mem.h"
#include "monitor/monitor_int.h"

#define RING_CAP 1024
#define MAX_CALLBACKS 8

static const char *k_names[QF_ALERT_COUNT] = {
    "memory_pressure", "response_latency", "cache_hit_rate",
    "error_rate",      "core_imbalance",   "kv_pool_full",
};

const char *qf_alert_name(qf_alert_id id) {
    return (unsigned)id < QF_ALERT_COUNT ? k_names[id] : NULL;
}

const char *qf_alert_severity_name(qf_alert_severity s) {
    switch (s) {
    case QF_ALERT_INFO:
        return "info";
    case QF_ALERT_CRITICAL:
        return "critical";
    default:
        return "warning";
    }
}

/* cache_hit_rate is the one alert that fires on a low value */
static bool low_alert(int id) {
    return id == QF_ALERT_CACHE_HIT_RATE;
}

/* ratio alerts take 0..1 (or a percentage); latency takes seconds */
static bool ratio_alert(int id) {
    return id != QF_ALERT_RESPONSE_LATENCY;
}

/* ---- configuration ---- */

qf_alert_config qf_alert_config_default(void) {
    qf_alert_config c;
    memset(&c, 0, sizeof c);
    static const struct {
        double threshold;
        qf_alert_severity sev;
    } d[QF_ALERT_COUNT] = {
        [QF_ALERT_MEMORY_PRESSURE] = {0.95, QF_ALERT_CRITICAL},
        [QF_ALERT_RESPONSE_LATENCY] = {120, QF_ALERT_WARNING},
        [QF_ALERT_CACHE_HIT_RATE] = {0.70, QF_ALERT_WARNING},
        [QF_ALERT_ERROR_RATE] = {0.02, QF_ALERT_CRITICAL},
        [QF_ALERT_CORE_IMBALANCE] = {0.40, QF_ALERT_WARNING},
        [QF_ALERT_KV_POOL_FULL] = {0.25, QF_ALERT_WARNING},
    };
    for (int i = 0; i < QF_ALERT_COUNT; i++) {
        c.rule[i].enabled = true;
        c.rule[i].threshold = d[i].threshold;
        c.rule[i].clear = NAN;
        c.rule[i].for_s = 0;
        c.rule[i].severity = d[i].sev;
    }
    c.window_s = 60;
    c.clear_for_s = 10;
    c.cache_min_lookups = 100;
    c.error_min_requests = 20;
    c.kv_min_steps = 20;
    c.imbalance_busy = 0.9;
    c.imbalance_idle = 0.25;
    c.imbalance_tau_s = 30;
    c.cmd_timeout_s = 10;
    return c;
}

/* The clear level in effect for rule r of alert id. */
static double clear_level(int id, const qf_alert_rule *r) {
    if (isfinite(r->clear)) return r->clear;
    if (low_alert(id)) return fmin(1.0, r->threshold * 1.1);
    return r->threshold * 0.9;
}

static bool ratio_ok(double v) {
    return isfinite(v) && v >= 0 && v <= 1;
}

static bool check_config(const qf_alert_config *c, qf_err *err) {
    for (int i = 0; i < QF_ALERT_COUNT; i++) {
        const qf_alert_rule *r = &c->rule[i];
        bool ok = ratio_alert(i) ? ratio_ok(r->threshold) : (isfinite(r->threshold) && r->threshold > 0);
        if (!ok) {
            QF_ERR_SET(err, QF_ERR_INVALID, "alert %s: threshold %g is out of range (%s)", k_names[i],
                       r->threshold, ratio_alert(i) ? "0..1" : "> 0 seconds");
            return false;
        }
        if (!isnan(r->clear)) {
            bool inside = low_alert(i) ? r->clear >= r->threshold : r->clear <= r->threshold;
            bool cok = ratio_alert(i) ? ratio_ok(r->clear) : (isfinite(r->clear) && r->clear >= 0);
            if (!cok || !inside) {
                QF_ERR_SET(err, QF_ERR_INVALID,
                           "alert %s: clear level %g must be %s the threshold %g%s", k_names[i],
                           r->clear, low_alert(i) ? "at or above" : "at or below", r->threshold,
                           ratio_alert(i) ? " and within 0..1" : "");
                return false;
            }
        }
        if (!(isfinite(r->for_s) && r->for_s >= 0)) {
            QF_ERR_SET(err, QF_ERR_INVALID, "alert %s: for %g s is out of range", k_names[i], r->for_s);
            return false;
        }
        if (r->severity < QF_ALERT_INFO || r->severity > QF_ALERT_CRITICAL) {
            QF_ERR_SET(err, QF_ERR_INVALID, "alert %s: bad severity %d", k_names[i], (int)r->severity);
            return false;
        }
    }
    struct {
        const char *name;
        double v;
        bool zero_ok;
    } t[] = {{"window", c->window_s, false},
             {"clear_for", c->clear_for_s, true},
             {"imbalance_window", c->imbalance_tau_s, false},
             {"cmd_timeout", c->cmd_timeout_s, false}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!(isfinite(t[i].v) && (t[i].v > 0 || (t[i].zero_ok && t[i].v == 0)) && t[i].v <= 1e7)) {
            QF_ERR_SET(err, QF_ERR_INVALID, "alert setting %s: %g s is out of range", t[i].name, t[i].v);
            return false;
        }
    if (!ratio_ok(c->imbalance_busy) || !ratio_ok(c->imbalance_idle) ||
        c->imbalance_idle >= c->imbalance_busy) {
        QF_ERR_SET(err, QF_ERR_INVALID,
                   "alert settings imbalance_idle %g / imbalance_busy %g: need 0 <= idle < busy <= 1",
                   c->imbalance_idle, c->imbalance_busy);
        return false;
    }
    return true;
}

/* Number with an optional unit: '%' (ratio alerts: / 100), 's' 'm' 'h'
 * (seconds). units: "%" allowed, "t" time suffixes allowed. */
static bool parse_num(const char *s, bool pct_ok, bool time_ok, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v)) return false;
    if (*end == '%' && pct_ok) {
        v /= 100;
        end++;
    } else if (time_ok && (*end == 's' || *end == 'm' || *end == 'h')) {
        v *= *end == 'm' ? 60 : *end == 'h' ? 3600 : 1;
        end++;
    }
    if (*end) return false;
    *out = v;
    return true;
}

static bool parse_count(const char *s, uint64_t *out) {
    char *end;
    if (*s < '0' || *s > '9') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v > (1ull << 53)) return false;
    *out = v;
    return true;
}

qf_status qf_alert_config_set(qf_alert_config *c, const char *setting, qf_err *err) {
    if (!c || !setting) return QF_ERR_SET(err, QF_ERR_INVALID, "alert setting: none given");
    const char *eq = strchr(setting, '=');
    char key[64];
    if (!eq || eq == setting || (size_t)(eq - setting) >= sizeof key || !eq[1])
        return QF_ERR_SET(err, QF_ERR_INVALID, "alert setting '%s': expected KEY=VALUE", setting);
    memcpy(key, setting, (size_t)(eq - setting));
    key[eq - setting] = 0;
    const char *val = eq + 1;
    qf_alert_config n = *c; /* applied to a copy, checked, then kept */

    char *dot = strchr(key, '.');
    const char *field = NULL;
    if (dot) {
        *dot = 0;
        field = dot + 1;
    }
    int id = -1;
    for (int i = 0; i < QF_ALERT_COUNT; i++)
        if (!strcmp(key, k_names[i])) id = i;
    bool ok = true;
    if (id >= 0) {
        qf_alert_rule *r = &n.rule[id];
        bool pct = ratio_alert(id), tm = !ratio_alert(id);
        if (!field) {
            if (!strcasecmp(val, "off")) {
                r->enabled = false;
            } else if (!strcasecmp(val, "on")) {
                r->enabled = true;
            } else {
                ok = parse_num(val, pct, tm, &r->threshold);
                r->enabled = true;
            }
        } else if (!strcmp(field, "clear")) {
            ok = parse_num(val, pct, tm, &r->clear);
        } else if (!strcmp(field, "for")) {
            ok = parse_num(val, false, true, &r->for_s);
        } else if (!strcmp(field, "severity")) {
            if (!strcasecmp(val, "info"))
                r->severity = QF_ALERT_INFO;
            else if (!strcasecmp(val, "warning"))
                r->severity = QF_ALERT_WARNING;
            else if (!strcasecmp(val, "critical"))
                r->severity = QF_ALERT_CRITICAL;
            else
                ok = false;
        } else {
            return QF_ERR_SET(err, QF_ERR_INVALID,
                              "alert setting '%s': unknown field '%s' (clear, for, severity)",
                              setting, field);
        }
    } else if (field) {
        return QF_ERR_SET(err, QF_ERR_INVALID, "alert setting '%s': unknown alert '%s'", setting, key);
    } else if (!strcmp(key, "window")) {
        ok = parse_num(val, false, true, &n.window_s);
    } else if (!strcmp(key, "clear_for")) {
        ok = parse_num(val, false, true, &n.clear_for_s);
    } else if (!strcmp(key, "cmd_timeout")) {
        ok = parse_num(val, false, true, &n.cmd_timeout_s);
    } else if (!strcmp(key, "imbalance_window")) {
        ok = parse_num(val, false, true, &n.imbalance_tau_s);
    } else if (!strcmp(key, "imbalance_busy")) {
        ok = parse_num(val, true, false, &n.imbalance_busy);
    } else if (!strcmp(key, "imbalance_idle")) {
        ok = parse_num(val, true, false, &n.imbalance_idle);
    } else if (!strcmp(key, "cache_min_lookups")) {
        ok = parse_count(val, &n.cache_min_lookups);
    } else if (!strcmp(key, "error_min_requests")) {
        ok = parse_count(val, &n.error_min_requests);
    } else if (!strcmp(key, "kv_min_steps")) {
        ok = parse_count(val, &n.kv_min_steps);
    } else {
        return QF_ERR_SET(err, QF_ERR_INVALID,
                          "alert setting '%s': unknown key '%s' (an alert name: memory_pressure, "
                          "response_latency, cache_hit_rate, error_rate, core_imbalance, "
                          "kv_pool_full; or window, clear_for, cmd_timeout, ...)",
                          setting, key);
    }
    if (!ok) return QF_ERR_SET(err, QF_ERR_INVALID, "alert setting '%s': bad value '%s'", setting, val);
    qf_err e2 = {0};
    if (!check_config(&n, &e2))
        return QF_ERR_SET(err, QF_ERR_INVALID, "alert setting '%s': %s", setting, e2.msg);
    *c = n;
    return QF_OK;
}

qf_alert_snapshot qf_alert_snapshot_blank(void) {
    qf_alert_snapshot s;
    memset(&s, 0, sizeof s);
    s.mem_pressure = NAN;
    s.latency_max_s = NAN;
    return s;
}

/* ---- detector state ---- */

typedef struct entry {
    double t, latency;
    uint64_t lookups, requests, errors, steps, kv_wait;
    double hits, total;
} entry;

typedef struct astate {
    bool active;
    double pending_since; /* NaN: not past the threshold */
    double clear_since;   /* NaN: not inside the clear level */
    double value;         /* last known; NaN unknown */
    double since, since_unix;
    uint64_t fired;
    char message[384];
} astate;

typedef struct cb {
    qf_alert_fn fn;
    void *ud;
} cb;

struct qf_alerts {
    pthread_mutex_t mu;
    qf_alert_config c;
    entry ring[RING_CAP];
    int head, n; /* oldest at head */
    astate st[QF_ALERT_COUNT];
    double *ema; /* (n_ema) smoothed core use */
    int n_ema;
    double t_ema;
    cb cbs[MAX_CALLBACKS];
    int n_cbs;
    alert_runner *runner;
    qf_alerts_cmd_stats cmd_past; /* of runners replaced */
};

qf_alerts *qf_alerts_new(const qf_alert_config *c, qf_err *err) {
    qf_alert_config d = c ? *c : qf_alert_config_default();
    if (!check_config(&d, err)) return NULL;
    qf_alerts *a = qf_calloc(1, sizeof *a);
    if (!a) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "alerts: out of memory");
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->c = d;
    for (int i = 0; i < QF_ALERT_COUNT; i++) {
        a->st[i].pending_since = a->st[i].clear_since = NAN;
        a->st[i].value = NAN;
    }
    return a;
}

void qf_alerts_free(qf_alerts *a) {
    if (!a) return;
    alert_runner_free(a->runner);
    qf_free(a->ema);
    pthread_mutex_destroy(&a->mu);
    qf_free(a);
}

qf_status qf_alerts_add_callback(qf_alerts *a, qf_alert_fn fn, void *ud) {
    if (!a || !fn) return QF_ERR_INVALID;
    qf_status st = QF_OK;
    pthread_mutex_lock(&a->mu);
    if (a->n_cbs == MAX_CALLBACKS)
        st = QF_ERR_RANGE;
    else
        a->cbs[a->n_cbs++] = (cb){fn, ud};
    pthread_mutex_unlock(&a->mu);
    return st;
}

qf_status qf_alerts_set_command(qf_alerts *a, const char *cmd, qf_err *err) {
    if (!a) return QF_ERR_SET(err, QF_ERR_INVALID, "alerts: no detector");
    alert_runner *r = NULL;
    if (cmd && cmd[0]) {
        r = alert_runner_new(cmd, a->c.cmd_timeout_s, err);
        if (!r) return err ? err->code : QF_ERR_NOMEM;
    }
    pthread_mutex_lock(&a->mu);
    alert_runner *old = a->runner;
    a->runner = r;
    pthread_mutex_unlock(&a->mu);
    if (old) {
        qf_alerts_cmd_stats s;
        alert_runner_stats(old, &s);
        alert_runner_free(old); /* after unlock: it may wait for a command */
        pthread_mutex_lock(&a->mu);
        a->cmd_past.started += s.started;
        a->cmd_past.failed += s.failed;
        a->cmd_past.timed_out += s.timed_out;
        a->cmd_past.dropped += s.dropped;
        pthread_mutex_unlock(&a->mu);
    }
    return QF_OK;
}

qf_status qf_alerts_cmd_wait(qf_alerts *a, double timeout_s) {
    if (!a) return QF_ERR_INVALID;
    pthread_mutex_lock(&a->mu);
    alert_runner *r = a->runner;
    pthread_mutex_unlock(&a->mu);
    /* the runner is only replaced by qf_alerts_set_command, which callers
     * do not run concurrently with waiting */
    return r ? alert_runner_wait(r, timeout_s) : QF_OK;
}

void qf_alerts_get_cmd_stats(qf_alerts *a, qf_alerts_cmd_stats *out) {
    memset(out, 0, sizeof *out);
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    *out = a->cmd_past;
    if (a->runner) {
        qf_alerts_cmd_stats s;
        alert_runner_stats(a->runner, &s);
        out->started += s.started;
        out->failed += s.failed;
        out->timed_out += s.timed_out;
        out->dropped += s.dropped;
    }
    pthread_mutex_unlock(&a->mu);
}

/* ---- windows ---- */

static entry *ring_at(qf_alerts *a, int i) {
    return &a->ring[(a->head + i) % RING_CAP];
}

static void ring_push(qf_alerts *a, const qf_alert_snapshot *s) {
    entry e = {s->t,
               isfinite(s->latency_max_s) && s->latency_max_s >= 0 ? s->latency_max_s : NAN,
               s->cache_lookups,
               s->requests,
               s->errors,
               s->steps,
               s->kv_wait_steps,
               isfinite(s->cache_hits) ? s->cache_hits : 0,
               isfinite(s->cache_total) ? s->cache_total : 0};
    if (a->n > 0) {
        const entry *last = ring_at(a, a->n - 1);
        bool reset = e.lookups < last->lookups || e.requests < last->requests ||
                     e.errors < last->errors || e.steps < last->steps ||
                     e.kv_wait < last->kv_wait || e.hits < last->hits || e.total < last->total ||
                     e.t < last->t;
        if (reset) a->n = 0;
    }
    if (a->n == RING_CAP) { /* full: the window shrinks to what fits */
        a->head = (a->head + 1) % RING_CAP;
        a->n--;
    }
    *ring_at(a, a->n) = e;
    a->n++;
    /* drop entries older than the window, keeping one at or before its start
     * as the baseline */
    double start = e.t - a->c.window_s;
    while (a->n >= 2 && ring_at(a, 1)->t <= start) {
        a->head = (a->head + 1) % RING_CAP;
        a->n--;
    }
}

static void smooth_cores(qf_alerts *a, const qf_alert_snapshot *s) {
    int n = s->core_util ? s->n_cores : 0;
    if (n < 0) n = 0;
    if (n != a->n_ema) {
        qf_free(a->ema);
        a->ema = NULL;
        a->n_ema = 0;
        if (n > 0) {
            a->ema = qf_malloc((size_t)n * sizeof *a->ema);
            if (!a->ema) return; /* no imbalance data this time */
            for (int i = 0; i < n; i++)
                a->ema[i] = NAN;
            a->n_ema = n;
        }
        a->t_ema = s->t;
    }
    double dt = s->t - a->t_ema;
    double alpha = dt > 0 ? 1 - exp(-dt / a->c.imbalance_tau_s) : 0;
    for (int i = 0; i < n; i++) {
        double v = s->core_util[i];
        if (!isfinite(v)) continue;
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        a->ema[i] = isnan(a->ema[i]) ? v : a->ema[i] + alpha * (v - a->ema[i]);
    }
    a->t_ema = s->t;
}

/* ---- evaluation ---- */

static void pct(char *buf, size_t cap, double v) {
    snprintf(buf, cap, "%.*f%%", fabs(v * 100 - round(v * 100)) < 0.05 ? 0 : 1, v * 100);
}

/* A rate over the window only changes with new events: when the newest
 * interval brought none, keep the value (and message) from before, if
 * there is one. Otherwise an idle server would see its rate drift as old
 * events leave the window front (a burst of errors, diluted by clean
 * traffic before it, would come back over the threshold once that clean
 * traffic ages out, with nothing new having happened). */
static bool hold(qf_alerts *a, int id, bool moved, char *msg, size_t cap, double *v) {
    if (moved || isnan(a->st[id].value) || !a->st[id].message[0]) return false;
    snprintf(msg, cap, "%s", a->st[id].message);
    *v = a->st[id].value;
    return true;
}

/* Value of alert id now; NaN when unknown. Writes its message. */
static double evaluate(qf_alerts *a, int id, const qf_alert_snapshot *s, char *msg, size_t cap) {
    const qf_alert_config *c = &a->c;
    const entry *base = ring_at(a, 0), *last = ring_at(a, a->n - 1);
    const entry *prev = a->n >= 2 ? ring_at(a, a->n - 2) : last;
    double held;
    double span = last->t - base->t;
    char v1[32], th[32];
    double thr = c->rule[id].threshold;
    pct(th, sizeof th, thr);
    switch (id) {
    case QF_ALERT_MEMORY_PRESSURE: {
        double v = s->mem_pressure;
        if (!isfinite(v)) return NAN;
        pct(v1, sizeof v1, v);
        snprintf(msg, cap,
                 "memory pressure at %s (threshold %s): lower --parallel or --ctx, use a smaller "
                 "quantization, or stop other programs using memory",
                 v1, th);
        return v;
    }
    case QF_ALERT_RESPONSE_LATENCY: {
        double mx = NAN;
        for (int i = 0; i < a->n; i++) {
            const entry *e = ring_at(a, i);
            if (e->t > last->t - c->window_s && isfinite(e->latency))
                mx = isnan(mx) ? e->latency : fmax(mx, e->latency);
        }
        if (isnan(mx)) return NAN;
        snprintf(msg, cap,
                 "slowest response of the last %.0f s took %.1f s (threshold %.0f s): lower "
                 "--parallel or max_tokens, or use a smaller model or quantization",
                 c->window_s, mx, thr);
        return mx;
    }
    case QF_ALERT_CACHE_HIT_RATE: {
        if (last->lookups < c->cache_min_lookups) return NAN; /* not warm yet */
        /* the window starts once warm: cold-start misses do not count */
        for (int i = 0; i < a->n && base->lookups < c->cache_min_lookups; i++)
            base = ring_at(a, i);
        double dt = last->total - base->total;
        if (last->lookups == base->lookups || !(dt > 0)) return NAN;
        if (hold(a, id, last->lookups != prev->lookups, msg, cap, &held)) return held;
        double v = (last->hits - base->hits) / dt;
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        pct(v1, sizeof v1, v);
        snprintf(msg, cap,
                 "cache hit rate %s over the last %.0f s (threshold %s, %llu lookups in all): put "
                 "the shared part of prompts first so prefixes match, and raise the KV budget "
                 "(--ctx) so cached blocks are not evicted",
                 v1, span, th, (unsigned long long)last->lookups);
        return v;
    }
    case QF_ALERT_ERROR_RATE: {
        uint64_t dr = last->requests - base->requests, de = last->errors - base->errors;
        if (dr == 0 || dr < c->error_min_requests) return NAN;
        if (hold(a, id, last->requests != prev->requests, msg, cap, &held)) return held;
        double v = (double)de / (double)dr;
        if (v > 1) v = 1;
        pct(v1, sizeof v1, v);
        snprintf(msg, cap,
                 "%s of requests failed over the last %.0f s (%llu of %llu, threshold %s): see "
                 "the log for the errors; for timeouts or 503 busy, lower --parallel or the load, "
                 "or raise --timeout / --max-queue",
                 v1, span, (unsigned long long)de, (unsigned long long)dr, th);
        return v;
    }
    case QF_ALERT_CORE_IMBALANCE: {
        int known = 0, busy = 0, idle = 0;
        for (int i = 0; i < a->n_ema; i++) {
            double u = a->ema[i];
            if (isnan(u)) continue;
            known++;
            busy += u >= c->imbalance_busy;
            idle += u <= c->imbalance_idle;
        }
        if (known < 2) return NAN;
        double v = busy > 0 ? (double)idle / known : 0;
        pct(v1, sizeof v1, v);
        snprintf(msg, cap,
                 "core use imbalanced: %d of %d cores saturated (>= %.0f%%) while %d idle (<= "
                 "%.0f%%), idle share %s (threshold %s): raise --threads to use the idle cores, "
                 "or move single-threaded work (I/O, parsing) off the compute cores (qforge tune)",
                 busy, known, c->imbalance_busy * 100, idle, c->imbalance_idle * 100, v1, th);
        return v;
    }
    case QF_ALERT_KV_POOL_FULL: {
        uint64_t ds = last->steps - base->steps, dw = last->kv_wait - base->kv_wait;
        if (ds == 0 || ds < c->kv_min_steps) return NAN;
        if (hold(a, id, last->steps != prev->steps, msg, cap, &held)) return held;
        double v = (double)dw / (double)ds;
        if (v > 1) v = 1;
        pct(v1, sizeof v1, v);
        snprintf(msg, cap,
                 "KV pool full on %s of steps: raise --ctx budget or lower --parallel (%llu of "
                 "%llu steps over the last %.0f s, threshold %s)",
                 v1, (unsigned long long)dw, (unsigned long long)ds, span, th);
        return v;
    }
    }
    return NAN;
}

static void fill_alert(const qf_alerts *a, int id, qf_alert *out) {
    const astate *st = &a->st[id];
    memset(out, 0, sizeof *out);
    out->id = (qf_alert_id)id;
    out->name = k_names[id];
    out->severity = a->c.rule[id].severity;
    out->active = st->active;
    out->value = st->value;
    out->threshold = a->c.rule[id].threshold;
    out->since = st->since;
    out->since_unix = st->since_unix;
    memcpy(out->message, st->message, sizeof out->message);
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- JSON ---- */

static void json_str(char *buf, size_t cap, size_t *n, const char *s) {
    size_t k = *n;
#define PUTC(ch)                                                                                   \
    do {                                                                                           \
        if (k + 1 < cap) buf[k] = (ch);                                                            \
        k++;                                                                                       \
    } while (0)
    PUTC('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            PUTC('\\');
            PUTC((char)*p);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            for (char *e = esc; *e; e++)
                PUTC(*e);
        } else {
            PUTC((char)*p);
        }
    }
    PUTC('"');
#undef PUTC
    if (cap) buf[k < cap ? k : cap - 1] = 0;
    *n = k;
}

static void json_num(char *buf, size_t cap, size_t *n, double v, const char *fmt) {
    size_t room = *n < cap ? cap - *n : 0;
    int k = isfinite(v) ? snprintf(room ? buf + *n : NULL, room, fmt, v)
                        : snprintf(room ? buf + *n : NULL, room, "null");
    *n += k > 0 ? (size_t)k : 0;
}

static void json_raw(char *buf, size_t cap, size_t *n, const char *s) {
    size_t room = *n < cap ? cap - *n : 0;
    int k = snprintf(room ? buf + *n : NULL, room, "%s", s);
    *n += k > 0 ? (size_t)k : 0;
}

/* One alert object into buf (cap bytes); returns the length it needs
 * (excluding the NUL), like snprintf. */
static size_t alert_json(const qf_alert *al, const char *state, char *buf, size_t cap) {
    size_t n = 0;
    json_raw(buf, cap, &n, "{\"name\":");
    json_str(buf, cap, &n, al->name);
    json_raw(buf, cap, &n, ",\"severity\":");
    json_str(buf, cap, &n, qf_alert_severity_name(al->severity));
    json_raw(buf, cap, &n, ",\"message\":");
    json_str(buf, cap, &n, al->message);
    json_raw(buf, cap, &n, ",\"value\":");
    json_num(buf, cap, &n, al->value, "%.6g");
    json_raw(buf, cap, &n, ",\"threshold\":");
    json_num(buf, cap, &n, al->threshold, "%.6g");
    json_raw(buf, cap, &n, ",\"since_unix\":");
    json_num(buf, cap, &n, al->since_unix, "%.3f");
    if (state) {
        json_raw(buf, cap, &n, ",\"state\":");
        json_str(buf, cap, &n, state);
    }
    json_raw(buf, cap, &n, "}");
    return n;
}

char *qf_alerts_json(qf_alerts *a, size_t *len) {
    if (len) *len = 0;
    if (!a) return NULL;
    qf_alert al[QF_ALERT_COUNT];
    int n = qf_alerts_active(a, al, QF_ALERT_COUNT);
    if (n > QF_ALERT_COUNT) n = QF_ALERT_COUNT;
    size_t cap = 64 + (size_t)n * 1024; /* a message is < 384 bytes, escaped at most 6x */
    for (;;) {
        char *buf = qf_malloc(cap);
        if (!buf) return NULL;
        size_t k = 0;
        json_raw(buf, cap, &k, "{\"alerts\":[");
        for (int i = 0; i < n; i++) {
            if (i) json_raw(buf, cap, &k, ",");
            size_t room = k < cap ? cap - k : 0;
            k += alert_json(&al[i], NULL, room ? buf + k : NULL, room);
        }
        json_raw(buf, cap, &k, "]}");
        if (k < cap) {
            if (len) *len = k;
            return buf;
        }
        qf_free(buf);
        cap = k + 1;
    }
}

/* ---- feeding ---- */

typedef struct change {
    qf_alert al;
    double t; /* snapshot time of the change */
} change;

static void announce(qf_alerts *a, const change *ch, int n_ch) {
    cb cbs[MAX_CALLBACKS];
    pthread_mutex_lock(&a->mu);
    int n_cbs = a->n_cbs;
    memcpy(cbs, a->cbs, sizeof cbs);
    alert_runner *r = a->runner;
    for (int i = 0; i < n_ch; i++) {
        /* queue the command under the lock: set_command cannot free the
         * runner meanwhile; pushing never blocks */
        if (!r) continue;
        char json[4096];
        size_t k = alert_json(&ch[i].al, ch[i].al.active ? "firing" : "resolved", json, sizeof json);
        if (k < sizeof json)
            alert_runner_push(r, json, ch[i].al.name, ch[i].al.active ? "firing" : "resolved");
    }
    pthread_mutex_unlock(&a->mu);
    for (int i = 0; i < n_ch; i++) {
        const qf_alert *al = &ch[i].al;
        if (al->active)
            qf_warn("alert %s (%s): %s", al->name, qf_alert_severity_name(al->severity), al->message);
        else
            qf_info("alert %s cleared after %.0f s", al->name, ch[i].t - al->since);
        for (int j = 0; j < n_cbs; j++)
            cbs[j].fn(cbs[j].ud, al);
    }
}

void qf_alerts_feed(qf_alerts *a, const qf_alert_snapshot *s) {
    if (!a || !s || !isfinite(s->t)) return;
    change ch[QF_ALERT_COUNT];
    int n_ch = 0;
    pthread_mutex_lock(&a->mu);
    ring_push(a, s);
    smooth_cores(a, s);
    double now = s->t;
    double unix_now = s->t_unix > 0 ? s->t_unix : wall_now();
    for (int id = 0; id < QF_ALERT_COUNT; id++) {
        const qf_alert_rule *r = &a->c.rule[id];
        astate *st = &a->st[id];
        if (!r->enabled) { /* the config is fixed: a disabled alert never fired */
            st->value = NAN;
            continue;
        }
        char msg[sizeof st->message];
        msg[0] = 0;
        double v = evaluate(a, id, s, msg, sizeof msg);
        double clr = clear_level(id, r);
        bool known = !isnan(v);
        bool past = known && (low_alert(id) ? v < r->threshold : v > r->threshold);
        bool inside = !known || (low_alert(id) ? v >= clr : v <= clr);
        if (known) { /* kept also while inactive: hold() reuses it */
            st->value = v;
            memcpy(st->message, msg, sizeof st->message);
        }
        if (!st->active) {
            if (!known) st->value = NAN;
            if (!past) {
                st->pending_since = NAN;
                continue;
            }
            if (isnan(st->pending_since)) st->pending_since = now;
            if (now - st->pending_since < r->for_s) continue;
            st->active = true;
            st->since = now;
            st->since_unix = unix_now;
            st->clear_since = NAN;
            st->fired++;
            fill_alert(a, id, &ch[n_ch].al);
            ch[n_ch++].t = now;
        } else {
            if (!inside) {
                st->clear_since = NAN;
                continue;
            }
            if (isnan(st->clear_since)) st->clear_since = now;
            if (now - st->clear_since < a->c.clear_for_s) continue;
            st->active = false;
            st->pending_since = NAN;
            st->clear_since = NAN;
            if (!known) st->value = NAN;
            fill_alert(a, id, &ch[n_ch].al);
            ch[n_ch].al.value = v;
            ch[n_ch++].t = now;
        }
    }
    pthread_mutex_unlock(&a->mu);
    if (n_ch) announce(a, ch, n_ch);
}

int qf_alerts_active(qf_alerts *a, qf_alert *out, int cap) {
    if (!a) return 0;
    int n = 0;
    pthread_mutex_lock(&a->mu);
    for (int id = 0; id < QF_ALERT_COUNT; id++) {
        if (!a->st[id].active) continue;
        if (out && n < cap) fill_alert(a, id, &out[n]);
        n++;
    }
    pthread_mutex_unlock(&a->mu);
    return n;
}

double qf_alerts_value(qf_alerts *a, qf_alert_id id) {
    if (!a || (unsigned)id >= QF_ALERT_COUNT) return NAN;
    pthread_mutex_lock(&a->mu);
    double v = a->c.rule[id].enabled ? a->st[id].value : NAN;
    pthread_mutex_unlock(&a->mu);
    return v;
}

/* ---- metrics ---- */

qf_status qf_alerts_to_metrics(qf_alerts *a, qf_metrics *m) {
    if (!a || !m) return QF_ERR_INVALID;
    static const struct {
        const char *name;
        qf_metric_kind kind;
        const char *help;
    } fams[] = {
        {"qforge_alert_active", QF_METRIC_GAUGE, "1 while the alert is active, else 0"},
        {"qforge_alert_value", QF_METRIC_GAUGE, "The value the alert watches, when known"},
        {"qforge_alert_threshold", QF_METRIC_GAUGE, "The threshold the alert fires past"},
        {"qforge_alerts_fired_total", QF_METRIC_COUNTER, "Times the alert fired"},
    };
    qf_status first = QF_OK;
    for (size_t i = 0; i < sizeof fams / sizeof *fams; i++) {
        qf_status st = qf_metrics_declare(m, fams[i].name, fams[i].kind, fams[i].help, NULL, 0);
        if (st != QF_OK && st != QF_ERR_INVALID && first == QF_OK) first = st;
    }
    struct {
        bool on, active;
        double value, threshold;
        uint64_t fired;
    } v[QF_ALERT_COUNT];
    pthread_mutex_lock(&a->mu);
    for (int id = 0; id < QF_ALERT_COUNT; id++) {
        v[id].on = a->c.rule[id].enabled;
        v[id].active = a->st[id].active;
        v[id].value = a->st[id].value;
        v[id].threshold = a->c.rule[id].threshold;
        v[id].fired = a->st[id].fired;
    }
    pthread_mutex_unlock(&a->mu);
    for (int id = 0; id < QF_ALERT_COUNT; id++) {
        if (!v[id].on) continue;
        char lb[64];
        qf_metrics_labels(lb, sizeof lb, "alert", k_names[id], (const char *)NULL);
        qf_status st[4] = {
            qf_metrics_set(m, "qforge_alert_active", lb, v[id].active ? 1 : 0),
            isfinite(v[id].value) ? qf_metrics_set(m, "qforge_alert_value", lb, v[id].value) : QF_OK,
            qf_metrics_set(m, "qforge_alert_threshold", lb, v[id].threshold),
            qf_metrics_set(m, "qforge_alerts_fired_total", lb, (double)v[id].fired),
        };
        for (int k = 0; k < 4; k++)
            if (st[k] != QF_OK && first == QF_OK) first = st[k];
    }
    return first;
}
