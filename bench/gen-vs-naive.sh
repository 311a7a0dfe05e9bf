#!/usr/bin/env bash
# qforge gen vs a naive baseline: the same work (same model, same corpus,
# same requests, same number of pairs), done
#   gen:    chunks in flight together (continuous batching), all passes of a
#           chunk as one shared-prefix group, prefix cache on
#   naive:  `qforge gen --naive`: one request at a time, no prefix sharing,
#           the way a script drives LM Studio or Ollama
# Both run the embedded engine with greedy sampling (temperature 0), so both
# generate exactly the same tokens; each run starts with an empty cache.
#
# usage: bench/gen-vs-naive.sh [QFORGE] [MODEL.gguf]
# env:   PRESET=speed|quality (default speed)   CONCURRENCY="N ..." (gen's
#        max_concurrent_requests; one gen run per value, default "16 32")
#        COPIES=N (corpus = the example documents N times, default 12: 50
#        documents, 101 chunks, ~90 requests = three waves at 32, so the
#        batch stays full for most of the run; the random-weight model writes
#        to its token budget, so the replies of a wave end together and a
#        last wave of 13 of 32, as with 6 copies, runs mostly empty)
#        THREADS=N   PAIRS/PASSES
#        override the preset   CURATE=T adds curation   KV_TYPE=f16|q8_0 (both
#        runs)   NGL=N layers on the GPU (both runs; -1 = all, 0 = none,
#        auto; unset: the build's default, auto with CUDA)   OUT=dir
#        (default a temp dir)
# Without MODEL (and $QFORGE_MODEL), a random-weight model of realistic
# shape is synthesized (llama, 1024 wide, 8 layers, q8_0, with the 32k
# llama SentencePiece vocabulary from ../shared/testdata when present):
# its text is meaningless but its cost per token is that of a ~130M model.
# Prints documents/s of both and the ratio; writes $OUT/result.json.
set -euo pipefail
QF=${1:-build/qforge}
MODEL=${2:-${QFORGE_MODEL:-}}
PRESET=${PRESET:-speed}
CONCURRENCY=${CONCURRENCY:-16 32}
COPIES=${COPIES:-12}
OUT=${OUT:-$(mktemp -d /tmp/qforge-bench.XXXXXX)}
HERE=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"

if [ -z "$MODEL" ]; then
  MODEL=$OUT/bench-synth-${SYNTH_TYPE:-q8_0}.gguf
  VOCAB=${VOCAB:-$HERE/../shared/testdata/vocab/ggml-vocab-llama-spm.gguf}
  extra=()
  [ -f "$VOCAB" ] && extra=(--vocab-from "$VOCAB")
  # SYNTH overrides the shape and SYNTH_TYPE the file type, e.g. the
  # default gen model's (Qwen2.5-0.5B-Instruct Q4_K_M) dimensions:
  # SYNTH="--n-embd 896 --n-layer 24 --n-head 14 --n-head-kv 2 --n-ff 4864" SYNTH_TYPE=q4_k_m
  read -r -a shape <<< "${SYNTH:---n-embd 1024 --n-layer 8 --n-head 16 --n-head-kv 8 --n-ff 2816}"
  "$QF" model synth --arch llama "${shape[@]}" --type "${SYNTH_TYPE:-q8_0}" --seed 3 "${extra[@]}" -o "$MODEL" >/dev/null
  echo "bench: synthesized $MODEL (random weights${extra:+, llama-spm vocabulary})"
fi

corpus=$OUT/corpus
rm -rf "$corpus"
mkdir -p "$corpus"
# COPIES variants of the example documents, each text different from its
# first words on (a distinct prompt prefix for every first chunk); the PDF
# and DOCX only in the first copy. Later chunks of the longer documents
# repeat across copies (13 of the 101 requests at 12 copies), as repeated
# passages do in real corpora: both runs compute each distinct request once
# (naive finds the repeat in the response cache; gen also lets a repeat
# wait for the identical request in flight)
python3 - "$HERE/examples/docs" "$corpus" "$COPIES" <<'PY'
import json, os, shutil, sys
src, dst, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
for c in range(1, copies + 1):
    d = os.path.join(dst, f"copy{c}")
    os.makedirs(d)
    tag = f"Edition {c} of the beekeeping notes."
    for name in sorted(os.listdir(src)):
        s, t = os.path.join(src, name), os.path.join(d, name)
        if name.endswith((".pdf", ".docx")):
            if c == 1: shutil.copy(s, t)
        elif name.endswith(".jsonl"):
            with open(s) as f, open(t, "w") as g:
                for line in f:
                    r = json.loads(line); r["text"] = f"{tag} {r['text']}"; g.write(json.dumps(r) + "\n")
        elif name.endswith(".html"):
            h = open(s).read().replace("<article>", f"<article>\n<p>{tag}</p>", 1)
            open(t, "w").write(h)
        else:
            open(t, "w").write(f"{tag}\n\n" + open(s).read())
PY

common=(-m "$MODEL" --preset "$PRESET" --temperature 0 --progress off)
[ -n "${THREADS:-}" ] && common+=(-t "$THREADS")
[ -n "${PAIRS:-}" ] && common+=(--pairs "$PAIRS")
[ -n "${PASSES:-}" ] && common+=(--passes "$PASSES")
[ -n "${MAX_TOKENS:-}" ] && common+=(--max-tokens "$MAX_TOKENS")
[ -n "${CURATE:-}" ] && common+=(--curate "$CURATE")
[ -n "${KV_TYPE:-}" ] && common+=(--kv-type "$KV_TYPE")
[ -n "${NGL:-}" ] && common+=(--gpu-layers "$NGL")

run() { # name, extra args...
  local name=$1; shift
  rm -f "$OUT/$name.jsonl"*
  local t0 t1
  t0=$(date +%s.%N)
  "$QF" gen "$corpus" -o "$OUT/$name.jsonl" "${common[@]}" --report "$OUT/$name.json" "$@" 2> "$OUT/$name.log"
  t1=$(date +%s.%N)
  echo "bench: $name done in $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s"
}

# one gen run per concurrency value, one naive run (the same for all)
for c in $CONCURRENCY; do
  run "gen-c$c" --max-concurrent "$c"
done
run naive --naive

python3 - "$OUT" $CONCURRENCY <<'PY'
import json, sys
out, concs = sys.argv[1], sys.argv[2:]
n = json.load(open(f"{out}/naive.json"))
def work(r): return (r["requests"], r["pairs"]["accepted"] + r["pairs"]["duplicate"] + r["pairs"]["rejected"], r["failures_total"])
print(f"{'':10} {'docs/s':>9} {'wall s':>8} {'requests':>9} {'pairs':>6} {'tok out':>8} {'tok in':>8} {'prefix-cached':>13} {'speedup':>8}")
rows, result = [], {"naive": n, "gen": {}}
for c in concs:
    g = json.load(open(f"{out}/gen-c{c}.json"))
    # greedy decoding: both runs produce the same replies up to float
    # summation order in batched kernels, so generated-token counts may
    # differ slightly
    tok_g, tok_n = g["tokens"]["out"], n["tokens"]["out"]
    same = work(g) == work(n) and abs(tok_g - tok_n) <= 0.05 * max(tok_g, tok_n)
    ratio = g["docs_per_s"] / n["docs_per_s"] if n["docs_per_s"] else float("inf")
    rows.append((f"gen c={c}", g, ratio, same))
    result["gen"][c] = {"report": g, "ratio": ratio, "same_work": same}
rows.append(("naive", n, 1.0, True))
for name, r, ratio, same in rows:
    print(f"{name:10} {r['docs_per_s']:9.4f} {r['wall_s']:8.1f} {r['requests']:9d} {r['pairs']['accepted']:6d} "
          f"{r['tokens']['out']:8d} {r['tokens']['in']:8d} {r['tokens']['prefix_cached']:13d} {ratio:7.2f}x"
          + ("" if same else f"  (work differs: {work(r)} vs {work(n)})"))
best = max(rows[:-1], key=lambda x: x[2])
print(f"speedup: {best[2]:.2f}x documents/s at {best[0]} (goal >= 5x: {'met' if best[2] >= 5 else 'not met'}); "
      f"same work (requests, pairs, failures; generated tokens within 5%): {'yes' if best[3] else 'NO'}")
json.dump(result, open(f"{out}/result.json", "w"), indent=1)
PY
echo "bench: details in $OUT"
