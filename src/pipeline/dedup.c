/* dedup.c - question fingerprints and the duplicate index.
 *
 * The index is an open-addressing hash table of (key, entry) where keys are
 * the exact hash, the bag hash (when usable) and four band keys per
 * SimHash (band number mixed into the 16-bit band value). An entry holds
 * the id and the full SimHash; a band hit is a near duplicate only if the
 * whole SimHash is within max_hamming bits (pigeonhole: <= 3 differing bits
 * over 4 bands leave at least one band equal, so no near duplicate is
 * missed). Tables grow at 50% load.
 */
#include "pipeline/dedup.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "pipeline/pipeline_int.h"

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

qf_qfp qf_dedup_fingerprint(const char *q) {
    qf_qfp fp;
    memset(&fp, 0, sizeof fp);
    size_t n = strlen(q);
    char *norm = qf_malloc(n + 1);
    uint64_t *words = qf_malloc((n / 2 + 2) * sizeof *words);   /* word hashes */
    uint64_t *content = qf_malloc((n / 2 + 2) * sizeof *content);
    if (!norm || !words || !content) {
        fp.exact = qf_hash64_of(q, n);
        goto done;
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
    int32_t nw = 0, nc = 0;
    for (size_t i = 0; i < k;) {
        size_t j = i;
        while (j < k && norm[j] != ' ') j++;
        size_t wl = j - i;
        words[nw++] = qf_hash64_of(norm + i, wl);
        if (!is_stop(norm + i, wl)) {
            size_t sl = wl > 3 && norm[i + wl - 1] == 's' ? wl - 1 : wl; /* crude plural folding */
            content[nc++] = qf_hash64_of(norm + i, sl);
        }
        i = j + 1;
    }
    fp.n_words = nw;
    fp.n_content = nc;
    if (nc >= 2) {
        qsort(content, (size_t)nc, sizeof *content, cmp_u64);
        int32_t u = 0;
        for (int32_t i = 0; i < nc; i++)
            if (!u || content[u - 1] != content[i]) content[u++] = content[i];
        fp.bag = qf_hash64_of(content, (size_t)u * sizeof *content) | 1; /* never 0 */
    }
    int32_t acc[64] = {0};
    for (int32_t i = 0; i < nw; i++) {
        uint64_t f[2] = {words[i], 0};
        int nf = 1;
        if (i + 1 < nw) {
            uint64_t pair[2] = {words[i], words[i + 1]};
            f[1] = qf_hash64_of(pair, sizeof pair);
            nf = 2;
        }
        for (int t = 0; t < nf; t++)
            for (int b = 0; b < 64; b++) acc[b] += (f[t] >> b) & 1 ? 1 : -1;
    }
    for (int b = 0; b < 64; b++)
        if (acc[b] > 0) fp.simhash |= 1ULL << b;
done:
    qf_free(norm);
    qf_free(words);
    qf_free(content);
    return fp;
}

/* ---- index ---- */

typedef struct entry {
    char id[33];
    uint64_t simhash;
    bool sim_ok; /* long enough for SimHash comparison */
} entry;

typedef struct slot {
    uint64_t key; /* 0 = empty */
    int64_t e;    /* entry index */
} slot;

struct qf_dedup {
    bool near;
    int max_ham;
    entry *ent;
    int64_t n_ent, cap_ent;
    slot *tab;
    int64_t n_tab, cap_tab; /* cap_tab: power of two */
};

qf_dedup *qf_dedup_new(bool near, int max_hamming, qf_err *err) {
    qf_dedup *d = qf_calloc(1, sizeof *d);
    if (!d) goto oom;
    d->near = near;
    d->max_ham = max_hamming < 0 ? 0 : max_hamming > 3 ? 3 : max_hamming;
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
    qf_free(d->tab);
    qf_free(d);
}

int64_t qf_dedup_size(const qf_dedup *d) { return d->n_ent; }

static uint64_t mix(uint64_t k, uint64_t salt) {
    uint64_t x = k ^ (salt * 0x9E3779B97F4A7C15ULL);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 29;
    return x ? x : 1;
}

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

static bool tab_put(qf_dedup *d, uint64_t key, int64_t e) {
    if ((d->n_tab + 1) * 2 > d->cap_tab && !tab_grow(d)) return false;
    int64_t h = (int64_t)(key & (uint64_t)(d->cap_tab - 1));
    while (d->tab[h].key) h = (h + 1) & (d->cap_tab - 1);
    d->tab[h].key = key;
    d->tab[h].e = e;
    d->n_tab++;
    return true;
}

static int popcount64(uint64_t x) {
    int n = 0;
    while (x) {
        x &= x - 1;
        n++;
    }
    return n;
}

/* First entry under key accepted by pred (sim: compare SimHashes). */
static int64_t tab_find(const qf_dedup *d, uint64_t key, const qf_qfp *fp, bool sim) {
    int64_t h = (int64_t)(key & (uint64_t)(d->cap_tab - 1));
    while (d->tab[h].key) {
        if (d->tab[h].key == key) {
            const entry *e = &d->ent[d->tab[h].e];
            if (!sim || (e->sim_ok && popcount64(e->simhash ^ fp->simhash) <= d->max_ham)) return d->tab[h].e;
        }
        h = (h + 1) & (d->cap_tab - 1);
    }
    return -1;
}

bool qf_dedup_check_add(qf_dedup *d, const qf_qfp *fp, const char *id, char dup_of[33], bool *oom) {
    if (oom) *oom = false;
    bool sim_ok = fp->n_words >= 6;
    int64_t hit = tab_find(d, mix(fp->exact, 1), fp, false);
    if (hit < 0 && d->near && fp->bag) hit = tab_find(d, mix(fp->bag, 2), fp, false);
    if (hit < 0 && d->near && sim_ok) {
        for (int b = 0; b < 4 && hit < 0; b++)
            hit = tab_find(d, mix((fp->simhash >> (16 * b)) & 0xFFFF, 3 + (uint64_t)b), fp, true);
    }
    if (hit >= 0) {
        memcpy(dup_of, d->ent[hit].id, 33);
        return true;
    }
    if (d->n_ent == d->cap_ent) {
        int64_t cap = d->cap_ent ? d->cap_ent * 2 : 256;
        entry *e = qf_realloc(d->ent, (size_t)cap * sizeof *e);
        if (!e) goto oom;
        d->ent = e;
        d->cap_ent = cap;
    }
    int64_t ei = d->n_ent;
    entry *e = &d->ent[ei];
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", id);
    e->simhash = fp->simhash;
    e->sim_ok = sim_ok;
    /* reserve table room for up to 6 keys first, so a failure adds nothing */
    while ((d->n_tab + 6) * 2 > d->cap_tab)
        if (!tab_grow(d)) goto oom;
    d->n_ent++;
    tab_put(d, mix(fp->exact, 1), ei);
    if (d->near && fp->bag) tab_put(d, mix(fp->bag, 2), ei);
    if (d->near && sim_ok)
        for (int b = 0; b < 4; b++) tab_put(d, mix((fp->simhash >> (16 * b)) & 0xFFFF, 3 + (uint64_t)b), ei);
    return false;
oom:
    if (oom) *oom = true;
    return false;
}
