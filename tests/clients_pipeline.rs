//! Real clients through strata: 10,000-command pipelines (redis-rs and raw
//! bytes in one write), inline commands, and transactions (MULTI/EXEC,
//! DISCARD, WATCH).
#![allow(clippy::unwrap_used)]

mod support;

use redis::{cmd, Value};
use support::clients::{show, Env, RawConn};
use support::RedisServer;

/// Pipeline step `i` of the 10,000-command pipelines: SET, INCR, GET in turn.
fn pipeline_step(i: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let args: Vec<String> = match i % 3 {
        0 => vec!["SET".into(), format!("p:{i}"), format!("value-{i}")],
        1 => vec!["INCR".into(), "p:counter".into()],
        _ => vec!["GET".into(), format!("p:{}", i - 2)],
    };
    let reply = match i % 3 {
        0 => b"+OK\r\n".to_vec(),
        1 => format!(":{}\r\n", i / 3 + 1).into_bytes(),
        _ => {
            let v = format!("value-{}", i - 2);
            format!("${}\r\n{v}\r\n", v.len()).into_bytes()
        }
    };
    (args.into_iter().map(String::into_bytes).collect(), reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_of_10000_with_redis_rs() {
    let env = Env::start().await;
    let mut con = env.con().await;
    let mut p = redis::pipe();
    for i in 0..10_000 {
        let (args, _) = pipeline_step(i);
        let mut c = cmd(std::str::from_utf8(&args[0]).unwrap());
        for a in &args[1..] {
            c.arg(&a[..]);
        }
        p.add_command(c);
    }
    let out: Vec<Value> = p.query_async(&mut con).await.unwrap();
    assert_eq!(out.len(), 10_000);
    for (i, v) in out.iter().enumerate() {
        let expected = match i % 3 {
            0 => Value::Okay,
            1 => Value::Int((i / 3 + 1) as i64),
            _ => Value::BulkString(format!("value-{}", i - 2).into_bytes()),
        };
        assert_eq!(v, &expected, "reply {i}");
    }
    let n: i64 = cmd("GET")
        .arg("p:counter")
        .query_async(&mut env.backend_con().await)
        .await
        .unwrap();
    assert_eq!(n, 3_333);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_of_10000_raw_in_one_write() {
    let env = Env::start().await;
    let mut raw = env.raw().await;
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10_000 {
        let (args, reply) = pipeline_step(i);
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        bytes.extend_from_slice(&support::clients::encode(&refs));
        expected.push(reply);
    }
    raw.send(&bytes).await;
    for (i, want) in expected.iter().enumerate() {
        let got = raw.read_frame().await;
        assert_eq!(show(&got), show(want), "reply {i}");
    }
    // Exactly 10,000 replies: nothing more arrives.
    raw.expect_silence(std::time::Duration::from_millis(200))
        .await;
    raw.expect("GET p:counter", b"$4\r\n3333\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_match_redis() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let script: &[u8] = b"PING\r\nSET a \"hello world\"\r\nGET a\r\nSET 'b' 'x y'\r\n  GET   b  \r\nECHO \"q\\x41\\n\"\r\nEXISTS a b nope\nGET nope\r\n";
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    s.send(script).await;
    r.send(script).await;
    let expected: [&[u8]; 8] = [
        b"+PONG\r\n",
        b"+OK\r\n",
        b"$11\r\nhello world\r\n",
        b"+OK\r\n",
        b"$3\r\nx y\r\n",
        b"$3\r\nqA\n\r\n",
        b":2\r\n",
        b"$-1\r\n",
    ];
    for (n, want) in expected.iter().enumerate() {
        let got = s.read_frame().await;
        let reference_reply = r.read_frame().await;
        assert_eq!(
            show(&reference_reply),
            show(want),
            "reference, inline reply {n}"
        );
        assert_eq!(show(&got), show(want), "strata, inline reply {n}");
    }
    s.expect_silence(std::time::Duration::from_millis(100))
        .await;
    s.expect("GET b", b"$3\r\nx y\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_exec_discard_and_errors_match_redis() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    let script = [
        ("EXEC", &b"-ERR EXEC without MULTI\r\n"[..]),
        ("DISCARD", b"-ERR DISCARD without MULTI\r\n"),
        ("MULTI", b"+OK\r\n"),
        ("SET t 1", b"+QUEUED\r\n"),
        ("INCRBY t 5", b"+QUEUED\r\n"),
        ("GET t", b"+QUEUED\r\n"),
        ("PING", b"+QUEUED\r\n"),
        ("EXEC", b"*4\r\n+OK\r\n:6\r\n$1\r\n6\r\n+PONG\r\n"),
        ("GET t", b"$1\r\n6\r\n"),
        ("MULTI", b"+OK\r\n"),
        ("MULTI", b"-ERR MULTI calls can not be nested\r\n"),
        ("SET t 99", b"+QUEUED\r\n"),
        ("DISCARD", b"+OK\r\n"),
        ("GET t", b"$1\r\n6\r\n"),
        ("MULTI", b"+OK\r\n"),
        (
            "SET t",
            b"-ERR wrong number of arguments for 'set' command\r\n",
        ),
        ("INCR t", b"+QUEUED\r\n"),
        (
            "EXEC",
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
        ),
        ("GET t", b"$1\r\n6\r\n"),
        ("MULTI", b"+OK\r\n"),
        ("SET str x", b"+QUEUED\r\n"),
        ("INCR str", b"+QUEUED\r\n"),
        (
            "EXEC",
            b"*2\r\n+OK\r\n-ERR value is not an integer or out of range\r\n",
        ),
        ("WATCH t", b"+OK\r\n"),
        ("UNWATCH", b"+OK\r\n"),
        ("MULTI", b"+OK\r\n"),
        ("WATCH t", b"-ERR WATCH inside MULTI is not allowed\r\n"),
        ("EXEC", b"*0\r\n"),
        ("INCR t", b":7\r\n"),
    ];
    for (line, want) in script {
        let got_s = s.cmd(line).await;
        let got_r = r.cmd(line).await;
        assert_eq!(
            show(&got_r),
            show(want),
            "reference redis on {line:?} (test expectation)"
        );
        assert_eq!(show(&got_s), show(want), "strata on {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: redis-rs sends MULTI…EXEC as one pipelined write; when
// several replies on a dedicated connection arrive in one read, strata's writer fails with
// 'unexpected reply from backend' and closes the client (server/writer.rs dedicated_loop)
async fn multi_exec_with_redis_rs() {
    let env = Env::start().await;
    let mut con = env.con().await;
    let (a, b, c): (String, i64, String) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("tx")
        .arg(10)
        .cmd("INCRBY")
        .arg("tx")
        .arg(5)
        .cmd("GET")
        .arg("tx")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!((a.as_str(), b, c.as_str()), ("OK", 15, "15"));
    // Back to normal commands on the same connection.
    let v: i64 = cmd("INCR").arg("tx").query_async(&mut con).await.unwrap();
    assert_eq!(v, 16);
    let err = cmd("EXEC")
        .query_async::<Value>(&mut con)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.detail()),
        (Some("ERR"), Some("EXEC without MULTI"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: pipelined MULTI…EXEC on a dedicated connection closes the
// client (server/writer.rs dedicated_loop), and the aborted EXEC's *-1 is rejected as malformed
// (protocol/reply.rs frame_len)
async fn watch_with_redis_rs() {
    let env = Env::start().await;
    let mut a = env.con().await;
    let mut b = env.con().await;
    let _: () = cmd("SET")
        .arg("w")
        .arg("start")
        .query_async(&mut a)
        .await
        .unwrap();

    // A conflicting write from another client between WATCH and EXEC: EXEC is nil.
    let _: () = cmd("WATCH").arg("w").query_async(&mut a).await.unwrap();
    let _: () = cmd("SET")
        .arg("w")
        .arg("from-b")
        .query_async(&mut b)
        .await
        .unwrap();
    let res: Option<(String, i64)> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("w")
        .arg("from-a")
        .cmd("INCR")
        .arg("w-count")
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(res, None, "EXEC after a conflicting write must return nil");
    let v: String = cmd("GET").arg("w").query_async(&mut a).await.unwrap();
    assert_eq!(v, "from-b");
    let n: Option<i64> = cmd("GET").arg("w-count").query_async(&mut b).await.unwrap();
    assert_eq!(n, None, "the aborted transaction must not have run");

    // Without a conflict the same transaction commits.
    let _: () = cmd("WATCH").arg("w").query_async(&mut a).await.unwrap();
    let _: () = cmd("SET")
        .arg("other")
        .arg("x")
        .query_async(&mut b)
        .await
        .unwrap();
    let res: Option<(String, i64)> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("w")
        .arg("from-a")
        .cmd("INCR")
        .arg("w-count")
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(res, Some(("OK".to_string(), 1)));
    let v: String = cmd("GET").arg("w").query_async(&mut b).await.unwrap();
    assert_eq!(v, "from-a");

    // A write that changes nothing (DEL of a missing key) is no conflict.
    let _: () = cmd("WATCH")
        .arg("w")
        .arg("w2")
        .query_async(&mut a)
        .await
        .unwrap();
    let _: () = cmd("DEL").arg("w2").query_async(&mut b).await.unwrap();
    let res: Option<(i64,)> = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("w-count")
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(res, Some((2,)));

    // After EXEC the client is back to ordinary (multiplexed) commands.
    for i in 0..50 {
        let _: () = cmd("SET")
            .arg(format!("after:{i}"))
            .arg(i)
            .query_async(&mut a)
            .await
            .unwrap();
    }
    let vals: Vec<i64> = cmd("MGET")
        .arg("after:0")
        .arg("after:49")
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(vals, vec![0, 49]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_without_conflict_commits() {
    let env = Env::start().await;
    let mut a = env.raw().await;
    let mut b = env.raw().await;
    a.expect("SET w start", b"+OK\r\n").await;
    a.expect("WATCH w", b"+OK\r\n").await;
    b.expect("SET other x", b"+OK\r\n").await;
    b.expect("GET w", b"$5\r\nstart\r\n").await;
    a.expect("MULTI", b"+OK\r\n").await;
    a.expect("SET w from-a", b"+QUEUED\r\n").await;
    a.expect("INCR count", b"+QUEUED\r\n").await;
    a.expect("EXEC", b"*2\r\n+OK\r\n:1\r\n").await;
    b.expect("GET w", b"$6\r\nfrom-a\r\n").await;
    // After EXEC: ordinary commands, and no stale WATCH (a write by b to w
    // now does not abort a's next, unwatched transaction).
    b.expect("SET w from-b", b"+OK\r\n").await;
    a.expect("MULTI", b"+OK\r\n").await;
    a.expect("INCR count", b"+QUEUED\r\n").await;
    a.expect("EXEC", b"*1\r\n:2\r\n").await;
    a.expect("GET w", b"$6\r\nfrom-b\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: EXEC aborted by WATCH returns a RESP2 null array (*-1), which
// strata rejects as a malformed reply and disconnects the client (protocol/reply.rs frame_len)
async fn watch_conflict_makes_exec_nil() {
    let env = Env::start().await;
    let mut a = env.raw().await;
    let mut b = env.raw().await;
    a.expect("SET w start", b"+OK\r\n").await;
    a.expect("WATCH w", b"+OK\r\n").await;
    b.expect("SET w from-b", b"+OK\r\n").await;
    a.expect("MULTI", b"+OK\r\n").await;
    a.expect("SET w from-a", b"+QUEUED\r\n").await;
    a.expect("INCR count", b"+QUEUED\r\n").await;
    a.expect("EXEC", b"*-1\r\n").await;
    a.expect("GET w", b"$6\r\nfrom-b\r\n").await;
    a.expect("EXISTS count", b":0\r\n").await;
}
