/* cuda_ops.cu - the kernels between the matrix multiplications.
 *
 * act:        one block per token: optional RMSNorm (sum of squares in
 *             double, as the CPU path), optional SwiGLU, then the encodings
 *             the next matrix needs: floats, Q8_0-style int8 (32-blocks, fp16
 *             scale, ties away from zero) and Q8_K-style int8 (256-blocks,
 *             float scale from the signed extreme, ties to even). Both are
 *             byte-identical to qf_act_quantize; the int8 rows are written in
 *             the mma fragment order of cuda_int.h.
 * rope_table: cos/sin of every (token, frequency) of the step, in double
 *             then rounded (the CPU's rope_tables).
 * k_store:    per-head k RMSNorm (qwen3) and RoPE, keys and values written
 *             into the paged device cache (f16 or f32).
 * attention:  one block per (token, group of HPC query heads sharing a kv
 *             head, split of the attended positions [0, sink_end) and
 *             [t0, pos], read through the block table). The block norms and
 *             rotates its query heads itself, then walks its positions in
 *             chunks of 32 (see attn_kernel); with several splits (long
 *             contexts, few tokens) partial (max, sum, numerator) are
 *             combined by the last split block to finish (a counter per
 *             token and head group), or by a combine kernel.
 * attention_short: one token per sequence, short contexts: every attended
 *             key and value in shared memory, copied in before the PDL
 *             wait; one block per (token, query heads), no split (see its
 *             section).
 */
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_int.h"

/* ---- activations ---- */

typedef struct act_in {
    const float *x, *x2, *norm;
    float scale;
} act_in;

DEV float act_val(const act_in &in, int e) {
    float v = in.x[e];
    if (in.x2) v = v / (1.0f + expf(-v)) * in.x2[e];
    if (in.norm) v = v * in.scale * in.norm[e];
    return v;
}

#define ACT_NR 16 /* row values per thread requested together (rows up to 4096 in one round) */

/* One block per (token, slice of 256 values): a thread per value. With a
 * norm every block first sums the squares of the whole row (the rows are
 * small and in L2), so a single token still spreads over K / 256 blocks. */
static __global__ void __launch_bounds__(256) act_kernel(const act_args a, const act_bufs o, int reuse_ok) {
    __shared__ double red[8];
    __shared__ float wam[8], wmx[8];
    trace_ev(a.trace, TR_START);
    pdl_trigger();
    const int i = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int e = blockIdx.y * 256 + tid;
    /* the norm weight of this thread's value: constant, read before the wait */
    const float nwe = a.norm && e < a.k ? a.norm[e] : 0.0f;
    pdl_wait();
    trace_ev(a.trace, TR_WAIT);
    const int src = a.rows ? a.rows[i] : i;
    act_in in = {a.x + (size_t)src * a.ldx, a.x2 ? a.x2 + (size_t)src * a.ldx : NULL, NULL, 1.0f};
    /* with a norm over a row of at most 256 ACT_NR values, the sum's loads
     * include this thread's value (j = blockIdx.y): kept, not read again,
     * so the kernel makes one round trip after the wait (QF_CUDA_ACT_REUSE=0:
     * two, as before) */
    const bool reuse = a.norm && reuse_ok && a.k <= 256 * ACT_NR && blockIdx.y < ACT_NR;
    float mine = 0.0f;
    if (a.norm) {
        /* the row is in L2: request ACT_NR values at once (one round trip
         * instead of one per unrolled group), then sum in the same order */
        double ss = 0.0;
        for (int k0 = tid; k0 < a.k; k0 += 256 * ACT_NR) {
            float v[ACT_NR];
#pragma unroll
            for (int j = 0; j < ACT_NR; j++) {
                const int k = k0 + 256 * j;
                v[j] = k < a.k ? in.x[k] : 0.0f;
            }
            if (in.x2) {
                float u[ACT_NR];
#pragma unroll
                for (int j = 0; j < ACT_NR; j++) {
                    const int k = k0 + 256 * j;
                    u[j] = k < a.k ? in.x2[k] : 0.0f;
                }
#pragma unroll
                for (int j = 0; j < ACT_NR; j++) v[j] = v[j] / (1.0f + expf(-v[j])) * u[j];
            }
#pragma unroll
            for (int j = 0; j < ACT_NR; j++) {
                if (k0 + 256 * j < a.k) ss += (double)v[j] * v[j];
                if (j == (int)blockIdx.y) mine = v[j];
            }
        }
        ss = warp_sum_d(ss);
        if (lane == 0) red[warp] = ss;
        __syncthreads();
        double t = 0.0;
        for (int w = 0; w < 8; w++) t += red[w];
        in.scale = (float)(1.0 / sqrt(t / (double)a.k + (double)a.eps));
        in.norm = a.norm;
    }
    const bool valid = e < a.k;
    const float v = !valid ? 0.0f : reuse ? mine * in.scale * nwe : act_val(in, e);
    if ((a.modes & ACT_F32) && valid) o.f[(size_t)i * o.kmax + e] = v;
    if (a.modes & ACT_Q8_0) {
        /* K is a multiple of 32: a warp is one whole group or none */
        float amax = warp_max(fabsf(v));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int qv = round_away_127(v * id);
        int sum = __reduce_add_sync(0xffffffffu, qv);
        if (valid) {
            o.a8_0.q[(size_t)i * o.kmax + frag_off(e)] = (uint8_t)(int8_t)qv;
            if (lane == 0)
                o.a8_0.ds[(size_t)(e / 32) * o.tok_pad + i] =
                    make_float2(__half2float(__float2half_rn(d)), __int_as_float(sum));
        }
    }
    if (a.modes & ACT_Q8_K) {
        /* the block's signed extreme; ties go to the first element, as the CPU scan */
        float am = fabsf(v), mx = v;
        int idx = tid;
        for (int off = 16; off > 0; off >>= 1) {
            float am2 = __shfl_xor_sync(0xffffffffu, am, off), mx2 = __shfl_xor_sync(0xffffffffu, mx, off);
            int idx2 = __shfl_xor_sync(0xffffffffu, idx, off);
            if (am2 > am || (am2 == am && idx2 < idx)) am = am2, mx = mx2, idx = idx2;
        }
        if (lane == 0) wam[warp] = am, wmx[warp] = mx;
        __syncthreads();
        am = wam[0], mx = wmx[0];
        for (int w = 1; w < 8; w++)
            if (wam[w] > am) am = wam[w], mx = wmx[w]; /* warps in order: the first wins ties */
        if (am == 0.0f) mx = 0.0f;
        float iscale = mx != 0.0f ? -127.0f / mx : 0.0f;
        int qv = 0;
        if (mx != 0.0f) {
            qv = round_even(iscale * v);
            qv = qv > 127 ? 127 : (qv < -128 ? -128 : qv);
        }
        int sum = __reduce_add_sync(0xffffffffu, qv);
        if (valid) {
            o.a8_k.q[(size_t)i * o.kmax + frag_off(e)] = (uint8_t)(int8_t)qv;
            if (lane == 0)
                o.a8_k.ds[(size_t)(e / 32) * o.tok_pad + i] =
                    make_float2(mx != 0.0f ? 1.0f / iscale : 0.0f, __int_as_float(sum));
        }
    }
    trace_ev(a.trace, TR_END);
}

cudaError_t cu_act(const act_args *a, const act_bufs *out, int pdl, cudaStream_t st) {
    if (a->n <= 0) return cudaSuccess;
    static int reuse = -1;
    if (reuse < 0) {
        const char *s = getenv("QF_CUDA_ACT_REUSE");
        reuse = !(s && *s && atoi(s) == 0);
    }
    dim3 grid((unsigned)a->n, (unsigned)((a->k + 255) / 256));
    return launch_k(act_kernel, grid, dim3(256), 0, st, pdl, *a, *out, reuse);
}

/* ---- rope ---- */

static __global__ void rope_table_kernel(const int *tok, const double *freq, int n_rot, float *cs) {
    pdl_trigger();
    pdl_wait();
    int i = blockIdx.x, pos = tok[4 * i];
    for (int j = threadIdx.x; j < n_rot / 2; j += blockDim.x) {
        double th = (double)pos * freq[j];
        cs[(size_t)i * n_rot + 2 * j] = (float)cos(th);
        cs[(size_t)i * n_rot + 2 * j + 1] = (float)sin(th);
    }
}

cudaError_t cu_rope_table(const int *tok, int n_tok, const double *freq, int n_rot, float *cs, int pdl,
                          cudaStream_t st) {
    if (n_rot <= 0 || n_tok <= 0) return cudaSuccess;
    return launch_k(rope_table_kernel, dim3((unsigned)n_tok), dim3(64), 0, st, pdl, tok, freq, n_rot, cs);
}

/* RMSNorm (when nw) then RoPE of one head held in shared memory, by one warp. */
DEV void head_norm_rope(float *v, int hd, const float *nw, float eps, const float *cs, int n_rot, int neox,
                        int lane) {
    if (nw) {
        double ss = 0.0;
        for (int d = lane; d < hd; d += 32) ss += (double)v[d] * v[d];
        ss = warp_sum_d(ss);
        float sc = (float)(1.0 / sqrt(ss / (double)hd + (double)eps));
        __syncwarp();
        for (int d = lane; d < hd; d += 32) v[d] = v[d] * sc * nw[d];
        __syncwarp();
    }
    int half = n_rot / 2;
    for (int j = lane; j < half; j += 32) {
        int ia = neox ? j : 2 * j, ib = neox ? j + half : 2 * j + 1;
        float c = cs[2 * j], s = cs[2 * j + 1], x0 = v[ia], x1 = v[ib];
        v[ia] = rope_0(x0, x1, c, s);
        v[ib] = rope_1(x0, x1, c, s);
    }
    __syncwarp();
}

DEV size_t kv_block_base(const attn_params &p, int blk) {
    return ((size_t)blk * p.n_layer + p.layer) * (size_t)p.bs * (size_t)(p.kv_dim + p.kv_dim_v);
}

DEV void kv_put(const attn_params &p, size_t off, float v) {
    if (p.kv_f32) ((float *)p.kv)[off] = v;
    else ((__half *)p.kv)[off] = __float2half_rn(v);
}

/* One warp per (token, kv head): the key head normed (qwen3) and rotated,
 * then key and value written into the token's cache slot. */
static __global__ void __launch_bounds__(32) k_store_kernel(const attn_params p) {
    __shared__ float buf[256];
    pdl_trigger();
    pdl_wait();
    const int i = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
    const float *row = p.qkv + (size_t)i * p.qkv_stride;
    const float *k = row + (size_t)p.n_head * p.hd + (size_t)h * p.hd;
    const float *v = row + (size_t)p.n_head * p.hd + (size_t)p.n_head_kv * p.hd + (size_t)h * p.hdv;
    for (int d = lane; d < p.hd; d += 32) buf[d] = k[d];
    __syncwarp();
    head_norm_rope(buf, p.hd, p.k_norm, p.eps, p.cs + (size_t)i * p.n_rot, p.n_rot, p.neox, lane);
    int pos = p.tok[4 * i], toff = p.tok[4 * i + 1];
    int blk = p.tables[toff + pos / p.bs], slot = pos % p.bs;
    size_t base = kv_block_base(p, blk);
    for (int d = lane; d < p.hd; d += 32) kv_put(p, base + (size_t)slot * p.kv_dim + (size_t)h * p.hd + d, buf[d]);
    for (int d = lane; d < p.hdv; d += 32)
        kv_put(p, base + (size_t)p.bs * p.kv_dim + (size_t)slot * p.kv_dim_v + (size_t)h * p.hdv + d, v[d]);
}

cudaError_t cu_k_store(const attn_params *p, int pdl, cudaStream_t st) {
    return launch_k(k_store_kernel, dim3((unsigned)p->n_tok, (unsigned)p->n_head_kv), dim3(32), 0, st, pdl, *p);
}

/* ---- attention ---- */

#define ATT_WARPS 4

/* Value d of head h of token i, held by one lane of a warp whose 32 lanes
 * hold one 32-group: its Q8_0-style encoding for the Wo matmul (the
 * arithmetic of act_kernel). */
DEV void encode_out(const attn_params &p, int i, int h, int d, float val) {
    const int lane = threadIdx.x & 31;
    float amax = warp_max(fabsf(val));
    float dsc = amax / 127.0f, id = dsc != 0.0f ? 1.0f / dsc : 0.0f;
    int q = round_away_127(val * id);
    int sum = __reduce_add_sync(0xffffffffu, q);
    int e = h * p.hdv + d;
    p.aq8[(size_t)i * p.a_kmax + frag_off(e)] = (uint8_t)(int8_t)q;
    if (lane == 0)
        p.ads8[(size_t)(e / 32) * p.a_tok_pad + i] = make_float2(__half2float(__float2half_rn(dsc)), __int_as_float(sum));
}

/* Split-K combine of head hh (token * n_head + head): the splits' partial
 * (numerator, max, sum) in split order, then the output (and its encoding
 * for Wo). Threads of one block, stride nth; partials read through L2 (they
 * were written by other blocks). */
DEV void attn_combine_head(const attn_params &p, size_t hh, int tid, int nth) {
    const float *pt = p.part + hh * p.n_split * (size_t)(p.hdv + 2);
    float M = -INFINITY;
    for (int s = 0; s < p.n_split; s++) M = fmaxf(M, __ldcg(&pt[(size_t)s * (p.hdv + 2) + p.hdv]));
    for (int d = tid; d < p.hdv; d += nth) {
        float num = 0.0f, den = 0.0f;
        for (int s = 0; s < p.n_split; s++) {
            const float *q = pt + (size_t)s * (p.hdv + 2);
            const float qm = __ldcg(&q[p.hdv]);
            if (qm == -INFINITY) continue;
            float e = expf(qm - M);
            num += __ldcg(&q[d]) * e;
            den += __ldcg(&q[p.hdv + 1]) * e;
        }
        p.out[hh * p.hdv + d] = num / den;
        if (p.aq8) encode_out(p, (int)(hh / p.n_head), (int)(hh % p.n_head), d, num / den);
    }
}

template <typename KT> __device__ __forceinline__ void load8(const KT *p, float *o);
template <> __device__ __forceinline__ void load8<__half>(const __half *p, float *o) {
    uint4 v = *(const uint4 *)p;
    const __half2 *h = (const __half2 *)&v;
    for (int k = 0; k < 4; k++) {
        float2 f = __half22float2(h[k]);
        o[2 * k] = f.x, o[2 * k + 1] = f.y;
    }
}
template <> __device__ __forceinline__ void load8<float>(const float *p, float *o) {
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
}

DEV float ldkv(const __half *p) { return __half2float(*p); }
DEV float ldkv(const float *p) { return *p; }

template <typename KT> DEV float kt_round(float v);
template <> __device__ __forceinline__ float kt_round<__half>(float v) { return __half2float(__float2half_rn(v)); }
template <> __device__ __forceinline__ float kt_round<float>(float v) { return v; }

/* Before the PDL wait: the keys and values this block will read, into L2.
 * Every attended position but the step's own was written by an earlier
 * step, and the positions and block tables come from the step buffer,
 * copied in before the step's first kernel; so this overlaps the cache's
 * memory latency with the kernels still running before attention. */
template <typename KT> DEV void attn_prefetch(const attn_params &p, int hpc) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int G = p.n_head / p.n_head_kv;
    const int i = blockIdx.x, kvh = (int)blockIdx.y * hpc / G, sp = blockIdx.z;
    const int pos = p.tok[4 * i], toff = p.tok[4 * i + 1], sink = p.tok[4 * i + 2], t0 = p.tok[4 * i + 3];
    const int L = sink + pos - t0 + 1, chunk = (L + p.n_split - 1) / p.n_split;
    const int plo = sp * chunk, phi = plo + chunk < L ? plo + chunk : L;
    const KT *kv = (const KT *)p.kv;
    for (int x = plo + (int)threadIdx.x; x < phi; x += blockDim.x) {
        const int pp = x < sink ? x : t0 + (x - sink);
        if (pp == pos) continue;
        const int blk = p.tables[toff + pp / p.bs];
        if (blk < 0) continue;
        const size_t base = kv_block_base(p, blk);
        const KT *kr = kv + base + (size_t)(pp % p.bs) * p.kv_dim + (size_t)kvh * p.hd;
        const KT *vr = kv + base + (size_t)p.bs * p.kv_dim + (size_t)(pp % p.bs) * p.kv_dim_v + (size_t)kvh * p.hdv;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(kr), "r"((uint32_t)(p.hd * sizeof(KT)))
                     : "memory");
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(vr), "r"((uint32_t)(p.hdv * sizeof(KT)))
                     : "memory");
    }
#else
    (void)p, (void)hpc;
#endif
}

#define VO_NONE (-1LL) /* position not attended */
#define VO_CUR (-2LL)  /* this step's own position (FUSE): from kcur/vcur */

/* Block (token, HPC query heads of one kv group, split): the attended
 * positions [plo, phi) in chunks of 32. Per chunk: (A) lane = position,
 * warps split the head dims, partial q.k to shared memory; (B) a warp per
 * head: scores, online softmax, probabilities to shared memory; (C) a thread
 * per output dim accumulates the chunk's values. Short dependency chains
 * and a thread per value keep one token's decode fast.
 * FUSE (steps where no sequence has two tokens): the block also takes
 * this token's key and value from the QKV output (k_store's arithmetic),
 * uses them for its own position instead of reading the cache, and the
 * first query-head block of the kv group writes them into the cache; every
 * other attended position was written by an earlier step, so k_store is
 * not needed before this kernel. */
template <int HPC, typename KT, bool FUSE>
static __global__ void __launch_bounds__(128) attn_kernel(const attn_params p) {
    __shared__ __align__(16) float qs[HPC][256];
    __shared__ __align__(16) float kcur[FUSE ? 256 : 1], vcur[FUSE ? 256 : 1];
    __shared__ float part[ATT_WARPS][HPC][32];
    __shared__ float ps[HPC][32];
    __shared__ long long vo_s[32];
    __shared__ float corr_s[HPC], m_s[HPC], l_s[HPC];
    trace_ev(p.trace, TR_START);
    /* by default no early trigger: the next kernel's weight prefetch would
     * queue ahead of this kernel's latency-bound reads of the cache */
    if (p.early_trigger) pdl_trigger();
    if (p.prefetch) attn_prefetch<KT>(p, HPC);
    pdl_wait();
    trace_ev(p.trace, TR_WAIT);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int G = p.n_head / p.n_head_kv;
    const int i = blockIdx.x, h0 = blockIdx.y * HPC, kvh = h0 / G, sp = blockIdx.z;
    const int pos = p.tok[4 * i], toff = p.tok[4 * i + 1], sink = p.tok[4 * i + 2], t0 = p.tok[4 * i + 3];
    const int L = sink + pos - t0 + 1, chunk = (L + p.n_split - 1) / p.n_split;
    const int plo = sp * chunk, phi = plo + chunk < L ? plo + chunk : L;
    const float *row = p.qkv + (size_t)i * p.qkv_stride;
    const KT *kv = (const KT *)p.kv;
    const int hd8 = p.hd / 8, nwd = hd8 % 4 == 0 ? 4 : hd8 % 2 == 0 ? 2 : 1, slice = p.hd / nwd;

    for (int x = tid; x < HPC * p.hd; x += 128) qs[x / p.hd][x % p.hd] = row[(size_t)h0 * p.hd + x];
    if (FUSE) {
        const float *kr = row + (size_t)p.n_head * p.hd + (size_t)kvh * p.hd;
        const float *vr = row + (size_t)p.n_head * p.hd + (size_t)p.n_head_kv * p.hd + (size_t)kvh * p.hdv;
        for (int d = tid; d < p.hd; d += 128) kcur[d] = kr[d];
        for (int d = tid; d < p.hdv; d += 128) vcur[d] = vr[d];
    }
    __syncthreads();
    if (FUSE && warp == ATT_WARPS - 1) {
        /* rounded as the cache stores them (storing the rounded value
         * again gives the same bits); written to the cache at the end */
        head_norm_rope(kcur, p.hd, p.k_norm, p.eps, p.cs + (size_t)i * p.n_rot, p.n_rot, p.neox, lane);
        for (int d = lane; d < p.hd; d += 32) kcur[d] = kt_round<KT>(kcur[d]);
        for (int d = lane; d < p.hdv; d += 32) vcur[d] = kt_round<KT>(vcur[d]);
    }
    for (int hh = warp; hh < HPC; hh += ATT_WARPS) {
        head_norm_rope(qs[hh], p.hd, p.q_norm, p.eps, p.cs + (size_t)i * p.n_rot, p.n_rot, p.neox, lane);
        /* an f16 cache: q rounded to f16 before q.K, as the CPU path encodes it */
        if (!p.kv_f32)
            for (int d = lane; d < p.hd; d += 32) qs[hh][d] = __half2float(__float2half_rn(qs[hh][d]));
    }
    if (tid < HPC) m_s[tid] = -INFINITY, l_s[tid] = 0.0f;
    __syncthreads();

    float acc[HPC][2];
#pragma unroll
    for (int hh = 0; hh < HPC; hh++) acc[hh][0] = acc[hh][1] = 0.0f;
    for (int c0 = plo; c0 < phi; c0 += 32) {
        /* (A) partial scores */
        int x = c0 + lane;
        bool valid = x < phi;
        int pp = x < sink ? x : t0 + (x - sink);
        int blk = valid ? p.tables[toff + pp / p.bs] : -1;
        valid = valid && blk >= 0;
        size_t base = valid ? kv_block_base(p, blk) : 0;
        if (warp < nwd) {
            float s[HPC];
#pragma unroll
            for (int hh = 0; hh < HPC; hh++) s[hh] = 0.0f;
            if (valid) {
                const bool cur = FUSE && pp == pos;
                const KT *kr = kv + base + (size_t)(pp % p.bs) * p.kv_dim + (size_t)kvh * p.hd + warp * slice;
#pragma unroll 4
                for (int c = 0; c < slice; c += 8) {
                    float k8[8];
                    if (cur) {
#pragma unroll
                        for (int u = 0; u < 8; u++) k8[u] = kcur[warp * slice + c + u];
                    } else {
                        load8<KT>(kr + c, k8);
                    }
#pragma unroll
                    for (int hh = 0; hh < HPC; hh++) {
                        float4 qa = *(const float4 *)&qs[hh][warp * slice + c];
                        float4 qb = *(const float4 *)&qs[hh][warp * slice + c + 4];
                        s[hh] += qa.x * k8[0] + qa.y * k8[1] + qa.z * k8[2] + qa.w * k8[3] + qb.x * k8[4] +
                                 qb.y * k8[5] + qb.z * k8[6] + qb.w * k8[7];
                    }
                }
            }
#pragma unroll
            for (int hh = 0; hh < HPC; hh++) part[warp][hh][lane] = s[hh];
        }
        if (warp == 0)
            vo_s[lane] = !valid                  ? VO_NONE
                         : FUSE && pp == pos     ? VO_CUR
                                                 : (long long)(base + (size_t)p.bs * p.kv_dim +
                                                               (size_t)(pp % p.bs) * p.kv_dim_v + (size_t)kvh * p.hdv);
        __syncthreads();
        /* the chunk's values into registers now, all at once: their loads
         * overlap the softmax instead of following it */
        const int nv = phi - c0 < 32 ? phi - c0 : 32;
        float vv[32][2];
#pragma unroll
        for (int u = 0; u < 32; u++) {
            long long vo = u < nv ? vo_s[u] : VO_NONE;
#pragma unroll
            for (int dd = 0; dd < 2; dd++) {
                int d = tid + 128 * dd;
                vv[u][dd] = d >= p.hdv     ? 0.0f
                            : vo >= 0      ? ldkv(kv + vo + d)
                            : vo == VO_CUR ? vcur[FUSE ? d : 0]
                                           : 0.0f;
            }
        }
        /* (B) softmax, a warp per head */
        for (int hh = warp; hh < HPC; hh += ATT_WARPS) {
            bool ok = vo_s[lane] != VO_NONE;
            float sc = 0.0f;
            for (int ww = 0; ww < nwd; ww++) sc += part[ww][hh][lane];
            sc = ok ? sc * p.scale : -INFINITY;
            float mold = m_s[hh], mx = warp_max(sc), mnew = fmaxf(mold, mx);
            float corr = mnew == -INFINITY ? 1.0f : expf(mold - mnew);
            float pv = ok ? expf(sc - mnew) : 0.0f;
            float lsum = warp_sum(pv);
            ps[hh][lane] = pv;
            if (lane == 0) corr_s[hh] = corr, m_s[hh] = mnew, l_s[hh] = l_s[hh] * corr + lsum;
        }
        __syncthreads();
        /* (C) values */
#pragma unroll
        for (int hh = 0; hh < HPC; hh++) acc[hh][0] *= corr_s[hh], acc[hh][1] *= corr_s[hh];
#pragma unroll
        for (int u = 0; u < 32; u++) {
            if (u >= nv) break;
#pragma unroll
            for (int hh = 0; hh < HPC; hh++) {
                float a = ps[hh][u];
                acc[hh][0] += a * vv[u][0];
                acc[hh][1] += a * vv[u][1];
            }
        }
        __syncthreads(); /* the next chunk overwrites part, ps, vo_s */
    }
    trace_ev(p.trace, TR_LOOP);
    if (!p.early_trigger) pdl_trigger();
    if (FUSE && h0 % G == 0 && sp == 0) { /* the kv group's first block stores this position */
        const int blk = p.tables[toff + pos / p.bs], slot = pos % p.bs;
        const size_t base = kv_block_base(p, blk);
        for (int d = tid; d < p.hd; d += 128) kv_put(p, base + (size_t)slot * p.kv_dim + (size_t)kvh * p.hd + d, kcur[d]);
        for (int d = tid; d < p.hdv; d += 128)
            kv_put(p, base + (size_t)p.bs * p.kv_dim + (size_t)slot * p.kv_dim_v + (size_t)kvh * p.hdv + d, vcur[d]);
    }
#pragma unroll
    for (int hh = 0; hh < HPC; hh++)
#pragma unroll
        for (int dd = 0; dd < 2; dd++) {
            int d = tid + 128 * dd;
            if (d >= p.hdv) continue;
            size_t hi = (size_t)i * p.n_head + h0 + hh;
            if (p.n_split == 1) {
                float val = acc[hh][dd] / l_s[hh];
                p.out[hi * p.hdv + d] = val;
                if (p.aq8) encode_out(p, i, h0 + hh, d, val); /* d < hdv is warp-uniform (hdv % 32 == 0) */
            } else {
                float *pt = p.part + (hi * p.n_split + sp) * (size_t)(p.hdv + 2);
                pt[d] = acc[hh][dd];
                if (d == 0) pt[p.hdv] = m_s[hh], pt[p.hdv + 1] = l_s[hh];
            }
        }
    if (p.n_split > 1 && p.cnt) {
        /* the last of the n_split blocks of these heads combines them (no
         * combine kernel): partials written, fenced, counted */
        __shared__ int last_s;
        __syncthreads();
        if (tid == 0) {
            __threadfence();
            int *c = &p.cnt[(size_t)i * gridDim.y + blockIdx.y];
            const int old = atomicAdd(c, 1);
            last_s = old == p.n_split - 1;
            if (last_s) *c = 0; /* ready for the next step */
            __threadfence();
        }
        __syncthreads();
        if (last_s)
            for (int hh = 0; hh < HPC; hh++) attn_combine_head(p, (size_t)i * p.n_head + h0 + hh, tid, 128);
    }
    trace_ev(p.trace, TR_END);
}

static __global__ void __launch_bounds__(128) attn_combine_kernel(const attn_params p) {
    pdl_trigger();
    pdl_wait();
    attn_combine_head(p, blockIdx.x, threadIdx.x, blockDim.x); /* token * n_head + head */
}

template <typename KT, bool FUSE>
static cudaError_t attn_launch(const attn_params *p, dim3 grid, int pdl, cudaStream_t st) {
    switch (p->hpc) {
    case 8: return launch_k(attn_kernel<8, KT, FUSE>, grid, dim3(128), 0, st, pdl, *p);
    case 7: return launch_k(attn_kernel<7, KT, FUSE>, grid, dim3(128), 0, st, pdl, *p);
    case 6: return launch_k(attn_kernel<6, KT, FUSE>, grid, dim3(128), 0, st, pdl, *p);
    case 4: return launch_k(attn_kernel<4, KT, FUSE>, grid, dim3(128), 0, st, pdl, *p);
    case 2: return launch_k(attn_kernel<2, KT, FUSE>, grid, dim3(128), 0, st, pdl, *p);
    default: return launch_k(attn_kernel<1, KT, FUSE>, grid, dim3(128), 0, st, pdl, *p);
    }
}

cudaError_t cu_attention(const attn_params *p, int pdl, cudaStream_t st) {
    dim3 grid((unsigned)p->n_tok, (unsigned)(p->n_head / p->hpc), (unsigned)p->n_split);
    cudaError_t e = p->fuse_store ? (p->kv_f32 ? attn_launch<float, true>(p, grid, pdl, st)
                                               : attn_launch<__half, true>(p, grid, pdl, st))
                                  : (p->kv_f32 ? attn_launch<float, false>(p, grid, pdl, st)
                                               : attn_launch<__half, false>(p, grid, pdl, st));
    if (e != cudaSuccess || p->n_split == 1 || p->cnt) return e;
    return launch_k(attn_combine_kernel, dim3((unsigned)(p->n_tok * p->n_head)), dim3(128), 0, st, pdl, *p);
}

/* ---- attention over a short context, one token per sequence ----
 *
 * At batch 1 the split kernel above is a chain of dependent round trips
 * (block table, keys, values per 32-position chunk, then the split
 * partials and their combine). Here one block per (token, HPC query heads
 * of one kv group) holds every attended key and value in shared memory:
 * all but the token's own position were written by earlier steps, so they
 * are copied in before the PDL wait, while the kernels before it still
 * run; after the wait one round trip brings q, the rope row and the own
 * key/value, and the rest is arithmetic on shared memory: a thread per
 * position for the scores (8 partial sums over the head dims per head,
 * added pairwise), a block maximum and sum per head for the softmax, then
 * a thread per output value (AS_THREADS / (HPC hdv) threads each over a
 * range of positions when there are fewer outputs than threads, added in
 * order), the output and its Q8_0 encoding for Wo. No split, no combine.
 * HPC = 1 for few tokens (more blocks), the whole kv group for many (each
 * key and value read once per token). FUSE as attn_kernel: the own key
 * and value come from the QKV output (k_store's arithmetic) and the kv
 * group's first block stores them (no k_store kernel). */

#define AS_THREADS 256

template <typename KT> struct as_pad { static constexpr int E = 16 / (int)sizeof(KT); };

/* dynamic shared memory: keys (rows padded by 16 bytes, so lanes reading
 * neighbouring positions hit different banks), values, hpc scores and a
 * block number per position */
template <typename KT> static size_t as_smem(int hd, int hdv, int hpc, int lcap) {
    return (size_t)lcap *
           ((size_t)(hd + as_pad<KT>::E) * sizeof(KT) + (size_t)hdv * sizeof(KT) + (size_t)(hpc + 1) * sizeof(float));
}

template <int HPC, typename KT, bool FUSE>
static __global__ void __launch_bounds__(AS_THREADS) attn_short_kernel(const attn_params p) {
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ __align__(16) float qs[HPC][256];
    __shared__ float css[256], vpart[AS_THREADS];
    __shared__ float kf[FUSE ? 256 : 1], vf[FUSE ? 256 : 1];
    __shared__ float rmax[HPC][AS_THREADS / 32], rsum[HPC][AS_THREADS / 32], mh[HPC], lh[HPC];
    constexpr int PE = as_pad<KT>::E, NW = AS_THREADS / 32;
    const int hd = p.hd, hdv = p.hdv, kst = hd + PE, lcap = p.lcap;
    KT *ks = (KT *)smem;
    KT *vs = ks + (size_t)lcap * kst;
    float *sc = (float *)(vs + (size_t)lcap * hdv); /* (HPC, lcap) scores, then probabilities */
    int *xb = (int *)(sc + (size_t)HPC * lcap);   /* per position: its kv block; -1 not attended; -2 the own position */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    trace_ev(p.trace, TR_START);
    if (p.early_trigger) pdl_trigger();
    const int G = p.n_head / p.n_head_kv;
    const int i = blockIdx.x, h0 = blockIdx.y * HPC, kvh = h0 / G;
    /* positions and block tables come from the step buffer, copied in
     * before the step's first kernel */
    const int pos = p.tok[4 * i], toff = p.tok[4 * i + 1], sink = p.tok[4 * i + 2], t0 = p.tok[4 * i + 3];
    const int L = sink + pos - t0 + 1, xo = L - 1; /* sinks lie before t0 <= pos: the own position is the last */
    const KT *kv = (const KT *)p.kv;
    for (int x = tid; x < L; x += AS_THREADS) {
        const int pp = x < sink ? x : t0 + (x - sink);
        const int blk = p.tables[toff + pp / p.bs];
        xb[x] = blk < 0 ? -1 : x == xo ? -2 : blk;
    }
    __syncthreads();
    const int nk = hd / PE, nkv = nk + hdv / PE; /* 16-byte pieces of a key row, of both rows */
    for (int it = tid; it < xo * nkv; it += AS_THREADS) {
        const int x = it / nkv, c = it - x * nkv, blk = xb[x];
        if (blk < 0) { /* not attended: probability 0, and a 0 value (never a NaN from stale memory) */
            if (c >= nk) *(uint4 *)(vs + (size_t)x * hdv + (c - nk) * PE) = make_uint4(0, 0, 0, 0);
            continue;
        }
        const int pp = x < sink ? x : t0 + (x - sink), slot = pp % p.bs;
        const size_t base = kv_block_base(p, blk);
        if (c < nk)
            cp16(ks + (size_t)x * kst + c * PE, kv + base + (size_t)slot * p.kv_dim + (size_t)kvh * hd + c * PE);
        else
            cp16(vs + (size_t)x * hdv + (c - nk) * PE,
                 kv + base + (size_t)p.bs * p.kv_dim + (size_t)slot * p.kv_dim_v + (size_t)kvh * hdv + (c - nk) * PE);
    }
    cp_commit();
    pdl_wait();
    trace_ev(p.trace, TR_WAIT);

    /* one round trip: q, the rope row, the own key and value */
    const float *row = p.qkv + (size_t)i * p.qkv_stride;
    const bool own = xb[xo] == -2;
    for (int x = tid; x < HPC * hd; x += AS_THREADS) qs[x / hd][x % hd] = row[(size_t)h0 * hd + x];
    for (int d = tid; d < p.n_rot; d += AS_THREADS) css[d] = p.cs[(size_t)i * p.n_rot + d];
    const int opp = xo < sink ? xo : t0 + (xo - sink);
    if (FUSE) {
        const float *kr = row + (size_t)p.n_head * hd + (size_t)kvh * hd;
        const float *vr = row + (size_t)p.n_head * hd + (size_t)p.n_head_kv * hd + (size_t)kvh * hdv;
        for (int d = tid; d < hd; d += AS_THREADS) kf[d] = kr[d];
        for (int d = tid; d < hdv; d += AS_THREADS) vf[d] = vr[d];
    } else if (own) {
        /* written by the kernel before (the QKV epilogue or k_store): through L2 */
        const size_t base = kv_block_base(p, p.tables[toff + opp / p.bs]);
        const int slot = opp % p.bs;
        for (int c = tid; c < nkv; c += AS_THREADS) {
            if (c < nk)
                cp16(ks + (size_t)xo * kst + c * PE, kv + base + (size_t)slot * p.kv_dim + (size_t)kvh * hd + c * PE);
            else
                cp16(vs + (size_t)xo * hdv + (c - nk) * PE, kv + base + (size_t)p.bs * p.kv_dim +
                                                                 (size_t)slot * p.kv_dim_v + (size_t)kvh * hdv +
                                                                 (c - nk) * PE);
        }
        cp_commit();
    } else {
        for (int c = tid; c < hdv / PE; c += AS_THREADS)
            *(uint4 *)(vs + (size_t)xo * hdv + c * PE) = make_uint4(0, 0, 0, 0);
    }
    cp_wait_all();
    __syncthreads();
    for (int hh = warp; hh < HPC; hh += NW) {
        head_norm_rope(qs[hh], hd, p.q_norm, p.eps, css, p.n_rot, p.neox, lane);
        /* an f16 cache: q rounded to f16 before q.K, as the CPU path encodes it */
        if (!p.kv_f32)
            for (int d = lane; d < hd; d += 32) qs[hh][d] = __half2float(__float2half_rn(qs[hh][d]));
    }
    if (FUSE && warp == NW - 1) {
        head_norm_rope(kf, hd, p.k_norm, p.eps, css, p.n_rot, p.neox, lane);
        for (int d = lane; d < hd; d += 32) ks[(size_t)xo * kst + d] = (KT)kf[d];
        for (int d = lane; d < hdv; d += 32) vs[(size_t)xo * hdv + d] = (KT)vf[d];
        if (h0 % G == 0 && own) { /* the kv group's first block stores the own position */
            const size_t base = kv_block_base(p, p.tables[toff + opp / p.bs]);
            const int slot = opp % p.bs;
            for (int d = lane; d < hd; d += 32) kv_put(p, base + (size_t)slot * p.kv_dim + (size_t)kvh * hd + d, kf[d]);
            for (int d = lane; d < hdv; d += 32)
                kv_put(p, base + (size_t)p.bs * p.kv_dim + (size_t)slot * p.kv_dim_v + (size_t)kvh * hdv + d, vf[d]);
        }
    }
    __syncthreads();

    /* scores: a thread per position, each key row read once for the HPC heads */
    float ml[HPC];
#pragma unroll
    for (int hh = 0; hh < HPC; hh++) ml[hh] = -INFINITY;
    for (int x = tid; x < L; x += AS_THREADS) {
        float a[HPC][8];
#pragma unroll
        for (int hh = 0; hh < HPC; hh++)
#pragma unroll
            for (int u = 0; u < 8; u++) a[hh][u] = 0.0f;
        const bool ok = xb[x] != -1;
        if (ok) {
            const KT *kr = ks + (size_t)x * kst;
            for (int c = 0; c < hd; c += 8) {
                float k8[8];
                load8<KT>(kr + c, k8);
#pragma unroll
                for (int hh = 0; hh < HPC; hh++) {
                    const float4 qa = *(const float4 *)&qs[hh][c], qb = *(const float4 *)&qs[hh][c + 4];
                    a[hh][0] += qa.x * k8[0], a[hh][1] += qa.y * k8[1], a[hh][2] += qa.z * k8[2];
                    a[hh][3] += qa.w * k8[3], a[hh][4] += qb.x * k8[4], a[hh][5] += qb.y * k8[5];
                    a[hh][6] += qb.z * k8[6], a[hh][7] += qb.w * k8[7];
                }
            }
        }
#pragma unroll
        for (int hh = 0; hh < HPC; hh++) {
            const float s = ok ? (((a[hh][0] + a[hh][1]) + (a[hh][2] + a[hh][3])) +
                                  ((a[hh][4] + a[hh][5]) + (a[hh][6] + a[hh][7]))) *
                                     p.scale
                               : -INFINITY;
            sc[(size_t)hh * lcap + x] = s;
            ml[hh] = fmaxf(ml[hh], s);
        }
    }
#pragma unroll
    for (int hh = 0; hh < HPC; hh++) {
        const float m = warp_max(ml[hh]);
        if (lane == 0) rmax[hh][warp] = m;
    }
    __syncthreads();
    if (tid < HPC) {
        float M = rmax[tid][0];
        for (int w = 1; w < NW; w++) M = fmaxf(M, rmax[tid][w]);
        mh[tid] = M;
    }
    __syncthreads();
    float ls[HPC];
#pragma unroll
    for (int hh = 0; hh < HPC; hh++) ls[hh] = 0.0f;
    for (int x = tid; x < L; x += AS_THREADS)
#pragma unroll
        for (int hh = 0; hh < HPC; hh++) {
            const float s = sc[(size_t)hh * lcap + x], e = s == -INFINITY ? 0.0f : expf(s - mh[hh]);
            sc[(size_t)hh * lcap + x] = e;
            ls[hh] += e;
        }
#pragma unroll
    for (int hh = 0; hh < HPC; hh++) {
        const float t = warp_sum(ls[hh]);
        if (lane == 0) rsum[hh][warp] = t;
    }
    __syncthreads();
    if (tid < HPC) {
        float l = 0.0f;
        for (int w = 0; w < NW; w++) l += rsum[tid][w];
        lh[tid] = l;
    }
    /* values: output o = hh hdv + d; with fewer outputs than threads, np
     * threads per output each over a range of positions */
    const int O = HPC * hdv, np = O < AS_THREADS ? AS_THREADS / O : 1;
    float res[HPC]; /* O <= HPC 256 */
#pragma unroll
    for (int k = 0; k < HPC; k++) {
        res[k] = 0.0f;
        if (k * AS_THREADS >= (np > 1 ? AS_THREADS : O)) continue;
        const int t = k * AS_THREADS + tid, part = np > 1 ? t / O : 0, o = np > 1 ? t % O : t;
        const int hh = o / hdv, d = o - hh * hdv;
        float r = 0.0f;
        if (part < np && o < O) {
            const int span = (L + np - 1) / np, x0 = part * span, x1 = min(L, x0 + span);
            const float *pr = sc + (size_t)hh * lcap;
            float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
            int x = x0;
            const KT *vp = vs + (size_t)x0 * hdv + d;
#pragma unroll 2
            for (; x + 3 < x1; x += 4, vp += 4 * hdv) {
                a0 += pr[x] * (float)vp[0];
                a1 += pr[x + 1] * (float)vp[hdv];
                a2 += pr[x + 2] * (float)vp[2 * hdv];
                a3 += pr[x + 3] * (float)vp[3 * hdv];
            }
            for (; x < x1; x++, vp += hdv) a0 += pr[x] * (float)vp[0];
            r = (a0 + a1) + (a2 + a3);
        }
        res[k] = r;
    }
    if (np > 1) vpart[tid] = res[0];
    __syncthreads();
    trace_ev(p.trace, TR_LOOP);
    if (!p.early_trigger) pdl_trigger();
    /* outputs (warp-uniform heads and groups when hdv % 32 == 0, as the encoding needs) */
#pragma unroll
    for (int k = 0; k < HPC; k++) {
        const int o = k * AS_THREADS + tid, hh = o / hdv, d = o - hh * hdv;
        if (o >= O || (np > 1 && k > 0)) break;
        float v = res[k];
        if (np > 1) {
            v = vpart[o];
            for (int q = 1; q < np; q++) v += vpart[q * O + o];
        }
        v /= lh[hh];
        p.out[((size_t)i * p.n_head + h0 + hh) * hdv + d] = v;
        if (p.aq8) encode_out(p, i, h0 + hh, d, v);
    }
    trace_ev(p.trace, TR_END);
}

size_t cu_attention_short_smem(const attn_params *p, int lcap) {
    static int lim = -1;
    if (lim < 0) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
            cudaGetLastError();
            v = 48 * 1024;
        }
        lim = v - 16 * 1024; /* the kernel's static arrays */
    }
    if (p->hd % 8 || p->hdv % 8 || p->hd > 256 || p->hdv > 256 || p->n_rot > 256 || lcap <= 0 ||
        !cu_hpc_ok(p->hpc))
        return 0;
    size_t s = p->kv_f32 ? as_smem<float>(p->hd, p->hdv, p->hpc, lcap) : as_smem<__half>(p->hd, p->hdv, p->hpc, lcap);
    return s <= (size_t)lim ? s : 0;
}

template <int HPC, typename KT, bool FUSE>
static cudaError_t as_launch(const attn_params *p, size_t smem, int pdl, cudaStream_t st) {
    static size_t allowed = 0;
    if (smem > allowed) {
        cudaError_t e = cudaFuncSetAttribute(attn_short_kernel<HPC, KT, FUSE>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        allowed = smem;
    }
    dim3 grid((unsigned)p->n_tok, (unsigned)(p->n_head / HPC));
    return launch_k(attn_short_kernel<HPC, KT, FUSE>, grid, dim3(AS_THREADS), smem, st, pdl, *p);
}

template <typename KT, bool FUSE>
static cudaError_t as_hpc(const attn_params *p, size_t smem, int pdl, cudaStream_t st) {
    switch (p->hpc) {
    case 8: return as_launch<8, KT, FUSE>(p, smem, pdl, st);
    case 7: return as_launch<7, KT, FUSE>(p, smem, pdl, st);
    case 6: return as_launch<6, KT, FUSE>(p, smem, pdl, st);
    case 4: return as_launch<4, KT, FUSE>(p, smem, pdl, st);
    case 2: return as_launch<2, KT, FUSE>(p, smem, pdl, st);
    default: return as_launch<1, KT, FUSE>(p, smem, pdl, st);
    }
}

cudaError_t cu_attention_short(const attn_params *p, int pdl, cudaStream_t st) {
    const size_t smem = cu_attention_short_smem(p, p->lcap);
    if (!smem || (p->aq8 && p->hdv % 32) || (p->n_head / p->n_head_kv) % p->hpc) return cudaErrorInvalidValue;
    if (p->kv_f32)
        return p->fuse_store ? as_hpc<float, true>(p, smem, pdl, st) : as_hpc<float, false>(p, smem, pdl, st);
    return p->fuse_store ? as_hpc<__half, true>(p, smem, pdl, st) : as_hpc<__half, false>(p, smem, pdl, st);
}
