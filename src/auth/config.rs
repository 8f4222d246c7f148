//! `[auth]`: how clients log in, strata's own users, the deny list and
//! the limits before AUTH. Joined to `config::Config` by one field.

use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Who checks a client's AUTH.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The backend's own ACL (today's behaviour): strata passes AUTH on.
    #[default]
    Passthrough,
    /// strata's users (`[[auth.users]]`), with Redis ACL rules; strata logs
    /// in to the backend with its own credentials.
    Users,
}

/// The `[auth]` section.
#[derive(Debug, Clone, Deserialize, serde::Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `passthrough` (default) or `users`.
    pub mode: AuthMode,
    /// strata's users (`users` mode).
    pub users: Vec<UserConfig>,
    /// The deny list.
    pub deny: DenyConfig,
    /// Limits on clients that have not logged in, and on addresses.
    pub limits: LimitsConfig,
    /// Entries `ACL LOG` keeps (Redis's `acllog-max-len`, default 128).
    pub acllog_max_len: Option<usize>,
    /// The config file this came from (ACL SAVE writes users back to it).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// One `[[auth.users]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UserConfig {
    /// The user name.
    pub name: String,
    /// Lower-case hex SHA-256 hashes of the accepted passwords (several,
    /// for rotation). Plain passwords never go in the config file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub password_sha256: Vec<String>,
    /// An environment variable holding one more plain password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// A file holding one more plain password (trailing newline ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Redis ACL rules, as `ACL SETUSER` takes them (`on ~app:* +@read`).
    pub rules: String,
    /// strata's own flag: the deny list does not apply to this user.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// strata's own limit: connections logged in as this user at once
    /// (0, the default: no limit). Past it, AUTH as this user gets
    /// `-ERR max number of clients reached for this user`.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_connections: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `[auth.deny]`: commands strata refuses whoever asks.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenyConfig {
    /// On by default.
    pub enabled: bool,
    /// Replaces the default list when set (names, `container|sub`, or a
    /// whole container such as `cluster`).
    pub commands: Option<Vec<String>>,
    /// Taken out of the list (e.g. `["flushdb"]`).
    pub allow: Vec<String>,
}

impl Default for DenyConfig {
    fn default() -> Self {
        DenyConfig {
            enabled: true,
            commands: None,
            allow: Vec::new(),
        }
    }
}

/// `[auth.limits]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// When not empty, only these networks may connect.
    pub allow_cidrs: Vec<IpNet>,
    /// These networks may not connect (checked before `allow_cidrs`).
    pub deny_cidrs: Vec<IpNet>,
    /// Failed AUTHs an address may make before it is held back.
    pub auth_failures_allowed: u32,
    /// The first hold-back; it doubles with each further failure.
    pub auth_penalty_ms: u64,
    /// The longest hold-back.
    pub auth_penalty_max_ms: u64,
    /// Addresses whose failures are remembered at once (bounds the memory).
    pub auth_tracked_addresses: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            allow_cidrs: Vec::new(),
            deny_cidrs: Vec::new(),
            auth_failures_allowed: 5,
            auth_penalty_ms: 100,
            auth_penalty_max_ms: 30_000,
            auth_tracked_addresses: 10_000,
        }
    }
}

impl AuthConfig {
    /// Checks what serde cannot: rules parse, names are unique, hashes are
    /// hashes, deny entries name commands.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for u in &self.users {
            if u.name.is_empty() || u.name.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(format!("auth.users: bad user name '{}'", u.name));
            }
            if !names.insert(u.name.as_str()) {
                return Err(format!("auth.users: user '{}' defined twice", u.name));
            }
            for h in &u.password_sha256 {
                if !super::acl::rules::valid_hash(h.as_bytes()) {
                    return Err(format!(
                        "auth.users '{}': password_sha256 must be 64 lower-case hex digits",
                        u.name
                    ));
                }
            }
            if let Some(var) = &u.password_env {
                if std::env::var_os(var).is_none() {
                    return Err(format!(
                        "auth.users '{}': password_env {var} is not set",
                        u.name
                    ));
                }
            }
            if u.rules
                .split_ascii_whitespace()
                .any(|op| op.starts_with(['>', '<']))
            {
                return Err(format!(
                    "auth.users '{}': plain passwords do not go in the config file \
                     (use password_sha256, password_env or password_file)",
                    u.name
                ));
            }
            super::users::build_user(u).map_err(|e| format!("auth.users '{}': {e}", u.name))?;
        }
        if self.mode == AuthMode::Users && self.users.is_empty() {
            return Err("auth.mode = \"users\" needs at least one [[auth.users]]".to_string());
        }
        for name in self.deny.commands.iter().flatten().chain(&self.deny.allow) {
            if super::acl::ids::by_name(&name.to_ascii_lowercase()).is_none() {
                return Err(format!("auth.deny: unknown command '{name}'"));
            }
        }
        if self.acllog_max_len == Some(0) {
            return Err("auth.acllog_max_len must be at least 1".to_string());
        }
        if self.limits.auth_tracked_addresses == 0 {
            return Err("auth.limits.auth_tracked_addresses must be at least 1".to_string());
        }
        Ok(())
    }
}
