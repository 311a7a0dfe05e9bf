/* tok.h - tokenizers built from GGUF metadata: SPM, byte-level BPE, WordPiece.
 *
 * A qf_tok turns UTF-8 text into token ids and ids back into bytes exactly as
 * llama.cpp does for the same GGUF (src/llama-vocab.cpp at the commit the
 * conformance vectors in ../shared/testdata/vocab were made with):
 *
 *   "llama" (SPM)  add_space_prefix, spaces -> U+2581, merge the adjacent pair
 *                  whose joined text is the highest-scored vocab piece (ties:
 *                  leftmost), pieces with no token fall back to <0xXX> bytes.
 *   "gpt2"  (BPE)  split with the pre-tokenizer regexes of tokenizer.ggml.pre
 *                  (PCRE2, UTF + UCP), map bytes through the GPT-2 byte->unicode
 *                  table, apply tokenizer.ggml.merges by rank (ties: leftmost).
 *   "bert"  (WPM)  BERT normalisation (lower-case, strip accents, split on
 *                  whitespace/punctuation/CJK), greedy longest-match WordPiece.
 *
 * Before any of these, the text is cut at occurrences of special tokens
 * (longest text first): USER_DEFINED tokens always, CONTROL and UNKNOWN
 * tokens only when parse_special is true.
 *
 * Invalid UTF-8 never fails and never crashes. Each byte that is not part of
 * a well-formed UTF-8 sequence is kept as a byte on its own: SPM and BPE emit
 * that byte's byte token (<0xXX> / the byte-level BPE char), so decode gives
 * the original bytes back; WPM drops it (as llama.cpp, which turns it into
 * U+FFFD and then removes it). llama.cpp substitutes U+FFFD for such bytes in
 * BPE; qforge keeps the bytes instead (lossless), the one deliberate
 * difference, affecting only invalid input. (Exception: when a BPE vocab has
 * no plain token for that byte - most lack C0, C1, F5..FF, deepseek's list
 * them as USER_DEFINED text - the byte becomes U+FFFD, as in llama.cpp.)
 *
 * Cost: encode is O(n log n) in the text length (heap-ordered merges over
 * linked symbols; no quadratic case); long inputs use a per-call cache of
 * already-merged words. Tens of MB/s per core on natural text.
 *
 * Thread-safety: a qf_tok is immutable after qf_tok_new_from_gguf; every
 * function below may be called from many threads at once on the same object.
 * Memory: everything returned by pointer is either owned by the qf_tok
 * (borrowed until qf_tok_free) or malloc'ed for the caller (free with qf_free),
 * as stated per function.
 */
#ifndef QF_TOK_H
#define QF_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "gguf/gguf.h"

typedef struct qf_tok qf_tok;

typedef enum qf_tok_kind { QF_TOK_SPM, QF_TOK_BPE, QF_TOK_WPM } qf_tok_kind;

/* Values are those of tokenizer.ggml.token_type. */
typedef enum qf_token_type {
    QF_TOKEN_NORMAL = 1,
    QF_TOKEN_UNKNOWN = 2,
    QF_TOKEN_CONTROL = 3,
    QF_TOKEN_USER_DEFINED = 4,
    QF_TOKEN_UNUSED = 5,
    QF_TOKEN_BYTE = 6,
} qf_token_type;

/* Build a tokenizer from the tokenizer.* keys of an open GGUF. Everything
 * needed is copied: g may be closed right after. Keys read:
 *   tokenizer.ggml.model        "llama" | "gpt2" | "bert" (others: UNSUPPORTED)
 *   tokenizer.ggml.pre          BPE pre-tokenizer name (absent: "default");
 *                               unknown names: UNSUPPORTED
 *   tokenizer.ggml.tokens       string array (required)
 *   tokenizer.ggml.scores       f32 (or i32) array, >= n_tokens long (optional)
 *   tokenizer.ggml.token_type   i32 array, >= n_tokens long (optional)
 *   tokenizer.ggml.merges       string array "left right" (required for gpt2)
 *   tokenizer.ggml.{bos,eos,eot,eom,unknown,padding,seperator,cls}_token_id
 *   tokenizer.ggml.add_{bos,eos,sep}_token, add_space_prefix,
 *   tokenizer.ggml.normalizer.{lowercase,strip_accents}, tokenizer.chat_template
 * Defaults for absent keys follow llama.cpp (SPM: bos 1, eos 2, unk 0,
 * add_bos; WPM: cls 101 as bos, sep 102, unk 100; llama-bpe: add_bos).
 * Errors: FORMAT (missing/mistyped arrays, arrays shorter than the token list,
 * duplicate tokens, token ids out of range), UNSUPPORTED, NOMEM. The message
 * starts with the GGUF path. Returns NULL on failure. */
qf_tok *qf_tok_new_from_gguf(const qf_gguf *g, qf_err *err);
void qf_tok_free(qf_tok *t); /* NULL is a no-op */

qf_tok_kind qf_tok_get_kind(const qf_tok *t);
int32_t qf_tok_n_vocab(const qf_tok *t);
/* Special ids, -1 when the vocab has none. qf_tok_eot: tokenizer.ggml.
 * eot_token_id, else the first of <|eot_id|>, <|im_end|>, <|end|>,
 * <end_of_turn>, <|endoftext|>, ... present in the vocab (llama.cpp's list). */
int32_t qf_tok_bos(const qf_tok *t);
int32_t qf_tok_eos(const qf_tok *t);
int32_t qf_tok_eot(const qf_tok *t);
int32_t qf_tok_unk(const qf_tok *t);
int32_t qf_tok_sep(const qf_tok *t); /* WPM [SEP]; -1 otherwise */
bool qf_tok_add_bos(const qf_tok *t);
bool qf_tok_add_eos(const qf_tok *t);
/* End of generation: eos, eot, eom and the vocab tokens llama.cpp collects
 * by text (<|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>,
 * <|eom_id|>, <EOT>, </s>, ...). False for ids out of range. */
bool qf_tok_is_eog(const qf_tok *t, int32_t id);
/* Type of a token; 0 (no valid type) for ids out of range or type values
 * outside 1..6. Reports the type llama.cpp ends up using: tokens it forces to
 * CONTROL (EOT/EOG/FIM texts a converter marked NORMAL) report CONTROL. */
qf_token_type qf_tok_type(const qf_tok *t, int32_t id);
/* Raw vocab string of id (NUL-terminated, borrowed until qf_tok_free), or
 * NULL when out of range. Empty vocab strings read "[EMPTY_<id>]" (llama.cpp). */
const char *qf_tok_text(const qf_tok *t, int32_t id);
/* Byte length of qf_tok_text (tokens may contain NUL bytes). 0 if out of range. */
size_t qf_tok_text_len(const qf_tok *t, int32_t id);
/* Exact vocab string -> id, or -1. */
int32_t qf_tok_find(const qf_tok *t, const char *text);
int32_t qf_tok_find_n(const qf_tok *t, const char *text, size_t len);
const char *qf_tok_chat_template(const qf_tok *t); /* NULL if absent; borrowed */
const char *qf_tok_pre_name(const qf_tok *t);      /* "default" for SPM/WPM too; borrowed */
/* Score of a token (tokenizer.ggml.scores; 0 when absent or out of range). */
float qf_tok_score(const qf_tok *t, int32_t id);

/* Encode len bytes of text (need not be NUL-terminated; embedded NULs are
 * ordinary bytes). add_special adds BOS if add_bos (WPM: always [CLS]) and EOS
 * if add_eos (WPM: [SEP]). parse_special turns CONTROL/UNKNOWN token texts
 * found in the text into their ids; USER_DEFINED texts always are.
 * Returns a malloc'ed array (free with qf_free) and its length in *n_out;
 * empty text gives a valid non-NULL pointer with *n_out 0 (or only BOS/EOS).
 * Errors (NULL returned, *n_out 0): INVALID (NULL args), RANGE (len >= 2^31),
 * NOMEM, INTERNAL (regex engine failure). */
int32_t *qf_tok_encode(const qf_tok *t, const char *text, size_t len, bool add_special,
                       bool parse_special, int32_t *n_out, qf_err *err);

/* The bytes token id stands for in decoded text: BYTE tokens give their raw
 * byte, SPM/WPM pieces have U+2581 replaced by a space, byte-level BPE pieces
 * are mapped back through the GPT-2 table. CONTROL and UNKNOWN tokens give ""
 * unless special is true (then their text); USER_DEFINED give their text;
 * UNUSED and out-of-range ids give "". Writes at most cap bytes (no NUL) and
 * returns the full length: call again with a bigger buffer when it is > cap. */
size_t qf_tok_piece(const qf_tok *t, int32_t id, bool special, char *buf, size_t cap);

/* Decode n ids into bytes. Returns a malloc'ed, NUL-terminated buffer (free
 * with qf_free; the length, which excludes the NUL, in *len_out when not NULL)
 * or NULL on allocation failure. SPM with add_space_prefix: the leading space
 * of the first text piece is removed when the sequence starts at the beginning,
 * i.e. ids[0] is that piece or ids[0] is BOS and ids[1] is that piece (the
 * space encode prepended); llama.cpp keeps that space after a BOS. Unlike
 * llama.cpp's detokenize this does not apply clean_up_tokenization_spaces,
 * so decode(encode(x)) == x with BPE, and with SPM (byte-fallback vocab)
 * when x holds no U+2581 (SPM spells spaces that way), with or without
 * add_special, for any bytes x (invalid UTF-8 included). WPM pieces keep their leading space
 * (" hello world", as llama.cpp). special: render CONTROL/UNKNOWN. */
char *qf_tok_decode(const qf_tok *t, const int32_t *ids, int32_t n, bool special, size_t *len_out);

#endif
