/* pool.h - a persistent thread pool for fork/join parallel regions.
 *
 * qf_pool_run(pool, fn, ctx) calls fn(ctx, ith, nth) once on each of the nth
 * threads (the caller is thread 0) and returns when all have finished. The
 * worker threads are created once by qf_pool_new and live until
 * qf_pool_free: no thread is created per token or per region. Idle workers
 * spin briefly on the region counter (a forward pass runs hundreds of short
 * regions back to back), then sleep on a condition variable.
 *
 * Thread-safety: one region at a time; qf_pool_run must not be called
 * concurrently on the same pool or from inside fn.
 */
#ifndef QF_POOL_H
#define QF_POOL_H

#include "base/err.h"

typedef struct qf_pool qf_pool;
typedef void (*qf_pool_fn)(void *ctx, int ith, int nth);

/* n_threads >= 1 (including the caller). pin: bind threads to the given
 * logical CPUs (cpus[i] for thread i) when cpus != NULL, best effort
 * (qf_cpu_pin_self; on macOS the compute QoS class instead). Thread 0 is the
 * thread that calls qf_pool_run: it is bound to cpus[0] at its first region
 * (the creating thread is left alone). cpus is read during this call only. */
qf_pool *qf_pool_new(int n_threads, const int *cpus, qf_err *err);
void qf_pool_free(qf_pool *pool); /* NULL is a no-op */
int qf_pool_size(const qf_pool *pool);
void qf_pool_run(qf_pool *pool, qf_pool_fn fn, void *ctx);

/* Split [0, n) evenly into nth parts: the range of part ith. */
static inline void qf_split_range(long n, int ith, int nth, long *lo, long *hi) {
    long per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

#endif
