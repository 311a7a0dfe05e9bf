/* ingest_html.c - HTML to text with libxml2's SAX push parser.
 *
 * The document is fed to the parser in 64 KiB pieces straight from the
 * file mapping; no tree is built. Character data is kept unless inside an
 * element whose content is not prose (script, style, ...): a depth counter
 * of such open elements gates it. Block-level elements end the current
 * paragraph; br and list items end the line. libxml2 decodes entities and
 * converts the declared/sniffed encoding to UTF-8; network access and error
 * output are off (HTML_PARSE_NONET | NOERROR | NOWARNING), and its recovery
 * mode accepts the tag soup real pages are made of.
 */
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "pipeline/ingest_int.h"

static pthread_once_t g_xml_once = PTHREAD_ONCE_INIT;

static void xml_init_once(void) { xmlInitParser(); }

void qf_ingest_xml_init(void) { pthread_once(&g_xml_once, xml_init_once); }

typedef struct html_ctx {
    qf_text_out *out;
    int skip;     /* open non-prose elements */
    int pre;      /* open <pre>/<textarea> */
} html_ctx;

static bool in_list(const char *name, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (!strcasecmp(name, list[i])) return true;
    return false;
}

static const char *const k_skip[] = {"script", "style", "noscript", "template", "svg", "canvas", "iframe",
                                     "object", NULL};
static const char *const k_block[] = {
    "p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "h1", "h2", "h3", "h4", "h5",
    "h6", "blockquote", "pre", "table", "ul", "ol", "dl", "figure", "figcaption", "form", "fieldset", "address",
    "hr", "title", "body", "html", "details", "summary", NULL};
static const char *const k_line[] = {"br", "li", "tr", "dt", "dd", "caption", NULL};

static void on_start(void *ud, const xmlChar *name, const xmlChar **attrs) {
    (void)attrs;
    html_ctx *c = ud;
    const char *n = (const char *)name;
    if (in_list(n, k_skip)) {
        c->skip++;
        return;
    }
    if (c->skip) return;
    if (in_list(n, k_block)) qf_text_out_break(c->out, true);
    else if (in_list(n, k_line)) qf_text_out_break(c->out, false);
    else if (!strcasecmp(n, "td") || !strcasecmp(n, "th")) qf_text_out_text(c->out, " ", 1);
    if (!strcasecmp(n, "pre") || !strcasecmp(n, "textarea")) {
        c->pre++;
        c->out->pre = true;
    }
}

static void on_end(void *ud, const xmlChar *name) {
    html_ctx *c = ud;
    const char *n = (const char *)name;
    if (in_list(n, k_skip)) {
        if (c->skip) c->skip--;
        return;
    }
    if (c->skip) return;
    if (!strcasecmp(n, "pre") || !strcasecmp(n, "textarea")) {
        if (c->pre) c->pre--;
        c->out->pre = c->pre > 0;
    }
    if (in_list(n, k_block)) qf_text_out_break(c->out, true);
    else if (!strcasecmp(n, "li") || !strcasecmp(n, "tr") || !strcasecmp(n, "dd")) qf_text_out_break(c->out, false);
}

static void on_chars(void *ud, const xmlChar *ch, int len) {
    html_ctx *c = ud;
    if (c->skip || len <= 0) return;
    qf_text_out_text(c->out, (const char *)ch, (size_t)len);
}

static void on_silent(void *ud, const char *msg, ...) {
    (void)ud;
    (void)msg;
}

qf_status qf_ingest_html(const char *path, const char *data, size_t n, qf_text_out *out, qf_err *err) {
    qf_ingest_xml_init();
    htmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.startElement = on_start;
    sax.endElement = on_end;
    sax.characters = on_chars;
    sax.cdataBlock = on_chars;
    sax.ignorableWhitespace = on_chars;
    sax.warning = on_silent;
    sax.error = on_silent;
    html_ctx c = {out, 0, 0};
    size_t first = n < 4096 ? n : 4096;
    htmlParserCtxtPtr ctx = htmlCreatePushParserCtxt(&sax, &c, data, (int)first, path, XML_CHAR_ENCODING_NONE);
    if (!ctx) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: cannot create the HTML parser", path);
    htmlCtxtUseOptions(ctx, HTML_PARSE_RECOVER | HTML_PARSE_NONET | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING);
    size_t off = first;
    while (off < n && !out->too_big) {
        size_t k = n - off < 65536 ? n - off : 65536;
        htmlParseChunk(ctx, data + off, (int)k, 0);
        off += k;
    }
    htmlParseChunk(ctx, NULL, 0, 1);
    htmlFreeParserCtxt(ctx);
    out->pre = false;
    return QF_OK;
}
