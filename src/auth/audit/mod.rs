//! The audit log: who logged in, what was refused, what operators did.
//!
//! A sidecar sees every request; the audit log is the trail an operator
//! or a security review asks for afterwards. Events are JSON lines, to a
//! file or to stdout ([`sink`]), and, when `audit.postgres = true` and a
//! Postgres tier is configured, also rows of the `strata_audit` table
//! (migrations/0003_audit.sql), which can be queried like any other table.
//!
//! What it never holds: values and passwords. Commands are named, never
//! given with their arguments (an `ACL SETUSER` line carries passwords);
//! keys are recorded only with `audit.include_keys = true`.
//!
//! Recording never waits: events go through a bounded queue to one writer
//! task; when the queue is full (the file or Postgres is slower than the
//! events) an event is dropped and counted in
//! `strata_audit_dropped_total`, rather than slowing clients or growing
//! memory.

mod config;
mod event;
mod sink;

pub use config::{AuditConfig, AuditOutput};
pub use event::{Event, Outcome};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// The handle every part of strata records events through. Cheap to
/// clone; `None` in [`crate::server::Shared`] when auditing is off, which
/// costs the callers one branch.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: mpsc::Sender<Event>,
    /// `audit.include_keys`; a reload changes it.
    include_keys: Arc<AtomicBool>,
    /// A new output from a reload, taken by the writer before its next batch.
    next_output: Arc<Mutex<Option<sink::Output>>>,
    recorded: Counter,
    dropped: Counter,
}

/// What a config reload changes in a running audit log, built (the new
/// output opened) before anything is in force: [`Audit::prepare`], then
/// [`Audit::apply`].
#[derive(Debug)]
pub struct Change {
    output: Option<sink::Output>,
    include_keys: bool,
}

impl Audit {
    /// Starts the writer task (on the current tokio runtime) and returns
    /// the handle. `postgres`: where `strata_audit` rows go, with
    /// `audit.postgres = true`.
    pub fn start(
        config: &AuditConfig,
        registry: &mut prometheus_client::registry::Registry,
        postgres: Option<&crate::tier::PostgresConfig>,
    ) -> Result<Audit, String> {
        let store = match postgres.filter(|_| config.postgres) {
            Some(pg) => Some(crate::tier::store::Store::connect(
                &crate::tier::store_options(pg)?,
            )?),
            None => None,
        };
        let output = sink::Output::open(&config.output)?;
        let (tx, rx) = mpsc::channel(config.buffer_events.max(1));
        let recorded = Counter::default();
        let dropped = Counter::default();
        let written = Counter::default();
        let sub = registry.sub_registry_with_prefix("audit");
        sub.register(
            "recorded",
            "Audit events accepted for writing",
            recorded.clone(),
        );
        sub.register(
            "dropped",
            "Audit events dropped because the audit queue was full",
            dropped.clone(),
        );
        sub.register(
            "written",
            "Audit events written to the audit output",
            written.clone(),
        );
        let next_output = Arc::new(Mutex::new(None));
        tokio::spawn(sink::run(rx, output, next_output.clone(), store, written));
        Ok(Audit {
            tx,
            include_keys: Arc::new(AtomicBool::new(config.include_keys)),
            next_output,
            recorded,
            dropped,
        })
    }

    /// A reload's `audit.output` (`Some` when it changed: opened now, so
    /// a bad path refuses the reload) and `audit.include_keys`.
    pub fn prepare(output: Option<&AuditOutput>, include_keys: bool) -> Result<Change, String> {
        Ok(Change {
            output: output.map(sink::Output::open).transpose()?,
            include_keys,
        })
    }

    /// Puts a prepared change in force: events recorded from now on go to
    /// the new output (the writer switches before its next batch; what it
    /// holds already goes there too), keys as `include_keys` now says.
    pub fn apply(&self, change: Change) {
        self.include_keys
            .store(change.include_keys, Ordering::Relaxed);
        if let Some(output) = change.output {
            *self.next_output.lock().unwrap_or_else(|e| e.into_inner()) = Some(output);
        }
    }

    /// Records an event without waiting; dropped (and counted) when the
    /// queue is full.
    pub fn record(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.recorded.inc();
            }
            Err(_) => {
                self.dropped.inc();
            }
        }
    }

    /// The key to record with an event: only with `audit.include_keys`.
    pub fn key(&self, key: Option<&[u8]>) -> Option<String> {
        if !self.include_keys.load(Ordering::Relaxed) {
            return None;
        }
        key.map(|k| String::from_utf8_lossy(k).into_owned())
    }
}

/// Shared form, as [`crate::server::Shared`] holds it.
pub type SharedAudit = Option<Arc<Audit>>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(id: u64) -> Event {
        Event::LockGrant {
            client_id: id,
            name: "n".into(),
            token: id,
        }
    }

    /// A full queue drops and counts: recording never waits, and the
    /// queue never grows past its bound.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, mut rx) = mpsc::channel(2);
        let audit = Audit {
            tx,
            include_keys: Arc::new(AtomicBool::new(false)),
            next_output: Arc::new(Mutex::new(None)),
            recorded: Counter::default(),
            dropped: Counter::default(),
        };
        for id in 0..5 {
            audit.record(event(id));
        }
        assert_eq!(audit.recorded.get(), 2);
        assert_eq!(audit.dropped.get(), 3);
        assert_eq!(rx.try_recv().ok(), Some(event(0)));
        assert_eq!(rx.try_recv().ok(), Some(event(1)));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn keys_only_with_include_keys() {
        let (tx, _rx) = mpsc::channel(1);
        let audit = Audit {
            tx,
            include_keys: Arc::new(AtomicBool::new(false)),
            next_output: Arc::new(Mutex::new(None)),
            recorded: Counter::default(),
            dropped: Counter::default(),
        };
        assert_eq!(audit.key(Some(b"k")), None);
        audit.apply(Audit::prepare(None, true).unwrap());
        assert_eq!(audit.key(Some(b"k")), Some("k".into()));
    }
}
