#!/usr/bin/env bash
# HTTP benchmark: shop (keel's layers) against bare axum on the same routes, store and SQL, and
# against the limit of SQLite on this machine (crates/bench/src/bin/sqlite_limit.rs: inline
# thread-local reads, one group-committing writer thread, nothing else).
#
#   bench/http.sh [seconds-per-run]      (default 8; SCENARIOS="get 422" to run some)
#
# Builds the three servers in release mode, starts each on a fresh SQLite file in a temporary
# folder, and loads them in turn with wrk (2 threads, 64 connections) on:
#   POST /users          a new unique user per request (201)
#   GET /users/{id}      a random existing user (200)
#   GET /users/999999999 a missing user (404)
#   GET /users/abc       an id that is not an integer (422)
# Each scenario runs $ROUNDS times (default 3) per server, rotating which goes first, and the
# best run of each is kept, so that noise from the shared machine hits all alike. Prints
# requests/s, p99 latency and the ratios. shop runs its job workers (a .eml file per user).
#
# ENGINE=postgres runs the three on PostgreSQL instead (DATABASE_URL names the server, default
# postgres://postgres@127.0.0.1:5432/test; each works in a schema of its own, made anew), the
# third being crates/bench/src/bin/postgres_limit.rs: bare axum and sqlx, a pool of 16, the
# user and its job row inserted in one transaction.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-8}
rounds=${ROUNDS:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
engine=${ENGINE:-sqlite}
cargo build --release -q -p shop --bin shop -p bench --bin bare_axum --bin sqlite_limit \
  --bin postgres_limit
target=${CARGO_TARGET_DIR:-target}

work=$(mktemp -d)
# shop's .eml files go to tmpfs when there is one: on this project's machines (virtual disks,
# ext4) creating thousands of files a second soon after earlier runs deleted theirs spends a
# third of the CPU in the kernel's inode allocator, which measures the disk, not the service.
# The databases stay on disk. MAIL_DIR=... to choose.
mail=${MAIL_DIR:-$( [ -w /dev/shm ] && mktemp -d -p /dev/shm || echo "$work/mail")}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work" "$mail"; }
trap cleanup EXIT

if [ "$engine" = postgres ]; then
  server=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
  for schema in bench_http_shop bench_http_bare bench_http_limit; do
    psql -q "$server" -c "DROP SCHEMA IF EXISTS $schema CASCADE" -c "CREATE SCHEMA $schema" 2>/dev/null
  done
  in_schema() { echo "$server?options=-c%20search_path%3D$1"; }
  shop_db=$(in_schema bench_http_shop) bare_db=$(in_schema bench_http_bare)
  limit=(postgres_limit "$(in_schema bench_http_limit)")
  limit_name="axum + sqlx"
else
  shop_db="sqlite://$work/shop.db" bare_db="sqlite://$work/bare.db"
  limit=(sqlite_limit "$work/limit.db")
  limit_name="limit"
fi
SHOP_ADDR=127.0.0.1:18000 DATABASE_URL="$shop_db" SHOP_MAIL_DIR="$mail" \
  RUST_LOG=warn "$target/release/shop" >"$work/shop.log" 2>&1 &
pids+=($!)
"$target/release/bare_axum" 127.0.0.1:18001 "$bare_db" >"$work/bare.log" 2>&1 &
pids+=($!)
"$target/release/${limit[0]}" 127.0.0.1:18002 "${limit[1]}" >"$work/limit.log" 2>&1 &
pids+=($!)
for port in 18000 18001 18002; do
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.1
  done
done
# A server that could not start (its port taken by another process, say) must stop the run,
# or wrk would measure whatever answers on that port.
for pid in "${pids[@]}"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "a server exited at start-up:" >&2
    tail -n 5 "$work"/*.log >&2
    exit 1
  fi
done

# GET /users/{id} reads users 1..1000: each server gets them first, so that the GET scenario
# measures 200s whichever scenarios run.
python3 - <<'PY'
import json, urllib.request
for port in (18000, 18001, 18002):
    for i in range(1000):
        body = json.dumps({"email": f"seed{i}@example.com", "username": f"seed{i}"}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/users", data=body,
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request).read()
PY

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

# The number of shop's welcome mails not yet written, from its /metrics.
pending_mails() {
  python3 -c "
import urllib.request
for line in urllib.request.urlopen('http://127.0.0.1:18000/metrics').read().decode().splitlines():
    if line.startswith('background_jobs{') and 'queue=\"email\"' in line and 'state=\"pending\"' in line:
        print(line.split()[-1])"
}

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
  if [ "$1" = 18000 ] && [ "$2" = post ]; then pending_mails >>"$work/backlog"; fi
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$rps $p99"
}

printf '| scenario (%s) | shop req/s | shop p99 | bare axum req/s | bare p99 | %s req/s | %s p99 | shop / bare | shop / %s |\n' \
  "$engine" "$limit_name" "$limit_name" "$limit_name"
printf '|---|---|---|---|---|---|---|---|---|\n'
for scenario in ${SCENARIOS:-post get 404 422}; do
  declare -A best=([18000]=0 [18001]=0 [18002]=0) p99s=([18000]=- [18001]=- [18002]=-)
  for round in $(seq "$rounds"); do
    # Rotate which side goes first, so drift in the machine's load favours none.
    case $((round % 3)) in
      1) order="18000 18001 18002" ;; 2) order="18001 18002 18000" ;; 0) order="18002 18000 18001" ;;
    esac
    for port in $order; do
      read -r rps p99 < <(run "$port" "$scenario" "$round")
      if awk "BEGIN{exit !($rps > ${best[$port]})}"; then best[$port]=$rps p99s[$port]=$p99; fi
    done
  done
  case $scenario in
    post) name='POST /users (201)' ;; get) name='GET /users/{id} (200)' ;;
    404) name='GET /users/999999999 (404)' ;; 422) name='GET /users/abc (422)' ;;
  esac
  bare=$(awk "BEGIN{printf \"%.2f\", ${best[18000]} / ${best[18001]}}")
  limit=$(awk "BEGIN{printf \"%.2f\", ${best[18000]} / ${best[18002]}}")
  printf '| %s | %.0f | %s | %.0f | %s | %.0f | %s | %s | %s |\n' "$name" \
    "${best[18000]}" "${p99s[18000]}" "${best[18001]}" "${p99s[18001]}" \
    "${best[18002]}" "${p99s[18002]}" "$bare" "$limit"
done
# shop's mails must keep up with its signups, or the POST figure is borrowed from the backlog.
if [ -s "$work/backlog" ]; then
  echo; echo "shop's welcome mails still pending at the end of each POST run: $(paste -sd ' ' "$work/backlog")"
fi
# Every response of the success scenarios must have been a success, or the numbers lie.
if grep -q "Non-2xx" "$work/wrk.log"; then
  echo; echo "non-2xx responses per run (expected only in the 404 and 422 scenarios):"
  grep "Non-2xx" "$work/wrk.log"
fi
if grep -q "Socket errors" "$work/wrk.log"; then
  echo; echo "wrk reported socket errors:"; grep "Socket errors" "$work/wrk.log"
fi
