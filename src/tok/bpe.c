/* bpe.c - byte-level BPE (tokenizer.ggml.model "gpt2"): pre-tokenizer regexes,
 * merges, encoding of one text fragment.
 *
 * Pre-tokenization follows llama.cpp's unicode_regex_split: the regexes of
 * the vocab's pre-type are applied in order; each one re-splits every piece
 * made so far, and the text between two matches stays a piece of its own.
 * A piece is the whole PCRE2 subject, so look-aheads and `$` never see past
 * it. Before the first regex the fragment is cut into maximal well-formed
 * UTF-8 runs and single invalid bytes; invalid bytes skip the regexes (PCRE2
 * runs with PCRE2_NO_UTF_CHECK on the runs) and become their byte token, or
 * U+FFFD (as in llama.cpp) when the vocab has no plain token for that byte.
 *
 * The expressions are llama.cpp's, written for PCRE2 (UTF + UCP) so that they
 * match what llama.cpp's matcher does rather than the textbook classes:
 *   - `\s` is spelled out as llama.cpp's whitespace set (Unicode White_Space
 *     plus ASCII \t-\r); PCRE2's \s would also take U+180E.
 *   - `(?=[\p{L}])([^a-z])` (gpt-4o, tekken) is the class [^\P{L}a-z]: same
 *     set, but a plain character repeat instead of a backtracking group.
 *   - deepseek-v3: llama.cpp's \p{S} emulation lacks `~`, so `~` is allowed
 *     as the optional word prefix and is not part of a punctuation run.
 *   - deepseek-llm/-coder: llama.cpp replaces non-ASCII whitespace before
 *     matching expressions without \p{..}, so the CJK range U+0800-U+4E00 and
 *     the CJK punctuation range U+3000-U+3002 exclude whitespace here.
 *   - deepseek-llm's cased-letter class is given with \x{..} escapes (the
 *     published form had NFC-normalised endpoints such as U+1F7D -> U+03CE).
 *   - `$` is end-of-piece only (PCRE2_DOLLAR_ENDONLY, as ECMAScript).
 *
 * Merging works on token ids: a piece starts as one symbol per byte (the
 * token of that byte's GPT-2 byte->unicode char); candidate pairs live in a
 * min-heap keyed by (merge rank, left position), and the (left id, right id)
 * -> (rank, result id) table is an open-addressing hash. A popped pair is
 * stale unless both symbols are still adjacent with the recorded ids (ids
 * only change by growing, so this is exact). O(n log n) per piece. With
 * ignore_merges (llama-bpe family) a piece that is a vocab token as a whole is
 * emitted directly. A symbol without a token (a merge whose result is not in
 * the vocab) is emitted byte by byte.
 */
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/log.h"
#include "base/mem.h"
#include "tok/tok_int.h"

#define MAX_RE 8

/* ---- pre-tokenizer expressions ---- */

/* clang-format off */

/* llama.cpp's whitespace set, as class items */
#define WS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}" \
           "\\x{205F}\\x{3000}"
#define SP      "[" WS "]"  /* \s */
#define NSP     "[^" WS "]" /* \S */
#define CONTR   "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define TAIL_WS SP "*[\\r\\n]+|" SP "+(?!" NSP ")|" SP "+"
/* U+4E00-U+9FA5, U+0800-U+4E00 (minus whitespace), U+AC00-U+D7FF */
#define CJK_DS "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}" \
               "\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}"  \
               "\\x{AC00}-\\x{D7FF}]+"

#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|" \
                SP "+(?!" NSP ")"

static const char *const re_gpt2[] = {GPT2_RE, NULL};
static const char *const re_default[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
static const char *const re_falcon[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_RE, "[0-9][0-9][0-9]", NULL};
static const char *const re_starcoder[] = {"\\p{N}", GPT2_RE, NULL};
static const char *const re_llama3[] = {
    CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" TAIL_WS,
    NULL};
static const char *const re_qwen2[] = {
    CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" TAIL_WS,
    NULL};
static const char *const re_qwen35[] = {
    CONTR "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^" WS "\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
    TAIL_WS,
    NULL};
static const char *const re_ufakzeka[] = {
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" TAIL_WS,
    NULL};
static const char *const re_seed_coder[] = {
    CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^" WS "\\p{L}\\p{N}\\r\\n]+|" TAIL_WS,
    NULL};
static const char *const re_bailing[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" SP "*[\\r\\n]|" SP "+(?!" NSP ")|" SP "+",
    NULL};
static const char *const re_minicpm5[] = {
    "\\p{N}{1,3}",
    CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" TAIL_WS,
    NULL};
static const char *const re_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]*[^\\P{L}A-Z]+" CONTR "?"
    "|[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]+[^\\P{L}A-Z]*" CONTR "?"
    "|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*|" TAIL_WS,
    NULL};
static const char *const re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]*[^\\P{L}A-Z]+"
    "|[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]+[^\\P{L}A-Z]*"
    "|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*|" TAIL_WS,
    NULL};
static const char *const re_deepseek3[] = {
    "\\p{N}{1,3}",
    "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
    "|(?:[^\\r\\n\\p{L}\\p{P}\\p{S}]|~)?[\\p{L}\\p{M}]+"
    "| ?(?:[\\p{P}$+<=>^`|]+|[^\\P{S}\\x00-\\x7F]+)+[\\r\\n]*|" TAIL_WS,
    NULL};
static const char *const re_deepseek_llm[] = {
    "[\\r\\n]",
    SP "?[\\x{41}-\\x{5A}\\x{61}-\\x{7A}\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}"
    "\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}"
    "\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"
    "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}"
    "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}"
    "\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
    "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"
    "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
    "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
    "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}"
    "\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}"
    "\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"
    "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}"
    "\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}"
    "\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"
    "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
    "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
    "\\x{1E900}-\\x{1E943}]+",
    SP "?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3001}-\\x{3002}]+",
    SP "+$",
    CJK_DS,
    "\\p{N}+",
    NULL};
static const char *const re_deepseek_coder[] = {
    "[\\r\\n]", SP "?\\p{L}+", SP "?\\p{P}+", CJK_DS, "\\p{N}", NULL};
#define PORO_RE " ?[^(" WS "|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"
static const char *const re_poro[] = {PORO_RE, NULL};
static const char *const re_viking[] = {PORO_RE, "\\p{N}", NULL};

/* clang-format on */

enum { PRE_IGNORE_MERGES = 1, PRE_ADD_BOS = 2, PRE_NO_BOS = 4 };

typedef struct pre_def {
    const char *name;
    const char *const *re;
    int flags;
} pre_def;

/* tokenizer.ggml.pre -> expressions, as llama.cpp's llama_vocab::load */
static const pre_def k_pre[] = {
    {"default", re_default, 0},
    {"llama3", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-v3", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-bpe", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"falcon3", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"falcon-h1", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"pixtral", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"midm-2.0", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"lfm2", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"jina-v5-nano", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"dbrx", re_llama3, 0},
    {"smaug-bpe", re_llama3, 0},
    {"glm4", re_llama3, PRE_NO_BOS},
    {"chatglm-bpe", re_llama3, PRE_NO_BOS},
    {"deepseek-llm", re_deepseek_llm, 0},
    {"deepseek-coder", re_deepseek_coder, 0},
    {"deepseek-v3", re_deepseek3, 0},
    {"hunyuan-dense", re_deepseek3, 0},
    {"joyai-llm", re_deepseek3, 0},
    {"hy_v4", re_deepseek3, 0},
    {"falcon", re_falcon, 0},
    {"mpt", re_gpt2, 0},
    {"gpt-2", re_gpt2, 0},
    {"phi-2", re_gpt2, 0},
    {"jina-es", re_gpt2, 0},
    {"jina-de", re_gpt2, 0},
    {"gigachat", re_gpt2, 0},
    {"jina-v2-es", re_gpt2, 0},
    {"jina-v2-de", re_gpt2, 0},
    {"jina-v1-en", re_gpt2, 0},
    {"jina-v2-code", re_gpt2, 0},
    {"roberta-bpe", re_gpt2, 0},
    {"a.x-4.0", re_gpt2, 0},
    {"mellum", re_gpt2, 0},
    {"modern-bert", re_gpt2, 0},
    {"exaone4", re_gpt2, 0},
    {"olmo", re_gpt2, 0},
    {"jais", re_gpt2, 0},
    {"trillion", re_gpt2, 0},
    {"granite-docling", re_gpt2, 0},
    {"starcoder", re_starcoder, 0},
    {"refact", re_starcoder, 0},
    {"command-r", re_starcoder, 0},
    {"smollm", re_starcoder, 0},
    {"codeshell", re_starcoder, 0},
    {"exaone", re_starcoder, 0},
    {"minerva-7b", re_starcoder, 0},
    {"mellum2", re_starcoder, 0},
    {"qwen2", re_qwen2, 0},
    {"deepseek-r1-qwen", re_qwen2, 0},
    {"kormo", re_qwen2, 0},
    {"f2llmv2", re_qwen2, 0},
    {"megrez", re_qwen2, 0},
    {"stablelm2", re_qwen2, 0},
    {"hunyuan", re_qwen2, 0},
    {"solar-open", re_qwen2, 0},
    {"grok-2", re_qwen2, 0},
    {"qwen35", re_qwen35, 0},
    {"ufakzeka", re_ufakzeka, 0},
    {"seed-coder", re_seed_coder, 0},
    {"bailingmoe", re_bailing, 0},
    {"bailingmoe2", re_bailing, 0},
    {"llada-moe", re_bailing, 0},
    {"minicpm5", re_minicpm5, PRE_IGNORE_MERGES},
    {"gpt-4o", re_gpt4o, 0},
    {"llama4", re_gpt4o, 0},
    {"kanana2", re_gpt4o, 0},
    {"talkie", re_gpt4o, 0},
    {"minimax-m2", re_gpt4o, 0},
    {"tekken", re_tekken, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"poro-chat", re_poro, 0},
    {"bloom", re_poro, 0},
    {"gpt3-finnish", re_poro, 0},
    {"viking", re_viking, 0},
};

/* ---- GPT-2 byte <-> unicode ---- */

/* Printable bytes map to themselves; the other 68 (0x00-0x20, 0x7F-0xA0,
 * 0xAD) map to U+0100.. in byte order. */
static uint32_t byte_to_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 0x100u + b;
    if (b <= 0xA0) return 0x100u + 33 + (b - 0x7Fu);
    return 0x143; /* 0xAD */
}

static int cp_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 0x100 || cp > 0x143) return -1;
    uint32_t n = cp - 0x100;
    if (n <= 32) return (int)n;
    if (n <= 66) return (int)(0x7F + n - 33);
    return 0xAD;
}

size_t tok_bpe_decode_text(const char *s, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t k = tok_utf8_len((const uint8_t *)s + i, len - i);
        int b = k ? cp_to_byte(tok_utf8_decode((const uint8_t *)s + i, k)) : -1;
        if (k == 0) k = 1;
        if (b >= 0) {
            out[n++] = (char)b;
        } else { /* not a byte-level char: keep its bytes (llama.cpp prints a marker) */
            memcpy(out + n, s + i, k);
            n += k;
        }
        i += k;
    }
    return n;
}

/* ---- state ---- */

/* one slot of the (left id, right id) -> merge table: one cache line fetch */
typedef struct merge_slot {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    int32_t rank; /* index in tokenizer.ggml.merges: lower merges first */
    int32_t res;  /* id of left+right, -1 if no such token */
} merge_slot;

struct tok_bpe {
    int n_re;
    pcre2_code *re[MAX_RE];
    bool ignore_merges;
    int32_t byte_id[256]; /* token of each byte's char, -1 */
    char enc[256][2];     /* UTF-8 of each byte's char (1 or 2 bytes) */
    uint8_t enc_len[256];
    struct merge_slot *merges; /* (mmask + 1) slots */
    uint32_t mmask;
};

bool tok_bpe_ignore_merges(const tok_bpe *b) {
    return b->ignore_merges;
}

void tok_bpe_free(tok_bpe *b) {
    if (!b) return;
    for (int i = 0; i < b->n_re; i++)
        pcre2_code_free(b->re[i]);
    qf_free(b->merges);
    qf_free(b);
}

static uint32_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static uint64_t pair_key(int32_t l, int32_t r) {
    return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
}

static bool merge_find(const tok_bpe *b, int32_t l, int32_t r, int32_t *rank, int32_t *res) {
    uint64_t key = pair_key(l, r);
    uint32_t i = mix64(key) & b->mmask;
    for (;;) {
        const merge_slot *m = &b->merges[i];
        if (m->key == UINT64_MAX) return false;
        if (m->key == key) {
            *rank = m->rank;
            *res = m->res;
            return true;
        }
        i = (i + 1) & b->mmask;
    }
}

static qf_status load_merges(qf_tok *t, tok_bpe *b, const qf_gguf *g, qf_err *err) {
    qf_gguf_arr arr;
    if (qf_gguf_find_kv(g, "tokenizer.ggml.merges") < 0)
        return QF_ERR_SET(err, QF_ERR_FORMAT,
                          "%s: tokenizer.ggml.merges missing (required for gpt2 vocabs)", t->name);
    if (!qf_gguf_get_arr(g, "tokenizer.ggml.merges", &arr) || arr.type != QF_GGUF_STRING)
        return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: tokenizer.ggml.merges is not a string array",
                          t->name);
    if (arr.n > (1u << 28)) /* keeps the table size within 32 bits */
        return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: tokenizer.ggml.merges has %llu entries", t->name,
                          (unsigned long long)arr.n);
    uint32_t cap = 16;
    while (cap < arr.n * 2)
        cap *= 2;
    b->merges = qf_malloc((size_t)cap * sizeof *b->merges);
    char *cat = qf_malloc((size_t)t->max_len * 2 + 2);
    if (!b->merges || !cat) {
        qf_free(cat);
        return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory for %llu merges", t->name,
                          (unsigned long long)arr.n);
    }
    for (uint32_t k = 0; k < cap; k++)
        b->merges[k].key = UINT64_MAX;
    b->mmask = cap - 1;
    uint64_t skipped = 0, first_bad = UINT64_MAX;
    for (uint64_t i = 0; i < arr.n; i++) {
        qf_gguf_str s = qf_gguf_arr_str(g, &arr, i);
        /* the separator is the first space after position 0 (llama.cpp) */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', (size_t)s.len - 1) : NULL;
        int32_t l = -1, r = -1;
        size_t ll = 0, rl = 0;
        if (sp) {
            ll = (size_t)(sp - s.ptr);
            rl = (size_t)s.len - ll - 1;
            l = tok_lookup(t, s.ptr, ll);
            r = tok_lookup(t, sp + 1, rl);
        }
        if (l < 0 || r < 0) { /* cannot apply: a side is no token */
            if (first_bad == UINT64_MAX) first_bad = i;
            skipped++;
            continue;
        }
        int32_t res = -1;
        if (ll + rl <= t->max_len) {
            memcpy(cat, s.ptr, ll);
            memcpy(cat + ll, sp + 1, rl);
            res = tok_lookup(t, cat, ll + rl);
        }
        uint64_t key = pair_key(l, r);
        uint32_t k = mix64(key) & b->mmask;
        while (b->merges[k].key != UINT64_MAX && b->merges[k].key != key)
            k = (k + 1) & b->mmask;
        if (b->merges[k].key == key) continue; /* duplicate pair: the first (lowest rank) wins */
        b->merges[k] = (merge_slot){key, (int32_t)i, res};
    }
    qf_free(cat);
    if (skipped)
        qf_warn("%s: %llu of %llu merges name a non-token (first: #%llu); they are ignored",
                t->name, (unsigned long long)skipped, (unsigned long long)arr.n,
                (unsigned long long)first_bad);
    return QF_OK;
}

qf_status tok_bpe_init(qf_tok *t, const qf_gguf *g, qf_err *err) {
    const pre_def *def = NULL;
    for (size_t i = 0; i < sizeof k_pre / sizeof k_pre[0]; i++)
        if (!strcmp(k_pre[i].name, t->pre_name)) def = &k_pre[i];
    if (!def)
        return QF_ERR_SET(err, QF_ERR_UNSUPPORTED,
                          "%s: pre-tokenizer tokenizer.ggml.pre = '%s' is not supported", t->name,
                          t->pre_name);
    tok_bpe *b = qf_calloc(1, sizeof *b);
    if (!b) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", t->name);
    t->bpe = b;
    b->ignore_merges = (def->flags & PRE_IGNORE_MERGES) != 0;
    if (def->flags & PRE_ADD_BOS) t->add_bos = true;
    if (def->flags & PRE_NO_BOS) t->bos = -1;

    for (int i = 0; def->re[i]; i++) {
        QF_ASSERT(i < MAX_RE);
        int ec;
        PCRE2_SIZE eo;
        b->re[i] = pcre2_compile((PCRE2_SPTR)def->re[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
        if (!b->re[i]) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return QF_ERR_SET(err, QF_ERR_INTERNAL,
                              "%s: pre-tokenizer '%s' regex %d: %s at offset %zu", t->name,
                              t->pre_name, i, (const char *)msg, (size_t)eo);
        }
        b->n_re = i + 1;
        (void)pcre2_jit_compile(b->re[i], PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    }
    for (int c = 0; c < 256; c++) {
        b->enc_len[c] = (uint8_t)tok_utf8_encode(byte_to_cp((uint8_t)c), b->enc[c]);
        b->byte_id[c] = tok_lookup(t, b->enc[c], b->enc_len[c]);
    }
    return load_merges(t, b, g, err);
}

/* ---- encode ---- */

typedef struct piece {
    uint32_t off;
    uint32_t len : 31;
    uint32_t bad : 1; /* a single invalid UTF-8 byte */
} piece;

typedef struct piece_vec {
    piece *v;
    size_t n, cap;
} piece_vec;

static qf_status piece_push(piece_vec *p, uint32_t off, uint32_t len, bool bad) {
    if (len == 0) return QF_OK;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        piece *v = qf_realloc(p->v, cap * sizeof *v);
        if (!v) return QF_ERR_NOMEM;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (piece){off, len, bad};
    return QF_OK;
}

/* Re-splits piece pc of text with regex re, appending to out. */
static qf_status split_piece(const qf_tok *t, const pcre2_code *re, pcre2_match_data *md,
                             const char *text, piece pc, piece_vec *out, qf_err *err) {
    PCRE2_SPTR subj = (PCRE2_SPTR)text + pc.off;
    size_t n = pc.len, start = 0, gap = 0;
    while (start < n) {
        int rc = pcre2_match(re, subj, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* deep backtracking: the interpreter keeps its frames
                                                 on the heap */
            rc = pcre2_match(re, subj, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return QF_ERR_SET(err, rc == PCRE2_ERROR_NOMEMORY ? QF_ERR_NOMEM : QF_ERR_INTERNAL,
                              "%s: pre-tokenizer '%s' failed on a %zu-byte piece: %s", t->name,
                              t->pre_name, n, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: step over one character */
            if (ms >= n) break;
            size_t k = tok_utf8_len(subj + ms, n - ms);
            start = ms + (k ? k : 1);
            continue;
        }
        if ((ms > gap && piece_push(out, pc.off + (uint32_t)gap, (uint32_t)(ms - gap), false)) ||
            piece_push(out, pc.off + (uint32_t)ms, (uint32_t)(me - ms), false))
            return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", t->name);
        gap = start = me;
    }
    if (gap < n && piece_push(out, pc.off + (uint32_t)gap, (uint32_t)(n - gap), false))
        return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", t->name);
    return QF_OK;
}

typedef struct sym {
    int32_t id, prev, next;
    uint32_t off, n; /* bytes of the piece; n == 0: merged away */
} sym;

typedef struct pair {
    int32_t rank, left, right, lid, rid, res;
} pair;

/* scratch reused across the pieces of one call */
typedef struct work {
    sym *s;
    size_t s_cap;
    pair *h;
    size_t h_n, h_cap;
    char *enc;
    size_t enc_cap;
} work;

/* a ranks above b: lower merge rank, then leftmost */
static bool above(const pair *a, const pair *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static qf_status heap_push(work *w, pair p) {
    if (w->h_n == w->h_cap) {
        size_t cap = w->h_cap ? w->h_cap * 2 : 64;
        pair *v = qf_realloc(w->h, cap * sizeof *v);
        if (!v) return QF_ERR_NOMEM;
        w->h = v;
        w->h_cap = cap;
    }
    size_t i = w->h_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!above(&p, &w->h[parent])) break;
        w->h[i] = w->h[parent];
        i = parent;
    }
    w->h[i] = p;
    return QF_OK;
}

static pair heap_pop(work *w) {
    pair top = w->h[0], last = w->h[--w->h_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->h_n) break;
        if (c + 1 < w->h_n && above(&w->h[c + 1], &w->h[c])) c++;
        if (!above(&w->h[c], &last)) break;
        w->h[i] = w->h[c];
        i = c;
    }
    if (w->h_n) w->h[i] = last;
    return top;
}

static qf_status add_pair(const tok_bpe *b, work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return QF_OK;
    int32_t lid = w->s[l].id, rid = w->s[r].id, rank, res;
    if (lid < 0 || rid < 0 || !merge_find(b, lid, rid, &rank, &res)) return QF_OK;
    return heap_push(w, (pair){rank, l, r, lid, rid, res});
}

static qf_status emit_bytes(const tok_bpe *b, const uint8_t *p, size_t n, tok_vec *out) {
    for (size_t k = 0; k < n; k++)
        if (b->byte_id[p[k]] >= 0 && tok_vec_push(out, b->byte_id[p[k]])) return QF_ERR_NOMEM;
    return QF_OK;
}

/* BPE-merges one pre-token (bytes p[0..n)) and appends its ids. */
static qf_status merge_piece(const qf_tok *t, work *w, const uint8_t *p, size_t n, tok_vec *out) {
    const tok_bpe *b = t->bpe;
    if (n == 1) return emit_bytes(b, p, 1, out);
    if (b->ignore_merges) { /* the whole byte-encoded piece may be a token */
        if (w->enc_cap < 2 * n) {
            char *e = qf_realloc(w->enc, 2 * n);
            if (!e) return QF_ERR_NOMEM;
            w->enc = e;
            w->enc_cap = 2 * n;
        }
        size_t m = 0;
        for (size_t k = 0; k < n; k++) {
            memcpy(w->enc + m, b->enc[p[k]], b->enc_len[p[k]]);
            m += b->enc_len[p[k]];
        }
        int32_t id = m <= t->max_len ? tok_lookup(t, w->enc, m) : -1;
        if (id >= 0) return tok_vec_push(out, id);
    }
    if (w->s_cap < n) {
        sym *s = qf_realloc(w->s, n * sizeof *s);
        if (!s) return QF_ERR_NOMEM;
        w->s = s;
        w->s_cap = n;
    }
    sym *s = w->s;
    for (size_t k = 0; k < n; k++)
        s[k] = (sym){b->byte_id[p[k]], (int32_t)k - 1, k + 1 < n ? (int32_t)k + 1 : -1, (uint32_t)k,
                     1};
    w->h_n = 0;
    for (size_t k = 1; k < n; k++)
        if (add_pair(b, w, (int32_t)k - 1, (int32_t)k)) return QF_ERR_NOMEM;
    while (w->h_n) {
        pair q = heap_pop(w);
        sym *l = &s[q.left], *r = &s[q.right];
        if (l->n == 0 || r->n == 0 || l->next != q.right || l->id != q.lid || r->id != q.rid)
            continue;
        l->id = q.res;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = q.left;
        if (add_pair(b, w, l->prev, q.left) || add_pair(b, w, q.left, l->next)) return QF_ERR_NOMEM;
    }
    for (int32_t i = 0; i != -1; i = s[i].next) {
        qf_status st =
            s[i].id >= 0 ? tok_vec_push(out, s[i].id) : emit_bytes(b, p + s[i].off, s[i].n, out);
        if (st) return st;
    }
    return QF_OK;
}

qf_status tok_bpe_encode(const qf_tok *t, const char *text, size_t len, tok_vec *out, qf_err *err) {
    const tok_bpe *b = t->bpe;
    piece_vec a = {0}, c = {0};
    work w = {0};
    tok_wcache cache = {0};
    pcre2_match_data *md = NULL;
    qf_status st = QF_OK;
    if (len == 0) return QF_OK;

    /* well-formed runs and lone invalid bytes */
    const uint8_t *u = (const uint8_t *)text;
    size_t run = 0;
    for (size_t i = 0; i < len && !st;) {
        size_t k = tok_utf8_len(u + i, len - i);
        if (k) {
            i += k;
            continue;
        }
        st = piece_push(&a, (uint32_t)run, (uint32_t)(i - run), false);
        if (!st) st = piece_push(&a, (uint32_t)i, 1, true);
        run = ++i;
    }
    if (!st) st = piece_push(&a, (uint32_t)run, (uint32_t)(len - run), false);
    if (st) goto nomem;

    md = pcre2_match_data_create(1, NULL);
    if (!md) goto nomem;
    for (int r = 0; r < b->n_re; r++) {
        c.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            if (a.v[i].bad) {
                if (piece_push(&c, a.v[i].off, 1, true)) goto nomem;
                continue;
            }
            st = split_piece(t, b->re[r], md, text, a.v[i], &c, err);
            if (st) goto done;
        }
        piece_vec sw = a;
        a = c;
        c = sw;
    }
    /* natural text repeats its words: remember merged pieces */
    if (a.n >= 256 && tok_wcache_init(&cache, a.n)) goto nomem;
    for (size_t i = 0; i < a.n; i++) {
        const uint8_t *p = u + a.v[i].off;
        size_t n = a.v[i].len;
        if (a.v[i].bad) {
            /* An invalid byte is its byte token when that token decodes to the
             * byte. Some vocabs (deepseek-llm) re-list the chars of bytes that
             * never occur in UTF-8 as USER_DEFINED text tokens; then the byte
             * is encoded as U+FFFD, as llama.cpp does for all invalid bytes. */
            int32_t id = b->byte_id[*p];
            bool plain =
                id >= 0 && (t->type[id] == QF_TOKEN_NORMAL || t->type[id] == QF_TOKEN_BYTE);
            if (plain ? tok_vec_push(out, id)
                      : merge_piece(t, &w, (const uint8_t *)"\xef\xbf\xbd", 3, out))
                goto nomem;
            continue;
        }
        tok_wcache_slot *slot = NULL;
        int hit = n > 1 ? tok_wcache_get(&cache, text, a.v[i].off, n, out, &slot) : 0;
        if (hit < 0) goto nomem;
        if (hit) continue;
        size_t before = out->n;
        if (merge_piece(t, &w, p, n, out)) goto nomem;
        if (slot && tok_wcache_put(&cache, slot, a.v[i].off, n, out, before)) goto nomem;
    }
    goto done;
nomem:
    st = QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory tokenizing", t->name);
done:
    pcre2_match_data_free(md);
    qf_free(a.v);
    qf_free(c.v);
    qf_free(w.s);
    qf_free(w.h);
    qf_free(w.enc);
    tok_wcache_free(&cache);
    return st;
}
