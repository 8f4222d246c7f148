#!/usr/bin/env bash
# Sentinel failover through strata: 5 forced failovers (SENTINEL FAILOVER)
# under a steady write load, on a real topology that the benchmark starts
# itself (one primary, two replicas, three sentinels; down-after 1000 ms,
# failover-timeout 5000 ms). Prints the median and worst of
#   (a) the write unavailability a client sees through strata, and
#   (b) strata's own part after Sentinel's switch: from +promoted-slave (and
#       from the first +switch-master) to strata's first acknowledged write.
# `make bench` and `make bench-sentinel` run it. The program is
# benches/sentinel_failover.rs (cargo bench target, release profile).
#
# This is a measurement: it exits 0 whatever the figures are, and non-zero
# only when it cannot measure (a tool is missing, a server does not start).
#
# Environment:
#   FAILOVERS  forced failovers (default 5)
#   WRITERS    writer connections, each SET + INCR in a loop (default 4)
#   OUT        the summary file (default target/bench/sentinel-failover-latest.txt)
#   STRATA_BENCH_LOG=1  show strata's log lines

set -euo pipefail

cd "$(dirname "$0")/.."

for tool in redis-server redis-sentinel; do
  if ! command -v "$tool" >/dev/null; then
    echo "sentinel_failover: $tool not found; install it: apt-get install redis-server redis-sentinel (or run 'make deps')" >&2
    exit 1
  fi
done

export FAILOVERS=${FAILOVERS:-5}
export WRITERS=${WRITERS:-4}
export OUT=${OUT:-$PWD/target/bench/sentinel-failover-latest.txt}
mkdir -p "$(dirname "$OUT")"

echo "sentinel_failover: $FAILOVERS forced failovers, $WRITERS writers; summary in $OUT" >&2
cargo bench --bench sentinel_failover
