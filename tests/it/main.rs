//! engram's integration tests: one binary, real SQLite and PostgreSQL, the real `engram`
//! executable.

mod answers;
mod attachments;
mod budgets;
mod chat_budgets;
mod chat_llm;
mod cli;
mod cluster;
mod config;
mod discord;
mod embeddings;
mod fake_discord_checked;
mod fakes;
mod faults;
mod first_hour;
mod gateway;
mod history;
mod history_store;
mod hostile;
mod index;
mod ingest;
mod layout;
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
