//! Sentinel mode against a real topology (one primary, two replicas, three
//! sentinels; see `support::sentinel`), plus the circuit breaker in
//! standalone mode. Outcomes are asserted; times are printed, never
//! asserted (liveness bounds only).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use strata::config::ReadFrom;
use support::inproc::InProc;
use support::raw::{self, cmd, escape};
use support::sentinel::{
    info, info_field, longest_gap, query, query_auth, summarize, EventWatcher, Load, Resp,
    Topology, WriterLog, CALL_TIMEOUT, MASTER,
};
use support::strata::test_config;
use support::RedisServer;

/// Generous bound on how long service may take to come back.
const LIVENESS: Duration = Duration::from_secs(30);

/// strata's `INFO proxy` fields.
fn proxy_info(strata: &str) -> String {
    match query(strata, &["INFO", "proxy"]) {
        Ok(Resp::Str(s)) => s,
        other => panic!("INFO proxy: {other:?}"),
    }
}

fn strata_primary(strata: &str) -> String {
    info_field(&proxy_info(strata), "backend_address").unwrap_or_default()
}

/// Polls `f` until it returns Some, or panics with `what` after `within`.
fn wait_until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads every acknowledged write back through strata: every SET's value,
/// and each counter at least at its last acknowledged INCR (an INCR that
/// failed in flight may have run too). Returns the number of keys checked.
fn verify_no_lost_writes(strata: &str, logs: &[WriterLog], tag: &str) -> usize {
    let mut conn = raw::connect(strata, CALL_TIMEOUT);
    let mut checked = 0;
    for (w, log) in logs.iter().enumerate() {
        // INCR replies only ever grow: a repeated or smaller value means an
        // acknowledged increment was lost in the failover.
        for pair in log.incrs.windows(2) {
            assert!(
                pair[1] > pair[0],
                "writer {w}: INCR went from {} to {}: acknowledged increments lost",
                pair[0],
                pair[1]
            );
        }
        for chunk in log.sets.chunks(500) {
            let mut batch = Vec::new();
            for (key, _, _) in chunk {
                batch.extend_from_slice(&cmd(&[b"GET", key.as_bytes()]));
            }
            conn.write_all(&batch).unwrap();
            let frames = raw::read_frames(&mut conn, chunk.len(), CALL_TIMEOUT).unwrap();
            for ((key, value, _), frame) in chunk.iter().zip(frames) {
                let want = format!("${}\r\n{value}\r\n", value.len());
                assert_eq!(
                    escape(&frame),
                    escape(want.as_bytes()),
                    "acknowledged SET {key} lost"
                );
                checked += 1;
            }
        }
        if let Some(last) = log.incrs.last() {
            let counter = format!("{tag}:ctr:{w}");
            let reply =
                raw::call(&mut conn, &cmd(&[b"GET", counter.as_bytes()]), CALL_TIMEOUT).unwrap();
            let now: i64 = Resp::parse(&reply).str().unwrap().parse().unwrap();
            assert!(
                now >= *last,
                "counter {counter} is {now}, but INCR acknowledged {last}"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn forced_failover_under_write_load_loses_no_acknowledged_write() {
    let topo = Topology::start();
    let old = topo.current_primary();
    // The failover is recorded in the audit log too.
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_log = audit_dir.path().join("audit.jsonl");
    let mut config = topo.strata_config();
    config.audit.enabled = true;
    config.audit.output = strata::auth::audit::AuditOutput::File(audit_log.clone());
    let strata = InProc::start(config);
    strata.wait_ready();
    assert_eq!(strata_primary(&strata.addr), old);

    let started = Instant::now();
    let load = Load::start(&strata.addr, 4, "forced");
    wait_until(LIVENESS, "writes flowing", || {
        (load.oks_after(started) > 500).then_some(())
    });
    let failover_at = Instant::now();
    topo.force_failover();
    let new = wait_until(LIVENESS, "sentinel names a new primary", || {
        let m = topo.current_primary();
        (m != old).then_some(m)
    });
    wait_until(LIVENESS, "strata follows the failover", || {
        (strata_primary(&strata.addr) == new).then_some(())
    });
    let switched = Instant::now();
    // Writes resume on the new primary, on the same client connections.
    wait_until(LIVENESS, "writes resume after the switch", || {
        (load.oks_after(switched) > 500).then_some(())
    });
    let logs = load.stop();
    eprintln!(
        "forced failover {old} -> {new}: {}; longest write gap {:?}; strata switched {:?} after SENTINEL FAILOVER",
        summarize(&logs),
        longest_gap(&logs),
        switched - failover_at
    );
    let reconnects: usize = logs.iter().map(|l| l.reconnects).sum();
    assert_eq!(
        reconnects,
        0,
        "clients had to reconnect: {}",
        summarize(&logs)
    );
    // The new primary is a real one, and every acknowledged write is on it.
    let role = info_field(&info(&new, "replication"), "role");
    assert_eq!(role.as_deref(), Some("master"));
    let checked = verify_no_lost_writes(&strata.addr, &logs, "forced");
    assert!(checked > 400, "too few writes to mean anything: {checked}");
    let proxy = proxy_info(&strata.addr);
    assert_eq!(
        info_field(&proxy, "failovers").as_deref(),
        Some("1"),
        "{proxy}"
    );
    let (_, metrics) = strata.http_get("/metrics");
    assert!(metrics.contains("strata_failovers_total 1\n"), "{metrics}");
    assert!(
        metrics.contains("strata_last_failover_duration_seconds "),
        "{metrics}"
    );
    let want = format!("\"event\":\"failover\",\"from\":\"{old}\",\"to\":\"{new}\"");
    wait_until(LIVENESS, "the failover in the audit log", || {
        let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
        text.contains(&want).then_some(())
    });
}

#[test]
fn primary_killed_under_load_writes_resume_after_promotion() {
    let mut topo = Topology::start();
    let old = topo.current_primary();
    let strata = InProc::start(topo.strata_config());
    strata.wait_ready();
    let watcher = EventWatcher::start(
        &topo.sentinel_addrs(),
        &[
            "+switch-master",
            "+promoted-slave",
            "+failover-state-wait-promotion",
        ],
    );

    let started = Instant::now();
    let load = Load::start(&strata.addr, 2, "killed");
    wait_until(LIVENESS, "writes flowing", || {
        (load.oks_after(started) > 100).then_some(())
    });
    topo.server(&old).kill();
    let killed = Instant::now();
    let resumed = wait_until(LIVENESS, "writes resume after the kill", || {
        load.first_ok_after(killed)
    });
    let switch = watcher.wait_for("+switch-master", LIVENESS);
    let promoted = watcher.first("+promoted-slave");
    let promotion_sent = watcher.first("+failover-state-wait-promotion");
    let new = wait_until(LIVENESS, "sentinel names a new primary", || {
        let m = topo.current_primary();
        (m != old).then_some(m)
    });
    wait_until(LIVENESS, "more writes", || {
        (load.oks_after(resumed) > 50).then_some(())
    });
    let logs = load.stop();
    let signed = |from: Option<Instant>| match from {
        Some(t) if resumed >= t => format!("{} ms", (resumed - t).as_millis()),
        Some(t) => format!(
            "-{} ms (strata resumed before this event)",
            (t - resumed).as_millis()
        ),
        None => "n/a".into(),
    };
    eprintln!(
        "primary {old} killed, {new} promoted: kill -> first write through strata {} ms; \
         promotion (REPLICAOF NO ONE sent, +failover-state-wait-promotion) -> first write {}; \
         +promoted-slave -> first write {}; first +switch-master -> first write {}; {}",
        (resumed - killed).as_millis(),
        signed(promotion_sent),
        signed(promoted),
        signed(switch),
        summarize(&logs),
    );
    assert!(
        switch.is_some(),
        "no +switch-master seen: {:?}",
        watcher.dump()
    );
    assert_eq!(strata_primary(&strata.addr), new);
    // Every write acknowledged since the resumption is on the new primary.
    // (Those acknowledged before the kill may be lost: replication is
    // asynchronous and the primary died without warning.)
    let after: Vec<WriterLog> = logs
        .into_iter()
        .map(|l| WriterLog {
            sets: l
                .sets
                .into_iter()
                .filter(|(_, _, t)| *t >= resumed)
                .collect(),
            ..WriterLog::default()
        })
        .collect();
    let checked = verify_no_lost_writes(&strata.addr, &after, "killed");
    assert!(checked > 0);
}

#[test]
fn all_sentinels_stopped_keeps_serving_the_known_primary() {
    let mut topo = Topology::start();
    let primary = topo.current_primary();
    let strata = InProc::start(topo.strata_config());
    strata.wait_ready();
    let (status, body) = strata.http_get("/health/ready");
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    for s in &mut topo.sentinels {
        s.kill();
    }
    let body = wait_until(LIVENESS, "readiness reports degraded discovery", || {
        let (status, body) = strata.http_get("/health/ready");
        (status == 200 && body.contains("degraded")).then_some(body)
    });
    assert!(body.contains(&primary), "{body}");
    let mut c = raw::connect(&strata.addr, CALL_TIMEOUT);
    for i in 0..50 {
        let key = format!("nosentinel:{i}");
        let set = raw::call(&mut c, &cmd(&[b"SET", key.as_bytes(), b"x"]), CALL_TIMEOUT).unwrap();
        assert_eq!(set, b"+OK\r\n");
        let get = raw::call(&mut c, &cmd(&[b"GET", key.as_bytes()]), CALL_TIMEOUT).unwrap();
        assert_eq!(get, b"$1\r\nx\r\n");
    }
    let proxy = proxy_info(&strata.addr);
    assert_eq!(
        info_field(&proxy, "discovery_state").as_deref(),
        Some("degraded"),
        "{proxy}"
    );
    assert_eq!(
        info_field(&proxy, "backend_address").as_deref(),
        Some(primary.as_str())
    );
    let (_, metrics) = strata.http_get("/metrics");
    assert!(metrics.contains("strata_discovery_up 0\n"), "{metrics}");
}

/// `cmdstat_get` calls on a server.
fn get_calls(addr: &str) -> u64 {
    let text = info(addr, "commandstats");
    info_field(&text, "cmdstat_get")
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("calls=").and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

#[test]
fn replica_reads_spread_over_replicas_and_fall_back_to_the_primary() {
    let mut topo = Topology::start();
    let primary = topo.current_primary();
    let replicas = topo.others(&primary);
    let mut config = topo.strata_config();
    config.backend.read_from = ReadFrom::ReplicaRoundRobin;
    let strata = InProc::start(config);
    strata.wait_ready();
    wait_until(LIVENESS, "strata reads from both replicas", || {
        (info_field(&proxy_info(&strata.addr), "backend_replicas").as_deref() == Some("2"))
            .then_some(())
    });

    let mut c = raw::connect(&strata.addr, CALL_TIMEOUT);
    assert_eq!(
        raw::call(&mut c, &cmd(&[b"SET", b"rr", b"v"]), CALL_TIMEOUT).unwrap(),
        b"+OK\r\n"
    );
    for r in &replicas {
        wait_until(LIVENESS, "replication", || {
            (query(r, &["GET", "rr"]).ok()? == Resp::Str("v".into())).then_some(())
        });
    }
    // Until both replicas have answered their first health PING, strata
    // reads from the primary: warm up until reads stop landing there.
    wait_until(LIVENESS, "reads land on the replicas only", || {
        let p0 = get_calls(&primary);
        for _ in 0..20 {
            raw::call(&mut c, &cmd(&[b"GET", b"rr"]), CALL_TIMEOUT).unwrap();
        }
        (get_calls(&primary) == p0).then_some(())
    });
    let before: Vec<u64> = replicas.iter().map(|r| get_calls(r)).collect();
    let primary_before = get_calls(&primary);
    const READS: u64 = 200;
    for _ in 0..READS {
        let reply = raw::call(&mut c, &cmd(&[b"GET", b"rr"]), CALL_TIMEOUT).unwrap();
        assert_eq!(reply, b"$1\r\nv\r\n");
    }
    let deltas: Vec<u64> = replicas
        .iter()
        .zip(&before)
        .map(|(r, b)| get_calls(r) - b)
        .collect();
    let primary_delta = get_calls(&primary) - primary_before;
    eprintln!("GETs per replica {deltas:?}, on the primary {primary_delta}");
    assert_eq!(
        deltas.iter().sum::<u64>(),
        READS,
        "every read goes to a replica"
    );
    assert!(
        deltas.iter().all(|d| *d >= READS / 4),
        "round robin uses both replicas: {deltas:?}"
    );
    assert_eq!(primary_delta, 0);

    for r in &replicas {
        topo.server(r).kill();
    }
    // Reads fall back to the primary (a few may fail while strata notices).
    let mut streak = 0;
    let mut failures = Vec::new();
    let deadline = Instant::now() + LIVENESS;
    while streak < 50 {
        assert!(
            Instant::now() < deadline,
            "reads did not fall back to the primary: {failures:?}"
        );
        let reply = raw::call(&mut c, &cmd(&[b"GET", b"rr"]), CALL_TIMEOUT).unwrap();
        if reply == b"$1\r\nv\r\n" {
            streak += 1;
        } else {
            streak = 0;
            failures.push(escape(&reply));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let primary_after = get_calls(&primary) - primary_before;
    eprintln!(
        "after the replicas died: {} failed reads, then {primary_after} GETs on the primary",
        failures.len()
    );
    assert!(primary_after >= 50);
    for f in &failures {
        assert!(
            f.starts_with("-ERR backend "),
            "a failed read must be a clear backend error: {f}"
        );
    }
}

/// `strata_backend_breaker_state{backend="addr"}` from /metrics.
fn breaker_state(strata: &InProc, addr: &str) -> Option<i64> {
    let (_, metrics) = strata.http_get("/metrics");
    let prefix = format!("strata_backend_breaker_state{{backend=\"{addr}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn breaker_opens_after_failures_and_closes_after_recovery() {
    let mut redis = RedisServer::start();
    let mut config = test_config(&redis.addr());
    config.backend.breaker.failure_threshold = 3;
    config.backend.breaker.success_threshold = 2;
    config.backend.breaker.open_ms = 500;
    let strata = InProc::start(config);
    strata.wait_ready();
    let addr = redis.addr();
    wait_until(LIVENESS, "breaker state exported", || {
        (breaker_state(&strata, &addr) == Some(0)).then_some(())
    });

    redis.kill();
    let mut c = raw::connect(&strata.addr, CALL_TIMEOUT);
    let mut seen = Vec::new();
    let open = wait_until(LIVENESS, "requests fail fast with (circuit open)", || {
        let reply = raw::call(&mut c, &cmd(&[b"GET", b"k"]), CALL_TIMEOUT).unwrap();
        let text = escape(&reply);
        seen.push(text.clone());
        text.contains("(circuit open)").then_some(text)
    });
    assert_eq!(
        open,
        format!("-ERR backend unavailable: {addr} (circuit open)\\r\\n")
    );
    eprintln!("replies until the breaker opened: {seen:?}");
    assert!(
        seen.iter().all(|r| r.starts_with("-ERR backend ")),
        "{seen:?}"
    );
    wait_until(LIVENESS, "breaker state 1 (open) exported", || {
        (breaker_state(&strata, &addr) == Some(1)).then_some(())
    });

    redis.restart();
    wait_until(LIVENESS, "service back after recovery", || {
        let reply = raw::call(&mut c, &cmd(&[b"SET", b"k", b"v"]), CALL_TIMEOUT).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        (reply == b"+OK\r\n").then_some(())
    });
    wait_until(LIVENESS, "breaker closes (state 0)", || {
        let _ = raw::call(&mut c, &cmd(&[b"GET", b"k"]), CALL_TIMEOUT);
        (breaker_state(&strata, &addr) == Some(0)).then_some(())
    });
    let reply = raw::call(&mut c, &cmd(&[b"GET", b"k"]), CALL_TIMEOUT).unwrap();
    assert_eq!(reply, b"$1\r\nv\r\n");
}

/// `cmdstat_role` calls on a server (sentinels use INFO, not ROLE, so these
/// are strata's).
fn role_calls(addr: &str) -> u64 {
    let text = info(addr, "commandstats");
    info_field(&text, "cmdstat_role")
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("calls=").and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Sentinels refuse PUBLISH on their event channels, so a stale
/// `+switch-master` cannot be injected into a real one. Instead strata is
/// also given a plain redis-server as a "sentinel" address: it answers no
/// SENTINEL query (so it never counts as a sentinel), but strata subscribes
/// to it like to the others, and the test publishes the stale events there.
#[test]
fn stale_switch_master_naming_a_replica_is_ignored() {
    let topo = Topology::start();
    let primary = topo.current_primary();
    let replica = topo.others(&primary)[0].clone();
    let publisher = RedisServer::start();
    let mut config = topo.strata_config();
    config.backend.sentinel.sentinels.push(publisher.addr());
    let strata = InProc::start(config);
    strata.wait_ready();
    wait_until(LIVENESS, "strata subscribed to the publisher", || {
        let r = query(
            &publisher.addr(),
            &["PUBSUB", "NUMSUB", "+switch-master", "+promoted-slave"],
        )
        .ok()?;
        (r.items().iter().filter(|v| **v == Resp::Int(1)).count() == 2).then_some(())
    });

    let roles_before = role_calls(&replica);
    let (rhost, rport) = replica.rsplit_once(':').unwrap();
    let (phost, pport) = primary.rsplit_once(':').unwrap();
    let switch = format!("{MASTER} {phost} {pport} {rhost} {rport}");
    let promoted = format!("slave {replica} {rhost} {rport} @ {MASTER} {phost} {pport}");
    for (channel, payload) in [("+switch-master", &switch), ("+promoted-slave", &promoted)] {
        let r = query(&publisher.addr(), &["PUBLISH", channel, payload]).unwrap();
        assert_eq!(r, Resp::Int(1), "strata is subscribed to {channel}");
    }
    // strata asked the named server for its ROLE (the guard ran) …
    wait_until(LIVENESS, "strata checks ROLE of the named server", || {
        (role_calls(&replica) >= roles_before + 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    // … and, it being a replica, stayed where it was.
    let proxy = proxy_info(&strata.addr);
    assert_eq!(
        info_field(&proxy, "backend_address").as_deref(),
        Some(primary.as_str()),
        "{proxy}"
    );
    assert_eq!(
        info_field(&proxy, "failovers").as_deref(),
        Some("0"),
        "{proxy}"
    );
    let mut c = raw::connect(&strata.addr, CALL_TIMEOUT);
    assert_eq!(
        raw::call(&mut c, &cmd(&[b"SET", b"stale", b"v"]), CALL_TIMEOUT).unwrap(),
        b"+OK\r\n"
    );
    assert_eq!(
        query(&primary, &["GET", "stale"]).unwrap(),
        Resp::Str("v".into())
    );
}

/// Sentinels with `requirepass`, Redis servers with `requirepass`: strata
/// authenticates to both (`backend.sentinel.password_env`,
/// `backend.password_env`), serves, and follows a failover.
#[test]
fn passwords_for_sentinels_and_redis() {
    let topo = Topology::start_with_passwords(Some("redis-secret"), Some("sentinel-secret"));
    std::env::set_var("STRATA_TEST_SENTINEL_REDIS_PW", "redis-secret");
    std::env::set_var("STRATA_TEST_SENTINEL_SENTINEL_PW", "sentinel-secret");
    let old = topo.current_primary();
    let mut config = topo.strata_config();
    config.backend.password_env = Some("STRATA_TEST_SENTINEL_REDIS_PW".into());
    config.backend.sentinel.password_env = Some("STRATA_TEST_SENTINEL_SENTINEL_PW".into());
    // Replica nodes too (with AUTH), one of which becomes the primary.
    config.backend.read_from = ReadFrom::ReplicaRoundRobin;
    let strata = InProc::start(config);
    strata.wait_ready();
    let mut c = raw::connect(&strata.addr, CALL_TIMEOUT);
    // strata was given Redis's password, so its clients log in as on Redis.
    assert_eq!(
        raw::call(&mut c, &cmd(&[b"GET", b"pw"]), CALL_TIMEOUT).unwrap(),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        raw::call(&mut c, &cmd(&[b"AUTH", b"redis-secret"]), CALL_TIMEOUT).unwrap(),
        b"+OK\r\n"
    );
    assert_eq!(
        raw::call(&mut c, &cmd(&[b"SET", b"pw", b"1"]), CALL_TIMEOUT).unwrap(),
        b"+OK\r\n"
    );

    topo.force_failover();
    let new = wait_until(LIVENESS, "strata follows the failover", || {
        let info = match query_auth(&strata.addr, Some("redis-secret"), &["INFO", "proxy"]) {
            Ok(Resp::Str(s)) => s,
            other => panic!("INFO proxy: {other:?}"),
        };
        let p = info_field(&info, "backend_address").unwrap_or_default();
        (p != old).then_some(p)
    });
    // strata may switch before the sentinels announce it (it watches the
    // promoted replica's ROLE); they name the same server soon after.
    wait_until(LIVENESS, "the sentinels name strata's new primary", || {
        (topo.current_primary() == new).then_some(())
    });
    let get = wait_until(LIVENESS, "reads through strata after the failover", || {
        let r = raw::call(&mut c, &cmd(&[b"GET", b"pw"]), CALL_TIMEOUT).unwrap();
        (r == b"$1\r\n1\r\n").then_some(r)
    });
    assert_eq!(get, b"$1\r\n1\r\n");
    assert_eq!(
        raw::call(&mut c, &cmd(&[b"SET", b"pw", b"2"]), CALL_TIMEOUT).unwrap(),
        b"+OK\r\n"
    );
    assert_eq!(
        topo.rq(&new, &["GET", "pw"]).unwrap(),
        Resp::Str("2".into())
    );
}

/// The rediscovery hook: a `-READONLY` reply on a node's multiplexed
/// connection (a "primary" that has become a replica) pokes the node's
/// `trouble` notifier, which the Sentinel follower waits on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_reply_signals_trouble_on_the_node() {
    use strata::backend::node::Node;
    use strata::protocol::Protocol;
    use strata::telemetry::Metrics;

    let primary = RedisServer::start();
    let port = primary.port.to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", port.as_str()]);
    let metrics = std::sync::Arc::new(Metrics::new());
    let node = Node::start(
        &replica.addr(),
        &test_config(&replica.addr()).backend,
        &metrics,
    );
    let trouble = node.trouble().clone();
    let notified = trouble.notified();
    tokio::pin!(notified);
    let set = bytes::Bytes::from(cmd(&[b"SET", b"k", b"v"]));
    let reply = node
        .send(1, Protocol::Resp2, set, 1, None)
        .await
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with(b"-READONLY"), "{}", escape(&reply));
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("READONLY must poke the node's trouble notifier");
    node.retire("test over".into());
}

/// In Sentinel mode too: CLIENT TRACKING REDIRECT to a strata client id
/// (the listener goes to the primary the tracking connection is on), and a
/// subscriber with CLIENT REPLY OFF gets its confirmation and messages.
// Before this change: the redirect was refused ("The client ID you want
// redirect to does not exist") and the silenced SUBSCRIBE never answered.
#[test]
fn tracking_redirect_and_silenced_subscriber_through_sentinel_mode() {
    let topo = Topology::start();
    let strata = InProc::start(topo.strata_config());
    strata.wait_ready();
    let wait = Duration::from_secs(10);
    let call = |c: &mut std::net::TcpStream, line: &str| {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        escape(&raw::call(c, &cmd(&args), wait).unwrap())
    };
    let mut target = raw::connect(&strata.addr, wait);
    let mut tracking = raw::connect(&strata.addr, wait);
    let mut writer = raw::connect(&strata.addr, wait);
    call(&mut target, "HELLO 3");
    let rid = call(&mut target, "CLIENT ID");
    let rid = rid.trim_start_matches(':').trim_end_matches("\\r\\n");
    assert_eq!(
        call(&mut tracking, &format!("CLIENT TRACKING on REDIRECT {rid}")),
        "+OK\\r\\n"
    );
    assert_eq!(call(&mut tracking, "GET tracked"), "$-1\\r\\n");
    assert_eq!(call(&mut writer, "SET tracked 1"), "+OK\\r\\n");
    let pushed = raw::read_frames(&mut target, 1, wait).unwrap();
    assert_eq!(
        escape(&pushed[0]),
        ">2\\r\\n$10\\r\\ninvalidate\\r\\n*1\\r\\n$7\\r\\ntracked\\r\\n"
    );
    assert_eq!(
        call(&mut tracking, "CLIENT GETREDIR"),
        format!(":{rid}\\r\\n")
    );

    let mut sub = raw::connect(&strata.addr, wait);
    sub.write_all(&cmd(&[b"CLIENT", b"REPLY", b"OFF"])).unwrap();
    assert_eq!(
        call(&mut sub, "SUBSCRIBE silenced"),
        "*3\\r\\n$9\\r\\nsubscribe\\r\\n$8\\r\\nsilenced\\r\\n:1\\r\\n"
    );
    assert_eq!(call(&mut writer, "PUBLISH silenced m"), ":1\\r\\n");
    let message = raw::read_frames(&mut sub, 1, wait).unwrap();
    assert_eq!(
        escape(&message[0]),
        "*3\\r\\n$7\\r\\nmessage\\r\\n$8\\r\\nsilenced\\r\\n$1\\r\\nm\\r\\n"
    );
}
