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
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --doc
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace
else
  echo "cargo-nextest not installed: running the tests with cargo test"
  cargo test --workspace --lib --bins --tests
fi
