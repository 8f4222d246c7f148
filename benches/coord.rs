//! LOCK.* through a running strata (`COORD_BENCH_ADDR`), driven by
//! `benches/coord_bench.sh` (which starts redis-server and the release
//! strata binary):
//!
//! * uncontended: `COORD_CLIENTS` (50) connections, each taking and
//!   giving back a lock of its own (LOCK.ACQUIRE + LOCK.RELEASE, one
//!   round trip each) for `COORD_SECONDS`; pairs per second;
//! * contended: the same clients on ONE lock with WAIT; the handoff
//!   latency is the time from a holder sending LOCK.RELEASE to the next
//!   holder reading its token (one clock: one process), p50/p99; handoffs
//!   per second.
//!
//! Plain RESP over tokio sockets: the client's own cost stays small and
//! identical for every run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Conn {
    rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
    line: String,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).await.expect("connect to strata");
        s.set_nodelay(true).expect("nodelay");
        let (rd, wr) = s.into_split();
        Conn {
            rd: BufReader::new(rd),
            wr,
            line: String::new(),
        }
    }

    /// Sends a command, returns its one-line reply (`:n`, `+OK`, `$-1`).
    async fn call(&mut self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.wr.write_all(out.as_bytes()).await.expect("write");
        self.line.clear();
        self.rd.read_line(&mut self.line).await.expect("read");
        self.line.trim_end().to_string()
    }
}

fn token(reply: &str) -> String {
    assert!(reply.starts_with(':'), "LOCK.ACQUIRE answered {reply}");
    reply[1..].to_string()
}

async fn uncontended(addr: &str, clients: usize, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (addr, stop, pairs) = (addr.to_string(), stop.clone(), pairs.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr).await;
            let name = format!("bench-own-{i}");
            while !stop.load(Ordering::Relaxed) {
                let t = token(&c.call(&["LOCK.ACQUIRE", &name, "10000"]).await);
                let r = c.call(&["LOCK.RELEASE", &name, &t]).await;
                assert_eq!(r, "+OK");
                pairs.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up (connections, script loads), then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_pairs = pairs.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let done = pairs.load(Ordering::Relaxed) - start_pairs;
    let rate = done as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    rate
}

async fn contended(addr: &str, clients: usize, secs: u64) -> (f64, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    // When the last holder sent its release (None before the first).
    let released: Arc<Mutex<Option<Instant>>> = Arc::default();
    let handoffs: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (addr, stop, released, handoffs, measuring) = (
            addr.to_string(),
            stop.clone(),
            released.clone(),
            handoffs.clone(),
            measuring.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr).await;
            while !stop.load(Ordering::Relaxed) {
                let reply = c
                    .call(&["LOCK.ACQUIRE", "bench-shared", "10000", "WAIT", "2000"])
                    .await;
                if reply == "$-1" {
                    continue;
                }
                let got = Instant::now();
                let t = token(&reply);
                if let Some(at) = released.lock().expect("lock").take() {
                    if measuring.load(Ordering::Relaxed) {
                        handoffs.lock().expect("lock").push(got - at);
                    }
                }
                *released.lock().expect("lock") = Some(Instant::now());
                let r = c.call(&["LOCK.RELEASE", "bench-shared", &t]).await;
                assert_eq!(r, "+OK");
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let mut samples = handoffs.lock().expect("lock").clone();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    samples.sort_unstable();
    (samples.len() as f64 / elapsed, samples)
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let Ok(addr) = std::env::var("COORD_BENCH_ADDR") else {
        eprintln!("coord bench: set COORD_BENCH_ADDR (benches/coord_bench.sh does)");
        return;
    };
    let clients: usize = std::env::var("COORD_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let secs: u64 = std::env::var("COORD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rate = uncontended(&addr, clients, secs).await;
        println!("uncontended: {clients} clients, {rate:.0} LOCK.ACQUIRE+LOCK.RELEASE pairs/s");
        let (rate, samples) = contended(&addr, clients, secs).await;
        println!(
            "contended: {clients} clients on one lock, {rate:.0} handoffs/s, handoff p50 {:.3} ms, p99 {:.3} ms ({} samples)",
            pct(&samples, 0.5).as_secs_f64() * 1e3,
            pct(&samples, 0.99).as_secs_f64() * 1e3,
            samples.len()
        );
    });
}
