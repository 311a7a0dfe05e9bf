/* test_grammar.c - constrained decoding (sample/grammar.h).
 *
 * A small SPM vocab is written with the GGUF writer (bytes + JSON-ish pieces +
 * garbage + control/EOG/user-defined tokens). Random walks mask random logits,
 * pick a random allowed token and accept it until done; every finished output
 * must parse with cJSON and validate against its schema with the independent
 * validator below (written from the JSON Schema spec, not from the grammar).
 * Hand-picked byte strings check the exact boundaries (whitespace, digits,
 * UTF-8, escapes, counts, key exclusion). With --data the same walks run on
 * the real 32k llama SPM vocab in ../shared/testdata and the mask is timed.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "base/mem.h"
#include "gguf/gguf.h"
#include "qf_test.h"
#include "sample/grammar.h"
#include "tok/tok.h"

/* ---- helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static qf_tok *tok_from_writer(qf_gguf_writer *w) {
    char path[256];
    static int seq;
    snprintf(path, sizeof path, "/tmp/qf_test_grammar_%d_%d.gguf", (int)getpid(), seq++);
    qf_err err = {0};
    if (qf_gguf_writer_write(w, path, &err) != QF_OK) {
        fprintf(stderr, "writer: %s\n", err.msg);
        return NULL;
    }
    qf_gguf *g = qf_gguf_open(path, &err);
    qf_tok *t = g ? qf_tok_new_from_gguf(g, &err) : NULL;
    if (!t) fprintf(stderr, "tok: %s\n", err.msg);
    qf_gguf_close(g);
    unlink(path);
    return t;
}

#define SP "\xe2\x96\x81" /* SPM space */

/* The test vocab: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0xXX>, then these. */
static const char *const k_pieces[] = {"{",        "}",        "[",
                                       "]",        "\"",       ":",
                                       ",",        "{\"",      "\":",
                                       "\",",      "\"}",      "}]",
                                       "}}",       "]}",       "\":\"",
                                       "\",\"",    SP "\"",    SP "{",
                                       SP,         SP SP,      "\n",
                                       "\n" SP SP, "question", "answer",
                                       SP "the",   "the",      SP "answer",
                                       "q",        "a",        "true",
                                       "false",    "null",     "tru",
                                       "nul",      "0",        "1",
                                       "12",       "-",        ".",
                                       "e",        "E+",       "00",
                                       "123",      "3.14",     "\\",
                                       "\\n",      "\\\"",     "\\u",
                                       "00e9",     "\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
                                       "}{",       "]]",       "\"\"\"",
                                       "{{",       "::",       ",,",
                                       SP "}",     "x\"y",     ",\n",
                                       "\t",       "[{\"",     "red",
                                       "green",    "\"red\"",  "ab",
                                       "b",        "\":[",     "],",
                                       "v",        "kids",     "\":{",
                                       "name",     "id",       "7",
                                       "99"};
#define N_PIECES ((int)(sizeof k_pieces / sizeof k_pieces[0]))
enum { T_UNK = 0, T_BOS = 1, T_EOS = 2, T_BYTE0 = 3, T_PIECE0 = 259 };
static int32_t g_ctl, g_imend, g_user; /* ids of <|ctl|>, <|im_end|>, <tool> */

static qf_tok *test_vocab(void) {
    static char bytes[256][8];
    int n = T_PIECE0 + N_PIECES + 3;
    const char **toks = calloc((size_t)n, sizeof(*toks));
    float *scores = calloc((size_t)n, sizeof(float));
    int32_t *types = calloc((size_t)n, sizeof(int32_t));
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = 2, types[1] = 3, types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[T_BYTE0 + b] = bytes[b];
        types[T_BYTE0 + b] = 6;
    }
    for (int i = 0; i < N_PIECES; i++) {
        toks[T_PIECE0 + i] = k_pieces[i];
        types[T_PIECE0 + i] = 1;
        scores[T_PIECE0 + i] = -(float)i;
    }
    g_ctl = T_PIECE0 + N_PIECES, g_imend = g_ctl + 1, g_user = g_ctl + 2;
    toks[g_ctl] = "<|ctl|>", types[g_ctl] = 3;
    toks[g_imend] = "<|im_end|>", types[g_imend] = 3;
    toks[g_user] = "<tool>", types[g_user] = 4;
    qf_gguf_writer *w = qf_gguf_writer_new();
    qf_gguf_writer_set_str(w, "general.architecture", "llama");
    qf_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    qf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QF_GGUF_FLOAT32, scores, (uint64_t)n);
    qf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_INT32, types, (uint64_t)n);
    qf_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    qf_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    qf_tok *t = tok_from_writer(w);
    qf_gguf_writer_free(w);
    free(toks);
    free(scores);
    free(types);
    return t;
}

static qf_tok *g_tok;     /* the test vocab */
static qf_gvocab *g_voc;  /* its trie */
static uint8_t *g_closer; /* its closer tokens (random_walk) */

static int32_t piece_id(const char *p) {
    for (int i = 0; i < N_PIECES; i++)
        if (strcmp(k_pieces[i], p) == 0) return T_PIECE0 + i;
    return -1;
}

static int32_t byte_id(unsigned b) {
    return T_BYTE0 + (int32_t)b;
}

static qf_grammar *schema(const char *text) {
    qf_err err = {0};
    qf_grammar *g = qf_grammar_from_schema(text, strlen(text), &err);
    if (!g) fprintf(stderr, "  schema %s: %s\n", text, err.msg);
    return g;
}

static qf_gmatch *matcher(const qf_grammar *g) {
    qf_err err = {0};
    qf_gmatch *m = qf_gmatch_new_vocab(g, g_voc, &err);
    if (!m) fprintf(stderr, "  gmatch: %s\n", err.msg);
    return m;
}

/* Is token id left finite by a mask of the current state? */
static bool masked_allows(qf_gmatch *m, int32_t id) {
    int32_t nv = qf_tok_n_vocab(g_tok);
    float *l = malloc((size_t)nv * sizeof(float));
    for (int32_t i = 0; i < nv; i++)
        l[i] = 0;
    bool ok = qf_gmatch_mask(m, l, nv) == QF_OK && isfinite(l[id]);
    free(l);
    return ok;
}

/* accept_bytes on a fresh matcher: status of feeding text */
static qf_status feed(const qf_grammar *g, const char *text, bool *done) {
    qf_gmatch *m = matcher(g);
    if (!m) return QF_ERR_INTERNAL;
    qf_status st = qf_gmatch_accept_bytes(m, text, strlen(text));
    if (done) *done = qf_gmatch_done(m);
    qf_gmatch_free(m);
    return st;
}

static bool accepts_full(const qf_grammar *g, const char *text) {
    bool done = false;
    return feed(g, text, &done) == QF_OK && done;
}

static bool refuses(const qf_grammar *g, const char *text) {
    return feed(g, text, NULL) == QF_ERR_INVALID;
}

/* ---- an independent JSON Schema validator for the subset ---- */

static const cJSON *vresolve(const cJSON *root, const char *ref) {
    if (strcmp(ref, "#") == 0) return root;
    if (strncmp(ref, "#/", 2) != 0) return NULL;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", ref + 2);
    const cJSON *cur = root;
    for (char *tok = strtok(buf, "/"); tok && cur; tok = strtok(NULL, "/"))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cur;
}

static size_t utf8_len(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static bool type_is(const cJSON *v, const char *t) {
    if (!strcmp(t, "object")) return cJSON_IsObject(v);
    if (!strcmp(t, "array")) return cJSON_IsArray(v);
    if (!strcmp(t, "string")) return cJSON_IsString(v);
    if (!strcmp(t, "number")) return cJSON_IsNumber(v);
    if (!strcmp(t, "integer")) return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(t, "boolean")) return cJSON_IsBool(v);
    if (!strcmp(t, "null")) return cJSON_IsNull(v);
    return false;
}

static bool valid(const cJSON *v, const cJSON *s, const cJSON *root, int depth);

static bool valid_kw(const cJSON *v, const cJSON *s, const cJSON *root, int depth) {
    const cJSON *k, *it;
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "$ref"))) {
        const cJSON *t = vresolve(root, k->valuestring);
        return t && valid(v, t, root, depth + 1);
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "const")) && !cJSON_Compare(v, k, true))
        return false;
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "enum"))) {
        bool any = false;
        cJSON_ArrayForEach(it, k) any |= cJSON_Compare(v, it, true);
        if (!any) return false;
    }
    const char *alts[] = {"anyOf", "oneOf"};
    for (int i = 0; i < 2; i++)
        if ((k = cJSON_GetObjectItemCaseSensitive(s, alts[i]))) {
            bool any = false;
            cJSON_ArrayForEach(it, k) any |= valid(v, it, root, depth + 1);
            if (!any) return false;
        }
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "allOf")))
        cJSON_ArrayForEach(it, k) if (!valid(v, it, root, depth + 1)) return false;
    bool null_ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "nullable")) && cJSON_IsNull(v);
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "type")) && !null_ok) {
        bool any = false;
        if (cJSON_IsString(k)) any = type_is(v, k->valuestring);
        cJSON_ArrayForEach(it, k) any |= cJSON_IsString(it) && type_is(v, it->valuestring);
        if (!any) return false;
    }
    if (cJSON_IsString(v)) {
        size_t n = utf8_len(v->valuestring);
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "minLength")) && n < (size_t)k->valuedouble)
            return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "maxLength")) && n > (size_t)k->valuedouble)
            return false;
    }
    if (cJSON_IsArray(v)) {
        int n = cJSON_GetArraySize(v);
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "minItems")) && n < k->valueint) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "maxItems")) && n > k->valueint) return false;
        const cJSON *pre = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
        int i = 0;
        cJSON_ArrayForEach(it, v) {
            const cJSON *sub =
                pre && i < cJSON_GetArraySize(pre) ? cJSON_GetArrayItem(pre, i) : items;
            if (sub && !valid(it, sub, root, depth + 1)) return false;
            i++;
        }
    }
    if (cJSON_IsObject(v)) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
        const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "required")))
            cJSON_ArrayForEach(
                it, k) if (!cJSON_GetObjectItemCaseSensitive(v, it->valuestring)) return false;
        cJSON_ArrayForEach(it, v) {
            const cJSON *ps = props ? cJSON_GetObjectItemCaseSensitive(props, it->string) : NULL;
            /* a declared key never repeats (two extra keys may: no context-free
             * grammar can tell arbitrary keys apart) */
            for (const cJSON *o = v->child; ps && o != it; o = o->next)
                if (!strcmp(o->string, it->string)) return false;
            if (ps) {
                if (!valid(it, ps, root, depth + 1)) return false;
            } else if (addl && !valid(it, addl, root, depth + 1)) {
                return false;
            }
        }
    }
    return true;
}

static bool valid(const cJSON *v, const cJSON *s, const cJSON *root, int depth) {
    if (depth > 64) return false;
    if (cJSON_IsTrue(s)) return true;
    if (cJSON_IsFalse(s)) return false;
    return valid_kw(v, s, root, depth);
}

/* Parse out[0..len) as exactly one JSON value and validate it (schema NULL:
 * any object). */
static bool check_output(const char *out, size_t len, const char *schema_text) {
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(out, len, &end, 0);
    bool ok = v && end == out + len;
    if (ok && schema_text) {
        cJSON *s = cJSON_Parse(schema_text);
        ok = s && valid(v, s, s, 0);
        cJSON_Delete(s);
    } else if (ok) {
        ok = cJSON_IsObject(v);
    }
    if (!ok)
        fprintf(stderr, "  bad output (%zu bytes): '%.*s'\n", len, (int)(len < 600 ? len : 600),
                out);
    cJSON_Delete(v);
    return ok;
}

/* ---- random walks ---- */

static unsigned rnd(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

typedef struct walk_out {
    char buf[1 << 16];
    size_t len;
    bool done;
    int steps;
} walk_out;

/* One random walk with tokenizer t on m. Returns false on an inconsistency
 * (mask vs allows vs accept, dead end). Tokens whose piece holds a closer
 * are preferred more and more as the walk gets long, so most walks finish. */
/* closer[i]: token i is EOG or its piece holds one of " } ] , */
static uint8_t *closers(const qf_tok *t) {
    int32_t nv = qf_tok_n_vocab(t);
    uint8_t *c = calloc((size_t)nv + 1, 1);
    for (int32_t i = 0; i < nv; i++) {
        char p[256];
        size_t pl = qf_tok_piece(t, i, false, p, sizeof p);
        if (pl > sizeof p) pl = sizeof p;
        c[i] = qf_tok_is_eog(t, i) || memchr(p, '"', pl) || memchr(p, '}', pl) ||
               memchr(p, ']', pl) || memchr(p, ',', pl);
    }
    return c;
}

static bool random_walk(qf_gmatch *m, const qf_tok *t, const uint8_t *closer, unsigned *seed,
                        int max_steps, walk_out *o) {
    int32_t nv = qf_tok_n_vocab(t);
    float *l = malloc((size_t)nv * sizeof(float));
    int32_t *ok = malloc((size_t)nv * sizeof(int32_t)),
            *pref = malloc((size_t)nv * sizeof(int32_t));
    bool good = true;
    o->len = 0;
    o->done = false;
    for (o->steps = 0; o->steps < max_steps; o->steps++) {
        for (int32_t i = 0; i < nv; i++)
            l[i] = (float)(rnd(seed) % 1000) / 100.0f;
        if (qf_gmatch_mask(m, l, nv) != QF_OK) {
            fprintf(stderr, "  mask failed\n");
            good = false;
            break;
        }
        int32_t n_ok = 0, n_pref = 0;
        for (int32_t i = 0; i < nv; i++) {
            if (!isfinite(l[i])) continue;
            ok[n_ok++] = i;
            if (closer[i]) pref[n_pref++] = i;
        }
        if (n_ok == 0) {
            fprintf(stderr, "  dead end after '%.*s'\n", (int)o->len, o->buf);
            good = false;
            break;
        }
        int closer_pct = o->steps * 100 / (max_steps / 3 + 1);
        int32_t pick = (n_pref && (int)(rnd(seed) % 100) < closer_pct) ? pref[rnd(seed) % n_pref]
                                                                       : ok[rnd(seed) % n_ok];
        /* a refused token is refused by allows and accept, and accept leaves the state alone */
        int32_t bad = (int32_t)(rnd(seed) % nv);
        if (!isfinite(l[bad])) {
            if (qf_gmatch_allows(m, bad) || qf_gmatch_accept(m, bad) != QF_ERR_INVALID) {
                fprintf(stderr, "  masked token %d accepted after '%.*s'\n", bad, (int)o->len,
                        o->buf);
                good = false;
                break;
            }
        }
        if (!qf_gmatch_allows(m, pick)) {
            fprintf(stderr, "  allows() disagrees with mask on %d\n", pick);
            good = false;
            break;
        }
        if (qf_tok_is_eog(t, pick)) {
            if (!qf_gmatch_done(m) || qf_gmatch_accept(m, pick) != QF_OK) good = false;
            o->done = true;
            break;
        }
        if (qf_gmatch_accept(m, pick) != QF_OK) {
            fprintf(stderr, "  accept refused allowed token %d\n", pick);
            good = false;
            break;
        }
        size_t pl = qf_tok_piece(t, pick, false, o->buf + o->len, sizeof o->buf - o->len);
        if (o->len + pl >= sizeof o->buf) break;
        o->len += pl;
    }
    free(l);
    free(ok);
    free(pref);
    return good;
}

/* n walks over schema_text (NULL: the json grammar); returns the number that
 * finished, -1 on any failure. */
static int walks(const char *schema_text, const qf_tok *t, qf_gvocab *v, const uint8_t *closer,
                 int n, int max_steps, unsigned seed) {
    qf_err err = {0};
    qf_grammar *g = schema_text ? qf_grammar_from_schema(schema_text, strlen(schema_text), &err)
                                : qf_grammar_json(&err);
    if (!g) {
        fprintf(stderr, "  compile: %s\n", err.msg);
        return -1;
    }
    walk_out *o = malloc(sizeof *o);
    int finished = 0;
    for (int w = 0; w < n; w++) {
        qf_gmatch *m = qf_gmatch_new_vocab(g, v, &err);
        unsigned s = seed + (unsigned)w * 7919u;
        bool good = m && random_walk(m, t, closer, &s, max_steps, o);
        qf_gmatch_free(m);
        if (!good || (o->done && !check_output(o->buf, o->len, schema_text))) {
            fprintf(stderr, "  walk %d (seed %u) failed, schema %s\n", w,
                    seed + (unsigned)w * 7919u, schema_text ? schema_text : "json");
            finished = -1;
            break;
        }
        if (o->done && getenv("QF_GRAMMAR_VERBOSE"))
            fprintf(stderr, "  walk %d: %.*s\n", w, (int)(o->len < 300 ? o->len : 300), o->buf);
        finished += o->done;
    }
    if (getenv("QF_GRAMMAR_VERBOSE")) fprintf(stderr, "  %d/%d finished\n", finished, n);
    free(o);
    qf_grammar_free(g);
    return finished;
}

static unsigned g_seed;

static const char *k_qa =
    "{\"type\":\"array\",\"minItems\":1,\"maxItems\":3,\"items\":{\"type\":"
    "\"object\",\"properties\":{\"question\":{\"type\":\"string\",\"minLength\":1},"
    "\"answer\":{\"type\":\"string\",\"minLength\":1}},\"required\":[\"question\","
    "\"answer\"],\"additionalProperties\":false}}";

static const char *k_schemas[] = {
    NULL, /* json */
    "{\"type\":\"array\",\"minItems\":1,\"maxItems\":3,\"items\":{\"type\":\"object\","
    "\"properties\":"
    "{\"question\":{\"type\":\"string\",\"minLength\":1},\"answer\":{\"type\":\"string\","
    "\"minLength\":1}},"
    "\"required\":[\"question\",\"answer\"],\"additionalProperties\":false}}",
    "{\"type\":\"object\",\"properties\":{\"c\":{\"enum\":[\"red\",\"green\",3,null,[1,2],{\"k\":"
    "true}]},"
    "\"d\":{\"const\":\"x\\u00e9\\\"\"}},\"required\":[\"c\",\"d\"]}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"boolean\"}"
    ","
    "\"name\":{\"type\":\"string\",\"maxLength\":5},\"id\":{\"type\":[\"number\",\"null\"]}},"
    "\"required\":[\"name\"]}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"ab\":{\"type\":\"null\"}},"
    "\"additionalProperties\":{\"type\":\"string\"}}",
    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
    "\"kids\":"
    "{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/"
    "node\"},\"maxItems\":2}},\"required\":[\"v\"],"
    "\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}",
    "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}},\"required\":["
    "\"q\"],"
    "\"additionalProperties\":false},{\"type\":\"array\",\"items\":{\"type\":\"number\"},"
    "\"minItems\":2,"
    "\"maxItems\":4}]}",
    "{\"allOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":["
    "\"a\"]},"
    "{\"properties\":{\"b\":{\"type\":\"integer\"}},\"required\":[\"b\"]}]}",
    "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\",\"minLength\":2,\"maxLength\":4},"
    "{\"type\":\"integer\"},{\"enum\":[\"red\",\"green\"]}]}",
    "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"nullable\":true},\"t\":true,"
    "\"u\":{\"type\":\"string\",\"pattern\":\"^a+$\",\"format\":\"date\"}},\"required\":[\"s\","
    "\"t\",\"u\"],"
    "\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{}}",
    "{\"type\":\"string\",\"minLength\":3}",
};

/* ---- tests ---- */

static void test_vocab_setup(void) {
    ASSERT(g_tok);
    ASSERT(qf_tok_is_eog(g_tok, T_EOS));
    ASSERT_EQ_INT(qf_tok_type(g_tok, g_ctl), QF_TOKEN_CONTROL);
    ASSERT_EQ_INT(qf_tok_type(g_tok, g_user), QF_TOKEN_USER_DEFINED);
    ASSERT(qf_gvocab_n_vocab(g_voc) == qf_tok_n_vocab(g_tok));
    ASSERT(qf_gvocab_n_nodes(g_voc) > 256);
    char p[16];
    ASSERT_EQ_INT(qf_tok_piece(g_tok, piece_id("{\""), false, p, sizeof p), 2);
    ASSERT_EQ_INT(qf_tok_piece(g_tok, piece_id(SP "the"), false, p, sizeof p), 4);
    ASSERT(memcmp(p, " the", 4) == 0);
}

static void test_json_masks(void) {
    qf_err err = {0};
    qf_grammar *g = qf_grammar_json(&err);
    ASSERT(g);
    ASSERT(qf_grammar_n_rules(g) > 10 && qf_grammar_n_elements(g) > 10);
    qf_gmatch *m = matcher(g);
    ASSERT(m);
    /* start: an object, optionally after one whitespace unit */
    ASSERT(masked_allows(m, piece_id("{")));
    ASSERT(masked_allows(m, piece_id("{\"")));
    ASSERT(masked_allows(m, piece_id(SP "{")));
    ASSERT(masked_allows(m, piece_id("[{\"")) == false);
    ASSERT(!masked_allows(m, piece_id("[")));
    ASSERT(!masked_allows(m, piece_id("\"")));
    ASSERT(!masked_allows(m, piece_id("}")));
    ASSERT(!masked_allows(m, piece_id("true")));
    ASSERT(!masked_allows(m, piece_id("{{")));
    ASSERT(!masked_allows(m, T_EOS));
    ASSERT(!masked_allows(m, g_imend));
    ASSERT(!masked_allows(m, g_ctl));
    ASSERT(!masked_allows(m, T_UNK));
    ASSERT(!masked_allows(m, T_BOS));
    ASSERT(!qf_gmatch_done(m));
    ASSERT_EQ_INT(qf_gmatch_accept(m, T_EOS), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gmatch_accept(m, g_ctl), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("]")), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gmatch_accept(m, -1), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gmatch_accept(m, 1 << 30), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("{")), QF_OK);
    /* after '{': a key or '}', never ']' */
    ASSERT(!masked_allows(m, piece_id("]")));
    ASSERT(!masked_allows(m, piece_id("}]")));
    ASSERT(!masked_allows(m, piece_id(":")));
    ASSERT(!masked_allows(m, piece_id("{")));
    ASSERT(!masked_allows(m, piece_id("}{")));
    ASSERT(masked_allows(m, piece_id("}")));
    ASSERT(masked_allows(m, piece_id("\"")));
    ASSERT(masked_allows(m, piece_id(SP "\"")));
    ASSERT(masked_allows(m, piece_id("\n" SP SP)));
    ASSERT(!masked_allows(m, piece_id(SP SP)));
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("\"")), QF_OK);
    /* inside a key: text, user-defined text, escapes; no control tokens */
    ASSERT(masked_allows(m, piece_id("question")));
    ASSERT(masked_allows(m, g_user));
    ASSERT(masked_allows(m, piece_id("\\n")));
    ASSERT(masked_allows(m, piece_id("\xc3\xa9")));
    ASSERT(masked_allows(m, piece_id("\":")));
    ASSERT(masked_allows(m, piece_id("\"\"\"")) == false);
    ASSERT(!masked_allows(m, piece_id("\n")));
    ASSERT(!masked_allows(m, piece_id("\t")));
    ASSERT(!masked_allows(m, g_ctl));
    ASSERT(!masked_allows(m, T_EOS));
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("\":")), QF_OK);
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("12")), QF_OK);
    ASSERT(masked_allows(m, piece_id("}")));
    ASSERT(masked_allows(m, piece_id("3.14"))); /* 123.14 */
    ASSERT(masked_allows(m, piece_id(".")));
    qf_gmatch *c = qf_gmatch_clone(m, NULL);
    ASSERT(c);
    ASSERT_EQ_INT(qf_gmatch_accept(c, piece_id(".")), QF_OK);
    ASSERT(!masked_allows(c, piece_id("3.14"))); /* 12.3.14 */
    ASSERT(!masked_allows(c, piece_id("}")));    /* 12. */
    ASSERT(masked_allows(c, piece_id("00")));
    qf_gmatch_free(c);
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("}")), QF_OK);
    /* complete: only EOG */
    ASSERT(qf_gmatch_done(m));
    ASSERT(qf_gmatch_closed(m));
    int32_t nv = qf_tok_n_vocab(g_tok);
    float *l = malloc((size_t)(nv + 8) * sizeof(float));
    for (int32_t i = 0; i < nv + 8; i++)
        l[i] = 1.0f;
    ASSERT_EQ_INT(qf_gmatch_mask(m, l, nv + 8), QF_OK);
    int n_fin = 0;
    for (int32_t i = 0; i < nv + 8; i++)
        if (isfinite(l[i])) {
            n_fin++;
            if (!(i < nv && qf_tok_is_eog(g_tok, i))) {
                free(l);
                ASSERT_MSG(0, "token %d allowed after the end", i);
            }
        }
    free(l);
    ASSERT_EQ_INT(n_fin, 2); /* </s> and <|im_end|> */
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("\n")), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gmatch_accept(m, g_imend), QF_OK);
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("{")), QF_ERR_INVALID);
    ASSERT(qf_gmatch_done(m));
    ASSERT_EQ_INT(qf_gmatch_mask(NULL, NULL, 0), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_gmatch_mask(m, NULL, 5), QF_ERR_INVALID);
    qf_gmatch_free(m);
    qf_grammar_free(g);
}

static void test_json_bytes(void) {
    qf_err err = {0};
    qf_grammar *g = qf_grammar_json(&err);
    ASSERT(g);
    ASSERT(accepts_full(g, "{}"));
    ASSERT(accepts_full(g, " {}"));
    ASSERT(accepts_full(g, "{\"a\": [1, -2.5e+10, true, false, null, \"x\", {\"b\": {}}, []]}"));
    ASSERT(accepts_full(g, "{\n  \"a\": 1,\n  \"b\": [\n    0\n  ]\n}"));
    ASSERT(
        accepts_full(g, "{\"\\u00e9\\n\\\"\\\\\\/\": \"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\"}"));
    ASSERT(!accepts_full(g, "{\"a\": 1"));
    ASSERT(!accepts_full(g, "{\"a\": -"));
    ASSERT(refuses(g, "[]"));
    ASSERT(refuses(g, "\"x\""));
    ASSERT(refuses(g, "  {}"));        /* two spaces */
    ASSERT(refuses(g, "{}\n"));        /* nothing after the value */
    ASSERT(refuses(g, "{\"a\":  1}")); /* whitespace is one unit */
    ASSERT(accepts_full(g, "{\"a\":\n\t\t1}"));
    char ws[64] = "{\n";
    memset(ws + 2, ' ', 20);
    ws[22] = '}';
    ws[23] = 0;
    ASSERT(accepts_full(g, ws));
    memset(ws + 2, ' ', 21);
    ws[23] = '}';
    ws[24] = 0;
    ASSERT(refuses(g, ws)); /* 21 indentation spaces */
    ASSERT(refuses(g, "{\"a\": 01}"));
    ASSERT(refuses(g, "{\"a\": 1.}"));
    ASSERT(refuses(g, "{\"a\": .5}"));
    ASSERT(refuses(g, "{\"a\": +1}"));
    ASSERT(refuses(g, "{\"a\": 1e}"));
    ASSERT(accepts_full(g, "{\"a\": 1234567890123456}"));
    ASSERT(refuses(g, "{\"a\": 12345678901234567}"));
    ASSERT(accepts_full(g, "{\"a\": 0.1234567890123456e-123}"));
    ASSERT(refuses(g, "{\"a\": 0.12345678901234567}"));
    ASSERT(refuses(g, "{\"a\": 1e1234}"));
    ASSERT(refuses(g, "{\"a\": tru}"));
    ASSERT(refuses(g, "{\"a\": 1,}"));
    ASSERT(refuses(g, "{\"a\" 1}"));
    ASSERT(refuses(g, "{\"a\": [1,]}"));
    ASSERT(refuses(g, "{\"a\": [1 2]}"));
    ASSERT(refuses(g, "{\"a\nb\": 1}")); /* raw control char */
    ASSERT(refuses(g, "{\"\\x\": 1}"));  /* bad escape */
    ASSERT(refuses(g, "{\"\\u00g0\": 1}"));
    ASSERT(accepts_full(g, "{\"\\uD83D\\ude00\\uffff\\u0000\": 1}"));
    ASSERT(refuses(g, "{\"\\ud83d\""));              /* lone high surrogate */
    ASSERT(refuses(g, "{\"\\ud83d\\u0041"));         /* high + non-low */
    ASSERT(refuses(g, "{\"\\udc00"));                /* lone low surrogate */
    ASSERT(refuses(g, "{\"\xc0\x80\": 1}"));         /* overlong */
    ASSERT(refuses(g, "{\"\xed\xa0\x80\": 1}"));     /* surrogate */
    ASSERT(refuses(g, "{\"\xf4\x90\x80\x80\": 1}")); /* > U+10FFFF */
    ASSERT(refuses(g, "{\"\x80\": 1}"));             /* stray continuation */
    ASSERT(refuses(g, "{\"\xc3\": 1}"));             /* truncated */
    /* a character split over byte tokens */
    qf_gmatch *m = matcher(g);
    ASSERT(m);
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("{\"")), QF_OK);
    ASSERT_EQ_INT(qf_gmatch_accept(m, byte_id(0xe6)), QF_OK);
    ASSERT(!masked_allows(m, piece_id("\"")));
    ASSERT(!masked_allows(m, byte_id('a')));
    ASSERT(masked_allows(m, byte_id(0x97)));
    ASSERT_EQ_INT(qf_gmatch_accept(m, byte_id(0x97)), QF_OK);
    ASSERT_EQ_INT(qf_gmatch_accept(m, byte_id(0xa5)), QF_OK);
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("\":")), QF_OK);
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "\"\\", 2), QF_OK);
    ASSERT(masked_allows(m, piece_id("\\u"))); /* \\ then u */
    ASSERT(masked_allows(m, byte_id('u')));
    ASSERT(!masked_allows(m, byte_id('x')));
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "u00e", 4), QF_OK);
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "9\"}", 3), QF_OK);
    ASSERT(qf_gmatch_done(m));
    qf_gmatch_free(m);
    qf_grammar_free(g);
}

static void test_schema_bytes(void) {
    qf_grammar *g = schema(k_qa);
    ASSERT(g);
    ASSERT(accepts_full(g, "[{\"question\": \"Why?\", \"answer\": \"Because.\"}]"));
    ASSERT(accepts_full(
        g, "[{\"question\":\"a\",\"answer\":\"b\"},{\"question\":\"c\",\"answer\":\"d\"},"
           "{\"question\":\"e\",\"answer\":\"f\"}]"));
    ASSERT(refuses(g, "[]")); /* minItems */
    ASSERT(refuses(g,
                   "[{\"question\":\"a\",\"answer\":\"b\"},{\"question\":\"c\",\"answer\":\"d\"},"
                   "{\"question\":\"e\",\"answer\":\"f\"},"));         /* maxItems */
    ASSERT(refuses(g, "[{\"answer\""));                                /* order */
    ASSERT(refuses(g, "[{\"question\":\"a\"}"));                       /* required */
    ASSERT(refuses(g, "[{\"question\":\"\""));                         /* minLength */
    ASSERT(refuses(g, "[{\"question\":\"a\",\"answer\":\"b\",\"x\"")); /* no extras */
    ASSERT(refuses(g, "[{\"question\":1"));
    qf_gmatch *m = matcher(g);
    ASSERT(m);
    ASSERT_EQ_INT(qf_gmatch_accept(m, piece_id("[{\"")), QF_OK);
    ASSERT(masked_allows(m, piece_id("question")));
    ASSERT(masked_allows(m, piece_id("q")));
    ASSERT(!masked_allows(m, piece_id("answer")));
    ASSERT(!masked_allows(m, piece_id("a")));
    ASSERT(!masked_allows(m, piece_id("\"")));
    ASSERT(!masked_allows(m, piece_id("]")));
    ASSERT(!masked_allows(m, g_user));
    qf_gmatch_free(m);
    qf_grammar_free(g);

    /* counted strings and arrays */
    g = schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}");
    ASSERT(g);
    ASSERT(accepts_full(g, "\"ab\""));
    ASSERT(accepts_full(g, "\"\\n\\u00e9\""));
    ASSERT(accepts_full(g, "\"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\""));
    ASSERT(refuses(g, "\"a\""));
    ASSERT(refuses(g, "\"abcd"));
    ASSERT(refuses(g, "\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3"));
    qf_grammar_free(g);
    g = schema(
        "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":2}");
    ASSERT(g);
    ASSERT(accepts_full(g, "[1, -2]"));
    ASSERT(refuses(g, "[1]"));
    ASSERT(refuses(g, "[1,2,"));
    ASSERT(refuses(g, "[1.5"));
    qf_grammar_free(g);
    g = schema("{\"type\":\"array\",\"maxItems\":0}");
    ASSERT(g);
    ASSERT(accepts_full(g, "[]"));
    ASSERT(refuses(g, "[1"));
    qf_grammar_free(g);

    /* enum / const: exact spellings only */
    g = schema("{\"enum\":[\"red\",\"redder\",3,null,{\"k\":[true]}]}");
    ASSERT(g);
    ASSERT(accepts_full(g, "\"red\""));
    ASSERT(accepts_full(g, "\"redder\""));
    ASSERT(accepts_full(g, "3"));
    ASSERT(accepts_full(g, "null"));
    ASSERT(accepts_full(g, "{\"k\":[true]}"));
    ASSERT(refuses(g, "\"blue\""));
    ASSERT(refuses(g, "\"re\"")); /* prefix of a value */
    ASSERT(refuses(g, "30"));
    ASSERT(refuses(g, "true"));
    qf_grammar_free(g);
    g = schema("{\"const\":\"hi\"}");
    ASSERT(g);
    ASSERT(accepts_full(g, "\"hi\""));
    ASSERT(refuses(g, "\"ho\""));
    qf_grammar_free(g);

    /* optional members in order, each skippable */
    g = schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":"
               "\"boolean\"},\"c\":{\"type\":\"null\"}},\"required\":[\"b\"]}");
    ASSERT(g);
    ASSERT(accepts_full(g, "{\"b\":true}"));
    ASSERT(accepts_full(g, "{\"a\":1,\"b\":false}"));
    ASSERT(accepts_full(g, "{\"b\":true,\"c\":null}"));
    ASSERT(accepts_full(g, "{\"a\":1,\"b\":true,\"c\":null}"));
    ASSERT(refuses(g, "{\"a\":1}"));
    ASSERT(refuses(g, "{}"));
    ASSERT(refuses(g, "{\"b\":true,\"a\""));
    ASSERT(refuses(g, "{\"b\":true,\"d\""));
    ASSERT(refuses(g, "{,"));
    qf_grammar_free(g);

    /* extra members: any key but the declared ones, after them */
    g = schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"ab\":{\"type\":"
               "\"null\"}},\"additionalProperties\":{\"type\":\"string\"}}");
    ASSERT(g);
    ASSERT(accepts_full(g, "{}"));
    ASSERT(accepts_full(g, "{\"a\":1,\"b\":\"x\"}"));
    ASSERT(accepts_full(g, "{\"b\":\"x\",\"abc\":\"y\",\"\":\"z\",\"A\":\"w\"}"));
    ASSERT(accepts_full(g, "{\"a\":1,\"ab\":null,\"\xc3\xa9\":\"y\"}"));
    ASSERT(refuses(g, "{\"a\":1,\"a\""));
    ASSERT(refuses(g, "{\"ab\":null,\"a\""));
    ASSERT(refuses(g, "{\"a\":1,\"ab\":null,\"ab\""));
    ASSERT(refuses(g, "{\"a\":1,\"ab\":null,\"a\""));
    ASSERT(accepts_full(g, "{\"a\":1,\"ab\":null,\"a\\u0062\":\"x\"}")); /* escapes slip through */
    ASSERT(refuses(g, "{\"b\":\"x\",\"a\""));
    ASSERT(refuses(g, "{\"b\":1"));
    qf_grammar_free(g);

    /* any object members when nothing is declared */
    g = schema("{\"type\":\"object\"}");
    ASSERT(g);
    ASSERT(accepts_full(g, "{\"x\":[1,{\"y\":null}]}"));
    ASSERT(refuses(g, "[]"));
    qf_grammar_free(g);
    g = schema("{\"type\":\"object\",\"additionalProperties\":false}");
    ASSERT(g);
    ASSERT(accepts_full(g, "{ }"));
    ASSERT(refuses(g, "{\"x\""));
    qf_grammar_free(g);

    /* types, anyOf, nullable, $ref recursion */
    g = schema("{\"type\":[\"integer\",\"null\"]}");
    ASSERT(g);
    ASSERT(accepts_full(g, "-12"));
    ASSERT(accepts_full(g, "null"));
    ASSERT(refuses(g, "1.5"));
    ASSERT(refuses(g, "\"1\""));
    qf_grammar_free(g);
    g = schema("{\"type\":\"number\"}");
    ASSERT(g);
    bool done = false;
    ASSERT(feed(g, "12", &done) == QF_OK && done); /* may end or continue */
    ASSERT(accepts_full(g, "125"));
    qf_grammar_free(g);
    g = schema("{\"oneOf\":[{\"type\":\"string\",\"maxLength\":1},{\"type\":\"string\","
               "\"minLength\":3}]}");
    ASSERT(g);
    ASSERT(accepts_full(g, "\"a\""));
    ASSERT(accepts_full(g, "\"abc\""));
    ASSERT(refuses(g, "\"ab\""));
    qf_grammar_free(g);
    g = schema(
        "{\"definitions\":{\"l\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/definitions/l\"}}},"
        "\"$ref\":\"#/definitions/l\"}");
    ASSERT(g);
    ASSERT(accepts_full(g, "[[],[[[]]]]"));
    ASSERT(refuses(g, "[1"));
    qf_grammar_free(g);
    g = schema(
        "{\"type\":\"object\",\"properties\":{\"a~/b\":{\"type\":\"integer\"},\"n\":{\"$ref\":"
        "\"#/properties/a~0~1b\"}},\"required\":[\"n\"]}");
    ASSERT(g);
    ASSERT(accepts_full(g, "{\"n\":5}"));
    ASSERT(refuses(g, "{\"n\":\"5\""));
    qf_grammar_free(g);

    /* allOf merge, tuples, required-only names */
    g = schema(
        "{\"allOf\":[{\"$ref\":\"#/$defs/A\"},{\"properties\":{\"b\":{\"type\":\"integer\"}},"
        "\"required\":[\"b\"]}],\"$defs\":{\"A\":{\"type\":\"object\",\"properties\":{\"a\":"
        "{\"type\":\"string\"}},\"required\":[\"a\"]}}}");
    ASSERT(g);
    ASSERT(accepts_full(g, "{\"a\":\"x\",\"b\":2}"));
    ASSERT(refuses(g, "{\"a\":\"x\"}"));
    qf_grammar_free(g);
    g = schema("{\"type\":\"array\",\"items\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}");
    ASSERT(g);
    ASSERT(accepts_full(g, "[1,\"x\"]"));
    ASSERT(refuses(g, "[1]"));
    ASSERT(refuses(g, "[1,\"x\",2"));
    qf_grammar_free(g);
    g = schema("{\"required\":[\"z\"]}");
    ASSERT(g);
    ASSERT(accepts_full(g, "{\"z\":[1]}"));
    ASSERT(refuses(g, "{}"));
    qf_grammar_free(g);
    g = schema("true");
    ASSERT(g);
    ASSERT(accepts_full(g, "\"any\""));
    ASSERT(accepts_full(g, "[1]"));
    qf_grammar_free(g);
    /* relaxations: compiles, keyword ignored */
    g = schema("{\"type\":\"string\",\"pattern\":\"^a$\",\"format\":\"date\",\"maxLength\":20000}");
    ASSERT(g);
    ASSERT(accepts_full(g, "\"b\""));
    qf_grammar_free(g);
    g = schema("{\"type\":\"integer\",\"minimum\":5,\"not\":{}}");
    ASSERT(g);
    ASSERT(accepts_full(g, "1"));
    qf_grammar_free(g);
}

static void test_bad_schemas(void) {
    static const struct {
        const char *text;
        qf_status code;
        const char *needle;
    } cases[] = {
        {"{", QF_ERR_FORMAT, "byte"},
        {"", QF_ERR_FORMAT, "not valid JSON"},
        {"{\"type\": }", QF_ERR_FORMAT, "column 10"},
        {"{}\n x", QF_ERR_FORMAT, "line 2"},
        {"[]", QF_ERR_FORMAT, "object or a boolean"},
        {"{\"type\":\"foo\"}", QF_ERR_FORMAT, "unknown type"},
        {"{\"type\":5}", QF_ERR_FORMAT, "type"},
        {"{\"type\":[]}", QF_ERR_INVALID, "empty"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"bogus\"}}}", QF_ERR_FORMAT,
         "#/properties/a"},
        {"{\"$ref\":\"#/$defs/missing\"}", QF_ERR_FORMAT, "does not resolve"},
        {"{\"$ref\":\"http://x/y.json\"}", QF_ERR_UNSUPPORTED, "outside"},
        {"{\"$ref\":\"#anchor\"}", QF_ERR_UNSUPPORTED, "anchor"},
        {"{\"$ref\":5}", QF_ERR_FORMAT, "$ref"},
        {"{\"$ref\":\"#\"}", QF_ERR_INVALID, "recurses forever"},
        {"{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"null\"}]}", QF_ERR_UNSUPPORTED, "cycle"},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":1}", QF_ERR_INVALID, "minItems"},
        {"{\"type\":\"string\",\"minLength\":4,\"maxLength\":1}", QF_ERR_INVALID, "minLength"},
        {"{\"enum\":[]}", QF_ERR_INVALID, "enum"},
        {"{\"enum\":5}", QF_ERR_FORMAT, "enum"},
        {"{\"anyOf\":[]}", QF_ERR_INVALID, "anyOf"},
        {"{\"anyOf\":{}}", QF_ERR_FORMAT, "anyOf"},
        {"false", QF_ERR_INVALID, "false"},
        {"{\"type\":\"object\",\"properties\":{\"a\":false},\"required\":[\"a\"]}", QF_ERR_INVALID,
         "#/properties/a"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"}},\"required\":[\"a\"]}",
         QF_ERR_INVALID, "finite"},
        {"{\"type\":\"string\",\"minLength\":100000}", QF_ERR_RANGE, "minLength"},
        {"{\"type\":\"string\",\"minLength\":-1}", QF_ERR_FORMAT, "minLength"},
        {"{\"type\":\"string\",\"maxLength\":1.5}", QF_ERR_FORMAT, "maxLength"},
        {"{\"type\":\"array\",\"minItems\":\"2\"}", QF_ERR_FORMAT, "minItems"},
        {"{\"properties\":5}", QF_ERR_FORMAT, "properties"},
        {"{\"required\":\"a\"}", QF_ERR_FORMAT, "required"},
        {"{\"required\":[1]}", QF_ERR_FORMAT, "required"},
        {"{\"type\":\"object\",\"additionalProperties\":3}", QF_ERR_FORMAT, "additionalProperties"},
        {"{\"type\":\"array\",\"prefixItems\":{}}", QF_ERR_FORMAT, "prefixItems"},
        {"{\"allOf\":[false]}", QF_ERR_INVALID, "false"},
        {"{\"allOf\":[3]}", QF_ERR_FORMAT, "allOf"},
        {"{\"$defs\":{\"a\":{\"allOf\":[{\"$ref\":\"#/$defs/a\"}]}},\"$ref\":\"#/$defs/a\"}",
         QF_ERR_RANGE, "deeper"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qf_err err = {0};
        qf_grammar *g = qf_grammar_from_schema(cases[i].text, strlen(cases[i].text), &err);
        ASSERT_MSG(!g, "case %zu (%s) compiled", i, cases[i].text);
        ASSERT_MSG(err.code == cases[i].code, "case %zu (%s): %s (%s)", i, cases[i].text,
                   qf_status_name(err.code), err.msg);
        ASSERT_MSG(strstr(err.msg, cases[i].needle), "case %zu: message '%s' lacks '%s'", i,
                   err.msg, cases[i].needle);
    }
    /* deep nesting */
    char *deep = malloc(200 * 40 + 64);
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)sprintf(deep + n, "{\"type\":\"array\",\"items\":");
    n += (size_t)sprintf(deep + n, "true");
    for (int i = 0; i < 200; i++)
        deep[n++] = '}';
    deep[n] = 0;
    qf_err err = {0};
    ASSERT(!qf_grammar_from_schema(deep, n, &err));
    ASSERT_EQ_INT(err.code, QF_ERR_RANGE);
    free(deep);
    ASSERT(!qf_grammar_from_schema(NULL, 0, &err));
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    /* text with an explicit length, not NUL-terminated, and with trailing NUL */
    const char *t = "{\"type\":\"null\"}garbage";
    qf_grammar *g = qf_grammar_from_schema(t, 15, &err);
    ASSERT(g);
    qf_grammar_free(g);
    g = qf_grammar_from_schema("{\"type\":\"null\"}", 16, &err);
    ASSERT(g);
    qf_grammar_free(g);
    ASSERT(!qf_gmatch_new_vocab(NULL, g_voc, &err));
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    ASSERT(!qf_gmatch_new(NULL, g_tok, &err));
    ASSERT(!qf_gvocab_new(NULL, &err));
    ASSERT(!qf_gmatch_clone(NULL, &err));
    qf_grammar_free(NULL);
    qf_gvocab_free(NULL);
    qf_gmatch_free(NULL);
}

static void test_random_walks(void) {
    for (size_t i = 0; i < sizeof k_schemas / sizeof k_schemas[0]; i++) {
        int fin =
            walks(k_schemas[i], g_tok, g_voc, g_closer, 60, 400, g_seed + (unsigned)i * 1000u);
        ASSERT_MSG(fin >= 0, "schema %zu", i);
        ASSERT_MSG(fin >= 30, "schema %zu: only %d of 60 walks finished", i, fin);
    }
}

/* Mutated schemas: compile or fail cleanly; what compiles also walks. */
static void test_schema_mutations(void) {
    unsigned seed = g_seed ^ 0x5bd1e995u;
    walk_out *o = malloc(sizeof *o);
    int compiled = 0, failed = 0;
    const char alphabet[] = "{}[]\",:0123456789-truefalsn \\#/$";
    for (int it = 0; it < 1500; it++) {
        const char *base = k_schemas[1 + rnd(&seed) % (sizeof k_schemas / sizeof k_schemas[0] - 1)];
        char buf[1024];
        size_t n = strlen(base);
        memcpy(buf, base, n);
        for (int k = 0, edits = 1 + (int)(rnd(&seed) % 4); k < edits && n > 2; k++) {
            size_t at = rnd(&seed) % n;
            switch (rnd(&seed) % 3) {
            case 0:
                buf[at] = alphabet[rnd(&seed) % (sizeof alphabet - 1)];
                break;
            case 1:
                memmove(buf + at, buf + at + 1, n - at - 1), n--;
                break;
            default:
                if (n + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = alphabet[rnd(&seed) % (sizeof alphabet - 1)];
                    n++;
                }
            }
        }
        qf_err err = {0};
        qf_grammar *g = qf_grammar_from_schema(buf, n, &err);
        if (!g) {
            failed++;
            ASSERT_MSG(err.code < 0 && err.msg[0], "no error for '%.*s'", (int)n, buf);
            continue;
        }
        compiled++;
        qf_gmatch *m = qf_gmatch_new_vocab(g, g_voc, &err);
        ASSERT(m);
        unsigned ws = rnd(&seed);
        bool good = random_walk(m, g_tok, g_closer, &ws, 60, o);
        qf_gmatch_free(m);
        qf_grammar_free(g);
        ASSERT_MSG(good, "walk on '%.*s'", (int)n, buf);
    }
    free(o);
    fprintf(stderr, "  %d mutants compiled, %d refused\n", compiled, failed);
    ASSERT(compiled > 50 && failed > 50);
}

static void test_clone(void) {
    qf_err err = {0};
    qf_grammar *g = qf_grammar_json(&err);
    ASSERT(g);
    qf_gmatch *m = qf_gmatch_new(g, g_tok, &err); /* private trie */
    ASSERT(m);
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "{\"a\":[1", 7), QF_OK);
    qf_gmatch *c = qf_gmatch_clone(m, &err);
    ASSERT(c);
    qf_grammar_free(g); /* both matchers hold references */
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "]}", 2), QF_OK);
    ASSERT(qf_gmatch_done(m));
    ASSERT(!qf_gmatch_done(c));
    ASSERT(masked_allows(c, piece_id(",")));
    ASSERT(!masked_allows(m, piece_id(",")));
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(c, ",2", 2), QF_OK);
    qf_gmatch *c2 = qf_gmatch_clone(c, &err);
    ASSERT(c2);
    qf_gmatch_free(m);
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(c, "]}", 2), QF_OK);
    ASSERT(qf_gmatch_done(c));
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(c2, "}", 1), QF_ERR_INVALID); /* array still open */
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(c2, "3]}", 3), QF_OK);
    ASSERT(qf_gmatch_done(c2));
    qf_gmatch_free(c);
    qf_gmatch_free(c2);
}

/* Long outputs: the memo is compacted and everything keeps working. */
static void test_long_output(void) {
    qf_grammar *g =
        schema("{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":9000}}");
    ASSERT(g);
    qf_gmatch *m = matcher(g);
    ASSERT(m);
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "[\"", 2), QF_OK);
    for (int i = 0; i < 8999; i++) {
        ASSERT_EQ_INT(qf_gmatch_accept(m, byte_id('x')), QF_OK);
        if (i % 1000 == 0) ASSERT(masked_allows(m, piece_id("\",")));
    }
    ASSERT(!masked_allows(m, piece_id("ab")));
    ASSERT(masked_allows(m, byte_id('y')));
    ASSERT_EQ_INT(qf_gmatch_accept(m, byte_id('y')), QF_OK);
    ASSERT(!masked_allows(m, byte_id('y')));
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "\"]", 2), QF_OK);
    ASSERT(qf_gmatch_done(m));
    qf_gmatch_free(m);
    qf_grammar_free(g);
}

static void test_alloc_failure(void) {
    bool clean = false;
    long n = 0;
    for (; n < 20000 && !clean; n++) {
        qf_mem_fail_after(n);
        qf_err err = {0};
        qf_grammar *g = qf_grammar_from_schema(k_qa, strlen(k_qa), &err);
        qf_gvocab *v = g ? qf_gvocab_new(g_tok, &err) : NULL;
        qf_gmatch *m = v ? qf_gmatch_new_vocab(g, v, &err) : NULL;
        qf_gmatch *c = NULL;
        bool ok = m != NULL;
        float l[512];
        int32_t nv = qf_tok_n_vocab(g_tok);
        if (ok) ok = qf_gmatch_mask(m, l, nv < 512 ? nv : 512) == QF_OK;
        if (ok) ok = qf_gmatch_accept_bytes(m, "[{\"question\": \"x", 16) == QF_OK;
        if (ok) ok = qf_gmatch_mask(m, l, nv < 512 ? nv : 512) == QF_OK;
        if (ok) ok = (c = qf_gmatch_clone(m, &err)) != NULL;
        if (ok) ok = qf_gmatch_accept_bytes(c, "\", \"answer\": \"y\"}]", 18) == QF_OK;
        if (ok) ok = qf_gmatch_done(c) && !qf_gmatch_done(m);
        if (!ok && !m && !(g && v)) {
            /* constructors report NOMEM */
            if (err.code != QF_ERR_NOMEM) {
                qf_mem_fail_after(-1);
                ASSERT_MSG(0, "n=%ld: code %s (%s)", n, qf_status_name(err.code), err.msg);
            }
        }
        qf_gmatch_free(c);
        qf_gmatch_free(m);
        qf_gvocab_free(v);
        qf_grammar_free(g);
        clean = ok && qf_mem_count() <= n;
    }
    qf_mem_fail_after(-1);
    fprintf(stderr, "  clean run after %ld injected failure points\n", n - 1);
    ASSERT(clean);
}

/* A NOMEM in the middle leaves the matcher usable and unchanged. */
static void test_alloc_failure_state(void) {
    qf_grammar *g = schema(k_qa);
    ASSERT(g);
    for (long n = 0; n < 200; n++) {
        qf_gmatch *m = matcher(g);
        ASSERT(m);
        qf_mem_fail_after(n);
        qf_status st = qf_gmatch_accept_bytes(m, "[{\"question\": \"x\"", 17);
        qf_mem_fail_after(-1);
        ASSERT(st == QF_OK || st == QF_ERR_NOMEM);
        if (st == QF_ERR_NOMEM)
            ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "[{\"question\": \"x\"", 17), QF_OK);
        ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, ", \"answer\": \"y\"}]", 17), QF_OK);
        ASSERT(qf_gmatch_done(m));
        qf_gmatch_free(m);
    }
    qf_grammar_free(g);
}

typedef struct thr_arg {
    const char *schema;
    unsigned seed;
    int result;
} thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    a->result = walks(a->schema, g_tok, g_voc, g_closer, 30, 300, a->seed);
    return NULL;
}

/* Grammar-independent shared objects: two threads walk on one gvocab. */
static void test_threads(void) {
    pthread_t th[2];
    thr_arg a[2] = {{k_qa, g_seed + 1, 0}, {NULL, g_seed + 2, 0}};
    for (int i = 0; i < 2; i++)
        ASSERT(pthread_create(&th[i], NULL, thr_main, &a[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    ASSERT(a[0].result > 0 && a[1].result > 0);
}

/* ---- real vocab (data) ---- */

static void time_mask(const char *what, qf_gmatch *m, int32_t nv) {
    float *l = malloc((size_t)nv * sizeof(float));
    for (int32_t i = 0; i < nv; i++)
        l[i] = 1.0f;
    double t0 = now_s();
    qf_gmatch_mask(m, l, nv);
    double cold = now_s() - t0;
    int n_ok = 0;
    for (int32_t i = 0; i < nv; i++)
        n_ok += isfinite(l[i]);
    int reps = 200;
    t0 = now_s();
    for (int r = 0; r < reps; r++)
        qf_gmatch_mask(m, l, nv);
    double hot = (now_s() - t0) / reps;
    fprintf(stderr, "  mask %-28s %6d allowed: first %.3f ms, then %.3f ms/call\n", what, n_ok,
            cold * 1e3, hot * 1e3);
    free(l);
}

/* Load a shared vocab; walks over every schema (all_schemas) or QA + json,
 * then mask timings. */
static void data_vocab(const char *file, bool all_schemas, int n_walks) {
    char path[512];
    qf_testdata(file, path, sizeof path);
    qf_err err = {0};
    qf_gguf *gg = qf_gguf_open(path, &err);
    ASSERT_MSG(gg, "%s", err.msg);
    qf_tok *t = qf_tok_new_from_gguf(gg, &err);
    qf_gguf_close(gg);
    ASSERT_MSG(t, "%s", err.msg);
    int32_t nv = qf_tok_n_vocab(t);
    double t0 = now_s();
    qf_gvocab *v = qf_gvocab_new(t, &err);
    double tb = now_s() - t0;
    ASSERT(v);
    fprintf(stderr, "  %s: %d tokens, trie %d nodes, built in %.1f ms\n", file, nv,
            qf_gvocab_n_nodes(v), tb * 1e3);
    uint8_t *closer = closers(t);
    for (size_t i = 0; i < sizeof k_schemas / sizeof k_schemas[0]; i++) {
        if (!all_schemas && i > 1) break;
        int fin = walks(k_schemas[i], t, v, closer, n_walks, 300, g_seed + (unsigned)i * 31u);
        if (fin < 0 || fin < n_walks / 4) free(closer);
        ASSERT_MSG(fin >= 0, "%s: schema %zu", file, i);
        ASSERT_MSG(fin >= n_walks / 4, "%s: schema %zu: only %d of %d walks finished", file, i, fin,
                   n_walks);
    }
    free(closer);
    qf_grammar *g = qf_grammar_from_schema(k_qa, strlen(k_qa), &err);
    ASSERT(g);
    qf_gmatch *m = qf_gmatch_new_vocab(g, v, &err);
    ASSERT(m);
    time_mask("at the start", m, nv);
    const char *pre = "[{\"question\": \"What is the";
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, pre, strlen(pre)), QF_OK);
    time_mask("in a string", m, nv);
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, " capital?\"", 10), QF_OK);
    time_mask("after a string", m, nv);
    qf_gmatch_free(m);
    qf_grammar_free(g);
    g = qf_grammar_json(&err);
    m = qf_gmatch_new_vocab(g, v, &err);
    ASSERT(m);
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "{\"a\": [1, 2", 11), QF_OK);
    time_mask("json, in a number", m, nv);
    ASSERT_EQ_INT(qf_gmatch_accept_bytes(m, "], \"b\": \"x", 9), QF_OK);
    time_mask("json, in a string", m, nv);
    qf_gmatch_free(m);
    qf_grammar_free(g);
    qf_gvocab_free(v);
    qf_tok_free(t);
}

static void test_data_llama_spm(void) {
    data_vocab("vocab/ggml-vocab-llama-spm.gguf", true, 20);
}
static void test_data_gpt2(void) {
    data_vocab("vocab/ggml-vocab-gpt-2.gguf", false, 10);
}
static void test_data_deepseek_llm(void) {
    data_vocab("vocab/ggml-vocab-deepseek-llm.gguf", false, 5);
}

int main(int argc, char **argv) {
    g_seed = qf_test_seed();
    bool data = argc > 1 && strcmp(argv[1], "--data") == 0;
    if (data) {
        RUN_TEST(test_data_llama_spm);
        RUN_TEST(test_data_gpt2);
        RUN_TEST(test_data_deepseek_llm);
        TEST_MAIN_END();
    }
    g_tok = test_vocab();
    qf_err err = {0};
    g_voc = g_tok ? qf_gvocab_new(g_tok, &err) : NULL;
    g_closer = g_tok ? closers(g_tok) : NULL;
    RUN_TEST(test_vocab_setup);
    if (!g_voc) TEST_MAIN_END();
    RUN_TEST(test_json_masks);
    RUN_TEST(test_json_bytes);
    RUN_TEST(test_schema_bytes);
    RUN_TEST(test_bad_schemas);
    RUN_TEST(test_random_walks);
    RUN_TEST(test_schema_mutations);
    RUN_TEST(test_clone);
    RUN_TEST(test_long_output);
    RUN_TEST(test_alloc_failure);
    RUN_TEST(test_alloc_failure_state);
    RUN_TEST(test_threads);
    qf_gvocab_free(g_voc);
    qf_tok_free(g_tok);
    free(g_closer);
    TEST_MAIN_END();
}
