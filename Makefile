# Herald's entry points. `make up` runs everything, `make test` runs the tests.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up down test e2e lint fmt check-config services build

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

## test: unit and integration tests against the real Postgres and Redis
test: services
	$(CARGO) test --workspace

## e2e: build, start api + worker + sinks on free ports, drive the seed scenarios
e2e: services
	python3 e2e/run.py

## lint: formatting and clippy, as CI checks them
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## check-config: validate config/ without starting anything
check-config:
	$(CARGO) run -q -p herald-api -- check-config

build:
	$(CARGO) build --release -p herald-api -p herald-worker -p herald-sim
