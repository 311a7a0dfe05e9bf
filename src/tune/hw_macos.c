/* hw_macos.c - memory and core kinds of a Mac: sysctl hw.memsize, the
 * performance levels (hw.perflevel0 = performance cores, hw.perflevel1 =
 * efficiency cores on Apple Silicon) with their L2 size, and free memory
 * from the VM statistics (free + inactive + purgeable pages, which the
 * kernel hands out without swapping). Apple Silicon memory is unified: the
 * GPU allocates from the same pool.
 */
#ifdef __APPLE__

#include <mach/mach.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysctl.h>
#include <sys/types.h>

#include "tune/tune_int.h"

static bool sys_u64(const char *name, uint64_t *out) {
    uint64_t v64 = 0;
    size_t len = sizeof v64;
    if (sysctlbyname(name, &v64, &len, NULL, 0) != 0) return false;
    if (len == sizeof(uint32_t)) {
        uint32_t v32;
        memcpy(&v32, &v64, sizeof v32);
        *out = v32;
    } else {
        *out = v64;
    }
    return true;
}

static void available(qf_hw *hw) {
    vm_statistics64_data_t vs;
    mach_msg_type_number_t cnt = HOST_VM_INFO64_COUNT;
    if (host_statistics64(mach_host_self(), HOST_VM_INFO64, (host_info64_t)&vs, &cnt) !=
        KERN_SUCCESS)
        return;
    vm_size_t page = 0;
    if (host_page_size(mach_host_self(), &page) != KERN_SUCCESS || !page) return;
    uint64_t pages = (uint64_t)vs.free_count + vs.inactive_count + vs.purgeable_count;
    hw->mem_available = (size_t)(pages * page);
}

void qf_tune_hw_os(qf_hw *hw) {
    snprintf(hw->os, sizeof hw->os, "macos");
    uint64_t v;
    if (sys_u64("hw.memsize", &v)) hw->mem_total = (size_t)v;
    available(hw);
    if (hw->mem_available > hw->mem_total) hw->mem_available = hw->mem_total;
    if (sys_u64("hw.logicalcpu", &v) && v > 0) hw->n_logical = (int)v;
    uint64_t levels = 0;
    if (sys_u64("hw.nperflevels", &levels) && levels >= 1) {
        if (sys_u64("hw.perflevel0.physicalcpu", &v) && v > 0) hw->n_perf = (int)v;
        if (sys_u64("hw.perflevel0.l2cachesize", &v) && v > 0) hw->l2_bytes = (size_t)v;
        hw->n_eff = 0;
        if (levels >= 2 && sys_u64("hw.perflevel1.physicalcpu", &v)) hw->n_eff = (int)v;
    }
#if defined(__arm64__) || defined(__aarch64__)
    hw->unified = true;
#endif
}

#else
typedef int qf_hw_macos_unused; /* not macOS: nothing here */
#endif
