//! Label values and label sets of strata's own series.
//!
//! The closed enums ([`ErrorKind`], [`RejectReason`], [`ConnKind`],
//! [`ConnState`]) are what callers pass; the label-set structs stay inside
//! `metrics`, so a label name is spelt once, here, and never formatted on
//! the hot path.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// Why an error reply or a failed operation happened, as counted in
/// `strata_errors_total{kind=…}`.
///
/// The set is closed so that every series exists (at zero) from startup: an
/// alert on `rate(strata_errors_total{kind="backend_timeout"}[5m])` then works
/// before the first timeout ever happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A client sent bytes that are not valid RESP, or broke a protocol limit.
    Protocol,
    /// A backend did not answer in time.
    BackendTimeout,
    /// No backend could be reached (connection refused, no primary known, …).
    BackendUnavailable,
    /// A backend closed the connection while requests were in flight.
    BackendClosed,
    /// The client asked for something strata refuses to proxy.
    Unsupported,
    /// A client was turned away because `maxclients` was reached.
    MaxClients,
    /// A bug or an unexpected condition inside strata.
    Internal,
    /// A client was closed for overcoming its output-buffer limit.
    OutputBufferLimit,
}

impl ErrorKind {
    /// Every kind, in discriminant order (`ALL[k as usize] == k`).
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Protocol,
        ErrorKind::BackendTimeout,
        ErrorKind::BackendUnavailable,
        ErrorKind::BackendClosed,
        ErrorKind::Unsupported,
        ErrorKind::MaxClients,
        ErrorKind::Internal,
        ErrorKind::OutputBufferLimit,
    ];

    /// The label value: snake_case, stable, part of the metrics contract.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::BackendTimeout => "backend_timeout",
            ErrorKind::BackendUnavailable => "backend_unavailable",
            ErrorKind::BackendClosed => "backend_closed",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::MaxClients => "max_clients",
            ErrorKind::Internal => "internal",
            ErrorKind::OutputBufferLimit => "output_buffer_limit",
        }
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Why a client connection was refused at accept time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The configured `maxclients` was reached.
    MaxClients,
    /// `max_clients_per_address` was reached for the client's address.
    MaxClientsPerAddress,
}

impl RejectReason {
    /// Every reason, in discriminant order (`ALL[r as usize] == r`).
    pub const ALL: [RejectReason; 2] =
        [RejectReason::MaxClients, RejectReason::MaxClientsPerAddress];

    /// The label value; `maxclients` matches the Redis configuration name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::MaxClients => "maxclients",
            RejectReason::MaxClientsPerAddress => "max_clients_per_address",
        }
    }
}

impl EncodeLabelValue for RejectReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// How a backend connection is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnKind {
    /// Shared by many clients, requests pipelined.
    Multiplexed,
    /// Owned by one client in a stateful mode (MULTI, blocking, pub/sub, …).
    Dedicated,
}

impl ConnKind {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnKind::Multiplexed => "multiplexed",
            ConnKind::Dedicated => "dedicated",
        }
    }
}

impl EncodeLabelValue for ConnKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Where a backend connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// Connected and usable.
    Up,
    /// Being (re)established: TCP connect, AUTH, HELLO, SELECT.
    Connecting,
    /// Lost and waiting for the next reconnect attempt.
    Down,
}

impl ConnState {
    /// Every state, in discriminant order (`ALL[s as usize] == s`).
    pub const ALL: [ConnState; 3] = [ConnState::Up, ConnState::Connecting, ConnState::Down];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnState::Up => "up",
            ConnState::Connecting => "connecting",
            ConnState::Down => "down",
        }
    }
}

impl EncodeLabelValue for ConnState {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// `command` label. `&'static str` on purpose: names come from the static
/// command table, so a client sending random command names cannot create
/// unbounded series (callers map unknown commands to one fixed name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct CommandLabels {
    pub(super) command: &'static str,
}

/// Why a client's TLS handshake failed (`strata_tls_handshake_failures_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// A certificate was refused: the client's (mutual TLS: missing,
    /// expired, from another CA), or strata's by the client (its alert).
    BadCertificate,
    /// No TLS version in common (`min_version = "1.3"` and a 1.2 client).
    Version,
    /// No cipher suite or other parameter in common.
    Incompatible,
    /// Not finished within `tls.handshake_timeout_ms`.
    Timeout,
    /// Not TLS at all (a plain client on the TLS port, a scanner).
    NotTls,
    /// The client hung up during the handshake.
    Closed,
    /// Anything else (a protocol violation, an alert without a better name).
    Other,
}

impl TlsFailure {
    /// Every reason, in discriminant order (`ALL[r as usize] == r`).
    pub const ALL: [TlsFailure; 7] = [
        TlsFailure::BadCertificate,
        TlsFailure::Version,
        TlsFailure::Incompatible,
        TlsFailure::Timeout,
        TlsFailure::NotTls,
        TlsFailure::Closed,
        TlsFailure::Other,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            TlsFailure::BadCertificate => "bad_certificate",
            TlsFailure::Version => "version",
            TlsFailure::Incompatible => "incompatible",
            TlsFailure::Timeout => "timeout",
            TlsFailure::NotTls => "not_tls",
            TlsFailure::Closed => "closed",
            TlsFailure::Other => "other",
        }
    }
}

impl EncodeLabelValue for TlsFailure {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TlsFailureLabels {
    pub(super) reason: TlsFailure,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RejectLabels {
    pub(super) reason: RejectReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ErrorLabels {
    pub(super) kind: ErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct BackendLabels {
    pub(super) backend: String,
    pub(super) kind: ConnKind,
    pub(super) state: ConnState,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct NodeLabels {
    pub(super) backend: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct BuildLabels {
    pub(super) version: &'static str,
}
