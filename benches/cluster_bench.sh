#!/usr/bin/env bash
# Redis Cluster through strata, end to end, all on this machine in one run:
# redis-benchmark --cluster straight against a real cluster (the
# cluster-aware client, each connection talking to the primary that owns its
# keys) against plain redis-benchmark through strata in cluster mode (one
# address; strata routes every key to its slot's primary). `make bench`
# and `make bench-cluster` run it.
#
# The script starts, on free ports in a temporary directory, six
# redis-servers (--cluster-enabled yes, node timeout 2000 ms, persistence
# off), joins them with `redis-cli --cluster create --cluster-replicas 1`
# (3 primaries, 3 replicas), waits for cluster_state:ok on every node and
# for each replica's link, then starts the release strata with a generated
# config (`[backend] mode = "cluster"`, two seeds), checked first with
# --check-config, and checks that keys written through strata land in the
# cluster and that a cross-slot MGET through strata returns them.
#
# Measured, per repeat, direct and strata alternating which goes first:
#   SET/GET   redis-benchmark -c 50 -d 128 -r 100000 -t set,get at -P 1 and
#             -P 16; direct with --cluster (keys key:{tag}:NNN, one tag per
#             connection, on that connection's node), through strata without
#             (keys key:NNN, spread over all slots);
#   MGET      100 keys of 128 B: mk:1..mk:100 (about 100 slots, on all three
#             primaries: strata splits it per slot, since Redis refuses a
#             cross-slot MGET even on one node, pipelines the parts for each
#             primary and merges the replies),
#             {t}mk:1..{t}mk:100 (one slot, forwarded whole), and a single
#             GET, each at -c 50 and -c 1. redis-benchmark cannot send a
#             cross-slot MGET to a cluster, so the direct reference is the
#             one-slot MGET and the GET sent to the primary that owns {t}.
# Two things about redis-benchmark --cluster that the figures depend on:
# it runs one client thread per primary (3 here; through strata the client
# is the usual single thread: a 3-thread client was slower through strata
# on this 2-core machine), and in threaded mode it notices the end of a test
# only on its 250 ms timer, so a direct run's duration is rounded up to the
# next tick and its throughput understated by up to 0.25 s / duration. The
# default request counts make direct runs last several seconds, and the
# summary prints that bound.
#
# strata's CPU time per request, and the six redis-servers' together, come
# from /proc/<pid>/stat (utime+stime) read before and after each run; the
# sum of strata_errors_total from its /metrics is read likewise.
#
# This is a measurement: it prints PASS/MISS next to the target (issue 20:
# strata at least 0.7x of direct --cluster at -P 16, SET and GET) and exits 0
# whatever the figures are, also when runs through strata fail (they are
# counted and their first error printed). It exits non-zero only when it
# cannot measure (a tool is missing, the cluster or strata does not start).
#
# Environment:
#   REPEATS      runs per target and mode (default 3)
#   N_P1         requests per SET and per GET run at -P 1 (default 400000)
#   N_P16        requests per SET and per GET run at -P 16 (default 3000000)
#   N_MGET       requests per MGET/GET run at -c $CLIENTS (default 40000; 0 skips MGET)
#   N_MGET_C1    requests per MGET/GET run at -c 1 (default 5000; 0 skips)
#   CLIENTS      redis-benchmark -c (default 50)
#   VALUE        redis-benchmark -d, and the MGET keys' value size (default 128)
#   KEYSPACE     redis-benchmark -r (default 100000)
#   RUN_TIMEOUT  seconds after which one redis-benchmark run is stopped and
#                counted as failed (default 300)
#   DIRECT_ONLY  1: do not start strata, measure the cluster directly only
#   STRATA       the strata binary (default target/release/strata)
#   STRATA_ARGS  extra strata flags, e.g. "--worker-threads 2" (default none)
#   DIRECT_CLIENT_ARGS, STRATA_CLIENT_ARGS  extra redis-benchmark flags for the
#                SET/GET runs direct / through strata, e.g. "--threads 3"
#   OUT          the summary file (default target/bench/cluster-latest.txt)

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

REPEATS=${REPEATS:-3}
N_P1=${N_P1:-400000}
N_P16=${N_P16:-3000000}
N_MGET=${N_MGET:-40000}
N_MGET_C1=${N_MGET_C1:-5000}
CLIENTS=${CLIENTS:-50}
VALUE=${VALUE:-128}
KEYSPACE=${KEYSPACE:-100000}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
DIRECT_ONLY=${DIRECT_ONLY:-0}
STRATA=${STRATA:-$ROOT/target/release/strata}
STRATA_ARGS=${STRATA_ARGS:-}
DIRECT_CLIENT_ARGS=${DIRECT_CLIENT_ARGS:-}
STRATA_CLIENT_ARGS=${STRATA_CLIENT_ARGS:-}
OUT=${OUT:-$ROOT/target/bench/cluster-latest.txt}

for tool in redis-server redis-cli redis-benchmark curl timeout ss; do
  if ! command -v "$tool" >/dev/null; then
    echo "cluster_bench: $tool not found; install it: apt-get install redis-server redis-tools curl coreutils iproute2 (or run 'make bench-deps')" >&2
    exit 1
  fi
done
if [ "$DIRECT_ONLY" != 1 ] && [ ! -x "$STRATA" ]; then
  echo "cluster_bench: $STRATA not found; building it (cargo build --release)" >&2
  cargo build --release
fi

BENCH_NAME=cluster_bench
# shellcheck source=benches/bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_tmpdir strata-cbench

# The redis-benchmark being run, if any: it runs in the background (under
# `timeout`) so that a signal reaches the traps at once, and the exit trap
# stops it before the servers.
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

# utime+stime of a process, in clock ticks (fields 14 and 15 of its stat,
# counted after "comm)", which may hold spaces).
# NA when the process is gone.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo NA; return 0; }
  stat=${stat##*) }
  awk '{ print $12 + $13 }' <<<"$stat"
}
CLK_TCK=$(getconf CLK_TCK)

# Ports below the kernel's ephemeral range: a port inside it can be taken
# by an outgoing connection (the cluster bus, redis-cli, redis-benchmark)
# between the moment it is found free and the moment a server binds it.
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
port_free() {
  case "$USED_PORTS" in *" $1 "*) return 1 ;; esac
  [ -z "$(ss -Htan "sport = :$1" 2>/dev/null)" ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
# Sets variable $1 to a free port whose cluster bus port (+10000) is free
# too, both below the ephemeral range when there is room (else anywhere
# free_port looks); both are then taken.
cluster_port() {
  local _cand _bus i span=$((EPHEMERAL_LOW - 10000 - 10000))
  for i in $(seq 200); do
    if [ "$span" -ge 1000 ]; then
      _cand=$((10000 + (RANDOM * 32768 + RANDOM) % span))
    else
      _cand=$((20000 + RANDOM % 40000))
    fi
    _bus=$((_cand + 10000))
    if [ "$_bus" -le 65535 ] && port_free "$_cand" && port_free "$_bus"; then
      USED_PORTS="$USED_PORTS$_cand $_bus "
      printf -v "$1" '%s' "$_cand"
      return 0
    fi
  done
  echo "cluster_bench: no free port pair (port, port+10000) found" >&2
  return 1
}
# Sets variable $1 to a free port below the ephemeral range (else free_port's).
quiet_port() {
  local _cand i span=$((EPHEMERAL_LOW - 10000))
  if [ "$span" -ge 1000 ]; then
    for i in $(seq 200); do
      _cand=$((10000 + (RANDOM * 32768 + RANDOM) % span))
      if port_free "$_cand"; then
        USED_PORTS="$USED_PORTS$_cand "
        printf -v "$1" '%s' "$_cand"
        return 0
      fi
    done
  fi
  free_port "$1"
}

# --- the cluster -------------------------------------------------------------

# Starts one node on a fresh port pair; on a lost race for the port (the
# machine is shared: something else bound it since free_port looked), tries
# another. Appends to NODE_PORTS, NODE_PIDS and PIDS.
NODE_PORTS=()
NODE_PIDS=()
start_node() {
  local port pid attempt i
  for attempt in 1 2 3 4 5; do
    cluster_port port
    mkdir -p "$TMP/node-$port"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$TMP/node-$port" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --save '' --appendonly no --daemonize no --logfile "$TMP/node-$port.log" &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 100); do
      if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then
        NODE_PORTS+=("$port")
        NODE_PIDS+=("$pid")
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    if ! grep -q 'Address already in use' "$TMP/node-$port.log" 2>/dev/null; then
      break
    fi
    echo "cluster_bench: port $port (or its bus port) was taken meanwhile; trying another (attempt $attempt)" >&2
  done
  echo "cluster_bench: redis-server on port $port did not answer PING; its log:" >&2
  cat "$TMP/node-$port.log" >&2 || true
  exit 1
}
for i in 1 2 3 4 5 6; do start_node; done

create_args=()
for port in "${NODE_PORTS[@]}"; do create_args+=("127.0.0.1:$port"); done
if ! redis-cli --cluster create "${create_args[@]}" --cluster-replicas 1 --cluster-yes >"$TMP/create.log" 2>&1; then
  echo "cluster_bench: redis-cli --cluster create failed:" >&2
  cat "$TMP/create.log" >&2
  exit 1
fi

# Every node: cluster_state:ok, all slots, all six nodes known; every
# replica: its link to the primary up (the first full sync done).
cluster_ready() {
  local port info
  for port in "${NODE_PORTS[@]}"; do
    info=$(redis-cli -p "$port" cluster info 2>/dev/null | tr -d '\r')
    grep -q '^cluster_state:ok$' <<<"$info" || return 1
    grep -q '^cluster_slots_ok:16384$' <<<"$info" || return 1
    grep -q '^cluster_known_nodes:6$' <<<"$info" || return 1
    info=$(redis-cli -p "$port" info replication 2>/dev/null | tr -d '\r')
    if grep -q '^role:slave$' <<<"$info"; then
      grep -q '^master_link_status:up$' <<<"$info" || return 1
    fi
  done
}
for i in $(seq 300); do
  cluster_ready && break
  if [ "$i" = 300 ]; then
    echo "cluster_bench: the cluster did not become ready in 30 s:" >&2
    for port in "${NODE_PORTS[@]}"; do
      echo "--- node $port" >&2
      redis-cli -p "$port" cluster info 2>&1 | grep -E 'state|slots_ok|known' >&2 || true
      tail -5 "$TMP/node-$port.log" >&2
    done
    exit 1
  fi
  sleep 0.1
done

# The primaries, in slot order: "port first-slot-last-slot ...".
redis-cli -p "${NODE_PORTS[0]}" cluster nodes | tr -d '\r' |
  awk '$3 ~ /master/ { split($2, a, "[:@]"); s = ""; for (i = 9; i <= NF; i++) if ($i !~ /^\[/) s = s " " $i; print a[2] s }' |
  sort -t' ' -k2,2n >"$TMP/primaries"
PRIMARY_PORTS=()
while read -r port _; do PRIMARY_PORTS+=("$port"); done <"$TMP/primaries"
# The primary that owns a slot.
owner_of_slot() {
  awk -v s="$1" '{ for (i = 2; i <= NF; i++) { n = split($i, r, "-"); lo = r[1]; hi = (n > 1) ? r[2] : r[1]
    if (s + 0 >= lo + 0 && s + 0 <= hi + 0) { print $1; exit } } }' "$TMP/primaries"
}

# CPU ticks of all six redis-servers together.
cluster_ticks() {
  local pid sum=0 t
  for pid in "${NODE_PIDS[@]}"; do
    t=$(cpu_ticks "$pid")
    [ "$t" = NA ] && { echo NA; return 0; }
    sum=$((sum + t))
  done
  echo "$sum"
}

# --- the MGET keys -----------------------------------------------------------

# 100 keys over about 100 slots, and 100 keys in the one slot of {t}; all
# written straight into the cluster (redis-cli -c follows the MOVEDs).
MVAL=$(head -c $((VALUE * 2)) /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c "$VALUE")
while [ "${#MVAL}" -lt "$VALUE" ]; do MVAL="${MVAL}x"; done
CROSS_KEYS=()
TAG_KEYS=()
for i in $(seq 100); do
  CROSS_KEYS+=("mk:$i")
  TAG_KEYS+=("{t}mk:$i")
done
for k in "${CROSS_KEYS[@]}" "${TAG_KEYS[@]}"; do echo "SET $k $MVAL"; done |
  redis-cli -c -p "${NODE_PORTS[0]}" >"$TMP/populate.log" 2>&1
if [ "$(grep -c '^OK$' "$TMP/populate.log")" != 200 ]; then
  echo "cluster_bench: writing the MGET keys into the cluster failed:" >&2
  grep -v '^OK$' "$TMP/populate.log" | head -5 >&2
  exit 1
fi
for k in "${CROSS_KEYS[@]}"; do echo "CLUSTER KEYSLOT $k"; done | redis-cli -p "${NODE_PORTS[0]}" >"$TMP/cross-slots"
CROSS_SLOTS=$(sort -u "$TMP/cross-slots" | wc -l)
CROSS_SPREAD=""
for port in "${PRIMARY_PORTS[@]}"; do
  n=0
  while read -r s; do
    if [ "$(owner_of_slot "$s")" = "$port" ]; then n=$((n + 1)); fi
  done <"$TMP/cross-slots"
  CROSS_SPREAD="$CROSS_SPREAD${CROSS_SPREAD:+/}$n"
done
TAG_SLOT=$(redis-cli -p "${NODE_PORTS[0]}" cluster keyslot '{t}')
TAG_PORT=$(owner_of_slot "$TAG_SLOT")

# --- strata --------------------------------------------------------------------

STRATA_PORT=
STRATA_PID=
METRICS_PORT=
CHECK_NOTES=()
if [ "$DIRECT_ONLY" != 1 ]; then
  quiet_port STRATA_PORT
  quiet_port METRICS_PORT
  cat >"$TMP/strata.toml" <<EOF
[server]
listen = "127.0.0.1:$STRATA_PORT"
[backend]
mode = "cluster"
[backend.cluster]
seeds = ["127.0.0.1:${NODE_PORTS[0]}", "127.0.0.1:${NODE_PORTS[1]}"]
[telemetry]
listen = "127.0.0.1:$METRICS_PORT"
log_level = "warn"
EOF
  if ! "$STRATA" --check-config "$TMP/strata.toml" >"$TMP/check-config.log" 2>&1; then
    echo "cluster_bench: strata rejects the generated config:" >&2
    cat "$TMP/check-config.log" "$TMP/strata.toml" >&2
    exit 1
  fi
  # shellcheck disable=SC2086 # STRATA_ARGS is a list of flags
  "$STRATA" --config "$TMP/strata.toml" $STRATA_ARGS 2>"$TMP/strata.log" &
  STRATA_PID=$!
  PIDS+=("$STRATA_PID")
  # Discovery may take a moment: up to 15 s.
  for i in $(seq 150); do
    if [ "$(timeout 2 redis-cli -p "$STRATA_PORT" ping 2>/dev/null)" = "PONG" ]; then break; fi
    if ! kill -0 "$STRATA_PID" 2>/dev/null || [ "$i" = 150 ]; then
      echo "cluster_bench: strata (cluster mode) did not answer PING on port $STRATA_PORT; its log:" >&2
      cat "$TMP/strata.log" >&2
      exit 1
    fi
    sleep 0.1
  done

  # Keys written through strata are in the cluster, where their slot says.
  bad=0
  for i in $(seq 20); do
    out=$(timeout 5 redis-cli -p "$STRATA_PORT" set "chk:$i" "v$i" 2>&1 || true)
    [ "$out" = OK ] || { bad=$((bad + 1)); [ "$bad" = 1 ] && CHECK_NOTES+=("SET chk:$i through strata: $out"); continue; }
    out=$(timeout 5 redis-cli -c -p "${NODE_PORTS[0]}" get "chk:$i" 2>&1 | tail -1 || true)
    [ "$out" = "v$i" ] || { bad=$((bad + 1)); [ "$bad" = 1 ] && CHECK_NOTES+=("GET chk:$i from the cluster after SET through strata: $out"); continue; }
    out=$(timeout 5 redis-cli -p "$STRATA_PORT" get "chk:$i" 2>&1 || true)
    [ "$out" = "v$i" ] || { bad=$((bad + 1)); [ "$bad" = 1 ] && CHECK_NOTES+=("GET chk:$i through strata: $out"); }
  done
  [ "$bad" = 0 ] || CHECK_NOTES+=("$bad of 20 SET/GET checks through strata failed")
  # The cross-slot and the one-slot MGET come back whole through strata.
  for set in cross tag; do
    if [ "$set" = cross ]; then keys=("${CROSS_KEYS[@]}"); else keys=("${TAG_KEYS[@]}"); fi
    out=$(timeout 10 redis-cli -p "$STRATA_PORT" mget "${keys[@]}" 2>&1 || true)
    good=$(grep -c -x -F "$MVAL" <<<"$out" || true)
    if [ "$good" != 100 ]; then
      CHECK_NOTES+=("MGET of the 100 $set-slot keys through strata: $good of 100 values right; reply starts: $(head -c 200 <<<"$out" | tr '\n' ' ')")
    fi
  done
  for note in "${CHECK_NOTES[@]}"; do echo "cluster_bench: CHECK FAILED: $note" >&2; done
fi

# The sum of strata_errors_total; NA when /metrics does not answer.
metric_errors() {
  { curl -sf -m 2 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null || echo NA; } |
    awk '$0 == "NA" { na = 1 } /^strata_errors_total/ { s += $NF } END { if (na) print "NA"; else print s + 0 }'
}

# --- the runs ------------------------------------------------------------------

RESULTS=$TMP/results.csv # repeat,section,mode,target,test,rps,p50_ms,strata_cpu_us,cluster_cpu_us,strata_errors
FAILURES=$TMP/failures.txt
: >"$RESULTS"
: >"$FAILURES"

# One redis-benchmark run; appends its rows to RESULTS.
#   measure REPEAT SECTION MODE TARGET TESTNAME REQUESTS_PER_TEST CLIENTS PIPELINE -- redis-benchmark args
# TESTNAME "" takes the names from the CSV (SET, GET); otherwise the one row
# of a custom command is named so.
measure() {
  local r=$1 section=$2 mode=$3 target=$4 name=$5 n=$6 clients=$7 pipeline=$8
  shift 9
  local spid_b=0 spid_a=0 cl_b cl_a err_b=0 err_a=0 rc=0 ntests=1 out=$TMP/run.out
  if [ "$target" = strata ] && ! kill -0 "$STRATA_PID" 2>/dev/null; then
    echo "repeat $r $section $mode strata ${name:-set,get}: not run, strata has exited (its log is in the summary)" >>"$FAILURES"
    if [ -z "$name" ]; then printf '%s\n' "$r,$section,$mode,strata,SET,NA,NA,NA,NA,NA" "$r,$section,$mode,strata,GET,NA,NA,NA,NA,NA"; else
      echo "$r,$section,$mode,strata,$name,NA,NA,NA,NA,NA"; fi >>"$RESULTS"
    echo "  repeat $r $section $mode strata ${name:-set,get}: strata has exited" >&2
    return 0
  fi
  if [ "$target" = strata ]; then
    spid_b=$(cpu_ticks "$STRATA_PID")
    err_b=$(metric_errors)
  fi
  cl_b=$(cluster_ticks)
  timeout -k 5 "$RUN_TIMEOUT" redis-benchmark -c "$clients" -n "$n" -P "$pipeline" --csv "$@" >"$out" 2>"$out.err" &
  BENCH_PID=$!
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=
  cl_a=$(cluster_ticks)
  if [ "$target" = strata ]; then
    spid_a=$(cpu_ticks "$STRATA_PID")
    err_a=$(metric_errors)
  fi
  [ -z "$name" ] && ntests=2
  local scpu ccpu errs
  per_req() { awk -v a="$1" -v b="$2" -v t="$CLK_TCK" -v n="$((n * ntests))" \
    'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%.2f", (a - b) / t * 1e6 / n }'; }
  scpu=$(per_req "$spid_a" "$spid_b")
  ccpu=$(per_req "$cl_a" "$cl_b")
  errs=$(awk -v a="$err_a" -v b="$err_b" 'BEGIN { if (a == "NA" || b == "NA") print "NA"; else print a - b }')
  if [ "$target" != strata ]; then scpu=NA errs=NA; fi
  # CSV rows: "test","rps","avg","min","p50","p95","p99","max" (counted from
  # the end: a custom command's name is the whole command line).
  local rows
  rows=$(grep '^"' "$out" | tail -n +2 | tr -d '"' |
    awk -F, -v name="$name" '{ t = (name == "") ? $1 : name; print t "," $(NF - 6) "," $(NF - 3) }')
  local expect=$ntests
  if [ "$rc" != 0 ] || [ "$(grep -c . <<<"$rows" || true)" != "$expect" ]; then
    local why
    why=$(grep -v '^\s*$' "$out.err" | head -3 | tr '\n' ' ')
    [ "$rc" = 124 ] && why="stopped after ${RUN_TIMEOUT}s (timeout) $why"
    echo "repeat $r $section $mode $target ${name:-set,get}: exit $rc: ${why:-no CSV rows}" >>"$FAILURES"
    if [ -z "$name" ]; then rows=$'SET,NA,NA\nGET,NA,NA'; else rows="$name,NA,NA"; fi
  fi
  awk -F, -v pre="$r,$section,$mode,$target" -v post="$scpu,$ccpu,$errs" '{ print pre "," $0 "," post }' <<<"$rows" >>"$RESULTS"
  printf '  repeat %s %-5s %-4s %-6s %s cpu strata %s cluster %s us/req errors %s\n' "$r" "$section" "$mode" "$target" \
    "$(awk -F, '{ printf "%s %s rps p50 %s ms  ", $1, $2, $3 }' <<<"$rows")" "$scpu" "$ccpu" "$errs" >&2
}

TARGETS=(direct)
[ "$DIRECT_ONLY" = 1 ] || TARGETS+=(strata)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BUILD="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes'), binary built $(date -u -r "$STRATA" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?')"
echo "cluster_bench: primaries :${PRIMARY_PORTS[*]}, all nodes :${NODE_PORTS[*]}${STRATA_PORT:+, strata :$STRATA_PORT (pid $STRATA_PID)}; REPEATS=$REPEATS -c $CLIENTS -d $VALUE -r $KEYSPACE, N=$N_P1 (-P 1) / $N_P16 (-P 16) / $N_MGET (MGET) / $N_MGET_C1 (MGET -c 1); summary in $OUT" >&2

for r in $(seq "$REPEATS"); do
  # Odd repeats direct first, even ones strata first.
  if [ $((r % 2)) = 1 ]; then order=("${TARGETS[@]}"); else order=(); for ((k = ${#TARGETS[@]} - 1; k >= 0; k--)); do order+=("${TARGETS[$k]}"); done; fi
  for pipeline in 1 16; do
    if [ "$pipeline" = 1 ]; then n=$N_P1; else n=$N_P16; fi
    for target in "${order[@]}"; do
      if [ "$target" = direct ]; then
        # shellcheck disable=SC2086 # a list of flags
        measure "$r" setget "P$pipeline" direct "" "$n" "$CLIENTS" "$pipeline" -- \
          -h 127.0.0.1 -p "${NODE_PORTS[0]}" --cluster -d "$VALUE" -r "$KEYSPACE" -t set,get $DIRECT_CLIENT_ARGS
      else
        # shellcheck disable=SC2086 # a list of flags
        measure "$r" setget "P$pipeline" strata "" "$n" "$CLIENTS" "$pipeline" -- \
          -h 127.0.0.1 -p "$STRATA_PORT" -d "$VALUE" -r "$KEYSPACE" -t set,get $STRATA_CLIENT_ARGS
      fi
    done
  done
  for mode in c50 c1; do
    if [ "$mode" = c50 ]; then n=$N_MGET clients=$CLIENTS; else n=$N_MGET_C1 clients=1; fi
    [ "$n" -gt 0 ] || continue
    for target in "${order[@]}"; do
      if [ "$target" = direct ]; then port=$TAG_PORT; else port=$STRATA_PORT; fi
      measure "$r" mget "$mode" "$target" GET1 "$n" "$clients" 1 -- -h 127.0.0.1 -p "$port" GET '{t}mk:1'
      measure "$r" mget "$mode" "$target" MGET-1slot "$n" "$clients" 1 -- -h 127.0.0.1 -p "$port" MGET "${TAG_KEYS[@]}"
      if [ "$target" = strata ]; then
        measure "$r" mget "$mode" strata MGET-cross "$n" "$clients" 1 -- -h 127.0.0.1 -p "$port" MGET "${CROSS_KEYS[@]}"
      fi
    done
  done
done

# --- the summary ---------------------------------------------------------------

# Median of a field (6 rps, 7 p50, 8 strata cpu, 9 cluster cpu, 10 errors)
# over the repeats, NA values left out.
median() { # section mode target test field
  awk -F, -v s="$1" -v m="$2" -v tg="$3" -v t="$4" -v f="$5" \
    '$2 == s && $3 == m && $4 == tg && $5 == t && $f != "NA" { print $f }' "$RESULTS" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NA"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# One repeat's value of a field.
value() { # repeat section mode target test field
  awk -F, -v r="$1" -v s="$2" -v m="$3" -v tg="$4" -v t="$5" -v f="$6" \
    '$1 == r && $2 == s && $3 == m && $4 == tg && $5 == t { print $f; exit }' "$RESULTS"
}
sum_errors() { # section
  awk -F, -v s="$1" '$2 == s && $4 == "strata" { if ($10 == "NA") na++; else { e += $10; ok++ } }
    END { if (!ok) print "NA"; else print e + 0 (na ? " (+" na " runs unread)" : "") }' "$RESULTS"
}
# Ratio, 2 decimals (3 for the target's line: a verdict on a rounded figure
# could pass a ratio just below the threshold).
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (a == "NA" || b == "NA" || a == "" || b == "" || b == 0) print "NA"; else printf "%.*f", d, a / b }'; }
us() { awk -v x="$1" 'BEGIN { if (x == "NA" || x == "") print "NA"; else printf "%.0f", x * 1000 }'; }
us_diff() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%+.0f", (a - b) * 1000 }'; }
int() { awk -v x="$1" 'BEGIN { if (x == "NA" || x == "") print "NA"; else printf "%.0f", x }'; }
verdict() { # value op threshold
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "NA") { print "MISS (no data)"; exit }
    ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
    print ok ? "PASS" : "MISS" }'
}

if [ -n "$METRICS_PORT" ]; then
  curl -s -m 2 "http://127.0.0.1:$METRICS_PORT/metrics" >"$TMP/metrics.txt" 2>/dev/null || true
fi

mkdir -p "$(dirname "$OUT")"
{
  echo "strata Redis Cluster benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
  if [ -n "$STRATA_PORT" ]; then strata_line="strata $BUILD${STRATA_ARGS:+, flags: $STRATA_ARGS}"; else strata_line="strata not run (DIRECT_ONLY=1)"; fi
  echo "$(redis-server --version | cut -d' ' -f1-3), $strata_line"
  echo "cluster: 3 primaries + 3 replicas on one machine (cluster-node-timeout 2000, persistence off); strata: cluster mode, default config otherwise"
  echo "direct: redis-benchmark --cluster -h 127.0.0.1 -p <node> -c $CLIENTS -d $VALUE -r $KEYSPACE -t set,get${DIRECT_CLIENT_ARGS:+ $DIRECT_CLIENT_ARGS} (keys key:{tag}:NNN, each connection on its own primary, one client thread per primary)"
  echo "strata: redis-benchmark -h 127.0.0.1 -p <strata> -c $CLIENTS -d $VALUE -r $KEYSPACE -t set,get${STRATA_CLIENT_ARGS:+ $STRATA_CLIENT_ARGS} (keys key:NNN, all slots)"
  echo "-n $N_P1 at -P 1, -n $N_P16 at -P 16; medians of $REPEATS runs per target, direct and strata alternating which goes first"
  echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "Throughput (requests/s, median)"
  printf '%-10s %12s %12s %14s   %s\n' test direct strata strata/direct "per repeat strata/direct"
  for pipeline in 1 16; do
    for t in SET GET; do
      d=$(median setget "P$pipeline" direct "$t" 6)
      s=$(median setget "P$pipeline" strata "$t" 6)
      per=""
      for r in $(seq "$REPEATS"); do
        per="$per $(ratio "$(value "$r" setget "P$pipeline" strata "$t" 6)" "$(value "$r" setget "P$pipeline" direct "$t" 6)")"
      done
      printf '%-10s %12s %12s %14s  %s\n' "$t -P $pipeline" "$(int "$d")" "$(int "$s")" "$(ratio "$s" "$d")" "$per"
    done
  done
  # The direct runs' duration is rounded up to redis-benchmark's 250 ms
  # tick (threaded mode): their throughput is understated by up to this much.
  bound=$(awk -F, -v n1="$N_P1" -v n16="$N_P16" '$2 == "setget" && $4 == "direct" && $6 != "NA" {
      n = ($3 == "P1") ? n1 : n16; b = 0.25 / (n / $6); if (b > m) m = b }
    END { if (m == "") print "NA"; else printf "%.0f%%", m * 100 }' "$RESULTS")
  echo "(direct runs: redis-benchmark --cluster ends a test on a 250 ms tick, so direct throughput may be understated by up to $bound here, the strata/direct ratios overstated as much)"
  echo
  echo "p50 latency (µs, median of the runs' p50; with $CLIENTS clients mostly queueing)"
  printf '%-10s %10s %10s %14s\n' test direct strata strata-direct
  for pipeline in 1 16; do
    for t in SET GET; do
      d=$(median setget "P$pipeline" direct "$t" 7)
      s=$(median setget "P$pipeline" strata "$t" 7)
      printf '%-10s %10s %10s %14s\n' "$t -P $pipeline" "$(us "$d")" "$(us "$s")" "$(us_diff "$s" "$d")"
    done
  done
  echo
  echo "CPU time per request (µs, median; SET and GET runs together)"
  printf '%-8s %10s %22s %22s\n' "" strata "6 redis-servers direct" "6 redis-servers strata"
  for pipeline in 1 16; do
    printf '%-8s %10s %22s %22s\n' "-P $pipeline" "$(median setget "P$pipeline" strata SET 8)" \
      "$(median setget "P$pipeline" direct SET 9)" "$(median setget "P$pipeline" strata SET 9)"
  done
  if [ "$N_MGET" -gt 0 ] || [ "$N_MGET_C1" -gt 0 ]; then
    echo
    echo "MGET of 100 keys ($VALUE-byte values), one request = the whole MGET"
    echo "  cross-slot: mk:1..mk:100, $CROSS_SLOTS slots, keys per primary $CROSS_SPREAD (strata splits per slot, merges)"
    echo "  one slot:   {t}mk:1..{t}mk:100, slot $TAG_SLOT on :$TAG_PORT (forwarded whole); GET1: GET {t}mk:1"
    echo "  direct = redis-benchmark straight to :$TAG_PORT (it cannot send a cross-slot MGET to a cluster)"
    printf '%-12s %11s %11s %8s %10s %10s %10s %10s %10s\n' test "direct rps" "strata rps" ratio "p50 direct" "p50 strata" "c1 direct" "c1 strata" "strata cpu"
    for t in GET1 MGET-1slot MGET-cross; do
      dr=$(median mget c50 direct "$t" 6); sr=$(median mget c50 strata "$t" 6)
      printf '%-12s %11s %11s %8s %10s %10s %10s %10s %10s\n' "$t" "$(int "$dr")" "$(int "$sr")" "$(ratio "$sr" "$dr")" \
        "$(us "$(median mget c50 direct "$t" 7)")" "$(us "$(median mget c50 strata "$t" 7)")" \
        "$(us "$(median mget c1 direct "$t" 7)")" "$(us "$(median mget c1 strata "$t" 7)")" \
        "$(median mget c50 strata "$t" 8)"
    done
    echo "(rps and p50 at -c $CLIENTS; c1 = p50 at -c 1, the request alone; µs; strata cpu = µs per request at -c $CLIENTS)"
    x=$(median mget c50 strata MGET-cross 6); o=$(median mget c50 strata MGET-1slot 6)
    echo "split cost through strata: cross-slot/one-slot throughput $(ratio "$x" "$o"); p50 at -c 1 $(us_diff "$(median mget c1 strata MGET-cross 7)" "$(median mget c1 strata MGET-1slot 7)") µs; strata CPU per MGET $(median mget c50 strata MGET-cross 8) vs $(median mget c50 strata MGET-1slot 8) µs; the cluster's $(median mget c50 strata MGET-cross 9) vs $(median mget c50 strata MGET-1slot 9) µs"
  fi
  echo
  if [ -n "$STRATA_PORT" ]; then
    echo "strata errors (strata_errors_total, over all runs): SET/GET $(sum_errors setget), MGET $(sum_errors mget)"
    if [ -s "$TMP/metrics.txt" ]; then
      echo "strata's backend connections and cluster series at the end (from /metrics, zeros left out):"
      grep -E '^strata_(cluster_[a-z_]*|backend_connections)(\{[^}]*\})? ' "$TMP/metrics.txt" |
        grep -v ' 0$' | sort | head -30 | sed 's/^/  /' || true
    fi
  fi
  if [ "${#CHECK_NOTES[@]}" -gt 0 ]; then
    echo "CHECKS FAILED before the runs (strata's results below are not trustworthy):"
    for note in "${CHECK_NOTES[@]}"; do echo "  $note"; done
  fi
  if [ -n "$STRATA_PID" ] && ! kill -0 "$STRATA_PID" 2>/dev/null; then
    echo "STRATA EXITED during the runs; the end of its log:"
    tail -20 "$TMP/strata.log" | sed 's/^/  /'
  fi
  if [ -s "$FAILURES" ]; then
    echo "FAILED RUNS ($(wc -l <"$FAILURES")), left out of the medians:"
    sed 's/^/  /' "$FAILURES"
  fi
  echo
  echo "Target (issue 20: cluster mode -P 16, strata / redis-benchmark --cluster straight at the cluster, medians of this run)"
  for t in SET GET; do
    rt=$(ratio "$(median setget P16 strata "$t" 6)" "$(median setget P16 direct "$t" 6)" 3)
    v=$(verdict "$rt" ">=" 0.7)
    [ "${#CHECK_NOTES[@]}" -gt 0 ] && v="$v (but the checks through strata failed: see above)"
    printf '  %-4s -P 16  strata / direct --cluster  %6s >= 0.70   %s\n' "$t" "$rt" "$v"
  done
  if [ "$REPEATS" -lt 5 ]; then echo "  (issue 20 asks for medians of at least 5 repeats; this run had $REPEATS: REPEATS=5)"; fi
} | tee "$OUT"
cp "$RESULTS" "${OUT%.txt}-raw.csv"
[ -s "$TMP/metrics.txt" ] && cp "$TMP/metrics.txt" "${OUT%.txt}-metrics.txt"
[ -n "$STRATA_PORT" ] && cp "$TMP/strata.log" "${OUT%.txt}-strata.log"
echo "(summary written to $OUT, every run in ${OUT%.txt}-raw.csv${STRATA_PORT:+, the strata log and final /metrics next to it})"
exit 0
