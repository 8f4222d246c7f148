//! Versioned writes (optimistic concurrency): VSET, VGET, CAS.
//!
//! The value is the key itself (a plain string: GET, TTL and the rest see
//! it as usual); its version is a counter `strata:ver:{key}:` in the key's
//! slot (`keys.rs`), which never expires and lives in Redis, so versions
//! survive a strata restart. Each write by VSET or CAS checks and bumps
//! the version in one script: two writers that read version N cannot both
//! write N+1. A write by a plain command (SET, DEL) does not bump the
//! version: only VSET and CAS are checked.
//!
//! The names have no dot (the issue names them so); `registry::lookup`
//! lets these through ([`undotted`]).

use std::sync::LazyLock;

use bytes::Bytes;

use super::exec::{self, failure};
use super::keys::ObjectKeys;
use super::registry::{Arg, ArgKind, Call, Reply, Spec};
use super::{args, Coord};
use crate::protocol::reply::{self, ReplyBuf};
use crate::tier::behind::script::Script;

static VSET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_vset.lua")));
static CAS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_cas.lua")));
static VGET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_vget.lua")));

const KIND: &str = "vset";

/// True for the versioned-write commands' names, which have no dot.
pub fn undotted(name: &[u8]) -> bool {
    [&b"vset"[..], b"vget", b"cas"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// The versioned-write commands.
pub static SPECS: &[Spec] = &[
    Spec {
        name: "vset",
        arity: -3,
        flags: &["write", "denyoom"],
        acl: &["@write", "@string", "@slow"],
        key_flags: &["RW", "update"],
        summary: "Sets a key's value and returns its new version; with VERSION, only if that is its current version",
        complexity: "O(1)",
        args: &[
            Arg::required("key", ArgKind::Key),
            Arg::required("value", ArgKind::String),
            Arg::option("version", ArgKind::Integer, "VERSION"),
        ],
        run: vset,
    },
    Spec {
        name: "vget",
        arity: 2,
        flags: &["readonly", "fast"],
        acl: &["@read", "@string", "@fast"],
        key_flags: &["RO", "access"],
        summary: "A key's value (or nil) and its version",
        complexity: "O(1)",
        args: &[Arg::required("key", ArgKind::Key)],
        run: vget,
    },
    Spec {
        name: "cas",
        arity: 4,
        flags: &["write", "denyoom"],
        acl: &["@write", "@string", "@slow"],
        key_flags: &["RW", "update"],
        summary: "Sets a key's value if it is the expected one and returns the new version, or nil",
        complexity: "O(1)",
        args: &[
            Arg::required("key", ArgKind::Key),
            Arg::required("expected", ArgKind::String),
            Arg::required("new", ArgKind::String),
        ],
        run: cas,
    },
];

/// Runs a script on the key and its version counter.
async fn run(
    coord: &Coord,
    client_id: u64,
    script: &Script,
    key: &Bytes,
    argv: &[Bytes],
) -> Result<Bytes, String> {
    let version = ObjectKeys::new("ver", key)
        .map_err(|t| t.replace("ver name", "key"))?
        .part("");
    let link = coord.link(client_id);
    let frame = script
        .run(&link, &version, &[key.clone(), version.clone()], argv)
        .await?;
    match crate::tier::redis::error_text(&frame) {
        Some(text) => Err(text),
        None => Ok(frame),
    }
}

/// `{1, version}` → the new version; `{0, version}` → `Err(current)`.
fn written(frame: &Bytes) -> Option<Result<i64, i64>> {
    match exec::ints(frame).as_deref() {
        Some(&[1, v]) => Some(Ok(v)),
        Some(&[0, v]) => Some(Err(v)),
        _ => None,
    }
}

fn vset(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            proto,
        } = call;
        let expected = match args.len() {
            3 => Bytes::new(),
            5 if args[3].eq_ignore_ascii_case(b"VERSION") => match args::int(&args[4]) {
                Ok(v) if v >= 0 => args[4].clone(),
                Ok(_) => return reply::error("ERR version must not be negative"),
                Err(text) => return reply::error(&text),
            },
            _ => return reply::error(args::SYNTAX),
        };
        let stats = &coord.stats().primitives;
        let argv = [args[2].clone(), expected];
        let frame = match run(coord, client.client_id(), &VSET, &args[1], &argv).await {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        match written(&frame) {
            Some(Ok(v)) => {
                stats.count(KIND, "written");
                let mut r = ReplyBuf::new(proto);
                r.integer(v);
                r.freeze()
            }
            Some(Err(current)) => {
                stats.count(KIND, "conflict");
                reply::error(&format!("CONFLICT current version is {current}"))
            }
            None => reply::error("ERR unexpected reply from the versioned-write script"),
        }
    })
}

fn cas(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            proto,
        } = call;
        let stats = &coord.stats().primitives;
        let argv = [args[2].clone(), args[3].clone()];
        let frame = match run(coord, client.client_id(), &CAS, &args[1], &argv).await {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        let mut r = ReplyBuf::new(proto);
        match written(&frame) {
            Some(Ok(v)) => {
                stats.count(KIND, "written");
                r.integer(v);
            }
            Some(Err(_)) => {
                stats.count(KIND, "conflict");
                r.null();
            }
            None => return reply::error("ERR unexpected reply from the versioned-write script"),
        }
        r.freeze()
    })
}

fn vget(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let frame = match run(
            call.coord,
            call.client.client_id(),
            &VGET,
            &call.args[1],
            &[],
        )
        .await
        {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        let parts = exec::elements(&frame);
        let mut r = ReplyBuf::new(call.proto);
        match (
            parts.first(),
            parts.get(1).and_then(|f| reply::integer_payload(f)),
        ) {
            (Some(value), Some(version)) => {
                r.array(2);
                match reply::string_payload(value) {
                    Some(v) if value.first() == Some(&b'$') => {
                        r.bulk(v);
                    }
                    _ => {
                        r.null();
                    }
                }
                r.integer(version);
            }
            _ => return reply::error("ERR unexpected reply from the versioned-write script"),
        }
        r.freeze()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn undotted_names() {
        assert!(super::undotted(b"VSET") && super::undotted(b"cas"));
        assert!(!super::undotted(b"set") && !super::undotted(b"vsets"));
    }
}
