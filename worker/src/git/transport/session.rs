//! What one fetch may do on the network, shared by every connection libgit2 asks our
//! transports for during that fetch: the address policy, the limits, the deadline and
//! the stop flag, and the first reason a connection was refused or cut.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::git::stop::{StopFlag, StopReason};
use stasis_shared::domain::ErrorKind;
use stasis_shared::git::url::{is_internal, resolve};

/// How long one blocking socket call waits before the stop flag and deadline are looked
/// at again: the bound on how late a stopped sync lets go of its connection.
pub(super) const SLICE: Duration = Duration::from_millis(100);

/// The network rules of the process, from its configuration.
#[derive(Debug, Clone)]
pub struct NetworkPolicy {
    pub allow_local_network: bool,
    /// Resolve host names with this server instead of the system's resolver.
    pub dns_server: Option<SocketAddr>,
    pub max_advertisement_size: u64,
    pub max_advertised_refs: u32,
    /// Bytes one fetch may receive in all.
    pub max_transfer: u64,
}

impl NetworkPolicy {
    pub fn from_config(cfg: &stasis_shared::Config) -> Self {
        Self {
            allow_local_network: cfg.mirror.allow_local_network,
            dns_server: cfg.mirror.dns_server,
            max_advertisement_size: cfg.sync.max_advertisement_size.as_u64(),
            max_advertised_refs: cfg.sync.max_advertised_refs,
            max_transfer: cfg.mirror.max_size.as_u64(),
        }
    }
}

/// Why our transport refused or cut a connection, kept typed so the fetch's error is
/// classified from what happened rather than from libgit2's message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug)]
pub struct Session {
    pub policy: NetworkPolicy,
    pub deadline: Instant,
    pub stop: Arc<StopFlag>,
    failure: Mutex<Option<Failure>>,
    received: AtomicU64,
    runtime: OnceLock<io::Result<tokio::runtime::Runtime>>,
}

impl Session {
    pub fn new(policy: NetworkPolicy, deadline: Instant, stop: Arc<StopFlag>) -> Arc<Self> {
        Arc::new(Self {
            policy,
            deadline,
            stop,
            failure: Mutex::new(None),
            received: AtomicU64::new(0),
            runtime: OnceLock::new(),
        })
    }

    /// The first failure recorded, which is the cause of any later ones.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Records why the transfer ends and gives libgit2 the error that ends it.
    pub(crate) fn fail(&self, kind: ErrorKind, message: impl Into<String>) -> io::Error {
        let message = message.into();
        let mut slot = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(Failure {
            kind,
            message: message.clone(),
        });
        io::Error::other(message)
    }

    /// An error when the sync was stopped or ran out of time: checked before every
    /// socket call, so a stopped sync closes its connection within a slice.
    pub(super) fn interrupted(&self) -> io::Result<()> {
        if Instant::now() >= self.deadline {
            self.stop.stop(StopReason::Timeout);
        }
        if self.stop.is_stopped() {
            // not `Interrupted`: `write_all` would retry that forever
            return Err(io::Error::other("sync stopped"));
        }
        Ok(())
    }

    /// Counts received bytes against the transfer limit.
    pub(super) fn count(&self, bytes: usize) -> io::Result<()> {
        let total = self.received.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        if total > self.policy.max_transfer {
            return Err(self.fail(
                ErrorKind::TooLarge,
                format!(
                    "upstream sent more than mirror.max_size ({})",
                    bytesize::ByteSize(self.policy.max_transfer)
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Refuses an address the policy does not allow.
    pub(super) fn check(&self, host: &str, ip: IpAddr) -> io::Result<()> {
        if !self.policy.allow_local_network && is_internal(ip) {
            return Err(self.fail(
                ErrorKind::BlockedUrl,
                format!("host `{host}` resolves to a loopback, private or link-local address"),
            ));
        }
        Ok(())
    }

    /// Resolves `host` once and checks every address; the caller connects only to these.
    pub(super) fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else if self.policy.dns_server.is_some() {
            let server = self.policy.dns_server;
            self.block_on(resolve::lookup(server, bare.to_owned(), port))?
                .map_err(|e| self.fail(ErrorKind::Network, e))?
        } else {
            (bare, port)
                .to_socket_addrs()
                .map_err(|_| {
                    self.fail(
                        ErrorKind::Network,
                        format!("host `{bare}` could not be resolved"),
                    )
                })?
                .collect()
        };
        if addrs.is_empty() {
            return Err(self.fail(
                ErrorKind::Network,
                format!("host `{bare}` could not be resolved"),
            ));
        }
        // one internal address refuses the host: which one a later connect would pick
        // is not ours to predict
        for addr in &addrs {
            self.check(bare, addr.ip())?;
        }
        Ok(addrs)
    }

    /// A TCP connection to an approved address of `host`, with slice timeouts so that
    /// reads and writes come back to look at the stop flag.
    pub(super) fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let addrs = self.resolve(host, port)?;
        let mut last = None;
        for addr in addrs {
            self.interrupted()?;
            let wait = self.remaining().min(Duration::from_secs(30));
            if wait.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&addr, wait) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(SLICE))?;
                    stream.set_write_timeout(Some(SLICE))?;
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        self.interrupted()?;
        let why = last.map_or_else(|| "no address".to_owned(), |e| e.to_string());
        Err(self.fail(
            ErrorKind::Network,
            format!("could not connect to `{host}` port {port}: {why}"),
        ))
    }

    /// Runs async network code (HTTP, DNS) from the fetch thread on a runtime of its own,
    /// so it neither needs nor blocks the worker's.
    pub(super) fn block_on<F: std::future::Future>(&self, fut: F) -> io::Result<F::Output> {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        });
        match runtime {
            Ok(rt) => Ok(rt.block_on(fut)),
            Err(e) => Err(self.fail(ErrorKind::Internal, format!("no runtime: {e}"))),
        }
    }
}

/// Waits for `fut` unless the sync is stopped or its deadline passes first; dropping the
/// future closes whatever connection it was reading.
pub(crate) async fn bounded<F: std::future::Future>(
    session: &Session,
    fut: F,
) -> io::Result<F::Output> {
    let deadline = tokio::time::Instant::from_std(session.deadline);
    let stopped = async {
        loop {
            if session.stop.is_stopped() {
                return;
            }
            tokio::time::sleep(SLICE).await;
        }
    };
    tokio::select! {
        out = fut => Ok(out),
        _ = tokio::time::sleep_until(deadline) => {
            session.stop.stop(StopReason::Timeout);
            Err(io::Error::new(io::ErrorKind::TimedOut, "sync timed out"))
        }
        _ = stopped => Err(io::Error::other("sync stopped")),
    }
}
