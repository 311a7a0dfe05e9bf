#!/usr/bin/env bash
# load-test.sh - many streaming clients against a local `qforge serve`.
#
# Starts `qforge serve` on a free loopback port with a small model (a
# synthesized random-weight one unless --model is given), runs N concurrent
# clients that each send streaming chat requests back to back for D seconds,
# and reports: requests, successes, intended 503s, other errors, generated
# tokens and tokens/s, time to first token p50/p99, request latency p50/p99,
# and the server's resident memory before and after (after a warm-up, and
# again after the load). Exit status 1 when any error other than a 503
# happened or the server died.
#
# Bounded: at most 256 clients and 600 s; loopback only (127.0.0.1).
#
#   scripts/load-test.sh [--exe build/qforge] [--model M.gguf] [--clients 32]
#                        [--duration 60] [--max-tokens 64] [--parallel 8]
#                        [--max-queue 16] [--json OUT.json]
#   scripts/load-test.sh --client-only --url http://127.0.0.1:PORT --model-name NAME ...
#       (only the clients, against a server already running; used by
#        bench/serve-vs-llama.sh)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
exe=$root/build/qforge
model=""
clients=32
duration=60
max_tokens=64
parallel=8
max_queue=16
json_out=""
client_only=0
url=""
model_name=""
route=chat
extra_body='{}'

while [ $# -gt 0 ]; do
  case $1 in
    --exe) exe=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --max-queue) max_queue=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    --client-only) client_only=1; shift ;;
    --url) url=$2; shift 2 ;;
    --model-name) model_name=$2; shift 2 ;;
    --route) route=$2; shift 2 ;;          # chat | completions
    --extra-body) extra_body=$2; shift 2 ;; # JSON merged into every request
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "load-test: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$clients" -ge 1 ] && [ "$clients" -le 256 ] || { echo "load-test: --clients must be 1..256" >&2; exit 2; }
[ "$duration" -ge 1 ] && [ "$duration" -le 600 ] || { echo "load-test: --duration must be 1..600 s" >&2; exit 2; }
command -v node >/dev/null || { echo "load-test: node is needed for the clients" >&2; exit 2; }

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the client (node, no dependencies) ----
cat >"$tmp/client.mjs" <<'EOF'
// N workers; each sends streaming requests back to back until the deadline.
const [url, model, clients, duration, maxTokens, route, extra] = process.argv.slice(2);
const deadline = Date.now() + Number(duration) * 1000;
const res = { requests: 0, ok: 0, busy503: 0, errors: {}, tokens: 0, ttft: [], latency: [] };
const err = (k) => { res.errors[k] = (res.errors[k] || 0) + 1; };
const path = route === 'completions' ? '/v1/completions' : '/v1/chat/completions';
const t0 = Date.now();

async function one(i) {
  const body = { model, max_tokens: Number(maxTokens), stream: true, stream_options: { include_usage: true },
                 ...JSON.parse(extra) };
  if (route === 'completions') body.prompt = `Story ${i}: once upon a time`;
  else body.messages = [{ role: 'user', content: `Tell me story number ${i}.` }];
  const start = performance.now();
  res.requests++;
  let r;
  try {
    r = await fetch(url + path, { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                  body: JSON.stringify(body), signal: AbortSignal.timeout(300000) });
  } catch (e) { err('connect: ' + (e.cause?.code || e.name)); return; }
  if (r.status === 503) {
    res.busy503++;
    await r.text();
    const ra = Number(r.headers.get('retry-after') || 1);
    await new Promise((ok) => setTimeout(ok, Math.min(ra, 1) * 200));
    return;
  }
  if (r.status !== 200) { err('http ' + r.status); await r.text(); return; }
  let first = 0, chunks = 0, usage = null, done = false, buf = '';
  const dec = new TextDecoder();
  try {
    for await (const part of r.body) {
      buf += dec.decode(part, { stream: true });
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, k);
        buf = buf.slice(k + 2);
        if (!ev.startsWith('data: ')) { err('bad frame'); continue; }
        const data = ev.slice(6);
        if (data === '[DONE]') { done = true; continue; }
        const j = JSON.parse(data);
        if (j.error) { err('stream error'); continue; }
        if (j.usage) usage = j.usage;
        const c = j.choices?.[0];
        const text = c ? (c.delta?.content ?? c.text ?? '') : '';
        if (text.length) { chunks++; if (!first) first = performance.now(); }
      }
    }
  } catch (e) { err('read: ' + e.name); return; }
  if (!done) { err('no [DONE]'); return; }
  res.ok++;
  res.tokens += usage?.completion_tokens ?? chunks;
  if (first) res.ttft.push((first - start) / 1000);
  res.latency.push((performance.now() - start) / 1000);
}

async function worker(w) {
  let i = 0;
  while (Date.now() < deadline) await one(w * 100000 + i++);
}
await Promise.all(Array.from({ length: Number(clients) }, (_, w) => worker(w)));
const wall = (Date.now() - t0) / 1000;
const q = (a, p) => { if (!a.length) return null; const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
console.log(JSON.stringify({
  clients: Number(clients), wall_s: wall, requests: res.requests, ok: res.ok, busy_503: res.busy503,
  errors: res.errors, n_errors: Object.values(res.errors).reduce((a, b) => a + b, 0),
  generated_tokens: res.tokens, tokens_per_s: res.tokens / wall,
  ttft_p50_s: q(res.ttft, 0.5), ttft_p99_s: q(res.ttft, 0.99),
  latency_p50_s: q(res.latency, 0.5), latency_p99_s: q(res.latency, 0.99),
}));
EOF

if [ "$client_only" = 1 ]; then
  [ -n "$url" ] && [ -n "$model_name" ] || { echo "load-test: --client-only needs --url and --model-name" >&2; exit 2; }
  case $url in http://127.0.0.1:* | http://localhost:* | http://\[::1\]:*) ;; *) echo "load-test: loopback URLs only" >&2; exit 2 ;; esac
  node "$tmp/client.mjs" "$url" "$model_name" "$clients" "$duration" "$max_tokens" "$route" "$extra_body"
  exit 0
fi

[ -x "$exe" ] || { echo "load-test: $exe not found (build first, or give --exe)" >&2; exit 2; }
if [ -z "$model" ]; then
  model=$tmp/load-tiny.gguf
  "$exe" model synth --arch llama --n-embd 128 --n-layer 4 --n-head 4 --n-head-kv 2 --n-ff 384 \
    --type q8_0 -o "$model" >/dev/null
fi
name=$(basename "$model" .gguf)

"$exe" serve -m "$model" --host 127.0.0.1 --port 0 --parallel "$parallel" --max-queue "$max_queue" \
  --keep-alive -1 >"$tmp/serve.out" 2>"$tmp/serve.err" &
server_pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's|.*serving on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/serve.out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "load-test: server did not start"; cat "$tmp/serve.err"; exit 1; }
url=http://127.0.0.1:$port
rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$server_pid/status"; }

# warm-up: load the model, touch the code paths once
node "$tmp/client.mjs" "$url" "$name" 4 2 "$max_tokens" "$route" "$extra_body" >/dev/null
rss_before=$(rss)
echo "load-test: $clients clients, ${duration}s, max_tokens $max_tokens, --parallel $parallel --max-queue $max_queue, model $name" >&2
result=$(node "$tmp/client.mjs" "$url" "$name" "$clients" "$duration" "$max_tokens" "$route" "$extra_body")
sleep 1
alive=1
kill -0 "$server_pid" 2>/dev/null || alive=0
rss_after=$([ $alive = 1 ] && rss || echo 0)
health=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$url/health" || true)
full=$(node -e '
const r = JSON.parse(process.argv[1]);
r.rss_before_bytes = Number(process.argv[2]); r.rss_after_bytes = Number(process.argv[3]);
r.rss_growth_pct = r.rss_before_bytes ? 100 * (r.rss_after_bytes - r.rss_before_bytes) / r.rss_before_bytes : null;
r.server_alive = process.argv[4] === "1"; r.health_after = process.argv[5];
console.log(JSON.stringify(r, null, 1));' "$result" "$rss_before" "$rss_after" "$alive" "$health")
echo "$full"
[ -n "$json_out" ] && echo "$full" >"$json_out"
n_err=$(node -e 'console.log(JSON.parse(process.argv[1]).n_errors)' "$result")
if [ "$n_err" != 0 ] || [ $alive != 1 ] || [ "$health" != 200 ]; then
  echo "load-test: FAILED (errors other than 503: $n_err, server alive: $alive, /health: $health)" >&2
  tail -20 "$tmp/serve.err" >&2
  exit 1
fi
echo "load-test: ok" >&2
