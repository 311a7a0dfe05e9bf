/* tok.c - the tokenizer object: loading from GGUF, vocab look-up, special
 * tokens, the encode driver, pieces and decode.
 *
 * Loading copies the token strings into one blob and indexes them with an
 * open-addressing hash (XXH3 of the bytes, linear probing, load <= 1/2). It
 * then applies llama.cpp's load-time rules in llama.cpp's order: defaults per
 * model kind, explicit keys, the EOT/EOM/FIM auto-detection by token text
 * (which forces those tokens to CONTROL), the end-of-generation set, the
 * gpt-oss and harmony type overrides, then builds the special-token list
 * (CONTROL, USER_DEFINED, UNKNOWN by decreasing length) and the decoded
 * piece of every token.
 *
 * Encoding first cuts special tokens out of the text exactly as llama.cpp's
 * tokenizer_st_partition does: for each special token in list order, every
 * occurrence in every still-raw fragment, left to right, becomes a token
 * fragment. To keep that cheap for vocabs with hundreds of specials, one pass
 * with a byte trie first finds which specials occur at all; only those are
 * searched for. Each raw fragment then goes to the SPM, BPE or WPM encoder.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/log.h"
#include "base/mem.h"
#include "tok/tok_int.h"

#define TOK_MAX_TEXT  0x7FFFFFFFu /* encode input limit: offsets are 32-bit */
#define TOK_MAX_VOCAB (1u << 28)  /* keeps every table size within 32 bits */

/* ---- small helpers ---- */

qf_status tok_vec_push(tok_vec *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = qf_realloc(v->v, cap * sizeof *p);
        if (!p) return QF_ERR_NOMEM;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = id;
    return QF_OK;
}

static bool ascii_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static bool in_range(const qf_tok *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab;
}

/* ---- word cache ---- */

#define WCACHE_MAX_LEN 64 /* longer words rarely repeat */

qf_status tok_wcache_init(tok_wcache *c, size_t n_words) {
    uint32_t cap = 1024;
    while (cap < n_words && cap < (1u << 16))
        cap *= 2;
    c->v = qf_calloc(cap, sizeof *c->v);
    if (!c->v) return QF_ERR_NOMEM;
    c->mask = cap - 1;
    c->n = 0;
    return QF_OK;
}

void tok_wcache_free(tok_wcache *c) {
    qf_free(c->v);
    qf_free(c->ids.v);
    memset(c, 0, sizeof *c);
}

int tok_wcache_get(tok_wcache *c, const char *base, uint32_t off, size_t len, tok_vec *out,
                   tok_wcache_slot **slot) {
    *slot = NULL;
    if (!c->v || len > WCACHE_MAX_LEN) return 0;
    const char *p = base + off;
    uint64_t h = XXH3_64bits(p, len);
    h += !h; /* 0 marks empty slots */
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        tok_wcache_slot *e = &c->v[i];
        if (!e->hash) { /* miss; keep the load under 1/2 so probes stay short */
            if (c->n * 2 < c->mask) {
                *slot = e;
                c->pending = h;
            }
            return 0;
        }
        if (e->hash == h && e->len == len && memcmp(base + e->off, p, len) == 0) {
            for (uint32_t k = 0; k < e->n_ids; k++)
                if (tok_vec_push(out, c->ids.v[e->ids_off + k])) return -1;
            return 1;
        }
    }
}

qf_status tok_wcache_put(tok_wcache *c, tok_wcache_slot *slot, uint32_t off, size_t len,
                         const tok_vec *out, size_t before) {
    uint32_t ids_off = (uint32_t)c->ids.n;
    for (size_t k = before; k < out->n; k++)
        if (tok_vec_push(&c->ids, out->v[k])) return QF_ERR_NOMEM;
    *slot = (tok_wcache_slot){c->pending, off, (uint32_t)len, ids_off, (uint32_t)(out->n - before)};
    c->n++;
    return QF_OK;
}

/* ---- vocab hash ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    return XXH3_64bits(s, n);
}

int32_t tok_lookup(const qf_tok *t, const char *s, size_t n) {
    uint32_t i = (uint32_t)hash_bytes(s, n) & t->hmask;
    for (;;) {
        uint32_t slot = t->hslot[i];
        if (!slot) return -1;
        int32_t id = (int32_t)(slot - 1);
        if (t->len[id] == n && memcmp(t->blob + t->off[id], s, n) == 0) return id;
        i = (i + 1) & t->hmask;
    }
}

/* Inserts every token; fails on a duplicate text (llama.cpp refuses those). */
static qf_status build_hash(qf_tok *t, qf_err *err) {
    uint32_t cap = 16;
    while (cap < (uint32_t)t->n_vocab * 2u)
        cap *= 2;
    t->hslot = qf_calloc(cap, sizeof *t->hslot);
    if (!t->hslot)
        return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory for the vocab index", t->name);
    t->hmask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->blob + t->off[id];
        uint32_t i = (uint32_t)hash_bytes(s, t->len[id]) & t->hmask;
        while (t->hslot[i]) {
            int32_t o = (int32_t)(t->hslot[i] - 1);
            if (t->len[o] == t->len[id] && memcmp(t->blob + t->off[o], s, t->len[id]) == 0)
                return QF_ERR_SET(err, QF_ERR_FORMAT,
                                  "%s: duplicate token in vocabulary: '%.64s' has ids %d and %d",
                                  t->name, s, o, id);
            i = (i + 1) & t->hmask;
        }
        t->hslot[i] = (uint32_t)id + 1;
    }
    return QF_OK;
}

/* ---- loading ---- */

static bool get_str(const qf_gguf *g, const char *key, char **out, qf_status *st) {
    qf_gguf_str s;
    *out = NULL;
    if (!qf_gguf_get_str(g, key, &s)) return false;
    *out = qf_strndup(s.ptr, (size_t)s.len);
    if (!*out) *st = QF_ERR_NOMEM;
    return true;
}

/* Reads an optional token-id key into *id when present and in range. */
static void read_id(qf_tok *t, const qf_gguf *g, const char *key, int32_t *id) {
    int64_t v;
    if (!qf_gguf_get_int(g, key, &v)) return;
    if (v < 0 || v >= t->n_vocab) {
        qf_warn("%s: %s = %lld is outside the vocabulary; using %d", t->name, key, (long long)v,
                *id);
        return;
    }
    *id = (int32_t)v;
}

static void read_bool(const qf_gguf *g, const char *key, bool *b) {
    bool v;
    if (qf_gguf_get_bool(g, key, &v)) *b = v;
}

/* Copies the token strings (renaming empty ones as llama.cpp does), scores
 * and types. */
static qf_status load_tokens(qf_tok *t, const qf_gguf *g, qf_err *err) {
    qf_gguf_arr toks, arr;
    if (!qf_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks))
        return QF_ERR_SET(err, QF_ERR_FORMAT,
                          "%s: tokenizer.ggml.tokens missing (not a string array?)", t->name);
    if (toks.type != QF_GGUF_STRING)
        return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: tokenizer.ggml.tokens is not a string array",
                          t->name);
    if (toks.n == 0 || toks.n > TOK_MAX_VOCAB)
        return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries", t->name,
                          (unsigned long long)toks.n);
    int32_t n = (int32_t)toks.n;
    t->n_vocab = n;

    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        qf_gguf_str s = qf_gguf_arr_str(g, &toks, (uint64_t)i);
        total += (s.len ? s.len : 24) + 1;
    }
    if (total >= 0xFFFFFFFFull)
        return QF_ERR_SET(err, QF_ERR_RANGE, "%s: token strings too large (%llu bytes)", t->name,
                          (unsigned long long)total);
    t->blob = qf_malloc((size_t)total);
    t->off = qf_calloc((size_t)n, sizeof *t->off);
    t->len = qf_calloc((size_t)n, sizeof *t->len);
    t->score = qf_calloc((size_t)n, sizeof *t->score);
    t->type = qf_calloc((size_t)n, 1);
    t->flags = qf_calloc((size_t)n, 1);
    if (!t->blob || !t->off || !t->len || !t->score || !t->type || !t->flags)
        return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory for %d tokens", t->name, n);
    uint32_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        qf_gguf_str s = qf_gguf_arr_str(g, &toks, (uint64_t)i);
        t->off[i] = pos;
        if (s.len == 0) {
            int k = snprintf(t->blob + pos, 25, "[EMPTY_%d]", i);
            t->len[i] = (uint32_t)k;
            qf_warn("%s: empty token at index %d", t->name, i);
        } else {
            memcpy(t->blob + pos, s.ptr, (size_t)s.len);
            t->len[i] = (uint32_t)s.len;
        }
        pos += t->len[i];
        t->blob[pos++] = '\0';
        if (t->len[i] > t->max_len) t->max_len = t->len[i];
    }

    if (qf_gguf_find_kv(g, "tokenizer.ggml.scores") >= 0) {
        if (!qf_gguf_get_arr(g, "tokenizer.ggml.scores", &arr) ||
            (arr.type != QF_GGUF_FLOAT32 && arr.type != QF_GGUF_INT32))
            return QF_ERR_SET(err, QF_ERR_FORMAT,
                              "%s: tokenizer.ggml.scores is not an f32/i32 array", t->name);
        if (arr.n < toks.n)
            return QF_ERR_SET(err, QF_ERR_FORMAT,
                              "%s: tokenizer.ggml.scores has %llu entries for %d tokens", t->name,
                              (unsigned long long)arr.n, n);
        for (int32_t i = 0; i < n; i++)
            t->score[i] = (float)qf_gguf_arr_float(&arr, (uint64_t)i);
    }
    if (qf_gguf_find_kv(g, "tokenizer.ggml.token_type") >= 0) {
        if (!qf_gguf_get_arr(g, "tokenizer.ggml.token_type", &arr) || arr.type != QF_GGUF_INT32)
            return QF_ERR_SET(err, QF_ERR_FORMAT,
                              "%s: tokenizer.ggml.token_type is not an i32 array", t->name);
        if (arr.n < toks.n)
            return QF_ERR_SET(err, QF_ERR_FORMAT,
                              "%s: tokenizer.ggml.token_type has %llu entries for %d tokens",
                              t->name, (unsigned long long)arr.n, n);
        for (int32_t i = 0; i < n; i++) {
            int64_t v = qf_gguf_arr_int(&arr, (uint64_t)i);
            t->type[i] = (v >= QF_TOKEN_NORMAL && v <= QF_TOKEN_BYTE) ? (uint8_t)v : 0;
        }
    } else {
        memset(t->type, QF_TOKEN_NORMAL, (size_t)n);
    }
    return QF_OK;
}

/* First id (in list order) of a token whose text is one of names, or -1. */
static int32_t find_first(const qf_tok *t, const char *const *names) {
    for (; *names; names++) {
        int32_t id = tok_lookup(t, *names, strlen(*names));
        if (id >= 0) return id;
    }
    return -1;
}

static void force_control(qf_tok *t, int32_t id) {
    if (id >= 0 && t->type[id] != QF_TOKEN_CONTROL) {
        qf_debug("%s: control-looking token %d '%s' was not control-type; overriding", t->name, id,
                 t->blob + t->off[id]);
        t->type[id] = QF_TOKEN_CONTROL;
    }
}

/* Special ids by token text, as llama.cpp's load: auto-detected ids become
 * CONTROL; the end-of-generation set gets every EOG-named token plus eos,
 * eot, eom and the fim pad/repo/sep tokens. */
static void detect_specials(qf_tok *t, const qf_gguf *g) {
    static const char *const k_eot[] = {"<|eot_id|>",
                                        "<|im_end|>",
                                        "<|end|>",
                                        "<end_of_turn>",
                                        "<|endoftext|>",
                                        "<|end_of_text|>",
                                        "<EOT>",
                                        "_<EOT>",
                                        "[EOT]",
                                        "<\xef\xbd\x9c"
                                        "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "<end_of_utterance>",
                                        NULL};
    static const char *const k_eom[] = {"<|eom_id|>", NULL};
    static const char *const k_fim_pre[] = {"<|fim_prefix|>",
                                            "<fim-prefix>",
                                            "<fim_prefix>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81"
                                            "begin\xef\xbd\x9c>",
                                            "<PRE>",
                                            "\xe2\x96\x81<PRE>",
                                            "<|code_prefix|>",
                                            "<|prefix|>",
                                            NULL};
    static const char *const k_fim_suf[] = {"<|fim_suffix|>",
                                            "<fim-suffix>",
                                            "<fim_suffix>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81hole\xef\xbd\x9c>",
                                            "<SUF>",
                                            "\xe2\x96\x81<SUF>",
                                            "<|code_suffix|>",
                                            "<|suffix|>",
                                            NULL};
    static const char *const k_fim_mid[] = {"<|fim_middle|>",
                                            "<fim-middle>",
                                            "<fim_middle>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81"
                                            "end\xef\xbd\x9c>",
                                            "<MID>",
                                            "\xe2\x96\x81<MID>",
                                            "<|code_middle|>",
                                            "<|middle|>",
                                            NULL};
    static const char *const k_fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>",
                                            "<PAD>",       "[PAD]",     NULL};
    static const char *const k_fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                            "<REPO>",       "<reponame>",    NULL};
    static const char *const k_fim_sep[] = {"<|file_sep|>", NULL};
    static const char *const k_eog[] = {"<|eot_id|>",
                                        "<|im_end|>",
                                        "<|end|>",
                                        "<|return|>",
                                        "<|call|>",
                                        "<|flush|>",
                                        "<|calls|>",
                                        "<end_of_turn>",
                                        "<|endoftext|>",
                                        "</s>",
                                        "<|eom_id|>",
                                        "<EOT>",
                                        "_<EOT>",
                                        "[EOT]",
                                        "[EOS]",
                                        "<|end_of_text|>",
                                        "<end_of_utterance>",
                                        "<eos>",
                                        "<turn|>",
                                        "<|tool_response>",
                                        "<\xef\xbd\x9c"
                                        "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "[e~[",
                                        NULL};
    static const char *const k_fim_keys[6][2] = {
        {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"},
        {"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"},
        {"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"},
        {"tokenizer.ggml.fim_pad_token_id", NULL},
        {"tokenizer.ggml.fim_rep_token_id", NULL},
        {"tokenizer.ggml.fim_sep_token_id", NULL},
    };
    static const char *const *const k_fim_names[6] = {k_fim_pre, k_fim_suf, k_fim_mid,
                                                      k_fim_pad, k_fim_rep, k_fim_sep};

    if (t->eot < 0) {
        t->eot = find_first(t, k_eot);
        force_control(t, t->eot);
    }
    if (t->eom < 0) {
        t->eom = find_first(t, k_eom);
        force_control(t, t->eom);
    }
    int32_t fim[6];
    for (int k = 0; k < 6; k++) {
        fim[k] = -1;
        for (int j = 0; j < 2; j++)
            if (k_fim_keys[k][j]) read_id(t, g, k_fim_keys[k][j], &fim[k]);
        if (fim[k] < 0) {
            fim[k] = find_first(t, k_fim_names[k]);
            force_control(t, fim[k]);
        }
    }
    for (int k = 3; k < 6; k++)
        if (fim[k] >= 0) t->flags[fim[k]] |= TOK_F_EOG;
    for (const char *const *p = k_eog; *p; p++) {
        int32_t id = tok_lookup(t, *p, strlen(*p));
        if (id < 0) continue;
        t->flags[id] |= TOK_F_EOG;
        force_control(t, id);
    }
    /* gpt-oss: these render as text and are always split out */
    static const char *const k_gptoss[] = {"<|channel|>", "<|message|>", "<|start|>",
                                           "<|constrain|>", NULL};
    for (const char *const *p = k_gptoss; *p; p++) {
        int32_t id = tok_lookup(t, *p, strlen(*p));
        if (id >= 0) t->type[id] = QF_TOKEN_USER_DEFINED;
    }
    if (t->eos >= 0) t->flags[t->eos] |= TOK_F_EOG;
    if (t->eot >= 0) t->flags[t->eot] |= TOK_F_EOG;
    if (t->eom >= 0) t->flags[t->eom] |= TOK_F_EOG;
    /* o200k_harmony / solar-open: <|end|> is not end of generation there */
    int32_t ret = tok_lookup(t, "<|return|>", 10), call = tok_lookup(t, "<|call|>", 8);
    int32_t calls = tok_lookup(t, "<|calls|>", 9), flush = tok_lookup(t, "<|flush|>", 9);
    int32_t end = tok_lookup(t, "<|end|>", 7);
    bool has_call = (call >= 0 && (t->flags[call] & TOK_F_EOG)) ||
                    (calls >= 0 && (t->flags[calls] & TOK_F_EOG));
    bool has_ret = ret >= 0 && (t->flags[ret] & TOK_F_EOG);
    bool has_flush = flush >= 0 && (t->flags[flush] & TOK_F_EOG);
    if (end >= 0 && (t->flags[end] & TOK_F_EOG) && has_call && (has_ret || has_flush)) {
        t->flags[end] &= (uint8_t)~TOK_F_EOG;
        t->type[end] = QF_TOKEN_USER_DEFINED;
    }
    /* gemma4 / paddleocr: </s> is an ordinary token next to <|tool_response> */
    int32_t tr = tok_lookup(t, "<|tool_response>", 16), s_end = tok_lookup(t, "</s>", 4);
    if (tr >= 0 && s_end >= 0 && (t->flags[tr] & TOK_F_EOG) && (t->flags[s_end] & TOK_F_EOG)) {
        t->flags[s_end] &= (uint8_t)~TOK_F_EOG;
        t->type[s_end] = QF_TOKEN_NORMAL;
    }
}

static bool is_special_type(uint8_t type) {
    return type == QF_TOKEN_CONTROL || type == QF_TOKEN_USER_DEFINED || type == QF_TOKEN_UNKNOWN;
}

/* true when special x is cut out before y: longer text first, then lower id */
static bool special_before(const qf_tok *t, int32_t x, int32_t y) {
    return t->len[x] > t->len[y] || (t->len[x] == t->len[y] && x < y);
}

/* Bottom-up merge sort of specials[] (qsort has no context argument and
 * constructions may run in parallel threads). tmp holds n_specials ids. */
static void sort_specials(qf_tok *t, int32_t *tmp) {
    int32_t n = t->n_specials;
    int32_t *a = t->specials, *b = tmp;
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                b[k++] = special_before(t, a[j], a[i]) ? a[j++] : a[i++];
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        int32_t *sw = a;
        a = b;
        b = sw;
    }
    if (a != t->specials) memcpy(t->specials, a, (size_t)n * sizeof *a);
}

static qf_status build_specials(qf_tok *t, qf_err *err) {
    int32_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        n += is_special_type(t->type[id]);
    t->specials = qf_malloc((size_t)(n ? n : 1) * sizeof *t->specials);
    if (!t->specials) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", t->name);
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_special_type(t->type[id])) t->specials[t->n_specials++] = id;
    int32_t *tmp = qf_malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", t->name);
    sort_specials(t, tmp);
    qf_free(tmp);

    /* trie over the texts: node count <= total bytes */
    size_t nodes = 1;
    for (int32_t i = 0; i < n; i++)
        nodes += t->len[t->specials[i]];
    if (nodes > 0x7FFFFFFF)
        return QF_ERR_SET(err, QF_ERR_RANGE, "%s: special tokens too long", t->name);
    t->trie = qf_malloc(nodes * sizeof *t->trie);
    if (!t->trie) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", t->name);
    for (int b = 0; b < 256; b++)
        t->trie_root[b] = -1;
    t->n_trie = 0;
    for (int32_t i = 0; i < n; i++) {
        const uint8_t *s = (const uint8_t *)t->blob + t->off[t->specials[i]];
        uint32_t len = t->len[t->specials[i]];
        int32_t *link = &t->trie_root[s[0]];
        int32_t node = -1;
        for (uint32_t k = 0; k < len; k++) {
            /* find the child with byte s[k] in the sibling chain at *link */
            int32_t c = *link;
            while (c >= 0 && t->trie[c].byte != s[k])
                c = t->trie[c].sibling;
            if (c < 0) {
                c = t->n_trie++;
                t->trie[c] =
                    (tok_trie_node){.child = -1, .sibling = *link, .special = -1, .byte = s[k]};
                *link = c;
            }
            node = c;
            link = &t->trie[c].child;
        }
        t->trie[node].special = i;
    }
    return QF_OK;
}

/* Per-token strip attributes llama.cpp sets by model name / pre / arch. */
static void set_strip_attrs(qf_tok *t, const qf_gguf *g) {
    qf_gguf_str s;
    char name[256] = "", pre[128] = "", arch[128] = "";
    if (qf_gguf_get_str(g, "general.name", &s))
        snprintf(name, sizeof name, "%.*s", (int)(s.len < 255 ? s.len : 255), s.ptr);
    if (qf_gguf_get_str(g, "tokenizer.ggml.pre", &s))
        snprintf(pre, sizeof pre, "%.*s", (int)(s.len < 127 ? s.len : 127), s.ptr);
    if (qf_gguf_get_str(g, "general.architecture", &s))
        snprintf(arch, sizeof arch, "%.*s", (int)(s.len < 127 ? s.len : 127), s.ptr);
    for (char *p = name; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    if (strstr(pre, "jina-v2-de") || strstr(pre, "jina-v2-es") || strstr(pre, "jina-v2-code") ||
        strstr(arch, "nomic-bert-moe") || strstr(arch, "jina-bert-v3")) {
        int32_t id = tok_lookup(t, "<mask>", 6);
        if (id >= 0) t->flags[id] |= TOK_F_LSTRIP;
    } else if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (int32_t i = 0; i < t->n_specials; i++)
            t->flags[t->specials[i]] |= TOK_F_RSTRIP;
        int32_t id = tok_lookup(t, "</s>", 4);
        if (id >= 0) t->flags[id] |= TOK_F_RSTRIP;
        static const char *const k_no[] = {"<unk>", "<s>", "<|endoftext|>", NULL};
        for (const char *const *p = k_no; *p; p++) {
            id = tok_lookup(t, *p, strlen(*p));
            if (id >= 0) t->flags[id] &= (uint8_t)~TOK_F_RSTRIP;
        }
    } else if (strstr(name, "modern-bert")) {
        int32_t id = tok_lookup(t, "[MASK]", 6);
        if (id >= 0) t->flags[id] |= TOK_F_LSTRIP;
    }
}

/* Byte <0xXX> -> its value, or -1 when text is not of that form. */
static int parse_byte_token(const char *s, uint32_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                         : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decoded text of every token as rendered with special=true (llama.cpp's
 * token_to_piece cache). */
static qf_status build_pieces(qf_tok *t, qf_err *err) {
    size_t total = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        total += t->len[i];
    t->piece_blob = qf_malloc(total ? total : 1);
    t->piece_off = qf_calloc((size_t)t->n_vocab, sizeof *t->piece_off);
    t->piece_len = qf_calloc((size_t)t->n_vocab, sizeof *t->piece_len);
    if (!t->piece_blob || !t->piece_off || !t->piece_len)
        return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory for token pieces", t->name);
    uint32_t pos = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const char *s = t->blob + t->off[i];
        uint32_t len = t->len[i], n = 0;
        char *out = t->piece_blob + pos;
        switch (t->type[i]) {
        case QF_TOKEN_CONTROL:
        case QF_TOKEN_UNKNOWN:
        case QF_TOKEN_USER_DEFINED:
            memcpy(out, s, len);
            n = len;
            break;
        case QF_TOKEN_NORMAL:
            if (t->kind == QF_TOK_BPE) {
                n = (uint32_t)tok_bpe_decode_text(s, len, out);
            } else { /* U+2581 -> ' ' (3 bytes -> 1: never grows) */
                for (uint32_t k = 0; k < len;) {
                    if (k + 3 <= len && memcmp(s + k, "\xe2\x96\x81", 3) == 0) {
                        out[n++] = ' ';
                        k += 3;
                    } else {
                        out[n++] = s[k++];
                    }
                }
            }
            break;
        case QF_TOKEN_BYTE: {
            int b = parse_byte_token(s, len);
            if (b >= 0 && t->kind != QF_TOK_WPM) {
                out[0] = (char)b;
                n = 1;
            } else {
                memcpy(out, s, len);
                n = len;
            }
            break;
        }
        default: /* UNUSED, undefined: render nothing (as llama.cpp) */
            break;
        }
        t->piece_off[i] = pos;
        t->piece_len[i] = n;
        pos += n;
    }
    return QF_OK;
}

static void set_byte_ids(qf_tok *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        int32_t id = tok_lookup(t, buf, 6);
        if (id < 0) {
            char c = (char)b;
            id = tok_lookup(t, &c, 1);
        }
        t->byte_id[b] = id;
    }
}

qf_tok *qf_tok_new_from_gguf(const qf_gguf *g, qf_err *err) {
    qf_status st = QF_OK;
    qf_tok *t = NULL;
    char *model = NULL;
    if (!g) {
        QF_ERR_SET(err, QF_ERR_INVALID, "qf_tok_new_from_gguf: NULL gguf");
        return NULL;
    }
    t = qf_calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->name = qf_strdup(qf_gguf_path(g) ? qf_gguf_path(g) : "gguf");
    if (!t->name) goto nomem;
    t->bos = t->eos = t->eot = t->eom = t->unk = t->sep = t->pad = -1;

    if (!get_str(g, "tokenizer.ggml.model", &model, &st)) {
        QF_ERR_SET(err, QF_ERR_FORMAT, "%s: tokenizer.ggml.model missing (or not a string)",
                   t->name);
        goto fail;
    }
    if (st) goto nomem;
    if (!strcmp(model, "llama")) {
        t->kind = QF_TOK_SPM;
    } else if (!strcmp(model, "gpt2")) {
        t->kind = QF_TOK_BPE;
    } else if (!strcmp(model, "bert")) {
        t->kind = QF_TOK_WPM;
    } else {
        QF_ERR_SET(err, QF_ERR_UNSUPPORTED,
                   "%s: tokenizer model '%s' is not supported (llama, gpt2, bert)", t->name, model);
        goto fail;
    }
    if (get_str(g, "tokenizer.ggml.pre", &t->pre_name, &st) && st) goto nomem;
    if (!t->pre_name || !t->pre_name[0]) { /* absent or empty: "default" (llama.cpp) */
        qf_free(t->pre_name);
        t->pre_name = qf_strdup("default");
        if (!t->pre_name) goto nomem;
    }
    if (get_str(g, "tokenizer.chat_template", &t->chat_template, &st) && st) goto nomem;

    if (load_tokens(t, g, err)) goto fail;
    if (build_hash(t, err)) goto fail;

    /* defaults per kind (llama.cpp), then explicit keys */
    t->wpm_lower = true;
    if (t->kind == QF_TOK_SPM) {
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_bos = true;
        t->add_space_prefix = true;
    } else if (t->kind == QF_TOK_WPM) {
        t->bos = 101, t->unk = 100, t->sep = 102, t->pad = 0;
        t->add_bos = true;
        t->add_sep = true;
    } else {
        t->bos = 11, t->eos = 11;
    }
    int32_t *defaults[] = {&t->bos, &t->eos, &t->unk, &t->sep, &t->pad};
    for (size_t k = 0; k < sizeof defaults / sizeof defaults[0]; k++)
        if (*defaults[k] >= t->n_vocab) *defaults[k] = -1;
    if (t->kind == QF_TOK_BPE) {
        if (tok_bpe_init(t, g, err)) goto fail; /* may change bos / add_bos defaults by pre */
    } else if (t->kind == QF_TOK_SPM) {
        tok_spm_init(t);
    }
    if (t->kind == QF_TOK_WPM)
        read_id(t, g, "tokenizer.ggml.cls_token_id", &t->bos); /* [CLS] opens */
    read_id(t, g, "tokenizer.ggml.bos_token_id", &t->bos);
    read_id(t, g, "tokenizer.ggml.eos_token_id", &t->eos);
    read_id(t, g, "tokenizer.ggml.eot_token_id", &t->eot);
    read_id(t, g, "tokenizer.ggml.eom_token_id", &t->eom);
    read_id(t, g, "tokenizer.ggml.unknown_token_id", &t->unk);
    read_id(t, g, "tokenizer.ggml.seperator_token_id", &t->sep);
    read_id(t, g, "tokenizer.ggml.padding_token_id", &t->pad);
    read_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos);
    read_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos);
    read_bool(g, "tokenizer.ggml.add_sep_token", &t->add_sep);
    read_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix);
    read_bool(g, "tokenizer.ggml.normalizer.lowercase", &t->wpm_lower);
    t->wpm_strip_accents = t->wpm_lower;
    read_bool(g, "tokenizer.ggml.normalizer.strip_accents", &t->wpm_strip_accents);
    if (t->add_bos && t->bos < 0) {
        qf_warn("%s: add_bos_token is true but there is no BOS token; not adding one", t->name);
        t->add_bos = false;
    }
    if (t->add_eos && t->eos < 0) {
        qf_warn("%s: add_eos_token is true but there is no EOS token; not adding one", t->name);
        t->add_eos = false;
    }
    if (t->add_sep && t->sep < 0) t->add_sep = false;

    detect_specials(t, g);
    if (build_specials(t, err)) goto fail;
    set_strip_attrs(t, g);
    set_byte_ids(t);
    if (build_pieces(t, err)) goto fail;
    qf_free(model);
    return t;

nomem:
    QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory loading the tokenizer",
               t && t->name ? t->name : "gguf");
fail:
    qf_free(model);
    qf_tok_free(t);
    return NULL;
}

void qf_tok_free(qf_tok *t) {
    if (!t) return;
    tok_bpe_free(t->bpe);
    qf_free(t->blob);
    qf_free(t->off);
    qf_free(t->len);
    qf_free(t->score);
    qf_free(t->type);
    qf_free(t->flags);
    qf_free(t->hslot);
    qf_free(t->piece_blob);
    qf_free(t->piece_off);
    qf_free(t->piece_len);
    qf_free(t->specials);
    qf_free(t->trie);
    qf_free(t->pre_name);
    qf_free(t->chat_template);
    qf_free(t->name);
    qf_free(t);
}

/* ---- accessors ---- */

qf_tok_kind qf_tok_get_kind(const qf_tok *t) {
    return t->kind;
}
int32_t qf_tok_n_vocab(const qf_tok *t) {
    return t ? t->n_vocab : 0;
}
int32_t qf_tok_bos(const qf_tok *t) {
    return t->bos;
}
int32_t qf_tok_eos(const qf_tok *t) {
    return t->eos;
}
int32_t qf_tok_eot(const qf_tok *t) {
    return t->eot;
}
int32_t qf_tok_unk(const qf_tok *t) {
    return t->unk;
}
int32_t qf_tok_sep(const qf_tok *t) {
    return t->sep;
}
bool qf_tok_add_bos(const qf_tok *t) {
    return t->add_bos;
}
bool qf_tok_add_eos(const qf_tok *t) {
    return t->add_eos;
}
const char *qf_tok_chat_template(const qf_tok *t) {
    return t->chat_template;
}
const char *qf_tok_pre_name(const qf_tok *t) {
    return t->pre_name;
}

bool qf_tok_is_eog(const qf_tok *t, int32_t id) {
    return in_range(t, id) && (t->flags[id] & TOK_F_EOG);
}

qf_token_type qf_tok_type(const qf_tok *t, int32_t id) {
    return in_range(t, id) ? (qf_token_type)t->type[id] : (qf_token_type)0;
}

const char *qf_tok_text(const qf_tok *t, int32_t id) {
    return in_range(t, id) ? t->blob + t->off[id] : NULL;
}

size_t qf_tok_text_len(const qf_tok *t, int32_t id) {
    return in_range(t, id) ? t->len[id] : 0;
}

float qf_tok_score(const qf_tok *t, int32_t id) {
    return in_range(t, id) ? t->score[id] : 0.0f;
}

int32_t qf_tok_find(const qf_tok *t, const char *text) {
    return (t && text) ? tok_lookup(t, text, strlen(text)) : -1;
}

int32_t qf_tok_find_n(const qf_tok *t, const char *text, size_t len) {
    return (t && (text || !len)) ? tok_lookup(t, text ? text : "", len) : -1;
}

/* ---- special-token partition ---- */

typedef struct frag {
    uint32_t off, len; /* raw text span */
    int32_t id;        /* >= 0: a special token; -1: raw text */
} frag;

typedef struct frag_vec {
    frag *v;
    size_t n, cap;
} frag_vec;

static qf_status frag_push(frag_vec *f, uint32_t off, uint32_t len, int32_t id) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *p = qf_realloc(f->v, cap * sizeof *p);
        if (!p) return QF_ERR_NOMEM;
        f->v = p;
        f->cap = cap;
    }
    f->v[f->n++] = (frag){off, len, id};
    return QF_OK;
}

static bool special_allowed(const qf_tok *t, int32_t id, bool parse_special) {
    return t->type[id] == QF_TOKEN_USER_DEFINED || parse_special;
}

/* Marks in present[] (one byte per specials[] index) every allowed special
 * whose text occurs in text. Returns how many distinct ones. */
static int32_t find_present(const qf_tok *t, const uint8_t *text, size_t len, bool parse_special,
                            uint8_t *present) {
    int32_t count = 0;
    for (size_t p = 0; p < len; p++) {
        int32_t node = t->trie_root[text[p]];
        size_t q = p;
        while (node >= 0) {
            int32_t s = t->trie[node].special;
            if (s >= 0 && !present[s] && special_allowed(t, t->specials[s], parse_special)) {
                present[s] = 1;
                count++;
            }
            if (++q >= len) break;
            int32_t c = t->trie[node].child;
            while (c >= 0 && t->trie[c].byte != text[q])
                c = t->trie[c].sibling;
            node = c;
        }
    }
    return count;
}

/* Splits every raw fragment of in at each occurrence of special token id,
 * writing the result to out (llama.cpp's per-token pass, LSTRIP/RSTRIP
 * included). */
static qf_status cut_special(const qf_tok *t, const char *text, int32_t id, const frag_vec *in,
                             frag_vec *out) {
    const char *tt = t->blob + t->off[id];
    uint32_t tl = t->len[id];
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        frag f = in->v[i];
        if (f.id >= 0 || f.len < tl) {
            if (frag_push(out, f.off, f.len, f.id)) return QF_ERR_NOMEM;
            continue;
        }
        uint32_t base = f.off, blen = f.len;
        while (blen > 0) {
            const char *m = memmem(text + base, blen, tt, tl);
            if (!m) {
                if (frag_push(out, base, blen, -1)) return QF_ERR_NOMEM;
                break;
            }
            uint32_t mo = (uint32_t)(m - text);
            uint32_t left = mo - base;
            if (t->flags[id] & TOK_F_LSTRIP)
                while (left > 0 && ascii_space((unsigned char)text[base + left - 1]))
                    left--;
            if (left > 0 && frag_push(out, base, left, -1)) return QF_ERR_NOMEM;
            if (frag_push(out, mo, tl, id)) return QF_ERR_NOMEM;
            uint32_t r = mo + tl, rlen = base + blen - r;
            if (t->flags[id] & TOK_F_RSTRIP)
                while (rlen > 0 && ascii_space((unsigned char)text[r]))
                    r++, rlen--;
            base = r;
            blen = rlen;
        }
    }
    return QF_OK;
}

static qf_status partition(const qf_tok *t, const char *text, size_t len, bool parse_special,
                           frag_vec *out, frag_vec *tmp) {
    out->n = 0;
    if (len == 0) return QF_OK;
    if (frag_push(out, 0, (uint32_t)len, -1)) return QF_ERR_NOMEM;
    if (t->n_specials == 0) return QF_OK;
    uint8_t *present = qf_calloc((size_t)t->n_specials, 1);
    if (!present) return QF_ERR_NOMEM;
    qf_status st = QF_OK;
    if (find_present(t, (const uint8_t *)text, len, parse_special, present) > 0) {
        for (int32_t s = 0; s < t->n_specials && st == QF_OK; s++) {
            if (!present[s]) continue;
            st = cut_special(t, text, t->specials[s], out, tmp);
            frag_vec sw = *out;
            *out = *tmp;
            *tmp = sw;
        }
    }
    qf_free(present);
    return st;
}

/* ---- encode ---- */

int32_t *qf_tok_encode(const qf_tok *t, const char *text, size_t len, bool add_special,
                       bool parse_special, int32_t *n_out, qf_err *err) {
    tok_vec out = {0};
    frag_vec frags = {0}, tmp = {0};
    qf_status st = QF_OK;
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!text && len)) {
        QF_ERR_SET(err, QF_ERR_INVALID, "qf_tok_encode: NULL argument");
        return NULL;
    }
    if (len >= TOK_MAX_TEXT) {
        QF_ERR_SET(err, QF_ERR_RANGE, "%s: text of %zu bytes is too long to tokenize (limit 2 GiB)",
                   t->name, len);
        return NULL;
    }
    if (add_special && (t->add_bos || t->kind == QF_TOK_WPM) && t->bos >= 0)
        st = tok_vec_push(&out, t->bos);
    if (!st) st = partition(t, text, len, parse_special, &frags, &tmp);
    bool prev_special = true; /* SPM: the first text fragment gets the space prefix */
    for (size_t i = 0; i < frags.n && st == QF_OK; i++) {
        frag f = frags.v[i];
        if (f.id >= 0) {
            st = tok_vec_push(&out, f.id);
            prev_special = true;
            continue;
        }
        switch (t->kind) {
        case QF_TOK_SPM:
            st = tok_spm_encode(t, text + f.off, f.len, t->add_space_prefix && prev_special, &out,
                                err);
            break;
        case QF_TOK_BPE:
            st = tok_bpe_encode(t, text + f.off, f.len, &out, err);
            break;
        case QF_TOK_WPM:
            st = tok_wpm_encode(t, text + f.off, f.len, &out, err);
            break;
        }
        prev_special = false;
    }
    if (!st && add_special) {
        if (t->kind == QF_TOK_WPM) {
            if (t->add_sep && t->sep >= 0) st = tok_vec_push(&out, t->sep);
        } else if (t->add_eos && t->eos >= 0) {
            st = tok_vec_push(&out, t->eos);
        }
    }
    qf_free(frags.v);
    qf_free(tmp.v);
    if (!st && !out.v) { /* empty result: still a valid pointer */
        out.v = qf_malloc(sizeof *out.v);
        if (!out.v) st = QF_ERR_NOMEM;
    }
    if (st) {
        if (st == QF_ERR_NOMEM)
            QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory tokenizing %zu bytes", t->name, len);
        qf_free(out.v);
        return NULL;
    }
    if (out.n > 0x7FFFFFFF) {
        QF_ERR_SET(err, QF_ERR_RANGE, "%s: more than 2^31 tokens", t->name);
        qf_free(out.v);
        return NULL;
    }
    *n_out = (int32_t)out.n;
    return out.v;
}

/* ---- pieces and decode ---- */

/* Piece of id as decode renders it: pointer + length into the piece blob. */
static const char *piece_of(const qf_tok *t, int32_t id, bool special, uint32_t *n) {
    *n = 0;
    if (!in_range(t, id)) return "";
    uint8_t type = t->type[id];
    if (!special && (type == QF_TOKEN_CONTROL || type == QF_TOKEN_UNKNOWN)) return "";
    *n = t->piece_len[id];
    return t->piece_blob + t->piece_off[id];
}

size_t qf_tok_piece(const qf_tok *t, int32_t id, bool special, char *buf, size_t cap) {
    uint32_t n;
    const char *p = piece_of(t, id, special, &n);
    if (buf && n) memcpy(buf, p, n < cap ? n : cap);
    return n;
}

char *qf_tok_decode(const qf_tok *t, const int32_t *ids, int32_t n, bool special, size_t *len_out) {
    if (len_out) *len_out = 0;
    if (!t || (n > 0 && !ids)) return NULL;
    if (n < 0) n = 0;
    /* which token loses the leading space encode added (SPM only) */
    int32_t strip_at = -1;
    if (t->kind == QF_TOK_SPM && t->add_space_prefix && n > 0)
        strip_at = (ids[0] == t->bos && t->bos >= 0) ? 1 : 0;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t k;
        piece_of(t, ids[i], special, &k);
        total += k;
    }
    char *s = qf_malloc(total + 1);
    if (!s) return NULL;
    size_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t k;
        const char *p = piece_of(t, ids[i], special, &k);
        if (i == strip_at && k > 0 && p[0] == ' ') p++, k--;
        memcpy(s + pos, p, k);
        pos += k;
    }
    s[pos] = '\0';
    if (len_out) *len_out = pos;
    return s;
}
