#!/usr/bin/env bash
# The PostgreSQL job queue against its baseline on this machine.
#
#   bench/pg_jobs.sh [jobs] [seconds]      (defaults 20000 jobs for keel, 10 s for pgbench)
#
# Baseline: pgbench running the three statements of a queue, 100 jobs at a time, on a plain
# copy of keel's table (its indexes, no triggers): insert 100 due jobs; claim 100 with
# `FOR UPDATE SKIP LOCKED` on the partial index of due jobs; mark 100 running ones done. Each
# pgbench transaction moves 100 jobs through, so jobs/s = 100 × tps. 4 clients, 2 threads.
# Then keel (crates/bench/src/bin/jobs_bench_postgres.rs): no-op jobs enqueued 100 to a
# transaction while the workers claim and complete them, with 1 and with 2 instances.
#
# DATABASE_URL names the server and database (default postgres://postgres@127.0.0.1:5432/test);
# both work in the schema keel_jobs_bench, made anew.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-20000}
secs=${2:-10}
url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
command -v pgbench >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client; }

cargo build --release -q -p bench --bin jobs_bench_postgres
target=${CARGO_TARGET_DIR:-target}
# keel first: it makes the schema and keel's table, which the baseline copies.
keel=$(DATABASE_URL="$url" "$target/release/jobs_bench_postgres" "$jobs")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PGOPTIONS="-c search_path=keel_jobs_bench"
psql -q "$url" <<'SQL'
DROP TABLE IF EXISTS pgbench_jobs;
CREATE TABLE pgbench_jobs (LIKE keel_jobs INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES INCLUDING CONSTRAINTS);
SQL
cat >"$work/queue.sql" <<'SQL'
INSERT INTO pgbench_jobs (queue, kind, payload, max_attempts, run_at)
  SELECT 'default', 'noop', '{"n":1}', 8, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
  FROM generate_series(1, 100);
WITH due AS (
  SELECT id FROM pgbench_jobs
  WHERE state = 'pending' AND run_at <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint
  ORDER BY run_at LIMIT 100 FOR UPDATE SKIP LOCKED)
UPDATE pgbench_jobs j SET state = 'running', attempts = j.attempts + 1,
  locked_until = (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 10000
  FROM due WHERE j.id = due.id;
WITH done AS (
  SELECT id FROM pgbench_jobs WHERE state = 'running'
  ORDER BY locked_until LIMIT 100 FOR UPDATE SKIP LOCKED)
UPDATE pgbench_jobs j SET state = 'succeeded', locked_until = NULL, finished_at = now()
  FROM done WHERE j.id = done.id;
SQL
tps=$(pgbench -n -c 4 -j 2 -T "$secs" -f "$work/queue.sql" "$url" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')
baseline=$(awk "BEGIN{printf \"%.0f\", $tps * 100}")

echo "$keel"
echo
echo "| baseline: pgbench, 3 statements × 100 jobs, 4 clients | jobs/s |"
echo "|---|---|"
echo "| $secs s | $baseline |"
echo
echo "$keel" | awk -F'|' -v base="$baseline" '$2 ~ /^ [0-9]+ $/ {
  printf "keel with %d instance(s) / baseline: %.2f\n", $2, $3 / base }'
