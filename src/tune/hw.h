/* hw.h - the machine as the planner sees it: core kinds, caches, NUMA,
 * memory, accelerator.
 *
 * A qf_hw is either detected (qf_hw_detect: hwloc through base/cpu.h for
 * the core kinds, hwloc for caches and NUMA nodes, /proc/meminfo and the
 * cgroup limit on Linux, sysctl on macOS, qf_gpu_available for a device)
 * or loaded from a JSON description (qf_hw_load), so that plans can be
 * computed and tested for machines other than this one.
 *
 * The JSON description (docs/tune.md; `qforge tune --json` prints the
 * detected one under "hw"):
 *
 *   {"name": "m3-max", "os": "macos",
 *    "cores":  {"performance": 8, "efficiency": 4, "logical": 12},
 *    "cache":  {"l2": "16M", "l3": 0},
 *    "numa_nodes": 1,
 *    "memory": {"total": "128G", "available": "120G", "unified": true},
 *    "gpu":    {"name": "NVIDIA H100 80GB HBM3", "memory": "80G"}}
 *
 * Required: cores.performance and memory.total. Sizes are bytes, either a
 * number or a string with a K/M/G/T suffix (powers of 1024). "gpu" may be
 * null or absent. Unknown keys, wrong types and out-of-range values are
 * errors that name the file and the key.
 *
 * Thread-safety: plain data; the functions keep no state (detection reads
 * the shared topology of base/cpu.h).
 */
#ifndef QF_TUNE_HW_H
#define QF_TUNE_HW_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

typedef struct qf_hw {
    char name[64];        /* "detected", or the description's name (else file stem) */
    char os[16];          /* "linux", "macos", "unknown" */
    int n_logical;        /* hardware threads */
    int n_perf;           /* performance cores (every core on a single-kind machine), >= 1 */
    int n_eff;            /* efficiency cores, >= 0 */
    size_t l2_bytes;      /* L2 cache of one performance core; 0 = unknown */
    size_t l3_bytes;      /* all L3 caches together; 0 = none or unknown */
    int n_numa;           /* NUMA nodes, >= 1 */
    size_t mem_total;     /* bytes this process may use (a cgroup limit applied) */
    size_t mem_available; /* bytes free now (MemAvailable); 0 = unknown */
    bool unified;         /* CPU and GPU share the memory (Apple Silicon) */
    bool gpu;             /* a usable accelerator */
    char gpu_name[128];
    size_t gpu_mem; /* its memory in bytes; 0 = unknown */
} qf_hw;

/* Detect this machine. Never fails for lack of detail (unknown fields stay
 * 0); QF_ERR_IO only when not even the memory size can be read. */
qf_status qf_hw_detect(qf_hw *out /* out */, qf_err *err);

/* Load a JSON description (format above). QF_ERR_IO (cannot read),
 * QF_ERR_FORMAT (not JSON), QF_ERR_INVALID (unknown key, wrong type,
 * missing required key, value out of range); the message starts with
 * path and names the key, e.g. "m.json: cores.performance: 0 is not in
 * 1..4096". */
qf_status qf_hw_load(const char *path, qf_hw *out /* out */, qf_err *err);
/* The same from text; name is used in messages (and as the default name). */
qf_status qf_hw_parse(const char *json, const char *name, qf_hw *out /* out */, qf_err *err);

/* The description as JSON text (sizes in bytes), parseable by
 * qf_hw_parse. Returns malloc'ed text (caller frees with qf_free), NULL
 * when out of memory. */
char *qf_hw_to_json(const qf_hw *hw);

#endif
