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

/* Read-only bandwidth in bytes per second: a kernel that reads `bytes`
 * of device memory with 16-byte loads (median of `reps` timed passes after
 * a warm-up). The ceiling of a weight stream; 0 on failure. */
double qf_cuda_read_bandwidth(size_t bytes, int reps);

/* The one-token matrix-vector kernel alone: a rows x cols Q4_0 or Q8_0
 * matrix (arbitrary contents) times one encoded row, launched reps times
 * one after the other (no PDL, no graph); median microseconds per launch
 * (events around each), 0 on failure. n_ff > 0: a gate|up matrix (rows =
 * 2 n_ff) with the SwiGLU epilogue. For the streaming bandwidth of the
 * kernel (bench_gpu --mv). */
double qf_cuda_bench_matvec(qf_type type, int32_t rows, int32_t cols, int32_t n_ff, int reps);

/* One matrix multiplication through the device kernels: W (rows x cols,
 * GGUF rows of `type`, host memory) times n activation rows x (n x cols
 * floats) -> y (n x rows floats), with the activations encoded as the
 * forward pass encodes them. With check_staging (quantized weights, n <= 8)
 * the product is computed a second time by mmq without staging the
 * activations in shared memory and must come out bit-identical
 * (QF_ERR_INTERNAL otherwise): for n = 1 that compares the matrix-vector
 * kernel with mmq. For kernel tests against qf_gemm. */
qf_status qf_cuda_test_matmul(qf_type type, int32_t rows, int32_t cols, int32_t n, const void *w, const float *x,
                              float *y, bool check_staging, qf_err *err);

/* The batch-1 kernel against the separate kernels, bit for bit: W (rows x
 * cols GGUF rows of type Q4_0 or Q8_0, host memory) times the row x
 * RMS-normed with norm (cols floats each, eps) and encoded by the act
 * kernel, through the matrix-vector kernel against mmq. With n_ff > 0
 * (rows = 2 n_ff: gate rows, then up rows)
 * also the SwiGLU epilogue's encoded silu(gate) * up against the act
 * kernel's encoding, each fused product run twice. y (rows floats) receives the product. QF_ERR_INTERNAL naming the
 * first difference; QF_ERR_UNSUPPORTED for other types. */
qf_status qf_cuda_test_matvec_fused(qf_type type, int32_t rows, int32_t cols, const void *w, const float *x,
                                    const float *norm, float eps, int32_t n_ff, float *y, qf_err *err);

/* Device time per kind of kernel, summed over the steps run with
 * QF_CUDA_PROFILE=1 in the environment when the forward pass was made
 * (graphs off, an event between every two launches, so each kernel's time
 * includes its launch gap). Kinds: rope, embed, act, qkv, k_store,
 * attention, wo, gate_up, down, head; bytes: weight
 * bytes the kind's kernels streamed. Fills up to cap entries (kinds that ran), returns the
 * count. Process-global, not thread-safe: for benchmarks. */
typedef struct qf_cuda_prof {
    const char *name;
    double ms;
    long calls;
    double bytes;
} qf_cuda_prof;
int qf_cuda_profile_get(qf_cuda_prof *out, int cap);
long qf_cuda_profile_steps(void);
void qf_cuda_profile_reset(void);

/* Timeline of the steps run with QF_CUDA_TRACE=1 in the environment when
 * the forward pass was made (graphs and PDL as configured): per launch of
 * the step (act, qkv, attention, wo, gate_up, down; in launch order), the
 * global-timer times in microseconds after the step's earliest block
 * start, averaged over the steps traced since the last reset: us[2e] the
 * earliest block's, us[2e + 1] the latest block's, for the events e = 0
 * block start, 1 PDL wait returned, 2 main work done, 3 outputs written;
 * negative where the kernel has no such event. layer: the device layer,
 * -1 outside the layers. Fills up to cap entries, returns the count (the
 * launches of the last step shape traced). Process-global, not
 * thread-safe: for benchmarks. */
typedef struct qf_cuda_trace_ev {
    const char *name;
    int layer;
    double us[8];
} qf_cuda_trace_ev;
int qf_cuda_trace_get(qf_cuda_trace_ev *out, int cap);
long qf_cuda_trace_steps(void);
void qf_cuda_trace_reset(void);

#ifdef __cplusplus
}
#endif

#endif
