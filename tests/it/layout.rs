//! The code's layout rules that a linter cannot check (ARCHITECTURE.md, "Invariants"), read
//! from the source: the pipeline's direction and where SQL may be written.

use std::path::{Path, PathBuf};

use crate::support::crate_dir;

/// Every Rust file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((path, text));
            }
        }
    }
    assert!(!found.is_empty(), "no sources under {}", dir.display());
    found
}

/// Lines that are code, not comments.
fn code(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
}

#[test]
fn the_pipeline_reads_one_way() {
    let src = crate_dir().join("src");
    // ingest → index → answer, never back; the chat role never calls into the gateway.
    for (room, forbidden) in [
        ("index", "crate::ingest"),
        ("answer", "crate::ingest"),
        ("text.rs", "crate::"),
        ("chat", "crate::gateway"),
    ] {
        let path = src.join(room);
        let files = if path.is_dir() {
            sources(&path)
        } else {
            vec![(path.clone(), std::fs::read_to_string(&path).unwrap())]
        };
        for (file, text) in files {
            let bad: Vec<&str> = code(&text).filter(|l| l.contains(forbidden)).collect();
            assert!(
                bad.is_empty(),
                "{} uses {forbidden}: {bad:?}",
                file.display()
            );
        }
    }
}

#[test]
fn sql_is_written_only_in_the_store_and_the_embedded_index() {
    let src = crate_dir().join("src");
    for (file, text) in sources(&src) {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if relative.starts_with("store/") || relative == "index/embedded.rs" {
            continue;
        }
        let bad: Vec<&str> = code(&text)
            .filter(|l| {
                l.contains("sqlx::query")
                    || l.contains("query_as(")
                    || l.contains("query_scalar(")
                    || l.contains("\"SELECT ")
                    || l.contains("\"INSERT ")
                    || l.contains("\"UPDATE ")
                    || l.contains("\"DELETE ")
            })
            .collect();
        assert!(bad.is_empty(), "SQL in {relative}: {bad:?}");
    }
}
