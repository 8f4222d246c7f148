//! Outbox entries as the drain reads them (XREADGROUP and XAUTOCLAIM
//! replies, RESP2), and the batch's coalescing.

use bytes::Bytes;

use crate::protocol::reply::{aggregate_elements, string_payload};
use crate::tier::redis::{bulk, is_nil};

/// Bytes an entry counts for against the bound besides its key and value
/// (the same constant as in `lua/tier_behind_capture.lua`).
pub const OVERHEAD: u64 = 64;

/// What a change does to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The key's new state.
    Put {
        kind: &'static str,
        value: Bytes,
        expires_at_ms: Option<i64>,
    },
    /// The key is gone.
    Delete,
}

/// One outbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The stream entry id (acknowledged once applied).
    pub id: Bytes,
    /// What it counts for against the bound (given back on acknowledgement).
    pub size: u64,
    /// The Redis key.
    pub key: Bytes,
    /// Put or delete.
    pub op: Op,
    /// Its version (Redis's clock, µs; only grows).
    pub version: i64,
    /// When it was captured (the id's time part, ms), for the lag.
    pub captured_ms: i64,
}

/// One item of a read: a change, or an entry that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A well-formed change.
    Change(Change),
    /// An id whose entry was deleted meanwhile (a redelivery another strata
    /// finished): only to be acknowledged.
    Gone(Bytes),
    /// An entry that is not a change strata wrote: dead-lettered.
    Malformed { id: Bytes, key: Bytes, why: String },
}

impl Item {
    /// The entry id.
    pub fn id(&self) -> &Bytes {
        match self {
            Item::Change(c) => &c.id,
            Item::Gone(id) | Item::Malformed { id, .. } => id,
        }
    }
}

fn elements(frame: &Bytes) -> Option<Vec<Bytes>> {
    aggregate_elements(frame).map(|rs| rs.into_iter().map(|r| frame.slice(r)).collect())
}

/// XREADGROUP's reply (one stream): its entries; nil means none.
pub fn parse_read(frame: &Bytes) -> Result<Vec<Item>, String> {
    if is_nil(frame) {
        return Ok(Vec::new());
    }
    let streams = elements(frame).ok_or("XREADGROUP: not an array")?;
    let mut out = Vec::new();
    for s in streams {
        let pair = elements(&s).ok_or("XREADGROUP: bad stream")?;
        let entries = pair.get(1).ok_or("XREADGROUP: no entries")?;
        out.extend(parse_entries(entries)?);
    }
    Ok(out)
}

/// XAUTOCLAIM's reply: the next cursor, and the entries claimed (ids of
/// entries deleted meanwhile come back as [`Item::Gone`]).
pub fn parse_autoclaim(frame: &Bytes) -> Result<(Bytes, Vec<Item>), String> {
    let parts = elements(frame).ok_or("XAUTOCLAIM: not an array")?;
    let cursor = parts
        .first()
        .and_then(bulk)
        .ok_or("XAUTOCLAIM: no cursor")?;
    let mut items = match parts.get(1) {
        Some(entries) => parse_entries(entries)?,
        None => Vec::new(),
    };
    if let Some(deleted) = parts.get(2).and_then(elements) {
        items.extend(deleted.iter().filter_map(bulk).map(Item::Gone));
    }
    Ok((cursor, items))
}

/// An array of `[id, [field, value, …] | nil]`.
fn parse_entries(frame: &Bytes) -> Result<Vec<Item>, String> {
    let entries = elements(frame).ok_or("outbox: entries not an array")?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let parts = elements(&e).ok_or("outbox: entry not an array")?;
        let id = parts.first().and_then(bulk).ok_or("outbox: entry id")?;
        match parts.get(1) {
            None => out.push(Item::Gone(id)),
            Some(f) if is_nil(f) => out.push(Item::Gone(id)),
            Some(f) => out.push(parse_fields(id, f)),
        }
    }
    Ok(out)
}

fn parse_fields(id: Bytes, frame: &Bytes) -> Item {
    let fields = elements(frame).unwrap_or_default();
    let mut key = None;
    let (mut op, mut kind, mut value, mut expiry, mut version) = (None, None, None, None, None);
    for pair in fields.chunks(2) {
        let [name, val] = pair else { break };
        let Some(val) = bulk(val) else { continue };
        match string_payload(name) {
            Some(b"k") => key = Some(val),
            Some(b"o") => op = Some(val),
            Some(b"t") => kind = Some(val),
            Some(b"v") => value = Some(val),
            Some(b"e") => expiry = Some(val),
            Some(b"n") => version = Some(val),
            _ => {}
        }
    }
    let malformed = |key: Option<Bytes>, why: &str| Item::Malformed {
        id: id.clone(),
        key: key.unwrap_or_default(),
        why: format!("malformed outbox entry: {why}"),
    };
    let Some(key) = key else {
        return malformed(None, "no key");
    };
    let Some(version) = version.as_deref().and_then(number) else {
        return malformed(Some(key), "no version");
    };
    let value = value.unwrap_or_default();
    let size = (key.len() + value.len()) as u64 + OVERHEAD;
    let op = match op.as_deref() {
        Some(b"d") => Op::Delete,
        Some(b"p") => {
            let kind = match crate::tier::redis_type(kind.as_deref()) {
                Some(kind) => kind,
                None => return malformed(Some(key), "unknown type"),
            };
            let expires_at_ms = match expiry.as_deref() {
                None | Some(b"") => None,
                Some(e) => match number(e) {
                    Some(ms) => Some(ms),
                    None => return malformed(Some(key), "bad expiry"),
                },
            };
            Op::Put {
                kind,
                value,
                expires_at_ms,
            }
        }
        _ => return malformed(Some(key), "unknown op"),
    };
    let captured_ms = id
        .split(|&b| b == b'-')
        .next()
        .and_then(number)
        .unwrap_or(0);
    Item::Change(Change {
        id,
        size,
        key,
        op,
        version,
        captured_ms,
    })
}

fn number(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Keeps the newest change (highest version) per key; returns them and
/// how many were superseded. One statement may not touch a row twice, and
/// only the newest state matters: the versions make the older ones no-ops.
pub fn coalesce(changes: &[Change]) -> (Vec<&Change>, u64) {
    let mut newest: std::collections::HashMap<&[u8], &Change> =
        std::collections::HashMap::with_capacity(changes.len());
    for c in changes {
        newest
            .entry(c.key.as_ref())
            .and_modify(|cur| {
                if c.version > cur.version {
                    *cur = c;
                }
            })
            .or_insert(c);
    }
    let superseded = (changes.len() - newest.len()) as u64;
    (newest.into_values().collect(), superseded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &str) -> Bytes {
        Bytes::from(s.replace('|', "\r\n"))
    }

    #[test]
    fn read_reply_parses() {
        let f = frame(
            "*1|*2|$1|s|*3|*2|$3|5-0|*12|$1|k|$1|a|$1|o|$1|p|$1|t|$6|string|$1|v|$2|xy|$1|e|$0||$1|n|$2|17|\
             *2|$3|6-0|*-1|\
             *2|$3|7-1|*4|$1|k|$1|b|$1|o|$1|d|",
        );
        let items = parse_read(&frame("*-1|")).expect("nil");
        assert!(items.is_empty());
        let items = parse_read(&f).expect("parse");
        assert_eq!(items.len(), 3);
        let Item::Change(c) = &items[0] else {
            panic!("{:?}", items[0])
        };
        assert_eq!(c.key.as_ref(), b"a");
        assert_eq!(c.version, 17);
        assert_eq!(c.captured_ms, 5);
        assert_eq!(c.size, 3 + OVERHEAD);
        assert_eq!(
            c.op,
            Op::Put {
                kind: "string",
                value: Bytes::from_static(b"xy"),
                expires_at_ms: None
            }
        );
        assert_eq!(items[1], Item::Gone(Bytes::from_static(b"6-0")));
        assert!(matches!(&items[2], Item::Malformed { why, .. } if why.contains("no version")));
    }

    #[test]
    fn autoclaim_reply_parses() {
        let f = frame("*3|$3|0-0|*1|*2|$3|5-0|*6|$1|k|$1|a|$1|o|$1|d|$1|n|$1|9|*1|$3|4-0|");
        let (cursor, items) = parse_autoclaim(&f).expect("parse");
        assert_eq!(cursor.as_ref(), b"0-0");
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0], Item::Change(c) if c.op == Op::Delete && c.version == 9));
        assert_eq!(items[1], Item::Gone(Bytes::from_static(b"4-0")));
    }

    #[test]
    fn coalesce_keeps_newest_per_key() {
        let c = |k: &'static [u8], v: i64| Change {
            id: Bytes::new(),
            size: 0,
            key: Bytes::from_static(k),
            op: Op::Delete,
            version: v,
            captured_ms: 0,
        };
        let all = [c(b"a", 1), c(b"b", 5), c(b"a", 3), c(b"a", 2)];
        let (mut kept, superseded) = coalesce(&all);
        kept.sort_by_key(|c| c.version);
        assert_eq!(superseded, 2);
        assert_eq!(
            kept.iter().map(|c| c.version).collect::<Vec<_>>(),
            vec![3, 5]
        );
    }
}
