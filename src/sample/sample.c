/* sample.c - the sampling chain of sample.h.
 *
 * The chain ends in one of two shapes (struct kept):
 *   - sorted: s->c[0..n) holds the surviving tokens by descending logit
 *     (ties -> lower id), each with its weight exp((l - l_max) / T);
 *   - all:    every token survives; the weights overwrite logits[] in place
 *     and nothing is sorted (the common "no truncation" case costs two
 *     passes and no scratch).
 * Sorted prefixes come from a bounded min-heap over the logits (one compare
 * per token once the heap is full) followed by a sort of the k winners, so
 * top_k never sorts the vocabulary. With top_k off, top_p needs the sorted
 * prefix whose mass reaches top_p; it is found by selecting the best 64,
 * then 512, ... tokens until the prefix is decided (min_p bounds the search
 * from above by counting the tokens over its threshold first).
 *
 * Invariants: after sanitize() the logits hold no NaN and their maximum is
 * finite, so every exp() below is of a value <= 0 (weights in [0, 1], the
 * top token weighs 1) and every total is >= 1.
 */
#include "sample/sample.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"

typedef struct cand {
    int32_t id;
    float l; /* logit (temperature 1) */
    float w; /* weight after temperature, filled at the end of the chain */
} cand;

struct qf_sampler {
    qf_sample_params p;
    int32_t n_vocab;
    uint64_t seed;
    uint64_t rng[4]; /* xoshiro256** state */
    cand *c;         /* (c_cap) candidate scratch */
    int32_t c_cap;
    int32_t *win; /* (win_cap) copy of the penalty window */
    int32_t win_cap;
};

typedef struct kept {
    int32_t n;    /* tokens that survived */
    bool all;     /* true: all n_vocab, weights in logits[]; false: s->c[0..n) */
    double total; /* sum of the weights */
} kept;

/* ---- PRNG: splitmix64 to seed, xoshiro256** to draw ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t st[4]) {
    uint64_t out = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return out;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t st[4]) { return (double)(rng_next(st) >> 11) * 0x1.0p-53; }

static uint64_t random_seed(const void *salt) {
    static atomic_uint_fast64_t counter;
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t x = (uint64_t)a.tv_sec * 1000000000ull + (uint64_t)a.tv_nsec;
    x ^= (uint64_t)b.tv_nsec << 29;
    x ^= (uint64_t)getpid() << 40;
    x ^= (uint64_t)(uintptr_t)salt;
    x ^= (uint64_t)atomic_fetch_add(&counter, 1) * 0xd1b54a32d192ed03ull;
    uint64_t seed = splitmix64(&x);
    return seed == QF_SAMPLE_SEED_RANDOM ? seed - 1 : seed;
}

void qf_sampler_reseed(qf_sampler *s, uint64_t seed) {
    if (!s) return;
    if (seed == QF_SAMPLE_SEED_RANDOM) seed = random_seed(s);
    s->seed = seed;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

uint64_t qf_sampler_seed(const qf_sampler *s) { return s ? s->seed : 0; }

const qf_sample_params *qf_sampler_params(const qf_sampler *s) { return s ? &s->p : NULL; }

/* ---- lifecycle ---- */

qf_sample_params qf_sample_params_default(void) {
    qf_sample_params p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .seed = QF_SAMPLE_SEED_RANDOM,
    };
    return p;
}

static bool penalties_on(const qf_sample_params *p) {
    return p->repeat_last_n != 0 &&
           (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

static bool grow_c(qf_sampler *s, int32_t need) {
    if (need <= s->c_cap) return true;
    int32_t cap = s->c_cap > 0 ? s->c_cap : 64;
    while (cap < need) cap = cap > s->n_vocab / 2 ? s->n_vocab : cap * 2;
    if (cap < need) cap = need;
    cand *c = qf_realloc(s->c, (size_t)cap * sizeof(*c));
    if (!c) return false;
    s->c = c;
    s->c_cap = cap;
    return true;
}

static bool grow_win(qf_sampler *s, int32_t need) {
    if (need <= s->win_cap) return true;
    int32_t cap = s->win_cap > 0 ? s->win_cap : 64;
    while (cap < need) cap = cap > INT32_MAX / 2 ? need : cap * 2;
    int32_t *w = qf_realloc(s->win, (size_t)cap * sizeof(*w));
    if (!w) return false;
    s->win = w;
    s->win_cap = cap;
    return true;
}

qf_sampler *qf_sampler_new(const qf_sample_params *p, int32_t n_vocab, qf_err *err) {
    if (!p) {
        QF_ERR_SET(err, QF_ERR_INVALID, "sampler: params NULL");
        return NULL;
    }
    if (n_vocab <= 0) {
        QF_ERR_SET(err, QF_ERR_INVALID, "sampler: n_vocab %d must be > 0", (int)n_vocab);
        return NULL;
    }
    const struct {
        const char *name;
        float v;
    } f[] = {{"temperature", p->temperature},       {"top_p", p->top_p},
             {"min_p", p->min_p},                   {"repeat_penalty", p->repeat_penalty},
             {"frequency_penalty", p->frequency_penalty}, {"presence_penalty", p->presence_penalty}};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (!isfinite(f[i].v)) {
            QF_ERR_SET(err, QF_ERR_INVALID, "sampler: %s is %g (must be finite)", f[i].name,
                       (double)f[i].v);
            return NULL;
        }
    }
    if (p->repeat_penalty <= 0.0f) {
        QF_ERR_SET(err, QF_ERR_INVALID, "sampler: repeat_penalty %g must be > 0 (1 = off)",
                   (double)p->repeat_penalty);
        return NULL;
    }
    if (p->repeat_last_n < -1) {
        QF_ERR_SET(err, QF_ERR_INVALID, "sampler: repeat_last_n %d must be >= -1",
                   (int)p->repeat_last_n);
        return NULL;
    }
    qf_sampler *s = qf_calloc(1, sizeof(*s));
    if (!s) goto nomem;
    s->p = *p;
    s->n_vocab = n_vocab;
    /* Preallocate what this configuration needs per call, so that the usual
     * settings never allocate while sampling. */
    int32_t c_need = 1;
    if (p->temperature > 0.0f) {
        c_need = p->top_k > 0 && p->top_k < n_vocab ? p->top_k : (n_vocab < 64 ? n_vocab : 64);
    }
    if (!grow_c(s, c_need)) goto nomem;
    if (penalties_on(p) && p->repeat_last_n > 0 && !grow_win(s, p->repeat_last_n)) goto nomem;
    qf_sampler_reseed(s, p->seed);
    return s;
nomem:
    qf_sampler_free(s);
    QF_ERR_SET(err, QF_ERR_NOMEM, "sampler: out of memory (n_vocab %d)", (int)n_vocab);
    return NULL;
}

void qf_sampler_free(qf_sampler *s) {
    if (!s) return;
    qf_free(s->c);
    qf_free(s->win);
    qf_free(s);
}

/* ---- argmax ---- */

int32_t qf_sample_argmax(const float *logits, int32_t n) {
    if (!logits || n <= 0) return -1;
    int32_t best = 0;
    float bv = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        /* strict > keeps the lowest id on ties and never picks NaN */
        if (logits[i] > bv) {
            bv = logits[i];
            best = i;
        }
    }
    return best;
}

/* ---- penalties ---- */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static qf_status check_args(const qf_sampler *s, const float *logits, const int32_t *history,
                            int32_t n_history) {
    if (!s || !logits) return QF_ERR_INVALID;
    if (n_history < 0 || (n_history > 0 && !history)) return QF_ERR_INVALID;
    return QF_OK;
}

static qf_status penalize(qf_sampler *s, float *logits, const int32_t *hist, int32_t nh) {
    const qf_sample_params *p = &s->p;
    if (!penalties_on(p)) return QF_OK;
    int32_t w = p->repeat_last_n < 0 || p->repeat_last_n > nh ? nh : p->repeat_last_n;
    if (w == 0) return QF_OK;
    if (!grow_win(s, w)) return QF_ERR_NOMEM;
    /* Count occurrences by sorting a copy of the window: O(w log w), no
     * per-vocabulary table, so a sampler stays small however big n_vocab. */
    int32_t nv = 0;
    for (int32_t i = nh - w; i < nh; i++) {
        int32_t t = hist[i];
        if (t >= 0 && t < s->n_vocab) s->win[nv++] = t;
    }
    qsort(s->win, (size_t)nv, sizeof(int32_t), cmp_i32);
    for (int32_t i = 0; i < nv;) {
        int32_t t = s->win[i], j = i;
        while (j < nv && s->win[j] == t) j++;
        int32_t count = j - i;
        float l = logits[t];
        /* dividing a negative logit would raise it, so negatives are
         * multiplied instead (llama.cpp's rule) */
        if (l <= 0.0f) {
            l *= p->repeat_penalty;
        } else {
            l /= p->repeat_penalty;
        }
        /* count > 0 here, so presence always applies */
        l -= (float)count * p->frequency_penalty + p->presence_penalty;
        logits[t] = l;
        i = j;
    }
    return QF_OK;
}

qf_status qf_sampler_penalize(qf_sampler *s, float *logits, const int32_t *history,
                              int32_t n_history) {
    qf_status st = check_args(s, logits, history, n_history);
    if (st != QF_OK) return st;
    return penalize(s, logits, history, n_history);
}

/* ---- selection ---- */

/* a ranks below b: smaller logit, or equal logit and larger id */
static bool worse(const cand *a, const cand *b) {
    return a->l < b->l || (a->l == b->l && a->id > b->id);
}

static int cmp_cand_desc(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (worse(a, b)) return 1;
    if (worse(b, a)) return -1;
    return 0;
}

static void sift_down(cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(&h[l], &h[m])) m = l;
        if (r < n && worse(&h[r], &h[m])) m = r;
        if (m == i) return;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* s->c[0..m) = the m best of vals[0..n) (by value, ties -> lower id),
 * sorted best first. m in [1, n]. */
static qf_status top_select(qf_sampler *s, const float *vals, int32_t n, int32_t m) {
    if (!grow_c(s, m)) return QF_ERR_NOMEM;
    cand *h = s->c;
    for (int32_t i = 0; i < m; i++) h[i] = (cand){i, vals[i], 0.0f};
    if (m < n) {
        for (int32_t i = m / 2 - 1; i >= 0; i--) sift_down(h, m, i);
        float floor_ = h[0].l; /* the worst kept value, in a register */
        for (int32_t i = m; i < n; i++) {
            /* ids grow, so an equal value never beats the root: strict > */
            if (vals[i] > floor_) {
                h[0] = (cand){i, vals[i], 0.0f};
                sift_down(h, m, 0);
                floor_ = h[0].l;
            }
        }
    }
    qsort(h, (size_t)m, sizeof(cand), cmp_cand_desc);
    return QF_OK;
}

/* Length of the surviving prefix of c[0..n) (sorted, c[0] the best) under
 * top_p (mass normalised by z = sum over the whole base set of
 * exp(l - c[0].l)) and min_p. *decided is false when the prefix ran out
 * before either rule stopped it (then more candidates might survive). */
static int32_t prefix_len(const cand *c, int32_t n, double z, const qf_sample_params *p,
                          bool *decided) {
    bool use_p = p->top_p < 1.0f, use_min = p->min_p > 0.0f;
    float thr = use_min ? c[0].l + logf(p->min_p) : -INFINITY;
    double cum = 0.0;
    *decided = true;
    for (int32_t i = 0; i < n; i++) {
        if (i > 0 && c[i].l < thr) return i;
        if (use_p) {
            cum += expf(c[i].l - c[0].l) / z;
            if (cum >= (double)p->top_p) return i + 1;
        }
    }
    *decided = false;
    return n;
}

/* NaN -> -inf; if the maximum is not finite, collapse to 0 for the maximal
 * tokens and -inf for the rest. Returns the (finite) maximum, *am its
 * lowest index. The scan keeps 8 independent maxima so it is not bound by
 * one compare-select chain (NaN never wins `v > m`), then finds the first
 * index of the maximum in a second, early-exit pass. */
static float sanitize(float *l, int32_t n, int32_t *am) {
    float mx[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                   -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int nan = 0;
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) {
            float v = l[i + j];
            nan |= v != v;
            mx[j] = v > mx[j] ? v : mx[j];
        }
    }
    for (; i < n; i++) {
        float v = l[i];
        nan |= v != v;
        mx[0] = v > mx[0] ? v : mx[0];
    }
    float m = mx[0];
    for (int j = 1; j < 8; j++) m = mx[j] > m ? mx[j] : m;
    if (nan) {
        for (i = 0; i < n; i++) {
            if (isnan(l[i])) l[i] = -INFINITY;
        }
    }
    if (!isfinite(m)) {
        for (i = 0; i < n; i++) l[i] = l[i] == m ? 0.0f : -INFINITY;
        m = 0.0f;
    }
    int32_t best = 0;
    while (l[best] != m) best++;
    *am = best;
    return m;
}

/* sum over i of exp(v[i] - m): exp of float, four partial sums in double
 * (independent chains, and no precision loss over 256k terms) */
static double sum_exp(const float *v, int32_t n, float m) {
    double acc[4] = {0, 0, 0, 0};
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int j = 0; j < 4; j++) acc[j] += expf(v[i + j] - m);
    }
    for (; i < n; i++) acc[0] += expf(v[i] - m);
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/* ---- the chain ---- */

/* 1/T, or 0 when that overflows (T below ~3e-39): weight() then divides. */
static float inv_temp(float t) {
    float inv = 1.0f / t;
    return isfinite(inv) ? inv : 0.0f;
}

/* exp(d / T) for d = l - l_max <= 0. Multiplying by 1/T is the fast path;
 * for an overflowing 1/T, 0 * inf would be NaN for the top token, so divide. */
static inline float weight(float d, float inv_t, float t) {
    return inv_t != 0.0f ? expf(d * inv_t) : expf(d / t);
}

static qf_status chain(qf_sampler *s, float *logits, const int32_t *hist, int32_t nh, kept *k) {
    const qf_sample_params *p = &s->p;
    const int32_t n = s->n_vocab;
    qf_status st = penalize(s, logits, hist, nh);
    if (st != QF_OK) return st;
    int32_t am;
    float m = sanitize(logits, n, &am);

    if (!(p->temperature > 0.0f)) {
        if (!grow_c(s, 1)) return QF_ERR_NOMEM;
        s->c[0] = (cand){am, m, 1.0f};
        *k = (kept){1, false, 1.0};
        return QF_OK;
    }

    bool use_p = p->top_p < 1.0f, use_min = p->min_p > 0.0f;
    int32_t len;
    if (p->top_k > 0 && p->top_k < n) {
        st = top_select(s, logits, n, p->top_k);
        if (st != QF_OK) return st;
        len = p->top_k;
        if (use_p || use_min) {
            double z = 0.0;
            for (int32_t i = 0; i < len; i++) z += expf(s->c[i].l - s->c[0].l);
            bool decided;
            len = prefix_len(s->c, len, z, p, &decided);
        }
    } else if (use_p || use_min) {
        /* no top_k: min_p bounds the prefix (count over its threshold), then
         * grow a sorted prefix until top_p is decided */
        int32_t bound = n;
        if (use_min) {
            float thr = m + logf(p->min_p);
            bound = 0;
            for (int32_t i = 0; i < n; i++) bound += logits[i] >= thr;
            if (bound < 1) bound = 1;
        }
        double z = use_p ? sum_exp(logits, n, m) : 0.0;
        /* min_p alone: the survivors are exactly the `bound` best */
        int32_t try_n = !use_p || bound < 64 ? bound : 64;
        for (;;) {
            st = top_select(s, logits, n, try_n);
            if (st != QF_OK) return st;
            bool decided;
            len = prefix_len(s->c, try_n, z, p, &decided);
            if (decided || try_n == bound) break;
            try_n = try_n > bound / 8 ? bound : try_n * 8;
        }
    } else {
        /* nothing truncates: weights straight into logits[] */
        double acc[4] = {0, 0, 0, 0};
        const float inv_t = inv_temp(p->temperature);
        int32_t i = 0;
        for (; i + 4 <= n; i += 4) {
            for (int j = 0; j < 4; j++) {
                float w = weight(logits[i + j] - m, inv_t, p->temperature);
                logits[i + j] = w;
                acc[j] += w;
            }
        }
        for (; i < n; i++) {
            float w = weight(logits[i] - m, inv_t, p->temperature);
            logits[i] = w;
            acc[0] += w;
        }
        *k = (kept){n, true, (acc[0] + acc[1]) + (acc[2] + acc[3])};
        return QF_OK;
    }

    double total = 0.0;
    const float inv_t = inv_temp(p->temperature);
    for (int32_t i = 0; i < len; i++) {
        s->c[i].w = weight(s->c[i].l - s->c[0].l, inv_t, p->temperature);
        total += s->c[i].w;
    }
    *k = (kept){len, false, total};
    return QF_OK;
}

int32_t qf_sampler_sample(qf_sampler *s, float *logits, const int32_t *history, int32_t n_history) {
    qf_status st = check_args(s, logits, history, n_history);
    if (st != QF_OK) return st;
    kept k;
    st = chain(s, logits, history, n_history, &k);
    if (st != QF_OK) return st;
    if (k.n == 1 && !k.all) return s->c[0].id; /* greedy or one survivor: no draw */
    double r = rng_uniform(s->rng) * k.total, acc = 0.0;
    int32_t last = 0;
    if (k.all) {
        for (int32_t i = 0; i < k.n; i++) {
            if (logits[i] <= 0.0f) continue;
            acc += logits[i];
            last = i;
            if (r < acc) return i;
        }
        return last; /* r rounded up to the total */
    }
    for (int32_t i = 0; i < k.n; i++) {
        if (s->c[i].w <= 0.0f) continue;
        acc += s->c[i].w;
        last = i;
        if (r < acc) return s->c[i].id;
    }
    return s->c[last].id;
}

int32_t qf_sampler_dist(qf_sampler *s, float *logits, const int32_t *history, int32_t n_history,
                        qf_token_prob *out, int32_t cap) {
    qf_status st = check_args(s, logits, history, n_history);
    if (st != QF_OK) return st;
    if (cap < 0 || (cap > 0 && !out)) return QF_ERR_INVALID;
    kept k;
    st = chain(s, logits, history, n_history, &k);
    if (st != QF_OK) return st;
    int32_t w = cap < k.n ? cap : k.n;
    if (w == 0) return k.n;
    if (k.all) {
        /* order the weights (monotone in the logits) to report the best */
        st = top_select(s, logits, k.n, w);
        if (st != QF_OK) return st;
        for (int32_t i = 0; i < w; i++) s->c[i].w = s->c[i].l;
    }
    for (int32_t i = 0; i < w; i++) {
        out[i].id = s->c[i].id;
        out[i].p = (float)(s->c[i].w / k.total);
    }
    return k.n;
}
