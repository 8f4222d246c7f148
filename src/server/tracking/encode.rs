//! Invalidation frames as the target is to get them, and the listener's
//! backend id turned back into strata's target id in replies.
//!
//! Redis (tracking.c `sendTrackingMessage`) sends a redirected
//! invalidation as a RESP3 push when the target speaks RESP3, as a
//! `__redis__:invalidate` pub/sub message when it speaks RESP2 and is
//! subscribed to anything, and not at all otherwise. The keys part (an
//! array of keys, or a null for "everything") is passed on as Redis wrote
//! it.

use bytes::{Bytes, BytesMut};

/// What the listener (RESP2, subscribed) receives for each invalidation.
const MESSAGE_HEAD: &[u8] = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n";
/// A RESP3 invalidation push, up to its keys.
const PUSH_HEAD: &[u8] = b">2\r\n$10\r\ninvalidate\r\n";
/// Redis's push to a RESP3 tracking client whose redirect target is gone.
const REDIR_BROKEN_HEAD: &[u8] = b">2\r\n$21\r\ntracking-redir-broken\r\n";
/// TRACKINGINFO's redirect entry, up to its value.
const REDIRECT_KEY: &[u8] = b"$8\r\nredirect\r\n";

/// The listener's frame for a target speaking `resp` (2 or 3) that is, or
/// is not, subscribed; `None` when Redis would send that target nothing
/// (or the frame is not an invalidation).
pub fn for_target(frame: &[u8], resp: u8, subscribed: bool) -> Option<Bytes> {
    let keys = frame.strip_prefix(MESSAGE_HEAD)?;
    if resp >= 3 {
        let mut out = BytesMut::with_capacity(PUSH_HEAD.len() + keys.len());
        out.extend_from_slice(PUSH_HEAD);
        out.extend_from_slice(keys);
        Some(out.freeze())
    } else if subscribed {
        Some(Bytes::copy_from_slice(frame))
    } else {
        None
    }
}

/// "Invalidate everything" (the null Redis sends on FLUSHALL), for a
/// target that missed invalidations because its inbox was full.
pub fn flush_all(resp: u8, subscribed: bool) -> Option<Bytes> {
    let null: &[u8] = if resp >= 3 { b"_\r\n" } else { b"$-1\r\n" };
    for_target(&[MESSAGE_HEAD, null].concat(), resp, subscribed)
}

/// True for Redis's `tracking-redir-broken` push.
pub fn is_redir_broken(frame: &[u8]) -> bool {
    frame.starts_with(REDIR_BROKEN_HEAD)
}

/// `tracking-redir-broken` naming the listener names the target instead.
pub fn translate_redir_broken(frame: &Bytes, backend_id: i64, target: u64) -> Bytes {
    match frame.strip_prefix(REDIR_BROKEN_HEAD) {
        Some(rest) => swap_integer(frame, frame.len() - rest.len(), backend_id, target),
        None => frame.clone(),
    }
}

/// GETREDIR's integer, or TRACKINGINFO's `redirect` entry (which comes
/// before the prefixes, after flags that are fixed words, so its first
/// occurrence is the entry), naming the listener names the target instead.
pub fn translate_reply(frame: &Bytes, backend_id: i64, target: u64) -> Bytes {
    if frame.first() == Some(&b':') {
        return swap_integer(frame, 0, backend_id, target);
    }
    match frame
        .windows(REDIRECT_KEY.len())
        .position(|w| w == REDIRECT_KEY)
    {
        Some(at) => swap_integer(frame, at + REDIRECT_KEY.len(), backend_id, target),
        None => frame.clone(),
    }
}

/// Replaces the integer frame at `at` by `target` when it is `from`.
fn swap_integer(frame: &Bytes, at: usize, from: i64, target: u64) -> Bytes {
    let rest = &frame[at..];
    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
        return frame.clone();
    };
    let value = rest
        .strip_prefix(b":")
        .and_then(|v| crate::protocol::request::parse_int(&v[..end - 1]));
    if value != Some(from) {
        return frame.clone();
    }
    let mut out = BytesMut::with_capacity(frame.len() + 20);
    out.extend_from_slice(&frame[..at]);
    out.extend_from_slice(format!(":{target}").as_bytes());
    out.extend_from_slice(&rest[end..]);
    out.freeze()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\na\r\n";

    #[test]
    fn invalidations_are_encoded_for_the_target() {
        assert_eq!(
            for_target(MSG, 3, false).unwrap(),
            &b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n"[..]
        );
        assert_eq!(for_target(MSG, 2, true).unwrap(), MSG);
        assert_eq!(for_target(MSG, 2, false), None);
        assert_eq!(
            for_target(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n", 3, true),
            None
        );
        assert_eq!(
            flush_all(3, false).unwrap(),
            &b">2\r\n$10\r\ninvalidate\r\n_\r\n"[..]
        );
        assert_eq!(
            flush_all(2, true).unwrap(),
            &b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n"[..]
        );
    }

    #[test]
    fn listener_ids_become_strata_ids() {
        let t = |f: &'static [u8]| translate_reply(&Bytes::from_static(f), 41, 7);
        assert_eq!(t(b":41\r\n"), &b":7\r\n"[..]);
        assert_eq!(t(b":-1\r\n"), &b":-1\r\n"[..]);
        assert_eq!(t(b":0\r\n"), &b":0\r\n"[..]);
        assert_eq!(
            t(b"%3\r\n$5\r\nflags\r\n~1\r\n$2\r\non\r\n$8\r\nredirect\r\n:41\r\n$8\r\nprefixes\r\n*0\r\n"),
            &b"%3\r\n$5\r\nflags\r\n~1\r\n$2\r\non\r\n$8\r\nredirect\r\n:7\r\n$8\r\nprefixes\r\n*0\r\n"[..]
        );
        assert_eq!(
            t(b"*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"),
            &b"*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"[..]
        );
        let broken = Bytes::from_static(b">2\r\n$21\r\ntracking-redir-broken\r\n:41\r\n");
        assert!(is_redir_broken(&broken));
        assert_eq!(
            translate_redir_broken(&broken, 41, 7),
            &b">2\r\n$21\r\ntracking-redir-broken\r\n:7\r\n"[..]
        );
        assert_eq!(translate_redir_broken(&broken, 40, 7), broken);
    }
}
