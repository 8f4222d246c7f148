//! strata: a sidecar proxy that speaks the Redis protocol (RESP2 and RESP3).
//!
//! Unmodified Redis clients connect to strata as if it were Redis; strata
//! multiplexes their commands over a few pipelined backend connections and
//! gives clients that need server-side state (MULTI, blocking commands,
//! pub/sub, …) a dedicated connection for as long as the state lasts.
//!
//! # Layout
//!
//! The dependency arrows point downwards: a module uses only those below it.
//!
//! * [`app`]: wiring and shutdown; the only module that sees every other one.
//! * [`server`]: listener, sessions (read → dispatch → ordered replies), local commands.
//! * [`policy`]: the one seam between command lookup and routing (auth, the tier step).
//! * [`auth`]: who a client is: AUTH checked against the backend's ACL, NOAUTH.
//! * [`admin`]: `PROXY …` commands (REWRAP), answered by strata itself.
//! * [`backend`]: multiplexed connections, the dedicated pool, nodes with breakers, the
//!   router, and the standalone and Sentinel backends.
//! * [`telemetry`]: metrics registry, HTTP /metrics and /health/*.
//! * [`transform`]: per-key-pattern value compression (lz4) and encryption (AES-GCM).
//! * [`tier`]: Postgres tiers: keys mirrored write-through into Postgres, read-through.
//! * [`tls`]: TLS for clients and to backends (rustls), certificates reloaded live.
//! * [`command`]: the command table (data), key positions, hash slots.
//! * [`config`]: serde structs and validation.
//! * [`protocol`]: RESP2/RESP3 framing and encoding; imports nothing internal.
//!
//! See docs/ARCHITECTURE.md for the data path.

pub mod admin;
pub mod app;
pub mod auth;
pub mod backend;
pub mod command;
pub mod config;
pub mod coord;
pub mod policy;
pub mod protocol;
pub mod server;
pub mod telemetry;
pub mod tier;
pub mod tls;
pub mod transform;
