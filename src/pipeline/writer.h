/* writer.h - dataset records and crash-safe JSON Lines files.
 *
 * Records (one JSON object per line, UTF-8, invalid bytes replaced by
 * U+FFFD, no raw newlines inside a line):
 *   qa        {"id","question","answer","source":{"path","chunk","start",
 *             "end"},"model","pass"[,"score"]}            (DESIGN.md)
 *   alpaca    {"instruction": Q, "input": "", "output": A}
 *   sharegpt  {"conversations":[{"from":"human","value":Q},{"from":"gpt","value":A}]}
 *   openai    {"messages":[{"role":"user","content":Q},{"role":"assistant","content":A}]}
 * Rejected pairs (curation) are always written in the qa form with their
 * score.
 *
 * A qf_writer appends whole lines to a file that only ever grows by whole
 * lines: bytes are buffered, and qf_writer_flush writes them and fsyncs;
 * the job store records the flushed size after that, in the same step that
 * marks the lines' chunks done. At open, the file is cut back to the size
 * the store last recorded, which removes a partial line or lines whose
 * chunk was not recorded done (they will be written again): every line
 * appears exactly once. The file is locked (flock) against a second
 * writer.
 *
 * Errors name the path: IO ("disk full", "cannot create", ...), BUSY
 * (locked by another process).
 * Thread-safety: one thread at a time per writer.
 */
#ifndef QF_WRITER_H
#define QF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "pipeline/store.h"

typedef enum qf_format { QF_FORMAT_QA = 0, QF_FORMAT_ALPACA, QF_FORMAT_SHAREGPT, QF_FORMAT_OPENAI } qf_format;

bool qf_format_from_name(const char *name, qf_format *out /* out */);
const char *qf_format_name(qf_format f);

/* One record line for p, "\n"-terminated; malloc'ed (qf_free), NULL on
 * allocation failure. */
char *qf_format_record(qf_format f, const qf_pair *p, size_t *len /* out */);

typedef struct qf_writer qf_writer;

/* Open (create) path for appending. committed >= 0: the size the store
 * recorded; a longer file is cut back to it; a shorter one (lost lines) is
 * QF_ERR_FORMAT, so the caller rewrites the whole file. committed < 0: start
 * empty (truncate). */
qf_writer *qf_writer_open(const char *path, int64_t committed, qf_err *err);
/* Buffer bytes (whole lines). */
qf_status qf_writer_append(qf_writer *w, const char *data, size_t len, qf_err *err);
/* Write the buffer and fsync. On failure the file is cut back to its size
 * before this flush (no partial line) and the buffer is dropped. */
qf_status qf_writer_flush(qf_writer *w, qf_err *err);
/* Cut the file back to size (<= qf_writer_size), e.g. when recording the
 * flush in the store failed. */
qf_status qf_writer_truncate(qf_writer *w, int64_t size, qf_err *err);
int64_t qf_writer_size(const qf_writer *w);   /* bytes flushed */
size_t qf_writer_pending(const qf_writer *w); /* bytes buffered */
const char *qf_writer_path(const qf_writer *w);
void qf_writer_close(qf_writer *w); /* drops unflushed bytes; NULL is a no-op */

#endif
