//! Faults engram must come through without losing or corrupting anything: the disk under the
//! SQLite store filling up (a real, small tmpfs mounted for the test, filled with a file).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::engram;

/// A tmpfs of `size` mounted at `path` for the life of the value.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            mounted.success(),
            "this test mounts a small tmpfs to fill it: it needs root (or CAP_SYS_ADMIN)"
        );
        Self {
            path: path.to_path_buf(),
        }
    }

    /// Fills the disk with `filler`, then frees `headroom` bytes of it.
    fn fill(&self, headroom: u64) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0x5a_u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    assert_eq!(error.raw_os_error(), Some(28), "ENOSPC expected: {error}");
                    break;
                }
            }
        }
        let _ = file.sync_all();
        let written = file.metadata().unwrap().len();
        file.set_len(written.saturating_sub(headroom)).unwrap();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_full_disk_under_the_sqlite_store_is_a_clear_error_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), "16m");
    std::fs::write(
        dir.path().join("engram.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/engram.db\"\n",
            disk.path.display()
        ),
    )
    .unwrap();
    let created = engram(dir.path(), &["brain", "create", "handbook"]);
    assert!(created.status.success(), "{}", text(&created));
    let small = dir.path().join("parking.md");
    std::fs::write(&small, "# Parking\n\nVisitors park on level two.\n").unwrap();
    let learned = engram(dir.path(), &["ingest", "handbook", small.to_str().unwrap()]);
    assert!(learned.status.success(), "{}", text(&learned));

    // A document larger than the room left.
    let large = dir.path().join("handbook.md");
    let mut body = String::from("# Handbook\n\n");
    for n in 0..12_000 {
        body.push_str(&format!(
            "Rule {n}: desks on floor {} are booked at the front desk before nine.\n",
            n % 40
        ));
    }
    std::fs::write(&large, &body).unwrap();
    let filler = disk.fill(256 * 1024);

    let refused = engram(dir.path(), &["ingest", "handbook", large.to_str().unwrap()]);
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("disk is full; free some space"),
        "a clear reason: {said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    // What was there is intact and still answers.
    let asked = engram(
        dir.path(),
        &[
            "ask",
            "--sources-only",
            "handbook",
            "where do visitors park?",
        ],
    );
    assert!(asked.status.success(), "{}", text(&asked));
    assert!(text(&asked).contains("parking.md"), "{}", text(&asked));

    // Space returns: the same file goes in, whole.
    std::fs::remove_file(&filler).unwrap();
    let retried = engram(dir.path(), &["ingest", "handbook", large.to_str().unwrap()]);
    assert!(retried.status.success(), "{}", text(&retried));
    let asked = engram(
        dir.path(),
        &[
            "ask",
            "--sources-only",
            "handbook",
            "who books desks on floor 7?",
        ],
    );
    assert!(text(&asked).contains("handbook.md"), "{}", text(&asked));
    let info = engram(dir.path(), &["brain", "info", "handbook", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["documents"], 2, "{info}");

    // No corruption: SQLite's own check.
    assert_eq!(integrity_check(&disk.path.join("engram.db")), "ok");
}

/// SQLite's `PRAGMA integrity_check` of the database at `db`.
fn integrity_check(db: &Path) -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            let mut connection =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                    .await
                    .unwrap();
            let (result,): (String,) = sqlx::query_as("PRAGMA integrity_check")
                .fetch_one(&mut connection)
                .await
                .unwrap();
            result
        })
}
