/* test_tune_config.c - the config file: round trip, default location and
 * resolution, and bad files (each error names the file, the line and the
 * key).
 */
#include <stdlib.h>
#include <unistd.h>

#include "base/mem.h"
#include "qf_test.h"
#include "tune/config.h"

static char g_dir[256];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_roundtrip(void) {
    qf_config c, d;
    qf_config_init(&c);
    c.threads = 6;
    c.parallel = 16;
    c.batch = 256;
    c.ctx = 8192;
    c.has_kv_type = true;
    c.kv_type = QF_TYPE_Q8_0;
    snprintf(c.model, sizeof c.model, "/models/we\"ird \\ name\t.gguf");
    c.tokens_per_s = 41.25;
    char path[512];
    snprintf(path, sizeof path, "%s/sub/dir/config.yaml", g_dir); /* two missing folders */
    qf_err err = {0};
    ASSERT_EQ_INT(qf_config_save(path, &c, "first line\nsecond: line", &err), QF_OK);
    ASSERT_EQ_INT(qf_config_load(path, &d, &err), QF_OK);
    ASSERT_EQ_INT(d.threads, 6);
    ASSERT_EQ_INT(d.parallel, 16);
    ASSERT_EQ_INT(d.batch, 256);
    ASSERT_EQ_INT(d.ctx, 8192);
    ASSERT(d.has_kv_type);
    ASSERT_EQ_INT(d.kv_type, QF_TYPE_Q8_0);
    ASSERT_STR_EQ(d.model, c.model);
    ASSERT_NEAR(d.tokens_per_s, 41.25, 1e-9);
    ASSERT_STR_EQ(d.path, path);
    /* the comment lines are there, as comments */
    FILE *f = fopen(path, "r");
    ASSERT(f);
    char line[256];
    ASSERT(fgets(line, sizeof line, f));
    fclose(f);
    ASSERT_STR_EQ(line, "# first line\n");

    /* unset keys are not written and stay unset */
    qf_config_init(&c);
    c.threads = 1;
    ASSERT_EQ_INT(qf_config_save(path, &c, NULL, &err), QF_OK);
    ASSERT_EQ_INT(qf_config_load(path, &d, &err), QF_OK);
    ASSERT_EQ_INT(d.threads, 1);
    ASSERT_EQ_INT(d.parallel, 0);
    ASSERT_EQ_INT(d.batch, 0);
    ASSERT_EQ_INT(d.ctx, 0);
    ASSERT(!d.has_kv_type);
    ASSERT_STR_EQ(d.model, "");

    /* out of range values are not written */
    c.parallel = 999;
    ASSERT_EQ_INT(qf_config_save(path, &c, NULL, &err), QF_ERR_INVALID);
}

static void test_parse_forms(void) {
    qf_config c;
    qf_err err = {0};
    const char *ok = "# comment\n---\nversion: 1\nthreads: 4   # trailing comment\nparallel: "
                     "\"8\"\nkv_type: f32\n";
    ASSERT_EQ_INT(qf_config_parse(ok, strlen(ok), "ok.yaml", &c, &err), QF_OK);
    ASSERT_EQ_INT(c.threads, 4);
    ASSERT_EQ_INT(c.parallel, 8);
    ASSERT_EQ_INT(c.kv_type, QF_TYPE_F32);
    /* empty and comment-only files: nothing set */
    ASSERT_EQ_INT(qf_config_parse("", 0, "empty.yaml", &c, &err), QF_OK);
    ASSERT_EQ_INT(c.threads, 0);
    ASSERT_EQ_INT(qf_config_parse("# only\n", 7, "c.yaml", &c, &err), QF_OK);
    ASSERT_EQ_INT(qf_config_parse("---\n", 4, "d.yaml", &c, &err), QF_OK);
    /* a flow mapping is the same mapping */
    ASSERT_EQ_INT(qf_config_parse("{threads: 3, batch: 64}", 23, "flow.yaml", &c, &err), QF_OK);
    ASSERT_EQ_INT(c.threads, 3);
    ASSERT_EQ_INT(c.batch, 64);
}

static void test_bad(void) {
    struct {
        const char *text, *needle;
        qf_status code;
    } cases[] = {
        {"threads: 2\nthread: 3\n", ":2: unknown key 'thread'", QF_ERR_INVALID},
        {"threads: 0\n", ":1: threads: '0'", QF_ERR_INVALID},
        {"threads: 1025\n", "threads: '1025'", QF_ERR_INVALID},
        {"threads: two\n", "threads: 'two'", QF_ERR_INVALID},
        {"threads: 2.5\n", "threads: '2.5'", QF_ERR_INVALID},
        {"threads:\n", "threads: ''", QF_ERR_INVALID},
        {"parallel: 257\n", "parallel: '257'", QF_ERR_INVALID},
        {"batch: -1\n", "batch: '-1'", QF_ERR_INVALID},
        {"ctx: 10\n", "ctx: '10'", QF_ERR_INVALID},
        {"kv_type: q4_0\n", "kv_type: 'q4_0'", QF_ERR_INVALID},
        {"tokens_per_s: fast\n", "tokens_per_s", QF_ERR_INVALID},
        {"version: 2\n", "version: 2 is not supported", QF_ERR_INVALID},
        {"threads: 2\nthreads: 3\n", ":2: threads: given twice", QF_ERR_FORMAT},
        {"threads: [1, 2]\n", "threads: expected a single value, not a list", QF_ERR_FORMAT},
        {"engine:\n  threads: 2\n", "expected a single value, not a mapping", QF_ERR_FORMAT},
        {"- threads\n", "not a list", QF_ERR_FORMAT},
        {"threads: 2\n---\nthreads: 3\n", "second YAML document", QF_ERR_FORMAT},
        {"just text\n", "expected a mapping", QF_ERR_FORMAT},
        {"threads: \"2\n", "YAML syntax error", QF_ERR_FORMAT},
        {"a: &x 1\nthreads: *x\n", "", QF_ERR_INVALID}, /* unknown key 'a' first */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        qf_config c;
        qf_err err = {0};
        qf_status st = qf_config_parse(cases[i].text, strlen(cases[i].text), "bad.yaml", &c, &err);
        ASSERT_MSG(st == cases[i].code, "case %zu: status %d (%s)", i, (int)st, err.msg);
        ASSERT_MSG(!strncmp(err.msg, "bad.yaml", 8) && strstr(err.msg, cases[i].needle),
                   "case %zu: '%s'", i, err.msg);
        ASSERT_EQ_INT(c.threads, 0); /* nothing half-applied */
    }
    qf_config c;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_config_parse("threads: *x\n", 12, "alias.yaml", &c, &err), QF_ERR_FORMAT);
    ASSERT_EQ_INT(qf_config_load("/nonexistent/config.yaml", &c, &err), QF_ERR_IO);
    ASSERT(strstr(err.msg, "/nonexistent/config.yaml"));
}

static void test_default_path_and_resolve(void) {
    char xdg[300], path[400];
    snprintf(xdg, sizeof xdg, "%s/xdg", g_dir);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    char *p = qf_config_default_path();
    ASSERT(p);
    snprintf(path, sizeof path, "%s/qforge/config.yaml", xdg);
    ASSERT_STR_EQ(p, path);
    qf_free(p);
    setenv("XDG_CONFIG_HOME", "relative/ignored", 1);
    setenv("HOME", "/home/someone", 1);
    p = qf_config_default_path();
    ASSERT_STR_EQ(p, "/home/someone/.config/qforge/config.yaml");
    qf_free(p);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("HOME");
    ASSERT(qf_config_default_path() == NULL);

    setenv("XDG_CONFIG_HOME", xdg, 1);
    qf_config c;
    bool found = true;
    qf_err err = {0};
    /* no default file: nothing, no error */
    ASSERT_EQ_INT(qf_config_resolve(NULL, true, &c, &found, &err), QF_OK);
    ASSERT(!found);
    /* an explicit file that is missing is an error */
    ASSERT_EQ_INT(qf_config_resolve("/nonexistent/x.yaml", true, &c, &found, &err), QF_ERR_IO);
    ASSERT(!found);
    /* a default file is read, unless use_default is off */
    qf_config w;
    qf_config_init(&w);
    w.parallel = 12;
    ASSERT_EQ_INT(qf_config_save(path, &w, NULL, &err), QF_OK);
    ASSERT_EQ_INT(qf_config_resolve(NULL, true, &c, &found, &err), QF_OK);
    ASSERT(found);
    ASSERT_EQ_INT(c.parallel, 12);
    ASSERT_STR_EQ(c.path, path);
    ASSERT_EQ_INT(qf_config_resolve(NULL, false, &c, &found, &err), QF_OK);
    ASSERT(!found);
    ASSERT_EQ_INT(c.parallel, 0);
    /* an explicit file wins over the default */
    char other[400];
    snprintf(other, sizeof other, "%s/other.yaml", g_dir);
    write_file(other, "parallel: 3\n");
    ASSERT_EQ_INT(qf_config_resolve(other, true, &c, &found, &err), QF_OK);
    ASSERT_EQ_INT(c.parallel, 3);
    /* a bad default file is an error naming it */
    write_file(path, "parallel: lots\n");
    ASSERT_EQ_INT(qf_config_resolve(NULL, true, &c, &found, &err), QF_ERR_INVALID);
    ASSERT(strstr(err.msg, path) && strstr(err.msg, "parallel"));
    unsetenv("XDG_CONFIG_HOME");
}

static void test_alloc_failures(void) {
    const char *txt = "threads: 2\nparallel: 4\nmodel: \"m.gguf\"\n";
    for (long n = 0; n < 30; n++) {
        qf_config c;
        qf_err err = {0};
        qf_mem_fail_after(n);
        qf_status st = qf_config_parse(txt, strlen(txt), "f.yaml", &c, &err);
        qf_mem_fail_after(-1);
        ASSERT(st == QF_OK || st == QF_ERR_NOMEM);
        if (st == QF_OK) ASSERT_EQ_INT(c.parallel, 4);
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/qf_tune_config_%d", (int)getpid());
    mkdir(g_dir, 0755);
    RUN_TEST(test_roundtrip);
    RUN_TEST(test_parse_forms);
    RUN_TEST(test_bad);
    RUN_TEST(test_default_path_and_resolve);
    RUN_TEST(test_alloc_failures);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", g_dir);
    TEST_MAIN_END();
}
