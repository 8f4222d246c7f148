//! While a script or a function keeps Redis busy, strata's clients see what
//! Redis's own clients see (issue 13, item 1).
//!
//! Each test replays the same byte exchange, from several clients, against
//! a plain redis-server and through strata (standalone, and in front of a
//! real 3+3 Redis Cluster), and asserts the same replies: the other clients
//! get Redis's `-BUSY …` for plain commands, for scripts of their own and
//! inside MULTI (EXEC then stays refused until the transaction is
//! discarded, as Redis keeps the client in MULTI); SCRIPT KILL and FUNCTION
//! KILL reach Redis at once; the killed script's client gets Redis's
//! "killed by user" error, not a strata timeout. `busy-reply-threshold` is
//! 100 ms so Redis turns busy at once. strata's request timeout is a minute
//! here, longer than any wait of the tests: a kill or a command stuck behind
//! the script on a shared connection would not be answered within the
//! tests' deadline. One test runs a script longer than a 2 s request
//! timeout, which must not cut it short (Redis never does).
//!
//! Waits are generous deadlines (`REPLY_WAIT`), never timing assertions.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::clients::{encode, show, RawConn};
use support::RedisServer;

/// Redis's busy threshold for these tests (`busy-reply-threshold`, ms).
const THRESHOLD: &str = "100";

/// A library whose function loops until killed.
const LIBRARY: &str =
    "#!lua name=busylib\nredis.register_function('spin', function() while true do end end)";

/// Where the clients of one replay connect, and the key they use (in
/// cluster mode, a key on the node that runs the script).
struct Target {
    addr: String,
    key: String,
}

/// A request timeout longer than every wait of these tests.
const LONG_TIMEOUT_MS: u64 = 60_000;

/// strata (standalone) in front of a redis-server with a small busy
/// threshold, with ONE multiplexed connection, so that every client's
/// plain commands share it (as they would with any count, for clients
/// whose ids map to the same connection).
async fn strata_standalone(request_timeout_ms: u64) -> (RedisServer, strata::app::Running) {
    let redis = RedisServer::start_with(&["--busy-reply-threshold", THRESHOLD]);
    let mut config = support::strata::test_config(&redis.addr());
    config.backend.connections = 1;
    config.backend.request_timeout_ms = request_timeout_ms;
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    (redis, running)
}

/// Sends `GET key` until Redis answers `-BUSY …` (the script started and
/// passed the threshold), and returns that reply.
async fn until_busy(conn: &mut RawConn, key: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = conn.call(&[b"GET", key.as_bytes()]).await;
        if reply.starts_with(b"-BUSY") {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "never busy; last reply {}",
            show(&reply)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The replies a replay collects, labelled, to compare target with target.
#[derive(Default)]
struct Transcript(Vec<String>);

impl Transcript {
    fn push(&mut self, what: &str, reply: &[u8]) {
        self.0.push(format!("{what} -> {}", show(reply)));
    }
}

/// `EVAL` (or `FCALL`, with `function`) of a loop from client A, then,
/// while it runs: client B's plain command, script and transaction, client
/// C's kill, A's reply, and what B's transaction and C's kill say after.
async fn busy_replay(t: &Target, function: bool) -> Transcript {
    let key = t.key.as_bytes();
    let mut out = Transcript::default();
    let mut a = RawConn::connect(&t.addr).await;
    let mut b = RawConn::connect(&t.addr).await;
    let mut c = RawConn::connect(&t.addr).await;
    if function {
        let loaded = c
            .call(&[b"FUNCTION", b"LOAD", b"REPLACE", LIBRARY.as_bytes()])
            .await;
        out.push("FUNCTION LOAD", &loaded);
        a.send(&encode(&[b"FCALL", b"spin", b"1", key])).await;
    } else {
        a.send(&encode(&[b"EVAL", b"while true do end", b"1", key]))
            .await;
    }
    out.push("B: GET (busy)", &until_busy(&mut b, &t.key).await);
    if function {
        let r = b.call(&[b"FCALL", b"spin", b"1", key]).await;
        out.push("B: FCALL", &r);
        // FUNCTION STATS is served while busy (allow-busy): it names the
        // running function.
        let stats = b.call(&[b"FUNCTION", b"STATS"]).await;
        out.push("B: FUNCTION STATS is an array", &stats[..1]);
    } else {
        let r = b.call(&[b"EVAL", b"return 1", b"1", key]).await;
        out.push("B: EVAL", &r);
    }
    out.push("B: MULTI", &b.call(&[b"MULTI"]).await);
    out.push("B: SET", &b.call(&[b"SET", key, b"v"]).await);
    out.push("B: EXEC", &b.call(&[b"EXEC"]).await);
    let kill: &[&[u8]] = if function {
        &[b"FUNCTION", b"KILL"]
    } else {
        &[b"SCRIPT", b"KILL"]
    };
    out.push("C: kill", &c.call(kill).await);
    out.push("A: killed script's reply", &a.read_frame().await);
    // Redis kept B in MULTI, its transaction flagged by the refused SET.
    out.push("B: EXEC again", &b.call(&[b"EXEC"]).await);
    out.push("B: GET", &b.call(&[b"GET", key]).await);
    out.push("C: kill again", &c.call(kill).await);
    out.push("A: PING", &a.call(&[b"PING"]).await);
    out
}

fn assert_same(redis: &Transcript, strata: &Transcript) {
    let (r, s) = (redis.0.join("\n"), strata.0.join("\n"));
    assert_eq!(s, r, "\n--- strata ---\n{s}\n--- redis ---\n{r}\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_kill_while_busy_matches_redis() {
    let reference = RedisServer::start_with(&["--busy-reply-threshold", THRESHOLD]);
    let (_redis, strata) = strata_standalone(LONG_TIMEOUT_MS).await;
    let key = "busy:k".to_string();
    let want = busy_replay(
        &Target {
            addr: reference.addr(),
            key: key.clone(),
        },
        false,
    )
    .await;
    let got = busy_replay(
        &Target {
            addr: strata.addr.to_string(),
            key,
        },
        false,
    )
    .await;
    assert_same(&want, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_kill_while_busy_matches_redis() {
    let reference = RedisServer::start_with(&["--busy-reply-threshold", THRESHOLD]);
    let (_redis, strata) = strata_standalone(LONG_TIMEOUT_MS).await;
    let key = "busy:f".to_string();
    let want = busy_replay(
        &Target {
            addr: reference.addr(),
            key: key.clone(),
        },
        true,
    )
    .await;
    let got = busy_replay(
        &Target {
            addr: strata.addr.to_string(),
            key,
        },
        true,
    )
    .await;
    assert_same(&want, &got);
}

/// A script longer than strata's request timeout (2 s in tests) is not cut
/// short: its client gets the script's own reply, as from Redis directly,
/// and a pipelined script behind it on the same client follows in order;
/// the same for EXEC of a transaction that queued such a script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_longer_than_the_request_timeout_gets_its_reply() {
    let (_redis, strata) = strata_standalone(2_000).await;
    let mut a = RawConn::connect(&strata.addr.to_string()).await;
    // Busy for 3 s of Redis's own clock, then answers.
    let slow = b"local t = redis.call('TIME') local until_s = t[1] + 3 \
                 while tonumber(redis.call('TIME')[1]) < until_s do end return 'done'";
    let mut pipeline = encode(&[b"EVAL", slow, b"0"]);
    pipeline.extend_from_slice(&encode(&[b"EVAL", b"return 2", b"0"]));
    pipeline.extend_from_slice(&encode(&[b"GET", b"after"]));
    // Inside a transaction too: EXEC runs as long as its script.
    pipeline.extend_from_slice(&encode(&[b"MULTI"]));
    pipeline.extend_from_slice(&encode(&[b"EVAL", slow, b"0"]));
    pipeline.extend_from_slice(&encode(&[b"EXEC"]));
    a.send(&pipeline).await;
    for want in [
        &b"$4\r\ndone\r\n"[..],
        b":2\r\n",
        b"$-1\r\n",
        b"+OK\r\n",
        b"+QUEUED\r\n",
        b"*1\r\n$4\r\ndone\r\n",
    ] {
        let got = a.read_frame().await;
        assert_eq!(show(&got), show(want));
    }
}

/// Cluster mode: the script runs on its key's node; the other clients'
/// commands for that node get Redis's BUSY; SCRIPT KILL and FUNCTION KILL
/// go to every primary and answer OK because one node killed a script,
/// then NOTBUSY when none is busy, as one Redis Cluster node owning every
/// slot would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_kill_while_busy_matches_redis() {
    use support::cluster_strata::{blocking, config, config_set_all, reset, start_with, Placement};
    // The reference: one redis-server in cluster mode owning every slot.
    let reference = support::redis_server::one_node_cluster();
    let mut admin = RawConn::connect(&reference.addr()).await;
    admin
        .expect(
            &format!("CONFIG SET busy-reply-threshold {THRESHOLD}"),
            b"+OK\r\n",
        )
        .await;
    let c = support::cluster::shared().await;
    blocking(|| config_set_all(&c, "busy-reply-threshold", THRESHOLD));
    blocking(|| reset(&c));
    let mut cfg = config(&c, strata::config::ReadFrom::Primary);
    cfg.backend.request_timeout_ms = LONG_TIMEOUT_MS;
    let strata = start_with(cfg).await;
    let place = Placement::of(&c);
    let primaries = place.primaries();
    let key = place.key_on(&primaries[1], "busy:");
    for function in [false, true] {
        let want = busy_replay(
            &Target {
                addr: reference.addr(),
                key: key.clone(),
            },
            function,
        )
        .await;
        let got = busy_replay(
            &Target {
                addr: strata.addr.to_string(),
                key: key.clone(),
            },
            function,
        )
        .await;
        assert_same(&want, &got);
    }
    blocking(|| config_set_all(&c, "busy-reply-threshold", "5000"));
}

/// Cluster mode: a script whose slot moves (MOVED, then ASK during a
/// migration) on its own connection is followed as on the shared path: the
/// client gets the script's result, never a redirect, since it sees strata
/// as one node owning every slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_script_redirects_are_followed() {
    use strata::command::slot::hash_slot;
    use support::cluster_strata::{blocking, fresh};
    let c = support::cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let prims = place.primaries();
    let (from, to) = (prims[0].clone(), prims[1].clone());
    let t = place.tag_on(&from, "scriptmv");
    let slot = hash_slot(t.as_bytes());
    let (k1, k2) = (format!("{t}a"), format!("{t}b"));
    let get = b"return redis.call('GET', KEYS[1])";
    let mut a = RawConn::connect(&strata.addr.to_string()).await;
    for k in [&k1, &k2] {
        let set = a.call(&[b"SET", k.as_bytes(), b"v"]).await;
        assert_eq!(show(&set), "+OK\\r\\n");
    }
    let read = |key: &str| encode(&[b"EVAL", get, b"1", key.as_bytes()]);

    // MOVED: the slot moved straight on the cluster; strata's map is old.
    blocking(|| c.migrate_slot(slot, &to));
    a.send(&read(&k1)).await;
    assert_eq!(show(&a.read_frame().await), "$1\\r\\nv\\r\\n");

    // ASK: the slot is migrating back and k2 already moved.
    blocking(|| {
        c.begin_migration(slot, &to, &from);
        c.migrate_keys(&to, &from, &[&k2]);
    });
    let mut pipeline = read(&k2);
    pipeline.extend_from_slice(&read(&k1));
    a.send(&pipeline).await;
    assert_eq!(show(&a.read_frame().await), "$1\\r\\nv\\r\\n");
    assert_eq!(show(&a.read_frame().await), "$1\\r\\nv\\r\\n");
    blocking(|| {
        c.migrate_all_keys(slot, &to, &from);
        c.finish_migration(slot, &to, &from);
    });
    assert_eq!(c.primary_for_slot(slot), from);
}

/// SHUTDOWN NOSAVE, the other command Redis serves while busy, reaches it
/// at once through strata: Redis exits (its port refuses connections)
/// while the script still runs, as it would for a direct client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_nosave_reaches_a_busy_redis() {
    let (redis, strata) = strata_standalone(LONG_TIMEOUT_MS).await;
    let addr = strata.addr.to_string();
    let mut a = RawConn::connect(&addr).await;
    let mut b = RawConn::connect(&addr).await;
    a.send(&encode(&[b"EVAL", b"while true do end", b"0"]))
        .await;
    until_busy(&mut b, "busy:s").await;
    b.send(&encode(&[b"SHUTDOWN", b"NOSAVE"])).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(redis.addr()).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "redis-server still runs after SHUTDOWN NOSAVE through strata"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The script's client hears that the backend went away, at once.
    let reply = a.read_frame_within(Duration::from_secs(10)).await;
    assert!(
        reply
            .as_deref()
            .is_none_or(|r| r.starts_with(b"-ERR backend")),
        "{:?}",
        reply.map(|r| show(&r))
    );
}

/// While the dedicated pool has no connection to spare, a script call
/// takes the shared connection, as before scripts had their own, rather
/// than wait for the pool and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_takes_the_shared_connection_when_the_pool_is_exhausted() {
    let redis = RedisServer::start();
    let mut config = support::strata::test_config(&redis.addr());
    config.backend.dedicated_pool_size = 1;
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    let addr = running.addr.to_string();
    let mut a = RawConn::connect(&addr).await;
    let mut b = RawConn::connect(&addr).await;
    // A holds the pool's only connection for a second.
    let slow = b"local t = redis.call('TIME') local until_s = t[1] + 1 \
                 while tonumber(redis.call('TIME')[1]) < until_s do end return 'done'";
    a.send(&encode(&[b"EVAL", slow, b"0"])).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let got = b.call(&[b"EVAL", b"return 1", b"0"]).await;
    assert_eq!(show(&got), show(b":1\r\n"));
    assert_eq!(show(&a.read_frame().await), show(b"$4\r\ndone\r\n"));
}

/// A RESP3 client's scripts are answered in RESP3, and the connection
/// they ran on goes back to the pool speaking RESP2 again: a RESP2
/// client's script after it is answered in RESP2, as from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_connections_keep_each_clients_protocol() {
    async fn replay(addr: &str) -> Transcript {
        let mut out = Transcript::default();
        let script: &[u8] = b"return {double=1.5}";
        let mut c3 = RawConn::connect(addr).await;
        let _ = c3.call(&[b"HELLO", b"3"]).await;
        out.push("RESP3 EVAL", &c3.call(&[b"EVAL", script, b"0"]).await);
        out.push("RESP3 QUIT", &c3.call(&[b"QUIT"]).await);
        c3.expect_closed().await;
        // Give the connection time to go back to the pool (not asserted).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut c2 = RawConn::connect(addr).await;
        out.push("RESP2 EVAL", &c2.call(&[b"EVAL", script, b"0"]).await);
        out.push("RESP2 EVAL", &c2.call(&[b"EVAL", script, b"0"]).await);
        out
    }
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let mut config = support::strata::test_config(&redis.addr());
    config.backend.dedicated_pool_size = 1;
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    let want = replay(&reference.addr()).await;
    let got = replay(&running.addr.to_string()).await;
    assert_same(&want, &got);
}

/// `server.scripts_on_own_connection = false` sends scripts on the shared
/// connection, as strata did before: with one multiplexed connection,
/// another client's command waits behind a script that turns Redis busy
/// and is answered when it ends, instead of getting `-BUSY` (the option's
/// documented cost). The script ends by itself after ~300 ms of TIME.
#[tokio::test]
async fn scripts_on_the_shared_connection_when_the_option_is_off() {
    let redis = RedisServer::start_with(&["--busy-reply-threshold", THRESHOLD]);
    let mut config = support::strata::test_config(&redis.addr());
    config.backend.connections = 1;
    config.backend.request_timeout_ms = LONG_TIMEOUT_MS;
    config.server.scripts_on_own_connection = false;
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    let addr = running.addr.to_string();
    let mut a = RawConn::connect(&addr).await;
    let mut b = RawConn::connect(&addr).await;
    let script = b"local t = redis.call('TIME') \
        local start = t[1] * 1000000 + t[2] \
        while true do \
          local n = redis.call('TIME') \
          if n[1] * 1000000 + n[2] - start > 300000 then return 'done' end \
        end";
    a.send(&encode(&[b"EVAL", script, b"0"])).await;
    // Give the script time to start and pass the busy threshold: on the
    // shared connection, B's GET is queued behind it either way.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let reply = b.call(&[b"GET", b"k"]).await;
    assert_eq!(show(&reply), show(b"$-1\r\n"), "B waited behind the script");
    assert_eq!(show(&a.read_frame().await), show(b"$4\r\ndone\r\n"));
}
