/* test_http.c - the HTTP provider against the fault-injecting server:
 * retries with backoff on 5xx/429/garbage/timeouts/dropped connections,
 * schema refusal, retry exhaustion, 4xx, several endpoints (balancing, a
 * dead one taken out), the Ollama API, model name discovery. */
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "pipeline/parse.h"
#include "pipeline/provider.h"
#include "qf_test.h"

typedef struct server {
    pid_t pid;
    int port;
    char url[64];
} server;

/* Start fault_server with args; wait for its PORT line. */
static bool server_start(server *s, const char *args) {
    int fd[2];
    if (pipe(fd) != 0) return false;
    s->pid = fork();
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a failed test */
        dup2(fd[1], 1);
        close(fd[0]);
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "exec %s %s", QF_FAULT_SERVER, args);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    s->port = 0;
    if (fscanf(f, "PORT %d", &s->port) != 1) s->port = 0;
    fclose(f);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    return s->port > 0;
}

static void server_stop(server *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

static long server_stat(server *s, const char *key) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "curl -s %s/stats 2>/dev/null || wget -qO- %s/stats", s->url, s->url);
    FILE *p = popen(cmd, "r");
    char buf[512] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    pclose(p);
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *q = strstr(buf, pat);
    return q ? atol(q + strlen(pat)) : -1;
}

static const char *k_schema =
    "{\"type\":\"object\",\"properties\":{\"pairs\":{\"type\":\"array\",\"minItems\":2,\"maxItems\":2,"
    "\"items\":{\"type\":\"object\",\"properties\":{\"question\":{\"type\":\"string\"},\"answer\":{\"type\":"
    "\"string\",\"minLength\":50}},\"required\":[\"question\",\"answer\"]}}},\"required\":[\"pairs\"]}";

static qf_provider *make(qf_http_api api, const char *const *urls, int n, int in_flight, double timeout,
                         int retries, const char *model, qf_err *e) {
    qf_provider_http_params p;
    memset(&p, 0, sizeof p);
    p.api = api;
    p.urls = urls;
    p.n_urls = n;
    p.model = model;
    p.max_in_flight = in_flight;
    p.timeout_s = timeout;
    p.max_retries = retries;
    p.backoff_base_s = 0.01;
    p.backoff_max_s = 0.05;
    p.cooldown_s = 0.2;
    return qf_provider_http_new(&p, e);
}

static void submit(qf_provider *pv, uint64_t tag, int32_t n, const char *chunk) {
    char user[512];
    snprintf(user, sizeof user, "Text:\n\"\"\"\n%s\n\"\"\"\n\nWrite 2 pairs.", chunk);
    qf_chat_msg m[2] = {{"system", "You write pairs."}, {"user", user}};
    qf_preq r;
    memset(&r, 0, sizeof r);
    r.tag = tag;
    r.msgs = m;
    r.n_msgs = 2;
    r.n = n;
    r.temperature = 0.3f;
    r.top_p = 0.9f;
    r.seed = 100;
    r.max_tokens = 300;
    r.json_schema = k_schema;
    qf_err e = {0};
    qf_status st = qf_provider_submit(pv, &r, &e);
    if (st != QF_OK) fprintf(stderr, "submit: %s\n", e.msg);
}

/* Collect every result (at most cap); checks each (tag, index) once. */
static int drain(qf_provider *pv, qf_presult *all, int cap, double max_s) {
    int got = 0;
    double t0 = qf_now_s();
    while (qf_provider_pending(pv) > 0 && qf_now_s() - t0 < max_s && got < cap)
        got += qf_provider_wait(pv, all + got, cap - got, 0.2);
    return got;
}

static void free_results(qf_presult *r, int n) {
    for (int i = 0; i < n; i++) qf_presult_deinit(&r[i]);
}

static void test_ok_and_n(void) {
    server s;
    ASSERT(server_start(&s, ""));
    const char *urls[] = {s.url};
    qf_err e = {0};
    qf_provider *pv = make(QF_HTTP_OPENAI, urls, 1, 4, 10, 3, NULL, &e);
    ASSERT_MSG(pv, "%s", e.msg);
    ASSERT_STR_EQ(qf_provider_model_name(pv), "fault-model"); /* asked /v1/models */
    ASSERT_EQ_INT(qf_provider_count_tokens(pv, "abc", 3), -1);
    for (int i = 0; i < 5; i++) submit(pv, 100 + (uint64_t)i, 2, "Bees make honey from nectar.");
    ASSERT_EQ_INT(qf_provider_pending(pv), 10);
    qf_presult r[16];
    int n = drain(pv, r, 16, 20);
    ASSERT_EQ_INT(n, 10);
    int seen[5][2] = {{0}};
    for (int i = 0; i < n; i++) {
        ASSERT_EQ_INT(r[i].status, QF_OK);
        ASSERT(r[i].tag >= 100 && r[i].tag < 105 && r[i].index >= 0 && r[i].index < 2);
        seen[r[i].tag - 100][r[i].index]++;
        ASSERT_EQ_INT(r[i].attempts, 1);
        ASSERT(r[i].tokens_out > 0);
        qf_qa_list l;
        ASSERT_EQ_INT(qf_parse_pairs(r[i].text, r[i].len, &l, &e), QF_OK);
        ASSERT_EQ_INT(l.n, 2);
        ASSERT(strlen(l.v[0].answer) >= 50); /* the schema's minLength reached the server */
        /* completion i was asked with seed + i */
        char want[32];
        snprintf(want, sizeof want, "(seed %d)", 100 + r[i].index);
        ASSERT(strstr(l.v[0].question, want));
        qf_qa_list_deinit(&l);
    }
    for (int i = 0; i < 5; i++) ASSERT(seen[i][0] == 1 && seen[i][1] == 1);
    free_results(r, n);
    ASSERT_EQ_INT(server_stat(&s, "chat"), 10);
    qf_provider_stats st;
    qf_provider_get_stats(pv, &st);
    ASSERT(st.completed == 10 && st.failed == 0 && st.retries == 0);
    qf_provider_free(pv);
    server_stop(&s);
}

static void test_faults_retried(void) {
    server s;
    ASSERT(server_start(&s, "--faults 500,429,garbage,empty,trunc,close,503"));
    const char *urls[] = {s.url};
    qf_err e = {0};
    qf_provider *pv = make(QF_HTTP_OPENAI, urls, 1, 3, 10, 8, "m", &e);
    ASSERT(pv);
    for (int i = 0; i < 4; i++) {
        char c[64];
        snprintf(c, sizeof c, "chunk number %d", i);
        submit(pv, (uint64_t)i, 1, c);
    }
    qf_presult r[8];
    int n = drain(pv, r, 8, 60);
    ASSERT_EQ_INT(n, 4);
    for (int i = 0; i < n; i++) {
        ASSERT_MSG(r[i].status == QF_OK, "%s: %s", r[i].reason, r[i].detail);
        /* 7 faults, then the answer; libcurl itself resends once on a dropped
         * keep-alive connection, which the server counts as an attempt */
        ASSERT(r[i].attempts == 8 || r[i].attempts == 7);
    }
    free_results(r, n);
    qf_provider_stats st;
    qf_provider_get_stats(pv, &st);
    ASSERT(st.retries >= 24 && st.retries <= 28);
    ASSERT_EQ_INT(server_stat(&s, "faults"), 28);
    qf_provider_free(pv);
    server_stop(&s);
}

/* One endpoint, many jobs each failing 5 times before its answer: dozens
 * of failures in a row before the first success, so the endpoint is taken
 * out again and again. Its cooldown doubles only up to 8x the configured
 * one (0.2 s -> 1.6 s), so the jobs finish in seconds; uncapped it would
 * reach minutes and the drain below would give up. */
static void test_cooldown_capped(void) {
    server s;
    ASSERT(server_start(&s, "--faults 500,500,500,500,500"));
    const char *urls[] = {s.url};
    qf_err e = {0};
    qf_provider *pv = make(QF_HTTP_OPENAI, urls, 1, 4, 10, 6, "m", &e);
    ASSERT(pv);
    for (int i = 0; i < 16; i++) {
        char c[64];
        snprintf(c, sizeof c, "cooldown chunk %d", i);
        submit(pv, (uint64_t)i, 1, c);
    }
    qf_presult r[16];
    int n = drain(pv, r, 16, 60);
    ASSERT_EQ_INT(n, 16);
    for (int i = 0; i < n; i++) ASSERT_MSG(r[i].status == QF_OK, "%s: %s", r[i].reason, r[i].detail);
    free_results(r, n);
    ASSERT_EQ_INT(server_stat(&s, "faults"), 80);
    qf_provider_free(pv);
    server_stop(&s);
}

static void test_timeout(void) {
    server s;
    ASSERT(server_start(&s, "--faults timeout --hang-ms 3000"));
    const char *urls[] = {s.url};
    qf_err e = {0};
    qf_provider *pv = make(QF_HTTP_OPENAI, urls, 1, 2, 0.5, 2, "m", &e);
    ASSERT(pv);
    double t0 = qf_now_s();
    submit(pv, 1, 1, "slow chunk");
    qf_presult r[2];
    int n = drain(pv, r, 2, 20);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_INT(r[0].status, QF_OK);
    ASSERT_EQ_INT(r[0].attempts, 2);
    ASSERT(qf_now_s() - t0 < 2.5); /* the client gave up after 0.5 s, not 3 */
    free_results(r, n);
    qf_provider_free(pv);
    server_stop(&s);
}

static void test_exhausted_and_4xx(void) {
    server s;
    ASSERT(server_start(&s, "--fail-all"));
    const char *urls[] = {s.url};
    qf_err e = {0};
    qf_provider *pv = make(QF_HTTP_OPENAI, urls, 1, 2, 5, 2, "m", &e);
    ASSERT(pv);
    submit(pv, 7, 2, "doomed");
    qf_presult r[4];
    int n = drain(pv, r, 4, 30);
    ASSERT_EQ_INT(n, 2);
    for (int i = 0; i < n; i++) {
        ASSERT(r[i].status != QF_OK);
        ASSERT_STR_EQ(r[i].reason, "http_500");
        ASSERT_EQ_INT(r[i].attempts, 3); /* first try + 2 retries */
        ASSERT(strstr(r[i].detail, "500") && r[i].text == NULL);
    }
    free_results(r, n);
    qf_provider_free(pv);

    /* 404: the request is wrong, no retry */
    char bad[128];
    snprintf(bad, sizeof bad, "%s/wrong/place", s.url);
    const char *u2[] = {bad};
    pv = make(QF_HTTP_OPENAI, u2, 1, 2, 5, 5, "m", &e);
    ASSERT(pv);
    submit(pv, 8, 1, "x");
    n = drain(pv, r, 4, 10);
    ASSERT_EQ_INT(n, 1);
    ASSERT_STR_EQ(r[0].reason, "http_404");
    ASSERT_EQ_INT(r[0].attempts, 1);
    free_results(r, n);
    qf_provider_free(pv);
    server_stop(&s);
}

static void test_schema_refused(void) {
    server s;
    ASSERT(server_start(&s, "--refuse-schema"));
    const char *urls[] = {s.url};
    qf_err e = {0};
    qf_provider *pv = make(QF_HTTP_OPENAI, urls, 1, 2, 5, 0, "m", &e); /* no retries: the resend is not one */
    ASSERT(pv);
    submit(pv, 1, 2, "schema-less server");
    qf_presult r[4];
    int n = drain(pv, r, 4, 10);
    ASSERT_EQ_INT(n, 2);
    for (int i = 0; i < n; i++) ASSERT_MSG(r[i].status == QF_OK, "%s", r[i].detail);
    free_results(r, n);
    /* the endpoint is remembered as schema-less: 2 refusals at most, then 2 answers */
    ASSERT(server_stat(&s, "chat") <= 4);
    qf_provider_free(pv);
    server_stop(&s);
}

static void test_balancing_and_dead(void) {
    server a, b;
    ASSERT(server_start(&a, "--delay-ms 50"));
    ASSERT(server_start(&b, "--delay-ms 50"));
    const char *urls[] = {a.url, b.url};
    qf_err e = {0};
    qf_provider *pv = make(QF_HTTP_OPENAI, urls, 2, 4, 10, 3, "m", &e);
    ASSERT(pv);
    for (int i = 0; i < 24; i++) {
        char c[32];
        snprintf(c, sizeof c, "chunk %d", i);
        submit(pv, (uint64_t)i, 1, c);
    }
    qf_presult r[32];
    int n = drain(pv, r, 32, 30);
    ASSERT_EQ_INT(n, 24);
    for (int i = 0; i < n; i++) ASSERT_EQ_INT(r[i].status, QF_OK);
    free_results(r, n);
    long na = server_stat(&a, "chat"), nb = server_stat(&b, "chat");
    ASSERT_EQ_INT(na + nb, 24);
    ASSERT_MSG(na >= 8 && nb >= 8, "a %ld b %ld", na, nb); /* both carry load */
    qf_provider_free(pv);
    server_stop(&b);

    /* b is down now (connection refused): every request still succeeds via a */
    pv = make(QF_HTTP_OPENAI, urls, 2, 4, 10, 5, "m", &e);
    ASSERT(pv);
    for (int i = 0; i < 12; i++) {
        char c[32];
        snprintf(c, sizeof c, "again %d", i);
        submit(pv, (uint64_t)i, 1, c);
    }
    n = drain(pv, r, 32, 30);
    ASSERT_EQ_INT(n, 12);
    for (int i = 0; i < n; i++) ASSERT_MSG(r[i].status == QF_OK, "%s %s", r[i].reason, r[i].detail);
    free_results(r, n);
    qf_provider_stats st;
    qf_provider_get_stats(pv, &st);
    ASSERT(st.retries >= 1 && st.retries <= 8); /* the dead one was taken out, not retried forever */
    qf_provider_free(pv);
    server_stop(&a);
}

static void test_ollama(void) {
    server s;
    ASSERT(server_start(&s, "--think"));
    const char *urls[] = {s.url};
    qf_err e = {0};
    qf_provider *pv = make(QF_HTTP_OLLAMA, urls, 1, 2, 10, 2, NULL, &e);
    ASSERT_MSG(pv, "%s", e.msg);
    ASSERT_STR_EQ(qf_provider_model_name(pv), "fault-model"); /* asked /api/tags */
    ASSERT(!strncmp(qf_provider_model_id(pv), "ollama:", 7));
    submit(pv, 3, 2, "Ollama chunk");
    qf_presult r[4];
    int n = drain(pv, r, 4, 10);
    ASSERT_EQ_INT(n, 2);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ_INT(r[i].status, QF_OK);
        ASSERT(strstr(r[i].text, "<think>")); /* raw reply; parse strips it */
        qf_qa_list l;
        ASSERT_EQ_INT(qf_parse_pairs(r[i].text, r[i].len, &l, &e), QF_OK);
        ASSERT_EQ_INT(l.n, 2);
        char want[32];
        snprintf(want, sizeof want, "(seed %d)", 100 + r[i].index); /* options.seed */
        ASSERT(strstr(l.v[0].question, want));
        qf_qa_list_deinit(&l);
    }
    free_results(r, n);
    qf_provider_free(pv);
    server_stop(&s);
}

static void test_construction_errors(void) {
    qf_err e = {0};
    const char *bad[] = {"ftp://example.com"};
    ASSERT(!make(QF_HTTP_OPENAI, bad, 1, 2, 1, 1, "m", &e));
    ASSERT_EQ_INT(e.code, QF_ERR_INVALID);
    const char *down[] = {"http://127.0.0.1:9"}; /* discard port: nothing listens */
    ASSERT(!make(QF_HTTP_OPENAI, down, 1, 2, 1, 1, NULL, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_IO);
    ASSERT(strstr(e.msg, "127.0.0.1:9/v1/models"));
    ASSERT(!make(QF_HTTP_OPENAI, down, 0, 2, 1, 1, "m", &e));
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    RUN_TEST(test_ok_and_n);
    RUN_TEST(test_faults_retried);
    RUN_TEST(test_cooldown_capped);
    RUN_TEST(test_timeout);
    RUN_TEST(test_exhausted_and_4xx);
    RUN_TEST(test_schema_refused);
    RUN_TEST(test_balancing_and_dead);
    RUN_TEST(test_ollama);
    RUN_TEST(test_construction_errors);
    TEST_MAIN_END();
}
