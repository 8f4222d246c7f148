//! What an audit line says. The JSON field names are the log's format,
//! documented in docs/SECURITY.md: change them only with the docs.

use serde::Serialize;

/// Success or failure of what an event records.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed or was refused.
    Failed,
}

/// One audit event. Serialized with its kind as `"event"`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// AUTH or HELLO … AUTH, accepted or not.
    Login {
        client_id: u64,
        addr: String,
        /// The user named (never the password).
        user: String,
        outcome: Outcome,
        /// The refusal's error code (`WRONGPASS`, …) when it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A command strata refused to run (NOAUTH, NOPERM, the deny list, …).
    Refused {
        client_id: u64,
        addr: String,
        user: String,
        /// The command's name (and subcommand), never its arguments.
        command: String,
        /// The refusal's error code and rule, e.g. `NOPERM` or `DENIED`.
        reason: String,
        /// The key it named, with `audit.include_keys` only.
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// An administrative command: PROXY …, ACL …, CONFIG ….
    Admin {
        client_id: u64,
        addr: String,
        user: String,
        /// The command and subcommand, never the arguments.
        command: String,
    },
    /// The configuration was reloaded (or a reload was refused).
    ConfigReload {
        /// What asked for it: `sighup`, `proxy reload`, `config set`.
        source: String,
        outcome: Outcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The backend's primary changed (Sentinel failover followed).
    Failover {
        /// The old primary's address.
        from: String,
        /// The new one's.
        to: String,
    },
    /// A coordination lock was granted.
    LockGrant {
        client_id: u64,
        name: String,
        token: u64,
    },
}

impl Event {
    /// The event's kind, as its `"event"` field says it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Login { .. } => "login",
            Event::Refused { .. } => "refused",
            Event::Admin { .. } => "admin",
            Event::ConfigReload { .. } => "config_reload",
            Event::Failover { .. } => "failover",
            Event::LockGrant { .. } => "lock_grant",
        }
    }

    /// The client it concerns, if any.
    pub fn client_id(&self) -> Option<u64> {
        match self {
            Event::Login { client_id, .. }
            | Event::Refused { client_id, .. }
            | Event::Admin { client_id, .. }
            | Event::LockGrant { client_id, .. } => Some(*client_id),
            Event::ConfigReload { .. } | Event::Failover { .. } => None,
        }
    }
}
