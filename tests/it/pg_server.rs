//! A private PostgreSQL server for the tests that stop and start it (`scripts/postgres.sh` on
//! a free port, its cluster in a temp folder): stopped with a fast shutdown (connections cut,
//! as in a restart for an upgrade or a failover) and started again on the same data.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// A PostgreSQL server of the test's own, stopped (immediately) when dropped.
#[derive(Debug)]
pub struct PgServer {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`, where tests may CREATE DATABASE.
    pub url: String,
    port: u16,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgServer {
    /// Makes a cluster and starts it (initdb takes a few seconds).
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        // The server runs as the `postgres` user when the tests run as root: it must reach
        // the cluster's folder inside this one.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the temp dir");
        let data = dir.path().join("data");
        let mut server = Self {
            url: String::new(),
            port,
            data,
            _dir: dir,
        };
        server.url = server.script(None);
        server
    }

    /// Runs `scripts/postgres.sh [ARG]` for this server; its stdout.
    fn script(&self, arg: Option<&str>) -> String {
        let script = crate::support::crate_dir().join("scripts/postgres.sh");
        let output = Command::new(&script)
            .args(arg)
            .env("ENGRAM_PG_PORT", self.port.to_string())
            .env("ENGRAM_PG_DIR", &self.data)
            .output()
            .expect("run scripts/postgres.sh");
        assert!(
            output.status.success(),
            "scripts/postgres.sh {arg:?}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Stops it with a fast shutdown: sessions are ended, transactions in flight rolled
    /// back, and the call returns once the server is down.
    pub fn stop(&mut self) {
        self.script(Some("stop"));
        assert!(
            !self.data.join("postmaster.pid").exists(),
            "PostgreSQL is still running:\n{}",
            self.log()
        );
    }

    /// Starts it again on the same data and waits until it accepts connections.
    pub fn start_again(&mut self) {
        let url = self.script(None);
        assert_eq!(url, self.url);
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.data.join("postmaster.pid").exists() {
            return;
        }
        let bindir = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| versions.flatten().map(|v| v.path()).max())
            .map(|version| version.join("bin/pg_ctl"));
        if let Some(pg_ctl) = bindir {
            let mut command = if running_as_root() {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(pg_ctl);
                command
            } else {
                Command::new(pg_ctl)
            };
            let _ = command
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "stop"])
                .output();
        }
    }
}

/// Whether the tests run as root (the server then runs as `postgres`).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}
