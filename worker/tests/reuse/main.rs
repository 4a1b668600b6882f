//! Kept connections to https:// upstreams (`worker.reuse_connections`): checks of
//! mirrors on one upstream share a connection, and a kept connection never carries a
//! request its check would not have been allowed to make (another name or address, a
//! name that moved, another policy, other credentials). Every upstream is TLS in front
//! of a smart HTTP server (`testkit::https`), which counts the connections and
//! handshakes; "public" ones live at 1.2.3.4 inside a network namespace the test makes.

mod isolation;
mod rebinding;
mod redirects;
mod sharing;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use stasis_shared::git::selection::RefSelection;
use stasis_testkit::git::{git, Upstream};
use stasis_testkit::http::GitHttpServer;
use stasis_testkit::https::{trust, TlsFront};
use stasis_testkit::tls::{Issued, TestCa};
use stasis_worker::git::fetch::{
    fetch_mirror, FetchError, FetchReport, FetchRequest, StopFlag, TransferProgress,
};
use stasis_worker::git::gate::WriteGate;
use stasis_worker::git::transport::NetworkPolicy;

pub const PUBLIC: &str = "1.2.3.4";
pub const PUBLIC_TOO: &str = "1.2.3.5";

/// The names and addresses every upstream here may be reached at: one certificate
/// holds them all, so only the client's own rules keep a connection to its host.
const NAMES: &[&str] = &[
    "127.0.0.1",
    PUBLIC,
    PUBLIC_TOO,
    "a.test",
    "b.test",
    "upstream.test",
    "forge.test",
    "cdn.test",
];

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

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

/// The CA this process trusts, made before its first TLS connection: one for the
/// process, kept in the target directory's scratch space.
fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = TestCa::new_in(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "Stasis test upstreams",
        );
        trust(&ca);
        ca
    })
}

/// The certificate of every upstream here, from the CA this process trusts.
fn cert() -> &'static Issued {
    static CERT: OnceLock<Issued> = OnceLock::new();
    CERT.get_or_init(|| ca().issue("upstreams", NAMES))
}

/// An https:// upstream: a repository, the smart HTTP server in front of it, and TLS
/// in front of that at an address of its own.
pub struct Https {
    pub backend: GitHttpServer,
    pub front: TlsFront,
}

impl Https {
    /// Serving `root` over TLS at `ip` (port from the kernel).
    pub fn start(root: &Path, ip: IpAddr) -> Self {
        Self::start_at(root, SocketAddr::new(ip, 0))
    }

    /// Serving `root` over TLS at `addr`.
    pub fn start_at(root: &Path, addr: SocketAddr) -> Self {
        let backend = GitHttpServer::start(root);
        let front = TlsFront::start_at(addr, backend.addr(), cert());
        Self { backend, front }
    }

    /// `https://<host>:<port>/x.git`.
    pub fn url(&self, host: &str) -> String {
        self.front.url(host, "x.git")
    }

    /// Requests the server behind has answered so far.
    pub fn requests(&self) -> usize {
        self.backend.requests().len()
    }
}

/// A repository `x.git` under `base`, with one commit.
pub fn upstream(base: &Path) -> Upstream {
    Upstream::create(base.join("x.git"))
}

/// A mirror of `up` at `dir/<name>.git`, up to date, made without any upstream
/// connection of ours.
pub fn up_to_date(dir: &Path, up: &Upstream, name: &str) -> PathBuf {
    let mirror = dir.join(format!("{name}.git"));
    git(
        dir,
        &[
            "clone",
            "-q",
            "--mirror",
            &up.path.display().to_string(),
            &mirror.display().to_string(),
        ],
    );
    mirror
}

/// One fetch of `url` into `mirror`, as a sync makes it.
pub fn check(mirror: &Path, url: &str, network: &NetworkPolicy) -> Result<FetchReport, FetchError> {
    ca();
    let gate = WriteGate::default();
    gate.decide(true);
    fetch_mirror(&FetchRequest {
        path: mirror,
        url,
        deadline: Instant::now() + Duration::from_secs(30),
        stop: &Arc::new(StopFlag::default()),
        network,
        selection: &RefSelection::default(),
        gate: &gate,
        progress: &TransferProgress::default(),
        ssh: &Default::default(),
    })
}

/// [`check`] of an up-to-date mirror, which must find it unchanged.
pub fn no_op(mirror: &Path, url: &str, network: &NetworkPolicy) {
    let report = check(mirror, url, network).unwrap_or_else(|e| panic!("{url}: {e:?}"));
    assert!(report.unchanged, "{url}: the mirror was up to date");
}

/// Waits until `done` holds, or panics naming `what` after 10 s.
pub fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
