/* writer.c - record formatting and the append-only dataset file.
 *
 * Records are built with cJSON (which escapes quotes, backslashes and
 * control characters, so a record is always one line) from texts made valid
 * UTF-8 first. The file descriptor is opened without O_APPEND so that a
 * failed flush can be undone with ftruncate to the last good size; writes
 * go through qf_write_all at the tracked offset.
 */
#include "pipeline/writer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "pipeline/pipeline_int.h"

bool qf_format_from_name(const char *name, qf_format *out) {
    static const char *names[] = {"qa", "alpaca", "sharegpt", "openai"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(name, names[i])) {
            *out = (qf_format)i;
            return true;
        }
    }
    return false;
}

const char *qf_format_name(qf_format f) {
    switch (f) {
    case QF_FORMAT_QA: return "qa";
    case QF_FORMAT_ALPACA: return "alpaca";
    case QF_FORMAT_SHAREGPT: return "sharegpt";
    case QF_FORMAT_OPENAI: return "openai";
    }
    return "qa";
}

/* Add a string member, repairing invalid UTF-8. */
static bool add_str(cJSON *o, const char *key, const char *s) {
    size_t n = strlen(s ? s : "");
    cJSON *v;
    if (s && qf_utf8_count_invalid(s, n) == 0) {
        v = cJSON_CreateString(s);
    } else {
        char *r = qf_utf8_repair(s ? s : "", n, &n, NULL);
        if (!r) return false;
        v = cJSON_CreateString(r);
        qf_free(r);
    }
    if (!v) return false;
    cJSON_AddItemToObject(o, key, v);
    return true;
}

static cJSON *turn(const char *k1, const char *v1, const char *k2, const char *v2) {
    cJSON *t = cJSON_CreateObject();
    if (!t || !add_str(t, k1, v1) || !add_str(t, k2, v2)) {
        cJSON_Delete(t);
        return NULL;
    }
    return t;
}

char *qf_format_record(qf_format f, const qf_pair *p, size_t *len) {
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    if (ok && p->status == QF_PAIR_REJECTED) f = QF_FORMAT_QA;
    if (ok && f == QF_FORMAT_QA) {
        ok = add_str(o, "id", p->id) && add_str(o, "question", p->question) && add_str(o, "answer", p->answer);
        cJSON *src = ok ? cJSON_AddObjectToObject(o, "source") : NULL;
        ok = ok && src && add_str(src, "path", p->path) && cJSON_AddNumberToObject(src, "chunk", p->chunk) &&
             cJSON_AddNumberToObject(src, "start", (double)p->start) &&
             cJSON_AddNumberToObject(src, "end", (double)p->end);
        ok = ok && add_str(o, "model", p->model ? p->model : "") && cJSON_AddNumberToObject(o, "pass", p->pass);
        if (ok && p->score >= 0) ok = cJSON_AddNumberToObject(o, "score", p->score) != NULL;
    } else if (ok && f == QF_FORMAT_ALPACA) {
        ok = add_str(o, "instruction", p->question) && add_str(o, "input", "") && add_str(o, "output", p->answer);
    } else if (ok) {
        bool sg = f == QF_FORMAT_SHAREGPT;
        cJSON *arr = cJSON_AddArrayToObject(o, sg ? "conversations" : "messages");
        cJSON *a = sg ? turn("from", "human", "value", p->question) : turn("role", "user", "content", p->question);
        cJSON *b = sg ? turn("from", "gpt", "value", p->answer) : turn("role", "assistant", "content", p->answer);
        ok = arr && a && b;
        if (ok) {
            cJSON_AddItemToArray(arr, a);
            cJSON_AddItemToArray(arr, b);
        } else {
            cJSON_Delete(a);
            cJSON_Delete(b);
        }
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *line = qf_malloc(n + 2);
    if (line) {
        memcpy(line, s, n);
        line[n] = '\n';
        line[n + 1] = 0;
        *len = n + 1;
    }
    cJSON_free(s);
    return line;
}

/* ---- file ---- */

struct qf_writer {
    char *path;
    int fd;
    bool regular;
    int64_t size; /* flushed */
    qf_sb buf;
};

static qf_status io_fail(qf_err *err, const char *path, const char *what, int e) {
    if (e == ENOSPC || e == EDQUOT || e == EFBIG)
        return QF_ERR_SET(err, QF_ERR_IO, "%s: %s: disk full (%s)", path, what, strerror(e));
    return QF_ERR_SET(err, QF_ERR_IO, "%s: %s: %s", path, what, strerror(e));
}

qf_writer *qf_writer_open(const char *path, int64_t committed, qf_err *err) {
    qf_writer *w = qf_calloc(1, sizeof *w);
    if (!w || !(w->path = qf_strdup(path))) {
        qf_free(w);
        QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    w->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        io_fail(err, path, "cannot open for writing", errno);
        goto fail;
    }
    struct stat st;
    if (fstat(w->fd, &st) != 0) {
        io_fail(err, path, "stat", errno);
        goto fail;
    }
    w->regular = S_ISREG(st.st_mode);
    if (w->regular && flock(w->fd, LOCK_EX | LOCK_NB) != 0) {
        QF_ERR_SET(err, QF_ERR_BUSY, "%s: another qforge process is writing this file", path);
        goto fail;
    }
    if (committed < 0) committed = 0;
    if (w->regular) {
        if (st.st_size < committed) {
            QF_ERR_SET(err, QF_ERR_FORMAT, "%s: shorter (%lld bytes) than the job recorded (%lld)", path,
                       (long long)st.st_size, (long long)committed);
            goto fail;
        }
        if (st.st_size > committed && ftruncate(w->fd, committed) != 0) {
            io_fail(err, path, "truncate", errno);
            goto fail;
        }
    }
    w->size = w->regular ? committed : 0;
    return w;
fail:
    qf_writer_close(w);
    return NULL;
}

qf_status qf_writer_append(qf_writer *w, const char *data, size_t len, qf_err *err) {
    qf_sb_append(&w->buf, data, len);
    if (w->buf.oom) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory buffering output", w->path);
    return QF_OK;
}

qf_status qf_writer_flush(qf_writer *w, qf_err *err) {
    if (!w->buf.len) return QF_OK;
    int e = 0;
    if (w->regular && lseek(w->fd, w->size, SEEK_SET) < 0) e = errno;
    if (!e && qf_write_all(w->fd, w->buf.buf, w->buf.len) != 0) e = errno;
    if (!e && w->regular && fsync(w->fd) != 0) e = errno;
    if (e) {
        if (w->regular && ftruncate(w->fd, w->size) != 0) { /* best effort: no partial line */
        }
        w->buf.len = 0;
        return io_fail(err, w->path, "write", e);
    }
    w->size += (int64_t)w->buf.len;
    w->buf.len = 0;
    return QF_OK;
}

qf_status qf_writer_truncate(qf_writer *w, int64_t size, qf_err *err) {
    if (size > w->size) return QF_ERR_SET(err, QF_ERR_INVALID, "%s: cannot grow by truncation", w->path);
    if (w->regular && ftruncate(w->fd, size) != 0) return io_fail(err, w->path, "truncate", errno);
    w->size = size;
    return QF_OK;
}

int64_t qf_writer_size(const qf_writer *w) { return w->size; }
size_t qf_writer_pending(const qf_writer *w) { return w->buf.len; }
const char *qf_writer_path(const qf_writer *w) { return w->path; }

void qf_writer_close(qf_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd); /* also releases the flock */
    qf_sb_free(&w->buf);
    qf_free(w->path);
    qf_free(w);
}
