//! engram: a self-hosted second brain for Discord and Slack. The library holds everything;
//! `main.rs` only parses the command line and reports errors.

pub mod answer;
pub mod app;
pub mod brain;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod gateway;
pub mod housekeeping;
pub mod http;
pub mod index;
pub mod ingest;
pub mod jobs;
pub mod llm;
pub mod local_model;
pub mod platform;
#[cfg(test)]
pub(crate) mod randomized;
pub mod render;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod usage;
pub mod worker;
