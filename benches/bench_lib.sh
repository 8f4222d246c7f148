# shellcheck shell=bash
# Shared helpers for the benchmark scripts (sourced, not run). The caller
# sets BENCH_NAME, then calls bench_tmpdir.

# Makes $TMP (each process's log lives there) and the PIDS array; on exit,
# every process in PIDS is killed and waited for and $TMP removed.
bench_tmpdir() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM HUP
}

bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}

# Sets variable $1 to a TCP port no socket uses, different from the ones
# already handed out (no subshell, so USED_PORTS persists). It is taken
# below the kernel's ephemeral range when there is room: a port inside it
# can be taken by any outgoing connection on this shared machine between
# this check and the server's bind (seen: redis-server "Address already in
# use" in `make bench`).
BENCH_EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
USED_PORTS=" "
free_port() {
  local p _ lo=10000 span=$((BENCH_EPHEMERAL_LOW - 10000))
  if [ "$span" -lt 1000 ]; then lo=20000 span=40000; fi
  for _ in $(seq 200); do
    p=$((lo + (RANDOM * 32768 + RANDOM) % span))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS="$USED_PORTS$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  echo "$BENCH_NAME: no free port found" >&2
  return 1
}

# Waits until something on $1 answers PING; $2 names it for the error.
wait_ping() {
  local _
  for _ in $(seq 100); do
    if [ "$(redis-cli -p "$1" ping 2>/dev/null)" = "PONG" ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "$BENCH_NAME: $2 on port $1 did not answer PING; its log:" >&2
  cat "$TMP/$2.log" >&2 || true
  exit 1
}
