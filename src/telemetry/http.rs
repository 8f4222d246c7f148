//! The observability HTTP server: `/metrics`, `/health/live`, `/health/ready`.
//!
//! It listens on its own port, apart from the Redis one, so scrapes and probes
//! keep working when the data path is saturated, and a broken probe client can
//! never disturb Redis clients. Everything it answers is computed from shared
//! state ([`Metrics`], the readiness closure); it never calls into the data
//! path and never waits on a backend.
//!
//! Whoever can reach the port can do little harm: each connection is one
//! task, at most [`MAX_CONNECTIONS`] exist at a time, request headers must
//! arrive within [`HEADER_READ_TIMEOUT`] (idle keep-alive connections included),
//! and a connection is closed after [`MAX_CONNECTION_AGE`] so a client that
//! stops reading its response can't pin a task forever.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::metrics::Metrics;

/// How long a client may take to send a complete request head, counted from
/// when the server starts waiting for one (so it also bounds how long a
/// keep-alive connection may sit idle). Prometheus and kubelet send theirs at
/// once; this only ever catches stuck or hostile clients.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection is asked to close (after its current response) once it is
/// this old. Scrapers reconnect transparently; a client that never reads its
/// response is dropped after a further [`SHUTDOWN_GRACE`].
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);

/// How long in-flight responses get to finish once shutdown (or the age
/// limit) closes their connection.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Connections served at once; further ones wait in the listen backlog. A
/// handful of scrapers and probes need a few; the cap only bounds the damage
/// of a connection flood.
pub const MAX_CONNECTIONS: usize = 64;

/// hyper's smallest allowed read buffer; our requests are a request line and
/// a few headers, anything bigger is answered 431 by hyper.
const MAX_BUF_SIZE: usize = 8 * 1024;

/// Pause after a failed `accept` (usually EMFILE), so a descriptor shortage
/// doesn't turn the accept loop into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The content type the OpenMetrics 1.0 text format requires; Prometheus
/// picks its parser from it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Whether strata should receive traffic, as answered by `/health/ready`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Backends answer; send traffic.
    Ready,
    /// Not yet, or not any more; the text says why, for whoever reads probe
    /// failures (e.g. "backend 127.0.0.1:7000 not answering PING").
    NotReady(String),
    /// Serving (200), but something the operator should know is wrong,
    /// e.g. no sentinel answers while the known primary still does. The
    /// body is `ready (degraded: <text>)`.
    Degraded(String),
}

/// What the HTTP server reads to answer.
pub struct HttpState {
    /// The registry `/metrics` exports.
    pub metrics: Arc<Metrics>,
    /// Called on every `/health/ready` request, on the server's task: it must
    /// be cheap and must not block (read a flag or a snapshot kept up to date
    /// elsewhere; never talk to a backend from here).
    pub ready: Box<dyn Fn() -> Readiness + Send + Sync>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// Timeouts and caps, separate from [`serve`] so tests can shrink them.
#[derive(Clone, Copy, Debug)]
struct Limits {
    header_read_timeout: Duration,
    max_connection_age: Duration,
    shutdown_grace: Duration,
    max_connections: usize,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        header_read_timeout: HEADER_READ_TIMEOUT,
        max_connection_age: MAX_CONNECTION_AGE,
        shutdown_grace: SHUTDOWN_GRACE,
        max_connections: MAX_CONNECTIONS,
    };
}

/// Serves the observability endpoints on `listener` until `shutdown`
/// completes.
///
/// On shutdown it stops accepting (the listener is closed), lets responses in
/// flight finish for up to [`SHUTDOWN_GRACE`], then drops what is left and
/// returns. Failed accepts are logged and retried rather than returned: a
/// shortage of file descriptors must not take the health endpoints down for
/// good. The `Result` is there for callers that treat every server alike.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, Limits::DEFAULT).await
}

async fn serve_with(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let (stop_tx, stop_rx) = watch::channel(());
    let mut connections = JoinSet::new();

    loop {
        let has_room = connections.len() < limits.max_connections;
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    if error.is_panic() {
                        tracing::error!(%error, "observability HTTP connection task panicked");
                    }
                }
            }
            accepted = listener.accept(), if has_room => match accepted {
                Ok((stream, peer)) => {
                    tracing::trace!(%peer, "observability HTTP connection");
                    connections.spawn(serve_connection(
                        stream,
                        Arc::clone(&state),
                        stop_rx.clone(),
                        limits,
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "observability HTTP accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }

    drop(listener);
    // Every connection task watches this; sending (or dropping the sender)
    // makes them finish their current response and close.
    let _ = stop_tx.send(());
    drop(stop_tx);
    // Tasks give up on their own after `shutdown_grace`; the extra second
    // only covers scheduling delays before they are aborted.
    let drained = tokio::time::timeout(limits.shutdown_grace + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "observability HTTP connections did not close in time; aborting them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One connection: HTTP/1.1 with keep-alive until the client leaves, the
/// header timeout fires, the connection reaches its age limit, or the server
/// stops.
async fn serve_connection(
    stream: TcpStream,
    state: Arc<HttpState>,
    mut stop: watch::Receiver<()>,
    limits: Limits,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        std::future::ready(Ok::<_, Infallible>(respond(&state, &request)))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF_SIZE);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);

    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                // Timeouts, resets and garbage from clients end up here; they
                // are the client's problem, not an operational event.
                tracing::debug!(%error, "observability HTTP connection ended with an error");
            }
            return;
        }
        // Err means the sender is gone, which also means stop.
        _ = stop.changed() => {}
        () = tokio::time::sleep(limits.max_connection_age) => {}
    }

    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(limits.shutdown_grace, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::debug!(%error, "observability HTTP connection ended with an error");
        }
        Err(_) => tracing::debug!("observability HTTP connection dropped after grace period"),
    }
}

/// The endpoints strata serves.
enum Endpoint {
    Metrics,
    Live,
    Ready,
}

/// Routes one request. Pure and synchronous: nothing here waits, and no input
/// can make it panic (the path is only compared, the body is never read).
fn respond(state: &HttpState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let endpoint = match request.uri().path() {
        "/metrics" => Endpoint::Metrics,
        "/health/live" => Endpoint::Live,
        "/health/ready" => Endpoint::Ready,
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    // HEAD is GET without the body (hyper omits it); HTTP requires servers to
    // accept it wherever they accept GET.
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match endpoint {
        Endpoint::Metrics => match state.metrics.try_encode() {
            Ok(body) => {
                let mut response = Response::new(Full::new(Bytes::from(body)));
                let headers = response.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
                );
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(error) => {
                tracing::error!(%error, "encoding metrics failed");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "failed to encode metrics\n",
                )
            }
        },
        Endpoint::Live => text(StatusCode::OK, "ok\n"),
        Endpoint::Ready => match (state.ready)() {
            Readiness::Ready => text(StatusCode::OK, "ready\n"),
            Readiness::Degraded(why) => text(
                StatusCode::OK,
                format!("ready (degraded: {})\n", why.trim_end()),
            ),
            Readiness::NotReady(mut reason) => {
                if !reason.ends_with('\n') {
                    reason.push('\n');
                }
                text(StatusCode::SERVICE_UNAVAILABLE, reason)
            }
        },
    }
}

/// A plain-text response that probes and humans can read; never cached, since
/// health changes.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_CONTENT_TYPE));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::super::metrics::ErrorKind;
    use super::*;

    /// Generous bound on any single exchange, so a bug hangs no test run.
    const TEST_DEADLINE: Duration = Duration::from_secs(10);

    /// A running server plus the handles a test needs to drive it.
    struct Server {
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        /// `None` = ready, `Some(reason)` = not ready.
        not_ready: Arc<Mutex<Option<String>>>,
        stop: oneshot::Sender<()>,
        task: JoinHandle<std::io::Result<()>>,
    }

    async fn start(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let not_ready = Arc::new(Mutex::new(None::<String>));
        let flag = Arc::clone(&not_ready);
        let state = Arc::new(HttpState {
            metrics: Arc::clone(&metrics),
            ready: Box::new(move || match flag.lock().unwrap().clone() {
                None => Readiness::Ready,
                Some(reason) => Readiness::NotReady(reason),
            }),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            listener,
            state,
            async move {
                let _ = stopped.await;
            },
            limits,
        ));
        Server {
            addr,
            metrics,
            not_ready,
            stop,
            task,
        }
    }

    /// Status, raw head and body of one `Connection: close` exchange.
    struct Reply {
        status: u16,
        head: String,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name).then(|| value.trim())
            })
        }
    }

    /// Sends `raw` as is and reads until the server closes the connection.
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(TEST_DEADLINE, stream.read_to_end(&mut buf))
            .await
            .expect("server did not close the connection")
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        Reply {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n");
        exchange(addr, raw.as_bytes()).await
    }

    #[tokio::test]
    async fn metrics_endpoint_exports_recorded_series() {
        let server = start(Limits::DEFAULT).await;
        server
            .metrics
            .command("get")
            .record(Duration::from_micros(120));
        server.metrics.error(ErrorKind::BackendUnavailable);
        server.metrics.bytes_in(42);
        server.metrics.bytes_out(17);

        let reply = request(server.addr, "GET", "/metrics").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some(OPENMETRICS_CONTENT_TYPE));
        for expected in [
            "strata_commands_total{command=\"get\"} 1\n",
            "strata_command_duration_seconds_count{command=\"get\"} 1\n",
            "strata_errors_total{kind=\"backend_unavailable\"} 1\n",
            "strata_errors_total{kind=\"protocol\"} 0\n",
            "strata_client_bytes_received_total 42\n",
            "strata_client_bytes_sent_total 17\n",
            "strata_client_connections 0\n",
        ] {
            assert!(
                reply.body.contains(expected),
                "missing {expected:?} in\n{}",
                reply.body
            );
        }
        assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
    }

    #[tokio::test]
    async fn liveness_is_ok() {
        let server = start(Limits::DEFAULT).await;
        let reply = request(server.addr, "GET", "/health/live").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok\n");
        assert_eq!(reply.header("content-type"), Some(TEXT_CONTENT_TYPE));
    }

    #[tokio::test]
    async fn readiness_follows_the_closure() {
        let server = start(Limits::DEFAULT).await;

        let reply = request(server.addr, "GET", "/health/ready").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ready\n"));

        *server.not_ready.lock().unwrap() =
            Some("backend 127.0.0.1:7000 not answering PING".to_owned());
        let reply = request(server.addr, "GET", "/health/ready").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (503, "backend 127.0.0.1:7000 not answering PING\n")
        );
        // Liveness does not depend on readiness.
        assert_eq!(
            request(server.addr, "GET", "/health/live").await.status,
            200
        );

        *server.not_ready.lock().unwrap() = None;
        let reply = request(server.addr, "GET", "/health/ready").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ready\n"));
    }

    #[tokio::test]
    async fn degraded_readiness_is_200_with_the_reason() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(HttpState {
            metrics: Arc::new(Metrics::new()),
            ready: Box::new(|| {
                Readiness::Degraded("discovery degraded: no sentinel answers".to_owned())
            }),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        let reply = request(addr, "GET", "/health/ready").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (
                200,
                "ready (degraded: discovery degraded: no sentinel answers)\n"
            )
        );
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_other_methods_405() {
        let server = start(Limits::DEFAULT).await;

        for path in ["/", "/metrics/", "/health", "/health/live/x", "/METRICS"] {
            let reply = request(server.addr, "GET", path).await;
            assert_eq!(reply.status, 404, "GET {path}");
            assert_eq!(reply.body, "not found\n");
        }
        // Unknown path wins over wrong method.
        assert_eq!(request(server.addr, "POST", "/nope").await.status, 404);

        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            for path in ["/metrics", "/health/live", "/health/ready"] {
                let reply = request(server.addr, method, path).await;
                assert_eq!(reply.status, 405, "{method} {path}");
                assert_eq!(reply.header("allow"), Some("GET, HEAD"));
                assert_eq!(reply.body, "method not allowed\n");
            }
        }

        // The query string is not part of the route.
        assert_eq!(
            request(server.addr, "GET", "/metrics?x=1").await.status,
            200
        );

        let head = request(server.addr, "HEAD", "/health/live").await;
        assert_eq!((head.status, head.body.as_str()), (200, ""));
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let server = start(Limits::DEFAULT).await;
        let reply = exchange(
            server.addr,
            b"GET /health/live HTTP/1.1\r\nHost: s\r\n\r\n\
              GET /health/ready HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(reply.status, 200);
        // Both responses arrive, in order, on the same connection.
        assert!(reply.body.starts_with("ok\n"), "{}", reply.body);
        assert!(reply.body.ends_with("\r\n\r\nready\n"), "{}", reply.body);
    }

    #[tokio::test]
    async fn garbage_gets_400_and_the_server_keeps_serving() {
        let server = start(Limits::DEFAULT).await;
        let reply = exchange(server.addr, b"\x00\xff\x16\x03 nonsense\r\n\r\n").await;
        assert_eq!(reply.status, 400);

        let long_header = format!(
            "GET /metrics HTTP/1.1\r\nHost: s\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let reply = exchange(server.addr, long_header.as_bytes()).await;
        assert_eq!(reply.status, 431);

        assert_eq!(
            request(server.addr, "GET", "/health/live").await.status,
            200
        );
    }

    #[tokio::test]
    async fn slow_client_is_cut_off() {
        let server = start(Limits {
            header_read_timeout: Duration::from_millis(200),
            ..Limits::DEFAULT
        })
        .await;

        // Half a request head, then silence: the server must close.
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHo")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(TEST_DEADLINE, stream.read_to_end(&mut buf))
            .await
            .expect("slow client was not disconnected")
            .unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(
            buf.is_empty() || text.starts_with("HTTP/1.1 408"),
            "unexpected reply {text:?}"
        );

        // An idle keep-alive connection is closed the same way.
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: s\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(TEST_DEADLINE, stream.read_to_end(&mut buf))
            .await
            .expect("idle keep-alive connection was not closed")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf).ends_with("\r\n\r\nok\n"));
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_their_turn() {
        let server = start(Limits {
            max_connections: 1,
            ..Limits::DEFAULT
        })
        .await;
        // Holds the only slot with an unfinished request.
        let mut hog = TcpStream::connect(server.addr).await.unwrap();
        hog.write_all(b"GET /health/live HTTP/1.1\r\n")
            .await
            .unwrap();
        // Make sure the server accepted it before the next one arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let waiting = tokio::spawn(request(server.addr, "GET", "/health/live"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "second connection served beyond the cap"
        );

        hog.write_all(b"Host: s\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let reply = tokio::time::timeout(TEST_DEADLINE, waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_closes_idle_connections() {
        let server = start(Limits::DEFAULT).await;
        assert_eq!(
            request(server.addr, "GET", "/health/live").await.status,
            200
        );

        // An idle keep-alive connection must not hold shutdown up.
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: s\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");

        server.stop.send(()).unwrap();
        let result = tokio::time::timeout(TEST_DEADLINE, server.task)
            .await
            .expect("serve did not return after shutdown")
            .unwrap();
        assert!(result.is_ok());

        let mut rest = Vec::new();
        tokio::time::timeout(TEST_DEADLINE, idle.read_to_end(&mut rest))
            .await
            .expect("idle connection left open after shutdown")
            .unwrap();
        assert!(TcpStream::connect(server.addr).await.is_err());
    }
}
