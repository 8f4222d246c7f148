//! `PROXY CHECKPOINT CREATE <pattern> | LIST | RESTORE <id> | DROP <id>`:
//! copies of the keys matching a pattern, kept in Postgres
//! (`strata_checkpoints`, `strata_checkpoint_entries`; migrations/0002).
//!
//! # What "consistent" means here
//!
//! CREATE walks every primary with `SCAN … MATCH` in batches and copies
//! each key with one Lua call (`DUMP` and `PTTL` together), so:
//!
//! * each key is copied atomically: its payload and its expiry are of one
//!   instant;
//! * every key that matches the pattern and exists for the whole CREATE is
//!   copied (SCAN's guarantee), with a value it held at some instant
//!   between `started_at` and `completed_at`;
//! * a key created, deleted or changed *during* the CREATE may be copied
//!   before or after the change, or (created/deleted) not at all.
//!
//! It is a per-key cut within the checkpoint's time window, not a
//! point-in-time snapshot across keys: two keys changed together by one
//! MULTI during the CREATE may be copied one before and one after it.
//! Taken while nothing writes the matching keys, it is exact. A checkpoint
//! becomes visible to RESTORE only once complete (`state = 'complete'`);
//! a CREATE that fails removes what it stored.
//!
//! RESTORE writes every copied key back with `RESTORE … REPLACE ABSTTL`
//! and the expiry it had (a key whose expiry has passed since is deleted,
//! as it would have expired). Keys created since the checkpoint are left
//! alone. Restored keys a mirror rule covers are written to Postgres too
//! ([`mirror_restored`]).

use bytes::Bytes;
use sqlx::Row;

use super::nodes::Nodes;
use crate::protocol::{Protocol, ReplyBuf};
use crate::tier::redis::{arg, bulk, int, num};
use crate::tier::Tiers;

/// Keys per SCAN call and per Postgres batch.
const BATCH: usize = 500;

/// `DUMP` and `PTTL` of one key at one instant; nil when it is gone.
/// With ARGV[1] (spill's stub prefix, for keys a spill rule names), a
/// key that is a spill stub also gives the stub as a third element: it is
/// then restored (`tier/spill/`) and copied again.
const COPY_SCRIPT: &str = "local d = redis.call('DUMP', KEYS[1]) \
if not d then return nil end \
local r = {d, redis.call('PTTL', KEYS[1])} \
if ARGV[1] and redis.call('TYPE', KEYS[1]).ok == 'string' \
  and redis.call('STRLEN', KEYS[1]) <= 512 then \
  local v = redis.call('GET', KEYS[1]) \
  if string.sub(v, 1, #ARGV[1]) == ARGV[1] then r[3] = v end \
end \
return r";

/// A parsed `PROXY CHECKPOINT …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointCommand {
    /// `CREATE <pattern>`.
    Create(Bytes),
    /// `LIST`.
    List,
    /// `RESTORE <id>`.
    Restore(i64),
    /// `DROP <id>`.
    Drop(i64),
}

/// Parses the words after `PROXY CHECKPOINT`.
pub fn parse(args: &[Bytes]) -> Result<CheckpointCommand, String> {
    let syntax = || format!("ERR syntax error. Try {}", super::USAGE);
    let id = |w: Option<&Bytes>| -> Result<i64, String> {
        std::str::from_utf8(w.ok_or_else(syntax)?)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| "ERR PROXY CHECKPOINT: the id must be a positive integer".to_string())
    };
    let Some(sub) = args.first() else {
        return Err(syntax());
    };
    let upper = sub.to_ascii_uppercase();
    match (&upper[..], args.len()) {
        (b"CREATE", 2) => match &args[1] {
            p if p.is_empty() => Err("ERR PROXY CHECKPOINT: the pattern must not be empty".into()),
            p => Ok(CheckpointCommand::Create(p.clone())),
        },
        (b"LIST", 1) => Ok(CheckpointCommand::List),
        (b"RESTORE", 2) => Ok(CheckpointCommand::Restore(id(args.get(1))?)),
        (b"DROP", 2) => Ok(CheckpointCommand::Drop(id(args.get(1))?)),
        (b"CREATE" | b"LIST" | b"RESTORE" | b"DROP", _) => Err(syntax()),
        _ => Err(format!(
            "ERR unknown PROXY CHECKPOINT subcommand '{}'. Try {}",
            crate::transform::envelope::show(sub),
            super::USAGE
        )),
    }
}

/// Runs one `PROXY CHECKPOINT` command; the reply frame.
pub async fn run(
    tiers: &Tiers,
    nodes: &mut Nodes<'_>,
    cmd: CheckpointCommand,
    proto: Protocol,
) -> Bytes {
    if let Err(e) = tiers.ensure_schema().await {
        return crate::protocol::reply::error(&format!("ERR tier unavailable: {e}"));
    }
    let result = match cmd {
        CheckpointCommand::Create(p) => create(tiers, nodes, &p).await.map(|id| {
            let mut r = ReplyBuf::new(proto);
            r.integer(id);
            r.freeze()
        }),
        CheckpointCommand::List => list(tiers, proto).await,
        CheckpointCommand::Restore(id) => restore(tiers, nodes, id, proto).await,
        CheckpointCommand::Drop(id) => drop_one(tiers, id).await,
    };
    result.unwrap_or_else(|text| crate::protocol::reply::error(&text))
}

fn pg_error(e: impl std::fmt::Display) -> String {
    format!("ERR tier unavailable: {e}")
}

async fn create(tiers: &Tiers, nodes: &mut Nodes<'_>, pattern: &Bytes) -> Result<i64, String> {
    let pool = tiers.store().pool();
    let id: i64 = tiers
        .store()
        .timed(
            sqlx::query_scalar("INSERT INTO strata_checkpoints (pattern) VALUES ($1) RETURNING id")
                .bind(&pattern[..])
                .fetch_one(pool),
        )
        .await
        .map_err(pg_error)?;
    match copy_keys(tiers, nodes, pattern, id).await {
        Ok(()) => Ok(id),
        Err(e) => {
            // Nothing half-made stays behind (best effort: a Postgres that
            // failed may refuse this too; the row then stays 'creating').
            let _ = tiers
                .store()
                .timed(
                    sqlx::query("DELETE FROM strata_checkpoints WHERE id = $1")
                        .bind(id)
                        .execute(pool),
                )
                .await;
            Err(e)
        }
    }
}

async fn copy_keys(
    tiers: &Tiers,
    nodes: &mut Nodes<'_>,
    pattern: &Bytes,
    id: i64,
) -> Result<(), String> {
    let pool = tiers.store().pool();
    for node in nodes.primaries() {
        let mut cursor = 0;
        loop {
            let (next, keys) = nodes.scan(&node, cursor, pattern, BATCH).await?;
            let commands: Vec<Vec<Bytes>> = keys
                .iter()
                .map(|k| {
                    let mut c = vec![arg("EVAL"), arg(COPY_SCRIPT), arg("1"), k.clone()];
                    if spill_key(tiers, k) {
                        c.push(Bytes::from_static(crate::tier::spill::MAGIC));
                    }
                    c
                })
                .collect();
            let replies = nodes.on(&node, &commands).await?;
            let now = crate::tier::now_ms();
            let (mut names, mut payloads, mut expiries) = (Vec::new(), Vec::new(), Vec::new());
            let mut stubs: Vec<(usize, crate::tier::spill::Stub)> = Vec::new();
            for (key, frame) in keys.iter().zip(&replies) {
                if let Some(t) = crate::tier::redis::error_text(frame) {
                    return Err(format!("ERR PROXY CHECKPOINT CREATE: redis: {t}"));
                }
                let Some(elems) = crate::protocol::reply::aggregate_elements(frame) else {
                    continue; // gone since the SCAN
                };
                let (Some(payload), Some(pttl)) = (
                    elems.first().and_then(|r| bulk(&frame.slice(r.clone()))),
                    elems.get(1).and_then(|r| int(&frame[r.clone()])),
                ) else {
                    continue;
                };
                if let Some(stub) = elems
                    .get(2)
                    .and_then(|r| bulk(&frame.slice(r.clone())))
                    .and_then(|raw| crate::tier::spill::parse_stub(&raw))
                {
                    stubs.push((names.len(), stub));
                }
                names.push(key.to_vec());
                payloads.push(payload.to_vec());
                expiries.push((pttl >= 0).then_some(now + pttl));
            }
            // Spilled keys: restored first, then copied as resident keys
            // (a stub's row may hold a string's bytes, not a DUMP payload).
            if !stubs.is_empty() {
                let mut again = Vec::with_capacity(stubs.len());
                for (i, _) in stubs.iter().rev() {
                    again.push(Bytes::from(names.remove(*i)));
                    payloads.remove(*i);
                    expiries.remove(*i);
                }
                tiers
                    .unspill(&nodes.link(CHECKPOINT_CLIENT_ID), &again)
                    .await?;
                let commands: Vec<Vec<Bytes>> = again
                    .iter()
                    .map(|k| vec![arg("EVAL"), arg(COPY_SCRIPT), arg("1"), k.clone()])
                    .collect();
                let replies = nodes
                    .by_key(&again.iter().cloned().zip(commands).collect::<Vec<_>>())
                    .await?;
                let now = crate::tier::now_ms();
                for (key, frame) in again.iter().zip(&replies) {
                    if let Some(t) = crate::tier::redis::error_text(frame) {
                        return Err(format!("ERR PROXY CHECKPOINT CREATE: redis: {t}"));
                    }
                    let Some(elems) = crate::protocol::reply::aggregate_elements(frame) else {
                        continue;
                    };
                    let (Some(payload), Some(pttl)) = (
                        elems.first().and_then(|r| bulk(&frame.slice(r.clone()))),
                        elems.get(1).and_then(|r| int(&frame[r.clone()])),
                    ) else {
                        continue;
                    };
                    names.push(key.to_vec());
                    payloads.push(payload.to_vec());
                    expiries.push((pttl >= 0).then_some(now + pttl));
                }
            }
            if !names.is_empty() {
                let insert = sqlx::query(
                    "INSERT INTO strata_checkpoint_entries (checkpoint_id, key, payload, expires_at) \
                     SELECT $1, k, p, timestamptz 'epoch' + e * interval '1 millisecond' \
                     FROM UNNEST($2::bytea[], $3::bytea[], $4::int8[]) AS x(k, p, e) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(names)
                .bind(payloads)
                .bind(expiries);
                tiers
                    .store()
                    .timed(insert.execute(pool))
                    .await
                    .map_err(pg_error)?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    tiers
        .store()
        .timed(
            sqlx::query(
                "UPDATE strata_checkpoints SET state = 'complete', completed_at = now(), \
         keys = (SELECT count(*) FROM strata_checkpoint_entries WHERE checkpoint_id = $1), \
         bytes = (SELECT coalesce(sum(octet_length(key) + octet_length(payload)), 0) \
                  FROM strata_checkpoint_entries WHERE checkpoint_id = $1) \
         WHERE id = $1",
            )
            .bind(id)
            .execute(pool),
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// CREATE's client id on the multiplexed connections, for restoring
/// spilled keys (no real client has it).
const CHECKPOINT_CLIENT_ID: u64 = u64::MAX - 0x5352;

/// True when a spill rule names `key`.
fn spill_key(tiers: &Tiers, key: &[u8]) -> bool {
    tiers
        .rules()
        .find(key)
        .is_some_and(|r| r.mode() == crate::tier::rules::Mode::Spill)
}

/// Every checkpoint, oldest first: a map each (id, pattern, state, keys,
/// bytes, times in Unix ms).
async fn list(tiers: &Tiers, proto: Protocol) -> Result<Bytes, String> {
    let rows = tiers
        .store()
        .timed(
            sqlx::query(
                "SELECT id, pattern, state, keys, bytes, \
         (extract(epoch FROM started_at) * 1000)::int8, \
         (extract(epoch FROM completed_at) * 1000)::int8 \
         FROM strata_checkpoints ORDER BY id",
            )
            // A replica within the lag bound may answer (`read_from`).
            .fetch_all(tiers.store().read_pool()),
        )
        .await
        .map_err(pg_error)?;
    let mut r = ReplyBuf::new(proto);
    r.array(rows.len());
    for row in &rows {
        let get_i = |i: usize| row.try_get::<i64, _>(i).unwrap_or(0);
        let pattern: Vec<u8> = row.try_get(1).unwrap_or_default();
        let state: String = row.try_get(2).unwrap_or_default();
        r.map(7);
        r.bulk(b"id").integer(get_i(0));
        r.bulk(b"pattern").bulk(&pattern);
        r.bulk(b"state").bulk(state.as_bytes());
        r.bulk(b"keys").integer(get_i(3));
        r.bulk(b"bytes").integer(get_i(4));
        r.bulk(b"started_at_ms").integer(get_i(5));
        r.bulk(b"completed_at_ms");
        match row.try_get::<Option<i64>, _>(6).ok().flatten() {
            Some(t) => r.integer(t),
            None => r.null(),
        };
    }
    Ok(r.freeze())
}

async fn restore(
    tiers: &Tiers,
    nodes: &mut Nodes<'_>,
    id: i64,
    proto: Protocol,
) -> Result<Bytes, String> {
    let pool = tiers.store().pool();
    let state: Option<String> = tiers
        .store()
        .timed(
            sqlx::query_scalar("SELECT state FROM strata_checkpoints WHERE id = $1")
                .bind(id)
                .fetch_optional(pool),
        )
        .await
        .map_err(pg_error)?;
    match state.as_deref() {
        Some("complete") => {}
        Some(_) => {
            return Err(format!(
                "ERR PROXY CHECKPOINT: checkpoint {id} is not complete"
            ))
        }
        None => return Err(format!("ERR PROXY CHECKPOINT: no such checkpoint {id}")),
    }
    let (mut restored, mut expired) = (0i64, 0i64);
    let mut last: Option<Vec<u8>> = None;
    loop {
        let rows = tiers
            .store()
            .timed(
                sqlx::query(
                    "SELECT key, payload, (extract(epoch FROM expires_at) * 1000)::int8 \
             FROM strata_checkpoint_entries \
             WHERE checkpoint_id = $1 AND ($2::bytea IS NULL OR key > $2) \
             ORDER BY key LIMIT $3",
                )
                .bind(id)
                .bind(last.as_deref())
                .bind(BATCH as i64)
                .fetch_all(pool),
            )
            .await
            .map_err(pg_error)?;
        let now = crate::tier::now_ms();
        let mut commands = Vec::with_capacity(rows.len());
        // Keys a mirror rule covers: (key, expiry, deleted), written to
        // Postgres too.
        let mut mirrored: Vec<(Bytes, Option<i64>, bool)> = Vec::new();
        for row in &rows {
            let key: Vec<u8> = row.try_get(0).map_err(pg_error)?;
            let payload: Vec<u8> = row.try_get(1).map_err(pg_error)?;
            let at: Option<i64> = row.try_get(2).map_err(pg_error)?;
            let key = Bytes::from(key);
            let gone = at.is_some_and(|at| at <= now);
            let command = if gone {
                expired += 1;
                vec![arg("DEL"), key.clone()]
            } else {
                restored += 1;
                vec![
                    arg("RESTORE"),
                    key.clone(),
                    num(at.unwrap_or(0)),
                    Bytes::from(payload),
                    arg("REPLACE"),
                    arg("ABSTTL"),
                ]
            };
            if tiers.rules().find(&key).is_some() {
                mirrored.push((key.clone(), at, gone));
            }
            commands.push((key, command));
        }
        let locked: Vec<Bytes> = mirrored.iter().map(|(k, _, _)| k.clone()).collect();
        let _guards = tiers.lock_keys(&locked).await;
        let replies = nodes.by_key(&commands).await?;
        for r in &replies {
            if let Some(t) = crate::tier::redis::error_text(r) {
                return Err(format!("ERR PROXY CHECKPOINT RESTORE: redis: {t}"));
            }
        }
        mirror_restored(tiers, nodes, &mirrored).await?;
        if rows.len() < BATCH {
            break;
        }
        last = commands.last().map(|(k, _)| k.to_vec());
    }
    let mut r = ReplyBuf::new(proto);
    r.map(2);
    r.bulk(b"restored").integer(restored);
    r.bulk(b"expired").integer(expired);
    Ok(r.freeze())
}

/// Writes restored keys that a mirror rule covers to Postgres as a
/// write-through capture would (their type, then GET or DUMP, read back
/// from Redis), and deletes the expired ones. If Postgres fails, the keys
/// are deleted from Redis so the tiers cannot disagree silently (the next
/// read re-warms what Postgres holds), and the error says so. The caller
/// holds the keys' tier locks.
async fn mirror_restored(
    tiers: &Tiers,
    nodes: &mut Nodes<'_>,
    keys: &[(Bytes, Option<i64>, bool)],
) -> Result<(), String> {
    if keys.is_empty() {
        return Ok(());
    }
    let deleted: Vec<(Bytes, Option<i64>)> = keys
        .iter()
        .filter(|(_, _, gone)| *gone)
        .map(|(k, _, _)| (k.clone(), None))
        .collect();
    let live: Vec<&(Bytes, Option<i64>, bool)> = keys.iter().filter(|(_, _, gone)| !gone).collect();
    let mut reads = Vec::with_capacity(live.len() * 3);
    for (k, _, _) in &live {
        reads.push((k.clone(), vec![arg("TYPE"), k.clone()]));
        reads.push((k.clone(), vec![arg("GET"), k.clone()]));
        reads.push((k.clone(), vec![arg("DUMP"), k.clone()]));
    }
    let replies = nodes.by_key(&reads).await?;
    let mut puts = Vec::with_capacity(live.len());
    for ((key, at, _), r) in live.iter().zip(replies.chunks(3)) {
        let Some(kind) = crate::tier::redis_type(crate::protocol::reply::string_payload(&r[0]))
        else {
            continue; // gone or changed meanwhile
        };
        let value = if kind == "string" {
            bulk(&r[1])
        } else {
            bulk(&r[2])
        };
        let Some(value) = value else { continue };
        puts.push(crate::tier::store::Put {
            key: key.clone(),
            kind,
            value,
            expires_at_ms: *at,
            version: None,
        });
    }
    let written = async {
        tiers.store().put(&puts).await?;
        tiers.store().delete(&deleted).await
    }
    .await;
    if let Err(e) = written {
        let invalidate: Vec<(Bytes, Vec<Bytes>)> = keys
            .iter()
            .map(|(k, _, _)| (k.clone(), vec![arg("DEL"), k.clone()]))
            .collect();
        let _ = nodes.by_key(&invalidate).await;
        return Err(format!(
            "ERR tier unavailable: {e} (the restored keys under mirror rules were removed from Redis; their Postgres rows are unchanged)"
        ));
    }
    Ok(())
}

async fn drop_one(tiers: &Tiers, id: i64) -> Result<Bytes, String> {
    let done = tiers
        .store()
        .timed(
            sqlx::query("DELETE FROM strata_checkpoints WHERE id = $1")
                .bind(id)
                .execute(tiers.store().pool()),
        )
        .await
        .map_err(pg_error)?;
    if done.rows_affected() == 0 {
        return Err(format!("ERR PROXY CHECKPOINT: no such checkpoint {id}"));
    }
    Ok(crate::protocol::reply::ok())
}
