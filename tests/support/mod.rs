//! Test harness: real redis-server processes on free ports, and strata itself.
//!
//! Nothing here mocks Redis. A missing binary fails the test loudly with the
//! command that installs it.
#![allow(dead_code)]
// Test support: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used)]

pub mod behind_env;
pub mod clients;
pub mod cluster;
pub mod cluster_strata;
pub mod inproc;
pub mod mutex_checker;
pub mod postgres;
pub mod raw;
pub mod redis_server;
pub mod sentinel;
pub mod strata;
pub mod tier_env;
pub mod tls;
pub mod transform_env;
// Helpers of the coordination primitives' tests (tests/coord_*.rs).
pub mod coord_util;

pub use redis_server::RedisServer;

use std::net::TcpListener;

/// A free TCP port on 127.0.0.1 for a test server.
///
/// Chosen below the kernel's ephemeral range (32768+ on Linux), so an
/// outgoing connection (strata reconnecting to a backend that is down, say)
/// can never be handed the port of a server a test has stopped and is about
/// to restart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 15_000 + (seed.wrapping_add(n.wrapping_mul(104_729)) % 17_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 15000 and 32000");
}

/// Polls `check` every `every` until it returns `Ok`, or panics after
/// `within` with the last reason, naming `what`.
pub fn wait_until_ok(
    what: &str,
    within: std::time::Duration,
    every: std::time::Duration,
    mut check: impl FnMut() -> Result<(), String>,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let last = match check() {
            Ok(()) => return,
            Err(e) => e,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not healthy within {within:?}: {last}"
        );
        std::thread::sleep(every);
    }
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
