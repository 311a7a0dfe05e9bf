#!/bin/sh
# test-arm.sh - cross-build the quant layer for aarch64 (NEON + dotprod) and
# run its tests under qemu-user.
#
#   scripts/test-arm.sh [BUILD_DIR]        (default: build-arm in the repo)
#
# Builds a minimal static library (src/base/{err,log,mem,clock}.c,
# src/gguf/*.c for the data test, src/quant/*.c: no hwloc/pcre2/cjson/xxhash
# needed) with
# aarch64-linux-gnu-gcc, neon.c with -march=armv8.2-a+dotprod+fp16, links
# tests/quant/test_kernels.c, test_quant.c and test_quant_data.c statically
# and runs them with qemu-aarch64: once on qemu's default CPU (NEON kernels
# in use), once on a Cortex-A53 (no dotprod: the hwcap check must fall back
# to scalar). Exit status: 0 all passed, 1 a build or test failed, 77 skipped
# (cross compiler or qemu missing). Environment: CROSS_CC, QEMU override
# the tools.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$SRC/build-arm}
CC=${CROSS_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "SKIP: $CC not found (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)"
    exit 77
fi
if ! command -v "$QEMU" >/dev/null 2>&1; then
    echo "SKIP: $QEMU not found (apt-get install qemu-user)"
    exit 77
fi

mkdir -p "$OUT" || exit 1
CFLAGS="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror -O2 -g -I$SRC/src"
TFLAGS="-I$SRC/tests -DQF_TESTDATA_DIR=\"$SRC/../shared/testdata\" -DQF_SOURCE_DIR=\"$SRC\""
TFLAGS="$TFLAGS -DQF_BINARY_DIR=\"$OUT\" -DQF_QFORGE_EXE=\"\""

objs=""
for f in "$SRC"/src/base/err.c "$SRC"/src/base/log.c "$SRC"/src/base/mem.c \
         "$SRC"/src/base/clock.c "$SRC"/src/gguf/*.c "$SRC"/src/quant/*.c; do
    name=$(basename "$(dirname "$f")")_$(basename "$f" .c)
    extra=""
    [ "$(basename "$f")" = neon.c ] && extra="-march=armv8.2-a+dotprod+fp16 -O3"
    # shellcheck disable=SC2086
    $CC $CFLAGS $extra -c "$f" -o "$OUT/$name.o" || { echo "FAIL: compile $f"; exit 1; }
    objs="$objs $OUT/$name.o"
done
rm -f "$OUT/libqf_arm.a"
# shellcheck disable=SC2086
aarch64-linux-gnu-ar rcs "$OUT/libqf_arm.a" $objs 2>/dev/null || ar rcs "$OUT/libqf_arm.a" $objs || exit 1

tests="test_kernels test_attn test_quant test_quant_data"
for t in $tests; do
    # shellcheck disable=SC2086
    $CC $CFLAGS $TFLAGS -static "$SRC/tests/quant/$t.c" "$OUT/libqf_arm.a" -lm -lpthread \
        -o "$OUT/$t" || { echo "FAIL: build $t"; exit 1; }
done

status=0
run() { # cpu test
    if [ -n "$1" ]; then "$QEMU" -cpu "$1" "$OUT/$2"; else "$QEMU" "$OUT/$2"; fi
    rc=$?
    case $rc in
    0) echo "PASS: $2 ${1:-(default cpu)}" ;;
    77) echo "SKIP: $2 ${1:-(default cpu)}" ;;
    *) echo "FAIL: $2 ${1:-(default cpu)} (exit $rc)"; status=1 ;;
    esac
}
for t in $tests; do
    run "" "$t"
done
QF_LOG=error run cortex-a53 test_kernels
exit $status
