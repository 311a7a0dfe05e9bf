/* cpu.h - CPU topology: how many cores do the compute, and which.
 *
 * Uses hwloc: physical cores, and hwloc's CPU kinds to tell performance
 * cores from efficiency cores (hybrid x86, Apple Silicon). When the machine
 * reports a single kind, every physical core counts as a performance core.
 * One hardware thread per physical core is listed, because two SMT siblings
 * share one core's load/store units and the matmuls are bandwidth-bound.
 *
 * Thread-safety: qf_cpu_topo_get computes once (guarded) and returns a
 * shared immutable record.
 */
#ifndef QF_CPU_H
#define QF_CPU_H

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

#endif
