/* ingest.c - the input walk, plain text and JSON Lines, format dispatch.
 *
 * Files are memory-mapped read-only. Plain text that is valid UTF-8 is used
 * in place (qf_doc.text points into the mapping); otherwise a repaired copy
 * is made. The other formats build their text in a qf_text_out and the
 * mapping is released as soon as extraction ends. Folder walks sort entry
 * names so that the same tree always gives the same input order (resume
 * and chunk numbering depend on it).
 */
#include "pipeline/ingest.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "pipeline/ingest_int.h"

static const struct {
    const char *ext;
    qf_doc_kind kind;
} k_exts[] = {
    {".txt", QF_DOC_TXT},    {".text", QF_DOC_TXT},  {".rst", QF_DOC_TXT},    {".md", QF_DOC_MD},
    {".markdown", QF_DOC_MD}, {".html", QF_DOC_HTML}, {".htm", QF_DOC_HTML},   {".xhtml", QF_DOC_HTML},
    {".pdf", QF_DOC_PDF},    {".docx", QF_DOC_DOCX}, {".jsonl", QF_DOC_JSONL}, {".ndjson", QF_DOC_JSONL},
};

const char *qf_doc_kind_name(qf_doc_kind k) {
    static const char *names[QF_DOC_KIND_COUNT] = {"txt", "md", "html", "pdf", "docx", "jsonl"};
    return k < QF_DOC_KIND_COUNT ? names[k] : "unknown";
}

bool qf_doc_kind_of(const char *path, qf_doc_kind *out) {
    for (size_t i = 0; i < sizeof k_exts / sizeof k_exts[0]; i++) {
        if (qf_str_ends_with_ci(path, k_exts[i].ext)) {
            *out = k_exts[i].kind;
            return true;
        }
    }
    return false;
}

/* ---- text output ---- */

void qf_text_out_text(qf_text_out *o, const char *s, size_t n) {
    if (o->too_big) return;
    if (o->sb.len + n > QF_INGEST_MAX_TEXT) {
        o->too_big = true;
        return;
    }
    if (o->pre) {
        qf_sb_append(&o->sb, s, n);
        return;
    }
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && !(s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r' || s[j] == '\f')) j++;
        qf_sb_append(&o->sb, s + i, j - i);
        if (j < n) {
            /* one space for the run, none at the start of a line */
            char last = o->sb.len ? o->sb.buf[o->sb.len - 1] : '\n';
            if (last != ' ' && last != '\n') qf_sb_putc(&o->sb, ' ');
            while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r' || s[j] == '\f')) j++;
        }
        i = j;
    }
}

void qf_text_out_break(qf_text_out *o, bool para) {
    qf_sb *b = &o->sb;
    while (b->len && (b->buf[b->len - 1] == ' ' || b->buf[b->len - 1] == '\t')) b->buf[--b->len] = 0;
    if (!b->len) return;
    size_t nl = 0;
    while (nl < b->len && nl < 2 && b->buf[b->len - 1 - nl] == '\n') nl++;
    size_t want = para ? 2 : 1;
    while (nl < want) {
        qf_sb_putc(b, '\n');
        nl++;
    }
}

/* ---- walk ---- */

typedef struct walk {
    qf_inputs *out;
    size_t cap_v, cap_skip;
    dev_t *ex_dev;
    ino_t *ex_ino;
    size_t n_ex;
    dev_t *seen_dev; /* files taken, for de-duplication */
    ino_t *seen_ino;
    size_t n_seen, cap_seen;
} walk;

qf_status qf_inputs_add_skip(qf_inputs *in, const char *path, const char *reason) {
    qf_skipped *v = qf_realloc(in->skip, (in->n_skip + 1) * sizeof *v);
    if (!v) return QF_ERR_NOMEM;
    in->skip = v;
    char *p = qf_strdup(path), *r = qf_strdup(reason);
    if (!p || !r) {
        qf_free(p);
        qf_free(r);
        return QF_ERR_NOMEM;
    }
    v[in->n_skip].path = p;
    v[in->n_skip].reason = r;
    in->n_skip++;
    return QF_OK;
}

void qf_inputs_deinit(qf_inputs *in) {
    if (!in) return;
    for (size_t i = 0; i < in->n; i++) qf_free(in->v[i].path);
    for (size_t i = 0; i < in->n_skip; i++) {
        qf_free(in->skip[i].path);
        qf_free(in->skip[i].reason);
    }
    qf_free(in->v);
    qf_free(in->skip);
    memset(in, 0, sizeof *in);
}

static bool looks_binary(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n > 0 && memchr(buf, 0, (size_t)n) != NULL;
}

static bool is_own_file(const char *name) {
    return strstr(name, ".qforge.db") != NULL;
}

static qf_status take_file(walk *w, const char *path, const struct stat *st, bool explicit_) {
    for (size_t i = 0; i < w->n_ex; i++)
        if (w->ex_dev[i] == st->st_dev && w->ex_ino[i] == st->st_ino) return QF_OK;
    for (size_t i = 0; i < w->n_seen; i++)
        if (w->seen_dev[i] == st->st_dev && w->seen_ino[i] == st->st_ino) return QF_OK;
    qf_doc_kind kind;
    if (!qf_doc_kind_of(path, &kind)) {
        if (!explicit_) return qf_inputs_add_skip(w->out, path, "unsupported file type");
        if (looks_binary(path)) return qf_inputs_add_skip(w->out, path, "binary file");
        kind = QF_DOC_TXT;
    }
    if (access(path, R_OK) != 0) return qf_inputs_add_skip(w->out, path, strerror(errno));
    qf_inputs *in = w->out;
    if (in->n == w->cap_v) {
        size_t cap = w->cap_v ? w->cap_v * 2 : 64;
        qf_input *v = qf_realloc(in->v, cap * sizeof *v);
        if (!v) return QF_ERR_NOMEM;
        in->v = v;
        w->cap_v = cap;
    }
    if (w->n_seen == w->cap_seen) {
        size_t cap = w->cap_seen ? w->cap_seen * 2 : 64;
        dev_t *d = qf_realloc(w->seen_dev, cap * sizeof *d);
        if (!d) return QF_ERR_NOMEM;
        w->seen_dev = d;
        ino_t *n = qf_realloc(w->seen_ino, cap * sizeof *n);
        if (!n) return QF_ERR_NOMEM;
        w->seen_ino = n;
        w->cap_seen = cap;
    }
    char *p = qf_strdup(path);
    if (!p) return QF_ERR_NOMEM;
    w->seen_dev[w->n_seen] = st->st_dev;
    w->seen_ino[w->n_seen] = st->st_ino;
    w->n_seen++;
    qf_input *f = &in->v[in->n++];
    f->path = p;
    f->kind = kind;
    f->size = (int64_t)st->st_size;
    f->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    return QF_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static qf_status walk_dir(walk *w, const char *dir, int depth) {
    if (depth > 64) return qf_inputs_add_skip(w->out, dir, "folders nested too deep");
    DIR *d = opendir(dir);
    if (!d) return qf_inputs_add_skip(w->out, dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    qf_status st = QF_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || is_own_file(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = qf_realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = QF_ERR_NOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = qf_strdup(e->d_name))) {
            st = QF_ERR_NOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (st == QF_OK) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && st == QF_OK; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *path = qf_malloc(len);
        if (!path) {
            st = QF_ERR_NOMEM;
            break;
        }
        size_t dl = strlen(dir);
        snprintf(path, len, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", names[i]);
        struct stat ls, fs;
        if (lstat(path, &ls) != 0) {
            st = qf_inputs_add_skip(w->out, path, strerror(errno));
        } else if (S_ISDIR(ls.st_mode)) {
            st = walk_dir(w, path, depth + 1);
        } else if (S_ISLNK(ls.st_mode)) {
            if (stat(path, &fs) != 0) st = qf_inputs_add_skip(w->out, path, "broken symbolic link");
            else if (S_ISREG(fs.st_mode)) st = take_file(w, path, &fs, false);
            /* links to folders are not followed (loops) */
        } else if (S_ISREG(ls.st_mode)) {
            st = take_file(w, path, &ls, false);
        } else {
            st = qf_inputs_add_skip(w->out, path, "not a regular file");
        }
        qf_free(path);
    }
    for (size_t i = 0; i < n; i++) qf_free(names[i]);
    qf_free(names);
    return st;
}

qf_status qf_ingest_walk(const char *const *paths, size_t n_paths, const char *const *exclude, size_t n_exclude,
                         qf_inputs *out, qf_err *err) {
    memset(out, 0, sizeof *out);
    walk w;
    memset(&w, 0, sizeof w);
    w.out = out;
    qf_status st = QF_OK;
    if (n_exclude) {
        w.ex_dev = qf_calloc(n_exclude, sizeof *w.ex_dev);
        w.ex_ino = qf_calloc(n_exclude, sizeof *w.ex_ino);
        if (!w.ex_dev || !w.ex_ino) {
            st = QF_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < n_exclude; i++) {
            struct stat s;
            if (exclude[i] && stat(exclude[i], &s) == 0) {
                w.ex_dev[w.n_ex] = s.st_dev;
                w.ex_ino[w.n_ex] = s.st_ino;
                w.n_ex++;
            }
        }
    }
    for (size_t i = 0; i < n_paths && st == QF_OK; i++) {
        struct stat s;
        if (stat(paths[i], &s) != 0) {
            st = QF_ERR_SET(err, QF_ERR_IO, "%s: %s", paths[i], strerror(errno));
            goto done;
        }
        if (S_ISDIR(s.st_mode)) st = walk_dir(&w, paths[i], 0);
        else if (S_ISREG(s.st_mode)) st = take_file(&w, paths[i], &s, true);
        else {
            st = QF_ERR_SET(err, QF_ERR_IO, "%s: not a file or folder", paths[i]);
            goto done;
        }
    }
    if (st == QF_ERR_NOMEM) QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory listing inputs");
    if (st == QF_OK) { /* a path skipped in a walk but also given (and taken) explicitly is not skipped */
        size_t k = 0;
        for (size_t i = 0; i < out->n_skip; i++) {
            bool drop = false;
            for (size_t j = 0; j < out->n && !drop; j++) drop = !strcmp(out->v[j].path, out->skip[i].path);
            for (size_t j = i + 1; j < out->n_skip && !drop; j++) drop = !strcmp(out->skip[j].path, out->skip[i].path);
            if (drop) {
                qf_free(out->skip[i].path);
                qf_free(out->skip[i].reason);
            } else {
                out->skip[k++] = out->skip[i];
            }
        }
        out->n_skip = k;
    }
done:
    qf_free(w.ex_dev);
    qf_free(w.ex_ino);
    qf_free(w.seen_dev);
    qf_free(w.seen_ino);
    if (st != QF_OK) qf_inputs_deinit(out);
    return st;
}

/* ---- documents ---- */

static qf_status map_file(const char *path, void **map, size_t *len, qf_err *err) {
    *map = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return QF_ERR_SET(err, QF_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return QF_ERR_SET(err, QF_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return QF_ERR_SET(err, QF_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return QF_OK;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return QF_ERR_SET(err, QF_ERR_IO, "%s: mmap: %s", path, strerror(e));
    madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
    *map = m;
    *len = (size_t)st.st_size;
    return QF_OK;
}

static bool has_nul_head(const char *p, size_t n) { return memchr(p, 0, n < 65536 ? n : 65536) != NULL; }

/* Set d->text to s[0,n) if valid UTF-8, else to a repaired copy. */
static qf_status set_text(qf_doc *d, const char *s, size_t n, qf_err *err) {
    if (qf_utf8_count_invalid(s, n) == 0) {
        d->text = s;
        d->len = n;
        return QF_OK;
    }
    size_t bad = 0, len = 0;
    char *r = qf_utf8_repair(s, n, &len, &bad);
    if (!r) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", d->path);
    qf_free(d->own_);
    d->own_ = r;
    d->text = r;
    d->len = len;
    d->n_repaired = bad;
    return QF_OK;
}

static qf_status open_jsonl(qf_doc *d, const qf_ingest_opts *o, qf_err *err) {
    const char *field = o && o->jsonl_field ? o->jsonl_field : "text";
    const char *p = d->map_, *end = p + d->map_len_;
    qf_text_out out;
    memset(&out, 0, sizeof out);
    out.pre = true; /* record text is kept as written */
    size_t *br = NULL;
    int32_t nb = 0, capb = 0;
    int32_t line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        const char *s = p;
        while (s < le && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
        if (s < le) {
            cJSON *j = cJSON_ParseWithLength(s, (size_t)(le - s));
            const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, field) : NULL;
            if (cJSON_IsString(f) && f->valuestring[0]) {
                if (out.sb.len) {
                    if (nb == capb) {
                        capb = capb ? capb * 2 : 64;
                        size_t *nbv = qf_realloc(br, (size_t)capb * sizeof *nbv);
                        if (!nbv) {
                            cJSON_Delete(j);
                            goto oom;
                        }
                        br = nbv;
                    }
                    qf_text_out_text(&out, "\n\n", 2);
                    br[nb++] = out.sb.len;
                }
                qf_text_out_text(&out, f->valuestring, strlen(f->valuestring));
            } else {
                if (d->n_bad_records < 3)
                    qf_warn("%s:%d: %s", d->path, line, j ? "no string field to read (use --jsonl-field)" : "not JSON");
                d->n_bad_records++;
            }
            cJSON_Delete(j);
        }
        p = nl ? nl + 1 : end;
    }
    if (out.sb.oom) goto oom;
    if (out.too_big) {
        qf_free(br);
        qf_sb_free(&out.sb);
        return QF_ERR_SET(err, QF_ERR_RANGE, "%s: text larger than 1 GiB", d->path);
    }
    if (d->n_bad_records > 3) qf_warn("%s: %d lines skipped in all", d->path, d->n_bad_records);
    d->own_ = qf_sb_take(&out.sb, &d->len);
    if (!d->own_) goto oom;
    d->text = d->own_;
    d->breaks_own_ = br;
    d->breaks = br;
    d->n_breaks = nb;
    /* cJSON decodes \u escapes; lone surrogates can still give bad UTF-8 */
    if (qf_utf8_count_invalid(d->text, d->len)) {
        char *own = d->own_;
        d->own_ = NULL;
        size_t old = d->len;
        qf_status st = set_text(d, own, d->len, err);
        if (d->len != old) { /* offsets moved: drop the record breaks rather than misplace them */
            d->n_breaks = 0;
        }
        qf_free(own);
        return st;
    }
    return QF_OK;
oom:
    qf_free(br);
    qf_sb_free(&out.sb);
    return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", d->path);
}

qf_doc *qf_doc_open(const char *path, qf_doc_kind kind, const qf_ingest_opts *o, qf_err *err) {
    qf_doc *d = qf_calloc(1, sizeof *d);
    if (!d) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    d->path = path;
    d->kind = kind;
    if (map_file(path, &d->map_, &d->map_len_, err) != QF_OK) goto fail;
    const char *data = d->map_ ? d->map_ : "";
    size_t n = d->map_len_;
    qf_status st = QF_OK;
    if (kind == QF_DOC_TXT || kind == QF_DOC_MD || kind == QF_DOC_JSONL || kind == QF_DOC_HTML) {
        if (has_nul_head(data, n)) {
            QF_ERR_SET(err, QF_ERR_FORMAT, "%s: binary file (NUL bytes), skipped", path);
            goto fail;
        }
    }
    if (kind == QF_DOC_TXT || kind == QF_DOC_MD) {
        st = set_text(d, data, n, err);
        if (st == QF_OK && d->own_) { /* repaired copy made: the mapping is no longer needed */
            munmap(d->map_, d->map_len_);
            d->map_ = NULL;
        }
        if (st != QF_OK) goto fail;
        return d;
    }
    if (kind == QF_DOC_JSONL) {
        st = open_jsonl(d, o, err);
    } else {
        qf_text_out out;
        memset(&out, 0, sizeof out);
        if (kind == QF_DOC_HTML) st = qf_ingest_html(path, data, n, &out, err);
        else if (kind == QF_DOC_PDF) st = qf_ingest_pdf(path, data, n, &out, &d->n_pages, err);
        else if (kind == QF_DOC_DOCX) st = qf_ingest_docx(path, data, n, &out, err);
        else st = QF_ERR_SET(err, QF_ERR_INVALID, "%s: unknown document kind %d", path, (int)kind);
        if (st == QF_OK && out.too_big) st = QF_ERR_SET(err, QF_ERR_RANGE, "%s: text larger than 1 GiB", path);
        if (st == QF_OK && out.sb.oom) st = QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
        if (st == QF_OK) {
            qf_text_out_break(&out, false);
            size_t len = 0;
            char *t = qf_sb_take(&out.sb, &len);
            if (!t) st = QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
            else {
                st = set_text(d, t, len, err);
                if (d->own_) qf_free(t); /* a repaired copy replaced it */
                else d->own_ = t;
            }
        } else {
            qf_sb_free(&out.sb);
        }
    }
    if (d->map_) {
        munmap(d->map_, d->map_len_);
        d->map_ = NULL;
    }
    if (st != QF_OK) goto fail;
    return d;
fail:
    qf_doc_close(d);
    return NULL;
}

void qf_doc_close(qf_doc *d) {
    if (!d) return;
    if (d->map_) munmap(d->map_, d->map_len_);
    qf_free(d->own_);
    qf_free(d->breaks_own_);
    qf_free(d);
}
