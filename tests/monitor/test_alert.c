/* test_alert.c - the bottleneck detector on scripted snapshots: every alert
 * fires on an overload and clears after it (with the hysteresis and
 * warm-up rules of alert.h), settings parse and refuse bad input, the
 * /alerts JSON keeps its shape, metrics are published, and the alert
 * command gets the alert as JSON on stdin without blocking the feeder
 * (including a command that hangs and is killed). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "monitor/alert.h"
#include "qf_test.h"

/* ---- recording callback ---- */

typedef struct rec {
    int fired[QF_ALERT_COUNT], cleared[QF_ALERT_COUNT];
    qf_alert last;
} rec;

static void on_alert(void *ud, const qf_alert *a) {
    rec *r = ud;
    if (a->active)
        r->fired[a->id]++;
    else
        r->cleared[a->id]++;
    r->last = *a;
}

static qf_alerts *new_det(qf_alert_config *c, rec *r) {
    qf_alerts *a = qf_alerts_new(c, NULL);
    if (a && r) {
        memset(r, 0, sizeof *r);
        qf_alerts_add_callback(a, on_alert, r);
    }
    return a;
}

static bool is_active(qf_alerts *a, qf_alert_id id, qf_alert *out) {
    qf_alert al[QF_ALERT_COUNT];
    int n = qf_alerts_active(a, al, QF_ALERT_COUNT);
    for (int i = 0; i < n; i++)
        if (al[i].id == id) {
            if (out) *out = al[i];
            return true;
        }
    return false;
}

/* ---- defaults and settings ---- */

static void test_defaults(void) {
    qf_alert_config c = qf_alert_config_default();
    /* the brief's triggers */
    ASSERT_NEAR(c.rule[QF_ALERT_MEMORY_PRESSURE].threshold, 0.95, 0);
    ASSERT_NEAR(c.rule[QF_ALERT_RESPONSE_LATENCY].threshold, 120, 0);
    ASSERT_NEAR(c.rule[QF_ALERT_CACHE_HIT_RATE].threshold, 0.70, 0);
    ASSERT_NEAR(c.rule[QF_ALERT_ERROR_RATE].threshold, 0.02, 0);
    for (int i = 0; i < QF_ALERT_COUNT; i++)
        ASSERT(c.rule[i].enabled);
    ASSERT_STR_EQ(qf_alert_name(QF_ALERT_MEMORY_PRESSURE), "memory_pressure");
    ASSERT_STR_EQ(qf_alert_name(QF_ALERT_RESPONSE_LATENCY), "response_latency");
    ASSERT_STR_EQ(qf_alert_name(QF_ALERT_CACHE_HIT_RATE), "cache_hit_rate");
    ASSERT_STR_EQ(qf_alert_name(QF_ALERT_ERROR_RATE), "error_rate");
    ASSERT_STR_EQ(qf_alert_name(QF_ALERT_CORE_IMBALANCE), "core_imbalance");
    ASSERT_STR_EQ(qf_alert_name(QF_ALERT_KV_POOL_FULL), "kv_pool_full");
    ASSERT(qf_alert_name(QF_ALERT_COUNT) == NULL);
    ASSERT(qf_alert_name((qf_alert_id)-1) == NULL);
    ASSERT_STR_EQ(qf_alert_severity_name(QF_ALERT_CRITICAL), "critical");
}

static void test_config_set(void) {
    qf_alert_config c = qf_alert_config_default();
    qf_err err = {0};
    ASSERT_EQ_INT(qf_alert_config_set(&c, "memory_pressure=90%", &err), QF_OK);
    ASSERT_NEAR(c.rule[QF_ALERT_MEMORY_PRESSURE].threshold, 0.90, 1e-12);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "memory_pressure=0.8", &err), QF_OK);
    ASSERT_NEAR(c.rule[QF_ALERT_MEMORY_PRESSURE].threshold, 0.8, 1e-12);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "response_latency=2m", &err), QF_OK);
    ASSERT_NEAR(c.rule[QF_ALERT_RESPONSE_LATENCY].threshold, 120, 1e-12);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "response_latency=45", &err), QF_OK);
    ASSERT_NEAR(c.rule[QF_ALERT_RESPONSE_LATENCY].threshold, 45, 1e-12);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "cache_hit_rate=off", &err), QF_OK);
    ASSERT(!c.rule[QF_ALERT_CACHE_HIT_RATE].enabled);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "cache_hit_rate=50%", &err), QF_OK);
    ASSERT(c.rule[QF_ALERT_CACHE_HIT_RATE].enabled);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "cache_hit_rate.clear=0.6", &err), QF_OK);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "error_rate.severity=warning", &err), QF_OK);
    ASSERT_EQ_INT(c.rule[QF_ALERT_ERROR_RATE].severity, QF_ALERT_WARNING);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "kv_pool_full.for=30s", &err), QF_OK);
    ASSERT_NEAR(c.rule[QF_ALERT_KV_POOL_FULL].for_s, 30, 0);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "window=5m", &err), QF_OK);
    ASSERT_NEAR(c.window_s, 300, 0);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "error_min_requests=5", &err), QF_OK);
    ASSERT_EQ_INT(c.error_min_requests, 5);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "clear_for=0", &err), QF_OK);

    /* refused, with a message naming the setting; config unchanged */
    qf_alert_config before = c;
    const char *bad[] = {"memory_pressure",       "=1",
                         "memory_pressure=",      "memory_pressure=abc",
                         "memory_pressure=1.5",   "memory_pressure=-0.1",
                         "response_latency=0",    "response_latency=10%",
                         "error_rate=5s",         "nosuch=1",
                         "nosuch.clear=1",        "error_rate.bogus=1",
                         "error_rate.severity=x", "memory_pressure.clear=0.99",
                         "cache_hit_rate.clear=0.1", "window=0",
                         "window=-5",             "error_min_requests=-1",
                         "error_min_requests=1x", "imbalance_idle=0.95",
                         "cmd_timeout=nan",       "memory_pressure=inf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qf_err_clear(&err);
        ASSERT_MSG(qf_alert_config_set(&c, bad[i], &err) == QF_ERR_INVALID, "accepted '%s'", bad[i]);
        ASSERT_MSG(err.msg[0] != 0, "no message for '%s'", bad[i]);
        ASSERT(memcmp(&before, &c, sizeof c) == 0);
    }
    ASSERT(strstr(err.msg, "memory_pressure=inf") != NULL);
    ASSERT_EQ_INT(qf_alert_config_set(NULL, "window=1", NULL), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_alert_config_set(&c, NULL, NULL), QF_ERR_INVALID);

    /* qf_alerts_new checks a hand-made config too */
    qf_alert_config x = qf_alert_config_default();
    x.rule[QF_ALERT_ERROR_RATE].threshold = 2; /* a ratio above 1 */
    qf_err_clear(&err);
    ASSERT(qf_alerts_new(&x, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    ASSERT(strstr(err.msg, "error_rate") != NULL);
}

/* ---- each alert on a scripted overload ---- */

static void test_memory_pressure(void) {
    rec r;
    qf_alerts *a = new_det(NULL, &r);
    ASSERT(a);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    s.t_unix = 1700000000;
    for (int t = 0; t < 5; t++) { /* calm */
        s.t = t;
        s.mem_pressure = 0.30;
        qf_alerts_feed(a, &s);
    }
    ASSERT_EQ_INT(qf_alerts_active(a, NULL, 0), 0);
    ASSERT_NEAR(qf_alerts_value(a, QF_ALERT_MEMORY_PRESSURE), 0.30, 1e-12);
    s.t = 5;
    s.mem_pressure = 0.95; /* at the threshold: not past it */
    qf_alerts_feed(a, &s);
    ASSERT_EQ_INT(r.fired[QF_ALERT_MEMORY_PRESSURE], 0);
    s.t = 6;
    s.t_unix = 1700000006;
    s.mem_pressure = 0.97;
    qf_alerts_feed(a, &s);
    ASSERT_EQ_INT(r.fired[QF_ALERT_MEMORY_PRESSURE], 1);
    qf_alert al;
    ASSERT(is_active(a, QF_ALERT_MEMORY_PRESSURE, &al));
    ASSERT_STR_EQ(al.name, "memory_pressure");
    ASSERT_EQ_INT(al.severity, QF_ALERT_CRITICAL);
    ASSERT_NEAR(al.value, 0.97, 1e-12);
    ASSERT_NEAR(al.threshold, 0.95, 1e-12);
    ASSERT_NEAR(al.since, 6, 0);
    ASSERT_NEAR(al.since_unix, 1700000006, 0);
    ASSERT_MSG(strstr(al.message, "97%") && strstr(al.message, "--parallel"), "%s", al.message);
    /* hysteresis: 0.90 is under the threshold but above the clear level
     * (0.855): stays active, value and message follow, since stays */
    for (int t = 7; t < 40; t++) {
        s.t = t;
        s.mem_pressure = 0.90;
        qf_alerts_feed(a, &s);
    }
    ASSERT(is_active(a, QF_ALERT_MEMORY_PRESSURE, &al));
    ASSERT_NEAR(al.value, 0.90, 1e-12);
    ASSERT_NEAR(al.since, 6, 0);
    ASSERT(strstr(al.message, "90%"));
    ASSERT_EQ_INT(r.fired[QF_ALERT_MEMORY_PRESSURE], 1);
    /* inside the clear level for less than clear_for_s (10 s), then above */
    for (int t = 40; t < 45; t++) {
        s.t = t;
        s.mem_pressure = 0.5;
        qf_alerts_feed(a, &s);
    }
    s.t = 45;
    s.mem_pressure = 0.9;
    qf_alerts_feed(a, &s);
    ASSERT(is_active(a, QF_ALERT_MEMORY_PRESSURE, NULL));
    /* the overload ends: clears 10 s after the value went back inside */
    for (int t = 46; t <= 55; t++) {
        s.t = t;
        s.mem_pressure = 0.5;
        qf_alerts_feed(a, &s);
        ASSERT_MSG(is_active(a, QF_ALERT_MEMORY_PRESSURE, NULL), "cleared early at t=%d", t);
    }
    s.t = 56;
    qf_alerts_feed(a, &s);
    ASSERT(!is_active(a, QF_ALERT_MEMORY_PRESSURE, NULL));
    ASSERT_EQ_INT(r.cleared[QF_ALERT_MEMORY_PRESSURE], 1);
    ASSERT(!r.last.active);
    ASSERT_STR_EQ(r.last.name, "memory_pressure");
    /* and fires again on a second overload */
    s.t = 57;
    s.mem_pressure = 0.99;
    qf_alerts_feed(a, &s);
    ASSERT_EQ_INT(r.fired[QF_ALERT_MEMORY_PRESSURE], 2);
    /* unknown pressure counts as clear */
    s.mem_pressure = NAN;
    for (int t = 58; t <= 70; t++) {
        s.t = t;
        qf_alerts_feed(a, &s);
    }
    ASSERT(!is_active(a, QF_ALERT_MEMORY_PRESSURE, NULL));
    ASSERT(isnan(qf_alerts_value(a, QF_ALERT_MEMORY_PRESSURE)));
    /* no other alert was touched */
    for (int i = 0; i < QF_ALERT_COUNT; i++)
        if (i != QF_ALERT_MEMORY_PRESSURE) ASSERT_EQ_INT(r.fired[i], 0);
    qf_alerts_free(a);
}

static void test_latency(void) {
    rec r;
    qf_alerts *a = new_det(NULL, &r);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    for (int t = 0; t < 10; t++) {
        s.t = t;
        s.latency_max_s = t % 2 ? 30 : NAN; /* some responses, all fast */
        qf_alerts_feed(a, &s);
    }
    ASSERT_EQ_INT(r.fired[QF_ALERT_RESPONSE_LATENCY], 0);
    ASSERT_NEAR(qf_alerts_value(a, QF_ALERT_RESPONSE_LATENCY), 30, 0);
    s.t = 10;
    s.latency_max_s = 184;
    qf_alerts_feed(a, &s);
    qf_alert al;
    ASSERT(is_active(a, QF_ALERT_RESPONSE_LATENCY, &al));
    ASSERT_NEAR(al.value, 184, 0);
    ASSERT_NEAR(al.threshold, 120, 0);
    ASSERT_EQ_INT(al.severity, QF_ALERT_WARNING);
    ASSERT_MSG(strstr(al.message, "184.0 s") && strstr(al.message, "max_tokens"), "%s", al.message);
    /* the slow response stays the window maximum for 60 s: no clearing */
    for (int t = 11; t < 70; t++) {
        s.t = t;
        s.latency_max_s = 20;
        qf_alerts_feed(a, &s);
    }
    ASSERT(is_active(a, QF_ALERT_RESPONSE_LATENCY, NULL));
    /* once it left the window, 10 s inside the clear level, then clear */
    for (int t = 70; t < 85; t++) {
        s.t = t;
        s.latency_max_s = 20;
        qf_alerts_feed(a, &s);
    }
    ASSERT(!is_active(a, QF_ALERT_RESPONSE_LATENCY, NULL));
    ASSERT_EQ_INT(r.cleared[QF_ALERT_RESPONSE_LATENCY], 1);
    ASSERT_NEAR(qf_alerts_value(a, QF_ALERT_RESPONSE_LATENCY), 20, 0);
    qf_alerts_free(a);
}

static void test_cache_hit_rate(void) {
    rec r;
    qf_alert_config c = qf_alert_config_default();
    c.cache_min_lookups = 50;
    qf_alerts *a = new_det(&c, &r);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    /* cold: 0% hits but under 50 lookups in all -> nothing */
    for (int t = 0; t < 40; t++) {
        s.t = t;
        s.cache_lookups += 1;
        s.cache_total += 100;
        qf_alerts_feed(a, &s);
    }
    ASSERT_EQ_INT(r.fired[QF_ALERT_CACHE_HIT_RATE], 0);
    ASSERT(isnan(qf_alerts_value(a, QF_ALERT_CACHE_HIT_RATE)));
    /* warm, 90% hits over the window: fine */
    for (int t = 40; t < 110; t++) {
        s.t = t;
        s.cache_lookups += 1;
        s.cache_total += 100;
        s.cache_hits += 90;
        qf_alerts_feed(a, &s);
    }
    ASSERT_EQ_INT(r.fired[QF_ALERT_CACHE_HIT_RATE], 0);
    ASSERT_NEAR(qf_alerts_value(a, QF_ALERT_CACHE_HIT_RATE), 0.9, 1e-9);
    /* overload: prompts stop sharing prefixes, 10% hits; the window rate
     * sinks under 70% within the window */
    int t = 110;
    while (!is_active(a, QF_ALERT_CACHE_HIT_RATE, NULL) && t < 200) {
        s.t = t++;
        s.cache_lookups += 1;
        s.cache_total += 100;
        s.cache_hits += 10;
        qf_alerts_feed(a, &s);
    }
    qf_alert al;
    ASSERT(is_active(a, QF_ALERT_CACHE_HIT_RATE, &al));
    ASSERT(al.value < 0.70 && al.value > 0.60);
    ASSERT(t < 140); /* about 60 * 0.2/0.8 = 15 s into the overload */
    ASSERT_MSG(strstr(al.message, "cache hit rate") && strstr(al.message, "--ctx"), "%s", al.message);
    /* recovers: 100% hits; the window rate must reach the clear level 77% */
    while (is_active(a, QF_ALERT_CACHE_HIT_RATE, NULL) && t < 400) {
        s.t = t++;
        s.cache_lookups += 1;
        s.cache_total += 100;
        s.cache_hits += 100;
        qf_alerts_feed(a, &s);
    }
    ASSERT(!is_active(a, QF_ALERT_CACHE_HIT_RATE, NULL));
    ASSERT_EQ_INT(r.cleared[QF_ALERT_CACHE_HIT_RATE], 1);
    ASSERT(qf_alerts_value(a, QF_ALERT_CACHE_HIT_RATE) >= 0.77);
    qf_alerts_free(a);
}

static void test_error_rate(void) {
    rec r;
    qf_alerts *a = new_det(NULL, &r);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    /* 1 error in 10 requests: 10% but fewer than 20 requests in the window */
    s.t = 0;
    qf_alerts_feed(a, &s);
    s.t = 1;
    s.requests = 10;
    s.errors = 1;
    qf_alerts_feed(a, &s);
    ASSERT_EQ_INT(r.fired[QF_ALERT_ERROR_RATE], 0);
    /* steady: 100 requests/s, 1% errors */
    int t;
    for (t = 2; t < 70; t++) {
        s.t = t;
        s.requests += 100;
        s.errors += 1;
        qf_alerts_feed(a, &s);
    }
    ASSERT_EQ_INT(r.fired[QF_ALERT_ERROR_RATE], 0);
    ASSERT_NEAR(qf_alerts_value(a, QF_ALERT_ERROR_RATE), 0.01, 1e-9);
    /* overload: 10% errors */
    while (!is_active(a, QF_ALERT_ERROR_RATE, NULL) && t < 200) {
        s.t = t++;
        s.requests += 100;
        s.errors += 10;
        qf_alerts_feed(a, &s);
    }
    qf_alert al;
    ASSERT(is_active(a, QF_ALERT_ERROR_RATE, &al));
    ASSERT(al.value > 0.02 && al.value < 0.03);
    ASSERT_EQ_INT(al.severity, QF_ALERT_CRITICAL);
    ASSERT_MSG(strstr(al.message, "of requests failed") && strstr(al.message, "--timeout"), "%s",
               al.message);
    /* back to no errors: clears once the window rate is <= 1.8% for 10 s */
    int t_ok = t;
    while (is_active(a, QF_ALERT_ERROR_RATE, NULL) && t < 400) {
        s.t = t++;
        s.requests += 100;
        qf_alerts_feed(a, &s);
    }
    ASSERT(!is_active(a, QF_ALERT_ERROR_RATE, NULL));
    ASSERT(t - t_ok <= 75); /* window + clear_for */
    /* no traffic at all: error rate unknown, nothing fires */
    for (int k = 0; k < 100; k++, t++) {
        s.t = t;
        qf_alerts_feed(a, &s);
    }
    ASSERT(isnan(qf_alerts_value(a, QF_ALERT_ERROR_RATE)));
    ASSERT_EQ_INT(r.fired[QF_ALERT_ERROR_RATE], 1);
    qf_alerts_free(a);
}

static void test_core_imbalance(void) {
    rec r;
    qf_alert_config c = qf_alert_config_default();
    c.imbalance_tau_s = 5;
    qf_alerts *a = new_det(&c, &r);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    double cores[4] = {0.6, 0.55, 0.65, 0.6};
    s.core_util = cores;
    s.n_cores = 4;
    int t;
    for (t = 0; t < 30; t++) { /* busy everywhere, nobody saturated */
        s.t = t;
        qf_alerts_feed(a, &s);
    }
    ASSERT_EQ_INT(r.fired[QF_ALERT_CORE_IMBALANCE], 0);
    ASSERT_NEAR(qf_alerts_value(a, QF_ALERT_CORE_IMBALANCE), 0, 0);
    /* one thread pegged on core 0, the rest idle: 3 of 4 idle */
    double skew[4] = {1.0, 0.02, 0.05, 0.0};
    s.core_util = skew;
    while (!is_active(a, QF_ALERT_CORE_IMBALANCE, NULL) && t < 100) {
        s.t = t++;
        qf_alerts_feed(a, &s);
    }
    qf_alert al;
    ASSERT(is_active(a, QF_ALERT_CORE_IMBALANCE, &al));
    ASSERT(t < 60);
    ASSERT_NEAR(al.value, 0.75, 1e-9);
    ASSERT_MSG(strstr(al.message, "1 of 4 cores saturated") && strstr(al.message, "--threads"), "%s",
               al.message);
    /* 8 of 12 saturated with 4 idle (performance cores busy, efficiency idle)
     * is the intended placement: 33% idle stays under 40% */
    double all[12] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
    s.core_util = all;
    s.n_cores = 12; /* a new core count restarts the smoothing */
    for (int k = 0; k < 30; k++) {
        s.t = t++;
        qf_alerts_feed(a, &s);
    }
    ASSERT(!is_active(a, QF_ALERT_CORE_IMBALANCE, NULL));
    ASSERT_NEAR(qf_alerts_value(a, QF_ALERT_CORE_IMBALANCE), 4.0 / 12, 1e-9);
    ASSERT_EQ_INT(r.cleared[QF_ALERT_CORE_IMBALANCE], 1);
    /* unknown cores (NaN) are not counted; one known core is no data */
    double one[2] = {1.0, NAN};
    s.core_util = one;
    s.n_cores = 2;
    s.t = t++;
    qf_alerts_feed(a, &s);
    ASSERT(isnan(qf_alerts_value(a, QF_ALERT_CORE_IMBALANCE)));
    qf_alerts_free(a);
}

static void test_kv_pool_full(void) {
    rec r;
    qf_alerts *a = new_det(NULL, &r);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    int t;
    for (t = 0; t < 70; t++) { /* 10 steps/s, no waits */
        s.t = t;
        s.steps += 10;
        qf_alerts_feed(a, &s);
    }
    ASSERT_NEAR(qf_alerts_value(a, QF_ALERT_KV_POOL_FULL), 0, 0);
    /* overload: admission waits for kv blocks on 4 of 10 steps */
    while (!is_active(a, QF_ALERT_KV_POOL_FULL, NULL) && t < 200) {
        s.t = t++;
        s.steps += 10;
        s.kv_wait_steps += 4;
        qf_alerts_feed(a, &s);
    }
    qf_alert al;
    ASSERT(is_active(a, QF_ALERT_KV_POOL_FULL, &al));
    ASSERT(al.value > 0.25 && al.value < 0.4);
    /* the brief's wording */
    ASSERT_MSG(strstr(al.message, "KV pool full on ") == al.message &&
                   strstr(al.message, "% of steps: raise --ctx budget or lower --parallel"),
               "%s", al.message);
    for (int k = 0; k < 80; k++) { /* the rest of the window: 38%+ */
        s.t = t++;
        s.steps += 10;
        s.kv_wait_steps += 4;
        qf_alerts_feed(a, &s);
    }
    ASSERT(is_active(a, QF_ALERT_KV_POOL_FULL, &al));
    ASSERT_NEAR(al.value, 0.4, 1e-9);
    ASSERT(strstr(al.message, "KV pool full on 40% of steps"));
    /* load drops */
    for (int k = 0; k < 90; k++) {
        s.t = t++;
        s.steps += 10;
        qf_alerts_feed(a, &s);
    }
    ASSERT(!is_active(a, QF_ALERT_KV_POOL_FULL, NULL));
    ASSERT_EQ_INT(r.cleared[QF_ALERT_KV_POOL_FULL], 1);
    /* idle engine: fewer than kv_min_steps steps in the window -> unknown */
    for (int k = 0; k < 70; k++) {
        s.t = t++;
        qf_alerts_feed(a, &s);
    }
    ASSERT(isnan(qf_alerts_value(a, QF_ALERT_KV_POOL_FULL)));
    qf_alerts_free(a);
}

/* ---- hysteresis options, resets, disabled alerts ---- */

static void test_for_and_disabled(void) {
    rec r;
    qf_alert_config c = qf_alert_config_default();
    ASSERT_EQ_INT(qf_alert_config_set(&c, "memory_pressure.for=5", NULL), QF_OK);
    ASSERT_EQ_INT(qf_alert_config_set(&c, "error_rate=off", NULL), QF_OK);
    qf_alerts *a = new_det(&c, &r);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    s.mem_pressure = 0.99;
    int t;
    for (t = 0; t < 5; t++) {
        s.t = t;
        qf_alerts_feed(a, &s);
        ASSERT_MSG(!is_active(a, QF_ALERT_MEMORY_PRESSURE, NULL), "fired at t=%d", t);
    }
    /* a dip resets the pending time */
    s.t = t++;
    s.mem_pressure = 0.5;
    qf_alerts_feed(a, &s);
    s.mem_pressure = 0.99;
    int first = t;
    while (!is_active(a, QF_ALERT_MEMORY_PRESSURE, NULL) && t < 50) {
        s.t = t++;
        qf_alerts_feed(a, &s);
    }
    ASSERT_EQ_INT(t - 1 - first, 5);
    /* disabled: all errors, never fires, no value */
    s.requests = 0;
    for (int k = 0; k < 30; k++) {
        s.t = t++;
        s.requests += 100;
        s.errors += 100;
        qf_alerts_feed(a, &s);
    }
    ASSERT_EQ_INT(r.fired[QF_ALERT_ERROR_RATE], 0);
    ASSERT(isnan(qf_alerts_value(a, QF_ALERT_ERROR_RATE)));
    qf_alerts_free(a);
}

static void test_counter_reset(void) {
    rec r;
    qf_alerts *a = new_det(NULL, &r);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    int t;
    for (t = 0; t < 30; t++) {
        s.t = t;
        s.requests += 100;
        qf_alerts_feed(a, &s);
    }
    /* the counters restart (a model unloaded): no negative rate, no alert;
     * the window starts again */
    s.t = t++;
    s.requests = 5;
    s.errors = 0;
    qf_alerts_feed(a, &s);
    ASSERT_EQ_INT(r.fired[QF_ALERT_ERROR_RATE], 0);
    ASSERT(isnan(qf_alerts_value(a, QF_ALERT_ERROR_RATE))); /* one snapshot: no window */
    s.t = t++;
    s.requests += 100;
    s.errors += 50;
    qf_alerts_feed(a, &s);
    ASSERT(is_active(a, QF_ALERT_ERROR_RATE, NULL));
    ASSERT_NEAR(qf_alerts_value(a, QF_ALERT_ERROR_RATE), 0.5, 1e-12);
    /* NaN time is ignored */
    s.t = NAN;
    qf_alerts_feed(a, &s);
    qf_alerts_feed(NULL, &s);
    qf_alerts_feed(a, NULL);
    qf_alerts_free(a);
    qf_alerts_free(NULL);
}

/* ---- JSON and metrics ---- */

static void test_json_and_metrics(void) {
    qf_alerts *a = qf_alerts_new(NULL, NULL);
    size_t len = 0;
    char *j = qf_alerts_json(a, &len);
    ASSERT_STR_EQ(j, "{\"alerts\":[]}");
    ASSERT_EQ_INT(len, strlen(j));
    qf_free(j);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    s.t = 100;
    s.t_unix = 1700000123.5;
    s.mem_pressure = 0.98;
    s.latency_max_s = 300;
    qf_alerts_feed(a, &s);
    j = qf_alerts_json(a, &len);
    ASSERT(j);
    cJSON *root = cJSON_Parse(j);
    ASSERT_MSG(root, "bad JSON: %s", j);
    ASSERT_EQ_INT(cJSON_GetArraySize(root), 1); /* only "alerts" */
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "alerts");
    ASSERT(cJSON_IsArray(arr));
    ASSERT_EQ_INT(cJSON_GetArraySize(arr), 2);
    cJSON *o = cJSON_GetArrayItem(arr, 0); /* enum order */
    const char *keys[] = {"name", "severity", "message", "value", "threshold", "since_unix"};
    ASSERT_EQ_INT(cJSON_GetArraySize(o), 6);
    for (int k = 0; k < 6; k++)
        ASSERT_MSG(cJSON_GetObjectItemCaseSensitive(o, keys[k]), "no %s", keys[k]);
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "name")->valuestring, "memory_pressure");
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "severity")->valuestring, "critical");
    ASSERT_NEAR(cJSON_GetObjectItem(o, "value")->valuedouble, 0.98, 1e-9);
    ASSERT_NEAR(cJSON_GetObjectItem(o, "threshold")->valuedouble, 0.95, 1e-9);
    ASSERT_NEAR(cJSON_GetObjectItem(o, "since_unix")->valuedouble, 1700000123.5, 1e-3);
    ASSERT(strstr(cJSON_GetObjectItem(o, "message")->valuestring, "98%"));
    o = cJSON_GetArrayItem(arr, 1);
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "name")->valuestring, "response_latency");
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "severity")->valuestring, "warning");
    cJSON_Delete(root);
    qf_free(j);

    qf_metrics *m = qf_metrics_new(NULL);
    ASSERT_EQ_INT(qf_alerts_to_metrics(a, m), QF_OK);
    ASSERT_EQ_INT(qf_alerts_to_metrics(a, m), QF_OK); /* again: families reused */
    ASSERT_NEAR(qf_metrics_get(m, "qforge_alert_active", "alert=\"memory_pressure\""), 1, 0);
    ASSERT_NEAR(qf_metrics_get(m, "qforge_alert_active", "alert=\"response_latency\""), 1, 0);
    ASSERT_NEAR(qf_metrics_get(m, "qforge_alert_active", "alert=\"error_rate\""), 0, 0);
    ASSERT_NEAR(qf_metrics_get(m, "qforge_alert_value", "alert=\"memory_pressure\""), 0.98, 1e-12);
    ASSERT_NEAR(qf_metrics_get(m, "qforge_alert_threshold", "alert=\"response_latency\""), 120, 0);
    ASSERT_NEAR(qf_metrics_get(m, "qforge_alerts_fired_total", "alert=\"memory_pressure\""), 1, 0);
    char *text = qf_metrics_render(m, NULL);
    /* every enabled alert has an active series, even at 0 */
    for (int id = 0; id < QF_ALERT_COUNT; id++) {
        char line[128];
        snprintf(line, sizeof line, "qforge_alert_active{alert=\"%s\"} ", qf_alert_name(id));
        ASSERT_MSG(strstr(text, line), "missing %s", line);
    }
    qf_free(text);
    qf_metrics_free(m);
    ASSERT_EQ_INT(qf_alerts_to_metrics(a, NULL), QF_ERR_INVALID);
    qf_alerts_free(a);
}

static void test_alloc_failures(void) {
    int ok = 0;
    for (long n = 0; n < 100 && !ok; n++) {
        qf_mem_fail_after(n);
        qf_alerts *a = qf_alerts_new(NULL, NULL);
        char *j = NULL;
        if (a) {
            qf_alert_snapshot s = qf_alert_snapshot_blank();
            double cores[2] = {1, 0};
            s.core_util = cores;
            s.n_cores = 2;
            s.t = 1;
            s.mem_pressure = 0.99;
            qf_alerts_feed(a, &s);
            j = qf_alerts_json(a, NULL);
            ok = j != NULL && strstr(j, "memory_pressure") != NULL;
        }
        qf_mem_fail_after(-1);
        qf_free(j);
        qf_alerts_free(a);
    }
    ASSERT(ok);
}

/* ---- the command hook ---- */

static char g_dir[] = "/tmp/qf_alert_XXXXXX";

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static bool wait_file(const char *path, double timeout_s) {
    double end = qf_now_s() + timeout_s;
    while (qf_now_s() < end) {
        if (access(path, F_OK) == 0) return true;
        usleep(10000);
    }
    return false;
}

/* A pid is gone: no such process, or a zombie no one reaped yet. */
static bool pid_gone(long pid) {
    if (kill((pid_t)pid, 0) != 0) return errno == ESRCH;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    char *st = slurp(path);
    if (!st) return true;
    char *rp = strrchr(st, ')');
    bool zombie = rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
    free(st);
    return zombie;
}

static void test_command(void) {
    char out[256], env[256], cmd[2048];
    snprintf(out, sizeof out, "%s/alert.json", g_dir);
    snprintf(env, sizeof env, "%s/alert.env", g_dir);
    /* the script writes its stdin to a file (then the environment) */
    snprintf(cmd, sizeof cmd,
             "cat > '%s.tmp' && mv '%s.tmp' '%s' && echo \"$QFORGE_ALERT $QFORGE_ALERT_STATE\" >> '%s'",
             out, out, out, env);
    qf_alert_config c = qf_alert_config_default();
    c.clear_for_s = 0;
    qf_alerts *a = qf_alerts_new(&c, NULL);
    ASSERT_EQ_INT(qf_alerts_set_command(a, cmd, NULL), QF_OK);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    s.t = 1;
    s.t_unix = 1700000001;
    s.mem_pressure = 0.99;
    qf_alerts_feed(a, &s);
    ASSERT_EQ_INT(qf_alerts_cmd_wait(a, 10), QF_OK);
    ASSERT(wait_file(out, 1));
    char *text = slurp(out);
    ASSERT(text);
    cJSON *o = cJSON_Parse(text);
    ASSERT_MSG(o, "not JSON: %s", text);
    free(text);
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "name")->valuestring, "memory_pressure");
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "state")->valuestring, "firing");
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "severity")->valuestring, "critical");
    ASSERT_NEAR(cJSON_GetObjectItem(o, "value")->valuedouble, 0.99, 1e-9);
    ASSERT_NEAR(cJSON_GetObjectItem(o, "threshold")->valuedouble, 0.95, 1e-9);
    ASSERT_NEAR(cJSON_GetObjectItem(o, "since_unix")->valuedouble, 1700000001, 1e-3);
    ASSERT(strstr(cJSON_GetObjectItem(o, "message")->valuestring, "memory pressure"));
    cJSON_Delete(o);
    unlink(out);
    /* the overload ends: the command runs again with state resolved */
    s.t = 2;
    s.mem_pressure = 0.1;
    qf_alerts_feed(a, &s);
    ASSERT_EQ_INT(qf_alerts_cmd_wait(a, 10), QF_OK);
    ASSERT(wait_file(out, 1));
    text = slurp(out);
    o = cJSON_Parse(text);
    free(text);
    ASSERT(o);
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "state")->valuestring, "resolved");
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "name")->valuestring, "memory_pressure");
    cJSON_Delete(o);
    text = slurp(env);
    ASSERT(text);
    ASSERT_MSG(!strcmp(text, "memory_pressure firing\nmemory_pressure resolved\n"), "%s", text);
    free(text);
    qf_alerts_cmd_stats st;
    qf_alerts_get_cmd_stats(a, &st);
    ASSERT_EQ_INT(st.started, 2);
    ASSERT_EQ_INT(st.failed, 0);
    /* a failing command is counted (and logged) */
    ASSERT_EQ_INT(qf_alerts_set_command(a, "cat >/dev/null; exit 3", NULL), QF_OK);
    s.t = 3;
    s.mem_pressure = 0.99;
    qf_alerts_feed(a, &s);
    ASSERT_EQ_INT(qf_alerts_cmd_wait(a, 10), QF_OK);
    qf_alerts_get_cmd_stats(a, &st);
    ASSERT_EQ_INT(st.started, 3);
    ASSERT_EQ_INT(st.failed, 1);
    /* off again: nothing runs */
    ASSERT_EQ_INT(qf_alerts_set_command(a, NULL, NULL), QF_OK);
    s.t = 4;
    s.mem_pressure = 0.1;
    qf_alerts_feed(a, &s);
    qf_alerts_get_cmd_stats(a, &st);
    ASSERT_EQ_INT(st.started, 3);
    qf_alerts_free(a);
}

static void test_command_timeout(void) {
    char pidf[256], gpidf[256], late[256], cmd[2048];
    snprintf(pidf, sizeof pidf, "%s/pid", g_dir);
    snprintf(gpidf, sizeof gpidf, "%s/gpid", g_dir);
    snprintf(late, sizeof late, "%s/late", g_dir);
    /* never reads stdin, starts a child, hangs */
    snprintf(cmd, sizeof cmd,
             "echo $$ > '%s'; sleep 30 & echo $! > '%s'; sleep 30; touch '%s'", pidf, gpidf, late);
    qf_alert_config c = qf_alert_config_default();
    c.cmd_timeout_s = 0.5;
    c.clear_for_s = 0;
    qf_alerts *a = qf_alerts_new(&c, NULL);
    ASSERT_EQ_INT(qf_alerts_set_command(a, cmd, NULL), QF_OK);
    qf_alert_snapshot s = qf_alert_snapshot_blank();
    double t0 = qf_now_s();
    /* fire and clear 30 times: 60 runs asked, the feeder never waits */
    for (int k = 0; k < 60; k++) {
        s.t = k;
        s.mem_pressure = k % 2 ? 0.1 : 0.99;
        qf_alerts_feed(a, &s);
    }
    double dt = qf_now_s() - t0;
    ASSERT_MSG(dt < 0.25, "feeding took %.3f s", dt);
    ASSERT(wait_file(pidf, 5));
    ASSERT(wait_file(gpidf, 5));
    usleep(50000);
    char *p = slurp(pidf), *g = slurp(gpidf);
    ASSERT(p && g);
    long pid = atol(p), gpid = atol(g);
    free(p);
    free(g);
    ASSERT(pid > 0 && gpid > 0);
    ASSERT_EQ_INT(qf_alerts_cmd_wait(a, 0.05), QF_ERR_TIMEOUT); /* still running */
    /* the first run is killed after 0.5 s, with its child */
    double end = qf_now_s() + 5;
    while (!(pid_gone(pid) && pid_gone(gpid)) && qf_now_s() < end)
        usleep(20000);
    ASSERT(pid_gone(pid));
    ASSERT(pid_gone(gpid));
    qf_alerts_cmd_stats st;
    qf_alerts_get_cmd_stats(a, &st);
    ASSERT(st.started >= 1);
    ASSERT(st.dropped >= 60 - 16 - 1); /* the queue holds 16 */
    t0 = qf_now_s();
    qf_alerts_free(a); /* waits for the running one (<= 0.5 s), drops the rest */
    dt = qf_now_s() - t0;
    ASSERT_MSG(dt < 2, "free took %.3f s", dt);
    ASSERT(access(late, F_OK) != 0);
}

int main(void) {
    qf_log_set_level(QF_LOG_ERROR); /* the alerts log warnings by design */
    if (!mkdtemp(g_dir)) return 1;
    RUN_TEST(test_defaults);
    RUN_TEST(test_config_set);
    RUN_TEST(test_memory_pressure);
    RUN_TEST(test_latency);
    RUN_TEST(test_cache_hit_rate);
    RUN_TEST(test_error_rate);
    RUN_TEST(test_core_imbalance);
    RUN_TEST(test_kv_pool_full);
    RUN_TEST(test_for_and_disabled);
    RUN_TEST(test_counter_reset);
    RUN_TEST(test_json_and_metrics);
    RUN_TEST(test_alloc_failures);
    RUN_TEST(test_command);
    RUN_TEST(test_command_timeout);
    char rm[512];
    snprintf(rm, sizeof rm, "rm -rf '%s'", g_dir);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    TEST_MAIN_END();
}
