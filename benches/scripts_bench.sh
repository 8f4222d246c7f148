#!/usr/bin/env bash
# Script calls through strata: `EVALSHA <sha> 0` (a script that returns 1)
# from 50 clients, pipelined (-P 16) and not (-P 1), Redis direct against
# two strata binaries in front of the same redis-server, so that the cost
# of running scripts on a connection of the client's own (see
# server/session/scripts.rs) can be compared with the binary before it.
#
#   BEFORE=/path/to/old/strata AFTER=target/release/strata bash benches/scripts_bench.sh
#
# REPEATS (default 3) rounds, each running every target once per mode in a
# rotating order (machine noise falls on all alike); medians of the rounds.
# CPU per request is the strata process's utime+stime (/proc/<pid>/stat)
# over the run, divided by its requests. Summary on stdout.
set -euo pipefail
BENCH_NAME=scripts_bench
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/bench_lib.sh
. "$here/bench_lib.sh"

AFTER=${AFTER:-$here/../target/release/strata}
BEFORE=${BEFORE:-}
REPEATS=${REPEATS:-3}
CLIENTS=${CLIENTS:-50}
N_P1=${N_P1:-100000}
N_P16=${N_P16:-500000}

bench_tmpdir "$BENCH_NAME"
free_port REDIS_PORT
redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_ping "$REDIS_PORT" redis

declare -A PORT PID
PORT[redis]=$REDIS_PORT
targets=(redis)
start_strata() { # name binary
  local name=$1 bin=$2 port mport
  free_port port
  free_port mport
  "$bin" --listen "127.0.0.1:$port" --backend "127.0.0.1:$REDIS_PORT" \
    --metrics-listen "127.0.0.1:$mport" --log-level warn >"$TMP/$name.log" 2>&1 &
  PID[$name]=$!
  PIDS+=($!)
  PORT[$name]=$port
  wait_ping "$port" "$name"
  targets+=("$name")
}
[ -n "$BEFORE" ] && start_strata before "$BEFORE"
start_strata after "$AFTER"

SHA=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "return 1")
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

RAW="$TMP/raw.txt"
: >"$RAW"
for round in $(seq "$REPEATS"); do
  for mode in 16 1; do
    n=$N_P16
    [ "$mode" = 1 ] && n=$N_P1
    # Rotate the order each round.
    order=("${targets[@]:round%${#targets[@]}}" "${targets[@]:0:round%${#targets[@]}}")
    for t in "${order[@]}"; do
      before_cpu=0
      [ "$t" != redis ] && before_cpu=$(cpu_ticks "${PID[$t]}")
      rps=$(redis-benchmark -h 127.0.0.1 -p "${PORT[$t]}" -c "$CLIENTS" -n "$n" -P "$mode" --csv \
        EVALSHA "$SHA" 0 | awk -F'","' 'NR==2 {print $2}')
      us=-
      if [ "$t" != redis ]; then
        after_cpu=$(cpu_ticks "${PID[$t]}")
        us=$(awk -v d=$((after_cpu - before_cpu)) -v t="$TICK" -v n="$n" 'BEGIN {printf "%.2f", d / t / n * 1e6}')
      fi
      echo "$mode $t $rps $us" >>"$RAW"
      echo "round $round -P $mode $t: $rps req/s, strata CPU $us us/req" >&2
    done
  done
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
echo "EVALSHA <sha> 0, -c $CLIENTS, medians of $REPEATS rounds (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-6s %-8s %12s %14s %10s\n' mode target 'req/s' 'CPU us/req' 'vs redis'
for mode in 16 1; do
  base=$(awk -v m="$mode" '$1==m && $2=="redis" {print $3}' "$RAW" | median)
  for t in "${targets[@]}"; do
    rps=$(awk -v m="$mode" -v t="$t" '$1==m && $2==t {print $3}' "$RAW" | median)
    us=$(awk -v m="$mode" -v t="$t" '$1==m && $2==t && $4!="-" {print $4}' "$RAW" | median)
    [ "$t" = redis ] && us=-
    printf '%-6s %-8s %12s %14s %10s\n' "-P $mode" "$t" "$rps" "$us" \
      "$(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2f", a / b}')"
  done
done
