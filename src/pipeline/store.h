/* store.h - the job store: one SQLite database (WAL) per output dataset.
 *
 * It holds, for `qforge gen -o OUT.jsonl`, in OUT.jsonl.qforge.db:
 *   meta      key -> text: schema version, the job's signature (arguments
 *             that decide its output), committed sizes of the output files
 *   cache     model responses, zstd-compressed, keyed by a 128-bit hash of
 *             model identity + prompt + sampling parameters + pass; kept
 *             across jobs, so a re-run computes nothing already computed
 *   docs      one row per input file (path, size, mtime, status)
 *   chunks    per-chunk status (done) with its byte range
 *   pairs     every pair a finished chunk produced: accepted, rejected by
 *             curation (with its score) or a duplicate (of which id)
 *   failures  every request that did not yield pairs, with its reason
 *   metrics_snapshot  the running job's metrics about once a second, for
 *             `qforge top --db`: (seq, ts unix seconds, state, json of
 *             qf_metrics_render_json); only the newest
 *             QF_STORE_SNAPSHOTS_KEEP rows are kept
 *
 * Durability: WAL with synchronous=NORMAL: a committed transaction survives
 * a killed process (kill -9); after a power loss the last commits may be
 * lost but the database is consistent. Writes that fail because the disk
 * is full return QF_ERR_IO with "disk full" in the message; the failed
 * transaction is rolled back, everything committed before stays.
 *
 * Ownership: strings passed in are copied by SQLite; strings returned are
 * malloc'ed for the caller (qf_free) unless said otherwise.
 * Thread-safety: one qf_store is used by one thread at a time.
 */
#ifndef QF_STORE_H
#define QF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct qf_store qf_store;

/* Open or create the database at path (parent folder must exist). Sets WAL,
 * creates the tables, checks the schema version (a database from a newer
 * qforge is UNSUPPORTED). Errors: IO (cannot open/create, not a database). */
qf_store *qf_store_open(const char *path, qf_err *err);
void qf_store_close(qf_store *s); /* NULL is a no-op */

/* Transactions (not nested). Every write outside one is its own commit. */
qf_status qf_store_begin(qf_store *s, qf_err *err);
qf_status qf_store_commit(qf_store *s, qf_err *err);
void qf_store_rollback(qf_store *s);

/* ---- meta ---- */

/* QF_ERR_NOT_FOUND when key is absent (*val NULL). */
qf_status qf_store_meta_get(qf_store *s, const char *key, char **val /* out, qf_free */, qf_err *err);
qf_status qf_store_meta_set(qf_store *s, const char *key, const char *val, qf_err *err);
int64_t qf_store_meta_get_i64(qf_store *s, const char *key, int64_t dflt);
qf_status qf_store_meta_set_i64(qf_store *s, const char *key, int64_t v, qf_err *err);

/* ---- response cache ---- */

typedef struct qf_cache_key {
    uint8_t b[16];
} qf_cache_key;

typedef struct qf_cache_info {
    int32_t tokens_in, tokens_out; /* what computing the response cost */
    char finish[16];               /* "stop", "length", ... */
} qf_cache_info;

/* The stored response for key: *text (NUL-terminated, qf_free) and *len.
 * QF_ERR_NOT_FOUND when absent; QF_ERR_FORMAT when the stored value does not
 * decompress (the bad row is deleted so the response is computed again). */
qf_status qf_store_cache_get(qf_store *s, const qf_cache_key *key, char **text /* out */, size_t *len /* out */,
                             qf_cache_info *info /* out, may be NULL */, qf_err *err);
/* Store (or replace) a response; compressed with zstd. info may be NULL. */
qf_status qf_store_cache_put(qf_store *s, const qf_cache_key *key, const char *model, const char *text,
                             size_t len, const qf_cache_info *info, qf_err *err);
int64_t qf_store_cache_count(qf_store *s);

/* ---- job state ---- */

/* Forget the job (docs, chunks, pairs, failures, output sizes); the cache
 * stays. */
qf_status qf_store_job_reset(qf_store *s, qf_err *err);

typedef enum qf_doc_status { QF_DOC_PENDING = 0, QF_DOC_DONE = 1, QF_DOC_SKIPPED = 2 } qf_doc_status;

typedef struct qf_store_doc {
    int64_t id;
    int64_t size, mtime_ns;
    qf_doc_status status;
    int32_t n_chunks;
} qf_store_doc;

/* Row of path: QF_ERR_NOT_FOUND when the job has none. */
qf_status qf_store_doc_get(qf_store *s, const char *path, qf_store_doc *out /* out */, qf_err *err);
/* Insert or update the row of path (status, size, mtime, n_chunks, note);
 * *id receives its id. */
qf_status qf_store_doc_put(qf_store *s, const char *path, int64_t size, int64_t mtime_ns, qf_doc_status st,
                           int32_t n_chunks, const char *note, int64_t *id /* out, may be NULL */, qf_err *err);
/* Remove the doc's chunks, pairs and failures (an input that changed). */
qf_status qf_store_doc_forget(qf_store *s, int64_t doc_id, qf_err *err);

/* True when chunk idx of doc was finished with the same byte range. */
bool qf_store_chunk_is_done(qf_store *s, int64_t doc_id, int32_t idx, int64_t start, int64_t end);
qf_status qf_store_chunk_done(qf_store *s, int64_t doc_id, int32_t idx, int64_t start, int64_t end,
                              int32_t n_pairs, qf_err *err);
/* Chunks of doc marked done. */
int32_t qf_store_chunks_done(qf_store *s, int64_t doc_id);

typedef enum qf_pair_status {
    QF_PAIR_ACCEPTED = 0,  /* written to the dataset */
    QF_PAIR_REJECTED = 1,  /* curation score under the threshold: rejects file */
    QF_PAIR_DUPLICATE = 2, /* same or nearly the same question as dup_of */
} qf_pair_status;

typedef struct qf_pair {
    char id[33];          /* hex, stable for the same source, pass and text */
    int64_t doc_id;
    const char *path;     /* source document as given (borrowed) */
    int32_t chunk;        /* chunk index in the document */
    int64_t start, end;   /* byte range of the chunk in the document's text */
    int32_t pass;         /* generation pass, 0-based */
    const char *question; /* borrowed */
    const char *answer;   /* borrowed */
    int32_t score;        /* curation score 1..10; -1 when not curated */
    const char *model;    /* model identity (borrowed) */
    qf_pair_status status;
    uint64_t qhash;       /* exact normalised-question hash */
    uint64_t simhash;     /* content-word set hash (dedup "bag"), informational */
    const char *dup_of;   /* id of the pair kept instead (duplicates), else NULL */
} qf_pair;

qf_status qf_store_pair_add(qf_store *s, const qf_pair *p, qf_err *err);

typedef struct qf_failure {
    int64_t doc_id;
    const char *path;
    int32_t chunk, pass;
    const char *reason; /* short key: "malformed", "http_500", "timeout", "answer_too_short", ... */
    const char *detail; /* what went wrong, may be long (stored truncated to 2 KiB) */
} qf_failure;

qf_status qf_store_failure_add(qf_store *s, const qf_failure *f, qf_err *err);

/* Calls fn for every pair with the given status, in insertion order; the
 * pair's strings are borrowed for the call. fn returning non-zero stops the
 * walk (that value is returned as QF_ERR_CANCELLED). */
typedef int (*qf_store_pair_fn)(void *ud, const qf_pair *p);
qf_status qf_store_pairs_foreach(qf_store *s, qf_pair_status status, qf_store_pair_fn fn, void *ud,
                                 qf_err *err);

typedef struct qf_store_counts {
    int64_t docs, docs_done, chunks_done;
    int64_t pairs[3]; /* by qf_pair_status */
    int64_t failures;
} qf_store_counts;
void qf_store_get_counts(qf_store *s, qf_store_counts *out /* out */);

/* ---- metrics snapshots ---- */

#define QF_STORE_SNAPSHOTS_KEEP 60

/* Append a snapshot (ts: unix seconds; state: "running", "done",
 * "interrupted" or "failed"; json: the registry as qf_metrics_render_json
 * wrote it) in one transaction (or inside the caller's), and drop all but
 * the newest QF_STORE_SNAPSHOTS_KEEP rows. Readers open the database
 * read-only and read the row with the highest seq. */
qf_status qf_store_snapshot_put(qf_store *s, double ts, const char *state, const char *json, qf_err *err);
/* Rows in metrics_snapshot (for tests). */
int64_t qf_store_snapshot_count(qf_store *s);

/* Failure counts grouped by reason: calls fn(reason, count) per reason. */
void qf_store_failures_by_reason(qf_store *s, void (*fn)(void *ud, const char *reason, int64_t n), void *ud);
/* Every failure row: fn(path, chunk, pass, reason, detail). */
void qf_store_failures_foreach(qf_store *s,
                               void (*fn)(void *ud, const char *path, int32_t chunk, int32_t pass,
                                          const char *reason, const char *detail),
                               void *ud);

#endif
