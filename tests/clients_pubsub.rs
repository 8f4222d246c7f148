//! Pub/sub and MONITOR through strata, in RESP2 and RESP3, with exact frames.
//!
//! A subscribed client holds a dedicated backend connection; these tests
//! check the frames it gets (confirmations, messages, pushes), that other
//! commands still work where Redis allows them, and that unsubscribing from
//! everything brings the client back to ordinary commands.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use redis::{cmd, PushKind, Value};
use support::clients::{show, Env, RawConn};
use support::RedisServer;

/// `*3 $9 subscribe $<n> <ch> :<count>` (or `>3` in RESP3).
fn confirm(head: &str, kind: &str, name: &str, count: i64) -> Vec<u8> {
    format!(
        "{head}3\r\n${}\r\n{kind}\r\n${}\r\n{name}\r\n:{count}\r\n",
        kind.len(),
        name.len()
    )
    .into_bytes()
}

fn message(head: &str, kind: &str, channel: &str, payload: &str) -> Vec<u8> {
    format!(
        "{head}3\r\n${}\r\n{kind}\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
        kind.len(),
        channel.len(),
        payload.len()
    )
    .into_bytes()
}

fn pmessage(head: &str, pattern: &str, channel: &str, payload: &str) -> Vec<u8> {
    format!(
        "{head}4\r\n$8\r\npmessage\r\n${}\r\n{pattern}\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
        pattern.len(),
        channel.len(),
        payload.len()
    )
    .into_bytes()
}

async fn read_exact(c: &mut RawConn, want: &[u8]) {
    let got = c.read_frame().await;
    assert_eq!(show(&got), show(want));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_publish_unsubscribe_resp2() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let mut sub = env.raw().await;
    let mut publisher = env.raw().await;
    sub.expect("SET k v", b"+OK\r\n").await;
    sub.send(&support::clients::encode_line("SUBSCRIBE ch1 ch2"))
        .await;
    read_exact(&mut sub, &confirm("*", "subscribe", "ch1", 1)).await;
    read_exact(&mut sub, &confirm("*", "subscribe", "ch2", 2)).await;
    publisher.expect("PUBLISH ch1 hello", b":1\r\n").await;
    read_exact(&mut sub, &message("*", "message", "ch1", "hello")).await;
    publisher.expect("PUBLISH ch2 world", b":1\r\n").await;
    publisher.expect("PUBLISH nobody x", b":0\r\n").await;
    read_exact(&mut sub, &message("*", "message", "ch2", "world")).await;
    // PING in subscribed RESP2 context: Redis's special array form.
    sub.expect("PING", b"*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;
    sub.expect("PING x", b"*2\r\n$4\r\npong\r\n$1\r\nx\r\n")
        .await;
    // Other commands are refused exactly as Redis refuses them.
    let mut r = RawConn::connect(&reference.addr()).await;
    r.cmd("SUBSCRIBE ch1").await;
    let refused = sub.cmd("GET k").await;
    assert_eq!(show(&refused), show(&r.cmd("GET k").await));
    assert!(
        refused.starts_with(b"-ERR Can't execute 'get'"),
        "{}",
        show(&refused)
    );
    // So are the commands strata answers itself elsewhere.
    for line in [
        "CLIENT INFO",
        "CLIENT ID",
        "CLIENT SETNAME x",
        "CLIENT REPLY ON",
        "AUTH a b",
        "READONLY",
        "ECHO hi",
        "SELECT 1",
        "HELLO 3",
    ] {
        assert_eq!(
            show(&sub.cmd(line).await),
            show(&r.cmd(line).await),
            "{line}"
        );
    }
    // A message for a key named like a channel is not confused with a reply.
    publisher.expect("PUBLISH ch1 again", b":1\r\n").await;
    read_exact(&mut sub, &message("*", "message", "ch1", "again")).await;
    sub.send(&support::clients::encode_line("SUBSCRIBE ch3"))
        .await;
    read_exact(&mut sub, &confirm("*", "subscribe", "ch3", 3)).await;
    sub.send(&support::clients::encode_line("UNSUBSCRIBE ch3"))
        .await;
    read_exact(&mut sub, &confirm("*", "unsubscribe", "ch3", 2)).await;
    // UNSUBSCRIBE from everything: one confirmation per channel, counting down.
    sub.send(&support::clients::encode_line("UNSUBSCRIBE"))
        .await;
    let mut names = Vec::new();
    for count in [1, 0] {
        let f = sub.read_frame().await;
        let a = confirm("*", "unsubscribe", "ch1", count);
        let b = confirm("*", "unsubscribe", "ch2", count);
        assert!(f == a || f == b, "{}", show(&f));
        names.push(if f == a { "ch1" } else { "ch2" });
    }
    names.sort();
    assert_eq!(names, ["ch1", "ch2"]);
    // Back to normal on the same connection.
    sub.expect("GET k", b"$1\r\nv\r\n").await;
    sub.expect("PING", b"+PONG\r\n").await;
    publisher.expect("PUBLISH ch1 late", b":0\r\n").await;
    sub.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psubscribe_delivers_pattern() {
    let env = Env::start().await;
    let mut sub = env.raw().await;
    let mut publisher = env.raw().await;
    sub.send(&support::clients::encode_line("PSUBSCRIBE news.*"))
        .await;
    read_exact(&mut sub, &confirm("*", "psubscribe", "news.*", 1)).await;
    publisher.expect("PUBLISH news.sport goal", b":1\r\n").await;
    read_exact(&mut sub, &pmessage("*", "news.*", "news.sport", "goal")).await;
    publisher
        .expect("PUBLISH weather.today rain", b":0\r\n")
        .await;
    // A channel and a pattern both matching: message first, then pmessage.
    sub.send(&support::clients::encode_line("SUBSCRIBE news.sport"))
        .await;
    read_exact(&mut sub, &confirm("*", "subscribe", "news.sport", 2)).await;
    publisher
        .expect("PUBLISH news.sport match", b":2\r\n")
        .await;
    read_exact(&mut sub, &message("*", "message", "news.sport", "match")).await;
    read_exact(&mut sub, &pmessage("*", "news.*", "news.sport", "match")).await;
    sub.send(&support::clients::encode_line("PUNSUBSCRIBE news.*"))
        .await;
    read_exact(&mut sub, &confirm("*", "punsubscribe", "news.*", 1)).await;
    publisher.expect("PUBLISH news.other x", b":0\r\n").await;
    sub.send(&support::clients::encode_line("UNSUBSCRIBE news.sport"))
        .await;
    read_exact(&mut sub, &confirm("*", "unsubscribe", "news.sport", 0)).await;
    sub.expect("SET after 1", b"+OK\r\n").await;
    sub.expect("GET after", b"$1\r\n1\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssubscribe_spublish() {
    let env = Env::start().await;
    let mut sub = env.raw().await;
    let mut publisher = env.raw().await;
    sub.send(&support::clients::encode_line("SSUBSCRIBE sch"))
        .await;
    read_exact(&mut sub, &confirm("*", "ssubscribe", "sch", 1)).await;
    publisher.expect("SPUBLISH sch m1", b":1\r\n").await;
    read_exact(&mut sub, &message("*", "smessage", "sch", "m1")).await;
    // A plain PUBLISH on the same name does not reach a shard subscriber.
    publisher.expect("PUBLISH sch plain", b":0\r\n").await;
    publisher.expect("SPUBLISH sch m2", b":1\r\n").await;
    read_exact(&mut sub, &message("*", "smessage", "sch", "m2")).await;
    sub.send(&support::clients::encode_line("SUNSUBSCRIBE sch"))
        .await;
    read_exact(&mut sub, &confirm("*", "sunsubscribe", "sch", 0)).await;
    sub.expect("SET s 1", b"+OK\r\n").await;
    sub.expect("GET s", b"$1\r\n1\r\n").await;
    publisher.expect("SPUBLISH sch gone", b":0\r\n").await;
    sub.expect_silence(Duration::from_millis(100)).await;
    // SUNSUBSCRIBE pipelined right behind SSUBSCRIBE: its confirmation is
    // the answer to the client's command, not a slot move.
    // Regression guard; before this change: with its entry still queued,
    // the writer took it for Redis's unasked sunsubscribe, resubscribed,
    // and the client never got the confirmation or the PING after it.
    sub.send(b"SSUBSCRIBE s1\r\nSUNSUBSCRIBE\r\nPING\r\n").await;
    read_exact(&mut sub, &confirm("*", "ssubscribe", "s1", 1)).await;
    read_exact(&mut sub, &confirm("*", "sunsubscribe", "s1", 0)).await;
    read_exact(&mut sub, b"+PONG\r\n").await;
}

/// A subscription or tracking inside MULTI is refused (Redis's text for a
/// command not allowed in a transaction) and EXEC aborts: strata could not
/// tell whether EXEC made the subscription, and would lose it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_inside_multi_is_refused_and_aborts_exec() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.pipeline(
        b"MULTI\r\nSET in-multi 1\r\nSUBSCRIBE a\r\nEXEC\r\nPING\r\nGET in-multi\r\n",
        &[
            b"+OK\r\n",
            b"+QUEUED\r\n",
            b"-ERR Command not allowed inside a transaction\r\n",
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
            b"+PONG\r\n",
            b"$-1\r\n",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_subscriber_gets_pushes_and_runs_commands() {
    let env = Env::start().await;
    let mut sub = env.raw().await;
    let mut publisher = env.raw().await;
    sub.cmd("HELLO 3").await;
    sub.expect("SET k v", b"+OK\r\n").await;
    sub.send(&support::clients::encode_line("SUBSCRIBE ch"))
        .await;
    read_exact(&mut sub, &confirm(">", "subscribe", "ch", 1)).await;
    // In RESP3 a subscribed client may run any command.
    sub.expect("GET k", b"$1\r\nv\r\n").await;
    sub.expect("PING", b"+PONG\r\n").await;
    publisher.expect("PUBLISH ch hello", b":1\r\n").await;
    read_exact(&mut sub, &message(">", "message", "ch", "hello")).await;
    // Messages published before a command arrive before its reply.
    for i in 0..3 {
        publisher
            .expect(&format!("PUBLISH ch m{i}"), b":1\r\n")
            .await;
    }
    sub.send(&support::clients::encode_line("GET k")).await;
    for i in 0..3 {
        read_exact(&mut sub, &message(">", "message", "ch", &format!("m{i}"))).await;
    }
    read_exact(&mut sub, b"$1\r\nv\r\n").await;
    sub.send(&support::clients::encode_line("PSUBSCRIBE c*"))
        .await;
    read_exact(&mut sub, &confirm(">", "psubscribe", "c*", 2)).await;
    publisher.expect("PUBLISH ch both", b":2\r\n").await;
    read_exact(&mut sub, &message(">", "message", "ch", "both")).await;
    read_exact(&mut sub, &pmessage(">", "c*", "ch", "both")).await;
    sub.expect("HSET h f v", b":1\r\n").await;
    sub.expect("HGETALL h", b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n")
        .await;
    sub.send(&support::clients::encode_line("PUNSUBSCRIBE"))
        .await;
    read_exact(&mut sub, &confirm(">", "punsubscribe", "c*", 1)).await;
    sub.send(&support::clients::encode_line("UNSUBSCRIBE"))
        .await;
    read_exact(&mut sub, &confirm(">", "unsubscribe", "ch", 0)).await;
    sub.expect("GET k", b"$1\r\nv\r\n").await;
    sub.expect("GET nope", b"_\r\n").await;
    publisher.expect("PUBLISH ch gone", b":0\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_resp3_push_messages() {
    let env = Env::start().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", env.addr())).unwrap();
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(30)))
        .set_push_sender(tx);
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let mut publisher = env.con().await;
    con.subscribe("rs").await.unwrap();
    con.psubscribe("rs.*").await.unwrap();
    let _: () = cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let n: i64 = cmd("PUBLISH")
        .arg("rs")
        .arg("one")
        .query_async(&mut publisher)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = cmd("PUBLISH")
        .arg("rs.x")
        .arg("two")
        .query_async(&mut publisher)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let mut got = Vec::new();
    while got.len() < 2 {
        let push = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        match push.kind {
            PushKind::Message | PushKind::PMessage => got.push((push.kind, push.data)),
            PushKind::Subscribe | PushKind::PSubscribe => {}
            other => panic!("unexpected push {other:?}: {:?}", push.data),
        }
    }
    assert_eq!(
        got[0],
        (
            PushKind::Message,
            vec![
                Value::BulkString(b"rs".to_vec()),
                Value::BulkString(b"one".to_vec())
            ]
        )
    );
    assert_eq!(
        got[1],
        (
            PushKind::PMessage,
            vec![
                Value::BulkString(b"rs.*".to_vec()),
                Value::BulkString(b"rs.x".to_vec()),
                Value::BulkString(b"two".to_vec())
            ]
        )
    );
    // Ordinary commands on the subscribed connection.
    let v: String = cmd("GET").arg("k").query_async(&mut con).await.unwrap();
    assert_eq!(v, "v");
    con.unsubscribe("rs").await.unwrap();
    con.punsubscribe("rs.*").await.unwrap();
    let n: i64 = cmd("PUBLISH")
        .arg("rs")
        .arg("x")
        .query_async(&mut publisher)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let v: String = cmd("GET").arg("k").query_async(&mut con).await.unwrap();
    assert_eq!(v, "v");
}

/// Commands pipelined in one write while (or when) the client is on a
/// dedicated connection: each must get its reply, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: strata closes the client when replies to several pipelined
// commands on a dedicated connection arrive in one read (writer.rs dedicated_loop: 'unexpected
// reply from backend')
async fn pipelined_commands_on_a_dedicated_connection() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.send(b"SUBSCRIBE a\r\nPSUBSCRIBE b*\r\nPING\r\n").await;
    read_exact(&mut c, &confirm("*", "subscribe", "a", 1)).await;
    read_exact(&mut c, &confirm("*", "psubscribe", "b*", 2)).await;
    read_exact(&mut c, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;
    c.send(b"UNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nSET k 1\r\n").await;
    read_exact(&mut c, &confirm("*", "unsubscribe", "a", 1)).await;
    read_exact(&mut c, &confirm("*", "punsubscribe", "b*", 0)).await;
    read_exact(&mut c, b"+OK\r\n").await;
    c.pipeline(
        b"SELECT 2\r\nSET k 2\r\nGET k\r\nSELECT 0\r\nGET k\r\n",
        &[
            b"+OK\r\n",
            b"+OK\r\n",
            b"$1\r\n2\r\n",
            b"+OK\r\n",
            b"$1\r\n1\r\n",
        ],
    )
    .await;
}

/// Commands pipelined ahead of QUIT on a dedicated connection reach Redis
/// and are answered before the connection closes, as in Redis.
// Regression guard; before this change: they stayed in the session's
// buffer for the dedicated connection, and the client got only
// "-ERR backend connection lost" (a write after SELECT 1 was lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelined_before_quit_on_a_dedicated_connection_run() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.send(b"SUBSCRIBE q1\r\nQUIT\r\n").await;
    read_exact(&mut c, &confirm("*", "subscribe", "q1", 1)).await;
    read_exact(&mut c, b"+OK\r\n").await;
    c.expect_closed().await;

    let mut c = env.raw().await;
    c.pipeline(
        b"SELECT 1\r\nSET before-quit v\r\nQUIT\r\n",
        &[b"+OK\r\n", b"+OK\r\n", b"+OK\r\n"],
    )
    .await;
    c.expect_closed().await;
    let mut direct = env.raw_backend().await;
    direct.expect("SELECT 1", b"+OK\r\n").await;
    direct.expect("GET before-quit", b"$1\r\nv\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_sees_other_clients_and_reset_ends_it() {
    let env = Env::start().await;
    let mut mon = env.raw().await;
    let mut other = env.raw().await;
    mon.expect("MONITOR", b"+OK\r\n").await;
    other
        .expect("SET monitored-key some-value", b"+OK\r\n")
        .await;
    // strata's own health PINGs show up too; find the client's command.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let f = mon.read_frame().await;
        let text = String::from_utf8_lossy(&f).into_owned();
        assert!(
            text.starts_with('+') && text.as_bytes()[1].is_ascii_digit(),
            "not a MONITOR line: {text:?}"
        );
        if text.contains(r#""SET" "monitored-key" "some-value""#) {
            assert!(text.contains(" [0 127.0.0.1:"), "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "MONITOR never showed the SET"
        );
    }
    // RESET ends MONITOR: +RESET arrives after any monitor lines still in flight.
    mon.send(&support::clients::encode_line("RESET")).await;
    loop {
        let f = mon.read_frame().await;
        if f == b"+RESET\r\n" {
            break;
        }
        assert!(
            f.starts_with(b"+") && f[1].is_ascii_digit(),
            "unexpected {}",
            show(&f)
        );
    }
    mon.expect("GET monitored-key", b"$10\r\nsome-value\r\n")
        .await;
    other.expect("SET monitored-key again", b"+OK\r\n").await;
    // No monitor output any more (health PINGs run every 100 ms in tests).
    mon.expect_silence(Duration::from_millis(400)).await;
    mon.expect("GET monitored-key", b"$5\r\nagain\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: UNSUBSCRIBE with nothing subscribed gets Redis's
// [unsubscribe, $-1, 0]; strata rejects the nested RESP2 null as a malformed reply and
// disconnects the client (protocol/reply.rs frame_len)
async fn unsubscribe_when_not_subscribed() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    for line in ["UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"] {
        let got = s.cmd(line).await;
        let want = r.cmd(line).await;
        assert_eq!(show(&got), show(&want), "{line}");
    }
    assert_eq!(
        show(&s.cmd("UNSUBSCRIBE").await),
        show(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")
    );
    s.expect("SET k v", b"+OK\r\n").await;
}
