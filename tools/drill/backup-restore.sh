#!/usr/bin/env bash
# The backup and restore drill (docs/runbooks/backup-restore.md, "The drill"), on this machine:
#
#   1. a source Postgres cluster with zero-loss continuous archiving: pg_receivewal streams its WAL
#      into an archive directory as a synchronous standby, so no commit is acknowledged before its
#      WAL is on the archive's disk;
#   2. the mock provider (behind a recording proxy: the provider's own ledger of every send) and
#      Hermes on that cluster, and a workload of two-step cascades (SMS, then email) whose
#      recipients make steps succeed, fail, fall back, hang or time out;
#   3. a base backup taken while cascades are in flight, and more messages after it;
#   4. the source cluster destroyed while cascades are still in flight, Hermes killed with it;
#   5. a fresh cluster on another port restored from the base backup plus every archived WAL
#      segment, `hermes verify` on it, and Hermes started on it;
#   6. the checks: every message acknowledged (202) is in the restored log; the requests the crash
#      cut off, sent again with their Idempotency-Key, are accepted (once); every message reaches a
#      terminal status; the provider got no attempt twice and no recipient twice on a channel;
#      every send the provider got is known to the restored log; nothing is parked; the log
#      verifies intact. It prints the measured RPO and RTO, and exits non-zero with the reason
#      when a check fails.
#
# Run it from anywhere, as root (it runs the clusters as `postgres`, as Debian's tools do), with
# PostgreSQL 15's Debian packages and python3 installed and a built Hermes:
#
#   tools/drill/backup-restore.sh            # HERMES_BIN defaults to target/debug/hermes
#
# It leaves nothing behind: its processes, clusters (hermes-drill-src, hermes-drill-restore) and
# temporary directory go when it exits, and a run that was killed is cleaned up by the next one.
# DRILL_KEEP=1 keeps the temporary directory (logs, archive, ledgers) for a look afterwards.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERMES_BIN=${HERMES_BIN:-$REPO/target/debug/hermes}

# The newest installed PostgreSQL, as .ci/run starts it.
PG_VERSION=${DRILL_PG_VERSION:-$(ls /etc/postgresql | sort -V | tail -n1)}
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
SRC_CLUSTER=hermes-drill-src
RESTORE_CLUSTER=hermes-drill-restore
# Ports off every default (Postgres 5432, Hermes 8080, the mock 8090); the main cluster is never
# touched.
SRC_PORT=${DRILL_SRC_PORT:-5441}
RESTORE_PORT=${DRILL_RESTORE_PORT:-5442}
HERMES_PORT=${DRILL_HERMES_PORT:-18481}
MOCK_PORT=${DRILL_MOCK_PORT:-18482}
PROXY_PORT=${DRILL_PROXY_PORT:-18483}
# What a run started (process ids with their start times, its directory), so that the next run
# can clean up after one that was killed before its own cleanup ran.
STATE_FILE=${DRILL_STATE_FILE:-/tmp/hermes-drill.state}

ARCHIVER_NAME=drill_archiver # pg_receivewal's application_name, named as the synchronous standby
SLOT=drill_archive
# Long enough that a good share of the cascades wait for a receipt when the cluster dies.
RECEIPT_DELAY_MS=1500
SUBMIT_RATE=40 # messages per second, from 4 clients
ACCEPTED_BEFORE_BACKUP=120
ACCEPTED_AFTER_BACKUP=160
TERMINAL_DEADLINE_S=120

WORK=""
PIDS=()
FAILED_STEP=""

log() { printf '[drill %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
  printf '[drill %s] FAILED: %s\n' "$(date +%H:%M:%S)" "$*" >&2
  exit 1
}
now() { date +%s.%N; }
# Seconds from $1 to $2 (seconds since the epoch), to a tenth.
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# The same to the millisecond.
milliseconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# Prefix that runs a command as the clusters' owner. setpriv execs it (no forked parent in
# between) and the prefix is a plain command, not a function (a function run with & is a subshell
# around the command), so a background process's $! is the process itself and a signal reaches it.
AS_POSTGRES=(env HOME=/var/lib/postgresql setpriv --reuid=postgres --regid=postgres --init-groups --)

# wait_for DESCRIPTION TIMEOUT_S COMMAND...: polls COMMAND until it succeeds; fails the drill,
# naming what it waited for, when TIMEOUT_S pass first.
wait_for() {
  local what=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "timed out after ${timeout}s waiting for: $what"
    fi
    sleep 0.2
  done
}

# --- bookkeeping and cleanup -------------------------------------------------------------------

# A process's start time (clock ticks since boot): with the pid it names the process, so a pid
# the system reused for something else is never signalled.
start_time() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null; }

remember() {
  local pid=$1 started
  started=$(start_time "$pid")
  PIDS+=("$pid $started")
  echo "pid $pid $started" >>"$STATE_FILE"
}

# Stops the process if it is still the one that was started (TERM, then KILL after 5 s).
stop_process() {
  local pid=$1 started=$2
  [ -n "$started" ] && [ "$(start_time "$pid")" = "$started" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    [ "$(start_time "$pid")" = "$started" ] || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

drop_cluster() {
  local name=$1
  if pg_lsclusters -h | awk '{ print $1, $2 }' | grep -qx "$PG_VERSION $name"; then
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$name" stop -m immediate >/dev/null 2>&1 || true
    pg_dropcluster --stop "$PG_VERSION" "$name"
  fi
  # pg_dropcluster removes the files it made, not the drill's conf.d/drill.conf.
  rm -rf "/etc/postgresql/$PG_VERSION/$name"
}

# Whatever a previous run left: its processes, its directory, its clusters.
clean_leftovers() {
  if [ -f "$STATE_FILE" ]; then
    local kind a b
    while read -r kind a b; do
      case $kind in
        pid) stop_process "$a" "$b" ;;
        dir) [[ $a == /tmp/hermes-drill.* ]] && rm -rf "$a" ;;
      esac
    done <"$STATE_FILE"
    rm -f "$STATE_FILE"
  fi
  drop_cluster "$SRC_CLUSTER"
  drop_cluster "$RESTORE_CLUSTER"
}

# After a failure: the end of each log, and the warnings and errors of Hermes's (whose info lines
# would bury them), without colours.
show_logs() {
  local f lines
  for f in "$WORK"/*.log /var/log/postgresql/postgresql-"$PG_VERSION"-hermes-drill-*.log; do
    [ -s "$f" ] || continue
    case $f in
      */hermes-*.log) lines=$(grep -E 'WARN|ERROR|panicked|^Error' "$f" | tail -n 15) ;;
      *) lines=$(tail -n 15 "$f") ;;
    esac
    [ -n "$lines" ] || continue
    printf '\n--- %s\n%s\n' "$f" "$lines" | sed 's/\x1b\[[0-9;]*m//g' >&2
  done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  if [ "$status" -ne 0 ] && [ -n "$WORK" ]; then
    [ -n "$FAILED_STEP" ] && echo "the drill stopped during: $FAILED_STEP" >&2
    show_logs
  fi
  local entry
  for entry in "${PIDS[@]}"; do
    # shellcheck disable=SC2086 # "pid start_time", split on purpose
    stop_process $entry
  done
  drop_cluster "$SRC_CLUSTER"
  drop_cluster "$RESTORE_CLUSTER"
  if [ -n "$WORK" ]; then
    if [ "${DRILL_KEEP:-}" = 1 ]; then
      echo "kept $WORK" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  rm -f "$STATE_FILE"
  exit "$status"
}

step() {
  FAILED_STEP=$*
  log "$*"
}

# --- preconditions -----------------------------------------------------------------------------

port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_prerequisites() {
  [ -x "$HERMES_BIN" ] || die "no Hermes binary at $HERMES_BIN (build it, or set HERMES_BIN)"
  local tool
  for tool in pg_createcluster pg_ctlcluster pg_dropcluster pg_lsclusters psql python3 curl setpriv; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
  done
  for tool in pg_basebackup pg_receivewal pg_verifybackup; do
    [ -x "$PG_BIN/$tool" ] || die "$PG_BIN/$tool is not installed (Debian's postgresql-$PG_VERSION)"
  done
  local port
  for port in "$SRC_PORT" "$RESTORE_PORT" "$HERMES_PORT" "$MOCK_PORT" "$PROXY_PORT"; do
    if port_answers "$port"; then
      die "port $port is taken (the DRILL_*_PORT variables choose others)"
    fi
  done
}

# --- the clusters ------------------------------------------------------------------------------

# A new cluster with trust authentication on localhost (the drill's clusters only) and the
# settings in $2 (postgresql.conf lines), left stopped.
create_cluster() {
  local name=$1 port=$2 settings=$3
  pg_createcluster "$PG_VERSION" "$name" --port "$port" -- --auth-local=trust --auth-host=trust >/dev/null
  # Debian's postgresql.conf includes conf.d; the settings stay in /etc, out of the data directory,
  # so none of the source's (the synchronous standby above all) travel with its base backup.
  printf '%s\n' "$settings" >"/etc/postgresql/$PG_VERSION/$name/conf.d/drill.conf"
}

start_cluster() { pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$1" start; }

psql_at() {
  local port=$1
  shift
  psql -X -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -Atq "$@"
}

create_source_cluster() {
  step "source cluster $SRC_CLUSTER on port $SRC_PORT, archiving synchronously to $WORK/archive/wal"
  # Every commit waits until pg_receivewal has flushed its WAL into the archive (remote flush):
  # an acknowledged write is in the archive before the client hears of it, so the restore loses
  # nothing acknowledged (RPO 0). The price: while no archiver is connected, commits wait.
  create_cluster "$SRC_CLUSTER" "$SRC_PORT" "wal_level = replica
synchronous_standby_names = '$ARCHIVER_NAME'
synchronous_commit = on"
  start_cluster "$SRC_CLUSTER"
  wait_for "the source cluster to answer" 30 psql_at "$SRC_PORT" -d postgres -c 'select 1'
}

source_archiver_is_sync() {
  [ "$(psql_at "$SRC_PORT" -d postgres -c \
    "select count(*) from pg_stat_replication
     where application_name = '$ARCHIVER_NAME' and sync_state = 'sync'")" = 1 ]
}

start_wal_archiver() {
  mkdir -p "$WORK/archive/wal"
  chown -R postgres:postgres "$WORK/archive"
  local conninfo="host=127.0.0.1 port=$SRC_PORT user=postgres application_name=$ARCHIVER_NAME"
  # The slot keeps the source from recycling WAL the archiver has not written yet.
  "${AS_POSTGRES[@]}" "$PG_BIN/pg_receivewal" -d "$conninfo" --slot "$SLOT" --create-slot
  # --synchronous: flush each write and report the flush at once, which is what lets it be the
  # synchronous standby; --no-loop: exit when the source goes away instead of retrying.
  "${AS_POSTGRES[@]}" "$PG_BIN/pg_receivewal" -d "$conninfo" --slot "$SLOT" --synchronous --no-loop \
    -D "$WORK/archive/wal" >"$WORK/pg_receivewal.log" 2>&1 &
  remember $!
  RECEIVEWAL_PID=$!
  wait_for "pg_receivewal to stream as the synchronous standby" 30 source_archiver_is_sync
}

take_base_backup() {
  step "base backup while cascades are in flight ($(accepted_count) messages accepted so far)"
  BACKUP_STARTED=$(now)
  # -X none: the backup's WAL comes from the archive, as it would in a real restore from last
  # night's base backup; -c fast: checkpoint at once rather than spread over minutes.
  "${AS_POSTGRES[@]}" "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$SRC_PORT" -U postgres \
    -D "$WORK/archive/base" -X none -c fast >"$WORK/pg_basebackup.log" 2>&1 ||
    die "pg_basebackup failed: $(tail -n 3 "$WORK/pg_basebackup.log")"
  BACKUP_DONE=$(now)
  ACCEPTED_AT_BACKUP=$(accepted_count)
  log "base backup done in $(seconds "$BACKUP_STARTED" "$BACKUP_DONE") s ($ACCEPTED_AT_BACKUP messages accepted)"
}

cluster_data_dir() {
  pg_lsclusters -h | awk -v v="$PG_VERSION" -v n="$1" '$1 == v && $2 == n { print $6 }'
}

# The failure: the source cluster dies at once (no shutdown checkpoint, as in a power loss) and is
# dropped with its data directory; the Hermes on it is killed too (its host is gone).
destroy_source() {
  step "destroying the source cluster with cascades in flight"
  # The workload's clients are sending at the moment of the crash: a request the dying cluster
  # answered with 202 is acknowledged and must survive; one it did not answer is sent again later.
  refusals_so_far_are_none
  local data postmaster
  data=$(cluster_data_dir "$SRC_CLUSTER")
  postmaster=$(head -n 1 "$data/postmaster.pid")
  # SIGQUIT to the postmaster is an immediate shutdown (what `pg_ctl stop -m immediate` sends),
  # sent here rather than through pg_ctlcluster so that the crash's time is the signal's.
  CRASH_AT=$(now)
  kill -QUIT "$postmaster"
  # (wait: reaped here, so bash reports no "Killed" job.)
  { kill -KILL "$HERMES_PID" && wait "$HERMES_PID"; } 2>/dev/null || true
  touch "$WORK/stop"
  wait_for "the source postmaster to exit" 15 process_gone "$postmaster"
  stop_workload
  # pg_receivewal exits by itself when its source is gone (--no-loop), keeping the segment it was
  # writing as .partial.
  wait_for "pg_receivewal to exit after the source went away" 15 process_gone "$RECEIVEWAL_PID"
  drop_cluster "$SRC_CLUSTER"
  ACCEPTED_AT_CRASH=$(accepted_count)
  log "source destroyed; $ACCEPTED_AT_CRASH messages were acknowledged," \
    "$((ACCEPTED_AT_CRASH - ACCEPTED_AT_BACKUP)) of them after the backup"
}

process_gone() { ! kill -0 "$1" 2>/dev/null; }

# Restores the base backup into a new cluster and replays every archived WAL record: no recovery
# target, so recovery ends at the end of the archive and the cluster promotes itself.
restore_cluster() {
  step "restoring into $RESTORE_CLUSTER on port $RESTORE_PORT"
  RESTORE_STARTED=$(now)
  # The backup is whole (every file as its manifest says); its WAL is checked by the replay.
  "${AS_POSTGRES[@]}" "$PG_BIN/pg_verifybackup" --no-parse-wal --quiet "$WORK/archive/base" ||
    die "pg_verifybackup found the base backup damaged"
  # The segment pg_receivewal was writing when the source died holds everything up to the last
  # acknowledged commit, but is named .partial; restore_command asks for the plain name.
  local partial
  for partial in "$WORK"/archive/wal/*.partial; do
    [ -e "$partial" ] || continue
    cp "$partial" "${partial%.partial}"
    chown postgres:postgres "${partial%.partial}"
  done
  create_cluster "$RESTORE_CLUSTER" "$RESTORE_PORT" "restore_command = 'cp $WORK/archive/wal/%f %p'"
  CLUSTER_CREATED=$(now)
  local data
  data=$(cluster_data_dir "$RESTORE_CLUSTER")
  [ -d "$data" ] || die "no data directory for $RESTORE_CLUSTER"
  find "$data" -mindepth 1 -delete
  cp -a "$WORK/archive/base/." "$data/"
  touch "$data/recovery.signal"
  chown -R postgres:postgres "$data"
  chmod 700 "$data"
  start_cluster "$RESTORE_CLUSTER"
  wait_for "the restored cluster to finish recovery and promote" 90 restored_is_promoted
  RESTORED_AT=$(now)
  # The log as restored, before the restored Hermes adds to it: its last position and event time.
  read -r RESTORED_POSITION LAST_EVENT_AT < <(psql_at "$RESTORE_PORT" -d hermes -F ' ' -c \
    "select max(position), extract(epoch from max(recorded_at)) from events")
  local replayed
  replayed=$(psql_at "$RESTORE_PORT" -d postgres -c \
    "select round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$(backup_start_lsn)') / 1048576.0, 1)")
  log "restored and promoted in $(seconds "$RESTORE_STARTED" "$RESTORED_AT") s" \
    "($replayed MiB of WAL replayed from the backup's start)"
}

# The WAL position the base backup starts from (its backup_label).
backup_start_lsn() {
  awk '/^START WAL LOCATION:/ { print $4 }' "$WORK/archive/base/backup_label"
}

restored_is_promoted() {
  [ "$(psql_at "$RESTORE_PORT" -d postgres -c 'select pg_is_in_recovery()')" = f ]
}

# --- the mock provider, its ledger, and Hermes -------------------------------------------------

start_provider() {
  step "mock provider on $MOCK_PORT, behind a recording proxy on $PROXY_PORT"
  # The mock outlives both Hermes processes, as a real provider would: it keeps retrying the
  # receipts the dead Hermes never took, and its counters span the crash.
  HERMES_MOCK_RECEIPT_DELAY_MS=$RECEIPT_DELAY_MS HERMES_MOCK_PROVIDER_SECRET=$MOCK_SECRET \
    "$HERMES_BIN" mock-provider --listen "127.0.0.1:$MOCK_PORT" >"$WORK/mock-provider.log" 2>&1 &
  remember $!
  # The mock counts resends of one attempt id but cannot show a step sent again under a new
  # attempt id (what a restore that lost a dispatch would do): the proxy writes down every send.
  python3 "$WORK/drill.py" proxy --listen "$PROXY_PORT" --upstream "$MOCK_PORT" \
    --ledger "$WORK/sends.jsonl" >"$WORK/proxy.log" 2>&1 &
  remember $!
  wait_for "the mock provider" 30 curl -fsS "http://127.0.0.1:$MOCK_PORT/stats"
  wait_for "the recording proxy" 30 curl -fsS "http://127.0.0.1:$PROXY_PORT/stats"
}

# hermes_on PORT: sets HERMES to the Hermes command line against the drill's database on PORT,
# with only the drill's settings (none of the caller's Kafka, Redis or tracing). An array run as a
# simple command, so that `"${HERMES[@]}" serve &` gives the pid of Hermes itself (env execs it),
# not of a subshell around it.
hermes_on() {
  local port=$1
  HERMES=(env -u KAFKA_BROKERS -u REDIS_URL -u REDIS_URL_FILE -u DATABASE_URL_FILE -u HERMES_ROLES
    -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT -u HERMES_ADMIN_TOKEN
    DATABASE_URL="postgres://postgres@127.0.0.1:$port/hermes"
    HERMES_SECRET_KEY="$SECRET_KEY"
    HERMES_LISTEN="127.0.0.1:$HERMES_PORT"
    HERMES_MOCK_PROVIDER_URL="http://127.0.0.1:$PROXY_PORT"
    HERMES_MOCK_PROVIDER_SECRET="$MOCK_SECRET"
    HERMES_LOG_CHECKPOINT_EVERY_MS=2000
    RUST_LOG="${RUST_LOG:-info,sqlx=warn}"
    "$HERMES_BIN")
}

hermes_ready() { [ "$(curl -fsS "http://127.0.0.1:$HERMES_PORT/readyz")" = ready ]; }

# Starts `hermes serve` on the cluster at PORT (same listen address, so the mock's retried
# receipts reach whichever Hermes is up) and waits for /readyz.
start_hermes() {
  local port=$1 logfile=$2
  hermes_on "$port"
  "${HERMES[@]}" serve --mock-provider >"$logfile" 2>&1 &
  HERMES_PID=$!
  remember "$HERMES_PID"
  wait_for "Hermes to answer /readyz" 90 hermes_ready
}

create_tenant() {
  hermes_on "$SRC_PORT"
  "${HERMES[@]}" migrate >"$WORK/migrate.log" 2>&1 ||
    die "hermes migrate failed: $(tail -n 3 "$WORK/migrate.log")"
  "${HERMES[@]}" tenant create --name drill --json >"$WORK/tenant.json"
  python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])' <"$WORK/tenant.json" >"$WORK/api_key"
}

# --- the workload ------------------------------------------------------------------------------

start_workload() {
  step "workload: two-step cascades at $SUBMIT_RATE msg/s"
  python3 "$WORK/drill.py" submit --url "http://127.0.0.1:$HERMES_PORT" --key-file "$WORK/api_key" \
    --rate "$SUBMIT_RATE" --workers 4 --accepted "$WORK/accepted.tsv" --refused "$WORK/refused.tsv" \
    --stop-file "$WORK/stop" >"$WORK/submit.log" 2>&1 &
  WORKLOAD_PID=$!
  remember "$WORKLOAD_PID"
}

stop_workload() {
  touch "$WORK/stop"
  wait_for "the workload's clients to stop" 30 process_gone "$WORKLOAD_PID"
}

accepted_count() {
  if [ -f "$WORK/accepted.tsv" ]; then wc -l <"$WORK/accepted.tsv"; else echo 0; fi
}
accepted_at_least() { [ "$(accepted_count)" -ge "$1" ]; }

# Before the crash every request must be accepted: a refusal means the workload is wrong, and the
# drill would prove nothing about it.
refusals_so_far_are_none() {
  if [ -s "$WORK/refused.tsv" ]; then
    die "Hermes refused workload requests before the crash: $(head -n 3 "$WORK/refused.tsv")"
  fi
}

# --- the checks --------------------------------------------------------------------------------

verify_log() {
  local label=$1
  hermes_on "$RESTORE_PORT"
  "${HERMES[@]}" verify >"$WORK/verify-$label.log" 2>&1 ||
    die "hermes verify ($label) did not find the restored log intact: $(tail -n 5 "$WORK/verify-$label.log")"
  log "hermes verify ($label): $(tail -n 1 "$WORK/verify-$label.log")"
}

# RPO in acknowledged messages: every id answered 202 must be a message in the log as restored.
# Also counts the cascades the crash caught in flight (accepted, not ended), which the restored
# Hermes has to finish.
check_acknowledged_messages() {
  step "checking that every acknowledged message is in the restored log"
  psql_at "$RESTORE_PORT" -d hermes -c \
    "select stream_id from events where event_type = 'MessageAccepted' and position <= $RESTORED_POSITION" \
    >"$WORK/restored-messages.txt"
  LOST=$(python3 "$WORK/drill.py" lost --accepted "$WORK/accepted.tsv" \
    --restored "$WORK/restored-messages.txt")
  IN_FLIGHT=$(psql_at "$RESTORE_PORT" -d hermes -c "
    select count(*) from events accepted
    where accepted.event_type = 'MessageAccepted' and accepted.position <= $RESTORED_POSITION
      and not exists (
        select 1 from events ended
        where ended.stream_id = accepted.stream_id and ended.position <= $RESTORED_POSITION
          and ended.event_type in
            ('MessageCompleted', 'MessageFailed', 'MessageExpired', 'MessageCancelled'))")
  log "$LOST acknowledged messages missing; $IN_FLIGHT cascades were in flight at the crash"
}

# The requests that got no 202 at the crash (cut off, or a 5xx from a Hermes whose database was
# gone), sent again as a client would: with the same Idempotency-Key.
retry_cut_off_requests() {
  step "sending the requests that failed at the crash again, with their Idempotency-Key"
  if [ ! -s "$WORK/refused.tsv" ]; then
    RETRIED="no request failed"
    return
  fi
  RETRIED=$(python3 "$WORK/drill.py" retry --url "http://127.0.0.1:$HERMES_PORT" --key-file "$WORK/api_key" \
    --refused "$WORK/refused.tsv" --accepted "$WORK/resent.tsv") ||
    die "the restored Hermes refused a request sent again: $RETRIED"
  log "$RETRIED"
}

# await_terminal WHAT FILE: follows the messages in FILE to a terminal status, within the deadline.
await_terminal() {
  step "waiting for the $1 messages to reach a terminal status (at most ${TERMINAL_DEADLINE_S}s)"
  python3 "$WORK/drill.py" await-terminal --url "http://127.0.0.1:$HERMES_PORT" \
    --key-file "$WORK/api_key" --accepted "$2" --deadline "$TERMINAL_DEADLINE_S" ||
    die "$1 messages did not reach a terminal status (above)"
}

# No attempt sent twice (the mock's own count) and no step sent twice under two attempts, across
# the crash; every send the provider got is an attempt of the restored log.
check_sends() {
  step "checking the provider's sends against the restored log"
  local stats
  stats=$(curl -fsS "http://127.0.0.1:$MOCK_PORT/stats")
  python3 -c 'import json, sys
stats = json.loads(sys.argv[1])
if stats["duplicates"]:
    sys.exit("the mock provider got these attempts more than once: %s" % stats["duplicates"])
print("mock provider: %(sends)d sends, %(attempts)d attempts, no duplicates" % stats)' "$stats" ||
    die "an attempt was sent twice"
  psql_at "$RESTORE_PORT" -d hermes -F $'\t' -c \
    "select payload->>'attempt_id', stream_id, payload->>'channel'
     from events where event_type = 'AttemptDispatched'" \
    >"$WORK/restored-dispatches.tsv"
  python3 "$WORK/drill.py" sends --ledger "$WORK/sends.jsonl" --dispatched "$WORK/restored-dispatches.tsv" ||
    die "the provider's sends do not match the restored log (above)"
}

# Every event is counted by a log checkpoint (each checkpoint counts the events since the one
# before), so the second `hermes verify` covers the restored Hermes's own events too.
checkpoint_covers_log() {
  [ "$(psql_at "$RESTORE_PORT" -d hermes -c \
    "select (select coalesce(sum(events), 0) from log_checkpoints) >= (select count(*) from events)")" = t ]
}

check_nothing_parked() {
  hermes_on "$RESTORE_PORT"
  "${HERMES[@]}" parked list >"$WORK/parked.jsonl"
  if [ -s "$WORK/parked.jsonl" ]; then
    die "the restored Hermes parked events it could not handle: $(head -n 3 "$WORK/parked.jsonl")"
  fi
}

report() {
  local rto_total
  rto_total=$(seconds "$CRASH_AT" "$READY_AT")
  echo
  echo "RPO: $LOST acknowledged messages lost," \
    "last event $(milliseconds "$LAST_EVENT_AT" "$CRASH_AT") s before the crash"
  echo "RTO: $rto_total s from the crash to Hermes ready on the restored cluster" \
    "(dead source torn down $(seconds "$CRASH_AT" "$RESTORE_STARTED") s," \
    "new cluster $(seconds "$RESTORE_STARTED" "$CLUSTER_CREATED") s," \
    "backup copy+WAL replay $(seconds "$CLUSTER_CREATED" "$RESTORED_AT") s," \
    "hermes verify $(seconds "$RESTORED_AT" "$VERIFIED_AT") s," \
    "Hermes start $(seconds "$VERIFIED_AT" "$READY_AT") s)"
  echo "All $ACCEPTED_AT_CRASH acknowledged messages" \
    "($((ACCEPTED_AT_CRASH - ACCEPTED_AT_BACKUP)) after the base backup, $IN_FLIGHT in flight at the crash)" \
    "terminal $(seconds "$CRASH_AT" "$ALL_TERMINAL_AT") s after the crash; nothing sent twice."
  echo "Failed at the crash: $RETRIED."
}

# --- the helper for HTTP and the ledgers (python3, standard library only) ----------------------

write_helper() {
  cat >"$WORK/drill.py" <<'PY'
"""The drill's HTTP side: the recording proxy, the workload's clients, and the checks."""
import argparse
import http.client
import itertools
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TERMINAL = {"delivered", "read", "failed", "expired", "cancelled"}
# Answer headers the proxy writes itself rather than copying.
HOP_HEADERS = {"connection", "content-length", "transfer-encoding", "date", "server"}


def proxy(args):
    """Forwards everything to the mock; writes each send down (before forwarding, as the mock
    counts a send before deciding on it)."""
    ledger = open(args.ledger, "a", buffering=1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.command == "POST" and self.path.split("?")[0] == "/messages":
                try:
                    send = json.loads(body or b"{}")
                except ValueError:
                    send = {}
                line = {k: send.get(k) for k in ("attempt_id", "message_id", "channel", "to")}
                line["at"] = time.time()
                with lock:
                    ledger.write(json.dumps(line) + "\n")
            upstream = http.client.HTTPConnection("127.0.0.1", args.upstream, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (OSError, http.client.HTTPException):
                # A hanging send (a 0006 number) outlives its caller: nobody is left to answer.
                pass
            finally:
                upstream.close()

        do_GET = forward
        do_POST = forward

    server = ThreadingHTTPServer(("127.0.0.1", args.listen), Handler)
    server.daemon_threads = True
    server.serve_forever()


def message(n):
    """Message n of the workload: its recipients pick what each step does (README, "The mock
    provider"); every cascade is SMS (4 s), then email (4 s), and ends within seconds."""
    kind = n % 20
    phone, email = "4242", "drill"
    if kind in (8, 9, 10):
        phone = "0009"  # undelivered: falls back to email
    elif kind in (11, 12):
        phone = "0001"  # rejected at send: falls back to email
    elif kind in (13, 14):
        phone = "0008"  # no receipt: the step times out (after a status lookup), then email
    elif kind == 15:
        phone = "0006"  # the send hangs: in doubt, never sent again; email at the timeout
    elif kind in (16, 17):
        phone, email = "0009", "silent"  # both steps end without delivery: failed
    elif kind in (18, 19):
        phone, email = "0008", "bounce"
    return {
        "to": {"phone": f"+1555{n:06d}{phone}", "email": f"{email}+{n}@example.com"},
        "content": {"text": f"Drill message {n}", "email": {"subject": "Drill"}},
        "cascade": [
            {"channel": "sms", "timeout_seconds": 4},
            {"channel": "email", "timeout_seconds": 4},
        ],
        "reference": f"drill-{n}",
    }


def post(url, key, n):
    """POSTs message n with its Idempotency-Key: (status, body, replayed)."""
    request = urllib.request.Request(
        url + "/v1/messages",
        data=json.dumps(message(n)).encode(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"drill-{n}",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            replayed = answer.headers.get("Idempotent-Replayed") == "true"
            return answer.status, json.load(answer), replayed
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace"), False
    except (OSError, ValueError) as err:
        return None, repr(err), False


def one_line(text):
    return " ".join(str(text).split())


def submit(args):
    """Clients posting messages until the stop file appears. Each 202 is written down at once
    (id, time, n): those are the acknowledged messages the restore must keep. Every other answer
    (none, at the crash) is written down too, to be retried after the restore."""
    key = open(args.key_file).read().strip()
    accepted = open(args.accepted, "a", buffering=1)
    refused = open(args.refused, "a", buffering=1)
    numbers = itertools.count()
    lock = threading.Lock()
    interval = args.workers / args.rate

    def client():
        while not os.path.exists(args.stop_file):
            started = time.monotonic()
            n = next(numbers)
            status, body, _ = post(args.url, key, n)
            with lock:
                if status == 202:
                    accepted.write(f"{body['id']}\t{time.time():.6f}\t{n}\n")
                else:
                    refused.write(f"{time.time():.6f}\t{status}\t{n}\t{one_line(body)}\n")
            time.sleep(max(0.0, interval - (time.monotonic() - started)))

    threads = [threading.Thread(target=client) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def retry(args):
    """Does what a client does with a request that got no 202 at the crash (cut off, or refused by
    a Hermes whose database was gone): sends it again, with the same Idempotency-Key, to the
    restored Hermes. One whose message was committed before the crash is answered as a replay
    (the same id); the others are accepted anew. Each is then followed to its end, and the send
    check sees a message accepted twice as a recipient sent twice."""
    key = open(args.key_file).read().strip()
    accepted = open(args.accepted, "a", buffering=1)
    replayed = fresh = 0
    failures = []
    with open(args.refused) as f:
        numbers = sorted({int(line.split("\t")[2]) for line in f if line.strip()})
    for n in numbers:
        status, body, was_replayed = post(args.url, key, n)
        if status != 202:
            failures.append(f"request {n}: {status} {one_line(body)[:300]}")
            continue
        accepted.write(f"{body['id']}\t{time.time():.6f}\t{n}\n")
        if was_replayed:
            replayed += 1
        else:
            fresh += 1
    print(f"{len(numbers)} request(s) without a 202, sent again with their Idempotency-Key: "
          f"{replayed} answered as replays (committed before the crash), {fresh} accepted anew")
    for failure in failures:
        print("  not accepted: " + failure)
    if failures:
        sys.exit(1)


def accepted_ids(path):
    with open(path) as f:
        return [line.split("\t")[0] for line in f if line.strip()]


def lost(args):
    """Prints how many acknowledged messages the restored log lacks (and names them on stderr)."""
    with open(args.restored) as f:
        restored = {line.strip() for line in f}
    missing = [i for i in accepted_ids(args.accepted) if i not in restored]
    for i in missing[:20]:
        print(f"acknowledged but not restored: {i}", file=sys.stderr)
    print(len(missing))


def await_terminal(args):
    """Follows every acknowledged message through GET /v1/messages/{id} until each is terminal."""
    key = open(args.key_file).read().strip()
    host, port = args.url.removeprefix("http://").split(":")
    pending = set(accepted_ids(args.accepted))
    ended, last = {}, {}
    deadline = time.monotonic() + args.deadline
    conn = None
    while pending and time.monotonic() < deadline:
        for message_id in sorted(pending):
            try:
                conn = conn or http.client.HTTPConnection(host, int(port), timeout=10)
                conn.request("GET", f"/v1/messages/{message_id}", headers={"Authorization": f"Bearer {key}"})
                answer = conn.getresponse()
                body = answer.read()
            except (OSError, http.client.HTTPException):
                conn = None
                continue
            if answer.status != 200:
                last[message_id] = f"HTTP {answer.status}: {body[:200]!r}"
                continue
            view = json.loads(body)
            last[message_id] = view
            if view["status"] in TERMINAL:
                ended[message_id] = view["status"]
                pending.discard(message_id)
        if pending:
            time.sleep(1)
    counts = Counter(ended.values())
    print("terminal: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if pending:
        print(f"{len(pending)} acknowledged messages not terminal after {args.deadline}s:")
        for message_id in sorted(pending)[:10]:
            print(f"  {message_id}: {json.dumps(last.get(message_id))[:600]}")
        sys.exit(1)


def sends(args):
    """The provider's ledger against the restored log's dispatches."""
    with open(args.ledger) as f:
        ledger = [json.loads(line) for line in f if line.strip()]
    dispatched = {}
    with open(args.dispatched) as f:
        for line in f:
            attempt_id, message_id, channel = line.rstrip("\n").split("\t")
            dispatched[attempt_id] = (message_id, channel)
    per_attempt = Counter(s["attempt_id"] for s in ledger)
    # Each workload message has recipients of its own: a step sent twice, under two attempts or
    # even two messages (a retried request accepted twice), shows as one recipient sent twice.
    per_step = Counter((s["channel"], s["to"]) for s in ledger)
    twice = [a for a, n in per_attempt.items() if n > 1]
    step_twice = [k for k, n in per_step.items() if n > 1]
    unknown = [s for s in ledger if s["attempt_id"] not in dispatched]
    # Recorded, then the process died before the call: in doubt after the restore, never sent.
    never_sent = len(set(dispatched) - set(per_attempt))
    print(
        f"provider ledger: {len(ledger)} sends for {len({s['message_id'] for s in ledger})} messages; "
        f"restored log: {len(dispatched)} dispatches ({never_sent} never reached the provider); "
        f"attempts sent twice: {len(twice)}, "
        f"steps sent twice: {len(step_twice)}, sends unknown to the restored log: {len(unknown)}"
    )
    for a in twice[:10]:
        print(f"  attempt sent {per_attempt[a]} times: {a}")
    for c, to in step_twice[:10]:
        messages = sorted({s["message_id"] for s in ledger if (s["channel"], s["to"]) == (c, to)})
        print(f"  {c} to {to} sent {per_step[(c, to)]} times, for messages {messages}")
    for s in unknown[:10]:
        print(f"  sent, but not in the restored log: {json.dumps(s)}")
    if twice or step_twice or unknown:
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("proxy")
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--upstream", type=int, required=True)
    p.add_argument("--ledger", required=True)
    p = commands.add_parser("submit")
    p.add_argument("--url", required=True)
    p.add_argument("--key-file", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--accepted", required=True)
    p.add_argument("--refused", required=True)
    p.add_argument("--stop-file", required=True)
    p = commands.add_parser("retry")
    p.add_argument("--url", required=True)
    p.add_argument("--key-file", required=True)
    p.add_argument("--refused", required=True)
    p.add_argument("--accepted", required=True)
    p = commands.add_parser("lost")
    p.add_argument("--accepted", required=True)
    p.add_argument("--restored", required=True)
    p = commands.add_parser("await-terminal")
    p.add_argument("--url", required=True)
    p.add_argument("--key-file", required=True)
    p.add_argument("--accepted", required=True)
    p.add_argument("--deadline", type=float, required=True)
    p = commands.add_parser("sends")
    p.add_argument("--ledger", required=True)
    p.add_argument("--dispatched", required=True)
    args = parser.parse_args()
    commands = {
        "proxy": proxy,
        "submit": submit,
        "retry": retry,
        "lost": lost,
        "await-terminal": await_terminal,
        "sends": sends,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
PY
}

# --- the drill ---------------------------------------------------------------------------------

main() {
  [ "$(id -u)" = 0 ] || die "run as root: the drill creates and drops Postgres clusters"
  clean_leftovers
  check_prerequisites
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  WORK=$(mktemp -d /tmp/hermes-drill.XXXXXX)
  chmod 755 "$WORK"
  echo "dir $WORK" >>"$STATE_FILE"
  write_helper
  SECRET_KEY=$("$HERMES_BIN" provider generate-key)
  MOCK_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  log "Hermes $HERMES_BIN; work directory $WORK"

  create_source_cluster
  start_wal_archiver
  start_provider
  step "Hermes on the source cluster"
  create_tenant
  start_hermes "$SRC_PORT" "$WORK/hermes-source.log"

  start_workload
  wait_for "$ACCEPTED_BEFORE_BACKUP messages accepted" 60 accepted_at_least "$ACCEPTED_BEFORE_BACKUP"
  take_base_backup
  wait_for "$ACCEPTED_AFTER_BACKUP more messages accepted after the backup" 60 \
    accepted_at_least "$((ACCEPTED_AT_BACKUP + ACCEPTED_AFTER_BACKUP))"
  destroy_source

  restore_cluster
  step "hermes verify on the restored cluster, before Hermes runs on it"
  verify_log before-start
  VERIFIED_AT=$(now)
  step "Hermes on the restored cluster"
  start_hermes "$RESTORE_PORT" "$WORK/hermes-restored.log"
  READY_AT=$(now)
  log "Hermes ready $(seconds "$CRASH_AT" "$READY_AT") s after the crash"

  check_acknowledged_messages
  [ "$LOST" = 0 ] || die "$LOST acknowledged messages are missing from the restored log"
  await_terminal acknowledged "$WORK/accepted.tsv"
  ALL_TERMINAL_AT=$(now)
  retry_cut_off_requests
  if [ -s "$WORK/resent.tsv" ]; then
    await_terminal "sent again" "$WORK/resent.tsv"
  fi
  check_sends
  check_nothing_parked
  # Once more, now that the restored Hermes has written its own events and checkpoints.
  wait_for "a log checkpoint covering the restored Hermes's events" 30 checkpoint_covers_log
  verify_log after-the-cascades
  FAILED_STEP=""
  report
}

main "$@"
