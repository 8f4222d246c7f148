//! `[tls]`, `[tls.backend]` and `[tls.sentinel]`: serde structs and `validate()`.
//!
//! Private keys never sit in the config file: a key is named by a file
//! (`key_file`) or an environment variable holding the PEM text
//! (`key_env`), so the config can be committed and shared.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The lowest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// `[tls]`: the client side, plus the backend sides as subsections.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Where the TLS listener binds, beside the plain `server.listen` (as
    /// Redis's `tls-port` beside `port`). `None`: no TLS for clients.
    pub listen: Option<SocketAddr>,
    /// Serve plain TCP on `server.listen` too. `false` leaves TLS only.
    pub plain: bool,
    /// The server's certificate chain (PEM, leaf first).
    pub cert_file: Option<PathBuf>,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Or: the environment variable that holds the key's PEM text.
    pub key_env: Option<String>,
    /// Mutual TLS: clients must present a certificate issued by this CA.
    pub client_ca_file: Option<PathBuf>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: MinVersion,
    /// How often the certificate, key and CA files are re-read; a change
    /// applies to new connections. 0: only on SIGHUP.
    pub reload_interval_ms: u64,
    /// A client that has not finished its handshake by then is closed.
    pub handshake_timeout_ms: u64,
    /// `[tls.backend]`: TLS to the Redis servers (standalone, the primary
    /// and replicas Sentinel names, every cluster node).
    pub backend: Option<BackendTlsConfig>,
    /// `[tls.sentinel]`: TLS to the sentinels themselves.
    pub sentinel: Option<BackendTlsConfig>,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            listen: None,
            plain: true,
            cert_file: None,
            key_file: None,
            key_env: None,
            client_ca_file: None,
            min_version: MinVersion::Tls12,
            reload_interval_ms: 5_000,
            handshake_timeout_ms: 10_000,
            backend: None,
            sentinel: None,
        }
    }
}

/// TLS from strata to a kind of backend server.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendTlsConfig {
    /// The CA that issued the servers' certificates (PEM). Required:
    /// strata does not trust a system store for its backends.
    pub ca_file: Option<PathBuf>,
    /// The name checked against the servers' certificates, instead of the
    /// host of the address dialled (which, for cluster nodes and the
    /// primaries Sentinel names, is usually an IP address).
    pub server_name: Option<String>,
    /// Accept a certificate issued by the CA whatever name it carries.
    /// Only when set explicitly; the chain is still verified.
    pub insecure_skip_name_check: bool,
    /// A client certificate for servers that require one (PEM).
    pub cert_file: Option<PathBuf>,
    /// Its private key (file).
    pub key_file: Option<PathBuf>,
    /// Or: the environment variable that holds the key's PEM text.
    pub key_env: Option<String>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: MinVersion,
}

impl Default for BackendTlsConfig {
    fn default() -> BackendTlsConfig {
        BackendTlsConfig {
            ca_file: None,
            server_name: None,
            insecure_skip_name_check: false,
            cert_file: None,
            key_file: None,
            key_env: None,
            min_version: MinVersion::Tls12,
        }
    }
}

/// Where a private key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM file, re-read on reload.
    File(PathBuf),
    /// An environment variable holding the PEM text.
    Env(String),
}

/// A config mistake: the key and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid {key}: {message}")]
pub struct TlsConfigError {
    /// The dotted config key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> TlsConfigError {
    TlsConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The one key source of a section, checked: exactly one of file and env.
fn key_source(
    section: &str,
    file: Option<&PathBuf>,
    env: Option<&String>,
) -> Result<Option<KeySource>, TlsConfigError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(err(
            &format!("{section}.key_env"),
            "set key_file or key_env, not both",
        )),
        (Some(f), None) => Ok(Some(KeySource::File(f.clone()))),
        (None, Some(v)) => {
            if std::env::var_os(v).is_none() {
                return Err(err(
                    &format!("{section}.key_env"),
                    format!("environment variable '{v}' is not set"),
                ));
            }
            Ok(Some(KeySource::Env(v.clone())))
        }
        (None, None) => Ok(None),
    }
}

impl TlsConfig {
    /// Whether clients may connect with TLS.
    pub fn serves_clients(&self) -> bool {
        self.listen.is_some()
    }

    /// The client-side key source (after `validate`, present when `listen` is).
    pub fn key_source(&self) -> Option<KeySource> {
        key_source("tls", self.key_file.as_ref(), self.key_env.as_ref())
            .ok()
            .flatten()
    }

    /// Checks what serde cannot. The files are read (and their contents
    /// checked) when strata starts, so a typo stops startup there.
    pub fn validate(&self) -> Result<(), TlsConfigError> {
        let key = key_source("tls", self.key_file.as_ref(), self.key_env.as_ref())?;
        if self.listen.is_some() {
            if self.cert_file.is_none() {
                return Err(err("tls.cert_file", "tls.listen needs a certificate"));
            }
            if key.is_none() {
                return Err(err(
                    "tls.key_file",
                    "tls.listen needs a private key: key_file, or key_env naming an \
                     environment variable that holds it (never the key itself)",
                ));
            }
            if self.handshake_timeout_ms == 0 {
                return Err(err("tls.handshake_timeout_ms", "must be at least 1"));
            }
        } else {
            if !self.plain {
                return Err(err(
                    "tls.plain",
                    "plain = false needs tls.listen, or strata would listen nowhere",
                ));
            }
            if self.cert_file.is_some() || key.is_some() || self.client_ca_file.is_some() {
                return Err(err(
                    "tls.listen",
                    "a certificate is set but no TLS listen address",
                ));
            }
        }
        for (name, section) in [
            ("tls.backend", &self.backend),
            ("tls.sentinel", &self.sentinel),
        ] {
            if let Some(s) = section {
                s.validate(name)?;
            }
        }
        Ok(())
    }
}

impl BackendTlsConfig {
    /// The client-certificate key source (after `validate`).
    pub fn key_source(&self) -> Option<KeySource> {
        key_source("", self.key_file.as_ref(), self.key_env.as_ref())
            .ok()
            .flatten()
    }

    fn validate(&self, section: &str) -> Result<(), TlsConfigError> {
        if self.ca_file.is_none() {
            return Err(err(
                &format!("{section}.ca_file"),
                "the CA that issued the servers' certificates is required",
            ));
        }
        let key = key_source(section, self.key_file.as_ref(), self.key_env.as_ref())?;
        if self.cert_file.is_some() != key.is_some() {
            return Err(err(
                &format!("{section}.cert_file"),
                "a client certificate needs its key (key_file or key_env), and a key its certificate",
            ));
        }
        if let Some(name) = &self.server_name {
            if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                return Err(err(
                    &format!("{section}.server_name"),
                    format!("'{name}' is not a DNS name or IP address"),
                ));
            }
        }
        Ok(())
    }
}
