//! strata under test: in-process (`start`) or as the real binary (`StrataProcess`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata::app::Running;
use strata::config::Config;

/// A config for tests: client listener and metrics on port 0, short timeouts.
pub fn test_config(backend: &str) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.backend.address = backend.to_string();
    c.backend.request_timeout_ms = 2_000;
    c.backend.connect_timeout_ms = 500;
    c.backend.reconnect_base_ms = 20;
    c.backend.reconnect_max_ms = 200;
    c.backend.health_interval_ms = 100;
    c.server.shutdown_grace_ms = 3_000;
    c.telemetry.listen = "127.0.0.1:0".to_string();
    // Tests flush and reconfigure Redis through strata: the deny list
    // (on by default) is off unless a test turns it on (tests/acl.rs).
    c.auth.deny.enabled = false;
    c
}

/// A config for tests in cluster mode: [`test_config`] with
/// `backend.mode = "cluster"`, `seeds` as the seed nodes (the first is also
/// `backend.address`, unused in this mode) and a 1 s topology refresh.
pub fn cluster_config(seeds: &[String]) -> Config {
    let mut c = test_config(seeds.first().map(String::as_str).unwrap_or("127.0.0.1:1"));
    c.backend.mode = strata::config::BackendMode::Cluster;
    c.backend.cluster.seeds = seeds.to_vec();
    c.backend.cluster.refresh_interval_ms = 1_000;
    c
}

/// Starts strata in this process in front of `backend`.
pub async fn start(backend: &str) -> Running {
    start_with(test_config(backend)).await
}

/// Starts strata in this process with a given config.
pub async fn start_with(config: Config) -> Running {
    config.validate().expect("valid test config");
    strata::app::start(config).await.expect("strata starts")
}

/// Waits until strata's backend answers (its readiness turns 200).
pub async fn wait_ready(running: &Running) {
    let http = running.http_addr.expect("metrics enabled in tests");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok((status, _)) = http_get(http, "/health/ready").await {
            if status == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("strata never became ready");
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

/// The real `strata` binary as a child process.
pub struct StrataProcess {
    pub child: Child,
    pub port: u16,
    pub metrics_port: u16,
    /// Everything the process wrote to stderr (its logs) so far.
    pub logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl StrataProcess {
    /// Spawns the binary with extra args in front of `backend`; waits until it accepts.
    pub fn spawn(backend: &str, extra: &[&str]) -> StrataProcess {
        let port = super::free_port();
        let metrics_port = super::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--backend")
            .arg(backend)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--no-deny-list")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata");
        // Drain stderr so the child never blocks on a full pipe, and keep it
        // for tests that read the logs.
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let sink = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if std::env::var_os("STRATA_TEST_LOG").is_some() {
                        eprintln!("[strata] {line}");
                    }
                    if let Ok(mut all) = sink.lock() {
                        all.push_str(&line);
                        all.push('\n');
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "strata binary did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        StrataProcess {
            child,
            port,
            metrics_port,
            logs,
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for StrataProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
