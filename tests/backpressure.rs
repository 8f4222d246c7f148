//! A client that pipelines without reading is throttled: strata stops
//! reading it once `max_inflight_per_client` commands wait, so the backend
//! sees only what the socket buffers and the bound allow, and every reply
//! still arrives, in order, once the client reads.
#![allow(clippy::unwrap_used)]
mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn processed(redis: &support::RedisServer) -> u64 {
    let info = redis.raw(b"INFO stats\r\n", Duration::from_millis(300));
    let text = String::from_utf8_lossy(&info);
    text.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_commands_processed")
}

/// A backend holding `big` (16 KiB) and strata in front of it with at most
/// 64 commands in flight per client (and `connections` multiplexed
/// connections per protocol, when given).
async fn start(connections: Option<usize>) -> (support::RedisServer, String, strata::app::Running) {
    let redis = support::RedisServer::start();
    let value = "v".repeat(16 * 1024);
    redis.raw(
        format!("SET big {value}\r\n").as_bytes(),
        Duration::from_millis(300),
    );
    let mut config = support::strata::test_config(&redis.addr());
    config.server.max_inflight_per_client = 64;
    if let Some(n) = connections {
        config.backend.connections = n;
    }
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    (redis, value, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_without_reading_is_throttled_then_fully_answered() {
    let (redis, value, running) = start(None).await;

    const N: usize = 20_000;
    let client = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let (mut rd, mut wr) = client.into_split();
    let before = processed(&redis);
    let request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(N);
    // Write everything without reading; the write stalls once every buffer
    // on the way is full, so it runs in its own task.
    let writer = tokio::spawn(async move {
        wr.write_all(&request).await.unwrap();
        wr
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = processed(&redis) - before;
    eprintln!("backend ran {during} of {N} GETs while the client read nothing");
    // 20,000 replies of 16 KiB are 320 MB; socket buffers hold a few MB.
    assert!(
        during < (N as u64) / 2,
        "backend ran {during} of {N} GETs while the client read nothing: no backpressure"
    );

    // Now read: every reply arrives.
    let reply_len = format!("${}\r\n{value}\r\n", value.len()).len();
    let want = reply_len * N;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let reading = async {
        while got < want {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "strata closed after {got} of {want} bytes");
            got += n;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("all replies within 60 s");
    assert_eq!(got, want);
    let _wr = writer.await.unwrap();
    running.shutdown().await;
}

/// A client that does not read its replies must not hold up another one
/// sharing its multiplexed backend connection: the connection hands each
/// client its replies and goes on; the slow one waits alone, bounded by its
/// own in-flight limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_stall_others_on_its_connection() {
    // One multiplexed connection per protocol: both clients share it.
    let (_redis, _value, running) = start(Some(1)).await;

    const N: usize = 20_000;
    let slow = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let (_slow_rd, mut slow_wr) = slow.into_split();
    let request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(N);
    let writer = tokio::spawn(async move {
        let _ = slow_wr.write_all(&request).await;
        slow_wr
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Meanwhile another client is served, command after command.
    let mut other = support::clients::RawConn::connect(&running.addr.to_string()).await;
    for i in 0..200 {
        let key = format!("k{i}");
        assert_eq!(other.cmd(&format!("SET {key} {i}")).await, b"+OK\r\n");
        let want = format!("${}\r\n{i}\r\n", i.to_string().len());
        assert_eq!(other.cmd(&format!("GET {key}")).await, want.as_bytes());
    }
    writer.abort();
    running.shutdown().await;
}
