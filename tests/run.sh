#!/usr/bin/env bash
# Runs the integration suite once per storage backend:
#   1. SQLite (always);
#   2. PostgreSQL, when a server answers at TEST_POSTGRES_URL
#      (default postgres://postgres@127.0.0.1:5432/test), with Redis at TEST_REDIS_URL
#      (default redis://127.0.0.1:6379) for the tests that need it;
#   3. the dashboard: its unit tests (vitest), then browser end-to-end tests that drive the real
#      `parley serve` through Debian's Chromium (web-admin/e2e/run.mjs).
# On CI (CI=true) a missing PostgreSQL or Redis is a failure, never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${TEST_POSTGRES_URL:=postgres://postgres@127.0.0.1:5432/test}"
: "${TEST_REDIS_URL:=redis://127.0.0.1:6379}"

# host:port of a URL, defaulting the port.
hostport() { python3 - "$1" "$2" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
print(f"{u.hostname or '127.0.0.1'} {u.port or sys.argv[2]}")
PY
}
reachable() { read -r host port < <(hostport "$1" "$2"); (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

skipped=()
if reachable "$TEST_POSTGRES_URL" 5432; then have_pg=1; else have_pg=0; skipped+=("PostgreSQL suite (no server at $TEST_POSTGRES_URL)"); fi
if reachable "$TEST_REDIS_URL" 6379; then export TEST_REDIS_URL; else unset TEST_REDIS_URL; skipped+=("Redis tests (no server at redis://127.0.0.1:6379)"); fi

have_browser=1
if [[ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then have_browser=0; skipped+=("browser end-to-end tests (no Chromium at ${CHROMIUM:-/usr/bin/chromium}: apt-get install chromium)"); fi
if ! command -v npm >/dev/null 2>&1; then have_browser=0; skipped+=("dashboard tests (no Node.js/npm)"); fi

if [[ "${CI:-}" == "true" && ${#skipped[@]} -gt 0 ]]; then
  printf 'FAIL: on CI these must run: %s\n' "${skipped[@]}" >&2
  exit 1
fi

if command -v cargo-nextest >/dev/null 2>&1; then
  # One retry, reported as FLAKY in the summary, so a test starved by the busy 2-core machine
  # does not sink a run; a test that fails twice still fails it.
  runner=(cargo nextest run --no-fail-fast --failure-output final --retries 1)
else
  runner=(cargo test --no-fail-fast)
fi

mkdir -p target
status=0
summary() { grep -E "^\s+Summary|^test result:" "$1" | tail -1 || true; }

echo "=== suite 1/3: SQLite (unit tests + integration tests) ==="
"${runner[@]}" 2>&1 | tee target/test-sqlite.log || status=1
sqlite_summary=$(summary target/test-sqlite.log)

pg_summary="SKIPPED"
if [[ $have_pg == 1 ]]; then
  echo "=== suite 2/3: PostgreSQL at $TEST_POSTGRES_URL (integration tests) ==="
  TEST_POSTGRES_URL="$TEST_POSTGRES_URL" "${runner[@]}" --test api 2>&1 | tee target/test-postgres.log || status=1
  pg_summary=$(summary target/test-postgres.log)
fi

web_summary="SKIPPED"
if command -v npm >/dev/null 2>&1; then
  echo "=== suite 3/3: dashboard (unit tests, build, browser end-to-end) ==="
  # The e2e suite starts the parley binary the Rust suites just built.
  {
    (cd web-admin && { [[ -d node_modules ]] || npm ci --no-audit --no-fund; } && npm test && npm run build) &&
      cargo build --bin parley &&
      if [[ $have_browser == 1 ]]; then (cd web-admin && node e2e/run.mjs); fi
  } 2>&1 | tee target/test-web.log || status=1
  web_summary=$(grep -E "Tests .*passed|^[0-9]+ passed, [0-9]+ failed" target/test-web.log | tr -d '\033' | sed 's/\[[0-9;]*m//g' | paste -sd ';' - || true)
fi

echo
echo "=== test summary ==="
echo "SQLite:     $sqlite_summary"
echo "PostgreSQL: $pg_summary"
echo "Dashboard:  $web_summary"
for s in "${skipped[@]}"; do
  echo "!!! SKIPPED: $s" >&2
done
exit $status
