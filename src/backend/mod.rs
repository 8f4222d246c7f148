//! Backends: how strata talks to Redis.
//!
//! * [`mux`]: long-lived, pipelined connections shared by all clients.
//!   Replies are matched to requests in FIFO order; writes from many clients
//!   are coalesced into one syscall.
//! * [`dedicated`]: a bb8 pool of connections handed to one client while it
//!   holds server-side state (MULTI, WATCH, blocking, pub/sub, MONITOR, …).
//! * [`node`]: one Redis server: a set of mux connections per protocol, the
//!   dedicated pool, a circuit breaker and a health checker.
//! * [`router`]: which node a request goes to (the primary, or a replica for
//!   reads), swapped atomically when the topology changes.
//! * [`breaker`]: the per-node circuit breaker.
//! * [`sentinel`]: Sentinel mode: discovery, following failovers, replicas.
//! * [`cluster`]: Redis Cluster mode: the slot map, redirections, splits
//!   and merges, and the [`cluster::ClusterRouter`] that keeps a node per
//!   address.
//! * [`users`]: a node's connections per ACL user, for clients that
//!   logged in as another user than strata's (made lazily, closed idle).
//! * [`handshake`]: the few request/reply exchanges strata makes on its own
//!   (AUTH, HELLO, RESET, PING, INFO) on a raw connection.

pub mod breaker;
pub mod cluster;
pub mod dedicated;
pub mod handshake;
pub mod mux;
pub mod node;
pub mod router;
pub mod sentinel;
pub mod users;

use std::time::Duration;

/// Timeouts and backoff shared by all backend connections.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// A request without a reply after this long fails, and its connection is replaced.
    pub request_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_base: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// ACL user for AUTH (None: the default user).
    pub username: Option<String>,
    /// Password for AUTH (None: no AUTH).
    pub password: Option<String>,
    /// Send `READONLY` after connecting: a cluster replica serving reads.
    pub readonly: bool,
    /// TLS to the server (`[tls.backend]`); `None`: plain TCP.
    pub tls: Option<std::sync::Arc<crate::tls::Connector>>,
}

impl ConnSettings {
    /// From the `[backend]` config section.
    pub fn from_config(c: &crate::config::BackendConfig) -> ConnSettings {
        ConnSettings {
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            request_timeout: Duration::from_millis(c.request_timeout_ms),
            reconnect_base: Duration::from_millis(c.reconnect_base_ms),
            reconnect_max: Duration::from_millis(c.reconnect_max_ms),
            username: c.username.clone(),
            password: c.resolved_password(),
            readonly: false,
            tls: c.tls.data.clone(),
        }
    }
}

/// Why a backend request failed; `Display` is the text the client sees
/// after `-`. Classified once here so callers act on the kind, not on text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// No connection could be made.
    #[error("ERR backend unavailable: {addr} ({reason})")]
    Unavailable {
        /// The backend address.
        addr: String,
        /// Why (connection refused, timeout, …).
        reason: String,
    },
    /// The connection broke with the request in flight; it may or may not have run.
    #[error("ERR backend connection lost: {addr} ({reason})")]
    ConnectionLost {
        /// The backend address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No reply within the request timeout.
    #[error("ERR backend timeout: {addr} did not answer within {ms} ms")]
    Timeout {
        /// The backend address.
        addr: String,
        /// The timeout.
        ms: u128,
    },
}

impl BackendError {
    /// The error as a RESP error reply.
    pub fn to_reply(&self) -> bytes::Bytes {
        crate::protocol::reply::error(&self.to_string())
    }

    /// The metrics kind.
    pub fn kind(&self) -> crate::telemetry::ErrorKind {
        match self {
            BackendError::Unavailable { .. } => crate::telemetry::ErrorKind::BackendUnavailable,
            BackendError::ConnectionLost { .. } => crate::telemetry::ErrorKind::BackendClosed,
            BackendError::Timeout { .. } => crate::telemetry::ErrorKind::BackendTimeout,
        }
    }
}

/// Connects with a timeout and sets TCP_NODELAY (latency matters more than
/// packet count: writes are already coalesced by strata).
pub async fn connect(addr: &str, timeout: Duration) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The AUTH command for `settings`' credentials, if a password is set.
pub fn auth_command(settings: &ConnSettings) -> Option<bytes::Bytes> {
    let password = settings.password.as_ref()?;
    let mut args = vec![bytes::Bytes::from_static(b"AUTH")];
    if let Some(user) = &settings.username {
        args.push(bytes::Bytes::copy_from_slice(user.as_bytes()));
    }
    args.push(bytes::Bytes::copy_from_slice(password.as_bytes()));
    Some(crate::protocol::request::encode_command(&args))
}

/// Connects (with TLS when `tls` is given), within `timeout` for each step.
pub async fn connect_stream(
    addr: &str,
    timeout: Duration,
    tls: Option<&crate::tls::Connector>,
) -> std::io::Result<crate::tls::Stream> {
    let tcp = connect(addr, timeout).await?;
    match tls {
        Some(tls) => tls.connect(tcp, addr, timeout).await,
        None => Ok(crate::tls::Stream::Plain(tcp)),
    }
}

/// Connects, and authenticates when a password is configured.
pub async fn connect_authenticated(
    addr: &str,
    settings: &ConnSettings,
) -> std::io::Result<crate::tls::Stream> {
    let mut stream =
        connect_stream(addr, settings.connect_timeout, settings.tls.as_deref()).await?;
    if let Some(auth) = auth_command(settings) {
        let mut buf = bytes::BytesMut::new();
        handshake::call_frame(&mut stream, &mut buf, &auth, settings.connect_timeout)
            .await
            .map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("AUTH failed: {e}"),
                )
            })?;
    }
    if settings.readonly {
        let mut buf = bytes::BytesMut::new();
        let readonly = handshake::call(
            &mut stream,
            &mut buf,
            &[b"READONLY"],
            settings.connect_timeout,
        )
        .await;
        match readonly {
            Ok(_) => {}
            // A script keeps the node busy, and READONLY is not among the
            // commands Redis serves meanwhile. The connection is still
            // good: on a primary READONLY changes nothing, and a replica's
            // reads on it get MOVED, which is followed to the primary.
            // Refusing it would leave a client's script (or SCRIPT KILL)
            // without a connection to the busy node.
            Err(e) if e.to_string().starts_with("BUSY ") => {
                tracing::debug!(backend = %addr, "READONLY refused while a script runs");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(stream)
}
