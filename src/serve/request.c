/* request.c - parse and validate the JSON bodies of the generation routes.
 *
 * Checks in order: the body is non-empty, valid UTF-8, one JSON value with
 * nothing but whitespace after it, and an object; then every top-level
 * field is looked up in the route's list of known fields (an unknown one is
 * an error naming it, as OpenAI answers "Unrecognized request argument");
 * known fields are type- and range-checked. null counts as absent for the
 * optional fields (OpenAI's clients send null for unset parameters). Some
 * known fields are accepted but only in their neutral form (tools: empty;
 * logprobs: false; echo: false; images: empty): anything else is a clear
 * "not supported" error instead of a silently different answer.
 *
 * Ollama's options object is lenient the way Ollama is: known options are
 * type-checked, unknown ones and the hardware knobs (num_gpu, num_thread,
 * ...) are ignored.
 *
 * Nothing here touches a model: the output is plain data (serve_req), which
 * keeps the parser small enough to fuzz on its own (fuzz/fuzz_serve.c).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "serve/serve_int.h"

typedef struct pctx {
    serve_req *r;
    char *param;
    size_t pcap;
    qf_err *err;
} pctx;

static qf_status fail(pctx *p, const char *field, qf_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static qf_status fail(pctx *p, const char *field, qf_status code, const char *fmt, ...) {
    if (p->param && p->pcap) snprintf(p->param, p->pcap, "%s", field ? field : "");
    if (p->err) {
        char msg[QF_ERR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        QF_ERR_SET(p->err, code, "%s", msg);
    }
    return code;
}

static bool is_null(const cJSON *j) {
    return !j || cJSON_IsNull(j);
}

static const char *type_name(const cJSON *j) {
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

static qf_status dup_str(pctx *p, const char *field, const cJSON *j, char **out) {
    if (!cJSON_IsString(j))
        return fail(p, field, QF_ERR_INVALID, "%s: expected a string, got %s", field, type_name(j));
    qf_free(*out);
    *out = qf_strdup(j->valuestring);
    if (!*out) return fail(p, field, QF_ERR_NOMEM, "out of memory");
    return QF_OK;
}

static qf_status get_num(pctx *p, const char *field, const cJSON *j, double lo, double hi,
                         double *out) {
    if (!cJSON_IsNumber(j))
        return fail(p, field, QF_ERR_INVALID, "%s: expected a number, got %s", field, type_name(j));
    double v = j->valuedouble;
    if (!isfinite(v) || v < lo || v > hi)
        return fail(p, field, QF_ERR_INVALID, "%s: %g is out of range [%g, %g]", field, v, lo, hi);
    *out = v;
    return QF_OK;
}

static qf_status get_int(pctx *p, const char *field, const cJSON *j, double lo, double hi,
                         int64_t *out) {
    if (!cJSON_IsNumber(j))
        return fail(p, field, QF_ERR_INVALID, "%s: expected an integer, got %s", field,
                    type_name(j));
    double v = j->valuedouble;
    if (!isfinite(v) || v != floor(v))
        return fail(p, field, QF_ERR_INVALID, "%s: expected an integer, got %g", field, v);
    if (v < lo || v > hi)
        return fail(p, field, QF_ERR_INVALID, "%s: %.0f is out of range [%.0f, %.0f]", field, v, lo,
                    hi);
    *out = (int64_t)v;
    return QF_OK;
}

static qf_status get_bool(pctx *p, const char *field, const cJSON *j, bool *out) {
    if (!cJSON_IsBool(j))
        return fail(p, field, QF_ERR_INVALID, "%s: expected true or false, got %s", field,
                    type_name(j));
    *out = cJSON_IsTrue(j);
    return QF_OK;
}

/* ---- shared fields ---- */

static qf_status parse_stop(pctx *p, const char *field, const cJSON *j) {
    serve_req *r = p->r;
    if (cJSON_IsString(j)) {
        if (!j->valuestring[0]) return QF_OK;
        if (!(r->stop[0] = qf_strdup(j->valuestring)))
            return fail(p, field, QF_ERR_NOMEM, "out of memory");
        r->n_stop = 1;
        return QF_OK;
    }
    if (!cJSON_IsArray(j))
        return fail(p, field, QF_ERR_INVALID,
                    "%s: expected a string or an array of strings, got %s", field, type_name(j));
    int n = cJSON_GetArraySize(j);
    if (n > SERVE_MAX_STOP)
        return fail(p, field, QF_ERR_INVALID, "%s: %d stop strings, at most %d are allowed", field,
                    n, SERVE_MAX_STOP);
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, j) {
        if (!cJSON_IsString(it))
            return fail(p, field, QF_ERR_INVALID, "%s[%d]: expected a string, got %s", field, i,
                        type_name(it));
        i++;
        if (!it->valuestring[0] || r->n_stop == SERVE_MAX_STOP) continue;
        if (!(r->stop[r->n_stop] = qf_strdup(it->valuestring)))
            return fail(p, field, QF_ERR_NOMEM, "out of memory");
        r->n_stop++;
    }
    return QF_OK;
}

static qf_status set_schema(pctx *p, const char *field, const cJSON *schema) {
    if (!cJSON_IsObject(schema) && !cJSON_IsBool(schema))
        return fail(p, field, QF_ERR_INVALID, "%s: expected a JSON Schema object, got %s", field,
                    type_name(schema));
    char *s = cJSON_PrintUnformatted(schema);
    if (!s) return fail(p, field, QF_ERR_NOMEM, "out of memory");
    qf_free(p->r->json_schema);
    p->r->json_schema = qf_strdup(s);
    cJSON_free(s);
    if (!p->r->json_schema) return fail(p, field, QF_ERR_NOMEM, "out of memory");
    return QF_OK;
}

static qf_status set_json_any(pctx *p) {
    qf_free(p->r->json_schema);
    p->r->json_schema = qf_strdup("json");
    return p->r->json_schema ? QF_OK : fail(p, "format", QF_ERR_NOMEM, "out of memory");
}

/* OpenAI response_format. */
static qf_status parse_response_format(pctx *p, const cJSON *j) {
    const char *F = "response_format";
    if (!cJSON_IsObject(j))
        return fail(p, F, QF_ERR_INVALID, "%s: expected an object, got %s", F, type_name(j));
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type))
        return fail(p, "response_format.type", QF_ERR_INVALID,
                    "response_format.type: expected \"text\", \"json_object\" or \"json_schema\"");
    const char *t = type->valuestring;
    if (!strcmp(t, "text")) return QF_OK;
    if (!strcmp(t, "json_object")) {
        const cJSON *schema =
            cJSON_GetObjectItemCaseSensitive(j, "schema"); /* llama.cpp extension */
        return is_null(schema) ? set_json_any(p) : set_schema(p, "response_format.schema", schema);
    }
    if (!strcmp(t, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "json_schema");
        if (!cJSON_IsObject(js))
            return fail(p, "response_format.json_schema", QF_ERR_INVALID,
                        "response_format.json_schema: expected an object with a \"schema\"");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (is_null(schema))
            return fail(p, "response_format.json_schema.schema", QF_ERR_INVALID,
                        "response_format.json_schema.schema is required");
        return set_schema(p, "response_format.json_schema.schema", schema);
    }
    return fail(
        p, "response_format.type", QF_ERR_INVALID,
        "response_format.type: '%s' is not one of \"text\", \"json_object\", \"json_schema\"", t);
}

/* Ollama format: "json", "" or a schema object. */
static qf_status parse_format(pctx *p, const cJSON *j) {
    if (cJSON_IsString(j)) {
        if (!j->valuestring[0]) return QF_OK;
        if (!strcmp(j->valuestring, "json")) return set_json_any(p);
        return fail(p, "format", QF_ERR_INVALID,
                    "format: '%s' is not \"json\" or a JSON Schema object", j->valuestring);
    }
    return set_schema(p, "format", j);
}

static qf_status parse_keep_alive(pctx *p, const cJSON *j) {
    double v;
    if (cJSON_IsNumber(j)) {
        v = j->valuedouble;
        if (!isfinite(v))
            return fail(p, "keep_alive", QF_ERR_INVALID, "keep_alive: not a finite number");
    } else if (cJSON_IsString(j)) {
        if (serve_parse_duration(j->valuestring, &v))
            return fail(
                p, "keep_alive", QF_ERR_INVALID,
                "keep_alive: '%s' is not a duration (examples: \"5m\", \"1h\", \"30s\", \"-1\")",
                j->valuestring);
    } else {
        return fail(p, "keep_alive", QF_ERR_INVALID,
                    "keep_alive: expected a number of seconds or a "
                    "duration string, got %s",
                    type_name(j));
    }
    p->r->has_keep_alive = true;
    p->r->keep_alive_s = v < 0 ? -1 : v;
    return QF_OK;
}

/* ---- messages ---- */

static bool known(const char *k, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(k, *list)) return true;
    return false;
}

static qf_status parse_content(pctx *p, const char *field, const cJSON *c, char **out) {
    if (cJSON_IsString(c)) return dup_str(p, field, c, out);
    if (!cJSON_IsArray(c))
        return fail(p, field, QF_ERR_INVALID,
                    "%s: expected a string or an array of content parts, got %s", field,
                    type_name(c));
    serve_buf b = {0};
    serve_buf_puts(&b, "");
    int i = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        char f[160];
        snprintf(f, sizeof f, "%.96s[%d]", field, i);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
            serve_buf_free(&b);
            return fail(p, f, QF_ERR_INVALID,
                        "%s: expected a content part {\"type\": \"text\", \"text\": ...}", f);
        }
        if (strcmp(type->valuestring, "text") != 0) {
            serve_buf_free(&b);
            return fail(p, f, QF_ERR_INVALID,
                        "%s: content parts of type '%s' are not supported (only \"text\")", f,
                        type->valuestring);
        }
        if (!cJSON_IsString(text)) {
            serve_buf_free(&b);
            return fail(p, f, QF_ERR_INVALID, "%s.text: expected a string", f);
        }
        if (i > 0) serve_buf_puts(&b, "\n");
        serve_buf_puts(&b, text->valuestring);
        i++;
    }
    if (b.oom) {
        serve_buf_free(&b);
        return fail(p, field, QF_ERR_NOMEM, "out of memory");
    }
    qf_free(*out);
    *out = b.p;
    return QF_OK;
}

static qf_status parse_messages(pctx *p, const cJSON *j, bool ollama) {
    static const char *const k_msg_fields[] = {
        "role",   "content",  "name",      "tool_calls", "tool_call_id", "refusal", "function_call",
        "images", "thinking", "tool_name", NULL};
    serve_req *r = p->r;
    if (!cJSON_IsArray(j))
        return fail(p, "messages", QF_ERR_INVALID, "messages: expected an array, got %s",
                    type_name(j));
    int n = cJSON_GetArraySize(j);
    if (n == 0 && !ollama)
        return fail(p, "messages", QF_ERR_INVALID, "messages: must hold at least one message");
    if (n > 100000) return fail(p, "messages", QF_ERR_INVALID, "messages: too many (%d)", n);
    r->msgs = qf_calloc((size_t)(n ? n : 1), sizeof *r->msgs);
    if (!r->msgs) return fail(p, "messages", QF_ERR_NOMEM, "out of memory");
    const cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, j) {
        char f[64];
        snprintf(f, sizeof f, "messages[%d]", i);
        if (!cJSON_IsObject(m))
            return fail(p, f, QF_ERR_INVALID, "%s: expected an object, got %s", f, type_name(m));
        const cJSON *it;
        cJSON_ArrayForEach(it, m) {
            if (!known(it->string, k_msg_fields))
                return fail(p, f, QF_ERR_INVALID, "%s: unrecognized field '%s'", f, it->string);
        }
        serve_msg *sm = &r->msgs[i];
        r->n_msgs = i + 1;
        char ff[96];
        snprintf(ff, sizeof ff, "%s.role", f);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (is_null(role)) return fail(p, ff, QF_ERR_INVALID, "%s is required", ff);
        qf_status st = dup_str(p, ff, role, &sm->role);
        if (st) return st;
        static const char *const k_roles[] = {"system",    "user",     "assistant", "tool",
                                              "developer", "function", NULL};
        if (!known(sm->role, k_roles))
            return fail(p, ff, QF_ERR_INVALID,
                        "%s: '%s' is not one of system, user, assistant, tool, developer", ff,
                        sm->role);
        if (!strcmp(sm->role, "developer")) { /* OpenAI's newer name for system */
            qf_free(sm->role);
            if (!(sm->role = qf_strdup("system")))
                return fail(p, ff, QF_ERR_NOMEM, "out of memory");
        }
        snprintf(ff, sizeof ff, "%s.content", f);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (is_null(content)) {
            /* an assistant turn that only called tools; Ollama allows "" anyway */
            if (!ollama && strcmp(sm->role, "assistant") != 0)
                return fail(p, ff, QF_ERR_INVALID, "%s is required", ff);
            if (!(sm->content = qf_strdup(""))) return fail(p, ff, QF_ERR_NOMEM, "out of memory");
        } else if ((st = parse_content(p, ff, content, &sm->content))) {
            return st;
        }
        const cJSON *images = cJSON_GetObjectItemCaseSensitive(m, "images");
        if (!is_null(images) && (!cJSON_IsArray(images) || cJSON_GetArraySize(images) > 0)) {
            snprintf(ff, sizeof ff, "%s.images", f);
            return fail(p, ff, QF_ERR_UNSUPPORTED, "%s: images are not supported by this server",
                        ff);
        }
        i++;
    }
    return QF_OK;
}

/* ---- Ollama options ---- */

static qf_status parse_options(pctx *p, const cJSON *j) {
    if (!cJSON_IsObject(j))
        return fail(p, "options", QF_ERR_INVALID, "options: expected an object, got %s",
                    type_name(j));
    serve_req *r = p->r;
    qf_sample_params *s = &r->sample;
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        const char *k = it->string;
        char f[96];
        snprintf(f, sizeof f, "options.%.80s", k);
        if (is_null(it)) continue;
        double d;
        int64_t v;
        qf_status st = QF_OK;
        if (!strcmp(k, "num_predict")) {
            if (!(st = get_int(p, f, it, -2, 1 << 30, &v))) {
                if (v == 0)
                    return fail(p, f, QF_ERR_INVALID,
                                "%s: must be positive, or -1 (no limit) or -2 (fill the context)",
                                f);
                r->max_tokens = v > 0 ? v : 0;
            }
        } else if (!strcmp(k, "temperature")) {
            if (!(st = get_num(p, f, it, 0, 100, &d))) s->temperature = (float)d;
        } else if (!strcmp(k, "top_k")) {
            if (!(st = get_int(p, f, it, 0, 1 << 30, &v))) s->top_k = (int32_t)v;
        } else if (!strcmp(k, "top_p")) {
            if (!(st = get_num(p, f, it, 0, 1, &d))) s->top_p = (float)d;
        } else if (!strcmp(k, "min_p")) {
            if (!(st = get_num(p, f, it, 0, 1, &d))) s->min_p = (float)d;
        } else if (!strcmp(k, "seed")) {
            if (!(st = get_int(p, f, it, -9.2e18, 9.2e18, &v)))
                s->seed = v < 0 ? QF_SAMPLE_SEED_RANDOM : (uint64_t)v;
        } else if (!strcmp(k, "stop")) {
            st = parse_stop(p, f, it);
        } else if (!strcmp(k, "repeat_penalty")) {
            if (!(st = get_num(p, f, it, 1e-6, 100, &d))) s->repeat_penalty = (float)d;
        } else if (!strcmp(k, "repeat_last_n")) {
            if (!(st = get_int(p, f, it, -1, 1 << 30, &v))) s->repeat_last_n = (int32_t)v;
        } else if (!strcmp(k, "presence_penalty")) {
            if (!(st = get_num(p, f, it, -100, 100, &d))) s->presence_penalty = (float)d;
        } else if (!strcmp(k, "frequency_penalty")) {
            if (!(st = get_num(p, f, it, -100, 100, &d))) s->frequency_penalty = (float)d;
        } else if (!strcmp(k, "num_ctx") || !strcmp(k, "num_keep") || !strcmp(k, "num_batch")) {
            st = get_int(p, f, it, -1, 1 << 30, &v); /* the server's --ctx / --batch rule */
        }
        /* others (typical_p, mirostat*, num_gpu, num_thread, use_mmap, ...)
         * are hardware knobs or samplers this engine does not have: ignored,
         * as Ollama ignores options it does not know. */
        if (st) return st;
    }
    return QF_OK;
}

/* ---- per route ---- */

static const char *const k_openai_chat[] = {"model",
                                            "messages",
                                            "temperature",
                                            "top_p",
                                            "n",
                                            "stream",
                                            "stream_options",
                                            "stop",
                                            "max_tokens",
                                            "max_completion_tokens",
                                            "presence_penalty",
                                            "frequency_penalty",
                                            "seed",
                                            "response_format",
                                            "logprobs",
                                            "top_logprobs",
                                            "user",
                                            "logit_bias",
                                            "tools",
                                            "tool_choice",
                                            "parallel_tool_calls",
                                            "store",
                                            "metadata",
                                            "service_tier",
                                            "top_k",
                                            "min_p",
                                            "repeat_penalty",
                                            "ignore_eos",
                                            "cache_prompt",
                                            "reasoning_effort",
                                            "modalities",
                                            NULL};
static const char *const k_openai_completion[] = {"model",
                                                  "prompt",
                                                  "temperature",
                                                  "top_p",
                                                  "n",
                                                  "stream",
                                                  "stream_options",
                                                  "stop",
                                                  "max_tokens",
                                                  "presence_penalty",
                                                  "frequency_penalty",
                                                  "seed",
                                                  "logprobs",
                                                  "echo",
                                                  "suffix",
                                                  "best_of",
                                                  "user",
                                                  "logit_bias",
                                                  "top_k",
                                                  "min_p",
                                                  "repeat_penalty",
                                                  "ignore_eos",
                                                  "cache_prompt",
                                                  "response_format",
                                                  NULL};
static const char *const k_ollama_chat[] = {"model",    "messages",   "stream", "format",
                                            "options",  "keep_alive", "tools",  "think",
                                            "template", NULL};
static const char *const k_ollama_generate[] = {
    "model", "prompt", "suffix", "system",  "template",   "context", "stream",
    "raw",   "format", "images", "options", "keep_alive", "think",   NULL};

static qf_status parse_token_array(pctx *p, const char *field, const cJSON *arr) {
    serve_req *r = p->r;
    int n = cJSON_GetArraySize(arr);
    qf_free(r->prompt_ids);
    r->prompt_ids = qf_malloc((size_t)(n ? n : 1) * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return fail(p, field, QF_ERR_NOMEM, "out of memory");
    r->n_prompt_ids = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char f[160];
        snprintf(f, sizeof f, "%.96s[%d]", field, r->n_prompt_ids);
        int64_t v;
        qf_status st = get_int(p, f, it, 0, INT32_MAX, &v);
        if (st) return st;
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)v;
    }
    return QF_OK;
}

/* OpenAI completions prompt: "text", ["text"], [1,2,3] or [[1,2,3]]. */
static qf_status parse_prompt(pctx *p, const cJSON *j) {
    const char *F = "prompt";
    if (cJSON_IsString(j)) return dup_str(p, F, j, &p->r->prompt);
    if (!cJSON_IsArray(j))
        return fail(p, F, QF_ERR_INVALID,
                    "prompt: expected a string, an array of strings or of token ids, got %s",
                    type_name(j));
    int n = cJSON_GetArraySize(j);
    if (n == 0) return fail(p, F, QF_ERR_INVALID, "prompt: must not be empty");
    const cJSON *first = cJSON_GetArrayItem(j, 0);
    if (cJSON_IsNumber(first)) return parse_token_array(p, F, j);
    if (n > 1)
        return fail(p, F, QF_ERR_UNSUPPORTED,
                    "prompt: %d prompts in one request are not supported; send one per request", n);
    if (cJSON_IsString(first)) return dup_str(p, "prompt[0]", first, &p->r->prompt);
    if (cJSON_IsArray(first)) return parse_token_array(p, "prompt[0]", first);
    return fail(p, F, QF_ERR_INVALID,
                "prompt[0]: expected a string or an array of token ids, got %s", type_name(first));
}

static qf_status field(pctx *p, serve_api api, const char *k, const cJSON *v) {
    serve_req *r = p->r;
    qf_sample_params *s = &r->sample;
    bool openai = api == SERVE_OPENAI_CHAT || api == SERVE_OPENAI_COMPLETION;
    double d;
    int64_t i;
    bool b;
    qf_status st = QF_OK;
    if (!strcmp(k, "model")) {
        if ((st = dup_str(p, k, v, &r->model))) return st;
        if (!r->model[0]) return fail(p, k, QF_ERR_INVALID, "model: must not be empty");
        return QF_OK;
    }
    if (!strcmp(k, "messages")) return parse_messages(p, v, !openai);
    if (!strcmp(k, "stream")) return get_bool(p, k, v, &r->stream);
    if (!strcmp(k, "options")) return parse_options(p, v);
    if (!strcmp(k, "format")) return parse_format(p, v);
    if (!strcmp(k, "keep_alive")) return parse_keep_alive(p, v);
    if (!strcmp(k, "stop")) return parse_stop(p, k, v);
    if (!strcmp(k, "response_format")) return parse_response_format(p, v);
    if (!strcmp(k, "system")) return dup_str(p, k, v, &r->system);
    if (!strcmp(k, "raw")) return get_bool(p, k, v, &r->raw);
    if (!strcmp(k, "ignore_eos")) return get_bool(p, k, v, &r->ignore_eos);
    if (!strcmp(k, "prompt")) {
        if (api == SERVE_OPENAI_COMPLETION) return parse_prompt(p, v);
        return dup_str(p, k, v, &r->prompt);
    }
    if (!strcmp(k, "context")) {
        if (!cJSON_IsArray(v))
            return fail(p, k, QF_ERR_INVALID, "context: expected an array of token ids, got %s",
                        type_name(v));
        return parse_token_array(p, k, v);
    }
    if (!strcmp(k, "temperature")) {
        if (!(st = get_num(p, k, v, 0, openai ? 2 : 100, &d))) s->temperature = (float)d;
    } else if (!strcmp(k, "top_p")) {
        if (!(st = get_num(p, k, v, 0, 1, &d))) s->top_p = (float)d;
    } else if (!strcmp(k, "top_k")) {
        if (!(st = get_int(p, k, v, 0, 1 << 30, &i))) s->top_k = (int32_t)i;
    } else if (!strcmp(k, "min_p")) {
        if (!(st = get_num(p, k, v, 0, 1, &d))) s->min_p = (float)d;
    } else if (!strcmp(k, "repeat_penalty")) {
        if (!(st = get_num(p, k, v, 1e-6, 100, &d))) s->repeat_penalty = (float)d;
    } else if (!strcmp(k, "presence_penalty")) {
        if (!(st = get_num(p, k, v, -2, 2, &d))) s->presence_penalty = (float)d;
    } else if (!strcmp(k, "frequency_penalty")) {
        if (!(st = get_num(p, k, v, -2, 2, &d))) s->frequency_penalty = (float)d;
    } else if (!strcmp(k, "seed")) {
        if (!(st = get_int(p, k, v, -9.2e18, 9.2e18, &i))) s->seed = (uint64_t)i;
    } else if (!strcmp(k, "n")) {
        if (!(st = get_int(p, k, v, 1, SERVE_MAX_N, &i))) r->n = (int)i;
    } else if (!strcmp(k, "max_tokens") || !strcmp(k, "max_completion_tokens")) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
            return fail(p, k, QF_ERR_INVALID, "%s: expected a positive integer, got %s", k,
                        type_name(v));
        if (v->valuedouble <= 0)
            return fail(p, k, QF_ERR_INVALID, "%s: must be at least 1, got %.0f", k,
                        v->valuedouble);
        if (v->valuedouble > (double)(1 << 30))
            return fail(p, k, QF_ERR_INVALID, "%s: %.0f is too large", k, v->valuedouble);
        r->max_tokens = (int64_t)v->valuedouble;
    } else if (!strcmp(k, "stream_options")) {
        if (!cJSON_IsObject(v))
            return fail(p, k, QF_ERR_INVALID, "stream_options: expected an object, got %s",
                        type_name(v));
        const cJSON *iu = cJSON_GetObjectItemCaseSensitive(v, "include_usage");
        if (!is_null(iu)) st = get_bool(p, "stream_options.include_usage", iu, &r->include_usage);
    } else if (!strcmp(k, "logprobs")) {
        bool on = cJSON_IsTrue(v) || (cJSON_IsNumber(v) && v->valuedouble > 0);
        if (!cJSON_IsBool(v) && !cJSON_IsNumber(v))
            return fail(p, k, QF_ERR_INVALID, "logprobs: expected %s, got %s",
                        api == SERVE_OPENAI_CHAT ? "a boolean" : "an integer", type_name(v));
        if (on) return fail(p, k, QF_ERR_UNSUPPORTED, "logprobs are not supported by this server");
    } else if (!strcmp(k, "top_logprobs")) {
        if (!(st = get_int(p, k, v, 0, 20, &i)) && i > 0)
            return fail(p, k, QF_ERR_UNSUPPORTED, "logprobs are not supported by this server");
    } else if (!strcmp(k, "echo")) {
        if (!(st = get_bool(p, k, v, &b)) && b)
            return fail(p, k, QF_ERR_UNSUPPORTED, "echo is not supported by this server");
    } else if (!strcmp(k, "best_of")) {
        if (!(st = get_int(p, k, v, 1, SERVE_MAX_N, &i)) && i > 1)
            return fail(p, k, QF_ERR_UNSUPPORTED, "best_of > 1 is not supported by this server");
    } else if (!strcmp(k, "suffix")) {
        if (!cJSON_IsString(v))
            return fail(p, k, QF_ERR_INVALID, "suffix: expected a string, got %s", type_name(v));
        if (v->valuestring[0])
            return fail(p, k, QF_ERR_UNSUPPORTED,
                        "suffix (fill-in-the-middle) is not supported by this server");
    } else if (!strcmp(k, "template")) {
        if (!cJSON_IsString(v))
            return fail(p, k, QF_ERR_INVALID, "template: expected a string, got %s", type_name(v));
        if (v->valuestring[0])
            return fail(p, k, QF_ERR_UNSUPPORTED,
                        "custom templates are not supported; the model's chat template is used");
    } else if (!strcmp(k, "tools")) {
        if (!cJSON_IsArray(v))
            return fail(p, k, QF_ERR_INVALID, "tools: expected an array, got %s", type_name(v));
        if (cJSON_GetArraySize(v) > 0)
            return fail(p, k, QF_ERR_UNSUPPORTED,
                        "tools (function calling) are not supported by this server");
    } else if (!strcmp(k, "tool_choice")) {
        if (!cJSON_IsString(v) ||
            (strcmp(v->valuestring, "none") && strcmp(v->valuestring, "auto")))
            return fail(p, k, QF_ERR_UNSUPPORTED,
                        "tool_choice: only \"none\" or \"auto\" (no tools) are supported");
    } else if (!strcmp(k, "images")) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > 0)
            return fail(p, k, QF_ERR_UNSUPPORTED, "images are not supported by this server");
    } else if (!strcmp(k, "logit_bias")) {
        if (!cJSON_IsObject(v))
            return fail(p, k, QF_ERR_INVALID, "logit_bias: expected an object, got %s",
                        type_name(v));
        if (cJSON_GetArraySize(v) > 0)
            return fail(p, k, QF_ERR_UNSUPPORTED, "logit_bias is not supported by this server");
    } else if (!strcmp(k, "user") || !strcmp(k, "service_tier") || !strcmp(k, "reasoning_effort")) {
        if (!cJSON_IsString(v))
            return fail(p, k, QF_ERR_INVALID, "%s: expected a string, got %s", k, type_name(v));
    } else if (!strcmp(k, "parallel_tool_calls") || !strcmp(k, "store") ||
               !strcmp(k, "cache_prompt")) {
        st = get_bool(p, k, v, &b);
    } else if (!strcmp(k, "think")) {
        if (!cJSON_IsBool(v) && !cJSON_IsString(v))
            return fail(p, k, QF_ERR_INVALID, "think: expected a boolean, got %s", type_name(v));
    }
    /* metadata, modalities: accepted and ignored */
    return st;
}

qf_status serve_req_parse(serve_api api, const char *body, size_t len, serve_req *r, char *param,
                          size_t param_cap, qf_err *err) {
    memset(r, 0, sizeof *r);
    r->api = api;
    r->n = 1;
    r->sample = qf_sample_params_default();
    r->stream = api == SERVE_OLLAMA_CHAT || api == SERVE_OLLAMA_GENERATE;
    if (param && param_cap) param[0] = 0;
    pctx p = {r, param, param_cap, err};
    cJSON *root = NULL;
    qf_status st;
    if (!body || len == 0) {
        st = fail(&p, NULL, QF_ERR_INVALID, "the request body is empty; expected a JSON object");
        goto done;
    }
    size_t bad = serve_utf8_check(body, len);
    if (bad != len) {
        st = fail(&p, NULL, QF_ERR_INVALID, "the request body is not valid UTF-8 (byte offset %zu)",
                  bad);
        goto done;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        st = fail(&p, NULL, QF_ERR_INVALID, "malformed JSON in the request body near byte %zu", at);
        goto done;
    }
    for (const char *q = end; q && q < body + len; q++)
        if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n') {
            st = fail(&p, NULL, QF_ERR_INVALID,
                      "malformed JSON: unexpected data after the object at byte %zu",
                      (size_t)(q - body));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        st = fail(&p, NULL, QF_ERR_INVALID, "the request body must be a JSON object, got %s",
                  type_name(root));
        goto done;
    }
    const char *const *fields = api == SERVE_OPENAI_CHAT         ? k_openai_chat
                                : api == SERVE_OPENAI_COMPLETION ? k_openai_completion
                                : api == SERVE_OLLAMA_CHAT       ? k_ollama_chat
                                                                 : k_ollama_generate;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (!known(it->string, fields)) {
            st = fail(&p, it->string, QF_ERR_INVALID, "unrecognized request argument supplied: %s",
                      it->string);
            goto done;
        }
        /* duplicate keys: the first wins in cJSON lookups, refuse the rest */
        if (cJSON_GetObjectItemCaseSensitive(root, it->string) != it) {
            st = fail(&p, it->string, QF_ERR_INVALID, "duplicate field '%s'", it->string);
            goto done;
        }
        if (is_null(it)) continue;
        if ((st = field(&p, api, it->string, it))) goto done;
    }
    /* required fields */
    if (api == SERVE_OPENAI_CHAT && !r->msgs) {
        st = fail(&p, "messages", QF_ERR_INVALID, "messages is required");
        goto done;
    }
    if (api == SERVE_OPENAI_COMPLETION && !r->prompt && !r->prompt_ids) {
        st = fail(&p, "prompt", QF_ERR_INVALID, "prompt is required");
        goto done;
    }
    if ((api == SERVE_OLLAMA_CHAT || api == SERVE_OLLAMA_GENERATE) && !r->model) {
        st = fail(&p, "model", QF_ERR_INVALID, "model is required");
        goto done;
    }
    st = QF_OK;
done:
    cJSON_Delete(root);
    if (st) serve_req_deinit(r);
    return st;
}

void serve_req_deinit(serve_req *r) {
    if (!r) return;
    qf_free(r->model);
    for (int i = 0; i < r->n_msgs; i++) {
        qf_free(r->msgs[i].role);
        qf_free(r->msgs[i].content);
    }
    qf_free(r->msgs);
    qf_free(r->prompt);
    qf_free(r->prompt_ids);
    qf_free(r->system);
    for (int i = 0; i < r->n_stop; i++)
        qf_free(r->stop[i]);
    qf_free(r->json_schema);
    serve_api api = r->api;
    memset(r, 0, sizeof *r);
    r->api = api;
}
