/* parse.h - tolerant extraction of question/answer pairs from model output.
 *
 * Models asked for JSON answer in many near-JSON ways. qf_parse_pairs
 * accepts, after removing reasoning blocks (<think>...</think>, also an
 * unclosed one at the end, or a closing tag whose opening was in the
 * prompt) and Markdown code fences:
 *   {"pairs": [{"question": .., "answer": ..}, ...]}   (the schema asked for)
 *   any object whose first array-of-objects member holds the pairs
 *   a bare array of pair objects, or a single pair object
 *   prose before/after the JSON, trailing commas, and output cut off in
 *   the middle (the complete pairs before the cut are kept)
 * Keys are matched case-insensitively: question|q|instruction|prompt|query
 * and answer|a|response|output|completion. Leading/trailing whitespace of
 * both texts is removed; pairs with an empty question or answer are dropped
 * and counted.
 *
 * Errors: QF_ERR_FORMAT with a one-line reason suitable for a repair
 * prompt ("no JSON object found", "JSON syntax error near '...'", "no
 * question/answer pairs in the JSON"). NOMEM.
 * Thread-safety: pure functions.
 */
#ifndef QF_PARSE_H
#define QF_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Copy of text without reasoning blocks; NUL-terminated, qf_free. NULL on
 * allocation failure. */
char *qf_parse_strip_think(const char *text, size_t len, size_t *out_len /* out, may be NULL */);

typedef struct qf_qa {
    char *question; /* owned */
    char *answer;   /* owned */
} qf_qa;

typedef struct qf_qa_list {
    qf_qa *v;
    int32_t n;
    int32_t n_incomplete; /* items without a usable question or answer */
    int truncated;        /* 1 when the JSON was cut off and repaired */
} qf_qa_list;

/* Parse text (len bytes, need not be NUL-terminated) into out (zeroed
 * first; free with qf_qa_list_deinit, also after an error). */
qf_status qf_parse_pairs(const char *text, size_t len, qf_qa_list *out /* out */, qf_err *err);
void qf_qa_list_deinit(qf_qa_list *l);

/* Curation score: {"score": N} (also "rating"), or the first integer in
 * the text. Must be within 1..10, else QF_ERR_FORMAT. */
qf_status qf_parse_score(const char *text, size_t len, int *score /* out */, qf_err *err);

#endif
