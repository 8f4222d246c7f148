//! Every coordination primitive's commands in COMMAND, COMMAND INFO,
//! COMMAND DOCS and COMMAND GETKEYS, with the name (the key) at position
//! 1, so cluster-aware clients route them.

mod support;

use support::clients::{show, Env};
use support::coord_util::int;

const OURS: &[(&str, i64)] = &[
    ("sem.acquire", -4),
    ("sem.release", 3),
    ("sem.available", 2),
    ("latch.init", 3),
    ("latch.countdown", 2),
    ("latch.wait", 3),
    ("latch.count", 2),
    ("barrier.wait", 4),
    ("barrier.reset", 2),
    ("leader.campaign", -4),
    ("leader.renew", 5),
    ("leader.resign", 4),
    ("leader.get", 2),
    ("leader.watch", -2),
    ("vset", -3),
    ("vget", 2),
    ("cas", 4),
];

#[tokio::test]
async fn every_primitive_is_in_command_with_its_key_position() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    let mut b = env.raw_backend().await;
    let theirs = int(&b.cmd("COMMAND COUNT").await);
    let count = int(&c.cmd("COMMAND COUNT").await);
    assert!(count >= theirs + OURS.len() as i64, "{count} vs {theirs}");
    for proto in ["2", "3"] {
        let mut c = env.raw().await;
        c.cmd(&format!("HELLO {proto}")).await;
        for (name, arity) in OURS {
            let info = show(&c.cmd(&format!("COMMAND INFO {name}")).await);
            let head = format!(
                "*1\\r\\n*10\\r\\n${}\\r\\n{name}\\r\\n:{arity}\\r\\n",
                name.len()
            );
            assert!(info.starts_with(&head), "{info}");
            assert!(info.contains(":1\\r\\n:1\\r\\n:1\\r\\n"), "{name}: {info}");
            let docs = show(&c.cmd(&format!("COMMAND DOCS {name}")).await);
            assert!(docs.contains("$7\\r\\nsummary\\r\\n"), "{name}: {docs}");
        }
    }
    c.expect("COMMAND GETKEYS vset k v", b"*1\r\n$1\r\nk\r\n")
        .await;
    c.expect(
        "COMMAND GETKEYS sem.acquire pool 2 100 WAIT 5",
        b"*1\r\n$4\r\npool\r\n",
    )
    .await;
    let list = c.cmd("COMMAND LIST").await;
    for (name, _) in OURS {
        let entry = format!("${}\r\n{name}\r\n", name.len());
        assert!(
            list.windows(entry.len()).any(|w| w == entry.as_bytes()),
            "{name}"
        );
    }
}

/// Cluster mode (3 primaries): each primitive's keys are in the slot of
/// its name on every primary, and a barrier on a node other than the one
/// strata subscribes on releases its waiter (by the trip's PUBLISH across
/// the cluster bus, or at worst the 1 s fallback timer: this test does not
/// tell them apart; coord_lock.rs's cluster test does for the shared wake
/// path).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_primitives_work_on_every_primary_of_a_cluster() {
    let cluster = tokio::task::spawn_blocking(support::cluster::Cluster::start)
        .await
        .expect("cluster");
    let strata = support::cluster_strata::start(&cluster).await;
    let addr = strata.addr.to_string();
    let mut c = support::clients::RawConn::connect(&addr).await;
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..12 {
        let name = format!("obj-{i}");
        let slot = strata::command::slot::hash_slot(name.as_bytes());
        let node = cluster.primary_for_slot(slot);
        nodes.insert(node.clone());
        let p = int(&c.cmd(&format!("SEM.ACQUIRE {name} 2 60000")).await);
        c.expect(&format!("SEM.RELEASE {name} {p}"), b"+OK\r\n")
            .await;
        c.expect(&format!("LATCH.INIT {name} 1"), b":1\r\n").await;
        c.expect(&format!("LATCH.COUNTDOWN {name}"), b":0\r\n")
            .await;
        c.expect(&format!("BARRIER.WAIT {name} 1 1000"), b":1\r\n")
            .await;
        let t = int(&c.cmd(&format!("LEADER.CAMPAIGN {name} n 60000")).await);
        c.expect(&format!("LEADER.RESIGN {name} n {t}"), b"+OK\r\n")
            .await;
        c.expect(&format!("VSET {name} v VERSION 0"), b":1\r\n")
            .await;
        for key in [
            format!("strata:sem:{{{name}}}:meta"),
            format!("strata:latch:{{{name}}}:gen"),
            format!("strata:barrier:{{{name}}}:"),
            format!("strata:leader:{{{name}}}:term"),
            format!("strata:ver:{{{name}}}:"),
            name.clone(),
        ] {
            let exists =
                support::cluster_strata::blocking(|| cluster.must(&node, &["EXISTS", &key]));
            assert_eq!(format!("{exists:?}"), "Int(1)", "{key} on {node}");
        }
    }
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let pubsub = cluster.primary_for_slot(0);
    let name = (0..)
        .map(|i| format!("far-{i}"))
        .find(|n| {
            cluster.primary_for_slot(strata::command::slot::hash_slot(n.as_bytes())) != pubsub
        })
        .expect("a name elsewhere");
    let mut w = support::clients::RawConn::connect(&addr).await;
    w.send(&support::clients::encode_line(&format!(
        "BARRIER.WAIT {name} 2 0"
    )))
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = support::clients::metrics_text(strata.http_addr.expect("http")).await;
        if support::clients::metric(&text, "strata_coord_waiters{backend=\"redis\"}") == Some(1.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "waiter never queued");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    c.expect(&format!("BARRIER.WAIT {name} 2 0"), b":1\r\n")
        .await;
    assert_eq!(support::coord_util::slow_frame(&mut w).await, b":1\r\n");
}
