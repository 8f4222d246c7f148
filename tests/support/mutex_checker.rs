//! The mutex checker (issue 15's safety tests), in the manner of etcd's
//! contrib/lock demo and Kleppmann's fencing argument.
//!
//! The *protected resource* is a store that remembers the highest fencing
//! token it has seen and rejects a write with a lower one. It is a
//! redis-server of its own (not behind strata), so client processes share
//! it and one clock (Redis's TIME) stamps every write. Each holder writes
//! `begin` once it holds the lock and `end` before it releases; every
//! write, accepted or rejected, is appended to a log there:
//! `token client phase seconds microseconds ok|rejected`.
//!
//! The checker reads the log. A *hold* is a (client, token) whose begin
//! and end writes were both accepted. It verifies that no two holds
//! overlap in time and that tokens strictly increase from one hold to the
//! next. A resource built without the token check (`fenced = false`)
//! accepts the late `end` of a client paused past its ttl, and the checker
//! must then find the overlap: tests/coord_mutex.rs shows it does.

use std::net::TcpStream;
use std::time::Duration;

use super::raw;

/// The resource's write: the fencing check, the log entry, one script.
/// KEYS[1] the highest token seen, KEYS[2] the log. ARGV token, client,
/// phase, fenced (1/0).
const WRITE: &str = r"
local t = tonumber(ARGV[1])
local max = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = redis.call('TIME')
local entry = ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. now[1] .. ' ' .. now[2]
if ARGV[4] == '1' and t < max then
  redis.call('RPUSH', KEYS[2], entry .. ' rejected')
  return 0
end
if t > max then
  redis.call('SET', KEYS[1], t)
end
redis.call('RPUSH', KEYS[2], entry .. ' ok')
return 1
";

const MAX_KEY: &[u8] = b"resource:max";
const LOG_KEY: &[u8] = b"resource:log";

/// One write to the resource, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The fencing token it carried.
    pub token: i64,
    /// The client process.
    pub client: u32,
    /// `begin` or `end`.
    pub begin: bool,
    /// The resource's clock, in µs.
    pub at_us: u64,
    /// Accepted by the resource.
    pub accepted: bool,
}

/// One accepted hold: begin and end both accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub token: i64,
    pub client: u32,
    pub start_us: u64,
    pub end_us: u64,
}

/// What a passing check saw.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Accepted holds.
    pub holds: usize,
    /// Writes the resource rejected (a stale token).
    pub rejected: Vec<(u32, i64)>,
    /// The highest token of an accepted hold.
    pub max_token: i64,
}

/// A client's connection to the resource.
pub struct Resource {
    conn: TcpStream,
    fenced: bool,
}

impl Resource {
    /// Connects to the resource's redis-server at `addr`.
    pub fn connect(addr: &str, fenced: bool) -> Resource {
        Resource {
            conn: raw::connect(addr, Duration::from_secs(30)),
            fenced,
        }
    }

    /// Writes `phase` for `client` with `token`; true when accepted.
    pub fn write(&mut self, token: i64, client: u32, begin: bool) -> Result<bool, String> {
        let token = token.to_string();
        let client = client.to_string();
        let phase: &[u8] = if begin { b"begin" } else { b"end" };
        let fenced: &[u8] = if self.fenced { b"1" } else { b"0" };
        let req = raw::cmd(&[
            b"EVAL",
            WRITE.as_bytes(),
            b"2",
            MAX_KEY,
            LOG_KEY,
            token.as_bytes(),
            client.as_bytes(),
            phase,
            fenced,
        ]);
        let reply = raw::call(&mut self.conn, &req, Duration::from_secs(30))?;
        match &reply[..] {
            b":1\r\n" => Ok(true),
            b":0\r\n" => Ok(false),
            other => Err(format!("resource answered {}", raw::escape(other))),
        }
    }

    /// The whole log.
    pub fn log(&mut self) -> Result<Vec<Write>, String> {
        let req = raw::cmd(&[b"LRANGE", LOG_KEY, b"0", b"-1"]);
        let reply = raw::call(&mut self.conn, &req, Duration::from_secs(30))?;
        let text = String::from_utf8_lossy(&reply).into_owned();
        text.split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
            .map(parse_entry)
            .collect()
    }
}

/// One log line: `token client phase seconds microseconds ok|rejected`.
pub fn parse_entry(line: &str) -> Result<Write, String> {
    let f: Vec<&str> = line.split(' ').collect();
    let bad = || format!("bad log entry {line:?}");
    if f.len() != 6 {
        return Err(bad());
    }
    let secs: u64 = f[3].parse().map_err(|_| bad())?;
    let micros: u64 = f[4].parse().map_err(|_| bad())?;
    Ok(Write {
        token: f[0].parse().map_err(|_| bad())?,
        client: f[1].parse().map_err(|_| bad())?,
        begin: match f[2] {
            "begin" => true,
            "end" => false,
            _ => return Err(bad()),
        },
        at_us: secs * 1_000_000 + micros,
        accepted: match f[5] {
            "ok" => true,
            "rejected" => false,
            _ => return Err(bad()),
        },
    })
}

/// Checks a history: accepted holds never overlap, and their tokens
/// strictly increase in time order. `Err` names the first violation.
pub fn check(writes: &[Write]) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut begins: std::collections::HashMap<(u32, i64), u64> = Default::default();
    let mut holds = Vec::new();
    for w in writes {
        if !w.accepted {
            summary.rejected.push((w.client, w.token));
            continue;
        }
        if w.begin {
            if begins.insert((w.client, w.token), w.at_us).is_some() {
                return Err(format!(
                    "client {} began twice with token {}",
                    w.client, w.token
                ));
            }
        } else if let Some(start) = begins.remove(&(w.client, w.token)) {
            holds.push(Hold {
                token: w.token,
                client: w.client,
                start_us: start,
                end_us: w.at_us,
            });
        }
    }
    holds.sort_by_key(|h| (h.start_us, h.end_us));
    for pair in holds.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.start_us < a.end_us {
            return Err(format!(
                "overlap: client {} (token {}) held [{}, {}] µs while client {} (token {}) began at {}",
                a.client, a.token, a.start_us, a.end_us, b.client, b.token, b.start_us
            ));
        }
        if b.token <= a.token {
            return Err(format!(
                "tokens not strictly increasing: client {} held token {} after client {} held token {}",
                b.client, b.token, a.client, a.token
            ));
        }
    }
    summary.holds = holds.len();
    summary.max_token = holds.iter().map(|h| h.token).max().unwrap_or(0);
    Ok(summary)
}
