//! Limits that protect strata from clients it does not know yet: which
//! networks may connect at all (`allow_cidrs`, `deny_cidrs`), and how
//! fast one address may guess passwords (failed AUTHs, with a hold-back
//! that doubles with each failure past the allowance). The per-request
//! caps before AUTH (10 arguments, 16 KiB bulks, as Redis) are the
//! parser's (`protocol::RequestParser::unauthenticated`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::config::LimitsConfig;

/// Which networks may connect. Clones share the lists, which a config
/// reload swaps (read once per accepted connection).
#[derive(Debug, Clone, Default)]
pub struct Cidrs(Arc<ArcSwap<Lists>>);

#[derive(Debug, Default)]
struct Lists {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Cidrs {
    /// From `[auth.limits]`.
    pub fn from_config(c: &LimitsConfig) -> Cidrs {
        let cidrs = Cidrs::default();
        cidrs.set(c);
        cidrs
    }

    /// A reload's lists, for the connections accepted from now on.
    pub fn set(&self, c: &LimitsConfig) {
        self.0.store(Arc::new(Lists {
            allow: c.allow_cidrs.clone(),
            deny: c.deny_cidrs.clone(),
        }));
    }

    /// True when a client from `ip` may connect: not in a denied network,
    /// and in an allowed one when any is listed. IPv4-mapped IPv6
    /// addresses are checked as IPv4.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let lists = self.0.load();
        lists.admits(ip)
    }
}

impl Lists {
    fn admits(&self, ip: IpAddr) -> bool {
        if self.allow.is_empty() && self.deny.is_empty() {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// The reply to an AUTH from an address that is held back.
pub const HELD_BACK: &str = "ERR too many failed AUTH attempts from this address; try again later";

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
}

/// Failed AUTHs per client address, bounded.
#[derive(Debug)]
pub struct AuthLimiter {
    table: Mutex<Table>,
}

/// The settings and the addresses, under one lock (taken once per AUTH).
#[derive(Debug)]
struct Table {
    allowed: u32,
    base: Duration,
    max: Duration,
    capacity: usize,
    failures: HashMap<IpAddr, Failures>,
}

impl AuthLimiter {
    /// From `[auth.limits]`.
    pub fn from_config(c: &LimitsConfig) -> AuthLimiter {
        let l = AuthLimiter {
            table: Mutex::new(Table {
                allowed: 0,
                base: Duration::ZERO,
                max: Duration::ZERO,
                capacity: 1,
                failures: HashMap::new(),
            }),
        };
        l.set(c);
        l
    }

    /// A reload's settings; the addresses held back stay so until their
    /// time is up (a shorter table forgets the ones ending first).
    pub fn set(&self, c: &LimitsConfig) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.allowed = c.auth_failures_allowed;
        t.base = Duration::from_millis(c.auth_penalty_ms);
        t.max = Duration::from_millis(c.auth_penalty_max_ms.max(c.auth_penalty_ms));
        t.capacity = c.auth_tracked_addresses.max(1);
        while t.failures.len() > t.capacity {
            if let Some(first) = t
                .failures
                .iter()
                .min_by_key(|(_, f)| f.until)
                .map(|(k, _)| *k)
            {
                t.failures.remove(&first);
            }
        }
    }

    /// True when `ip` may try an AUTH now.
    pub fn may_try(&self, ip: IpAddr, now: Instant) -> bool {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.failures.get(&ip).is_none_or(|f| now >= f.until)
    }

    /// A failed AUTH from `ip`: past the allowance, it is held back for
    /// `base × 2^(failures past the allowance − 1)`, at most `max`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut guard = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let (allowed, base, max, capacity) = (guard.allowed, guard.base, guard.max, guard.capacity);
        let table = &mut guard.failures;
        if table.len() >= capacity && !table.contains_key(&ip) {
            table.retain(|_, f| f.until > now);
            if table.len() >= capacity {
                // Still full: forget the one whose hold-back ends first.
                if let Some(oldest) = table.iter().min_by_key(|(_, f)| f.until).map(|(k, _)| *k) {
                    table.remove(&oldest);
                }
            }
        }
        let entry = table.entry(ip).or_insert(Failures {
            count: 0,
            until: now,
        });
        entry.count = entry.count.saturating_add(1);
        if entry.count > allowed {
            let exp = (entry.count - allowed - 1).min(30);
            let penalty = base.saturating_mul(1u32 << exp).min(max);
            entry.until = now + penalty;
        }
    }

    /// A successful AUTH: the address starts afresh.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.failures.remove(&ip);
    }

    /// Addresses remembered (for tests of the bound).
    pub fn tracked(&self) -> usize {
        self.table.lock().map_or(0, |t| t.failures.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            auth_failures_allowed: 2,
            auth_penalty_ms: 100,
            auth_penalty_max_ms: 1000,
            auth_tracked_addresses: 3,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn penalty_grows_and_is_capped() {
        let l = AuthLimiter::from_config(&limits());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        l.failed(ip, t);
        l.failed(ip, t);
        assert!(l.may_try(ip, t));
        l.failed(ip, t); // 100 ms
        assert!(!l.may_try(ip, t + Duration::from_millis(99)));
        assert!(l.may_try(ip, t + Duration::from_millis(100)));
        l.failed(ip, t); // 200 ms
        assert!(!l.may_try(ip, t + Duration::from_millis(199)));
        for _ in 0..10 {
            l.failed(ip, t);
        }
        assert!(l.may_try(ip, t + Duration::from_millis(1000)));
        l.succeeded(ip);
        assert!(l.may_try(ip, t));
    }

    #[test]
    fn memory_is_bounded() {
        let l = AuthLimiter::from_config(&limits());
        let t = Instant::now();
        for i in 0..100u8 {
            l.failed(IpAddr::from([10, 0, 0, i]), t);
        }
        assert!(l.tracked() <= 3);
    }

    #[test]
    fn cidrs() {
        let c = Cidrs::from_config(&LimitsConfig {
            allow_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
            deny_cidrs: vec!["127.0.0.2/32".parse().unwrap()],
            ..LimitsConfig::default()
        });
        assert!(c.admits("127.0.0.1".parse().unwrap()));
        assert!(c.admits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.admits("127.0.0.2".parse().unwrap()));
        assert!(!c.admits("10.0.0.1".parse().unwrap()));
    }
}
