//! SSH for private upstreams: per-mirror deploy keys ([`deploy_key`]) and the
//! upstream's host keys, listed by fingerprint and pinned ([`host_keys`]).
//!
//! A deploy key's private half is sealed with `secrets.key` like every other
//! credential (see [`crate::secrets`]) and never leaves the service: only its public
//! half and fingerprint are shown.

pub mod deploy_key;
pub mod host_keys;

pub use deploy_key::{DeployKey, SshKeyError};
pub use host_keys::{fingerprint_of_blob, HostKey, HostKeyError};
