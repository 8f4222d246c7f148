//! CLIENT TRACKING … REDIRECT <id> through strata, where `<id>` is the id
//! the redirect client got from strata's CLIENT ID: each exchange is
//! replayed byte for byte against a plain redis-server and through strata,
//! and the replies must be the same (ids read as `<rid>`).
//!
//! Redis sends a redirected invalidation as a `__redis__:invalidate`
//! message to a RESP2 target that is subscribed (to anything), as a push
//! to a RESP3 target, and tells a RESP3 tracking client
//! `tracking-redir-broken` once the target is gone (tracking.c
//! `sendTrackingMessage`).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::clients::{encode_line, show, Env, RawConn};
use support::RedisServer;

/// The three clients of an exchange.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    /// The tracking client.
    T,
    /// The redirect target.
    R,
    /// Another client, writing keys.
    W,
}

use Who::{R, T, W};

/// One step of an exchange.
enum Step {
    /// Send a command (`{rid}` is the target's id) and read its reply.
    Call(Who, &'static str),
    /// Like `Call`, where the reply may name the target's id.
    CallIds(Who, &'static str),
    /// Like `Call`, where the reply differs by server (HELLO's map).
    CallMasked(Who, &'static str),
    /// Read one frame that comes unasked (may name the target's id).
    Read(Who),
    /// The target asks CLIENT ID; later steps use it as `{rid}`.
    LearnRid,
    /// The target hangs up; wait until the server has let it go.
    TargetLeaves,
    /// Send a command whose reply comes later (a blocking one).
    Send(Who, &'static str),
    /// Wait until the server has a client blocked.
    WaitBlocked,
}

use Step::{Call, CallIds, CallMasked, LearnRid, Read, Send, TargetLeaves, WaitBlocked};

/// Where an exchange runs.
enum Server<'a> {
    Redis(&'a RedisServer),
    Strata(&'a Env),
}

impl Server<'_> {
    fn addr(&self) -> String {
        match self {
            Server::Redis(r) => r.addr(),
            Server::Strata(env) => env.addr().to_string(),
        }
    }

    /// Waits until the server no longer knows the redirect target: Redis
    /// drops the client; strata closes the listener it opened for it.
    async fn wait_target_gone(&self, rid: &str) {
        let (addr, line) = match self {
            Server::Redis(r) => (r.addr(), format!("CLIENT LIST ID {rid}")),
            Server::Strata(env) => (env.redis.addr(), "CLIENT LIST TYPE pubsub".to_string()),
        };
        wait_until_empty(&addr, &line).await;
    }
}

/// Polls `line` on `addr` until it lists no client (generous deadline).
async fn wait_until_empty(addr: &str, line: &str) {
    let mut c = RawConn::connect(addr).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = c.cmd(line).await;
        if got == b"$0\r\n\r\n" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{line} still lists: {}",
            show(&got)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls INFO (the backend's, through strata) until a client is blocked.
async fn wait_blocked(addr: &str) {
    let mut c = RawConn::connect(addr).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = c.cmd("INFO clients").await;
        if show(&got).contains("blocked_clients:1") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nobody blocked: {}",
            show(&got)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `steps` against `server`; returns what each step brought.
async fn replay(server: &Server<'_>, steps: &[Step]) -> Vec<String> {
    let addr = server.addr();
    let mut t = Some(RawConn::connect(&addr).await);
    let mut r = Some(RawConn::connect(&addr).await);
    let mut w = Some(RawConn::connect(&addr).await);
    let mut rid = String::new();
    let mut seen = Vec::new();
    for step in steps {
        let (who, line, ids) = match step {
            Call(who, line) => (*who, Some(*line), false),
            CallIds(who, line) | CallMasked(who, line) => (*who, Some(*line), true),
            Read(who) => (*who, None, true),
            LearnRid => {
                let got = r.as_mut().unwrap().cmd("CLIENT ID").await;
                rid = String::from_utf8_lossy(&got[1..got.len() - 2]).into_owned();
                continue;
            }
            TargetLeaves => {
                drop(r.take());
                server.wait_target_gone(&rid).await;
                continue;
            }
            Send(who, line) => {
                let c = match who {
                    T => t.as_mut(),
                    R => r.as_mut(),
                    W => w.as_mut(),
                };
                c.unwrap().send(&encode_line(line)).await;
                continue;
            }
            WaitBlocked => {
                wait_blocked(&addr).await;
                continue;
            }
        };
        let c = match who {
            T => t.as_mut(),
            R => r.as_mut(),
            W => w.as_mut(),
        }
        .unwrap();
        if let Some(line) = line {
            c.send(&encode_line(&line.replace("{rid}", &rid))).await;
        }
        let frame = c.read_frame().await;
        let text = if matches!(step, CallMasked(..)) {
            "<differs by server>".to_string()
        } else if ids && !rid.is_empty() {
            show(&frame).replace(&format!(":{rid}\\r\\n"), ":<rid>\\r\\n")
        } else {
            show(&frame)
        };
        seen.push(format!(
            "{who:?} {:?} -> {text}",
            line.unwrap_or("(unasked)")
        ));
    }
    seen
}

/// Replays `steps` on a plain redis-server and through strata; returns
/// strata's environment for checks of its own.
/// `expected` are pieces of what Redis itself must have sent, so the
/// exchange is known to cover what it says.
async fn compare(steps: &[Step], expected: &[&str]) -> Env {
    let reference = RedisServer::start();
    let env = Env::start().await;
    let want = replay(&Server::Redis(&reference), steps).await;
    for piece in expected {
        assert!(
            want.iter().any(|l| l.contains(piece)),
            "{piece} not in {want:#?}"
        );
    }
    let got = replay(&Server::Strata(&env), steps).await;
    assert_eq!(got, want);
    env
}

/// RESP2 target, subscribed, then switching to RESP3; the tracking client
/// switching to RESP3 and told when the target goes away.
// Before this change: Redis answered "-ERR The client ID you want
// redirect to does not exist" (strata forwarded its own id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_a_strata_client() {
    let steps = [
        LearnRid,
        Call(T, "CLIENT TRACKING ON REDIRECT {rid}"),
        Call(T, "GET a"),
        // The target is RESP2 and not subscribed: Redis sends it nothing.
        Call(W, "SET a 1"),
        Call(R, "SUBSCRIBE __redis__:invalidate"),
        Call(T, "GET b"),
        Call(W, "SET b 1"),
        Read(R),
        // Subscribed to any channel is enough.
        Call(R, "UNSUBSCRIBE"),
        Call(R, "SUBSCRIBE other"),
        Call(T, "GET c"),
        Call(W, "SET c 1"),
        Read(R),
        CallIds(T, "CLIENT GETREDIR"),
        CallIds(T, "CLIENT TRACKINGINFO"),
        // The target switches to RESP3: pushes from now on.
        Call(R, "UNSUBSCRIBE"),
        CallMasked(R, "HELLO 3"),
        Call(T, "GET d"),
        Call(W, "SET d 1"),
        Read(R),
        // FLUSHALL invalidates everything: a null.
        Call(W, "FLUSHALL"),
        Read(R),
        // The tracking client switches to RESP3 too.
        CallMasked(T, "HELLO 3"),
        CallIds(T, "CLIENT TRACKINGINFO"),
        Call(T, "GET e"),
        TargetLeaves,
        Call(W, "SET e 1"),
        Read(T),
        CallIds(T, "CLIENT TRACKINGINFO"),
        CallIds(T, "CLIENT GETREDIR"),
        Call(T, "GET e"),
        Call(W, "SET e 2"),
        Read(T),
        Call(T, "CLIENT TRACKING OFF"),
        Call(T, "CLIENT GETREDIR"),
        Call(T, "PING"),
    ];
    compare(
        &steps,
        &[
            r#"R "(unasked)" -> *3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nb\r\n"#,
            r#"R "(unasked)" -> >2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nd\r\n"#,
            r#"R "(unasked)" -> >2\r\n$10\r\ninvalidate\r\n$-1\r\n"#,
            r#"T "(unasked)" -> >2\r\n$21\r\ntracking-redir-broken\r\n:<rid>\r\n"#,
            r#"$8\r\nredirect\r\n:<rid>"#,
            "broken_redirect",
            r#"T "CLIENT GETREDIR" -> :<rid>\r\n"#,
        ],
    )
    .await;
}

/// OPTIN/OPTOUT with CLIENT CACHING, BCAST with PREFIX and NOLOOP, and
/// Redis's errors, with a RESP3 target that is not subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_options_and_errors() {
    let steps = [
        CallMasked(R, "HELLO 3"),
        LearnRid,
        Call(T, "CLIENT TRACKING ON REDIRECT {rid} OPTIN"),
        Call(T, "GET o1"),
        Call(T, "CLIENT CACHING yes"),
        Call(T, "GET o2"),
        Call(W, "SET o1 x"),
        Call(W, "SET o2 x"),
        Read(R),
        CallIds(T, "CLIENT TRACKINGINFO"),
        // Checked by Redis, after strata's own checks of the id.
        Call(T, "CLIENT TRACKING ON REDIRECT {rid} OPTOUT"),
        CallIds(T, "CLIENT GETREDIR"),
        Call(T, "CLIENT TRACKING OFF"),
        Call(T, "CLIENT TRACKING ON REDIRECT {rid} OPTOUT"),
        Call(T, "CLIENT CACHING no"),
        Call(T, "GET p1"),
        Call(T, "GET p2"),
        Call(W, "SET p1 x"),
        Call(W, "SET p2 x"),
        Read(R),
        Call(T, "CLIENT CACHING maybe"),
        Call(T, "CLIENT TRACKING OFF"),
        Call(T, "CLIENT TRACKING ON REDIRECT {rid} PREFIX b:"),
        Call(
            T,
            "CLIENT TRACKING ON REDIRECT {rid} BCAST PREFIX b: PREFIX c: NOLOOP",
        ),
        // NOLOOP: the tracking client's own write is not reported.
        Call(T, "SET b:1 x"),
        Call(W, "SET z x"),
        Call(W, "SET c:1 x"),
        Read(R),
        CallIds(T, "CLIENT TRACKINGINFO"),
        CallIds(T, "CLIENT GETREDIR"),
        // Redis's errors for the REDIRECT option, in Redis's order.
        Call(T, "CLIENT TRACKING ON REDIRECT 999999"),
        Call(T, "CLIENT TRACKING ON REDIRECT 0"),
        Call(T, "CLIENT TRACKING ON REDIRECT x"),
        Call(T, "CLIENT TRACKING ON REDIRECT {rid} REDIRECT {rid}"),
        Call(T, "CLIENT TRACKING ON FOO REDIRECT 999999"),
        Call(T, "CLIENT TRACKING ON REDIRECT 999999 FOO"),
        Call(T, "CLIENT TRACKING MAYBE REDIRECT {rid}"),
        Call(T, "CLIENT TRACKING OFF REDIRECT 999999"),
        Call(T, "CLIENT TRACKING OFF REDIRECT {rid}"),
        Call(T, "CLIENT CACHING yes"),
        Call(T, "CLIENT GETREDIR"),
        Call(T, "CLIENT TRACKINGINFO"),
    ];
    let env = compare(
        &steps,
        &[
            r#"R "(unasked)" -> >2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\no2\r\n"#,
            r#"R "(unasked)" -> >2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\np2\r\n"#,
            r#"R "(unasked)" -> >2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nc:1\r\n"#,
            "noloop",
            "-ERR The client ID you want redirect to does not exist",
        ],
    )
    .await;
    // Every listener strata opened is closed again.
    wait_until_empty(&env.redis.addr(), "CLIENT LIST TYPE pubsub").await;
}

/// A target that holds a dedicated connection, subscribed (RESP2), when a
/// redirect first names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_a_subscribed_target() {
    let steps = [
        LearnRid,
        Call(R, "SUBSCRIBE x"),
        Call(T, "CLIENT TRACKING ON REDIRECT {rid}"),
        Call(T, "GET k"),
        Call(W, "SET k 1"),
        Read(R),
    ];
    compare(
        &steps,
        &[r#"R "(unasked)" -> *3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n"#],
    )
    .await;
}

/// A target blocked in BLPOP (RESP3) when a redirect first names it:
/// Redis still sends it pushes while it is blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_a_blocked_target() {
    let steps = [
        CallMasked(R, "HELLO 3"),
        LearnRid,
        Send(R, "BLPOP q 0"),
        WaitBlocked,
        Call(T, "CLIENT TRACKING ON REDIRECT {rid}"),
        Call(T, "GET k2"),
        Call(W, "SET k2 1"),
        Read(R),
        Call(W, "LPUSH q v"),
        Read(R),
    ];
    compare(
        &steps,
        &[r#"R "(unasked)" -> >2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\nk2\r\n"#],
    )
    .await;
}

/// The tracking client leaving closes the listener it had opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_closes_with_its_tracking_client() {
    let env = Env::start().await;
    let mut target = env.raw().await;
    let mut tracking = env.raw().await;
    let rid = target.cmd("CLIENT ID").await;
    let rid = String::from_utf8_lossy(&rid[1..rid.len() - 2]).into_owned();
    tracking
        .expect(&format!("CLIENT TRACKING ON REDIRECT {rid}"), b"+OK\r\n")
        .await;
    // CLIENT INFO names the redirect as Redis does (`redir=<id>`).
    let me = tracking.cmd("CLIENT INFO").await;
    assert!(
        show(&me).contains(&format!(" redir={rid} ")),
        "{}",
        show(&me)
    );
    let mut direct = env.raw_backend().await;
    let listed = direct.cmd("CLIENT LIST TYPE pubsub").await;
    assert!(
        show(&listed).contains("sub=1"),
        "no listener: {}",
        show(&listed)
    );
    drop(tracking);
    wait_until_empty(&env.redis.addr(), "CLIENT LIST TYPE pubsub").await;
    target.expect("PING", b"+PONG\r\n").await;
}

/// A target that reads nothing while keys keep changing: strata keeps at
/// most `INBOX_FRAMES` invalidations for it, drops the rest, and sends one
/// "invalidate everything" (a null, as on FLUSHALL) once it reads again,
/// so its cache is still correct and strata's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_does_not_read_gets_a_flush_all() {
    let env = Env::start().await;
    let mut target = env.raw().await;
    let mut tracking = env.raw().await;
    let mut writer = env.raw().await;
    target.cmd("HELLO 3").await;
    let rid = target.cmd("CLIENT ID").await;
    let rid = String::from_utf8_lossy(&rid[1..rid.len() - 2]).into_owned();
    tracking
        .expect(
            &format!("CLIENT TRACKING ON REDIRECT {rid} BCAST"),
            b"+OK\r\n",
        )
        .await;
    // 3,000 invalidations of 10 KiB keys: more than the sockets hold.
    let keys = 3000;
    for i in 0..keys {
        let key = format!("{i:010}{}", "k".repeat(10 * 1024));
        let reply = writer.call(&[b"SET", key.as_bytes(), b"x"]).await;
        assert_eq!(show(&reply), "+OK\\r\\n");
    }
    let mut frames = 0;
    loop {
        let f = target.read_frame().await;
        frames += 1;
        if f == b">2\r\n$10\r\ninvalidate\r\n_\r\n" {
            break;
        }
        assert!(
            f.starts_with(b">2\r\n$10\r\ninvalidate\r\n*1\r\n"),
            "{}",
            show(&f)
        );
    }
    assert!(frames < keys, "{frames} frames: nothing was dropped");
    // Invalidations the listener had not yet read may follow; then PONG.
    target.send(&encode_line("PING")).await;
    loop {
        let f = target.read_frame().await;
        if f == b"+PONG\r\n" {
            break;
        }
        assert!(
            f.starts_with(b">2\r\n$10\r\ninvalidate\r\n"),
            "{}",
            show(&f)
        );
    }
}
