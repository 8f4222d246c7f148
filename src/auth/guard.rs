//! The per-client command check (`policy::check` calls it): the client's
//! ACL user in users mode, then the deny list. Held by `ClientAuth` only
//! when something is to be checked.

use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use bytes::Bytes;

use super::acl::{self, ids, Denied};
use super::deny::{self, DenyList};
use super::users::{Connected, UserCell, Users};
use super::AuthPolicy;
use crate::command::CommandSpec;
use crate::protocol::{reply, ArgList};

/// A refusal the ACL log is to record; the session adds what only it
/// knows (the client's CLIENT LIST line, whether it is in MULTI).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `command`, `key`, `channel`.
    pub reason: &'static str,
    /// What was refused.
    pub object: String,
    /// Who.
    pub username: String,
}

/// What the guard says about a command.
#[derive(Debug)]
pub enum Verdict {
    /// Let it run.
    Pass,
    /// Answer this instead.
    Refuse(Bytes),
    /// An ACL command in users mode: strata answers it (`server/session/acl.rs`).
    Acl,
}

/// The logged-in user's rules, read through a cache of its `ArcSwap`.
type UserRules = Cache<Arc<ArcSwap<Option<acl::AclUser>>>, Arc<Option<acl::AclUser>>>;

/// The strata user a client is logged in as.
struct LoggedIn {
    name: Bytes,
    cell: Arc<UserCell>,
    rules: UserRules,
    /// Counted in the user's `max_connections` while held.
    slot: Arc<Connected>,
}

impl std::fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedIn")
            .field("name", &self.name)
            .finish()
    }
}

impl Clone for LoggedIn {
    fn clone(&self) -> Self {
        LoggedIn {
            name: self.name.clone(),
            cell: self.cell.clone(),
            rules: Cache::new(self.cell.acl.clone()),
            slot: self.slot.clone(),
        }
    }
}

/// One client's command check.
#[derive(Debug, Clone)]
pub struct Guard {
    users: Option<Arc<Users>>,
    deny: Arc<DenyList>,
    /// The strata user logged in as (users mode).
    user: Option<LoggedIn>,
    /// The last refusal, for the ACL log.
    refusal: Option<Refusal>,
}

impl Guard {
    /// For a new client.
    pub fn new(policy: &AuthPolicy) -> Guard {
        Guard {
            users: policy.users.clone(),
            deny: policy.deny.clone(),
            user: None,
            refusal: None,
        }
    }

    pub(super) fn set_user(&mut self, name: Bytes, cell: Arc<UserCell>, slot: Arc<Connected>) {
        let rules = Cache::new(cell.acl.clone());
        self.user = Some(LoggedIn {
            name,
            cell,
            rules,
            slot,
        });
    }

    /// The client's place in its user's `max_connections`, when it is
    /// logged in as `cell` already (AUTH again as the same user keeps it).
    pub(super) fn slot_for(&self, cell: &Arc<UserCell>) -> Option<Arc<Connected>> {
        self.user
            .as_ref()
            .filter(|u| Arc::ptr_eq(&u.cell, cell))
            .map(|u| u.slot.clone())
    }

    /// True when `spec` surely runs: passthrough mode (no strata users)
    /// and not on the deny list's filter. The common case, decided
    /// inline by `policy::check` in a few instructions.
    #[inline]
    pub fn surely_passes(&self, spec: &'static CommandSpec) -> bool {
        self.users.is_none() && !self.deny.may_refuse(spec)
    }

    /// The strata user's name (users mode, logged in).
    pub fn user_name(&self) -> Option<&Bytes> {
        self.user.as_ref().map(|u| &u.name)
    }

    /// The strata user (users mode, logged in).
    pub fn user(&self) -> Option<&Arc<UserCell>> {
        self.user.as_ref().map(|u| &u.cell)
    }

    /// strata's users (users mode).
    pub fn users(&self) -> Option<&Arc<Users>> {
        self.users.as_ref()
    }

    /// The refusal last answered, once.
    pub fn take_refusal(&mut self) -> Option<Refusal> {
        self.refusal.take()
    }

    /// What to do with a command. A command with a wrong arity passes:
    /// the arity error comes first, as in Redis.
    pub fn check<A: ArgList + ?Sized>(
        &mut self,
        spec: Option<&'static CommandSpec>,
        args: &A,
    ) -> Verdict {
        match self.refuse(spec, args) {
            Some(answer) => Verdict::Refuse(answer),
            // ACL … in users mode: strata's users, not the backend's.
            None if self.users.is_some() && spec.is_some_and(|s| s.name.starts_with("acl|")) => {
                Verdict::Acl
            }
            None => Verdict::Pass,
        }
    }

    fn refuse<A: ArgList + ?Sized>(
        &mut self,
        spec: Option<&'static CommandSpec>,
        args: &A,
    ) -> Option<Bytes> {
        let Some(spec) = spec else {
            return self.refuse_proxy(args);
        };
        // Not logged in as one of strata's users: only the deny list
        // applies, and most commands are surely not on it.
        if self.user.is_none() && !self.deny.may_refuse(spec) {
            return None;
        }
        if !spec.arity_ok(args.argc()) {
            return None;
        }
        let id = ids::of(spec)?;
        let admin = match &mut self.user {
            Some(LoggedIn {
                name, cell, rules, ..
            }) => {
                let Some(user) = rules.load().as_ref() else {
                    // Deleted by ACL DELUSER: nothing runs any more.
                    return Some(reply::error(&Denied::Command.reply_text(spec.name)));
                };
                if let Err(denied) = acl::check(user, id, spec, args) {
                    let object = match denied {
                        Denied::Command => spec.name.to_string(),
                        Denied::Key(i) | Denied::Channel(i) => {
                            String::from_utf8_lossy(args.arg(i).unwrap_or_default()).into_owned()
                        }
                    };
                    self.refusal = Some(Refusal {
                        reason: denied.reason(),
                        object,
                        username: String::from_utf8_lossy(name).into_owned(),
                    });
                    return Some(reply::error(&denied.reply_text(spec.name)));
                }
                cell.admin.load(std::sync::atomic::Ordering::Relaxed)
            }
            None => false,
        };
        if !admin && !self.deny.is_empty() {
            if let Some(rule) = self.deny.rule(id) {
                return Some(reply::error(&deny::refusal(spec.name, rule)));
            }
        }
        None
    }

    /// `PROXY …` (strata's administration, not in the command table): in
    /// users mode only a user with `admin = true` may run it; the others
    /// get Redis's NOPERM for a command they may not run.
    fn refuse_proxy<A: ArgList + ?Sized>(&mut self, args: &A) -> Option<Bytes> {
        let LoggedIn { name, cell, .. } = self.user.as_ref()?;
        if !args.arg(0)?.eq_ignore_ascii_case(b"proxy")
            || cell.admin.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        self.refusal = Some(Refusal {
            reason: Denied::Command.reason(),
            object: "proxy".to_string(),
            username: String::from_utf8_lossy(name).into_owned(),
        });
        Some(reply::error(&Denied::Command.reply_text("proxy")))
    }

    /// ACL DRYRUN's answer for `user` running `args`: `None` when allowed,
    /// else Redis's text.
    pub fn dry_run(
        user: &acl::AclUser,
        spec: &'static CommandSpec,
        args: &[Bytes],
    ) -> Option<String> {
        let id = ids::of(spec)?;
        acl::check(user, id, spec, args).err().map(|d| match d {
            Denied::Command => format!(
                "This user has no permissions to run the '{}' command",
                spec.name
            ),
            Denied::Key(i) => format!(
                "This user has no permissions to access the '{}' key",
                String::from_utf8_lossy(&args[i])
            ),
            Denied::Channel(i) => format!(
                "This user has no permissions to access the '{}' channel",
                String::from_utf8_lossy(&args[i])
            ),
        })
    }
}
