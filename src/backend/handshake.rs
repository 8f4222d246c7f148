//! One request, one reply, on a raw backend connection: the control-plane
//! exchanges strata makes itself (HELLO 3 on a fresh connection, RESET
//! before a dedicated connection goes back to the pool, health PINGs).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::reply::{frame_len, is_error, is_push};
use crate::protocol::request::encode_command;

/// Sends one command and reads its reply (skipping pushes), within `timeout`.
/// An error reply is returned as `Err` with the error text.
pub async fn call<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    args: &[&[u8]],
    timeout: Duration,
) -> std::io::Result<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    call_frame(stream, buf, &encode_command(&args), timeout).await
}

/// As [`call`], with the command already encoded.
pub async fn call_frame<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    frame: &[u8],
    timeout: Duration,
) -> std::io::Result<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(timeout, async {
        stream.write_all(frame).await?;
        stream.flush().await?;
        loop {
            let reply = read_frame(stream, buf).await?;
            if is_push(&reply) {
                continue;
            }
            if is_error(&reply) {
                let text = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
                return Err(std::io::Error::other(text));
            }
            return Ok(reply);
        }
    })
    .await
    .map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "backend did not answer in time",
        )
    })?
}

/// Reads one complete reply frame.
pub async fn read_frame<S>(stream: &mut S, buf: &mut BytesMut) -> std::io::Result<Bytes>
where
    S: AsyncRead + Unpin,
{
    loop {
        match frame_len(buf) {
            Ok(Some(len)) => return Ok(buf.split_to(len).freeze()),
            Ok(None) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ))
            }
        }
        buf.reserve(16 * 1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "backend closed the connection",
            ));
        }
    }
}
