//! A real PostgreSQL server for the tier tests: `initdb` into a temporary
//! directory, then `postgres` on a free port of 127.0.0.1 with trust
//! authentication, stopped (fast shutdown) and removed on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! server's programs run as the `postgres` user (uid and gid from
//! /etc/passwd, set on the child with `CommandExt::uid/gid`) and the
//! temporary directory is handed to that user. A missing binary panics with
//! the package to install: nothing is skipped.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A running PostgreSQL. Dropping it stops the server and removes its files.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    run_as: Option<(u32, u32)>,
}

impl Postgres {
    /// A server not yet initialised or started: a temp dir owned by the
    /// user the programs run as, a free port.
    fn unstarted() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("strata-pg-")
            .tempdir()
            .expect("tempdir");
        let run_as = postgres_user_if_root();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown pg dir");
        }
        Postgres {
            port: free_port(),
            bin,
            dir,
            child: None,
            run_as,
        }
    }

    /// A streaming replica of `primary` (`pg_basebackup -R`: the copy
    /// follows the primary's WAL), started on a free port; returns once it
    /// accepts queries (read-only, `pg_is_in_recovery()` true).
    pub fn start_replica(primary: &Postgres) -> Postgres {
        let mut replica = Postgres::unstarted();
        let out = replica
            .command("pg_basebackup")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(replica.data_dir())
            .args(["-R", "-X", "stream", "--no-sync"])
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        replica.spawn();
        replica
    }

    /// Promotes a replica to primary (`pg_ctl promote`, waiting for it).
    pub fn promote(&self) {
        let out = self
            .command("pg_ctl")
            .arg("promote")
            .arg("-w")
            .arg("-D")
            .arg(self.data_dir())
            .output()
            .expect("run pg_ctl promote");
        assert!(
            out.status.success(),
            "pg_ctl promote failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// initdb, then start on a free port; returns once it accepts queries.
    pub fn start() -> Postgres {
        let mut pg = Postgres::unstarted();
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            // Replication from 127.0.0.1 is trusted too (initdb's default
            // pg_hba.conf), for `start_replica`.
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.spawn();
        pg
    }

    /// `postgres://postgres@127.0.0.1:port/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server (fast shutdown: sessions are disconnected, nothing
    /// committed is lost) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT = fast shutdown. The postmaster then stops its children.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Whether the server process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("pg log");
        if let Some((uid, gid)) = self.run_as {
            let _ = std::os::unix::fs::chown(
                self.dir.path().join("postgres.log"),
                Some(uid),
                Some(gid),
            );
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .command("pg_isready")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(self.dir.path().join("postgres.log"))
                        .unwrap_or_default();
                    panic!("postgres exited ({status}) on port {}: {log}", self.port);
                }
            }
            assert!(
                Instant::now() < deadline,
                "postgres on port {} not ready within 60s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command for one of the server's programs, run as `postgres` when
    /// the tests run as root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        assert!(
            path.is_file(),
            "PostgreSQL program `{}` is missing.\nInstall it with: sudo apt-get install -y postgresql\n\
             (or run `make deps`)",
            path.display()
        );
        let mut cmd = Command::new(path);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
            // initdb reads the working directory; root's may be closed to it.
            cmd.current_dir(self.dir.path());
        }
        cmd
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory holding initdb, postgres and pg_isready: PATH first, then
/// Debian's /usr/lib/postgresql/<version>/bin (newest version first).
pub fn bin_dir() -> PathBuf {
    let has_all = |dir: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if dir.join("initdb").is_file() {
                // /usr/local/bin may hold symlinks to initdb and postgres
                // only: follow initdb to its real directory.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or(dir.clone());
                if has_all(&real) {
                    return real;
                }
                if has_all(&dir) {
                    return dir;
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_all(bin))
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL (initdb, postgres, pg_isready) was not found on PATH nor in \
             /usr/lib/postgresql/*/bin.\nInstall it with: sudo apt-get install -y postgresql\n\
             (or run `make deps`)"
        ),
    }
}

/// `(uid, gid)` of the `postgres` user when this process runs as root
/// (PostgreSQL will not), else `None`.
fn postgres_user_if_root() -> Option<(u32, u32)> {
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if me != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"postgres") && fields.len() > 3 {
            let uid = fields[2].parse().expect("postgres uid");
            let gid = fields[3].parse().expect("postgres gid");
            return Some((uid, gid));
        }
    }
    panic!(
        "running as root, and there is no `postgres` user to run PostgreSQL as.\n\
         Install it with: sudo apt-get install -y postgresql (which creates the user)"
    );
}
