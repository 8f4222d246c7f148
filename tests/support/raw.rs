//! Raw-socket helpers: send exact bytes, read exact bytes, and say how the
//! conversation ended. Used to compare strata with a real redis-server byte
//! for byte, and to poke at processes (RSS, signals).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// How a read-until-the-end finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer closed the connection (FIN).
    Eof,
    /// The peer reset the connection (it closed with our bytes unread).
    Reset,
    /// Nothing arrived for the whole timeout: the peer kept the connection open.
    Timeout,
}

impl End {
    /// True when the peer closed the connection, cleanly or not.
    pub fn closed(self) -> bool {
        matches!(self, End::Eof | End::Reset)
    }
}

/// What came back from a raw exchange.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every byte received.
    pub data: Vec<u8>,
    /// How it ended.
    pub end: End,
}

impl Outcome {
    /// The received bytes, escaped for assertion messages.
    pub fn text(&self) -> String {
        escape(&self.data)
    }
}

/// Escapes bytes for messages: printable ASCII as is, the rest as `\r`, `\n`, `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// Connects with TCP_NODELAY and a read timeout.
pub fn connect(addr: &str, read_timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(read_timeout))
        .expect("read timeout");
    s
}

/// Reads until the peer closes, or until `idle` passes with nothing new, or
/// until `total` passes in all.
pub fn read_to_end(s: &mut TcpStream, idle: Duration, total: Duration) -> Outcome {
    let deadline = Instant::now() + total;
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome {
                data,
                end: End::Timeout,
            };
        }
        let _ = s.set_read_timeout(Some(idle.min(left).max(Duration::from_millis(1))));
        match s.read(&mut buf) {
            Ok(0) => {
                return Outcome {
                    data,
                    end: End::Eof,
                }
            }
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Outcome {
                    data,
                    end: End::Timeout,
                };
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                return Outcome {
                    data,
                    end: End::Reset,
                }
            }
        }
    }
}

/// Sends `parts` (pausing `pause` between them), optionally half-closes,
/// then reads until the peer closes or is silent for `idle`.
pub fn exchange_parts(
    addr: &str,
    parts: &[&[u8]],
    pause: Duration,
    close_write: bool,
    idle: Duration,
) -> Outcome {
    let mut s = connect(addr, idle);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 && !pause.is_zero() {
            std::thread::sleep(pause);
        }
        if s.write_all(part).is_err() {
            // The peer already closed (protocol error): collect what it said.
            break;
        }
    }
    if close_write {
        let _ = s.shutdown(Shutdown::Write);
    }
    read_to_end(&mut s, idle, idle * 4)
}

/// Sends `bytes` without half-closing and reads until the peer closes or is
/// silent for `idle`.
pub fn exchange(addr: &str, bytes: &[u8], idle: Duration) -> Outcome {
    exchange_parts(addr, &[bytes], Duration::ZERO, false, idle)
}

/// Reads exactly `n` complete reply frames (RESP2 or RESP3), failing after
/// `timeout`. Frames are split with redis-protocol's decoder, not strata's.
pub fn read_frames(s: &mut TcpStream, n: usize, timeout: Duration) -> Result<Vec<Vec<u8>>, String> {
    let deadline = Instant::now() + timeout;
    let mut buf: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while frames.len() < n {
        if let Some(len) = first_frame_len(&buf)? {
            frames.push(buf.drain(..len).collect());
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "timed out after {timeout:?} with {} of {n} frames; partial: {}",
                frames.len(),
                escape(&buf)
            ));
        }
        let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match s.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "connection closed after {} of {n} frames; got {:?}, partial: {}",
                    frames.len(),
                    frames
                        .iter()
                        .map(|f: &Vec<u8>| escape(f))
                        .collect::<Vec<_>>(),
                    escape(&buf)
                ))
            }
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                return Err(format!(
                    "read failed after {} of {n} frames: {e}; partial: {}",
                    frames.len(),
                    escape(&buf)
                ))
            }
        }
    }
    Ok(frames)
}

/// One request, one reply frame.
pub fn call(s: &mut TcpStream, request: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    s.write_all(request)
        .map_err(|e| format!("write failed: {e}"))?;
    let mut frames = read_frames(s, 1, timeout)?;
    Ok(frames.remove(0))
}

/// The length of the first complete reply frame (RESP2 or RESP3) in `buf`,
/// `None` when more bytes are needed. Written independently of strata's
/// framing (and of redis-protocol, which rejects RESP2 nulls), so a framing
/// bug cannot hide on both sides of an assertion.
pub fn first_frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    frame_at(buf, 0).map_err(|e| format!("undecodable reply ({e}): {}", escape(buf)))
}

/// The end of the frame starting at `pos`, `None` when incomplete.
fn frame_at(buf: &[u8], pos: usize) -> Result<Option<usize>, String> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(line_end) = buf[pos..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| pos + i)
    else {
        return Ok(None);
    };
    let line = &buf[pos + 1..line_end];
    let next = line_end + 2;
    let number = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad length {:?}", escape(line)))
    };
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(next)),
        b'$' | b'!' | b'=' => {
            let n = number()?;
            if n < 0 {
                return Ok(Some(next));
            }
            let end = next + n as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number()?;
            let mut at = next;
            let elements = if matches!(kind, b'%' | b'|') {
                n * 2
            } else {
                n
            };
            for _ in 0..elements.max(0) {
                match frame_at(buf, at)? {
                    Some(end) => at = end,
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // Attributes precede the frame they annotate.
                return frame_at(buf, at);
            }
            Ok(Some(at))
        }
        other => Err(format!("unknown frame type {:?}", other as char)),
    }
}

/// Encodes arguments as a RESP multibulk command (independently of strata's encoder).
pub fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A field of /proc/<pid>/status in kB (e.g. "VmRSS", "VmHWM").
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    text.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Sends a signal by name (`STOP`, `CONT`, `TERM`, …) with kill(1).
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Spawns the real strata binary like `StrataProcess::spawn`, but with its
/// address space capped at `mem_mb` MiB (`ulimit -v`), for tests that may
/// trigger unbounded allocation: the process then aborts instead of eating
/// the machine's memory.
pub fn spawn_strata_capped(backend: &str, mem_mb: u64) -> super::strata::StrataProcess {
    use std::process::{Command, Stdio};
    let port = super::free_port();
    let metrics_port = super::free_port();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {} && exec \"$@\"", mem_mb * 1024))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--backend")
        .arg(backend)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .arg("--log-level")
        .arg("warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strata under ulimit");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "capped strata did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    super::strata::StrataProcess {
        child,
        port,
        metrics_port,
        logs: Default::default(),
    }
}
