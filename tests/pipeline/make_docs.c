/* make_docs.c - writes the example PDF and DOCX documents.
 *
 *   make_docs OUTDIR    -> OUTDIR/swarming.pdf, OUTDIR/beekeeping-equipment.docx
 *
 * The PDF is built by hand (PDF 1.4, two pages, uncompressed content
 * streams with the standard Helvetica font, xref offsets computed), the
 * DOCX with libarchive (zip, entries stored uncompressed so the file stays
 * readable). examples/docs holds the output of this program; the tests run
 * it again into the build folder.
 */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *k_pdf_pages[2][16] = {
    {"Swarming",
     "Swarming is how a honeybee colony reproduces. When a colony becomes crowded",
     "in late spring, the workers build a number of queen cells and the old queen",
     "leaves the hive with roughly half of the workers. This group, the swarm,",
     "first settles in a cluster on a branch near the hive while scout bees search",
     "for a new home such as a hollow tree.",
     "",
     "The scouts report possible sites with dances, and the swarm flies off only",
     "when enough scouts agree on one site. Meanwhile the first new queen to",
     "emerge in the old hive kills her rivals, mates, and takes over the colony.",
     NULL},
    {"Swarm control",
     "Beekeepers try to prevent swarms because a colony that swarms produces",
     "much less honey that year. Giving the bees more room in good time, and",
     "removing or using queen cells found during inspections, reduces swarming.",
     "A common method is the artificial swarm: the old queen is moved to a new",
     "box on the original site with the flying bees, while the brood and the",
     "queen cells stay in the old box, which is moved a short distance away.",
     NULL},
};

static void pdf_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '(' || *s == ')' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
}

static int write_pdf(const char *path) {
    /* content streams first, to know their lengths */
    char *content[2];
    size_t clen[2];
    for (int p = 0; p < 2; p++) {
        FILE *m = open_memstream(&content[p], &clen[p]);
        fprintf(m, "BT\n/F1 11 Tf\n14 TL\n72 720 Td\n");
        for (int i = 0; k_pdf_pages[p][i]; i++) {
            fputc('(', m);
            pdf_escape(m, k_pdf_pages[p][i]);
            fprintf(m, ") Tj T*\n");
        }
        fprintf(m, "ET\n");
        fclose(m);
    }
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    long off[9];
    fprintf(f, "%%PDF-1.4\n");
    off[1] = ftell(f);
    fprintf(f, "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
    off[2] = ftell(f);
    fprintf(f, "2 0 obj\n<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>\nendobj\n");
    for (int p = 0; p < 2; p++) {
        int page = 3 + 2 * p, cont = 4 + 2 * p;
        off[page] = ftell(f);
        fprintf(f,
                "%d 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R"
                " /Resources << /Font << /F1 7 0 R >> >> >>\nendobj\n",
                page, cont);
        off[cont] = ftell(f);
        fprintf(f, "%d 0 obj\n<< /Length %zu >>\nstream\n", cont, clen[p]);
        fwrite(content[p], 1, clen[p], f);
        fprintf(f, "endstream\nendobj\n");
        free(content[p]);
    }
    off[7] = ftell(f);
    fprintf(f, "7 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n");
    long xref = ftell(f);
    fprintf(f, "xref\n0 8\n0000000000 65535 f \n");
    for (int i = 1; i <= 7; i++) fprintf(f, "%010ld 00000 n \n", off[i]);
    fprintf(f, "trailer\n<< /Size 8 /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", xref);
    return fclose(f);
}

static const char *k_ct =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
    "<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">"
    "<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>"
    "<Default Extension=\"xml\" ContentType=\"application/xml\"/>"
    "<Override PartName=\"/word/document.xml\" "
    "ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>"
    "</Types>\n";

static const char *k_rels =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
    "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"
    "<Relationship Id=\"rId1\" "
    "Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" "
    "Target=\"word/document.xml\"/></Relationships>\n";

static const char *k_doc =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
    "<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>\n"
    "<w:p><w:r><w:t>Beekeeping Equipment</w:t></w:r></w:p>\n"
    "<w:p><w:r><w:t xml:space=\"preserve\">A modern hive is a stack of boxes. The lowest box, the brood box, holds "
    "the frames where the queen lays her eggs. </w:t></w:r><w:r><w:t xml:space=\"preserve\">Above it, separated "
    "by a queen excluder, a grid with gaps too narrow for the larger queen, sit the supers in which the workers "
    "store honey.</w:t></w:r><w:r><w:delText>This deleted sentence must not appear.</w:delText></w:r></w:p>\n"
    "<w:p><w:r><w:t xml:space=\"preserve\">Frames hold sheets of wax foundation printed with the hexagonal cell "
    "pattern. The bees draw the foundation out into comb. The gap between frames, the bee space, is about eight "
    "millimetres: a smaller gap the bees seal with propolis, and a larger one they fill with comb.</w:t></w:r></w:p>\n"
    "<w:p><w:r><w:t>Tools:</w:t></w:r><w:r><w:tab/><w:t xml:space=\"preserve\">a smoker, which calms the bees "
    "with cool smoke; a hive tool, a flat steel bar for prising boxes and frames apart; and a veil, which "
    "protects the face.</w:t></w:r></w:p>\n"
    "<w:p><w:r><w:t xml:space=\"preserve\">Protective suits are usually white or light coloured, because bees "
    "react more to dark colours, which they may take for predators such as bears.</w:t></w:r></w:p>\n"
    "</w:body></w:document>\n";

static int add_entry(struct archive *a, const char *name, const char *data) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)strlen(data));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, 1700000000, 0); /* fixed: same bytes every time */
    int r = archive_write_header(a, e);
    if (r == ARCHIVE_OK && archive_write_data(a, data, strlen(data)) < 0) r = ARCHIVE_FATAL;
    archive_entry_free(e);
    return r == ARCHIVE_OK ? 0 : -1;
}

static int write_docx(const char *path) {
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    archive_write_set_format_option(a, "zip", "compression", "store");
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
        fprintf(stderr, "%s: %s\n", path, archive_error_string(a));
        archive_write_free(a);
        return -1;
    }
    int r = add_entry(a, "[Content_Types].xml", k_ct) | add_entry(a, "_rels/.rels", k_rels) |
            add_entry(a, "word/document.xml", k_doc);
    if (archive_write_close(a) != ARCHIVE_OK) r = -1;
    archive_write_free(a);
    return r;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_docs OUTDIR\n");
        return 2;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/swarming.pdf", argv[1]);
    if (write_pdf(p) != 0) {
        perror(p);
        return 1;
    }
    snprintf(p, sizeof p, "%s/beekeeping-equipment.docx", argv[1]);
    if (write_docx(p) != 0) return 1;
    return 0;
}
