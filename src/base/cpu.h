/* cpu.h - CPU topology: how many cores do the compute, and which.
 *
 * Uses hwloc: physical cores, and hwloc's CPU kinds to tell performance
 * cores from efficiency cores (hybrid x86, Apple Silicon). When the machine
 * reports a single kind, every physical core counts as a performance core.
 * One hardware thread per physical core is listed, because two SMT siblings
 * share one core's load/store units and the matmuls are bandwidth-bound.
 *
 * Placement: compute threads go on performance cores (qf_pool pins its
 * threads to perf_cpus on Linux), I/O and background threads on efficiency
 * cores where there are any (qf_cpu_place_self). macOS allows no affinity:
 * there a thread's QoS class tells the scheduler which cores it wants.
 *
 * Thread-safety: qf_cpu_topo_get computes once (guarded) and returns a
 * shared immutable record. The placement calls act on the calling thread
 * only and may be called from any thread.
 */
#ifndef QF_CPU_H
#define QF_CPU_H

#include <stdbool.h>

typedef struct qf_cpu_topo {
    int n_logical;      /* hardware threads online */
    int n_cores;        /* physical cores */
    int n_perf;         /* performance cores (== n_cores if not hybrid) */
    int n_eff;          /* efficiency cores */
    int *perf_cpus;     /* (n_perf) one logical CPU id per performance core */
    int *eff_cpus;      /* (n_eff) one logical CPU id per efficiency core */
} qf_cpu_topo;

/* Borrowed; valid for the life of the process. Never NULL (falls back to
 * sysconf when hwloc fails). */
const qf_cpu_topo *qf_cpu_topo_get(void);

/* Default compute thread count: the performance cores, at least 1. */
int qf_cpu_default_threads(void);

/* What a thread does, for placement. */
typedef enum qf_thread_role {
    QF_THREAD_COMPUTE = 0, /* forward-pass work: performance cores */
    QF_THREAD_IO,          /* sockets, files, parsing: efficiency cores */
    QF_THREAD_BACKGROUND,  /* tickers, samplers, housekeeping: efficiency cores, lowest QoS */
} qf_thread_role;

/* Place the calling thread for its role, best effort. Linux: COMPUTE is
 * bound to the set of performance cores and IO/BACKGROUND to the set of
 * efficiency cores, each only on a hybrid machine (with a single core kind
 * the thread is left as it is: the kernel balances it best). macOS: QoS
 * class user-interactive (COMPUTE), utility (IO), background (BACKGROUND).
 * Returns true when a placement was applied, false when the thread was left
 * as it is (single core kind, unknown cpu ids, or the OS refused). */
bool qf_cpu_place_self(qf_thread_role role);

/* Bind the calling thread to one logical CPU. false when cpu < 0, the OS
 * has no thread affinity (macOS) or refuses it (a container's cpuset). */
bool qf_cpu_pin_self(int cpu);

#endif
