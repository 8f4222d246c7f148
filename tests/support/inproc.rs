//! strata in this process on a runtime of its own, for tests that drive it
//! with plain blocking sockets from the test thread.

use std::net::SocketAddr;

use strata::app::Running;
use strata::config::Config;

/// A strata started in-process on its own multi-threaded runtime; shut
/// down (with its drain) on drop.
pub struct InProc {
    /// `127.0.0.1:port` of the client listener.
    pub addr: String,
    /// The metrics/health listener.
    pub http_addr: SocketAddr,
    running: Option<Running>,
    rt: tokio::runtime::Runtime,
}

impl InProc {
    /// Starts strata with `config` (validated first).
    pub fn start(config: Config) -> InProc {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let running = rt.block_on(super::strata::start_with(config));
        InProc {
            addr: running.addr.to_string(),
            http_addr: running.http_addr.expect("metrics enabled in tests"),
            running: Some(running),
            rt,
        }
    }

    /// Waits until /health/ready says 200.
    pub fn wait_ready(&self) {
        let running = self.running.as_ref().expect("running");
        self.rt.block_on(super::strata::wait_ready(running));
    }

    /// GET on the metrics/health listener: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.rt
            .block_on(super::strata::http_get(self.http_addr, path))
            .expect("http get")
    }

    /// Shuts down (drain included) and waits.
    pub fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown());
        }
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.trigger_shutdown();
        }
    }
}
