# strata — see README.md. Every target installs what it needs on Debian.
SHELL := /bin/bash
CARGO ?= cargo
REDIS_PORT ?= 7000
PG_PORT ?= 5433
PGDATA_DIR ?= $(CURDIR)/target/pgdata
# PostgreSQL's programs: on PATH, else Debian's versioned directory.
PG_BIN := $(shell d=$$(dirname "$$(command -v initdb 2>/dev/null)" 2>/dev/null); \
  if [ -n "$$d" ] && [ -x "$$d/initdb" ]; then dirname "$$(readlink -f "$$d/initdb")"; \
  else ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; fi)
export PATH := $(if $(PG_BIN),$(PG_BIN):,)$(PATH)
STRATA_BACKEND ?=
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: run test deps build release lint fmt bench bench-micro clean compat

## Build strata, start a local redis-server on $(REDIS_PORT) unless STRATA_BACKEND
## names one, and a local PostgreSQL on $(PG_PORT) (data in target/pgdata, trust
## auth on 127.0.0.1) for the durable:* tier rule, and run strata in front of
## them on 127.0.0.1:6379.
run: release
	@command -v redis-server >/dev/null || $(MAKE) deps
	@command -v initdb >/dev/null || $(MAKE) deps
	@$(MAKE) --no-print-directory pg-start
	@if [ -z "$(STRATA_BACKEND)" ]; then \
	  if ! redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1; then \
	    echo "starting redis-server on 127.0.0.1:$(REDIS_PORT)"; \
	    redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
	      --logfile /tmp/strata-redis-$(REDIS_PORT).log; \
	    for i in $$(seq 50); do redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	  fi; \
	  exec ./target/release/strata --config conf/strata.toml --backend 127.0.0.1:$(REDIS_PORT); \
	else \
	  exec ./target/release/strata --config conf/strata.toml --backend $(STRATA_BACKEND); \
	fi

## Install the servers and tools the tests need (apt-get, only what is missing).
deps:
	@missing=""; \
	command -v redis-server   >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli      >/dev/null || missing="$$missing redis-tools"; \
	command -v redis-sentinel >/dev/null || missing="$$missing redis-sentinel"; \
	command -v initdb         >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi; \
	command -v redis-server >/dev/null || { echo "redis-server is still missing: apt-get install redis-server" >&2; exit 1; }; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
	  || { echo "initdb is still missing: apt-get install postgresql" >&2; exit 1; }

.PHONY: pg-start pg-stop

## A local PostgreSQL for `make run`: initdb into $(PGDATA_DIR) once, then
## start it on 127.0.0.1:$(PG_PORT) with trust auth (as the postgres user
## when run as root, which PostgreSQL refuses to run as).
pg-start:
	@as=""; if [ "$$(id -u)" = "0" ]; then as="runuser -u postgres --"; \
	  mkdir -p $(PGDATA_DIR); chown postgres: $(PGDATA_DIR); chmod 700 $(PGDATA_DIR); fi; \
	if [ ! -f $(PGDATA_DIR)/PG_VERSION ]; then \
	  echo "initdb $(PGDATA_DIR)"; \
	  $$as $(PG_BIN)/initdb -D $(PGDATA_DIR) -U postgres --auth=trust -E UTF8 >/dev/null; \
	fi; \
	if ! $(PG_BIN)/pg_isready -h 127.0.0.1 -p $(PG_PORT) >/dev/null 2>&1; then \
	  echo "starting postgres on 127.0.0.1:$(PG_PORT)"; \
	  $$as $(PG_BIN)/pg_ctl -D $(PGDATA_DIR) -l $(PGDATA_DIR)/postgres.log -w \
	    -o "-p $(PG_PORT) -k $(PGDATA_DIR) -c listen_addresses=127.0.0.1" start >/dev/null; \
	fi

## Stops the PostgreSQL `make run` started.
pg-stop:
	@as=""; [ "$$(id -u)" = "0" ] && as="runuser -u postgres --"; \
	$$as $(PG_BIN)/pg_ctl -D $(PGDATA_DIR) -m fast stop

## Run every test against real servers (installs them first when missing).
test: deps
	$(CARGO) build --all-targets
	# Benchmarks run once each as smoke tests (criterion's harness takes no
	# libtest flags), then every test suite.
	$(CARGO) test --bench protocol --bench command_lookup --bench transforms --bench sentinel_failover
	$(CARGO) test --lib --bins --tests -- --test-threads=4

build:
	$(CARGO) build

# redis-py's own test suite, straight at redis-server and through strata, RESP2 and
# RESP3 (docs/COMPATIBILITY.md). Not part of `make test`: it downloads the sdist and
# takes minutes.
compat: release
	SKIP_BUILD=1 tests/compat/redis_py.sh

release:
	$(CARGO) build --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

.PHONY: bench-deps

## Install what the benchmarks drive: redis-server, redis-benchmark (redis-tools),
## twemproxy (nutcracker), curl and openssl (the TLS benchmark's certificates),
## only what is missing.
bench-deps:
	@missing=""; \
	command -v redis-server    >/dev/null || missing="$$missing redis-server"; \
	command -v redis-benchmark >/dev/null || missing="$$missing redis-tools"; \
	command -v nutcracker      >/dev/null || missing="$$missing nutcracker"; \
	command -v redis-sentinel  >/dev/null || missing="$$missing redis-sentinel"; \
	command -v python3         >/dev/null || missing="$$missing python3"; \
	command -v curl            >/dev/null || missing="$$missing curl"; \
	command -v valgrind        >/dev/null || missing="$$missing valgrind"; \
	command -v openssl         >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi; \
	for t in redis-server redis-benchmark nutcracker; do \
	  command -v $$t >/dev/null || { echo "$$t is still missing: apt-get install redis-server redis-tools nutcracker" >&2; exit 1; }; \
	done

## Micro-benchmarks (criterion, short measurement) then the end-to-end proxy
## benchmark: redis direct vs strata vs twemproxy, and vs predixy when
## PREDIXY_BIN names its binary (e.g. PREDIXY_BIN=../shared/anchors/predixy),
## interleaved repeats in one run; throughput, p50/p99, CPU per request and
## PASS/MISS for issue 20's targets. Summary in target/bench/proxy-latest.txt;
## REPEATS=n (default 5). Then the Sentinel, transform and cluster sections (below).
bench: release bench-deps
	$(CARGO) bench --bench protocol --bench command_lookup -- --quick
	bash benches/proxy_bench.sh
	bash benches/sentinel_failover.sh
	$(MAKE) bench-transforms
	$(MAKE) bench-cluster
	$(MAKE) bench-tiers
	$(MAKE) bench-tls
	$(MAKE) bench-acl
	$(MAKE) bench-coord
	$(MAKE) bench-instructions

## Criterion micro-benchmarks only, full measurement (reports in target/criterion).
bench-micro:
	$(CARGO) bench --bench protocol --bench command_lookup

.PHONY: bench-sentinel

## Sentinel failover through strata: 5 forced failovers under a write load on
## a real topology (1 primary, 2 replicas, 3 sentinels); median and worst of the
## client-seen unavailability and of strata's part. Summary in
## target/bench/sentinel-failover-latest.txt.
bench-sentinel: deps
	bash benches/sentinel_failover.sh

.PHONY: bench-transforms

## Value transforms: lz4 and AES-GCM per core (criterion, short run), then
## GET/SET through strata for 1 KiB and 16 KiB values with no rule, lz4, and
## lz4+AES-GCM, and the stored size of a JSON corpus. Summary in
## target/bench/transforms-latest.txt.
bench-transforms: release bench-deps
	$(CARGO) bench --bench transforms -- --quick
	bash benches/transforms_bench.sh

.PHONY: bench-coord

## Locks (issue 15): uncontended LOCK.ACQUIRE+LOCK.RELEASE pairs/s with 50
## clients (target >= 20,000 on the redis backend), contended handoffs on one
## lock with p50/p99 handoff latency. Summary in target/bench/coord-latest.txt.
bench-coord: release bench-deps
	bash benches/coord_bench.sh

.PHONY: bench-tls

## Client-side TLS: redis-benchmark SET/GET at -P 1 and -P 16 over strata's
## TLS listener and its plain one (the same process), interleaved, medians;
## target TLS >= 0.8x plain at -P 16. Summary in target/bench/tls-latest.txt.
bench-tls: release bench-deps
	bash benches/tls_bench.sh

.PHONY: bench-acl

## The cost of ACL checks: GET/SET at -P 16 and callgrind instructions per
## request with the checks off, the default deny list, and users mode with a
## 20-rule user, in one run. Summary in target/bench/acl-latest.txt.
bench-acl: release bench-deps
	bash benches/acl_bench.sh

.PHONY: bench-scripts

## Script calls (EVALSHA, -P 1 and -P 16) Redis direct and through strata;
## BEFORE=/path/to/another/strata adds that binary to the comparison.
bench-scripts: release bench-deps
	bash benches/scripts_bench.sh

.PHONY: bench-instructions

## Instructions strata runs per request (valgrind callgrind: exact and
## repeatable on a noisy machine, user space only), standalone and cluster
## mode, at -c 50 -P 16. Summary in target/bench/instructions-latest.txt.
bench-instructions: release bench-deps
	bash benches/instructions.sh

.PHONY: bench-cluster

## Redis Cluster: a 3-primary + 3-replica cluster on this machine;
## redis-benchmark --cluster straight at it vs plain redis-benchmark through
## strata (cluster mode), SET/GET at -P 1 and -P 16, and MGET of 100 keys
## across slots vs in one slot. Summary in target/bench/cluster-latest.txt.
bench-cluster: release bench-deps
	bash benches/cluster_bench.sh

.PHONY: bench-tiers

## Postgres tiers: SET with no rule vs with rules on other keys, write-through
## SET (-c 50 and -c 1), GET of resident mirrored keys, a bare Postgres upsert
## (pgbench), a 1,000-key MSET, read-through misses, write-behind, and the cost
## of 20 non-matching rules (wall clock, then instructions under callgrind).
## Summary in target/bench/tiers-latest.txt.
bench-tiers: release bench-deps deps
	bash benches/tiers_bench.sh
	bash benches/tiers_rules_cost.sh
