//! The PostgreSQL harness itself (`tests/support/postgres.rs`): a primary
//! and a streaming replica (`pg_basebackup -R`) that follows it and can be
//! promoted, as later tier tests (Postgres failover) need.

mod support;

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use support::postgres::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_replica_follows_and_can_be_promoted() {
    let primary = tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("primary");
    let p = PgPoolOptions::new()
        .max_connections(1)
        .connect(&primary.url())
        .await
        .expect("primary pool");
    sqlx::query("CREATE TABLE t (v int)")
        .execute(&p)
        .await
        .expect("create");
    let replica = {
        let primary = &primary;
        std::thread::scope(|s| s.spawn(|| Postgres::start_replica(primary)).join())
            .expect("replica")
    };
    let r = PgPoolOptions::new()
        .max_connections(1)
        .connect(&replica.url())
        .await
        .expect("replica pool");
    let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&r)
        .await
        .expect("recovery");
    assert!(recovering, "the replica is a standby");
    sqlx::query("INSERT INTO t VALUES (42)")
        .execute(&p)
        .await
        .expect("insert");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE v = 42")
            .fetch_one(&r)
            .await
            .expect("count");
        if n == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never replayed the insert"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica.promote();
    let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&r)
        .await
        .expect("recovery");
    assert!(!recovering, "promoted");
    sqlx::query("INSERT INTO t VALUES (43)")
        .execute(&r)
        .await
        .expect("the promoted replica takes writes");
}
