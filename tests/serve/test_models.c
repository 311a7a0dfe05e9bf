/* test_models.c - the model manager on small synthesized models: listing
 * and names, load on first use, one load for concurrent first uses,
 * max_loaded with least-recently-used unloading, keep-alive (timed, 0,
 * forever), explicit unload while held, and the memory budget refusal. */
#include <math.h>
#include <pthread.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "model/synth.h"
#include "qf_test.h"
#include "serve/models.h"

static char g_dir[256];

static void synth(const char *name, int seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", g_dir, name);
    qf_synth_params p = {0};
    p.arch = QF_ARCH_LLAMA;
    p.n_embd = 32;
    p.n_layer = 1;
    p.n_head = 2;
    p.n_head_kv = 1;
    p.n_ff = 64;
    p.n_ctx = 256;
    p.ftype = QF_FTYPE_Q8_0;
    p.seed = (uint64_t)seed;
    p.n_threads = 1;
    qf_err err = {0};
    if (qf_model_synth(&p, path, &err)) {
        fprintf(stderr, "synth %s: %s\n", path, err.msg);
        exit(1);
    }
}

static qf_models_params params(int max_loaded, double keep_alive) {
    qf_models_params p;
    memset(&p, 0, sizeof p);
    p.models_dir = g_dir;
    p.max_loaded = max_loaded;
    p.keep_alive_s = keep_alive;
    p.engine = qf_engine_params_default();
    p.engine.n_ctx = 128;
    p.engine.n_parallel = 2;
    p.engine.n_threads = 1;
    return p;
}

static int loaded_names(qf_models *mm, char *out, size_t cap) {
    qf_models_loaded_info info[8];
    int n = qf_models_loaded(mm, info, 8);
    out[0] = 0;
    for (int i = 0; i < n && i < 8; i++) {
        strncat(out, info[i].name, cap - strlen(out) - 2);
        strncat(out, " ", cap - strlen(out) - 1);
    }
    return n;
}

static void test_list_find(void) {
    qf_models_params p = params(1, 300);
    qf_err err = {0};
    qf_models *mm = qf_models_new(&p, &err);
    ASSERT_MSG(mm, "%s", err.msg);
    qf_model_file *v;
    int n;
    ASSERT_EQ_INT(qf_models_list(mm, &v, &n, &err), QF_OK);
    ASSERT_EQ_INT(n, 3);
    ASSERT_STR_EQ(v[0].name, "alpha");
    ASSERT_STR_EQ(v[1].name, "beta");
    ASSERT_STR_EQ(v[2].name, "gamma");
    ASSERT(v[0].size > 1000);
    qf_free(v);
    qf_model_file f;
    ASSERT_EQ_INT(qf_models_find(mm, "beta:latest", &f, &err), QF_OK);
    ASSERT_STR_EQ(f.name, "beta");
    ASSERT_EQ_INT(qf_models_find(mm, "delta", &f, &err), QF_ERR_NOT_FOUND);
    ASSERT(strstr(err.msg, "delta"));
    ASSERT_EQ_INT(qf_models_find(mm, "../alpha", &f, &err), QF_ERR_NOT_FOUND);
    char buf[256];
    ASSERT(qf_models_default(mm, buf, sizeof buf) == NULL); /* three models: no default */
    qf_models_free(mm);

    /* a single file: its stem is the name and the default */
    char path[512];
    snprintf(path, sizeof path, "%s/beta.gguf", g_dir);
    qf_models_params q = params(1, 300);
    q.models_dir = NULL;
    q.model_path = path;
    mm = qf_models_new(&q, &err);
    ASSERT(mm);
    ASSERT_STR_EQ(qf_models_default(mm, buf, sizeof buf), "beta");
    qf_models_free(mm);

    /* bad construction */
    q.model_path = "/nonexistent/x.gguf";
    ASSERT(qf_models_new(&q, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_IO);
    q.model_path = NULL;
    ASSERT(qf_models_new(&q, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    q.model_path = path;
    q.chat_template = "no-such-family";
    ASSERT(qf_models_new(&q, &err) == NULL);
    ASSERT(strstr(err.msg, "no-such-family"));
}

static void test_lru(void) {
    qf_models_params p = params(1, 300);
    qf_err err = {0};
    qf_models *mm = qf_models_new(&p, &err);
    char names[256];
    qf_models_entry *a = qf_models_acquire(mm, "alpha", NAN, NULL, &err);
    ASSERT_MSG(a, "%s", err.msg);
    ASSERT(qf_models_engine(a) && qf_models_model(a));
    ASSERT_STR_EQ(qf_models_name(a), "alpha");
    /* max_loaded 1 and alpha is held: beta cannot load */
    ASSERT(qf_models_acquire(mm, "beta", NAN, NULL, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_BUSY);
    qf_models_entry *a2 = qf_models_acquire(mm, "alpha", NAN, NULL, &err);
    ASSERT(a2 == a); /* already loaded: same entry */
    qf_models_release(mm, a2);
    qf_models_release(mm, a);
    qf_models_entry *b = qf_models_acquire(mm, "beta", NAN, NULL, &err);
    ASSERT(b);
    ASSERT_EQ_INT(loaded_names(mm, names, sizeof names), 1);
    ASSERT_STR_EQ(names, "beta ");
    qf_models_release(mm, b);
    qf_models_free(mm);

    /* max_loaded 2: the least recently used idle one goes */
    p = params(2, 300);
    mm = qf_models_new(&p, &err);
    qf_models_release(mm, qf_models_acquire(mm, "alpha", NAN, NULL, &err));
    usleep(2000);
    qf_models_release(mm, qf_models_acquire(mm, "beta", NAN, NULL, &err));
    usleep(2000);
    qf_models_release(mm, qf_models_acquire(mm, "alpha", NAN, NULL, &err)); /* alpha is now newer */
    usleep(2000);
    qf_models_entry *g = qf_models_acquire(mm, "gamma", NAN, NULL, &err);
    ASSERT(g);
    ASSERT_EQ_INT(loaded_names(mm, names, sizeof names), 2);
    ASSERT(strstr(names, "alpha") && strstr(names, "gamma") && !strstr(names, "beta"));
    qf_models_release(mm, g);
    qf_models_free(mm);
}

static void test_keep_alive(void) {
    qf_models_params p = params(3, 0.2);
    qf_err err = {0};
    qf_models *mm = qf_models_new(&p, &err);
    char names[256];
    qf_models_entry *a = qf_models_acquire(mm, "alpha", NAN, NULL, &err);
    ASSERT(a);
    double t = qf_now_s();
    ASSERT_EQ_INT(qf_models_expire(mm, t + 10), 0); /* held: never expires */
    qf_models_release(mm, a);
    ASSERT_EQ_INT(qf_models_expire(mm, qf_now_s()), 0);       /* not yet */
    ASSERT_EQ_INT(qf_models_expire(mm, qf_now_s() + 0.3), 1); /* 0.2 s later */
    ASSERT_EQ_INT(loaded_names(mm, names, sizeof names), 0);
    /* keep_alive 0 from the request: unloaded on release */
    a = qf_models_acquire(mm, "alpha", 0, NULL, &err);
    ASSERT(a);
    ASSERT_EQ_INT(loaded_names(mm, names, sizeof names), 1);
    qf_models_release(mm, a);
    ASSERT_EQ_INT(loaded_names(mm, names, sizeof names), 0);
    /* keep_alive < 0: forever; expires_at reported as never */
    a = qf_models_acquire(mm, "beta", -1, NULL, &err);
    qf_models_release(mm, a);
    ASSERT_EQ_INT(qf_models_expire(mm, qf_now_s() + 1e6), 0);
    qf_models_loaded_info info[4];
    ASSERT_EQ_INT(qf_models_loaded(mm, info, 4), 1);
    ASSERT(info[0].expires_at < 0);
    ASSERT_EQ_INT(info[0].refs, 0);
    ASSERT(info[0].stats.n_ctx == 128);
    /* explicit unload while held: happens at the release */
    a = qf_models_acquire(mm, "beta", NAN, NULL, &err);
    ASSERT_EQ_INT(qf_models_unload(mm, "beta"), QF_OK);
    ASSERT_EQ_INT(loaded_names(mm, names, sizeof names), 1);
    qf_models_release(mm, a);
    ASSERT_EQ_INT(loaded_names(mm, names, sizeof names), 0);
    ASSERT_EQ_INT(qf_models_unload(mm, "beta"), QF_ERR_NOT_FOUND);
    qf_models_free(mm);
}

static void test_budget(void) {
    qf_models_params p = params(2, 300);
    p.mem_budget = 4096; /* smaller than any model file */
    qf_err err = {0};
    qf_models *mm = qf_models_new(&p, &err);
    ASSERT(qf_models_acquire(mm, "alpha", NAN, NULL, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_RANGE);
    ASSERT_MSG(strstr(err.msg, "memory budget") && strstr(err.msg, "alpha"), "%s", err.msg);
    ASSERT(qf_models_acquire(mm, "nope", NAN, NULL, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_NOT_FOUND);
    qf_models_free(mm);
}

static qf_models *g_mm;
static qf_models_entry *g_got[4];
static void *grab(void *arg) {
    int i = (int)(intptr_t)arg;
    g_got[i] = qf_models_acquire(g_mm, "gamma", NAN, NULL, NULL);
    return NULL;
}

static void test_concurrent_first_use(void) {
    qf_models_params p = params(1, 300);
    g_mm = qf_models_new(&p, NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, grab, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        ASSERT(g_got[i] && g_got[i] == g_got[0]);
    qf_models_loaded_info info[2];
    ASSERT_EQ_INT(qf_models_loaded(g_mm, info, 2), 1);
    ASSERT_EQ_INT(info[0].refs, 4);
    for (int i = 0; i < 4; i++)
        qf_models_release(g_mm, g_got[i]);
    qf_models_free(g_mm);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/qf-test-models-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    synth("alpha", 1);
    synth("beta", 2);
    synth("gamma", 3);
    RUN_TEST(test_list_find);
    RUN_TEST(test_lru);
    RUN_TEST(test_keep_alive);
    RUN_TEST(test_budget);
    RUN_TEST(test_concurrent_first_use);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    TEST_MAIN_END();
}
