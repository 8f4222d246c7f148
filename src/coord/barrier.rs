//! Barriers: BARRIER.WAIT, BARRIER.RESET.
//!
//! A barrier is a hash `strata:barrier:{name}:` (`done`: generations
//! completed, never expires; `arrived`: callers of the current one;
//! `parties`; `broken`: the last generation a reset broke). A caller
//! arrives (one script) and learns its generation, `done + 1`; the last
//! of `parties` trips it: `done` becomes that generation and one PUBLISH
//! wakes every strata's waiters, which return when they see `done` at
//! their generation: all with the same generation, none before the last
//! arrived. A caller whose timeout runs out leaves its generation (one
//! script: unless it completed meanwhile, in which case it passed), so a
//! timed-out caller is not counted as arrived. Reusable: each trip starts
//! the next generation empty.

use std::sync::LazyLock;

use super::exec::{self, failure, num, Step};
use super::keys::ObjectKeys;
use super::registry::{Arg, ArgKind, Call, Reply, Spec};
use super::{args, Coord};
use crate::protocol::reply::{self, ReplyBuf};
use crate::tier::behind::script::Script;

static ARRIVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_barrier_arrive.lua")));
static STATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_barrier_state.lua")));
static LEAVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_barrier_leave.lua")));
static RESET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_barrier_reset.lua")));

const KIND: &str = "barrier";
const PARTS: &[&str] = &[""];

/// The barrier commands.
pub static SPECS: &[Spec] = &[
    Spec {
        name: "barrier.wait",
        arity: 4,
        flags: &["write", "denyoom", "blocking"],
        acl: &["@write", "@slow", "@blocking"],
        key_flags: &["RW", "update"],
        summary: "Waits until parties callers have arrived and returns their generation; nil when the timeout runs out",
        complexity: "O(1), and O(1) Redis operations to release any number of parties",
        args: &[
            Arg::required("name", ArgKind::Key),
            Arg::required("parties", ArgKind::Integer),
            Arg::required("timeout_ms", ArgKind::Integer),
        ],
        run: wait,
    },
    Spec {
        name: "barrier.reset",
        arity: 2,
        flags: &["write", "fast"],
        acl: &["@write", "@fast"],
        key_flags: &["RW", "update"],
        summary: "Breaks a barrier's current generation (its waiters answer -BROKEN) and returns how many waited",
        complexity: "O(1)",
        args: &[Arg::required("name", ArgKind::Key)],
        run: reset,
    },
];

/// `-BROKEN …` for the waiters of a generation BARRIER.RESET broke.
fn broken(name: &[u8], generation: i64) -> bytes::Bytes {
    reply::error(&format!(
        "BROKEN barrier '{}' generation {generation} was reset",
        String::from_utf8_lossy(name)
    ))
}

async fn look(coord: &Coord, client_id: u64, keys: &ObjectKeys) -> Result<(i64, i64), String> {
    let link = coord.link(client_id);
    let frame = exec::run(&STATE, &link, keys, PARTS, &[]).await?;
    match exec::ints(&frame).as_deref() {
        Some(&[done, broken]) => Ok((done, broken)),
        _ => Err("ERR unexpected reply from the barrier script".into()),
    }
}

fn wait(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            proto,
        } = call;
        let parties = match args::token(&args[2]) {
            Ok(n) => n,
            Err(text) => return reply::error(&text),
        };
        let timeout = match args::timeout(&args[3]) {
            Ok(ms) => ms,
            Err(text) => return reply::error(&text),
        };
        let keys = match exec::object(KIND, &args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let id = client.client_id();
        let stats = &coord.stats().primitives;
        let link = coord.link(id);
        let argv = [num(parties), keys.part("wake")];
        let arrived = match exec::run(&ARRIVE, &link, &keys, PARTS, &argv).await {
            Ok(frame) => exec::ints(&frame),
            Err(text) => return failure(&text),
        };
        let generation = match arrived.as_deref() {
            Some(&[-1, current]) => {
                return reply::error(&format!(
                    "ERR barrier '{}' is waiting for {current} parties, not {parties}",
                    String::from_utf8_lossy(&args[1])
                ))
            }
            Some(&[generation, 1]) => {
                stats.count(KIND, "tripped");
                let mut r = ReplyBuf::new(proto);
                r.integer(generation);
                return r.freeze();
            }
            Some(&[generation, _]) => generation,
            _ => return reply::error("ERR unexpected reply from the barrier script"),
        };
        // A caller that goes away while waiting (its connection closed:
        // this future is dropped) leaves its generation too.
        let mut guard = LeaveOnDrop {
            coord: coord.clone(),
            keys: keys.clone(),
            generation,
            client_id: id,
            armed: true,
        };
        let waits = stats.waits(KIND);
        let passed = exec::wait_turn(coord, &keys, timeout, &waits, || async {
            let (done, broken) = look(coord, id, &keys).await?;
            Ok(if done >= generation {
                Step::Ready(broken == generation)
            } else {
                Step::Later(0)
            })
        })
        .await;
        guard.armed = false;
        let passed = match passed {
            Ok(None) => {
                // Leave the generation, unless it completed meanwhile.
                match exec::run(&LEAVE, &link, &keys, PARTS, &[num(generation)]).await {
                    Ok(frame) if reply::integer_payload(&frame) == Some(0) => {
                        look(coord, id, &keys)
                            .await
                            .map(|(_, b)| Some(b == generation))
                    }
                    Ok(_) => Ok(None),
                    Err(text) => Err(text),
                }
            }
            other => other,
        };
        let mut r = ReplyBuf::new(proto);
        match passed {
            Ok(Some(false)) => {
                r.integer(generation);
            }
            Ok(Some(true)) => return broken(&args[1], generation),
            Ok(None) => {
                stats.count(KIND, "timeout");
                r.null();
            }
            Err(text) => return failure(&text),
        }
        r.freeze()
    })
}

/// Leaves the generation when a waiting BARRIER.WAIT is dropped (the
/// client hung up): a caller gone is not counted as arrived.
struct LeaveOnDrop {
    coord: std::sync::Arc<Coord>,
    keys: ObjectKeys,
    generation: i64,
    client_id: u64,
    armed: bool,
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (coord, keys, generation, client_id) = (
            self.coord.clone(),
            self.keys.clone(),
            self.generation,
            self.client_id,
        );
        runtime.spawn(async move {
            let link = coord.link(client_id);
            let _ = exec::run(&LEAVE, &link, &keys, PARTS, &[num(generation)]).await;
        });
    }
}

fn reset(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let keys = match exec::object(KIND, &call.args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let link = call.coord.link(call.client.client_id());
        match exec::run(&RESET, &link, &keys, PARTS, &[keys.part("wake")]).await {
            Ok(frame) => {
                call.coord.stats().primitives.count(KIND, "reset");
                frame
            }
            Err(text) => failure(&text),
        }
    })
}
