//! TLS through strata (issue 17 item 1), with certificates made by rcgen
//! in each test and real clients and servers: a raw tokio-rustls client,
//! redis-cli --tls, and redis-server listening on TLS only.
//!
//! Client side: TLS beside the plain listener, mutual TLS (a client
//! without a certificate, or with one from another CA, refused), a client
//! trusting another CA or meeting an expired certificate refuses strata,
//! TLS 1.3 only, redis-cli, and a certificate reloaded without dropping
//! the connections already open. Backend side: a TLS-only redis (with and
//! without a required client certificate, the key from an environment
//! variable), server-name checks and their override, and a wrong CA that
//! leaves the backend down with a clear error.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::clients::{redis_cli, RawConn};
use support::tls::{call, client_config, connect, Ca, Files, Pair, TlsRedis, Validity};
use support::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// strata in front of `backend`, with client TLS on a port of its own
/// using `server` as its certificate; `client_ca` turns on mutual TLS.
fn tls_config(
    backend: &str,
    files: &Files,
    server: &Pair,
    client_ca: Option<&Ca>,
) -> strata::config::Config {
    let mut c = support::strata::test_config(backend);
    c.tls.listen = Some("127.0.0.1:0".parse().unwrap());
    c.tls.cert_file = Some(files.write("strata.crt", &server.cert));
    c.tls.key_file = Some(files.write("strata.key", &server.key));
    c.tls.client_ca_file = client_ca.map(|ca| files.write("clients-ca.crt", &ca.pem));
    c
}

fn tls_addr(running: &strata::app::Running) -> SocketAddr {
    running.tls_addr.expect("a TLS listener")
}

fn all() -> &'static [&'static rustls::SupportedProtocolVersion] {
    rustls::ALL_VERSIONS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_beside_plain_clients() {
    let redis = RedisServer::start();
    let files = Files::new();
    let ca = Ca::new("strata test CA");
    let server = ca.leaf(&["localhost", "127.0.0.1"], Validity::Current);
    let running =
        support::strata::start_with(tls_config(&redis.addr(), &files, &server, None)).await;
    support::strata::wait_ready(&running).await;

    let mut tls = connect(
        tls_addr(&running),
        "localhost",
        client_config(&ca.pem, None, all()),
    )
    .await
    .expect("TLS handshake with strata");
    assert_eq!(call(&mut tls, "SET tls:k hello").await.unwrap(), "+OK\r\n");
    assert_eq!(
        call(&mut tls, "GET tls:k").await.unwrap(),
        "$5\r\nhello\r\n"
    );
    // A large pipelined write and its replies, through TLS both ways.
    let value = "v".repeat(300_000);
    assert_eq!(
        call(&mut tls, &format!("SET tls:big {value}"))
            .await
            .unwrap(),
        "+OK\r\n"
    );
    let big = call(&mut tls, "GET tls:big").await.unwrap();
    assert_eq!(big.len(), value.len() + "$300000\r\n\r\n".len());
    // A dedicated connection (MULTI) from a TLS client.
    assert_eq!(call(&mut tls, "MULTI").await.unwrap(), "+OK\r\n");
    assert_eq!(call(&mut tls, "INCR tls:n").await.unwrap(), "+QUEUED\r\n");
    assert_eq!(call(&mut tls, "EXEC").await.unwrap(), "*1\r\n:1\r\n");

    // The plain listener still serves, the same keys.
    let mut plain = RawConn::connect(&running.addr.to_string()).await;
    plain.expect("GET tls:k", b"$5\r\nhello\r\n").await;

    // A plain client on the TLS port gets a TLS alert and the connection
    // closes; no Redis reply.
    let mut wrong = tokio::net::TcpStream::connect(tls_addr(&running))
        .await
        .unwrap();
    wrong.write_all(b"PING\r\n").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), wrong.read_to_end(&mut got))
        .await
        .expect("closed")
        .ok();
    assert!(got.first() == Some(&0x15) || got.is_empty(), "{got:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_when_the_plain_listener_is_off() {
    let redis = RedisServer::start();
    let files = Files::new();
    let ca = Ca::new("strata test CA");
    let server = ca.leaf(&["localhost"], Validity::Current);
    let mut config = tls_config(&redis.addr(), &files, &server, None);
    let plain_addr = format!("127.0.0.1:{}", support::free_port());
    config.server.listen = plain_addr.parse().unwrap();
    config.tls.plain = false;
    let running = support::strata::start_with(config).await;
    assert_eq!(running.addr, tls_addr(&running));
    let mut tls = connect(
        tls_addr(&running),
        "localhost",
        client_config(&ca.pem, None, all()),
    )
    .await
    .unwrap();
    assert_eq!(call(&mut tls, "PING").await.unwrap(), "+PONG\r\n");
    assert!(
        tokio::net::TcpStream::connect(&plain_addr).await.is_err(),
        "nothing listens on server.listen"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_good_certificate() {
    let redis = RedisServer::start();
    let files = Files::new();
    let ca = Ca::new("strata test CA");
    let clients_ca = Ca::new("clients CA");
    let other_ca = Ca::new("someone else's CA");
    let server = ca.leaf(&["localhost"], Validity::Current);
    let running = support::strata::start_with(tls_config(
        &redis.addr(),
        &files,
        &server,
        Some(&clients_ca),
    ))
    .await;
    let addr = tls_addr(&running);

    let good = clients_ca.leaf(&["app"], Validity::Current);
    let mut ok = connect(
        addr,
        "localhost",
        client_config(&ca.pem, Some(&good), all()),
    )
    .await
    .unwrap();
    assert_eq!(call(&mut ok, "PING").await.unwrap(), "+PONG\r\n");

    // No certificate: with TLS 1.3 the client's handshake completes before
    // strata checks, so the refusal shows on the first exchange.
    let refused = async |client: Option<&Pair>| -> String {
        match connect(addr, "localhost", client_config(&ca.pem, client, all())).await {
            Err(e) => e.to_string(),
            Ok(mut s) => match call(&mut s, "PING").await {
                Err(e) => e.to_string(),
                Ok(reply) => panic!("a client without a trusted certificate got {reply:?}"),
            },
        }
    };
    let none = refused(None).await;
    assert!(
        none.contains("CertificateRequired") || none.contains("closed") || none.contains("reset"),
        "{none}"
    );
    let foreign = other_ca.leaf(&["app"], Validity::Current);
    let wrong = refused(Some(&foreign)).await;
    assert!(
        wrong.contains("UnknownCA") || wrong.contains("BadCertificate") || wrong.contains("closed"),
        "{wrong}"
    );
    // The good client is still served.
    assert_eq!(call(&mut ok, "PING").await.unwrap(), "+PONG\r\n");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_a_certificate_from_another_ca_or_expired() {
    let redis = RedisServer::start();
    let files = Files::new();
    let ca = Ca::new("strata test CA");
    let other_ca = Ca::new("someone else's CA");
    let server = ca.leaf(&["localhost"], Validity::Current);
    let running =
        support::strata::start_with(tls_config(&redis.addr(), &files, &server, None)).await;
    let e = connect(
        tls_addr(&running),
        "localhost",
        client_config(&other_ca.pem, None, all()),
    )
    .await
    .expect_err("a client trusting another CA refuses strata");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // The wrong name is refused too.
    let e = connect(
        tls_addr(&running),
        "elsewhere",
        client_config(&ca.pem, None, all()),
    )
    .await
    .expect_err("a certificate for another name is refused");
    assert!(e.to_string().contains("not valid for name"), "{e}");
    running.shutdown().await;

    let expired = ca.leaf(&["localhost"], Validity::Expired);
    let running =
        support::strata::start_with(tls_config(&redis.addr(), &files, &expired, None)).await;
    let e = connect(
        tls_addr(&running),
        "localhost",
        client_config(&ca.pem, None, all()),
    )
    .await
    .expect_err("an expired certificate is refused");
    assert!(e.to_string().contains("certificate expired"), "{e}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_1_3_refuses_tls_1_2_clients() {
    let redis = RedisServer::start();
    let files = Files::new();
    let ca = Ca::new("strata test CA");
    let server = ca.leaf(&["localhost"], Validity::Current);
    let mut config = tls_config(&redis.addr(), &files, &server, None);
    config.tls.min_version = strata::tls::MinVersion::Tls13;
    let running = support::strata::start_with(config).await;
    let e = connect(
        tls_addr(&running),
        "localhost",
        client_config(&ca.pem, None, &[&rustls::version::TLS12]),
    )
    .await
    .expect_err("TLS 1.2 refused");
    assert!(
        e.to_string().contains("ProtocolVersion") || e.to_string().contains("HandshakeFailure"),
        "{e}"
    );
    let mut s = connect(
        tls_addr(&running),
        "localhost",
        client_config(&ca.pem, None, &[&rustls::version::TLS13]),
    )
    .await
    .unwrap();
    assert_eq!(call(&mut s, "PING").await.unwrap(), "+PONG\r\n");
    running.shutdown().await;
}

/// `strata_tls_handshake_failures_total{reason}` counts each failed
/// client handshake by why: a missing client certificate and a client
/// that does not trust strata's (`bad_certificate`), a TLS 1.2 client when
/// 1.3 is the minimum (`version`), plain text on the TLS port (`not_tls`),
/// a client that says nothing (`timeout`) or hangs up (`closed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_counted_by_reason() {
    let redis = RedisServer::start();
    let files = Files::new();
    let ca = Ca::new("strata test CA");
    let clients_ca = Ca::new("clients CA");
    let other_ca = Ca::new("someone else's CA");
    let server = ca.leaf(&["localhost"], Validity::Current);
    let mut config = tls_config(&redis.addr(), &files, &server, Some(&clients_ca));
    config.tls.min_version = strata::tls::MinVersion::Tls13;
    config.tls.handshake_timeout_ms = 300;
    let running = support::strata::start_with(config).await;
    let addr = tls_addr(&running);
    let http = running.http_addr.unwrap();
    let count = async |reason: &str| -> f64 {
        let text = support::clients::metrics_text(http).await;
        let series = format!("strata_tls_handshake_failures_total{{reason=\"{reason}\"}}");
        support::clients::metric(&text, &series).unwrap_or_else(|| panic!("{series} in {text}"))
    };
    // Every reason is exported from the start, at 0.
    for reason in [
        "bad_certificate",
        "version",
        "incompatible",
        "timeout",
        "not_tls",
        "closed",
        "other",
    ] {
        assert_eq!(count(reason).await, 0.0, "{reason}");
    }
    let wait_for = async |reason: &str, n: f64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(reason).await < n {
            assert!(Instant::now() < deadline, "{reason} never reached {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    // No client certificate (TLS 1.3: seen at the first exchange).
    if let Ok(mut s) = connect(addr, "localhost", client_config(&ca.pem, None, all())).await {
        let _ = call(&mut s, "PING").await;
    }
    wait_for("bad_certificate", 1.0).await;
    // The client does not trust strata's certificate: its alert.
    let good = clients_ca.leaf(&["app"], Validity::Current);
    let _ = connect(
        addr,
        "localhost",
        client_config(&other_ca.pem, Some(&good), all()),
    )
    .await;
    wait_for("bad_certificate", 2.0).await;
    // TLS 1.2 only.
    let _ = connect(
        addr,
        "localhost",
        client_config(&ca.pem, Some(&good), &[&rustls::version::TLS12]),
    )
    .await;
    wait_for("version", 1.0).await;
    // Plain RESP on the TLS port.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    wait_for("not_tls", 1.0).await;
    // Connected, silent: the handshake timeout.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    wait_for("timeout", 1.0).await;
    // Connected, gone.
    drop(tokio::net::TcpStream::connect(addr).await.unwrap());
    wait_for("closed", 1.0).await;
    // A good client is still served, and counted nowhere.
    let mut ok = connect(
        addr,
        "localhost",
        client_config(&ca.pem, Some(&good), all()),
    )
    .await
    .unwrap();
    assert_eq!(call(&mut ok, "PING").await.unwrap(), "+PONG\r\n");
    assert_eq!(count("other").await, 0.0);
    running.shutdown().await;
}

/// A config reload (PROXY RELOAD, SIGHUP) that points `tls.cert_file`
/// and `key_file` at other files puts them in force for new connections,
/// keeps the connections already open, and refuses paths that do not
/// read, keeping the certificate in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_certificate_to_new_paths() {
    let redis = RedisServer::start();
    let files = Files::new();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let old = old_ca.leaf(&["localhost"], Validity::Current);
    let new = new_ca.leaf(&["localhost"], Validity::Current);
    let text = |name: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[backend]\naddress = \"{}\"\n[telemetry]\nlisten = \"\"\n\
             [tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nreload_interval_ms = 0\n",
            redis.addr(),
            files.path(&format!("{name}.crt")).display(),
            files.path(&format!("{name}.key")).display(),
        )
    };
    files.write("old.crt", &old.cert);
    files.write("old.key", &old.key);
    files.write("new.crt", &new.cert);
    files.write("new.key", &new.key);
    let path = files.write("strata.toml", &text("old"));
    let origin = strata::app::reload::Origin {
        path: Some(path.clone()),
        ..Default::default()
    };
    let running = strata::app::start_from(strata::config::Config::load(&path).unwrap(), origin)
        .await
        .unwrap();
    let addr = tls_addr(&running);
    let mut open = connect(addr, "localhost", client_config(&old_ca.pem, None, all()))
        .await
        .unwrap();
    assert_eq!(call(&mut open, "PING").await.unwrap(), "+PONG\r\n");

    files.write("strata.toml", &text("new"));
    let report = running.reloader.reload_file("test").await.unwrap();
    assert_eq!(
        report.applied,
        vec!["tls.cert_file".to_string(), "tls.key_file".to_string()],
        "{report:?}"
    );
    assert!(report.restart_needed.is_empty(), "{report:?}");
    let mut fresh = connect(addr, "localhost", client_config(&new_ca.pem, None, all()))
        .await
        .unwrap();
    assert_eq!(call(&mut fresh, "PING").await.unwrap(), "+PONG\r\n");
    let e = connect(addr, "localhost", client_config(&old_ca.pem, None, all()))
        .await
        .expect_err("the old certificate is no longer served");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // The connection opened before keeps its session.
    assert_eq!(call(&mut open, "PING").await.unwrap(), "+PONG\r\n");

    // Paths that do not read: refused, the new certificate stays.
    files.write("strata.toml", &text("missing"));
    let err = running.reloader.reload_file("test").await.unwrap_err();
    assert!(err.contains("missing.crt"), "{err}");
    let mut again = connect(addr, "localhost", client_config(&new_ca.pem, None, all()))
        .await
        .unwrap();
    assert_eq!(call(&mut again, "PING").await.unwrap(), "+PONG\r\n");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_over_tls_through_strata() {
    let redis = RedisServer::start();
    let files = Files::new();
    let ca = Ca::new("strata test CA");
    let clients_ca = Ca::new("clients CA");
    let server = ca.leaf(&["localhost", "127.0.0.1"], Validity::Current);
    let running = support::strata::start_with(tls_config(
        &redis.addr(),
        &files,
        &server,
        Some(&clients_ca),
    ))
    .await;
    support::strata::wait_ready(&running).await;
    let port = tls_addr(&running).port();
    let cacert = files.write("cli-ca.crt", &ca.pem);
    let client = clients_ca.leaf(&["redis-cli"], Validity::Current);
    let cert = files.write("cli.crt", &client.cert);
    let key = files.write("cli.key", &client.key);
    let (cacert, cert, key) = (
        cacert.to_str().unwrap().to_string(),
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    );
    let tls_args = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "-h",
            "127.0.0.1",
            "--tls",
            "--cacert",
            &cacert,
            "--cert",
            &cert,
            "--key",
            &key,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    };
    let run = async |cmd: &[&str]| {
        let args = tls_args(cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        redis_cli(port, &args, None).await
    };
    let out = run(&["SET", "cli:k", "over tls"]).await;
    assert_eq!(out.stdout.trim(), "OK", "{out:?}");
    let out = run(&["GET", "cli:k"]).await;
    assert_eq!(out.stdout.trim(), "over tls", "{out:?}");
    // Without its certificate, redis-cli is refused.
    let out = redis_cli(
        port,
        &["-h", "127.0.0.1", "--tls", "--cacert", &cacert, "PING"],
        None,
    )
    .await;
    assert!(!out.stdout.contains("PONG"), "{out:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_applies_to_new_connections_and_keeps_old_ones() {
    let redis = RedisServer::start();
    let files = Files::new();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let mut config = tls_config(
        &redis.addr(),
        &files,
        &old_ca.leaf(&["localhost"], Validity::Current),
        None,
    );
    config.tls.reload_interval_ms = 100;
    let running = support::strata::start_with(config).await;
    let addr = tls_addr(&running);
    let mut old = connect(addr, "localhost", client_config(&old_ca.pem, None, all()))
        .await
        .unwrap();
    assert_eq!(call(&mut old, "SET reload:k 1").await.unwrap(), "+OK\r\n");

    // Replace the files (each renamed over the old one, as cert-manager does).
    let new = new_ca.leaf(&["localhost"], Validity::Current);
    files.write("strata.key", &new.key);
    files.write("strata.crt", &new.cert);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fresh = loop {
        if let Ok(s) = connect(addr, "localhost", client_config(&new_ca.pem, None, all())).await {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        call(&mut fresh, "GET reload:k").await.unwrap(),
        "$1\r\n1\r\n"
    );
    // The connection opened before the reload keeps working.
    assert_eq!(call(&mut old, "INCR reload:k").await.unwrap(), ":2\r\n");
    // And a new client trusting only the old CA is refused now.
    let e = connect(addr, "localhost", client_config(&old_ca.pem, None, all()))
        .await
        .expect_err("the old certificate is gone");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");

    // A broken file keeps the certificate in force.
    files.write("strata.crt", "not a certificate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut still = connect(addr, "localhost", client_config(&new_ca.pem, None, all()))
        .await
        .expect("a bad file does not take TLS down");
    assert_eq!(call(&mut still, "PING").await.unwrap(), "+PONG\r\n");
    assert_eq!(call(&mut old, "PING").await.unwrap(), "+PONG\r\n");
    running.shutdown().await;
}

/// A TLS write the socket cannot take whole leaves ciphertext in rustls's
/// buffer, sent only by a flush: a reader slower than strata's writer (a
/// small receive buffer, small reads) must still get every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_reply_reaches_a_slow_tls_reader_whole() {
    let redis = RedisServer::start();
    let files = Files::new();
    let ca = Ca::new("strata test CA");
    let server = ca.leaf(&["localhost"], Validity::Current);
    let running =
        support::strata::start_with(tls_config(&redis.addr(), &files, &server, None)).await;
    let value = "x".repeat(16 << 20);
    let mut plain = RawConn::connect(&running.addr.to_string()).await;
    plain
        .send(&support::clients::encode(&[
            b"SET",
            b"slow:k",
            value.as_bytes(),
        ]))
        .await;
    assert_eq!(plain.read_frame().await, b"+OK\r\n");

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(tls_addr(&running)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_config(&ca.pem, None, all()))
        .connect(name, tcp)
        .await
        .unwrap();
    for _ in 0..3 {
        tls.write_all(b"GET slow:k\r\n").await.unwrap();
        tls.flush().await.unwrap();
        let want = value.len() + "$16777216\r\n\r\n".len();
        let mut got = 0;
        let mut buf = vec![0u8; 2048];
        let read_all = async {
            while got < want {
                let n = tls.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed after {got} of {want} bytes");
                got += n;
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read_all)
            .await
            .expect("the whole reply arrives");
    }
    running.shutdown().await;
}

/// `[tls.backend]` for a redis whose certificate `ca` issued.
fn backend_tls(files: &Files, ca: &Ca) -> strata::tls::BackendTlsConfig {
    strata::tls::BackendTlsConfig {
        ca_file: Some(files.write("backend-ca.crt", &ca.pem)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_to_a_tls_only_redis() {
    let files = Files::new();
    let ca = Ca::new("redis CA");
    let redis = TlsRedis::start(&files, &ca, &["127.0.0.1"], true);
    // Redis requires a client certificate: strata's, its key from the
    // environment.
    let client = ca.leaf(&["strata"], Validity::Current);
    std::env::set_var("STRATA_TEST_TLS_BACKEND_KEY", &client.key);
    let mut config = support::strata::test_config(&redis.addr());
    config.tls.backend = Some(strata::tls::BackendTlsConfig {
        cert_file: Some(files.write("strata-client.crt", &client.cert)),
        key_env: Some("STRATA_TEST_TLS_BACKEND_KEY".into()),
        ..backend_tls(&files, &ca)
    });
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    c.expect("SET b:k v", b"+OK\r\n").await;
    c.expect("GET b:k", b"$1\r\nv\r\n").await;
    // Dedicated connections (MULTI, pub/sub) and AUTH's fresh connection.
    c.expect("MULTI", b"+OK\r\n").await;
    c.expect("INCR b:n", b"+QUEUED\r\n").await;
    c.expect("EXEC", b"*1\r\n:1\r\n").await;
    c.expect(
        "AUTH nobody wrong",
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    let mut sub = RawConn::connect(&running.addr.to_string()).await;
    sub.send(b"SUBSCRIBE ch\r\n").await;
    assert_eq!(
        sub.read_frame().await,
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    );
    c.expect("PUBLISH ch hi", b":1\r\n").await;
    assert_eq!(
        sub.read_frame().await,
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_server_names_are_checked_unless_told_otherwise() {
    let files = Files::new();
    let ca = Ca::new("redis CA");
    // A certificate for a DNS name only, dialled by IP address.
    let redis = TlsRedis::start(&files, &ca, &["redis.internal"], false);
    let try_with = async |tls: strata::tls::BackendTlsConfig| -> Vec<u8> {
        let mut config = support::strata::test_config(&redis.addr());
        config.tls.backend = Some(tls);
        let running = support::strata::start_with(config).await;
        let mut c = RawConn::connect(&running.addr.to_string()).await;
        let reply = c.cmd("SET n:k v").await;
        running.shutdown().await;
        reply
    };
    let refused = try_with(backend_tls(&files, &ca)).await;
    let text = String::from_utf8_lossy(&refused).into_owned();
    assert!(
        text.starts_with("-ERR backend unavailable") && text.contains("not valid for name"),
        "{text}"
    );
    let named = try_with(strata::tls::BackendTlsConfig {
        server_name: Some("redis.internal".into()),
        ..backend_tls(&files, &ca)
    })
    .await;
    assert_eq!(named, b"+OK\r\n");
    let skipped = try_with(strata::tls::BackendTlsConfig {
        insecure_skip_name_check: true,
        ..backend_tls(&files, &ca)
    })
    .await;
    assert_eq!(skipped, b"+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_certificate_from_another_ca_leaves_the_backend_down() {
    let files = Files::new();
    let ca = Ca::new("redis CA");
    let other_ca = Ca::new("someone else's CA");
    let redis = TlsRedis::start(&files, &ca, &["127.0.0.1"], false);
    let mut config = support::strata::test_config(&redis.addr());
    config.tls.backend = Some(backend_tls(&files, &other_ca));
    let running = support::strata::start_with(config).await;
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    let reply = String::from_utf8_lossy(&c.cmd("GET k").await).into_owned();
    assert!(
        reply.starts_with("-ERR backend unavailable: 127.0.0.1:")
            && reply.contains("UnknownIssuer"),
        "{reply}"
    );
    let (status, body) = support::strata::http_get(running.http_addr.unwrap(), "/health/ready")
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    // strata itself is fine: local commands answer.
    c.expect("PING", b"+PONG\r\n").await;
    running.shutdown().await;
}

#[test]
fn keys_never_come_from_the_config_file() {
    // There is no key field to write a key into: the TOML is refused.
    let text = "[tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"/x.crt\"\nkey = \"-----BEGIN PRIVATE KEY-----\"\n";
    let e = toml::from_str::<strata::config::Config>(text)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `key`"), "{e}");
    // key_env must name a variable that is set.
    let mut c = support::strata::test_config("127.0.0.1:1");
    c.tls.listen = Some("127.0.0.1:0".parse().unwrap());
    c.tls.cert_file = Some("/x.crt".into());
    c.tls.key_env = Some("STRATA_TEST_TLS_UNSET_VARIABLE".into());
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("tls.key_env") && e.contains("is not set"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_in_cluster_mode() {
    let files = Files::new();
    let ca = Ca::new("redis CA");
    // A node in cluster mode that owns every slot, with a plain port as
    // well as its TLS one: CLUSTER SHARDS names both, and strata speaking
    // TLS must dial the tls-port.
    let plain_port = support::free_port().to_string();
    let redis = TlsRedis::start_with(
        &files,
        &ca,
        &["127.0.0.1"],
        false,
        &[
            "--cluster-enabled",
            "yes",
            "--tls-cluster",
            "yes",
            "--port",
            &plain_port,
        ],
    );
    assert_eq!(
        redis.call(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]),
        "+OK\r\n"
    );
    support::wait_until_ok(
        "TLS one-node cluster",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let info = redis.call(&["CLUSTER", "INFO"]);
            if info.contains("cluster_state:ok") {
                Ok(())
            } else {
                Err(info)
            }
        },
    );
    let mut config = support::strata::cluster_config(&[redis.addr()]);
    config.tls.backend = Some(backend_tls(&files, &ca));
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    for key in ["a", "b", "c", "{user1}x"] {
        c.expect(&format!("SET {key} v-{key}"), b"+OK\r\n").await;
    }
    c.expect("GET {user1}x", b"$10\r\nv-{user1}x\r\n").await;
    c.expect("MGET a b", b"*2\r\n$3\r\nv-a\r\n$3\r\nv-b\r\n")
        .await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_mode_over_tls_to_the_sentinel_and_the_primary() {
    use strata::config::BackendMode;
    use support::sentinel::{SentinelProc, MASTER};
    let files = Files::new();
    let ca = Ca::new("redis CA");
    // The primary listens on TLS only; the sentinel has a TLS port (which
    // strata uses) besides its plain one, and reaches the primary with TLS.
    let primary = TlsRedis::start(&files, &ca, &["127.0.0.1"], false);
    let sentinel_cert = ca.leaf(&["127.0.0.1"], Validity::Current);
    let tls_port = support::free_port();
    let extra = format!(
        "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
         tls-auth-clients no\ntls-replication yes\n",
        files.write("sentinel.crt", &sentinel_cert.cert).display(),
        files.write("sentinel.key", &sentinel_cert.key).display(),
        files.write("sentinel-ca.crt", &ca.pem).display(),
    );
    let _sentinel = SentinelProc::start_with(primary.port, &extra);
    let mut config = support::strata::test_config("127.0.0.1:1");
    config.backend.mode = BackendMode::Sentinel;
    config.backend.sentinel.sentinels = vec![format!("127.0.0.1:{tls_port}")];
    config.backend.sentinel.master_name = MASTER.to_string();
    config.backend.sentinel.poll_interval_ms = 250;
    config.tls.backend = Some(backend_tls(&files, &ca));
    config.tls.sentinel = Some(backend_tls(&files, &ca));
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    c.expect("SET s:k v", b"+OK\r\n").await;
    c.expect("GET s:k", b"$1\r\nv\r\n").await;
    assert!(primary.call(&["GET", "s:k"]).contains("v"));
    running.shutdown().await;
}

/// The strata binary re-reads its certificate on SIGHUP (with the interval
/// off), and a client over maxclients is refused inside TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_of_the_binary() {
    let redis = RedisServer::start();
    let files = Files::new();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let old = old_ca.leaf(&["localhost"], Validity::Current);
    let tls_port = support::free_port();
    let config = files.write(
        "strata.toml",
        &format!(
            "[tls]\nlisten = \"127.0.0.1:{tls_port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             reload_interval_ms = 0\n",
            files.write("strata.crt", &old.cert).display(),
            files.write("strata.key", &old.key).display(),
        ),
    );
    let strata = support::strata::StrataProcess::spawn(
        &redis.addr(),
        &["--config", config.to_str().unwrap(), "--maxclients", "2"],
    );
    let addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let mut before = connect(addr, "localhost", client_config(&old_ca.pem, None, all()))
        .await
        .unwrap();
    assert_eq!(call(&mut before, "PING").await.unwrap(), "+PONG\r\n");

    let new = new_ca.leaf(&["localhost"], Validity::Current);
    files.write("strata.key", &new.key);
    files.write("strata.crt", &new.cert);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &strata.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = loop {
        if let Ok(s) = connect(addr, "localhost", client_config(&new_ca.pem, None, all())).await {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(call(&mut after, "PING").await.unwrap(), "+PONG\r\n");
    assert_eq!(call(&mut before, "PING").await.unwrap(), "+PONG\r\n");
    assert!(strata
        .logs
        .lock()
        .unwrap()
        .contains("TLS configuration reloaded"));

    // Two clients are connected: the third gets Redis's refusal, over TLS.
    let mut third = connect(addr, "localhost", client_config(&new_ca.pem, None, all()))
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut got))
        .await
        .expect("closed")
        .ok();
    assert_eq!(got, b"-ERR max number of clients reached\r\n");
}
