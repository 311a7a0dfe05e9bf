/* dedup.h - exact and near-duplicate detection of questions.
 *
 * Questions are normalised (ASCII lower-cased, every character that is not
 * a letter or digit turned into a space, runs of spaces collapsed;
 * non-ASCII letters kept as they are), then compared three ways:
 *   exact   hash of the normalised text: "What is X?" == "what is x"
 *   bag     hash of the set of content words (a fixed English stop-word
 *           list removed, a trailing plural "s" dropped), when at least two
 *           remain: "What is the capital of France?" == "Capital of France:
 *           what is it?"
 *   near    Jaccard similarity >= 0.8 of the content-word sets, when both
 *           have at least three words: "How many eggs can a queen lay in a
 *           day in spring?" ~ "How many eggs can the queen lay in one day
 *           in spring?" (candidates come from MinHash LSH: 16 hashes in 8
 *           bands of 2, so pairs at 0.8 are found with probability
 *           1 - (1 - 0.64)^8 > 0.999; every candidate is then checked
 *           exactly)
 * Content-word sets are capped at the 32 smallest word hashes (a bottom-k
 * sketch) for very long questions.
 *
 * Thread-safety: one qf_dedup per thread at a time.
 */
#ifndef QF_DEDUP_H
#define QF_DEDUP_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

#define QF_DEDUP_MAX_WORDS 32

typedef struct qf_qfp {
    uint64_t exact, bag;            /* bag 0: fewer than two content words */
    uint64_t words[QF_DEDUP_MAX_WORDS]; /* sorted unique content-word hashes */
    int32_t n_words;                /* all words of the normalised text */
    int32_t n_content;              /* entries used in words */
} qf_qfp;

/* Fingerprints of question (NUL-terminated UTF-8). */
qf_qfp qf_dedup_fingerprint(const char *question);
/* Jaccard similarity of two fingerprints' content-word sets (0..1). */
double qf_dedup_jaccard(const qf_qfp *a, const qf_qfp *b);

typedef struct qf_dedup qf_dedup;

/* near: also bag and Jaccard matches (else exact only). */
qf_dedup *qf_dedup_new(bool near, qf_err *err);
void qf_dedup_free(qf_dedup *d); /* NULL is a no-op */

/* If the question matches one already added, copy that one's id into
 * dup_of (33 bytes) and return true; otherwise add it under id (<= 32
 * chars) and return false. On allocation failure returns false without
 * adding and sets *oom (may be NULL). */
bool qf_dedup_check_add(qf_dedup *d, const qf_qfp *fp, const char *id, char dup_of[33], bool *oom);
int64_t qf_dedup_size(const qf_dedup *d);

#endif
