//! The cache manager: what the client knows about files, for how long it may trust
//! it, and the cached bytes.

pub mod coherence;
pub mod manager;
pub mod pages;
pub mod validity;
