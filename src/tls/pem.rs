//! Reading certificates and keys: from files, or a key from an
//! environment variable. The bytes are kept so that a reload can tell
//! whether anything changed.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::RootCertStore;

use super::config::KeySource;
use super::TlsError;

/// Reads a file, naming it in the error.
pub fn read(what: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("{what} {}: {e}", path.display())))
}

/// The PEM text of a key.
pub fn read_key(source: &KeySource) -> Result<Vec<u8>, TlsError> {
    match source {
        KeySource::File(path) => read("key_file", path),
        KeySource::Env(var) => std::env::var(var)
            .map(String::into_bytes)
            .map_err(|_| TlsError(format!("key_env: environment variable '{var}' is not set"))),
    }
}

/// Every certificate in a PEM text; at least one.
pub fn certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{what}: no PEM certificate found")));
    }
    Ok(certs)
}

/// The first private key in a PEM text (PKCS#8, PKCS#1 or SEC1).
/// The error never quotes the text.
pub fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| TlsError("private key: no PEM private key found".to_string()))
}

/// A trust store holding every certificate of a PEM text.
pub fn roots(what: &str, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(what, pem)? {
        store
            .add(cert)
            .map_err(|e| TlsError(format!("{what}: {e}")))?;
    }
    Ok(store)
}
