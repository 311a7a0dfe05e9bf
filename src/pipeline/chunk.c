/* chunk.c - sentence units, oversize splitting, greedy packing with overlap.
 *
 * Invariants: units are non-empty, trimmed, ascending and disjoint; every
 * non-whitespace byte of the text lies in exactly one unit; each unit has
 * tok <= target unless it is a single UTF-8 character; a chunk is a run of
 * consecutive units of one segment, so chunks are ascending in start and
 * the union of chunks covers every unit.
 */
#include "pipeline/chunk.h"

#include <stdbool.h>
#include <string.h>

#include "base/mem.h"
#include "pipeline/pipeline_int.h"

typedef struct unit {
    size_t s, e;
    int32_t tok;
    int32_t seg;
    bool para; /* a paragraph starts here */
} unit;

typedef struct units {
    unit *v;
    int32_t n, cap;
    bool oom;
} units;

int32_t qf_chunk_estimate_tokens(const char *text, size_t len) {
    (void)text;
    size_t t = (len + 3) / 4;
    return t > INT32_MAX ? INT32_MAX : (int32_t)t;
}

static int32_t count(const qf_chunk_params *p, const char *t, size_t n) {
    if (!n) return 0;
    if (!p->count) return qf_chunk_estimate_tokens(t, n);
    int32_t c = p->count(p->count_ud, t, n);
    return c < 1 ? 1 : c;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static void push(units *u, size_t s, size_t e, int32_t tok, int32_t seg, bool para) {
    if (u->oom) return;
    if (u->n == u->cap) {
        int32_t cap = u->cap ? u->cap * 2 : 256;
        unit *v = qf_realloc(u->v, (size_t)cap * sizeof *v);
        if (!v) {
            u->oom = true;
            return;
        }
        u->v = v;
        u->cap = cap;
    }
    u->v[u->n++] = (unit){s, e, tok, seg, para};
}

/* Add text[s,e) (trimmed) as one or more units of at most target tokens. */
static void add_sentence(units *u, const char *t, size_t s, size_t e, int32_t seg, bool para,
                         const qf_chunk_params *p) {
    while (s < e && is_ws(t[s])) s++;
    while (e > s && is_ws(t[e - 1])) e--;
    if (s >= e) return;
    int32_t tok = count(p, t + s, e - s);
    if (tok <= p->target_tokens) {
        push(u, s, e, tok, seg, para);
        return;
    }
    /* too long: cut into pieces, preferring spaces */
    double bytes_per_tok = (double)(e - s) / tok;
    while (s < e && !u->oom) {
        size_t want = (size_t)(bytes_per_tok * p->target_tokens * 0.9);
        if (want < 1) want = 1;
        for (;;) {
            size_t cut = s + want >= e ? e : s + want;
            if (cut < e) {
                size_t sp = cut;
                while (sp > s && !is_ws(t[sp])) sp--;
                if (sp > s) cut = sp;
                else {
                    size_t f = s + qf_utf8_floor(t + s, cut - s);
                    cut = f > s ? f : cut;
                }
            }
            size_t pe = cut;
            while (pe > s && is_ws(t[pe - 1])) pe--;
            int32_t pt = count(p, t + s, pe - s);
            if (pt <= p->target_tokens || want <= 4) {
                push(u, s, pe, pt, seg, para);
                para = false;
                s = cut;
                while (s < e && is_ws(t[s])) s++;
                break;
            }
            want = want * 4 / 5;
        }
    }
}

/* Is the byte at i the end of a sentence terminator? Returns the offset just
 * after the terminator (and closers) when the sentence ends there, else 0. */
static size_t sentence_end(const char *t, size_t i, size_t e) {
    unsigned char c = (unsigned char)t[i];
    if (c == '.' || c == '!' || c == '?') {
        size_t j = i + 1;
        while (j < e && (t[j] == '"' || t[j] == '\'' || t[j] == ')' || t[j] == ']')) j++;
        /* closing curly quotes ” ’ and » */
        while (j + 3 <= e && (unsigned char)t[j] == 0xE2 && (unsigned char)t[j + 1] == 0x80 &&
               ((unsigned char)t[j + 2] == 0x9D || (unsigned char)t[j + 2] == 0x99))
            j += 3;
        if (j >= e || is_ws(t[j])) return j;
        return 0;
    }
    if (i + 3 <= e) {
        const unsigned char *b = (const unsigned char *)t + i;
        if ((b[0] == 0xE3 && b[1] == 0x80 && b[2] == 0x82) ||                /* 。 */
            (b[0] == 0xEF && b[1] == 0xBC && (b[2] == 0x81 || b[2] == 0x9F))) /* ！？ */
            return i + 3;
    }
    return 0;
}

static void split_segment(units *u, const char *t, size_t a, size_t e, int32_t seg, const qf_chunk_params *p) {
    size_t s = a;
    bool para = true;
    size_t i = a;
    while (i < e) {
        char c = t[i];
        if (c == '\n') {
            size_t j = i + 1;
            while (j < e && (t[j] == ' ' || t[j] == '\t' || t[j] == '\r')) j++;
            bool blank = j < e && t[j] == '\n';
            int32_t before = u->n;
            add_sentence(u, t, s, i, seg, para, p);
            if (u->n > before) para = false;
            if (blank) para = true;
            s = i + 1;
            i++;
            continue;
        }
        size_t end = sentence_end(t, i, e);
        if (end) {
            int32_t before = u->n;
            add_sentence(u, t, s, end, seg, para, p);
            if (u->n > before) para = false;
            s = end;
            i = end;
            continue;
        }
        i++;
    }
    add_sentence(u, t, s, e, seg, para, p);
}

qf_status qf_chunk_text(const char *text, size_t len, const size_t *breaks, int32_t n_breaks,
                        const qf_chunk_params *p, qf_chunk **out, int32_t *n_out, qf_err *err) {
    *out = NULL;
    *n_out = 0;
    if (!p || p->target_tokens <= 0) return QF_ERR_SET(err, QF_ERR_INVALID, "chunk: target tokens must be > 0");
    qf_chunk_params pp = *p;
    if (pp.overlap_tokens < 0) pp.overlap_tokens = 0;
    if (pp.overlap_tokens > pp.target_tokens / 2) pp.overlap_tokens = pp.target_tokens / 2;
    units u = {0};
    size_t a = 0;
    for (int32_t b = 0; b <= n_breaks && !u.oom; b++) {
        size_t e = b < n_breaks ? breaks[b] : len;
        if (e > len) e = len;
        if (e < a) continue;
        split_segment(&u, text, a, e, b, &pp);
        a = e;
    }
    qf_chunk *c = NULL;
    int32_t nc = 0, capc = 0;
    if (u.oom) goto oom;
    int32_t i = 0;
    while (i < u.n) {
        int32_t j = i, last_para = -1;
        int64_t sum = 0, sum_at_para = 0;
        while (j < u.n && u.v[j].seg == u.v[i].seg && (j == i || sum + u.v[j].tok <= pp.target_tokens)) {
            if (j > i && u.v[j].para) {
                last_para = j;
                sum_at_para = sum;
            }
            sum += u.v[j].tok;
            j++;
        }
        bool mid_para = j < u.n && u.v[j].seg == u.v[i].seg && !u.v[j].para;
        if (mid_para && last_para > i && sum_at_para * 2 >= pp.target_tokens) j = last_para;
        if (nc == capc) {
            capc = capc ? capc * 2 : 16;
            qf_chunk *nv = qf_realloc(c, (size_t)capc * sizeof *nv);
            if (!nv) goto oom;
            c = nv;
        }
        size_t cs = u.v[i].s, ce = u.v[j - 1].e;
        c[nc].start = cs;
        c[nc].end = ce;
        c[nc].n_tokens = count(&pp, text + cs, ce - cs);
        nc++;
        if (j >= u.n) break;
        int32_t k = j;
        if (u.v[j].seg == u.v[j - 1].seg) {
            int64_t ov = 0;
            /* the overlap must leave room for unit j, so every chunk ends past the previous one */
            while (k - 1 > i && ov + u.v[k - 1].tok <= pp.overlap_tokens &&
                   ov + u.v[k - 1].tok + u.v[j].tok <= pp.target_tokens) {
                ov += u.v[k - 1].tok;
                k--;
            }
        }
        i = k;
    }
    qf_free(u.v);
    *out = c;
    *n_out = nc;
    return QF_OK;
oom:
    qf_free(u.v);
    qf_free(c);
    return QF_ERR_SET(err, QF_ERR_NOMEM, "chunk: out of memory");
}
