//! The two SQL dialects carry the same migration versions, so both stores have the same data.

use std::collections::BTreeSet;

fn versions(dialect: &str) -> BTreeSet<String> {
    let dir = crate::support::crate_dir().join("migrations").join(dialect);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect()
}

#[test]
fn sqlite_and_postgres_migrations_stay_in_step() {
    let sqlite = versions("sqlite");
    let postgres = versions("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres differ"
    );
    let embedded: Vec<i64> = engram::store::SQLITE_MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    let embedded_pg: Vec<i64> = engram::store::POSTGRES_MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(embedded, embedded_pg);
    assert_eq!(
        embedded.len(),
        sqlite.len(),
        "every file is embedded in the binary"
    );
}
