#!/usr/bin/env bash
# WebSocket benchmark: memory per idle /ws/events connection, and delivery latency of
# broadcasts at several sizes. See crates/shop/examples/ws_load.rs for what is measured.
#
#   bench/ws.sh                      runs: 10k clients at 10 and 30 events/s, 1k at 300
#   bench/ws.sh CONNECTIONS RATE SECONDS
#   bench/ws.sh cross [CONNECTIONS RATE SECONDS]   (default 2000 100 10) one instance, then two
#                    sharing the Redis at $REDIS_URL (default redis://127.0.0.1:6379): events
#                    created on one, clients on the other; the difference is what Redis adds
set -euo pipefail
cd "$(dirname "$0")/.."

# Each side holds one descriptor per connection.
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p shop --bin shop --example ws_load
target=${CARGO_TARGET_DIR:-target}
if [ "${1:-}" = cross ]; then
  shift
  run=("${1:-2000}" "${2:-100}" "${3:-10}")
  echo "== one instance: ${run[*]} (connections, events/s, seconds)"
  env -u REDIS_URL "$target/release/examples/ws_load" "${run[@]}"
  echo
  echo "== two instances through Redis: ${run[*]}"
  REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379} "$target/release/examples/ws_load" "${run[@]}"
  exit
fi
if [ $# -ge 3 ]; then
  "$target/release/examples/ws_load" "$@"
  exit
fi
for run in "10000 10 10" "10000 30 10" "1000 300 10"; do
  echo "== $run (connections, events/s, seconds)"
  # shellcheck disable=SC2086
  "$target/release/examples/ws_load" $run
  echo
done
