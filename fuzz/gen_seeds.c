/* gen_seeds.c - writes small valid GGUF files to seed the fuzzer corpus.
 *
 * usage: fuzz_gguf_seeds OUTDIR
 * The files cover every metadata value type, string arrays (with empty
 * strings), alignments 32/64/1, several tensor types and shapes, an empty
 * tensor, a file without tensors, a v2 header and nested arrays (the last two
 * written byte by byte, since the writer only makes v3 and flat arrays).
 * They are kept small (a few KiB) so mutations stay in the header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

static const char *g_dir;

static int write_seed(qf_gguf_writer *w, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    qf_err err = {0};
    int rc = qf_gguf_writer_write(w, path, &err) == QF_OK ? 0 : 1;
    if (rc) fprintf(stderr, "%s\n", err.msg);
    qf_gguf_writer_free(w);
    return rc;
}

static int write_raw(const char *name, const uint8_t *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    size_t k = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && k == n) ? 0 : 1;
}

static uint8_t g_data[8192];

static int seed_model(const char *name, uint32_t align, const uint32_t *types, int n_types) {
    qf_gguf_writer *w = qf_gguf_writer_new();
    if (!w) return 1;
    if (align != 32) qf_gguf_writer_set_u32(w, "general.alignment", align);
    qf_gguf_writer_set_str(w, "general.architecture", "llama");
    qf_gguf_writer_set_u32(w, "llama.embedding_length", 64);
    qf_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    qf_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    const char *toks[] = {"<unk>", "<s>", "</s>", "", "a", "\xe2\x96\x81the"};
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 6);
    const float sc[] = {0, 0, 0, -1, -2, -3};
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QF_GGUF_FLOAT32, sc, 6);
    const int32_t tt[] = {2, 3, 3, 1, 1, 1};
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_INT32, tt, 6);
    for (int i = 0; i < n_types; i++) {
        int64_t blck;
        qf_gguf_type_info(types[i], &blck, NULL, NULL);
        int64_t ne[3] = {blck, 1 + i % 3, 1 + i % 2};
        char tn[32];
        snprintf(tn, sizeof tn, "blk.%d.w", i);
        if (qf_gguf_writer_add_tensor(w, tn, types[i], 1 + (uint32_t)(i % 3), ne, g_data, NULL))
            return 1;
    }
    return write_seed(w, name);
}

static int seed_values(void) {
    qf_gguf_writer *w = qf_gguf_writer_new();
    if (!w) return 1;
    uint8_t u8 = 7;
    int8_t i8 = -7;
    uint16_t u16 = 700;
    int16_t i16 = -700;
    int64_t i64 = -70000000000;
    double f64 = 0.25;
    qf_gguf_writer_set_val(w, "v.u8", QF_GGUF_UINT8, &u8);
    qf_gguf_writer_set_val(w, "v.i8", QF_GGUF_INT8, &i8);
    qf_gguf_writer_set_val(w, "v.u16", QF_GGUF_UINT16, &u16);
    qf_gguf_writer_set_val(w, "v.i16", QF_GGUF_INT16, &i16);
    qf_gguf_writer_set_u32(w, "v.u32", 70000);
    qf_gguf_writer_set_i32(w, "v.i32", -70000);
    qf_gguf_writer_set_f32(w, "v.f32", 0.5f);
    qf_gguf_writer_set_bool(w, "v.bool", false);
    qf_gguf_writer_set_str(w, "v.str", "hello");
    qf_gguf_writer_set_str(w, "v.empty", "");
    qf_gguf_writer_set_u64(w, "v.u64", 1ull << 40);
    qf_gguf_writer_set_val(w, "v.i64", QF_GGUF_INT64, &i64);
    qf_gguf_writer_set_val(w, "v.f64", QF_GGUF_FLOAT64, &f64);
    const uint8_t bools[] = {1, 0, 1};
    qf_gguf_writer_set_arr(w, "a.bool", QF_GGUF_BOOL, bools, 3);
    const uint64_t u64s[] = {1, 2};
    qf_gguf_writer_set_arr(w, "a.u64", QF_GGUF_UINT64, u64s, 2);
    const uint16_t u16s[] = {1, 2, 3};
    qf_gguf_writer_set_arr(w, "a.u16", QF_GGUF_UINT16, u16s, 3);
    qf_gguf_writer_set_arr(w, "a.empty", QF_GGUF_INT8, NULL, 0);
    return write_seed(w, "values.gguf");
}

static void put32(uint8_t **p, uint32_t v) {
    for (int i = 0; i < 4; i++) *(*p)++ = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t **p, uint64_t v) {
    for (int i = 0; i < 8; i++) *(*p)++ = (uint8_t)(v >> (8 * i));
}

static int seed_raw(void) {
    uint8_t buf[512], *p = buf;
    /* v2, one kv holding an array of 2 arrays of 2 u8, one F32 tensor */
    memcpy(p, "GGUF", 4);
    p += 4;
    put32(&p, 2);
    put64(&p, 1);
    put64(&p, 1);
    put64(&p, 4);
    memcpy(p, "nest", 4);
    p += 4;
    put32(&p, 9); /* ARRAY */
    put32(&p, 9); /* of ARRAY */
    put64(&p, 2);
    for (int i = 0; i < 2; i++) {
        put32(&p, 0); /* of UINT8 */
        put64(&p, 2);
        *p++ = 1;
        *p++ = 2;
    }
    put64(&p, 1);
    *p++ = 't';
    put32(&p, 1);
    put64(&p, 4);
    put32(&p, 0);
    put64(&p, 0);
    while ((p - buf) % 32) *p++ = 0;
    for (int i = 0; i < 16; i++) *p++ = (uint8_t)i;
    return write_raw("nested_v2.gguf", buf, (size_t)(p - buf));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    for (size_t i = 0; i < sizeof g_data; i++) g_data[i] = (uint8_t)(i * 31 + 7);
    static const uint32_t t1[] = {0, 1, 8};
    static const uint32_t t2[] = {2, 3, 6, 7, 9, 30};
    static const uint32_t t3[] = {10, 11, 12, 13, 14, 15};
    static const uint32_t t4[] = {16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 34, 35};
    int rc = 0;
    rc |= seed_model("small_f32.gguf", 32, t1, 3);
    rc |= seed_model("legacy_quants_a64.gguf", 64, t2, 6);
    rc |= seed_model("kquants.gguf", 32, t3, 2); /* 2 tensors: stay small */
    rc |= seed_model("iq_a1.gguf", 1, t4, 4);
    rc |= seed_model("no_tensors.gguf", 32, NULL, 0);
    rc |= seed_values();
    rc |= seed_raw();
    return rc;
}
