//! Chat platform adapters: the only modules that know Discord (serenity) or Slack. They turn
//! platform events into the core's `ChatEvent`s and implement `ChatPlatform` for its writes.

pub mod connection;
pub mod discord;
pub mod slack;
