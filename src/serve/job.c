/* job.c - a per-request event queue between the engine's scheduler thread
 * and the connection thread that writes the HTTP response.
 *
 * The scheduler calls serve_job_on_event for every token and final event;
 * it copies the event (the engine's text is borrowed only for the call)
 * into a FIFO under the job's mutex and signals the condition variable.
 * The connection thread takes events with serve_job_next, waiting at most
 * a given time so it can look at its socket in between (a client that went
 * away cancels the request).
 *
 * Lifetime: two references. The connection drops its own with
 * serve_job_unref whenever it is done (possibly early, after a cancel);
 * the engine's reference is dropped by the callback that delivers the
 * n-th final event (the engine promises one final event per completion of
 * every accepted request, also when cancelled or when the engine is
 * freed). Whoever drops the last reference frees the job, so a late final
 * event after the client left never touches freed memory.
 *
 * Metrics that must count every request whether or not anybody still
 * listens (token totals, cancellations) are updated here, on the
 * scheduler thread.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "serve/serve_int.h"

struct serve_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    int n;          /* completions */
    int finals_in;  /* final events received */
    int finals_out; /* final events handed out */
    serve_ev *q;    /* ring buffer */
    size_t head, len, cap;
    struct qf_serve *srv;
};

serve_job *serve_job_new(struct qf_serve *srv, int n) {
    serve_job *j = qf_calloc(1, sizeof *j);
    if (!j) return NULL;
    j->cap = 64;
    j->q = qf_malloc(j->cap * sizeof *j->q);
    if (!j->q) {
        qf_free(j);
        return NULL;
    }
    pthread_mutex_init(&j->mu, NULL);
    /* default clock (realtime): portable to macOS, which lacks
     * pthread_condattr_setclock; waits are short, a clock step only makes
     * one wait longer or shorter */
    pthread_cond_init(&j->cv, NULL);
    j->refs = 2;
    j->n = n > 0 ? n : 1;
    j->srv = srv;
    return j;
}

void serve_ev_clear(serve_ev *ev) {
    if (!ev) return;
    qf_free(ev->text);
    qf_free(ev->error);
    memset(ev, 0, sizeof *ev);
}

static void job_free(serve_job *j) {
    for (size_t i = 0; i < j->len; i++)
        serve_ev_clear(&j->q[(j->head + i) % j->cap]);
    qf_free(j->q);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    qf_free(j);
}

/* Drop one reference; caller holds the lock, which this releases. */
static void unref_locked(serve_job *j) {
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last) job_free(j);
}

void serve_job_unref(serve_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    unref_locked(j);
}

void serve_job_submit_failed(serve_job *j) {
    serve_job_unref(j);
}

static bool push(serve_job *j, serve_ev *ev) {
    if (j->len == j->cap) {
        size_t cap = j->cap * 2;
        serve_ev *q = qf_malloc(cap * sizeof *q);
        if (!q) return false;
        for (size_t i = 0; i < j->len; i++)
            q[i] = j->q[(j->head + i) % j->cap];
        qf_free(j->q);
        j->q = q;
        j->cap = cap;
        j->head = 0;
    }
    j->q[(j->head + j->len) % j->cap] = *ev;
    j->len++;
    return true;
}

void serve_job_on_event(void *ud, const qf_event *ev) {
    serve_job *j = ud;
    struct qf_serve *s = j->srv;
    bool final = ev->finish != QF_FINISH_NONE;
    if (s) {
        if (!final && ev->token >= 0) atomic_fetch_add(&s->gen_tokens, 1);
        if (final && ev->usage && ev->index == 0)
            atomic_fetch_add(
                &s->prompt_tokens,
                (uint64_t)(ev->usage->prompt_tokens > 0 ? ev->usage->prompt_tokens : 0));
        if (final && ev->finish == QF_FINISH_CANCELLED && ev->index == 0)
            atomic_fetch_add(&s->cancelled, 1);
        if (final && ev->usage && ev->index == 0 && s->metrics) {
            if (ev->usage->completion_tokens > 0 && ev->usage->ttft_s > 0)
                qf_metrics_observe(s->metrics, "qforge_time_to_first_token_seconds", NULL,
                                   ev->usage->ttft_s);
            if (ev->finish != QF_FINISH_CANCELLED)
                qf_metrics_observe(s->metrics, "qforge_generation_seconds", NULL,
                                   ev->usage->total_s);
        }
    }
    serve_ev e = {0};
    e.index = ev->index;
    e.token = ev->token;
    e.finish = ev->finish;
    if (ev->usage) e.usage = *ev->usage;
    bool ok = true;
    if (ev->text && ev->len) {
        e.text = qf_strndup(ev->text, ev->len);
        e.len = ev->len;
        ok = e.text != NULL;
    }
    if (ev->error) {
        e.error = qf_strdup(ev->error);
        ok = ok && e.error != NULL;
    }
    pthread_mutex_lock(&j->mu);
    if (!ok || !push(j, &e)) {
        /* Out of memory: a token event is dropped (its text lost); a final
         * event must arrive, so it replaces the oldest queued token event
         * when the ring is full, or is counted without its text. */
        serve_ev_clear(&e);
        if (final) {
            e.index = ev->index;
            e.token = -1;
            e.finish = QF_FINISH_ERROR;
            if (ev->usage) e.usage = *ev->usage;
            if (j->len == j->cap && j->q[j->head].finish == QF_FINISH_NONE) {
                serve_ev_clear(&j->q[j->head]);
                j->head = (j->head + 1) % j->cap;
                j->len--;
            }
            if (j->len < j->cap) {
                j->q[(j->head + j->len) % j->cap] = e;
                j->len++;
            }
        }
    }
    if (final) j->finals_in++;
    pthread_cond_broadcast(&j->cv);
    if (final && j->finals_in == j->n) {
        unref_locked(j);
        return;
    }
    pthread_mutex_unlock(&j->mu);
}

int serve_job_next(serve_job *j, serve_ev *ev, int timeout_ms) {
    memset(ev, 0, sizeof *ev);
    pthread_mutex_lock(&j->mu);
    if (j->len == 0 && j->finals_out >= j->n) {
        pthread_mutex_unlock(&j->mu);
        return -1;
    }
    if (j->len == 0 && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (j->len == 0) {
            int rc = pthread_cond_timedwait(&j->cv, &j->mu, &ts);
            if (rc == ETIMEDOUT) break;
        }
    }
    if (j->len == 0) {
        pthread_mutex_unlock(&j->mu);
        return 0;
    }
    *ev = j->q[j->head];
    j->head = (j->head + 1) % j->cap;
    j->len--;
    if (ev->finish != QF_FINISH_NONE) j->finals_out++;
    pthread_mutex_unlock(&j->mu);
    return 1;
}
