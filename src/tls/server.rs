//! The client-facing side: the TLS listener's handshakes and the server
//! configuration behind them, swapped whole on reload.
//!
//! A reload builds a new `rustls::ServerConfig` from the files and swaps
//! it in (`ArcSwap`); each handshake loads the current one. Connections
//! already open keep the session they negotiated, so replacing a
//! certificate drops nobody. A reload whose files do not parse keeps the
//! old configuration and reports why.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::ServerConfig;

use super::config::{KeySource, TlsConfig};
use super::{pem, provider, versions, Stream, TlsError};

/// The files a server configuration is built from.
#[derive(Debug)]
struct Sources {
    cert_file: std::path::PathBuf,
    key: KeySource,
    client_ca_file: Option<std::path::PathBuf>,
    min_version: super::config::MinVersion,
}

/// The bytes last built from: a reload that reads the same builds nothing.
type Material = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Accepts TLS clients with the current configuration.
#[derive(Debug)]
pub struct Acceptor {
    current: ArcSwap<ServerConfig>,
    /// The files (and key variable, minimum version) it is built from,
    /// with the bytes last built from; a config reload may change them.
    state: Mutex<(Sources, Material)>,
    handshake_timeout: Duration,
}

/// A configuration built from new paths, not yet in force
/// ([`Acceptor::prepare`], then [`Acceptor::install`]).
#[derive(Debug)]
pub struct Prepared {
    sources: Sources,
    material: Material,
    config: ServerConfig,
}

impl Acceptor {
    /// Reads the files and builds the first configuration; an error here
    /// stops startup.
    pub fn from_config(c: &TlsConfig) -> Result<Arc<Acceptor>, TlsError> {
        let p = Acceptor::prepare(c)?;
        Ok(Arc::new(Acceptor {
            current: ArcSwap::from_pointee(p.config),
            state: Mutex::new((p.sources, p.material)),
            handshake_timeout: Duration::from_millis(c.handshake_timeout_ms),
        }))
    }

    /// Reads the files `c` names and builds a configuration from them,
    /// without putting it in force: a config reload that changes
    /// `tls.cert_file`, `key_file`/`key_env`, `client_ca_file` or
    /// `min_version` builds first and fails whole if a file is wrong.
    pub fn prepare(c: &TlsConfig) -> Result<Prepared, TlsError> {
        let (Some(cert_file), Some(key)) = (c.cert_file.clone(), c.key_source()) else {
            return Err(TlsError("tls.listen needs cert_file and a key".to_string()));
        };
        let sources = Sources {
            cert_file,
            key,
            client_ca_file: c.client_ca_file.clone(),
            min_version: c.min_version,
        };
        let material = sources.read()?;
        let config = sources.build(&material)?;
        Ok(Prepared {
            sources,
            material,
            config,
        })
    }

    /// Puts a prepared configuration in force: new handshakes use it,
    /// connections already open keep theirs, and the periodic reload
    /// watches the new files from now on.
    pub fn install(&self, p: Prepared) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.current.store(Arc::new(p.config));
        *state = (p.sources, p.material);
    }

    /// Runs the handshake (bounded by `handshake_timeout_ms`).
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current.load_full());
        let tls = tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))))
    }
}

impl super::reload::Reload for Acceptor {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn reload(&self) -> Result<bool, TlsError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (sources, last) = &mut *state;
        let material = sources.read()?;
        if *last == material {
            return Ok(false);
        }
        let config = sources.build(&material)?;
        self.current.store(Arc::new(config));
        *last = material;
        Ok(true)
    }
}

impl Sources {
    fn read(&self) -> Result<Material, TlsError> {
        Ok((
            pem::read("tls.cert_file", &self.cert_file)?,
            pem::read_key(&self.key)?,
            self.client_ca_file
                .as_ref()
                .map(|p| pem::read("tls.client_ca_file", p))
                .transpose()?,
        ))
    }

    fn build(&self, (cert, key, ca): &Material) -> Result<ServerConfig, TlsError> {
        let certs = pem::certs("tls.cert_file", cert)?;
        let key = pem::key(key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(self.min_version))
            .map_err(|e| TlsError(format!("tls.min_version: {e}")))?;
        let builder = match ca {
            Some(ca) => {
                let roots = pem::roots("tls.client_ca_file", ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError(format!("tls.client_ca_file: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError(format!("tls.cert_file/key_file: {e}")))
    }
}
