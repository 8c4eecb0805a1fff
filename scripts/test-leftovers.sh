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

keys=$(redis-cli -u "$redis_url" --scan --pattern "herald_test_${run}_*" | sort)
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
