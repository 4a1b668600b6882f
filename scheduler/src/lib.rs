//! `stasis-scheduler`: finds due mirrors and enqueues their syncs.

pub mod due;
pub mod error;
pub mod freshness;
pub mod leader;
pub mod manifest;
pub mod notify;
pub mod passes;
pub mod reaper;
pub mod recovery;
pub mod retention;
pub mod sample;
