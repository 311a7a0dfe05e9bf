/* test_parse.c - tolerant pair extraction, think stripping, scores, dedup. */
#include "base/mem.h"
#include "pipeline/dedup.h"
#include "pipeline/parse.h"
#include "qf_test.h"

static int parse_n(const char *s, qf_qa_list *l) {
    qf_err e = {0};
    qf_status st = qf_parse_pairs(s, strlen(s), l, &e);
    return st == QF_OK ? l->n : -1;
}

static void test_shapes(void) {
    qf_qa_list l;
    /* the schema's shape */
    ASSERT_EQ_INT(parse_n("{\"pairs\":[{\"question\":\"Q1?\",\"answer\":\"A1.\"},{\"question\":\"Q2?\",\"answer\":\"A2.\"}]}", &l), 2);
    ASSERT_STR_EQ(l.v[1].question, "Q2?");
    ASSERT_STR_EQ(l.v[1].answer, "A2.");
    qf_qa_list_deinit(&l);
    /* bare array, other key names, case, whitespace trimmed */
    ASSERT_EQ_INT(parse_n("[{\"Q\": \"  x? \", \"A\": \"\\ty\\n\"}, {\"instruction\": \"i\", \"output\": \"o\"}]", &l), 2);
    ASSERT_STR_EQ(l.v[0].question, "x?");
    ASSERT_STR_EQ(l.v[0].answer, "y");
    ASSERT_STR_EQ(l.v[1].answer, "o");
    qf_qa_list_deinit(&l);
    /* a single pair object; nested container */
    ASSERT_EQ_INT(parse_n("{\"question\": \"only?\", \"answer\": \"one\"}", &l), 1);
    qf_qa_list_deinit(&l);
    ASSERT_EQ_INT(parse_n("{\"data\": {\"qa_pairs\": [{\"question\": \"n?\", \"answer\": \"m\"}]}}", &l), 1);
    qf_qa_list_deinit(&l);
    /* prose and code fences around it; a bracket in the prose first */
    const char *fenced = "Sure [1]! Here you go:\n```json\n{\"pairs\": [{\"question\": \"f?\", \"answer\": \"g\"}]}\n```\nHope it helps.";
    ASSERT_EQ_INT(parse_n(fenced, &l), 1);
    ASSERT_STR_EQ(l.v[0].question, "f?");
    qf_qa_list_deinit(&l);
    /* items lacking a field are dropped and counted */
    ASSERT_EQ_INT(parse_n("{\"pairs\":[{\"question\":\"a?\"},{\"question\":\"b?\",\"answer\":\"c\"},{\"question\":\"\",\"answer\":\"d\"}]}", &l), 1);
    ASSERT_EQ_INT(l.n_incomplete, 2);
    qf_qa_list_deinit(&l);
    /* a numeric answer becomes text */
    ASSERT_EQ_INT(parse_n("[{\"question\":\"how many?\",\"answer\":42}]", &l), 1);
    ASSERT_STR_EQ(l.v[0].answer, "42");
    qf_qa_list_deinit(&l);
}

static void test_repairs(void) {
    qf_qa_list l;
    /* trailing commas */
    ASSERT_EQ_INT(parse_n("{\"pairs\": [{\"question\": \"a?\", \"answer\": \"b\",}, ],}", &l), 1);
    qf_qa_list_deinit(&l);
    /* cut off in the middle of the third pair: the first two are kept */
    const char *cut = "{\"pairs\": [{\"question\": \"one?\", \"answer\": \"1\"}, {\"question\": \"two?\", \"answer\": "
                      "\"2 with \\\"quotes\\\" and } brace\"}, {\"question\": \"thr";
    ASSERT_EQ_INT(parse_n(cut, &l), 2);
    ASSERT(l.truncated);
    ASSERT_STR_EQ(l.v[1].answer, "2 with \"quotes\" and } brace");
    qf_qa_list_deinit(&l);
    /* cut before any complete pair: an error a repair prompt can quote */
    qf_err e = {0};
    ASSERT_EQ_INT(qf_parse_pairs("{\"pairs\": [{\"question\": \"x", 26, &l, &e), QF_ERR_FORMAT);
    qf_qa_list_deinit(&l);
    ASSERT_EQ_INT(qf_parse_pairs("I cannot help with that.", 24, &l, &e), QF_ERR_FORMAT);
    ASSERT(strstr(e.msg, "no JSON"));
    qf_qa_list_deinit(&l);
    ASSERT_EQ_INT(qf_parse_pairs("{\"answer\": 1, \"note\": [1,2]}", 28, &l, &e), QF_ERR_FORMAT);
    ASSERT(strstr(e.msg, "no question/answer pairs"));
    qf_qa_list_deinit(&l);
    ASSERT_EQ_INT(qf_parse_pairs("{\"pairs\": []}", 13, &l, &e), QF_ERR_FORMAT);
    ASSERT(strstr(e.msg, "pairs"));
    qf_qa_list_deinit(&l);
    ASSERT_EQ_INT(qf_parse_pairs("", 0, &l, &e), QF_ERR_FORMAT);
    qf_qa_list_deinit(&l);
    /* not NUL-terminated input: only len bytes are read */
    char buf[64];
    memcpy(buf, "[{\"q\":\"a\",\"a\":\"b\"}]XXXXXXXXXXXX", 31);
    ASSERT_EQ_INT(qf_parse_pairs(buf, 19, &l, &e), QF_OK);
    ASSERT_EQ_INT(l.n, 1);
    qf_qa_list_deinit(&l);
}

static void test_think(void) {
    size_t n;
    char *s = qf_parse_strip_think("<think>plan {\"pairs\": []}</think>{\"x\":1}", 41, &n);
    ASSERT_STR_EQ(s, "{\"x\":1}");
    qf_free(s);
    s = qf_parse_strip_think("a<THINK>b</think>c<think>d</think>e", 35, &n);
    ASSERT_STR_EQ(s, "ace");
    qf_free(s);
    s = qf_parse_strip_think("reasoning whose tag was in the prompt</think>\n[1]", 49, &n);
    ASSERT_STR_EQ(s, "\n[1]");
    qf_free(s);
    s = qf_parse_strip_think("{\"a\":1}<think>never closed", 26, &n);
    ASSERT_STR_EQ(s, "{\"a\":1}");
    qf_free(s);
    qf_qa_list l;
    const char *r = "<think>Let me write {\"question\": \"fake?\", \"answer\": \"no\"}</think>\n"
                    "{\"pairs\": [{\"question\": \"real?\", \"answer\": \"yes\"}]}";
    ASSERT_EQ_INT(parse_n(r, &l), 1);
    ASSERT_STR_EQ(l.v[0].question, "real?");
    qf_qa_list_deinit(&l);
}

static void test_score(void) {
    int sc;
    qf_err e = {0};
    ASSERT_EQ_INT(qf_parse_score("{\"score\": 7}", 12, &sc, &e), QF_OK);
    ASSERT_EQ_INT(sc, 7);
    ASSERT_EQ_INT(qf_parse_score("<think>maybe 3</think>{\"Rating\": \"9\"}", 37, &sc, &e), QF_OK);
    ASSERT_EQ_INT(sc, 9);
    ASSERT_EQ_INT(qf_parse_score("I'd say 4 out of 10.", 20, &sc, &e), QF_OK);
    ASSERT_EQ_INT(sc, 4);
    ASSERT_EQ_INT(qf_parse_score("{\"score\": 11}", 13, &sc, &e), QF_ERR_FORMAT);
    ASSERT_EQ_INT(qf_parse_score("{\"score\": 0}", 12, &sc, &e), QF_ERR_FORMAT);
    ASSERT_EQ_INT(qf_parse_score("excellent", 9, &sc, &e), QF_ERR_FORMAT);
}

static void test_parse_nomem(void) {
    const char *cut = "x {\"pairs\": [{\"question\": \"one?\", \"answer\": \"1\"}, {\"question\": \"two?\", \"answer\": \"2\"}, {\"q";
    for (long k = 0; k < 100; k++) {
        qf_qa_list l;
        qf_err e = {0};
        qf_mem_fail_after(k);
        qf_status st = qf_parse_pairs(cut, strlen(cut), &l, &e);
        qf_mem_fail_after(-1);
        if (st == QF_OK) {
            ASSERT_EQ_INT(l.n, 2);
            qf_qa_list_deinit(&l);
            return;
        }
        ASSERT_EQ_INT(st, QF_ERR_NOMEM);
        qf_qa_list_deinit(&l);
    }
    ASSERT(0);
}

/* ---- dedup ---- */

static bool check(qf_dedup *d, const char *q, const char *id, char *dup) {
    qf_qfp fp = qf_dedup_fingerprint(q);
    return qf_dedup_check_add(d, &fp, id, dup, NULL);
}

static void test_dedup(void) {
    qf_err e = {0};
    qf_dedup *d = qf_dedup_new(true, &e);
    char dup[33];
    ASSERT(!check(d, "What is the capital of France?", "a1", dup));
    ASSERT(check(d, "what is the capital of france", "a2", dup)); /* exact after normalising */
    ASSERT_STR_EQ(dup, "a1");
    ASSERT(check(d, "  What IS the capital -- of France?!  ", "a3", dup));
    ASSERT(check(d, "Capital of France: what is it?", "a4", dup)); /* same content words */
    ASSERT_STR_EQ(dup, "a1");
    ASSERT(!check(d, "What is the capital of Spain?", "b1", dup));
    ASSERT(!check(d, "How many eggs can a queen bee lay in a single day during spring?", "c1", dup));
    ASSERT(!check(d, "How long does a worker bee live in summer?", "c2", dup));
    ASSERT(check(d, "How many eggs can the queen bee lay in one single day during spring?", "c3", dup));
    ASSERT_STR_EQ(dup, "c1");
    /* short questions with one content word are compared exactly only */
    ASSERT(!check(d, "What is it?", "s1", dup));
    ASSERT(!check(d, "What was it?", "s2", dup));
    ASSERT_EQ_INT(qf_dedup_size(d), 6);
    qf_dedup_free(d);

    d = qf_dedup_new(false, &e); /* exact only */
    ASSERT(!check(d, "What is the capital of France?", "a1", dup));
    ASSERT(!check(d, "Capital of France: what is it?", "a2", dup));
    ASSERT(check(d, "what is the CAPITAL of france", "a3", dup));
    qf_dedup_free(d);

    /* many distinct questions: no false positives, table growth */
    d = qf_dedup_new(true, &e);
    unsigned seed = qf_test_seed();
    srand(seed);
    const char *words[] = {"bee", "hive", "queen", "honey", "wax", "pollen", "nectar", "drone", "swarm", "comb",
                           "frame", "brood", "smoker", "flower", "season", "winter", "colony", "mite", "cell", "egg"};
    int dups = 0;
    for (int i = 0; i < 3000; i++) {
        char q[256], id[33];
        snprintf(q, sizeof q, "question %d about %s and %s with %s", i, words[rand() % 20], words[rand() % 20],
                 words[rand() % 20]);
        snprintf(id, sizeof id, "id%d", i);
        dups += check(d, q, id, dup);
    }
    ASSERT_EQ_INT(qf_dedup_size(d) + dups, 3000);
    ASSERT(dups < 30); /* the number makes each distinct; near matches must stay rare */
    char q[256];
    snprintf(q, sizeof q, "Question 17 about");
    qf_dedup_free(d);
}

int main(void) {
    RUN_TEST(test_shapes);
    RUN_TEST(test_repairs);
    RUN_TEST(test_think);
    RUN_TEST(test_score);
    RUN_TEST(test_parse_nomem);
    RUN_TEST(test_dedup);
    TEST_MAIN_END();
}
