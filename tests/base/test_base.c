/* test_base.c - errors, allocation fault hook, thread pool, cpu topology. */
#include <stdatomic.h>
#include <stdint.h>

#include "base/cpu.h"
#include "base/err.h"
#include "base/mem.h"
#include "base/pool.h"
#include "qf_test.h"

static void test_err(void) {
    qf_err e = {0};
    ASSERT_EQ_INT(QF_ERR_SET(&e, QF_ERR_FORMAT, "bad %d", 7), QF_ERR_FORMAT);
    ASSERT_EQ_INT(e.code, QF_ERR_FORMAT);
    ASSERT_STR_EQ(e.msg, "bad 7");
    qf_err_prefix(&e, "file.gguf");
    ASSERT_STR_EQ(e.msg, "file.gguf: bad 7");
    ASSERT_EQ_INT(QF_ERR_SET(NULL, QF_ERR_IO, "ignored"), QF_ERR_IO); /* NULL err allowed */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    QF_ERR_SET(&e, QF_ERR_IO, "%s", big); /* truncated, not overflowed */
    ASSERT_EQ_INT(strlen(e.msg), QF_ERR_MSG_MAX - 1);
    qf_err_prefix(&e, "%s", big);
    ASSERT(strlen(e.msg) < QF_ERR_MSG_MAX);
    qf_err_clear(&e);
    ASSERT_EQ_INT(e.code, QF_OK);
    ASSERT_STR_EQ(qf_status_name(QF_ERR_BUSY), "busy");
}

static void test_mem_fault_hook(void) {
    qf_mem_fail_after(2);
    void *a = qf_malloc(8), *b = qf_malloc(8), *c = qf_malloc(8), *d = qf_calloc(2, 2);
    qf_mem_fail_after(-1);
    ASSERT(a && b && !c && !d);
    qf_free(a);
    qf_free(b);
    size_t out;
    ASSERT_EQ_INT(qf_mul_overflow(SIZE_MAX / 2, 3, &out), -1);
    ASSERT(qf_calloc(SIZE_MAX / 2, 3) == NULL);
    char *s = qf_strndup("hello", 3);
    ASSERT_STR_EQ(s, "hel");
    qf_free(s);
}

typedef struct sum_ctx {
    const int *v;
    long n;
    atomic_long total;
    atomic_int calls;
} sum_ctx;

static void sum_region(void *p, int ith, int nth) {
    sum_ctx *c = p;
    long lo, hi, s = 0;
    qf_split_range(c->n, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) s += c->v[i];
    atomic_fetch_add(&c->total, s);
    atomic_fetch_add(&c->calls, 1);
}

static void test_pool(void) {
    enum { N = 100003 };
    static int v[N];
    long want = 0;
    for (int i = 0; i < N; i++) want += v[i] = i % 97;
    for (int nt = 1; nt <= 4; nt++) {
        qf_err e = {0};
        qf_pool *p = qf_pool_new(nt, NULL, &e);
        ASSERT(p);
        ASSERT_EQ_INT(qf_pool_size(p), nt);
        for (int rep = 0; rep < 2000; rep++) { /* many short regions back to back */
            sum_ctx c = {v, rep % 2 ? N : 7, 0, 0};
            qf_pool_run(p, sum_region, &c);
            long w = rep % 2 ? want : 0 + 1 + 2 + 3 + 4 + 5 + 6;
            if (atomic_load(&c.total) != w || atomic_load(&c.calls) != nt) {
                qf_pool_free(p);
                ASSERT_MSG(0, "threads %d rep %d: total %ld want %ld", nt, rep, (long)c.total, w);
            }
        }
        qf_pool_free(p);
    }
    qf_err e = {0};
    ASSERT(qf_pool_new(0, NULL, &e) == NULL);
    ASSERT_EQ_INT(e.code, QF_ERR_INVALID);
    qf_pool_free(NULL);
}

static void test_split_range(void) {
    for (long n = 0; n < 50; n++)
        for (int nth = 1; nth < 9; nth++) {
            long prev = 0;
            for (int i = 0; i < nth; i++) {
                long lo, hi;
                qf_split_range(n, i, nth, &lo, &hi);
                ASSERT(lo == prev && hi >= lo && hi - lo <= n / nth + 1);
                prev = hi;
            }
            ASSERT_EQ_INT(prev, n);
        }
}

static void test_cpu(void) {
    const qf_cpu_topo *t = qf_cpu_topo_get();
    ASSERT(t->n_logical >= 1);
    ASSERT(t->n_perf >= 1 && t->n_perf <= t->n_logical);
    ASSERT(t->n_perf + t->n_eff <= t->n_logical);
    ASSERT(qf_cpu_default_threads() == t->n_perf);
}

int main(void) {
    RUN_TEST(test_err);
    RUN_TEST(test_mem_fault_hook);
    RUN_TEST(test_pool);
    RUN_TEST(test_split_range);
    RUN_TEST(test_cpu);
    TEST_MAIN_END();
}
