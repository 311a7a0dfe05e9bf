/* prompt.c - built-in templates, --prompts DIR overrides, {{var}} rendering.
 *
 * Rendering is one left-to-right pass: literal text is copied, "{{name}}"
 * looked up among the given variables. Values are inserted verbatim and
 * never re-scanned, so a document containing "{{chunk}}" cannot inject.
 */
#include "pipeline/prompt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mem.h"
#include "pipeline/pipeline_int.h"

static const char *k_files[QF_PROMPT_COUNT] = {"system.txt", "generate.txt", "repair.txt", "curate.txt"};

static const char *k_builtin[QF_PROMPT_COUNT] = {
    [QF_PROMPT_SYSTEM] =
        "You write question-answer pairs for fine-tuning a language model. Use only facts stated in the text "
        "you are given. Reply with JSON only, no other words.",
    [QF_PROMPT_GENERATE] =
        "Text:\n\"\"\"\n{{chunk}}\n\"\"\"\n\n"
        "Write {{n}} question-answer pairs about the text above.\n"
        "- Each question can be answered from the text alone and makes sense without seeing it: name the "
        "subject instead of writing \"the text\" or \"the author\".\n"
        "- Each answer is correct and complete according to the text, in full sentences, at least "
        "{{min_chars}} characters long.\n"
        "- Ask about different facts; never repeat a question.\n\n"
        "Reply with only this JSON: {\"pairs\": [{\"question\": \"...\", \"answer\": \"...\"}]}",
    [QF_PROMPT_REPAIR] =
        "That reply could not be used: {{error}}.\n"
        "Reply again with only the JSON object {\"pairs\": [{\"question\": \"...\", \"answer\": \"...\"}]} "
        "holding {{n}} pairs (answers of at least {{min_chars}} characters), and nothing else.",
    [QF_PROMPT_CURATE] =
        "Text:\n\"\"\"\n{{chunk}}\n\"\"\"\n\n"
        "Rate the question-answer pair below for accuracy against the text above only, from 1 (wrong or "
        "not supported by the text) to 10 (correct, complete and clearly supported).\n\n"
        "Question: {{question}}\nAnswer: {{answer}}\n\n"
        "Reply with only this JSON: {\"score\": N}",
};

/* Placeholders each template may use; the first `required` must appear. */
static const struct {
    const char *names[5];
    int required;
} k_vars[QF_PROMPT_COUNT] = {
    [QF_PROMPT_SYSTEM] = {{NULL}, 0},
    [QF_PROMPT_GENERATE] = {{"chunk", "n", "min_chars", "source", NULL}, 1},
    [QF_PROMPT_REPAIR] = {{"error", "n", "min_chars", NULL}, 0},
    [QF_PROMPT_CURATE] = {{"chunk", "question", "answer", "source", NULL}, 3},
};

struct qf_prompts {
    char *text[QF_PROMPT_COUNT];
};

const char *qf_prompt_file_name(qf_prompt_id id) { return id < QF_PROMPT_COUNT ? k_files[id] : ""; }

const char *qf_prompts_text(const qf_prompts *p, qf_prompt_id id) {
    return id < QF_PROMPT_COUNT ? p->text[id] : "";
}

void qf_prompts_free(qf_prompts *p) {
    if (!p) return;
    for (int i = 0; i < QF_PROMPT_COUNT; i++) qf_free(p->text[i]);
    qf_free(p);
}

/* Check a template's placeholders: known names only, required ones present. */
static qf_status check(const char *t, qf_prompt_id id, const char *where, qf_err *err) {
    bool seen[5] = {false};
    const char *p = t;
    while ((p = strstr(p, "{{")) != NULL) {
        const char *e = strstr(p + 2, "}}");
        if (!e) return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: '{{' without '}}'", where);
        size_t n = (size_t)(e - p - 2);
        int k;
        for (k = 0; k_vars[id].names[k]; k++)
            if (strlen(k_vars[id].names[k]) == n && !memcmp(k_vars[id].names[k], p + 2, n)) break;
        if (!k_vars[id].names[k])
            return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: unknown placeholder {{%.*s}}", where, (int)(n > 40 ? 40 : n),
                              p + 2);
        seen[k] = true;
        p = e + 2;
    }
    for (int k = 0; k < k_vars[id].required; k++)
        if (!seen[k]) return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: must use {{%s}}", where, k_vars[id].names[k]);
    return QF_OK;
}

static char *read_file(const char *path, qf_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    qf_sb b = {0};
    char buf[4096];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) {
        qf_sb_append(&b, buf, r);
        if (b.len > (1u << 20)) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad || b.len > (1u << 20)) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: %s", path, bad ? "read error" : "larger than 1 MiB");
        qf_sb_free(&b);
        return NULL;
    }
    char *s = qf_sb_take(&b, NULL);
    if (!s) QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
    return s;
}

qf_prompts *qf_prompts_load(const char *dir, qf_err *err) {
    qf_prompts *p = qf_calloc(1, sizeof *p);
    if (!p) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    struct stat st;
    if (dir && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: prompts folder not found", dir);
        goto fail;
    }
    for (int i = 0; i < QF_PROMPT_COUNT; i++) {
        char path[4096];
        const char *where = "built-in";
        if (dir) {
            snprintf(path, sizeof path, "%s/%s", dir, k_files[i]);
            if (stat(path, &st) == 0) {
                if (!(p->text[i] = read_file(path, err))) goto fail;
                /* a trailing newline from an editor is not part of the prompt */
                size_t n = strlen(p->text[i]);
                while (n && (p->text[i][n - 1] == '\n' || p->text[i][n - 1] == '\r')) p->text[i][--n] = 0;
                where = path;
                if (qf_utf8_count_invalid(p->text[i], n)) {
                    QF_ERR_SET(err, QF_ERR_FORMAT, "%s: not valid UTF-8", path);
                    goto fail;
                }
            }
        }
        if (!p->text[i] && !(p->text[i] = qf_strdup(k_builtin[i]))) {
            QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (check(p->text[i], (qf_prompt_id)i, where, err) != QF_OK) goto fail;
    }
    return p;
fail:
    qf_prompts_free(p);
    return NULL;
}

qf_status qf_prompts_write_defaults(const char *dir, qf_err *err) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return QF_ERR_SET(err, QF_ERR_IO, "%s: %s", dir, strerror(errno));
    for (int i = 0; i < QF_PROMPT_COUNT; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, k_files[i]);
        FILE *f = fopen(path, "wx");
        if (!f) return QF_ERR_SET(err, QF_ERR_IO, "%s: %s", path, errno == EEXIST ? "exists, left alone" : strerror(errno));
        bool ok = fputs(k_builtin[i], f) >= 0 && fputc('\n', f) != EOF;
        if (fclose(f) != 0) ok = false;
        if (!ok) return QF_ERR_SET(err, QF_ERR_IO, "%s: write failed", path);
    }
    return QF_OK;
}

char *qf_prompt_render(const char *tmpl, const qf_prompt_var *vars, int n, qf_err *err) {
    qf_sb b = {0};
    const char *p = tmpl;
    for (;;) {
        const char *o = strstr(p, "{{");
        if (!o) {
            qf_sb_puts(&b, p);
            break;
        }
        const char *e = strstr(o + 2, "}}");
        if (!e) {
            qf_sb_free(&b);
            QF_ERR_SET(err, QF_ERR_FORMAT, "template: '{{' without '}}'");
            return NULL;
        }
        qf_sb_append(&b, p, (size_t)(o - p));
        size_t len = (size_t)(e - o - 2);
        int k;
        for (k = 0; k < n; k++)
            if (strlen(vars[k].name) == len && !memcmp(vars[k].name, o + 2, len)) break;
        if (k == n) {
            qf_sb_free(&b);
            QF_ERR_SET(err, QF_ERR_FORMAT, "template: no value for {{%.*s}}", (int)(len > 40 ? 40 : len), o + 2);
            return NULL;
        }
        qf_sb_puts(&b, vars[k].value ? vars[k].value : "");
        p = e + 2;
    }
    char *s = qf_sb_take(&b, NULL);
    if (!s) QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory rendering a prompt");
    return s;
}
