//! Local stand-ins for what sits across the network — Discord, Slack and an OpenAI-compatible
//! server — shared by the integration tests and the benchmarks (which include this folder).

pub mod discord;
pub mod openai;
pub mod slack;
