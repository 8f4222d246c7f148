//! Blocking commands through strata: each blocked client holds a dedicated
//! backend connection while everyone else keeps using the shared ones.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::cmd;
use support::clients::{show, Env};

/// The backend's `blocked_clients`.
async fn blocked(env: &Env) -> usize {
    let mut con = env.backend_con().await;
    let info: String = cmd("INFO")
        .arg("clients")
        .query_async(&mut con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits until the backend's blocked-client count satisfies `ok`.
async fn wait_blocked_until(env: &Env, what: &str, ok: impl Fn(usize) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = blocked(env).await;
        if ok(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} clients blocked; wanted {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the backend reports at least `n` blocked clients.
async fn wait_blocked(env: &Env, n: usize) {
    wait_blocked_until(env, &format!("at least {n}"), |b| b >= n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blpop_consumers_and_pushers_every_item_once() {
    const CONSUMERS: usize = 20;
    const PUSHERS: usize = 5;
    const PER_CONSUMER: usize = 5;
    const PER_PUSHER: usize = CONSUMERS * PER_CONSUMER / PUSHERS;
    let env = Env::start().await;
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let mut con = env.con().await;
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..PER_CONSUMER {
                let (key, item): (String, String) = cmd("BLPOP")
                    .arg("q")
                    .arg(0)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                assert_eq!(key, "q");
                got.push(item);
            }
            // Back on the shared connection afterwards.
            let pong: String = cmd("PING").query_async(&mut con).await.unwrap();
            assert_eq!(pong, "PONG");
            got
        }));
    }
    wait_blocked(&env, CONSUMERS).await;

    // Liveness: with 20 clients blocked, another client is served at once.
    let mut other = env.con().await;
    let started = Instant::now();
    let _: () = cmd("SET")
        .arg("live")
        .arg("yes")
        .query_async(&mut other)
        .await
        .unwrap();
    let v: String = cmd("GET")
        .arg("live")
        .query_async(&mut other)
        .await
        .unwrap();
    assert_eq!(v, "yes");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "GET took {:?} while clients were blocked",
        started.elapsed()
    );

    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let mut con = env.con().await;
        pushers.push(tokio::spawn(async move {
            for i in 0..PER_PUSHER {
                let _: i64 = cmd("RPUSH")
                    .arg("q")
                    .arg(format!("p{p}-{i}"))
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
        }));
    }
    for p in pushers {
        p.await.unwrap();
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for c in consumers {
        let got = tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("consumers finish")
            .unwrap();
        assert_eq!(got.len(), PER_CONSUMER);
        for item in got {
            *seen.entry(item).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, usize> = (0..PUSHERS)
        .flat_map(|p| (0..PER_PUSHER).map(move |i| (format!("p{p}-{i}"), 1)))
        .collect();
    assert_eq!(seen, expected, "every item popped exactly once");
    let left: i64 = cmd("LLEN").arg("q").query_async(&mut other).await.unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: a RESP2 null array (*-1) from the backend is rejected as
// 'malformed reply' (protocol/reply.rs frame_len); the client gets an error and is disconnected
async fn blocking_timeouts_return_nil() {
    let env = Env::start().await;
    let mut con = env.con().await;
    let started = Instant::now();
    let r: Option<(String, String)> = cmd("BLPOP")
        .arg("empty")
        .arg(0.2)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(r, None);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let r: Option<(String, String)> = cmd("BRPOP")
        .arg("empty")
        .arg(0.1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(r, None);
    let r: Option<String> = cmd("BLMOVE")
        .arg("empty")
        .arg("dst")
        .arg("LEFT")
        .arg("RIGHT")
        .arg(0.1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(r, None);
    let r: Option<Vec<String>> = cmd("XREAD")
        .arg("BLOCK")
        .arg(100)
        .arg("STREAMS")
        .arg("nostream")
        .arg("$")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(r, None);
    // The connection is still usable afterwards.
    let _: () = cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let v: String = cmd("GET").arg("k").query_async(&mut con).await.unwrap();
    assert_eq!(v, "v");
    // The same in raw bytes.
    let mut raw = env.raw().await;
    raw.expect("BLPOP empty 0.1", b"*-1\r\n").await;
    raw.expect("GET k", b"$1\r\nv\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_pop_with_data_ready_returns_at_once() {
    let env = Env::start().await;
    let mut raw = env.raw().await;
    raw.expect("RPUSH l a b c", b":3\r\n").await;
    raw.expect("BLPOP l 0", b"*2\r\n$1\r\nl\r\n$1\r\na\r\n")
        .await;
    raw.expect("BRPOP l 0", b"*2\r\n$1\r\nl\r\n$1\r\nc\r\n")
        .await;
    raw.expect("BLMOVE l l2 LEFT RIGHT 0", b"$1\r\nb\r\n").await;
    raw.expect("ZADD z 2 two 1 one", b":2\r\n").await;
    raw.expect("BZPOPMIN z 0", b"*3\r\n$1\r\nz\r\n$3\r\none\r\n$1\r\n1\r\n")
        .await;
    raw.expect("BZPOPMAX z 0", b"*3\r\n$1\r\nz\r\n$3\r\ntwo\r\n$1\r\n2\r\n")
        .await;
    raw.expect("XADD s 1-1 f v", b"$3\r\n1-1\r\n").await;
    raw.expect(
        "XREAD BLOCK 0 STREAMS s 0",
        b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    )
    .await;
    raw.expect("LRANGE l2 0 -1", b"*1\r\n$1\r\nb\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_commands_are_woken_by_other_clients() {
    let env = Env::start().await;
    let mut pusher = env.con().await;

    // BRPOP
    let mut a = env.raw().await;
    a.send(&support::clients::encode_line("BRPOP br 5")).await;
    wait_blocked(&env, 1).await;
    let _: i64 = cmd("RPUSH")
        .arg("br")
        .arg("x")
        .arg("y")
        .query_async(&mut pusher)
        .await
        .unwrap();
    let got = a.read_frame().await;
    assert_eq!(show(&got), show(b"*2\r\n$2\r\nbr\r\n$1\r\ny\r\n"));
    a.expect("LRANGE br 0 -1", b"*1\r\n$1\r\nx\r\n").await;

    // BLMOVE
    a.send(&support::clients::encode_line(
        "BLMOVE src dst LEFT RIGHT 5",
    ))
    .await;
    wait_blocked(&env, 1).await;
    let _: i64 = cmd("RPUSH")
        .arg("src")
        .arg("moved")
        .query_async(&mut pusher)
        .await
        .unwrap();
    assert_eq!(show(&a.read_frame().await), show(b"$5\r\nmoved\r\n"));
    let dst: Vec<String> = cmd("LRANGE")
        .arg("dst")
        .arg(0)
        .arg(-1)
        .query_async(&mut pusher)
        .await
        .unwrap();
    assert_eq!(dst, ["moved"]);

    // BZPOPMIN
    a.send(&support::clients::encode_line("BZPOPMIN bz 5"))
        .await;
    wait_blocked(&env, 1).await;
    let _: i64 = cmd("ZADD")
        .arg("bz")
        .arg(1.5)
        .arg("m")
        .query_async(&mut pusher)
        .await
        .unwrap();
    assert_eq!(
        show(&a.read_frame().await),
        show(b"*3\r\n$2\r\nbz\r\n$1\r\nm\r\n$3\r\n1.5\r\n")
    );

    // XREAD BLOCK woken by XADD.
    a.send(&support::clients::encode_line(
        "XREAD BLOCK 5000 STREAMS st $",
    ))
    .await;
    wait_blocked(&env, 1).await;
    let _: String = cmd("XADD")
        .arg("st")
        .arg("7-1")
        .arg("f")
        .arg("v")
        .query_async(&mut pusher)
        .await
        .unwrap();
    assert_eq!(
        show(&a.read_frame().await),
        show(b"*1\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n7-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n")
    );

    // XREADGROUP BLOCK woken by XADD.
    let _: String = cmd("XGROUP")
        .arg("CREATE")
        .arg("st")
        .arg("g")
        .arg("$")
        .query_async(&mut pusher)
        .await
        .unwrap();
    a.send(&support::clients::encode_line(
        "XREADGROUP GROUP g c BLOCK 5000 STREAMS st >",
    ))
    .await;
    wait_blocked(&env, 1).await;
    let _: String = cmd("XADD")
        .arg("st")
        .arg("8-1")
        .arg("f")
        .arg("w")
        .query_async(&mut pusher)
        .await
        .unwrap();
    assert_eq!(
        show(&a.read_frame().await),
        show(b"*1\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n8-1\r\n*2\r\n$1\r\nf\r\n$1\r\nw\r\n")
    );

    // The same client is back to ordinary commands, and nothing stray arrives.
    a.expect("SET after 1", b"+OK\r\n").await;
    a.expect("GET after", b"$1\r\n1\r\n").await;
    a.expect_silence(Duration::from_millis(100)).await;

    // redis-rs: BLPOP woken by a push.
    let mut con = env.con().await;
    let waiter = tokio::spawn(async move {
        let r: (String, String) = cmd("BLPOP")
            .arg("rs")
            .arg(5)
            .query_async(&mut con)
            .await
            .unwrap();
        r
    });
    wait_blocked(&env, 1).await;
    let _: i64 = cmd("LPUSH")
        .arg("rs")
        .arg("item")
        .query_async(&mut pusher)
        .await
        .unwrap();
    assert_eq!(
        waiter.await.unwrap(),
        ("rs".to_string(), "item".to_string())
    );
}

/// A client that leaves while blocked (it hangs up, or CLIENT KILL closes
/// it) takes its blocked backend connection with it: Redis unblocks it, and
/// an element pushed afterwards stays in the list instead of being popped
/// for nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_client_that_leaves_pops_nothing() {
    let env = Env::start().await;
    let mut direct = env.raw_backend().await;

    // Hangs up.
    let mut gone = env.raw().await;
    gone.send(&support::clients::encode_line("BLPOP left-behind 0"))
        .await;
    wait_blocked(&env, 1).await;
    drop(gone);
    wait_blocked_until(&env, "0 after the client hung up", |b| b == 0).await;
    direct.expect("RPUSH left-behind a", b":1\r\n").await;
    direct.expect("LLEN left-behind", b":1\r\n").await;

    // Killed.
    let mut killed = env.raw().await;
    let id = killed.cmd("CLIENT ID").await;
    let id = String::from_utf8(id).unwrap();
    let id = id.trim_start_matches(':').trim();
    killed
        .send(&support::clients::encode_line("BLPOP left-behind-2 0"))
        .await;
    wait_blocked(&env, 1).await;
    let mut admin = env.raw().await;
    admin
        .expect(&format!("CLIENT KILL ID {id}"), b":1\r\n")
        .await;
    killed.expect_closed().await;
    wait_blocked_until(&env, "0 after CLIENT KILL", |b| b == 0).await;
    direct.expect("RPUSH left-behind-2 a", b":1\r\n").await;
    direct.expect("LLEN left-behind-2", b":1\r\n").await;

    // strata still serves blocking commands afterwards.
    direct.expect("RPUSH ready x", b":1\r\n").await;
    admin
        .expect("BLPOP ready 0", b"*2\r\n$5\r\nready\r\n$1\r\nx\r\n")
        .await;
}

/// A client that pipelines more commands behind a blocking one and then
/// hangs up is noticed while the blocking command waits (strata goes on
/// reading it): the wait ends, and an element pushed afterwards stays in
/// the list, as with Redis. The commands behind the blocking one never
/// run, as with Redis, which frees a blocked client that hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_client_with_commands_behind_it_that_leaves_pops_nothing() {
    let env = Env::start().await;
    let mut direct = env.raw_backend().await;
    for (n, behind) in ["PING", "SET ran-behind 1", "BLPOP other 0"]
        .into_iter()
        .enumerate()
    {
        let list = format!("left-behind-pipelined-{n}");
        let mut gone = env.raw().await;
        let mut pipeline = support::clients::encode_line(&format!("BLPOP {list} 0"));
        pipeline.extend(support::clients::encode_line(behind));
        gone.send(&pipeline).await;
        wait_blocked(&env, 1).await;
        drop(gone);
        wait_blocked_until(&env, "0 after the client hung up", |b| b == 0).await;
        direct.expect(&format!("RPUSH {list} a"), b":1\r\n").await;
        direct.expect(&format!("LLEN {list}"), b":1\r\n").await;
        direct.expect("EXISTS ran-behind", b":0\r\n").await;
    }
    // strata still serves blocking commands afterwards.
    let mut client = env.raw().await;
    direct.expect("RPUSH ready x", b":1\r\n").await;
    client
        .expect("BLPOP ready 0", b"*2\r\n$5\r\nready\r\n$1\r\nx\r\n")
        .await;
}

/// CLIENT UNBLOCK with strata's client id unblocks that client's BLPOP, as
/// a timeout (a null reply) or an error, and the client goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_unblock_ends_a_blocking_wait() {
    let env = Env::start().await;
    let mut blocked_client = env.raw().await;
    let id = String::from_utf8(blocked_client.cmd("CLIENT ID").await).unwrap();
    let id = id.trim_start_matches(':').trim().to_string();
    let mut admin = env.raw().await;
    admin
        .expect(&format!("CLIENT UNBLOCK {id}"), b":0\r\n")
        .await;

    blocked_client
        .send(&support::clients::encode_line("BLPOP never-pushed 0"))
        .await;
    wait_blocked(&env, 1).await;
    admin
        .expect(&format!("CLIENT UNBLOCK {id}"), b":1\r\n")
        .await;
    assert_eq!(show(&blocked_client.read_frame().await), "*-1\\r\\n");
    blocked_client.expect("PING", b"+PONG\r\n").await;

    blocked_client
        .send(&support::clients::encode_line("BRPOP never-pushed 0"))
        .await;
    wait_blocked(&env, 1).await;
    admin
        .expect(&format!("CLIENT UNBLOCK {id} ERROR"), b":1\r\n")
        .await;
    assert_eq!(
        show(&blocked_client.read_frame().await),
        "-UNBLOCKED client unblocked via CLIENT UNBLOCK\\r\\n"
    );
    wait_blocked_until(&env, "0 after CLIENT UNBLOCK", |b| b == 0).await;
    admin
        .expect(&format!("CLIENT UNBLOCK {id}"), b":0\r\n")
        .await;
    blocked_client.expect("PING", b"+PONG\r\n").await;
}

/// A pipeline that goes from the shared connection to a dedicated one and
/// back runs in the client's order: Redis orders commands per connection
/// only, so strata waits for the earlier ones' replies at each switch.
// Regression guard; before this change: a BLPOP written on its dedicated
// connection overtook the LMPOP still on its way on the shared one, and a
// LRANGE after BLMOVE ran before it (and saw an empty list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_across_dedicated_and_shared_connections_keep_their_order() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    for _round in 0..10 {
        c.expect("DEL l l2 src dst n", b":0\r\n").await;
        c.expect("RPUSH l a b", b":2\r\n").await;
        c.pipeline(
            b"LMOVE l l2 LEFT RIGHT\r\nLMPOP 2 l l2 LEFT COUNT 5\r\nBLPOP l l2 1\r\n",
            &[
                b"$1\r\na\r\n",
                b"*2\r\n$1\r\nl\r\n*1\r\n$1\r\nb\r\n",
                b"*2\r\n$2\r\nl2\r\n$1\r\na\r\n",
            ],
        )
        .await;
        c.expect("RPUSH src z", b":1\r\n").await;
        c.pipeline(
            b"BLMOVE src dst RIGHT LEFT 1\r\nLRANGE dst 0 -1\r\nLLEN src\r\n",
            &[b"$1\r\nz\r\n", b"*1\r\n$1\r\nz\r\n", b":0\r\n"],
        )
        .await;
        c.pipeline(
            b"INCR n\r\nBLPOP none 0.01\r\nINCR n\r\nMULTI\r\nINCR n\r\nEXEC\r\nINCR n\r\nGET n\r\n",
            &[
                b":1\r\n",
                b"*-1\r\n",
                b":2\r\n",
                b"+OK\r\n",
                b"+QUEUED\r\n",
                b"*1\r\n:3\r\n",
                b":4\r\n",
                b"$1\r\n4\r\n",
            ],
        )
        .await;
        c.expect("DEL l l2 src dst n", b":2\r\n").await;
    }
}
