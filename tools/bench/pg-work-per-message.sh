#!/usr/bin/env bash
# Where Postgres's work goes per delivered message: runs `hermes serve --mock-provider` on a fresh
# database, drives it with `hermes bench --mode e2e --rate 600` for 10 s (below saturation, so the
# counts do not depend on how far behind it falls), then prints per message: commits, rows
# returned and fetched, rows written, buffer hits, the mean event row's size, events; and per
# table its sequential and index scans and rows inserted, updated, deleted (pg_stat_* counters,
# steadier on a noisy machine than throughput).
#
#   tools/bench/pg-work-per-message.sh                 # HERMES_BIN, PG as in cpu-per-message.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${HERMES_BIN:-$here/../../target/release/hermes}"
pg="${PG:-postgres://postgres@127.0.0.1:5432}"
db="hermes_pgwork_$$"
psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null
export DATABASE_URL="$pg/$db?sslmode=disable"
"$bin" migrate >/dev/null 2>&1
key=$("$bin" tenant create --name b --json | jq -r .api_key)
HERMES_MOCK_RECEIPT_DELAY_MS=10 HERMES_LISTEN=127.0.0.1:8095 RUST_LOG=warn "$bin" serve --mock-provider >/dev/null 2>&1 &
pid=$!
sleep 2
psql -q "$pg/$db" -c "SELECT pg_stat_reset()" >/dev/null
n=$("$bin" bench --url http://127.0.0.1:8095 --api-key "$key" --mode e2e --clients 32 --duration 10s --rate 600 --json 2>/dev/null | jq '.e2e.delivered + .accept.warmup_sent')
sleep 1
psql -At "$pg/$db" -c "SELECT 'msgs', $n UNION ALL SELECT 'commits/msg', round(xact_commit::numeric/$n,2) FROM pg_stat_database WHERE datname='$db' UNION ALL SELECT 'tup_returned/msg', round(tup_returned::numeric/$n,1) FROM pg_stat_database WHERE datname='$db' UNION ALL SELECT 'tup_fetched/msg', round(tup_fetched::numeric/$n,1) FROM pg_stat_database WHERE datname='$db' UNION ALL SELECT 'ins+upd+del/msg', round((tup_inserted+tup_updated+tup_deleted)::numeric/$n,1) FROM pg_stat_database WHERE datname='$db' UNION ALL SELECT 'blks_hit/msg', round(blks_hit::numeric/$n,1) FROM pg_stat_database WHERE datname='$db' UNION ALL SELECT 'event bytes', round(avg(pg_column_size(e.*))) FROM events e UNION ALL SELECT 'events/msg', round(count(*)::numeric/$n,2) FROM events"
psql -At "$pg/$db" -c "SELECT relname, seq_scan, idx_scan, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE coalesce(seq_scan,0)+coalesce(idx_scan,0)+n_tup_ins+n_tup_upd > 0 ORDER BY 3 DESC NULLS LAST"
kill $pid; wait $pid 2>/dev/null || true
psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db"
