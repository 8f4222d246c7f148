//! The client's read side: its socket and the bytes read but not yet parsed.
//!
//! The reader normally reads only when it has dispatched everything it
//! read. But at a switch between the multiplexed and a dedicated backend
//! connection it waits for earlier replies (a barrier), and behind a
//! blocking command that wait lasts as long as the command blocks. A
//! client that pipelined more commands behind `BLPOP q 0` and then hung up
//! would go unnoticed all that time, and the element pushed next would be
//! popped for nobody. So while it waits the reader goes on reading, into
//! a bounded buffer, to see the hang-up: the writer then gives up the
//! blocking wait (see `writer::hung_up`).

use std::future::Future;

use crate::tls::ReadHalf;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::super::clients::ClientInfo;
use crate::telemetry::Metrics;

/// Most bytes buffered while waiting. A client that sends more behind a
/// blocking command is not read further until the wait ends (its hang-up is
/// then noticed late, as before this existed); memory stays bounded.
const WAIT_READ_MAX: usize = 256 * 1024;

pub(super) struct ClientInput {
    rd: ReadHalf,
    /// Read, not yet parsed.
    pub(super) buf: BytesMut,
    /// The client closed its side, or reading failed: nothing more comes.
    pub(super) eof: bool,
    /// Bytes arrived during a wait: parse them before reading again.
    pub(super) unparsed: bool,
}

impl ClientInput {
    pub(super) fn new(rd: ReadHalf) -> ClientInput {
        ClientInput {
            rd,
            buf: BytesMut::with_capacity(16 * 1024),
            eof: false,
            unparsed: false,
        }
    }

    /// Reads more into the buffer: the byte count, 0 at end of stream.
    pub(super) async fn read(&mut self) -> std::io::Result<usize> {
        self.rd.read_buf(&mut self.buf).await
    }

    /// Waits for `done` and returns its output, reading meanwhile (up to
    /// [`WAIT_READ_MAX`] buffered) so that a client hanging up is marked as
    /// gone at once.
    pub(super) async fn read_until<F: Future>(
        &mut self,
        done: F,
        info: &ClientInfo,
        metrics: &Metrics,
    ) -> F::Output {
        tokio::pin!(done);
        loop {
            let room = !self.eof && self.buf.len() < WAIT_READ_MAX;
            if room && self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            tokio::select! {
                biased;
                out = &mut done => return out,
                read = self.rd.read_buf(&mut self.buf), if room => match read {
                    Ok(0) | Err(_) => {
                        self.eof = true;
                        info.hang_up();
                    }
                    Ok(n) => {
                        self.unparsed = true;
                        metrics.bytes_in(n as u64);
                    }
                },
            }
        }
    }
}
