//! LOCK.* through strata against a real redis-server (and the 3+3
//! cluster): replies and errors as Redis would word them, COMMAND's
//! entries, WAIT's FIFO order and timeout, O(1) Redis commands per
//! release whatever the number of waiters, KEEPALIVE renewed while the
//! connection lives and released when it closes, and the lock-lost push.

mod support;

use std::time::{Duration, Instant};

use support::clients::{metric, metrics_text, show, Env, RawConn};

/// The integer of a `:n` reply.
fn int(frame: &[u8]) -> i64 {
    assert_eq!(
        frame.first(),
        Some(&b':'),
        "not an integer: {}",
        show(frame)
    );
    String::from_utf8_lossy(&frame[1..frame.len() - 2])
        .parse()
        .expect("integer")
}

async fn token(c: &mut RawConn, line: &str) -> i64 {
    int(&c.cmd(line).await)
}

/// The backend's INFO commandstats `calls=` of `command`.
async fn calls(backend: &mut RawConn, command: &str) -> u64 {
    let info = backend.cmd("INFO commandstats").await;
    let text = String::from_utf8_lossy(&info).into_owned();
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits (generously) until `n` waiters are queued in strata.
async fn waiters_queued(env: &Env, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics_text(env.http()).await;
        let now = metric(&text, "strata_coord_waiters{backend=\"redis\"}").unwrap_or(-1.0);
        if now == n {
            return;
        }
        assert!(Instant::now() < deadline, "{now} waiters queued, not {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn acquire_release_extend_info_and_their_errors() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    let t1 = token(&mut c, "LOCK.ACQUIRE orders 60000 OWNER me").await;
    assert!(t1 >= 1);
    // Held: nil without WAIT.
    c.expect("lock.acquire orders 60000", b"$-1\r\n").await;
    let info = c.cmd("LOCK.INFO orders").await;
    let text = show(&info);
    assert!(
        text.starts_with(&format!("*6\\r\\n$5\\r\\nowner\\r\\n$2\\r\\nme\\r\\n$5\\r\\ntoken\\r\\n:{t1}\\r\\n$6\\r\\nttl_ms\\r\\n:")),
        "{text}"
    );
    c.expect(&format!("LOCK.EXTEND orders {t1} 90000"), b"+OK\r\n")
        .await;
    // The token stays; a wrong one is refused.
    c.expect(
        &format!("LOCK.EXTEND orders {} 1000", t1 + 1),
        format!(
            "-ERR token {} was never issued for lock 'orders'\r\n",
            t1 + 1
        )
        .as_bytes(),
    )
    .await;
    c.expect(&format!("LOCK.RELEASE orders {t1}"), b"+OK\r\n")
        .await;
    c.expect(
        &format!("LOCK.RELEASE orders {t1}"),
        format!(
            "-LOCKLOST lock 'orders' is not held by token {t1}: it expired or was released\r\n"
        )
        .as_bytes(),
    )
    .await;
    let t2 = token(&mut c, "LOCK.ACQUIRE orders 60000").await;
    assert!(t2 > t1, "tokens increase: {t1} then {t2}");
    c.expect(
        &format!("LOCK.RELEASE orders {t1}"),
        format!("-LOCKLOST lock 'orders' is not held by token {t1}: another token holds it\r\n")
            .as_bytes(),
    )
    .await;
    c.expect("LOCK.INFO nobody", b"$-1\r\n").await;
    for (line, reply) in [
        ("LOCK.ACQUIRE x", "-ERR wrong number of arguments for 'lock.acquire' command\r\n"),
        ("lock.release x", "-ERR wrong number of arguments for 'lock.release' command\r\n"),
        ("LOCK.EXTEND x 1", "-ERR wrong number of arguments for 'lock.extend' command\r\n"),
        ("LOCK.INFO", "-ERR wrong number of arguments for 'lock.info' command\r\n"),
        ("LOCK.ACQUIRE x -5", "-ERR invalid expire time in 'lock.acquire' command\r\n"),
        ("LOCK.ACQUIRE x 0", "-ERR invalid expire time in 'lock.acquire' command\r\n"),
        ("LOCK.ACQUIRE x ten", "-ERR value is not an integer or out of range\r\n"),
        ("LOCK.ACQUIRE x 10 WAIT -1", "-ERR timeout is negative\r\n"),
        ("LOCK.ACQUIRE x 10 WAIT", "-ERR syntax error\r\n"),
        ("LOCK.ACQUIRE x 10 FOREVER", "-ERR syntax error\r\n"),
        ("LOCK.RELEASE x abc", "-ERR value is not an integer or out of range\r\n"),
        ("LOCK.RELEASE x 0", "-ERR value is out of range, must be positive\r\n"),
        ("LOCK.EXTEND x 1 -1", "-ERR invalid expire time in 'lock.extend' command\r\n"),
        (
            "LOCK.ACQUIRE a}b 10",
            "-ERR lock name 'a}b' has a '}' outside a hash tag: strata cannot keep its keys in one slot\r\n",
        ),
    ] {
        c.expect(line, reply.as_bytes()).await;
    }
    // Inside MULTI, refused as Redis refuses a no-multi command; EXEC aborts.
    c.expect("MULTI", b"+OK\r\n").await;
    c.expect(
        "LOCK.ACQUIRE y 1000",
        b"-ERR Command not allowed inside a transaction\r\n",
    )
    .await;
    c.expect(
        "EXEC",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    )
    .await;
    // A subscribed RESP2 client is refused, as Redis refuses it.
    let mut sub = env.raw().await;
    sub.cmd("SUBSCRIBE news").await;
    sub.expect(
        "LOCK.ACQUIRE z 1000",
        b"-ERR Can't execute 'lock.acquire': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    // The keys, in the name's slot (hash tag on the name).
    let mut b = env.raw_backend().await;
    assert_eq!(int(&b.cmd("EXISTS strata:lock:{orders}:").await), 1);
    assert_eq!(
        show(&b.cmd("GET strata:lock:{orders}:seq").await),
        show(format!("${}\r\n{t2}\r\n", t2.to_string().len()).as_bytes())
    );
}

#[tokio::test]
async fn command_lists_the_lock_commands_with_key_positions() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    let mut b = env.raw_backend().await;
    let theirs = int(&b.cmd("COMMAND COUNT").await);
    // Redis's, the lock commands, and strata's other own commands (PROXY).
    let ours =
        i64::try_from(strata::coord::registry::count() + strata::command::own::REGISTRY.len())
            .expect("a small count");
    assert!(strata::coord::registry::count() >= 4);
    assert_eq!(int(&c.cmd("COMMAND COUNT").await), theirs + ours);
    let all = c.cmd("COMMAND").await;
    assert!(show(&all).starts_with(&format!("*{}\\r\\n", theirs + ours)));
    for proto in ["2", "3"] {
        let mut c = env.raw().await;
        c.cmd(&format!("HELLO {proto}")).await;
        let info = show(
            &c.cmd("COMMAND INFO get lock.acquire nosuch lock.info")
                .await,
        );
        assert!(
            info.starts_with("*4\\r\\n*10\\r\\n$3\\r\\nget\\r\\n"),
            "{info}"
        );
        assert!(
            info.contains("$12\\r\\nlock.acquire\\r\\n:-3\\r\\n"),
            "{info}"
        );
        // First key, last key, step: the name at 1.
        assert!(
            info.contains("blocking\\r\\n:1\\r\\n:1\\r\\n:1\\r\\n"),
            "{info}"
        );
        let nil = if proto == "2" { "$-1\\r\\n" } else { "_\\r\\n" };
        assert!(info.contains(nil), "{info}");
        assert!(info.contains("$9\\r\\nlock.info\\r\\n:2\\r\\n"), "{info}");
        let docs = show(&c.cmd("COMMAND DOCS lock.acquire get").await);
        let head = if proto == "2" { "*4\\r\\n" } else { "%2\\r\\n" };
        assert!(docs.starts_with(head), "{docs}");
        assert!(docs.contains("$12\\r\\nlock.acquire\\r\\n"), "{docs}");
        assert!(docs.contains("$4\\r\\nWAIT\\r\\n"), "{docs}");
        assert!(docs.contains("$3\\r\\nget\\r\\n"), "{docs}");
        let only_ours = show(&c.cmd("COMMAND DOCS lock.release").await);
        let head = if proto == "2" { "*2\\r\\n" } else { "%1\\r\\n" };
        assert!(only_ours.starts_with(head), "{only_ours}");
    }
    c.expect(
        "COMMAND GETKEYS lock.acquire jobs 1000 WAIT 5",
        b"*1\r\n$4\r\njobs\r\n",
    )
    .await;
    c.expect(
        "COMMAND GETKEYS lock.release jobs",
        b"-ERR Invalid number of arguments specified for command\r\n",
    )
    .await;
    let list = c.cmd("COMMAND LIST").await;
    assert!(
        list.windows(19).any(|w| w == b"$12\r\nlock.release\r\n"),
        "{}",
        show(&list)
    );
}

/// Waiters are served in arrival order, each woken by the previous
/// holder's release (the ttl is a minute: only the wake-up can explain a
/// handoff within the test's deadline).
#[tokio::test]
async fn wait_wakes_waiters_in_fifo_order() {
    let env = Env::start().await;
    let mut holder = env.raw().await;
    let first = token(&mut holder, "LOCK.ACQUIRE fifo 60000").await;
    let mut waiters = Vec::new();
    for i in 0..5 {
        let mut w = env.raw().await;
        w.send(&support::clients::encode_line(
            "LOCK.ACQUIRE fifo 60000 WAIT 60000",
        ))
        .await;
        waiters_queued(&env, f64::from(i + 1)).await;
        waiters.push(w);
    }
    holder
        .expect(&format!("LOCK.RELEASE fifo {first}"), b"+OK\r\n")
        .await;
    for (i, w) in waiters.iter_mut().enumerate() {
        let t = int(&w.read_frame().await);
        assert_eq!(t, first + 1 + i as i64, "waiter {i} served out of order");
        w.expect(&format!("LOCK.RELEASE fifo {t}"), b"+OK\r\n")
            .await;
    }
    waiters_queued(&env, 0.0).await;
}

/// WAIT gives up after its timeout with nil, never earlier.
#[tokio::test]
async fn wait_times_out_with_nil() {
    let env = Env::start().await;
    let mut holder = env.raw().await;
    token(&mut holder, "LOCK.ACQUIRE busy 60000").await;
    let mut w = env.raw().await;
    let started = Instant::now();
    w.expect("LOCK.ACQUIRE busy 1000 WAIT 400", b"$-1\r\n")
        .await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    let text = metrics_text(env.http()).await;
    assert_eq!(
        metric(&text, "strata_coord_timeouts_total{backend=\"redis\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "strata_coord_acquisitions_total{backend=\"redis\"}"),
        Some(1.0)
    );
    // The connection goes on normally.
    w.expect("PING", b"+PONG\r\n").await;
}

/// 1,000 waiters on one lock: each release costs a bounded number of
/// Redis commands (the release, the next holder's try, the one after's
/// try), counted by the backend's INFO commandstats, not 1,000.
#[tokio::test]
async fn a_release_costs_o1_redis_commands_with_1000_waiters() {
    let env = Env::start().await;
    let mut b = env.raw_backend().await;
    let mut holder = env.raw().await;
    let mut current = token(&mut holder, "LOCK.ACQUIRE hot 60000").await;
    let mut waiters = Vec::new();
    for _ in 0..1000 {
        let mut w = env.raw().await;
        w.send(&support::clients::encode_line(
            "LOCK.ACQUIRE hot 60000 WAIT 120000",
        ))
        .await;
        waiters.push(w);
    }
    waiters_queued(&env, 1000.0).await;
    let before = calls(&mut b, "evalsha").await;
    holder
        .expect(&format!("LOCK.RELEASE hot {current}"), b"+OK\r\n")
        .await;
    let handoffs = 20;
    for w in waiters.iter_mut().take(handoffs) {
        let t = int(&w.read_frame().await);
        assert!(t > current);
        current = t;
        w.expect(&format!("LOCK.RELEASE hot {t}"), b"+OK\r\n").await;
    }
    let after = calls(&mut b, "evalsha").await;
    let per_release = (after - before) as f64 / (handoffs as f64 + 1.0);
    assert!(
        per_release <= 4.0,
        "{} EVALSHA for {} releases: {per_release} per release",
        after - before,
        handoffs + 1
    );
}

/// KEEPALIVE: renewed while the connection lives (ttl 300 ms, held for
/// much longer), released as soon as it closes.
#[tokio::test]
async fn keepalive_renews_and_is_released_on_disconnect() {
    let env = Env::start().await;
    let mut a = env.raw().await;
    let t = token(&mut a, "LOCK.ACQUIRE lease 300 KEEPALIVE").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut other = env.raw().await;
    other.expect("LOCK.ACQUIRE lease 300", b"$-1\r\n").await;
    let info = show(&other.cmd("LOCK.INFO lease").await);
    assert!(info.contains(&format!("token\\r\\n:{t}\\r\\n")), "{info}");
    // A long ttl now: only the release at disconnect can free it in time.
    a.expect(&format!("LOCK.EXTEND lease {t} 600000"), b"+OK\r\n")
        .await;
    let mut waiter = env.raw().await;
    waiter
        .send(&support::clients::encode_line(
            "LOCK.ACQUIRE lease 1000 WAIT 60000",
        ))
        .await;
    waiters_queued(&env, 1.0).await;
    drop(a);
    let next = int(&waiter.read_frame().await);
    assert!(next > t);
}

/// A KEEPALIVE lease lost (its key deleted behind strata's back): a RESP3
/// client gets `>3 lock-lost <name> <token>` at once, and RELEASE with that
/// token answers -LOCKLOST.
#[tokio::test]
async fn a_lost_lease_is_pushed_and_refused() {
    let env = Env::start().await;
    let mut a = env.raw().await;
    a.cmd("HELLO 3").await;
    let t = token(&mut a, "LOCK.ACQUIRE fragile 600 KEEPALIVE").await;
    let mut b = env.raw_backend().await;
    assert_eq!(int(&b.cmd("DEL strata:lock:{fragile}:").await), 1);
    let push = a.read_frame().await;
    assert_eq!(
        show(&push),
        show(format!(">3\r\n$9\r\nlock-lost\r\n$7\r\nfragile\r\n:{t}\r\n").as_bytes())
    );
    let reply = show(&a.cmd(&format!("LOCK.RELEASE fragile {t}")).await);
    assert!(
        reply.starts_with("-LOCKLOST lock 'fragile' is not held by token"),
        "{reply}"
    );
    let text = metrics_text(env.http()).await;
    assert_eq!(
        metric(&text, "strata_coord_lost_leases_total{backend=\"redis\"}"),
        Some(1.0)
    );
}

/// Cluster mode (3 primaries): locks on every primary, their keys in the
/// slot of their name, and a waiter woken by a release on a node other
/// than the one strata subscribes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_work_on_every_primary_of_a_cluster() {
    let cluster = tokio::task::spawn_blocking(support::cluster::Cluster::start)
        .await
        .expect("cluster");
    let strata = support::cluster_strata::start(&cluster).await;
    let addr = strata.addr.to_string();
    let mut c = RawConn::connect(&addr).await;
    let mut per_node = std::collections::BTreeMap::new();
    for i in 0..30 {
        let name = format!("job-{i}");
        let t = int(&c.cmd(&format!("LOCK.ACQUIRE {name} 60000")).await);
        let slot = strata::command::slot::hash_slot(name.as_bytes());
        let node = cluster.primary_for_slot(slot);
        let key = format!("strata:lock:{{{name}}}:");
        let exists = support::cluster_strata::blocking(|| cluster.must(&node, &["EXISTS", &key]));
        assert_eq!(format!("{exists:?}"), "Int(1)", "{name} on {node}");
        *per_node.entry(node).or_insert(0) += 1;
        c.expect(&format!("LOCK.RELEASE {name} {t}"), b"+OK\r\n")
            .await;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    // A name whose slot is not on the pub/sub node (slot 0's primary).
    let pubsub = cluster.primary_for_slot(0);
    let name = (0..)
        .map(|i| format!("far-{i}"))
        .find(|n| {
            cluster.primary_for_slot(strata::command::slot::hash_slot(n.as_bytes())) != pubsub
        })
        .expect("a name elsewhere");
    let t = int(&c.cmd(&format!("LOCK.ACQUIRE {name} 600000")).await);
    let mut w = RawConn::connect(&addr).await;
    w.send(&support::clients::encode_line(&format!(
        "LOCK.ACQUIRE {name} 1000 WAIT 60000"
    )))
    .await;
    // Let the waiter queue (the ttl is ten minutes: only the wake-up frees it).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics_text(strata.http_addr.expect("http")).await;
        if metric(&text, "strata_coord_waiters{backend=\"redis\"}") == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "waiter never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.expect(&format!("LOCK.RELEASE {name} {t}"), b"+OK\r\n")
        .await;
    assert!(int(&w.read_frame().await) > t);
}

/// A waiter that hangs up stops waiting at once (it leaves the queue; it
/// would otherwise take the lock for nobody when its turn came).
#[tokio::test]
async fn a_waiter_that_hangs_up_leaves_the_queue() {
    let env = Env::start().await;
    let mut holder = env.raw().await;
    let t = token(&mut holder, "LOCK.ACQUIRE door 600000").await;
    let mut w = env.raw().await;
    w.send(&support::clients::encode_line(
        "LOCK.ACQUIRE door 600000 WAIT 600000",
    ))
    .await;
    waiters_queued(&env, 1.0).await;
    drop(w);
    waiters_queued(&env, 0.0).await;
    holder
        .expect(&format!("LOCK.RELEASE door {t}"), b"+OK\r\n")
        .await;
    // Nobody took it meanwhile.
    holder.expect("LOCK.INFO door", b"$-1\r\n").await;
}

/// `PROXY INFO coordination` (issue 18's INFO sections): the lock counters
/// /metrics has, in INFO's format.
#[tokio::test]
async fn proxy_info_has_a_coordination_section() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    let t = token(&mut c, "LOCK.ACQUIRE info:lock 10000").await;
    c.expect(&format!("LOCK.RELEASE info:lock {t}"), b"+OK\r\n")
        .await;
    let text = String::from_utf8_lossy(&c.cmd("PROXY INFO coordination").await).into_owned();
    assert!(text.contains("# Coordination\r\n"), "{text}");
    assert!(text.contains("lock_acquisitions:1\r\n"), "{text}");
    assert!(text.contains("lock_releases:1\r\n"), "{text}");
    assert!(
        text.contains(&format!(
            "coord_commands:{}\r\n",
            strata::coord::registry::count()
        )),
        "{text}"
    );
}
