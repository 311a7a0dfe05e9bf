/* sys_linux.c - the Linux half of the system sampler: text files under
 * the proc root, and NVML (loaded with dlopen) for NVIDIA GPU utilisation.
 *
 * Parsing is defensive because the root may be a test folder of garbage:
 * every number goes through strtoull with its end checked, a line that does
 * not parse is skipped, and a file that yields nothing leaves its fields
 * unknown. /proc/stat is read line by line and only its leading cpu lines
 * are looked at (the intr line that follows can be tens of KiB).
 *
 * CPU ticks: busy = user + nice + system + irq + softirq + steal, total =
 * busy + idle + iowait (guest time is already inside user and nice). Lines
 * with fewer than the first four fields count as garbage.
 */
#if defined(__linux__)

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "monitor/monitor_int.h"

static FILE *open_in(const qf_sys *s, const char *rel) {
    char path[SYS_ROOT_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", s->root, rel);
    return fopen(path, "re");
}

/* Unsigned decimal at *p (leading blanks skipped); advances *p. */
static bool parse_u64(const char **p, uint64_t *out) {
    const char *q = *p;
    while (*q == ' ' || *q == '\t')
        q++;
    if (*q < '0' || *q > '9') return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(q, &end, 10);
    if (errno || end == q) return false;
    *out = (uint64_t)v;
    *p = end;
    return true;
}

/* The rest of a line is blanks (and a newline) only. */
static bool rest_blank(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return *p == 0;
}

/* ---- CPU ---- */

int sys_platform_cpu_ticks(qf_sys *s, uint64_t *busy, uint64_t *total, bool *ok, int cap) {
    FILE *f = open_in(s, "stat");
    if (!f) return 0;
    for (int i = 0; i < cap; i++)
        ok[i] = false;
    int n = 0;
    bool seen_cpu = false;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "cpu", 3) != 0) {
            if (seen_cpu) break; /* cpu lines come first; skip the rest */
            continue;
        }
        seen_cpu = true;
        if (line[3] < '0' || line[3] > '9') continue; /* the "cpu " aggregate */
        char *end;
        errno = 0;
        long idx = strtol(line + 3, &end, 10);
        if (errno || idx < 0 || idx >= cap || (*end != ' ' && *end != '\t')) continue;
        uint64_t v[10] = {0};
        const char *p = end;
        int k = 0;
        while (k < 10 && parse_u64(&p, &v[k]))
            k++;
        if (k < 4 || !rest_blank(p)) continue;
        /* user nice system idle iowait irq softirq steal guest guest_nice */
        uint64_t b = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        uint64_t t = b + v[3] + v[4];
        if (b < v[0] || t < b) continue; /* overflow: garbage */
        busy[idx] = b;
        total[idx] = t;
        ok[idx] = true;
        if (idx + 1 > n) n = (int)idx + 1;
    }
    fclose(f);
    return n;
}

/* ---- memory, pressure, RSS, I/O ---- */

/* "Key:   123 kB" -> bytes (kB means KiB here, as the kernel uses it); a
 * value without unit is taken as bytes. -1 when key is absent or garbage. */
static int64_t kv_bytes(const char *line, const char *key) {
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0 || line[k] != ':') return -2; /* not this key */
    const char *p = line + k + 1;
    uint64_t v;
    if (!parse_u64(&p, &v)) return -1;
    while (*p == ' ' || *p == '\t')
        p++;
    uint64_t mul = 1;
    if (!strncmp(p, "kB", 2)) {
        mul = 1024;
        p += 2;
    }
    if (!rest_blank(p)) return -1;
    if (v > (uint64_t)INT64_MAX / mul) return -1;
    return (int64_t)(v * mul);
}

static void read_meminfo(qf_sys *s, qf_sys_sample *out) {
    FILE *f = open_in(s, "meminfo");
    if (!f) return;
    int64_t total = -1, avail = -1, mfree = -1, buffers = -1, cached = -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        struct {
            const char *key;
            int64_t *dst;
        } keys[] = {{"MemTotal", &total},
                    {"MemAvailable", &avail},
                    {"MemFree", &mfree},
                    {"Buffers", &buffers},
                    {"Cached", &cached}};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
            int64_t v = kv_bytes(line, keys[i].key);
            if (v != -2) {
                *keys[i].dst = v;
                break;
            }
        }
    }
    fclose(f);
    /* kernels before 3.14 have no MemAvailable: approximate it */
    if (avail < 0 && mfree >= 0 && buffers >= 0 && cached >= 0) avail = mfree + buffers + cached;
    if (total > 0) out->mem_total = total;
    if (avail >= 0 && total > 0 && avail <= total) out->mem_available = avail;
}

/* PSI: "some avg10=1.23 avg60=... total=..." -> 0.0123. */
static void read_psi(qf_sys *s, qf_sys_sample *out) {
    FILE *f = open_in(s, "pressure/memory");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "some ", 5) != 0) continue;
        const char *a = strstr(line, "avg10=");
        if (!a) break;
        char *end;
        errno = 0;
        double v = strtod(a + 6, &end);
        if (errno || end == a + 6 || !isfinite(v) || v < 0 || v > 100) break;
        if (*end != ' ' && *end != '\n' && *end != 0) break;
        out->mem_pressure = v / 100.0;
        out->pressure_source = QF_SYS_PRESSURE_PSI;
        break;
    }
    fclose(f);
}

static void read_status(qf_sys *s, qf_sys_sample *out) {
    FILE *f = open_in(s, "self/status");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int64_t v = kv_bytes(line, "VmRSS");
        if (v == -2) continue;
        out->rss = v;
        break;
    }
    fclose(f);
}

static void read_io(qf_sys *s, qf_sys_sample *out) {
    FILE *f = open_in(s, "self/io");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        struct {
            const char *key;
            int64_t *dst;
        } keys[] = {{"rchar", &out->io_read},
                    {"wchar", &out->io_write},
                    {"read_bytes", &out->io_storage_read},
                    {"write_bytes", &out->io_storage_write}};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
            int64_t v = kv_bytes(line, keys[i].key);
            if (v != -2) {
                *keys[i].dst = v;
                break;
            }
        }
    }
    fclose(f);
}

void sys_platform_memory_io(qf_sys *s, qf_sys_sample *out) {
    read_meminfo(s, out);
    read_psi(s, out);
    if (out->pressure_source == QF_SYS_PRESSURE_NONE && out->mem_total > 0 &&
        out->mem_available >= 0) {
        out->mem_pressure = 1.0 - (double)out->mem_available / (double)out->mem_total;
        out->pressure_source = QF_SYS_PRESSURE_AVAILABLE;
    }
    read_status(s, out);
    read_io(s, out);
}

/* ---- GPU: NVML through dlopen ---- */

/* The few NVML entry points used, with their C ABI: int status (0 =
 * success), an opaque device handle, and two small structs. */
typedef struct nvml_util {
    unsigned int gpu, memory; /* percent over the driver's sample period */
} nvml_util;
typedef struct nvml_mem {
    unsigned long long total, free, used;
} nvml_mem;
typedef int (*nvml_init_fn)(void);
typedef int (*nvml_shutdown_fn)(void);
typedef int (*nvml_handle_fn)(unsigned int, void **);
typedef int (*nvml_util_fn)(void *, nvml_util *);
typedef int (*nvml_mem_fn)(void *, nvml_mem *);

typedef struct nvml {
    void *lib;
    bool tried, ok;
    void *dev;
    nvml_shutdown_fn shutdown;
    nvml_util_fn util;
    nvml_mem_fn mem;
} nvml;

/* dlsym's void * -> function pointer without a cast ISO C leaves undefined. */
static void *sym(void *lib, const char *name, void *fnp, size_t size) {
    void *p = dlsym(lib, name);
    if (p) memcpy(fnp, &p, size);
    return p;
}

static nvml *nvml_get(qf_sys *s) {
    if (!s->plat) {
        s->plat = qf_calloc(1, sizeof(nvml));
        if (!s->plat) return NULL;
    }
    nvml *n = s->plat;
    if (n->tried) return n->ok ? n : NULL;
    n->tried = true; /* once: a missing library stays missing */
    n->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) return NULL;
    nvml_init_fn init = NULL;
    nvml_handle_fn handle = NULL;
    if (!sym(n->lib, "nvmlInit_v2", &init, sizeof init) ||
        !sym(n->lib, "nvmlShutdown", &n->shutdown, sizeof n->shutdown) ||
        !sym(n->lib, "nvmlDeviceGetHandleByIndex_v2", &handle, sizeof handle) ||
        !sym(n->lib, "nvmlDeviceGetUtilizationRates", &n->util, sizeof n->util) ||
        !sym(n->lib, "nvmlDeviceGetMemoryInfo", &n->mem, sizeof n->mem) || init() != 0) {
        dlclose(n->lib);
        n->lib = NULL;
        return NULL;
    }
    /* device 0: the one the CUDA backend uses unless CUDA_VISIBLE_DEVICES
     * reorders devices (then the figures are those of NVML's device 0) */
    if (handle(0, &n->dev) != 0) {
        n->shutdown();
        dlclose(n->lib);
        n->lib = NULL;
        return NULL;
    }
    n->ok = true;
    return n;
}

void sys_platform_gpu(qf_sys *s, qf_sys_sample *out) {
    nvml *n = nvml_get(s);
    if (!n) return;
    nvml_util u;
    if (n->util(n->dev, &u) == 0 && u.gpu <= 100) out->gpu_util = u.gpu / 100.0;
    nvml_mem m;
    if (n->mem(n->dev, &m) == 0 && m.total <= (unsigned long long)INT64_MAX) {
        out->gpu_mem_total = (int64_t)m.total;
        out->gpu_mem_used = m.used <= m.total ? (int64_t)m.used : -1;
    }
}

void sys_platform_free(qf_sys *s) {
    nvml *n = s->plat;
    if (!n) return;
    if (n->ok) {
        n->shutdown();
        dlclose(n->lib);
    }
    qf_free(n);
    s->plat = NULL;
}

#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int sys_linux_unused;
#endif
