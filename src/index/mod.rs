//! The search index (being built).
