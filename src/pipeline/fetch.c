/* fetch.c - download with libcurl: progress, SHA-256 while streaming,
 * atomic rename.
 *
 * The body is hashed as it arrives (no second pass over the file). The
 * X-Linked-Etag header, which Hugging Face sends for large files, carries
 * the file's SHA-256; it is used when no digest is pinned. Network errors
 * that mean "cannot reach the host" become a message saying there seems
 * to be no network, followed by qf_fetch_help().
 */
#include "pipeline/fetch.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "pipeline/pipeline_int.h"

const char *qf_fetch_default_url(void) {
    const char *u = getenv("QFORGE_MODEL_URL");
    return u && *u ? u : QF_DEFAULT_MODEL_URL;
}

char *qf_fetch_default_path(void) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    qf_sb b = {0};
    if (xdg && *xdg) qf_sb_printf(&b, "%s/qforge/models/", xdg);
    else if (home && *home) qf_sb_printf(&b, "%s/.cache/qforge/models/", home);
    else return NULL;
    const char *url = qf_fetch_default_url();
    const char *base = strrchr(url, '/');
    base = base && base[1] ? base + 1 : QF_DEFAULT_MODEL_FILE;
    size_t n = strcspn(base, "?#");
    qf_sb_append(&b, base, n);
    return qf_sb_take(&b, NULL);
}

const char *qf_fetch_help(void) {
    return "Supply a model in one of these ways:\n"
           "  -m /path/to/model.gguf              a GGUF file (e.g. from Hugging Face, Ollama's or LM Studio's folders)\n"
           "  QFORGE_MODEL=/path/to/model.gguf    the same, for every run\n"
           "  --endpoint http://localhost:1234/v1 a running OpenAI-compatible server (LM Studio, llama-server, vLLM,\n"
           "                                      qforge serve)\n"
           "  --ollama http://localhost:11434     a running Ollama\n"
           "To try the pipeline offline: qforge model synth --arch llama --n-embd 256 --n-layer 4 --n-head 8 "
           "--n-head-kv 4 --n-ff 768 --type q8_0 -o tiny.gguf\n"
           "  then -m tiny.gguf (random weights: the pairs it writes are meaningless).";
}

static int mkdirs(const char *path) {
    char *p = qf_strdup(path);
    if (!p) return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            qf_free(p);
            return -1;
        }
        *s = '/';
    }
    qf_free(p);
    return 0;
}

typedef struct dl {
    FILE *f;
    qf_sha256 sha;
    char etag[80];
    FILE *log;
    bool tty;
    double last;
    int last_pct;
    bool write_failed;
} dl;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
    dl *d = ud;
    size_t n = size * nmemb;
    if (fwrite(p, 1, n, d->f) != n) {
        d->write_failed = true;
        return 0;
    }
    qf_sha256_update(&d->sha, p, n);
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
    dl *d = ud;
    size_t n = size * nmemb;
    const char *key = "x-linked-etag:";
    size_t kl = strlen(key);
    if (n > kl && !strncasecmp(p, key, kl)) {
        const char *v = p + kl;
        size_t k = 0;
        for (; v < p + n && k + 1 < sizeof d->etag; v++)
            if (isxdigit((unsigned char)*v)) d->etag[k++] = (char)tolower((unsigned char)*v);
        d->etag[k] = 0;
    }
    return n;
}

static int on_progress(void *ud, curl_off_t total, curl_off_t now, curl_off_t ut, curl_off_t un) {
    (void)ut, (void)un;
    dl *d = ud;
    if (!d->log || total <= 0) return 0;
    double t = qf_now_s();
    int pct = (int)(100 * now / total);
    if (d->tty) {
        if (t - d->last < 0.2 && now < total) return 0;
        d->last = t;
        int fill = pct / 4;
        char bar[26];
        for (int i = 0; i < 25; i++) bar[i] = i < fill ? '#' : '.';
        bar[25] = 0;
        fprintf(d->log, "\rdownloading [%s] %3d%% %.1f / %.1f MiB", bar, pct, now / 1048576.0, total / 1048576.0);
        fflush(d->log);
    } else if (pct / 10 != d->last_pct / 10) {
        fprintf(d->log, "downloading: %d%% of %.1f MiB\n", pct, total / 1048576.0);
    }
    d->last_pct = pct;
    return 0;
}

static bool is_network(CURLcode c) {
    return c == CURLE_COULDNT_RESOLVE_HOST || c == CURLE_COULDNT_RESOLVE_PROXY || c == CURLE_COULDNT_CONNECT ||
           c == CURLE_OPERATION_TIMEDOUT || c == CURLE_RECV_ERROR || c == CURLE_SEND_ERROR ||
           c == CURLE_SSL_CONNECT_ERROR || c == CURLE_GOT_NOTHING;
}

qf_status qf_fetch(const char *url, const char *dest, const char *sha256_hex, FILE *log, qf_err *err) {
    if (mkdirs(dest) != 0) return QF_ERR_SET(err, QF_ERR_IO, "%s: cannot create its folder: %s", dest, strerror(errno));
    size_t pl = strlen(dest) + 8;
    char *part = qf_malloc(pl);
    if (!part) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    snprintf(part, pl, "%s.part", dest);
    dl d;
    memset(&d, 0, sizeof d);
    qf_sha256_init(&d.sha);
    d.log = log;
    d.tty = log && isatty(fileno(log));
    d.last_pct = -10;
    qf_status st = QF_OK;
    d.f = fopen(part, "wb");
    if (!d.f) {
        st = QF_ERR_SET(err, QF_ERR_IO, "%s: %s", part, strerror(errno));
        qf_free(part);
        return st;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    if (!c) {
        fclose(d.f);
        unlink(part);
        qf_free(part);
        return QF_ERR_SET(err, QF_ERR_NOMEM, "curl_easy_init failed");
    }
    if (log) fprintf(log, "qforge: downloading the default model (once) from %s\n        to %s\n", url, dest);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    bool closed_ok = fclose(d.f) == 0;
    if (d.tty) fputc('\n', log);
    if (cc != CURLE_OK) {
        if (is_network(cc))
            st = QF_ERR_SET(err, QF_ERR_IO,
                            "cannot download the default model from %s: %s. There seems to be no network.\n%s", url,
                            curl_easy_strerror(cc), qf_fetch_help());
        else if (d.write_failed || cc == CURLE_WRITE_ERROR)
            st = QF_ERR_SET(err, QF_ERR_IO, "%s: write failed (disk full?)", part);
        else
            st = QF_ERR_SET(err, QF_ERR_IO, "cannot download the default model from %s: %s (HTTP %ld).\n%s", url,
                            curl_easy_strerror(cc), code, qf_fetch_help());
        goto fail;
    }
    if (!closed_ok) {
        st = QF_ERR_SET(err, QF_ERR_IO, "%s: write failed (disk full?)", part);
        goto fail;
    }
    uint8_t dig[32];
    char hex[65];
    qf_sha256_final(&d.sha, dig);
    qf_sha256_hex(dig, hex);
    const char *want = sha256_hex && *sha256_hex ? sha256_hex : getenv("QFORGE_MODEL_SHA256");
    if (!want || !*want) want = QF_DEFAULT_MODEL_SHA256;
    if (!*want) want = strlen(d.etag) == 64 ? d.etag : NULL;
    if (!want) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT,
                        "%s: no SHA-256 to check the download against (set QFORGE_MODEL_SHA256); file removed", url);
        goto fail;
    }
    if (strcasecmp(want, hex)) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s: checksum mismatch (SHA-256 %s, expected %s); file removed", url, hex,
                        want);
        goto fail;
    }
    if (rename(part, dest) != 0) {
        st = QF_ERR_SET(err, QF_ERR_IO, "%s: %s", dest, strerror(errno));
        goto fail;
    }
    if (log) fprintf(log, "qforge: model saved to %s (SHA-256 %s checked)\n", dest, hex);
    qf_free(part);
    return QF_OK;
fail:
    unlink(part);
    qf_free(part);
    return st;
}
