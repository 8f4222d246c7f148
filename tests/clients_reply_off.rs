//! CLIENT REPLY OFF / SKIP with pub/sub, replayed byte for byte against a
//! plain redis-server and through strata, in RESP2 and RESP3.
//!
//! Redis silences replies but still delivers what it *pushes*: subscribe
//! and unsubscribe confirmations and messages, keyspace notifications
//! included (`CLIENT_PUSHING` in networking.c `prepareClientToWrite`).
//! Each silenced command is followed by one whose frames Redis does send,
//! so the script tells "dropped" from "late" without waiting on a clock.
#![allow(clippy::unwrap_used)]

mod support;

use support::clients::{show, Env, RawConn};
use support::RedisServer;

/// One step: a command on the subscriber (`true`) or on the other client,
/// and how many frames it answers with.
type Step = (bool, &'static str, usize);

/// The exchange, as a client library silencing its replies would make it.
fn script(proto: u8) -> Vec<Step> {
    let mut steps: Vec<Step> = vec![
        (false, "CONFIG SET notify-keyspace-events KEA", 1),
        (true, "CLIENT REPLY OFF", 0),
        (true, "SET k v", 0),
        // Confirmations come, one per channel, though replies are off.
        (true, "SUBSCRIBE ch1 ch2", 2),
        (false, "PUBLISH ch1 hi", 1),
        (true, "", 1), // the message
        (true, "PING", 0),
        (true, "GET k", 0), // refused in RESP2, a reply in RESP3: dropped either way
        (true, "PSUBSCRIBE __keyspace@0__:*", 1),
        // A keyspace notification reaches the silenced subscriber.
        (false, "SET k v2", 1),
        (true, "", 1),
        (true, "UNSUBSCRIBE ch1", 1),
        (true, "PUNSUBSCRIBE", 1),
        (true, "UNSUBSCRIBE", 1),
        // Nothing left: the confirmation with a null channel.
        (true, "UNSUBSCRIBE", 1),
        (true, "GET k", 0),
        (true, "CLIENT REPLY ON", 1),
        (true, "CLIENT REPLY SKIP", 0),
        // SKIP is used up by SUBSCRIBE, whose confirmation still comes.
        (true, "SUBSCRIBE s", 1),
        (true, "PING", 1),
        (true, "UNSUBSCRIBE", 1),
        (true, "GET k", 1),
        // Pipelined in one write, as a client sends them.
        (true, "CLIENT REPLY OFF\r\nSUBSCRIBE p1\r\nPING\r\nUNSUBSCRIBE p1\r\nCLIENT REPLY ON\r\nGET k", 4),
    ];
    if proto == 3 {
        steps.insert(0, (true, "HELLO 3", 1));
    }
    steps
}

/// Runs the script against `addr`; returns every frame each step brought.
async fn replay(addr: &str, proto: u8) -> Vec<String> {
    let mut sub = RawConn::connect(addr).await;
    let mut other = RawConn::connect(addr).await;
    let mut seen = Vec::new();
    for (on_sub, line, frames) in script(proto) {
        let c = if on_sub { &mut sub } else { &mut other };
        if !line.is_empty() {
            let bytes: Vec<u8> = line
                .split("\r\n")
                .flat_map(support::clients::encode_line)
                .collect();
            c.send(&bytes).await;
        }
        for _ in 0..frames {
            let f = c.read_frame().await;
            // HELLO's map names the server's own client id and version.
            let text = if line == "HELLO 3" {
                "<hello>".to_string()
            } else {
                show(&f)
            };
            seen.push(format!("{line:?} -> {text}"));
        }
    }
    seen
}

async fn compare(proto: u8) {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let want = replay(&reference.addr(), proto).await;
    let got = replay(&env.addr().to_string(), proto).await;
    assert_eq!(got, want);
    // The exchange is what it says: confirmations and messages came.
    assert!(
        want.iter()
            .any(|l| l.contains("pmessage") && l.contains("__keyspace@0__:k")),
        "{want:#?}"
    );
}

// Before this change: SUBSCRIBE after CLIENT REPLY OFF was refused by
// strata with an error, itself silenced; the client waited for its
// confirmations for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_off_subscriber_gets_pushes_resp2() {
    compare(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_off_subscriber_gets_pushes_resp3() {
    compare(3).await;
}
