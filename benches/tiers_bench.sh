#!/usr/bin/env bash
# Postgres tiers through strata, end to end (docs/PERFORMANCE.md, "Tiers"):
#
#   plain      SET key:* through a strata with no [[tier]] rule
#   nomatch    SET key:* through a strata with the durable:* rule (the cost
#              of the rules to commands on keys no rule names; target < 3%)
#   through    SET durable:* write-through (Postgres commit, then Redis)
#   read       GET of 1,000 resident mirrored keys (the re-warm check)
#   pg insert  a bare Postgres upsert round trip (pgbench, one client): the
#              floor under a write-through SET (target: p50 within 2x)
#   mset1000   a 1,000-key MSET of durable:* keys (target: <= 20 ms)
#   rt miss    read-through: GET of a durable:* key Redis lacks and Postgres
#              holds (fetch, re-warm, GET), one client, per-request latency;
#              and GET of a key in neither tier (one indexed lookup). p50
#              per round of RT_KEYS keys, median over REPEATS rounds
#              (target: <= 2 ms at p50)
#   rules20    the cost to plain commands on keys matching no rule:
#              redis-benchmark SET and GET key:* -P 16 through a strata with
#              no tier config against one with 20 [[tier]] rules none of
#              which matches, NOMATCH_REPEATS interleaved repeats (ABBA
#              order) in the same run (target: < 3% of throughput)
#   behind     write-behind: the drain rate into Postgres (an outbox of
#              BEHIND_N changes filled first, then one strata drains it;
#              target >= 50,000 keys/s), and the capture-to-commit lag p99
#              at a steady BEHIND_RATE writes/s for BEHIND_SECS seconds
#              (strata_tier_behind_lag_seconds; target < 1 s)
#
# One redis-server, one PostgreSQL (initdb in a temp dir), two strata
# instances from the same binary. Each repeat measures in a rotating order;
# the table shows medians over REPEATS. A measurement: it exits 0 whatever
# the figures; non-zero only when it cannot measure.
#
# Environment: CASES (a subset of the cases above), REPEATS (3), N (50000 requests per run at -c CLIENTS),
# CLIENTS (50), N_C1 (3000 requests of the one-client latency runs),
# RT_KEYS (2000 keys per read-through round), NOMATCH_REPEATS (8),
# NOMATCH_N (400000 requests per -P 16 run),
# BEHIND_N (200000), BEHIND_RATE (20000), BEHIND_SECS (10),
# STRATA (target/release/strata), OUT (target/bench/tiers-latest.txt).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REPEATS=${REPEATS:-3}
N=${N:-50000}
CLIENTS=${CLIENTS:-50}
N_C1=${N_C1:-3000}
STRATA=${STRATA:-$ROOT/target/release/strata}
OUT=${OUT:-$ROOT/target/bench/tiers-latest.txt}

for tool in redis-server redis-cli redis-benchmark python3; do
  command -v "$tool" >/dev/null || { echo "tiers_bench: $tool not found: apt-get install redis-server redis-tools python3" >&2; exit 1; }
done
PG_BIN=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")
[ -x "$PG_BIN/initdb" ] || { echo "tiers_bench: initdb not found: apt-get install postgresql" >&2; exit 1; }
[ -x "$STRATA" ] || { echo "tiers_bench: $STRATA missing: cargo build --release" >&2; exit 1; }

WORK=$(mktemp -d /tmp/strata-tiers-bench.XXXXXX)
AS=""
if [ "$(id -u)" = 0 ]; then AS="runuser -u postgres --"; chown postgres: "$WORK"; fi
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port); PG_PORT=$(free_port); S1=$(free_port); S2=$(free_port)
S3=$(free_port); S4=$(free_port); M4=$(free_port); DEAD_PG=$(free_port)
S5=$(free_port)
RT_KEYS=${RT_KEYS:-2000}; NOMATCH_REPEATS=${NOMATCH_REPEATS:-8}; NOMATCH_N=${NOMATCH_N:-400000}
BEHIND_N=${BEHIND_N:-200000}; BEHIND_RATE=${BEHIND_RATE:-20000}; BEHIND_SECS=${BEHIND_SECS:-10}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  $AS "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --logfile "$WORK/redis.log" --dir "$WORK" >/dev/null
$AS "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
$AS "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1" start >/dev/null
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

cat > "$WORK/plain.toml" <<TOML
[backend]
address = "127.0.0.1:$REDIS_PORT"
[telemetry]
listen = ""
log_level = "warn"
TOML
cp "$WORK/plain.toml" "$WORK/tier.toml"
cat >> "$WORK/tier.toml" <<TOML
[postgres]
url = "$PG_URL"
[[tier]]
pattern = "durable:*"
policy = "mirror"
write = "through"
[[tier]]
pattern = "rdurable:*"
policy = "mirror"
write = "through"
TOML
# 20 rules, none of which names key:* (varied prefixes, as an application's
# would be), for the rules20 case.
cp "$WORK/plain.toml" "$WORK/rules20.toml"
echo "[postgres]
url = \"$PG_URL\"" >> "$WORK/rules20.toml"
for i in $(seq 0 19); do
  printf '[[tier]]\npattern = "%s%d:*"\npolicy = "mirror"\nwrite = "through"\n' \
    "$(echo durable session order user cart invoice ledger audit | cut -d' ' -f$(( i % 8 + 1 )))" "$i" >> "$WORK/rules20.toml"
done
"$STRATA" --config "$WORK/plain.toml" --listen "127.0.0.1:$S1" & PIDS+=($!)
"$STRATA" --config "$WORK/tier.toml" --listen "127.0.0.1:$S2" & PIDS+=($!)
"$STRATA" --config "$WORK/rules20.toml" --listen "127.0.0.1:$S5" & PIDS+=($!)
for p in $S1 $S2 $S5; do
  for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
# The schema is applied in the background: wait for the first mirrored write.
for _ in $(seq 100); do [ "$(redis-cli -p $S2 set durable:warmup x)" = OK ] && break; sleep 0.1; done

# rps p50 p99 of one redis-benchmark run (CSV: test,rps,avg,min,p50,p95,p99,max).
bench() { # port clients n command...
  local port=$1 c=$2 n=$3; shift 3
  redis-benchmark -p "$port" -c "$c" -n "$n" -r "${KEYSPACE:-100000}" --csv "$@" 2>/dev/null \
    | tail -1 | tr -d '"' | awk -F, '{print $2, $5, $7}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The keys the read case reads, all resident (1,000 of them).
KEYSPACE=1000 bench $S2 "$CLIENTS" 20000 SET rdurable:__rand_int__ v >/dev/null

declare -A RPS P50 P99
record() { RPS[$1]+="$2 "; P50[$1]+="$3 "; P99[$1]+="$4 "; }
cases=(${CASES:-plain nomatch through read through_c1})
for r in $(seq "$REPEATS"); do
  for i in $(seq 0 $((${#cases[@]} - 1))); do
    name=${cases[$(( (i + r) % ${#cases[@]} ))]}
    case $name in
      plain)      set -- $(bench $S1 "$CLIENTS" "$N" SET key:__rand_int__ v) ;;
      nomatch)    set -- $(bench $S2 "$CLIENTS" "$N" SET key:__rand_int__ v) ;;
      through)    set -- $(bench $S2 "$CLIENTS" "$N" SET durable:__rand_int__ v) ;;
      read)       set -- $(KEYSPACE=1000 bench $S2 "$CLIENTS" "$N" GET rdurable:__rand_int__) ;;
      through_c1) set -- $(bench $S2 1 "$N_C1" SET durable:__rand_int__ v) ;;
    esac
    record "$name" "$1" "$2" "$3"
  done
done

# The cost of 20 non-matching rules to plain commands: SET and GET key:*
# at -P 16, plain (S1) and rules20 (S5) alternating in ABBA order so that
# the machine's drift falls on both alike. rps only (p50 at -P 16 is
# redis-benchmark's batch latency).
declare -A NM
for r in $(seq "$NOMATCH_REPEATS"); do
  if [ $((r % 2)) = 1 ]; then order="S1 S5"; else order="S5 S1"; fi
  for who in $order; do
    port=${!who}
    for cmd in SET GET; do
      if [ $cmd = SET ]; then args="SET key:__rand_int__ v"; else args="GET key:__rand_int__"; fi
      set -- $(redis-benchmark -p "$port" -c "$CLIENTS" -n "$NOMATCH_N" -r 100000 -P 16 --csv $args 2>/dev/null \
        | tail -1 | tr -d '"' | awk -F, '{print $2}')
      NM[$who$cmd]+="$1 "
    done
  done
done

# Read-through misses, one client: RT_KEYS durable:rt* keys written through
# strata (so Postgres has them), then deleted from Redis directly; each GET
# through strata then misses, is fetched from Postgres and re-warmed. Also
# GETs of keys in neither tier. Per-request latency; p50 of each round.
RT=$(python3 - "$S2" "$REDIS_PORT" "$RT_KEYS" "$REPEATS" <<'PY'
import socket, statistics, sys, time
strata, redis, n, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def enc(*args):
    return (f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)).encode()
def call(s, req):
    s.sendall(req)
    buf = b""
    while True:
        buf += s.recv(65536)
        # One reply: a simple/int/error line, or a bulk string.
        if buf[:1] == b"$":
            head, _, rest = buf.partition(b"\r\n")
            ln = int(head[1:])
            if ln < 0 or len(rest) >= ln + 2:
                return buf
        elif buf.endswith(b"\r\n"):
            return buf
def p50s(s, keys, found):
    times = []
    for k in keys:
        t0 = time.perf_counter()
        r = call(s, enc("GET", k))
        times.append((time.perf_counter() - t0) * 1000)
        v = "value-of-" + k
        want = f"${len(v)}\r\n{v}\r\n".encode() if found else b"$-1\r\n"
        assert r == want, (k, r[:80])
    return statistics.median(times)
st = socket.create_connection(("127.0.0.1", strata))
rd = socket.create_connection(("127.0.0.1", redis))
hit, none = [], []
for r in range(rounds):
    keys = [f"durable:rt{r}:{i}" for i in range(n)]
    for i in range(0, n, 500):
        args = [x for k in keys[i:i + 500] for x in (k, "value-of-" + k)]
        assert call(st, enc("MSET", *args)) == b"+OK\r\n"
    for i in range(0, n, 500):
        call(rd, enc("DEL", *keys[i:i + 500]))
    # Each key is missing from Redis: the first GET fetches it from
    # Postgres and re-warms it.
    hit.append(p50s(st, keys, True))
    none.append(p50s(st, [f"durable:none{r}:{i}" for i in range(n)], False))
print(f"{statistics.median(hit):.3f} {statistics.median(none):.3f} "
      + " ".join(f"{x:.3f}" for x in hit))
PY
)
read -r RT_HIT RT_NONE RT_ROUNDS <<<"$RT"

# A bare Postgres upsert round trip, one client (pgbench's average latency).
PGBENCH=$PG_BIN/pgbench
"$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c \
  "CREATE TABLE IF NOT EXISTS bench_t (k bigint PRIMARY KEY, v bytea)" >/dev/null
echo "\\set k random(1, 100000)
INSERT INTO bench_t VALUES (:k, 'v') ON CONFLICT (k) DO UPDATE SET v = excluded.v;" > "$WORK/ins.sql"
PG_AVG=$("$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -c 1 -T 5 -f "$WORK/ins.sql" postgres 2>/dev/null \
  | awk '/latency average/ {print $4}')

# 1,000-key MSET of mirrored keys, one client: median of 20 (ms), from
# sending the command to reading +OK.
MSET_MS=$(python3 - "$S2" <<'PY'
import socket, statistics, sys, time
args = ["MSET"] + [x for i in range(1000) for x in (f"durable:m{i}", f"value{i}")]
req = (f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)).encode()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
times = []
for _ in range(20):
    t0 = time.perf_counter()
    s.sendall(req)
    buf = b""
    while not buf.endswith(b"\r\n"):
        buf += s.recv(65536)
    times.append((time.perf_counter() - t0) * 1000)
    assert buf == b"+OK\r\n", buf
print(f"{statistics.median(times):.1f}")
PY
)

# Write-behind. S3 captures into the outbox but cannot reach Postgres (a
# port nothing listens on), and reads in a consumer group of its own, so
# the outbox fills; then S4, with Postgres, drains it alone (its group,
# created after, starts from the stream's first entry).
behind_toml() { # postgres-port group
  cat "$WORK/plain.toml"
  cat <<TOML
[postgres]
url = "postgres://postgres@127.0.0.1:$1/postgres"
[postgres.write_behind]
group = "$2"
outbox_max_bytes = 268435456
[[tier]]
pattern = "wdurable:*"
policy = "mirror"
write = "behind"
TOML
}
behind_toml "$DEAD_PG" bench-fill > "$WORK/behind_fill.toml"
behind_toml "$PG_PORT" strata-drain > "$WORK/behind.toml"
"$STRATA" --config "$WORK/behind_fill.toml" --listen "127.0.0.1:$S3" & S3_PID=$!; PIDS+=($S3_PID)
for _ in $(seq 100); do redis-cli -p "$S3" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -p "$S3" -c "$CLIENTS" -n "$BEHIND_N" -r 1000000000 -q SET wdurable:__rand_int__ v >/dev/null 2>&1
FILLED=$(redis-cli -p "$REDIS_PORT" xlen strata:outbox)
kill "$S3_PID"; wait "$S3_PID" 2>/dev/null || true
"$STRATA" --config "$WORK/behind.toml" --listen "127.0.0.1:$S4" --metrics-listen "127.0.0.1:$M4" & PIDS+=($!)
drained() { { curl -s "http://127.0.0.1:$M4/metrics" || true; } | awk '/^strata_tier_behind_drained_total/ {print $2}'; }
# From the first committed batch (startup and schema check excluded) to
# the outbox empty.
D0=""
for _ in $(seq 3000); do D0=$(drained); [ -n "$D0" ] && [ "$D0" != 0 ] && break; sleep 0.01; done
[ -n "$D0" ] || { echo "tiers_bench: write-behind drain never started" >&2; exit 1; }
T0=$(date +%s.%N)
while [ "$(redis-cli -p "$REDIS_PORT" xlen strata:outbox)" != 0 ]; do sleep 0.02; done
T1=$(date +%s.%N)
D1=$(drained)
DRAIN_RATE=$(awk -v n="$((D1 - D0))" -v a="$T0" -v b="$T1" 'BEGIN{printf "%d", n/(b-a)}')
DRAIN_SECS=$(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.2f", b-a}')
DRAINED=$((D1 - D0))
echo "tiers_bench: write-behind filled=$FILLED drained $D0 -> $D1" >&2

# Steady load: BEHIND_RATE SETs/s through S4 (pipelined every 10 ms), then
# the lag p99 from the histogram's buckets over that run only.
lag_buckets() { curl -s "http://127.0.0.1:$M4/metrics" | grep '^strata_tier_behind_lag_seconds_bucket'; }
lag_buckets > "$WORK/lag0"
STEADY=$(python3 - "$S4" "$BEHIND_RATE" "$BEHIND_SECS" <<'PY'
# BEHIND_RATE SETs/s over 4 connections (a tier write holds back its
# client's next command, so one connection cannot carry the rate alone),
# each pipelining rate/400 SETs every 10 ms on a fixed schedule.
import socket, sys, threading, time
port, rate, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
CONNS, TICK = 4, 0.01
per_tick = max(1, rate // CONNS // 100)
sent = [0] * CONNS
def run(c):
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.perf_counter(); n = 0; i = 0
    while time.perf_counter() - t0 < secs:
        keys = [b"wdurable:s%d:%d" % (c, i + j) for j in range(per_tick)]
        s.sendall(b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(k), k) for k in keys))
        i += per_tick
        want, buf = per_tick * 5, b""
        while len(buf) < want:
            buf += s.recv(65536)
        assert buf == b"+OK\r\n" * per_tick, buf[:200]
        n += 1
        pause = t0 + n * TICK - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    sent[c] = i
t0 = time.perf_counter()
ts = [threading.Thread(target=run, args=(c,)) for c in range(CONNS)]
for t in ts: t.start()
for t in ts: t.join()
print(int(sum(sent) / (time.perf_counter() - t0)))
PY
)
while [ "$(redis-cli -p "$REDIS_PORT" xlen strata:outbox)" != 0 ]; do sleep 0.02; done
lag_buckets > "$WORK/lag1"
LAG_P99=$(paste -d' ' "$WORK/lag0" "$WORK/lag1" | awk '
  { match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5); n[NR] = $4 - $2; l[NR] = le }
  END { total = n[NR]; for (i = 1; i <= NR; i++) if (n[i] >= 0.99 * total) { print l[i]; exit } }')

mkdir -p "$(dirname "$OUT")"
{
  echo "strata tiers benchmark ($(date -u +%F), REPEATS=$REPEATS, N=$N, -c $CLIENTS; medians)"
  printf '%-12s %10s %9s %9s\n' case rps p50_ms p99_ms
  for name in "${cases[@]}"; do
    printf '%-12s %10s %9s %9s\n' "$name" \
      "$(echo ${RPS[$name]:-} | tr ' ' '\n' | median)" \
      "$(echo ${P50[$name]:-} | tr ' ' '\n' | median)" \
      "$(echo ${P99[$name]:-} | tr ' ' '\n' | median)"
  done
  plain=$(echo ${RPS[plain]:-} | tr ' ' '\n' | median)
  nomatch=$(echo ${RPS[nomatch]:-} | tr ' ' '\n' | median)
  c1=$(echo ${P50[through_c1]:-} | tr ' ' '\n' | median)
  echo
  echo "rules' cost to keys no rule names: $(awk -v a="$plain" -v b="$nomatch" 'BEGIN{printf "%.1f%%", (a-b)/a*100}') (target < 3%)"
  echo "bare Postgres upsert round trip (pgbench, 1 client, avg): ${PG_AVG} ms; write-through SET p50 at -c 1: ${c1} ms" \
       "($(awk -v a="$c1" -v b="$PG_AVG" 'BEGIN{ if (b>0) printf "%.2fx", a/b; else print "NA"}'); target <= 2x)"
  echo "1,000-key MSET of mirrored keys, one client, median of 20: ${MSET_MS} ms (target <= 20 ms)"
  echo "write-behind drain: $DRAINED of $FILLED changes in ${DRAIN_SECS} s = ${DRAIN_RATE} keys/s, one strata (target >= 50,000)"
  echo "write-behind lag p99 at ${STEADY} writes/s (asked ${BEHIND_RATE}) for ${BEHIND_SECS} s: <= ${LAG_P99} s (histogram bucket; target < 1 s)"
  echo "read-through miss (in Postgres, re-warmed), one client, p50 of $RT_KEYS keys, median of $REPEATS rounds: ${RT_HIT} ms (target <= 2 ms); key in neither tier: ${RT_NONE} ms"
  for cmd in SET GET; do
    a=$(echo ${NM[S1$cmd]} | tr ' ' '\n' | median); b=$(echo ${NM[S5$cmd]} | tr ' ' '\n' | median)
    # Each repeat's two runs are adjacent: their ratio cancels the drift
    # between repeats; the median of the ratios is the cost.
    ratio=$(paste -d' ' <(echo ${NM[S1$cmd]} | tr ' ' '\n') <(echo ${NM[S5$cmd]} | tr ' ' '\n') \
      | awk 'NF == 2 && $1 > 0 {print ($1 - $2) / $1 * 100}' | median)
    echo "$cmd key:* -P 16 -c $CLIENTS, $NOMATCH_REPEATS interleaved repeats: no tier config ${a} rps, 20 non-matching rules ${b} rps (medians); cost: median of the repeats' pairwise ratios ${ratio}% (target < 3%)"
    echo "  runs, no tier config: ${NM[S1$cmd]}"
    echo "  runs, 20 rules:       ${NM[S5$cmd]}"
  done
} | tee "$OUT"
