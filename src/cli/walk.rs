//! Which files `engram ingest` reads from the paths it is given. Folders are walked the way
//! ripgrep walks them (the `ignore` crate): hidden files and folders are skipped, and so is
//! whatever `.gitignore`, `.ignore` or `.engramignore` files say (in any folder, git
//! repository or not); symbolic links are followed and loops reported. In a folder only the
//! types engram reads are taken (by extension; the extractor still decides by content), and
//! the others are counted; a file named on the command line is always taken. A path that does
//! not exist is reported and the others go on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Extensions of the files a folder walk takes: what the extractor reads.
const SUPPORTED: &[&str] = &[
    "pdf", "png", "jpg", "jpeg", "tif", "tiff", "webp", "gif", "docx", "xlsx", "ods", "pptx",
    "html", "htm", "xhtml", "md", "markdown", "mdx", "txt", "text", "rst", "adoc", "org", "csv",
    "tsv",
];

/// The extra ignore file engram reads besides `.gitignore` and `.ignore`.
pub const IGNORE_FILE: &str = ".engramignore";

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Files to ingest, largest first (then by path).
    pub files: Vec<PathBuf>,
    /// Paths that could not be read (missing, no permission), with the reason.
    pub problems: Vec<String>,
    /// Symbolic link loops met in folders: skipped, and said.
    pub notes: Vec<String>,
    /// Files skipped in folders because engram does not read their type, by extension.
    pub unsupported: BTreeMap<String, usize>,
    /// Folders given on the command line in which nothing was taken, with what was there.
    pub empty_folders: Vec<String>,
}

impl Walk {
    /// Files skipped because of their type.
    pub fn unsupported_count(&self) -> usize {
        self.unsupported.values().sum()
    }

    /// One line about the skipped types, if any were: "skipped 3 files of types engram does
    /// not read (.zip ×2, .exe); name a file to ingest it anyway".
    pub fn unsupported_note(&self) -> Option<String> {
        let count = self.unsupported_count();
        if count == 0 {
            return None;
        }
        let mut kinds: Vec<(&String, &usize)> = self.unsupported.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut listed = String::new();
        for (n, (kind, times)) in kinds.iter().enumerate() {
            if n == 6 {
                listed.push_str(", …");
                break;
            }
            if n > 0 {
                listed.push_str(", ");
            }
            listed.push_str(kind);
            if **times > 1 {
                let _ = write!(listed, " ×{times}");
            }
        }
        Some(format!(
            "skipped {count} file{} of types engram does not read ({listed}); name a file to \
             ingest it anyway",
            if count == 1 { "" } else { "s" }
        ))
    }
}

/// Whether a folder walk takes a file with this name.
pub fn is_supported(path: &Path) -> bool {
    extension(path).is_some_and(|ext| SUPPORTED.contains(&ext.as_str()))
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|ext| ext.to_string_lossy().to_ascii_lowercase())
}

fn kind_label(path: &Path) -> String {
    extension(path).map_or_else(|| "no extension".to_string(), |ext| format!(".{ext}"))
}

/// Walks `paths`.
pub fn collect(paths: &[PathBuf]) -> Walk {
    let mut walk = Walk::default();
    let mut files = Vec::new();
    for path in paths {
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) => {
                walk.problems
                    .push(format!("{}: {}", path.display(), describe_io(&error)));
                continue;
            }
        };
        if !metadata.is_dir() {
            // Named on the command line: taken whatever its type or name.
            files.push(path.clone());
            continue;
        }
        let before = (
            files.len(),
            walk.unsupported_count(),
            walk.problems.len() + walk.notes.len(),
        );
        walk_folder(path, &mut files, &mut walk);
        if files.len() == before.0 {
            let skipped = walk.unsupported_count() - before.1;
            let what = if skipped > 0 {
                format!(
                    "{skipped} file{} of types engram does not read",
                    if skipped == 1 { "" } else { "s" }
                )
            } else if walk.problems.len() + walk.notes.len() > before.2 {
                "only what is reported above".to_string()
            } else {
                "no files (hidden and ignored ones are skipped)".to_string()
            };
            walk.empty_folders.push(format!(
                "nothing to ingest in {}: it holds {what}",
                path.display()
            ));
        }
    }
    files.sort();
    files.dedup();
    // Jobs are claimed in the order they are queued, and large files (scans) are the slow
    // ones: started first, they do not leave one worker on a long file while the others idle.
    files.sort_by_cached_key(|path| {
        std::cmp::Reverse(std::fs::metadata(path).map_or(0, |metadata| metadata.len()))
    });
    walk.files = files;
    walk
}

fn walk_folder(folder: &Path, files: &mut Vec<PathBuf>, walk: &mut Walk) {
    let walker = ignore::WalkBuilder::new(folder)
        .follow_links(true)
        // .gitignore files count in any folder, not only inside a git repository.
        .require_git(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .build();
    for entry in walker {
        match entry {
            Ok(entry) => {
                if !entry.file_type().is_some_and(|kind| kind.is_file()) {
                    continue;
                }
                let path = entry.into_path();
                if is_supported(&path) {
                    files.push(path);
                } else {
                    *walk.unsupported.entry(kind_label(&path)).or_default() += 1;
                }
            }
            Err(error) if is_loop(&error) => walk.notes.push(describe_walk_error(&error)),
            Err(error) => walk.problems.push(describe_walk_error(&error)),
        }
    }
}

fn is_loop(error: &ignore::Error) -> bool {
    match error {
        ignore::Error::Loop { .. } => true,
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithPath { err, .. } => is_loop(err),
        ignore::Error::Io(io) => io.raw_os_error() == Some(40),
        _ => false,
    }
}

/// A walk error in a person's words: a symbolic link loop names both ends.
fn describe_walk_error(error: &ignore::Error) -> String {
    match error {
        ignore::Error::Loop { ancestor, child } => format!(
            "{}: a symbolic link loop (it leads back to {}); skipped",
            child.display(),
            ancestor.display()
        ),
        ignore::Error::WithDepth { err, .. } => describe_walk_error(err),
        ignore::Error::WithPath { path, err } => match err.as_ref() {
            ignore::Error::Io(io) => format!("{}: {}", path.display(), describe_io(io)),
            ignore::Error::Loop { .. } | ignore::Error::WithDepth { .. } => {
                describe_walk_error(err)
            }
            other => format!("{}: {other}", path.display()),
        },
        ignore::Error::Io(io) => describe_io(io),
        other => other.to_string(),
    }
}

fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ if error.raw_os_error() == Some(40) => {
            "a symbolic link loop (too many levels of links)".to_string()
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(walk: &Walk, root: &Path) -> Vec<String> {
        walk.files
            .iter()
            .map(|path| path.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn files_are_collected_largest_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for (name, size) in [
            ("a.txt", 10),
            ("b.txt", 30),
            ("sub/c.txt", 20),
            ("d.txt", 10),
        ] {
            std::fs::write(dir.path().join(name), vec![b'x'; size]).unwrap();
        }
        let walk = collect(&[dir.path().to_path_buf(), dir.path().join("a.txt")]);
        assert_eq!(
            names(&walk, dir.path()),
            ["b.txt", "sub/c.txt", "a.txt", "d.txt"]
        );
    }

    #[test]
    fn hidden_ignored_and_unsupported_files_are_skipped_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for folder in [".git", ".obsidian", "build", "notes"] {
            std::fs::create_dir(root.join(folder)).unwrap();
        }
        for (name, text) in [
            (".git/config", "[core]"),
            (".git/HEAD.md", "ref"),
            (".obsidian/app.md", "{}"),
            (".hidden.md", "secret"),
            ("build/out.md", "generated"),
            (".gitignore", "build/\n*.log\n"),
            (".engramignore", "drafts.md\n"),
            ("drafts.md", "draft"),
            ("run.log", "log"),
            ("notes/plan.md", "plan"),
            ("notes/archive.zip", "PK"),
            ("notes/tool.exe", "MZ"),
            ("notes/other.zip", "PK"),
            ("README", "read me"),
        ] {
            std::fs::write(root.join(name), text).unwrap();
        }
        let walk = collect(&[root.to_path_buf(), root.join("notes/tool.exe")]);
        assert_eq!(names(&walk, root), ["notes/plan.md", "notes/tool.exe"]);
        assert_eq!(walk.unsupported[".zip"], 2);
        assert_eq!(walk.unsupported["no extension"], 1);
        let note = walk.unsupported_note().unwrap();
        assert!(note.starts_with("skipped 4 files"), "{note}");
        assert!(note.contains(".zip ×2"), "{note}");
        assert!(walk.problems.is_empty(), "{:?}", walk.problems);
    }

    #[test]
    fn a_missing_path_is_reported_and_the_others_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "a").unwrap();
        let walk = collect(&[dir.path().join("gone.pdf"), dir.path().join("a.md")]);
        assert_eq!(names(&walk, dir.path()), ["a.md"]);
        assert_eq!(walk.problems.len(), 1);
        assert!(
            walk.problems[0].contains("gone.pdf: no such file or folder"),
            "{:?}",
            walk.problems
        );
    }

    #[test]
    fn a_folder_of_nothing_readable_or_a_link_loop_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let only_zips = dir.path().join("zips");
        std::fs::create_dir(&only_zips).unwrap();
        std::fs::write(only_zips.join("a.zip"), "PK").unwrap();
        let looped = dir.path().join("loop");
        std::fs::create_dir(&looped).unwrap();
        std::os::unix::fs::symlink(&looped, looped.join("again")).unwrap();
        let walk = collect(&[only_zips.clone(), looped.clone()]);
        assert!(walk.files.is_empty());
        assert_eq!(walk.empty_folders.len(), 2, "{:?}", walk.empty_folders);
        assert!(
            walk.empty_folders[0].contains("1 file of types engram does not read"),
            "{:?}",
            walk.empty_folders
        );
        assert!(walk.problems.is_empty(), "{:?}", walk.problems);
        assert!(
            walk.notes
                .iter()
                .any(|note| note.contains("symbolic link loop")),
            "{:?}",
            walk.notes
        );
    }
}
