//! The capture: a write to a write-behind key becomes one run of
//! `lua/tier_behind_capture.lua`, which applies it and appends its outbox
//! entry atomically. The script's reply is the client's reply (the script
//! runs on the client's connection, in its protocol), so nothing is
//! translated here.
//!
//! Relative TTLs were already turned into absolute times by the parser
//! (`tier/args.rs`), so Redis and Postgres get the same expiry.

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

impl Behind {
    /// Runs a write to write-behind keys; the reply is the client's.
    pub async fn write(&self, link: &RedisLink<'_>, write: Write) -> Bytes {
        let now = crate::tier::now_ms();
        let mut keys = vec![self.stream.clone(), self.meta.clone()];
        let mut args = vec![
            arg(""),
            num(i64::try_from(self.config.outbox_max_bytes).unwrap_or(i64::MAX)),
            num(now),
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
                    }
                }
                reply
            }
            Err(e) => reply::error(&format!("ERR backend unavailable: {e}")),
        }
    }
}
