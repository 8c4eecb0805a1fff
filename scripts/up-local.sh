#!/usr/bin/env bash
# Start Herald without Docker: local Postgres and Redis, then sink, api and one worker
# in the background. `make up` falls back to this when `docker info` fails.
#
# Every setting below is a default: a variable already set by the caller wins, e.g.
#   HERALD_BIND=127.0.0.1:8100 HERALD_SINK_PORT=5100 scripts/up-local.sh
# Postgres and Redis are provisioned (installed, started, database created) only when
# DATABASE_URL / REDIS_URL point at this machine; remote ones are used as they are.
#
# Logs and pid files go to .run/; stop everything with scripts/down-local.sh.
# With --services-only it only makes sure Postgres and Redis answer (what `make test`
# and CI need) and exits.
# Running it again restarts the Herald processes (it stops the old ones first).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.run"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="$TARGET_DIR/release"

HERALD_SINK_PORT="${HERALD_SINK_PORT:-5000}"
HERALD_SINK_SMTP_PORT="${HERALD_SINK_SMTP_PORT:-2525}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/herald}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export HERALD_BIND="${HERALD_BIND:-127.0.0.1:8000}"
export HERALD_API_KEYS="${HERALD_API_KEYS:-dev-key}"
export HERALD_PROVIDER_URL="${HERALD_PROVIDER_URL:-http://127.0.0.1:$HERALD_SINK_PORT}"
# The shipped `email` channel is SMTP: to the sink's SMTP receiver.
export HERALD_SMTP_URL="${HERALD_SMTP_URL:-smtp://127.0.0.1:$HERALD_SINK_SMTP_PORT}"
# Loopback only: the sink runs on 127.0.0.1, and nothing else private should be reachable.
export HERALD_ALLOWED_TARGETS="${HERALD_ALLOWED_TARGETS:-127.0.0.0/8}"
export HERALD_CONFIG_DIR="${HERALD_CONFIG_DIR:-$ROOT/config}"
export RUST_LOG="${RUST_LOG:-info}"
# The bank-link reminder waits an hour in production; ten seconds here, so the README's
# walkthrough shows its outcome.
export HERALD_BANK_LINK_REMINDER_DELAY="${HERALD_BANK_LINK_REMINDER_DELAY:-10s}"

log() { printf '==> %s\n' "$*"; }
die() { printf 'up-local: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    SUDO="sudo"
fi

APT_UPDATED=0
apt_install() {
    have apt-get || die "cannot install $*: no apt-get here; install them by hand"
    if [[ $APT_UPDATED -eq 0 ]]; then
        $SUDO apt-get update -q
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@"
}

# Prints "host port database" of a postgres:// URL (user, password and query dropped).
parse_pg_url() {
    local rest="${1#*://}"
    rest="${rest#*@}"
    local hostport="${rest%%/*}" db=""
    if [[ $rest == */* ]]; then
        db="${rest#*/}"
        db="${db%%\?*}"
    fi
    local host="${hostport%:*}" port="5432"
    if [[ $hostport == *:* ]]; then
        port="${hostport##*:}"
    fi
    printf '%s %s %s\n' "$host" "$port" "${db:-postgres}"
}

# Prints "host port" of a redis:// URL.
parse_redis_url() {
    local rest="${1#*://}"
    rest="${rest#*@}"
    rest="${rest%%/*}"
    local host="${rest%:*}" port="6379"
    if [[ $rest == *:* ]]; then
        port="${rest##*:}"
    fi
    printf '%s %s\n' "$host" "$port"
}

is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == "[::1]" ]]; }

# Waits up to $1 seconds for the command that follows to succeed.
wait_for() {
    local seconds="$1"
    shift
    local i
    for ((i = 0; i < seconds * 2; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

# ---- Postgres -----------------------------------------------------------------

pg_answers() { have pg_isready && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
pg_login() { PGCONNECT_TIMEOUT=5 psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; }

pg_cluster_version() {
    # Newest installed major version; Debian keeps one directory per version.
    find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1
}

# Herald connects as postgres without a password; a stock Debian cluster asks for one
# over TCP. Trust local connections only, inserted first so they match first.
allow_trust_logins() {
    local version="$1"
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    [[ -f $hba ]] || die "cannot log in as postgres on $PG_HOST:$PG_PORT and $hba is missing; set DATABASE_URL"
    log "allowing passwordless local logins in $hba"
    $SUDO sed -i '1i host all all ::1/128 trust' "$hba"
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    $SUDO sed -i '1i local all all trust' "$hba"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    wait_for 10 pg_login || die "still cannot log in as postgres on $PG_HOST:$PG_PORT"
}

ensure_postgres() {
    local version
    if pg_answers; then
        pg_login && return 0
        version="$(pg_cluster_version)"
        [[ -n $version ]] || die "PostgreSQL on $PG_HOST:$PG_PORT refuses a passwordless login as postgres and is not a local Debian cluster; set DATABASE_URL"
        allow_trust_logins "$version"
        return 0
    fi
    if ! have pg_ctlcluster; then
        log "installing PostgreSQL and Redis (apt-get)"
        apt_install postgresql redis-server
    fi
    version="$(pg_cluster_version)"
    if [[ -z $version ]]; then
        version="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1)"
        [[ -n $version ]] || die "PostgreSQL is installed but no server version was found"
    fi
    if [[ ! -d /etc/postgresql/$version/main ]]; then
        log "creating PostgreSQL $version cluster 'main'"
        $SUDO pg_createcluster "$version" main
    fi
    log "starting PostgreSQL $version cluster 'main'"
    # --skip-systemctl-redirect: containers and CI boxes have no systemd to ask.
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for 30 pg_answers || die "PostgreSQL did not come up on $PG_HOST:$PG_PORT"
    pg_login || allow_trust_logins "$version"
}

ensure_database() {
    local exists
    exists="$(psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc \
        "select 1 from pg_database where datname = '$PG_DB'")"
    if [[ $exists != 1 ]]; then
        log "creating database $PG_DB"
        createdb -w -h "$PG_HOST" -p "$PG_PORT" -U postgres "$PG_DB"
    fi
}

# ---- Redis --------------------------------------------------------------------

redis_answers() { have redis-cli && [[ $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

ensure_redis() {
    if redis_answers; then
        return 0
    fi
    have redis-server || apt_install redis-server
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    # No persistence: Herald rebuilds its queues from Postgres (contract §6). "-::1" binds
    # IPv6 loopback when the box has it, without failing when it does not (Redis 7).
    local args=(--daemonize yes --port "$REDIS_PORT" --save "" --appendonly no
        --logfile "$RUN_DIR/redis.log")
    if ! redis-server "${args[@]}" --bind 127.0.0.1 -::1; then
        # Redis 6 does not know the "-" prefix.
        redis-server "${args[@]}" --bind 127.0.0.1
    fi
    wait_for 15 redis_answers || die "Redis did not come up on 127.0.0.1:$REDIS_PORT (see $RUN_DIR/redis.log)"
}

# ---- Herald processes ---------------------------------------------------------

# start NAME COMMAND...: runs it detached, output in .run/NAME.log, pid in .run/NAME.pid.
start() {
    local name="$1"
    shift
    local launcher=()
    # Own session, so a Ctrl-C in the shell that ran `make up` does not reach them.
    # (A background job of a script is never a group leader, so setsid execs in place
    # and $! stays the program's pid.)
    if have setsid; then
        launcher=(setsid)
    fi
    "${launcher[@]}" "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
    echo "$!" >"$RUN_DIR/$name.pid"
}

# Fails (printing the log tail) if the process recorded for NAME has exited.
alive_or_die() {
    local name="$1" pid
    pid="$(cat "$RUN_DIR/$name.pid")"
    if ! kill -0 "$pid" 2>/dev/null; then
        printf 'up-local: %s exited; last lines of %s:\n' "$name" "$RUN_DIR/$name.log" >&2
        tail -n 30 "$RUN_DIR/$name.log" >&2 || true
        exit 1
    fi
}

api_healthy() { curl -fsS "http://$HERALD_BIND/healthz/live" >/dev/null 2>&1; }
sink_healthy() { curl -fsS "http://127.0.0.1:$HERALD_SINK_PORT/healthz" >/dev/null 2>&1; }

main() {
    mkdir -p "$RUN_DIR"
    have curl || apt_install curl

    read -r PG_HOST PG_PORT PG_DB < <(parse_pg_url "$DATABASE_URL")
    read -r REDIS_HOST REDIS_PORT < <(parse_redis_url "$REDIS_URL")

    if is_local "$PG_HOST"; then
        ensure_postgres
        ensure_database
    else
        log "using PostgreSQL at $PG_HOST:$PG_PORT as given by DATABASE_URL"
    fi
    if is_local "$REDIS_HOST"; then
        ensure_redis
    else
        log "using Redis at $REDIS_HOST:$REDIS_PORT as given by REDIS_URL"
    fi

    if [[ ${1:-} == --services-only ]]; then
        # The independent SMTP server one integration test sends to (Debian's aiosmtpd).
        /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || apt_install python3-aiosmtpd
        log "PostgreSQL ($PG_HOST:$PG_PORT) and Redis ($REDIS_HOST:$REDIS_PORT) answer"
        return 0
    fi

    log "building herald-api, herald-worker, herald-sim (release)"
    (cd "$ROOT" && cargo build --release -p herald-api -p herald-worker -p herald-sim)

    if compgen -G "$RUN_DIR/*.pid" >/dev/null; then
        log "stopping the previous run"
        "$ROOT/scripts/down-local.sh"
    fi

    cd "$ROOT"
    log "starting sink, api, worker"
    start sink "$BIN_DIR/herald-sim" sink --host 127.0.0.1 --port "$HERALD_SINK_PORT" \
        --smtp-port "$HERALD_SINK_SMTP_PORT"
    # The api applies migrations at start; starting the worker after it is healthy
    # keeps the two from racing over the same migrations on a fresh database.
    start api "$BIN_DIR/herald-api"

    local i
    for ((i = 0; i < 120; i++)); do
        api_healthy && break
        alive_or_die api
        alive_or_die sink
        sleep 0.5
    done
    api_healthy || die "the api did not answer http://$HERALD_BIND/healthz/live within 60 s (see $RUN_DIR/api.log)"
    sink_healthy || die "the sink did not answer on port $HERALD_SINK_PORT (see $RUN_DIR/sink.log)"

    start worker "$BIN_DIR/herald-worker" --queues critical,default --concurrency 512
    sleep 1
    alive_or_die worker

    cat <<EOF

Herald is up (no Docker):
  api       http://$HERALD_BIND  (api key: ${HERALD_API_KEYS%%,*})
  worker    --queues critical,default --concurrency 512
  sink      http://127.0.0.1:$HERALD_SINK_PORT  (GET /received, POST /control), SMTP on 127.0.0.1:$HERALD_SINK_SMTP_PORT
  postgres  $PG_HOST:$PG_PORT/$PG_DB
  redis     $REDIS_HOST:$REDIS_PORT
  logs      .run/api.log .run/worker.log .run/sink.log
Stop with: scripts/down-local.sh
EOF
}

main "$@"
