//! RESP2/RESP3 on the wire. Imports nothing else from strata.
//!
//! * [`request`] parses what clients send (multibulk and inline), mirroring
//!   Redis's own `processMultibulkBuffer`/`processInlineBuffer`, so limits and
//!   error texts are exactly Redis's.
//! * [`reply`] frames what backends send (via `redis-protocol`'s zero-copy
//!   range decoder) and encodes the replies strata makes itself.
//!
//! Frames stay `Bytes` slices of the read buffer end to end: a request is
//! forwarded as the very bytes the client sent, a reply as the very bytes
//! the backend sent.

pub mod reply;
pub mod request;

pub use reply::{Protocol, ReplyBuf};
pub use request::{ArgList, Found, ParseError, Request, RequestParser, Scan};

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline command, and the
/// longest `*`/`$` header line, that Redis accepts.
pub const INLINE_MAX: usize = 64 * 1024;

/// Redis's default `proto-max-bulk-len` (512 MB).
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;

/// The value of a run of ASCII digits, negated when `negative`; `None` for
/// an empty run, a non-digit, or a value outside `i64`. The two header
/// parsers (`request::parse_int`, Redis's strict rules; `reply`'s lenient
/// one) decide signs and leading zeros, then share this.
fn decimal(digits: &[u8], negative: bool) -> Option<i64> {
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(digit)?
        } else {
            value.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(value)
}
