/* test_cli.c - the qforge command end to end: exact CLI forms the issues
 * name, exit codes (0 ok, 1 failure, 2 usage), and outputs checked against
 * the shared references (greedy ids, logits, tokenization, quantized bytes).
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "qf_test.h"

static char g_tmp[256];

/* Run `qforge ARGS` through the shell; capture stdout (and stderr when
 * merge); return the exit code. out is malloc'ed. */
static int qf(char **out, bool merge, const char *fmt, ...) {
    char args[4096], cmd[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s %s", QF_QFORGE_EXE, args, merge ? "2>&1" : "2>/dev/null");
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

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

static const cJSON *find_case(const cJSON *j, const char *name) {
    const cJSON *cases = cJSON_GetObjectItem(j, "cases");
    for (int i = 0; i < cJSON_GetArraySize(cases); i++) {
        const cJSON *c = cJSON_GetArrayItem(cases, i);
        if (!strcmp(cJSON_GetObjectItem(c, "name")->valuestring, name)) return c;
    }
    return NULL;
}

static void ids_to_str(const cJSON *arr, int n, const char *sep, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && i < cJSON_GetArraySize(arr); i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%d", i ? sep : "", (int)cJSON_GetArrayItem(arr, i)->valuedouble);
}

/* ---- usage errors: exit code 2 ---- */

static void test_usage_errors(void) {
    char *out;
    ASSERT_EQ_INT(qf(&out, true, ""), 2);
    ASSERT(strstr(out, "usage"));
    free(out);
    ASSERT_EQ_INT(qf(NULL, true, "frobnicate"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "run"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "run -p hello"), 2);            /* no model */
    ASSERT_EQ_INT(qf(NULL, true, "run -m x.gguf"), 2);           /* no prompt */
    ASSERT_EQ_INT(qf(NULL, true, "run -m x.gguf -p a --tokens 1"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "run -m x.gguf -p a -n -3"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "run -m x.gguf -p a -n"), 2);    /* missing value */
    ASSERT_EQ_INT(qf(NULL, true, "run -m x.gguf -p a --temp abc"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "run -m x.gguf -p a --bogus"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "tokenize -m x.gguf"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "model"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "model info"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "model synth --arch llama -o /dev/null"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "model synth --arch gpt9 --n-embd 64 --n-layer 1 --n-head 2 --n-ff 64 -o x"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "quantize a.gguf b.gguf q9_9"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "quantize a.gguf"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "bench"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "bench -m x.gguf -r 0"), 2);
    /* --gpu-layers: a count >= -1 or auto */
    ASSERT_EQ_INT(qf(NULL, true, "run -m x.gguf -p a --gpu-layers -2"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "run -m x.gguf -p a --gpu-layers most"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "bench -m x.gguf --gpu-layers AUTO"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "gen --gpu-layers -5 docs"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "serve --gpu-layers x"), 2);
    ASSERT_EQ_INT(qf(NULL, true, "run -m /nonexistent/m.gguf -p a --gpu-layers auto"), 1); /* parsed: the model fails */
    ASSERT_EQ_INT(qf(NULL, true, "run -m /nonexistent/m.gguf -p a -ngl 0"), 1);
    ASSERT_EQ_INT(qf(&out, true, "run --help"), 0);
    ASSERT(strstr(out, "auto = what fits"));
    ASSERT(strstr(out, "--logits-out"));
    free(out);
}

static void test_missing_and_corrupt_model(void) {
    char *out;
    ASSERT_EQ_INT(qf(&out, true, "run -m /nonexistent/m.gguf -p hi"), 1);
    ASSERT(strstr(out, "/nonexistent/m.gguf"));
    free(out);
    char path[300];
    snprintf(path, sizeof path, "%s/garbage.gguf", g_tmp);
    FILE *f = fopen(path, "wb");
    fputs("GGUF\3\0\0\0 this is not a model", f);
    fclose(f);
    ASSERT_EQ_INT(qf(&out, true, "run -m %s -p hi", path), 1);
    ASSERT(strstr(out, "garbage.gguf"));
    free(out);
}

/* ---- against the shared references ---- */

static void test_run_greedy_ids(void) {
    cJSON *j = load_json("reference/stories260K.json");
    ASSERT(j);
    const cJSON *c = find_case(j, "once_upon");
    char prompt[512], expect[1024], *out;
    ids_to_str(cJSON_GetObjectItem(c, "prompt_ids"), 100, ",", prompt, sizeof prompt);
    ids_to_str(cJSON_GetObjectItem(c, "greedy_ids"), 32, " ", expect, sizeof expect);
    char model[1024];
    qf_testdata("models/stories260K.gguf", model, sizeof model);
    int rc = qf(&out, false, "run -m %s --tokens %s -n 32 --temp 0 --ids --ignore-eos -t 2", model, prompt);
    cJSON_Delete(j);
    ASSERT_EQ_INT(rc, 0);
    out[strcspn(out, "\n")] = 0;
    ASSERT_STR_EQ(out, expect);
    free(out);
}

static void test_logits_out(void) {
    cJSON *j = load_json("reference/rand-qwen3-f32.json");
    ASSERT(j);
    const cJSON *c = find_case(j, "p16");
    char prompt[512], model[1024], lpath[300];
    ids_to_str(cJSON_GetObjectItem(c, "prompt_ids"), 100, ",", prompt, sizeof prompt);
    qf_testdata("models/rand-qwen3-f32.gguf", model, sizeof model);
    snprintf(lpath, sizeof lpath, "%s/logits.f32", g_tmp);
    int rc = qf(NULL, true, "run -m %s --tokens %s -n 0 --kv-type f32 --logits-out %s", model, prompt, lpath);
    if (rc != 0) cJSON_Delete(j);
    ASSERT_EQ_INT(rc, 0);
    FILE *f = fopen(lpath, "rb");
    float lg[512];
    size_t n = f ? fread(lg, 4, 512, f) : 0;
    if (f) fclose(f);
    const cJSON *ref = cJSON_GetObjectItem(c, "last_prompt_logits");
    double md = 0;
    for (int i = 0; i < 512 && n == 512; i++) md = fmax(md, fabs(lg[i] - cJSON_GetArrayItem(ref, i)->valuedouble));
    cJSON_Delete(j);
    ASSERT_EQ_INT(n, 512);
    ASSERT_MSG(md < 1e-3, "max diff %g", md);
}

static void test_tokenize(void) {
    cJSON *j = load_json("reference/stories260K.json");
    ASSERT(j);
    char expect[512], model[1024], *out;
    ids_to_str(cJSON_GetObjectItem(find_case(j, "long"), "prompt_ids"), 100, " ", expect, sizeof expect);
    cJSON_Delete(j);
    qf_testdata("models/stories260K.gguf", model, sizeof model);
    ASSERT_EQ_INT(qf(&out, false,
                     "tokenize -m %s 'The little girl named Lily went to the park with her mom. She saw a big "
                     "red ball and'", model), 0);
    out[strcspn(out, "\n")] = 0;
    ASSERT_STR_EQ(out, expect);
    free(out);
    /* stdin, and --no-bos drops the leading 1 */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "printf 'Once upon a time' | %s tokenize -m %s --no-bos -", QF_QFORGE_EXE, model);
    FILE *p = popen(cmd, "r");
    char line[512] = {0};
    ASSERT(fgets(line, sizeof line, p));
    ASSERT_EQ_INT(pclose(p), 0);
    j = load_json("reference/stories260K.json");
    ids_to_str(cJSON_GetObjectItem(find_case(j, "once_upon"), "prompt_ids"), 100, " ", expect, sizeof expect);
    cJSON_Delete(j);
    line[strcspn(line, "\n")] = 0;
    ASSERT_STR_EQ(line, strchr(expect, ' ') + 1);
}

static void test_prompt_too_long(void) {
    char model[1024], *out;
    qf_testdata("models/stories260K.gguf", model, sizeof model);
    ASSERT_EQ_INT(qf(&out, true, "run -m %s --tokens 1,2,3,4,5,6,7,8,9,10 -c 8 -n 1", model), 1);
    ASSERT(strstr(out, "10") && strstr(out, "8"));
    free(out);
    ASSERT_EQ_INT(qf(&out, true, "run -m %s --tokens 1,99999 -n 1", model), 1);
    ASSERT(strstr(out, "99999"));
    free(out);
}

static void test_model_info(void) {
    char model[1024], *out;
    qf_testdata("models/rand-qwen2-f32.gguf", model, sizeof model);
    ASSERT_EQ_INT(qf(&out, false, "model info %s --ctx 256 --parallel 2", model), 0);
    ASSERT(strstr(out, "qwen2"));
    ASSERT(strstr(out, "tied"));
    ASSERT(strstr(out, "kv cache"));
    free(out);
}

/* quantize the F32 model and compare with llama-quantize's files */
static void test_quantize_matches_llama_cpp(void) {
    char f32[1024], ref[1024], out[300];
    qf_testdata("models/rand-llama-f32.gguf", f32, sizeof f32);
    const char *types[] = {"q8_0", "q4_0", "q4_k_m", "q6_k"};
    for (int k = 0; k < 4; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "models/rand-llama-%s.gguf", types[k]);
        qf_testdata(rel, ref, sizeof ref);
        snprintf(out, sizeof out, "%s/q-%s.gguf", g_tmp, types[k]);
        ASSERT_EQ_INT(qf(NULL, true, "quantize %s %s %s", f32, out, types[k]), 0);
        qf_gguf *a = qf_gguf_open(out, NULL), *b = qf_gguf_open(ref, NULL);
        ASSERT(a && b);
        ASSERT_EQ_INT(qf_gguf_n_tensors(a), qf_gguf_n_tensors(b));
        int same_bytes = 0;
        for (int64_t i = 0; i < qf_gguf_n_tensors(b); i++) {
            const qf_gguf_tensor *tb = qf_gguf_tensor_at(b, i);
            const qf_gguf_tensor *ta = qf_gguf_find_tensor(a, tb->name);
            ASSERT_MSG(ta, "%s missing", tb->name);
            ASSERT_MSG(ta->type == tb->type, "%s %s: type %u, llama.cpp %u", types[k], tb->name, ta->type, tb->type);
            same_bytes += ta->size == tb->size && !memcmp(ta->data, tb->data, ta->size);
        }
        fprintf(stderr, "  %s: %d/%lld tensors byte-identical to llama-quantize\n", types[k], same_bytes,
                (long long)qf_gguf_n_tensors(b));
        /* q8_0 and q4_0 quantization is deterministic and exactly specified */
        if (k == 0) ASSERT_EQ_INT(same_bytes, qf_gguf_n_tensors(b));
        qf_gguf_close(a);
        qf_gguf_close(b);
    }
}

static void test_synth_and_run(void) {
    char path[300], *out;
    snprintf(path, sizeof path, "%s/synth.gguf", g_tmp);
    const char *archs[] = {"llama", "qwen2", "qwen3"};
    for (int a = 0; a < 3; a++) {
        ASSERT_EQ_INT(qf(NULL, true,
                         "model synth --arch %s --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 "
                         "--type q8_0 --seed 3 -o %s", archs[a], path), 0);
        ASSERT_EQ_INT(qf(&out, false, "run -m %s -p 'hello world' -n 8 --temp 0 --ids --ignore-eos", path), 0);
        int count = 0;
        for (char *t = strtok(out, " \n"); t; t = strtok(NULL, " \n")) count++;
        free(out);
        ASSERT_EQ_INT(count, 8);
    }
    /* same seed, same bytes */
    char p2[300];
    snprintf(p2, sizeof p2, "%s/synth2.gguf", g_tmp);
    ASSERT_EQ_INT(qf(NULL, true, "model synth --arch qwen3 --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 "
                                 "--n-ff 128 --type q8_0 --seed 3 -o %s -t 1", p2), 0);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", path, p2);
    ASSERT_EQ_INT(system(cmd), 0);
}

static void test_bench_json(void) {
    char model[1024], *out;
    qf_testdata("models/stories260K.gguf", model, sizeof model);
    ASSERT_EQ_INT(qf(&out, false, "bench -m %s -p 32 -n 8 -r 2 --json", model), 0);
    int lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        ASSERT_MSG(j, "not JSON: %s", line);
        const cJSON *t = cJSON_GetObjectItem(j, "test"), *tps = cJSON_GetObjectItem(j, "tokens_per_s");
        ASSERT(cJSON_IsString(t) && cJSON_IsNumber(tps) && tps->valuedouble > 0);
        ASSERT(cJSON_IsNumber(cJSON_GetObjectItem(j, "stddev")));
        lines++;
        cJSON_Delete(j);
    }
    free(out);
    ASSERT_EQ_INT(lines, 2);
}

/* a tensor type the engine does not compute with: a clear error */
static void test_unsupported_type_and_arch(void) {
    char path[300], *out;
    snprintf(path, sizeof path, "%s/iq.gguf", g_tmp);
    qf_gguf_writer *w = qf_gguf_writer_new();
    qf_gguf_writer_set_str(w, "general.architecture", "llama");
    qf_gguf_writer_set_u32(w, "llama.embedding_length", 256);
    qf_gguf_writer_set_u32(w, "llama.block_count", 1);
    qf_gguf_writer_set_u32(w, "llama.feed_forward_length", 256);
    qf_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    static uint8_t data[1 << 16];
    int64_t ne[2] = {256, 8};
    qf_err err = {0};
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "token_embd.weight", 16 /* iq2_xxs */, 2, ne, data, &err), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_write(w, path, &err), QF_OK);
    qf_gguf_writer_free(w);
    ASSERT_EQ_INT(qf(&out, true, "run -m %s -p hi", path), 1);
    ASSERT(strstr(out, "token_embd.weight") && strstr(out, "q8_0"));
    free(out);

    w = qf_gguf_writer_new();
    qf_gguf_writer_set_str(w, "general.architecture", "mamba");
    ASSERT_EQ_INT(qf_gguf_writer_write(w, path, &err), QF_OK);
    qf_gguf_writer_free(w);
    ASSERT_EQ_INT(qf(&out, true, "model info %s", path), 1);
    ASSERT(strstr(out, "mamba") && strstr(out, "not supported"));
    free(out);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/qf-test-cli-XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    RUN_TEST(test_usage_errors);
    RUN_TEST(test_missing_and_corrupt_model);
    RUN_TEST(test_synth_and_run);
    RUN_TEST(test_unsupported_type_and_arch);
    char probe[1024];
    struct stat st;
    const char *root = getenv("QF_TESTDATA") ? getenv("QF_TESTDATA") : QF_TESTDATA_DIR;
    (void)probe;
    if (stat(root, &st) == 0) {
        RUN_TEST(test_run_greedy_ids);
        RUN_TEST(test_logits_out);
        RUN_TEST(test_tokenize);
        RUN_TEST(test_prompt_too_long);
        RUN_TEST(test_model_info);
        RUN_TEST(test_quantize_matches_llama_cpp);
        RUN_TEST(test_bench_json);
    } else {
        fprintf(stderr, "shared test data absent: reference checks not run\n");
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_tmp);
    TEST_MAIN_END();
}
