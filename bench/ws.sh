#!/usr/bin/env bash
# WebSocket benchmark: memory per idle /ws/events connection, and delivery latency of
# broadcasts at several sizes. See crates/bench/src/bin/ws_load.rs for what is measured.
#
#   bench/ws.sh                      runs: 10k clients at 10 and 30 events/s, 1k at 300
#   bench/ws.sh CONNECTIONS RATE SECONDS
#   bench/ws.sh cross [CONNECTIONS RATE SECONDS]   (default 2000 100 10) one instance, then two
#                    sharing the Redis at $REDIS_URL (default redis://127.0.0.1:6379): events
#                    created on one, clients on the other; the difference is what Redis adds.
#                    ROUNDS=N (default 3) alternates the two N times and prints the medians.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each side holds one descriptor per connection.
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p shop --bin shop -p bench --bin ws_load
target=${CARGO_TARGET_DIR:-target}
if [ "${1:-}" = cross ]; then
  shift
  run=("${1:-2000}" "${2:-100}" "${3:-10}")
  redis=${REDIS_URL:-redis://127.0.0.1:6379}
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  for round in $(seq "${ROUNDS:-3}"); do
    echo "== round $round, one instance: ${run[*]} (connections, events/s, seconds)"
    env -u REDIS_URL "$target/release/ws_load" "${run[@]}" | tee -a "$log" | sed 's/^/one: /'
    echo "== round $round, two instances through Redis: ${run[*]}"
    REDIS_URL=$redis "$target/release/ws_load" "${run[@]}" | tee -a "$log" | sed 's/^/two: /'
  done
  # The p99s of each round: sent → received (the write included), answered → received (the
  # fan-out alone, where Redis sits).
  python3 - "$log" <<'PY'
import re, statistics, sys
lines = open(sys.argv[1]).read().splitlines()
sent = [float(m.group(1)) for l in lines if (m := re.search(r"POST sent .* p99 ([0-9.]+) ms", l))]
fan = [float(m.group(1)) for l in lines if (m := re.search(r"POST answered .* p99 ([0-9.]+) ms", l))]
one_sent, two_sent, one_fan, two_fan = sent[0::2], sent[1::2], fan[0::2], fan[1::2]
print()
print("| p99 | one instance, each round | through Redis, each round | median one | median two | added by Redis (medians) |")
print("|---|---|---|---|---|---|")
for name, one, two in (("POST sent → event received", one_sent, two_sent),
                       ("POST answered → event received", one_fan, two_fan)):
    a, b = statistics.median(one), statistics.median(two)
    print(f"| {name} | {' / '.join(f'{x:.1f}' for x in one)} ms | {' / '.join(f'{x:.1f}' for x in two)} ms "
          f"| {a:.1f} ms | {b:.1f} ms | {b - a:+.1f} ms |")
PY
  exit
fi
if [ $# -ge 3 ]; then
  "$target/release/ws_load" "$@"
  exit
fi
for run in "10000 10 10" "10000 30 10" "1000 300 10"; do
  echo "== $run (connections, events/s, seconds)"
  # shellcheck disable=SC2086
  "$target/release/ws_load" $run
  echo
done
