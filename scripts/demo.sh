#!/usr/bin/env bash
# The main job (README's `make run`): qforge gen on the bundled example
# documents (examples/docs: txt, md, html, pdf, docx, jsonl) -> out/dataset.jsonl.
#
# The model: $QFORGE_MODEL when set; else the default small instruct model,
# downloaded once into ~/.cache/qforge/models; when that cannot be had (no
# network), a small random-weight model is synthesized so that the whole
# pipeline still runs offline -- and the pairs it writes are meaningless.
set -euo pipefail
QF=${1:-build/qforge}
OUT=${OUT:-out}
mkdir -p "$OUT"

model=${QFORGE_MODEL:-}
synth=0
if [ -z "$model" ]; then
  if model=$("$QF" gen --fetch-model); then
    :
  else
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/qforge
    mkdir -p "$cache"
    model=$cache/synth-llama-tiny-q8_0.gguf
    if [ ! -f "$model" ]; then
      "$QF" model synth --arch llama --n-embd 128 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 384 \
        --type q8_0 --seed 1 -o "$model" >/dev/null
    fi
    synth=1
    echo
    echo "qforge: no model could be had (no QFORGE_MODEL, and the default model could not be downloaded)."
    echo "qforge: running the whole pipeline on a SYNTHESIZED random-weight model: $model"
    echo "qforge: the pairs it writes are MEANINGLESS. For real pairs: QFORGE_MODEL=/path/to/model.gguf make run"
    echo "qforge: (or point qforge gen at a running server: --endpoint http://localhost:1234/v1, --ollama http://localhost:11434)"
    echo
  fi
fi

args=(examples/docs -o "$OUT/dataset.jsonl" -m "$model" --report "$OUT/report.json")
# a random model with a byte-level vocabulary writes one token per character:
# one pair per chunk and a reply budget that always holds it
[ "$synth" = 1 ] && args+=(--pairs 1 --max-tokens 720 --min-answer 20 --chunk-tokens 1500)
echo "\$ qforge gen ${args[*]}"
"$QF" gen "${args[@]}"
echo
echo "first records of $OUT/dataset.jsonl:"
head -n 2 "$OUT/dataset.jsonl"
[ "$synth" = 1 ] && echo "(meaningless text: synthesized model -- see above)"
exit 0
