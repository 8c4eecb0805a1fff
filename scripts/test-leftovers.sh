#!/usr/bin/env bash
# The end of `make test`: fails, listing them, if the run's tests left Redis keys or
# Postgres databases behind. Every test names its keys `herald_test_<run>_…` and its
# database `herald_test_<run>_…`, where <run> is HERALD_TEST_RUN, fresh for each
# `make test`; tests of other checkouts running on the same servers meanwhile use
# other run ids, so only this run's leftovers count.
#   usage: scripts/test-leftovers.sh RUN
set -euo pipefail
run="${1:?usage: scripts/test-leftovers.sh RUN}"
redis_url="${HERALD_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
admin_url="${HERALD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

# A Redis Cluster (`make test` starts one, scripts/redis-cluster.sh) is checked too.
cluster_url="${HERALD_TEST_REDIS_CLUSTER_URL:-}"

# redis-cli arguments of each node holding keys of URL, one node a line: the server of a
# redis:// URL; each master of a redis+cluster://host:port,... URL (a cluster's SCAN
# sees only the node it asks).
redis_nodes() {
  local url="$1" seed host port
  if [[ $url != redis+cluster://* ]]; then
    echo "-u $url"
    return
  fi
  for seed in $(tr ',' ' ' <<<"${url#redis+cluster://}"); do
    host="${seed%:*}" port="${seed##*:}"
    # <id> <ip:port@bus> <flags> ...: the masters not marked failed.
    redis-cli -h "$host" -p "$port" cluster nodes 2>/dev/null |
      awk '$3 ~ /master/ && $3 !~ /fail/ { split($2, a, "@"); n = split(a[1], hp, ":"); print "-h " hp[1] " -p " hp[n] }' |
      grep . && return
  done
  echo "no seed of the Redis Cluster $url answers" >&2
  return 1
}

scan_keys() {
  local node
  redis_nodes "$1" | while read -r node; do
    # shellcheck disable=SC2086 # node is "-u URL" or "-h HOST -p PORT"
    redis-cli $node --scan --pattern "herald_test_${run}_*"
  done
}

keys=$( { scan_keys "$redis_url"; [ -z "$cluster_url" ] || scan_keys "$cluster_url"; } | sort -u)
databases=$(psql "$admin_url" -Atc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'herald\\_test\\_${run}\\_%' ORDER BY 1")

status=0
if [ -n "$keys" ]; then
  echo "test run ${run} left $(wc -l <<<"$keys") Redis key(s) behind:" >&2
  sed 's/^/  /' <<<"$keys" >&2
  status=1
fi
if [ -n "$databases" ]; then
  echo "test run ${run} left $(wc -l <<<"$databases") database(s) behind:" >&2
  sed 's/^/  /' <<<"$databases" >&2
  status=1
fi
if [ "$status" = 0 ]; then
  echo "test run ${run} left no Redis keys and no databases behind"
fi
exit "$status"
