/* ollama.c - Ollama's shapes: /api/chat and /api/generate (NDJSON), tags,
 * ps, show, version, and the model-only load/unload requests.
 *
 * Stream framing: one JSON object per line (application/x-ndjson). Token
 * lines have done=false and the text in message.content (chat) or response
 * (generate); the last line has done=true, done_reason ("stop", "length")
 * and the timing fields Ollama reports, in nanoseconds: total_duration,
 * load_duration, prompt_eval_count/_duration, eval_count/_duration.
 * Generate's last line also holds context: the prompt and answer tokens,
 * which a client may send back to continue. An error after the stream
 * started is a line {"error": "..."}.
 *
 * Model details (family, parameter size, quantization) come from the GGUF
 * header, read without loading the model.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "base/clock.h"
#include "base/mem.h"
#include "gguf/gguf.h"
#include "model/quantize.h"
#include "serve/serve_int.h"

static void add_time(cJSON *j, const char *key, double t) {
    char ts[64];
    serve_rfc3339(t, ts, sizeof ts);
    cJSON_AddStringToObject(j, key, ts);
}

static cJSON *line_head(serve_gen *g) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "model", serve_json_str(g->model_name, strlen(g->model_name)));
    add_time(j, "created_at", -1);
    return j;
}

static void put_text(serve_gen *g, cJSON *j, const char *text, size_t len) {
    if (g->req.api == SERVE_OLLAMA_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(j, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddItemToObject(m, "content", serve_json_str(text, len));
    } else {
        cJSON_AddItemToObject(j, "response", serve_json_str(text, len));
    }
}

static void put_final(serve_gen *g, cJSON *j) {
    qf_finish f = g->finish[0];
    cJSON_AddBoolToObject(j, "done", 1);
    cJSON_AddStringToObject(j, "done_reason", f == QF_FINISH_LENGTH ? "length" : "stop");
    if (g->req.api == SERVE_OLLAMA_GENERATE) {
        cJSON *ctx = cJSON_AddArrayToObject(j, "context");
        for (int32_t i = 0; ctx && i < g->n_prompt; i++)
            cJSON_AddItemToArray(ctx, cJSON_CreateNumber(g->prompt_ids[i]));
        for (int32_t i = 0; ctx && i < g->n_out; i++)
            cJSON_AddItemToArray(ctx, cJSON_CreateNumber(g->out_ids[i]));
    }
    const qf_usage *u = &g->usage0;
    double total = qf_now_s() - g->t0;
    double prompt_s = u->ttft_s > u->queue_s ? u->ttft_s - u->queue_s : 0;
    double eval_s = u->total_s > u->ttft_s ? u->total_s - u->ttft_s : 0;
    cJSON_AddNumberToObject(j, "total_duration", floor(total * 1e9));
    cJSON_AddNumberToObject(j, "load_duration", floor(g->load_s * 1e9));
    cJSON_AddNumberToObject(j, "prompt_eval_count",
                            u->prompt_tokens > 0 ? u->prompt_tokens : g->n_prompt);
    cJSON_AddNumberToObject(j, "prompt_eval_duration", floor(prompt_s * 1e9));
    cJSON_AddNumberToObject(j, "eval_count", u->completion_tokens);
    cJSON_AddNumberToObject(j, "eval_duration", floor(eval_s * 1e9));
}

static void ndjson(serve_buf *out, cJSON *j) {
    serve_json_append(out, j);
    serve_buf_puts(out, "\n");
    cJSON_Delete(j);
}

static void stream_event(serve_gen *g, const serve_ev *ev, serve_buf *out) {
    if (ev->index != 0) return;
    if (ev->text && ev->len) {
        cJSON *j = line_head(g);
        put_text(g, j, ev->text, ev->len);
        cJSON_AddBoolToObject(j, "done", 0);
        ndjson(out, j);
    }
    if (ev->finish == QF_FINISH_NONE) return;
    if (ev->finish == QF_FINISH_ERROR || ev->finish == QF_FINISH_TIMEOUT ||
        ev->finish == QF_FINISH_CANCELLED) {
        cJSON *j = cJSON_CreateObject();
        const char *m = g->err_msg[0] ? g->err_msg : "generation failed";
        cJSON_AddItemToObject(j, "error", serve_json_str(m, strlen(m)));
        ndjson(out, j);
        return;
    }
    cJSON *j = line_head(g);
    put_text(g, j, "", 0);
    put_final(g, j);
    ndjson(out, j);
}

static void stream_end(serve_gen *g, serve_buf *out) {
    (void)g;
    (void)out;
}

static void stream_error(serve_gen *g, const char *msg, serve_buf *out) {
    (void)g;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "error", serve_json_str(msg, strlen(msg)));
    ndjson(out, j);
}

static cJSON *body(serve_gen *g) {
    cJSON *j = line_head(g);
    put_text(g, j, g->text[0].p, g->text[0].len);
    put_final(g, j);
    return j;
}

const serve_api_ops serve_ops_ollama_chat = {
    "application/x-ndjson", stream_event, stream_end, stream_error, body,
};
const serve_api_ops serve_ops_ollama_generate = {
    "application/x-ndjson", stream_event, stream_end, stream_error, body,
};

/* ---- load / unload (model-only requests) ---- */

enum MHD_Result serve_ollama_load(serve_conn *c, serve_req *r) {
    qf_err err = {0};
    bool unload = r->has_keep_alive && r->keep_alive_s == 0;
    char name[256];
    qf_model_file f;
    if (qf_models_find(c->srv->models, r->model, &f, &err))
        return serve_reply_error(c, 404, err.msg, "model", NULL);
    snprintf(name, sizeof name, "%s", f.name);
    if (unload) {
        qf_models_unload(c->srv->models, name); /* not loaded: nothing to do */
    } else {
        qf_models_entry *e = qf_models_acquire(
            c->srv->models, name, r->has_keep_alive ? r->keep_alive_s : NAN, NULL, &err);
        if (!e)
            return serve_reply_error(c, err.code == QF_ERR_BUSY ? 503 : 500, err.msg, "model",
                                     NULL);
        qf_models_release(c->srv->models, e);
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "model", serve_json_str(name, strlen(name)));
    add_time(j, "created_at", -1);
    if (r->api == SERVE_OLLAMA_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(j, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", "");
    } else {
        cJSON_AddStringToObject(j, "response", "");
    }
    cJSON_AddStringToObject(j, "done_reason", unload ? "unload" : "load");
    cJSON_AddBoolToObject(j, "done", 1);
    return serve_reply_json(c, 200, j);
}

/* ---- model details ---- */

static void digest(const qf_model_file *f, char *out /* 65 */) {
    char key[4400];
    int n = snprintf(key, sizeof key, "%s\n%lld\n%lld", f->path, (long long)f->size,
                     (long long)f->mtime);
    for (int i = 0; i < 4; i++)
        snprintf(out + i * 16, 17, "%016llx",
                 (unsigned long long)XXH64(key, (size_t)n, (XXH64_hash_t)i));
}

static void param_size(double n, char *buf, size_t cap) {
    if (n >= 1e9)
        snprintf(buf, cap, "%.1fB", n / 1e9);
    else if (n >= 1e6)
        snprintf(buf, cap, "%.1fM", n / 1e6);
    else if (n >= 1e3)
        snprintf(buf, cap, "%.1fK", n / 1e3);
    else
        snprintf(buf, cap, "%.0f", n);
}

static cJSON *gguf_str(const qf_gguf *g, const char *key) {
    qf_gguf_str s;
    if (!g || !qf_gguf_get_str(g, key, &s)) return NULL;
    return serve_json_str(s.ptr, (size_t)s.len);
}

cJSON *serve_ollama_details(const qf_model_file *f) {
    cJSON *d = cJSON_CreateObject();
    qf_gguf *g = qf_gguf_open(f->path, NULL);
    cJSON_AddStringToObject(d, "parent_model", "");
    cJSON_AddStringToObject(d, "format", "gguf");
    cJSON *fam = gguf_str(g, "general.architecture");
    if (!fam) fam = cJSON_CreateString("");
    cJSON *fams = cJSON_CreateArray();
    cJSON_AddItemToArray(fams, cJSON_Duplicate(fam, 1));
    cJSON_AddItemToObject(d, "family", fam);
    cJSON_AddItemToObject(d, "families", fams);
    double params = 0;
    for (int64_t i = 0; g && i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        double e = 1;
        for (uint32_t k = 0; k < t->n_dims; k++)
            e *= (double)t->ne[k];
        params += e;
    }
    char ps[32];
    param_size(params, ps, sizeof ps);
    cJSON_AddStringToObject(d, "parameter_size", ps);
    int64_t ft;
    char q[32] = "unknown";
    if (g && qf_gguf_get_int(g, "general.file_type", &ft)) {
        const char *nm = qf_ftype_name((qf_ftype)ft);
        if (nm && *nm && *nm != '?') {
            snprintf(q, sizeof q, "%s", nm);
            for (char *p = q; *p; p++)
                if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
        }
    }
    cJSON_AddStringToObject(d, "quantization_level", q);
    qf_gguf_close(g);
    return d;
}

static cJSON *tag_obj(const qf_model_file *f) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToObject(m, "name", serve_json_str(f->name, strlen(f->name)));
    cJSON_AddItemToObject(m, "model", serve_json_str(f->name, strlen(f->name)));
    add_time(m, "modified_at", (double)f->mtime);
    cJSON_AddNumberToObject(m, "size", (double)f->size);
    char dg[72];
    digest(f, dg);
    cJSON_AddStringToObject(m, "digest", dg);
    cJSON_AddItemToObject(m, "details", serve_ollama_details(f));
    return m;
}

enum MHD_Result serve_ollama_tags(serve_conn *c) {
    qf_err err = {0};
    qf_model_file *v;
    int n;
    if (qf_models_list(c->srv->models, &v, &n, &err))
        return serve_reply_error(c, 500, err.msg, NULL, NULL);
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "models");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, tag_obj(&v[i]));
    qf_free(v);
    return serve_reply_json(c, 200, j);
}

enum MHD_Result serve_ollama_ps(serve_conn *c) {
    qf_models_loaded_info info[64];
    int n = qf_models_loaded(c->srv->models, info, 64);
    if (n > 64) n = 64;
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "models");
    for (int i = 0; i < n; i++) {
        qf_model_file f;
        if (qf_models_find(c->srv->models, info[i].name, &f, NULL)) continue;
        cJSON *m = tag_obj(&f);
        cJSON_DeleteItemFromObjectCaseSensitive(m, "modified_at");
        cJSON_ReplaceItemInObjectCaseSensitive(
            m, "size", cJSON_CreateNumber((double)info[i].size + (double)info[i].kv_bytes));
        /* forever: far in the future, as Ollama shows it */
        add_time(m, "expires_at", info[i].expires_at < 0 ? 253402300799.0 : info[i].expires_at);
        cJSON_AddNumberToObject(m, "size_vram", 0);
        cJSON_AddNumberToObject(m, "context_length", info[i].stats.n_ctx);
        cJSON_AddItemToArray(arr, m);
    }
    return serve_reply_json(c, 200, j);
}

enum MHD_Result serve_ollama_version(serve_conn *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", SERVE_VERSION);
    return serve_reply_json(c, 200, j);
}

/* model_info: every scalar GGUF key (arrays such as the vocabulary are
 * left out, as Ollama does without verbose). */
static cJSON *model_info(const qf_gguf *g) {
    cJSON *mi = cJSON_CreateObject();
    for (int64_t i = 0; g && i < qf_gguf_n_kv(g); i++) {
        const char *k = qf_gguf_kv_key(g, i);
        int64_t iv;
        double dv;
        bool bv;
        qf_gguf_str sv;
        cJSON *v = NULL;
        if (qf_gguf_kv_str(g, i, &sv)) {
            if (!strcmp(k, "tokenizer.chat_template")) continue; /* shown as "template" */
            v = serve_json_str(sv.ptr, (size_t)sv.len);
        } else if (qf_gguf_kv_bool(g, i, &bv)) {
            v = cJSON_CreateBool(bv);
        } else if (qf_gguf_kv_int(g, i, &iv)) {
            v = cJSON_CreateNumber((double)iv);
        } else if (qf_gguf_kv_float(g, i, &dv)) {
            v = cJSON_CreateNumber(dv);
        }
        if (v) cJSON_AddItemToObject(mi, k, v);
    }
    return mi;
}

enum MHD_Result serve_ollama_show(serve_conn *c) {
    cJSON *req = c->body.len ? cJSON_ParseWithLength(c->body.p, c->body.len) : NULL;
    if (!c->body.len || serve_utf8_check(c->body.p, c->body.len) != c->body.len ||
        !cJSON_IsObject(req)) {
        cJSON_Delete(req);
        return serve_reply_error(c, 400, "the request body must be a JSON object with \"model\"",
                                 NULL, NULL);
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "model");
    if (!name) name = cJSON_GetObjectItemCaseSensitive(req, "name"); /* older clients */
    if (!cJSON_IsString(name) || !name->valuestring[0]) {
        cJSON_Delete(req);
        return serve_reply_error(c, 400, "model is required", "model", NULL);
    }
    qf_model_file f;
    qf_err err = {0};
    qf_status st = qf_models_find(c->srv->models, name->valuestring, &f, &err);
    cJSON_Delete(req);
    if (st) return serve_reply_error(c, 404, err.msg, "model", NULL);
    qf_gguf *g = qf_gguf_open(f.path, &err);
    if (!g) return serve_reply_error(c, 500, err.msg, NULL, NULL);
    cJSON *j = cJSON_CreateObject();
    serve_buf mf = {0};
    serve_buf_printf(&mf, "# Modelfile for %s (served by qforge)\nFROM %s\n", f.name, f.path);
    cJSON_AddItemToObject(j, "modelfile", serve_json_str(mf.p, mf.len));
    serve_buf_free(&mf);
    cJSON_AddStringToObject(j, "parameters", "");
    cJSON *tmpl = gguf_str(g, "tokenizer.chat_template");
    cJSON_AddItemToObject(j, "template", tmpl ? tmpl : cJSON_CreateString(""));
    cJSON_AddItemToObject(j, "details", serve_ollama_details(&f));
    cJSON_AddItemToObject(j, "model_info", model_info(g));
    cJSON *caps = cJSON_AddArrayToObject(j, "capabilities");
    cJSON_AddItemToArray(caps, cJSON_CreateString("completion"));
    add_time(j, "modified_at", (double)f.mtime);
    qf_gguf_close(g);
    return serve_reply_json(c, 200, j);
}
