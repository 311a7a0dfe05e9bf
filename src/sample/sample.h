/* sample.h - token sampling from a logits vector.
 *
 * One qf_sampler per sequence. qf_sampler_sample takes the model's logits for
 * the next position (float, n_vocab entries, used as scratch and modified in
 * place) and the sequence's history (prompt + generated token ids, oldest
 * first) and returns the chosen token id. The chain, in llama.cpp's common
 * default order:
 *
 *   1. penalties   over the last repeat_last_n history tokens (-1: all of
 *                  them, 0: none), for every token id t with count c > 0 in
 *                  that window:
 *                    repeat:   l = l <= 0 ? l * repeat_penalty : l / repeat_penalty
 *                    then      l -= c * frequency_penalty + presence_penalty
 *                  (llama.cpp's penalties sampler; repeat first, then the
 *                  OpenAI-style frequency/presence terms). History ids
 *                  outside [0, n_vocab) are ignored.
 *   2. greedy      if temperature <= 0: argmax of the penalised logits (ties
 *                  -> lowest id); the steps below are skipped.
 *   3. top_k       keep the top_k highest logits (ties -> lower id first);
 *                  top_k <= 0 or >= n_vocab: all.
 *   4. top_p       softmax over what is kept; keep the shortest prefix of
 *                  the tokens sorted by probability whose probabilities sum
 *                  to >= top_p (the token that crosses top_p is kept).
 *                  top_p >= 1: off.
 *   5. min_p       keep tokens with p >= min_p * p_max (equivalently
 *                  l >= l_max + ln(min_p)). min_p <= 0: off.
 *   6. temperature divide the kept logits by temperature.
 *   7. draw        softmax over the kept tokens and draw one with the
 *                  sampler's PRNG.
 *
 * At least one token (the most likely) always survives 3-5. Truncation uses
 * the temperature-1 distribution, as llama.cpp does (temperature is applied
 * last). NaN logits count as -inf; if every logit is -inf the draw is
 * uniform over all tokens, and if some are +inf it is uniform over those.
 *
 * Randomness: xoshiro256** seeded through splitmix64 from params.seed, so the
 * same seed, params, logits and history give the same token sequence on every
 * platform. QF_SAMPLE_SEED_RANDOM picks a seed from the clock and process;
 * qf_sampler_seed tells which (log it to make a run replayable).
 *
 * Cost: O(n_vocab) per call plus O(k log k) for top_k = k (a bounded heap, no
 * full sort); with top_k off, top_p/min_p sort only the prefix they need.
 * Scratch grows on demand and is kept; for the default parameters it is
 * allocated once, in qf_sampler_new.
 *
 * Thread-safety: a sampler belongs to one thread at a time (it holds PRNG
 * state and scratch). Distinct samplers are independent.
 */
#ifndef QF_SAMPLE_H
#define QF_SAMPLE_H

#include <stdint.h>

#include "base/err.h"

/* params.seed value meaning "pick a random seed". */
#define QF_SAMPLE_SEED_RANDOM UINT64_MAX

typedef struct qf_sample_params {
    float temperature;       /* <= 0: greedy (argmax, ties -> lowest id) */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float repeat_penalty;    /* 1: off; must be > 0 */
    int32_t repeat_last_n;   /* penalty window: -1 whole history, 0 off */
    float frequency_penalty; /* 0: off; subtracted count times */
    float presence_penalty;  /* 0: off; subtracted once if count > 0 */
    uint64_t seed;           /* QF_SAMPLE_SEED_RANDOM: random */
} qf_sample_params;

/* temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1,
 * repeat_last_n 64, frequency/presence 0, seed QF_SAMPLE_SEED_RANDOM. */
qf_sample_params qf_sample_params_default(void);

typedef struct qf_sampler qf_sampler;

/* New sampler for a vocabulary of n_vocab tokens; p is copied.
 * NULL + err (QF_ERR_INVALID) when p is NULL, n_vocab <= 0, a float field is
 * NaN or infinite, repeat_penalty <= 0, or repeat_last_n < -1;
 * QF_ERR_NOMEM on allocation failure. Free with qf_sampler_free. */
qf_sampler *qf_sampler_new(const qf_sample_params *p, int32_t n_vocab, qf_err *err);

/* NULL is a no-op. */
void qf_sampler_free(qf_sampler *s);

/* Choose the next token. logits: n_vocab floats (caller's scratch, modified;
 * its contents afterwards are unspecified). history: n_history previous
 * token ids of this sequence, oldest first (NULL allowed when n_history is
 * 0); borrowed for the call.
 * Returns the token id in [0, n_vocab), or a negative qf_status:
 * QF_ERR_INVALID (s or logits NULL, n_history < 0, history NULL with
 * n_history > 0), QF_ERR_NOMEM (scratch could not grow). */
int32_t qf_sampler_sample(qf_sampler *s, float *logits, const int32_t *history, int32_t n_history);

/* Step 1 alone: apply the penalties of s to logits in place (exactly the
 * arithmetic qf_sampler_sample uses). Same arguments and errors; QF_OK. */
qf_status qf_sampler_penalize(qf_sampler *s, float *logits, const int32_t *history,
                              int32_t n_history);

typedef struct qf_token_prob {
    int32_t id;
    float p; /* probability after the whole chain (temperature included) */
} qf_token_prob;

/* Steps 1-6 without drawing: the distribution qf_sampler_sample would draw
 * from. Writes the min(cap, kept) most likely tokens to out (NULL allowed
 * when cap is 0), by descending p (ties -> lower id), and returns the number
 * of tokens kept (may exceed cap), or a negative qf_status as for
 * qf_sampler_sample (also QF_ERR_INVALID for cap < 0 or out NULL with
 * cap > 0). Does not advance the PRNG. For logprobs and tests. */
int32_t qf_sampler_dist(qf_sampler *s, float *logits, const int32_t *history, int32_t n_history,
                        qf_token_prob *out, int32_t cap);

/* Restart the PRNG from seed (QF_SAMPLE_SEED_RANDOM: a fresh random seed). */
void qf_sampler_reseed(qf_sampler *s, uint64_t seed);

/* The seed the PRNG was last started from (the picked one when random). */
uint64_t qf_sampler_seed(const qf_sampler *s);

/* The sampler's parameters (as given; never NULL for a valid s). */
const qf_sample_params *qf_sampler_params(const qf_sampler *s);

/* Index of the largest of n logits, ties -> lowest index, NaN never chosen
 * (all NaN -> 0). -1 when logits is NULL or n <= 0. */
int32_t qf_sample_argmax(const float *logits, int32_t n);

#endif
