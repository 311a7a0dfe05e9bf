/* test_ingest.c - input walk, text extraction of every format, chunking. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "pipeline/chunk.h"
#include "pipeline/ingest.h"
#include "pipeline/pipeline_int.h"
#include "qf_test.h"

static char g_tmp[256];
static char g_docs[1024];

static void write_file(const char *name, const void *data, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_tmp, name);
    FILE *f = fopen(p, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static const char *tpath(const char *name) {
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_tmp, name);
    return p[k];
}

static char *doc_text(const char *path, qf_doc_kind kind, qf_doc **out) {
    qf_err e = {0};
    qf_doc *d = qf_doc_open(path, kind, NULL, &e);
    *out = d;
    if (!d) {
        fprintf(stderr, "open %s: %s\n", path, e.msg);
        return NULL;
    }
    return qf_strndup(d->text, d->len);
}

static void test_kind_of(void) {
    qf_doc_kind k;
    ASSERT(qf_doc_kind_of("a/b.TXT", &k) && k == QF_DOC_TXT);
    ASSERT(qf_doc_kind_of("x.markdown", &k) && k == QF_DOC_MD);
    ASSERT(qf_doc_kind_of("x.htm", &k) && k == QF_DOC_HTML);
    ASSERT(qf_doc_kind_of("x.Pdf", &k) && k == QF_DOC_PDF);
    ASSERT(qf_doc_kind_of("x.docx", &k) && k == QF_DOC_DOCX);
    ASSERT(qf_doc_kind_of("x.ndjson", &k) && k == QF_DOC_JSONL);
    ASSERT(!qf_doc_kind_of("x.png", &k));
    ASSERT(!qf_doc_kind_of("docx", &k));
}

static void test_walk(void) {
    const char *in[] = {g_docs};
    qf_inputs l;
    qf_err e = {0};
    ASSERT_EQ_INT(qf_ingest_walk(in, 1, NULL, 0, &l, &e), QF_OK);
    ASSERT_EQ_INT(l.n, 6);
    for (size_t i = 1; i < l.n; i++) ASSERT(strcmp(l.v[i - 1].path, l.v[i].path) < 0); /* name order */
    int kinds[QF_DOC_KIND_COUNT] = {0};
    for (size_t i = 0; i < l.n; i++) kinds[l.v[i].kind]++;
    for (int k = 0; k < QF_DOC_KIND_COUNT; k++) ASSERT_EQ_INT(kinds[k], 1); /* one of each format */
    qf_inputs_deinit(&l);

    /* a folder with hidden, unsupported, own, excluded and duplicate entries */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/walk", g_tmp);
    mkdir(dir, 0755);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0755);
    write_file("walk/a.txt", "alpha", 5);
    write_file("walk/.hidden.txt", "h", 1);
    write_file("walk/picture.png", "\x89PNG", 4);
    write_file("walk/out.jsonl", "{}\n", 3);
    write_file("walk/out.jsonl.qforge.db", "x", 1);
    write_file("walk/sub/b.md", "# b", 3);
    write_file("walk/notes", "plain text without extension", 28);
    write_file("walk/blob", "\x01\x00\x02", 3);
    const char *in2[] = {dir, tpath("walk/a.txt"), tpath("walk/notes"), tpath("walk/blob")};
    const char *ex[] = {tpath("walk/out.jsonl"), "/nonexistent/never"};
    ASSERT_EQ_INT(qf_ingest_walk(in2, 4, ex, 2, &l, &e), QF_OK);
    ASSERT_EQ_INT(l.n, 3); /* a.txt (once), sub/b.md, notes (explicit, text) */
    ASSERT(strstr(l.v[0].path, "walk/a.txt"));
    ASSERT(strstr(l.v[1].path, "walk/sub/b.md"));
    ASSERT(strstr(l.v[2].path, "walk/notes") && l.v[2].kind == QF_DOC_TXT);
    ASSERT_EQ_INT(l.n_skip, 2); /* picture.png: unsupported; blob: binary */
    bool png = false, blob = false;
    for (size_t i = 0; i < l.n_skip; i++) {
        if (strstr(l.skip[i].path, "picture.png")) png = strstr(l.skip[i].reason, "unsupported") != NULL;
        if (strstr(l.skip[i].path, "blob")) blob = strstr(l.skip[i].reason, "binary") != NULL;
    }
    ASSERT(png && blob);
    qf_inputs_deinit(&l);

    const char *bad[] = {tpath("missing-file.txt")};
    ASSERT_EQ_INT(qf_ingest_walk(bad, 1, NULL, 0, &l, &e), QF_ERR_IO);
    ASSERT(strstr(e.msg, "missing-file.txt"));
    ASSERT_EQ_INT(l.n, 0);
}

static void test_txt_and_utf8(void) {
    char p[1200];
    snprintf(p, sizeof p, "%s/honeybee-colony.txt", g_docs);
    qf_doc *d;
    char *t = doc_text(p, QF_DOC_TXT, &d);
    ASSERT(t);
    FILE *f = fopen(p, "rb");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ASSERT_EQ_INT(d->len, n); /* plain text is the file itself */
    ASSERT(!memcmp(d->text, buf, n));
    ASSERT_EQ_INT(d->n_repaired, 0);
    qf_free(t);
    qf_doc_close(d);

    /* invalid UTF-8: overlong, lone continuation, truncated sequence, surrogate */
    const char bad[] = "ok \xC0\xAF x \x80 y \xED\xA0\x80 z \xE2\x82";
    write_file("bad.txt", bad, sizeof bad - 1);
    t = doc_text(tpath("bad.txt"), QF_DOC_TXT, &d);
    ASSERT(t);
    ASSERT(d->n_repaired >= 4);
    ASSERT_EQ_INT(qf_utf8_count_invalid(d->text, d->len), 0);
    ASSERT(strstr(t, "ok ") == t && strstr(t, "\xEF\xBF\xBD"));
    qf_free(t);
    qf_doc_close(d);

    const char bin[] = "text\0more";
    write_file("nul.txt", bin, sizeof bin - 1);
    qf_err e = {0};
    ASSERT(!qf_doc_open(tpath("nul.txt"), QF_DOC_TXT, NULL, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_FORMAT);
    ASSERT(strstr(e.msg, "binary") && strstr(e.msg, "nul.txt"));

    write_file("empty.md", "", 0);
    t = doc_text(tpath("empty.md"), QF_DOC_MD, &d);
    ASSERT(t && d->len == 0);
    qf_free(t);
    qf_doc_close(d);

    ASSERT(!qf_doc_open(tpath("nope.txt"), QF_DOC_TXT, NULL, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_IO);
}

static void test_html(void) {
    char p[1200];
    snprintf(p, sizeof p, "%s/pollination.html", g_docs);
    qf_doc *d;
    char *t = doc_text(p, QF_DOC_HTML, &d);
    ASSERT(t);
    ASSERT(strstr(t, "a habit called flower constancy.")); /* inline <em> joined with spaces kept */
    ASSERT(strstr(t, "perform buzz pollination: they"));
    ASSERT(!strstr(t, "do-not-ingest") && !strstr(t, "trackingId") && !strstr(t, "font-family"));
    ASSERT(!strstr(t, "enable JavaScript"));           /* noscript */
    ASSERT(strstr(t, "\xC2\xA9 qforge"));                /* &copy; decoded */
    ASSERT(strstr(t, "animals.\n\nA foraging"));         /* <p> -> paragraph break */
    ASSERT(strstr(t, "blossom.\nAlmond"));               /* <li> -> line break */
    ASSERT(!strstr(t, "  "));                            /* whitespace collapsed */
    ASSERT_EQ_INT(qf_utf8_count_invalid(d->text, d->len), 0);
    qf_free(t);
    qf_doc_close(d);

    /* Latin-1 declared page: converted to UTF-8 */
    const char l1[] = "<html><head><meta charset=\"iso-8859-1\"></head><body><p>caf\xE9 cr\xE8me</p>"
                      "<pre>a  b\n  c</pre><script>x=1</script></body></html>";
    write_file("l1.html", l1, sizeof l1 - 1);
    t = doc_text(tpath("l1.html"), QF_DOC_HTML, &d);
    ASSERT(t && strstr(t, "caf\xC3\xA9 cr\xC3\xA8me"));
    ASSERT(strstr(t, "a  b\n  c")); /* <pre> keeps whitespace */
    ASSERT(!strstr(t, "x=1"));
    qf_free(t);
    qf_doc_close(d);

    /* tag soup still gives text */
    const char soup[] = "<div><p>unclosed <b>bold <i>both</div> tail &amp; &lt;end&gt;";
    write_file("soup.htm", soup, sizeof soup - 1);
    t = doc_text(tpath("soup.htm"), QF_DOC_HTML, &d);
    ASSERT(t && strstr(t, "unclosed bold both") && strstr(t, "tail & <end>"));
    qf_free(t);
    qf_doc_close(d);
}

static void test_pdf(void) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s %s", QF_MAKE_DOCS, g_tmp);
    ASSERT_EQ_INT(system(cmd), 0);
    const char *paths[2] = {tpath("swarming.pdf"), NULL};
    char p2[1200];
    snprintf(p2, sizeof p2, "%s/swarming.pdf", g_docs);
    paths[1] = p2;
    for (int i = 0; i < 2; i++) {
        qf_doc *d;
        char *t = doc_text(paths[i], QF_DOC_PDF, &d);
        ASSERT(t);
        ASSERT_EQ_INT(d->n_pages, 2);
        ASSERT(strstr(t, "Swarming is how a honeybee colony reproduces. When a colony becomes crowded in late"));
        ASSERT(strstr(t, "A common method is the artificial swarm")); /* page 2 */
        char *p1 = strstr(t, "takes over the colony."), *pg2 = strstr(t, "Swarm control");
        ASSERT(p1 && pg2 && p1 < pg2 && strstr(p1, "\n\n") < pg2); /* pages end paragraphs */
        qf_free(t);
        qf_doc_close(d);
    }
    /* a PDF with a broken body, and a file that is not a PDF at all */
    write_file("broken.pdf", "%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage", 46);
    qf_err e = {0};
    ASSERT(!qf_doc_open(tpath("broken.pdf"), QF_DOC_PDF, NULL, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_FORMAT);
    ASSERT(strstr(e.msg, "broken.pdf"));
    write_file("fake.pdf", "hello world, not a pdf", 22);
    ASSERT(!qf_doc_open(tpath("fake.pdf"), QF_DOC_PDF, NULL, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_FORMAT);
}

static void test_docx(void) {
    qf_doc *d;
    char p[1200];
    snprintf(p, sizeof p, "%s/beekeeping-equipment.docx", g_docs);
    char *t = doc_text(p, QF_DOC_DOCX, &d);
    ASSERT(t);
    ASSERT(strstr(t, "Beekeeping Equipment\n\nA modern hive is a stack of boxes."));
    ASSERT(strstr(t, "lays her eggs. Above it, separated")); /* runs joined, preserved spaces */
    ASSERT(strstr(t, "Tools: a smoker"));                     /* w:tab */
    ASSERT(!strstr(t, "deleted sentence"));                   /* w:delText is not text */
    qf_free(t);
    qf_doc_close(d);
    qf_err e = {0};
    write_file("notzip.docx", "PK\x03\x04 this is not really a zip", 30);
    ASSERT(!qf_doc_open(tpath("notzip.docx"), QF_DOC_DOCX, NULL, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_FORMAT);
    /* a valid zip without word/document.xml: the swarming PDF's folder has none, so zip a text file */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cd %s && rm -f nodoc.docx && zip -q nodoc.docx bad.txt", g_tmp);
    ASSERT_MSG(system(cmd) == 0, "zip failed (scripts/deps.sh installs it)");
    ASSERT(!qf_doc_open(tpath("nodoc.docx"), QF_DOC_DOCX, NULL, &e));
    ASSERT_EQ_INT(e.code, QF_ERR_FORMAT);
    ASSERT(strstr(e.msg, "word/document.xml"));
}

static void test_jsonl(void) {
    char p[1200];
    snprintf(p, sizeof p, "%s/honey-faq.jsonl", g_docs);
    qf_doc *d;
    char *t = doc_text(p, QF_DOC_JSONL, &d);
    ASSERT(t);
    ASSERT_EQ_INT(d->n_breaks, 3); /* 4 records */
    ASSERT(strstr(t, "Honey is a supersaturated solution") == t);
    ASSERT(!strstr(t, "\"title\""));
    for (int i = 0; i < d->n_breaks; i++) ASSERT(d->breaks[i] <= d->len);
    qf_free(t);
    qf_doc_close(d);

    qf_ingest_opts o = {"title"};
    qf_err e = {0};
    d = qf_doc_open(p, QF_DOC_JSONL, &o, &e);
    ASSERT(d);
    ASSERT(d->len < 200 && memmem(d->text, d->len, "Why does honey crystallise?", 27));
    qf_doc_close(d);

    const char mixed[] = "{\"text\": \"first record\"}\nnot json\n\n{\"other\": 1}\n{\"text\": \"caf\\u00e9 second\"}\n";
    write_file("mixed.jsonl", mixed, sizeof mixed - 1);
    t = doc_text(tpath("mixed.jsonl"), QF_DOC_JSONL, &d);
    ASSERT(t);
    ASSERT_EQ_INT(d->n_bad_records, 2);
    ASSERT_EQ_INT(d->n_breaks, 1);
    ASSERT(!strcmp(t, "first record\n\ncaf\xC3\xA9 second"));
    qf_free(t);
    qf_doc_close(d);
}

/* ---- chunking ---- */

static int32_t count_words(void *ud, const char *t, size_t n) {
    (void)ud;
    int32_t w = 0;
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        bool sp = t[i] == ' ' || t[i] == '\n' || t[i] == '\t';
        if (!sp && !in) w++;
        in = !sp;
    }
    return w;
}

/* Every non-space byte lies in a chunk; chunks ascend, stay in the text,
 * never cross a break and are valid UTF-8. */
static void check_chunks(const char *text, size_t len, const size_t *br, int32_t nb, const qf_chunk *c, int32_t n,
                         int32_t max_tok) {
    char *covered = calloc(len + 1, 1);
    for (int32_t i = 0; i < n; i++) {
        ASSERT(c[i].start < c[i].end && c[i].end <= len);
        if (i) ASSERT(c[i].start > c[i - 1].start && c[i].end > c[i - 1].end);
        ASSERT(text[c[i].start] != ' ' && text[c[i].end - 1] != ' ' && text[c[i].end - 1] != '\n');
        ASSERT_EQ_INT(qf_utf8_count_invalid(text + c[i].start, c[i].end - c[i].start), 0);
        if (max_tok > 0) ASSERT_MSG(c[i].n_tokens <= max_tok, "chunk %d has %d tokens", i, c[i].n_tokens);
        for (int32_t b = 0; b < nb; b++) ASSERT(!(c[i].start < br[b] && c[i].end > br[b]));
        for (size_t k = c[i].start; k < c[i].end; k++) covered[k] = 1;
    }
    for (size_t k = 0; k < len; k++) {
        bool ws = text[k] == ' ' || text[k] == '\n' || text[k] == '\r' || text[k] == '\t';
        ASSERT_MSG(ws || covered[k], "byte %zu not in any chunk", k);
    }
    free(covered);
}

static void test_chunk_examples(void) {
    const char *in[] = {g_docs};
    qf_inputs l;
    qf_err e = {0};
    ASSERT_EQ_INT(qf_ingest_walk(in, 1, NULL, 0, &l, &e), QF_OK);
    for (size_t i = 0; i < l.n; i++) {
        qf_doc *d = qf_doc_open(l.v[i].path, l.v[i].kind, NULL, &e);
        ASSERT(d);
        for (int32_t target = 20; target <= 200; target += 60) {
            qf_chunk_params cp = {target, target / 4, count_words, NULL};
            qf_chunk *c = NULL, *c2 = NULL;
            int32_t n = 0, n2 = 0;
            ASSERT_EQ_INT(qf_chunk_text(d->text, d->len, d->breaks, d->n_breaks, &cp, &c, &n, &e), QF_OK);
            ASSERT(n >= 1);
            /* sums of sentence counts can differ from the whole-chunk count by a little */
            check_chunks(d->text, d->len, d->breaks, d->n_breaks, c, n, target + 2);
            ASSERT_EQ_INT(qf_chunk_text(d->text, d->len, d->breaks, d->n_breaks, &cp, &c2, &n2, &e), QF_OK);
            ASSERT_EQ_INT(n, n2); /* deterministic */
            for (int32_t k = 0; k < n; k++)
                ASSERT(c[k].start == c2[k].start && c[k].end == c2[k].end && c[k].n_tokens == c2[k].n_tokens);
            qf_free(c);
            qf_free(c2);
        }
        qf_doc_close(d);
    }
    qf_inputs_deinit(&l);
}

static void test_chunk_rules(void) {
    qf_err e = {0};
    qf_chunk *c;
    int32_t n;
    /* two paragraphs of 6 words x 4 sentences = 24 words each; target 40:
     * the first chunk ends at the paragraph break, not mid-paragraph */
    char text[2048] = "";
    for (int p = 0; p < 2; p++) {
        for (int s = 0; s < 4; s++) strcat(text, "one two three four five six. ");
        strcat(text, "\n\n");
    }
    qf_chunk_params cp = {40, 0, count_words, NULL};
    ASSERT_EQ_INT(qf_chunk_text(text, strlen(text), NULL, 0, &cp, &c, &n, &e), QF_OK);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(c[0].n_tokens, 24);
    ASSERT(text[c[0].end - 1] == '.' && text[c[0].end] == ' ' && text[c[0].end + 1] == '\n');
    qf_free(c);

    /* overlap: the next chunk repeats the last sentence(s) of the previous */
    char one[4096] = "";
    for (int s = 0; s < 20; s++) {
        char b[64];
        snprintf(b, sizeof b, "Sentence number %d has five. ", s);
        strcat(one, b);
    }
    cp = (qf_chunk_params){20, 5, count_words, NULL};
    ASSERT_EQ_INT(qf_chunk_text(one, strlen(one), NULL, 0, &cp, &c, &n, &e), QF_OK);
    ASSERT(n >= 4);
    for (int32_t i = 1; i < n; i++) ASSERT(c[i].start < c[i - 1].end); /* overlapping */
    check_chunks(one, strlen(one), NULL, 0, c, n, 20);
    qf_free(c);
    cp.overlap_tokens = 0;
    ASSERT_EQ_INT(qf_chunk_text(one, strlen(one), NULL, 0, &cp, &c, &n, &e), QF_OK);
    for (int32_t i = 1; i < n; i++) ASSERT(c[i].start >= c[i - 1].end);
    qf_free(c);

    /* one huge "word" of 2-byte characters: cut at character boundaries */
    size_t big = 6000;
    char *w = malloc(big + 1);
    for (size_t i = 0; i < big; i += 2) memcpy(w + i, "\xC3\xA9", 2);
    w[big] = 0;
    cp = (qf_chunk_params){100, 10, NULL, NULL}; /* 4 bytes per token estimate */
    ASSERT_EQ_INT(qf_chunk_text(w, big, NULL, 0, &cp, &c, &n, &e), QF_OK);
    ASSERT(n >= 15);
    check_chunks(w, big, NULL, 0, c, n, 100);
    qf_free(c);
    free(w);

    /* whitespace only: no chunks; bad target: INVALID */
    ASSERT_EQ_INT(qf_chunk_text(" \n\n \t", 5, NULL, 0, &cp, &c, &n, &e), QF_OK);
    ASSERT_EQ_INT(n, 0);
    qf_free(c);
    cp.target_tokens = 0;
    ASSERT_EQ_INT(qf_chunk_text("abc", 3, NULL, 0, &cp, &c, &n, &e), QF_ERR_INVALID);

    /* CJK sentence ends without spaces */
    const char *cjk = "\xE8\x9C\x82\xE8\x9C\x9C\xE3\x80\x82\xE8\x9C\x82\xE5\x90\x8E\xEF\xBC\x81\xE5\xB7\xA5\xE8\x9C\x82\xEF\xBC\x9F";
    cp = (qf_chunk_params){3, 0, NULL, NULL}; /* 9 bytes per sentence = 3 estimated tokens */
    ASSERT_EQ_INT(qf_chunk_text(cjk, strlen(cjk), NULL, 0, &cp, &c, &n, &e), QF_OK);
    ASSERT_EQ_INT(n, 3);
    check_chunks(cjk, strlen(cjk), NULL, 0, c, n, 0);
    qf_free(c);
}

static void test_chunk_nomem(void) {
    char text[4096] = "";
    for (int s = 0; s < 60; s++) strcat(text, "A short sentence here. ");
    qf_chunk_params cp = {10, 3, count_words, NULL};
    for (long k = 0; k < 200; k++) {
        qf_chunk *c = NULL;
        int32_t n = 0;
        qf_err e = {0};
        qf_mem_fail_after(k);
        qf_status st = qf_chunk_text(text, strlen(text), NULL, 0, &cp, &c, &n, &e);
        qf_mem_fail_after(-1);
        if (st == QF_OK) {
            ASSERT(n > 0);
            qf_free(c);
            return;
        }
        ASSERT_EQ_INT(st, QF_ERR_NOMEM);
        ASSERT(c == NULL && n == 0);
    }
    ASSERT(0);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "%s/test_ingest.tmp", QF_BINARY_DIR);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", g_tmp, g_tmp);
    if (system(cmd) != 0) return 1;
    snprintf(g_docs, sizeof g_docs, "%s/examples/docs", QF_SOURCE_DIR);
    RUN_TEST(test_kind_of);
    RUN_TEST(test_walk);
    RUN_TEST(test_txt_and_utf8);
    RUN_TEST(test_html);
    RUN_TEST(test_pdf);
    RUN_TEST(test_docx);
    RUN_TEST(test_jsonl);
    RUN_TEST(test_chunk_examples);
    RUN_TEST(test_chunk_rules);
    RUN_TEST(test_chunk_nomem);
    TEST_MAIN_END();
}
