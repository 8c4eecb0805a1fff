#!/usr/bin/env bash
# Stop what scripts/up-local.sh started: every process with a pid file in .run/.
# SIGTERM first (the api and worker drain in-flight work), SIGKILL after 10 s.
# Postgres and Redis are left running: tests and other checkouts share them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.run"
GRACE_SECONDS=10

# A pid file can outlive its process (a reboot, a crash) and the pid be reused by
# something else; only signal processes that are still one of Herald's binaries.
is_herald() {
    local pid="$1" args
    args="$(ps -o args= -p "$pid" 2>/dev/null)" || return 1
    [[ $args == *herald-* ]]
}

shopt -s nullglob
pidfiles=("$RUN_DIR"/*.pid)
if [[ ${#pidfiles[@]} -eq 0 ]]; then
    echo "nothing to stop (no pid files in $RUN_DIR)"
    exit 0
fi

running=()
for pidfile in "${pidfiles[@]}"; do
    name="$(basename "$pidfile" .pid)"
    pid="$(cat "$pidfile")"
    if [[ $pid =~ ^[0-9]+$ ]] && is_herald "$pid"; then
        echo "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        running+=("$pid")
    else
        echo "$name is not running (stale pid file)"
    fi
done

for ((i = 0; i < GRACE_SECONDS * 2 && ${#running[@]} > 0; i++)); do
    still=()
    for pid in "${running[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            still+=("$pid")
        fi
    done
    running=("${still[@]+"${still[@]}"}")
    [[ ${#running[@]} -eq 0 ]] || sleep 0.5
done

for pid in "${running[@]+"${running[@]}"}"; do
    if is_herald "$pid"; then
        echo "pid $pid ignored SIGTERM for ${GRACE_SECONDS}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
done

rm -f "${pidfiles[@]}"
echo "stopped"
