#!/usr/bin/env bash
# Webhooks' cost and throughput: runs `hermes serve --mock-provider` on a fresh database, with (on)
# or without (off) one endpoint of the bench tenant subscribed to every notice type, at a local
# receiver (tools/bench/webhook_receiver.py, answers 204); drives it with `hermes bench --mode e2e`
# and reports the end-to-end numbers, the CPU per delivered message (Hermes and Postgres), and with
# webhooks on: the notices received, and the deliveries per second once the outbox drains.
#
#   tools/bench/webhooks.sh on|off [RATE]        # RATE e.g. 1000; unpaced without it
#   HERMES_BIN=path/to/hermes PG=postgres://postgres@127.0.0.1:5432 tools/bench/webhooks.sh on
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${HERMES_BIN:-$here/../../target/release/hermes}"
pg="${PG:-postgres://postgres@127.0.0.1:5432}"
mode="${1:?on or off}"
rate="${2:-}"
db="hermes_wh_$$"
port=18099
receiver_port=18199
psql -q "$pg/postgres" -c "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="$pg/$db?sslmode=disable"
"$bin" migrate >/dev/null 2>&1
key=$("$bin" tenant create --name bench --json | jq -r .api_key)
python3 "$here/webhook_receiver.py" "$receiver_port" > "/tmp/$db.receiver" &
receiver=$!
HERMES_WEBHOOK_ALLOW_PRIVATE=true HERMES_MOCK_RECEIPT_DELAY_MS=10 HERMES_LISTEN=127.0.0.1:$port \
  RUST_LOG=warn "$bin" serve --mock-provider >/dev/null 2>&1 &
pid=$!
cleanup() {
  kill $pid $receiver 2>/dev/null || true
  wait $pid 2>/dev/null || true
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null
  rm -f "/tmp/$db.receiver" "/tmp/$db.json"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
if [ "$mode" = on ]; then
  curl -sf "http://127.0.0.1:$port/v1/webhook-endpoints" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d "{\"url\": \"http://127.0.0.1:$receiver_port/hooks\"}" >/dev/null
fi
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local t=0; for p in $(pgrep -x postgres); do t=$((t + $(ticks "$p"))); done; echo "$t"; }
h0=$(ticks $pid); p0=$(pg_ticks)
"$bin" bench --url "http://127.0.0.1:$port" --api-key "$key" --mode e2e --clients 32 --duration 10s \
  ${rate:+--rate "$rate"} --json > "/tmp/$db.json" 2>/dev/null
h1=$(ticks $pid); p1=$(pg_ticks)
# The deliveries still queued go out; the receiver's first and last arrivals give the rate.
drained_in=0
if [ "$mode" = on ]; then
  start=$(date +%s.%N)
  for _ in $(seq 600); do
    left=$(psql -Atq "$DATABASE_URL" -c "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
    [ "$left" = 0 ] && break
    sleep 0.5
  done
  drained_in=$(echo "$(date +%s.%N) - $start" | bc)
fi
kill -TERM $receiver; wait $receiver 2>/dev/null || true
hz=$(getconf CLK_TCK)
jq -c --argjson h $((h1 - h0)) --argjson p $((p1 - p0)) --argjson hz "$hz" \
  --argjson drained "$drained_in" --slurpfile r "/tmp/$db.receiver" --arg mode "$mode" '
  (.e2e.delivered + .accept.warmup_sent) as $n
  | {webhooks: $mode, delivered_per_s: .e2e.msgs_per_s, p50_ms: .e2e.latency_ms.p50, p99_ms: .e2e.latency_ms.p99,
     hermes_cpu_us_per_message: ($h * 1000000 / $hz / $n | floor),
     postgres_cpu_us_per_message: ($p * 1000000 / $hz / $n | floor),
     notices_received: $r[0].received,
     deliveries_per_s: (if $r[0].received > 1 then ($r[0].received / ($r[0].last - $r[0].first)) | floor else null end),
     outbox_drained_after_load_s: $drained}' "/tmp/$db.json"
