//! Which commands carry values, and how requests are rewritten for rules.
//!
//! The knowledge is a table (`TABLE`): each command that touches values of
//! strings, hashes or lists maps to a `Shape` saying where its keys and
//! values are and what its reply holds. Commands not in the table never carry
//! a value that a rule transforms (DEL, EXPIRE, TYPE, set and sorted-set
//! commands, …) and pass through untouched, without even looking at rules.
//!
//! Sets and sorted sets hold members, not values: members are compared,
//! hashed and sorted by Redis, so they are never transformed. Streams are not
//! transformed either.
//!
//! Outcomes for a command on a key under a rule:
//! * values in the request are sealed ([`Rewrite::Args`]);
//! * a [`ReplyPlan`] says how to open the values in the reply;
//! * or the command is refused, when its meaning would silently break on
//!   stored bytes that are not the client's bytes (APPEND, INCR, GETRANGE,
//!   bit operations, …). The error names the command, the key and the rule.

mod args;
mod encode;
mod outcome;
mod prepare;
mod table;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use encode::encode_request;
pub use outcome::{Prepared, ReplyPlan, Rewrite};
