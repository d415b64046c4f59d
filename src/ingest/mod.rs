//! The knowledge pipeline: a file's bytes → sandboxed extraction → chunks → embeddings → index.

pub mod chunk;
