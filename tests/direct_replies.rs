//! Direct replies (`server/direct.rs`): a reply written by the backend
//! connection's task, around the client's writer, must keep every
//! guarantee the writer gives: replies byte-exact and in request order,
//! for many clients sharing one backend connection, with replies larger
//! than a socket buffer (a partial write hands the rest to the writer),
//! mixed with replies strata makes itself and with pipelines, and for a
//! client that stops reading for a while.
#![allow(clippy::unwrap_used)]
mod support;

use std::time::Duration;

use support::clients::{encode, RawConn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bulk reply of `value`.
fn bulk(value: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", value.len()).into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

/// One client's run: request/response, each reply checked at once.
async fn request_response(addr: String, client: usize) {
    let mut conn = RawConn::connect(&addr).await;
    for i in 0..200usize {
        let key = format!("direct:{client}:{}", i % 7);
        // Mostly small values; every 25th is 1 MiB, over any socket buffer.
        let size = if i % 25 == 24 {
            1 << 20
        } else {
            1 + (i * 37) % 300
        };
        let value: Vec<u8> = (0..size)
            .map(|j| b'a' + ((i + j + client) % 26) as u8)
            .collect();
        assert_eq!(
            conn.call(&[b"SET", key.as_bytes(), &value]).await,
            b"+OK\r\n",
            "client {client} SET {i}"
        );
        assert_eq!(
            conn.call(&[b"GET", key.as_bytes()]).await,
            bulk(&value),
            "client {client} GET {i}"
        );
        // A reply strata makes itself between two backend replies.
        if i % 10 == 0 {
            assert_eq!(conn.call(&[b"PING"]).await, b"+PONG\r\n");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_response_clients_get_their_own_replies_in_order() {
    let env = support::clients::Env::start().await;
    let addr = env.addr().to_string();
    let runs: Vec<_> = (0..16)
        .map(|c| tokio::spawn(request_response(addr.clone(), c)))
        .collect();
    for run in runs {
        tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("clients finish")
            .expect("client ok");
    }
}

#[tokio::test]
async fn a_client_that_pauses_reading_gets_every_reply_in_order() {
    let env = support::clients::Env::start().await;
    let mut setter = env.raw().await;
    let big: Vec<u8> = (0..(4 << 20)).map(|j| b'A' + (j % 26) as u8).collect();
    assert_eq!(
        setter.call(&[b"SET", b"direct:big", &big]).await,
        b"+OK\r\n"
    );

    let mut stream = tokio::net::TcpStream::connect(env.addr()).await.unwrap();
    // One request at a time, and the client does not read for a while
    // after each: the 4 MiB reply cannot go out in one write.
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for i in 0..6u32 {
        let (request, reply) = if i % 2 == 0 {
            (encode(&[b"GET", b"direct:big"]), bulk(&big))
        } else {
            let n = i.to_string();
            (encode(&[b"ECHO", n.as_bytes()]), bulk(n.as_bytes()))
        };
        stream.write_all(&request).await.unwrap();
        expected.extend_from_slice(&reply);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Read until this reply is whole.
        let want = expected.len();
        let mut buf = vec![0u8; 64 * 1024];
        while got.len() < want {
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
                .await
                .expect("reply within 30 s")
                .unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "replies differ from what was sent, in order"
    );
}

#[tokio::test]
async fn pipelined_and_single_requests_interleave_in_order() {
    let env = support::clients::Env::start().await;
    let mut conn = env.raw().await;
    for round in 0..50u32 {
        // A single request (may go direct), then a pipeline of three
        // (queued behind it or after it), then a single one again.
        let a = format!("a{round}");
        assert_eq!(
            conn.call(&[b"ECHO", a.as_bytes()]).await,
            bulk(a.as_bytes())
        );
        let mut pipeline = Vec::new();
        let mut replies = Vec::new();
        for k in 0..3u32 {
            let v = format!("{round}-{k}");
            pipeline.extend_from_slice(&encode(&[b"SET", b"direct:p", v.as_bytes()]));
            pipeline.extend_from_slice(&encode(&[b"GET", b"direct:p"]));
            replies.push(b"+OK\r\n".to_vec());
            replies.push(bulk(v.as_bytes()));
        }
        conn.send(&pipeline).await;
        for want in &replies {
            let frame = conn.read_frame().await;
            assert_eq!(frame, *want, "round {round}");
        }
    }
}
