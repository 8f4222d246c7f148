//! Semaphores: SEM.ACQUIRE, SEM.RELEASE, SEM.AVAILABLE.
//!
//! A semaphore is a sorted set `strata:sem:{name}:` of permit ids scored
//! by their expiry (Redis's clock, ms), and a hash `strata:sem:{name}:meta`
//! (`seq`: the last permit id, so ids are unique and a stale one is told
//! from one never issued; `permits`: the last limit asked for, for
//! SEM.AVAILABLE). The acquire script prunes expired permits first, so a
//! dead holder's permit frees itself after its ttl, then admits the
//! caller only while fewer than `permits` live ones are held: the check
//! and the admission are one script, so no interleaving over-admits.
//!
//! WAIT queues in strata (`exec::wait_turn`): woken by a release's
//! PUBLISH, or when the first permit's expiry, which the script told the
//! head waiter, passes. KEEPALIVE renews the permit every ttl/3 and gives
//! it back when the connection ends (`lease.rs`).

use std::sync::{Arc, LazyLock};

use bytes::Bytes;

use super::client::LeaseId;
use super::exec::{self, failure, num, Step};
use super::keys::ObjectKeys;
use super::lease::{self, Renewal};
use super::registry::{Arg, ArgKind, Call, Reply, Spec};
use super::{args, Coord};
use crate::protocol::reply::{self, ReplyBuf};
use crate::tier::behind::script::Script;

static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_sem_acquire.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_sem_release.lua")));
static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_sem_extend.lua")));
static AVAILABLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_sem_available.lua")));

/// The metrics' `primitive` label.
const KIND: &str = "sem";
/// The keys every semaphore script takes.
const PARTS: &[&str] = &["", "meta"];

static RENEWAL: LazyLock<Renewal> = LazyLock::new(|| Renewal {
    primitive: KIND,
    push: "permit-lost",
    script: &EXTEND,
    parts: PARTS,
    end: end_lease,
});

/// The semaphore commands.
pub static SPECS: &[Spec] = &[
    Spec {
        name: "sem.acquire",
        arity: -4,
        flags: &["write", "denyoom", "blocking"],
        acl: &["@write", "@slow", "@blocking"],
        key_flags: &["RW", "update"],
        summary: "Takes one of a semaphore's permits and returns its id, or nil when WAIT runs out",
        complexity: "O(log N) for N permits held, and O(1) Redis operations per release for any number of waiters",
        args: &[
            Arg::required("name", ArgKind::Key),
            Arg::required("permits", ArgKind::Integer),
            Arg::required("ttl_ms", ArgKind::Integer),
            Arg::option("timeout_ms", ArgKind::Integer, "WAIT"),
            Arg::option("keepalive", ArgKind::PureToken, "KEEPALIVE"),
        ],
        run: acquire,
    },
    Spec {
        name: "sem.release",
        arity: 3,
        flags: &["write", "fast"],
        acl: &["@write", "@fast"],
        key_flags: &["RW", "delete"],
        summary: "Gives a semaphore permit back",
        complexity: "O(log N)",
        args: &[
            Arg::required("name", ArgKind::Key),
            Arg::required("permit_id", ArgKind::Integer),
        ],
        run: release,
    },
    Spec {
        name: "sem.available",
        arity: 2,
        flags: &["readonly", "fast"],
        acl: &["@read", "@fast"],
        key_flags: &["RO", "access"],
        summary: "The permits of a semaphore free now, or nil for a semaphore never used",
        complexity: "O(log N)",
        args: &[Arg::required("name", ArgKind::Key)],
        run: available,
    },
];

/// SEM.ACQUIRE's arguments.
#[derive(Debug, PartialEq, Eq)]
struct Acquire {
    permits: i64,
    ttl: i64,
    wait: Option<i64>,
    keepalive: bool,
}

fn parse_acquire(args: &[Bytes], max_ttl: i64) -> Result<Acquire, String> {
    let permits = args::int(&args[2])?;
    if permits <= 0 {
        return Err("ERR value is out of range, must be positive".into());
    }
    let ttl = args::ttl(&args[3], "sem.acquire", max_ttl)?;
    let mut out = Acquire {
        permits,
        ttl,
        wait: None,
        keepalive: false,
    };
    let mut i = 4;
    while i < args.len() {
        let word = &args[i];
        if word.eq_ignore_ascii_case(b"WAIT") && i + 1 < args.len() {
            out.wait = Some(args::timeout(&args[i + 1])?);
            i += 2;
        } else if word.eq_ignore_ascii_case(b"KEEPALIVE") {
            out.keepalive = true;
            i += 1;
        } else {
            return Err(args::SYNTAX.into());
        }
    }
    Ok(out)
}

/// One try: `Ready(id)`, or `Later(ms until the first permit expires)`.
async fn try_acquire(
    coord: &Coord,
    client_id: u64,
    keys: &ObjectKeys,
    permits: i64,
    ttl: i64,
) -> Result<Step<i64>, String> {
    let link = coord.link(client_id);
    let frame = exec::run(&ACQUIRE, &link, keys, PARTS, &[num(permits), num(ttl)]).await?;
    match exec::ints(&frame).as_deref() {
        Some(&[id, _]) if id > 0 => Ok(Step::Ready(id)),
        Some(&[_, ms]) => Ok(Step::Later(ms)),
        _ => Err("ERR unexpected reply from the semaphore script".into()),
    }
}

fn acquire(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            proto,
        } = call;
        let req = match parse_acquire(args, coord.config().max_ttl_ms) {
            Ok(req) => req,
            Err(text) => return reply::error(&text),
        };
        let keys = match exec::object(KIND, &args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let stats = &coord.stats().primitives;
        let id = client.client_id();
        let got = match req.wait {
            None => try_acquire(coord, id, &keys, req.permits, req.ttl)
                .await
                .map(|s| match s {
                    Step::Ready(permit) => Some(permit),
                    Step::Later(_) => None,
                }),
            Some(wait) => {
                let waits = stats.waits(KIND);
                exec::wait_turn(coord, &keys, wait, &waits, || {
                    try_acquire(coord, id, &keys, req.permits, req.ttl)
                })
                .await
            }
        };
        let mut r = ReplyBuf::new(proto);
        match got {
            Err(text) => return failure(&text),
            Ok(None) => {
                stats.count(
                    KIND,
                    if req.wait.is_some() {
                        "timeout"
                    } else {
                        "busy"
                    },
                );
                r.null();
            }
            Ok(Some(permit)) => {
                stats.count(KIND, "acquired");
                if req.keepalive {
                    let lease: LeaseId = (KIND, args[1].clone(), permit);
                    lease::keep(
                        coord,
                        client,
                        &RENEWAL,
                        keys,
                        lease,
                        req.ttl,
                        vec![num(permit), num(req.ttl)],
                    );
                }
                r.integer(permit);
            }
        }
        r.freeze()
    })
}

/// Gives a KEEPALIVE permit back when its connection ends.
fn end_lease(
    coord: Arc<Coord>,
    keys: ObjectKeys,
    permit: i64,
    client_id: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let link = coord.link(client_id);
        let argv = [num(permit), keys.part("wake")];
        if let Ok(frame) = exec::run(&RELEASE, &link, &keys, PARTS, &argv).await {
            if reply::integer_payload(&frame) == Some(1) {
                coord.stats().primitives.count(KIND, "released");
            }
        }
    })
}

/// `-LOCKLOST …` for a permit that is no longer held.
fn permit_lost(name: &[u8], permit: i64, why: &str) -> Bytes {
    reply::error(&format!(
        "LOCKLOST permit {permit} of semaphore '{}' is not held: {why}",
        String::from_utf8_lossy(name)
    ))
}

fn release(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            ..
        } = call;
        let stats = &coord.stats().primitives;
        let permit = match args::token(&args[2]) {
            Ok(p) => p,
            Err(text) => return reply::error(&text),
        };
        let keys = match exec::object(KIND, &args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let lease: LeaseId = (KIND, args[1].clone(), permit);
        if client.take_lost(&lease) {
            stats.count(KIND, "rejected");
            return permit_lost(
                &args[1],
                permit,
                "its KEEPALIVE lease was lost (a renewal found it expired)",
            );
        }
        client.forget(&lease);
        let link = coord.link(client.client_id());
        let argv = [num(permit), keys.part("wake")];
        let frame = match exec::run(&RELEASE, &link, &keys, PARTS, &argv).await {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        match reply::integer_payload(&frame) {
            Some(1) => {
                stats.count(KIND, "released");
                reply::ok()
            }
            Some(0) => {
                stats.count(KIND, "rejected");
                permit_lost(&args[1], permit, "it expired or was released")
            }
            Some(-2) => {
                stats.count(KIND, "rejected");
                reply::error(&format!(
                    "ERR permit {permit} was never issued for semaphore '{}'",
                    String::from_utf8_lossy(&args[1])
                ))
            }
            _ => reply::error("ERR unexpected reply from the semaphore script"),
        }
    })
}

fn available(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            proto,
        } = call;
        let keys = match exec::object(KIND, &args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let link = coord.link(client.client_id());
        let frame = match exec::run(&AVAILABLE, &link, &keys, PARTS, &[]).await {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        let mut r = ReplyBuf::new(proto);
        match exec::ints(&frame).as_deref() {
            Some(&[limit, held]) if limit > 0 => {
                r.integer((limit - held).max(0));
            }
            _ => {
                r.null();
            }
        }
        r.freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn acquire_options() {
        let a = parse_acquire(&args(&["sem.acquire", "s", "3", "100"]), 1000).expect("ok");
        assert_eq!(
            (a.permits, a.ttl, a.wait, a.keepalive),
            (3, 100, None, false)
        );
        let a = parse_acquire(
            &args(&["sem.acquire", "s", "3", "100", "wait", "0", "KEEPALIVE"]),
            1000,
        )
        .expect("ok");
        assert_eq!((a.wait, a.keepalive), (Some(0), true));
        for (bad, text) in [
            (
                &["sem.acquire", "s", "0", "100"][..],
                "ERR value is out of range, must be positive",
            ),
            (&["sem.acquire", "s", "x", "100"], args::NOT_AN_INTEGER),
            (
                &["sem.acquire", "s", "2", "-1"],
                "ERR invalid expire time in 'sem.acquire' command",
            ),
            (&["sem.acquire", "s", "2", "10", "WAIT"], args::SYNTAX),
            (&["sem.acquire", "s", "2", "10", "OWNER", "x"], args::SYNTAX),
        ] {
            assert_eq!(
                parse_acquire(&args(bad), 1000).expect_err("an error"),
                text,
                "{bad:?}"
            );
        }
    }
}
