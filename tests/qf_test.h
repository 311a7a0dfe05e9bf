/* qf_test.h - the tiny test harness every test executable includes.
 *
 * ASSERT(cond) and friends print file:line and the failing expression, count
 * the failure and return from the current test function; main() returns 1 if
 * any test failed. QF_SKIP(msg) exits 77, which ctest reports as skipped
 * (used when ../shared/testdata is absent).
 */
#ifndef QF_TEST_H
#define QF_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static int qf_test_failures = 0;
static int qf_test_count = 0;

#define ASSERT(cond)                                                                              \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: ASSERT failed: %s\n", __FILE__, __LINE__, #cond);             \
            qf_test_failures++;                                                                   \
            return;                                                                               \
        }                                                                                         \
    } while (0)

#define ASSERT_MSG(cond, ...)                                                                     \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: ASSERT failed: %s: ", __FILE__, __LINE__, #cond);             \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            qf_test_failures++;                                                                   \
            return;                                                                               \
        }                                                                                         \
    } while (0)

#define ASSERT_EQ_INT(a, b)                                                                       \
    do {                                                                                          \
        long long qa_ = (long long)(a), qb_ = (long long)(b);                                     \
        if (qa_ != qb_) {                                                                         \
            fprintf(stderr, "%s:%d: ASSERT_EQ failed: %s == %s (%lld vs %lld)\n", __FILE__,       \
                    __LINE__, #a, #b, qa_, qb_);                                                  \
            qf_test_failures++;                                                                   \
            return;                                                                               \
        }                                                                                         \
    } while (0)

#define ASSERT_NEAR(a, b, tol)                                                                    \
    do {                                                                                          \
        double qa_ = (double)(a), qb_ = (double)(b);                                              \
        if (!(fabs(qa_ - qb_) <= (tol))) {                                                        \
            fprintf(stderr, "%s:%d: ASSERT_NEAR failed: %s ~ %s (%.9g vs %.9g, tol %g)\n",        \
                    __FILE__, __LINE__, #a, #b, qa_, qb_, (double)(tol));                         \
            qf_test_failures++;                                                                   \
            return;                                                                               \
        }                                                                                         \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                                       \
    do {                                                                                          \
        const char *qa_ = (a), *qb_ = (b);                                                        \
        if (!qa_ || !qb_ || strcmp(qa_, qb_) != 0) {                                              \
            fprintf(stderr, "%s:%d: ASSERT_STR_EQ failed: \"%s\" vs \"%s\"\n", __FILE__,          \
                    __LINE__, qa_ ? qa_ : "(null)", qb_ ? qb_ : "(null)");                        \
            qf_test_failures++;                                                                   \
            return;                                                                               \
        }                                                                                         \
    } while (0)

#define RUN_TEST(fn)                                                                              \
    do {                                                                                          \
        int before_ = qf_test_failures;                                                           \
        qf_test_count++;                                                                          \
        fn();                                                                                     \
        fprintf(stderr, "%s %s\n", qf_test_failures == before_ ? "ok  " : "FAIL", #fn);           \
    } while (0)

#define TEST_MAIN_END()                                                                           \
    do {                                                                                          \
        fprintf(stderr, "%d tests, %d failed\n", qf_test_count, qf_test_failures);                \
        return qf_test_failures ? 1 : 0;                                                          \
    } while (0)

#define QF_SKIP(...)                                                                              \
    do {                                                                                          \
        fprintf(stderr, "SKIP: ");                                                                \
        fprintf(stderr, __VA_ARGS__);                                                             \
        fputc('\n', stderr);                                                                      \
        exit(77);                                                                                 \
    } while (0)

/* Path under ../shared/testdata, or skip the whole test when it is absent. */
static inline const char *qf_testdata(const char *rel, char *buf, size_t cap) {
    struct stat st;
    const char *root = getenv("QF_TESTDATA");
    if (!root) root = QF_TESTDATA_DIR;
    if (stat(root, &st) != 0) QF_SKIP("shared test data not found at %s", root);
    snprintf(buf, cap, "%s/%s", root, rel);
    return buf;
}

/* Seed for randomized tests: QF_SEED or time; printed so a failure replays. */
static inline unsigned qf_test_seed(void) {
    const char *s = getenv("QF_SEED");
    unsigned seed = s ? (unsigned)strtoul(s, NULL, 10) : (unsigned)time(NULL);
    fprintf(stderr, "seed %u (set QF_SEED to replay)\n", seed);
    return seed;
}

/* Run cmd through the shell; its stdout (stderr too when merge) into *out
 * (malloc'ed, NUL-terminated; NULL discards it). Returns the exit status,
 * 128 + N when killed by signal N, -1 when the shell could not start. */
static inline int qf_test_sh(const char *cmd, int merge, char **out) {
    size_t len = strlen(cmd) + 16;
    char *full = malloc(len);
    if (!full) return -1;
    snprintf(full, len, "(%s) %s", cmd, merge ? "2>&1" : "2>/dev/null");
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return -1;
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    int st = pclose(p);
    if (buf) buf[n] = 0;
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

/* A whole file, NUL-terminated (malloc'ed); NULL when it cannot be read. */
static inline char *qf_test_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, r;
    char *b = malloc(cap);
    while (b && (r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    fclose(f);
    if (b) b[n] = 0;
    return b;
}

#endif
