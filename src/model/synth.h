/* synth.h - random-weight models of any shape (tests and benchmarks).
 *
 * Writes a GGUF that qforge and llama.cpp both load: the architecture's
 * metadata keys, tensors named and shaped as llama.cpp expects, weights
 * drawn from fixed distributions with a seed (same seed, same file), stored
 * in the tensor types of a file type mix (quantize.h). The vocabulary is
 * copied from another GGUF (all tokenizer.* keys) or, without one, a
 * 259-token byte-level SentencePiece vocabulary (unk, bos, eos, 256 bytes)
 * that can encode any text. Its text output is meaningless.
 */
#ifndef QF_SYNTH_H
#define QF_SYNTH_H

#include <stdint.h>

#include "base/err.h"
#include "model/model.h"
#include "model/quantize.h"

typedef struct qf_synth_params {
    qf_arch arch;
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff;
    int32_t head_dim;       /* 0 = n_embd / n_head */
    int32_t n_ctx;          /* context_length metadata; 0 = 4096 */
    const char *vocab_from; /* GGUF to copy tokenizer.* from, or NULL */
    qf_ftype ftype;
    uint64_t seed;
    int n_threads;          /* 0 = performance cores */
} qf_synth_params;

qf_status qf_model_synth(const qf_synth_params *p, const char *out_path, qf_err *err);

#endif
