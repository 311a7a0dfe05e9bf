/* test_top.c - the data side of `qforge top` (monitor/top.h): Prometheus
 * text parsing on a fixed exposition, quantiles checked against values
 * worked out by hand, malformed and truncated bodies, /alerts replies, the
 * registry's JSON form, rates, the --once JSON, and the gen job database:
 * read-only, never in the writer's way, and the store's snapshot table. */
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "monitor/metrics.h"
#include "monitor/top.h"
#include "pipeline/report.h"
#include "pipeline/store.h"
#include "qf_test.h"

#include <cjson/cJSON.h>

/* A /metrics body as a qforge serve with the system sampler writes it.
 * generation_seconds: cumulative 2, 6, 9, 10 at le 0.1, 0.5, 1, +Inf.
 * ttft: two series (a: 1 1 3 4, b: 3 3 4 4) that sum to 4 4 7 8 at le
 * 0.01, 0.1, 1, +Inf. */
static const char *k_text =
    "# HELP qforge_http_requests_total HTTP requests by endpoint and status\n"
    "# TYPE qforge_http_requests_total counter\n"
    "qforge_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 3\n"
    "qforge_http_requests_total{endpoint=\"/api/chat\",status=\"200\"} 2\n"
    "qforge_http_requests_total{endpoint=\"/metrics\",status=\"200\"} 7\n"
    "qforge_http_requests_total{endpoint=\"other\",status=\"404\"} 1\n"
    "# TYPE qforge_requests_cancelled_total counter\n"
    "# TYPE qforge_queue_depth gauge\n"
    "qforge_queue_depth 4\n"
    "# TYPE qforge_running_sequences gauge\n"
    "qforge_running_sequences 2 1700000000000\n"
    "qforge_kv_usage_ratio 0.25\n"
    "qforge_kv_blocks_used 256\n"
    "qforge_kv_blocks_total 1024\n"
    "qforge_prefix_cache_hit_ratio 0.75\n"
    "qforge_tokens_per_second 123.5\n"
    "qforge_process_rss_bytes 1.5e9\n"
    "qforge_process_resident_memory_bytes 999\n"
    "qforge_memory_pressure_ratio 0.031\n"
    "qforge_cpu_core_utilization{core=\"0\"} 0.5\n"
    "qforge_cpu_core_utilization{core=\"2\"} 1\n"
    "qforge_models_loaded 1\n"
    "\n"
    "   qforge_uptime_seconds\t61\r\n"
    "# TYPE qforge_generation_seconds histogram\n"
    "qforge_generation_seconds_bucket{le=\"0.1\"} 2\n"
    "qforge_generation_seconds_bucket{le=\"0.5\"} 6\n"
    "qforge_generation_seconds_bucket{le=\"1\"} 9\n"
    "qforge_generation_seconds_bucket{le=\"+Inf\"} 10\n"
    "qforge_generation_seconds_sum 5.5\n"
    "qforge_generation_seconds_count 10\n"
    "# TYPE qforge_time_to_first_token_seconds histogram\n"
    "qforge_time_to_first_token_seconds_bucket{model=\"a\",le=\"0.01\"} 1\n"
    "qforge_time_to_first_token_seconds_bucket{model=\"a\",le=\"0.1\"} 1\n"
    "qforge_time_to_first_token_seconds_bucket{model=\"a\",le=\"1\"} 3\n"
    "qforge_time_to_first_token_seconds_bucket{model=\"a\",le=\"+Inf\"} 4\n"
    "qforge_time_to_first_token_seconds_sum{model=\"a\"} 3\n"
    "qforge_time_to_first_token_seconds_count{model=\"a\"} 4\n"
    "qforge_time_to_first_token_seconds_bucket{le=\"0.01\",model=\"b\"} 3\n"
    "qforge_time_to_first_token_seconds_bucket{model=\"b\",le=\"0.1\"} 3\n"
    "qforge_time_to_first_token_seconds_bucket{model=\"b\",le=\"1\",} 4\n"
    "qforge_time_to_first_token_seconds_bucket{model=\"b\",le=\"+Inf\"} 4\n"
    "qforge_time_to_first_token_seconds_sum{model=\"b\"} 0.9\n"
    "qforge_time_to_first_token_seconds_count{model=\"b\"} 4\n"
    "qforge_weird{path=\"a\\\"b\\\\c\\nd\"} -Inf\n"
    "qforge_nan{} NaN\n";

static void test_parse_fixed(void) {
    qf_err err = {0};
    qf_prom *p = qf_prom_parse_text(k_text, strlen(k_text), &err);
    ASSERT_MSG(p, "%s", err.msg);
    double v = -1;
    ASSERT(qf_prom_sum(p, "qforge_http_requests_total", NULL, NULL, &v));
    ASSERT_NEAR(v, 13, 0);
    ASSERT(qf_prom_sum(p, "qforge_http_requests_total", "endpoint", "/metrics", &v));
    ASSERT_NEAR(v, 7, 0);
    ASSERT(!qf_prom_sum(p, "qforge_http_requests_total", "endpoint", "/nope", &v));
    ASSERT(!qf_prom_sum(p, "qforge_absent", NULL, NULL, &v));
    ASSERT(qf_prom_sum(p, "qforge_running_sequences", NULL, NULL, &v)); /* with a timestamp */
    ASSERT_NEAR(v, 2, 0);
    ASSERT(qf_prom_sum(p, "qforge_process_rss_bytes", NULL, NULL, &v));
    ASSERT_NEAR(v, 1.5e9, 0);
    ASSERT(qf_prom_sum(p, "qforge_uptime_seconds", NULL, NULL, &v)); /* indented, tab, CRLF */
    ASSERT_NEAR(v, 61, 0);
    ASSERT(qf_prom_sum(p, "qforge_weird", NULL, NULL, &v));
    ASSERT(isinf(v) && v < 0);
    ASSERT(qf_prom_sum(p, "qforge_nan", NULL, NULL, &v));
    ASSERT(isnan(v));
    ASSERT_STR_EQ(qf_prom_type(p, "qforge_generation_seconds"), "histogram");
    ASSERT_STR_EQ(qf_prom_type(p, "qforge_requests_cancelled_total"), "counter");
    ASSERT(qf_prom_type(p, "qforge_kv_usage_ratio") == NULL);
    /* the escaped label value comes back unescaped */
    const qf_prom_sample *w = NULL;
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->v[i].name, "qforge_weird")) w = &p->v[i];
    ASSERT(w);
    ASSERT_STR_EQ(qf_prom_label_get(w, "path"), "a\"b\\c\nd");
    ASSERT(qf_prom_label_get(w, "nope") == NULL);

    /* quantiles, by hand (see k_text): generation 2,6,9,10 at 0.1,0.5,1,+Inf */
    double n = -1;
    ASSERT_NEAR(qf_prom_quantile(p, "qforge_generation_seconds", 0.5, &n), 0.4,
                1e-12); /* 0.1 + 0.4 * 3/4 */
    ASSERT_NEAR(n, 10, 0);
    ASSERT_NEAR(qf_prom_quantile(p, "qforge_generation_seconds", 0.1, NULL), 0.05,
                1e-12); /* 0 + 0.1 * 1/2 */
    ASSERT_NEAR(qf_prom_quantile(p, "qforge_generation_seconds", 0.25, NULL), 0.15,
                1e-12); /* 0.1 + 0.4 * 0.5/4 */
    ASSERT_NEAR(qf_prom_quantile(p, "qforge_generation_seconds", 0.9, NULL), 1.0,
                1e-12); /* 0.5 + 0.5 * 3/3 */
    ASSERT_NEAR(qf_prom_quantile(p, "qforge_generation_seconds", 0.99, NULL), 1.0,
                1e-12); /* +Inf bucket */
    ASSERT_NEAR(qf_prom_quantile(p, "qforge_generation_seconds", 0.0, NULL), 0.0, 1e-12);
    ASSERT(isnan(qf_prom_quantile(p, "qforge_generation_seconds", 1.5, NULL)));
    ASSERT(isnan(qf_prom_quantile(p, "qforge_generation_seconds", -0.1, NULL)));
    /* ttft, summed by le over both series: 4,4,7,8 at 0.01,0.1,1,+Inf */
    ASSERT_NEAR(qf_prom_quantile(p, "qforge_time_to_first_token_seconds", 0.5, &n), 0.01, 1e-12);
    ASSERT_NEAR(n, 8, 0);
    ASSERT_NEAR(qf_prom_quantile(p, "qforge_time_to_first_token_seconds", 0.75, NULL), 0.7,
                1e-12); /* .1+.9*2/3 */
    ASSERT_NEAR(qf_prom_quantile(p, "qforge_time_to_first_token_seconds", 0.9, NULL), 1.0, 1e-12);
    ASSERT(isnan(qf_prom_quantile(p, "qforge_absent_seconds", 0.5, &n)));
    ASSERT_NEAR(n, 0, 0);
    qf_prom_free(p);
}

static void test_quantile_edges(void) {
    qf_err err = {0};
    /* no observations: NaN, count 0 */
    const char *empty = "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_count 0\n";
    qf_prom *p = qf_prom_parse_text(empty, strlen(empty), &err);
    ASSERT_MSG(p, "%s", err.msg);
    double n = -1;
    ASSERT(isnan(qf_prom_quantile(p, "h", 0.5, &n)));
    ASSERT_NEAR(n, 0, 0);
    qf_prom_free(p);
    /* no +Inf bucket (no # TYPE, so the parser lets it through): NaN */
    const char *noinf = "h_bucket{le=\"1\"} 3\nh_bucket{le=\"2\"} 4\n";
    p = qf_prom_parse_text(noinf, strlen(noinf), &err);
    ASSERT(p);
    ASSERT(isnan(qf_prom_quantile(p, "h", 0.5, NULL)));
    qf_prom_free(p);
    /* a non-positive first bound answers that bound; out-of-order lines are sorted */
    const char *neg = "h_bucket{le=\"+Inf\"} 4\nh_bucket{le=\"10\"} 4\nh_bucket{le=\"-1\"} 2\n";
    p = qf_prom_parse_text(neg, strlen(neg), &err);
    ASSERT(p);
    ASSERT_NEAR(qf_prom_quantile(p, "h", 0.25, NULL), -1, 1e-12);
    ASSERT_NEAR(qf_prom_quantile(p, "h", 0.75, NULL), 4.5, 1e-12); /* -1 + 11 * (3-2)/2 */
    qf_prom_free(p);
}

static void test_malformed(void) {
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"ok 1\nqforge_x\n", "line 2"},
        {"qforge_x 12abc\n", "bad value"},
        {"qforge_x 0x10\n", "bad value"},
        {"qforge_x{a=\"b} 1\n", "unterminated"},
        {"qforge_x{a=b} 1\n", "quoted"},
        {"qforge_x{a=\"\\q\"} 1\n", "bad escape"},
        {"9abc 1\n", "metric name"},
        {"qforge_x 1 123 extra\n", "after the timestamp"},
        {"qforge_x 1 abc\n", "after the value"},
        {"qforge_x{a=\"1\" b=\"2\"} 1\n", "expected ','"},
        {"qforge_x{=\"1\"} 1\n", "label name"},
        {"# TYPE 9bad counter\n", "TYPE"},
        {"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
         "disagree"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qf_err err = {0};
        qf_prom *p = qf_prom_parse_text(bad[i].text, strlen(bad[i].text), &err);
        ASSERT_MSG(!p, "case %zu parsed: %s", i, bad[i].text);
        ASSERT_EQ_INT(err.code, QF_ERR_FORMAT);
        ASSERT_MSG(strstr(err.msg, bad[i].want), "case %zu: '%s' lacks '%s'", i, err.msg,
                   bad[i].want);
    }
    /* forms that are fine */
    const char *good = "x{} 1\ny{a=\"1\",} 2\nz 3 -5\n# a comment\n#\n# TYPE\n";
    qf_err err = {0};
    qf_prom *p = qf_prom_parse_text(good, strlen(good), &err);
    ASSERT_MSG(p, "%s", err.msg);
    ASSERT_EQ_INT(p->n, 3);
    qf_prom_free(p);
    p = qf_prom_parse_text("", 0, &err);
    ASSERT(p && p->n == 0);
    qf_prom_free(p);
}

/* Cut the fixed body at every byte: a cut inside a line, or after a
 * histogram's _bucket or _sum line, must fail; the other cuts parse. */
static void test_truncated(void) {
    size_t len = strlen(k_text);
    int failed = 0, parsed = 0;
    for (size_t cut = 1; cut < len; cut++) {
        qf_err err = {0};
        qf_prom *p = qf_prom_parse_text(k_text, cut, &err);
        bool at_eol = k_text[cut - 1] == '\n';
        size_t b0 = cut - 1; /* start of the last complete line */
        while (at_eol && b0 > 0 && k_text[b0 - 1] != '\n')
            b0--;
        const char *last = k_text + b0;
        bool in_hist = false;
        const char *hist_lines[] = {
            "qforge_generation_seconds_bucket", "qforge_generation_seconds_sum",
            "qforge_time_to_first_token_seconds_bucket", "qforge_time_to_first_token_seconds_sum"};
        for (int k = 0; k < 4 && at_eol; k++)
            in_hist |= !strncmp(last, hist_lines[k], strlen(hist_lines[k]));
        if (!at_eol) {
            ASSERT_MSG(!p, "cut at %zu inside a line parsed", cut);
            ASSERT_MSG(strstr(err.msg, "truncated"), "cut at %zu: %s", cut, err.msg);
            failed++;
        } else if (in_hist) {
            ASSERT_MSG(!p, "cut at %zu inside a histogram block parsed (last line %.60s)", cut,
                       last);
            ASSERT_MSG(strstr(err.msg, "histogram") && strstr(err.msg, "truncated"),
                       "cut at %zu: %s", cut, err.msg);
            failed++;
        } else {
            ASSERT_MSG(p, "cut at %zu (a whole line) failed: %s", cut, err.msg);
            parsed++;
        }
        qf_prom_free(p);
    }
    ASSERT(failed > 1000 && parsed > 10);
}

static void test_alerts(void) {
    qf_top_snap *s = qf_calloc(1, sizeof *s);
    ASSERT(s);
    qf_top_snap_init(s, QF_TOP_SERVE, "http://x");
    const char *js =
        "{\"alerts\":[{\"name\":\"memory_pressure\",\"severity\":\"critical\",\"message\":\"memory "
        "pressure 97%\",\"value\":0.97,\"threshold\":0.95,\"since_unix\":1700000000},"
        "{\"name\":\"cache_hit_rate\",\"severity\":\"warning\",\"message\":\"hit rate low\"}]}";
    qf_err err = {0};
    ASSERT_EQ_INT(qf_top_parse_alerts(s, js, strlen(js), &err), QF_OK);
    ASSERT_EQ_INT(s->alerts_state, 1);
    ASSERT_EQ_INT(s->n_alerts, 2);
    ASSERT_STR_EQ(s->alerts[0].name, "memory_pressure");
    ASSERT_STR_EQ(s->alerts[0].severity, "critical");
    ASSERT_STR_EQ(s->alerts[0].message, "memory pressure 97%");
    ASSERT_NEAR(s->alerts[0].value, 0.97, 1e-12);
    ASSERT_NEAR(s->alerts[0].threshold, 0.95, 1e-12);
    ASSERT_EQ_INT(s->alerts[0].since_unix, 1700000000);
    ASSERT(isnan(s->alerts[1].value) && s->alerts[1].since_unix == 0);
    ASSERT_EQ_INT(qf_top_parse_alerts(s, "{\"alerts\":[]}", 13, &err), QF_OK);
    ASSERT_EQ_INT(s->n_alerts, 0);
    /* not JSON, not the shape, a bad item: clear errors */
    static const struct {
        const char *body, *want;
    } bad[] = {
        {"<html>404</html>", "not JSON"},
        {"{\"alerts\":[{\"name\":\"x\"", "not JSON"},
        {"", "empty"},
        {"{\"alarms\":[]}", "no \"alerts\" array"},
        {"[1,2]", "no \"alerts\" array"},
        {"{\"alerts\":[{\"name\":\"a\"},7]}", "alerts[1] is not an object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qf_err e = {0};
        ASSERT_EQ_INT(qf_top_parse_alerts(s, bad[i].body, strlen(bad[i].body), &e), QF_ERR_FORMAT);
        ASSERT_MSG(strstr(e.msg, bad[i].want), "case %zu: %s", i, e.msg);
        ASSERT_EQ_INT(s->alerts_state, -1);
        ASSERT(strstr(s->alerts_error, bad[i].want));
        ASSERT_EQ_INT(s->n_alerts, 0);
    }
    qf_free(s);
}

static void test_fill_serve(void) {
    qf_top_snap *s = qf_calloc(2, sizeof *s);
    ASSERT(s);
    qf_top_snap_init(s, QF_TOP_SERVE, "http://h:1");
    qf_err err = {0};
    const char *al =
        "{\"alerts\":[{\"name\":\"error_rate\",\"severity\":\"warning\",\"message\":\"m\"}]}";
    ASSERT_EQ_INT(qf_top_fill_serve(s, k_text, strlen(k_text), 200, al, strlen(al), &err), QF_OK);
    ASSERT(s->up);
    ASSERT_NEAR(s->requests_total, 5, 0); /* /v1 and /api only, not /metrics or 404s */
    ASSERT_NEAR(s->queue_depth, 4, 0);
    ASSERT_NEAR(s->running, 2, 0);
    ASSERT_NEAR(s->kv_usage, 0.25, 0);
    ASSERT_NEAR(s->kv_blocks_used, 256, 0);
    ASSERT_NEAR(s->kv_blocks_total, 1024, 0);
    ASSERT_NEAR(s->prefix_hit_ratio, 0.75, 0);
    ASSERT_NEAR(s->tokens_per_s, 123.5, 0);
    ASSERT_NEAR(s->rss_bytes, 1.5e9, 0); /* the sampler's name wins over the older one */
    ASSERT_NEAR(s->mem_pressure, 0.031, 1e-12);
    ASSERT_NEAR(s->uptime_s, 61, 0);
    ASSERT_NEAR(s->models_loaded, 1, 0);
    ASSERT_NEAR(s->cancelled_total, 0, 0);    /* a declared counter without series is 0 */
    ASSERT(isnan(s->generated_tokens_total)); /* absent */
    ASSERT_EQ_INT(s->n_cores, 3);
    ASSERT_NEAR(s->core_util[0], 0.5, 0);
    ASSERT(isnan(s->core_util[1]));
    ASSERT_NEAR(s->core_util[2], 1, 0);
    ASSERT_NEAR(s->lat_p[0], 0.4, 1e-12);
    ASSERT_NEAR(s->lat_p[1], 1.0, 1e-12);
    ASSERT_NEAR(s->lat_p[2], 1.0, 1e-12);
    ASSERT_NEAR(s->lat_count, 10, 0);
    ASSERT_NEAR(s->ttft_p[0], 0.01, 1e-12);
    ASSERT_NEAR(s->ttft_count, 8, 0);
    ASSERT_EQ_INT(s->alerts_state, 1);
    ASSERT_EQ_INT(s->n_alerts, 1);
    ASSERT_STR_EQ(s->alerts[0].name, "error_rate");

    /* 404 on /alerts: no endpoint, not an error; a non-JSON body: alerts
     * greyed out, the snapshot itself fine */
    qf_top_snap_init(s, QF_TOP_SERVE, "http://h:1");
    ASSERT_EQ_INT(qf_top_fill_serve(s, k_text, strlen(k_text), 404, "not found", 9, &err), QF_OK);
    ASSERT(s->up && s->alerts_state == 0);
    qf_top_snap_init(s, QF_TOP_SERVE, "http://h:1");
    ASSERT_EQ_INT(qf_top_fill_serve(s, k_text, strlen(k_text), 200, "<html>", 6, &err), QF_OK);
    ASSERT(s->up && s->alerts_state == -1 && strstr(s->alerts_error, "not JSON"));
    qf_top_snap_init(s, QF_TOP_SERVE, "http://h:1");
    ASSERT_EQ_INT(qf_top_fill_serve(s, k_text, strlen(k_text), 500, "", 0, &err), QF_OK);
    ASSERT(s->alerts_state == -1 && strstr(s->alerts_error, "HTTP 500"));

    /* a bad /metrics body fails the snapshot with the URL in the message */
    qf_top_snap_init(s, QF_TOP_SERVE, "http://h:1");
    ASSERT_EQ_INT(qf_top_fill_serve(s, k_text, 100, 404, NULL, 0, &err), QF_ERR_FORMAT);
    ASSERT(!s->up && strstr(s->error, "http://h:1/metrics") && strstr(s->error, "truncated"));
    qf_top_snap_init(s, QF_TOP_SERVE, "http://h:1");
    ASSERT_EQ_INT(qf_top_fill_serve(s, "", 0, 404, NULL, 0, &err), QF_ERR_FORMAT);
    ASSERT(!s->up && strstr(s->error, "empty"));

    /* rates: 5 -> 25 requests over 4 s = 5/s; a restarted server (counter down): none */
    qf_top_snap *a = &s[0], *b = &s[1];
    qf_top_snap_init(a, QF_TOP_SERVE, "u");
    qf_top_snap_init(b, QF_TOP_SERVE, "u");
    a->up = b->up = true;
    a->requests_total = 5;
    b->requests_total = 25;
    b->t_mono = a->t_mono + 4;
    qf_top_rates(b, a);
    ASSERT_NEAR(b->requests_per_s, 5, 1e-9);
    b->requests_total = 2;
    qf_top_rates(b, a);
    ASSERT(isnan(b->requests_per_s));
    qf_top_rates(b, NULL);
    ASSERT(isnan(b->requests_per_s));
    qf_free(s);
}

static void test_snap_json(void) {
    qf_top_snap *s = qf_calloc(1, sizeof *s);
    ASSERT(s);
    qf_top_snap_init(s, QF_TOP_SERVE, "http://h:1");
    qf_err err = {0};
    ASSERT_EQ_INT(qf_top_fill_serve(s, k_text, strlen(k_text), 404, NULL, 0, &err), QF_OK);
    char *js = qf_top_snap_json(s);
    ASSERT(js);
    cJSON *j = cJSON_Parse(js);
    qf_free(js);
    ASSERT(j);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "source")->valuestring, "serve");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "up")) &&
           cJSON_IsNull(cJSON_GetObjectItem(j, "error")));
    ASSERT_NEAR(cJSON_GetObjectItem(j, "requests_total")->valuedouble, 5, 0);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(j, "generated_tokens_total")));
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(j, "requests_per_s")));
    cJSON *lat = cJSON_GetObjectItem(j, "latency_s");
    ASSERT_NEAR(cJSON_GetObjectItem(lat, "p50")->valuedouble, 0.4, 1e-12);
    ASSERT_NEAR(cJSON_GetObjectItem(lat, "count")->valuedouble, 10, 0);
    cJSON *cores = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "cpu"), "cores");
    ASSERT_EQ_INT(cJSON_GetArraySize(cores), 3);
    ASSERT(cJSON_IsNull(cJSON_GetArrayItem(cores, 1)));
    ASSERT_NEAR(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "cpu"), "mean")->valuedouble, 0.75,
                1e-12);
    ASSERT_NEAR(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "memory"), "pressure_ratio")->valuedouble, 0.031,
        1e-12);
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(j, "alerts_endpoint")));
    ASSERT(cJSON_IsArray(cJSON_GetObjectItem(j, "alerts")));
    cJSON_Delete(j);
    qf_free(s);
}

/* The registry's JSON form yields the same samples and quantiles as its
 * text form, both matching the registry's own quantile. */
static void test_registry_json(void) {
    qf_metrics *m = qf_metrics_new(NULL);
    ASSERT(m);
    const double b[] = {0.1, 0.5, 1};
    ASSERT_EQ_INT(qf_metrics_declare(m, "t_seconds", QF_METRIC_HISTOGRAM, "h", b, 3), QF_OK);
    ASSERT_EQ_INT(qf_metrics_declare(m, "t_total", QF_METRIC_COUNTER, "c", NULL, 0), QF_OK);
    /* 2 in (0, 0.1], 4 in (0.1, 0.5], 3 in (0.5, 1], 1 above: as k_text's generation histogram */
    const double obs[] = {0.05, 0.07, 0.2, 0.3, 0.4, 0.45, 0.6, 0.7, 0.9, 5};
    for (int i = 0; i < 10; i++)
        ASSERT_EQ_INT(qf_metrics_observe(m, "t_seconds", NULL, obs[i]), QF_OK);
    char lb[64];
    qf_metrics_add(m, "t_total",
                   qf_metrics_labels(lb, sizeof lb, "reason", "a \"q\"", (const char *)NULL), 3);
    qf_metrics_add(m, "t_total",
                   qf_metrics_labels(lb, sizeof lb, "reason", "b", (const char *)NULL), 4);
    size_t tl = 0, jl = 0;
    char *text = qf_metrics_render(m, &tl);
    char *json = qf_metrics_render_json(m, &jl);
    ASSERT(text && json);
    qf_err err = {0};
    qf_prom *pt = qf_prom_parse_text(text, tl, &err);
    ASSERT_MSG(pt, "%s", err.msg);
    qf_prom *pj = qf_prom_parse_json(json, jl, &err);
    ASSERT_MSG(pj, "%s", err.msg);
    ASSERT_EQ_INT(pt->n, pj->n);
    for (int i = 0; i < 3; i++) {
        double q = (double[]){0.5, 0.9, 0.99}[i], want = (double[]){0.4, 1.0, 1.0}[i];
        ASSERT_NEAR(qf_prom_quantile(pt, "t_seconds", q, NULL), want, 1e-9);
        ASSERT_NEAR(qf_prom_quantile(pj, "t_seconds", q, NULL), want, 1e-9);
        ASSERT_NEAR(qf_metrics_quantile(m, "t_seconds", NULL, q), want, 1e-9);
    }
    double v = 0;
    ASSERT(qf_prom_sum(pj, "t_total", "reason", "a \"q\"", &v));
    ASSERT_NEAR(v, 3, 0);
    ASSERT(qf_prom_sum(pt, "t_total", "reason", "a \"q\"", &v));
    ASSERT_NEAR(v, 3, 0);
    ASSERT(qf_prom_sum(pj, "t_seconds_count", NULL, NULL, &v));
    ASSERT_NEAR(v, 10, 0);
    ASSERT_STR_EQ(qf_prom_type(pj, "t_seconds"), "histogram");
    qf_prom_free(pt);
    qf_prom_free(pj);
    qf_free(text);
    qf_free(json);
    qf_metrics_free(m);
    /* not that shape */
    const char *bad[] = {"nope", "{}", "{\"metrics\":[{\"name\":\"x\"}]}",
                         "{\"metrics\":[{\"name\":\"x\",\"type\":\"gauge\",\"series\":[{\"labels\":"
                         "{},\"value\":\"1\"}]}]}",
                         "{\"metrics\":[{\"name\":\"h\",\"type\":\"histogram\",\"series\":[{"
                         "\"labels\":{},\"count\":1,"
                         "\"sum\":1}]}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qf_err e = {0};
        qf_prom *p = qf_prom_parse_json(bad[i], strlen(bad[i]), &e);
        ASSERT_MSG(!p && e.code == QF_ERR_FORMAT, "case %zu", i);
        ASSERT(strstr(e.msg, "metrics JSON"));
    }
}

/* Every allocation failure while parsing ends in QF_ERR_NOMEM, with
 * nothing leaked (ASan) and nothing half-returned. */
static void test_faults(void) {
    qf_metrics *m = qf_metrics_new(NULL);
    ASSERT(m);
    const double bk[] = {0.1, 1};
    qf_metrics_declare(m, "h_seconds", QF_METRIC_HISTOGRAM, "h", bk, 2);
    qf_metrics_observe(m, "h_seconds", "a=\"1\"", 0.5);
    size_t jl = 0;
    char *json = qf_metrics_render_json(m, &jl);
    qf_metrics_free(m);
    ASSERT(json);
    for (int which = 0; which < 2; which++) {
        bool done = false;
        for (long n = 0; n < 10000 && !done; n++) {
            qf_err err = {0};
            qf_mem_fail_after(n);
            qf_prom *p = which == 0 ? qf_prom_parse_text(k_text, strlen(k_text), &err)
                                    : qf_prom_parse_json(json, jl, &err);
            qf_mem_fail_after(-1);
            if (p) {
                done = true;
                ASSERT(p->n > 0);
                qf_prom_free(p);
            } else {
                ASSERT_MSG(err.code == QF_ERR_NOMEM, "n=%ld: %s", n, err.msg);
            }
        }
        ASSERT(done);
    }
    qf_free(json);
}

/* ---- the job database ---- */

static char g_dir[512];

static qf_store *make_job(const char *path, const char *state, double chunks_done_metric) {
    unlink(path);
    qf_err err = {0};
    qf_store *st = qf_store_open(path, &err);
    if (!st) return NULL;
    int64_t d1, d2, d3;
    qf_store_doc_put(st, "a.txt", 1, 1, QF_DOC_DONE, 2, NULL, &d1, &err);
    qf_store_doc_put(st, "b.txt", 1, 1, QF_DOC_SKIPPED, 0, NULL, &d2, &err);
    qf_store_doc_put(st, "c.txt", 1, 1, QF_DOC_PENDING, -1, NULL, &d3, &err);
    qf_store_chunk_done(st, d1, 0, 0, 10, 1, &err);
    qf_store_chunk_done(st, d1, 1, 10, 20, 1, &err);
    qf_store_chunk_done(st, d3, 0, 0, 10, 0, &err);
    qf_pair p = {
        .doc_id = d1, .path = "a.txt", .question = "q?", .answer = "a", .model = "m", .score = -1};
    const char *ids[] = {"01", "02", "03", "04"};
    qf_pair_status sts[] = {QF_PAIR_ACCEPTED, QF_PAIR_ACCEPTED, QF_PAIR_REJECTED,
                            QF_PAIR_DUPLICATE};
    for (int i = 0; i < 4; i++) {
        snprintf(p.id, sizeof p.id, "%s", ids[i]);
        p.status = sts[i];
        qf_store_pair_add(st, &p, &err);
    }
    qf_failure f = {d3, "c.txt", 0, 0, "malformed", "x"};
    qf_store_failure_add(st, &f, &err);
    qf_store_failure_add(st, &f, &err);
    f.reason = "timeout";
    qf_store_failure_add(st, &f, &err);
    /* a snapshot as gen writes it */
    qf_metrics *m = qf_metrics_new(NULL);
    qf_report_metrics_declare(m, NULL);
    qf_gen_report r;
    qf_report_init(&r);
    r.docs_total = 3;
    r.chunks_total = 7;
    r.chunks_total_known = true;
    r.chunks_done = (int64_t)chunks_done_metric;
    r.tokens_in = 1000;
    r.tokens_out = 250;
    r.requests = 5;
    r.cache_lookups = 8;
    r.cache_hits = 2;
    r.wall_s = 12.5;
    qf_gen_live live = {2, 42.0, 30.0};
    qf_report_metrics_update(m, &r, &live);
    char *js = qf_metrics_render_json(m, NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    qf_store_snapshot_put(st, (double)ts.tv_sec - 3, state, js, &err);
    qf_free(js);
    qf_metrics_free(m);
    qf_report_deinit(&r);
    return st;
}

static void test_read_db(void) {
    char path[700];
    snprintf(path, sizeof path, "%s/job.db", g_dir);
    qf_store *st = make_job(path, "running", 3);
    ASSERT(st);
    qf_store_close(st);
    struct stat before, after;
    ASSERT(stat(path, &before) == 0);
    qf_top_snap *s = qf_calloc(1, sizeof *s);
    ASSERT(s);
    qf_err err = {0};
    ASSERT_MSG(qf_top_read_db(s, path, &err) == QF_OK, "%s", err.msg);
    ASSERT(s->up);
    ASSERT_STR_EQ(s->state, "running");
    ASSERT(s->snapshot_age_s >= 2.5 && s->snapshot_age_s < 60);
    ASSERT_NEAR(s->docs_total, 3, 0);
    ASSERT_NEAR(s->docs_done, 2, 0); /* done + skipped */
    ASSERT_NEAR(s->docs_skipped, 1, 0);
    ASSERT_NEAR(s->chunks_done, 3, 0); /* from the chunks table */
    ASSERT_NEAR(s->chunks_total, 7, 0);
    ASSERT(s->chunks_total_final);
    ASSERT_NEAR(s->chunks_in_flight, 2, 0);
    ASSERT_NEAR(s->chunks_pending, 2, 0); /* 7 - 3 - 2 */
    ASSERT_NEAR(s->pairs_accepted, 2, 0);
    ASSERT_NEAR(s->pairs_rejected, 1, 0);
    ASSERT_NEAR(s->pairs_duplicate, 1, 0);
    ASSERT_NEAR(s->failures_total, 3, 0);
    ASSERT_EQ_INT(s->n_failures, 2);
    ASSERT_STR_EQ(s->failures[0].reason, "malformed");
    ASSERT_NEAR(s->failures[0].n, 2, 0);
    ASSERT_NEAR(s->tokens_in, 1000, 0);
    ASSERT_NEAR(s->tokens_out, 250, 0);
    ASSERT_NEAR(s->gen_requests, 5, 0);
    ASSERT_NEAR(s->cache_hits, 2, 0);
    ASSERT_NEAR(s->cache_misses, 6, 0);
    ASSERT_NEAR(s->cache_hit_ratio, 0.25, 1e-12);
    ASSERT_NEAR(s->tokens_per_s, 42, 0);
    ASSERT_NEAR(s->eta_s, 30, 0);
    ASSERT_NEAR(s->elapsed_s, 12.5, 0);
    /* read-only: the file is untouched, no journal appears */
    ASSERT(stat(path, &after) == 0);
    ASSERT(before.st_size == after.st_size && before.st_mtim.tv_sec == after.st_mtim.tv_sec &&
           before.st_mtim.tv_nsec == after.st_mtim.tv_nsec);
    char *js = qf_top_snap_json(s);
    cJSON *j = cJSON_Parse(js);
    qf_free(js);
    ASSERT(j);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "source")->valuestring, "gen");
    ASSERT_NEAR(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "chunks"), "pending")->valuedouble, 2,
                0);
    ASSERT_NEAR(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "failures"), "timeout")->valuedouble, 1,
                0);
    cJSON_Delete(j);

    /* errors: missing file, not a database, a database of something else */
    char p2[760];
    snprintf(p2, sizeof p2, "%s/missing.db", g_dir);
    ASSERT_EQ_INT(qf_top_read_db(s, p2, &err), QF_ERR_IO);
    ASSERT(!s->up && strstr(s->error, "no such job database") && strstr(s->error, "missing.db"));
    snprintf(p2, sizeof p2, "%s/text.db", g_dir);
    FILE *f = fopen(p2, "w");
    fputs("this is not sqlite, just enough text to fill a page header.......................\n", f);
    fclose(f);
    ASSERT(qf_top_read_db(s, p2, &err) != QF_OK);
    ASSERT_MSG(strstr(s->error, "not a database"), "%s", s->error);
    snprintf(p2, sizeof p2, "%s/other.db", g_dir);
    unlink(p2);
    sqlite3 *db;
    ASSERT(sqlite3_open(p2, &db) == SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", NULL, NULL, NULL);
    sqlite3_close(db);
    ASSERT_EQ_INT(qf_top_read_db(s, p2, &err), QF_ERR_FORMAT);
    ASSERT(strstr(s->error, "not a qforge job database"));
    /* a snapshot that does not parse */
    st = qf_store_open(path, &err);
    ASSERT(st);
    ASSERT_EQ_INT(qf_store_snapshot_put(st, 1.0, "running", "{\"metrics\":7}", &err), QF_OK);
    qf_store_close(st);
    ASSERT_EQ_INT(qf_top_read_db(s, path, &err), QF_ERR_FORMAT);
    ASSERT(strstr(s->error, "metrics snapshot"));
    qf_free(s);
}

/* The store keeps a bounded history; a reset job forgets it. */
static void test_snapshot_table(void) {
    char path[700];
    snprintf(path, sizeof path, "%s/snap.db", g_dir);
    unlink(path);
    qf_err err = {0};
    qf_store *st = qf_store_open(path, &err);
    ASSERT(st);
    for (int i = 0; i < QF_STORE_SNAPSHOTS_KEEP + 25; i++) {
        char js[64];
        snprintf(js, sizeof js, "{\"metrics\":[],\"i\":%d}", i);
        ASSERT_EQ_INT(qf_store_snapshot_put(st, 1000.0 + i, "running", js, &err), QF_OK);
    }
    ASSERT_EQ_INT(qf_store_snapshot_count(st), QF_STORE_SNAPSHOTS_KEEP);
    /* inside the caller's transaction too */
    ASSERT_EQ_INT(qf_store_begin(st, &err), QF_OK);
    ASSERT_EQ_INT(qf_store_snapshot_put(st, 5000, "done", "{\"metrics\":[]}", &err), QF_OK);
    ASSERT_EQ_INT(qf_store_commit(st, &err), QF_OK);
    ASSERT_EQ_INT(qf_store_snapshot_count(st), QF_STORE_SNAPSHOTS_KEEP);
    qf_top_snap *s = qf_calloc(1, sizeof *s);
    ASSERT_EQ_INT(qf_top_read_db(s, path, &err), QF_OK);
    ASSERT_STR_EQ(s->state, "done"); /* the newest row */
    ASSERT_EQ_INT(qf_store_job_reset(st, &err), QF_OK);
    ASSERT_EQ_INT(qf_store_snapshot_count(st), 0);
    ASSERT_EQ_INT(qf_top_read_db(s, path, &err), QF_OK);
    ASSERT_STR_EQ(s->state, "unknown");
    ASSERT(isnan(s->snapshot_age_s) && isnan(s->tokens_out));
    qf_free(s);
    qf_store_close(st);
}

/* A reader polling as fast as it can never makes the writer fail or wait
 * past its busy timeout, and never sees a half-written snapshot. */
typedef struct poll_ctx {
    const char *path;
    atomic_bool stop;
    int reads, bad;
    char err[600];
} poll_ctx;

static void *poller(void *arg) {
    poll_ctx *c = arg;
    qf_top_snap *s = qf_calloc(1, sizeof *s);
    while (!atomic_load(&c->stop)) {
        qf_err e = {0};
        if (qf_top_read_db(s, c->path, &e) != QF_OK) {
            if (!c->bad) snprintf(c->err, sizeof c->err, "%s", e.msg);
            c->bad++;
        } else if (strcmp(s->state, "running") || !(s->tokens_out >= 0)) {
            if (!c->bad)
                snprintf(c->err, sizeof c->err, "state %s tokens_out %g", s->state, s->tokens_out);
            c->bad++;
        }
        c->reads++;
    }
    qf_free(s);
    return NULL;
}

static void test_reader_vs_writer(void) {
    char path[700];
    snprintf(path, sizeof path, "%s/busy.db", g_dir);
    qf_store *st = make_job(path, "running", 3);
    ASSERT(st);
    poll_ctx c = {.path = path};
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, poller, &c) == 0);
    qf_err err = {0};
    int fails = 0;
    for (int i = 0; i < 300; i++) {
        /* a job-like commit (a chunk, a pair) and a snapshot */
        qf_status s1 = qf_store_begin(st, &err);
        if (s1 == QF_OK) s1 = qf_store_chunk_done(st, 1, 100 + i, 0, 1, 0, &err);
        if (s1 == QF_OK) s1 = qf_store_commit(st, &err);
        char js[128];
        snprintf(js, sizeof js,
                 "{\"metrics\":[{\"name\":\"qforge_generated_tokens_total\",\"type\":\"counter\","
                 "\"help\":\"\","
                 "\"series\":[{\"labels\":{},\"value\":%d}]}]}",
                 i);
        qf_status s2 = qf_store_snapshot_put(st, 1.0 + i, "running", js, &err);
        if (s1 != QF_OK || s2 != QF_OK) {
            fprintf(stderr, "writer: %s\n", err.msg);
            fails++;
        }
    }
    atomic_store(&c.stop, true);
    pthread_join(th, NULL);
    qf_store_close(st);
    ASSERT_EQ_INT(fails, 0);
    ASSERT_MSG(c.bad == 0, "%d bad reads of %d: %s", c.bad, c.reads, c.err);
    ASSERT(c.reads > 5);
    /* the database is whole */
    sqlite3 *db;
    ASSERT(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_stmt *q;
    ASSERT(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL) == SQLITE_OK);
    ASSERT(sqlite3_step(q) == SQLITE_ROW);
    ASSERT_STR_EQ((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s/test_top.tmp", QF_BINARY_DIR);
    mkdir(g_dir, 0755);
    RUN_TEST(test_parse_fixed);
    RUN_TEST(test_quantile_edges);
    RUN_TEST(test_malformed);
    RUN_TEST(test_truncated);
    RUN_TEST(test_alerts);
    RUN_TEST(test_fill_serve);
    RUN_TEST(test_snap_json);
    RUN_TEST(test_registry_json);
    RUN_TEST(test_faults);
    RUN_TEST(test_read_db);
    RUN_TEST(test_snapshot_table);
    RUN_TEST(test_reader_vs_writer);
    TEST_MAIN_END();
}
