//! Leader election: LEADER.CAMPAIGN, LEADER.RENEW, LEADER.RESIGN,
//! LEADER.GET, LEADER.WATCH.
//!
//! An election is a hash `strata:leader:{election}:` (`node`, `term`)
//! with the leadership's ttl, and a counter `strata:leader:{election}:term`
//! that never expires. A campaign that finds nobody leading INCRs the
//! counter and writes the leader in the same script: one leader per term,
//! and terms strictly increase for as long as Redis keeps the counter (a
//! failover can break that as for lock tokens: docs/COMMANDS.md). The term
//! is the fencing token: a leader paused past its ttl is told by
//! LEADER.RENEW that it no longer leads, and a resource that rejects a
//! lower term than one it has seen ignores what it writes meanwhile.
//!
//! CAMPAIGN … WAIT and WATCH queue in strata (`exec::wait_turn`): woken by
//! a campaign's or a resignation's PUBLISH, or when the leadership's ttl
//! runs out (the fallback timer). KEEPALIVE renews the leadership every
//! ttl/3 and resigns it when the connection ends (`lease.rs`).

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

static CAMPAIGN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_leader_campaign.lua")));
static RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_leader_renew.lua")));
static RESIGN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_leader_resign.lua")));
static GET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_leader_get.lua")));

const KIND: &str = "leader";
const PARTS: &[&str] = &["", "term"];

static RENEWAL: LazyLock<Renewal> = LazyLock::new(|| Renewal {
    primitive: KIND,
    push: "leader-lost",
    script: &RENEW,
    parts: PARTS,
    end: end_lease,
});

/// The election commands.
pub static SPECS: &[Spec] = &[
    Spec {
        name: "leader.campaign",
        arity: -4,
        flags: &["write", "denyoom", "blocking"],
        acl: &["@write", "@slow", "@blocking"],
        key_flags: &["RW", "update"],
        summary: "Leads an election and returns the term (a fencing token), or nil while another node leads",
        complexity: "O(1), and O(1) Redis operations per change of leader for any number of campaigners",
        args: &[
            Arg::required("election", ArgKind::Key),
            Arg::required("node_id", ArgKind::String),
            Arg::required("ttl_ms", ArgKind::Integer),
            Arg::option("timeout_ms", ArgKind::Integer, "WAIT"),
            Arg::option("keepalive", ArgKind::PureToken, "KEEPALIVE"),
        ],
        run: campaign,
    },
    Spec {
        name: "leader.renew",
        arity: 5,
        flags: &["write", "fast"],
        acl: &["@write", "@fast"],
        key_flags: &["RW", "update"],
        summary: "Sets a new ttl on a leadership if node_id leads in term",
        complexity: "O(1)",
        args: &[
            Arg::required("election", ArgKind::Key),
            Arg::required("node_id", ArgKind::String),
            Arg::required("term", ArgKind::Integer),
            Arg::required("ttl_ms", ArgKind::Integer),
        ],
        run: renew,
    },
    Spec {
        name: "leader.resign",
        arity: 4,
        flags: &["write", "fast"],
        acl: &["@write", "@fast"],
        key_flags: &["RW", "delete"],
        summary: "Steps down if node_id leads in term",
        complexity: "O(1)",
        args: &[
            Arg::required("election", ArgKind::Key),
            Arg::required("node_id", ArgKind::String),
            Arg::required("term", ArgKind::Integer),
        ],
        run: resign,
    },
    Spec {
        name: "leader.get",
        arity: 2,
        flags: &["readonly", "fast"],
        acl: &["@read", "@fast"],
        key_flags: &["RO", "access"],
        summary: "The leader, its term and the leadership's remaining ttl, or nil",
        complexity: "O(1)",
        args: &[Arg::required("election", ArgKind::Key)],
        run: get,
    },
    Spec {
        name: "leader.watch",
        arity: -2,
        flags: &["readonly", "blocking"],
        acl: &["@read", "@slow", "@blocking"],
        key_flags: &["RO", "access"],
        summary: "Waits until the leader changes and returns the new leader (nil) and term; nil when the timeout runs out",
        complexity: "O(1)",
        args: &[
            Arg::required("election", ArgKind::Key),
            Arg {
                name: "timeout_ms",
                kind: ArgKind::Integer,
                token: None,
                optional: true,
            },
        ],
        run: watch,
    },
];

/// The election at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    /// Empty when nobody leads.
    node: Bytes,
    /// 0 when nobody leads.
    term: i64,
    pttl: i64,
    /// The last term issued.
    last: i64,
}

async fn state(coord: &Coord, client_id: u64, keys: &ObjectKeys) -> Result<State, String> {
    let link = coord.link(client_id);
    let frame = exec::run(&GET, &link, keys, PARTS, &[]).await?;
    let parts = exec::elements(&frame);
    let int = |i: usize| parts.get(i).and_then(|f| reply::integer_payload(f));
    match (parts.first(), int(1), int(2), int(3)) {
        (Some(node), Some(term), Some(pttl), Some(last)) => Ok(State {
            node: Bytes::copy_from_slice(reply::string_payload(node).unwrap_or_default()),
            term,
            pttl,
            last,
        }),
        _ => Err("ERR unexpected reply from the election script".into()),
    }
}

fn node_id(arg: &Bytes) -> Result<Bytes, Bytes> {
    if arg.is_empty() {
        return Err(reply::error("ERR node_id must not be empty"));
    }
    Ok(arg.clone())
}

/// LEADER.CAMPAIGN's options after the ttl.
fn parse_options(args: &[Bytes]) -> Result<(Option<i64>, bool), String> {
    let (mut wait, mut keepalive) = (None, false);
    let mut i = 4;
    while i < args.len() {
        let word = &args[i];
        if word.eq_ignore_ascii_case(b"WAIT") && i + 1 < args.len() {
            wait = Some(args::timeout(&args[i + 1])?);
            i += 2;
        } else if word.eq_ignore_ascii_case(b"KEEPALIVE") {
            keepalive = true;
            i += 1;
        } else {
            return Err(args::SYNTAX.into());
        }
    }
    Ok((wait, keepalive))
}

async fn try_campaign(
    coord: &Coord,
    client_id: u64,
    keys: &ObjectKeys,
    node: &Bytes,
    ttl: i64,
) -> Result<Step<i64>, String> {
    let link = coord.link(client_id);
    let argv = [node.clone(), num(ttl), keys.part("wake")];
    let frame = exec::run(&CAMPAIGN, &link, keys, PARTS, &argv).await?;
    match exec::ints(&frame).as_deref() {
        Some(&[term, _]) if term > 0 => Ok(Step::Ready(term)),
        Some(&[_, pttl]) => Ok(Step::Later(pttl)),
        _ => Err("ERR unexpected reply from the election script".into()),
    }
}

fn campaign(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            proto,
        } = call;
        let node = match node_id(&args[2]) {
            Ok(n) => n,
            Err(reply) => return reply,
        };
        let ttl = match args::ttl(&args[3], "leader.campaign", coord.config().max_ttl_ms) {
            Ok(ttl) => ttl,
            Err(text) => return reply::error(&text),
        };
        let (wait, keepalive) = match parse_options(args) {
            Ok(o) => o,
            Err(text) => return reply::error(&text),
        };
        let keys = match exec::object(KIND, &args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let stats = &coord.stats().primitives;
        let id = client.client_id();
        let got = match wait {
            None => try_campaign(coord, id, &keys, &node, ttl)
                .await
                .map(|s| match s {
                    Step::Ready(term) => Some(term),
                    Step::Later(_) => None,
                }),
            Some(ms) => {
                let waits = stats.waits(KIND);
                exec::wait_turn(coord, &keys, ms, &waits, || {
                    try_campaign(coord, id, &keys, &node, ttl)
                })
                .await
            }
        };
        let mut r = ReplyBuf::new(proto);
        match got {
            Err(text) => return failure(&text),
            Ok(None) => {
                stats.count(KIND, if wait.is_some() { "timeout" } else { "busy" });
                r.null();
            }
            Ok(Some(term)) => {
                stats.count(KIND, "acquired");
                if keepalive {
                    let lease: LeaseId = (KIND, args[1].clone(), term);
                    let argv = vec![Bytes::new(), num(term), num(ttl)];
                    lease::keep(coord, client, &RENEWAL, keys, lease, ttl, argv);
                }
                r.integer(term);
            }
        }
        r.freeze()
    })
}

/// Resigns a KEEPALIVE leadership when its connection ends.
fn end_lease(
    coord: Arc<Coord>,
    keys: ObjectKeys,
    term: i64,
    client_id: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let link = coord.link(client_id);
        let argv = [Bytes::new(), num(term), keys.part("wake")];
        if let Ok(frame) = exec::run(&RESIGN, &link, &keys, PARTS, &argv).await {
            if reply::integer_payload(&frame) == Some(1) {
                coord.stats().primitives.count(KIND, "released");
            }
        }
    })
}

/// The reply to a RENEW/RESIGN script's code.
fn checked(coord: &Coord, code: Option<i64>, args: &[Bytes], term: i64) -> Bytes {
    let stats = &coord.stats().primitives;
    let (election, node) = (
        String::from_utf8_lossy(&args[1]),
        String::from_utf8_lossy(&args[2]),
    );
    match code {
        Some(1) => return reply::ok(),
        Some(0) => stats.count(KIND, "rejected"),
        Some(-2) => {
            stats.count(KIND, "rejected");
            return reply::error(&format!(
                "ERR term {term} was never issued for election '{election}'"
            ));
        }
        _ => return reply::error("ERR unexpected reply from the election script"),
    }
    reply::error(&format!(
        "NOTLEADER node '{node}' does not lead election '{election}' in term {term}"
    ))
}

/// The keys, node and term of RENEW/RESIGN, or the refusal (a KEEPALIVE
/// leadership this connection lost answers NOTLEADER).
fn held(
    coord: &Coord,
    client: &mut super::ClientCoord,
    args: &[Bytes],
) -> Result<(ObjectKeys, Bytes, i64, LeaseId), Bytes> {
    let node = node_id(&args[2])?;
    let term = args::token(&args[3]).map_err(|t| reply::error(&t))?;
    let keys = exec::object(KIND, &args[1])?;
    let lease: LeaseId = (KIND, args[1].clone(), term);
    if client.take_lost(&lease) {
        coord.stats().primitives.count(KIND, "rejected");
        return Err(reply::error(&format!(
            "NOTLEADER node '{}' does not lead election '{}' in term {term}: its KEEPALIVE lease was lost",
            String::from_utf8_lossy(&node),
            String::from_utf8_lossy(&args[1])
        )));
    }
    Ok((keys, node, term, lease))
}

fn renew(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            ..
        } = call;
        let ttl = match args::ttl(&args[4], "leader.renew", coord.config().max_ttl_ms) {
            Ok(ttl) => ttl,
            Err(text) => return reply::error(&text),
        };
        let (keys, node, term, lease) = match held(coord, client, args) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let link = coord.link(client.client_id());
        let frame = match exec::run(&RENEW, &link, &keys, PARTS, &[node, num(term), num(ttl)]).await
        {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        let code = reply::integer_payload(&frame);
        if code == Some(1) {
            coord.stats().primitives.count(KIND, "renewed");
            // A KEEPALIVE leadership goes on renewing with the new ttl.
            if client.forget(&lease) {
                let argv = vec![Bytes::new(), num(term), num(ttl)];
                lease::keep(coord, client, &RENEWAL, keys, lease, ttl, argv);
            }
        }
        checked(coord, code, args, term)
    })
}

fn resign(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            ..
        } = call;
        let (keys, node, term, lease) = match held(coord, client, args) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        client.forget(&lease);
        let link = coord.link(client.client_id());
        let argv = [node, num(term), keys.part("wake")];
        let frame = match exec::run(&RESIGN, &link, &keys, PARTS, &argv).await {
            Ok(frame) => frame,
            Err(text) => return failure(&text),
        };
        let code = reply::integer_payload(&frame);
        if code == Some(1) {
            coord.stats().primitives.count(KIND, "released");
        }
        checked(coord, code, args, term)
    })
}

/// `leader <node> term <n> ttl_ms <ms>` (a map in RESP3).
fn describe(s: &State, proto: crate::protocol::Protocol) -> Bytes {
    let mut r = ReplyBuf::new(proto);
    r.map(3);
    r.bulk(b"leader");
    if s.node.is_empty() {
        r.null();
    } else {
        r.bulk(&s.node);
    }
    r.bulk(b"term")
        .integer(if s.term > 0 { s.term } else { s.last });
    r.bulk(b"ttl_ms").integer(s.pttl);
    r.freeze()
}

fn get(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let keys = match exec::object(KIND, &call.args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        match state(call.coord, call.client.client_id(), &keys).await {
            Ok(s) if s.term > 0 => describe(&s, call.proto),
            Ok(_) => {
                let mut r = ReplyBuf::new(call.proto);
                r.null();
                r.freeze()
            }
            Err(text) => failure(&text),
        }
    })
}

fn watch(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            proto,
        } = call;
        if args.len() > 3 {
            return reply::error(args::SYNTAX);
        }
        let timeout = match args.get(2).map(|a| args::timeout(a)).transpose() {
            Ok(ms) => ms.unwrap_or(0),
            Err(text) => return reply::error(&text),
        };
        let keys = match exec::object(KIND, &args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let id = client.client_id();
        let first = match state(coord, id, &keys).await {
            Ok(s) => s,
            Err(text) => return failure(&text),
        };
        let stats = &coord.stats().primitives;
        let waits = stats.waits(KIND);
        let changed = exec::wait_turn(coord, &keys, timeout, &waits, || async {
            let now = state(coord, id, &keys).await?;
            Ok(if now.node != first.node || now.term != first.term {
                Step::Ready(now)
            } else {
                Step::Later(now.pttl)
            })
        })
        .await;
        match changed {
            Ok(Some(s)) => describe(&s, proto),
            Ok(None) => {
                stats.count(KIND, "timeout");
                let mut r = ReplyBuf::new(proto);
                r.null();
                r.freeze()
            }
            Err(text) => failure(&text),
        }
    })
}
