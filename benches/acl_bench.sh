#!/usr/bin/env bash
# The cost of strata's ACL checks (issue 17): GET/SET throughput at -P 16
# and instructions per request (callgrind), for three strata instances of
# the same binary in front of one redis-server, in the same run:
#   off     passthrough, deny list off: policy::check is one branch;
#   deny    passthrough, the default deny list (a table lookup per command);
#   users   users mode, a user with 20 ACL rules (key patterns walked before
#           the one that matches), plus the default deny list.
# Target: users costs < 3% of the throughput of off at -P 16.
#
# Throughput on a shared 2-vCPU machine moves by several percent between
# runs, so each repeat measures the three in a rotating order and the
# tables show medians; the callgrind counts are exact and are the measure
# for the check's own cost.
#
# This is a measurement: it prints PASS/MISS and exits 0 whatever the
# figures; non-zero only when it cannot measure.
#
# Environment: REPEATS (default 3), N (requests per run, default 200000),
# N_CG (requests per callgrind run, default 50000; 0 skips), STRATA (default
# target/release/strata), OUT (default target/bench/acl-latest.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${REPEATS:-3}
N=${N:-200000}
N_CG=${N_CG:-50000}
STRATA=${STRATA:-target/release/strata}
OUT=${OUT:-target/bench/acl-latest.txt}

for tool in redis-server redis-cli redis-benchmark python3; do
  command -v "$tool" >/dev/null || {
    echo "acl_bench: $tool is missing (apt-get install redis-server redis-tools python3)" >&2
    exit 1
  }
done
[ -x "$STRATA" ] || { echo "acl_bench: $STRATA not built (make release)" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"

BENCH_NAME=acl_bench
# shellcheck source=benches/bench_lib.sh
source benches/bench_lib.sh
bench_tmpdir strata-aclbench

free_port REDIS_PORT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile "$TMP/redis.log" &
PIDS+=($!)
wait_ping "$REDIS_PORT" redis

HASH=$(printf '%s' benchpw | sha256sum | cut -d' ' -f1)
# 20 rules; redis-benchmark's keys (key:__rand_int__) match the last key pattern.
RULES='on ~a:* ~b:* ~c:* %R~ro:* %W~wo:* ~d:* ~e:* ~counter:* ~key:* &chan:* -@all +@read +@write +@connection -flushall -debug +config|get +client|id +info -keys'

config() {  # config MODE PORT METRICS
  local mode=$1
  printf '[server]\nlisten = "127.0.0.1:%s"\n[backend]\naddress = "127.0.0.1:%s"\n[telemetry]\nlisten = "127.0.0.1:%s"\nlog_level = "warn"\n' \
    "$2" "$REDIS_PORT" "$3"
  case $mode in
    off) printf '[auth.deny]\nenabled = false\n' ;;
    deny) ;;
    users) printf '[auth]\nmode = "users"\n[[auth.users]]\nname = "bench"\npassword_sha256 = ["%s"]\nrules = "%s"\n' "$HASH" "$RULES" ;;
  esac
}

auth_args() {
  if [ "$1" = users ]; then echo "--user bench -a benchpw"; fi
}

declare -A PORT
start() {  # start MODE [valgrind]
  local mode=$1 port metrics
  free_port port
  free_port metrics
  config "$mode" "$port" "$metrics" >"$TMP/$mode.toml"
  if [ "${2:-}" = valgrind ]; then
    valgrind --tool=callgrind --callgrind-out-file="$TMP/$mode.cg" \
      "$STRATA" --config "$TMP/$mode.toml" >"$TMP/$mode.log" 2>&1 &
  else
    "$STRATA" --config "$TMP/$mode.toml" >"$TMP/$mode.log" 2>&1 &
  fi
  PIDS+=($!)
  LAST_PID=$!
  PORT[$mode]=$port
  for i in $(seq 300); do
    # shellcheck disable=SC2046
    [ "$(redis-cli -p "$port" $(auth_args "$mode") --no-auth-warning ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  echo "acl_bench: strata ($mode) did not start:" >&2
  cat "$TMP/$mode.log" >&2
  exit 1
}

rps() {  # rps MODE TEST
  # shellcheck disable=SC2046
  redis-benchmark -p "${PORT[$1]}" $(auth_args "$1") -c 50 -d 128 -r 100000 -P 16 \
    -n "$N" -t "$2" --csv 2>/dev/null | awk -F'"' 'NR == 2 { print $4 }'
}

MODES=(off deny users)
for m in "${MODES[@]}"; do start "$m"; done
declare -A RESULTS
for r in $(seq "$REPEATS"); do
  for i in 0 1 2; do
    m=${MODES[$(((i + r) % 3))]}
    for t in get set; do
      RESULTS[$m-$t]="${RESULTS[$m-$t]:-} $(rps "$m" "$t")"
    done
  done
done

median() { python3 -c 'import statistics,sys; print("%.0f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

instructions() {  # instructions MODE -> per request
  local mode=$1 pid total
  start "$mode" valgrind
  pid=$LAST_PID
  callgrind_control -z "$pid" >/dev/null 2>&1
  # shellcheck disable=SC2046
  redis-benchmark -p "${PORT[$mode]}" $(auth_args "$mode") -c 50 -d 128 -r 100000 -P 16 -t get -n "$N_CG" -q >/dev/null
  # shellcheck disable=SC2046
  redis-benchmark -p "${PORT[$mode]}" $(auth_args "$mode") -c 50 -d 128 -r 100000 -P 16 -t set -n "$N_CG" -q >/dev/null
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  total=$(callgrind_annotate "$TMP/$mode.cg" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  echo $((total / (2 * N_CG)))
}

{
  echo "strata ACL check cost, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "redis-benchmark -c 50 -d 128 -r 100000 -P 16 -n $N; median of $REPEATS rotating repeats (requests/s)"
  printf '%-6s %12s %12s\n' mode GET SET
  for m in "${MODES[@]}"; do
    # shellcheck disable=SC2086
    printf '%-6s %12s %12s\n' "$m" "$(median ${RESULTS[$m-get]})" "$(median ${RESULTS[$m-set]})"
  done
  # shellcheck disable=SC2086
  for t in get set; do
    off=$(median ${RESULTS[off-$t]})
    users=$(median ${RESULTS[users-$t]})
    python3 -c "
off, users = $off, $users
cost = 100 * (1 - users / off)
print('%s: users mode costs %.1f%% of the throughput of off (target < 3%%): %s' % ('$t'.upper(), cost, 'PASS' if cost < 3 else 'MISS'))"
  done
  if [ "$N_CG" -gt 0 ] && command -v valgrind >/dev/null; then
    echo "instructions per request (callgrind, $N_CG GET then $N_CG SET, -P 16):"
    for m in "${MODES[@]}"; do
      printf '  %-6s %s\n' "$m" "$(instructions "$m")"
    done
  fi
} | tee "$OUT"
