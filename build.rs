//! Turns on the Qdrant index contract tests (`cfg(engram_qdrant)`, tests/it/index.rs) when
//! `ENGRAM_TEST_QDRANT_URL` is set at build time, so without a Qdrant server no Qdrant test
//! exists (rather than passing without having run).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(engram_qdrant)");
    println!("cargo::rerun-if-env-changed=ENGRAM_TEST_QDRANT_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("ENGRAM_TEST_QDRANT_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=engram_qdrant");
    }
}
