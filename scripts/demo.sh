#!/usr/bin/env bash
# The main job until `qforge gen` lands: run a model on a prompt.
# Uses $QFORGE_MODEL when set; otherwise synthesizes a small random-weight
# model (works offline) and says plainly that its text is meaningless.
set -euo pipefail
QF=${1:-build/qforge}
model=${QFORGE_MODEL:-}
if [ -z "$model" ]; then
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/qforge
  mkdir -p "$cache"
  model=$cache/synth-llama-tiny-q8_0.gguf
  if [ ! -f "$model" ]; then
    "$QF" model synth --arch llama --n-embd 256 --n-layer 4 --n-head 8 --n-head-kv 4 --n-ff 768 \
      --type q8_0 --seed 1 -o "$model"
  fi
  echo "qforge: no QFORGE_MODEL set: using a synthesized random-weight model ($model)."
  echo "qforge: its output text is MEANINGLESS. For real text: QFORGE_MODEL=/path/to/model.gguf make run"
fi
"$QF" model info "$model" --ctx 2048
echo
"$QF" run -m "$model" -p "Once upon a time" -n 48 --temp 0.7 --seed 7
