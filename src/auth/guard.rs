//! The per-client command check (`policy::check` calls it): the client's
//! ACL user in users mode, then the deny list. Held by `ClientAuth` only
//! when something is to be checked.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::acl::{self, ids, Denied};
use super::deny::{self, DenyList};
use super::users::{UserCell, Users};
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

/// One client's command check.
#[derive(Debug)]
pub struct Guard {
    users: Option<Arc<Users>>,
    deny: Arc<DenyList>,
    /// The strata user logged in as (users mode).
    user: Option<(Bytes, Arc<UserCell>)>,
    /// The last refusal, for the ACL log.
    refusal: Mutex<Option<Refusal>>,
}

impl Clone for Guard {
    fn clone(&self) -> Self {
        Guard {
            users: self.users.clone(),
            deny: self.deny.clone(),
            user: self.user.clone(),
            refusal: Mutex::new(None),
        }
    }
}

impl Guard {
    /// For a new client.
    pub fn new(policy: &AuthPolicy) -> Guard {
        Guard {
            users: policy.users.clone(),
            deny: policy.deny.clone(),
            user: None,
            refusal: Mutex::new(None),
        }
    }

    pub(super) fn set_user(&mut self, name: Bytes, cell: Arc<UserCell>) {
        self.user = Some((name, cell));
    }

    /// The strata user's name (users mode, logged in).
    pub fn user_name(&self) -> Option<&Bytes> {
        self.user.as_ref().map(|(n, _)| n)
    }

    /// The strata user (users mode, logged in).
    pub fn user(&self) -> Option<&Arc<UserCell>> {
        self.user.as_ref().map(|(_, c)| c)
    }

    /// strata's users (users mode).
    pub fn users(&self) -> Option<&Arc<Users>> {
        self.users.as_ref()
    }

    /// The refusal last answered, once.
    pub fn take_refusal(&self) -> Option<Refusal> {
        self.refusal.lock().ok().and_then(|mut r| r.take())
    }

    /// What to do with a command. A command with a wrong arity passes:
    /// the arity error comes first, as in Redis.
    pub fn check<A: ArgList + ?Sized>(
        &self,
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
        &self,
        spec: Option<&'static CommandSpec>,
        args: &A,
    ) -> Option<Bytes> {
        let spec = spec?;
        if !spec.arity_ok(args.argc()) {
            return None;
        }
        let id = ids::of(spec)?;
        let admin = match &self.user {
            Some((name, cell)) => {
                let acl = cell.acl.load();
                let Some(user) = acl.as_ref() else {
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
                    if let Ok(mut r) = self.refusal.lock() {
                        *r = Some(Refusal {
                            reason: denied.reason(),
                            object,
                            username: String::from_utf8_lossy(name).into_owned(),
                        });
                    }
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
