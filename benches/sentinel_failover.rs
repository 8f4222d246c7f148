//! Sentinel failover through strata, measured: 5 forced failovers
//! (`SENTINEL FAILOVER`) under a steady write load through the real strata
//! binary in sentinel mode, on a real topology (one primary, two replicas,
//! three sentinels; tests/support/sentinel.rs).
//!
//! Per failover:
//! * **client-seen unavailability**: the longest time between two
//!   consecutive acknowledged writes of any writer around the failover;
//! * **strata's part**: from Sentinel's switch to strata's first
//!   acknowledged write on the new primary. Sentinel's switch is measured
//!   three ways, as the bench's own subscriptions to all sentinels see it:
//!   `+failover-state-wait-promotion` (the leader has just sent
//!   `REPLICAOF NO ONE`: the replica accepts writes from here on — the
//!   headline figure), `+promoted-slave` (the leader saw the promotion in
//!   its next INFO, up to a second later) and the first `+switch-master`
//!   any sentinel publishes. strata watches the promoted replica's ROLE
//!   itself, so it usually resumes before the last two: those differences
//!   are then negative.
//!
//! It prints median and worst of each and exits 0 whatever the figures
//! are; it fails only when it cannot measure. Run it with
//! `bash benches/sentinel_failover.sh` (or `make bench-sentinel`).
//!
//! Environment: FAILOVERS (default 5), WRITERS (default 4),
//! OUT (summary file, default target/bench/sentinel-failover-latest.txt).
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::sentinel::{
    info_field, query, summarize, EventWatcher, Load, Resp, Topology, WriterLog, MASTER,
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The real strata binary, in sentinel mode, killed on drop.
struct Strata {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Strata {
    fn start(topo: &Topology) -> Strata {
        let dir = tempfile::tempdir().unwrap();
        let port = support::free_port();
        let sentinels: Vec<String> = topo
            .sentinel_addrs()
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [backend]\nmode = \"sentinel\"\nhealth_interval_ms = 100\nreconnect_base_ms = 20\nreconnect_max_ms = 200\n\
             [backend.sentinel]\nsentinels = [{}]\nmaster_name = \"{MASTER}\"\npoll_interval_ms = 1000\n\
             [telemetry]\nlisten = \"\"\nlog_level = \"warn\"\n",
            sentinels.join(", ")
        );
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata");
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if std::env::var_os("STRATA_BENCH_LOG").is_some() {
                        eprintln!("[strata] {line}");
                    }
                }
            });
        }
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while query(&addr, &["PING"]).ok() != Some(Resp::Str("PONG".into())) {
            assert!(
                Instant::now() < deadline,
                "strata did not start listening on {addr}"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "strata exited at startup"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Strata {
            child,
            addr,
            _dir: dir,
        }
    }

    fn primary(&self) -> String {
        match query(&self.addr, &["INFO", "proxy"]) {
            Ok(Resp::Str(s)) => info_field(&s, "backend_address").unwrap_or_default(),
            other => panic!("INFO proxy: {other:?}"),
        }
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Signed milliseconds from `from` to `to`.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        ms(to - from)
    } else {
        -ms(from - to)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The longest gap between consecutive acknowledged writes of one writer
/// that starts in `[from, until)`: (last write before, first write after).
fn stall(logs: &[WriterLog], from: Instant, until: Instant) -> Option<(Instant, Instant)> {
    logs.iter()
        .flat_map(|l| {
            let mut t = l.ok_at.clone();
            t.sort();
            t.windows(2)
                .filter(|w| w[0] >= from && w[0] < until)
                .map(|w| (w[0], w[1]))
                .collect::<Vec<_>>()
        })
        .max_by_key(|(a, b)| *b - *a)
}

fn main() {
    // `cargo bench` passes --bench. Without it (`cargo test --all-targets`)
    // this is a smoke run: one failover, nothing written.
    let measuring = std::env::args().any(|a| a == "--bench");
    let failovers = if measuring {
        env_usize("FAILOVERS", 5)
    } else {
        1
    };
    let writers = if measuring {
        env_usize("WRITERS", 4)
    } else {
        2
    };
    let out =
        std::env::var("OUT").unwrap_or_else(|_| "target/bench/sentinel-failover-latest.txt".into());
    if !measuring {
        eprintln!("sentinel_failover: smoke run (one failover); `cargo bench --bench sentinel_failover` measures");
    }

    let topo = Topology::start();
    let strata = Strata::start(&topo);
    let watcher = EventWatcher::start(
        &topo.sentinel_addrs(),
        &[
            "+switch-master",
            "+promoted-slave",
            "+failover-state-wait-promotion",
        ],
    );
    let started = Instant::now();
    let load = Load::start(&strata.addr, writers, "bench");
    wait_until(Duration::from_secs(30), "writes flowing", || {
        (load.oks_after(started) > 200).then_some(())
    });

    // Per failover: when it was asked for, and when Sentinel promoted and
    // first published +switch-master (as the bench's own subscriptions saw).
    let mut marks = Vec::new();
    for i in 1..=failovers {
        let old = topo.current_primary();
        assert_eq!(
            strata.primary(),
            old,
            "strata follows the sentinels before failover {i}"
        );
        let asked = Instant::now();
        topo.force_failover();
        let new = wait_until(Duration::from_secs(60), "strata follows", || {
            let p = strata.primary();
            (p != old).then_some(p)
        });
        let sent = watcher
            .wait_for_after(
                "+failover-state-wait-promotion",
                asked,
                Duration::from_secs(30),
            )
            .expect("+failover-state-wait-promotion");
        let promoted = watcher
            .wait_for_after("+promoted-slave", asked, Duration::from_secs(30))
            .expect("+promoted-slave");
        let switch = watcher
            .wait_for_after("+switch-master", asked, Duration::from_secs(30))
            .expect("+switch-master");
        wait_until(Duration::from_secs(60), "writes resume", || {
            (load.oks_after(switch.max(promoted)) > 100).then_some(())
        });
        eprintln!("failover {i}: {old} -> {new}");
        marks.push((old, new, asked, sent, promoted, switch));
        // Let the old primary rejoin as a replica before the next one.
        if i < failovers {
            topo.wait_healthy(Duration::from_secs(60));
        }
    }
    let end = Instant::now();
    let logs = load.stop();
    let mut unavailable = Vec::new();
    let mut from_sent = Vec::new();
    let mut from_promoted = Vec::new();
    let mut from_switch = Vec::new();
    let mut lines = Vec::new();
    for (i, (old, new, asked, sent, promoted, switch)) in marks.iter().enumerate() {
        let until = marks.get(i + 1).map_or(end, |m| m.2);
        // The stall: the longest gap between two acknowledged writes of one
        // writer in this failover's window; it ends when writes resume.
        let Some((from, to)) = stall(&logs, *asked, until) else {
            lines.push(format!(
                "failover {}: {old} -> {new}: no stall found",
                i + 1
            ));
            continue;
        };
        let gap = ms(to - from);
        let w = signed_ms(*sent, to);
        let p = signed_ms(*promoted, to);
        let s = signed_ms(*switch, to);
        unavailable.push(gap);
        from_sent.push(w);
        from_promoted.push(p);
        from_switch.push(s);
        let line = format!(
            "failover {}: {old} -> {new}: client-seen unavailability {gap:.0} ms; strata's first write {w:.0} ms after REPLICAOF NO ONE was sent, {p:.0} ms after +promoted-slave, {s:.0} ms after the first +switch-master",
            i + 1
        );
        eprintln!("{line}");
        lines.push(line);
    }
    let summary = format!(
        "sentinel failover through strata: {failovers} forced failovers, {writers} writers (SET+INCR, one connection each)\n\
         {}\n\
         client-seen write unavailability: median {:.0} ms, worst {:.0} ms\n\
         strata's part after Sentinel's switch (REPLICAOF NO ONE sent, +failover-state-wait-promotion -> first acknowledged write): median {:.0} ms, worst {:.0} ms\n\
         same, from +promoted-slave (negative: strata resumed before it): median {:.0} ms, worst {:.0} ms\n\
         same, from the first +switch-master (negative: strata resumed before it): median {:.0} ms, worst {:.0} ms\n\
         writes: {}\n",
        lines.join("\n"),
        median(&unavailable),
        worst(&unavailable),
        median(&from_sent),
        worst(&from_sent),
        median(&from_promoted),
        worst(&from_promoted),
        median(&from_switch),
        worst(&from_switch),
        summarize(&logs),
    );
    println!("{summary}");
    if !measuring {
        assert_eq!(unavailable.len(), failovers, "every failover measured");
        return;
    }
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&out, &summary) {
        eprintln!("cannot write {out}: {e}");
    }
}
