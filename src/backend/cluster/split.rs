//! Commands planned by the command table, split per slot, replies merged.
//!
//! [`plan`] reads a command's `Route` and key positions, never its name:
//!
//! * keys all in one slot (or `Route::Key` and friends): the request goes
//!   unchanged to that slot's owner ([`Plan::Slot`]); keys in several slots
//!   get Redis Cluster's own `CROSSSLOT` error ([`CrossSlot`]);
//! * `Route::SplitBySlot` with keys in several slots: one sub-command per
//!   slot ([`Split`]), each holding that slot's keys (with their values,
//!   for MSET) in request order. Redis Cluster refuses a multi-key command
//!   whose keys are in different slots even when one node owns them all,
//!   so the unit is the slot, not the node; the parts for one node are
//!   pipelined on its connection by the caller;
//! * `Route::AllPrimaries` / `Route::AllNodes`: fan-out ([`Plan::AllPrimaries`],
//!   [`Plan::AllNodes`]: replicas too);
//! * `Route::PubSub`: strata's pub/sub node ([`Plan::PubSub`]).
//!
//! The merge side turns the sub-replies (final ones: redirects already
//! followed) back into the one reply the client expects, by the table's
//! `Merge`: [`Split::merge`] and [`merge_fanout`]. An error from any part
//! becomes the whole reply (the first in part order), as a client of a
//! single Redis would see for the whole command.

use crate::protocol::ArgList;
use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use crate::command::slot::hash_slot;
use crate::command::{key_indexes, BeginSearch, CommandSpec, FindKeys, KeySpec, Merge, Route};
use crate::protocol::reply::is_error;

use super::resp;

/// Redis Cluster's error text when a command's keys span slots.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// The keys of a command that cannot be split hash to different slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("CROSSSLOT Keys in request don't hash to the same slot")]
pub struct CrossSlot;

impl CrossSlot {
    /// The error as the RESP reply Redis Cluster sends.
    pub fn to_reply(self) -> Bytes {
        Bytes::from_static(b"-CROSSSLOT Keys in request don't hash to the same slot\r\n")
    }
}

/// Where a command goes in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No key to route by (`Route::Any`, `Local`, `Unsupported`, or a
    /// keyed command whose arguments hold no key, which the node will
    /// reject with the right error): any node, or the session's own.
    Keyless,
    /// Every key is in this slot: forward the request unchanged.
    Slot(u16),
    /// Keys in several slots, split per slot.
    Split(Split),
    /// Sent to every primary, replies merged by the `Merge`.
    AllPrimaries(Merge),
    /// Sent to every node, replicas included, replies merged by the `Merge`.
    AllNodes(Merge),
    /// Sent to strata's pub/sub node (`ClusterView::pubsub_node`).
    PubSub,
}

/// A command split per slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    merge: Merge,
    keys: usize,
    parts: Vec<Part>,
}

/// One sub-command: the keys of one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The slot every key of this part hashes to.
    pub slot: u16,
    /// The sub-command, RESP-encoded: the command name as the client sent
    /// it, then this slot's keys (each with its value for MSET).
    pub frame: Bytes,
    /// For each key of this part (in part order), its position among the
    /// request's keys.
    positions: Vec<usize>,
}

impl Part {
    /// For each key of this part, its position among the request's keys.
    pub fn key_positions(&self) -> &[usize] {
        &self.positions
    }
}

/// Plans `args` (`args[0]` the command name) by `spec`, the command's
/// table entry. Allocation-free for a single-key command.
pub fn plan<A: ArgList + ?Sized>(spec: &CommandSpec, args: &A) -> Result<Plan, CrossSlot> {
    match spec.route {
        Route::AllPrimaries => return Ok(Plan::AllPrimaries(spec.merge)),
        Route::AllNodes => return Ok(Plan::AllNodes(spec.merge)),
        Route::PubSub => return Ok(Plan::PubSub),
        Route::Any | Route::Local | Route::Unsupported => return Ok(Plan::Keyless),
        Route::Key | Route::SplitBySlot | Route::Dedicated => {}
    }
    // Most keyed commands (GET, SET, INCR, HGET…) have one key at a fixed
    // index: its slot is the plan, without the general key finder.
    if let Some(index) = single_key_index(spec) {
        return match args.arg(index) {
            Some(key) => Ok(Plan::Slot(hash_slot(key))),
            None => Ok(Plan::Keyless), // too few arguments: the node answers the arity error
        };
    }
    plan_by_key_specs(spec, args)
}

/// [`plan`] for a keyed command, by the general key finder.
fn plan_by_key_specs<A: ArgList + ?Sized>(spec: &CommandSpec, args: &A) -> Result<Plan, CrossSlot> {
    let keys = key_indexes(spec, args);
    let Some(first) = keys.first() else {
        return Ok(Plan::Keyless);
    };
    let slot_of = |i: usize| args.arg(i).map(hash_slot);
    let slot = slot_of(first).unwrap_or(0);
    if keys.iter().skip(1).all(|i| slot_of(i) == Some(slot)) {
        return Ok(Plan::Slot(slot));
    }
    if spec.route != Route::SplitBySlot || !keys.is_complete() {
        return Err(CrossSlot);
    }
    let Some(step) = unit_step(spec, keys.as_slice(), args.argc()) else {
        // Not a plain run of keys (or key/value pairs) to the end of the
        // arguments (an odd MSET): splitting could drop or misplace
        // arguments. Sent whole, the node answers what Redis answers
        // (wrong number of arguments).
        return Ok(Plan::Slot(slot));
    };
    Ok(Plan::Split(split(
        spec.merge,
        args.all(),
        keys.as_slice(),
        step,
    )))
}

/// The index of a command's only key when its one key spec puts it at a
/// fixed index (`begin` an index, `find` a range of one argument).
fn single_key_index(spec: &CommandSpec) -> Option<usize> {
    let [KeySpec {
        begin: BeginSearch::Index(index),
        find: FindKeys::Range {
            last_key: 0, step, ..
        },
    }] = spec.key_specs
    else {
        return None;
    };
    (*index > 0 && *step > 0).then_some(*index)
}

/// The number of arguments each key carries (1 for MGET, 2 for MSET) when
/// the keys run at that step from the first key to the very end of the
/// arguments; `None` otherwise.
fn unit_step(spec: &CommandSpec, keys: &[usize], argc: usize) -> Option<usize> {
    let [spec_key] = spec.key_specs else {
        return None;
    };
    let FindKeys::Range { step, .. } = spec_key.find else {
        return None;
    };
    let first = *keys.first()?;
    let regular = keys
        .iter()
        .enumerate()
        .all(|(n, &i)| n.checked_mul(step).and_then(|o| o.checked_add(first)) == Some(i));
    let last = *keys.last()?;
    (step > 0 && regular && last.checked_add(step)? == argc).then_some(step)
}

fn split(merge: Merge, args: &[Bytes], keys: &[usize], step: usize) -> Split {
    let prefix = &args[..keys[0]];
    // Parts in order of their slot's first appearance in the request.
    let mut by_slot: HashMap<u16, usize> = HashMap::new();
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for (position, &index) in keys.iter().enumerate() {
        let slot = hash_slot(&args[index]);
        let part = *by_slot.entry(slot).or_insert_with(|| {
            groups.push((slot, Vec::new()));
            groups.len() - 1
        });
        groups[part].1.push(position);
    }
    let parts = groups
        .into_iter()
        .map(|(slot, positions)| {
            let units = positions.iter().map(|&p| &args[keys[p]..keys[p] + step]);
            Part {
                slot,
                frame: encode(prefix, units, positions.len() * step),
                positions,
            }
        })
        .collect();
    Split {
        merge,
        keys: keys.len(),
        parts,
    }
}

/// `*N` then `prefix` then every unit's arguments, as bulk strings.
fn encode<'a>(prefix: &[Bytes], units: impl Iterator<Item = &'a [Bytes]>, n: usize) -> Bytes {
    let argc = prefix.len() + n;
    let mut out = BytesMut::with_capacity(16 + argc * 16);
    header(&mut out, b'*', argc);
    let mut put = |arg: &Bytes| {
        header(&mut out, b'$', arg.len());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    };
    prefix.iter().for_each(&mut put);
    for unit in units {
        unit.iter().for_each(&mut put);
    }
    out.freeze()
}

fn header(out: &mut BytesMut, kind: u8, n: usize) {
    out.put_u8(kind);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

impl Split {
    /// The sub-commands, in order of their slot's first key in the request.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// How the replies are merged (from the command table).
    pub fn merge_kind(&self) -> Merge {
        self.merge
    }

    /// Number of keys in the request.
    pub fn key_count(&self) -> usize {
        self.keys
    }

    /// The client's reply from the parts' replies, `replies[i]` answering
    /// `parts()[i]`. `Merge::KeyOrder` puts every value back at its key's
    /// place in the request; the others merge as [`merge_fanout`].
    pub fn merge(&self, replies: &[Bytes]) -> Bytes {
        if replies.len() != self.parts.len() {
            return internal(&format!(
                "{} replies for {} sub-commands",
                replies.len(),
                self.parts.len()
            ));
        }
        if self.merge != Merge::KeyOrder {
            return merge_fanout(self.merge, replies);
        }
        if let Some(err) = replies.iter().find(|r| is_error(r)) {
            return err.clone();
        }
        let mut slots: Vec<&[u8]> = vec![&[]; self.keys];
        let mut len = 0;
        for (part, reply) in self.parts.iter().zip(replies) {
            let Some(values) = resp::elements(reply) else {
                return internal("a node answered a multi-key read with a non-array");
            };
            if values.len() != part.positions.len() {
                return internal(&format!(
                    "a node answered {} values for {} keys",
                    values.len(),
                    part.positions.len()
                ));
            }
            for (&position, value) in part.positions.iter().zip(values) {
                len += value.len();
                slots[position] = value;
            }
        }
        let mut out = BytesMut::with_capacity(len + 16);
        header(&mut out, b'*', self.keys);
        for value in slots {
            out.put_slice(value);
        }
        out.freeze()
    }
}

/// The client's reply from the replies of several nodes (fan-out, or the
/// parts of a split), by `merge`:
///
/// * `Sum`: integers added (DEL, EXISTS, DBSIZE…);
/// * `Concat`: arrays (or RESP3 sets) concatenated (KEYS), the first
///   reply's type kept;
/// * `AllOk`: `+OK` when every reply is (MSET, FLUSHALL…);
/// * `First`: the first reply that is neither an error nor a null
///   (RANDOMKEY: one empty node must not hide the others' keys), else the
///   first non-error;
/// * `One`: the first reply;
/// * `OneSucceeded`: the first success, else the first error other than
///   `NOTBUSY`, else the first reply (SCRIPT KILL: `+OK` if any primary
///   killed a script, `UNKILLABLE` over `NOTBUSY`, `NOTBUSY` only if no
///   primary was busy).
///
/// Otherwise an error reply wins over everything (the first, in reply order).
/// `KeyOrder` needs the key positions ([`Split::merge`]) and `Scan` the
/// cursor ([`super::scan`]); asked here, they answer an error.
pub fn merge_fanout(merge: Merge, replies: &[Bytes]) -> Bytes {
    if merge == Merge::OneSucceeded {
        return replies
            .iter()
            .find(|r| !is_error(r))
            .or_else(|| replies.iter().find(|r| !r.starts_with(b"-NOTBUSY")))
            .or_else(|| replies.first())
            .cloned()
            .unwrap_or_else(|| internal("no node answered"));
    }
    if merge != Merge::First {
        if let Some(err) = replies.iter().find(|r| is_error(r)) {
            return err.clone();
        }
    }
    match merge {
        Merge::Sum => {
            let mut sum: i64 = 0;
            for reply in replies {
                let Some(n) = resp::int(reply).filter(|_| reply.first() == Some(&b':')) else {
                    return internal("a node answered a count with a non-integer");
                };
                sum = sum.saturating_add(n);
            }
            let mut out = BytesMut::with_capacity(24);
            out.put_u8(b':');
            out.put_slice(itoa::Buffer::new().format(sum).as_bytes());
            out.put_slice(b"\r\n");
            out.freeze()
        }
        Merge::Concat => {
            let kind = match replies.first().and_then(|r| r.first()) {
                Some(&b'~') => b'~',
                _ => b'*',
            };
            let mut count = 0usize;
            let mut bodies: Vec<&[u8]> = Vec::with_capacity(replies.len());
            for reply in replies {
                if resp::is_null(reply) {
                    continue;
                }
                let (n, start) = match (reply.first(), resp::header(reply)) {
                    (Some(b'*' | b'~'), Some((n, start))) if n >= 0 => (n, start),
                    _ => return internal("a node answered a list with a non-array"),
                };
                // `n >= 0` was checked.
                count += n as usize;
                bodies.push(&reply[start..]);
            }
            let mut out =
                BytesMut::with_capacity(bodies.iter().map(|b| b.len()).sum::<usize>() + 16);
            header(&mut out, kind, count);
            for body in bodies {
                out.put_slice(body);
            }
            out.freeze()
        }
        Merge::AllOk => match replies.iter().find(|r| &r[..] != b"+OK\r\n") {
            Some(other) => other.clone(),
            None => crate::protocol::reply::ok(),
        },
        Merge::First => replies
            .iter()
            .find(|r| !is_error(r) && !resp::is_null(r))
            .or_else(|| replies.iter().find(|r| !is_error(r)))
            .or_else(|| replies.first())
            .cloned()
            .unwrap_or_else(|| internal("no node answered")),
        Merge::One => replies
            .first()
            .cloned()
            .unwrap_or_else(|| internal("no node answered")),
        Merge::AllTrue => all_true(replies),
        Merge::SumPairs => sum_pairs(replies),
        Merge::OneSucceeded => internal("unreachable: merged above"),
        Merge::KeyOrder | Merge::Scan => internal("merge needs the request's key order or cursor"),
    }
}

/// Element-wise AND of arrays of integers 0/1 of equal length.
fn all_true(replies: &[Bytes]) -> Bytes {
    let mut acc: Option<Vec<bool>> = None;
    for reply in replies {
        let Some(values) = resp::elements(reply).filter(|_| reply.first() == Some(&b'*')) else {
            return internal("a node answered SCRIPT EXISTS with a non-array");
        };
        let bits: Vec<bool> = values.iter().map(|v| resp::int(v) == Some(1)).collect();
        acc = Some(match acc {
            None => bits,
            Some(prev) if prev.len() == bits.len() => {
                prev.iter().zip(&bits).map(|(a, b)| *a && *b).collect()
            }
            Some(_) => return internal("nodes answered arrays of different lengths"),
        });
    }
    let bits = acc.unwrap_or_default();
    let mut out = BytesMut::with_capacity(16 + bits.len() * 4);
    header(&mut out, b'*', bits.len());
    for bit in bits {
        out.put_slice(if bit { b":1\r\n" } else { b":0\r\n" });
    }
    out.freeze()
}

/// `[name, n, name, n, …]` (or a map) of equal names from every node:
/// the first reply's names, the counts added pair by pair.
fn sum_pairs(replies: &[Bytes]) -> Bytes {
    let Some(first) = replies.first() else {
        return internal("no node answered");
    };
    let kind = match first.first() {
        Some(&b'%') => b'%',
        _ => b'*',
    };
    let mut names: Vec<&[u8]> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        let Some(elements) = resp::elements(reply) else {
            return internal("a node answered name/count pairs with a non-array");
        };
        if elements.len() % 2 != 0 || (i > 0 && elements.len() != names.len() * 2) {
            return internal("nodes answered different name/count pairs");
        }
        for (pair, chunk) in elements.chunks(2).enumerate() {
            let n = resp::int(chunk[1]).unwrap_or(0);
            if i == 0 {
                names.push(chunk[0]);
                counts.push(n);
            } else if let Some(c) = counts.get_mut(pair) {
                *c = c.saturating_add(n);
            }
        }
    }
    let mut out = BytesMut::with_capacity(first.len() + 16);
    let n = if kind == b'%' {
        names.len()
    } else {
        names.len() * 2
    };
    header(&mut out, kind, n);
    for (name, count) in names.iter().zip(counts) {
        out.put_slice(name);
        out.put_u8(b':');
        out.put_slice(itoa::Buffer::new().format(count).as_bytes());
        out.put_slice(b"\r\n");
    }
    out.freeze()
}

fn internal(what: &str) -> Bytes {
    crate::protocol::reply::error(&format!("ERR cluster merge: {what}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::command::lookup;
    use proptest::prelude::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// The single-key shortcut plans every such command of the table as
    /// the general key finder does, with too few, enough and extra
    /// arguments, keys with and without hash tags.
    #[test]
    fn single_key_shortcut_matches_the_key_finder() {
        let mut checked = 0;
        let specs = crate::command::COMMANDS
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()));
        for spec in specs {
            if single_key_index(spec).is_none() {
                continue;
            }
            checked += 1;
            for argc in 1..7 {
                for tagged in [false, true] {
                    let words: Vec<String> = (0..argc)
                        .map(|i| match (i, tagged) {
                            (0, _) => spec.name.replace('|', " "),
                            (_, true) => format!("{{tag}}arg{i}"),
                            (_, false) => format!("arg{i}"),
                        })
                        .collect();
                    let a: Vec<Bytes> = words
                        .iter()
                        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                        .collect();
                    assert_eq!(
                        plan(spec, &a),
                        plan_by_key_specs(spec, &a),
                        "{} with {argc} arguments",
                        spec.name
                    );
                }
            }
        }
        assert!(checked > 100, "only {checked} single-key commands");
    }

    fn plan_of(words: &[&str]) -> Result<Plan, CrossSlot> {
        let a = args(words);
        plan(lookup(&a).unwrap(), &a)
    }

    /// The bulk strings of a RESP command frame.
    fn decode(frame: &[u8]) -> Vec<Vec<u8>> {
        resp::elements(frame)
            .unwrap()
            .into_iter()
            .map(|f| resp::text(f).unwrap().to_vec())
            .collect()
    }

    fn strings(frame: &[u8]) -> Vec<String> {
        decode(frame)
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn script_exists_is_true_only_where_every_node_has_it() {
        let a = Bytes::from_static(b"*3\r\n:1\r\n:1\r\n:0\r\n");
        let b = Bytes::from_static(b"*3\r\n:1\r\n:0\r\n:0\r\n");
        assert_eq!(
            &merge_fanout(Merge::AllTrue, &[a.clone(), b])[..],
            b"*3\r\n:1\r\n:0\r\n:0\r\n"
        );
        assert_eq!(
            &merge_fanout(Merge::AllTrue, std::slice::from_ref(&a))[..],
            &a[..]
        );
        let err = Bytes::from_static(b"-ERR x\r\n");
        assert_eq!(merge_fanout(Merge::AllTrue, &[a, err.clone()]), err);
    }

    #[test]
    fn shard_numsub_counts_are_added_name_by_name() {
        let a = Bytes::from_static(b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:0\r\n");
        let b = Bytes::from_static(b"*4\r\n$1\r\na\r\n:0\r\n$1\r\nb\r\n:2\r\n");
        assert_eq!(
            &merge_fanout(Merge::SumPairs, &[a, b])[..],
            b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n"
        );
        let a = Bytes::from_static(b"%1\r\n$1\r\na\r\n:1\r\n");
        let b = Bytes::from_static(b"%1\r\n$1\r\na\r\n:3\r\n");
        assert_eq!(
            &merge_fanout(Merge::SumPairs, &[a.clone(), b])[..],
            b"%1\r\n$1\r\na\r\n:4\r\n"
        );
        let odd = Bytes::from_static(b"*1\r\n$1\r\na\r\n");
        assert!(merge_fanout(Merge::SumPairs, &[a, odd]).starts_with(b"-ERR cluster merge"));
    }

    #[test]
    fn single_slot_goes_unchanged() {
        assert_eq!(plan_of(&["GET", "foo"]), Ok(Plan::Slot(12182)));
        assert_eq!(
            plan_of(&["MGET", "{u}a", "{u}b", "{u}c"]),
            Ok(Plan::Slot(hash_slot(b"u")))
        );
        assert_eq!(
            plan_of(&["MSETNX", "{u}a", "1", "{u}b", "2"]),
            Ok(Plan::Slot(hash_slot(b"u")))
        );
        assert_eq!(plan_of(&["PING"]), Ok(Plan::Keyless));
        assert_eq!(plan_of(&["MGET"]), Ok(Plan::Keyless));
        assert_eq!(plan_of(&["EVAL", "return 1", "0"]), Ok(Plan::Keyless));
    }

    #[test]
    fn cross_slot_where_redis_cluster_refuses() {
        for words in [
            &["MSETNX", "a", "1", "b", "2"][..],
            &["EVAL", "return 1", "2", "a", "b"],
            &["EVALSHA", "abc", "2", "a", "b"],
            &["FCALL", "f", "2", "a", "b"],
            &["RENAME", "a", "b"],
            &["SUNIONSTORE", "d", "a", "b"],
            &["BLPOP", "a", "b", "0"],
            &["WATCH", "a", "b"],
        ] {
            assert_eq!(plan_of(words), Err(CrossSlot), "{words:?}");
        }
        // Odd MSET: not a clean run of pairs, so not split; sent whole, the
        // node answers Redis's own arity error.
        assert_eq!(
            plan_of(&["MSET", "a", "1", "b"]),
            Ok(Plan::Slot(hash_slot(b"a")))
        );
        assert_eq!(
            &CrossSlot.to_reply()[..],
            b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        );
        assert_eq!(CrossSlot.to_string(), CROSSSLOT);
    }

    #[test]
    fn fan_out_from_the_table() {
        assert_eq!(
            plan_of(&["KEYS", "*"]),
            Ok(Plan::AllPrimaries(Merge::Concat))
        );
        assert_eq!(plan_of(&["DBSIZE"]), Ok(Plan::AllPrimaries(Merge::Sum)));
        assert_eq!(plan_of(&["SCAN", "0"]), Ok(Plan::AllPrimaries(Merge::Scan)));
        assert_eq!(plan_of(&["FLUSHALL"]), Ok(Plan::AllPrimaries(Merge::AllOk)));
        assert_eq!(
            plan_of(&["RANDOMKEY"]),
            Ok(Plan::AllPrimaries(Merge::First))
        );
        assert_eq!(
            plan_of(&["SCRIPT", "LOAD", "return 1"]),
            Ok(Plan::AllPrimaries(Merge::First))
        );
        assert_eq!(
            plan_of(&["CONFIG", "SET", "maxmemory", "0"]),
            Ok(Plan::AllNodes(Merge::AllOk))
        );
        assert_eq!(
            plan_of(&["CONFIG", "RESETSTAT"]),
            Ok(Plan::AllNodes(Merge::AllOk))
        );
        assert_eq!(plan_of(&["CONFIG", "GET", "maxmemory"]), Ok(Plan::Keyless));
        assert_eq!(plan_of(&["PUBLISH", "ch", "m"]), Ok(Plan::PubSub));
        assert_eq!(plan_of(&["PUBSUB", "NUMSUB", "ch"]), Ok(Plan::PubSub));
        // A shard channel is routed like a key.
        assert_eq!(
            plan_of(&["SPUBLISH", "ch", "m"]),
            Ok(Plan::Slot(hash_slot(b"ch")))
        );
    }

    #[test]
    fn mget_split_and_merge() {
        // foo → 12182, bar → 5061, {foo}x → 12182.
        let Ok(Plan::Split(split)) = plan_of(&["mget", "foo", "bar", "{foo}x", "baz"]) else {
            panic!("not split");
        };
        assert_eq!(split.key_count(), 4);
        assert_eq!(split.merge_kind(), Merge::KeyOrder);
        let parts = split.parts();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].slot, 12182);
        assert_eq!(strings(&parts[0].frame), ["mget", "foo", "{foo}x"]);
        assert_eq!(parts[0].key_positions(), &[0, 2]);
        assert_eq!(strings(&parts[1].frame), ["mget", "bar"]);
        assert_eq!(strings(&parts[2].frame), ["mget", "baz"]);
        let replies = [
            Bytes::from_static(b"*2\r\n$1\r\nF\r\n$-1\r\n"),
            Bytes::from_static(b"*1\r\n$1\r\nB\r\n"),
            Bytes::from_static(b"*1\r\n_\r\n"),
        ];
        assert_eq!(
            &split.merge(&replies)[..],
            b"*4\r\n$1\r\nF\r\n$1\r\nB\r\n$-1\r\n_\r\n"
        );
        // An error from any part is the reply.
        let replies = [
            replies[0].clone(),
            Bytes::from_static(b"-ERR backend unavailable: x\r\n"),
            replies[2].clone(),
        ];
        assert_eq!(
            &split.merge(&replies)[..],
            b"-ERR backend unavailable: x\r\n"
        );
        // Shape mismatches are errors, not panics.
        let short = [
            Bytes::from_static(b"*1\r\n$1\r\nF\r\n"),
            replies[0].clone(),
            replies[0].clone(),
        ];
        assert!(split.merge(&short).starts_with(b"-ERR cluster merge"));
        assert!(split.merge(&short[..1]).starts_with(b"-ERR cluster merge"));
    }

    #[test]
    fn mset_pairs_stay_together() {
        let Ok(Plan::Split(split)) = plan_of(&["MSET", "foo", "1", "bar", "2", "{bar}y", "3"])
        else {
            panic!("not split");
        };
        let parts = split.parts();
        assert_eq!(parts.len(), 2);
        assert_eq!(strings(&parts[0].frame), ["MSET", "foo", "1"]);
        assert_eq!(
            strings(&parts[1].frame),
            ["MSET", "bar", "2", "{bar}y", "3"]
        );
        let ok = Bytes::from_static(b"+OK\r\n");
        assert_eq!(&split.merge(&[ok.clone(), ok.clone()])[..], b"+OK\r\n");
        let err = Bytes::from_static(b"-OOM command not allowed\r\n");
        assert_eq!(&split.merge(&[ok, err.clone()])[..], &err[..]);
    }

    #[test]
    fn counts_are_summed() {
        for cmd in ["DEL", "UNLINK", "EXISTS", "TOUCH"] {
            let Ok(Plan::Split(split)) = plan_of(&[cmd, "foo", "bar", "foo"]) else {
                panic!("{cmd} not split");
            };
            assert_eq!(split.merge_kind(), Merge::Sum);
            assert_eq!(split.parts().len(), 2);
            // A repeated key stays in its slot's part, twice, as sent.
            assert_eq!(strings(&split.parts()[0].frame), [cmd, "foo", "foo"]);
            let replies = [Bytes::from_static(b":2\r\n"), Bytes::from_static(b":1\r\n")];
            assert_eq!(&split.merge(&replies)[..], b":3\r\n");
        }
    }

    /// SCRIPT KILL / FUNCTION KILL over every primary: OK if any node
    /// killed a script, NOTBUSY only if none was busy.
    #[test]
    fn one_succeeded_merge() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        let notbusy = b(b"-NOTBUSY No scripts in execution right now.\r\n");
        let unkillable = b(b"-UNKILLABLE Sorry the script already executed write commands\r\n");
        let merge = |r: &[Bytes]| merge_fanout(Merge::OneSucceeded, r);
        assert_eq!(merge(&[notbusy.clone(), b(b"+OK\r\n")]), b(b"+OK\r\n"));
        assert_eq!(merge(&[notbusy.clone(), notbusy.clone()]), notbusy);
        assert_eq!(merge(&[notbusy.clone(), unkillable.clone()]), unkillable);
        assert_eq!(merge(&[unkillable.clone(), b(b"+OK\r\n")]), b(b"+OK\r\n"));
    }

    #[test]
    fn fanout_merges() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        assert_eq!(
            &merge_fanout(Merge::Sum, &[b(b":1\r\n"), b(b":41\r\n")])[..],
            b":42\r\n"
        );
        assert_eq!(&merge_fanout(Merge::Sum, &[])[..], b":0\r\n");
        assert!(merge_fanout(Merge::Sum, &[b(b"+OK\r\n")]).starts_with(b"-ERR cluster merge"));
        assert_eq!(
            &merge_fanout(
                Merge::Concat,
                &[
                    b(b"*1\r\n$1\r\na\r\n"),
                    b(b"*0\r\n"),
                    b(b"*2\r\n$1\r\nb\r\n$1\r\nc\r\n")
                ]
            )[..],
            b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        assert_eq!(
            &merge_fanout(Merge::Concat, &[b(b"~1\r\n+a\r\n"), b(b"~1\r\n+b\r\n")])[..],
            b"~2\r\n+a\r\n+b\r\n"
        );
        assert_eq!(&merge_fanout(Merge::Concat, &[])[..], b"*0\r\n");
        assert_eq!(
            &merge_fanout(Merge::Concat, &[b(b"*1\r\n$1\r\na\r\n"), b(b"-ERR x\r\n")])[..],
            b"-ERR x\r\n"
        );
        assert_eq!(
            &merge_fanout(Merge::AllOk, &[b(b"+OK\r\n"), b(b"+OK\r\n")])[..],
            b"+OK\r\n"
        );
        assert_eq!(
            &merge_fanout(Merge::AllOk, &[b(b"+OK\r\n"), b(b"!5\r\nERR x\r\n")])[..],
            b"!5\r\nERR x\r\n"
        );
        assert_eq!(
            &merge_fanout(
                Merge::First,
                &[b(b"$-1\r\n"), b(b"_\r\n"), b(b"$1\r\nk\r\n")]
            )[..],
            b"$1\r\nk\r\n"
        );
        assert_eq!(
            &merge_fanout(Merge::First, &[b(b"-ERR a\r\n"), b(b"$-1\r\n")])[..],
            b"$-1\r\n"
        );
        assert_eq!(
            &merge_fanout(Merge::First, &[b(b"-ERR a\r\n")])[..],
            b"-ERR a\r\n"
        );
        assert_eq!(
            &merge_fanout(Merge::One, &[b(b":1\r\n"), b(b":2\r\n")])[..],
            b":1\r\n"
        );
        assert!(merge_fanout(Merge::KeyOrder, &[]).starts_with(b"-ERR"));
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{0,8}",
            "\\{[a-c]\\}[a-z]{0,3}",
            "[a-z]{0,2}\\{[a-z]{0,2}\\}[a-z]{0,2}",
        ]
    }

    proptest! {
        /// MGET split then merged gives every key's value at its place.
        #[test]
        fn mget_split_merge_restores_order(
            keys in proptest::collection::vec(key_strategy(), 1..60),
            present in proptest::collection::vec(any::<bool>(), 60),
            resp3 in any::<bool>(),
        ) {
            let value = |k: &str| -> Option<String> {
                let i = hash_slot(k.as_bytes()) as usize % present.len();
                present[i].then(|| format!("v:{k}"))
            };
            let null: &[u8] = if resp3 { b"_\r\n" } else { b"$-1\r\n" };
            let encode_value = |v: &Option<String>| -> Vec<u8> {
                match v {
                    Some(v) => format!("${}\r\n{}\r\n", v.len(), v).into_bytes(),
                    None => null.to_vec(),
                }
            };
            let mut words = vec!["MGET".to_string()];
            words.extend(keys.iter().cloned());
            let a: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.clone())).collect();
            let expected = {
                let mut out = format!("*{}\r\n", keys.len()).into_bytes();
                for k in &keys {
                    out.extend(encode_value(&value(k)));
                }
                out
            };
            match plan(lookup(&a).unwrap(), &a).unwrap() {
                Plan::Slot(slot) => {
                    prop_assert!(keys.iter().all(|k| hash_slot(k.as_bytes()) == slot));
                }
                Plan::Split(split) => {
                    let mut seen = vec![false; keys.len()];
                    let replies: Vec<Bytes> = split.parts().iter().map(|part| {
                        let sub = decode(&part.frame);
                        let mut out = format!("*{}\r\n", sub.len() - 1).into_bytes();
                        for (key, &pos) in sub[1..].iter().zip(part.key_positions()) {
                            assert_eq!(hash_slot(key), part.slot);
                            assert_eq!(key, keys[pos].as_bytes());
                            seen[pos] = true;
                            out.extend(encode_value(&value(std::str::from_utf8(key).unwrap())));
                        }
                        Bytes::from(out)
                    }).collect();
                    prop_assert!(seen.iter().all(|&s| s));
                    prop_assert_eq!(split.merge(&replies).to_vec(), expected);
                }
                other => prop_assert!(false, "unexpected plan {:?}", other),
            }
        }
    }
}
