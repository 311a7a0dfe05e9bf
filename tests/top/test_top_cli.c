/* test_top_cli.c - `qforge top` through the command line: bad arguments
 * (exit 2), an unreachable server (exit 1 and a message that says what to
 * do), `--once --json` against a live `qforge serve` on a synthesized
 * model before and after a request (and behind --api-key), and `--db` on
 * the database of a real `qforge gen` job, polled while the job runs (it
 * must finish unharmed; --naive keeps it running for a few seconds) and
 * compared with the job's --report afterwards.
 * QF_QFORGE overrides the binary. */
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>

#include "top_util.h"

static cJSON *top_json(int *rc, const char *args) {
    char *out = NULL;
    *rc = sh_run(&out, false, "%s top %s --once --json", g_exe, args);
    cJSON *j = *rc == 0 ? cJSON_Parse(out) : NULL;
    if (*rc == 0 && !j) fprintf(stderr, "not JSON: %s\n", out);
    free(out);
    return j;
}

static void test_usage(void) {
    static const char *bad[] = {"--bogus",
                                "--json",
                                "http://127.0.0.1:1 --db x.db",
                                "http://a:1 http://b:2",
                                "--interval 0",
                                "--interval abc",
                                "--interval",
                                "--db",
                                "--timeout -1",
                                "--api-key",
                                "''"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out = NULL;
        int rc = sh_run(&out, true, "%s top %s", g_exe, bad[i]);
        ASSERT_MSG(rc == 2, "top %s: exit %d: %s", bad[i], rc, out);
        ASSERT_MSG(strstr(out, "usage: qforge top"), "top %s: no usage: %s", bad[i], out);
        free(out);
    }
    char *out = NULL;
    ASSERT_EQ_INT(sh_run(&out, false, "%s top --help", g_exe), 0);
    ASSERT(strstr(out, "--once") && strstr(out, "latency_s{count, p50, p90, p99}") &&
           strstr(out, "chunks{total"));
    free(out);
    ASSERT_EQ_INT(sh_run(&out, false, "%s --help", g_exe), 0);
    ASSERT(strstr(out, "  top "));
    free(out);
}

static void test_unreachable(void) {
    /* port 9 (discard): nothing listens there on a test machine */
    char *out = NULL;
    int rc = sh_run(&out, true, "%s top http://127.0.0.1:9 --once --json", g_exe);
    ASSERT_MSG(rc == 1, "exit %d: %s", rc, out);
    ASSERT_MSG(strstr(out, "cannot reach http://127.0.0.1:9/metrics") &&
                   strstr(out, "qforge serve"),
               "%s", out);
    free(out);
    rc = sh_run(&out, false, "%s top 127.0.0.1:9 --once --json", g_exe); /* stdout only */
    ASSERT_EQ_INT(rc, 1);
    ASSERT_STR_EQ(out, ""); /* nothing half-written on stdout */
    free(out);
    rc = sh_run(&out, true, "%s top http://127.0.0.1:9 --once", g_exe);
    ASSERT_EQ_INT(rc, 1);
    free(out);
    rc = sh_run(&out, true, "%s top --db '%s/none.db' --once --json", g_exe, g_tmp);
    ASSERT_EQ_INT(rc, 1);
    ASSERT_MSG(strstr(out, "none.db") && strstr(out, "no such job database"), "%s", out);
    free(out);
    /* the live view refuses to run without a terminal instead of garbling a pipe */
    rc = sh_run(&out, true, "%s top http://127.0.0.1:9 < /dev/null | cat", g_exe);
    ASSERT(strstr(out, "needs a terminal"));
    free(out);
}

static void test_serve(void) {
    server s;
    /* an alert that fires on any request, so one shows up (when the server has alerts) */
    bool alert_opt = server_start(&s, 0, "--parallel 2 --alert response_latency=0.001");
    if (!alert_opt)
        ASSERT_MSG(server_start(&s, 0, "--parallel 2"), "qforge serve did not start (%s)", s.log);
    int rc;
    cJSON *j = top_json(&rc, s.url);
    ASSERT_MSG(j, "exit %d", rc);
    ASSERT_STR_EQ(jstr(j, "source"), "serve");
    ASSERT_STR_EQ(jstr(j, "target"), s.url);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "up")) && jnull(j, "error", NULL));
    ASSERT_NEAR(jnum(j, "requests_total", NULL), 0, 0); /* top's own polls are not requests */
    ASSERT_NEAR(jnum(j, "queue_depth", NULL), 0, 0);
    ASSERT_NEAR(jnum(j, "running_sequences", NULL), 0, 0);
    ASSERT(jnum(j, "uptime_s", NULL) >= 0 && jnum(j, "uptime_s", NULL) < 600);
    ASSERT(jnum(j, "latency_s", "count") == 0 && jnull(j, "latency_s", "p50"));
    ASSERT(jnull(j, "requests_per_s", NULL));
    ASSERT(cJSON_IsBool(cJSON_GetObjectItem(j, "alerts_endpoint")));
    ASSERT(cJSON_IsArray(cJSON_GetObjectItem(j, "alerts")));
    double t_before = jnum(j, "time_unix", NULL);
    ASSERT(fabs(t_before - (double)time(NULL)) < 5);
    cJSON_Delete(j);

    ASSERT_EQ_INT(send_chat(s.url, NULL), 200);
    j = top_json(&rc, s.url);
    ASSERT_MSG(j, "exit %d", rc);
    ASSERT_NEAR(jnum(j, "requests_total", NULL), 1, 0);
    ASSERT(jnum(j, "generated_tokens_total", NULL) >= 1 &&
           jnum(j, "generated_tokens_total", NULL) <= 8);
    ASSERT(jnum(j, "prompt_tokens_total", NULL) >= 1);
    ASSERT_NEAR(jnum(j, "models_loaded", NULL), 1, 0);
    ASSERT(jnum(j, "kv", "blocks_total") > 0);
    double kvu = jnum(j, "kv", "usage_ratio");
    ASSERT(kvu >= 0 && kvu <= 1);
    double hit = jnum(j, "prefix_cache_hit_ratio", NULL);
    ASSERT(hit >= 0 && hit <= 1);
    ASSERT(jnum(j, "memory", "rss_bytes") > 1e6);
    ASSERT_NEAR(jnum(j, "latency_s", "count"), 1, 0);
    ASSERT_NEAR(jnum(j, "ttft_s", "count"), 1, 0);
    double p50 = jnum(j, "latency_s", "p50"), p90 = jnum(j, "latency_s", "p90"),
           p99 = jnum(j, "latency_s", "p99");
    ASSERT_MSG(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= 600, "%g %g %g", p50, p90, p99);
    double t50 = jnum(j, "ttft_s", "p50");
    ASSERT(t50 > 0 && t50 <= p99 + 1e-9);
    /* per-core CPU: only when the server exports it; then one value per core in 0..1 */
    const cJSON *cores = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "cpu"), "cores");
    ASSERT(cJSON_IsArray(cores));
    const cJSON *c;
    cJSON_ArrayForEach(c, cores)
        ASSERT(cJSON_IsNull(c) || (c->valuedouble >= 0 && c->valuedouble <= 1.0001));
    bool has_alerts = cJSON_IsTrue(cJSON_GetObjectItem(j, "alerts_endpoint"));
    cJSON_Delete(j);
    /* the alert the request set off (the sampler looks once a second) */
    for (int i = 0; i < 40 && has_alerts && alert_opt; i++) {
        j = top_json(&rc, s.url);
        ASSERT(j);
        const cJSON *a, *found = NULL;
        cJSON_ArrayForEach(a, cJSON_GetObjectItem(j, "alerts")) {
            ASSERT(jstr(a, "name") && jstr(a, "message") && jstr(a, "severity"));
            if (!strcmp(jstr(a, "name"), "response_latency")) found = a;
        }
        if (found) {
            ASSERT_STR_EQ(jstr(found, "severity"), "warning");
            ASSERT_NEAR(jnum(found, "threshold", NULL), 0.001, 1e-9);
            ASSERT(jnum(found, "value", NULL) > 0.001 && jnum(found, "value", NULL) <= p99 + 1);
            ASSERT(fabs(jnum(found, "since_unix", NULL) - (double)time(NULL)) < 60);
            ASSERT(jnull(j, "alerts_error", NULL));
            cJSON_Delete(j);
            break;
        }
        cJSON_Delete(j);
        ASSERT_MSG(i < 39, "the response_latency alert never showed");
        usleep(250000);
    }

    /* the text form names what it shows */
    char *out = NULL;
    ASSERT_EQ_INT(sh_run(&out, false, "%s top %s --once", g_exe, s.url), 0);
    ASSERT_MSG(strstr(out, "throughput") && strstr(out, "requests 1 ") &&
                   strstr(out, "models loaded 1") && strstr(out, "latency") &&
                   strstr(out, "ttft") && strstr(out, "kv cache") && strstr(out, "alerts"),
               "%s", out);
    free(out);
    server_stop(&s);

    /* behind an API key: refused without, fine with (flag or environment) */
    ASSERT(server_start(&s, 0, "--api-key s3cret"));
    rc = sh_run(&out, true, "env -u QFORGE_API_KEY %s top %s --once --json", g_exe, s.url);
    ASSERT_MSG(rc == 1 && strstr(out, "401") && strstr(out, "--api-key"), "exit %d: %s", rc, out);
    free(out);
    j = top_json(&rc, "--api-key s3cret 127.0.0.1:0 --timeout 5");
    ASSERT(!j && rc == 1); /* port 0: nothing there */
    char args[128];
    snprintf(args, sizeof args, "--api-key s3cret %s", s.url);
    j = top_json(&rc, args);
    ASSERT_MSG(j, "exit %d", rc);
    cJSON_Delete(j);
    rc = sh_run(&out, false, "QFORGE_API_KEY=s3cret %s top %s --once --json", g_exe, s.url);
    ASSERT_EQ_INT(rc, 0);
    free(out);
    server_stop(&s);
}

/* ---- gen ---- */

typedef struct gen_run {
    char cmd[4096];
    int rc;
    char *out;
} gen_run;

static void *gen_thread(void *arg) {
    gen_run *g = arg;
    g->rc = sh_run(&g->out, true, "%s", g->cmd);
    return NULL;
}

static void test_gen_db(void) {
    char db[800], out_path[760], rep[760];
    snprintf(out_path, sizeof out_path, "%s/out.jsonl", g_tmp);
    snprintf(db, sizeof db, "%s.qforge.db", out_path);
    snprintf(rep, sizeof rep, "%s/rep.json", g_tmp);
    gen_run g = {0};
    snprintf(g.cmd, sizeof g.cmd,
             "%s gen %s/examples/docs -o %s -m %s --pairs 1 --max-tokens 720 --chunk-tokens 1500 "
             "--min-answer 10 "
             "--progress off --report %s --naive",
             g_exe, QF_SOURCE_DIR, out_path, g_model, rep);
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, gen_thread, &g) == 0);
    /* poll as the job runs: every read works, progress never goes back */
    int polls = 0, running = 0;
    double last_done = -1, last_tok = -1, min_done = -1;
    bool bad = false;
    char why[512] = "";
    struct timespec ts = {0, 150 * 1000 * 1000};
    for (int i = 0; i < 4000; i++) {
        struct stat st;
        if (stat(db, &st) != 0) { /* not created yet */
            nanosleep(&ts, NULL);
            continue;
        }
        int rc;
        char args[900];
        snprintf(args, sizeof args, "--db '%s'", db);
        cJSON *j = top_json(&rc, args);
        polls++;
        if (!j) {
            /* the very first moments: the file exists but the tables may not */
            if (polls > 3 && !bad) {
                bad = true;
                snprintf(why, sizeof why, "poll %d: exit %d", polls, rc);
            }
        } else {
            const char *state = jstr(j, "state");
            double done = jnum(j, "chunks", "done"), tok = jnum(j, "tokens", "out");
            if (state && !strcmp(state, "running")) {
                running++;
                if (isfinite(done) && (min_done < 0 || done < min_done)) min_done = done;
                if (done < last_done || (isfinite(tok) && tok < last_tok)) {
                    bad = true;
                    snprintf(why, sizeof why, "went back: chunks %g after %g, tokens %g after %g",
                             done, last_done, tok, last_tok);
                }
                last_done = done;
                if (isfinite(tok)) last_tok = tok;
            }
            bool finished = state && (!strcmp(state, "done") || !strcmp(state, "failed"));
            cJSON_Delete(j);
            if (finished) break;
        }
        nanosleep(&ts, NULL);
    }
    pthread_join(th, NULL);
    ASSERT_MSG(g.rc == 0, "gen exit %d: %s", g.rc, g.out);
    free(g.out);
    ASSERT_MSG(!bad, "%s", why);
    ASSERT_MSG(running >= 1, "never saw the job running (%d polls)", polls);

    /* after the job: the snapshot agrees with the job's own report */
    char *rs = slurp(rep);
    cJSON *r = cJSON_Parse(rs);
    free(rs);
    ASSERT(r);
    int rc;
    char args[900];
    snprintf(args, sizeof args, "--db '%s'", out_path); /* the -o name finds its database */
    cJSON *j = top_json(&rc, args);
    ASSERT_MSG(j, "exit %d", rc);
    ASSERT_STR_EQ(jstr(j, "source"), "gen");
    ASSERT_STR_EQ(jstr(j, "target"), db);
    ASSERT_STR_EQ(jstr(j, "state"), "done");
    ASSERT(jnum(j, "snapshot_age_s", NULL) >= 0 && jnum(j, "snapshot_age_s", NULL) < 120);
    ASSERT_NEAR(jnum(j, "documents", "total"), jnum(r, "documents", "total"), 0);
    ASSERT_NEAR(jnum(j, "documents", "done"), 6, 0);
    ASSERT_NEAR(jnum(j, "chunks", "done"), jnum(r, "chunks", "done"), 0);
    ASSERT_MSG(min_done >= 0 && min_done < jnum(r, "chunks", "done"),
               "never saw the job midway (%g of %g)", min_done, jnum(r, "chunks", "done"));
    ASSERT_NEAR(jnum(j, "chunks", "total"), jnum(r, "chunks", "total"), 0);
    ASSERT_NEAR(jnum(j, "chunks", "pending"), 0, 0);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "chunks"), "total_final")));
    ASSERT_NEAR(jnum(j, "pairs", "accepted"), jnum(r, "pairs", "accepted"), 0);
    ASSERT_NEAR(jnum(j, "tokens", "out"), jnum(r, "tokens", "out"), 0);
    ASSERT_NEAR(jnum(j, "tokens", "in"), jnum(r, "tokens", "in"), 0);
    ASSERT_NEAR(jnum(j, "requests_total", NULL), jnum(r, "requests", NULL), 0);
    ASSERT_NEAR(jnum(j, "cache", "hits"), jnum(r, "cache", "hits"), 0);
    ASSERT_NEAR(jnum(j, "failures_total", NULL), jnum(r, "failures_total", NULL), 0);
    ASSERT(jnum(j, "tokens_per_s", NULL) > 0);
    ASSERT(jnum(j, "elapsed_s", NULL) > 0 &&
           jnum(j, "elapsed_s", NULL) <= jnum(r, "wall_s", NULL) + 0.5);
    cJSON_Delete(j);

    /* the report carries the same metrics, by the same names */
    const cJSON *fam, *mets = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "metrics"), "metrics");
    ASSERT(cJSON_IsArray(mets));
    int seen = 0;
    cJSON_ArrayForEach(fam, mets) {
        const char *name = jstr(fam, "name");
        const cJSON *v =
            cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(fam, "series"), 0), "value");
        if (!strcmp(name, "qforge_gen_chunks_done")) {
            ASSERT_NEAR(v->valuedouble, jnum(r, "chunks", "done"), 0);
            seen++;
        } else if (!strcmp(name, "qforge_generated_tokens_total")) {
            ASSERT_NEAR(v->valuedouble, jnum(r, "tokens", "out"), 0);
            seen++;
        } else if (!strcmp(name, "qforge_gen_documents_total")) {
            ASSERT_NEAR(v->valuedouble, 6, 0);
            seen++;
        }
    }
    ASSERT_EQ_INT(seen, 3);
    cJSON_Delete(r);

    /* the text form */
    char *out = NULL;
    ASSERT_EQ_INT(sh_run(&out, false, "%s top --db '%s' --once", g_exe, db), 0);
    ASSERT_MSG(strstr(out, "state done") && strstr(out, "progress") && strstr(out, "100.0%") &&
                   strstr(out, "pairs") && strstr(out, "documents    6/6 done"),
               "%s", out);
    free(out);

    /* the database is whole, and top wrote nothing into it */
    sqlite3 *d;
    ASSERT(sqlite3_open_v2(db, &d, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *q;
    ASSERT(sqlite3_prepare_v2(d, "PRAGMA integrity_check", -1, &q, NULL) == SQLITE_OK);
    ASSERT(sqlite3_step(q) == SQLITE_ROW);
    ASSERT_STR_EQ((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
    sqlite3_close(d);
    struct stat a, b;
    ASSERT(stat(db, &a) == 0);
    ASSERT_EQ_INT(sh_run(NULL, false, "%s top --db '%s' --once --json", g_exe, db), 0);
    ASSERT(stat(db, &b) == 0);
    ASSERT(a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
           a.st_size == b.st_size);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!top_setup("test_top_cli")) return 1;
    char *out = NULL;
    if (sh_run(&out, true, "%s top --help", g_exe) != 0) {
        free(out);
        QF_SKIP("%s has no `top` command", g_exe);
    }
    free(out);
    RUN_TEST(test_usage);
    RUN_TEST(test_unreachable);
    RUN_TEST(test_serve);
    RUN_TEST(test_gen_db);
    curl_global_cleanup();
    TEST_MAIN_END();
}
