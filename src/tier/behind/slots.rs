//! Cluster mode's side of the drain: which of the 16384 slot outboxes
//! (`outbox.rs`) to read.
//!
//! * **This strata's captures** mark their slot ([`super::outbox::DirtySlots`]);
//!   a gather takes the marks (clearing them first, so a capture landing
//!   during the read marks again) and reads those outboxes, at most
//!   [`SLOTS_PER_READ`] at a time, one pipelined XREADGROUP per slot
//!   grouped by primary. An outbox that gave a full count, or failed, is
//!   marked again.
//! * **Every second**, worker 0 counts every slot's outbox on every
//!   primary (XLEN, pipelined: 16384 commands shared by the primaries) and
//!   marks the non-empty ones: changes captured by other stratas, left by a
//!   strata that died, or moved here with their slot. The same pass reads
//!   the backlog's bytes and oldest entry for the gauges and for the bound
//!   over the whole cluster (`capture.rs`).
//! * After a start, worker 0 first re-reads this consumer's own pending
//!   entries in the non-empty outboxes; every `claim_idle_ms / 2` it claims
//!   other consumers' entries idle that long (XAUTOCLAIM per non-empty
//!   outbox), as in standalone mode.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::drain::{Drain, Part};
use super::entry;
use super::outbox::Outbox;
use crate::command::slot::SLOT_COUNT;
use crate::tier::redis::{arg, bulk, error_text, int, num};

/// How often every slot's outbox is counted.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// Longest one primary's part of the count (or a read, or a claim) may
/// take: a primary that does not answer (failing over) is left out.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Most outboxes one gather reads at once.
const SLOTS_PER_READ: usize = 64;

/// What worker 0 knows of the slots' outboxes.
#[derive(Debug, Default)]
pub struct SlotState {
    /// Every slot's outbox (built once).
    outboxes: Vec<Outbox>,
    /// Slots whose outbox held entries at the last count.
    nonempty: Vec<u16>,
    last_count: Option<Instant>,
    /// This consumer's own pending entries still to re-read after the
    /// start: (slot, from this id). `None` until the first count.
    own: Option<Vec<(u16, Bytes)>>,
}

impl Drain {
    fn outbox_of(&mut self, slot: u16) -> Outbox {
        if self.slots.outboxes.is_empty() {
            self.slots.outboxes = (0..SLOT_COUNT)
                .map(|s| self.behind.slot_outbox(s))
                .collect();
        }
        self.slots.outboxes[usize::from(slot)].clone()
    }

    /// Cluster mode's gather: up to about `batch_rows` entries from the
    /// outboxes that may hold some.
    pub(super) async fn gather_slots(&mut self) -> Result<Vec<Part>, String> {
        let rows = self.behind.config.batch_rows;
        let window = Duration::from_millis(self.behind.config.batch_ms);
        self.count_if_due().await;
        if self.lead {
            if let Some(parts) = self.read_own(rows).await? {
                return Ok(parts);
            }
        }
        let mut parts = Vec::new();
        let claim_every = Duration::from_millis(self.behind.config.claim_idle_ms / 2);
        if self.lead && self.last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
            self.last_claim = Some(Instant::now());
            match self.claim_slots(rows).await {
                Ok(claimed) => parts.extend(claimed),
                Err(e) => tracing::debug!(error = %e, "tier behind: claim failed"),
            }
        }
        let mut n: usize = parts.iter().map(|p| p.items.len()).sum();
        let started = Instant::now();
        loop {
            let mut slots = self.behind.dirty.take();
            if slots.len() > SLOTS_PER_READ {
                for s in slots.split_off(SLOTS_PER_READ) {
                    self.behind.dirty.mark(s);
                }
            }
            if !slots.is_empty() {
                let count = rows.div_ceil(slots.len()).max(1);
                let got = self.read_new(&slots, count).await;
                n += got.iter().map(|p| p.items.len()).sum::<usize>();
                parts.extend(got);
            }
            if n == 0 || n >= rows || started.elapsed() >= window {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5).min(window)).await;
        }
        Ok(parts)
    }

    /// New entries (`>`) of these slots' outboxes, `count` at most each.
    /// Slots that failed or gave a full count are marked again.
    async fn read_new(&mut self, slots: &[u16], count: usize) -> Vec<Part> {
        let b = self.behind.clone();
        let outboxes: Vec<Outbox> = slots.iter().map(|&s| self.outbox_of(s)).collect();
        let commands: Vec<(Bytes, Vec<Bytes>)> = outboxes
            .iter()
            .map(|o| {
                (
                    o.stream.clone(),
                    vec![
                        arg("XREADGROUP"),
                        arg("GROUP"),
                        Bytes::from(b.config.group.clone()),
                        Bytes::from(b.consumer.clone()),
                        arg("COUNT"),
                        num(count as i64),
                        arg("STREAMS"),
                        o.stream.clone(),
                        arg(">"),
                    ],
                )
            })
            .collect();
        // Bounded: a primary that does not answer (failing over) must not
        // hold this worker; entries read but not received stay pending
        // and are claimed after `claim_idle_ms`.
        let link = self.link();
        let read = tokio::time::timeout(COUNT_TIMEOUT, link.call(&commands));
        let replies = match read
            .await
            .unwrap_or_else(|_| Err("no answer in time".into()))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "tier behind: outbox read failed");
                for &s in slots {
                    b.dirty.mark(s);
                }
                return Vec::new();
            }
        };
        let mut parts = Vec::new();
        let mut missing_group = Vec::new();
        for ((&slot, outbox), reply) in slots.iter().zip(outboxes).zip(replies) {
            match error_text(&reply) {
                Some(t) => {
                    if t.starts_with("NOGROUP") {
                        missing_group.push(outbox.stream.clone());
                    } else {
                        tracing::debug!(error = %t, slot, "tier behind: outbox read refused");
                    }
                    b.dirty.mark(slot);
                }
                None => match entry::parse_read(&reply) {
                    Ok(items) => {
                        if items.len() >= count {
                            b.dirty.mark(slot);
                        }
                        if !items.is_empty() {
                            parts.push(Part { outbox, items });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, slot, "tier behind: outbox reply unreadable");
                        b.dirty.mark(slot);
                    }
                },
            }
        }
        if !missing_group.is_empty() {
            self.create_groups(&missing_group).await;
        }
        parts
    }

    /// Creates the group (from the stream's start) on outboxes that lack it
    /// (a FLUSHALL made straight to Redis, a stream written by hand).
    async fn create_groups(&self, streams: &[Bytes]) {
        let group = Bytes::from(self.behind.config.group.clone());
        let commands: Vec<(Bytes, Vec<Bytes>)> = streams
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    vec![
                        arg("XGROUP"),
                        arg("CREATE"),
                        s.clone(),
                        group.clone(),
                        arg("0"),
                        arg("MKSTREAM"),
                    ],
                )
            })
            .collect();
        if let Err(e) = self.link().call(&commands).await {
            tracing::debug!(error = %e, "tier behind: outbox groups not created");
        }
    }

    /// After a start: this consumer's own pending entries, outbox by
    /// outbox. `None` once all are re-read (the other workers then start).
    async fn read_own(&mut self, rows: usize) -> Result<Option<Vec<Part>>, String> {
        let Some(own) = self.slots.own.take() else {
            return Ok(None);
        };
        if own.is_empty() {
            self.slots.own = Some(own);
            self.own_done.send_replace(true);
            return Ok(None);
        }
        let b = self.behind.clone();
        let batch: Vec<(u16, Bytes)> = own.iter().take(SLOTS_PER_READ).cloned().collect();
        let mut rest: Vec<(u16, Bytes)> = own.into_iter().skip(SLOTS_PER_READ).collect();
        let outboxes: Vec<Outbox> = batch.iter().map(|(s, _)| self.outbox_of(*s)).collect();
        let commands: Vec<(Bytes, Vec<Bytes>)> = outboxes
            .iter()
            .zip(&batch)
            .map(|(o, (_, from))| {
                (
                    o.stream.clone(),
                    vec![
                        arg("XREADGROUP"),
                        arg("GROUP"),
                        Bytes::from(b.config.group.clone()),
                        Bytes::from(b.consumer.clone()),
                        arg("COUNT"),
                        num(rows as i64),
                        arg("STREAMS"),
                        o.stream.clone(),
                        from.clone(),
                    ],
                )
            })
            .collect();
        let replies = match self.link().call(&commands).await {
            Ok(r) => r,
            Err(e) => {
                self.slots.own = Some(batch.into_iter().chain(rest).collect());
                return Err(e);
            }
        };
        let mut parts = Vec::new();
        for (((slot, _), outbox), reply) in batch.into_iter().zip(outboxes).zip(replies) {
            // NOGROUP or another refusal: nothing of ours is pending there.
            if error_text(&reply).is_some() {
                continue;
            }
            let items = entry::parse_read(&reply)?;
            if let Some(last) = items.last() {
                rest.push((slot, last.id().clone()));
                parts.push(Part { outbox, items });
            }
        }
        if rest.is_empty() {
            self.own_done.send_replace(true);
        }
        self.slots.own = Some(rest);
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(parts))
    }

    /// Other consumers' entries idle `claim_idle_ms`, in the outboxes
    /// non-empty at the last count.
    async fn claim_slots(&mut self, rows: usize) -> Result<Vec<Part>, String> {
        let b = self.behind.clone();
        let slots = self.slots.nonempty.clone();
        let mut parts = Vec::new();
        for chunk in slots.chunks(SLOTS_PER_READ) {
            let outboxes: Vec<Outbox> = chunk.iter().map(|&s| self.outbox_of(s)).collect();
            let commands: Vec<(Bytes, Vec<Bytes>)> = outboxes
                .iter()
                .map(|o| {
                    (
                        o.stream.clone(),
                        vec![
                            arg("XAUTOCLAIM"),
                            o.stream.clone(),
                            Bytes::from(b.config.group.clone()),
                            Bytes::from(b.consumer.clone()),
                            num(i64::try_from(b.config.claim_idle_ms).unwrap_or(i64::MAX)),
                            arg("0-0"),
                            arg("COUNT"),
                            num(rows as i64),
                        ],
                    )
                })
                .collect();
            let replies =
                match tokio::time::timeout(COUNT_TIMEOUT, self.link().call(&commands)).await {
                    Ok(r) => r?,
                    Err(_) => return Err("claim: no answer in time".into()),
                };
            for (outbox, reply) in outboxes.into_iter().zip(replies) {
                if error_text(&reply).is_some() {
                    continue;
                }
                let (_, items) = entry::parse_autoclaim(&reply)?;
                if !items.is_empty() {
                    b.stats.claimed.inc_by(items.len() as u64);
                    parts.push(Part { outbox, items });
                }
            }
        }
        Ok(parts)
    }

    /// Worker 0, once a second: [`Drain::count_slots`]. A primary that
    /// does not answer must not stall the drain of the others: the count
    /// is retried at the next turn.
    pub(super) async fn count_if_due(&mut self) {
        if !self.lead
            || self
                .slots
                .last_count
                .is_some_and(|t| t.elapsed() < COUNT_EVERY)
        {
            return;
        }
        if let Err(e) = self.count_slots().await {
            tracing::debug!(error = %e, "tier behind: outbox count failed");
        }
    }

    /// Counts every slot's outbox; marks the non-empty ones; sets the
    /// gauges and the bytes the whole cluster's outboxes hold.
    async fn count_slots(&mut self) -> Result<(), String> {
        self.slots.last_count = Some(Instant::now());
        let all: Vec<Outbox> = (0..SLOT_COUNT).map(|s| self.outbox_of(s)).collect();
        // One part per primary (the slots it owns now), each bounded in
        // time: a primary that does not answer is left out of this count
        // (its slots keep what the last count found).
        let mut groups: Vec<(String, Vec<u16>)> = Vec::new();
        if let Some(cluster) = self.cluster.as_deref() {
            let view = cluster.view();
            for slot in 0..SLOT_COUNT {
                let owner = view
                    .primary(slot)
                    .map_or_else(String::new, |n| n.addr().to_string());
                match groups.iter_mut().find(|(a, _)| *a == owner) {
                    Some((_, slots)) => slots.push(slot),
                    None => groups.push((owner, vec![slot])),
                }
            }
        }
        let mut lens: Vec<Option<i64>> = vec![None; usize::from(SLOT_COUNT)];
        let mut failed = None;
        for (owner, slots) in &groups {
            let commands: Vec<(Bytes, Vec<Bytes>)> = slots
                .iter()
                .map(|&s| {
                    let o = &all[usize::from(s)];
                    (o.stream.clone(), vec![arg("XLEN"), o.stream.clone()])
                })
                .collect();
            match tokio::time::timeout(COUNT_TIMEOUT, self.link().call(&commands)).await {
                Ok(Ok(replies)) => {
                    for (&s, r) in slots.iter().zip(&replies) {
                        lens[usize::from(s)] = int(r);
                    }
                }
                Ok(Err(e)) => failed = Some(format!("{owner}: {e}")),
                Err(_) => failed = Some(format!("{owner}: no answer within {COUNT_TIMEOUT:?}")),
            }
        }
        let known = |s: u16| lens[usize::from(s)].is_some();
        let mut nonempty: Vec<u16> = (0..SLOT_COUNT)
            .filter(|&s| lens[usize::from(s)].is_some_and(|n| n > 0))
            .collect();
        // Slots not counted this time keep their last state.
        nonempty.extend(self.slots.nonempty.iter().copied().filter(|&s| !known(s)));
        nonempty.sort_unstable();
        let entries: i64 = lens.iter().flatten().sum();
        let mut commands = Vec::with_capacity(nonempty.len() * 2);
        for &s in nonempty.iter().filter(|&&s| known(s)) {
            let o = &all[usize::from(s)];
            commands.push((
                o.meta.clone(),
                vec![arg("HGET"), o.meta.clone(), arg("bytes")],
            ));
            commands.push((
                o.stream.clone(),
                vec![
                    arg("XRANGE"),
                    o.stream.clone(),
                    arg("-"),
                    arg("+"),
                    arg("COUNT"),
                    arg("1"),
                ],
            ));
        }
        let more = match tokio::time::timeout(COUNT_TIMEOUT, self.link().call(&commands)).await {
            Ok(r) => r?,
            Err(_) => return Err("outbox sizes: no answer in time".into()),
        };
        let mut bytes = 0i64;
        let mut oldest: Option<i64> = None;
        for pair in more.chunks(2) {
            let held = pair
                .first()
                .and_then(bulk)
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<i64>().ok())
                .unwrap_or(0);
            bytes += held;
            if let Some(t) = pair.get(1).and_then(|r| super::backlog::oldest_id_ms(r)) {
                oldest = Some(oldest.map_or(t, |o: i64| o.min(t)));
            }
        }
        let b = &self.behind;
        b.cluster_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
        b.stats.backlog_bytes.set(bytes);
        b.stats.backlog_entries.set(entries);
        let backlog = super::backlog::Backlog {
            entries,
            bytes,
            oldest_ms: oldest,
        };
        b.stats
            .oldest_pending
            .set(backlog.oldest_age_ms(crate::tier::now_ms()) as f64 / 1000.0);
        for &s in &nonempty {
            b.dirty.mark(s);
        }
        if self.slots.own.is_none() {
            self.slots.own = Some(
                nonempty
                    .iter()
                    .map(|&s| (s, Bytes::from_static(b"0")))
                    .collect(),
            );
        }
        self.slots.nonempty = nonempty;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
