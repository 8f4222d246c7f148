//! A connection that is plain TCP or TLS, on either side of strata.
//!
//! Sessions, the writer and every backend connection hold these types
//! instead of tokio's TCP halves. They are enums, not trait objects: the
//! plain path costs one `match` per poll (no box, no lock, no virtual
//! call). The TLS halves share the stream behind a mutex (as
//! `tokio::io::split` does; a TLS stream needs it anyway, since reading
//! may have to write, e.g. a key update), never held across an await.
//! Split by hand rather than with `tokio::io::split` for the read: one
//! read takes the plaintext rustls has already decrypted and stops,
//! where tokio-rustls's `poll_read` goes back to the socket until it
//! would block (one more `read` syscall, answered `EAGAIN`, per read).
//!
//! A TLS write may leave ciphertext buffered when the socket is full
//! (tokio-rustls accepts the plaintext and reports it written), so code
//! that writes a message and then waits for an answer must `flush()`:
//! for plain TCP that is a no-op.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A TLS stream, client or server side.
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// A whole connection.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the session state is large and this variant
    /// is made once per connection).
    Tls(Box<TlsStream>),
}

/// The read half of a [`Stream`].
#[derive(Debug)]
pub enum ReadHalf {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS.
    Tls(TlsHalf),
}

/// The write half of a [`Stream`].
#[derive(Debug)]
pub enum WriteHalf {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// Plain TCP, shared with a backend connection's task that writes
    /// replies it has just read straight to the client when the client's
    /// writer is idle (`server/queue.rs`, "direct replies"). Written
    /// through `&TcpStream` (readiness, then `try_write`), as tokio's own
    /// half does.
    Shared(Arc<OwnedWriteHalf>),
    /// TLS.
    Tls(TlsHalf),
}

/// One side of a split TLS stream: the stream, shared with the other side.
#[derive(Debug)]
pub struct TlsHalf(Arc<Mutex<Box<TlsStream>>>);

impl TlsHalf {
    fn lock(&self) -> MutexGuard<'_, Box<TlsStream>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies decrypted plaintext into `buf`: what rustls holds, else one
    /// trip to the socket.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.lock();
        let mut s = Pin::new(&mut **guard);
        let data = ready!(s.as_mut().poll_fill_buf(cx))?;
        let n = data.len().min(buf.remaining());
        buf.put_slice(&data[..n]);
        s.as_mut().consume(n);
        // More records of the same read, already decrypted: take them too,
        // without going back to the socket (`wants_read` is false while
        // rustls holds plaintext).
        while buf.remaining() > 0 && !s.get_ref().1.wants_read() {
            match s.as_mut().poll_fill_buf(cx) {
                Poll::Ready(Ok(data)) if !data.is_empty() => {
                    let n = data.len().min(buf.remaining());
                    buf.put_slice(&data[..n]);
                    s.as_mut().consume(n);
                }
                _ => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Halves of different streams were given to [`ReadHalf::reunite`].
#[derive(Debug, thiserror::Error)]
#[error("tried to reunite halves that are not from the same stream")]
pub struct ReuniteError;

impl Stream {
    /// Splits into halves that can be used from two tasks.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::Tls(s) => {
                let shared = Arc::new(Mutex::new(s));
                (
                    ReadHalf::Tls(TlsHalf(shared.clone())),
                    WriteHalf::Tls(TlsHalf(shared)),
                )
            }
        }
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// True unless the idle connection already reads EOF, an error or
    /// stray bytes; never waits. On TLS, records that are not application
    /// data (TLS 1.3 session tickets a server sends after the handshake)
    /// are consumed and do not count as stray bytes.
    pub fn idle_and_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            Stream::Plain(s) => {
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut buf = ReadBuf::new(&mut probe);
                matches!(Pin::new(s).poll_read(&mut cx, &mut buf), Poll::Pending)
            }
        }
    }
}

impl ReadHalf {
    /// Puts the halves back together.
    pub fn reunite(self, wr: WriteHalf) -> Result<Stream, ReuniteError> {
        match (self, wr) {
            (ReadHalf::Plain(r), WriteHalf::Plain(w)) => {
                r.reunite(w).map(Stream::Plain).map_err(|_| ReuniteError)
            }
            (ReadHalf::Plain(r), WriteHalf::Shared(w)) => {
                let w = Arc::try_unwrap(w).map_err(|_| ReuniteError)?;
                r.reunite(w).map(Stream::Plain).map_err(|_| ReuniteError)
            }
            (ReadHalf::Tls(r), WriteHalf::Tls(w)) => {
                if !Arc::ptr_eq(&r.0, &w.0) {
                    return Err(ReuniteError);
                }
                drop(w);
                let stream = Arc::try_unwrap(r.0).map_err(|_| ReuniteError)?;
                Ok(Stream::Tls(
                    stream.into_inner().unwrap_or_else(PoisonError::into_inner),
                ))
            }
            _ => Err(ReuniteError),
        }
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for ReadHalf {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Tls(s) => s.poll_read(cx, buf),
        }
    }
}

impl WriteHalf {
    /// True when TLS holds encrypted bytes a write could not hand to the
    /// socket yet (a flush sends them); never on plain TCP.
    pub fn has_unsent(&self) -> bool {
        match self {
            WriteHalf::Plain(_) | WriteHalf::Shared(_) => false,
            WriteHalf::Tls(s) => s.lock().get_ref().1.wants_write(),
        }
    }

    /// A plain TCP half becomes [`WriteHalf::Shared`], and the returned
    /// handle can write to the socket from another task (`try_write`);
    /// `None` for TLS, whose writes need the stream's state.
    pub fn share(self) -> (WriteHalf, Option<Arc<OwnedWriteHalf>>) {
        match self {
            WriteHalf::Plain(w) => {
                let w = Arc::new(w);
                (WriteHalf::Shared(w.clone()), Some(w))
            }
            WriteHalf::Shared(w) => {
                let handle = w.clone();
                (WriteHalf::Shared(w), Some(handle))
            }
            tls @ WriteHalf::Tls(_) => (tls, None),
        }
    }
}

/// Writes through a shared half: readiness first, then a non-blocking
/// write (what tokio's `poll_write` does inside).
fn poll_write_shared(
    w: &OwnedWriteHalf,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    let stream: &TcpStream = w.as_ref();
    loop {
        ready!(stream.poll_write_ready(cx))?;
        match stream.try_write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

impl AsyncWrite for WriteHalf {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Shared(s) => poll_write_shared(s, cx, buf),
            WriteHalf::Tls(s) => Pin::new(&mut **s.lock()).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            WriteHalf::Shared(s) => {
                let first = bufs
                    .iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &b[..]);
                poll_write_shared(s, cx, first)
            }
            WriteHalf::Tls(s) => Pin::new(&mut **s.lock()).poll_write_vectored(cx, bufs),
        }
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Plain(s) => s.is_write_vectored(),
            WriteHalf::Shared(_) => false,
            WriteHalf::Tls(_) => true,
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Shared(_) => Poll::Ready(Ok(())),
            WriteHalf::Tls(s) => Pin::new(&mut **s.lock()).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_shutdown(cx),
            // Shut down here when no other task holds it; else when the
            // last holder drops it (tokio's halves shut down on drop).
            WriteHalf::Shared(s) => match Arc::get_mut(s) {
                Some(s) => Pin::new(s).poll_shutdown(cx),
                None => Poll::Ready(Ok(())),
            },
            WriteHalf::Tls(s) => Pin::new(&mut **s.lock()).poll_shutdown(cx),
        }
    }
}
