/* gmatch.c - token trie (qf_gvocab) and the matcher (qf_gmatch).
 *
 * Parse state. A stack is (t, r): t the position of the byte class the next
 * byte must match, r the rest of the stack, an interned list node (pos,
 * parent) of return positions (-1: empty). A configuration ("config") is the
 * sorted, duplicate-free set of stacks the bytes so far can be in, plus an
 * "accepting" bit (the start rule is complete). Configs are interned too, so
 * a config is an int and equal states are equal ints.
 *
 * Step. From config c on byte b: every stack whose class holds b moves past
 * it; the closure then expands what follows: a class becomes a stack top, a
 * rule reference pushes its continuation (nothing when the reference is the
 * last element: tail calls keep repetition stacks flat) and fans out to the
 * rule's alternatives, an END pops. No stacks and not accepting = dead.
 *
 * Memo. Each config owns, once needed, a row of 256 transitions (unknown /
 * dead / next config), filled lazily. In the body of a string the config
 * after any plain character is the config before it, so a mask there costs
 * one row look-up per trie node. The memo only grows; past the CF_MAX etc.
 * limits it is dropped at the next mask/accept and only the current config is
 * re-interned (compact()).
 *
 * Mask. The trie is stored in preorder with each node's depth and the index
 * just past its subtree, so the walk is a loop: node i's parent config is
 * walk[depth-1]; a dead transition jumps to the end of i's subtree. A token
 * is allowed iff the walk reaches its node (its bytes leave a live config).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "sample/grammar_int.h"

#define T_UNKNOWN (-2)
#define T_DEAD    (-1)

enum { LOOP_UNKNOWN = 0, LOOP_YES = 1, LOOP_NO = 2 };

#define CF_MAX      2048      /* configs kept before compacting (rows: 1 KiB each) */
#define ND_MAX      (1 << 18) /* stack nodes */
#define STK_MAX     (1 << 19)
#define CLOSURE_MAX (1 << 22) /* work items in one step: beyond, QF_ERR_RANGE */
#define MAX_PIECE   65535

enum { K_NEVER = 0, K_TEXT = 1, K_EOG = 2 };

struct qf_gvocab {
    atomic_int refs;
    int32_t n_vocab;
    int32_t n_nodes;   /* root (node 0) included */
    int32_t max_depth; /* longest piece */
    uint8_t *nbyte;    /* (n_nodes) byte on the edge into the node */
    uint16_t *ndepth;  /* (n_nodes) */
    int32_t *nend;     /* (n_nodes) first node after the subtree */
    int32_t *ntok;     /* (n_nodes + 1) node i's tokens: toks[ntok[i] .. ntok[i+1]) */
    uint8_t *nplain;   /* (n_nodes) every byte in the subtree is a plain string char */
    int32_t *toks;
    uint8_t *kind;  /* (n_vocab) K_* */
    uint32_t *poff; /* (n_vocab + 1) token i's piece: pbuf[poff[i] .. poff[i+1]) */
    char *pbuf;
    int32_t *eog; /* (n_eog) */
    int32_t n_eog;
};

typedef struct gstk {
    int32_t t, r;
} gstk;

struct qf_gmatch {
    qf_grammar *g;
    qf_gvocab *v;
    /* interned return-stack nodes */
    int32_t *nd_pos, *nd_par;
    int32_t n_nd, cap_nd;
    int32_t *nd_ht; /* open addressing, node id + 1, 0 = empty */
    int32_t nd_hcap;
    /* interned configs: stacks stk[cf_off .. cf_off + cf_len) */
    int32_t *cf_off, *cf_len, *cf_tr; /* cf_tr: row offset in tr, -1 none */
    uint8_t *cf_acc;
    uint8_t *cf_loop; /* LOOP_*: does every plain byte lead back to the config */
    int32_t n_cf, cap_cf;
    int32_t *cf_ht;
    int32_t cf_hcap;
    gstk *stk;
    int32_t n_stk, cap_stk;
    int32_t *tr; /* transition rows, 256 each */
    int32_t n_tr, cap_tr;
    int32_t cur;
    bool ended; /* an EOG token was accepted */
    /* scratch */
    gstk *tmp;
    int32_t n_tmp, cap_tmp;
    gstk *work;
    int32_t n_work, cap_work;
    int32_t *walk;  /* (v->max_depth + 1) config per trie depth */
    uint64_t *bits; /* (v->n_vocab / 64 + 1) allowed tokens */
};

/* ---- small helpers ---- */

static bool vgrow(void **p, int32_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return true;
    if (need > INT32_MAX / 2) return false;
    int64_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *q = qf_realloc(*p, (size_t)nc * elem);
    if (!q) return false;
    *p = q;
    *cap = (int32_t)nc;
    return true;
}

static inline uint32_t mix(uint32_t a, uint32_t b) {
    uint64_t x = ((uint64_t)a << 32) | b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

/* ---- token trie ---- */

/* A byte that stands for itself inside a JSON string. */
static inline bool plain_byte(unsigned b) {
    return b >= 0x20 && b < 0x80 && b != '"' && b != '\\';
}

typedef struct piece_ref {
    const char *p;
    uint32_t len;
    int32_t id;
} piece_ref;

static int cmp_piece(const void *a, const void *b) {
    const piece_ref *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

qf_gvocab *qf_gvocab_new(const qf_tok *tok, qf_err *err) {
    if (!tok) {
        QF_ERR_SET(err, QF_ERR_INVALID, "gvocab: NULL tokenizer");
        return NULL;
    }
    int32_t n = qf_tok_n_vocab(tok);
    piece_ref *ref = NULL;
    int32_t *path = NULL;
    qf_gvocab *v = qf_calloc(1, sizeof(*v));
    if (!v) goto nomem;
    atomic_init(&v->refs, 1);
    v->n_vocab = n;
    v->kind = qf_calloc((size_t)n + 1, 1);
    v->poff = qf_calloc((size_t)n + 1, sizeof(uint32_t));
    if (!v->kind || !v->poff) goto nomem;
    char small[256];
    size_t total = 0;
    int32_t n_text = 0;
    for (int32_t id = 0; id < n; id++) {
        if (qf_tok_is_eog(tok, id)) {
            v->kind[id] = K_EOG;
            v->n_eog++;
            continue;
        }
        qf_token_type ty = qf_tok_type(tok, id);
        if (ty != QF_TOKEN_NORMAL && ty != QF_TOKEN_USER_DEFINED && ty != QF_TOKEN_BYTE) continue;
        size_t len = qf_tok_piece(tok, id, false, small, sizeof small);
        if (len == 0 || len > MAX_PIECE || total + len > UINT32_MAX) continue;
        v->kind[id] = K_TEXT;
        total += len;
        n_text++;
    }
    v->pbuf = qf_malloc(total + 1);
    v->eog = qf_malloc(((size_t)v->n_eog + 1) * sizeof(int32_t));
    ref = qf_malloc(((size_t)n_text + 1) * sizeof(*ref));
    if (!v->pbuf || !v->eog || !ref) goto nomem;
    size_t at = 0;
    int32_t k = 0, ke = 0, maxlen = 0;
    for (int32_t id = 0; id < n; id++) {
        v->poff[id] = (uint32_t)at;
        if (v->kind[id] == K_EOG) v->eog[ke++] = id;
        if (v->kind[id] != K_TEXT) continue;
        size_t len = qf_tok_piece(tok, id, false, v->pbuf + at, total - at);
        ref[k++] = (piece_ref){v->pbuf + at, (uint32_t)len, id};
        if ((int32_t)len > maxlen) maxlen = (int32_t)len;
        at += len;
    }
    v->poff[n] = (uint32_t)at;
    v->max_depth = maxlen;
    qsort(ref, (size_t)n_text, sizeof(*ref), cmp_piece);

    /* preorder trie: each sorted piece adds nodes for the bytes past its
     * common prefix with the previous piece */
    size_t cap = total + 1;
    v->nbyte = qf_malloc(cap);
    v->ndepth = qf_malloc(cap * sizeof(uint16_t));
    v->nend = qf_malloc(cap * sizeof(int32_t));
    v->ntok = qf_calloc(cap + 1, sizeof(int32_t));
    v->toks = qf_malloc(((size_t)n_text + 1) * sizeof(int32_t));
    path = qf_malloc(((size_t)maxlen + 1) * sizeof(int32_t));
    if (!v->nbyte || !v->ndepth || !v->nend || !v->ntok || !v->toks || !path) goto nomem;
    int32_t nn = 1, open = 0; /* nodes path[0..open] are open (subtree not ended) */
    v->nbyte[0] = 0;
    v->ndepth[0] = 0;
    path[0] = 0;
    for (int32_t i = 0; i < n_text; i++) {
        const piece_ref *pr = &ref[i];
        int32_t lcp = 0;
        if (i > 0) {
            const piece_ref *pv = &ref[i - 1];
            uint32_t m = pv->len < pr->len ? pv->len : pr->len;
            while ((uint32_t)lcp < m && pv->p[lcp] == pr->p[lcp])
                lcp++;
        }
        if (lcp > open) lcp = open;
        for (int32_t d = open; d > lcp; d--)
            v->nend[path[d]] = nn; /* close diverging nodes */
        open = lcp;
        for (int32_t d = lcp + 1; d <= (int32_t)pr->len; d++) {
            v->nbyte[nn] = (uint8_t)pr->p[d - 1];
            v->ndepth[nn] = (uint16_t)d;
            path[d] = nn++;
            open = d;
        }
        v->ntok[path[pr->len] + 1]++;
        v->toks[i] = pr->id;
    }
    for (int32_t d = open; d >= 0; d--)
        v->nend[path[d]] = nn;
    v->n_nodes = nn;
    for (int32_t i = 0; i < nn; i++)
        v->ntok[i + 1] += v->ntok[i];
    /* nplain via a running count of non-plain nodes (path is reused: it has
     * maxlen + 1 >= 1 entries, but the count needs nn + 1, so allocate) */
    v->nplain = qf_malloc((size_t)nn);
    int32_t *bad = qf_malloc(((size_t)nn + 1) * sizeof(int32_t));
    if (!v->nplain || !bad) {
        qf_free(bad);
        goto nomem;
    }
    bad[0] = 0;
    for (int32_t i = 0; i < nn; i++)
        bad[i + 1] = bad[i] + (i > 0 && !plain_byte(v->nbyte[i]));
    for (int32_t i = 0; i < nn; i++)
        v->nplain[i] = bad[v->nend[i]] == bad[i];
    qf_free(bad);
    qf_free(ref);
    qf_free(path);
    return v;
nomem:
    QF_ERR_SET(err, QF_ERR_NOMEM, "gvocab: out of memory (%d tokens)", n);
    qf_free(ref);
    qf_free(path);
    qf_gvocab_free(v);
    return NULL;
}

void qf_gvocab_free(qf_gvocab *v) {
    if (!v || atomic_fetch_sub(&v->refs, 1) != 1) return;
    qf_free(v->nbyte);
    qf_free(v->ndepth);
    qf_free(v->nend);
    qf_free(v->ntok);
    qf_free(v->nplain);
    qf_free(v->toks);
    qf_free(v->kind);
    qf_free(v->poff);
    qf_free(v->pbuf);
    qf_free(v->eog);
    qf_free(v);
}

int32_t qf_gvocab_n_vocab(const qf_gvocab *v) {
    return v ? v->n_vocab : 0;
}
int32_t qf_gvocab_n_nodes(const qf_gvocab *v) {
    return v ? v->n_nodes : 0;
}

/* ---- interning ---- */

static bool rehash(int32_t **ht, int32_t *hcap, int32_t n,
                   uint32_t (*hash)(const qf_gmatch *, int32_t), const qf_gmatch *m) {
    int32_t cap = *hcap ? *hcap * 2 : 256;
    while (cap < 2 * (n + 1))
        cap *= 2;
    int32_t *t = qf_calloc((size_t)cap, sizeof(int32_t));
    if (!t) return false;
    for (int32_t id = 0; id < n; id++) {
        uint32_t s = hash(m, id) & (uint32_t)(cap - 1);
        while (t[s])
            s = (s + 1) & (uint32_t)(cap - 1);
        t[s] = id + 1;
    }
    qf_free(*ht);
    *ht = t;
    *hcap = cap;
    return true;
}

static uint32_t nd_hash(const qf_gmatch *m, int32_t id) {
    return mix((uint32_t)m->nd_pos[id], (uint32_t)m->nd_par[id]);
}

/* Node (pos, par); -1 on allocation failure. */
static int32_t intern_node(qf_gmatch *m, int32_t pos, int32_t par) {
    if (2 * (m->n_nd + 1) > m->nd_hcap && !rehash(&m->nd_ht, &m->nd_hcap, m->n_nd, nd_hash, m))
        return -1;
    uint32_t mask = (uint32_t)m->nd_hcap - 1, s = mix((uint32_t)pos, (uint32_t)par) & mask;
    for (; m->nd_ht[s]; s = (s + 1) & mask) {
        int32_t id = m->nd_ht[s] - 1;
        if (m->nd_pos[id] == pos && m->nd_par[id] == par) return id;
    }
    int32_t c1 = m->cap_nd, c2 = m->cap_nd;
    if (!vgrow((void **)&m->nd_pos, &c1, m->n_nd + 1, sizeof(int32_t)) ||
        !vgrow((void **)&m->nd_par, &c2, m->n_nd + 1, sizeof(int32_t)))
        return -1;
    m->cap_nd = c1 < c2 ? c1 : c2;
    int32_t id = m->n_nd++;
    m->nd_pos[id] = pos;
    m->nd_par[id] = par;
    m->nd_ht[s] = id + 1;
    return id;
}

static uint32_t stk_hash(const gstk *s, int32_t n, bool acc) {
    uint32_t h = acc ? 0x9e3779b9u : 0x85ebca6bu;
    for (int32_t i = 0; i < n; i++)
        h = mix(h ^ (uint32_t)s[i].t, (uint32_t)s[i].r);
    return h;
}

static uint32_t cf_hash(const qf_gmatch *m, int32_t id) {
    return stk_hash(m->stk + m->cf_off[id], m->cf_len[id], m->cf_acc[id]);
}

static int cmp_stk(const void *a, const void *b) {
    const gstk *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->r < y->r ? -1 : x->r > y->r;
}

/* Sort + dedup m->tmp. */
static void tmp_canon(qf_gmatch *m) {
    gstk *s = m->tmp;
    int32_t n = m->n_tmp;
    if (n < 2) return;
    if (n <= 16) {
        for (int32_t i = 1; i < n; i++) {
            gstk x = s[i];
            int32_t j = i;
            while (j > 0 && cmp_stk(&s[j - 1], &x) > 0)
                s[j] = s[j - 1], j--;
            s[j] = x;
        }
    } else {
        qsort(s, (size_t)n, sizeof(*s), cmp_stk);
    }
    int32_t k = 1;
    for (int32_t i = 1; i < n; i++)
        if (s[i].t != s[k - 1].t || s[i].r != s[k - 1].r) s[k++] = s[i];
    m->n_tmp = k;
}

/* Config of the stacks in m->tmp (canonical) + acc; -1 on allocation failure. */
static int32_t intern_cfg(qf_gmatch *m, bool acc) {
    if (2 * (m->n_cf + 1) > m->cf_hcap && !rehash(&m->cf_ht, &m->cf_hcap, m->n_cf, cf_hash, m))
        return -1;
    int32_t n = m->n_tmp;
    uint32_t mask = (uint32_t)m->cf_hcap - 1, s = stk_hash(m->tmp, n, acc) & mask;
    for (; m->cf_ht[s]; s = (s + 1) & mask) {
        int32_t id = m->cf_ht[s] - 1;
        if (m->cf_len[id] == n && m->cf_acc[id] == acc &&
            (n == 0 || memcmp(m->stk + m->cf_off[id], m->tmp, (size_t)n * sizeof(gstk)) == 0))
            return id;
    }
    if (!vgrow((void **)&m->stk, &m->cap_stk, (int64_t)m->n_stk + n, sizeof(gstk))) return -1;
    int32_t c[5] = {m->cap_cf, m->cap_cf, m->cap_cf, m->cap_cf, m->cap_cf};
    if (!vgrow((void **)&m->cf_off, &c[0], m->n_cf + 1, sizeof(int32_t)) ||
        !vgrow((void **)&m->cf_len, &c[1], m->n_cf + 1, sizeof(int32_t)) ||
        !vgrow((void **)&m->cf_tr, &c[2], m->n_cf + 1, sizeof(int32_t)) ||
        !vgrow((void **)&m->cf_acc, &c[3], m->n_cf + 1, sizeof(uint8_t)) ||
        !vgrow((void **)&m->cf_loop, &c[4], m->n_cf + 1, sizeof(uint8_t)))
        return -1;
    m->cap_cf = c[0];
    for (int i = 1; i < 5; i++)
        if (c[i] < m->cap_cf) m->cap_cf = c[i];
    int32_t id = m->n_cf++;
    if (n) memcpy(m->stk + m->n_stk, m->tmp, (size_t)n * sizeof(gstk));
    m->cf_off[id] = m->n_stk;
    m->cf_len[id] = n;
    m->cf_tr[id] = -1;
    m->cf_acc[id] = acc;
    m->cf_loop[id] = LOOP_UNKNOWN;
    m->n_stk += n;
    m->cf_ht[s] = id + 1;
    return id;
}

/* ---- closure + step ---- */

static bool push(gstk **a, int32_t *n, int32_t *cap, int32_t t, int32_t r) {
    if (*n == *cap && !vgrow((void **)a, cap, (int64_t)*n + 1, sizeof(gstk))) return false;
    (*a)[(*n)++] = (gstk){t, r};
    return true;
}

/* Expand position p over return stack r into m->tmp; *acc set when the start
 * rule can end here. */
static qf_status closure(qf_gmatch *m, int32_t p, int32_t r, bool *acc) {
    const qf_grammar *g = m->g;
    int64_t steps = 0;
    m->n_work = 0;
    if (!push(&m->work, &m->n_work, &m->cap_work, p, r)) return QF_ERR_NOMEM;
    while (m->n_work > 0) {
        gstk w = m->work[--m->n_work];
        p = w.t;
        r = w.r;
        for (;;) {
            if (++steps > CLOSURE_MAX) return QF_ERR_RANGE;
            uint32_t e = g->el[p];
            if (GE_KIND(e) == GE_CLS) {
                if (!push(&m->tmp, &m->n_tmp, &m->cap_tmp, p, r)) return QF_ERR_NOMEM;
                break;
            }
            if (GE_KIND(e) == GE_END) {
                if (r < 0) {
                    *acc = true;
                    break;
                }
                p = m->nd_pos[r];
                r = m->nd_par[r];
                continue;
            }
            int32_t q = GE_ARG(e), a0 = g->rule_alt[q], a1 = g->rule_alt[q + 1];
            if (a0 == a1) break;
            int32_t r2 = r;
            if (GE_KIND(g->el[p + 1]) != GE_END && (r2 = intern_node(m, p + 1, r)) < 0)
                return QF_ERR_NOMEM;
            for (int32_t a = a0 + 1; a < a1; a++)
                if (!push(&m->work, &m->n_work, &m->cap_work, g->alt[a], r2)) return QF_ERR_NOMEM;
            p = g->alt[a0];
            r = r2;
        }
    }
    return QF_OK;
}

/* Config after byte b from config c (T_DEAD when none); *st on failure. */
static int32_t step(qf_gmatch *m, int32_t c, unsigned b, qf_status *st) {
    const qf_grammar *g = m->g;
    bool acc = false;
    m->n_tmp = 0;
    int32_t off = m->cf_off[c], n = m->cf_len[c];
    for (int32_t i = 0; i < n; i++) {
        gstk s = m->stk[off + i];
        if (!gclass_has(&g->cls[GE_ARG(g->el[s.t])], b)) continue;
        if ((*st = closure(m, s.t + 1, s.r, &acc)) != QF_OK) return T_DEAD;
    }
    if (m->n_tmp == 0 && !acc) return T_DEAD;
    tmp_canon(m);
    int32_t id = intern_cfg(m, acc);
    if (id < 0) *st = QF_ERR_NOMEM;
    return id < 0 ? T_DEAD : id;
}

/* Offset of c's transition row, created on demand; -1 on failure. */
static int32_t row(qf_gmatch *m, int32_t c) {
    if (m->cf_tr[c] >= 0) return m->cf_tr[c];
    if (!vgrow((void **)&m->tr, &m->cap_tr, (int64_t)m->n_tr + 256, sizeof(int32_t))) return -1;
    int32_t o = m->n_tr;
    for (int i = 0; i < 256; i++)
        m->tr[o + i] = T_UNKNOWN;
    m->n_tr += 256;
    m->cf_tr[c] = o;
    return o;
}

/* Memoized step. */
static int32_t next(qf_gmatch *m, int32_t c, unsigned b, qf_status *st) {
    int32_t o = row(m, c);
    if (o < 0) {
        *st = QF_ERR_NOMEM;
        return T_DEAD;
    }
    int32_t nc = m->tr[o + b];
    if (nc != T_UNKNOWN) return nc;
    nc = step(m, c, b, st);
    if (*st == QF_OK) m->tr[o + b] = nc;
    return nc;
}

/* Drop the memo when it has grown past the limits; keep the current config.
 * Allocation failure just skips it (the tables keep working). */
static void compact(qf_gmatch *m) {
    if (m->n_cf < CF_MAX && m->n_nd < ND_MAX && m->n_stk < STK_MAX) return;
    int32_t n = m->cf_len[m->cur], total = 0;
    const gstk *s = m->stk + m->cf_off[m->cur];
    for (int32_t i = 0; i < n; i++)
        for (int32_t r = s[i].r; r >= 0; r = m->nd_par[r])
            total++;
    int32_t *chain = qf_malloc(((size_t)total + 1) * sizeof(int32_t));
    gstk *top = qf_malloc(((size_t)n + 1) * sizeof(gstk));
    int32_t *len = qf_malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!chain || !top || !len ||
        !vgrow((void **)&m->tmp, &m->cap_tmp, (int64_t)n + 1, sizeof(gstk)))
        goto out;
    bool acc = m->cf_acc[m->cur];
    int32_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        top[i] = s[i];
        len[i] = 0;
        for (int32_t r = s[i].r; r >= 0; r = m->nd_par[r])
            chain[at + len[i]++] = m->nd_pos[r];
        at += len[i];
    }
    m->n_nd = m->n_cf = m->n_stk = m->n_tr = 0;
    memset(m->nd_ht, 0, (size_t)m->nd_hcap * sizeof(int32_t));
    memset(m->cf_ht, 0, (size_t)m->cf_hcap * sizeof(int32_t));
    /* capacities are far above what one config needs: nothing below allocates */
    m->n_tmp = 0;
    at = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t r = -1;
        for (int32_t k = len[i] - 1; k >= 0; k--)
            r = intern_node(m, chain[at + k], r);
        at += len[i];
        m->tmp[m->n_tmp++] = (gstk){top[i].t, r};
    }
    tmp_canon(m);
    m->cur = intern_cfg(m, acc);
out:
    qf_free(chain);
    qf_free(top);
    qf_free(len);
}

/* ---- matcher API ---- */

qf_gmatch *qf_gmatch_new_vocab(const qf_grammar *g, qf_gvocab *v, qf_err *err) {
    if (!g || !v) {
        QF_ERR_SET(err, QF_ERR_INVALID, "gmatch: NULL %s", g ? "vocab" : "grammar");
        return NULL;
    }
    qf_gmatch *m = qf_calloc(1, sizeof(*m));
    if (!m) goto nomem;
    m->g = (qf_grammar *)g; /* the reference count is the only thing touched */
    atomic_fetch_add(&m->g->refs, 1);
    m->v = v;
    atomic_fetch_add(&v->refs, 1);
    m->walk = qf_malloc(((size_t)v->max_depth + 1) * sizeof(int32_t));
    m->bits = qf_calloc((size_t)v->n_vocab / 64 + 1, sizeof(uint64_t));
    if (!m->walk || !m->bits) goto nomem;
    bool acc = false;
    qf_status st = closure(m, g->start, -1, &acc);
    if (st != QF_OK) {
        QF_ERR_SET(err, st, "gmatch: %s at the start state", qf_status_name(st));
        qf_gmatch_free(m);
        return NULL;
    }
    tmp_canon(m);
    if ((m->cur = intern_cfg(m, acc)) < 0) goto nomem;
    return m;
nomem:
    QF_ERR_SET(err, QF_ERR_NOMEM, "gmatch: out of memory");
    qf_gmatch_free(m);
    return NULL;
}

qf_gmatch *qf_gmatch_new(const qf_grammar *g, const qf_tok *tok, qf_err *err) {
    if (!g || !tok) {
        QF_ERR_SET(err, QF_ERR_INVALID, "gmatch: NULL %s", g ? "tokenizer" : "grammar");
        return NULL;
    }
    qf_gvocab *v = qf_gvocab_new(tok, err);
    if (!v) return NULL;
    qf_gmatch *m = qf_gmatch_new_vocab(g, v, err);
    qf_gvocab_free(v);
    return m;
}

void qf_gmatch_free(qf_gmatch *m) {
    if (!m) return;
    qf_grammar_free(m->g);
    qf_gvocab_free(m->v);
    qf_free(m->nd_pos);
    qf_free(m->nd_par);
    qf_free(m->nd_ht);
    qf_free(m->cf_off);
    qf_free(m->cf_len);
    qf_free(m->cf_tr);
    qf_free(m->cf_acc);
    qf_free(m->cf_loop);
    qf_free(m->cf_ht);
    qf_free(m->stk);
    qf_free(m->tr);
    qf_free(m->tmp);
    qf_free(m->work);
    qf_free(m->walk);
    qf_free(m->bits);
    qf_free(m);
}

static bool dup_arr(void **dst, const void *src, size_t n, size_t elem) {
    *dst = NULL;
    if (!src || n == 0) return true;
    *dst = qf_malloc(n * elem);
    if (!*dst) return false;
    memcpy(*dst, src, n * elem);
    return true;
}

qf_gmatch *qf_gmatch_clone(const qf_gmatch *m, qf_err *err) {
    if (!m) {
        QF_ERR_SET(err, QF_ERR_INVALID, "gmatch: clone of NULL");
        return NULL;
    }
    qf_gmatch *c = qf_calloc(1, sizeof(*c));
    if (!c) goto nomem;
    c->g = m->g;
    atomic_fetch_add(&c->g->refs, 1);
    c->v = m->v;
    atomic_fetch_add(&c->v->refs, 1);
    c->cur = m->cur;
    c->ended = m->ended;
    /* copies hold exactly the used part; capacities follow */
    c->n_nd = c->cap_nd = m->n_nd;
    c->nd_hcap = m->nd_hcap;
    c->n_cf = c->cap_cf = m->n_cf;
    c->cf_hcap = m->cf_hcap;
    c->n_stk = c->cap_stk = m->n_stk;
    c->n_tr = c->cap_tr = m->n_tr;
    if (!dup_arr((void **)&c->nd_pos, m->nd_pos, (size_t)m->n_nd, sizeof(int32_t)) ||
        !dup_arr((void **)&c->nd_par, m->nd_par, (size_t)m->n_nd, sizeof(int32_t)) ||
        !dup_arr((void **)&c->nd_ht, m->nd_ht, (size_t)m->nd_hcap, sizeof(int32_t)) ||
        !dup_arr((void **)&c->cf_off, m->cf_off, (size_t)m->n_cf, sizeof(int32_t)) ||
        !dup_arr((void **)&c->cf_len, m->cf_len, (size_t)m->n_cf, sizeof(int32_t)) ||
        !dup_arr((void **)&c->cf_tr, m->cf_tr, (size_t)m->n_cf, sizeof(int32_t)) ||
        !dup_arr((void **)&c->cf_acc, m->cf_acc, (size_t)m->n_cf, sizeof(uint8_t)) ||
        !dup_arr((void **)&c->cf_loop, m->cf_loop, (size_t)m->n_cf, sizeof(uint8_t)) ||
        !dup_arr((void **)&c->cf_ht, m->cf_ht, (size_t)m->cf_hcap, sizeof(int32_t)) ||
        !dup_arr((void **)&c->stk, m->stk, (size_t)m->n_stk, sizeof(gstk)) ||
        !dup_arr((void **)&c->tr, m->tr, (size_t)m->n_tr, sizeof(int32_t)))
        goto nomem;
    if (!c->nd_ht) c->nd_hcap = 0;
    if (!c->cf_ht) c->cf_hcap = 0;
    c->walk = qf_malloc(((size_t)c->v->max_depth + 1) * sizeof(int32_t));
    c->bits = qf_calloc((size_t)c->v->n_vocab / 64 + 1, sizeof(uint64_t));
    if (!c->walk || !c->bits) goto nomem;
    return c;
nomem:
    QF_ERR_SET(err, QF_ERR_NOMEM, "gmatch: out of memory in clone");
    qf_gmatch_free(c);
    return NULL;
}

static bool cur_acc(const qf_gmatch *m) {
    return m->ended || m->cf_acc[m->cur];
}

bool qf_gmatch_done(const qf_gmatch *m) {
    return m && cur_acc(m);
}

bool qf_gmatch_closed(const qf_gmatch *m) {
    return m && (m->ended || (m->cf_acc[m->cur] && m->cf_len[m->cur] == 0));
}

/* Whether every plain byte leads from c back to c (the body of an unbounded
 * string): then every token spelled with plain bytes only is allowed. */
static qf_status loops(qf_gmatch *m, int32_t c, bool *yes) {
    if (m->cf_loop[c] == LOOP_UNKNOWN) {
        uint8_t r = LOOP_YES;
        for (unsigned b = 0x20; b < 0x80 && r == LOOP_YES; b++) {
            if (!plain_byte(b)) continue;
            qf_status st = QF_OK;
            int32_t nc = next(m, c, b, &st);
            if (st != QF_OK) return st;
            if (nc != c) r = LOOP_NO;
        }
        m->cf_loop[c] = r;
    }
    *yes = m->cf_loop[c] == LOOP_YES;
    return QF_OK;
}

/* Walk the trie from the current config, setting m->bits for every token whose
 * bytes leave a live config. */
static qf_status walk(qf_gmatch *m) {
    const qf_gvocab *v = m->v;
    const uint8_t *nbyte = v->nbyte;
    const uint16_t *ndepth = v->ndepth;
    const int32_t *nend = v->nend, *ntok = v->ntok, *toks = v->toks;
    uint64_t *bits = m->bits;
    int32_t *cs = m->walk;
    cs[0] = m->cur;
    const uint8_t *nplain = v->nplain;
    for (int32_t i = 1, n = v->n_nodes; i < n;) {
        int32_t d = ndepth[i], pc = cs[d - 1];
        if (nplain[i]) {
            if (m->cf_loop[pc] == LOOP_UNKNOWN) {
                bool yes;
                qf_status st = loops(m, pc, &yes);
                if (st != QF_OK) return st;
            }
            if (m->cf_loop[pc] == LOOP_YES) { /* the whole subtree stays in pc */
                for (int32_t k = ntok[i], e = ntok[nend[i]]; k < e; k++) {
                    int32_t t = toks[k];
                    bits[t >> 6] |= 1ull << (t & 63);
                }
                i = nend[i];
                continue;
            }
        }
        int32_t o = m->cf_tr[pc];
        if (o < 0 && (o = row(m, pc)) < 0) return QF_ERR_NOMEM;
        unsigned b = nbyte[i];
        int32_t nc = m->tr[o + b];
        if (nc == T_UNKNOWN) {
            qf_status st = QF_OK;
            nc = step(m, pc, b, &st);
            if (st != QF_OK) return st;
            m->tr[o + b] = nc;
        }
        if (nc < 0) {
            i = nend[i];
            continue;
        }
        cs[d] = nc;
        for (int32_t k = ntok[i], e = ntok[i + 1]; k < e; k++) {
            int32_t t = toks[k];
            bits[t >> 6] |= 1ull << (t & 63);
        }
        i++;
    }
    return QF_OK;
}

qf_status qf_gmatch_mask(qf_gmatch *m, float *logits, int32_t n_vocab) {
    if (!m || (!logits && n_vocab > 0) || n_vocab < 0) return QF_ERR_INVALID;
    const qf_gvocab *v = m->v;
    memset(m->bits, 0, ((size_t)v->n_vocab / 64 + 1) * sizeof(uint64_t));
    if (!m->ended) {
        compact(m);
        qf_status st = walk(m);
        if (st != QF_OK) return st;
    }
    if (cur_acc(m))
        for (int32_t i = 0; i < v->n_eog; i++)
            m->bits[v->eog[i] >> 6] |= 1ull << (v->eog[i] & 63);
    int32_t nv = n_vocab < v->n_vocab ? n_vocab : v->n_vocab;
    const uint64_t *bits = m->bits;
    for (int32_t i = 0; i < nv; i++)
        if (!((bits[i >> 6] >> (i & 63)) & 1)) logits[i] = -INFINITY;
    for (int32_t i = nv; i < n_vocab; i++)
        logits[i] = -INFINITY;
    return QF_OK;
}

/* Config after bytes from the current one (T_DEAD when refused). */
static int32_t run_bytes(qf_gmatch *m, const char *bytes, size_t len, qf_status *st) {
    int32_t c = m->cur;
    for (size_t i = 0; i < len && c >= 0; i++) {
        c = next(m, c, (unsigned char)bytes[i], st);
        if (*st != QF_OK) return T_DEAD;
    }
    return c;
}

bool qf_gmatch_allows(qf_gmatch *m, int32_t token) {
    if (!m || token < 0 || token >= m->v->n_vocab) return false;
    const qf_gvocab *v = m->v;
    if (v->kind[token] == K_EOG) return cur_acc(m);
    if (v->kind[token] != K_TEXT || m->ended) return false;
    compact(m);
    qf_status st = QF_OK;
    int32_t c = run_bytes(m, v->pbuf + v->poff[token], v->poff[token + 1] - v->poff[token], &st);
    return st == QF_OK && c >= 0;
}

qf_status qf_gmatch_accept_bytes(qf_gmatch *m, const char *bytes, size_t len) {
    if (!m || (!bytes && len > 0)) return QF_ERR_INVALID;
    if (len == 0) return QF_OK;
    if (m->ended) return QF_ERR_INVALID;
    compact(m);
    qf_status st = QF_OK;
    int32_t c = run_bytes(m, bytes, len, &st);
    if (st != QF_OK) return st;
    if (c < 0) return QF_ERR_INVALID;
    m->cur = c;
    return QF_OK;
}

qf_status qf_gmatch_accept(qf_gmatch *m, int32_t token) {
    if (!m || token < 0 || token >= m->v->n_vocab) return QF_ERR_INVALID;
    const qf_gvocab *v = m->v;
    if (v->kind[token] == K_EOG) {
        if (!cur_acc(m)) return QF_ERR_INVALID;
        m->ended = true;
        return QF_OK;
    }
    if (v->kind[token] != K_TEXT) return QF_ERR_INVALID;
    return qf_gmatch_accept_bytes(m, v->pbuf + v->poff[token], v->poff[token + 1] - v->poff[token]);
}
