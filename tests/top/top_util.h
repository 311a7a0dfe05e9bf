/* top_util.h - helpers of the `qforge top` end-to-end tests: run shell
 * commands, start and stop a live `qforge serve` on a synthesized model,
 * send it a request, read JSON. Every child gets PR_SET_PDEATHSIG so a
 * failing test leaves no server behind. QF_QFORGE overrides the binary.
 */
#ifndef QF_TOP_UTIL_H
#define QF_TOP_UTIL_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qf_test.h"

static const char *g_exe;
static char g_tmp[512];
static char g_model[700];

/* Run a shell command; stdout (and stderr when merge) into *out (malloc'ed;
 * NULL out discards it). Returns the exit status (128+N for a signal). */
static int sh_run(char **out, bool merge, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int sh_run(char **out, bool merge, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return qf_test_sh(cmd, merge, out);
}

static inline char *slurp(const char *path) { return qf_test_slurp(path); }

/* The number at a.b (b may be NULL); NAN when absent or not a number. */
static inline double jnum(const cJSON *j, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b) v = cJSON_GetObjectItemCaseSensitive(v, b);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static inline bool jnull(const cJSON *j, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b) v = cJSON_GetObjectItemCaseSensitive(v, b);
    return cJSON_IsNull(v);
}

static inline const char *jstr(const cJSON *j, const char *a) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, a);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Set up g_exe, g_tmp (a fresh folder under the build dir) and g_model (a
 * tiny synthesized llama). false when the binary cannot make a model. */
static inline bool top_setup(const char *name) {
    g_exe = getenv("QF_QFORGE") ? getenv("QF_QFORGE") : QF_QFORGE_EXE;
    snprintf(g_tmp, sizeof g_tmp, "%s/%s.tmp", QF_BINARY_DIR, name);
    if (sh_run(NULL, false, "rm -rf '%s' && mkdir -p '%s'", g_tmp, g_tmp) != 0) return false;
    snprintf(g_model, sizeof g_model, "%s/tiny.gguf", g_tmp);
    char *out = NULL;
    int rc = sh_run(
        &out, true,
        "%s model synth --arch llama --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 "
        "--type q8_0 -o '%s'",
        g_exe, g_model);
    if (rc != 0) fprintf(stderr, "model synth failed (%d): %s\n", rc, out ? out : "");
    free(out);
    return rc == 0;
}

typedef struct server {
    pid_t pid;
    int port;
    char url[64];
    char log[700];
} server;

/* Start `qforge serve -m g_model --port PORT extra...` (PORT 0: any) and
 * wait until it prints its address. */
static inline bool server_start(server *s, int port, const char *extra) {
    static int k;
    snprintf(s->log, sizeof s->log, "%s/serve%d.out", g_tmp, k++);
    unlink(s->log);
    s->pid = fork();
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int dn = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(dn, 2);
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "exec %s serve -m '%s' --port %d %s", g_exe, g_model, port,
                 extra ? extra : "");
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        usleep(100000);
        char *t = slurp(s->log);
        const char *p = t ? strstr(t, "serving on http://127.0.0.1:") : NULL;
        if (p) {
            s->port = atoi(p + strlen("serving on http://127.0.0.1:"));
            free(t);
            snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
            return s->port > 0;
        }
        free(t);
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            return false;
        }
    }
    return false;
}

static inline void server_stop(server *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

static inline size_t discard(char *p, size_t a, size_t b, void *ud) {
    (void)p;
    (void)ud;
    return a * b;
}

/* POST a small chat completion; the HTTP status (0 when unreachable). */
static inline long send_chat(const char *url, const char *api_key) {
    char u[256], auth[256];
    snprintf(u, sizeof u, "%s/v1/chat/completions", url);
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
        hdr = curl_slist_append(hdr, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, u);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS,
                     "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],"
                     "\"max_tokens\":8}");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    long code = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return code;
}

#endif
