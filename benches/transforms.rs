//! Per-core cost of value transforms (src/transform): lz4 compression,
//! AES-256-GCM, and both, sealing (write path) and opening (read path)
//! 1 KiB and 16 KiB values, JSON-like and random (incompressible); plus the request/reply rewriting a
//! session does around them (`Transforms::prepare` for SET,
//! `Transforms::apply_reply` for GET).
//!
//! Throughput is in bytes of plaintext, so the figures read as "MB/s per
//! core". The end-to-end cost through strata (GET/SET with redis-benchmark)
//! is `benches/transforms_bench.sh`; the stored size of a JSON corpus is
//! printed by both.
//!
//! Run: `cargo bench --bench transforms` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata::transform::{open, seal, Keyring, Location, Rules, TransformConfig, Transforms};

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

/// One JSON document of about `size` bytes shaped like session/API payloads:
/// repeated field names, enum-like values, timestamps, numbers, random
/// tokens (which do not compress) and a little free text.
fn json_value(rng: &mut Rng, size: usize) -> Vec<u8> {
    const FIRST: &[&str] = &["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    const LAST: &[&str] = &["smith", "jones", "martin", "garcia", "muller", "rossi"];
    const CITY: &[&str] = &["Lyon", "Berlin", "Austin", "Osaka", "Porto", "Denver"];
    const TAGS: &[&str] = &["premium", "beta", "admin", "trial", "mobile", "eu", "us"];
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

/// Rules for the three ways a value can be stored, on distinct prefixes.
fn transforms() -> Transforms {
    let config = TransformConfig::parse(
        r#"
        [[transform]]
        pattern = "lz4:*"
        compress = "lz4"
        [[transform]]
        pattern = "gcm:*"
        encrypt = true
        [[transform]]
        pattern = "both:*"
        compress = "lz4"
        encrypt = true
        [transform_keys]
        active_key = "k1"
        [transform_keys.keys]
        k1 = { env = "UNUSED_IN_BENCH" }
        "#,
    )
    .expect("bench config");
    let keyring = Keyring::from_keys([("k1", [7u8; 32])], Some("k1")).expect("keyring");
    let rules = Rules::compile(&config, &keyring).expect("rules");
    Transforms::new(rules, keyring, 512 << 20, Arc::default())
}

fn bench_envelope(c: &mut Criterion) {
    let t = transforms();
    // JSON-like values, and values like redis-benchmark's `-d` (random
    // printable bytes: lz4 tries, fails and stores them as they are).
    let cases = [1024usize, 16 * 1024].into_iter().flat_map(|size| {
        let mut rng = Rng(0x5eed + size as u64);
        let json = json_value(&mut rng, size);
        let random: Vec<u8> = (0..size).map(|_| b'0' + (rng.next() % 64) as u8).collect();
        [
            (format!("{}KiB", size / 1024), json),
            (format!("{}KiB-random", size / 1024), random),
        ]
    });
    for (name, value) in cases {
        let value = Bytes::from(value);
        let mut group = c.benchmark_group(format!("transforms/{name}"));
        group.throughput(Throughput::Bytes(value.len() as u64));
        for kind in ["lz4", "gcm", "both"] {
            let key = format!("{kind}:session:12345");
            let loc = Location::Key(key.as_bytes());
            let rule = t.rules().rule_for(key.as_bytes()).expect("rule");
            let sealed = seal(&value, loc, rule, t.keyring()).expect("seal");
            group.bench_function(format!("{kind}/seal"), |b| {
                b.iter(|| seal(black_box(&value), loc, rule, t.keyring()).expect("seal"))
            });
            group.bench_function(format!("{kind}/open"), |b| {
                b.iter(|| open(black_box(&sealed), loc, t.keyring(), 512 << 20).expect("open"))
            });
        }
        group.finish();
    }
}

/// What a session does per SET and per GET on a compress+encrypt key,
/// beyond forwarding: seal inside `prepare`, open inside `apply_reply`.
fn bench_session_path(c: &mut Criterion) {
    let t = transforms();
    let mut rng = Rng(1);
    let value = Bytes::from(json_value(&mut rng, 1024));
    let key = Bytes::from_static(b"both:session:12345");
    let set = [Bytes::from_static(b"SET"), key.clone(), value.clone()];
    let get = [Bytes::from_static(b"GET"), key.clone()];
    let stored = {
        let p = t.prepare(&set).expect("prepare");
        match p.rewrite {
            strata::transform::Rewrite::Args(a) => a[2].clone(),
            strata::transform::Rewrite::Unchanged => panic!("not sealed"),
        }
    };
    let mut reply = format!("${}\r\n", stored.len()).into_bytes();
    reply.extend_from_slice(&stored);
    reply.extend_from_slice(b"\r\n");
    let reply = Bytes::from(reply);
    let plan = t.prepare(&get).expect("prepare").plan.expect("plan");

    let mut group = c.benchmark_group("transforms/session-1KiB");
    group.throughput(Throughput::Elements(1));
    group.bench_function("prepare SET (seal)", |b| {
        b.iter(|| t.prepare(black_box(&set)).expect("prepare"))
    });
    group.bench_function("prepare GET (plan)", |b| {
        b.iter(|| t.prepare(black_box(&get)).expect("prepare"))
    });
    group.bench_function("apply_reply GET (open)", |b| {
        b.iter(|| t.apply_reply(&plan, black_box(reply.clone())))
    });
    let plain = Transforms::disabled();
    group.bench_function("prepare SET, no rules", |b| {
        b.iter(|| plain.prepare(black_box(&set)).expect("prepare"))
    });
    group.finish();
}

/// Prints the stored size of a mixed-size JSON corpus (not timed).
fn corpus_size(_: &mut Criterion) {
    let t = transforms();
    let mut rng = Rng(42);
    let values: Vec<Bytes> = (0..2000)
        .map(|i| Bytes::from(json_value(&mut rng, [200, 1024, 4096, 16384][i % 4])))
        .collect();
    let plain: usize = values.iter().map(Bytes::len).sum();
    let stored = |kind: &str| -> usize {
        let key = format!("{kind}:doc");
        let loc = Location::Key(key.as_bytes());
        let rule = t.rules().rule_for(key.as_bytes()).expect("rule");
        values
            .iter()
            .map(|v| seal(v, loc, rule, t.keyring()).expect("seal").len())
            .sum()
    };
    let (lz4, both, gcm) = (stored("lz4"), stored("both"), stored("gcm"));
    let pct = |n: usize| 100.0 * (n as f64 / plain as f64 - 1.0);
    println!(
        "JSON corpus, {} values, {plain} bytes: lz4 {lz4} ({:+.1}%), lz4+aes-gcm {both} ({:+.1}%), aes-gcm {gcm} ({:+.1}%)",
        values.len(),
        pct(lz4),
        pct(both),
        pct(gcm)
    );
}

criterion_group!(benches, bench_envelope, bench_session_path, corpus_size);
criterion_main!(benches);
