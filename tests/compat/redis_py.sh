#!/usr/bin/env bash
# Runs redis-py's own test suite (from its PyPI sdist) straight at redis-server
# and through strata, in RESP2 and RESP3, and prints per-run tallies plus the
# per-test differences (tests/compat/compare.py). Issue 13's "Done means".
#
# Everything it downloads or builds lives under target/ (not committed).
# Usage: tests/compat/redis_py.sh [extra pytest args, e.g. tests/test_commands.py]
# Env: REDIS_PY_VERSION (default 6.0.0), TIMEOUT (per-test seconds, default 60),
#      SKIP_BUILD=1 to reuse target/release/strata.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VER=${REDIS_PY_VERSION:-6.0.0}
TIMEOUT=${TIMEOUT:-60}
WORK=$ROOT/target/compat
VENV=$ROOT/target/compat-venv
SRC=$WORK/redis-$VER
OUT=$WORK/results
mkdir -p "$WORK" "$OUT"

if [ -z "${SKIP_BUILD:-}" ]; then (cd "$ROOT" && cargo build --release); fi
STRATA=$ROOT/target/release/strata

if [ ! -d "$SRC" ]; then
  (cd "$WORK" && pip download --no-binary :all: --no-deps "redis==$VER" && tar xzf "redis-$VER.tar.gz")
fi
if [ ! -x "$VENV/bin/pytest" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q pytest 'pytest-asyncio>=0.23.0' pytest-timeout mock packaging ujson numpy 'redis-entraid==0.4.0b2'
fi
"$VENV/bin/pip" install -q --no-deps -e "$SRC"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_redis() { # port
  redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --enable-debug-command yes --dir "$OUT" --logfile "$OUT/redis-$1.log" &
  PIDS+=($!)
  for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis on $1 did not start" >&2; exit 1
}
start_strata() { # listen-port backend-port
  "$STRATA" --listen "127.0.0.1:$1" --backend "127.0.0.1:$2" --metrics-listen "" \
    --log-level warn >"$OUT/strata-$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "strata on $1 did not start" >&2; exit 1
}

# Same exclusions in every run: cluster-only, module (redis-stack) and TLS tests.
MARKERS='not onlycluster and not redismod and not ssl'

# The credentials tests (and test_commands.py's test_auth) CONFIG SET requirepass on the server. Through strata,
# AUTH is answered by strata itself (it has no password of its own), so their
# teardown cannot clear it and the backend stays locked for every later test.
# They run in their own pytest invocation, last, and the password is cleared
# after it, so they cannot cascade into the rest of the suite.
CRED=(tests/test_credentials.py tests/test_asyncio/test_credentials.py
      tests/test_commands.py::TestRedisCommands::test_auth)

pyt() { # port protocol junit log args...
  local port=$1 proto=$2 xml=$3 log=$4; shift 4
  (cd "$SRC" && "$VENV/bin/pytest" -p no:cacheprovider -q -rA \
     -m "$MARKERS" --timeout="$TIMEOUT" \
     --redis-url="redis://127.0.0.1:$port/9" --redis-mod-url="redis://127.0.0.1:1/0" \
     --protocol="$proto" --junitxml="$xml" "$@" >"$log" 2>&1) || true
}

run() { # name port backend-port protocol [pytest args]
  local name=$1 port=$2 backend=$3 proto=$4; shift 4
  local ign=(); for f in "${CRED[@]}"; do
    case $f in *::*) ign+=(--deselect="$f") ;; *) ign+=(--ignore="$f") ;; esac
  done
  pyt "$port" "$proto" "$OUT/$name.xml" "$OUT/$name.log" "${ign[@]}" "${@:-tests}"
  echo "$name: $(tail -1 "$OUT/$name.log")"
  if [ $# -eq 0 ]; then
    pyt "$port" "$proto" "$OUT/$name.cred.xml" "$OUT/$name.cred.log" "${CRED[@]}"
    echo "$name (credentials): $(tail -1 "$OUT/$name.cred.log")"
  fi
  for pw in password temp_pass; do
    redis-cli -p "$backend" -a "$pw" --no-auth-warning config set requirepass "" >/dev/null 2>&1 || true
  done
}

# Each run gets its own fresh redis-server(s). PARALLEL=1 runs all four runs at
# once (much faster on a busy machine); the test_cwe_404.py tests then may fight
# over the fixed port 5380 their DelayProxy binds.
RUNS=()
for proto in 2 3; do
  D=$(free_port); start_redis "$D"
  B=$(free_port); start_redis "$B"
  S=$(free_port); start_strata "$S" "$B"
  if [ -n "${PARALLEL:-}" ]; then
    run "direct-resp$proto" "$D" "$D" "$proto" "$@" & RUNS+=($!)
    run "strata-resp$proto" "$S" "$B" "$proto" "$@" & RUNS+=($!)
  else
    run "direct-resp$proto" "$D" "$D" "$proto" "$@"
    run "strata-resp$proto" "$S" "$B" "$proto" "$@"
  fi
done
for r in "${RUNS[@]}"; do wait "$r"; done

"$VENV/bin/python" "$ROOT/tests/compat/compare.py" "$OUT"
