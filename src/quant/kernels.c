/* kernels.c - ISA dispatch for the activation quantizers and qf_gemm.
 *
 * One table of function pointers per ISA (quant_int.h: qf_kernel_table).
 * The scalar table (ref_dot.c) has every supported type; each ISA table
 * starts as a copy of the next lower one and its file overwrites the
 * entries it implements, so a type without a fast kernel silently uses the
 * best slower one. Tables are built once (pthread_once) on the first call
 * of any function here; each ISA file decides from the CPU whether it can
 * run (x86: cpuid via __builtin_cpu_supports, aarch64: hwcaps). After that
 * the current table is one atomic pointer, read with relaxed ordering on
 * every call (cheap, and set_isa is for tests that do not race with
 * kernels anyway).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "quant/kernels.h"
#include "quant/quant_int.h"

enum { ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON, ISA_COUNT };

static const char *const isa_names[ISA_COUNT] = {"scalar", "avx2", "avx512", "neon"};

static qf_kernel_table tables[ISA_COUNT];
static bool available[ISA_COUNT];
static _Atomic(const qf_kernel_table *) current;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static int isa_by_name(const char *name) {
    for (int i = 0; i < ISA_COUNT; i++) {
        if (strcmp(name, isa_names[i]) == 0) return i;
    }
    return -1;
}

static void init_tables(void) {
    qf_kernels_fill_scalar(&tables[ISA_SCALAR]);
    available[ISA_SCALAR] = true;
    int best = ISA_SCALAR;
#if defined(__x86_64__)
    tables[ISA_AVX2] = tables[ISA_SCALAR];
    available[ISA_AVX2] = qf_kernels_fill_avx2(&tables[ISA_AVX2]);
    if (available[ISA_AVX2]) {
        best = ISA_AVX2;
        tables[ISA_AVX512] = tables[ISA_AVX2];
        available[ISA_AVX512] = qf_kernels_fill_avx512(&tables[ISA_AVX512]);
        if (available[ISA_AVX512]) best = ISA_AVX512;
    }
#elif defined(__aarch64__)
    tables[ISA_NEON] = tables[ISA_SCALAR];
    available[ISA_NEON] = qf_kernels_fill_neon(&tables[ISA_NEON]);
    if (available[ISA_NEON]) best = ISA_NEON;
#endif
    for (int i = 0; i < ISA_COUNT; i++)
        tables[i].name = isa_names[i];
    const char *want = getenv("QF_ISA");
    if (want && *want) {
        const int i = isa_by_name(want);
        if (i < 0 || !available[i])
            qf_warn("QF_ISA=%s: %s; using %s", want,
                    i < 0 ? "unknown ISA (scalar, avx2, avx512, neon)"
                          : "not supported by this CPU or build",
                    isa_names[best]);
        else
            best = i;
    }
    atomic_store(&current, &tables[best]);
}

static const qf_kernel_table *table(void) {
    pthread_once(&init_once, init_tables);
    return atomic_load_explicit(&current, memory_order_relaxed);
}

const char *qf_kernels_isa(void) {
    return table()->name;
}

int qf_kernels_set_isa(const char *name) {
    table();
    const int i = name ? isa_by_name(name) : -1;
    if (i < 0 || !available[i]) return -1;
    atomic_store(&current, &tables[i]);
    return 0;
}

qf_type qf_act_type(qf_type w) {
    switch (w) {
    case QF_TYPE_Q4_0:
    case QF_TYPE_Q5_0:
    case QF_TYPE_Q8_0:
        return QF_TYPE_Q8_0;
    case QF_TYPE_Q4_1:
    case QF_TYPE_Q5_1:
        return QF_TYPE_Q8_1;
    case QF_TYPE_Q2_K:
    case QF_TYPE_Q3_K:
    case QF_TYPE_Q4_K:
    case QF_TYPE_Q5_K:
    case QF_TYPE_Q6_K:
        return QF_TYPE_Q8_K;
    case QF_TYPE_F16:
        return QF_TYPE_F16;
    case QF_TYPE_BF16:
    case QF_TYPE_F32:
        return QF_TYPE_F32;
    default:
        return QF_TYPE_COUNT_MAX;
    }
}

size_t qf_act_row_size(qf_type w, int64_t cols) {
    const qf_type a = qf_act_type(w);
    if (a == QF_TYPE_COUNT_MAX) return 0;
    /* the weight's blocks must tile the row too (Q4_0 needs 32, Q4_K 256) */
    if (qf_type_row_size(w, cols) == 0 && cols != 0) return 0;
    return qf_type_row_size(a, cols);
}

void qf_act_quantize(qf_type w, const float *x, void *xq, int64_t cols) {
    const qf_type a = qf_act_type(w);
    QF_ASSERT(a != QF_TYPE_COUNT_MAX && cols >= 0);
    QF_ASSERT(cols == 0 || qf_act_row_size(w, cols) != 0);
    if (cols == 0) return;
    table()->act[a](x, xq, cols);
}

void qf_gemm(qf_type w, const void *W, size_t w_row_bytes, int64_t cols, int64_t r0, int64_t r1,
             const void *xq, int64_t n, float *y, int64_t ldy) {
    const qf_kernel_table *t = table();
    QF_ASSERT((unsigned)w < QF_TYPE_COUNT_MAX && t->gemm[w] != NULL);
    QF_ASSERT(cols >= 0 && (cols == 0 || qf_act_row_size(w, cols) != 0));
    QF_ASSERT(r0 >= 0 && r0 <= r1 && n >= 0);
    if (r0 == r1 || n == 0) return;
    QF_ASSERT(ldy >= r1 || n == 1);
    QF_ASSERT(w_row_bytes >= qf_type_row_size(w, cols));
    if (cols == 0) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t r = r0; r < r1; r++)
                y[i * ldy + r] = 0.0f;
        return;
    }
    t->gemm[w](W, w_row_bytes, cols, r0, r1, xq, qf_act_row_size(w, cols), n, y, ldy);
}

void qf_swiglu(float *g, const float *u, int64_t n) {
    QF_ASSERT(n >= 0);
    if (n > 0) table()->swiglu(g, u, n);
}

void qf_vmad_f16(int64_t d, int64_t n, const void *V, size_t v_row_bytes, const float *a, int64_t lda, int64_t nq,
                 float *out, int64_t ldo) {
    QF_ASSERT(d >= 0 && n >= 0 && nq >= 0 && (nq <= 1 || (lda >= n && ldo >= d)));
    if (d == 0 || n == 0 || nq == 0) return;
    table()->vmad_f16(d, n, V, v_row_bytes, a, lda, nq, out, ldo);
}

void qf_attn_f16(int64_t dk, int64_t dv, int64_t n, const void *K, size_t k_row_bytes, const void *V,
                 size_t v_row_bytes, const float *q, int64_t ldq, int64_t nq, float scale, float *m, float *l,
                 float *out, int64_t ldo, float *p) {
    QF_ASSERT(dk >= 0 && dv >= 0 && n >= 0 && nq >= 0 && (nq <= 1 || (ldq >= dk && ldo >= dv)));
    if (n == 0 || nq == 0) return;
    const qf_kernel_table *t = table();
    t->attn_sm_f16(dk, n, K, k_row_bytes, q, ldq, nq, scale, m, l, out, dv, ldo, p);
    if (dv > 0) t->vmad_f16(dv, n, V, v_row_bytes, p, n, nq, out, ldo);
}

void qf_attn_q8_0(int64_t dk, int64_t dv, int64_t n, const void *K, size_t k_row_bytes, const void *V,
                  size_t v_row_bytes, const float *q, int64_t ldq, int64_t nq, float scale, float *m, float *l,
                  float *out, int64_t ldo, float *p) {
    QF_ASSERT(dk >= 0 && dv >= 0 && n >= 0 && nq >= 0 && (nq <= 1 || (ldq >= dk && ldo >= dv)));
    QF_ASSERT(dk % 32 == 0 && dv % 32 == 0);
    if (n == 0 || nq == 0) return;
    const qf_kernel_table *t = table();
    t->attn_sm_q8_0(dk, n, K, k_row_bytes, q, ldq, nq, scale, m, l, out, dv, ldo, p);
    if (dv > 0) t->vmad_q8_0(dv, n, V, v_row_bytes, p, n, nq, out, ldo);
}
