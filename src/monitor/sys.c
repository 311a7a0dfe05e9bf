/* sys.c - the portable half of the system sampler.
 *
 * CPU utilisation is a ratio of deltas: for each core, (busy now - busy
 * before) / (total now - total before) between two samples; the machine
 * figure sums the deltas of every core seen both times. A delta that is
 * zero or negative (the counters did not move, a core came back online with
 * reset counters, a garbage file) gives NaN for that core rather than a
 * made-up number. The platform files deliver raw ticks and the other
 * fields; this file owns the state between samples, the GPU probe choice
 * and the metric names.
 */
#include "monitor/sys.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/clock.h"
#include "base/mem.h"
#include "monitor/monitor_int.h"

/* ---- default root ---- */

static pthread_mutex_t g_root_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_root[SYS_ROOT_MAX]; /* "" = not set: QF_PROC_ROOT, else /proc */

qf_status qf_sys_set_root(const char *dir) {
    if (dir && (!dir[0] || strlen(dir) >= SYS_ROOT_MAX - 64)) return QF_ERR_INVALID;
    pthread_mutex_lock(&g_root_mu);
    snprintf(g_root, sizeof g_root, "%s", dir ? dir : "");
    pthread_mutex_unlock(&g_root_mu);
    return QF_OK;
}

const char *qf_sys_pressure_source_name(qf_sys_pressure_source s) {
    switch (s) {
    case QF_SYS_PRESSURE_PSI:
        return "psi";
    case QF_SYS_PRESSURE_AVAILABLE:
        return "available";
    case QF_SYS_PRESSURE_MACOS:
        return "macos";
    default:
        return "none";
    }
}

/* ---- sampler ---- */

qf_sys *qf_sys_new(const char *proc_root, qf_err *err) {
    char root[SYS_ROOT_MAX];
    if (proc_root) {
        snprintf(root, sizeof root, "%s", proc_root);
    } else {
        pthread_mutex_lock(&g_root_mu);
        snprintf(root, sizeof root, "%s", g_root);
        pthread_mutex_unlock(&g_root_mu);
        const char *env = getenv("QF_PROC_ROOT");
        if (!root[0] && env && env[0]) snprintf(root, sizeof root, "%s", env);
        if (!root[0]) snprintf(root, sizeof root, "/proc");
    }
    /* room for the longest file name appended ("/pressure/memory" ...) */
    if (!root[0] || strlen(root) >= SYS_ROOT_MAX - 64) {
        QF_ERR_SET(err, QF_ERR_INVALID, "sys: proc root '%.64s...' is empty or too long", root);
        return NULL;
    }
    qf_sys *s = qf_calloc(1, sizeof *s);
    if (!s) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "sys: out of memory");
        return NULL;
    }
    memcpy(s->root, root, strlen(root) + 1);
    return s;
}

void qf_sys_free(qf_sys *s) {
    if (!s) return;
    sys_platform_free(s);
    qf_free(s);
}

void qf_sys_set_gpu_probe(qf_sys *s, qf_sys_gpu_fn fn, void *ud) {
    if (!s) return;
    s->gpu_fn = fn;
    s->gpu_ud = ud;
}

static void sample_cpu(qf_sys *s, qf_sys_sample *out) {
    /* static scratch would not be thread-safe across samplers; the arrays
     * are 5 KiB, fine on the stack */
    uint64_t busy[QF_SYS_MAX_CORES], total[QF_SYS_MAX_CORES];
    bool ok[QF_SYS_MAX_CORES];
    int n = sys_platform_cpu_ticks(s, busy, total, ok, QF_SYS_MAX_CORES);
    if (n < 0) n = 0;
    if (n > QF_SYS_MAX_CORES) n = QF_SYS_MAX_CORES;
    out->n_cores = n;
    double sum_busy = 0, sum_total = 0;
    for (int i = 0; i < n; i++) {
        out->core_util[i] = NAN;
        if (!ok[i] || !s->have_prev || !s->prev_ok[i]) continue;
        if (busy[i] < s->prev_busy[i] || total[i] <= s->prev_total[i]) continue;
        double db = (double)(busy[i] - s->prev_busy[i]);
        double dt = (double)(total[i] - s->prev_total[i]);
        if (db > dt) continue; /* busy cannot outrun total: garbage */
        out->core_util[i] = db / dt;
        sum_busy += db;
        sum_total += dt;
    }
    out->cpu_util = sum_total > 0 ? sum_busy / sum_total : NAN;
    for (int i = 0; i < QF_SYS_MAX_CORES; i++) {
        s->prev_ok[i] = i < n && ok[i];
        s->prev_busy[i] = s->prev_ok[i] ? busy[i] : 0;
        s->prev_total[i] = s->prev_ok[i] ? total[i] : 0;
    }
}

static void sample_gpu(qf_sys *s, qf_sys_sample *out) {
    out->gpu_present = false;
    out->gpu_name[0] = 0;
    out->gpu_util = NAN;
    out->gpu_mem_used = out->gpu_mem_total = -1;
    if (s->gpu_fn) {
        s->gpu_fn(s->gpu_ud, out);
        return;
    }
    if (!s->gpu_checked) {
        /* asked once: device presence does not change while we run */
        s->gpu_avail = qf_gpu_available(s->gpu_name, sizeof s->gpu_name);
        s->gpu_checked = true;
    }
    if (!s->gpu_avail) return;
    out->gpu_present = true;
    snprintf(out->gpu_name, sizeof out->gpu_name, "%s", s->gpu_name);
    sys_platform_gpu(s, out);
}

qf_status qf_sys_sample_now(qf_sys *s, qf_sys_sample *out) {
    if (!s || !out) return QF_ERR_INVALID;
    memset(out, 0, sizeof *out);
    out->t = qf_now_s();
    out->interval = s->have_prev ? out->t - s->t_prev : 0;
    out->cpu_util = NAN;
    out->mem_total = out->mem_available = out->rss = -1;
    out->mem_pressure = NAN;
    out->pressure_source = QF_SYS_PRESSURE_NONE;
    out->io_read = out->io_write = out->io_storage_read = out->io_storage_write = -1;
    sample_cpu(s, out);
    sys_platform_memory_io(s, out);
    sample_gpu(s, out);
    s->have_prev = true;
    s->t_prev = out->t;
    return QF_OK;
}

/* ---- metrics ---- */

typedef struct fam {
    const char *name;
    qf_metric_kind kind;
    const char *help;
} fam;

static const fam k_fams[] = {
    {"qforge_cpu_core_utilization", QF_METRIC_GAUGE,
     "CPU use of one core over the last sample interval, 0..1"},
    {"qforge_cpu_utilization", QF_METRIC_GAUGE,
     "CPU use of all cores together over the last sample interval, 0..1"},
    {"qforge_cpu_cores", QF_METRIC_GAUGE, "CPU cores seen by the sampler"},
    {"qforge_process_rss_bytes", QF_METRIC_GAUGE, "Resident memory of this process"},
    {"qforge_memory_total_bytes", QF_METRIC_GAUGE, "Physical memory of the machine"},
    {"qforge_memory_available_bytes", QF_METRIC_GAUGE,
     "Memory available to new allocations without swapping"},
    {"qforge_memory_pressure_ratio", QF_METRIC_GAUGE,
     "Memory pressure 0..1 (PSI some avg10, or 1 - available/total)"},
    {"qforge_memory_pressure_source", QF_METRIC_GAUGE,
     "1 for the source the memory pressure ratio comes from"},
    {"qforge_process_io_read_bytes_total", QF_METRIC_COUNTER,
     "Bytes this process read through read-like calls (files, pipes, sockets)"},
    {"qforge_process_io_write_bytes_total", QF_METRIC_COUNTER,
     "Bytes this process wrote through write-like calls (files, pipes, sockets)"},
    {"qforge_process_io_storage_read_bytes_total", QF_METRIC_COUNTER,
     "Bytes this process caused to be read from storage"},
    {"qforge_process_io_storage_write_bytes_total", QF_METRIC_COUNTER,
     "Bytes this process caused to be written to storage"},
    {"qforge_gpu_present", QF_METRIC_GAUGE, "1 when a GPU backend device is present"},
    {"qforge_gpu_utilization", QF_METRIC_GAUGE, "GPU busy share over the driver's last period, 0..1"},
    {"qforge_gpu_memory_used_bytes", QF_METRIC_GAUGE,
     "GPU memory in use (all processes and driver reservations)"},
    {"qforge_gpu_memory_total_bytes", QF_METRIC_GAUGE, "GPU memory of the device"},
};

/* Keep the first failure; a family declared earlier (QF_ERR_INVALID from a
 * duplicate) is fine. */
static void keep(qf_status *first, qf_status st) {
    if (st != QF_OK && *first == QF_OK) *first = st;
}

static void set_gauge(qf_metrics *m, qf_status *first, const char *name, const char *labels,
                      double v) {
    if (!isfinite(v)) return;
    keep(first, qf_metrics_set(m, name, labels, v));
}

static void set_bytes(qf_metrics *m, qf_status *first, const char *name, int64_t v) {
    if (v >= 0) keep(first, qf_metrics_set(m, name, NULL, (double)v));
}

/* Counters only move up: a source that went backwards keeps its last value
 * (qf_metrics_set refuses with QF_ERR_INVALID, which is not a failure here). */
static void set_counter(qf_metrics *m, qf_status *first, const char *name, int64_t v) {
    if (v < 0) return;
    qf_status st = qf_metrics_set(m, name, NULL, (double)v);
    if (st != QF_ERR_INVALID) keep(first, st);
}

qf_status qf_sys_to_metrics(const qf_sys_sample *smp, qf_metrics *m) {
    if (!smp || !m) return QF_ERR_INVALID;
    qf_status first = QF_OK;
    for (size_t i = 0; i < sizeof k_fams / sizeof *k_fams; i++) {
        qf_status st = qf_metrics_declare(m, k_fams[i].name, k_fams[i].kind, k_fams[i].help, NULL, 0);
        if (st != QF_ERR_INVALID) keep(&first, st);
    }
    char lb[64], idx[16];
    int n = smp->n_cores < QF_SYS_MAX_CORES ? smp->n_cores : QF_SYS_MAX_CORES;
    for (int i = 0; i < n; i++) {
        snprintf(idx, sizeof idx, "%d", i);
        qf_metrics_labels(lb, sizeof lb, "core", idx, (const char *)NULL);
        set_gauge(m, &first, "qforge_cpu_core_utilization", lb, smp->core_util[i]);
    }
    set_gauge(m, &first, "qforge_cpu_utilization", NULL, smp->cpu_util);
    if (n > 0) set_gauge(m, &first, "qforge_cpu_cores", NULL, n);
    set_bytes(m, &first, "qforge_process_rss_bytes", smp->rss);
    set_bytes(m, &first, "qforge_memory_total_bytes", smp->mem_total);
    set_bytes(m, &first, "qforge_memory_available_bytes", smp->mem_available);
    set_gauge(m, &first, "qforge_memory_pressure_ratio", NULL, smp->mem_pressure);
    /* one series per source ever used; the one in use is 1, the others 0 */
    for (int src = QF_SYS_PRESSURE_PSI; src <= QF_SYS_PRESSURE_MACOS; src++) {
        qf_metrics_labels(lb, sizeof lb, "source",
                          qf_sys_pressure_source_name((qf_sys_pressure_source)src),
                          (const char *)NULL);
        bool cur = (int)smp->pressure_source == src;
        if (cur || qf_metrics_get(m, "qforge_memory_pressure_source", lb) != 0)
            set_gauge(m, &first, "qforge_memory_pressure_source", lb, cur ? 1 : 0);
    }
    set_counter(m, &first, "qforge_process_io_read_bytes_total", smp->io_read);
    set_counter(m, &first, "qforge_process_io_write_bytes_total", smp->io_write);
    set_counter(m, &first, "qforge_process_io_storage_read_bytes_total", smp->io_storage_read);
    set_counter(m, &first, "qforge_process_io_storage_write_bytes_total", smp->io_storage_write);
    set_gauge(m, &first, "qforge_gpu_present", NULL, smp->gpu_present ? 1 : 0);
    if (smp->gpu_present) {
        set_gauge(m, &first, "qforge_gpu_utilization", NULL, smp->gpu_util);
        set_bytes(m, &first, "qforge_gpu_memory_used_bytes", smp->gpu_mem_used);
        set_bytes(m, &first, "qforge_gpu_memory_total_bytes", smp->gpu_mem_total);
    }
    return first;
}

/* ---- other systems: everything unknown ---- */

#if !defined(__linux__) && !defined(__APPLE__)
int sys_platform_cpu_ticks(qf_sys *s, uint64_t *busy, uint64_t *total, bool *ok, int cap) {
    (void)s, (void)busy, (void)total, (void)ok, (void)cap;
    return 0;
}
void sys_platform_memory_io(qf_sys *s, qf_sys_sample *out) {
    (void)s, (void)out;
}
void sys_platform_gpu(qf_sys *s, qf_sys_sample *out) {
    (void)s, (void)out;
}
void sys_platform_free(qf_sys *s) {
    (void)s;
}
#endif
