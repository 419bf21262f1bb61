#!/usr/bin/env bash
# Every test: the documentation examples, then every unit and integration test.
#
#   bash scripts/test.sh
#
# With cargo-nextest installed (CI has it) each test runs in its own process, timing-sensitive
# ones get one retry and hung ones a hard timeout (.config/nextest.toml); without it, plain
# `cargo test` runs the same tests.
#
# The Python packages the tests use (websockets, standardwebhooks) are installed, when the
# system's Python lacks them, into a virtual environment of this script's own
# (target/test-venv). A test whose tool or server is still missing (Chromium, PostgreSQL,
# Redis) skips what needs it; the last line names what was skipped and how many tests it
# cost. KEEL_REQUIRE_TEST_TOOLS=1 (set by .ci/run) makes a missing tool a failure instead.
#
# The service's suite runs twice: on SQLite, then on PostgreSQL (SHOP_TEST_ENGINE=postgres,
# each test in a schema of its own) when a server answers at 127.0.0.1:5432 (trust auth,
# database `test`; TEST_POSTGRES_URL names another). keel's PostgreSQL and Redis tests use
# the same servers.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_PACKAGES=("websockets>=13" standardwebhooks)
python_ready() {
  "$1" -c "import websockets.asyncio.client, standardwebhooks" >/dev/null 2>&1
}
if ! python_ready python3; then
  venv="${KEEL_TEST_VENV:-$PWD/target/test-venv}"
  if [ ! -x "$venv/bin/python3" ]; then
    python3 -m venv --system-site-packages "$venv" >/dev/null 2>&1 || true
  fi
  if [ -x "$venv/bin/python3" ]; then
    if ! python_ready "$venv/bin/python3"; then
      echo "== installing ${PYTHON_PACKAGES[*]} into $venv"
      "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check \
        "${PYTHON_PACKAGES[@]}" || echo "could not install the Python packages"
    fi
    export PATH="$venv/bin:$PATH"
  fi
fi

# Every skipped test writes a line here (tool, test); the summary reads it however the run ends.
skips=$(mktemp)
export KEEL_SKIP_LOG="$skips"
summary() {
  if [ -s "$skips" ]; then
    echo "SKIPPED for missing tools: $(cut -f1 "$skips" | sort | uniq -c \
      | awk '{n=$1; $1=""; printf "%s%s (%d tests)", sep, substr($0, 2), n; sep=", "}')"
  fi
  rm -f "$skips"
}
trap summary EXIT

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
  printf 'PostgreSQL\tthe service suite on PostgreSQL\n' >> "$skips"
  echo "SKIPPED: PostgreSQL is not reachable at 127.0.0.1:5432; the service's suite ran on SQLite only"
fi
