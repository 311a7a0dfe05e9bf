/* test_kv_types.c - kv cache storage types against llama.cpp's greedy ids.
 *
 * f16 (the default) must reproduce the reference greedy ids except after a
 * near-tie (top-1 margin < 0.01). q8_0 halves the bytes (34 per 32 values
 * vs 64); its rounding may flip a greedy choice later in a generation. The
 * divergence measured on 2026-11-25 (first differing step of 64/32):
 *   stories260K  bos_only 10, once_upon 16, long 20   (8-dim heads: one
 *                q8_0 block spans 4 heads with a single scale)
 *   rand-llama   p16 none, p100 11; rand-qwen2, rand-qwen3: none
 * The test requires the first 8 steps to agree everywhere and the
 * per-head models (head dim >= 32) to agree for 32 steps except
 * rand-llama p100, and prints what it sees.
 */
#include <cjson/cJSON.h>

#include "model/session.h"
#include "qf_test.h"

static cJSON *load_json(const char *rel) {
    char path[1024];
    qf_testdata(rel, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    return j;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* First step where free-running greedy differs from the reference. */
static int first_divergence(const qf_model *m, const cJSON *c, qf_type kv) {
    const cJSON *pa = cJSON_GetObjectItem(c, "prompt_ids"), *ga = cJSON_GetObjectItem(c, "greedy_ids");
    int np = cJSON_GetArraySize(pa), ng = cJSON_GetArraySize(ga);
    int32_t prompt[128];
    for (int i = 0; i < np; i++) prompt[i] = (int32_t)cJSON_GetArrayItem(pa, i)->valuedouble;
    qf_session_params sp = qf_session_params_default();
    sp.n_ctx = np + ng + 4;
    sp.kv_type = kv;
    qf_err err = {0};
    qf_session *s = qf_session_new(m, &sp, &err);
    if (!s || qf_session_eval(s, prompt, np, &err) != QF_OK) {
        qf_session_free(s);
        return -1;
    }
    int i = 0;
    for (; i < ng; i++) {
        int32_t id = argmax(qf_session_logits(s), m->hp.n_vocab);
        if (id != (int32_t)cJSON_GetArrayItem(ga, i)->valuedouble) break;
        if (i + 1 < ng && qf_session_eval(s, &id, 1, &err) != QF_OK) break;
    }
    qf_session_free(s);
    return i;
}

static void check(const char *name, bool per_head) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "reference/%s.json", name);
    cJSON *j = load_json(rel);
    ASSERT(j);
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    qf_testdata(rel, path, sizeof path);
    qf_model_params mp = {.no_tokenizer = true};
    qf_model *m = qf_model_load(path, &mp, NULL);
    ASSERT(m);
    const cJSON *cases = cJSON_GetObjectItem(j, "cases");
    int bad = 0;
    for (int k = 0; k < cJSON_GetArraySize(cases); k++) {
        const cJSON *c = cJSON_GetArrayItem(cases, k);
        const char *cn = cJSON_GetObjectItem(c, "name")->valuestring;
        const cJSON *mg = cJSON_GetObjectItem(c, "greedy_top1_margin");
        int ng = cJSON_GetArraySize(mg), tie = ng;
        for (int i = 0; i < ng; i++)
            if (cJSON_GetArrayItem(mg, i)->valuedouble < 0.01) {
                tie = i;
                break;
            }
        int d16 = first_divergence(m, c, QF_TYPE_F16), d8 = first_divergence(m, c, QF_TYPE_Q8_0);
        fprintf(stderr, "  %s %s: f16 agrees for %d/%d steps (near-tie at %d), q8_0 for %d\n", name, cn, d16, ng,
                tie, d8);
        if (d16 < tie) bad++;
        if (d8 < 8) bad++;
        if (per_head && d8 < ng && !(strstr(name, "rand-llama") && !strcmp(cn, "p100"))) bad++;
    }
    qf_model_free(m);
    cJSON_Delete(j);
    ASSERT_EQ_INT(bad, 0);
}

static void test_stories(void) { check("stories260K", false); }
static void test_rand_llama(void) { check("rand-llama-f32", true); }
static void test_rand_qwen2(void) { check("rand-qwen2-f32", true); }
static void test_rand_qwen3(void) { check("rand-qwen3-f32", true); }

static void test_bytes(void) {
    qf_kv_params p = {4, 256, 256, 16, 64, 1, QF_TYPE_F16};
    size_t f16 = qf_kv_pool_bytes(&p);
    p.type = QF_TYPE_Q8_0;
    size_t q8 = qf_kv_pool_bytes(&p);
    ASSERT_MSG(q8 * 64 == f16 * 34, "q8_0 %zu vs f16 %zu", q8, f16); /* 34 bytes per 32 values vs 64 */
}

int main(void) {
    RUN_TEST(test_bytes);
    char buf[1024];
    qf_testdata("reference", buf, sizeof buf);
    RUN_TEST(test_stories);
    RUN_TEST(test_rand_llama);
    RUN_TEST(test_rand_qwen2);
    RUN_TEST(test_rand_qwen3);
    TEST_MAIN_END();
}
