/* test_gpu_engine.c - the GPU wiring of the engine and the session
 * (n_gpu_layers, QFORGE_GPU_LAYERS) against the CPU path, on stories260K.
 *
 * With a GPU:
 *   - session: prompt logits and 24 greedy steps within 1e-3 of the CPU
 *     session (F32 weights, f32 kv), greedy ids identical;
 *   - engine: greedy ids identical to a CPU engine (f32 kv) for requests
 *     running together, a request with two completions sharing its prompt
 *     (fork + copy on write of the shared partial block, mirrored on the
 *     device), and a repeated prompt served from the prefix cache (the
 *     device blocks are reused);
 *   - partial offload (n_gpu_layers = N < n_layer: the CPU runs the first
 *     layers, the device the last N and the head): the same checks for the
 *     session and the engine; the device holds only its layers' weights and
 *     kv; a decode without the CPU pass attached is refused.
 * Without one (or without a GPU backend in the build) the same engine and
 * session calls with n_gpu_layers = -1 or N fall back to the CPU: results
 * equal the CPU's bit for bit. Both: the environment default and refusals.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/model.h"
#include "model/session.h"
#include "model/synth.h"
#include "qf_test.h"

static qf_model *g_m;
static bool g_gpu;

/* ---- environment default ---- */

static void test_env_default(void) {
    const char *old = getenv("QFORGE_GPU_LAYERS");
    char *saved = old ? strdup(old) : NULL;
    unsetenv("QFORGE_GPU_LAYERS");
    /* unset: auto where the build has a GPU backend (as Ollama offloads by
     * default), the CPU otherwise */
    const int32_t def = strcmp(qf_gpu_backend_name(), "none") ? QF_GPU_LAYERS_AUTO : 0;
    ASSERT_EQ_INT(qf_gpu_layers_env(), def);
    ASSERT_EQ_INT(qf_engine_params_default().n_gpu_layers, def);
    ASSERT_EQ_INT(qf_session_params_default().n_gpu_layers, def);
    setenv("QFORGE_GPU_LAYERS", "", 1);
    ASSERT_EQ_INT(qf_gpu_layers_env(), def);
    setenv("QFORGE_GPU_LAYERS", "auto", 1);
    ASSERT_EQ_INT(qf_gpu_layers_env(), QF_GPU_LAYERS_AUTO);
    ASSERT_EQ_INT(qf_engine_params_default().n_gpu_layers, QF_GPU_LAYERS_AUTO);
    setenv("QFORGE_GPU_LAYERS", "0", 1);
    ASSERT_EQ_INT(qf_gpu_layers_env(), 0);
    setenv("QFORGE_GPU_LAYERS", "-1", 1);
    ASSERT_EQ_INT(qf_engine_params_default().n_gpu_layers, -1);
    ASSERT_EQ_INT(qf_session_params_default().n_gpu_layers, -1);
    setenv("QFORGE_GPU_LAYERS", "12", 1);
    ASSERT_EQ_INT(qf_gpu_layers_env(), 12);
    const char *bad[] = {"x", "-2", "3x", "99999999999", "Auto", "auto1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("QFORGE_GPU_LAYERS", bad[i], 1);
        ASSERT_MSG(qf_gpu_layers_env() == 0, "QFORGE_GPU_LAYERS='%s'", bad[i]);
    }
    if (saved) setenv("QFORGE_GPU_LAYERS", saved, 1);
    else unsetenv("QFORGE_GPU_LAYERS");
    free(saved);
}

/* The arithmetic of --gpu-layers auto. */
static void test_fit_layers(void) {
    const size_t MiB = (size_t)1 << 20;
    /* 32 layers of 100 MiB, 500 MiB fixed, 1 GiB reserve */
    ASSERT_EQ_INT(qf_gpu_fit_layers(80000 * MiB, 1024 * MiB, 500 * MiB, 100 * MiB, 32), -1);
    ASSERT_EQ_INT(qf_gpu_fit_layers((1024 + 500 + 3200) * MiB, 1024 * MiB, 500 * MiB, 100 * MiB, 32), -1);
    ASSERT_EQ_INT(qf_gpu_fit_layers((1024 + 500 + 3199) * MiB, 1024 * MiB, 500 * MiB, 100 * MiB, 32), 31);
    ASSERT_EQ_INT(qf_gpu_fit_layers((1024 + 500 + 1250) * MiB, 1024 * MiB, 500 * MiB, 100 * MiB, 32), 12);
    ASSERT_EQ_INT(qf_gpu_fit_layers((1024 + 500 + 99) * MiB, 1024 * MiB, 500 * MiB, 100 * MiB, 32), 0);
    ASSERT_EQ_INT(qf_gpu_fit_layers(1500 * MiB, 1024 * MiB, 500 * MiB, 100 * MiB, 32), 0); /* not even the head */
    ASSERT_EQ_INT(qf_gpu_fit_layers(512 * MiB, 1024 * MiB, 0, 100 * MiB, 32), 0);          /* below the reserve */
    ASSERT_EQ_INT(qf_gpu_fit_layers(4096 * MiB, 0, 0, 0, 32), -1);
    ASSERT_EQ_INT(qf_gpu_fit_layers(4096 * MiB, 0, 0, 100 * MiB, 0), 0);
}

/* n_gpu_layers values the GPU cannot or need not take give NULL (CPU). */
static void test_try_new_refusals(void) {
    qf_kv_params kp = qf_model_kv_params(g_m, 128, 1, QF_TYPE_F32, 16);
    ASSERT(qf_gpu_fwd_try_new(g_m, &kp, 8, 64, 0) == NULL);
    ASSERT(qf_gpu_fwd_try_new(g_m, &kp, 8, 64, -3) == NULL);
    qf_gpu_fwd *f = qf_gpu_fwd_try_new(g_m, &kp, 8, 64, g_m->hp.n_layer + 5); /* more than there are: all */
    ASSERT(g_gpu ? f != NULL : f == NULL);
    if (f) ASSERT_EQ_INT(qf_gpu_fwd_cpu_layers(f), 0);
    qf_gpu_fwd_free(f);
    /* auto: a small model fits whole on any device; the CPU without one */
    f = qf_gpu_fwd_try_new(g_m, &kp, 8, 64, QF_GPU_LAYERS_AUTO);
    ASSERT(g_gpu ? f != NULL : f == NULL);
    if (f) ASSERT_EQ_INT(qf_gpu_fwd_cpu_layers(f), 0);
    qf_gpu_fwd_free(f);
    qf_err e = {0};
    ASSERT(qf_gpu_fwd_new(g_m, &kp, 8, 64, 0, &e) == NULL);
    ASSERT_EQ_INT(e.code, g_gpu ? QF_ERR_INVALID : QF_ERR_UNSUPPORTED);
    ASSERT(qf_gpu_fwd_new(g_m, &kp, 8, 64, -2, &e) == NULL);
    ASSERT_EQ_INT(e.code, g_gpu ? QF_ERR_INVALID : QF_ERR_UNSUPPORTED);
}

/* auto on a device: QFORGE_GPU_MEM_MIB caps what it plans with, so a cap
 * between the sizes it estimates gives a partial offload of exactly the
 * layers that fit, a tiny one the CPU, a malformed one is ignored. */
static void test_auto_cap(void) {
    qf_kv_params kp0 = qf_model_kv_params(g_m, 128, 1, QF_TYPE_F32, 16);
    qf_gpu_sizes z;
    if (!g_gpu) {
        ASSERT(!qf_gpu_auto_sizes(g_m, &kp0, 8, &z));
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "/tmp/qf-test-gpu-auto-%d.gguf", (int)getpid());
    qf_synth_params sp = {0};
    sp.arch = QF_ARCH_LLAMA, sp.n_embd = 2048, sp.n_layer = 4, sp.n_head = 16, sp.n_head_kv = 4, sp.n_ff = 5632;
    sp.ftype = QF_FTYPE_Q4_0, sp.seed = 5, sp.n_threads = 4;
    qf_err e = {0};
    ASSERT_MSG(qf_model_synth(&sp, path, &e) == QF_OK, "%s", e.msg);
    qf_model_params mp = {.no_tokenizer = true};
    qf_model *m = qf_model_load(path, &mp, &e);
    unlink(path);
    ASSERT_MSG(m, "%s", e.msg);
    if (!m) return;
    qf_kv_params kp = qf_model_kv_params(m, 256, 2, QF_TYPE_F16, 16);
    unsetenv("QFORGE_GPU_MEM_MIB");
    ASSERT(qf_gpu_auto_sizes(m, &kp, 8, &z));
    ASSERT_MSG(z.per_layer > ((size_t)20 << 20) && z.fixed > 0 && z.free > z.reserve, "per layer %zu, fixed %zu",
               z.per_layer, z.fixed);
    qf_gpu_fwd *f = qf_gpu_fwd_try_new(m, &kp, 8, 128, QF_GPU_LAYERS_AUTO); /* fits: all */
    ASSERT(f && qf_gpu_fwd_cpu_layers(f) == 0);
    qf_gpu_fwd_free(f);
    /* room for 2.5 layers after the reserve (5% of the cap + 256 MiB) and the rest */
    const double mib = 1048576.0;
    long cap = (long)((2.5 * (double)z.per_layer + (double)z.fixed + 256.0 * mib) / 0.95 / mib) + 1;
    char v[32];
    snprintf(v, sizeof v, "%ld", cap);
    setenv("QFORGE_GPU_MEM_MIB", v, 1);
    qf_gpu_sizes zc;
    ASSERT(qf_gpu_auto_sizes(m, &kp, 8, &zc) && zc.free <= (size_t)cap << 20);
    ASSERT_EQ_INT(qf_gpu_fit_layers(zc.free, zc.reserve, zc.fixed, zc.per_layer, 4), 2);
    f = qf_gpu_fwd_try_new(m, &kp, 8, 128, QF_GPU_LAYERS_AUTO);
    ASSERT_MSG(f && qf_gpu_fwd_cpu_layers(f) == 2, "cap %ld MiB: %d cpu layers", cap, f ? qf_gpu_fwd_cpu_layers(f) : -1);
    qf_gpu_fwd_free(f);
    setenv("QFORGE_GPU_MEM_MIB", "100", 1); /* below the reserve: the CPU */
    ASSERT(qf_gpu_fwd_try_new(m, &kp, 8, 128, QF_GPU_LAYERS_AUTO) == NULL);
    setenv("QFORGE_GPU_MEM_MIB", "lots", 1); /* malformed: ignored */
    f = qf_gpu_fwd_try_new(m, &kp, 8, 128, QF_GPU_LAYERS_AUTO);
    ASSERT(f && qf_gpu_fwd_cpu_layers(f) == 0);
    qf_gpu_fwd_free(f);
    unsetenv("QFORGE_GPU_MEM_MIB");
    qf_model_free(m);
}

/* A partial offload: the last N layers on the device, only their weights
 * and kv there; decode needs the CPU pass for the first layers. */
static void test_partial_new(void) {
    int32_t nl = g_m->hp.n_layer;
    ASSERT(nl > 2);
    qf_kv_params kp = qf_model_kv_params(g_m, 128, 1, QF_TYPE_F32, 16);
    qf_gpu_fwd *p = qf_gpu_fwd_try_new(g_m, &kp, 8, 64, 2);
    if (!g_gpu) {
        ASSERT(p == NULL); /* warned, the CPU runs */
        return;
    }
    qf_gpu_fwd *all = qf_gpu_fwd_try_new(g_m, &kp, 8, 64, -1);
    ASSERT(p && all);
    if (!p || !all) goto out;
    ASSERT_EQ_INT(qf_gpu_fwd_cpu_layers(p), nl - 2);
    qf_gpu_mem mp, ma;
    qf_gpu_fwd_mem(p, &mp);
    qf_gpu_fwd_mem(all, &ma);
    ASSERT_MSG(mp.weights < ma.weights && mp.kv * (size_t)nl == ma.kv * 2, "partial %zu/%zu, all %zu/%zu",
               mp.weights, mp.kv, ma.weights, ma.kv);
    ASSERT(qf_gpu_fwd_step_weight_bytes(p) < qf_gpu_fwd_step_weight_bytes(all));
    qf_err e = {0};
    qf_kv *kv = qf_kv_new(&kp, &e);
    qf_pool *pool = qf_pool_new(1, NULL, &e);
    qf_fwd *cpu = kv && pool ? qf_fwd_new(g_m, kv, pool, 8, 64, &e) : NULL;
    ASSERT(cpu);
    int32_t tok[1] = {5}, pos[1] = {0}, seq[1] = {0};
    int8_t want[1] = {1};
    qf_batch b = {1, tok, pos, seq, want};
    if (cpu) {
        ASSERT_EQ_INT(qf_gpu_fwd_decode(p, kv, &b, &e), QF_ERR_INVALID);
        ASSERT(strstr(e.msg, "qf_gpu_fwd_set_cpu") != NULL);
        qf_gpu_fwd_set_cpu(p, cpu);
        ASSERT_EQ_INT(qf_gpu_fwd_decode(p, kv, &b, &e), QF_OK);
        ASSERT_EQ_INT(qf_gpu_fwd_n_logits(p), 1);
        ASSERT(qf_gpu_fwd_logits(p, 0) != NULL);
    }
    qf_fwd_free(cpu);
    qf_pool_free(pool);
    qf_kv_free(kv);
out:
    qf_gpu_fwd_free(p);
    qf_gpu_fwd_free(all);
}

/* ---- session ---- */

static qf_session *session(int32_t n_gpu_layers) {
    qf_session_params p = qf_session_params_default();
    p.n_ctx = 96;
    p.n_batch = 32;
    p.n_threads = 2;
    p.kv_type = QF_TYPE_F32;
    p.n_gpu_layers = n_gpu_layers;
    qf_err e = {0};
    qf_session *s = qf_session_new(g_m, &p, &e);
    if (!s) fprintf(stderr, "session: %s\n", e.msg);
    return s;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void session_vs_cpu(int32_t n_gpu_layers) {
    enum { NP = 40, NG = 24 };
    int nv = g_m->hp.n_vocab;
    int32_t prompt[NP];
    for (int i = 0; i < NP; i++) prompt[i] = (i * 37 + 11) % nv;
    qf_session *c = session(0), *g = session(n_gpu_layers);
    ASSERT(c && g);
    qf_err e = {0};
    ASSERT_EQ_INT(qf_session_eval(c, prompt, NP, &e), QF_OK);
    ASSERT_EQ_INT(qf_session_eval(g, prompt, NP, &e), QF_OK);
    double worst = 0;
    int same = 0;
    for (int i = 0; i <= NG; i++) {
        const float *lc = qf_session_logits(c), *lg = qf_session_logits(g);
        ASSERT(lc && lg);
        for (int k = 0; k < nv; k++) {
            double d = fabs((double)lc[k] - lg[k]);
            if (!(d <= worst)) worst = d;
        }
        int tc = argmax(lc, nv), tg = argmax(lg, nv);
        if (tc != tg) break;
        same++;
        if (i == NG) break;
        ASSERT_EQ_INT(qf_session_eval(c, &tc, 1, &e), QF_OK);
        ASSERT_EQ_INT(qf_session_eval(g, &tg, 1, &e), QF_OK);
    }
    /* rewinding forgets positions on both paths alike */
    qf_session_rewind(c, 10);
    qf_session_rewind(g, 10);
    ASSERT_EQ_INT(qf_session_eval(c, &prompt[10], 5, &e), QF_OK);
    ASSERT_EQ_INT(qf_session_eval(g, &prompt[10], 5, &e), QF_OK);
    for (int k = 0; k < nv; k++) {
        double d = fabs((double)qf_session_logits(c)[k] - qf_session_logits(g)[k]);
        if (!(d <= worst)) worst = d;
    }
    qf_session_free(c);
    qf_session_free(g);
    fprintf(stderr, "  session %s, --gpu-layers %d: max|d| vs cpu %.2e, greedy same %d/%d\n",
            g_gpu ? "gpu" : "fallback", n_gpu_layers, worst, same, NG + 1);
    ASSERT_EQ_INT(same, NG + 1);
    if (g_gpu) ASSERT_MSG(worst <= 1e-3, "session logits differ from the CPU by %g", worst);
    else ASSERT_MSG(worst == 0, "the fallback is not the CPU path: %g", worst);
}

static void test_session(void) {
    session_vs_cpu(-1);
    session_vs_cpu(2);                     /* the last two layers on the device */
    session_vs_cpu(g_m->hp.n_layer - 1);   /* all but the first */
}

/* ---- engine ---- */

enum { MAXC = 2, MAXT = 64 };

typedef struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t toks[MAXC][MAXT];
    int n_toks[MAXC];
    int finals, want;
    qf_usage usage;
    qf_finish finish[MAXC];
} collect;

static void on_event(void *ud, const qf_event *ev) {
    collect *c = ud;
    pthread_mutex_lock(&c->mu);
    int i = ev->index;
    if (i >= 0 && i < MAXC) {
        if (ev->token >= 0 && c->n_toks[i] < MAXT) c->toks[i][c->n_toks[i]++] = ev->token;
        if (ev->finish) {
            c->finish[i] = ev->finish;
            if (i == 0) c->usage = *ev->usage;
        }
    }
    if (ev->finish && ++c->finals == c->want) pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void collect_init(collect *c, int want) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->want = want;
}

static void collect_wait(collect *c) {
    pthread_mutex_lock(&c->mu);
    while (c->finals < c->want) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static qf_status submit(qf_engine *e, const int32_t *prompt, int n, int n_comp, int max_tokens, collect *c) {
    qf_request r;
    memset(&r, 0, sizeof r);
    r.prompt = prompt;
    r.n_prompt = n;
    r.sample = qf_sample_params_default();
    r.sample.temperature = 0;
    r.sample.seed = 1;
    r.max_tokens = max_tokens;
    r.n = n_comp;
    r.ignore_eos = true;
    r.on_event = on_event;
    r.ud = c;
    qf_err err = {0};
    qf_status st = qf_engine_submit(e, &r, NULL, &err);
    if (st != QF_OK) fprintf(stderr, "submit: %s\n", err.msg);
    return st;
}

enum { NREQ = 4, NGEN = 40 };

/* Tokens of one workload: NREQ prompts together (the last with two
 * completions), then prompt 0 again (prefix cache). out: (NREQ + 1, MAXC). */
typedef struct workload {
    collect c[NREQ + 1];
} workload;

static int run_workload(int32_t n_gpu_layers, workload *w) {
    static int32_t prompts[NREQ][60];
    int nv = g_m->hp.n_vocab;
    for (int r = 0; r < NREQ; r++)
        for (int i = 0; i < 60; i++) prompts[r][i] = i == 0 ? 1 : 3 + (i * 31 + r * 17) % (nv - 3);
    qf_engine_params p = qf_engine_params_default();
    p.n_ctx = 128;
    p.n_parallel = NREQ + 1;
    p.kv_type = QF_TYPE_F32;
    p.n_threads = 2;
    p.n_gpu_layers = n_gpu_layers;
    qf_err e = {0};
    qf_engine *eng = qf_engine_new(g_m, &p, &e);
    if (!eng) {
        fprintf(stderr, "engine: %s\n", e.msg);
        return -1;
    }
    int rc = 0;
    for (int r = 0; r < NREQ && !rc; r++) {
        int nc = r == NREQ - 1 ? 2 : 1;
        collect_init(&w->c[r], nc);
        /* lengths not a multiple of the block size: a fork shares a partial block */
        rc = submit(eng, prompts[r], 21 + 7 * r, nc, NGEN, &w->c[r]) != QF_OK;
    }
    for (int r = 0; r < NREQ && !rc; r++) collect_wait(&w->c[r]);
    collect_init(&w->c[NREQ], 1);
    if (!rc) rc = submit(eng, prompts[0], 21, 1, NGEN, &w->c[NREQ]) != QF_OK;
    if (!rc) collect_wait(&w->c[NREQ]);
    qf_engine_free(eng);
    return rc;
}

static void engine_vs_cpu(int32_t n_gpu_layers) {
    static workload cpu, gpu;
    ASSERT_EQ_INT(run_workload(0, &cpu), 0);
    ASSERT_EQ_INT(run_workload(n_gpu_layers, &gpu), 0);
    for (int r = 0; r <= NREQ; r++) {
        int nc = r == NREQ - 1 ? 2 : 1;
        for (int k = 0; k < nc; k++) {
            ASSERT_EQ_INT(gpu.c[r].n_toks[k], NGEN);
            ASSERT_EQ_INT(cpu.c[r].n_toks[k], NGEN);
            int same = 0;
            while (same < NGEN && gpu.c[r].toks[k][same] == cpu.c[r].toks[k][same]) same++;
            ASSERT_MSG(same == NGEN, "request %d completion %d: greedy ids differ from the CPU engine at %d", r, k,
                       same);
        }
    }
    /* the repeated prompt found its blocks in the prefix cache on both paths */
    ASSERT(gpu.c[NREQ].usage.cached_tokens > 0);
    ASSERT_EQ_INT(gpu.c[NREQ].usage.cached_tokens, cpu.c[NREQ].usage.cached_tokens);
    fprintf(stderr,
            "  engine %s, --gpu-layers %d: %d requests x %d greedy tokens identical to the CPU engine (%d cached)\n",
            g_gpu ? "gpu" : "fallback", n_gpu_layers, NREQ + 2, NGEN, gpu.c[NREQ].usage.cached_tokens);
}

static void test_engine(void) {
    engine_vs_cpu(-1);
    engine_vs_cpu(2); /* partial: the CPU's layers on the host kv, the device's on its own */
}

int main(void) {
    char path[1024];
    qf_testdata("models/stories260K.gguf", path, sizeof path);
    qf_err e = {0};
    g_m = qf_model_load(path, NULL, &e);
    if (!g_m) {
        fprintf(stderr, "%s: %s\n", path, e.msg);
        return 1;
    }
    char name[256];
    g_gpu = qf_gpu_available(name, sizeof name);
    fprintf(stderr, "backend %s, device: %s\n", qf_gpu_backend_name(), g_gpu ? name : "none (CPU fallback checked)");
    RUN_TEST(test_env_default);
    RUN_TEST(test_fit_layers);
    RUN_TEST(test_try_new_refusals);
    RUN_TEST(test_auto_cap);
    RUN_TEST(test_partial_new);
    RUN_TEST(test_session);
    RUN_TEST(test_engine);
    qf_model_free(g_m);
    TEST_MAIN_END();
}
