/* cpu.c - topology via hwloc (cores, core kinds), computed once, and
 * thread placement. Placement is best effort everywhere: a refused affinity
 * call (container cpusets, macOS) leaves the thread where the OS put it,
 * which is always correct, only perhaps slower.
 */
#include "base/cpu.h"

#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#ifdef __APPLE__
#include <pthread/qos.h>
#endif

#include "base/mem.h"

static qf_cpu_topo g_topo;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Most efficient kind first in hwloc's ordering; the last kind is the most
 * performant. Returns a bitmap of the performance cores' PUs (caller frees)
 * or NULL when there is a single kind. */
static hwloc_bitmap_t perf_kind_cpuset(hwloc_topology_t topo) {
    int nr = hwloc_cpukinds_get_nr(topo, 0);
    if (nr <= 1) return NULL;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return NULL;
    if (hwloc_cpukinds_get_info(topo, (unsigned)(nr - 1), set, NULL, NULL, NULL, 0) != 0) {
        hwloc_bitmap_free(set);
        return NULL;
    }
    return set;
}

static void detect(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    g_topo.n_logical = n > 0 ? (int)n : 1;
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0) goto fallback;
    if (hwloc_topology_load(topo) != 0) {
        hwloc_topology_destroy(topo);
        goto fallback;
    }
    int ncores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    if (ncores <= 0) {
        hwloc_topology_destroy(topo);
        goto fallback;
    }
    hwloc_bitmap_t perf = perf_kind_cpuset(topo);
    g_topo.n_cores = ncores;
    g_topo.perf_cpus = qf_calloc((size_t)ncores, sizeof(int));
    g_topo.eff_cpus = qf_calloc((size_t)ncores, sizeof(int));
    if (!g_topo.perf_cpus || !g_topo.eff_cpus) {
        if (perf) hwloc_bitmap_free(perf);
        hwloc_topology_destroy(topo);
        goto fallback;
    }
    for (int i = 0; i < ncores; i++) {
        hwloc_obj_t core = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, (unsigned)i);
        int pu = hwloc_bitmap_first(core->cpuset);
        if (pu < 0) continue;
        if (!perf || hwloc_bitmap_intersects(core->cpuset, perf))
            g_topo.perf_cpus[g_topo.n_perf++] = pu;
        else
            g_topo.eff_cpus[g_topo.n_eff++] = pu;
    }
    if (perf) hwloc_bitmap_free(perf);
    hwloc_topology_destroy(topo);
    if (g_topo.n_perf > 0) return;
fallback:
    qf_free(g_topo.perf_cpus);
    qf_free(g_topo.eff_cpus);
    g_topo.n_cores = g_topo.n_logical;
    g_topo.n_perf = g_topo.n_logical;
    g_topo.n_eff = 0;
    g_topo.perf_cpus = NULL; /* unknown ids: do not pin */
    g_topo.eff_cpus = NULL;
}

const qf_cpu_topo *qf_cpu_topo_get(void) {
    pthread_once(&g_once, detect);
    return &g_topo;
}

int qf_cpu_default_threads(void) {
    int n = qf_cpu_topo_get()->n_perf;
    return n > 0 ? n : 1;
}

/* ---- placement ---- */

#ifdef __linux__
static bool set_affinity(const int *cpus, int n) {
    if (!cpus || n <= 0) return false;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < n; i++)
        if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    if (CPU_COUNT(&set) == 0) return false;
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}
#endif

bool qf_cpu_pin_self(int cpu) {
#ifdef __linux__
    return cpu >= 0 && set_affinity(&cpu, 1);
#else
    (void)cpu;
    return false;
#endif
}

bool qf_cpu_place_self(qf_thread_role role) {
#if defined(__APPLE__)
    qos_class_t q = role == QF_THREAD_COMPUTE ? QOS_CLASS_USER_INTERACTIVE
                    : role == QF_THREAD_IO    ? QOS_CLASS_UTILITY
                                              : QOS_CLASS_BACKGROUND;
    return pthread_set_qos_class_self_np(q, 0) == 0;
#elif defined(__linux__)
    const qf_cpu_topo *t = qf_cpu_topo_get();
    /* one core kind: the kernel's balancing is the best placement there is */
    if (t->n_eff == 0 || !t->perf_cpus || !t->eff_cpus) return false;
    if (role == QF_THREAD_COMPUTE) return set_affinity(t->perf_cpus, t->n_perf);
    return set_affinity(t->eff_cpus, t->n_eff);
#else
    (void)role;
    return false;
#endif
}
