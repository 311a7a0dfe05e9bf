/* mem.c - allocation wrappers; a countdown makes allocations fail on demand. */
#include "base/mem.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_long g_fail_at = -1; /* -1: never fail */
static atomic_long g_count = 0;

static int should_fail(void) {
    long c = atomic_fetch_add(&g_count, 1);
    long f = atomic_load(&g_fail_at);
    return f >= 0 && c >= f;
}

void qf_mem_fail_after(long n) {
    atomic_store(&g_count, 0);
    atomic_store(&g_fail_at, n);
}

long qf_mem_count(void) { return atomic_load(&g_count); }

void *qf_malloc(size_t n) { return should_fail() ? NULL : malloc(n ? n : 1); }

void *qf_calloc(size_t count, size_t size) {
    size_t total;
    if (qf_mul_overflow(count, size, &total)) return NULL;
    return should_fail() ? NULL : calloc(total ? total : 1, 1);
}

void *qf_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }

char *qf_strndup(const char *s, size_t n) {
    char *d = qf_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *qf_strdup(const char *s) { return qf_strndup(s, strlen(s)); }

void qf_free(void *p) { free(p); }

int qf_mul_overflow(size_t a, size_t b, size_t *out) {
    if (b && a > SIZE_MAX / b) return -1;
    *out = a * b;
    return 0;
}
