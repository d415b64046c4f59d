//! engram as separate processes, for the tests and benchmarks that scale it out: the real
//! `engram` binary started as `engram serve --roles …` with one config file, each process
//! logging to its own file, killed (SIGKILL) or stopped (SIGTERM) on demand, and never left
//! running after the test.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engram::brain::{BindingMode, BrainName, TenantKey};
use engram::store::Store;

/// The engram processes of one test, each logging to its own file; all are killed when the
/// test ends, however it ends.
pub struct Processes {
    config: PathBuf,
    dir: PathBuf,
    running: Vec<(String, Child)>,
    killed: Vec<String>,
}

impl Processes {
    /// Processes that will run with `config` and log into `dir`.
    pub fn new(config: PathBuf, dir: PathBuf) -> Self {
        Self {
            config,
            dir,
            running: Vec::new(),
            killed: Vec::new(),
        }
    }

    /// Starts `engram serve --roles ROLES` as `name` (also its HOSTNAME, so job workers name it).
    pub fn spawn(&mut self, name: &str, roles: &str) {
        let log = File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_engram"))
            .arg("--config")
            .arg(&self.config)
            .args(["serve", "--roles", roles])
            .env("RUST_LOG", "info")
            .env("HOSTNAME", name)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start engram");
        self.running.push((name.to_string(), child));
    }

    /// Waits until `name` logs that it runs (its roles started), failing with the logs after
    /// `limit`.
    pub fn wait_running(&self, name: &str, limit: Duration) {
        self.wait_logged(name, "engram is running", limit);
    }

    /// Waits until `name`'s log contains `text`, failing with the logs after `limit`.
    pub fn wait_logged(&self, name: &str, text: &str, limit: Duration) {
        let log = self.dir.join(format!("{name}.log"));
        wait(self, &format!("{name} to log {text:?}"), limit, || {
            std::fs::read_to_string(&log).is_ok_and(|logged| logged.contains(text))
        });
    }

    /// The names of the processes started and not killed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.running
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !self.killed.iter().any(|killed| killed == name))
    }

    /// The process whose job worker name (`HOSTNAME:pid:role`) is `worker`.
    pub fn name_of(&self, worker: &str) -> Option<String> {
        let pid: u32 = worker.split(':').nth(1)?.parse().ok()?;
        self.running
            .iter()
            .find(|(_, child)| child.id() == pid)
            .map(|(name, _)| name.clone())
    }

    /// Kills `name` with SIGKILL: no shutdown, leases left to run out.
    pub fn sigkill(&mut self, name: &str) {
        let (_, child) = self
            .running
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("a running process");
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        self.killed.push(name.to_string());
    }

    /// Freezes `name` (SIGSTOP): it keeps its connections but reads nothing until `thaw`.
    pub fn freeze(&self, name: &str) {
        self.signal(name, "-STOP");
    }

    /// Lets a frozen `name` run again (SIGCONT); what arrived meanwhile is waiting for it.
    pub fn thaw(&self, name: &str) {
        self.signal(name, "-CONT");
    }

    fn signal(&self, name: &str, signal: &str) {
        let (_, child) = self
            .running
            .iter()
            .find(|(n, _)| n == name)
            .expect("a running process");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "cannot signal {name} with {signal}");
    }

    /// The processes started and not killed that have exited on their own.
    pub fn exited(&mut self) -> Vec<String> {
        let killed = &self.killed;
        self.running
            .iter_mut()
            .filter(|(name, _)| !killed.contains(name))
            .filter_map(|(name, child)| child.try_wait().unwrap().map(|_| name.clone()))
            .collect()
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        self.running
            .iter()
            .map(|(name, _)| {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {name} ---\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the survivors with SIGTERM; each must exit cleanly.
    pub fn stop(&mut self) {
        for (name, child) in &mut self.running {
            if child.try_wait().unwrap().is_some() {
                continue;
            }
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success(), "cannot signal {name}");
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        for index in 0..self.running.len() {
            let status = loop {
                if let Some(status) = self.running[index].1.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    panic!(
                        "{} did not stop within 40 s of SIGTERM\n{}",
                        self.running[index].0,
                        self.logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let killed = self.killed.contains(&self.running[index].0);
            assert!(
                killed || status.success(),
                "{} exited with {status}\n{}",
                self.running[index].0,
                self.logs()
            );
        }
        self.running.clear();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `done` until it holds; past `limit` the test fails with the processes' logs.
pub fn wait(processes: &Processes, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            processes.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates the brain `handbook` in the Discord guild `guild` and binds each of `channels` to it
/// with its mode: the world the processes of a test or benchmark serve.
pub async fn handbook_bound_to(
    store: &dyn Store,
    guild: u64,
    channels: impl IntoIterator<Item = (u64, BindingMode)>,
) {
    let tenant = store
        .ensure_tenant(&TenantKey::parse(&format!("discord:{guild}")).unwrap())
        .await
        .unwrap();
    let brain = store
        .create_brain(tenant, &BrainName::parse("handbook").unwrap())
        .await
        .unwrap();
    for (channel, mode) in channels {
        store
            .bind_channel(tenant, &format!("discord:{channel}"), brain.id, mode)
            .await
            .unwrap();
    }
}
