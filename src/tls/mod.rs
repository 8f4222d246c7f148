//! TLS on both sides of strata, with rustls (tokio-rustls, ring).
//!
//! * [`config`]: `[tls]` (clients), `[tls.backend]` (Redis servers) and
//!   `[tls.sentinel]` (sentinels); keys come from files or environment
//!   variables, never from the config file.
//! * [`stream`]: [`Stream`], [`ReadHalf`], [`WriteHalf`]: plain TCP or TLS,
//!   as enums, so the plain path pays one `match` and nothing else.
//! * [`server`]: the TLS listener's [`Acceptor`] (certificate, key,
//!   optional client CA for mutual TLS, minimum version).
//! * [`client`]: the [`Connector`] to TLS backends (CA, server-name
//!   verification, optional client certificate).
//! * [`reload`]: re-reading the files on an interval and on SIGHUP,
//!   without dropping a connection.
//! * [`pem`]: reading PEM certificates and keys.

pub mod client;
pub mod config;
pub mod failure;
pub mod pem;
pub mod reload;
pub mod server;
pub mod stream;

use std::sync::Arc;

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::{version, SupportedProtocolVersion};

pub use client::Connector;
pub use config::{BackendTlsConfig, MinVersion, TlsConfig};
pub use server::Acceptor;
pub use stream::{ReadHalf, Stream, WriteHalf};

/// Writes all of `buf` and flushes: on TLS, ciphertext the socket did not
/// take yet would otherwise wait for the next write (see [`stream`]); on
/// plain TCP the flush is a no-op.
#[inline]
pub async fn write_flush<W>(w: &mut W, buf: &[u8]) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    w.write_all(buf).await?;
    w.flush().await
}

/// A TLS setup problem: a file missing or not parsing, a certificate that
/// does not match its key. The text names the config key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// ring: no C toolchain beyond `cc` needed, and no process-wide default
/// to install (each config is built with this provider explicitly).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

static TLS12_AND_13: &[&SupportedProtocolVersion] = &[&version::TLS13, &version::TLS12];
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&version::TLS13];

fn versions(min: MinVersion) -> &'static [&'static SupportedProtocolVersion] {
    match min {
        MinVersion::Tls12 => TLS12_AND_13,
        MinVersion::Tls13 => TLS13_ONLY,
    }
}

/// The TLS connectors for backends, built at startup from `[tls.backend]`
/// and `[tls.sentinel]` (`None`: plain TCP there).
#[derive(Debug, Clone, Default)]
pub struct BackendConnectors {
    /// Redis servers: standalone, the primary and replicas Sentinel names,
    /// cluster nodes.
    pub data: Option<Arc<Connector>>,
    /// The sentinels.
    pub sentinel: Option<Arc<Connector>>,
}

impl BackendConnectors {
    /// Builds what the config asks for.
    pub fn from_config(c: &TlsConfig) -> Result<BackendConnectors, TlsError> {
        Ok(BackendConnectors {
            data: c
                .backend
                .as_ref()
                .map(|b| Connector::from_config("tls.backend", b))
                .transpose()?,
            sentinel: c
                .sentinel
                .as_ref()
                .map(|b| Connector::from_config("tls.sentinel", b))
                .transpose()?,
        })
    }
}
