/* test_metrics.c - the metrics registry: Prometheus text exposition (the
 * expected lines follow the format's rules: cumulative buckets, +Inf,
 * _sum/_count, escaping), kinds and argument checks, series limits,
 * quantiles, concurrent updates, allocation failures; the JSON rendering
 * (parsed back with cJSON and checked against the values put in). */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>

#include <cjson/cJSON.h>

#include "base/mem.h"
#include "qf_test.h"
#include "monitor/metrics.h"

static bool has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0)) return true;
    return false;
}

static void test_render_counter_gauge(void) {
    qf_metrics *m = qf_metrics_new(NULL);
    ASSERT(m);
    ASSERT_EQ_INT(
        qf_metrics_declare(m, "req_total", QF_METRIC_COUNTER, "Requests\nby \\ code", NULL, 0),
        QF_OK);
    ASSERT_EQ_INT(qf_metrics_declare(m, "temp", QF_METRIC_GAUGE, "Temperature", NULL, 0), QF_OK);
    ASSERT_EQ_INT(qf_metrics_add(m, "req_total", "code=\"200\"", 2), QF_OK);
    ASSERT_EQ_INT(qf_metrics_add(m, "req_total", "code=\"200\"", 1), QF_OK);
    ASSERT_EQ_INT(qf_metrics_add(m, "req_total", "code=\"503\"", 1), QF_OK);
    ASSERT_EQ_INT(qf_metrics_set(m, "temp", NULL, -1.5), QF_OK);
    size_t len;
    char *t = qf_metrics_render(m, &len);
    ASSERT(t);
    ASSERT_EQ_INT(len, strlen(t));
    ASSERT(has_line(t, "# HELP req_total Requests\\nby \\\\ code"));
    ASSERT(has_line(t, "# TYPE req_total counter"));
    ASSERT(has_line(t, "req_total{code=\"200\"} 3"));
    ASSERT(has_line(t, "req_total{code=\"503\"} 1"));
    ASSERT(has_line(t, "# TYPE temp gauge"));
    ASSERT(has_line(t, "temp -1.5"));
    /* families in declaration order, series in creation order */
    ASSERT(strstr(t, "req_total{code=\"200\"}") < strstr(t, "req_total{code=\"503\"}"));
    ASSERT(strstr(t, "# TYPE req_total") < strstr(t, "# TYPE temp"));
    ASSERT_NEAR(qf_metrics_get(m, "req_total", "code=\"200\""), 3, 0);
    ASSERT_NEAR(qf_metrics_get(m, "req_total", "code=\"404\""), 0, 0);
    qf_free(t);
    qf_metrics_free(m);
}

static void test_histogram(void) {
    qf_metrics *m = qf_metrics_new(NULL);
    const double b[] = {1, 2, 5};
    ASSERT_EQ_INT(qf_metrics_declare(m, "lat", QF_METRIC_HISTOGRAM, "Latency", b, 3), QF_OK);
    const double obs[] = {0.5, 1.0, 1.5, 3, 10};
    for (int i = 0; i < 5; i++)
        ASSERT_EQ_INT(qf_metrics_observe(m, "lat", "ep=\"/x\"", obs[i]), QF_OK);
    char *t = qf_metrics_render(m, NULL);
    ASSERT(t);
    /* le is inclusive: 0.5 and 1.0 in le=1; cumulative counts */
    ASSERT(has_line(t, "lat_bucket{ep=\"/x\",le=\"1\"} 2"));
    ASSERT(has_line(t, "lat_bucket{ep=\"/x\",le=\"2\"} 3"));
    ASSERT(has_line(t, "lat_bucket{ep=\"/x\",le=\"5\"} 4"));
    ASSERT(has_line(t, "lat_bucket{ep=\"/x\",le=\"+Inf\"} 5"));
    ASSERT(has_line(t, "lat_sum{ep=\"/x\"} 16"));
    ASSERT(has_line(t, "lat_count{ep=\"/x\"} 5"));
    qf_free(t);
    /* unlabelled series */
    ASSERT_EQ_INT(qf_metrics_observe(m, "lat", NULL, 0.25), QF_OK);
    t = qf_metrics_render(m, NULL);
    ASSERT(has_line(t, "lat_bucket{le=\"1\"} 1"));
    ASSERT(has_line(t, "lat_sum 0.25"));
    ASSERT(has_line(t, "lat_count 1"));
    qf_free(t);
    qf_metrics_free(m);
}

static void test_quantile(void) {
    qf_metrics *m = qf_metrics_new(NULL);
    const double b[] = {1, 2, 4};
    ASSERT_EQ_INT(qf_metrics_declare(m, "h", QF_METRIC_HISTOGRAM, "", b, 3), QF_OK);
    ASSERT(isnan(qf_metrics_quantile(m, "h", NULL, 0.5)));
    for (int i = 0; i < 10; i++)
        qf_metrics_observe(m, "h", NULL, 1.5);
    /* all ten in (1, 2]: rank 5 of 10 -> 1 + (2 - 1) * 5/10 */
    ASSERT_NEAR(qf_metrics_quantile(m, "h", NULL, 0.5), 1.5, 1e-12);
    ASSERT_NEAR(qf_metrics_quantile(m, "h", NULL, 1.0), 2.0, 1e-12);
    for (int i = 0; i < 10; i++)
        qf_metrics_observe(m, "h", NULL, 100);
    /* half beyond the last bound: the +Inf bucket answers the top bound */
    ASSERT_NEAR(qf_metrics_quantile(m, "h", NULL, 0.99), 4.0, 1e-12);
    ASSERT(isnan(qf_metrics_quantile(m, "h", NULL, 1.5)));
    ASSERT(isnan(qf_metrics_quantile(m, "nope", NULL, 0.5)));
    qf_metrics_free(m);
}

static void test_errors(void) {
    qf_metrics *m = qf_metrics_new(NULL);
    const double good[] = {1, 2}, unsorted[] = {2, 1}, inf[] = {1, INFINITY};
    ASSERT_EQ_INT(qf_metrics_declare(m, "1bad", QF_METRIC_COUNTER, "", NULL, 0), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_metrics_declare(m, "bad-name", QF_METRIC_COUNTER, "", NULL, 0),
                  QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_metrics_declare(m, "", QF_METRIC_COUNTER, "", NULL, 0), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_metrics_declare(m, "h", QF_METRIC_HISTOGRAM, "", NULL, 0), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_metrics_declare(m, "h", QF_METRIC_HISTOGRAM, "", unsorted, 2), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_metrics_declare(m, "h", QF_METRIC_HISTOGRAM, "", inf, 2), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_metrics_declare(m, "c", QF_METRIC_COUNTER, "", good, 2), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_metrics_declare(m, "c", QF_METRIC_COUNTER, "", NULL, 0), QF_OK);
    ASSERT_EQ_INT(qf_metrics_declare(m, "c", QF_METRIC_GAUGE, "", NULL, 0),
                  QF_ERR_INVALID); /* duplicate */
    ASSERT_EQ_INT(qf_metrics_declare(m, "h", QF_METRIC_HISTOGRAM, "", good, 2), QF_OK);
    ASSERT_EQ_INT(qf_metrics_add(m, "missing", NULL, 1), QF_ERR_NOT_FOUND);
    ASSERT_EQ_INT(qf_metrics_add(m, "c", NULL, -1), QF_ERR_INVALID); /* counters only grow */
    ASSERT_EQ_INT(qf_metrics_add(m, "c", NULL, NAN), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_metrics_observe(m, "c", NULL, 1), QF_ERR_INVALID); /* wrong kind */
    ASSERT_EQ_INT(qf_metrics_add(m, "h", NULL, 1), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_metrics_set(m, "c", NULL, 5), QF_OK);
    ASSERT_EQ_INT(qf_metrics_set(m, "c", NULL, 4), QF_ERR_INVALID); /* counter went down */
    /* series limit */
    char lb[64];
    qf_status st = QF_OK;
    int i;
    for (i = 0; i < QF_METRICS_MAX_SERIES + 5 && st == QF_OK; i++) {
        snprintf(lb, sizeof lb, "k=\"%d\"", i);
        st = qf_metrics_add(m, "c", lb, 1);
    }
    ASSERT_EQ_INT(st, QF_ERR_RANGE);
    ASSERT_EQ_INT(i, QF_METRICS_MAX_SERIES); /* the unlabelled series counts too */
    qf_metrics_free(m);
    qf_metrics_free(NULL);
}

static void test_labels(void) {
    char buf[128];
    qf_metrics_labels(buf, sizeof buf, "a", "x\"y\\z\nw", "b", "2", (const char *)NULL);
    ASSERT_STR_EQ(buf, "a=\"x\\\"y\\\\z\\nw\",b=\"2\"");
    qf_metrics_labels(buf, sizeof buf, (const char *)NULL);
    ASSERT_STR_EQ(buf, "");
    char small[8];
    qf_metrics_labels(small, sizeof small, "key", "value", (const char *)NULL);
    ASSERT_EQ_INT(strlen(small), 7); /* truncated, still terminated */
}

static qf_metrics *g_m;
static void *adder(void *arg) {
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        qf_metrics_add(g_m, "n", NULL, 1);
        qf_metrics_observe(g_m, "h", NULL, (double)(i % 3));
    }
    return NULL;
}

static void test_threads(void) {
    g_m = qf_metrics_new(NULL);
    const double b[] = {0.5, 1.5};
    qf_metrics_declare(g_m, "n", QF_METRIC_COUNTER, "", NULL, 0);
    qf_metrics_declare(g_m, "h", QF_METRIC_HISTOGRAM, "", b, 2);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, adder, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ASSERT_NEAR(qf_metrics_get(g_m, "n", NULL), 80000, 0);
    ASSERT_NEAR(qf_metrics_get(g_m, "h", NULL), 80000, 0);
    qf_metrics_free(g_m);
}

static void test_alloc_failures(void) {
    const double b[] = {1};
    int completed = 0;
    for (long n = 0; n < 200 && !completed; n++) {
        qf_mem_fail_after(n);
        qf_metrics *m = qf_metrics_new(NULL);
        if (m) {
            qf_status a = qf_metrics_declare(m, "c", QF_METRIC_COUNTER, "help", NULL, 0);
            qf_status h = qf_metrics_declare(m, "h", QF_METRIC_HISTOGRAM, "help", b, 1);
            qf_status x = a ? a : qf_metrics_add(m, "c", "l=\"1\"", 1);
            qf_status y = h ? h : qf_metrics_observe(m, "h", "l=\"1\"", 1);
            char *t = qf_metrics_render(m, NULL);
            if (!a && !h && !x && !y && t) completed = 1;
            qf_free(t);
            qf_metrics_free(m);
        }
    }
    qf_mem_fail_after(-1);
    ASSERT(completed);
}

static cJSON *find_family_json(cJSON *root, const char *name) {
    cJSON *fams = cJSON_GetObjectItemCaseSensitive(root, "metrics"), *f;
    cJSON_ArrayForEach(f, fams) {
        cJSON *n = cJSON_GetObjectItemCaseSensitive(f, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return f;
    }
    return NULL;
}

static void test_json(void) {
    qf_metrics *m = qf_metrics_new(NULL);
    const double b[] = {0.5, 2};
    ASSERT_EQ_INT(qf_metrics_declare(m, "req_total", QF_METRIC_COUNTER, "Req \"q\"\n2", NULL, 0),
                  QF_OK);
    ASSERT_EQ_INT(qf_metrics_declare(m, "temp", QF_METRIC_GAUGE, "T", NULL, 0), QF_OK);
    ASSERT_EQ_INT(qf_metrics_declare(m, "lat", QF_METRIC_HISTOGRAM, "L", b, 2), QF_OK);
    ASSERT_EQ_INT(qf_metrics_declare(m, "empty", QF_METRIC_GAUGE, "", NULL, 0), QF_OK);
    char lb[128];
    qf_metrics_labels(lb, sizeof lb, "code", "200", "path", "a\"b\\c\nd", (const char *)NULL);
    ASSERT_EQ_INT(qf_metrics_add(m, "req_total", lb, 3), QF_OK);
    ASSERT_EQ_INT(qf_metrics_set(m, "temp", NULL, -1.25), QF_OK);
    ASSERT_EQ_INT(qf_metrics_observe(m, "lat", NULL, 0.1), QF_OK);
    ASSERT_EQ_INT(qf_metrics_observe(m, "lat", NULL, 1.0), QF_OK);
    ASSERT_EQ_INT(qf_metrics_observe(m, "lat", NULL, 9.0), QF_OK);
    size_t len = 0;
    char *j = qf_metrics_render_json(m, &len);
    ASSERT(j);
    ASSERT_EQ_INT(len, strlen(j));
    cJSON *root = cJSON_Parse(j);
    ASSERT_MSG(root, "not JSON: %s", j);
    ASSERT_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "metrics")), 4);
    /* declaration order kept */
    ASSERT_STR_EQ(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "metrics"), 0)->child->valuestring,
                  "req_total");

    cJSON *f = find_family_json(root, "req_total");
    ASSERT(f);
    ASSERT_STR_EQ(cJSON_GetObjectItem(f, "type")->valuestring, "counter");
    ASSERT_STR_EQ(cJSON_GetObjectItem(f, "help")->valuestring, "Req \"q\"\n2");
    cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItem(f, "series"), 0);
    ASSERT(s);
    cJSON *l = cJSON_GetObjectItem(s, "labels");
    ASSERT_EQ_INT(cJSON_GetArraySize(l), 2);
    ASSERT_STR_EQ(cJSON_GetObjectItem(l, "code")->valuestring, "200");
    ASSERT_STR_EQ(cJSON_GetObjectItem(l, "path")->valuestring, "a\"b\\c\nd"); /* unescaped */
    ASSERT_NEAR(cJSON_GetObjectItem(s, "value")->valuedouble, 3, 0);

    f = find_family_json(root, "temp");
    ASSERT(f);
    ASSERT_STR_EQ(cJSON_GetObjectItem(f, "type")->valuestring, "gauge");
    s = cJSON_GetArrayItem(cJSON_GetObjectItem(f, "series"), 0);
    ASSERT_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(s, "labels")), 0);
    ASSERT_NEAR(cJSON_GetObjectItem(s, "value")->valuedouble, -1.25, 0);

    f = find_family_json(root, "lat");
    ASSERT(f);
    ASSERT_STR_EQ(cJSON_GetObjectItem(f, "type")->valuestring, "histogram");
    s = cJSON_GetArrayItem(cJSON_GetObjectItem(f, "series"), 0);
    ASSERT_NEAR(cJSON_GetObjectItem(s, "count")->valuedouble, 3, 0);
    ASSERT_NEAR(cJSON_GetObjectItem(s, "sum")->valuedouble, 10.1, 1e-9);
    cJSON *bk = cJSON_GetObjectItem(s, "buckets");
    ASSERT_EQ_INT(cJSON_GetArraySize(bk), 3);
    /* cumulative: 0.1 <= 0.5; 1.0 <= 2; 9 only in +Inf */
    ASSERT_NEAR(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 0), "le")->valuedouble, 0.5, 0);
    ASSERT_NEAR(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 0), "count")->valuedouble, 1, 0);
    ASSERT_NEAR(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 1), "count")->valuedouble, 2, 0);
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 2), "le")->valuestring, "+Inf");
    ASSERT_NEAR(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 2), "count")->valuedouble, 3, 0);

    f = find_family_json(root, "empty");
    ASSERT(f);
    ASSERT_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(f, "series")), 0);
    cJSON_Delete(root);
    qf_free(j);

    /* every family the text names is in the JSON and the other way round */
    char *t = qf_metrics_render(m, NULL);
    ASSERT(t);
    j = qf_metrics_render_json(m, NULL);
    root = cJSON_Parse(j);
    ASSERT(root);
    int n_text = 0;
    for (const char *p = t; (p = strstr(p, "# TYPE ")) != NULL; p += 7) {
        char name[64];
        ASSERT_EQ_INT(sscanf(p + 7, "%63s", name), 1);
        ASSERT_MSG(find_family_json(root, name), "%s missing from JSON", name);
        n_text++;
    }
    ASSERT_EQ_INT(n_text, cJSON_GetArraySize(cJSON_GetObjectItem(root, "metrics")));
    cJSON_Delete(root);
    qf_free(j);
    qf_free(t);
    ASSERT(qf_metrics_render_json(NULL, NULL) == NULL);
    qf_metrics_free(m);

    /* an empty registry is still a valid document */
    m = qf_metrics_new(NULL);
    j = qf_metrics_render_json(m, NULL);
    ASSERT_STR_EQ(j, "{\"metrics\":[]}");
    qf_free(j);
    qf_metrics_free(m);
}

static void test_json_alloc_failures(void) {
    qf_metrics *m = qf_metrics_new(NULL);
    qf_metrics_declare(m, "c", QF_METRIC_COUNTER, "help", NULL, 0);
    /* a label value longer than the renderer's stack buffer forces a heap copy */
    char big[700], lb[800];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    qf_metrics_labels(lb, sizeof lb, "k", big, (const char *)NULL);
    ASSERT_EQ_INT(qf_metrics_add(m, "c", lb, 1), QF_OK);
    int ok = 0;
    for (long n = 0; n < 50 && !ok; n++) {
        qf_mem_fail_after(n);
        char *j = qf_metrics_render_json(m, NULL);
        qf_mem_fail_after(-1);
        if (j) {
            ok = strstr(j, big) != NULL;
            qf_free(j);
        }
    }
    ASSERT(ok);
    qf_metrics_free(m);
}

int main(void) {
    RUN_TEST(test_json);
    RUN_TEST(test_json_alloc_failures);
    RUN_TEST(test_render_counter_gauge);
    RUN_TEST(test_histogram);
    RUN_TEST(test_quantile);
    RUN_TEST(test_errors);
    RUN_TEST(test_labels);
    RUN_TEST(test_threads);
    RUN_TEST(test_alloc_failures);
    TEST_MAIN_END();
}
