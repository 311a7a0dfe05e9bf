/* neon.c - NEON kernels (placeholder while being written). */
#if defined(__aarch64__)
#include <stdbool.h>
#include "quant/quant_int.h"
bool qf_kernels_fill_neon(qf_kernel_table *t) {
    (void)t;
    return false;
}
#endif
