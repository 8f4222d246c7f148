//! Write-behind is crash-safe: strata killed with SIGKILL in the middle of
//! a load of 120,000 writes loses none that it acknowledged. The change and
//! its outbox entry are one atomic Redis script; a change leaves the outbox
//! only after its Postgres commit; the entries the dead strata had read
//! but not committed are claimed by the strata sharing the drain
//! (XAUTOCLAIM) and by the restarted one. (A table lock in Postgres holds
//! the drains' commits for the last 500 ms before the kill, so the killed
//! strata surely has changes read and not committed.) Real PostgreSQL and redis-server,
//! and the strata binary as child processes.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::behind_env::BehindEnv;
use support::strata::StrataProcess;

const WRITES: usize = 120_000;
const WINDOW: usize = 500;

fn set(i: usize) -> Vec<u8> {
    let (k, v) = (format!("durable:w{i}"), format!("v{i}"));
    format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
        k.len(),
        v.len()
    )
    .into_bytes()
}

/// Writes `from..WRITES` through strata at `port`, pipelined; `acked` is
/// the count of writes answered +OK (replies come in order, so they are
/// `0..acked`). Returns when done or when the connection dies.
async fn load(port: u16, from: usize, acked: Arc<AtomicUsize>) {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let mut i = from;
    let mut buf = vec![0u8; 64 * 1024];
    while i < WRITES {
        let n = WINDOW.min(WRITES - i);
        let req: Vec<u8> = (i..i + n).flat_map(set).collect();
        if s.write_all(&req).await.is_err() {
            return;
        }
        let mut got = Vec::new();
        while got.len() < n * 5 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    // Replies are all "+OK\r\n": the complete ones count.
                    acked.store(i + got.len() / 5, Ordering::SeqCst);
                    return;
                }
                Ok(r) => got.extend_from_slice(&buf[..r]),
            }
            acked.store(i + got.len() / 5, Ordering::SeqCst);
        }
        assert!(
            got.chunks(5).all(|c| c == b"+OK\r\n"),
            "unexpected reply: {}",
            String::from_utf8_lossy(&got)
        );
        i += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_write_behind_load_loses_no_acknowledged_write() {
    let env = BehindEnv::servers().await;
    let config = env.config_file("claim_idle_ms = 1000");
    let path = config.path().to_str().expect("path").to_string();
    let redis = env.redis.addr();
    let spawn = || StrataProcess::spawn(&redis, &["--config", &path]);
    let mut a = spawn();
    // A second strata sharing the drain (the consumer group).
    let b = spawn();

    let acked = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(load(a.port, 0, acked.clone()));
    let deadline = Instant::now() + Duration::from_secs(300);
    while acked.load(Ordering::SeqCst) < WRITES / 2 {
        assert!(Instant::now() < deadline, "load too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Postgres holds the drains' writes for a moment, so that the strata
    // about to die has batches read from the outbox and not yet committed.
    let mut lock = env.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE strata_entries IN SHARE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.child.kill().expect("SIGKILL strata"); // std's kill is SIGKILL
    let _ = a.child.wait();
    writer.await.expect("writer");
    let through_a = acked.load(Ordering::SeqCst);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let consumer_a = format!("{}-{}", host.trim(), a.child.id());
    assert!((WRITES / 2..WRITES).contains(&through_a), "{through_a}");
    // What A had in Redis at the kill, and what its drain had read but not
    // committed, is pending in the outbox now.
    let mut r = env.raw_redis().await;
    let at_kill =
        String::from_utf8_lossy(&r.cmd("XPENDING strata:outbox strata-drain").await).into_owned();
    eprintln!("at the kill: {through_a} acknowledged; XPENDING {at_kill:?}");
    lock.rollback().await.expect("unlock");

    // Restarted: the rest of the load (from the first unacknowledged write)
    // through the new process, while B keeps draining.
    let a2 = spawn();
    let acked2 = Arc::new(AtomicUsize::new(through_a));
    load(a2.port, through_a, acked2.clone()).await;
    assert_eq!(
        acked2.load(Ordering::SeqCst),
        WRITES,
        "the restarted strata took the rest"
    );

    env.wait_drained(Duration::from_secs(300)).await;
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM strata_entries \
         WHERE key LIKE 'durable:w%' AND convert_from(value, 'UTF8') = 'v' || substr(convert_from(key, 'UTF8'), 10)",
    )
    .fetch_one(&env.pool)
    .await
    .expect("count");
    assert_eq!(
        rows as usize, WRITES,
        "every acknowledged write reached Postgres"
    );
    let pending =
        String::from_utf8_lossy(&r.cmd("XPENDING strata:outbox strata-drain").await).into_owned();
    assert!(pending.starts_with("*4\r\n:0\r\n"), "{pending}");
    let metrics = |p: u16| async move {
        support::clients::metrics_text(format!("127.0.0.1:{p}").parse().expect("addr")).await
    };
    let claimed: f64 = [
        metrics(b.metrics_port).await,
        metrics(a2.metrics_port).await,
    ]
    .iter()
    .filter_map(|m| support::clients::metric(m, "strata_tier_behind_claimed_total"))
    .sum();
    eprintln!("changes claimed from the killed strata: {claimed}");
    // The killed strata's read-but-uncommitted entries, if it had any, were
    // taken over by the others.
    let held_by_a: f64 = at_kill
        .split(&format!("${}\r\n{consumer_a}\r\n$", consumer_a.len()))
        .nth(1)
        .and_then(|rest| rest.split("\r\n").nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!(
        held_by_a > 0.0,
        "the killed strata had nothing in flight: {at_kill}"
    );
    assert!(claimed >= held_by_a, "claimed {claimed} of {held_by_a}");
}
