//! Test harness: real redis-server processes on free ports, and strata itself.
//!
//! Nothing here mocks Redis. A missing binary fails the test loudly with the
//! command that installs it.
#![allow(dead_code)]

pub mod clients;
pub mod cluster;
pub mod inproc;
pub mod raw;
pub mod redis_server;
pub mod sentinel;
pub mod strata;

pub use redis_server::RedisServer;

use std::net::TcpListener;

/// A free TCP port on 127.0.0.1 (the OS picks it; the listener is closed again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The path of a required binary, or a panic that says how to install it.
pub fn require_binary(name: &str, package: &str) -> std::path::PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let candidate = std::path::Path::new(dir).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "required binary `{name}` was not found on PATH.\n\
         Install it with: sudo apt-get install -y {package}\n\
         (or run `make test`, which installs everything the tests need)"
    );
}
