#!/usr/bin/env bash
# Webhook benchmark: outbound deliveries/s and inbound verified webhooks/s.
# See crates/bench/src/bin/webhooks_bench.rs.   bench/webhooks.sh [deliveries] [inbound]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p shop --bin shop -p bench --bin webhooks_bench
"${CARGO_TARGET_DIR:-target}/release/webhooks_bench" "$@"
