/* ingest_int.h - text extractors shared by ingest*.c (not public).
 *
 * Each extractor appends UTF-8 text to a qf_text_out, which collapses
 * whitespace runs (outside preformatted text) and turns structure into line
 * and paragraph breaks. Returns QF_OK or an error naming path.
 */
#ifndef QF_INGEST_INT_H
#define QF_INGEST_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "pipeline/pipeline_int.h"

#define QF_INGEST_MAX_TEXT ((size_t)1 << 30)

typedef struct qf_text_out {
    qf_sb sb;
    bool pre;       /* keep whitespace as is */
    bool too_big;   /* over QF_INGEST_MAX_TEXT: further text dropped */
} qf_text_out;

/* Append text, collapsing whitespace runs into one space unless out->pre. */
void qf_text_out_text(qf_text_out *o, const char *s, size_t n);
/* End the current line (para false) or paragraph (para true): trailing
 * spaces removed, then "\n" or "\n\n" unless already there. Nothing at the
 * start of the text. */
void qf_text_out_break(qf_text_out *o, bool para);

/* Call once before using libxml2 from several threads. */
void qf_ingest_xml_init(void);

qf_status qf_ingest_html(const char *path, const char *data, size_t n, qf_text_out *out, qf_err *err);
qf_status qf_ingest_pdf(const char *path, const char *data, size_t n, qf_text_out *out, int32_t *n_pages,
                        qf_err *err);
qf_status qf_ingest_docx(const char *path, const char *data, size_t n, qf_text_out *out, qf_err *err);

#endif
