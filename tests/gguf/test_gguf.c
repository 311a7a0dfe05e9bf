/* test_gguf.c - GGUF reader/writer: round trips, hand-crafted hostile files,
 * truncation, random corruption, allocation failure, I/O failure. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <sys/stat.h>

#include "base/mem.h"
#include "gguf/gguf.h"
#include "gguf_test_util.h"
#include "qf_test.h"

static uint64_t g_rng = 88172645463325252ull;

static uint64_t rnd(void) { /* xorshift64 */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* ---- type table ---- */

static void test_type_info(void) {
    /* (id, block, bytes) from ggml's type traits / gguf-py GGML_QUANT_SIZES */
    static const struct {
        uint32_t id;
        int64_t blck;
        size_t size;
        const char *name;
    } want[] = {
        {0, 1, 4, "f32"},        {1, 1, 2, "f16"},        {2, 32, 18, "q4_0"},
        {3, 32, 20, "q4_1"},     {6, 32, 22, "q5_0"},     {7, 32, 24, "q5_1"},
        {8, 32, 34, "q8_0"},     {9, 32, 36, "q8_1"},     {10, 256, 84, "q2_K"},
        {11, 256, 110, "q3_K"},  {12, 256, 144, "q4_K"},  {13, 256, 176, "q5_K"},
        {14, 256, 210, "q6_K"},  {15, 256, 292, "q8_K"},  {16, 256, 66, "iq2_xxs"},
        {17, 256, 74, "iq2_xs"}, {18, 256, 98, "iq3_xxs"}, {19, 256, 50, "iq1_s"},
        {20, 32, 18, "iq4_nl"},  {21, 256, 110, "iq3_s"}, {22, 256, 82, "iq2_s"},
        {23, 256, 136, "iq4_xs"}, {24, 1, 1, "i8"},       {25, 1, 2, "i16"},
        {26, 1, 4, "i32"},       {27, 1, 8, "i64"},       {28, 1, 8, "f64"},
        {29, 256, 56, "iq1_m"},  {30, 1, 2, "bf16"},      {34, 256, 54, "tq1_0"},
        {35, 256, 66, "tq2_0"},  {39, 32, 17, "mxfp4"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int64_t b = 0;
        size_t s = 0;
        const char *n = NULL;
        ASSERT_MSG(qf_gguf_type_info(want[i].id, &b, &s, &n), "id %u", want[i].id);
        ASSERT_EQ_INT(b, want[i].blck);
        ASSERT_EQ_INT(s, want[i].size);
        ASSERT_STR_EQ(n, want[i].name);
    }
    static const uint32_t unknown[] = {4, 5, 31, 32, 33, 36, 37, 38, 100, 0xffffffffu};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ASSERT_MSG(!qf_gguf_type_info(unknown[i], NULL, NULL, NULL), "id %u", unknown[i]);
    ASSERT(qf_gguf_type_info(0, NULL, NULL, NULL)); /* NULL outs allowed */
}

/* ---- round trips ---- */

static qf_gguf *write_and_open(qf_gguf_writer *w, const char *tag, qf_err *err) {
    char path[256];
    tmp_path(path, sizeof path, tag);
    if (qf_gguf_writer_write(w, path, err) != QF_OK) return NULL;
    qf_gguf *g = qf_gguf_open(path, err);
    unlink(path); /* the mapping keeps the data */
    return g;
}

static void test_roundtrip_scalars(void) {
    qf_gguf_writer *w = qf_gguf_writer_new();
    ASSERT(w);
    uint8_t u8 = 250;
    int8_t i8 = -100;
    uint16_t u16 = 65000;
    int16_t i16 = -32000;
    int64_t i64 = -((int64_t)1 << 62);
    uint64_t u64big = UINT64_MAX - 5;
    double f64 = -1.0 / 3.0;
    ASSERT_EQ_INT(qf_gguf_writer_set_val(w, "t.u8", QF_GGUF_UINT8, &u8), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_val(w, "t.i8", QF_GGUF_INT8, &i8), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_val(w, "t.u16", QF_GGUF_UINT16, &u16), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_val(w, "t.i16", QF_GGUF_INT16, &i16), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_u32(w, "t.u32", 4000000000u), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_i32(w, "t.i32", -2000000000), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_f32(w, "t.f32", 1.5e-5f), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_bool(w, "t.bool", true), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_bool(w, "t.bool0", false), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo w\xe2\x80\x94rld"), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_str(w, "t.empty", ""), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_u64(w, "t.u64", 1ull << 40), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_u64(w, "t.u64big", u64big), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_val(w, "t.i64", QF_GGUF_INT64, &i64), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_val(w, "t.f64", QF_GGUF_FLOAT64, &f64), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_str(w, "", "empty key"), QF_OK);
    /* bad uses */
    uint8_t two = 2;
    ASSERT_EQ_INT(qf_gguf_writer_set_val(w, "x", QF_GGUF_BOOL, &two), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gguf_writer_set_val(w, "x", QF_GGUF_STRING, &two), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gguf_writer_set_val(w, "x", (qf_gguf_vtype)13, &two), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gguf_writer_set_str(w, NULL, "x"), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gguf_writer_set_str(NULL, "x", "x"), QF_ERR_INVALID);

    qf_err err = {0};
    qf_gguf *g = write_and_open(w, "scalars", &err);
    qf_gguf_writer_free(w);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT_EQ_INT(qf_gguf_version(g), 3);
    ASSERT_EQ_INT(qf_gguf_alignment(g), 32);
    ASSERT_EQ_INT(qf_gguf_n_kv(g), 16);
    ASSERT_EQ_INT(qf_gguf_n_tensors(g), 0);
    /* insertion order is kept */
    ASSERT_STR_EQ(qf_gguf_kv_key(g, 0), "t.u8");
    ASSERT_STR_EQ(qf_gguf_kv_key(g, 15), "");
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 0), QF_GGUF_UINT8);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 1), QF_GGUF_INT8);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 2), QF_GGUF_UINT16);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 3), QF_GGUF_INT16);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 4), QF_GGUF_UINT32);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 5), QF_GGUF_INT32);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 6), QF_GGUF_FLOAT32);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 7), QF_GGUF_BOOL);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 9), QF_GGUF_STRING);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 11), QF_GGUF_UINT64);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 13), QF_GGUF_INT64);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 14), QF_GGUF_FLOAT64);
    ASSERT_EQ_INT(qf_gguf_kv_type(g, 16), QF_GGUF_VTYPE_COUNT);
    ASSERT(qf_gguf_kv_key(g, 16) == NULL && qf_gguf_kv_key(g, -1) == NULL);

    int64_t v;
    double d;
    bool b;
    qf_gguf_str s;
    ASSERT(qf_gguf_get_int(g, "t.u8", &v) && v == 250);
    ASSERT(qf_gguf_get_int(g, "t.i8", &v) && v == -100);
    ASSERT(qf_gguf_get_int(g, "t.u16", &v) && v == 65000);
    ASSERT(qf_gguf_get_int(g, "t.i16", &v) && v == -32000);
    ASSERT(qf_gguf_get_int(g, "t.u32", &v) && v == 4000000000ll);
    ASSERT(qf_gguf_get_int(g, "t.i32", &v) && v == -2000000000ll);
    ASSERT(qf_gguf_get_int(g, "t.u64", &v) && v == 1ll << 40);
    ASSERT(qf_gguf_get_int(g, "t.i64", &v) && v == i64);
    ASSERT(!qf_gguf_get_int(g, "t.u64big", &v)); /* out of int64 range */
    ASSERT(qf_gguf_get_float(g, "t.u64big", &d) && d == (double)u64big);
    ASSERT(!qf_gguf_get_int(g, "t.f32", &v));
    ASSERT(!qf_gguf_get_int(g, "t.bool", &v));
    ASSERT(!qf_gguf_get_int(g, "t.str", &v));
    ASSERT(!qf_gguf_get_int(g, "absent", &v));
    ASSERT(qf_gguf_get_float(g, "t.f32", &d) && d == (double)1.5e-5f);
    ASSERT(qf_gguf_get_float(g, "t.f64", &d) && d == f64);
    ASSERT(qf_gguf_get_float(g, "t.i16", &d) && d == -32000.0);
    ASSERT(!qf_gguf_get_float(g, "t.bool", &d));
    ASSERT(qf_gguf_get_bool(g, "t.bool", &b) && b);
    ASSERT(qf_gguf_get_bool(g, "t.bool0", &b) && !b);
    ASSERT(!qf_gguf_get_bool(g, "t.u8", &b));
    ASSERT(qf_gguf_get_str(g, "t.str", &s));
    ASSERT(s.len == strlen("h\xc3\xa9llo w\xe2\x80\x94rld"));
    ASSERT(memcmp(s.ptr, "h\xc3\xa9llo w\xe2\x80\x94rld", s.len) == 0);
    ASSERT(qf_gguf_get_str(g, "t.empty", &s) && s.len == 0);
    ASSERT(qf_gguf_get_str(g, "", &s) && s.len == 9 && memcmp(s.ptr, "empty key", 9) == 0);
    ASSERT(!qf_gguf_get_str(g, "t.u8", &s));
    qf_gguf_arr a;
    ASSERT(!qf_gguf_get_arr(g, "t.str", &a));
    ASSERT_EQ_INT(qf_gguf_find_kv(g, "t.i64"), 13);
    ASSERT_EQ_INT(qf_gguf_find_kv(g, "t.i6"), -1);
    ASSERT_EQ_INT(qf_gguf_find_kv(g, NULL), -1);
    /* raw value bytes: u32 is 4 little-endian bytes */
    size_t len;
    const uint8_t *raw = qf_gguf_kv_raw(g, 4, &len);
    ASSERT(raw && len == 4);
    ASSERT(raw[0] == (4000000000u & 0xff) && raw[3] == (4000000000u >> 24));
    raw = qf_gguf_kv_raw(g, 9, &len);
    ASSERT(len == 8 + strlen("h\xc3\xa9llo w\xe2\x80\x94rld") && raw[0] == len - 8 && raw[8] == 'h');
    ASSERT(gguf_walk(g) >= 0);
    qf_gguf_close(g);
}

static void test_roundtrip_arrays(void) {
    qf_gguf_writer *w = qf_gguf_writer_new();
    ASSERT(w);
    const uint8_t u8[] = {0, 1, 255};
    const int8_t i8[] = {-128, 0, 127};
    const uint16_t u16[] = {0, 65535, 1234};
    const int16_t i16[] = {-32768, 32767, -1};
    const uint32_t u32[] = {0, 0xffffffffu, 77};
    const int32_t i32[] = {INT32_MIN, INT32_MAX, -7};
    const float f32[] = {-0.5f, 3.25f, 1e30f};
    const uint8_t bl[] = {1, 0, 1};
    const uint64_t u64[] = {0, 1ull << 63, 9};
    const int64_t i64[] = {INT64_MIN, INT64_MAX, -9};
    const double f64[] = {1e-300, -2.5, 1e300};
    const void *datas[] = {u8, i8, u16, i16, u32, i32, f32, bl, NULL, NULL, u64, i64, f64};
    char key[32];
    for (int t = 0; t < QF_GGUF_VTYPE_COUNT; t++) {
        if (t == QF_GGUF_STRING || t == QF_GGUF_ARRAY) {
            snprintf(key, sizeof key, "arr.%d", t);
            ASSERT_EQ_INT(qf_gguf_writer_set_arr(w, key, (qf_gguf_vtype)t, u8, 3), QF_ERR_INVALID);
            continue;
        }
        snprintf(key, sizeof key, "arr.%d", t);
        ASSERT_EQ_INT(qf_gguf_writer_set_arr(w, key, (qf_gguf_vtype)t, datas[t], 3), QF_OK);
        snprintf(key, sizeof key, "empty.%d", t);
        ASSERT_EQ_INT(qf_gguf_writer_set_arr(w, key, (qf_gguf_vtype)t, NULL, 0), QF_OK);
    }
    const uint8_t badbool[] = {0, 2};
    ASSERT_EQ_INT(qf_gguf_writer_set_arr(w, "bad", QF_GGUF_BOOL, badbool, 2), QF_ERR_INVALID);
    const char *strs[] = {"", "a", "", "\xe4\xb8\xad\xe6\x96\x87", "last one"};
    ASSERT_EQ_INT(qf_gguf_writer_set_arr_str(w, "strs", strs, 5), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_arr_str(w, "strs0", NULL, 0), QF_OK);

    qf_err err = {0};
    qf_gguf *g = write_and_open(w, "arrays", &err);
    qf_gguf_writer_free(w);
    ASSERT_MSG(g, "%s", err.msg);
    qf_gguf_arr a;
    for (int t = 0; t < QF_GGUF_VTYPE_COUNT; t++) {
        if (t == QF_GGUF_STRING || t == QF_GGUF_ARRAY) continue;
        snprintf(key, sizeof key, "arr.%d", t);
        ASSERT_MSG(qf_gguf_get_arr(g, key, &a), "%s", key);
        ASSERT_EQ_INT(a.type, t);
        ASSERT_EQ_INT(a.n, 3);
        ASSERT_EQ_INT(qf_gguf_kv_type(g, qf_gguf_find_kv(g, key)), QF_GGUF_ARRAY);
        snprintf(key, sizeof key, "empty.%d", t);
        qf_gguf_arr e;
        ASSERT(qf_gguf_get_arr(g, key, &e) && e.n == 0 && (int)e.type == t);
        ASSERT_EQ_INT(qf_gguf_arr_int(&e, 0), 0);
    }
    ASSERT(qf_gguf_get_arr(g, "arr.0", &a));
    ASSERT(qf_gguf_arr_int(&a, 0) == 0 && qf_gguf_arr_int(&a, 2) == 255);
    ASSERT(qf_gguf_arr_float(&a, 2) == 255.0);
    ASSERT(qf_gguf_get_arr(g, "arr.1", &a) && qf_gguf_arr_int(&a, 0) == -128);
    ASSERT(qf_gguf_get_arr(g, "arr.2", &a) && qf_gguf_arr_int(&a, 1) == 65535);
    ASSERT(qf_gguf_get_arr(g, "arr.3", &a) && qf_gguf_arr_int(&a, 0) == -32768);
    ASSERT(qf_gguf_arr_int(&a, 2) == -1);
    ASSERT(qf_gguf_get_arr(g, "arr.4", &a) && qf_gguf_arr_int(&a, 1) == 0xffffffffll);
    /* data is packed little-endian: check the bytes, not just the helpers */
    ASSERT(a.data[4] == 0xff && a.data[8] == 77 && a.data[9] == 0);
    ASSERT(qf_gguf_get_arr(g, "arr.5", &a) && qf_gguf_arr_int(&a, 0) == INT32_MIN);
    ASSERT(qf_gguf_get_arr(g, "arr.6", &a));
    ASSERT(qf_gguf_arr_float(&a, 0) == -0.5 && qf_gguf_arr_float(&a, 2) == (double)1e30f);
    ASSERT(qf_gguf_arr_int(&a, 0) == 0); /* float is not an integer type */
    ASSERT(qf_gguf_get_arr(g, "arr.7", &a));
    ASSERT(qf_gguf_arr_int(&a, 0) == 1 && qf_gguf_arr_int(&a, 1) == 0);
    ASSERT(qf_gguf_get_arr(g, "arr.10", &a) && qf_gguf_arr_float(&a, 1) == 9223372036854775808.0);
    ASSERT(qf_gguf_arr_int(&a, 2) == 9);
    ASSERT(qf_gguf_get_arr(g, "arr.11", &a));
    ASSERT(qf_gguf_arr_int(&a, 0) == INT64_MIN && qf_gguf_arr_int(&a, 1) == INT64_MAX);
    ASSERT(qf_gguf_get_arr(g, "arr.12", &a));
    ASSERT(qf_gguf_arr_float(&a, 0) == 1e-300 && qf_gguf_arr_float(&a, 2) == 1e300);
    ASSERT(qf_gguf_arr_int(&a, 3) == 0 && qf_gguf_arr_float(&a, 3) == 0.0); /* out of range */
    ASSERT(!qf_gguf_get_arr(g, "arr.8", &a) && !qf_gguf_get_arr(g, "bad", &a));

    ASSERT(qf_gguf_get_arr(g, "strs", &a));
    ASSERT_EQ_INT(a.type, QF_GGUF_STRING);
    ASSERT_EQ_INT(a.n, 5);
    for (uint64_t i = 0; i < 5; i++) {
        qf_gguf_str s = qf_gguf_arr_str(g, &a, i);
        ASSERT(s.ptr != NULL);
        ASSERT_EQ_INT(s.len, strlen(strs[i]));
        ASSERT(memcmp(s.ptr, strs[i], s.len) == 0);
    }
    ASSERT(qf_gguf_arr_str(g, &a, 5).ptr == NULL);
    qf_gguf_arr fake = a;
    fake.kv_index = 0; /* not a string array */
    ASSERT(qf_gguf_arr_str(g, &fake, 0).ptr == NULL);
    fake.kv_index = 100000;
    ASSERT(qf_gguf_arr_str(g, &fake, 0).ptr == NULL);
    ASSERT(qf_gguf_get_arr(g, "strs0", &a) && a.n == 0 && a.type == QF_GGUF_STRING);
    ASSERT(qf_gguf_arr_str(g, &a, 0).ptr == NULL);
    ASSERT(gguf_walk(g) >= 0);
    qf_gguf_close(g);
}

static void test_replace_remove(void) {
    qf_gguf_writer *w = qf_gguf_writer_new();
    ASSERT(w);
    ASSERT_EQ_INT(qf_gguf_writer_set_u32(w, "a", 1), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_u32(w, "b", 2), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_u32(w, "c", 3), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_str(w, "a", "now a string"), QF_OK); /* replaces in place */
    ASSERT_EQ_INT(qf_gguf_writer_remove(w, "b"), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_remove(w, "b"), QF_ERR_NOT_FOUND);
    qf_err err = {0};
    qf_gguf *g = write_and_open(w, "replace", &err);
    qf_gguf_writer_free(w);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT_EQ_INT(qf_gguf_n_kv(g), 2);
    ASSERT_STR_EQ(qf_gguf_kv_key(g, 0), "a");
    ASSERT_STR_EQ(qf_gguf_kv_key(g, 1), "c");
    qf_gguf_str s;
    ASSERT(qf_gguf_get_str(g, "a", &s) && s.len == 12);
    ASSERT_EQ_INT(qf_gguf_find_kv(g, "b"), -1);
    qf_gguf_close(g);
}

/* ---- tensors ---- */

typedef struct tspec {
    char name[64];
    uint32_t type, n_dims;
    int64_t ne[4];
    uint8_t *data;
    size_t size;
} tspec;

static size_t spec_size(const tspec *t) {
    int64_t blck;
    size_t ts;
    qf_gguf_type_info(t->type, &blck, &ts, NULL);
    size_t n = (size_t)(t->ne[0] / blck) * ts;
    for (int d = 1; d < 4; d++) n *= (size_t)t->ne[d];
    return n;
}

static void check_tensors(uint32_t align, int n_tensors) {
    static const uint32_t types[] = {0, 1, 8, 12, 14, 30, 24, 2};
    tspec *ts = calloc((size_t)n_tensors, sizeof *ts);
    ASSERT(ts);
    qf_gguf_writer *w = qf_gguf_writer_new();
    ASSERT(w);
    if (align != 32) ASSERT_EQ_INT(qf_gguf_writer_set_u32(w, "general.alignment", align), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_str(w, "general.architecture", "test"), QF_OK);
    qf_err err = {0};
    for (int i = 0; i < n_tensors; i++) {
        tspec *t = &ts[i];
        snprintf(t->name, sizeof t->name, "blk.%d.w%d", i / 7, i % 7);
        t->type = types[i % 8];
        t->n_dims = 1 + (uint32_t)(rnd() % 4);
        int64_t blck;
        qf_gguf_type_info(t->type, &blck, NULL, NULL);
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        t->ne[0] = blck * (int64_t)(1 + rnd() % 3);
        for (uint32_t d = 1; d < t->n_dims; d++) t->ne[d] = 1 + (int64_t)(rnd() % 3);
        if (i == 5) t->ne[t->n_dims - 1] = 0; /* an empty tensor */
        t->size = spec_size(t);
        t->data = malloc(t->size ? t->size : 1);
        for (size_t k = 0; k < t->size; k++) t->data[k] = (uint8_t)rnd();
        ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data,
                                                &err),
                      QF_OK);
    }
    char tag[32];
    snprintf(tag, sizeof tag, "tensors%u", align);
    qf_gguf *g = write_and_open(w, tag, &err);
    qf_gguf_writer_free(w);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT_EQ_INT(qf_gguf_alignment(g), align);
    ASSERT_EQ_INT(qf_gguf_n_tensors(g), n_tensors);
    ASSERT_EQ_INT(qf_gguf_data_offset(g) % align, 0);
    const uint8_t *base = (const uint8_t *)qf_gguf_tensor_at(g, 0)->data - qf_gguf_data_offset(g);
    size_t end = qf_gguf_data_offset(g);
    for (int i = 0; i < n_tensors; i++) {
        const tspec *t = &ts[i];
        const qf_gguf_tensor *gt = qf_gguf_tensor_at(g, i); /* in the order added */
        ASSERT(gt);
        ASSERT_STR_EQ(gt->name, t->name);
        ASSERT(qf_gguf_find_tensor(g, t->name) == gt);
        ASSERT_EQ_INT(gt->type, t->type);
        ASSERT_EQ_INT(gt->n_dims, t->n_dims);
        for (int d = 0; d < 4; d++) ASSERT_EQ_INT(gt->ne[d], t->ne[d]);
        ASSERT_EQ_INT(gt->size, t->size);
        ASSERT_EQ_INT(gt->offset % align, 0);
        ASSERT_EQ_INT(((uintptr_t)gt->data) % align, 0); /* mmap is page aligned */
        ASSERT((const uint8_t *)gt->data == base + qf_gguf_data_offset(g) + gt->offset);
        ASSERT(t->size == 0 || memcmp(gt->data, t->data, t->size) == 0);
        /* padding between tensors is zeros */
        const uint8_t *p = gt->data;
        for (size_t k = t->size; k % align; k++) ASSERT(p[k] == 0);
        end = qf_gguf_data_offset(g) + gt->offset + t->size;
        end += (align - end % align) % align;
    }
    ASSERT_EQ_INT(qf_gguf_file_size(g), end); /* the file ends padded */
    ASSERT(qf_gguf_find_tensor(g, "nope") == NULL);
    ASSERT(qf_gguf_tensor_at(g, n_tensors) == NULL && qf_gguf_tensor_at(g, -1) == NULL);
    qf_gguf_close(g);
    for (int i = 0; i < n_tensors; i++) free(ts[i].data);
    free(ts);
}

static void test_tensors_align32(void) { check_tensors(32, 200); }
static void test_tensors_align64(void) { check_tensors(64, 50); }
static void test_tensors_align1(void) { check_tensors(1, 20); }
static void test_tensors_align4096(void) { check_tensors(4096, 5); }

static void test_writer_rejects(void) {
    qf_gguf_writer *w = qf_gguf_writer_new();
    ASSERT(w);
    qf_err err = {0};
    float data[64] = {0};
    int64_t ne[4] = {32, 2, 1, 1};
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "a", 0, 2, ne, data, &err), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "a", 0, 2, ne, data, &err), QF_ERR_INVALID);
    ASSERT(strstr(err.msg, "duplicate") && strstr(err.msg, "'a'"));
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "b", 99, 2, ne, data, &err), QF_ERR_UNSUPPORTED);
    ASSERT(strstr(err.msg, "99") && strstr(err.msg, "'b'"));
    char longname[65];
    memset(longname, 'x', 64);
    longname[64] = 0;
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, longname, 0, 2, ne, data, &err), QF_ERR_INVALID);
    longname[63] = 0; /* 63 bytes is the longest allowed */
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, longname, 0, 2, ne, data, &err), QF_OK);
    int64_t ne33[4] = {33, 1, 1, 1};
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "c", 8, 1, ne33, data, &err), QF_ERR_INVALID);
    ASSERT(strstr(err.msg, "block"));
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "d", 0, 5, ne, data, &err), QF_ERR_INVALID);
    int64_t neg[4] = {32, -1, 1, 1};
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "e", 0, 2, neg, data, &err), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "f", 0, 2, ne, NULL, &err), QF_ERR_INVALID);
    int64_t big[4] = {INT64_MAX / 2, 4, 1, 1};
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "g", 0, 2, big, data, &err), QF_ERR_RANGE);
    int64_t zero[4] = {0, 5, 1, 1};
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "h", 0, 2, zero, NULL, &err), QF_OK);

    /* general.alignment must be a u32 power of two */
    char path[256];
    tmp_path(path, sizeof path, "rejects");
    ASSERT_EQ_INT(qf_gguf_writer_set_u32(w, "general.alignment", 48), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_write(w, path, &err), QF_ERR_INVALID);
    ASSERT(strstr(err.msg, "alignment") && strncmp(err.msg, path, strlen(path)) == 0);
    ASSERT_EQ_INT(qf_gguf_writer_set_u64(w, "general.alignment", 64), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_write(w, path, &err), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gguf_writer_remove(w, "general.alignment"), QF_OK);
    struct stat st;
    ASSERT(stat(path, &st) != 0);
    ASSERT_EQ_INT(qf_gguf_writer_write(w, path, &err), QF_OK);
    qf_gguf *g = qf_gguf_open(path, &err);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT_EQ_INT(qf_gguf_n_tensors(g), 3);
    ASSERT_EQ_INT(qf_gguf_find_tensor(g, "h")->size, 0);
    qf_gguf_close(g);
    unlink(path);
    qf_gguf_writer_free(w);
    qf_gguf_writer_free(NULL);
}

static void test_writer_io_errors(void) {
    qf_gguf_writer *w = qf_gguf_writer_new();
    ASSERT(w);
    qf_err err = {0};
    static uint8_t data[4096];
    int64_t ne[1] = {4096};
    ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, "t", 24, 1, ne, data, &err), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_set_str(w, "k", "v"), QF_OK);

    /* unwritable place: a directory that does not exist */
    const char *bad = "/nonexistent_qf_dir/sub/x.gguf";
    ASSERT_EQ_INT(qf_gguf_writer_write(w, bad, &err), QF_ERR_IO);
    ASSERT(strncmp(err.msg, bad, strlen(bad)) == 0);
    ASSERT_MSG(strstr(err.msg, strerror(ENOENT)), "%s", err.msg);

    /* a full disk: make PATH.tmp a link to /dev/full, so every write fails
     * with ENOSPC; the writer must report it and remove the .tmp */
    char path[256], tmp[300];
    tmp_path(path, sizeof path, "enospc");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    if (symlink("/dev/full", tmp) == 0) {
        ASSERT_EQ_INT(qf_gguf_writer_write(w, path, &err), QF_ERR_IO);
        ASSERT(strncmp(err.msg, path, strlen(path)) == 0);
        ASSERT_MSG(strstr(err.msg, strerror(ENOSPC)), "%s", err.msg);
        struct stat st;
        ASSERT(lstat(tmp, &st) != 0); /* .tmp removed */
        ASSERT(stat(path, &st) != 0); /* no final file */
        ASSERT(stat("/dev/full", &st) == 0);
    }
    /* target is a directory: rename fails, the .tmp goes away */
    char dir[256];
    tmp_path(dir, sizeof dir, "isdir");
    mkdir(dir, 0700);
    ASSERT_EQ_INT(qf_gguf_writer_write(w, dir, &err), QF_ERR_IO);
    ASSERT_MSG(strstr(err.msg, "rename"), "%s", err.msg);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    struct stat st;
    ASSERT(stat(tmp, &st) != 0);
    rmdir(dir);
    qf_gguf_writer_free(w);
}

/* ---- a small valid file used by the corruption tests ---- */

static uint8_t *make_small(size_t *n, uint32_t align) {
    qf_gguf_writer *w = qf_gguf_writer_new();
    if (!w) return NULL;
    if (align != 32) qf_gguf_writer_set_u32(w, "general.alignment", align);
    qf_gguf_writer_set_str(w, "general.architecture", "llama");
    qf_gguf_writer_set_u32(w, "llama.block_count", 2);
    qf_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    qf_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    const char *toks[] = {"<unk>", "<s>", "</s>", "", "\xe2\x96\x81the"};
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5);
    const float scores[] = {0, 0, 0, -1, -2.5f};
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QF_GGUF_FLOAT32, scores, 5);
    const int32_t tt[] = {2, 3, 3, 1, 1};
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_INT32, tt, 5);
    static uint8_t d0[32 * 4], d1[34 * 2], d2[2 * 8];
    for (size_t i = 0; i < sizeof d0; i++) d0[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof d1; i++) d1[i] = (uint8_t)(i * 3 + 2);
    for (size_t i = 0; i < sizeof d2; i++) d2[i] = (uint8_t)(i + 5);
    int64_t ne0[2] = {32, 1}, ne1[2] = {32, 2}, ne2[3] = {2, 2, 2};
    qf_gguf_writer_add_tensor(w, "token_embd.weight", 0, 2, ne0, d0, NULL);
    qf_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", 8, 2, ne1, d1, NULL);
    qf_gguf_writer_add_tensor(w, "blk.0.norm", 1, 3, ne2, d2, NULL);
    char path[256];
    tmp_path(path, sizeof path, "small");
    uint8_t *p = NULL;
    if (qf_gguf_writer_write(w, path, NULL) == QF_OK) p = read_file(path, n);
    unlink(path);
    qf_gguf_writer_free(w);
    return p;
}

static void test_small_file_content(void) {
    size_t n;
    uint8_t *p = make_small(&n, 32);
    ASSERT(p);
    qf_err err = {0};
    qf_gguf *g = qf_gguf_open_mem(p, n, "small.gguf", &err);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT_STR_EQ(qf_gguf_path(g), "small.gguf");
    qf_gguf_str s;
    ASSERT(qf_gguf_get_str(g, "general.architecture", &s) && s.len == 5);
    qf_gguf_arr a;
    ASSERT(qf_gguf_get_arr(g, "tokenizer.ggml.tokens", &a) && a.n == 5);
    s = qf_gguf_arr_str(g, &a, 4);
    ASSERT(s.len == 6 && memcmp(s.ptr, "\xe2\x96\x81the", 6) == 0);
    /* the file's layout, checked against the spec byte by byte */
    ASSERT(memcmp(p, "GGUF", 4) == 0 && p[4] == 3 && p[5] == 0);
    ASSERT(p[8] == 3 && p[16] == 7); /* 3 tensors, 7 kv */
    ASSERT(p[24] == strlen("general.architecture") && p[32] == 'g');
    const qf_gguf_tensor *t = qf_gguf_find_tensor(g, "blk.0.attn_q.weight");
    ASSERT(t && t->type == 8 && t->size == 68 && t->offset == 128);
    ASSERT(((const uint8_t *)t->data)[0] == 2 && ((const uint8_t *)t->data)[1] == 5);
    t = qf_gguf_find_tensor(g, "blk.0.norm");
    ASSERT(t && t->n_dims == 3 && t->ne[2] == 2 && t->ne[3] == 1 && t->offset == 224);
    ASSERT_EQ_INT(n, qf_gguf_data_offset(g) + 224 + 32);
    qf_gguf_close(g);
    free(p);
}

/* ---- truncation, corruption ---- */

static void test_truncation(void) {
    size_t n;
    uint8_t *p = make_small(&n, 32);
    ASSERT(p);
    qf_err err = {0};
    qf_gguf *g = qf_gguf_open_mem(p, n, "t.gguf", &err);
    ASSERT_MSG(g, "%s", err.msg);
    const qf_gguf_tensor *last = qf_gguf_tensor_at(g, 2);
    size_t need = qf_gguf_data_offset(g) + last->offset + last->size;
    qf_gguf_close(g);
    for (size_t len = 0; len <= n; len++) {
        uint8_t *c = malloc(len ? len : 1);
        memcpy(c, p, len);
        memset(&err, 0, sizeof err);
        g = qf_gguf_open_mem(c, len, "t.gguf", &err);
        if (len < need) {
            ASSERT_MSG(!g, "prefix %zu of %zu opened", len, n);
            ASSERT_MSG(err.code == QF_ERR_FORMAT, "prefix %zu: %s", len, err.msg);
            ASSERT_MSG(strncmp(err.msg, "t.gguf: ", 8) == 0, "%s", err.msg);
        } else {
            /* the trailing padding of the last tensor is optional */
            ASSERT_MSG(g, "prefix %zu: %s", len, err.msg);
            ASSERT(gguf_walk(g) >= 0);
            qf_gguf_close(g);
        }
        free(c);
    }
    free(p);
}

static void test_random_flips(void) {
    size_t n;
    uint8_t *p = make_small(&n, 32);
    ASSERT(p);
    g_rng = qf_test_seed() | 1;
    int opened = 0;
    uint8_t *c = malloc(n);
    for (int iter = 0; iter < 4000; iter++) {
        memcpy(c, p, n);
        int flips = 1 + (int)(rnd() % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = rnd() % n;
            switch (rnd() % 4) {
            case 0: c[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: c[at] = (uint8_t)rnd(); break;
            case 2: c[at] = 0xff; break;
            default: c[at] = 0; break;
            }
        }
        /* bias towards the header, where the structure is */
        if (iter % 2) c[rnd() % (n < 400 ? n : 400)] ^= (uint8_t)rnd();
        size_t len = iter % 5 == 0 ? rnd() % (n + 1) : n;
        uint8_t *e = malloc(len ? len : 1);
        memcpy(e, c, len);
        qf_err err = {0};
        qf_gguf *g = qf_gguf_open_mem(e, len, "flip.gguf", &err);
        if (g) {
            opened++;
            ASSERT_MSG(gguf_walk(g) >= 0, "iteration %d", iter);
            qf_gguf_close(g);
        } else {
            ASSERT_MSG(err.code < 0 && strncmp(err.msg, "flip.gguf: ", 11) == 0, "%s", err.msg);
        }
        free(e);
    }
    fprintf(stderr, "  %d of 4000 corrupted files still opened\n", opened);
    free(c);
    free(p);
}

/* ---- hand-crafted hostile files ---- */

#define EXPECT_FAIL(b, code, word) expect_fail((b), (code), (word), __LINE__)

static void expect_fail(bb *b, qf_status code, const char *word, int line) {
    qf_err err = {0};
    uint8_t *c = malloc(b->n ? b->n : 1);
    memcpy(c, b->p, b->n);
    qf_gguf *g = qf_gguf_open_mem(c, b->n, "hostile.gguf", &err);
    free(c);
    bb_free(b);
    if (g) qf_gguf_close(g);
    ASSERT_MSG(!g, "line %d: opened", line);
    ASSERT_MSG(err.code == code, "line %d: code %d (%s), want %d", line, err.code, err.msg, code);
    ASSERT_MSG(strncmp(err.msg, "hostile.gguf: ", 14) == 0, "line %d: %s", line, err.msg);
    ASSERT_MSG(strstr(err.msg, word), "line %d: '%s' not in: %s", line, word, err.msg);
}

static qf_gguf *open_bb(bb *b, qf_err *err) {
    qf_gguf *g = qf_gguf_open_mem(b->p, b->n, "ok.gguf", err);
    return g;
}

static void test_hostile_header(void) {
    bb b = {0};
    bb_put(&b, "GGML", 4);
    bb_u32(&b, 3);
    bb_u64(&b, 0);
    bb_u64(&b, 0);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "not a GGUF");
    bb_put(&b, "GG", 2);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "truncated");
    bb_hdr(&b, 1, 0, 0);
    EXPECT_FAIL(&b, QF_ERR_UNSUPPORTED, "version 1");
    bb_hdr(&b, 0x03000000u, 0, 0); /* a big-endian v3 file read little-endian */
    EXPECT_FAIL(&b, QF_ERR_UNSUPPORTED, "big-endian");
    bb_hdr(&b, 0x02000000u, 0, 0);
    EXPECT_FAIL(&b, QF_ERR_UNSUPPORTED, "big-endian");
    bb_hdr(&b, 4, 0, 0);
    EXPECT_FAIL(&b, QF_ERR_UNSUPPORTED, "version 4");
    bb_hdr(&b, 3, 0, 0);
    b.n -= 1; /* kv count cut short */
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "kv count");
    /* counts that cannot fit fail before anything is allocated for them */
    bb_hdr(&b, 3, 0, 1ull << 60);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "cannot fit");
    bb_hdr(&b, 3, 1ull << 60, 0);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "cannot fit");
    bb_hdr(&b, 3, UINT64_MAX, UINT64_MAX);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "cannot fit");
    /* a minimal valid file: v2 is accepted too */
    bb_hdr(&b, 2, 0, 0);
    qf_err err = {0};
    qf_gguf *g = open_bb(&b, &err);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT_EQ_INT(qf_gguf_version(g), 2);
    ASSERT_EQ_INT(qf_gguf_n_kv(g), 0);
    ASSERT(qf_gguf_data_offset(g) <= qf_gguf_file_size(g));
    qf_gguf_close(g);
    bb_free(&b);
}

/* header with one kv, whose value the caller appends */
static void kv1(bb *b, const char *key, uint32_t type) {
    bb_hdr(b, 3, 0, 1);
    bb_key(b, key, type);
}

static void test_hostile_kv(void) {
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 1ull << 60); /* key length */
    bb_put(&b, "abcdefgh", 8);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "key");
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 3);
    bb_put(&b, "a\0b", 3);
    bb_u32(&b, QF_GGUF_UINT8);
    bb_u8(&b, 0);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "NUL");
    kv1(&b, "k.str", QF_GGUF_STRING);
    bb_u64(&b, 1ull << 60);
    bb_put(&b, "xxxxxxxx", 8);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "string");
    kv1(&b, "k.str", QF_GGUF_STRING);
    bb_u64(&b, 9);
    bb_put(&b, "xxxxxxxx", 8); /* one byte short */
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "k.str");
    kv1(&b, "k.type", 13);
    bb_u32(&b, 0);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "value type 13");
    kv1(&b, "k.type", 0xffffffffu);
    bb_u32(&b, 0);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "value type 4294967295");
    kv1(&b, "k.bool", QF_GGUF_BOOL);
    bb_u8(&b, 2);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "bool");
    kv1(&b, "k.u32", QF_GGUF_UINT32);
    bb_u8(&b, 1);
    bb_u8(&b, 1); /* 2 of 4 bytes */
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "truncated");
    /* arrays */
    kv1(&b, "k.arr", QF_GGUF_ARRAY);
    bb_u32(&b, QF_GGUF_UINT8);
    bb_u64(&b, 1ull << 60);
    bb_put(&b, "xxxxxxxx", 8);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "array");
    kv1(&b, "k.arr", QF_GGUF_ARRAY);
    bb_u32(&b, QF_GGUF_UINT64);
    bb_u64(&b, (1ull << 61) + 1); /* n * 8 wraps to 8 in 64 bits */
    bb_put(&b, "xxxxxxxx", 8);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "array");
    kv1(&b, "k.arr", QF_GGUF_ARRAY);
    bb_u32(&b, QF_GGUF_STRING);
    bb_u64(&b, 1ull << 60);
    bb_put(&b, "xxxxxxxxxxxxxxxx", 16);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "array");
    kv1(&b, "k.arr", QF_GGUF_ARRAY);
    bb_u32(&b, QF_GGUF_STRING);
    bb_u64(&b, 2);
    bb_str(&b, "ok");
    bb_u64(&b, 1000); /* second string runs off the end */
    bb_put(&b, "abc", 3);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "element 1");
    kv1(&b, "k.arr", QF_GGUF_ARRAY);
    bb_u32(&b, 99);
    bb_u64(&b, 0);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "element type 99");
    kv1(&b, "k.arr", QF_GGUF_ARRAY);
    bb_u32(&b, QF_GGUF_BOOL);
    bb_u64(&b, 3);
    bb_u8(&b, 1);
    bb_u8(&b, 0);
    bb_u8(&b, 7);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "bool");
    /* duplicate keys */
    bb_hdr(&b, 3, 0, 2);
    bb_key(&b, "dup", QF_GGUF_UINT8);
    bb_u8(&b, 1);
    bb_key(&b, "dup", QF_GGUF_UINT16);
    bb_u8(&b, 1);
    bb_u8(&b, 1);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "duplicate key");
    bb_free(&b);
}

/* An array nested `depth` levels deep (depth 1: a plain array of u8). */
static void nested(bb *b, int depth) {
    if (depth == 1) {
        bb_u32(b, QF_GGUF_UINT8);
        bb_u64(b, 2);
        bb_u8(b, 4);
        bb_u8(b, 5);
        return;
    }
    bb_u32(b, QF_GGUF_ARRAY);
    bb_u64(b, 2);
    nested(b, depth - 1);
    nested(b, depth - 1);
}

static void test_nested_arrays(void) {
    bb b = {0};
    bb_hdr(&b, 3, 0, 2);
    bb_key(&b, "nest", QF_GGUF_ARRAY);
    nested(&b, 8); /* the deepest accepted */
    bb_key(&b, "after", QF_GGUF_UINT32);
    bb_u32(&b, 1234);
    qf_err err = {0};
    qf_gguf *g = open_bb(&b, &err);
    ASSERT_MSG(g, "%s", err.msg);
    qf_gguf_arr a;
    ASSERT(qf_gguf_get_arr(g, "nest", &a) && a.type == QF_GGUF_ARRAY && a.n == 2);
    ASSERT(qf_gguf_arr_int(&a, 0) == 0 && qf_gguf_arr_str(g, &a, 0).ptr == NULL);
    int64_t v;
    ASSERT(qf_gguf_get_int(g, "after", &v) && v == 1234);
    size_t len;
    qf_gguf_kv_raw(g, 0, &len);
    ASSERT_EQ_INT(len, 12 * 255 + 2 * 128); /* 2^8-1 array headers, 2^7 leaves of 2 bytes */

    /* a writer copies the nested value verbatim */
    qf_gguf_writer *w = qf_gguf_writer_new();
    ASSERT(w);
    ASSERT_EQ_INT(qf_gguf_writer_copy_kv(w, g, 0), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_copy_kv(w, g, 1), QF_OK);
    ASSERT_EQ_INT(qf_gguf_writer_copy_kv(w, g, 2), QF_ERR_INVALID);
    qf_gguf *g2 = write_and_open(w, "nested", &err);
    qf_gguf_writer_free(w);
    ASSERT_MSG(g2, "%s", err.msg);
    size_t len2;
    const uint8_t *r1 = qf_gguf_kv_raw(g, 0, &len), *r2 = qf_gguf_kv_raw(g2, 0, &len2);
    ASSERT(len == len2 && memcmp(r1, r2, len) == 0);
    qf_gguf_close(g2);
    qf_gguf_close(g);
    bb_free(&b);

    bb_hdr(&b, 3, 0, 1);
    bb_key(&b, "nest", QF_GGUF_ARRAY);
    nested(&b, 9);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "nested");
    /* a nested element with a bad type */
    kv1(&b, "nest", QF_GGUF_ARRAY);
    bb_u32(&b, QF_GGUF_ARRAY);
    bb_u64(&b, 1);
    bb_u32(&b, 77);
    bb_u64(&b, 0);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "element type 77");
}

static void test_hostile_alignment(void) {
    bb b = {0};
    kv1(&b, "general.alignment", QF_GGUF_UINT32);
    bb_u32(&b, 0);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "alignment");
    kv1(&b, "general.alignment", QF_GGUF_UINT32);
    bb_u32(&b, 48);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "power of two");
    kv1(&b, "general.alignment", QF_GGUF_UINT64);
    bb_u64(&b, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "alignment");
    kv1(&b, "general.alignment", QF_GGUF_UINT32);
    bb_u32(&b, 1u << 31);
    qf_err err = {0};
    qf_gguf *g = open_bb(&b, &err);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT_EQ_INT(qf_gguf_alignment(g), 1u << 31);
    ASSERT(qf_gguf_data_offset(g) <= qf_gguf_file_size(g));
    qf_gguf_close(g);
    bb_free(&b);
}

/* one F32 tensor [ne...], header padded to 32, then `data` bytes */
static void t1(bb *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
               uint64_t offset, size_t data) {
    bb_hdr(b, 3, 1, 0);
    bb_tinfo(b, name, n_dims, ne, type, offset);
    bb_pad(b, 32);
    for (size_t i = 0; i < data; i++) bb_u8(b, (uint8_t)i);
}

static void test_hostile_tensors(void) {
    bb b = {0};
    int64_t ne[5] = {8, 2, 1, 1, 1};
    t1(&b, "w", 2, ne, 0, 0, 64);
    qf_err err = {0};
    qf_gguf *g = open_bb(&b, &err);
    ASSERT_MSG(g, "%s", err.msg); /* the base case is valid */
    ASSERT_EQ_INT(qf_gguf_tensor_at(g, 0)->size, 64);
    ASSERT_EQ_INT(qf_gguf_data_offset(g), 96); /* 65 header bytes, padded to 32 */
    ASSERT(((const uint8_t *)qf_gguf_tensor_at(g, 0)->data)[63] == 63);
    qf_gguf_close(g);
    bb_free(&b);

    t1(&b, "w", 2, ne, 0, 0, 63);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "tensor 0 'w': data [96..160) past end of file (size 159)");
    t1(&b, "w", 5, ne, 0, 0, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "n_dims 5");
    t1(&b, "w", 0xffffffffu, ne, 0, 0, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "n_dims");
    int64_t neg[2] = {8, -2};
    t1(&b, "w", 2, neg, 0, 0, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "negative");
    int64_t huge[3] = {1ll << 40, 1ll << 40, 1};
    t1(&b, "w", 3, huge, 0, 0, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "overflow");
    int64_t bytes_ovf[1] = {1ll << 62}; /* 2^62 elements fit; 2^64 bytes do not */
    t1(&b, "w", 1, bytes_ovf, 0, 0, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "overflow");
    int64_t big[1] = {1ll << 40};
    t1(&b, "w", 1, big, 0, 0, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "past end of file");
    t1(&b, "w", 2, ne, 99, 0, 64);
    EXPECT_FAIL(&b, QF_ERR_UNSUPPORTED, "tensor 0 'w': unknown ggml type id 99");
    t1(&b, "w", 2, ne, 4, 0, 64); /* a removed ggml type */
    EXPECT_FAIL(&b, QF_ERR_UNSUPPORTED, "type id 4");
    int64_t ne33[1] = {33};
    t1(&b, "q", 1, ne33, 8, 0, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "block size 32");
    t1(&b, "w", 2, ne, 0, 4, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "alignment");
    t1(&b, "w", 2, ne, 0, 32, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "past end of file");
    t1(&b, "w", 2, ne, 0, 1ull << 63, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "past end of file");
    t1(&b, "w", 2, ne, 0, UINT64_MAX - 31, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "past end of file");
    char name64[65];
    memset(name64, 'n', 64);
    name64[64] = 0;
    t1(&b, name64, 2, ne, 0, 0, 64);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "max 63");
    name64[63] = 0;
    t1(&b, name64, 2, ne, 0, 0, 64);
    g = open_bb(&b, &err);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT_STR_EQ(qf_gguf_tensor_at(g, 0)->name, name64);
    qf_gguf_close(g);
    bb_free(&b);
    bb_hdr(&b, 3, 1, 0);
    bb_u64(&b, 3);
    bb_put(&b, "a\0b", 3);
    bb_u32(&b, 1);
    bb_u64(&b, 8);
    bb_u32(&b, 0);
    bb_u64(&b, 0);
    bb_pad(&b, 32);
    bb_put(&b, "0123456789abcdef0123456789abcdef", 32);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "NUL");
    /* duplicate tensor names */
    bb_hdr(&b, 3, 2, 0);
    bb_tinfo(&b, "w", 2, ne, 0, 0);
    bb_tinfo(&b, "w", 2, ne, 0, 64);
    bb_pad(&b, 32);
    for (int i = 0; i < 128; i++) bb_u8(&b, 0);
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "tensor 1 'w': duplicate");
    /* tensor info cut short */
    bb_hdr(&b, 3, 1, 0);
    bb_str(&b, "w");
    bb_u32(&b, 2);
    bb_u64(&b, 8);
    for (int i = 0; i < 20; i++) bb_u8(&b, 0); /* fits the count check, not the info */
    b.n = 24 + 9 + 4 + 8 + 4;
    EXPECT_FAIL(&b, QF_ERR_FORMAT, "tensor 0 'w'");
    /* zero-sized tensors and n_dims 0 (a scalar) are fine */
    int64_t zero[2] = {0, 5};
    bb_hdr(&b, 3, 2, 0);
    bb_tinfo(&b, "z", 2, zero, 12, 0);
    bb_tinfo(&b, "s", 0, NULL, 0, 0);
    bb_pad(&b, 32);
    bb_u32(&b, 0x3f800000u);
    g = open_bb(&b, &err);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT(qf_gguf_find_tensor(g, "z")->size == 0);
    const qf_gguf_tensor *s = qf_gguf_find_tensor(g, "s");
    ASSERT(s->size == 4 && s->n_dims == 0 && s->ne[0] == 1 && s->ne[3] == 1);
    qf_gguf_close(g);
    bb_free(&b);
}

/* ---- open() over files ---- */

static void test_open_errors(void) {
    qf_err err = {0};
    ASSERT(!qf_gguf_open("/nonexistent/model.gguf", &err));
    ASSERT_EQ_INT(err.code, QF_ERR_IO);
    ASSERT(strncmp(err.msg, "/nonexistent/model.gguf: ", 25) == 0);
    ASSERT(strstr(err.msg, strerror(ENOENT)));
    ASSERT(!qf_gguf_open("/tmp", &err));
    ASSERT_EQ_INT(err.code, QF_ERR_IO);
    ASSERT(strstr(err.msg, "regular"));
    ASSERT(!qf_gguf_open(NULL, &err));
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    char path[256];
    tmp_path(path, sizeof path, "empty");
    ASSERT(write_file(path, "", 0) == 0);
    ASSERT(!qf_gguf_open(path, &err));
    ASSERT_EQ_INT(err.code, QF_ERR_FORMAT);
    ASSERT(strncmp(err.msg, path, strlen(path)) == 0);
    unlink(path);
    ASSERT(!qf_gguf_open_mem(NULL, 10, "x", &err));
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    ASSERT(!qf_gguf_open_mem(NULL, 0, NULL, &err));
    ASSERT(strncmp(err.msg, "<memory>: ", 10) == 0);
    ASSERT(!qf_gguf_open_mem("GGUF", 4, "x", NULL)); /* err may be NULL */
    qf_gguf_close(NULL);
}

/* ---- allocation failure ---- */

static void test_alloc_failure_open(void) {
    size_t n;
    uint8_t *p = make_small(&n, 32);
    ASSERT(p);
    char path[256];
    tmp_path(path, sizeof path, "faults");
    ASSERT(write_file(path, p, n) == 0);
    for (int use_file = 0; use_file < 2; use_file++) {
        long fails = 0;
        for (long k = 0;; k++) {
            qf_err err = {0};
            qf_mem_fail_after(k);
            qf_gguf *g = use_file ? qf_gguf_open(path, &err) : qf_gguf_open_mem(p, n, "f", &err);
            qf_mem_fail_after(-1);
            if (g) {
                ASSERT(gguf_walk(g) >= 0);
                ASSERT_EQ_INT(qf_gguf_n_tensors(g), 3);
                qf_gguf_close(g);
                break;
            }
            ASSERT_MSG(err.code == QF_ERR_NOMEM, "k=%ld: %s", k, err.msg);
            ASSERT(strstr(err.msg, "out of memory"));
            fails++;
            ASSERT(k < 1000);
        }
        ASSERT(fails >= 5); /* the loop did exercise failure paths */
    }
    unlink(path);
    free(p);
}

static qf_status build_and_write(const char *path, qf_err *err) {
    qf_status st = QF_ERR_NOMEM;
    qf_gguf_writer *w = qf_gguf_writer_new();
    if (!w) return QF_ERR_NOMEM;
    static const float d[64];
    int64_t ne[2] = {32, 2};
    const char *toks[] = {"a", "bb", ""};
    if ((st = qf_gguf_writer_set_str(w, "general.architecture", "llama"))) goto out;
    if ((st = qf_gguf_writer_set_u32(w, "x.n", 5))) goto out;
    if ((st = qf_gguf_writer_set_arr_str(w, "x.toks", toks, 3))) goto out;
    if ((st = qf_gguf_writer_set_arr(w, "x.f", QF_GGUF_FLOAT32, d, 4))) goto out;
    for (int i = 0; i < 20; i++) { /* crosses the table growth points */
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        if ((st = qf_gguf_writer_add_tensor(w, name, 0, 2, ne, d, err))) goto out;
    }
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        if ((st = qf_gguf_writer_set_u32(w, key, (uint32_t)i))) goto out;
    }
    st = qf_gguf_writer_write(w, path, err);
out:
    qf_gguf_writer_free(w);
    return st;
}

static void test_alloc_failure_write(void) {
    char path[256], tmp[300];
    tmp_path(path, sizeof path, "wfaults");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    long fails = 0;
    for (long k = 0;; k++) {
        qf_err err = {0};
        qf_mem_fail_after(k);
        qf_status st = build_and_write(path, &err);
        qf_mem_fail_after(-1);
        struct stat sb;
        ASSERT(stat(tmp, &sb) != 0); /* never a stray .tmp */
        if (st == QF_OK) break;
        ASSERT_MSG(st == QF_ERR_NOMEM, "k=%ld: %d %s", k, st, err.msg);
        ASSERT(stat(path, &sb) != 0);
        fails++;
        ASSERT(k < 1000);
    }
    ASSERT(fails >= 10);
    qf_err err = {0};
    qf_gguf *g = qf_gguf_open(path, &err);
    ASSERT_MSG(g, "%s", err.msg);
    ASSERT_EQ_INT(qf_gguf_n_tensors(g), 20);
    ASSERT_EQ_INT(qf_gguf_n_kv(g), 24);
    qf_gguf_close(g);
    unlink(path);
}

/* ---- scale: big vocab, many tensors ---- */

static void test_scale(void) {
    enum { NT = 150000, NTENS = 5000 };
    char **toks = malloc(NT * sizeof *toks);
    ASSERT(toks);
    for (int i = 0; i < NT; i++) {
        toks[i] = malloc(16);
        snprintf(toks[i], 16, "tok%d", i);
    }
    qf_gguf_writer *w = qf_gguf_writer_new();
    ASSERT(w);
    ASSERT_EQ_INT(qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, NT),
                  QF_OK);
    static const float d[32];
    int64_t ne[1] = {8};
    qf_err err = {0};
    for (int i = 0; i < NTENS; i++) {
        char name[32];
        snprintf(name, sizeof name, "blk.%d.ffn.%d", i / 10, i % 10);
        ASSERT_EQ_INT(qf_gguf_writer_add_tensor(w, name, 0, 1, ne, d, &err), QF_OK);
    }
    struct timespec t0, t1;
    qf_gguf *g = write_and_open(w, "scale", &err);
    qf_gguf_writer_free(w);
    ASSERT_MSG(g, "%s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qf_gguf_arr a;
    ASSERT(qf_gguf_get_arr(g, "tokenizer.ggml.tokens", &a) && a.n == NT);
    for (int rep = 0; rep < 3; rep++) {
        for (int i = NT - 1; i >= 0; i--) { /* backwards: no sequential shortcut */
            qf_gguf_str s = qf_gguf_arr_str(g, &a, (uint64_t)i);
            ASSERT(s.len == strlen(toks[i]) && memcmp(s.ptr, toks[i], s.len) == 0);
        }
        for (int i = 0; i < NTENS; i++) {
            char name[32];
            snprintf(name, sizeof name, "blk.%d.ffn.%d", i / 10, i % 10);
            const qf_gguf_tensor *t = qf_gguf_find_tensor(g, name);
            ASSERT(t && t == qf_gguf_tensor_at(g, i));
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "  %d string lookups + %d tensor lookups: %.3f s\n", 3 * NT, 3 * NTENS, s);
    ASSERT(s < 5.0); /* quadratic behaviour would take minutes */
    qf_gguf_close(g);
    for (int i = 0; i < NT; i++) free(toks[i]);
    free(toks);
}

int main(void) {
    RUN_TEST(test_type_info);
    RUN_TEST(test_roundtrip_scalars);
    RUN_TEST(test_roundtrip_arrays);
    RUN_TEST(test_replace_remove);
    RUN_TEST(test_tensors_align32);
    RUN_TEST(test_tensors_align64);
    RUN_TEST(test_tensors_align1);
    RUN_TEST(test_tensors_align4096);
    RUN_TEST(test_writer_rejects);
    RUN_TEST(test_writer_io_errors);
    RUN_TEST(test_small_file_content);
    RUN_TEST(test_truncation);
    RUN_TEST(test_random_flips);
    RUN_TEST(test_hostile_header);
    RUN_TEST(test_hostile_kv);
    RUN_TEST(test_nested_arrays);
    RUN_TEST(test_hostile_alignment);
    RUN_TEST(test_hostile_tensors);
    RUN_TEST(test_open_errors);
    RUN_TEST(test_alloc_failure_open);
    RUN_TEST(test_alloc_failure_write);
    RUN_TEST(test_scale);
    TEST_MAIN_END();
}
