# Parley's developer and CI entry points. CI runs exactly `make test` (see .ci/run).

CARGO ?= cargo

.PHONY: run test lint fmt openapi openapi-check bench migrate

## run: start Parley on SQLite at http://127.0.0.1:8080 (data in ./data)
run:
	$(CARGO) run --bin parley -- serve

## test: the OpenAPI drift check, then the whole test suite on SQLite and PostgreSQL
test: openapi-check
	bash tests/run.sh

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## openapi: regenerate the committed OpenAPI document
openapi:
	$(CARGO) run -q --bin parley -- openapi > openapi/openapi.json

## openapi-check: fail when openapi/openapi.json is stale
openapi-check:
	@mkdir -p target
	@$(CARGO) run -q --bin parley -- openapi > target/openapi.check.json
	@diff -q openapi/openapi.json target/openapi.check.json >/dev/null || \
		{ echo "openapi/openapi.json is stale: run 'make openapi' and commit it"; \
		  diff -u openapi/openapi.json target/openapi.check.json | head -40; exit 1; }
	@echo "openapi/openapi.json is up to date"

## bench: load benchmarks in release mode; results go to BENCHMARKS.md by hand
bench:
	bash tests/bench.sh

## migrate: apply database migrations to PARLEY_DATABASE_URL
migrate:
	$(CARGO) run --bin parley -- migrate
