#!/usr/bin/env bash
# Value transforms through strata, end to end: GET/SET throughput and p50
# latency for 1 KiB and 16 KiB values with no rule, with compression (lz4),
# and with compression + encryption (lz4 + AES-256-GCM), all in one run; and
# the stored size of a realistic JSON corpus with and without compression.
# `make bench-transforms` runs it (and `make bench`).
#
# Fairness: one redis-server, three strata instances from the same binary
# and the same config except the rule on `key:*` (none / lz4 / lz4+aes-gcm).
# Before each measurement the backend is flushed, so GETs read only values
# the same instance wrote. Every repeat measures the three instances in a
# rotating order, so machine noise (2 shared cores here) hits all alike; the
# tables show medians over the repeats.
#
# Two kinds of values:
#   -d      redis-benchmark's own `-t set,get -d SIZE` values: random
#           printable bytes that lz4 cannot compress (lz4 tries and stores
#           them as they are; with encryption the whole value is encrypted);
#   json    realistic JSON documents of SIZE bytes (custom SET/GET commands,
#           `key:__rand_int__`), where lz4 and AES do their real work.
# The 15% target is checked on both.
#
# This is a measurement: it prints PASS/MISS next to each target and exits 0
# whatever the figures are; non-zero only when it cannot measure.
#
# Environment:
#   REPEATS   runs per instance, size and value kind (default 3)
#   N         requests per SET and per GET run at -c $CLIENTS (default 100000:
#             a run of a second or two is long enough that a burst of other
#             load on the machine does not decide it)
#   N_C1      requests per run of the one-client latency run (default 5000; 0 skips)
#   N_P16     requests per run at -P 16, pipelined (default 200000; 0 skips)
#   CLIENTS   redis-benchmark -c (default 50)
#   KEYS      redis-benchmark -r, keyspace size (default 1000)
#   SIZES     value sizes measured (default "1024 16384"; others print NA)
#   STRATA    the strata binary (default target/release/strata)
#   OUT       the summary file (default target/bench/transforms-latest.txt)

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

REPEATS=${REPEATS:-3}
N=${N:-100000}
N_C1=${N_C1:-5000}
N_P16=${N_P16:-200000}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-1000}
SIZES=${SIZES:-1024 16384}
STRATA=${STRATA:-$ROOT/target/release/strata}
OUT=${OUT:-$ROOT/target/bench/transforms-latest.txt}

for tool in redis-server redis-cli redis-benchmark python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "transforms_bench: $tool not found; install it: apt-get install redis-server redis-tools python3 (or run 'make bench')" >&2
    exit 1
  fi
done
if [ ! -x "$STRATA" ]; then
  echo "transforms_bench: $STRATA not found; building it (cargo build --release)" >&2
  cargo build --release
fi

BENCH_NAME=transforms_bench
# shellcheck source=benches/bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_tmpdir strata-tbench


free_port REDIS_PORT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile "$TMP/redis.log" &
PIDS+=("$!")
wait_ping "$REDIS_PORT" redis

# A key for AES-GCM, in a file (the config only says where it is).
head -c 32 /dev/urandom | base64 >"$TMP/bench.key"

# utime+stime of a process, in clock ticks (fields 14 and 15 of its stat;
# counted after "comm)", which may hold spaces).
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat")
  stat=${stat##*) }
  awk '{ print $12 + $13 }' <<<"$stat"
}
CLK_TCK=$(getconf CLK_TCK)

INSTANCES=(none lz4 lz4+aes)
declare -A PORT SPID
for inst in "${INSTANCES[@]}"; do
  free_port SPORT
  free_port MPORT
  PORT[$inst]=$SPORT
  cfg="$TMP/$inst.toml"
  cat >"$cfg" <<EOF
[server]
listen = "127.0.0.1:$SPORT"
[backend]
address = "127.0.0.1:$REDIS_PORT"
[telemetry]
listen = "127.0.0.1:$MPORT"
log_level = "warn"
EOF
  case "$inst" in
    lz4) printf '[[transform]]\npattern = "key:*"\ncompress = "lz4"\n' >>"$cfg" ;;
    lz4+aes)
      printf '[[transform]]\npattern = "key:*"\ncompress = "lz4"\nencrypt = true\n' >>"$cfg"
      printf '[transform_keys]\nactive_key = "bench"\n[transform_keys.keys]\nbench = { file = "%s" }\n' "$TMP/bench.key" >>"$cfg"
      ;;
  esac
  "$STRATA" --config "$cfg" 2>"$TMP/strata-$inst.log" &
  PIDS+=("$!")
  SPID[$inst]=$!
  wait_ping "$SPORT" "strata-$inst"
done

# Every instance must really proxy, and store what its rule says.
for inst in "${INSTANCES[@]}"; do
  redis-cli -p "${PORT[$inst]}" set key:check "$(printf 'check %.0s' $(seq 40))" >/dev/null
  if [ "$(redis-cli -p "${PORT[$inst]}" get key:check)" != "$(printf 'check %.0s' $(seq 40))" ]; then
    echo "transforms_bench: SET/GET through strata ($inst) does not work" >&2
    exit 1
  fi
  stored=$(redis-cli -p "$REDIS_PORT" --no-raw get key:check | head -c 40)
  case "$inst" in
    none) [[ "$stored" == *check* ]] || { echo "transforms_bench: $inst did not store the value as is" >&2; exit 1; } ;;
    *) [[ "$stored" == *'\x00ST\xa1'* ]] || { echo "transforms_bench: $inst did not store an envelope: $stored" >&2; exit 1; } ;;
  esac
done

# JSON values of the two sizes (same generator shape as benches/transforms.rs).
python3 - "$TMP" <<'PY'
import json, random, sys
out = sys.argv[1]
rng = random.Random(7)
FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
LAST = ["smith", "jones", "martin", "garcia", "muller", "rossi"]
CITY = ["Lyon", "Berlin", "Austin", "Osaka", "Porto", "Denver"]
TAGS = ["premium", "beta", "admin", "trial", "mobile", "eu", "us"]
WORDS = ("order shipped pending the customer requested a refund for item delivery "
         "was late and package damaged support ticket").split()
def item():
    f, l = rng.choice(FIRST), rng.choice(LAST)
    return {"id": rng.randrange(1_000_000), "user": f"{f}.{l}", "email": f"{f}.{l}@example.com",
            "created_at": "2024-%02d-%02dT%02d:%02d:%02dZ" % (rng.randint(1, 12), rng.randint(1, 28),
                rng.randrange(24), rng.randrange(60), rng.randrange(60)),
            "active": rng.random() < 0.5, "score": round(rng.random() * 100, 1),
            "tags": [rng.choice(TAGS), rng.choice(TAGS)],
            "address": {"city": rng.choice(CITY), "zip": "%05d" % rng.randrange(100000)},
            "session_token": "%032x" % rng.getrandbits(128),
            "note": " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 15)))}
def doc(size):
    """A JSON document of exactly `size` bytes (a free-text "pad" fills the end)."""
    items = []
    while True:
        items.append(item())
        if len(json.dumps({"items": items, "pad": ""}, separators=(",", ":"))) > size:
            items.pop()
            break
    s = json.dumps({"items": items, "pad": ""}, separators=(",", ":"))
    pad = ""
    while len(pad) < size - len(s):
        pad += rng.choice(WORDS) + " "
    s = json.dumps({"items": items, "pad": pad[:size - len(s)]}, separators=(",", ":"))
    assert len(s) == size, (len(s), size)
    return s
for size in (1024, 16384):
    open(f"{out}/json-{size}.txt", "w").write(doc(size))
# A corpus of mixed sizes for the stored-size table: RESP SET commands.
with open(f"{out}/corpus.resp", "wb") as f:
    total = 0
    for i in range(2000):
        d = doc([200, 1024, 4096, 16384][i % 4]).encode()
        total += len(d)
        if i == 3:
            open(f"{out}/corpus-3.txt", "wb").write(d)
        k = f"key:corpus:{i}".encode()
        f.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(d), d))
    open(f"{out}/corpus.bytes", "w").write(str(total))
PY

RESULTS=$TMP/results.csv # repeat,kind,size,mode,instance,test,rps,p50_ms
CPU=$TMP/cpu.csv         # repeat,kind,size,mode,instance,cpu_us_per_request (SET and GET together)
: >"$RESULTS"
: >"$CPU"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
MODES=(c)
if [ "$N_C1" -gt 0 ]; then MODES+=(c1); fi
if [ "$N_P16" -gt 0 ]; then MODES+=(p16); fi
echo "transforms_bench: redis :$REDIS_PORT, strata none :${PORT[none]}, lz4 :${PORT[lz4]}, lz4+aes :${PORT[lz4+aes]}; REPEATS=$REPEATS N=$N -c $CLIENTS -r $KEYS" >&2

# One measurement: SET then GET, appending "test,rps,p50" lines to RESULTS.
measure() { # repeat kind size mode instance
  local r=$1 kind=$2 size=$3 mode=$4 inst=$5 port=${PORT[$5]} n clients out value pipeline=1
  case "$mode" in
    c) n=$N clients=$CLIENTS ;;
    c1) n=$N_C1 clients=1 ;;
    p16) n=$N_P16 clients=$CLIENTS pipeline=16 ;;
  esac
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  local before after
  before=$(cpu_ticks "${SPID[$inst]}")
  if [ "$kind" = d ]; then
    out=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -n "$n" -r "$KEYS" -P "$pipeline" -d "$size" -t set,get --csv 2>>"$TMP/benchmark.err" || true)
    awk -F, -v pre="$r,$kind,$size,$mode,$inst" 'NR > 1 { gsub(/"/, ""); print pre "," $1 "," $2 "," $5 }' <<<"$out" >>"$RESULTS"
  else
    value=$(cat "$TMP/json-$size.txt")
    # Custom commands: -q prints "<command>: <rps> requests per second, p50=<ms> msec".
    for t in SET GET; do
      if [ "$t" = SET ]; then
        out=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -n "$n" -r "$KEYS" -P "$pipeline" -q SET 'key:__rand_int__' "$value" 2>>"$TMP/benchmark.err" | tr '\r' '\n' | grep 'requests per second' | tail -1 || true)
      else
        out=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -n "$n" -r "$KEYS" -P "$pipeline" -q GET 'key:__rand_int__' 2>>"$TMP/benchmark.err" | tr '\r' '\n' | grep 'requests per second' | tail -1 || true)
      fi
      sed -n 's/.*: \([0-9.]*\) requests per second, p50=\([0-9.]*\) msec.*/\1 \2/p' <<<"$out" |
        awk -v pre="$r,$kind,$size,$mode,$inst,$t" '{ print pre "," $1 "," $2 }' >>"$RESULTS"
    done
  fi
  after=$(cpu_ticks "${SPID[$inst]}")
  awk -v a="$after" -v b="$before" -v t="$CLK_TCK" -v n="$n" -v pre="$r,$kind,$size,$mode,$inst" \
    'BEGIN { printf "%s,%.2f\n", pre, (a - b) / t * 1e6 / (2 * n) }' >>"$CPU"
  printf '  repeat %s %-4s %5s B %-2s %-8s %s cpu %s us/req\n' "$r" "$kind" "$size" "$mode" "$inst" \
    "$(awk -F, -v pre="$r,$kind,$size,$mode,$inst," 'index($0, pre) == 1 { printf "%s %s rps p50 %s ms  ", $6, $7, $8 }' "$RESULTS")" \
    "$(tail -1 "$CPU" | cut -d, -f6)" >&2
}

for r in $(seq "$REPEATS"); do
  for kind in d json; do
    for size in $SIZES; do
      for mode in "${MODES[@]}"; do
        for k in 0 1 2; do
          measure "$r" "$kind" "$size" "$mode" "${INSTANCES[$(((k + r) % 3))]}"
        done
      done
    done
  done
done

# Median of field 7 (rps) or 8 (p50) for kind/size/mode/instance/test.
median() {
  awk -F, -v k="$1" -v s="$2" -v m="$3" -v i="$4" -v t="$5" -v f="$6" \
    '$2 == k && $3 == s && $4 == m && $5 == i && $6 == t { print $f }' "$RESULTS" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NA"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# Median strata CPU µs per request for kind/size/mode/instance.
cpu_median() {
  awk -F, -v k="$1" -v s="$2" -v m="$3" -v i="$4" '$2 == k && $3 == s && $4 == m && $5 == i { print $6 }' "$CPU" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NA"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f", a / b }'; }
us() { awk -v x="$1" 'BEGIN { if (x == "NA") print "NA"; else printf "%.0f", x * 1000 }'; }
verdict() {
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "NA") { print "MISS (no data)"; exit }
    ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
    print ok ? "PASS" : "MISS" }'
}

# Stored size of the JSON corpus through each instance (STRLEN summed on the
# backend, and used_memory before/after loading).
CORPUS_BYTES=$(cat "$TMP/corpus.bytes")
declare -A STORED MEM
for inst in "${INSTANCES[@]}"; do
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  before=$(redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
  redis-cli -p "${PORT[$inst]}" --pipe <"$TMP/corpus.resp" >"$TMP/pipe-$inst.log" 2>&1
  STORED[$inst]=$(redis-cli -p "$REDIS_PORT" eval "local s = 0 for _, k in ipairs(redis.call('KEYS', 'key:corpus:*')) do s = s + redis.call('STRLEN', k) end return s" 0)
  after=$(redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
  MEM[$inst]=$((after - before))
  # What was loaded reads back as it was written.
  if [ "$(redis-cli -p "${PORT[$inst]}" --raw get key:corpus:3 | md5sum)" != "$( (cat "$TMP/corpus-3.txt"; echo) | md5sum)" ]; then
    echo "transforms_bench: the corpus does not read back through strata ($inst)" >&2
    exit 1
  fi
done

mkdir -p "$(dirname "$OUT")"
{
  echo "strata value-transform benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
  echo "$(redis-server --version | cut -d' ' -f1-3), strata $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (+ working tree), default config (1 worker thread)"
  echo "one redis-server, three strata: rule on key:* none | lz4 | lz4+aes-gcm; backend flushed before each run"
  echo "redis-benchmark -c $CLIENTS -n $N -r $KEYS, SET then GET; medians of $REPEATS runs per instance, interleaved"
  [ "$N_C1" -gt 0 ] && echo "hop latency: the same with -c 1 -n $N_C1"
  [ "$N_P16" -gt 0 ] && echo "pipelined: the same with -P 16 -n $N_P16"
  echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  for kind in d json; do
    echo
    if [ "$kind" = d ]; then echo "Values: redis-benchmark -d SIZE (random, incompressible)"; else echo "Values: realistic JSON of SIZE bytes (lz4 shrinks them to about 45%)"; fi
    printf '%-12s %10s %10s %10s %9s %9s %8s %8s %8s\n' test none lz4 lz4+aes lz4/none both/none "p50 none" "p50 lz4" "p50 both"
    for size in 1024 16384; do
      for t in SET GET; do
        a=$(median "$kind" "$size" c none "$t" 7)
        b=$(median "$kind" "$size" c lz4 "$t" 7)
        c=$(median "$kind" "$size" c lz4+aes "$t" 7)
        printf '%-12s %10s %10s %10s %9s %9s %8s %8s %8s\n' "$t $((size / 1024))KiB" "$a" "$b" "$c" \
          "$(ratio "$b" "$a")" "$(ratio "$c" "$a")" \
          "$(us "$(median "$kind" "$size" c none "$t" 8)")" "$(us "$(median "$kind" "$size" c lz4 "$t" 8)")" \
          "$(us "$(median "$kind" "$size" c lz4+aes "$t" 8)")"
      done
    done
    echo "(requests/s; p50 in µs at -c $CLIENTS, mostly queueing)"
    printf '%-12s %10s %10s %10s   (strata CPU µs per request, SET and GET runs together)\n' size none lz4 lz4+aes
    for size in 1024 16384; do
      printf '%-12s %10s %10s %10s\n' "$((size / 1024))KiB" "$(cpu_median "$kind" "$size" c none)" \
        "$(cpu_median "$kind" "$size" c lz4)" "$(cpu_median "$kind" "$size" c lz4+aes)"
    done
    if [ "$N_P16" -gt 0 ]; then
      printf '%-12s %10s %10s %10s %9s %9s   (requests/s, -c %s -P 16)\n' test none lz4 lz4+aes lz4/none both/none "$CLIENTS"
      for size in 1024 16384; do
        for t in SET GET; do
          a=$(median "$kind" "$size" p16 none "$t" 7)
          b=$(median "$kind" "$size" p16 lz4 "$t" 7)
          c=$(median "$kind" "$size" p16 lz4+aes "$t" 7)
          printf '%-12s %10s %10s %10s %9s %9s\n' "$t $((size / 1024))KiB" "$a" "$b" "$c" "$(ratio "$b" "$a")" "$(ratio "$c" "$a")"
        done
      done
      printf '%-12s %10s %10s %10s   (strata CPU µs per request at -P 16)\n' size none lz4 lz4+aes
      for size in 1024 16384; do
        printf '%-12s %10s %10s %10s\n' "$((size / 1024))KiB" "$(cpu_median "$kind" "$size" p16 none)" \
          "$(cpu_median "$kind" "$size" p16 lz4)" "$(cpu_median "$kind" "$size" p16 lz4+aes)"
      done
    fi
    if [ "$N_C1" -gt 0 ]; then
      printf '%-12s %10s %10s %10s   (p50 µs, -c 1: the hop itself)\n' test none lz4 lz4+aes
      for size in 1024 16384; do
        for t in SET GET; do
          printf '%-12s %10s %10s %10s\n' "$t $((size / 1024))KiB" \
            "$(us "$(median "$kind" "$size" c1 none "$t" 8)")" "$(us "$(median "$kind" "$size" c1 lz4 "$t" 8)")" \
            "$(us "$(median "$kind" "$size" c1 lz4+aes "$t" 8)")"
        done
      done
    fi
  done
  echo
  echo "JSON corpus (2000 documents of 200 B, 1 KiB, 4 KiB, 16 KiB): $CORPUS_BYTES bytes of JSON"
  printf '%-10s %14s %10s %16s\n' instance "stored bytes" "vs plain" "used_memory +"
  for inst in "${INSTANCES[@]}"; do
    printf '%-10s %14s %10s %16s\n' "$inst" "${STORED[$inst]}" \
      "$(awk -v a="${STORED[$inst]}" -v b="${STORED[none]}" 'BEGIN { printf "%+.1f%%", (a / b - 1) * 100 }')" "${MEM[$inst]}"
  done
  echo
  echo "Targets"
  shrink=$(awk -v a="${STORED[lz4]}" -v b="${STORED[none]}" 'BEGIN { printf "%.1f", (1 - a / b) * 100 }')
  printf '  JSON corpus stored size, lz4: %s%% smaller >= 40%%   %s\n' "$shrink" "$(verdict "$shrink" ">=" 40)"
  for kind in d json; do
    for t in SET GET; do
      rt=$(ratio "$(median "$kind" 1024 c lz4+aes "$t" 7)" "$(median "$kind" 1024 c none "$t" 7)")
      printf '  %-4s 1KiB (%-4s values) lz4+aes/none throughput %5s >= 0.85   %s\n' "$t" "$kind" "$rt" "$(verdict "$rt" ">=" 0.85)"
    done
  done
} | tee "$OUT"
cp "$RESULTS" "${OUT%.txt}-raw.csv"
cp "$CPU" "${OUT%.txt}-cpu.csv"
echo "(summary written to $OUT, every run in ${OUT%.txt}-raw.csv)"
exit 0
