//! The drain: every strata with write-behind rules runs one, and they share
//! the outbox through one consumer group.
//!
//! A loop: gather a batch (up to `batch_rows` changes, or what came within
//! `batch_ms`), apply it to Postgres (`apply.rs`), then acknowledge and
//! delete its entries (`lua/tier_behind_ack.lua`). Acknowledging only after
//! the commit makes delivery at least once: a strata killed in between
//! leaves the entries pending in the group, and they are applied again —
//! harmlessly, the versions make it idempotent.
//!
//! * On start, the strata first re-reads its own pending entries (same
//!   consumer name: a restart with `consumer` set), then new ones (`>`).
//! * Every `claim_idle_ms / 2`, XAUTOCLAIM takes over entries another
//!   consumer read and has not acknowledged for `claim_idle_ms` (a crashed
//!   or stuck strata).
//! * Postgres unreachable: the batch is kept and retried with backoff (its
//!   entries' idle time reset at each retry, so nobody claims them), no
//!   new entries are read; the outbox fills, and its bound pushes back on
//!   writers. Nothing to do by hand when Postgres returns.
//! * A batch Postgres refuses permanently is split: each change is applied
//!   alone, and the ones refused go to `strata_dead_letters`.
//! * The group is (re)created when missing (first start, FLUSHALL), from
//!   the stream's start, so nothing in the stream is skipped.
//! * Cluster mode: one outbox per slot (`outbox.rs`); which ones to read
//!   comes from `slots.rs` (this strata's captures at once, every
//!   primary's non-empty outboxes each second). A batch may hold parts of
//!   several slots' outboxes; each part is acknowledged in its own slot.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::apply::{self, ApplyError};
use super::entry::{self, Change, Item};
use super::outbox::Outbox;
use super::Behind;
use crate::backend::cluster::ClusterRouter;
use crate::backend::router::Router;
use crate::protocol::Protocol;
use crate::tier::redis::{arg, error_text, num, RedisLink};
use crate::tier::Tiers;

/// The drain's client id on the multiplexed connections (no real client
/// has it: ids count up from 1).
const DRAIN_CLIENT_ID: u64 = u64::MAX - 0x5354;

/// Starts the drain's `workers` tasks; they end when the tiers are
/// dropped. Several batches in flight hide the round trips (Redis read,
/// Postgres transaction, acknowledgement); batches of one key's changes in
/// different workers are safe, as between stratas (versions, advisory
/// locks). Worker 0 alone re-reads this consumer's own pending entries,
/// claims others', and refreshes the gauges.
pub fn start(
    behind: Arc<Behind>,
    tiers: Weak<Tiers>,
    router: Arc<Router>,
    cluster: Option<Arc<ClusterRouter>>,
    timeout: Duration,
) {
    behind.set_cluster(cluster.is_some());
    // The others start reading once worker 0 has re-read this consumer's
    // own pending entries: else it would read theirs as its own, twice.
    let (own_done, own_done_rx) = tokio::sync::watch::channel(false);
    let own_done = Arc::new(own_done);
    for worker in 0..behind.config.workers {
        let mut drain = Drain {
            behind: behind.clone(),
            tiers: tiers.clone(),
            router: router.clone(),
            cluster: cluster.clone(),
            slots: super::slots::SlotState::default(),
            timeout,
            lead: worker == 0,
            group_ready: false,
            own_cursor: (worker == 0).then(|| Bytes::from_static(b"0")),
            claim_cursor: Bytes::from_static(b"0-0"),
            last_claim: None,
            last_gauges: None,
            own_done: own_done.clone(),
        };
        let mut wait = own_done_rx.clone();
        let done = own_done.clone();
        tokio::spawn(async move {
            if worker != 0 && wait.wait_for(|done| *done).await.is_err() {
                return;
            }
            drain.run().await;
            // Worker 0 gone (shutting down): release the others to end too.
            done.send_replace(true);
        });
    }
}

/// Entries read from one outbox.
pub(super) struct Part {
    pub(super) outbox: Outbox,
    pub(super) items: Vec<Item>,
}

pub(super) struct Drain {
    pub(super) behind: Arc<Behind>,
    tiers: Weak<Tiers>,
    router: Arc<Router>,
    /// Cluster mode: one outbox per slot.
    pub(super) cluster: Option<Arc<ClusterRouter>>,
    /// Cluster mode: what the slots' outboxes held at the last count.
    pub(super) slots: super::slots::SlotState,
    timeout: Duration,
    /// Worker 0: own pending entries, claims, gauges.
    pub(super) lead: bool,
    group_ready: bool,
    /// Reading back this consumer's own pending entries (from this id);
    /// `None` once done.
    own_cursor: Option<Bytes>,
    claim_cursor: Bytes,
    pub(super) last_claim: Option<Instant>,
    last_gauges: Option<Instant>,
    /// Set by worker 0 once its own pending entries are re-read.
    pub(super) own_done: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Drain {
    pub(super) fn link(&self) -> RedisLink<'_> {
        RedisLink {
            router: &self.router,
            cluster: self.cluster.as_deref(),
            client_id: DRAIN_CLIENT_ID,
            proto: Protocol::Resp2,
            user: None,
        }
    }

    async fn run(&mut self) {
        let cfg = self.behind.config.clone();
        let idle = Duration::from_millis(cfg.batch_ms.clamp(1, 20));
        loop {
            if self.tiers.strong_count() == 0 {
                return;
            }
            if !self.group_ready && self.cluster.is_none() {
                if let Err(e) = self.create_group().await {
                    tracing::debug!(error = %e, "tier behind: outbox group not ready");
                    tokio::time::sleep(Duration::from_millis(cfg.retry_ms)).await;
                    continue;
                }
            }
            let gathered = if self.cluster.is_some() {
                self.gather_slots().await
            } else {
                self.gather().await.map(|items| {
                    vec![Part {
                        outbox: self.behind.single(),
                        items,
                    }]
                })
            };
            let parts = match gathered {
                Ok(parts) => parts,
                Err(e) => {
                    tracing::debug!(error = %e, "tier behind: outbox read failed");
                    tokio::time::sleep(Duration::from_millis(cfg.retry_ms)).await;
                    continue;
                }
            };
            if parts.iter().all(|p| p.items.is_empty()) {
                self.refresh_gauges().await;
                tokio::time::sleep(idle).await;
                continue;
            }
            if !self.deliver(&parts).await {
                return;
            }
            self.ack(&parts).await;
            self.refresh_gauges().await;
        }
    }

    async fn create_group(&mut self) -> Result<(), String> {
        let b = &self.behind;
        let reply = self
            .link()
            .call_one(
                &b.stream,
                vec![
                    arg("XGROUP"),
                    arg("CREATE"),
                    b.stream.clone(),
                    Bytes::from(b.config.group.clone()),
                    arg("0"),
                    arg("MKSTREAM"),
                ],
            )
            .await?;
        match error_text(&reply) {
            Some(t) if !t.starts_with("BUSYGROUP") => Err(t),
            _ => {
                self.group_ready = true;
                Ok(())
            }
        }
    }

    /// Up to `batch_rows` items: claimed ones when a claim is due, this
    /// consumer's own pending ones first after a start, then new ones,
    /// waiting up to `batch_ms` for the batch to fill.
    async fn gather(&mut self) -> Result<Vec<Item>, String> {
        let cfg = &self.behind.config;
        let rows = cfg.batch_rows;
        let window = Duration::from_millis(cfg.batch_ms);
        let mut items = Vec::new();
        let due = self.lead
            && self
                .last_claim
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(cfg.claim_idle_ms / 2));
        if due {
            self.last_claim = Some(Instant::now());
            let claimed = self.claim(rows).await?;
            self.behind.stats.claimed.inc_by(claimed.len() as u64);
            items.extend(claimed);
        }
        let started = Instant::now();
        while items.len() < rows {
            let from = self
                .own_cursor
                .clone()
                .unwrap_or_else(|| Bytes::from_static(b">"));
            let got = self.read(&from, rows - items.len()).await?;
            if self.own_cursor.is_some() {
                match got.last() {
                    Some(last) => self.own_cursor = Some(last.id().clone()),
                    None => {
                        self.own_cursor = None;
                        self.own_done.send_replace(true);
                    }
                }
                items.extend(got);
                continue;
            }
            let empty = got.is_empty();
            items.extend(got);
            if items.is_empty() || items.len() >= rows || started.elapsed() >= window {
                break;
            }
            if empty {
                tokio::time::sleep(Duration::from_millis(5).min(window)).await;
            }
        }
        Ok(items)
    }

    async fn read(&mut self, from: &Bytes, count: usize) -> Result<Vec<Item>, String> {
        let b = &self.behind;
        let reply = self
            .link()
            .call_one(
                &b.stream,
                vec![
                    arg("XREADGROUP"),
                    arg("GROUP"),
                    Bytes::from(b.config.group.clone()),
                    Bytes::from(b.consumer.clone()),
                    arg("COUNT"),
                    num(count as i64),
                    arg("STREAMS"),
                    b.stream.clone(),
                    from.clone(),
                ],
            )
            .await?;
        if let Some(t) = error_text(&reply) {
            if t.starts_with("NOGROUP") {
                self.group_ready = false;
            }
            return Err(t);
        }
        entry::parse_read(&reply)
    }

    async fn claim(&mut self, count: usize) -> Result<Vec<Item>, String> {
        let b = &self.behind;
        let reply = self
            .link()
            .call_one(
                &b.stream,
                vec![
                    arg("XAUTOCLAIM"),
                    b.stream.clone(),
                    Bytes::from(b.config.group.clone()),
                    Bytes::from(b.consumer.clone()),
                    num(i64::try_from(b.config.claim_idle_ms).unwrap_or(i64::MAX)),
                    self.claim_cursor.clone(),
                    arg("COUNT"),
                    num(count as i64),
                ],
            )
            .await?;
        if let Some(t) = error_text(&reply) {
            if t.starts_with("NOGROUP") {
                self.group_ready = false;
            }
            return Err(t);
        }
        let (cursor, items) = entry::parse_autoclaim(&reply)?;
        // A full sweep done: start over next time.
        self.claim_cursor = cursor;
        Ok(items)
    }

    /// Applies the items' changes until Postgres has them (or refused them
    /// for good). False when the tiers are gone (shutting down).
    async fn deliver(&mut self, parts: &[Part]) -> bool {
        let items: Vec<&Item> = parts.iter().flat_map(|p| &p.items).collect();
        let changes: Vec<Change> = items
            .iter()
            .copied()
            .filter_map(|i| match i {
                Item::Change(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let (batch, superseded) = entry::coalesce(&changes);
        let mut backoff = Duration::from_millis(self.behind.config.retry_ms);
        let mut logged = false;
        loop {
            let Some(tiers) = self.tiers.upgrade() else {
                return false;
            };
            let outcome = match tiers.ensure_schema().await {
                Err(e) => Err(ApplyError::Transient(e.to_string())),
                Ok(()) => self.apply_all(&tiers, &items, &batch).await,
            };
            match outcome {
                Ok(()) => {
                    tiers.postgres_answered(true);
                    if logged {
                        tracing::info!("tier behind: postgres answers again; draining");
                    }
                    let now = crate::tier::now_ms();
                    let stats = &self.behind.stats;
                    for c in &changes {
                        stats
                            .lag
                            .observe((now - c.captured_ms).max(0) as f64 / 1000.0);
                    }
                    stats.drained.inc_by(changes.len() as u64);
                    stats.coalesced.inc_by(superseded);
                    stats.batches.inc();
                    return true;
                }
                Err(ApplyError::Transient(e)) | Err(ApplyError::Permanent(e)) => {
                    tiers.postgres_answered(false);
                    if !logged {
                        tracing::warn!(error = %e, "tier behind: postgres did not take a batch; retrying (changes wait in the outbox)");
                        logged = true;
                    }
                    self.behind.stats.retries.inc();
                    drop(tiers);
                    self.heartbeat(parts).await;
                    // The backlog grows meanwhile: its gauges must show it.
                    self.refresh_gauges().await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(
                        self.behind.config.retry_ms.saturating_mul(16),
                    ));
                }
            }
        }
    }

    /// The batch in one transaction; if Postgres refuses it for good, each
    /// change alone, dead-lettering the ones it refuses. Malformed entries
    /// are dead-lettered too. Transient errors end it (retried whole).
    async fn apply_all(
        &self,
        tiers: &Tiers,
        items: &[&Item],
        batch: &[&Change],
    ) -> Result<(), ApplyError> {
        let pool = tiers.store().pool();
        for i in items {
            if let Item::Malformed { key, why, .. } = *i {
                apply::dead_letter(pool, self.timeout, key, None, None, why).await?;
                self.behind.stats.dead_letters.inc();
            }
        }
        match apply::apply(pool, self.timeout, batch).await {
            Ok(()) => return Ok(()),
            Err(ApplyError::Transient(e)) => return Err(ApplyError::Transient(e)),
            Err(ApplyError::Permanent(_)) => {}
        }
        for c in batch {
            match apply::apply(pool, self.timeout, std::slice::from_ref(c)).await {
                Ok(()) => {}
                Err(ApplyError::Permanent(why)) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&c.key), reason = %why, "tier behind: change dead-lettered");
                    apply::dead_letter(
                        pool,
                        self.timeout,
                        &c.key,
                        Some(&c.op),
                        Some(c.version),
                        &why,
                    )
                    .await?;
                    self.behind.stats.dead_letters.inc();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Resets the idle time of entries this strata holds while it retries
    /// them (XCLAIM to itself, JUSTID), so that no strata — this one's
    /// claim pass included — takes over changes that are not abandoned,
    /// only waiting for Postgres.
    async fn heartbeat(&self, parts: &[Part]) {
        let b = &self.behind;
        let commands: Vec<(Bytes, Vec<Bytes>)> = parts
            .iter()
            .filter(|p| !p.items.is_empty())
            .map(|p| {
                let mut command = vec![
                    arg("XCLAIM"),
                    p.outbox.stream.clone(),
                    Bytes::from(b.config.group.clone()),
                    Bytes::from(b.consumer.clone()),
                    arg("0"),
                ];
                command.extend(p.items.iter().map(|i| i.id().clone()));
                command.push(arg("JUSTID"));
                (p.outbox.stream.clone(), command)
            })
            .collect();
        if let Err(e) = self.link().call(&commands).await {
            tracing::debug!(error = %e, "tier behind: heartbeat failed");
        }
    }

    /// Acknowledges and deletes the entries, giving their bytes back. A
    /// failure leaves them pending: they are delivered again (harmless).
    async fn ack(&self, parts: &[Part]) {
        for p in parts.iter().filter(|p| !p.items.is_empty()) {
            self.ack_part(&p.outbox, &p.items).await;
        }
    }

    async fn ack_part(&self, outbox: &Outbox, items: &[Item]) {
        let b = &self.behind;
        let mut args = Vec::with_capacity(1 + items.len() * 2);
        args.push(Bytes::from(b.config.group.clone()));
        for i in items {
            let size = match i {
                Item::Change(c) => c.size,
                _ => 0,
            };
            args.push(i.id().clone());
            args.push(num(size as i64));
        }
        let keys = [outbox.stream.clone(), outbox.meta.clone()];
        for _ in 0..3 {
            match b.ack.run(&self.link(), &outbox.stream, &keys, &args).await {
                Ok(reply) if error_text(&reply).is_none() => return,
                Ok(reply) => {
                    tracing::warn!(error = ?error_text(&reply), "tier behind: acknowledgement refused")
                }
                Err(e) => tracing::debug!(error = %e, "tier behind: acknowledgement failed"),
            }
            tokio::time::sleep(Duration::from_millis(b.config.retry_ms)).await;
        }
    }

    async fn refresh_gauges(&mut self) {
        if self.cluster.is_some() {
            // The slots' count (`slots.rs`), every second: also while a
            // batch waits for Postgres, since the bound over the whole
            // cluster reads it.
            self.count_if_due().await;
            return;
        }
        if !self.lead
            || self
                .last_gauges
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last_gauges = Some(Instant::now());
        let b = &self.behind;
        let commands = super::backlog::commands(b);
        if let Ok(r) = self.link().call(&commands).await {
            let backlog = super::backlog::parse(&r);
            b.stats.backlog_bytes.set(backlog.bytes);
            b.stats.backlog_entries.set(backlog.entries);
            b.stats
                .oldest_pending
                .set(backlog.oldest_age_ms(crate::tier::now_ms()) as f64 / 1000.0);
        }
    }
}
