//! What more than one Stasis binary needs, in three groups:
//!
//! - **The domain** ([`domain`]): the vocabulary, the job and mirror-status lifecycle
//!   with its end-of-sync policy, repository names, the backoff. No I/O but the
//!   lifecycle's SQL, which is the state machine itself.
//! - **Adapters** to what the processes talk to: Postgres ([`db`]), the Redis queue
//!   ([`queue`]), leases, worker liveness, sync progress and the scheduler's status in
//!   Redis ([`lock`], [`liveness`], [`progress`], [`scheduler_status`]), git URLs and
//!   mirror paths ([`git`]), ssh deploy keys and host keys ([`ssh`]), sealed credentials
//!   ([`secrets`]), and the configuration ([`config`]).
//! - **Services** more than one binary runs on top of those: the job service ([`jobs`]:
//!   request, admission to the lanes, dispatch), the operator's overview ([`overview`]),
//!   renames and removals ([`rename`], [`removal`]), which storage a new mirror goes to
//!   and moves between storages ([`placement`], [`moves`]); and what running a process takes
//!   ([`ops`]: start-up, telemetry, metrics, outage logging).
//!
//! What one binary alone needs lives in that binary's crate.

// the domain
pub mod domain;

// adapters
pub mod config;
pub mod db;
pub mod git;
pub mod liveness;
pub mod lock;
pub mod progress;
pub mod queue;
pub mod scheduler_status;
pub mod secrets;
pub mod ssh;

// services and operations
pub mod jobs;
pub mod moves;
pub mod ops;
pub mod overview;
pub mod placement;
pub mod removal;
pub mod rename;

pub mod error;

pub use config::Config;
pub use error::{Error, Result};
