#!/usr/bin/env bash
# Instructions strata executes per request, counted by valgrind's callgrind.
#
# Wall-clock figures on a shared 2-vCPU machine move by ±10% from one run to
# the next; instruction counts do not (same binary, same load: the same
# count, whatever else the machine is doing). They cover strata's own code
# and the libraries it links, not the kernel's work in its system calls, so
# they are the measure for changes to the user-space hot path (parsing,
# lookup, routing, batching, metrics) and the throughput runs are the
# measure for the whole.
#
# Two modes, each a fresh strata under callgrind (counters zeroed once it
# answers PING, so start-up is not counted) loaded with redis-benchmark
# -c 50 -d 128 -r 100000 -P 16, N GETs then N SETs:
#   standalone  strata in front of one redis-server;
#   cluster     strata in cluster mode in front of a Redis Cluster of three
#               primaries (no replicas): with -r, a pipeline's commands go to
#               all three, as in `make bench-cluster`.
#
# Environment: STRATA (binary, default target/release/strata), SERVER_TOML
# ([server] lines of the config; by default the slow log's threshold out of
# reach, see measure), N (default
# 100000), P (pipeline depth, default 16), MODES (default "standalone
# cluster"), OUT (default target/bench/instructions-latest.txt), KEEP (a
# directory: the callgrind profiles are copied there, for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_NAME=instructions
# shellcheck source=benches/bench_lib.sh
source benches/bench_lib.sh

for tool in valgrind callgrind_annotate callgrind_control redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || {
    echo "instructions: $tool is missing (apt-get install valgrind redis-server redis-tools)" >&2
    exit 1
  }
done

STRATA=${STRATA:-target/release/strata}
N=${N:-100000}
P=${P:-16}
MODES=${MODES:-standalone cluster}
OUT=${OUT:-target/bench/instructions-latest.txt}
[ -x "$STRATA" ] || { echo "instructions: $STRATA not built (make release)" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
bench_tmpdir strata-instructions

# A standalone backend.
free_port REDIS_PORT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile "$TMP/redis.log" &
PIDS+=($!)
wait_ping "$REDIS_PORT" redis

# A three-primary cluster (no replicas). A node's bus port is port+10000.
NODE_PORTS=()
start_node() {
  local port pid attempt
  for attempt in 1 2 3 4 5; do
    free_port port
    if [ $((port + 10000)) -gt 65535 ] || [ -n "$(ss -Htan "sport = :$((port + 10000))")" ]; then
      continue
    fi
    mkdir -p "$TMP/node-$port"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$TMP/node-$port" --cluster-enabled yes \
      --cluster-config-file nodes.conf --save '' --appendonly no --daemonize no \
      --logfile "$TMP/node-$port.log" &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 50); do
      if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
        NODE_PORTS+=("$port")
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    echo "instructions: a cluster node did not start on $port (attempt $attempt)" >&2
  done
  exit 1
}
for i in 1 2 3; do start_node; done
nodes=()
for port in "${NODE_PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$TMP/create.log" 2>&1 || {
  echo "instructions: redis-cli --cluster create failed:" >&2
  cat "$TMP/create.log" >&2
  exit 1
}
for i in $(seq 100); do
  ok=0
  for port in "${NODE_PORTS[@]}"; do
    redis-cli -p "$port" cluster info | tr -d '\r' | grep -q '^cluster_state:ok$' && ok=$((ok + 1))
  done
  [ "$ok" = 3 ] && break
  [ "$i" = 100 ] && { echo "instructions: the cluster is not ok" >&2; exit 1; }
  sleep 0.1
done
NODE_PORT=${NODE_PORTS[0]}

# Sets variable $1 to a free port below the kernel's ephemeral range, so no
# outgoing connection (the cluster bus, redis-cli) can take it between the
# check and strata's bind.
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
low_port() {
  local candidate i
  for i in $(seq 200); do
    candidate=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
    case "$USED_PORTS" in *" $candidate "*) continue ;; esac
    if [ -z "$(ss -Htan "sport = :$candidate" 2>/dev/null)" ]; then
      USED_PORTS="$USED_PORTS$candidate "
      printf -v "$1" '%s' "$candidate"
      return 0
    fi
  done
  free_port "$1"
}

# measure MODE: prints "MODE INSTRUCTIONS_PER_REQUEST".
measure() {
  local mode=$1 port metrics pid total cfg
  low_port port
  low_port metrics
  local args=(--listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics" --log-level warn)
  # Under callgrind strata runs some 50 times slower, so most replies take
  # longer than the slow log's default 10 ms and every batch would be
  # recorded: the slow log's threshold is raised out of reach, so what is
  # counted is the data path below it (one comparison per reply batch).
  # SERVER_TOML replaces these [server] lines (empty for a binary older
  # than the slow log, whose config has no such key).
  cfg="$TMP/$mode.toml"
  printf '%b\n' "${SERVER_TOML-[server]\nslowlog_log_slower_than_us = 100000000}" >"$cfg"
  if [ "$mode" = cluster ]; then
    printf '[backend]\nmode = "cluster"\n[backend.cluster]\nseeds = ["127.0.0.1:%s"]\n' \
      "$NODE_PORT" >>"$cfg"
  else
    args+=(--backend "127.0.0.1:$REDIS_PORT")
  fi
  args+=(--config "$cfg")
  valgrind --tool=callgrind --callgrind-out-file="$TMP/$mode.out" \
    "$STRATA" "${args[@]}" >"$TMP/strata-$mode.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for i in $(seq 300); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    [ "$i" = 300 ] && { echo "instructions: strata ($mode) did not start:" >&2; cat "$TMP/strata-$mode.log" >&2; exit 1; }
    sleep 0.1
  done
  callgrind_control -z "$pid" >/dev/null 2>&1
  redis-benchmark -p "$port" -c 50 -d 128 -r 100000 -t get -n "$N" -P "$P" -q >/dev/null
  redis-benchmark -p "$port" -c 50 -d 128 -r 100000 -t set -n "$N" -P "$P" -q >/dev/null
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  # The dump written at exit holds what ran since the counters were zeroed.
  total=$(callgrind_annotate "$TMP/$mode.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  [ -n "$total" ] || { echo "instructions: no callgrind totals for $mode" >&2; exit 1; }
  if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    cp "$TMP/$mode.out" "$KEEP/callgrind-$mode.out"
  fi
  echo "$mode $((total / (2 * N)))"
}

{
  echo "strata instructions per request (callgrind), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "binary: $STRATA ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
  echo "load: redis-benchmark -c 50 -d 128 -r 100000 -P $P, $N GET then $N SET"
  for mode in $MODES; do measure "$mode"; done
} | tee "$OUT"
