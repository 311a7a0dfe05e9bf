#!/bin/sh
# test-arm-model.sh - cross-build the engine's lower layers for aarch64 and
# run the model tests under qemu-user: the forward pass on the NEON kernels
# against llama.cpp's reference logits (test_reference: every weight type,
# greedy stories260K), the batched forward pass (test_forward) and layer
# ranges (test_fwd_range).
#
#   scripts/test-arm-model.sh [BUILD_DIR]   (default: build-arm-model in the repo)
#
# Compiles src/{base,gguf,quant,tok,kv,model,sample}/*.c and
# src/backend/backend.c (no device backend) with aarch64-linux-gnu-gcc,
# neon.c with -march=armv8.2-a+dotprod+fp16, and links the tests
# dynamically against the arm64 builds of hwloc, xxhash, pcre2 and cJSON
# (Debian multiarch: libhwloc-dev:arm64 ..., which scripts/deps.sh
# installs); qemu-aarch64 runs them on its default CPU (NEON + dotprod in
# use). Exit status: 0 all passed, 1 a build or test failed, 77 skipped
# (cross compiler, qemu or the arm64 libraries missing). CROSS_CC, QEMU
# override the tools.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$SRC/build-arm-model}
CC=${CROSS_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}
LIBDIR=/usr/lib/aarch64-linux-gnu

for tool in "$CC" "$QEMU"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool not found (apt-get install gcc-aarch64-linux-gnu qemu-user)"
        exit 77
    fi
done
for lib in hwloc xxhash pcre2-8 cjson; do
    if [ ! -e "$LIBDIR/lib$lib.so" ]; then
        echo "SKIP: $LIBDIR/lib$lib.so missing (scripts/deps.sh installs the arm64 libraries:"
        echo "      dpkg --add-architecture arm64; apt-get install libhwloc-dev:arm64 libxxhash-dev:arm64"
        echo "      libpcre2-dev:arm64 libcjson-dev:arm64)"
        exit 77
    fi
done

mkdir -p "$OUT" || exit 1
CFLAGS="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror -O2 -g -I$SRC/src -isystem /usr/include/cjson"
TFLAGS="-I$SRC/tests -DQF_TESTDATA_DIR=\"$SRC/../shared/testdata\" -DQF_SOURCE_DIR=\"$SRC\""
TFLAGS="$TFLAGS -DQF_BINARY_DIR=\"$OUT\" -DQF_QFORGE_EXE=\"\""

objs=""
for f in "$SRC"/src/base/*.c "$SRC"/src/gguf/*.c "$SRC"/src/quant/*.c "$SRC"/src/tok/*.c "$SRC"/src/kv/*.c \
         "$SRC"/src/model/*.c "$SRC"/src/sample/*.c "$SRC"/src/backend/backend.c; do
    name=$(basename "$(dirname "$f")")_$(basename "$f" .c)
    extra=""
    [ "$(basename "$f")" = neon.c ] && extra="-march=armv8.2-a+dotprod+fp16 -O3"
    # shellcheck disable=SC2086
    $CC $CFLAGS $extra -c "$f" -o "$OUT/$name.o" || { echo "FAIL: compile $f"; exit 1; }
    objs="$objs $OUT/$name.o"
done
rm -f "$OUT/libqf_arm.a"
# shellcheck disable=SC2086
aarch64-linux-gnu-ar rcs "$OUT/libqf_arm.a" $objs || exit 1

tests="test_forward test_fwd_range test_reference"
status=0
for t in $tests; do
    # shellcheck disable=SC2086
    $CC $CFLAGS $TFLAGS "$SRC/tests/model/$t.c" "$OUT/libqf_arm.a" -L"$LIBDIR" -lhwloc -lxxhash -lpcre2-8 -lcjson \
        -lm -lpthread -o "$OUT/$t" || { echo "FAIL: build $t"; exit 1; }
    "$QEMU" "$OUT/$t"
    rc=$?
    case $rc in
    0) echo "PASS: $t (aarch64, NEON)" ;;
    77) echo "SKIP: $t" ;;
    *) echo "FAIL: $t (exit $rc)"; status=1 ;;
    esac
done
exit $status
