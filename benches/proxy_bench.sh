#!/usr/bin/env bash
# End-to-end throughput, latency and CPU per request: redis-benchmark against
# a redis-server directly, through strata, through twemproxy (nutcracker)
# and, when PREDIXY_BIN names a predixy binary, through predixy, all on this
# machine, in one run. `make bench` runs it after building strata in release.
#
# For each repeat, every target is measured once per mode, in an order that
# rotates from one repeat to the next, so that machine noise (2 shared cores
# here) falls on all of them alike; the tables show medians over the repeats
# and the ratios of those medians, all from this one run. Modes: -c 50 at
# -P 1 and at -P 16 (the targets), and a one-client run (-c 1 -P 1) whose
# p50 is the hop latency itself. Each run gives throughput, p50 and p99
# (redis-benchmark --csv) and the CPU time per request of the process
# behind the port (strata, nutcracker, predixy; redis-server when direct)
# and of redis-server behind it, from /proc/<pid>/stat (utime+stime, all
# threads) read before and after the run.
#
# This is a measurement: it prints PASS/MISS next to each target (issue 20's,
# then the earlier ones) and exits 0 whatever the figures are. It exits
# non-zero only when it cannot measure (a tool is missing, a server does not
# start or does not proxy SET/GET).
#
# Environment:
#   REPEATS      runs per target and mode (default 5)
#   N_P1         requests per test at -P 1  (default 200000)
#   N_P16        requests per test at -P 16 (default 1000000)
#   N_C1         requests per test of the one-client hop-latency run (-c 1 -P 1;
#                default 20000; 0 skips it)
#   CLIENTS      redis-benchmark -c (default 50)
#   RUN_TIMEOUT  seconds after which one redis-benchmark run is stopped and
#                counted as failed (default 300)
#   VALUE        redis-benchmark -d (default 128)
#   STRATA       the strata binary (default target/release/strata)
#   STRATA_ARGS  extra strata flags, e.g. "--worker-threads 1" (default none)
#   PREDIXY_BIN  a predixy binary (e.g. ../shared/anchors/predixy); unset: no
#                predixy column, and issue 20's predixy targets say SKIP
#   PREDIXY_CONF its config template, BACKEND_PORT and LISTEN_PORT replaced
#                with sed (default predixy.conf.template next to PREDIXY_BIN;
#                the one in ../shared/anchors runs one worker thread)
#   OUT          the summary file (default target/bench/proxy-latest.txt)

set -euo pipefail

# Relative paths given by the caller are resolved before the cd below.
PREDIXY_BIN=${PREDIXY_BIN:-}
if [ -n "$PREDIXY_BIN" ]; then
  if [ ! -x "$PREDIXY_BIN" ]; then
    echo "proxy_bench: PREDIXY_BIN=$PREDIXY_BIN is not an executable file (unset it to skip the predixy column)" >&2
    exit 1
  fi
  PREDIXY_BIN=$(realpath "$PREDIXY_BIN")
  PREDIXY_CONF=${PREDIXY_CONF:-$(dirname "$PREDIXY_BIN")/predixy.conf.template}
  if [ ! -f "$PREDIXY_CONF" ]; then
    echo "proxy_bench: predixy config template $PREDIXY_CONF not found (set PREDIXY_CONF)" >&2
    exit 1
  fi
  PREDIXY_CONF=$(realpath "$PREDIXY_CONF")
fi

cd "$(dirname "$0")/.."
ROOT=$PWD

REPEATS=${REPEATS:-5}
N_P1=${N_P1:-200000}
N_P16=${N_P16:-1000000}
N_C1=${N_C1:-20000}
CLIENTS=${CLIENTS:-50}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
VALUE=${VALUE:-128}
STRATA=${STRATA:-$ROOT/target/release/strata}
STRATA_ARGS=${STRATA_ARGS:-}
OUT=${OUT:-$ROOT/target/bench/proxy-latest.txt}

for tool in redis-server redis-cli redis-benchmark nutcracker timeout; do
  if ! command -v "$tool" >/dev/null; then
    echo "proxy_bench: $tool not found; install it: apt-get install redis-server redis-tools nutcracker coreutils (or run 'make bench')" >&2
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

# The redis-benchmark being run, if any: it runs in the background (under
# `timeout`: redis-benchmark spins forever on a port whose proxy has died)
# so that a signal reaches the traps at once, and the exit trap stops it
# before the servers.
BENCH_PID=
# shellcheck disable=SC2317 # called from the exit trap
stop_bench() {
  if [ -n "$BENCH_PID" ]; then
    kill "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
    BENCH_PID=
  fi
}
trap 'stop_bench; bench_cleanup' EXIT

# utime+stime of a process (all its threads), in clock ticks; NA when the
# process is gone. Field 2 (comm) may hold spaces, so count from the closing
# parenthesis: utime and stime (fields 14, 15) are then the 12th and 13th words.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo NA; return 0; }
  stat=${stat##*) }
  awk '{ print $12 + $13 }' <<<"$stat"
}
CLK_TCK=$(getconf CLK_TCK)

free_port REDIS_PORT
free_port STRATA_PORT
free_port METRICS_PORT
free_port TWEM_PORT
free_port TWEM_STATS_PORT
PREDIXY_PORT=
[ -n "$PREDIXY_BIN" ] && free_port PREDIXY_PORT

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

TARGETS=(direct strata twemproxy)
PREDIXY_PID=
PREDIXY_VERSION=
if [ -n "$PREDIXY_BIN" ]; then
  # The template: one standalone backend, one worker thread (as strata's
  # default runtime); predixy logs to stdout.
  sed -e "s/BACKEND_PORT/$REDIS_PORT/g" -e "s/LISTEN_PORT/$PREDIXY_PORT/g" "$PREDIXY_CONF" >"$TMP/predixy.conf"
  "$PREDIXY_BIN" "$TMP/predixy.conf" >"$TMP/predixy.log" 2>&1 &
  PREDIXY_PID=$!
  PIDS+=("$PREDIXY_PID")
  wait_ping "$PREDIXY_PORT" predixy
  PREDIXY_VERSION=$("$PREDIXY_BIN" -v 2>&1 | awk '{ print $NF; exit }')
  TARGETS+=(predixy)
fi

# Every target must really proxy before it is timed.
for port in "$STRATA_PORT" "$TWEM_PORT" ${PREDIXY_PORT:+"$PREDIXY_PORT"}; do
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
    predixy) echo "$PREDIXY_PORT" ;;
  esac
}
pid_of() {
  case "$1" in
    direct) echo "$REDIS_PID" ;;
    strata) echo "$STRATA_PID" ;;
    twemproxy) echo "$TWEM_PID" ;;
    predixy) echo "$PREDIXY_PID" ;;
  esac
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# What is measured, taken now: the tree may change while the benchmark runs.
BUILD="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes'), binary built $(date -u -r "$STRATA" '+%Y-%m-%d %H:%M UTC')"
NT=${#TARGETS[@]}
# One row per repeat, mode, target and test:
#   repeat,mode,target,test,rps,p50_ms,p99_ms,cpu_us_per_req,redis_cpu_us_per_req
# cpu: the process behind the port (redis-server itself when direct);
# redis_cpu: the redis-server, behind the proxy or not. Both per request,
# SET and GET runs together (one redis-benchmark run does both).
RESULTS=$TMP/results.csv
FAILURES=$TMP/failures.txt
# Modes: "1" and "16" are -c $CLIENTS at that pipeline depth (the targets);
# "c1" is one client without pipelining, whose p50 is the hop latency
# itself rather than mostly queueing behind 49 other clients.
MODES=(1 16)
if [ "$N_C1" -gt 0 ]; then MODES+=(c1); fi
: >"$RESULTS"
: >"$FAILURES"

echo "proxy_bench: redis :$REDIS_PORT, strata :$STRATA_PORT (pid $STRATA_PID), twemproxy :$TWEM_PORT (pid $TWEM_PID)${PREDIXY_PID:+, predixy :$PREDIXY_PORT (pid $PREDIXY_PID)}; REPEATS=$REPEATS, -c $CLIENTS -d $VALUE, N=$N_P1 (-P 1) / $N_P16 (-P 16) / $N_C1 (-c 1)" >&2
[ -n "$PREDIXY_BIN" ] || echo "proxy_bench: PREDIXY_BIN unset: no predixy column (PREDIXY_BIN=../shared/anchors/predixy adds it)" >&2

per_req() { # ticks_after ticks_before requests
  awk -v a="$1" -v b="$2" -v t="$CLK_TCK" -v n="$3" \
    'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%.2f", (a - b) / t * 1e6 / n }'
}

for r in $(seq "$REPEATS"); do
  for mode in "${MODES[@]}"; do
    case "$mode" in
      1) n=$N_P1 clients=$CLIENTS pipeline=1 ;;
      16) n=$N_P16 clients=$CLIENTS pipeline=16 ;;
      c1) n=$N_C1 clients=1 pipeline=1 ;;
    esac
    # Rotate the order each repeat so no target always runs first or last.
    for ((k = 0; k < NT; k++)); do
      target=${TARGETS[$(((k + r) % NT))]}
      port=$(port_of "$target")
      pid=$(pid_of "$target")
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "repeat $r mode $mode $target: not run, the $target process has exited (the end of its log is in the summary)" >>"$FAILURES"
        printf '%s\n' "$r,$mode,$target,SET,NA,NA,NA,NA,NA" "$r,$mode,$target,GET,NA,NA,NA,NA,NA" >>"$RESULTS"
        echo "  repeat $r mode $mode $target: not run, it has exited" >&2
        continue
      fi
      before=$(cpu_ticks "$pid")
      rbefore=$(cpu_ticks "$REDIS_PID")
      rc=0
      timeout -k 5 "$RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -d "$VALUE" -t set,get \
        -n "$n" -P "$pipeline" --csv >"$TMP/run.csv" 2>>"$TMP/benchmark.err" &
      BENCH_PID=$!
      wait "$BENCH_PID" || rc=$?
      BENCH_PID=
      after=$(cpu_ticks "$pid")
      rafter=$(cpu_ticks "$REDIS_PID")
      cpu_us=$(per_req "$after" "$before" $((2 * n)))
      rcpu_us=$(per_req "$rafter" "$rbefore" $((2 * n)))
      # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
      # "p95_latency_ms","p99_latency_ms","max_latency_ms" (7.0.15).
      rows=$(awk -F, 'NR > 1 { gsub(/"/, ""); print $1 "," $2 "," $5 "," $7 }' "$TMP/run.csv")
      nrows=$(grep -c . <<<"$rows" || true)
      if [ "$rc" != 0 ] || [ "$nrows" != 2 ] || [ "$after" = NA ]; then
        why="redis-benchmark exit $rc"
        [ "$rc" = 124 ] && why="stopped after ${RUN_TIMEOUT}s (timeout)"
        [ "$after" = NA ] && why="$why, the $target process exited during the run"
        echo "repeat $r mode $mode $target: $why, $nrows CSV rows" >>"$FAILURES"
        rows=$'SET,NA,NA,NA\nGET,NA,NA,NA'
        cpu_us=NA rcpu_us=NA
      fi
      awk -F, -v pre="$r,$mode,$target" -v post="$cpu_us,$rcpu_us" '{ print pre "," $0 "," post }' <<<"$rows" >>"$RESULTS"
      printf '  repeat %s -c %-2s -P %-2s %-9s %s cpu %s us/req, redis-server %s\n' "$r" "$clients" "$pipeline" "$target" \
        "$(awk -F, '{ printf "%s %s rps p50 %s p99 %s ms  ", $1, $2, $3, $4 }' <<<"$rows")" "$cpu_us" "$rcpu_us" >&2
    done
  done
done

# Median of field 5 (rps), 6 (p50), 7 (p99), 8 (cpu) or 9 (redis cpu) for
# one mode/target/test, NA values left out.
median() { # mode target test field
  awk -F, -v p="$1" -v tg="$2" -v t="$3" -v f="$4" '$2 == p && $3 == tg && $4 == t && $f != "NA" { print $f }' "$RESULTS" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NA"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
has() { # target: was it measured in this run?
  local t
  for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
  return 1
}
# Ratio of two medians, 2 decimals (3 for the targets' lines: a verdict on a
# rounded 1.00 could pass a 0.996).
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.*f", d, a / b }'; }
int() { awk -v x="$1" 'BEGIN { if (x == "NA" || x == "") print "NA"; else printf "%.0f", x }'; }
us() { awk -v x="$1" 'BEGIN { if (x == "NA" || x == "") print "NA"; else printf "%.0f", x * 1000 }'; }
verdict() { # value op threshold
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "NA") { print "MISS (no data)"; exit }
    ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
    print ok ? "PASS" : "MISS" }'
}
mode_label() {
  case "$1" in 1) echo "-c $CLIENTS -P 1" ;; 16) echo "-c $CLIENTS -P 16" ;; c1) echo "-c 1 -P 1" ;; esac
}
# One column per target measured: direct strata twemproxy [predixy].
COLS=("${TARGETS[@]}")

mkdir -p "$(dirname "$OUT")"
{
  echo "strata proxy benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
  echo "$(redis-server --version | cut -d' ' -f1-3), $(nutcracker -V 2>&1 | head -1), ${PREDIXY_VERSION:-predixy not run (PREDIXY_BIN unset)}, strata $BUILD"
  echo "redis-benchmark -c $CLIENTS -d $VALUE -t set,get -n $N_P1 -P 1 | -n $N_P16 -P 16 --csv; medians of $REPEATS runs per target, interleaved in a rotating order"
  if [ "$N_C1" -gt 0 ]; then echo "hop latency: redis-benchmark -c 1 -d $VALUE -t set,get -n $N_C1 -P 1 --csv"; fi
  echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "twemproxy: server_connections 1; strata: default config (2 multiplexed backend connections per protocol)${STRATA_ARGS:+, flags: $STRATA_ARGS}${PREDIXY_PID:+; predixy: $(basename "$PREDIXY_CONF") (WorkerThreads $(awk '$1 == "WorkerThreads" { print $2 }' "$TMP/predixy.conf"))}"
  echo
  echo "Throughput (requests/s, median)"
  printf '%-10s' test
  for c in "${COLS[@]}"; do printf ' %12s' "$c"; done
  printf ' %14s %12s' strata/direct strata/twem
  has predixy && printf ' %15s' strata/predixy
  echo
  for pipeline in 1 16; do
    for t in SET GET; do
      printf '%-10s' "$t -P $pipeline"
      for c in "${COLS[@]}"; do printf ' %12s' "$(int "$(median "$pipeline" "$c" "$t" 5)")"; done
      s=$(median "$pipeline" strata "$t" 5)
      printf ' %14s %12s' "$(ratio "$s" "$(median "$pipeline" direct "$t" 5)")" "$(ratio "$s" "$(median "$pipeline" twemproxy "$t" 5)")"
      has predixy && printf ' %15s' "$(ratio "$s" "$(median "$pipeline" predixy "$t" 5)")"
      echo
    done
  done
  echo
  echo "Latency (µs, median of the runs' p50 / p99)"
  printf '%-16s' test
  for c in "${COLS[@]}"; do printf ' %13s' "$c"; done
  echo
  for mode in "${MODES[@]}"; do
    for t in SET GET; do
      printf '%-16s' "$t $(mode_label "$mode")"
      for c in "${COLS[@]}"; do
        printf ' %13s' "$(us "$(median "$mode" "$c" "$t" 6)") / $(us "$(median "$mode" "$c" "$t" 7)")"
      done
      echo
    done
  done
  echo "(redis-benchmark's histogram steps are coarse; with $CLIENTS clients the p50 is mostly queueing on a CPU-bound machine; -c 1 shows the hop itself)"
  echo
  echo "CPU time per request (µs, utime+stime of the process and all its threads, median; SET and GET runs together)"
  printf '%-8s' ""
  for c in "${COLS[@]}"; do printf ' %12s' "$c"; done
  echo
  for mode in "${MODES[@]}"; do
    case "$mode" in 1) label="-P 1" ;; 16) label="-P 16" ;; c1) label="-c 1" ;; esac
    printf '%-8s' "$label"
    for c in "${COLS[@]}"; do printf ' %12s' "$(median "$mode" "$c" SET 8)"; done
    echo
  done
  echo "(direct column: redis-server's own CPU when benchmarked directly)"
  echo "redis-server's CPU per request behind each (µs, median):"
  for mode in "${MODES[@]}"; do
    case "$mode" in 1) label="-P 1" ;; 16) label="-P 16" ;; c1) label="-c 1" ;; esac
    printf '%-8s' "$label"
    for c in "${COLS[@]}"; do printf ' %12s' "$(median "$mode" "$c" SET 9)"; done
    echo
  done
  if [ -s "$FAILURES" ]; then
    echo
    echo "FAILED RUNS ($(wc -l <"$FAILURES")), left out of the medians:"
    sed 's/^/  /' "$FAILURES"
    { grep -v "Could not fetch server CONFIG" "$TMP/benchmark.err" 2>/dev/null || true; } | head -3 | sed 's/^/  redis-benchmark: /'
  fi
  for c in "${COLS[@]}"; do
    if ! kill -0 "$(pid_of "$c")" 2>/dev/null; then
      echo "${c^^} EXITED during the runs; the end of its log:"
      case "$c" in direct) log=redis ;; *) log=$c ;; esac
      tail -20 "$TMP/$log.log" 2>/dev/null | sed 's/^/  /'
    fi
  done
  echo
  echo "Targets of issue 20 (medians of this run; ratios of medians)"
  # predixy's lines need its column; without it they are skipped, not failed.
  px() { # label value op threshold
    if has predixy; then
      printf '  %-44s %8s %s %-6s %s\n' "$1" "$2" "$3" "$4" "$(verdict "$2" "$3" "$4")"
    else
      printf '  %-44s %8s %s %-6s %s\n' "$1" "-" "$3" "$4" "SKIP (PREDIXY_BIN unset)"
    fi
  }
  line() { printf '  %-44s %8s %s %-6s %s\n' "$1" "$2" "$3" "$4" "$(verdict "$2" "$3" "$4")"; }
  for t in SET GET; do
    px "$t -P 1   throughput strata/predixy" "$(ratio "$(median 1 strata "$t" 5)" "$(median 1 predixy "$t" 5)" 3)" ">=" 1.00
  done
  px "-P 1      CPU/request strata/predixy" "$(ratio "$(median 1 strata SET 8)" "$(median 1 predixy SET 8)" 3)" "<=" 1.00
  for t in SET GET; do
    px "$t -P 1   p50 strata/predixy" "$(ratio "$(median 1 strata "$t" 6)" "$(median 1 predixy "$t" 6)" 3)" "<=" 1.00
  done
  for t in SET GET; do
    px "$t -P 16  throughput strata/predixy" "$(ratio "$(median 16 strata "$t" 5)" "$(median 16 predixy "$t" 5)" 3)" ">=" 1.20
    line "$t -P 16  throughput strata/twemproxy" "$(ratio "$(median 16 strata "$t" 5)" "$(median 16 twemproxy "$t" 5)" 3)" ">=" 1.80
  done
  line "GET -P 16  throughput strata/direct" "$(ratio "$(median 16 strata GET 5)" "$(median 16 direct GET 5)" 3)" ">=" 0.75
  echo "  (cluster mode -P 16 vs redis-benchmark --cluster: benches/cluster_bench.sh; instructions per request: benches/instructions.sh)"
  if [ "$REPEATS" -lt 5 ]; then echo "  (issue 20 asks for medians of at least 5 repeats; this run had $REPEATS)"; fi
  echo
  echo "Earlier targets"
  line "SET -P 16  throughput strata/direct" "$(ratio "$(median 16 strata SET 5)" "$(median 16 direct SET 5)" 3)" ">=" 0.70
  for t in SET GET; do
    diff=$(awk -v a="$(median 1 strata "$t" 6)" -v b="$(median 1 direct "$t" 6)" \
      'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%.0f", (a - b) * 1000 }')
    line "$t -P 1   p50 strata-direct (µs)" "$diff" "<=" 50
  done
} | tee "$OUT"
cp "$RESULTS" "${OUT%.txt}-raw.csv"
echo "(summary written to $OUT, every run in ${OUT%.txt}-raw.csv: repeat,mode,target,test,rps,p50_ms,p99_ms,cpu_us,redis_cpu_us)"
exit 0
