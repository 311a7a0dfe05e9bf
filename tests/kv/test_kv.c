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

static void fill_block(qf_kv *kv, int32_t block, uint8_t v) {
    const qf_kv_params *p = qf_kv_get_params(kv);
    for (int l = 0; l < p->n_layer; l++) {
        memset(qf_kv_block_k(kv, l, block), v, (size_t)p->block_size * qf_kv_row_bytes_k(kv));
        memset(qf_kv_block_v(kv, l, block), v, (size_t)p->block_size * qf_kv_row_bytes_v(kv));
    }
}

/* register, attach, refcounts, copy on write, LRU eviction */
static void test_prefix_sharing(void) {
    qf_kv_params p = params(6); /* block_size 4 */
    qf_kv *kv = qf_kv_new(&p, NULL);
    ASSERT(kv);
    int32_t toks[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, n;
    ASSERT_EQ_INT(qf_kv_seq_reserve(kv, 0, 10, NULL), QF_OK); /* 3 blocks */
    const int32_t *t0 = qf_kv_seq_table(kv, 0, &n);
    int32_t b0 = t0[0], b1 = t0[1], b2 = t0[2];
    fill_block(kv, b0, 0x11);
    fill_block(kv, b1, 0x22);
    qf_kv_seq_register(kv, 0, toks, 10); /* two full blocks */
    /* same prefix: both full blocks attach, capped by max_pos */
    ASSERT_EQ_INT(qf_kv_seq_attach_prefix(kv, 1, toks, 10, 9), 8);
    const int32_t *t1 = qf_kv_seq_table(kv, 1, &n);
    ASSERT(n == 2 && t1[0] == b0 && t1[1] == b1);
    ASSERT_EQ_INT(qf_kv_seq_attach_prefix(kv, 2, toks, 10, 7), 4); /* max_pos 7: one block */
    int32_t other[8] = {1, 2, 3, 4, 9, 9, 9, 9};
    qf_kv_seq_truncate(kv, 2, 0);
    ASSERT_EQ_INT(qf_kv_seq_attach_prefix(kv, 2, other, 8, 8), 4); /* diverges in block 2 */
    qf_kv_seq_truncate(kv, 2, 0);
    int32_t diff_first[8] = {0, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_EQ_INT(qf_kv_seq_attach_prefix(kv, 2, diff_first, 8, 8), 0);
    /* writing into a shared block copies it first */
    qf_kv_stats st;
    ASSERT_EQ_INT(qf_kv_seq_prepare(kv, 1, 7, 8, NULL), QF_OK);
    t1 = qf_kv_seq_table(kv, 1, &n);
    ASSERT(t1[0] == b0 && t1[1] != b1);
    ASSERT_EQ_INT(((uint8_t *)qf_kv_block_k(kv, 1, t1[1]))[5], 0x22); /* copied contents */
    qf_kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.cow_copies, 1);
    /* fork shares everything */
    ASSERT_EQ_INT(qf_kv_seq_fork(kv, 0, 2, NULL), QF_OK);
    const int32_t *t2 = qf_kv_seq_table(kv, 2, &n);
    ASSERT(n == 3 && t2[2] == b2);
    ASSERT_EQ_INT(qf_kv_seq_fork(kv, 0, 2, NULL), QF_ERR_INVALID); /* dst not empty */
    /* release all: registered blocks stay cached, others go free */
    for (int s = 0; s < 3; s++) qf_kv_seq_truncate(kv, s, 0);
    qf_kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.used, 0);
    ASSERT_EQ_INT(st.cached, 2);
    ASSERT_EQ_INT(st.free + st.cached, 6);
    /* cached blocks are found again, then evicted least recently used first */
    ASSERT_EQ_INT(qf_kv_seq_attach_prefix(kv, 0, toks, 10, 10), 8);
    qf_kv_seq_truncate(kv, 0, 0);
    ASSERT_EQ_INT(qf_kv_seq_reserve(kv, 0, 24, NULL), QF_OK); /* all 6 blocks: both cached evicted */
    qf_kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.evictions, 2);
    ASSERT_EQ_INT(st.cached, 0);
    qf_kv_seq_truncate(kv, 0, 0);
    ASSERT_EQ_INT(qf_kv_seq_attach_prefix(kv, 1, toks, 10, 10), 0); /* gone */
    qf_kv_free(kv);
}

static void test_drop_range_and_window(void) {
    qf_kv_params p = params(8);
    qf_kv *kv = qf_kv_new(&p, NULL);
    ASSERT(kv);
    ASSERT_EQ_INT(qf_kv_seq_reserve(kv, 0, 20, NULL), QF_OK); /* 5 blocks */
    qf_kv_seq_drop_range(kv, 0, 4, 14); /* blocks 1, 2 lie wholly inside; 3 does not */
    int32_t n;
    const int32_t *t = qf_kv_seq_table(kv, 0, &n);
    ASSERT(n == 5 && t[0] >= 0 && t[1] == -1 && t[2] == -1 && t[3] >= 0);
    ASSERT_EQ_INT(qf_kv_free_blocks(kv), 5);
    ASSERT_EQ_INT(qf_kv_seq_prepare(kv, 0, 20, 24, NULL), QF_OK); /* grows past the holes */
    qf_kv_seq_set_window(kv, 0, 12, 4);
    int32_t w, s;
    qf_kv_seq_get_window(kv, 0, &w, &s);
    ASSERT(w == 12 && s == 4);
    qf_kv_seq_truncate(kv, 0, 0);
    ASSERT_EQ_INT(qf_kv_free_blocks(kv), 8);
    qf_kv_free(kv);
}

int main(void) {
    RUN_TEST(test_prefix_sharing);
    RUN_TEST(test_drop_range_and_window);
    RUN_TEST(test_reserve_and_truncate);
    RUN_TEST(test_random_ops_no_leak);
    RUN_TEST(test_bad_params);
    TEST_MAIN_END();
}
