//! LATCH.* through strata against a real redis-server: replies and
//! errors, waiters released when the count reaches 0 (woken by the last
//! countdown: no ttl is in play), a waiter released by the opening it
//! waited for even though the latch starts again at once, and the
//! timeout's nil.

mod support;

use support::clients::{encode_line, Env};
use support::coord_util::{int_cmd, slow_frame, waiters_queued};

#[tokio::test]
async fn init_countdown_count_and_their_errors() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.expect("LATCH.COUNT job", b":0\r\n").await;
    // An open latch: waiting returns at once.
    c.expect("LATCH.WAIT job 0", b"+OK\r\n").await;
    c.expect("LATCH.INIT job 3", b":1\r\n").await;
    c.expect("latch.init job 5", b":0\r\n").await;
    c.expect("LATCH.COUNT job", b":3\r\n").await;
    c.expect("LATCH.COUNTDOWN job", b":2\r\n").await;
    c.expect("LATCH.COUNTDOWN job", b":1\r\n").await;
    c.expect("LATCH.COUNTDOWN job", b":0\r\n").await;
    c.expect("LATCH.COUNTDOWN job", b":0\r\n").await;
    c.expect("LATCH.COUNT job", b":0\r\n").await;
    c.expect("LATCH.INIT job 1", b":1\r\n").await;
    for (line, reply) in [
        (
            "LATCH.INIT x",
            "-ERR wrong number of arguments for 'latch.init' command\r\n",
        ),
        (
            "LATCH.COUNTDOWN",
            "-ERR wrong number of arguments for 'latch.countdown' command\r\n",
        ),
        (
            "LATCH.WAIT x",
            "-ERR wrong number of arguments for 'latch.wait' command\r\n",
        ),
        (
            "LATCH.COUNT x y",
            "-ERR wrong number of arguments for 'latch.count' command\r\n",
        ),
        (
            "LATCH.INIT x 0",
            "-ERR value is out of range, must be positive\r\n",
        ),
        (
            "LATCH.INIT x -2",
            "-ERR value is out of range, must be positive\r\n",
        ),
        (
            "LATCH.INIT x many",
            "-ERR value is not an integer or out of range\r\n",
        ),
        ("LATCH.WAIT x -1", "-ERR timeout is negative\r\n"),
        (
            "LATCH.WAIT x soon",
            "-ERR timeout is not an integer or out of range\r\n",
        ),
    ] {
        c.expect(line, reply.as_bytes()).await;
    }
}

/// Four waiters (two with a limit, two without) are released by the
/// countdown that reaches 0, and not before.
#[tokio::test]
async fn waiters_return_when_the_count_reaches_zero() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.expect("LATCH.INIT start 2", b":1\r\n").await;
    let mut waiters = Vec::new();
    for (i, timeout) in ["0", "600000", "0", "600000"].iter().enumerate() {
        let mut w = env.raw().await;
        w.send(&encode_line(&format!("LATCH.WAIT start {timeout}")))
            .await;
        waiters_queued(&env, (i + 1) as f64).await;
        waiters.push(w);
    }
    c.expect("LATCH.COUNTDOWN start", b":1\r\n").await;
    // Still closed: every waiter still waits.
    waiters_queued(&env, 4.0).await;
    for w in &mut waiters {
        w.expect_silence(std::time::Duration::from_millis(200))
            .await;
    }
    c.expect("LATCH.COUNTDOWN start", b":0\r\n").await;
    for w in &mut waiters {
        assert_eq!(slow_frame(w).await, b"+OK\r\n");
    }
    waiters_queued(&env, 0.0).await;
}

/// A waiter is released by the opening it waited for even when the latch
/// is started again in the same breath (before the waiter looks).
#[tokio::test]
async fn an_opening_is_not_missed_when_the_latch_starts_again() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.expect("LATCH.INIT again 1", b":1\r\n").await;
    let mut w = env.raw().await;
    w.send(&encode_line("LATCH.WAIT again 0")).await;
    waiters_queued(&env, 1.0).await;
    // Countdown and a new INIT in one write: the waiter looks after both.
    c.send(&encode_line("LATCH.COUNTDOWN again")).await;
    c.send(&encode_line("LATCH.INIT again 1")).await;
    assert_eq!(c.read_frame().await, b":0\r\n");
    assert_eq!(c.read_frame().await, b":1\r\n");
    assert_eq!(slow_frame(&mut w).await, b"+OK\r\n");
    assert_eq!(int_cmd(&mut c, "LATCH.COUNT again").await, 1);
}

/// The timeout gives nil, and the connection goes on.
#[tokio::test]
async fn wait_times_out_with_nil() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.expect("LATCH.INIT never 1", b":1\r\n").await;
    c.expect("LATCH.WAIT never 300", b"$-1\r\n").await;
    c.expect("PING", b"+PONG\r\n").await;
}
