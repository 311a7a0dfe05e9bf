/* grammar_int.h - internals shared by grammar.c (builder, analyses, JSON
 * base rules), json_schema.c (schema compiler) and gmatch.c (matcher).
 *
 * A grammar is a list of rules; a rule is a list of alternatives; an
 * alternative is a sequence of elements ending in END. Elements are packed
 * uint32: kind in the top two bits, argument below (class index for CLS,
 * rule id for REF). A "position" is an index into qf_grammar.el.
 */
#ifndef QF_GRAMMAR_INT_H
#define QF_GRAMMAR_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "sample/grammar.h"

enum { GE_END = 0, GE_CLS = 1, GE_REF = 2 };
#define GE_KIND(e)    ((uint32_t)(e) >> 30)
#define GE_ARG(e)     ((int32_t)((uint32_t)(e)&0x3fffffffu))
#define GE_MAKE(k, a) (((uint32_t)(k) << 30) | (uint32_t)(a))

/* A set of bytes. */
typedef struct gclass {
    uint64_t w[4];
} gclass;

static inline bool gclass_has(const gclass *c, unsigned b) {
    return (c->w[b >> 6] >> (b & 63)) & 1u;
}

struct qf_grammar {
    atomic_int refs;
    uint32_t *el; /* (n_el) elements; every alternative ends in GE_END */
    int32_t n_el;
    int32_t *alt;      /* (n_alt) start position of each alternative, grouped by rule */
    int32_t *rule_alt; /* (n_rule + 1) rule r's alternatives: alt[rule_alt[r] .. rule_alt[r+1]) */
    int32_t n_rule;
    gclass *cls; /* (n_cls) */
    int32_t n_cls;
    int32_t start; /* position of "REF root, END": parsing starts here */
};

/* ---- builder ---- */

/* JSON building blocks, created on first use by gb_base. */
typedef enum gb_base_id {
    GB_WS,      /* one whitespace unit or nothing */
    GB_CHAR,    /* one string character (plain, UTF-8 multi-byte, or escape) */
    GB_CHARS,   /* CHAR* */
    GB_STRING,  /* '"' CHARS '"' */
    GB_NUMBER,  /* JSON number (digit-limited) */
    GB_INTEGER, /* -? int */
    GB_BOOLEAN,
    GB_NULL,
    GB_VALUE,  /* any JSON value */
    GB_OBJECT, /* any JSON object */
    GB_ARRAY,  /* any JSON array */
    GB_BASE_COUNT
} gb_base_id;

typedef struct gb_alt {
    int32_t rule;
    int32_t off, len; /* elements in pool[off .. off+len) */
} gb_alt;

/* A sequence under construction (owned by the caller, freed with gs_free). */
typedef struct gseq {
    uint32_t *v;
    int32_t n, cap;
} gseq;

/* Every gb_ and gs_ function is a no-op once b->st != QF_OK (sticky error), so
 * callers build freely and check b->st once. */
typedef struct gbuild {
    qf_status st;
    qf_err *err;
    uint32_t *pool;
    size_t n_pool, cap_pool;
    gb_alt *alts;
    size_t n_alts, cap_alts;
    int32_t n_rule;
    int32_t cap_rule;
    char **rname; /* (n_rule) owned names for messages, NULL when none */
    gclass *cls;
    int32_t n_cls, cap_cls;
    int32_t byte_cls[256];       /* class index of each single byte, -1 until made */
    int32_t base[GB_BASE_COUNT]; /* -1 until created */
} gbuild;

void gb_init(gbuild *b, qf_err *err);
void gb_deinit(gbuild *b);
/* Record a failure (first one wins). Returns -1 for use as a rule id. */
int32_t gb_fail(gbuild *b, qf_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* New rule without alternatives; name (copied, may be NULL) is used in errors. */
int32_t gb_rule(gbuild *b, const char *name);
uint32_t gb_ref(int32_t rule);
uint32_t gb_cls(gbuild *b, const gclass *c);
uint32_t gb_range(gbuild *b, unsigned lo, unsigned hi);
uint32_t gb_byte(gbuild *b, unsigned c);
/* Add an alternative (copied) to rule. */
void gb_alt_add(gbuild *b, int32_t rule, const uint32_t *els, int32_t n);
#define GB_ALT(b, rule, ...)                                                                       \
    gb_alt_add((b), (rule), (const uint32_t[]){__VA_ARGS__},                                       \
               (int32_t)(sizeof((const uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t)))
/* The empty alternative. */
void gb_alt_empty(gbuild *b, int32_t rule);
/* A base rule (created on first use). -1 after a failure. */
int32_t gb_base(gbuild *b, gb_base_id id);
/* Rule for "up to n more repeats of the element e" (e a class element). */
int32_t gb_upto(gbuild *b, uint32_t e, int32_t n);
/* A literal: a rule with one alternative spelling the bytes. */
int32_t gb_lit(gbuild *b, const char *bytes, size_t n);
/* "{" ws members "}" where every member is key ws ":" ws val ws. */
int32_t gb_object_of(gbuild *b, int32_t key, int32_t val);
/* "[" ws items "]" with min..max items (max < 0: unbounded). */
int32_t gb_array_of(gbuild *b, int32_t item, int32_t min, int32_t max);
/* One string character whose plain (unescaped ASCII) form is not in minus
 * (NULL: any character). */
int32_t gb_char_except(gbuild *b, const gclass *minus);
/* JSON string with min..max characters (max < 0: unbounded). */
int32_t gb_string_len(gbuild *b, int32_t min, int32_t max);

void gs_push(gbuild *b, gseq *s, uint32_t e);
void gs_bytes(gbuild *b, gseq *s, const char *bytes, size_t n);
void gs_add(gbuild *b, int32_t rule, const gseq *s); /* add s as an alternative */
void gs_free(gseq *s);

/* Turn the builder into a grammar whose start is "ws root": prunes
 * alternatives that can never finish, fails on left recursion (INVALID /
 * UNSUPPORTED with the rule's name) and on a root with no finite value.
 * The builder is left for gb_deinit either way. */
qf_grammar *gb_finish(gbuild *b, int32_t root);

#endif
