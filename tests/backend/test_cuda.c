/* test_cuda.c - the GPU forward pass against the CPU forward pass and the
 * llama.cpp references. Skips (77) without a GPU backend or device.
 *
 *   - kernels: each weight format's device matmul == qf_gemm on the CPU with
 *     the same activation encoding, within 2e-4 of the sum of |w*x|, for
 *     1..40 tokens and shapes that need row and k padding; for up to 8
 *     tokens the staged and unstaged kernels give the same bits, and for one
 *     token the matrix-vector kernel and mmq; the matrix-vector kernel with
 *     its own RMSNorm + encoding and SwiGLU epilogue gives the bits of the
 *     separate kernels, and so does a whole forward pass with every
 *     one-token fusion on vs off;
 *   - bad arguments and batches are refused with the CPU path's codes;
 *   - every reference model (../shared/testdata): teacher-forced logits
 *     within the tolerances tests/model/test_reference.c applies to the CPU
 *     path (F32 models: 1e-3 of llama.cpp, every argmax; quantized: 5% of the
 *     logit range and the argmax wherever llama.cpp's margin is clear), and
 *     within 1e-3 (F32 weights and kv) / 0.5% of the range (f16 kv) / 5% of
 *     the range (quantized, see test_reference_models) of the CPU fast path
 *     with the same kv type;
 *   - stories260K: free-running greedy ids identical to the CPU path (all
 *     64 with an f32 kv, up to llama.cpp's first near-tie with f16) and to
 *     llama.cpp (f32 kv) up to its first near-tie;
 *   - sequences batched together == each run alone (prefill and decode),
 *     copy on write of a forked sequence's shared block, attention windows
 *     with sinks, a long context through the split attention, and
 *     synthesized qwen2/qwen3/llama models with quantized weights (biases,
 *     q/k norms, a q4_k_m mix with separate Q/K/V formats, 16 query heads
 *     per kv head).
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <unistd.h>

#include "backend/backend.h"
#include "base/mem.h"
#include "base/pool.h"
#include "model/model.h"
#include "model/synth.h"
#include "qf_test.h"
#include "quant/kernels.h"
#ifdef QF_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

static qf_pool *g_pool;

/* ---- a sequence runner over either path ---- */

typedef struct runner {
    const qf_model *m;
    bool gpu;
    qf_kv *kv;
    qf_fwd *cpu;
    qf_gpu_fwd *g;
    int32_t n_batch;
} runner;

static int runner_init(runner *r, const qf_model *m, bool gpu, qf_type kv_type, int32_t n_ctx, int32_t n_seq,
                       int32_t n_batch) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->gpu = gpu;
    r->n_batch = n_batch;
    qf_err e = {0};
    qf_kv_params kp = qf_model_kv_params(m, (int64_t)n_ctx * n_seq + 64, n_seq, kv_type, 16);
    r->kv = qf_kv_new(&kp, &e);
    if (!r->kv) goto fail;
    if (gpu) r->g = qf_gpu_fwd_new(m, &kp, n_batch, n_ctx, -1, &e);
    else r->cpu = qf_fwd_new(m, r->kv, g_pool, n_batch, n_ctx, &e);
    if (gpu ? !r->g : !r->cpu) goto fail;
    return 0;
fail:
    fprintf(stderr, "runner: %s\n", e.msg);
    return -1;
}

static void runner_free(runner *r) {
    qf_gpu_fwd_free(r->g);
    qf_fwd_free(r->cpu);
    qf_kv_free(r->kv);
    memset(r, 0, sizeof *r);
}

static qf_status runner_decode(runner *r, const qf_batch *b, qf_err *e) {
    return r->gpu ? qf_gpu_fwd_decode(r->g, r->kv, b, e) : qf_fwd_decode(r->cpu, b, e);
}

static const float *runner_logits(const runner *r, int32_t j) {
    return r->gpu ? qf_gpu_fwd_logits(r->g, j) : qf_fwd_logits(r->cpu, j);
}

/* Append toks[0..n) to sequence seq at positions pos0.. (chunks of n_batch);
 * logits of the last token. */
static const float *runner_eval(runner *r, int32_t seq, int32_t pos0, const int32_t *toks, int32_t n) {
    int32_t pos[1024], sq[1024];
    int8_t lg[1024];
    for (int32_t i0 = 0; i0 < n; i0 += r->n_batch) {
        int32_t k = n - i0 < r->n_batch ? n - i0 : r->n_batch;
        if (k > 1024) return NULL;
        for (int32_t i = 0; i < k; i++) pos[i] = pos0 + i0 + i, sq[i] = seq, lg[i] = i0 + i == n - 1;
        qf_batch b = {k, toks + i0, pos, sq, lg};
        qf_err e = {0};
        if (runner_decode(r, &b, &e) != QF_OK) {
            fprintf(stderr, "decode: %s\n", e.msg);
            return NULL;
        }
    }
    return runner_logits(r, 0);
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static double range_of(const float *a, int n) {
    float lo = a[0], hi = a[0];
    for (int i = 1; i < n; i++) lo = a[i] < lo ? a[i] : lo, hi = a[i] > hi ? a[i] : hi;
    return (double)hi - lo;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static qf_model *load_testdata_model(const char *rel) {
    char path[1024];
    qf_testdata(rel, path, sizeof path);
    qf_err e = {0};
    qf_model_params mp = {.no_tokenizer = true};
    qf_model *m = qf_model_load(path, &mp, &e);
    if (!m) fprintf(stderr, "%s: %s\n", path, e.msg);
    return m;
}

/* ---- kernels ---- */

#ifdef QF_HAVE_CUDA
static uint32_t g_rng = 12345;
static float frand(void) {
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)((g_rng >> 8) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static void check_matmul(qf_type t, int rows, int cols, int n) {
    const qf_type_traits *tt = qf_type_get(t);
    ASSERT(tt && tt->from_float);
    size_t rb = qf_type_row_size(t, cols);
    float *wf = malloc(sizeof(float) * (size_t)rows * cols), *x = malloc(sizeof(float) * (size_t)n * cols);
    float *wd = malloc(sizeof(float) * (size_t)cols);
    uint8_t *w = malloc(rb * (size_t)rows), *xq = malloc(qf_act_row_size(t, cols) * (size_t)n + 64);
    float *yg = malloc(sizeof(float) * (size_t)n * rows), *yc = malloc(sizeof(float) * (size_t)n * rows);
    for (size_t i = 0; i < (size_t)rows * cols; i++) wf[i] = frand() * (1.0f + (float)(i % 7));
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = frand() * (i % 13 == 0 ? 8.0f : 1.0f);
    for (int r = 0; r < rows; r++) tt->from_float(wf + (size_t)r * cols, w + (size_t)r * rb, cols);
    qf_err e = {0};
    qf_status st = qf_cuda_test_matmul(t, rows, cols, n, w, x, yg, true, &e);
    if (st != QF_OK) fprintf(stderr, "%s\n", e.msg);
    ASSERT_EQ_INT(st, QF_OK);
    size_t ar = qf_act_row_size(t, cols);
    for (int i = 0; i < n; i++) qf_act_quantize(t, x + (size_t)i * cols, xq + (size_t)i * ar, cols);
    qf_gemm(t, w, rb, cols, 0, rows, xq, n, yc, rows);
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        tt->to_float(w + (size_t)r * rb, wd, cols);
        for (int i = 0; i < n; i++) {
            double mag = 0;
            for (int c = 0; c < cols; c++) mag += fabs((double)wd[c] * x[(size_t)i * cols + c]);
            double d = fabs((double)yg[(size_t)i * rows + r] - yc[(size_t)i * rows + r]) / (mag + 1e-30);
            if (!(d <= worst)) worst = d;
        }
    }
    free(wf), free(x), free(wd), free(w), free(xq), free(yg), free(yc);
    ASSERT_MSG(worst <= 2e-4, "%s %dx%d n=%d: relative error %.3g", tt->name, rows, cols, n, worst);
}

static void test_matmul_kernels(void) {
    const qf_type types[] = {QF_TYPE_Q4_0, QF_TYPE_Q8_0, QF_TYPE_Q4_K, QF_TYPE_Q6_K,
                             QF_TYPE_F32,  QF_TYPE_F16,  QF_TYPE_BF16};
    const int ns[] = {1, 5, 13, 40};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++)
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            int before = qf_test_failures;
            check_matmul(types[ti], 80, 512, ns[ni]);
            if (types[ti] == QF_TYPE_Q4_0 || types[ti] == QF_TYPE_Q8_0) check_matmul(types[ti], 48, 96, ns[ni]);
            if (qf_test_failures != before) return;
        }
    /* shapes like the 8B model's: down and Q/K/V projections, one token
     * (the matrix-vector kernel, 8 warps per tile) and a batch */
    check_matmul(QF_TYPE_Q4_0, 64, 14336, 1);
    check_matmul(QF_TYPE_Q8_0, 64, 14336, 1);
    check_matmul(QF_TYPE_Q4_0, 96, 4096, 1);
    check_matmul(QF_TYPE_Q8_0, 96, 4096, 1);
    check_matmul(QF_TYPE_Q4_K, 64, 14336, 32);
    /* the K-quants through the matrix-vector kernel: 8 warps per tile,
     * super-block k split, bit for bit against mmq (check_staging) */
    check_matmul(QF_TYPE_Q4_K, 64, 14336, 1);
    check_matmul(QF_TYPE_Q6_K, 64, 14336, 1);
    check_matmul(QF_TYPE_Q4_K, 96, 4096, 1);
    check_matmul(QF_TYPE_Q6_K, 96, 4096, 1);
    check_matmul(QF_TYPE_Q6_K, 48, 768, 1); /* 3 warps, uneven super-block split */
}

/* The matrix-vector kernel and its SwiGLU epilogue, bit for bit against
 * the separate kernels (mmq, the act kernel's SwiGLU encoding). */
static void check_fused(qf_type t, int rows, int cols, int n_ff) {
    const qf_type_traits *tt = qf_type_get(t);
    size_t rb = qf_type_row_size(t, cols);
    float *wf = malloc(sizeof(float) * (size_t)rows * cols), *x = malloc(sizeof(float) * (size_t)cols);
    float *nw = malloc(sizeof(float) * (size_t)cols), *y = malloc(sizeof(float) * (size_t)rows);
    uint8_t *w = malloc(rb * (size_t)rows);
    for (size_t i = 0; i < (size_t)rows * cols; i++) wf[i] = frand() * (1.0f + (float)(i % 5));
    for (int i = 0; i < cols; i++) x[i] = frand() * (i % 11 == 0 ? 20.0f : 1.0f), nw[i] = 0.5f + frand() * 0.4f;
    for (int r = 0; r < rows; r++) tt->from_float(wf + (size_t)r * cols, w + (size_t)r * rb, cols);
    qf_err e = {0};
    qf_status st = qf_cuda_test_matvec_fused(t, rows, cols, w, x, nw, 1e-5f, n_ff, y, &e);
    /* the product is not trivial: some outputs far from zero */
    double mx = 0;
    for (int r = 0; r < rows && st == QF_OK; r++) mx = fmax(mx, fabs(y[r]));
    free(wf), free(x), free(nw), free(y), free(w);
    ASSERT_MSG(st == QF_OK, "%s %dx%d n_ff %d: %s", tt->name, rows, cols, n_ff, e.msg);
    ASSERT_MSG(mx > 1.0, "%s %dx%d: products all near zero (%g)", tt->name, rows, cols, mx);
}

static void test_matvec_fused(void) {
    const qf_type types[] = {QF_TYPE_Q4_0, QF_TYPE_Q8_0};
    for (int i = 0; i < 2; i++) {
        int before = qf_test_failures;
        check_fused(types[i], 80, 4096, 0);   /* 8 warps per tile, one tile per block */
        check_fused(types[i], 48, 96, 0);     /* k padded to 128 */
        check_fused(types[i], 192, 512, 96);  /* 2 warps per tile, 4 tiles per block, SwiGLU */
        check_fused(types[i], 2048, 4096, 1024);
        check_fused(types[i], 2 * 8704, 1024, 8704); /* 4 warps per tile, many quads per block */
        check_fused(types[i], 28672, 256, 14336);    /* one warp per tile, 8 tiles a round */
        if (qf_test_failures != before) return;
    }
    qf_err e = {0};
    float z[64] = {0};
    ASSERT_EQ_INT(qf_cuda_test_matvec_fused(QF_TYPE_Q4_K, 32, 256, z, z, z, 1e-5f, 0, z, &e), QF_ERR_UNSUPPORTED);
    ASSERT_EQ_INT(qf_cuda_test_matvec_fused(QF_TYPE_Q4_0, 30, 64, z, z, z, 1e-5f, 16, z, &e), QF_ERR_INVALID);
}
#endif

/* ---- bad input ---- */

static void test_bad_args(void) {
    qf_model *m = load_testdata_model("models/stories260K.gguf");
    ASSERT(m);
    qf_err e = {0};
    qf_kv_params kp = qf_model_kv_params(m, 256, 2, QF_TYPE_F16, 16);
    ASSERT(qf_gpu_fwd_new(m, &kp, 8, 128, -2, &e) == NULL && e.code == QF_ERR_INVALID);
    ASSERT(qf_gpu_fwd_new(m, &kp, 8, 128, 0, &e) == NULL && e.code == QF_ERR_INVALID);
    qf_gpu_fwd *part = qf_gpu_fwd_new(m, &kp, 8, 128, 2, &e); /* partial offload: the last 2 layers */
    ASSERT(part && qf_gpu_fwd_cpu_layers(part) == m->hp.n_layer - 2);
    qf_gpu_fwd_free(part);
    ASSERT(qf_gpu_fwd_new(m, &kp, 0, 128, -1, &e) == NULL && e.code == QF_ERR_INVALID);
    qf_kv_params bad = kp;
    bad.kv_dim += 8;
    ASSERT(qf_gpu_fwd_new(m, &bad, 8, 128, -1, &e) == NULL && e.code == QF_ERR_INVALID);
    qf_kv *kv = qf_kv_new(&kp, &e), *other = NULL;
    qf_gpu_fwd *g = qf_gpu_fwd_new(m, &kp, 8, 128, -1, &e);
    if (!g) fprintf(stderr, "%s\n", e.msg);
    ASSERT(kv && g);
    int32_t tok[2] = {1, 5}, pos[2] = {0, 1}, seq[2] = {0, 0};
    int8_t lg[2] = {0, 1};
    qf_batch b = {2, tok, pos, seq, lg};
    int32_t badtok[2] = {1, 600};
    qf_batch bb = b;
    bb.tok = badtok;
    ASSERT_EQ_INT(qf_gpu_fwd_decode(g, kv, &bb, &e), QF_ERR_INVALID);
    int32_t badseq[2] = {0, 7};
    bb = b;
    bb.seq = badseq;
    ASSERT_EQ_INT(qf_gpu_fwd_decode(g, kv, &bb, &e), QF_ERR_INVALID);
    bb = b;
    bb.n = 0;
    ASSERT_EQ_INT(qf_gpu_fwd_decode(g, kv, &bb, &e), QF_ERR_INVALID);
    bb.n = 9;
    ASSERT_EQ_INT(qf_gpu_fwd_decode(g, kv, &bb, &e), QF_ERR_INVALID);
    int32_t farpos[2] = {0, 500};
    bb = b;
    bb.pos = farpos;
    ASSERT_EQ_INT(qf_gpu_fwd_decode(g, kv, &bb, &e), QF_ERR_RANGE);
    qf_kv_params kp2 = kp;
    kp2.n_blocks += 1;
    other = qf_kv_new(&kp2, &e);
    ASSERT(other);
    ASSERT_EQ_INT(qf_gpu_fwd_decode(g, other, &b, &e), QF_ERR_INVALID);
    qf_kv_free(other);
    ASSERT_EQ_INT(qf_gpu_fwd_copy_block(g, 0, (int32_t)kp.n_blocks, &e), QF_ERR_INVALID);
    /* still works after the refusals */
    ASSERT_EQ_INT(qf_gpu_fwd_decode(g, kv, &b, &e), QF_OK);
    ASSERT_EQ_INT(qf_gpu_fwd_n_logits(g), 1);
    ASSERT(qf_gpu_fwd_logits(g, 1) == NULL && qf_gpu_fwd_logits(g, -1) == NULL);
    const float *l = qf_gpu_fwd_logits(g, 0);
    ASSERT(l);
    for (int i = 0; i < m->hp.n_vocab; i++) ASSERT(isfinite(l[i]));
    qf_gpu_mem mem;
    qf_gpu_fwd_mem(g, &mem);
    ASSERT(mem.weights > 0 && mem.kv > 0 && mem.scratch > 0);
    ASSERT(qf_gpu_fwd_step_weight_bytes(g) > 0 && qf_gpu_fwd_step_weight_bytes(g) <= mem.weights);
    qf_gpu_fwd_free(g);
    qf_kv_free(kv);
    qf_model_free(m);
}

/* ---- reference models ---- */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

static int32_t *json_ints(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(*n ? *n : 1));
    for (int i = 0; i < *n; i++) v[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return v;
}

typedef struct cmp_stats {
    double d_cpp, d_cpu, range;
    int steps, agree, checked;
} cmp_stats;

/* Teacher-forced: GPU and CPU side by side, each step compared with the
 * llama.cpp row and with each other. */
static int run_case(const qf_model *m, const cJSON *c, const char *ref_dir, bool step_prompt, qf_type kv_type,
                    bool quant, cmp_stats *st) {
    int n_prompt, n_gen, rc = -1;
    int32_t *prompt = json_ints(cJSON_GetObjectItem(c, "prompt_ids"), &n_prompt);
    int32_t *greedy = json_ints(cJSON_GetObjectItem(c, "greedy_ids"), &n_gen);
    const cJSON *margins = cJSON_GetObjectItem(c, "greedy_top1_margin");
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", ref_dir, cJSON_GetObjectItem(c, "logits_file")->valuestring);
    size_t len = 0;
    float *ref = (float *)slurp(path, &len);
    int nv = m->hp.n_vocab;
    runner rg, rcpu;
    memset(&rg, 0, sizeof rg);
    memset(&rcpu, 0, sizeof rcpu);
    if (!ref || len != (size_t)n_gen * nv * 4) goto out;
    if (runner_init(&rg, m, true, kv_type, n_prompt + n_gen + 8, 1, 128) ||
        runner_init(&rcpu, m, false, kv_type, n_prompt + n_gen + 8, 1, 128))
        goto out;
    const float *lg = NULL, *lc = NULL;
    if (step_prompt) {
        for (int i = 0; i < n_prompt; i++) {
            lg = runner_eval(&rg, 0, i, &prompt[i], 1);
            lc = runner_eval(&rcpu, 0, i, &prompt[i], 1);
        }
    } else {
        lg = runner_eval(&rg, 0, 0, prompt, n_prompt);
        lc = runner_eval(&rcpu, 0, 0, prompt, n_prompt);
    }
    for (int i = 0; i < n_gen; i++) {
        if (!lg || !lc) goto out;
        const float *row = ref + (size_t)i * nv;
        double d1 = max_abs_diff(lg, row, nv), d2 = max_abs_diff(lg, lc, nv), r = range_of(row, nv);
        if (!(d1 <= st->d_cpp)) st->d_cpp = d1;
        if (!(d2 <= st->d_cpu)) st->d_cpu = d2;
        if (r > st->range) st->range = r;
        if (cJSON_GetArrayItem(margins, i)->valuedouble > 0.1 || (kv_type == QF_TYPE_F32 && !quant)) {
            st->checked++;
            if (argmax(lg, nv) == greedy[i]) st->agree++;
        }
        st->steps++;
        if (i + 1 < n_gen) {
            lg = runner_eval(&rg, 0, n_prompt + i, &greedy[i], 1);
            lc = runner_eval(&rcpu, 0, n_prompt + i, &greedy[i], 1);
        }
    }
    rc = 0;
out:
    runner_free(&rg);
    runner_free(&rcpu);
    free(prompt);
    free(greedy);
    free(ref);
    return rc;
}

static void check_reference(const char *json_name) {
    char path[2048], ref_dir[1024];
    qf_testdata("reference", ref_dir, sizeof ref_dir);
    snprintf(path, sizeof path, "%s/%s", ref_dir, json_name);
    char *text = slurp(path, NULL);
    ASSERT_MSG(text, "cannot read %s", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    ASSERT(j);
    qf_model *m = load_testdata_model(cJSON_GetObjectItem(j, "model")->valuestring);
    if (!m) cJSON_Delete(j);
    ASSERT(m);
    bool step = !strcmp(cJSON_GetObjectItem(j, "prompt_mode")->valuestring, "step");
    bool is_f32 = strstr(json_name, "f32") || !strcmp(json_name, "stories260K.json");
    const cJSON *cases = cJSON_GetObjectItem(j, "cases");
    int failed = 0;
    for (int ci = 0; ci < cJSON_GetArraySize(cases); ci++) {
        const cJSON *c = cJSON_GetArrayItem(cases, ci);
        const char *cname = cJSON_GetObjectItem(c, "name")->valuestring;
        for (int kvi = 0; kvi < 2; kvi++) {
            qf_type kt = kvi ? QF_TYPE_F16 : QF_TYPE_F32;
            cmp_stats s = {0};
            if (run_case(m, c, ref_dir, step, kt, !is_f32, &s) != 0) {
                fprintf(stderr, "  %s %s: run failed\n", json_name, cname);
                failed++;
                continue;
            }
            bool ok;
            if (is_f32 && kt == QF_TYPE_F32)
                ok = s.d_cpp <= 1e-3 && s.d_cpu <= 1e-3 && s.agree == s.checked;
            else if (is_f32) /* f16 kv: as the CPU test; f16 roundings of K/V may differ by one step */
                ok = s.d_cpp <= 0.02 * s.range && s.d_cpu <= 0.005 * s.range && s.agree == s.checked;
            else if (kt == QF_TYPE_F32) /* see the note on quantized models above test_reference_models */
                ok = s.d_cpp <= 0.05 * s.range && s.d_cpu <= 0.05 * s.range && s.agree + 2 >= s.checked;
            else /* the CPU path is held neither to llama.cpp's f32-kv logits nor to its
                  * argmax with an f16 kv and quantized weights (test_reference.c) */
                ok = s.d_cpu <= 0.05 * s.range;
            fprintf(stderr, "  %-28s %-9s kv %s: max|d| vs llama.cpp %.2e, vs cpu %.2e, range %.1f, argmax %d/%d %s\n",
                    json_name, cname, kvi ? "f16" : "f32", s.d_cpp, s.d_cpu, s.range, s.agree, s.checked,
                    ok ? "" : "FAIL");
            if (!ok) failed++;
        }
    }
    qf_model_free(m);
    cJSON_Delete(j);
    ASSERT_EQ_INT(failed, 0);
}

/* Quantized models: the GPU encodes activations exactly as the CPU fast
 * path does and its block dots are exact (test_matmul_kernels), but float
 * sums run in another order, so now and then an activation lands on the
 * other side of a rounding step; these random models are built to be
 * sensitive (llama.cpp's own emulation differs from llama.cpp by 1.2-2.0 on
 * them, reference/README.md), so GPU-vs-CPU gets the CPU-vs-llama.cpp
 * tolerance of tests/model/test_reference.c. */
static void test_reference_models(void) {
    const char *names[] = {"stories260K.json",      "stories260K-q8_0.json", "rand-llama-f32.json",
                           "rand-qwen2-f32.json",   "rand-qwen3-f32.json",   "rand-llama-q8_0.json",
                           "rand-llama-q4_0.json",  "rand-llama-q6_k.json",  "rand-llama-q4_k_m.stepwise.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) check_reference(names[i]);
}

/* ---- greedy ---- */

static int greedy(runner *r, const int32_t *prompt, int n_prompt, int n_gen, int32_t *out) {
    const float *l = runner_eval(r, 0, 0, prompt, n_prompt);
    for (int i = 0; i < n_gen; i++) {
        if (!l) return -1;
        out[i] = argmax(l, r->m->hp.n_vocab);
        l = runner_eval(r, 0, n_prompt + i, &out[i], 1);
    }
    return 0;
}

static void check_greedy(const char *json_name) {
    char path[2048], ref_dir[1024];
    qf_testdata("reference", ref_dir, sizeof ref_dir);
    snprintf(path, sizeof path, "%s/%s", ref_dir, json_name);
    char *text = slurp(path, NULL);
    ASSERT(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    qf_model *m = load_testdata_model(cJSON_GetObjectItem(j, "model")->valuestring);
    ASSERT(m);
    const cJSON *cases = cJSON_GetObjectItem(j, "cases");
    int failed = 0;
    for (int ci = 0; ci < cJSON_GetArraySize(cases); ci++) {
        const cJSON *c = cJSON_GetArrayItem(cases, ci);
        int n_prompt, n_gen;
        int32_t *prompt = json_ints(cJSON_GetObjectItem(c, "prompt_ids"), &n_prompt);
        int32_t *ref = json_ints(cJSON_GetObjectItem(c, "greedy_ids"), &n_gen);
        const cJSON *margins = cJSON_GetObjectItem(c, "greedy_top1_margin");
        for (int kvi = 0; kvi < 2; kvi++) {
            qf_type kt = kvi ? QF_TYPE_F16 : QF_TYPE_F32;
            int32_t ig[128], ic[128];
            runner rg, rc;
            int ok = runner_init(&rg, m, true, kt, n_prompt + n_gen + 8, 1, 64) == 0 &&
                     runner_init(&rc, m, false, kt, n_prompt + n_gen + 8, 1, 64) == 0 &&
                     greedy(&rg, prompt, n_prompt, n_gen, ig) == 0 && greedy(&rc, prompt, n_prompt, n_gen, ic) == 0;
            runner_free(&rg);
            runner_free(&rc);
            int same_cpu = 0, same_ref = 0;
            while (ok && same_cpu < n_gen && ig[same_cpu] == ic[same_cpu]) same_cpu++;
            while (ok && same_ref < n_gen && ig[same_ref] == ref[same_ref]) same_ref++;
            int clear = 0; /* llama.cpp's ids are binding up to its first near-tie */
            while (clear < n_gen && cJSON_GetArrayItem(margins, clear)->valuedouble >= 0.01) clear++;
            /* f32 kv: the whole run equals the CPU's; f16 kv: up to the first near-tie (the f16
             * roundings of K/V may differ by one step between the paths) */
            bool pass = ok && (kt == QF_TYPE_F16 ? same_cpu >= clear : same_cpu == n_gen && same_ref >= clear);
            fprintf(stderr, "  greedy %s %s kv %s: same as cpu %d/%d, as llama.cpp %d (first near-tie %d) %s\n",
                    json_name, cJSON_GetObjectItem(c, "name")->valuestring, kvi ? "f16" : "f32", same_cpu, n_gen,
                    same_ref, clear, pass ? "" : "FAIL");
            if (!pass) failed++;
        }
        free(prompt);
        free(ref);
    }
    qf_model_free(m);
    cJSON_Delete(j);
    ASSERT_EQ_INT(failed, 0);
}

/* stories260K (F32 weights). Its Q8_0 copy is not checked here: its
 * quantized logits move by up to 0.5 with rounding order (see above) while
 * llama.cpp's margins go down to 0.001. */
static void test_greedy_stories(void) { check_greedy("stories260K.json"); }

/* ---- batching, copy on write, windows, long context ---- */

/* 4 sequences with different prompts prefilled in one batch, then decoded
 * together, against each one alone. */
static void check_batched(const char *model_rel) {
    qf_model *m = load_testdata_model(model_rel);
    ASSERT(m);
    enum { NS = 4, NP = 21, NG = 6 };
    int nv = m->hp.n_vocab;
    int32_t prompts[NS][NP + NG];
    for (int s = 0; s < NS; s++)
        for (int i = 0; i < NP + NG; i++) prompts[s][i] = (int32_t)((s * 131 + i * 37 + 3) % nv);
    runner all;
    ASSERT(runner_init(&all, m, true, QF_TYPE_F16, 64, NS, 128) == 0);
    int32_t tok[NS * NP], pos[NS * NP], seq[NS * NP];
    int8_t lg[NS * NP];
    for (int s = 0; s < NS; s++)
        for (int i = 0; i < NP; i++) {
            int k = s * NP + i;
            tok[k] = prompts[s][i], pos[k] = i, seq[k] = s, lg[k] = i == NP - 1;
        }
    qf_err e = {0};
    qf_batch b = {NS * NP, tok, pos, seq, lg};
    ASSERT_EQ_INT(runner_decode(&all, &b, &e), QF_OK);
    float *got = malloc(sizeof(float) * (size_t)NS * (NG + 1) * nv);
    for (int s = 0; s < NS; s++) memcpy(got + (size_t)s * (NG + 1) * nv, runner_logits(&all, s), sizeof(float) * nv);
    for (int g = 0; g < NG; g++) {
        for (int s = 0; s < NS; s++) tok[s] = prompts[s][NP + g], pos[s] = NP + g, seq[s] = s, lg[s] = 1;
        qf_batch d = {NS, tok, pos, seq, lg};
        ASSERT_EQ_INT(runner_decode(&all, &d, &e), QF_OK);
        for (int s = 0; s < NS; s++)
            memcpy(got + ((size_t)s * (NG + 1) + g + 1) * nv, runner_logits(&all, s), sizeof(float) * nv);
    }
    runner_free(&all);
    double worst = 0, rng = 0;
    for (int s = 0; s < NS; s++) {
        runner one;
        ASSERT(runner_init(&one, m, true, QF_TYPE_F16, 64, 1, 128) == 0);
        const float *l = runner_eval(&one, 0, 0, prompts[s], NP);
        for (int g = 0; g <= NG && l; g++) {
            const float *want = got + ((size_t)s * (NG + 1) + g) * nv;
            double d = max_abs_diff(l, want, nv);
            if (!(d <= worst)) worst = d;
            if (range_of(want, nv) > rng) rng = range_of(want, nv);
            if (g < NG) l = runner_eval(&one, 0, NP + g, &prompts[s][NP + g], 1);
        }
        runner_free(&one);
        ASSERT(l);
    }
    free(got);
    qf_model_free(m);
    fprintf(stderr, "  batched %s: max|d| vs solo %.2e (range %.1f)\n", model_rel, worst, rng);
    ASSERT_MSG(worst <= 1e-4 * rng, "%s: batched vs solo %g", model_rel, worst);
}

static void test_batched(void) {
    check_batched("models/rand-llama-q4_0.gguf");
    check_batched("models/rand-llama-q4_k_m.gguf");
    check_batched("models/stories260K.gguf");
}

/* A forked sequence shares a partly filled block; both then write into it
 * in one batch: the host copies the block for one of them, the device
 * must mirror that copy. */
static void test_copy_on_write(void) {
    qf_model *m = load_testdata_model("models/stories260K.gguf");
    ASSERT(m);
    int nv = m->hp.n_vocab;
    int32_t prompt[20];
    for (int i = 0; i < 20; i++) prompt[i] = (i * 53 + 7) % nv;
    runner r;
    ASSERT(runner_init(&r, m, true, QF_TYPE_F16, 64, 2, 64) == 0);
    ASSERT(runner_eval(&r, 0, 0, prompt, 20));
    qf_err e = {0};
    ASSERT_EQ_INT(qf_kv_seq_fork(r.kv, 0, 1, &e), QF_OK);
    float *got = malloc(sizeof(float) * 2 * (size_t)nv * 3);
    int32_t nxt[2][3] = {{11, 300, 42}, {99, 5, 250}};
    for (int step = 0; step < 3; step++) {
        int32_t tok[2] = {nxt[0][step], nxt[1][step]}, pos[2] = {20 + step, 20 + step}, seq[2] = {0, 1};
        int8_t lg[2] = {1, 1};
        qf_batch b = {2, tok, pos, seq, lg};
        ASSERT_EQ_INT(runner_decode(&r, &b, &e), QF_OK);
        memcpy(got + (size_t)(0 * 3 + step) * nv, runner_logits(&r, 0), sizeof(float) * nv);
        memcpy(got + (size_t)(1 * 3 + step) * nv, runner_logits(&r, 1), sizeof(float) * nv);
    }
    qf_kv_stats ks;
    qf_kv_get_stats(r.kv, &ks);
    runner_free(&r);
    ASSERT_MSG(ks.cow_copies >= 1, "the test did not make a copy on write");
    double worst = 0;
    for (int s = 0; s < 2; s++) {
        runner one;
        ASSERT(runner_init(&one, m, true, QF_TYPE_F16, 64, 1, 64) == 0);
        const float *l = runner_eval(&one, 0, 0, prompt, 20);
        for (int step = 0; step < 3 && l; step++) {
            l = runner_eval(&one, 0, 20 + step, &nxt[s][step], 1);
            if (l) worst = fmax(worst, max_abs_diff(l, got + (size_t)(s * 3 + step) * nv, nv));
        }
        runner_free(&one);
        ASSERT(l);
    }
    free(got);
    qf_model_free(m);
    ASSERT_MSG(worst <= 1e-4, "copy on write: forked sequences differ from solo runs by %g", worst);
}

/* Attention window with sinks, token by token, against the CPU. */
static void test_window(void) {
    qf_model *m = load_testdata_model("models/stories260K.gguf");
    ASSERT(m);
    int nv = m->hp.n_vocab;
    runner rg, rc;
    ASSERT(runner_init(&rg, m, true, QF_TYPE_F32, 128, 1, 64) == 0);
    ASSERT(runner_init(&rc, m, false, QF_TYPE_F32, 128, 1, 64) == 0);
    qf_kv_seq_set_window(rg.kv, 0, 24, 4);
    qf_kv_seq_set_window(rc.kv, 0, 24, 4);
    double worst = 0;
    for (int i = 0; i < 70; i++) {
        int32_t t = (i * 29 + 1) % nv;
        const float *a = runner_eval(&rg, 0, i, &t, 1), *b = runner_eval(&rc, 0, i, &t, 1);
        ASSERT(a && b);
        worst = fmax(worst, max_abs_diff(a, b, nv));
    }
    runner_free(&rg);
    runner_free(&rc);
    qf_model_free(m);
    fprintf(stderr, "  window: max|d| vs cpu %.2e\n", worst);
    ASSERT_MSG(worst <= 1e-3, "window: %g", worst);
}

/* 700 positions: the prompt as one batch, then decode steps that go through
 * the split attention (one sequence, long context). */
static void test_long_context(void) {
    qf_model *m = load_testdata_model("models/stories260K.gguf");
    ASSERT(m);
    int nv = m->hp.n_vocab;
    enum { NP = 700 };
    int32_t *p = malloc(sizeof(int32_t) * (NP + 8));
    for (int i = 0; i < NP + 8; i++) p[i] = (i * 7919 + 13) % nv;
    runner rg, rc;
    ASSERT(runner_init(&rg, m, true, QF_TYPE_F32, 1024, 1, 1024) == 0);
    ASSERT(runner_init(&rc, m, false, QF_TYPE_F32, 1024, 1, 1024) == 0);
    const float *a = runner_eval(&rg, 0, 0, p, NP), *b = runner_eval(&rc, 0, 0, p, NP);
    ASSERT(a && b);
    double worst = max_abs_diff(a, b, nv), rng = range_of(b, nv);
    for (int i = 0; i < 8; i++) {
        a = runner_eval(&rg, 0, NP + i, &p[NP + i], 1);
        b = runner_eval(&rc, 0, NP + i, &p[NP + i], 1);
        ASSERT(a && b);
        worst = fmax(worst, max_abs_diff(a, b, nv));
    }
    runner_free(&rg);
    runner_free(&rc);
    free(p);
    qf_model_free(m);
    fprintf(stderr, "  long context: max|d| vs cpu %.2e (range %.1f)\n", worst, rng);
    ASSERT_MSG(worst <= 1e-3 * rng, "long context: %g", worst);
}

/* ---- synthesized quantized models of each architecture ---- */

static void check_synth(qf_arch arch, qf_ftype ft, int n_embd, int n_head, int n_head_kv, int head_dim, int n_ff,
                        double tol) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/qf-test-cuda-%d-%d-%d.gguf", (int)getpid(), (int)arch, (int)ft);
    qf_synth_params sp = {0};
    sp.arch = arch;
    sp.n_embd = n_embd;
    sp.n_layer = 2;
    sp.n_head = n_head;
    sp.n_head_kv = n_head_kv;
    sp.head_dim = head_dim;
    sp.n_ff = n_ff;
    sp.ftype = ft;
    sp.seed = 7;
    sp.n_threads = 2;
    qf_err e = {0};
    ASSERT_MSG(qf_model_synth(&sp, path, &e) == QF_OK, "%s", e.msg);
    qf_model_params mp = {.no_tokenizer = true};
    qf_model *m = qf_model_load(path, &mp, &e);
    unlink(path);
    ASSERT_MSG(m, "%s", e.msg);
    int nv = m->hp.n_vocab;
    int32_t toks[24];
    for (int i = 0; i < 24; i++) toks[i] = (i * 41 + 9) % nv;
    runner rg, rc;
    ASSERT(runner_init(&rg, m, true, QF_TYPE_F16, 64, 1, 32) == 0);
    ASSERT(runner_init(&rc, m, false, QF_TYPE_F16, 64, 1, 32) == 0);
    const float *a = runner_eval(&rg, 0, 0, toks, 16), *b = runner_eval(&rc, 0, 0, toks, 16);
    ASSERT(a && b);
    double worst = max_abs_diff(a, b, nv), rng = range_of(b, nv);
    for (int i = 16; i < 24; i++) {
        a = runner_eval(&rg, 0, i, &toks[i], 1);
        b = runner_eval(&rc, 0, i, &toks[i], 1);
        ASSERT(a && b);
        worst = fmax(worst, max_abs_diff(a, b, nv));
        rng = fmax(rng, range_of(b, nv));
    }
    runner_free(&rg);
    runner_free(&rc);
    fprintf(stderr, "  synth %s %s heads %d/%d: max|d| vs cpu %.2e (range %.2f)\n", qf_arch_name(arch),
            qf_ftype_name(ft), n_head, n_head_kv, worst, rng);
    qf_model_free(m);
    ASSERT_MSG(worst <= tol * rng, "synth: %g of range %g", worst, rng);
}

static void test_synth_models(void) {
    check_synth(QF_ARCH_QWEN2, QF_FTYPE_Q8_0, 128, 4, 1, 0, 256, 0.01);
    check_synth(QF_ARCH_QWEN3, QF_FTYPE_Q4_K_M, 256, 4, 2, 64, 512, 0.01);
    check_synth(QF_ARCH_LLAMA, QF_FTYPE_Q4_0, 256, 16, 1, 16, 512, 0.01);
    /* Q5_K is expanded to f16 on the device (float activations there, Q8_K
     * activations on the CPU): looser */
    check_synth(QF_ARCH_LLAMA, QF_FTYPE_Q5_K_M, 256, 4, 4, 0, 512, 0.05);
}

/* Short-context attention (cu_attention_short) with several query heads
 * per block (the layout of steps with many tokens, forced here with
 * QF_CUDA_HPC at one token per step), with the K/V store in the QKV
 * epilogue or a k_store kernel (default) and in the attention kernel
 * itself (QF_CUDA_MV=0: the batched kernels), against the CPU. */
static void test_short_attention_heads(void) {
    static const char *const hpc[] = {"2", "4", "8", "7", "6"};
    for (int k = 0; k < 5; k++)
        for (int mv = 0; mv < 2; mv++) {
            setenv("QF_CUDA_HPC", hpc[k], 1);
            if (mv) setenv("QF_CUDA_MV", "0", 1);
            fprintf(stderr, "  QF_CUDA_HPC=%s%s:\n", hpc[k], mv ? " QF_CUDA_MV=0" : "");
            if (k < 3) {
                check_synth(QF_ARCH_LLAMA, QF_FTYPE_Q4_0, 256, 16, 2, 16, 512, 0.01); /* 8 query heads per kv head */
                check_synth(QF_ARCH_QWEN2, QF_FTYPE_Q8_0, 128, 4, 1, 0, 256, 0.01);   /* 4, NEOX, biases */
            } else if (k == 3) {
                check_synth(QF_ARCH_QWEN2, QF_FTYPE_Q8_0, 224, 14, 2, 16, 512, 0.01); /* 7: Qwen2.5-0.5B's group */
            } else {
                check_synth(QF_ARCH_QWEN2, QF_FTYPE_Q4_0, 192, 12, 2, 16, 512, 0.01); /* 6: Qwen2.5-1.5B's */
            }
            unsetenv("QF_CUDA_HPC");
            unsetenv("QF_CUDA_MV");
        }
}

/* The one-token kernels (matrix-vector products with the SwiGLU and kv
 * store epilogues, attention storing its own K/V), all on and
 * as configured by default, against the separate kernels (QF_CUDA_MV=0,
 * and QF_CUDA_ATT_COMBINE=1: split attention combined by its own kernel;
 * and the one-token kernel without its epilogues, QF_CUDA_SWIGLU=0
 * QF_CUDA_QKV_STORE=0: act and k_store kernels between):
 * the same logits bit for bit, a 72-token prefill and 8 decode steps that
 * attend to more than 64 positions (split attention). */
static void check_fusions(const qf_model *m, const char *what) {
    enum { NP = 72, NT = 80 }; /* decode steps past 64 positions: split attention */
    int nv = m->hp.n_vocab;
    int32_t toks[NT];
    for (int i = 0; i < NT; i++) toks[i] = (i * 53 + 5) % nv;
    /* 0: every fusion on (some are off by default: measured slower),
     * 1: the defaults, 2: the separate kernels (and the combine kernel of
     * split attention instead of the last split block), 3: the one-token
     * kernel without its SwiGLU and kv-store epilogues */
    runner r[4];
    setenv("QF_CUDA_ATT_FUSE", "1", 1);
    int ok = runner_init(&r[0], m, true, QF_TYPE_F16, 96, 1, 32) == 0;
    unsetenv("QF_CUDA_ATT_FUSE");
    ok = ok && runner_init(&r[1], m, true, QF_TYPE_F16, 96, 1, 32) == 0;
    setenv("QF_CUDA_MV", "0", 1);
    setenv("QF_CUDA_ATT_COMBINE", "1", 1);
    ok = ok && runner_init(&r[2], m, true, QF_TYPE_F16, 96, 1, 32) == 0;
    unsetenv("QF_CUDA_MV");
    unsetenv("QF_CUDA_ATT_COMBINE");
    setenv("QF_CUDA_SWIGLU", "0", 1);
    setenv("QF_CUDA_QKV_STORE", "0", 1);
    ok = ok && runner_init(&r[3], m, true, QF_TYPE_F16, 96, 1, 32) == 0;
    unsetenv("QF_CUDA_SWIGLU");
    unsetenv("QF_CUDA_QKV_STORE");
    ASSERT(ok);
    double worst = 0;
    int steps = 0;
    const float *l[4];
    for (int k = 0; k < 4; k++) l[k] = runner_eval(&r[k], 0, 0, toks, NP);
    for (int i = NP; l[0] && l[1] && l[2] && l[3]; i++) {
        worst = fmax(worst, fmax(max_abs_diff(l[0], l[2], nv), max_abs_diff(l[1], l[2], nv)));
        worst = fmax(worst, max_abs_diff(l[3], l[2], nv));
        steps++;
        if (i == NT) break;
        for (int k = 0; k < 4; k++) l[k] = runner_eval(&r[k], 0, i, &toks[i], 1);
    }
    for (int k = 0; k < 4; k++) runner_free(&r[k]);
    fprintf(stderr, "  fused / default vs separate kernels, %s: max|d| %.3g over %d steps\n", what, worst, steps);
    ASSERT_EQ_INT(steps, 9);
    ASSERT_MSG(worst == 0, "%s: fused kernels differ by %g", what, worst);
}

static void test_fusions(void) {
    const char *files[] = {"models/rand-llama-q4_0.gguf", "models/rand-llama-q8_0.gguf", "models/stories260K.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        qf_model *m = load_testdata_model(files[i]);
        ASSERT(m);
        check_fusions(m, files[i]);
        qf_model_free(m);
    }
    /* shapes where a tile is split over 8 warps (the 8B model's); Q4_K_M:
     * Q4_K and Q6_K matrices through the matrix-vector kernel against mmq */
    const qf_ftype fts[] = {QF_FTYPE_Q4_0, QF_FTYPE_Q8_0, QF_FTYPE_Q4_K_M};
    const char *names[] = {"synth llama 2048/5632 q4_0", "synth llama 2048/5632 q8_0", "synth llama 2048/5632 q4_k_m"};
    for (int k = 0; k < 3; k++) {
        char path[256];
        snprintf(path, sizeof path, "/tmp/qf-test-cuda-fuse-%d-%d.gguf", (int)getpid(), k);
        qf_synth_params sp = {0};
        sp.arch = QF_ARCH_LLAMA;
        sp.n_embd = 2048;
        sp.n_layer = 2;
        sp.n_head = 16;
        sp.n_head_kv = 4;
        sp.n_ff = 5632;
        sp.ftype = fts[k];
        sp.seed = 11;
        sp.n_threads = 4;
        qf_err e = {0};
        ASSERT_MSG(qf_model_synth(&sp, path, &e) == QF_OK, "%s", e.msg);
        qf_model_params mp = {.no_tokenizer = true};
        qf_model *m = qf_model_load(path, &mp, &e);
        unlink(path);
        ASSERT_MSG(m, "%s", e.msg);
        check_fusions(m, names[k]);
        qf_model_free(m);
    }
}

/* Without a device the API refuses cleanly (the path CPU-only builds take). */
static void check_no_device(void) {
    char dir[1024], path[1100];
    const char *root = getenv("QF_TESTDATA") ? getenv("QF_TESTDATA") : QF_TESTDATA_DIR;
    snprintf(dir, sizeof dir, "%s", root);
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", dir);
    qf_err e = {0};
    qf_model_params mp = {.no_tokenizer = true};
    qf_model *m = qf_model_load(path, &mp, &e);
    if (!m) return; /* no shared data: nothing more to check */
    qf_kv_params kp = qf_model_kv_params(m, 64, 1, QF_TYPE_F16, 16);
    qf_gpu_fwd *g = qf_gpu_fwd_new(m, &kp, 8, 64, -1, &e);
    ASSERT(g == NULL);
    ASSERT_EQ_INT(e.code, QF_ERR_UNSUPPORTED);
    ASSERT(strstr(e.msg, "no device") != NULL);
    qf_model_free(m);
}

int main(void) {
    char name[256];
    if (!qf_gpu_available(name, sizeof name)) {
        if (name[0]) {
            fprintf(stderr, "no device, yet a device name: %s\n", name);
            return 1;
        }
        RUN_TEST(check_no_device);
        if (qf_test_failures) return 1;
        QF_SKIP("no GPU (backend %s)", qf_gpu_backend_name());
    }
    fprintf(stderr, "device: %s (%s)\n", name, qf_gpu_backend_name());
    qf_err e = {0};
    g_pool = qf_pool_new(4, NULL, &e);
    if (!g_pool) return 1;
#ifdef QF_HAVE_CUDA
    RUN_TEST(test_matmul_kernels);
    RUN_TEST(test_matvec_fused);
#endif
    char buf[1024];
    qf_testdata("reference", buf, sizeof buf); /* the rest needs the shared data */
    RUN_TEST(test_bad_args);
    RUN_TEST(test_reference_models);
    RUN_TEST(test_greedy_stories);
    RUN_TEST(test_batched);
    RUN_TEST(test_copy_on_write);
    RUN_TEST(test_window);
    RUN_TEST(test_long_context);
    RUN_TEST(test_synth_models);
    RUN_TEST(test_short_attention_heads);
    RUN_TEST(test_fusions);
    qf_pool_free(g_pool);
    TEST_MAIN_END();
}
