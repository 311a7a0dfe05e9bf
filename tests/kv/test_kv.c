/* test_kv.c - block pool accounting of the paged kv cache. */
#include "kv/kv.h"
#include "qf_test.h"

static qf_kv_params params(int64_t blocks) {
    qf_kv_params p = {2, 8, 8, 4, blocks, 3, QF_TYPE_F16};
    return p;
}

static void test_reserve_and_truncate(void) {
    qf_kv_params p = params(10);
    qf_kv *kv = qf_kv_new(&p, NULL);
    ASSERT(kv);
    ASSERT_EQ_INT(qf_kv_free_blocks(kv), 10);
    ASSERT_EQ_INT(qf_kv_seq_reserve(kv, 0, 5, NULL), QF_OK); /* 5 positions: 2 blocks */
    ASSERT_EQ_INT(qf_kv_seq_capacity(kv, 0), 8);
    ASSERT_EQ_INT(qf_kv_free_blocks(kv), 8);
    ASSERT_EQ_INT(qf_kv_seq_reserve(kv, 0, 8, NULL), QF_OK); /* fits: no change */
    ASSERT_EQ_INT(qf_kv_free_blocks(kv), 8);
    ASSERT_EQ_INT(qf_kv_seq_reserve(kv, 1, 24, NULL), QF_OK);
    ASSERT_EQ_INT(qf_kv_free_blocks(kv), 2);
    qf_err e = {0};
    ASSERT_EQ_INT(qf_kv_seq_reserve(kv, 2, 12, &e), QF_ERR_RANGE); /* 3 blocks, 2 free */
    ASSERT(strstr(e.msg, "full"));
    ASSERT_EQ_INT(qf_kv_free_blocks(kv), 2); /* nothing taken on failure */
    int32_t n;
    const int32_t *t0 = qf_kv_seq_table(kv, 0, &n);
    ASSERT_EQ_INT(n, 2);
    const int32_t *t1 = qf_kv_seq_table(kv, 1, &n);
    for (int i = 0; i < n; i++) ASSERT(t1[i] != t0[0] && t1[i] != t0[1]); /* disjoint */
    qf_kv_seq_truncate(kv, 1, 5);
    ASSERT_EQ_INT(qf_kv_seq_capacity(kv, 1), 8);
    ASSERT_EQ_INT(qf_kv_free_blocks(kv), 6);
    qf_kv_seq_truncate(kv, 0, 0);
    qf_kv_seq_truncate(kv, 1, 0);
    ASSERT_EQ_INT(qf_kv_free_blocks(kv), 10);
    ASSERT_EQ_INT(qf_kv_seq_reserve(kv, 3, 1, &e), QF_ERR_INVALID); /* seq out of range */
    ASSERT_EQ_INT(qf_kv_seq_reserve(kv, -1, 1, &e), QF_ERR_INVALID);
    /* block storage: distinct, writable */
    uint8_t *k0 = qf_kv_block_k(kv, 1, 9);
    memset(k0, 0xab, (size_t)p.block_size * p.kv_dim * 2);
    qf_kv_free(kv);
}

static void test_random_ops_no_leak(void) {
    qf_kv_params p = params(64);
    qf_kv *kv = qf_kv_new(&p, NULL);
    ASSERT(kv);
    unsigned s = qf_test_seed();
    for (int i = 0; i < 5000; i++) {
        s = s * 1103515245u + 12345u;
        int seq = (int)((s >> 16) % 3);
        int n = (int)((s >> 8) % 100);
        if ((s >> 24) & 1) qf_kv_seq_reserve(kv, seq, n, NULL);
        else qf_kv_seq_truncate(kv, seq, n);
        int64_t used = 0;
        for (int q = 0; q < 3; q++) used += qf_kv_seq_capacity(kv, q) / p.block_size;
        ASSERT_EQ_INT(used + qf_kv_free_blocks(kv), 64);
    }
    qf_kv_free(kv);
}

static void test_bad_params(void) {
    qf_kv_params p = params(0);
    qf_err e = {0};
    ASSERT(qf_kv_new(&p, &e) == NULL);
    ASSERT_EQ_INT(e.code, QF_ERR_INVALID);
    p = params(4);
    p.type = QF_TYPE_Q4_0;
    ASSERT(qf_kv_new(&p, &e) == NULL);
    qf_kv_free(NULL);
}

int main(void) {
    RUN_TEST(test_reserve_and_truncate);
    RUN_TEST(test_random_ops_no_leak);
    RUN_TEST(test_bad_params);
    TEST_MAIN_END();
}
