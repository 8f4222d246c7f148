//! The capture: a write to a write-behind key becomes one run of
//! `lua/tier_behind_capture.lua`, which applies it and appends its outbox
//! entry atomically. The script's reply is the client's reply (the script
//! runs on the client's connection, in its protocol), so nothing is
//! translated here.
//!
//! Relative TTLs were already turned into absolute times by the parser
//! (`tier/args.rs`), so Redis and Postgres get the same expiry.
//!
//! Cluster mode: a change goes to its key's slot's outbox (`outbox.rs`).
//! MSET and DEL naming keys of several slots are captured one slot at a
//! time, each slot's part atomic with its entries (as strata runs such a
//! command without tiers: split per slot). The bound is checked twice:
//! exactly per slot by the script, and over the whole cluster against the
//! bytes the drain last counted in every slot's outbox (every second), so
//! the outboxes together hold at most about `outbox_max_bytes` plus one
//! second of writes.

use bytes::Bytes;

use crate::protocol::reply;
use crate::tier::args::Expiry;
use crate::tier::plan::Write;
use crate::tier::redis::{arg, error_text, num, RedisLink};

use super::Behind;

fn flag(b: bool) -> Bytes {
    arg(if b { "1" } else { "0" })
}

fn flags(bs: &[bool]) -> Bytes {
    Bytes::from(
        bs.iter()
            .map(|&b| if b { '1' } else { '0' })
            .collect::<String>(),
    )
}

/// The key a write's slot is read from (cluster mode).
fn first_key(write: &Write) -> Option<&Bytes> {
    match write {
        Write::Set(s) => Some(&s.key),
        Write::GetDel(k) | Write::Persist(k) | Write::Expire { key: k, .. } => Some(k),
        Write::MSet { pairs, .. } => pairs.first().map(|(k, _)| k),
        Write::Del { keys, .. } => keys.first(),
        Write::Rename(r) => Some(&r.src),
        Write::Spill(_) | Write::Flush(_) => None,
    }
}

/// Cluster mode: a multi-key write cut into one write per slot (keys in
/// their order within each).
fn per_slot(write: Write) -> Vec<Write> {
    use crate::command::slot::hash_slot;
    let mut out: Vec<(u16, Write)> = Vec::new();
    match write {
        Write::MSet { pairs, mirrored } => {
            for (pair, m) in pairs.into_iter().zip(mirrored) {
                let slot = hash_slot(&pair.0);
                match out.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, Write::MSet { pairs, mirrored })) => {
                        pairs.push(pair);
                        mirrored.push(m);
                    }
                    _ => out.push((
                        slot,
                        Write::MSet {
                            pairs: vec![pair],
                            mirrored: vec![m],
                        },
                    )),
                }
            }
        }
        Write::Del {
            keys,
            mirrored,
            unlink,
        } => {
            for (key, m) in keys.into_iter().zip(mirrored) {
                let slot = hash_slot(&key);
                match out.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, Write::Del { keys, mirrored, .. })) => {
                        keys.push(key);
                        mirrored.push(m);
                    }
                    _ => out.push((
                        slot,
                        Write::Del {
                            keys: vec![key],
                            mirrored: vec![m],
                            unlink,
                        },
                    )),
                }
            }
        }
        w => return vec![w],
    }
    out.into_iter().map(|(_, w)| w).collect()
}

impl Behind {
    /// Runs a write to write-behind keys; the reply is the client's.
    pub async fn write(&self, link: &RedisLink<'_>, write: Write) -> Bytes {
        if let Write::Flush(args) = write {
            return self.flush(link, args).await;
        }
        if !self.is_cluster() {
            return self.capture(link, write).await;
        }
        let max = i64::try_from(self.config.outbox_max_bytes).unwrap_or(i64::MAX);
        let held = self
            .cluster_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        if held >= max {
            self.stats.backlog_full.inc();
            return reply::error(&format!(
                "ERR tier backlog full (the write-behind outboxes hold {held} of {max} bytes; \
                 Postgres is behind or unreachable)"
            ));
        }
        let parts = per_slot(write);
        if parts.len() == 1 {
            let mut parts = parts;
            return match parts.pop() {
                Some(w) => self.capture(link, w).await,
                None => reply::error("ERR tier: empty write"),
            };
        }
        // MSET answers OK, DEL the sum; the first error is the answer.
        let mut sum = 0i64;
        let mut last = Bytes::new();
        for part in parts {
            let r = self.capture(link, part).await;
            if error_text(&r).is_some() {
                return r;
            }
            sum += crate::tier::redis::int(&r).unwrap_or(0);
            last = r;
        }
        if last.first() == Some(&b':') {
            Bytes::from(format!(":{sum}\r\n"))
        } else {
            last
        }
    }

    /// One capture script run: the write (keys of one slot in cluster
    /// mode) and its entries.
    async fn capture(&self, link: &RedisLink<'_>, write: Write) -> Bytes {
        let now = crate::tier::now_ms();
        let slot = first_key(&write).map(|k| crate::command::slot::hash_slot(k));
        let outbox = match first_key(&write) {
            Some(k) => self.outbox_for(k),
            None => self.single(),
        };
        let mut keys = vec![outbox.stream, outbox.meta];
        let mut args = vec![
            arg(""),
            num(i64::try_from(self.config.outbox_max_bytes).unwrap_or(i64::MAX)),
            num(now),
            Bytes::from(self.config.group.clone()),
        ];
        match write {
            Write::Set(s) => {
                args[0] = arg("set");
                keys.push(s.key);
                let (mode, at) = match s.expiry {
                    Expiry::None => ("none", Bytes::new()),
                    Expiry::Keep => ("keep", Bytes::new()),
                    Expiry::At(at) => ("at", num(at)),
                };
                args.extend([s.value, flag(s.nx), flag(s.xx), flag(s.get), arg(mode), at]);
            }
            Write::MSet { pairs, mirrored } => {
                args[0] = arg("mset");
                args.push(flags(&mirrored));
                for (k, v) in pairs {
                    keys.push(k);
                    args.push(v);
                }
            }
            Write::Del {
                keys: names,
                mirrored,
                unlink,
            } => {
                args[0] = arg("del");
                args.push(arg(if unlink { "UNLINK" } else { "DEL" }));
                args.push(flags(&mirrored));
                keys.extend(names);
            }
            Write::GetDel(key) => {
                args[0] = arg("getdel");
                keys.push(key);
            }
            Write::Expire {
                key,
                when_ms,
                flags: f,
            } => {
                args[0] = arg("expire");
                keys.push(key);
                args.push(num(when_ms));
                args.push(flags(&[f.nx, f.xx, f.gt, f.lt]));
            }
            Write::Persist(key) => {
                args[0] = arg("persist");
                keys.push(key);
            }
            Write::Rename(r) => {
                args[0] = arg("rename");
                keys.extend([r.src, r.dst]);
                args.push(arg(r.mode.name()));
                args.push(flags(&[r.src_mirrored, r.dst_mirrored]));
            }
            Write::Flush(_) => return reply::error("ERR tier: flush reached the capture"),
            // `Tiers::write` runs these before it looks for write-behind.
            Write::Spill(touch) => {
                return reply::error(&format!(
                    "ERR tier: '{}' on a spilled key reached write-behind",
                    String::from_utf8_lossy(touch.args.first().map_or(&b""[..], |a| a))
                ))
            }
        }
        let route = keys[2].clone();
        match self.capture.run(link, &route, &keys, &args).await {
            Ok(reply) => {
                match error_text(&reply) {
                    Some(text) if text.starts_with("ERR tier backlog full") => {
                        self.stats.backlog_full.inc();
                    }
                    Some(_) => {}
                    None => {
                        self.stats.captured.inc();
                        if let (true, Some(slot)) = (self.is_cluster(), slot) {
                            self.dirty.mark(slot);
                        }
                    }
                }
                reply
            }
            Err(e) => reply::error(&format!("ERR backend unavailable: {e}")),
        }
    }
}
