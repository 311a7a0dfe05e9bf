#!/bin/sh
# seed.sh BUILD_DIR CORPUS_DIR - write the GGUF fuzzer's seed corpus.
# BUILD_DIR is a build configured with -DQF_FUZZ=ON (see fuzz/CMakeLists.txt).
set -eu
build=${1:?usage: seed.sh BUILD_DIR CORPUS_DIR}
corpus=${2:?usage: seed.sh BUILD_DIR CORPUS_DIR}
cmake --build "$build" --target fuzz_gguf_seeds >/dev/null
mkdir -p "$corpus"
"$build/fuzz/fuzz_gguf_seeds" "$corpus"
ls -l "$corpus"
