#!/usr/bin/env bash
# Every test: the documentation examples, then every unit and integration test.
#
#   bash scripts/test.sh
#
# With cargo-nextest installed (CI has it) each test runs in its own process, timing-sensitive
# ones get one retry and hung ones a hard timeout (.config/nextest.toml); without it, plain
# `cargo test` runs the same tests. Tests that need Chromium (apt-get install chromium) or
# Python's standardwebhooks (pip install standardwebhooks) print SKIPPED and check nothing
# when the tool is missing; KEEL_REQUIRE_TEST_TOOLS=1 (set by .ci/run) makes that a failure.
#
# The service's suite runs twice: on SQLite, then on PostgreSQL (SHOP_TEST_ENGINE=postgres,
# each test in a schema of its own) when a server answers at 127.0.0.1:5432 (trust auth,
# database `test`; TEST_POSTGRES_URL names another). keel's PostgreSQL and Redis tests
# use the same servers and skip, saying so, without them.
set -euo pipefail
cd "$(dirname "$0")/.."

run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run "$@"
  else
    cargo test "$@" --lib --bins --tests
  fi
}

cargo test --workspace --doc
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest not installed: running the tests with cargo test"
fi
run_tests --workspace

if [ -n "${TEST_POSTGRES_URL:-}" ] || (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "== the service's suite again, on PostgreSQL"
  SHOP_TEST_ENGINE=postgres run_tests -p shop
elif [ -n "${KEEL_REQUIRE_TEST_TOOLS:-}" ]; then
  echo "PostgreSQL is not reachable at 127.0.0.1:5432 and KEEL_REQUIRE_TEST_TOOLS is set" >&2
  exit 1
else
  echo "SKIPPED: PostgreSQL is not reachable at 127.0.0.1:5432; the service's suite ran on SQLite only"
fi
