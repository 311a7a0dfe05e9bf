/* provider_engine.c - the embedded engine as a provider.
 *
 * The model is loaded (mmap) at construction, which gives the tokenizer,
 * the context length and the model identity; the engine itself (kv cache,
 * threads) is created on the first submit, so a dry run costs no memory.
 *
 * A request's messages go through the model's chat template (qf_chat_*)
 * and the tokenizer (special tokens parsed), then to qf_engine_submit with
 * n completions: the engine prefills the prompt once and forks it, and its
 * prefix cache reuses blocks of earlier prompts that start the same way
 * (the chunk), e.g. for repair and curation requests. Events arrive on the
 * scheduler thread: token text is appended to the completion's buffer; the
 * final event moves the completion to the done list (mutex + condition
 * variable) where qf_provider_wait picks it up. A submit the engine refuses
 * as busy (queue full) waits in a backlog and is retried from wait.
 *
 * Model identity for cache keys: file name + size + XXH3 of the first and
 * last MiB (holding the metadata and the last tensors), so a different file
 * under the same name gets new keys without hashing gigabytes.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "pipeline/pipeline_int.h"
#include "pipeline/provider.h"

typedef struct ecomp {
    qf_sb text;
    qf_finish finish;
    qf_usage usage;
    char error[128];
} ecomp;

typedef struct ereq {
    struct eng_provider *ep;
    uint64_t tag;
    int32_t n;
    int32_t n_out;          /* completions not yet handed out (main thread only) */
    ecomp *comps;
    int32_t n_left;         /* completions not yet finished (scheduler thread) */
    int32_t *prompt;        /* until submitted */
    int32_t n_prompt;
    qf_request r;           /* filled at first try */
    char *schema;
    struct ereq *next;      /* backlog */
} ereq;

typedef struct edone {
    ereq *q;
    int32_t index;
} edone;

typedef struct eng_provider {
    qf_provider base;
    qf_provider_engine_params p;
    qf_model *model;
    qf_engine *engine;
    qf_chat_tmpl tmpl;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    edone *done;            /* guarded by mu */
    int n_done, cap_done;
    bool done_oom;
    ereq *backlog, *backlog_tail;
    int32_t n_parallel;
} eng_provider;

static void ereq_free(ereq *q) {
    if (!q) return;
    for (int32_t i = 0; i < q->n; i++) qf_sb_free(&q->comps[i].text);
    qf_free(q->comps);
    qf_free(q->prompt);
    qf_free(q->schema);
    qf_free(q);
}

static void on_event(void *ud, const qf_event *ev) {
    ereq *q = ud;
    if (ev->index < 0 || ev->index >= q->n) return;
    ecomp *c = &q->comps[ev->index];
    if (ev->len) qf_sb_append(&c->text, ev->text, ev->len);
    if (ev->finish == QF_FINISH_NONE) return;
    c->finish = ev->finish;
    if (ev->usage) c->usage = *ev->usage;
    if (ev->error) snprintf(c->error, sizeof c->error, "%s", ev->error);
    eng_provider *e = q->ep;
    pthread_mutex_lock(&e->mu);
    if (e->n_done == e->cap_done) {
        int cap = e->cap_done ? e->cap_done * 2 : 64;
        edone *v = qf_realloc(e->done, (size_t)cap * sizeof *v);
        if (v) {
            e->done = v;
            e->cap_done = cap;
        }
    }
    if (e->n_done < e->cap_done) e->done[e->n_done++] = (edone){q, ev->index};
    else e->done_oom = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static qf_status ensure_engine(eng_provider *e, qf_err *err) {
    if (e->engine) return QF_OK;
    qf_engine_params ep = qf_engine_params_default();
    ep.n_ctx = e->base.n_ctx;
    ep.kv_tokens = e->p.kv_tokens;
    ep.n_parallel = e->n_parallel;
    ep.max_queue = e->n_parallel * 4 + 16;
    ep.n_threads = e->p.n_threads;
    ep.n_gpu_layers = e->p.n_gpu_layers;
    ep.kv_type = e->p.kv_type;
    /* 32-position kv blocks: each (block, kv head) piece attention reads
     * is then 4 KB instead of 2 at f16, long enough for the hardware
     * prefetchers; measured on gen's own workload (32 sequences of ~640
     * positions, docs/benchmarks.md): 9-12% less time per generated token
     * than 16. Prefix reuse (repair and curation requests of a chunk) is
     * in whole blocks, so up to 31 prompt tokens more are recomputed. */
    ep.kv_block = 32;
    ep.no_prefix_cache = e->p.no_prefix_cache;
    ep.timeout_s = e->p.timeout_s;
    e->engine = qf_engine_new(e->model, &ep, err);
    if (e->engine)
        qf_debug("engine: %d parallel sequences, kv cache %s for %lld tokens", ep.n_parallel,
                 qf_type_get(ep.kv_type)->name, (long long)ep.kv_tokens);
    return e->engine ? QF_OK : (err && err->code ? err->code : QF_ERR_NOMEM);
}

/* Result for a completion that never ran. */
static void fail_all(eng_provider *e, ereq *q, const char *msg) {
    pthread_mutex_lock(&e->mu);
    for (int32_t i = 0; i < q->n; i++) {
        q->comps[i].finish = QF_FINISH_ERROR;
        snprintf(q->comps[i].error, sizeof q->comps[i].error, "%s", msg);
        if (e->n_done == e->cap_done) {
            int cap = e->cap_done ? e->cap_done * 2 : 64;
            edone *v = qf_realloc(e->done, (size_t)cap * sizeof *v);
            if (!v) {
                e->done_oom = true;
                continue;
            }
            e->done = v;
            e->cap_done = cap;
        }
        e->done[e->n_done++] = (edone){q, i};
    }
    pthread_mutex_unlock(&e->mu);
}

/* Submit to the engine: true when accepted or failed for good, false when
 * the engine is busy (try later). */
static bool try_submit(eng_provider *e, ereq *q) {
    qf_err err = {0};
    if (ensure_engine(e, &err) != QF_OK) {
        fail_all(e, q, err.msg);
        return true;
    }
    q->n_left = q->n;
    qf_status st = qf_engine_submit(e->engine, &q->r, NULL, &err);
    if (st == QF_ERR_BUSY) return false;
    if (st != QF_OK) fail_all(e, q, err.msg);
    return true;
}

static void pump_backlog(eng_provider *e) {
    while (e->backlog) {
        ereq *q = e->backlog;
        if (!try_submit(e, q)) break;
        e->backlog = q->next;
        if (!e->backlog) e->backlog_tail = NULL;
        e->base.stats.waiting--;
    }
}

static qf_status eng_submit(qf_provider *pv, const qf_preq *r, qf_err *err) {
    eng_provider *e = (eng_provider *)pv;
    int32_t n = r->n > 0 ? r->n : 1;
    if (n > e->n_parallel)
        return QF_ERR_SET(err, QF_ERR_INVALID, "request: %d completions but only %d parallel sequences", n,
                          e->n_parallel);
    char *text = qf_chat_format(e->tmpl, r->msgs, (size_t)r->n_msgs, true, err);
    if (!text) return err && err->code ? err->code : QF_ERR_NOMEM;
    int32_t n_tok = 0;
    int32_t *toks = qf_tok_encode(e->model->tok, text, strlen(text), true, true, &n_tok, err);
    qf_free(text);
    if (!toks) return err && err->code ? err->code : QF_ERR_NOMEM;
    ereq *q = qf_calloc(1, sizeof *q);
    if (!q || !(q->comps = qf_calloc((size_t)n, sizeof *q->comps)) ||
        (r->json_schema && !(q->schema = qf_strdup(r->json_schema)))) {
        qf_free(toks);
        ereq_free(q);
        return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    }
    q->ep = e;
    q->tag = r->tag;
    q->n = n;
    q->n_out = n;
    q->prompt = toks;
    q->n_prompt = n_tok;
    qf_request *er = &q->r;
    memset(er, 0, sizeof *er);
    er->prompt = q->prompt;
    er->n_prompt = q->n_prompt;
    er->sample = qf_sample_params_default();
    er->sample.temperature = r->temperature;
    er->sample.top_p = r->top_p > 0 ? r->top_p : 1.0f;
    er->sample.top_k = 0;
    er->sample.min_p = 0.05f;
    er->sample.seed = r->seed;
    er->max_tokens = r->max_tokens;
    er->n = n;
    er->timeout_s = e->p.timeout_s;
    er->overflow = QF_OVERFLOW_REFUSE;
    er->json_schema = q->schema;
    er->on_event = on_event;
    er->ud = q;
    if (e->backlog || !try_submit(e, q)) {
        q->next = NULL;
        if (e->backlog_tail) e->backlog_tail->next = q;
        else e->backlog = q;
        e->backlog_tail = q;
        e->base.stats.waiting++;
    }
    return QF_OK;
}

static int eng_wait(qf_provider *pv, qf_presult *out, int cap, double timeout_s) {
    eng_provider *e = (eng_provider *)pv;
    pump_backlog(e);
    pthread_mutex_lock(&e->mu);
    if (e->n_done == 0 && timeout_s > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)(timeout_s * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    }
    int n = e->n_done < cap ? e->n_done : cap;
    edone got[64];
    if (n > 64) n = 64;
    if (n > 0) {
        memcpy(got, e->done, (size_t)n * sizeof *got);
        memmove(e->done, e->done + n, (size_t)(e->n_done - n) * sizeof *e->done);
        e->n_done -= n;
    }
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < n; i++) {
        ereq *q = got[i].q;
        ecomp *c = &q->comps[got[i].index];
        qf_presult *r = &out[i];
        memset(r, 0, sizeof *r);
        r->tag = q->tag;
        r->index = got[i].index;
        r->attempts = 1;
        r->tokens_in = c->usage.prompt_tokens - c->usage.cached_tokens;
        if (r->tokens_in < 0) r->tokens_in = 0;
        /* forked completions share completion 0's prompt: count it once */
        if (got[i].index > 0) r->tokens_in = 0;
        r->tokens_cached = got[i].index == 0 ? c->usage.cached_tokens : 0;
        r->tokens_out = c->usage.completion_tokens;
        snprintf(r->finish, sizeof r->finish, "%s", qf_finish_name(c->finish));
        if (c->finish == QF_FINISH_STOP || c->finish == QF_FINISH_LENGTH) {
            r->status = QF_OK;
            r->text = qf_sb_take(&c->text, &r->len);
            if (!r->text) {
                r->status = QF_ERR_NOMEM;
                snprintf(r->reason, sizeof r->reason, "engine");
                snprintf(r->detail, sizeof r->detail, "out of memory");
            }
        } else {
            r->status = c->finish == QF_FINISH_TIMEOUT ? QF_ERR_TIMEOUT
                        : c->finish == QF_FINISH_CANCELLED ? QF_ERR_CANCELLED
                                                           : QF_ERR_INTERNAL;
            snprintf(r->reason, sizeof r->reason, "%s",
                     c->finish == QF_FINISH_TIMEOUT ? "timeout"
                     : c->finish == QF_FINISH_CANCELLED ? "cancelled"
                                                        : "engine");
            snprintf(r->detail, sizeof r->detail, "%s", c->error[0] ? c->error : qf_finish_name(c->finish));
        }
        if (--q->n_out == 0) ereq_free(q);
    }
    pump_backlog(e);
    return n;
}

static int32_t eng_count(const qf_provider *pv, const char *text, size_t len) {
    const eng_provider *e = (const eng_provider *)pv;
    int32_t n = 0;
    int32_t *t = qf_tok_encode(e->model->tok, text, len, false, false, &n, NULL);
    if (!t) return -1;
    qf_free(t);
    return n;
}

static void eng_free(qf_provider *pv) {
    eng_provider *e = (eng_provider *)pv;
    if (e->engine) {
        qf_engine_stats st;
        qf_engine_get_stats(e->engine, &st);
        qf_debug("engine: %llu steps, %.2f s in forward passes, %llu tokens generated (%.2f per step), %llu prompt "
                 "tokens computed, %llu from the prefix cache",
                 (unsigned long long)st.steps, st.busy_s, (unsigned long long)st.generated_tokens_total,
                 st.steps ? (double)st.generated_tokens_total / (double)st.steps : 0.0,
                 (unsigned long long)st.prompt_tokens_computed, (unsigned long long)st.prefix_hit_tokens);
    }
    /* freeing the engine delivers final events for everything in flight */
    qf_engine_free(e->engine);
    for (ereq *q = e->backlog, *n; q; q = n) {
        n = q->next;
        ereq_free(q);
    }
    /* completions delivered but never handed out */
    for (int i = 0; i < e->n_done; i++) {
        ereq *q = e->done[i].q;
        if (--q->n_out == 0) ereq_free(q);
    }
    qf_free(e->done);
    qf_model_free(e->model);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    qf_free(e);
}

static const qf_provider_vt k_eng_vt = {eng_submit, eng_wait, eng_count, eng_free};

static void model_identity(eng_provider *e, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    uint64_t h = 0;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &st) == 0) {
        size_t cap = 1u << 20;
        char *buf = qf_malloc(2 * cap + 16);
        if (buf) {
            ssize_t a = pread(fd, buf, cap, 0);
            off_t off = st.st_size > (off_t)cap ? st.st_size - (off_t)cap : 0;
            ssize_t b = pread(fd, buf + (a > 0 ? a : 0), cap, off);
            size_t n = (size_t)(a > 0 ? a : 0) + (size_t)(b > 0 ? b : 0);
            memcpy(buf + n, &st.st_size, sizeof st.st_size);
            h = qf_hash64_of(buf, n + sizeof st.st_size);
            qf_free(buf);
        }
    }
    if (fd >= 0) close(fd);
    snprintf(e->base.model_id, sizeof e->base.model_id, "gguf:%s#%016llx", base, (unsigned long long)h);
    snprintf(e->base.model_name, sizeof e->base.model_name, "%s", base);
}

qf_provider *qf_provider_engine_new(const qf_provider_engine_params *p, qf_err *err) {
    if (!p || !p->model_path) {
        QF_ERR_SET(err, QF_ERR_INVALID, "engine provider: a model path is required");
        return NULL;
    }
    eng_provider *e = qf_calloc(1, sizeof *e);
    if (!e) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->base.vt = &k_eng_vt;
    e->p = *p;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->model = qf_model_load(p->model_path, NULL, err);
    if (!e->model) goto fail;
    if (!e->model->tok) {
        QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "%s: the model has no tokenizer", p->model_path);
        goto fail;
    }
    e->tmpl = qf_chat_resolve(qf_tok_chat_template(e->model->tok), p->chat_template, err);
    if (e->tmpl == QF_CHAT_UNKNOWN) goto fail;
    int32_t train = e->model->hp.n_ctx_train;
    e->base.n_ctx = p->n_ctx > 0 ? p->n_ctx : (train > 0 && train < 4096 ? train : 4096);
    e->n_parallel = p->n_parallel > 0 ? p->n_parallel : 8;
    model_identity(e, p->model_path);
    return &e->base;
fail:
    eng_free(&e->base);
    return NULL;
}
