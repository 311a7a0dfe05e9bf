/* sys_macos.c - the macOS half of the system sampler (compiled only under
 * __APPLE__; elsewhere this file is empty).
 *
 * CPU: host_processor_info(PROCESSOR_CPU_LOAD_INFO) gives cumulative ticks
 * per core in four states; busy = user + system + nice, total = busy +
 * idle. Memory: hw.memsize is the total; available is (free + inactive +
 * purgeable + speculative pages) from host_statistics64, the pages the
 * kernel can hand out without compressing or swapping. Pressure: the
 * kernel's kern.memorystatus_level is the percentage of memory it considers
 * free for the memorystatus (jetsam) policy, so pressure = 1 - level/100;
 * it is what Activity Monitor's pressure graph follows. RSS: mach task_info
 * (MACH_TASK_BASIC_INFO). I/O: proc_pid_rusage gives storage bytes; macOS
 * has no per-process count of all read/write bytes, so those stay unknown.
 * GPU: no management library is read here (Metal has no public utilisation
 * counter); the fields stay unknown.
 */
#if defined(__APPLE__)

#include <libproc.h>
#include <mach/mach.h>
#include <mach/mach_host.h>
#include <mach/processor_info.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysctl.h>
#include <unistd.h>

#include "monitor/monitor_int.h"

int sys_platform_cpu_ticks(qf_sys *s, uint64_t *busy, uint64_t *total, bool *ok, int cap) {
    (void)s;
    natural_t ncpu = 0;
    processor_info_array_t info = NULL;
    mach_msg_type_number_t ninfo = 0;
    if (host_processor_info(mach_host_self(), PROCESSOR_CPU_LOAD_INFO, &ncpu, &info, &ninfo) !=
        KERN_SUCCESS)
        return 0;
    processor_cpu_load_info_t load = (processor_cpu_load_info_t)info;
    int n = (int)ncpu < cap ? (int)ncpu : cap;
    for (int i = 0; i < n; i++) {
        uint64_t u = load[i].cpu_ticks[CPU_STATE_USER], sy = load[i].cpu_ticks[CPU_STATE_SYSTEM];
        uint64_t ni = load[i].cpu_ticks[CPU_STATE_NICE], id = load[i].cpu_ticks[CPU_STATE_IDLE];
        busy[i] = u + sy + ni;
        total[i] = busy[i] + id;
        ok[i] = true;
    }
    vm_deallocate(mach_task_self(), (vm_address_t)info, (vm_size_t)ninfo * sizeof(integer_t));
    return n;
}

void sys_platform_memory_io(qf_sys *s, qf_sys_sample *out) {
    (void)s;
    uint64_t memsize = 0;
    size_t len = sizeof memsize;
    if (sysctlbyname("hw.memsize", &memsize, &len, NULL, 0) == 0 && memsize > 0 &&
        memsize <= (uint64_t)INT64_MAX)
        out->mem_total = (int64_t)memsize;

    vm_size_t page = 0;
    vm_statistics64_data_t vm;
    mach_msg_type_number_t count = HOST_VM_INFO64_COUNT;
    if (host_page_size(mach_host_self(), &page) == KERN_SUCCESS &&
        host_statistics64(mach_host_self(), HOST_VM_INFO64, (host_info64_t)&vm, &count) ==
            KERN_SUCCESS) {
        uint64_t pages = (uint64_t)vm.free_count + vm.inactive_count + vm.purgeable_count +
                         vm.speculative_count;
        int64_t avail = (int64_t)(pages * (uint64_t)page);
        if (out->mem_total > 0 && avail >= 0 && avail <= out->mem_total) out->mem_available = avail;
    }

    int level = -1;
    len = sizeof level;
    if (sysctlbyname("kern.memorystatus_level", &level, &len, NULL, 0) == 0 && level >= 0 &&
        level <= 100) {
        out->mem_pressure = 1.0 - level / 100.0;
        out->pressure_source = QF_SYS_PRESSURE_MACOS;
    } else if (out->mem_total > 0 && out->mem_available >= 0) {
        out->mem_pressure = 1.0 - (double)out->mem_available / (double)out->mem_total;
        out->pressure_source = QF_SYS_PRESSURE_AVAILABLE;
    }

    mach_task_basic_info_data_t ti;
    mach_msg_type_number_t tcount = MACH_TASK_BASIC_INFO_COUNT;
    if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, (task_info_t)&ti, &tcount) ==
        KERN_SUCCESS)
        out->rss = (int64_t)ti.resident_size;

    struct rusage_info_v2 ru;
    if (proc_pid_rusage(getpid(), RUSAGE_INFO_V2, (rusage_info_t *)&ru) == 0) {
        out->io_storage_read = (int64_t)ru.ri_diskio_bytesread;
        out->io_storage_write = (int64_t)ru.ri_diskio_byteswritten;
    }
}

void sys_platform_gpu(qf_sys *s, qf_sys_sample *out) {
    (void)s, (void)out;
}

void sys_platform_free(qf_sys *s) {
    (void)s;
}

#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int sys_macos_unused;
#endif
