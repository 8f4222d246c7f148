//! Fenced locks: LOCK.ACQUIRE, LOCK.RELEASE, LOCK.EXTEND, LOCK.INFO.
//!
//! A lock is a hash `strata:lock:{name}:` (`token`, `owner`) with the
//! lock's ttl, and a counter `strata:lock:{name}:seq` that never expires:
//! each acquisition INCRs it inside the acquire script, so the token (the
//! fencing token) strictly increases for that lock for as long as Redis
//! keeps the counter (docs/COMMANDS.md says what a failover can break).
//! RELEASE and EXTEND check the token in their script: nobody releases or
//! extends a lock they do not hold.
//!
//! WAIT queues the caller in strata (`wake.rs`): FIFO per lock, woken by
//! the release's PUBLISH or when the holder's ttl runs out. KEEPALIVE ties
//! the lock to the connection (`client.rs`): renewed every ttl/3, released
//! when the connection ends, and reported lost (push, `-LOCKLOST`) when a
//! renewal finds it gone.

use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::args;
use super::client::{lease_lost, ClientCoord, Lease, LeaseId, Lost};
use super::keys::ObjectKeys;
use super::registry::{Arg, ArgKind, Call, Reply, Spec};
use super::{Coord, CoordStats};
use crate::protocol::reply::{self, ReplyBuf};
use crate::server::clients::ClientInfo;
use crate::tier::behind::script::Script;
use crate::tier::redis::{error_text, RedisLink};

static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_lock_acquire.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_lock_release.lua")));
static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_lock_extend.lua")));
static INFO: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_lock_info.lua")));

/// The lock commands.
pub static SPECS: &[Spec] = &[
    Spec {
        name: "lock.acquire",
        arity: -3,
        flags: &["write", "denyoom", "blocking"],
        acl: &["@write", "@slow", "@blocking"],
        key_flags: &["RW", "update"],
        summary: "Takes a lock and returns its fencing token, or nil when WAIT runs out",
        complexity: "O(1), and O(1) Redis operations per release for any number of waiters",
        args: &[
            Arg::required("name", ArgKind::Key),
            Arg::required("ttl_ms", ArgKind::Integer),
            Arg::option("timeout_ms", ArgKind::Integer, "WAIT"),
            Arg::option("owner", ArgKind::String, "OWNER"),
            Arg::option("keepalive", ArgKind::PureToken, "KEEPALIVE"),
        ],
        run: acquire,
    },
    Spec {
        name: "lock.release",
        arity: 3,
        flags: &["write", "fast"],
        acl: &["@write", "@fast"],
        key_flags: &["RW", "delete"],
        summary: "Releases a lock held with this fencing token",
        complexity: "O(1)",
        args: &[
            Arg::required("name", ArgKind::Key),
            Arg::required("token", ArgKind::Integer),
        ],
        run: release,
    },
    Spec {
        name: "lock.extend",
        arity: 4,
        flags: &["write", "fast"],
        acl: &["@write", "@fast"],
        key_flags: &["RW", "update"],
        summary: "Sets a new ttl on a lock held with this fencing token (the token stays)",
        complexity: "O(1)",
        args: &[
            Arg::required("name", ArgKind::Key),
            Arg::required("token", ArgKind::Integer),
            Arg::required("ttl_ms", ArgKind::Integer),
        ],
        run: extend,
    },
    Spec {
        name: "lock.info",
        arity: 2,
        flags: &["readonly", "fast"],
        acl: &["@read", "@fast"],
        key_flags: &["RO", "access"],
        summary: "The holder, fencing token and remaining ttl of a lock, or nil",
        complexity: "O(1)",
        args: &[Arg::required("name", ArgKind::Key)],
        run: info,
    },
];

/// LOCK.ACQUIRE's arguments.
#[derive(Debug, PartialEq, Eq)]
struct Acquire {
    ttl: i64,
    /// `None`: try once. `Some(0)`: wait without limit.
    wait: Option<i64>,
    owner: Option<Bytes>,
    keepalive: bool,
}

fn parse_acquire(args: &[Bytes], max_ttl: i64) -> Result<Acquire, String> {
    let ttl = args::ttl(&args[2], "lock.acquire", max_ttl)?;
    let mut out = Acquire {
        ttl,
        wait: None,
        owner: None,
        keepalive: false,
    };
    let mut i = 3;
    while i < args.len() {
        let word = &args[i];
        if word.eq_ignore_ascii_case(b"WAIT") && i + 1 < args.len() {
            out.wait = Some(args::timeout(&args[i + 1])?);
            i += 2;
        } else if word.eq_ignore_ascii_case(b"OWNER") && i + 1 < args.len() {
            out.owner = Some(args[i + 1].clone());
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

/// One try's outcome.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Taken(i64),
    /// Someone holds it for this many more ms (-1: without a ttl).
    Held(i64),
}

/// A backend failure as an error reply: Redis's own error as it is, a
/// connection failure as `ERR …`.
fn failure(text: &str) -> Bytes {
    let coded = text
        .split(' ')
        .next()
        .is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase()));
    if coded {
        reply::error(text)
    } else {
        reply::error(&format!("ERR {text}"))
    }
}

/// Runs a lock script on the lock's slot; Redis's error replies become `Err`.
async fn run(
    script: &Script,
    link: &RedisLink<'_>,
    keys: &ObjectKeys,
    argv: &[Bytes],
) -> Result<Bytes, String> {
    let main = keys.part("");
    let frame = script
        .run(link, &main, &[main.clone(), keys.part("seq")], argv)
        .await?;
    match error_text(&frame) {
        Some(text) => Err(text),
        None => Ok(frame),
    }
}

/// The integers of a `*n` reply of integers.
fn ints(frame: &Bytes) -> Option<Vec<i64>> {
    reply::aggregate_elements(frame)?
        .into_iter()
        .map(|r| reply::integer_payload(&frame[r]))
        .collect()
}

async fn try_acquire(
    coord: &Coord,
    link: &RedisLink<'_>,
    keys: &ObjectKeys,
    ttl: i64,
    owner: &Bytes,
) -> Result<Attempt, String> {
    let argv = [num(ttl), owner.clone()];
    let frame = match acquire_acked(coord, keys, &argv).await? {
        Some(frame) => frame,
        None => run(&ACQUIRE, link, keys, &argv).await?,
    };
    match ints(&frame).as_deref() {
        Some(&[token, _]) if token > 0 => Ok(Attempt::Taken(token)),
        Some(&[_, pttl]) => Ok(Attempt::Held(pttl)),
        _ => Err("ERR unexpected reply from the lock script".into()),
    }
}

/// The acquisition with a replica's acknowledgement (`ack.rs`), when the
/// lock's primary has replicas; `None`: run it on the shared path.
async fn acquire_acked(
    coord: &Coord,
    keys: &ObjectKeys,
    argv: &[Bytes],
) -> Result<Option<Bytes>, String> {
    let main = keys.part("");
    let Some(node) = coord.acked_primary(&main) else {
        return Ok(None);
    };
    let taken = |frame: &Bytes| matches!(ints(frame).as_deref(), Some(&[token, _]) if token > 0);
    let ack_ms = coord.config().replica_ack_timeout_ms;
    let keys = [main.clone(), keys.part("seq")];
    let Some(acked) = super::ack::run_acked(
        &node,
        coord.replicas(),
        &ACQUIRE,
        &keys,
        argv,
        ack_ms,
        taken,
    )
    .await?
    else {
        return Ok(None);
    };
    match error_text(&acked.reply) {
        // The slot moved: the shared path follows the redirect (without
        // the acknowledgement this once).
        Some(text) if text.starts_with("MOVED") || text.starts_with("ASK") => {
            coord.stats().replica_acks_missing.inc();
            return Ok(None);
        }
        Some(text) => return Err(text),
        None => {}
    }
    match acked.acks {
        Some(n) if n >= 1 => CoordStats::add(&coord.stats().replica_acks),
        Some(_) => CoordStats::add(&coord.stats().replica_acks_missing),
        None => {}
    }
    Ok(Some(acked.reply))
}

fn num(n: i64) -> Bytes {
    Bytes::from(n.to_string())
}

/// Takes the lock, waiting in this strata's FIFO queue for the lock until
/// `wait_ms` (0: no limit) runs out (`Ok(None)`).
async fn acquire_waiting(
    coord: &Arc<Coord>,
    link: &RedisLink<'_>,
    keys: &ObjectKeys,
    ttl: i64,
    owner: &Bytes,
    wait_ms: i64,
) -> Result<Option<i64>, String> {
    let started = Instant::now();
    let deadline = (wait_ms > 0).then(|| started + Duration::from_millis(wait_ms as u64));
    let Some(waiter) = coord.wake().enter(keys.part("wake")) else {
        return Err(format!(
            "ERR too many waiters in this strata (coord.max_waiters = {})",
            coord.config().max_waiters
        ));
    };
    let outcome = async {
        // Our turn among this strata's waiters (FIFO).
        let _turn = match deadline {
            Some(d) => match tokio::time::timeout_at(d, waiter.queue.turnstile.lock()).await {
                Ok(turn) => turn,
                Err(_) => return Ok(None),
            },
            None => waiter.queue.turnstile.lock().await,
        };
        loop {
            let pttl = match try_acquire(coord, link, keys, ttl, owner).await? {
                Attempt::Taken(token) => return Ok(Some(token)),
                Attempt::Held(pttl) => pttl,
            };
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            // The fallback timer: no later than the holder's ttl (a lost
            // wake message costs at most that); a lock set without a ttl
            // by someone else is looked at every second.
            let fallback_ms = if pttl > 0 { pttl + 1 } else { 1000 };
            let fallback = now + Duration::from_millis(fallback_ms as u64);
            let until = deadline.map_or(fallback, |d| d.min(fallback));
            tokio::select! {
                () = waiter.queue.notify.notified() => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
    .await;
    coord.stats().waits.observe(started.elapsed().as_secs_f64());
    outcome
}

fn acquire(call: Call<'_>) -> Reply<'_> {
    Box::pin(acquire_run(call))
}

async fn acquire_run(call: Call<'_>) -> Bytes {
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
    if req.keepalive && client.lease_count() >= super::client::LEASES_MAX {
        return reply::error(&format!(
            "ERR this connection holds {} KEEPALIVE leases already, the most it may",
            super::client::LEASES_MAX
        ));
    }
    let name = args[1].clone();
    let keys = match ObjectKeys::new("lock", &name) {
        Ok(keys) => keys,
        Err(text) => return reply::error(&text),
    };
    let owner = req
        .owner
        .clone()
        .unwrap_or_else(|| Bytes::from(format!("strata-client:{}", client.client_id())));
    let link = coord.link(client.client_id());
    let stats = coord.stats();
    let got = match req.wait {
        None => try_acquire(coord, &link, &keys, req.ttl, &owner)
            .await
            .map(|a| match a {
                Attempt::Taken(token) => Some(token),
                Attempt::Held(_) => None,
            }),
        Some(wait) => acquire_waiting(coord, &link, &keys, req.ttl, &owner, wait).await,
    };
    let mut r = ReplyBuf::new(proto);
    match got {
        Err(text) => return failure(&text),
        Ok(None) => {
            CoordStats::add(if req.wait.is_some() {
                &stats.timeouts
            } else {
                &stats.busy
            });
            r.null();
        }
        Ok(Some(token)) => {
            CoordStats::add(&stats.acquisitions);
            if req.keepalive {
                keep(coord, client, name, keys, token, req.ttl);
            }
            r.integer(token);
        }
    }
    r.freeze()
}

/// Starts a KEEPALIVE lease's renewals.
fn keep(
    coord: &Arc<Coord>,
    client: &mut ClientCoord,
    name: Bytes,
    keys: ObjectKeys,
    token: i64,
    ttl: i64,
) {
    let id: LeaseId = ("lock", name, token);
    let task = tokio::spawn(renew(
        coord.clone(),
        keys.clone(),
        id.clone(),
        ttl,
        client.client_id(),
        client.info(),
        client.lost_set(),
    ));
    client.hold(
        id,
        Lease {
            keys,
            task: task.abort_handle(),
            end: end_lease,
        },
    );
}

/// Renews a KEEPALIVE lock every ttl/3 until the task is stopped (release,
/// disconnect) or a renewal finds the lock gone or taken (lost). While
/// Redis cannot be reached it keeps trying; once a whole ttl passed
/// without a renewal the lock may have expired, and it is lost too.
async fn renew(
    coord: Arc<Coord>,
    keys: ObjectKeys,
    id: LeaseId,
    ttl: i64,
    client_id: u64,
    info: Weak<ClientInfo>,
    lost: Arc<Mutex<Lost>>,
) {
    let period = Duration::from_millis((ttl / 3).max(1) as u64);
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(period).await;
        let link = coord.link(client_id);
        let outcome = run(&EXTEND, &link, &keys, &[num(id.2), num(ttl)]).await;
        match outcome.as_ref().map(|f| reply::integer_payload(f)) {
            Ok(Some(1)) => {
                renewed = Instant::now();
                CoordStats::add(&coord.stats().extensions);
            }
            Ok(_) => break,
            Err(_) if renewed.elapsed() >= Duration::from_millis(ttl as u64) => break,
            Err(text) => {
                tracing::warn!(error = %text, "coord: KEEPALIVE renewal failed; retrying");
            }
        }
    }
    lease_lost(&coord, &lost, &info, "lock-lost", id);
}

/// Gives a KEEPALIVE lock back when its connection ends.
fn end_lease(
    coord: Arc<Coord>,
    keys: ObjectKeys,
    token: i64,
    client_id: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let link = coord.link(client_id);
        let wake = keys.part("wake");
        if let Ok(frame) = run(&RELEASE, &link, &keys, &[num(token), wake]).await {
            if reply::integer_payload(&frame) == Some(1) {
                CoordStats::add(&coord.stats().releases);
            }
        }
    })
}

/// `-LOCKLOST …` for a token that no longer holds the lock.
fn lock_lost(name: &[u8], token: i64, why: &str) -> Bytes {
    reply::error(&format!(
        "LOCKLOST lock '{}' is not held by token {token}: {why}",
        String::from_utf8_lossy(name)
    ))
}

/// The reply to a RELEASE/EXTEND script's code.
fn checked(coord: &Coord, code: Option<i64>, name: &[u8], token: i64) -> Result<(), Bytes> {
    let refused = match code {
        Some(1) => return Ok(()),
        Some(0) => lock_lost(name, token, "it expired or was released"),
        Some(-1) => lock_lost(name, token, "another token holds it"),
        Some(-2) => reply::error(&format!(
            "ERR token {token} was never issued for lock '{}'",
            String::from_utf8_lossy(name)
        )),
        _ => return Err(reply::error("ERR unexpected reply from the lock script")),
    };
    CoordStats::add(&coord.stats().fencing_rejections);
    Err(refused)
}

/// The name, token and keys of RELEASE/EXTEND, and whether this
/// connection's KEEPALIVE lease with that token was lost (`-LOCKLOST`).
fn held_args(client: &mut ClientCoord, args: &[Bytes]) -> Result<(LeaseId, ObjectKeys), Bytes> {
    let token = args::token(&args[2]).map_err(|t| reply::error(&t))?;
    let keys = ObjectKeys::new("lock", &args[1]).map_err(|t| reply::error(&t))?;
    let id: LeaseId = ("lock", args[1].clone(), token);
    if client.take_lost(&id) {
        return Err(lock_lost(
            &args[1],
            token,
            "its KEEPALIVE lease was lost (a renewal found it expired or taken)",
        ));
    }
    Ok((id, keys))
}

fn release(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            ..
        } = call;
        let (id, keys) = match held_args(client, args) {
            Ok(v) => v,
            Err(reply) => {
                CoordStats::add(&coord.stats().fencing_rejections);
                return reply;
            }
        };
        client.forget(&id);
        let link = coord.link(client.client_id());
        let frame = match run(&RELEASE, &link, &keys, &[num(id.2), keys.part("wake")]).await {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        match checked(coord, reply::integer_payload(&frame), &id.1, id.2) {
            Ok(()) => {
                CoordStats::add(&coord.stats().releases);
                reply::ok()
            }
            Err(reply) => reply,
        }
    })
}

fn extend(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            ..
        } = call;
        let ttl = match args::ttl(&args[3], "lock.extend", coord.config().max_ttl_ms) {
            Ok(ttl) => ttl,
            Err(text) => return reply::error(&text),
        };
        let (id, keys) = match held_args(client, args) {
            Ok(v) => v,
            Err(reply) => {
                CoordStats::add(&coord.stats().fencing_rejections);
                return reply;
            }
        };
        let link = coord.link(client.client_id());
        let frame = match run(&EXTEND, &link, &keys, &[num(id.2), num(ttl)]).await {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        match checked(coord, reply::integer_payload(&frame), &id.1, id.2) {
            Ok(()) => {
                CoordStats::add(&coord.stats().extensions);
                // A KEEPALIVE lease goes on renewing with the new ttl.
                if client.forget(&id) {
                    keep(coord, client, id.1, keys, id.2, ttl);
                }
                reply::ok()
            }
            Err(reply) => reply,
        }
    })
}

fn info(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            proto,
        } = call;
        let keys = match ObjectKeys::new("lock", &args[1]) {
            Ok(keys) => keys,
            Err(text) => return reply::error(&text),
        };
        let link = coord.link(client.client_id());
        let frame = match run(&INFO, &link, &keys, &[]).await {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        let parts = reply::aggregate_elements(&frame).unwrap_or_default();
        let mut r = ReplyBuf::new(proto);
        if parts.len() != 3 {
            r.null();
            return r.freeze();
        }
        let owner = reply::string_payload(&frame[parts[0].clone()]).unwrap_or_default();
        let token = reply::integer_payload(&frame[parts[1].clone()]).unwrap_or(0);
        let ttl = reply::integer_payload(&frame[parts[2].clone()]).unwrap_or(-1);
        r.map(3);
        r.bulk(b"owner").bulk(owner);
        r.bulk(b"token").integer(token);
        r.bulk(b"ttl_ms").integer(ttl);
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
        let a = parse_acquire(&args(&["lock.acquire", "l", "100"]), 1000).expect("ok");
        assert_eq!(a.wait, None);
        let a = parse_acquire(
            &args(&[
                "lock.acquire",
                "l",
                "100",
                "wait",
                "5",
                "OWNER",
                "me",
                "keepalive",
            ]),
            1000,
        )
        .expect("ok");
        assert_eq!(a.wait, Some(5));
        assert_eq!(a.owner.as_deref(), Some(&b"me"[..]));
        assert!(a.keepalive);
        for (bad, text) in [
            (&["lock.acquire", "l", "100", "WAIT"][..], args::SYNTAX),
            (&["lock.acquire", "l", "100", "BOGUS"], args::SYNTAX),
            (&["lock.acquire", "l", "x"], args::NOT_AN_INTEGER),
            (
                &["lock.acquire", "l", "-1"],
                "ERR invalid expire time in 'lock.acquire' command",
            ),
            (
                &["lock.acquire", "l", "100", "WAIT", "-1"],
                "ERR timeout is negative",
            ),
        ] {
            assert_eq!(
                parse_acquire(&args(bad), 1000).expect_err("an error"),
                text,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn failures_keep_redis_codes() {
        assert_eq!(&failure("NOPERM no")[..], b"-NOPERM no\r\n");
        assert_eq!(
            &failure("backend unavailable: x")[..],
            b"-ERR backend unavailable: x\r\n"
        );
    }
}
