/* ingest_docx.c - DOCX text: libarchive (zip) + libxml2 SAX2, streamed.
 *
 * A .docx is a zip; its body is word/document.xml (WordprocessingML). The
 * entry is decompressed in 64 KiB blocks that go straight into an XML push
 * parser, so neither the whole XML nor a tree is ever held. Text lives in
 * w:t elements; w:p ends a paragraph, w:tab is a tab, w:br/w:cr a line
 * break; deleted text (w:delText) and field codes (w:instrText) are not
 * w:t and so are left out. External entities and the network stay off
 * (libxml2 defaults + XML_PARSE_NONET); entity expansion limits apply.
 */
#include <archive.h>
#include <archive_entry.h>
#include <libxml/parser.h>
#include <string.h>

#include "pipeline/ingest_int.h"

typedef struct docx_ctx {
    qf_text_out *out;
    int in_t;
} docx_ctx;

static void on_start(void *ud, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri, int nns,
                     const xmlChar **ns, int nattr, int ndef, const xmlChar **attrs) {
    (void)prefix, (void)uri, (void)nns, (void)ns, (void)nattr, (void)ndef, (void)attrs;
    docx_ctx *c = ud;
    const char *n = (const char *)local;
    if (!strcmp(n, "t")) c->in_t++;
    else if (!strcmp(n, "tab")) qf_text_out_text(c->out, "\t", 1);
    else if (!strcmp(n, "br") || !strcmp(n, "cr")) qf_text_out_break(c->out, false);
}

static void on_end(void *ud, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri) {
    (void)prefix, (void)uri;
    docx_ctx *c = ud;
    const char *n = (const char *)local;
    if (!strcmp(n, "t")) {
        if (c->in_t) c->in_t--;
    } else if (!strcmp(n, "p")) {
        qf_text_out_break(c->out, true);
    }
}

static void on_chars(void *ud, const xmlChar *ch, int len) {
    docx_ctx *c = ud;
    if (c->in_t && len > 0) {
        /* w:t text is literal, spaces included (xml:space="preserve") */
        bool pre = c->out->pre;
        c->out->pre = true;
        qf_text_out_text(c->out, (const char *)ch, (size_t)len);
        c->out->pre = pre;
    }
}

static void on_silent(void *ud, const char *msg, ...) {
    (void)ud;
    (void)msg;
}

qf_status qf_ingest_docx(const char *path, const char *data, size_t n, qf_text_out *out, qf_err *err) {
    qf_ingest_xml_init();
    struct archive *a = archive_read_new();
    if (!a) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
    archive_read_support_format_zip(a);
    qf_status st = QF_OK;
    if (archive_read_open_memory(a, data, n) != ARCHIVE_OK) {
        st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s: not a DOCX (zip) file: %s", path, archive_error_string(a));
        archive_read_free(a);
        return st;
    }
    bool found = false;
    struct archive_entry *e;
    int rc;
    while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        if (!name || strcmp(name, "word/document.xml")) {
            archive_read_data_skip(a);
            continue;
        }
        found = true;
        xmlSAXHandler sax;
        memset(&sax, 0, sizeof sax);
        sax.initialized = XML_SAX2_MAGIC;
        sax.startElementNs = on_start;
        sax.endElementNs = on_end;
        sax.characters = on_chars;
        sax.cdataBlock = on_chars;
        sax.warning = on_silent;
        sax.error = on_silent;
        docx_ctx c = {out, 0};
        xmlParserCtxtPtr ctx = xmlCreatePushParserCtxt(&sax, &c, NULL, 0, "word/document.xml");
        if (!ctx) {
            st = QF_ERR_SET(err, QF_ERR_NOMEM, "%s: cannot create the XML parser", path);
            break;
        }
        xmlCtxtUseOptions(ctx, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        char buf[65536];
        la_ssize_t r;
        while ((r = archive_read_data(a, buf, sizeof buf)) > 0 && !out->too_big) {
            if (xmlParseChunk(ctx, buf, (int)r, 0) != 0 && !ctx->wellFormed) break;
        }
        if (r < 0) {
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s: broken zip entry word/document.xml: %s", path,
                            archive_error_string(a));
        } else {
            xmlParseChunk(ctx, NULL, 0, 1);
            if (!ctx->wellFormed && out->sb.len == 0)
                st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s: word/document.xml is not well-formed XML", path);
        }
        xmlFreeParserCtxt(ctx);
        break;
    }
    if (st == QF_OK && !found) {
        if (rc != ARCHIVE_OK && rc != ARCHIVE_EOF)
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s: broken zip: %s", path, archive_error_string(a));
        else
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s: no word/document.xml: not a DOCX file", path);
    }
    archive_read_free(a);
    return st;
}
