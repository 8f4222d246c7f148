//! Helpers shared by the tests of the coordination primitives
//! (tests/coord_sem.rs, coord_latch.rs, coord_barrier.rs, coord_leader.rs,
//! coord_vset.rs): integer replies, generous waits for blocked replies,
//! and the waiters gauge.

use std::time::{Duration, Instant};

use super::clients::{metric, metrics_text, show, Env, RawConn};

/// How long a test waits for a reply that a wake-up should bring: long,
/// because the machine is shared; nothing here asserts a speed.
pub const BLOCKED_WAIT: Duration = Duration::from_secs(60);

/// The integer of a `:n` reply.
pub fn int(frame: &[u8]) -> i64 {
    assert_eq!(
        frame.first(),
        Some(&b':'),
        "not an integer: {}",
        show(frame)
    );
    String::from_utf8_lossy(&frame[1..frame.len() - 2])
        .parse()
        .expect("integer")
}

/// Sends a command and reads its integer reply.
pub async fn int_cmd(c: &mut RawConn, line: &str) -> i64 {
    int(&c.cmd(line).await)
}

/// Reads a reply that may take a while (a blocked command).
pub async fn slow_frame(c: &mut RawConn) -> Vec<u8> {
    c.read_frame_within(BLOCKED_WAIT)
        .await
        .expect("a reply within the generous deadline")
}

/// Waits (generously) until `n` waiters are queued in strata.
pub async fn waiters_queued(env: &Env, n: f64) {
    let deadline = Instant::now() + BLOCKED_WAIT;
    loop {
        let text = metrics_text(env.http()).await;
        let now = metric(&text, "strata_coord_waiters{backend=\"redis\"}").unwrap_or(-1.0);
        if now == n {
            return;
        }
        assert!(Instant::now() < deadline, "{now} waiters queued, not {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A primitive's event counter (`strata_coord_primitive_events_total`).
pub async fn event(env: &Env, primitive: &str, event: &str) -> f64 {
    let text = metrics_text(env.http()).await;
    let series = format!(
        "strata_coord_primitive_events_total{{backend=\"redis\",primitive=\"{primitive}\",event=\"{event}\"}}"
    );
    metric(&text, &series).unwrap_or(0.0)
}
