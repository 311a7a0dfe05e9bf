/* test_tune_cli.c - `qforge tune` end to end: usage errors (exit 2), the
 * JSON plan of this machine, plans for described machines, refusals
 * (exit 1), and autotune on a tiny synthetic model writing a config that
 * gen, serve and bench then read (and a bad config they all refuse).
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qf_test.h"
#include "tune/config.h"

static char g_tmp[256], g_model[300];

/* Run `ENV qforge ARGS` through the shell; stdout (and stderr when merge)
 * into *out (malloc'ed); returns the exit code. */
static int sh(char **out, bool merge, const char *env, const char *fmt, ...) {
    char args[4096], cmd[6000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s %s", env ? env : "", QF_QFORGE_EXE, args);
    return qf_test_sh(cmd, merge, out);
}

static char g_env[800]; /* XDG_CONFIG_HOME of the test: never the user's config */

static int qf(char **out, bool merge, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return sh(out, merge, g_env, "%s", args);
}

static void test_usage_errors(void) {
    const char *bad[] = {
        "tune --bogus",
        "tune --ctx abc",
        "tune --ctx 10",
        "tune -m",
        "tune --parallel 1,2",
        "tune --parallel 0",
        "tune --threads x",
        "tune --kv-type q4_0",
        "tune --autotune",
        "tune --write x.yaml",
        "tune --budget-s 5",
        "tune --autotune -m x.gguf --budget-s 0",
        "tune --autotune -m x.gguf --write a.yaml --no-write",
        "tune --autotune -m x.gguf --parallel 1,,2",
        "tune --autotune -m x.gguf --batch 0",
        "tune --autotune -m x.gguf --prompt-tokens 5000",
        "tune --autotune -m x.gguf --hw m.json",
        "bench -m x.gguf --config",
        "serve -m x.gguf --config",
        "gen doc.txt -o o.jsonl --config",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out;
        int rc = qf(&out, true, "%s", bad[i]);
        ASSERT_MSG(rc == 2, "'%s' -> %d: %s", bad[i], rc, out);
        ASSERT_MSG(strstr(out, "usage"), "'%s': %s", bad[i], out);
        free(out);
    }
    char *out;
    ASSERT_EQ_INT(qf(&out, false, "tune --help"), 0);
    ASSERT(strstr(out, "--autotune"));
    free(out);
}

static void test_json_this_machine(void) {
    char *out;
    ASSERT_EQ_INT(qf(&out, false, "tune --json"), 0);
    cJSON *j = cJSON_Parse(out);
    free(out);
    ASSERT(j);
    const char *keys[] = {"hw",  "model",    "fits",  "memory",  "threads",
                          "ctx", "parallel", "batch", "kv_type", "note"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        ASSERT_MSG(cJSON_HasObjectItem(j, keys[i]), "%s", keys[i]);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(j, "model")));
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "fits")));
    const cJSON *hw = cJSON_GetObjectItem(j, "hw");
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    int perf = cJSON_GetObjectItem(cJSON_GetObjectItem(hw, "cores"), "performance")->valueint;
    ASSERT(perf >= 1 && perf <= nproc);
    double total = cJSON_GetObjectItem(cJSON_GetObjectItem(hw, "memory"), "total")->valuedouble;
    double pages = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    ASSERT(total > 0 && total <= pages);
    const cJSON *inf = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "threads"), "inference");
    ASSERT_EQ_INT(cJSON_GetObjectItem(inf, "count")->valueint, perf);
    const cJSON *res = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "memory"), "pools"), "reserve");
    ASSERT(res && cJSON_GetObjectItem(res, "bytes")->valuedouble >= 1073741824.0 / 2);
    cJSON_Delete(j);

    /* with the tiny model: kv per token by hand: 2 layers x 2 x (2 heads x 16) x 2 bytes = 256 */
    ASSERT_EQ_INT(qf(&out, false, "tune --json -m %s --parallel 3", g_model), 0);
    j = cJSON_Parse(out);
    free(out);
    ASSERT(j);
    const cJSON *model = cJSON_GetObjectItem(j, "model");
    ASSERT(cJSON_IsObject(model));
    ASSERT_EQ_INT(cJSON_GetObjectItem(model, "kv_bytes_per_token")->valueint, 256);
    ASSERT_EQ_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "parallel"), "value")->valueint, 3);
    int ctx = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ctx"), "value")->valueint;
    ASSERT_EQ_INT(ctx, 4096); /* the synthetic model's trained context (synth's default) */
    const cJSON *kv = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "memory"), "pools"), "kv_cache");
    ASSERT_EQ_INT((long long)cJSON_GetObjectItem(kv, "bytes")->valuedouble, 4096LL * 3 * 256);
    cJSON_Delete(j);
}

static void test_described_machines(void) {
    char *out;
    ASSERT_EQ_INT(qf(&out, false, "tune --hw %s/tests/tune/machines/apple-m3-max-128g.json -m %s",
                     QF_SOURCE_DIR, g_model),
                  0);
    ASSERT(strstr(out, "8 performance + 4 efficiency"));
    ASSERT(strstr(out, "unified"));
    ASSERT(strstr(out, "on the efficiency cores"));
    free(out);
    ASSERT_EQ_INT(qf(&out, false, "tune --hw %s/tests/tune/machines/laptop-8g.json", QF_SOURCE_DIR),
                  0);
    ASSERT(strstr(out, "-m MODEL"));
    free(out);
    /* refused: 256 slots of 16M positions */
    ASSERT_EQ_INT(
        qf(&out, true,
           "tune --hw %s/tests/tune/machines/laptop-8g.json -m %s --ctx 16777216 --parallel 256",
           QF_SOURCE_DIR, g_model),
        1);
    ASSERT(strstr(out, "DOES NOT FIT"));
    ASSERT(strstr(out, "needs") && strstr(out, "have 8.0 GiB"));
    free(out);
    /* a bad description names the file and the key */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad-hw.json", g_tmp);
    FILE *f = fopen(bad, "w");
    ASSERT(f);
    fputs("{\"cores\":{\"performance\":2,\"turbo\":1},\"memory\":{\"total\":\"8G\"}}", f);
    fclose(f);
    ASSERT_EQ_INT(qf(&out, true, "tune --hw %s", bad), 1);
    ASSERT(strstr(out, bad) && strstr(out, "cores.turbo"));
    free(out);
    ASSERT_EQ_INT(qf(&out, true, "tune -m /nonexistent/model.gguf"), 1);
    free(out);
}

static void test_autotune_and_config(void) {
    char cfg[400], *out;
    snprintf(cfg, sizeof cfg, "%s/tuned.yaml", g_tmp);
    int rc = qf(&out, true,
                "tune --autotune -m %s --budget-s 20 --write %s --parallel 1,2,4 --gen-tokens 4",
                g_model, cfg);
    ASSERT_MSG(rc == 0, "%s", out);
    ASSERT(strstr(out, "best: --threads"));
    ASSERT(strstr(out, "wrote"));
    free(out);
    qf_config c;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_config_load(cfg, &c, &err), QF_OK);
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    ASSERT(c.threads >= 1 && c.threads <= nproc);
    ASSERT(c.parallel == 1 || c.parallel == 2 || c.parallel == 4);
    ASSERT(c.batch >= 1);
    ASSERT(c.tokens_per_s > 0);
    ASSERT(strstr(c.model, "tiny.gguf"));

    /* bench, serve and gen read it */
    ASSERT_EQ_INT(qf(&out, true, "bench -m %s --config %s -p 8 -n 4 -r 1", g_model, cfg), 0);
    ASSERT(strstr(out, "settings from") && strstr(out, cfg));
    free(out);
    ASSERT_EQ_INT(qf(&out, true, "bench -m %s --config %s --parallel 2 -n 4", g_model, cfg), 0);
    ASSERT(strstr(out, "\"parallel\":2"));
    free(out);
    char doc[400];
    snprintf(doc, sizeof doc, "%s/doc.txt", g_tmp);
    FILE *f = fopen(doc, "w");
    ASSERT(f);
    fputs("Paris is the capital of France. It lies on the Seine.\n", f);
    fclose(f);
    ASSERT_EQ_INT(qf(&out, true,
                     "gen %s -o %s/out.jsonl -m %s --config %s --dry-run --progress off", doc,
                     g_tmp, g_model, cfg),
                  0);
    ASSERT(strstr(out, "settings from"));
    free(out);
    rc = sh(&out, true, g_env,
            "serve -m %s --port 0 --config %s >%s/serve.log 2>&1 & P=$!; sleep 2; kill -TERM $P; "
            "wait $P; rc=$?; "
            "cat %s/serve.log; exit $rc",
            g_model, cfg, g_tmp, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    ASSERT(strstr(out, "settings from") && strstr(out, "serving on"));
    free(out);

    /* a bad config: every command refuses it, naming the file and the key */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad.yaml", g_tmp);
    f = fopen(bad, "w");
    ASSERT(f);
    fputs("threads: 2\nparalel: 4\n", f);
    fclose(f);
    const char *cmds[] = {"bench -m %s --config %s -p 8 -n 4 -r 1",
                          "serve -m %s --port 0 --config %s",
                          "gen doc.txt -o o.jsonl -m %s --config %s --dry-run"};
    for (int i = 0; i < 3; i++) {
        char fmt[200];
        snprintf(fmt, sizeof fmt, cmds[i], g_model, bad);
        rc = qf(&out, true, "%s", fmt);
        ASSERT_MSG(rc == 1, "%s -> %d: %s", fmt, rc, out);
        ASSERT_MSG(strstr(out, bad) && strstr(out, "paralel"), "%s: %s", fmt, out);
        free(out);
    }
    ASSERT_EQ_INT(
        qf(&out, true, "bench -m %s --config /nonexistent/c.yaml -p 8 -n 4 -r 1", g_model), 1);
    free(out);
}

static void test_default_location(void) {
    char *out, path[500];
    snprintf(path, sizeof path, "%s/xdg/qforge/config.yaml", g_tmp);
    int rc =
        qf(&out, true,
           "tune --autotune -m %s --budget-s 10 --parallel 1,2 --threads 1 --gen-tokens 2 --json",
           g_model);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    /* --json: stdout alone is one JSON object */
    rc = qf(&out, false,
            "tune --autotune -m %s --budget-s 10 --parallel 1,2 --threads 1 --gen-tokens 2 --json",
            g_model);
    ASSERT_EQ_INT(rc, 0);
    cJSON *j = cJSON_Parse(out);
    free(out);
    ASSERT(j);
    ASSERT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "trials")) >= 2);
    ASSERT_EQ_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "best"), "threads")->valueint, 1);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "config")->valuestring, path);
    cJSON_Delete(j);
    struct stat st;
    ASSERT(stat(path, &st) == 0);
    ASSERT_EQ_INT(qf(&out, true, "bench -m %s -p 8 -n 4 -r 1", g_model), 0);
    ASSERT(strstr(out, path));
    free(out);
    ASSERT_EQ_INT(qf(&out, true, "bench -m %s -p 8 -n 4 -r 1 --no-config", g_model), 0);
    ASSERT(!strstr(out, "settings from"));
    free(out);
    /* --no-write leaves the file alone */
    unlink(path);
    ASSERT_EQ_INT(
        qf(&out, true,
           "tune --autotune -m %s --budget-s 5 --parallel 1 --threads 1 --gen-tokens 2 --no-write",
           g_model),
        0);
    free(out);
    ASSERT(stat(path, &st) != 0);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/qf_tune_cli_%d", (int)getpid());
    mkdir(g_tmp, 0755);
    snprintf(g_env, sizeof g_env, "cd %s && XDG_CONFIG_HOME=%s/xdg", g_tmp, g_tmp);
    snprintf(g_model, sizeof g_model, "%s/tiny.gguf", g_tmp);
    if (qf(NULL, true,
           "model synth --arch llama --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 "
           "-o %s",
           g_model) != 0) {
        fprintf(stderr, "cannot make the tiny model\n");
        return 1;
    }
    RUN_TEST(test_usage_errors);
    RUN_TEST(test_json_this_machine);
    RUN_TEST(test_described_machines);
    RUN_TEST(test_autotune_and_config);
    RUN_TEST(test_default_location);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    TEST_MAIN_END();
}
