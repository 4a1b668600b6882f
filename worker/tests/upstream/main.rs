//! Upstream safety at the fetch: the address connected to is the one the policy
//! approved, redirects obey the policy, and what a hostile upstream can make a fetch do
//! is bounded. "Public" upstreams live at 1.2.3.4 inside a network namespace each test
//! makes for itself (`testkit::netns`), so nothing leaves the machine.

mod hostile;
mod lfs;
mod policy;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stasis_shared::git::selection::RefSelection;
use stasis_worker::git::fetch::{
    fetch_mirror, FetchError, FetchReport, FetchRequest, StopFlag, TransferProgress,
};
use stasis_worker::git::gate::WriteGate;
use stasis_worker::git::transport::NetworkPolicy;

pub const PUBLIC: &str = "1.2.3.4";

/// The production policy: no local networks, default limits.
pub fn strict() -> NetworkPolicy {
    NetworkPolicy::from_config(&stasis_shared::Config::default())
}

pub fn permissive() -> NetworkPolicy {
    NetworkPolicy {
        allow_local_network: true,
        ..strict()
    }
}

/// One fetch of `url` into `mirror`, its writes allowed.
pub fn fetch(
    mirror: &Path,
    url: &str,
    network: &NetworkPolicy,
    timeout: Duration,
    stop: &Arc<StopFlag>,
) -> Result<FetchReport, FetchError> {
    let gate = WriteGate::default();
    gate.decide(true);
    fetch_mirror(&FetchRequest {
        path: mirror,
        url,
        deadline: Instant::now() + timeout,
        stop,
        network,
        selection: &RefSelection::default(),
        gate: &gate,
        progress: &TransferProgress::default(),
        ssh: &Default::default(),
    })
}

pub fn fetch_once(
    mirror: &Path,
    url: &str,
    network: &NetworkPolicy,
) -> Result<FetchReport, FetchError> {
    fetch(
        mirror,
        url,
        network,
        Duration::from_secs(30),
        &Arc::new(StopFlag::default()),
    )
}
