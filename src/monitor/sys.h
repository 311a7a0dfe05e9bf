/* sys.h - the system sampler: CPU per core, memory, memory pressure,
 * process I/O and GPU utilisation, behind one portable interface.
 *
 * A qf_sys keeps the previous CPU counters so that each qf_sys_sample call
 * reports utilisation over the interval since the call before it (the
 * first call has no interval: CPU fields are NaN). What it reads:
 *
 *   Linux  <root>/stat              per-core busy/total jiffies (deltas)
 *          <root>/meminfo           MemTotal, MemAvailable
 *          <root>/pressure/memory   PSI "some avg10" (percent of the last
 *                                   10 s some task stalled on memory)
 *          <root>/self/status       VmRSS
 *          <root>/self/io           rchar, wchar, read_bytes, write_bytes
 *   macOS  host_processor_info (per core), host_statistics64 + hw.memsize,
 *          sysctl kern.memorystatus_level, mach task_info (RSS),
 *          proc_pid_rusage (storage I/O); root is ignored.
 *
 * root is "/proc" unless changed with qf_sys_set_root (process-wide
 * default for samplers made afterwards; the environment variable
 * QF_PROC_ROOT sets the same default, for end-to-end tests of a live
 * server) or given to qf_sys_new. Tests point it at a folder of fake files.
 *
 * Every source is read on its own: a file that is missing, truncated or
 * garbage makes only its fields unknown (NaN, or -1 for byte counts), never
 * an error. Memory pressure falls back from PSI to 1 - available/total when
 * PSI is absent (kernels without CONFIG_PSI, containers that hide it).
 *
 * GPU: when qf_gpu_available() (backend/backend.h) says a device is there,
 * gpu_present is true and utilisation / memory come from NVML, loaded at run
 * time (dlopen libnvidia-ml.so.1; no link-time dependency); fields stay
 * unknown when NVML is absent. Without a device gpu_present is false and the
 * GPU fields are unknown. Tests replace the probe with qf_sys_set_gpu_probe.
 *
 * Thread-safety: a qf_sys is used by one thread at a time;
 * qf_sys_set_root must not race with qf_sys_new.
 */
#ifndef QF_SYS_H
#define QF_SYS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "monitor/metrics.h"

/* Cores reported; a machine with more reports the first QF_SYS_MAX_CORES
 * (one metrics series each, within QF_METRICS_MAX_SERIES). */
#define QF_SYS_MAX_CORES 256

typedef enum qf_sys_pressure_source {
    QF_SYS_PRESSURE_NONE = 0,  /* unknown */
    QF_SYS_PRESSURE_PSI,       /* Linux /proc/pressure/memory, some avg10 */
    QF_SYS_PRESSURE_AVAILABLE, /* 1 - available / total */
    QF_SYS_PRESSURE_MACOS,     /* 1 - kern.memorystatus_level / 100 */
} qf_sys_pressure_source;

/* "psi", "available", "macos", "none". */
const char *qf_sys_pressure_source_name(qf_sys_pressure_source s);

typedef struct qf_sys_sample {
    double t;        /* qf_now_s() when taken */
    double interval; /* seconds since the previous sample; 0 on the first */

    /* CPU, 0..1 over the interval; NaN on the first sample, for a core that
     * went away, or when the counters did not advance. */
    int n_cores;                         /* cores seen (highest index + 1), <= QF_SYS_MAX_CORES */
    double cpu_util;                     /* all cores together */
    double core_util[QF_SYS_MAX_CORES];  /* (n_cores) */

    /* Memory, bytes; -1 unknown. */
    int64_t mem_total, mem_available, rss;
    double mem_pressure;                 /* 0..1; NaN unknown */
    qf_sys_pressure_source pressure_source;

    /* Process I/O since the process started, bytes; -1 unknown.
     * read/write: every read(2)/write(2) (files, pipes, sockets);
     * storage_read/storage_write: what reached the block layer. */
    int64_t io_read, io_write, io_storage_read, io_storage_write;

    /* GPU. util 0..1; memory in bytes; NaN / -1 unknown. */
    bool gpu_present;
    char gpu_name[64];
    double gpu_util;
    int64_t gpu_mem_used, gpu_mem_total;
} qf_sys_sample;

typedef struct qf_sys qf_sys;

/* Process-wide default root for qf_sys_new(NULL): dir is copied (NULL
 * restores "/proc"). QF_ERR_INVALID for "" or a path over 4000 bytes. */
qf_status qf_sys_set_root(const char *dir);

/* New sampler reading under proc_root (NULL = the default above; ignored on
 * macOS). The root need not exist (everything then reads as unknown).
 * NULL + err on QF_ERR_NOMEM / QF_ERR_INVALID (root too long). Free with
 * qf_sys_free (NULL is a no-op). */
qf_sys *qf_sys_new(const char *proc_root, qf_err *err);
void qf_sys_free(qf_sys *s);

/* GPU probe for tests: fills present/name/util/memory of out and returns
 * nothing; replaces the qf_gpu_available + NVML probe. fn NULL restores it. */
typedef void (*qf_sys_gpu_fn)(void *ud, qf_sys_sample *out);
void qf_sys_set_gpu_probe(qf_sys *s, qf_sys_gpu_fn fn, void *ud);

/* Take one sample into *out (fully written). QF_ERR_INVALID for NULL
 * arguments; otherwise QF_OK (unreadable sources are unknown fields). */
qf_status qf_sys_sample_now(qf_sys *s, qf_sys_sample *out /* out */);

/* Publish a sample into m under stable names (docs/metrics.md), declaring
 * the families on first use (a family already declared is reused). Unknown
 * fields leave their series untouched (absent until first known):
 *
 *   qforge_cpu_core_utilization{core="N"}       gauge 0..1
 *   qforge_cpu_utilization                      gauge 0..1
 *   qforge_cpu_cores                            gauge
 *   qforge_process_rss_bytes                    gauge
 *   qforge_memory_total_bytes                   gauge
 *   qforge_memory_available_bytes               gauge
 *   qforge_memory_pressure_ratio                gauge 0..1
 *   qforge_memory_pressure_source{source="..."} gauge, 1 for the source in use
 *   qforge_process_io_read_bytes_total          counter
 *   qforge_process_io_write_bytes_total         counter
 *   qforge_process_io_storage_read_bytes_total  counter
 *   qforge_process_io_storage_write_bytes_total counter
 *   qforge_gpu_present                          gauge 0/1
 *   qforge_gpu_utilization                      gauge 0..1
 *   qforge_gpu_memory_used_bytes                gauge
 *   qforge_gpu_memory_total_bytes               gauge
 *
 * A counter whose source went backwards (a fake file, a wrapped counter) is
 * left at its last value. Errors: QF_ERR_INVALID (NULL), QF_ERR_RANGE /
 * QF_ERR_NOMEM from the registry (the first failure is returned; the other
 * metrics are still published). */
qf_status qf_sys_to_metrics(const qf_sys_sample *smp, qf_metrics *m);

#endif
