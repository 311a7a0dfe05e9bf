/* hw_linux.c - memory of a Linux machine: /proc/meminfo, then the cgroup
 * limit (v2 memory.max, v1 memory.limit_in_bytes) when it is lower, since a
 * container sees the host's MemTotal but is killed at its own limit.
 */
#ifdef __linux__

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tune/tune_int.h"

/* One number (bytes) from a file; false when absent or not a number ("max"). */
static bool read_u64(const char *path, unsigned long long *out) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char buf[64];
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok) return false;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf || (*end && *end != '\n')) return false;
    *out = v;
    return true;
}

static void meminfo(qf_hw *hw) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return;
    char line[256];
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
            hw->mem_total = (size_t)kb * 1024;
        else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            hw->mem_available = (size_t)kb * 1024;
    }
    fclose(f);
}

static void cgroup_limit(qf_hw *hw) {
    static const char *const lim[] = {"/sys/fs/cgroup/memory.max",
                                      "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    static const char *const use[] = {"/sys/fs/cgroup/memory.current",
                                      "/sys/fs/cgroup/memory/memory.usage_in_bytes"};
    for (int i = 0; i < 2; i++) {
        unsigned long long limit, used;
        /* v1 reports "no limit" as a huge page-aligned number: above MemTotal */
        if (!read_u64(lim[i], &limit) || !hw->mem_total || limit >= hw->mem_total) continue;
        hw->mem_total = (size_t)limit;
        if (read_u64(use[i], &used)) {
            size_t room = used < limit ? (size_t)(limit - used) : 0;
            if (!hw->mem_available || room < hw->mem_available) hw->mem_available = room;
        }
        return;
    }
}

void qf_tune_hw_os(qf_hw *hw) {
    snprintf(hw->os, sizeof hw->os, "linux");
    meminfo(hw);
    cgroup_limit(hw);
    if (hw->mem_available > hw->mem_total) hw->mem_available = hw->mem_total;
    hw->unified = false; /* integrated GPUs exist, but no backend of ours uses one */
}

#else
typedef int qf_hw_linux_unused; /* not Linux: nothing here */
#endif
