//! Merges strata's own commands into the backend's reply to `COMMAND`,
//! `COMMAND INFO`, `COMMAND DOCS`, `COMMAND COUNT` and `COMMAND LIST`.
//!
//! The backend's reply is kept byte for byte; strata's entries are added
//! (appended to the whole lists, put in place of the backend's null for a
//! name asked by `COMMAND INFO`, in the asked order for `COMMAND DOCS`).
//! A reply that is an error, or that does not have the expected shape, is
//! passed on unchanged: this never fails a client's COMMAND.

use bytes::{Bytes, BytesMut};

use super::{find, reply, OwnCommand, REGISTRY};
use crate::protocol::reply::{frame_len, integer_payload, is_error, string_payload};
use crate::protocol::{Protocol, ReplyBuf};

/// Which COMMAND form `args` is (`None`: not one strata adds to).
fn form(args: &[Bytes]) -> Option<&'static str> {
    match args.get(1) {
        None => Some("info"),
        Some(sub) => ["info", "docs", "count", "list"]
            .into_iter()
            .find(|f| sub.eq_ignore_ascii_case(f.as_bytes())),
    }
}

/// The backend's `reply` to `args` (a COMMAND form) with strata's own
/// commands merged in, in the client's protocol `proto`.
pub fn merge(args: &[Bytes], reply: Bytes, proto: Protocol) -> Bytes {
    if is_error(&reply) {
        return reply;
    }
    let merged = match form(args) {
        Some("info") if args.len() <= 2 => all_info(&reply, proto),
        Some("info") => named_info(&args[2..], &reply, proto),
        Some("docs") if args.len() == 2 => all_docs(&reply, proto),
        Some("docs") => named_docs(&args[2..], &reply, proto),
        Some("count") => integer_payload(&reply).map(|n| {
            let mut r = ReplyBuf::new(proto);
            r.integer(n + REGISTRY.len() as i64);
            r.freeze()
        }),
        Some("list") => list(&args[2..], &reply, proto),
        _ => None,
    };
    merged.unwrap_or(reply)
}

/// An aggregate's header: its type byte, element count and where the
/// elements start.
fn header(frame: &[u8]) -> Option<(u8, usize, usize)> {
    let cr = frame.iter().position(|&b| b == b'\r')?;
    let n: usize = std::str::from_utf8(frame.get(1..cr)?).ok()?.parse().ok()?;
    Some((*frame.first()?, n, cr + 2))
}

/// The `n` frames from `start`, as ranges of `frame`.
fn frames(frame: &[u8], mut pos: usize, n: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = frame_len(frame.get(pos..)?).ok()??;
        out.push(pos..pos + len);
        pos += len;
    }
    (pos == frame.len()).then_some(out)
}

/// Every registered command, top level only (as Redis's COMMAND).
fn own() -> impl Iterator<Item = &'static OwnCommand> {
    REGISTRY.iter().copied()
}

/// COMMAND and COMMAND INFO without names: every command's entry.
fn all_info(reply: &[u8], proto: Protocol) -> Option<Bytes> {
    let (kind, n, start) = header(reply)?;
    if kind != b'*' {
        return None;
    }
    let mut r = ReplyBuf::new(proto);
    r.array(n + REGISTRY.len());
    r.raw(&reply[start..]);
    for cmd in own() {
        reply::info(&mut r, cmd);
    }
    Some(r.freeze())
}

/// COMMAND INFO name …: one entry per name, in order; strata's in place of
/// the backend's null.
fn named_info(names: &[Bytes], reply: &[u8], proto: Protocol) -> Option<Bytes> {
    let (kind, n, start) = header(reply)?;
    if kind != b'*' || n != names.len() {
        return None;
    }
    let elements = frames(reply, start, n)?;
    let mut r = ReplyBuf::new(proto);
    r.array(n);
    for (name, range) in names.iter().zip(elements) {
        match find(name) {
            Some(cmd) => reply::info(&mut r, cmd),
            None => {
                r.raw(&reply[range]);
            }
        }
    }
    Some(r.freeze())
}

/// A map's header: pairs and where they start (RESP3 `%n`, RESP2 `*2n`).
fn map_header(reply: &[u8]) -> Option<(usize, usize)> {
    let (kind, n, start) = header(reply)?;
    match kind {
        b'%' => Some((n, start)),
        b'*' if n % 2 == 0 => Some((n / 2, start)),
        _ => None,
    }
}

/// COMMAND DOCS without names: every command's docs.
fn all_docs(reply: &[u8], proto: Protocol) -> Option<Bytes> {
    let (pairs, start) = map_header(reply)?;
    let mut r = ReplyBuf::new(proto);
    r.map(pairs + REGISTRY.len());
    r.raw(&reply[start..]);
    for cmd in own() {
        r.bulk(cmd.name.as_bytes());
        reply::docs(&mut r, cmd);
    }
    Some(r.freeze())
}

/// COMMAND DOCS name …: the known names' docs, in the asked order (Redis
/// skips unknown names; the backend skipped strata's).
fn named_docs(names: &[Bytes], reply: &[u8], proto: Protocol) -> Option<Bytes> {
    let (pairs, start) = map_header(reply)?;
    let elements = frames(reply, start, pairs * 2)?;
    let mut backend = elements.chunks_exact(2).peekable();
    let mut body = ReplyBuf::new(proto);
    let mut count = 0;
    for name in names {
        if let Some(cmd) = find(name) {
            body.bulk(cmd.name.as_bytes());
            reply::docs(&mut body, cmd);
            count += 1;
            continue;
        }
        let next_is_it = backend.peek().is_some_and(|pair| {
            string_payload(&reply[pair[0].clone()]).is_some_and(|k| k.eq_ignore_ascii_case(name))
        });
        if next_is_it {
            if let Some(pair) = backend.next() {
                body.raw(&reply[pair[0].start..pair[1].end]);
                count += 1;
            }
        }
    }
    // Anything the backend answered that the names did not account for.
    for pair in backend {
        body.raw(&reply[pair[0].start..pair[1].end]);
        count += 1;
    }
    let mut r = ReplyBuf::new(proto);
    r.map(count);
    let mut out = BytesMut::from(&r.freeze()[..]);
    out.extend_from_slice(&body.freeze());
    Some(out.freeze())
}

/// COMMAND LIST [FILTERBY MODULE m | ACLCAT c | PATTERN p]: the backend's
/// names, then strata's that pass the filter (a command, then its
/// subcommands, as Redis walks them).
fn list(options: &[Bytes], reply: &[u8], proto: Protocol) -> Option<Bytes> {
    let (kind, n, start) = header(reply)?;
    if kind != b'*' {
        return None;
    }
    let keep: Box<dyn Fn(&OwnCommand) -> bool> = match options {
        [] => Box::new(|_| true),
        [by, kind, arg] if by.eq_ignore_ascii_case(b"filterby") => {
            let kind = kind.to_ascii_lowercase();
            match kind.as_slice() {
                // Not a module's.
                b"module" => Box::new(|_| false),
                b"aclcat" => {
                    let cat = arg.to_ascii_lowercase();
                    Box::new(move |c: &OwnCommand| {
                        c.categories
                            .iter()
                            .any(|k| k.trim_start_matches('@').as_bytes() == cat.as_slice())
                    })
                }
                b"pattern" => {
                    // stringmatchlen with nocase: the names are lower case.
                    let glob = crate::transform::glob::Glob::new(&arg.to_ascii_lowercase());
                    Box::new(move |c: &OwnCommand| glob.matches(c.name.as_bytes()))
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    let mut names = Vec::new();
    for cmd in own() {
        for c in std::iter::once(cmd).chain(cmd.subcommands.iter()) {
            if keep(c) {
                names.push(c.name);
            }
        }
    }
    let mut r = ReplyBuf::new(proto);
    r.array(n + names.len());
    r.raw(&reply[start..]);
    for name in names {
        r.bulk(name.as_bytes());
    }
    Some(r.freeze())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn count_adds_strata_commands() {
        let out = merge(
            &args(&["command", "count"]),
            Bytes::from_static(b":240\r\n"),
            Protocol::Resp2,
        );
        assert_eq!(
            &out[..],
            format!(":{}\r\n", 240 + REGISTRY.len()).as_bytes()
        );
    }

    #[test]
    fn info_puts_strata_entries_in_place_of_nulls() {
        let backend = Bytes::from_static(b"*3\r\n$-1\r\n*1\r\n$3\r\nget\r\n$-1\r\n");
        let out = merge(
            &args(&["command", "info", "proxy", "get", "nope"]),
            backend,
            Protocol::Resp2,
        );
        let (_, n, start) = header(&out).unwrap();
        let els = frames(&out, start, n).unwrap();
        assert!(out[els[0].clone()].starts_with(b"*10\r\n$5\r\nproxy\r\n:-2\r\n"));
        assert_eq!(&out[els[1].clone()], b"*1\r\n$3\r\nget\r\n");
        assert_eq!(&out[els[2].clone()], b"$-1\r\n");
    }

    #[test]
    fn docs_keep_the_asked_order_in_both_protocols() {
        let backend = Bytes::from_static(b"%1\r\n$3\r\nget\r\n%0\r\n");
        let out = merge(
            &args(&["command", "docs", "proxy|info", "GET", "x"]),
            backend,
            Protocol::Resp3,
        );
        assert!(out.starts_with(b"%2\r\n$10\r\nproxy|info\r\n%"), "{out:?}");
        assert!(out.ends_with(b"$3\r\nget\r\n%0\r\n"));
        let backend = Bytes::from_static(b"*0\r\n");
        let out = merge(
            &args(&["command", "docs", "proxy"]),
            backend,
            Protocol::Resp2,
        );
        assert!(out.starts_with(b"*2\r\n$5\r\nproxy\r\n*"), "{out:?}");
    }

    #[test]
    fn list_filters_and_errors_pass_through() {
        let backend = Bytes::from_static(b"*1\r\n$3\r\nget\r\n");
        let out = merge(
            &args(&["command", "list", "filterby", "pattern", "PROXY|S*"]),
            backend,
            Protocol::Resp2,
        );
        assert_eq!(&out[..], b"*2\r\n$3\r\nget\r\n$13\r\nproxy|slowlog\r\n");
        let err = Bytes::from_static(b"-ERR syntax error\r\n");
        assert_eq!(
            merge(
                &args(&["command", "list", "x"]),
                err.clone(),
                Protocol::Resp2
            ),
            err
        );
        // A reply of an unexpected shape is left alone.
        let odd = Bytes::from_static(b"+OK\r\n");
        assert_eq!(
            merge(&args(&["command"]), odd.clone(), Protocol::Resp2),
            odd
        );
    }
}
