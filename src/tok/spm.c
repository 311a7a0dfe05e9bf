/* spm.c - SentencePiece-style (llama) encoding of one text fragment.
 *
 * The fragment (with one space prepended when asked) has every ' ' replaced
 * by U+2581 and is cut into symbols: one per UTF-8 character, and one per
 * byte that is not part of a well-formed sequence. Symbols form a doubly
 * linked list over that buffer. Every adjacent pair whose joined bytes are a
 * vocab token is a candidate bigram, kept in a max-heap ordered by the
 * token's score, ties going to the leftmost pair. Popping the best bigram
 * merges the right symbol into the left one and adds the two new candidate
 * pairs around it; a popped bigram is stale when either symbol was merged
 * away or grew since (left.n + right.n != recorded size: symbols only grow,
 * so the size check is exact). This is llama.cpp's llm_tokenizer_spm, which
 * matches any vocab token as a merge target regardless of its type.
 *
 * At the end each symbol is emitted as its token, or, when its bytes are no
 * token (a character outside the vocab, an invalid byte), as one byte token
 * <0xXX> per byte (falling back to the 1-byte token, then <unk>).
 *
 * When no vocab token has U+2581 after another character (checked once at
 * load), no symbol can span a word start, so each word is merged on its own:
 * the same result as one global queue, with small heaps.
 *
 * Cost: O(n log n) in the fragment length; memory O(n).
 */
#include <string.h>

#include "base/mem.h"
#include "tok/tok_int.h"

typedef struct sym {
    int32_t prev, next;
    uint32_t off, n; /* bytes in the escaped buffer; n == 0: merged away */
} sym;

typedef struct bigram {
    float score;
    int32_t left, right;
    uint32_t size;
} bigram;

typedef struct heap {
    bigram *v;
    size_t n, cap;
} heap;

/* a ranks above b: higher score, then smaller left index */
static bool above(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static qf_status heap_push(heap *h, bigram b) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        bigram *p = qf_realloc(h->v, cap * sizeof *p);
        if (!p) return QF_ERR_NOMEM;
        h->v = p;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!above(&b, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = b;
    return QF_OK;
}

static bigram heap_pop(heap *h) {
    bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && above(&h->v[c + 1], &h->v[c])) c++;
        if (!above(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

static qf_status try_bigram(const qf_tok *t, const char *buf, const sym *s, int32_t l, int32_t r,
                            heap *h) {
    if (l < 0 || r < 0) return QF_OK;
    uint32_t size = s[l].n + s[r].n;
    if (size > t->max_len) return QF_OK;
    int32_t id = tok_lookup(t, buf + s[l].off, size);
    if (id < 0) return QF_OK;
    return heap_push(h, (bigram){t->score[id], l, r, size});
}

static qf_status emit_bytes(const qf_tok *t, const uint8_t *p, uint32_t n, tok_vec *out) {
    for (uint32_t k = 0; k < n; k++) {
        int32_t id = t->byte_id[p[k]];
        if (id < 0) id = t->unk;
        if (id >= 0 && tok_vec_push(out, id)) return QF_ERR_NOMEM;
    }
    return QF_OK;
}

/* Merges the symbols of buf[from, to) and appends their ids; s and h are
 * scratch sized for the whole buffer. */
static qf_status spm_span(const qf_tok *t, const char *buf, size_t from, size_t to, sym *s, heap *h,
                          tok_vec *out) {
    int32_t ns = 0;
    for (size_t i = from; i < to;) {
        size_t k = tok_utf8_len((const uint8_t *)buf + i, to - i);
        if (k == 0) k = 1; /* an invalid byte stands alone */
        s[ns] = (sym){ns - 1, ns + 1, (uint32_t)i, (uint32_t)k};
        ns++;
        i += k;
    }
    if (ns == 0) return QF_OK;
    s[ns - 1].next = -1;
    h->n = 0;
    for (int32_t i = 1; i < ns; i++)
        if (try_bigram(t, buf, s, i - 1, i, h)) return QF_ERR_NOMEM;
    while (h->n) {
        bigram b = heap_pop(h);
        sym *l = &s[b.left], *r = &s[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        if (try_bigram(t, buf, s, l->prev, b.left, h)) return QF_ERR_NOMEM;
        if (try_bigram(t, buf, s, b.left, l->next, h)) return QF_ERR_NOMEM;
    }
    for (int32_t i = 0; i != -1; i = s[i].next) {
        int32_t id = tok_lookup(t, buf + s[i].off, s[i].n);
        if (id >= 0) {
            if (tok_vec_push(out, id)) return QF_ERR_NOMEM;
        } else if (emit_bytes(t, (const uint8_t *)buf + s[i].off, s[i].n, out)) {
            return QF_ERR_NOMEM;
        }
    }
    return QF_OK;
}

/* spm_span through the word cache */
static qf_status spm_word(const qf_tok *t, const char *buf, size_t from, size_t to, sym *s, heap *h,
                          tok_wcache *cache, tok_vec *out) {
    tok_wcache_slot *slot;
    int hit = tok_wcache_get(cache, buf, (uint32_t)from, to - from, out, &slot);
    if (hit) return hit < 0 ? QF_ERR_NOMEM : QF_OK;
    size_t before = out->n;
    qf_status st = spm_span(t, buf, from, to, s, h, out);
    if (!st && slot) st = tok_wcache_put(cache, slot, (uint32_t)from, to - from, out, before);
    return st;
}

static bool is_ws_mark(const char *p) {
    return memcmp(p, "\xe2\x96\x81", 3) == 0;
}

void tok_spm_init(qf_tok *t) {
    /* Can words be merged independently? Only if no token has U+2581 after
     * something other than U+2581 (true for SentencePiece models trained
     * with split_by_whitespace, llama's included). */
    t->spm_split_words = true;
    for (int32_t id = 0; id < t->n_vocab && t->spm_split_words; id++) {
        const char *s = t->blob + t->off[id];
        uint32_t n = t->len[id];
        for (uint32_t k = 1; k + 3 <= n; k++)
            if (is_ws_mark(s + k) && (k < 3 || !is_ws_mark(s + k - 3))) {
                t->spm_split_words = false;
                break;
            }
    }
}

qf_status tok_spm_encode(const qf_tok *t, const char *text, size_t len, bool prefix_space,
                         tok_vec *out, qf_err *err) {
    (void)err;
    size_t cap = 3 * (len + 1);
    char *buf = qf_malloc(cap);
    sym *s = NULL;
    heap h = {0};
    tok_wcache cache = {0};
    qf_status st = QF_ERR_NOMEM;
    if (!buf) goto done;
    size_t n = 0;
    if (prefix_space) {
        memcpy(buf, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            buf[n++] = text[i];
        }
    }
    if (n == 0) {
        st = QF_OK;
        goto done;
    }
    s = qf_malloc(n * sizeof *s);
    if (!s) goto done;
    /* No symbol can ever span a point where a U+2581 follows another
     * character when no token contains such a pair, so the spans between
     * those points merge independently: same result, small heaps. */
    size_t from = 0;
    if (t->spm_split_words) {
        if (n >= 4096 && tok_wcache_init(&cache, n / 8))
            goto done; /* natural text repeats its words */
        for (size_t p = 3; p + 3 <= n; p++) {
            if (is_ws_mark(buf + p) && !is_ws_mark(buf + p - 3)) {
                if (spm_word(t, buf, from, p, s, &h, &cache, out)) goto done;
                from = p;
            }
        }
    }
    if (spm_word(t, buf, from, n, s, &h, &cache, out)) goto done;
    st = QF_OK;
done:
    tok_wcache_free(&cache);
    qf_free(buf);
    qf_free(s);
    qf_free(h.v);
    return st;
}
