/* bench_kernels.c - throughput of qf_gemm against the machine's memory.
 *
 *   bench_kernels [-t threads] [-i isa] [-T types] [-n ns] [-r rows] [-c cols]
 *                 [-w working_set_MB] [-s seconds_per_point] [-M layers]
 *
 * -M L: instead of 2. and 3., run the matrix products of a Llama-3.2-1B
 * shaped model (L layers of q, k, v, o 2048x2048/512x2048, gate/up 8192x2048,
 * down 2048x8192, each matrix its own memory, activations quantized per
 * step) for each n, and report tokens/s of the products alone: an upper
 * bound for a forward pass built on these kernels (compare llama-bench
 * tg128 at n=1 and pp512 at n=512 on a model of the same shape and type).
 *
 * 1. Memory: read bandwidth (sum of 64-bit words over a buffer larger than
 *    the caches) and memcpy bandwidth, each split over the threads.
 * 2. n == 1 (generation): a rows x cols matrix, replicated to fill the
 *    working set (default 600 MB, a 1B model), multiplied in rotation so
 *    each call reads its weights from DRAM; reports weight GB/s.
 * 3. n > 1 (prompt processing): one matrix, n activation rows; reports
 *    GFLOP/s (2 * rows * cols * n per call) for the gemm, and separately
 *    the time to quantize the activations.
 * Rows are split over the threads in multiples of 16, like a forward pass.
 * Besides wall-clock rates, "cpu" rates use the process CPU time divided by
 * the thread count: on a shared, busy machine they show what the kernels do
 * while they actually run (the wall-clock numbers are the ones to quote on
 * an idle machine).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/pool.h"
#include "quant/kernels.h"
#include "quant/quant.h"

typedef struct job {
    int kind; /* 0 read, 1 memcpy, 2 gemm, 3 quantize */
    const uint8_t *src;
    uint8_t *dst;
    size_t bytes;
    uint64_t sink[64];
    qf_type type;
    const uint8_t *W;
    size_t wrb;
    int64_t rows, cols, n;
    const void *xq;
    const float *x;
    void *xq_out;
    float *y;
} job;

static void run_part(void *ctx, int ith, int nth) {
    job *j = ctx;
    if (j->kind == 0 || j->kind == 1) {
        const size_t per = j->bytes / (size_t)nth / 64 * 64;
        const size_t lo = per * (size_t)ith;
        if (j->kind == 1) {
            memcpy(j->dst + lo, j->src + lo, per);
            return;
        }
        const uint64_t *p = (const uint64_t *)(j->src + lo);
        uint64_t a = 0, b = 0, c = 0, d = 0;
        for (size_t i = 0; i < per / 8; i += 4) {
            a += p[i];
            b += p[i + 1];
            c += p[i + 2];
            d += p[i + 3];
        }
        j->sink[ith] += a + b + c + d;
    } else if (j->kind == 2) {
        long lo, hi;
        const long tiles = (long)((j->rows + 15) / 16);
        qf_split_range(tiles, ith, nth, &lo, &hi);
        const int64_t r0 = lo * 16, r1 = hi * 16 < j->rows ? hi * 16 : j->rows;
        if (r0 < r1) qf_gemm(j->type, j->W, j->wrb, j->cols, r0, r1, j->xq, j->n, j->y, j->rows);
    } else {
        long lo, hi;
        qf_split_range((long)j->n, ith, nth, &lo, &hi);
        const size_t xs = qf_act_row_size(j->type, j->cols);
        for (long t = lo; t < hi; t++)
            qf_act_quantize(j->type, j->x + t * j->cols, (uint8_t *)j->xq_out + (size_t)t * xs, j->cols);
    }
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- model-shaped run (-M) ---- */

typedef struct mm_shape {
    int64_t rows, cols;
    int act; /* which activation buffer: 0 = hidden (2048), 1 = ffn (8192) */
} mm_shape;

static const mm_shape llama1b[] = {
    {2048, 2048, 0}, {512, 2048, 0}, {512, 2048, 0}, {2048, 2048, 0},
    {8192, 2048, 0}, {8192, 2048, 0}, {2048, 8192, 1},
};
#define N_SHAPES (sizeof llama1b / sizeof llama1b[0])

static void model_run(qf_pool *pool, qf_type type, int layers, const char *ns, double secs, int threads) {
    const int nm = layers * (int)N_SHAPES;
    uint8_t **W = calloc((size_t)nm, sizeof *W);
    size_t total = 0;
    for (int i = 0; i < nm; i++) {
        const mm_shape *sh = &llama1b[i % N_SHAPES];
        const size_t bytes = qf_type_row_size(type, sh->cols) * (size_t)sh->rows;
        W[i] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        float *tmp = malloc(sizeof(float) * (size_t)sh->cols);
        for (int64_t r = 0; r < sh->rows; r++) {
            for (int64_t c = 0; c < sh->cols; c++)
                tmp[c] = (float)(((r * 31 + c * 17 + i) % 255) - 127) * 0.01f;
            qf_type_get(type)->from_float(tmp, W[i] + (size_t)r * qf_type_row_size(type, sh->cols), sh->cols);
        }
        free(tmp);
        total += bytes;
    }
    printf("model: %d layers x %zu matrices, %s, %.1f MB of weights\n", layers, N_SHAPES,
           qf_type_get(type)->name, (double)total / 1e6);
    char nbuf[128];
    snprintf(nbuf, sizeof nbuf, "%s", ns);
    char *save = NULL;
    for (char *nstr = strtok_r(nbuf, ",", &save); nstr; nstr = strtok_r(NULL, ",", &save)) {
        const int64_t n = atoll(nstr);
        if (n < 1) continue;
        float *x[2];
        void *xq[2];
        for (int a = 0; a < 2; a++) {
            const int64_t cols = a ? 8192 : 2048;
            x[a] = malloc(sizeof(float) * (size_t)(n * cols));
            for (int64_t i = 0; i < n * cols; i++)
                x[a][i] = (float)((i * 7919) % 2001 - 1000) * 1e-3f;
            xq[a] = aligned_alloc(64, (qf_act_row_size(type, cols) * (size_t)n + 63) / 64 * 64);
        }
        float *y = malloc(sizeof(float) * (size_t)(n * 8192));
        int steps = 0;
        const double t0 = qf_now_s(), c0 = cpu_s();
        double t = t0;
        while (t - t0 < secs || steps < 2) {
            for (int i = 0; i < nm; i++) {
                const mm_shape *sh = &llama1b[i % N_SHAPES];
                /* quantize when the input changes: q (hidden) and down (ffn) */
                if (i % (int)N_SHAPES == 0 || i % (int)N_SHAPES == 6) {
                    job q = {.kind = 3, .type = type, .cols = sh->cols, .n = n, .x = x[sh->act], .xq_out = xq[sh->act]};
                    qf_pool_run(pool, run_part, &q);
                }
                job g = {.kind = 2, .type = type, .W = W[i], .wrb = qf_type_row_size(type, sh->cols),
                         .rows = sh->rows, .cols = sh->cols, .n = n, .xq = xq[sh->act], .y = y};
                qf_pool_run(pool, run_part, &g);
            }
            steps++;
            t = qf_now_s();
        }
        const double per = (t - t0) / steps, cper = (cpu_s() - c0) / steps / threads;
        printf("n=%-4lld %9.2f ms/step  %8.1f tokens/s  %6.1f GB/s | cpu %8.1f tokens/s\n", (long long)n,
               per * 1e3, (double)n / per, (double)total / per / 1e9, (double)n / cper);
        fflush(stdout);
        for (int a = 0; a < 2; a++) {
            free(x[a]);
            free(xq[a]);
        }
        free(y);
    }
    for (int i = 0; i < nm; i++)
        free(W[i]);
    free(W);
}

static void fill_random(void *p, size_t n, uint64_t seed) {
    uint64_t s = seed;
    uint8_t *b = p;
    for (size_t i = 0; i < n; i += 8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        memcpy(b + i, &s, n - i < 8 ? n - i : 8);
    }
}

static double mem_bench(qf_pool *pool, int kind, size_t bytes, double secs) {
    uint8_t *src = aligned_alloc(4096, bytes), *dst = kind == 1 ? aligned_alloc(4096, bytes) : NULL;
    memset(src, 1, bytes);
    if (dst) memset(dst, 2, bytes);
    job j = {.kind = kind, .src = src, .dst = dst, .bytes = bytes};
    qf_pool_run(pool, run_part, &j); /* warm up (page faults) */
    int iters = 0;
    const double t0 = qf_now_s();
    double t = t0;
    while (t - t0 < secs) {
        qf_pool_run(pool, run_part, &j);
        iters++;
        t = qf_now_s();
    }
    free(src);
    free(dst);
    return (double)bytes * iters / (t - t0) / 1e9;
}

int main(int argc, char **argv) {
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const char *isa = NULL, *types = "q4_0,q8_0,q4_k,q6_k,q5_k,q4_1,q5_0,q5_1,f16,f32";
    const char *ns = "1,32,128,512";
    int64_t rows = 2048, cols = 2048;
    double ws_mb = 600, secs = 1.0;
    int opt, layers = 0;
    while ((opt = getopt(argc, argv, "t:i:T:n:r:c:w:s:M:")) != -1) {
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'i': isa = optarg; break;
        case 'T': types = optarg; break;
        case 'n': ns = optarg; break;
        case 'r': rows = atoll(optarg); break;
        case 'c': cols = atoll(optarg); break;
        case 'w': ws_mb = atof(optarg); break;
        case 's': secs = atof(optarg); break;
        case 'M': layers = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-i isa] [-T types] [-n ns] [-r rows] [-c cols] "
                            "[-w MB] [-s secs] [-M layers]\n", argv[0]);
            return 2;
        }
    }
    if (isa && qf_kernels_set_isa(isa) != 0) {
        fprintf(stderr, "isa %s not available\n", isa);
        return 1;
    }
    qf_err err;
    qf_pool *pool = qf_pool_new(threads, NULL, &err);
    if (!pool) {
        fprintf(stderr, "pool: %s\n", err.msg);
        return 1;
    }
    if (layers > 0) {
        qf_type type;
        char tb[64];
        snprintf(tb, sizeof tb, "%s", types);
        char *comma = strchr(tb, ',');
        if (comma) *comma = 0;
        if (!qf_type_from_name(tb, &type) || qf_act_row_size(type, 8192) == 0) {
            fprintf(stderr, "bad type %s\n", tb);
            return 1;
        }
        printf("isa %s, %d threads\n", qf_kernels_isa(), threads);
        model_run(pool, type, layers, ns, secs, threads);
        qf_pool_free(pool);
        return 0;
    }
    printf("isa %s, %d threads, matrix %lldx%lld, working set %.0f MB\n", qf_kernels_isa(), threads,
           (long long)rows, (long long)cols, ws_mb);
    const size_t mem_bytes = (size_t)(ws_mb * 1e6);
    printf("memory: read %.1f GB/s, memcpy %.1f GB/s (bytes copied)\n",
           mem_bench(pool, 0, mem_bytes, secs), mem_bench(pool, 1, mem_bytes / 2, secs));
    fflush(stdout);

    char tbuf[256];
    snprintf(tbuf, sizeof tbuf, "%s", types);
    for (char *tn = strtok(tbuf, ","); tn; tn = strtok(NULL, ",")) {
        qf_type type;
        if (!qf_type_from_name(tn, &type) || qf_act_row_size(type, cols) == 0) {
            fprintf(stderr, "skip %s (unknown or cols not a multiple of its block)\n", tn);
            continue;
        }
        const size_t wrb = qf_type_row_size(type, cols), mat = wrb * (size_t)rows;
        const size_t xs = qf_act_row_size(type, cols);
        int nmat = (int)(mem_bytes / mat);
        if (nmat < 1) nmat = 1;
        uint8_t *W = aligned_alloc(64, mat * (size_t)nmat);
        /* quantize one random matrix properly, then replicate it */
        float *tmp = malloc(sizeof(float) * (size_t)cols);
        for (int64_t r = 0; r < rows; r++) {
            fill_random(tmp, sizeof(float) * (size_t)cols, 1234 + (uint64_t)r);
            for (int64_t i = 0; i < cols; i++)
                tmp[i] = (float)((int32_t)((uint32_t *)tmp)[i] >> 8) * 0x1p-24f;
            qf_type_get(type)->from_float(tmp, W + (size_t)r * wrb, cols);
        }
        free(tmp);
        for (int m = 1; m < nmat; m++)
            memcpy(W + mat * (size_t)m, W, mat);
        char nbuf[128];
        snprintf(nbuf, sizeof nbuf, "%s", ns);
        char *save = NULL;
        for (char *nstr = strtok_r(nbuf, ",", &save); nstr; nstr = strtok_r(NULL, ",", &save)) {
            const int64_t n = atoll(nstr);
            if (n < 1) continue;
            float *x = malloc(sizeof(float) * (size_t)(n * cols));
            for (int64_t i = 0; i < n * cols; i++)
                x[i] = (float)((i * 7919) % 2001 - 1000) * 1e-3f;
            void *xq = aligned_alloc(64, (xs * (size_t)n + 63) / 64 * 64);
            float *y = malloc(sizeof(float) * (size_t)(n * rows));
            job q = {.kind = 3, .type = type, .cols = cols, .n = n, .x = x, .xq_out = xq};
            const double tq0 = qf_now_s();
            int qiters = 0;
            while (qf_now_s() - tq0 < secs / 10 || qiters < 3) {
                qf_pool_run(pool, run_part, &q);
                qiters++;
            }
            const double tq = (qf_now_s() - tq0) / qiters;
            job g = {.kind = 2, .type = type, .wrb = wrb, .rows = rows, .cols = cols, .n = n,
                     .xq = xq, .y = y};
            const int rot = n == 1 ? nmat : 1;
            g.W = W;
            qf_pool_run(pool, run_part, &g);
            int iters = 0;
            const double t0 = qf_now_s(), c0 = cpu_s();
            double t = t0;
            while (t - t0 < secs || iters < 3) {
                g.W = W + mat * (size_t)(iters % rot);
                qf_pool_run(pool, run_part, &g);
                iters++;
                t = qf_now_s();
            }
            const double per = (t - t0) / iters, cper = (cpu_s() - c0) / iters / threads;
            const double flop = 2.0 * (double)rows * (double)cols * (double)n;
            printf("%-5s n=%-4lld %9.1f us  %6.1f GB/s %7.1f GFLOP/s | cpu %6.1f GB/s %7.1f GFLOP/s"
                   " | quantize %.1f us%s\n",
                   tn, (long long)n, per * 1e6, (double)mat / per / 1e9, flop / per / 1e9,
                   (double)mat / cper / 1e9, flop / cper / 1e9, tq * 1e6,
                   rot > 1 ? "  [weights from DRAM]" : "");
            fflush(stdout);
            free(x);
            free(xq);
            free(y);
        }
        free(W);
    }
    qf_pool_free(pool);
    return 0;
}
