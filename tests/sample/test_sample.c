/* test_sample.c - sampler chain and stop-string matcher.
 *
 * Expected values come from the definitions in sample.h / stop.h worked out
 * by hand (penalty arithmetic, softmax of small logit sets, top_p / min_p
 * prefixes) or from a naive reference written here (full sort, then the
 * filters in order) that the optimised selection must agree with.
 */
#include "qf_test.h"

#include <stdint.h>

#include "base/mem.h"
#include "sample/sample.h"
#include "sample/stop.h"

/* ---- helpers ---- */

static uint64_t lcg_state = 1;
static double urand(void) {
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg_state >> 11) * 0x1.0p-53;
}

static qf_sample_params plain(float temp) {
    qf_sample_params p = qf_sample_params_default();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1234;
    return p;
}

static int32_t sample_copy(qf_sampler *s, const float *logits, int32_t n, const int32_t *h,
                           int32_t nh) {
    float buf[64];
    memcpy(buf, logits, (size_t)n * sizeof(float));
    return qf_sampler_sample(s, buf, h, nh);
}

/* ---- argmax / greedy ---- */

static void test_argmax(void) {
    const float a[] = {1.0f, 3.0f, -2.0f, 3.0f, 2.9f};
    ASSERT_EQ_INT(qf_sample_argmax(a, 5), 1);
    const float b[] = {NAN, -1.0f, NAN, 0.5f};
    ASSERT_EQ_INT(qf_sample_argmax(b, 4), 3);
    const float c[] = {-INFINITY, -INFINITY};
    ASSERT_EQ_INT(qf_sample_argmax(c, 2), 0);
    ASSERT_EQ_INT(qf_sample_argmax(a, 0), -1);
    ASSERT_EQ_INT(qf_sample_argmax(NULL, 3), -1);

    /* greedy sampler: argmax, lowest id on ties, for temp 0 and negative */
    for (int t = 0; t < 2; t++) {
        qf_sample_params p = qf_sample_params_default();
        p.temperature = t == 0 ? 0.0f : -1.0f;
        qf_sampler *s = qf_sampler_new(&p, 5, NULL);
        ASSERT(s);
        for (int i = 0; i < 50; i++) ASSERT_EQ_INT(sample_copy(s, a, 5, NULL, 0), 1);
        const float tie[] = {0.0f, 7.0f, 7.0f, 7.0f, -1.0f};
        ASSERT_EQ_INT(sample_copy(s, tie, 5, NULL, 0), 1);
        qf_sampler_free(s);
    }
}

/* ---- determinism ---- */

static void test_seed_determinism(void) {
    enum { N = 50, DRAWS = 1000 };
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = (float)(urand() * 4.0 - 2.0);
    qf_sample_params p = qf_sample_params_default();
    p.seed = 42;
    qf_sampler *a = qf_sampler_new(&p, N, NULL);
    qf_sampler *b = qf_sampler_new(&p, N, NULL);
    p.seed = 43;
    qf_sampler *c = qf_sampler_new(&p, N, NULL);
    ASSERT(a && b && c);
    ASSERT(qf_sampler_seed(a) == 42 && qf_sampler_seed(c) == 43);
    static int32_t sa[DRAWS], sb[DRAWS], sc[DRAWS];
    int differ = 0, distinct_vals = 0, seen[N] = {0};
    for (int i = 0; i < DRAWS; i++) {
        sa[i] = sample_copy(a, logits, N, NULL, 0);
        sb[i] = sample_copy(b, logits, N, NULL, 0);
        sc[i] = sample_copy(c, logits, N, NULL, 0);
        ASSERT(sa[i] >= 0 && sa[i] < N);
        ASSERT_EQ_INT(sa[i], sb[i]);
        differ += sa[i] != sc[i];
        if (!seen[sa[i]]++) distinct_vals++;
    }
    ASSERT(differ > 100);      /* a different seed gives a different sequence */
    ASSERT(distinct_vals > 3); /* and it is actually random */
    /* reseeding replays the sequence */
    qf_sampler_reseed(a, 42);
    for (int i = 0; i < DRAWS; i++) ASSERT_EQ_INT(sample_copy(a, logits, N, NULL, 0), sb[i]);
    qf_sampler_free(a);
    qf_sampler_free(b);
    qf_sampler_free(c);

    /* random seeds are picked, reported, and differ between samplers */
    p.seed = QF_SAMPLE_SEED_RANDOM;
    qf_sampler *r1 = qf_sampler_new(&p, N, NULL);
    qf_sampler *r2 = qf_sampler_new(&p, N, NULL);
    ASSERT(r1 && r2);
    ASSERT(qf_sampler_seed(r1) != QF_SAMPLE_SEED_RANDOM);
    ASSERT(qf_sampler_seed(r1) != qf_sampler_seed(r2));
    qf_sampler_free(r1);
    qf_sampler_free(r2);
}

/* ---- distribution ---- */

static void softmax(const float *l, int n, float temp, double *out) {
    double m = -INFINITY, z = 0;
    for (int i = 0; i < n; i++) m = l[i] > m ? l[i] : m;
    for (int i = 0; i < n; i++) z += exp((l[i] - m) / temp);
    for (int i = 0; i < n; i++) out[i] = exp((l[i] - m) / temp) / z;
}

/* chi-square statistic of counts against probabilities */
static double chi2(const long *cnt, const double *p, int n, long draws) {
    double x = 0;
    for (int i = 0; i < n; i++) {
        double e = p[i] * (double)draws;
        double d = (double)cnt[i] - e;
        x += d * d / e;
    }
    return x;
}

static void test_distribution_matches_softmax(void) {
    const float l[5] = {0.5f, -1.0f, 2.0f, 0.0f, 1.2f};
    double want[5];
    softmax(l, 5, 1.0f, want);
    qf_sample_params p = plain(1.0f);
    p.seed = qf_test_seed();
    qf_sampler *s = qf_sampler_new(&p, 5, NULL);
    ASSERT(s);
    /* exact distribution */
    qf_token_prob tp[5];
    float buf[5];
    memcpy(buf, l, sizeof(buf));
    ASSERT_EQ_INT(qf_sampler_dist(s, buf, NULL, 0, tp, 5), 5);
    ASSERT_EQ_INT(tp[0].id, 2);
    for (int i = 0; i < 5; i++) ASSERT_NEAR(tp[i].p, want[tp[i].id], 1e-6);
    /* empirical: 100k draws, chi-square with 4 dof; 35 is beyond p = 1e-6 */
    long cnt[5] = {0};
    const long draws = 100000;
    for (long i = 0; i < draws; i++) cnt[sample_copy(s, l, 5, NULL, 0)]++;
    double x = chi2(cnt, want, 5, draws);
    ASSERT_MSG(x < 35.0, "chi2 %.2f counts %ld %ld %ld %ld %ld", x, cnt[0], cnt[1], cnt[2],
               cnt[3], cnt[4]);
    qf_sampler_free(s);
}

static void test_temperature(void) {
    const float l[2] = {0.0f, 1.0f};
    const float temps[] = {0.5f, 1.0f, 2.0f};
    double prev_top = 1.1;
    for (int t = 0; t < 3; t++) {
        qf_sample_params p = plain(temps[t]);
        qf_sampler *s = qf_sampler_new(&p, 2, NULL);
        ASSERT(s);
        float buf[2] = {l[0], l[1]};
        qf_token_prob tp[2];
        ASSERT_EQ_INT(qf_sampler_dist(s, buf, NULL, 0, tp, 2), 2);
        /* p(1) = 1 / (1 + e^{-1/T}) */
        double want = 1.0 / (1.0 + exp(-1.0 / temps[t]));
        ASSERT_EQ_INT(tp[0].id, 1);
        ASSERT_NEAR(tp[0].p, want, 1e-6);
        ASSERT_NEAR(tp[1].p, 1.0 - want, 1e-6);
        ASSERT(tp[0].p < prev_top); /* hotter -> flatter */
        prev_top = tp[0].p;
        long ones = 0;
        for (int i = 0; i < 20000; i++) ones += sample_copy(s, l, 2, NULL, 0);
        /* binomial sd ~ 0.0035; 6 sd */
        ASSERT_NEAR((double)ones / 20000.0, want, 0.021);
        qf_sampler_free(s);
    }
    /* a tiny temperature is greedy-like but well defined */
    qf_sample_params p = plain(1e-30f);
    qf_sampler *s = qf_sampler_new(&p, 2, NULL);
    ASSERT(s);
    for (int i = 0; i < 100; i++) ASSERT_EQ_INT(sample_copy(s, l, 2, NULL, 0), 1);
    qf_sampler_free(s);
}

/* ---- truncation ---- */

static void test_top_k(void) {
    enum { N = 1000 };
    static float l[N], buf[N];
    qf_sample_params p = plain(1.5f);
    p.top_k = 1;
    qf_sampler *s = qf_sampler_new(&p, N, NULL);
    ASSERT(s);
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < N; i++) l[i] = (float)(urand() * 10.0);
        if (trial % 3 == 0) l[N - 1] = l[7] = 11.0f; /* tie: lower id wins */
        memcpy(buf, l, sizeof(l));
        ASSERT_EQ_INT(qf_sampler_sample(s, buf, NULL, 0), qf_sample_argmax(l, N));
    }
    qf_sampler_free(s);

    /* top_k = 2 with a three-way tie keeps the two lowest ids */
    p.top_k = 2;
    s = qf_sampler_new(&p, 5, NULL);
    ASSERT(s);
    float t[5] = {1.0f, 5.0f, 5.0f, 5.0f, 0.0f};
    qf_token_prob tp[5];
    ASSERT_EQ_INT(qf_sampler_dist(s, t, NULL, 0, tp, 5), 2);
    ASSERT_EQ_INT(tp[0].id, 1);
    ASSERT_EQ_INT(tp[1].id, 2);
    ASSERT_NEAR(tp[0].p, 0.5, 1e-6);
    for (int i = 0; i < 500; i++) {
        const float t2[5] = {1.0f, 5.0f, 5.0f, 5.0f, 0.0f};
        int32_t id = sample_copy(s, t2, 5, NULL, 0);
        ASSERT(id == 1 || id == 2);
    }
    qf_sampler_free(s);
}

/* probabilities 0.3 0.05 0.5 0.15 (sorted: id2, id0, id3, id1) plus a fifth
 * token of negligible mass, so that top_k = 4 exercises the heap path while
 * leaving the same distribution as no top_k at all */
static void quad(float *l) {
    l[0] = logf(0.3f);
    l[1] = logf(0.05f);
    l[2] = logf(0.5f);
    l[3] = logf(0.15f);
    l[4] = -100.0f;
}

static void test_top_p(void) {
    const struct {
        float top_p;
        int kept;
    } cases[] = {{0.75f, 2}, {0.3f, 1}, {0.81f, 3}, {0.97f, 4}};
    for (int c = 0; c < 4; c++) {
        for (int use_k = 0; use_k < 2; use_k++) { /* heap path (top_k=4) and no-top_k path */
            qf_sample_params p = plain(1.0f);
            p.top_p = cases[c].top_p;
            p.top_k = use_k ? 4 : 0;
            qf_sampler *s = qf_sampler_new(&p, 5, NULL);
            ASSERT(s);
            float l[5];
            quad(l);
            qf_token_prob tp[5];
            ASSERT_EQ_INT(qf_sampler_dist(s, l, NULL, 0, tp, 5), cases[c].kept);
            const int order[4] = {2, 0, 3, 1};
            const double prob[4] = {0.5, 0.3, 0.15, 0.05};
            double mass = 0;
            for (int i = 0; i < cases[c].kept; i++) mass += prob[i];
            for (int i = 0; i < cases[c].kept; i++) {
                ASSERT_EQ_INT(tp[i].id, order[i]);
                ASSERT_NEAR(tp[i].p, prob[i] / mass, 1e-5);
            }
            qf_sampler_free(s);
        }
    }
    /* top_p 0.75 by sampling: only ids 2 and 0, about 5:3 */
    qf_sample_params p = plain(1.0f);
    p.top_p = 0.75f;
    qf_sampler *s = qf_sampler_new(&p, 5, NULL);
    ASSERT(s);
    long cnt[5] = {0};
    for (int i = 0; i < 20000; i++) {
        float l[5];
        quad(l);
        cnt[qf_sampler_sample(s, l, NULL, 0)]++;
    }
    ASSERT(cnt[1] == 0 && cnt[3] == 0 && cnt[4] == 0);
    ASSERT_NEAR((double)cnt[2] / 20000.0, 0.625, 0.025);
    qf_sampler_free(s);

    /* a flat 5000-token vocabulary needs a long prefix (the selection has to
     * grow past its first guesses): k/5000 >= 0.9013 first at k = 4507 */
    enum { N = 5000 };
    static float flat[N];
    p.top_p = 0.9013f;
    s = qf_sampler_new(&p, N, NULL);
    ASSERT(s);
    static qf_token_prob big[N];
    ASSERT_EQ_INT(qf_sampler_dist(s, flat, NULL, 0, big, N), 4507);
    ASSERT_EQ_INT(big[0].id, 0);
    ASSERT_EQ_INT(big[4506].id, 4506); /* equal logits: lowest ids first */
    ASSERT_NEAR(big[100].p, 1.0 / 4507.0, 1e-7);
    qf_sampler_free(s);
}

static void test_min_p(void) {
    /* min_p 1 keeps exactly the tokens tied at the maximum (p >= p_max) */
    {
        qf_sample_params p = plain(1.0f);
        p.min_p = 1.0f;
        qf_sampler *s = qf_sampler_new(&p, 4, NULL);
        ASSERT(s);
        float l[4] = {1.0f, 3.0f, 2.9f, 3.0f};
        qf_token_prob tp[4];
        ASSERT_EQ_INT(qf_sampler_dist(s, l, NULL, 0, tp, 4), 2);
        ASSERT(tp[0].id == 1 && tp[1].id == 3);
        qf_sampler_free(s);
    }
    const struct {
        float min_p;
        int kept;
    } cases[] = {{0.2f, 3}, {0.7f, 1}, {0.05f, 4}, {0.59f, 2}, {1.0f, 1}, {3.0f, 1}};
    for (int c = 0; c < 6; c++) {
        for (int use_k = 0; use_k < 2; use_k++) {
            qf_sample_params p = plain(1.0f);
            p.min_p = cases[c].min_p;
            p.top_k = use_k ? 4 : 0;
            qf_sampler *s = qf_sampler_new(&p, 5, NULL);
            ASSERT(s);
            float l[5];
            quad(l);
            qf_token_prob tp[5];
            int32_t kept = qf_sampler_dist(s, l, NULL, 0, tp, 5);
            ASSERT_MSG(kept == cases[c].kept, "min_p %g top_k %d: kept %d want %d",
                       (double)cases[c].min_p, p.top_k, kept, cases[c].kept);
            ASSERT_EQ_INT(tp[0].id, 2);
            qf_sampler_free(s);
        }
    }
}

/* Naive reference: sort everything, then top_k, top_p, min_p, temperature. */
typedef struct rc {
    int32_t id;
    float l;
} rc;
static int rc_cmp(const void *a, const void *b) {
    const rc *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}
static int ref_dist(const float *l, int n, const qf_sample_params *p, rc *tmp, double *prob) {
    for (int i = 0; i < n; i++) tmp[i] = (rc){i, l[i]};
    qsort(tmp, (size_t)n, sizeof(rc), rc_cmp);
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    double z = 0;
    for (int i = 0; i < k; i++) z += exp((double)tmp[i].l - tmp[0].l);
    int len = k;
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < k; i++) {
            cum += exp((double)tmp[i].l - tmp[0].l) / z;
            if (cum >= p->top_p) {
                len = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        float thr = tmp[0].l + logf(p->min_p);
        int j = 1;
        while (j < len && tmp[j].l >= thr) j++;
        len = j;
    }
    double w = 0;
    for (int i = 0; i < len; i++) {
        prob[i] = exp(((double)tmp[i].l - tmp[0].l) / p->temperature);
        w += prob[i];
    }
    for (int i = 0; i < len; i++) prob[i] /= w;
    return len;
}

static void test_chain_vs_reference(void) {
    enum { N = 3000 };
    static float l[N], buf[N];
    static rc tmp[N];
    static double prob[N];
    static qf_token_prob tp[N];
    for (int trial = 0; trial < 300; trial++) {
        qf_sample_params p = plain((float)(0.2 + urand() * 1.8));
        int r = trial % 4;
        p.top_k = r == 0 ? 0 : r == 1 ? 1 + (int)(urand() * 100) : r == 2 ? N + 5 : 2000;
        p.top_p = urand() < 0.7 ? (float)(0.3 + urand() * 0.69) : 1.0f;
        p.min_p = urand() < 0.5 ? (float)(urand() * 0.2) : 0.0f;
        double spread = 1.0 + urand() * 15.0;
        for (int i = 0; i < N; i++) l[i] = (float)(urand() * spread);
        if (trial % 5 == 0) {
            for (int i = 0; i < N; i += 3) l[i] = l[0]; /* many ties */
        }
        qf_sampler *s = qf_sampler_new(&p, N, NULL);
        ASSERT(s);
        memcpy(buf, l, sizeof(l));
        int32_t kept = qf_sampler_dist(s, buf, NULL, 0, tp, N);
        int want = ref_dist(l, N, &p, tmp, prob);
        ASSERT_MSG(kept == want, "trial %d: kept %d want %d (k %d p %g min_p %g)", trial, kept,
                   want, p.top_k, (double)p.top_p, (double)p.min_p);
        for (int i = 0; i < kept; i++) {
            ASSERT_EQ_INT(tp[i].id, tmp[i].id);
            ASSERT_NEAR(tp[i].p, prob[i], 1e-6);
        }
        /* and a drawn token is always one of the kept */
        for (int d = 0; d < 20; d++) {
            memcpy(buf, l, sizeof(l));
            int32_t id = qf_sampler_sample(s, buf, NULL, 0);
            int found = 0;
            for (int i = 0; i < kept && !found; i++) found = tmp[i].id == id;
            ASSERT_MSG(found, "trial %d: drew %d outside the kept set", trial, id);
        }
        qf_sampler_free(s);
    }
}

/* ---- penalties ---- */

static void test_penalties(void) {
    const float base[5] = {2.0f, -1.0f, 0.5f, 3.0f, 0.0f};
    /* ids outside [0, 5) are ignored */
    const int32_t hist[] = {0, 1, 1, 3, 4, 4, 4, 9999, -5};
    const int32_t nh = 9;
    const float rp = 1.5f, fq = 0.25f, pr = 0.5f;
    qf_sample_params p = plain(1.0f);
    p.repeat_penalty = rp;
    p.frequency_penalty = fq;
    p.presence_penalty = pr;
    p.repeat_last_n = -1;
    qf_sampler *s = qf_sampler_new(&p, 5, NULL);
    ASSERT(s);
    float l[5];
    memcpy(l, base, sizeof(l));
    ASSERT_EQ_INT(qf_sampler_penalize(s, l, hist, nh), QF_OK);
    /* positive logits divided, non-positive multiplied, then count * freq + presence */
    ASSERT_NEAR(l[0], 2.0f / rp - (1 * fq + pr), 1e-6);
    ASSERT_NEAR(l[1], -1.0f * rp - (2 * fq + pr), 1e-6);
    ASSERT_NEAR(l[2], 0.5f, 0);
    ASSERT_NEAR(l[3], 3.0f / rp - (1 * fq + pr), 1e-6);
    ASSERT_NEAR(l[4], 0.0f * rp - (3 * fq + pr), 1e-6);
    qf_sampler_free(s);

    /* window of the last 3: only the last id 4 is in range; counted once */
    p.repeat_last_n = 3;
    s = qf_sampler_new(&p, 5, NULL);
    ASSERT(s);
    memcpy(l, base, sizeof(l));
    ASSERT_EQ_INT(qf_sampler_penalize(s, l, hist, nh), QF_OK);
    ASSERT_NEAR(l[0], 2.0f, 0);
    ASSERT_NEAR(l[1], -1.0f, 0);
    ASSERT_NEAR(l[3], 3.0f, 0);
    ASSERT_NEAR(l[4], -(1 * fq + pr), 1e-6);
    qf_sampler_free(s);

    /* repeat_last_n 0 turns all penalties off */
    p.repeat_last_n = 0;
    s = qf_sampler_new(&p, 5, NULL);
    ASSERT(s);
    memcpy(l, base, sizeof(l));
    ASSERT_EQ_INT(qf_sampler_penalize(s, l, hist, nh), QF_OK);
    for (int i = 0; i < 5; i++) ASSERT_NEAR(l[i], base[i], 0);
    qf_sampler_free(s);

    /* only the repeat penalty: presence/frequency terms absent */
    p = plain(0.0f);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 64;
    s = qf_sampler_new(&p, 5, NULL);
    ASSERT(s);
    memcpy(l, base, sizeof(l));
    ASSERT_EQ_INT(qf_sampler_penalize(s, l, hist, nh), QF_OK);
    ASSERT_NEAR(l[0], 1.0f, 1e-6);
    ASSERT_NEAR(l[1], -2.0f, 1e-6);
    ASSERT_NEAR(l[3], 1.5f, 1e-6);
    /* and it steers greedy decoding: with history {3}, id 3 drops to 1.5 and
     * id 0 (2.0) wins; without history id 3 (3.0) wins */
    const int32_t h3[] = {3};
    ASSERT_EQ_INT(sample_copy(s, base, 5, h3, 1), 0);
    ASSERT_EQ_INT(sample_copy(s, base, 5, NULL, 0), 3);
    qf_sampler_free(s);
}

/* ---- bad arguments and allocation failures ---- */

static void test_bad_args(void) {
    qf_err err = {0};
    qf_sample_params p = qf_sample_params_default();
    ASSERT(qf_sampler_new(NULL, 10, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    qf_err_clear(&err);
    ASSERT(qf_sampler_new(&p, 0, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    ASSERT(qf_sampler_new(&p, -5, NULL) == NULL);
    qf_sample_params q = p;
    q.temperature = NAN;
    ASSERT(qf_sampler_new(&q, 10, NULL) == NULL);
    q = p;
    q.top_p = INFINITY;
    ASSERT(qf_sampler_new(&q, 10, NULL) == NULL);
    q = p;
    q.repeat_penalty = 0.0f;
    qf_err_clear(&err);
    ASSERT(qf_sampler_new(&q, 10, &err) == NULL);
    ASSERT(strstr(err.msg, "repeat_penalty") != NULL);
    q = p;
    q.repeat_last_n = -2;
    ASSERT(qf_sampler_new(&q, 10, NULL) == NULL);

    qf_sampler *s = qf_sampler_new(&p, 4, NULL);
    ASSERT(s);
    float l[4] = {0, 1, 2, 3};
    int32_t h[1] = {0};
    ASSERT_EQ_INT(qf_sampler_sample(NULL, l, NULL, 0), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_sampler_sample(s, NULL, NULL, 0), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_sampler_sample(s, l, NULL, 3), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_sampler_sample(s, l, h, -1), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_sampler_dist(s, l, NULL, 0, NULL, 2), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_sampler_dist(s, l, NULL, 0, NULL, -1), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_sampler_penalize(s, NULL, h, 1), QF_ERR_INVALID);
    /* count-only query */
    float l2[4] = {0, 1, 2, 3};
    ASSERT(qf_sampler_dist(s, l2, NULL, 0, NULL, 0) >= 1);
    ASSERT(qf_sampler_params(s)->top_k == 40);
    qf_sampler_free(s);
    qf_sampler_free(NULL);
    qf_sampler_reseed(NULL, 1);
}

static void test_oom(void) {
    qf_sample_params p = qf_sample_params_default();
    p.repeat_penalty = 1.1f;
    int ok = 0;
    for (long n = 0; n < 20 && !ok; n++) {
        qf_err err = {0};
        qf_mem_fail_after(n);
        qf_sampler *s = qf_sampler_new(&p, 100, &err);
        qf_mem_fail_after(-1);
        if (s) {
            ok = 1;
            qf_sampler_free(s);
        } else {
            ASSERT_EQ_INT(err.code, QF_ERR_NOMEM);
        }
    }
    ASSERT(ok);
    /* growth during sampling: whole-history window and no top_k */
    p.repeat_last_n = -1;
    p.top_k = 0;
    qf_sampler *s = qf_sampler_new(&p, 1000, NULL);
    ASSERT(s);
    static float l[1000];
    static int32_t h[5000];
    for (int i = 0; i < 5000; i++) h[i] = i % 1000;
    qf_mem_fail_after(0);
    int32_t r = qf_sampler_sample(s, l, h, 5000);
    qf_mem_fail_after(-1);
    ASSERT_EQ_INT(r, QF_ERR_NOMEM);
    r = qf_sampler_sample(s, l, h, 5000);
    ASSERT(r >= 0 && r < 1000);
    qf_sampler_free(s);
}

static void test_large_vocab(void) {
    /* default chain on a 256k vocabulary: in range, deterministic */
    enum { N = 262144 };
    float *l = qf_malloc(N * sizeof(float)), *buf = qf_malloc(N * sizeof(float));
    ASSERT(l && buf);
    for (int i = 0; i < N; i++) l[i] = (float)(urand() * 20.0 - 10.0);
    qf_sample_params p = qf_sample_params_default();
    p.seed = 7;
    qf_sampler *a = qf_sampler_new(&p, N, NULL), *b = qf_sampler_new(&p, N, NULL);
    ASSERT(a && b);
    for (int i = 0; i < 20; i++) {
        memcpy(buf, l, N * sizeof(float));
        int32_t x = qf_sampler_sample(a, buf, NULL, 0);
        memcpy(buf, l, N * sizeof(float));
        int32_t y = qf_sampler_sample(b, buf, NULL, 0);
        ASSERT(x >= 0 && x < N);
        ASSERT_EQ_INT(x, y);
        ASSERT(l[x] >= l[qf_sample_argmax(l, N)] + logf(0.05f)); /* min_p held */
    }
    qf_sampler_free(a);
    qf_sampler_free(b);
    qf_free(l);
    qf_free(buf);
}

/* ---- stop strings ---- */

/* Feed pieces, concatenate released text into acc; returns matched. */
static bool feed_all(qf_stop *s, const char *const *pieces, int n, char *acc, size_t cap,
                     int32_t *idx) {
    bool matched = false;
    for (int i = 0; i < n; i++) {
        qf_stop_out o;
        if (qf_stop_feed(s, pieces[i], strlen(pieces[i]), &o) != QF_OK) return false;
        strncat(acc, o.text ? o.text : "", o.len < cap - strlen(acc) - 1 ? o.len : 0);
        matched = o.matched;
        if (idx) *idx = o.stop_index;
    }
    return matched;
}

static void test_stop_split(void) {
    const char *stops[] = {"\nUSER:"};
    qf_stop *s = qf_stop_new(stops, 1, NULL);
    ASSERT(s);
    qf_stop_out o;
    ASSERT_EQ_INT(qf_stop_feed(s, "Hel", 3, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 3);
    ASSERT(memcmp(o.text, "Hel", 3) == 0 && !o.matched);
    ASSERT_EQ_INT(qf_stop_feed(s, "lo\nUS", 5, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 2); /* "\nUS" held back */
    ASSERT(memcmp(o.text, "lo", 2) == 0 && !o.matched);
    ASSERT_EQ_INT(qf_stop_pending(s), 3);
    ASSERT_EQ_INT(qf_stop_feed(s, "ER:", 3, &o), QF_OK);
    ASSERT(o.matched);
    ASSERT_EQ_INT(o.len, 0);
    ASSERT_EQ_INT(o.stop_index, 0);
    /* stays stopped */
    ASSERT_EQ_INT(qf_stop_feed(s, "more", 4, &o), QF_OK);
    ASSERT(o.matched && o.len == 0);
    ASSERT_EQ_INT(qf_stop_flush(s, &o), QF_OK);
    ASSERT(o.matched && o.len == 0);

    /* text before the stop in the same piece is released, text after dropped */
    qf_stop_reset(s);
    ASSERT_EQ_INT(qf_stop_feed(s, "ok\nUSER: again", 14, &o), QF_OK);
    ASSERT(o.matched);
    ASSERT_EQ_INT(o.len, 2);
    ASSERT(memcmp(o.text, "ok", 2) == 0);
    qf_stop_free(s);
}

static void test_stop_prefix_released(void) {
    const char *stops[] = {"\nUSER:"};
    qf_stop *s = qf_stop_new(stops, 1, NULL);
    ASSERT(s);
    const char *pieces[] = {"a\nUS", "ED car"};
    qf_stop_out o;
    ASSERT_EQ_INT(qf_stop_feed(s, pieces[0], 4, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 1);
    ASSERT_EQ_INT(qf_stop_feed(s, pieces[1], 6, &o), QF_OK);
    ASSERT(!o.matched);
    ASSERT_EQ_INT(o.len, 9);
    ASSERT(memcmp(o.text, "\nUSED car", 9) == 0);
    /* a prefix still open at the end comes out at flush */
    ASSERT_EQ_INT(qf_stop_feed(s, "\nU", 2, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 0);
    ASSERT_EQ_INT(qf_stop_flush(s, &o), QF_OK);
    ASSERT(!o.matched);
    ASSERT_EQ_INT(o.len, 2);
    ASSERT(memcmp(o.text, "\nU", 2) == 0);
    ASSERT_EQ_INT(qf_stop_pending(s), 0);
    qf_stop_free(s);
}

static void test_stop_multiple(void) {
    const char *stops[] = {"</s>", "###", "END"};
    qf_stop *s = qf_stop_new(stops, 3, NULL);
    ASSERT(s);
    char acc[256] = "";
    const char *pieces[] = {"foo #", "# bar ##", "#baz"};
    int32_t idx = -1;
    ASSERT(feed_all(s, pieces, 3, acc, sizeof(acc), &idx));
    ASSERT_STR_EQ(acc, "foo ## bar ");
    ASSERT_EQ_INT(idx, 1);
    qf_stop_free(s);

    /* earliest occurrence wins, whatever the list order */
    const char *st2[] = {"world", "lo"};
    s = qf_stop_new(st2, 2, NULL);
    ASSERT(s);
    qf_stop_out o;
    ASSERT_EQ_INT(qf_stop_feed(s, "hello world", 11, &o), QF_OK);
    ASSERT(o.matched);
    ASSERT_EQ_INT(o.stop_index, 1);
    ASSERT_EQ_INT(o.len, 3);
    qf_stop_free(s);

    /* same start: the first listed wins */
    const char *st3[] = {"abc", "ab"};
    s = qf_stop_new(st3, 2, NULL);
    ASSERT(s);
    ASSERT_EQ_INT(qf_stop_feed(s, "xxabc", 5, &o), QF_OK);
    ASSERT(o.matched);
    ASSERT_EQ_INT(o.stop_index, 0);
    ASSERT_EQ_INT(o.len, 2);
    qf_stop_free(s);
}

static void test_stop_utf8(void) {
    qf_stop *s = qf_stop_new(NULL, 0, NULL); /* no stops: only UTF-8 holdback */
    ASSERT(s);
    const char emoji[] = "\xF0\x9F\x98\x80"; /* U+1F600 */
    qf_stop_out o;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ_INT(qf_stop_feed(s, emoji + i, 1, &o), QF_OK);
        ASSERT_EQ_INT(o.len, 0);
        ASSERT_EQ_INT(qf_stop_pending(s), (size_t)i + 1);
    }
    ASSERT_EQ_INT(qf_stop_feed(s, emoji + 3, 1, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 4);
    ASSERT(memcmp(o.text, emoji, 4) == 0);

    /* text before a split character is released at once */
    ASSERT_EQ_INT(qf_stop_feed(s, "a\xC3", 2, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 1);
    ASSERT_EQ_INT(qf_stop_feed(s, "\xA9" "b", 2, &o), QF_OK); /* é + b */
    ASSERT_EQ_INT(o.len, 3);
    ASSERT(memcmp(o.text, "\xC3\xA9" "b", 3) == 0);

    /* a lead byte that never completes is released once the next byte shows it */
    ASSERT_EQ_INT(qf_stop_feed(s, "\xE2", 1, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 0);
    ASSERT_EQ_INT(qf_stop_feed(s, "A", 1, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 2);
    ASSERT(memcmp(o.text, "\xE2" "A", 2) == 0);

    /* incomplete sequence at the very end: flush writes U+FFFD */
    ASSERT_EQ_INT(qf_stop_feed(s, "z\xF0\x9F", 3, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 1);
    ASSERT_EQ_INT(qf_stop_flush(s, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 3);
    ASSERT(memcmp(o.text, "\xEF\xBF\xBD", 3) == 0);
    qf_stop_free(s);

    /* a stop made of multi-byte characters, split inside a character */
    const char *st[] = {"\xE2\x80\x94STOP"}; /* "—STOP" */
    s = qf_stop_new(st, 1, NULL);
    ASSERT(s);
    char acc[64] = "";
    const char *pieces[] = {"x\xE2", "\x80", "\x94ST", "OP tail"};
    ASSERT(feed_all(s, pieces, 4, acc, sizeof(acc), NULL));
    ASSERT_STR_EQ(acc, "x");
    qf_stop_free(s);
}

static void test_stop_empty_list(void) {
    qf_stop *s = qf_stop_new(NULL, 0, NULL);
    ASSERT(s);
    qf_stop_out o;
    ASSERT_EQ_INT(qf_stop_feed(s, "USER: hi\n", 9, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 9);
    ASSERT(!o.matched && o.stop_index == -1);
    ASSERT_EQ_INT(qf_stop_feed(s, NULL, 0, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 0);
    ASSERT_EQ_INT(qf_stop_flush(s, &o), QF_OK);
    ASSERT_EQ_INT(o.len, 0);
    qf_stop_free(s);
}

static void test_stop_bad_args(void) {
    qf_err err = {0};
    ASSERT(qf_stop_new(NULL, 2, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    const char *with_null[] = {"a", NULL};
    ASSERT(qf_stop_new(with_null, 2, NULL) == NULL);
    const char *with_empty[] = {"a", ""};
    qf_err_clear(&err);
    ASSERT(qf_stop_new(with_empty, 2, &err) == NULL);
    ASSERT(strstr(err.msg, "empty") != NULL);
    const char *ok[] = {"a"};
    qf_stop *s = qf_stop_new(ok, 1, NULL);
    ASSERT(s);
    qf_stop_out o;
    ASSERT_EQ_INT(qf_stop_feed(NULL, "x", 1, &o), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_stop_feed(s, NULL, 1, &o), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_stop_feed(s, "x", 1, NULL), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_stop_flush(NULL, &o), QF_ERR_INVALID);
    qf_stop_free(s);
    qf_stop_free(NULL);

    /* allocation failures: constructor and feed report NOMEM, nothing leaks */
    const char *three[] = {"ab", "cd", "ef"};
    int built = 0;
    for (long n = 0; n < 20 && !built; n++) {
        qf_mem_fail_after(n);
        qf_stop *t = qf_stop_new(three, 3, &err);
        qf_mem_fail_after(-1);
        if (t) {
            built = 1;
            qf_mem_fail_after(0);
            qf_status st = qf_stop_feed(t, "xyz", 3, &o);
            qf_mem_fail_after(-1);
            ASSERT_EQ_INT(st, QF_ERR_NOMEM);
            ASSERT_EQ_INT(o.len, 0);
            ASSERT_EQ_INT(qf_stop_feed(t, "xyz", 3, &o), QF_OK);
            ASSERT_EQ_INT(o.len, 3);
            qf_stop_free(t);
        } else {
            ASSERT_EQ_INT(err.code, QF_ERR_NOMEM);
        }
    }
    ASSERT(built);
}

/* Random text over a small alphabet (with a 2-byte character), random
 * splits: released text must equal the text cut at the earliest stop, and
 * every prefix released so far must end on a character boundary. */
static void test_stop_random(void) {
    const char *alpha[] = {"a", "b", "\n", "\xC3\xA9"};
    const char *stops[] = {"ab\nb", "bba", ("\xC3\xA9\xC3\xA9" "a")};
    for (int trial = 0; trial < 2000; trial++) {
        char text[256] = "";
        int nch = 5 + (int)(urand() * 40);
        for (int i = 0; i < nch; i++) strcat(text, alpha[(int)(urand() * 4)]);
        size_t tl = strlen(text);
        size_t cut = tl;
        for (int k = 0; k < 3; k++) {
            const char *h = strstr(text, stops[k]);
            if (h && (size_t)(h - text) < cut) cut = (size_t)(h - text);
        }
        qf_stop *s = qf_stop_new(stops, 3, NULL);
        ASSERT(s);
        char acc[300];
        size_t al = 0;
        bool matched = false;
        for (size_t pos = 0; pos < tl && !matched;) {
            size_t n = 1 + (size_t)(urand() * 5);
            if (n > tl - pos) n = tl - pos;
            qf_stop_out o;
            ASSERT_EQ_INT(qf_stop_feed(s, text + pos, n, &o), QF_OK);
            memcpy(acc + al, o.text ? o.text : "", o.len);
            al += o.len;
            matched = o.matched;
            /* boundary: the last released byte never starts an unfinished char */
            if (al > 0) {
                unsigned char last = (unsigned char)acc[al - 1];
                ASSERT_MSG(last != 0xC3, "trial %d: released half a character", trial);
            }
            pos += n;
        }
        if (!matched) {
            qf_stop_out o;
            ASSERT_EQ_INT(qf_stop_flush(s, &o), QF_OK);
            memcpy(acc + al, o.text ? o.text : "", o.len);
            al += o.len;
        }
        ASSERT_MSG(matched == (cut < tl), "trial %d: matched %d cut %zu of %zu", trial, matched,
                   cut, tl);
        ASSERT_MSG(al == cut && memcmp(acc, text, cut) == 0, "trial %d: released %zu bytes, want %zu",
                   trial, al, cut);
        qf_stop_free(s);
    }
}

int main(void) {
    RUN_TEST(test_argmax);
    RUN_TEST(test_seed_determinism);
    RUN_TEST(test_distribution_matches_softmax);
    RUN_TEST(test_temperature);
    RUN_TEST(test_top_k);
    RUN_TEST(test_top_p);
    RUN_TEST(test_min_p);
    RUN_TEST(test_chain_vs_reference);
    RUN_TEST(test_penalties);
    RUN_TEST(test_bad_args);
    RUN_TEST(test_oom);
    RUN_TEST(test_large_vocab);
    RUN_TEST(test_stop_split);
    RUN_TEST(test_stop_prefix_released);
    RUN_TEST(test_stop_multiple);
    RUN_TEST(test_stop_utf8);
    RUN_TEST(test_stop_empty_list);
    RUN_TEST(test_stop_bad_args);
    RUN_TEST(test_stop_random);
    TEST_MAIN_END();
}
