/* ingest.h - find input documents and extract their text.
 *
 * Formats, by file extension (case-insensitive):
 *   .txt .text .md .markdown .rst   read as UTF-8 text (memory-mapped, not copied)
 *   .html .htm .xhtml               libxml2's HTML parser, streamed: text only;
 *                                   script/style/noscript/template/svg content
 *                                   dropped; block elements become paragraph breaks
 *   .pdf                            poppler-glib, page by page from the mapping;
 *                                   pages separated by paragraph breaks
 *   .docx                           libarchive (zip) streams word/document.xml
 *                                   into libxml2's SAX parser: w:t text, w:p
 *                                   paragraphs, w:tab, w:br
 *   .jsonl .ndjson                  one JSON object per line; the text of field
 *                                   `jsonl_field` (default "text"); each record
 *                                   is a hard break chunks never cross
 *
 * Text is always valid UTF-8: invalid sequences are replaced by U+FFFD and
 * counted (n_repaired). A file with NUL bytes in its first 64 KiB is binary
 * and refused (QF_ERR_FORMAT "binary file"). Big plain-text files are
 * memory-mapped and used in place when they need no repair; the other
 * formats are parsed in a streaming way, so only the extracted text is held.
 *
 * Byte ranges of chunks refer to qf_doc.text: for plain text that needs no
 * repair, these are byte offsets in the file itself.
 *
 * Thread-safety: qf_doc_open may run in several threads at once (libxml2 is
 * initialised once; PDF extraction is serialised internally).
 */
#ifndef QF_INGEST_H
#define QF_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef enum qf_doc_kind {
    QF_DOC_TXT = 0,
    QF_DOC_MD,
    QF_DOC_HTML,
    QF_DOC_PDF,
    QF_DOC_DOCX,
    QF_DOC_JSONL,
    QF_DOC_KIND_COUNT
} qf_doc_kind;

const char *qf_doc_kind_name(qf_doc_kind k); /* "txt", "md", ... */
/* Kind by extension; false for an extension not listed above. */
bool qf_doc_kind_of(const char *path, qf_doc_kind *out /* out */);

typedef struct qf_input {
    char *path; /* as found: INPUT itself or INPUT/sub/file (owned) */
    qf_doc_kind kind;
    int64_t size, mtime_ns;
} qf_input;

typedef struct qf_skipped {
    char *path;   /* owned */
    char *reason; /* owned: "unsupported file type", "binary file", "permission denied", ... */
} qf_skipped;

typedef struct qf_inputs {
    qf_input *v;
    size_t n;
    qf_skipped *skip;
    size_t n_skip;
} qf_inputs;

/* Collect the files of paths: a file is taken as given (an unknown
 * extension is read as text, unless it looks binary); a folder is walked
 * recursively in name order, taking files of the known kinds and listing
 * the others in skip (hidden entries, whose name starts with '.', and
 * qforge's own *.qforge.db* files are passed over silently; symlinks to
 * folders are not followed). exclude: files never taken (the output files),
 * matched by device and inode. The same file reached twice is taken once.
 * Errors: IO when a path given does not exist or cannot be read (message
 * names it); NOMEM. out is zeroed first; free with qf_inputs_deinit. */
qf_status qf_ingest_walk(const char *const *paths, size_t n_paths, const char *const *exclude, size_t n_exclude,
                         qf_inputs *out /* out */, qf_err *err);
void qf_inputs_deinit(qf_inputs *in);
/* Append a skipped entry (copies both strings). */
qf_status qf_inputs_add_skip(qf_inputs *in, const char *path, const char *reason);

typedef struct qf_ingest_opts {
    const char *jsonl_field; /* NULL: "text" */
} qf_ingest_opts;

typedef struct qf_doc {
    const char *path;     /* borrowed from the caller of qf_doc_open */
    qf_doc_kind kind;
    const char *text;     /* UTF-8, len bytes; NOT NUL-terminated; borrowed until qf_doc_close */
    size_t len;
    const size_t *breaks; /* n_breaks ascending hard-break offsets (JSONL records) */
    int32_t n_breaks;
    size_t n_repaired;    /* invalid UTF-8 sequences replaced */
    int32_t n_bad_records; /* JSONL lines that were not JSON or lacked the field */
    int32_t n_pages;      /* PDF pages */
    /* private */
    void *map_;
    size_t map_len_;
    char *own_;
    size_t *breaks_own_;
} qf_doc;

/* Extract the text of path (kind from qf_doc_kind_of or given). Errors:
 * IO (open/read/mmap), FORMAT (binary file, broken PDF/DOCX/HTML, DOCX
 * without word/document.xml), UNSUPPORTED (encrypted PDF), RANGE (text over
 * 1 GiB), NOMEM. Messages start with the path. */
qf_doc *qf_doc_open(const char *path, qf_doc_kind kind, const qf_ingest_opts *o, qf_err *err);
void qf_doc_close(qf_doc *d); /* NULL is a no-op */

#endif
