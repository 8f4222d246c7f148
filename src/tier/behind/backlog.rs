//! What the outbox holds now: its entries (XLEN), the bytes its bound
//! counts (the meta hash's `bytes`), and the age of its oldest entry (the
//! first stream id's time part: entries leave the stream only once
//! committed in Postgres, so the oldest one is the oldest change not yet
//! there). One read, shared by the drain's gauges and `PROXY TIER STATS`.

use bytes::Bytes;

use super::Behind;
use crate::protocol::reply::{aggregate_elements, string_payload};
use crate::tier::redis::{arg, bulk, int};

/// The outbox at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Changes in the outbox.
    pub entries: i64,
    /// Bytes the outbox bound counts.
    pub bytes: i64,
    /// Capture time (Redis's clock, Unix ms) of the oldest change not yet
    /// in Postgres; `None` when the outbox is empty.
    pub oldest_ms: Option<i64>,
}

impl Backlog {
    /// How long the oldest change has waited, ms (0 when none waits).
    pub fn oldest_age_ms(&self, now_ms: i64) -> i64 {
        self.oldest_ms.map_or(0, |t| (now_ms - t).max(0))
    }
}

/// The commands that read it, each with the key it routes by.
pub fn commands(b: &Behind) -> [(Bytes, Vec<Bytes>); 3] {
    [
        (
            b.meta.clone(),
            vec![arg("HGET"), b.meta.clone(), arg("bytes")],
        ),
        (b.stream.clone(), vec![arg("XLEN"), b.stream.clone()]),
        (
            b.stream.clone(),
            vec![
                arg("XRANGE"),
                b.stream.clone(),
                arg("-"),
                arg("+"),
                arg("COUNT"),
                arg("1"),
            ],
        ),
    ]
}

/// The replies to [`commands`], read.
pub fn parse(replies: &[Bytes]) -> Backlog {
    let bytes = replies
        .first()
        .and_then(bulk)
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<i64>().ok())
        .unwrap_or(0);
    Backlog {
        entries: replies.get(1).and_then(|r| int(r)).unwrap_or(0),
        bytes,
        oldest_ms: replies.get(2).and_then(|r| oldest_id_ms(r)),
    }
}

/// The time part of the first entry's id in an XRANGE reply.
pub(super) fn oldest_id_ms(frame: &[u8]) -> Option<i64> {
    let entry = aggregate_elements(frame)?.into_iter().next()?;
    let entry = &frame[entry];
    let id = aggregate_elements(entry)?.into_iter().next()?;
    let id = string_payload(&entry[id])?;
    let ms = id.split(|b| *b == b'-').next()?;
    std::str::from_utf8(ms).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_replies() {
        let r = [
            Bytes::from_static(b"$3\r\n120\r\n"),
            Bytes::from_static(b":2\r\n"),
            Bytes::from_static(
                b"*1\r\n*2\r\n$15\r\n1700000000123-4\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n",
            ),
        ];
        let b = parse(&r);
        assert_eq!(
            b,
            Backlog {
                entries: 2,
                bytes: 120,
                oldest_ms: Some(1_700_000_000_123)
            }
        );
        assert_eq!(b.oldest_age_ms(1_700_000_000_200), 77);
        let empty = parse(&[
            Bytes::from_static(b"$-1\r\n"),
            Bytes::from_static(b":0\r\n"),
            Bytes::from_static(b"*0\r\n"),
        ]);
        assert_eq!(empty, Backlog::default());
        assert_eq!(empty.oldest_age_ms(5), 0);
    }
}
