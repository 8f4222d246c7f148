//! What every primitive after locks shares: running one of its scripts on
//! its object's slot, reading the scripts' replies, a backend failure as
//! an error reply, and waiting in this strata's FIFO queue of the object
//! (`wake.rs`) without polling Redis.
//!
//! lock.rs has the same helpers privately; they are repeated here rather
//! than moved, so that the lock's file stays as it is while it grows other
//! backends.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::keys::ObjectKeys;
use super::Coord;
use crate::protocol::reply;
use crate::tier::behind::script::Script;
use crate::tier::redis::{error_text, RedisLink};

/// How long the head waiter sleeps before looking again when nothing it
/// was told bounds the wait (no ttl in sight): the fallback for a lost
/// wake message, not a poll (one waiter per object and strata does it).
pub const FALLBACK_MS: i64 = 1000;

/// Runs `script` on the slot of `keys` with the keys `parts` (`""` is the
/// object's main key) and `argv`; Redis's error replies become `Err`.
pub async fn run(
    script: &Script,
    link: &RedisLink<'_>,
    keys: &ObjectKeys,
    parts: &[&str],
    argv: &[Bytes],
) -> Result<Bytes, String> {
    let main = keys.part("");
    let names: Vec<Bytes> = parts.iter().map(|p| keys.part(p)).collect();
    let frame = script.run(link, &main, &names, argv).await?;
    match error_text(&frame) {
        Some(text) => Err(text),
        None => Ok(frame),
    }
}

/// The integers of a `*n` reply of integers.
pub fn ints(frame: &Bytes) -> Option<Vec<i64>> {
    reply::aggregate_elements(frame)?
        .into_iter()
        .map(|r| reply::integer_payload(&frame[r]))
        .collect()
}

/// The elements of a `*n` reply, as frames.
pub fn elements(frame: &Bytes) -> Vec<Bytes> {
    reply::aggregate_elements(frame)
        .unwrap_or_default()
        .into_iter()
        .map(|r| frame.slice(r))
        .collect()
}

/// A backend failure as an error reply: Redis's own error as it is (its
/// code first), a connection failure as `ERR …`.
pub fn failure(text: &str) -> Bytes {
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

/// An integer as a script argument.
pub fn num(n: i64) -> Bytes {
    Bytes::from(n.to_string())
}

/// The object's keys, or the error reply naming what is wrong with it.
pub fn object(kind: &str, name: &[u8]) -> Result<ObjectKeys, Bytes> {
    ObjectKeys::new(kind, name).map_err(|t| reply::error(&t))
}

/// One look at the object by the head waiter.
#[derive(Debug)]
pub enum Step<T> {
    /// Done: the waiter's answer.
    Ready(T),
    /// Not yet: wait for a wake message, or this many ms at most (the
    /// time after which the state changes by itself, e.g. a holder's ttl;
    /// ≤ 0: [`FALLBACK_MS`]).
    Later(i64),
}

/// Waits in this strata's FIFO queue of `keys` (its wake channel) until
/// `look`, called by the head waiter first and then after each wake-up,
/// says `Ready`; `Ok(None)` when `wait_ms` runs out first (0: no limit).
/// Only the head talks to Redis: a release wakes it (one PUBLISH whatever
/// the number of waiters), and each waiter taking the head's place looks
/// once at once, so a state that frees several waiters frees them one
/// after the other without a message each.
pub async fn wait_turn<T, F, Fut>(
    coord: &Arc<Coord>,
    keys: &ObjectKeys,
    wait_ms: i64,
    waits: &prometheus_client::metrics::histogram::Histogram,
    mut look: F,
) -> Result<Option<T>, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Step<T>, String>>,
{
    let started = Instant::now();
    let deadline = (wait_ms > 0).then(|| started + Duration::from_millis(wait_ms as u64));
    let Some(waiter) = coord.wake().enter(keys.part("wake")) else {
        return Err(format!(
            "ERR too many waiters in this strata (coord.max_waiters = {})",
            coord.config().max_waiters
        ));
    };
    let outcome = async {
        let _turn = match deadline {
            Some(d) => match tokio::time::timeout_at(d, waiter.queue.turnstile.lock()).await {
                Ok(turn) => turn,
                Err(_) => return Ok(None),
            },
            None => waiter.queue.turnstile.lock().await,
        };
        loop {
            let later = match look().await? {
                Step::Ready(v) => return Ok(Some(v)),
                Step::Later(ms) => ms,
            };
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            let fallback_ms = if later > 0 { later + 1 } else { FALLBACK_MS };
            let fallback = now + Duration::from_millis(fallback_ms as u64);
            let until = deadline.map_or(fallback, |d| d.min(fallback));
            tokio::select! {
                () = waiter.queue.notify.notified() => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
    .await;
    waits.observe(started.elapsed().as_secs_f64());
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_redis_codes() {
        assert_eq!(&failure("WRONGTYPE x")[..], b"-WRONGTYPE x\r\n");
        assert_eq!(&failure("backend down")[..], b"-ERR backend down\r\n");
    }

    #[test]
    fn reads_integer_arrays() {
        let f = Bytes::from_static(b"*2\r\n:5\r\n:-1\r\n");
        assert_eq!(ints(&f), Some(vec![5, -1]));
        assert_eq!(elements(&f).len(), 2);
        assert_eq!(ints(&Bytes::from_static(b"$1\r\nx\r\n")), None);
    }
}
