/* pool.c - fork/join thread pool.
 *
 * A region is published by bumping `gen` after storing fn/ctx. Workers wait
 * for gen to change (spin for up to QF_SPIN_NS, then sleep on `cv`), run
 * their share, and increment `done`. The caller runs share 0 and waits until
 * done == nth-1 (spinning, then sleeping on `cv_done`). Sequentially
 * consistent atomics keep the ordering obvious; regions are microseconds
 * long so the cost is in the spin, not the fences. The spin is measured in
 * time, not iterations: a forward pass is hundreds of regions a token, and
 * a thread that fell asleep between two of them costs a futex wake, tens
 * of microseconds on a VM (measured: ~9% of a decode step in the kernel's
 * scheduler with a 20k-iteration spin, 2 threads). Idle pools still sleep
 * after QF_SPIN_NS.
 *
 * Placement: worker i binds itself to cpus[i] when it starts. Thread 0 is
 * whichever thread calls qf_pool_run (an engine's scheduler thread, not the
 * thread that created the pool), so it is bound to cpus[0] at its first
 * region, and again if another thread takes over the pool.
 */
#include "base/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "base/cpu.h"
#include "base/mem.h"

#define QF_SPIN_NS 2000000L /* 2 ms */

/* Spin-wait helper: true while the caller should keep spinning. Checks the
 * clock every 256 calls (a pause each call keeps the loop polite to an SMT
 * sibling). */
typedef struct spin {
    unsigned n;
    struct timespec t0;
} spin;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static bool spin_more(spin *s) {
    cpu_relax();
    if (s->n++ & 255) return true;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (s->n == 1) {
        s->t0 = t;
        return true;
    }
    return (t.tv_sec - s->t0.tv_sec) * 1000000000L + (t.tv_nsec - s->t0.tv_nsec) < QF_SPIN_NS;
}

struct qf_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv, cv_done;
    atomic_long gen;
    atomic_int done;
    atomic_int sleepers_done; /* caller sleeping on cv_done */
    atomic_bool quit;
    qf_pool_fn fn;
    void *ctx;
    int cpu0;               /* cpu of thread 0, -1 = not pinned */
    bool has_caller;        /* caller: the thread last bound to cpu0 */
    pthread_t caller;
};

typedef struct worker_arg {
    qf_pool *pool;
    int ith;
    int cpu;
} worker_arg;

/* Bind the calling thread for compute: a fixed cpu where the OS has
 * affinity (best effort), else the compute QoS class (macOS). */
static void pin_self(int cpu) {
    if (cpu < 0) return;
    if (!qf_cpu_pin_self(cpu)) qf_cpu_place_self(QF_THREAD_COMPUTE);
}

static void *worker_main(void *p) {
    worker_arg a = *(worker_arg *)p;
    qf_free(p);
    qf_pool *pool = a.pool;
    pin_self(a.cpu);
    long seen = 0;
    for (;;) {
        long g;
        spin sp = {0};
        while ((g = atomic_load(&pool->gen)) == seen && !atomic_load(&pool->quit)) {
            if (spin_more(&sp)) continue;
            pthread_mutex_lock(&pool->mu);
            while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->quit))
                pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->quit)) return NULL;
        seen = g;
        pool->fn(pool->ctx, a.ith, pool->n);
        if (atomic_fetch_add(&pool->done, 1) + 1 == pool->n - 1 && atomic_load(&pool->sleepers_done)) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->cv_done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

qf_pool *qf_pool_new(int n_threads, const int *cpus, qf_err *err) {
    if (n_threads < 1) {
        QF_ERR_SET(err, QF_ERR_INVALID, "thread count %d: must be at least 1", n_threads);
        return NULL;
    }
    qf_pool *pool = qf_calloc(1, sizeof *pool);
    if (!pool) goto fail;
    pool->n = 1; /* threads actually started, fixed up below */
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pthread_cond_init(&pool->cv_done, NULL);
    pool->threads = qf_calloc((size_t)n_threads, sizeof(pthread_t));
    if (!pool->threads) goto fail;
    pool->cpu0 = cpus ? cpus[0] : -1; /* bound in qf_pool_run, on the thread that runs regions */
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = qf_malloc(sizeof *a);
        if (!a) goto fail;
        a->pool = pool;
        a->ith = i;
        a->cpu = cpus ? cpus[i] : -1;
        if (pthread_create(&pool->threads[i], NULL, worker_main, a) != 0) {
            qf_free(a);
            goto fail;
        }
        pool->n = i + 1;
    }
    return pool;
fail:
    qf_pool_free(pool); /* joins the threads started so far */
    QF_ERR_SET(err, QF_ERR_NOMEM, "cannot create a pool of %d threads", n_threads);
    return NULL;
}

void qf_pool_free(qf_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->quit, true);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n; i++)
        if (pool->threads && pool->threads[i]) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    pthread_cond_destroy(&pool->cv_done);
    qf_free(pool->threads);
    qf_free(pool);
}

int qf_pool_size(const qf_pool *pool) { return pool->n; }

void qf_pool_run(qf_pool *pool, qf_pool_fn fn, void *ctx) {
    if (pool->cpu0 >= 0 && (!pool->has_caller || !pthread_equal(pool->caller, pthread_self()))) {
        pin_self(pool->cpu0);
        pool->caller = pthread_self();
        pool->has_caller = true;
    }
    if (pool->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store(&pool->done, 0);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add(&pool->gen, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    fn(ctx, 0, pool->n);
    spin sp = {0};
    while (atomic_load(&pool->done) < pool->n - 1) {
        if (spin_more(&sp)) continue;
        pthread_mutex_lock(&pool->mu);
        atomic_store(&pool->sleepers_done, 1);
        while (atomic_load(&pool->done) < pool->n - 1) pthread_cond_wait(&pool->cv_done, &pool->mu);
        atomic_store(&pool->sleepers_done, 0);
        pthread_mutex_unlock(&pool->mu);
    }
}
