/* gen.c - one generation request from parsed body to response.
 *
 * Steps: parse (request.c) -> pick the model (the request's, or the only
 * one) -> acquire it (loads on first use) -> build the prompt (chat
 * template for chat routes and non-raw Ollama generate, plain text or token
 * ids otherwise) -> check it against the context -> submit to the engine.
 * Each failure answers with the status the API expects and stops there.
 *
 * Then either
 *   non-streaming: the connection thread waits for events (100 ms at a
 *     time, checking between waits whether the client is still there),
 *     gathers the texts and answers one JSON body; or
 *   streaming: a 200 response whose content comes from stream_reader,
 *     which MHD calls on this connection's thread: it blocks for the next
 *     event (again watching the socket) and hands MHD the bytes the API's
 *     stream_event renders (SSE or NDJSON).
 * A client that goes away is noticed within 100 ms while waiting, or at
 * once by a failed write; either way the engine request is cancelled and
 * its kv blocks freed. The serve_gen lives in the connection (serve_conn)
 * and is freed by the request-completed callback.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/mem.h"
#include "serve/serve_int.h"
#include "tok/chat.h"
#include "tok/tok.h"

#define WAIT_MS 100

static const serve_api_ops *ops_for(serve_api api) {
    switch (api) {
    case SERVE_OPENAI_CHAT:
        return &serve_ops_openai_chat;
    case SERVE_OPENAI_COMPLETION:
        return &serve_ops_openai_completion;
    case SERVE_OLLAMA_CHAT:
        return &serve_ops_ollama_chat;
    default:
        return &serve_ops_ollama_generate;
    }
}

static void cancel_gen(serve_gen *g) {
    if (g->submitted && g->n_final < g->n && g->ent)
        qf_engine_cancel(qf_models_engine(g->ent), g->id);
}

void serve_gen_free(serve_gen *g) {
    if (!g) return;
    cancel_gen(g);
    serve_job_unref(g->job);
    qf_models_release(g->srv->models, g->ent);
    serve_req_deinit(&g->req);
    if (g->text)
        for (int i = 0; i < g->n; i++)
            serve_buf_free(&g->text[i]);
    qf_free(g->text);
    qf_free(g->finish);
    qf_free(g->started);
    qf_free(g->prompt_ids);
    qf_free(g->out_ids);
    serve_buf_free(&g->out);
    qf_free(g);
}

/* Record one event in g (texts when not streaming, finish reasons, usage). */
static void absorb(serve_gen *g, const serve_ev *ev) {
    int i = ev->index;
    if (i < 0 || i >= g->n) return;
    if (!g->req.stream && ev->text) serve_buf_add(&g->text[i], ev->text, ev->len);
    if (i == 0 && ev->token >= 0 && ev->finish == QF_FINISH_NONE) {
        if (g->n_out == g->cap_out) {
            int32_t cap = g->cap_out ? g->cap_out * 2 : 256;
            int32_t *p = qf_realloc(g->out_ids, (size_t)cap * sizeof *p);
            if (p) {
                g->out_ids = p;
                g->cap_out = cap;
            }
        }
        if (g->n_out < g->cap_out) g->out_ids[g->n_out++] = ev->token;
    }
    if (ev->finish == QF_FINISH_NONE) return;
    g->finish[i] = ev->finish;
    g->n_final++;
    g->completion_tokens += ev->usage.completion_tokens;
    if (i == 0) g->usage0 = ev->usage;
    qf_finish f = ev->finish;
    int rank_new = f == QF_FINISH_ERROR       ? 3
                   : f == QF_FINISH_TIMEOUT   ? 2
                   : f == QF_FINISH_CANCELLED ? 1
                                              : 0;
    int rank_old = g->err_finish == QF_FINISH_ERROR       ? 3
                   : g->err_finish == QF_FINISH_TIMEOUT   ? 2
                   : g->err_finish == QF_FINISH_CANCELLED ? 1
                                                          : 0;
    if (rank_new > rank_old) {
        g->err_finish = f;
        if (f == QF_FINISH_ERROR)
            snprintf(g->err_msg, sizeof g->err_msg, "generation failed: %s",
                     ev->error ? ev->error : "engine error");
        else if (f == QF_FINISH_TIMEOUT)
            snprintf(g->err_msg, sizeof g->err_msg,
                     "generation did not finish within the server's timeout (--timeout %.0f s)",
                     g->srv->o.timeout_s > 0 ? g->srv->o.timeout_s : 1800.0);
        else
            snprintf(
                g->err_msg, sizeof g->err_msg,
                "generation was cancelled (the server is shutting down or unloaded the model)");
    }
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    serve_conn *c = cls;
    serve_gen *g = c->gen;
    while (g->out_pos >= g->out.len) {
        g->out.len = 0;
        g->out_pos = 0;
        if (g->done) return MHD_CONTENT_READER_END_OF_STREAM;
        serve_ev ev;
        int r = serve_job_next(g->job, &ev, WAIT_MS);
        if (r < 0) {
            g->ops->stream_end(g, &g->out);
            g->done = true;
            continue;
        }
        double now = qf_now_s();
        if (r == 0 || now >= g->next_check) {
            g->next_check = now + WAIT_MS * 1e-3;
            if (serve_client_gone(c) || atomic_load(&g->srv->stopping)) {
                if (r > 0) serve_ev_clear(&ev);
                cancel_gen(g);
                g->closed = true;
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (r == 0) continue;
        }
        absorb(g, &ev);
        g->ops->stream_event(g, &ev, &g->out);
        serve_ev_clear(&ev);
        if (g->n_final == g->n) {
            g->ops->stream_end(g, &g->out);
            g->done = true;
        }
        if (g->out.oom) {
            cancel_gen(g);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t k = g->out.len - g->out_pos;
    if (k > max) k = max;
    memcpy(buf, g->out.p + g->out_pos, k);
    g->out_pos += k;
    return (ssize_t)k;
}

/* ---- prompt ---- */

static int32_t *encode(const qf_model *m, const char *text, bool add_special, int32_t *n,
                       qf_err *err) {
    return qf_tok_encode(m->tok, text, strlen(text), add_special, true, n, err);
}

/* Tokens of the request's prompt; NULL + err on failure. */
static int32_t *build_prompt(serve_gen *g, int32_t *n_out, qf_err *err) {
    const serve_req *r = &g->req;
    const qf_model *m = qf_models_model(g->ent);
    *n_out = 0;
    if (r->api == SERVE_OPENAI_COMPLETION && r->prompt_ids) {
        int32_t nv = qf_tok_n_vocab(m->tok);
        for (int i = 0; i < r->n_prompt_ids; i++)
            if (r->prompt_ids[i] >= nv) {
                QF_ERR_SET(
                    err, QF_ERR_INVALID,
                    "prompt: token id %d at position %d is outside the vocabulary (%d tokens)",
                    r->prompt_ids[i], i, nv);
                return NULL;
            }
        int32_t *ids = qf_malloc((size_t)(r->n_prompt_ids ? r->n_prompt_ids : 1) * sizeof *ids);
        if (!ids) {
            QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
            return NULL;
        }
        memcpy(ids, r->prompt_ids, (size_t)r->n_prompt_ids * sizeof *ids);
        *n_out = r->n_prompt_ids;
        return ids;
    }
    char *text = NULL;
    bool chat = r->api == SERVE_OPENAI_CHAT || r->api == SERVE_OLLAMA_CHAT ||
                (r->api == SERVE_OLLAMA_GENERATE && !r->raw);
    if (chat) {
        qf_chat_msg one[2];
        const qf_chat_msg *msgs = one;
        size_t n = 0;
        qf_chat_msg *many = NULL;
        if (r->api == SERVE_OLLAMA_GENERATE) {
            if (r->system && r->system[0]) one[n++] = (qf_chat_msg){"system", r->system};
            one[n++] = (qf_chat_msg){"user", r->prompt ? r->prompt : ""};
        } else {
            many = qf_calloc((size_t)r->n_msgs, sizeof *many);
            if (!many) {
                QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
                return NULL;
            }
            for (int i = 0; i < r->n_msgs; i++)
                many[i] = (qf_chat_msg){r->msgs[i].role, r->msgs[i].content};
            msgs = many;
            n = (size_t)r->n_msgs;
        }
        text = qf_chat_format(qf_models_chat(g->ent), msgs, n, true, err);
        qf_free(many);
        if (!text) {
            qf_err_prefix(err, "messages");
            return NULL;
        }
    } else {
        text = qf_strdup(r->prompt ? r->prompt : "");
        if (!text) {
            QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
            return NULL;
        }
    }
    /* Ollama's context: the tokens of the previous exchange, continued. */
    bool cont = r->api == SERVE_OLLAMA_GENERATE && r->n_prompt_ids > 0;
    int32_t nt = 0;
    int32_t *t = encode(m, text, !cont, &nt, err);
    qf_free(text);
    if (!t) return NULL;
    if (!cont) {
        *n_out = nt;
        return t;
    }
    int32_t nv = qf_tok_n_vocab(m->tok);
    int32_t *ids = qf_malloc((size_t)(r->n_prompt_ids + nt + 1) * sizeof *ids);
    if (!ids) {
        qf_free(t);
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < r->n_prompt_ids; i++) {
        if (r->prompt_ids[i] >= nv) {
            QF_ERR_SET(err, QF_ERR_INVALID,
                       "context: token id %d is outside the vocabulary (%d tokens)",
                       r->prompt_ids[i], nv);
            qf_free(t);
            qf_free(ids);
            return NULL;
        }
        ids[i] = r->prompt_ids[i];
    }
    memcpy(ids + r->n_prompt_ids, t, (size_t)nt * sizeof *t);
    qf_free(t);
    *n_out = r->n_prompt_ids + nt;
    return ids;
}

/* ---- the request ---- */

enum MHD_Result serve_generate(serve_conn *c, serve_api api) {
    struct qf_serve *s = c->srv;
    serve_gen *g = qf_calloc(1, sizeof *g);
    if (!g) return serve_reply_error(c, 500, "out of memory", NULL, NULL);
    c->gen = g;
    g->srv = s;
    g->c = c;
    g->ops = ops_for(api);
    g->t0 = qf_now_s();
    g->created = (int64_t)time(NULL);
    char param[128];
    qf_err err = {0};
    if (serve_req_parse(api, c->body.p, c->body.len, &g->req, param, sizeof param, &err)) {
        g->req.api = api;
        return serve_reply_error(c, err.code == QF_ERR_NOMEM ? 500 : 400, err.msg,
                                 param[0] ? param : NULL,
                                 err.code == QF_ERR_UNSUPPORTED ? "unsupported_parameter" : NULL);
    }
    serve_req *r = &g->req;

    /* model */
    char defname[256];
    const char *name = r->model;
    if (!name) {
        name = qf_models_default(s->models, defname, sizeof defname);
        if (!name)
            return serve_reply_error(
                c, 400,
                "model is required: this server has several models (GET /v1/models lists them)",
                "model", NULL);
    }
    bool ollama_load =
        (api == SERVE_OLLAMA_CHAT && r->n_msgs == 0) ||
        (api == SERVE_OLLAMA_GENERATE && (!r->prompt || !r->prompt[0]) && r->n_prompt_ids == 0);
    if (ollama_load) return serve_ollama_load(c, r);

    double ka = r->has_keep_alive ? r->keep_alive_s : NAN;
    g->ent = qf_models_acquire(s->models, name, ka, &g->load_s, &err);
    if (!g->ent) {
        int st = err.code == QF_ERR_NOT_FOUND ? 404 : err.code == QF_ERR_BUSY ? 503 : 500;
        return serve_reply_error(c, st, err.msg, "model", st == 404 ? "model_not_found" : NULL);
    }
    snprintf(g->model_name, sizeof g->model_name, "%s", qf_models_name(g->ent));
    g->n = r->n;
    g->text = qf_calloc((size_t)g->n, sizeof *g->text);
    g->finish = qf_calloc((size_t)g->n, sizeof *g->finish);
    g->started = qf_calloc((size_t)g->n, sizeof *g->started);
    if (!g->text || !g->finish || !g->started)
        return serve_reply_error(c, 500, "out of memory", NULL, NULL);
    snprintf(g->oid, sizeof g->oid, "%s-%llx%06llx", api == SERVE_OPENAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)g->created, (unsigned long long)atomic_fetch_add(&s->seq, 1));

    /* prompt */
    g->prompt_ids = build_prompt(g, &g->n_prompt, &err);
    if (!g->prompt_ids)
        return serve_reply_error(
            c, err.code == QF_ERR_NOMEM ? 500 : 400, err.msg,
            api == SERVE_OPENAI_CHAT || api == SERVE_OLLAMA_CHAT ? "messages" : "prompt", NULL);
    if (g->n_prompt == 0)
        return serve_reply_error(c, 400, "the prompt is empty (0 tokens)", "prompt", NULL);
    qf_engine *e = qf_models_engine(g->ent);
    qf_engine_stats est;
    qf_engine_get_stats(e, &est);
    bool openai = api == SERVE_OPENAI_CHAT || api == SERVE_OPENAI_COMPLETION;
    char msg[QF_ERR_MSG_MAX];
    if (est.n_ctx > 0 && g->n_prompt >= est.n_ctx) {
        snprintf(
            msg, sizeof msg,
            "the prompt is %d tokens but the model's context is %d tokens; shorten the prompt or "
            "start the server with a larger --ctx",
            g->n_prompt, est.n_ctx);
        return serve_reply_error(c, 400, msg,
                                 openai ? (api == SERVE_OPENAI_CHAT ? "messages" : "prompt") : NULL,
                                 "context_length_exceeded");
    }
    int64_t max_tokens = r->max_tokens;
    if (est.n_ctx > 0 && max_tokens > est.n_ctx && openai) {
        snprintf(
            msg, sizeof msg,
            "max_tokens is %lld but the model's context is only %d tokens (the prompt uses %d)",
            (long long)max_tokens, est.n_ctx, g->n_prompt);
        return serve_reply_error(c, 400, msg, "max_tokens", "context_length_exceeded");
    }
    /* Room left after the prompt: a larger request stops with "length". */
    if (est.n_ctx > 0 && (max_tokens <= 0 || max_tokens > est.n_ctx - g->n_prompt))
        max_tokens = est.n_ctx - g->n_prompt;

    /* submit */
    g->job = serve_job_new(s, g->n);
    if (!g->job) return serve_reply_error(c, 500, "out of memory", NULL, NULL);
    qf_request rq;
    memset(&rq, 0, sizeof rq);
    rq.prompt = g->prompt_ids;
    rq.n_prompt = g->n_prompt;
    rq.sample = r->sample;
    rq.max_tokens = (int32_t)max_tokens;
    rq.stop = (const char *const *)r->stop;
    rq.n_stop = r->n_stop;
    rq.n = g->n;
    rq.overflow = QF_OVERFLOW_REFUSE;
    rq.ignore_eos = r->ignore_eos;
    rq.json_schema = r->json_schema;
    rq.on_event = serve_job_on_event;
    rq.ud = g->job;
    qf_status st = qf_engine_submit(e, &rq, &g->id, &err);
    if (st) {
        serve_job_submit_failed(g->job); /* the engine's reference: no events will come */
        if (st == QF_ERR_BUSY) {
            char m2[QF_ERR_MSG_MAX + 64];
            snprintf(m2, sizeof m2, "the server is busy: %s",
                     err.msg[0] ? err.msg : "queue full; retry later");
            c->status = 503;
            return serve_reply_error(c, 503, m2, NULL, "server_busy");
        }
        int hs = st == QF_ERR_RANGE || st == QF_ERR_INVALID || st == QF_ERR_UNSUPPORTED ? 400 : 500;
        return serve_reply_error(c, hs, err.msg[0] ? err.msg : qf_status_name(st), NULL,
                                 st == QF_ERR_RANGE ? "context_length_exceeded" : NULL);
    }
    g->submitted = true;

    if (r->stream) {
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, c, NULL);
        if (!resp) {
            cancel_gen(g);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", g->ops->stream_ctype);
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        serve_add_common_headers(c, resp);
        c->status = 200;
        c->replied = true;
        enum MHD_Result ret = MHD_queue_response(c->conn, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }

    /* non-streaming: wait here, watching the client (by the clock, since
     * a steady flow of tokens never lets a wait time out) */
    double next_check = qf_now_s() + WAIT_MS * 1e-3;
    for (;;) {
        serve_ev ev;
        int k = serve_job_next(g->job, &ev, WAIT_MS);
        if (k < 0) break;
        if (k > 0) {
            absorb(g, &ev);
            serve_ev_clear(&ev);
        }
        double now = qf_now_s();
        if (!g->closed && (k == 0 || now >= next_check)) {
            next_check = now + WAIT_MS * 1e-3;
            if (serve_client_gone(c) || atomic_load(&s->stopping)) {
                cancel_gen(g);
                g->closed = true;
            }
        }
    }
    if (g->closed) {
        c->status = 499; /* client closed request (nginx's code) */
        c->replied = true;
        return MHD_NO;
    }
    if (g->err_finish == QF_FINISH_ERROR) return serve_reply_error(c, 500, g->err_msg, NULL, NULL);
    if (g->err_finish == QF_FINISH_TIMEOUT)
        return serve_reply_error(c, 504, g->err_msg, NULL, "timeout");
    if (g->err_finish == QF_FINISH_CANCELLED)
        return serve_reply_error(c, 503, g->err_msg, NULL, NULL);
    for (int i = 0; i < g->n; i++)
        if (g->text[i].oom) return serve_reply_error(c, 500, "out of memory", NULL, NULL);
    cJSON *body = g->ops->body(g);
    if (!body) return serve_reply_error(c, 500, "out of memory", NULL, NULL);
    return serve_reply_json(c, 200, body);
}
