#!/usr/bin/env bash
# monitor_checks.sh QFORGE_EXE METRICS_MD - monitoring of a live
# `qforge serve`: the system sampler reads a scripted fake /proc
# (QF_PROC_ROOT), so memory pressure and per-core use are set by this script;
# alerts fire and clear on them (GET /alerts in its documented shape,
# qforge_alert_active gauges, the log, the --alert-cmd command with the alert
# as JSON on stdin); error-rate and latency alerts fire on real requests that
# time out; --alert settings are checked; the dashboard shows the new panels;
# and every metric family the server renders is documented in
# docs/metrics.md with its type (and every row marked `serve` is rendered).
# Loopback only; every server and client is bounded in time.
# QF_SERVE_EXE overrides the binary (a development build).
set -u
exe=${QF_SERVE_EXE:-$1}
doc=$2
command -v jq >/dev/null 2>&1 || { echo "skipped: jq not found"; exit 77; }
. "$(dirname "$0")/lib.sh"

# ---- the fake /proc (files replaced by rename, never read half-written) ----
P=$tmp/proc
mkdir -p "$P/self" "$P/pressure"
put() { printf '%b' "$2" >"$P/$1.tmp" && mv "$P/$1.tmp" "$P/$1"; }
psi() { put pressure/memory "some avg10=$1 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"; }
put stat "cpu  200 0 0 200 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0 0 0\ncpu1 100 0 0 100 0 0 0 0 0 0\nintr 1 2 3\n"
put meminfo "MemTotal:       16777216 kB\nMemFree:         1000000 kB\nMemAvailable:    4194304 kB\n"
put self/status "Name:\tqforge\nVmRSS:\t    1024 kB\n"
put self/io "rchar: 100\nwchar: 200\nsyscr: 1\nsyscw: 1\nread_bytes: 300\nwrite_bytes: 400\n"
psi 10.00

# start NAME ARGS... : start a server, set URL_<NAME> and PID_<NAME>
start() {
  local name=$1
  shift
  QF_PROC_ROOT=$P "$exe" serve -m "$tmp/tiny.gguf" --port 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
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
  printf -v "PID_$name" '%s' "$pid"
}

KEY=mon-key-1
AUTH="Authorization: Bearer $KEY"
# the alert command writes its stdin to a file named after the alert and state
start M --api-key "$KEY" --alert clear_for=0 --alert imbalance_window=1 \
  --alert-cmd "cat > '$tmp/cmd.'\"\$QFORGE_ALERT.\$QFORGE_ALERT_STATE\"'.json'"
M=$URL_M

metrics() { curl -s -m 10 -H "$AUTH" "$M/metrics"; }
metric() { metrics | sed -n "s/^$1 //p"; }
alerts() { curl -s -m 10 -H "$AUTH" "$M/alerts"; }
# wait_for SECONDS CMD... : until CMD succeeds
wait_for() {
  local end=$((SECONDS + $1))
  shift
  while [ $SECONDS -le $end ]; do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}
has_alert() { alerts | jq -e --arg n "$1" '.alerts | map(.name) | index($n) != null' >/dev/null 2>&1; }
no_alert() { ! has_alert "$1"; }

echo "# settings"
"$exe" serve -m "$tmp/tiny.gguf" --port 0 --alert bogus=1 >/dev/null 2>"$tmp/bad.err"
rc=$?
expect "unknown --alert key refused" "$([ $rc -ne 0 ] && echo refused)" refused
contains "the message names the key" "$(cat "$tmp/bad.err")" "unknown key 'bogus'"
"$exe" serve -m "$tmp/tiny.gguf" --port 0 --alert memory_pressure=150% >/dev/null 2>"$tmp/bad.err"
expect "out-of-range threshold refused" "$([ $? -ne 0 ] && echo refused)" refused
contains "the message gives the range" "$(cat "$tmp/bad.err")" "out of range"

echo "# /alerts and the system metrics"
expect "/alerts needs the key" "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$M/alerts")" 401
expect "no alert at rest" "$(alerts)" '{"alerts":[]}'
expect "memory pressure from PSI avg10" "$(metric qforge_memory_pressure_ratio)" 0.10000000000000001
expect "pressure source psi" "$(metric 'qforge_memory_pressure_source{source="psi"}')" 1
expect "total memory from meminfo" "$(metric qforge_memory_total_bytes)" 17179869184
expect "available memory" "$(metric qforge_memory_available_bytes)" 4294967296
expect "rss from status" "$(metric qforge_process_rss_bytes)" 1048576
expect "storage reads from io" "$(metric qforge_process_io_storage_read_bytes_total)" 300
expect "cores" "$(metric qforge_cpu_cores)" 2
expect "no gpu on this build" "$(metric qforge_gpu_present)" 0
expect "alert gauge at 0" "$(metric 'qforge_alert_active{alert="memory_pressure"}')" 0
expect "alert threshold published" "$(metric 'qforge_alert_threshold{alert="response_latency"}')" 120

echo "# per-core use and core_imbalance"
# core 0 busy for all 100 new ticks, core 1 idle for all of them
put stat "cpu  300 0 0 300 0 0 0 0 0 0\ncpu0 200 0 0 100 0 0 0 0 0 0\ncpu1 100 0 0 200 0 0 0 0 0 0\n"
if wait_for 5 has_alert core_imbalance; then ok "core_imbalance fires"; else bad "core_imbalance fires"; fi
expect "core 0 saturated" "$(metric 'qforge_cpu_core_utilization{core="0"}')" 1
expect "core 1 idle" "$(metric 'qforge_cpu_core_utilization{core="1"}')" 0
expect "all cores" "$(metric qforge_cpu_utilization)" 0.5
contains "imbalance message" "$(alerts)" "1 of 2 cores saturated"

echo "# memory pressure overload"
psi 99.00
if wait_for 5 has_alert memory_pressure; then ok "memory_pressure fires"; else bad "memory_pressure fires"; fi
a=$(alerts)
expect "alert object keys" "$(echo "$a" | jq -c '.alerts[] | select(.name=="memory_pressure") | keys')" \
  '["message","name","severity","since_unix","threshold","value"]'
expect "top-level keys" "$(echo "$a" | jq -c 'keys')" '["alerts"]'
expect "value" "$(echo "$a" | jq '.alerts[] | select(.name=="memory_pressure") | .value')" 0.99
expect "threshold" "$(echo "$a" | jq '.alerts[] | select(.name=="memory_pressure") | .threshold')" 0.95
expect "severity" "$(echo "$a" | jq -r '.alerts[] | select(.name=="memory_pressure") | .severity')" critical
contains "message says what and what to change" \
  "$(echo "$a" | jq -r '.alerts[] | select(.name=="memory_pressure") | .message')" \
  "memory pressure at 99% (threshold 95%): lower --parallel"
since=$(echo "$a" | jq '.alerts[] | select(.name=="memory_pressure") | .since_unix | floor')
now=$(date +%s)
expect "since_unix is recent wall time" "$([ $((now - since)) -ge 0 ] && [ $((now - since)) -lt 30 ] && echo yes)" yes
expect "qforge_alert_active 1" "$(metric 'qforge_alert_active{alert="memory_pressure"}')" 1
expect "fired counted" "$(metric 'qforge_alerts_fired_total{alert="memory_pressure"}')" 1
contains "logged" "$(cat "$tmp/M.err")" "alert memory_pressure (critical): memory pressure at 99%"
f=$tmp/cmd.memory_pressure.firing.json
if wait_for 5 test -s "$f"; then ok "alert command ran"; else bad "alert command ran"; fi
expect "command got the alert on stdin" "$(jq -r '.name + " " + .state + " " + (.value|tostring)' "$f" 2>&1)" \
  "memory_pressure firing 0.99"

echo "# the overload ends"
psi 1.00
if wait_for 5 no_alert memory_pressure; then ok "memory_pressure clears"; else bad "memory_pressure clears"; fi
expect "qforge_alert_active back to 0" "$(metric 'qforge_alert_active{alert="memory_pressure"}')" 0
f=$tmp/cmd.memory_pressure.resolved.json
if wait_for 5 test -s "$f"; then ok "alert command ran on clear"; else bad "alert command ran on clear"; fi
expect "resolved state on stdin" "$(jq -r '.state' "$f" 2>&1)" resolved
contains "clear logged" "$(cat "$tmp/M.err")" "alert memory_pressure cleared"

echo "# no PSI: pressure from available/total"
rm -f "$P/pressure/memory"
wait_for 5 sh -c "curl -s -m 5 -H '$AUTH' '$M/metrics' | grep -q '^qforge_memory_pressure_source{source=\"available\"} 1'"
expect "fallback source" "$(metric 'qforge_memory_pressure_source{source="available"}')" 1
expect "fallback ratio 1 - 4/16" "$(metric qforge_memory_pressure_ratio)" 0.75
expect "old source off" "$(metric 'qforge_memory_pressure_source{source="psi"}')" 0

echo "# error_rate and response_latency on real requests"
start E --timeout 0.2 --alert error_min_requests=3 --alert response_latency=0.1 \
  --alert cache_hit_rate=off --alert clear_for=0
LONG='{"model":"tiny","prompt":"x","max_tokens":4000,"ignore_eos":true}'
for i in 1 2 3 4; do
  c=$(curl -s -m 30 -o /dev/null -w '%{http_code}' "$URL_E/v1/completions" -d "$LONG")
  [ "$c" = 504 ] || bad "request $i timed out with 504 (got $c)"
done
ealerts() { curl -s -m 10 "$URL_E/alerts"; }
has_e() { ealerts | jq -e --arg n "$1" '.alerts | map(.name) | index($n) != null' >/dev/null 2>&1; }
if wait_for 5 has_e error_rate; then ok "error_rate fires on 504s"; else bad "error_rate fires on 504s"; fi
if wait_for 5 has_e response_latency; then ok "response_latency fires"; else bad "response_latency fires"; fi
e=$(ealerts)
expect "error rate value" "$(echo "$e" | jq '.alerts[] | select(.name=="error_rate") | .value')" 1
contains "error message counts" "$(echo "$e" | jq -r '.alerts[] | select(.name=="error_rate") | .message')" \
  "100% of requests failed"
expect "404 of a model is no generation error" \
  "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$URL_E/v1/models/nope")" 404

echo "# dashboard"
d=$(curl -s -m 10 "$M/")
contains "dashboard reads /alerts" "$d" "fetch('/alerts'"
contains "dashboard has a per-core panel" "$d" 'id="cores"'
contains "dashboard shows memory pressure" "$d" "qforge_memory_pressure_ratio"
contains "dashboard shows RSS" "$d" "qforge_process_rss_bytes"
if command -v node >/dev/null 2>&1; then
  printf '%s' "$d" | sed -n '/<script>/,/<\/script>/p' | sed '1d;$d' >"$tmp/dash.js"
  if node --check "$tmp/dash.js" 2>"$tmp/node.err"; then ok "dashboard script parses"; else
    bad "dashboard script parses ($(head -3 "$tmp/node.err"))"; fi
fi

echo "# docs/metrics.md against /metrics"
metrics | sed -n 's/^# TYPE \([^ ]*\) \([a-z]*\)$/\1 \2/p' | sort >"$tmp/rendered"
grep '^| `qforge_' "$doc" | awk -F'|' '{gsub(/[` ]/, "", $2); gsub(/ /, "", $3); if ($5 ~ /serve/) print $2, $3}' |
  sort >"$tmp/documented"
n=$(wc -l <"$tmp/rendered")
expect "server renders many families" "$([ "$n" -ge 35 ] && echo yes)" yes
undoc=$(comm -23 "$tmp/rendered" "$tmp/documented" | tr '\n' ' ')
expect "every rendered family documented with its type" "$undoc" ""
missing=$(comm -13 "$tmp/rendered" "$tmp/documented" | tr '\n' ' ')
expect "every documented serve family rendered" "$missing" ""
for al in memory_pressure response_latency cache_hit_rate error_rate core_imbalance kv_pool_full; do
  contains "alert $al documented" "$(cat "$doc")" "| \`$al\` |"
  contains "alert $al has a gauge" "$(metrics)" "qforge_alert_active{alert=\"$al\"}"
done

echo "# shutdown"
kill -TERM "$PID_M"
wait "$PID_M"
expect "exit code after SIGTERM" "$?" 0
kill -TERM "$PID_E"
wait "$PID_E"
expect "exit code after SIGTERM (E)" "$?" 0

echo "$fails failed"
[ "$fails" -eq 0 ]
