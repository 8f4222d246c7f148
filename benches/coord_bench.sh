#!/usr/bin/env bash
# Locks through strata (issue 15): uncontended LOCK.ACQUIRE + LOCK.RELEASE
# pairs per second with 50 clients, each on a lock of its own (target
# >= 20,000 pairs/s on the redis backend), and contended handoffs on ONE
# lock (WAIT): handoffs per second and the release-to-next-holder latency,
# p50 and p99. The client is benches/coord.rs (tokio, plain RESP).
#
#   bash benches/coord_bench.sh        (after `make release`)
#
# REPEATS (default 3) rounds; every round's lines are kept. Summary on
# stdout and in target/bench/coord-latest.txt.
set -euo pipefail
BENCH_NAME=coord_bench
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/bench_lib.sh
. "$here/bench_lib.sh"

STRATA=${STRATA:-$here/../target/release/strata}
REPEATS=${REPEATS:-3}
export COORD_CLIENTS=${COORD_CLIENTS:-50}
export COORD_SECONDS=${COORD_SECONDS:-10}

bench_tmpdir "$BENCH_NAME"
free_port REDIS_PORT
redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_ping "$REDIS_PORT" redis
free_port STRATA_PORT
free_port METRICS_PORT
"$STRATA" --listen "127.0.0.1:$STRATA_PORT" --backend "127.0.0.1:$REDIS_PORT" \
  --metrics-listen "127.0.0.1:$METRICS_PORT" --log-level warn >"$TMP/strata.log" 2>&1 &
PIDS+=($!)
wait_ping "$STRATA_PORT" strata

cargo bench --bench coord --no-run >&2
OUT="$TMP/out.txt"
: >"$OUT"
for round in $(seq "$REPEATS"); do
  echo "round $round" >&2
  COORD_BENCH_ADDR="127.0.0.1:$STRATA_PORT" cargo bench --bench coord 2>/dev/null | tee -a "$OUT" >&2
done
mkdir -p "$here/../target/bench"
{
  echo "coord_bench: $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "strata $("$STRATA" --version 2>/dev/null || echo '?'), redis $(redis-server --version | awk '{print $3}')"
  cat "$OUT"
} | tee "$here/../target/bench/coord-latest.txt"
