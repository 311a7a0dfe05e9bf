/* cuda_mv.cu - one token times a Q4_0 / Q8_0 / Q4_K / Q6_K weight matrix
 * (generation).
 *
 * The K-quants take the bulk path only (sm_90, S = 2) with pre-encoded
 * inputs: their stages carry the super-block headers (Q4_K) or the
 * sub-block scales and d pairs (Q6_K) next to the quants (mvb_stage), the
 * k split between warps is mmq's in whole super-blocks, and mvk_step does
 * mmq's column arithmetic (k4_col / k6_col), so again the same bits.
 *
 * At batch 1 a decode step is a stream of weight bytes; this kernel exists
 * to keep the memory busy and to do little else. Block: 8 warps. A tile (16
 * rows of the tile layout of cuda_int.h) is split along k over W warps, the
 * same W and the same split as mmq (cuda_mm.cu) uses, so a block works on
 * 8 / W tiles at a time. The grid is as many blocks as fit on the device at
 * once, each walking a contiguous run of tiles of equal length (whole
 * rounds of 8 / W tiles, whole quads with SwiGLU; dealing the chunks round
 * robin measured 1% slower, blocks claiming tiles from a counter 10%
 * slower: docs/backend.md, second and fourth passes). The block's per-row
 * setup is done once for all its tiles.
 *
 * Weight stream. A warp's k-range of a tile is contiguous in the tile
 * layout (quants and scales), so on sm_90 one lane copies it into the
 * warp's shared-memory stages with the bulk copy engine (cp.async.bulk,
 * completion counted on an mbarrier per stage): two stages of 4 KB of
 * quants per warp by default, the first ones requested before the PDL wait
 * (weights never depend on the previous kernel), each stage refilled with
 * the warp's next piece as soon as it has been read, with the L2
 * evict-first policy (QF_CUDA_MV_EF=0: normal). With mv_in.pf (the Wo
 * kernel, for gate|up) each warp then also asks L2 to prefetch the first
 * tile of some blocks of the next launch: the memory would otherwise idle
 * while this kernel's epilogue and the act kernel run. The copy engine keeps far
 * more bytes in flight than per-thread loads can (measured: 414 vs 346
 * tok/s for an 8B Q4_0 model on the H100). Before sm_90 (or with
 * QF_CUDA_MV_S=0) each warp keeps U k-steps requested in registers
 * instead: the slot a k-step used is refilled with the k-step U ahead,
 * across tile boundaries.
 *
 * Activation row: the block puts the token's Q8_0-style encoded row (int8
 * in fragment order, {d, sum} per 32-group) into shared memory with
 * cp.async, copied from the act buffers (cu_act or the attention kernel
 * wrote it). (Computing the RMSNorm and encoding here instead, every block
 * for itself, measured slower twice and was removed: docs/backend.md.)
 *
 * Arithmetic: each 32-group is an exact integer dot from an int8 tensor-core
 * product (mma.sync m16n8k32, the token in column 0, the other columns
 * zero): the tensor core does the sum across lanes that a dp4a version
 * needs shuffles for (a dp4a version was instruction-bound). Scaled in
 * float in the order mmq uses: per warp k-step by k-step and group by
 * group, warps summed in warp order at the end. A token's result is
 * therefore the same bits here and in mmq: it does not depend on the batch
 * it runs in.
 *
 * Epilogues. SwiGLU (gate|up as one matrix, rows [0, n_ff) gate and [n_ff,
 * 2 n_ff) up, n_ff a multiple of 32): blocks own whole "quads", the four
 * tiles holding gate and up rows 32q .. 32q+31, so after its products a
 * block computes h = silu(gate) * up for its quads and encodes each as one
 * Q8_0 group (act_kernel's arithmetic) for the down matrix: no act kernel
 * between them (the gate and up values come from shared memory, not back
 * from global memory). KV store (the Q|K|V matrix of a llama-style model:
 * adjacent-pair RoPE, no k norm): the rows of the key heads are rotated
 * (the pair partner is the neighbouring lane's row) and stored with the
 * value rows into the token's cache slot, k_store's arithmetic: no k_store
 * kernel.
 */
#include <stdlib.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_int.h"

#define MV_WARPS 8

typedef struct mv_args {
    const uint4 *wq;   /* tile layout quants */
    const uint2 *ws;   /* scales: per (tile, k-step, g) {d(g,0)|d(g+8,0), d(g,1)|d(g+8,1)} halves */
    int ks, rows, tiles, W;
    /* input: the pre-encoded row (aq, ads with tok_pad stride) */
    const uint8_t *aq;
    const float2 *ads;
    int a_tok_pad;
    /* output */
    float *y;
    const float *bias;
    int add;
    /* which tiles a block takes: the run [b per_block, (b + 1) per_block)
     * of the tile sequence. rounds: most rounds of tpb tiles of any block
     * (partial sums in shared memory) */
    int per_block, rounds;
    int ef; /* stream this matrix with the L2 evict-first policy */
    /* kv store (QKV matrix, llama-style adjacent-pair RoPE, no k norm):
     * rows [kv_q, kv_q + kv_dim) are the key heads, the next kv_dim_v rows
     * the value heads; the token's position and block come from tok and
     * tables (the step buffer), cs is its (n_rot) cos/sin row */
    void *kv;
    int kv_f32, kv_q, kv_dim, kv_dim_v, hd, hdv, n_rot, bs, layer, n_layer;
    const int *tok, *tables;
    const float *cs;
    /* SwiGLU epilogue */
    int n_ff;
    uint8_t *hq;
    float2 *hds;
    int h_tok_pad;
    unsigned long long *tr; /* QF_CUDA_TRACE slot or NULL */
    /* L2 prefetch of the next launch's first weights (mv_in.pf): for each
     * of its pf_grid blocks, the tiles of its first pf_tiles positions
     * (position p of block j: j pf_per_block + p; with pf_gt > 0 mapped to
     * tiles as gate|up does, mv_tile); a tile is pf_tq bytes of quants at
     * pf_q, pf_ts of scales at pf_s */
    const uint8_t *pf_q, *pf_s;
    uint32_t pf_tq, pf_ts;
    int pf_grid, pf_tiles, pf_n_pos, pf_per_block, pf_gt;
} mv_args;

/* weights are read once per step: keep them out of L1 */
DEV uint4 mv_ld4(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}
DEV uint2 mv_ld2(const uint2 *p) {
    uint2 v;
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}


/* per format: uint4 fragments per lane and k-step (N), 32-groups per
 * k-step (KG), values per k-step (KST), k-steps a warp's k-range is split
 * in units of (GRAN: a 256-value super-block for the K-quants, as mmq) */
template <int FMT> struct mv_un {
    static constexpr int N = FMT == FMT_Q8_0 ? 2 : FMT == FMT_Q6_K ? 3 : 1;
    static constexpr int KG = FMT == FMT_Q6_K ? 4 : 2, KST = 32 * KG;
    static constexpr int GRAN = FMT == FMT_Q4_K ? 4 : FMT == FMT_Q6_K ? 2 : 1;
    static constexpr bool K = FMT == FMT_Q4_K || FMT == FMT_Q6_K;
};

/* what a lane holds of one k-step of a tile: its fragment bytes and the
 * scales of its rows g and g + 8 */
template <int FMT> struct mvw {
    uint4 w[mv_un<FMT>::N];
    uint2 s;
};

/* A warp's cursor through the k-steps of its tiles: pointers to the lane's
 * bytes of the next k-step to request. */
typedef struct mv_cur {
    const uint4 *w;
    const uint2 *s;
    int r, k; /* round, k-step */
} mv_cur;

template <int FMT> DEV void mv_seek(mv_cur &c, const mv_args &a, int tile, int k, int lane) {
    const size_t ts = (size_t)tile * (size_t)a.ks + (size_t)k;
    c.w = a.wq + ts * (mv_un<FMT>::N * 32) + lane;
    c.s = a.ws + ts * 8 + (lane >> 2);
}

template <int FMT> DEV void mv_load(mvw<FMT> &b, const mv_cur &c) {
#pragma unroll
    for (int u = 0; u < mv_un<FMT>::N; u++) b.w[u] = mv_ld4(c.w + u * 32);
    b.s = mv_ld2(c.s);
}

/* One k-step (64 values, two groups) of rows g and g + 8 into acc0/acc1
 * (valid in lanes t = 0): the token is column 0 of an int8 mma, the
 * arithmetic of mmq (cuda_mm.cu) for its column 0. */
template <int FMT>
DEV void mv_step(const mvw<FMT> &b, const uint8_t *sq, const float2 *sds, int k, int lane, float &acc0, float &acc1) {
    const uint32_t M4 = 0x0F0F0F0Fu;
    uint4 a = make_uint4(0, 0, 0, 0);
    if (lane < 4) a = *(const uint4 *)(sq + (size_t)k * 64 + lane * 16);
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const float2 ds = sds[2 * k + j];
        const uint32_t b0 = j ? a.z : a.x, b1 = j ? a.w : a.y;
        const uint32_t sc = j ? b.s.y : b.s.x;
        const float dw0 = h2f(sc), dw1 = h2f(sc >> 16);
        int c[4];
        if (FMT == FMT_Q4_0) {
            const uint32_t x = j ? b.w[0].z : b.w[0].x, y = j ? b.w[0].w : b.w[0].y;
            mma_u8s8_k32(c, x & M4, y & M4, (x >> 4) & M4, (y >> 4) & M4, b0, b1);
            const int s0 = __float_as_int(ds.y);
            acc0 += (float)(c[0] - 8 * s0) * (dw0 * ds.x);
            acc1 += (float)(c[2] - 8 * s0) * (dw1 * ds.x);
        } else {
            const uint4 &w = b.w[j];
            mma_s8s8_k32(c, w.x, w.y, w.z, w.w, b0, b1);
            acc0 += (float)c[0] * (dw0 * ds.x);
            acc1 += (float)c[2] * (dw1 * ds.x);
        }
    }
}

/* Q8_0-style encoding of one 32-group held one value per lane (act_kernel's
 * arithmetic): byte into q at the value's fragment offset, {d, sum} to *ds. */
DEV void mv_encode32(float v, int e, uint8_t *q, float2 *ds, int lane) {
    float amax = warp_max(fabsf(v));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int qv = round_away_127(v * id);
    int sum = __reduce_add_sync(0xffffffffu, qv);
    q[frag_off(e)] = (uint8_t)(int8_t)qv;
    if (lane == 0) *ds = make_float2(__half2float(__float2half_rn(d)), __int_as_float(sum));
}

/* 2 blocks of 8 warps per SM (128 registers) for the deep variants */
template <int FMT, int U> struct mv_minb { static constexpr int N = (FMT == FMT_Q4_0 ? U > 8 : U > 4) ? 2 : 3; };

/* Tile of position s of the blocks' tile sequence: the identity, or with
 * the SwiGLU epilogue the quads' order (gate 2q, 2q+1, up 2q, 2q+1). */
template <bool SWIGLU> DEV int mv_tile(int s, int gate_tiles) {
    if (!SWIGLU) return s;
    const int q = s >> 2, w = s & 3;
    return w < 2 ? 2 * q + w : gate_tiles + 2 * q + (w - 2);
}

/* The Q|K|V epilogue's store of the token's K and V rows, k_store's
 * arithmetic: RoPE on adjacent pairs (the pair's other value comes from the
 * neighbouring lane: every lane of the warp must call this), then the
 * cache's element type. row: the output row of this lane (q rows first,
 * then kv_dim K rows, then kv_dim_v V rows); ok: the row exists. */
DEV void kv_epilogue(const mv_args &a, int row, float val, bool ok, size_t kv_base, int kv_slot) {
    const float other = __shfl_xor_sync(0xffffffffu, val, 1);
    const int kr = row - a.kv_q;
    if (ok && kr >= 0 && kr < a.kv_dim) {
        const int h = kr / a.hd, dd = kr % a.hd;
        float v = val;
        if (dd < a.n_rot) {
            const int j = dd >> 1;
            const float c = a.cs[2 * j], sn = a.cs[2 * j + 1];
            const float x0 = dd & 1 ? other : val, x1 = dd & 1 ? val : other;
            v = dd & 1 ? rope_1(x0, x1, c, sn) : rope_0(x0, x1, c, sn);
        }
        const size_t off = kv_base + (size_t)kv_slot * a.kv_dim + (size_t)h * a.hd + dd;
        if (a.kv_f32) ((float *)a.kv)[off] = v;
        else ((__half *)a.kv)[off] = __float2half_rn(v);
    } else if (ok && kr >= a.kv_dim && kr < a.kv_dim + a.kv_dim_v) {
        const size_t off =
            kv_base + (size_t)a.bs * a.kv_dim + (size_t)kv_slot * a.kv_dim_v + (size_t)(kr - a.kv_dim);
        if (a.kv_f32) ((float *)a.kv)[off] = val;
        else ((__half *)a.kv)[off] = __float2half_rn(val);
    }
}

/* Sequence position of the j-th tile of this block. */
DEV int mv_pos(const mv_args &a, int j) { return (int)blockIdx.x * a.per_block + j; }

/* Tiles of this block. */
DEV int mv_ntiles(const mv_args &a) { return min(a.per_block, a.tiles - (int)blockIdx.x * a.per_block); }

/* Advance a warp's cursor by one k-step: the next k-step of the tile, or
 * k0 of the warp's tile in the next round. */
template <int FMT, bool SWIGLU>
DEV void mv_next(mv_cur &c, const mv_args &a, int k0, int k1, int rw, int tpb, int tt, int lane) {
    if (++c.k < k1) {
        c.w += mv_un<FMT>::N * 32;
        c.s += 8;
    } else {
        c.k = k0;
        if (++c.r < rw) mv_seek<FMT>(c, a, mv_tile<SWIGLU>(mv_pos(a, c.r * tpb + tt), a.n_ff / 16), k0, lane);
    }
}

/* ---- the bulk copy engine (sm_90): weights into shared memory ---- */

/* Stage geometry of the bulk path, by the kernel's S parameter: 2 = two
 * stages of 4 KB of quants per warp (default), 4 = four of 2 KB, 3 = two
 * of 2 KB (half the shared memory: more blocks per SM). k-steps per stage: */
template <int FMT, int S> struct mvb_c {
    static constexpr int C = FMT == FMT_Q6_K ? 2 : (S == 2 ? 8 : 4) / (FMT == FMT_Q8_0 ? 2 : 1);
    static constexpr int N = S == 4 ? 4 : 2; /* stages */
};
/* A stage: C k-steps of quants (QB bytes), then their scales (SB): Q4_0 /
 * Q8_0 64 bytes a k-step; Q4_K the C / 4 super-block headers of the tile's
 * 16 rows (also 64 bytes a k-step); Q6_K 128 bytes of sub-block scales a
 * k-step, then the super-blocks' d pairs (32 bytes each) */
template <int FMT, int S> struct mvb_stage {
    static constexpr int QB = mvb_c<FMT, S>::C * mv_un<FMT>::N * 512,
                         SB = mvb_c<FMT, S>::C * (FMT == FMT_Q6_K ? 144 : 64), BYTES = QB + SB;
};

DEV uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

DEV void mbar_init(uint64_t *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(bar)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

/* L2 policy of the weight stream: evict first (default, QF_CUDA_MV_EF:
 * the bytes are not read again this step, so they should not push out
 * what is: activations, the kv cache) or normal. */
DEV uint64_t mv_policy(int evict_first) {
    uint64_t pol = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (evict_first) asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    else asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(pol));
#else
    (void)evict_first;
#endif
    return pol;
}

/* The stage's copies: bytes expected on bar, then one bulk copy each of
 * quants and scales (sizes multiples of 16, 16-byte aligned), with the L2
 * policy pol. */
DEV void mbar_bulk2(uint64_t *bar, void *dq, const void *sq, uint32_t nq, void *ds, const void *ss, uint32_t ns,
                    uint64_t pol, void *dd = NULL, const void *sd = NULL, uint32_t nd = 0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint32_t b = smem_u32(bar);
    /* earlier generic reads of the stage before the async-proxy writes */
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"(nq + ns + nd) : "memory");
    if (nd)
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, "
                     "[%3], %4;" ::"r"(smem_u32(dd)),
                     "l"(sd), "r"(nd), "r"(b), "l"(pol)
                     : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, "
                 "[%3], %4;" ::"r"(smem_u32(dq)),
                 "l"(sq), "r"(nq), "r"(b), "l"(pol)
                 : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, "
                 "[%3], %4;" ::"r"(smem_u32(ds)),
                 "l"(ss), "r"(ns), "r"(b), "l"(pol)
                 : "memory");
#else
    (void)pol, (void)dd, (void)sd, (void)nd;
#endif
}

DEV void mbar_wait(uint64_t *bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t ok = 0;
    const uint32_t b = smem_u32(bar);
    do {
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(ok)
                     : "r"(b), "r"(parity)
                     : "memory");
    } while (!ok);
#endif
}

DEV void prefetch_l2(const void *p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
    (void)p, (void)bytes;
#endif
}

/* Unit i of a warp's sequence (round r = i / nch, chunk c = i % nch of its
 * k-range of that round's tile, p: the tile's sequence position, -1: no
 * such unit) into stage i % S. Lane 0 issues. */
template <int FMT, int S, bool SWIGLU>
DEV void mvb_issue(const mv_args &a, uint8_t *stages, uint64_t *bars, int i, int p, int nch, int k0, int k1, int lane,
                   uint64_t pol) {
    if (lane != 0 || p < 0) return;
    constexpr int C = mvb_c<FMT, S>::C, UN = mv_un<FMT>::N, SS = mvb_c<FMT, S>::N;
    const int c = i % nch, kb = k0 + c * C, n = min(C, k1 - kb);
    const size_t tile = (size_t)mv_tile<SWIGLU>(p, a.n_ff / 16), ts = tile * (size_t)a.ks + (size_t)kb;
    uint8_t *st = stages + (size_t)(i % SS) * mvb_stage<FMT, S>::BYTES, *ss = st + mvb_stage<FMT, S>::QB;
    const uint8_t *wq = (const uint8_t *)a.wq + ts * UN * 512, *ws = (const uint8_t *)a.ws;
    if (FMT == FMT_Q4_K) /* headers of the super-blocks kb / 4 .. (a chunk is whole super-blocks) */
        mbar_bulk2(&bars[i % SS], st, wq, (uint32_t)(n * UN * 512), ss,
                   ws + (tile * (size_t)(a.ks / 4) + (size_t)(kb / 4)) * 256, (uint32_t)(n / 4 * 256), pol);
    else if (FMT == FMT_Q6_K) /* sub-block scales, then the d pairs after every tile's scales */
        mbar_bulk2(&bars[i % SS], st, wq, (uint32_t)(n * UN * 512), ss, ws + ts * 128, (uint32_t)(n * 128), pol,
                   ss + C * 128, ws + (size_t)a.tiles * (size_t)a.ks * 128 + (tile * (size_t)(a.ks / 2) + kb / 2) * 32,
                   (uint32_t)(n / 2 * 32));
    else
        mbar_bulk2(&bars[i % SS], st, wq, (uint32_t)(n * UN * 512), ss, ws + ts * 64, (uint32_t)(n * 64), pol);
}

/* One K-quant k-step kk of a stage (absolute k-step k) into rows g and
 * g + 8 of column 0, mmq's arithmetic for that column (k4_col / k6_col). */
template <int FMT, int S>
DEV void mvk_step(const uint8_t *st, int kk, int k, const uint8_t *sq, const float2 *sds, int lane, float &acc0,
                  float &acc1) {
    constexpr int QB = mvb_stage<FMT, S>::QB, N = mv_un<FMT>::N, KST = mv_un<FMT>::KST;
    const int g = lane >> 2;
    const uint32_t M4 = 0x0F0F0F0Fu;
    uint4 av[KST / 64];
#pragma unroll
    for (int u = 0; u < KST / 64; u++)
        av[u] = lane < 4 ? *(const uint4 *)(sq + (size_t)k * KST + u * 64 + lane * 16) : make_uint4(0, 0, 0, 0);
    if (FMT == FMT_Q4_K) {
        const uint4 w = *(const uint4 *)(st + ((size_t)kk * 32 + lane) * 16);
        const uint4 *hd = (const uint4 *)(st + QB + (kk / 4) * 256);
        const uint4 h0 = hd[g], h1 = hd[g + 8];
        const float d0 = h2f(h0.x), m0 = h2f(h0.x >> 16), d1 = h2f(h1.x), m1 = h2f(h1.x >> 16);
#pragma unroll
        for (int j = 0; j < 2; j++) {
            int sc0, mn0, sc1, mn1;
            const int sub = (k & 3) * 2 + j;
            k4_scale_min(h0, sub, &sc0, &mn0);
            k4_scale_min(h1, sub, &sc1, &mn1);
            const float dsc0 = d0 * (float)sc0, dm0 = m0 * (float)mn0, dsc1 = d1 * (float)sc1, dm1 = m1 * (float)mn1;
            const int sh = 4 * j;
            int c[4];
            mma_u8s8_k32(c, (w.x >> sh) & M4, (w.y >> sh) & M4, (w.z >> sh) & M4, (w.w >> sh) & M4,
                         j ? av[0].z : av[0].x, j ? av[0].w : av[0].y);
            const float2 ds = sds[2 * k + j];
            const float sx = ds.x * (float)__float_as_int(ds.y);
            acc0 = k4_col(acc0, c[0], ds.x, dsc0, dm0, sx);
            acc1 = k4_col(acc1, c[2], ds.x, dsc1, dm1, sx);
        }
    } else {
        uint32_t wv[12];
#pragma unroll
        for (int u = 0; u < N; u++) {
            const uint4 v = *(const uint4 *)(st + ((size_t)(kk * N + u) * 32 + lane) * 16);
            wv[4 * u] = v.x, wv[4 * u + 1] = v.y, wv[4 * u + 2] = v.z, wv[4 * u + 3] = v.w;
        }
        const uint2 s0 = *(const uint2 *)(st + QB + kk * 128 + g * 8), s1 = *(const uint2 *)(st + QB + kk * 128 + (g + 8) * 8);
        const uint32_t dpair = *(const uint32_t *)(st + QB + mvb_c<FMT, S>::C * 128 + (kk / 2) * 32 + g * 4);
        const float d0 = h2f(dpair), d1 = h2f(dpair >> 16);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const uint32_t lg = wv[2 * j], l8 = wv[2 * j + 1], h = wv[8 + j];
            const uint32_t r0 = s6((lg & M4) | ((h << 4) & 0x30303030u));
            const uint32_t r2 = s6(((lg >> 4) & M4) | ((h << 2) & 0x30303030u));
            const uint32_t r1 = s6((l8 & M4) | (h & 0x30303030u));
            const uint32_t r3 = s6(((l8 >> 4) & M4) | ((h >> 2) & 0x30303030u));
            const uint32_t sg = j < 2 ? s0.x : s0.y, s8 = j < 2 ? s1.x : s1.y;
            const int sh = 16 * (j & 1);
            const int sa0 = (int)(int8_t)(sg >> sh), sb0 = (int)(int8_t)(sg >> (sh + 8));
            const int sa1 = (int)(int8_t)(s8 >> sh), sb1 = (int)(int8_t)(s8 >> (sh + 8));
            const uint4 &bv = av[j >> 1];
            int c1[4], c2[4];
            mma_s8s8_k16(c1, r0, r1, (j & 1) ? bv.z : bv.x);
            mma_s8s8_k16(c2, r2, r3, (j & 1) ? bv.w : bv.y);
            const float2 ds = sds[4 * k + j];
            acc0 = k6_col(acc0, c1[0] * sa0 + c2[0] * sb0, d0, ds.x);
            acc1 = k6_col(acc1, c1[2] * sa1 + c2[2] * sb1, d1, ds.x);
        }
    }
}

template <int FMT, int U, bool SWIGLU, int S>
static __global__ void __launch_bounds__(256, S == 3 ? 4 : S ? 2 : mv_minb<FMT, U>::N) mv_kernel(const mv_args a) {
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ __align__(8) uint64_t bars[MV_WARPS][4];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int W = a.W, tpb = MV_WARPS / W, tt = warp / W, w = warp % W;
    /* mmq's split of the k-steps between the W warps of a tile */
    constexpr int GRAN = mv_un<FMT>::GRAN, KG = mv_un<FMT>::KG;
    const int units = a.ks / GRAN;
    const int k0 = (int)((long)units * w / W) * GRAN, k1 = (int)((long)units * (w + 1) / W) * GRAN;
    const int kpad = a.ks * mv_un<FMT>::KST, gt = a.n_ff / 16;
    /* this block's tiles: its positions j < nt (mv_pos), rounds of tpb */
    const int nt = mv_ntiles(a);
    const int rw = tt < tpb ? (nt - tt + tpb - 1) / tpb : 0; /* rounds of this warp */
    const int rounds = a.rounds;
    uint8_t *sq = smem;
    float2 *sds = (float2 *)(smem + kpad);
    float *red = (float *)(smem + kpad + (size_t)a.ks * KG * sizeof(float2)); /* (rounds, 8 warps, 16 rows) */
    float *ys = red + (size_t)rounds * MV_WARPS * 16; /* SwiGLU: (nt, 16) the block's outputs */
    constexpr int C = mvb_c<FMT, S>::C, SS = mvb_c<FMT, S>::N;
    uint8_t *stages = (uint8_t *)(ys + (size_t)rounds * MV_WARPS * 16) +
                      (size_t)warp * SS * mvb_stage<FMT, S>::BYTES; /* this warp's stages */
    const int nch = (k1 - k0 + C - 1) / C, n_units = rw * nch;
    /* sequence position of unit u of this warp, -1: none */
    auto upos = [&](int u) -> int { return u < n_units ? mv_pos(a, (u / nch) * tpb + tt) : -1; };
    trace_ev(a.tr, TR_START);

    /* the weights do not depend on the previous kernel: request them now; everything else after the wait, in one round trip
     * (cp.async: many copies in flight, no registers held) */
    mvw<FMT> B[S ? 1 : U];
    mv_cur lc = {a.wq, a.ws, 0, k0}; /* next k-step to request */
    uint64_t pol = 0;
    if constexpr (S != 0) {
        pol = mv_policy(a.ef);
        if (lane == 0)
            for (int j = 0; j < SS; j++) mbar_init(&bars[warp][j]);
        __syncwarp();
        for (int j = 0; j < SS; j++)
            mvb_issue<FMT, S, SWIGLU>(a, stages, bars[warp], j, lane == 0 ? upos(j) : -1, nch, k0, k1, lane, pol);
        /* behind this kernel's own requests: the next launch's first
         * weights into L2 (the memory would idle while this kernel's
         * epilogue and the kernels between run) */
        if (lane == 0)
            for (int j = (int)blockIdx.x * MV_WARPS + warp; j < a.pf_grid * a.pf_tiles;
                 j += (int)gridDim.x * MV_WARPS) {
                const int b = j / a.pf_tiles, t = j % a.pf_tiles, p = b * a.pf_per_block + t;
                if (p >= a.pf_n_pos || t >= a.pf_per_block) continue;
                const size_t tile = (size_t)(a.pf_gt ? mv_tile<true>(p, a.pf_gt) : p);
                prefetch_l2(a.pf_q + tile * a.pf_tq, a.pf_tq);
                prefetch_l2(a.pf_s + tile * a.pf_ts, a.pf_ts);
            }
    } else {
        if (rw > 0) mv_seek<FMT>(lc, a, mv_tile<SWIGLU>(mv_pos(a, tt), gt), k0, lane);
#pragma unroll
        for (int u = 0; u < (S ? 1 : U); u++)
            if (lc.r < rw) {
                mv_load<FMT>(B[u], lc);
                mv_next<FMT, SWIGLU>(lc, a, k0, k1, rw, tpb, tt, lane);
            }
    }
    pdl_trigger();
    pdl_wait();
    trace_ev(a.tr, TR_WAIT);
    for (int i = tid; i < kpad / 16; i += 256) cp16(sq + 16 * i, a.aq + 16 * i);
    for (int g = tid; g < KG * a.ks; g += 256) cp8(&sds[g], &a.ads[(size_t)g * a.a_tok_pad]);
    cp_commit();
    cp_wait_all();
    __syncthreads();

    float acc0 = 0.0f, acc1 = 0.0f;
    if constexpr (S != 0) {
        /* stage i % S holds unit i; refilled with unit i + S once the warp
         * has read it */
        for (int i = 0; i < n_units; i++) {
            const int r = i / nch, c = i % nch, kb = k0 + c * C, n = min(C, k1 - kb);
            mbar_wait(&bars[warp][i % SS], (uint32_t)((i / SS) & 1));
            const uint8_t *st = stages + (size_t)(i % SS) * mvb_stage<FMT, S>::BYTES;
#pragma unroll
            for (int kk = 0; kk < C; kk++) {
                if (kk < n) {
                    if constexpr (mv_un<FMT>::K) {
                        mvk_step<FMT, S>(st, kk, kb + kk, sq, sds, lane, acc0, acc1);
                    } else {
                        mvw<FMT> b;
#pragma unroll
                        for (int u = 0; u < mv_un<FMT>::N; u++)
                            b.w[u] = *(const uint4 *)(st + ((size_t)(kk * mv_un<FMT>::N + u) * 32 + lane) * 16);
                        b.s = *(const uint2 *)(st + mvb_stage<FMT, S>::QB + kk * 64 + (lane >> 2) * 8);
                        mv_step<FMT>(b, sq, sds, kb + kk, lane, acc0, acc1);
                    }
                }
            }
            if (c == nch - 1) {
                if ((lane & 3) == 0) {
                    red[(r * MV_WARPS + warp) * 16 + (lane >> 2)] = acc0;
                    red[(r * MV_WARPS + warp) * 16 + (lane >> 2) + 8] = acc1;
                }
                acc0 = acc1 = 0.0f;
            }
            __syncwarp();
            mvb_issue<FMT, S, SWIGLU>(a, stages, bars[warp], i + SS, lane == 0 ? upos(i + SS) : -1, nch, k0, k1, lane,
                                      pol);
            __syncwarp();
        }
    } else {
        /* the k-steps of this warp's tiles, round by round; slot u always
         * holds the k-step that is u modulo U in the warp's sequence */
        int cr = 0, ck = k0;
        while (cr < rw) {
#pragma unroll
            for (int u = 0; u < (S ? 1 : U); u++) {
                if (cr < rw) {
                    mv_step<FMT>(B[u], sq, sds, ck, lane, acc0, acc1);
                    if (++ck == k1) {
                        if ((lane & 3) == 0) {
                            red[(cr * MV_WARPS + warp) * 16 + (lane >> 2)] = acc0;
                            red[(cr * MV_WARPS + warp) * 16 + (lane >> 2) + 8] = acc1;
                        }
                        acc0 = acc1 = 0.0f;
                        ck = k0, cr++;
                    }
                    if (lc.r < rw) {
                        mv_load<FMT>(B[u], lc);
                        mv_next<FMT, SWIGLU>(lc, a, k0, k1, rw, tpb, tt, lane);
                    }
                }
            }
        }
    }
    __syncthreads();
    trace_ev(a.tr, TR_LOOP);
    /* outputs: the W partial sums of each row in warp order (every thread
     * runs the same trip count: the kv store pairs neighbouring lanes) */
    size_t kv_base = 0;
    int kv_slot = 0;
    if (a.kv) {
        const int pos = a.tok[0], blk = a.tables[a.tok[1] + pos / a.bs];
        kv_base = ((size_t)blk * a.n_layer + a.layer) * (size_t)a.bs * (size_t)(a.kv_dim + a.kv_dim_v);
        kv_slot = pos % a.bs;
    }
    for (int o0 = 0; o0 < rounds * tpb * 16; o0 += 256) {
        const int o = o0 + tid, r = o / (tpb * 16), t2 = (o / 16) % tpb, rr = o % 16, sp = r * tpb + t2;
        const int row = sp < nt ? mv_tile<SWIGLU>(mv_pos(a, sp), gt) * 16 + rr : a.rows;
        const bool ok = o < rounds * tpb * 16 && sp < nt && row < a.rows;
        float val = 0.0f;
        if (ok) {
            for (int ww = 0; ww < W; ww++) val += red[(r * MV_WARPS + t2 * W + ww) * 16 + rr];
            if (a.bias) val += a.bias[row];
            float *yp = a.y + row;
            const float out = a.add ? *yp + val : val;
            *yp = out;
            if (SWIGLU) ys[sp * 16 + rr] = out;
        }
        if (a.kv) kv_epilogue(a, row, val, ok, kv_base, kv_slot);
    }
    if (SWIGLU) {
        /* this block's quads: silu(gate) * up, encoded for the down matrix */
        __syncthreads();
        for (int jq = warp; jq < nt / 4; jq += MV_WARPS) {
            const int q = mv_pos(a, 4 * jq) / 4, e = q * 32 + lane;
            /* position 4 jq + w holds gate tile 2q + w (w < 2), else up tile 2q + w - 2 */
            float gv = ys[64 * jq + lane], uv = ys[64 * jq + 32 + lane];
            float v = gv / (1.0f + expf(-gv)) * uv;
            mv_encode32(v, e, a.hq, &a.hds[(size_t)q * a.h_tok_pad], lane);
        }
    }
    trace_ev(a.tr, TR_END);
}

/* ---- dispatch ---- */

static int mv_env(const char *name, int def) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : def;
}

int cu_mv_off = 0;

int cu_mv_enabled(void) { return !cu_mv_off; }

static int g_mv_smem_max = 48 * 1024, g_mv_n_sm = 132;

template <int FMT, int U, bool SW, int S> static cudaError_t mv_allow(void) {
    return cudaFuncSetAttribute(mv_kernel<FMT, U, SW, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, g_mv_smem_max);
}

template <int FMT, int U, int S> static cudaError_t mv_allow_fmt(void) {
    cudaError_t e = mv_allow<FMT, U, false, S>();
    if (e == cudaSuccess) e = mv_allow<FMT, U, true, S>();
    return e;
}

/* Register path: k-steps in flight per warp, 8 KB of weights
 * (QF_CUDA_MV_U=8 for q4_0 / 4 for q8_0: half of that, 3 blocks per SM).
 * Bulk path (sm_90, default there): QF_CUDA_MV_S=2 (default), 3 or 4 (see
 * mvb_c); 0 = the register path. */
#define MV_U_Q4 16
#define MV_U_Q8 8

static int g_mv_bulk = 0; /* the device has the bulk copy engine */
static int g_mv_k = 1;    /* Q4_K / Q6_K take the kernel (QF_CUDA_MV_K=0: mmq at batch 1) */

cudaError_t cu_mv_init(void) {
    int dev = 0, v = 0, major = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&g_mv_n_sm, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e != cudaSuccess) return e;
    g_mv_bulk = major >= 9;
    /* room for the kernel's static arrays */
    g_mv_smem_max = v - 2048;
    e = mv_allow_fmt<FMT_Q4_0, MV_U_Q4, 0>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q4_0, MV_U_Q4 / 2, 0>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q8_0, MV_U_Q8, 0>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q8_0, MV_U_Q8 / 2, 0>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q4_0, 1, 2>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q4_0, 1, 3>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q8_0, 1, 2>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q8_0, 1, 3>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q4_0, 1, 4>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q8_0, 1, 4>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q4_K, 1, 2>();
    if (e == cudaSuccess) e = mv_allow_fmt<FMT_Q6_K, 1, 2>();
    g_mv_k = mv_env("QF_CUDA_MV_K", 1) != 0;
    return e;
}

/* warps per tile: the k split of mmq (run_fmt in cuda_mm.cu) */
int cu_mm_warps(int ks);

/* dynamic shared memory: the encoded row and its group scales, the partial
 * sums of `rounds` rounds of tiles, the bulk path's stages */
static size_t mv_smem(const dmat *w, int rounds, int stages) {
    const size_t kg = w->fmt == FMT_Q6_K ? 4 : 2;
    size_t s = (size_t)w->ks * kg * 32 + (size_t)w->ks * kg * sizeof(float2);
    s += (size_t)rounds * MV_WARPS * 16 * sizeof(float) * 2; /* partial sums, SwiGLU outputs */
    if (!stages) return s;
    if (w->fmt == FMT_Q4_K) return s + (size_t)MV_WARPS * 2 * mvb_stage<FMT_Q4_K, 2>::BYTES; /* S = 2 only */
    if (w->fmt == FMT_Q6_K) return s + (size_t)MV_WARPS * 2 * mvb_stage<FMT_Q6_K, 2>::BYTES;
    int per_warp = w->fmt == FMT_Q8_0 ? (stages == 2   ? 2 * mvb_stage<FMT_Q8_0, 2>::BYTES
                                         : stages == 4 ? 4 * mvb_stage<FMT_Q8_0, 4>::BYTES
                                                       : 2 * mvb_stage<FMT_Q8_0, 3>::BYTES)
                                      : (stages == 2   ? 2 * mvb_stage<FMT_Q4_0, 2>::BYTES
                                         : stages == 4 ? 4 * mvb_stage<FMT_Q4_0, 4>::BYTES
                                                       : 2 * mvb_stage<FMT_Q4_0, 3>::BYTES);
    return s + (size_t)MV_WARPS * per_warp;
}

static int mv_stages_env(void) {
    static int s = -2;
    if (s == -2) s = mv_env("QF_CUDA_MV_S", 2);
    return g_mv_bulk && (s == 2 || s == 3 || s == 4) ? s : 0;
}

int cu_mv_ok(const dmat *w) {
    if (!cu_mv_enabled()) return 0;
    /* the K-quants: the default bulk path only */
    if (w->fmt == FMT_Q4_K || w->fmt == FMT_Q6_K) {
        if (mv_stages_env() != 2 || !g_mv_k) return 0;
        return mv_smem(w, 8, 2) <= (size_t)g_mv_smem_max;
    }
    if (w->fmt != FMT_Q4_0 && w->fmt != FMT_Q8_0) return 0;
    /* room for a few rounds of partial sums besides the row */
    return mv_smem(w, 8, mv_stages_env()) <= (size_t)g_mv_smem_max;
}

/* Blocks resident per SM for this instance and shared memory (cached for
 * the last few sizes asked). */
template <int FMT, int U, bool SW, int S> static int mv_per_sm(size_t smem) {
    enum { NC = 8 };
    static size_t c_smem[NC];
    static int c_n[NC], c_next = 0;
    for (int i = 0; i < NC; i++)
        if (c_n[i] > 0 && c_smem[i] == smem) return c_n[i];
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, mv_kernel<FMT, U, SW, S>, 256, smem) != cudaSuccess ||
        n < 1) {
        cudaGetLastError();
        n = 1;
    }
    c_smem[c_next] = smem, c_n[c_next] = n;
    c_next = (c_next + 1) % NC;
    return n;
}

/* Grid: as many blocks as fit at once, each a run of at most per_block
 * tiles (whole quads with SwiGLU, whole rounds of 8 / W tiles otherwise). */
typedef struct mv_geom {
    int per_block, rounds, grid;
    size_t smem;
} mv_geom;

/* false when the partial sums do not fit */
template <int FMT, int U, bool SW, int S> static bool mv_plan(const dmat *w, int W, mv_geom *g) {
    const int tiles = w->rows_pad / 16, tpb = MV_WARPS / W, unit = SW ? 4 : tpb, units = (tiles + unit - 1) / unit;
    size_t smem = mv_smem(w, (unit + tpb - 1) / tpb, S);
    int slots = mv_per_sm<FMT, U, SW, S>(smem) * g_mv_n_sm;
    memset(g, 0, sizeof *g);
    for (int it = 0; it < 2; it++) {
        g->per_block = (units + slots - 1) / slots * unit;
        smem = mv_smem(w, (g->per_block + tpb - 1) / tpb, S);
        if (smem > (size_t)g_mv_smem_max) return false;
        int s2 = mv_per_sm<FMT, U, SW, S>(smem) * g_mv_n_sm;
        if (s2 >= slots) break;
        slots = s2;
    }
    g->rounds = (g->per_block + tpb - 1) / tpb;
    g->grid = (tiles + g->per_block - 1) / g->per_block;
    g->smem = smem;
    return true;
}

template <int FMT, int U, bool SW, int S>
static cudaError_t mv_launch(mv_args a, const dmat *w, int pdl, cudaStream_t st) {
    mv_geom g;
    if (!mv_plan<FMT, U, SW, S>(w, a.W, &g)) return cudaErrorInvalidConfiguration;
    a.per_block = g.per_block, a.rounds = g.rounds;
    return launch_k(mv_kernel<FMT, U, SW, S>, dim3((unsigned)g.grid), dim3(256), g.smem, st, pdl, a);
}

template <int FMT, int U, int S>
static cudaError_t mv_run(const mv_args &a, const dmat *w, bool sw, int pdl, cudaStream_t st) {
    return sw ? mv_launch<FMT, U, true, S>(a, w, pdl, st) : mv_launch<FMT, U, false, S>(a, w, pdl, st);
}

/* The L2 prefetch list of a: the tiles of the first `tiles` positions of
 * every block of the launch cu_matvec would make for w with the default
 * bulk path and no norm (n_ff > 0: gate|up with the SwiGLU epilogue). */
static void mv_pf_plan(mv_args *a, const dmat *w, int n_ff, int tiles) {
    const int S = mv_stages_env(), W = cu_mm_warps(w->ks);
    const bool sw = n_ff > 0;
    if (!S || (w->fmt != FMT_Q4_0 && w->fmt != FMT_Q8_0)) return; /* (the K-quants: not planned) */
    mv_geom g;
    bool ok;
#define MV_PLAN(F, SS)                                                                                            \
    (sw ? mv_plan<F, 1, true, SS>(w, W, &g) : mv_plan<F, 1, false, SS>(w, W, &g))
    if (w->fmt == FMT_Q4_0) ok = S == 2 ? MV_PLAN(FMT_Q4_0, 2) : S == 3 ? MV_PLAN(FMT_Q4_0, 3) : MV_PLAN(FMT_Q4_0, 4);
    else ok = S == 2 ? MV_PLAN(FMT_Q8_0, 2) : S == 3 ? MV_PLAN(FMT_Q8_0, 3) : MV_PLAN(FMT_Q8_0, 4);
#undef MV_PLAN
    if (!ok) return;
    a->pf_q = (const uint8_t *)w->q, a->pf_s = (const uint8_t *)w->s;
    a->pf_tq = (uint32_t)((size_t)w->ks * (w->fmt == FMT_Q8_0 ? 1024 : 512)), a->pf_ts = (uint32_t)((size_t)w->ks * 64);
    a->pf_grid = g.grid, a->pf_tiles = tiles, a->pf_n_pos = w->rows_pad / 16, a->pf_per_block = g.per_block;
    a->pf_gt = sw ? n_ff / 16 : 0;
}

cudaError_t cu_matvec(const dmat *w, const mv_in *in, float *y, int add, int pdl, cudaStream_t st) {
    if (!cu_mv_ok(w)) return cudaErrorInvalidValue;
    mv_args a = {};
    a.wq = (const uint4 *)w->q;
    a.ws = (const uint2 *)w->s;
    a.ks = w->ks;
    a.rows = w->rows;
    a.tiles = w->rows_pad / 16;
    a.W = cu_mm_warps(w->ks);
    a.aq = in->src->q, a.ads = in->src->ds, a.a_tok_pad = in->src_tok_pad;
    a.y = y;
    a.bias = w->bias;
    a.add = add;
    a.tr = in->trace;
    if (in->kv) {
        const mv_kv *k = in->kv;
        if (k->n_rot % 2 || k->hd % 2) return cudaErrorInvalidValue;
        a.kv = k->kv, a.kv_f32 = k->kv_f32, a.kv_q = k->q_rows, a.kv_dim = k->kv_dim, a.kv_dim_v = k->kv_dim_v;
        a.hd = k->hd, a.hdv = k->hdv, a.n_rot = k->n_rot, a.bs = k->bs, a.layer = k->layer, a.n_layer = k->n_layer;
        a.tok = k->tok, a.tables = k->tables, a.cs = k->cs;
    }
    bool sw = in->h != NULL;
    if (sw) {
        /* whole quads: 32 gate and 32 up rows, no padding rows between */
        if (in->n_ff % 32 || w->rows != 2 * in->n_ff) return cudaErrorInvalidValue;
        a.n_ff = in->n_ff, a.hq = in->h->q, a.hds = in->h->ds, a.h_tok_pad = in->h_tok_pad;
    }
    static int u_env = -2, ef_env = -2;
    if (u_env == -2) u_env = mv_env("QF_CUDA_MV_U", 0), ef_env = mv_env("QF_CUDA_MV_EF", 1);
    a.ef = ef_env;
    if (in->pf && in->pf_tiles > 0) mv_pf_plan(&a, in->pf, in->pf_n_ff, in->pf_tiles);
    const int S = mv_stages_env();
    if (w->fmt == FMT_Q4_K) return mv_run<FMT_Q4_K, 1, 2>(a, w, sw, pdl, st); /* cu_mv_ok: S == 2 */
    if (w->fmt == FMT_Q6_K) return mv_run<FMT_Q6_K, 1, 2>(a, w, sw, pdl, st);
    if (w->fmt == FMT_Q4_0) {
        if (S == 2) return mv_run<FMT_Q4_0, 1, 2>(a, w, sw, pdl, st);
        if (S == 3) return mv_run<FMT_Q4_0, 1, 3>(a, w, sw, pdl, st);
        if (S == 4) return mv_run<FMT_Q4_0, 1, 4>(a, w, sw, pdl, st);
        if (u_env == MV_U_Q4 / 2) return mv_run<FMT_Q4_0, MV_U_Q4 / 2, 0>(a, w, sw, pdl, st);
        return mv_run<FMT_Q4_0, MV_U_Q4, 0>(a, w, sw, pdl, st);
    }
    if (S == 2) return mv_run<FMT_Q8_0, 1, 2>(a, w, sw, pdl, st);
    if (S == 3) return mv_run<FMT_Q8_0, 1, 3>(a, w, sw, pdl, st);
    if (S == 4) return mv_run<FMT_Q8_0, 1, 4>(a, w, sw, pdl, st);
    if (u_env == MV_U_Q8 / 2) return mv_run<FMT_Q8_0, MV_U_Q8 / 2, 0>(a, w, sw, pdl, st);
    return mv_run<FMT_Q8_0, MV_U_Q8, 0>(a, w, sw, pdl, st);
}
