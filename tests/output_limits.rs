//! Client output-buffer limits (`server.client_output_buffer_limit`, as
//! Redis's `client-output-buffer-limit`): a subscriber that stops reading
//! under a flood of messages is closed at its limit while strata's memory
//! stays bounded; a subscriber that reads gets every message; a normal
//! client whose reply breaks the normal limit is closed, as Redis does.
//!
//! The backend's own pubsub limit is turned off (`pubsub 0 0 0`), so only
//! strata's limit can close anyone: without it, strata would stop reading a
//! slow subscriber's connection and the flood would sit in Redis.
#![allow(clippy::unwrap_used)]
mod support;

use std::io::Write as _;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// strata's resident set size in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A backend without its own pubsub limit, and the strata binary in front
/// of it with `limits` as its output-buffer limits.
fn start(
    limits: &[&str],
) -> (
    support::RedisServer,
    support::strata::StrataProcess,
    tempfile::NamedTempFile,
) {
    let redis = support::RedisServer::start_with(&["--client-output-buffer-limit", "pubsub 0 0 0"]);
    let mut config = tempfile::NamedTempFile::new().unwrap();
    let lines: Vec<String> = limits.iter().map(|l| format!("\"{l}\"")).collect();
    writeln!(
        config,
        "[server]\nclient_output_buffer_limit = [{}]",
        lines.join(", ")
    )
    .unwrap();
    let path = config.path().to_str().unwrap().to_string();
    let strata = support::strata::StrataProcess::spawn(&redis.addr(), &["--config", &path]);
    (redis, strata, config)
}

/// A client connection with a small receive buffer (no autotuning), so a
/// client that stops reading is felt after kilobytes, not megabytes.
async fn small_window_client(port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap()
}

async fn read_some(s: &mut TcpStream, want: &[u8]) {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.windows(want.len()).any(|w| w == want) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .expect("reply in time")
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Waits until Redis holds nothing for its pub/sub connections (strata
/// read everything published so far), or none is left.
fn wait_backend_drained(redis: &support::RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = redis.raw(b"CLIENT LIST TYPE pubsub\r\n", Duration::from_millis(20));
        let text = String::from_utf8_lossy(&list);
        let held: u64 = text
            .split_whitespace()
            .filter_map(|f| f.strip_prefix("omem="))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum();
        if held == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Redis still holds {held} bytes for strata"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn publish(
    redis: &support::RedisServer,
    publisher: &mut std::net::TcpStream,
    payload: &str,
) -> i64 {
    let _ = redis;
    publisher
        .write_all(
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n$5\r\nflood\r\n${}\r\n{payload}\r\n",
                payload.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    use std::io::Read as _;
    while !line.ends_with(b"\r\n") {
        publisher.read_exact(&mut byte).unwrap();
        line.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&line);
    text.trim()
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("PUBLISH answered {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_subscriber_that_does_not_read_is_closed_and_memory_stays_bounded() {
    let (redis, strata, _config) = start(&["pubsub 4mb 0 0"]);
    let pid = strata.child.id();
    let mut sub = small_window_client(strata.port).await;
    sub.write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nflood\r\n")
        .await
        .unwrap();
    read_some(&mut sub, b"flood\r\n:1\r\n").await;
    let before = rss_kib(pid);

    // Publish straight to Redis, 64 KiB at a time, until nobody hears it
    // any more; at most 512 MiB, which the subscriber never reads.
    let mut publisher = std::net::TcpStream::connect(redis.addr()).unwrap();
    let payload = "m".repeat(64 * 1024);
    let mut published = 0usize;
    let mut peak = before;
    let mut closed_after = None;
    for i in 0..8192 {
        if publish(&redis, &mut publisher, &payload) == 0 {
            closed_after = Some(published);
            break;
        }
        published += payload.len();
        if i % 16 == 0 {
            peak = peak.max(rss_kib(pid));
            // Paced by strata, not by the machine's speed: go on once
            // strata has read what Redis holds for its connection.
            wait_backend_drained(&redis);
        }
    }
    peak = peak.max(rss_kib(pid));
    eprintln!(
        "strata RSS {before} KiB before the flood, peak {peak} KiB; subscriber closed after {} MiB published",
        closed_after.unwrap_or(published) >> 20
    );
    let closed_after = closed_after.expect("the subscriber was never closed: 512 MiB published");
    assert!(
        closed_after < 64 << 20,
        "closed only after {closed_after} bytes with a 4 MiB limit"
    );
    // The limit (4 MiB) plus a read batch, the kernel's buffers not counted
    // in RSS: far under the 64 MiB or more published to it.
    assert!(
        peak - before < 32 * 1024,
        "strata's RSS grew by {} KiB",
        peak - before
    );

    // The subscriber reads what was written to it, then finds the
    // connection closed.
    let mut sink = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline.into(), sub.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the subscriber's connection was not closed"),
        }
    }
    let metrics = support::clients::metrics_text(
        format!("127.0.0.1:{}", strata.metrics_port)
            .parse()
            .unwrap(),
    )
    .await;
    assert_eq!(
        support::clients::metric(
            &metrics,
            "strata_errors_total{kind=\"output_buffer_limit\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(strata.logs.lock().unwrap().contains("output buffer limits"));

    // Other clients are served as before.
    let mut other = support::clients::RawConn::connect(&format!("127.0.0.1:{}", strata.port)).await;
    other.expect("PING", b"+PONG\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_reads_gets_every_message_in_order_under_a_limit() {
    // Limits the whole flood (20,000 messages, ~4.6 MB) stays under, however
    // slowly this test reads on a loaded machine: the buffered path is taken,
    // and only its order and completeness are under test.
    let (redis, strata, _config) = start(&["pubsub 64mb 32mb 60"]);
    let mut sub = small_window_client(strata.port).await;
    sub.write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nflood\r\n")
        .await
        .unwrap();
    read_some(&mut sub, b"flood\r\n:1\r\n").await;

    const N: usize = 20_000;
    let addr = redis.addr();
    let publisher = std::thread::spawn(move || {
        let mut p = std::net::TcpStream::connect(addr).unwrap();
        let mut out = Vec::new();
        for i in 0..N {
            let payload = format!("{i:0>200}");
            out.extend_from_slice(
                format!(
                    "*3\r\n$7\r\nPUBLISH\r\n$5\r\nflood\r\n${}\r\n{payload}\r\n",
                    payload.len()
                )
                .as_bytes(),
            );
        }
        p.write_all(&out).unwrap();
        // One ":1" per message, read to the end.
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        use std::io::Read as _;
        while got < N * 4 {
            let n = p.read(&mut buf).unwrap();
            assert!(n > 0);
            got += n;
        }
    });
    // Every message, in order, whole.
    let mut buf = Vec::new();
    let mut next = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < N {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout_at(deadline.into(), sub.read(&mut chunk))
            .await
            .expect("messages in time")
            .unwrap();
        assert!(n > 0, "closed after {next} messages");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(len) = support::clients::frame_len(&buf) {
            let frame: Vec<u8> = buf.drain(..len).collect();
            let want = format!("{next:0>200}");
            assert!(
                frame.ends_with(format!("$200\r\n{want}\r\n").as_bytes()),
                "message {next}: {}",
                support::clients::show(&frame)
            );
            next += 1;
        }
    }
    publisher.join().unwrap();
    // Still subscribed, and commands are answered.
    sub.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    read_some(&mut sub, b"pong").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_past_the_normal_hard_limit_closes_the_client_as_redis_does() {
    let (redis, strata, _config) = start(&["normal 1mb 0 0"]);
    let value = "v".repeat(2 << 20);
    let mut load = support::clients::encode(&[b"SET", b"big", value.as_bytes()]);
    load.extend(support::clients::encode(&[b"SET", b"small", b"x"]));
    redis.raw(&load, Duration::from_millis(500));
    // Redis itself, with the same limit, closes the client.
    let direct =
        support::RedisServer::start_with(&["--client-output-buffer-limit", "normal 1mb 0 0"]);
    direct.raw(&load, Duration::from_millis(500));
    for port in [direct.addr(), format!("127.0.0.1:{}", strata.port)] {
        let mut c = support::clients::RawConn::connect(&port).await;
        c.expect("GET small", b"$1\r\nx\r\n").await;
        c.send(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n").await;
        c.expect_closed().await;
    }
    // A client reading within the limit is served.
    let mut c = support::clients::RawConn::connect(&format!("127.0.0.1:{}", strata.port)).await;
    c.expect("GET small", b"$1\r\nx\r\n").await;
}
