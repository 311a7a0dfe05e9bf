/* openai.c - OpenAI's shapes: chat.completion(.chunk), text_completion,
 * the model list, and server-sent events.
 *
 * Stream framing: every chunk is `data: <json>\n\n`; the stream ends with
 * `data: [DONE]\n\n`. Per completion index the first chunk carries
 * delta.role = "assistant"; text arrives in delta.content; the last chunk of
 * an index has an empty delta and its finish_reason ("stop" or "length").
 * With stream_options.include_usage one more chunk with empty choices and
 * the usage comes before [DONE]. A completion that ends in an error (engine
 * error, timeout, shutdown) sends `data: {"error": {...}}` instead of its
 * finish chunk.
 */
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "serve/serve_int.h"

static const char *finish_reason(qf_finish f) {
    return f == QF_FINISH_LENGTH ? "length" : "stop";
}

static cJSON *usage_json(const serve_gen *g) {
    cJSON *u = cJSON_CreateObject();
    int32_t pt = g->usage0.prompt_tokens > 0 ? g->usage0.prompt_tokens : g->n_prompt;
    cJSON_AddNumberToObject(u, "prompt_tokens", pt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)g->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)pt + (double)g->completion_tokens);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    if (d) cJSON_AddNumberToObject(d, "cached_tokens", g->usage0.cached_tokens);
    return u;
}

static cJSON *envelope(const serve_gen *g, const char *object) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", g->oid);
    cJSON_AddStringToObject(j, "object", object);
    cJSON_AddNumberToObject(j, "created", (double)g->created);
    cJSON_AddItemToObject(j, "model", serve_json_str(g->model_name, strlen(g->model_name)));
    cJSON_AddStringToObject(j, "system_fingerprint", "qforge-" SERVE_VERSION);
    return j;
}

static void sse(serve_buf *out, cJSON *j) {
    serve_buf_puts(out, "data: ");
    serve_json_append(out, j);
    serve_buf_puts(out, "\n\n");
    cJSON_Delete(j);
}

static void sse_error(serve_buf *out, const char *msg, const char *type) {
    cJSON *j = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddItemToObject(e, "message", serve_json_str(msg, strlen(msg)));
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    sse(out, j);
}

static bool is_error_finish(qf_finish f) {
    return f == QF_FINISH_ERROR || f == QF_FINISH_TIMEOUT || f == QF_FINISH_CANCELLED;
}

/* ---- chat ---- */

static cJSON *chat_chunk(serve_gen *g, int index, const char *text, size_t len,
                         const char *finish) {
    cJSON *j = envelope(g, "chat.completion.chunk");
    cJSON *choices = cJSON_AddArrayToObject(j, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    cJSON *delta = cJSON_AddObjectToObject(c, "delta");
    if (!g->started[index]) {
        cJSON_AddStringToObject(delta, "role", "assistant");
        g->started[index] = true;
        if (!text) text = "", len = 0;
    }
    if (text) cJSON_AddItemToObject(delta, "content", serve_json_str(text, len));
    cJSON_AddNullToObject(c, "logprobs");
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(choices, c);
    return j;
}

static void chat_stream_event(serve_gen *g, const serve_ev *ev, serve_buf *out) {
    int i = ev->index;
    if (i < 0 || i >= g->n) return;
    if (ev->text && ev->len) sse(out, chat_chunk(g, i, ev->text, ev->len, NULL));
    if (ev->finish == QF_FINISH_NONE) return;
    if (is_error_finish(ev->finish)) {
        sse_error(out, g->err_msg[0] ? g->err_msg : "generation failed", "server_error");
        return;
    }
    sse(out, chat_chunk(g, i, NULL, 0, finish_reason(ev->finish)));
}

static void stream_end(serve_gen *g, serve_buf *out) {
    if (g->req.include_usage) {
        cJSON *j = envelope(g, g->req.api == SERVE_OPENAI_CHAT ? "chat.completion.chunk"
                                                               : "text_completion");
        cJSON_AddArrayToObject(j, "choices");
        cJSON_AddItemToObject(j, "usage", usage_json(g));
        sse(out, j);
    }
    serve_buf_puts(out, "data: [DONE]\n\n");
}

static void stream_error(serve_gen *g, const char *msg, serve_buf *out) {
    (void)g;
    sse_error(out, msg, "server_error");
}

static cJSON *chat_body(serve_gen *g) {
    cJSON *j = envelope(g, "chat.completion");
    cJSON *choices = cJSON_AddArrayToObject(j, "choices");
    for (int i = 0; i < g->n; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", i);
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddItemToObject(m, "content", serve_json_str(g->text[i].p, g->text[i].len));
        cJSON_AddNullToObject(m, "refusal");
        cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", finish_reason(g->finish[i]));
        cJSON_AddItemToArray(choices, c);
    }
    cJSON_AddItemToObject(j, "usage", usage_json(g));
    return j;
}

const serve_api_ops serve_ops_openai_chat = {
    "text/event-stream", chat_stream_event, stream_end, stream_error, chat_body,
};

/* ---- completions ---- */

static cJSON *completion_choice(int index, const char *text, size_t len, const char *finish) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToObject(c, "text", serve_json_str(text, len));
    cJSON_AddNumberToObject(c, "index", index);
    cJSON_AddNullToObject(c, "logprobs");
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    return c;
}

static cJSON *completion_chunk(serve_gen *g, int index, const char *text, size_t len,
                               const char *finish) {
    cJSON *j = envelope(g, "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(j, "choices");
    cJSON_AddItemToArray(choices, completion_choice(index, text, len, finish));
    return j;
}

static void completion_stream_event(serve_gen *g, const serve_ev *ev, serve_buf *out) {
    int i = ev->index;
    if (i < 0 || i >= g->n) return;
    if (ev->text && ev->len) sse(out, completion_chunk(g, i, ev->text, ev->len, NULL));
    if (ev->finish == QF_FINISH_NONE) return;
    if (is_error_finish(ev->finish)) {
        sse_error(out, g->err_msg[0] ? g->err_msg : "generation failed", "server_error");
        return;
    }
    sse(out, completion_chunk(g, i, "", 0, finish_reason(ev->finish)));
}

static cJSON *completion_body(serve_gen *g) {
    cJSON *j = envelope(g, "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(j, "choices");
    for (int i = 0; i < g->n; i++)
        cJSON_AddItemToArray(choices, completion_choice(i, g->text[i].p, g->text[i].len,
                                                        finish_reason(g->finish[i])));
    cJSON_AddItemToObject(j, "usage", usage_json(g));
    return j;
}

const serve_api_ops serve_ops_openai_completion = {
    "text/event-stream", completion_stream_event, stream_end, stream_error, completion_body,
};

/* ---- models ---- */

static cJSON *model_obj(const qf_model_file *f) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToObject(m, "id", serve_json_str(f->name, strlen(f->name)));
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)f->mtime);
    cJSON_AddStringToObject(m, "owned_by", "qforge");
    return m;
}

enum MHD_Result serve_openai_models(serve_conn *c, const char *one) {
    qf_err err = {0};
    if (one) {
        qf_model_file f;
        if (qf_models_find(c->srv->models, one, &f, &err))
            return serve_reply_error(c, 404, err.msg, "model", "model_not_found");
        return serve_reply_json(c, 200, model_obj(&f));
    }
    qf_model_file *v;
    int n;
    if (qf_models_list(c->srv->models, &v, &n, &err))
        return serve_reply_error(c, 500, err.msg, NULL, NULL);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(j, "data");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(data, model_obj(&v[i]));
    qf_free(v);
    return serve_reply_json(c, 200, j);
}
