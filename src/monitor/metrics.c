/* metrics.c - the registry behind /metrics and the JSON reports.
 *
 * Families live in a fixed array in declaration order; each owns a growing
 * array of series in creation order, found by a linear scan of the label
 * string (a server has a few dozen series; a scan is cheaper than hashing
 * and keeps output order stable). A histogram series stores per-bucket
 * counts (not cumulative; render sums them), the sum and the count. One
 * mutex guards everything: updates are a few compares and an add.
 * The JSON renderer walks the same arrays in the same order and parses each
 * stored label string (always produced by qf_metrics_labels or a caller in
 * the same syntax) back into key/value pairs.
 */
#include "monitor/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"

typedef struct series {
    char *labels;      /* owned, "" for none */
    double value;      /* counter / gauge */
    uint64_t *buckets; /* histogram: (n_buckets + 1) counts, last = +Inf */
    double sum;
    uint64_t count;
} series;

typedef struct family {
    char *name, *help;
    qf_metric_kind kind;
    double bounds[QF_METRICS_MAX_BUCKETS];
    int n_bounds;
    series *s;
    int n, cap;
} family;

struct qf_metrics {
    pthread_mutex_t mu;
    family f[QF_METRICS_MAX_FAMILIES];
    int n;
};

qf_metrics *qf_metrics_new(qf_err *err) {
    qf_metrics *m = qf_calloc(1, sizeof *m);
    if (!m) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "metrics: out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void qf_metrics_free(qf_metrics *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        family *f = &m->f[i];
        for (int j = 0; j < f->n; j++) {
            qf_free(f->s[j].labels);
            qf_free(f->s[j].buckets);
        }
        qf_free(f->s);
        qf_free(f->name);
        qf_free(f->help);
    }
    pthread_mutex_destroy(&m->mu);
    qf_free(m);
}

static bool valid_name(const char *s) {
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p > s && c >= '0' && c <= '9')) return false;
    }
    return true;
}

static family *find_family(qf_metrics *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->f[i].name, name)) return &m->f[i];
    return NULL;
}

qf_status qf_metrics_declare(qf_metrics *m, const char *name, qf_metric_kind kind, const char *help,
                             const double *buckets, int n_buckets) {
    if (!m || !valid_name(name)) return QF_ERR_INVALID;
    if (kind == QF_METRIC_HISTOGRAM) {
        if (!buckets || n_buckets < 1 || n_buckets > QF_METRICS_MAX_BUCKETS) return QF_ERR_INVALID;
        for (int i = 0; i < n_buckets; i++) {
            if (!isfinite(buckets[i])) return QF_ERR_INVALID;
            if (i > 0 && !(buckets[i] > buckets[i - 1])) return QF_ERR_INVALID;
        }
    } else if (n_buckets != 0 || (kind != QF_METRIC_COUNTER && kind != QF_METRIC_GAUGE)) {
        return QF_ERR_INVALID;
    }
    qf_status st = QF_OK;
    pthread_mutex_lock(&m->mu);
    if (find_family(m, name)) {
        st = QF_ERR_INVALID;
    } else if (m->n == QF_METRICS_MAX_FAMILIES) {
        st = QF_ERR_RANGE;
    } else {
        family *f = &m->f[m->n];
        memset(f, 0, sizeof *f);
        f->name = qf_strdup(name);
        f->help = qf_strdup(help ? help : "");
        if (!f->name || !f->help) {
            qf_free(f->name);
            qf_free(f->help);
            st = QF_ERR_NOMEM;
        } else {
            f->kind = kind;
            f->n_bounds = kind == QF_METRIC_HISTOGRAM ? n_buckets : 0;
            for (int i = 0; i < f->n_bounds; i++)
                f->bounds[i] = buckets[i];
            m->n++;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

/* Find or create the series; NULL + *st on failure. Caller holds the lock. */
static series *get_series(family *f, const char *labels, bool create, qf_status *st) {
    if (!labels) labels = "";
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->s[i].labels, labels)) return &f->s[i];
    if (!create) {
        *st = QF_ERR_NOT_FOUND;
        return NULL;
    }
    if (f->n == QF_METRICS_MAX_SERIES) {
        *st = QF_ERR_RANGE;
        return NULL;
    }
    if (f->n == f->cap) {
        int cap = f->cap ? f->cap * 2 : 8;
        series *s = qf_realloc(f->s, (size_t)cap * sizeof *s);
        if (!s) {
            *st = QF_ERR_NOMEM;
            return NULL;
        }
        f->s = s;
        f->cap = cap;
    }
    series *s = &f->s[f->n];
    memset(s, 0, sizeof *s);
    s->labels = qf_strdup(labels);
    if (f->kind == QF_METRIC_HISTOGRAM)
        s->buckets = qf_calloc((size_t)f->n_bounds + 1, sizeof *s->buckets);
    if (!s->labels || (f->kind == QF_METRIC_HISTOGRAM && !s->buckets)) {
        qf_free(s->labels);
        qf_free(s->buckets);
        *st = QF_ERR_NOMEM;
        return NULL;
    }
    f->n++;
    return s;
}

enum { OP_ADD, OP_SET, OP_OBSERVE };

static qf_status update(qf_metrics *m, const char *name, const char *labels, double v, int op) {
    if (!m || !name || !isfinite(v)) return QF_ERR_INVALID;
    qf_status st = QF_OK;
    pthread_mutex_lock(&m->mu);
    family *f = find_family(m, name);
    if (!f) {
        st = QF_ERR_NOT_FOUND;
        goto done;
    }
    bool ok = (op == OP_OBSERVE) == (f->kind == QF_METRIC_HISTOGRAM);
    if (op == OP_ADD && f->kind == QF_METRIC_COUNTER && v < 0) ok = false;
    if (!ok) {
        st = QF_ERR_INVALID;
        goto done;
    }
    series *s = get_series(f, labels, true, &st);
    if (!s) goto done;
    if (op == OP_ADD) {
        s->value += v;
    } else if (op == OP_SET) {
        if (f->kind == QF_METRIC_COUNTER && v < s->value)
            st = QF_ERR_INVALID;
        else
            s->value = v;
    } else {
        int b = 0;
        while (b < f->n_bounds && v > f->bounds[b])
            b++;
        s->buckets[b]++;
        s->sum += v;
        s->count++;
    }
done:
    pthread_mutex_unlock(&m->mu);
    return st;
}

qf_status qf_metrics_add(qf_metrics *m, const char *name, const char *labels, double v) {
    return update(m, name, labels, v, OP_ADD);
}

qf_status qf_metrics_set(qf_metrics *m, const char *name, const char *labels, double v) {
    return update(m, name, labels, v, OP_SET);
}

qf_status qf_metrics_observe(qf_metrics *m, const char *name, const char *labels, double v) {
    return update(m, name, labels, v, OP_OBSERVE);
}

double qf_metrics_get(qf_metrics *m, const char *name, const char *labels) {
    if (!m || !name) return 0;
    double v = 0;
    qf_status st;
    pthread_mutex_lock(&m->mu);
    family *f = find_family(m, name);
    series *s = f ? get_series(f, labels, false, &st) : NULL;
    if (s) v = f->kind == QF_METRIC_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&m->mu);
    return v;
}

double qf_metrics_quantile(qf_metrics *m, const char *name, const char *labels, double q) {
    if (!m || !name || !(q >= 0 && q <= 1)) return NAN;
    double r = NAN;
    qf_status st;
    pthread_mutex_lock(&m->mu);
    family *f = find_family(m, name);
    series *s = f && f->kind == QF_METRIC_HISTOGRAM ? get_series(f, labels, false, &st) : NULL;
    if (s && s->count > 0) {
        double rank = q * (double)s->count, cum = 0;
        for (int b = 0; b <= f->n_bounds; b++) {
            double c = (double)s->buckets[b];
            if (cum + c >= rank && c > 0) {
                /* Interpolate inside [lo, hi]; the +Inf bucket answers with
                 * the highest finite bound, as Prometheus does. */
                if (b == f->n_bounds) {
                    r = f->bounds[f->n_bounds - 1];
                } else {
                    double lo = b == 0 ? (f->bounds[0] > 0 ? 0 : f->bounds[0]) : f->bounds[b - 1];
                    r = lo + (f->bounds[b] - lo) * ((rank - cum) / c);
                }
                break;
            }
            cum += c;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

char *qf_metrics_labels(char *buf, size_t cap, ...) {
    if (!buf || cap == 0) return buf;
    size_t n = 0;
    buf[0] = 0;
    va_list ap;
    va_start(ap, cap);
    const char *k;
    bool first = true;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        if (!v) v = "";
        char tmp[8];
        /* Append piece by piece; stop (truncate) when the buffer is full. */
        const char *parts[3] = {first ? "" : ",", k, "=\""};
        for (int i = 0; i < 3; i++)
            for (const char *p = parts[i]; *p && n + 1 < cap; p++)
                buf[n++] = *p;
        for (const char *p = v; *p; p++) {
            const char *e = tmp;
            if (*p == '\\')
                e = "\\\\";
            else if (*p == '"')
                e = "\\\"";
            else if (*p == '\n')
                e = "\\n";
            else
                tmp[0] = *p, tmp[1] = 0;
            for (; *e && n + 1 < cap; e++)
                buf[n++] = *e;
        }
        if (n + 1 < cap) buf[n++] = '"';
        first = false;
    }
    va_end(ap);
    buf[n] = 0;
    return buf;
}

/* ---- rendering ---- */

typedef struct out {
    char *p;
    size_t len, cap;
    bool oom;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...) {
    if (o->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (k < 0) {
            o->oom = true;
            return;
        }
        if ((size_t)k < o->cap - o->len) {
            o->len += (size_t)k;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)k;
        char *p = qf_realloc(o->p, cap);
        if (!p) {
            o->oom = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

/* Prometheus float: integers without a fraction, otherwise %.17g. */
static void put_num(out *o, double v) {
    if (isinf(v))
        put(o, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        put(o, "NaN");
    else if (v == floor(v) && fabs(v) < 1e15)
        put(o, "%.0f", v);
    else
        put(o, "%.17g", v);
}

static void put_help(out *o, const char *help) {
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            put(o, "\\\\");
        else if (*p == '\n')
            put(o, "\\n");
        else
            put(o, "%c", *p);
    }
}

char *qf_metrics_render(qf_metrics *m, size_t *len) {
    if (len) *len = 0;
    if (!m) return NULL;
    out o = {qf_malloc(4096), 0, 4096, false};
    if (!o.p) return NULL;
    o.p[0] = 0;
    static const char *kinds[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n; i++) {
        family *f = &m->f[i];
        put(&o, "# HELP %s ", f->name);
        put_help(&o, f->help);
        put(&o, "\n# TYPE %s %s\n", f->name, kinds[f->kind]);
        for (int j = 0; j < f->n; j++) {
            series *s = &f->s[j];
            const char *l = s->labels;
            if (f->kind != QF_METRIC_HISTOGRAM) {
                put(&o, l[0] ? "%s{%s} " : "%s%s ", f->name, l);
                put_num(&o, s->value);
                put(&o, "\n");
                continue;
            }
            uint64_t cum = 0;
            for (int b = 0; b <= f->n_bounds; b++) {
                cum += s->buckets[b];
                put(&o, "%s_bucket{%s%sle=\"", f->name, l, l[0] ? "," : "");
                if (b == f->n_bounds)
                    put(&o, "+Inf");
                else
                    put_num(&o, f->bounds[b]);
                put(&o, "\"} %llu\n", (unsigned long long)cum);
            }
            put(&o, l[0] ? "%s_sum{%s} " : "%s_sum%s ", f->name, l);
            put_num(&o, s->sum);
            put(&o, l[0] ? "\n%s_count{%s} %llu\n" : "\n%s_count%s %llu\n", f->name, l,
                (unsigned long long)s->count);
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (o.oom) {
        qf_free(o.p);
        return NULL;
    }
    if (len) *len = o.len;
    return o.p;
}

/* ---- JSON rendering ---- */

/* JSON string body (no quotes) of n bytes of s. Bytes >= 0x80 pass through
 * (UTF-8 stays UTF-8); control characters become \u00XX. */
static void put_json_str(out *o, const char *s, size_t n) {
    put(o, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            put(o, "\\\"");
        else if (c == '\\')
            put(o, "\\\\");
        else if (c == '\n')
            put(o, "\\n");
        else if (c < 0x20)
            put(o, "\\u%04x", c);
        else
            put(o, "%c", c);
    }
    put(o, "\"");
}

/* JSON number; non-finite -> null (the text format's NaN has no JSON form). */
static void put_json_num(out *o, double v) {
    if (!isfinite(v))
        put(o, "null");
    else
        put_num(o, v);
}

/* `k1="v1",k2="v\"2"` -> {"k1":"v1","k2":"v\"2"}. Tolerates a malformed
 * string (a caller may pass any labels text) by stopping at the first piece
 * that does not parse; what parsed so far is kept. */
static void put_json_labels(out *o, const char *l) {
    put(o, "{");
    const char *p = l;
    bool first = true;
    while (*p) {
        const char *eq = strchr(p, '=');
        if (!eq || eq[1] != '"') break;
        const char *key = p;
        size_t klen = (size_t)(eq - p);
        /* unescape the value into a small growing buffer */
        char stack[256], *val = stack;
        size_t vcap = sizeof stack, vlen = 0;
        const char *q = eq + 2;
        bool closed = false, oom = false;
        while (*q) {
            char c = *q++;
            if (c == '"') {
                closed = true;
                break;
            }
            if (c == '\\' && *q) {
                char e = *q++;
                c = e == 'n' ? '\n' : e;
            }
            if (vlen + 1 >= vcap) {
                size_t ncap = vcap * 2;
                char *nv = val == stack ? qf_malloc(ncap) : qf_realloc(val, ncap);
                if (!nv) {
                    oom = true;
                    break;
                }
                if (val == stack) memcpy(nv, stack, vlen);
                val = nv;
                vcap = ncap;
            }
            val[vlen++] = c;
        }
        if (oom) o->oom = true;
        if (closed && !oom) {
            if (!first) put(o, ",");
            put_json_str(o, key, klen);
            put(o, ":");
            put_json_str(o, val, vlen);
            first = false;
        }
        if (val != stack) qf_free(val);
        if (!closed || oom) break;
        p = q;
        if (*p == ',') p++;
    }
    put(o, "}");
}

char *qf_metrics_render_json(qf_metrics *m, size_t *len) {
    if (len) *len = 0;
    if (!m) return NULL;
    out o = {qf_malloc(4096), 0, 4096, false};
    if (!o.p) return NULL;
    o.p[0] = 0;
    static const char *kinds[] = {"counter", "gauge", "histogram"};
    put(&o, "{\"metrics\":[");
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n; i++) {
        family *f = &m->f[i];
        put(&o, "%s{\"name\":", i ? "," : "");
        put_json_str(&o, f->name, strlen(f->name));
        put(&o, ",\"type\":\"%s\",\"help\":", kinds[f->kind]);
        put_json_str(&o, f->help, strlen(f->help));
        put(&o, ",\"series\":[");
        for (int j = 0; j < f->n; j++) {
            series *s = &f->s[j];
            put(&o, "%s{\"labels\":", j ? "," : "");
            put_json_labels(&o, s->labels);
            if (f->kind != QF_METRIC_HISTOGRAM) {
                put(&o, ",\"value\":");
                put_json_num(&o, s->value);
                put(&o, "}");
                continue;
            }
            put(&o, ",\"count\":%llu,\"sum\":", (unsigned long long)s->count);
            put_json_num(&o, s->sum);
            put(&o, ",\"buckets\":[");
            uint64_t cum = 0;
            for (int b = 0; b <= f->n_bounds; b++) {
                cum += s->buckets[b];
                put(&o, "%s{\"le\":", b ? "," : "");
                if (b == f->n_bounds)
                    put(&o, "\"+Inf\"");
                else
                    put_json_num(&o, f->bounds[b]);
                put(&o, ",\"count\":%llu}", (unsigned long long)cum);
            }
            put(&o, "]}");
        }
        put(&o, "]}");
    }
    pthread_mutex_unlock(&m->mu);
    put(&o, "]}");
    if (o.oom) {
        qf_free(o.p);
        return NULL;
    }
    if (len) *len = o.len;
    return o.p;
}
