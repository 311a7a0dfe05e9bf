/* backend.c - the device-independent half of the GPU forward pass.
 *
 * A decode call does here what does not need the device: it validates the
 * batch exactly as qf_fwd_decode does, prepares every sequence's written
 * range on the host kv and detects the copy-on-write copies that prepare
 * made, packs the step (per-token positions and attention segments, the
 * block tables of the batch's sequences, the embedding rows decoded from
 * the model's mapping) into the device's staging buffer, then hands it to
 * the device's step function.
 *
 * Partial offload (cpu_layers > 0): the embedding rows are replaced by
 * the hidden states after the CPU's layers [0, cpu_layers), which the
 * attached qf_fwd writes straight into the step buffer (after this file
 * prepared the kv, so the CPU's own prepare finds nothing to copy and
 * every copy-on-write copy is seen here and mirrored on the device).
 *
 * Copy-on-write detection: qf_kv_seq_prepare only ever replaces an
 * existing table entry when that block was shared (it copies the block on
 * the host and swaps in the copy); every other change appends entries.
 * So an entry i < (old table length) whose id changed from a valid block
 * is exactly a copy old -> new, which the device must mirror. The source
 * block stays referenced by the other owner, and the device copies run
 * before any write of the step, so the source still holds what the host
 * copied.
 */
#include "backend/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend_int.h"
#include "base/log.h"
#include "base/mem.h"

static const qf_dev_ops *const k_devs[] = {
#ifdef QF_HAVE_CUDA
    &qf_dev_cuda_ops,
#endif
    NULL,
};

struct qf_gpu_fwd {
    const qf_model *m;
    const qf_dev_ops *ops;
    int32_t cpu_layers; /* layers [0, cpu_layers) run on the CPU (partial offload) */
    qf_fwd *cpu;        /* their forward pass (borrowed), NULL until set */
    qf_dev *dev;
    qf_kv_params kp;
    int32_t n_batch_max, n_ctx_max;
    int32_t n_logits;
    int32_t *seq_slot;  /* (n_seq_max) index into seqs of a sequence in this batch, -1 if absent */
    int32_t *seqs;      /* (n_batch_max) distinct sequences of the batch */
    int32_t *seq_lo, *seq_hi, *seq_tab; /* (n_batch_max) range written, table offset */
    int32_t *old_tab;   /* (cap_old) a table before prepare */
    int32_t cap_old;
    int32_t *pairs;     /* (cap_pairs) copy-on-write copies, src/dst pairs */
    int32_t cap_pairs;
};

static const qf_dev_ops *pick_device(char *name, size_t cap) {
    for (size_t i = 0; k_devs[i]; i++)
        if (k_devs[i]->probe(name, cap)) return k_devs[i];
    return NULL;
}

bool qf_gpu_available(char *name, size_t cap) {
    if (name && cap) name[0] = 0;
    return pick_device(name, cap) != NULL;
}

const char *qf_gpu_backend_name(void) { return k_devs[0] ? k_devs[0]->name : "none"; }

qf_gpu_fwd *qf_gpu_fwd_new(const qf_model *m, const qf_kv_params *kp, int32_t n_batch_max, int32_t n_ctx_max,
                           int32_t n_gpu_layers, qf_err *err) {
    const qf_hparams *hp = &m->hp;
    const qf_dev_ops *ops = pick_device(NULL, 0);
    if (!ops) {
        QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "gpu: no device (backend %s)", qf_gpu_backend_name());
        return NULL;
    }
    if (n_gpu_layers == 0 || n_gpu_layers < -1) {
        QF_ERR_SET(err, QF_ERR_INVALID, "gpu: %d of %d layers requested (-1 = all, 1..%d the last ones)",
                   n_gpu_layers, hp->n_layer, hp->n_layer);
        return NULL;
    }
    if (n_batch_max <= 0 || n_ctx_max <= 0 || kp->n_layer != hp->n_layer ||
        kp->kv_dim != hp->n_head_kv * hp->head_dim || kp->kv_dim_v != hp->n_head_kv * hp->head_dim_v ||
        kp->block_size <= 0 || kp->n_blocks <= 0 || kp->n_seq_max <= 0) {
        QF_ERR_SET(err, QF_ERR_INVALID, "gpu: batch %d / context %d / kv cache shape do not fit the model", n_batch_max,
                   n_ctx_max);
        return NULL;
    }
    qf_gpu_fwd *f = qf_calloc(1, sizeof *f);
    if (!f) goto nomem;
    f->m = m;
    f->ops = ops;
    f->cpu_layers = n_gpu_layers > 0 && n_gpu_layers < hp->n_layer ? hp->n_layer - n_gpu_layers : 0;
    f->kp = *kp;
    f->n_batch_max = n_batch_max;
    f->n_ctx_max = n_ctx_max;
    f->seq_slot = qf_malloc((size_t)kp->n_seq_max * sizeof *f->seq_slot);
    f->seqs = qf_malloc((size_t)n_batch_max * sizeof *f->seqs);
    f->seq_lo = qf_malloc((size_t)n_batch_max * sizeof *f->seq_lo);
    f->seq_hi = qf_malloc((size_t)n_batch_max * sizeof *f->seq_hi);
    f->seq_tab = qf_malloc((size_t)n_batch_max * sizeof *f->seq_tab);
    if (!f->seq_slot || !f->seqs || !f->seq_lo || !f->seq_hi || !f->seq_tab) goto nomem;
    for (int32_t s = 0; s < kp->n_seq_max; s++) f->seq_slot[s] = -1;
    qf_dev_config cfg = {*kp, n_batch_max, n_ctx_max, f->cpu_layers};
    f->dev = ops->open(m, &cfg, err);
    if (!f->dev) {
        qf_gpu_fwd_free(f);
        return NULL;
    }
    return f;
nomem:
    qf_gpu_fwd_free(f);
    QF_ERR_SET(err, QF_ERR_NOMEM, "gpu: out of host memory for the batch tables");
    return NULL;
}

void qf_gpu_fwd_free(qf_gpu_fwd *f) {
    if (!f) return;
    if (f->dev) f->ops->close(f->dev);
    qf_free(f->seq_slot);
    qf_free(f->seqs);
    qf_free(f->seq_lo);
    qf_free(f->seq_hi);
    qf_free(f->seq_tab);
    qf_free(f->old_tab);
    qf_free(f->pairs);
    qf_free(f);
}

static bool grow(int32_t **p, int32_t *cap, int64_t need) {
    if (need <= *cap) return true;
    int64_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    if (c > INT32_MAX) return false;
    int32_t *n = qf_realloc(*p, (size_t)c * sizeof *n);
    if (!n) return false;
    *p = n;
    *cap = (int32_t)c;
    return true;
}

/* Attention segments of a token (what attn_region of model/forward.c
 * attends to): [0, sink_end) and [t0, pos]. */
static void segments(const qf_gpu_fwd *f, const qf_kv *kv, int32_t seq, int32_t pos, int32_t *sink_end, int32_t *t0) {
    int32_t window, n_sink;
    qf_kv_seq_get_window(kv, seq, &window, &n_sink);
    if (!window && f->m->hp.swa_window > 0) window = f->m->hp.swa_window, n_sink = 0;
    int32_t t = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
    if (t <= n_sink) t = 0, n_sink = 0;
    *sink_end = n_sink;
    *t0 = t;
}

/* The checks of qf_fwd_decode, same codes and messages. */
static qf_status check_batch(const qf_gpu_fwd *f, const qf_kv *kv, const qf_batch *b, qf_err *err) {
    const qf_kv_params *kp = qf_kv_get_params(kv);
    if (kp->n_layer != f->kp.n_layer || kp->kv_dim != f->kp.kv_dim || kp->kv_dim_v != f->kp.kv_dim_v ||
        kp->block_size != f->kp.block_size || kp->n_blocks != f->kp.n_blocks || kp->n_seq_max != f->kp.n_seq_max)
        return QF_ERR_SET(err, QF_ERR_INVALID, "gpu: the kv cache is not the one this forward pass was made for");
    if (!b || b->n <= 0 || b->n > f->n_batch_max || !b->tok || !b->pos || !b->seq)
        return QF_ERR_SET(err, QF_ERR_INVALID, "batch of %d tokens (1..%d allowed)", b ? b->n : 0, f->n_batch_max);
    for (int32_t i = 0; i < b->n; i++) {
        if (b->tok[i] < 0 || b->tok[i] >= f->m->hp.n_vocab)
            return QF_ERR_SET(err, QF_ERR_INVALID, "token %d at batch index %d is outside the vocabulary (%d)",
                              b->tok[i], i, f->m->hp.n_vocab);
        if (b->seq[i] < 0 || b->seq[i] >= kp->n_seq_max)
            return QF_ERR_SET(err, QF_ERR_INVALID, "sequence id %d outside 0..%d", b->seq[i], kp->n_seq_max - 1);
        int32_t window = 0, n_sink = 0;
        qf_kv_seq_get_window(kv, b->seq[i], &window, &n_sink);
        int64_t attended = window > 0 && b->pos[i] + 1 > window + n_sink ? window + n_sink : (int64_t)b->pos[i] + 1;
        if (b->pos[i] < 0 || attended > f->n_ctx_max || b->pos[i] >= INT32_MAX / 2)
            return QF_ERR_SET(err, QF_ERR_RANGE, "position %d is beyond the context of %d tokens", b->pos[i],
                              f->n_ctx_max);
    }
    return QF_OK;
}

/* Prepare each distinct sequence's range; collect copy-on-write pairs and
 * send them to the device even when a later prepare fails (the host copies
 * already happened). */
static qf_status prepare_all(qf_gpu_fwd *f, qf_kv *kv, int32_t n_seq, qf_err *err) {
    int32_t n_pairs = 0;
    qf_status st = QF_OK;
    for (int32_t k = 0; k < n_seq && st == QF_OK; k++) {
        int32_t s = f->seqs[k], n_old;
        const int32_t *t = qf_kv_seq_table(kv, s, &n_old);
        if (!grow(&f->old_tab, &f->cap_old, n_old)) {
            st = QF_ERR_SET(err, QF_ERR_NOMEM, "gpu: out of host memory for a block table");
            break;
        }
        if (n_old) memcpy(f->old_tab, t, (size_t)n_old * sizeof *t);
        st = qf_kv_seq_prepare(kv, s, f->seq_lo[k], f->seq_hi[k] + 1, err);
        int32_t n_new;
        t = qf_kv_seq_table(kv, s, &n_new);
        int32_t lim = n_old < n_new ? n_old : n_new;
        for (int32_t i = 0; i < lim; i++) {
            if (f->old_tab[i] < 0 || t[i] == f->old_tab[i]) continue;
            if (!grow(&f->pairs, &f->cap_pairs, 2 * (int64_t)n_pairs + 2)) {
                st = QF_ERR_SET(err, QF_ERR_NOMEM, "gpu: out of host memory for block copies");
                break;
            }
            f->pairs[2 * n_pairs] = f->old_tab[i];
            f->pairs[2 * n_pairs + 1] = t[i];
            n_pairs++;
        }
    }
    if (n_pairs) {
        qf_err e2 = {0};
        qf_status cs = f->ops->copy_blocks(f->dev, f->pairs, n_pairs, &e2);
        if (cs != QF_OK) {
            if (err) *err = e2;
            return cs;
        }
    }
    return st;
}

int32_t qf_gpu_fwd_cpu_layers(const qf_gpu_fwd *f) { return f->cpu_layers; }

void qf_gpu_fwd_set_cpu(qf_gpu_fwd *f, qf_fwd *cpu) { f->cpu = cpu; }

qf_status qf_gpu_fwd_decode(qf_gpu_fwd *f, qf_kv *kv, const qf_batch *b, qf_err *err) {
    f->n_logits = 0;
    if (f->cpu_layers > 0 && !f->cpu)
        return QF_ERR_SET(err, QF_ERR_INVALID, "gpu: partial offload (%d of %d layers on the CPU) without a CPU "
                                               "forward pass (qf_gpu_fwd_set_cpu)",
                          f->cpu_layers, f->m->hp.n_layer);
    qf_status st = check_batch(f, kv, b, err);
    if (st != QF_OK) return st;
    const qf_model *m = f->m;
    const qf_hparams *hp = &m->hp;
    int32_t n = b->n, n_seq = 0, n_out = 0, max_attend = 0;

    for (int32_t i = 0; i < n; i++) {
        int32_t s = b->seq[i], k = f->seq_slot[s];
        if (k < 0) {
            k = f->seq_slot[s] = n_seq++;
            f->seqs[k] = s;
            f->seq_lo[k] = f->seq_hi[k] = b->pos[i];
        } else {
            if (b->pos[i] < f->seq_lo[k]) f->seq_lo[k] = b->pos[i];
            if (b->pos[i] > f->seq_hi[k]) f->seq_hi[k] = b->pos[i];
        }
        if (b->logits && b->logits[i]) n_out++;
    }
    st = prepare_all(f, kv, n_seq, err);
    int64_t n_tab = 0;
    for (int32_t k = 0; k < n_seq && st == QF_OK; k++) {
        int32_t nt;
        qf_kv_seq_table(kv, f->seqs[k], &nt);
        f->seq_tab[k] = (int32_t)n_tab;
        n_tab += nt;
    }
    if (st == QF_OK && n_tab > INT32_MAX / 4) st = QF_ERR_SET(err, QF_ERR_RANGE, "gpu: block tables too large");

    void *buf = NULL;
    qf_step_layout L;
    if (st == QF_OK) {
        qf_step_layout_get(n, n_out, hp->n_embd, (int32_t)n_tab, &L);
        buf = f->ops->staging(f->dev, L.bytes);
        if (!buf) st = QF_ERR_SET(err, QF_ERR_NOMEM, "gpu: cannot grow the step buffer to %zu bytes", L.bytes);
    }
    if (st != QF_OK) {
        for (int32_t k = 0; k < n_seq; k++) f->seq_slot[f->seqs[k]] = -1;
        return st;
    }

    uint8_t *base = buf;
    int32_t *tok = (int32_t *)(base + L.off_tok), *out = (int32_t *)(base + L.off_out);
    float *x = (float *)(base + L.off_x);
    int32_t *tab = (int32_t *)(base + L.off_tab);
    const qf_type_traits *et = qf_type_get(m->tok_embd.type);
    for (int32_t i = 0, j = 0; i < n; i++) {
        int32_t k = f->seq_slot[b->seq[i]], sink_end, t0;
        segments(f, kv, b->seq[i], b->pos[i], &sink_end, &t0);
        tok[4 * i] = b->pos[i];
        tok[4 * i + 1] = f->seq_tab[k];
        tok[4 * i + 2] = sink_end;
        tok[4 * i + 3] = t0;
        int32_t att = sink_end + b->pos[i] - t0 + 1;
        if (att > max_attend) max_attend = att;
        if (b->logits && b->logits[i]) out[j++] = i;
        if (!f->cpu_layers)
            et->to_float((const uint8_t *)m->tok_embd.data + (size_t)b->tok[i] * m->tok_embd.row_bytes,
                         x + (size_t)i * hp->n_embd, hp->n_embd);
    }
    for (int32_t k = 0; k < n_seq; k++) {
        int32_t nt;
        const int32_t *t = qf_kv_seq_table(kv, f->seqs[k], &nt);
        if (nt) memcpy(tab + f->seq_tab[k], t, (size_t)nt * sizeof *t);
        f->seq_slot[f->seqs[k]] = -1;
    }
    /* partial offload: the CPU's layers, their output straight into the step buffer */
    if (f->cpu_layers) st = qf_fwd_decode_range(f->cpu, b, 0, f->cpu_layers, false, x, err);
    if (st != QF_OK) return st;
    qf_step s = {n, n_out, (int32_t)n_tab, max_attend, n_seq == n, buf, L.bytes};
    st = f->ops->step(f->dev, &s, err);
    if (st == QF_OK) f->n_logits = n_out;
    return st;
}

const float *qf_gpu_fwd_logits(const qf_gpu_fwd *f, int32_t j) {
    if (j < 0 || j >= f->n_logits) return NULL;
    return f->ops->logits(f->dev) + (size_t)j * f->m->hp.n_vocab;
}

int32_t qf_gpu_fwd_n_logits(const qf_gpu_fwd *f) { return f->n_logits; }

qf_status qf_gpu_fwd_copy_block(qf_gpu_fwd *f, int32_t src, int32_t dst, qf_err *err) {
    if (src < 0 || dst < 0 || src >= f->kp.n_blocks || dst >= f->kp.n_blocks)
        return QF_ERR_SET(err, QF_ERR_INVALID, "gpu: kv block copy %d -> %d outside the pool of %lld", src, dst,
                          (long long)f->kp.n_blocks);
    if (src == dst) return QF_OK;
    int32_t p[2] = {src, dst};
    return f->ops->copy_blocks(f->dev, p, 1, err);
}

void qf_gpu_fwd_mem(const qf_gpu_fwd *f, qf_gpu_mem *out) {
    memset(out, 0, sizeof *out);
    f->ops->mem(f->dev, &out->weights, &out->kv, &out->scratch);
}

size_t qf_gpu_fwd_step_weight_bytes(const qf_gpu_fwd *f) { return f->ops->step_weight_bytes(f->dev); }

/* ---- choosing between the CPU and the GPU ---- */

int32_t qf_gpu_layers_env(void) {
    const char *s = getenv("QFORGE_GPU_LAYERS");
    if (!s || !*s) return k_devs[0] ? QF_GPU_LAYERS_AUTO : 0;
    if (!strcmp(s, "auto")) return QF_GPU_LAYERS_AUTO;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < -1 || v > INT32_MAX) {
        static int warned;
        if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
            qf_warn("QFORGE_GPU_LAYERS='%s' is not a layer count (-1 = all, 0 = none) or auto; using 0 (CPU)", s);
        return 0;
    }
    return (int32_t)v;
}

int32_t qf_gpu_fit_layers(size_t free_b, size_t reserve, size_t fixed, size_t per_layer, int32_t n_layer) {
    if (n_layer <= 0 || free_b <= reserve || free_b - reserve <= fixed) return 0;
    size_t room = free_b - reserve - fixed;
    if (per_layer == 0 || room / per_layer >= (size_t)n_layer) return -1;
    return (int32_t)(room / per_layer);
}

/* Device memory one layer takes (weights, norms, its share of the kv pool)
 * and the rest (output head, step buffers: activations of the largest
 * batch, its logits), as the device would lay them out. */
static void layer_bytes(const qf_dev_ops *ops, const qf_model *m, const qf_kv_params *kp, int32_t n_batch_max,
                        size_t *per_layer, size_t *fixed) {
    const qf_hparams *hp = &m->hp;
    size_t w = 0;
    for (int32_t l = 0; l < hp->n_layer; l++) {
        const qf_layer *L = &m->layers[l];
        const qf_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) w += ops->weight_bytes(ws[i]);
    }
    size_t kv_layer = qf_kv_pool_bytes(kp) / (size_t)(kp->n_layer > 0 ? kp->n_layer : 1);
    *per_layer = w / (size_t)hp->n_layer + kv_layer + 4 * (size_t)hp->n_embd * sizeof(float);
    size_t qkv = (size_t)hp->n_head * hp->head_dim + 2 * (size_t)hp->n_head_kv * hp->head_dim;
    size_t act = (size_t)n_batch_max * (hp->n_vocab + 3 * (size_t)hp->n_ff + 8 * (size_t)hp->n_embd + qkv);
    *fixed = ops->weight_bytes(&m->output) + 2 * act * sizeof(float);
}

/* QFORGE_GPU_MEM_MIB: the device memory auto may plan with (a GPU shared
 * with other programs); 0 when unset or malformed (warned once). */
static size_t mem_cap_env(void) {
    const char *s = getenv("QFORGE_GPU_MEM_MIB");
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 1 || v > ((long long)1 << 40)) {
        static int warned;
        if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
            qf_warn("QFORGE_GPU_MEM_MIB='%s' is not a size in MiB; ignored", s);
        return 0;
    }
    return (size_t)v << 20;
}

bool qf_gpu_auto_sizes(const qf_model *m, const qf_kv_params *kp, int32_t n_batch_max, qf_gpu_sizes *out) {
    memset(out, 0, sizeof *out);
    const qf_dev_ops *ops = pick_device(NULL, 0);
    size_t fr = 0, tot = 0;
    if (!ops || !ops->mem_info(&fr, &tot)) return false;
    const size_t cap = mem_cap_env();
    if (cap && cap < tot) tot = cap, fr = fr < cap ? fr : cap;
    layer_bytes(ops, m, kp, n_batch_max, &out->per_layer, &out->fixed);
    /* the context, cuBLAS workspaces, graphs and fragmentation: 5% of the
     * device (or of the cap) and 256 MiB */
    out->reserve = tot / 20 + ((size_t)256 << 20);
    out->free = fr;
    return true;
}

/* --gpu-layers auto: the count that fits (qf_gpu_fit_layers), 0 without a
 * device or its memory figures; need / have: the estimate with every layer
 * and the memory planned with, for the log. */
static int32_t auto_layers(const qf_model *m, const qf_kv_params *kp, int32_t n_batch_max, size_t *need,
                           size_t *have) {
    qf_gpu_sizes z;
    *need = *have = 0;
    if (!qf_gpu_auto_sizes(m, kp, n_batch_max, &z)) return 0;
    *need = z.per_layer * (size_t)m->hp.n_layer + z.fixed + z.reserve, *have = z.free;
    return qf_gpu_fit_layers(z.free, z.reserve, z.fixed, z.per_layer, m->hp.n_layer);
}

qf_gpu_fwd *qf_gpu_fwd_try_new(const qf_model *m, const qf_kv_params *kp, int32_t n_batch_max, int32_t n_ctx_max,
                               int32_t n_gpu_layers) {
    if (n_gpu_layers == 0) return NULL;
    int32_t nl = m->hp.n_layer;
    char name[256];
    const bool aut = n_gpu_layers == QF_GPU_LAYERS_AUTO;
    if (aut) {
        const qf_dev_ops *ops = pick_device(name, sizeof name);
        if (!ops) {
            qf_debug("gpu: auto: %s; running on the CPU",
                     k_devs[0] ? "no usable GPU found" : "this build has no GPU backend");
            return NULL;
        }
        size_t need, have;
        n_gpu_layers = auto_layers(m, kp, n_batch_max, &need, &have);
        if (n_gpu_layers == 0) {
            qf_info("gpu: %s: %s needs about %.0f MiB with every layer, %.0f MiB free: not one layer fits; running on "
                    "the CPU",
                    name, m->name, need / 1048576.0, have / 1048576.0);
            return NULL;
        }
        if (n_gpu_layers > 0)
            qf_info("gpu: %s: %s needs about %.0f MiB with every layer, %.0f MiB free: offloading the last %d of %d "
                    "layers (--gpu-layers to choose)",
                    name, m->name, need / 1048576.0, have / 1048576.0, n_gpu_layers, nl);
    }
    if (n_gpu_layers < -1) {
        qf_warn("--gpu-layers %d: not a layer count (-1 = all); running on the CPU", n_gpu_layers);
        return NULL;
    }
    if (!k_devs[0]) {
        qf_warn("--gpu-layers %d: this build has no GPU backend (configure with -DQF_CUDA=ON); running on the CPU",
                n_gpu_layers);
        return NULL;
    }
    if (!qf_gpu_available(name, sizeof name)) {
        qf_warn("--gpu-layers %d: no usable GPU found (%s backend, compute capability 8.0 or newer needed); "
                "running on the CPU",
                n_gpu_layers, qf_gpu_backend_name());
        return NULL;
    }
    qf_err e = {0};
    qf_gpu_fwd *f = qf_gpu_fwd_new(m, kp, n_batch_max, n_ctx_max, n_gpu_layers >= nl ? -1 : n_gpu_layers, &e);
    /* auto: the estimate was short (another process took memory): fewer layers */
    while (!f && aut && e.code == QF_ERR_NOMEM && n_gpu_layers != 1) {
        n_gpu_layers = (n_gpu_layers < 0 ? nl : n_gpu_layers) * 3 / 4;
        if (n_gpu_layers < 1) n_gpu_layers = 1;
        qf_info("gpu: auto: %s; trying %d layers", e.msg, n_gpu_layers);
        f = qf_gpu_fwd_new(m, kp, n_batch_max, n_ctx_max, n_gpu_layers, &e);
    }
    if (!f) {
        if (aut) qf_info("gpu: auto: %s cannot take %s: %s; running on the CPU", name, m->name, e.msg);
        else qf_warn("--gpu-layers %d: %s cannot take %s: %s; running on the CPU", n_gpu_layers, name, m->name, e.msg);
        return NULL;
    }
    qf_gpu_mem mem;
    qf_gpu_fwd_mem(f, &mem);
    qf_info("gpu: %s (%s): %d of %d layers (%d..%d) and the output head offloaded%s; device memory: weights %.1f "
            "MiB, kv cache %.1f MiB, scratch %.1f MiB",
            name, qf_gpu_backend_name(), nl - f->cpu_layers, nl, f->cpu_layers, nl - 1,
            f->cpu_layers ? ", the first ones run on the CPU" : "", mem.weights / 1048576.0, mem.kv / 1048576.0,
            mem.scratch / 1048576.0);
    return f;
}
