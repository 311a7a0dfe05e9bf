/* test_config.c - presets (YAML), prompt templates, and the pipeline's
 * small utilities (SHA-256, UTF-8 repair, content hashes). */
#include <unistd.h>

#include "base/mem.h"
#include "pipeline/pipeline_int.h"
#include "pipeline/preset.h"
#include "pipeline/prompt.h"
#include "qf_test.h"

static char g_tmp[256];

static const char *tpath(const char *name) {
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_tmp, name);
    return p[k];
}

static void put(const char *name, const char *text) {
    FILE *f = fopen(tpath(name), "wb");
    fputs(text, f);
    fclose(f);
}

static void test_presets(void) {
    qf_preset p;
    ASSERT_EQ_INT(qf_preset_builtin("speed", &p), QF_OK);
    ASSERT(p.workers == 12 && p.max_concurrent_requests == 4 && p.generation_passes == 1 &&
           p.qa_pairs_per_chunk == 3 && p.min_answer_length == 100);
    ASSERT_NEAR(p.temperature, 0.3, 1e-6);
    ASSERT_EQ_INT(qf_preset_builtin("quality", &p), QF_OK);
    ASSERT(p.workers == 6 && p.max_concurrent_requests == 1 && p.generation_passes == 3 &&
           p.qa_pairs_per_chunk == 8 && p.min_answer_length == 200);
    ASSERT_NEAR(p.temperature, 0.7, 1e-6);
    ASSERT_EQ_INT(qf_preset_builtin("fast", &p), QF_ERR_NOT_FOUND);

    qf_err e = {0};
    put("mine.yaml", "# my preset\nprocessing:\n  temperature: 0.5\n  qa_pairs_per_chunk: 5\n"
                     "other:\n  - ignored\n  - {a: 1}\n");
    ASSERT_EQ_INT(qf_preset_resolve(tpath("mine.yaml"), &p, &e), QF_OK);
    ASSERT_NEAR(p.temperature, 0.5, 1e-6);
    ASSERT_EQ_INT(p.qa_pairs_per_chunk, 5);
    ASSERT_EQ_INT(p.workers, 12); /* missing keys keep speed's values */

    const char *all = "processing: {workers: 2, max_concurrent_requests: 16, temperature: 0, generation_passes: 4,"
                      " qa_pairs_per_chunk: 1, min_answer_length: 0}";
    ASSERT_EQ_INT(qf_preset_parse(all, strlen(all), "inline", &p, &e), QF_OK);
    ASSERT(p.workers == 2 && p.max_concurrent_requests == 16 && p.temperature == 0 && p.generation_passes == 4 &&
           p.qa_pairs_per_chunk == 1 && p.min_answer_length == 0);

    const char *bad_key = "processing:\n  workers: 3\n  pairs_per_chunk: 4\n";
    ASSERT_EQ_INT(qf_preset_parse(bad_key, strlen(bad_key), "b.yaml", &p, &e), QF_ERR_INVALID);
    ASSERT(strstr(e.msg, "b.yaml:3") && strstr(e.msg, "pairs_per_chunk"));
    const char *range = "processing:\n  temperature: 3.5\n";
    ASSERT_EQ_INT(qf_preset_parse(range, strlen(range), "r.yaml", &p, &e), QF_ERR_INVALID);
    ASSERT(strstr(e.msg, "temperature"));
    const char *frac = "processing:\n  workers: 2.5\n";
    ASSERT_EQ_INT(qf_preset_parse(frac, strlen(frac), "f.yaml", &p, &e), QF_ERR_INVALID);
    const char *word = "processing:\n  workers: many\n";
    ASSERT_EQ_INT(qf_preset_parse(word, strlen(word), "w.yaml", &p, &e), QF_ERR_INVALID);
    const char *seq = "processing:\n  - 1\n";
    ASSERT_EQ_INT(qf_preset_parse(seq, strlen(seq), "s.yaml", &p, &e), QF_ERR_FORMAT);
    const char *syntax = "processing: {workers: [1\n";
    ASSERT_EQ_INT(qf_preset_parse(syntax, strlen(syntax), "x.yaml", &p, &e), QF_ERR_FORMAT);
    ASSERT(strstr(e.msg, "x.yaml"));
    ASSERT_EQ_INT(qf_preset_resolve(tpath("missing.yaml"), &p, &e), QF_ERR_IO);
    ASSERT(strstr(e.msg, "speed, quality"));
}

static void test_prompts(void) {
    qf_err e = {0};
    qf_prompts *p = qf_prompts_load(NULL, &e);
    ASSERT(p);
    const char *g = qf_prompts_text(p, QF_PROMPT_GENERATE);
    ASSERT(strstr(g, "{{chunk}}") && strstr(g, "{{n}}"));
    /* the chunk comes first in the user messages (shared prefix) */
    ASSERT(strstr(g, "{{chunk}}") - g < 16);
    const char *c = qf_prompts_text(p, QF_PROMPT_CURATE);
    ASSERT(strstr(c, "{{chunk}}") - c < 16);
    ASSERT(!strncmp(g, c, (size_t)(strstr(g, "{{chunk}}") - g))); /* same text before the chunk */
    qf_prompt_var v[] = {{"chunk", "Bees {{n}} dance."}, {"n", "3"}, {"min_chars", "10"}, {"source", "s"}};
    char *r = qf_prompt_render(g, v, 4, &e);
    ASSERT(r && strstr(r, "Bees {{n}} dance.") && strstr(r, "Write 3 question"));
    qf_free(r);
    ASSERT(!qf_prompt_render("{{chunk}} {{missing}}", v, 1, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_FORMAT);
    ASSERT(strstr(e.msg, "missing"));
    qf_prompts_free(p);

    /* --prompts-init writes the built-ins; loading them gives the same texts */
    ASSERT_EQ_INT(qf_prompts_write_defaults(tpath("pr"), &e), QF_OK);
    ASSERT_EQ_INT(qf_prompts_write_defaults(tpath("pr"), &e), QF_ERR_IO); /* never overwrites */
    p = qf_prompts_load(tpath("pr"), &e);
    qf_prompts *b = qf_prompts_load(NULL, &e);
    ASSERT(p && b);
    for (int i = 0; i < QF_PROMPT_COUNT; i++)
        ASSERT_STR_EQ(qf_prompts_text(p, (qf_prompt_id)i), qf_prompts_text(b, (qf_prompt_id)i));
    qf_prompts_free(p);

    /* a folder with one edited file: that one changes, the others stay built in */
    char d[600];
    snprintf(d, sizeof d, "mkdir -p %s/pr2", g_tmp);
    ASSERT_EQ_INT(system(d), 0);
    put("pr2/system.txt", "You are terse.\n");
    p = qf_prompts_load(tpath("pr2"), &e);
    ASSERT(p);
    ASSERT_STR_EQ(qf_prompts_text(p, QF_PROMPT_SYSTEM), "You are terse.");
    ASSERT_STR_EQ(qf_prompts_text(p, QF_PROMPT_GENERATE), qf_prompts_text(b, QF_PROMPT_GENERATE));
    qf_prompts_free(p);
    qf_prompts_free(b);

    put("pr2/generate.txt", "Write {{n}} pairs about {{topic}}: {{chunk}}");
    ASSERT(!qf_prompts_load(tpath("pr2"), &e));
    ASSERT(strstr(e.msg, "generate.txt") && strstr(e.msg, "topic"));
    put("pr2/generate.txt", "Write {{n}} pairs.");
    ASSERT(!qf_prompts_load(tpath("pr2"), &e));
    ASSERT(strstr(e.msg, "{{chunk}}"));
    put("pr2/generate.txt", "{{chunk}}\nWrite \xFF pairs.");
    ASSERT(!qf_prompts_load(tpath("pr2"), &e));
    ASSERT(strstr(e.msg, "UTF-8"));
    ASSERT(!qf_prompts_load(tpath("no-such-dir"), &e));
    ASSERT_EQ_INT(e.code, QF_ERR_IO);
}

static void sha_hex(const void *p, size_t n, char out[65]) {
    qf_sha256 s;
    uint8_t d[32];
    qf_sha256_init(&s);
    qf_sha256_update(&s, p, n);
    qf_sha256_final(&s, d);
    qf_sha256_hex(d, out);
}

static void test_sha256(void) {
    char h[65];
    /* FIPS 180-4 example vectors */
    sha_hex("", 0, h);
    ASSERT_STR_EQ(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, h);
    ASSERT_STR_EQ(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(two, strlen(two), h);
    ASSERT_STR_EQ(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a', fed in uneven pieces */
    qf_sha256 s;
    qf_sha256_init(&s);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) {
        size_t k = left < sizeof a ? left : (left % 7) + 990;
        if (k > left) k = left;
        qf_sha256_update(&s, a, k);
        left -= k;
    }
    uint8_t d[32];
    qf_sha256_final(&s, d);
    qf_sha256_hex(d, h);
    ASSERT_STR_EQ(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_utf8_hash(void) {
    ASSERT_EQ_INT(qf_utf8_count_invalid("h\xC3\xA9llo \xF0\x9F\x90\x9D", 11), 0);
    ASSERT_EQ_INT(qf_utf8_count_invalid("\xC0\x80", 2), 2);        /* overlong: two bad bytes */
    ASSERT_EQ_INT(qf_utf8_count_invalid("\xED\xA0\x80", 3), 3);    /* surrogate */
    ASSERT_EQ_INT(qf_utf8_count_invalid("\xF4\x90\x80\x80", 4), 4); /* > U+10FFFF */
    ASSERT_EQ_INT(qf_utf8_count_invalid("\xE2\x82", 2), 1);        /* truncated: one maximal subpart */
    size_t n, bad;
    char *r = qf_utf8_repair("a\xE2\x82z", 4, &n, &bad);
    ASSERT_STR_EQ(r, "a\xEF\xBF\xBDz");
    ASSERT_EQ_INT(bad, 1);
    qf_free(r);
    ASSERT_EQ_INT(qf_utf8_floor("ab\xC3\xA9", 4), 4);
    ASSERT_EQ_INT(qf_utf8_floor("ab\xC3\xA9", 3), 2);
    ASSERT_EQ_INT(qf_utf8_floor("ab\xF0\x9F\x90", 5), 2);
    ASSERT_EQ_INT(qf_utf8_floor("abc", 2), 2);

    /* fields are length-prefixed: ("ab","c") != ("a","bc"); NULL != "" */
    qf_hasher *h1 = qf_hasher_new(), *h2 = qf_hasher_new(), *h3 = qf_hasher_new(), *h4 = qf_hasher_new();
    qf_hasher_str(h1, "ab");
    qf_hasher_str(h1, "c");
    qf_hasher_str(h2, "a");
    qf_hasher_str(h2, "bc");
    qf_hasher_str(h3, NULL);
    qf_hasher_str(h4, "");
    qf_hash128 a = qf_hasher_done(h1), b = qf_hasher_done(h2), c = qf_hasher_done(h3), d = qf_hasher_done(h4);
    ASSERT(a.hi != b.hi || a.lo != b.lo);
    ASSERT(c.hi != d.hi || c.lo != d.lo);
    qf_sb sb = {0};
    qf_sb_printf(&sb, "%d-%s", 42, "x");
    qf_sb_append(&sb, "\0y", 2);
    size_t len;
    char *s = qf_sb_take(&sb, &len);
    ASSERT(len == 6 && !memcmp(s, "42-x\0y", 6));
    qf_free(s);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "%s/test_config.tmp", QF_BINARY_DIR);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", g_tmp, g_tmp);
    if (system(cmd) != 0) return 1;
    RUN_TEST(test_presets);
    RUN_TEST(test_prompts);
    RUN_TEST(test_sha256);
    RUN_TEST(test_utf8_hash);
    TEST_MAIN_END();
}
