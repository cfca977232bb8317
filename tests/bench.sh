#!/usr/bin/env bash
# Runs the load benchmarks in release mode. PostgreSQL is included when it answers.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TEST_POSTGRES_URL:=postgres://postgres@127.0.0.1:5432/test}"
if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then export TEST_POSTGRES_URL; else unset TEST_POSTGRES_URL; fi
cargo bench --bench load
