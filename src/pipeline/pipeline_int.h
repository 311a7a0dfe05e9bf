/* pipeline_int.h - helpers shared inside the pipeline layer (not public).
 *
 * A growable byte buffer, UTF-8 validation/repair, SHA-256 (for the model
 * download check), 128-bit content hashes and small string helpers.
 * Thread-safety: everything is pure or works on caller-owned objects.
 */
#ifndef QF_PIPELINE_INT_H
#define QF_PIPELINE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* ---- growable buffer ---- */

/* A NUL-terminated byte buffer. Zero-initialise ({0}) to start; after a
 * failed append `oom` is set and later appends do nothing, so a sequence of
 * appends needs one check at the end. */
typedef struct qf_sb {
    char *buf;
    size_t len, cap;
    bool oom;
} qf_sb;

void qf_sb_append(qf_sb *b, const char *s, size_t n);
void qf_sb_puts(qf_sb *b, const char *s);
void qf_sb_putc(qf_sb *b, char c);
void qf_sb_printf(qf_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the buffer to the caller (qf_free); the sb is reset. NULL on oom
 * (everything freed). An empty sb gives "" (allocated). */
char *qf_sb_take(qf_sb *b, size_t *len /* out, may be NULL */);
void qf_sb_free(qf_sb *b);

/* ---- UTF-8 ---- */

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when the bytes
 * at s do not start one (overlong, surrogate, > U+10FFFF, truncated). */
int qf_utf8_seq_len(const unsigned char *s, size_t avail);
/* Number of ill-formed sequences in s (each maximal bad prefix counts once). */
size_t qf_utf8_count_invalid(const char *s, size_t n);
/* Copy of s with each ill-formed sequence replaced by U+FFFD (EF BF BD);
 * NUL-terminated, caller frees with qf_free; NULL on allocation failure. */
char *qf_utf8_repair(const char *s, size_t n, size_t *out_len /* out */, size_t *n_bad /* out, may be NULL */);
/* Largest m <= n such that s[0..m) does not end inside a UTF-8 sequence. */
size_t qf_utf8_floor(const char *s, size_t n);

/* ---- hashing ---- */

typedef struct qf_hash128 {
    uint64_t hi, lo;
} qf_hash128;

/* Incremental 128-bit content hash (XXH3-128) over length-prefixed fields,
 * so ("ab","c") and ("a","bc") differ. */
typedef struct qf_hasher qf_hasher;
qf_hasher *qf_hasher_new(void);
void qf_hasher_field(qf_hasher *h, const void *p, size_t n);
void qf_hasher_str(qf_hasher *h, const char *s); /* NULL hashes as a distinct "absent" field */
void qf_hasher_u64(qf_hasher *h, uint64_t v);
qf_hash128 qf_hasher_done(qf_hasher *h); /* frees h */
qf_hash128 qf_hash128_of(const void *p, size_t n);
uint64_t qf_hash64_of(const void *p, size_t n);
void qf_hash128_hex(qf_hash128 h, char out[33]);

/* SHA-256 (FIPS 180-4). */
typedef struct qf_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;
    uint8_t block[64];
    size_t fill;
} qf_sha256;
void qf_sha256_init(qf_sha256 *s);
void qf_sha256_update(qf_sha256 *s, const void *p, size_t n);
void qf_sha256_final(qf_sha256 *s, uint8_t out[32]);
void qf_sha256_hex(const uint8_t d[32], char out[65]);

/* ---- misc ---- */

/* Write all n bytes (retrying short writes and EINTR). 0 or -1 with errno. */
int qf_write_all(int fd, const void *p, size_t n);
/* Case-insensitive ASCII suffix test. */
bool qf_str_ends_with_ci(const char *s, const char *suffix);

#endif
