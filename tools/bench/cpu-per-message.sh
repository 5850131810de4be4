#!/usr/bin/env bash
# CPU per delivered message: runs `hermes serve --mock-provider` on a fresh database, drives it with
# `hermes bench --mode e2e`, and divides the CPU time Hermes and every Postgres process used over
# the run (from /proc/<pid>/stat, warm-up included) by the messages delivered.
#
#   tools/bench/cpu-per-message.sh [RATE]        # e.g. 1000; unpaced without it
#   HERMES_BIN=path/to/hermes PG=postgres://postgres@127.0.0.1:5432 tools/bench/cpu-per-message.sh 1000
#   DURATION=30s ROLES=api,saga,projector,timers tools/bench/cpu-per-message.sh   # longer; some roles
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${HERMES_BIN:-$here/../../target/release/hermes}"
pg="${PG:-postgres://postgres@127.0.0.1:5432}"
rate="${1:-}"
db="hermes_cpu_$$"
psql -q "$pg/postgres" -c "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="$pg/$db?sslmode=disable"
"$bin" migrate >/dev/null 2>&1
key=$("$bin" tenant create --name bench --json | jq -r .api_key)
env ${ROLES:+HERMES_ROLES="$ROLES"} HERMES_MOCK_RECEIPT_DELAY_MS=10 HERMES_LISTEN=127.0.0.1:8099 RUST_LOG=warn "$bin" serve --mock-provider >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8099/healthz >/dev/null && break; sleep 0.1; done
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local t=0; for p in $(pgrep -x postgres); do t=$((t + $(ticks "$p"))); done; echo "$t"; }
h0=$(ticks $pid); p0=$(pg_ticks)
"$bin" bench --url http://127.0.0.1:8099 --api-key "$key" --mode e2e --clients 32 --duration "${DURATION:-10s}" \
  ${rate:+--rate "$rate"} --json > "$db.json" 2>/dev/null
h1=$(ticks $pid); p1=$(pg_ticks)
hz=$(getconf CLK_TCK)
jq -c --argjson h $((h1 - h0)) --argjson p $((p1 - p0)) --argjson hz "$hz" '
  (.e2e.delivered + .accept.warmup_sent) as $n
  | {delivered_per_s: .e2e.msgs_per_s, p50_ms: .e2e.latency_ms.p50, p99_ms: .e2e.latency_ms.p99,
     hermes_cpu_us_per_message: ($h * 1000000 / $hz / $n | floor),
     postgres_cpu_us_per_message: ($p * 1000000 / $hz / $n | floor)}' "$db.json"
rm -f "$db.json"
