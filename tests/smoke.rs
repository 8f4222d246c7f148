#![allow(clippy::unwrap_used)]
mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_get_through_strata() {
    let redis = support::RedisServer::start();
    let running = support::strata::start(&redis.addr()).await;
    support::strata::wait_ready(&running).await;
    let client = redis::Client::open(format!("redis://{}/", running.addr)).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(v, "v");
    running.shutdown().await;
}
