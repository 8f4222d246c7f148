//! Logs go through tracing and never contain values or passwords, even at
//! the most verbose level.
#![allow(clippy::unwrap_used)]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::strata::StrataProcess;
use support::RedisServer;

fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(bytes).unwrap();
    // Every reply that comes within the read timeout: replies to one
    // write may arrive in several reads (AUTH is checked on the backend).
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    out
}

#[test]
fn trace_logs_hold_no_values_or_passwords() {
    let mut redis = RedisServer::start();
    let strata = StrataProcess::spawn(&redis.addr(), &["--log-level", "trace"]);
    let secret_value = "s3cr3t-value-6f1e";
    let secret_password = "p4ssw0rd-9a2c";
    let secret_name = "n4me-77b1";
    let reply = exchange(
        strata.port,
        format!(
            "SET k {secret_value}\r\nGET k\r\nAUTH default {secret_password}\r\nHELLO 3 AUTH default {secret_password} SETNAME {secret_name}\r\n"
        )
        .as_bytes(),
    );
    assert!(
        reply.starts_with(b"+OK\r\n$"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    // A protocol error and a backend failure are logged paths too.
    let _ = exchange(strata.port, format!("*1\r\n{secret_value}\r\n").as_bytes());
    redis.kill();
    let _ = exchange(strata.port, format!("SET k2 {secret_value}\r\n").as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    let logs = strata.logs.lock().unwrap().clone();
    assert!(!logs.is_empty(), "expected trace logs");
    for secret in [secret_value, secret_password, secret_name] {
        assert!(!logs.contains(secret), "logs leak {secret}:\n{logs}");
    }
}
