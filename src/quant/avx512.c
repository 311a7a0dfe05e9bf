/* avx512.c - AVX-512 kernels (placeholder while being written). */
#if defined(__x86_64__)
#include <stdbool.h>
#include "quant/quant_int.h"
bool qf_kernels_fill_avx512(qf_kernel_table *t) {
    (void)t;
    return false;
}
#endif
