/* top.c - snapshots for `qforge top`: parse Prometheus text and the
 * registry's JSON, compute quantiles and rates, fetch from a server, read a
 * gen job database.
 *
 * The text parser is strict about what a well-formed exposition looks like
 * (every line ends with a newline; names, label syntax and escapes, one
 * float value, an optional integer timestamp) because a half-received body
 * must not silently show as zeros: a body cut inside a line has no final
 * newline, and one cut inside a histogram block leaves a series whose +Inf
 * bucket and _count disagree or are missing, both reported as FORMAT.
 *
 * Quantiles sum the buckets of all series of a family by their `le` bound,
 * then walk the cumulative counts as Prometheus' histogram_quantile does.
 *
 * The job database is the one pipeline/store.h owns; only its table names
 * and columns are known here (meta, docs(status), chunks(status), pairs
 * (status), failures(reason), metrics_snapshot(seq, ts, state, json)). It
 * is opened through a `file:...?mode=ro` URI with a 250 ms busy timeout,
 * and everything is read in one short read transaction, so the counts are
 * consistent with each other and a WAL writer is never held up.
 */
#include "monitor/top.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/mem.h"

#define MAX_BODY ((size_t)32 << 20)

/* ---- sample lists ---- */

static void sample_deinit(qf_prom_sample *s) {
    qf_free(s->name);
    for (int i = 0; i < s->n_labels; i++) {
        qf_free(s->labels[i].name);
        qf_free(s->labels[i].value);
    }
    qf_free(s->labels);
}

void qf_prom_free(qf_prom *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++)
        sample_deinit(&p->v[i]);
    for (int i = 0; i < p->n_fam; i++)
        qf_free(p->fam[i].name);
    qf_free(p->v);
    qf_free(p->fam);
    qf_free(p);
}

/* Append an empty sample named name (n bytes); NULL on oom. */
static qf_prom_sample *add_sample(qf_prom *p, const char *name, size_t n) {
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        qf_prom_sample *v = qf_realloc(p->v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        p->v = v;
        p->cap = cap;
    }
    qf_prom_sample *s = &p->v[p->n];
    memset(s, 0, sizeof *s);
    if (!(s->name = qf_strndup(name, n))) return NULL;
    p->n++;
    return s;
}

/* Add label (name, value) to s, both copied (value of vlen bytes). */
static bool add_label(qf_prom_sample *s, const char *name, size_t nlen, const char *value,
                      size_t vlen) {
    qf_prom_label *v = qf_realloc(s->labels, (size_t)(s->n_labels + 1) * sizeof *v);
    if (!v) return false;
    s->labels = v;
    char *n = qf_strndup(name, nlen), *val = qf_strndup(value, vlen);
    if (!n || !val) {
        qf_free(n);
        qf_free(val);
        return false;
    }
    v[s->n_labels].name = n;
    v[s->n_labels].value = val;
    s->n_labels++;
    return true;
}

static bool add_family(qf_prom *p, const char *name, size_t n, const char *type, size_t tlen) {
    if (p->n_fam == p->cap_fam) {
        int cap = p->cap_fam ? p->cap_fam * 2 : 32;
        qf_prom_family *v = qf_realloc(p->fam, (size_t)cap * sizeof *v);
        if (!v) return false;
        p->fam = v;
        p->cap_fam = cap;
    }
    qf_prom_family *f = &p->fam[p->n_fam];
    if (!(f->name = qf_strndup(name, n))) return false;
    snprintf(f->type, sizeof f->type, "%.*s",
             (int)(tlen < sizeof f->type ? tlen : sizeof f->type - 1), type);
    p->n_fam++;
    return true;
}

const char *qf_prom_type(const qf_prom *p, const char *family) {
    if (!p || !family) return NULL;
    for (int i = 0; i < p->n_fam; i++)
        if (!strcmp(p->fam[i].name, family)) return p->fam[i].type;
    return NULL;
}

const char *qf_prom_label_get(const qf_prom_sample *s, const char *name) {
    for (int i = 0; i < s->n_labels; i++)
        if (!strcmp(s->labels[i].name, name)) return s->labels[i].value;
    return NULL;
}

bool qf_prom_sum(const qf_prom *p, const char *name, const char *lname, const char *lvalue,
                 double *out) {
    if (!p || !name) return false;
    bool any = false;
    double sum = 0;
    for (int i = 0; i < p->n; i++) {
        const qf_prom_sample *s = &p->v[i];
        if (strcmp(s->name, name)) continue;
        if (lname) {
            const char *v = qf_prom_label_get(s, lname);
            if (!v || !lvalue || strcmp(v, lvalue)) continue;
        }
        sum += s->value;
        any = true;
    }
    if (any) *out = sum;
    return any;
}

/* ---- text format ---- */

static bool name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
static bool name_char(char c) {
    return name_start(c) || (c >= '0' && c <= '9');
}
static bool blank(char c) {
    return c == ' ' || c == '\t';
}

/* A float as the text format writes it (Go's ParseFloat forms plus the
 * Inf/NaN spellings); the whole token must be consumed. */
static bool parse_float(const char *p, size_t n, double *out) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, p, n);
    buf[n] = 0;
    if (!strcmp(buf, "+Inf") || !strcmp(buf, "Inf")) {
        *out = INFINITY;
        return true;
    }
    if (!strcmp(buf, "-Inf")) {
        *out = -INFINITY;
        return true;
    }
    if (!strcmp(buf, "NaN")) {
        *out = NAN;
        return true;
    }
    /* strtod would also take hex floats and "infinity"; the format has neither */
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
            return false;
    }
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end || end == buf) return false;
    *out = v;
    return true;
}

#define LINE_ERR(...)                                                                              \
    do {                                                                                           \
        char m_[256];                                                                              \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                      \
        QF_ERR_SET(err, QF_ERR_FORMAT, "metrics line %d: %s", lineno, m_);                         \
        goto fail;                                                                                 \
    } while (0)

/* Labels of a and b equal, ignoring label skip. */
static bool same_labels_except(const qf_prom_sample *a, const qf_prom_sample *b, const char *skip) {
    int na = 0, nb = 0;
    for (int i = 0; i < a->n_labels; i++) {
        if (!strcmp(a->labels[i].name, skip)) continue;
        na++;
        const char *v = qf_prom_label_get(b, a->labels[i].name);
        if (!v || strcmp(v, a->labels[i].value)) return false;
    }
    for (int i = 0; i < b->n_labels; i++)
        nb += strcmp(b->labels[i].name, skip) != 0;
    return na == nb;
}

/* Find a sample called name with the labels of s (ignoring le); when
 * inf, it must be the le="+Inf" bucket. */
static const qf_prom_sample *find_peer(const qf_prom *p, const qf_prom_sample *s, const char *name,
                                       bool inf) {
    for (int j = 0; j < p->n; j++) {
        const qf_prom_sample *t = &p->v[j];
        if (strcmp(t->name, name)) continue;
        if (inf) {
            const char *le = qf_prom_label_get(t, "le");
            if (!le || strcmp(le, "+Inf")) continue;
        }
        if (same_labels_except(s, t, "le")) return t;
    }
    return NULL;
}

/* Every series of a declared histogram is whole: each bucket has a +Inf
 * bucket beside it, which has a _count of the same value (a body cut
 * inside a histogram block fails this). */
static qf_status check_histograms(const qf_prom *p, qf_err *err) {
    char bname[256], cname[256];
    for (int f = 0; f < p->n_fam; f++) {
        if (strcmp(p->fam[f].type, "histogram")) continue;
        const char *fam = p->fam[f].name;
        snprintf(bname, sizeof bname, "%s_bucket", fam);
        snprintf(cname, sizeof cname, "%s_count", fam);
        for (int i = 0; i < p->n; i++) {
            const qf_prom_sample *s = &p->v[i];
            bool bucket = !strcmp(s->name, bname), count = !strcmp(s->name, cname);
            if (!bucket && !count) continue;
            if (bucket && !qf_prom_label_get(s, "le"))
                return QF_ERR_SET(err, QF_ERR_FORMAT, "metrics: histogram %s: a bucket without le",
                                  fam);
            const qf_prom_sample *inf = find_peer(p, s, bname, true);
            if (!inf)
                return QF_ERR_SET(
                    err, QF_ERR_FORMAT,
                    "metrics: histogram %s: a series has no +Inf bucket (body truncated?)", fam);
            if (bucket && inf != s) continue;
            const qf_prom_sample *c = count ? s : find_peer(p, s, cname, false);
            if (!c)
                return QF_ERR_SET(err, QF_ERR_FORMAT,
                                  "metrics: histogram %s: a series has no _count (body truncated?)",
                                  fam);
            if (c->value != inf->value && !(isnan(c->value) && isnan(inf->value)))
                return QF_ERR_SET(
                    err, QF_ERR_FORMAT,
                    "metrics: histogram %s: +Inf bucket and _count disagree (%g vs %g)", fam,
                    inf->value, c->value);
        }
    }
    return QF_OK;
}

qf_prom *qf_prom_parse_text(const char *text, size_t len, qf_err *err) {
    qf_prom *p = qf_calloc(1, sizeof *p);
    int lineno = 0;
    if (!p) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "metrics: out of memory");
        return NULL;
    }
    if (!text && len) {
        QF_ERR_SET(err, QF_ERR_INVALID, "metrics: no text");
        goto fail;
    }
    if (len && text[len - 1] != '\n') {
        int lines = 1;
        for (size_t i = 0; i < len; i++)
            lines += text[i] == '\n';
        QF_ERR_SET(err, QF_ERR_FORMAT,
                   "metrics line %d: the body ends inside a line (truncated reply?)", lines);
        goto fail;
    }
    size_t pos = 0;
    while (pos < len) {
        lineno++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = (size_t)(nl - line);
        pos += n + 1;
        if (n && line[n - 1] == '\r') n--;
        if (memchr(line, 0, n)) LINE_ERR("a NUL byte");
        size_t i = 0;
        while (i < n && blank(line[i]))
            i++;
        if (i == n) continue;
        if (line[i] == '#') {
            /* "# TYPE name type": remember the family's type */
            i++;
            while (i < n && blank(line[i]))
                i++;
            if (n - i > 5 && !strncmp(line + i, "TYPE", 4) && blank(line[i + 4])) {
                i += 4;
                while (i < n && blank(line[i]))
                    i++;
                size_t n0 = i;
                while (i < n && name_char(line[i]))
                    i++;
                size_t n1 = i;
                while (i < n && blank(line[i]))
                    i++;
                size_t t0 = i;
                while (i < n && !blank(line[i]))
                    i++;
                if (n1 == n0 || !name_start(line[n0]) || t0 == i) LINE_ERR("malformed # TYPE line");
                if (!add_family(p, line + n0, n1 - n0, line + t0, i - t0)) goto oom;
            }
            continue;
        }
        if (!name_start(line[i])) LINE_ERR("expected a metric name, found '%.20s'", line + i);
        size_t n0 = i;
        while (i < n && name_char(line[i]))
            i++;
        qf_prom_sample *s = add_sample(p, line + n0, i - n0);
        if (!s) goto oom;
        if (i < n && line[i] == '{') {
            i++;
            for (;;) {
                while (i < n && blank(line[i]))
                    i++;
                if (i < n && line[i] == '}') {
                    i++;
                    break;
                }
                size_t l0 = i;
                if (i >= n || !name_start(line[i]) || line[i] == ':')
                    LINE_ERR("%s: expected a label name", s->name);
                while (i < n && name_char(line[i]) && line[i] != ':')
                    i++;
                size_t l1 = i;
                while (i < n && blank(line[i]))
                    i++;
                if (i >= n || line[i] != '=')
                    LINE_ERR("%s: expected '=' after a label name", s->name);
                i++;
                while (i < n && blank(line[i]))
                    i++;
                if (i >= n || line[i] != '"') LINE_ERR("%s: a label value must be quoted", s->name);
                i++;
                char vbuf[1024];
                size_t vl = 0;
                bool closed = false;
                while (i < n) {
                    char c = line[i++];
                    if (c == '"') {
                        closed = true;
                        break;
                    }
                    if (c == '\\') {
                        if (i >= n) break;
                        char e = line[i++];
                        if (e == 'n')
                            c = '\n';
                        else if (e == '\\' || e == '"')
                            c = e;
                        else
                            LINE_ERR("%s: bad escape '\\%c' in a label value", s->name, e);
                    }
                    if (vl + 1 >= sizeof vbuf) LINE_ERR("%s: label value too long", s->name);
                    vbuf[vl++] = c;
                }
                if (!closed) LINE_ERR("%s: unterminated label value", s->name);
                if (!add_label(s, line + l0, l1 - l0, vbuf, vl)) goto oom;
                while (i < n && blank(line[i]))
                    i++;
                if (i < n && line[i] == ',') {
                    i++;
                    continue;
                }
                if (i < n && line[i] == '}') {
                    i++;
                    break;
                }
                LINE_ERR("%s: expected ',' or '}' in the labels", s->name);
            }
        }
        if (i >= n || !blank(line[i])) LINE_ERR("%s: expected a space and a value", s->name);
        while (i < n && blank(line[i]))
            i++;
        size_t v0 = i;
        while (i < n && !blank(line[i]))
            i++;
        if (v0 == i) LINE_ERR("%s: no value", s->name);
        if (!parse_float(line + v0, i - v0, &s->value))
            LINE_ERR("%s: bad value '%.*s'", s->name, (int)(i - v0 > 40 ? 40 : i - v0), line + v0);
        while (i < n && blank(line[i]))
            i++;
        if (i < n) { /* optional timestamp: an integer (ms) */
            size_t t0 = i;
            if (line[i] == '-') i++;
            while (i < n && line[i] >= '0' && line[i] <= '9')
                i++;
            if (i == t0 || (line[t0] == '-' && i == t0 + 1))
                LINE_ERR("%s: unexpected text after the value", s->name);
            while (i < n && blank(line[i]))
                i++;
            if (i < n) LINE_ERR("%s: unexpected text after the timestamp", s->name);
        }
    }
    if (check_histograms(p, err) != QF_OK) goto fail;
    return p;
oom:
    QF_ERR_SET(err, QF_ERR_NOMEM, "metrics: out of memory");
fail:
    qf_prom_free(p);
    return NULL;
}

#undef LINE_ERR

/* ---- JSON form (qf_metrics_render_json) ---- */

qf_prom *qf_prom_parse_json(const char *json, size_t len, qf_err *err) {
    qf_prom *p = qf_calloc(1, sizeof *p);
    cJSON *root = NULL;
    if (!p) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "metrics: out of memory");
        return NULL;
    }
    root = json ? cJSON_ParseWithLength(json, len) : NULL;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "metrics");
    if (!cJSON_IsArray(arr)) {
        QF_ERR_SET(err, QF_ERR_FORMAT, "metrics JSON: %s",
                   root ? "no \"metrics\" array" : "not JSON");
        goto fail;
    }
    int fi = 0;
    const cJSON *fam;
    cJSON_ArrayForEach(fam, arr) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fam, "name");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(fam, "type");
        const cJSON *series = cJSON_GetObjectItemCaseSensitive(fam, "series");
        if (!cJSON_IsString(name) || !cJSON_IsString(type) || !cJSON_IsArray(series)) {
            QF_ERR_SET(err, QF_ERR_FORMAT, "metrics JSON: metrics[%d] needs name, type and series",
                       fi);
            goto fail;
        }
        if (!add_family(p, name->valuestring, strlen(name->valuestring), type->valuestring,
                        strlen(type->valuestring)))
            goto oom;
        bool hist = !strcmp(type->valuestring, "histogram");
        const cJSON *se;
        cJSON_ArrayForEach(se, series) {
            const cJSON *labels = cJSON_GetObjectItemCaseSensitive(se, "labels");
            if (labels && !cJSON_IsObject(labels)) {
                QF_ERR_SET(err, QF_ERR_FORMAT, "metrics JSON: %s: labels is not an object",
                           name->valuestring);
                goto fail;
            }
            /* one sample per value the text format would write */
            const cJSON *buckets = cJSON_GetObjectItemCaseSensitive(se, "buckets");
            int nb = hist ? cJSON_GetArraySize(buckets) : 0;
            if (hist && !cJSON_IsArray(buckets)) {
                QF_ERR_SET(err, QF_ERR_FORMAT,
                           "metrics JSON: %s: a histogram series has no buckets",
                           name->valuestring);
                goto fail;
            }
            for (int k = -2; k < nb; k++) { /* -2: value or _sum, -1: _count, >= 0: buckets */
                if (!hist && k > -2) break;
                char nm[256];
                const cJSON *val;
                const cJSON *b = k >= 0 ? cJSON_GetArrayItem(buckets, k) : NULL;
                if (!hist) {
                    snprintf(nm, sizeof nm, "%s", name->valuestring);
                    val = cJSON_GetObjectItemCaseSensitive(se, "value");
                } else if (k == -2) {
                    snprintf(nm, sizeof nm, "%s_sum", name->valuestring);
                    val = cJSON_GetObjectItemCaseSensitive(se, "sum");
                } else if (k == -1) {
                    snprintf(nm, sizeof nm, "%s_count", name->valuestring);
                    val = cJSON_GetObjectItemCaseSensitive(se, "count");
                } else {
                    snprintf(nm, sizeof nm, "%s_bucket", name->valuestring);
                    val = cJSON_GetObjectItemCaseSensitive(b, "count");
                }
                double v;
                if (cJSON_IsNumber(val))
                    v = val->valuedouble;
                else if (cJSON_IsNull(val))
                    v = NAN;
                else {
                    QF_ERR_SET(err, QF_ERR_FORMAT,
                               "metrics JSON: %s: a series has no numeric value", nm);
                    goto fail;
                }
                qf_prom_sample *s = add_sample(p, nm, strlen(nm));
                if (!s) goto oom;
                s->value = v;
                const cJSON *l;
                cJSON_ArrayForEach(l, labels) {
                    if (!cJSON_IsString(l)) {
                        QF_ERR_SET(err, QF_ERR_FORMAT, "metrics JSON: %s: label %s is not a string",
                                   nm, l->string ? l->string : "?");
                        goto fail;
                    }
                    if (!add_label(s, l->string, strlen(l->string), l->valuestring,
                                   strlen(l->valuestring)))
                        goto oom;
                }
                if (b) {
                    const cJSON *le = cJSON_GetObjectItemCaseSensitive(b, "le");
                    char lb[64];
                    if (cJSON_IsNumber(le))
                        snprintf(lb, sizeof lb, "%.17g", le->valuedouble);
                    else if (cJSON_IsString(le))
                        snprintf(lb, sizeof lb, "%s", le->valuestring);
                    else {
                        QF_ERR_SET(err, QF_ERR_FORMAT, "metrics JSON: %s: a bucket has no le", nm);
                        goto fail;
                    }
                    if (!add_label(s, "le", 2, lb, strlen(lb))) goto oom;
                }
            }
        }
        fi++;
    }
    cJSON_Delete(root);
    return p;
oom:
    QF_ERR_SET(err, QF_ERR_NOMEM, "metrics: out of memory");
fail:
    cJSON_Delete(root);
    qf_prom_free(p);
    return NULL;
}

/* ---- quantiles ---- */

typedef struct bucket {
    double le, count;
} bucket;

static int cmp_bucket(const void *a, const void *b) {
    double x = ((const bucket *)a)->le, y = ((const bucket *)b)->le;
    return x < y ? -1 : x > y;
}

double qf_prom_quantile(const qf_prom *p, const char *family, double q, double *count) {
    if (count) *count = 0;
    if (!p || !family) return NAN;
    char name[256];
    snprintf(name, sizeof name, "%s_bucket", family);
    int nb = 0;
    for (int i = 0; i < p->n; i++)
        nb += !strcmp(p->v[i].name, name);
    if (nb == 0) return NAN;
    bucket *b = qf_malloc((size_t)nb * sizeof *b);
    if (!b) return NAN;
    /* sum by (le) */
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        const qf_prom_sample *s = &p->v[i];
        if (strcmp(s->name, name)) continue;
        const char *les = qf_prom_label_get(s, "le");
        double le;
        if (!les || !parse_float(les, strlen(les), &le) || isnan(le)) continue;
        int j = 0;
        while (j < k && b[j].le != le)
            j++;
        if (j == k) {
            b[k].le = le;
            b[k].count = 0;
            k++;
        }
        b[j].count += s->value;
    }
    double r = NAN;
    qsort(b, (size_t)k, sizeof *b, cmp_bucket);
    if (k < 2 || !isinf(b[k - 1].le) || b[k - 1].le < 0) goto done;
    /* cumulative counts can only grow; a scrape racing an update may show a
     * dip, which Prometheus also smooths over */
    for (int j = 1; j < k; j++)
        if (b[j].count < b[j - 1].count) b[j].count = b[j - 1].count;
    double total = b[k - 1].count;
    if (count) *count = total;
    if (!(q >= 0 && q <= 1) || !(total > 0)) goto done;
    double rank = q * total;
    int j = 0;
    while (j < k - 1 && b[j].count < rank)
        j++;
    if (j == k - 1) {
        r = b[k - 2].le; /* in the +Inf bucket: the highest finite bound */
    } else if (j == 0 && b[0].le <= 0) {
        r = b[0].le;
    } else {
        double lo = j == 0 ? 0 : b[j - 1].le;
        double below = j == 0 ? 0 : b[j - 1].count;
        double in = b[j].count - below;
        r = in > 0 ? lo + (b[j].le - lo) * ((rank - below) / in) : lo;
    }
done:
    qf_free(b);
    return r;
}

/* ---- snapshots ---- */

void qf_top_snap_init(qf_top_snap *s, qf_top_source source, const char *target) {
    memset(s, 0, sizeof *s);
    s->source = source;
    snprintf(s->target, sizeof s->target, "%s", target ? target : "");
    double *nums[] = {&s->tokens_per_s,
                      &s->queue_depth,
                      &s->running,
                      &s->kv_usage,
                      &s->kv_blocks_used,
                      &s->kv_blocks_total,
                      &s->prefix_hit_ratio,
                      &s->rss_bytes,
                      &s->mem_pressure,
                      &s->uptime_s,
                      &s->models_loaded,
                      &s->requests_total,
                      &s->generated_tokens_total,
                      &s->prompt_tokens_total,
                      &s->cancelled_total,
                      &s->lat_count,
                      &s->ttft_count,
                      &s->requests_per_s,
                      &s->snapshot_age_s,
                      &s->elapsed_s,
                      &s->eta_s,
                      &s->docs_total,
                      &s->docs_done,
                      &s->docs_skipped,
                      &s->chunks_total,
                      &s->chunks_done,
                      &s->chunks_in_flight,
                      &s->chunks_pending,
                      &s->pairs_accepted,
                      &s->pairs_rejected,
                      &s->pairs_duplicate,
                      &s->tokens_in,
                      &s->tokens_out,
                      &s->gen_requests,
                      &s->cache_hits,
                      &s->cache_misses,
                      &s->cache_hit_ratio,
                      &s->failures_total};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++)
        *nums[i] = NAN;
    for (int i = 0; i < 3; i++)
        s->lat_p[i] = s->ttft_p[i] = NAN;
    for (int i = 0; i < QF_TOP_MAX_CORES; i++)
        s->core_util[i] = NAN;
    snprintf(s->state, sizeof s->state, "unknown");
    s->alerts_state = 0;
    s->t_mono = qf_now_s();
    s->t_unix = (int64_t)time(NULL);
}

/* A value of the exposition: the sum of its series; a declared counter
 * without series yet is 0; anything else absent is NaN. */
static double metric(const qf_prom *p, const char *name) {
    double v;
    if (qf_prom_sum(p, name, NULL, NULL, &v)) return v;
    const char *t = qf_prom_type(p, name);
    return t && !strcmp(t, "counter") ? 0 : NAN;
}

static void fail_snap(qf_top_snap *s, const qf_err *e) {
    s->up = false;
    snprintf(s->error, sizeof s->error, "%s", e && e->msg[0] ? e->msg : "failed");
}

static const double k_q[3] = {0.5, 0.9, 0.99};

static void fill_cores(qf_top_snap *s, const qf_prom *p) {
    s->n_cores = 0;
    for (int i = 0; i < p->n; i++) {
        const qf_prom_sample *x = &p->v[i];
        if (strcmp(x->name, "qforge_cpu_core_utilization")) continue;
        const char *c = qf_prom_label_get(x, "core");
        char *end;
        long k = c ? strtol(c, &end, 10) : -1;
        if (!c || *end || k < 0 || k >= QF_TOP_MAX_CORES) continue;
        s->core_util[k] = x->value;
        if (k + 1 > s->n_cores) s->n_cores = (int)k + 1;
    }
}

qf_status qf_top_parse_alerts(qf_top_snap *s, const char *body, size_t len, qf_err *err_out) {
    qf_err le = {0}, *err = &le;
    s->n_alerts = 0;
    cJSON *root = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "alerts");
    qf_status st = QF_OK;
    if (!root) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "alerts: the reply is not JSON (%s)",
                        len ? "malformed" : "empty");
    } else if (!cJSON_IsArray(arr)) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "alerts: the reply has no \"alerts\" array");
    } else {
        int i = 0;
        const cJSON *a;
        cJSON_ArrayForEach(a, arr) {
            if (!cJSON_IsObject(a)) {
                st = QF_ERR_SET(err, QF_ERR_FORMAT, "alerts: alerts[%d] is not an object", i);
                break;
            }
            if (s->n_alerts < QF_TOP_MAX_ALERTS) {
                qf_top_alert *t = &s->alerts[s->n_alerts];
                memset(t, 0, sizeof *t);
                const cJSON *v;
                v = cJSON_GetObjectItemCaseSensitive(a, "name");
                snprintf(t->name, sizeof t->name, "%s", cJSON_IsString(v) ? v->valuestring : "?");
                v = cJSON_GetObjectItemCaseSensitive(a, "severity");
                snprintf(t->severity, sizeof t->severity, "%s",
                         cJSON_IsString(v) ? v->valuestring : "");
                v = cJSON_GetObjectItemCaseSensitive(a, "message");
                snprintf(t->message, sizeof t->message, "%s",
                         cJSON_IsString(v) ? v->valuestring : "");
                v = cJSON_GetObjectItemCaseSensitive(a, "value");
                t->value = cJSON_IsNumber(v) ? v->valuedouble : NAN;
                v = cJSON_GetObjectItemCaseSensitive(a, "threshold");
                t->threshold = cJSON_IsNumber(v) ? v->valuedouble : NAN;
                v = cJSON_GetObjectItemCaseSensitive(a, "since_unix");
                t->since_unix = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
            }
            s->n_alerts++;
            i++;
        }
    }
    cJSON_Delete(root);
    if (st != QF_OK) {
        s->alerts_state = -1;
        s->n_alerts = 0;
        snprintf(s->alerts_error, sizeof s->alerts_error, "%s", le.msg);
        if (err_out) *err_out = le;
    } else {
        s->alerts_state = 1;
        s->alerts_error[0] = 0;
    }
    return st;
}

qf_status qf_top_fill_serve(qf_top_snap *s, const char *metrics, size_t metrics_len,
                            long alerts_status, const char *alerts, size_t alerts_len,
                            qf_err *err) {
    qf_err e = {0};
    if (!metrics || metrics_len == 0) {
        QF_ERR_SET(&e, QF_ERR_FORMAT, "%s/metrics: empty reply", s->target);
        fail_snap(s, &e);
        if (err) *err = e;
        return QF_ERR_FORMAT;
    }
    qf_prom *p = qf_prom_parse_text(metrics, metrics_len, &e);
    if (!p) {
        qf_err_prefix(&e, "%s/metrics", s->target);
        fail_snap(s, &e);
        if (err) *err = e;
        return e.code;
    }
    s->tokens_per_s = metric(p, "qforge_tokens_per_second");
    s->queue_depth = metric(p, "qforge_queue_depth");
    s->running = metric(p, "qforge_running_sequences");
    s->kv_usage = metric(p, "qforge_kv_usage_ratio");
    s->kv_blocks_used = metric(p, "qforge_kv_blocks_used");
    s->kv_blocks_total = metric(p, "qforge_kv_blocks_total");
    s->prefix_hit_ratio = metric(p, "qforge_prefix_cache_hit_ratio");
    s->rss_bytes = metric(p, "qforge_process_rss_bytes");
    if (isnan(s->rss_bytes)) s->rss_bytes = metric(p, "qforge_process_resident_memory_bytes");
    s->mem_pressure = metric(p, "qforge_memory_pressure_ratio");
    s->uptime_s = metric(p, "qforge_uptime_seconds");
    s->models_loaded = metric(p, "qforge_models_loaded");
    s->generated_tokens_total = metric(p, "qforge_generated_tokens_total");
    s->prompt_tokens_total = metric(p, "qforge_prompt_tokens_total");
    s->cancelled_total = metric(p, "qforge_requests_cancelled_total");
    /* API requests only: top's own /metrics and /alerts polls are not traffic */
    s->requests_total = metric(p, "qforge_http_requests_total");
    if (!isnan(s->requests_total)) {
        double api = 0;
        for (int i = 0; i < p->n; i++) {
            const qf_prom_sample *x = &p->v[i];
            const char *ep = qf_prom_label_get(x, "endpoint");
            if (!strcmp(x->name, "qforge_http_requests_total") && ep &&
                (!strncmp(ep, "/v1/", 4) || !strncmp(ep, "/api/", 5)))
                api += x->value;
        }
        s->requests_total = api;
    }
    fill_cores(s, p);
    for (int i = 0; i < 3; i++) {
        s->lat_p[i] = qf_prom_quantile(p, "qforge_generation_seconds", k_q[i], &s->lat_count);
        s->ttft_p[i] =
            qf_prom_quantile(p, "qforge_time_to_first_token_seconds", k_q[i], &s->ttft_count);
    }
    if (!qf_prom_type(p, "qforge_generation_seconds") && !s->lat_count) s->lat_count = NAN;
    if (!qf_prom_type(p, "qforge_time_to_first_token_seconds") && !s->ttft_count)
        s->ttft_count = NAN;
    qf_prom_free(p);
    s->up = true;
    s->error[0] = 0;
    if (alerts_status == 404) {
        s->alerts_state = 0;
        s->n_alerts = 0;
    } else if (alerts_status == 200) {
        qf_top_parse_alerts(s, alerts, alerts_len, NULL);
    } else {
        s->alerts_state = -1;
        s->n_alerts = 0;
        snprintf(s->alerts_error, sizeof s->alerts_error, "%.400s/alerts: HTTP %ld", s->target,
                 alerts_status);
    }
    return QF_OK;
}

/* ---- fetching ---- */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

typedef struct body {
    char *p;
    size_t len, cap;
    bool too_big, oom;
} body;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud) {
    body *b = ud;
    size_t n = size * nmemb;
    if (b->len + n + 1 > MAX_BODY) {
        b->too_big = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = qf_realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return 0;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    b->p[b->len] = 0;
    return n;
}

/* GET url into *b; the HTTP status in *status. QF_ERR_IO with a message
 * when there is no complete reply. */
static qf_status get(CURL *h, const char *url, struct curl_slist *hdr, double timeout_s, body *b,
                     long *status, qf_err *err) {
    char ebuf[CURL_ERROR_SIZE];
    ebuf[0] = 0;
    b->len = 0;
    b->too_big = b->oom = false;
    if (b->p) b->p[0] = 0;
    *status = 0;
    long ms = (long)(timeout_s * 1000);
    if (ms < 1) ms = 1;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "qforge-top");
    CURLcode rc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    if (b->oom) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", url);
    if (b->too_big)
        return QF_ERR_SET(err, QF_ERR_IO, "%s: the reply is over %zu bytes", url, MAX_BODY);
    if (rc != CURLE_OK) {
        const char *why = ebuf[0] ? ebuf : curl_easy_strerror(rc);
        if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
            return QF_ERR_SET(err, QF_ERR_IO,
                              "cannot reach %s: %s (is `qforge serve` running there?)", url, why);
        if (rc == CURLE_OPERATION_TIMEDOUT)
            return QF_ERR_SET(err, QF_ERR_IO, "%s: no reply within %.1f s (%s)", url, timeout_s,
                              why);
        if (rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING)
            return QF_ERR_SET(err, QF_ERR_IO, "%s: the reply was cut off (%s)", url, why);
        return QF_ERR_SET(err, QF_ERR_IO, "%s: %s", url, why);
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    return QF_OK;
}

qf_status qf_top_fetch_serve(qf_top_snap *s, const char *url, const char *api_key, double timeout_s,
                             qf_err *err) {
    char base[512], u[600];
    snprintf(base, sizeof base, "%s", url ? url : "");
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        base[--bl] = 0;
    qf_top_snap_init(s, QF_TOP_SERVE, base);
    pthread_once(&g_curl_once, curl_init_once);
    qf_err e = {0};
    qf_status st = QF_OK;
    body b = {0}, ab = {0};
    struct curl_slist *hdr = NULL;
    CURL *h = curl_easy_init();
    if (!h) {
        st = QF_ERR_SET(&e, QF_ERR_NOMEM, "%s: cannot start an HTTP client", base);
        goto out;
    }
    if (api_key && *api_key) {
        char auth[600];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
        hdr = curl_slist_append(hdr, auth);
    }
    long status = 0, astatus = 0;
    snprintf(u, sizeof u, "%s/metrics", base);
    if ((st = get(h, u, hdr, timeout_s, &b, &status, &e)) != QF_OK) goto out;
    if (status == 401) {
        st = QF_ERR_SET(&e, QF_ERR_IO,
                        "%s: 401 unauthorized: the server wants an API key (--api-key)", u);
        goto out;
    }
    if (status != 200) {
        st = QF_ERR_SET(&e, QF_ERR_IO, "%s: HTTP %ld (is this a qforge serve?)", u, status);
        goto out;
    }
    snprintf(u, sizeof u, "%s/alerts", base);
    qf_err ae = {0};
    if (get(h, u, hdr, timeout_s, &ab, &astatus, &ae) != QF_OK) {
        /* the metrics came; a failing alerts request only greys out alerts */
        st = qf_top_fill_serve(s, b.p, b.len, 404, NULL, 0, &e);
        if (st == QF_OK) {
            s->alerts_state = -1;
            snprintf(s->alerts_error, sizeof s->alerts_error, "%s", ae.msg);
        }
        goto out;
    }
    st = qf_top_fill_serve(s, b.p, b.len, astatus, ab.p, ab.len, &e);
out:
    curl_slist_free_all(hdr);
    if (h) curl_easy_cleanup(h);
    qf_free(b.p);
    qf_free(ab.p);
    if (st != QF_OK) {
        fail_snap(s, &e);
        if (err) *err = e;
    }
    s->t_mono = qf_now_s();
    return st;
}

/* ---- the gen job database ---- */

/* "file:" URI of path with mode=ro; characters with a meaning in URIs are
 * percent-encoded. */
static void ro_uri(const char *path, char *out, size_t cap) {
    size_t n = (size_t)snprintf(out, cap, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < cap; p++) {
        if (*p == '%' || *p == '?' || *p == '#' || *p <= ' ' || *p >= 0x7f)
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", *p);
        else
            out[n++] = (char)*p;
    }
    snprintf(out + n, cap - n, "?mode=ro");
}

static int64_t q_int(sqlite3 *db, const char *sql, bool *ok) {
    sqlite3_stmt *st = NULL;
    int64_t v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        *ok = false;
        return 0;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        *ok = false;
    sqlite3_finalize(st);
    return v;
}

static double gm(const qf_prom *p, const char *name) {
    return p ? metric(p, name) : NAN;
}

qf_status qf_top_read_db(qf_top_snap *s, const char *path, qf_err *err) {
    qf_top_snap_init(s, QF_TOP_GEN, path);
    qf_err e = {0};
    qf_status st = QF_OK;
    sqlite3 *db = NULL;
    qf_prom *p = NULL;
    bool in_txn = false;
    struct stat sb;
    if (!path || stat(path, &sb) != 0) {
        st = QF_ERR_SET(&e, QF_ERR_IO, "%s: no such job database (%s)", path ? path : "(null)",
                        path ? strerror(errno) : "no path");
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = QF_ERR_SET(&e, QF_ERR_IO, "%s: not a file", path);
        goto out;
    }
    char uri[2048];
    ro_uri(path, uri, sizeof uri);
    int rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        st = QF_ERR_SET(&e, QF_ERR_IO, "%s: cannot open read-only: %s", path,
                        db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        goto out;
    }
    /* a reader waits briefly for a writer's lock, never long */
    sqlite3_busy_timeout(db, 250);
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        st = QF_ERR_SET(&e, QF_ERR_IO, "%s: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    in_txn = true;
    bool ok = true;
    int64_t tables = q_int(db,
                           "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
                           "('meta','docs','chunks','pairs','failures')",
                           &ok);
    if (!ok) {
        int c = sqlite3_errcode(db);
        st = QF_ERR_SET(&e, c == SQLITE_NOTADB ? QF_ERR_FORMAT : QF_ERR_IO, "%s: %s", path,
                        c == SQLITE_NOTADB ? "not a database" : sqlite3_errmsg(db));
        goto out;
    }
    if (tables != 5) {
        st = QF_ERR_SET(&e, QF_ERR_FORMAT, "%s: not a qforge job database (no job tables)", path);
        goto out;
    }
    /* the newest metrics snapshot, when the writer has made one */
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT ts, state, json FROM metrics_snapshot ORDER BY seq DESC LIMIT 1",
                           -1, &q, NULL) == SQLITE_OK) {
        rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            double ts = sqlite3_column_double(q, 0);
            const char *state = (const char *)sqlite3_column_text(q, 1);
            const char *js = (const char *)sqlite3_column_text(q, 2);
            int jl = sqlite3_column_bytes(q, 2);
            snprintf(s->state, sizeof s->state, "%s", state && *state ? state : "unknown");
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            s->snapshot_age_s = (double)now.tv_sec + now.tv_nsec * 1e-9 - ts;
            if (s->snapshot_age_s < 0) s->snapshot_age_s = 0;
            p = qf_prom_parse_json(js, js ? (size_t)jl : 0, &e);
            if (!p) {
                qf_err_prefix(&e, "%s: metrics snapshot", path);
                st = e.code;
                sqlite3_finalize(q);
                goto out;
            }
        } else if (rc != SQLITE_DONE) {
            st = QF_ERR_SET(&e, QF_ERR_IO, "%s: %s", path, sqlite3_errmsg(db));
            sqlite3_finalize(q);
            goto out;
        }
        sqlite3_finalize(q);
    } /* else: a database from a qforge without snapshots; the tables still tell */

    ok = true;
    s->docs_total = (double)q_int(db, "SELECT count(*) FROM docs", &ok);
    s->docs_done = (double)q_int(db, "SELECT count(*) FROM docs WHERE status IN (1,2)", &ok);
    s->docs_skipped = (double)q_int(db, "SELECT count(*) FROM docs WHERE status=2", &ok);
    s->chunks_done = (double)q_int(db, "SELECT count(*) FROM chunks WHERE status=1", &ok);
    s->pairs_accepted = (double)q_int(db, "SELECT count(*) FROM pairs WHERE status=0", &ok);
    s->pairs_rejected = (double)q_int(db, "SELECT count(*) FROM pairs WHERE status=1", &ok);
    s->pairs_duplicate = (double)q_int(db, "SELECT count(*) FROM pairs WHERE status=2", &ok);
    s->failures_total = (double)q_int(db, "SELECT count(*) FROM failures", &ok);
    if (sqlite3_prepare_v2(
            db, "SELECT reason, count(*) FROM failures GROUP BY reason ORDER BY 2 DESC, 1", -1, &q,
            NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW && s->n_failures < QF_TOP_MAX_FAILURES) {
            const char *r = (const char *)sqlite3_column_text(q, 0);
            snprintf(s->failures[s->n_failures].reason, sizeof s->failures[0].reason, "%s",
                     r ? r : "");
            s->failures[s->n_failures].n = (double)sqlite3_column_int64(q, 1);
            s->n_failures++;
        }
        sqlite3_finalize(q);
    } else {
        ok = false;
    }
    if (!ok) {
        st = QF_ERR_SET(&e, QF_ERR_IO, "%s: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    /* what only the running job knows: from its snapshot */
    s->elapsed_s = gm(p, "qforge_gen_elapsed_seconds");
    s->eta_s = gm(p, "qforge_gen_eta_seconds");
    s->tokens_per_s = gm(p, "qforge_tokens_per_second");
    s->chunks_total = gm(p, "qforge_gen_chunks_total");
    s->chunks_total_final = gm(p, "qforge_gen_chunks_total_final") > 0;
    s->chunks_in_flight = gm(p, "qforge_gen_chunks_in_flight");
    s->tokens_in = gm(p, "qforge_prompt_tokens_total");
    s->tokens_out = gm(p, "qforge_generated_tokens_total");
    s->gen_requests = gm(p, "qforge_gen_requests_total");
    s->cache_hits = gm(p, "qforge_gen_cache_hits_total");
    s->cache_misses = gm(p, "qforge_gen_cache_misses_total");
    s->cache_hit_ratio = gm(p, "qforge_gen_cache_hit_ratio");
    if (strcmp(s->state, "running")) s->chunks_in_flight = isnan(s->chunks_in_flight) ? NAN : 0;
    if (!isnan(s->chunks_total) && s->chunks_total < s->chunks_done)
        s->chunks_total = s->chunks_done;
    if (!isnan(s->chunks_total)) {
        double inf = isnan(s->chunks_in_flight) ? 0 : s->chunks_in_flight;
        s->chunks_pending = s->chunks_total - s->chunks_done - inf;
        if (s->chunks_pending < 0) s->chunks_pending = 0;
    }
    s->up = true;
out:
    if (in_txn) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (db) sqlite3_close(db);
    qf_prom_free(p);
    if (st != QF_OK) {
        fail_snap(s, &e);
        if (err) *err = e;
    }
    s->t_mono = qf_now_s();
    return st;
}

/* ---- rates ---- */

void qf_top_rates(qf_top_snap *cur, const qf_top_snap *prev) {
    if (!cur) return;
    cur->requests_per_s = NAN;
    if (!prev || !cur->up || !prev->up || cur->source != prev->source) return;
    double dt = cur->t_mono - prev->t_mono;
    if (!(dt > 0.05)) return;
    double d = cur->requests_total - prev->requests_total;
    if (d >= 0) cur->requests_per_s = d / dt; /* NaN when either is absent */
}

/* ---- JSON ---- */

static void jnum(cJSON *o, const char *k, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static void jstr(cJSON *o, const char *k, const char *v) {
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static void jquant(cJSON *o, const char *k, const double p[3], double count) {
    cJSON *q = cJSON_AddObjectToObject(o, k);
    jnum(q, "count", count);
    jnum(q, "p50", p[0]);
    jnum(q, "p90", p[1]);
    jnum(q, "p99", p[2]);
}

static void json_serve(cJSON *o, const qf_top_snap *s) {
    jnum(o, "tokens_per_s", s->tokens_per_s);
    jnum(o, "queue_depth", s->queue_depth);
    jnum(o, "running_sequences", s->running);
    jnum(o, "requests_total", s->requests_total);
    jnum(o, "requests_per_s", s->requests_per_s);
    jnum(o, "prompt_tokens_total", s->prompt_tokens_total);
    jnum(o, "generated_tokens_total", s->generated_tokens_total);
    jnum(o, "requests_cancelled_total", s->cancelled_total);
    jnum(o, "models_loaded", s->models_loaded);
    jnum(o, "uptime_s", s->uptime_s);
    cJSON *kv = cJSON_AddObjectToObject(o, "kv");
    jnum(kv, "usage_ratio", s->kv_usage);
    jnum(kv, "blocks_used", s->kv_blocks_used);
    jnum(kv, "blocks_total", s->kv_blocks_total);
    jnum(o, "prefix_cache_hit_ratio", s->prefix_hit_ratio);
    cJSON *cpu = cJSON_AddObjectToObject(o, "cpu");
    cJSON *cores = cJSON_AddArrayToObject(cpu, "cores");
    double sum = 0;
    int n = 0;
    for (int i = 0; i < s->n_cores; i++) {
        double v = s->core_util[i];
        cJSON_AddItemToArray(cores, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
        if (isfinite(v)) {
            sum += v;
            n++;
        }
    }
    jnum(cpu, "mean", n ? sum / n : NAN);
    cJSON *mem = cJSON_AddObjectToObject(o, "memory");
    jnum(mem, "rss_bytes", s->rss_bytes);
    jnum(mem, "pressure_ratio", s->mem_pressure);
    jquant(o, "latency_s", s->lat_p, s->lat_count);
    jquant(o, "ttft_s", s->ttft_p, s->ttft_count);
    cJSON_AddBoolToObject(o, "alerts_endpoint", s->alerts_state != 0);
    jstr(o, "alerts_error", s->alerts_state < 0 ? s->alerts_error : NULL);
    cJSON *al = cJSON_AddArrayToObject(o, "alerts");
    int na = s->n_alerts < QF_TOP_MAX_ALERTS ? s->n_alerts : QF_TOP_MAX_ALERTS;
    for (int i = 0; i < na; i++) {
        const qf_top_alert *a = &s->alerts[i];
        cJSON *x = cJSON_CreateObject();
        jstr(x, "name", a->name);
        jstr(x, "severity", a->severity);
        jstr(x, "message", a->message);
        jnum(x, "value", a->value);
        jnum(x, "threshold", a->threshold);
        jnum(x, "since_unix", a->since_unix ? (double)a->since_unix : NAN);
        cJSON_AddItemToArray(al, x);
    }
}

static void json_gen(cJSON *o, const qf_top_snap *s) {
    jstr(o, "state", s->state);
    jnum(o, "snapshot_age_s", s->snapshot_age_s);
    jnum(o, "elapsed_s", s->elapsed_s);
    jnum(o, "eta_s", s->eta_s);
    jnum(o, "tokens_per_s", s->tokens_per_s);
    cJSON *d = cJSON_AddObjectToObject(o, "documents");
    jnum(d, "total", s->docs_total);
    jnum(d, "done", s->docs_done);
    jnum(d, "skipped", s->docs_skipped);
    cJSON *c = cJSON_AddObjectToObject(o, "chunks");
    jnum(c, "total", s->chunks_total);
    cJSON_AddBoolToObject(c, "total_final", s->chunks_total_final);
    jnum(c, "done", s->chunks_done);
    jnum(c, "in_flight", s->chunks_in_flight);
    jnum(c, "pending", s->chunks_pending);
    cJSON *p = cJSON_AddObjectToObject(o, "pairs");
    jnum(p, "accepted", s->pairs_accepted);
    jnum(p, "rejected", s->pairs_rejected);
    jnum(p, "duplicate", s->pairs_duplicate);
    cJSON *t = cJSON_AddObjectToObject(o, "tokens");
    jnum(t, "in", s->tokens_in);
    jnum(t, "out", s->tokens_out);
    jnum(o, "requests_total", s->gen_requests);
    cJSON *ca = cJSON_AddObjectToObject(o, "cache");
    jnum(ca, "hits", s->cache_hits);
    jnum(ca, "misses", s->cache_misses);
    jnum(ca, "hit_ratio", s->cache_hit_ratio);
    cJSON *f = cJSON_AddObjectToObject(o, "failures");
    for (int i = 0; i < s->n_failures; i++)
        jnum(f, s->failures[i].reason, s->failures[i].n);
    jnum(o, "failures_total", s->failures_total);
}

char *qf_top_snap_json(const qf_top_snap *s) {
    if (!s) return NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    jstr(o, "source", s->source == QF_TOP_SERVE ? "serve" : "gen");
    jstr(o, "target", s->target);
    cJSON_AddNumberToObject(o, "time_unix", (double)s->t_unix);
    cJSON_AddBoolToObject(o, "up", s->up);
    jstr(o, "error", s->up ? NULL : s->error);
    if (s->source == QF_TOP_SERVE)
        json_serve(o, s);
    else
        json_gen(o, s);
    char *js = cJSON_Print(o);
    cJSON_Delete(o);
    if (!js) return NULL;
    char *r = qf_strdup(js);
    cJSON_free(js);
    return r;
}
