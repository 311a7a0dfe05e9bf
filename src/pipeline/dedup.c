/* dedup.c - question fingerprints and the duplicate index.
 *
 * The index is one open-addressing hash table of (key, entry): keys are
 * the exact hash, the bag hash (when usable) and one key per LSH band
 * (band number mixed in). Entries keep their id and content-word set (in
 * a shared pool), so a band hit is confirmed by an exact Jaccard check.
 * Several entries may share a key (bands of different questions collide
 * by design): lookups walk the probe run and test each. Tables grow at 50%
 * load; every insertion reserves its room first, so an allocation failure
 * leaves the index unchanged.
 */
#include "pipeline/dedup.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "pipeline/pipeline_int.h"

#define N_HASH 16
#define N_BAND 8
#define ROWS (N_HASH / N_BAND)
#define NEAR_JACCARD 0.8

/* ---- fingerprints ---- */

static const char *k_stop[] = {
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "by", "with", "from", "and", "or", "is", "are", "was",
    "were", "be", "been", "does", "do", "did", "what", "which", "who", "whom", "whose", "when", "where", "why",
    "how", "it", "its", "this", "that", "these", "those", "as", "can", "could", "would", "should", "will", "s",
    "there", "their", "they", "about", "into", "according", "text", "passage", "described", NULL};

static bool is_stop(const char *w, size_t n) {
    for (int i = 0; k_stop[i]; i++)
        if (strlen(k_stop[i]) == n && !memcmp(k_stop[i], w, n)) return true;
    return false;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t mix(uint64_t k, uint64_t salt) {
    uint64_t x = k ^ (salt * 0x9E3779B97F4A7C15ULL);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 29;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 32;
    return x ? x : 1;
}

qf_qfp qf_dedup_fingerprint(const char *q) {
    qf_qfp fp;
    memset(&fp, 0, sizeof fp);
    size_t n = strlen(q);
    char stackbuf[512];
    char *norm = n < sizeof stackbuf ? stackbuf : qf_malloc(n + 1);
    if (!norm) {
        fp.exact = qf_hash64_of(q, n);
        return fp;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)q[i];
        char o = c >= 0x80 ? (char)c : isalnum(c) ? (char)tolower(c) : ' ';
        if (o == ' ' && (k == 0 || norm[k - 1] == ' ')) continue;
        norm[k++] = o;
    }
    while (k && norm[k - 1] == ' ') k--;
    norm[k] = 0;
    fp.exact = qf_hash64_of(norm, k);
    uint64_t all[256];
    int32_t na = 0;
    for (size_t i = 0; i < k;) {
        size_t j = i;
        while (j < k && norm[j] != ' ') j++;
        size_t wl = j - i;
        fp.n_words++;
        if (!is_stop(norm + i, wl) && na < 256) {
            size_t sl = wl > 3 && norm[i + wl - 1] == 's' ? wl - 1 : wl; /* crude plural folding */
            all[na++] = qf_hash64_of(norm + i, sl);
        }
        i = j + 1;
    }
    if (norm != stackbuf) qf_free(norm);
    qsort(all, (size_t)na, sizeof *all, cmp_u64);
    int32_t u = 0;
    for (int32_t i = 0; i < na; i++)
        if (!u || all[u - 1] != all[i]) all[u++] = all[i];
    if (u >= 2) fp.bag = qf_hash64_of(all, (size_t)u * sizeof *all) | 1;
    fp.n_content = u < QF_DEDUP_MAX_WORDS ? u : QF_DEDUP_MAX_WORDS; /* bottom-k: the smallest hashes */
    memcpy(fp.words, all, (size_t)fp.n_content * sizeof *all);
    return fp;
}

static double jaccard(const uint64_t *a, int32_t na, const uint64_t *b, int32_t nb) {
    int32_t i = 0, j = 0, inter = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j]) inter++, i++, j++;
        else if (a[i] < b[j]) i++;
        else j++;
    }
    int32_t uni = na + nb - inter;
    return uni ? (double)inter / uni : 1.0;
}

double qf_dedup_jaccard(const qf_qfp *a, const qf_qfp *b) {
    return jaccard(a->words, a->n_content, b->words, b->n_content);
}

static void band_keys(const qf_qfp *fp, uint64_t keys[N_BAND]) {
    uint64_t mins[N_HASH];
    for (int h = 0; h < N_HASH; h++) {
        uint64_t m = UINT64_MAX;
        for (int32_t i = 0; i < fp->n_content; i++) {
            uint64_t v = mix(fp->words[i], (uint64_t)h + 101);
            if (v < m) m = v;
        }
        mins[h] = m;
    }
    for (int b = 0; b < N_BAND; b++) {
        uint64_t x = (uint64_t)b + 7;
        for (int r = 0; r < ROWS; r++) x = mix(x ^ mins[b * ROWS + r], (uint64_t)r + 1);
        keys[b] = mix(x, 3);
    }
}

/* ---- index ---- */

typedef struct entry {
    char id[33];
    int64_t words; /* offset in the pool */
    int32_t n_words;
} entry;

typedef struct slot {
    uint64_t key; /* 0 = empty */
    int64_t e;
} slot;

struct qf_dedup {
    bool near;
    entry *ent;
    int64_t n_ent, cap_ent;
    uint64_t *pool;
    int64_t n_pool, cap_pool;
    slot *tab;
    int64_t n_tab, cap_tab; /* cap_tab: power of two */
};

qf_dedup *qf_dedup_new(bool near, qf_err *err) {
    qf_dedup *d = qf_calloc(1, sizeof *d);
    if (!d) goto oom;
    d->near = near;
    d->cap_tab = 1024;
    d->tab = qf_calloc((size_t)d->cap_tab, sizeof *d->tab);
    if (!d->tab) goto oom;
    return d;
oom:
    qf_dedup_free(d);
    QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory (dedup index)");
    return NULL;
}

void qf_dedup_free(qf_dedup *d) {
    if (!d) return;
    qf_free(d->ent);
    qf_free(d->pool);
    qf_free(d->tab);
    qf_free(d);
}

int64_t qf_dedup_size(const qf_dedup *d) { return d->n_ent; }

static bool tab_grow(qf_dedup *d) {
    int64_t cap = d->cap_tab * 2;
    slot *t = qf_calloc((size_t)cap, sizeof *t);
    if (!t) return false;
    for (int64_t i = 0; i < d->cap_tab; i++) {
        if (!d->tab[i].key) continue;
        int64_t h = (int64_t)(d->tab[i].key & (uint64_t)(cap - 1));
        while (t[h].key) h = (h + 1) & (cap - 1);
        t[h] = d->tab[i];
    }
    qf_free(d->tab);
    d->tab = t;
    d->cap_tab = cap;
    return true;
}

static void tab_put(qf_dedup *d, uint64_t key, int64_t e) {
    int64_t h = (int64_t)(key & (uint64_t)(d->cap_tab - 1));
    while (d->tab[h].key) h = (h + 1) & (d->cap_tab - 1);
    d->tab[h].key = key;
    d->tab[h].e = e;
    d->n_tab++;
}

/* First entry under key; with fp, only one whose words are similar enough. */
static int64_t tab_find(const qf_dedup *d, uint64_t key, const qf_qfp *fp) {
    int64_t h = (int64_t)(key & (uint64_t)(d->cap_tab - 1));
    while (d->tab[h].key) {
        if (d->tab[h].key == key) {
            const entry *e = &d->ent[d->tab[h].e];
            if (!fp || (e->n_words && jaccard(fp->words, fp->n_content, d->pool + e->words, e->n_words) >= NEAR_JACCARD))
                return d->tab[h].e;
        }
        h = (h + 1) & (d->cap_tab - 1);
    }
    return -1;
}

bool qf_dedup_check_add(qf_dedup *d, const qf_qfp *fp, const char *id, char dup_of[33], bool *oom) {
    if (oom) *oom = false;
    bool lsh = d->near && fp->n_content >= 3;
    uint64_t bands[N_BAND];
    if (lsh) band_keys(fp, bands);
    int64_t hit = tab_find(d, mix(fp->exact, 1), NULL);
    if (hit < 0 && d->near && fp->bag) hit = tab_find(d, mix(fp->bag, 2), NULL);
    for (int b = 0; lsh && b < N_BAND && hit < 0; b++) hit = tab_find(d, bands[b], fp);
    if (hit >= 0) {
        memcpy(dup_of, d->ent[hit].id, 33);
        return true;
    }
    /* reserve everything first, so a failure adds nothing */
    if (d->n_ent == d->cap_ent) {
        int64_t cap = d->cap_ent ? d->cap_ent * 2 : 256;
        entry *e = qf_realloc(d->ent, (size_t)cap * sizeof *e);
        if (!e) goto oom;
        d->ent = e;
        d->cap_ent = cap;
    }
    if (d->n_pool + fp->n_content > d->cap_pool) {
        int64_t cap = d->cap_pool ? d->cap_pool * 2 : 4096;
        while (cap < d->n_pool + fp->n_content) cap *= 2;
        uint64_t *p = qf_realloc(d->pool, (size_t)cap * sizeof *p);
        if (!p) goto oom;
        d->pool = p;
        d->cap_pool = cap;
    }
    while ((d->n_tab + 2 + N_BAND) * 2 > d->cap_tab)
        if (!tab_grow(d)) goto oom;
    int64_t ei = d->n_ent++;
    entry *e = &d->ent[ei];
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", id);
    e->words = d->n_pool;
    e->n_words = fp->n_content;
    if (fp->n_content) memcpy(d->pool + d->n_pool, fp->words, (size_t)fp->n_content * sizeof *fp->words);
    d->n_pool += fp->n_content;
    tab_put(d, mix(fp->exact, 1), ei);
    if (d->near && fp->bag) tab_put(d, mix(fp->bag, 2), ei);
    for (int b = 0; lsh && b < N_BAND; b++) tab_put(d, bands[b], ei);
    return false;
oom:
    if (oom) *oom = true;
    return false;
}
