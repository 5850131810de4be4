#!/usr/bin/env bash
# Overload (issue 12): a burst far above what Hermes delivers, each message one SMS step with a
# 5 s timeout, then a count of how the messages ended. None may fail without an attempt: a step's
# timeout counts from its dispatch, not from the time it waited for a worker.
#
#   tools/bench/burst.sh [SECONDS]                       # the Postgres tail (default 10 s of load)
#   KAFKA_BROKERS=127.0.0.1:19092 tools/bench/burst.sh   # on Kafka (a topic of its own)
#   HERMES_BIN=path/to/hermes PG=postgres://postgres@127.0.0.1:5432 ... (defaults shown below)
#
# Load: wrk (Debian's package `wrk`), 64 connections on 2 threads, as fast as Hermes accepts.
# Prints one JSON object: accepted, how long the backlog took to drain, the end statuses, and
# the longest a message waited for its dispatch, and `failed_without_attempt` (must be 0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${HERMES_BIN:-$here/../../target/release/hermes}"
pg="${PG:-postgres://postgres@127.0.0.1:5432}"
seconds="${1:-10}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
run="$$"
db="hermes_burst_$run"
psql -q "$pg/postgres" -c "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="$pg/$db?sslmode=disable" RUST_LOG=warn
export HERMES_MOCK_RECEIPT_DELAY_MS=10 HERMES_LISTEN=127.0.0.1:8099
if [ -n "${KAFKA_BROKERS:-}" ]; then
  export HERMES_KAFKA_TOPIC="hermes.burst.$run" HERMES_KAFKA_GROUP_PREFIX="burst-$run"
  "$bin" kafka init >/dev/null 2>&1
fi
"$bin" migrate >/dev/null 2>&1
key=$("$bin" tenant create --name burst --json | jq -r .api_key)
"$bin" serve --mock-provider >/dev/null 2>&1 &
pid=$!
lua="$(mktemp --suffix .lua)"
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$lua"
      psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8099/readyz >/dev/null && break; sleep 0.1; done
cat >"$lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"to":{"phone":"+14155550100"},"content":{"text":"burst"},"cascade":[{"channel":"sms","timeout_seconds":5}]}'
EOF
wrk -t2 -c64 -d"${seconds}s" -s "$lua" http://127.0.0.1:8099/v1/messages >/dev/null
q() { psql -Atq "$DATABASE_URL" -c "$1"; }
accepted=$(q "SELECT count(*) FROM events WHERE event_type = 'MessageAccepted'")
start=$(date +%s)
# Drained: every accepted message has ended (its read-model row is terminal); 10 minutes at most.
until [ "$(q "SELECT count(*) FROM message_views WHERE status IN ('delivered','read','failed','expired','cancelled')")" -ge "$accepted" ] \
  || [ $(($(date +%s) - start)) -ge 600 ]; do
  sleep 0.5
done
drained=$(($(date +%s) - start))
statuses=$(q "SELECT coalesce(json_object_agg(status, n), '{}') FROM (SELECT status, count(*) n FROM message_views GROUP BY status) s")
unsent=$(q "SELECT count(*) FROM message_views v WHERE status = 'failed'
              AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = v.message_id AND e.event_type = 'AttemptDispatched')")
# The longest a message waited for its dispatch (its step's 5 s timeout starts only then).
waited=$(q "SELECT coalesce(round(extract(epoch FROM max(d.recorded_at - a.recorded_at))::numeric, 1), 0)
              FROM events a JOIN events d ON d.stream_id = a.stream_id AND d.event_type = 'AttemptDispatched'
             WHERE a.event_type = 'MessageAccepted'")
jq -nc --argjson waited "$waited" --argjson accepted "$accepted" --argjson s "$seconds" --argjson drained "$drained" \
  --argjson statuses "$statuses" --argjson unsent "$unsent" --arg transport "${KAFKA_BROKERS:+kafka}" '
  {transport: (if $transport == "" then "postgres" else $transport end), accepted: $accepted,
   accepted_per_s: ($accepted / $s | floor), drained_after_load_s: $drained,
   longest_wait_for_dispatch_s: $waited, statuses: $statuses, failed_without_attempt: $unsent}'
