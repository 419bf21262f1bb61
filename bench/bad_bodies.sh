#!/usr/bin/env bash
# Memory per bad request body: the release `shop` on a fresh database gets ROUNDS (default 3)
# waves of 64 concurrent `POST /users` whose 1 MiB JSON body is `{"email": [1,1,1,...]}` (a
# clean 422 each); prints the server's resident memory before, its peak (VmHWM) after, and the
# peak growth per concurrent body.
#
#   bench/bad_bodies.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p shop --bin shop
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=18020
SHOP_ADDR=127.0.0.1:$port DATABASE_URL="sqlite://$work/shop.db" SHOP_MAIL_DIR="$work/mail" \
  RUST_LOG=warn "$target/release/shop" >"$work/shop.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
  sleep 0.1
done

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$pid/status"; }
before=$(kib VmRSS)
PORT=$port ROUNDS=${ROUNDS:-3} python3 - <<'PY'
import http.client, os, threading
port = int(os.environ["PORT"])
body = b'{"email": [' + b"1," * (512 * 1024 - 8) + b"1]}"
statuses = []
def one():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/users", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    statuses.append(r.status)
for _ in range(int(os.environ["ROUNDS"])):
    threads = [threading.Thread(target=one) for _ in range(64)]
    for t in threads: t.start()
    for t in threads: t.join()
print(f"bodies: {len(statuses)} of {len(body)} bytes, statuses: {sorted(set(statuses))}")
PY
peak=$(kib VmHWM)
after=$(kib VmRSS)
echo "server RSS before: $before KiB; peak: $peak KiB; after: $after KiB"
echo "peak growth per concurrent body: $(( (peak - before) / 64 )) KiB"
