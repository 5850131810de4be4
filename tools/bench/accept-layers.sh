#!/usr/bin/env bash
# Where the accept path's time goes with every tenant layer on: runs `hermes serve --mock-provider`
# on a fresh database with a tenant whose switchable layers are all on (none refusing), drives it
# with `hermes bench --mode accept`, and prints the mean of each `hermes_accept_layer_seconds`
# layer (and auth) from /metrics, in microseconds per message.
#
#   tools/bench/accept-layers.sh            # HERMES_BIN, PG as in cpu-per-message.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${HERMES_BIN:-$here/../../target/release/hermes}"
pg="${PG:-postgres://postgres@127.0.0.1:5432}"
db="hermes_layers_$$"
psql -q "$pg/postgres" -c "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="$pg/$db?sslmode=disable"
"$bin" migrate >/dev/null 2>&1
created=$("$bin" tenant create --name layers --json)
key=$(jq -r .api_key <<<"$created")
id=$(jq -r .tenant_id <<<"$created")
"$bin" tenant settings "$id" '{"max_sms_segments": 10, "allowed_countries": ["US", "CA"],
  "rate_limit": {"per_second": 100000, "burst": 100000},
  "channel_rate_limits": {"sms": {"per_second": 100000, "burst": 100000}}}' >/dev/null
psql -q "$pg/$db" -c "INSERT INTO suppressions (tenant_id, channel, address, reason, source)
  VALUES ('$id', 'sms', '+14155559999', 'bench', 'operator');
  UPDATE tenants SET has_suppressions = true WHERE id = '$id'"
HERMES_MOCK_RECEIPT_DELAY_MS=10 HERMES_LISTEN=127.0.0.1:8098 RUST_LOG=warn "$bin" serve --mock-provider >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8098/healthz >/dev/null && break; sleep 0.1; done
"$bin" bench --url http://127.0.0.1:8098 --api-key "$key" --mode accept --clients 64 --duration 10s --json 2>/dev/null |
  jq -c '.accept | {msgs_per_s, errors}'
curl -s http://127.0.0.1:8098/metrics | awk '
  /^hermes_(accept_layer|auth)_seconds_(sum|count)/ {
    name = $1; sub(/_(sum|count)/, "", name); if ($1 ~ /_sum/) s[name] = $2; else c[name] = $2 }
  END { for (n in s) printf "%s %.1f us/message\n", n, s[n] / c[n] * 1e6 }'
