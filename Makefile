# Herald's entry points. `make up` runs everything, `make test` runs the tests.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up down test e2e lint fmt check-config services build simulate bundle e2e-ui chaos cluster fuzz schemathesis bench soak

## up: run postgres, redis, api, worker and a sink (Docker when an engine answers,
##     otherwise local processes against local Postgres and Redis)
up:
	@if docker info >/dev/null 2>&1; then \
		docker compose up -d --build; \
	else \
		echo "no Docker engine answers: starting Herald as local processes"; \
		scripts/up-local.sh; \
	fi

## down: stop what `make up` started
down:
	@if docker info >/dev/null 2>&1; then docker compose down; else scripts/down-local.sh; fi

## services: make sure Postgres and Redis answer (start or install them if not)
services:
	@scripts/up-local.sh --services-only

## test: unit and integration tests against the real Postgres and Redis (and a private
##       primary with a streaming replica, scripts/pg-replica.sh, and a private Redis
##       Cluster, scripts/redis-cluster.sh), then a check that they left no Redis keys
##       and no databases behind (scripts/test-leftovers.sh; HERALD_TEST_RUN, fresh
##       per run, names the run's keys and databases)
test: services
	@export HERALD_TEST_RUN=$${HERALD_TEST_RUN:-$$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')}; \
	echo "test run $$HERALD_TEST_RUN: keys and databases herald_test_$${HERALD_TEST_RUN}_*"; \
	eval "$$(scripts/pg-replica.sh start)"; \
	eval "$$(scripts/redis-cluster.sh start)"; \
	echo "$(CARGO) test --workspace"; \
	$(CARGO) test --workspace && scripts/test-leftovers.sh "$$HERALD_TEST_RUN"

## e2e: build, start api + worker + sinks on free ports, drive the scenarios of every capability
e2e: services
	python3 e2e/run.py

## e2e-ui: the web console in headless Chromium (Debian's, installed when missing)
##         driven by playwright-core against api + worker + sinks; screenshots in
##         target/ui-screenshots/ (python3 e2e-ui/run.py --docs refreshes docs/)
e2e-ui: services
	python3 e2e-ui/run.py

## chaos: fault suite: private Postgres+Redis, api, 2 workers, flaky sink; 5,000+ events
##        through a worker SIGKILL, Redis restarted empty and a Postgres restart
chaos: services
	python3 chaos/run.py

## cluster: the Redis Cluster suite: 3 masters + 3 replicas (scripts/redis-cluster.sh),
##          a Postgres primary with a streaming replica, 2 apis, 3 workers, flaky sink;
##          20,000 events through a Redis master failover and a worker SIGKILL (release build)
cluster: services
	python3 cluster/run.py --release

## fuzz: libFuzzer on the event batch parser and the config loader (FUZZ_SECONDS each, default 300)
fuzz:
	scripts/fuzz.sh

## schemathesis: HTTP fuzzing of every route of /openapi.json against the e2e stack; no 5xx allowed
schemathesis: services
	python3 scripts/schemathesis.py

## bench: the performance figures (docs/contract.md §11) on free ports (release build); see BENCHMARKS.md
bench: services
	python3 bench/run.py

## soak: the same steady load on an empty database and on ~21 million preloaded events,
##       side by side in alternating windows, while retention drops the oldest day;
##       throughput, latency, sizes, RSS (release build; SOAK_ARGS="--events-per-day 20000"
##       for a quick run). Needs max_connections >= 250 (bench/soak.py). See BENCHMARKS.md
SOAK_ARGS ?=
soak: services
	python3 bench/soak.py $(SOAK_ARGS)

## lint: the structure check (images copy every crate, no module cycles, nothing points
##       outside the repository), formatting and clippy, as CI checks them
lint:
	python3 scripts/lint_structure.py
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## check-config: validate config/ without starting anything
check-config:
	$(CARGO) run -q -p herald-api -- check-config

build:
	$(CARGO) build --release -p herald-api -p herald-worker -p herald-sim

## simulate: the delivery simulation against a running stack (`make up` first): 1000 people
##           in a topic of the run's own, 5 messages to them, 10% lost, half of the
##           delivered opened (SIM_ARGS=--yes-broadcast-to-everyone sends to everyone)
SIM_API  ?= http://127.0.0.1:8000
SIM_SINK ?= http://127.0.0.1:5000
# The sink posts receipts to the api; inside docker compose it reaches it as `api`.
SIM_RECEIPTS_URL ?= $(if $(shell docker info >/dev/null 2>&1 && echo y),http://api:8000,$(SIM_API))/webhooks/receipts
SIM_ARGS ?=
simulate:
	@echo "building herald-sim (release; the first build takes a few minutes)"
	$(CARGO) build --release -p herald-sim
	$(CARGO) run -q --release -p herald-sim -- simulate --api $(SIM_API) \
	  --api-key $${HERALD_API_KEY:-dev-key} --sink $(SIM_SINK) --receipts-url $(SIM_RECEIPTS_URL) \
	  --users 1000 --messages 5 --loss 0.1 --open 0.5 $(SIM_ARGS)

## bundle: replay the sample day of tours through the bundler (docs/contract.md §8) and print its stats
bundle:
	$(CARGO) build --release -p herald-worker
	./target/release/herald-worker bundle data/tours_2017-08-01.csv --stats target/bundle-stats.csv > target/bundles.csv
