//! engram-extract: placeholder entry point (being built).
fn main() {}
