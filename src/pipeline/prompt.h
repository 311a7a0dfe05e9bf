/* prompt.h - the prompt templates of `qforge gen`, built in or from files.
 *
 * Four templates, each a text file in a --prompts DIR (a missing file keeps
 * the built-in text; `qforge gen --prompts-init DIR` writes the built-ins
 * there to edit):
 *
 *   system.txt    system message of every request
 *   generate.txt  user message asking for pairs    {{chunk}} {{n}} {{min_chars}} {{source}}
 *   repair.txt    follow-up after a malformed reply {{error}} {{n}} {{min_chars}}
 *   curate.txt    user message asking for a score  {{chunk}} {{question}} {{answer}} {{source}}
 *
 * {{name}} is replaced by the value; "{{" not followed by a known name and
 * "}}" is an error naming the file. generate.txt must use {{chunk}};
 * curate.txt {{chunk}}, {{question}} and {{answer}}. For speed, put
 * {{chunk}} first in generate.txt and curate.txt (as the built-ins do):
 * every request about a chunk then starts with the same tokens (system
 * message + chunk), which the engine computes once and shares.
 *
 * Thread-safety: a loaded qf_prompts is immutable.
 */
#ifndef QF_PROMPT_H
#define QF_PROMPT_H

#include "base/err.h"

typedef enum qf_prompt_id {
    QF_PROMPT_SYSTEM = 0,
    QF_PROMPT_GENERATE,
    QF_PROMPT_REPAIR,
    QF_PROMPT_CURATE,
    QF_PROMPT_COUNT
} qf_prompt_id;

typedef struct qf_prompts qf_prompts;

/* Built-ins overridden by the files of dir (NULL: built-ins only). Errors:
 * IO (dir unreadable, a file unreadable), FORMAT (unknown placeholder,
 * required placeholder missing, invalid UTF-8), with the file path. */
qf_prompts *qf_prompts_load(const char *dir, qf_err *err);
void qf_prompts_free(qf_prompts *p); /* NULL is a no-op */
const char *qf_prompts_text(const qf_prompts *p, qf_prompt_id id); /* borrowed */
const char *qf_prompt_file_name(qf_prompt_id id);                  /* "system.txt", ... */
/* Write the built-in templates into dir (created if missing); existing
 * files are left alone (QF_ERR_IO names the first that exists). */
qf_status qf_prompts_write_defaults(const char *dir, qf_err *err);

typedef struct qf_prompt_var {
    const char *name;  /* without braces */
    const char *value; /* NUL-terminated UTF-8 */
} qf_prompt_var;

/* Substitute the n vars into tmpl. Returns a malloc'ed string (qf_free);
 * NULL + err: FORMAT for a placeholder with no var, NOMEM. */
char *qf_prompt_render(const char *tmpl, const qf_prompt_var *vars, int n, qf_err *err);

#endif
