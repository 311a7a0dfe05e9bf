/* test_tok.c - tokenizers: tiny hand-built vocabs (expected ids worked out by
 * hand from the algorithms' definitions), bad GGUFs, bad input, allocation
 * failure, size/speed, threads; and the llama.cpp conformance vectors in
 * ../shared/testdata/vocab (every X.gguf.inp/.out pair next to X.gguf, plus
 * X.gguf.out.parse_special), which must match 100%.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "base/mem.h"
#include "gguf/gguf.h"
#include "qf_test.h"
#include "tok/tok.h"

/* ---- helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int g_tmp_seq;

/* Writes w to a fresh temp file and opens it. */
static qf_gguf *write_open(qf_gguf_writer *w, char *path, size_t cap) {
    snprintf(path, cap, "/tmp/qf_test_tok_%d_%d.gguf", (int)getpid(), g_tmp_seq++);
    qf_err err = {0};
    if (qf_gguf_writer_write(w, path, &err) != QF_OK) {
        fprintf(stderr, "writer: %s\n", err.msg);
        return NULL;
    }
    qf_gguf *g = qf_gguf_open(path, &err);
    if (!g) fprintf(stderr, "open: %s\n", err.msg);
    return g;
}

/* Builds a tokenizer from w; NULL + err on failure. */
static qf_tok *tok_from_writer(qf_gguf_writer *w, qf_err *err) {
    char path[256];
    qf_gguf *g = write_open(w, path, sizeof path);
    if (!g) return NULL;
    qf_tok *t = qf_tok_new_from_gguf(g, err);
    qf_gguf_close(g);
    unlink(path);
    return t;
}

static bool ids_eq(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    if (na != nb) return false;
    for (int32_t i = 0; i < na; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static void print_ids(const char *what, const int32_t *v, int32_t n) {
    fprintf(stderr, "  %s:", what);
    for (int32_t i = 0; i < n && i < 64; i++)
        fprintf(stderr, " %d", v[i]);
    if (n > 64) fprintf(stderr, " ... (%d)", n);
    fputc('\n', stderr);
}

/* encode with no specials added, compare with want */
static bool enc_is(const qf_tok *t, const char *text, size_t len, bool parse_special,
                   const int32_t *want, int32_t nwant) {
    int32_t n = -1;
    qf_err err = {0};
    int32_t *ids = qf_tok_encode(t, text, len, false, parse_special, &n, &err);
    if (!ids) {
        fprintf(stderr, "  encode failed: %s\n", err.msg);
        return false;
    }
    bool ok = ids_eq(ids, n, want, nwant);
    if (!ok) {
        print_ids("want", want, nwant);
        print_ids("got ", ids, n);
    }
    qf_free(ids);
    return ok;
}

#define ENC_IS(t, s, ps, ...)                                                                      \
    do {                                                                                           \
        const int32_t w_[] = {__VA_ARGS__};                                                        \
        ASSERT_MSG(enc_is((t), (s), strlen(s), (ps), w_, (int32_t)(sizeof w_ / sizeof w_[0])),     \
                   "%s", (s));                                                                     \
    } while (0)

/* decode(encode(text)) == text */
static bool round_trips(const qf_tok *t, const char *text, size_t len, bool add_special) {
    int32_t n;
    qf_err err = {0};
    int32_t *ids = qf_tok_encode(t, text, len, add_special, false, &n, &err);
    if (!ids) return false;
    size_t dl = 0;
    char *d = qf_tok_decode(t, ids, n, false, &dl);
    bool ok = d && dl == len && memcmp(d, text, len) == 0;
    if (!ok && d)
        fprintf(stderr, "  round trip: %zu bytes in, %zu out: '%.*s'\n", len, dl,
                (int)(dl < 200 ? dl : 200), d);
    qf_free(ids);
    qf_free(d);
    return ok;
}

/* ---- tiny SPM vocab ---- */

/* ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then the pieces below */
enum { S_SP = 259, S_A, S_B, S_SPA, S_AB, S_SPAB, S_C, S_BC, S_CC, S_SPB, S_N };

/* extra: one more token (id S_N, score 0) or NULL */
static qf_gguf_writer *spm_writer_x(const char *extra) {
    static char bytes[256][8];
    const char *toks[S_N + 1];
    float scores[S_N + 1];
    int32_t types[S_N + 1];
    int nt = extra ? S_N + 1 : S_N;
    if (extra) toks[S_N] = extra, scores[S_N] = 0, types[S_N] = 1;
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = 2, types[1] = 3, types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[3 + b] = bytes[b];
        types[3 + b] = 6;
    }
    const char *pieces[] = {"\xe2\x96\x81",
                            "a",
                            "b",
                            "\xe2\x96\x81"
                            "a",
                            "ab",
                            "\xe2\x96\x81"
                            "ab",
                            "c",
                            "bc",
                            "cc",
                            "\xe2\x96\x81"
                            "b"};
    const float sc[] = {-5, -3, -3, -4, -1, -0.5f, -3, -2, -2, -6};
    for (int i = 0; i < S_N - S_SP; i++) {
        toks[S_SP + i] = pieces[i];
        scores[S_SP + i] = sc[i];
        types[S_SP + i] = 1;
    }
    for (int i = 0; i < S_SP; i++)
        scores[i] = 0;
    qf_gguf_writer *w = qf_gguf_writer_new();
    qf_gguf_writer_set_str(w, "general.architecture", "llama");
    qf_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, nt);
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QF_GGUF_FLOAT32, scores, nt);
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_INT32, types, nt);
    qf_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    qf_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    return w;
}

static qf_gguf_writer *spm_writer(void) {
    return spm_writer_x(NULL);
}

static qf_tok *spm_tiny(void) {
    qf_gguf_writer *w = spm_writer();
    qf_err err = {0};
    qf_tok *t = tok_from_writer(w, &err);
    qf_gguf_writer_free(w);
    if (!t) fprintf(stderr, "spm_tiny: %s\n", err.msg);
    return t;
}

static void test_spm_tiny(void) {
    qf_tok *t = spm_tiny();
    ASSERT(t);
    ASSERT_EQ_INT(qf_tok_get_kind(t), QF_TOK_SPM);
    ASSERT_EQ_INT(qf_tok_n_vocab(t), S_N);
    ASSERT_EQ_INT(qf_tok_bos(t), 1);
    ASSERT_EQ_INT(qf_tok_eos(t), 2);
    ASSERT(qf_tok_add_bos(t));
    ASSERT(!qf_tok_add_eos(t));
    ASSERT(qf_tok_is_eog(t, 2));
    ASSERT(!qf_tok_is_eog(t, 1));
    ASSERT(!qf_tok_is_eog(t, -1) && !qf_tok_is_eog(t, S_N));
    ASSERT_EQ_INT(qf_tok_find(t, "ab"), S_AB);
    ASSERT_EQ_INT(qf_tok_find(t, "abc"), -1);
    ASSERT_STR_EQ(qf_tok_text(t, S_AB), "ab");
    ASSERT(qf_tok_text(t, S_N) == NULL);
    ASSERT_EQ_INT(qf_tok_type(t, 1), QF_TOKEN_CONTROL);
    ASSERT_EQ_INT(qf_tok_type(t, 3), QF_TOKEN_BYTE);
    ASSERT(qf_tok_chat_template(t) == NULL);

    /* "ab" -> "▁ab": ab (-1) beats ▁a (-4), then ▁ab (-0.5) */
    ENC_IS(t, "ab", false, S_SPAB);
    /* "abc": ab, then ▁ab; bc became stale when b merged */
    ENC_IS(t, "abc", false, S_SPAB, S_C);
    /* equal scores: the leftmost pair first */
    ENC_IS(t, "ccc", false, S_SP, S_CC, S_C);
    /* spaces: " b" -> "▁▁b": ▁b (-6) is the only pair */
    ENC_IS(t, " b", false, S_SP, S_SPB);
    /* no piece for é: UTF-8 bytes through <0xXX> */
    ENC_IS(t, "\xc3\xa9", false, S_SP, 3 + 0xC3, 3 + 0xA9);
    /* empty text: nothing (and not NULL) */
    int32_t n = -1;
    int32_t *ids = qf_tok_encode(t, "", 0, false, false, &n, NULL);
    ASSERT(ids && n == 0);
    qf_free(ids);
    ids = qf_tok_encode(t, "", 0, true, false, &n, NULL);
    ASSERT(ids && n == 1 && ids[0] == 1);
    qf_free(ids);
    /* add_special: BOS first; space prefix still applies */
    ids = qf_tok_encode(t, "ab", 2, true, false, &n, NULL);
    ASSERT(ids && n == 2 && ids[0] == 1 && ids[1] == S_SPAB);
    /* decode strips the prefix space after BOS; special renders <s> */
    size_t dl;
    char *d = qf_tok_decode(t, ids, n, false, &dl);
    ASSERT(d && dl == 2 && !strcmp(d, "ab"));
    qf_free(d);
    d = qf_tok_decode(t, ids, n, true, &dl);
    ASSERT_STR_EQ(d, "<s>ab");
    qf_free(d);
    qf_free(ids);
    /* parse_special: <s> in text; the text after it gets a space prefix */
    ENC_IS(t, "<s>ab", true, 1, S_SPAB);
    /* not parsed: plain characters (bytes, no pieces for < s >) */
    ENC_IS(t, "<s>", false, S_SP, 3 + '<', 3 + 's', 3 + '>');
    /* pieces */
    char buf[8];
    ASSERT_EQ_INT(qf_tok_piece(t, S_SPAB, false, buf, sizeof buf), 3);
    ASSERT(!memcmp(buf, " ab", 3));
    ASSERT_EQ_INT(qf_tok_piece(t, 3 + 0xC3, false, buf, sizeof buf), 1);
    ASSERT_EQ_INT((uint8_t)buf[0], 0xC3);
    ASSERT_EQ_INT(qf_tok_piece(t, 1, false, buf, sizeof buf), 0);
    ASSERT_EQ_INT(qf_tok_piece(t, 1, true, buf, sizeof buf), 3);
    ASSERT_EQ_INT(qf_tok_piece(t, 0, false, buf, sizeof buf), 0); /* <unk> is UNKNOWN: hidden */
    ASSERT_EQ_INT(qf_tok_piece(t, S_SPAB, false, buf, 1), 3);     /* truncated, full length */
    ASSERT_EQ_INT(qf_tok_piece(t, -5, true, buf, sizeof buf), 0);
    /* round trips, invalid UTF-8 included (lone bytes through byte tokens) */
    const char *rt[] = {"ab abc",          " leading", "trailing  ", "\xc3\xa9t\xc3\xa9",
                        "x\xff\xfe y\x80", "\xe2\x82"};
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++) {
        ASSERT_MSG(round_trips(t, rt[i], strlen(rt[i]), false), "%zu", i);
        ASSERT_MSG(round_trips(t, rt[i], strlen(rt[i]), true), "%zu", i);
    }
    /* embedded NUL is an ordinary byte */
    ASSERT(round_trips(t, "a\0b", 3, true));
    ENC_IS(t, "a", false, S_SPA);
    ENC_IS(t, "b a", false, S_SPB, S_SPA);
    qf_tok_free(t);

    /* a piece spanning a word start ("b▁a"): merges must cross words. "▁b▁a":
     * ▁a (-4) beats ▁b (-6), then b + ▁a = "b▁a" (0) */
    qf_gguf_writer *w = spm_writer_x("b\xe2\x96\x81"
                                     "a");
    qf_err err = {0};
    t = tok_from_writer(w, &err);
    qf_gguf_writer_free(w);
    ASSERT_MSG(t, "%s", err.msg);
    ENC_IS(t, "b a", false, S_SP, S_N);
    ENC_IS(t, "ab ab", false, S_SPAB, S_SPAB);
    ASSERT(round_trips(t, "b a b a  b", 9, true));
    qf_tok_free(t);
}

/* ---- tiny byte-level BPE vocab ---- */

/* GPT-2's bytes_to_unicode, written out independently of the library */
static int gpt2_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)))
            n++;
    return 256 + n;
}

static void put_utf8(char *out, int cp) {
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
    }
}

/* ids: byte b -> b; then merge results; then specials */
enum { B_HE = 256, B_LL, B_HELL, B_HELLO, B_SPW, B_OR, B_SPWOR, B_XYZ, B_END, B_TOOL, B_N };

static qf_gguf_writer *bpe_writer(const char *pre) {
    static char bytes[256][4];
    const char *toks[B_N];
    int32_t types[B_N];
    for (int b = 0; b < 256; b++) {
        put_utf8(bytes[b], gpt2_cp(b));
        toks[b] = bytes[b];
        types[b] = 1;
    }
    const char *more[] = {"he", "ll",          "hell", "hello",   "\xc4\xa0w",
                          "or", "\xc4\xa0wor", "xyz",  "<|end|>", "<tool>"};
    for (int i = 0; i < B_N - 256; i++) {
        toks[256 + i] = more[i];
        types[256 + i] = 1;
    }
    types[B_END] = 3, types[B_TOOL] = 4;
    const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "o r", "\xc4\xa0w or"};
    qf_gguf_writer *w = qf_gguf_writer_new();
    qf_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre) qf_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, B_N);
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_INT32, types, B_N);
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 7);
    qf_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", B_END);
    qf_gguf_writer_set_str(w, "tokenizer.chat_template", "{{ tmpl }}");
    return w;
}

static qf_tok *bpe_tiny(const char *pre) {
    qf_gguf_writer *w = bpe_writer(pre);
    qf_err err = {0};
    qf_tok *t = tok_from_writer(w, &err);
    qf_gguf_writer_free(w);
    if (!t) fprintf(stderr, "bpe_tiny: %s\n", err.msg);
    return t;
}

static void test_bpe_tiny(void) {
    qf_tok *t = bpe_tiny("gpt-2");
    ASSERT(t);
    ASSERT_EQ_INT(qf_tok_get_kind(t), QF_TOK_BPE);
    ASSERT_STR_EQ(qf_tok_pre_name(t), "gpt-2");
    ASSERT_STR_EQ(qf_tok_chat_template(t), "{{ tmpl }}");
    ASSERT(!qf_tok_add_bos(t));
    ASSERT_EQ_INT(qf_tok_eos(t), B_END);
    ASSERT(qf_tok_is_eog(t, B_END));
    /* "hello" -> he, ll, hell, hello; " world" -> Ġw, or, Ġwor, l, d */
    ENC_IS(t, "hello world", false, B_HELLO, B_SPWOR, 'l', 'd');
    /* equal ranks: leftmost first */
    ENC_IS(t, "lll", false, B_LL, 'l');
    /* pre-split stops merges across pieces: "he" + "llo" never merge */
    ENC_IS(t, "he llo", false, B_HE, ' ', B_LL, 'o');
    /* no ignore_merges for gpt-2: the orphan token "xyz" is not used */
    ENC_IS(t, "xyz", false, 'x', 'y', 'z');
    /* CONTROL text is plain text unless parse_special */
    ENC_IS(t, "a<|end|>b", false, 'a', '<', '|', 'e', 'n', 'd', '|', '>', 'b');
    ENC_IS(t, "a<|end|>b", true, 'a', B_END, 'b');
    /* USER_DEFINED text is always split out */
    ENC_IS(t, "x<tool>y", false, 'x', B_TOOL, 'y');
    ENC_IS(t, "x<tool>y", true, 'x', B_TOOL, 'y');
    /* non-ASCII bytes map through the byte table: é = C3 A9 */
    ENC_IS(t, "\xc3\xa9", false, 0xC3, 0xA9);
    /* invalid UTF-8: each bad byte is its own byte token */
    ENC_IS(t, "h\xffhe", false, 'h', 0xFF, B_HE);
    /* add_special: no BOS (add_bos false), no EOS */
    int32_t n;
    int32_t *ids = qf_tok_encode(t, "he", 2, true, false, &n, NULL);
    ASSERT(ids && n == 1 && ids[0] == B_HE);
    qf_free(ids);
    /* decode: byte-level chars back to bytes; control hidden unless special */
    const int32_t seq[] = {B_HELLO, B_END, B_SPWOR, 0xC3, 0xA9, B_TOOL};
    size_t dl;
    char *d = qf_tok_decode(t, seq, 6, false, &dl);
    ASSERT_STR_EQ(d, "hello wor\xc3\xa9<tool>");
    qf_free(d);
    d = qf_tok_decode(t, seq, 6, true, &dl);
    ASSERT_STR_EQ(d, "hello<|end|> wor\xc3\xa9<tool>");
    qf_free(d);
    char buf[4];
    ASSERT_EQ_INT(qf_tok_piece(t, ' ', false, buf, sizeof buf), 1); /* token 32 is "Ġ" -> ' ' */
    ASSERT_EQ_INT(buf[0], ' ');
    const char *rt[] = {"hello world", "  spaces\t\ttabs\n\nnewlines ",
                        "caf\xc3\xa9 \xf0\x9f\xa6\x99!",
                        "bad \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82", "1234567 'll 's"};
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++)
        ASSERT_MSG(round_trips(t, rt[i], strlen(rt[i]), true), "%zu", i);
    ASSERT(round_trips(t, "nul\0in\0middle", 14, false));
    qf_tok_free(t);

    /* llama-bpe family: add_bos by default; ignore_merges: a pre-token that
     * is a vocab token as a whole is used even though no merge makes it */
    t = bpe_tiny("llama-bpe");
    ASSERT(t);
    ASSERT(qf_tok_add_bos(t));
    ENC_IS(t, "xyz", false, B_XYZ);
    ENC_IS(t, "hello", false, B_HELLO);
    qf_tok_free(t);
}

/* ---- tiny WordPiece vocab ---- */

static void test_wpm_tiny(void) {
    const char *toks[] = {"[PAD]",
                          "[UNK]",
                          "[CLS]",
                          "[SEP]",
                          "\xe2\x96\x81hello",
                          "\xe2\x96\x81,",
                          "\xe2\x96\x81un",
                          "aff",
                          "able",
                          "\xe2\x96\x81world",
                          "\xe2\x96\x81!",
                          "\xe2\x96\x81\xe4\xb8\xad"};
    const int32_t types[] = {3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1};
    qf_gguf_writer *w = qf_gguf_writer_new();
    qf_gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 12);
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_INT32, types, 12);
    qf_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 1);
    qf_gguf_writer_set_u32(w, "tokenizer.ggml.cls_token_id", 2);
    qf_gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", 3);
    qf_err err = {0};
    qf_tok *t = tok_from_writer(w, &err);
    qf_gguf_writer_free(w);
    ASSERT_MSG(t, "%s", err.msg);
    ASSERT_EQ_INT(qf_tok_get_kind(t), QF_TOK_WPM);
    /* lower-case, accents stripped (É -> e? no: H + é), punctuation split */
    ENC_IS(t, "H\xc3\xa9llo, UNAFFABLE world!", false, 4, 5, 6, 7, 8, 9, 10);
    /* an unknown word is one [UNK]; CJK ideographs are single words */
    ENC_IS(t, "xyz \xe4\xb8\xad\xe4\xb8\xad", false, 1, 11, 11);
    /* add_special: [CLS] ... [SEP] */
    int32_t n;
    int32_t *ids = qf_tok_encode(t, "hello", 5, true, false, &n, NULL);
    ASSERT(ids && n == 3 && ids[0] == 2 && ids[1] == 4 && ids[2] == 3);
    qf_free(ids);
    /* invalid bytes and control characters vanish */
    ENC_IS(t, "hel\xfflo\x01", false, 4);
    qf_tok_free(t);
}

/* ---- bad GGUFs ---- */

static qf_status load_err(qf_gguf_writer *w) {
    qf_err err = {0};
    qf_tok *t = tok_from_writer(w, &err);
    qf_gguf_writer_free(w);
    if (t) {
        qf_tok_free(t);
        return QF_OK;
    }
    if (!err.msg[0]) return QF_ERR_INTERNAL; /* an error must say something */
    return err.code;
}

static void test_bad_gguf(void) {
    qf_gguf_writer *w;
    /* no tokenizer at all */
    w = qf_gguf_writer_new();
    qf_gguf_writer_set_str(w, "general.architecture", "llama");
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* unknown tokenizer model */
    w = spm_writer();
    qf_gguf_writer_set_str(w, "tokenizer.ggml.model", "t5");
    ASSERT_EQ_INT(load_err(w), QF_ERR_UNSUPPORTED);
    /* tokens missing */
    w = spm_writer();
    qf_gguf_writer_remove(w, "tokenizer.ggml.tokens");
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* tokens of the wrong type */
    w = spm_writer();
    int32_t nums[3] = {1, 2, 3};
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", QF_GGUF_INT32, nums, 3);
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* scores shorter than tokens */
    w = spm_writer();
    float sc[3] = {0, 0, 0};
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QF_GGUF_FLOAT32, sc, 3);
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* token types shorter than tokens */
    w = spm_writer();
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_INT32, nums, 3);
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* token types as strings */
    w = spm_writer();
    const char *strs[] = {"a", "b"};
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.token_type", strs, 2);
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* duplicate token text */
    w = qf_gguf_writer_new();
    const char *dup[] = {"a", "b", "a"};
    qf_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", dup, 3);
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* empty token list */
    w = qf_gguf_writer_new();
    qf_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", dup, 0);
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* gpt2 without merges */
    w = bpe_writer("gpt-2");
    qf_gguf_writer_remove(w, "tokenizer.ggml.merges");
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* merges of the wrong type */
    w = bpe_writer("gpt-2");
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.merges", QF_GGUF_INT32, nums, 3);
    ASSERT_EQ_INT(load_err(w), QF_ERR_FORMAT);
    /* unknown pre-tokenizer */
    w = bpe_writer("no-such-pre");
    ASSERT_EQ_INT(load_err(w), QF_ERR_UNSUPPORTED);
    /* merges naming non-tokens, or without a separator, are skipped (loads) */
    w = bpe_writer(NULL); /* no pre: "default" */
    const char *odd[] = {"h e", "zz qq", "nospace", " x", "l l"};
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", odd, 5);
    ASSERT_EQ_INT(load_err(w), QF_OK);
    /* special ids out of range fall back to the defaults */
    w = spm_writer();
    qf_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1000000);
    qf_err err = {0};
    qf_tok *t = tok_from_writer(w, &err);
    qf_gguf_writer_free(w);
    ASSERT(t);
    ASSERT_EQ_INT(qf_tok_bos(t), 1);
    qf_tok_free(t);
}

/* ---- allocation failure ---- */

static void test_alloc_failure(void) {
    qf_gguf_writer *w = bpe_writer("llama-bpe");
    char path[256];
    qf_gguf *g = write_open(w, path, sizeof path);
    qf_gguf_writer_free(w);
    ASSERT(g);
    int loaded_at = -1;
    for (int k = 0; k < 10000; k++) {
        qf_err err = {0};
        qf_mem_fail_after(k);
        qf_tok *t = qf_tok_new_from_gguf(g, &err);
        qf_mem_fail_after(-1);
        if (t) {
            loaded_at = k;
            /* encode under injection too */
            for (int j = 0; j < 200; j++) {
                int32_t n = 7;
                qf_mem_fail_after(j);
                int32_t *ids =
                    qf_tok_encode(t, "hello <tool> world x\xff", 21, true, true, &n, &err);
                qf_mem_fail_after(-1);
                if (ids) {
                    qf_free(ids);
                    break;
                }
                ASSERT_EQ_INT(n, 0);
                ASSERT_EQ_INT(err.code, QF_ERR_NOMEM);
            }
            qf_mem_fail_after(0);
            char *d = qf_tok_decode(t, (const int32_t[]){B_HELLO}, 1, false, NULL);
            qf_mem_fail_after(-1);
            ASSERT(d == NULL);
            qf_tok_free(t);
            break;
        }
        ASSERT_MSG(err.code == QF_ERR_NOMEM, "k=%d code %d: %s", k, err.code, err.msg);
    }
    qf_gguf_close(g);
    unlink(path);
    ASSERT(loaded_at > 0);
}

/* ---- big input: linear-ish time, exact results ---- */

static void test_big_input(void) {
    const size_t n = 1 << 20;
    char *s = malloc(n);
    ASSERT(s);
    qf_tok *spm = spm_tiny(), *bpe = bpe_tiny("gpt-2");
    ASSERT(spm && bpe);
    int32_t cnt;
    double t0 = now_s();
    /* 1 MiB of 'c': ▁ then (n/2) x "cc" (leftmost pairs first) */
    memset(s, 'c', n);
    int32_t *ids = qf_tok_encode(spm, s, n, false, false, &cnt, NULL);
    ASSERT(ids && cnt == (int32_t)(n / 2 + 1) && ids[0] == S_SP && ids[1] == S_CC &&
           ids[cnt - 1] == S_CC);
    qf_free(ids);
    /* 1 MiB of 'l': one pre-token, (n/2) x "ll" */
    memset(s, 'l', n);
    ids = qf_tok_encode(bpe, s, n, false, false, &cnt, NULL);
    ASSERT(ids && cnt == (int32_t)(n / 2) && ids[0] == B_LL && ids[cnt - 1] == B_LL);
    qf_free(ids);
    /* 1 MiB of spaces, of '<' (special-token prefix scans), of invalid bytes */
    const char fill[] = {' ', '<', '\xff', '\n'};
    for (size_t k = 0; k < sizeof fill; k++) {
        memset(s, fill[k], n);
        ASSERT_MSG(round_trips(bpe, s, n, false), "bpe fill %zu", k);
        ASSERT_MSG(round_trips(spm, s, n, false), "spm fill %zu", k);
    }
    double dt = now_s() - t0;
    fprintf(stderr, "  big inputs: %.2f s\n", dt);
    ASSERT_MSG(dt < 60, "%.1f s: too slow (quadratic?)", dt);
    qf_tok_free(spm);
    qf_tok_free(bpe);
    free(s);
}

static void test_bad_args(void) {
    qf_tok *t = bpe_tiny("gpt-2");
    ASSERT(t);
    qf_err err = {0};
    int32_t n = 5;
    ASSERT(qf_tok_encode(t, NULL, 3, false, false, &n, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    ASSERT_EQ_INT(n, 0);
    ASSERT(qf_tok_encode(t, "x", 1, false, false, NULL, &err) == NULL);
    int32_t *ids = qf_tok_encode(t, NULL, 0, false, false, &n, &err);
    ASSERT(ids && n == 0);
    qf_free(ids);
    size_t dl = 9;
    char *d = qf_tok_decode(t, NULL, 0, false, &dl);
    ASSERT(d && dl == 0 && d[0] == 0);
    qf_free(d);
    /* out-of-range ids decode to nothing */
    const int32_t bad[] = {-1, 1 << 30, 'h'};
    d = qf_tok_decode(t, bad, 3, true, &dl);
    ASSERT(d && dl == 1 && d[0] == 'h');
    qf_free(d);
    ASSERT(qf_tok_new_from_gguf(NULL, &err) == NULL);
    qf_tok_free(NULL);
    qf_tok_free(t);
}

/* ---- conformance vectors ---- */

typedef struct vecfile {
    char *buf;
    char **cases;
    size_t *lens;
    int n;
} vecfile;

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[sz] = 0;
    if (len) *len = (size_t)sz;
    return b;
}

/* Splits an .inp file on "\n__ggml_vocab_test__\n" (trailing empty piece dropped). */
static bool read_inp(const char *path, vecfile *v) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t len;
    memset(v, 0, sizeof *v);
    v->buf = read_all(path, &len);
    if (!v->buf) return false;
    size_t cap = 16;
    v->cases = malloc(cap * sizeof *v->cases);
    v->lens = malloc(cap * sizeof *v->lens);
    size_t pos = 0;
    while (pos < len) {
        char *m = memmem(v->buf + pos, len - pos, sep, sizeof sep - 1);
        size_t end = m ? (size_t)(m - v->buf) : len;
        if (!m && end == pos) break;
        if ((size_t)v->n == cap) {
            cap *= 2;
            v->cases = realloc(v->cases, cap * sizeof *v->cases);
            v->lens = realloc(v->lens, cap * sizeof *v->lens);
        }
        v->cases[v->n] = v->buf + pos;
        v->lens[v->n] = end - pos;
        v->n++;
        if (!m) break;
        pos = end + sizeof sep - 1;
    }
    return true;
}

static void free_inp(vecfile *v) {
    free(v->buf);
    free(v->cases);
    free(v->lens);
}

/* Parses .out lines; returns per-line arrays. */
static int read_out(const char *path, int32_t ***ids, int32_t **counts) {
    char *b = read_all(path, NULL);
    if (!b) return -1;
    int lines = 0;
    for (char *p = b; *p; p++)
        lines += *p == '\n';
    *ids = calloc((size_t)lines + 1, sizeof **ids);
    *counts = calloc((size_t)lines + 1, sizeof **counts);
    char *p = b;
    for (int l = 0; l < lines; l++) {
        char *nl = strchr(p, '\n');
        *nl = 0;
        int32_t cap = 8, n = 0;
        int32_t *v = malloc(cap * sizeof *v);
        char *q = p;
        while (*q) {
            while (*q == ' ')
                q++;
            if (!*q) break;
            if (n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            v[n++] = (int32_t)strtol(q, &q, 10);
        }
        (*ids)[l] = v;
        (*counts)[l] = n;
        p = nl + 1;
    }
    free(b);
    return lines;
}

static void free_out(int32_t **ids, int32_t *counts, int n) {
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(counts);
}

static void print_case(const char *text, size_t len) {
    fputs("  text: \"", stderr);
    for (size_t i = 0; i < len && i < 120; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n')
            fputs("\\n", stderr);
        else if (c == '\t')
            fputs("\\t", stderr);
        else if (c < 0x20)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputs(len > 120 ? "...\"\n" : "\"\n", stderr);
}

static int g_files, g_cases_ok, g_cases;

/* Runs one vector file against t; returns the number of mismatches. */
static int run_vectors(const qf_tok *t, const char *name, const vecfile *inp, const char *out_path,
                       bool parse_special) {
    int32_t **want, *wn;
    int nl = read_out(out_path, &want, &wn);
    if (nl < 0) return 0; /* no such file */
    int bad = 0, shown = 0;
    if (nl != inp->n) {
        fprintf(stderr, "%s: %d cases but %d result lines\n", out_path, inp->n, nl);
        free_out(want, wn, nl);
        return 1;
    }
    for (int i = 0; i < inp->n; i++) {
        int32_t n;
        qf_err err = {0};
        int32_t *ids =
            qf_tok_encode(t, inp->cases[i], inp->lens[i], false, parse_special, &n, &err);
        bool ok = ids && ids_eq(ids, n, want[i], wn[i]);
        if (!ok) {
            bad++;
            if (shown++ < 5) {
                fprintf(stderr, "%s%s case %d mismatch%s%s\n", name,
                        parse_special ? " (parse_special)" : "", i, ids ? "" : ": ",
                        ids ? "" : err.msg);
                print_case(inp->cases[i], inp->lens[i]);
                print_ids("want", want[i], wn[i]);
                if (ids) print_ids("got ", ids, n);
            }
        }
        qf_free(ids);
    }
    fprintf(stderr, "  %-40s %s %d/%d\n", name, parse_special ? "parse_special" : "plain        ",
            inp->n - bad, inp->n);
    g_cases += inp->n;
    g_cases_ok += inp->n - bad;
    free_out(want, wn, nl);
    return bad;
}

static bool valid_utf8(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((u[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

static void test_vectors(void) {
    char dir[1024];
    qf_testdata("vocab", dir, sizeof dir);
    DIR *d = opendir(dir);
    ASSERT_MSG(d, "cannot open %s", dir);
    struct dirent *e;
    int total_bad = 0;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 10 || strcmp(e->d_name + nl - 9, ".gguf.inp") != 0) continue;
        char gpath[2048], ipath[2048], opath[2100];
        snprintf(ipath, sizeof ipath, "%s/%s", dir, e->d_name);
        snprintf(gpath, sizeof gpath, "%s/%.*s", dir, (int)(nl - 4), e->d_name);
        qf_err err = {0};
        qf_gguf *g = qf_gguf_open(gpath, &err);
        if (!g) continue; /* vectors without vocab */
        qf_tok *t = qf_tok_new_from_gguf(g, &err);
        qf_gguf_close(g);
        ASSERT_MSG(t, "%s", err.msg);
        vecfile inp;
        ASSERT(read_inp(ipath, &inp));
        g_files++;
        snprintf(opath, sizeof opath, "%s/%.*s.out", dir, (int)(nl - 4), e->d_name);
        total_bad += run_vectors(t, e->d_name, &inp, opath, false);
        snprintf(opath, sizeof opath, "%s/%.*s.out.parse_special", dir, (int)(nl - 4), e->d_name);
        total_bad += run_vectors(t, e->d_name, &inp, opath, true);
        /* round trip where it must hold: SPM (byte fallback) and BPE */
        if (qf_tok_get_kind(t) != QF_TOK_WPM) {
            int rt_bad = 0;
            for (int i = 0; i < inp.n; i++) {
                if (!valid_utf8(inp.cases[i], inp.lens[i])) continue;
                for (int as = 0; as < 2; as++) {
                    if (!round_trips(t, inp.cases[i], inp.lens[i], as)) {
                        if (rt_bad++ < 3) {
                            fprintf(stderr, "%s: round trip failed (add_special=%d) case %d\n",
                                    e->d_name, as, i);
                            print_case(inp.cases[i], inp.lens[i]);
                        }
                    }
                }
            }
            total_bad += rt_bad;
        }
        free_inp(&inp);
        qf_tok_free(t);
    }
    closedir(d);
    fprintf(stderr, "  vectors: %d files, %d/%d cases\n", g_files, g_cases_ok, g_cases);
    ASSERT(g_files >= 1);
    ASSERT_EQ_INT(total_bad, 0);
}

/* Known facts about the shipped vocabs (from the README / GGUF metadata). */
static qf_tok *load_vocab(const char *file) {
    char path[1024], rel[256];
    snprintf(rel, sizeof rel, "vocab/%s", file);
    qf_testdata(rel, path, sizeof path);
    qf_err err = {0};
    qf_gguf *g = qf_gguf_open(path, &err);
    if (!g) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    qf_tok *t = qf_tok_new_from_gguf(g, &err);
    qf_gguf_close(g);
    if (!t) fprintf(stderr, "%s\n", err.msg);
    return t;
}

static void test_vocab_facts(void) {
    qf_tok *t = load_vocab("ggml-vocab-llama-spm.gguf");
    ASSERT(t);
    ASSERT_EQ_INT(qf_tok_n_vocab(t), 32000);
    ASSERT(qf_tok_add_bos(t) && qf_tok_bos(t) == 1 && qf_tok_eos(t) == 2);
    ENC_IS(t, " ", false, 259); /* README: " " -> "▁▁" = 259 */
    int32_t n;
    int32_t *ids = qf_tok_encode(t, "Hello world", 11, true, false, &n, NULL);
    ASSERT(ids && n >= 2 && ids[0] == 1);
    size_t dl;
    char *d = qf_tok_decode(t, ids, n, false, &dl);
    ASSERT_STR_EQ(d, "Hello world");
    qf_free(d);
    qf_free(ids);
    qf_tok_free(t);

    t = load_vocab("ggml-vocab-synth-qwen2.gguf");
    ASSERT(t);
    ASSERT_STR_EQ(qf_tok_pre_name(t), "qwen2");
    ASSERT(!qf_tok_add_bos(t));
    ASSERT_EQ_INT(qf_tok_eos(t), 5275);
    ASSERT(qf_tok_is_eog(t, 5275) && qf_tok_is_eog(t, 5273)); /* <|im_end|>, <|endoftext|> */
    ASSERT(!qf_tok_is_eog(t, 5274));                          /* <|im_start|> */
    ASSERT_EQ_INT(qf_tok_eot(t), 5275);
    ASSERT_EQ_INT(qf_tok_type(t, 5283), QF_TOKEN_USER_DEFINED);
    ENC_IS(t, "<|im_start|>", true, 5274);
    qf_tok_free(t);

    t = load_vocab("ggml-vocab-synth-llama-bpe.gguf");
    ASSERT(t);
    ASSERT(qf_tok_add_bos(t) && qf_tok_bos(t) == 6272);
    ASSERT(qf_tok_is_eog(t, qf_tok_find(t, "<|eot_id|>")));
    ASSERT(qf_tok_is_eog(t, qf_tok_find(t, "<|eom_id|>")));
    ids = qf_tok_encode(t, "Hi", 2, true, false, &n, NULL);
    ASSERT(ids && n >= 2 && ids[0] == 6272);
    qf_free(ids);
    qf_tok_free(t);

    t = load_vocab("ggml-vocab-bert-bge.gguf");
    ASSERT(t);
    ASSERT_EQ_INT(qf_tok_get_kind(t), QF_TOK_WPM);
    ids = qf_tok_encode(t, "hello", 5, true, false, &n, NULL);
    ASSERT(ids && n >= 3 && ids[0] == 101 && ids[n - 1] == 102);
    qf_free(ids);
    qf_tok_free(t);

    /* phi-3 (general.name "Phi3"): specials strip the whitespace after them,
     * and the text after a special gets the SPM space prefix */
    t = load_vocab("ggml-vocab-phi-3.gguf");
    ASSERT(t);
    int32_t user = qf_tok_find(t, "<|user|>"), nh;
    ASSERT(user >= 0);
    ASSERT(qf_tok_is_eog(t, qf_tok_find(t, "<|end|>")) && qf_tok_is_eog(t, qf_tok_eos(t)));
    ASSERT(!qf_tok_is_eog(t, user));
    int32_t *hi = qf_tok_encode(t, "hi", 2, false, false, &nh, NULL);
    ids = qf_tok_encode(t, "<|user|>  \n hi", 14, false, true, &n, NULL);
    ASSERT(hi && ids && n == nh + 1 && ids[0] == user && ids_eq(ids + 1, n - 1, hi, nh));
    qf_free(ids);
    qf_free(hi);
    qf_tok_free(t);

    /* gpt-neox has no pre (-> default) and baichuan has no vectors: they load */
    t = load_vocab("ggml-vocab-gpt-neox.gguf");
    ASSERT(t);
    ASSERT_STR_EQ(qf_tok_pre_name(t), "default");
    ASSERT(round_trips(t, "Hello, world! 12345 \xe4\xbd\xa0\xe5\xa5\xbd", 27, true));
    qf_tok_free(t);
    t = load_vocab("ggml-vocab-baichuan.gguf");
    ASSERT(t);
    ASSERT(round_trips(t, "Hello, world! \xe4\xbd\xa0\xe5\xa5\xbd", 20, true));
    qf_tok_free(t);
}

/* Many threads encoding with one tokenizer give the single-thread result. */
typedef struct thr_arg {
    const qf_tok *t;
    const vecfile *inp;
    int32_t **want;
    int32_t *wn;
    int bad;
} thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    for (int rep = 0; rep < 3; rep++)
        for (int i = 0; i < a->inp->n; i++) {
            int32_t n;
            int32_t *ids =
                qf_tok_encode(a->t, a->inp->cases[i], a->inp->lens[i], false, false, &n, NULL);
            if (!ids || !ids_eq(ids, n, a->want[i], a->wn[i])) a->bad++;
            qf_free(ids);
        }
    return NULL;
}

static void test_threads(void) {
    char path[1024];
    qf_testdata("vocab/ggml-vocab-synth-gpt-4o.gguf.inp", path, sizeof path);
    qf_tok *t = load_vocab("ggml-vocab-synth-gpt-4o.gguf");
    ASSERT(t);
    vecfile inp;
    ASSERT(read_inp(path, &inp));
    int32_t **want = calloc((size_t)inp.n, sizeof *want);
    int32_t *wn = calloc((size_t)inp.n, sizeof *wn);
    for (int i = 0; i < inp.n; i++)
        want[i] = qf_tok_encode(t, inp.cases[i], inp.lens[i], false, false, &wn[i], NULL);
    thr_arg args[4];
    pthread_t th[4];
    for (int k = 0; k < 4; k++) {
        args[k] = (thr_arg){t, &inp, want, wn, 0};
        ASSERT(pthread_create(&th[k], NULL, thr_main, &args[k]) == 0);
    }
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        bad += args[k].bad;
    }
    for (int i = 0; i < inp.n; i++)
        qf_free(want[i]);
    free(want);
    free(wn);
    free_inp(&inp);
    qf_tok_free(t);
    ASSERT_EQ_INT(bad, 0);
}

/* A real vocab on a big mixed input: finishes quickly and round-trips. */
static void test_big_real(void) {
    qf_tok *t = load_vocab("ggml-vocab-synth-deepseek-v3.gguf");
    ASSERT(t);
    const char *chunk = "The quick brown fox, 12345 ~/path \xe4\xbd\xa0\xe5\xa5\xbd  \t\n"
                        "--- ~~~ \xe2\x82\xac\xe2\x80\x94\xe2\x82\xac !!! x'll ";
    size_t cl = strlen(chunk), n = 1 << 20;
    char *s = malloc(n);
    ASSERT(s);
    for (size_t i = 0; i < n; i++)
        s[i] = chunk[i % cl];
    size_t end = n - n % cl; /* whole chunks: valid UTF-8 */
    double t0 = now_s();
    ASSERT(round_trips(t, s, end, false));
    memset(s, '-', n);
    ASSERT(round_trips(t, s, n, false));
    for (size_t i = 0; i + 6 <= n; i += 6)
        memcpy(s + i, "\xe2\x82\xac-\xe2\x80", 5), s[i + 5] = '\x94';
    ASSERT(round_trips(t, s, n - n % 6, false)); /* alternating symbol / punctuation runs */
    double dt = now_s() - t0;
    fprintf(stderr, "  big real input: %.2f s\n", dt);
    ASSERT(dt < 60);
    free(s);
    qf_tok_free(t);
}

/* Encoding a long text (word caches on) agrees with encoding a prefix of it
 * that ends before a word (too short for the caches): words are independent
 * in SPM (llama vocab) and in gpt-2's pre-tokenizer with single spaces. */
static void test_cache_consistency(void) {
    static const char *words[] = {"the",
                                  "quick",
                                  "brown",
                                  "fox",
                                  "jumps",
                                  "over",
                                  "lazy",
                                  "dog",
                                  "Hello,",
                                  "world!",
                                  "caf\xc3\xa9",
                                  "na\xc3\xafve",
                                  "\xe4\xbd\xa0\xe5\xa5\xbd",
                                  "12345",
                                  "don't",
                                  "x",
                                  "tokenization",
                                  "\xf0\x9f\xa6\x99",
                                  "a",
                                  "I'm"};
    const size_t nw = sizeof words / sizeof words[0];
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap + 64);
    ASSERT(s);
    uint32_t r = 12345;
    while (n < cap) {
        r = r * 1103515245u + 12345u;
        const char *w = words[(r >> 16) % nw];
        size_t l = strlen(w);
        if (n) s[n++] = ' ';
        memcpy(s + n, w, l);
        n += l;
    }
    const char *vocabs[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf",
                            "ggml-vocab-synth-qwen2.gguf"};
    for (size_t v = 0; v < 3; v++) {
        qf_tok *t = load_vocab(vocabs[v]);
        ASSERT(t);
        int32_t nall, np;
        int32_t *all = qf_tok_encode(t, s, n, false, false, &nall, NULL);
        ASSERT(all);
        int checked = 0;
        for (size_t k = 1000; k < 4000; k += 97) {
            size_t cut = k;
            while (s[cut] != ' ')
                cut++;
            int32_t *pre = qf_tok_encode(t, s, cut, false, false, &np, NULL);
            ASSERT(pre && np <= nall);
            bool same = ids_eq(pre, np, all, np);
            if (!same) fprintf(stderr, "  %s: prefix of %zu bytes differs\n", vocabs[v], cut);
            qf_free(pre);
            ASSERT(same);
            checked++;
        }
        ASSERT(round_trips(t, s, n, true));
        qf_free(all);
        qf_tok_free(t);
        ASSERT(checked > 20);
    }
    free(s);
}

/* Random byte soup (valid and invalid UTF-8, special-token texts, NULs)
 * through real vocabs: never fails, and SPM/BPE decode gives the bytes back. */
static void test_random_soup(void) {
    static const char *const atoms[] = {"a",
                                        "Z",
                                        " ",
                                        "  ",
                                        "\n",
                                        "\t",
                                        "\xc3\xa9",
                                        "\xe4\xb8\xad",
                                        "\xf0\x9f\xa6\x99",
                                        "'s",
                                        "'LL",
                                        "123",
                                        "\xff",
                                        "\xc3",
                                        "\xe2\x82",
                                        "\xed\xa0\x80",
                                        "<s>",
                                        "<|im_end|>",
                                        "<think>",
                                        "~",
                                        "--",
                                        "\r\n",
                                        "\xc2\xa0",
                                        "\xe3\x80\x80",
                                        "\xcc\x81",
                                        "\xe2\x96\x81",
                                        "\xc4\xa0",
                                        "Hello",
                                        " world",
                                        "\x0b",
                                        "\xc3\xb8"};
    const size_t na = sizeof atoms / sizeof atoms[0];
    static const char *vocabs[] = {"ggml-vocab-llama-spm.gguf",
                                   "ggml-vocab-gpt-2.gguf",
                                   "ggml-vocab-deepseek-llm.gguf",
                                   "ggml-vocab-synth-gpt-4o.gguf",
                                   "ggml-vocab-synth-deepseek-v3.gguf",
                                   "ggml-vocab-synth-qwen2.gguf",
                                   "ggml-vocab-falcon.gguf",
                                   "ggml-vocab-bert-bge.gguf"};
    unsigned seed = qf_test_seed();
    char buf[512];
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        qf_tok *t = load_vocab(vocabs[v]);
        ASSERT(t);
        bool has_byte[256];
        for (int b = 0; b < 256; b++) {
            char txt[8];
            put_utf8(txt, gpt2_cp(b));
            int32_t id = qf_tok_find(t, txt);
            has_byte[b] = id >= 0 && qf_tok_type(t, id) == QF_TOKEN_NORMAL;
        }
        unsigned r = seed + (unsigned)v;
        for (int it = 0; it < 300; it++) {
            size_t n = 0;
            int k = (int)((r = r * 1103515245u + 12345u) >> 16) % 24;
            for (int j = 0; j < k; j++) {
                const char *a = atoms[((r = r * 1103515245u + 12345u) >> 16) % na];
                size_t l = strlen(a);
                memcpy(buf + n, a, l);
                n += l;
            }
            if (it % 7 == 0 && n) buf[n / 2] = '\0';
            for (int ps = 0; ps < 2; ps++) {
                int32_t cnt;
                qf_err err = {0};
                int32_t *ids = qf_tok_encode(t, buf, n, ps, ps, &cnt, &err);
                ASSERT_MSG(ids, "%s: %s", vocabs[v], err.msg);
                for (int32_t i = 0; i < cnt; i++)
                    ASSERT(ids[i] >= 0 && ids[i] < qf_tok_n_vocab(t));
                char *d = qf_tok_decode(t, ids, cnt, true, NULL);
                ASSERT(d);
                qf_free(d);
                qf_free(ids);
            }
            /* SPM cannot tell a U+2581 in the text from an escaped space */
            bool has_mark = memmem(buf, n, "\xe2\x96\x81", 3) != NULL;
            /* bytes without a plain byte token cannot come back (falcon has
             * none for \x0b; most lack C0, C1, F5..FF: those become U+FFFD) */
            bool lossy = false;
            for (size_t i = 0; i < n; i++)
                lossy |= !has_byte[(uint8_t)buf[i]];
            if ((qf_tok_get_kind(t) == QF_TOK_BPE && !lossy) ||
                (qf_tok_get_kind(t) == QF_TOK_SPM && !has_mark))
                ASSERT_MSG(round_trips(t, buf, n, it & 1), "%s iteration %d (seed %u)", vocabs[v],
                           it, seed);
        }
        qf_tok_free(t);
    }
}

int main(void) {
    RUN_TEST(test_spm_tiny);
    RUN_TEST(test_bpe_tiny);
    RUN_TEST(test_wpm_tiny);
    RUN_TEST(test_bad_gguf);
    RUN_TEST(test_bad_args);
    RUN_TEST(test_alloc_failure);
    RUN_TEST(test_big_input);
    /* the rest needs ../shared/testdata: skip (77) when it is absent, unless
     * a unit test above already failed */
    struct stat st;
    const char *root = getenv("QF_TESTDATA") ? getenv("QF_TESTDATA") : QF_TESTDATA_DIR;
    if (stat(root, &st) != 0) {
        if (qf_test_failures) TEST_MAIN_END();
        QF_SKIP("shared test data not found at %s", root);
    }
    RUN_TEST(test_vectors);
    RUN_TEST(test_vocab_facts);
    RUN_TEST(test_threads);
    RUN_TEST(test_cache_consistency);
    RUN_TEST(test_random_soup);
    RUN_TEST(test_big_real);
    TEST_MAIN_END();
}
