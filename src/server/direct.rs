//! Direct replies: a multiplexed connection's task writes a client's
//! reply straight to the client's socket, in the same poll that read it.
//!
//! Without this, a reply crossed three tasks: the session read the
//! request, the backend connection's task read the reply, and the
//! client's writer task, woken by the reply slot, wrote it. At `-P 1`
//! (each request waits for its reply, as most applications talk to
//! Redis) that last hand-off was a task wakeup, a scheduler trip and a
//! poll of the writer per request: about a sixth of strata's user-space
//! instructions per request (docs/PERFORMANCE.md, issue 20), and what
//! predixy's single event loop does not pay.
//!
//! The queue (`server/queue.rs`) arms an entry for this only when it is
//! safe to write around the writer: the writer is parked on an empty
//! queue with everything before written, the entry is a plain reply batch
//! (no transform to open), and the socket is plain TCP (a TLS stream's
//! state belongs to the writer). Anything else, or anything that turns
//! out not to fit here, goes back to the writer ahead of what is queued
//! behind it, so the order of replies, backpressure (the entry keeps its
//! room until written) and the isolation of a slow client (a socket that
//! does not take the whole reply hands the rest to the writer, which
//! waits for it under the output-buffer limits) stay as they were. With a
//! `normal` output-buffer limit set, every reply goes to the writer,
//! which closes a client whose reply breaks it before writing a byte, as
//! Redis does.

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::oneshot;

use super::pending::Pending;
use super::queue::{Direct, DirectHandler};
use super::Shared;
use crate::backend::mux::MuxReply;

/// Writes armed reply batches to one client's socket.
#[derive(Debug)]
pub struct DirectReplies {
    /// The client's socket, shared with its writer.
    pub sink: Arc<OwnedWriteHalf>,
    /// Metrics and the slow log's threshold.
    pub shared: Arc<Shared>,
}

/// A reply slot holding `reply` already: what goes back to the writer.
fn answered(reply: MuxReply) -> oneshot::Receiver<MuxReply> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(reply);
    rx
}

impl DirectHandler for DirectReplies {
    fn handle(&self, mut entry: Pending) -> Direct {
        let Pending::Batch {
            reply,
            started,
            metrics,
            plans,
            ..
        } = &mut entry
        else {
            return Direct::Back(entry);
        };
        let result = match reply.try_recv() {
            Ok(result) => result,
            Err(oneshot::error::TryRecvError::Empty) => return Direct::NotYet(entry),
            // Dropped unanswered: the writer says so (its slot stays closed).
            Err(oneshot::error::TryRecvError::Closed) => return Direct::Back(entry),
        };
        let frames: Bytes = match result {
            Ok(frames) if plans.is_empty() => frames,
            other => {
                *reply = answered(other);
                return Direct::Back(entry);
            }
        };
        let elapsed = started.elapsed();
        // A slow reply (rare: the writer knows the client's name for the
        // slow log), or a `normal` output-buffer limit, which the writer
        // holds the reply against (off by default, as in Redis).
        if elapsed >= self.shared.slowlog.threshold()
            || !self
                .shared
                .server
                .load()
                .client_output_buffer_limit
                .normal
                .is_unlimited()
        {
            *reply = answered(Ok(frames));
            return Direct::Back(entry);
        }
        crate::telemetry::record_batch(metrics, elapsed);
        // Would block, or failed: the writer writes it (and meets the
        // error itself).
        let written = self.sink.try_write(&frames).unwrap_or_default();
        self.shared.metrics.bytes_out(written as u64);
        if written == frames.len() {
            Direct::Written
        } else {
            Direct::Back(Pending::Ready(frames.slice(written..)))
        }
    }
}
