//! Redis ACL rules for strata's own users (`auth.mode = "users"`).
//!
//! The semantics are Redis 7.0's (acl.c), so that a user written into
//! strata and into a redis-server with the same `ACL SETUSER` rules is
//! allowed and refused the same commands, keys and channels
//! (`tests/acl.rs` replays the same commands against both):
//!
//! * [`table`]: each command's ACL categories and key-spec permissions,
//!   generated from a live Redis (`tests/support/gen_acl_table.py`);
//! * [`ids`]: a command table entry to its ACL id, the index of its bit;
//! * [`rules`]: a user and Redis's `ACLSetUser` operations on it;
//! * [`describe`]: the user back as rules (`ACL LIST`, `ACL SAVE`);
//! * [`check`]: may this user run this command on these keys and channels.
//!
//! Selectors (`(…)`) are not supported: they are refused as a syntax error.

pub mod check;
pub mod describe;
pub mod ids;
pub mod rules;
pub mod table;

#[cfg(test)]
mod proptests;

pub use check::{check, Denied};
pub use rules::AclUser;
