/* err.h - status codes and error messages.
 *
 * Every fallible call returns a qf_status (QF_OK = 0, failures negative) and,
 * when the caller passes a non-NULL qf_err, fills it with the code and a
 * message that names the input ("model.gguf: tensor blk.0.attn_q: type 99
 * unknown"). Constructors return NULL and fill err instead.
 *
 * qf_err is a plain caller-owned struct; nothing in it needs freeing.
 * Thread-safety: a qf_err belongs to one thread at a time.
 */
#ifndef QF_ERR_H
#define QF_ERR_H

#include <stddef.h>

typedef enum qf_status {
    QF_OK = 0,
    QF_ERR_INVALID = -1,  /* bad argument or input value */
    QF_ERR_IO = -2,       /* open/read/write/mmap failed */
    QF_ERR_FORMAT = -3,   /* file or message malformed, truncated, hostile */
    QF_ERR_UNSUPPORTED = -4, /* valid but not handled (type, arch, version) */
    QF_ERR_NOMEM = -5,    /* allocation failed */
    QF_ERR_RANGE = -6,    /* a size or count beyond a limit (context, queue) */
    QF_ERR_BUSY = -7,     /* queue full; try later */
    QF_ERR_CANCELLED = -8,
    QF_ERR_TIMEOUT = -9,
    QF_ERR_NOT_FOUND = -10,
    QF_ERR_INTERNAL = -11,
} qf_status;

#define QF_ERR_MSG_MAX 512

typedef struct qf_err {
    qf_status code;
    char msg[QF_ERR_MSG_MAX];
    const char *where; /* "file.c:123" of the failing check (debug builds) */
} qf_err;

/* Record code + printf-style message into err (NULL is allowed: no-op).
 * Returns code so callers can write `return qf_err_set(err, ...)`. */
qf_status qf_err_set_at(qf_err *err, const char *where, qf_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefix the message already in err with "prefix: " (e.g. a file name). */
void qf_err_prefix(qf_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reset err to QF_OK with an empty message. NULL is a no-op. */
void qf_err_clear(qf_err *err);

/* Short name of a code, e.g. "format". Never NULL. */
const char *qf_status_name(qf_status code);

#define QF_STR2(x) #x
#define QF_STR(x) QF_STR2(x)
#ifdef NDEBUG
#define QF_ERR_SET(err, code, ...) qf_err_set_at((err), NULL, (code), __VA_ARGS__)
#else
#define QF_ERR_SET(err, code, ...) qf_err_set_at((err), __FILE__ ":" QF_STR(__LINE__), (code), __VA_ARGS__)
#endif

/* Programmer errors only (never bad input): print and abort. */
#define QF_ASSERT(cond)                                                                           \
    do {                                                                                          \
        if (!(cond)) qf_assert_fail(#cond, __FILE__, __LINE__);                                   \
    } while (0)
void qf_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));

#endif
