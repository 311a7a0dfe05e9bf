/* stop.c - streaming stop-string matcher.
 *
 * State: buf[0..len) is text received but not yet released; buf[0..out_len)
 * of it was handed out by the last call and is dropped at the start of the
 * next one (so the pointer given out stays valid until then).
 *
 * Invariant between calls: the pending text contains no complete stop
 * string, and it is (a) the longest suffix of the input that is a proper
 * prefix of some stop string, possibly extended to the left to the start of
 * a UTF-8 character cut by it, or (b) an incomplete UTF-8 sequence at the
 * end (at most 3 bytes). Hence it is short and rescanning it whole on each
 * feed is cheap: a feed costs O((pending + piece) * total stop length).
 */
#include "sample/stop.h"

#include <string.h>

#include "base/mem.h"

struct qf_stop {
    char **str;   /* (n) stop strings, NUL-terminated copies */
    size_t *slen; /* (n) their lengths */
    size_t n;
    size_t maxlen; /* longest stop */
    char *buf;     /* (cap) pending text */
    size_t len, cap;
    size_t out_len; /* front bytes of buf released by the previous call */
    bool matched;
    int32_t stop_index;
};

qf_stop *qf_stop_new(const char *const *stops, size_t n, qf_err *err) {
    if (n > 0 && !stops) {
        QF_ERR_SET(err, QF_ERR_INVALID, "stop strings: list NULL with count %zu", n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!stops[i] || !stops[i][0]) {
            QF_ERR_SET(err, QF_ERR_INVALID, "stop string %zu is %s", i,
                       stops[i] ? "empty" : "NULL");
            return NULL;
        }
    }
    qf_stop *s = qf_calloc(1, sizeof(*s));
    if (!s) goto nomem;
    s->stop_index = -1;
    if (n > 0) {
        s->str = qf_calloc(n, sizeof(*s->str));
        s->slen = qf_calloc(n, sizeof(*s->slen));
        if (!s->str || !s->slen) goto nomem;
        s->n = n;
        for (size_t i = 0; i < n; i++) {
            s->slen[i] = strlen(stops[i]);
            s->str[i] = qf_strndup(stops[i], s->slen[i]);
            if (!s->str[i]) goto nomem;
            if (s->slen[i] > s->maxlen) s->maxlen = s->slen[i];
        }
    }
    return s;
nomem:
    qf_stop_free(s);
    QF_ERR_SET(err, QF_ERR_NOMEM, "stop strings: out of memory");
    return NULL;
}

void qf_stop_free(qf_stop *s) {
    if (!s) return;
    if (s->str) {
        for (size_t i = 0; i < s->n; i++) qf_free(s->str[i]);
    }
    qf_free(s->str);
    qf_free(s->slen);
    qf_free(s->buf);
    qf_free(s);
}

void qf_stop_reset(qf_stop *s) {
    if (!s) return;
    s->len = 0;
    s->out_len = 0;
    s->matched = false;
    s->stop_index = -1;
}

size_t qf_stop_pending(const qf_stop *s) { return s ? s->len - s->out_len : 0; }

/* Drop the bytes released by the previous call. */
static void compact(qf_stop *s) {
    if (s->out_len == 0) return;
    memmove(s->buf, s->buf + s->out_len, s->len - s->out_len);
    s->len -= s->out_len;
    s->out_len = 0;
}

static bool reserve(qf_stop *s, size_t need) {
    if (need <= s->cap) return true;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < need) cap *= 2;
    char *b = qf_realloc(s->buf, cap);
    if (!b) return false;
    s->buf = b;
    s->cap = cap;
    return true;
}

/* Largest cut <= end that does not split a UTF-8 character whose lead byte
 * lies before end. Invalid sequences are not held (cut == end). */
static size_t utf8_cut(const unsigned char *p, size_t end) {
    size_t i = end, cont = 0;
    while (i > 0 && cont < 3 && (p[i - 1] & 0xC0) == 0x80) {
        i--;
        cont++;
    }
    if (i == 0) return end; /* continuation bytes with no lead: pass through */
    unsigned char lead = p[i - 1];
    size_t need = 1;
    if ((lead & 0xE0) == 0xC0) {
        need = 2;
    } else if ((lead & 0xF0) == 0xE0) {
        need = 3;
    } else if ((lead & 0xF8) == 0xF0) {
        need = 4;
    }
    return cont + 1 < need ? i - 1 : end;
}

/* Start of the earliest suffix of b[0..len) that is a proper prefix of a stop
 * string (len if none). */
static size_t hold_start(const qf_stop *s, const char *b, size_t len) {
    if (s->n == 0) return len;
    size_t from = len > s->maxlen - 1 ? len - (s->maxlen - 1) : 0;
    for (size_t j = from; j < len; j++) {
        size_t tail = len - j;
        for (size_t k = 0; k < s->n; k++) {
            if (s->slen[k] > tail && memcmp(b + j, s->str[k], tail) == 0) return j;
        }
    }
    return len;
}

static void set_out(qf_stop *s, qf_stop_out *out, size_t n) {
    s->out_len = n;
    out->text = n ? s->buf : NULL;
    out->len = n;
    out->matched = s->matched;
    out->stop_index = s->stop_index;
}

qf_status qf_stop_feed(qf_stop *s, const char *piece, size_t len, qf_stop_out *out) {
    if (!s || !out || (len > 0 && !piece)) {
        if (out) *out = (qf_stop_out){NULL, 0, false, -1};
        return QF_ERR_INVALID;
    }
    compact(s);
    if (s->matched) {
        set_out(s, out, 0);
        return QF_OK;
    }
    /* +4: room for flush's U+FFFD replacement without another allocation */
    if (!reserve(s, s->len + len + 4)) {
        *out = (qf_stop_out){NULL, 0, false, -1};
        return QF_ERR_NOMEM;
    }
    if (len) memcpy(s->buf + s->len, piece, len);
    s->len += len;

    /* earliest complete stop; at equal positions the first listed wins */
    size_t best = s->len;
    for (size_t k = 0; k < s->n; k++) {
        const char *hit = memmem(s->buf, s->len, s->str[k], s->slen[k]);
        if (hit && (size_t)(hit - s->buf) < best) {
            best = (size_t)(hit - s->buf);
            s->stop_index = (int32_t)k;
        }
    }
    if (best < s->len) {
        s->matched = true;
        s->len = best; /* the stop and what follows are dropped */
        set_out(s, out, best);
        return QF_OK;
    }
    size_t safe = hold_start(s, s->buf, s->len);
    safe = utf8_cut((const unsigned char *)s->buf, safe);
    set_out(s, out, safe);
    return QF_OK;
}

qf_status qf_stop_flush(qf_stop *s, qf_stop_out *out) {
    if (!s || !out) {
        if (out) *out = (qf_stop_out){NULL, 0, false, -1};
        return QF_ERR_INVALID;
    }
    compact(s);
    if (s->matched) {
        s->len = 0;
        set_out(s, out, 0);
        return QF_OK;
    }
    size_t cut = utf8_cut((const unsigned char *)s->buf, s->len);
    if (cut < s->len) {
        if (!reserve(s, cut + 3)) {
            *out = (qf_stop_out){NULL, 0, false, -1};
            return QF_ERR_NOMEM;
        }
        memcpy(s->buf + cut, "\xEF\xBF\xBD", 3); /* U+FFFD for the cut-off sequence */
        s->len = cut + 3;
    }
    set_out(s, out, s->len);
    return QF_OK;
}
