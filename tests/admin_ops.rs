//! Operations from redis-cli (issue 18): `PROXY INFO`, `BACKENDS`,
//! `TOPOLOGY`, `CLIENTS`, `SLOWLOG`, `LATENCY`, `DRAIN`/`UNDRAIN`, through
//! redis-cli and through redis-rs (RESP2 and RESP3), against a real
//! redis-server. No timing is asserted: a slow-log entry's backend time is
//! checked against the 50 ms the backend was told to sleep, a lower bound
//! that holds however loaded the machine is.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use redis::Value;
use support::clients::{connect_rs, redis_cli, Env, RawConn};
use support::RedisServer;

/// redis-server with DEBUG allowed, strata in front with `slower_than_us`.
async fn env_with(slower_than_us: i64, transform: Option<&tempfile::TempDir>) -> Env {
    let redis = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let mut config = support::strata::test_config(&redis.addr());
    config.server.slowlog_log_slower_than_us = slower_than_us;
    if let Some(dir) = transform {
        let key = dir.path().join("k1");
        std::fs::write(&key, "ERERERERERERERERERERERERERERERERERERERERERE=\n").unwrap();
        let text = format!(
            "[[transform]]\npattern = \"s:*\"\nencrypt = true\n\
             [transform_keys]\nactive_key = \"k1\"\n[transform_keys.keys]\nk1 = {{ file = \"{}\" }}\n",
            key.display()
        );
        let t = strata::transform::TransformConfig::parse(&text).unwrap();
        config.transform = t.rules;
        config.transform_keys = t.keys;
    }
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    Env { redis, running }
}

async fn cli(env: &Env, args: &[&str]) -> String {
    let out = redis_cli(env.port(), args, None).await;
    assert!(out.success, "redis-cli {args:?}: {}", out.stderr);
    out.stdout
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Int(n) => n.to_string(),
        other => panic!("not a string: {other:?}"),
    }
}

/// A node's fields, from a RESP2 flat array or a RESP3 map.
fn fields(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .map(|kv| (text(&kv[0]), text(&kv[1])))
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), text(v))).collect(),
        other => panic!("not a map: {other:?}"),
    }
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> &'a str {
    &f.iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} in {f:?}"))
        .1
}

async fn cmd(con: &mut redis::aio::MultiplexedConnection, words: &[&str]) -> Value {
    let mut c = redis::cmd(words[0]);
    for w in &words[1..] {
        c.arg(*w);
    }
    c.query_async(con).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_through_redis_cli() {
    let env = env_with(10_000, None).await;
    let addr = env.redis.addr();
    cli(&env, &["SET", "a", "1"]).await;
    cli(&env, &["GET", "a"]).await;

    let help = cli(&env, &["PROXY", "HELP"]).await;
    for sub in [
        "INFO",
        "BACKENDS",
        "TOPOLOGY",
        "CLIENTS",
        "SLOWLOG GET",
        "SLOWLOG LEN",
        "SLOWLOG RESET",
        "LATENCY",
        "DRAIN",
        "UNDRAIN",
    ] {
        assert!(help.contains(sub), "{sub} in {help}");
    }

    let info = cli(&env, &["PROXY", "INFO"]).await;
    for section in [
        "# Server",
        "# Clients",
        "# Backends",
        "# Commands",
        "# Latency",
    ] {
        assert!(info.contains(section), "{section} in {info}");
    }
    // Features not configured are left out.
    assert!(
        !info.contains("# Transforms") && !info.contains("# Tiers"),
        "{info}"
    );
    assert!(info.contains("cmdstat_get:calls=1,"), "{info}");
    assert!(
        info.contains(&format!(
            "node0:addr={addr},role=primary,state=up,breaker=closed"
        )),
        "{info}"
    );
    let clients = cli(&env, &["PROXY", "INFO", "clients"]).await;
    assert!(clients.starts_with("# Clients"), "{clients}");
    assert!(!clients.contains("# Server"), "{clients}");

    let backends = cli(&env, &["PROXY", "BACKENDS"]).await;
    for want in [addr.as_str(), "primary", "up", "closed", "latency_p99_us"] {
        assert!(backends.contains(want), "{want} in {backends}");
    }
    let topology = cli(&env, &["PROXY", "TOPOLOGY"]).await;
    assert!(
        topology.contains("standalone") && topology.contains(&addr),
        "{topology}"
    );

    let list = cli(&env, &["PROXY", "CLIENTS"]).await;
    assert!(list.contains("user=default"), "{list}");
    assert!(list.contains(" dedicated=no inflight="), "{list}");
    assert!(list.contains(" obuf="), "{list}");

    let latency = cli(&env, &["PROXY", "LATENCY"]).await;
    assert!(
        latency.contains("latency_percentiles_usec_get:p50="),
        "{latency}"
    );
    assert!(latency.contains(",p99.9="), "{latency}");

    assert_eq!(cli(&env, &["PROXY", "SLOWLOG", "RESET"]).await.trim(), "OK");
    assert_eq!(cli(&env, &["PROXY", "SLOWLOG", "LEN"]).await.trim(), "0");
    cli(&env, &["DEBUG", "SLEEP", "0.05"]).await;
    // At least the DEBUG SLEEP (a loaded machine may make others slow too).
    let len: usize = cli(&env, &["PROXY", "SLOWLOG", "LEN"])
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(len >= 1, "{len}");
    let slow = cli(&env, &["PROXY", "SLOWLOG", "GET"]).await;
    assert!(slow.contains("DEBUG") && slow.contains("0.05"), "{slow}");

    // One connection (commands from stdin): DRAIN, then UNDRAIN from it.
    let out = redis_cli(
        env.port(),
        &[],
        Some(b"PROXY DRAIN\nPROXY INFO server\nPROXY UNDRAIN\n".to_vec()),
    )
    .await;
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("draining:1"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("OK").count(), 2, "{}", out.stdout);
    assert_eq!(cli(&env, &["PING"]).await.trim(), "PONG");
}

/// The same through redis-rs, in RESP2 and RESP3: the shapes parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_through_redis_rs() {
    let env = env_with(10_000, None).await;
    let addr = env.redis.addr();
    for mut con in [env.con().await, env.con3().await] {
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut con)
            .await
            .unwrap();
        let info = text(&cmd(&mut con, &["PROXY", "INFO", "backends", "latency"]).await);
        assert!(
            info.starts_with("# Backends\r\nbackend_mode:standalone\r\n"),
            "{info}"
        );
        assert!(
            info.contains("\r\n# Latency\r\nlatency_percentiles_usec_"),
            "{info}"
        );
        assert!(
            info.contains("\r\nlatency_percentiles_usec_set:p50="),
            "{info}"
        );
        let help = cmd(&mut con, &["PROXY", "HELP"]).await;
        assert!(
            matches!(help, Value::Array(ref l) if l.len() > 20),
            "{help:?}"
        );

        let backends = cmd(&mut con, &["PROXY", "BACKENDS"]).await;
        let Value::Array(nodes) = backends else {
            panic!("{backends:?}")
        };
        assert_eq!(nodes.len(), 1);
        let f = fields(&nodes[0]);
        assert_eq!(field(&f, "addr"), addr);
        assert_eq!(field(&f, "role"), "primary");
        assert_eq!(field(&f, "breaker"), "closed");
        let total: i64 = field(&f, "connections_total").parse().unwrap();
        assert!(total > 0, "{f:?}");
        field(&f, "in_flight").parse::<i64>().unwrap();
        field(&f, "latency_p50_us").parse::<i64>().unwrap();

        // TOPOLOGY: mode, primary, replicas (an array), failovers.
        let topo = cmd(&mut con, &["PROXY", "TOPOLOGY"]).await;
        let flat: Vec<Value> = match topo {
            Value::Array(items) => items,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(text(&flat[0]), "mode");
        assert_eq!(text(&flat[1]), "standalone");
        assert_eq!(text(&flat[3]), addr);
        assert_eq!(flat[5], Value::Array(vec![]));

        let list = text(&cmd(&mut con, &["PROXY", "CLIENTS"]).await);
        assert!(
            list.lines().count() >= 1 && list.contains(" inflight="),
            "{list}"
        );
        let latency = text(&cmd(&mut con, &["PROXY", "LATENCY"]).await);
        assert!(
            latency.starts_with("# Latencystats\r\nlatency_percentiles_usec_"),
            "{latency}"
        );

        assert_eq!(
            cmd(&mut con, &["PROXY", "SLOWLOG", "RESET"]).await,
            Value::Okay
        );
        assert_eq!(
            cmd(&mut con, &["PROXY", "SLOWLOG", "LEN"]).await,
            Value::Int(0)
        );
        assert_eq!(
            cmd(&mut con, &["PROXY", "SLOWLOG", "GET"]).await,
            Value::Array(vec![])
        );
        assert_eq!(cmd(&mut con, &["PROXY", "DRAIN"]).await, Value::Okay);
        assert_eq!(cmd(&mut con, &["PROXY", "UNDRAIN"]).await, Value::Okay);
        // Redis's SLOWLOG errors.
        let e = redis::cmd("PROXY")
            .arg("SLOWLOG")
            .arg("GET")
            .arg("-5")
            .query_async::<Value>(&mut con)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("count should be greater than or equal to -1"),
            "{e}"
        );
    }
}

/// One slow-log entry: Redis's six fields, then strata µs and backend µs.
struct Entry {
    id: i64,
    duration: i64,
    args: Vec<String>,
    strata: i64,
    backend: i64,
}

fn entries(v: Value) -> Vec<Entry> {
    let Value::Array(list) = v else {
        panic!("{v:?}")
    };
    list.into_iter()
        .map(|e| {
            let Value::Array(f) = e else { panic!("{e:?}") };
            assert_eq!(f.len(), 8, "{f:?}");
            let int = |v: &Value| match v {
                Value::Int(n) => *n,
                other => panic!("{other:?}"),
            };
            let Value::Array(args) = &f[3] else {
                panic!("{f:?}")
            };
            Entry {
                id: int(&f[0]),
                duration: int(&f[2]),
                args: args.iter().map(text).collect(),
                strata: int(&f[6]),
                backend: int(&f[7]),
            }
        })
        .collect()
}

/// `DEBUG SLEEP 0.05` is recorded with the backend's share of the time
/// apart from strata's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_splits_backend_time_from_strata_time() {
    let env = env_with(10_000, None).await;
    for mut con in [env.con().await, env.con3().await] {
        assert_eq!(
            cmd(&mut con, &["PROXY", "SLOWLOG", "RESET"]).await,
            Value::Okay
        );
        let _: () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("sleeper")
            .query_async(&mut con)
            .await
            .unwrap();
        let _: Value = cmd(&mut con, &["DEBUG", "SLEEP", "0.05"]).await;
        let raw = cmd(&mut con, &["PROXY", "SLOWLOG", "GET"]).await;
        let Value::Array(list) = &raw else {
            panic!("{raw:?}")
        };
        let Value::Array(first) = &list[0] else {
            panic!("{raw:?}")
        };
        assert_eq!(text(&first[5]), "sleeper", "{raw:?}");
        assert!(text(&first[4]).starts_with("127.0.0.1:"), "{raw:?}");
        let got = entries(raw);
        let sleep: Vec<&Entry> = got.iter().filter(|e| e.args[0] == "DEBUG").collect();
        assert_eq!(sleep.len(), 1, "one DEBUG SLEEP entry");
        let e = sleep[0];
        assert_eq!(e.args, ["DEBUG", "SLEEP", "0.05"]);
        // Redis slept 50 ms: that is the backend's share, not strata's.
        assert!(e.backend >= 50_000, "backend {} µs", e.backend);
        assert!(e.duration >= e.backend, "{} < {}", e.duration, e.backend);
        assert!(
            e.strata + e.backend <= e.duration + 1,
            "{} + {} vs {}",
            e.strata,
            e.backend,
            e.duration
        );
        assert!(
            e.strata < e.backend,
            "strata {} µs, backend {} µs",
            e.strata,
            e.backend
        );
        let len = cmd(&mut con, &["PROXY", "SLOWLOG", "LEN"]).await;
        assert_eq!(len, Value::Int(got.len() as i64));
    }
}

/// Arguments are cut as Redis cuts them; newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_truncates_arguments_as_redis_does() {
    // Threshold 0: every command is recorded.
    let env = env_with(0, None).await;
    let mut con = env.con().await;
    let long = "x".repeat(200);
    let _: () = redis::cmd("SET")
        .arg("long")
        .arg(&long)
        .query_async(&mut con)
        .await
        .unwrap();
    let mut del = redis::cmd("DEL");
    for i in 0..40 {
        del.arg(format!("k{i}"));
    }
    let _: i64 = del.query_async(&mut con).await.unwrap();
    let got = entries(cmd(&mut con, &["PROXY", "SLOWLOG", "GET", "-1"]).await);
    let set = got.iter().find(|e| e.args[0] == "SET").unwrap();
    assert_eq!(set.args[2], format!("{}... (72 more bytes)", &long[..128]));
    let del = got.iter().find(|e| e.args[0] == "DEL").unwrap();
    assert_eq!(del.args.len(), 32);
    assert_eq!(del.args[30], "k29");
    assert_eq!(del.args[31], "... (10 more arguments)");
    // Newest first, ids decreasing.
    assert!(got.windows(2).all(|w| w[0].id > w[1].id));
    let two = entries(cmd(&mut con, &["PROXY", "SLOWLOG", "GET", "2"]).await);
    assert_eq!(two.len(), 2);
}

/// Values of keys under a `[[transform]]` rule never reach the slow log:
/// neither the plaintext nor the sealed envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_never_shows_transformed_values() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with(0, Some(&dir)).await;
    let mut con = env.con().await;
    let secret = "the-secret-value-123";
    let _: () = redis::cmd("SET")
        .arg("s:card")
        .arg(secret)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg("s:h")
        .arg("f")
        .arg(secret)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("plain")
        .arg("visible")
        .query_async(&mut con)
        .await
        .unwrap();
    let got = entries(cmd(&mut con, &["PROXY", "SLOWLOG", "GET", "-1"]).await);
    let shown: Vec<String> = got.iter().flat_map(|e| e.args.clone()).collect();
    assert!(!shown.iter().any(|a| a.contains(secret)), "{shown:?}");
    let set = got
        .iter()
        .find(|e| e.args.get(1).map(String::as_str) == Some("s:card"))
        .unwrap();
    assert_eq!(set.args, ["SET", "s:card", "(transformed value hidden)"]);
    let hset = got.iter().find(|e| e.args[0] == "HSET").unwrap();
    assert_eq!(
        hset.args,
        [
            "HSET",
            "s:h",
            "(transformed value hidden)",
            "(transformed value hidden)"
        ]
    );
    let plain = got
        .iter()
        .find(|e| e.args.get(1).map(String::as_str) == Some("plain"))
        .unwrap();
    assert_eq!(plain.args, ["SET", "plain", "visible"]);
}

/// DRAIN: new clients are closed and /health/ready fails, while a
/// connected client is served on; UNDRAIN undoes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_undrain_with_readiness() {
    let env = env_with(10_000, None).await;
    let http = env.http();
    let mut con = env.con().await;
    let mut raw = env.raw().await;
    assert_eq!(
        support::strata::http_get(http, "/health/ready")
            .await
            .unwrap()
            .0,
        200
    );

    assert_eq!(cmd(&mut con, &["PROXY", "DRAIN"]).await, Value::Okay);
    let (status, body) = support::strata::http_get(http, "/health/ready")
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    // A new client: accepted by the kernel, closed by strata.
    let mut late = RawConn::connect(&env.addr().to_string()).await;
    late.send(b"PING\r\n").await;
    late.expect_closed().await;
    // Connected clients carry on.
    assert_eq!(
        cmd(&mut con, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
    raw.expect("PING", b"+PONG\r\n").await;

    assert_eq!(cmd(&mut con, &["PROXY", "UNDRAIN"]).await, Value::Okay);
    assert_eq!(
        support::strata::http_get(http, "/health/ready")
            .await
            .unwrap()
            .0,
        200
    );
    let mut again = connect_rs(&format!("redis://{}/", env.addr())).await;
    assert_eq!(
        cmd(&mut again, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
}

/// PROXY CLIENTS names a blocked client's dedicated connection and the
/// commands queued behind its BLPOP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_show_dedicated_connections_and_inflight_commands() {
    let env = env_with(10_000, None).await;
    let mut blocked = env.raw().await;
    blocked
        .send(b"CLIENT SETNAME blocker\r\nBLPOP q 0\r\nPING\r\nPING\r\n")
        .await;
    let mut con = env.con().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let list = text(&cmd(&mut con, &["PROXY", "CLIENTS"]).await);
        let line = list
            .lines()
            .find(|l| l.contains("name=blocker"))
            .map(str::to_string);
        // The BLPOP's reply is awaited; the PINGs wait behind it.
        let inflight = |l: &str| -> usize {
            l.split(" inflight=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        if let Some(l) = line.filter(|l| inflight(l) >= 2) {
            break l;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        line.contains(&format!(" dedicated={}#", env.redis.addr())),
        "{line}"
    );
    assert!(line.contains(" obuf=0"), "{line}");
    let _: i64 = redis::cmd("RPUSH")
        .arg("q")
        .arg("x")
        .query_async(&mut con)
        .await
        .unwrap();
    let _ = blocked.read_frame().await; // +OK (SETNAME)
    let _ = blocked.read_frame().await; // the BLPOP's reply
}

/// redis-cli run to completion, for the tests that serve strata on a
/// runtime of its own (`InProc`).
fn cli_sync(addr: &str, args: &[&str]) -> String {
    let bin = support::require_binary("redis-cli", "redis-tools");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = std::process::Command::new(bin)
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sentinel mode: TOPOLOGY shows the master's name, the primary, its
/// replicas and the sentinels; BACKENDS every node with its role.
#[test]
fn topology_and_backends_in_sentinel_mode() {
    let topo = support::sentinel::Topology::start();
    let primary = topo.current_primary();
    let mut config = topo.strata_config();
    // strata follows the replicas when it may read from them.
    config.backend.read_from = strata::config::ReadFrom::PreferReplica;
    let strata = support::inproc::InProc::start(config);
    strata.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = cli_sync(&strata.addr, &["PROXY", "TOPOLOGY"]);
        // The replicas are found by the first discovery rounds.
        if text.matches("127.0.0.1:").count() >= 3 + topo.sentinel_addrs().len() {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        text.contains("sentinel") && text.contains(support::sentinel::MASTER),
        "{text}"
    );
    assert!(text.contains(&primary), "{text}");
    for s in topo.sentinel_addrs() {
        assert!(text.contains(&s), "{s} in {text}");
    }
    let backends = cli_sync(&strata.addr, &["PROXY", "BACKENDS"]);
    assert_eq!(backends.matches("replica").count(), 2, "{backends}");
    assert_eq!(backends.matches("primary").count(), 1, "{backends}");
    let info = cli_sync(&strata.addr, &["PROXY", "INFO", "backends"]);
    assert!(
        info.contains("backend_mode:sentinel") && info.contains("backend_nodes:3"),
        "{info}"
    );
    strata.shutdown();
}

/// Cluster mode: TOPOLOGY is the slot map, BACKENDS the six nodes, and a
/// slow batch's parts are logged per node with the split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_backends_and_slowlog_in_cluster_mode() {
    let c = support::cluster::Cluster::start();
    support::cluster_strata::blocking(|| support::cluster_strata::reset(&c));
    let mut config = support::cluster_strata::config(&c, strata::config::ReadFrom::Primary);
    config.server.slowlog_log_slower_than_us = 0;
    let running = support::cluster_strata::start_with(config).await;
    let mut con = connect_rs(&format!("redis://{}/", running.addr)).await;

    let topo = cmd(&mut con, &["PROXY", "TOPOLOGY"]).await;
    let Value::Array(top) = topo else {
        panic!("{topo:?}")
    };
    assert_eq!(text(&top[1]), "cluster");
    let Value::Array(ranges) = &top[3] else {
        panic!("{top:?}")
    };
    let mut covered = 0;
    for r in ranges {
        let Value::Array(r) = r else { panic!("{r:?}") };
        let (Value::Int(start), Value::Int(end)) = (&r[0], &r[1]) else {
            panic!("{r:?}")
        };
        covered += end - start + 1;
        assert!(c.addrs().contains(&text(&r[2])), "{r:?}");
        assert!(
            matches!(&r[3], Value::Array(reps) if reps.len() == 1),
            "{r:?}"
        );
    }
    assert_eq!(covered, 16384);

    let Value::Array(nodes) = cmd(&mut con, &["PROXY", "BACKENDS"]).await else {
        panic!()
    };
    let roles: Vec<String> = nodes
        .iter()
        .map(|n| field(&fields(n), "role").to_string())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "primary").count(),
        3,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| *r == "replica").count(),
        3,
        "{roles:?}"
    );
    let info = text(&cmd(&mut con, &["PROXY", "INFO", "backends"]).await);
    assert!(
        info.contains("cluster_state:ok") && info.contains("backend_nodes:6"),
        "{info}"
    );

    // An MSET over several slots: split per node, each part logged.
    assert_eq!(
        cmd(&mut con, &["PROXY", "SLOWLOG", "RESET"]).await,
        Value::Okay
    );
    let mut mset = redis::cmd("MSET");
    for i in 0..30 {
        mset.arg(format!("k{i}")).arg(i);
    }
    let _: () = mset.query_async(&mut con).await.unwrap();
    let got = entries(cmd(&mut con, &["PROXY", "SLOWLOG", "GET", "-1"]).await);
    let parts: Vec<&Entry> = got
        .iter()
        .filter(|e| e.args[0].eq_ignore_ascii_case("mset"))
        .collect();
    assert!(
        parts.len() >= 3,
        "one part per primary at least: {}",
        parts.len()
    );
    let keys: usize = parts.iter().map(|e| (e.args.len() - 1) / 2).sum();
    assert_eq!(keys, 30);
    assert!(parts.iter().all(|e| e.strata + e.backend <= e.duration + 1));
    running.shutdown().await;
}
