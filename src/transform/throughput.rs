//! Single-core throughput of the transforms on a realistic JSON corpus, and
//! the corpus's compression ratio. Ignored by default; numbers only mean
//! something in release mode:
//!
//! ```text
//! cargo test --release --lib transform::throughput -- --ignored --nocapture
//! ```
//!
//! The proxy-level benchmark (GET/SET through strata) lives in `make bench`;
//! this measures the per-value CPU cost it is made of.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::envelope::{open, seal_with, Location};
use super::keyring::Keyring;

/// xorshift64*: deterministic, so every run measures the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// One JSON document of about `size` bytes, shaped like API/session payloads:
/// repeated field names, enum-like values, timestamps, numbers, some random
/// tokens (which do not compress) and a little free text.
fn json_value(rng: &mut Rng, size: usize) -> Vec<u8> {
    const FIRST: &[&str] = &[
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    const LAST: &[&str] = &[
        "smith", "jones", "martin", "garcia", "muller", "rossi", "novak",
    ];
    const CITY: &[&str] = &[
        "Lyon", "Berlin", "Austin", "Osaka", "Porto", "Denver", "Turin",
    ];
    const TAGS: &[&str] = &[
        "premium", "beta", "admin", "trial", "mobile", "eu", "us", "legacy",
    ];
    const WORDS: &[&str] = &[
        "order",
        "shipped",
        "pending",
        "the",
        "customer",
        "requested",
        "a",
        "refund",
        "for",
        "item",
        "delivery",
        "was",
        "late",
        "and",
        "package",
        "damaged",
        "support",
        "ticket",
    ];
    let mut s = String::from("{\"items\":[");
    let mut first = true;
    while s.len() < size {
        if !first {
            s.push(',');
        }
        first = false;
        let (f, l) = (rng.pick(FIRST), rng.pick(LAST));
        let token: String = (0..2).map(|_| format!("{:016x}", rng.next())).collect();
        let note: Vec<&str> = (0..6 + rng.next() % 10).map(|_| rng.pick(WORDS)).collect();
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"{f}.{l}\",\"email\":\"{f}.{l}@example.com\",\
             \"created_at\":\"2024-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"active\":{},\
             \"score\":{}.{},\"tags\":[\"{}\",\"{}\"],\"address\":{{\"city\":\"{}\",\
             \"zip\":\"{:05}\"}},\"session_token\":\"{token}\",\"note\":\"{}\"}}",
            rng.next() % 1_000_000,
            1 + rng.next() % 12,
            1 + rng.next() % 28,
            rng.next() % 24,
            rng.next() % 60,
            rng.next() % 60,
            rng.next() & 1 == 0,
            rng.next() % 100,
            rng.next() % 10,
            rng.pick(TAGS),
            rng.pick(TAGS),
            rng.pick(CITY),
            rng.next() % 100_000,
            note.join(" "),
        ));
    }
    s.push_str("]}");
    s.into_bytes()
}

fn corpus(size: usize, count: usize) -> Vec<Bytes> {
    let mut rng = Rng(0x5eed_0000 + size as u64);
    (0..count)
        .map(|_| Bytes::from(json_value(&mut rng, size)))
        .collect()
}

/// Nanoseconds this thread has spent on a CPU (Linux schedstat), so that
/// figures mean "per core" even on a busy machine; wall time elsewhere.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs `f` repeatedly for at least `min` of CPU time and returns MB/s of
/// `bytes_per_round` (decimal megabytes) per core.
fn rate(min: Duration, bytes_per_round: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let wall = Instant::now();
    let cpu = cpu_ns();
    let spent = || match (cpu, cpu_ns()) {
        (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
        _ => wall.elapsed(),
    };
    let mut rounds = 0u64;
    while spent() < min {
        f();
        rounds += 1;
    }
    (bytes_per_round as f64 * rounds as f64) / spent().as_secs_f64() / 1e6
}

#[test]
#[ignore = "throughput figures; run with --release --ignored --nocapture"]
fn transform_throughput() {
    let ring = Keyring::from_keys([("k1", [7u8; 32])], Some("k1")).unwrap();
    let min = Duration::from_millis(400);
    let loc = Location::Key(b"session:12345");
    println!("transform throughput, one core, JSON-like corpus (MB/s of plaintext)");
    println!(
        "{:>6}  {:>9} {:>9}  {:>9} {:>9}  {:>9} {:>9}  {:>6}",
        "size", "lz4 enc", "lz4 dec", "gcm seal", "gcm open", "both seal", "both open", "ratio"
    );
    for size in [1024usize, 16 * 1024] {
        let values = corpus(size, 256);
        let total: usize = values.iter().map(|v| v.len()).sum();
        let seal_all = |compress: Option<usize>, key: Option<usize>| -> Vec<Bytes> {
            values
                .iter()
                .map(|v| seal_with(v, loc, compress, key, &ring).unwrap())
                .collect()
        };
        let lz4 = seal_all(Some(0), None);
        let gcm = seal_all(None, Some(0));
        let both = seal_all(Some(0), Some(0));
        let stored: usize = lz4.iter().map(|v| v.len()).sum();

        let mut sink = 0usize;
        let mut bench_seal = |compress, key| {
            rate(min, total, || {
                for v in &values {
                    sink ^= seal_with(v, loc, compress, key, &ring).unwrap().len();
                }
            })
        };
        let lz4_enc = bench_seal(Some(0), None);
        let gcm_seal = bench_seal(None, Some(0));
        let both_seal = bench_seal(Some(0), Some(0));
        let mut bench_open = |sealed: &[Bytes]| {
            rate(min, total, || {
                for s in sealed {
                    sink ^= open(s, loc, &ring, 1 << 29).unwrap().value().len();
                }
            })
        };
        let lz4_dec = bench_open(&lz4);
        let gcm_open = bench_open(&gcm);
        let both_open = bench_open(&both);
        println!(
            "{:>5}K  {lz4_enc:>9.0} {lz4_dec:>9.0}  {gcm_seal:>9.0} {gcm_open:>9.0}  {both_seal:>9.0} {both_open:>9.0}  {:>5.1}%",
            size / 1024,
            100.0 * (1.0 - stored as f64 / total as f64),
        );
        std::hint::black_box(sink);
    }

    // The stored size of the whole corpus (mixed sizes), as REWRAP or a
    // backup would see it.
    let mut rng = Rng(42);
    let mixed: Vec<Bytes> = (0..2000)
        .map(|i| Bytes::from(json_value(&mut rng, [200, 1024, 4096, 16384][i % 4])))
        .collect();
    let plain: usize = mixed.iter().map(|v| v.len()).sum();
    let size_of = |compress, key| -> usize {
        mixed
            .iter()
            .map(|v| seal_with(v, loc, compress, key, &ring).unwrap().len())
            .sum()
    };
    let (lz4, both, gcm) = (
        size_of(Some(64), None),
        size_of(Some(64), Some(0)),
        size_of(None, Some(0)),
    );
    println!(
        "corpus of {} values, {plain} bytes: lz4 {lz4} ({:.1}% smaller), lz4+gcm {both} ({:.1}% smaller), gcm only {gcm} (+{:.1}%)",
        mixed.len(),
        100.0 * (1.0 - lz4 as f64 / plain as f64),
        100.0 * (1.0 - both as f64 / plain as f64),
        100.0 * (gcm as f64 / plain as f64 - 1.0),
    );

    // What one getrandom call costs: why nonces are fetched in blocks.
    let mut nonce = [0u8; 12];
    let n = 20_000;
    let per_call = rate(Duration::from_millis(200), n, || {
        for _ in 0..n {
            use aes_gcm::aead::rand_core::RngCore;
            aes_gcm::aead::OsRng.fill_bytes(&mut nonce);
        }
    });
    println!("one getrandom call for a nonce: {:.0} ns", 1e3 / per_call);
    assert!(lz4 < plain);
}

#[test]
fn corpus_is_deterministic_json() {
    let a = corpus(1024, 2);
    let b = corpus(1024, 2);
    assert_eq!(a, b);
    assert!(
        a[0].len() >= 1024 && a[0].starts_with(b"{\"items\":[{"),
        "{:?}",
        &a[0][..20]
    );
}
