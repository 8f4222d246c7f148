//! The tier store's versioned statements (`tier/store.rs`) against a real
//! PostgreSQL: a delete that lost to a newer change leaves every table as
//! it was, tombstones included (the one delete write-through, admin
//! commands and write-behind's drain share).

mod support;

use std::time::Duration;

use bytes::Bytes;
use strata::tier::store::Put;
use strata::tier::{Store, StoreOptions};
use support::postgres::Postgres;

fn put(key: &str, value: &str, version: i64) -> Put {
    Put {
        key: Bytes::from(key.to_string()),
        kind: "string",
        value: Bytes::from(value.to_string()),
        expires_at_ms: None,
        version: Some(version),
    }
}

async fn tombstone(store: &Store, key: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT version FROM strata_tombstones WHERE key = $1")
        .bind(key.as_bytes())
        .fetch_optional(store.pool())
        .await
        .expect("tombstone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_older_than_the_row_changes_nothing() {
    let pg = tokio::task::block_in_place(Postgres::start);
    let store = Store::connect(&StoreOptions {
        url: pg.url(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(60),
    })
    .expect("store");
    store.migrate().await.expect("migrate");

    store.put(&[put("k", "new", 10)]).await.expect("put");
    // A delete of version 5 arrives late (a write-behind redelivery): the
    // row of version 10 stays, and no tombstone is left.
    let gone = store
        .delete(&[(Bytes::from_static(b"k"), Some(5))])
        .await
        .expect("delete");
    assert!(gone.is_empty(), "the newer row was not deleted");
    let rows = store
        .fetch(&[Bytes::from_static(b"k")])
        .await
        .expect("fetch");
    assert_eq!((rows.len(), rows[0].version), (1, 10));
    assert_eq!(
        tombstone(&store, "k").await,
        None,
        "a delete that lost to a newer row left a tombstone"
    );

    // A newer delete removes the row and leaves its tombstone; an older
    // put replayed afterwards cannot bring the key back.
    let gone = store
        .delete(&[(Bytes::from_static(b"k"), Some(11))])
        .await
        .expect("delete");
    assert_eq!(gone, vec![Bytes::from_static(b"k")]);
    assert_eq!(tombstone(&store, "k").await, Some(11));
    assert!(store
        .put(&[put("k", "old", 10)])
        .await
        .expect("put")
        .is_empty());
    assert!(store
        .fetch(&[Bytes::from_static(b"k")])
        .await
        .expect("fetch")
        .is_empty());
}
