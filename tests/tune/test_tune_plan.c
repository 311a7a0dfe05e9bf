/* test_tune_plan.c - hardware descriptions and resource plans on fixed fake
 * machines (the JSON files in tests/tune/machines).
 *
 * Every expected number is worked out here from the rules in plan.h and the
 * model shapes below (kv bytes per token = n_layer x 2 x n_head_kv x
 * head_dim x 2 bytes for f16), not copied from the planner's output. Only
 * the engine's step scratch comes from another module
 * (qf_fwd_scratch_bytes, the model layer's contract).
 */
#include <stdint.h>

#include "base/mem.h"
#include "qf_test.h"
#include "tune/hw.h"
#include "tune/plan.h"

#define GIB ((size_t)1 << 30)
#define MIB ((size_t)1 << 20)

static const char *machine(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/tests/tune/machines/%s.json", QF_SOURCE_DIR, name);
    return buf;
}

static qf_status load(const char *name, qf_hw *hw) {
    char path[1024];
    qf_err err = {0};
    qf_status st = qf_hw_load(machine(name, path, sizeof path), hw, &err);
    if (st) fprintf(stderr, "load %s: %s\n", name, err.msg);
    return st;
}

/* Llama-3-8B-like: kv per token 32 x 2 x (8 x 128) x 2 = 131072 B. */
static qf_tune_model llama8b(void) {
    qf_tune_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "llama8b");
    m.weight_bytes = 4 * GIB + 512 * MIB; /* 4.5 GiB */
    m.hp.n_layer = 32, m.hp.n_head = 32, m.hp.n_head_kv = 8, m.hp.head_dim = 128,
    m.hp.head_dim_v = 128;
    m.hp.n_embd = 4096, m.hp.n_ff = 14336, m.hp.n_vocab = 128256, m.hp.n_rot = 128,
    m.hp.n_ctx_train = 8192;
    return m;
}

/* Llama-70B-like: kv per token 80 x 2 x (8 x 128) x 2 = 327680 B. */
static qf_tune_model llama70b(void) {
    qf_tune_model m = llama8b();
    snprintf(m.name, sizeof m.name, "llama70b");
    m.weight_bytes = 40 * GIB;
    m.hp.n_layer = 80, m.hp.n_head = 64, m.hp.n_embd = 8192, m.hp.n_ff = 28672;
    return m;
}

/* A 1B like /tmp/models/synth-1b: kv per token 16 x 2 x (8 x 64) x 2 = 32768 B. */
static qf_tune_model small1b(void) {
    qf_tune_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "small1b");
    m.weight_bytes = 638251008;
    m.hp.n_layer = 16, m.hp.n_head = 32, m.hp.n_head_kv = 8, m.hp.head_dim = 64,
    m.hp.head_dim_v = 64;
    m.hp.n_embd = 2048, m.hp.n_ff = 8192, m.hp.n_vocab = 32000, m.hp.n_rot = 64,
    m.hp.n_ctx_train = 4096;
    return m;
}

static size_t scratch(const qf_tune_model *tm, int32_t batch, int32_t ctx, int threads) {
    qf_model m;
    memset(&m, 0, sizeof m);
    m.hp = tm->hp;
    return qf_fwd_scratch_bytes(&m, batch, ctx, threads);
}

static size_t kv_per_token(const qf_tune_model *m) {
    return (size_t)m->hp.n_layer * 2 * (size_t)m->hp.n_head_kv * (size_t)m->hp.head_dim * 2;
}

/* ---- hardware descriptions ---- */

static void test_machines_load(void) {
    qf_hw hw;
    ASSERT_EQ_INT(load("apple-m3-max-128g", &hw), QF_OK);
    ASSERT_STR_EQ(hw.name, "apple-m3-max-128g");
    ASSERT_EQ_INT(hw.n_perf, 8);
    ASSERT_EQ_INT(hw.n_eff, 4);
    ASSERT_EQ_INT(hw.n_logical, 12);
    ASSERT(hw.unified);
    ASSERT(!hw.gpu);
    ASSERT_EQ_INT(hw.mem_total, 128 * GIB);
    ASSERT_EQ_INT(hw.mem_available, 120 * GIB);
    ASSERT_EQ_INT(hw.l2_bytes, 16 * MIB);
    ASSERT_EQ_INT(load("vm-2core-24g", &hw), QF_OK);
    ASSERT_EQ_INT(hw.mem_total, 25276063744ull);
    ASSERT_EQ_INT(hw.l3_bytes, 480 * MIB);
    ASSERT_EQ_INT(load("gpu-h100-80g", &hw), QF_OK);
    ASSERT(hw.gpu);
    ASSERT_EQ_INT(hw.gpu_mem, 80 * GIB);
    ASSERT_STR_EQ(hw.gpu_name, "NVIDIA H100 80GB HBM3");
    ASSERT_EQ_INT(hw.n_numa, 2);
    ASSERT_EQ_INT(load("laptop-8g", &hw), QF_OK);
    ASSERT_EQ_INT(hw.l2_bytes, 1280 * 1024);
    ASSERT_EQ_INT(load("x86-16core-64g", &hw), QF_OK);
    ASSERT_EQ_INT(hw.n_logical, 32);
}

static void test_hw_json_roundtrip(void) {
    const char *names[] = {"apple-m3-max-128g", "vm-2core-24g", "x86-16core-64g", "gpu-h100-80g",
                           "laptop-8g"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        qf_hw a, b;
        ASSERT_EQ_INT(load(names[i], &a), QF_OK);
        char *js = qf_hw_to_json(&a);
        ASSERT(js);
        qf_err err = {0};
        ASSERT_EQ_INT(qf_hw_parse(js, "roundtrip", &b, &err), QF_OK);
        qf_free(js);
        ASSERT(memcmp(&a, &b, sizeof a) == 0);
    }
    /* detection: plausible, and its JSON parses back */
    qf_hw d, e;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_hw_detect(&d, &err), QF_OK);
    ASSERT(d.n_perf >= 1);
    ASSERT(d.n_logical >= d.n_perf + d.n_eff);
    ASSERT(d.mem_total >= 64 * MIB);
    ASSERT(d.mem_available <= d.mem_total);
    ASSERT(d.n_numa >= 1);
    char *js = qf_hw_to_json(&d);
    ASSERT(js);
    ASSERT_EQ_INT(qf_hw_parse(js, "detected.json", &e, &err), QF_OK);
    qf_free(js);
    ASSERT_EQ_INT(e.mem_total, d.mem_total);
    ASSERT_EQ_INT(e.n_perf, d.n_perf);
}

static void test_hw_bad(void) {
    struct {
        const char *json, *needle;
        qf_status code;
    } cases[] = {
        {"{", "not valid JSON", QF_ERR_FORMAT},
        {"[1]", "object", QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4},\"memory\":{\"total\":\"8G\"},\"gpus\":null}", "'gpus'",
         QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4,\"big\":2},\"memory\":{\"total\":\"8G\"}}", "'cores.big'",
         QF_ERR_INVALID},
        {"{\"cores\":{\"efficiency\":4},\"memory\":{\"total\":\"8G\"}}",
         "cores.performance is required", QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":0},\"memory\":{\"total\":\"8G\"}}", "cores.performance",
         QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":2.5},\"memory\":{\"total\":\"8G\"}}", "cores.performance",
         QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4,\"efficiency\":4,\"logical\":6},\"memory\":{\"total\":"
         "\"8G\"}}",
         "cores.logical", QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4}}", "memory is required", QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4},\"memory\":{\"total\":\"8X\"}}", "memory.total",
         QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4},\"memory\":{\"total\":-5}}", "memory.total",
         QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4},\"memory\":{\"total\":1000}}", "below 64 MiB",
         QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4},\"memory\":{\"total\":\"8G\",\"available\":\"9G\"}}",
         "memory.available", QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4},\"memory\":{\"total\":\"8G\",\"unified\":1}}",
         "memory.unified", QF_ERR_INVALID},
        {"{\"cores\":{\"performance\":4},\"memory\":{\"total\":\"8G\"},\"gpu\":{\"memory\":\"80G\","
         "\"vram\":1}}",
         "'gpu.vram'", QF_ERR_INVALID},
        {"{\"cores\":\"many\",\"memory\":{\"total\":\"8G\"}}", "cores: expected an object",
         QF_ERR_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        qf_hw hw;
        qf_err err = {0};
        qf_status st = qf_hw_parse(cases[i].json, "fake.json", &hw, &err);
        ASSERT_MSG(st == cases[i].code, "case %zu: status %d", i, (int)st);
        ASSERT_MSG(strstr(err.msg, "fake.json") && strstr(err.msg, cases[i].needle),
                   "case %zu: '%s'", i, err.msg);
    }
    qf_hw hw;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_hw_load("/nonexistent/hw.json", &hw, &err), QF_ERR_IO);
    ASSERT(strstr(err.msg, "/nonexistent/hw.json"));
    /* minimal description: defaults filled in */
    ASSERT_EQ_INT(qf_hw_parse("{\"cores\":{\"performance\":3},\"memory\":{\"total\":1073741824}}",
                              "dir/min.v1.json", &hw, &err),
                  QF_OK);
    ASSERT_STR_EQ(hw.name, "min");
    ASSERT_EQ_INT(hw.n_logical, 3);
    ASSERT_EQ_INT(hw.n_numa, 1);
    ASSERT(!hw.gpu && !hw.unified);
}

/* ---- plans ---- */

static void test_hardware_only(void) {
    qf_hw hw;
    qf_plan pl;
    qf_err err = {0};
    ASSERT_EQ_INT(load("apple-m3-max-128g", &hw), QF_OK);
    ASSERT_EQ_INT(qf_plan_make(&hw, NULL, NULL, &pl, &err), QF_OK);
    ASSERT(!pl.has_model && pl.fits);
    ASSERT_EQ_INT(pl.threads, 8);
    ASSERT_EQ_INT(pl.io_threads, 4); /* the 4 efficiency cores */
    ASSERT(pl.io_on_eff);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_RESERVE].bytes, 16 * GIB); /* 128/8 = 16, at the cap */
    ASSERT_EQ_INT(pl.mem[QF_PLAN_FREE].bytes, 112 * GIB);
    ASSERT(strstr(pl.note, "-m MODEL"));

    ASSERT_EQ_INT(load("vm-2core-24g", &hw), QF_OK);
    ASSERT_EQ_INT(qf_plan_make(&hw, NULL, NULL, &pl, &err), QF_OK);
    ASSERT_EQ_INT(pl.threads, 2);
    ASSERT_EQ_INT(pl.io_threads, 1); /* shared: no efficiency cores */
    ASSERT(!pl.io_on_eff);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_RESERVE].bytes, 25276063744ull / 8);
    ASSERT_NEAR(pl.mem[QF_PLAN_RESERVE].share, 0.125, 1e-9);

    ASSERT_EQ_INT(load("x86-16core-64g", &hw), QF_OK);
    ASSERT_EQ_INT(qf_plan_make(&hw, NULL, NULL, &pl, &err), QF_OK);
    ASSERT_EQ_INT(pl.threads, 16);
    ASSERT_EQ_INT(pl.io_threads, 2); /* above 8 cores: 2 shared */
    ASSERT_EQ_INT(pl.mem[QF_PLAN_RESERVE].bytes, 8 * GIB);

    ASSERT_EQ_INT(load("laptop-8g", &hw), QF_OK);
    ASSERT_EQ_INT(qf_plan_make(&hw, NULL, NULL, &pl, &err), QF_OK);
    ASSERT_EQ_INT(pl.threads, 2);
    ASSERT_EQ_INT(pl.io_threads, 4); /* 8 efficiency cores, at most 4 */
    ASSERT_EQ_INT(pl.mem[QF_PLAN_RESERVE].bytes, 1 * GIB);

    ASSERT_EQ_INT(load("gpu-h100-80g", &hw), QF_OK);
    ASSERT_EQ_INT(qf_plan_make(&hw, NULL, NULL, &pl, &err), QF_OK);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_RESERVE].bytes, 16 * GIB); /* 256/8 = 32, capped at 16 */
    ASSERT(strstr(pl.note, "NUMA"));
}

static void test_plan_apple(void) {
    qf_hw hw;
    ASSERT_EQ_INT(load("apple-m3-max-128g", &hw), QF_OK);
    qf_tune_model m = llama8b();
    qf_plan_params p = qf_plan_params_default();
    p.n_ctx = 8192;
    qf_plan pl;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_OK);
    ASSERT(pl.fits && pl.has_model && pl.parallel_auto && !pl.on_device);
    ASSERT_EQ_INT(pl.kv_bytes_per_token, 131072);
    /* cap 4 x 8 performance cores = 32 slots; 32 x 8192 x 128 KiB = 32 GiB fits 128 GiB easily */
    ASSERT_EQ_INT(pl.n_parallel, 32);
    ASSERT_EQ_INT(pl.n_batch, 512);
    ASSERT_EQ_INT(pl.threads, 8);
    ASSERT_EQ_INT(pl.io_threads, 4);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_WEIGHTS].bytes, 4 * GIB + 512 * MIB);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_KV].bytes, 32 * GIB);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_BUFFERS].bytes, scratch(&m, 512, 8192, 8));
    ASSERT_EQ_INT(pl.mem[QF_PLAN_RESERVE].bytes, 16 * GIB);
    size_t need = 4 * GIB + 512 * MIB + 32 * GIB + scratch(&m, 512, 8192, 8) + 16 * GIB;
    ASSERT_EQ_INT(pl.need, need);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_FREE].bytes, 128 * GIB - need);
    ASSERT_NEAR(pl.mem[QF_PLAN_WEIGHTS].share, 4.5 / 128, 1e-12);
    ASSERT_NEAR(pl.mem[QF_PLAN_KV].share, 0.25, 1e-12);
    double sum = 0;
    for (int i = 0; i < QF_PLAN_POOLS; i++)
        sum += pl.mem[i].share;
    ASSERT_NEAR(sum, 1.0, 1e-9);
    ASSERT(strstr(pl.note, "unified"));
    ASSERT(strstr(pl.parallel_reason, "cap"));
    for (int i = 0; i < QF_PLAN_POOLS; i++)
        ASSERT(pl.mem[i].reason[0]);
    ASSERT(pl.threads_reason[0] && pl.io_reason[0] && pl.ctx_reason[0] && pl.batch_reason[0]);

    /* q8_0 kv: 34 bytes per 32 values instead of 64 -> 32 x 2 x 1024/32 x 34 = 69632 B per token */
    p.kv_type = QF_TYPE_Q8_0;
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_OK);
    ASSERT_EQ_INT(pl.kv_bytes_per_token, 69632);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_KV].bytes, (size_t)32 * 8192 * 69632);
}

static void test_plan_vm(void) {
    qf_hw hw;
    ASSERT_EQ_INT(load("vm-2core-24g", &hw), QF_OK);
    qf_tune_model m = small1b();
    qf_plan pl;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, NULL, &pl, &err), QF_OK);
    ASSERT_EQ_INT(pl.n_ctx, 4096); /* the trained context */
    ASSERT_EQ_INT(pl.kv_bytes_per_token, 32768);
    ASSERT_EQ_INT(pl.n_parallel, 8);                  /* cap 4 x 2 cores */
    ASSERT_EQ_INT(pl.mem[QF_PLAN_KV].bytes, 1 * GIB); /* 8 x 4096 x 32 KiB */
    ASSERT_EQ_INT(pl.mem[QF_PLAN_BUFFERS].bytes, scratch(&m, 512, 4096, 2));
    ASSERT_EQ_INT(pl.mem[QF_PLAN_RESERVE].bytes, 25276063744ull / 8);
    ASSERT_EQ_INT(pl.threads, 2);
    ASSERT_EQ_INT(pl.io_threads, 1);

    /* given slots and threads are kept */
    qf_plan_params p = qf_plan_params_default();
    p.n_parallel = 3;
    p.n_threads = 1;
    p.n_batch = 2; /* below the slot count: raised to 3 */
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_OK);
    ASSERT_EQ_INT(pl.n_parallel, 3);
    ASSERT(!pl.parallel_auto);
    ASSERT_EQ_INT(pl.threads, 1);
    ASSERT_EQ_INT(pl.n_batch, 3);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_KV].bytes, (size_t)3 * 4096 * 32768);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_BUFFERS].bytes, scratch(&m, 3, 4096, 1));
}

static void test_plan_x86_memory_bound(void) {
    qf_hw hw;
    ASSERT_EQ_INT(load("x86-16core-64g", &hw), QF_OK);
    qf_tune_model m = llama8b();
    qf_plan pl;
    qf_err err = {0};
    /* ctx 4096: 0.5 GiB per slot; the cap (64) binds */
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, NULL, &pl, &err), QF_OK);
    ASSERT_EQ_INT(pl.n_ctx, 4096); /* trained 8192, capped at 4096 */
    ASSERT_EQ_INT(pl.n_parallel, 64);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_KV].bytes, 32 * GIB);
    /* ctx 32768: 4 GiB per slot; memory binds: weights + P x 4 GiB + scratch + 8 GiB reserve <= 64
     * GiB and P x 4 GiB + scratch <= 60 GiB available */
    qf_plan_params p = qf_plan_params_default();
    p.n_ctx = 32768;
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_OK);
    size_t s = scratch(&m, 512, 32768, 16);
    int32_t want = 0;
    for (int32_t P = 1; P <= 64; P++) {
        size_t kv = (size_t)P * 32768 * 131072;
        if (4 * GIB + 512 * MIB + kv + s + 8 * GIB <= 64 * GIB && kv + s <= 60 * GIB) want = P;
    }
    ASSERT_EQ_INT(want, 12); /* (64 - 4.5 - 8) / 4 = 12.9 */
    ASSERT_EQ_INT(pl.n_parallel, want);
    ASSERT(strstr(pl.parallel_reason, "most that fit"));
    ASSERT(strstr(pl.ctx_reason, "beyond the trained context"));
}

static void test_plan_gpu(void) {
    qf_hw hw;
    ASSERT_EQ_INT(load("gpu-h100-80g", &hw), QF_OK);
    qf_tune_model m = llama70b();
    ASSERT_EQ_INT(kv_per_token(&m), 327680);
    qf_plan_params p = qf_plan_params_default();
    p.n_ctx = 8192;
    qf_plan pl;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_OK);
    ASSERT(pl.on_gpu && pl.on_device);
    ASSERT_EQ_INT(pl.mem_total, 80 * GIB);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_RESERVE].bytes, 4 * GIB); /* 80/20 */
    ASSERT_EQ_INT(pl.threads, 4);
    ASSERT_EQ_INT(pl.n_batch, 2048);
    /* 2.5 GiB per slot (8192 x 320 KiB): P = floor((80 - 40 - 4 GiB - scratch) / 2.5 GiB) */
    size_t s = scratch(&m, 2048, 8192, 4);
    size_t room = 80 * GIB - 40 * GIB - 4 * GIB - s;
    int32_t want = (int32_t)(room / ((size_t)8192 * 327680));
    ASSERT_EQ_INT(want, 14);
    ASSERT_EQ_INT(pl.n_parallel, want);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_KV].bytes, (size_t)want * 8192 * 327680);

    /* a model larger than the device: planned on the host, with a note */
    m.weight_bytes = 90 * GIB;
    snprintf(m.name, sizeof m.name, "huge");
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_OK);
    ASSERT(!pl.on_device && !pl.on_gpu);
    ASSERT_EQ_INT(pl.mem_total, 256 * GIB);
    ASSERT_EQ_INT(pl.threads, 32);
    ASSERT(strstr(pl.note, "planned on the CPU"));

    /* a GPU of unknown memory (as detected): host plan, note says so */
    hw.gpu_mem = 0;
    m = llama8b();
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_OK);
    ASSERT(!pl.on_device);
    ASSERT(strstr(pl.note, "memory size is unknown"));
}

static void test_plan_laptop_and_refusal(void) {
    qf_hw hw;
    ASSERT_EQ_INT(load("laptop-8g", &hw), QF_OK);
    qf_tune_model m = llama8b();
    qf_plan pl;
    qf_err err = {0};
    /* auto at 4096: 8 - 4.5 - 1 (reserve) - scratch = ~2.4 GiB for 0.5 GiB slots -> 4 (cap would be
     * 8) */
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, NULL, &pl, &err), QF_OK);
    size_t s = scratch(&m, 512, 4096, 2);
    int32_t want = (int32_t)((8 * GIB - 4 * GIB - 512 * MIB - 1 * GIB - s) / (512 * MIB));
    ASSERT_EQ_INT(want, 4);
    ASSERT_EQ_INT(pl.n_parallel, want);
    ASSERT(strstr(pl.parallel_reason, "5 slots would not fit"));
    ASSERT_EQ_INT(pl.io_threads, 4);
    ASSERT(pl.io_on_eff);

    /* ctx 8192 x 4 slots: 4.5 + 4 + scratch + 1 > 8 GiB: refused with the numbers */
    qf_plan_params p = qf_plan_params_default();
    p.n_ctx = 8192;
    p.n_parallel = 4;
    qf_status st = qf_plan_make(&hw, &m, &p, &pl, &err);
    ASSERT_EQ_INT(st, QF_ERR_RANGE);
    ASSERT(!pl.fits);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_KV].bytes, 4 * GIB);
    ASSERT_EQ_INT(pl.need, 4 * GIB + 512 * MIB + 4 * GIB + scratch(&m, 512, 8192, 2) + 1 * GIB);
    ASSERT_EQ_INT(pl.mem[QF_PLAN_FREE].bytes, 0);
    ASSERT_MSG(strstr(err.msg, "needs 9.") && strstr(err.msg, "weights 4.5") &&
                   strstr(err.msg, "kv 4.0") && strstr(err.msg, "reserve 1.0") &&
                   strstr(err.msg, "have 8.0 GiB"),
               "%s", err.msg);

    /* a 70B does not fit even one slot: refused, one-slot numbers */
    m = llama70b();
    st = qf_plan_make(&hw, &m, NULL, &pl, &err);
    ASSERT_EQ_INT(st, QF_ERR_RANGE);
    ASSERT_EQ_INT(pl.n_parallel, 1);
    ASSERT(strstr(err.msg, "llama70b") && strstr(err.msg, "have 8.0 GiB"));

    /* enough in total but not available now: the second rule refuses */
    hw.mem_available = 512 * MIB;
    m = small1b();
    p = qf_plan_params_default();
    p.n_parallel = 8; /* 1 GiB of kv */
    st = qf_plan_make(&hw, &m, &p, &pl, &err);
    ASSERT_EQ_INT(st, QF_ERR_RANGE);
    ASSERT_MSG(strstr(err.msg, "available") && strstr(err.msg, "0.50 GiB"), "%s", err.msg);
}

static void test_plan_bad_params(void) {
    qf_hw hw;
    ASSERT_EQ_INT(load("vm-2core-24g", &hw), QF_OK);
    qf_tune_model m = small1b();
    qf_plan pl;
    qf_err err = {0};
    qf_plan_params p = qf_plan_params_default();
    p.kv_type = QF_TYPE_Q4_0;
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_ERR_INVALID);
    p = qf_plan_params_default();
    p.n_parallel = 257;
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_ERR_INVALID);
    p = qf_plan_params_default();
    p.n_ctx = -1;
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, &p, &pl, &err), QF_ERR_INVALID);
    m.hp.n_layer = 0;
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, NULL, &pl, &err), QF_ERR_INVALID);
}

static void test_plan_output(void) {
    qf_hw hw;
    ASSERT_EQ_INT(load("gpu-h100-80g", &hw), QF_OK);
    qf_tune_model m = llama8b();
    qf_plan pl;
    qf_err err = {0};
    ASSERT_EQ_INT(qf_plan_make(&hw, &m, NULL, &pl, &err), QF_OK);
    char *txt = qf_plan_to_text(&pl, &hw, &m);
    ASSERT(txt);
    ASSERT(strstr(txt, "kv cache") && strstr(txt, "reserve") && strstr(txt, "inference") &&
           strstr(txt, "parallel"));
    ASSERT(strstr(txt, "GPU memory"));
    qf_free(txt);
    char *js = qf_plan_to_json(&pl, &hw, &m);
    ASSERT(js);
    ASSERT(strstr(js, "\"kv_cache\"") && strstr(js, "\"where\":\t\"gpu\"") &&
           strstr(js, "\"gpu_layers\":\t-1"));
    qf_free(js);
    /* allocation failures: NULL, no leak (ASan checks) */
    for (long n = 0; n < 40; n++) {
        qf_mem_fail_after(n);
        char *t = qf_plan_to_text(&pl, &hw, &m);
        qf_mem_fail_after(-1);
        qf_free(t);
    }
}

int main(void) {
    RUN_TEST(test_machines_load);
    RUN_TEST(test_hw_json_roundtrip);
    RUN_TEST(test_hw_bad);
    RUN_TEST(test_hardware_only);
    RUN_TEST(test_plan_apple);
    RUN_TEST(test_plan_vm);
    RUN_TEST(test_plan_x86_memory_bound);
    RUN_TEST(test_plan_gpu);
    RUN_TEST(test_plan_laptop_and_refusal);
    RUN_TEST(test_plan_bad_params);
    RUN_TEST(test_plan_output);
    TEST_MAIN_END();
}
