#!/usr/bin/env bash
# Side-by-side CPU benchmark: qforge bench vs llama.cpp's llama-bench on the
# same GGUF files, same thread counts, run alternately for several rounds.
#
#   bench/vs-llama.sh /path/to/llama-bench [--qforge build/qforge] [--rounds 3]
#                     [--types "q4_0 q8_0 q4_k_m f16"] [--threads "1 2"] [--models DIR]
#                     [-p 512] [-n 128] [--json OUT.jsonl]
#
# Models: 1B-class synthetic llama (n_embd 2048, 16 layers, 32 heads, 8 KV
# heads, n_ff 8192, vocab of ../shared/testdata/vocab/ggml-vocab-llama-spm.gguf
# or a byte vocab when that is absent), made once with `qforge model synth`.
# Prints a markdown table of pp/tg tokens/s (median over rounds) and the
# ratio qforge / llama.cpp; --json also writes every measurement.
set -euo pipefail
LB=${1:?usage: bench/vs-llama.sh /path/to/llama-bench [options]}
shift
QF=build/qforge; ROUNDS=3; TYPES="q4_0 q8_0 q4_k_m f16"; THREADS="1 2"
MODELS=${XDG_CACHE_HOME:-$HOME/.cache}/qforge/bench; P=512; N=128; JSON=""
while [ $# -gt 0 ]; do
  case "$1" in
    --qforge) QF=$2; shift 2;; --rounds) ROUNDS=$2; shift 2;; --types) TYPES=$2; shift 2;;
    --threads) THREADS=$2; shift 2;; --models) MODELS=$2; shift 2;; -p) P=$2; shift 2;;
    -n) N=$2; shift 2;; --json) JSON=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
[ -x "$LB" ] || { echo "llama-bench not executable: $LB" >&2; exit 2; }
[ -x "$QF" ] || { echo "qforge not built: $QF" >&2; exit 2; }
mkdir -p "$MODELS"
here=$(cd "$(dirname "$0")/.." && pwd)
vocab="$here/../shared/testdata/vocab/ggml-vocab-llama-spm.gguf"
vopt=(); [ -f "$vocab" ] && vopt=(--vocab-from "$vocab")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
: > "$tmp/all.jsonl"

for t in $TYPES; do
  m="$MODELS/synth-1b-$t.gguf"
  [ -f "$m" ] || "$QF" model synth --arch llama --n-embd 2048 --n-layer 16 --n-head 32 --n-head-kv 8 \
      --n-ff 8192 "${vopt[@]}" --type "$t" --seed 1 -o "$m" >&2
  for th in $THREADS; do
    for r in $(seq "$ROUNDS"); do
      # alternate which engine goes first, so neither always gets a cooler machine
      for eng in $( [ $((r % 2)) -eq 1 ] && echo "qf lc" || echo "lc qf"); do
        if [ "$eng" = qf ]; then
          "$QF" bench -m "$m" -p "$P" -n "$N" -t "$th" -r 1 --json 2>/dev/null |
            python3 -c "import sys,json
for l in sys.stdin:
  o=json.loads(l); print(json.dumps({'engine':'qforge','type':'$t','threads':$th,'test':o['test'],'tps':o['tokens_per_s']}))" >> "$tmp/all.jsonl"
        else
          "$LB" -m "$m" -p "$P" -n "$N" -t "$th" -r 1 -o json 2>/dev/null |
            python3 -c "import sys,json
for o in json.load(sys.stdin):
  test=('pp%d'%o['n_prompt']) if o['n_prompt'] else ('tg%d'%o['n_gen'])
  print(json.dumps({'engine':'llama.cpp','type':'$t','threads':$th,'test':test,'tps':o['avg_ts']}))" >> "$tmp/all.jsonl"
        fi
      done
    done
  done
done
[ -n "$JSON" ] && cp "$tmp/all.jsonl" "$JSON"
python3 - "$tmp/all.jsonl" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = sorted({(r['type'], r['threads'], r['test']) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
print("| type | threads | test | qforge t/s | llama.cpp t/s | ratio |")
print("|---|---|---|---|---|---|")
for k in keys:
    q = [r['tps'] for r in rows if (r['type'], r['threads'], r['test']) == k and r['engine'] == 'qforge']
    l = [r['tps'] for r in rows if (r['type'], r['threads'], r['test']) == k and r['engine'] == 'llama.cpp']
    if not q or not l: continue
    mq, ml = statistics.median(q), statistics.median(l)
    print(f"| {k[0]} | {k[1]} | {k[2]} | {mq:.2f} | {ml:.2f} | {mq/ml:.2f} |")
PY
