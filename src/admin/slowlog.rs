//! `PROXY SLOWLOG GET [n] | LEN | RESET`: Redis's SLOWLOG for what the
//! clients of strata waited for.
//!
//! Recorded by the session's writer when a reply is written: the duration
//! it already measured for the latency histogram is compared with the
//! threshold (`server.slowlog_log_slower_than_us`), one comparison per
//! reply batch. Only a command over it pays for more: its arguments are
//! read back from the batch's bytes (the writer keeps a reference to them,
//! not a copy), truncated as Redis truncates them, and values of keys
//! under a `[[transform]]` rule replaced by a placeholder.
//!
//! An entry is Redis's six fields (id, unix time, duration µs, arguments,
//! client address, client name) followed by strata's split of the
//! duration: µs spent in strata before the request was handed to the
//! backend connection, and µs from then until its reply was taken by the
//! writer (the backend's round trip, including the connection's queue).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::protocol::{Protocol, ReplyBuf};
use crate::transform::Transforms;

/// Redis's `SLOWLOG_ENTRY_MAX_ARGC`.
const MAX_ARGC: usize = 32;
/// Redis's `SLOWLOG_ENTRY_MAX_STRING`.
const MAX_STRING: usize = 128;
/// Bytes of a batch kept for the slow log, from its start: a copy, made
/// for every batch, so it is kept small. It holds a pipeline's first
/// commands (or one command's first arguments); a command past it is not
/// logged, an argument cut by it is shown cut, as Redis cuts one.
pub const KEEP_BYTES: usize = 512;
/// What a value under a `[[transform]]` rule is shown as.
pub const HIDDEN: &str = "(transformed value hidden)";

/// One recorded command.
#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    unix_secs: u64,
    duration_us: u64,
    args: Vec<Bytes>,
    addr: String,
    name: Bytes,
    strata_us: u64,
    backend_us: u64,
}

/// The slow log: a bounded list of the slowest commands' entries.
#[derive(Debug)]
pub struct Slowlog {
    /// Microseconds; `u64::MAX` when off (a negative threshold). Atomic:
    /// a config reload changes it (`set`).
    threshold_us: AtomicU64,
    max_len: std::sync::atomic::AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<Entry>>,
}

/// Who sent the slow command.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// Its address.
    pub addr: &'a std::net::SocketAddr,
    /// Its CLIENT SETNAME name, if any.
    pub name: Option<&'a Bytes>,
}

/// What the writer knows of a slow reply batch.
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    /// The batch's requests, back to back, as sent to the backend.
    pub frames: &'a Bytes,
    /// When the first was parsed.
    pub started: Instant,
    /// When the batch was handed to the backend connection.
    pub sent: Instant,
    /// Parse to reply.
    pub elapsed: Duration,
}

impl Slowlog {
    /// From `server.slowlog_log_slower_than_us` and `server.slowlog_max_len`.
    pub fn new(slower_than_us: i64, max_len: usize) -> Slowlog {
        let log = Slowlog {
            threshold_us: AtomicU64::new(u64::MAX),
            max_len: std::sync::atomic::AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        };
        log.set(slower_than_us, max_len);
        log
    }

    /// A config reload's new threshold and length (the log is cut to it).
    pub fn set(&self, slower_than_us: i64, max_len: usize) {
        let us = u64::try_from(slower_than_us).unwrap_or(u64::MAX);
        self.threshold_us.store(us, Ordering::Relaxed);
        self.max_len.store(max_len, Ordering::Relaxed);
        if let Ok(mut entries) = self.entries.lock() {
            entries.truncate(max_len);
        }
    }

    /// Replies that took at least this long are recorded.
    #[inline]
    pub fn threshold(&self) -> Duration {
        match self.threshold_us.load(Ordering::Relaxed) {
            u64::MAX => Duration::MAX,
            us => Duration::from_micros(us),
        }
    }

    /// False when the threshold is negative: nothing is ever recorded.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.threshold_us.load(Ordering::Relaxed) != u64::MAX
            && self.max_len.load(Ordering::Relaxed) > 0
    }

    /// Records each command of a slow batch (they share its duration: they
    /// were read together and answered together).
    #[cold]
    pub fn record(&self, m: Measured<'_>, client: Client<'_>, transforms: &Transforms) {
        let max_len = self.max_len.load(Ordering::Relaxed);
        if max_len == 0 {
            return;
        }
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let strata = m.sent.saturating_duration_since(m.started);
        let backend = m.elapsed.saturating_sub(strata);
        let mut new = Vec::new();
        for (argc, present) in read_commands(m.frames) {
            new.push(Entry {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                unix_secs,
                duration_us: m.elapsed.as_micros() as u64,
                args: shown_args(argc, &present, transforms),
                addr: client.addr.to_string(),
                name: client.name.cloned().unwrap_or_default(),
                strata_us: strata.as_micros() as u64,
                backend_us: backend.as_micros() as u64,
            });
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        for e in new {
            entries.push_front(e);
        }
        entries.truncate(max_len);
    }

    /// SLOWLOG LEN.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// SLOWLOG RESET.
    pub fn reset(&self) {
        if let Ok(mut e) = self.entries.lock() {
            e.clear();
        }
    }

    /// SLOWLOG GET [n]: newest first; `None` is Redis's default of 10, a
    /// negative count every entry.
    pub fn get(&self, count: Option<i64>, proto: Protocol) -> Bytes {
        let entries: Vec<Entry> = self
            .entries
            .lock()
            .map(|e| {
                let n = match count {
                    None => 10,
                    Some(n) if n < 0 => e.len(),
                    Some(n) => n as usize,
                };
                e.iter().take(n).cloned().collect()
            })
            .unwrap_or_default();
        let mut r = ReplyBuf::new(proto);
        r.array(entries.len());
        for e in &entries {
            r.array(8);
            r.integer(e.id as i64);
            r.integer(e.unix_secs as i64);
            r.integer(e.duration_us as i64);
            r.array(e.args.len());
            for a in &e.args {
                r.bulk(a);
            }
            r.bulk(e.addr.as_bytes());
            r.bulk(&e.name);
            r.integer(e.strata_us as i64);
            r.integer(e.backend_us as i64);
        }
        r.freeze()
    }
}

/// The commands in `buf`, RESP multibulks back to back, possibly cut
/// short ([`KEEP_BYTES`]): for each, its argument count and the arguments
/// present, each as the bytes kept and its full length. A command cut
/// before its first argument is left out.
fn read_commands(mut buf: &[u8]) -> Vec<(usize, Vec<(Bytes, usize)>)> {
    fn number(buf: &mut &[u8], kind: u8) -> Option<usize> {
        let rest = buf.strip_prefix(&[kind])?;
        let end = rest.iter().position(|&b| b == b'\r')?;
        let n = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        *buf = rest.get(end + 2..)?;
        Some(n)
    }
    let mut out = Vec::new();
    while let Some(argc) = number(&mut buf, b'*') {
        let mut present = Vec::new();
        while present.len() < argc {
            let Some(len) = number(&mut buf, b'$') else {
                break;
            };
            let kept = len.min(buf.len());
            present.push((Bytes::copy_from_slice(&buf[..kept]), len));
            buf = buf.get(len + 2..).unwrap_or_default();
        }
        if !present.is_empty() {
            out.push((argc, present));
        }
        if present_cut(&out, argc) {
            break;
        }
    }
    out
}

/// True when the last command read was cut short (nothing follows it).
fn present_cut(out: &[(usize, Vec<(Bytes, usize)>)], argc: usize) -> bool {
    out.last()
        .is_none_or(|(_, p)| p.len() < argc || p.last().is_some_and(|(b, len)| b.len() < *len))
}

/// The arguments as SLOWLOG shows them: at most 32 (the last then says how
/// many more there were), strings over 128 bytes cut, and every argument
/// that is not a key hidden when a key falls under a `[[transform]]` rule.
/// `argc` is the command's argument count; `present` the arguments kept
/// (bytes, full length): fewer, or shorter, when the batch was cut at
/// [`KEEP_BYTES`].
fn shown_args(argc: usize, present: &[(Bytes, usize)], transforms: &Transforms) -> Vec<Bytes> {
    let args: Vec<Bytes> = present.iter().map(|(b, _)| b.clone()).collect();
    let hidden = hidden_positions(&args, transforms);
    let redacted = redacted_positions(&args);
    let shown = argc.min(MAX_ARGC);
    let mut out = Vec::with_capacity(shown);
    for i in 0..shown {
        let more = argc - i;
        if (i == shown - 1 && argc > shown) || i >= present.len() {
            out.push(Bytes::from(format!("... ({more} more arguments)")));
            break;
        }
        let (a, len) = &present[i];
        if redacted.contains(&i) {
            out.push(Bytes::from_static(REDACTED.as_bytes()));
        } else if hidden.as_ref().is_some_and(|h| h(i)) {
            out.push(Bytes::from_static(HIDDEN.as_bytes()));
        } else if *len > MAX_STRING || a.len() < *len {
            let cut = a.len().min(MAX_STRING);
            let mut s = a[..cut].to_vec();
            s.extend_from_slice(format!("... ({} more bytes)", len - cut).as_bytes());
            out.push(Bytes::from(s));
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// What a secret argument is shown as (Redis's `shared.redacted`).
pub const REDACTED: &str = "(redacted)";

/// The arguments Redis 7.0 redacts before its slow log sees them
/// (`redactClientCommandArgument`): passwords of AUTH, HELLO … AUTH,
/// MIGRATE … AUTH/AUTH2, every argument of ACL SETUSER after the
/// subcommand, and CONFIG SET's values of its sensitive parameters.
fn redacted_positions(args: &[Bytes]) -> Vec<usize> {
    let is = |i: usize, word: &str| {
        args.get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    };
    let mut out = Vec::new();
    if is(0, "auth") {
        out.extend(1..args.len().min(3));
    } else if is(0, "hello") {
        // HELLO protover [AUTH user pass] [SETNAME name]
        let mut i = 2;
        while i < args.len() {
            if is(i, "auth") {
                out.extend([i + 1, i + 2]);
                i += 3;
            } else {
                i += 2;
            }
        }
    } else if is(0, "migrate") {
        for i in 6..args.len() {
            if is(i, "auth") {
                out.push(i + 1);
            } else if is(i, "auth2") {
                out.extend([i + 1, i + 2]);
            }
        }
    } else if is(0, "acl") && is(1, "setuser") {
        out.extend(2..args.len());
    } else if is(0, "config") && is(1, "set") {
        for i in (2..args.len()).step_by(2) {
            if ["masteruser", "masterauth", "requirepass"]
                .iter()
                .any(|p| is(i, p))
            {
                out.push(i + 1);
            }
        }
    }
    out
}

/// Which arguments to hide: `None` when no key of the command is under a
/// rule. When one is, everything but the command name (and subcommand)
/// and the keys is hidden; a command whose keys cannot be told hides
/// every argument.
fn hidden_positions(args: &[Bytes], transforms: &Transforms) -> Option<impl Fn(usize) -> bool> {
    if transforms.is_empty() || args.is_empty() {
        return None;
    }
    let rules = transforms.rules();
    let spec = crate::command::lookup(args);
    let keys: Vec<usize> = match spec {
        Some(spec) => crate::command::key_indexes(spec, args).iter().collect(),
        None => Vec::new(),
    };
    let under_rule = if keys.is_empty() {
        // Unknown key positions: any argument naming a ruled key hides all.
        args[1..].iter().any(|a| rules.rule_for(a).is_some())
    } else {
        keys.iter()
            .any(|&i| args.get(i).is_some_and(|k| rules.rule_for(k).is_some()))
    };
    if !under_rule {
        return None;
    }
    let name_len = spec.map_or(1, |s| if s.name.contains('|') { 2 } else { 1 });
    Some(move |i: usize| i >= name_len && !keys.contains(&i))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<Bytes> {
        w.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn lens(args: &[Bytes]) -> Vec<(Bytes, usize)> {
        args.iter().map(|a| (a.clone(), a.len())).collect()
    }

    #[test]
    fn a_batch_cut_short_shows_what_was_kept() {
        let t = Transforms::disabled();
        let frames = b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123";
        let cmds = read_commands(frames);
        assert_eq!(cmds.len(), 2);
        let shown = shown_args(cmds[1].0, &cmds[1].1, &t);
        assert_eq!(shown, words(&["SET", "k", "0123... (6 more bytes)"]));
        let cut = read_commands(b"*4\r\n$4\r\nMGET\r\n$1\r\na\r\n$1");
        let shown = shown_args(cut[0].0, &cut[0].1, &t);
        assert_eq!(shown, words(&["MGET", "a", "... (2 more arguments)"]));
        assert!(read_commands(b"*2\r\n").is_empty());
        assert!(read_commands(b"").is_empty());
    }

    #[test]
    fn arguments_are_truncated_as_redis_does() {
        let t = Transforms::disabled();
        let mut many = vec!["DEL".to_string()];
        many.extend((0..40).map(|i| format!("k{i}")));
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let shown = shown_args(many.len(), &lens(&words(&many)), &t);
        assert_eq!(shown.len(), 32);
        assert_eq!(&shown[31][..], b"... (10 more arguments)");
        assert_eq!(&shown[30][..], b"k29");
        let long = "x".repeat(200);
        let shown = shown_args(3, &lens(&words(&["SET", "k", &long])), &t);
        assert_eq!(shown[2].len(), 128 + "... (72 more bytes)".len());
        assert!(shown[2].ends_with(b"... (72 more bytes)"));
    }

    #[test]
    fn secrets_are_redacted_as_redis_redacts_them() {
        let t = Transforms::disabled();
        let show = |w: &[&str]| shown_args(w.len(), &lens(&words(w)), &t);
        assert_eq!(
            show(&["AUTH", "u", "pw"]),
            words(&["AUTH", REDACTED, REDACTED])
        );
        assert_eq!(show(&["auth", "pw"]), words(&["auth", REDACTED]));
        assert_eq!(
            show(&["HELLO", "3", "SETNAME", "n", "AUTH", "u", "pw"]),
            words(&["HELLO", "3", "SETNAME", "n", "AUTH", REDACTED, REDACTED])
        );
        assert_eq!(
            show(&["CONFIG", "SET", "maxmemory", "1", "requirepass", "x"]),
            words(&["CONFIG", "SET", "maxmemory", "1", "requirepass", REDACTED])
        );
        assert_eq!(
            show(&["ACL", "SETUSER", "u", ">pw"]),
            words(&["ACL", "SETUSER", REDACTED, REDACTED])
        );
        assert_eq!(
            show(&["MIGRATE", "h", "1", "k", "0", "5", "AUTH2", "u", "pw"]),
            words(&["MIGRATE", "h", "1", "k", "0", "5", "AUTH2", REDACTED, REDACTED])
        );
    }

    #[test]
    fn a_threshold_below_zero_is_off_and_the_log_is_bounded() {
        assert_eq!(Slowlog::new(-1, 128).threshold(), Duration::MAX);
        let log = Slowlog::new(0, 2);
        let frames = Bytes::from_static(
            b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n",
        );
        let now = Instant::now();
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        log.record(
            Measured {
                frames: &frames,
                started: now,
                sent: now,
                elapsed: Duration::from_millis(1),
            },
            Client {
                addr: &addr,
                name: None,
            },
            &Transforms::disabled(),
        );
        assert_eq!(log.len(), 2);
        log.reset();
        assert!(log.is_empty());
    }
}
