/* cuda.h - CUDA-only entry points for tests and benchmarks.
 *
 * The forward pass is reached through backend/backend.h; these expose single
 * pieces of the CUDA backend so a test can check one kernel against the CPU
 * and a benchmark can measure the device's memory bandwidth. Available only
 * when the build has QF_CUDA=ON (QF_HAVE_CUDA defined).
 * Thread-safety: each call uses its own stream and buffers.
 */
#ifndef QF_BACKEND_CUDA_H
#define QF_BACKEND_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "quant/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device-to-device copy bandwidth in bytes per second, counting the bytes
 * read plus the bytes written (cudaMemcpy of `bytes` between two device
 * buffers, median of `reps` timed copies after a warm-up). 0 on failure. */
double qf_cuda_copy_bandwidth(size_t bytes, int reps);

/* One matrix multiplication through the device kernels: W (rows x cols,
 * GGUF rows of `type`, host memory) times n activation rows x (n x cols
 * floats) -> y (n x rows floats), with the activations encoded as the
 * forward pass encodes them. With check_staging (quantized weights, n <= 8)
 * the product is computed a second time without staging the activations in
 * shared memory and must come out bit-identical (QF_ERR_INTERNAL
 * otherwise). For kernel tests against qf_gemm. */
qf_status qf_cuda_test_matmul(qf_type type, int32_t rows, int32_t cols, int32_t n, const void *w, const float *x,
                              float *y, bool check_staging, qf_err *err);

#ifdef __cplusplus
}
#endif

#endif
