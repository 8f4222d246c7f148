//! `PROXY CLIENTS`: CLIENT LIST's lines, each followed by what strata
//! knows that Redis cannot: the dedicated connection the client holds
//! (`dedicated=<node>#<backend id>` or `no`), the commands it has in flight
//! (queued for its writer and not yet answered: `inflight=`) and the reply
//! bytes being written to it (`obuf=`, nonzero while a client does not
//! read). `user=` is CLIENT LIST's own field, the ACL user it logged in as.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::protocol::{Protocol, ReplyBuf};
use crate::server::Shared;

/// The reply: one line per client, as CLIENT LIST's verbatim string.
pub fn list(shared: &Shared, proto: Protocol) -> Bytes {
    let epoch = shared.clients.epoch();
    let mut text = String::new();
    for c in shared.clients.snapshot() {
        let _ = writeln!(text, "{}", c.proxy_line(epoch));
    }
    let mut r = ReplyBuf::new(proto);
    r.verbatim(text.as_bytes());
    r.freeze()
}
