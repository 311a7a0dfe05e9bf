#!/usr/bin/env bash
# run_node_tests.sh QFORGE_EXE SRC_DIR WORK_DIR
#
# Installs the official `openai` and `ollama` npm packages (versions pinned by
# package-lock.json) into WORK_DIR and runs the node tests there against a
# live `qforge serve`. Exit 77 (skipped) when node/npm are missing, or when
# the npm registry cannot be reached and nothing was installed before.
# QF_SERVE_EXE overrides the binary (a development build).
set -u
exe=${QF_SERVE_EXE:-$1}
src=$2
work=$3
command -v node >/dev/null 2>&1 || { echo "skipped: node not found"; exit 77; }
command -v npm >/dev/null 2>&1 || { echo "skipped: npm not found"; exit 77; }
mkdir -p "$work"
cp "$src"/package.json "$src"/package-lock.json "$src"/server.mjs "$src"/*.test.mjs "$work"/
cd "$work" || exit 1
# npm install (not ci) keeps an existing node_modules when offline
if ! timeout 300 npm install --no-audit --no-fund --prefer-offline >npm.log 2>&1; then
  if [ -d node_modules/openai ] && [ -d node_modules/ollama ]; then
    echo "npm install failed; using the packages installed before"
  else
    echo "skipped: the npm registry is unreachable and the packages were never installed"
    tail -5 npm.log
    exit 77
  fi
fi
"$exe" serve --help >/dev/null 2>&1 || { echo "FAIL: '$exe serve' is not available"; exit 1; }
QFORGE_EXE="$exe" exec node --test ./*.test.mjs
