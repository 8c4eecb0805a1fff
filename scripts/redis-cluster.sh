#!/usr/bin/env bash
# A private Redis Cluster of 3 masters with one replica each (Debian's redis-server,
# no persistence), for the tests and suites that run Herald on a cluster:
#   scripts/redis-cluster.sh start   # idempotent; prints the cluster URL as a shell export
#   scripts/redis-cluster.sh stop    # shuts every node down and removes the directory
# Ports: HERALD_REDIS_CLUSTER_PORT (default 17001) and the five after it, on 127.0.0.1.
# Each node's cluster bus listens on its port + 10000, or - 10000 where + would pass
# 65535. The default keeps both (17001-17006, 27001-27006) below Linux's ephemeral
# range (32768-60999), from which every outgoing connection takes its local port: a
# node whose port a client connection happened to hold failed to start (seen with the
# former default 57001, whose buses were 47001-47006). Data, pid and log files go to
# target/redis-cluster-<base port>/, so clusters on other bases do not meet.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${HERALD_REDIS_CLUSTER_PORT:-17001}"
DIR="$ROOT/target/redis-cluster-$BASE"
PORTS=()
for ((i = 0; i < 6; i++)); do PORTS+=($((BASE + i))); done
# The first three become the masters: `--cluster create` takes masters first.
SEEDS="127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]},127.0.0.1:${PORTS[2]}"

die() { printf 'redis-cluster: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

[[ $BASE =~ ^[0-9]+$ ]] && ((BASE >= 1024 && BASE + 5 <= 65535)) ||
    die "HERALD_REDIS_CLUSTER_PORT=$BASE: need a port from 1024 to 65530"

ensure_installed() {
    have redis-server && have redis-cli && return 0
    have apt-get || die "redis-server is not installed and there is no apt-get: install it by hand"
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    # stdout is the caller's eval: apt's progress goes to stderr.
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q redis-server >&2
}

# A node that hangs (stopped, swapping) must not hang the script.
cli() { local port="$1"; shift; timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null; }
answers() { [[ $(cli "$1" ping) == PONG ]]; }
info_field() { cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"; }
bus_port() { if (($1 + 10000 <= 65535)); then echo $(($1 + 10000)); else echo $(($1 - 10000)); fi; }

start_node() {
    local port="$1"
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode no \
        --cluster-enabled yes --cluster-port "$(bus_port "$port")" \
        --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 2000 \
        --save "" --appendonly no --dir "$DIR" \
        --daemonize yes --pidfile "$DIR/redis-$port.pid" --logfile "$DIR/redis-$port.log" >&2
}

# Healthy: every node answers, knows all six and says cluster_state:ok.
healthy() {
    local port
    for port in "${PORTS[@]}"; do
        answers "$port" || return 1
        [[ $(info_field "$port" cluster_state) == ok && $(info_field "$port" cluster_known_nodes) == 6 ]] || return 1
    done
}

# Three replicas whose link to their master is up (a failover needs one to promote).
replicas_linked() {
    local port linked=0
    for port in "${PORTS[@]}"; do
        [[ $(cli "$port" info replication | tr -d '\r' | grep -c -e '^role:slave' -e '^master_link_status:up') == 2 ]] &&
            linked=$((linked + 1))
    done
    ((linked == 3))
}

# Waits up to $1 seconds for the command that follows to succeed.
wait_for() {
    local seconds="$1" i
    shift
    for ((i = 0; i < seconds * 5; i++)); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}

stop() {
    local port pid
    for port in "${PORTS[@]}"; do
        cli "$port" shutdown nosave >/dev/null || true
    done
    # A node that did not answer (hung, or stopped by SIGSTOP) is killed by its pid file,
    # but only while that pid is still this node (a pid file outlives a killed node).
    for port in "${PORTS[@]}"; do
        [[ -f $DIR/redis-$port.pid ]] || continue
        pid="$(cat "$DIR/redis-$port.pid")"
        if [[ $pid =~ ^[0-9]+$ ]] && [[ $(ps -o args= -p "$pid" 2>/dev/null) == redis-server*:$port* ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$DIR"
}

start() {
    ensure_installed
    if ! healthy; then
        # Anything short of a healthy cluster (a node killed, a half-made cluster from an
        # interrupted start) is rebuilt from nothing: the nodes keep no data anyway.
        stop
        mkdir -p "$DIR"
        local port
        for port in "${PORTS[@]}"; do start_node "$port"; done
        for port in "${PORTS[@]}"; do
            wait_for 15 answers "$port" || die "node $port did not answer (see $DIR/redis-$port.log)"
        done
        local nodes=()
        for port in "${PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 ||
            die "redis-cli --cluster create failed: $(tail -n 5 "$DIR/create.log")"
        wait_for 30 healthy || die "the cluster did not reach cluster_state:ok on all 6 nodes within 30 s"
    fi
    wait_for 30 replicas_linked || die "not every master has a replica in sync within 30 s"
    # All nodes agree on the slots, every slot covered.
    wait_for 30 redis-cli --cluster check "127.0.0.1:${PORTS[0]}" >/dev/null 2>&1 ||
        die "redis-cli --cluster check does not pass: $(redis-cli --cluster check "127.0.0.1:${PORTS[0]}" 2>&1 | tail -n 5)"
    echo "export HERALD_TEST_REDIS_CLUSTER_URL=redis+cluster://$SEEDS"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop" ;;
esac
