/* backend_int.h - what a device backend implements (CUDA now, Metal later).
 *
 * backend.c holds everything that does not depend on the device: batch
 * validation, kv preparation and copy-on-write detection, the packing of a
 * step's description, embedding rows. A device supplies a qf_dev_ops table
 * (its functions below) and sees a step only as the packed buffer laid out
 * by qf_step_layout_get: one copy in, the device runs every layer, logits
 * come back into host memory it owns.
 *
 * A device buffer of a step (all int32 unless noted, offsets in bytes from
 * the start, each 16-byte aligned):
 *   tok    (n_tok, 4)  {pos, table offset, sink_end, t0}: the token attends
 *                      to positions [0, sink_end) and [t0, pos]; its
 *                      sequence's block table starts at tables[table offset]
 *   out    (n_out)     batch index of each logits row, in order
 *   x      (n_tok, n_embd) float: embedding rows, or with a partial
 *                      offload the hidden states entering the device's
 *                      first layer (computed by the CPU)
 *   tables (n_tab)     block tables of the batch's sequences, concatenated
 * The offsets depend only on n_tok, n_out and n_embd, so a captured launch
 * sequence (CUDA graph) can be replayed for every step of the same shape.
 */
#ifndef QF_BACKEND_INT_H
#define QF_BACKEND_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "kv/kv.h"
#include "model/model.h"

typedef struct qf_step_layout {
    size_t off_tok, off_out, off_x, off_tab, bytes;
} qf_step_layout;

static inline size_t qf_step_align16(size_t n) { return (n + 15) & ~(size_t)15; }

static inline void qf_step_layout_get(int32_t n_tok, int32_t n_out, int32_t n_embd, int32_t n_tab,
                                      qf_step_layout *l) {
    l->off_tok = 0;
    l->off_out = qf_step_align16(l->off_tok + (size_t)n_tok * 4 * sizeof(int32_t));
    l->off_x = qf_step_align16(l->off_out + (size_t)n_out * sizeof(int32_t));
    l->off_tab = qf_step_align16(l->off_x + (size_t)n_tok * (size_t)n_embd * sizeof(float));
    l->bytes = qf_step_align16(l->off_tab + (size_t)n_tab * sizeof(int32_t));
}

/* One step as the device sees it. */
typedef struct qf_step {
    int32_t n_tok, n_out, n_tab;
    int32_t max_attend;  /* most positions a token of this step attends to */
    bool one_per_seq;    /* no sequence has two tokens in this step */
    const void *buf;     /* the packed buffer (qf_step_layout_get), from ops->staging */
    size_t bytes;
} qf_step;

/* Device configuration handed to ops->open. */
typedef struct qf_dev_config {
    qf_kv_params kv;         /* geometry of the host kv (the device pool mirrors it) */
    int32_t n_batch_max;     /* most tokens per step */
    int32_t n_ctx_max;       /* most positions attended by one token */
    int32_t layer0;          /* first layer on the device: it runs layers [layer0, n_layer) and the
                                output head; layer0 > 0 (partial offload): the x rows of a step are
                                the hidden states entering layer0, not embeddings, and the device
                                needs weights and kv only for its layers */
} qf_dev_config;

typedef struct qf_dev qf_dev;

typedef struct qf_dev_ops {
    const char *name;
    /* device present? name out (may be NULL) */
    bool (*probe)(char *name, size_t cap);
    /* upload the weights, allocate the kv pool and scratch */
    qf_dev *(*open)(const qf_model *m, const qf_dev_config *cfg, qf_err *err);
    void (*close)(qf_dev *d);
    /* host buffer (pinned where the device has such a thing) of at least
     * bytes, reused across steps; NULL when it cannot grow */
    void *(*staging)(qf_dev *d, size_t bytes);
    /* copy kv blocks pairs[2i] -> pairs[2i+1] (all layers), ordered before
     * the next step; pairs are applied in order */
    qf_status (*copy_blocks)(qf_dev *d, const int32_t *pairs, int32_t n_pairs, qf_err *err);
    /* run one step; afterwards logits(d) holds (n_out, n_vocab) floats */
    qf_status (*step)(qf_dev *d, const qf_step *s, qf_err *err);
    const float *(*logits)(const qf_dev *d);
    void (*mem)(const qf_dev *d, size_t *weights, size_t *kv, size_t *scratch);
    size_t (*step_weight_bytes)(const qf_dev *d);
    /* free and total memory of the device probe picks (false: unknown) */
    bool (*mem_info)(size_t *free_b, size_t *total_b);
    /* device bytes weight w would take once uploaded (in its format there) */
    size_t (*weight_bytes)(const qf_weight *w);
} qf_dev_ops;

#ifdef QF_HAVE_CUDA
extern const qf_dev_ops qf_dev_cuda_ops;
#endif

#endif
