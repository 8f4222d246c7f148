//! Per-request costs of the protocol layer: parsing what clients send,
//! framing what backends send, and encoding the replies strata makes itself.
//!
//! Every request strata proxies is parsed once (`RequestParser::parse`) and
//! its reply framed once (`reply::frame_len`); local replies go through
//! `ReplyBuf`. Throughput is reported in bytes of wire data, so the figures
//! compare directly with network bandwidth, except for the pipeline and
//! encoding groups, which also say how many commands/replies per second.
//!
//! Run: `cargo bench --bench protocol` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata::protocol::reply::frame_len;
use strata::protocol::{Protocol, ReplyBuf, RequestParser, DEFAULT_MAX_BULK_LEN};

/// `args` as a RESP multibulk, the way redis-benchmark and clients send it.
fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bulk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn bench_parse(c: &mut Criterion) {
    let parser = RequestParser::new(DEFAULT_MAX_BULK_LEN);
    let value = [b'x'; 128];
    let set = multibulk(&[b"SET", b"key:000000012345", &value]);
    let mut pipeline = Vec::new();
    for i in 0..16 {
        let key = format!("key:{i:012}");
        if i % 2 == 0 {
            pipeline.extend_from_slice(&multibulk(&[b"SET", key.as_bytes(), &value]));
        } else {
            pipeline.extend_from_slice(&multibulk(&[b"GET", key.as_bytes()]));
        }
    }
    let inline = b"SET key:000000012345 \"hello world\"\r\n".to_vec();

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(set.len() as u64));
    group.bench_function("SET 128B value", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&set[..]),
            |buf| {
                let req = parser.parse(buf);
                assert!(matches!(req, Ok(Some(_))));
                black_box(req)
            },
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Bytes(inline.len() as u64));
    group.bench_function("inline SET", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&inline[..]),
            |buf| {
                let req = parser.parse(buf);
                assert!(matches!(req, Ok(Some(_))));
                black_box(req)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // The same pipeline twice: once counted in bytes, once in commands.
    let mut group = c.benchmark_group("parse pipeline");
    for (label, throughput) in [
        (
            "16 commands (bytes)",
            Throughput::Bytes(pipeline.len() as u64),
        ),
        ("16 commands (elements)", Throughput::Elements(16)),
    ] {
        group.throughput(throughput);
        group.bench_function(label, |b| {
            b.iter_batched_ref(
                || BytesMut::from(&pipeline[..]),
                |buf| {
                    let mut n = 0;
                    while let Ok(Some(req)) = parser.parse(buf) {
                        black_box(&req);
                        n += 1;
                    }
                    assert_eq!(n, 16);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_frame(c: &mut Criterion) {
    let bulk_reply = bulk(&[b'x'; 128]);
    let mut array = b"*10\r\n".to_vec();
    for i in 0..10 {
        array.extend_from_slice(&bulk(format!("value-{i:010}").as_bytes()));
    }
    // A RESP3 map, as HELLO 3 or CONFIG GET answer.
    let mut map = b"%4\r\n".to_vec();
    for (k, v) in [
        (&b"server"[..], &b"+redis\r\n"[..]),
        (b"version", b"+7.0.15\r\n"),
        (b"proto", b":3\r\n"),
        (b"id", b":12345\r\n"),
    ] {
        map.extend_from_slice(&bulk(k));
        map.extend_from_slice(v);
    }
    let status = b"+OK\r\n".to_vec();

    let mut group = c.benchmark_group("frame_len");
    for (label, frame) in [
        ("status +OK", &status),
        ("bulk 128B", &bulk_reply),
        ("array 10 bulks", &array),
        ("RESP3 map 4 pairs", &map),
    ] {
        assert_eq!(
            frame_len(frame).ok().flatten(),
            Some(frame.len()),
            "{label}"
        );
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(label, |b| b.iter(|| frame_len(black_box(frame))));
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ReplyBuf");
    group.throughput(Throughput::Elements(1));
    group.bench_function("+OK", |b| {
        b.iter(|| {
            let mut r = ReplyBuf::new(Protocol::Resp2);
            r.simple(black_box("OK"));
            r.freeze()
        })
    });
    group.bench_function("error", |b| {
        b.iter(|| {
            let mut r = ReplyBuf::new(Protocol::Resp2);
            r.error(black_box("ERR wrong number of arguments for 'get' command"));
            r.freeze()
        })
    });
    group.bench_function("integer", |b| {
        b.iter(|| {
            let mut r = ReplyBuf::new(Protocol::Resp2);
            r.integer(black_box(1_234_567));
            r.freeze()
        })
    });
    let value = [b'x'; 128];
    group.bench_function("bulk 128B", |b| {
        b.iter(|| {
            let mut r = ReplyBuf::new(Protocol::Resp2);
            r.bulk(black_box(&value));
            r.freeze()
        })
    });
    // A HELLO reply: a 7-pair map (RESP3) or a 14-element array (RESP2).
    for (label, proto) in [
        ("HELLO map RESP2", Protocol::Resp2),
        ("HELLO map RESP3", Protocol::Resp3),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| {
                let mut r = ReplyBuf::new(black_box(proto));
                r.map(7);
                r.bulk(b"server").bulk(b"redis");
                r.bulk(b"version").bulk(b"7.0.15");
                r.bulk(b"proto").integer(proto.version());
                r.bulk(b"id").integer(42);
                r.bulk(b"mode").bulk(b"standalone");
                r.bulk(b"role").bulk(b"master");
                r.bulk(b"modules").array(0);
                r.freeze()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse, bench_frame, bench_encode);
criterion_main!(benches);
