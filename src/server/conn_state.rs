//! The server-side state a client holds on its dedicated backend connection.
//!
//! The session predicts it from the commands it forwards, which is exact
//! for what matters (Redis keeps subscription sets and MULTI/WATCH state
//! deterministically), so it knows when the connection is clean and can go
//! back to the pool, and how many reply frames each command produces.

use std::collections::HashSet;

use bytes::Bytes;

use crate::command::CommandSpec;

/// What a dedicated connection holds.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Inside MULTI.
    pub in_multi: bool,
    /// WATCH is active.
    pub watching: bool,
    /// SUBSCRIBE channels.
    pub channels: HashSet<Bytes>,
    /// PSUBSCRIBE patterns.
    pub patterns: HashSet<Bytes>,
    /// SSUBSCRIBE shard channels.
    pub shard_channels: HashSet<Bytes>,
    /// MONITOR is on.
    pub monitor: bool,
    /// CLIENT TRACKING is on.
    pub tracking: bool,
    /// The selected database.
    pub db: i64,
    /// A SELECT queued inside MULTI: it takes effect at EXEC.
    pub queued_db: Option<i64>,
    /// A script call is queued inside MULTI: EXEC may run as long as it
    /// does, so it gets no strata deadline.
    pub queued_script: bool,
}

impl ConnState {
    /// True when nothing ties the client to its connection.
    pub fn is_clean(&self) -> bool {
        !self.in_multi
            && !self.watching
            && self.channels.is_empty()
            && self.patterns.is_empty()
            && self.shard_channels.is_empty()
            && !self.monitor
            && !self.tracking
            && self.db == 0
    }

    /// True while subscribed to anything.
    pub fn subscribed(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard_channels.is_empty())
    }

    /// Applies a command about to be forwarded; returns how many reply
    /// frames (not counting pub/sub messages) the backend will send for it.
    pub fn apply(&mut self, spec: Option<&CommandSpec>, args: &[Bytes]) -> usize {
        let Some(spec) = spec else { return 1 };
        if self.in_multi {
            // Inside MULTI everything is queued (+QUEUED) except these.
            match spec.name {
                "exec" => {
                    self.in_multi = false;
                    self.watching = false;
                    self.queued_script = false;
                    if let Some(db) = self.queued_db.take() {
                        self.db = db;
                    }
                }
                "discard" => {
                    self.in_multi = false;
                    self.watching = false;
                    self.queued_db = None;
                    self.queued_script = false;
                }
                "select" => {
                    if let Some(db) = args
                        .get(1)
                        .and_then(|a| crate::protocol::request::parse_int(a))
                    {
                        self.queued_db = Some(db);
                    }
                }
                _ if spec.has(crate::command::Flags::RUNS_SCRIPT) => self.queued_script = true,
                _ => {}
            }
            return 1;
        }
        let rest = &args[1..];
        match spec.name {
            "multi" => self.in_multi = true,
            "exec" | "discard" => self.watching = false,
            "watch" => self.watching = true,
            "unwatch" => self.watching = false,
            "subscribe" => return subscribe(&mut self.channels, rest),
            "psubscribe" => return subscribe(&mut self.patterns, rest),
            "ssubscribe" => return subscribe(&mut self.shard_channels, rest),
            "unsubscribe" => return unsubscribe(&mut self.channels, rest),
            "punsubscribe" => return unsubscribe(&mut self.patterns, rest),
            "sunsubscribe" => return unsubscribe(&mut self.shard_channels, rest),
            "monitor" => self.monitor = true,
            "client|tracking" => {
                self.tracking = args.get(2).is_some_and(|a| a.eq_ignore_ascii_case(b"on"));
            }
            "select" => {
                if let Some(db) = args
                    .get(1)
                    .and_then(|a| crate::protocol::request::parse_int(a))
                {
                    self.db = db;
                }
            }
            "reset" => *self = ConnState::default(),
            _ => {}
        }
        1
    }
}

fn subscribe(set: &mut HashSet<Bytes>, names: &[Bytes]) -> usize {
    for name in names {
        set.insert(name.clone());
    }
    names.len().max(1)
}

fn unsubscribe(set: &mut HashSet<Bytes>, names: &[Bytes]) -> usize {
    if names.is_empty() {
        // One confirmation per channel, or a single one when there were none.
        let n = set.len().max(1);
        set.clear();
        return n;
    }
    for name in names {
        set.remove(name);
    }
    names.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::command::lookup;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    fn apply(st: &mut ConnState, s: &str) -> usize {
        let a = args(s);
        st.apply(lookup(&a), &a)
    }

    #[test]
    fn multi_exec_cycle() {
        let mut st = ConnState::default();
        apply(&mut st, "WATCH k");
        assert!(!st.is_clean());
        apply(&mut st, "MULTI");
        apply(&mut st, "SET k v");
        assert!(st.in_multi);
        apply(&mut st, "EXEC");
        assert!(st.is_clean());
    }

    #[test]
    fn subscription_counts() {
        let mut st = ConnState::default();
        assert_eq!(apply(&mut st, "SUBSCRIBE a b"), 2);
        assert_eq!(apply(&mut st, "PSUBSCRIBE p*"), 1);
        assert_eq!(apply(&mut st, "UNSUBSCRIBE"), 2);
        assert!(!st.is_clean());
        assert_eq!(apply(&mut st, "PUNSUBSCRIBE"), 1);
        assert!(st.is_clean());
        assert_eq!(apply(&mut st, "UNSUBSCRIBE"), 1);
    }

    #[test]
    fn select_inside_multi_applies_at_exec() {
        let mut st = ConnState::default();
        apply(&mut st, "MULTI");
        apply(&mut st, "SELECT 1");
        assert_eq!(st.db, 0);
        apply(&mut st, "EXEC");
        assert_eq!(st.db, 1);
        assert!(!st.is_clean());
        apply(&mut st, "MULTI");
        apply(&mut st, "SELECT 0");
        apply(&mut st, "DISCARD");
        assert_eq!(st.db, 1);
    }

    #[test]
    fn select_and_reset() {
        let mut st = ConnState::default();
        apply(&mut st, "SELECT 3");
        assert!(!st.is_clean());
        apply(&mut st, "RESET");
        assert!(st.is_clean());
    }
}
