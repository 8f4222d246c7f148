//! `PROXY TIER STATS | FLUSH | WARM | SPILL | VERIFY | KEYS`: the tiers' administration
//! (docs/TIERS.md, "Admin commands").
//!
//! Every command that takes a pattern walks Postgres a batch at a time
//! (`tier::walk`) and talks to Redis on borrowed dedicated connections
//! (`nodes`), so memory stays at one batch (plus VERIFY's bounded list).

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::nodes::Nodes;
use crate::protocol::{Protocol, ReplyBuf};
use crate::tier::redis::{arg, bulk, int};
use crate::tier::rules::Mode;
use crate::tier::walk::Walk;
use crate::tier::Tiers;

/// VERIFY's default and largest LIMIT: how many disagreeing keys it lists.
pub const VERIFY_DEFAULT_LIMIT: usize = 100;
/// See [`VERIFY_DEFAULT_LIMIT`].
pub const VERIFY_MAX_LIMIT: usize = 10_000;
/// Two expiries further apart than this disagree (clocks and the time
/// between reading the two tiers).
const TTL_SLACK_MS: i64 = 2_000;

/// A parsed `PROXY TIER …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierCommand {
    /// `PROXY TIER STATS`.
    Stats,
    /// `PROXY TIER FLUSH <pattern>`.
    Flush(Bytes),
    /// `PROXY TIER WARM <pattern>`.
    Warm(Bytes),
    /// `PROXY TIER SPILL <pattern>`.
    Spill(Bytes),
    /// `PROXY TIER VERIFY <pattern> [LIMIT n]`.
    Verify { pattern: Bytes, limit: usize },
    /// `PROXY TIER KEYS <pattern> [LIMIT n]`: the keys Postgres holds
    /// (SCAN and KEYS see only the ones resident in Redis).
    Keys { pattern: Bytes, limit: usize },
}

/// KEYS's default LIMIT and largest one.
pub const KEYS_DEFAULT_LIMIT: usize = 1_000;
/// See [`KEYS_DEFAULT_LIMIT`].
pub const KEYS_MAX_LIMIT: usize = 100_000;

/// `[LIMIT n]` after a pattern: `default` without it; n from 1 to `max`.
fn limit_arg(
    rest: Option<&[Bytes]>,
    default: usize,
    max: usize,
    name: &str,
) -> Result<Option<usize>, String> {
    match rest {
        None | Some([]) => Ok(Some(default)),
        Some([word, n]) if word.eq_ignore_ascii_case(b"limit") => std::str::from_utf8(n)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| (1..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                format!("ERR PROXY TIER {name}: LIMIT must be an integer from 1 to {max}")
            }),
        Some(_) => Ok(None),
    }
}

/// Parses the words after `PROXY TIER`.
pub fn parse(args: &[Bytes]) -> Result<TierCommand, String> {
    let syntax = || format!("ERR syntax error. Try {}", super::USAGE);
    let Some(sub) = args.first() else {
        return Err(syntax());
    };
    let pattern = || -> Result<Bytes, String> {
        match args.get(1) {
            Some(p) if !p.is_empty() => Ok(p.clone()),
            Some(_) => Err("ERR PROXY TIER: the pattern must not be empty".into()),
            None => Err(syntax()),
        }
    };
    let upper = sub.to_ascii_uppercase();
    match &upper[..] {
        b"STATS" if args.len() == 1 => Ok(TierCommand::Stats),
        b"FLUSH" if args.len() == 2 => Ok(TierCommand::Flush(pattern()?)),
        b"WARM" if args.len() == 2 => Ok(TierCommand::Warm(pattern()?)),
        b"SPILL" if args.len() == 2 => Ok(TierCommand::Spill(pattern()?)),
        b"VERIFY" => {
            let pattern = pattern()?;
            let limit = limit_arg(
                args.get(2..),
                VERIFY_DEFAULT_LIMIT,
                VERIFY_MAX_LIMIT,
                "VERIFY",
            )?
            .ok_or_else(syntax)?;
            Ok(TierCommand::Verify { pattern, limit })
        }
        b"KEYS" => {
            let pattern = pattern()?;
            let limit = limit_arg(args.get(2..), KEYS_DEFAULT_LIMIT, KEYS_MAX_LIMIT, "KEYS")?
                .ok_or_else(syntax)?;
            Ok(TierCommand::Keys { pattern, limit })
        }
        b"STATS" | b"FLUSH" | b"WARM" | b"SPILL" => Err(syntax()),
        _ => Err(format!(
            "ERR unknown PROXY TIER subcommand '{}'. Try {}",
            crate::transform::envelope::show(sub),
            super::USAGE
        )),
    }
}

/// Runs one `PROXY TIER` command; the reply frame (errors included).
pub async fn run(tiers: &Tiers, nodes: &mut Nodes<'_>, cmd: TierCommand, proto: Protocol) -> Bytes {
    if let Err(e) = tiers.ensure_schema().await {
        return crate::protocol::reply::error(&format!("ERR tier unavailable: {e}"));
    }
    let result = match cmd {
        TierCommand::Stats => stats(tiers, nodes, proto).await,
        TierCommand::Flush(p) => flush(tiers, &p).await.map(|n| {
            let mut r = ReplyBuf::new(proto);
            r.integer(n);
            r.freeze()
        }),
        TierCommand::Warm(p) => warm(tiers, nodes, &p, proto).await,
        TierCommand::Spill(p) => spill(tiers, nodes, &p).await.map(|n| {
            let mut r = ReplyBuf::new(proto);
            r.integer(n);
            r.freeze()
        }),
        TierCommand::Verify { pattern, limit } => {
            verify(tiers, nodes, &pattern, limit, proto).await
        }
        TierCommand::Keys { pattern, limit } => keys(tiers, &pattern, limit, proto).await,
    };
    result.unwrap_or_else(|text| crate::protocol::reply::error(&text))
}

fn pg_error(e: impl std::fmt::Display) -> String {
    format!("ERR tier unavailable: {e}")
}

fn sat(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Rows and bytes per rule (each live row counted under the first rule
/// its key matches, as the data path decides), with the counters, the
/// write-behind outbox (read from Redis now: entries, bytes, the oldest
/// change's wait) and each Postgres host as the last probe found it.
async fn stats(tiers: &Tiers, nodes: &mut Nodes<'_>, proto: Protocol) -> Result<Bytes, String> {
    // An Arc, not the guard: the walk below takes a while.
    let rules_now = arc_swap::Guard::into_inner(tiers.rules());
    let rules = rules_now.all();
    let mut rows = vec![0i64; rules.len()];
    let mut bytes = vec![0i64; rules.len()];
    let mut walk = Walk::new(b"*", false);
    while let Some(batch) = walk.next(tiers.store()).await.map_err(pg_error)? {
        for row in batch {
            if let Some(i) = rules.iter().position(|r| r.matches(&row.key)) {
                rows[i] += 1;
                bytes[i] += row.len + row.key.len() as i64;
            }
        }
    }
    let (backlog, lag_ms) = match tiers.behind() {
        // Cluster mode: one outbox per slot; the drain counts them all
        // every second (`behind/slots.rs`).
        Some(b) if b.is_cluster() => {
            let s = b.stats();
            let backlog = crate::tier::behind::backlog::Backlog {
                entries: s.backlog_entries.get(),
                bytes: s.backlog_bytes.get(),
                oldest_ms: None,
            };
            (backlog, (s.oldest_pending.get() * 1000.0) as i64)
        }
        Some(b) => {
            let backlog = crate::tier::behind::backlog::parse(
                &nodes
                    .by_key(&crate::tier::behind::backlog::commands(b))
                    .await?,
            );
            (backlog, backlog.oldest_age_ms(crate::tier::now_ms()))
        }
        None => Default::default(),
    };
    let s = tiers.stats();
    let get = |c: &std::sync::atomic::AtomicU64| sat(c.load(Ordering::Relaxed));
    let spill_rule = |i: usize| rules[i].mode() == Mode::Spill;
    let spilled_keys: i64 = (0..rules.len())
        .filter(|&i| spill_rule(i))
        .map(|i| rows[i])
        .sum();
    let spilled_bytes: i64 = (0..rules.len())
        .filter(|&i| spill_rule(i))
        .map(|i| bytes[i])
        .sum();
    let mut r = ReplyBuf::new(proto);
    r.map(13);
    r.bulk(b"postgres")
        .bulk(if tiers.postgres_up() { b"up" } else { b"down" });
    r.bulk(b"rows").integer(rows.iter().sum());
    r.bulk(b"bytes").integer(bytes.iter().sum());
    r.bulk(b"backlog").integer(backlog.entries);
    r.bulk(b"backlog_bytes").integer(backlog.bytes);
    r.bulk(b"lag_ms").integer(lag_ms);
    r.bulk(b"readthrough_hits").integer(get(&s.hits));
    r.bulk(b"readthrough_misses").integer(get(&s.misses));
    r.bulk(b"spilled_keys").integer(spilled_keys);
    r.bulk(b"spilled_bytes").integer(spilled_bytes);
    r.bulk(b"spill_restores")
        .integer(tiers.spill().map_or(0, |sp| sat(sp.stats().restores.get())));
    r.bulk(b"rules").array(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        r.map(9);
        r.bulk(b"pattern").bulk(rule.pattern().as_bytes());
        // Write-behind rules share one outbox: each shows all of it.
        let (policy, write, rule_backlog, rule_lag): (&[u8], &[u8], i64, i64) = match rule.mode() {
            Mode::MirrorThrough => (b"mirror", b"through", 0, 0),
            Mode::MirrorBehind => (b"mirror", b"behind", backlog.entries, lag_ms),
            Mode::Spill => (b"spill", b"", 0, 0),
        };
        r.bulk(b"policy").bulk(policy);
        r.bulk(b"write").bulk(write);
        r.bulk(b"rows").integer(rows[i]);
        r.bulk(b"bytes").integer(bytes[i]);
        r.bulk(b"backlog").integer(rule_backlog);
        r.bulk(b"lag_ms").integer(rule_lag);
        r.bulk(b"readthrough_hits")
            .integer(sat(rule.hits.load(Ordering::Relaxed)));
        r.bulk(b"readthrough_misses")
            .integer(sat(rule.misses.load(Ordering::Relaxed)));
    }
    // Each configured host as the last probe found it (`tier::ha`).
    let hosts = tiers.store().hosts();
    r.bulk(b"hosts").array(hosts.all().len());
    for (i, h) in hosts.all().iter().enumerate() {
        r.map(4);
        r.bulk(b"host").bulk(h.name.as_bytes());
        r.bulk(b"role").bulk(h.role().name().as_bytes());
        r.bulk(b"writes")
            .integer(i64::from(i == hosts.primary_index()));
        r.bulk(b"replay_lag_ms").integer(
            h.lag_ms()
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
        );
    }
    Ok(r.freeze())
}

/// Deletes the matching rows (with tombstones, as a DEL would: an older
/// change replayed later cannot bring them back). Redis is not touched.
async fn flush(tiers: &Tiers, pattern: &[u8]) -> Result<i64, String> {
    let mut walk = Walk::new(pattern, false).on_primary();
    let mut deleted = 0i64;
    while let Some(batch) = walk.next(tiers.store()).await.map_err(pg_error)? {
        if batch.is_empty() {
            continue;
        }
        // A spilled key's row is its value: flushing it would leave a stub
        // pointing at nothing.
        let keys: Vec<(Bytes, Option<i64>)> = batch
            .into_iter()
            .filter(|r| !spilled(tiers, &r.key))
            .map(|r| (r.key, None))
            .collect();
        if keys.is_empty() {
            continue;
        }
        let gone = tiers.store().delete(&keys).await.map_err(pg_error)?;
        deleted += gone.len() as i64;
    }
    Ok(deleted)
}

/// The keys of the live rows matching `pattern`, in key order, at most
/// `limit`: what Postgres holds whether or not Redis does (an evicted or
/// flushed mirrored key, a spilled one). Plain SCAN and KEYS are not
/// slowed: this is a separate command reading Postgres only.
async fn keys(
    tiers: &Tiers,
    pattern: &[u8],
    limit: usize,
    proto: Protocol,
) -> Result<Bytes, String> {
    let mut walk = Walk::new(pattern, false);
    let mut found: Vec<Bytes> = Vec::new();
    'walk: while let Some(batch) = walk.next(tiers.store()).await.map_err(pg_error)? {
        for row in batch {
            if found.len() >= limit {
                break 'walk;
            }
            found.push(row.key);
        }
    }
    let mut r = ReplyBuf::new(proto);
    r.array(found.len());
    for k in &found {
        r.bulk(k);
    }
    Ok(r.freeze())
}

/// Loads the matching live rows Redis lacks: `[loaded, already in redis]`.
async fn warm(
    tiers: &Tiers,
    nodes: &mut Nodes<'_>,
    pattern: &[u8],
    proto: Protocol,
) -> Result<Bytes, String> {
    let mut walk = Walk::new(pattern, false);
    let (mut loaded, mut present) = (0i64, 0i64);
    while let Some(batch) = walk.next(tiers.store()).await.map_err(pg_error)? {
        if batch.is_empty() {
            continue;
        }
        // Under the keys' locks, as read-through: a write or delete through
        // this strata is not undone by a row read just before it; the rows
        // are read again once the locks are held.
        let keys: Vec<Bytes> = batch
            .into_iter()
            .map(|r| r.key)
            .filter(|k| !spilled(tiers, k))
            .collect();
        if keys.is_empty() {
            continue;
        }
        let _guards = tiers.lock_keys(&keys).await;
        let rows = tiers.store().fetch(&keys).await.map_err(pg_error)?;
        let commands: Vec<(Bytes, Vec<Bytes>)> = rows
            .iter()
            .map(|row| {
                (
                    row.key.clone(),
                    crate::tier::readthrough::rewarm_command(row),
                )
            })
            .collect();
        let replies = nodes.by_key(&commands).await?;
        for r in &replies {
            match crate::tier::redis::error_text(r) {
                None if crate::tier::redis::is_nil(r) => present += 1,
                None => loaded += 1,
                Some(t) if t.starts_with("BUSYKEY") => present += 1,
                Some(t) => return Err(format!("ERR PROXY TIER WARM: redis refused a key ({t})")),
            }
        }
    }
    let mut r = ReplyBuf::new(proto);
    r.map(2);
    r.bulk(b"loaded").integer(loaded);
    r.bulk(b"present").integer(present);
    Ok(r.freeze())
}

/// Spills every key matching `pattern` that a spill rule names, now
/// (whatever its size or idle time); returns how many became stubs. Keys
/// already spilled, or changed while being spilled, are not counted.
async fn spill(tiers: &Tiers, nodes: &mut Nodes<'_>, pattern: &Bytes) -> Result<i64, String> {
    if tiers.spill().is_none() {
        return Err("ERR PROXY TIER SPILL: no [[tier]] rule has policy = \"spill\"".into());
    }
    let link = nodes.link(SPILL_CLIENT_ID);
    let mut spilled = 0i64;
    for node in nodes.primaries() {
        let mut cursor = 0;
        loop {
            let (next, keys) = nodes.scan(&node, cursor, pattern, 500).await?;
            for k in keys {
                let spill_rule = tiers
                    .rules()
                    .find(&k)
                    .is_some_and(|r| r.mode() == Mode::Spill);
                if spill_rule && tiers.spill_key(&link, &k, 0).await? {
                    spilled += 1;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(spilled)
}

/// True when a spill rule names `key` (its row is a spilled value).
fn spilled(tiers: &Tiers, key: &[u8]) -> bool {
    tiers
        .rules()
        .find(key)
        .is_some_and(|r| r.mode() == Mode::Spill)
}

/// `PROXY TIER SPILL`'s client id on the multiplexed connections (no real
/// client has it).
const SPILL_CLIENT_ID: u64 = u64::MAX - 0x5351;

/// Disagreements found so far, at most `limit` kept.
struct Found {
    limit: usize,
    total: i64,
    list: Vec<(Bytes, String)>,
}

impl Found {
    fn add(&mut self, key: Bytes, why: String) {
        self.total += 1;
        if self.list.len() < self.limit {
            self.list.push((key, why));
        }
    }
}

/// Compares the tiers key by key: every live row against Redis (a row
/// Redis lacks is not a disagreement: read-through serves it), then every
/// Redis key a rule mirrors against Postgres. `checked` counts both passes
/// (a key resident in both is counted twice).
async fn verify(
    tiers: &Tiers,
    nodes: &mut Nodes<'_>,
    pattern: &Bytes,
    limit: usize,
    proto: Protocol,
) -> Result<Bytes, String> {
    let mut found = Found {
        limit,
        total: 0,
        list: Vec::new(),
    };
    let mut checked = 0i64;
    let mut walk = Walk::new(pattern, true);
    while let Some(batch) = walk.next(tiers.store()).await.map_err(pg_error)? {
        // Spill rows stand for keys whose Redis side is a stub.
        let batch: Vec<_> = batch
            .into_iter()
            .filter(|r| !spilled(tiers, &r.key))
            .collect();
        let mut commands = Vec::with_capacity(batch.len() * 3);
        for row in &batch {
            let read = if row.kind == "string" { "GET" } else { "DUMP" };
            commands.push((row.key.clone(), vec![arg("TYPE"), row.key.clone()]));
            commands.push((row.key.clone(), vec![arg("PTTL"), row.key.clone()]));
            commands.push((row.key.clone(), vec![arg(read), row.key.clone()]));
        }
        let replies = nodes.by_key(&commands).await?;
        let now = crate::tier::now_ms();
        for (row, r) in batch.into_iter().zip(replies.chunks(3)) {
            checked += 1;
            let ty = crate::protocol::reply::string_payload(&r[0]).unwrap_or_default();
            if ty == b"none" {
                continue;
            }
            if ty != row.kind.as_bytes() {
                let why = format!(
                    "type: redis {} postgres {}",
                    String::from_utf8_lossy(ty),
                    row.kind
                );
                found.add(row.key, why);
                continue;
            }
            if bulk(&r[2]).as_deref() != row.value.as_deref() {
                found.add(row.key, "value differs".into());
                continue;
            }
            let redis_at = int(&r[1]).filter(|&t| t >= 0).map(|t| now + t);
            match (redis_at, row.expires_at_ms) {
                (None, None) => {}
                (Some(_), None) => found.add(row.key, "ttl: redis has one, postgres none".into()),
                (None, Some(_)) => found.add(row.key, "ttl: postgres has one, redis none".into()),
                (Some(a), Some(b)) if (a - b).abs() > TTL_SLACK_MS => {
                    found.add(row.key, format!("ttl: expiries {} ms apart", (a - b).abs()));
                }
                _ => {}
            }
        }
    }
    // Keys Redis holds under a mirror rule that Postgres lacks.
    for node in nodes.primaries() {
        let mut cursor = 0;
        loop {
            let (next, keys) = nodes.scan(&node, cursor, pattern, 500).await?;
            let mirrored: Vec<Bytes> = keys
                .into_iter()
                .filter(|k| {
                    tiers
                        .rules()
                        .find(k)
                        .is_some_and(|r| r.mode() != Mode::Spill)
                })
                .collect();
            if !mirrored.is_empty() {
                let rows = tiers.store().fetch(&mirrored).await.map_err(pg_error)?;
                checked += mirrored.len() as i64;
                for k in mirrored {
                    if !rows.iter().any(|r| r.key == k) {
                        found.add(k, "missing in postgres".into());
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    let mut r = ReplyBuf::new(proto);
    r.map(3);
    r.bulk(b"checked").integer(checked);
    r.bulk(b"disagreeing").integer(found.total);
    r.bulk(b"keys").array(found.list.len());
    for (key, why) in &found.list {
        r.array(2).bulk(key).bulk(why.as_bytes());
    }
    Ok(r.freeze())
}
