//! Structure-aware chunking (being built).
