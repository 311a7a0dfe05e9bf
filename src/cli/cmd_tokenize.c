/* cmd_tokenize.c - `qforge tokenize`: text in, token ids out. */
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

static const char *k_usage =
    "usage: qforge tokenize -m MODEL [--no-bos] [--special] TEXT\n"
    "\n"
    "  TEXT        the text; '-' reads standard input\n"
    "  --no-bos    do not add the BOS token even if the model asks for it\n"
    "  --special   parse special-token texts (e.g. <|im_start|>) into their ids\n"
    "prints the token ids separated by spaces\n";

static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = qf_malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) break;
        if (n == cap) {
            char *nb = qf_realloc(buf, cap * 2);
            if (!nb) {
                qf_free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    bool no_bos = false, special = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return QF_EXIT_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = cli_value(argc, argv, &i))) return cli_usage_error(k_usage, "tokenize: -m needs a value");
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (a[0] == '-' && a[1] != 0) {
            return cli_usage_error(k_usage, "tokenize: unknown option '%s'", a);
        } else if (text) {
            return cli_usage_error(k_usage, "tokenize: more than one TEXT argument");
        } else {
            text = a;
        }
    }
    if (!model) return cli_usage_error(k_usage, "tokenize: -m MODEL is required");
    if (!text) return cli_usage_error(k_usage, "tokenize: TEXT is required ('-' for standard input)");

    qf_err err = {0};
    int rc = QF_EXIT_FAIL;
    char *buf = NULL;
    int32_t *ids = NULL;
    qf_tok *tok = NULL;
    /* only the vocabulary is needed: no weights are touched */
    qf_gguf *g = qf_gguf_open(model, &err);
    if (!g) goto fail;
    tok = qf_tok_new_from_gguf(g, &err);
    if (!tok) goto fail;
    size_t len;
    if (!strcmp(text, "-")) {
        buf = read_stdin(&len);
        if (!buf) {
            QF_ERR_SET(&err, QF_ERR_IO, "cannot read standard input");
            goto fail;
        }
        text = buf;
    } else {
        len = strlen(text);
    }
    int32_t n;
    ids = qf_tok_encode(tok, text, len, false, special, &n, &err);
    if (!ids) goto fail;
    const char *sep = "";
    if (!no_bos && qf_tok_add_bos(tok) && qf_tok_bos(tok) >= 0) {
        printf("%d", qf_tok_bos(tok));
        sep = " ";
    }
    for (int32_t i = 0; i < n; i++) {
        printf("%s%d", sep, ids[i]);
        sep = " ";
    }
    putchar('\n');
    rc = QF_EXIT_OK;
    goto out;
fail:
    rc = cli_fail(&err);
out:
    qf_free(ids);
    qf_free(buf);
    qf_tok_free(tok);
    qf_gguf_close(g);
    return rc;
}
