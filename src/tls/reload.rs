//! Re-reading certificates and keys while strata runs.
//!
//! One task re-reads every TLS configuration's files every
//! `tls.reload_interval_ms` and on SIGHUP. Only a change of content
//! rebuilds (the files are small; comparing bytes does not depend on
//! mtime granularity or on how the files were replaced). A file that does
//! not parse keeps the configuration in force and is logged, so a
//! half-written certificate never takes TLS down.

use std::sync::Arc;
use std::time::Duration;

use super::TlsError;

/// Something rebuilt from files.
pub trait Reload: Send + Sync + std::fmt::Debug {
    /// The config section, for logs.
    fn name(&self) -> &'static str;
    /// Re-reads; `Ok(true)` when a new configuration is in force.
    fn reload(&self) -> Result<bool, TlsError>;
}

/// Reloads each of `items` once, logging the outcome.
pub fn reload_all(items: &[Arc<dyn Reload>]) {
    for item in items {
        match item.reload() {
            Ok(true) => tracing::info!(section = item.name(), "TLS configuration reloaded"),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                section = item.name(),
                error = %e,
                "TLS reload failed; the previous configuration stays in force"
            ),
        }
    }
}

/// Starts the reload task, which runs until `stop` resolves: every
/// `interval` (none when zero) and on SIGHUP. The SIGHUP handler is
/// installed before this returns (inside a runtime), so a SIGHUP sent once
/// strata listens never meets the default action, which would end the
/// process.
pub fn spawn(
    items: Vec<Arc<dyn Reload>>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if items.is_empty() {
        return;
    }
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    tokio::spawn(run(items, interval, hup, stop));
}

async fn run(
    items: Vec<Arc<dyn Reload>>,
    interval: Duration,
    mut hup: Option<tokio::signal::unix::Signal>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = (!interval.is_zero()).then(|| {
        let mut t = tokio::time::interval(interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    if let Some(t) = tick.as_mut() {
        // The first tick is immediate: the files were just read.
        t.tick().await;
    }
    tokio::pin!(stop);
    loop {
        let ticked = async {
            match tick.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => return,
            () = ticked => {}
            () = hangup => tracing::info!("SIGHUP: re-reading TLS files"),
        }
        reload_all(&items);
    }
}
