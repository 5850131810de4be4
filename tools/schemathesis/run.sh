#!/usr/bin/env bash
# Runs schemathesis (`st run --checks all`) against a Hermes: the URL and API key given, or a
# `hermes dev` of its own on a free port against a fresh database. Exits non-zero on any finding.
#
#   tools/schemathesis/run.sh                       # builds nothing; uses target/debug/hermes
#   HERMES_BIN=path/to/hermes tools/schemathesis/run.sh
#   HERMES_URL=http://127.0.0.1:8080 HERMES_API_KEY=hms_... tools/schemathesis/run.sh
#
# Extra arguments go to `st run` (e.g. --max-examples 100 --seed 1).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
python3 "$here/../ensure_venv.py" "$here"

if [ -z "${HERMES_URL:-}" ]; then
  bin="${HERMES_BIN:-$here/../../target/debug/hermes}"
  pg="${HERMES_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
  db="hermes_st_$$"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  log="$(mktemp)"
  DATABASE_URL="$pg/$db" HERMES_LISTEN="127.0.0.1:$port" HERMES_MOCK_RECEIPT_DELAY_MS=20 \
    "$bin" dev >"$log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; rm -f "$log"' EXIT
  for _ in $(seq 120); do
    grep -q 'API key' "$log" && break
    kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.5
  done
  HERMES_URL="http://127.0.0.1:$port"
  HERMES_API_KEY="$(grep -oE 'hms_[0-9a-f]+' "$log" | head -n1)"
fi

# schemathesis keeps a cache in `.schemathesis/` of its working directory: not in the tree.
cd "${TMPDIR:-/tmp}"
"$venv/bin/st" run "$HERMES_URL/openapi.json" \
  --checks all \
  --header "Authorization: Bearer $HERMES_API_KEY" \
  --max-examples "${ST_MAX_EXAMPLES:-30}" \
  --no-color \
  --generation-database none \
  "$@"
