//! LOCK.ACQUIRE in front of a Sentinel topology (a primary, two
//! replicas): an acquisition waits for a replica's acknowledgement
//! (`WAIT 1` on a connection of its own, `coord/ack.rs`), so the token
//! counter survives a failover to that replica; and without replicas
//! (a plain redis-server) no WAIT is sent.

mod support;

use support::clients::{metric, metrics_text, Env};
use support::sentinel::{info, Topology};

fn wait_calls(addr: &str) -> u64 {
    let text = info(addr, "commandstats");
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_acquisition_waits_for_a_replica() {
    let topo = tokio::task::spawn_blocking(Topology::start)
        .await
        .expect("topology");
    let strata = support::strata::start_with(topo.strata_config()).await;
    support::strata::wait_ready(&strata).await;
    let mut c = support::clients::RawConn::connect(&strata.addr.to_string()).await;
    let primary = topo.current_primary();
    let before = wait_calls(&primary);
    let reply = c.cmd("LOCK.ACQUIRE replicated 60000").await;
    assert!(
        reply.starts_with(b":"),
        "{}",
        support::clients::show(&reply)
    );
    let token = String::from_utf8_lossy(&reply[1..reply.len() - 2]).into_owned();
    assert_eq!(wait_calls(&primary), before + 1, "one WAIT on {primary}");
    let text = metrics_text(strata.http_addr.expect("http")).await;
    assert_eq!(
        metric(&text, "strata_coord_replica_acks_total{backend=\"redis\"}"),
        Some(1.0)
    );
    // Acknowledged: a replica has the counter already.
    let on_replicas: Vec<Option<String>> = topo
        .others(&primary)
        .iter()
        .map(
            |r| match topo.rq(r, &["GET", "strata:lock:{replicated}:seq"]) {
                Ok(support::sentinel::Resp::Str(s)) => Some(s),
                _ => None,
            },
        )
        .collect();
    assert!(
        on_replicas.contains(&Some(token.clone())),
        "no replica has token {token}: {on_replicas:?}"
    );
    strata.shutdown().await;
}

#[tokio::test]
async fn no_wait_without_replicas() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    for i in 0..3 {
        let reply = c.cmd(&format!("LOCK.ACQUIRE lonely-{i} 60000")).await;
        assert!(reply.starts_with(b":"));
    }
    assert_eq!(wait_calls(&env.redis.addr()), 0);
}
