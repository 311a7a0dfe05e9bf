/* provider_http.c - OpenAI-compatible and Ollama chat APIs over libcurl multi.
 *
 * One curl multi handle carries every request; it keeps connections alive
 * and reuses them (HTTP keep-alive), and is driven from qf_provider_wait
 * (curl_multi_perform + curl_multi_poll), so no thread is needed. Each
 * completion is one "job": it waits in a FIFO until a slot is free
 * (max_in_flight over all endpoints), its backoff time has passed, and an
 * endpoint is healthy; the endpoint with the fewest requests outstanding
 * gets it (least-outstanding-requests balancing).
 *
 * Failure handling per attempt:
 *   429, 5xx, timeout, connection errors, unparsable 200 bodies  -> retry
 *     after base * 2^(attempt-1) seconds (capped) times a jitter factor in
 *     [0.5, 1.5), or the server's Retry-After if longer; after max_retries
 *     the job fails with the last reason
 *   400/422 while a response_format/format was sent  -> the endpoint is
 *     marked as not supporting it and the job is resent without (once)
 *   other 4xx -> the job fails at once (the request itself is wrong)
 * An endpoint with fail_threshold consecutive failures (not counting 429)
 * is taken out for cooldown_s, doubling on each repeat up to 8 x cooldown_s
 * (and 10 minutes); a success resets both. While every endpoint is out,
 * jobs wait. The cap matters with a single endpoint: jobs that each need a
 * few retries can fail dozens of times in a row before the first of them
 * gets its successful attempt, and unbounded doubling would then park the
 * whole job for minutes on a server that already works again.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "pipeline/pipeline_int.h"
#include "pipeline/provider.h"

typedef struct endpoint {
    char *chat_url;
    char *models_url;
    int outstanding;
    int consecutive_fail;
    double out_until;
    double cooldown;
    bool no_schema; /* rejected response_format: send without */
} endpoint;

typedef struct job {
    uint64_t tag;
    int32_t index;
    cJSON *msgs;       /* array of {role, content} */
    float temperature, top_p;
    uint64_t seed;
    int32_t max_tokens;
    cJSON *schema;     /* parsed schema, or NULL; "json" -> schema_any */
    bool schema_any;
    int attempts;
    double not_before;
    char last_reason[24];
    char last_detail[256];
    /* in flight */
    CURL *easy;
    int ep;
    struct curl_slist *hdrs;
    char *body;
    qf_sb resp;
    bool sent_schema;
    int fly_idx;       /* index in http_provider.fly while in flight */
    struct job *next;
} job;

typedef struct http_provider {
    qf_provider base;
    qf_provider_http_params p;
    char *model;
    char *auth;        /* "Authorization: Bearer ..." or NULL */
    endpoint *ep;
    int n_ep;
    CURLM *multi;
    job *waiting, *waiting_tail;
    job **fly;         /* (max_in_flight) jobs on the wire */
    int in_flight;
    qf_presult *done;  /* finished, not yet handed out */
    int n_done, cap_done;
    uint64_t rng;
} http_provider;

/* snprintf whose truncation is intended (messages are cut to their field). */
static void fmtbuf(char *dst, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmtbuf(char *dst, size_t cap, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    vsnprintf(dst, cap, f, ap);
    va_end(ap);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud) {
    job *j = ud;
    size_t n = size * nmemb;
    if (j->resp.len + n > (64u << 20)) return 0; /* a 64 MiB reply is not a chat reply */
    qf_sb_append(&j->resp, ptr, n);
    return j->resp.oom ? 0 : n;
}

static double rand01(http_provider *h) {
    h->rng ^= h->rng << 13;
    h->rng ^= h->rng >> 7;
    h->rng ^= h->rng << 17;
    return (double)(h->rng >> 11) / 9007199254740992.0;
}

/* The job must not be in the multi handle any more. */
static void job_free(job *j) {
    if (!j) return;
    if (j->easy) curl_easy_cleanup(j->easy);
    cJSON_Delete(j->msgs);
    cJSON_Delete(j->schema);
    if (j->hdrs) curl_slist_free_all(j->hdrs);
    qf_free(j->body);
    qf_sb_free(&j->resp);
    qf_free(j);
}

static void push_waiting(http_provider *h, job *j, bool front) {
    j->next = NULL;
    if (front) {
        j->next = h->waiting;
        h->waiting = j;
        if (!h->waiting_tail) h->waiting_tail = j;
    } else {
        if (h->waiting_tail) h->waiting_tail->next = j;
        else h->waiting = j;
        h->waiting_tail = j;
    }
    h->base.stats.waiting++;
}

static bool push_done(http_provider *h, const qf_presult *r) {
    if (h->n_done == h->cap_done) {
        int cap = h->cap_done ? h->cap_done * 2 : 32;
        qf_presult *v = qf_realloc(h->done, (size_t)cap * sizeof *v);
        if (!v) return false;
        h->done = v;
        h->cap_done = cap;
    }
    h->done[h->n_done++] = *r;
    return true;
}

static void finish_fail(http_provider *h, job *j) {
    qf_presult r;
    memset(&r, 0, sizeof r);
    r.tag = j->tag;
    r.index = j->index;
    r.status = !strcmp(j->last_reason, "timeout") ? QF_ERR_TIMEOUT : QF_ERR_IO;
    fmtbuf(r.reason, sizeof r.reason, "%s", j->last_reason);
    fmtbuf(r.detail, sizeof r.detail, "%s", j->last_detail);
    r.attempts = j->attempts;
    if (!push_done(h, &r)) qf_error("http provider: out of memory recording a failure");
    job_free(j);
}

/* ---- request bodies ---- */

static char *build_body(http_provider *h, job *j, bool with_schema) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "model", h->model);
    cJSON_AddItemToObject(o, "messages", cJSON_Duplicate(j->msgs, 1));
    cJSON_AddBoolToObject(o, "stream", 0);
    if (h->p.api == QF_HTTP_OPENAI) {
        cJSON_AddNumberToObject(o, "temperature", j->temperature);
        cJSON_AddNumberToObject(o, "top_p", j->top_p);
        cJSON_AddNumberToObject(o, "seed", (double)(j->seed & 0x7fffffff));
        if (j->max_tokens > 0) cJSON_AddNumberToObject(o, "max_tokens", j->max_tokens);
        if (with_schema && (j->schema || j->schema_any)) {
            cJSON *rf = cJSON_AddObjectToObject(o, "response_format");
            if (j->schema_any) {
                cJSON_AddStringToObject(rf, "type", "json_object");
            } else {
                cJSON_AddStringToObject(rf, "type", "json_schema");
                cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
                cJSON_AddStringToObject(js, "name", "qforge_reply");
                cJSON_AddBoolToObject(js, "strict", 1);
                cJSON_AddItemToObject(js, "schema", cJSON_Duplicate(j->schema, 1));
            }
        }
    } else {
        cJSON *opt = cJSON_AddObjectToObject(o, "options");
        cJSON_AddNumberToObject(opt, "temperature", j->temperature);
        cJSON_AddNumberToObject(opt, "top_p", j->top_p);
        cJSON_AddNumberToObject(opt, "seed", (double)(j->seed & 0x7fffffff));
        if (j->max_tokens > 0) cJSON_AddNumberToObject(opt, "num_predict", j->max_tokens);
        if (with_schema && j->schema_any) cJSON_AddStringToObject(o, "format", "json");
        else if (with_schema && j->schema) cJSON_AddItemToObject(o, "format", cJSON_Duplicate(j->schema, 1));
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return NULL;
    char *r = qf_strdup(s);
    cJSON_free(s);
    return r;
}

/* ---- sending ---- */

static int pick_endpoint(http_provider *h, double now) {
    int best = -1;
    for (int i = 0; i < h->n_ep; i++) {
        if (h->ep[i].out_until > now) continue;
        if (best < 0 || h->ep[i].outstanding < h->ep[best].outstanding) best = i;
    }
    return best;
}

static bool start_job(http_provider *h, job *j, int ep, qf_err *err) {
    endpoint *e = &h->ep[ep];
    j->sent_schema = !e->no_schema && (j->schema || j->schema_any);
    qf_free(j->body);
    j->body = build_body(h, j, j->sent_schema);
    if (!j->body) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory building a request");
        return false;
    }
    if (!j->easy && !(j->easy = curl_easy_init())) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "curl_easy_init failed");
        return false;
    }
    curl_easy_reset(j->easy);
    if (j->hdrs) curl_slist_free_all(j->hdrs);
    j->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (h->auth) j->hdrs = curl_slist_append(j->hdrs, h->auth);
    j->resp.len = 0;
    if (j->resp.buf) j->resp.buf[0] = 0;
    curl_easy_setopt(j->easy, CURLOPT_URL, e->chat_url);
    curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
    curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, (long)(h->p.timeout_s * 1000));
    curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(j->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(j->easy, CURLOPT_ACCEPT_ENCODING, "");
    if (curl_multi_add_handle(h->multi, j->easy) != CURLM_OK) {
        QF_ERR_SET(err, QF_ERR_INTERNAL, "curl_multi_add_handle failed");
        return false;
    }
    j->ep = ep;
    j->attempts++;
    e->outstanding++;
    j->fly_idx = h->in_flight;
    h->fly[h->in_flight] = j;
    h->in_flight++;
    h->base.stats.in_flight = h->in_flight;
    return true;
}

/* Start waiting jobs that are due while there is room. Returns the time
 * of the next due job still waiting (INFINITY if none). */
static double start_ready(http_provider *h) {
    double now = qf_now_s(), next = INFINITY;
    job **pp = &h->waiting, *prev = NULL;
    while (*pp && h->in_flight < h->p.max_in_flight) {
        job *j = *pp;
        if (j->not_before > now) {
            if (j->not_before < next) next = j->not_before;
            prev = j;
            pp = &j->next;
            continue;
        }
        int ep = pick_endpoint(h, now);
        if (ep < 0) { /* every endpoint is cooling down */
            double until = INFINITY;
            for (int i = 0; i < h->n_ep; i++)
                if (h->ep[i].out_until < until) until = h->ep[i].out_until;
            return until < next ? until : next;
        }
        *pp = j->next;
        if (h->waiting_tail == j) h->waiting_tail = prev;
        h->base.stats.waiting--;
        qf_err err = {0};
        if (!start_job(h, j, ep, &err)) {
            fmtbuf(j->last_reason, sizeof j->last_reason, "client");
            fmtbuf(j->last_detail, sizeof j->last_detail, "%s", err.msg);
            finish_fail(h, j);
        }
    }
    for (job *j = *pp; j; j = j->next)
        if (j->not_before < next) next = j->not_before;
    return next;
}

/* ---- replies ---- */

static int32_t json_int(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int32_t)v->valuedouble : 0;
}

/* Parse a 200 body into r; false (detail set) when it is not a chat reply. */
static bool parse_reply(http_provider *h, job *j, qf_presult *r) {
    cJSON *o = cJSON_ParseWithLength(j->resp.buf ? j->resp.buf : "", j->resp.len);
    const char *content = NULL, *finish = "stop";
    bool ok = false;
    if (!o) {
        fmtbuf(r->detail, sizeof r->detail, "reply body is not JSON (%zu bytes)", j->resp.len);
        goto done;
    }
    if (h->p.api == QF_HTTP_OPENAI) {
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch, "message");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        if (cJSON_IsString(c)) content = c->valuestring;
        if (cJSON_IsString(fr)) finish = fr->valuestring;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
        r->tokens_in = json_int(u, "prompt_tokens");
        r->tokens_out = json_int(u, "completion_tokens");
        r->tokens_cached = json_int(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details"), "cached_tokens");
    } else {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "message");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(o, "done_reason");
        if (cJSON_IsString(c)) content = c->valuestring;
        if (cJSON_IsString(fr)) finish = fr->valuestring;
        r->tokens_in = json_int(o, "prompt_eval_count");
        r->tokens_out = json_int(o, "eval_count");
    }
    if (!content) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
        const cJSON *em = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : e;
        fmtbuf(r->detail, sizeof r->detail, "reply has no message content%s%s", cJSON_IsString(em) ? ": " : "",
                 cJSON_IsString(em) ? em->valuestring : "");
        goto done;
    }
    r->text = qf_strdup(content);
    if (!r->text) {
        fmtbuf(r->detail, sizeof r->detail, "out of memory");
        goto done;
    }
    r->len = strlen(r->text);
    fmtbuf(r->finish, sizeof r->finish, "%s", finish);
    ok = true;
done:
    cJSON_Delete(o);
    return ok;
}

static void body_excerpt(const job *j, char *out, size_t cap) {
    size_t n = j->resp.len < 160 ? j->resp.len : 160;
    n = qf_utf8_floor(j->resp.buf ? j->resp.buf : "", n);
    snprintf(out, cap, "%.*s", (int)n, j->resp.buf ? j->resp.buf : "");
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

static void endpoint_result(http_provider *h, endpoint *e, bool ok, double now) {
    if (ok) {
        e->consecutive_fail = 0;
        e->cooldown = h->p.cooldown_s;
        return;
    }
    if (++e->consecutive_fail >= h->p.fail_threshold) {
        e->out_until = now + e->cooldown;
        qf_warn("endpoint %s failed %d times in a row: taken out for %.1f s", e->chat_url, e->consecutive_fail,
                e->cooldown);
        double cap = h->p.cooldown_s * 8 < 600 ? h->p.cooldown_s * 8 : 600;
        e->cooldown = e->cooldown * 2 > cap ? cap : e->cooldown * 2;
        e->consecutive_fail = 0;
    }
}

static void handle_done(http_provider *h, CURL *easy, CURLcode cc) {
    job *j = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&j);
    curl_multi_remove_handle(h->multi, easy);
    endpoint *e = &h->ep[j->ep];
    e->outstanding--;
    h->in_flight--;
    h->fly[j->fly_idx] = h->fly[h->in_flight];
    h->fly[j->fly_idx]->fly_idx = j->fly_idx;
    h->base.stats.in_flight = h->in_flight;
    double now = qf_now_s();
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    bool retry = false, count_ep = true;
    double retry_after = 0;
    if (cc != CURLE_OK) {
        retry = true;
        fmtbuf(j->last_reason, sizeof j->last_reason, "%s",
                 cc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connect");
        fmtbuf(j->last_detail, sizeof j->last_detail, "%s: %s", e->chat_url, curl_easy_strerror(cc));
    } else if (code == 200) {
        qf_presult r;
        memset(&r, 0, sizeof r);
        r.tag = j->tag;
        r.index = j->index;
        r.attempts = j->attempts;
        if (parse_reply(h, j, &r)) {
            endpoint_result(h, e, true, now);
            if (!push_done(h, &r)) {
                qf_presult_deinit(&r);
                qf_error("http provider: out of memory");
            }
            job_free(j);
            return;
        }
        retry = true;
        fmtbuf(j->last_reason, sizeof j->last_reason, "bad_response");
        fmtbuf(j->last_detail, sizeof j->last_detail, "%s: %s", e->chat_url, r.detail);
    } else if ((code == 400 || code == 422) && j->sent_schema) {
        if (!e->no_schema)
            qf_warn("%s refused the JSON schema (HTTP %ld): asking for JSON in the prompt only", e->chat_url, code);
        e->no_schema = true;
        j->attempts--; /* not the request's fault */
        push_waiting(h, j, true);
        return;
    } else if (code == 429 || code >= 500) {
        retry = true;
        count_ep = code != 429;
        fmtbuf(j->last_reason, sizeof j->last_reason, "http_%ld", code);
        char ex[200];
        body_excerpt(j, ex, sizeof ex);
        fmtbuf(j->last_detail, sizeof j->last_detail, "%s: HTTP %ld %s", e->chat_url, code, ex);
        curl_off_t ra = 0;
        if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) retry_after = (double)ra;
    } else {
        fmtbuf(j->last_reason, sizeof j->last_reason, "http_%ld", code);
        char ex[200];
        body_excerpt(j, ex, sizeof ex);
        fmtbuf(j->last_detail, sizeof j->last_detail, "%s: HTTP %ld %s", e->chat_url, code, ex);
    }
    if (count_ep) endpoint_result(h, e, false, now);
    if (retry && j->attempts <= h->p.max_retries) {
        double d = h->p.backoff_base_s * pow(2.0, j->attempts - 1);
        if (d > h->p.backoff_max_s) d = h->p.backoff_max_s;
        d *= 0.5 + rand01(h);
        if (retry_after > d) d = retry_after > h->p.backoff_max_s ? h->p.backoff_max_s : retry_after;
        j->not_before = now + d;
        h->base.stats.retries++;
        qf_debug("retrying (%s) in %.2f s, attempt %d", j->last_reason, d, j->attempts + 1);
        push_waiting(h, j, false);
        return;
    }
    finish_fail(h, j);
}

/* ---- interface ---- */

static qf_status http_submit(qf_provider *pv, const qf_preq *r, qf_err *err) {
    http_provider *h = (http_provider *)pv;
    int32_t n = r->n > 0 ? r->n : 1;
    cJSON *msgs = cJSON_CreateArray();
    if (!msgs) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->n_msgs; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m) goto nomem;
        cJSON_AddItemToArray(msgs, m);
        char *c = qf_utf8_count_invalid(r->msgs[i].content, strlen(r->msgs[i].content))
                      ? qf_utf8_repair(r->msgs[i].content, strlen(r->msgs[i].content), NULL, NULL)
                      : NULL;
        if (!cJSON_AddStringToObject(m, "role", r->msgs[i].role) ||
            !cJSON_AddStringToObject(m, "content", c ? c : r->msgs[i].content)) {
            qf_free(c);
            goto nomem;
        }
        qf_free(c);
    }
    cJSON *schema = NULL;
    bool any = r->json_schema && !strcmp(r->json_schema, "json");
    if (r->json_schema && !any) {
        schema = cJSON_Parse(r->json_schema);
        if (!schema) {
            cJSON_Delete(msgs);
            return QF_ERR_SET(err, QF_ERR_INVALID, "request: json_schema is not JSON");
        }
    }
    for (int32_t i = 0; i < n; i++) {
        job *j = qf_calloc(1, sizeof *j);
        if (!j) {
            cJSON_Delete(schema);
            goto nomem;
        }
        j->tag = r->tag;
        j->index = i;
        j->msgs = i + 1 < n ? cJSON_Duplicate(msgs, 1) : msgs;
        j->schema = schema ? (i + 1 < n ? cJSON_Duplicate(schema, 1) : schema) : NULL;
        j->schema_any = any;
        j->temperature = r->temperature;
        j->top_p = r->top_p;
        j->seed = r->seed + (uint64_t)i;
        j->max_tokens = r->max_tokens;
        if (!j->msgs || (schema && !j->schema)) {
            if (j->msgs == msgs) msgs = NULL;
            if (j->schema == schema) schema = NULL;
            job_free(j);
            cJSON_Delete(msgs);
            cJSON_Delete(schema);
            return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        }
        push_waiting(h, j, false);
    }
    return QF_OK;
nomem:
    cJSON_Delete(msgs);
    return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
}

static int http_wait(qf_provider *pv, qf_presult *out, int cap, double timeout_s) {
    http_provider *h = (http_provider *)pv;
    double deadline = qf_now_s() + (timeout_s > 0 ? timeout_s : 0);
    for (;;) {
        double next = start_ready(h);
        int running = 0;
        curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left)) != NULL)
            if (m->msg == CURLMSG_DONE) handle_done(h, m->easy_handle, m->data.result);
        if (h->n_done > 0) break;
        double now = qf_now_s();
        if (now >= deadline) return 0;
        if (h->in_flight == 0 && !h->waiting) return 0;
        double wait = deadline - now;
        if (next - now < wait) wait = next - now;
        if (wait > 0.1) wait = 0.1;
        if (wait < 0) wait = 0;
        curl_multi_poll(h->multi, NULL, 0, (int)(wait * 1000) + 1, NULL);
    }
    int n = h->n_done < cap ? h->n_done : cap;
    memcpy(out, h->done, (size_t)n * sizeof *out);
    memmove(h->done, h->done + n, (size_t)(h->n_done - n) * sizeof *h->done);
    h->n_done -= n;
    return n;
}

static void http_free(qf_provider *pv) {
    http_provider *h = (http_provider *)pv;
    for (int i = 0; i < h->in_flight; i++) {
        job *j = h->fly[i];
        curl_multi_remove_handle(h->multi, j->easy);
        job_free(j);
    }
    qf_free(h->fly);
    if (h->multi) curl_multi_cleanup(h->multi);
    for (job *j = h->waiting, *n; j; j = n) {
        n = j->next;
        job_free(j);
    }
    for (int i = 0; i < h->n_done; i++) qf_presult_deinit(&h->done[i]);
    qf_free(h->done);
    for (int i = 0; i < h->n_ep; i++) {
        qf_free(h->ep[i].chat_url);
        qf_free(h->ep[i].models_url);
    }
    qf_free(h->ep);
    qf_free(h->model);
    qf_free(h->auth);
    qf_free(h);
}

static const qf_provider_vt k_http_vt = {http_submit, http_wait, NULL, http_free};

/* ---- construction ---- */

static char *join_url(const char *base, size_t n, const char *suffix) {
    char *s = qf_malloc(n + strlen(suffix) + 1);
    if (!s) return NULL;
    memcpy(s, base, n);
    strcpy(s + n, suffix);
    return s;
}

static bool ends_with(const char *s, size_t n, const char *suf) {
    size_t m = strlen(suf);
    return n >= m && !memcmp(s + n - m, suf, m);
}

static qf_status make_urls(qf_http_api api, const char *url, endpoint *e, qf_err *err) {
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s: endpoint URL must start with http:// or https://", url);
    size_t n = strlen(url);
    while (n > 8 && url[n - 1] == '/') n--;
    if (api == QF_HTTP_OPENAI) {
        if (ends_with(url, n, "/chat/completions")) {
            size_t b = n - strlen("/chat/completions");
            e->chat_url = join_url(url, n, "");
            e->models_url = join_url(url, b, "/models");
        } else if (ends_with(url, n, "/v1")) {
            e->chat_url = join_url(url, n, "/chat/completions");
            e->models_url = join_url(url, n, "/models");
        } else {
            e->chat_url = join_url(url, n, "/v1/chat/completions");
            e->models_url = join_url(url, n, "/v1/models");
        }
    } else {
        if (ends_with(url, n, "/api/chat")) n -= strlen("/chat");
        if (ends_with(url, n, "/api")) n -= strlen("/api");
        e->chat_url = join_url(url, n, "/api/chat");
        e->models_url = join_url(url, n, "/api/tags");
    }
    if (!e->chat_url || !e->models_url) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    return QF_OK;
}

/* The first model the server lists (GET models_url). */
static char *query_model(http_provider *h, qf_err *err) {
    CURL *c = curl_easy_init();
    if (!c) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "curl_easy_init failed");
        return NULL;
    }
    job tmp;
    memset(&tmp, 0, sizeof tmp);
    struct curl_slist *hdrs = h->auth ? curl_slist_append(NULL, h->auth) : NULL;
    curl_easy_setopt(c, CURLOPT_URL, h->ep[0].models_url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &tmp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    if (hdrs) curl_slist_free_all(hdrs);
    char *name = NULL;
    if (cc != CURLE_OK) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: %s (is the server running?)", h->ep[0].models_url, curl_easy_strerror(cc));
        goto done;
    }
    cJSON *o = cJSON_ParseWithLength(tmp.resp.buf ? tmp.resp.buf : "", tmp.resp.len);
    const cJSON *first = h->p.api == QF_HTTP_OPENAI
                             ? cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "data"), 0), "id")
                             : cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "models"), 0), "name");
    if (code == 200 && cJSON_IsString(first)) name = qf_strdup(first->valuestring);
    cJSON_Delete(o);
    if (!name) {
        qf_warn("%s: no model listed (HTTP %ld); using model name \"default\" (set one with --model-name)",
                h->ep[0].models_url, code);
        name = qf_strdup("default");
    }
done:
    qf_sb_free(&tmp.resp);
    return name;
}

qf_provider *qf_provider_http_new(const qf_provider_http_params *p, qf_err *err) {
    if (!p || p->n_urls < 1 || !p->urls) {
        QF_ERR_SET(err, QF_ERR_INVALID, "http provider: at least one endpoint URL is needed");
        return NULL;
    }
    static bool curl_ready = false;
    if (!curl_ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready = true;
    }
    http_provider *h = qf_calloc(1, sizeof *h);
    if (!h) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.vt = &k_http_vt;
    h->p = *p;
    if (h->p.max_in_flight <= 0) h->p.max_in_flight = 4;
    if (h->p.timeout_s <= 0) h->p.timeout_s = 1800;
    if (h->p.max_retries < 0) h->p.max_retries = 5;
    if (h->p.backoff_base_s <= 0) h->p.backoff_base_s = 1;
    if (h->p.backoff_max_s <= 0) h->p.backoff_max_s = 60;
    if (h->p.fail_threshold <= 0) h->p.fail_threshold = 3;
    if (h->p.cooldown_s <= 0) h->p.cooldown_s = 30;
    h->rng = qf_now_ns() | 1;
    h->ep = qf_calloc((size_t)p->n_urls, sizeof *h->ep);
    if (!h->ep) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    h->n_ep = p->n_urls;
    for (int i = 0; i < p->n_urls; i++) {
        h->ep[i].cooldown = h->p.cooldown_s;
        if (make_urls(p->api, p->urls[i], &h->ep[i], err) != QF_OK) goto fail;
    }
    const char *key = p->api_key ? p->api_key : getenv("OPENAI_API_KEY");
    if (key && *key && p->api == QF_HTTP_OPENAI) {
        size_t n = strlen(key) + 32;
        h->auth = qf_malloc(n);
        if (!h->auth) {
            QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
            goto fail;
        }
        snprintf(h->auth, n, "Authorization: Bearer %s", key);
    }
    h->fly = qf_calloc((size_t)h->p.max_in_flight, sizeof *h->fly);
    h->multi = curl_multi_init();
    if (!h->multi || !h->fly) {
        QF_ERR_SET(err, QF_ERR_INTERNAL, "curl_multi_init failed");
        goto fail;
    }
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->p.max_in_flight * 2);
    h->model = p->model ? qf_strdup(p->model) : query_model(h, err);
    if (!h->model) goto fail;
    snprintf(h->base.model_name, sizeof h->base.model_name, "%s", h->model);
    snprintf(h->base.model_id, sizeof h->base.model_id, "%s:%s", p->api == QF_HTTP_OPENAI ? "openai" : "ollama",
             h->model);
    return &h->base;
fail:
    http_free(&h->base);
    return NULL;
}
