/* err.c - qf_err helpers. Messages are truncated, never overflowed. */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

qf_status qf_err_set_at(qf_err *err, const char *where, qf_status code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    err->where = where;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void qf_err_prefix(qf_err *err, const char *fmt, ...) {
    if (!err) return;
    char pre[QF_ERR_MSG_MAX], old[QF_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* truncation is acceptable for messages */
    size_t n = strlen(pre);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, pre, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 3;
    size_t m = strnlen(old, room);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = 0;
}

void qf_err_clear(qf_err *err) {
    if (!err) return;
    err->code = QF_OK;
    err->msg[0] = 0;
    err->where = NULL;
}

const char *qf_status_name(qf_status code) {
    switch (code) {
    case QF_OK: return "ok";
    case QF_ERR_INVALID: return "invalid";
    case QF_ERR_IO: return "io";
    case QF_ERR_FORMAT: return "format";
    case QF_ERR_UNSUPPORTED: return "unsupported";
    case QF_ERR_NOMEM: return "nomem";
    case QF_ERR_RANGE: return "range";
    case QF_ERR_BUSY: return "busy";
    case QF_ERR_CANCELLED: return "cancelled";
    case QF_ERR_TIMEOUT: return "timeout";
    case QF_ERR_NOT_FOUND: return "not-found";
    case QF_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

void qf_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "qforge: assertion failed: %s (%s:%d)\n", cond, file, line);
    abort();
}
