/* grammar.c - grammar builder, analyses, JSON building blocks, qf_grammar_json.
 *
 * The builder collects rules as alternatives (sequences of elements in one
 * pool, tagged with their rule) in any order, so a compiler can create a rule,
 * reference it, and fill it in later (recursive schemas). gb_finish turns that
 * into the flat, immutable qf_grammar the matcher walks:
 *
 *   1. productive rules (can derive a finite byte string) by a worklist over
 *      "references still unproven" counts; alternatives that reference an
 *      unproductive rule are dropped, so every state the matcher can reach
 *      has a way to finish (no dead ends that only max_tokens would end);
 *   2. nullable rules (can derive nothing), the same way;
 *   3. left recursion: the "can start with" graph (r -> q when an alternative
 *      of r starts with q after nullable references) must be acyclic, else
 *      the matcher's closure would not terminate. Kahn's algorithm: whatever
 *      can not be peeled off lies on (or behind) a cycle;
 *   4. flatten: rule by rule, each alternative's elements then END.
 *
 * Every builder call is a no-op after the first failure (sticky b->st), so
 * compilers build without checking each call and look at b->st at the end.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "sample/grammar_int.h"

/* ---- builder basics ---- */

void gb_init(gbuild *b, qf_err *err) {
    memset(b, 0, sizeof(*b));
    b->err = err;
    for (int i = 0; i < 256; i++)
        b->byte_cls[i] = -1;
    for (int i = 0; i < GB_BASE_COUNT; i++)
        b->base[i] = -1;
}

void gb_deinit(gbuild *b) {
    if (!b) return;
    if (b->rname)
        for (int32_t i = 0; i < b->n_rule; i++)
            qf_free(b->rname[i]);
    qf_free(b->rname);
    qf_free(b->pool);
    qf_free(b->alts);
    qf_free(b->cls);
    memset(b, 0, sizeof(*b));
}

int32_t gb_fail(gbuild *b, qf_status st, const char *fmt, ...) {
    if (b->st != QF_OK) return -1;
    b->st = st;
    char msg[QF_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    QF_ERR_SET(b->err, st, "%s", msg);
    return -1;
}

static bool grow(gbuild *b, void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    size_t bytes;
    if (qf_mul_overflow(nc, elem, &bytes)) {
        gb_fail(b, QF_ERR_NOMEM, "grammar: out of memory");
        return false;
    }
    void *q = qf_realloc(*p, bytes);
    if (!q) {
        gb_fail(b, QF_ERR_NOMEM, "grammar: out of memory");
        return false;
    }
    *p = q;
    *cap = nc;
    return true;
}

int32_t gb_rule(gbuild *b, const char *name) {
    if (b->st != QF_OK) return -1;
    if (b->n_rule >= QF_GRAMMAR_MAX_ELEMENTS)
        return gb_fail(b, QF_ERR_RANGE, "grammar: more than %d rules", QF_GRAMMAR_MAX_ELEMENTS);
    if (b->n_rule == b->cap_rule) {
        size_t cap = (size_t)b->cap_rule;
        if (!grow(b, (void **)&b->rname, &cap, (size_t)b->n_rule + 1, sizeof(char *))) return -1;
        b->cap_rule = (int32_t)cap;
    }
    char *nm = NULL;
    if (name && !(nm = qf_strdup(name))) return gb_fail(b, QF_ERR_NOMEM, "grammar: out of memory");
    b->rname[b->n_rule] = nm;
    return b->n_rule++;
}

uint32_t gb_ref(int32_t rule) {
    return GE_MAKE(GE_REF, rule < 0 ? 0 : rule);
}

uint32_t gb_cls(gbuild *b, const gclass *c) {
    if (b->st != QF_OK) return GE_MAKE(GE_CLS, 0);
    for (int32_t i = 0; i < b->n_cls; i++)
        if (memcmp(&b->cls[i], c, sizeof(*c)) == 0) return GE_MAKE(GE_CLS, i);
    size_t cap = (size_t)b->cap_cls;
    if (!grow(b, (void **)&b->cls, &cap, (size_t)b->n_cls + 1, sizeof(gclass)))
        return GE_MAKE(GE_CLS, 0);
    b->cap_cls = (int32_t)cap;
    b->cls[b->n_cls] = *c;
    return GE_MAKE(GE_CLS, b->n_cls++);
}

static void cls_add(gclass *c, unsigned lo, unsigned hi) {
    for (unsigned x = lo; x <= hi && x < 256; x++)
        c->w[x >> 6] |= 1ull << (x & 63);
}

uint32_t gb_range(gbuild *b, unsigned lo, unsigned hi) {
    gclass c = {{0}};
    cls_add(&c, lo, hi);
    return gb_cls(b, &c);
}

uint32_t gb_byte(gbuild *b, unsigned c) {
    c &= 0xff;
    if (b->byte_cls[c] >= 0) return GE_MAKE(GE_CLS, b->byte_cls[c]);
    uint32_t e = gb_range(b, c, c);
    if (b->st == QF_OK) b->byte_cls[c] = GE_ARG(e);
    return e;
}

void gb_alt_add(gbuild *b, int32_t rule, const uint32_t *els, int32_t n) {
    if (b->st != QF_OK) return;
    if (rule < 0 || rule >= b->n_rule || n < 0) {
        gb_fail(b, QF_ERR_INTERNAL, "grammar: bad rule %d", rule);
        return;
    }
    if (b->n_pool + (size_t)n + 1 > QF_GRAMMAR_MAX_ELEMENTS) {
        gb_fail(b, QF_ERR_RANGE, "grammar: more than %d elements (schema too large)",
                QF_GRAMMAR_MAX_ELEMENTS);
        return;
    }
    if (!grow(b, (void **)&b->pool, &b->cap_pool, b->n_pool + (size_t)n, sizeof(uint32_t))) return;
    if (!grow(b, (void **)&b->alts, &b->cap_alts, b->n_alts + 1, sizeof(gb_alt))) return;
    if (n) memcpy(b->pool + b->n_pool, els, (size_t)n * sizeof(uint32_t));
    b->alts[b->n_alts++] = (gb_alt){rule, (int32_t)b->n_pool, n};
    b->n_pool += (size_t)n;
}

void gb_alt_empty(gbuild *b, int32_t rule) {
    gb_alt_add(b, rule, NULL, 0);
}

void gs_push(gbuild *b, gseq *s, uint32_t e) {
    if (b->st != QF_OK) return;
    if (s->n == s->cap) {
        size_t cap = (size_t)s->cap;
        if (!grow(b, (void **)&s->v, &cap, (size_t)s->n + 1, sizeof(uint32_t))) return;
        s->cap = (int32_t)cap;
    }
    s->v[s->n++] = e;
}

void gs_bytes(gbuild *b, gseq *s, const char *bytes, size_t n) {
    for (size_t i = 0; i < n && b->st == QF_OK; i++)
        gs_push(b, s, gb_byte(b, (unsigned char)bytes[i]));
}

void gs_add(gbuild *b, int32_t rule, const gseq *s) {
    gb_alt_add(b, rule, s->v, s->n);
}

void gs_free(gseq *s) {
    qf_free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

int32_t gb_lit(gbuild *b, const char *bytes, size_t n) {
    int32_t r = gb_rule(b, NULL);
    gseq s = {0};
    gs_bytes(b, &s, bytes, n);
    gs_add(b, r, &s);
    gs_free(&s);
    return b->st == QF_OK ? r : -1;
}

/* ---- JSON building blocks ---- */

int32_t gb_upto(gbuild *b, uint32_t e, int32_t n) {
    int32_t prev = gb_rule(b, NULL); /* up to 0: nothing */
    gb_alt_empty(b, prev);
    for (int32_t k = 1; k <= n && b->st == QF_OK; k++) {
        int32_t r = gb_rule(b, NULL);
        gb_alt_empty(b, r);
        GB_ALT(b, r, e, gb_ref(prev));
        prev = r;
    }
    return b->st == QF_OK ? prev : -1;
}

static void make_ws(gbuild *b) {
    int32_t ws = gb_rule(b, "ws");
    int32_t ind = gb_upto(b, gb_cls(b, &(gclass){{(1ull << ' ') | (1ull << '\t'), 0, 0, 0}}), 20);
    gb_alt_empty(b, ws);
    GB_ALT(b, ws, gb_byte(b, ' '));
    GB_ALT(b, ws, gb_byte(b, '\n'), gb_ref(ind));
    b->base[GB_WS] = ws;
}

int32_t gb_char_except(gbuild *b, const gclass *minus) {
    int32_t ch = gb_rule(b, minus ? NULL : "char");
    gclass plain = {{0}};
    cls_add(&plain, 0x20, 0x7f);
    plain.w['"' >> 6] &= ~(1ull << ('"' & 63));
    plain.w['\\' >> 6] &= ~(1ull << ('\\' & 63));
    if (minus)
        for (int i = 0; i < 4; i++)
            plain.w[i] &= ~minus->w[i];
    uint32_t cont = gb_range(b, 0x80, 0xbf);
    GB_ALT(b, ch, gb_cls(b, &plain));
    /* well-formed UTF-8 (Unicode table 3-7): no overlongs, no surrogates, <= U+10FFFF */
    GB_ALT(b, ch, gb_range(b, 0xc2, 0xdf), cont);
    GB_ALT(b, ch, gb_byte(b, 0xe0), gb_range(b, 0xa0, 0xbf), cont);
    gclass e3 = {{0}};
    cls_add(&e3, 0xe1, 0xec);
    cls_add(&e3, 0xee, 0xef);
    GB_ALT(b, ch, gb_cls(b, &e3), cont, cont);
    GB_ALT(b, ch, gb_byte(b, 0xed), gb_range(b, 0x80, 0x9f), cont);
    GB_ALT(b, ch, gb_byte(b, 0xf0), gb_range(b, 0x90, 0xbf), cont, cont);
    GB_ALT(b, ch, gb_range(b, 0xf1, 0xf3), cont, cont, cont);
    GB_ALT(b, ch, gb_byte(b, 0xf4), gb_range(b, 0x80, 0x8f), cont, cont);
    gclass esc = {{0}};
    for (const char *p = "\"\\/bfnrt"; *p; p++)
        cls_add(&esc, (unsigned char)*p, (unsigned char)*p);
    GB_ALT(b, ch, gb_byte(b, '\\'), gb_cls(b, &esc));
    /* \uXXXX: any code unit but a surrogate, or a high + low surrogate pair
     * (lone surrogates are valid JSON syntax but many parsers refuse them) */
    gclass hex = {{0}}, h1 = {{0}}, lo = {{0}}, hi = {{0}};
    cls_add(&hex, '0', '9');
    cls_add(&hex, 'a', 'f');
    cls_add(&hex, 'A', 'F');
    cls_add(&h1, '0', '9');
    cls_add(&h1, 'a', 'c');
    cls_add(&h1, 'A', 'C');
    cls_add(&h1, 'e', 'f');
    cls_add(&h1, 'E', 'F');
    cls_add(&lo, '0', '7');
    cls_add(&hi, '8', '9');
    cls_add(&hi, 'a', 'b');
    cls_add(&hi, 'A', 'B');
    gclass dd = {{0}}, lo2 = {{0}};
    cls_add(&dd, 'd', 'd');
    cls_add(&dd, 'D', 'D');
    cls_add(&lo2, 'c', 'f');
    cls_add(&lo2, 'C', 'F');
    uint32_t h = gb_cls(b, &hex), bs = gb_byte(b, '\\'), u = gb_byte(b, 'u'), d = gb_cls(b, &dd);
    GB_ALT(b, ch, bs, u, gb_cls(b, &h1), h, h, h);
    GB_ALT(b, ch, bs, u, d, gb_cls(b, &lo), h, h);
    GB_ALT(b, ch, bs, u, d, gb_cls(b, &hi), h, h, bs, u, d, gb_cls(b, &lo2), h, h);
    return b->st == QF_OK ? ch : -1;
}

static void make_number(gbuild *b) {
    uint32_t d = gb_range(b, '0', '9');
    int32_t d15 = gb_upto(b, d, 15), d2 = gb_upto(b, d, 2);
    int32_t in = gb_rule(b, "int");
    GB_ALT(b, in, gb_byte(b, '0'));
    GB_ALT(b, in, gb_range(b, '1', '9'), gb_ref(d15));
    int32_t frac = gb_rule(b, "frac");
    GB_ALT(b, frac, gb_byte(b, '.'), d, gb_ref(d15));
    gclass e = {{0}}, sg = {{0}};
    cls_add(&e, 'e', 'e');
    cls_add(&e, 'E', 'E');
    cls_add(&sg, '+', '+');
    cls_add(&sg, '-', '-');
    int32_t ex = gb_rule(b, "exp");
    GB_ALT(b, ex, gb_cls(b, &e), d, gb_ref(d2));
    GB_ALT(b, ex, gb_cls(b, &e), gb_cls(b, &sg), d, gb_ref(d2));
    int32_t exopt = gb_rule(b, NULL);
    gb_alt_empty(b, exopt);
    GB_ALT(b, exopt, gb_ref(ex));
    int32_t rest = gb_rule(b, NULL);
    gb_alt_empty(b, rest);
    GB_ALT(b, rest, gb_ref(frac), gb_ref(exopt));
    GB_ALT(b, rest, gb_ref(ex));
    int32_t num = gb_rule(b, "number");
    GB_ALT(b, num, gb_ref(in), gb_ref(rest));
    GB_ALT(b, num, gb_byte(b, '-'), gb_ref(in), gb_ref(rest));
    int32_t integer = gb_rule(b, "integer");
    GB_ALT(b, integer, gb_ref(in));
    GB_ALT(b, integer, gb_byte(b, '-'), gb_ref(in));
    b->base[GB_NUMBER] = num;
    b->base[GB_INTEGER] = integer;
}

int32_t gb_base(gbuild *b, gb_base_id id) {
    if (b->st != QF_OK) return -1;
    if (b->base[id] >= 0) return b->base[id];
    switch (id) {
    case GB_WS:
        make_ws(b);
        break;
    case GB_CHAR:
        b->base[id] = gb_char_except(b, NULL);
        break;
    case GB_CHARS: {
        int32_t ch = gb_base(b, GB_CHAR), r = gb_rule(b, "chars");
        gb_alt_empty(b, r);
        GB_ALT(b, r, gb_ref(ch), gb_ref(r));
        b->base[id] = r;
        break;
    }
    case GB_STRING: {
        int32_t chs = gb_base(b, GB_CHARS), r = gb_rule(b, "string");
        uint32_t q = gb_byte(b, '"');
        GB_ALT(b, r, q, gb_ref(chs), q);
        b->base[id] = r;
        break;
    }
    case GB_NUMBER:
    case GB_INTEGER:
        make_number(b);
        break;
    case GB_BOOLEAN: {
        int32_t r = gb_rule(b, "boolean");
        gseq s = {0};
        gs_bytes(b, &s, "true", 4);
        gs_add(b, r, &s);
        s.n = 0;
        gs_bytes(b, &s, "false", 5);
        gs_add(b, r, &s);
        gs_free(&s);
        b->base[id] = r;
        break;
    }
    case GB_NULL:
        b->base[id] = gb_lit(b, "null", 4);
        break;
    case GB_VALUE:
    case GB_OBJECT:
    case GB_ARRAY: {
        /* mutually recursive: make VALUE first, fill it last */
        int32_t v = gb_rule(b, "value");
        b->base[GB_VALUE] = v;
        int32_t str = gb_base(b, GB_STRING);
        int32_t obj = gb_object_of(b, str, v);
        int32_t arr = gb_array_of(b, v, 0, -1);
        b->base[GB_OBJECT] = obj;
        b->base[GB_ARRAY] = arr;
        GB_ALT(b, v, gb_ref(obj));
        GB_ALT(b, v, gb_ref(arr));
        GB_ALT(b, v, gb_ref(str));
        GB_ALT(b, v, gb_ref(gb_base(b, GB_NUMBER)));
        GB_ALT(b, v, gb_ref(gb_base(b, GB_BOOLEAN)));
        GB_ALT(b, v, gb_ref(gb_base(b, GB_NULL)));
        break;
    }
    default:
        return gb_fail(b, QF_ERR_INTERNAL, "grammar: bad base rule %d", (int)id);
    }
    if (b->st != QF_OK) return -1;
    return b->base[id];
}

int32_t gb_object_of(gbuild *b, int32_t key, int32_t val) {
    int32_t ws = gb_base(b, GB_WS);
    int32_t m = gb_rule(b, NULL), rest = gb_rule(b, NULL), body = gb_rule(b, NULL);
    int32_t obj = gb_rule(b, "object");
    GB_ALT(b, m, gb_ref(key), gb_ref(ws), gb_byte(b, ':'), gb_ref(ws), gb_ref(val), gb_ref(ws));
    GB_ALT(b, rest, gb_byte(b, '}'));
    GB_ALT(b, rest, gb_byte(b, ','), gb_ref(ws), gb_ref(m), gb_ref(rest));
    GB_ALT(b, body, gb_byte(b, '}'));
    GB_ALT(b, body, gb_ref(m), gb_ref(rest));
    GB_ALT(b, obj, gb_byte(b, '{'), gb_ref(ws), gb_ref(body));
    return b->st == QF_OK ? obj : -1;
}

int32_t gb_array_of(gbuild *b, int32_t item, int32_t min, int32_t max) {
    int32_t ws = gb_base(b, GB_WS);
    uint32_t close = gb_byte(b, ']'), comma = gb_byte(b, ',');
    int32_t arr = gb_rule(b, "array"), body = gb_rule(b, NULL);
    GB_ALT(b, arr, gb_byte(b, '['), gb_ref(ws), gb_ref(body));
    if (min == 0) GB_ALT(b, body, close);
    if (max == 0) return b->st == QF_OK ? arr : -1;
    /* after_k: k items so far (k >= 1) */
    int32_t cur = gb_rule(b, NULL);
    GB_ALT(b, body, gb_ref(item), gb_ref(ws), gb_ref(cur));
    for (int32_t k = 1; b->st == QF_OK; k++) {
        if (k >= min) GB_ALT(b, cur, close);
        if (max < 0 && k >= min) { /* unbounded from here: loop */
            GB_ALT(b, cur, comma, gb_ref(ws), gb_ref(item), gb_ref(ws), gb_ref(cur));
            break;
        }
        if (max >= 0 && k >= max) break;
        int32_t next = gb_rule(b, NULL);
        GB_ALT(b, cur, comma, gb_ref(ws), gb_ref(item), gb_ref(ws), gb_ref(next));
        cur = next;
    }
    return b->st == QF_OK ? arr : -1;
}

int32_t gb_string_len(gbuild *b, int32_t min, int32_t max) {
    if (min == 0 && max < 0) return gb_base(b, GB_STRING);
    int32_t ch = gb_base(b, GB_CHAR), chs = gb_base(b, GB_CHARS);
    uint32_t q = gb_byte(b, '"');
    int32_t s = gb_rule(b, "string"), cur = gb_rule(b, NULL);
    GB_ALT(b, s, q, gb_ref(cur));
    /* cur = "k characters so far", the closing quote included */
    for (int32_t k = 0; b->st == QF_OK; k++) {
        if (k >= min && max < 0) {
            GB_ALT(b, cur, gb_ref(chs), q);
            break;
        }
        if (k >= min) GB_ALT(b, cur, q);
        if (k == max) break;
        int32_t next = gb_rule(b, NULL);
        GB_ALT(b, cur, gb_ref(ch), gb_ref(next));
        cur = next;
    }
    return b->st == QF_OK ? s : -1;
}

/* ---- analyses + flatten ---- */

/* Rules reached by a fixpoint "an alternative whose blocking count drops to 0
 * marks its rule" over alternatives alive[] (NULL: all). need[] is consumed.
 * occ/occ_off: CSR lists of the alternatives that reference each rule. */
static void fixpoint(const gbuild *b, int32_t *need, const int32_t *occ, const int32_t *occ_off,
                     const bool *alive, bool *mark, int32_t *queue) {
    int32_t qh = 0, qt = 0;
    for (size_t a = 0; a < b->n_alts; a++) {
        if ((alive && !alive[a]) || need[a] != 0) continue;
        int32_t r = b->alts[a].rule;
        if (!mark[r]) mark[r] = true, queue[qt++] = r;
    }
    while (qh < qt) {
        int32_t r = queue[qh++];
        for (int32_t i = occ_off[r]; i < occ_off[r + 1]; i++) {
            int32_t a = occ[i];
            if ((alive && !alive[a]) || --need[a] != 0) continue;
            int32_t q = b->alts[a].rule;
            if (!mark[q]) mark[q] = true, queue[qt++] = q;
        }
    }
}

static const char *rule_name(const gbuild *b, int32_t r) {
    return b->rname[r] ? b->rname[r] : "(anonymous rule)";
}

qf_grammar *gb_finish(gbuild *b, int32_t root) {
    if (b->st != QF_OK) return NULL;
    int32_t ws = gb_base(b, GB_WS);
    int32_t start = gb_rule(b, NULL);
    GB_ALT(b, start, gb_ref(ws), gb_ref(root));
    if (b->st != QF_OK) return NULL;

    qf_grammar *g = NULL;
    const int32_t nr = b->n_rule;
    const size_t na = b->n_alts;
    int32_t *need = qf_calloc(na + 1, sizeof(int32_t));
    int32_t *occ_off = qf_calloc((size_t)nr + 1, sizeof(int32_t));
    int32_t *occ = qf_calloc(b->n_pool + 1, sizeof(int32_t));
    int32_t *queue = qf_calloc((size_t)nr + 1, sizeof(int32_t));
    bool *prod = qf_calloc((size_t)nr + 1, sizeof(bool));
    bool *nullable = qf_calloc((size_t)nr + 1, sizeof(bool));
    bool *alive = qf_calloc(na + 1, sizeof(bool));
    int32_t *ralt_off = qf_calloc((size_t)nr + 2, sizeof(int32_t));
    int32_t *ralt = qf_calloc(na + 1, sizeof(int32_t));
    int32_t *indeg = qf_calloc((size_t)nr + 1, sizeof(int32_t));
    if (!need || !occ_off || !occ || !queue || !prod || !nullable || !alive || !ralt_off || !ralt ||
        !indeg) {
        gb_fail(b, QF_ERR_NOMEM, "grammar: out of memory");
        goto fail;
    }

    /* alternatives grouped by rule (stable) */
    for (size_t a = 0; a < na; a++)
        ralt_off[b->alts[a].rule + 1]++;
    for (int32_t r = 0; r < nr; r++)
        ralt_off[r + 1] += ralt_off[r];
    for (size_t a = 0; a < na; a++)
        ralt[ralt_off[b->alts[a].rule]++] = (int32_t)a;
    for (int32_t r = nr; r > 0; r--)
        ralt_off[r] = ralt_off[r - 1];
    ralt_off[0] = 0;

    /* 1. productive: an alternative waits for each rule it references */
    for (size_t a = 0; a < na; a++) {
        const uint32_t *e = b->pool + b->alts[a].off;
        for (int32_t i = 0; i < b->alts[a].len; i++)
            if (GE_KIND(e[i]) == GE_REF) need[a]++, occ_off[GE_ARG(e[i]) + 1]++;
    }
    for (int32_t r = 0; r < nr; r++)
        occ_off[r + 1] += occ_off[r];
    for (size_t a = 0; a < na; a++) {
        const uint32_t *e = b->pool + b->alts[a].off;
        for (int32_t i = 0; i < b->alts[a].len; i++)
            if (GE_KIND(e[i]) == GE_REF) occ[occ_off[GE_ARG(e[i])]++] = (int32_t)a;
    }
    for (int32_t r = nr; r > 0; r--)
        occ_off[r] = occ_off[r - 1];
    occ_off[0] = 0;
    fixpoint(b, need, occ, occ_off, NULL, prod, queue);
    if (!prod[root]) {
        gb_fail(b, QF_ERR_INVALID,
                "json schema: no finite JSON value satisfies it (%s recurses forever)",
                rule_name(b, root));
        goto fail;
    }
    for (size_t a = 0; a < na; a++)
        alive[a] = need[a] == 0;

    /* 2. nullable: an alternative with a byte class never is */
    for (size_t a = 0; a < na; a++) {
        const uint32_t *e = b->pool + b->alts[a].off;
        need[a] = 0;
        for (int32_t i = 0; i < b->alts[a].len; i++) {
            if (GE_KIND(e[i]) != GE_REF) { /* never reaches 0 */
                need[a] = INT32_MAX;
                break;
            }
            need[a]++;
        }
    }
    fixpoint(b, need, occ, occ_off, alive, nullable, queue);

    /* 3. left recursion: Kahn over the can-start-with graph (edges counted
     * into indeg first, then peeled; each edge is re-derived when peeling) */
    for (size_t a = 0; a < na; a++) {
        if (!alive[a]) continue;
        const uint32_t *e = b->pool + b->alts[a].off;
        for (int32_t i = 0; i < b->alts[a].len && GE_KIND(e[i]) == GE_REF; i++) {
            indeg[GE_ARG(e[i])]++;
            if (!nullable[GE_ARG(e[i])]) break;
        }
    }
    int32_t qh = 0, qt = 0;
    for (int32_t r = 0; r < nr; r++)
        if (indeg[r] == 0) queue[qt++] = r;
    while (qh < qt) {
        int32_t r = queue[qh++];
        for (int32_t k = ralt_off[r]; k < ralt_off[r + 1]; k++) {
            int32_t a = ralt[k];
            if (!alive[a]) continue;
            const uint32_t *e = b->pool + b->alts[a].off;
            for (int32_t i = 0; i < b->alts[a].len && GE_KIND(e[i]) == GE_REF; i++) {
                if (--indeg[GE_ARG(e[i])] == 0) queue[qt++] = GE_ARG(e[i]);
                if (!nullable[GE_ARG(e[i])]) break;
            }
        }
    }
    if (qt < nr) {
        int32_t bad = -1;
        for (int32_t r = 0; r < nr; r++)
            if (indeg[r] > 0 && (bad < 0 || (b->rname[r] && !b->rname[bad]))) bad = r;
        gb_fail(b, QF_ERR_UNSUPPORTED,
                "json schema: %s refers to itself before consuming any input ($ref cycle)",
                rule_name(b, bad));
        goto fail;
    }

    /* 4. flatten */
    size_t n_el = 0, n_alt = 0;
    for (size_t a = 0; a < na; a++)
        if (alive[a]) n_el += (size_t)b->alts[a].len + 1, n_alt++;
    if (n_el > QF_GRAMMAR_MAX_ELEMENTS) {
        gb_fail(b, QF_ERR_RANGE, "grammar: %zu elements, more than %d (schema too large)", n_el,
                QF_GRAMMAR_MAX_ELEMENTS);
        goto fail;
    }
    g = qf_calloc(1, sizeof(*g));
    if (!g) goto nomem;
    atomic_init(&g->refs, 1);
    g->el = qf_malloc((n_el + 1) * sizeof(uint32_t));
    g->alt = qf_malloc((n_alt + 1) * sizeof(int32_t));
    g->rule_alt = qf_malloc(((size_t)nr + 1) * sizeof(int32_t));
    g->cls = qf_malloc(((size_t)b->n_cls + 1) * sizeof(gclass));
    if (!g->el || !g->alt || !g->rule_alt || !g->cls) goto nomem;
    g->n_rule = nr;
    g->n_cls = b->n_cls;
    if (b->n_cls) memcpy(g->cls, b->cls, (size_t)b->n_cls * sizeof(gclass));
    int32_t pe = 0, pa = 0;
    for (int32_t r = 0; r < nr; r++) {
        g->rule_alt[r] = pa;
        for (int32_t k = ralt_off[r]; k < ralt_off[r + 1]; k++) {
            int32_t a = ralt[k];
            if (!alive[a]) continue;
            if (r == start) g->start = pe;
            g->alt[pa++] = pe;
            memcpy(g->el + pe, b->pool + b->alts[a].off, (size_t)b->alts[a].len * sizeof(uint32_t));
            pe += b->alts[a].len;
            g->el[pe++] = GE_MAKE(GE_END, 0);
        }
    }
    g->rule_alt[nr] = pa;
    g->n_el = pe;
    goto done;

nomem:
    gb_fail(b, QF_ERR_NOMEM, "grammar: out of memory");
fail:
    qf_grammar_free(g);
    g = NULL;
done:
    qf_free(need);
    qf_free(occ_off);
    qf_free(occ);
    qf_free(queue);
    qf_free(prod);
    qf_free(nullable);
    qf_free(alive);
    qf_free(ralt_off);
    qf_free(ralt);
    qf_free(indeg);
    return g;
}

/* ---- public ---- */

qf_grammar *qf_grammar_json(qf_err *err) {
    gbuild b;
    gb_init(&b, err);
    qf_grammar *g = gb_finish(&b, gb_base(&b, GB_OBJECT));
    gb_deinit(&b);
    return g;
}

void qf_grammar_free(qf_grammar *g) {
    if (!g) return;
    if (atomic_fetch_sub(&g->refs, 1) != 1) return;
    qf_free(g->el);
    qf_free(g->alt);
    qf_free(g->rule_alt);
    qf_free(g->cls);
    qf_free(g);
}

int32_t qf_grammar_n_rules(const qf_grammar *g) {
    return g ? g->n_rule : 0;
}
int32_t qf_grammar_n_elements(const qf_grammar *g) {
    return g ? g->n_el : 0;
}
