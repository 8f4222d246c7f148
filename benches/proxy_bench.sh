#!/usr/bin/env bash
# End-to-end throughput and latency: redis-benchmark against a redis-server
# directly, through strata, and through twemproxy (nutcracker), all on this
# machine, in one run. `make bench` runs it after building strata in release.
#
# For each repeat, every target is measured once per mode, in a
# rotating order, so that machine noise (2 shared cores here) affects all
# three alike; the table shows medians over the repeats and the ratios of
# those medians. Besides the -c 50 targets at -P 1 and -P 16, a one-client
# run shows the hop latency itself. CPU time per request of the process
# behind each port (strata, nutcracker, redis-server) comes from
# /proc/<pid>/stat (utime+stime) read before and after each run.
#
# This is a measurement: it prints PASS/MISS next to each target and exits 0
# whatever the figures are. It exits non-zero only when it cannot measure
# (a tool is missing, a server does not start).
#
# Environment:
#   REPEATS   runs per target and mode (default 3)
#   N_P1      requests per test at -P 1  (default 200000)
#   N_P16     requests per test at -P 16 (default 1000000)
#   N_C1      requests per test of the one-client hop-latency run (-c 1 -P 1;
#             default 20000; 0 skips it)
#   CLIENTS   redis-benchmark -c (default 50)
#   VALUE     redis-benchmark -d (default 128)
#   STRATA    the strata binary (default target/release/strata)
#   STRATA_ARGS  extra strata flags, e.g. "--worker-threads 1" (default none)
#   OUT       the summary file (default target/bench/proxy-latest.txt)

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

REPEATS=${REPEATS:-3}
N_P1=${N_P1:-200000}
N_P16=${N_P16:-1000000}
N_C1=${N_C1:-20000}
CLIENTS=${CLIENTS:-50}
VALUE=${VALUE:-128}
STRATA=${STRATA:-$ROOT/target/release/strata}
STRATA_ARGS=${STRATA_ARGS:-}
OUT=${OUT:-$ROOT/target/bench/proxy-latest.txt}

for tool in redis-server redis-cli redis-benchmark nutcracker; do
  if ! command -v "$tool" >/dev/null; then
    echo "proxy_bench: $tool not found; install it: apt-get install redis-server redis-tools nutcracker (or run 'make bench')" >&2
    exit 1
  fi
done
if [ ! -x "$STRATA" ]; then
  echo "proxy_bench: $STRATA not found; building it (cargo build --release)" >&2
  cargo build --release
fi

BENCH_NAME=proxy_bench
# shellcheck source=benches/bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_tmpdir strata-bench


# utime+stime of a process, in clock ticks. Field 2 (comm) may hold spaces,
# so count from the closing parenthesis: utime and stime are fields 14, 15.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat")
  stat=${stat##*) }
  # After "comm) " the state is field 3; utime is then the 12th word.
  awk '{ print $12 + $13 }' <<<"$stat"
}
CLK_TCK=$(getconf CLK_TCK)

free_port REDIS_PORT
free_port STRATA_PORT
free_port METRICS_PORT
free_port TWEM_PORT
free_port TWEM_STATS_PORT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile "$TMP/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_ping "$REDIS_PORT" redis

# shellcheck disable=SC2086 # STRATA_ARGS is a list of flags
"$STRATA" --listen "127.0.0.1:$STRATA_PORT" --backend "127.0.0.1:$REDIS_PORT" \
  --metrics-listen "127.0.0.1:$METRICS_PORT" --log-level warn $STRATA_ARGS 2>"$TMP/strata.log" &
STRATA_PID=$!
PIDS+=("$STRATA_PID")
wait_ping "$STRATA_PORT" strata

cat >"$TMP/nutcracker.yml" <<EOF
strata_bench:
  listen: 127.0.0.1:$TWEM_PORT
  redis: true
  hash: fnv1a_64
  distribution: ketama
  preconnect: true
  auto_eject_hosts: false
  timeout: 5000
  server_connections: 1
  servers:
    - 127.0.0.1:$REDIS_PORT:1
EOF
if ! nutcracker -t -c "$TMP/nutcracker.yml" >"$TMP/nutcracker-test.log" 2>&1; then
  echo "proxy_bench: nutcracker rejects the generated config:" >&2
  cat "$TMP/nutcracker-test.log" "$TMP/nutcracker.yml" >&2
  exit 1
fi
nutcracker -c "$TMP/nutcracker.yml" -s "$TWEM_STATS_PORT" -a 127.0.0.1 \
  -o "$TMP/twemproxy.log" -p "$TMP/nutcracker.pid" -v 4 &
TWEM_PID=$!
PIDS+=("$TWEM_PID")
wait_ping "$TWEM_PORT" twemproxy

# Every target must really proxy before it is timed.
for port in "$STRATA_PORT" "$TWEM_PORT"; do
  redis-cli -p "$port" set strata-bench-check ok >/dev/null
  if [ "$(redis-cli -p "$port" get strata-bench-check)" != "ok" ]; then
    echo "proxy_bench: SET/GET through port $port does not work" >&2
    exit 1
  fi
done

port_of() {
  case "$1" in
    direct) echo "$REDIS_PORT" ;;
    strata) echo "$STRATA_PORT" ;;
    twemproxy) echo "$TWEM_PORT" ;;
  esac
}
pid_of() {
  case "$1" in
    direct) echo "$REDIS_PID" ;;
    strata) echo "$STRATA_PID" ;;
    twemproxy) echo "$TWEM_PID" ;;
  esac
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# What is measured, taken now: the tree may change while the benchmark runs.
BUILD="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes'), binary built $(date -u -r "$STRATA" '+%Y-%m-%d %H:%M UTC')"
TARGETS=(direct strata twemproxy)
RESULTS=$TMP/results.csv # repeat,mode,target,test,rps,p50_ms,cpu_us_per_req
# Modes: "1" and "16" are -c $CLIENTS at that pipeline depth (the targets);
# "c1" is one client without pipelining, whose p50 is the hop latency
# itself rather than mostly queueing behind 49 other clients.
MODES=(1 16)
if [ "$N_C1" -gt 0 ]; then MODES+=(c1); fi
: >"$RESULTS"

echo "proxy_bench: redis :$REDIS_PORT, strata :$STRATA_PORT (pid $STRATA_PID), twemproxy :$TWEM_PORT; REPEATS=$REPEATS, -c $CLIENTS -d $VALUE, N=$N_P1 (-P 1) / $N_P16 (-P 16) / $N_C1 (-c 1)" >&2

for r in $(seq "$REPEATS"); do
  for mode in "${MODES[@]}"; do
    case "$mode" in
      1) n=$N_P1 clients=$CLIENTS pipeline=1 ;;
      16) n=$N_P16 clients=$CLIENTS pipeline=16 ;;
      c1) n=$N_C1 clients=1 pipeline=1 ;;
    esac
    # Rotate the order each repeat so no target always runs first or last.
    for k in 0 1 2; do
      target=${TARGETS[$(((k + r) % 3))]}
      port=$(port_of "$target")
      pid=$(pid_of "$target")
      before=$(cpu_ticks "$pid")
      csv=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -d "$VALUE" -t set,get -n "$n" -P "$pipeline" --csv 2>>"$TMP/benchmark.err" || true)
      after=$(cpu_ticks "$pid")
      # SET and GET: n requests each. CPU per request in µs of the process behind the port.
      cpu_us=$(awk -v a="$after" -v b="$before" -v t="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / t * 1e6 / (2 * n) }')
      # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
      awk -F, -v r="$r" -v p="$mode" -v tg="$target" -v cpu="$cpu_us" '
        NR > 1 { gsub(/"/, ""); print r "," p "," tg "," $1 "," $2 "," $5 "," cpu }' <<<"$csv" >>"$RESULTS"
      printf '  repeat %s -c %-2s -P %-2s %-9s %s  cpu %s us/req\n' "$r" "$clients" "$pipeline" "$target" \
        "$(awk -F, 'NR > 1 { gsub(/"/, ""); printf "%s %s rps p50 %s ms  ", $1, $2, $5 }' <<<"$csv")" "$cpu_us" >&2
    done
  done
done

# Median of field 5 (rps), 6 (p50) or 7 (cpu) for one mode/target/test.
median() { # mode target test field
  awk -F, -v p="$1" -v tg="$2" -v t="$3" -v f="$4" '$2 == p && $3 == tg && $4 == t { print $f }' "$RESULTS" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NA"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f", a / b }'; }
verdict() { # value op threshold
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "NA") { print "MISS (no data)"; exit }
    ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
    print ok ? "PASS" : "MISS" }'
}

mkdir -p "$(dirname "$OUT")"
{
  echo "strata proxy benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
  echo "$(redis-server --version | cut -d' ' -f1-3), $(nutcracker -V 2>&1 | head -1), strata $BUILD"
  echo "redis-benchmark -c $CLIENTS -d $VALUE -t set,get -n $N_P1 -P 1 | -n $N_P16 -P 16 --csv; medians of $REPEATS runs per target, interleaved"
  [ "$N_C1" -gt 0 ] && echo "hop latency: redis-benchmark -c 1 -d $VALUE -t set,get -n $N_C1 -P 1 --csv"
  echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "twemproxy: server_connections 1; strata: default config (2 multiplexed backend connections per protocol)${STRATA_ARGS:+, flags: $STRATA_ARGS}"
  echo
  echo "Throughput (requests/s, median)"
  printf '%-10s %12s %12s %12s %14s %14s\n' test direct strata twemproxy strata/direct strata/twem
  for pipeline in 1 16; do
    for t in SET GET; do
      d=$(median "$pipeline" direct "$t" 5)
      s=$(median "$pipeline" strata "$t" 5)
      w=$(median "$pipeline" twemproxy "$t" 5)
      printf '%-10s %12s %12s %12s %14s %14s\n' "$t -P $pipeline" "$d" "$s" "$w" "$(ratio "$s" "$d")" "$(ratio "$s" "$w")"
    done
  done
  echo
  echo "p50 latency at -P 1 (µs, median of the runs' p50)"
  printf '%-15s %10s %10s %10s %15s\n' test direct strata twemproxy strata-direct
  for mode in 1 c1; do
    [ "$mode" = c1 ] && [ "$N_C1" -le 0 ] && continue
    if [ "$mode" = 1 ]; then label="-c $CLIENTS -P 1"; else label="-c 1 -P 1"; fi
    for t in SET GET; do
      d=$(median "$mode" direct "$t" 6)
      s=$(median "$mode" strata "$t" 6)
      w=$(median "$mode" twemproxy "$t" 6)
      printf '%-15s %10s %10s %10s %15s\n' "$t $label" \
        "$(awk -v x="$d" 'BEGIN { printf "%.0f", x * 1000 }')" \
        "$(awk -v x="$s" 'BEGIN { printf "%.0f", x * 1000 }')" \
        "$(awk -v x="$w" 'BEGIN { printf "%.0f", x * 1000 }')" \
        "$(awk -v a="$s" -v b="$d" 'BEGIN { printf "%+.0f", (a - b) * 1000 }')"
    done
  done
  echo "(with $CLIENTS clients the p50 is mostly queueing on a CPU-bound machine; -c 1 shows the hop itself)"
  echo
  echo "CPU time per request (µs, utime+stime of the process, median; SET and GET runs together)"
  printf '%-8s %10s %10s %10s\n' "" strata twemproxy redis
  for mode in "${MODES[@]}"; do
    case "$mode" in 1) label="-P 1" ;; 16) label="-P 16" ;; c1) label="-c 1" ;; esac
    printf '%-8s %10s %10s %10s\n' "$label" \
      "$(median "$mode" strata SET 7)" "$(median "$mode" twemproxy SET 7)" "$(median "$mode" direct SET 7)"
  done
  echo "(redis column: redis-server's own CPU when benchmarked directly)"
  echo
  echo "Targets"
  for t in SET GET; do
    d=$(median 16 direct "$t" 5); s=$(median 16 strata "$t" 5); w=$(median 16 twemproxy "$t" 5)
    rd=$(ratio "$s" "$d"); rw=$(ratio "$s" "$w")
    printf '  %-4s -P 16  strata/direct    %6s >= 0.70   %s\n' "$t" "$rd" "$(verdict "$rd" ">=" 0.7)"
    printf '  %-4s -P 16  strata/twemproxy %6s >= 1.50   %s\n' "$t" "$rw" "$(verdict "$rw" ">=" 1.5)"
  done
  for t in SET GET; do
    d=$(median 1 direct "$t" 6); s=$(median 1 strata "$t" 6)
    diff=$(awk -v a="$s" -v b="$d" 'BEGIN { printf "%.0f", (a - b) * 1000 }')
    printf '  %-4s -P 1   p50 strata-direct %5s µs <= 50 µs  %s\n' "$t" "$diff" "$(verdict "$diff" "<=" 50)"
  done
} | tee "$OUT"
cp "$RESULTS" "${OUT%.txt}-raw.csv"
echo "(summary written to $OUT, every run in ${OUT%.txt}-raw.csv)"
exit 0
