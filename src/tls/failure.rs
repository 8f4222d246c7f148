//! Why a client's TLS handshake failed, for
//! `strata_tls_handshake_failures_total{reason}`: a refused certificate
//! and a version mismatch call for different fixes (the client's CA, its
//! TLS library), a timeout or a plain client on the TLS port for others.
//!
//! tokio-rustls reports rustls's error inside an `io::Error`; the
//! handshake timeout is strata's own (`server::Acceptor::accept`).

use std::io;

use tokio_rustls::rustls::{AlertDescription, Error, PeerIncompatible};

use crate::telemetry::TlsFailure;

/// The reason a failed handshake's error stands for.
pub fn reason(e: &io::Error) -> TlsFailure {
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        return from_rustls(tls);
    }
    match e.kind() {
        io::ErrorKind::TimedOut => TlsFailure::Timeout,
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => TlsFailure::Closed,
        _ => TlsFailure::Other,
    }
}

fn from_rustls(e: &Error) -> TlsFailure {
    match e {
        Error::InvalidCertificate(_) | Error::NoCertificatesPresented => TlsFailure::BadCertificate,
        Error::AlertReceived(alert) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::AccessDenied => TlsFailure::BadCertificate,
            AlertDescription::ProtocolVersion => TlsFailure::Version,
            AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => {
                TlsFailure::Incompatible
            }
            _ => TlsFailure::Other,
        },
        Error::PeerIncompatible(p) => match p {
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls13RequiredForQuic => TlsFailure::Version,
            _ => TlsFailure::Incompatible,
        },
        // The first bytes were not a TLS record: a plain client, a scanner.
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => TlsFailure::NotTls,
        _ => TlsFailure::Other,
    }
}
