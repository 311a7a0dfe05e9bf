/* model.h - transformer architectures: load a GGUF model, run its forward pass.
 *
 * qf_model_load maps the GGUF file (weights stay where they lie in the
 * mapping: zero-copy), reads the hyperparameters of the architecture from
 * metadata, binds every tensor by name and checks its shape and type, and
 * builds the tokenizer. Architectures: llama (Llama 2/3.x, Mistral,
 * TinyLlama, SmolLM), qwen2 (q/k/v biases), qwen3 (per-head q/k RMSNorm).
 *
 * qf_fwd runs the forward pass over a batch of tokens that may belong to
 * many sequences (each token: id, position, sequence), reading and writing
 * the sequences' keys/values in a paged qf_kv, and returns logits for the
 * tokens that ask for them. All heavy loops run on a qf_pool.
 *
 * Ownership: qf_model owns the mapping and the tokenizer; qf_fwd borrows the
 * model, kv and pool (they must outlive it) and owns its scratch.
 * Thread-safety: a loaded model is immutable and may be shared by several
 * qf_fwd; one qf_fwd is used by one thread at a time.
 */
#ifndef QF_MODEL_H
#define QF_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"
#include "gguf/gguf.h"
#include "kv/kv.h"
#include "quant/quant.h"
#include "tok/tok.h"

typedef enum qf_arch { QF_ARCH_LLAMA = 0, QF_ARCH_QWEN2, QF_ARCH_QWEN3, QF_ARCH_COUNT } qf_arch;
typedef enum qf_rope_kind { QF_ROPE_NORM = 0, QF_ROPE_NEOX = 1 } qf_rope_kind;

typedef struct qf_hparams {
    qf_arch arch;
    char arch_name[32];
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;   /* key length */
    int32_t head_dim_v; /* value length */
    int32_t n_ff;
    int32_t n_rot;      /* rotary dimensions (<= head_dim) */
    float rms_eps;
    float rope_base;
    float rope_freq_scale; /* 1/linear scaling factor; 1 = none */
    qf_rope_kind rope_kind;
    int32_t swa_window; /* native sliding window, 0 = none */
    bool tied_output;   /* output projection reuses token_embd */
} qf_hparams;

/* A weight matrix: (rows, cols) = (ne1, ne0); data borrowed from the map. */
typedef struct qf_weight {
    const void *data;
    qf_type type;
    int64_t cols, rows;
    size_t row_bytes;
} qf_weight;

typedef struct qf_layer {
    const float *attn_norm;           /* (n_embd) */
    qf_weight wq, wk, wv, wo;         /* (n_head*hd, n_embd) (kvh*hd,.) (kvh*hdv,.) (n_embd, n_head*hdv) */
    const float *bq, *bk, *bv;        /* qwen2 biases or NULL */
    const float *q_norm, *k_norm;     /* qwen3 (head_dim) or NULL */
    const float *ffn_norm;            /* (n_embd) */
    qf_weight w_gate, w_up, w_down;   /* (n_ff, n_embd) (n_ff, n_embd) (n_embd, n_ff) */
} qf_layer;

typedef struct qf_model {
    qf_hparams hp;
    qf_gguf *gguf;                /* owned */
    qf_tok *tok;                  /* owned */
    qf_weight tok_embd;           /* (n_vocab, n_embd) */
    const float *output_norm;     /* (n_embd) */
    qf_weight output;             /* (n_vocab, n_embd); == tok_embd when tied */
    const float *rope_freqs;      /* (n_rot/2) llama3 frequency factors or NULL */
    qf_layer *layers;             /* (n_layer) owned */
    size_t weight_bytes;          /* sum of tensor bytes */
    char name[128];               /* general.name or file stem */
} qf_model;

typedef struct qf_model_params {
    bool no_tokenizer; /* skip the tokenizer (tests of the math only) */
} qf_model_params;

/* Load path. Errors: I/O, GGUF format, unsupported arch or tensor type
 * (the message names the tensor, its type and the supported list), missing
 * tensors or shapes that disagree with the metadata. */
qf_model *qf_model_load(const char *path, const qf_model_params *p, qf_err *err);
void qf_model_free(qf_model *m); /* NULL is a no-op */

const char *qf_arch_name(qf_arch a);

/* KV parameters for this model (element type, block size, pool in tokens). */
qf_kv_params qf_model_kv_params(const qf_model *m, int64_t n_tokens, int32_t n_seq_max,
                                qf_type kv_type, int32_t block_size);

/* ---- forward pass ---- */

/* A batch: n tokens; token i is tok[i] at position pos[i] of sequence
 * seq[i]. Positions of one sequence must be consecutive in the batch and
 * continue what the kv cache holds for it (position p needs 0..p-1 cached
 * or earlier in this batch). logits[i] != 0 asks for token i's logits. */
typedef struct qf_batch {
    int32_t n;
    const int32_t *tok;
    const int32_t *pos;
    const int32_t *seq;
    const int8_t *logits;
} qf_batch;

typedef struct qf_fwd qf_fwd;

/* n_batch_max: most tokens per call; n_ctx_max: longest sequence. */
qf_fwd *qf_fwd_new(const qf_model *m, qf_kv *kv, qf_pool *pool, int32_t n_batch_max,
                   int32_t n_ctx_max, qf_err *err);
void qf_fwd_free(qf_fwd *f);

/* Run the batch. Reserves kv blocks as needed (QF_ERR_RANGE when full).
 * Logits of the requested tokens, in batch order, are then available via
 * qf_fwd_logits(f, j) for j < number requested: (n_vocab) floats, borrowed
 * until the next call. */
qf_status qf_fwd_decode(qf_fwd *f, const qf_batch *b, qf_err *err);
const float *qf_fwd_logits(const qf_fwd *f, int32_t j);
/* exact: dequantize weights and multiply float activations (the reference
 * path, slow); default: activations encoded as llama.cpp does (Q8_0/Q8_K)
 * and the ISA kernels of quant/kernels.h. QF_EXACT=1 in the environment
 * makes exact the default. */
void qf_fwd_set_exact(qf_fwd *f, bool exact);
int32_t qf_fwd_n_logits(const qf_fwd *f);

/* Part of a decode step: layers [l0, l1) of the batch and, with head, the
 * output norm + projection; for a split of the layers between the CPU and
 * a device (backend/backend.h, --gpu-layers). 0 <= l0 <= l1 <= n_layer;
 * head needs l1 == n_layer.
 * x_io: (b->n, n_embd) floats, the hidden states of the batch in batch
 *   order. l0 == 0 starts from the token embeddings (x_io not read; may be
 *   NULL); l0 > 0 starts from x_io (required). When x_io != NULL the hidden
 *   states leaving layer l1 - 1 are written back to it (before the head).
 * Each call validates the batch and prepares the kv cache exactly as
 * qf_fwd_decode (preparing an already prepared range changes nothing), and
 * reads/writes the keys and values of layers [l0, l1) only, so the calls
 * for [0, k) and [k, n_layer) of one batch give the logits of
 * qf_fwd_decode bit for bit; qf_fwd_decode(f, b, err) is
 * qf_fwd_decode_range(f, b, 0, n_layer, true, NULL, err).
 * Logits as after qf_fwd_decode when head; none (qf_fwd_n_logits = 0)
 * otherwise. Errors: those of qf_fwd_decode; QF_ERR_INVALID for a bad
 * range or a missing x_io. */
qf_status qf_fwd_decode_range(qf_fwd *f, const qf_batch *b, int32_t l0, int32_t l1, bool head, float *x_io,
                              qf_err *err);

/* Scratch bytes qf_fwd_new allocates for these sizes (for memory plans). */
size_t qf_fwd_scratch_bytes(const qf_model *m, int32_t n_batch_max, int32_t n_ctx_max,
                            int n_threads);

#endif
