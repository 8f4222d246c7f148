//! Checking a client's AUTH against the backend's own ACL.
//!
//! The client's `AUTH` is sent as it is on a fresh connection to the
//! node its commands go to, and the backend's reply is the client's:
//! `+OK`, `-WRONGPASS …`, the "called without any password configured"
//! error, whatever this Redis version says. The connection is closed
//! after: the user's own connections are made by `backend/users.rs`.
//! A fresh connection, not a shared one, because AUTH changes the user of
//! the connection it runs on.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use crate::backend::{connect_stream, handshake, BackendError};
use crate::protocol::reply::is_error;
use crate::protocol::request::encode_command;

/// The backend's answer to a client's AUTH.
#[derive(Debug)]
pub enum Verdict {
    /// `+OK`: the credentials are good.
    Accepted,
    /// The backend's error reply, to give the client as it is.
    Refused(Bytes),
}

/// Sends `AUTH …` (the client's arguments) on a fresh connection to `addr`.
pub async fn check(
    addr: &str,
    timeout: Duration,
    tls: Option<&crate::tls::Connector>,
    auth_args: &[Bytes],
) -> Result<Verdict, BackendError> {
    let unavailable = |reason: String| BackendError::Unavailable {
        addr: addr.to_string(),
        reason,
    };
    let mut stream = connect_stream(addr, timeout, tls)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let exchange = async {
        stream.write_all(&encode_command(auth_args)).await?;
        stream.flush().await?;
        let mut buf = BytesMut::new();
        handshake::read_frame(&mut stream, &mut buf).await
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| BackendError::Timeout {
            addr: addr.to_string(),
            ms: timeout.as_millis(),
        })?
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(if is_error(&reply) {
        Verdict::Refused(reply)
    } else {
        Verdict::Accepted
    })
}
