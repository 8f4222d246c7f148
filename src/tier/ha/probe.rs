//! The background probe: every `probe_interval_ms` (and at once when a
//! write fails), each configured host is asked its role and WAL position
//! in one statement; replicas' replay lag follows, and the primary is
//! chosen again (`Hosts::record`).
//!
//! # How lag is measured
//!
//! A replica whose replayed WAL position (`pg_last_wal_replay_lsn()`) has
//! reached the primary's (`pg_current_wal_lsn()`, from the same round, or
//! the last round the primary answered) lacks nothing the primary had
//! then: its lag is the age of that primary reading (0 when taken this
//! round). A replica behind it lacks changes; its lag is the time since
//! the last transaction it replayed (`pg_last_xact_replay_timestamp()`), an
//! upper bound on how old its newest missing change can be. A replica
//! that never replayed a transaction and is behind has no known lag and is
//! not read. Positions are compared as numbers with `pg_wal_lsn_diff`.

use std::sync::Weak;
use std::time::{Duration, Instant};

use sqlx::Row;

use super::{Hosts, Role};

const PROBE: &str = "\
SELECT pg_is_in_recovery(),
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                            ELSE pg_current_wal_lsn() END, '0/0')::int8,
       (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::int8";

/// One host's answer.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Down,
    Primary {
        lsn: i64,
    },
    Replica {
        lsn: i64,
        replay_age_ms: Option<i64>,
    },
}

/// Starts the probe; it ends when the hosts are dropped.
pub fn start(hosts: Weak<Hosts>, interval: Duration, timeout: Duration) {
    tokio::spawn(async move {
        // The primary's WAL position at the last round it answered.
        let mut primary_seen: Option<(i64, Instant)> = None;
        loop {
            let Some(h) = hosts.upgrade() else {
                return;
            };
            let answers = probe_all(&h, timeout).await;
            // The primary the round will choose (see `choose_primary`).
            let chosen = super::choose_primary(
                h.primary_index(),
                answers.iter().map(|a| match a {
                    Answer::Down => Role::Down,
                    Answer::Primary { .. } => Role::Primary,
                    Answer::Replica { .. } => Role::Replica,
                }),
            );
            if let Some(Answer::Primary { lsn }) = answers.get(chosen) {
                primary_seen = Some((*lsn, Instant::now()));
            }
            let found: Vec<(Role, Option<u64>)> = answers
                .iter()
                .map(|a| match *a {
                    Answer::Down => (Role::Down, None),
                    Answer::Primary { .. } => (Role::Primary, None),
                    Answer::Replica { lsn, replay_age_ms } => {
                        (Role::Replica, lag_ms(lsn, replay_age_ms, primary_seen))
                    }
                })
                .collect();
            if let Some(i) = h.record(&found) {
                tracing::warn!(primary = %h.all()[i].name, "tier: postgres primary changed");
            }
            h.wait(interval).await;
            drop(h);
            // At most one round per 50 ms however many writes fail.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// A replica's lag (see the module's doc).
fn lag_ms(lsn: i64, replay_age_ms: Option<i64>, primary: Option<(i64, Instant)>) -> Option<u64> {
    match primary {
        Some((p, at)) if lsn >= p => {
            Some(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
        }
        _ => replay_age_ms.map(|a| u64::try_from(a.max(0)).unwrap_or(0)),
    }
}

/// Asks every host at once; a host that does not answer within `timeout`
/// is down for this round.
async fn probe_all(hosts: &Hosts, timeout: Duration) -> Vec<Answer> {
    let tasks: Vec<_> = hosts
        .all()
        .iter()
        .map(|h| {
            let pool = h.pool.clone();
            tokio::spawn(async move {
                let q = sqlx::query(PROBE).fetch_one(&pool);
                match tokio::time::timeout(timeout, q).await {
                    Ok(Ok(row)) => {
                        let recovering: bool = row.try_get(0).unwrap_or(false);
                        let lsn: i64 = row.try_get::<Option<i64>, _>(1).ok().flatten().unwrap_or(0);
                        if recovering {
                            Answer::Replica {
                                lsn,
                                replay_age_ms: row.try_get::<Option<i64>, _>(2).ok().flatten(),
                            }
                        } else {
                            Answer::Primary { lsn }
                        }
                    }
                    _ => Answer::Down,
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or(Answer::Down));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_up_replica_lags_by_the_age_of_the_primary_reading() {
        let now = Instant::now();
        assert_eq!(lag_ms(100, Some(60_000), Some((100, now))), Some(0));
        assert_eq!(lag_ms(90, Some(1_500), Some((100, now))), Some(1_500));
        assert_eq!(lag_ms(90, None, Some((100, now))), None);
        assert_eq!(lag_ms(90, Some(20), None), Some(20));
    }
}
