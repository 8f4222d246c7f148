//! COMMAND and its subcommands with strata's coordination commands in
//! them, so that clients that read the command table (cluster-aware ones
//! route by its key positions) know them.
//!
//! Redis answers first (on the client's own connection, in its protocol);
//! strata then adds its entries: COMMAND and COMMAND INFO (no names)
//! append them, COMMAND INFO with names puts each in its place (Redis
//! answers nil for them), COMMAND COUNT adds their number, COMMAND DOCS
//! adds their docs (all of them, or those named), COMMAND LIST (without
//! FILTERBY) appends their names, COMMAND GETKEYS[ANDFLAGS] naming one of
//! them is answered by strata. Redis's reply first gets strata's other
//! commands (`command/own/`, PROXY) merged in, as it does when
//! coordination is off (`server/session/own_commands.rs`). Other forms go
//! to Redis untouched, or through that merge alone.

use bytes::{Bytes, BytesMut};

use super::registry::{self, ArgKind, Spec};
use crate::command::CommandSpec;
use crate::protocol::reply::{self, ReplyBuf};
use crate::protocol::{ArgList, Protocol, Request};
use crate::tier::RedisLink;

/// Which form of COMMAND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// COMMAND, or COMMAND INFO without names.
    All,
    /// COMMAND COUNT.
    Count,
    /// COMMAND INFO name …
    Info,
    /// COMMAND DOCS [name …]
    Docs,
    /// COMMAND LIST (no filter).
    List,
    /// COMMAND GETKEYS / GETKEYSANDFLAGS on a coordination command.
    GetKeys {
        /// GETKEYSANDFLAGS.
        flags: bool,
    },
}

/// The form of COMMAND this request is, when strata adds to its reply.
/// Costs one byte compare for every other command.
#[inline]
pub fn plan(spec: &CommandSpec, req: &Request) -> Option<Kind> {
    if spec.name.as_bytes().first() != Some(&b'c') || !spec.name.starts_with("command") {
        return None;
    }
    let argc = req.argc();
    match spec.name {
        "command" if argc == 1 => Some(Kind::All),
        "command|count" if argc == 2 => Some(Kind::Count),
        "command|info" if argc == 2 => Some(Kind::All),
        "command|info" => Some(Kind::Info),
        "command|docs" => Some(Kind::Docs),
        "command|list" if argc == 2 => Some(Kind::List),
        "command|getkeys" | "command|getkeysandflags" if argc >= 3 => {
            let name = req.arg(2)?;
            registry::lookup(name)?;
            Some(Kind::GetKeys {
                flags: spec.name == "command|getkeysandflags",
            })
        }
        _ => None,
    }
}

/// True for the COMMAND forms [`plan`] may take (the session's fast path
/// leaves them to the full path).
#[inline]
pub fn concerns(spec: &CommandSpec) -> bool {
    spec.name.as_bytes().first() == Some(&b'c') && spec.name.starts_with("command")
}

/// Answers one COMMAND form: Redis's reply with strata's commands added.
pub async fn reply(kind: Kind, args: &[Bytes], link: &RedisLink<'_>, proto: Protocol) -> Bytes {
    match kind {
        Kind::GetKeys { flags } => return getkeys(args, flags, proto),
        Kind::Info => return info_named(args, link, proto).await,
        _ => {}
    }
    let forwarded: Vec<Bytes> = match kind {
        // COMMAND DOCS with names: only Redis's own names go to Redis.
        Kind::Docs if args.len() > 2 => {
            let theirs: Vec<Bytes> = args[2..]
                .iter()
                .filter(|a| registry::lookup(a).is_none())
                .cloned()
                .collect();
            if theirs.is_empty() {
                let ours: Vec<&Spec> = args[2..]
                    .iter()
                    .filter_map(|a| registry::lookup(a))
                    .collect();
                let mut r = ReplyBuf::new(proto);
                r.map(ours.len());
                for s in ours {
                    docs_entry(&mut r, s, proto);
                }
                return r.freeze();
            }
            let mut v = args[..2].to_vec();
            v.extend(theirs);
            v
        }
        _ => args.to_vec(),
    };
    let redis = match link
        .call_one(&Bytes::from_static(b"command"), forwarded.clone())
        .await
    {
        Ok(frame) => frame,
        Err(text) => return reply::error(&format!("ERR {text}")),
    };
    if reply::is_error(&redis) {
        return redis;
    }
    // strata's other commands first (`command/own/`: PROXY), then these.
    let redis = crate::command::own::merge::merge(&forwarded, redis, proto);
    let mut extra = ReplyBuf::new(proto);
    let added = match kind {
        Kind::All => {
            for s in registry::all() {
                info_entry(&mut extra, s, proto);
            }
            registry::count()
        }
        Kind::Count => {
            let Some(n) = reply::integer_payload(&redis) else {
                return redis;
            };
            let mut r = ReplyBuf::new(proto);
            r.integer(n + registry::count() as i64);
            return r.freeze();
        }
        Kind::Docs => {
            let named: Vec<&Spec> = if args.len() > 2 {
                args[2..]
                    .iter()
                    .filter_map(|a| registry::lookup(a))
                    .collect()
            } else {
                registry::all().collect()
            };
            for s in &named {
                docs_entry(&mut extra, s, proto);
            }
            // A RESP2 map is a flat array: two elements per entry.
            match redis.first() {
                Some(b'%') => named.len(),
                _ => named.len() * 2,
            }
        }
        Kind::List => {
            for s in registry::all() {
                extra.bulk(s.name.as_bytes());
            }
            registry::count()
        }
        Kind::Info | Kind::GetKeys { .. } => 0,
    };
    append(&redis, added, &extra.freeze()).unwrap_or(redis)
}

/// `frame`, an aggregate (`*n` or `%n`), with `added` more elements
/// (already encoded in `extra`) at its end.
fn append(frame: &Bytes, added: usize, extra: &[u8]) -> Option<Bytes> {
    let kind = *frame.first()?;
    if !matches!(kind, b'*' | b'%') {
        return None;
    }
    let cr = frame.iter().position(|&b| b == b'\r')?;
    let n: usize = std::str::from_utf8(&frame[1..cr]).ok()?.parse().ok()?;
    let mut out = BytesMut::with_capacity(frame.len() + extra.len() + 8);
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(itoa::Buffer::new().format(n + added).as_bytes());
    out.extend_from_slice(&frame[cr..]);
    out.extend_from_slice(extra);
    Some(out.freeze())
}

/// COMMAND INFO name …: Redis's entries for its names, strata's for its
/// own, in the order asked.
async fn info_named(args: &[Bytes], link: &RedisLink<'_>, proto: Protocol) -> Bytes {
    let names = &args[2..];
    let theirs: Vec<Bytes> = names
        .iter()
        .filter(|a| registry::lookup(a).is_none())
        .cloned()
        .collect();
    let mut redis_entries: Vec<Bytes> = Vec::new();
    if !theirs.is_empty() {
        let mut cmd = args[..2].to_vec();
        cmd.extend(theirs.iter().cloned());
        let frame = match link
            .call_one(&Bytes::from_static(b"command"), cmd.clone())
            .await
        {
            Ok(frame) => frame,
            Err(text) => return reply::error(&format!("ERR {text}")),
        };
        if reply::is_error(&frame) {
            return frame;
        }
        // strata's other commands (PROXY) in place of Redis's nulls.
        let frame = crate::command::own::merge::merge(&cmd, frame, proto);
        match reply::aggregate_elements(&frame) {
            Some(ranges) if ranges.len() == theirs.len() => {
                redis_entries = ranges.into_iter().map(|r| frame.slice(r)).collect();
            }
            _ => return frame,
        }
    }
    let mut redis_entries = redis_entries.into_iter();
    let mut r = ReplyBuf::new(proto);
    r.array(names.len());
    for name in names {
        match registry::lookup(name) {
            Some(s) => info_entry(&mut r, s, proto),
            None => match redis_entries.next() {
                Some(e) => {
                    r.raw(&e);
                }
                None => {
                    r.null();
                }
            },
        }
    }
    r.freeze()
}

/// COMMAND GETKEYS[ANDFLAGS] <coordination command> …: its name argument.
fn getkeys(args: &[Bytes], flags: bool, proto: Protocol) -> Bytes {
    let Some(spec) = args.get(2).and_then(|a| registry::lookup(a)) else {
        return reply::error("ERR Invalid command specified");
    };
    let cmd = &args[2..];
    if !spec.arity_ok(cmd.len()) {
        return reply::error("ERR Invalid number of arguments specified for command");
    }
    let mut r = ReplyBuf::new(proto);
    r.array(1);
    if flags {
        r.array(2);
        r.bulk(&cmd[1]);
        set(&mut r, proto, spec.key_flags.len());
        for f in spec.key_flags {
            r.simple(f);
        }
    } else {
        r.bulk(&cmd[1]);
    }
    r.freeze()
}

/// A set header: `~n` in RESP3, an array in RESP2 (as Redis sends flags).
fn set(r: &mut ReplyBuf, proto: Protocol, n: usize) {
    match proto {
        Protocol::Resp2 => {
            r.array(n);
        }
        Protocol::Resp3 => {
            r.raw(format!("~{n}\r\n").as_bytes());
        }
    }
}

/// One COMMAND INFO entry, in Redis 7's ten-element form.
pub fn info_entry(r: &mut ReplyBuf, s: &Spec, proto: Protocol) {
    r.array(10);
    r.bulk(s.name.as_bytes());
    r.integer(i64::from(s.arity));
    set(r, proto, s.flags.len());
    for f in s.flags {
        r.simple(f);
    }
    r.integer(1).integer(1).integer(1);
    set(r, proto, s.acl.len());
    for c in s.acl {
        r.simple(c);
    }
    // Tips.
    r.array(0);
    // One key spec: the name at index 1.
    r.array(1);
    r.map(3);
    r.bulk(b"flags");
    set(r, proto, s.key_flags.len());
    for f in s.key_flags {
        r.simple(f);
    }
    r.bulk(b"begin_search");
    r.map(2);
    r.bulk(b"type").bulk(b"index");
    r.bulk(b"spec").map(1).bulk(b"index").integer(1);
    r.bulk(b"find_keys");
    r.map(2);
    r.bulk(b"type").bulk(b"range");
    r.bulk(b"spec").map(3);
    r.bulk(b"lastkey").integer(0);
    r.bulk(b"keystep").integer(1);
    r.bulk(b"limit").integer(0);
    // Subcommands.
    r.array(0);
}

/// One COMMAND DOCS entry: the name, then its doc map.
pub fn docs_entry(r: &mut ReplyBuf, s: &Spec, proto: Protocol) {
    r.bulk(s.name.as_bytes());
    r.map(6);
    r.bulk(b"summary").bulk(s.summary.as_bytes());
    r.bulk(b"since").bulk(b"1.0.0");
    r.bulk(b"group").bulk(b"module");
    r.bulk(b"complexity").bulk(s.complexity.as_bytes());
    r.bulk(b"module").bulk(b"strata");
    r.bulk(b"arguments");
    r.array(s.args.len());
    for a in s.args {
        let fields = 2
            + usize::from(a.kind == ArgKind::Key)
            + usize::from(a.token.is_some())
            + usize::from(a.optional);
        r.map(fields);
        r.bulk(b"name").bulk(a.name().as_bytes());
        r.bulk(b"type").bulk(a.kind_name().as_bytes());
        if a.kind == ArgKind::Key {
            r.bulk(b"key_spec_index").integer(0);
        }
        if let Some(token) = a.token {
            r.bulk(b"token").bulk(token.as_bytes());
        }
        if a.optional {
            r.bulk(b"flags");
            set(r, proto, 1);
            r.simple("optional");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_counts_and_keeps_the_body() {
        let f = Bytes::from_static(b"*1\r\n:1\r\n");
        assert_eq!(
            &append(&f, 2, b":2\r\n:3\r\n").expect("ok")[..],
            b"*3\r\n:1\r\n:2\r\n:3\r\n"
        );
        let m = Bytes::from_static(b"%0\r\n");
        assert_eq!(
            &append(&m, 1, b"$1\r\na\r\n:1\r\n").expect("ok")[..],
            b"%1\r\n$1\r\na\r\n:1\r\n"
        );
        assert!(append(&Bytes::from_static(b":1\r\n"), 1, b"").is_none());
    }

    #[test]
    fn entries_are_complete_frames() {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            for s in registry::all() {
                let mut r = ReplyBuf::new(proto);
                info_entry(&mut r, s, proto);
                let f = r.freeze();
                assert_eq!(
                    reply::frame_len(&f).expect("ok"),
                    Some(f.len()),
                    "{}",
                    s.name
                );
                let mut r = ReplyBuf::new(proto);
                r.map(1);
                docs_entry(&mut r, s, proto);
                let f = r.freeze();
                assert_eq!(
                    reply::frame_len(&f).expect("ok"),
                    Some(f.len()),
                    "{}",
                    s.name
                );
            }
        }
    }
}
