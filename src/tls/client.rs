//! The backend side: TLS from strata to Redis servers and sentinels.
//!
//! One [`Connector`] per kind of backend (`[tls.backend]`, `[tls.sentinel]`)
//! serves every address strata dials there: the standalone server, the
//! primary and replicas Sentinel names, every cluster node including those
//! learned from MOVED and CLUSTER SLOTS. The name checked against a
//! server's certificate is `server_name` when set, else the host of the
//! address dialled (an IP address is checked against the certificate's IP
//! SANs). Like the server side, the configuration is swapped whole on
//! reload; connections already open keep theirs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::config::{BackendTlsConfig, KeySource, MinVersion};
use super::{pem, provider, versions, Stream, TlsError};

#[derive(Debug)]
struct Sources {
    section: &'static str,
    ca_file: std::path::PathBuf,
    client_cert: Option<(std::path::PathBuf, KeySource)>,
    skip_name_check: bool,
    min_version: MinVersion,
}

type Material = (Vec<u8>, Option<(Vec<u8>, Vec<u8>)>);

/// Opens TLS connections to one kind of backend.
#[derive(Debug)]
pub struct Connector {
    current: ArcSwap<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    sources: Sources,
    last: Mutex<Material>,
}

impl Connector {
    /// Reads the files and builds the first configuration; an error here
    /// stops startup. `section` names the config section in errors.
    pub fn from_config(
        section: &'static str,
        c: &BackendTlsConfig,
    ) -> Result<Arc<Connector>, TlsError> {
        let Some(ca_file) = c.ca_file.clone() else {
            return Err(TlsError(format!("{section}.ca_file is required")));
        };
        let client_cert = match (&c.cert_file, c.key_source()) {
            (Some(cert), Some(key)) => Some((cert.clone(), key)),
            _ => None,
        };
        let server_name = c
            .server_name
            .as_deref()
            .map(|n| ServerName::try_from(n.to_string()))
            .transpose()
            .map_err(|e| TlsError(format!("{section}.server_name: {e}")))?;
        let sources = Sources {
            section,
            ca_file,
            client_cert,
            skip_name_check: c.insecure_skip_name_check,
            min_version: c.min_version,
        };
        let material = sources.read()?;
        let config = sources.build(&material)?;
        Ok(Arc::new(Connector {
            current: ArcSwap::from_pointee(config),
            server_name,
            sources,
            last: Mutex::new(material),
        }))
    }

    /// Runs the handshake on a connected socket to `addr` ("host:port"),
    /// within `timeout`. A refused certificate is an error that says why
    /// (e.g. "invalid peer certificate: UnknownIssuer").
    pub async fn connect(
        &self,
        tcp: TcpStream,
        addr: &str,
        timeout: Duration,
    ) -> std::io::Result<Stream> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host_of(addr).to_string()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("TLS: '{addr}' has no usable server name ({e}); set server_name"),
                )
            })?,
        };
        let connector = tokio_rustls::TlsConnector::from(self.current.load_full());
        let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })?
            .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
        Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls))))
    }
}

/// The host of "host:port", "[v6]:port" or a bare host.
fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

impl super::reload::Reload for Connector {
    fn name(&self) -> &'static str {
        self.sources.section
    }

    fn reload(&self) -> Result<bool, TlsError> {
        let material = self.sources.read()?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last == material {
            return Ok(false);
        }
        let config = self.sources.build(&material)?;
        self.current.store(Arc::new(config));
        *last = material;
        Ok(true)
    }
}

impl Sources {
    fn read(&self) -> Result<Material, TlsError> {
        let ca = pem::read(&format!("{}.ca_file", self.section), &self.ca_file)?;
        let client = match &self.client_cert {
            Some((cert, key)) => Some((
                pem::read(&format!("{}.cert_file", self.section), cert)?,
                pem::read_key(key)?,
            )),
            None => None,
        };
        Ok((ca, client))
    }

    fn build(&self, (ca, client): &Material) -> Result<ClientConfig, TlsError> {
        let section = self.section;
        let roots = Arc::new(pem::roots(&format!("{section}.ca_file"), ca)?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError(format!("{section}.ca_file: {e}")))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(self.min_version))
            .map_err(|e| TlsError(format!("{section}.min_version: {e}")))?;
        let builder = if self.skip_name_check {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
        } else {
            builder.with_webpki_verifier(webpki)
        };
        match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    pem::certs(&format!("{section}.cert_file"), cert)?,
                    pem::key(key)?,
                )
                .map_err(|e| TlsError(format!("{section}.cert_file/key_file: {e}"))),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// `insecure_skip_name_check`: the chain must still lead to the CA and be
/// valid now; only a name mismatch is forgiven (webpki checks the name
/// after the chain, so this error means the chain passed).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_of_an_address() {
        assert_eq!(super::host_of("redis.internal:6379"), "redis.internal");
        assert_eq!(super::host_of("127.0.0.1:6379"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:6379"), "::1");
        assert_eq!(super::host_of("redis.internal"), "redis.internal");
    }
}
