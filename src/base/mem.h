/* mem.h - allocation wrappers with a fault-injection hook for tests.
 *
 * Library code allocates through qf_malloc/qf_calloc/qf_realloc and frees
 * with qf_free (== free). Tests call qf_mem_fail_after(n) so that the n-th
 * following allocation (0-based) and all after it fail, and loop n upward to
 * prove every failure path returns an error without leaking or crashing
 * (SQLite's faultsim). qf_mem_fail_after(-1) turns injection off.
 * The counter is process-global and atomic; injection is meant for
 * single-threaded tests.
 */
#ifndef QF_MEM_H
#define QF_MEM_H

#include <stddef.h>

void *qf_malloc(size_t n);
void *qf_calloc(size_t count, size_t size); /* overflow-checked */
void *qf_realloc(void *p, size_t n);
char *qf_strdup(const char *s);
char *qf_strndup(const char *s, size_t n);
void qf_free(void *p);

/* Overflow-checked a*b; returns 0 and sets *out on success, -1 on overflow. */
int qf_mul_overflow(size_t a, size_t b, size_t *out);

void qf_mem_fail_after(long n);
/* Number of allocations attempted since the last qf_mem_fail_after call. */
long qf_mem_count(void);

#endif
