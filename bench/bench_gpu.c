/* bench_gpu.c - token generation on the GPU backend, against the memory
 * roofline measured on the same device in the same run.
 *
 *   bench_gpu [--model M.gguf | --synth llama:E:L:H:KV:FF:TYPE] [--tg 128]
 *             [--prompt 16] [--batch 1,32] [--reps 3] [--json OUT] [--profile]
 *             [--profile-batch B] [--gpu-layers N] [--trace]
 *   bench_gpu --mv [--json OUT]
 *
 * For each batch size B: B sequences get a prompt of --prompt tokens (one
 * batch), then --tg decode steps of B tokens (one per sequence, logits for
 * all, greedy argmax fed back): wall-clock time per step including the
 * logits copy, median of --reps runs. Generation tok/s = B * tg / time.
 *
 * Roofline: a decode step streams every layer matrix and the output head
 * once (qf_gpu_fwd_step_weight_bytes, the bytes as stored on the device);
 * the device's bandwidth is a device-to-device copy measured here (bytes
 * read + written per second). Ideal tok/s at B = 1 is bandwidth / bytes;
 * the report prints the achieved fraction. --synth writes the model with
 * qf_model_synth (what `qforge model synth` calls) to /tmp, reused if there.
 *
 * --gpu-layers N: a partial offload, the last N layers on the device and
 * the first ones on the CPU (all of its cores); the roofline then counts
 * only the device's bytes.
 *
 * --mv: instead, the one-token matrix-vector kernel alone on the matrices
 * of an 8B llama (and one of 604 MB, where launch and tail costs vanish),
 * against a plain read of device memory: the kernel's streaming bandwidth.
 *
 * --profile: one more batch-1 run (--profile-batch B: batch B) with QF_CUDA_PROFILE=1 (no graphs, an
 * event between every two kernels): device time per step by kind of
 * kernel (act, qkv, attention, ...), and the bandwidth of the matrix
 * kernels. Each kernel's time then includes its launch gap, so the sum
 * exceeds the graph-replayed step.
 *
 * --trace: one more batch-1 run with QF_CUDA_TRACE=1 (graphs and PDL as
 * configured; every kernel's blocks stamp the global timer at start, PDL
 * wait, end of the main work, end): the layer's timeline averaged over the
 * middle layers and the decode steps, each kernel's earliest and latest
 * block, in microseconds after the previous layer's last block finished.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "base/cpu.h"
#include "base/err.h"
#include "model/model.h"
#include "model/synth.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int g_profile; /* reset the profile after the prefill: decode steps only */
static int g_trace;   /* likewise the timeline */
static int g_ngl = -1;  /* --gpu-layers: -1 all; 0 < N < n_layer the last N (the CPU runs the rest) */

typedef struct run_result {
    double pp_s, tg_s, step_med_s;
} run_result;

/* One run at batch B: prefill then tg steps. */
static int run_once(const qf_model *m, int B, int n_prompt, int n_tg, run_result *res) {
    qf_err e = {0};
    int32_t n_ctx = n_prompt + n_tg + 8;
    qf_kv_params kp = qf_model_kv_params(m, (int64_t)n_ctx * B + 64, B, QF_TYPE_F16, 16);
    qf_kv *kv = qf_kv_new(&kp, &e);
    int nb = B * n_prompt > B ? B * n_prompt : B;
    qf_gpu_fwd *g = kv ? qf_gpu_fwd_new(m, &kp, nb, n_ctx, g_ngl, &e) : NULL;
    qf_pool *pool = NULL;
    qf_fwd *cpu = NULL;
    if (g && qf_gpu_fwd_cpu_layers(g) > 0) { /* partial offload: the CPU pass for the first layers */
        pool = qf_pool_new(qf_cpu_default_threads(), NULL, &e);
        cpu = pool ? qf_fwd_new(m, kv, pool, nb, n_ctx, &e) : NULL;
        if (cpu) qf_gpu_fwd_set_cpu(g, cpu);
        else qf_gpu_fwd_free(g), g = NULL;
    }
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)nb), *pos = malloc(sizeof(int32_t) * (size_t)nb);
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)nb);
    int8_t *lg = malloc((size_t)nb);
    double *steps = malloc(sizeof(double) * (size_t)(n_tg > 0 ? n_tg : 1));
    int rc = -1, nv = m->hp.n_vocab;
    if (!g || !tok || !pos || !seq || !lg || !steps) {
        fprintf(stderr, "bench_gpu: setup: %s\n", e.msg);
        goto out;
    }
    for (int s = 0; s < B; s++)
        for (int i = 0; i < n_prompt; i++) {
            int k = s * n_prompt + i;
            tok[k] = (int32_t)((s * 7919 + i * 104729 + 1) % nv), pos[k] = i, seq[k] = s, lg[k] = i == n_prompt - 1;
        }
    double t0 = now_s();
    qf_batch b = {B * n_prompt, tok, pos, seq, lg};
    if (qf_gpu_fwd_decode(g, kv, &b, &e) != QF_OK) goto fail;
    res->pp_s = now_s() - t0;
    if (g_profile) qf_cuda_profile_reset();
    if (g_trace) qf_cuda_trace_reset();
    for (int s = 0; s < B; s++) tok[s] = argmax(qf_gpu_fwd_logits(g, s), nv);
    double t1 = now_s();
    for (int it = 0; it < n_tg; it++) {
        double ts = now_s();
        for (int s = 0; s < B; s++) pos[s] = n_prompt + it, seq[s] = s, lg[s] = 1;
        qf_batch d = {B, tok, pos, seq, lg};
        if (qf_gpu_fwd_decode(g, kv, &d, &e) != QF_OK) goto fail;
        for (int s = 0; s < B; s++) tok[s] = argmax(qf_gpu_fwd_logits(g, s), nv);
        steps[it] = now_s() - ts;
    }
    res->tg_s = now_s() - t1;
    qsort(steps, (size_t)n_tg, sizeof *steps, cmp_d);
    res->step_med_s = steps[n_tg / 2];
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "bench_gpu: decode: %s\n", e.msg);
out:
    qf_gpu_fwd_free(g);
    qf_fwd_free(cpu);
    qf_pool_free(pool);
    qf_kv_free(kv);
    free(tok), free(pos), free(seq), free(lg), free(steps);
    return rc;
}

static int parse_synth(const char *spec, qf_synth_params *p, char *path, size_t cap) {
    char arch[32], type[32];
    int E, L, H, KV, FF;
    if (sscanf(spec, "%31[^:]:%d:%d:%d:%d:%d:%31s", arch, &E, &L, &H, &KV, &FF, type) != 7) return -1;
    memset(p, 0, sizeof *p);
    int a;
    for (a = 0; a < QF_ARCH_COUNT; a++)
        if (!strcmp(arch, qf_arch_name((qf_arch)a))) break;
    if (a == QF_ARCH_COUNT || !qf_ftype_from_name(type, &p->ftype)) return -1;
    p->arch = (qf_arch)a;
    p->n_embd = E, p->n_layer = L, p->n_head = H, p->n_head_kv = KV, p->n_ff = FF;
    p->seed = 42;
    snprintf(path, cap, "/tmp/qf-bench-%s-%d-%d-%d-%d-%d-%s.gguf", arch, E, L, H, KV, FF, type);
    return 0;
}

/* --trace: the kernels of a middle layer (average over layers 2 ..
 * n - 3), times after the previous layer's last block finished. */
static void print_trace(int n_layer) {
    enum { CAP = 1024, K = 16 };
    static qf_cuda_trace_ev ev[CAP];
    int n = qf_cuda_trace_get(ev, CAP);
    double acc[K][8], per = 0;
    int cnt[K][8], nk = -1, nl = 0;
    const char *names[K];
    memset(acc, 0, sizeof acc);
    memset(cnt, 0, sizeof cnt);
    for (int l = 2; l < n_layer - 2; l++) {
        int i0 = -1, i1 = -1, p1 = -1; /* this layer's launches [i0, i1], the previous layer's last p1 */
        for (int i = 0; i < n; i++) {
            if (ev[i].layer == l - 1) p1 = i;
            if (ev[i].layer == l) {
                if (i0 < 0) i0 = i;
                i1 = i;
            }
        }
        if (i0 < 0 || p1 < 0 || ev[p1].us[7] < 0) continue;
        if (nk < 0) nk = i1 - i0 + 1 < K ? i1 - i0 + 1 : K;
        if (i1 - i0 + 1 != nk) continue;
        const double ref = ev[p1].us[7];
        per += ev[i1].us[7] - ref;
        nl++;
        for (int j = 0; j < nk; j++) {
            names[j] = ev[i0 + j].name;
            for (int k = 0; k < 8; k++)
                if (ev[i0 + j].us[k] >= 0) acc[j][k] += ev[i0 + j].us[k] - ref, cnt[j][k]++;
        }
    }
    printf("trace, batch 1, %ld decode steps: a layer takes %.1f us (average of %d middle layers);\n"
           "per kernel, us after the previous layer's last block finished, earliest..latest block:\n",
           qf_cuda_trace_steps(), nl ? per / nl : 0.0, nl);
    printf("  %-10s %15s %15s %15s %15s\n", "kernel", "start", "wait done", "work done", "end");
    for (int j = 0; j < nk; j++) {
        printf("  %-10s", names[j]);
        for (int e = 0; e < 4; e++) {
            if (cnt[j][2 * e])
                printf(" %6.1f..%6.1f ", acc[j][2 * e] / cnt[j][2 * e], acc[j][2 * e + 1] / cnt[j][2 * e + 1]);
            else
                printf(" %15s", "-");
        }
        printf("\n");
    }
}

/* --mv: microseconds and GB/s of the matrix-vector kernel per shape. */
static int mv_bench(const char *json) {
    double rbw = qf_cuda_read_bandwidth((size_t)2 << 30, 10), cbw = qf_cuda_copy_bandwidth((size_t)2 << 30, 10);
    printf("read-only bandwidth %.0f GB/s | d2d copy (read+write) %.0f GB/s\n", rbw / 1e9, cbw / 1e9);
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (jf) fprintf(jf, "{\"read_bw\": %.0f, \"copy_bw\": %.0f, \"mv\": [", rbw, cbw);
    static const struct {
        const char *name;
        int rows, cols, n_ff;
    } shapes[] = {
        {"big", 147456, 4096, 0},   {"gate_up", 28672, 4096, 14336}, {"down", 4096, 14336, 0},
        {"qkv", 6144, 4096, 0},     {"wo", 4096, 4096, 0},
    };
    const qf_type types[2] = {QF_TYPE_Q4_0, QF_TYPE_Q8_0};
    int first = 1;
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
            double bytes = (double)shapes[i].rows * shapes[i].cols / 32 * (t ? 34 : 18);
            double us = qf_cuda_bench_matvec(types[t], shapes[i].rows, shapes[i].cols, shapes[i].n_ff, 20);
            printf("mv %s %-8s %6d x %5d: %8.2f MB %9.2f us %7.0f GB/s\n", t ? "q8_0" : "q4_0", shapes[i].name,
                   shapes[i].rows, shapes[i].cols, bytes / 1e6, us, us > 0 ? bytes / us / 1e3 : 0.0);
            if (jf)
                fprintf(jf, "%s{\"type\": \"%s\", \"shape\": \"%s\", \"bytes\": %.0f, \"us\": %.3f}", first ? "" : ", ",
                        t ? "q8_0" : "q4_0", shapes[i].name, bytes, us);
            first = 0;
        }
    if (jf) {
        fprintf(jf, "]}\n");
        fclose(jf);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *synth = NULL, *json = NULL, *batches = "1,32";
    int n_tg = 128, n_prompt = 16, reps = 3, profile = 0, mv = 0, trace = 0, prof_b = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--profile")) {
            profile = 1;
            continue;
        }
        if (!strcmp(a, "--mv")) {
            mv = 1;
            continue;
        }
        if (!strcmp(a, "--trace")) {
            trace = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_gpu: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--synth")) synth = v;
        else if (!strcmp(a, "--tg")) n_tg = atoi(v);
        else if (!strcmp(a, "--prompt")) n_prompt = atoi(v);
        else if (!strcmp(a, "--batch")) batches = v;
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--gpu-layers")) g_ngl = atoi(v);
        else if (!strcmp(a, "--profile-batch")) profile = 1, prof_b = atoi(v) > 0 ? atoi(v) : 1;
        else {
            fprintf(stderr, "bench_gpu: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (mv) {
        if (!qf_gpu_available(NULL, 0)) {
            fprintf(stderr, "bench_gpu: no GPU\n");
            return 77;
        }
        return mv_bench(json);
    }
    if ((!model && !synth) || n_tg < 1 || n_prompt < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_gpu (--model M.gguf | --synth llama:E:L:H:KV:FF:TYPE) [--tg N] [--prompt N] "
                        "[--batch 1,32] [--reps N] [--json OUT] [--profile] [--profile-batch B] [--gpu-layers N] [--trace]\n"
                        "       bench_gpu --mv [--json OUT]\n");
        return 2;
    }
    char name[256];
    if (!qf_gpu_available(name, sizeof name)) {
        fprintf(stderr, "bench_gpu: no GPU\n");
        return 77;
    }
    char path[512];
    qf_err e = {0};
    if (synth) {
        qf_synth_params sp;
        if (parse_synth(synth, &sp, path, sizeof path) != 0) {
            fprintf(stderr, "bench_gpu: bad --synth %s\n", synth);
            return 2;
        }
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
        } else {
            double t = now_s();
            if (qf_model_synth(&sp, path, &e) != QF_OK) {
                fprintf(stderr, "bench_gpu: synth: %s\n", e.msg);
                return 1;
            }
            fprintf(stderr, "synthesized %s in %.1f s\n", path, now_s() - t);
        }
        model = path;
    }
    qf_model_params mp = {.no_tokenizer = true};
    double tl = now_s();
    qf_model *m = qf_model_load(model, &mp, &e);
    if (!m) {
        fprintf(stderr, "bench_gpu: %s\n", e.msg);
        return 1;
    }
    /* weight bytes per step and upload time, from a batch-1 instance */
    qf_kv_params kp = qf_model_kv_params(m, 256, 1, QF_TYPE_F16, 16);
    double tu = now_s();
    qf_gpu_fwd *g = qf_gpu_fwd_new(m, &kp, 1, 128, g_ngl, &e);
    if (!g) {
        fprintf(stderr, "bench_gpu: %s\n", e.msg);
        return 1;
    }
    double upload_s = now_s() - tu;
    size_t wbytes = qf_gpu_fwd_step_weight_bytes(g);
    qf_gpu_mem mem;
    qf_gpu_fwd_mem(g, &mem);
    qf_gpu_fwd_free(g);
    double bw = qf_cuda_copy_bandwidth((size_t)2 << 30, 20);
    double ideal = bw > 0 ? bw / (double)wbytes : 0;
    printf("device %s | model %s (%s, %d layers, n_embd %d) | load %.1f s, upload %.1f s\n", name, m->name,
           m->hp.arch_name, m->hp.n_layer, m->hp.n_embd, tu - tl, upload_s);
    printf("weights streamed per step: %.3f GB | d2d copy bandwidth (read+write): %.0f GB/s | roofline %.1f tok/s\n",
           wbytes / 1e9, bw / 1e9, ideal);
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (jf)
        fprintf(jf, "{\"device\": \"%s\", \"model\": \"%s\", \"weight_bytes\": %zu, \"copy_bw\": %.0f, \"runs\": [", name,
                model, wbytes, bw);
    double tps1 = 0;
    char blist[128];
    snprintf(blist, sizeof blist, "%s", batches);
    int first = 1;
    for (char *tokp = strtok(blist, ","); tokp; tokp = strtok(NULL, ",")) {
        int B = atoi(tokp);
        if (B < 1) continue;
        double *tg = malloc(sizeof(double) * (size_t)reps), *pp = malloc(sizeof(double) * (size_t)reps);
        double *med = malloc(sizeof(double) * (size_t)reps);
        int ok = 1;
        for (int r = 0; r < reps && ok; r++) {
            run_result rr;
            if (run_once(m, B, n_prompt, n_tg, &rr) != 0) ok = 0;
            else tg[r] = rr.tg_s, pp[r] = rr.pp_s, med[r] = rr.step_med_s;
        }
        if (!ok) return 1;
        qsort(tg, (size_t)reps, sizeof *tg, cmp_d);
        qsort(pp, (size_t)reps, sizeof *pp, cmp_d);
        qsort(med, (size_t)reps, sizeof *med, cmp_d);
        double tps = B * n_tg / tg[reps / 2], pps = B * n_prompt / pp[reps / 2];
        if (B == 1) tps1 = tps;
        printf("batch %3d: tg%d %8.1f tok/s (step median %.3f ms) | prompt %d x %d: %8.0f tok/s", B, n_tg, tps,
               med[reps / 2] * 1e3, B, n_prompt, pps);
        if (B == 1 && ideal > 0) printf(" | %.1f%% of roofline", 100.0 * tps / ideal);
        if (B > 1 && tps1 > 0) printf(" | %.1fx batch 1", tps / tps1);
        printf("\n");
        if (jf)
            fprintf(jf, "%s{\"batch\": %d, \"tg\": %d, \"tg_tok_s\": %.2f, \"step_median_ms\": %.4f, \"pp_tok_s\": %.1f}",
                    first ? "" : ", ", B, n_tg, tps, med[reps / 2] * 1e3, pps);
        first = 0;
        free(tg), free(pp), free(med);
    }
    if (profile) {
        /* batch 1 again, every kernel between two events */
        setenv("QF_CUDA_PROFILE", "1", 1);
        g_profile = 1;
        run_result rr;
        if (run_once(m, prof_b, n_prompt, n_tg, &rr) != 0) return 1;
        g_profile = 0;
        unsetenv("QF_CUDA_PROFILE");
        qf_cuda_prof pr[16];
        int np = qf_cuda_profile_get(pr, 16);
        long steps = qf_cuda_profile_steps();
        double tot = 0;
        for (int i = 0; i < np; i++) tot += pr[i].ms;
        printf("profile, batch %d, %ld decode steps, ms per step (events around each kernel; tg %.1f tok/s):\n",
               prof_b, steps, prof_b * n_tg / rr.tg_s);
        for (int i = 0; i < np; i++) {
            printf("  %-10s %7.3f ms %5.1f%%  %6.1f launches/step  %6.2f us each", pr[i].name, pr[i].ms / steps,
                   100.0 * pr[i].ms / tot, (double)pr[i].calls / steps, 1e3 * pr[i].ms / pr[i].calls);
            if (pr[i].bytes > 0) printf("  %7.0f GB/s", pr[i].bytes / (pr[i].ms * 1e-3) / 1e9);
            printf("\n");
            if (jf)
                fprintf(jf, "%s{\"kind\": \"%s\", \"ms_per_step\": %.4f, \"calls\": %ld, \"bytes\": %.0f}",
                        i ? ", " : "], \"profile\": [", pr[i].name, pr[i].ms / steps, pr[i].calls, pr[i].bytes);
        }
        printf("  %-10s %7.3f ms\n", "sum", tot / steps);
    }
    if (trace) {
        setenv("QF_CUDA_TRACE", "1", 1);
        g_trace = 1;
        run_result rr;
        if (run_once(m, 1, n_prompt, n_tg, &rr) != 0) return 1;
        g_trace = 0;
        unsetenv("QF_CUDA_TRACE");
        printf("traced run: tg %.1f tok/s\n", n_tg / rr.tg_s);
        print_trace(m->hp.n_layer - (g_ngl > 0 && g_ngl < m->hp.n_layer ? m->hp.n_layer - g_ngl : 0));
    }
    if (jf) {
        fprintf(jf, "], \"roofline_tok_s\": %.2f}\n", ideal);
        fclose(jf);
    }
    qf_model_free(m);
    return 0;
}
