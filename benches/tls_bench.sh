#!/usr/bin/env bash
# Client-side TLS through strata against plain TCP, in the same run:
# redis-benchmark SET and GET at -P 1 and -P 16, once over strata's plain
# listener and once over its TLS listener (`--tls --cacert`). Target
# (issue 17): TLS >= 0.8x plain throughput at -P 16.
# `make bench-tls` runs it.
#
# Fairness: ONE strata process with both listeners (`server.listen` and
# `tls.listen`), in front of one redis-server; the only difference between
# the two measurements is the client's transport. Every repeat measures
# both, alternating which goes first, so machine noise (2 shared cores)
# hits both alike; the tables show medians over the repeats. strata's CPU
# per request (utime+stime from /proc) is measured for each run too.
#
# The certificates (a CA and a P-256 server certificate for 127.0.0.1 and
# localhost) are made with openssl in a temporary directory.
#
# This is a measurement: it prints PASS/MISS next to the target and exits 0
# whatever the figures are; non-zero only when it cannot measure.
#
# Environment:
#   REPEATS   runs per transport and pipeline depth (default 5)
#   N         requests per SET and GET run at -P 1 (default 100000)
#   N_P16     requests per SET and GET run at -P 16 (default 400000)
#   CLIENTS   redis-benchmark -c (default 50)
#   KEYS      redis-benchmark -r (default 1000)
#   SIZE      redis-benchmark -d, value bytes (default 64)
#   STRATA    the strata binary (default target/release/strata)
#   OUT       the summary file (default target/bench/tls-latest.txt)

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

REPEATS=${REPEATS:-5}
N=${N:-100000}
N_P16=${N_P16:-400000}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-1000}
SIZE=${SIZE:-64}
STRATA=${STRATA:-$ROOT/target/release/strata}
OUT=${OUT:-$ROOT/target/bench/tls-latest.txt}

for tool in redis-server redis-cli redis-benchmark openssl; do
  if ! command -v "$tool" >/dev/null; then
    echo "tls_bench: $tool not found; install it: apt-get install redis-server redis-tools openssl (or run 'make bench-deps')" >&2
    exit 1
  fi
done
if ! redis-benchmark --help 2>&1 | grep -q -- '--tls'; then
  echo "tls_bench: this redis-benchmark was built without TLS (Debian's redis-tools has it)" >&2
  exit 1
fi
if [ ! -x "$STRATA" ]; then
  echo "tls_bench: $STRATA not found; building it (cargo build --release)" >&2
  cargo build --release
fi

BENCH_NAME=tls_bench
# shellcheck source=benches/bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_tmpdir strata-tlsbench

# Certificates: a CA, and a server certificate it signs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=strata bench CA" -keyout "$TMP/ca.key" -out "$TMP/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=localhost" -keyout "$TMP/server.key" -out "$TMP/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$TMP/ext.cnf"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" -CAcreateserial \
  -days 2 -extfile "$TMP/ext.cnf" -out "$TMP/server.crt" 2>/dev/null

free_port REDIS_PORT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile "$TMP/redis.log" &
PIDS+=("$!")
wait_ping "$REDIS_PORT" redis

free_port PLAIN_PORT
free_port TLS_PORT
free_port MPORT
cat >"$TMP/strata.toml" <<EOF
[server]
listen = "127.0.0.1:$PLAIN_PORT"
[backend]
address = "127.0.0.1:$REDIS_PORT"
[telemetry]
listen = "127.0.0.1:$MPORT"
log_level = "warn"
[tls]
listen = "127.0.0.1:$TLS_PORT"
cert_file = "$TMP/server.crt"
key_file = "$TMP/server.key"
EOF
"$STRATA" --config "$TMP/strata.toml" 2>"$TMP/strata.log" &
PIDS+=("$!")
SPID=$!
wait_ping "$PLAIN_PORT" strata
if [ "$(redis-cli -p "$TLS_PORT" --tls --cacert "$TMP/ca.crt" ping 2>&1)" != "PONG" ]; then
  echo "tls_bench: strata's TLS listener does not answer PING; its log:" >&2
  cat "$TMP/strata.log" >&2
  exit 1
fi

cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat")
  stat=${stat##*) }
  awk '{ print $12 + $13 }' <<<"$stat"
}
CLK_TCK=$(getconf CLK_TCK)

RESULTS=$TMP/results.csv # repeat,pipeline,transport,test,rps,p50_ms
CPU=$TMP/cpu.csv         # repeat,pipeline,transport,cpu_us_per_request
: >"$RESULTS"
: >"$CPU"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "tls_bench: redis :$REDIS_PORT, strata plain :$PLAIN_PORT, tls :$TLS_PORT; REPEATS=$REPEATS -c $CLIENTS -r $KEYS -d $SIZE" >&2

measure() { # repeat pipeline transport
  local r=$1 p=$2 t=$3 n port tls=() out before after
  if [ "$p" = 1 ]; then n=$N; else n=$N_P16; fi
  if [ "$t" = tls ]; then port=$TLS_PORT tls=(--tls --cacert "$TMP/ca.crt"); else port=$PLAIN_PORT; fi
  before=$(cpu_ticks "$SPID")
  out=$(redis-benchmark -h 127.0.0.1 -p "$port" "${tls[@]}" -c "$CLIENTS" -n "$n" -r "$KEYS" -d "$SIZE" \
    -P "$p" -t set,get --csv 2>>"$TMP/benchmark.err" || true)
  after=$(cpu_ticks "$SPID")
  awk -F, -v pre="$r,$p,$t" 'NR > 1 { gsub(/"/, ""); print pre "," $1 "," $2 "," $5 }' <<<"$out" >>"$RESULTS"
  awk -v a="$after" -v b="$before" -v k="$CLK_TCK" -v n="$n" -v pre="$r,$p,$t" \
    'BEGIN { printf "%s,%.2f\n", pre, (a - b) / k * 1e6 / (2 * n) }' >>"$CPU"
  printf '  repeat %s -P %-2s %-5s %s cpu %s us/req\n' "$r" "$p" "$t" \
    "$(awk -F, -v pre="$r,$p,$t," 'index($0, pre) == 1 { printf "%s %s rps  ", $4, $5 }' "$RESULTS")" \
    "$(tail -1 "$CPU" | cut -d, -f4)" >&2
}

for r in $(seq "$REPEATS"); do
  for p in 1 16; do
    if [ $((r % 2)) = 1 ]; then
      measure "$r" "$p" plain
      measure "$r" "$p" tls
    else
      measure "$r" "$p" tls
      measure "$r" "$p" plain
    fi
  done
done

# Median of field $4 for pipeline $1, transport $2, test $3 (field 5 rps, 6 p50).
median() {
  awk -F, -v p="$1" -v t="$2" -v c="$3" -v f="$4" '$2 == p && $3 == t && $4 == c { print $f }' "$RESULTS" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NA"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
cpu_median() {
  awk -F, -v p="$1" -v t="$2" '$2 == p && $3 == t { print $4 }' "$CPU" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NA"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { if (v == "NA") print "MISS (no data)"; else print (v + 0 >= t + 0) ? "PASS" : "MISS" }'; }

mkdir -p "$(dirname "$OUT")"
{
  echo "strata client-side TLS benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
  echo "$(redis-server --version | cut -d' ' -f1-3), strata $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), default config (1 worker thread)"
  echo "one strata with a plain and a TLS listener (rustls, ring; TLS 1.3, ECDSA P-256) in front of one redis-server"
  echo "redis-benchmark -c $CLIENTS -r $KEYS -d $SIZE -t set,get; -n $N at -P 1, -n $N_P16 at -P 16"
  echo "medians of $REPEATS runs per transport, interleaved (the order alternates per repeat)"
  echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  printf '%-8s %-4s %12s %12s %9s %10s %10s\n' pipeline test plain tls tls/plain "p50 plain" "p50 tls"
  for p in 1 16; do
    for c in SET GET; do
      a=$(median "$p" plain "$c" 5)
      b=$(median "$p" tls "$c" 5)
      printf '%-8s %-4s %12s %12s %9s %10s %10s\n' "-P $p" "$c" "$a" "$b" "$(ratio "$b" "$a")" \
        "$(median "$p" plain "$c" 6)" "$(median "$p" tls "$c" 6)"
    done
  done
  echo "(requests/s; p50 in ms)"
  printf '%-8s %12s %12s   (strata CPU µs per request, SET and GET runs together)\n' pipeline plain tls
  for p in 1 16; do
    printf '%-8s %12s %12s\n' "-P $p" "$(cpu_median "$p" plain)" "$(cpu_median "$p" tls)"
  done
  echo
  echo "Target"
  for c in SET GET; do
    rt=$(ratio "$(median 16 tls "$c" 5)" "$(median 16 plain "$c" 5)")
    printf '  -P 16 %-4s TLS/plain throughput %5s >= 0.80   %s\n' "$c" "$rt" "$(verdict "$rt" 0.8)"
  done
} | tee "$OUT"
cp "$RESULTS" "${OUT%.txt}-raw.csv"
cp "$CPU" "${OUT%.txt}-cpu.csv"
echo "(summary written to $OUT, every run in ${OUT%.txt}-raw.csv)"
exit 0
