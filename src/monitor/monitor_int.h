/* monitor_int.h - what the files of the monitor layer share (not public).
 *
 * sys.c holds the portable half of the sampler (CPU deltas, the GPU probe
 * choice, publishing to metrics); sys_linux.c and sys_macos.c read the raw
 * numbers of their OS through the sys_platform_* functions below. Exactly
 * one platform file provides them in a build (sys.c has a stub for other
 * systems).
 */
#ifndef QF_MONITOR_INT_H
#define QF_MONITOR_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "monitor/sys.h"

#define SYS_ROOT_MAX 4096

struct qf_sys {
    char root[SYS_ROOT_MAX]; /* Linux: the /proc folder */
    qf_sys_gpu_fn gpu_fn;    /* test probe, or NULL */
    void *gpu_ud;
    bool gpu_checked, gpu_avail;
    char gpu_name[64];
    void *plat; /* platform state (NVML handle), freed by sys_platform_free */
    bool have_prev;
    double t_prev;
    /* previous CPU ticks per core; prev_ok false where the core was absent */
    uint64_t prev_busy[QF_SYS_MAX_CORES], prev_total[QF_SYS_MAX_CORES];
    bool prev_ok[QF_SYS_MAX_CORES];
};

/* Cumulative CPU ticks per core (any unit, same for busy and total): fills
 * busy[i], total[i], ok[i] for i < the returned core count (<= cap); ok[i]
 * false for a core that is not reported. Returns 0 when unknown. */
int sys_platform_cpu_ticks(qf_sys *s, uint64_t *busy, uint64_t *total, bool *ok, int cap);

/* Memory, pressure, RSS and I/O fields of out (CPU and GPU fields are left
 * alone); unknown values as sys.h says. */
void sys_platform_memory_io(qf_sys *s, qf_sys_sample *out);

/* GPU utilisation / memory of a present device (out->gpu_present is true),
 * from the platform's management library; unknown fields otherwise. */
void sys_platform_gpu(qf_sys *s, qf_sys_sample *out);

/* Release s->plat. */
void sys_platform_free(qf_sys *s);

/* ---- alert command runner (alert_cmd.c) ---- */

#include "monitor/alert.h"

/* One helper thread running `/bin/sh -c cmd` per queued payload, one at a
 * time, each killed after timeout_s. Push never blocks (a full queue drops
 * the payload and counts it). Free waits for the running command (at most
 * its timeout) and drops the queued ones. */
typedef struct alert_runner alert_runner;
alert_runner *alert_runner_new(const char *cmd, double timeout_s, qf_err *err);
void alert_runner_free(alert_runner *r); /* NULL is a no-op */
void alert_runner_push(alert_runner *r, const char *json, const char *name, const char *state);
qf_status alert_runner_wait(alert_runner *r, double timeout_s);
void alert_runner_stats(alert_runner *r, qf_alerts_cmd_stats *out /* out */);

#endif
