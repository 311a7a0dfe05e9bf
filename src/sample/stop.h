/* stop.h - streaming stop-string matcher.
 *
 * Generation produces text piece by piece (one detokenized token at a time);
 * a stop string ("\nUSER:") can arrive split over several pieces, and a piece
 * can end inside a UTF-8 character. qf_stop sits between the detokenizer and
 * the client:
 *
 *   feed(piece)  appends to a pending buffer and releases the longest front
 *                part that is safe to show: it cannot be the start of a stop
 *                string given what has arrived, and it ends on a whole UTF-8
 *                character. When a stop string occurs (the earliest one in
 *                the text; at equal positions the first in the list), the
 *                text before it is released, the stop string and everything
 *                after it are dropped, and the matcher stays stopped.
 *   flush()      at the end of generation, releases whatever is still
 *                pending (a held prefix that never completed). An incomplete
 *                UTF-8 sequence at the very end is replaced by U+FFFD so the
 *                released text is always valid UTF-8 when the input was.
 *
 * Matching is on bytes; the released text concatenated over all calls equals
 * the input up to the first stop match (or all of it, with the U+FFFD
 * exception above). Bytes that are not valid UTF-8 are passed through, never
 * held forever: a lone lead byte is released once the next byte shows the
 * sequence cannot complete.
 *
 * Memory: the pending buffer holds at most (longest stop - 1) + 3 bytes
 * between calls, plus the piece being fed.
 * Thread-safety: one matcher per sequence, one thread at a time.
 */
#ifndef QF_STOP_H
#define QF_STOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct qf_stop qf_stop;

typedef struct qf_stop_out {
    const char *text;   /* bytes safe to emit now; borrowed, valid until the next call on
                           the matcher (not NUL-terminated; may be NULL when len is 0) */
    size_t len;         /* number of bytes at text */
    bool matched;       /* a stop string has matched (now or before); generation should end */
    int32_t stop_index; /* index of the matched stop in the list given to qf_stop_new, or -1 */
} qf_stop_out;

/* Matcher for n stop strings (copied). n == 0 (stops may then be NULL) gives a
 * matcher that only does the UTF-8 holdback. NULL + err: QF_ERR_INVALID when
 * stops is NULL with n > 0, or a stop string is NULL or empty; QF_ERR_NOMEM.
 * Free with qf_stop_free. */
qf_stop *qf_stop_new(const char *const *stops, size_t n, qf_err *err);

/* NULL is a no-op. */
void qf_stop_free(qf_stop *s);

/* Append len bytes of piece (NULL allowed when len is 0) and fill *out.
 * After a match, further feeds release nothing and report matched again.
 * Returns QF_OK, QF_ERR_INVALID (s or out NULL, piece NULL with len > 0) or
 * QF_ERR_NOMEM (pending text unchanged then; out says nothing released). */
qf_status qf_stop_feed(qf_stop *s, const char *piece, size_t len, qf_stop_out *out);

/* Release all pending text (see above) into *out; the matcher is then empty
 * and may be fed again. After a match it releases nothing.
 * Returns QF_OK, QF_ERR_INVALID (s or out NULL) or QF_ERR_NOMEM. */
qf_status qf_stop_flush(qf_stop *s, qf_stop_out *out);

/* Forget pending text and any match, to reuse the matcher for a new
 * generation with the same stop strings. NULL is a no-op. */
void qf_stop_reset(qf_stop *s);

/* Bytes currently held back (0 for NULL). */
size_t qf_stop_pending(const qf_stop *s);

#endif
