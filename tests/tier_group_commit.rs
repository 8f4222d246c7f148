//! Write-through group commit (`tier/committer.rs`) against a real
//! PostgreSQL: writers that queue while a statement runs go to Postgres
//! together in the next one, and each gets its own outcome.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use sqlx::postgres::PgPoolOptions;
use strata::tier::committer::Committer;
use strata::tier::store::Put;
use strata::tier::{Store, StoreOptions};
use support::postgres::Postgres;

fn put(key: String) -> Put {
    Put {
        key: Bytes::from(key),
        kind: "string",
        value: Bytes::from_static(b"v"),
        expires_at_ms: None,
        version: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_queued_behind_a_statement_share_the_next_one() {
    let pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("postgres");
    let store = Store::connect(&StoreOptions {
        url: pg.url(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(60),
    })
    .expect("store");
    store.migrate().await.expect("migrate");
    store
        .put(&[put("blocker".into())])
        .await
        .expect("first row");
    // One worker, held up by a row lock another session takes.
    let committer = Committer::start(store.clone(), 1);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg.url())
        .await
        .expect("pool");
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM strata_entries WHERE key = 'blocker'::bytea FOR UPDATE")
        .execute(&mut *tx)
        .await
        .expect("lock");
    let first = {
        let c = committer.clone();
        tokio::spawn(async move { c.put(vec![put("blocker".into())]).await })
    };
    // The worker's statement waits for the lock in Postgres.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .expect("pg_stat_activity");
        if waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never took the first write"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let writers: Vec<_> = (0..20)
        .map(|i| {
            let c = committer.clone();
            tokio::spawn(async move { c.put(vec![put(format!("k{i}"))]).await })
        })
        .collect();
    while committer.queued() < 20 {
        assert!(
            Instant::now() < deadline,
            "writers never queued: {}",
            committer.queued()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.rollback().await.expect("release");
    assert_eq!(first.await.expect("task").expect("first").len(), 1);
    for (i, w) in writers.into_iter().enumerate() {
        let applied = w.await.expect("task").expect("put");
        assert_eq!(applied.len(), 1, "writer {i} gets its own row back");
        assert_eq!(&applied[0].0[..], format!("k{i}").as_bytes());
    }
    assert_eq!(
        committer.statements(),
        2,
        "the 20 queued writers in one statement"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM strata_entries")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 21);
}
