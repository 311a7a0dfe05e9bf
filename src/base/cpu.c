/* cpu.c - topology via hwloc (cores, core kinds). Computed once. */
#include "base/cpu.h"

#include <hwloc.h>
#include <pthread.h>
#include <unistd.h>

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
