#!/usr/bin/env bash
# End to end on Kafka with N worker processes: one `hermes serve --roles api,relay,timers`, N
# `--roles saga,projector`, a standalone mock provider, a fresh database and a topic of its own;
# drives it with `hermes bench --mode e2e` and prints throughput, latency and the CPU time of every
# Hermes process and of Postgres per delivered message (from /proc/<pid>/stat, warm-up included).
#
#   KAFKA_BROKERS=127.0.0.1:19092 tools/bench/kafka-workers.sh WORKERS [RATE]
#   HERMES_BIN=path/to/hermes PG=postgres://postgres@127.0.0.1:5432 ... (defaults shown below)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${HERMES_BIN:-$here/../../target/release/hermes}"
pg="${PG:-postgres://postgres@127.0.0.1:5432}"
: "${KAFKA_BROKERS:?set KAFKA_BROKERS to a running broker}"
workers="${1:?how many workers}"
rate="${2:-}"
run="$$"
db="hermes_kafka_bench_$run"
psql -q "$pg/postgres" -c "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="$pg/$db?sslmode=disable"
export KAFKA_BROKERS HERMES_KAFKA_TOPIC="hermes.bench.$run" HERMES_KAFKA_GROUP_PREFIX="bench-$run"
export HERMES_KAFKA_PARTITIONS=12 HERMES_KAFKA_SESSION_TIMEOUT_MS=6000 RUST_LOG=warn
export HERMES_MOCK_PROVIDER=true HERMES_MOCK_PROVIDER_URL=http://127.0.0.1:8098
export HERMES_MOCK_PROVIDER_SECRET="bench-$run" HERMES_MOCK_RECEIPT_DELAY_MS=10
export HERMES_PUBLIC_URL=http://127.0.0.1:8099
"$bin" migrate >/dev/null 2>&1
"$bin" kafka init >/dev/null 2>&1
key=$("$bin" tenant create --name bench --json | jq -r .api_key)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null
}
trap cleanup EXIT
"$bin" mock-provider --listen 127.0.0.1:8098 --secret "bench-$run" --receipt-delay-ms 10 >/dev/null 2>&1 &
pids+=($!)
HERMES_LISTEN=127.0.0.1:8099 "$bin" serve --roles api,relay,timers >/dev/null 2>&1 &
pids+=($!)
for i in $(seq "$workers"); do
  HERMES_LISTEN="127.0.0.1:$((8100 + i))" "$bin" serve --roles saga,projector >/dev/null 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do curl -sf http://127.0.0.1:8099/readyz >/dev/null && break; sleep 0.1; done
# Until every worker holds partitions of both groups (a joining member waits for the rebalance).
for _ in $(seq 300); do
  joined=0
  for i in $(seq "$workers"); do
    n=$(curl -sf "http://127.0.0.1:$((8100 + i))/metrics" | awk '/^hermes_kafka_assigned_partitions/ && $2 > 0' | wc -l)
    [ "$n" -ge 2 ] && joined=$((joined + 1))
  done
  [ "$joined" -eq "$workers" ] && break
  sleep 0.2
done
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hermes_ticks() { local t=0; for p in "${pids[@]:1}"; do t=$((t + $(ticks "$p"))); done; echo "$t"; }
pg_ticks() { local t=0; for p in $(pgrep -x postgres); do t=$((t + $(ticks "$p"))); done; echo "$t"; }
h0=$(hermes_ticks); p0=$(pg_ticks)
"$bin" bench --url http://127.0.0.1:8099 --api-key "$key" --mode e2e --clients 32 --duration 10s \
  ${rate:+--rate "$rate"} --json > "/tmp/$db.json" 2>/dev/null
h1=$(hermes_ticks); p1=$(pg_ticks)
hz=$(getconf CLK_TCK)
jq -c --argjson h $((h1 - h0)) --argjson p $((p1 - p0)) --argjson hz "$hz" --argjson w "$workers" '
  (.e2e.delivered + .accept.warmup_sent) as $n
  | {workers: $w, delivered_per_s: .e2e.msgs_per_s, p50_ms: .e2e.latency_ms.p50, p99_ms: .e2e.latency_ms.p99,
     hermes_cpu_us_per_message: ($h * 1000000 / $hz / $n | floor),
     postgres_cpu_us_per_message: ($p * 1000000 / $hz / $n | floor)}' "/tmp/$db.json"
rm -f "/tmp/$db.json"
