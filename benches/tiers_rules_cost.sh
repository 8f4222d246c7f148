#!/usr/bin/env bash
# Instructions per request of plain commands on keys no rule names, under
# callgrind: strata with no tier config against strata with 20 [[tier]]
# rules none of which matches (docs/PERFORMANCE.md, "Postgres tiers: HA,
# observability, rule cost"). The wall-clock comparison in tiers_bench.sh
# (rules20) is the issue's measure, but on the shared 2-core machine its
# runs move by ±50%; instruction counts do not.
#
# Load: redis-benchmark -c 50 -d 16 -r 100000 -P 16, N GET then N SET of
# key:*. Environment: STRATA (target/release/strata), N (50000).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_NAME=tiers-rules-cost
# shellcheck source=benches/bench_lib.sh
source benches/bench_lib.sh
for tool in valgrind callgrind_annotate callgrind_control redis-server redis-benchmark redis-cli initdb; do
  command -v "$tool" >/dev/null || [ "$tool" = initdb ] || {
    echo "tiers_rules_cost: $tool is missing (apt-get install valgrind redis-server redis-tools)" >&2
    exit 1
  }
done
STRATA=${STRATA:-target/release/strata}
N=${N:-50000}
bench_tmpdir strata-rules-cost
free_port REDIS_PORT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile "$TMP/redis.log" &
PIDS+=($!)
wait_ping "$REDIS_PORT" redis

# Under callgrind strata runs ~50 times slower: most replies would pass the
# slow log's 10 ms and be recorded (tens of thousands of instructions each,
# as many as timing decides), so its threshold is put out of reach, as in
# instructions.sh.
printf '[server]\nslowlog_log_slower_than_us = 100000000\n[backend]\naddress = "127.0.0.1:%s"\n' "$REDIS_PORT" >"$TMP/plain.toml"
cp "$TMP/plain.toml" "$TMP/rules20.toml"
# Postgres is never reached: no command names a rule's keys (the pool is
# lazy; the background migration retries against a closed port).
printf '[postgres]\nurl = "postgres://postgres@127.0.0.1:1/postgres"\n' >>"$TMP/rules20.toml"
for i in $(seq 0 19); do
  printf '[[tier]]\npattern = "%s%d:*"\npolicy = "mirror"\nwrite = "through"\n' \
    "$(echo durable session order user cart invoice ledger audit | cut -d' ' -f$((i % 8 + 1)))" "$i" >>"$TMP/rules20.toml"
done

measure() { # name config
  local port metrics pid total
  free_port port
  free_port metrics
  valgrind --tool=callgrind --callgrind-out-file="$TMP/$1.out" \
    "$STRATA" --config "$2" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics" \
    --log-level error >"$TMP/strata-$1.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for i in $(seq 300); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    [ "$i" = 300 ] && { echo "tiers_rules_cost: strata ($1) did not start" >&2; cat "$TMP/strata-$1.log" >&2; exit 1; }
    sleep 0.1
  done
  callgrind_control -z "$pid" >/dev/null 2>&1
  redis-benchmark -p "$port" -c 50 -d 16 -r 100000 -n "$N" -P 16 -q GET key:__rand_int__ >/dev/null
  redis-benchmark -p "$port" -c 50 -d 16 -r 100000 -n "$N" -P 16 -q SET key:__rand_int__ v >/dev/null
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  total=$(callgrind_annotate "$TMP/$1.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  [ -n "$total" ] || { echo "tiers_rules_cost: no callgrind totals for $1" >&2; exit 1; }
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$TMP/$1.out" "$KEEP/callgrind-$1.out"; fi
  echo "$((total / (2 * N)))"
}
a=$(measure plain "$TMP/plain.toml")
b=$(measure rules20 "$TMP/rules20.toml")
echo "instructions per request, GET+SET key:* -P 16 ($N each): no tier config $a, 20 non-matching rules $b:" \
  "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%+.1f%%", (b-a)/a*100}')"
