//! The coordination commands as data. Everything that lists or checks
//! them reads this: the policy step (is this one of ours?), the arity
//! check, COMMAND / COMMAND INFO / COUNT / DOCS / LIST / GETKEYS
//! (`command_info.rs`). A primitive's file declares its `SPECS`; adding one
//! is a line in [`SPECS`].
//!
//! Every coordination command names its object at position 1, and that
//! name is its key (first = last = 1, step 1; see `keys.rs` for why the
//! object's keys hash like the name).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::{ClientCoord, Coord};
use crate::protocol::Protocol;

/// A command's reply, computed asynchronously.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Bytes> + Send + 'a>>;

/// What a handler gets.
pub struct Call<'a> {
    /// The service.
    pub coord: &'a Arc<Coord>,
    /// The calling connection's state.
    pub client: &'a mut ClientCoord,
    /// The request, command name included; its arity is already checked.
    pub args: &'a [Bytes],
    /// The client's protocol, for the reply.
    pub proto: Protocol,
}

/// Runs a command.
pub type Handler = for<'a> fn(Call<'a>) -> Reply<'a>;

/// An argument's kind, as COMMAND DOCS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// The object's name (the key).
    Key,
    /// An integer.
    Integer,
    /// A string.
    String,
    /// A keyword alone (KEEPALIVE).
    PureToken,
}

impl ArgKind {
    fn name(self) -> &'static str {
        match self {
            ArgKind::Key => "key",
            ArgKind::Integer => "integer",
            ArgKind::String => "string",
            ArgKind::PureToken => "pure-token",
        }
    }
}

/// One argument in COMMAND DOCS.
#[derive(Debug, Clone, Copy)]
pub struct Arg {
    /// Its name (`ttl_ms`).
    pub name: &'static str,
    /// Its kind.
    pub kind: ArgKind,
    /// The keyword before it (`WAIT`), if any.
    pub token: Option<&'static str>,
    /// May be left out.
    pub optional: bool,
}

impl Arg {
    /// A required argument.
    pub const fn required(name: &'static str, kind: ArgKind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
        }
    }

    /// An optional `TOKEN value` (or a pure token when `kind` says so).
    pub const fn option(name: &'static str, kind: ArgKind, token: &'static str) -> Arg {
        Arg {
            name,
            kind,
            token: Some(token),
            optional: true,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its kind's name in COMMAND DOCS.
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }
}

/// One coordination command.
#[derive(Debug)]
pub struct Spec {
    /// Lower-case name, dotted as Redis modules name theirs.
    pub name: &'static str,
    /// Redis arity (negative: at least).
    pub arity: i32,
    /// Redis command flags (`write`, `readonly`, `fast`, `denyoom`, …).
    pub flags: &'static [&'static str],
    /// ACL categories (`@write`, `@slow`, …).
    pub acl: &'static [&'static str],
    /// The key spec's flags (`RW`, `RO`, `update`, `access`, …, as Redis spells them).
    pub key_flags: &'static [&'static str],
    /// COMMAND DOCS `summary`.
    pub summary: &'static str,
    /// COMMAND DOCS `complexity`.
    pub complexity: &'static str,
    /// COMMAND DOCS `arguments`, after the name.
    pub args: &'static [Arg],
    /// Runs it.
    pub run: Handler,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("args", &self.args).finish()
    }
}

impl Spec {
    /// True when `argc` (the name included) fits the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }
}

/// Every primitive's commands.
pub static SPECS: &[&[Spec]] = &[
    super::lock::SPECS,
    super::sem::SPECS,
    super::latch::SPECS,
    super::barrier::SPECS,
    super::leader::SPECS,
    super::vset::SPECS,
];

/// Every coordination command.
pub fn all() -> impl Iterator<Item = &'static Spec> {
    SPECS.iter().flat_map(|s| s.iter())
}

/// How many there are (COMMAND COUNT adds this).
pub fn count() -> usize {
    SPECS.iter().map(|s| s.len()).sum()
}

/// The command named `name` (any case), if it is one of ours. Only
/// commands strata's own table does not know come here.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    if name.len() < 3 || !(name.contains(&b'.') || super::vset::undotted(name)) {
        return None;
    }
    all().find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lower_case_and_unknown_to_redis() {
        let mut names: Vec<&str> = all().map(|s| s.name).collect();
        for n in &names {
            assert_eq!(*n, n.to_ascii_lowercase());
            assert!(crate::command::lookup_name(n.as_bytes()).is_none(), "{n}");
            assert!(lookup(n.to_ascii_uppercase().as_bytes()).is_some());
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count());
        assert!(lookup(b"get").is_none());
    }

    #[test]
    fn arity() {
        let acquire = lookup(b"lock.acquire").expect("lock.acquire");
        assert!(!acquire.arity_ok(2));
        assert!(acquire.arity_ok(3));
        assert!(acquire.arity_ok(8));
        let release = lookup(b"LOCK.RELEASE").expect("lock.release");
        assert!(release.arity_ok(3) && !release.arity_ok(4));
    }
}
