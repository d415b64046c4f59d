//! engram's integration tests: one binary, real SQLite and PostgreSQL, the real `engram`
//! executable.

mod answers;
mod budgets;
mod chat_llm;
mod cli;
mod cluster;
mod config;
mod discord;
mod discord_fake;
mod embeddings;
mod fake_discord;
mod fake_openai;
mod fake_slack;
mod faults;
mod first_hour;
mod gateway;
mod hostile;
mod index;
mod ingest;
mod local_model;
mod migrations;
#[path = "../../crates/extract/tests/common/office.rs"]
mod office;
mod pg_server;
mod processes;
mod qdrant_server;
mod queue;
mod serve;
mod slack;
mod support;
mod versions;
