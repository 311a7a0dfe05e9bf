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
 * rope_store: per-head q/k RMSNorm (qwen3), RoPE of q and k, keys and values
 *             written into the paged device cache (f16 or f32).
 * attention:  one block per (token, kv head, group of <= 8 query heads,
 *             split of the attended positions). Each warp takes chunks of 32
 *             positions: a lane scores one position against every query
 *             head of the group (K row read once for the group), an online
 *             softmax per head, then the warp accumulates V with a lane per
 *             output dimension. Warps meet in shared memory; with several
 *             splits the partial (max, sum, numerator) go to a combine kernel
 *             (long contexts with few sequences). The attended positions are
 *             [0, sink_end) and [t0, pos], read through the block table.
 *             "fused" mode (every sequence once in the step, one split) does
 *             the rope_store work for its own token in the same block.
 */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_int.h"

/* ---- activations ---- */

DEV int frag_off(int e) {
    int u = e >> 6, e64 = e & 63, kg = e64 >> 5, b = e64 & 31, w = b >> 2, i = b & 3;
    return u * 64 + (w & 3) * 16 + (kg * 2 + (w >> 2)) * 4 + i;
}

DEV int round_away_127(float v) {
    if (!(fabsf(v) <= 127.0f)) return v > 0 ? 127 : (v < 0 ? -127 : 0);
    return (int)roundf(v);
}

DEV int round_even(float v) {
    if (!(fabsf(v) <= 4194303.0f)) return v > 0 ? 4194303 : (v < 0 ? -4194303 : 0);
    return (int)rintf(v);
}

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

/* One block per (token, slice of 256 values): a thread per value. With a
 * norm every block first sums the squares of the whole row (the rows are
 * small and in L2), so a single token still spreads over K / 256 blocks. */
static __global__ void __launch_bounds__(256) act_kernel(const act_args a, const act_bufs o) {
    __shared__ double red[8];
    __shared__ float wam[8], wmx[8];
    pdl_trigger();
    pdl_wait();
    const int i = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int e = blockIdx.y * 256 + tid;
    const int src = a.rows ? a.rows[i] : i;
    act_in in = {a.x + (size_t)src * a.ldx, a.x2 ? a.x2 + (size_t)src * a.ldx : NULL, NULL, 1.0f};
    if (a.norm) {
        double ss = 0.0;
        for (int k = tid; k < a.k; k += 256) {
            float v = act_val(in, k);
            ss += (double)v * v;
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
    const float v = valid ? act_val(in, e) : 0.0f;
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
}

cudaError_t cu_act(const act_args *a, const act_bufs *out, int pdl, cudaStream_t st) {
    if (a->n <= 0) return cudaSuccess;
    dim3 grid((unsigned)a->n, (unsigned)((a->k + 255) / 256));
    return launch_k(act_kernel, grid, dim3(256), 0, st, pdl, *a, *out);
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
        v[ia] = x0 * c - x1 * s;
        v[ib] = x0 * s + x1 * c;
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

/* Keys (from shared memory, already rotated) and values of token i, kv head h, into the cache. */
DEV void store_kv(const attn_params &p, int i, int h, const float *kvec, int tid, int nthreads) {
    int pos = p.tok[4 * i], toff = p.tok[4 * i + 1];
    int blk = p.tables[toff + pos / p.bs], slot = pos % p.bs;
    size_t base = kv_block_base(p, blk);
    const float *vrow = p.qkv + (size_t)i * p.qkv_stride + (size_t)p.n_head * p.hd + (size_t)p.n_head_kv * p.hd;
    for (int d = tid; d < p.hd; d += nthreads) kv_put(p, base + (size_t)slot * p.kv_dim + (size_t)h * p.hd + d, kvec[d]);
    for (int d = tid; d < p.hdv; d += nthreads)
        kv_put(p, base + (size_t)p.bs * p.kv_dim + (size_t)slot * p.kv_dim_v + (size_t)h * p.hdv + d,
               vrow[(size_t)h * p.hdv + d]);
}

static __global__ void __launch_bounds__(128) rope_store_kernel(const attn_params p) {
    __shared__ float buf[4][256];
    pdl_trigger();
    pdl_wait();
    const int i = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *row = (float *)p.qkv + (size_t)i * p.qkv_stride;
    const float *cs = p.cs + (size_t)i * p.n_rot;
    for (int h = warp; h < p.n_head + p.n_head_kv; h += 4) {
        bool is_q = h < p.n_head;
        float *src = is_q ? row + (size_t)h * p.hd : row + (size_t)p.n_head * p.hd + (size_t)(h - p.n_head) * p.hd;
        for (int d = lane; d < p.hd; d += 32) buf[warp][d] = src[d];
        __syncwarp();
        head_norm_rope(buf[warp], p.hd, is_q ? p.q_norm : p.k_norm, p.eps, cs, p.n_rot, p.neox, lane);
        if (is_q) {
            for (int d = lane; d < p.hd; d += 32) src[d] = buf[warp][d];
        } else {
            store_kv(p, i, h - p.n_head, buf[warp], lane, 32);
        }
        __syncwarp();
    }
}

cudaError_t cu_rope_store(const attn_params *p, int pdl, cudaStream_t st) {
    return launch_k(rope_store_kernel, dim3((unsigned)p->n_tok), dim3(128), 0, st, pdl, *p);
}

/* ---- attention ---- */

#define ATT_WARPS 4
#define GMAX 8

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

template <int DPL, typename KT> DEV void loadv(const KT *p, float *o) {
    if (sizeof(KT) == 2) {
        const __half *h = (const __half *)p;
        if (DPL == 1) {
            o[0] = __half2float(h[0]);
        } else {
#pragma unroll
            for (int k = 0; k < DPL / 2; k++) {
                float2 f = __half22float2(((const __half2 *)h)[k]);
                o[2 * k] = f.x, o[2 * k + 1] = f.y;
            }
        }
    } else {
        const float *f = (const float *)p;
#pragma unroll
        for (int k = 0; k < DPL; k++) o[k] = f[k];
    }
}

/* HD8: head_dim / 8 when known at compile time (the K row loads of a lane
 * are then all issued at once), 0 for any multiple of 8 up to 256. */
template <int DPL, typename KT, int HD8> static __global__ void __launch_bounds__(128) attn_kernel(const attn_params p) {
    __shared__ float qs[GMAX + 1][256]; /* query heads of the group, then (fused) the key head */
    __shared__ float wm[ATT_WARPS][GMAX], wl[ATT_WARPS][GMAX];
    __shared__ float wacc[ATT_WARPS][GMAX][256];
    pdl_trigger();
    pdl_wait();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int G = p.n_head / p.n_head_kv, ngrp = (G + GMAX - 1) / GMAX;
    const int i = blockIdx.x, kvh = blockIdx.y / ngrp, hg = blockIdx.y % ngrp, sp = blockIdx.z;
    const int h0 = kvh * G + hg * GMAX, Gb = G - hg * GMAX < GMAX ? G - hg * GMAX : GMAX;
    const int pos = p.tok[4 * i], toff = p.tok[4 * i + 1], sink = p.tok[4 * i + 2], t0 = p.tok[4 * i + 3];
    const int L = sink + pos - t0 + 1, chunk = (L + p.n_split - 1) / p.n_split;
    const int plo = sp * chunk, phi = plo + chunk < L ? plo + chunk : L;
    const float *row = p.qkv + (size_t)i * p.qkv_stride;

    /* an f16 cache: q is rounded to f16 before q.K, as the CPU path encodes it */
    const bool q16 = !p.kv_f32;
    for (int x = tid; x < Gb * p.hd; x += 128) {
        float q = row[(size_t)h0 * p.hd + x];
        qs[x / p.hd][x % p.hd] = q16 && !p.fused ? __half2float(__float2half_rn(q)) : q;
    }
    if (p.fused)
        for (int d = tid; d < p.hd; d += 128) qs[GMAX][d] = row[(size_t)p.n_head * p.hd + (size_t)kvh * p.hd + d];
    __syncthreads();
    if (p.fused) {
        const float *cs = p.cs + (size_t)i * p.n_rot;
        for (int g = warp; g <= Gb; g += ATT_WARPS) {
            int slot = g == Gb ? GMAX : g;
            head_norm_rope(qs[slot], p.hd, g == Gb ? p.k_norm : p.q_norm, p.eps, cs, p.n_rot, p.neox, lane);
            if (q16 && g < Gb)
                for (int d = lane; d < p.hd; d += 32) qs[slot][d] = __half2float(__float2half_rn(qs[slot][d]));
            __syncwarp();
        }
        __syncthreads();
        store_kv(p, i, kvh, qs[GMAX], tid, 128);
        __syncthreads(); /* the new key/value is read back below by other threads */
    }

    float m[GMAX], l[GMAX], acc[GMAX][DPL];
#pragma unroll
    for (int g = 0; g < GMAX; g++) {
        m[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) acc[g][dd] = 0.0f;
    }
    const KT *kv = (const KT *)p.kv;
    for (int c0 = plo + warp * 32; c0 < phi; c0 += ATT_WARPS * 32) {
        int x = c0 + lane;
        bool valid = x < phi;
        int pp = x < sink ? x : t0 + (x - sink);
        int blk = valid ? p.tables[toff + pp / p.bs] : -1;
        valid = valid && blk >= 0;
        size_t base = valid ? kv_block_base(p, blk) : 0;
        size_t koff = base + (size_t)(pp % p.bs) * p.kv_dim + (size_t)kvh * p.hd;
        size_t voff = base + (size_t)p.bs * p.kv_dim + (size_t)(pp % p.bs) * p.kv_dim_v + (size_t)kvh * p.hdv;
        float s[GMAX];
#pragma unroll
        for (int g = 0; g < GMAX; g++) s[g] = 0.0f;
        if (valid) {
            const int n8 = HD8 ? HD8 : p.hd / 8;
#pragma unroll
            for (int c = 0; c < (HD8 ? HD8 : 32); c++) {
                if (!HD8 && c >= n8) break;
                float k8[8];
                load8<KT>(kv + koff + 8 * c, k8);
#pragma unroll
                for (int g = 0; g < GMAX; g++) {
                    if (g >= Gb) break;
                    float4 qa = *(const float4 *)&qs[g][8 * c], qb = *(const float4 *)&qs[g][8 * c + 4];
                    s[g] += qa.x * k8[0] + qa.y * k8[1] + qa.z * k8[2] + qa.w * k8[3] + qb.x * k8[4] + qb.y * k8[5] +
                            qb.z * k8[6] + qb.w * k8[7];
                }
            }
        }
        float pv[GMAX];
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
            pv[g] = 0.0f;
            if (g >= Gb) continue;
            float sg = valid ? s[g] * p.scale : -INFINITY;
            float mx = warp_max(sg);
            if (mx == -INFINITY) continue;
            float mn = fmaxf(m[g], mx), corr = expf(m[g] - mn);
            pv[g] = valid ? expf(sg - mn) : 0.0f;
            l[g] = l[g] * corr + warp_sum(pv[g]);
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) acc[g][dd] *= corr;
            m[g] = mn;
        }
        /* values: 8 rows requested at a time, then accumulated */
        const int nv = phi - c0 < 32 ? phi - c0 : 32;
        const bool have = lane * DPL < p.hdv;
        for (int j0 = 0; j0 < nv; j0 += 8) {
            float vv[8][DPL];
            bool ok[8];
#pragma unroll
            for (int u = 0; u < 8; u++) {
                int jj = j0 + u;
                ok[u] = __shfl_sync(0xffffffffu, (int)valid, jj) && jj < nv;
                size_t vo = __shfl_sync(0xffffffffu, voff, jj);
                if (ok[u] && have) loadv<DPL, KT>(kv + vo + (size_t)lane * DPL, vv[u]);
            }
#pragma unroll
            for (int u = 0; u < 8; u++) {
#pragma unroll
                for (int g = 0; g < GMAX; g++) {
                    if (g >= Gb) break;
                    float a = __shfl_sync(0xffffffffu, pv[g], j0 + u);
                    if (ok[u] && have)
#pragma unroll
                        for (int dd = 0; dd < DPL; dd++) acc[g][dd] += a * vv[u][dd];
                }
            }
        }
    }
    /* meet in shared memory */
#pragma unroll
    for (int g = 0; g < GMAX; g++) {
        if (g >= Gb) break;
        if (lane == 0) wm[warp][g] = m[g], wl[warp][g] = l[g];
        if (lane * DPL < p.hdv)
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) wacc[warp][g][lane * DPL + dd] = acc[g][dd];
    }
    __syncthreads();
    for (int x = tid; x < Gb * p.hdv; x += 128) {
        int g = x / p.hdv, d = x % p.hdv;
        float M = -INFINITY;
        for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, wm[w][g]);
        float num = 0.0f, den = 0.0f;
        if (M != -INFINITY)
            for (int w = 0; w < ATT_WARPS; w++) {
                if (wm[w][g] == -INFINITY) continue;
                float e = expf(wm[w][g] - M);
                num += wacc[w][g][d] * e;
                den += wl[w][g] * e;
            }
        size_t hh = (size_t)i * p.n_head + h0 + g;
        if (p.n_split == 1) {
            p.out[hh * p.hdv + d] = num / den;
        } else {
            float *pt = p.part + (hh * p.n_split + sp) * (size_t)(p.hdv + 2);
            pt[d] = num;
            if (d == 0) pt[p.hdv] = M, pt[p.hdv + 1] = den;
        }
    }
}

static __global__ void __launch_bounds__(128) attn_combine_kernel(const attn_params p) {
    pdl_trigger();
    pdl_wait();
    size_t hh = blockIdx.x; /* token * n_head + head */
    const float *pt = p.part + hh * p.n_split * (size_t)(p.hdv + 2);
    float M = -INFINITY;
    for (int s = 0; s < p.n_split; s++) M = fmaxf(M, pt[(size_t)s * (p.hdv + 2) + p.hdv]);
    for (int d = threadIdx.x; d < p.hdv; d += blockDim.x) {
        float num = 0.0f, den = 0.0f;
        for (int s = 0; s < p.n_split; s++) {
            const float *q = pt + (size_t)s * (p.hdv + 2);
            if (q[p.hdv] == -INFINITY) continue;
            float e = expf(q[p.hdv] - M);
            num += q[d] * e;
            den += q[p.hdv + 1] * e;
        }
        p.out[hh * p.hdv + d] = num / den;
    }
}

template <typename KT> static cudaError_t attn_launch(const attn_params *p, dim3 grid, int pdl, cudaStream_t st) {
    if (p->hd == p->hdv) {
        switch (p->hd) {
        case 8: return launch_k(attn_kernel<1, KT, 1>, grid, dim3(128), 0, st, pdl, *p);
        case 16: return launch_k(attn_kernel<1, KT, 2>, grid, dim3(128), 0, st, pdl, *p);
        case 32: return launch_k(attn_kernel<1, KT, 4>, grid, dim3(128), 0, st, pdl, *p);
        case 64: return launch_k(attn_kernel<2, KT, 8>, grid, dim3(128), 0, st, pdl, *p);
        case 128: return launch_k(attn_kernel<4, KT, 16>, grid, dim3(128), 0, st, pdl, *p);
        case 256: return launch_k(attn_kernel<8, KT, 32>, grid, dim3(128), 0, st, pdl, *p);
        default: break;
        }
    }
    int hmax = p->hdv;
    if (hmax <= 32) return launch_k(attn_kernel<1, KT, 0>, grid, dim3(128), 0, st, pdl, *p);
    if (hmax <= 64) return launch_k(attn_kernel<2, KT, 0>, grid, dim3(128), 0, st, pdl, *p);
    if (hmax <= 128) return launch_k(attn_kernel<4, KT, 0>, grid, dim3(128), 0, st, pdl, *p);
    return launch_k(attn_kernel<8, KT, 0>, grid, dim3(128), 0, st, pdl, *p);
}

cudaError_t cu_attention(const attn_params *p, int pdl, cudaStream_t st) {
    int G = p->n_head / p->n_head_kv, ngrp = (G + GMAX - 1) / GMAX;
    dim3 grid((unsigned)p->n_tok, (unsigned)(p->n_head_kv * ngrp), (unsigned)p->n_split);
    cudaError_t e = p->kv_f32 ? attn_launch<float>(p, grid, pdl, st) : attn_launch<__half>(p, grid, pdl, st);
    if (e != cudaSuccess || p->n_split == 1) return e;
    return launch_k(attn_combine_kernel, dim3((unsigned)(p->n_tok * p->n_head)), dim3(128), 0, st, pdl, *p);
}
