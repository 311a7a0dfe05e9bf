#!/usr/bin/env bash
# serve-vs-llama.sh - aggregate generation speed of `qforge serve` next to
# llama.cpp's `llama-server`, same GGUF file, same load.
#
# Both servers run on loopback with 8 slots (--parallel 8 / -np 8), the same
# per-sequence context, thread count and kv type (f16). The load is 8
# concurrent clients (scripts/load-test.sh --client-only), each streaming
# /v1/completions requests back to back for D seconds with max_tokens M,
# ignore_eos (so every request generates exactly M tokens) and the same
# sampling settings. Each load run has a 5 s warm-up first. The result is
# aggregate generated tokens/s = tokens streamed / wall time, per server,
# and the ratio qforge / llama.cpp (goal: >= 1.0).
#
#   bench/serve-vs-llama.sh [--exe build/qforge]
#       [--llama /tmp/llama.cpp/build/bin/llama-server] [--model M.gguf]
#       [--duration 30] [--max-tokens 128] [--clients 8] [--parallel 8]
#       [--threads N] [--ctx 512] [--rounds 3]
#
# Without --model a random-weight llama model (~30M parameters, q8_0) is
# synthesized. Prints one markdown table row per server and the ratio.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
exe=$root/build/qforge
llama=/tmp/llama.cpp/build/bin/llama-server
model=""
duration=30
max_tokens=128
clients=8
parallel=8
threads=$(nproc)
ctx=512
rounds=3
while [ $# -gt 0 ]; do
  case $1 in
    --exe) exe=$2; shift 2 ;;
    --llama) llama=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --ctx) ctx=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$exe" ] || { echo "bench: $exe not found" >&2; exit 2; }
[ -x "$llama" ] || { echo "bench: llama-server not found at $llama (build llama.cpp first)" >&2; exit 2; }

tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

synth=0
if [ -z "$model" ]; then
  synth=1
  model=$tmp/bench-llama.gguf
  "$exe" model synth --arch llama --n-embd 512 --n-layer 8 --n-head 8 --n-head-kv 4 --n-ff 1536 \
    --type q8_0 --seed 1 -o "$model" >/dev/null
fi
name=$(basename "$model" .gguf)
port_free() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();})'; }
# same sampling for both; ignore_eos makes every request exactly max_tokens long
body='{"temperature":0.8,"top_k":40,"top_p":0.95,"min_p":0.05,"ignore_eos":true}'
llama_body=$body
if [ "$synth" = 1 ]; then
  # The synthesized model's vocabulary is the 256 bytes (ids 3..258) and a
  # random model emits any of them; llama-server answers 500 ("does not
  # match the expected Content-only format") as soon as the text is not
  # valid UTF-8. So llama-server is told not to sample bytes >= 0x80
  # (ids 131..258) through logit_bias: same forward pass and sampling work
  # per token, only valid text. qforge streams such bytes as U+FFFD.
  llama_body=$(node -e 'const b=JSON.parse(process.argv[1]);b.logit_bias=[];for(let i=131;i<259;i++)b.logit_bias.push([i,false]);console.log(JSON.stringify(b))' "$body")
fi

wait_up() { # url
  for _ in $(seq 600); do
    curl -s -m 2 -o /dev/null -w '%{http_code}' "$1/health" 2>/dev/null | grep -q 200 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

run_load() { # url body -> json
  "$root/scripts/load-test.sh" --client-only --url "$1" --model-name "$name" --clients "$clients" \
    --duration 5 --max-tokens "$max_tokens" --route completions --extra-body "$2" >/dev/null
  "$root/scripts/load-test.sh" --client-only --url "$1" --model-name "$name" --clients "$clients" \
    --duration "$duration" --max-tokens "$max_tokens" --route completions --extra-body "$2"
}

field() { node -e 'const r=JSON.parse(process.argv[1]);const v=r[process.argv[2]];console.log(typeof v==="number"?v.toFixed(3):JSON.stringify(v))' "$1" "$2"; }

# Both servers run at once (idle, each waits without using the CPU) and get
# the load in turns, qforge first, for --rounds rounds; each server's
# median round is reported, which keeps a burst of other work on the
# machine from deciding the result.
port=$(port_free)
"$exe" serve -m "$model" --host 127.0.0.1 --port "$port" --parallel "$parallel" --ctx "$ctx" \
  --threads "$threads" --max-queue 64 --keep-alive -1 >"$tmp/q.out" 2>"$tmp/q.err" &
pid=$!
qpid=$pid
qurl=http://127.0.0.1:$port
wait_up "$qurl" || { echo "bench: qforge serve did not start"; cat "$tmp/q.err"; exit 1; }
port=$(port_free)
"$llama" -m "$model" --host 127.0.0.1 --port "$port" -np "$parallel" -c $((ctx * parallel)) \
  -t "$threads" -tb "$threads" --no-webui >"$tmp/l.out" 2>"$tmp/l.err" &
pid=$!
lpid=$pid
lurl=http://127.0.0.1:$port
wait_up "$lurl" || { echo "bench: llama-server did not start"; tail -20 "$tmp/l.err"; kill "$qpid"; exit 1; }
pid=""
trap 'kill $qpid $lpid 2>/dev/null; wait $qpid $lpid 2>/dev/null; rm -rf "$tmp"' EXIT

qs=()
ls_=()
for r in $(seq "$rounds"); do
  qs+=("$(run_load "$qurl" "$body")")
  ls_+=("$(run_load "$lurl" "$llama_body")")
  echo "round $r: qforge $(field "${qs[-1]}" tokens_per_s) tok/s, llama-server $(field "${ls_[-1]}" tokens_per_s) tok/s" >&2
done
median() { # json... -> the json whose tokens_per_s is the median
  node -e 'const a=process.argv.slice(1).map(JSON.parse).sort((x,y)=>x.tokens_per_s-y.tokens_per_s);console.log(JSON.stringify(a[(a.length-1)>>1]))' "$@"
}
q=$(median "${qs[@]}")
l=$(median "${ls_[@]}")

qt=$(field "$q" tokens_per_s)
lt=$(field "$l" tokens_per_s)
ratio=$(node -e "console.log((${qt} / ${lt}).toFixed(2))")
echo "model $name ($(du -h "$model" | cut -f1)), $clients streaming clients, --parallel $parallel, ctx $ctx/seq, $threads threads, max_tokens $max_tokens, ${duration}s x $rounds rounds (median), $(date -u +%Y-%m-%d), $(uname -m), $(nproc) cpus"
echo "| server | tokens/s | requests ok | errors | TTFT p50 s | TTFT p99 s |"
echo "|---|---|---|---|---|---|"
echo "| qforge serve | $qt | $(field "$q" ok) | $(field "$q" n_errors) | $(field "$q" ttft_p50_s) | $(field "$q" ttft_p99_s) |"
echo "| llama-server | $lt | $(field "$l" ok) | $(field "$l" n_errors) | $(field "$l" ttft_p50_s) | $(field "$l" ttft_p99_s) |"
echo "ratio qforge / llama.cpp: $ratio"
