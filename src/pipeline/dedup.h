/* dedup.h - exact and near-duplicate detection of questions.
 *
 * Three fingerprints of a question, all from normalised text (lower-cased
 * ASCII, every character that is not a letter or digit turned into a
 * space, runs of spaces collapsed; non-ASCII letters kept as they are):
 *   exact    hash of the normalised text: "What is X?" == "what is x"
 *   bag      hash of the sorted set of content words (a fixed English
 *            stop-word list removed, a trailing plural "s" dropped), used
 *            only when at least two content words remain: "What is the
 *            capital of France?" == "Capital of France: what is it?"
 *   simhash  64-bit SimHash over word unigrams and bigrams; two questions
 *            of at least 6 words whose SimHashes differ in <= max_hamming
 *            bits are near duplicates (found through 4 exact 16-bit bands,
 *            so lookups stay O(1) on average; max_hamming must be <= 3)
 *
 * Thread-safety: one qf_dedup per thread at a time.
 */
#ifndef QF_DEDUP_H
#define QF_DEDUP_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

typedef struct qf_qfp {
    uint64_t exact, bag, simhash;
    int32_t n_words, n_content;
} qf_qfp;

/* Fingerprints of question (NUL-terminated UTF-8). */
qf_qfp qf_dedup_fingerprint(const char *question);

typedef struct qf_dedup qf_dedup;

/* near: detect near duplicates (bag + simhash) besides exact ones.
 * max_hamming 0..3 (values above are clamped to 3). */
qf_dedup *qf_dedup_new(bool near, int max_hamming, qf_err *err);
void qf_dedup_free(qf_dedup *d); /* NULL is a no-op */

/* If question matches one already added, copy that one's id into dup_of
 * (33 bytes) and return true; otherwise add it under id (<= 32 chars) and
 * return false. On allocation failure returns false without adding and sets
 * *oom (may be NULL). */
bool qf_dedup_check_add(qf_dedup *d, const qf_qfp *fp, const char *id, char dup_of[33], bool *oom);
int64_t qf_dedup_size(const qf_dedup *d);

#endif
