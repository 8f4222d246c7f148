//! FLUSHALL and FLUSHDB with write-behind rules.
//!
//! A flush is a write to Redis, and strata never erases Postgres for one
//! (docs/TIERS.md: flushed mirrored keys come back from Postgres). The
//! changes still in the outbox were acknowledged to their clients, so they
//! must reach Postgres too: the flush runs in `lua/tier_behind_flush.lua`,
//! which copies the outboxes (DUMP: entries, consumer group, pending
//! entries), flushes, and puts them back, in one atomic script. Before,
//! a FLUSHALL through strata lost them.
//!
//! Cluster mode: the script runs on every primary (its outboxes are the
//! slots' it owns), as strata sends FLUSHALL to every primary anyway.

use bytes::Bytes;

use super::Behind;
use crate::command::slot::SLOT_COUNT;
use crate::protocol::reply;
use crate::tier::redis::{error_text, RedisLink};

/// A glob matching `text` literally (SCAN MATCH).
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for ch in text.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

impl Behind {
    /// Runs FLUSHALL or FLUSHDB (`args`: the command as the client sent
    /// it) keeping the outboxes; the reply is the client's.
    pub async fn flush(&self, link: &RedisLink<'_>, args: Vec<Bytes>) -> Bytes {
        let Some(verb) = args.first().cloned() else {
            return reply::error("ERR tier: empty flush");
        };
        let mut script_args = vec![
            Bytes::from(self.config.outbox_key.clone()),
            Bytes::from(format!("{}*", escape_glob(&self.config.outbox_key))),
            verb,
        ];
        script_args.extend(args.into_iter().skip(1));
        // Where to run it: the outbox (standalone), or one slot of every
        // primary (cluster).
        let routes: Vec<Bytes> = match link.cluster {
            None => vec![self.stream.clone()],
            Some(cluster) => {
                let view = cluster.view();
                let mut seen: Vec<std::sync::Arc<crate::backend::node::Node>> = Vec::new();
                let mut routes = Vec::new();
                for slot in 0..SLOT_COUNT {
                    if let Some(node) = view.primary(slot) {
                        if !seen.iter().any(|n| std::sync::Arc::ptr_eq(n, node)) {
                            seen.push(node.clone());
                            routes.push(self.slot_outbox(slot).stream);
                        }
                    }
                }
                routes
            }
        };
        let mut last = reply::ok();
        for route in routes {
            match self.flush_script.run(link, &route, &[], &script_args).await {
                Ok(r) if error_text(&r).is_some() => return r,
                Ok(r) => last = r,
                Err(e) => return reply::error(&format!("ERR backend unavailable: {e}")),
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs_are_escaped() {
        assert_eq!(super::escape_glob("strata:outbox"), "strata:outbox");
        assert_eq!(super::escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
