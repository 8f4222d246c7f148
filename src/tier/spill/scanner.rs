//! The background scanner: finds the keys spill rules move out, without
//! loading Redis. Each pass SCANs every primary (every shard in cluster
//! mode) once per spill rule (`MATCH` its pattern), asks OBJECT IDLETIME
//! and MEMORY USAGE of what it finds (neither touches a key's idle time),
//! and spills the keys past `min_size` or `idle_ms` that have not been
//! touched for `hold_ms`. At most `keys_per_sec` keys are examined per
//! second; passes start `scan_interval_ms` after the last one ended.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::cluster::ClusterRouter;
use crate::backend::node::Node;
use crate::backend::router::Router;
use crate::protocol::reply::{aggregate_elements, string_payload};
use crate::protocol::request::encode_command;
use crate::protocol::Protocol;
use crate::tier::redis::{arg, bulk, int, RedisLink};
use crate::tier::rules::{Mode, SpillThresholds};
use crate::tier::Tiers;

use super::SpillConfig;

/// The scanner's client id on the multiplexed connections (no real client
/// has it; write-behind's drain uses `u64::MAX - 0x5354`).
pub const SCANNER_CLIENT_ID: u64 = u64::MAX - 0x5350;

/// Starts the scanner; it ends when the tiers are dropped.
pub fn start(
    tiers: Weak<Tiers>,
    router: Arc<Router>,
    cluster: Option<Arc<ClusterRouter>>,
    config: SpillConfig,
) {
    tokio::spawn(async move {
        let mut logged = false;
        loop {
            tokio::time::sleep(Duration::from_millis(config.scan_interval_ms)).await;
            let Some(tiers) = tiers.upgrade() else {
                return;
            };
            let link = RedisLink {
                router: &router,
                cluster: cluster.as_deref(),
                client_id: SCANNER_CLIENT_ID,
                proto: Protocol::Resp2,
                user: None,
            };
            let mut pass = Pass {
                config: &config,
                started: Instant::now(),
                examined: 0,
            };
            match pass.run(&tiers, &link).await {
                Ok(()) => {
                    logged = false;
                    if let Some(s) = tiers.spill() {
                        s.stats().scan_passes.inc();
                    }
                }
                Err(e) if !logged => {
                    tracing::warn!(error = %e, "tier: spill scan failed; retrying");
                    logged = true;
                }
                Err(_) => {}
            }
        }
    });
}

/// One pass over every primary and rule.
struct Pass<'a> {
    config: &'a SpillConfig,
    started: Instant,
    examined: u64,
}

impl Pass<'_> {
    async fn run(&mut self, tiers: &Tiers, link: &RedisLink<'_>) -> Result<(), String> {
        // Postgres down: nothing can be spilled; the next pass tries again.
        tiers
            .ensure_schema()
            .await
            .map_err(|e| format!("postgres: {e}"))?;
        let rules: Vec<(usize, Bytes, SpillThresholds)> = tiers
            .rules()
            .all()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.mode() == Mode::Spill)
            .map(|(i, r)| (i, Bytes::from(r.pattern().to_string()), r.spill()))
            .collect();
        for node in primaries(link) {
            for (index, pattern, limits) in &rules {
                let mut cursor = 0u64;
                loop {
                    let (next, keys) =
                        scan(link, &node, cursor, pattern, self.config.scan_count).await?;
                    // A key is this rule's only if no earlier rule takes it.
                    let keys: Vec<Bytes> = keys
                        .into_iter()
                        .filter(|k| {
                            tiers.rules().all().iter().position(|r| r.matches(k)) == Some(*index)
                        })
                        .collect();
                    self.spill_batch(tiers, link, &keys, *limits).await?;
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        Ok(())
    }

    /// Examines `keys` and spills the ones past the rule's thresholds.
    async fn spill_batch(
        &mut self,
        tiers: &Tiers,
        link: &RedisLink<'_>,
        keys: &[Bytes],
        limits: SpillThresholds,
    ) -> Result<(), String> {
        if keys.is_empty() {
            return Ok(());
        }
        self.throttle(keys.len() as u64).await;
        if let Some(s) = tiers.spill() {
            s.stats().examined.inc_by(keys.len() as u64);
        }
        let mut commands = Vec::with_capacity(keys.len() * 2);
        for k in keys {
            commands.push((k.clone(), vec![arg("OBJECT"), arg("IDLETIME"), k.clone()]));
            commands.push((k.clone(), vec![arg("MEMORY"), arg("USAGE"), k.clone()]));
        }
        let replies = link.call(&commands).await?;
        for (k, r) in keys.iter().zip(replies.chunks(2)) {
            // No idle time (an LFU maxmemory-policy, the key gone): stays.
            let Some(idle_ms) = int(&r[0]).map(|s| s.saturating_mul(1000)) else {
                continue;
            };
            let size = int(&r[1]).unwrap_or(0);
            let large = limits
                .min_size
                .is_some_and(|m| u64::try_from(size).unwrap_or(0) >= m);
            let cold = limits
                .idle_ms
                .is_some_and(|m| u64::try_from(idle_ms).unwrap_or(0) >= m);
            let held = u64::try_from(idle_ms).unwrap_or(0) < limits.hold_ms;
            if (large || cold) && !held {
                if let Err(e) = tiers.spill_key(link, k, limits.hold_ms).await {
                    tracing::debug!(key = %String::from_utf8_lossy(k), error = %e, "tier: spill failed");
                }
            }
        }
        Ok(())
    }

    /// Waits so that no more than `keys_per_sec` keys are examined per
    /// second over the pass.
    async fn throttle(&mut self, n: u64) {
        self.examined += n;
        let due = Duration::from_secs_f64(self.examined as f64 / self.config.keys_per_sec as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// Every primary (one in standalone and Sentinel mode).
pub fn primaries(link: &RedisLink<'_>) -> Vec<Arc<Node>> {
    match link.cluster {
        None => vec![link.router.primary()],
        Some(cluster) => cluster.view().primaries().cloned().collect(),
    }
}

/// One `SCAN cursor MATCH pattern COUNT n` on `node`.
async fn scan(
    link: &RedisLink<'_>,
    node: &Arc<Node>,
    cursor: u64,
    pattern: &Bytes,
    count: u64,
) -> Result<(u64, Vec<Bytes>), String> {
    let command = encode_command(&[
        arg("SCAN"),
        Bytes::from(cursor.to_string()),
        arg("MATCH"),
        pattern.clone(),
        arg("COUNT"),
        Bytes::from(count.to_string()),
    ]);
    let rx = node
        .send(link.client_id, link.proto, command, 1, link.user)
        .await;
    let frame = match rx.await {
        Ok(Ok(frame)) => frame,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("backend connection closed before replying".into()),
    };
    let bad = || format!("unexpected SCAN reply from {}", node.addr());
    let elems = aggregate_elements(&frame)
        .filter(|e| e.len() == 2)
        .ok_or_else(bad)?;
    let next = string_payload(&frame[elems[0].clone()])
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let list = frame.slice(elems[1].clone());
    let keys = aggregate_elements(&list)
        .ok_or_else(bad)?
        .into_iter()
        .filter_map(|r| bulk(&list.slice(r)))
        .collect();
    Ok((next, keys))
}
