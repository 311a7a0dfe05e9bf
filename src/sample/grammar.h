/* grammar.h - constrained decoding: JSON and JSON-Schema grammars over tokens.
 *
 * Three objects:
 *
 *   qf_grammar  a compiled constraint: a context-free grammar over bytes
 *               (rules -> alternatives -> sequences of byte classes and rule
 *               references). Immutable, reference counted, shareable by any
 *               number of threads and matchers.
 *   qf_gvocab   the token pieces of one tokenizer arranged as a byte trie
 *               (what each token decodes to, qf_tok_piece with special =
 *               false). Immutable, reference counted, shareable; build it
 *               once per model and hand it to every matcher.
 *   qf_gmatch   the state of one output sequence: which grammar positions
 *               the bytes produced so far can be in. One thread at a time.
 *
 * Per generated token: qf_gmatch_mask(m, logits) sets the logit of every
 * token that cannot continue a valid output to -INFINITY, the sampler picks a
 * token, qf_gmatch_accept(m, token) advances. A matcher is "done" once the
 * bytes so far form one complete value; then end-of-generation tokens
 * (qf_tok_is_eog) are allowed, and for a top-level object or array nothing
 * else is (no trailing whitespace). EOG tokens are refused before that.
 * CONTROL, UNKNOWN and UNUSED tokens and tokens whose piece is empty are
 * never allowed (EOG ones only as EOG). USER_DEFINED tokens count as their
 * text. Tokens may end inside a UTF-8 character or an escape: the matcher
 * works on bytes.
 *
 * Output shape (both grammars): the value may be preceded by one whitespace
 * unit; between tokens of the JSON syntax (after '{' '[' ',' ':' and around
 * values) whitespace is limited to one unit: nothing, one space, or a
 * newline followed by at most 20 spaces/tabs, so a model can pretty-print but
 * can not loop on whitespace. Numbers are limited to 16 integer digits, 16
 * fraction digits and 3 exponent digits (no leading zeros, as JSON). Strings
 * are well-formed UTF-8 (no overlongs, no surrogates) with JSON escapes;
 * raw control characters are refused.
 *
 * Supported JSON Schema subset (qf_grammar_from_schema):
 *   type            "object" "array" "string" "number" "integer" "boolean"
 *                   "null", or an array of them (any of). Without "type"
 *                   (and without const/enum/anyOf/oneOf/allOf/$ref) the type
 *                   is inferred: properties/required/additionalProperties ->
 *                   object, items/prefixItems/minItems/maxItems -> array,
 *                   minLength/maxLength -> string, else any JSON value.
 *   properties      members are emitted in declared order; every "required"
 *   required        one is present, every other one may be left out. Names
 *                   in "required" but not in "properties" are added (any
 *                   value) after the declared ones.
 *   additionalProperties
 *                   false or absent (when "properties" or "required" is
 *                   given): no other members. true or a schema: other
 *                   members (any ASCII key other than the declared ones,
 *                   value per the schema) may follow the declared ones. An
 *                   object schema with neither properties nor required
 *                   allows any members (true unless false is given).
 *   items           schema of every element; prefixItems (or an "items"
 *   prefixItems     array, draft 4): a tuple, emitted complete and nothing
 *                   after it.
 *   minItems maxItems   enforced (up to QF_GRAMMAR_MAX_REPEAT).
 *   minLength maxLength counted in characters; an escape is one character.
 *   enum const      any JSON values; the output must spell them exactly as
 *                   their compact serialization (cJSON_PrintUnformatted).
 *   anyOf oneOf     alternatives (oneOf's exclusivity is not enforced).
 *   allOf           the members (with $refs resolved) are merged into one
 *                   schema: properties united (first wins), required united,
 *                   other keywords first wins (so additionalProperties false
 *                   in one member does not forbid another member's
 *                   properties, unlike strict JSON Schema).
 *   $ref            "#", "#/$defs/..", "#/definitions/..", any JSON pointer
 *                   into the same document (recursive schemas work).
 *   nullable: true  (OpenAPI) also allows null.
 *   true / {}       any JSON value.
 * Relaxations (ignored, so the output may violate them): pattern, format,
 * minimum/maximum/exclusiveMinimum/exclusiveMaximum/multipleOf, uniqueItems, min/maxProperties,
 * not, if/then/else, dependencies, patternProperties, propertyNames,
 * contains, keywords next to $ref/anyOf/oneOf/const/enum; a maxLength or
 * maxItems above QF_GRAMMAR_MAX_REPEAT counts as unbounded. Extra members
 * (additionalProperties) avoid the declared names as spelled (an escaped
 * spelling such as "\u0061" slips through; declared names with non-ASCII
 * or escaped characters disable the check) and may repeat one another (no
 * context-free grammar can rule that out). \u escapes of lone surrogates
 * are refused (a high + low pair is one character).
 *
 * Errors from the compilers (NULL returned, err filled; messages name the
 * schema location as a JSON pointer, "#/properties/a/items"):
 *   QF_ERR_FORMAT       schema text is not JSON ("byte 17, line 2, column 5"),
 *                       a keyword has the wrong JSON type, unknown "type",
 *                       unresolvable $ref.
 *   QF_ERR_INVALID      contradictions: minItems > maxItems, minLength >
 *                       maxLength, empty enum/anyOf/type, schema false, or a
 *                       schema no finite JSON value satisfies (a required
 *                       property that recurses forever, {"$ref": "#"}).
 *   QF_ERR_UNSUPPORTED  $ref outside the document or to an anchor, $ref
 *                       cycles that consume no input
 *                       ({"anyOf": [{"$ref": "#"}, {"type": "null"}]}).
 *   QF_ERR_RANGE        minItems/minLength above QF_GRAMMAR_MAX_REPEAT,
 *                       nesting deeper than 128 schema levels, grammar over
 *                       QF_GRAMMAR_MAX_ELEMENTS.
 *   QF_ERR_NOMEM        allocation failure.
 *
 * Cost: compile is linear in the schema (plus counted repetitions). Masking
 * walks the vocab trie together with the parse state and prunes a subtree at
 * its first impossible byte; the state transitions it computes are memoized
 * per matcher, so repeated states (the body of a long string, the next list
 * element) cost one table look-up per trie node, and inside an unbounded
 * string a subtree of plain-ASCII pieces is allowed whole without a walk.
 * Measured (x86 VM, one core): 0.2 ms per mask in a string with the 32k
 * llama SPM vocab, 0.1 ms with gpt-2's 50k, 0.6 ms with deepseek's 102k;
 * < 0.1 ms outside strings. Memory per matcher is bounded (the memo is
 * dropped and rebuilt past ~2k states, a few MB). Cheaper still: sample
 * unmasked, check the pick with qf_gmatch_allows, mask only when refused.
 */
#ifndef QF_GRAMMAR_H
#define QF_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "tok/tok.h"

/* Largest repetition count enforced (minItems/maxItems/minLength/maxLength). */
#define QF_GRAMMAR_MAX_REPEAT 10000
/* Largest compiled grammar (elements: byte classes + rule references). */
#define QF_GRAMMAR_MAX_ELEMENTS (1 << 22)

typedef struct qf_grammar qf_grammar;
typedef struct qf_gvocab qf_gvocab;
typedef struct qf_gmatch qf_gmatch;

/* ---- grammars ---- */

/* Any JSON object (the top level must be an object, like OpenAI's
 * response_format json_object). Returns a grammar (free with
 * qf_grammar_free) or NULL + err (NOMEM). */
qf_grammar *qf_grammar_json(qf_err *err);

/* Compile len bytes of JSON Schema text (need not be NUL-terminated) into a
 * grammar accepting the JSON values that satisfy it (subset above). The
 * schema text is parsed with cJSON and not kept. Returns NULL + err on
 * failure (codes above; NULL schema: INVALID). */
qf_grammar *qf_grammar_from_schema(const char *schema, size_t len, qf_err *err);

/* Drop the caller's reference; matchers hold their own, so a grammar may be
 * freed while matchers built from it live on. NULL is a no-op. */
void qf_grammar_free(qf_grammar *g);

/* Number of rules / elements (for tests and logs). */
int32_t qf_grammar_n_rules(const qf_grammar *g);
int32_t qf_grammar_n_elements(const qf_grammar *g);

/* ---- token trie ---- */

/* Build the trie of tok's token pieces. Everything needed is copied: tok may
 * be freed afterwards. Returns NULL + err (INVALID for NULL tok, NOMEM).
 * Cost: O(total piece bytes + n log n); ~10 ms for 150k tokens. */
qf_gvocab *qf_gvocab_new(const qf_tok *tok, qf_err *err);
/* Drop the caller's reference (matchers hold their own). NULL is a no-op. */
void qf_gvocab_free(qf_gvocab *v);
int32_t qf_gvocab_n_vocab(const qf_gvocab *v);
int32_t qf_gvocab_n_nodes(const qf_gvocab *v); /* trie nodes, root included */

/* ---- matchers ---- */

/* New matcher at the start of an output. Takes a reference to g and v (the
 * caller keeps its own). qf_gmatch_new builds a private trie from tok (same
 * as qf_gvocab_new + qf_gmatch_new_vocab); prefer one shared qf_gvocab.
 * NULL + err: INVALID (NULL args), NOMEM. Free with qf_gmatch_free. */
qf_gmatch *qf_gmatch_new(const qf_grammar *g, const qf_tok *tok, qf_err *err);
qf_gmatch *qf_gmatch_new_vocab(const qf_grammar *g, qf_gvocab *v, qf_err *err);

/* Independent copy of m's state (and memo), e.g. for n completions sharing a
 * prompt. NULL + err (INVALID, NOMEM). */
qf_gmatch *qf_gmatch_clone(const qf_gmatch *m, qf_err *err);

void qf_gmatch_free(qf_gmatch *m); /* NULL is a no-op */

/* Set logits[i] = -INFINITY for every token i in [0, n_vocab) that can not
 * come next; others are left as they are. Ids the vocab does not have
 * (n_vocab larger than the tokenizer's, as with padded output layers) are
 * always masked. Returns QF_OK, QF_ERR_INVALID (NULL args, n_vocab < 0) or
 * QF_ERR_NOMEM / QF_ERR_RANGE (memo could not grow; logits untouched). If
 * the vocab can not spell any continuation (no byte tokens), every logit
 * ends up -INFINITY. */
qf_status qf_gmatch_mask(qf_gmatch *m, float *logits, int32_t n_vocab);

/* Whether token may come next (what mask would leave finite), without
 * masking the whole vocabulary: lets a caller sample first and mask only
 * when the pick is refused. False on allocation failure. */
bool qf_gmatch_allows(qf_gmatch *m, int32_t token);

/* Advance past token. QF_ERR_INVALID if it is not allowed (the state is then
 * unchanged); QF_ERR_NOMEM / QF_ERR_RANGE (state unchanged). An EOG token is
 * allowed once done and ends the output (mask then allows only EOG). */
qf_status qf_gmatch_accept(qf_gmatch *m, int32_t token);

/* Advance past raw bytes (e.g. a forced prefix); same errors as accept. */
qf_status qf_gmatch_accept_bytes(qf_gmatch *m, const char *bytes, size_t len);

/* A complete value has been produced (EOG may come now). */
bool qf_gmatch_done(const qf_gmatch *m);

/* No byte at all may follow (done, and the value can not be extended). */
bool qf_gmatch_closed(const qf_gmatch *m);

#endif
