/* ingest_pdf.c - PDF text with poppler-glib, one page at a time.
 *
 * The file mapping is wrapped in a static GBytes (no copy) and opened with
 * poppler_document_new_from_bytes. Each page's text is fetched, appended
 * and freed before the next, so only one page's text is held beside the
 * result. PDF text comes as visual lines; a line that does not end a
 * sentence is joined to the next with a space (so the chunker sees whole
 * sentences), lines that do end one keep their break, and pages end a
 * paragraph. poppler's global state is not documented as thread-safe, so
 * extraction is serialised with a mutex.
 */
#include <poppler.h>
#include <pthread.h>
#include <string.h>

#include "pipeline/ingest_int.h"

static pthread_mutex_t g_pdf_lock = PTHREAD_MUTEX_INITIALIZER;

static bool ends_sentence(const char *s, size_t n) {
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    if (!n) return true;
    char c = s[n - 1];
    return c == '.' || c == '!' || c == '?' || c == ':' || c == '"';
}

static void add_page(qf_text_out *out, const char *t) {
    const char *p = t;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        qf_text_out_text(out, p, n);
        if (!nl) break;
        if (ends_sentence(p, n)) qf_text_out_break(out, false);
        else qf_text_out_text(out, " ", 1);
        p = nl + 1;
    }
    qf_text_out_break(out, true);
}

qf_status qf_ingest_pdf(const char *path, const char *data, size_t n, qf_text_out *out, int32_t *n_pages,
                        qf_err *err) {
    *n_pages = 0;
    if (n < 5 || memcmp(data, "%PDF", 4) != 0)
        return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: not a PDF file (no %%PDF header)", path);
    pthread_mutex_lock(&g_pdf_lock);
    qf_status st = QF_OK;
    GBytes *bytes = g_bytes_new_static(data, n);
    GError *ge = NULL;
    PopplerDocument *doc = poppler_document_new_from_bytes(bytes, NULL, &ge);
    if (!doc) {
        if (ge && ge->domain == POPPLER_ERROR && ge->code == POPPLER_ERROR_ENCRYPTED)
            st = QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "%s: PDF is password-protected", path);
        else
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s: cannot read PDF: %s", path, ge ? ge->message : "unknown error");
        goto done;
    }
    int np = poppler_document_get_n_pages(doc);
    for (int i = 0; i < np && !out->too_big; i++) {
        PopplerPage *pg = poppler_document_get_page(doc, i);
        if (!pg) continue;
        char *t = poppler_page_get_text(pg);
        if (t) add_page(out, t);
        g_free(t);
        g_object_unref(pg);
    }
    *n_pages = np;
    g_object_unref(doc);
done:
    if (ge) g_error_free(ge);
    g_bytes_unref(bytes);
    pthread_mutex_unlock(&g_pdf_lock);
    return st;
}
