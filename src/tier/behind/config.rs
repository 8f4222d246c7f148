//! `[postgres.write_behind]`: how `write = "behind"` rules capture and
//! drain their changes. Every field has a default; the section may be left
//! out.
//!
//! ```toml
//! [postgres.write_behind]
//! outbox_max_bytes = 67108864   # past this, writes to write-behind keys get -ERR tier backlog full
//! batch_rows = 200              # a batch is sent when it has this many changes…
//! batch_ms = 100                # …or its first change is this old
//! claim_idle_ms = 30000         # a crashed strata's changes are taken over after this long
//! workers = 4                   # batches in flight per strata
//! ```

use serde::Deserialize;

/// `[postgres.write_behind]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BehindConfig {
    /// The outbox stream in Redis (standalone and Sentinel: one stream).
    #[serde(default = "default_outbox_key")]
    pub outbox_key: String,
    /// The consumer group the stratas sharing the drain join.
    #[serde(default = "default_group")]
    pub group: String,
    /// This strata's name in the group; default `<hostname>-<pid>`, so a
    /// restarted strata is a new consumer and claims the old one's changes.
    #[serde(default)]
    pub consumer: Option<String>,
    /// The most the outbox may hold (keys, values and ~64 bytes per change).
    /// Writes that would pass it are refused with `-ERR tier backlog full`:
    /// backpressure, never loss, and never Redis running out of memory.
    #[serde(default = "default_outbox_max_bytes")]
    pub outbox_max_bytes: u64,
    /// Most changes per Postgres statement.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Longest a change waits for its batch to fill.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    /// A change read by a strata and not acknowledged for this long is
    /// claimed by another (XAUTOCLAIM): the crashed strata's share.
    #[serde(default = "default_claim_idle_ms")]
    pub claim_idle_ms: u64,
    /// Retry delay while Postgres does not answer (doubles up to 16x).
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
    /// Batches in flight per strata (each: read, Postgres transaction,
    /// acknowledgement).
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_outbox_key() -> String {
    "strata:outbox".into()
}
fn default_group() -> String {
    "strata-drain".into()
}
fn default_outbox_max_bytes() -> u64 {
    64 << 20
}
fn default_batch_rows() -> usize {
    200
}
fn default_batch_ms() -> u64 {
    100
}
fn default_claim_idle_ms() -> u64 {
    30_000
}
fn default_retry_ms() -> u64 {
    250
}
fn default_workers() -> usize {
    4
}

impl Default for BehindConfig {
    fn default() -> Self {
        BehindConfig {
            outbox_key: default_outbox_key(),
            group: default_group(),
            consumer: None,
            outbox_max_bytes: default_outbox_max_bytes(),
            batch_rows: default_batch_rows(),
            batch_ms: default_batch_ms(),
            claim_idle_ms: default_claim_idle_ms(),
            retry_ms: default_retry_ms(),
            workers: default_workers(),
        }
    }
}

impl BehindConfig {
    /// Refuses values that cannot work, with the field named.
    pub fn validate(&self) -> Result<(), String> {
        let name = "postgres.write_behind";
        if self.outbox_key.is_empty() || self.group.is_empty() {
            return Err(format!("{name}: outbox_key and group must not be empty"));
        }
        if self.consumer.as_deref() == Some("") {
            return Err(format!("{name}.consumer must not be empty"));
        }
        if self.outbox_max_bytes < 1024 {
            return Err(format!("{name}.outbox_max_bytes must be at least 1024"));
        }
        if !(1..=10_000).contains(&self.batch_rows) {
            return Err(format!("{name}.batch_rows must be between 1 and 10000"));
        }
        if !(1..=64).contains(&self.workers) {
            return Err(format!("{name}.workers must be between 1 and 64"));
        }
        if self.batch_ms == 0 || self.claim_idle_ms == 0 || self.retry_ms == 0 {
            return Err(format!(
                "{name}: batch_ms, claim_idle_ms and retry_ms must be at least 1"
            ));
        }
        Ok(())
    }

    /// This strata's consumer name.
    pub fn consumer_name(&self) -> String {
        if let Some(c) = &self.consumer {
            return c.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "strata".into());
        format!("{host}-{}", std::process::id())
    }
}
