#!/usr/bin/env bash
# HTTP benchmark: shop (keel's layers) against bare axum on the same routes, store and SQL.
#
#   bench/http.sh [seconds-per-run]      (default 8; SCENARIOS="get 422" to run some)
#
# Builds both servers in release mode, starts each on a fresh SQLite file in a temporary
# folder, and loads them in turn with wrk (2 threads, 64 connections) on:
#   POST /users          a new unique user per request (201)
#   GET /users/{id}      a random existing user (200)
#   GET /users/999999999 a missing user (404)
#   GET /users/abc       an id that is not an integer (422)
# Each scenario runs $ROUNDS times (default 3) per server, alternating which goes first, and the
# best run of each side is kept, so that noise from the shared machine hits both sides alike. Prints requests/s, p99 latency and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-8}
rounds=${ROUNDS:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p shop --bin shop --example bare_axum
target=${CARGO_TARGET_DIR:-target}

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

SHOP_ADDR=127.0.0.1:18000 DATABASE_URL="sqlite://$work/shop.db" RUST_LOG=warn \
  "$target/release/shop" >"$work/shop.log" 2>&1 &
pids+=($!)
"$target/release/examples/bare_axum" 127.0.0.1:18001 "sqlite://$work/bare.db" >"$work/bare.log" 2>&1 &
pids+=($!)
for port in 18000 18001; do
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.1
  done
done

cat >"$work/post.lua" <<'LUA'
local counter = 0
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) round = args[1] or "r" end
function request()
  counter = counter + 1
  local name = "u" .. round .. "_" .. tid .. "_" .. counter
  return wrk.format("POST", "/users", {["Content-Type"] = "application/json"},
    '{"email":"' .. name .. '@example.com","username":"' .. name .. '"}')
end
LUA
cat >"$work/get.lua" <<'LUA'
function request() return wrk.format("GET", "/users/" .. math.random(1, 1000)) end
LUA

# run PORT SCENARIO ROUND -> "rps p99"
run() {
  local url="http://127.0.0.1:$1" out
  case $2 in
    post) out=$(wrk -t2 -c64 -d"${secs}s" --latency -s "$work/post.lua" "$url" -- "$3$1") ;;
    get) out=$(wrk -t2 -c64 -d"${secs}s" --latency -s "$work/get.lua" "$url") ;;
    404) out=$(wrk -t2 -c64 -d"${secs}s" --latency "$url/users/999999999") ;;
    422) out=$(wrk -t2 -c64 -d"${secs}s" --latency "$url/users/abc") ;;
  esac
  echo "$out" >>"$work/wrk.log"
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$rps $p99"
}

printf '| scenario | shop req/s | shop p99 | bare axum req/s | bare p99 | shop / bare |\n'
printf '|---|---|---|---|---|---|\n'
for scenario in ${SCENARIOS:-post get 404 422}; do
  best_shop=0 best_bare=0 p99_shop=- p99_bare=-
  for round in $(seq "$rounds"); do
    # Alternate which side goes first, so drift in the machine's load favours neither.
    order="18000 18001"; [ $((round % 2)) -eq 0 ] && order="18001 18000"
    for port in $order; do
      read -r rps p99 < <(run "$port" "$scenario" "$round")
      if [ "$port" = 18000 ]; then
        if awk "BEGIN{exit !($rps > $best_shop)}"; then best_shop=$rps p99_shop=$p99; fi
      else
        if awk "BEGIN{exit !($rps > $best_bare)}"; then best_bare=$rps p99_bare=$p99; fi
      fi
    done
  done
  case $scenario in
    post) name='POST /users (201)' ;; get) name='GET /users/{id} (200)' ;;
    404) name='GET /users/999999999 (404)' ;; 422) name='GET /users/abc (422)' ;;
  esac
  ratio=$(awk "BEGIN{printf \"%.2f\", $best_shop / $best_bare}")
  printf '| %s | %.0f | %s | %.0f | %s | %s |\n' "$name" "$best_shop" "$p99_shop" "$best_bare" "$p99_bare" "$ratio"
done
# Every response of the success scenarios must have been a success, or the numbers lie.
if grep -q "Non-2xx" "$work/wrk.log"; then
  echo; echo "non-2xx responses per run (expected only in the 404 and 422 scenarios):"
  grep "Non-2xx" "$work/wrk.log"
fi
if grep -q "Socket errors" "$work/wrk.log"; then
  echo; echo "wrk reported socket errors:"; grep "Socket errors" "$work/wrk.log"
fi
