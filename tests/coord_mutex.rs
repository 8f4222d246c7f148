//! The mutex checker (issue 15): client *processes* take a lock through
//! strata and write into a protected resource that rejects stale fencing
//! tokens (`support/mutex_checker.rs`); the checker verifies that accepted
//! holds never overlap and that their tokens strictly increase.
//!
//! Clients are this test binary run again as child processes (the
//! `mutex_client_process` entry below, selected by an environment
//! variable), so they can be paused with SIGSTOP past their ttl and
//! resumed with SIGCONT, as a GC pause or a stalled VM would. Each client
//! prints `H <client> <token>` once it holds the lock and has written
//! `begin`; the parent pauses some of them right then.
//!
//! Faults: clients paused past their ttl (fenced: the late writes are
//! rejected and the checker passes; without the token check the checker
//! must fail, which shows it can), a strata binary killed with SIGKILL
//! while its clients hold KEEPALIVE leases, and a Sentinel failover.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::mutex_checker::{self, Resource, Write};
use support::{raw, RedisServer};

const LOCK: &str = "checker-lock";

/// Settings of one client process (passed in its environment).
#[derive(Clone)]
struct ClientSpec {
    strata: Vec<String>,
    resource: String,
    ttl_ms: u64,
    keepalive: bool,
    fenced: bool,
    run_ms: u64,
}

/// The client process: runs only when the parent set `COORD_CLIENT`.
#[test]
fn mutex_client_process() {
    let Ok(id) = std::env::var("COORD_CLIENT") else {
        return;
    };
    let id: u32 = id.parse().expect("client id");
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} set"));
    let strata: Vec<String> = var("COORD_STRATA").split(',').map(str::to_string).collect();
    let ttl = var("COORD_TTL");
    let keepalive = var("COORD_KEEPALIVE") == "1";
    let mut resource = Resource::connect(&var("COORD_RESOURCE"), var("COORD_FENCED") == "1");
    let deadline = Instant::now() + Duration::from_millis(var("COORD_RUN_MS").parse().expect("ms"));
    let mut which = id as usize;
    let mut conn: Option<TcpStream> = None;
    let mut out = std::io::stdout();
    while Instant::now() < deadline {
        if conn.is_none() {
            match TcpStream::connect(&strata[which % strata.len()]) {
                Ok(s) => {
                    s.set_nodelay(true).expect("nodelay");
                    conn = Some(s);
                }
                Err(_) => {
                    which += 1;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut acquire: Vec<&[u8]> = vec![
            b"LOCK.ACQUIRE",
            LOCK.as_bytes(),
            ttl.as_bytes(),
            b"WAIT",
            b"5000",
        ];
        if keepalive {
            acquire.push(b"KEEPALIVE");
        }
        let reply = match raw::call(c, &raw::cmd(&acquire), Duration::from_secs(30)) {
            Ok(r) => r,
            Err(_) => {
                // strata gone: the next one.
                conn = None;
                which += 1;
                continue;
            }
        };
        let token: i64 = match reply.first() {
            Some(b':') => String::from_utf8_lossy(&reply[1..reply.len() - 2])
                .parse()
                .expect("token"),
            Some(b'$') => continue,
            _ => {
                eprintln!("client {id}: {}", raw::escape(&reply));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        resource.write(token, id, true).expect("resource write");
        // The parent may pause us now, while we hold the lock.
        writeln!(out, "H {id} {token}").expect("stdout");
        out.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(20));
        resource.write(token, id, false).expect("resource write");
        let release = raw::cmd(&[
            b"LOCK.RELEASE",
            LOCK.as_bytes(),
            token.to_string().as_bytes(),
        ]);
        if raw::call(c, &release, Duration::from_secs(30)).is_err() {
            conn = None;
            which += 1;
        }
    }
}

/// Client processes and the lines they print.
struct Clients {
    children: Vec<Child>,
    holds: mpsc::Receiver<(u32, i64)>,
}

impl Clients {
    fn spawn(n: u32, spec: &ClientSpec) -> Clients {
        let exe = std::env::current_exe().expect("test binary");
        let (tx, holds) = mpsc::channel();
        let mut children = Vec::new();
        for id in 0..n {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "mutex_client_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("COORD_CLIENT", id.to_string())
                .env("COORD_STRATA", spec.strata.join(","))
                .env("COORD_RESOURCE", &spec.resource)
                .env("COORD_TTL", spec.ttl_ms.to_string())
                .env("COORD_KEEPALIVE", if spec.keepalive { "1" } else { "0" })
                .env("COORD_FENCED", if spec.fenced { "1" } else { "0" })
                .env("COORD_RUN_MS", spec.run_ms.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn client process");
            let stdout = child.stdout.take().expect("stdout");
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let f: Vec<&str> = line.split(' ').collect();
                    if f.len() == 3 && f[0] == "H" {
                        if let (Ok(c), Ok(t)) = (f[1].parse(), f[2].parse()) {
                            let _ = tx.send((c, t));
                        }
                    }
                }
            });
            children.push(child);
        }
        Clients { children, holds }
    }

    /// Pauses every `every`-th holder (SIGSTOP while it holds the lock,
    /// for `pause`, then SIGCONT), at most `max` times, until the clients
    /// are done. Returns the (client, token) holds that were paused.
    fn run_pausing(&mut self, every: usize, max: usize, pause: Duration) -> HashSet<(u32, i64)> {
        let mut paused = HashSet::new();
        let mut seen = 0usize;
        loop {
            match self.holds.recv_timeout(Duration::from_millis(200)) {
                Ok((client, token)) => {
                    seen += 1;
                    if paused.len() < max && seen % every == 0 {
                        let pid = self.children[client as usize].id();
                        raw::signal(pid, "STOP");
                        std::thread::sleep(pause);
                        raw::signal(pid, "CONT");
                        paused.insert((client, token));
                        // What was printed meanwhile is stale: pausing a
                        // client on it could catch it holding nothing.
                        while self.holds.try_recv().is_ok() {}
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.all_done() {
                        return paused;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return paused,
            }
        }
    }

    fn all_done(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Waits for every client to finish (generously), and checks each
    /// exited cleanly.
    fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        for c in &mut self.children {
            loop {
                if let Some(status) = c.try_wait().expect("try_wait") {
                    assert!(status.success(), "a client process failed: {status}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("a client process did not finish");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The log of a resource, read on a connection of its own.
fn history(resource: &RedisServer) -> Vec<Write> {
    Resource::connect(&resource.addr(), true)
        .log()
        .expect("resource log")
}

fn start_strata(backend: &str) -> support::inproc::InProc {
    let strata = support::inproc::InProc::start(support::strata::test_config(backend));
    strata.wait_ready();
    strata
}

/// Clients paused with SIGSTOP past their ttl while holding the lock: the
/// fenced resource rejects their late writes, and the checker passes.
#[test]
fn holders_never_overlap_when_clients_pause_past_their_ttl() {
    let backend = RedisServer::start();
    let resource = RedisServer::start();
    let strata = start_strata(&backend.addr());
    let ttl_ms = 300;
    let spec = ClientSpec {
        strata: vec![strata.addr.clone()],
        resource: resource.addr(),
        ttl_ms,
        keepalive: false,
        fenced: true,
        run_ms: 8_000,
    };
    let mut clients = Clients::spawn(5, &spec);
    let paused = clients.run_pausing(7, 4, Duration::from_millis(ttl_ms * 3));
    clients.finish();
    let log = history(&resource);
    let summary = mutex_checker::check(&log).unwrap_or_else(|e| panic!("checker: {e}"));
    assert!(!paused.is_empty(), "no holder was paused");
    assert!(
        summary.holds >= 20,
        "too few holds to mean anything: {summary:?}"
    );
    // Rejections of holds not paused here are not failures: any client
    // stalled past its ttl by a loaded machine is fenced off the same way
    // (that is the point of fencing); they are shown, not asserted.
    let unpaused: Vec<_> = summary
        .rejected
        .iter()
        .filter(|r| !paused.contains(r))
        .collect();
    eprintln!("paused {paused:?}; rejected writes of other holds {unpaused:?}; {summary:?}");
    assert!(
        !summary.rejected.is_empty(),
        "a paused holder's late write was never rejected (no fault exercised): {summary:?}"
    );
    drop(strata);
}

/// The same workload against a resource WITHOUT the token check: a paused
/// holder's late write is accepted, and the checker must report the
/// overlap. This is the test that shows the checker can fail.
#[test]
fn checker_catches_holders_without_fencing() {
    let backend = RedisServer::start();
    let resource = RedisServer::start();
    let strata = start_strata(&backend.addr());
    let ttl_ms = 300;
    let spec = ClientSpec {
        strata: vec![strata.addr.clone()],
        resource: resource.addr(),
        ttl_ms,
        keepalive: false,
        fenced: false,
        run_ms: 6_000,
    };
    let mut clients = Clients::spawn(5, &spec);
    let paused = clients.run_pausing(5, 4, Duration::from_millis(ttl_ms * 3));
    clients.finish();
    assert!(!paused.is_empty(), "no holder was paused");
    let err = mutex_checker::check(&history(&resource))
        .expect_err("the checker must catch a paused holder's unfenced write");
    assert!(err.starts_with("overlap"), "{err}");
}

/// The checker on histories written by hand: it passes a clean one and
/// catches an overlap, a repeated token and a decreasing one.
#[test]
fn checker_judges_hand_written_histories() {
    let w = |token, client, begin, at_us, accepted| Write {
        token,
        client,
        begin,
        at_us,
        accepted,
    };
    let clean = [
        w(1, 0, true, 10, true),
        w(1, 0, false, 20, true),
        w(2, 1, true, 30, true),
        // A paused holder's late end, fenced off.
        w(3, 2, true, 40, true),
        w(4, 1, true, 50, true),
        w(3, 2, false, 60, false),
        w(4, 1, false, 70, true),
    ];
    let s = mutex_checker::check(&clean).expect("clean history");
    assert_eq!(s.holds, 2);
    assert_eq!(s.rejected, vec![(2, 3)]);
    let overlap = [
        w(1, 0, true, 10, true),
        w(2, 1, true, 15, true),
        w(1, 0, false, 20, true),
        w(2, 1, false, 30, true),
    ];
    assert!(mutex_checker::check(&overlap)
        .expect_err("overlap")
        .starts_with("overlap"));
    let same_token = [
        w(1, 0, true, 10, true),
        w(1, 0, false, 20, true),
        w(1, 1, true, 30, true),
        w(1, 1, false, 40, true),
    ];
    assert!(mutex_checker::check(&same_token)
        .expect_err("repeated token")
        .starts_with("tokens not strictly increasing"));
    let decreasing = [
        w(5, 0, true, 10, true),
        w(5, 0, false, 20, true),
        w(4, 1, true, 30, true),
        w(4, 1, false, 40, true),
    ];
    assert!(mutex_checker::check(&decreasing).is_err());
    assert_eq!(
        mutex_checker::parse_entry("7 2 end 1700000000 42 rejected").expect("entry"),
        w(7, 2, false, 1_700_000_000_000_042, false)
    );
}

/// A strata binary killed with SIGKILL while its clients hold KEEPALIVE
/// leases: the leases run out (nobody renews them), clients move to the
/// other strata, holders never overlap and tokens keep increasing.
#[test]
fn holders_never_overlap_when_a_strata_is_killed() {
    let backend = RedisServer::start();
    let resource = RedisServer::start();
    let mut doomed = support::strata::StrataProcess::spawn(&backend.addr(), &[]);
    let survivor = support::strata::StrataProcess::spawn(&backend.addr(), &[]);
    let spec = ClientSpec {
        strata: vec![
            format!("127.0.0.1:{}", doomed.port),
            format!("127.0.0.1:{}", survivor.port),
        ],
        resource: resource.addr(),
        ttl_ms: 500,
        keepalive: true,
        fenced: true,
        run_ms: 7_000,
    };
    let mut clients = Clients::spawn(4, &spec);
    // Kill the first strata once it serves a holder (clients 0 and 2 start
    // on it), and note the resource's clock then.
    let mut killed_at = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while killed_at.is_none() {
        assert!(
            Instant::now() < deadline,
            "no client of the doomed strata held the lock"
        );
        if let Ok((client, _)) = clients.holds.recv_timeout(Duration::from_millis(200)) {
            if client % 2 == 0 {
                let _ = doomed.child.kill();
                let _ = doomed.child.wait();
                killed_at = Some(resource_time_us(&resource));
            }
        }
    }
    let killed_at = killed_at.expect("killed");
    clients.run_pausing(usize::MAX, 0, Duration::ZERO);
    clients.finish();
    let log = history(&resource);
    let summary = mutex_checker::check(&log).unwrap_or_else(|e| panic!("checker: {e}"));
    assert!(summary.holds >= 20, "too few holds: {summary:?}");
    let moved = log
        .iter()
        .any(|w| w.accepted && w.begin && w.client % 2 == 0 && w.at_us > killed_at);
    assert!(
        moved,
        "the doomed strata's clients never held the lock again"
    );
    drop(survivor);
}

fn resource_time_us(resource: &RedisServer) -> u64 {
    let mut s = raw::connect(&resource.addr(), Duration::from_secs(10));
    let reply = raw::call(&mut s, &raw::cmd(&[b"TIME"]), Duration::from_secs(10)).expect("TIME");
    let text = String::from_utf8_lossy(&reply).into_owned();
    let nums: Vec<u64> = text.split("\r\n").filter_map(|l| l.parse().ok()).collect();
    nums[0] * 1_000_000 + nums[1]
}

/// A Sentinel failover (SENTINEL FAILOVER) under the same workload: strata
/// follows the new primary, the wake subscription moves with it, tokens
/// keep increasing (the counter reached a replica: WAIT 1), and holders
/// never overlap.
#[test]
fn holders_never_overlap_through_a_sentinel_failover() {
    let topo = support::sentinel::Topology::start();
    let resource = RedisServer::start();
    let strata = support::inproc::InProc::start(topo.strata_config());
    strata.wait_ready();
    let spec = ClientSpec {
        strata: vec![strata.addr.clone()],
        resource: resource.addr(),
        ttl_ms: 500,
        keepalive: false,
        fenced: true,
        run_ms: 15_000,
    };
    let mut clients = Clients::spawn(4, &spec);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < 10 {
        assert!(Instant::now() < deadline, "the clients never held the lock");
        if clients
            .holds
            .recv_timeout(Duration::from_millis(200))
            .is_ok()
        {
            seen += 1;
        }
    }
    let old = topo.current_primary();
    let failed_over_at = resource_time_us(&resource);
    topo.force_failover();
    support::wait_until_ok(
        "failover",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            let now = topo.current_primary();
            if now == old {
                Err(format!("still {old}"))
            } else {
                Ok(())
            }
        },
    );
    clients.run_pausing(usize::MAX, 0, Duration::ZERO);
    clients.finish();
    let log = history(&resource);
    let summary = mutex_checker::check(&log).unwrap_or_else(|e| panic!("checker: {e}"));
    let after = log
        .iter()
        .filter(|w| w.accepted && w.begin && w.at_us > failed_over_at)
        .count();
    assert!(
        after >= 5,
        "too few holds after the failover ({after}): {summary:?}"
    );
    drop(strata);
}
