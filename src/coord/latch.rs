//! Latches (count-down latches): LATCH.INIT, LATCH.COUNTDOWN, LATCH.WAIT,
//! LATCH.COUNT.
//!
//! A latch is a counter `strata:latch:{name}:` and a generation
//! `strata:latch:{name}:gen` (how many times it opened; never expires).
//! The countdown that reaches 0 deletes the counter, adds one to the
//! generation and PUBLISHes once; a latch that does not exist is open
//! (as Redisson's and Java's: waiting on it returns at once). LATCH.WAIT
//! remembers the generation it saw first, so a waiter is released by the
//! opening it waited for even if someone starts the latch again before
//! the waiter looks (the waiters of one strata look one after the other:
//! `exec::wait_turn`).

use std::sync::LazyLock;

use super::exec::{self, failure, num, Step};
use super::keys::ObjectKeys;
use super::registry::{Arg, ArgKind, Call, Reply, Spec};
use super::{args, Coord};
use crate::protocol::reply::{self, ReplyBuf};
use crate::tier::behind::script::Script;

static INIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_latch_init.lua")));
static COUNTDOWN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_latch_countdown.lua")));
static STATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/coord_latch_state.lua")));

const KIND: &str = "latch";
const PARTS: &[&str] = &["", "gen"];

/// The latch commands.
pub static SPECS: &[Spec] = &[
    Spec {
        name: "latch.init",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        acl: &["@write", "@fast"],
        key_flags: &["RW", "insert"],
        summary: "Starts a latch counting down from count (1), unless it is counting already (0)",
        complexity: "O(1)",
        args: &[
            Arg::required("name", ArgKind::Key),
            Arg::required("count", ArgKind::Integer),
        ],
        run: init,
    },
    Spec {
        name: "latch.countdown",
        arity: 2,
        flags: &["write", "fast"],
        acl: &["@write", "@fast"],
        key_flags: &["RW", "update"],
        summary: "Counts a latch down by one and returns the count left; at 0 its waiters return",
        complexity: "O(1), and O(1) Redis operations to wake any number of waiters",
        args: &[Arg::required("name", ArgKind::Key)],
        run: countdown,
    },
    Spec {
        name: "latch.wait",
        arity: 3,
        flags: &["readonly", "blocking"],
        acl: &["@read", "@slow", "@blocking"],
        key_flags: &["RO", "access"],
        summary: "Waits until a latch's count reaches 0; nil when the timeout runs out",
        complexity: "O(1)",
        args: &[
            Arg::required("name", ArgKind::Key),
            Arg::required("timeout_ms", ArgKind::Integer),
        ],
        run: wait,
    },
    Spec {
        name: "latch.count",
        arity: 2,
        flags: &["readonly", "fast"],
        acl: &["@read", "@fast"],
        key_flags: &["RO", "access"],
        summary: "A latch's count (0 when open)",
        complexity: "O(1)",
        args: &[Arg::required("name", ArgKind::Key)],
        run: count,
    },
];

/// The count and the generation, at one instant.
async fn state(coord: &Coord, client_id: u64, keys: &ObjectKeys) -> Result<(i64, i64), String> {
    let link = coord.link(client_id);
    let frame = exec::run(&STATE, &link, keys, PARTS, &[]).await?;
    match exec::ints(&frame).as_deref() {
        Some(&[count, generation]) => Ok((count, generation)),
        _ => Err("ERR unexpected reply from the latch script".into()),
    }
}

fn init(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let count = match args::token(&call.args[2]) {
            Ok(n) => n,
            Err(text) => return reply::error(&text),
        };
        let keys = match exec::object(KIND, &call.args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let link = call.coord.link(call.client.client_id());
        match exec::run(&INIT, &link, &keys, PARTS, &[num(count)]).await {
            Ok(frame) => {
                call.coord.stats().primitives.count(KIND, "init");
                frame
            }
            Err(text) => failure(&text),
        }
    })
}

fn countdown(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let keys = match exec::object(KIND, &call.args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let link = call.coord.link(call.client.client_id());
        match exec::run(&COUNTDOWN, &link, &keys, PARTS, &[keys.part("wake")]).await {
            Ok(frame) => {
                call.coord.stats().primitives.count(KIND, "countdown");
                frame
            }
            Err(text) => failure(&text),
        }
    })
}

fn count(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let keys = match exec::object(KIND, &call.args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        match state(call.coord, call.client.client_id(), &keys).await {
            Ok((n, _)) => {
                let mut r = ReplyBuf::new(call.proto);
                r.integer(n);
                r.freeze()
            }
            Err(text) => failure(&text),
        }
    })
}

fn wait(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            coord,
            client,
            args,
            proto,
        } = call;
        let timeout = match args::timeout(&args[2]) {
            Ok(ms) => ms,
            Err(text) => return reply::error(&text),
        };
        let keys = match exec::object(KIND, &args[1]) {
            Ok(keys) => keys,
            Err(reply) => return reply,
        };
        let id = client.client_id();
        let stats = &coord.stats().primitives;
        let first = match state(coord, id, &keys).await {
            Ok(s) => s,
            Err(text) => return failure(&text),
        };
        let opened = if first.0 == 0 {
            Ok(Some(()))
        } else {
            let waits = stats.waits(KIND);
            exec::wait_turn(coord, &keys, timeout, &waits, || async {
                let (n, generation) = state(coord, id, &keys).await?;
                Ok(if n == 0 || generation != first.1 {
                    Step::Ready(())
                } else {
                    Step::Later(0)
                })
            })
            .await
        };
        match opened {
            Ok(Some(())) => reply::ok(),
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_script_key_is_in_the_names_slot() {
        let keys = super::ObjectKeys::new(super::KIND, b"l").expect("keys");
        for p in super::PARTS {
            assert_eq!(
                crate::command::slot::hash_slot(&keys.part(p)),
                crate::command::slot::hash_slot(b"l")
            );
        }
    }
}
