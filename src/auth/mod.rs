//! Who a client is, for as long as strata has no users of its own.
//!
//! strata is invisible: `AUTH [user] pass` and `HELLO … AUTH user pass`
//! are checked against the backend's own ACL ([`passthrough`]) and answered
//! with the backend's reply; a client that logged in as another user than
//! strata's runs its commands on backend connections authenticated as that
//! user (`backend/users.rs`). When strata was given the backend's password
//! (`backend.password_env`), clients must log in first, as Redis's
//! `requirepass` asks: until then only the commands with the table's
//! `NO_AUTH` flag pass ([`gate`], called by `policy`).
//!
//! In cluster mode the check runs on one primary and the user's
//! connections are made per node as the client's commands reach it: the
//! ACL users must be the same on every node, as Redis Cluster's own
//! clients need them to be.
//!
//! With `auth.mode = "users"`, strata has users of its own ([`users`],
//! rules in Redis ACL syntax, [`acl`]): AUTH is checked by strata, the
//! commands by [`guard`] (called by `policy`), and strata's backend
//! connections stay logged in with its own credentials. The deny list
//! ([`deny`]) and the limits ([`limits`]: CIDRs, failed AUTHs) apply in
//! both modes.

pub mod acl;
pub mod audit;
pub mod config;
pub mod deny;
pub mod guard;
pub mod limits;
pub mod passthrough;
pub mod users;

pub use config::{AuthConfig, AuthMode};
pub use guard::Guard;

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::users::Credentials;
use crate::command::{CommandSpec, Flags};
use crate::config::BackendConfig;
use crate::protocol::reply;

/// Redis's reply to a command before AUTH, when a password is required.
pub const NOAUTH: &str = "NOAUTH Authentication required.";

/// Redis's reply to HELLO without AUTH from a client not logged in.
pub const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already \
     authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to \
     authenticate the client and select the RESP protocol version at the same time";

/// What every session shares about authentication, from the config.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// Clients must log in before other commands (strata was given the
    /// backend's password, so the backend requires one).
    pub required: bool,
    /// The ACL user strata's own connections are logged in as.
    pub own_user: Bytes,
    /// The password they log in with (`backend.password_env`). Clients
    /// that log in as `own_user` with this password share strata's own
    /// connections; any other accepted credentials (another user, or
    /// strata's user with a password set at runtime, e.g. by `CONFIG SET
    /// requirepass`) get connections logged in with those credentials,
    /// which keep working when strata must open new ones.
    pub own_password: Option<Bytes>,
    /// strata's users (`auth.mode = "users"`); `None` in passthrough mode.
    pub users: Option<Arc<users::Users>>,
    /// The deny list (empty when off).
    pub deny: Arc<deny::DenyList>,
    /// Failed AUTHs per address.
    pub limiter: Arc<limits::AuthLimiter>,
    /// Networks that may connect.
    pub cidrs: limits::Cidrs,
}

impl AuthPolicy {
    /// From the `[backend]` section, passthrough mode with the default deny list.
    pub fn from_config(c: &BackendConfig) -> AuthPolicy {
        AuthPolicy::with_auth(c, &AuthConfig::default())
    }

    /// From the `[backend]` and `[auth]` sections.
    pub fn with_auth(c: &BackendConfig, a: &AuthConfig) -> AuthPolicy {
        let users = (a.mode == AuthMode::Users).then(|| Arc::new(users::Users::from_config(a)));
        AuthPolicy {
            required: c.resolved_password().is_some() || users.is_some(),
            own_user: Bytes::from(c.username.clone().unwrap_or_else(|| "default".into())),
            own_password: c.resolved_password().map(Bytes::from),
            users,
            deny: Arc::new(deny::DenyList::from_config(&a.deny)),
            limiter: Arc::new(limits::AuthLimiter::from_config(&a.limits)),
            cidrs: limits::Cidrs::from_config(&a.limits),
        }
    }

    /// The user a new client is in users mode: `default`, when it exists,
    /// is on and needs no password (as Redis logs every new connection in
    /// as `default` then).
    fn default_user(&self) -> Option<Arc<users::UserCell>> {
        let cell = self.users.as_ref()?.get("default")?;
        let ok = cell
            .acl
            .load()
            .as_ref()
            .as_ref()
            .is_some_and(|u| u.enabled && u.nopass);
        ok.then_some(cell)
    }

    /// True when `user` are strata's own credentials: the client shares
    /// strata's connections.
    pub fn is_own(&self, user: &Credentials) -> bool {
        user.name == self.own_user && Some(&user.password) == self.own_password.as_ref()
    }
}

/// One client's authentication state: the session holds one.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// The user the client logged in as, when not strata's own.
    user: Option<Arc<Credentials>>,
    /// False until the client logs in, when the policy requires it.
    authenticated: bool,
    /// Commands are checked (users mode, or a deny list): `None` costs
    /// `policy::check` nothing more than the login branch.
    guard: Option<Box<Guard>>,
    /// True when logged in and nothing else is checked: `policy::check`'s
    /// one branch.
    plain: bool,
}

impl ClientAuth {
    /// A new client: strata's own user, logged in unless a password is
    /// required (in users mode: unless `default` needs none).
    pub fn new(policy: &AuthPolicy) -> ClientAuth {
        let guard = (policy.users.is_some() || !policy.deny.is_empty())
            .then(|| Box::new(Guard::new(policy)));
        let mut auth = ClientAuth {
            user: None,
            authenticated: !policy.required,
            guard,
            plain: false,
        };
        // A `default` at its max_connections leaves the new client to AUTH.
        if let (Some(cell), Some(g)) = (policy.default_user(), auth.guard.as_mut()) {
            if let Some(slot) = cell.connect() {
                g.set_user(Bytes::from_static(b"default"), cell, slot);
                auth.authenticated = true;
            }
        }
        auth.plain = auth.authenticated && auth.guard.is_none();
        auth
    }

    /// True once the client may run commands.
    #[inline]
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// True when logged in and no command is checked.
    #[inline]
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    /// The command checks, when any apply.
    #[inline]
    pub fn guard(&self) -> Option<&Guard> {
        self.guard.as_deref()
    }

    /// The command checks, to run them (they keep the client's cached
    /// rules and its last refusal).
    #[inline]
    pub fn guard_mut(&mut self) -> Option<&mut Guard> {
        self.guard.as_deref_mut()
    }

    /// Logged in as strata's user `name` (users mode). False: the user is
    /// at its `max_connections`; nothing changed.
    #[must_use]
    pub fn log_in_as(&mut self, name: Bytes, cell: Arc<users::UserCell>) -> bool {
        if let Some(g) = self.guard.as_mut() {
            let Some(slot) = g.slot_for(&cell).or_else(|| cell.connect()) else {
                return false;
            };
            g.set_user(name, cell, slot);
            self.authenticated = true;
        }
        true
    }

    /// The user whose backend connections the client's commands take
    /// (`None`: strata's own).
    #[inline]
    pub fn backend_user(&self) -> Option<&Credentials> {
        self.user.as_deref()
    }

    /// As [`ClientAuth::backend_user`], shared (for batches and dedicated
    /// readers that outlive the borrow).
    #[inline]
    pub fn backend_user_arc(&self) -> Option<&Arc<Credentials>> {
        self.user.as_ref()
    }

    /// The client's ACL user name, for CLIENT LIST and CLIENT KILL USER.
    pub fn user_name<'a>(&'a self, policy: &'a AuthPolicy) -> &'a Bytes {
        if let Some(name) = self.guard.as_ref().and_then(|g| g.user_name()) {
            return name;
        }
        self.user.as_ref().map_or(&policy.own_user, |u| &u.name)
    }

    /// The backend accepted `user`'s password: the client is that user now.
    pub fn log_in(&mut self, policy: &AuthPolicy, user: Credentials) {
        self.authenticated = true;
        self.plain = self.guard.is_none();
        self.user = (!policy.is_own(&user)).then(|| Arc::new(user));
    }

    /// RESET: back to the default user, as a new client.
    pub fn reset(&mut self, policy: &AuthPolicy) {
        // The old user's place first: a `default` at its max_connections
        // takes this client back.
        self.guard = None;
        *self = ClientAuth::new(policy);
    }
}

/// The credentials an accepted `AUTH` names (`AUTH pass` is the default user's).
pub fn credentials(auth_args: &[Bytes]) -> Option<Credentials> {
    match auth_args {
        [_, password] => Some(Credentials {
            name: Bytes::from_static(b"default"),
            password: password.clone(),
        }),
        [_, name, password] => Some(Credentials {
            name: name.clone(),
            password: password.clone(),
        }),
        _ => None,
    }
}

/// What a client that has not logged in gets instead of running a
/// command, in Redis's order (`processCommand`): an unknown command or a
/// wrong arity first, then NOAUTH unless the command is `NO_AUTH`
/// (AUTH, HELLO, QUIT, RESET, …). `None`: the command may run.
pub fn gate(spec: Option<&CommandSpec>, args: &[Bytes]) -> Option<Bytes> {
    let Some(spec) = spec else {
        return Some(reply::error(&crate::command::unknown_command_error(args)));
    };
    if !spec.arity_ok(args.len()) {
        return Some(reply::error(&format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        )));
    }
    (!spec.has(Flags::NO_AUTH)).then(|| reply::error(NOAUTH))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    fn gated(line: &str) -> Option<String> {
        let args = a(line);
        let spec = crate::command::lookup(&args);
        gate(spec, &args).map(|r| String::from_utf8_lossy(&r).into_owned())
    }

    #[test]
    fn only_no_auth_commands_pass_the_gate() {
        for ok in ["AUTH pw", "HELLO 3", "QUIT", "RESET"] {
            assert_eq!(gated(ok), None, "{ok}");
        }
        assert_eq!(
            gated("GET k").unwrap(),
            "-NOAUTH Authentication required.\r\n"
        );
        assert_eq!(
            gated("PING").unwrap(),
            "-NOAUTH Authentication required.\r\n"
        );
        assert_eq!(
            gated("GET").unwrap(),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert!(gated("NOSUCH x")
            .unwrap()
            .starts_with("-ERR unknown command 'NOSUCH'"));
    }

    #[test]
    fn logging_in_as_strata_own_user_shares_its_connections() {
        let policy = AuthPolicy {
            required: true,
            own_user: Bytes::from_static(b"default"),
            own_password: Some(Bytes::from_static(b"pw")),
            ..AuthPolicy::from_config(&BackendConfig::default())
        };
        let mut auth = ClientAuth::new(&policy);
        assert!(!auth.is_authenticated());
        auth.log_in(&policy, credentials(&a("AUTH pw")).unwrap());
        assert!(auth.is_authenticated());
        assert!(auth.backend_user().is_none());
        // strata's user with another password (set at runtime): its own
        // connections, logged in with that password.
        auth.log_in(&policy, credentials(&a("AUTH newpw")).unwrap());
        assert_eq!(auth.backend_user().unwrap().password.as_ref(), b"newpw");
        assert_eq!(auth.user_name(&policy).as_ref(), b"default");
        auth.log_in(&policy, credentials(&a("AUTH bob pw")).unwrap());
        assert_eq!(auth.user_name(&policy).as_ref(), b"bob");
        auth.reset(&policy);
        assert!(!auth.is_authenticated());
        assert_eq!(auth.user_name(&policy).as_ref(), b"default");
    }
}
