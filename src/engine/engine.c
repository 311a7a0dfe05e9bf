/* engine.c - the scheduler thread: admission, continuous batching, chunked
 * prefill, sampling and event delivery.
 *
 * Slots: slot i is kv sequence i. A request with n completions holds n
 * slots from admission to its end. Completion 0 prefills the prompt (in
 * chunks); when its last prompt token has run, the other completions fork
 * its kv blocks (the partly filled last block is copied on first write) and
 * all n sample from the same logits with their own samplers.
 *
 * Memory: admission reserves, per request, the blocks its completions can
 * ever need (prompt + max new tokens, or the attention window); the sum of
 * reservations never exceeds the pool, so a running sequence never finds
 * the cache full. Cached prefix blocks are not reserved: they are evicted
 * when allocation needs them.
 *
 * Locking: `mu` guards the queue, cancel flags and stats. The running set
 * belongs to the scheduler thread. Callbacks run without `mu` held.
 */
#include "engine/engine.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "base/clock.h"
#include "base/cpu.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/pool.h"
#include "sample/grammar.h"
#include "sample/stop.h"

#define N_SINK 4
#define WINDOW_CHUNK 64 /* prompt tokens per step for a sliding-window sequence */

typedef enum req_state { RS_QUEUED, RS_PREFILL, RS_DECODE, RS_DONE } req_state;

typedef struct comp {
    int32_t slot;
    qf_sampler *sampler;
    qf_stop *stop;
    qf_gmatch *gm;
    int32_t *toks;      /* (cap) prompt + generated: penalties and prefix registration */
    int32_t n_toks, cap;
    int32_t n_gen;
    int32_t last;       /* token to evaluate next step */
    bool done;
    qf_usage usage;
} comp;

typedef struct req {
    uint64_t id, seq_no;
    qf_request r;       /* copy; pointers below replace the caller's */
    int32_t *prompt;
    int32_t n_prompt;
    char **stops;
    qf_grammar *grammar;
    int32_t max_new;    /* tokens each completion may generate */
    int32_t window;     /* attention window (QF_OVERFLOW_WINDOW) or 0 */
    int64_t reserved;   /* kv blocks reserved at admission */
    req_state state;
    int32_t n_done_prompt; /* prompt positions in the kv of completion 0 */
    int32_t n_cached;
    double t_submit, t_sched, t_first, deadline;
    bool cancel;
    bool timed_out;
    comp *comps;        /* (n) */
    int32_t n_live;     /* completions not yet done */
    struct req *next;
} req;

struct qf_engine {
    const qf_model *m;
    qf_engine_params p;
    qf_pool *pool;
    qf_kv *kv;
    qf_fwd *fwd;          /* the CPU pass (all, or the first layers of a partial offload), or NULL */
    qf_gpu_fwd *gpu;      /* the GPU forward pass (n_gpu_layers), or NULL */
    qf_gvocab *gvocab;    /* token trie for constrained decoding, built on first use */
    int32_t n_vocab, bs;
    int64_t reserved_blocks;
    req **slots;          /* (n_parallel) owner of each slot or NULL */
    req *queue;           /* sorted: priority desc, seq_no asc */
    req *running;         /* scheduler-owned list */
    int32_t n_queued, n_running_reqs;
    uint64_t next_id, next_seq;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    qf_engine_stats st;
    qf_kv_stats kv_snap;  /* kv stats as of the end of the last step (under mu) */
    /* step scratch */
    int32_t *b_tok, *b_pos, *b_seq;
    int8_t *b_want;
    req **b_req;
    int32_t *b_comp;      /* completion index, -1 for a prefill token */
    float *logits_tmp;    /* (pool size, n_vocab): a draw's scratch per thread */
    struct sjob *jobs;    /* (n_parallel) completions to sample after a step */
    int32_t n_jobs;
};

const char *qf_finish_name(qf_finish f) {
    static const char *names[] = {"none", "stop", "length", "cancelled", "timeout", "error"};
    return (unsigned)f < sizeof names / sizeof *names ? names[f] : "?";
}

qf_engine_params qf_engine_params_default(void) {
    qf_engine_params p;
    memset(&p, 0, sizeof p);
    p.kv_type = QF_TYPE_F16;
    p.n_gpu_layers = qf_gpu_layers_env();
    return p;
}

static void fill_defaults(const qf_model *m, qf_engine_params *p) {
    if (p->n_ctx <= 0) p->n_ctx = m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
    if (p->n_parallel <= 0) p->n_parallel = 4;
    if (p->n_parallel > 256) p->n_parallel = 256;
    if (p->max_queue <= 0) p->max_queue = 64;
    if (p->n_batch <= 0) p->n_batch = 512;
    if (p->n_batch < p->n_parallel) p->n_batch = p->n_parallel;
    if (p->kv_block <= 0) p->kv_block = 16;
    if (p->kv_tokens <= 0) p->kv_tokens = (int64_t)p->n_ctx * p->n_parallel;
    if (p->timeout_s <= 0) p->timeout_s = 1800;
    if (p->n_threads <= 0) p->n_threads = qf_cpu_default_threads();
}

/* ---- memory plan ---- */

qf_status qf_engine_plan(const qf_model *m, const qf_engine_params *in, qf_mem_plan *out, qf_err *err) {
    qf_engine_params p = *in;
    fill_defaults(m, &p);
    memset(out, 0, sizeof *out);
    qf_kv_params kp = qf_model_kv_params(m, p.kv_tokens, p.n_parallel, p.kv_type, p.kv_block);
    out->weights = m->weight_bytes;
    out->kv = qf_kv_pool_bytes(&kp);
    out->scratch = qf_fwd_scratch_bytes(m, p.n_batch, p.n_ctx, p.n_threads);
    out->reserve = (size_t)256 << 20;
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    out->total = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : 0;
    out->available = avail > 0 && psz > 0 ? (size_t)avail * (size_t)psz : out->total;
    out->budget = p.mem_budget ? p.mem_budget : out->total;
    size_t need = out->weights + out->kv + out->scratch + out->reserve;
    /* weights are file-backed pages: they must fit the budget, but the
     * anonymous memory (kv + scratch) must also fit what is free now */
    out->fits = need <= out->budget && (p.mem_budget || out->kv + out->scratch <= out->available);
    if (!out->fits)
        return QF_ERR_SET(err, QF_ERR_RANGE,
                          "memory plan does not fit: weights %.1f MiB + kv cache %.1f MiB (%lld tokens, %s) + scratch "
                          "%.1f MiB + reserve %.0f MiB = %.1f MiB, budget %.1f MiB, available %.1f MiB; lower --ctx "
                          "or --parallel, or use --kv-type q8_0",
                          out->weights / 1048576.0, out->kv / 1048576.0, (long long)p.kv_tokens,
                          qf_type_get(p.kv_type) ? qf_type_get(p.kv_type)->name : "?", out->scratch / 1048576.0,
                          out->reserve / 1048576.0, need / 1048576.0, out->budget / 1048576.0,
                          out->available / 1048576.0);
    return QF_OK;
}

/* ---- request life cycle ---- */

static void comp_free(comp *c) {
    qf_sampler_free(c->sampler);
    qf_stop_free(c->stop);
    qf_gmatch_free(c->gm);
    qf_free(c->toks);
}

static void req_free(req *q) {
    if (!q) return;
    if (q->comps)
        for (int32_t i = 0; i < q->r.n; i++) comp_free(&q->comps[i]);
    qf_free(q->comps);
    qf_free(q->prompt);
    if (q->stops)
        for (int32_t i = 0; i < q->r.n_stop; i++) qf_free(q->stops[i]);
    qf_free(q->stops);
    qf_grammar_free(q->grammar);
    qf_free(q);
}

static void emit(req *q, int32_t idx, int32_t token, const char *text, size_t len, qf_finish fin, const char *error) {
    qf_event ev = {q->id, idx, token, text ? text : "", text ? len : 0, fin, fin ? &q->comps[idx].usage : NULL,
                   error};
    q->r.on_event(q->r.ud, &ev);
}

/* Blocks one completion can need: prompt + new tokens, or the window. */
static int64_t blocks_for(const qf_engine *e, int32_t n_prompt, int32_t max_new, int32_t window, bool first) {
    int64_t span = (int64_t)n_prompt + max_new;
    /* a window sequence holds the sinks, the window, one prompt chunk and
     * the partly filled blocks at both ends */
    if (window > 0 && span > (int64_t)window + N_SINK) span = (int64_t)window + N_SINK + WINDOW_CHUNK + 2 * e->bs;
    int64_t nb = (span + e->bs - 1) / e->bs;
    /* forked completions share the prompt's full blocks */
    if (!first && window == 0) nb -= n_prompt / e->bs;
    return nb > 0 ? nb : 1;
}

static qf_status prepare_prompt(qf_engine *e, const qf_request *r, req *q, qf_err *err) {
    int32_t n_ctx = e->p.n_ctx, n = r->n_prompt;
    const int32_t *src = r->prompt;
    q->window = 0;
    if (n >= n_ctx) {
        if (r->overflow == QF_OVERFLOW_REFUSE)
            return QF_ERR_SET(err, QF_ERR_RANGE,
                              "the prompt is %d tokens, the context is %d tokens: it must leave room for at least "
                              "one generated token", n, n_ctx);
        if (r->overflow == QF_OVERFLOW_TRUNCATE) {
            int32_t room = r->max_tokens > 0 ? r->max_tokens : n_ctx / 4;
            if (room > n_ctx / 2) room = n_ctx / 2;
            int32_t keep = n_ctx - room;
            bool bos = qf_tok_bos(e->m->tok) >= 0 && src[0] == qf_tok_bos(e->m->tok);
            q->prompt = qf_malloc((size_t)keep * sizeof(int32_t));
            if (!q->prompt) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
            int32_t k = 0;
            if (bos) q->prompt[k++] = src[0];
            memcpy(q->prompt + k, src + n - (keep - k), (size_t)(keep - k) * sizeof(int32_t));
            q->n_prompt = keep;
            return QF_OK;
        }
    }
    /* the window is sized so that sinks + window + a prompt chunk + the two
     * partly filled edge blocks fit the n_ctx positions of one slot */
    if (r->overflow == QF_OVERFLOW_WINDOW) {
        q->window = n_ctx - N_SINK - WINDOW_CHUNK - 2 * e->bs;
        if (q->window < e->bs)
            return QF_ERR_SET(err, QF_ERR_RANGE, "a sliding window needs a context above %d tokens (have %d)",
                              N_SINK + WINDOW_CHUNK + 3 * e->bs, n_ctx);
    }
    q->prompt = qf_malloc((size_t)n * sizeof(int32_t));
    if (!q->prompt) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    memcpy(q->prompt, src, (size_t)n * sizeof(int32_t));
    q->n_prompt = n;
    return QF_OK;
}

qf_status qf_engine_submit(qf_engine *e, const qf_request *r, uint64_t *id, qf_err *err) {
    if (!r || !r->on_event || !r->prompt || r->n_prompt <= 0)
        return QF_ERR_SET(err, QF_ERR_INVALID, "request: a prompt of at least one token and on_event are required");
    int32_t n = r->n > 0 ? r->n : 1;
    if (n > e->p.n_parallel)
        return QF_ERR_SET(err, QF_ERR_INVALID, "request: n = %d completions exceeds the %d parallel slots", n,
                          e->p.n_parallel);
    if (r->n_stop < 0 || (r->n_stop > 0 && !r->stop))
        return QF_ERR_SET(err, QF_ERR_INVALID, "request: bad stop list");
    for (int32_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= e->n_vocab)
            return QF_ERR_SET(err, QF_ERR_INVALID, "request: prompt token %d at index %d is outside the vocabulary (%d)",
                              r->prompt[i], i, e->n_vocab);
    req *q = qf_calloc(1, sizeof *q);
    if (!q) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    q->r = *r;
    q->r.n = n;
    q->r.prompt = NULL;
    q->r.stop = NULL;
    q->r.json_schema = NULL;
    qf_status st = prepare_prompt(e, r, q, err);
    if (st != QF_OK) goto fail;
    int32_t room = q->window ? INT32_MAX / 4 : e->p.n_ctx - q->n_prompt;
    q->max_new = r->max_tokens > 0 && r->max_tokens < room ? r->max_tokens : room;
    if (q->window && r->max_tokens <= 0) q->max_new = e->p.n_ctx; /* unbounded windows still end */
    q->reserved = blocks_for(e, q->n_prompt, q->max_new, q->window, true) +
                  (int64_t)(n - 1) * blocks_for(e, q->n_prompt, q->max_new, q->window, false);
    if (q->reserved > qf_kv_get_params(e->kv)->n_blocks) {
        st = QF_ERR_SET(err, QF_ERR_RANGE,
                        "request needs %lld kv blocks (%d prompt tokens + %d new, %d completions) but the cache holds "
                        "%lld blocks of %d tokens", (long long)q->reserved, q->n_prompt, q->max_new, n,
                        (long long)qf_kv_get_params(e->kv)->n_blocks, e->bs);
        goto fail;
    }
    if (r->n_stop > 0) {
        q->stops = qf_calloc((size_t)r->n_stop, sizeof(char *));
        if (!q->stops) goto nomem;
        for (int32_t i = 0; i < r->n_stop; i++)
            if (!r->stop[i] || !(q->stops[i] = qf_strdup(r->stop[i]))) {
                st = QF_ERR_SET(err, r->stop[i] ? QF_ERR_NOMEM : QF_ERR_INVALID, "request: bad stop string %d", i);
                goto fail;
            }
    }
    if (r->json_schema) {
        q->grammar = !strcmp(r->json_schema, "json") ? qf_grammar_json(err)
                                                     : qf_grammar_from_schema(r->json_schema, strlen(r->json_schema), err);
        if (!q->grammar) {
            st = err && err->code ? err->code : QF_ERR_INVALID;
            goto fail;
        }
    }
    if (q->grammar) { /* one trie of the vocabulary per engine, shared by every matcher */
        pthread_mutex_lock(&e->mu);
        if (!e->gvocab) e->gvocab = qf_gvocab_new(e->m->tok, err);
        bool ok = e->gvocab != NULL;
        pthread_mutex_unlock(&e->mu);
        if (!ok) {
            st = err && err->code ? err->code : QF_ERR_NOMEM;
            goto fail;
        }
    }
    q->comps = qf_calloc((size_t)n, sizeof *q->comps);
    if (!q->comps) goto nomem;
    for (int32_t i = 0; i < n; i++) {
        comp *c = &q->comps[i];
        c->slot = -1;
        qf_sample_params sp = r->sample;
        if (sp.seed != QF_SAMPLE_SEED_RANDOM) sp.seed += (uint64_t)i;
        c->sampler = qf_sampler_new(&sp, e->n_vocab, err);
        c->stop = qf_stop_new((const char *const *)q->stops, (size_t)r->n_stop, err);
        if (!c->sampler || !c->stop) {
            st = err && err->code ? err->code : QF_ERR_NOMEM;
            goto fail;
        }
        if (q->grammar && !(c->gm = qf_gmatch_new_vocab(q->grammar, e->gvocab, err))) {
            st = err && err->code ? err->code : QF_ERR_NOMEM;
            goto fail;
        }
        c->cap = q->n_prompt + 64;
        c->toks = qf_malloc((size_t)c->cap * sizeof(int32_t));
        if (!c->toks) goto nomem;
        memcpy(c->toks, q->prompt, (size_t)q->n_prompt * sizeof(int32_t));
        c->n_toks = q->n_prompt;
        c->usage.prompt_tokens = q->n_prompt;
    }
    q->n_live = n;
    q->t_submit = qf_now_s();
    q->deadline = q->t_submit + (r->timeout_s > 0 ? r->timeout_s : e->p.timeout_s);

    pthread_mutex_lock(&e->mu);
    if (e->quit || e->n_queued >= e->p.max_queue) {
        e->st.requests_rejected++;
        bool quit = e->quit;
        int32_t queued = e->n_queued;
        pthread_mutex_unlock(&e->mu);
        st = QF_ERR_SET(err, QF_ERR_BUSY, quit ? "engine is shutting down"
                                               : "queue full: %d requests waiting (max %d); retry later",
                        queued, e->p.max_queue);
        goto fail;
    }
    q->id = ++e->next_id;
    q->seq_no = ++e->next_seq;
    req **pp = &e->queue;
    while (*pp && (*pp)->r.priority >= q->r.priority) pp = &(*pp)->next;
    q->next = *pp;
    *pp = q;
    e->n_queued++;
    e->st.requests_total++;
    e->st.prompt_tokens_total += (uint64_t)q->n_prompt;
    if (id) *id = q->id;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return QF_OK;
nomem:
    st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
fail:
    req_free(q);
    return st;
}

qf_status qf_engine_cancel(qf_engine *e, uint64_t id) {
    qf_status st = QF_ERR_NOT_FOUND;
    pthread_mutex_lock(&e->mu);
    for (req *q = e->queue; q; q = q->next)
        if (q->id == id) q->cancel = true, st = QF_OK;
    for (req *q = e->running; q; q = q->next)
        if (q->id == id && q->state != RS_DONE) q->cancel = true, st = QF_OK;
    if (st == QF_OK) pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return st;
}

/* ---- finishing ---- */

/* End completion i of q: flush held-back text, release its slot's kv
 * (registering its full blocks for reuse first), deliver the final event. */
static void finish_comp(qf_engine *e, req *q, int32_t i, qf_finish fin, const char *error) {
    comp *c = &q->comps[i];
    if (c->done) return;
    c->done = true;
    q->n_live--;
    double now = qf_now_s();
    c->usage.completion_tokens = c->n_gen;
    c->usage.cached_tokens = q->n_cached;
    c->usage.queue_s = q->t_sched > 0 ? q->t_sched - q->t_submit : now - q->t_submit;
    c->usage.ttft_s = q->t_first > 0 ? q->t_first - q->t_submit : 0;
    c->usage.total_s = now - q->t_submit;
    if (fin == QF_FINISH_STOP || fin == QF_FINISH_LENGTH) {
        qf_stop_out out;
        if (qf_stop_flush(c->stop, &out) == QF_OK && out.len > 0 && !out.matched)
            emit(q, i, -1, out.text, out.len, QF_FINISH_NONE, NULL);
    }
    if (q->n_live == 0) { /* qf_engine_cancel reports it as finished from now on */
        pthread_mutex_lock(&e->mu);
        q->state = RS_DONE;
        pthread_mutex_unlock(&e->mu);
    }
    if (c->slot >= 0) {
        if (!e->p.no_prefix_cache) {
            int32_t computed = c->n_toks - (c->n_gen > 0 ? 1 : 0); /* the last sampled token never ran */
            if (i == 0 && q->state == RS_PREFILL) computed = q->n_done_prompt;
            qf_kv_seq_register(e->kv, c->slot, c->toks, computed);
        }
        qf_kv_seq_truncate(e->kv, c->slot, 0);
        pthread_mutex_lock(&e->mu); /* stats readers look at the slots and the kv snapshot */
        e->slots[c->slot] = NULL;
        qf_kv_get_stats(e->kv, &e->kv_snap);
        pthread_mutex_unlock(&e->mu);
        c->slot = -1;
    }
    emit(q, i, -1, NULL, 0, fin, error);
}

static void finish_all(qf_engine *e, req *q, qf_finish fin, const char *error) {
    for (int32_t i = 0; i < q->r.n; i++) finish_comp(e, q, i, fin, error);
}

/* ---- admission ---- */

static int32_t free_slots(const qf_engine *e) {
    int32_t n = 0;
    for (int32_t s = 0; s < e->p.n_parallel; s++) n += e->slots[s] == NULL;
    return n;
}

/* q has computed nothing beyond its cached prefix and another request r
 * (ahead of it, or admitted earlier) is prefilling the same tokens through
 * q's next block: q waits a step and attaches r's blocks once they are
 * registered, instead of computing the same prefix again (the requests of
 * one document chunk, submitted together). */
static bool follows_leader(const qf_engine *e, const req *q) {
    int32_t at = q->n_done_prompt, bs = e->bs;
    if (at != q->n_cached || q->n_prompt < at + bs) return false;
    for (const req *r = e->running; r; r = r->next) {
        if (r == q || r->state != RS_PREFILL || r->window || r->n_prompt < at + bs) continue;
        /* r leads q when it is further on, or as far and older; the leader
         * of a group never waits, so the group always moves */
        if (r->n_done_prompt < at || (r->n_done_prompt == at && r->seq_no > q->seq_no)) continue;
        if (!memcmp(r->prompt, q->prompt, (size_t)(at + bs) * sizeof(int32_t))) return true;
    }
    return false;
}

/* Move queued requests into slots while slots and kv reservations allow
 * (strict priority: the head waits rather than being overtaken). Called
 * with mu held; returns requests to finish (cancelled/timed out). */
static req *admit(qf_engine *e, double now) {
    req *dead = NULL;
    for (req **pp = &e->queue; *pp;) {
        req *q = *pp;
        if (q->cancel || now > q->deadline) {
            *pp = q->next;
            e->n_queued--;
            q->timed_out = !q->cancel;
            q->next = dead;
            dead = q;
            continue;
        }
        pp = &q->next;
    }
    int64_t total = qf_kv_get_params(e->kv)->n_blocks;
    while (e->queue) {
        req *q = e->queue;
        if (free_slots(e) < q->r.n) break;
        if (e->reserved_blocks + q->reserved > total) {
            e->st.kv_wait_steps++; /* slots are free: only kv blocks hold it back */
            break;
        }
        e->queue = q->next;
        e->n_queued--;
        e->reserved_blocks += q->reserved;
        int32_t k = 0;
        for (int32_t s = 0; s < e->p.n_parallel && k < q->r.n; s++)
            if (!e->slots[s]) {
                e->slots[s] = q;
                q->comps[k++].slot = s;
            }
        q->state = RS_PREFILL;
        q->t_sched = now;
        int32_t slot0 = q->comps[0].slot;
        if (q->window) qf_kv_seq_set_window(e->kv, slot0, q->window, N_SINK);
        /* reuse cached blocks of the prompt, but always compute its last
         * token: its logits start the generation */
        if (!e->p.no_prefix_cache && !q->window) {
            q->n_cached = qf_kv_seq_attach_prefix(e->kv, slot0, q->prompt, q->n_prompt, q->n_prompt - 1);
            e->st.prefix_lookups++;
        }
        q->n_done_prompt = q->n_cached;
        e->st.prefix_hit_tokens += (uint64_t)q->n_cached;
        q->next = e->running;
        e->running = q;
        e->n_running_reqs++;
    }
    return dead;
}

/* ---- one step ---- */

static bool comp_append(comp *c, int32_t tok) {
    if (c->n_toks == c->cap) {
        int32_t cap = c->cap * 2;
        int32_t *nt = qf_realloc(c->toks, (size_t)cap * sizeof *nt);
        if (!nt) return false;
        c->toks = nt;
        c->cap = cap;
    }
    c->toks[c->n_toks++] = tok;
    return true;
}

/* Draw completion i's next token from logits into tmp (n_vocab floats of
 * scratch): its own sampler and grammar only, so draws for different
 * completions run in parallel (draw_region). Returns the token, or -1 with
 * *fail set. */
static int32_t draw(qf_engine *e, req *q, int32_t i, const float *logits, float *tmp, const char **fail) {
    comp *c = &q->comps[i];
    memcpy(tmp, logits, (size_t)e->n_vocab * sizeof(float));
    int32_t id = qf_sampler_sample(c->sampler, tmp, c->toks, c->n_toks);
    /* constrained: most draws are allowed anyway, so mask the vocabulary
     * only when the free draw is refused, then draw again from the masked
     * logits (a rejection step: the result follows the masked distribution) */
    if (c->gm && id >= 0 && !qf_gmatch_allows(c->gm, id)) {
        memcpy(tmp, logits, (size_t)e->n_vocab * sizeof(float));
        if (qf_gmatch_mask(c->gm, tmp, e->n_vocab) != QF_OK) {
            *fail = "constrained decoding: no token can continue the output";
            return -1;
        }
        id = qf_sampler_sample(c->sampler, tmp, c->toks, c->n_toks);
    }
    if (id < 0) *fail = "sampling failed";
    return id;
}

/* Completion i takes token id (drawn by draw, or failed with fail): emit
 * it and decide whether the completion ends. Scheduler thread, batch order. */
static void take(qf_engine *e, req *q, int32_t i, int32_t id, const char *fail) {
    comp *c = &q->comps[i];
    if (id < 0 || !comp_append(c, id)) {
        finish_comp(e, q, i, QF_FINISH_ERROR, id < 0 ? fail : "out of memory");
        return;
    }
    if (q->t_first == 0) q->t_first = qf_now_s();
    c->n_gen++;
    c->last = id;
    e->st.generated_tokens_total++;
    if (c->gm && qf_gmatch_accept(c->gm, id) != QF_OK) {
        finish_comp(e, q, i, QF_FINISH_ERROR, "constrained decoding: the sampled token breaks the schema");
        return;
    }
    if (!q->r.ignore_eos && qf_tok_is_eog(e->m->tok, id)) {
        finish_comp(e, q, i, QF_FINISH_STOP, NULL);
        return;
    }
    char piece[512];
    size_t len = qf_tok_piece(e->m->tok, id, false, piece, sizeof piece);
    if (len > sizeof piece) len = sizeof piece;
    qf_stop_out out;
    qf_stop_feed(c->stop, piece, len, &out);
    emit(q, i, id, out.text, out.len, QF_FINISH_NONE, NULL);
    if (out.matched) {
        finish_comp(e, q, i, QF_FINISH_STOP, NULL);
        return;
    }
    int32_t pos_next = c->n_toks - 1; /* position the new token will take */
    if (c->n_gen >= q->max_new || (!q->window && pos_next >= e->p.n_ctx))
        finish_comp(e, q, i, QF_FINISH_LENGTH, NULL);
}

/* A completion to sample after a step. */
typedef struct sjob {
    req *q;
    int32_t i;
    const float *logits;
    int32_t id;
    const char *fail;
} sjob;

static void sample_jobs(qf_engine *e);

static void add_job(qf_engine *e, req *q, int32_t i, const float *logits) {
    if (e->n_jobs == e->p.n_parallel) sample_jobs(e); /* cannot happen (a completion holds a slot); order kept */
    e->jobs[e->n_jobs++] = (sjob){q, i, logits, -1, NULL};
}

static void draw_region(void *ctx, int ith, int nth) {
    qf_engine *e = ctx;
    float *tmp = e->logits_tmp + (size_t)ith * (size_t)e->n_vocab;
    for (int32_t j = ith; j < e->n_jobs; j += nth) {
        sjob *b = &e->jobs[j];
        b->id = draw(e, b->q, b->i, b->logits, tmp, &b->fail);
    }
}

/* Sample every job: the draws spread over the pool (with 32-64 sequences
 * on a GPU they were a third of the step: one thread drew ~40 tokens of a
 * 32k vocabulary in series), then each taken in batch order. */
static void sample_jobs(qf_engine *e) {
    if (e->n_jobs >= 2 && qf_pool_size(e->pool) > 1) qf_pool_run(e->pool, draw_region, e);
    else draw_region(e, 0, 1);
    for (int32_t j = 0; j < e->n_jobs; j++) take(e, e->jobs[j].q, e->jobs[j].i, e->jobs[j].id, e->jobs[j].fail);
    e->n_jobs = 0;
}

/* Prefill finished: fork the prompt's kv to the other completions and
 * queue every completion's draw from the prompt's last logits. */
static void start_decode(qf_engine *e, req *q, const float *logits) {
    q->state = RS_DECODE;
    qf_err err = {0};
    int32_t slot0 = q->comps[0].slot;
    if (!e->p.no_prefix_cache && !q->window) qf_kv_seq_register(e->kv, slot0, q->prompt, q->n_prompt);
    for (int32_t i = 1; i < q->r.n; i++)
        if (qf_kv_seq_fork(e->kv, slot0, q->comps[i].slot, &err) != QF_OK) finish_comp(e, q, i, QF_FINISH_ERROR, err.msg);
    for (int32_t i = 0; i < q->r.n; i++)
        if (!q->comps[i].done) add_job(e, q, i, logits);
}

/* Logits row `row` of the last forward pass, from whichever path ran it. */
static const float *step_logits(const qf_engine *e, int32_t row) {
    return e->gpu ? qf_gpu_fwd_logits(e->gpu, row) : qf_fwd_logits(e->fwd, row);
}

static void step(qf_engine *e) {
    int32_t n = 0, budget = e->p.n_batch;
    /* generation first: one token per live completion */
    for (req *q = e->running; q; q = q->next) {
        if (q->state != RS_DECODE) continue;
        for (int32_t i = 0; i < q->r.n; i++) {
            comp *c = &q->comps[i];
            if (c->done) continue;
            e->b_tok[n] = c->last;
            e->b_pos[n] = c->n_toks - 1;
            e->b_seq[n] = c->slot;
            e->b_want[n] = 1;
            e->b_req[n] = q;
            e->b_comp[n] = i;
            n++;
        }
    }
    budget -= n;
    /* then prompt chunks, in admission (priority) order, oldest first */
    req *order[256];
    int32_t no = 0;
    for (req *q = e->running; q && no < 256; q = q->next)
        if (q->state == RS_PREFILL) order[no++] = q;
    for (int32_t k = no - 1; k >= 0 && budget > 0; k--) { /* list is newest first */
        req *q = order[k];
        if (!e->p.no_prefix_cache && !q->window && q->n_done_prompt == q->n_cached) {
            /* pick up blocks other requests registered since admission */
            int32_t got = qf_kv_seq_attach_prefix(e->kv, q->comps[0].slot, q->prompt, q->n_prompt, q->n_prompt - 1);
            if (got > q->n_cached) {
                pthread_mutex_lock(&e->mu);
                e->st.prefix_hit_tokens += (uint64_t)(got - q->n_cached);
                pthread_mutex_unlock(&e->mu);
                q->n_cached = q->n_done_prompt = got;
            }
            if (follows_leader(e, q)) continue;
        }
        int32_t left = q->n_prompt - q->n_done_prompt, take = left < budget ? left : budget;
        if (q->window && take > WINDOW_CHUNK) take = WINDOW_CHUNK;
        for (int32_t j = 0; j < take; j++) {
            int32_t pos = q->n_done_prompt + j;
            e->b_tok[n] = q->prompt[pos];
            e->b_pos[n] = pos;
            e->b_seq[n] = q->comps[0].slot;
            e->b_want[n] = pos == q->n_prompt - 1;
            e->b_req[n] = q;
            e->b_comp[n] = -1;
            n++;
        }
        budget -= take;
    }
    if (n == 0) return;
    qf_batch b = {n, e->b_tok, e->b_pos, e->b_seq, e->b_want};
    qf_err err = {0};
    double t0 = qf_now_s();
    qf_status st = e->gpu ? qf_gpu_fwd_decode(e->gpu, e->kv, &b, &err) : qf_fwd_decode(e->fwd, &b, &err);
    double dt = qf_now_s() - t0;
    pthread_mutex_lock(&e->mu);
    e->st.steps++;
    e->st.busy_s += dt;
    pthread_mutex_unlock(&e->mu);
    if (st != QF_OK) { /* cannot happen with reservations; fail what was in the batch */
        qf_error("engine step failed: %s", err.msg);
        for (int32_t i = 0; i < n; i++)
            if (e->b_req[i]->state != RS_DONE) finish_all(e, e->b_req[i], QF_FINISH_ERROR, err.msg);
        return;
    }
    int32_t row = 0;
    uint64_t computed = 0;
    for (int32_t i = 0; i < n; i++) {
        req *q = e->b_req[i];
        if (e->b_comp[i] < 0) {
            q->n_done_prompt++;
            computed++;
            if (e->b_want[i]) start_decode(e, q, step_logits(e, row));
        } else if (!q->comps[e->b_comp[i]].done) {
            add_job(e, q, e->b_comp[i], step_logits(e, row));
        }
        if (e->b_want[i]) row++;
    }
    sample_jobs(e);
    /* prompt blocks become reusable as soon as they are computed */
    if (!e->p.no_prefix_cache)
        for (req *q = e->running; q; q = q->next)
            if (q->state == RS_PREFILL && !q->window && q->comps[0].slot >= 0)
                qf_kv_seq_register(e->kv, q->comps[0].slot, q->prompt, q->n_done_prompt);
    /* sliding windows: drop blocks no position will attend to again */
    for (req *q = e->running; q; q = q->next) {
        if (!q->window) continue;
        for (int32_t i = 0; i < q->r.n; i++) {
            comp *c = &q->comps[i];
            int32_t next_pos = q->state == RS_PREFILL ? q->n_done_prompt : c->n_toks - 1;
            if (c->slot >= 0 && (i == 0 || q->state == RS_DECODE))
                qf_kv_seq_drop_range(e->kv, c->slot, e->bs, next_pos - q->window + 1);
        }
    }
    pthread_mutex_lock(&e->mu);
    e->st.prompt_tokens_computed += computed;
    pthread_mutex_unlock(&e->mu);
}

/* ---- scheduler thread ---- */

static void reap(qf_engine *e) {
    pthread_mutex_lock(&e->mu);
    qf_kv_get_stats(e->kv, &e->kv_snap);
    for (req **pp = &e->running; *pp;) {
        req *q = *pp;
        if (q->n_live == 0) {
            *pp = q->next;
            e->reserved_blocks -= q->reserved;
            e->n_running_reqs--;
            q->state = RS_DONE;
            req_free(q);
            continue;
        }
        pp = &q->next;
    }
    pthread_mutex_unlock(&e->mu);
}

static void *scheduler_main(void *arg) {
    qf_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->quit) {
        double now = qf_now_s();
        req *dead = admit(e, now);
        bool idle = e->running == NULL && dead == NULL;
        if (idle) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L; /* wake for queued deadlines */
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
            continue;
        }
        /* cancel/timeout flags of running requests are read under mu */
        for (req *q = e->running; q; q = q->next)
            if (!q->cancel && now > q->deadline) q->timed_out = true;
        pthread_mutex_unlock(&e->mu);

        while (dead) {
            req *q = dead;
            dead = q->next;
            pthread_mutex_lock(&e->mu);
            if (q->timed_out) e->st.requests_timeout++;
            else e->st.requests_cancelled++;
            pthread_mutex_unlock(&e->mu);
            finish_all(e, q, q->timed_out ? QF_FINISH_TIMEOUT : QF_FINISH_CANCELLED, NULL);
            req_free(q);
        }
        for (req *q = e->running; q; q = q->next) {
            pthread_mutex_lock(&e->mu);
            bool cancel = q->cancel, timeout = q->timed_out;
            if ((cancel || timeout) && q->n_live > 0) {
                if (timeout && !cancel) e->st.requests_timeout++;
                else e->st.requests_cancelled++;
            }
            pthread_mutex_unlock(&e->mu);
            if (cancel || timeout) finish_all(e, q, cancel ? QF_FINISH_CANCELLED : QF_FINISH_TIMEOUT, NULL);
        }
        reap(e);
        step(e);
        reap(e);
        pthread_mutex_lock(&e->mu);
    }
    /* shutdown: everything still queued or running ends as cancelled */
    req *q = e->queue;
    e->queue = NULL;
    e->n_queued = 0;
    pthread_mutex_unlock(&e->mu);
    while (q) {
        req *nx = q->next;
        finish_all(e, q, QF_FINISH_CANCELLED, NULL);
        req_free(q);
        q = nx;
    }
    for (req *r = e->running; r; r = r->next) finish_all(e, r, QF_FINISH_CANCELLED, NULL);
    reap(e);
    return NULL;
}

/* ---- construction ---- */

qf_engine *qf_engine_new(const qf_model *m, const qf_engine_params *in, qf_err *err) {
    qf_engine_params p = in ? *in : qf_engine_params_default();
    fill_defaults(m, &p);
    if (!m->tok) {
        QF_ERR_SET(err, QF_ERR_INVALID, "engine: the model was loaded without a tokenizer");
        return NULL;
    }
    qf_mem_plan plan;
    if (qf_engine_plan(m, &p, &plan, err) != QF_OK) return NULL;
    qf_engine *e = qf_calloc(1, sizeof *e);
    if (!e) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->m = m;
    e->p = p;
    e->n_vocab = m->hp.n_vocab;
    e->bs = p.kv_block;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    const qf_cpu_topo *topo = qf_cpu_topo_get();
    e->pool = qf_pool_new(p.n_threads, topo->perf_cpus && p.n_threads <= topo->n_perf ? topo->perf_cpus : NULL, err);
    if (!e->pool) goto fail;
    qf_kv_params kp = qf_model_kv_params(m, p.kv_tokens, p.n_parallel, p.kv_type, p.kv_block);
    e->kv = qf_kv_new(&kp, err);
    if (!e->kv) goto fail;
    /* the GPU when asked for and able (it warns otherwise), else the CPU; the
     * kv bookkeeping stays in e->kv either way (the GPU mirrors its copies) */
    e->gpu = qf_gpu_fwd_try_new(m, &kp, p.n_batch, p.n_ctx, p.n_gpu_layers);
    if (!e->gpu || qf_gpu_fwd_cpu_layers(e->gpu) > 0) {
        /* the CPU runs the model, or its first layers (partial offload) */
        e->fwd = qf_fwd_new(m, e->kv, e->pool, p.n_batch, p.n_ctx, err);
        if (!e->fwd) goto fail;
        if (e->gpu) qf_gpu_fwd_set_cpu(e->gpu, e->fwd);
    }
    size_t nb = (size_t)p.n_batch;
    e->slots = qf_calloc((size_t)p.n_parallel, sizeof *e->slots);
    e->b_tok = qf_calloc(nb, sizeof(int32_t));
    e->b_pos = qf_calloc(nb, sizeof(int32_t));
    e->b_seq = qf_calloc(nb, sizeof(int32_t));
    e->b_want = qf_calloc(nb, 1);
    e->b_req = qf_calloc(nb, sizeof(req *));
    e->b_comp = qf_calloc(nb, sizeof(int32_t));
    e->logits_tmp = qf_calloc((size_t)qf_pool_size(e->pool) * (size_t)e->n_vocab, sizeof(float));
    e->jobs = qf_calloc((size_t)p.n_parallel, sizeof *e->jobs);
    if (!e->slots || !e->b_tok || !e->b_pos || !e->b_seq || !e->b_want || !e->b_req || !e->b_comp || !e->logits_tmp ||
        !e->jobs) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    qf_kv_get_stats(e->kv, &e->kv_snap);
    if (pthread_create(&e->thread, NULL, scheduler_main, e) != 0) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "cannot start the scheduler thread");
        goto fail;
    }
    return e;
fail:
    qf_fwd_free(e->fwd);
    qf_gpu_fwd_free(e->gpu);
    qf_kv_free(e->kv);
    qf_pool_free(e->pool);
    qf_free(e->slots);
    qf_free(e->b_tok);
    qf_free(e->b_pos);
    qf_free(e->b_seq);
    qf_free(e->b_want);
    qf_free(e->b_req);
    qf_free(e->b_comp);
    qf_free(e->logits_tmp);
    qf_free(e->jobs);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    qf_free(e);
    return NULL;
}

void qf_engine_free(qf_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->quit = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    qf_fwd_free(e->fwd);
    qf_gpu_fwd_free(e->gpu);
    qf_kv_free(e->kv);
    qf_pool_free(e->pool);
    qf_gvocab_free(e->gvocab);
    qf_free(e->slots);
    qf_free(e->b_tok);
    qf_free(e->b_pos);
    qf_free(e->b_seq);
    qf_free(e->b_want);
    qf_free(e->b_req);
    qf_free(e->b_comp);
    qf_free(e->logits_tmp);
    qf_free(e->jobs);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    qf_free(e);
}

void qf_engine_get_stats(qf_engine *e, qf_engine_stats *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->st;
    out->queued = e->n_queued;
    int32_t running = 0;
    for (int32_t s = 0; s < e->p.n_parallel; s++) running += e->slots[s] != NULL;
    out->running = running;
    out->n_parallel = e->p.n_parallel;
    out->max_queue = e->p.max_queue;
    out->n_ctx = e->p.n_ctx;
    qf_kv_stats ks = e->kv_snap; /* the kv belongs to the scheduler thread */
    out->kv_blocks_total = ks.total;
    out->kv_blocks_used = ks.used;
    out->kv_blocks_cached = ks.cached;
    out->kv_block_tokens = e->bs;
    out->kv_bytes = qf_kv_pool_bytes(qf_kv_get_params(e->kv));
    pthread_mutex_unlock(&e->mu);
}

const qf_model *qf_engine_model(const qf_engine *e) { return e->m; }

/* ---- blocking convenience ---- */

typedef struct sync_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t n, left;
    char **texts;
    size_t *lens, *caps;
    qf_finish *finish;
    qf_usage usage;
    bool oom;
} sync_ctx;

static void sync_event(void *ud, const qf_event *ev) {
    sync_ctx *s = ud;
    pthread_mutex_lock(&s->mu);
    int32_t i = ev->index;
    if (ev->len > 0) {
        if (s->lens[i] + ev->len + 1 > s->caps[i]) {
            size_t cap = (s->caps[i] + ev->len + 1) * 2;
            char *nt = qf_realloc(s->texts[i], cap);
            if (!nt) s->oom = true;
            else s->texts[i] = nt, s->caps[i] = cap;
        }
        if (s->lens[i] + ev->len + 1 <= s->caps[i]) {
            memcpy(s->texts[i] + s->lens[i], ev->text, ev->len);
            s->lens[i] += ev->len;
            s->texts[i][s->lens[i]] = 0;
        }
    }
    if (ev->finish != QF_FINISH_NONE) {
        s->finish[i] = ev->finish;
        if (i == 0 && ev->usage) s->usage = *ev->usage;
        if (--s->left == 0) pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

qf_status qf_engine_complete(qf_engine *e, const qf_request *r, char **texts, qf_finish *finish, qf_usage *usage,
                             qf_err *err) {
    int32_t n = r->n > 0 ? r->n : 1;
    sync_ctx s = {0};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    s.n = s.left = n;
    s.texts = texts;
    s.finish = finish;
    s.lens = qf_calloc((size_t)n, sizeof(size_t));
    s.caps = qf_calloc((size_t)n, sizeof(size_t));
    qf_status st = QF_OK;
    for (int32_t i = 0; i < n; i++) texts[i] = NULL;
    if (!s.lens || !s.caps) {
        st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int32_t i = 0; i < n; i++) {
        texts[i] = qf_calloc(1, 16);
        s.caps[i] = 16;
        if (!texts[i]) {
            st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    qf_request rr = *r;
    rr.on_event = sync_event;
    rr.ud = &s;
    st = qf_engine_submit(e, &rr, NULL, err);
    if (st != QF_OK) goto out;
    pthread_mutex_lock(&s.mu);
    while (s.left > 0) pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    if (usage) *usage = s.usage;
    if (s.oom) st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory collecting the output");
out:
    if (st != QF_OK)
        for (int32_t i = 0; i < n; i++) {
            qf_free(texts[i]);
            texts[i] = NULL;
        }
    qf_free(s.lens);
    qf_free(s.caps);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    return st;
}

/* ---- chat ---- */

int32_t *qf_engine_chat_tokens(const qf_engine *e, const qf_chat_msg *msgs, size_t n, const char *template_override,
                               int32_t *n_out, qf_err *err) {
    qf_chat_tmpl t = qf_chat_resolve(qf_tok_chat_template(e->m->tok), template_override, err);
    if (t == QF_CHAT_UNKNOWN) return NULL;
    char *text = qf_chat_format(t, msgs, n, true, err);
    if (!text) return NULL;
    int32_t *ids = qf_tok_encode(e->m->tok, text, strlen(text), true, true, n_out, err);
    qf_free(text);
    return ids;
}
