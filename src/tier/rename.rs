//! RENAME, RENAMENX and COPY on mirrored keys.
//!
//! Each is a put of the destination (the source's type, value or DUMP
//! payload, and absolute expiry) and, for the renames, a delete of the
//! source. Write-through commits both in **one Postgres transaction**
//! (`Store::put_and_delete`), each with the next `strata_version`, then
//! runs the command in Redis: the rows change together, and any change to
//! either key after it is a newer version. Write-behind records both in
//! the capture script, atomically with the command
//! (`lua/tier_behind_capture.lua`, op `rename`).
//!
//! What the command depends on is read from Redis under both keys' locks
//! after a re-warm, as for the other writes: an evicted source still
//! exists (it is re-warmed first), and for RENAMENX or COPY without
//! REPLACE an evicted destination counts as existing.
//!
//! COPY into another database (`DB n`, n ≠ 0) does not change database 0,
//! the one strata mirrors: the source is re-warmed and the command routed
//! as usual. MOVE and SWAPDB stay refused (`plan.rs`): each takes keys out
//! of database 0 (or swaps it whole), and Redis cannot do that and strata
//! change the rows as one change.

use bytes::Bytes;

use crate::protocol::reply;

use super::plan::{Plan, Write};
use super::redis::{arg, bulk, error_text, int, RedisLink};
use super::rules::Mode;
use super::store::Put;
use super::Tiers;

/// Which command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    /// RENAME: replaces the destination.
    Rename,
    /// RENAMENX: only when the destination does not exist.
    RenameNx,
    /// COPY: only when the destination does not exist.
    Copy,
    /// COPY … REPLACE.
    CopyReplace,
}

impl RenameMode {
    /// The name the capture script knows it by.
    pub fn name(self) -> &'static str {
        match self {
            RenameMode::Rename => "rename",
            RenameMode::RenameNx => "renamenx",
            RenameMode::Copy => "copy",
            RenameMode::CopyReplace => "copyreplace",
        }
    }

    /// True when the source goes away.
    fn moves(self) -> bool {
        matches!(self, RenameMode::Rename | RenameMode::RenameNx)
    }

    /// True when an existing destination makes it a no-op.
    fn needs_free_destination(self) -> bool {
        matches!(self, RenameMode::RenameNx | RenameMode::Copy)
    }
}

/// A RENAME, RENAMENX or COPY (database 0) naming a mirrored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub src: Bytes,
    pub dst: Bytes,
    pub mode: RenameMode,
    /// Whether a mirror rule names the source / the destination.
    pub src_mirrored: bool,
    pub dst_mirrored: bool,
}

impl Tiers {
    /// The plan for RENAME, RENAMENX or COPY whose keys a mirror rule names
    /// (arity already checked).
    pub(super) fn rename_plan(&self, args: &[Bytes], name: &str) -> Plan {
        let (src, dst) = (args[1].clone(), args[2].clone());
        let mut mode = match name {
            "rename" => RenameMode::Rename,
            "renamenx" => RenameMode::RenameNx,
            _ => RenameMode::Copy,
        };
        if name == "copy" {
            let mut i = 3;
            let mut other_db = false;
            while i < args.len() {
                let a = &args[i];
                if a.eq_ignore_ascii_case(b"replace") {
                    mode = RenameMode::CopyReplace;
                    i += 1;
                } else if a.eq_ignore_ascii_case(b"db") && i + 1 < args.len() {
                    match std::str::from_utf8(&args[i + 1])
                        .ok()
                        .and_then(|n| n.parse::<i64>().ok())
                    {
                        Some(0) => {}
                        Some(_) => other_db = true,
                        // Redis's own error, nothing applied.
                        None => return Plan::Proceed,
                    }
                    i += 2;
                } else {
                    // Redis's syntax error, nothing applied.
                    return Plan::Proceed;
                }
            }
            if other_db {
                // Database 0 does not change: only the source must be there.
                return Plan::Warm(vec![src]);
            }
        }
        let rules = self.rules.load();
        let rule = |k: &[u8]| rules.find(k).map(|r| r.mode());
        let (sm, dm) = (rule(&src), rule(&dst));
        if sm == Some(Mode::Spill) || dm == Some(Mode::Spill) {
            super::TierStats::bump(&self.stats.refused);
            return Plan::Answer(reply::error(&format!(
                "ERR tier: '{name}' between a spill key and a mirrored key is not supported \
                 (see docs/TIERS.md)"
            )));
        }
        let cluster = self.cluster.load(std::sync::atomic::Ordering::Relaxed);
        if cluster && crate::command::slot::hash_slot(&src) != crate::command::slot::hash_slot(&dst)
        {
            return Plan::Answer(reply::error(
                "CROSSSLOT Keys in request don't hash to the same slot",
            ));
        }
        Plan::Write(Write::Rename(Rename {
            src,
            dst,
            mode,
            src_mirrored: sm.is_some(),
            dst_mirrored: dm.is_some(),
        }))
    }

    /// Write-through RENAME, RENAMENX or COPY.
    pub(super) async fn rename(&self, link: &RedisLink<'_>, r: Rename) -> Result<Bytes, Bytes> {
        use super::mirror::{backend_down, integer};
        let keys = [r.src.clone(), r.dst.clone()];
        let _locks = self.locks.lock_all(&keys).await;
        let mut warm = Vec::new();
        if r.src_mirrored {
            warm.push(r.src.clone());
        }
        if r.dst_mirrored && r.mode.needs_free_destination() && r.dst != r.src {
            warm.push(r.dst.clone());
        }
        self.warm_locked(link, &warm)
            .await
            .map_err(|e| reply::error(&e))?;
        let command = match r.mode {
            RenameMode::Rename => vec![arg("RENAME"), r.src.clone(), r.dst.clone()],
            RenameMode::RenameNx => vec![arg("RENAMENX"), r.src.clone(), r.dst.clone()],
            RenameMode::Copy => vec![arg("COPY"), r.src.clone(), r.dst.clone()],
            RenameMode::CopyReplace => {
                vec![arg("COPY"), r.src.clone(), r.dst.clone(), arg("REPLACE")]
            }
        };
        let state = link
            .call(&[
                (r.src.clone(), vec![arg("TYPE"), r.src.clone()]),
                (r.src.clone(), vec![arg("PEXPIRETIME"), r.src.clone()]),
                (r.dst.clone(), vec![arg("EXISTS"), r.dst.clone()]),
            ])
            .await
            .map_err(backend_down)?;
        let kind = crate::tier::redis_type(reply::string_payload(&state[0]));
        let missing = reply::string_payload(&state[0]) == Some(&b"none"[..]);
        let dst_exists = int(&state[2]) == Some(1);
        // What changes nothing (a missing source, a taken destination, a
        // key renamed onto itself) is Redis's to answer.
        if missing
            || r.src == r.dst
            || (r.mode.needs_free_destination() && dst_exists)
            || !(r.dst_mirrored || r.mode.moves())
        {
            return link.call_one(&r.src, command).await.map_err(backend_down);
        }
        let put = if r.dst_mirrored {
            let Some(kind) = kind else {
                return Err(reply::error("ERR tier: cannot mirror this key's type"));
            };
            let read = if kind == "string" { "GET" } else { "DUMP" };
            let value = link
                .call_one(&r.src, vec![arg(read), r.src.clone()])
                .await
                .map_err(backend_down)?;
            let value = bulk(&value).ok_or_else(|| reply::error("ERR tier: key vanished"))?;
            Some(Put {
                key: r.dst.clone(),
                kind,
                value,
                expires_at_ms: int(&state[1]).filter(|&t| t > 0),
                version: None,
            })
        } else {
            None
        };
        let delete = (r.src_mirrored && r.mode.moves()).then(|| r.src.clone());
        self.commit(
            link,
            &keys,
            self.store
                .put_and_delete(put.as_ref(), delete.as_ref())
                .await,
        )
        .await?;
        let replies = self
            .apply(link, vec![(r.src.clone(), command)], &keys)
            .await?;
        let reply = replies.into_iter().next().unwrap_or_default();
        // Someone changed the keys in Redis behind strata's back meanwhile
        // (the command did nothing): Postgres has the change; the keys are
        // invalidated so that reads come from there.
        let did = match r.mode {
            RenameMode::Rename => error_text(&reply).is_none(),
            _ => int(&reply) == Some(1),
        };
        if !did {
            let commands: Vec<(Bytes, Vec<Bytes>)> = keys
                .iter()
                .map(|k| (k.clone(), vec![arg("DEL"), k.clone()]))
                .collect();
            let _ = link.call(&commands).await;
            return Ok(if r.mode == RenameMode::Rename {
                reply::ok()
            } else {
                integer(link, 1)
            });
        }
        Ok(reply)
    }
}
