//! Backend replies classified once into what the router must do.
//!
//! A cluster node answers a request it does not own with an error whose
//! first word says what to do: `-MOVED <slot> <host:port>` (the slot lives
//! there now: update the map, retry there), `-ASK <slot> <host:port>` (this
//! one request goes there, preceded by `ASKING`; the map stays),
//! `-TRYAGAIN …` (a multi-key request hit a slot mid-migration: retry after
//! a pause) and `-CLUSTERDOWN …` (the cluster cannot serve: retry after a
//! pause, then give up). [`classify`] reads that once per reply and the
//! router acts on the [`Redirect`], never on error text.
//!
//! The check is one byte for a non-error reply, and borrows from the frame
//! for a redirect: nothing allocates.

use std::time::Duration;

use crate::command::slot::SLOT_COUNT;

use super::slots::{host_of, join_addr, SlotMap};

/// How many redirects one request may follow before the client gets an
/// error. Redis Cluster needs at most two in a row (MOVED, then ASK during
/// a migration); more means the map is churning or nodes disagree.
pub const MAX_REDIRECTS: u8 = 5;

/// What a reply asks the router to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect<'a> {
    /// The slot moved for good: refresh the map and resend to `addr`.
    Moved {
        /// The slot.
        slot: u16,
        /// `host:port` as the node sent it; the host may be empty (see
        /// [`Redirect::target`]).
        addr: &'a str,
    },
    /// This request only: send `ASKING`, then the request, to `addr`.
    Ask {
        /// The slot.
        slot: u16,
        /// As for `Moved`.
        addr: &'a str,
    },
    /// Multi-key request during a slot migration: retry after a pause.
    TryAgain,
    /// The cluster is down (or the slot unserved): retry after a pause.
    ClusterDown,
    /// Anything else, errors included: the reply goes to the client.
    Other,
}

/// Classifies one complete reply frame (RESP2 `-` or RESP3 `!` errors).
#[inline]
pub fn classify(frame: &[u8]) -> Redirect<'_> {
    match frame.first() {
        Some(b'-') | Some(b'!') => classify_error(frame),
        _ => Redirect::Other,
    }
}

#[cold]
fn classify_error(frame: &[u8]) -> Redirect<'_> {
    let Some(text) = error_text(frame) else {
        return Redirect::Other;
    };
    let (code, rest) = match memchr::memchr(b' ', text) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &b""[..]),
    };
    match code {
        b"MOVED" | b"ASK" => {
            let Some((slot, addr)) = slot_and_addr(rest) else {
                return Redirect::Other;
            };
            if code == b"MOVED" {
                Redirect::Moved { slot, addr }
            } else {
                Redirect::Ask { slot, addr }
            }
        }
        b"TRYAGAIN" => Redirect::TryAgain,
        b"CLUSTERDOWN" => Redirect::ClusterDown,
        _ => Redirect::Other,
    }
}

/// The text of an error frame without its type byte and CRLF.
fn error_text(frame: &[u8]) -> Option<&[u8]> {
    match frame.first()? {
        b'-' => {
            let end = memchr::memchr(b'\r', frame)?;
            frame.get(1..end)
        }
        b'!' => {
            let cr = memchr::memchr(b'\r', frame)?;
            let len: usize = std::str::from_utf8(frame.get(1..cr)?).ok()?.parse().ok()?;
            frame.get(cr + 2..cr + 2 + len)
        }
        _ => None,
    }
}

/// `"3999 127.0.0.1:6381"` → (3999, "127.0.0.1:6381").
fn slot_and_addr(rest: &[u8]) -> Option<(u16, &str)> {
    let space = memchr::memchr(b' ', rest)?;
    let slot: u16 = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
    if slot >= SLOT_COUNT {
        return None;
    }
    let addr = std::str::from_utf8(&rest[space + 1..]).ok()?;
    let addr = addr.trim_end();
    // A port is required; the host may be empty (`:6381`).
    let (_, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    Some((slot, addr))
}

impl Redirect<'_> {
    /// The full `host:port` to retry at. A node with no known endpoint
    /// sends `-MOVED 3999 :6381`: the host is then the host of the node
    /// that sent the redirect (`replying_node`, `host:port`). `None` when
    /// this is not a redirect.
    pub fn target(&self, replying_node: &str) -> Option<String> {
        let (Redirect::Moved { addr, .. } | Redirect::Ask { addr, .. }) = self else {
            return None;
        };
        // Redis prints `ip:port` without brackets, even for IPv6.
        let (host, port) = addr.rsplit_once(':')?;
        let port = port.parse::<u16>().ok()?;
        let host = if host.is_empty() {
            host_of(replying_node)
        } else {
            host
        };
        Some(join_addr(host, port))
    }

    /// The slot of a redirect.
    pub fn slot(&self) -> Option<u16> {
        match self {
            Redirect::Moved { slot, .. } | Redirect::Ask { slot, .. } => Some(*slot),
            _ => None,
        }
    }

    /// True for TRYAGAIN and CLUSTERDOWN: the same request, after a pause.
    pub fn is_retry_later(&self) -> bool {
        matches!(self, Redirect::TryAgain | Redirect::ClusterDown)
    }
}

/// Why a redirect is not followed. `Display` is the error text the client
/// sees after `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// The target is not a node of the current map (nor, the caller having
    /// refreshed it, of the next one): a node that strata was never told
    /// about is not trusted.
    #[error("ERR cluster redirect to unknown node {addr} for slot {slot}")]
    UnknownTarget {
        /// The redirect's target.
        addr: String,
        /// The slot.
        slot: u16,
    },
    /// More than [`MAX_REDIRECTS`] redirects for one request.
    #[error("ERR cluster redirected slot {slot} {hops} times (last to {addr}); the cluster is reconfiguring, try again")]
    TooManyRedirects {
        /// The slot.
        slot: u16,
        /// How many were followed.
        hops: u8,
        /// The last target.
        addr: String,
    },
}

impl RedirectError {
    /// The error as a RESP error reply.
    pub fn to_reply(&self) -> bytes::Bytes {
        crate::protocol::reply::error(&self.to_string())
    }
}

/// Checks that `addr` (a resolved target, see [`Redirect::target`]) is a
/// node of `map`. The router calls it with the current map, and after a
/// refresh with the new one before giving up.
pub fn check_target(map: &SlotMap, addr: &str, slot: u16) -> Result<(), RedirectError> {
    if map.contains_node(addr) {
        Ok(())
    } else {
        Err(RedirectError::UnknownTarget {
            addr: addr.to_string(),
            slot,
        })
    }
}

/// Counts the redirects one request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hops {
    count: u8,
    limit: u8,
}

impl Default for Hops {
    fn default() -> Self {
        Hops::new()
    }
}

impl Hops {
    /// No redirect yet; at most [`MAX_REDIRECTS`].
    pub const fn new() -> Hops {
        Hops::with_limit(MAX_REDIRECTS)
    }

    /// No redirect yet; at most `limit` (`backend.cluster.max_redirects`).
    pub const fn with_limit(limit: u8) -> Hops {
        Hops { count: 0, limit }
    }

    /// Records one more redirect to `addr` for `slot`; an error once the
    /// request has been redirected `limit` times already.
    pub fn follow(&mut self, slot: u16, addr: &str) -> Result<(), RedirectError> {
        if self.count >= self.limit {
            return Err(RedirectError::TooManyRedirects {
                slot,
                hops: self.count,
                addr: addr.to_string(),
            });
        }
        self.count += 1;
        Ok(())
    }

    /// Redirects followed so far.
    pub fn count(&self) -> u8 {
        self.count
    }
}

/// The pause before retry number `attempt` (0-based) after TRYAGAIN or
/// CLUSTERDOWN: 10 ms doubling, at most 500 ms. A slot migration's
/// TRYAGAIN window is short (one MIGRATE batch); a failover's CLUSTERDOWN
/// lasts about `cluster-node-timeout`, so the caller's limit on attempts
/// (configured) decides how long a request may wait in total.
pub fn retry_backoff(attempt: u32) -> Duration {
    let ms = 10u64.saturating_mul(1u64 << attempt.min(6));
    Duration::from_millis(ms.min(500))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn real_replies() {
        // Captured from Redis 7.0.15 (see slots.rs for the cluster).
        assert_eq!(
            classify(b"-MOVED 12182 127.0.0.1:7203\r\n"),
            Redirect::Moved {
                slot: 12182,
                addr: "127.0.0.1:7203"
            }
        );
        assert_eq!(
            classify(b"-ASK 5061 127.0.0.1:7202\r\n"),
            Redirect::Ask {
                slot: 5061,
                addr: "127.0.0.1:7202"
            }
        );
        assert_eq!(
            classify(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
            Redirect::TryAgain
        );
        assert_eq!(
            classify(b"-CLUSTERDOWN Hash slot not served\r\n"),
            Redirect::ClusterDown
        );
        assert_eq!(
            classify(b"-CLUSTERDOWN The cluster is down\r\n"),
            Redirect::ClusterDown
        );
        assert_eq!(
            classify(b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"),
            Redirect::Other
        );
    }

    #[test]
    fn non_errors_and_lookalikes() {
        for frame in [
            &b"+OK\r\n"[..],
            b"$5\r\nMOVED\r\n",
            b"+MOVED 1 a:1\r\n",
            b":1\r\n",
            b"*1\r\n-MOVED 1 a:1\r\n",
            b"-ERR MOVED 1 a:1\r\n",
            b"-MOVED\r\n",
            b"-MOVED 16384 a:1\r\n",
            b"-MOVED x a:1\r\n",
            b"-MOVED 1 nohost\r\n",
            b"-MOVED 1 a:port\r\n",
            b"-MOVEDX 1 a:1\r\n",
            b"-",
            b"",
            b"!3\r\nASK\r\n",
            b"!99\r\nASK 1 a:1\r\n",
        ] {
            assert_eq!(classify(frame), Redirect::Other, "{frame:?}");
        }
    }

    #[test]
    fn resp3_blob_errors() {
        assert_eq!(
            classify(b"!21\r\nMOVED 3999 10.0.0.1:1\r\n"),
            Redirect::Moved {
                slot: 3999,
                addr: "10.0.0.1:1"
            }
        );
        assert_eq!(classify(b"!8\r\nTRYAGAIN\r\n"), Redirect::TryAgain);
    }

    #[test]
    fn targets() {
        let r = classify(b"-MOVED 3999 :6381\r\n");
        assert_eq!(r.slot(), Some(3999));
        assert_eq!(r.target("10.1.2.3:7000").as_deref(), Some("10.1.2.3:6381"));
        assert_eq!(r.target("[::1]:7000").as_deref(), Some("[::1]:6381"));
        let r = classify(b"-ASK 1 host.example:7002\r\n");
        assert_eq!(r.target("x:1").as_deref(), Some("host.example:7002"));
        assert_eq!(Redirect::TryAgain.target("x:1"), None);
        assert!(Redirect::TryAgain.is_retry_later());
        assert!(!r.is_retry_later());
        // IPv6 targets as Redis prints them (no brackets).
        let r = classify(b"-MOVED 7 ::1:7002\r\n");
        assert_eq!(r.target("x:1").as_deref(), Some("[::1]:7002"));
    }

    #[test]
    fn target_check_and_hops() {
        let map =
            SlotMap::from_cluster_slots(include_bytes!("testdata/slots_resp2.resp"), "127.0.0.1")
                .unwrap();
        assert!(check_target(&map, "127.0.0.1:7203", 1).is_ok());
        assert!(check_target(&map, "127.0.0.1:7205", 1).is_ok());
        let err = check_target(&map, "127.0.0.1:9", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ERR cluster redirect to unknown node 127.0.0.1:9 for slot 1"
        );
        assert!(err.to_reply().starts_with(b"-ERR cluster redirect"));
        let mut hops = Hops::new();
        for _ in 0..MAX_REDIRECTS {
            hops.follow(1, "a:1").unwrap();
        }
        assert_eq!(hops.count(), MAX_REDIRECTS);
        assert!(matches!(
            hops.follow(1, "a:1"),
            Err(RedirectError::TooManyRedirects { hops: 5, .. })
        ));
        // `backend.cluster.max_redirects` sets the cap.
        let mut two = Hops::with_limit(2);
        two.follow(1, "a:1").unwrap();
        two.follow(1, "a:1").unwrap();
        assert!(matches!(
            two.follow(1, "a:1"),
            Err(RedirectError::TooManyRedirects { hops: 2, .. })
        ));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(retry_backoff(0), Duration::from_millis(10));
        assert_eq!(retry_backoff(1), Duration::from_millis(20));
        assert_eq!(retry_backoff(5), Duration::from_millis(320));
        assert_eq!(retry_backoff(6), Duration::from_millis(500));
        assert_eq!(retry_backoff(u32::MAX), Duration::from_millis(500));
    }
}
