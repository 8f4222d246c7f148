//! TLS test helpers: certificates made with rcgen, a raw TLS client, and
//! a redis-server that speaks TLS only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::{free_port, require_binary};

/// A certificate and its key, in PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM), for trust stores.
    pub pem: String,
}

/// How long a leaf is valid.
#[derive(Clone, Copy)]
pub enum Validity {
    /// From 2020 to 4000.
    Current,
    /// From 2020 to 2021: expired.
    Expired,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Ca { issuer, pem }
    }

    /// A leaf for `names` (DNS names or IP addresses), usable by servers
    /// and clients.
    pub fn leaf(&self, names: &[&str], validity: Validity) -> Pair {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        match validity {
            Validity::Current => {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(4000, 1, 1);
            }
            Validity::Expired => {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A directory of PEM files.
pub struct Files {
    dir: tempfile::TempDir,
}

impl Default for Files {
    fn default() -> Self {
        Files::new()
    }
}

impl Files {
    pub fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes `name` atomically (a temporary file renamed over it, as a
    /// certificate manager does) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A client config trusting `ca_pem`, with an optional client certificate
/// and a version range.
pub fn client_config(
    ca_pem: &str,
    client: Option<&Pair>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(p) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(p.cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(p.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects with TLS to `addr`, checking the name `name`.
pub async fn connect(
    addr: std::net::SocketAddr,
    name: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// Sends a command (words split on spaces, sent as a RESP multibulk) and
/// reads one simple or bulk reply. `Err` when the connection fails or closes.
pub async fn call(stream: &mut TlsStream<TcpStream>, line: &str) -> std::io::Result<String> {
    let words: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    stream.write_all(&super::clients::encode(&words)).await?;
    stream.flush().await?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            out.extend_from_slice(&buf[..n]);
            if reply_complete(&out) {
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| std::io::Error::other("no reply within 10 s"))?
}

/// A simple reply (+, -, :) or a bulk string, complete.
fn reply_complete(buf: &[u8]) -> bool {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if buf[0] != b'$' {
        return true;
    }
    let len: i64 = std::str::from_utf8(&buf[1..eol]).unwrap().parse().unwrap();
    len < 0 || buf.len() >= eol + 2 + len as usize + 2
}

/// A redis-server listening on TLS only (`--port 0`), killed on drop.
pub struct TlsRedis {
    pub port: u16,
    name: String,
    client: Arc<ClientConfig>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Starts redis-server with a certificate from `ca` for `names`,
    /// trusting `ca` for clients; `require_client_cert` sets
    /// `--tls-auth-clients`.
    pub fn start(files: &Files, ca: &Ca, names: &[&str], require_client_cert: bool) -> TlsRedis {
        TlsRedis::start_with(files, ca, names, require_client_cert, &[])
    }

    /// As [`TlsRedis::start`], with more redis-server arguments.
    pub fn start_with(
        files: &Files,
        ca: &Ca,
        names: &[&str],
        require_client_cert: bool,
        extra: &[&str],
    ) -> TlsRedis {
        let server = &ca.leaf(names, Validity::Current);
        let bin = require_binary("redis-server", "redis-server");
        let tag = free_port();
        let cert = files.write(&format!("redis-{tag}.crt"), &server.cert);
        let key = files.write(&format!("redis-{tag}.key"), &server.key);
        let ca_file = files.write(&format!("redis-{tag}-ca.crt"), &ca.pem);
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(&bin)
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&ca_file)
                .args([
                    "--tls-auth-clients",
                    if require_client_cert { "yes" } else { "no" },
                ])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut child = child;
            let probe = ca.leaf(&["probe"], Validity::Current);
            if wait_ready(&mut child, port, names[0], &ca.pem, &probe) {
                return TlsRedis {
                    port,
                    name: names[0].to_string(),
                    client: client_config(&ca.pem, Some(&probe), rustls::ALL_VERSIONS),
                    child,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server with TLS did not start (is it built with TLS? `redis-server --tls-port` must work)");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One command over TLS, blocking: the reply's bytes (one read).
    pub fn call(&self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply = blocking_call(
            self.port,
            &self.name,
            &self.client,
            &super::clients::encode(&args),
        )
        .expect("TLS call to redis");
        String::from_utf8_lossy(&reply).into_owned()
    }
}

/// Waits until the TLS port answers PING (with a client certificate, which
/// redis may require); false if the process exited or never answered.
/// Blocking (rustls over a std socket), so it can run inside a test's runtime.
fn wait_ready(child: &mut Child, port: u16, name: &str, ca_pem: &str, probe: &Pair) -> bool {
    let config = client_config(ca_pem, Some(probe), rustls::ALL_VERSIONS);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        let ok = blocking_call(port, name, &config, b"PING\r\n").map(|r| r == b"+PONG\r\n");
        if matches!(ok, Ok(true)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Sends `request` over a fresh TLS connection and returns what one read
/// brings back (enough for the small replies the harness asks for).
fn blocking_call(
    port: u16,
    name: &str,
    config: &Arc<ClientConfig>,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn =
        rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request)?;
    tls.flush()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = tls.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
