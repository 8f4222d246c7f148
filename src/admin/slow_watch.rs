//! The slow log for commands that are not answered through a multiplexed
//! batch (issue 18): commands on a dedicated connection (MULTI/EXEC,
//! blocking commands, scripts, pub/sub), commands strata answers itself
//! (PING, CLIENT …, HELLO, AUTH), and `PROXY …` and COMMAND, answered by
//! tasks of their own.
//!
//! A [`SlowWatch`] is made when such a command arrives and travels with
//! what stands for its reply: the dedicated connection's `Expect` entry
//! (which the writer drops right after writing the command's last reply
//! frame), a local command's call, or the task that computes a PROXY
//! reply. When it is dropped, the command's duration (arrival to reply)
//! is compared with the threshold and, over it, recorded as the writer
//! records a slow batch. So the multiplexed hot path carries nothing of
//! it, and neither does the writer: the watch is a field of those entries
//! alone, inert (`None`, no allocation) when the slow log is off.
//!
//! A command whose reply never came (the client left, the connection
//! failed) is recorded with the time until then if that is over the
//! threshold: it is how long the client waited.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::slowlog::{Client, Measured, KEEP_BYTES};
use crate::server::clients::ClientInfo;
use crate::server::Shared;

/// Records one command into the slow log when dropped, if it was slow.
#[derive(Default)]
pub struct SlowWatch(Option<Box<Watched>>);

struct Watched {
    shared: Arc<Shared>,
    client: Arc<ClientInfo>,
    /// The request's first [`KEEP_BYTES`], a copy (as for batches).
    request: Bytes,
    started: Instant,
    /// When it was handed to the backend; `None`: strata answered it.
    sent: Option<Instant>,
}

impl std::fmt::Debug for SlowWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SlowWatch(on)"
        } else {
            "SlowWatch(off)"
        })
    }
}

impl SlowWatch {
    /// Watches the request `frame` that arrived at `started`; inert when
    /// the slow log is off.
    pub fn start(
        shared: &Arc<Shared>,
        client: &Arc<ClientInfo>,
        frame: &Bytes,
        started: Instant,
    ) -> SlowWatch {
        if !shared.slowlog.is_on() {
            return SlowWatch(None);
        }
        SlowWatch(Some(Box::new(Watched {
            shared: shared.clone(),
            client: client.clone(),
            request: Bytes::copy_from_slice(&frame[..frame.len().min(KEEP_BYTES)]),
            started,
            sent: None,
        })))
    }

    /// The request was handed to a backend connection now: the time
    /// before is strata's, after it the backend's.
    pub fn sent(mut self) -> SlowWatch {
        if let Some(w) = self.0.as_mut() {
            w.sent = Some(Instant::now());
        }
        self
    }
}

impl Drop for SlowWatch {
    fn drop(&mut self) {
        let Some(w) = self.0.take() else {
            return;
        };
        let elapsed = w.started.elapsed();
        if elapsed < w.shared.slowlog.threshold() {
            return;
        }
        let name = w.client.name();
        let now = Instant::now();
        w.shared.slowlog.record(
            Measured {
                frames: &w.request,
                started: w.started,
                sent: w.sent.unwrap_or(now),
                elapsed,
            },
            Client {
                addr: &w.client.addr,
                name: name.as_ref(),
            },
            &w.shared.transforms.load(),
        );
    }
}
