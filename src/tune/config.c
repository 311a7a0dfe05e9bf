/* config.c - the flat YAML config file, read with libyaml's event parser.
 *
 * Accepted event stream: an empty stream, or one document holding one
 * mapping whose keys and values are all scalars. Anything else (a
 * sequence, a nested mapping, a second document) is an error with the line
 * it starts on. Values are checked strictly: the whole scalar must be the
 * number, in range. Writing is plain text (keys in a fixed order, strings
 * double-quoted with escapes) so that a header comment can go on top;
 * libyaml's emitter has no comments.
 */
#include "tune/config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "base/mem.h"

void qf_config_init(qf_config *c) {
    memset(c, 0, sizeof *c);
    c->kv_type = QF_TYPE_F16;
}

static const char *const k_known =
    "version, threads, parallel, batch, ctx, kv_type, model, tokens_per_s";

static qf_status int_value(const char *name, size_t line, const char *key, const char *v, long lo,
                           long hi, long *out, qf_err *err) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s:%zu: %s: '%s' is not an integer in %ld..%ld",
                          name, line, key, v, lo, hi);
    *out = x;
    return QF_OK;
}

static qf_status set_key(qf_config *c, const char *key, const char *v, const char *name,
                         size_t line, qf_err *err) {
    long x = 0;
    qf_status st;
    if (!strcmp(key, "version")) {
        if ((st = int_value(name, line, key, v, 1, 1000000, &x, err))) return st;
        if (x != 1)
            return QF_ERR_SET(err, QF_ERR_INVALID,
                              "%s:%zu: version: %ld is not supported (this qforge reads 1)", name,
                              line, x);
    } else if (!strcmp(key, "threads")) {
        if ((st = int_value(name, line, key, v, 1, 1024, &x, err))) return st;
        c->threads = (int)x;
    } else if (!strcmp(key, "parallel")) {
        if ((st = int_value(name, line, key, v, 1, 256, &x, err))) return st;
        c->parallel = (int32_t)x;
    } else if (!strcmp(key, "batch")) {
        if ((st = int_value(name, line, key, v, 1, 1 << 20, &x, err))) return st;
        c->batch = (int32_t)x;
    } else if (!strcmp(key, "ctx")) {
        if ((st = int_value(name, line, key, v, 64, 1 << 24, &x, err))) return st;
        c->ctx = (int32_t)x;
    } else if (!strcmp(key, "kv_type")) {
        if (!strcmp(v, "f16"))
            c->kv_type = QF_TYPE_F16;
        else if (!strcmp(v, "q8_0"))
            c->kv_type = QF_TYPE_Q8_0;
        else if (!strcmp(v, "f32"))
            c->kv_type = QF_TYPE_F32;
        else
            return QF_ERR_SET(err, QF_ERR_INVALID, "%s:%zu: kv_type: '%s' is not f16, q8_0 or f32",
                              name, line, v);
        c->has_kv_type = true;
    } else if (!strcmp(key, "model")) {
        if (strlen(v) >= sizeof c->model)
            return QF_ERR_SET(err, QF_ERR_INVALID, "%s:%zu: model: longer than %zu bytes", name,
                              line, sizeof c->model - 1);
        snprintf(c->model, sizeof c->model, "%s", v);
    } else if (!strcmp(key, "tokens_per_s")) {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || d < 0 || d > 1e9)
            return QF_ERR_SET(err, QF_ERR_INVALID,
                              "%s:%zu: tokens_per_s: '%s' is not a number in 0..1e9", name, line,
                              v);
        c->tokens_per_s = d;
    } else {
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s:%zu: unknown key '%s' (known: %s)", name, line,
                          key, k_known);
    }
    return QF_OK;
}

qf_status qf_config_parse(const char *text, size_t len, const char *name, qf_config *out,
                          qf_err *err) {
    qf_config_init(out);
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps))
        return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", name);
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    qf_status st = QF_OK;
    /* state: 0 before the mapping, 1 expecting a key, 2 expecting a value, 3 after the mapping */
    int state = 0;
    char *key = NULL, seen[16][16];
    int n_seen = 0;
    for (bool done = false; !done && st == QF_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: YAML syntax error: %s", name,
                            ps.problem_mark.line + 1, ps.problem ? ps.problem : "unknown");
            break;
        }
        size_t line = ev.start_mark.line + 1;
        switch (ev.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
            if (ev.type == YAML_DOCUMENT_START_EVENT && state == 3)
                st = QF_ERR_SET(err, QF_ERR_FORMAT,
                                "%s:%zu: a second YAML document: one mapping expected", name, line);
            break;
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_MAPPING_START_EVENT:
            if (state == 0)
                state = 1;
            else
                st = QF_ERR_SET(err, QF_ERR_FORMAT,
                                "%s:%zu: %s: expected a single value, not a mapping", name, line,
                                key ? key : "?");
            break;
        case YAML_MAPPING_END_EVENT:
            state = 3;
            break;
        case YAML_SEQUENCE_START_EVENT:
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: %s: expected a single value, not a list",
                            name, line, state == 2 && key ? key : "top level");
            break;
        case YAML_ALIAS_EVENT:
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: aliases are not supported", name, line);
            break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            if (state == 1) {
                for (int i = 0; i < n_seen; i++)
                    if (!strcmp(seen[i], v)) {
                        st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: %s: given twice", name, line,
                                        v);
                        break;
                    }
                if (st) break;
                key = qf_strdup(v);
                if (!key) {
                    st = QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", name);
                    break;
                }
                state = 2;
            } else if (state == 2) {
                st = set_key(out, key, v, name, line, err);
                if (st == QF_OK && n_seen < 16) snprintf(seen[n_seen++], sizeof seen[0], "%s", key);
                qf_free(key);
                key = NULL;
                state = 1;
            } else if (state == 0 && v[0] == 0 && ev.data.scalar.plain_implicit) {
                state = 3; /* an empty document ("---" alone) */
            } else {
                st = QF_ERR_SET(err, QF_ERR_FORMAT,
                                "%s:%zu: expected a mapping of keys (threads: 2, ...), got '%.40s'",
                                name, line, v);
            }
            break;
        }
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    qf_free(key);
    yaml_parser_delete(&ps);
    if (st == QF_OK)
        snprintf(out->path, sizeof out->path, "%s", name);
    else {
        qf_config_init(out);
    }
    return st;
}

qf_status qf_config_load(const char *path, qf_config *out, qf_err *err) {
    qf_config_init(out);
    FILE *f = fopen(path, "rb");
    if (!f) return QF_ERR_SET(err, QF_ERR_IO, "config %s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0, r;
    char *buf = qf_malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            if (cap >= ((size_t)1 << 20)) {
                qf_free(buf);
                fclose(f);
                return QF_ERR_SET(err, QF_ERR_FORMAT, "config %s: larger than 1 MiB", path);
            }
            char *nb = qf_realloc(buf, cap * 2);
            if (!nb) qf_free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf) return QF_ERR_SET(err, QF_ERR_NOMEM, "config %s: out of memory", path);
    if (bad) {
        qf_free(buf);
        return QF_ERR_SET(err, QF_ERR_IO, "config %s: read error", path);
    }
    qf_status st = qf_config_parse(buf, n, path, out, err);
    qf_free(buf);
    return st;
}

/* ---- writing ---- */

static void put_quoted(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static qf_status mkdir_parents(const char *path, qf_err *err) {
    /* the parent and its parent: ~/.config/qforge/config.yaml needs both at most */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return QF_OK;
    *slash = 0;
    struct stat st;
    if (stat(dir, &st) == 0) return QF_OK;
    char up[1024];
    snprintf(up, sizeof up, "%s", dir);
    char *s2 = strrchr(up, '/');
    if (s2 && s2 != up) {
        *s2 = 0;
        if (stat(up, &st) != 0 && mkdir(up, 0755) != 0 && errno != EEXIST)
            return QF_ERR_SET(err, QF_ERR_IO, "config %s: cannot create %s: %s", path, up,
                              strerror(errno));
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return QF_ERR_SET(err, QF_ERR_IO, "config %s: cannot create %s: %s", path, dir,
                          strerror(errno));
    return QF_OK;
}

qf_status qf_config_save(const char *path, const qf_config *c, const char *comment, qf_err *err) {
    if (c->threads < 0 || c->threads > 1024 || c->parallel < 0 || c->parallel > 256 ||
        c->batch < 0 || c->batch > (1 << 20) ||
        (c->ctx != 0 && (c->ctx < 64 || c->ctx > (1 << 24))) || c->tokens_per_s < 0 ||
        !isfinite(c->tokens_per_s) ||
        (c->has_kv_type && c->kv_type != QF_TYPE_F16 && c->kv_type != QF_TYPE_Q8_0 &&
         c->kv_type != QF_TYPE_F32))
        return QF_ERR_SET(err, QF_ERR_INVALID, "config %s: a value is out of range", path);
    if (strlen(path) + 8 >= 1024)
        return QF_ERR_SET(err, QF_ERR_INVALID, "config %s: path too long", path);
    qf_status st = mkdir_parents(path, err);
    if (st != QF_OK) return st;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return QF_ERR_SET(err, QF_ERR_IO, "config %s: cannot write %s: %s", path, tmp,
                          strerror(errno));
    if (comment) {
        const char *p = comment;
        while (*p) {
            size_t n = strcspn(p, "\n");
            fprintf(f, "# %.*s\n", (int)n, p);
            p += n;
            if (*p == '\n') p++;
        }
    }
    fprintf(f, "version: 1\n");
    if (c->threads) fprintf(f, "threads: %d\n", c->threads);
    if (c->parallel) fprintf(f, "parallel: %d\n", (int)c->parallel);
    if (c->batch) fprintf(f, "batch: %d\n", (int)c->batch);
    if (c->ctx) fprintf(f, "ctx: %d\n", (int)c->ctx);
    if (c->has_kv_type)
        fprintf(f, "kv_type: %s\n",
                c->kv_type == QF_TYPE_Q8_0  ? "q8_0"
                : c->kv_type == QF_TYPE_F32 ? "f32"
                                            : "f16");
    if (c->model[0]) {
        fputs("model: ", f);
        put_quoted(f, c->model);
        fputc('\n', f);
    }
    if (c->tokens_per_s > 0) fprintf(f, "tokens_per_s: %.3f\n", c->tokens_per_s);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0) bad = true;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return QF_ERR_SET(err, QF_ERR_IO, "config %s: cannot write: %s", path, strerror(e));
    }
    return QF_OK;
}

char *qf_config_default_path(void) {
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    char buf[1200];
    if (xdg && xdg[0] == '/') /* the XDG spec ignores relative values */
        snprintf(buf, sizeof buf, "%s/qforge/config.yaml", xdg);
    else if (home && *home)
        snprintf(buf, sizeof buf, "%s/.config/qforge/config.yaml", home);
    else
        return NULL;
    return qf_strdup(buf);
}

qf_status qf_config_resolve(const char *path, bool use_default, qf_config *out, bool *found,
                            qf_err *err) {
    qf_config_init(out);
    *found = false;
    if (path) {
        qf_status st = qf_config_load(path, out, err);
        *found = st == QF_OK;
        return st;
    }
    if (!use_default) return QF_OK;
    char *def = qf_config_default_path();
    if (!def) return QF_OK;
    struct stat sb;
    qf_status st = QF_OK;
    if (stat(def, &sb) == 0) {
        st = qf_config_load(def, out, err);
        *found = st == QF_OK;
    }
    qf_free(def);
    return st;
}
