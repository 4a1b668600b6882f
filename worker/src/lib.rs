//! `stasis-worker`: consumes `SyncMirror` deliveries and keeps bare mirrors up to date.
//!
//! A delivery goes through these steps; the async ones (deciding, recording, waiting for
//! leases and slots) are in [`sync`], the blocking git mechanics they drive in [`git`]:
//!
//! ```text
//! runner (queue consumers, heartbeats, dispatcher)
//!   └─ handler::handle            the delivery: read its job, drop a stale one
//!        └─ sync::attempt         lease the repository, a permit and a host slot
//!             ├─ sync::fetch      ──▶ git::fetch (libgit2 over git::transport)
//!             ├─ sync::lfs        ──▶ git::lfs (pointer scan, batch API, downloads)
//!             ├─ sync::housekeeping ─▶ git::housekeeping (repack, commit-graph)
//!             └─ sync::record     the end as the lifecycle records it
//!                                 (stasis_shared::domain::lifecycle::{attempt, policy})
//! ```
//!
//! Process-wide resources: [`context`] (what every step shares), [`permits`] (this
//! worker's concurrency), [`slots`] (the fleet's per-host caps), [`shutdown`].

pub mod context;
mod disk;
pub mod error;
pub mod git;
pub mod handler;
mod keepalive;
mod permits;
pub mod runner;
pub mod shutdown;
pub mod slots;
pub mod sync;
