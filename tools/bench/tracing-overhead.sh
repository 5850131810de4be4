#!/usr/bin/env bash
# What tracing costs: the same `hermes bench` run against `hermes serve --mock-provider` twice in
# one go, on fresh databases, first with no OTLP endpoint (no span is made), then with
# OTEL_EXPORTER_OTLP_ENDPOINT set (every request traced and exported, to a local sink that answers
# each batch). Prints each run and the ratio of their throughputs.
#
#   tools/bench/tracing-overhead.sh               # the accept path, 64 clients, 10 s
#   MODE=e2e CLIENTS=32 tools/bench/tracing-overhead.sh   # end to end; HERMES_BIN, PG as elsewhere
#   ON_ENV="OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1" ...  # sampled
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${HERMES_BIN:-$here/../../target/release/hermes}"
pg="${PG:-postgres://postgres@127.0.0.1:5432}"
mode="${MODE:-accept}"
sink_port=4318
python3 "$here/webhook_receiver.py" "$sink_port" >"/tmp/otlp-sink-$$.json" &
sink=$!
pid=
db=
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  [ -n "$db" ] && psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null
  kill "$sink" 2>/dev/null || true
  rm -f "/tmp/otlp-sink-$$.json"
}
trap cleanup EXIT

# run LABEL [VAR=value ...]: one server, one bench run; prints {run, msgs_per_s, p50_ms, p99_ms}.
run() {
  local label=$1
  shift
  db="hermes_tracing_$$_$label"
  psql -q "$pg/postgres" -c "CREATE DATABASE $db" >/dev/null
  export DATABASE_URL="$pg/$db?sslmode=disable"
  "$bin" migrate >/dev/null 2>&1
  local key
  key=$("$bin" tenant create --name bench --json | jq -r .api_key)
  env "$@" HERMES_MOCK_RECEIPT_DELAY_MS=10 HERMES_LISTEN=127.0.0.1:8097 RUST_LOG=warn \
    "$bin" serve --mock-provider >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8097/healthz >/dev/null && break; sleep 0.1; done
  "$bin" bench --url http://127.0.0.1:8097 --api-key "$key" --mode "$mode" \
    --clients "${CLIENTS:-64}" --duration "${DURATION:-10s}" --json 2>/dev/null |
    jq -c --arg run "$label" --arg mode "$mode" \
      '.[$mode] | {run: $run, msgs_per_s, p50_ms: .latency_ms.p50, p99_ms: .latency_ms.p99}'
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null
  db=
}

off=$(run off)
# shellcheck disable=SC2086
on=$(run on OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" OTEL_SERVICE_NAME=hermes-bench ${ON_ENV:-})
kill -TERM "$sink"
wait "$sink" 2>/dev/null || true
echo "$off"
echo "$on"
# The sink's count shows the spans went out (a batch is up to 512 spans).
jq -c --argjson off "$off" --argjson on "$on" \
  '{otlp_batches_received: .received,
    traced_over_untraced: (($on.msgs_per_s / $off.msgs_per_s) * 100 | round / 100)}' \
  "/tmp/otlp-sink-$$.json"
