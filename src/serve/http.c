/* http.c - libmicrohttpd glue: listening socket, routing, request bodies,
 * authentication, CORS, replies and the request-completed hook.
 *
 * Threading: MHD runs one thread per connection (internal polling), so a
 * handler may block: a non-streaming generation waits in the access
 * handler, a streaming one in the content reader (gen.c). Both watch the
 * socket while they wait, so the model's work stops when the client
 * leaves.
 *
 * Per request, MHD calls the access handler first without body (we route,
 * then refuse early what needs no body to refuse: unknown route 404, wrong
 * method 405, missing key 401, a declared Content-Length over the limit
 * 413), then with body pieces (appended up to max_body, 413 beyond), then a
 * last time with no data (dispatch). The request-completed hook frees the
 * per-request state, cancels a generation that did not finish (client gone
 * or write failed) and counts the request in /metrics.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "serve/serve_int.h"

typedef enum route_id {
    R_DASH = 0,
    R_HEALTH,
    R_METRICS,
    R_ALERTS,
    R_V1_MODELS,
    R_V1_MODEL,
    R_V1_CHAT,
    R_V1_COMPL,
    R_API_CHAT,
    R_API_GEN,
    R_API_TAGS,
    R_API_PS,
    R_API_SHOW,
    R_API_VERSION,
} route_id;

typedef struct route {
    route_id id;
    const char *method; /* "GET" (also answers HEAD) or "POST" */
    const char *path;
    bool prefix; /* path is a prefix ("/v1/models/" + name) */
    serve_family fam;
    bool auth;         /* needs the API key when one is set */
    const char *label; /* for metrics */
} route;

static const route k_routes[] = {
    {R_DASH, "GET", "/", false, FAM_PLAIN, false, "/"},
    {R_HEALTH, "GET", "/health", false, FAM_PLAIN, false, "/health"},
    {R_METRICS, "GET", "/metrics", false, FAM_PLAIN, true, "/metrics"},
    {R_ALERTS, "GET", "/alerts", false, FAM_PLAIN, true, "/alerts"},
    {R_V1_MODELS, "GET", "/v1/models", false, FAM_OPENAI, true, "/v1/models"},
    {R_V1_MODEL, "GET", "/v1/models/", true, FAM_OPENAI, true, "/v1/models/{model}"},
    {R_V1_CHAT, "POST", "/v1/chat/completions", false, FAM_OPENAI, true, "/v1/chat/completions"},
    {R_V1_COMPL, "POST", "/v1/completions", false, FAM_OPENAI, true, "/v1/completions"},
    {R_API_CHAT, "POST", "/api/chat", false, FAM_OLLAMA, true, "/api/chat"},
    {R_API_GEN, "POST", "/api/generate", false, FAM_OLLAMA, true, "/api/generate"},
    {R_API_TAGS, "GET", "/api/tags", false, FAM_OLLAMA, true, "/api/tags"},
    {R_API_PS, "GET", "/api/ps", false, FAM_OLLAMA, true, "/api/ps"},
    {R_API_SHOW, "POST", "/api/show", false, FAM_OLLAMA, true, "/api/show"},
    {R_API_VERSION, "GET", "/api/version", false, FAM_OLLAMA, true, "/api/version"},
};
#define N_ROUTES (sizeof k_routes / sizeof *k_routes)

typedef struct conn_state {
    serve_conn c;
    const route *rt;
} conn_state;

/* ---- replies ---- */

void serve_add_common_headers(serve_conn *c, struct MHD_Response *r) {
    const char *origin = c->srv->o.cors_origin;
    if (origin && origin[0]) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        if (strcmp(origin, "*") != 0) MHD_add_response_header(r, "Vary", "Origin");
    }
    MHD_add_response_header(r, "Server", "qforge/" SERVE_VERSION);
}

enum MHD_Result serve_reply(serve_conn *c, int status, const char *ctype, const char *body,
                            size_t len, const char *retry_after) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    serve_add_common_headers(c, r);
    c->status = status;
    c->replied = true;
    enum MHD_Result ret = MHD_queue_response(c->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result serve_reply_json(serve_conn *c, int status, cJSON *j) {
    if (!j)
        return serve_reply(c, 500, "application/json", "{\"error\":\"out of memory\"}", 25, NULL);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s)
        return serve_reply(c, 500, "application/json", "{\"error\":\"out of memory\"}", 25, NULL);
    enum MHD_Result r =
        serve_reply(c, status, "application/json", s, strlen(s), status == 503 ? "1" : NULL);
    cJSON_free(s);
    return r;
}

static const char *openai_type(int status) {
    switch (status) {
    case 401:
        return "authentication_error";
    case 404:
        return "not_found_error";
    case 413:
        return "invalid_request_error";
    case 503:
        return "server_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

enum MHD_Result serve_reply_error(serve_conn *c, int status, const char *msg, const char *param,
                                  const char *code) {
    if (!msg) msg = "error";
    cJSON *j = cJSON_CreateObject();
    if (c->fam == FAM_OPENAI) {
        cJSON *e = cJSON_AddObjectToObject(j, "error");
        cJSON_AddItemToObject(e, "message", serve_json_str(msg, strlen(msg)));
        cJSON_AddStringToObject(e, "type", openai_type(status));
        if (param)
            cJSON_AddItemToObject(e, "param", serve_json_str(param, strlen(param)));
        else
            cJSON_AddNullToObject(e, "param");
        if (code)
            cJSON_AddStringToObject(e, "code", code);
        else
            cJSON_AddNullToObject(e, "code");
    } else {
        cJSON_AddItemToObject(j, "error", serve_json_str(msg, strlen(msg)));
    }
    if (c->srv->o.log_requests || status >= 500) qf_info("serve: %d: %s", status, msg);
    return serve_reply_json(c, status, j);
}

int serve_http_status(qf_status st) {
    switch (st) {
    case QF_OK:
        return 200;
    case QF_ERR_INVALID:
    case QF_ERR_FORMAT:
    case QF_ERR_RANGE:
    case QF_ERR_UNSUPPORTED:
        return 400;
    case QF_ERR_NOT_FOUND:
        return 404;
    case QF_ERR_BUSY:
        return 503;
    case QF_ERR_TIMEOUT:
        return 504;
    default:
        return 500;
    }
}

bool serve_client_gone(serve_conn *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    char ch;
    ssize_t r = recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) return true; /* orderly shutdown by the peer */
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    return false;
}

/* ---- auth, routing ---- */

static bool auth_ok(serve_conn *c) {
    const char *key = c->srv->o.api_key;
    if (!key || !key[0]) return true;
    const char *h = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strlen(h), k = strlen(key);
    /* compare every byte whatever the first difference (no timing hint) */
    unsigned diff = (unsigned)(n ^ k);
    for (size_t i = 0; i < k; i++)
        diff |= (unsigned)(unsigned char)key[i] ^ (unsigned)(unsigned char)(i < n ? h[i] : 0);
    return diff == 0;
}

static const route *find_route(const char *url, bool *path_known) {
    *path_known = false;
    for (size_t i = 0; i < N_ROUTES; i++) {
        const route *r = &k_routes[i];
        bool match = r->prefix
                         ? (!strncmp(url, r->path, strlen(r->path)) && url[strlen(r->path)] != 0)
                         : !strcmp(url, r->path);
        if (match) {
            *path_known = true;
            return r;
        }
    }
    return NULL;
}

static serve_family family_of(const char *url) {
    if (!strncmp(url, "/v1/", 4)) return FAM_OPENAI;
    if (!strncmp(url, "/api/", 5)) return FAM_OLLAMA;
    return FAM_PLAIN;
}

static enum MHD_Result preflight(serve_conn *c) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Allow", "GET, HEAD, POST, OPTIONS");
    if (c->srv->o.cors_origin && c->srv->o.cors_origin[0]) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
    }
    serve_add_common_headers(c, r);
    c->status = 204;
    c->replied = true;
    enum MHD_Result ret = MHD_queue_response(c->conn, 204, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result dispatch(conn_state *cs, const char *url) {
    serve_conn *c = &cs->c;
    switch (cs->rt->id) {
    case R_DASH:
        return serve_reply(c, 200, "text/html; charset=utf-8", serve_dashboard_html,
                           strlen(serve_dashboard_html), NULL);
    case R_HEALTH: {
        static const char ok[] = "{\"status\":\"ok\"}";
        if (atomic_load(&c->srv->stopping))
            return serve_reply(c, 503, "application/json", "{\"status\":\"stopping\"}", 21, NULL);
        return serve_reply(c, 200, "application/json", ok, sizeof ok - 1, NULL);
    }
    case R_METRICS:
        return serve_metrics_page(c);
    case R_ALERTS:
        return serve_alerts_page(c);
    case R_V1_MODELS:
        return serve_openai_models(c, NULL);
    case R_V1_MODEL:
        return serve_openai_models(c, url + strlen("/v1/models/"));
    case R_V1_CHAT:
        return serve_generate(c, SERVE_OPENAI_CHAT);
    case R_V1_COMPL:
        return serve_generate(c, SERVE_OPENAI_COMPLETION);
    case R_API_CHAT:
        return serve_generate(c, SERVE_OLLAMA_CHAT);
    case R_API_GEN:
        return serve_generate(c, SERVE_OLLAMA_GENERATE);
    case R_API_TAGS:
        return serve_ollama_tags(c);
    case R_API_PS:
        return serve_ollama_ps(c);
    case R_API_SHOW:
        return serve_ollama_show(c);
    case R_API_VERSION:
        return serve_ollama_version(c);
    }
    return serve_reply_error(c, 500, "unhandled route", NULL, NULL);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls) {
    (void)version;
    struct qf_serve *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        cs = qf_calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        serve_conn *c = &cs->c;
        c->srv = s;
        c->conn = conn;
        c->t0 = qf_now_s();
        bool known;
        cs->rt = find_route(url, &known);
        c->route = cs->rt ? cs->rt->label : "other";
        c->fam = cs->rt ? cs->rt->fam : family_of(url);
        if (!strcmp(method, "OPTIONS")) return preflight(c);
        if (!cs->rt) {
            char msg[512];
            snprintf(msg, sizeof msg, "unknown endpoint: %s %.400s", method, url);
            return serve_reply_error(c, 404, msg, NULL, NULL);
        }
        bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        if (!(get && !strcmp(cs->rt->method, "GET")) && strcmp(method, cs->rt->method) != 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "method %s is not allowed on %.400s (use %s)", method, url,
                     cs->rt->method);
            return serve_reply_error(c, 405, msg, NULL, NULL);
        }
        if (cs->rt->auth && !auth_ok(c))
            return serve_reply_error(
                c, 401, "invalid or missing API key: send 'Authorization: Bearer <key>'", NULL,
                "invalid_api_key");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            unsigned long long n = strtoull(cl, &end, 10);
            if (n > s->o.max_body) {
                char msg[256];
                snprintf(msg, sizeof msg, "the request body is %llu bytes; the limit is %zu bytes",
                         n, s->o.max_body);
                c->too_big = true;
                return serve_reply_error(c, 413, msg, NULL, NULL);
            }
        }
        return MHD_YES;
    }
    serve_conn *c = &cs->c;
    if (c->replied) { /* refused early: drop whatever body still comes */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (c->too_big || c->body.len + n > s->o.max_body) {
            /* A body without Content-Length that grows past the limit: read
             * and drop the rest, then answer 413 (answering mid-upload and
             * closing makes the client see a reset instead of the answer).
             * Past a hard cap, give up and close. */
            c->too_big = true;
            c->dropped += n;
            return c->dropped > s->o.max_body + ((size_t)64 << 20) ? MHD_NO : MHD_YES;
        }
        serve_buf_add(&c->body, upload_data, n);
        if (c->body.oom)
            return serve_reply_error(c, 500, "out of memory reading the request body", NULL, NULL);
        return MHD_YES;
    }
    if (c->too_big) {
        char msg[256];
        snprintf(msg, sizeof msg, "the request body is over the limit of %zu bytes", s->o.max_body);
        return serve_reply_error(c, 413, msg, NULL, NULL);
    }
    return dispatch(cs, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    struct qf_serve *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) return;
    serve_conn *c = &cs->c;
    int status = c->status ? c->status : (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? 200 : 499);
    if (c->gen && c->gen->req.stream && c->gen->submitted && !c->gen->done) status = 499;
    /* a streamed answer that ended in error or timeout still said 200 */
    bool gen_failed = status >= 500 || (c->gen && (c->gen->err_finish == QF_FINISH_ERROR ||
                                                   c->gen->err_finish == QF_FINISH_TIMEOUT));
    serve_gen_free(c->gen); /* cancels an unfinished generation */
    c->gen = NULL;
    double dt = qf_now_s() - c->t0;
    serve_note_request(s, c->route, status, dt);
    if (cs->rt && (cs->rt->id == R_V1_CHAT || cs->rt->id == R_V1_COMPL ||
                   cs->rt->id == R_API_CHAT || cs->rt->id == R_API_GEN))
        serve_note_generation(s, gen_failed, dt);
    if (s->o.log_requests) qf_info("serve: %s %d %.3f s", c->route, status, dt);
    serve_buf_free(&c->body);
    qf_free(cs);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    qf_debug("serve: http: %s", msg);
}

/* ---- daemon ---- */

/* Bind and listen on host:port ourselves, for a clear error and the port. */
static int open_listener(const char *host, int port, int *family, qf_err *err) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        QF_ERR_SET(err, QF_ERR_INVALID, "--host %s: cannot resolve: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) {
            *family = a->ai_family;
            break;
        }
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        QF_ERR_SET(err, QF_ERR_IO, "cannot listen on %s:%d: %s", host, port, strerror(saved));
    return fd;
}

qf_status serve_http_start(struct qf_serve *s, qf_err *err) {
    int family = AF_INET;
    int fd = open_listener(s->o.host, s->o.port, &family, err);
    if (fd < 0) return err ? err->code : QF_ERR_IO;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        s->port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    if (family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s, MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.http_timeout_s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)128 * 1024,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_END);
    if (!s->daemon) {
        close(fd);
        return QF_ERR_SET(err, QF_ERR_IO, "cannot start the HTTP server on %s:%d", s->o.host,
                          s->port);
    }
    return QF_OK;
}

void serve_http_stop(struct qf_serve *s) {
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
