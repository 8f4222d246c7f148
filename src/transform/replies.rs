//! Opening transformed values inside reply frames.
//!
//! Replies are raw RESP bytes, already in the client's protocol (the backend
//! connection speaks it). Only the value leaves are rewritten; aggregate
//! headers, keys, fields, nulls and anything else are copied byte for byte,
//! so RESP2 arrays, RESP3 maps and attributes come out as they went in. When
//! no value changes (every value plain), the original frame is returned
//! without a copy.
//!
//! If any value in a reply cannot be opened, the whole reply becomes one
//! error naming the key: a client never sees stored bytes as if they were its
//! value, nor a partial array. Inside EXEC, only that command's element
//! becomes the error, as Redis reports per-command errors there.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::reply::{error, frame_len, is_error};

use super::commands::ReplyPlan;
use super::envelope::{open_with, Form, Location, TransformError};
use super::rules::Rule;
use super::Transforms;

impl Transforms {
    /// The client's reply for a backend reply `frame` to a request whose plan
    /// is `plan`. Error replies pass through, as does anything that is not
    /// the shape the plan expects (e.g. `+QUEUED` inside MULTI).
    pub fn apply_reply(&self, plan: &ReplyPlan, frame: Bytes) -> Bytes {
        if is_error(&frame) {
            return frame;
        }
        match self.apply_inner(plan, &frame) {
            Ok(Some(out)) => out,
            Ok(None) => frame,
            Err(e) => {
                self.stats.failed(e.kind());
                error(&e.to_string())
            }
        }
    }

    /// The client's reply to EXEC, given the plans of the queued commands in
    /// order (`None` for commands without one). An element that cannot be
    /// opened becomes an error element.
    pub fn apply_exec_reply(&self, plans: &[Option<ReplyPlan>], frame: Bytes) -> Bytes {
        if plans.iter().all(Option::is_none) || is_error(&frame) || is_null(&frame) {
            return frame; // null: the transaction was aborted (WATCH)
        }
        let Some(agg) = aggregate(&frame) else {
            return frame;
        };
        if agg.elems.len() != plans.len() {
            return error("ERR strata: the transaction reply does not match the queued commands");
        }
        let mut out = BytesMut::with_capacity(frame.len());
        out.put_slice(&frame[..agg.prefix_end]);
        let mut changed = false;
        for (range, plan) in agg.elems.iter().zip(plans) {
            let sub = frame.slice(range.clone());
            match plan {
                Some(plan) => {
                    let new = self.apply_reply(plan, sub.clone());
                    changed |= new.as_ptr() != sub.as_ptr() || new.len() != sub.len();
                    out.put_slice(&new);
                }
                None => out.put_slice(&sub),
            }
        }
        if changed {
            out.freeze()
        } else {
            frame
        }
    }

    /// Opens one stored value found at `loc` under `rule`: `Some(value)`
    /// when it was enveloped, `None` when it is plain and passes as stored.
    fn open_value(
        &self,
        stored: &Bytes,
        loc: Location<'_>,
        rule: &Rule,
    ) -> Result<Option<Bytes>, TransformError> {
        let same_rule = |origin: &[u8]| self.rules.same_rule(origin, loc.key());
        let unsealed = open_with(stored, loc, &self.keyring, self.max_value_len, &same_rule)?;
        if matches!(unsealed.form, Form::Plain | Form::Unencrypted) && rule.encrypts() {
            // Nothing proves strata wrote this value: written before the
            // rule existed, or planted in Redis.
            if !rule.accept_plain() {
                return Err(TransformError::PlainRefused {
                    subject: loc.subject(),
                    rule: rule.pattern().to_owned(),
                });
            }
            self.stats.plain_value();
        }
        if unsealed.form == Form::Plain {
            return Ok(None);
        }
        self.stats.opened(stored.len(), unsealed.value.len());
        Ok(Some(unsealed.value))
    }

    /// Copies sub-frame `range` of `frame` to `out`, opening it if it is a
    /// bulk string. True when it changed.
    fn leaf(
        &self,
        out: &mut BytesMut,
        frame: &Bytes,
        range: Range<usize>,
        loc: Location<'_>,
        rule: &Rule,
    ) -> Result<bool, TransformError> {
        let f = &frame[range.clone()];
        let Some((attr, payload)) = bulk(f) else {
            out.put_slice(f);
            return Ok(false);
        };
        let stored = frame.slice(range.start + payload.start..range.start + payload.end);
        match self.open_value(&stored, loc, rule)? {
            Some(value) => {
                out.put_slice(&f[..attr]);
                put_bulk(out, &value);
                Ok(true)
            }
            None => {
                out.put_slice(f);
                Ok(false)
            }
        }
    }

    /// Field/value pairs, flat (`[f, v, f, v]` or a RESP3 map's elements).
    fn pairs(
        &self,
        out: &mut BytesMut,
        frame: &Bytes,
        elems: &[Range<usize>],
        key: &[u8],
        rule: &Rule,
        keep_fields: bool,
    ) -> Result<bool, TransformError> {
        let mut changed = false;
        for pair in elems.chunks(2) {
            let [f, v] = pair else {
                // An odd element out (not a reply Redis sends): keep it
                // where the original header counts it.
                if keep_fields {
                    if let Some(r) = pair.first() {
                        out.put_slice(&frame[r.clone()]);
                    }
                }
                continue;
            };
            if keep_fields {
                out.put_slice(&frame[f.clone()]);
            }
            let field = string(&frame[f.clone()]).ok_or_else(|| shape_error(key))?;
            let loc = Location::HashField { key, field };
            changed |= self.leaf(out, frame, v.clone(), loc, rule)?;
        }
        Ok(changed)
    }

    fn apply_inner(
        &self,
        plan: &ReplyPlan,
        frame: &Bytes,
    ) -> Result<Option<Bytes>, TransformError> {
        let whole = 0..frame.len();
        let mut out = BytesMut::with_capacity(frame.len() + 16);
        let rule_of = |key: &[u8]| self.rules.rule_for(key);
        let changed = match plan {
            ReplyPlan::Value { key } => {
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                self.leaf(&mut out, frame, whole, Location::Key(key), rule)?
            }
            ReplyPlan::HashField { key, field } => {
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                let loc = Location::HashField { key, field };
                self.leaf(&mut out, frame, whole, loc, rule)?
            }
            ReplyPlan::StrlenOf { key } => {
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                let len = if is_null(frame) {
                    0
                } else if let Some((_, payload)) = bulk(frame) {
                    let stored = frame.slice(payload);
                    match self.open_value(&stored, Location::Key(key), rule)? {
                        Some(v) => v.len(),
                        None => stored.len(),
                    }
                } else {
                    return Ok(None);
                };
                out.put_u8(b':');
                out.put_slice(itoa::Buffer::new().format(len).as_bytes());
                out.put_slice(b"\r\n");
                true
            }
            ReplyPlan::ListElements { key } => {
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                let loc = Location::ListElement(key);
                match aggregate(frame) {
                    Some(agg) => {
                        out.put_slice(&frame[..agg.prefix_end]);
                        let mut changed = false;
                        for r in agg.elems {
                            changed |= self.leaf(&mut out, frame, r, loc, rule)?;
                        }
                        changed
                    }
                    None => self.leaf(&mut out, frame, whole, loc, rule)?,
                }
            }
            ReplyPlan::Values { keys } => {
                let Some(agg) = aggregate(frame) else {
                    return Ok(None);
                };
                out.put_slice(&frame[..agg.prefix_end]);
                let mut changed = false;
                for (i, r) in agg.elems.into_iter().enumerate() {
                    match keys.get(i).and_then(|k| rule_of(k).map(|rule| (k, rule))) {
                        Some((k, rule)) => {
                            changed |= self.leaf(&mut out, frame, r, Location::Key(k), rule)?
                        }
                        None => out.put_slice(&frame[r]),
                    }
                }
                changed
            }
            ReplyPlan::HashFields { key, fields } => {
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                let Some(agg) = aggregate(frame) else {
                    return Ok(None);
                };
                out.put_slice(&frame[..agg.prefix_end]);
                let mut changed = false;
                for (i, r) in agg.elems.into_iter().enumerate() {
                    let Some(field) = fields.get(i) else {
                        return Err(shape_error(key));
                    };
                    let loc = Location::HashField { key, field };
                    changed |= self.leaf(&mut out, frame, r, loc, rule)?;
                }
                changed
            }
            ReplyPlan::HashPairs { key } => {
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                let Some(agg) = aggregate(frame) else {
                    return Ok(None);
                };
                out.put_slice(&frame[..agg.prefix_end]);
                self.pairs(&mut out, frame, &agg.elems, key, rule, true)?
            }
            ReplyPlan::HashValues { key } => {
                // The request was HGETALL; HVALS answers an array of values
                // in both protocols.
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                let Some(agg) = aggregate(frame) else {
                    return Ok(None);
                };
                put_header(&mut out, b'*', agg.elems.len() / 2);
                self.pairs(&mut out, frame, &agg.elems, key, rule, false)?;
                true
            }
            ReplyPlan::HrandfieldWithValues { key } => {
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                let Some(agg) = aggregate(frame) else {
                    return Ok(None);
                };
                out.put_slice(&frame[..agg.prefix_end]);
                let nested = agg.elems.first().and_then(|r| aggregate(&frame[r.clone()]));
                if nested.is_some() {
                    // RESP3: an array of [field, value] arrays.
                    let mut changed = false;
                    for r in agg.elems {
                        let pair = frame.slice(r);
                        let inner = aggregate(&pair).ok_or_else(|| shape_error(key))?;
                        out.put_slice(&pair[..inner.prefix_end]);
                        changed |= self.pairs(&mut out, &pair, &inner.elems, key, rule, true)?;
                    }
                    changed
                } else {
                    self.pairs(&mut out, frame, &agg.elems, key, rule, true)?
                }
            }
            ReplyPlan::HashScan { key } => {
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                let Some(agg) = aggregate(frame) else {
                    return Ok(None);
                };
                let [cursor, page] = agg.elems.as_slice() else {
                    return Ok(None);
                };
                out.put_slice(&frame[..agg.prefix_end]);
                out.put_slice(&frame[cursor.clone()]);
                let page = frame.slice(page.clone());
                let inner = aggregate(&page).ok_or_else(|| shape_error(key))?;
                out.put_slice(&page[..inner.prefix_end]);
                self.pairs(&mut out, &page, &inner.elems, key, rule, true)?
            }
            ReplyPlan::KeyValuePair => {
                let Some(agg) = aggregate(frame) else {
                    return Ok(None);
                };
                let [k, v] = agg.elems.as_slice() else {
                    return Ok(None);
                };
                let key = string(&frame[k.clone()]).unwrap_or_default();
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                out.put_slice(&frame[..v.start]);
                self.leaf(&mut out, frame, v.clone(), Location::ListElement(key), rule)?
            }
            ReplyPlan::MpopReply => {
                let Some(agg) = aggregate(frame) else {
                    return Ok(None);
                };
                let [k, list] = agg.elems.as_slice() else {
                    return Ok(None);
                };
                let key = string(&frame[k.clone()]).unwrap_or_default();
                let Some(rule) = rule_of(key) else {
                    return Ok(None);
                };
                out.put_slice(&frame[..list.start]);
                let list = frame.slice(list.clone());
                let inner = aggregate(&list).ok_or_else(|| shape_error(key))?;
                out.put_slice(&list[..inner.prefix_end]);
                let mut changed = false;
                for r in inner.elems {
                    changed |= self.leaf(&mut out, &list, r, Location::ListElement(key), rule)?;
                }
                changed
            }
        };
        Ok(changed.then(|| out.freeze()))
    }
}

fn shape_error(key: &[u8]) -> TransformError {
    TransformError::Malformed {
        subject: Location::Key(key).subject(),
        what: "unexpected reply shape",
    }
}

fn put_header(out: &mut BytesMut, kind: u8, n: usize) {
    out.put_u8(kind);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, value: &[u8]) {
    put_header(out, b'$', value.len());
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// The number on a frame's first line and where the line ends (after CRLF).
fn line(f: &[u8]) -> Option<(i64, usize)> {
    let cr = f.iter().position(|&b| b == b'\r')?;
    if f.get(cr + 1) != Some(&b'\n') {
        return None;
    }
    let n = std::str::from_utf8(f.get(1..cr)?).ok()?.parse().ok()?;
    Some((n, cr + 2))
}

/// The length of a leading RESP3 attribute (`|n` then n key/value pairs),
/// which belongs to the frame after it; 0 when there is none.
fn attr_len(f: &[u8]) -> Option<usize> {
    if f.first() != Some(&b'|') {
        return Some(0);
    }
    let (n, mut pos) = line(f)?;
    for _ in 0..n.max(0).saturating_mul(2) {
        pos += frame_len(f.get(pos..)?).ok()??;
    }
    Some(pos)
}

/// An aggregate frame's elements.
struct Agg {
    /// Attribute and header line: everything before the first element.
    prefix_end: usize,
    /// Each element as a range of the frame. A map's keys and values alternate.
    elems: Vec<Range<usize>>,
}

/// Splits an array, set, push or map into its elements (a null array has
/// none). `None` for any other frame.
fn aggregate(f: &[u8]) -> Option<Agg> {
    let a = attr_len(f)?;
    let body = f.get(a..)?;
    let per = match body.first()? {
        b'*' | b'~' | b'>' => 1,
        b'%' => 2,
        _ => return None,
    };
    let (n, header) = line(body)?;
    let count = usize::try_from(n).unwrap_or(0).saturating_mul(per);
    let mut pos = a + header;
    // Every element takes at least 3 bytes: never trust the count for capacity.
    let mut elems = Vec::with_capacity(count.min(f.len() / 3));
    for _ in 0..count {
        let len = frame_len(f.get(pos..)?).ok()??;
        elems.push(pos..pos + len);
        pos += len;
    }
    Some(Agg {
        prefix_end: a + header,
        elems,
    })
}

/// A bulk string's attribute length and payload range; `None` for any other
/// frame, including the null bulk.
fn bulk(f: &[u8]) -> Option<(usize, Range<usize>)> {
    let a = attr_len(f)?;
    let body = f.get(a..)?;
    if body.first() != Some(&b'$') {
        return None;
    }
    let (n, header) = line(body)?;
    let n = usize::try_from(n).ok()?;
    let start = a + header;
    (start + n <= f.len()).then_some((a, start..start + n))
}

/// The payload of a bulk or simple string (a key or field in a reply).
fn string(f: &[u8]) -> Option<&[u8]> {
    if let Some((_, r)) = bulk(f) {
        return f.get(r);
    }
    let a = attr_len(f)?;
    let body = f.get(a..)?;
    if body.first() != Some(&b'+') {
        return None;
    }
    let cr = body.iter().position(|&b| b == b'\r')?;
    body.get(1..cr)
}

/// True for the null reply in either protocol.
fn is_null(f: &[u8]) -> bool {
    let body = attr_len(f).and_then(|a| f.get(a..)).unwrap_or_default();
    body.starts_with(b"_\r\n") || body.starts_with(b"$-1\r\n") || body.starts_with(b"*-1\r\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::reply::{Protocol, ReplyBuf};
    use crate::transform::envelope::seal;
    use crate::transform::stats::FailureKind;
    use crate::transform::tests::transforms;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Seals `v` as the rule for `loc`'s key says.
    fn stored(t: &Transforms, loc: Location<'_>, v: &str) -> Bytes {
        let rule = t.rules.rule_for(loc.key()).unwrap();
        seal(&b(v), loc, rule, &t.keyring).unwrap()
    }

    fn apply(t: &Transforms, plan: ReplyPlan, frame: Bytes) -> String {
        String::from_utf8_lossy(&t.apply_reply(&plan, frame)).into_owned()
    }

    #[test]
    fn single_values() {
        let t = transforms();
        let key = b("session:1");
        let s = stored(&t, Location::Key(&key), "hello");
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.bulk(&s);
        let plan = ReplyPlan::Value { key: key.clone() };
        assert_eq!(apply(&t, plan.clone(), r.freeze()), "$5\r\nhello\r\n");
        // Nulls, errors and plain values pass through without a copy.
        for f in [
            "$-1\r\n",
            "_\r\n",
            "-ERR x\r\n",
            "+QUEUED\r\n",
            "$5\r\nplain\r\n",
        ] {
            let frame = b(f);
            let out = t.apply_reply(&plan, frame.clone());
            assert_eq!(out.as_ptr(), frame.as_ptr(), "{f}");
        }
        assert_eq!(t.stats.snapshot().plain_values, 1);
        // Copied to another key: an error naming the key, never the bytes.
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.bulk(&s);
        let out = apply(
            &t,
            ReplyPlan::Value {
                key: b("session:2"),
            },
            r.freeze(),
        );
        assert_eq!(
            out,
            "-ERR cannot decrypt value of key 'session:2' (authentication failed)\r\n"
        );
        assert_eq!(t.stats.failures(FailureKind::AuthFailed), 1);
    }

    #[test]
    fn strlen() {
        let t = transforms();
        let key = b("session:1");
        let s = stored(&t, Location::Key(&key), &"x".repeat(300));
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.bulk(&s);
        let plan = ReplyPlan::StrlenOf { key };
        assert_eq!(apply(&t, plan.clone(), r.freeze()), ":300\r\n");
        assert_eq!(apply(&t, plan.clone(), b("$-1\r\n")), ":0\r\n");
        assert_eq!(apply(&t, plan.clone(), b("_\r\n")), ":0\r\n");
        assert_eq!(apply(&t, plan.clone(), b("$4\r\nabcd\r\n")), ":4\r\n");
        assert_eq!(apply(&t, plan, b("-WRONGTYPE x\r\n")), "-WRONGTYPE x\r\n");
    }

    #[test]
    fn mget_mixes_rules_and_plain_keys() {
        let t = transforms();
        let s1 = stored(&t, Location::Key(b"session:1"), "one");
        let mut r = ReplyBuf::new(Protocol::Resp3);
        r.array(4).bulk(b"plain").bulk(&s1).null().bulk(b"old");
        let plan = ReplyPlan::Values {
            keys: vec![b("a"), b("session:1"), b("session:2"), b("session:3")],
        };
        assert_eq!(
            apply(&t, plan, r.freeze()),
            "*4\r\n$5\r\nplain\r\n$3\r\none\r\n_\r\n$3\r\nold\r\n"
        );
        // A stored envelope under a key without a rule passes as stored.
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(1).bulk(&s1);
        let frame = r.freeze();
        let out = t.apply_reply(&ReplyPlan::Values { keys: vec![b("a")] }, frame.clone());
        assert_eq!(out, frame);
    }

    #[test]
    fn hashes_in_both_protocols() {
        let t = transforms();
        let key = b("session:h");
        let v1 = stored(
            &t,
            Location::HashField {
                key: &key,
                field: b"f1",
            },
            "one",
        );
        let v2 = stored(
            &t,
            Location::HashField {
                key: &key,
                field: b"f2",
            },
            "two",
        );
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            let mut r = ReplyBuf::new(proto);
            r.map(2).bulk(b"f1").bulk(&v1).bulk(b"f2").bulk(&v2);
            let frame = r.freeze();
            let pairs = apply(&t, ReplyPlan::HashPairs { key: key.clone() }, frame.clone());
            let head = if proto == Protocol::Resp2 { "*4" } else { "%2" };
            assert_eq!(
                pairs,
                format!("{head}\r\n$2\r\nf1\r\n$3\r\none\r\n$2\r\nf2\r\n$3\r\ntwo\r\n")
            );
            let vals = apply(&t, ReplyPlan::HashValues { key: key.clone() }, frame);
            assert_eq!(vals, "*2\r\n$3\r\none\r\n$3\r\ntwo\r\n");
        }
        assert_eq!(
            apply(&t, ReplyPlan::HashValues { key: key.clone() }, b("*0\r\n")),
            "*0\r\n"
        );
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.bulk(&v1);
        let plan = ReplyPlan::HashField {
            key: key.clone(),
            field: b("f1"),
        };
        assert_eq!(apply(&t, plan, r.freeze()), "$3\r\none\r\n");
        // Swapped fields are detected.
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(2).bulk(&v2).null();
        let plan = ReplyPlan::HashFields {
            key: key.clone(),
            fields: vec![b("f1"), b("f9")],
        };
        assert!(apply(&t, plan, r.freeze())
            .starts_with("-ERR cannot decrypt value of key 'session:h' field 'f1'"));
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(2).bulk(&v1).null();
        let plan = ReplyPlan::HashFields {
            key: key.clone(),
            fields: vec![b("f1"), b("f9")],
        };
        assert_eq!(apply(&t, plan, r.freeze()), "*2\r\n$3\r\none\r\n$-1\r\n");
    }

    #[test]
    fn hrandfield_and_hscan() {
        let t = transforms();
        let key = b("session:h");
        let v1 = stored(
            &t,
            Location::HashField {
                key: &key,
                field: b"f1",
            },
            "one",
        );
        let mut r = ReplyBuf::new(Protocol::Resp3);
        r.array(1).array(2).bulk(b"f1").bulk(&v1);
        let plan = ReplyPlan::HrandfieldWithValues { key: key.clone() };
        assert_eq!(
            apply(&t, plan.clone(), r.freeze()),
            "*1\r\n*2\r\n$2\r\nf1\r\n$3\r\none\r\n"
        );
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(2).bulk(b"f1").bulk(&v1);
        assert_eq!(
            apply(&t, plan, r.freeze()),
            "*2\r\n$2\r\nf1\r\n$3\r\none\r\n"
        );
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(2).bulk(b"0").array(2).bulk(b"f1").bulk(&v1);
        let plan = ReplyPlan::HashScan { key };
        assert_eq!(
            apply(&t, plan, r.freeze()),
            "*2\r\n$1\r\n0\r\n*2\r\n$2\r\nf1\r\n$3\r\none\r\n"
        );
    }

    #[test]
    fn lists_and_pops() {
        let t = transforms();
        let a = stored(&t, Location::ListElement(b"session:q"), "a");
        let b2 = stored(&t, Location::ListElement(b"session:q"), "b");
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(2).bulk(&a).bulk(&b2);
        let plan = ReplyPlan::ListElements {
            key: b("session:q"),
        };
        assert_eq!(
            apply(&t, plan.clone(), r.freeze()),
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(apply(&t, plan, b("*-1\r\n")), "*-1\r\n");
        // Moved by LMOVE to another list of the same rule: accepted there.
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.bulk(&a);
        let plan = ReplyPlan::ListElements {
            key: b("session:other"),
        };
        assert_eq!(apply(&t, plan, r.freeze()), "$1\r\na\r\n");
        // BLPOP: the key is in the reply.
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(2).bulk(b"session:q").bulk(&a);
        assert_eq!(
            apply(&t, ReplyPlan::KeyValuePair, r.freeze()),
            "*2\r\n$9\r\nsession:q\r\n$1\r\na\r\n"
        );
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(2).bulk(b"plain").bulk(&a);
        let frame = r.freeze();
        assert_eq!(
            t.apply_reply(&ReplyPlan::KeyValuePair, frame.clone()),
            frame
        );
        // LMPOP.
        let mut r = ReplyBuf::new(Protocol::Resp3);
        r.array(2).bulk(b"session:q").array(2).bulk(&a).bulk(&b2);
        assert_eq!(
            apply(&t, ReplyPlan::MpopReply, r.freeze()),
            "*2\r\n$9\r\nsession:q\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(apply(&t, ReplyPlan::MpopReply, b("_\r\n")), "_\r\n");
    }

    #[test]
    fn one_bad_element_fails_the_whole_reply() {
        let t = transforms();
        let good = stored(&t, Location::ListElement(b"session:q"), "a");
        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(2).bulk(&good).bulk(&bad);
        let out = apply(
            &t,
            ReplyPlan::ListElements {
                key: b("session:q"),
            },
            r.freeze(),
        );
        assert_eq!(
            out,
            "-ERR cannot decrypt value of key 'session:q' (authentication failed)\r\n"
        );
        // In EXEC, only that element.
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(3).raw(b"+OK\r\n").bulk(&good).bulk(&bad);
        let plan = Some(ReplyPlan::ListElements {
            key: b("session:q"),
        });
        let out = t.apply_exec_reply(&[None, plan.clone(), plan.clone()], r.freeze());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "*3\r\n+OK\r\n$1\r\na\r\n-ERR cannot decrypt value of key 'session:q' (authentication failed)\r\n"
        );
        let out = t.apply_exec_reply(&[plan], b("*-1\r\n"));
        assert_eq!(&out[..], b"*-1\r\n");
        let out = t.apply_exec_reply(&[None, Some(ReplyPlan::MpopReply)], b("*1\r\n+OK\r\n"));
        assert!(out.starts_with(b"-ERR strata"));
    }

    #[test]
    fn strict_rule_refuses_plain() {
        let t = transforms();
        let plan = ReplyPlan::Value { key: b("strict:1") };
        let out = apply(&t, plan, b("$5\r\nplain\r\n"));
        assert_eq!(out, "-ERR value of key 'strict:1' is not encrypted (rule 'strict:*' refuses plain values)\r\n");
    }

    #[test]
    fn attributes_are_kept() {
        let t = transforms();
        let s = stored(&t, Location::Key(b"session:1"), "hi");
        let mut r = ReplyBuf::new(Protocol::Resp3);
        r.raw(b"|1\r\n+ttl\r\n:5\r\n").bulk(&s);
        let out = apply(
            &t,
            ReplyPlan::Value {
                key: b("session:1"),
            },
            r.freeze(),
        );
        assert_eq!(out, "|1\r\n+ttl\r\n:5\r\n$2\r\nhi\r\n");
    }
}
