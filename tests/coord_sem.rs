//! SEM.* through strata against a real redis-server: replies and errors,
//! a checker that counts concurrent holders on the protected side and
//! never sees more than the permits (and does see more when the clients
//! skip the semaphore: it can fail), a dead holder's permit expiring,
//! WAIT woken by a release, KEEPALIVE renewed while the connection lives
//! and given back when it closes.

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::clients::{encode_line, show, Env};
use support::coord_util::{event, int, int_cmd, slow_frame, waiters_queued};

#[tokio::test]
async fn acquire_release_available_and_their_errors() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.expect("SEM.AVAILABLE pool", b"$-1\r\n").await;
    let a = int_cmd(&mut c, "SEM.ACQUIRE pool 2 60000").await;
    let b = int_cmd(&mut c, "sem.acquire pool 2 60000").await;
    assert!(a >= 1 && b > a, "{a} {b}");
    // Both permits held: nil without WAIT.
    c.expect("SEM.ACQUIRE pool 2 60000", b"$-1\r\n").await;
    c.expect("SEM.AVAILABLE pool", b":0\r\n").await;
    c.expect(&format!("SEM.RELEASE pool {a}"), b"+OK\r\n").await;
    c.expect("SEM.AVAILABLE pool", b":1\r\n").await;
    c.expect(
        &format!("SEM.RELEASE pool {a}"),
        format!(
            "-LOCKLOST permit {a} of semaphore 'pool' is not held: it expired or was released\r\n"
        )
        .as_bytes(),
    )
    .await;
    c.expect(
        "SEM.RELEASE pool 999",
        b"-ERR permit 999 was never issued for semaphore 'pool'\r\n",
    )
    .await;
    for (line, reply) in [
        ("SEM.ACQUIRE x 1", "-ERR wrong number of arguments for 'sem.acquire' command\r\n"),
        ("SEM.RELEASE x", "-ERR wrong number of arguments for 'sem.release' command\r\n"),
        ("SEM.AVAILABLE", "-ERR wrong number of arguments for 'sem.available' command\r\n"),
        ("SEM.AVAILABLE a b", "-ERR wrong number of arguments for 'sem.available' command\r\n"),
        ("SEM.ACQUIRE x 1 -5", "-ERR invalid expire time in 'sem.acquire' command\r\n"),
        ("SEM.ACQUIRE x 0 10", "-ERR value is out of range, must be positive\r\n"),
        ("SEM.ACQUIRE x two 10", "-ERR value is not an integer or out of range\r\n"),
        ("SEM.ACQUIRE x 1 10 WAIT -1", "-ERR timeout is negative\r\n"),
        ("SEM.ACQUIRE x 1 10 WAIT", "-ERR syntax error\r\n"),
        ("SEM.ACQUIRE x 1 10 OWNER me", "-ERR syntax error\r\n"),
        ("SEM.RELEASE x abc", "-ERR value is not an integer or out of range\r\n"),
        ("SEM.RELEASE x -3", "-ERR value is out of range, must be positive\r\n"),
        (
            "SEM.ACQUIRE a}b 1 10",
            "-ERR sem name 'a}b' has a '}' outside a hash tag: strata cannot keep its keys in one slot\r\n",
        ),
    ] {
        c.expect(line, reply.as_bytes()).await;
    }
    // The keys, in the name's slot.
    let mut backend = env.raw_backend().await;
    assert_eq!(
        int(&backend.cmd("ZCARD strata:sem:{pool}:").await),
        1,
        "one live permit"
    );
    assert_eq!(event(&env, "sem", "acquired").await, 2.0);
    assert_eq!(event(&env, "sem", "busy").await, 1.0);
}

/// The protected side: clients in, at most `permits` at once.
struct Checker {
    inside: AtomicI64,
    most: AtomicI64,
    holds: AtomicI64,
}

impl Checker {
    fn enter(&self) {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.holds.fetch_add(1, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `clients` connections each take a permit `rounds` times (WAIT), stay
/// inside the protected section a little while, and leave; or, with
/// `use_semaphore` false, go in without asking (the control: the checker
/// must then see more than `permits` inside).
async fn run_checker(
    env: &Env,
    clients: usize,
    rounds: usize,
    use_semaphore: bool,
) -> Arc<Checker> {
    let checker = Arc::new(Checker {
        inside: AtomicI64::new(0),
        most: AtomicI64::new(0),
        holds: AtomicI64::new(0),
    });
    // Without the semaphore, every client is inside before any leaves.
    let gate = Arc::new(tokio::sync::Barrier::new(clients));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = env.raw().await;
        let checker = checker.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                if !use_semaphore {
                    checker.enter();
                    gate.wait().await;
                    checker.leave();
                    continue;
                }
                c.send(&encode_line("SEM.ACQUIRE checked 3 60000 WAIT 120000"))
                    .await;
                let permit = int(&slow_frame(&mut c).await);
                checker.enter();
                tokio::time::sleep(Duration::from_millis(3)).await;
                checker.leave();
                c.expect(&format!("SEM.RELEASE checked {permit}"), b"+OK\r\n")
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    checker
}

/// 24 clients, 3 permits, 8 rounds each: never more than 3 inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_over_admits_under_many_concurrent_clients() {
    let env = Env::start().await;
    let checker = run_checker(&env, 24, 8, true).await;
    let most = checker.most.load(Ordering::SeqCst);
    assert!(most <= 3, "{most} holders inside at once with 3 permits");
    assert_eq!(checker.holds.load(Ordering::SeqCst), 24 * 8);
    // Every permit was given back.
    let mut c = env.raw().await;
    c.expect("SEM.AVAILABLE checked", b":3\r\n").await;
    waiters_queued(&env, 0.0).await;
}

/// The checker can fail: clients that skip the semaphore are all inside
/// at once, and it sees it.
#[tokio::test]
async fn the_checker_sees_over_admission() {
    let env = Env::start().await;
    let checker = run_checker(&env, 8, 2, false).await;
    assert_eq!(checker.most.load(Ordering::SeqCst), 8);
}

/// A holder that stops (never releases, no KEEPALIVE): its permit expires
/// after its ttl, and a waiter gets it then (the fallback timer: nobody
/// publishes an expiry).
#[tokio::test]
async fn a_dead_holders_permit_expires() {
    let env = Env::start().await;
    let mut dead = env.raw().await;
    int_cmd(&mut dead, "SEM.ACQUIRE solo 1 400").await;
    let mut w = env.raw().await;
    w.expect("SEM.ACQUIRE solo 1 400", b"$-1\r\n").await;
    w.send(&encode_line("SEM.ACQUIRE solo 1 60000 WAIT 60000"))
        .await;
    let got = int(&slow_frame(&mut w).await);
    assert!(got >= 2);
    w.expect("SEM.AVAILABLE solo", b":0\r\n").await;
    // The holder that stopped learns it lost the permit.
    let reply = show(&dead.cmd("SEM.RELEASE solo 1").await);
    assert!(reply.starts_with("-LOCKLOST permit 1"), "{reply}");
}

/// WAIT is woken by a release (the ttls are ten minutes: only the wake-up
/// explains the handoff), in FIFO order among this strata's waiters.
#[tokio::test]
async fn wait_wakes_a_waiter_on_release() {
    let env = Env::start().await;
    let mut holder = env.raw().await;
    let p = int_cmd(&mut holder, "SEM.ACQUIRE gate 1 600000").await;
    let mut waiters = Vec::new();
    for i in 0..3 {
        let mut w = env.raw().await;
        w.send(&encode_line("SEM.ACQUIRE gate 1 600000 WAIT 0"))
            .await;
        waiters_queued(&env, f64::from(i + 1)).await;
        waiters.push(w);
    }
    holder
        .expect(&format!("SEM.RELEASE gate {p}"), b"+OK\r\n")
        .await;
    let mut last = p;
    for w in &mut waiters {
        let got = int(&slow_frame(w).await);
        assert_eq!(got, last + 1, "served in arrival order");
        last = got;
        w.expect(&format!("SEM.RELEASE gate {got}"), b"+OK\r\n")
            .await;
    }
    waiters_queued(&env, 0.0).await;
}

/// KEEPALIVE: a 300 ms permit held for much longer while the connection
/// lives; given back (a waiter wakes) when it closes.
#[tokio::test]
async fn keepalive_renews_and_gives_back_on_disconnect() {
    let env = Env::start().await;
    let mut a = env.raw().await;
    int_cmd(&mut a, "SEM.ACQUIRE kept 1 300 KEEPALIVE").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut other = env.raw().await;
    other.expect("SEM.ACQUIRE kept 1 300", b"$-1\r\n").await;
    let mut waiter = env.raw().await;
    waiter
        .send(&encode_line("SEM.ACQUIRE kept 1 600000 WAIT 60000"))
        .await;
    waiters_queued(&env, 1.0).await;
    drop(a);
    int(&slow_frame(&mut waiter).await);
    assert!(event(&env, "sem", "renewed").await >= 1.0);
}

/// A lost KEEPALIVE permit (deleted behind strata's back) is pushed to a
/// RESP3 client and refused on release.
#[tokio::test]
async fn a_lost_permit_is_pushed_and_refused() {
    let env = Env::start().await;
    let mut a = env.raw().await;
    a.cmd("HELLO 3").await;
    let p = int_cmd(&mut a, "SEM.ACQUIRE frail 1 600 KEEPALIVE").await;
    let mut b = env.raw_backend().await;
    assert_eq!(int(&b.cmd("DEL strata:sem:{frail}:").await), 1);
    let push = slow_frame(&mut a).await;
    assert_eq!(
        show(&push),
        show(format!(">3\r\n$11\r\npermit-lost\r\n$5\r\nfrail\r\n:{p}\r\n").as_bytes())
    );
    let reply = show(&a.cmd(&format!("SEM.RELEASE frail {p}")).await);
    assert!(reply.starts_with("-LOCKLOST permit"), "{reply}");
}
