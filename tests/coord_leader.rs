//! LEADER.* through strata against a real redis-server: replies and
//! errors, WATCH woken by a change, CAMPAIGN … WAIT woken by a
//! resignation, one leader per term through campaigners that stop
//! renewing (paused past their ttl) with a checker on the protected side,
//! and a strata killed with SIGKILL while its client leads with KEEPALIVE.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::clients::{encode_line, show, Env, RawConn};
use support::coord_util::{int, int_cmd, slow_frame, waiters_queued};

#[tokio::test]
async fn campaign_renew_resign_get_and_their_errors() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.expect("LEADER.GET jobs", b"$-1\r\n").await;
    let t1 = int_cmd(&mut c, "LEADER.CAMPAIGN jobs n1 60000").await;
    assert!(t1 >= 1);
    c.expect("LEADER.CAMPAIGN jobs n2 60000", b"$-1\r\n").await;
    // The leader campaigning again keeps its term.
    assert_eq!(int_cmd(&mut c, "leader.campaign jobs n1 60000").await, t1);
    let got = show(&c.cmd("LEADER.GET jobs").await);
    assert!(
        got.starts_with(&format!(
            "*6\\r\\n$6\\r\\nleader\\r\\n$2\\r\\nn1\\r\\n$4\\r\\nterm\\r\\n:{t1}\\r\\n$6\\r\\nttl_ms\\r\\n:"
        )),
        "{got}"
    );
    c.expect(&format!("LEADER.RENEW jobs n1 {t1} 60000"), b"+OK\r\n")
        .await;
    c.expect(
        &format!("LEADER.RENEW jobs n2 {t1} 60000"),
        format!("-NOTLEADER node 'n2' does not lead election 'jobs' in term {t1}\r\n").as_bytes(),
    )
    .await;
    c.expect(&format!("LEADER.RESIGN jobs n1 {t1}"), b"+OK\r\n")
        .await;
    c.expect("LEADER.GET jobs", b"$-1\r\n").await;
    let t2 = int_cmd(&mut c, "LEADER.CAMPAIGN jobs n2 60000").await;
    assert!(t2 > t1, "terms increase: {t1} then {t2}");
    c.expect(
        &format!("LEADER.RESIGN jobs n1 {t1}"),
        format!("-NOTLEADER node 'n1' does not lead election 'jobs' in term {t1}\r\n").as_bytes(),
    )
    .await;
    c.expect(
        "LEADER.RENEW jobs n2 999 1000",
        b"-ERR term 999 was never issued for election 'jobs'\r\n",
    )
    .await;
    for (line, reply) in [
        (
            "LEADER.CAMPAIGN e n",
            "-ERR wrong number of arguments for 'leader.campaign' command\r\n",
        ),
        (
            "LEADER.RENEW e n 1",
            "-ERR wrong number of arguments for 'leader.renew' command\r\n",
        ),
        (
            "LEADER.RESIGN e n",
            "-ERR wrong number of arguments for 'leader.resign' command\r\n",
        ),
        (
            "LEADER.GET",
            "-ERR wrong number of arguments for 'leader.get' command\r\n",
        ),
        (
            "LEADER.WATCH",
            "-ERR wrong number of arguments for 'leader.watch' command\r\n",
        ),
        ("LEADER.WATCH e 1 2", "-ERR syntax error\r\n"),
        ("LEADER.WATCH e -1", "-ERR timeout is negative\r\n"),
        (
            "LEADER.CAMPAIGN e n -1",
            "-ERR invalid expire time in 'leader.campaign' command\r\n",
        ),
        (
            "LEADER.CAMPAIGN e n x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "LEADER.CAMPAIGN e n 10 WAIT -1",
            "-ERR timeout is negative\r\n",
        ),
        ("LEADER.CAMPAIGN e n 10 SOON", "-ERR syntax error\r\n"),
        (
            "LEADER.RENEW e n 0 10",
            "-ERR value is out of range, must be positive\r\n",
        ),
        (
            "LEADER.RENEW e n 1 0",
            "-ERR invalid expire time in 'leader.renew' command\r\n",
        ),
    ] {
        c.expect(line, reply.as_bytes()).await;
    }
    let empty = c.call(&[b"LEADER.CAMPAIGN", b"e", b"", b"10"]).await;
    assert_eq!(show(&empty), show(b"-ERR node_id must not be empty\r\n"));
}

/// WATCH returns when the leader changes (a campaign), and nil after its
/// timeout when nothing changes; CAMPAIGN … WAIT is woken by a
/// resignation (ten-minute ttls: only the wake-up explains it).
#[tokio::test]
async fn watch_and_wait_are_woken_by_changes() {
    let env = Env::start().await;
    let mut watcher = env.raw().await;
    watcher.send(&encode_line("LEADER.WATCH w")).await;
    waiters_queued(&env, 1.0).await;
    let mut a = env.raw().await;
    let t = int_cmd(&mut a, "LEADER.CAMPAIGN w alpha 600000").await;
    let seen = show(&slow_frame(&mut watcher).await);
    assert!(
        seen.starts_with(&format!(
            "*6\\r\\n$6\\r\\nleader\\r\\n$5\\r\\nalpha\\r\\n$4\\r\\nterm\\r\\n:{t}\\r\\n"
        )),
        "{seen}"
    );
    watcher.expect("LEADER.WATCH w 300", b"$-1\r\n").await;
    let mut b = env.raw().await;
    b.send(&encode_line("LEADER.CAMPAIGN w beta 600000 WAIT 0"))
        .await;
    waiters_queued(&env, 1.0).await;
    a.expect(&format!("LEADER.RESIGN w alpha {t}"), b"+OK\r\n")
        .await;
    assert_eq!(int(&slow_frame(&mut b).await), t + 1);
}

/// The protected side: accepts a write only with a term no lower than the
/// highest it has seen (the term is the fencing token).
#[derive(Default)]
struct Fenced {
    highest: i64,
    accepted: Vec<(i64, String)>,
    rejected: usize,
}

/// Four campaigners, each leading in turn with a 300 ms ttl; every other
/// leadership is "paused" (the campaigner stops renewing for three ttls).
/// Checked: no term is granted to two nodes; a paused leader whose term
/// was superseded is refused by RENEW and by the fenced resource; the
/// accepted writes' terms never decrease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_per_term_through_paused_campaigners() {
    let env = Env::start().await;
    let grants: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
    let resource: Arc<Mutex<Fenced>> = Arc::default();
    let mut tasks = Vec::new();
    for n in 0..4 {
        let mut c: RawConn = env.raw().await;
        let (grants, resource) = (grants.clone(), resource.clone());
        tasks.push(tokio::spawn(async move {
            let node = format!("node{n}");
            for round in 0..4 {
                c.send(&encode_line(&format!(
                    "LEADER.CAMPAIGN el {node} 300 WAIT 120000"
                )))
                .await;
                let term = int(&slow_frame(&mut c).await);
                grants.lock().expect("lock").push((term, node.clone()));
                let write = |resource: &Mutex<Fenced>| {
                    let mut r = resource.lock().expect("lock");
                    if term >= r.highest {
                        r.highest = term;
                        r.accepted.push((term, node.clone()));
                        true
                    } else {
                        r.rejected += 1;
                        false
                    }
                };
                write(&resource);
                if (round + n) % 2 == 0 {
                    c.expect(&format!("LEADER.RESIGN el {node} {term}"), b"+OK\r\n")
                        .await;
                    continue;
                }
                // Paused past the ttl, then back.
                tokio::time::sleep(Duration::from_millis(900)).await;
                let superseded = grants.lock().expect("lock").iter().any(|(t, _)| *t > term);
                let renewed = c.cmd(&format!("LEADER.RENEW el {node} {term} 300")).await;
                if superseded {
                    assert!(
                        renewed.starts_with(b"-NOTLEADER"),
                        "{node} renewed term {term} after a later term was granted: {}",
                        show(&renewed)
                    );
                    assert!(!write(&resource), "a superseded term's write was accepted");
                } else if renewed == b"+OK\r\n" {
                    c.expect(&format!("LEADER.RESIGN el {node} {term}"), b"+OK\r\n")
                        .await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("campaigner");
    }
    let grants = grants.lock().expect("lock").clone();
    let mut by_term: HashMap<i64, &str> = HashMap::new();
    for (term, node) in &grants {
        if let Some(other) = by_term.insert(*term, node) {
            assert_eq!(other, node, "term {term} granted to {other} and {node}");
        }
    }
    assert_eq!(
        by_term.len(),
        16,
        "every campaign got a term of its own: {grants:?}"
    );
    let r = resource.lock().expect("lock");
    assert!(
        r.accepted.windows(2).all(|w| w[0].0 <= w[1].0),
        "accepted terms decreased: {:?}",
        r.accepted
    );
}

/// A strata killed with SIGKILL while its client leads with KEEPALIVE:
/// nobody renews, the leadership expires after its ttl, and a campaigner
/// on another strata leads in a higher term.
#[tokio::test]
async fn a_killed_stratas_leadership_expires_and_the_term_grows() {
    let redis = support::RedisServer::start();
    let mut doomed = support::strata::StrataProcess::spawn(&redis.addr(), &[]);
    let survivor = support::strata::StrataProcess::spawn(&redis.addr(), &[]);
    let mut a = RawConn::connect(&format!("127.0.0.1:{}", doomed.port)).await;
    let mut b = RawConn::connect(&format!("127.0.0.1:{}", survivor.port)).await;
    let t1 = int_cmd(&mut a, "LEADER.CAMPAIGN k a 500 KEEPALIVE").await;
    // Renewed while strata lives: still the leader after three ttls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.expect("LEADER.CAMPAIGN k b 500", b"$-1\r\n").await;
    let _ = doomed.child.kill();
    let _ = doomed.child.wait();
    b.send(&encode_line("LEADER.CAMPAIGN k b 500 WAIT 60000"))
        .await;
    let t2 = int(&slow_frame(&mut b).await);
    assert!(t2 > t1, "{t1} then {t2}");
    let got = show(&b.cmd("LEADER.GET k").await);
    assert!(got.contains("$1\\r\\nb\\r\\n"), "{got}");
    drop(survivor);
}
