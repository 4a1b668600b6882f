//! `stasis-worker`: consumes `SyncMirror` jobs and keeps bare mirrors up to date.

mod attempt;
pub mod context;
mod disk;
pub mod error;
mod fetch;
pub mod git;
pub mod handler;
pub mod housekeeping;
mod keepalive;
mod lfs;
mod observe;
mod permits;
pub mod record;
pub mod runner;
pub mod shutdown;
pub mod slots;
