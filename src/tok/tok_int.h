/* tok_int.h - internals shared by the tokenizer files (tok.c, spm.c, bpe.c,
 * wpm.c, unicode.c). Not part of the public contract; see tok.h.
 *
 * Invariants of a built qf_tok (it is never written after construction, which
 * is what makes concurrent encode/decode safe):
 *   - token i's text is blob[off[i] .. off[i]+len[i]), NUL-terminated in blob;
 *     texts are unique (the vocab hash maps each to exactly one id);
 *   - type[i] is the final llama.cpp attribute class (after the EOG / gpt-oss /
 *     harmony overrides), 0 for an undefined type value;
 *   - piece[i] is the decoded text of token i as rendered with special=true;
 *   - specials[] lists CONTROL, USER_DEFINED and UNKNOWN ids by decreasing
 *     text length (then increasing id): the order llama.cpp cuts them out.
 */
#ifndef QF_TOK_INT_H
#define QF_TOK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

/* per-token flags */
#define TOK_F_EOG    0x01u
#define TOK_F_LSTRIP 0x02u /* strip whitespace left of this special token */
#define TOK_F_RSTRIP 0x04u /* strip whitespace right of this special token */

typedef struct tok_bpe tok_bpe; /* bpe.c */

/* Growable id vector used by the encoders. */
typedef struct tok_vec {
    int32_t *v;
    size_t n, cap;
} tok_vec;

/* Byte trie over the special-token texts, used to find which specials occur
 * in a text in one pass. Node 0 is the root. */
typedef struct tok_trie_node {
    int32_t child;   /* first child node, -1 */
    int32_t sibling; /* next sibling node, -1 */
    int32_t special; /* index into specials[] ending here, -1 */
    uint8_t byte;
} tok_trie_node;

struct qf_tok {
    qf_tok_kind kind;
    int32_t n_vocab;
    char *blob;       /* all token texts, each followed by a NUL */
    uint32_t *off;    /* (n_vocab) */
    uint32_t *len;    /* (n_vocab) */
    float *score;     /* (n_vocab) */
    uint8_t *type;    /* (n_vocab) qf_token_type values, 0 = undefined */
    uint8_t *flags;   /* (n_vocab) TOK_F_* */
    uint32_t max_len; /* longest token text in bytes */

    uint32_t *hslot; /* vocab hash: id + 1, 0 = empty; (hmask + 1) slots */
    uint32_t hmask;

    char *piece_blob;    /* decoded pieces (special=true rendering) */
    uint32_t *piece_off; /* (n_vocab) */
    uint32_t *piece_len; /* (n_vocab) */

    int32_t *specials; /* (n_specials) ids, cut-out order */
    int32_t n_specials;
    tok_trie_node *trie; /* (n_trie) */
    int32_t n_trie;
    int32_t trie_root[256]; /* first-level node per byte, -1 */

    int32_t bos, eos, eot, eom, unk, sep, pad;
    bool add_bos, add_eos, add_sep, add_space_prefix;
    bool wpm_lower, wpm_strip_accents;
    bool spm_split_words; /* SPM: words can be merged one at a time (spm.c) */

    int32_t byte_id[256]; /* SPM: id of <0xXX> (or the 1-byte token), else -1 */

    char *pre_name;
    char *chat_template;
    char *name; /* source name used in messages (GGUF path) */

    tok_bpe *bpe; /* BPE only */
};

/* ---- tok.c ---- */
int32_t tok_lookup(const qf_tok *t, const char *s, size_t n);
qf_status tok_vec_push(tok_vec *v, int32_t id);

/* Per-call cache of encoded words (natural text repeats its words; a hit
 * skips the merge loop). Keys are byte spans of one caller buffer `base`,
 * which must outlive the cache. A zeroed tok_wcache is a valid, disabled
 * cache (every get misses with no slot). */
typedef struct tok_wcache_slot {
    uint64_t hash; /* 0 = empty */
    uint32_t off, len;
    uint32_t ids_off, n_ids;
} tok_wcache_slot;

typedef struct tok_wcache {
    tok_wcache_slot *v;
    uint32_t mask, n;
    uint64_t pending; /* hash of the last miss, stored by put */
    tok_vec ids;
} tok_wcache;

qf_status tok_wcache_init(tok_wcache *c, size_t n_words); /* QF_ERR_NOMEM */
void tok_wcache_free(tok_wcache *c);
/* 1: hit, the ids were appended to out; 0: miss, *slot is where to put the
 * result (NULL: do not cache); -1: out of memory. */
int tok_wcache_get(tok_wcache *c, const char *base, uint32_t off, size_t len, tok_vec *out,
                   tok_wcache_slot **slot);
/* Stores out->v[before..] as the ids of base[off, off+len) in slot. */
qf_status tok_wcache_put(tok_wcache *c, tok_wcache_slot *slot, uint32_t off, size_t len,
                         const tok_vec *out, size_t before);

/* ---- spm.c / bpe.c / wpm.c: encode one raw-text fragment, appending ---- */
void tok_spm_init(qf_tok *t); /* after the tokens are loaded */
qf_status tok_spm_encode(const qf_tok *t, const char *text, size_t len, bool prefix_space,
                         tok_vec *out, qf_err *err);
/* Reads tokenizer.ggml.merges and sets up the pre-tokenizer for t->pre_name.
 * Needs t's vocab (hash) to be built. */
qf_status tok_bpe_init(qf_tok *t, const qf_gguf *g, qf_err *err);
void tok_bpe_free(tok_bpe *b);
qf_status tok_bpe_encode(const qf_tok *t, const char *text, size_t len, tok_vec *out, qf_err *err);
/* Decodes a byte-level BPE vocab string into raw bytes; out must hold len
 * bytes (decoding never grows). Returns the decoded length. */
size_t tok_bpe_decode_text(const char *s, size_t len, char *out);
bool tok_bpe_ignore_merges(const tok_bpe *b);
qf_status tok_wpm_encode(const qf_tok *t, const char *text, size_t len, tok_vec *out, qf_err *err);

/* ---- unicode.c ---- */
/* Length (1..4) of the well-formed UTF-8 sequence at s (n bytes available),
 * or 0 when s[0] does not start one (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). n must be > 0. */
size_t tok_utf8_len(const uint8_t *s, size_t n);
/* Decodes a sequence tok_utf8_len accepted. */
uint32_t tok_utf8_decode(const uint8_t *s, size_t len);
/* Writes cp (<= 0x10FFFF) as UTF-8 into out; returns 1..4. */
size_t tok_utf8_encode(uint32_t cp, char out[4]);

enum { TOK_UCAT_C, TOK_UCAT_L, TOK_UCAT_M, TOK_UCAT_N, TOK_UCAT_P, TOK_UCAT_S, TOK_UCAT_Z };
int tok_ucat(uint32_t cp);            /* major general category TOK_UCAT_* */
bool tok_uspace(uint32_t cp);         /* Unicode White_Space */
uint32_t tok_ulower(uint32_t cp);     /* first code point of the full lower-case */
uint32_t tok_unfd_first(uint32_t cp); /* first code point of NFD(cp) */

/* ---- unicode_data.c (generated) ---- */
extern const uint32_t tok_ucat_ranges[];
extern const size_t tok_ucat_ranges_n;
extern const int32_t tok_lower_runs[];
extern const size_t tok_lower_runs_n;
extern const uint32_t tok_nfd_first[];
extern const size_t tok_nfd_first_n;

#endif
