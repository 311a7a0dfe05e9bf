/* gen.c - orchestration of `qforge gen`.
 *
 * Threads: `workers` threads open documents and chunk them, pushing chunk
 * jobs into a bounded queue (back-pressure keeps memory flat on big
 * corpora). The main thread owns everything else: the job store (SQLite is
 * used from this thread only), the provider, the dedup index and the
 * writers.
 *
 * A chunk job asks for all its generation passes at once (one request with
 * n = passes: the engine computes the chunk's prompt once and forks it),
 * after looking each pass up in the response cache. Replies are parsed;
 * a malformed one gets one repair request (the conversation continued with
 * the bad reply and a repair prompt, so it shares the chunk prefix too);
 * accepted pairs may get curation requests (again starting with the chunk).
 * When nothing of a chunk is outstanding it is finished and queued for
 * commit.
 *
 * Commit (every ~0.5 s, or at the end): the finished chunks' lines are
 * appended and fsynced, then one transaction stores their pairs, failures,
 * chunk states, finished documents and the new file sizes. A crash before
 * the transaction leaves lines past the recorded size: the next run cuts
 * them and redoes those chunks from the cache. Nothing is lost, nothing is
 * written twice.
 *
 * Metrics: the report's counters are mirrored into a qf_metrics registry
 * (names in report.h) and a JSON snapshot of it goes into the job store
 * about once a second (and once more, with the final state, at the end),
 * so `qforge top --db` can follow the job from another process.
 */
#include "pipeline/gen.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "pipeline/chunk.h"
#include "pipeline/dedup.h"
#include "pipeline/ingest.h"
#include "pipeline/parse.h"
#include "pipeline/pipeline_int.h"
#include "pipeline/prompt.h"
#include "pipeline/store.h"

#define FLUSH_INTERVAL_S 0.5
#define FLUSH_MAX_CHUNKS 64
#define SNAPSHOT_INTERVAL_S 1.0

/* ---- job structures ---- */

typedef struct qaitem {
    char *q, *a;
    int32_t pass, k;
    int32_t score;
    qf_pair_status status;
    char id[33];
    char dup_of[33];
} qaitem;

typedef struct failitem {
    int32_t pass;
    char reason[24];
    char *detail;
} failitem;

typedef struct cjob {
    int doc;
    int32_t idx;
    size_t start, end;
    int32_t n_tokens;
    char *text;   /* NUL-terminated copy of the chunk */
    char *user;   /* rendered generate prompt */
    int pending;  /* provider completions outstanding */
    qaitem *qa;
    int n_qa, cap_qa;
    failitem *fail;
    int n_fail, cap_fail;
    struct cjob *next;
} cjob;

typedef enum rq_kind { RQ_GEN, RQ_REPAIR, RQ_CURATE } rq_kind;

typedef struct rq {
    cjob *c;
    rq_kind kind;
    int32_t pass0, n;   /* passes pass0 .. pass0+n-1 */
    int qa;             /* curate: index in c->qa */
    char *bad;          /* repair: the reply being repaired */
    char *err_msg;      /* repair: why it was refused */
    qf_chat_msg msgs[4];
    int n_msgs;
    char *owned[2];     /* strings in msgs owned by this rq */
    qf_cache_key *keys; /* (n) */
    int32_t left;       /* completions not yet handled; freed at 0 */
    int32_t max_tokens;
    float temperature;
    const char *schema;
    struct rq *next;    /* naive mode serial queue */
} rq;

/* Single flight: a pass whose cache key is already being computed waits
 * for that reply instead of computing it again (identical chunks in a
 * corpus, identical repair or curate prompts). One flight per key in
 * g->fl (FL_BUCKETS chains); its waiters hold their pass pending. */
typedef struct waiter {
    struct rq *r;
    int32_t pass;
    struct waiter *next;
} waiter;

typedef struct flight {
    qf_cache_key key;
    waiter *w;
    struct flight *next;
} flight;

enum { FL_BUCKETS = 1024 };

/* One provider submission: passes run0 .. run0+n-1 of an rq. */
typedef struct sub {
    rq *r;
    int32_t run0, left;
} sub;

typedef struct gdoc {
    qf_input *in;
    int64_t id;
    int32_t n_chunks;   /* -1 until chunked */
    int32_t n_done;     /* committed chunks (resumed included) */
    bool failed, finished, mark_pending;
} gdoc;

enum { W_CHUNK, W_DOC_END, W_DOC_ERROR };

typedef struct witem {
    int type;
    int doc;
    cjob *c;
    int32_t n_chunks;
    char *err;
    struct witem *next;
} witem;

typedef struct gen {
    const qf_gen_opts *o;
    qf_gen_report *rep;
    qf_provider *prov;
    bool own_prov;
    qf_prompts *prompts;
    qf_store *store;
    qf_writer *out, *rej;
    qf_dedup *dedup;
    char *db_path, *rej_path;
    qf_inputs inputs;
    gdoc *docs;
    int n_docs;
    int *todo;
    int n_todo;
    /* derived settings */
    qf_preset ps;
    int32_t chunk_tokens, chunk_overlap, max_tokens;
    float top_p;
    char *gen_schema;
    const char *model_name;
    /* worker queue */
    pthread_mutex_t mu;
    pthread_cond_t cv_push, cv_pop;
    witem *qhead, *qtail;
    int q_chunks, q_cap;
    int workers_live;
    atomic_int next_todo;
    atomic_bool abort;
    double ingest_s;
    pthread_t *threads;
    int n_threads;
    /* main-thread state */
    int chunks_in_flight;
    cjob *commit_head, *commit_tail;
    int n_commit;
    double last_flush;
    rq *serial_head, *serial_tail; /* naive mode */
    flight **fl;                   /* (FL_BUCKETS) keys being computed, or NULL */
    int64_t new_docs_done;
    qf_progress prog;
    qf_status fatal;
    qf_err fatal_err;
    /* metrics (NULL when the registry could not be made: the job runs on) */
    qf_metrics *metrics;
    double snap_t;            /* last snapshot written (qf_now_s) */
    double rate_t, tok_rate;  /* generated tokens/s over the last ~second */
    int64_t rate_tok;
} gen;

/* ---- small helpers ---- */

static void set_fatal(gen *g, const qf_err *e) {
    if (g->fatal != QF_OK) return;
    g->fatal = e->code ? e->code : QF_ERR_INTERNAL;
    g->fatal_err = *e;
    if (!g->fatal_err.code) g->fatal_err.code = g->fatal;
}

char *qf_gen_db_path(const char *output) {
    size_t n = strlen(output) + 16;
    char *p = qf_malloc(n);
    if (p) snprintf(p, n, "%s.qforge.db", output);
    return p;
}

char *qf_gen_rejects_path(const char *output) {
    size_t n = strlen(output);
    size_t base = qf_str_ends_with_ci(output, ".jsonl") ? n - 6 : n;
    char *p = qf_malloc(base + 32);
    if (p) snprintf(p, base + 32, "%.*s.rejects.jsonl", (int)base, output);
    return p;
}

void qf_gen_opts_default(qf_gen_opts *o) {
    memset(o, 0, sizeof *o);
    qf_preset_builtin("speed", &o->preset);
    o->format = QF_FORMAT_QA;
    o->seed = 42;
    o->chunk_overlap = -1;
    o->retries = -1;
    o->near_dedup = true;
    o->n_gpu_layers = qf_engine_params_default().n_gpu_layers;
    o->kv_type = QF_TYPE_F16;
}

static int32_t count_cb(void *ud, const char *t, size_t n) {
    gen *g = ud;
    int32_t c = g->prov ? qf_provider_count_tokens(g->prov, t, n) : -1;
    return c < 0 ? qf_chunk_estimate_tokens(t, n) : c;
}

/* Characters (UTF-8 code points) of s. */
static size_t n_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void cjob_free(cjob *c) {
    if (!c) return;
    for (int i = 0; i < c->n_qa; i++) {
        qf_free(c->qa[i].q);
        qf_free(c->qa[i].a);
    }
    for (int i = 0; i < c->n_fail; i++) qf_free(c->fail[i].detail);
    qf_free(c->qa);
    qf_free(c->fail);
    qf_free(c->text);
    qf_free(c->user);
    qf_free(c);
}

static void rq_free(rq *r) {
    if (!r) return;
    qf_free(r->bad);
    qf_free(r->err_msg);
    qf_free(r->owned[0]);
    qf_free(r->owned[1]);
    qf_free(r->keys);
    qf_free(r);
}

static void add_fail(gen *g, cjob *c, int32_t pass, const char *reason, const char *detail) {
    if (c->n_fail == c->cap_fail) {
        int cap = c->cap_fail ? c->cap_fail * 2 : 4;
        failitem *v = qf_realloc(c->fail, (size_t)cap * sizeof *v);
        if (!v) {
            qf_err e;
            QF_ERR_SET(&e, QF_ERR_NOMEM, "out of memory");
            set_fatal(g, &e);
            return;
        }
        c->fail = v;
        c->cap_fail = cap;
    }
    failitem *f = &c->fail[c->n_fail++];
    f->pass = pass;
    snprintf(f->reason, sizeof f->reason, "%s", reason);
    f->detail = qf_strdup(detail ? detail : "");
    qf_debug("%s chunk %d pass %d: %s: %s", g->docs[c->doc].in->path, c->idx, pass, reason, detail ? detail : "");
}

/* ---- worker queue ---- */

static bool queue_push(gen *g, witem *it) {
    pthread_mutex_lock(&g->mu);
    while (it->type == W_CHUNK && g->q_chunks >= g->q_cap && !atomic_load(&g->abort))
        pthread_cond_wait(&g->cv_push, &g->mu);
    if (atomic_load(&g->abort)) {
        pthread_mutex_unlock(&g->mu);
        return false;
    }
    it->next = NULL;
    if (g->qtail) g->qtail->next = it;
    else g->qhead = it;
    g->qtail = it;
    if (it->type == W_CHUNK) g->q_chunks++;
    pthread_cond_signal(&g->cv_pop);
    pthread_mutex_unlock(&g->mu);
    return true;
}

/* Next item, waiting up to wait_s; NULL when none. *all_done: workers have
 * finished and the queue is empty. */
static witem *queue_pop(gen *g, double wait_s, bool *all_done) {
    pthread_mutex_lock(&g->mu);
    if (!g->qhead && g->workers_live > 0 && wait_s > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)(wait_s * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&g->cv_pop, &g->mu, &ts);
    }
    witem *it = g->qhead;
    if (it) {
        g->qhead = it->next;
        if (!g->qhead) g->qtail = NULL;
        if (it->type == W_CHUNK) {
            g->q_chunks--;
            pthread_cond_signal(&g->cv_push);
        }
    }
    *all_done = !g->qhead && g->workers_live == 0;
    pthread_mutex_unlock(&g->mu);
    return it;
}

static void witem_free(witem *it) {
    if (!it) return;
    cjob_free(it->c);
    qf_free(it->err);
    qf_free(it);
}

static void *worker_main(void *arg) {
    gen *g = arg;
    qf_cpu_place_self(QF_THREAD_IO); /* ingest and chunking: off the compute cores where there are others */
    qf_ingest_opts io = {g->o->jsonl_field};
    qf_chunk_params cp = {g->chunk_tokens, g->chunk_overlap, count_cb, g};
    for (;;) {
        int t = atomic_fetch_add(&g->next_todo, 1);
        if (t >= g->n_todo || atomic_load(&g->abort)) break;
        int di = g->todo[t];
        qf_input *in = g->docs[di].in;
        double t0 = qf_now_s();
        qf_err err = {0};
        qf_doc *d = qf_doc_open(in->path, in->kind, &io, &err);
        qf_chunk *ch = NULL;
        int32_t nch = 0;
        if (d && qf_chunk_text(d->text, d->len, d->breaks, d->n_breaks, &cp, &ch, &nch, &err) != QF_OK) {
            qf_doc_close(d);
            d = NULL;
        }
        if (d && d->n_repaired) qf_warn("%s: %zu invalid UTF-8 sequences replaced by U+FFFD", in->path, d->n_repaired);
        double dt = qf_now_s() - t0;
        pthread_mutex_lock(&g->mu);
        g->ingest_s += dt;
        pthread_mutex_unlock(&g->mu);
        if (!d) {
            witem *it = qf_calloc(1, sizeof *it);
            if (!it) break;
            it->type = W_DOC_ERROR;
            it->doc = di;
            it->err = qf_strdup(err.msg[0] ? err.msg : "unreadable");
            if (!queue_push(g, it)) {
                witem_free(it);
                break;
            }
            continue;
        }
        bool ok = true;
        for (int32_t i = 0; i < nch && ok; i++) {
            witem *it = qf_calloc(1, sizeof *it);
            cjob *c = qf_calloc(1, sizeof *c);
            char *text = qf_strndup(d->text + ch[i].start, ch[i].end - ch[i].start);
            if (!it || !c || !text) {
                qf_free(it);
                qf_free(c);
                qf_free(text);
                ok = false;
                break;
            }
            c->doc = di;
            c->idx = i;
            c->start = ch[i].start;
            c->end = ch[i].end;
            c->n_tokens = ch[i].n_tokens;
            c->text = text;
            it->type = W_CHUNK;
            it->doc = di;
            it->c = c;
            if (!queue_push(g, it)) {
                witem_free(it);
                ok = false;
            }
        }
        qf_free(ch);
        qf_doc_close(d);
        if (!ok) break;
        witem *it = qf_calloc(1, sizeof *it);
        if (!it) break;
        it->type = W_DOC_END;
        it->doc = di;
        it->n_chunks = nch;
        if (!queue_push(g, it)) {
            witem_free(it);
            break;
        }
    }
    pthread_mutex_lock(&g->mu);
    g->workers_live--;
    pthread_cond_broadcast(&g->cv_pop);
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* ---- cache keys ---- */

static qf_cache_key make_key(gen *g, const rq *r, int32_t pass) {
    qf_hasher *h = qf_hasher_new();
    qf_hasher_str(h, "qforge-gen-v1");
    qf_hasher_str(h, qf_provider_model_id(g->prov));
    qf_hasher_u64(h, (uint64_t)r->kind);
    for (int i = 0; i < r->n_msgs; i++) {
        qf_hasher_str(h, r->msgs[i].role);
        qf_hasher_str(h, r->msgs[i].content);
    }
    char buf[96];
    snprintf(buf, sizeof buf, "t=%.4f p=%.4f m=%d", r->temperature, g->top_p, r->max_tokens);
    qf_hasher_str(h, buf);
    qf_hasher_str(h, r->schema);
    qf_hasher_u64(h, g->o->seed + (uint64_t)pass);
    qf_hasher_u64(h, (uint64_t)pass);
    qf_hash128 x = qf_hasher_done(h);
    qf_cache_key k;
    for (int i = 0; i < 8; i++) {
        k.b[i] = (uint8_t)(x.hi >> (56 - 8 * i));
        k.b[8 + i] = (uint8_t)(x.lo >> (56 - 8 * i));
    }
    return k;
}

/* ---- requests ---- */

static void on_text(gen *g, rq *r, int32_t pass, const char *text, size_t len, const char *finish);
static void chunk_maybe_done(gen *g, cjob *c);

static void rq_done_one(rq *r) {
    if (--r->left == 0) rq_free(r);
}

static waiter *fl_land(gen *g, const qf_cache_key *k);
static void fl_deliver(gen *g, waiter *w, bool ok, const char *text, size_t len, const char *finish);

static bool submit_now(gen *g, rq *r, int32_t run0, int32_t n) {
    qf_err err = {0};
    sub *sb = qf_calloc(1, sizeof *sb);
    qf_status st;
    if (!sb) {
        st = QF_ERR_SET(&err, QF_ERR_NOMEM, "out of memory");
    } else {
        sb->r = r;
        sb->run0 = run0;
        sb->left = n;
        qf_preq q;
        memset(&q, 0, sizeof q);
        q.tag = (uint64_t)(uintptr_t)sb;
        q.msgs = r->msgs;
        q.n_msgs = r->n_msgs;
        q.n = n;
        q.temperature = r->temperature;
        q.top_p = g->top_p;
        q.seed = g->o->seed + (uint64_t)run0;
        q.max_tokens = r->max_tokens;
        q.json_schema = r->schema;
        st = qf_provider_submit(g->prov, &q, &err);
    }
    if (st != QF_OK) {
        qf_free(sb);
        cjob *c = r->c;
        for (int32_t i = 0; i < n; i++) {
            add_fail(g, c, run0 + i, "submit", err.msg);
            c->pending--;
            /* anyone waiting for these passes must compute them */
            fl_deliver(g, fl_land(g, &r->keys[run0 + i - r->pass0]), false, NULL, 0, NULL);
        }
        if (err.code == QF_ERR_NOMEM || err.code == QF_ERR_INTERNAL) set_fatal(g, &err);
        r->left -= n; /* dispatch holds one more; a resend from fl_deliver may free r here */
        if (r->left == 0) rq_free(r);
        return false;
    }
    return true;
}

static flight **fl_slot(gen *g, const qf_cache_key *k) {
    uint32_t h = (uint32_t)k->b[0] | (uint32_t)k->b[1] << 8 | (uint32_t)k->b[2] << 16;
    flight **p = &g->fl[h % FL_BUCKETS];
    while (*p && memcmp((*p)->key.b, k->b, sizeof k->b)) p = &(*p)->next;
    return p;
}

/* Pass `pass` of r misses the cache: true when an identical request is in
 * flight and r now waits for its reply; false when r must compute it (and
 * is registered as the one computing it). Out of memory: computed, not
 * shared. */
static bool fl_join(gen *g, rq *r, int32_t pass, const qf_cache_key *k) {
    if (!g->fl && !(g->fl = qf_calloc(FL_BUCKETS, sizeof *g->fl))) return false;
    flight **p = fl_slot(g, k);
    if (*p) {
        waiter *w = qf_calloc(1, sizeof *w);
        if (!w) return false;
        w->r = r;
        w->pass = pass;
        w->next = (*p)->w;
        (*p)->w = w;
        return true;
    }
    flight *f = qf_calloc(1, sizeof *f);
    if (f) {
        f->key = *k;
        *p = f;
    }
    return false;
}

/* The flight for k has landed: unlink it and return its waiters. */
static waiter *fl_land(gen *g, const qf_cache_key *k) {
    if (!g->fl) return NULL;
    flight **p = fl_slot(g, k);
    flight *f = *p;
    if (!f) return NULL;
    *p = f->next;
    waiter *w = f->w;
    qf_free(f);
    return w;
}

static bool submit_now(gen *g, rq *r, int32_t run0, int32_t n);

/* Hand the reply of a landed flight to its waiters (ok), or compute it
 * again for them (the flight failed: the first waiter computes, the others
 * wait on it). Each waiter's pass is released as a cache hit would be. */
static void fl_deliver(gen *g, waiter *w, bool ok, const char *text, size_t len, const char *finish) {
    while (w) {
        waiter *n = w->next;
        rq *r = w->r;
        cjob *c = r->c;
        if (ok) {
            g->rep->cache_hits++;
            g->rep->cache_shared++;
            on_text(g, r, w->pass, text, len, finish);
            c->pending--;
            rq_done_one(r);
            chunk_maybe_done(g, c);
        } else if (!fl_join(g, r, w->pass, &r->keys[w->pass - r->pass0])) {
            /* the first waiter computes it; the others wait on it */
            if (!submit_now(g, r, w->pass, 1)) chunk_maybe_done(g, c);
        }
        qf_free(w);
        w = n;
    }
}

/* Look each pass up in the cache; ask the provider for the rest (runs of
 * consecutive missing passes go as one request with n > 1). The caller
 * holds a reference on r->c (pending) and checks completion afterwards. */
static void dispatch(gen *g, rq *r) {
    cjob *c = r->c;
    r->keys = qf_calloc((size_t)r->n, sizeof *r->keys);
    if (!r->keys) {
        qf_err e;
        QF_ERR_SET(&e, QF_ERR_NOMEM, "out of memory");
        set_fatal(g, &e);
        rq_free(r);
        return;
    }
    r->left = r->n + 1; /* +1: this function */
    c->pending += r->n;
    int32_t run0 = -1;
    for (int32_t i = 0; i < r->n; i++) {
        int32_t pass = r->pass0 + i;
        r->keys[i] = make_key(g, r, pass);
        g->rep->cache_lookups++;
        char *text = NULL;
        size_t len = 0;
        qf_cache_info info;
        if (qf_store_cache_get(g->store, &r->keys[i], &text, &len, &info, NULL) == QF_OK) {
            g->rep->cache_hits++;
            if (run0 >= 0) {
                submit_now(g, r, run0, pass - run0);
                run0 = -1;
            }
            on_text(g, r, pass, text, len, info.finish);
            qf_free(text);
            c->pending--;
            r->left--;
        } else if (!g->o->naive && fl_join(g, r, pass, &r->keys[i])) {
            /* waits for the identical request in flight (held pending) */
            if (run0 >= 0) {
                submit_now(g, r, run0, pass - run0);
                run0 = -1;
            }
        } else if (run0 < 0) {
            run0 = pass;
        }
    }
    if (run0 >= 0) submit_now(g, r, run0, r->pass0 + r->n - run0);
    rq_done_one(r);
}


static rq *rq_new(cjob *c, rq_kind kind, int32_t pass0, int32_t n) {
    rq *r = qf_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->c = c;
    r->kind = kind;
    r->pass0 = pass0;
    r->n = n;
    r->qa = -1;
    return r;
}

/* Naive mode queues requests to go out one at a time (the main loop sends
 * the next when the provider is idle), holding the chunk meanwhile;
 * otherwise they are dispatched now. */
static void send_rq(gen *g, rq *r) {
    if (!g->o->naive) {
        dispatch(g, r);
        return;
    }
    r->next = NULL;
    if (g->serial_tail) g->serial_tail->next = r;
    else g->serial_head = r;
    g->serial_tail = r;
    r->c->pending++;
}

static void oom_fatal(gen *g) {
    qf_err e;
    QF_ERR_SET(&e, QF_ERR_NOMEM, "out of memory");
    set_fatal(g, &e);
}

static void start_gen(gen *g, cjob *c) {
    char nbuf[16], mbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", g->ps.qa_pairs_per_chunk);
    snprintf(mbuf, sizeof mbuf, "%d", g->ps.min_answer_length);
    qf_prompt_var vars[] = {{"chunk", c->text}, {"n", nbuf}, {"min_chars", mbuf},
                            {"source", g->docs[c->doc].in->path}};
    qf_err err = {0};
    c->user = qf_prompt_render(qf_prompts_text(g->prompts, QF_PROMPT_GENERATE), vars, 4, &err);
    if (!c->user) {
        set_fatal(g, &err);
        return;
    }
    int32_t passes = g->ps.generation_passes;
    int32_t per = g->o->naive ? 1 : passes;
    for (int32_t p0 = 0; p0 < passes; p0 += per) {
        rq *r = rq_new(c, RQ_GEN, p0, per);
        if (!r) {
            QF_ERR_SET(&err, QF_ERR_NOMEM, "out of memory");
            set_fatal(g, &err);
            return;
        }
        r->msgs[0] = (qf_chat_msg){"system", qf_prompts_text(g->prompts, QF_PROMPT_SYSTEM)};
        r->msgs[1] = (qf_chat_msg){"user", c->user};
        r->n_msgs = 2;
        r->temperature = g->ps.temperature;
        r->max_tokens = g->max_tokens;
        r->schema = g->gen_schema;
        send_rq(g, r);
    }
}

static void start_repair(gen *g, cjob *c, int32_t pass, const char *bad, const char *why) {
    rq *r = rq_new(c, RQ_REPAIR, pass, 1);
    if (!r) {
        oom_fatal(g);
        return;
    }
    char nbuf[16], mbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", g->ps.qa_pairs_per_chunk);
    snprintf(mbuf, sizeof mbuf, "%d", g->ps.min_answer_length);
    qf_prompt_var vars[] = {{"error", why}, {"n", nbuf}, {"min_chars", mbuf}};
    qf_err err = {0};
    r->owned[0] = qf_prompt_render(qf_prompts_text(g->prompts, QF_PROMPT_REPAIR), vars, 3, &err);
    /* the refused reply is cut to keep the conversation within the context */
    size_t bl = strlen(bad);
    if (bl > 4000) bl = qf_utf8_floor(bad, 4000);
    r->owned[1] = qf_strndup(bad, bl);
    if (!r->owned[0] || !r->owned[1]) {
        if (!err.code) QF_ERR_SET(&err, QF_ERR_NOMEM, "out of memory");
        set_fatal(g, &err);
        rq_free(r);
        return;
    }
    r->msgs[0] = (qf_chat_msg){"system", qf_prompts_text(g->prompts, QF_PROMPT_SYSTEM)};
    r->msgs[1] = (qf_chat_msg){"user", c->user};
    r->msgs[2] = (qf_chat_msg){"assistant", r->owned[1]};
    r->msgs[3] = (qf_chat_msg){"user", r->owned[0]};
    r->n_msgs = 4;
    r->temperature = g->ps.temperature;
    r->max_tokens = g->max_tokens;
    r->schema = g->gen_schema;
    send_rq(g, r);
}

static const char *k_curate_schema =
    "{\"type\":\"object\",\"properties\":{\"score\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10}},"
    "\"required\":[\"score\"]}";

static void start_curate(gen *g, cjob *c, int qa) {
    rq *r = rq_new(c, RQ_CURATE, c->qa[qa].pass, 1);
    if (!r) {
        oom_fatal(g);
        return;
    }
    r->qa = qa;
    qf_prompt_var vars[] = {{"chunk", c->text},
                            {"question", c->qa[qa].q},
                            {"answer", c->qa[qa].a},
                            {"source", g->docs[c->doc].in->path}};
    qf_err err = {0};
    r->owned[0] = qf_prompt_render(qf_prompts_text(g->prompts, QF_PROMPT_CURATE), vars, 4, &err);
    if (!r->owned[0]) {
        set_fatal(g, &err);
        rq_free(r);
        return;
    }
    r->msgs[0] = (qf_chat_msg){"system", qf_prompts_text(g->prompts, QF_PROMPT_SYSTEM)};
    r->msgs[1] = (qf_chat_msg){"user", r->owned[0]};
    r->n_msgs = 2;
    r->temperature = 0;
    r->max_tokens = 16;
    r->schema = k_curate_schema;
    /* the rq's pass only selects the cache key; the pair index is in the prompt */
    send_rq(g, r);
}

/* ---- replies ---- */

static void make_id(gen *g, cjob *c, int32_t pass, int32_t k, const char *q, char out[33]) {
    qf_hasher *h = qf_hasher_new();
    qf_hasher_str(h, g->docs[c->doc].in->path);
    qf_hasher_u64(h, (uint64_t)c->idx);
    qf_hasher_u64(h, (uint64_t)c->start);
    qf_hasher_u64(h, (uint64_t)c->end);
    qf_hasher_u64(h, (uint64_t)pass);
    qf_hasher_u64(h, (uint64_t)k);
    qf_hasher_str(h, q);
    qf_hash128 x = qf_hasher_done(h);
    snprintf(out, 33, "%016llx", (unsigned long long)(x.hi ^ x.lo));
}

static void add_pairs(gen *g, cjob *c, int32_t pass, qf_qa_list *l) {
    int32_t keep = l->n < g->ps.qa_pairs_per_chunk ? l->n : g->ps.qa_pairs_per_chunk;
    for (int32_t k = 0; k < keep; k++) {
        qf_qa *qa = &l->v[k];
        size_t alen = n_chars(qa->answer);
        if ((int64_t)alen < g->ps.min_answer_length) {
            char d[200];
            snprintf(d, sizeof d, "answer of %zu characters (minimum %d) to: %.120s", alen, g->ps.min_answer_length,
                     qa->question);
            add_fail(g, c, pass, "answer_too_short", d);
            continue;
        }
        if (c->n_qa == c->cap_qa) {
            int cap = c->cap_qa ? c->cap_qa * 2 : 8;
            qaitem *v = qf_realloc(c->qa, (size_t)cap * sizeof *v);
            if (!v) {
                qf_err e;
                QF_ERR_SET(&e, QF_ERR_NOMEM, "out of memory");
                set_fatal(g, &e);
                return;
            }
            c->qa = v;
            c->cap_qa = cap;
        }
        qaitem *it = &c->qa[c->n_qa];
        memset(it, 0, sizeof *it);
        it->q = qa->question;
        it->a = qa->answer;
        qa->question = qa->answer = NULL; /* taken */
        it->pass = pass;
        it->k = k;
        it->score = -1;
        make_id(g, c, pass, k, it->q, it->id);
        qf_qfp fp = qf_dedup_fingerprint(it->q);
        bool oom = false;
        if (qf_dedup_check_add(g->dedup, &fp, it->id, it->dup_of, &oom)) it->status = QF_PAIR_DUPLICATE;
        else it->status = QF_PAIR_ACCEPTED;
        c->n_qa++;
        if (it->status == QF_PAIR_ACCEPTED && g->o->curate > 0) start_curate(g, c, c->n_qa - 1);
    }
}

static void on_text(gen *g, rq *r, int32_t pass, const char *text, size_t len, const char *finish) {
    cjob *c = r->c;
    if (r->kind == RQ_CURATE) {
        int score = 0;
        qf_err e = {0};
        qaitem *it = &c->qa[r->qa];
        if (qf_parse_score(text, len, &score, &e) == QF_OK) {
            it->score = score;
            if (score < g->o->curate) it->status = QF_PAIR_REJECTED;
        } else {
            add_fail(g, c, pass, "curate_unparsed", e.msg);
        }
        return;
    }
    qf_qa_list l;
    qf_err e = {0};
    qf_status st = qf_parse_pairs(text, len, &l, &e);
    if (st == QF_OK) {
        add_pairs(g, c, pass, &l);
    } else if (st == QF_ERR_NOMEM) {
        set_fatal(g, &e);
    } else if (r->kind == RQ_GEN) {
        char why[600];
        snprintf(why, sizeof why, "%s%s", e.msg, finish && !strcmp(finish, "length") ? " (the reply was cut off)" : "");
        start_repair(g, c, pass, text, why);
    } else {
        char d[1024];
        size_t n = len < 160 ? len : 160;
        n = qf_utf8_floor(text, n);
        snprintf(d, sizeof d, "%s; reply began: %.*s", e.msg, (int)n, text);
        add_fail(g, c, pass, finish && !strcmp(finish, "length") ? "truncated" : "malformed", d);
    }
    qf_qa_list_deinit(&l);
}

static void handle_result(gen *g, qf_presult *res) {
    sub *sb = (sub *)(uintptr_t)res->tag;
    rq *r = sb->r;
    cjob *c = r->c;
    int32_t pass = sb->run0 + res->index;
    int32_t i = pass - r->pass0;
    double t0 = qf_now_s();
    if (res->status == QF_OK) {
        g->rep->requests++;
        g->rep->tokens_in += res->tokens_in;
        g->rep->tokens_out += res->tokens_out;
        g->rep->tokens_prefix_cached += res->tokens_cached;
        if (i >= 0 && i < r->n) {
            qf_cache_info info;
            memset(&info, 0, sizeof info);
            info.tokens_in = res->tokens_in;
            info.tokens_out = res->tokens_out;
            snprintf(info.finish, sizeof info.finish, "%s", res->finish);
            qf_err e = {0};
            if (qf_store_cache_put(g->store, &r->keys[i], qf_provider_model_id(g->prov), res->text ? res->text : "",
                                   res->len, &info, &e) != QF_OK) {
                static bool warned = false;
                if (!warned) qf_warn("response cache: %s", e.msg);
                warned = true;
            }
        }
        on_text(g, r, pass, res->text ? res->text : "", res->len, res->finish);
        if (i >= 0 && i < r->n && !g->o->naive)
            fl_deliver(g, fl_land(g, &r->keys[i]), true, res->text ? res->text : "", res->len, res->finish);
    } else {
        add_fail(g, c, pass, res->reason[0] ? res->reason : "provider", res->detail);
        if (i >= 0 && i < r->n && !g->o->naive) fl_deliver(g, fl_land(g, &r->keys[i]), false, NULL, 0, NULL);
    }
    int stage = r->kind == RQ_CURATE ? QF_STAGE_CURATE : QF_STAGE_GENERATE;
    g->rep->stage_s[stage] += qf_now_s() - t0;
    c->pending--;
    if (--sb->left == 0) qf_free(sb);
    rq_done_one(r);
    chunk_maybe_done(g, c);
}

/* ---- commit ---- */

static void chunk_maybe_done(gen *g, cjob *c) {
    if (c->pending > 0) return;
    c->pending = -1; /* finished: never again */
    g->chunks_in_flight--;
    c->next = NULL;
    if (g->commit_tail) g->commit_tail->next = c;
    else g->commit_head = c;
    g->commit_tail = c;
    g->n_commit++;
}

static qf_pair to_pair(gen *g, cjob *c, qaitem *it) {
    qf_pair p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", it->id);
    p.doc_id = g->docs[c->doc].id;
    p.path = g->docs[c->doc].in->path;
    p.chunk = c->idx;
    p.start = (int64_t)c->start;
    p.end = (int64_t)c->end;
    p.pass = it->pass;
    p.question = it->q;
    p.answer = it->a;
    p.score = it->score;
    p.model = g->model_name;
    p.status = it->status;
    qf_qfp fp = qf_dedup_fingerprint(it->q);
    p.qhash = fp.exact;
    p.simhash = fp.bag;
    p.dup_of = it->status == QF_PAIR_DUPLICATE ? it->dup_of : NULL;
    return p;
}

static qf_status flush(gen *g, qf_err *err) {
    bool docs_pending = false;
    for (int i = 0; i < g->n_docs; i++) docs_pending |= g->docs[i].mark_pending;
    if (!g->commit_head && !docs_pending) return QF_OK;
    double t0 = qf_now_s();
    int64_t out0 = qf_writer_size(g->out), rej0 = g->rej ? qf_writer_size(g->rej) : 0;
    qf_status st = QF_OK;
    for (cjob *c = g->commit_head; c && st == QF_OK; c = c->next) {
        for (int i = 0; i < c->n_qa && st == QF_OK; i++) {
            qaitem *it = &c->qa[i];
            if (it->status == QF_PAIR_DUPLICATE) continue;
            if (it->status == QF_PAIR_REJECTED && !g->rej) continue;
            qf_pair p = to_pair(g, c, it);
            size_t len = 0;
            char *line = qf_format_record(g->o->format, &p, &len);
            if (!line) {
                st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory formatting a record");
                break;
            }
            st = qf_writer_append(it->status == QF_PAIR_ACCEPTED ? g->out : g->rej, line, len, err);
            qf_free(line);
        }
    }
    if (st == QF_OK) st = qf_writer_flush(g->out, err);
    if (st == QF_OK && g->rej) st = qf_writer_flush(g->rej, err);
    if (st != QF_OK) goto undo;
    st = qf_store_begin(g->store, err);
    if (st != QF_OK) goto undo;
    for (cjob *c = g->commit_head; c && st == QF_OK; c = c->next) {
        int32_t n_ok = 0;
        for (int i = 0; i < c->n_qa && st == QF_OK; i++) {
            qf_pair p = to_pair(g, c, &c->qa[i]);
            n_ok += p.status == QF_PAIR_ACCEPTED;
            st = qf_store_pair_add(g->store, &p, err);
        }
        for (int i = 0; i < c->n_fail && st == QF_OK; i++) {
            qf_failure f = {g->docs[c->doc].id, g->docs[c->doc].in->path, c->idx, c->fail[i].pass,
                            c->fail[i].reason, c->fail[i].detail};
            st = qf_store_failure_add(g->store, &f, err);
        }
        if (st == QF_OK)
            st = qf_store_chunk_done(g->store, g->docs[c->doc].id, c->idx, (int64_t)c->start, (int64_t)c->end, n_ok,
                                     err);
        gdoc *d = &g->docs[c->doc];
        d->n_done++;
        if (d->n_chunks >= 0 && d->n_done >= d->n_chunks && !d->finished) d->mark_pending = true;
    }
    for (int i = 0; i < g->n_docs && st == QF_OK; i++) {
        gdoc *d = &g->docs[i];
        if (!d->mark_pending) continue;
        st = qf_store_doc_put(g->store, d->in->path, d->in->size, d->in->mtime_ns,
                              d->failed ? QF_DOC_SKIPPED : QF_DOC_DONE, d->n_chunks, NULL, NULL, err);
    }
    if (st == QF_OK) st = qf_store_meta_set_i64(g->store, "size:out", qf_writer_size(g->out), err);
    if (st == QF_OK && g->rej) st = qf_store_meta_set_i64(g->store, "size:rejects", qf_writer_size(g->rej), err);
    if (st == QF_OK) st = qf_store_commit(g->store, err);
    else qf_store_rollback(g->store);
    if (st != QF_OK) goto undo; /* the job stops; its chunks stay unfinished in the store */
    for (int i = 0; i < g->n_docs; i++) {
        gdoc *d = &g->docs[i];
        if (!d->mark_pending) continue;
        d->mark_pending = false;
        d->finished = true;
        g->rep->docs_done++;
        if (d->failed) g->rep->docs_skipped++;
    }
    while (g->commit_head) {
        cjob *c = g->commit_head;
        g->commit_head = c->next;
        for (int i = 0; i < c->n_qa; i++) {
            if (c->qa[i].status == QF_PAIR_ACCEPTED) g->rep->pairs_accepted++;
            else if (c->qa[i].status == QF_PAIR_REJECTED) g->rep->pairs_rejected++;
            else g->rep->pairs_duplicate++;
        }
        for (int i = 0; i < c->n_fail; i++) qf_report_add_failure(g->rep, c->fail[i].reason, 1);
        g->rep->chunks_done++;
        cjob_free(c);
    }
    g->commit_tail = NULL;
    g->n_commit = 0;
    g->last_flush = qf_now_s();
    g->rep->stage_s[QF_STAGE_WRITE] += g->last_flush - t0;
    return QF_OK;
undo: {
        qf_err e2 = {0};
        qf_writer_truncate(g->out, out0, &e2);
        if (g->rej) qf_writer_truncate(g->rej, rej0, &e2);
    }
    return st;
}

/* ---- metrics ---- */

static void update_metrics(gen *g, bool final) {
    if (!g->metrics) return;
    double now = qf_now_s();
    if (now - g->rate_t >= 0.5) {
        g->tok_rate = (double)(g->rep->tokens_out - g->rate_tok) / (now - g->rate_t);
        g->rate_tok = g->rep->tokens_out;
        g->rate_t = now;
    }
    qf_gen_live live;
    live.chunks_in_flight = final ? 0 : g->chunks_in_flight;
    /* a finished run reports its average, not its last second */
    live.tokens_per_s = final ? (g->rep->wall_s > 0 ? (double)g->rep->tokens_out / g->rep->wall_s : 0) : g->tok_rate;
    live.eta_s = qf_report_eta_s(g->rep, g->rep->wall_s);
    qf_report_metrics_update(g->metrics, g->rep, &live);
}

/* Write the registry into the job store for `qforge top --db`. A failed
 * write is not fatal (the job's own commits report real trouble); top
 * shows how old the newest snapshot is. */
static void write_snapshot(gen *g, const char *state) {
    if (!g->metrics || !g->store) return;
    char *js = qf_metrics_render_json(g->metrics, NULL);
    if (!js) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    qf_err e = {0};
    if (qf_store_snapshot_put(g->store, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9, state, js, &e) != QF_OK)
        qf_debug("metrics snapshot not written: %s", e.msg);
    qf_free(js);
    g->snap_t = qf_now_s();
}

/* ---- setup ---- */

static char *make_signature(gen *g) {
    const qf_gen_opts *o = g->o;
    cJSON *s = cJSON_CreateObject();
    cJSON *in = cJSON_AddArrayToObject(s, "inputs");
    for (int i = 0; i < o->n_inputs; i++) cJSON_AddItemToArray(in, cJSON_CreateString(o->inputs[i]));
    cJSON_AddStringToObject(s, "model", qf_provider_model_id(g->prov));
    cJSON_AddNumberToObject(s, "temperature", g->ps.temperature);
    cJSON_AddNumberToObject(s, "generation_passes", g->ps.generation_passes);
    cJSON_AddNumberToObject(s, "qa_pairs_per_chunk", g->ps.qa_pairs_per_chunk);
    cJSON_AddNumberToObject(s, "min_answer_length", g->ps.min_answer_length);
    cJSON_AddStringToObject(s, "format", qf_format_name(o->format));
    cJSON_AddNumberToObject(s, "curate", o->curate);
    cJSON_AddNumberToObject(s, "chunk_tokens", g->chunk_tokens);
    cJSON_AddNumberToObject(s, "chunk_overlap", g->chunk_overlap);
    cJSON_AddNumberToObject(s, "max_tokens", g->max_tokens);
    cJSON_AddNumberToObject(s, "top_p", g->top_p);
    cJSON_AddNumberToObject(s, "seed", (double)o->seed);
    cJSON_AddStringToObject(s, "jsonl_field", o->jsonl_field ? o->jsonl_field : "text");
    cJSON_AddBoolToObject(s, "near_dedup", o->near_dedup);
    qf_hasher *h = qf_hasher_new();
    for (int i = 0; i < QF_PROMPT_COUNT; i++) qf_hasher_str(h, qf_prompts_text(g->prompts, (qf_prompt_id)i));
    char hex[33];
    qf_hash128_hex(qf_hasher_done(h), hex);
    cJSON_AddStringToObject(s, "prompts", hex);
    char *js = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    char *r = js ? qf_strdup(js) : NULL;
    cJSON_free(js);
    return r;
}

/* Names of the keys whose values differ between two signatures. */
static void signature_diff(const char *a, const char *b, char *out, size_t cap) {
    cJSON *x = cJSON_Parse(a), *y = cJSON_Parse(b);
    out[0] = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, y) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(x, it->string);
        char *p = o ? cJSON_PrintUnformatted(o) : NULL;
        char *q = cJSON_PrintUnformatted(it);
        if (!p || !q || strcmp(p, q)) {
            size_t l = strlen(out);
            snprintf(out + l, cap - l, "%s%s", l ? ", " : "", it->string);
        }
        cJSON_free(p);
        cJSON_free(q);
    }
    cJSON_Delete(x);
    cJSON_Delete(y);
}

typedef struct rewrite_ctx {
    qf_writer *w;
    qf_format f;
    qf_status st;
    qf_err *err;
} rewrite_ctx;

static int rewrite_one(void *ud, const qf_pair *p) {
    rewrite_ctx *r = ud;
    size_t len;
    char *line = qf_format_record(r->f, p, &len);
    if (!line) {
        r->st = QF_ERR_SET(r->err, QF_ERR_NOMEM, "out of memory");
        return 1;
    }
    r->st = qf_writer_append(r->w, line, len, r->err);
    qf_free(line);
    if (r->st == QF_OK && qf_writer_pending(r->w) > (4u << 20)) r->st = qf_writer_flush(r->w, r->err);
    return r->st != QF_OK;
}

/* Open a dataset file at the size the store recorded; when the file lost
 * lines, write it again from the store. */
static qf_writer *open_out(gen *g, const char *path, const char *key, qf_pair_status status, qf_err *err) {
    int64_t committed = g->o->resume ? qf_store_meta_get_i64(g->store, key, 0) : -1;
    qf_err e = {0};
    qf_writer *w = qf_writer_open(path, committed, &e);
    if (w || e.code != QF_ERR_FORMAT) {
        if (!w) *err = e;
        return w;
    }
    qf_warn("%s; writing it again from the job store", e.msg);
    w = qf_writer_open(path, -1, err);
    if (!w) return NULL;
    rewrite_ctx rc = {w, status == QF_PAIR_REJECTED ? QF_FORMAT_QA : g->o->format, QF_OK, err};
    qf_status st = qf_store_pairs_foreach(g->store, status, rewrite_one, &rc, err);
    if (st == QF_ERR_CANCELLED) st = rc.st;
    if (st == QF_OK) st = qf_writer_flush(w, err);
    if (st == QF_OK) st = qf_store_meta_set_i64(g->store, key, qf_writer_size(w), err);
    if (st != QF_OK) {
        qf_writer_close(w);
        return NULL;
    }
    return w;
}

static int rebuild_one(void *ud, const qf_pair *p) {
    gen *g = ud;
    qf_qfp fp = qf_dedup_fingerprint(p->question);
    char dup[33];
    bool oom = false;
    qf_dedup_check_add(g->dedup, &fp, p->id, dup, &oom);
    return oom;
}

/* Reply limits, in characters: the schema bounds every string so that a
 * reply always fits max_tokens even at one character per token. */
#define Q_MAX_CHARS 250
static int32_t answer_max_chars(const qf_preset *ps) {
    return ps->min_answer_length * 4 > 400 ? ps->min_answer_length * 4 : 400;
}

static char *build_gen_schema(const qf_preset *ps) {
    size_t cap = 1024;
    char *s = qf_malloc(cap);
    if (!s) return NULL;
    int32_t mn = ps->min_answer_length > 0 ? ps->min_answer_length : 1;
    snprintf(s, cap,
             "{\"type\":\"object\",\"properties\":{\"pairs\":{\"type\":\"array\",\"minItems\":%d,\"maxItems\":%d,"
             "\"items\":{\"type\":\"object\",\"properties\":{\"question\":{\"type\":\"string\",\"minLength\":5,"
             "\"maxLength\":%d},\"answer\":{\"type\":\"string\",\"minLength\":%d,\"maxLength\":%d}},"
             "\"required\":[\"question\",\"answer\"],\"additionalProperties\":false}}},"
             "\"required\":[\"pairs\"],\"additionalProperties\":false}",
             ps->qa_pairs_per_chunk, ps->qa_pairs_per_chunk, Q_MAX_CHARS, mn, answer_max_chars(ps));
    return s;
}

static qf_status make_provider(gen *g, qf_err *err) {
    const qf_gen_opts *o = g->o;
    if (o->provider) {
        g->prov = o->provider;
        return QF_OK;
    }
    if (o->n_endpoints > 0) {
        qf_provider_http_params hp;
        memset(&hp, 0, sizeof hp);
        hp.api = o->ollama ? QF_HTTP_OLLAMA : QF_HTTP_OPENAI;
        hp.urls = o->endpoints;
        hp.n_urls = o->n_endpoints;
        hp.model = o->model_name;
        hp.api_key = o->api_key;
        hp.max_in_flight = o->naive ? 1 : g->ps.max_concurrent_requests;
        hp.timeout_s = o->timeout_s;
        hp.max_retries = o->retries;
        hp.backoff_base_s = o->backoff_s;
        hp.cooldown_s = o->cooldown_s;
        g->prov = qf_provider_http_new(&hp, err);
    } else if (o->model_path) {
        qf_provider_engine_params ep;
        memset(&ep, 0, sizeof ep);
        ep.model_path = o->model_path;
        ep.n_ctx = o->n_ctx;
        int32_t per_chunk = g->ps.generation_passes;
        ep.n_parallel = o->naive ? 1 : g->ps.max_concurrent_requests * per_chunk;
        if (ep.n_parallel < per_chunk) ep.n_parallel = per_chunk;
        if (ep.n_parallel > 256) ep.n_parallel = 256;
        ep.n_threads = o->n_threads;
        ep.n_gpu_layers = o->n_gpu_layers;
        ep.kv_type = o->kv_type;
        ep.chat_template = o->chat_template;
        ep.no_prefix_cache = o->naive;
        /* room for every running sequence at its longest (chunk + prompt +
         * reply), rather than n_ctx each: far less memory for big batches */
        int32_t per_seq = g->chunk_tokens + 1024 + g->max_tokens;
        ep.kv_tokens = (int64_t)ep.n_parallel * per_seq;
        ep.timeout_s = o->timeout_s;
        g->prov = qf_provider_engine_new(&ep, err);
    } else if (o->dry_run) {
        return QF_OK; /* token counts are estimated (4 bytes per token) */
    } else {
        return QF_ERR_SET(err, QF_ERR_INVALID, "no model: give -m MODEL.gguf, --endpoint URL or --ollama URL");
    }
    if (!g->prov) return err && err->code ? err->code : QF_ERR_INVALID;
    g->own_prov = true;
    return QF_OK;
}

/* Tokens of the prompts without the chunk, plus chat-template overhead. */
static int32_t prompt_overhead(gen *g) {
    char nbuf[16], mbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", g->ps.qa_pairs_per_chunk);
    snprintf(mbuf, sizeof mbuf, "%d", g->ps.min_answer_length);
    qf_prompt_var vars[] = {{"chunk", ""}, {"n", nbuf}, {"min_chars", mbuf}, {"source", "x"}};
    char *u = qf_prompt_render(qf_prompts_text(g->prompts, QF_PROMPT_GENERATE), vars, 4, NULL);
    const char *sys = qf_prompts_text(g->prompts, QF_PROMPT_SYSTEM);
    int32_t n = count_cb(g, sys, strlen(sys)) + (u ? count_cb(g, u, strlen(u)) : 256) + 48;
    qf_free(u);
    return n;
}

/* ---- dry run ---- */

static qf_status dry_run(gen *g, qf_err *err) {
    FILE *f = g->o->log ? g->o->log : stderr;
    qf_ingest_opts io = {g->o->jsonl_field};
    qf_chunk_params cp = {g->chunk_tokens, g->chunk_overlap, count_cb, g};
    int32_t over = prompt_overhead(g);
    int32_t passes = g->ps.generation_passes;
    fprintf(f, "dry run: %zu documents, chunks of %d tokens (overlap %d), %d pass%s x %d pairs, model %s\n",
            g->inputs.n, g->chunk_tokens, g->chunk_overlap, passes, passes == 1 ? "" : "es", g->ps.qa_pairs_per_chunk,
            g->model_name);
    for (size_t i = 0; i < g->inputs.n; i++) {
        qf_input *in = &g->inputs.v[i];
        qf_err e = {0};
        qf_doc *d = qf_doc_open(in->path, in->kind, &io, &e);
        qf_chunk *ch = NULL;
        int32_t n = 0;
        if (d && qf_chunk_text(d->text, d->len, d->breaks, d->n_breaks, &cp, &ch, &n, &e) != QF_OK) {
            qf_doc_close(d);
            d = NULL;
        }
        if (!d) {
            fprintf(f, "  skip  %-5s %s: %s\n", qf_doc_kind_name(in->kind), in->path, e.msg);
            qf_report_add_skipped(g->rep, in->path, e.msg);
            g->rep->docs_skipped++;
            continue;
        }
        int64_t tok = 0;
        for (int32_t k = 0; k < n; k++) tok += ch[k].n_tokens;
        fprintf(f, "  %-5s %s: %zu bytes of text, %d chunks, %lld tokens\n", qf_doc_kind_name(in->kind), in->path,
                d->len, n, (long long)tok);
        g->rep->est_chunks += n;
        g->rep->est_prompt_tokens += (tok + (int64_t)n * over) * (g->o->naive ? passes : 1);
        g->rep->est_output_tokens += (int64_t)n * passes * g->max_tokens * 3 / 4;
        if (g->o->curate > 0) {
            int64_t np = (int64_t)n * passes * g->ps.qa_pairs_per_chunk;
            g->rep->est_prompt_tokens += np * (over + 100) + (int64_t)passes * g->ps.qa_pairs_per_chunk * tok;
            g->rep->est_output_tokens += np * 6;
        }
        qf_free(ch);
        qf_doc_close(d);
    }
    for (size_t i = 0; i < g->inputs.n_skip; i++)
        fprintf(f, "  skip  %s: %s\n", g->inputs.skip[i].path, g->inputs.skip[i].reason);
    (void)err;
    return QF_OK;
}

/* ---- the run ---- */

static void gen_cleanup(gen *g) {
    if (g->threads) {
        atomic_store(&g->abort, true);
        pthread_mutex_lock(&g->mu);
        pthread_cond_broadcast(&g->cv_push);
        pthread_mutex_unlock(&g->mu);
        for (int i = 0; i < g->n_threads; i++) pthread_join(g->threads[i], NULL);
        qf_free(g->threads);
        g->threads = NULL;
    }
    for (witem *it = g->qhead, *n; it; it = n) {
        n = it->next;
        witem_free(it);
    }
    g->qhead = g->qtail = NULL;
    for (rq *r = g->serial_head, *n; r; r = n) {
        n = r->next;
        rq_free(r);
    }
    for (int b = 0; g->fl && b < FL_BUCKETS; b++) {
        for (flight *f = g->fl[b], *nf; f; f = nf) {
            nf = f->next;
            for (waiter *w = f->w, *nw; w; w = nw) {
                nw = w->next;
                qf_free(w);
            }
            qf_free(f);
        }
    }
    qf_free(g->fl);
    g->fl = NULL;
    if (g->own_prov) qf_provider_free(g->prov);
    g->prov = NULL;
    while (g->commit_head) {
        cjob *c = g->commit_head;
        g->commit_head = c->next;
        cjob_free(c);
    }
    qf_writer_close(g->out);
    qf_writer_close(g->rej);
    qf_store_close(g->store);
    qf_dedup_free(g->dedup);
    qf_prompts_free(g->prompts);
    qf_inputs_deinit(&g->inputs);
    qf_free(g->docs);
    qf_free(g->todo);
    qf_free(g->db_path);
    qf_free(g->rej_path);
    qf_free(g->gen_schema);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv_push);
    pthread_cond_destroy(&g->cv_pop);
}

static void report_failure_cb(void *ud, const char *reason, int64_t n) {
    qf_report_add_failure(ud, reason, n);
}

static qf_status setup_docs(gen *g, qf_err *err) {
    g->docs = qf_calloc(g->inputs.n ? g->inputs.n : 1, sizeof *g->docs);
    g->todo = qf_calloc(g->inputs.n ? g->inputs.n : 1, sizeof *g->todo);
    if (!g->docs || !g->todo) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    g->n_docs = (int)g->inputs.n;
    qf_status st = qf_store_begin(g->store, err);
    if (st != QF_OK) return st;
    for (int i = 0; i < g->n_docs && st == QF_OK; i++) {
        gdoc *d = &g->docs[i];
        d->in = &g->inputs.v[i];
        d->n_chunks = -1;
        qf_store_doc row;
        qf_status gs = qf_store_doc_get(g->store, d->in->path, &row, NULL);
        if (gs == QF_OK && g->o->resume) {
            if (row.size != d->in->size || row.mtime_ns != d->in->mtime_ns) {
                st = QF_ERR_SET(err, QF_ERR_INVALID,
                                "%s changed since the job started: run without --resume to start over (replies "
                                "already computed come from the cache)",
                                d->in->path);
                break;
            }
            d->id = row.id;
            d->n_done = qf_store_chunks_done(g->store, row.id);
            g->rep->chunks_resumed += d->n_done;
            g->rep->chunks_done += d->n_done;
            if (row.status == QF_DOC_DONE || row.status == QF_DOC_SKIPPED) {
                d->finished = true;
                d->n_chunks = row.n_chunks;
                g->rep->docs_done++;
                g->rep->docs_resumed++;
                g->rep->chunks_total += row.n_chunks;
                if (row.status == QF_DOC_SKIPPED) g->rep->docs_skipped++;
                continue;
            }
        } else {
            st = qf_store_doc_put(g->store, d->in->path, d->in->size, d->in->mtime_ns, QF_DOC_PENDING, -1, NULL,
                                  &d->id, err);
        }
        g->todo[g->n_todo++] = i;
    }
    if (st == QF_OK) st = qf_store_commit(g->store, err);
    else qf_store_rollback(g->store);
    return st;
}

static void handle_witem(gen *g, witem *it) {
    gdoc *d = &g->docs[it->doc];
    if (it->type == W_DOC_ERROR) {
        qf_warn("%s", it->err);
        qf_report_add_skipped(g->rep, d->in->path, it->err);
        d->failed = true;
        d->n_chunks = 0;
        d->mark_pending = true;
    } else if (it->type == W_DOC_END) {
        d->n_chunks = it->n_chunks;
        g->rep->chunks_total += it->n_chunks;
        if (d->n_done >= d->n_chunks) d->mark_pending = true;
    } else {
        cjob *c = it->c;
        it->c = NULL;
        if (g->o->resume && qf_store_chunk_is_done(g->store, d->id, c->idx, (int64_t)c->start, (int64_t)c->end)) {
            cjob_free(c); /* done in an earlier run (counted at setup) */
        } else {
            g->chunks_in_flight++;
            c->pending = 1; /* held while starting */
            start_gen(g, c);
            c->pending--;
            chunk_maybe_done(g, c);
        }
    }
    witem_free(it);
}

qf_status qf_gen_run(const qf_gen_opts *o, qf_gen_report *rep, qf_err *err) {
    qf_report_init(rep);
    double t_start = qf_now_s();
    gen G;
    gen *g = &G;
    memset(g, 0, sizeof *g);
    g->o = o;
    g->rep = rep;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv_push, NULL);
    pthread_cond_init(&g->cv_pop, NULL);
    qf_status st = QF_OK;
    FILE *log = o->log ? o->log : stderr;
    g->metrics = qf_metrics_new(NULL);
    if (g->metrics && qf_report_metrics_declare(g->metrics, NULL) != QF_OK) {
        qf_metrics_free(g->metrics);
        g->metrics = NULL;
    }
    g->rate_t = t_start;

    if (!o->n_inputs) {
        st = QF_ERR_SET(err, QF_ERR_INVALID, "no INPUT given (files or folders of documents)");
        goto done;
    }
    if (!o->output && !o->dry_run) {
        st = QF_ERR_SET(err, QF_ERR_INVALID, "no output file: give -o OUT.jsonl");
        goto done;
    }
    g->ps = o->preset;
    g->chunk_tokens = o->chunk_tokens > 0 ? o->chunk_tokens : 512;
    g->chunk_overlap = o->chunk_overlap >= 0 ? o->chunk_overlap : 64;
    g->top_p = o->top_p > 0 ? o->top_p : 0.95f;
    /* default reply budget: every pair at its longest, at 3 characters per
     * token (real tokenizers average 3-4; byte-level toy vocabularies need
     * --max-tokens for the 1 per token worst case) */
    int32_t per_pair = (Q_MAX_CHARS + answer_max_chars(&g->ps) + 30 + 2) / 3;
    g->max_tokens = o->max_tokens > 0 ? o->max_tokens : 32 + g->ps.qa_pairs_per_chunk * per_pair;
    if (!(g->gen_schema = build_gen_schema(&g->ps))) {
        st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!(g->prompts = qf_prompts_load(o->prompts_dir, err))) {
        st = err && err->code ? err->code : QF_ERR_IO;
        goto done;
    }
    if ((st = make_provider(g, err)) != QF_OK) goto done;
    g->model_name = g->prov ? qf_provider_model_name(g->prov) : "none (token counts estimated at 4 bytes per token)";
    snprintf(rep->model, sizeof rep->model, "%s", g->model_name);
    snprintf(rep->backend, sizeof rep->backend, "%s",
             o->provider ? "custom" : o->n_endpoints ? (o->ollama ? "ollama" : "openai") : "engine");

    /* keep prompt + chunk + reply within the context (a repair turn that does
     * not fit is refused by the engine and recorded as a failure) */
    int32_t n_ctx = g->prov ? qf_provider_n_ctx(g->prov) : 0;
    if (n_ctx > 0) {
        int32_t over = prompt_overhead(g);
        int32_t room = n_ctx - over - g->max_tokens;
        if (room < 32) {
            st = QF_ERR_SET(err, QF_ERR_RANGE,
                            "the model's context of %d tokens cannot hold the prompt (%d tokens) and a reply of %d "
                            "tokens: lower --max-tokens or raise --ctx",
                            n_ctx, over, g->max_tokens);
            goto done;
        }
        if (room < g->chunk_tokens) {
            qf_info("chunks of %d tokens instead of %d, to fit the context of %d tokens", room, g->chunk_tokens,
                    n_ctx);
            g->chunk_tokens = room;
            if (g->chunk_overlap > room / 4) g->chunk_overlap = room / 4;
        }
    }

    if (o->dry_run) {
        rep->dry_run = true;
        if ((st = qf_ingest_walk(o->inputs, (size_t)o->n_inputs, NULL, 0, &g->inputs, err)) != QF_OK) goto done;
        rep->docs_total = (int64_t)g->inputs.n;
        for (size_t i = 0; i < g->inputs.n_skip; i++)
            qf_report_add_skipped(rep, g->inputs.skip[i].path, g->inputs.skip[i].reason);
        st = dry_run(g, err);
        goto done;
    }

    g->db_path = o->db_path ? qf_strdup(o->db_path) : qf_gen_db_path(o->output);
    g->rej_path = o->rejects_path ? qf_strdup(o->rejects_path) : qf_gen_rejects_path(o->output);
    if (!g->db_path || !g->rej_path) {
        st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        goto done;
    }
    struct stat sb;
    if (stat(o->output, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        st = QF_ERR_SET(err, QF_ERR_INVALID, "%s: is a folder; -o takes a file name (OUT.jsonl)", o->output);
        goto done;
    }
    if (!(g->store = qf_store_open(g->db_path, err))) {
        st = err && err->code ? err->code : QF_ERR_IO;
        goto done;
    }
    char *sig = make_signature(g);
    if (!sig) {
        st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        goto done;
    }
    char *old = NULL;
    bool have_job = qf_store_meta_get(g->store, "signature", &old, NULL) == QF_OK;
    if (o->resume && have_job && strcmp(old, sig)) {
        char diff[256];
        signature_diff(old, sig, diff, sizeof diff);
        st = QF_ERR_SET(err, QF_ERR_INVALID,
                        "%s: the job was started with other settings (%s differ); run without --resume to start a "
                        "new job (replies already computed come from the cache)",
                        o->output, diff[0] ? diff : "arguments");
    } else if (o->resume && !have_job) {
        qf_info("%s: no job to resume; starting one", o->output);
    }
    qf_free(old);
    bool resume = o->resume && have_job;
    if (st == QF_OK && !resume) {
        st = qf_store_job_reset(g->store, err);
        if (st == QF_OK) st = qf_store_meta_set(g->store, "signature", sig, err);
    }
    qf_free(sig);
    if (st != QF_OK) goto done;
    qf_gen_opts o2 = *o;
    o2.resume = resume;
    g->o = &o2;

    if (!(g->out = open_out(g, o->output, "size:out", QF_PAIR_ACCEPTED, err))) {
        st = err && err->code ? err->code : QF_ERR_IO;
        goto done;
    }
    if (o->curate > 0 && !(g->rej = open_out(g, g->rej_path, "size:rejects", QF_PAIR_REJECTED, err))) {
        st = err && err->code ? err->code : QF_ERR_IO;
        goto done;
    }
    if (!(g->dedup = qf_dedup_new(o->near_dedup, err))) {
        st = QF_ERR_NOMEM;
        goto done;
    }
    if (resume) {
        if ((st = qf_store_pairs_foreach(g->store, QF_PAIR_ACCEPTED, rebuild_one, g, err)) != QF_OK ||
            (st = qf_store_pairs_foreach(g->store, QF_PAIR_REJECTED, rebuild_one, g, err)) != QF_OK) {
            if (st == QF_ERR_CANCELLED) st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory (dedup index)");
            goto done;
        }
    }

    {
        const char *ex[5] = {o->output, g->rej_path, g->db_path, NULL, NULL};
        if ((st = qf_ingest_walk(o->inputs, (size_t)o->n_inputs, ex, 3, &g->inputs, err)) != QF_OK) goto done;
    }
    rep->docs_total = (int64_t)g->inputs.n;
    for (size_t i = 0; i < g->inputs.n_skip; i++) {
        qf_report_add_skipped(rep, g->inputs.skip[i].path, g->inputs.skip[i].reason);
        qf_warn("skipped %s: %s", g->inputs.skip[i].path, g->inputs.skip[i].reason);
    }
    if (g->inputs.n == 0) qf_warn("no documents found in the inputs");
    if ((st = setup_docs(g, err)) != QF_OK) goto done;

    /* workers */
    g->q_cap = 4 * g->ps.max_concurrent_requests + 16;
    g->n_threads = g->ps.workers < g->n_todo ? g->ps.workers : g->n_todo;
    if (g->n_threads > 0) {
        g->threads = qf_calloc((size_t)g->n_threads, sizeof *g->threads);
        if (!g->threads) {
            st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
            goto done;
        }
        g->workers_live = g->n_threads;
        for (int i = 0; i < g->n_threads; i++) {
            if (pthread_create(&g->threads[i], NULL, worker_main, g) != 0) {
                pthread_mutex_lock(&g->mu);
                g->workers_live -= g->n_threads - i;
                pthread_mutex_unlock(&g->mu);
                g->n_threads = i;
                if (i == 0) {
                    qf_free(g->threads);
                    g->threads = NULL;
                    st = QF_ERR_SET(err, QF_ERR_INTERNAL, "cannot start worker threads");
                    goto done;
                }
                break;
            }
        }
    }

    qf_progress_init(&g->prog, log, o->progress);
    g->last_flush = qf_now_s();
    int max_chunks = o->naive ? 1 : g->ps.max_concurrent_requests;
    qf_presult res[64];
    bool all_chunked = false;
    for (;;) {
        if (o->stop && *o->stop) {
            rep->interrupted = true;
            break;
        }
        if (g->fatal != QF_OK) break;
        /* feed chunks */
        while (g->chunks_in_flight < max_chunks) {
            witem *it = queue_pop(g, 0, &all_chunked);
            if (!it) break;
            handle_witem(g, it);
            if (g->fatal != QF_OK) break;
        }
        if (g->fatal != QF_OK) break;
        /* naive mode: one request on the wire at a time */
        while (o->naive && g->serial_head && qf_provider_pending(g->prov) == 0) {
            rq *r = g->serial_head;
            g->serial_head = r->next;
            if (!g->serial_head) g->serial_tail = NULL;
            r->next = NULL;
            cjob *c = r->c;
            dispatch(g, r);
            c->pending--;
            chunk_maybe_done(g, c);
        }
        if (!rep->chunks_total_known && all_chunked) rep->chunks_total_known = true;
        /* commit */
        bool idle = g->chunks_in_flight == 0 && all_chunked;
        if (g->commit_head || idle) {
            bool any_mark = false;
            for (int i = 0; i < g->n_docs && !any_mark; i++) any_mark = g->docs[i].mark_pending;
            if ((g->commit_head || any_mark) &&
                (idle || g->n_commit >= FLUSH_MAX_CHUNKS || qf_now_s() - g->last_flush >= FLUSH_INTERVAL_S)) {
                qf_err e = {0};
                if (flush(g, &e) != QF_OK) {
                    set_fatal(g, &e);
                    break;
                }
            }
        }
        if (idle && !g->commit_head) break;
        /* wait for replies or documents */
        if (qf_provider_pending(g->prov) > 0) {
            double t0 = qf_now_s();
            int n = qf_provider_wait(g->prov, res, 64, 0.1);
            rep->stage_s[QF_STAGE_GENERATE] += qf_now_s() - t0;
            for (int i = 0; i < n; i++) {
                handle_result(g, &res[i]);
                qf_presult_deinit(&res[i]);
            }
        } else if (g->chunks_in_flight < max_chunks && !all_chunked) {
            bool ad = false;
            witem *it = queue_pop(g, 0.1, &ad);
            if (it) handle_witem(g, it);
        }
        rep->wall_s = qf_now_s() - t_start;
        qf_progress_update(&g->prog, rep, false);
        if (qf_now_s() - g->snap_t >= SNAPSHOT_INTERVAL_S) {
            update_metrics(g, false);
            write_snapshot(g, "running");
        }
    }
    /* save what is finished, also when stopping early */
    if (g->commit_head) {
        qf_err e = {0};
        if (flush(g, &e) != QF_OK) set_fatal(g, &e);
    }
    if (g->fatal != QF_OK) {
        st = g->fatal;
        if (err) *err = g->fatal_err;
    } else if (rep->interrupted) {
        st = QF_ERR_SET(err, QF_ERR_CANCELLED,
                        "interrupted: finished chunks are saved; run the same command with --resume to continue");
    }

done:
    if (g->store && !rep->dry_run) { /* totals of the whole job (resumed runs included) */
        qf_store_counts sc;
        qf_store_get_counts(g->store, &sc);
        rep->pairs_accepted = sc.pairs[QF_PAIR_ACCEPTED];
        rep->pairs_rejected = sc.pairs[QF_PAIR_REJECTED];
        rep->pairs_duplicate = sc.pairs[QF_PAIR_DUPLICATE];
        qf_free(rep->failures);
        rep->failures = NULL;
        rep->n_failures = 0;
        qf_store_failures_by_reason(g->store, report_failure_cb, rep);
        rep->wall_s = qf_now_s() - t_start;
        update_metrics(g, true);
        /* only a run that got going (wrote "running") may say how it ended:
         * a run refused at setup must not overwrite another job's state */
        if (g->snap_t > 0) write_snapshot(g, st == QF_OK ? "done" : rep->interrupted ? "interrupted" : "failed");
    }
    {
        pthread_mutex_lock(&g->mu);
        double ing = g->ingest_s;
        pthread_mutex_unlock(&g->mu);
        gen_cleanup(g);
        rep->stage_s[QF_STAGE_INGEST] = ing;
    }
    rep->wall_s = qf_now_s() - t_start;
    if (g->prog.enabled) {
        qf_progress_update(&g->prog, rep, true);
        qf_progress_clear(&g->prog);
        if (!g->prog.tty) fflush(log);
    }
    if (g->metrics) {
        update_metrics(g, true);
        rep->metrics_json = qf_metrics_render_json(g->metrics, NULL);
        qf_metrics_free(g->metrics);
        g->metrics = NULL;
    }
    if (o->report_path) {
        qf_err e = {0};
        if (qf_report_write_json(rep, o->report_path, &e) != QF_OK) qf_warn("%s", e.msg);
    }
    return st;
}
