/* buf.c - small helpers of the serve layer: a growable byte buffer, UTF-8
 * validation and cleaning, JSON string items from untrusted bytes, and
 * timestamps, Go-style durations.
 *
 * UTF-8 rules (RFC 3629): 1-4 byte sequences, no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF. Request bodies that
 * break them are refused; generated text that breaks them (a random model
 * can emit any byte) has each offending byte replaced by U+FFFD so that
 * every JSON we send is valid UTF-8.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "serve/serve_int.h"

static bool grow(serve_buf *b, size_t need) {
    if (b->oom) return false;
    if (b->len + need + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = qf_realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void serve_buf_add(serve_buf *b, const void *d, size_t n) {
    if (!grow(b, n)) return;
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
}

void serve_buf_puts(serve_buf *b, const char *s) {
    serve_buf_add(b, s, strlen(s));
}

void serve_buf_printf(serve_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)k < sizeof tmp) {
        serve_buf_add(b, tmp, (size_t)k);
        return;
    }
    if (!grow(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)k;
}

void serve_buf_free(serve_buf *b) {
    qf_free(b->p);
    memset(b, 0, sizeof *b);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c == 0xE0)
        len = 3, lo = 0xA0;
    else if (c == 0xED)
        len = 3, hi = 0x9F; /* no surrogates */
    else if (c >= 0xE1 && c <= 0xEF)
        len = 3;
    else if (c == 0xF0)
        len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
        len = 4;
    else if (c == 0xF4)
        len = 4, hi = 0x8F;
    else
        return 0;
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

size_t serve_utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

char *serve_utf8_clean(const char *s, size_t n, size_t *out_len) {
    size_t bad = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) bad++, k = 1;
        i += k;
    }
    char *d = qf_malloc(n + bad * 2 + 1);
    if (!d) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (k) {
            memcpy(d + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(d + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    d[o] = 0;
    if (out_len) *out_len = o;
    return d;
}

cJSON *serve_json_str(const char *s, size_t n) {
    if (!s) return cJSON_CreateString("");
    if (serve_utf8_check(s, n) == n && memchr(s, 0, n) == NULL) {
        char *t = qf_strndup(s, n);
        if (!t) return NULL;
        cJSON *j = cJSON_CreateString(t);
        qf_free(t);
        return j;
    }
    /* Embedded NULs would cut a C string short: drop them. */
    size_t len;
    char *t = serve_utf8_clean(s, n, &len);
    if (!t) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++)
        if (t[i]) t[o++] = t[i];
    t[o] = 0;
    cJSON *j = cJSON_CreateString(t);
    qf_free(t);
    return j;
}

bool serve_json_append(serve_buf *b, const cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    if (!s) {
        b->oom = true;
        return false;
    }
    serve_buf_puts(b, s);
    cJSON_free(s);
    return !b->oom;
}

double serve_wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void serve_rfc3339(double t, char *buf, size_t cap) {
    if (t < 0) t = serve_wall_s();
    time_t sec = (time_t)floor(t);
    long ns = (long)((t - (double)sec) * 1e9);
    if (ns < 0) ns = 0;
    if (ns > 999999999) ns = 999999999;
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ns);
}

/* ---- durations (Ollama keep_alive) ---- */

qf_status serve_parse_duration(const char *s, double *out_s) {
    if (!s || !*s) return QF_ERR_INVALID;
    const char *p = s;
    double sign = 1;
    if (*p == '-' || *p == '+') sign = *p++ == '-' ? -1 : 1;
    if (!*p) return QF_ERR_INVALID;
    /* A bare number is seconds (Ollama accepts "300" and "-1"). */
    char *end;
    double v = strtod(p, &end);
    if (end != p && *end == 0 && isfinite(v) && (p[0] >= '0' && p[0] <= '9')) {
        *out_s = sign * v;
        return QF_OK;
    }
    double total = 0;
    while (*p) {
        if (!((*p >= '0' && *p <= '9') || *p == '.')) return QF_ERR_INVALID;
        v = strtod(p, &end);
        if (end == p || !isfinite(v)) return QF_ERR_INVALID;
        p = end;
        double unit;
        if (!strncmp(p, "ns", 2))
            unit = 1e-9, p += 2;
        else if (!strncmp(p, "us", 2))
            unit = 1e-6, p += 2;
        else if (!strncmp(p, "\xc2\xb5s", 3))
            unit = 1e-6, p += 3;
        else if (!strncmp(p, "ms", 2))
            unit = 1e-3, p += 2;
        else if (*p == 's')
            unit = 1, p++;
        else if (*p == 'm')
            unit = 60, p++;
        else if (*p == 'h')
            unit = 3600, p++;
        else
            return QF_ERR_INVALID;
        total += v * unit;
    }
    if (!isfinite(total)) return QF_ERR_INVALID;
    *out_s = sign * total;
    return QF_OK;
}
