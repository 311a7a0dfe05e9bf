/* backend.h - the forward pass on an accelerator (CUDA today, Metal later).
 *
 * qf_gpu_fwd is the GPU twin of qf_fwd (model/model.h): the same batch
 * contract (tokens of many sequences, each (id, position, sequence)), the
 * same paged kv cache bookkeeping, logits of the requested tokens out. The
 * difference is where the numbers live:
 *
 *   - weights: uploaded once by qf_gpu_fwd_new (re-laid out for the device
 *     kernels; the model's mapping is not read again except for the token
 *     embedding rows of each batch);
 *   - kv cache: the host qf_kv keeps the bookkeeping (block pool, block
 *     tables, prefix sharing, copy on write, eviction) and the device holds
 *     the keys/values: one device block per host block id, same block_size,
 *     stored as f16 (f32 when the host kv says f32). The host kv's own
 *     storage is not read or written by this backend;
 *   - a step: the batch description (positions, block tables, embedding
 *     rows) goes in with one copy, every layer runs on the device, the
 *     logits rows asked for come back with one copy. A partial offload
 *     (--gpu-layers N < n_layer) runs the first layers on the CPU first
 *     (qf_fwd_decode_range, host kv storage) and sends their hidden states
 *     instead of the embedding rows: the device runs the last N layers and
 *     the head, as llama.cpp offloads the last layers (llama.cpp keeps the
 *     head on the CPU unless N > n_layer; here it goes with the device, so
 *     the hidden state crosses once per step and the logits come back).
 *
 * Which device: the one compiled in (QF_CUDA=ON builds the CUDA backend).
 * A build without one answers qf_gpu_available() = false and
 * qf_gpu_fwd_new() = NULL with QF_ERR_UNSUPPORTED, so callers need no
 * #ifdef.
 *
 * Numerics: quantized weights (Q4_0, Q8_0, Q4_K, Q6_K) multiply activations
 * encoded the way the CPU fast path encodes them (Q8_0 blocks for Q4_0/Q8_0
 * weights, Q8_K blocks for the K-quants) with exact integer block dots, so
 * results agree with qf_fwd (non-exact mode) up to float summation order;
 * F32/F16/BF16 weights use float math; other quantized types are expanded
 * to f16 at upload (slower, noted in the log). Results for a token do not
 * depend on which other tokens share its batch.
 *
 * Ownership: qf_gpu_fwd borrows the model (it must outlive it; the token
 * embedding is read from the model's mapping at every step) and owns all
 * device memory. Thread-safety: one qf_gpu_fwd is used by one thread at a
 * time; several may coexist (each has its own device stream).
 */
#ifndef QF_BACKEND_H
#define QF_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "kv/kv.h"
#include "model/model.h"

typedef struct qf_gpu_fwd qf_gpu_fwd;

/* True when a usable device is present; its name ("NVIDIA H100 80GB HBM3")
 * is written to name (cap bytes, NUL-terminated) when name != NULL. */
bool qf_gpu_available(char *name, size_t cap);

/* Name of the compiled-in backend: "cuda", or "none". */
const char *qf_gpu_backend_name(void);

/* Upload the weights and allocate the device kv pool and scratch.
 * kp: the host kv's parameters (qf_kv_get_params); the device pool has the
 *   same n_layer, kv dims, block_size and n_blocks.
 * n_batch_max: most tokens per decode call; n_ctx_max: most positions one
 *   token attends to (as qf_fwd_new).
 * n_gpu_layers: -1 (or >= n_layer) = every layer and the output head;
 *   0 < N < n_layer = a partial offload: the device runs the last N layers
 *   [n_layer - N, n_layer) and the output head, and holds weights and kv
 *   only for those; the first n_layer - N layers run on the CPU through a
 *   qf_fwd that the caller attaches with qf_gpu_fwd_set_cpu before the
 *   first decode. 0 gives QF_ERR_INVALID.
 * Errors: QF_ERR_UNSUPPORTED (no device, a device below compute capability
 * 8.0, model shapes the kernels do not handle: head dims not multiples of 8
 * or above 256, n_rot odd, n_embd / n_ff not multiples of 4, float weights
 * with a row length not a multiple of 4), QF_ERR_INVALID (kv geometry does
 * not fit the model, bad
 * sizes), QF_ERR_NOMEM (device or pinned host memory; the message gives the
 * bytes asked for), QF_ERR_INTERNAL (a device call failed; message has the
 * driver's text). */
qf_gpu_fwd *qf_gpu_fwd_new(const qf_model *m, const qf_kv_params *kp, int32_t n_batch_max, int32_t n_ctx_max,
                           int32_t n_gpu_layers, qf_err *err);
void qf_gpu_fwd_free(qf_gpu_fwd *f); /* NULL is a no-op */

/* Layers the CPU runs before the device takes over: n_layer - N for a
 * partial offload of N layers, 0 when the device runs them all. */
int32_t qf_gpu_fwd_cpu_layers(const qf_gpu_fwd *f);

/* The CPU forward pass of a partial offload (qf_gpu_fwd_cpu_layers > 0):
 * a qf_fwd over the same model and the same kv cache that decode is given,
 * with n_batch_max / n_ctx_max at least this pass's. Borrowed: it must
 * outlive f or be replaced (NULL detaches). Each decode then runs layers
 * [0, cpu_layers) of the batch on it (qf_fwd_decode_range; host kv storage
 * for those layers), writes the hidden states straight into the step
 * buffer that goes to the device (one host-to-device copy per step, as
 * with a full offload), and the device runs the rest and the head. */
void qf_gpu_fwd_set_cpu(qf_gpu_fwd *f, qf_fwd *cpu);

/* Run the batch: the contract of qf_fwd_decode. It validates the batch and
 * makes every sequence's written range writable with qf_kv_seq_prepare on
 * kv (so kv is not const); copy-on-write block copies that prepare makes
 * (a table entry replaced by a fresh block) are detected by comparing the
 * tables before and after and mirrored on the device before any write of
 * this step. kv must be the cache whose parameters were given to
 * qf_gpu_fwd_new (QF_ERR_INVALID otherwise). Errors: those of
 * qf_fwd_decode (QF_ERR_INVALID bad batch, QF_ERR_RANGE position beyond
 * n_ctx_max or kv full), QF_ERR_INVALID also for a partial offload
 * without a CPU pass attached, QF_ERR_INTERNAL (device failure: the device
 * state is then unspecified; free it). */
qf_status qf_gpu_fwd_decode(qf_gpu_fwd *f, qf_kv *kv, const qf_batch *b, qf_err *err);

/* Logits (n_vocab floats) of the j-th requested token of the last decode,
 * in batch order; NULL when j is out of range. Borrowed until the next
 * decode or free (pinned host memory). */
const float *qf_gpu_fwd_logits(const qf_gpu_fwd *f, int32_t j);
int32_t qf_gpu_fwd_n_logits(const qf_gpu_fwd *f);

/* Copy the device keys/values of kv block src into block dst (every
 * layer), ordered before the next decode's writes. For callers that change
 * block contents on the host kv outside qf_gpu_fwd_decode (decode mirrors
 * its own copy-on-write copies itself). QF_ERR_INVALID for ids outside the
 * pool. */
qf_status qf_gpu_fwd_copy_block(qf_gpu_fwd *f, int32_t src, int32_t dst, qf_err *err);

/* ---- choosing between the CPU and the GPU (engine, session, CLI) ---- */

/* --gpu-layers auto, the default of a build with a GPU backend (as Ollama
 * and LM Studio offload by default): every layer when the model, its kv
 * cache and the step buffers fit in the device's free memory, else as many
 * of the last layers as fit (a partial offload), else none; no device (or
 * no backend in the build) means the CPU, without a warning. Only
 * qf_gpu_fwd_try_new and the callers that hand it on take this value. */
#define QF_GPU_LAYERS_AUTO (-2)

/* QFORGE_GPU_LAYERS from the environment, the default of --gpu-layers: an
 * integer >= -1 (-1 = all layers) or "auto" (QF_GPU_LAYERS_AUTO). Unset or
 * empty: QF_GPU_LAYERS_AUTO in a build with a GPU backend, 0 in a CPU-only
 * build. A malformed value is read as 0 (warned about once per process).
 * Thread-safe. */
int32_t qf_gpu_layers_env(void);

/* The arithmetic of auto: layers that fit in free_b bytes of device memory
 * after reserve (context, libraries, fragmentation) and fixed (output
 * head, step buffers), each taking per_layer (weights and kv): -1 when all
 * n_layer fit, 0 when none does, else that count. Pure. */
int32_t qf_gpu_fit_layers(size_t free_b, size_t reserve, size_t fixed, size_t per_layer, int32_t n_layer);

/* What auto plans with, in bytes: the device's free memory (at most
 * QFORGE_GPU_MEM_MIB MiB when that is set: a GPU shared with other
 * programs), the reserve kept back (5% of the device or of that cap, and
 * 256 MiB), the memory of one layer (weights in the device's formats,
 * norms, its share of the kv pool kp) and the rest (output head, step
 * buffers of n_batch_max tokens). false without a device. */
typedef struct qf_gpu_sizes {
    size_t free, reserve, per_layer, fixed;
} qf_gpu_sizes;
bool qf_gpu_auto_sizes(const qf_model *m, const qf_kv_params *kp, int32_t n_batch_max, qf_gpu_sizes *out);

/* The GPU forward pass a caller asked for, or NULL for the CPU path; never
 * a hard failure. n_gpu_layers: 0 = none (returns NULL silently), -1 or
 * >= n_layer = every layer and the output head, 0 < N < n_layer = the last
 * N layers and the output head (then qf_gpu_fwd_cpu_layers > 0 and the
 * caller attaches its CPU pass with qf_gpu_fwd_set_cpu), QF_GPU_LAYERS_AUTO
 * = what fits (NULL silently without a device; an info line when the model
 * does not fit; a partial offload may result). Otherwise NULL
 * with one warning that says why and that the CPU runs instead (as
 * llama.cpp does when it cannot offload): the build has no GPU backend
 * (not configured with -DQF_CUDA=ON), no usable device is present, or the
 * device cannot take the model (memory, shapes; the device's message is
 * quoted). On success one info line names the device, the layers
 * offloaded and the memory used. Arguments as qf_gpu_fwd_new. */
qf_gpu_fwd *qf_gpu_fwd_try_new(const qf_model *m, const qf_kv_params *kp, int32_t n_batch_max, int32_t n_ctx_max,
                               int32_t n_gpu_layers);

/* Device memory in bytes: weights as laid out on the device, kv pool,
 * scratch (activations, logits, step buffers). */
typedef struct qf_gpu_mem {
    size_t weights, kv, scratch;
} qf_gpu_mem;
void qf_gpu_fwd_mem(const qf_gpu_fwd *f, qf_gpu_mem *out /* out */);

/* Weight bytes one decode step streams from device memory (every layer
 * matrix on the device and the output head, as stored there): the
 * numerator of the memory-bandwidth roofline of token generation. */
size_t qf_gpu_fwd_step_weight_bytes(const qf_gpu_fwd *f);

#endif
