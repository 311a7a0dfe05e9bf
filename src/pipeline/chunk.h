/* chunk.h - cut a document's text into chunks of about N tokens.
 *
 * The text is split into sentences (a sentence ends after . ! ? or their
 * CJK forms, possibly followed by closing quotes/brackets, before
 * whitespace; a line break also ends one), each remembering whether a
 * paragraph (blank line) starts before it. Sentences longer than the target
 * are cut at spaces, and pieces with no space at UTF-8 character
 * boundaries. Sentences are then packed greedily up to target_tokens; a
 * chunk that must end mid-paragraph ends at the last paragraph boundary if
 * that keeps it at least half full, else at the last sentence boundary. The
 * next chunk repeats the trailing sentences of the previous one worth at
 * most overlap_tokens. Hard breaks (JSON Lines records) are never crossed.
 *
 * Token counts come from the caller's count function (the model's
 * tokenizer); without one, an estimate of 1 token per 4 bytes is used
 * (HTTP backends with no local tokenizer). Counts are summed per sentence,
 * so a chunk's count is approximate within a few tokens; n_tokens of each
 * chunk is then recounted on the whole chunk text.
 *
 * Each chunk is a byte range [start, end) of the text, trimmed of
 * surrounding whitespace, never empty. Deterministic: the same text and
 * parameters give the same chunks (resume relies on it).
 * Thread-safety: pure, as long as count is.
 */
#ifndef QF_CHUNK_H
#define QF_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef int32_t (*qf_count_fn)(void *ud, const char *text, size_t len);

typedef struct qf_chunk_params {
    int32_t target_tokens;  /* > 0 */
    int32_t overlap_tokens; /* 0 .. target_tokens/2 (clamped) */
    qf_count_fn count;      /* NULL: (len + 3) / 4 */
    void *count_ud;
} qf_chunk_params;

typedef struct qf_chunk {
    size_t start, end; /* byte range in the text */
    int32_t n_tokens;
} qf_chunk;

/* breaks: n_breaks ascending offsets where the text is cut hard (may be
 * NULL). *out: malloc'ed array (qf_free) of *n_out chunks; 0 chunks for a
 * text of only whitespace. Errors: INVALID (target <= 0), NOMEM. */
qf_status qf_chunk_text(const char *text, size_t len, const size_t *breaks, int32_t n_breaks,
                        const qf_chunk_params *p, qf_chunk **out /* out */, int32_t *n_out /* out */, qf_err *err);

/* The estimate used without a tokenizer. */
int32_t qf_chunk_estimate_tokens(const char *text, size_t len);

#endif
