/* tune_int.h - helpers shared inside the tune layer (not a public API). */
#ifndef QF_TUNE_INT_H
#define QF_TUNE_INT_H

#include <cjson/cJSON.h>

#include "tune/hw.h"

/* OS part of detection (hw_linux.c, hw_macos.c): os name, memory total and
 * available (cgroup limit applied on Linux), unified memory, and the core
 * counts and L2 size where the OS knows them better than hwloc (macOS
 * performance levels). Leaves fields it cannot read unchanged. */
void qf_tune_hw_os(qf_hw *hw);

/* hw as a cJSON object (NULL when out of memory); caller deletes. */
cJSON *qf_tune_hw_cjson(const qf_hw *hw);

#define QF_GIB (1024.0 * 1024.0 * 1024.0)
#define QF_MIB (1024.0 * 1024.0)

#endif
