#!/usr/bin/env bash
# A private Postgres primary with a streaming replica (pg_basebackup), for the tests
# of reads from a replica. Both run from target/pg-replica/ on loopback ports:
#   scripts/pg-replica.sh start   # idempotent; prints the two URLs as shell exports
#   scripts/pg-replica.sh stop
# Ports: HERALD_REPLICA_PG_PORT (default 55432) for the primary, the next one for the
# replica. Running as root, Postgres runs as the `postgres` user (initdb refuses root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/target/pg-replica"
PRIMARY_PORT="${HERALD_REPLICA_PG_PORT:-55432}"
REPLICA_PORT=$((PRIMARY_PORT + 1))

die() { printf 'pg-replica: %s\n' "$*" >&2; exit 1; }

bin_dir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x $d/initdb && -x $d/pg_basebackup ]] && { echo "$d"; return; }
    done
    command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
    die "no Postgres server binaries (initdb, pg_basebackup): apt-get install postgresql"
}
BIN="$(bin_dir)"

as_pg() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

answers() { pg_isready -q -h 127.0.0.1 -p "$1"; }

start_server() { # data dir, port
    # The socket goes beside the data directory: inside it, pg_basebackup warns of it.
    mkdir -p "$1.sock" && [[ $(id -u) -eq 0 ]] && chown postgres: "$1.sock"
    as_pg "$BIN/pg_ctl" -D "$1" -l "$1.log" -w -t 60 \
        -o "-p $2 -k $1.sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start >/dev/null
}

start() {
    mkdir -p "$DIR"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$DIR"
    if ! answers "$PRIMARY_PORT"; then
        if [[ ! -f $DIR/primary/PG_VERSION ]]; then
            rm -rf "$DIR/primary" "$DIR/replica"
            as_pg "$BIN/initdb" -D "$DIR/primary" -A trust -U postgres -E UTF8 --locale=C --no-sync >/dev/null
            # Streaming replication from loopback, trusted like the rest of this server.
            echo "host replication postgres 127.0.0.1/32 trust" >>"$DIR/primary/pg_hba.conf"
        fi
        start_server "$DIR/primary" "$PRIMARY_PORT"
    fi
    if ! answers "$REPLICA_PORT"; then
        if [[ ! -f $DIR/replica/standby.signal ]]; then
            rm -rf "$DIR/replica"
            # -R writes standby.signal and primary_conninfo: the copy starts as a replica.
            as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$DIR/replica" -R -X stream >/dev/null
        fi
        start_server "$DIR/replica" "$REPLICA_PORT"
    fi
    echo "export HERALD_TEST_PRIMARY_URL=postgres://postgres@127.0.0.1:$PRIMARY_PORT/postgres"
    echo "export HERALD_TEST_REPLICA_URL=postgres://postgres@127.0.0.1:$REPLICA_PORT/postgres"
}

stop() {
    local d
    for d in replica primary; do
        [[ -f $DIR/$d/postmaster.pid ]] && as_pg "$BIN/pg_ctl" -D "$DIR/$d" -m fast -w stop >/dev/null || true
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop" ;;
esac
