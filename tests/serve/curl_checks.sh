#!/usr/bin/env bash
# curl_checks.sh QFORGE_EXE - the HTTP behaviour of a live `qforge serve`,
# checked with curl: SSE and NDJSON framing, 401/404/405/413/503 (with
# Retry-After), bad input answered with 400 and a message, a client that
# disconnects cancels its generation (the running-sequence gauge drops and
# the cancelled counter rises), slow clients are cut off, CORS, and the
# server still serves afterwards and exits 0 on SIGTERM.
# Loopback only; every server and client is bounded in time.
# QF_SERVE_EXE overrides the binary (a development build).
set -u
exe=${QF_SERVE_EXE:-$1}
. "$(dirname "$0")/lib.sh"

# start NAME ARGS... : start a server, set URL_<NAME> and PID_<NAME>
start() {
  local name=$1
  shift
  "$exe" serve -m "$tmp/tiny.gguf" --port 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local pid=$!
  pids+=("$pid")
  local port=""
  for _ in $(seq 100); do
    port=$(sed -n 's|.*serving on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/$name.out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "FAIL: server $name did not start"
    cat "$tmp/$name.err"
    exit 1
  fi
  printf -v "URL_$name" 'http://127.0.0.1:%s' "$port"
  printf -v "PORT_$name" '%s' "$port"
  printf -v "PID_$name" '%s' "$pid"
}

KEY=test-key-123
start A --api-key "$KEY" --max-body 65536 --ctx 256 --http-timeout 2 --cors http://example.test
start B --parallel 1 --max-queue 1
start C --timeout 0.5
A=$URL_A
B=$URL_B
AUTH="Authorization: Bearer $KEY"
CHAT='{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":8}'

# status URL [curl args...] -> prints the HTTP status, body in $tmp/body
status() {
  local url=$1
  shift
  curl -s -m 30 -o "$tmp/body" -w '%{http_code}' "$@" "$url"
}

echo "# defaults and auth"
contains "listens on 127.0.0.1 unless told otherwise" "$(cat "$tmp/A.out")" "http://127.0.0.1:"
expect "/health needs no key" "$(status "$A/health")" 200
expect "401 without a key" "$(status "$A/v1/chat/completions" -d "$CHAT")" 401
contains "401 body is an OpenAI error" "$(cat "$tmp/body")" '"code":"invalid_api_key"'
expect "401 with a wrong key (Ollama route)" "$(status "$A/api/tags" -H 'Authorization: Bearer nope')" 401
contains "401 body is an Ollama error" "$(cat "$tmp/body")" '{"error":'
expect "401 on /metrics" "$(status "$A/metrics")" 401
expect "200 with the key" "$(status "$A/v1/models" -H "$AUTH")" 200
hdr=$(curl -s -m 10 -D - -o /dev/null -H "$AUTH" -H 'Origin: http://example.test' "$A/v1/models" | tr -d '\r')
contains "CORS origin header" "$hdr" "Access-Control-Allow-Origin: http://example.test"
expect "CORS preflight" "$(status "$A/v1/chat/completions" -X OPTIONS)" 204

echo "# SSE framing"
curl -s -N -m 30 -D "$tmp/sse.h" -H "$AUTH" "$A/v1/chat/completions" \
  -d '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":6,"stream":true,"stream_options":{"include_usage":true}}' \
  >"$tmp/sse"
contains "SSE content type" "$(tr -d '\r' <"$tmp/sse.h")" "Content-Type: text/event-stream"
# every event: one 'data: ' line then one empty line; last event [DONE]
frame=$(awk 'NR % 2 == 1 && !/^data: / {print "line " NR ": not a data line"} NR % 2 == 0 && $0 != "" {print "line " NR ": no blank line after event"}' "$tmp/sse")
expect "SSE events are 'data: ...' + blank line" "$frame" ""
expect "SSE ends with data: [DONE]" "$(tail -n 2 "$tmp/sse" | head -n 1)" "data: [DONE]"
n_events=$(grep -c '^data: {"id":"chatcmpl-' "$tmp/sse")
[ "$n_events" -ge 3 ] && ok "SSE has role, content, finish and usage chunks ($n_events)" || bad "SSE chunks: $n_events"
contains "SSE first chunk carries the role" "$(grep -m1 '^data: {' "$tmp/sse")" '"delta":{"role":"assistant"'
contains "SSE finish chunk" "$(cat "$tmp/sse")" '"finish_reason":"length"'
contains "SSE usage chunk" "$(cat "$tmp/sse")" '"choices":[],"usage":{"prompt_tokens":'

echo "# NDJSON framing"
curl -s -N -m 30 -D "$tmp/nd.h" -H "$AUTH" "$A/api/chat" \
  -d '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":5}}' >"$tmp/nd"
contains "NDJSON content type" "$(tr -d '\r' <"$tmp/nd.h")" "Content-Type: application/x-ndjson"
frame=$(awk '!/^\{.*\}$/ {print "line " NR " is not one JSON object"}' "$tmp/nd")
expect "NDJSON: one object per line" "$frame" ""
contains "NDJSON last line is done" "$(tail -n 1 "$tmp/nd")" '"done":true'
expect "NDJSON other lines are not done" "$(head -n -1 "$tmp/nd" | grep -vc '"done":false')" 0

echo "# 404 / 405 / 413"
expect "404 unknown model (OpenAI)" "$(status "$A/v1/chat/completions" -H "$AUTH" -d '{"model":"nope","messages":[{"role":"user","content":"x"}]}')" 404
contains "404 code model_not_found" "$(cat "$tmp/body")" '"code":"model_not_found"'
expect "404 unknown model (Ollama)" "$(status "$A/api/chat" -H "$AUTH" -d '{"model":"nope","messages":[{"role":"user","content":"x"}]}')" 404
expect "404 unknown route" "$(status "$A/v2/everything" -H "$AUTH")" 404
expect "405 wrong method" "$(status "$A/v1/chat/completions" -H "$AUTH")" 405
head -c 70000 /dev/zero | tr '\0' ' ' >"$tmp/big"
expect "413 body over --max-body (Content-Length)" "$(status "$A/v1/chat/completions" -H "$AUTH" --data-binary @"$tmp/big")" 413
contains "413 names the limit" "$(cat "$tmp/body")" "65536"
expect "413 body over --max-body (chunked)" "$(status "$A/v1/chat/completions" -H "$AUTH" -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big")" 413

echo "# bad input -> 400 with a message"
bad400() { # name body [route]
  local route=${3:-/v1/chat/completions}
  local st
  st=$(status "$A$route" -H "$AUTH" --data-binary "$2")
  if [ "$st" = 400 ] && grep -q '"message":"[^"]' "$tmp/body" 2>/dev/null || { [ "$st" = 400 ] && grep -q '"error":"[^"]' "$tmp/body"; }; then
    ok "400: $1"
  else
    bad "400: $1 (status $st, body $(head -c 200 "$tmp/body"))"
  fi
}
bad400 "malformed JSON" '{"model":"tiny","messages":[{"role":"user","content":"x"}'
bad400 "trailing garbage" '{"model":"tiny","messages":[{"role":"user","content":"x"}]} xyz'
bad400 "invalid UTF-8" "$(printf '{"model":"tiny","messages":[{"role":"user","content":"\xc3\x28"}]}')"
bad400 "not an object" '[1,2,3]'
bad400 "empty body" ''
bad400 "wrong type" '{"model":"tiny","messages":"hello"}'
bad400 "wrong type in a message" '{"model":"tiny","messages":[{"role":"user","content":42}]}'
bad400 "unknown field" '{"model":"tiny","messages":[{"role":"user","content":"x"}],"temprature":1}'
bad400 "unknown role" '{"model":"tiny","messages":[{"role":"wizard","content":"x"}]}'
bad400 "missing messages" '{"model":"tiny"}'
bad400 "empty messages" '{"model":"tiny","messages":[]}'
bad400 "max_tokens 0" '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":0}'
bad400 "max_tokens negative" '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":-5}'
bad400 "max_tokens huge" '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":100000000}'
bad400 "max_tokens fractional" '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":1.5}'
bad400 "temperature out of range" '{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":7}'
bad400 "bad response_format" '{"model":"tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}'
bad400 "duplicate field" '{"model":"tiny","model":"tiny","messages":[{"role":"user","content":"x"}]}'
bad400 "Ollama: model missing" '{"messages":[{"role":"user","content":"x"}]}' /api/chat
bad400 "Ollama: bad keep_alive" '{"model":"tiny","prompt":"x","keep_alive":"soon"}' /api/generate
bad400 "completions: token id out of vocabulary" '{"model":"tiny","prompt":[1,2,999999]}' /v1/completions
long=$(head -c 3000 /dev/zero | tr '\0' 'w')
st=$(status "$A/v1/chat/completions" -H "$AUTH" -d "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}]}")
expect "prompt over the context: 400" "$st" 400
msg=$(cat "$tmp/body")
if echo "$msg" | grep -Eq 'prompt is [0-9]+ tokens' && echo "$msg" | grep -q '256 tokens'; then
  ok "prompt over the context names both token counts"
else
  bad "prompt over the context message: $msg"
fi
expect "server still healthy after bad input" "$(status "$A/v1/chat/completions" -H "$AUTH" -d "$CHAT")" 200

echo "# slow client"
t0=$(date +%s)
if exec 3<>"/dev/tcp/127.0.0.1/$PORT_A"; then
  printf 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 100\r\n\r\n{"mo' "$AUTH" >&3
  reply=$(timeout 10 cat <&3)
  exec 3<&-
  t1=$(date +%s)
  if [ $((t1 - t0)) -ge 1 ] && [ $((t1 - t0)) -le 8 ]; then ok "a stalled upload is cut off after --http-timeout ($((t1 - t0)) s)"; else bad "stalled upload held for $((t1 - t0)) s"; fi
  case "$reply" in "" | *" 408 "*) ok "slow client: closed (or 408)" ;; *) bad "slow client got: ${reply:0:100}" ;; esac
else
  bad "cannot open a socket to the server"
fi
expect "server still healthy after a slow client" "$(status "$A/health")" 200

echo "# 503 when the queue is full (--parallel 1 --max-queue 1)"
LONG='{"model":"tiny","prompt":"x","max_tokens":3000,"ignore_eos":true}'
cpids=()
for i in 1 2 3 4 5 6; do
  curl -s -m 60 -o /dev/null -D "$tmp/h503.$i" -w '%{http_code}\n' "$B/v1/completions" -d "$LONG" >"$tmp/s503.$i" &
  cpids+=($!)
done
wait "${cpids[@]}" 2>/dev/null
codes=$(cat "$tmp"/s503.* | sort | uniq -c | tr -s ' ' | tr '\n' ';')
n503=$(cat "$tmp"/s503.* | grep -c 503)
n200=$(cat "$tmp"/s503.* | grep -c 200)
[ "$n503" -ge 1 ] && ok "some requests got 503 ($codes)" || bad "no 503 under overload ($codes)"
[ "$n200" -ge 1 ] && ok "admitted requests completed ($codes)" || bad "no request completed ($codes)"
[ $((n503 + n200)) -eq 6 ] && ok "only 200 or 503" || bad "unexpected statuses ($codes)"
retry=$(grep -il '^Retry-After: ' "$tmp"/h503.* | wc -l)
expect "every 503 has Retry-After" "$retry" "$n503"

echo "# disconnect cancels the generation"
metric() { curl -s -m 10 "$B/metrics" | sed -n "s/^$1 //p"; }
wait_metric() { # name value tries
  for _ in $(seq "$3"); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
for mode in stream plain; do
  c0=$(metric qforge_requests_cancelled_total)
  if [ "$mode" = stream ]; then body='{"model":"tiny","prompt":"x","max_tokens":4000,"ignore_eos":true,"stream":true}'; else body=$LONG; fi
  curl -s -N -m 60 -o /dev/null "$B/v1/completions" -d "$body" &
  cpid=$!
  if wait_metric qforge_running_sequences 1 100; then ok "$mode: running gauge rises to 1"; else bad "$mode: never running"; fi
  kill "$cpid"
  wait "$cpid" 2>/dev/null
  t0=$(date +%s%N)
  if wait_metric qforge_running_sequences 0 20; then
    ok "$mode: running gauge drops to 0 after the client left ($((($(date +%s%N) - t0) / 1000000)) ms)"
  else
    bad "$mode: still running 2 s after the client left"
  fi
  c1=$(metric qforge_requests_cancelled_total)
  expect "$mode: cancelled counter +1" "$c1" "$((c0 + 1))"
done
contains "499 counted for the client that left" "$(curl -s "$B/metrics")" 'status="499"'

echo "# generation deadline (--timeout 0.5)"
LONGC='{"model":"tiny","prompt":"x","max_tokens":4000,"ignore_eos":true}'
expect "504 when generation passes --timeout" "$(status "$URL_C/v1/completions" -d "$LONGC")" 504
contains "504 says why" "$(cat "$tmp/body")" "timeout"
curl -s -N -m 30 "$URL_C/v1/completions" -d '{"model":"tiny","prompt":"x","max_tokens":4000,"ignore_eos":true,"stream":true}' >"$tmp/sse_to"
contains "stream past --timeout ends with an error event" "$(tail -n 4 "$tmp/sse_to")" 'data: {"error":'
expect "... and then [DONE]" "$(tail -n 2 "$tmp/sse_to" | head -n 1)" "data: [DONE]"
expect "server C healthy after timeouts" "$(status "$URL_C/v1/completions" -d '{"model":"tiny","prompt":"x","max_tokens":3}')" 200

echo "# metrics"
m=$(curl -s -H "$AUTH" "$A/metrics")
for name in qforge_http_requests_total qforge_queue_depth qforge_running_sequences qforge_prompt_tokens_total \
  qforge_generated_tokens_total qforge_tokens_per_second qforge_time_to_first_token_seconds_bucket \
  qforge_http_request_duration_seconds_bucket qforge_kv_usage_ratio qforge_prefix_cache_hit_ratio \
  qforge_process_resident_memory_bytes; do
  contains "metric $name" "$m" "$name"
done
contains "requests counted by endpoint and status" "$m" 'qforge_http_requests_total{endpoint="/v1/chat/completions",status="400"}'
page=$(curl -s "$A/")
contains "dashboard page" "$page" "<canvas"

echo "# shutdown"
kill -TERM "$PID_A"
wait "$PID_A"
expect "exit code after SIGTERM" "$?" 0
kill -TERM "$PID_B"
wait "$PID_B"
expect "exit code after SIGTERM (B)" "$?" 0
kill -TERM "$PID_C"
wait "$PID_C"
expect "exit code after SIGTERM (C)" "$?" 0
pids=()

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "all checks passed"
