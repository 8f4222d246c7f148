//! Tests of the registry: exposition text, handles, guards, and the cost of
//! recording (an ignored measurement).

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::*;

/// The line of `text` that starts with `prefix`, for asserting values.
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

#[test]
fn enum_tables_match_discriminants() {
    for (i, kind) in ErrorKind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, i);
    }
    for (i, state) in ConnState::ALL.iter().enumerate() {
        assert_eq!(*state as usize, i);
    }
    for (i, reason) in RejectReason::ALL.iter().enumerate() {
        assert_eq!(*reason as usize, i);
    }
}

#[test]
fn fresh_registry_exports_zeroes_build_info_and_eof() {
    let text = Metrics::new().encode();
    assert_eq!(
        line(&text, "strata_build_info"),
        format!(
            "strata_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(line(&text, "strata_uptime_seconds ").starts_with("strata_uptime_seconds "));
    assert_eq!(
        line(&text, "strata_client_connections "),
        "strata_client_connections 0"
    );
    assert_eq!(
        line(
            &text,
            "strata_client_connections_rejected_total{reason=\"maxclients\"}"
        ),
        "strata_client_connections_rejected_total{reason=\"maxclients\"} 0"
    );
    for kind in ErrorKind::ALL {
        let series = format!("strata_errors_total{{kind=\"{}\"}}", kind.as_str());
        assert_eq!(line(&text, &series), format!("{series} 0"));
    }
    // No command has run, so no per-command series exist yet.
    assert!(!text.contains("strata_commands_total{"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn command_counts_and_latency() {
    let metrics = Metrics::new();
    let get = metrics.command("get");
    get.record(Duration::from_micros(30));
    get.record(Duration::from_millis(3));
    metrics
        .command("client|setname")
        .record(Duration::from_secs(10));

    let text = metrics.encode();
    assert_eq!(
        line(&text, "strata_commands_total{command=\"get\"}"),
        "strata_commands_total{command=\"get\"} 2"
    );
    assert_eq!(
        line(&text, "strata_commands_total{command=\"client|setname\"}"),
        "strata_commands_total{command=\"client|setname\"} 1"
    );
    assert_eq!(
        line(
            &text,
            "strata_command_duration_seconds_count{command=\"get\"}"
        ),
        "strata_command_duration_seconds_count{command=\"get\"} 2"
    );
    // 30µs lands in the first bucket, 3ms in the 5ms one.
    assert_eq!(
        line(
            &text,
            "strata_command_duration_seconds_bucket{le=\"0.00005\",command=\"get\"}"
        ),
        "strata_command_duration_seconds_bucket{le=\"0.00005\",command=\"get\"} 1"
    );
    assert_eq!(
        line(
            &text,
            "strata_command_duration_seconds_bucket{le=\"0.0025\",command=\"get\"}"
        ),
        "strata_command_duration_seconds_bucket{le=\"0.0025\",command=\"get\"} 1"
    );
    assert_eq!(
        line(
            &text,
            "strata_command_duration_seconds_bucket{le=\"0.005\",command=\"get\"}"
        ),
        "strata_command_duration_seconds_bucket{le=\"0.005\",command=\"get\"} 2"
    );
    // 10s is beyond the last bound: only +Inf has it.
    assert_eq!(
        line(
            &text,
            "strata_command_duration_seconds_bucket{le=\"2.5\",command=\"client|setname\"}"
        ),
        "strata_command_duration_seconds_bucket{le=\"2.5\",command=\"client|setname\"} 0"
    );
    assert_eq!(
        line(
            &text,
            "strata_command_duration_seconds_bucket{le=\"+Inf\",command=\"client|setname\"}"
        ),
        "strata_command_duration_seconds_bucket{le=\"+Inf\",command=\"client|setname\"} 1"
    );
    assert!(text.contains("# UNIT strata_command_duration_seconds seconds"));
}

/// A batch is recorded run by run, and every command in it is counted.
#[test]
fn record_batch_counts_every_command() {
    use std::sync::Arc;

    let metrics = Metrics::new();
    let get = Arc::new(metrics.command("get"));
    let set = Arc::new(metrics.command("set"));
    let batch = [get.clone(), get.clone(), set.clone(), get.clone(), get];
    record_batch(&batch, Duration::from_micros(70));
    record_batch(&[], Duration::from_micros(70));

    let text = metrics.encode();
    for (series, value) in [
        ("strata_commands_total{command=\"get\"}", 4),
        ("strata_commands_total{command=\"set\"}", 1),
        ("strata_command_duration_seconds_count{command=\"get\"}", 4),
        (
            "strata_command_duration_seconds_bucket{le=\"0.0001\",command=\"get\"}",
            4,
        ),
        (
            "strata_command_duration_seconds_bucket{le=\"0.00005\",command=\"get\"}",
            0,
        ),
    ] {
        assert_eq!(line(&text, series), format!("{series} {value}"));
    }
    let sum = line(
        &text,
        "strata_command_duration_seconds_sum{command=\"get\"}",
    );
    let sum: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((sum - 4.0 * 70e-6).abs() < 1e-9, "{sum}");
}

#[test]
fn cache_returns_the_shared_handles() {
    let metrics = Metrics::new();
    let mut cache = CommandMetricsCache::new();
    let mut other_session = CommandMetricsCache::new();
    cache.record(&metrics, "set", Duration::from_micros(100));
    cache.record(&metrics, "set", Duration::from_micros(100));
    other_session.record(&metrics, "set", Duration::from_micros(100));
    assert_eq!(cache.entries.len(), 1);
    let text = metrics.encode();
    assert_eq!(
        line(&text, "strata_commands_total{command=\"set\"}"),
        "strata_commands_total{command=\"set\"} 3"
    );
}

#[test]
fn client_connections_follow_guards() {
    let metrics = Metrics::new();
    let a = metrics.client_accepted();
    let b = metrics.client_accepted();
    drop(a);
    metrics.client_rejected(RejectReason::MaxClients);
    let text = metrics.encode();
    assert_eq!(
        line(&text, "strata_client_connections "),
        "strata_client_connections 1"
    );
    assert_eq!(
        line(&text, "strata_client_connections_accepted_total"),
        "strata_client_connections_accepted_total 2"
    );
    assert_eq!(
        line(
            &text,
            "strata_client_connections_rejected_total{reason=\"maxclients\"}"
        ),
        "strata_client_connections_rejected_total{reason=\"maxclients\"} 1"
    );
    drop(b);
    let text = metrics.encode();
    assert_eq!(
        line(&text, "strata_client_connections "),
        "strata_client_connections 0"
    );
}

#[test]
fn backend_connections_move_between_states() {
    let metrics = Metrics::new();
    let pool = metrics.backend_connection("127.0.0.1:7000", ConnKind::Multiplexed);
    let conn_pool = pool.clone();
    conn_pool.set_state(None, ConnState::Connecting);
    conn_pool.set_state(Some(ConnState::Connecting), ConnState::Up);
    pool.set_state(None, ConnState::Connecting);
    pool.set_state(Some(ConnState::Connecting), ConnState::Down);
    pool.set_state(Some(ConnState::Down), ConnState::Down);
    assert_eq!(pool.count(ConnState::Up), 1);
    assert_eq!(pool.count(ConnState::Down), 1);
    assert_eq!(pool.count(ConnState::Connecting), 0);

    // A second handle for the same backend shares the gauges.
    let again = metrics.backend_connection("127.0.0.1:7000", ConnKind::Multiplexed);
    assert_eq!(again.count(ConnState::Up), 1);

    let text = metrics.encode();
    let up =
        "strata_backend_connections{backend=\"127.0.0.1:7000\",kind=\"multiplexed\",state=\"up\"}";
    let down = "strata_backend_connections{backend=\"127.0.0.1:7000\",kind=\"multiplexed\",state=\"down\"}";
    assert_eq!(line(&text, up), format!("{up} 1"));
    assert_eq!(line(&text, down), format!("{down} 1"));

    pool.remove(ConnState::Down);
    conn_pool.remove(ConnState::Up);
    metrics.remove_backend("127.0.0.1:7000");
    assert!(!metrics.encode().contains("127.0.0.1:7000"));
}

#[test]
fn errors_and_bytes() {
    let metrics = Metrics::new();
    metrics.error(ErrorKind::BackendTimeout);
    metrics.error(ErrorKind::BackendTimeout);
    metrics.error(ErrorKind::Protocol);
    metrics.bytes_in(100);
    metrics.bytes_in(23);
    metrics.bytes_out(7);
    let text = metrics.encode();
    assert_eq!(
        line(&text, "strata_errors_total{kind=\"backend_timeout\"}"),
        "strata_errors_total{kind=\"backend_timeout\"} 2"
    );
    assert_eq!(
        line(&text, "strata_errors_total{kind=\"protocol\"}"),
        "strata_errors_total{kind=\"protocol\"} 1"
    );
    assert_eq!(
        line(&text, "strata_errors_total{kind=\"internal\"}"),
        "strata_errors_total{kind=\"internal\"} 0"
    );
    assert_eq!(
        line(&text, "strata_client_bytes_received_total"),
        "strata_client_bytes_received_total 123"
    );
    assert_eq!(
        line(&text, "strata_client_bytes_sent_total"),
        "strata_client_bytes_sent_total 7"
    );
}

#[test]
fn breaker_failover_and_discovery_series() {
    let metrics = Metrics::new();
    let text = metrics.encode();
    assert!(text.contains("strata_failovers_total 0\n"), "{text}");
    assert!(text.contains("strata_discovery_up 1\n"), "{text}");
    metrics.set_breaker_state("10.0.0.1:6379", 1);
    metrics.failover_followed(Duration::from_millis(1500));
    metrics.set_discovery_ok(false);
    let text = metrics.encode();
    for expected in [
        "strata_backend_breaker_state{backend=\"10.0.0.1:6379\"} 1\n",
        "strata_failovers_total 1\n",
        "strata_last_failover_duration_seconds 1.5\n",
        "strata_discovery_up 0\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    metrics.remove_breaker_state("10.0.0.1:6379");
    assert!(!metrics.encode().contains("breaker_state{"));
}

#[test]
fn other_modules_register_under_the_prefix() {
    let mut metrics = Metrics::new();
    let redirects = Counter::<u64>::default();
    metrics
        .registry_mut()
        .sub_registry_with_prefix("cluster")
        .register(
            "redirects",
            "MOVED and ASK replies followed",
            redirects.clone(),
        );
    redirects.inc_by(4);
    let text = metrics.encode();
    assert_eq!(
        line(&text, "strata_cluster_redirects_total"),
        "strata_cluster_redirects_total 4"
    );
}

/// Prints what recording costs; speed is reported, never asserted.
/// `cargo test --release --lib record_cost -- --ignored --nocapture`
#[test]
#[ignore = "measurement, not a check"]
fn record_cost() {
    use std::hint::black_box;
    use std::sync::Arc;

    const N: u32 = 2_000_000;
    let metrics = Arc::new(Metrics::new());
    let per_op = |start: Instant| start.elapsed().as_nanos() as f64 / f64::from(N);

    let handle = metrics.command("get");
    let start = Instant::now();
    for i in 0..N {
        handle.record(black_box(Duration::from_nanos(u64::from(i % 5_000_000))));
    }
    println!(
        "CommandMetrics::record, one thread:    {:>6.1} ns",
        per_op(start)
    );

    let mut cache = CommandMetricsCache::new();
    let start = Instant::now();
    for i in 0..N {
        cache.record(
            &metrics,
            black_box("get"),
            black_box(Duration::from_nanos(u64::from(i % 5_000_000))),
        );
    }
    println!(
        "CommandMetricsCache::record, one thread: {:>6.1} ns",
        per_op(start)
    );

    let start = Instant::now();
    for i in 0..N {
        metrics
            .command(black_box("get"))
            .record(black_box(Duration::from_nanos(u64::from(i % 5_000_000))));
    }
    println!(
        "Metrics::command + record, one thread: {:>6.1} ns",
        per_op(start)
    );

    let start = Instant::now();
    for _ in 0..N {
        metrics.error(black_box(ErrorKind::Protocol));
        metrics.bytes_in(black_box(64));
    }
    println!(
        "error + bytes_in, one thread:          {:>6.1} ns",
        per_op(start)
    );

    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let run = |via_command: bool| {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let metrics = Arc::clone(&metrics);
                scope.spawn(move || {
                    let mut cache = CommandMetricsCache::new();
                    for i in 0..N / 4 {
                        let d = Duration::from_nanos(u64::from(i % 5_000_000));
                        if via_command {
                            metrics.command(black_box("get")).record(d);
                        } else {
                            cache.record(&metrics, black_box("get"), d);
                        }
                    }
                });
            }
        });
        start.elapsed().as_nanos() as f64 / f64::from(N / 4)
    };
    println!(
        "{threads} threads, same command, cache:          {:>6.1} ns per op per thread",
        run(false)
    );
    println!(
        "{threads} threads, same command, Metrics::command: {:>6.1} ns per op per thread",
        run(true)
    );
}

#[test]
fn transform_counters_are_exported_at_scrape_time() {
    let stats = std::sync::Arc::new(crate::transform::TransformStats::new());
    let mut metrics = Metrics::new();
    metrics.register_transform_stats(stats.clone());
    let text = metrics.encode();
    assert_eq!(
        line(&text, "strata_transform_values_total{op=\"seal\"}"),
        "strata_transform_values_total{op=\"seal\"} 0"
    );
    assert_eq!(
        line(&text, "strata_transform_compression_ratio"),
        "strata_transform_compression_ratio 1.0"
    );
    for kind in crate::transform::FailureKind::ALL {
        let prefix = format!(
            "strata_transform_failures_total{{kind=\"{}\"}}",
            kind.as_str()
        );
        assert_eq!(line(&text, &prefix), format!("{prefix} 0"));
    }
    // Counters move as the transform layer records (through a real seal).
    let t = crate::transform::Transforms::from_config(
        &crate::transform::TransformConfig::parse(
            "[[transform]]\npattern = \"c:*\"\ncompress = \"lz4\"\nmin_size = 1\n",
        )
        .unwrap(),
        1 << 20,
        stats,
    )
    .unwrap();
    let value = bytes::Bytes::from(vec![b'a'; 1000]);
    t.prepare(&[
        bytes::Bytes::from_static(b"SET"),
        bytes::Bytes::from_static(b"c:1"),
        value,
    ])
    .unwrap();
    let text = metrics.encode();
    assert_eq!(
        line(&text, "strata_transform_plain_bytes_total{op=\"seal\"}"),
        "strata_transform_plain_bytes_total{op=\"seal\"} 1000"
    );
    let ratio: f64 = line(&text, "strata_transform_compression_ratio ")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ratio > 10.0, "{ratio}");
}
