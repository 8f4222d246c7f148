//! The backend fails under strata: killed, frozen, absent at startup; and
//! strata itself is told to stop. Clients must always get an answer (an
//! error or a closed connection), never a hang, and service must come back
//! by itself once Redis does, without restarting strata.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::inproc::InProc;
use support::raw::{self, call, cmd, escape, read_frames, read_to_end, End};
use support::strata::{test_config, StrataProcess};
use support::RedisServer;

/// strata's request timeout in these tests (from `test_config`).
fn request_timeout() -> Duration {
    Duration::from_millis(test_config("127.0.0.1:1").backend.request_timeout_ms)
}

/// Slack on top of the request timeout before a missing answer counts as a hang.
const SLACK: Duration = Duration::from_secs(3);
/// How long service may take to come back after Redis does.
const RECOVERY: Duration = Duration::from_secs(10);

fn is_backend_error(frame: &[u8]) -> bool {
    frame.starts_with(b"-ERR backend ")
}

/// SET then GET on a fresh connection; Ok when both answer as Redis would.
fn set_get(addr: &str, key: &str) -> Result<(), String> {
    let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    c.set_nodelay(true).unwrap();
    let wait = request_timeout() + SLACK;
    let set = call(&mut c, &cmd(&[b"SET", key.as_bytes(), b"v1"]), wait)?;
    if set != b"+OK\r\n" {
        return Err(format!("SET: {}", escape(&set)));
    }
    let get = call(&mut c, &cmd(&[b"GET", key.as_bytes()]), wait)?;
    if get != b"$2\r\nv1\r\n" {
        return Err(format!("GET: {}", escape(&get)));
    }
    Ok(())
}

/// Polls `set_get` on fresh connections until it succeeds several times in
/// a row (fresh clients spread over every multiplexed connection); panics
/// after `RECOVERY`.
fn wait_for_service(addr: &str, what: &str) -> Instant {
    let deadline = Instant::now() + RECOVERY;
    let mut last = String::new();
    let mut streak = 0;
    while Instant::now() < deadline {
        match set_get(addr, "recovery") {
            Ok(()) => {
                streak += 1;
                if streak == 4 {
                    return Instant::now();
                }
                continue;
            }
            Err(e) => {
                streak = 0;
                last = e;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: service did not resume within {RECOVERY:?}; last: {last}");
}

/// LPUSH then BLPOP (a dedicated connection) on `c`; Ok when both answer right.
fn push_pop(c: &mut TcpStream) -> Result<(), String> {
    let wait = request_timeout() + SLACK;
    let pushed = call(c, &cmd(&[b"LPUSH", b"queue", b"x"]), wait)?;
    if !pushed.starts_with(b":") {
        return Err(format!("LPUSH: {}", escape(&pushed)));
    }
    let popped = call(c, &cmd(&[b"BLPOP", b"queue", b"1"]), wait)?;
    if popped != b"*2\r\n$5\r\nqueue\r\n$1\r\nx\r\n" {
        return Err(format!("BLPOP: {}", escape(&popped)));
    }
    Ok(())
}

/// Polls the backend directly until it reports `n` blocked clients.
fn wait_blocked(redis: &RedisServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = format!("blocked_clients:{n}\r\n");
    loop {
        let mut c = raw::connect(&redis.addr(), Duration::from_secs(5));
        let info = call(&mut c, &cmd(&[b"INFO", b"clients"]), Duration::from_secs(5)).unwrap();
        if String::from_utf8_lossy(&info).contains(&want) {
            return;
        }
        assert!(Instant::now() < deadline, "backend never showed {want:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Default, Debug)]
struct Traffic {
    ok: usize,
    backend_errors: Vec<String>,
    /// Anything that is neither a normal reply nor a backend error, or a hang.
    failures: Vec<String>,
    last_ok: Option<Instant>,
}

#[test]
fn backend_killed_during_traffic_errors_then_recovers() {
    let mut redis = RedisServer::start();
    let strata = InProc::start(test_config(&redis.addr()));
    strata.wait_ready();
    let stop = Arc::new(AtomicBool::new(false));
    let wait = request_timeout() + SLACK;

    let clients: Vec<_> = (0..4)
        .map(|i| {
            let addr = strata.addr.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut t = Traffic::default();
                let mut c = raw::connect(&addr, wait);
                let key = format!("k{i}");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let value = n.to_string();
                    let (req, want_prefix): (Vec<u8>, &[u8]) = if n % 2 == 1 {
                        (cmd(&[b"SET", key.as_bytes(), value.as_bytes()]), b"+OK")
                    } else {
                        (cmd(&[b"GET", key.as_bytes()]), b"$")
                    };
                    let started = Instant::now();
                    match call(&mut c, &req, wait) {
                        Ok(f) if f.starts_with(want_prefix) => {
                            t.ok += 1;
                            t.last_ok = Some(Instant::now());
                        }
                        Ok(f) if is_backend_error(&f) => t.backend_errors.push(escape(&f)),
                        Ok(f) => t.failures.push(format!("unexpected reply {}", escape(&f))),
                        Err(e) => {
                            t.failures
                                .push(format!("no answer after {:?}: {e}", started.elapsed()));
                            return t;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                t
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(300));
    redis.kill();
    std::thread::sleep(Duration::from_millis(700));
    redis.restart();
    let restarted = Instant::now();
    wait_for_service(&strata.addr, "after restart");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);

    let results: Vec<Traffic> = clients.into_iter().map(|h| h.join().unwrap()).collect();
    let errors: usize = results.iter().map(|t| t.backend_errors.len()).sum();
    for (i, t) in results.iter().enumerate() {
        assert!(t.failures.is_empty(), "client {i}: {:?}", t.failures);
        assert!(
            t.last_ok.is_some_and(|at| at > restarted),
            "client {i} was not served again on its connection after the restart: {t:?}"
        );
    }
    assert!(
        errors > 0,
        "no client saw a backend error while Redis was down"
    );
    strata.shutdown();
}

#[test]
fn blocked_client_is_answered_when_backend_dies() {
    let mut redis = RedisServer::start();
    let strata = InProc::start(test_config(&redis.addr()));
    strata.wait_ready();

    let mut blocked = raw::connect(&strata.addr, Duration::from_secs(5));
    blocked
        .write_all(&cmd(&[b"BLPOP", b"queue", b"0"]))
        .unwrap();
    wait_blocked(&redis, 1);
    redis.kill();
    let got = read_to_end(
        &mut blocked,
        request_timeout() + SLACK,
        request_timeout() + SLACK,
    );
    assert!(
        got.end.closed(),
        "blocked client neither answered nor closed: {:?} {}",
        got.end,
        got.text()
    );
    assert!(
        got.data.is_empty() || is_backend_error(&got.data),
        "blocked client got {}",
        got.text()
    );

    redis.restart();
    wait_for_service(&strata.addr, "after restart");
    // Blocking commands (dedicated connections) work again too.
    let mut c = raw::connect(&strata.addr, Duration::from_secs(5));
    push_pop(&mut c).unwrap();
    push_pop(&mut c).unwrap();
    strata.shutdown();
}

#[test]
fn pooled_dedicated_connections_survive_backend_restart() {
    let mut redis = RedisServer::start();
    let strata = InProc::start(test_config(&redis.addr()));
    strata.wait_ready();
    // A blocking command leaves a dedicated connection idle in the pool.
    let mut c = raw::connect(&strata.addr, Duration::from_secs(5));
    push_pop(&mut c).unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(200));

    redis.kill();
    redis.restart();
    wait_for_service(&strata.addr, "after restart");
    // The backend is back and answers: a blocking command must work, not
    // fail on the pooled connection to the Redis that died.
    let mut c = raw::connect(&strata.addr, Duration::from_secs(5));
    assert_eq!(
        push_pop(&mut c),
        Ok(()),
        "first blocking command after the backend restarted"
    );
    strata.shutdown();
}

/// Sends SIGCONT on drop, so a failed assertion never leaves Redis frozen.
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        raw::signal(self.0, "CONT");
    }
}

#[test]
fn frozen_backend_times_out_then_recovers() {
    let redis = RedisServer::start();
    let strata = InProc::start(test_config(&redis.addr()));
    strata.wait_ready();
    set_get(&strata.addr, "before").unwrap();

    let pid = redis.pid().unwrap();
    raw::signal(pid, "STOP");
    let thaw = Thaw(pid);
    let mut c = raw::connect(&strata.addr, Duration::from_secs(5));
    let started = Instant::now();
    let reply = call(
        &mut c,
        &cmd(&[b"GET", b"before"]),
        request_timeout() + SLACK,
    )
    .unwrap_or_else(|e| panic!("GET to a frozen backend: {e}"));
    let took = started.elapsed();
    assert!(
        is_backend_error(&reply),
        "GET to a frozen backend answered {}",
        escape(&reply)
    );
    assert!(took <= request_timeout() + SLACK, "took {took:?}");
    // The same client connection is still usable for a local command.
    assert_eq!(
        call(&mut c, &cmd(&[b"PING"]), Duration::from_secs(5)).unwrap(),
        b"+PONG\r\n"
    );

    drop(thaw);
    wait_for_service(&strata.addr, "after SIGCONT");
    // The client that saw the timeout is served again on its own connection
    // (its multiplexed connection may still be in its reconnect backoff).
    let deadline = Instant::now() + RECOVERY;
    loop {
        let get = call(
            &mut c,
            &cmd(&[b"GET", b"before"]),
            request_timeout() + SLACK,
        )
        .unwrap();
        if get == b"$2\r\nv1\r\n" {
            break;
        }
        assert!(
            is_backend_error(&get),
            "GET after SIGCONT answered {}",
            escape(&get)
        );
        assert!(
            Instant::now() < deadline,
            "old client not served again: {}",
            escape(&get)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    strata.shutdown();
}

#[test]
fn backend_down_at_startup_then_comes_up() {
    let mut redis = RedisServer::start();
    redis.kill(); // keeps the port; nothing listens there now
    let strata = InProc::start(test_config(&redis.addr()));

    let (status, body) = strata.http_get("/health/ready");
    assert_eq!(status, 503, "ready with no backend: {body}");
    let mut c = raw::connect(&strata.addr, Duration::from_secs(5));
    let wait = request_timeout() + SLACK;
    let reply = call(&mut c, &cmd(&[b"SET", b"k", b"v1"]), wait).unwrap();
    let want = format!("-ERR backend unavailable: {}", redis.addr());
    assert!(
        reply.starts_with(want.as_bytes()),
        "SET answered {}",
        escape(&reply)
    );
    let reply = call(&mut c, &cmd(&[b"BLPOP", b"queue", b"0.05"]), wait).unwrap();
    assert!(
        is_backend_error(&reply),
        "BLPOP answered {}",
        escape(&reply)
    );
    // Local commands still work.
    assert_eq!(call(&mut c, &cmd(&[b"PING"]), wait).unwrap(), b"+PONG\r\n");

    redis.restart();
    strata.wait_ready();
    wait_for_service(&strata.addr, "after the backend came up");
    let reply = call(&mut c, &cmd(&[b"GET", b"recovery"]), wait).unwrap();
    assert_eq!(escape(&reply), "$2\\r\\nv1\\r\\n");
    strata.shutdown();
}

/// Polls connect until it is refused (the listener is closed); the moment it was.
fn wait_refused(addr: &str, signalled: Instant) -> Instant {
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Instant::now(),
            // A connection still in the accept backlog when the listener
            // closes is reset: the listener is going, poll again.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("connect after SIGTERM: unexpected {e}"),
            Ok(_) => {
                assert!(
                    signalled.elapsed() < Duration::from_secs(2),
                    "still accepting 2 s after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Waits for the process to exit within the default grace period (+ slack).
fn wait_exit(proc: &mut StrataProcess, signalled: Instant) -> std::process::ExitStatus {
    let grace = Duration::from_millis(strata::config::Config::default().server.shutdown_grace_ms);
    let deadline = signalled + grace + SLACK;
    loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "strata still running {grace:?} + slack after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads one reply, then expects the connection to be closed; returns the
/// reply (escaped), when it arrived, and how the connection ended.
fn reply_then_end(mut c: TcpStream) -> (Result<(String, Instant), String>, End) {
    let reply =
        read_frames(&mut c, 1, Duration::from_secs(10)).map(|f| (escape(&f[0]), Instant::now()));
    let end = read_to_end(&mut c, Duration::from_secs(5), Duration::from_secs(5)).end;
    (reply, end)
}

#[test]
fn sigterm_drains_in_flight_multiplexed_reply_and_exits_zero() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let mut proc = StrataProcess::spawn(&redis.addr(), &[]);
    let addr = format!("127.0.0.1:{}", proc.port);
    set_get(&addr, "warm").unwrap();

    // A slow command in flight on a multiplexed connection.
    let mut slow = raw::connect(&addr, Duration::from_secs(10));
    slow.write_all(&cmd(&[b"DEBUG", b"SLEEP", b"0.5"])).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let signalled = Instant::now();
    proc.sigterm();
    let reader = std::thread::spawn(move || reply_then_end(slow));
    let refused_at = wait_refused(&addr, signalled);

    let (reply, end) = reader.join().unwrap();
    let (reply, at) = reply.unwrap_or_else(|e| panic!("in-flight DEBUG SLEEP lost: {e}"));
    assert_eq!(reply, "+OK\\r\\n", "DEBUG SLEEP reply");
    assert!(refused_at < at, "the listener closed only after the drain");
    assert_eq!(end, End::Eof, "connection after its last reply");
    let status = wait_exit(&mut proc, signalled);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
}

#[test]
fn sigterm_drains_in_flight_blocking_reply_and_exits_zero() {
    let redis = RedisServer::start();
    let mut proc = StrataProcess::spawn(&redis.addr(), &[]);
    let addr = format!("127.0.0.1:{}", proc.port);
    set_get(&addr, "warm").unwrap();

    // A client blocked on a dedicated connection.
    let mut blocked = raw::connect(&addr, Duration::from_secs(10));
    blocked
        .write_all(&cmd(&[b"BLPOP", b"queue", b"5"]))
        .unwrap();
    wait_blocked(&redis, 1);

    let signalled = Instant::now();
    proc.sigterm();
    let reader = std::thread::spawn(move || reply_then_end(blocked));
    let refused_at = wait_refused(&addr, signalled);
    // The element arrives during the drain, pushed straight to Redis.
    std::thread::sleep(Duration::from_millis(200));
    let mut direct = raw::connect(&redis.addr(), Duration::from_secs(5));
    let pushed = call(
        &mut direct,
        &cmd(&[b"LPUSH", b"queue", b"x"]),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(pushed, b":1\r\n");

    let (reply, end) = reader.join().unwrap();
    let (reply, at) = reply.unwrap_or_else(|e| panic!("in-flight BLPOP lost: {e}"));
    assert_eq!(
        reply, "*2\\r\\n$5\\r\\nqueue\\r\\n$1\\r\\nx\\r\\n",
        "BLPOP reply"
    );
    assert!(refused_at < at, "the listener closed only after the drain");
    assert_eq!(end, End::Eof, "connection after its last reply");
    let status = wait_exit(&mut proc, signalled);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
}

#[test]
fn resp2_null_replies_pass_through_and_keep_connections_up() {
    let reference = RedisServer::start();
    let backend = RedisServer::start();
    let strata = InProc::start(test_config(&backend.addr()));
    strata.wait_ready();
    let wait = request_timeout() + SLACK;
    let requests = [
        cmd(&[b"SET", b"a", b"1"]),
        cmd(&[b"MGET", b"a", b"missing"]),
        cmd(&[b"BLPOP", b"empty", b"0.05"]),
        cmd(&[b"HMGET", b"nohash", b"f"]),
        cmd(&[b"GET", b"a"]),
    ];
    let mut r = raw::connect(&reference.addr(), wait);
    let mut s = raw::connect(&strata.addr, wait);
    for req in &requests {
        let want = call(&mut r, req, wait).unwrap();
        let got = call(&mut s, req, wait).unwrap_or_else(|e| panic!("{}: {e}", escape(req)));
        assert_eq!(escape(&got), escape(&want), "{}", escape(req));
    }
    // A MULTI whose EXEC is aborted by WATCH also answers `*-1`.
    let mut other = raw::connect(&strata.addr, wait);
    for (req, want) in [
        (cmd(&[b"WATCH", b"a"]), "+OK\\r\\n"),
        (cmd(&[b"MULTI"]), "+OK\\r\\n"),
        (cmd(&[b"GET", b"a"]), "+QUEUED\\r\\n"),
    ] {
        assert_eq!(escape(&call(&mut s, &req, wait).unwrap()), want);
    }
    assert_eq!(
        call(&mut other, &cmd(&[b"SET", b"a", b"2"]), wait).unwrap(),
        b"+OK\r\n"
    );
    assert_eq!(
        escape(&call(&mut s, &cmd(&[b"EXEC"]), wait).unwrap()),
        "*-1\\r\\n"
    );
    assert_eq!(call(&mut s, &cmd(&[b"PING"]), wait).unwrap(), b"+PONG\r\n");
    strata.shutdown();
}

fn check_config(path: &std::path::Path) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--check-config")
        .arg(path)
        .output()
        .expect("run strata --check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
    f
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/strata.toml");
    let temp;
    let path = if shipped.exists() {
        shipped.as_path()
    } else {
        eprintln!("note: conf/strata.toml is absent; checking a temporary valid file instead");
        temp = temp_config("[server]\nmaxclients = 100\n[backend]\naddress = \"127.0.0.1:7000\"\n");
        temp.path()
    };
    let (code, stdout, stderr) = check_config(path);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
}

#[test]
fn check_config_rejects_an_unknown_key_with_its_line() {
    let f = temp_config("[server]\nmaxclients = 5\n\nmax_client_count = 6\n");
    let (code, _, stderr) = check_config(f.path());
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("max_client_count"),
        "stderr does not name the key: {stderr}"
    );
    assert!(
        stderr.contains("line 4"),
        "stderr does not name the line: {stderr}"
    );
}

#[test]
fn check_config_rejects_a_wrong_type_with_its_line() {
    let f = temp_config("[backend]\naddress = \"127.0.0.1:7000\"\nconnections = \"two\"\n");
    let (code, _, stderr) = check_config(f.path());
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("connections"),
        "stderr does not name the key: {stderr}"
    );
    assert!(
        stderr.contains("line 3"),
        "stderr does not name the line: {stderr}"
    );
}

#[test]
fn check_config_rejects_an_out_of_range_value() {
    let f = temp_config("[server]\nmaxclients = 0\n");
    let (code, _, stderr) = check_config(f.path());
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(stderr.contains("server.maxclients"), "stderr: {stderr}");
}
