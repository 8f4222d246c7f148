//! The control plane: short request/reply exchanges with sentinels (and
//! `ROLE` on Redis servers) on connections of their own, never on the data
//! path's multiplexed connections.
//!
//! Replies are small (a few hundred bytes for `SENTINEL REPLICAS`), so they
//! are decoded into a [`Value`] tree here; the data path never does this.

use std::time::Duration;

use crate::tls::Stream;
use bytes::BytesMut;

use crate::backend::handshake;
use crate::protocol::reply::{aggregate_elements, integer_payload, string_payload};

/// A decoded RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A simple or bulk string.
    Str(Vec<u8>),
    /// An integer.
    Int(i64),
    /// An array.
    Array(Vec<Value>),
    /// A null bulk string or array.
    Nil,
}

impl Value {
    /// Decodes one complete reply frame (error replies are handled before).
    pub fn decode(frame: &[u8]) -> Option<Value> {
        match frame.first()? {
            b'$' | b'*' if frame.get(1..3) == Some(b"-1") => Some(Value::Nil),
            b'_' => Some(Value::Nil),
            b'+' | b'$' => string_payload(frame).map(|s| Value::Str(s.to_vec())),
            b':' => integer_payload(frame).map(Value::Int),
            b'*' => {
                let ranges = aggregate_elements(frame)?;
                ranges
                    .into_iter()
                    .map(|r| Value::decode(&frame[r]))
                    .collect::<Option<Vec<_>>>()
                    .map(Value::Array)
            }
            _ => None,
        }
    }

    /// The string, when this is one (lossy UTF-8).
    pub fn as_str(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }

    /// The integer, when this is one or a string holding one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The elements, when this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A flat `[field, value, field, value, …]` array as pairs of strings.
    pub fn as_fields(&self) -> Option<Vec<(String, String)>> {
        let items = self.as_array()?;
        items
            .chunks(2)
            .map(|pair| match pair {
                [k, v] => Some((
                    k.as_str()?,
                    v.as_str().or_else(|| v.as_int().map(|n| n.to_string()))?,
                )),
                _ => None,
            })
            .collect()
    }
}

/// Credentials for AUTH on a control connection.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// ACL user (None: the default user).
    pub username: Option<String>,
    /// Password (None: no AUTH).
    pub password: Option<String>,
    /// TLS to the sentinels (`[tls.sentinel]`); `None`: plain TCP.
    pub tls: Option<std::sync::Arc<crate::tls::Connector>>,
}

/// One control connection: a socket, its read buffer, and a timeout that
/// bounds every exchange.
#[derive(Debug)]
pub struct ControlConn {
    stream: Stream,
    buf: BytesMut,
    timeout: Duration,
}

impl ControlConn {
    /// Connects, and authenticates when a password is given.
    pub async fn connect(
        addr: &str,
        creds: &Credentials,
        timeout: Duration,
    ) -> std::io::Result<ControlConn> {
        let stream = crate::backend::connect_stream(addr, timeout, creds.tls.as_deref()).await?;
        let mut conn = ControlConn {
            stream,
            buf: BytesMut::new(),
            timeout,
        };
        if let Some(password) = &creds.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &creds.username {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            conn.call_raw(&args).await.map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("AUTH failed: {e}"),
                )
            })?;
        }
        Ok(conn)
    }

    /// Wraps a socket that is already connected and authenticated.
    pub fn from_stream(stream: Stream, timeout: Duration) -> ControlConn {
        ControlConn {
            stream,
            buf: BytesMut::new(),
            timeout,
        }
    }

    async fn call_raw(&mut self, args: &[&[u8]]) -> std::io::Result<bytes::Bytes> {
        handshake::call(&mut self.stream, &mut self.buf, args, self.timeout).await
    }

    /// Sends one command and decodes its reply; an error reply is `Err`.
    pub async fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Value> {
        let frame = self.call_raw(args).await?;
        Value::decode(&frame).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "undecodable reply")
        })
    }

    /// Sends a command without waiting for its reply (SUBSCRIBE).
    pub async fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let args: Vec<bytes::Bytes> = args
            .iter()
            .map(|a| bytes::Bytes::copy_from_slice(a))
            .collect();
        let frame = crate::protocol::request::encode_command(&args);
        tokio::time::timeout(
            self.timeout,
            crate::tls::write_flush(&mut self.stream, &frame),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
    }

    /// Waits for the next frame, however long it takes (pub/sub messages).
    pub async fn next(&mut self) -> std::io::Result<Value> {
        let frame = handshake::read_frame(&mut self.stream, &mut self.buf).await?;
        if crate::protocol::reply::is_error(&frame) {
            let text = String::from_utf8_lossy(&frame[1..]).trim_end().to_string();
            return Err(std::io::Error::other(text));
        }
        Value::decode(&frame).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "undecodable frame")
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_replies() {
        let frame = b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*2\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n*-1\r\n";
        let v = Value::decode(frame).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a[0].as_str().as_deref(), Some("master"));
        assert_eq!(a[1].as_int(), Some(3129659));
        let replicas = a[2].as_array().unwrap();
        assert_eq!(replicas[0].as_array().unwrap()[2].as_int(), Some(3129242));
        assert_eq!(replicas[1], Value::Nil);
        assert_eq!(Value::decode(b"$-1\r\n"), Some(Value::Nil));
        assert_eq!(Value::decode(b"+OK\r\n"), Some(Value::Str(b"OK".to_vec())));
    }

    #[test]
    fn fields() {
        let v = Value::decode(b"*4\r\n$4\r\nname\r\n$1\r\na\r\n$4\r\nport\r\n:6379\r\n").unwrap();
        assert_eq!(
            v.as_fields().unwrap(),
            vec![
                ("name".to_string(), "a".to_string()),
                ("port".to_string(), "6379".to_string())
            ]
        );
        assert!(Value::decode(b"*1\r\n$4\r\nname\r\n")
            .unwrap()
            .as_fields()
            .is_none());
    }
}
