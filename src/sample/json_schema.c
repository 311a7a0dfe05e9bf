/* json_schema.c - compile a JSON Schema (subset, see grammar.h) to a grammar.
 *
 * gen(schema) returns a rule matching exactly the JSON texts (without
 * surrounding whitespace) the schema node accepts. Rules are memoized by the
 * address of the cJSON node and created before their body, so a $ref back to
 * a node being compiled (recursive schemas) just references its rule; cycles
 * that consume no input are caught by gb_finish's left-recursion check.
 *
 * Objects: members in declared order, each optional one skippable. With n
 * members, A_i = "nothing emitted yet, at member i" and B_i = "something
 * emitted, next member needs a comma":
 *     A_i ::= M_i B_{i+1} | A_{i+1}            (second alt if i is optional)
 *     B_i ::= "," ws M_i B_{i+1} | B_{i+1}
 *     A_n ::= "}" | X B_n        B_n ::= "}" | "," ws X B_n     (X: extra member)
 * so the comma placement is always right and the grammar stays unambiguous
 * but for which optional member comes first (resolved by its key's bytes).
 * Extra members' keys avoid the declared names through a trie of those names:
 * at each node a key may end (if the prefix is not a name), continue along a
 * name, or leave the trie with any other character.
 *
 * Error messages carry the JSON pointer of the node being compiled.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "sample/grammar_int.h"

#define MAX_DEPTH    128
#define MAX_KEY_TRIE 256 /* longer declared names: extra keys are any string */

typedef struct memo_ent {
    const cJSON *node;
    int32_t rule;
} memo_ent;

typedef struct sctx {
    gbuild *b;
    const cJSON *root;
    memo_ent *memo; /* open addressing, cap_memo a power of two */
    size_t n_memo, cap_memo;
    cJSON **owned; /* merged allOf nodes, deleted at the end */
    size_t n_owned, cap_owned;
    char path[512];
    size_t plen;
    int depth;
} sctx;

/* ---- helpers ---- */

static int32_t sfail(sctx *c, qf_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int32_t sfail(sctx *c, qf_status st, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return gb_fail(c->b, st, "json schema at %s: %s", c->path, msg);
}

static int32_t nomem(sctx *c) {
    return gb_fail(c->b, QF_ERR_NOMEM, "json schema: out of memory");
}

static size_t path_push(sctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(sctx *c, const char *fmt, ...) {
    size_t mark = c->plen;
    if (c->plen < sizeof c->path - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, ap);
        va_end(ap);
        if (n > 0) c->plen += (size_t)n;
        if (c->plen >= sizeof c->path) c->plen = sizeof c->path - 1;
    }
    return mark;
}

static void path_pop(sctx *c, size_t mark) {
    c->plen = mark;
    c->path[mark] = '\0';
}

static size_t memo_slot(const sctx *c, const cJSON *n) {
    uint64_t h = (uint64_t)(uintptr_t)n * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17) & (c->cap_memo - 1);
}

static int32_t memo_get(const sctx *c, const cJSON *n) {
    if (!c->cap_memo) return -1;
    for (size_t i = memo_slot(c, n);; i = (i + 1) & (c->cap_memo - 1)) {
        if (!c->memo[i].node) return -1;
        if (c->memo[i].node == n) return c->memo[i].rule;
    }
}

static bool memo_put(sctx *c, const cJSON *n, int32_t rule) {
    if (2 * (c->n_memo + 1) > c->cap_memo) {
        size_t cap = c->cap_memo ? c->cap_memo * 2 : 64;
        memo_ent *old = c->memo;
        size_t oldcap = c->cap_memo;
        c->memo = qf_calloc(cap, sizeof(memo_ent));
        if (!c->memo) {
            c->memo = old;
            return false;
        }
        c->cap_memo = cap;
        for (size_t i = 0; i < oldcap; i++) {
            if (!old[i].node) continue;
            size_t j = memo_slot(c, old[i].node);
            while (c->memo[j].node)
                j = (j + 1) & (cap - 1);
            c->memo[j] = old[i];
        }
        qf_free(old);
    }
    size_t j = memo_slot(c, n);
    while (c->memo[j].node)
        j = (j + 1) & (c->cap_memo - 1);
    c->memo[j] = (memo_ent){n, rule};
    c->n_memo++;
    return true;
}

static const cJSON *get(const cJSON *s, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(s, key);
}

/* A non-negative integer keyword: def when absent; false (error set) when it
 * is not one. Values above INT32_MAX read as INT32_MAX. */
static bool get_count(sctx *c, const cJSON *s, const char *key, int32_t def, int32_t *out) {
    const cJSON *v = get(s, key);
    *out = def;
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble != floor(v->valuedouble)) {
        sfail(c, QF_ERR_FORMAT, "\"%s\" must be a non-negative integer", key);
        return false;
    }
    *out = v->valuedouble > 2147483647.0 ? INT32_MAX : (int32_t)v->valuedouble;
    return true;
}

/* min/max counts -> checked (min, max) with max -1 for unbounded. */
static bool get_bounds(sctx *c, const cJSON *s, const char *kmin, const char *kmax, int32_t *min,
                       int32_t *max) {
    if (!get_count(c, s, kmin, 0, min) || !get_count(c, s, kmax, -1, max)) return false;
    if (*max >= 0 && *min > *max) {
        sfail(c, QF_ERR_INVALID, "%s %d > %s %d", kmin, *min, kmax, *max);
        return false;
    }
    if (*min > QF_GRAMMAR_MAX_REPEAT) {
        sfail(c, QF_ERR_RANGE, "%s %d is above the supported %d", kmin, *min,
              QF_GRAMMAR_MAX_REPEAT);
        return false;
    }
    if (*max > QF_GRAMMAR_MAX_REPEAT) *max = -1; /* documented relaxation */
    return true;
}

/* Append the JSON string literal for name (quotes included). */
static void seq_json_string(gbuild *b, gseq *s, const char *name) {
    gs_push(b, s, gb_byte(b, '"'));
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        char buf[8];
        switch (*p) {
        case '"':
            gs_bytes(b, s, "\\\"", 2);
            break;
        case '\\':
            gs_bytes(b, s, "\\\\", 2);
            break;
        case '\n':
            gs_bytes(b, s, "\\n", 2);
            break;
        case '\r':
            gs_bytes(b, s, "\\r", 2);
            break;
        case '\t':
            gs_bytes(b, s, "\\t", 2);
            break;
        case '\b':
            gs_bytes(b, s, "\\b", 2);
            break;
        case '\f':
            gs_bytes(b, s, "\\f", 2);
            break;
        default:
            if (*p < 0x20) {
                snprintf(buf, sizeof buf, "\\u%04x", *p);
                gs_bytes(b, s, buf, 6);
            } else {
                gs_push(b, s, gb_byte(b, *p));
            }
        }
    }
    gs_push(b, s, gb_byte(b, '"'));
}

/* Add to rule r the exact compact serialization of v. */
static void add_literal(sctx *c, int32_t r, const cJSON *v) {
    char *txt = cJSON_PrintUnformatted(v);
    if (!txt) {
        nomem(c);
        return;
    }
    gseq s = {0};
    gs_bytes(c->b, &s, txt, strlen(txt));
    gs_add(c->b, r, &s);
    gs_free(&s);
    cJSON_free(txt);
}

/* ---- $ref ---- */

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* JSON pointer (in a URI fragment) -> node, or NULL + error. */
static const cJSON *resolve(sctx *c, const char *ref) {
    if (ref[0] != '#') {
        sfail(c, QF_ERR_UNSUPPORTED, "$ref \"%.200s\" points outside this document", ref);
        return NULL;
    }
    const char *p = ref + 1;
    if (*p && *p != '/') {
        sfail(c, QF_ERR_UNSUPPORTED, "$ref \"%.200s\": anchors are not supported", ref);
        return NULL;
    }
    char *tok = qf_malloc(strlen(p) + 1);
    if (!tok) {
        nomem(c);
        return NULL;
    }
    const cJSON *cur = c->root;
    while (cur && *p == '/') {
        size_t n = 0;
        for (p++; *p && *p != '/'; p++) {
            int ch = (unsigned char)*p;
            if (ch == '~' && (p[1] == '0' || p[1] == '1')) {
                ch = p[1] == '0' ? '~' : '/';
                p++;
            } else if (ch == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
                ch = hexval(p[1]) * 16 + hexval(p[2]);
                p += 2;
            }
            tok[n++] = (char)ch;
        }
        tok[n] = '\0';
        if (cJSON_IsObject(cur)) {
            cur = get(cur, tok);
        } else if (cJSON_IsArray(cur) && n > 0 && n < 10 && strspn(tok, "0123456789") == n) {
            cur = cJSON_GetArrayItem(cur, atoi(tok));
        } else {
            cur = NULL;
        }
    }
    qf_free(tok);
    if (!cur) sfail(c, QF_ERR_FORMAT, "$ref \"%.200s\" does not resolve", ref);
    return cur;
}

/* ---- allOf ---- */

static bool own(sctx *c, cJSON *n) {
    if (c->n_owned == c->cap_owned) {
        size_t cap = c->cap_owned ? c->cap_owned * 2 : 8;
        cJSON **o = qf_realloc(c->owned, cap * sizeof(*o));
        if (!o) return false;
        c->owned = o;
        c->cap_owned = cap;
    }
    c->owned[c->n_owned++] = n;
    return true;
}

static bool has_string(const cJSON *arr, const char *s) {
    const cJSON *it;
    cJSON_ArrayForEach(it,
                       arr) if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0) return true;
    return false;
}

/* Merge node (following $refs) into out/props/req; depth bounds allOf nesting
 * and $ref chains. */
static bool merge_into(sctx *c, const cJSON *node, cJSON *out, cJSON *props, cJSON *req,
                       int depth) {
    if (depth > 32) {
        sfail(c, QF_ERR_RANGE, "allOf/$ref nested deeper than 32 levels");
        return false;
    }
    if (cJSON_IsTrue(node)) return true;
    if (cJSON_IsFalse(node)) {
        sfail(c, QF_ERR_INVALID, "allOf holds schema false, which admits no value");
        return false;
    }
    if (!cJSON_IsObject(node)) {
        sfail(c, QF_ERR_FORMAT, "allOf members must be schemas");
        return false;
    }
    const cJSON *ref = get(node, "$ref");
    if (ref) {
        if (!cJSON_IsString(ref)) {
            sfail(c, QF_ERR_FORMAT, "\"$ref\" must be a string");
            return false;
        }
        const cJSON *t = resolve(c, ref->valuestring);
        if (!t || !merge_into(c, t, out, props, req, depth + 1)) return false;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, node) {
        const char *k = it->string;
        if (!k || strcmp(k, "$ref") == 0) continue;
        if (strcmp(k, "allOf") == 0) {
            if (!cJSON_IsArray(it)) {
                sfail(c, QF_ERR_FORMAT, "\"allOf\" must be an array");
                return false;
            }
            const cJSON *m;
            cJSON_ArrayForEach(m,
                               it) if (!merge_into(c, m, out, props, req, depth + 1)) return false;
        } else if (strcmp(k, "properties") == 0 && cJSON_IsObject(it)) {
            const cJSON *p;
            cJSON_ArrayForEach(p, it) {
                if (get(props, p->string)) continue;
                if (!cJSON_AddItemReferenceToObject(props, p->string, (cJSON *)p))
                    return nomem(c), false;
            }
        } else if (strcmp(k, "required") == 0 && cJSON_IsArray(it)) {
            const cJSON *r;
            cJSON_ArrayForEach(r, it) {
                if (!cJSON_IsString(r)) {
                    sfail(c, QF_ERR_FORMAT, "\"required\" must hold strings");
                    return false;
                }
                if (has_string(req, r->valuestring)) continue;
                cJSON *s = cJSON_CreateString(r->valuestring);
                if (!s || !cJSON_AddItemToArray(req, s)) return cJSON_Delete(s), nomem(c), false;
            }
        } else if (!get(out, k)) {
            if (!cJSON_AddItemReferenceToObject(out, k, (cJSON *)it)) return nomem(c), false;
        }
    }
    return true;
}

static const cJSON *merge_allof(sctx *c, const cJSON *s) {
    cJSON *out = cJSON_CreateObject();
    if (!out || !own(c, out)) {
        cJSON_Delete(out);
        nomem(c);
        return NULL;
    }
    cJSON *props = cJSON_CreateObject(), *req = cJSON_CreateArray();
    if (!props || !req) goto nomem_;
    if (!merge_into(c, s, out, props, req, 0)) goto fail;
    if (props->child) {
        if (!cJSON_AddItemToObject(out, "properties", props)) goto nomem_;
        props = NULL;
    }
    if (req->child) {
        if (!cJSON_AddItemToObject(out, "required", req)) goto nomem_;
        req = NULL;
    }
    cJSON_Delete(props);
    cJSON_Delete(req);
    return out;
nomem_:
    nomem(c);
fail:
    cJSON_Delete(props);
    cJSON_Delete(req);
    return NULL;
}

/* ---- objects ---- */

typedef struct member {
    const char *name;
    const cJSON *schema; /* NULL: any value */
    bool required;
} member;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Rule for the key-string trie node holding names[lo..hi) (sorted, sharing
 * their first d bytes): the rest of a key, closing quote included. */
static int32_t key_node(gbuild *b, const char **names, int32_t lo, int32_t hi, size_t d) {
    int32_t r = gb_rule(b, NULL);
    if (strlen(names[lo]) != d) GB_ALT(b, r, gb_byte(b, '"')); /* prefix is no name: may end */
    gclass used = {{0}};
    for (int32_t i = lo; i < hi && b->st == QF_OK;) {
        if (strlen(names[i]) == d) {
            i++;
            continue;
        }
        unsigned ch = (unsigned char)names[i][d];
        int32_t j = i + 1;
        while (j < hi && (unsigned char)names[j][d] == ch)
            j++;
        used.w[ch >> 6] |= 1ull << (ch & 63);
        GB_ALT(b, r, gb_byte(b, ch), gb_ref(key_node(b, names, i, j, d + 1)));
        i = j;
    }
    int32_t other = gb_char_except(b, &used);
    GB_ALT(b, r, gb_ref(other), gb_ref(gb_base(b, GB_CHARS)), gb_byte(b, '"'));
    return b->st == QF_OK ? r : -1;
}

/* A JSON string key that is none of names (plain ASCII names only; with
 * others, any key: documented relaxation). */
static int32_t key_except(sctx *c, const member *mem, int32_t n) {
    gbuild *b = c->b;
    if (n == 0) return gb_base(b, GB_STRING);
    for (int32_t i = 0; i < n; i++) {
        size_t len = strlen(mem[i].name);
        if (len > MAX_KEY_TRIE) return gb_base(b, GB_STRING);
        for (size_t k = 0; k < len; k++) {
            unsigned char ch = (unsigned char)mem[i].name[k];
            if (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\') return gb_base(b, GB_STRING);
        }
    }
    const char **names = qf_malloc((size_t)n * sizeof(*names));
    if (!names) return nomem(c);
    for (int32_t i = 0; i < n; i++)
        names[i] = mem[i].name;
    qsort(names, (size_t)n, sizeof(*names), cmp_str);
    int32_t r = gb_rule(b, NULL);
    GB_ALT(b, r, gb_byte(b, '"'), gb_ref(key_node(b, names, 0, n, 0)));
    qf_free(names);
    return b->st == QF_OK ? r : -1;
}

static int32_t gen(sctx *c, const cJSON *s);

static int32_t gen_object(sctx *c, const cJSON *s) {
    gbuild *b = c->b;
    const cJSON *props = get(s, "properties"), *req = get(s, "required");
    const cJSON *addl = get(s, "additionalProperties");
    if (props && !cJSON_IsObject(props))
        return sfail(c, QF_ERR_FORMAT, "\"properties\" must be an object");
    if (req && !cJSON_IsArray(req)) return sfail(c, QF_ERR_FORMAT, "\"required\" must be an array");
    if (addl && !cJSON_IsBool(addl) && !cJSON_IsObject(addl))
        return sfail(c, QF_ERR_FORMAT, "\"additionalProperties\" must be a boolean or a schema");
    const cJSON *it;
    if (req)
        cJSON_ArrayForEach(it, req) if (!cJSON_IsString(it)) return sfail(
            c, QF_ERR_FORMAT, "\"required\" must hold strings");
    int32_t ws = gb_base(b, GB_WS);

    /* extra members: their value rule, or -1 for none */
    int32_t xval = -1;
    bool no_decl = (!props || !props->child) && (!req || !req->child);
    if (addl && cJSON_IsObject(addl)) {
        size_t mark = path_push(c, "/additionalProperties");
        xval = gen(c, addl);
        path_pop(c, mark);
        if (xval < 0) return -1;
    } else if (cJSON_IsTrue(addl) || (!addl && no_decl)) {
        xval = gb_base(b, GB_VALUE);
    }
    if (no_decl) {
        if (xval >= 0) return gb_object_of(b, gb_base(b, GB_STRING), xval);
        int32_t r = gb_rule(b, NULL);
        GB_ALT(b, r, gb_byte(b, '{'), gb_ref(ws), gb_byte(b, '}'));
        return b->st == QF_OK ? r : -1;
    }

    int32_t n = cJSON_GetArraySize(props) + cJSON_GetArraySize(req);
    member *mem = qf_calloc((size_t)n + 1, sizeof(member));
    int32_t *val = qf_calloc((size_t)n + 1, sizeof(int32_t));
    if (!mem || !val) {
        qf_free(mem);
        qf_free(val);
        return nomem(c);
    }
    int32_t nm = 0, obj = -1;
    if (props) cJSON_ArrayForEach(it, props) {
            bool dup = false;
            for (int32_t i = 0; i < nm; i++)
                dup |= strcmp(mem[i].name, it->string) == 0;
            if (dup) continue; /* cJSON keeps duplicate keys; the first one counts */
            mem[nm++] = (member){it->string, it, req && has_string(req, it->string)};
        }
    if (req) cJSON_ArrayForEach(it, req) {
            bool known = false;
            for (int32_t i = 0; i < nm; i++)
                known |= strcmp(mem[i].name, it->valuestring) == 0;
            if (!known) mem[nm++] = (member){it->valuestring, NULL, true};
        }
    for (int32_t i = 0; i < nm && b->st == QF_OK; i++) {
        size_t mark = path_push(c, "/properties/%s", mem[i].name);
        val[i] = mem[i].schema ? gen(c, mem[i].schema) : gb_base(b, GB_VALUE);
        path_pop(c, mark);
    }
    uint32_t colon = gb_byte(b, ':'), comma = gb_byte(b, ','), close = gb_byte(b, '}');
    int32_t a_next = gb_rule(b, NULL), b_next = gb_rule(b, NULL);
    GB_ALT(b, a_next, close);
    GB_ALT(b, b_next, close);
    if (xval >= 0) {
        int32_t key = key_except(c, mem, nm), x = gb_rule(b, NULL);
        GB_ALT(b, x, gb_ref(key), gb_ref(ws), colon, gb_ref(ws), gb_ref(xval), gb_ref(ws));
        GB_ALT(b, a_next, gb_ref(x), gb_ref(b_next));
        GB_ALT(b, b_next, comma, gb_ref(ws), gb_ref(x), gb_ref(b_next));
    }
    gseq sq = {0};
    for (int32_t i = nm - 1; i >= 0 && b->st == QF_OK; i--) {
        int32_t m = gb_rule(b, NULL), ai = gb_rule(b, NULL), bi = gb_rule(b, NULL);
        sq.n = 0;
        seq_json_string(b, &sq, mem[i].name);
        gs_push(b, &sq, gb_ref(ws));
        gs_push(b, &sq, colon);
        gs_push(b, &sq, gb_ref(ws));
        gs_push(b, &sq, gb_ref(val[i]));
        gs_push(b, &sq, gb_ref(ws));
        gs_add(b, m, &sq);
        GB_ALT(b, ai, gb_ref(m), gb_ref(b_next));
        GB_ALT(b, bi, comma, gb_ref(ws), gb_ref(m), gb_ref(b_next));
        if (!mem[i].required) {
            GB_ALT(b, ai, gb_ref(a_next));
            GB_ALT(b, bi, gb_ref(b_next));
        }
        a_next = ai;
        b_next = bi;
    }
    gs_free(&sq);
    obj = gb_rule(b, NULL);
    GB_ALT(b, obj, gb_byte(b, '{'), gb_ref(ws), gb_ref(a_next));
    qf_free(mem);
    qf_free(val);
    return b->st == QF_OK ? obj : -1;
}

/* ---- arrays ---- */

static int32_t gen_array(sctx *c, const cJSON *s) {
    gbuild *b = c->b;
    const cJSON *items = get(s, "items"), *prefix = get(s, "prefixItems");
    const char *tkey = "prefixItems";
    if (!prefix && cJSON_IsArray(items)) prefix = items, tkey = "items";
    if (prefix) { /* tuple */
        if (!cJSON_IsArray(prefix))
            return sfail(c, QF_ERR_FORMAT, "\"prefixItems\" must be an array");
        int32_t ws = gb_base(b, GB_WS), r = gb_rule(b, NULL);
        gseq sq = {0};
        gs_push(b, &sq, gb_byte(b, '['));
        gs_push(b, &sq, gb_ref(ws));
        int32_t i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, prefix) {
            if (b->st != QF_OK) break;
            size_t mark = path_push(c, "/%s/%d", tkey, i);
            int32_t t = gen(c, it);
            path_pop(c, mark);
            if (i++ > 0) {
                gs_push(b, &sq, gb_byte(b, ','));
                gs_push(b, &sq, gb_ref(ws));
            }
            gs_push(b, &sq, gb_ref(t));
            gs_push(b, &sq, gb_ref(ws));
        }
        gs_push(b, &sq, gb_byte(b, ']'));
        gs_add(b, r, &sq);
        gs_free(&sq);
        return b->st == QF_OK ? r : -1;
    }
    int32_t min, max, item;
    if (!get_bounds(c, s, "minItems", "maxItems", &min, &max)) return -1;
    if (items) {
        size_t mark = path_push(c, "/items");
        item = gen(c, items);
        path_pop(c, mark);
    } else {
        item = gb_base(b, GB_VALUE);
    }
    if (item < 0) return -1;
    return gb_array_of(b, item, min, max);
}

/* ---- dispatch ---- */

static void gen_type(sctx *c, const cJSON *s, const char *type, int32_t r) {
    gbuild *b = c->b;
    int32_t t = -1;
    if (strcmp(type, "string") == 0) {
        int32_t min, max;
        if (!get_bounds(c, s, "minLength", "maxLength", &min, &max)) return;
        t = gb_string_len(b, min, max);
    } else if (strcmp(type, "number") == 0) {
        t = gb_base(b, GB_NUMBER);
    } else if (strcmp(type, "integer") == 0) {
        t = gb_base(b, GB_INTEGER);
    } else if (strcmp(type, "boolean") == 0) {
        t = gb_base(b, GB_BOOLEAN);
    } else if (strcmp(type, "null") == 0) {
        t = gb_base(b, GB_NULL);
    } else if (strcmp(type, "object") == 0) {
        t = gen_object(c, s);
    } else if (strcmp(type, "array") == 0) {
        t = gen_array(c, s);
    } else {
        sfail(c, QF_ERR_FORMAT, "unknown type \"%.100s\"", type);
        return;
    }
    if (t >= 0) GB_ALT(b, r, gb_ref(t));
}

static void gen_alts(sctx *c, const cJSON *arr, const char *key, int32_t r) {
    if (!cJSON_IsArray(arr)) {
        sfail(c, QF_ERR_FORMAT, "\"%s\" must be an array", key);
        return;
    }
    if (!arr->child) {
        sfail(c, QF_ERR_INVALID, "\"%s\" is empty", key);
        return;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        size_t mark = path_push(c, "/%s/%d", key, i++);
        int32_t t = gen(c, it);
        path_pop(c, mark);
        if (t < 0) return;
        GB_ALT(c->b, r, gb_ref(t));
    }
}

static void gen_body(sctx *c, const cJSON *s, int32_t r) {
    gbuild *b = c->b;
    const cJSON *v;
    if ((v = get(s, "$ref"))) {
        if (!cJSON_IsString(v)) {
            sfail(c, QF_ERR_FORMAT, "\"$ref\" must be a string");
            return;
        }
        const cJSON *t = resolve(c, v->valuestring);
        if (!t) return;
        /* errors inside the target name the target */
        char saved[sizeof c->path];
        size_t saved_len = c->plen;
        memcpy(saved, c->path, sizeof saved);
        path_pop(c, 0);
        path_push(c, "%.400s", v->valuestring);
        int32_t tr = gen(c, t);
        memcpy(c->path, saved, sizeof saved);
        c->plen = saved_len;
        if (tr >= 0) GB_ALT(b, r, gb_ref(tr));
        return;
    }
    if ((v = get(s, "const"))) {
        add_literal(c, r, v);
        return;
    }
    if ((v = get(s, "enum"))) {
        if (!cJSON_IsArray(v)) {
            sfail(c, QF_ERR_FORMAT, "\"enum\" must be an array");
            return;
        }
        if (!v->child) {
            sfail(c, QF_ERR_INVALID, "\"enum\" is empty");
            return;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, v) add_literal(c, r, it);
        return;
    }
    if ((v = get(s, "anyOf")) || (v = get(s, "oneOf"))) {
        gen_alts(c, v, v->string, r);
        return;
    }
    if ((v = get(s, "allOf"))) {
        if (!cJSON_IsArray(v)) {
            sfail(c, QF_ERR_FORMAT, "\"allOf\" must be an array");
            return;
        }
        const cJSON *m = merge_allof(c, s);
        if (!m) return;
        int32_t t = gen(c, m);
        if (t >= 0) GB_ALT(b, r, gb_ref(t));
        return;
    }
    if (cJSON_IsTrue(get(s, "nullable"))) GB_ALT(b, r, gb_ref(gb_base(b, GB_NULL)));
    const cJSON *type = get(s, "type");
    if (cJSON_IsString(type)) {
        gen_type(c, s, type->valuestring, r);
    } else if (cJSON_IsArray(type)) {
        if (!type->child) {
            sfail(c, QF_ERR_INVALID, "\"type\" is an empty array");
            return;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, type) {
            if (!cJSON_IsString(it)) {
                sfail(c, QF_ERR_FORMAT, "\"type\" must hold strings");
                return;
            }
            gen_type(c, s, it->valuestring, r);
        }
    } else if (type) {
        sfail(c, QF_ERR_FORMAT, "\"type\" must be a string or an array of strings");
    } else if (get(s, "properties") || get(s, "required") || get(s, "additionalProperties")) {
        gen_type(c, s, "object", r);
    } else if (get(s, "items") || get(s, "prefixItems") || get(s, "minItems") ||
               get(s, "maxItems")) {
        gen_type(c, s, "array", r);
    } else if (get(s, "minLength") || get(s, "maxLength")) {
        gen_type(c, s, "string", r);
    } else {
        GB_ALT(b, r, gb_ref(gb_base(b, GB_VALUE)));
    }
}

static int32_t gen(sctx *c, const cJSON *s) {
    gbuild *b = c->b;
    if (b->st != QF_OK) return -1;
    if (cJSON_IsTrue(s)) return gb_base(b, GB_VALUE);
    if (cJSON_IsFalse(s)) return sfail(c, QF_ERR_INVALID, "schema false admits no value");
    if (!cJSON_IsObject(s))
        return sfail(c, QF_ERR_FORMAT, "a schema must be an object or a boolean");
    int32_t r = memo_get(c, s);
    if (r >= 0) return r;
    if (c->depth >= MAX_DEPTH)
        return sfail(c, QF_ERR_RANGE, "schema nested deeper than %d levels", MAX_DEPTH);
    r = gb_rule(b, c->path);
    if (r < 0) return -1;
    if (!memo_put(c, s, r)) return nomem(c);
    c->depth++;
    gen_body(c, s, r);
    c->depth--;
    return b->st == QF_OK ? r : -1;
}

/* ---- entry ---- */

qf_grammar *qf_grammar_from_schema(const char *schema, size_t len, qf_err *err) {
    if (!schema) {
        QF_ERR_SET(err, QF_ERR_INVALID, "json schema: NULL text");
        return NULL;
    }
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(schema, len, &end, 0);
    size_t at = end && end >= schema ? (size_t)(end - schema) : 0;
    if (doc) { /* only whitespace (or NULs) may follow */
        while (at < len && strchr(" \t\r\n", schema[at]) && schema[at])
            at++;
        while (at < len && schema[at] == '\0')
            at++;
    }
    if (!doc || at < len) {
        if (at > len) at = len;
        int line = 1, col = 1;
        for (size_t i = 0; i < at; i++) {
            if (schema[i] == '\n')
                line++, col = 1;
            else
                col++;
        }
        QF_ERR_SET(err, QF_ERR_FORMAT, "json schema: %s at byte %zu (line %d, column %d)",
                   doc ? "unexpected data after the schema" : "not valid JSON", at, line, col);
        cJSON_Delete(doc);
        return NULL;
    }
    gbuild b;
    gb_init(&b, err);
    sctx c = {.b = &b, .root = doc, .path = "#", .plen = 1};
    int32_t root = gen(&c, doc);
    qf_grammar *g = root >= 0 ? gb_finish(&b, root) : NULL;
    gb_deinit(&b);
    for (size_t i = 0; i < c.n_owned; i++)
        cJSON_Delete(c.owned[i]);
    qf_free(c.owned);
    qf_free(c.memo);
    cJSON_Delete(doc);
    return g;
}
