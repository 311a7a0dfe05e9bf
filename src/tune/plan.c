/* plan.c - memory pools, threads, slots and batch for a machine and model.
 *
 * The kv cache and buffer bytes are not computed here: a stub qf_model
 * carrying only the hyperparameters and weight bytes goes through
 * qf_engine_plan with an unlimited budget, so the plan and the engine's own
 * admission check can never disagree about what a configuration costs
 * (qf_engine_plan reads nothing of the model but hp and weight_bytes).
 *
 * Order of decisions: where the pools live (device when a discrete GPU with
 * a known memory size holds them, else host), then the slot count (given,
 * or the largest that fits under the cap, searching down from the cap),
 * then the shares and reasons. Invariant: mem[] sums to mem_total when the
 * plan fits (free is what is left); when it does not, free is 0 and need >
 * mem_total or kv + buffers > mem_available.
 */
#include "tune/plan.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "engine/engine.h"
#include "tune/tune_int.h"

#define QF_PLAN_MAX_SLOTS 256 /* the engine's own cap (engine.c fill_defaults) */

void qf_tune_model_from(const qf_model *m, qf_tune_model *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", m->name);
    out->weight_bytes = m->weight_bytes;
    out->hp = m->hp;
}

qf_plan_params qf_plan_params_default(void) {
    qf_plan_params p;
    memset(&p, 0, sizeof p);
    p.kv_type = QF_TYPE_F16;
    return p;
}

const char *qf_plan_pool_name(qf_plan_pool p) {
    static const char *names[] = {"weights", "kv_cache", "buffers", "reserve", "free"};
    return (unsigned)p < QF_PLAN_POOLS ? names[p] : "?";
}

/* "4.50 GiB", "512.0 MiB", "16.0 KiB" */
static const char *fmt_size(size_t b, char *buf, size_t cap) {
    if (b >= ((size_t)1 << 30))
        snprintf(buf, cap, "%.2f GiB", b / QF_GIB);
    else if (b >= ((size_t)1 << 20))
        snprintf(buf, cap, "%.1f MiB", b / QF_MIB);
    else
        snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    return buf;
}

/* GiB with one decimal, two below 1 GiB (refusal messages). */
static const char *fmt_gib(size_t b, char *buf, size_t cap) {
    snprintf(buf, cap, b < ((size_t)1 << 30) ? "%.2f" : "%.1f", b / QF_GIB);
    return buf;
}

static size_t host_reserve(size_t total) {
    size_t r = total / 8, lo = (size_t)1 << 30, hi = (size_t)16 << 30;
    if (r < lo) r = lo;
    if (r > hi) r = hi;
    if (r > total / 2) r = total / 2; /* tiny machines: still leave half to plan with */
    return r;
}

static size_t device_reserve(size_t total) {
    size_t r = total / 20, lo = (size_t)512 << 20;
    if (r < lo) r = lo;
    if (r > total / 2) r = total / 2;
    return r;
}

/* kv cache and scratch bytes of a configuration, by the engine's arithmetic. */
static qf_status engine_bytes(const qf_tune_model *m, int32_t ctx, int32_t slots, int32_t batch,
                              int threads, qf_type kv_type, size_t *kv, size_t *scratch,
                              qf_err *err) {
    qf_model stub;
    memset(&stub, 0, sizeof stub);
    stub.hp = m->hp;
    stub.weight_bytes = m->weight_bytes;
    qf_engine_params ep = qf_engine_params_default();
    ep.n_ctx = ctx;
    ep.n_parallel = slots;
    ep.n_batch = batch;
    ep.n_threads = threads;
    ep.kv_type = kv_type;
    ep.kv_tokens = (int64_t)ctx * slots;
    ep.mem_budget = SIZE_MAX / 4; /* never the binding limit: the plan applies its own */
    qf_mem_plan mp;
    qf_status st = qf_engine_plan(&stub, &ep, &mp, err);
    if (st != QF_OK) return st;
    *kv = mp.kv;
    *scratch = mp.scratch;
    return QF_OK;
}

/* ---- the plan ---- */

typedef struct where {
    bool device;  /* pools in discrete GPU memory */
    bool gpu_fwd; /* forward pass on a GPU (discrete or unified) */
    size_t total, available, reserve;
} where;

static void plan_threads(const qf_hw *hw, const qf_plan_params *p, bool gpu_fwd, qf_plan *out) {
    if (p->n_threads > 0) {
        out->threads = p->n_threads;
        snprintf(out->threads_reason, sizeof out->threads_reason, "as asked (--threads %d)",
                 p->n_threads);
    } else if (gpu_fwd) {
        out->threads = hw->n_perf < 4 ? hw->n_perf : 4;
        snprintf(out->threads_reason, sizeof out->threads_reason,
                 "the forward pass runs on the GPU; CPU threads only schedule, embed and sample");
    } else {
        out->threads = hw->n_perf;
        if (hw->n_eff > 0)
            snprintf(out->threads_reason, sizeof out->threads_reason,
                     "one per performance core (%d), pinned; efficiency cores left out: every step "
                     "waits for its "
                     "slowest thread",
                     hw->n_perf);
        else
            snprintf(out->threads_reason, sizeof out->threads_reason,
                     "one per physical core (%d), pinned; SMT siblings left out: they share a "
                     "core's load/store "
                     "units and decoding is memory-bound",
                     hw->n_perf);
    }
    if (hw->n_eff > 0) {
        out->io_threads = hw->n_eff < 4 ? hw->n_eff : 4;
        out->io_on_eff = true;
        snprintf(out->io_reason, sizeof out->io_reason,
                 "on the efficiency cores (%d): HTTP, document parsing and the job store do not "
                 "need fast cores",
                 hw->n_eff);
    } else {
        out->io_threads = hw->n_perf > 8 ? 2 : 1;
        snprintf(out->io_reason, sizeof out->io_reason,
                 "shared with the inference cores (no efficiency cores): they mostly wait on "
                 "sockets and disk");
    }
}

/* The pools of one slot count; true when it fits. */
static qf_status try_slots(const qf_tune_model *m, const qf_plan_params *p, const where *w,
                           int32_t slots, qf_plan *out, bool *fits, qf_err *err) {
    int32_t batch = p->n_batch > 0 ? p->n_batch : (w->gpu_fwd ? 2048 : 512);
    if (batch < slots) batch = slots; /* every running sequence decodes one token per step */
    size_t kv, scratch;
    qf_status st =
        engine_bytes(m, out->n_ctx, slots, batch, out->threads, p->kv_type, &kv, &scratch, err);
    if (st != QF_OK) return st;
    out->n_parallel = slots;
    out->n_batch = batch;
    out->mem_total = w->total;
    out->mem_available = w->available;
    out->mem[QF_PLAN_WEIGHTS].bytes = m->weight_bytes;
    out->mem[QF_PLAN_KV].bytes = kv;
    out->mem[QF_PLAN_BUFFERS].bytes = scratch;
    out->mem[QF_PLAN_RESERVE].bytes = w->reserve;
    out->need = m->weight_bytes + kv + scratch + w->reserve;
    *fits = out->need <= w->total && (w->device || !w->available || kv + scratch <= w->available);
    out->mem[QF_PLAN_FREE].bytes = *fits ? w->total - out->need : 0;
    return QF_OK;
}

/* Choose the slot count (given or auto) in w; *fits tells whether it fit. */
static qf_status choose_slots(const qf_hw *hw, const qf_tune_model *m, const qf_plan_params *p,
                              const where *w, qf_plan *out, bool *fits, qf_err *err) {
    qf_status st;
    if (p->n_parallel > 0) {
        out->parallel_auto = false;
        snprintf(out->parallel_reason, sizeof out->parallel_reason, "as asked (--parallel %d)",
                 p->n_parallel);
        return try_slots(m, p, w, p->n_parallel, out, fits, err);
    }
    out->parallel_auto = true;
    int32_t cap = p->max_parallel;
    if (cap <= 0) {
        cap = w->gpu_fwd ? 64 : 4 * hw->n_perf;
        if (cap < 4) cap = 4;
        if (cap > 64) cap = 64;
    }
    if (cap > QF_PLAN_MAX_SLOTS) cap = QF_PLAN_MAX_SLOTS;
    for (int32_t s = cap; s >= 1; s--) {
        if ((st = try_slots(m, p, w, s, out, fits, err)) != QF_OK) return st;
        if (!*fits) continue;
        char b1[32];
        if (s == cap && p->max_parallel > 0)
            snprintf(out->parallel_reason, sizeof out->parallel_reason, "the cap asked for (%d)",
                     cap);
        else if (s == cap && w->gpu_fwd)
            snprintf(out->parallel_reason, sizeof out->parallel_reason,
                     "the cap on a GPU (64): more slots add latency for little throughput");
        else if (s == cap)
            snprintf(out->parallel_reason, sizeof out->parallel_reason,
                     "the cap on the CPU, 4 per performance core (%d cores, within 4..64): more "
                     "slots share each weight read and raise aggregate tokens/s but slow every "
                     "sequence; --autotune measures where it stops paying",
                     hw->n_perf);
        else
            snprintf(out->parallel_reason, sizeof out->parallel_reason,
                     "the most that fit: each slot holds %d tokens of kv cache (%s); %d slots "
                     "would not fit",
                     out->n_ctx,
                     fmt_size(out->kv_bytes_per_token * (size_t)out->n_ctx, b1, sizeof b1), s + 1);
        return QF_OK;
    }
    /* not even one slot: report the one-slot numbers */
    return try_slots(m, p, w, 1, out, fits, err);
}

static void refuse_msg(const qf_tune_model *m, const qf_plan *pl, const char *extra, qf_err *err) {
    char a[16], b[16], c[16], d[16], e[16], f[16];
    size_t kv = pl->mem[QF_PLAN_KV].bytes, buf = pl->mem[QF_PLAN_BUFFERS].bytes;
    if (pl->need > pl->mem_total)
        QF_ERR_SET(err, QF_ERR_RANGE,
                   "%s with %d tokens x %d slots needs %s GiB (weights %s + kv %s + buffers %s + "
                   "reserve %s), have "
                   "%s GiB%s%s; lower --ctx or --parallel, or use --kv-type q8_0",
                   m->name, pl->n_ctx, pl->n_parallel, fmt_gib(pl->need, a, sizeof a),
                   fmt_gib(pl->mem[QF_PLAN_WEIGHTS].bytes, b, sizeof b), fmt_gib(kv, c, sizeof c),
                   fmt_gib(buf, d, sizeof d), fmt_gib(pl->mem[QF_PLAN_RESERVE].bytes, e, sizeof e),
                   fmt_gib(pl->mem_total, f, sizeof f), pl->on_device ? " of GPU memory" : "",
                   extra ? extra : "");
    else
        QF_ERR_SET(err, QF_ERR_RANGE,
                   "%s with %d tokens x %d slots: kv %s + buffers %s = %s GiB must be free now, "
                   "only %s GiB is "
                   "available (of %s GiB)%s; lower --ctx or --parallel, or free memory",
                   m->name, pl->n_ctx, pl->n_parallel, fmt_gib(kv, a, sizeof a),
                   fmt_gib(buf, b, sizeof b), fmt_gib(kv + buf, c, sizeof c),
                   fmt_gib(pl->mem_available, d, sizeof d), fmt_gib(pl->mem_total, e, sizeof e),
                   extra ? extra : "");
}

static void append(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *dst, size_t cap, const char *fmt, ...) {
    size_t n = strlen(dst);
    if (n + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst + n, cap - n, fmt, ap);
    va_end(ap);
}

static void fill_reasons(const qf_hw *hw, const qf_tune_model *m, const qf_plan_params *p,
                         const where *w, qf_plan *out) {
    char b1[32], b2[32];
    qf_plan_mem *mm = out->mem;
    for (int i = 0; i < QF_PLAN_POOLS; i++)
        mm[i].share = out->mem_total ? (double)mm[i].bytes / (double)out->mem_total : 0;
    if (out->has_model) {
        snprintf(mm[QF_PLAN_WEIGHTS].reason, sizeof mm[0].reason, "%s tensors, %s", m->name,
                 w->device
                     ? "uploaded to the device once"
                     : "mapped from the file (pages load on first use; the kernel may drop them)");
        snprintf(mm[QF_PLAN_KV].reason, sizeof mm[0].reason,
                 "%d tokens x %d slots x %s per token (%s keys + values, %d layers)", out->n_ctx,
                 out->n_parallel, fmt_size(out->kv_bytes_per_token, b1, sizeof b1),
                 qf_type_get(p->kv_type) ? qf_type_get(p->kv_type)->name : "?", m->hp.n_layer);
        snprintf(mm[QF_PLAN_BUFFERS].reason, sizeof mm[0].reason,
                 "engine step scratch: %d tokens per step, %d threads, context %d", out->n_batch,
                 out->threads, out->n_ctx);
    }
    if (w->device)
        snprintf(mm[QF_PLAN_RESERVE].reason, sizeof mm[0].reason,
                 "driver and CUDA context: 1/20 of device memory, at least 512 MiB");
    else
        snprintf(mm[QF_PLAN_RESERVE].reason, sizeof mm[0].reason,
                 "the OS, page cache and other programs: 1/8 of memory, 1..16 GiB");
    if (out->fits)
        snprintf(mm[QF_PLAN_FREE].reason, sizeof mm[0].reason, "%s",
                 out->has_model
                     ? "headroom: room for more slots, a longer context or a second model"
                     : "for the weights, kv cache and buffers of a model");
    else
        snprintf(
            mm[QF_PLAN_FREE].reason, sizeof mm[0].reason,
            "none: the plan does not fit (short by %s)",
            fmt_size(out->need > out->mem_total
                         ? out->need - out->mem_total
                         : mm[QF_PLAN_KV].bytes + mm[QF_PLAN_BUFFERS].bytes - out->mem_available,
                     b2, sizeof b2));
    if (!out->has_model) return;
    int32_t train = m->hp.n_ctx_train;
    if (p->n_ctx > 0 && train > 0 && p->n_ctx > train)
        snprintf(out->ctx_reason, sizeof out->ctx_reason,
                 "as asked (--ctx %d), beyond the trained context (%d): quality degrades", p->n_ctx,
                 train);
    else if (p->n_ctx > 0)
        snprintf(out->ctx_reason, sizeof out->ctx_reason, "as asked (--ctx %d)", p->n_ctx);
    else if (train > 0 && train <= 4096)
        snprintf(out->ctx_reason, sizeof out->ctx_reason, "the model's trained context (%d)",
                 train);
    else
        snprintf(out->ctx_reason, sizeof out->ctx_reason,
                 "the engine's default cap (4096; trained %d): pass --ctx for longer documents",
                 train);
    if (p->n_batch > 0 && out->n_batch == p->n_batch)
        snprintf(out->batch_reason, sizeof out->batch_reason, "as asked (--batch %d)", p->n_batch);
    else if (p->n_batch > 0 || out->n_batch > (w->gpu_fwd ? 2048 : 512))
        snprintf(out->batch_reason, sizeof out->batch_reason,
                 "raised to the slot count: every running sequence decodes one token per step");
    else if (w->gpu_fwd)
        snprintf(out->batch_reason, sizeof out->batch_reason,
                 "2048 on a GPU: longer steps spread the kernel launches over more tokens");
    else
        snprintf(out->batch_reason, sizeof out->batch_reason,
                 "512 on the CPU: prompt chunks this long keep the matmuls compute-bound, and "
                 "running sequences "
                 "wait at most one chunk per step");
    (void)hw;
}

qf_status qf_plan_make(const qf_hw *hw, const qf_tune_model *m, const qf_plan_params *p,
                       qf_plan *out, qf_err *err) {
    memset(out, 0, sizeof *out);
    qf_plan_params dp = qf_plan_params_default();
    if (!p) p = &dp;
    out->kv_type = p->kv_type;
    if (hw->n_perf < 1 || hw->mem_total == 0)
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s: no performance cores or no memory size",
                          hw->name);
    if (p->n_ctx < 0 || p->n_ctx > (1 << 24) || p->n_parallel < 0 ||
        p->n_parallel > QF_PLAN_MAX_SLOTS || p->n_batch < 0 || p->n_batch > (1 << 20) ||
        p->n_threads < 0 || p->n_threads > 4096 || p->max_parallel < 0 ||
        p->max_parallel > QF_PLAN_MAX_SLOTS)
        return QF_ERR_SET(
            err, QF_ERR_INVALID,
            "plan: ctx %d (0..16777216), parallel %d (0..%d), batch %d (0..1048576), threads %d, "
            "max parallel %d: out of range",
            p->n_ctx, p->n_parallel, QF_PLAN_MAX_SLOTS, p->n_batch, p->n_threads, p->max_parallel);
    if (p->kv_type != QF_TYPE_F16 && p->kv_type != QF_TYPE_F32 && p->kv_type != QF_TYPE_Q8_0)
        return QF_ERR_SET(err, QF_ERR_INVALID, "plan: kv type %d: f16, q8_0 or f32",
                          (int)p->kv_type);

    where w = {false, false, hw->mem_total, hw->mem_available, host_reserve(hw->mem_total)};
    if (!m) {
        plan_threads(hw, p, false, out);
        out->fits = true;
        out->mem_total = w.total;
        out->mem_available = w.available;
        out->mem[QF_PLAN_RESERVE].bytes = w.reserve;
        out->mem[QF_PLAN_FREE].bytes = w.total - w.reserve;
        out->need = w.reserve;
        fill_reasons(hw, m, p, &w, out);
        snprintf(out->note, sizeof out->note,
                 "hardware only: the weights, kv cache and buffer pools, the slots and the batch "
                 "need a model "
                 "(-m MODEL)");
        if (hw->n_numa > 1)
            append(out->note, sizeof out->note,
                   "; %d NUMA nodes: run under `numactl --interleave=all`", hw->n_numa);
        return QF_OK;
    }
    const qf_hparams *hp = &m->hp;
    if (hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->head_dim <= 0 ||
        hp->head_dim_v <= 0 || hp->n_embd <= 0)
        return QF_ERR_SET(err, QF_ERR_INVALID,
                          "plan: model %s: incomplete shape (layers %d, heads %d/%d, dims %d/%d)",
                          m->name, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim,
                          hp->head_dim_v);
    out->has_model = true;
    out->n_ctx = p->n_ctx > 0
                     ? p->n_ctx
                     : (hp->n_ctx_train > 0 && hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    size_t kv16, s16;
    qf_status st = engine_bytes(m, 16, 1, 16, 1, p->kv_type, &kv16, &s16, err);
    if (st != QF_OK) return st;
    out->kv_bytes_per_token = kv16 / 16; /* one 16-token block, every layer */

    /* a discrete GPU with a known memory size: try the device first */
    const char *extra = NULL;
    char note_gpu[512] = "";
    bool fits = false;
    if (hw->gpu && !hw->unified && hw->gpu_mem > 0) {
        where d = {true, true, hw->gpu_mem, hw->gpu_mem, device_reserve(hw->gpu_mem)};
        plan_threads(hw, p, true, out);
        out->on_gpu = true;
        if ((st = choose_slots(hw, m, p, &d, out, &fits, err)) != QF_OK) return st;
        if (fits) {
            w = d;
            out->on_device = true;
        } else {
            char a[16], b[16];
            snprintf(note_gpu, sizeof note_gpu,
                     "%s: %s GiB of device memory do not hold this plan (%s GiB): planned on the "
                     "CPU (a split across "
                     "GPU and CPU is not implemented)",
                     hw->gpu_name, fmt_gib(hw->gpu_mem, a, sizeof a),
                     fmt_gib(out->need, b, sizeof b));
            extra = " (the GPU does not hold it either)";
        }
    } else if (hw->gpu && !hw->unified) {
        snprintf(note_gpu, sizeof note_gpu,
                 "%s found, but its memory size is unknown to qforge: planned on the CPU; describe "
                 "it with --hw "
                 "FILE.json (gpu.memory) to plan for the device",
                 hw->gpu_name);
    }
    if (!fits) {
        w.gpu_fwd = hw->gpu && hw->unified;
        out->on_gpu = w.gpu_fwd;
        plan_threads(hw, p, w.gpu_fwd, out);
        if ((st = choose_slots(hw, m, p, &w, out, &fits, err)) != QF_OK) return st;
    }
    out->fits = fits;
    fill_reasons(hw, m, p, &w, out);
    snprintf(out->note, sizeof out->note, "%s", note_gpu);
    if (hw->unified)
        append(out->note, sizeof out->note,
               "%sunified memory: the pools share %.0f GiB with the GPU", out->note[0] ? "; " : "",
               hw->mem_total / QF_GIB);
    if (hw->n_numa > 1)
        append(out->note, sizeof out->note,
               "%s%d NUMA nodes: run under `numactl --interleave=all` so the weights are spread "
               "over the nodes",
               out->note[0] ? "; " : "", hw->n_numa);
    if (!fits) {
        refuse_msg(m, out, extra, err);
        return QF_ERR_RANGE;
    }
    return QF_OK;
}

/* ---- output ---- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = (b->cap ? b->cap : 1024) * 2;
        while (nc < b->n + (size_t)k + 1)
            nc *= 2;
        char *ns = qf_realloc(b->s, nc);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
}

char *qf_plan_to_text(const qf_plan *pl, const qf_hw *hw, const qf_tune_model *m) {
    sbuf b = {0};
    char s1[32], s2[32];
    sb(&b, "hardware (%s, %s)\n", hw->name, hw->os);
    sb(&b, "  cores     %d performance + %d efficiency (%d hardware threads), %d NUMA node%s\n",
       hw->n_perf, hw->n_eff, hw->n_logical, hw->n_numa, hw->n_numa == 1 ? "" : "s");
    sb(&b, "  caches    L2 %s per core, L3 %s\n",
       hw->l2_bytes ? fmt_size(hw->l2_bytes, s1, sizeof s1) : "unknown",
       hw->l3_bytes ? fmt_size(hw->l3_bytes, s2, sizeof s2) : "none/unknown");
    sb(&b, "  memory    %s total, ", fmt_size(hw->mem_total, s1, sizeof s1));
    sb(&b, "%s available%s\n",
       hw->mem_available ? fmt_size(hw->mem_available, s2, sizeof s2) : "unknown",
       hw->unified ? ", unified with the GPU" : "");
    if (hw->gpu)
        sb(&b, "  gpu       %s, %s\n", hw->gpu_name,
           hw->gpu_mem ? fmt_size(hw->gpu_mem, s1, sizeof s1) : "memory unknown");
    else
        sb(&b, "  gpu       none\n");
    if (m) {
        sb(&b,
           "model %s: %s of weights, %d layers, %s of kv cache per token (%s), trained context "
           "%d\n",
           m->name, fmt_size(m->weight_bytes, s1, sizeof s1), m->hp.n_layer,
           fmt_size(pl->kv_bytes_per_token, s2, sizeof s2),
           qf_type_get(pl->kv_type) ? qf_type_get(pl->kv_type)->name : "?", m->hp.n_ctx_train);
    }
    sb(&b, "memory pools (of %s, %s)%s\n", fmt_size(pl->mem_total, s1, sizeof s1),
       pl->on_device ? "GPU memory" : "host memory", pl->fits ? "" : ": DOES NOT FIT");
    for (int i = 0; i < QF_PLAN_POOLS; i++) {
        if (!pl->has_model && i < QF_PLAN_RESERVE) continue;
        sb(&b, "  %-9s %11s %6.1f%%  %s\n",
           i == QF_PLAN_KV ? "kv cache" : qf_plan_pool_name((qf_plan_pool)i),
           fmt_size(pl->mem[i].bytes, s1, sizeof s1), 100.0 * pl->mem[i].share, pl->mem[i].reason);
    }
    sb(&b, "threads\n");
    sb(&b, "  inference %-6d %s\n", pl->threads, pl->threads_reason);
    sb(&b, "  io        %-6d %s\n", pl->io_threads, pl->io_reason);
    if (pl->has_model) {
        sb(&b, "slots and batch\n");
        sb(&b, "  context   %-6d %s\n", pl->n_ctx, pl->ctx_reason);
        sb(&b, "  parallel  %-6d %s\n", pl->n_parallel, pl->parallel_reason);
        sb(&b, "  batch     %-6d %s\n", pl->n_batch, pl->batch_reason);
    }
    if (pl->note[0]) sb(&b, "note: %s\n", pl->note);
    if (pl->has_model && pl->fits)
        sb(&b, "as flags: -c %d --parallel %d -t %d --batch %d%s%s\n", pl->n_ctx, pl->n_parallel,
           pl->threads, pl->n_batch, pl->on_device ? " --gpu-layers -1" : "",
           pl->kv_type == QF_TYPE_F16    ? ""
           : pl->kv_type == QF_TYPE_Q8_0 ? " --kv-type q8_0"
                                         : " --kv-type f32");
    if (b.oom) {
        qf_free(b.s);
        return NULL;
    }
    return b.s;
}

static cJSON *item(cJSON *parent, const char *key, double value, const char *reason) {
    cJSON *o = cJSON_AddObjectToObject(parent, key);
    if (o) {
        cJSON_AddNumberToObject(o, "value", value);
        cJSON_AddStringToObject(o, "reason", reason);
    }
    return o;
}

char *qf_plan_to_json(const qf_plan *pl, const qf_hw *hw, const qf_tune_model *m) {
    cJSON *o = cJSON_CreateObject(), *c, *pools, *t;
    if (!o) return NULL;
    cJSON_AddItemToObject(o, "hw", qf_tune_hw_cjson(hw));
    if (m && (c = cJSON_AddObjectToObject(o, "model"))) {
        cJSON_AddStringToObject(c, "name", m->name);
        cJSON_AddStringToObject(c, "arch", m->hp.arch_name);
        cJSON_AddNumberToObject(c, "weights_bytes", (double)m->weight_bytes);
        cJSON_AddNumberToObject(c, "n_layer", m->hp.n_layer);
        cJSON_AddNumberToObject(c, "n_ctx_train", m->hp.n_ctx_train);
        cJSON_AddNumberToObject(c, "kv_bytes_per_token", (double)pl->kv_bytes_per_token);
    } else if (!m) {
        cJSON_AddNullToObject(o, "model");
    }
    cJSON_AddBoolToObject(o, "fits", pl->fits);
    if ((c = cJSON_AddObjectToObject(o, "memory"))) {
        cJSON_AddNumberToObject(c, "total", (double)pl->mem_total);
        cJSON_AddNumberToObject(c, "available", (double)pl->mem_available);
        cJSON_AddStringToObject(c, "where", pl->on_device ? "gpu" : "host");
        cJSON_AddNumberToObject(c, "need", (double)pl->need);
        if ((pools = cJSON_AddObjectToObject(c, "pools"))) {
            for (int i = 0; i < QF_PLAN_POOLS; i++) {
                if (!pl->has_model && i < QF_PLAN_RESERVE) continue;
                cJSON *p = cJSON_AddObjectToObject(pools, qf_plan_pool_name((qf_plan_pool)i));
                if (!p) continue;
                cJSON_AddNumberToObject(p, "bytes", (double)pl->mem[i].bytes);
                cJSON_AddNumberToObject(p, "share", pl->mem[i].share);
                cJSON_AddStringToObject(p, "reason", pl->mem[i].reason);
            }
        }
    }
    if ((t = cJSON_AddObjectToObject(o, "threads"))) {
        if ((c = cJSON_AddObjectToObject(t, "inference"))) {
            cJSON_AddNumberToObject(c, "count", pl->threads);
            cJSON_AddStringToObject(c, "reason", pl->threads_reason);
        }
        if ((c = cJSON_AddObjectToObject(t, "io"))) {
            cJSON_AddNumberToObject(c, "count", pl->io_threads);
            cJSON_AddBoolToObject(c, "efficiency_cores", pl->io_on_eff);
            cJSON_AddStringToObject(c, "reason", pl->io_reason);
        }
    }
    if (pl->has_model) {
        item(o, "ctx", pl->n_ctx, pl->ctx_reason);
        if ((c = item(o, "parallel", pl->n_parallel, pl->parallel_reason)))
            cJSON_AddBoolToObject(c, "auto", pl->parallel_auto);
        item(o, "batch", pl->n_batch, pl->batch_reason);
    } else {
        cJSON_AddNullToObject(o, "ctx");
        cJSON_AddNullToObject(o, "parallel");
        cJSON_AddNullToObject(o, "batch");
    }
    cJSON_AddStringToObject(o, "kv_type",
                            qf_type_get(pl->kv_type) ? qf_type_get(pl->kv_type)->name : "?");
    cJSON_AddNumberToObject(o, "gpu_layers",
                            pl->on_device ? -1 : 0); /* --gpu-layers: all, or none */
    cJSON_AddStringToObject(o, "note", pl->note);
    char *s = cJSON_Print(o);
    char *r = s ? qf_strdup(s) : NULL;
    free(s);
    cJSON_Delete(o);
    return r;
}
