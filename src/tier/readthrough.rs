//! Read-through: a mirrored key Redis lacks (evicted, flushed, Redis
//! restarted empty) is fetched from Postgres and re-warmed into Redis with
//! its remaining TTL before the client's command runs.
//!
//! Misses are confirmed under the key's lock (`locks.rs`): of the clients
//! that miss one key at once, the first fetches and re-warms it, and the
//! others find it resident when their turn comes: one Postgres fetch per
//! miss, however many clients wait. The re-warm writes with NX (RESTORE
//! without REPLACE), so it never overwrites a value written meanwhile by
//! something other than strata. A key in neither tier costs one indexed
//! lookup.

use bytes::Bytes;

use super::redis::{arg, int, num, RedisLink};
use super::store::StoreError;
use super::{TierStats, Tiers};

impl Tiers {
    /// Makes `keys` resident before a read runs. `Err`: the reply for the
    /// client (Postgres could not be asked about a key Redis lacks: its
    /// value is unknown, so the read is refused rather than answered nil).
    pub async fn warm(&self, link: &RedisLink<'_>, keys: &[Bytes]) -> Result<(), String> {
        // Spill keys: their stubs are restored (`spill/touch.rs`).
        let owned;
        let mut keys = keys;
        if self.spill.is_some() {
            let (spilled, rest): (Vec<Bytes>, Vec<Bytes>) = keys.iter().cloned().partition(|k| {
                self.rules
                    .load()
                    .find(k)
                    .is_some_and(|r| r.mode() == super::rules::Mode::Spill)
            });
            if !spilled.is_empty() {
                self.unspill(link, &spilled).await?;
                owned = rest;
                keys = &owned;
                if keys.is_empty() {
                    return Ok(());
                }
            }
        }
        let missing = self.missing(link, keys).await?;
        if missing.is_empty() {
            return Ok(());
        }
        let _guards = self.locks.lock_all(&missing).await;
        self.warm_locked(link, &missing).await
    }

    /// The keys among `keys` that Redis does not hold (distinct).
    async fn missing(&self, link: &RedisLink<'_>, keys: &[Bytes]) -> Result<Vec<Bytes>, String> {
        let mut distinct: Vec<Bytes> = keys.to_vec();
        distinct.sort();
        distinct.dedup();
        let commands: Vec<(Bytes, Vec<Bytes>)> = distinct
            .iter()
            .map(|k| (k.clone(), vec![arg("EXISTS"), k.clone()]))
            .collect();
        let replies = link
            .call(&commands)
            .await
            .map_err(|e| format!("ERR backend unavailable: {e}"))?;
        Ok(distinct
            .into_iter()
            .zip(replies)
            .filter(|(_, r)| int(r) == Some(0))
            .map(|(k, _)| k)
            .collect())
    }

    /// Re-warms the keys Redis still lacks; the caller holds their locks.
    pub(super) async fn warm_locked(
        &self,
        link: &RedisLink<'_>,
        keys: &[Bytes],
    ) -> Result<(), String> {
        // Under the lock: another client may have re-warmed (or written) it.
        let still = self.missing(link, keys).await?;
        if still.is_empty() {
            return Ok(());
        }
        self.ensure_schema().await.map_err(|e| unavailable(&e))?;
        TierStats::bump(&self.stats.fetches);
        let rows = match self.store.fetch(&still).await {
            Ok(rows) => {
                self.postgres_answered(true);
                rows
            }
            Err(e) => {
                self.postgres_answered(false);
                return Err(unavailable(&e));
            }
        };
        self.stats
            .hits
            .fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.stats.misses.fetch_add(
            (still.len() - rows.len()) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let rules = self.rules.load();
        for key in &still {
            if let Some(rule) = rules.find(key) {
                let counter = if rows.iter().any(|r| r.key == key) {
                    &rule.hits
                } else {
                    &rule.misses
                };
                TierStats::bump(counter);
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let commands: Vec<(Bytes, Vec<Bytes>)> = rows
            .iter()
            .map(|row| (row.key.clone(), rewarm_command(row)))
            .collect();
        let replies = link
            .call(&commands)
            .await
            .map_err(|e| format!("ERR backend unavailable: {e}"))?;
        for ((key, _), r) in commands.iter().zip(&replies) {
            if let Some(text) = super::redis::error_text(r) {
                // BUSYKEY: written meanwhile, which is as good. Anything
                // else (OOM, …): the read would find nothing and answer
                // as if the key did not exist; refuse it instead.
                if !text.starts_with("BUSYKEY") {
                    tracing::debug!(key = %String::from_utf8_lossy(key), error = %text, "tier: re-warm refused by redis");
                    return Err(format!(
                        "ERR tier: the key is in Postgres but Redis refused to re-warm it ({text})"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `-ERR tier unavailable: …` text.
pub fn unavailable(e: &StoreError) -> String {
    format!("ERR tier unavailable: {e}")
}

/// The Redis command that puts a row back without overwriting anything
/// newer: `SET … NX` for strings, `RESTORE` without REPLACE for the other
/// types (stored as DUMP payloads), each with the row's absolute expiry.
/// Read-through and `PROXY TIER WARM` both use it.
pub fn rewarm_command(row: &super::store::Entry) -> Vec<Bytes> {
    let value = row.value.clone();
    if row.kind == "string" {
        let mut c = vec![arg("SET"), row.key.clone(), value];
        if let Some(at) = row.expires_at_ms {
            c.extend([arg("PXAT"), num(at)]);
        }
        c.push(arg("NX"));
        c
    } else {
        vec![
            arg("RESTORE"),
            row.key.clone(),
            num(row.expires_at_ms.unwrap_or(0)),
            value,
            arg("ABSTTL"),
        ]
    }
}
