/* test_store.c - job store (SQLite + zstd cache) and crash-safe writer. */
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <unistd.h>

#include "base/mem.h"
#include "pipeline/store.h"
#include "pipeline/writer.h"
#include "qf_test.h"

static char g_tmp[256];

static const char *tpath(const char *name) {
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_tmp, name);
    return p[k];
}

static qf_cache_key key_of(int i) {
    qf_cache_key k;
    for (int j = 0; j < 16; j++) k.b[j] = (uint8_t)(i * 31 + j);
    return k;
}

static void test_cache(void) {
    qf_err e = {0};
    unlink(tpath("c.db"));
    qf_store *s = qf_store_open(tpath("c.db"), &e);
    ASSERT(s);
    /* a large, compressible value and a tiny one round-trip */
    size_t big = 200000;
    char *v = malloc(big + 1);
    for (size_t i = 0; i < big; i++) v[i] = "abcdefgh{}\"\n"[i % 12];
    v[big] = 0;
    qf_cache_key k1 = key_of(1), k2 = key_of(2), k3 = key_of(3);
    qf_cache_info in = {123, 45, "length"};
    ASSERT_EQ_INT(qf_store_cache_put(s, &k1, "m", v, big, &in, &e), QF_OK);
    ASSERT_EQ_INT(qf_store_cache_put(s, &k2, "m", "", 0, NULL, &e), QF_OK);
    char *t = NULL;
    size_t n = 0;
    qf_cache_info out;
    ASSERT_EQ_INT(qf_store_cache_get(s, &k1, &t, &n, &out, &e), QF_OK);
    ASSERT_EQ_INT(n, big);
    ASSERT(!memcmp(t, v, big) && t[n] == 0);
    ASSERT_EQ_INT(out.tokens_in, 123);
    ASSERT_EQ_INT(out.tokens_out, 45);
    ASSERT_STR_EQ(out.finish, "length");
    qf_free(t);
    ASSERT_EQ_INT(qf_store_cache_get(s, &k2, &t, &n, NULL, &e), QF_OK);
    ASSERT(n == 0 && t && t[0] == 0);
    qf_free(t);
    ASSERT_EQ_INT(qf_store_cache_get(s, &k3, &t, &n, NULL, &e), QF_ERR_NOT_FOUND);
    ASSERT(t == NULL);
    ASSERT_EQ_INT(qf_store_cache_count(s), 2);
    qf_store_close(s);

    /* the blob is compressed: the database is much smaller than the value */
    sqlite3 *db;
    sqlite3_open(tpath("c.db"), &db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT length(value) FROM cache WHERE raw_len > 1000", -1, &st, NULL);
    ASSERT(sqlite3_step(st) == SQLITE_ROW);
    ASSERT(sqlite3_column_int(st, 0) < (int)big / 20);
    sqlite3_finalize(st);
    /* corrupt the stored value: get reports FORMAT and drops the row */
    sqlite3_exec(db, "UPDATE cache SET value = x'00112233' WHERE raw_len > 1000", NULL, NULL, NULL);
    sqlite3_close(db);
    s = qf_store_open(tpath("c.db"), &e);
    ASSERT(s);
    ASSERT_EQ_INT(qf_store_cache_get(s, &k1, &t, &n, NULL, &e), QF_ERR_FORMAT);
    ASSERT_EQ_INT(qf_store_cache_get(s, &k1, &t, &n, NULL, &e), QF_ERR_NOT_FOUND);
    /* the cache survives a job reset */
    ASSERT_EQ_INT(qf_store_job_reset(s, &e), QF_OK);
    ASSERT_EQ_INT(qf_store_cache_count(s), 1);
    qf_store_close(s);
    free(v);

    /* not a database / unwritable place */
    FILE *f = fopen(tpath("junk.db"), "wb");
    fputs("this is not an sqlite database, just text that is long enough to have a header......", f);
    fclose(f);
    ASSERT(!qf_store_open(tpath("junk.db"), &e));
    ASSERT(strstr(e.msg, "junk.db"));
    ASSERT(!qf_store_open("/nonexistent-dir/x.db", &e));
    ASSERT_EQ_INT(e.code, QF_ERR_IO);
}

static void test_job(void) {
    qf_err e = {0};
    unlink(tpath("j.db"));
    qf_store *s = qf_store_open(tpath("j.db"), &e);
    ASSERT(s);
    char *v = NULL;
    ASSERT_EQ_INT(qf_store_meta_get(s, "signature", &v, &e), QF_ERR_NOT_FOUND);
    ASSERT_EQ_INT(qf_store_meta_set(s, "signature", "{\"a\":1}", &e), QF_OK);
    ASSERT_EQ_INT(qf_store_meta_set(s, "signature", "{\"a\":2}", &e), QF_OK);
    ASSERT_EQ_INT(qf_store_meta_get(s, "signature", &v, &e), QF_OK);
    ASSERT_STR_EQ(v, "{\"a\":2}");
    qf_free(v);
    ASSERT_EQ_INT(qf_store_meta_set_i64(s, "size:out", 12345678901LL, &e), QF_OK);
    ASSERT_EQ_INT(qf_store_meta_get_i64(s, "size:out", -1), 12345678901LL);
    ASSERT_EQ_INT(qf_store_meta_get_i64(s, "size:none", -7), -7);

    int64_t id = 0;
    ASSERT_EQ_INT(qf_store_doc_put(s, "docs/a.txt", 100, 5, QF_DOC_PENDING, -1, NULL, &id, &e), QF_OK);
    ASSERT(id > 0);
    qf_store_doc d;
    ASSERT_EQ_INT(qf_store_doc_get(s, "docs/a.txt", &d, &e), QF_OK);
    ASSERT(d.id == id && d.size == 100 && d.mtime_ns == 5 && d.status == QF_DOC_PENDING);
    ASSERT_EQ_INT(qf_store_doc_get(s, "docs/b.txt", &d, &e), QF_ERR_NOT_FOUND);

    /* a transaction that is rolled back leaves nothing */
    ASSERT_EQ_INT(qf_store_begin(s, &e), QF_OK);
    ASSERT_EQ_INT(qf_store_chunk_done(s, id, 0, 0, 50, 2, &e), QF_OK);
    qf_store_rollback(s);
    ASSERT(!qf_store_chunk_is_done(s, id, 0, 0, 50));

    ASSERT_EQ_INT(qf_store_begin(s, &e), QF_OK);
    ASSERT_EQ_INT(qf_store_chunk_done(s, id, 0, 0, 50, 2, &e), QF_OK);
    qf_pair p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "p1");
    p.doc_id = id;
    p.path = "docs/a.txt";
    p.question = "Q?";
    p.answer = "A.";
    p.score = -1;
    p.model = "m";
    ASSERT_EQ_INT(qf_store_pair_add(s, &p, &e), QF_OK);
    snprintf(p.id, sizeof p.id, "p2");
    p.status = QF_PAIR_DUPLICATE;
    p.dup_of = "p1";
    ASSERT_EQ_INT(qf_store_pair_add(s, &p, &e), QF_OK);
    qf_failure f = {id, "docs/a.txt", 0, 1, "malformed", "no JSON"};
    ASSERT_EQ_INT(qf_store_failure_add(s, &f, &e), QF_OK);
    ASSERT_EQ_INT(qf_store_failure_add(s, &f, &e), QF_OK);
    ASSERT_EQ_INT(qf_store_commit(s, &e), QF_OK);
    ASSERT(qf_store_chunk_is_done(s, id, 0, 0, 50));
    ASSERT(!qf_store_chunk_is_done(s, id, 0, 0, 51)); /* same index, other range: not done */
    ASSERT_EQ_INT(qf_store_chunks_done(s, id), 1);
    qf_store_counts c;
    qf_store_get_counts(s, &c);
    ASSERT(c.docs == 1 && c.chunks_done == 1 && c.pairs[0] == 1 && c.pairs[2] == 1 && c.failures == 2);
    qf_store_close(s);

    /* everything committed is there after reopening; reset forgets the job */
    s = qf_store_open(tpath("j.db"), &e);
    ASSERT(s);
    qf_store_get_counts(s, &c);
    ASSERT(c.pairs[0] == 1 && c.failures == 2);
    ASSERT_EQ_INT(qf_store_meta_get(s, "signature", &v, &e), QF_OK);
    qf_free(v);
    ASSERT_EQ_INT(qf_store_job_reset(s, &e), QF_OK);
    qf_store_get_counts(s, &c);
    ASSERT(c.docs == 0 && c.pairs[0] == 0 && c.failures == 0);
    ASSERT_EQ_INT(qf_store_meta_get(s, "signature", &v, &e), QF_ERR_NOT_FOUND);
    ASSERT_EQ_INT(qf_store_meta_get_i64(s, "size:out", -1), -1);
    qf_store_close(s);
}

static qf_pair sample_pair(const char *q, const char *a) {
    qf_pair p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "abc123");
    p.path = "docs/x.txt";
    p.chunk = 3;
    p.start = 10;
    p.end = 99;
    p.pass = 1;
    p.question = q;
    p.answer = a;
    p.score = -1;
    p.model = "tiny.gguf";
    return p;
}

static void test_formats(void) {
    qf_pair p = sample_pair("What is \"wax\"?\nReally?", "Bees make it.\tBad \xC3(utf8)");
    size_t n;
    char *s = qf_format_record(QF_FORMAT_QA, &p, &n);
    ASSERT(s && n == strlen(s) && s[n - 1] == '\n' && !memchr(s, '\n', n - 1));
    cJSON *j = cJSON_Parse(s);
    ASSERT(j);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "id")->valuestring, "abc123");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "question")->valuestring, "What is \"wax\"?\nReally?");
    ASSERT(strstr(cJSON_GetObjectItem(j, "answer")->valuestring, "Bad \xEF\xBF\xBD(utf8)")); /* repaired */
    cJSON *src = cJSON_GetObjectItem(j, "source");
    ASSERT_STR_EQ(cJSON_GetObjectItem(src, "path")->valuestring, "docs/x.txt");
    ASSERT_EQ_INT(cJSON_GetObjectItem(src, "chunk")->valueint, 3);
    ASSERT_EQ_INT(cJSON_GetObjectItem(src, "start")->valueint, 10);
    ASSERT_EQ_INT(cJSON_GetObjectItem(src, "end")->valueint, 99);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "model")->valuestring, "tiny.gguf");
    ASSERT_EQ_INT(cJSON_GetObjectItem(j, "pass")->valueint, 1);
    ASSERT(!cJSON_GetObjectItem(j, "score")); /* not curated */
    cJSON_Delete(j);
    qf_free(s);

    p.score = 8;
    s = qf_format_record(QF_FORMAT_QA, &p, &n);
    j = cJSON_Parse(s);
    ASSERT_EQ_INT(cJSON_GetObjectItem(j, "score")->valueint, 8);
    cJSON_Delete(j);
    qf_free(s);

    p = sample_pair("Q", "A");
    s = qf_format_record(QF_FORMAT_ALPACA, &p, &n);
    ASSERT_STR_EQ(s, "{\"instruction\":\"Q\",\"input\":\"\",\"output\":\"A\"}\n");
    qf_free(s);
    s = qf_format_record(QF_FORMAT_SHAREGPT, &p, &n);
    ASSERT_STR_EQ(s, "{\"conversations\":[{\"from\":\"human\",\"value\":\"Q\"},{\"from\":\"gpt\",\"value\":\"A\"}]}\n");
    qf_free(s);
    s = qf_format_record(QF_FORMAT_OPENAI, &p, &n);
    ASSERT_STR_EQ(s, "{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]}\n");
    qf_free(s);
    /* rejected pairs are written in the qa form whatever the format */
    p.status = QF_PAIR_REJECTED;
    p.score = 2;
    s = qf_format_record(QF_FORMAT_OPENAI, &p, &n);
    ASSERT(strstr(s, "\"score\":2") && strstr(s, "\"question\":\"Q\""));
    qf_free(s);

    qf_format f;
    ASSERT(qf_format_from_name("sharegpt", &f) && f == QF_FORMAT_SHAREGPT);
    ASSERT(!qf_format_from_name("csv", &f));
}

static long file_size(const char *p) {
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void test_writer(void) {
    qf_err e = {0};
    const char *p = tpath("out.jsonl");
    unlink(p);
    qf_writer *w = qf_writer_open(p, -1, &e);
    ASSERT(w);
    ASSERT_EQ_INT(qf_writer_append(w, "{\"a\":1}\n", 8, &e), QF_OK);
    ASSERT_EQ_INT(file_size(p), 0); /* buffered */
    ASSERT_EQ_INT(qf_writer_flush(w, &e), QF_OK);
    ASSERT_EQ_INT(qf_writer_size(w), 8);
    ASSERT_EQ_INT(file_size(p), 8);
    /* a second writer on the same file is refused while the first is open */
    ASSERT(!qf_writer_open(p, 8, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_BUSY);
    ASSERT_EQ_INT(qf_writer_append(w, "{\"b\":2}\n", 8, &e), QF_OK);
    ASSERT_EQ_INT(qf_writer_flush(w, &e), QF_OK);
    qf_writer_close(w);
    /* simulate a crash: a partial line after what the store recorded (16) */
    FILE *f = fopen(p, "ab");
    fputs("{\"c\":3}\n{\"d\":", f);
    fclose(f);
    w = qf_writer_open(p, 16, &e);
    ASSERT(w);
    ASSERT_EQ_INT(file_size(p), 16); /* cut back: no partial line, no unrecorded line */
    ASSERT_EQ_INT(qf_writer_append(w, "{\"c\":3}\n", 8, &e), QF_OK);
    ASSERT_EQ_INT(qf_writer_flush(w, &e), QF_OK);
    ASSERT_EQ_INT(qf_writer_truncate(w, 16, &e), QF_OK); /* the store did not record it */
    ASSERT_EQ_INT(file_size(p), 16);
    ASSERT_EQ_INT(qf_writer_truncate(w, 20, &e), QF_ERR_INVALID);
    qf_writer_close(w);
    /* the store recorded more than the file holds: FORMAT (caller rewrites) */
    ASSERT(!qf_writer_open(p, 100, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_FORMAT);
    /* a new job starts the file empty */
    w = qf_writer_open(p, -1, &e);
    ASSERT(w);
    ASSERT_EQ_INT(file_size(p), 0);
    qf_writer_close(w);
    /* unwritable: a folder */
    ASSERT(!qf_writer_open(g_tmp, -1, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_IO);
    ASSERT(strstr(e.msg, g_tmp));
    /* disk full: writes to /dev/full fail with ENOSPC and say so */
    w = qf_writer_open("/dev/full", -1, &e);
    if (w) {
        ASSERT_EQ_INT(qf_writer_append(w, "{}\n", 3, &e), QF_OK);
        ASSERT_EQ_INT(qf_writer_flush(w, &e), QF_ERR_IO);
        ASSERT(strstr(e.msg, "disk full"));
        ASSERT_EQ_INT(qf_writer_pending(w), 0);
        qf_writer_close(w);
    }
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "%s/test_store.tmp", QF_BINARY_DIR);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", g_tmp, g_tmp);
    if (system(cmd) != 0) return 1;
    RUN_TEST(test_cache);
    RUN_TEST(test_job);
    RUN_TEST(test_formats);
    RUN_TEST(test_writer);
    TEST_MAIN_END();
}
