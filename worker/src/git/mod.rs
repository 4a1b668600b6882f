//! Fetching a mirror: our git:// and http(s) transports (the connection and its limits
//! are ours, not libgit2's), the fetch and its ref updates, the write gate, stopping,
//! error classification, housekeeping with the `git` binary, and the mirror's footprint
//! on disk.

mod classify;
pub mod fetch;
pub mod fingerprint;
pub mod gate;
pub mod housekeeping;
pub mod lfs;
mod pack_refs;
pub mod progress;
pub mod refs;
pub mod ssh_auth;
pub mod stop;
pub mod storage;
pub mod transport;
