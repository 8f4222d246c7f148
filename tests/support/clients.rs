//! Helpers for the client-compatibility tests (`tests/clients*.rs`): a
//! redis-server with strata in front of it, raw RESP connections with an
//! independent frame parser, redis-rs connections, redis-cli, and metrics.
//!
//! The RESP framing here is written separately from strata's own, so a
//! framing bug in strata cannot hide in both places.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::RedisServer;
use strata::app::Running;

/// How long a test waits for a reply that should come, before failing.
pub const REPLY_WAIT: Duration = Duration::from_secs(10);

/// A redis-server with strata in front of it.
pub struct Env {
    /// The backend.
    pub redis: RedisServer,
    /// strata, running in this process.
    pub running: Running,
}

impl Env {
    /// Starts a fresh redis-server and strata, and waits until strata is ready.
    pub async fn start() -> Env {
        Env::start_with(&[]).await
    }

    /// Like [`Env::start`], with extra redis-server arguments.
    pub async fn start_with(redis_args: &[&str]) -> Env {
        let redis = RedisServer::start_with(redis_args);
        let running = super::strata::start(&redis.addr()).await;
        super::strata::wait_ready(&running).await;
        Env { redis, running }
    }

    /// strata's client address.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// strata's client port.
    pub fn port(&self) -> u16 {
        self.running.addr.port()
    }

    /// strata's HTTP (metrics/health) address.
    pub fn http(&self) -> SocketAddr {
        self.running.http_addr.expect("metrics enabled in tests")
    }

    /// A redis-rs connection through strata (RESP2).
    pub async fn con(&self) -> redis::aio::MultiplexedConnection {
        connect_rs(&format!("redis://{}/", self.addr())).await
    }

    /// A redis-rs connection through strata speaking RESP3.
    pub async fn con3(&self) -> redis::aio::MultiplexedConnection {
        connect_rs(&format!("redis://{}/?protocol=resp3", self.addr())).await
    }

    /// A redis-rs connection straight to the backend, bypassing strata.
    pub async fn backend_con(&self) -> redis::aio::MultiplexedConnection {
        connect_rs(&self.redis.url()).await
    }

    /// A raw connection through strata.
    pub async fn raw(&self) -> RawConn {
        RawConn::connect(&self.addr().to_string()).await
    }

    /// A raw connection straight to the backend.
    pub async fn raw_backend(&self) -> RawConn {
        RawConn::connect(&self.redis.addr()).await
    }
}

/// A redis-rs multiplexed connection with generous timeouts (the default
/// 500 ms response timeout is too tight for a loaded 2-core test machine;
/// this is a correctness suite, not a benchmark).
pub async fn connect_rs(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("redis url");
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(30)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("redis-rs connects")
}

/// Encodes a command as a RESP multibulk.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Encodes a whitespace-separated command line as a RESP multibulk.
pub fn encode_line(line: &str) -> Vec<u8> {
    let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
    encode(&args)
}

/// The length of the first complete RESP2/RESP3 frame in `buf`, `None` when
/// more bytes are needed. Panics on bytes that are not RESP.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let cr = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = &buf[1..cr];
    let after = cr + 2;
    let num = || -> i64 {
        std::str::from_utf8(head)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "bad RESP length in {:?}",
                    String::from_utf8_lossy(&buf[..cr])
                )
            })
    };
    match buf[0] {
        b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => Some(after),
        b'$' | b'!' | b'=' => {
            let n = num();
            if n < 0 {
                return Some(after);
            }
            let total = after + n as usize + 2;
            (buf.len() >= total).then_some(total)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = num();
            if n < 0 {
                return Some(after);
            }
            let elems = if matches!(buf[0], b'%' | b'|') {
                n * 2
            } else {
                n
            };
            let mut pos = after;
            for _ in 0..elems {
                pos += frame_len(&buf[pos..])?;
            }
            if buf[0] == b'|' {
                // An attribute annotates the frame that follows it.
                pos += frame_len(&buf[pos..])?;
            }
            Some(pos)
        }
        other => panic!(
            "not a RESP frame (type byte {:?}): {:?}",
            other as char,
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        ),
    }
}

/// Lossy text of a frame, for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
    s.replace("\r\n", "\\r\\n")
}

/// A raw TCP connection that speaks RESP bytes and reads whole frames.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects to `addr`.
    pub async fn connect(addr: &str) -> RawConn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// Writes bytes as they are, in one write.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends a command (args as bytes) and reads one reply frame.
    pub async fn call(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode(args)).await;
        self.read_frame().await
    }

    /// Sends a whitespace-separated command and reads one reply frame.
    pub async fn cmd(&mut self, line: &str) -> Vec<u8> {
        self.send(&encode_line(line)).await;
        self.read_frame().await
    }

    /// Sends `bytes` (a pipeline) in one write and asserts that the replies
    /// are exactly `replies`, in order.
    pub async fn pipeline(&mut self, bytes: &[u8], replies: &[&[u8]]) {
        self.send(bytes).await;
        for (i, want) in replies.iter().enumerate() {
            let got = self.read_frame().await;
            assert_eq!(show(&got), show(want), "reply {i} to {}", show(bytes));
        }
    }

    /// Sends a command and asserts its reply is exactly `expected`.
    pub async fn expect(&mut self, line: &str, expected: &[u8]) {
        let got = self.cmd(line).await;
        assert_eq!(show(&got), show(expected), "reply to {line:?}");
    }

    /// Reads one frame; panics if none comes within [`REPLY_WAIT`].
    pub async fn read_frame(&mut self) -> Vec<u8> {
        match self.read_frame_within(REPLY_WAIT).await {
            Some(f) => f,
            None => panic!(
                "no complete reply within {REPLY_WAIT:?}; buffered: {}",
                show(&self.buf)
            ),
        }
    }

    /// Reads one frame, or `None` if the peer closes or `wait` passes first.
    pub async fn read_frame_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(len) = frame_len(&self.buf) {
                return Some(self.buf.drain(..len).collect());
            }
            // Read into the heap buffer: a large array here would sit in
            // every caller's future (and overflow the test thread's stack).
            self.buf.reserve(64 * 1024);
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match n {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Asserts that nothing at all arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if !self.buf.is_empty() {
            panic!("unexpected bytes: {}", show(&self.buf));
        }
        let mut chunk = vec![0u8; 4096];
        match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            Err(_) => {}
            Ok(Ok(0)) => panic!("connection closed while expecting silence"),
            Ok(Ok(n)) => panic!("unexpected bytes: {}", show(&chunk[..n])),
            Ok(Err(e)) => panic!("read error while expecting silence: {e}"),
        }
    }

    /// Asserts that the peer closes the connection (after any buffered frames
    /// were read) within [`REPLY_WAIT`].
    pub async fn expect_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {}",
            show(&self.buf)
        );
        let mut chunk = vec![0u8; 4096];
        match tokio::time::timeout(REPLY_WAIT, self.stream.read(&mut chunk)).await {
            Err(_) => panic!("connection still open after {REPLY_WAIT:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("bytes instead of close: {}", show(&chunk[..n])),
        }
    }
}

/// The output of one redis-cli run.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit status success.
    pub success: bool,
    /// Standard output, lossy UTF-8.
    pub stdout: String,
    /// Standard error, lossy UTF-8.
    pub stderr: String,
}

/// Runs `redis-cli -p <port> <args…>` with `stdin` (empty when `None`), on a
/// blocking thread so the runtime keeps serving strata meanwhile.
pub async fn redis_cli(port: u16, args: &[&str], stdin: Option<Vec<u8>>) -> CliOutput {
    let bin = super::require_binary("redis-cli", "redis-tools");
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(port.to_string())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn redis-cli");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.unwrap_or_default();
        // Write from another thread: redis-cli may answer before it has read all.
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("redis-cli runs");
        let _ = writer.join();
        CliOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("redis-cli thread")
}

/// The value of the metric line whose name-and-labels part is exactly
/// `series` (e.g. `strata_commands_total{command="get"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// Fetches /metrics and returns the body (asserting status 200).
pub async fn metrics_text(http: SocketAddr) -> String {
    let (status, body) = super::strata::http_get(http, "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}
