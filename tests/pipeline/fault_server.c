/* fault_server.c - a fake OpenAI/Ollama chat server that misbehaves on purpose.
 *
 *   fault_server [--port P] [--faults LIST] [--delay-ms D] [--hang-ms H]
 *                [--malformed-every N] [--always-malformed] [--think]
 *                [--refuse-schema] [--dup-questions] [--fail-all]
 *
 * Prints "PORT <n>" on stdout once listening (port 0 picks a free one) and
 * serves until SIGTERM/SIGINT.
 *
 * Replies are a pure function of the request, so tests can predict them:
 *   generate requests (a user message with the chunk between """ lines):
 *     {"pairs": [...]} with as many pairs as the schema's minItems (else 3);
 *     question i names a hash of the chunk, the seed and i; the answer
 *     quotes the chunk, padded to the schema's answer minLength
 *   curation requests ("Rate the question-answer pair"): {"score": 1 + h % 10}
 *   repair requests (4 messages): a valid reply (unless --always-malformed)
 * Faults, per distinct request body, by attempt number: --faults
 * "500,429,garbage" makes attempt 1 answer 500, attempt 2 429, attempt 3 a
 * non-JSON 200 body, attempt 4 the real reply. Kinds: 500 503 429 garbage
 * empty trunc timeout (sleep --hang-ms, then answer) close (drop the
 * connection). --malformed-every N: every Nth distinct generate request
 * gets a reply whose JSON is cut off (exercises the repair path).
 * --fail-all: every chat request answers 500.
 * GET /stats -> {"chat": n, "faults": n, "gen": n, "curate": n, "repair": n}.
 */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_faults[16][16];
static int g_n_faults;
static int g_delay_ms, g_hang_ms = 3000, g_malformed_every;
static bool g_always_malformed, g_think, g_refuse_schema, g_dup_q, g_fail_all;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static long g_chat, g_fault_count, g_gen, g_curate, g_repair, g_distinct_gen;

#define MAXSEEN 65536
static uint64_t g_seen_key[MAXSEEN];
static int g_seen_n[MAXSEEN];

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Attempt number of this body (1-based), and whether it is new. */
static int attempt_of(uint64_t key, bool *is_new) {
    pthread_mutex_lock(&g_mu);
    size_t i = key % MAXSEEN;
    while (g_seen_key[i] && g_seen_key[i] != key) i = (i + 1) % MAXSEEN;
    *is_new = !g_seen_key[i];
    g_seen_key[i] = key;
    int n = ++g_seen_n[i];
    pthread_mutex_unlock(&g_mu);
    return n;
}

typedef struct conn {
    char *body;
    size_t len;
} conn;

static enum MHD_Result reply(struct MHD_Connection *c, int code, const char *body, const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    return ret;
}

static int schema_int(const cJSON *schema, const char *path1, const char *key) {
    /* schema.properties.pairs.{minItems} or ...items.properties.answer.{minLength} */
    const cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(schema, "properties"), "pairs");
    if (!p) return -1;
    if (path1) p = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "items"), "properties"), path1);
    const cJSON *v = cJSON_GetObjectItem(p, key);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
}

static char *make_pairs(const char *chunk, size_t clen, int n, int min_ans, long seed, bool truncate) {
    uint64_t h = fnv(chunk, clen);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "pairs");
    for (int i = 0; i < n; i++) {
        char q[256];
        if (g_dup_q) snprintf(q, sizeof q, "What is the main point of this passage number %d?", i);
        else snprintf(q, sizeof q, "What does passage %08llx say in part %d (seed %ld)?", (unsigned long long)(h >> 32), i, seed);
        char a[4096];
        size_t k = 0;
        k += (size_t)snprintf(a, sizeof a, "According to the passage: ");
        size_t want = (size_t)(min_ans > 0 ? min_ans : 40) + 10;
        while (k < want && k + 1 < sizeof a) {
            size_t take = clen < 200 ? clen : 200;
            if (take > sizeof a - 1 - k) take = sizeof a - 1 - k;
            /* whole UTF-8 characters only */
            while (take > 0 && take < clen && ((unsigned char)chunk[take] & 0xC0) == 0x80) take--;
            if (!take) break;
            memcpy(a + k, chunk, take);
            k += take;
            if (k + 1 < sizeof a) a[k++] = ' ';
        }
        a[k] = 0;
        cJSON *it = cJSON_CreateObject();
        cJSON_AddStringToObject(it, "question", q);
        cJSON_AddStringToObject(it, "answer", a);
        cJSON_AddItemToArray(arr, it);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (truncate) {
        size_t l = strlen(s);
        s[l / 3 > 20 ? 20 : l / 3] = 0; /* cut inside the first pair */
    }
    if (g_think) {
        char *t = malloc(strlen(s) + 64);
        sprintf(t, "<think>The user wants pairs.</think>\n%s", s);
        free(s);
        s = t;
    }
    return s;
}

static enum MHD_Result handle_chat(struct MHD_Connection *c, const char *body, size_t len, bool ollama) {
    cJSON *req = cJSON_ParseWithLength(body, len);
    if (!req) return reply(c, 400, "{\"error\":\"bad json\"}", NULL);
    bool is_new;
    int attempt = attempt_of(fnv(body, len), &is_new);
    pthread_mutex_lock(&g_mu);
    g_chat++;
    pthread_mutex_unlock(&g_mu);
    if (g_delay_ms) usleep((useconds_t)g_delay_ms * 1000);
    const cJSON *schema = NULL;
    if (ollama) {
        schema = cJSON_GetObjectItem(req, "format");
    } else {
        const cJSON *rf = cJSON_GetObjectItem(req, "response_format");
        schema = cJSON_GetObjectItem(cJSON_GetObjectItem(rf, "json_schema"), "schema");
        if (rf && g_refuse_schema) {
            cJSON_Delete(req);
            return reply(c, 400, "{\"error\":{\"message\":\"response_format is not supported\"}}", NULL);
        }
    }
    if (g_fail_all || attempt <= g_n_faults) {
        const char *f = g_fail_all ? "500" : g_faults[attempt - 1];
        pthread_mutex_lock(&g_mu);
        g_fault_count++;
        pthread_mutex_unlock(&g_mu);
        enum MHD_Result r = MHD_YES;
        if (!strcmp(f, "500") || !strcmp(f, "503")) r = reply(c, atoi(f), "{\"error\":\"injected\"}", NULL);
        else if (!strcmp(f, "429")) r = reply(c, 429, "{\"error\":\"slow down\"}", "0");
        else if (!strcmp(f, "garbage")) r = reply(c, 200, "<html><body>502 Bad Gateway</body></html>", NULL);
        else if (!strcmp(f, "empty")) r = reply(c, 200, "", NULL);
        else if (!strcmp(f, "trunc")) r = reply(c, 200, "{\"choices\":[{\"message\":{\"content\":\"{\\\"pa", NULL);
        else if (!strcmp(f, "close")) r = MHD_NO;
        else if (!strcmp(f, "timeout")) {
            usleep((useconds_t)g_hang_ms * 1000);
            f = NULL; /* then answer normally */
        }
        if (f) {
            cJSON_Delete(req);
            return r;
        }
    }
    const cJSON *msgs = cJSON_GetObjectItem(req, "messages");
    int nm = cJSON_GetArraySize(msgs);
    const cJSON *last = cJSON_GetArrayItem(msgs, nm - 1);
    const char *content = cJSON_GetStringValue(cJSON_GetObjectItem(last, "content"));
    const cJSON *first_user = NULL;
    for (int i = 0; i < nm; i++) {
        const cJSON *m = cJSON_GetArrayItem(msgs, i);
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItem(m, "role"));
        if (role && !strcmp(role, "user")) {
            first_user = m;
            break;
        }
    }
    const char *u = first_user ? cJSON_GetStringValue(cJSON_GetObjectItem(first_user, "content")) : "";
    if (!u) u = "";
    long seed = 0;
    const cJSON *sd = ollama ? cJSON_GetObjectItem(cJSON_GetObjectItem(req, "options"), "seed")
                             : cJSON_GetObjectItem(req, "seed");
    if (cJSON_IsNumber(sd)) seed = (long)sd->valuedouble;
    char *out = NULL;
    if (content && strstr(content, "Rate the question-answer pair")) {
        pthread_mutex_lock(&g_mu);
        g_curate++;
        pthread_mutex_unlock(&g_mu);
        uint64_t h = fnv(content, strlen(content));
        out = malloc(32);
        snprintf(out, 32, "{\"score\": %d}", (int)(h % 10) + 1);
    } else {
        const char *a = strstr(u, "\"\"\"\n");
        const char *b = a ? strstr(a + 4, "\n\"\"\"") : NULL;
        const char *chunk = a && b ? a + 4 : u;
        size_t clen = a && b ? (size_t)(b - a - 4) : strlen(u);
        int n = schema_int(schema, NULL, "minItems");
        if (n <= 0) n = 3;
        int min_ans = schema_int(schema, "answer", "minLength");
        bool repair = nm >= 4;
        bool bad = false;
        pthread_mutex_lock(&g_mu);
        if (repair) g_repair++;
        else {
            g_gen++;
            if (is_new) g_distinct_gen++;
            bad = g_malformed_every > 0 && (fnv(body, len) % (uint64_t)g_malformed_every) == 0;
        }
        pthread_mutex_unlock(&g_mu);
        if (g_always_malformed) bad = true;
        out = make_pairs(chunk, clen, n, min_ans, seed, bad);
    }
    cJSON *resp = cJSON_CreateObject();
    if (ollama) {
        cJSON_AddStringToObject(resp, "model", "fault-model");
        cJSON *m = cJSON_AddObjectToObject(resp, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", out);
        cJSON_AddBoolToObject(resp, "done", 1);
        cJSON_AddStringToObject(resp, "done_reason", "stop");
        cJSON_AddNumberToObject(resp, "prompt_eval_count", (double)(len / 4));
        cJSON_AddNumberToObject(resp, "eval_count", (double)(strlen(out) / 4));
    } else {
        cJSON_AddStringToObject(resp, "id", "chatcmpl-fault");
        cJSON_AddStringToObject(resp, "object", "chat.completion");
        cJSON *ch = cJSON_AddArrayToObject(resp, "choices");
        cJSON *c0 = cJSON_CreateObject();
        cJSON_AddNumberToObject(c0, "index", 0);
        cJSON *m = cJSON_AddObjectToObject(c0, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", out);
        cJSON_AddStringToObject(c0, "finish_reason", "stop");
        cJSON_AddItemToArray(ch, c0);
        cJSON *us = cJSON_AddObjectToObject(resp, "usage");
        cJSON_AddNumberToObject(us, "prompt_tokens", (double)(len / 4));
        cJSON_AddNumberToObject(us, "completion_tokens", (double)(strlen(out) / 4));
    }
    free(out);
    char *s = cJSON_PrintUnformatted(resp);
    cJSON_Delete(resp);
    cJSON_Delete(req);
    enum MHD_Result r = reply(c, 200, s, NULL);
    free(s);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)cls, (void)version;
    conn *st = *con_cls;
    if (!st) {
        st = calloc(1, sizeof *st);
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_size) {
        st->body = realloc(st->body, st->len + *upload_size + 1);
        memcpy(st->body + st->len, upload, *upload_size);
        st->len += *upload_size;
        st->body[st->len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    if (!strcmp(method, "GET") && !strcmp(url, "/v1/models"))
        return reply(c, 200, "{\"object\":\"list\",\"data\":[{\"id\":\"fault-model\",\"object\":\"model\"}]}", NULL);
    if (!strcmp(method, "GET") && !strcmp(url, "/api/tags"))
        return reply(c, 200, "{\"models\":[{\"name\":\"fault-model\"}]}", NULL);
    if (!strcmp(method, "GET") && !strcmp(url, "/stats")) {
        char b[256];
        pthread_mutex_lock(&g_mu);
        snprintf(b, sizeof b, "{\"chat\":%ld,\"faults\":%ld,\"gen\":%ld,\"curate\":%ld,\"repair\":%ld,\"distinct_gen\":%ld}",
                 g_chat, g_fault_count, g_gen, g_curate, g_repair, g_distinct_gen);
        pthread_mutex_unlock(&g_mu);
        return reply(c, 200, b, NULL);
    }
    if (!strcmp(method, "POST") && (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/api/chat")))
        return handle_chat(c, st->body ? st->body : "", st->len, !strcmp(url, "/api/chat"));
    return reply(c, 404, "{\"error\":\"not found\"}", NULL);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn *st = *con_cls;
    if (st) {
        free(st->body);
        free(st);
    }
    *con_cls = NULL;
}

static volatile sig_atomic_t g_quit;
static void on_sig(int s) {
    (void)s;
    g_quit = 1;
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--port")) port = atoi(v), i++;
        else if (!strcmp(a, "--delay-ms")) g_delay_ms = atoi(v), i++;
        else if (!strcmp(a, "--hang-ms")) g_hang_ms = atoi(v), i++;
        else if (!strcmp(a, "--malformed-every")) g_malformed_every = atoi(v), i++;
        else if (!strcmp(a, "--always-malformed")) g_always_malformed = true;
        else if (!strcmp(a, "--think")) g_think = true;
        else if (!strcmp(a, "--refuse-schema")) g_refuse_schema = true;
        else if (!strcmp(a, "--dup-questions")) g_dup_q = true;
        else if (!strcmp(a, "--fail-all")) g_fail_all = true;
        else if (!strcmp(a, "--faults")) {
            char *list = strdup(v), *save = NULL;
            for (char *t = strtok_r(list, ",", &save); t && g_n_faults < 16; t = strtok_r(NULL, ",", &save))
                snprintf(g_faults[g_n_faults++], sizeof g_faults[0], "%s", t);
            free(list);
            i++;
        } else {
            fprintf(stderr, "fault_server: unknown option %s\n", a);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                                MHD_USE_ERROR_LOG,
                                            (uint16_t)port, NULL, NULL, on_request, NULL,
                                            MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "fault_server: cannot listen on port %d\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("PORT %u\n", info ? info->port : (unsigned)port);
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!g_quit) pause();
    MHD_stop_daemon(d);
    return 0;
}
