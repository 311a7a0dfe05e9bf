/* util.c - buffers, UTF-8 repair, hashes and I/O helpers of the pipeline.
 *
 * UTF-8 well-formedness follows Unicode's table 3-7 (no overlongs, no
 * surrogates, nothing above U+10FFFF); repair replaces each maximal ill-formed
 * prefix with one U+FFFD, the "substitution of maximal subparts" practice.
 * Content hashes are XXH3-128 over length-prefixed fields; SHA-256 is the
 * FIPS 180-4 compression function, used only to check downloaded models.
 */
#include "pipeline/pipeline_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/mem.h"

/* ---- growable buffer ---- */

static bool sb_reserve(qf_sb *b, size_t extra) {
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = qf_realloc(b->buf, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->buf = p;
    b->cap = cap;
    return true;
}

void qf_sb_append(qf_sb *b, const char *s, size_t n) {
    if (!sb_reserve(b, n)) return;
    if (n) memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

void qf_sb_puts(qf_sb *b, const char *s) { qf_sb_append(b, s, strlen(s)); }

void qf_sb_putc(qf_sb *b, char c) { qf_sb_append(b, &c, 1); }

void qf_sb_printf(qf_sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *qf_sb_take(qf_sb *b, size_t *len) {
    if (!b->oom && !b->buf) sb_reserve(b, 0);
    if (b->oom) {
        qf_sb_free(b);
        if (len) *len = 0;
        return NULL;
    }
    char *p = b->buf;
    p[b->len] = 0;
    if (len) *len = b->len;
    b->buf = NULL;
    b->len = b->cap = 0;
    return p;
}

void qf_sb_free(qf_sb *b) {
    qf_free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

/* ---- UTF-8 ---- */

int qf_utf8_seq_len(const unsigned char *s, size_t avail) {
    if (!avail) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) n = 3;
    else if (c == 0xED) n = 3, hi = 0x9F; /* no surrogates */
    else if (c >= 0xEE && c <= 0xEF) n = 3;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) n = 4, hi = 0x8F; /* <= U+10FFFF */
    else return 0;
    if ((size_t)n > avail) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

/* Bytes of the maximal ill-formed subpart at s (>= 1): the lead byte plus
 * the continuation bytes that could still have belonged to it. */
static size_t bad_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 1;
    if (c > 0xF4) want = 1;
    size_t k = 1;
    while (k < want && k < avail) {
        unsigned lo = 0x80, hi = 0xBF;
        if (k == 1) {
            if (c == 0xE0) lo = 0xA0;
            else if (c == 0xED) hi = 0x9F;
            else if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;
        }
        if (s[k] < lo || s[k] > hi) break;
        k++;
    }
    return k;
}

size_t qf_utf8_count_invalid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, bad = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        int k = qf_utf8_seq_len(p + i, n - i);
        if (k) {
            i += (size_t)k;
        } else {
            bad++;
            i += bad_len(p + i, n - i);
        }
    }
    return bad;
}

char *qf_utf8_repair(const char *s, size_t n, size_t *out_len, size_t *n_bad) {
    const unsigned char *p = (const unsigned char *)s;
    qf_sb b = {0};
    size_t i = 0, bad = 0, run = 0;
    while (i < n) {
        int k = p[i] < 0x80 ? 1 : qf_utf8_seq_len(p + i, n - i);
        if (k) {
            i += (size_t)k;
            run += (size_t)k;
            continue;
        }
        qf_sb_append(&b, s + i - run, run);
        run = 0;
        qf_sb_append(&b, "\xEF\xBF\xBD", 3);
        bad++;
        i += bad_len(p + i, n - i);
    }
    qf_sb_append(&b, s + i - run, run);
    if (n_bad) *n_bad = bad;
    return qf_sb_take(&b, out_len);
}

size_t qf_utf8_floor(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t k = n;
    /* step back over at most 3 continuation bytes to the lead byte */
    while (k > 0 && n - k < 4 && (p[k - 1] & 0xC0) == 0x80) k--;
    if (k == 0) return n; /* only continuation bytes: nothing to protect */
    size_t lead = k - 1;
    if (p[lead] < 0x80) return n;
    int len = qf_utf8_seq_len(p + lead, n - lead);
    if (len) return n;             /* complete (any bytes after it are strays) */
    if (n - lead >= 4) return n;   /* ill-formed anyway, not a cut sequence */
    return lead;
}

/* ---- hashing ---- */

struct qf_hasher {
    XXH3_state_t *st;
};

qf_hasher *qf_hasher_new(void) {
    qf_hasher *h = qf_malloc(sizeof *h);
    if (!h) return NULL;
    h->st = XXH3_createState();
    if (!h->st) {
        qf_free(h);
        return NULL;
    }
    XXH3_128bits_reset(h->st);
    return h;
}

void qf_hasher_field(qf_hasher *h, const void *p, size_t n) {
    if (!h) return;
    uint64_t len = n;
    XXH3_128bits_update(h->st, &len, sizeof len);
    if (n) XXH3_128bits_update(h->st, p, n);
}

void qf_hasher_str(qf_hasher *h, const char *s) {
    if (!h) return;
    if (!s) {
        uint64_t absent = UINT64_MAX;
        XXH3_128bits_update(h->st, &absent, sizeof absent);
        return;
    }
    qf_hasher_field(h, s, strlen(s));
}

void qf_hasher_u64(qf_hasher *h, uint64_t v) { qf_hasher_field(h, &v, sizeof v); }

qf_hash128 qf_hasher_done(qf_hasher *h) {
    qf_hash128 r = {0, 0};
    if (!h) return r;
    XXH128_hash_t x = XXH3_128bits_digest(h->st);
    XXH3_freeState(h->st);
    qf_free(h);
    r.hi = x.high64;
    r.lo = x.low64;
    return r;
}

qf_hash128 qf_hash128_of(const void *p, size_t n) {
    XXH128_hash_t x = XXH3_128bits(p, n);
    qf_hash128 r = {x.high64, x.low64};
    return r;
}

uint64_t qf_hash64_of(const void *p, size_t n) { return XXH3_64bits(p, n); }

void qf_hash128_hex(qf_hash128 h, char out[33]) {
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.hi, (unsigned long long)h.lo);
}

/* ---- SHA-256 ---- */

static const uint32_t k_sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(qf_sha256 *s, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k_sha_k[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

void qf_sha256_init(qf_sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->n_bytes = 0;
    s->fill = 0;
}

void qf_sha256_update(qf_sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->n_bytes += n;
    while (n) {
        if (s->fill == 0 && n >= 64) {
            sha_block(s, p);
            p += 64;
            n -= 64;
            continue;
        }
        size_t k = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, k);
        s->fill += k;
        p += k;
        n -= k;
        if (s->fill == 64) {
            sha_block(s, s->block);
            s->fill = 0;
        }
    }
}

void qf_sha256_final(qf_sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->n_bytes * 8;
    uint8_t pad = 0x80;
    uint64_t n_bytes = s->n_bytes;
    qf_sha256_update(s, &pad, 1);
    uint8_t zero = 0;
    while (s->fill != 56) qf_sha256_update(s, &zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    qf_sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
    s->n_bytes = n_bytes;
}

void qf_sha256_hex(const uint8_t d[32], char out[65]) {
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- misc ---- */

int qf_write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

bool qf_str_ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    if (m > n) return false;
    for (size_t i = 0; i < m; i++)
        if (tolower((unsigned char)s[n - m + i]) != tolower((unsigned char)suffix[i])) return false;
    return true;
}
