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
pub use request::{ArgList, ParseError, Request, RequestParser};

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline command, and the
/// longest `*`/`$` header line, that Redis accepts.
pub const INLINE_MAX: usize = 64 * 1024;

/// Redis's default `proto-max-bulk-len` (512 MB).
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;
