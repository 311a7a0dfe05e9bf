#!/bin/sh
# bench_cuda.sh - token generation on the CUDA backend against the memory
# roofline measured in the same run (docs/backend.md, "Results").
#
#   bench/bench_cuda.sh [BUILD_DIR]
#
# Builds BUILD_DIR (default build-cuda) with -DQF_CUDA=ON when it has no
# bench_gpu yet (BENCH_GPU=path uses a prebuilt one instead), then for an
# 8B-class llama shape (n_embd 4096, 32 layers, 32 heads, 8 kv heads, n_ff
# 14336; random weights written once to /tmp by qf_model_synth, 3.9 GB for
# q4_0 and 7.4 GB for q8_0) runs tg128 at batch 1 and 32 sequences, three
# repetitions each, and prints tok/s, % of roofline and the batch-32 speedup,
# then a batch-1 profile (device time per kind of kernel, matrix bandwidth).
# JSON results go to $OUT (default .) as bench_cuda_<type>.json.
# Environment knobs of the backend (for measurements): QF_CUDA_GRAPHS=0,
# QF_CUDA_PDL=0, QF_CUDA_PERSIST=0, QF_CUDA_STAGED=0, QF_CUDA_ATT_ENC=0,
# QF_CUDA_WARPS=n, QF_CUDA_UNROLL=2; one token: QF_CUDA_MV=0 (mmq instead of
# the matrix-vector kernel), QF_CUDA_SWIGLU=0 / QF_CUDA_QKV_STORE=0 (act /
# k_store kernels again), QF_CUDA_ATT_FUSE=1 (a fusion that measured
# slower), QF_CUDA_MV_S=0|2|3|4 (stage
# geometry), QF_CUDA_MV_U=n (register path: k-steps in flight per warp),
# QF_CUDA_MV_EF=0 (normal L2 policy for the weights), QF_CUDA_MV_PF=0 (no L2
# prefetch of gate|up's first tiles by Wo), QF_CUDA_MV_K=0 (Q4_K/Q6_K through
# mmq at batch 1), QF_CUDA_ACT_REUSE=0 (act reads its value twice);
# attention: QF_CUDA_ATT_SHORT=0|2 (the split kernel always | for many tokens),
# QF_CUDA_ATT_SHORT_EARLY=0, QF_CUDA_ATT_SHORT_FUSE=0 (k_store kernel again),
# QF_CUDA_ATT_PF=0 (no L2 prefetch of the cache), QF_CUDA_ATT_COMBINE=1
# (combine kernel), QF_CUDA_SPLIT_MIN=n / QF_CUDA_SPLIT_LEN=n (when and how
# finely it splits), QF_CUDA_HPC=n (query heads per attention block: 1, 2, 4,
# 6, 7 or 8 dividing the kv group); QF_CUDA_PROFILE=1 in any program (qforge
# included) prints device time per kind of kernel when the backend closes.
# bench_gpu --mv times the matrix-vector kernel alone per 8B shape against a
# plain read of device memory; bench_gpu --gpu-layers N a partial offload;
# bench_gpu --trace the timeline of a batch-1 layer (every kernel's blocks
# stamp the global timer).
set -eu
BUILD=${1:-build-cuda}
BIN=${BENCH_GPU:-$BUILD/bench_gpu}
if [ ! -x "$BIN" ]; then
    cmake -S . -B "$BUILD" -G Ninja -DQF_CUDA=ON -DCMAKE_BUILD_TYPE=Release ${CUDA_ARCH:+-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH}
    cmake --build "$BUILD" --target bench_gpu
fi
SHAPE=${SHAPE:-4096:32:32:8:14336}
for T in ${TYPES:-q4_0 q8_0}; do
    echo "== llama $SHAPE $T"
    "$BIN" --synth "llama:$SHAPE:$T" --batch 1,32 --tg 128 --prompt 16 --reps 3 --profile --json "${OUT:-.}/bench_cuda_$T.json"
done
