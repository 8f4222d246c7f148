//! Bad and awkward client input: strata must answer exactly as a real
//! redis-server does given the same bytes, never hang, and stay up.
//!
//! Every test starts its own redis-servers: a `reference` that the test
//! talks to directly, and a `backend` behind strata, both configured alike.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::inproc::InProc;
use support::raw::{self, call, cmd, escape, exchange, exchange_parts, read_frames, End, Outcome};
use support::strata::test_config;
use support::RedisServer;

/// The bulk limit both sides use (Redis refuses anything below 1mb).
const MAX_BULK: usize = 1024 * 1024;
/// Long enough for any answer here, short enough that a hang fails fast.
const IDLE: Duration = Duration::from_secs(5);

fn redis_pair(extra: &[&str]) -> (RedisServer, RedisServer) {
    let mut args = vec!["--proto-max-bulk-len", "1048576"];
    args.extend_from_slice(extra);
    (
        RedisServer::start_with(&args),
        RedisServer::start_with(&args),
    )
}

fn strata_for(backend: &RedisServer) -> InProc {
    let mut config = test_config(&backend.addr());
    config.server.proto_max_bulk_len = MAX_BULK;
    let s = InProc::start(config);
    s.wait_ready();
    s
}

/// Runs the same exchange against the reference and strata concurrently.
fn both<T, F>(reference: &str, strata: &str, f: F) -> (T, T)
where
    T: Send,
    F: Fn(&str) -> T + Sync,
{
    std::thread::scope(|scope| {
        let r = scope.spawn(|| f(reference));
        let s = scope.spawn(|| f(strata));
        (r.join().unwrap(), s.join().unwrap())
    })
}

fn assert_serves(addr: &str) {
    let mut c = raw::connect(addr, IDLE);
    let reply = call(&mut c, &cmd(&[b"SET", b"alive", b"yes"]), IDLE).unwrap();
    assert_eq!(escape(&reply), "+OK\\r\\n");
    let reply = call(&mut c, &cmd(&[b"GET", b"alive"]), IDLE).unwrap();
    assert_eq!(escape(&reply), "$3\\r\\nyes\\r\\n");
}

#[test]
fn protocol_errors_match_redis_and_close() {
    let (reference, backend) = redis_pair(&[]);
    let strata = strata_for(&backend);

    let mut too_big_inline = vec![b'a'; 70_000];
    too_big_inline[1] = b' ';
    let mut too_big_mbulk = b"*".to_vec();
    too_big_mbulk.extend_from_slice(&[b'1'; 70_000]);
    let mut too_big_bulk_count = b"*1\r\n$".to_vec();
    too_big_bulk_count.extend_from_slice(&[b'1'; 70_000]);
    let over_limit = format!("*2\r\n$3\r\nGET\r\n${}\r\n", MAX_BULK + 1).into_bytes();
    let at_limit_then_bad = format!("*2\r\n$3\r\nGET\r\n${}\r\n*x\r\n", MAX_BULK).into_bytes();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "letters as mbulk count",
            b"*abc\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "plus sign in mbulk count",
            b"*+1\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "mbulk count over INT_MAX",
            b"*3000000000\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "mbulk count over i64",
            b"*99999999999999999999\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "negative bulk length",
            b"*1\r\n$-5\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "null bulk in request",
            b"*1\r\n$-1\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "letters as bulk length",
            b"*1\r\n$abc\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "leading zero bulk length",
            b"*1\r\n$04\r\nPING\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "empty bulk length",
            b"*1\r\n$\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "missing $",
            b"*1\r\nPING\r\n".to_vec(),
            "expected '$', got 'P'",
        ),
        (
            "integer instead of bulk",
            b"*2\r\n$3\r\nGET\r\n:1\r\n".to_vec(),
            "expected '$', got ':'",
        ),
        (
            "bulk over proto-max-bulk-len",
            over_limit,
            "invalid bulk length",
        ),
        (
            "inline over 64 KiB",
            too_big_inline,
            "too big inline request",
        ),
        (
            "mbulk count string over 64 KiB",
            too_big_mbulk,
            "too big mbulk count string",
        ),
        (
            "bulk count string over 64 KiB",
            too_big_bulk_count,
            "too big bulk count string",
        ),
        (
            "unbalanced double quote",
            b"SET \"a b\r\n".to_vec(),
            "unbalanced quotes in request",
        ),
        (
            "unbalanced single quote",
            b"SET 'a b\r\n".to_vec(),
            "unbalanced quotes in request",
        ),
        (
            "text right after closing quote",
            b"SET \"a\"b c\r\n".to_vec(),
            "unbalanced quotes in request",
        ),
        (
            "error after a good command",
            b"*1\r\n$4\r\nPING\r\n*x\r\n".to_vec(),
            "invalid multibulk length",
        ),
    ];

    for (name, bytes, expected) in &cases {
        let (want, got) = both(&reference.addr(), &strata.addr, |addr| {
            exchange(addr, bytes, IDLE)
        });
        assert!(
            want.end.closed(),
            "{name}: redis kept the connection open: {}",
            want.text()
        );
        assert_eq!(
            got.text(),
            want.text(),
            "{name}: strata's reply differs from redis's"
        );
        assert!(
            got.end.closed(),
            "{name}: strata did not close the connection after the error (ended {:?})",
            got.end
        );
        let line = format!("-ERR Protocol error: {expected}\r\n");
        assert!(
            got.data.ends_with(line.as_bytes()),
            "{name}: expected {line:?}, got {}",
            got.text()
        );
    }
    // A header at the limit is no error by itself: redis waits for the 1 MiB
    // payload, which swallows the "*x" line, and keeps the connection open.
    let quiet = Duration::from_millis(500);
    let (want, got) = both(&reference.addr(), &strata.addr, |addr| {
        exchange(addr, &at_limit_then_bad, quiet)
    });
    assert_eq!(
        (want.end, want.text()),
        (End::Timeout, String::new()),
        "redis at the limit"
    );
    assert_eq!(
        (got.end, got.text()),
        (End::Timeout, String::new()),
        "strata at the limit"
    );
    assert_serves(&strata.addr);
    strata.shutdown();
}

#[test]
fn bulk_at_the_limit_is_accepted() {
    let (reference, backend) = redis_pair(&[]);
    let strata = strata_for(&backend);
    let value = vec![b'v'; MAX_BULK];
    let mut req = cmd(&[b"SET", b"big", &value]);
    req.extend_from_slice(&cmd(&[b"STRLEN", b"big"]));
    for addr in [reference.addr(), strata.addr.clone()] {
        let mut c = raw::connect(&addr, IDLE);
        c.write_all(&req).unwrap();
        let frames = read_frames(&mut c, 2, IDLE).unwrap();
        assert_eq!(escape(&frames[0]), "+OK\\r\\n", "{addr}");
        assert_eq!(escape(&frames[1]), format!(":{MAX_BULK}\\r\\n"), "{addr}");
    }
    strata.shutdown();
}

/// A pipeline of several commands, one byte per write.
fn pipeline() -> Vec<u8> {
    let big: Vec<u8> = (0..3 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut p = Vec::new();
    p.extend(cmd(&[b"SET", b"k", b"v"]));
    p.extend(cmd(&[b"GET", b"k"]));
    p.extend(cmd(&[b"SET", b"big", &big]));
    p.extend(cmd(&[b"GET", b"big"]));
    p.extend(cmd(&[b"HSET", b"h", b"f1", b"one", b"f2", b"two"]));
    p.extend(cmd(&[b"HGETALL", b"h"]));
    p.extend_from_slice(b"GET k\r\n");
    p.extend_from_slice(b"ECHO \"quoted\\x41 arg\"\n");
    p.extend(cmd(&[b"PING"]));
    p.extend_from_slice(b"PING inline\r\n");
    p.extend(cmd(&[b"DEL", b"k", b"big", b"h"]));
    p
}

fn byte_at_a_time(addr: &str, bytes: &[u8]) -> Outcome {
    let mut s = raw::connect(addr, IDLE);
    for (i, b) in bytes.iter().enumerate() {
        s.write_all(std::slice::from_ref(b)).unwrap();
        s.flush().unwrap();
        // Pause now and then so the bytes really arrive in separate reads.
        if i % 8 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    raw::read_to_end(&mut s, IDLE, IDLE * 2)
}

#[test]
fn bytes_one_at_a_time_give_redis_replies() {
    let (reference, backend) = redis_pair(&[]);
    let strata = strata_for(&backend);
    let bytes = pipeline();
    let (want, got) = both(&reference.addr(), &strata.addr, |addr| {
        byte_at_a_time(addr, &bytes)
    });
    assert_eq!(want.end, End::Eof, "redis: {}", want.text());
    assert!(
        want.text().contains("$3072\\r\\n"),
        "sanity: redis returned the big value"
    );
    assert_eq!(got.text(), want.text());
    assert_eq!(got.end, End::Eof);
    strata.shutdown();
}

#[test]
fn every_single_byte_deletion_matches_redis() {
    let (reference, backend) = redis_pair(&[]);
    let strata = strata_for(&backend);
    let originals: [&[u8]; 2] = [
        b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
        b"SET key value\r\n",
    ];
    let ping = cmd(&[b"PING"]);
    let pause = Duration::from_millis(40);
    let mut protocol_errors = 0;
    let mut answered = 0;
    for original in originals {
        for i in 0..original.len() {
            let mut mutated = original.to_vec();
            mutated.remove(i);
            let label = format!("{} without byte {i}", escape(original));
            let (want, got) = both(&reference.addr(), &strata.addr, |addr| {
                exchange_parts(addr, &[&mutated, &ping], pause, true, IDLE)
            });
            assert!(
                want.end.closed(),
                "{label}: redis did not close: {}",
                want.text()
            );
            assert!(
                got.end.closed(),
                "{label}: strata hung (no close within {IDLE:?}); got {}",
                got.text()
            );
            assert_eq!(
                got.text(),
                want.text(),
                "{label}: strata differs from redis"
            );
            if got.text().contains("-ERR Protocol error") {
                protocol_errors += 1;
            } else {
                answered += 1;
            }
        }
    }
    // Sanity: the mutations exercised both outcomes.
    assert!(
        protocol_errors > 0 && answered > 0,
        "{protocol_errors} errors, {answered} answered"
    );
    assert_serves(&strata.addr);
    strata.shutdown();
}

fn ping_ok(addr: &str) -> Result<std::net::TcpStream, String> {
    let mut c = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    c.set_nodelay(true).unwrap();
    let reply = call(&mut c, &cmd(&[b"PING"]), IDLE)?;
    if reply == b"+PONG\r\n" {
        Ok(c)
    } else {
        Err(escape(&reply))
    }
}

/// Two clients that answer PING, retrying while an earlier connection
/// (e.g. the harness's readiness probe) is still being torn down.
fn two_clients(addr: &str) -> (std::net::TcpStream, std::net::TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut held = Vec::new();
    while held.len() < 2 {
        match ping_ok(addr) {
            Ok(c) => held.push(c),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "{addr}: could not open 2 clients: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let b = held.pop().unwrap();
    let a = held.pop().unwrap();
    (a, b)
}

#[test]
fn maxclients_rejects_like_redis_and_recovers() {
    let reference = RedisServer::start_with(&["--maxclients", "2"]);
    let backend = RedisServer::start();
    let mut config = test_config(&backend.addr());
    config.server.maxclients = 2;
    let strata = InProc::start(config);
    strata.wait_ready();

    let (_ra, _rb) = two_clients(&reference.addr());
    let want = exchange(&reference.addr(), &cmd(&[b"PING"]), IDLE);
    assert_eq!(want.text(), "-ERR max number of clients reached\\r\\n");

    let (a, _b) = two_clients(&strata.addr);
    let got = exchange(&strata.addr, &cmd(&[b"PING"]), IDLE);
    assert_eq!(got.text(), want.text());
    assert!(got.end.closed(), "third client not closed: {:?}", got.end);

    // One leaves: a new client is accepted again (once strata sees the close).
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    let c = loop {
        match ping_ok(&strata.addr) {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no slot freed after a client left: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    // And the limit still holds with two connected again.
    let again = exchange(&strata.addr, &cmd(&[b"PING"]), IDLE);
    assert_eq!(again.text(), "-ERR max number of clients reached\\r\\n");
    drop(c);
    strata.shutdown();
}

#[test]
fn unknown_commands_and_wrong_arity_match_redis() {
    let (reference, backend) = redis_pair(&[]);
    let strata = strata_for(&backend);
    let requests: Vec<Vec<u8>> = vec![
        b"FOOBAR\r\n".to_vec(),
        cmd(&[b"foobar", b"a", b"b"]),
        cmd(&[b"NOT-A-COMMAND"]),
        b"PING a b\r\n".to_vec(),
        cmd(&[b"PING", b"a", b"b", b"c"]),
        b"ECHO\r\n".to_vec(),
        cmd(&[b"ECHO", b"a", b"b"]),
        b"SELECT\r\n".to_vec(),
        cmd(&[b"SELECT", b"1", b"2"]),
        cmd(&[b"SELECT", b"abc"]),
        cmd(&[b"SELECT", b"-1"]),
        cmd(&[b"AUTH"]),
        cmd(&[b"HELLO", b"x"]),
        cmd(&[b"HELLO", b"4"]),
        cmd(&[b"READONLY", b"x"]),
        cmd(&[b"READWRITE", b"x"]),
        cmd(&[b"RESET", b"x"]),
        cmd(&[b"CLIENT"]),
        cmd(&[b"CLIENT", b"NOSUCHSUB"]),
        cmd(&[b"CLIENT", b"SETNAME"]),
        cmd(&[b"CLIENT", b"SETNAME", b"a", b"b"]),
        cmd(&[b"CLIENT", b"SETNAME", b"has space"]),
        cmd(&[b"CLIENT", b"GETNAME", b"x"]),
        cmd(&[b"CLIENT", b"ID", b"x"]),
        cmd(&[b"CLIENT", b"INFO", b"x"]),
        cmd(&[b"CLIENT", b"REPLY"]),
        cmd(&[b"CLIENT", b"REPLY", b"maybe"]),
        cmd(&[b"CLIENT", b"NO-EVICT"]),
        cmd(&[b"GET"]),
        cmd(&[b"SET", b"k"]),
        cmd(&[b"EXEC"]),
        cmd(&[b"DISCARD"]),
        cmd(&[b"MULTI", b"x"]),
        cmd(&[b"BLPOP", b"k"]),
        cmd(&[b"SUBSCRIBE"]),
    ];
    let mut r = raw::connect(&reference.addr(), IDLE);
    let mut s = raw::connect(&strata.addr, IDLE);
    let mut mismatches = Vec::new();
    for req in &requests {
        let want = call(&mut r, req, IDLE).unwrap();
        let got = call(&mut s, req, IDLE).unwrap_or_else(|e| panic!("{}: {e}", escape(req)));
        assert_eq!(
            want.first(),
            Some(&b'-'),
            "sanity: redis errors on {}",
            escape(req)
        );
        if got != want {
            mismatches.push(format!(
                "{}\n   redis:  {}\n   strata: {}",
                escape(req),
                escape(&want),
                escape(&got)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "replies differ:\n{}",
        mismatches.join("\n")
    );
    // Both connections are still usable afterwards.
    assert_eq!(call(&mut s, &cmd(&[b"PING"]), IDLE).unwrap(), b"+PONG\r\n");
    strata.shutdown();
}

#[test]
fn pipelining_flood_without_reading_keeps_memory_bounded() {
    use support::strata::StrataProcess;
    let backend = RedisServer::start();
    let proc = StrataProcess::spawn(&backend.addr(), &[]);
    let addr = format!("127.0.0.1:{}", proc.port);
    let pid = proc.child.id();

    // 16 KiB per reply: 200k unread replies would be over 3 GB if buffered.
    let value = vec![b'x'; 16 * 1024];
    let mut c = raw::connect(&addr, IDLE);
    assert_eq!(
        call(&mut c, &cmd(&[b"SET", b"big", &value]), IDLE).unwrap(),
        b"+OK\r\n"
    );
    assert_eq!(
        call(&mut c, &cmd(&[b"GET", b"big"]), IDLE).unwrap().len(),
        value.len() + 10
    );
    let before_kb = raw::proc_status_kb(pid, "VmRSS");

    let flood_addr = addr.clone();
    let flood = std::thread::spawn(move || {
        let mut s = raw::connect(&flood_addr, IDLE);
        s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        let batch = cmd(&[b"GET", b"big"]).repeat(1000);
        let mut sent = 0usize;
        for _ in 0..200 {
            if s.write_all(&batch).is_err() {
                break; // strata stopped reading: backpressure reached us
            }
            sent += 1000;
        }
        (s, sent)
    });
    // Others are served while the flood is going on.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            call(&mut c, &cmd(&[b"INCR", b"counter"]), IDLE).unwrap()[0],
            b':'
        );
        let mut fresh = raw::connect(&addr, IDLE);
        assert_eq!(
            call(&mut fresh, &cmd(&[b"PING"]), IDLE).unwrap(),
            b"+PONG\r\n"
        );
    }
    let (flood_conn, sent) = flood.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let after_kb = raw::proc_status_kb(pid, "VmRSS");
    let peak_kb = raw::proc_status_kb(pid, "VmHWM");
    eprintln!("flood: {sent} GETs written; RSS {before_kb} kB -> {after_kb} kB, peak {peak_kb} kB");
    let bound_kb = 200 * 1024;
    assert!(
        peak_kb.saturating_sub(before_kb) < bound_kb,
        "RSS grew from {before_kb} kB to a peak of {peak_kb} kB with an unread pipeline"
    );
    // Still serving, with the flooder still connected and unread.
    assert_eq!(
        call(&mut c, &cmd(&[b"GET", b"big"]), IDLE).unwrap().len(),
        value.len() + 10
    );
    drop(flood_conn);
    let mut fresh = raw::connect(&addr, IDLE);
    assert_eq!(
        call(&mut fresh, &cmd(&[b"PING"]), IDLE).unwrap(),
        b"+PONG\r\n"
    );
}

/// Sends `first`, reads what comes within a second, then sends 70 000 more
/// bytes (no newline, no CR) and reads to the end.
fn then_overflow(addr: &str, first: &[u8]) -> (Outcome, Outcome) {
    let quiet = Duration::from_millis(1000);
    let mut s = raw::connect(addr, quiet);
    s.write_all(first).unwrap();
    let before = raw::read_to_end(&mut s, quiet, quiet);
    let _ = s.write_all(&[b'a'; 70_000]);
    let after = raw::read_to_end(&mut s, IDLE, IDLE * 2);
    (before, after)
}

/// An inline request with a NUL byte: Redis's strchr(querybuf, '\\n') stops
/// at the NUL, so the line never completes; it waits, and past 64 KiB answers
/// "too big inline request". strata must do the same, and stay up.
#[test]
fn inline_nul_byte_is_buffered_like_redis_and_strata_survives() {
    let (reference, backend) = redis_pair(&[]);
    // Capped: this input once made split_args allocate without bound; a
    // regression must abort strata, not take the machine's memory.
    let mut proc = raw::spawn_strata_capped(&backend.addr(), 2048);
    let addr = format!("127.0.0.1:{}", proc.port);
    let lines: [&[u8]; 3] = [b"PING\0\r\nPING\r\n", b"SET a\0b c\r\n", b"\0\n"];
    for line in lines {
        let ((want_before, want_after), (got_before, got_after)) =
            both(&reference.addr(), &addr, |a| then_overflow(a, line));
        let label = escape(line);
        std::thread::sleep(Duration::from_millis(300)); // let a dying strata be reaped
        if let Some(status) = proc.child.try_wait().unwrap() {
            panic!(
                "{label}: strata died ({status}); it had answered {:?} then {:?}",
                got_before.text(),
                got_after.text()
            );
        }
        assert_eq!(
            want_before.end,
            End::Timeout,
            "{label}: redis answered {}",
            want_before.text()
        );
        assert_eq!(
            (got_before.end, got_before.text()),
            (want_before.end, want_before.text()),
            "{label}: before the overflow"
        );
        assert_eq!(
            got_after.text(),
            want_after.text(),
            "{label}: after the overflow"
        );
        assert!(got_after.end.closed(), "{label}: {:?}", got_after.end);
    }
    assert_serves(&addr);
}

/// A NUL byte in a `*` or `$` header line: Redis's strchr(querybuf, '\\r')
/// stops at the NUL, so it waits, and past 64 KiB answers "too big mbulk/bulk
/// count string".
#[test]
fn nul_byte_in_a_header_matches_redis() {
    let (reference, backend) = redis_pair(&[]);
    let strata = strata_for(&backend);
    let cases: [&[u8]; 2] = [b"*1\0\r\n$4\r\nPING\r\n", b"*1\r\n$4\0\r\nPING\r\n"];
    for bytes in cases {
        let ((want_before, want_after), (got_before, got_after)) =
            both(&reference.addr(), &strata.addr, |a| then_overflow(a, bytes));
        let label = escape(bytes);
        assert_eq!(
            (got_before.end, got_before.text()),
            (want_before.end, want_before.text()),
            "{label}: before the overflow"
        );
        assert_eq!(
            got_after.text(),
            want_after.text(),
            "{label}: after the overflow"
        );
        assert!(got_after.end.closed(), "{label}: {:?}", got_after.end);
    }
    strata.shutdown();
}

/// A client from `source` (any 127/8 address is loopback on Linux):
/// tokio's `TcpSocket` binds a source address before it connects.
fn connect_from(source: &str, addr: &str) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{source}:0").parse().unwrap()).unwrap();
        s.connect(addr.parse().unwrap())
            .await
            .unwrap()
            .into_std()
            .unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(IDLE)).unwrap();
    stream
}

fn ping_from(c: &mut std::net::TcpStream) -> String {
    use std::io::{Read, Write};
    c.write_all(&cmd(&[b"PING"])).unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn max_clients_per_address_turns_away_one_address_only() {
    let backend = RedisServer::start();
    let mut config = test_config(&backend.addr());
    config.server.max_clients_per_address = 2;
    let strata = InProc::start(config);
    strata.wait_ready();

    let mut a = connect_from("127.0.0.1", &strata.addr);
    let mut b = connect_from("127.0.0.1", &strata.addr);
    assert_eq!(ping_from(&mut a), "+PONG\r\n");
    assert_eq!(ping_from(&mut b), "+PONG\r\n");
    let mut third = connect_from("127.0.0.1", &strata.addr);
    assert_eq!(
        ping_from(&mut third),
        "-ERR max number of clients reached for this address\r\n"
    );
    // Another address is still welcome.
    let mut other = connect_from("127.0.0.2", &strata.addr);
    assert_eq!(ping_from(&mut other), "+PONG\r\n");

    // One leaves: its address may connect again once strata sees the close.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = connect_from("127.0.0.1", &strata.addr);
        if ping_from(&mut c) == "+PONG\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed for 127.0.0.1");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(b);
    strata.shutdown();
}
