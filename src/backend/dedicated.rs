//! Dedicated backend connections, pooled with bb8.
//!
//! A client that enters a server-side state (MULTI, WATCH, a blocking
//! command, pub/sub, MONITOR, CLIENT TRACKING, a database other than 0)
//! cannot share a connection with anyone, so it borrows one from this pool
//! for as long as the state lasts. On the way back the connection is RESET
//! (which clears every such state and returns it to RESP2, db 0); a
//! connection whose state is unknown (a client gone mid-MULTI or blocked)
//! is closed instead.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{handshake, ConnSettings};

/// A raw backend connection; `stream` is `None` while the session has split
/// it into halves, and stays `None` if it could not be put back together,
/// which marks it broken for the pool.
#[derive(Debug)]
pub struct DedicatedConn {
    /// The socket, when whole.
    pub stream: Option<crate::tls::Stream>,
    /// Bytes read but not yet framed.
    pub buf: BytesMut,
    /// The backend's CLIENT ID for this connection (for CLIENT UNBLOCK);
    /// `None` if the backend would not say.
    pub backend_id: Option<i64>,
    /// The AUTH command the connection was opened with, if any: RESET
    /// logs a connection back in as the `default` user (unauthenticated
    /// when it has a password), so it is sent again after RESET.
    pub auth: Option<Bytes>,
}

/// The bb8 manager: connects (and authenticates), and PINGs on demand.
#[derive(Debug, Clone)]
pub struct DedicatedManager {
    addr: String,
    settings: ConnSettings,
}

impl DedicatedManager {
    /// A manager for `addr`.
    pub fn new(addr: String, settings: ConnSettings) -> DedicatedManager {
        DedicatedManager { addr, settings }
    }
}

impl bb8::ManageConnection for DedicatedManager {
    type Connection = DedicatedConn;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<DedicatedConn, std::io::Error> {
        let mut stream = super::connect_authenticated(&self.addr, &self.settings).await?;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        // The id comes from `HELLO 2`'s map, not CLIENT ID: HELLO is never
        // checked against the ACL, so a connection logged in as a client's
        // restricted user neither fails it nor leaves a NOPERM entry in
        // the user's ACL LOG (which the application reads). A Redis
        // without HELLO (before 6) is asked CLIENT ID. No id only costs
        // CLIENT UNBLOCK.
        let timeout = self.settings.request_timeout;
        let backend_id =
            match handshake::call(&mut stream, &mut buf, &[b"HELLO", b"2"], timeout).await {
                Ok(reply) => hello_id(&reply),
                Err(_) => handshake::call(&mut stream, &mut buf, &[b"CLIENT", b"ID"], timeout)
                    .await
                    .ok()
                    .and_then(|reply| crate::protocol::reply::integer_payload(&reply)),
            };
        Ok(DedicatedConn {
            stream: Some(stream),
            buf,
            backend_id,
            auth: super::auth_command(&self.settings),
        })
    }

    async fn is_valid(&self, conn: &mut DedicatedConn) -> Result<(), std::io::Error> {
        let stream = conn
            .stream
            .as_mut()
            .ok_or_else(|| std::io::Error::other("connection in use"))?;
        handshake::call(
            stream,
            &mut conn.buf,
            &[b"PING"],
            self.settings.request_timeout,
        )
        .await?;
        Ok(())
    }

    fn has_broken(&self, conn: &mut DedicatedConn) -> bool {
        conn.stream.is_none() || !conn.buf.is_empty()
    }
}

/// The `id` field of a RESP2 `HELLO` reply (`…$2\r\nid\r\n:<id>\r\n…`).
fn hello_id(reply: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"$2\r\nid\r\n";
    let at = reply.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    crate::protocol::reply::integer_payload(&reply[at..])
}

/// The pool type.
pub type DedicatedPool = bb8::Pool<DedicatedManager>;

/// A connection checked out of the pool.
pub type Dedicated = bb8::PooledConnection<'static, DedicatedManager>;

/// Builds the pool. Connections are made lazily; idle ones are closed
/// after a while so a burst of blocking clients does not pin sockets forever.
pub fn pool(addr: String, max: u32, settings: ConnSettings) -> DedicatedPool {
    bb8::Pool::builder()
        .max_size(max)
        .min_idle(Some(0))
        .test_on_check_out(false)
        .connection_timeout(settings.connect_timeout)
        .idle_timeout(Some(Duration::from_secs(60)))
        .retry_connection(false)
        .build_unchecked(DedicatedManager::new(addr, settings))
}

/// True unless the idle socket already reads EOF, an error or stray bytes.
/// Costs one non-blocking read attempt, no round trip.
pub fn looks_alive(conn: &mut DedicatedConn) -> bool {
    conn.stream
        .as_mut()
        .is_some_and(crate::tls::Stream::idle_and_open)
}

/// Returns a connection to the pool after RESET (and AUTH again, when it
/// was opened with one), in the background; a connection that does not
/// answer both cleanly is dropped as broken.
pub fn release(mut conn: Dedicated, timeout: Duration) {
    tokio::spawn(async move {
        let DedicatedConn {
            stream, buf, auth, ..
        } = &mut *conn;
        let ok = match stream.as_mut() {
            Some(stream) => {
                handshake::call(stream, buf, &[b"RESET"], timeout)
                    .await
                    .is_ok()
                    && match auth {
                        // The password may have changed since (CONFIG SET
                        // requirepass): then the connection is closed.
                        Some(frame) => handshake::call_frame(stream, buf, frame, timeout)
                            .await
                            .is_ok(),
                        None => true,
                    }
            }
            None => false,
        };
        if !ok || !conn.buf.is_empty() {
            conn.stream = None;
        }
        drop(conn);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_id_of_a_hello_reply() {
        let reply = b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
            $5\r\nproto\r\n:2\r\n$2\r\nid\r\n:42\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n";
        assert_eq!(super::hello_id(reply), Some(42));
        assert_eq!(super::hello_id(b"-ERR unknown command 'HELLO'\r\n"), None);
    }
}
