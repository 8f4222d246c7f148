//! Per-request costs of the command table: every request is looked up, most
//! have their keys located, and in cluster mode every key is hashed to a slot.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use strata::command::{key_indexes, lookup, slot::hash_slot};

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for (label, request) in [
        ("GET", args(&["GET", "key"])),
        ("SET", args(&["SET", "key", "value"])),
        ("mget", args(&["mget", "a", "b"])),
        ("CLIENT SETNAME", args(&["CLIENT", "SETNAME", "app"])),
        ("unknown", args(&["NOSUCHCMD", "x"])),
    ] {
        group.bench_function(label, |b| b.iter(|| lookup(black_box(&request))));
    }
    group.finish();
}

fn bench_key_indexes(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_indexes");
    let mut mset = vec!["MSET".to_string()];
    for i in 0..10 {
        mset.push(format!("key:{i}"));
        mset.push(format!("value:{i}"));
    }
    let mset = args(&mset.iter().map(String::as_str).collect::<Vec<_>>());
    let eval = args(&["EVAL", "return 1", "3", "a", "b", "c", "arg"]);
    for (label, request) in [("MSET 10 keys", mset), ("EVAL 3 keys", eval)] {
        let Some(spec) = lookup(&request) else {
            panic!("{label}: not in the command table");
        };
        group.bench_function(label, |b| {
            b.iter(|| key_indexes(black_box(spec), black_box(&request)))
        });
    }
    group.finish();
}

fn bench_hash_slot(c: &mut Criterion) {
    let key = b"user:1000:profile";
    c.bench_function("hash_slot 16-byte key", |b| {
        b.iter(|| hash_slot(black_box(&key[..16])))
    });
}

criterion_group!(benches, bench_lookup, bench_key_indexes, bench_hash_slot);
criterion_main!(benches);
