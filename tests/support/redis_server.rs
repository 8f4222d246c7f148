//! A real `redis-server` child process on a free port, killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require_binary};

/// A running redis-server. Dropping it kills the process and removes its directory.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts a standalone redis-server with persistence off.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts redis-server with extra `--name value` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A `redis://` URL for redis-rs.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        // Same port: the point is that clients of this address reconnect.
        self.spawn_once();
        assert!(
            !self.exited_early(),
            "redis-server could not rebind port {}",
            self.port
        );
    }

    fn spawn(&mut self) {
        self.spawn_with_retry();
    }

    fn spawn_once(&mut self) {
        let bin = require_binary("redis-server", "redis-server");
        let mut cmd = Command::new(bin);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn redis-server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Starts on a fresh port when the first one was taken between
    /// `free_port()` and redis-server's bind (the child exits at once).
    fn spawn_with_retry(&mut self) {
        for _ in 0..5 {
            self.spawn_once();
            if self.exited_early() {
                self.port = free_port();
                continue;
            }
            return;
        }
        panic!("redis-server could not bind a free port after 5 tries");
    }

    fn exited_early(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) => {
                self.child = None;
                true
            }
            _ => false,
        }
    }

    fn wait_ready(&mut self) {
        // Generous: CI machines are shared and may be busy compiling.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                return; // exited: spawn_with_retry notices and picks another port
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                if s.write_all(b"PING\r\n").is_ok() {
                    let mut buf = [0u8; 16];
                    if let Ok(n) = s.read(&mut buf) {
                        if buf[..n].starts_with(b"+PONG") {
                            return;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not become ready", self.port);
    }

    /// Sends raw bytes and returns what the server answers within `wait`.
    pub fn raw(&self, bytes: &[u8], wait: Duration) -> Vec<u8> {
        raw_exchange(&self.addr(), bytes, wait)
    }
}

/// Writes `bytes` to `addr` and collects whatever comes back until the peer
/// closes or `wait` passes with nothing new.
pub fn raw_exchange(addr: &str, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A redis-server in cluster mode that owns all 16384 slots by itself:
/// what a client of strata in cluster mode should observe, as one Redis
/// (fidelity tests compare strata against it). Ready once its cluster
/// state is `ok`.
pub fn one_node_cluster() -> RedisServer {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    let addr = server.addr();
    let call = |args: &[&str]| super::sentinel::query(&addr, args);
    assert_eq!(
        call(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]),
        Ok(super::sentinel::Resp::Str("OK".into()))
    );
    super::wait_until_ok(
        "one-node cluster",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || match call(&["CLUSTER", "INFO"]) {
            Ok(super::sentinel::Resp::Str(s)) if s.contains("cluster_state:ok") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    server
}
