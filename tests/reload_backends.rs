//! Hot reload of the backends strata discovers (issue 18: "a new backend
//! or seed list is connected before the old one is drained"): in sentinel
//! mode a reload changes the sentinels or the master's name, in cluster
//! mode the seed list, without dropping a client; a reload whose new
//! backend cannot be found is refused and changes nothing.
#![allow(clippy::unwrap_used)]
mod support;

use std::io::Write as _;
use std::time::{Duration, Instant};

use strata::app::reload::Origin;
use strata::config::Config;
use support::clients::RawConn;
use support::cluster::Cluster;
use support::sentinel::Topology;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn write_config(path: &std::path::Path, config: &Config) {
    let text = toml::to_string(config).unwrap();
    std::fs::File::create(path)
        .unwrap()
        .write_all(format!("# reload_backends test\n{text}").as_bytes())
        .unwrap();
}

async fn start(path: &std::path::Path) -> strata::app::Running {
    let config = Config::load(path).unwrap();
    let origin = Origin {
        path: Some(path.to_path_buf()),
        ..Default::default()
    };
    let running = strata::app::start_from(config, origin).await.unwrap();
    support::strata::wait_ready(&running).await;
    running
}

/// What a pipelining client saw.
#[derive(Debug, Default)]
struct Seen {
    commands: u64,
    errors: Vec<String>,
    dropped: bool,
}

/// Pipelines batches of 20 SET/GET pairs on one connection until `stop`.
async fn pipeline(addr: String, stop: tokio::sync::watch::Receiver<bool>) -> Seen {
    let mut seen = Seen::default();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    let mut round = 0u64;
    while !*stop.borrow() {
        let mut batch = Vec::new();
        for i in 0..20 {
            let key = format!("{{load}}:{}", (round * 20 + i) % 500);
            batch.extend(support::clients::encode(&[b"SET", key.as_bytes(), b"v"]));
            batch.extend(support::clients::encode(&[b"GET", key.as_bytes()]));
        }
        if conn.write_all(&batch).await.is_err() {
            seen.dropped = true;
            return seen;
        }
        let mut frames = 0;
        while frames < 40 {
            if let Some(len) = support::clients::frame_len(&buf) {
                let frame: Vec<u8> = buf.drain(..len).collect();
                if frame.first() == Some(&b'-') {
                    seen.errors
                        .push(String::from_utf8_lossy(&frame).into_owned());
                }
                frames += 1;
                continue;
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(Duration::from_secs(15), conn.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => {
                    seen.dropped = true;
                    return seen;
                }
            }
        }
        seen.commands += 40;
        round += 1;
    }
    seen
}

/// `PROXY TOPOLOGY`'s reply, as text.
async fn proxy_topology(strata: &str) -> String {
    let mut c = RawConn::connect(strata).await;
    String::from_utf8_lossy(&c.cmd("PROXY TOPOLOGY").await).into_owned()
}

/// The primary strata routes to (`INFO proxy`'s `backend_address`).
async fn strata_primary(strata: &str) -> String {
    let mut c = RawConn::connect(strata).await;
    let info = String::from_utf8_lossy(&c.cmd("INFO proxy").await).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("backend_address:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_reload_follows_new_sentinels_and_refuses_an_unknown_master() {
    let mut topo = tokio::task::spawn_blocking(Topology::start).await.unwrap();
    let sentinels = topo.sentinel_addrs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    // At first strata knows only the first sentinel.
    let mut config = topo.strata_config();
    config.backend.sentinel.sentinels = vec![sentinels[0].clone()];
    config.backend.sentinel.discovery_timeout_ms = 3_000;
    write_config(&path, &config);
    let running = start(&path).await;
    let strata = running.addr.to_string();
    let first_primary = topo.current_primary();
    assert_eq!(strata_primary(&strata).await, first_primary);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(pipeline(strata.clone(), stop_rx));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A master no sentinel knows: refused, with the sentinels' reason.
    let mut unknown = config.clone();
    unknown.backend.sentinel.master_name = "no-such-master".into();
    write_config(&path, &unknown);
    let refused = running.reloader.reload_file("test").await;
    let why = refused.expect_err("a reload naming an unknown master must be refused");
    assert!(
        why.contains("no sentinel knows a master named 'no-such-master'"),
        "{why}"
    );
    assert!(
        proxy_topology(&strata).await.contains(&sentinels[0]),
        "the refused reload changed the sentinels"
    );

    // The other two sentinels instead of the first: applied live.
    let mut moved = config.clone();
    moved.backend.sentinel.sentinels = sentinels[1..].to_vec();
    write_config(&path, &moved);
    let report = running.reloader.reload_file("test").await.unwrap();
    assert!(report.restart_needed.is_empty(), "{report:?}");
    assert!(
        report
            .applied
            .iter()
            .any(|k| k == "backend.sentinel.sentinels"),
        "{report:?}"
    );
    let backends = proxy_topology(&strata).await;
    assert!(
        backends.contains(&sentinels[1]) && backends.contains(&sentinels[2]),
        "{backends}"
    );
    assert!(!backends.contains(&sentinels[0]), "{backends}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_tx.send(true);
    let seen = load.await.unwrap();
    assert!(!seen.dropped, "a reload dropped the client's connection");
    assert!(
        seen.errors.is_empty(),
        "errors across the reloads: {:?}",
        &seen.errors[..seen.errors.len().min(3)]
    );
    assert!(seen.commands > 100, "too little load: {}", seen.commands);

    // The first sentinel goes away, and a failover happens: strata learns
    // it from the sentinels the reload gave it (with only the first one it
    // would stay on the demoted primary).
    topo.sentinels[0].kill();
    let failover = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match topo.sq(
                &topo.sentinels[1].addr(),
                &["SENTINEL", "FAILOVER", support::sentinel::MASTER],
            ) {
                Ok(support::sentinel::Resp::Str(ok)) if ok == "OK" => break,
                other => {
                    assert!(Instant::now() < deadline, "SENTINEL FAILOVER: {other:?}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        topo
    });
    let topo = failover.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = strata_primary(&strata).await;
        if now != first_primary && !now.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "strata did not follow the failover through the reloaded sentinels (still on {now})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = RawConn::connect(&strata).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if c.cmd("SET after-failover 1").await == b"+OK\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(topo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reload_moves_to_the_cluster_of_the_new_seeds() {
    let (a, b) = tokio::task::spawn_blocking(|| (Cluster::start(), Cluster::start()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    let config = support::strata::cluster_config(&a.addrs());
    write_config(&path, &config);
    let running = start(&path).await;
    let strata = running.addr.to_string();
    let mut c = RawConn::connect(&strata).await;
    c.expect("SET before-reload a", b"+OK\r\n").await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(pipeline(strata.clone(), stop_rx));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Seeds that answer nothing: refused, strata stays on cluster A.
    let mut dead = config.clone();
    dead.backend.cluster.seeds = vec!["127.0.0.1:1".into()];
    write_config(&path, &dead);
    let why = running
        .reloader
        .reload_file("test")
        .await
        .expect_err("seeds that answer nothing must be refused");
    assert!(why.contains("answer no topology"), "{why}");
    c.expect("GET before-reload", b"$1\r\na\r\n").await;

    // Cluster B's nodes as the seeds: strata moves there, live.
    let mut moved = config.clone();
    moved.backend.cluster.seeds = b.addrs();
    write_config(&path, &moved);
    let report = running.reloader.reload_file("test").await.unwrap();
    assert!(report.restart_needed.is_empty(), "{report:?}");
    assert!(
        report.applied.iter().any(|k| k == "backend.cluster.seeds"),
        "{report:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_tx.send(true);
    let seen = load.await.unwrap();
    assert!(!seen.dropped, "the reload dropped the client's connection");
    assert!(
        seen.errors.is_empty(),
        "errors across the reload: {:?}",
        &seen.errors[..seen.errors.len().min(3)]
    );

    // Now keys live in cluster B: what A holds is not seen, what is
    // written lands in B.
    c.expect("GET before-reload", b"$-1\r\n").await;
    c.expect("SET after-reload b", b"+OK\r\n").await;
    let slot_owner = b.primary_for_slot(strata::command::slot::hash_slot(b"after-reload"));
    let mut direct = RawConn::connect(&slot_owner).await;
    direct.expect("GET after-reload", b"$1\r\nb\r\n").await;
    let owner_a = a.primary_for_slot(strata::command::slot::hash_slot(b"after-reload"));
    let mut direct_a = RawConn::connect(&owner_a).await;
    direct_a.expect("GET after-reload", b"$-1\r\n").await;
    // The topology strata shows is B's.
    let backends = proxy_topology(&strata).await;
    assert!(
        b.primaries().iter().all(|p| backends.contains(p.as_str())),
        "{backends}"
    );
    assert!(
        !a.primaries().iter().any(|p| backends.contains(p.as_str())),
        "{backends}"
    );
    drop((a, b));
}
