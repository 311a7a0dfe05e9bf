/* parse.c - tolerant JSON extraction of QA pairs and scores.
 *
 * Steps: strip reasoning blocks; then for each '{' or '[' in the text (the
 * first few dozen), try to parse a JSON value there with cJSON and look for
 * pairs in it; the first candidate that yields pairs wins. When none parses,
 * the text from the first candidate is "cleaned" in one scan that tracks
 * strings and the bracket stack: trailing commas before '}'/']' are dropped,
 * and if the text ends inside an unclosed structure it is cut after the last
 * complete array item and the open brackets are closed. Invariant: cleaning
 * never invents content; it only removes bytes and appends closers.
 */
#include "pipeline/parse.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"
#include "pipeline/pipeline_int.h"

/* ---- reasoning blocks ---- */

static const char *find_ci(const char *s, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m > n) return NULL;
    for (size_t i = 0; i + m <= n; i++)
        if (!strncasecmp(s + i, needle, m)) return s + i;
    return NULL;
}

char *qf_parse_strip_think(const char *text, size_t len, size_t *out_len) {
    qf_sb b = {0};
    const char *p = text, *end = text + len;
    /* a closing tag before any opening one: the opening was in the prompt */
    const char *open = find_ci(p, len, "<think>");
    const char *close = find_ci(p, len, "</think>");
    if (close && (!open || close < open)) p = close + 8;
    while (p < end) {
        open = find_ci(p, (size_t)(end - p), "<think>");
        if (!open) {
            qf_sb_append(&b, p, (size_t)(end - p));
            break;
        }
        qf_sb_append(&b, p, (size_t)(open - p));
        close = find_ci(open, (size_t)(end - open), "</think>");
        if (!close) break; /* unclosed: everything after it is reasoning */
        p = close + 8;
    }
    return qf_sb_take(&b, out_len);
}

/* ---- pairs ---- */

static const char *k_qkeys[] = {"question", "q", "instruction", "prompt", "query", NULL};
static const char *k_akeys[] = {"answer", "a", "response", "output", "completion", NULL};

static const cJSON *get_ci(const cJSON *obj, const char *const *keys) {
    for (int k = 0; keys[k]; k++) {
        const cJSON *it;
        cJSON_ArrayForEach(it, obj) {
            if (it->string && !strcasecmp(it->string, keys[k])) return it;
        }
    }
    return NULL;
}

/* Text of a string (or number) value, trimmed; NULL when absent/empty
 * (or, with *oom set, when out of memory). */
static char *value_text(const cJSON *v, bool *oom) {
    char buf[64];
    const char *s = NULL;
    if (cJSON_IsString(v)) s = v->valuestring;
    else if (cJSON_IsNumber(v)) {
        snprintf(buf, sizeof buf, "%g", v->valuedouble);
        s = buf;
    }
    if (!s) return NULL;
    while (*s && isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (!n) return NULL;
    char *r = qf_strndup(s, n);
    if (!r) *oom = true;
    return r;
}

static bool is_pair(const cJSON *o) { return cJSON_IsObject(o) && get_ci(o, k_qkeys) && get_ci(o, k_akeys); }

/* The array that holds the pairs, or the single pair object itself. */
static const cJSON *find_items(const cJSON *v, int depth) {
    if (depth > 3 || !v) return NULL;
    if (cJSON_IsArray(v)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            if (cJSON_IsObject(it)) return v;
        }
        return NULL;
    }
    if (!cJSON_IsObject(v)) return NULL;
    if (is_pair(v)) return v;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (cJSON_IsArray(it) && find_items(it, depth + 1)) return it;
    }
    cJSON_ArrayForEach(it, v) {
        if (cJSON_IsObject(it)) {
            const cJSON *r = find_items(it, depth + 1);
            if (r) return r;
        }
    }
    return NULL;
}

static qf_status add_pair(qf_qa_list *out, const cJSON *o) {
    if (!cJSON_IsObject(o)) {
        out->n_incomplete++;
        return QF_OK;
    }
    bool oom = false;
    char *q = value_text(get_ci(o, k_qkeys), &oom);
    char *a = value_text(get_ci(o, k_akeys), &oom);
    if (!q || !a) {
        qf_free(q);
        qf_free(a);
        if (oom) return QF_ERR_NOMEM;
        out->n_incomplete++;
        return QF_OK;
    }
    qf_qa *v = qf_realloc(out->v, (size_t)(out->n + 1) * sizeof *v);
    if (!v) {
        qf_free(q);
        qf_free(a);
        return QF_ERR_NOMEM;
    }
    out->v = v;
    v[out->n].question = q;
    v[out->n].answer = a;
    out->n++;
    return QF_OK;
}

/* Pairs of a parsed value: QF_OK (maybe 0 pairs), NOMEM. found: whether a
 * pair container was seen at all. */
static qf_status collect(const cJSON *root, qf_qa_list *out, bool *found) {
    const cJSON *items = find_items(root, 0);
    *found = items != NULL;
    if (!items) return QF_OK;
    if (cJSON_IsObject(items)) return add_pair(out, items);
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        if (add_pair(out, it) != QF_OK) return QF_ERR_NOMEM;
    }
    return QF_OK;
}

/* One scan from s: drop trailing commas; if the text ends inside an open
 * structure, cut after the last complete array item and close what is
 * open. Returns a malloc'ed string (NULL on oom); *truncated set when cut. */
static char *clean_json(const char *s, size_t n, int *truncated) {
    enum { MAXD = 64 };
    char stack[MAXD];
    int depth = 0;
    bool in_str = false, esc = false;
    qf_sb b = {0};
    size_t snap_len = 0;
    char snap_stack[MAXD];
    int snap_depth = -1;
    size_t pending_comma = (size_t)-1; /* index in b of a comma not yet known to be trailing */
    *truncated = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            qf_sb_putc(&b, c);
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') {
            pending_comma = (size_t)-1;
            in_str = true;
            qf_sb_putc(&b, c);
            continue;
        }
        if (c == '{' || c == '[') {
            pending_comma = (size_t)-1;
            if (depth == MAXD) break;
            stack[depth++] = c == '{' ? '}' : ']';
            qf_sb_putc(&b, c);
            continue;
        }
        if (c == '}' || c == ']') {
            if (pending_comma != (size_t)-1 && !b.oom) {
                /* trailing comma: remove it (and keep what followed it) */
                memmove(b.buf + pending_comma, b.buf + pending_comma + 1, b.len - pending_comma - 1);
                b.len--;
                b.buf[b.len] = 0;
            }
            pending_comma = (size_t)-1;
            if (depth == 0 || stack[depth - 1] != c) break; /* mismatched: stop here */
            depth--;
            qf_sb_putc(&b, c);
            if (depth == 0) {
                i++;
                break; /* the value is complete */
            }
            if (stack[depth - 1] == ']') { /* an array item just completed */
                snap_len = b.len;
                memcpy(snap_stack, stack, (size_t)depth);
                snap_depth = depth;
            }
            continue;
        }
        if (c == ',') pending_comma = b.len;
        else if (!isspace((unsigned char)c)) pending_comma = (size_t)-1;
        qf_sb_putc(&b, c);
    }
    if (b.oom) {
        qf_sb_free(&b);
        return NULL;
    }
    if (depth > 0 || in_str) {
        if (snap_depth < 0) {
            qf_sb_free(&b);
            return qf_strdup("");
        }
        b.len = snap_len;
        b.buf[b.len] = 0;
        for (int d = snap_depth - 1; d >= 0; d--) qf_sb_putc(&b, snap_stack[d]);
        *truncated = 1;
    }
    return qf_sb_take(&b, NULL);
}

qf_status qf_parse_pairs(const char *text, size_t len, qf_qa_list *out, qf_err *err) {
    memset(out, 0, sizeof *out);
    size_t n = 0;
    char *t = qf_parse_strip_think(text, len, &n);
    if (!t) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    qf_status st = QF_OK;
    bool any_json = false, found = false;
    const char *first = NULL;
    int tries = 0;
    /* each '{' or '[' in turn: as it stands, else cleaned (trailing commas
     * dropped, a cut-off tail closed); the first that holds pairs wins */
    for (size_t i = 0; i < n && tries < 48; i++) {
        if (t[i] != '{' && t[i] != '[') continue;
        if (!first) first = t + i;
        tries++;
        const char *endp = NULL;
        int trunc = 0;
        cJSON *j = cJSON_ParseWithLengthOpts(t + i, n - i, &endp, 0);
        if (!j) {
            char *c = clean_json(t + i, n - i, &trunc);
            if (!c) {
                st = QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
                goto done;
            }
            j = cJSON_Parse(c);
            qf_free(c);
            endp = NULL;
        }
        if (!j) continue;
        any_json = true;
        bool f2 = false;
        st = collect(j, out, &f2);
        cJSON_Delete(j);
        if (st != QF_OK) goto done;
        found = found || f2;
        if (out->n > 0) {
            out->truncated = trunc;
            goto done;
        }
        if (endp > t + i) i = (size_t)(endp - t) - 1; /* skip what that value spanned */
    }
    if (!first) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "no JSON object found in the answer");
    } else if (!any_json) {
        char near[48];
        size_t k = strlen(first) < 40 ? strlen(first) : 40;
        k = qf_utf8_floor(first, k);
        memcpy(near, first, k);
        near[k] = 0;
        for (size_t i = 0; i < k; i++)
            if (near[i] == '\n' || near[i] == '\r') near[i] = ' ';
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "the JSON does not parse (starting at '%s')", near);
    } else if (!found) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "no question/answer pairs in the JSON");
    } else if (out->n_incomplete == 0) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "the list of pairs is empty");
    } else {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "every pair lacks a question or an answer (%d items)", out->n_incomplete);
    }
done:
    if (st == QF_ERR_NOMEM) QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    qf_free(t);
    return st;
}

void qf_qa_list_deinit(qf_qa_list *l) {
    if (!l) return;
    for (int32_t i = 0; i < l->n; i++) {
        qf_free(l->v[i].question);
        qf_free(l->v[i].answer);
    }
    qf_free(l->v);
    memset(l, 0, sizeof *l);
}

qf_status qf_parse_score(const char *text, size_t len, int *score, qf_err *err) {
    *score = 0;
    size_t n = 0;
    char *t = qf_parse_strip_think(text, len, &n);
    if (!t) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    long v = -1;
    const char *brace = memchr(t, '{', n);
    if (brace) {
        cJSON *j = cJSON_ParseWithLengthOpts(brace, n - (size_t)(brace - t), NULL, 0);
        if (j) {
            const char *keys[] = {"score", "rating", "accuracy", NULL};
            const cJSON *s = get_ci(j, keys);
            if (cJSON_IsNumber(s)) v = (long)s->valuedouble;
            else if (cJSON_IsString(s)) v = strtol(s->valuestring, NULL, 10);
            cJSON_Delete(j);
        }
    }
    if (v < 0) {
        for (size_t i = 0; i < n; i++) {
            if (isdigit((unsigned char)t[i])) {
                v = strtol(t + i, NULL, 10);
                break;
            }
        }
    }
    qf_free(t);
    if (v < 1 || v > 10) {
        if (v < 0) return QF_ERR_SET(err, QF_ERR_FORMAT, "no score in the answer");
        return QF_ERR_SET(err, QF_ERR_FORMAT, "score %ld is outside 1..10", v);
    }
    *score = (int)v;
    return QF_OK;
}
