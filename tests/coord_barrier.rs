//! BARRIER.* through strata against a real redis-server: all parties
//! released together (each with the same generation, none before the last
//! arrives), reuse across three generations, a timed-out caller leaving
//! its generation, a reset breaking one, and the errors.

mod support;

use std::time::Duration;

use support::clients::{encode_line, show, Env, RawConn};
use support::coord_util::{int, slow_frame, waiters_queued};

/// `parties - 1` callers wait; they have no reply until the last arrives;
/// then every caller gets the same generation.
async fn one_generation(env: &Env, conns: &mut [RawConn], name: &str) -> i64 {
    let parties = conns.len();
    let (last, first) = conns.split_last_mut().expect("parties");
    for (i, c) in first.iter_mut().enumerate() {
        c.send(&encode_line(&format!("BARRIER.WAIT {name} {parties} 0")))
            .await;
        waiters_queued(env, (i + 1) as f64).await;
    }
    for c in first.iter_mut() {
        c.expect_silence(Duration::from_millis(100)).await;
    }
    let generation = int(&last.cmd(&format!("BARRIER.WAIT {name} {parties} 0")).await);
    for c in first.iter_mut() {
        assert_eq!(int(&slow_frame(c).await), generation, "the same generation");
    }
    waiters_queued(env, 0.0).await;
    generation
}

#[tokio::test]
async fn all_parties_pass_together_across_three_generations() {
    let env = Env::start().await;
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(env.raw().await);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(one_generation(&env, &mut conns, "meet").await);
    }
    assert_eq!(seen, vec![1, 2, 3]);
}

/// A caller whose timeout runs out gets nil and is no longer counted: the
/// next generation still needs all its parties.
#[tokio::test]
async fn a_timed_out_caller_leaves_its_generation() {
    let env = Env::start().await;
    let mut a = env.raw().await;
    a.expect("BARRIER.WAIT t 2 300", b"$-1\r\n").await;
    let mut conns = vec![env.raw().await, env.raw().await];
    assert_eq!(one_generation(&env, &mut conns, "t").await, 1);
    a.expect("PING", b"+PONG\r\n").await;
}

#[tokio::test]
async fn reset_breaks_the_waiting_generation_and_errors() {
    let env = Env::start().await;
    let mut w = env.raw().await;
    w.send(&encode_line("BARRIER.WAIT r 3 0")).await;
    waiters_queued(&env, 1.0).await;
    let mut c = env.raw().await;
    c.expect("BARRIER.RESET r", b":1\r\n").await;
    assert_eq!(
        show(&slow_frame(&mut w).await),
        show(b"-BROKEN barrier 'r' generation 1 was reset\r\n")
    );
    c.expect("BARRIER.RESET r", b":0\r\n").await;
    // The next generation starts empty.
    let mut conns = vec![env.raw().await, env.raw().await];
    assert_eq!(one_generation(&env, &mut conns, "r").await, 2);
    c.send(&encode_line("BARRIER.WAIT p 3 0")).await;
    waiters_queued(&env, 1.0).await;
    let mut d = env.raw().await;
    d.expect(
        "BARRIER.WAIT p 2 0",
        b"-ERR barrier 'p' is waiting for 3 parties, not 2\r\n",
    )
    .await;
    for (line, reply) in [
        (
            "BARRIER.WAIT x 2",
            "-ERR wrong number of arguments for 'barrier.wait' command\r\n",
        ),
        (
            "BARRIER.RESET",
            "-ERR wrong number of arguments for 'barrier.reset' command\r\n",
        ),
        (
            "BARRIER.WAIT x 0 10",
            "-ERR value is out of range, must be positive\r\n",
        ),
        (
            "BARRIER.WAIT x two 10",
            "-ERR value is not an integer or out of range\r\n",
        ),
        ("BARRIER.WAIT x 2 -1", "-ERR timeout is negative\r\n"),
    ] {
        d.expect(line, reply.as_bytes()).await;
    }
}

/// A caller that hangs up while waiting leaves its generation: the next
/// two callers of a 2-party barrier still wait for each other.
#[tokio::test]
async fn a_caller_that_hangs_up_leaves_its_generation() {
    let env = Env::start().await;
    let mut gone = env.raw().await;
    gone.send(&encode_line("BARRIER.WAIT d 2 0")).await;
    waiters_queued(&env, 1.0).await;
    drop(gone);
    waiters_queued(&env, 0.0).await;
    let mut b = env.raw_backend().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while b.cmd("HGET strata:barrier:{d}: arrived").await != b"$1\r\n0\r\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the caller never left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conns = vec![env.raw().await, env.raw().await];
    assert_eq!(one_generation(&env, &mut conns, "d").await, 1);
}
