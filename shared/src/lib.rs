//! Domain and adapters shared by the Stasis binaries: config, domain types, Postgres,
//! the Redis queue and leases, git fetching, telemetry.

pub mod backoff;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod git;
pub mod instruments;
pub mod jobs;
pub mod lifecycle;
pub mod liveness;
pub mod lock;
pub mod names;
pub mod outage;
pub mod overview;
pub mod process;
pub mod progress;
pub mod queue;
pub mod removal;
pub mod rename;
pub mod scheduler_status;
pub mod secrets;
pub mod telemetry;

pub use config::Config;
pub use error::{Error, Result};
