//! CLIENT KILL and CLIENT UNBLOCK through strata: they act on strata's own
//! clients (the ones CLIENT LIST shows), with Redis 7.0's syntax, replies
//! and error texts, and a killed client's backend state goes with it.
//! (Unblocking a blocked client is in `clients_blocking.rs`.)
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::clients::{show, Env, RawConn};
use support::RedisServer;

/// A field of a CLIENT INFO / CLIENT LIST line, e.g. `addr`.
fn field(info: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(info);
    text.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {name}= in {text:?}"))
}

/// Polls `check` until it holds, for up to 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_and_unblock_errors_match_redis() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    for line in [
        "CLIENT KILL",
        "CLIENT KILL ID 0",
        "CLIENT KILL ID -3",
        "CLIENT KILL ID abc",
        "CLIENT KILL TYPE nosuch",
        "CLIENT KILL USER nosuchuser",
        "CLIENT KILL SKIPME maybe",
        "CLIENT KILL ID 5 FOO",
        "CLIENT KILL FOO bar",
        "CLIENT KILL MAXAGE 10",
        "CLIENT KILL 10.9.8.7:65000",
        "CLIENT KILL ADDR 10.9.8.7:65000",
        "CLIENT KILL TYPE master",
        "CLIENT KILL TYPE replica",
        "CLIENT KILL ID 999999 USER default SKIPME no",
        "CLIENT UNBLOCK",
        "CLIENT UNBLOCK abc",
        "CLIENT UNBLOCK 1 maybe",
        "CLIENT UNBLOCK abc maybe",
        "CLIENT UNBLOCK 1 TIMEOUT extra",
        "CLIENT UNBLOCK 999999",
        "CLIENT UNBLOCK -1 ERROR",
    ] {
        let got = s.cmd(line).await;
        let want = r.cmd(line).await;
        assert_eq!(show(&got), show(&want), "strata vs redis on {line:?}");
    }
    // Still connected and served after all of that.
    s.expect("PING", b"+PONG\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_by_id_addr_type_and_self() {
    let env = Env::start().await;
    let mut admin = env.raw().await;
    let admin_info = admin.cmd("CLIENT INFO").await;

    // By ID: the other client is closed; the caller is answered.
    let mut by_id = env.raw().await;
    let id = field(&by_id.cmd("CLIENT INFO").await, "id");
    admin
        .expect(&format!("CLIENT KILL ID {id}"), b":1\r\n")
        .await;
    by_id.expect_closed().await;
    eventually("the killed client leaves CLIENT LIST", async || {
        let list = admin.cmd("CLIENT LIST").await;
        !String::from_utf8_lossy(&list).contains(&format!("id={id} "))
    })
    .await;

    // The old form, by address: +OK, and the client is closed.
    let mut by_addr = env.raw().await;
    let addr = field(&by_addr.cmd("CLIENT INFO").await, "addr");
    admin
        .expect(&format!("CLIENT KILL {addr}"), b"+OK\r\n")
        .await;
    by_addr.expect_closed().await;
    admin
        .expect(&format!("CLIENT KILL {addr}"), b"-ERR No such client\r\n")
        .await;

    // By TYPE pubsub: the subscriber goes, with its backend subscription;
    // a normal client stays.
    let mut subscriber = env.raw().await;
    // Before it subscribes: a subscribed RESP2 client may not ask.
    let sub_id = field(&subscriber.cmd("CLIENT INFO").await, "id");
    subscriber.cmd("SUBSCRIBE killed-channel").await;
    let mut normal = env.raw().await;
    normal.expect("SET k v", b"+OK\r\n").await;
    let listed = |list: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(list)
            .lines()
            .filter(|l| l.contains("id="))
            .map(|l| field(l.as_bytes(), "id"))
            .collect()
    };
    assert_eq!(
        listed(&admin.cmd("CLIENT LIST TYPE pubsub").await),
        vec![sub_id.clone()]
    );
    assert!(!listed(&admin.cmd("CLIENT LIST TYPE normal").await).contains(&sub_id));
    admin.expect("CLIENT KILL TYPE pubsub", b":1\r\n").await;
    subscriber.expect_closed().await;
    normal.expect("GET k", b"$1\r\nv\r\n").await;
    let mut direct = env.raw_backend().await;
    eventually("the backend loses the subscriber", async || {
        direct.cmd("PUBSUB NUMSUB killed-channel").await == b"*2\r\n$14\r\nkilled-channel\r\n:0\r\n"
    })
    .await;

    // LADDR (strata's own listening address) selects everyone; SKIPME
    // spares the caller by default.
    let laddr = field(&admin_info, "laddr");
    admin
        .expect(&format!("CLIENT KILL LADDR {laddr}"), b":1\r\n")
        .await;
    normal.expect_closed().await;
    admin.expect("PING", b"+PONG\r\n").await;

    // Itself, with SKIPME no: answered, then closed, as Redis does.
    let me = field(&admin_info, "id");
    admin
        .expect(&format!("CLIENT KILL ID {me}"), b":0\r\n")
        .await;
    admin
        .expect(&format!("CLIENT KILL ID {me} SKIPME no"), b":1\r\n")
        .await;
    admin.expect_closed().await;
}
