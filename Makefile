# Parley's developer and CI entry points. CI runs exactly `make test` (see .ci/run).

CARGO ?= cargo

.PHONY: run web-admin test lint fmt openapi openapi-check bench migrate fuzz

## run: build the dashboard, then start Parley on SQLite at http://127.0.0.1:8080 (data in ./data)
run: web-admin
	$(CARGO) run --bin parley -- serve

## web-admin: install the dashboard's locked dependencies and build it into web-admin/dist
## (without npm the server still runs; `/` then says how to build the dashboard)
web-admin:
	@if command -v npm >/dev/null 2>&1; then \
	  cd web-admin && npm ci --no-audit --no-fund && npm run build; \
	else \
	  echo "npm not found: the dashboard is not built (the API and webhooks work without it)"; \
	fi

## test: the OpenAPI drift check, the whole test suite on SQLite and PostgreSQL, then the
## dashboard's unit tests and its browser end-to-end tests
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

## fuzz: run each fuzz target in fuzz/ for FUZZ_SECONDS (needs cargo-fuzz; see fuzz/Cargo.toml).
## cargo-fuzz needs nightly flags, hence RUSTC_BOOTSTRAP; its instrumented build gets its own
## target dir so it never invalidates the normal one. The webhook fixtures seed the corpus.
FUZZ_SECONDS ?= 60
FUZZ_TARGET_DIR ?= $(abspath $(CURDIR)/../target-fuzz)
FUZZ_FIXTURES ?= $(abspath $(CURDIR)/../shared/fixtures/webhook)
FUZZ_FLAGS ?= --codegen-units 16
FUZZ = RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) $(CARGO) fuzz

fuzz:
	@mkdir -p fuzz/corpus/webhook_parse fuzz/corpus/signature_verify
	@if [ -d "$(FUZZ_FIXTURES)" ]; then \
		cd "$(FUZZ_FIXTURES)" && find . -name '*.json' | while read -r f; do \
			cp "$$f" "$(CURDIR)/fuzz/corpus/webhook_parse/fixture_$$(echo "$${f#./}" | tr / _)"; \
		done; \
	else echo "no fixtures at $(FUZZ_FIXTURES): webhook_parse starts from an empty corpus"; fi
	$(FUZZ) run $(FUZZ_FLAGS) webhook_parse -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1
	$(FUZZ) run $(FUZZ_FLAGS) signature_verify -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1
