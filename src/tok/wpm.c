/* wpm.c - WordPiece (tokenizer.ggml.model "bert") encoding of one fragment.
 *
 * Normalisation is llama.cpp's llm_tokenizer_wpm_session::preprocess, done
 * in one pass over the code points: with strip_accents each code point is
 * first replaced by the first code point of its NFD form; whitespace ends the
 * current word; NUL, U+FFFD, other control/format/unassigned code points (and
 * with strip_accents combining marks) are dropped; punctuation, ASCII symbols
 * and CJK ideographs become one-character words; everything else, lower-cased
 * when asked, is appended to the current word. Invalid UTF-8 bytes are
 * dropped (llama.cpp turns them into U+FFFD, which it drops).
 *
 * Each word, prefixed with U+2581 (how the GGUF spells word-initial pieces),
 * is matched greedily left to right, longest vocab piece first; a word with
 * an unmatched position becomes the single [UNK] token. Cost per word is
 * O(len * max_token_len) hash look-ups.
 */
#include <string.h>

#include "base/mem.h"
#include "tok/tok_int.h"

typedef struct wbuf {
    char *v;
    size_t n, cap;
} wbuf;

static qf_status wbuf_put(wbuf *w, const char *s, size_t n) {
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        while (cap < w->n + n)
            cap *= 2;
        char *p = qf_realloc(w->v, cap);
        if (!p) return QF_ERR_NOMEM;
        w->v = p;
        w->cap = cap;
    }
    memcpy(w->v + w->n, s, n);
    w->n += n;
    return QF_OK;
}

/* BERT's CJK ranges (as the HF/llama.cpp code, 0x2B920 start included) */
static bool is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Greedy longest-match of the word in w->v (which starts with U+2581). */
static qf_status match_word(const qf_tok *t, const wbuf *w, tok_vec *out) {
    size_t n = w->n, start = out->n;
    for (size_t i = 0; i < n;) {
        size_t j = n - i > t->max_len ? i + t->max_len : n;
        int32_t id = -1;
        for (; j > i; j--) {
            id = tok_lookup(t, w->v + i, j - i);
            if (id >= 0) break;
        }
        if (id < 0) { /* this word cannot be spelled: it is one [UNK] */
            out->n = start;
            break;
        }
        if (tok_vec_push(out, id)) return QF_ERR_NOMEM;
        i = j;
    }
    if (out->n == start && t->unk >= 0) return tok_vec_push(out, t->unk);
    return QF_OK;
}

static qf_status end_word(const qf_tok *t, wbuf *w, tok_vec *out) {
    qf_status st = QF_OK;
    if (w->n > 3) st = match_word(t, w, out);
    w->n = 3; /* keep the U+2581 prefix */
    return st;
}

qf_status tok_wpm_encode(const qf_tok *t, const char *text, size_t len, tok_vec *out, qf_err *err) {
    wbuf w = {0};
    qf_status st = wbuf_put(&w, "\xe2\x96\x81", 3);
    const uint8_t *u = (const uint8_t *)text;
    for (size_t i = 0; i < len && !st;) {
        size_t k = tok_utf8_len(u + i, len - i);
        if (k == 0) { /* invalid byte: dropped */
            i++;
            continue;
        }
        uint32_t cp = tok_utf8_decode(u + i, k);
        i += k;
        if (t->wpm_strip_accents) cp = tok_unfd_first(cp);
        if (tok_uspace(cp)) {
            st = end_word(t, &w, out);
            continue;
        }
        int cat = tok_ucat(cp);
        if (cp == 0 || cp == 0xFFFD || cat == TOK_UCAT_C) continue;
        if (t->wpm_strip_accents && cat == TOK_UCAT_M) continue;
        char enc[4];
        size_t m = tok_utf8_encode(t->wpm_lower ? tok_ulower(cp) : cp, enc);
        if (cat == TOK_UCAT_P || (cp < 0x7F && cat == TOK_UCAT_S) || is_cjk(cp)) {
            st = end_word(t, &w, out);
            if (!st) st = wbuf_put(&w, enc, m);
            if (!st) st = end_word(t, &w, out);
        } else {
            st = wbuf_put(&w, enc, m);
        }
    }
    if (!st) st = end_word(t, &w, out);
    qf_free(w.v);
    if (st) QF_ERR_SET(err, st, "%s: out of memory tokenizing", t->name);
    return st;
}
