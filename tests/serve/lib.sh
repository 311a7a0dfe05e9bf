# lib.sh - shared prologue of the serve shell checks (sourced, not run).
#
# Before sourcing: `exe` is the qforge binary. Provides a temporary folder
# `tmp` (removed at exit, with every server whose pid is in `pids` killed),
# the pass/fail helpers ok, bad, expect and contains (failures counted in
# `fails`), and a tiny random-weight model at "$tmp/tiny.gguf".
command -v curl >/dev/null 2>&1 || { echo "skipped: curl not found"; exit 77; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
expect() { # name got want
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi
}
contains() { # name haystack needle
  case "$2" in *"$3"*) ok "$1" ;; *) bad "$1 ('$3' not in: ${2:0:300})" ;; esac
}

"$exe" model synth --arch llama --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 \
  --type q8_0 -o "$tmp/tiny.gguf" >/dev/null 2>&1 || { echo "FAIL: model synth"; exit 1; }
