#!/usr/bin/env bash
# HTTP throughput of the local API: wrk against numina-local (release build, a table and
# bucket of its own) on 127.0.0.1, in three scenarios: list conversations, get one
# conversation (50 messages), append a message (each request a new clientMessageId). Each
# runs twice: with the cache warm (CACHE_URL set, reads pre-warmed) and without a cache
# (CACHE_URL unset). Around every run it samples the CPU time of moto, redis-server and
# numina-local, to show where the time goes (CPU seconds per 1,000 requests, and shares).
# Results: docs/benchmarks/throughput.json, and a table. Fails on any non-2xx response or
# socket error. Expects moto and redis running and scripts/env.sh sourced (scripts/bench.sh
# does both); by hand:
#   export MOTO_PORT=4582 REDIS_PORT=6396; scripts/services.sh start tput; source scripts/env.sh
#   THROUGHPUT_SECONDS=5 bench/throughput.sh; scripts/services.sh stop tput
# THROUGHPUT_SECONDS per run (10), THROUGHPUT_THREADS (2), THROUGHPUT_CONNECTIONS (8),
# THROUGHPUT_PORT (3170; the streaming URL gets the next port). The cache's timeout is 1 s
# here (CACHE_TIMEOUT_MS; 50 ms deployed) and its breaker opens for 1 s (CACHE_BREAKER_SECONDS;
# 30 s deployed): on a loaded machine a 50 ms stall trips the breaker and the rest of a "warm"
# run would go without the cache. The results count the gateway's cache failures per run.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
DURATION=${THROUGHPUT_SECONDS:-10}
THREADS=${THROUGHPUT_THREADS:-2}
CONNECTIONS=${THROUGHPUT_CONNECTIONS:-8}
PORT=${THROUGHPUT_PORT:-3170}
BASE="http://127.0.0.1:$PORT"
: "${MOTO_PORT:?source scripts/env.sh}" "${REDIS_PORT:?source scripts/env.sh}"
: "${CACHE_URL:?source scripts/env.sh (it sets CACHE_URL)}"
HZ=$(getconf CLK_TCK)
DIR=.local/throughput
RUN="tput-$(date +%s)-$$"
export TABLE_NAME="$RUN" ATTACHMENTS_BUCKET="$RUN"
export CACHE_TIMEOUT_MS=${CACHE_TIMEOUT_MS:-1000} CACHE_BREAKER_SECONDS=${CACHE_BREAKER_SECONDS:-1}
mkdir -p "$DIR"
rm -f "$DIR/results.jsonl"

if ! command -v wrk >/dev/null; then
  echo "throughput: installing wrk"
  apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi

one_pid() { # the single process whose command line matches $1
  local pids
  pids=$(pgrep -f "$1" || true)
  if [ -z "$pids" ] || [ "$(wc -w <<<"$pids")" -ne 1 ]; then
    echo "throughput: want one process like '$1', found: ${pids:-none}" >&2
    exit 1
  fi
  echo "$pids"
}
MOTO_PID=$(one_pid "moto_server\.py $MOTO_PORT\$")
REDIS_PID=$(one_pid "^redis-server .*:$REDIS_PORT\$")

echo "throughput: building numina-local (release)"
cargo build --quiet --release -p local --bin numina-local

SERVER=
stop_gateway() {
  [ -n "$SERVER" ] || return 0
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=
}
trap stop_gateway EXIT
trap 'exit 130' INT TERM

LOG=
start_gateway() { # warm | off
  local log="$DIR/gateway-$1.log"
  LOG=$log
  if [ "$1" = off ]; then
    env -u CACHE_URL target/release/numina-local serve --port "$PORT" --stream-port $((PORT + 1)) >"$log" 2>&1 &
  else
    target/release/numina-local serve --port "$PORT" --stream-port $((PORT + 1)) >"$log" 2>&1 &
  fi
  SERVER=$!
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    kill -0 "$SERVER" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.2
  done
  echo "throughput: the gateway did not open port $PORT" >&2
  exit 1
}

# CPU clock ticks (utime + stime, all threads) of a process.
proc_ticks() {
  local line
  local -a f
  read -r line <"/proc/$1/stat"
  read -r -a f <<<"${line##*) }" # fields from the 3rd on: utime is the 14th, stime the 15th
  echo $((f[11] + f[12]))
}
machine_busy() {
  local _cpu user nice system _idle _iowait irq softirq steal _rest
  read -r _cpu user nice system _idle _iowait irq softirq steal _rest </proc/stat
  echo $((user + nice + system + irq + softirq + steal))
}
redis_counts() {
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO stats | tr -d '\r' |
    awk -F: '/^keyspace_hits:/ {h = $2} /^keyspace_misses:/ {m = $2} END {print h + 0, m + 0}'
}
cache_failures() { # the gateway's warnings that it went on without the cache
  grep -c "cache unavailable" "$LOG" || true
}
sample() {
  echo "$(proc_ticks "$MOTO_PID") $(proc_ticks "$REDIS_PID") $(proc_ticks "$SERVER") $(machine_busy)" \
    "$(redis_counts) $(cache_failures)"
}
# Waits (at most 30 s) until moto has been nearly idle for a second: the stream functions
# may still be working through the writes before.
settle() {
  local a b
  for _ in $(seq 1 30); do
    a=$(proc_ticks "$MOTO_PID")
    sleep 1
    b=$(proc_ticks "$MOTO_PID")
    [ $((b - a)) -lt $((HZ / 10)) ] && return 0
  done
  echo "throughput: moto still busy after 30 s; measuring anyway" >&2
}

api() { # METHOD PATH [BODY]: the response body; fails on an error status
  local -a data=()
  [ $# -lt 3 ] || data=(--data "$3")
  curl -sS --fail-with-body --max-time 10 -X "$1" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' "${data[@]}" "$BASE$2"
}
json_id() { python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }

# wrk's Lua: the summary as one JSON line (latencies in microseconds), and the append body.
cat >"$DIR/report.lua" <<'LUA'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('THROUGHPUT_JSON {"requests": %.0f, "durationMicros": %.0f, ' ..
    '"bytes": %.0f, "connectErrors": %.0f, "readErrors": %.0f, "writeErrors": %.0f, ' ..
    '"timeouts": %.0f, "non2xx": %.0f, "p50Micros": %.0f, "p90Micros": %.0f, ' ..
    '"p99Micros": %.0f, "meanMicros": %.1f, "maxMicros": %.0f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.timeout, e.status, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
LUA
cat - "$DIR/report.lua" >"$DIR/append.lua" <<'LUA'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = os.getenv("THROUGHPUT_RUN")
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  n = n + 1
  local body = string.format('{"role": "user", "content": "throughput message %d of thread %d", ' ..
    '"clientMessageId": "%s-%d-%d"}', n, tid, prefix, tid, n)
  return wrk.format(nil, nil, nil, body)
end
LUA

# Runs wrk on $3 (a path), scenario $1 with Lua script $2; appends the result.
measure() {
  local scenario=$1 lua=$2 path=$3 out="$DIR/wrk-$1-$CACHE.txt" before after ticks
  before=$(sample)
  ticks=$(
    THROUGHPUT_RUN="$RUN-$CACHE" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
      --timeout 5s -s "$lua" -H "Authorization: Bearer $TOKEN" "$BASE$path" >"$out" 2>&1 ||
      { cat "$out" >&2; exit 1; }
    # wrk's CPU: this subshell's waited-for children (fields 16 and 17, cutime and cstime).
    read -r line <"/proc/$BASHPID/stat"
    read -r -a f <<<"${line##*) }"
    echo $((f[13] + f[14]))
  )
  after=$(sample)
  python3 bench/throughput.py result --scenario "$scenario" --cache "$CACHE" --wrk-output "$out" \
    --before "$before" --after "$after" --wrk-ticks "$ticks" --ticks-per-second "$HZ" \
    >>"$DIR/results.jsonl"
}
warm_up() { # a few requests first, so that the run starts with the cache (and connections) warm
  for _ in $(seq 1 5); do api GET "$1" >/dev/null; done
}

TOKEN=$(target/release/numina-local token --user throughput-user)
START=$(date +%s)
CONVERSATION=
for CACHE in warm off; do
  echo "throughput: gateway with cache $CACHE, $DURATION s per scenario, -t$THREADS -c$CONNECTIONS"
  start_gateway "$CACHE"
  if [ -z "$CONVERSATION" ]; then
    for i in $(seq 1 20); do
      id=$(api POST /conversations "{\"title\": \"Throughput conversation $i\"}" | json_id)
      CONVERSATION=${CONVERSATION:-$id}
    done
    for i in $(seq 1 50); do
      role=user
      [ $((i % 2)) -eq 1 ] || role=assistant
      api POST "/conversations/$CONVERSATION/messages" \
        "{\"role\": \"$role\", \"content\": \"Seed message $i of the throughput benchmark.\", \"clientMessageId\": \"seed-$i\"}" >/dev/null
    done
    echo "  seeded 20 conversations, 50 messages in $CONVERSATION"
  fi
  settle
  warm_up /conversations
  measure list "$DIR/report.lua" /conversations
  warm_up "/conversations/$CONVERSATION"
  measure get "$DIR/report.lua" "/conversations/$CONVERSATION"
  measure append "$DIR/append.lua" "/conversations/$CONVERSATION/messages"
  stop_gateway
done
echo "throughput: done in $(($(date +%s) - START)) s"
python3 bench/throughput.py write --results "$DIR/results.jsonl" --out docs/benchmarks/throughput.json \
  --seconds "$DURATION" --connections "$CONNECTIONS" --threads "$THREADS" --cores "$(nproc)" \
  --cache-timeout-ms "$CACHE_TIMEOUT_MS" --cache-breaker-seconds "$CACHE_BREAKER_SECONDS"
