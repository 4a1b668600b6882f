//! One mirror fetch with libgit2: `+refs/*:refs/*`, pruning, forced updates, HEAD
//! following upstream's default branch. Blocking: run it on a blocking thread.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use git2::{
    AutotagOption, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions, Oid,
    RemoteCallbacks, Repository, RepositoryInitOptions,
};

pub use super::classify::FetchError;
use super::classify::{classify, refused, stopped};
use super::gate::WriteGate;
pub use super::progress::TransferProgress;
use super::refs::{self, RefChanges, RefUpdateError};
use super::ssh_auth::{self, SshAccess};
pub use super::stop::{StopFlag, StopReason};
use super::transport::{self, NetworkPolicy, Session};
use stasis_shared::domain::ErrorKind;
use stasis_shared::git::selection::RefSelection;
use stasis_shared::git::url::{http_credentials, Scheme, UpstreamUrl};

pub const MIRROR_REFSPEC: &str = "+refs/*:refs/*";

/// Local disk work, unlike the download: not cut short by the sync's deadline, which a
/// slow download may have nearly used up. A transaction that outlasts it is aborted whole.
const REF_UPDATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct FetchRequest<'a> {
    pub path: &'a Path,
    pub url: &'a str,
    pub deadline: Instant,
    pub stop: &'a Arc<StopFlag>,
    /// Where the fetch may connect and how much it may receive.
    pub network: &'a NetworkPolicy,
    /// The refs this mirror keeps; others are neither fetched nor pruned.
    pub selection: &'a RefSelection,
    /// Asked before the first write that follows the ref listing.
    pub gate: &'a WriteGate,
    /// Where the download's counts go as libgit2 reports them.
    pub progress: &'a TransferProgress,
    /// The deploy key and the confirmed host keys, for ssh upstreams.
    pub ssh: &'a SshAccess,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    pub refs_created: u32,
    pub refs_updated: u32,
    pub refs_pruned: u32,
    pub bytes_received: u64,
    pub objects_received: u32,
    pub default_branch: Option<String>,
    /// The bare repository was created by this fetch (an import).
    pub initialized: bool,
    /// Upstream advertised exactly the mirror's refs: nothing was fetched.
    pub unchanged: bool,
    /// Connecting and reading the ref advertisement.
    pub list_time: std::time::Duration,
    /// Downloading the pack, writing the tips and pruning; zero when unchanged.
    pub fetch_time: std::time::Duration,
    /// What the mirror's refs pointed at before, and the tips this fetch created or
    /// moved: the objects new to the mirror are those reachable from `new_tips` and not
    /// from `old_tips` (where the LFS step looks for pointers).
    pub old_tips: Vec<Oid>,
    pub new_tips: Vec<Oid>,
    /// grokmirror's fingerprint of the mirror's refs afterwards (`None`: no ref).
    pub fingerprint: Option<String>,
}

impl FetchReport {
    pub fn refs_changed(&self) -> u32 {
        self.refs_created + self.refs_updated
    }
}

pub fn fetch_mirror(req: &FetchRequest<'_>) -> Result<FetchReport, FetchError> {
    let existed = req.path.exists();
    let fetched = fetch_once(req);
    if fetched.is_err() && !existed {
        super::storage::remove_failed_import(req.path);
    }
    fetched
}

fn fetch_once(req: &FetchRequest<'_>) -> Result<FetchReport, FetchError> {
    let mut network = req.network.clone();
    let used = super::storage::disk_size(req.path);
    if used >= network.max_transfer {
        return Err(FetchError {
            kind: ErrorKind::TooLarge,
            message: format!(
                "the mirror takes {}, more than mirror.max_size ({}) ({})",
                bytesize::ByteSize(used),
                bytesize::ByteSize(network.max_transfer),
                ErrorKind::TooLarge
            ),
        });
    }
    // the transfer may fill what the mirror has left of its size limit
    network.max_transfer -= used;
    let session = Session::new(network, req.deadline, req.stop.clone());
    let _entered = transport::enter(session.clone());
    // the canonical form: the host checked is the host in the string libgit2 parses
    let upstream = UpstreamUrl::parse(req.url).map_err(|e| FetchError {
        kind: ErrorKind::BlockedUrl,
        message: format!("{e} ({})", ErrorKind::BlockedUrl),
    })?;
    let target =
        transport::target(&upstream, &session).map_err(|_| refused(&session, req.stop, req.url))?;
    let fail = |e: git2::Error| classify(&e, req.stop, req.url, &session, req.path);
    let (repo, initialized) = open_or_init(req.path).map_err(fail)?;
    let mut report = FetchReport {
        initialized,
        ..FetchReport::default()
    };
    let mut remote = repo.remote_anonymous(&target).map_err(fail)?;
    let listing = Instant::now();
    let auth_tries = Cell::new(0u32);
    let ssh = (upstream.scheme() == Scheme::Ssh).then_some(Ssh {
        access: req.ssh,
        session: &session,
    });
    let mut conn = remote
        .connect_auth(
            Direction::Fetch,
            Some(callbacks(req, &auth_tries, ssh)),
            None,
        )
        .map_err(fail)?;

    // Most syncs find nothing new: the ref advertisement settles that without the
    // negotiation and pack exchange of a fetch.
    let advertised = conn.list().map_err(fail)?;
    report.list_time = listing.elapsed();
    // upstream's refs this mirror keeps (peeled tags and HEAD are not refs to write)
    let wanted: BTreeMap<String, Oid> = advertised
        .iter()
        .filter(|h| h.name().starts_with("refs/") && !h.name().ends_with("^{}"))
        .filter(|h| req.selection.selects(h.name()))
        .map(|h| (h.name().to_owned(), h.oid()))
        .collect();
    if !initialized && local_refs(&repo, req.selection).map_err(fail)? == wanted {
        let branch = conn.default_branch().ok();
        report.default_branch = follow_default_branch(&repo, branch.as_ref());
        report.unchanged = true;
        report.fingerprint = super::fingerprint::fingerprint(&wanted);
        return Ok(report);
    }

    if !req.gate.wait_open(req.stop, req.deadline) {
        return Err(stopped(req.stop.reason()));
    }
    // The download reuses the connection the listing opened: a changed mirror costs no
    // second ref advertisement (a round trip, and over HTTP a request).
    let fetching = Instant::now();
    // Everything: one wildcard refspec, tags and pruning by libgit2. A selection: exactly
    // the selected refs, no tag following, and pruning limited to the selection here.
    let refspecs: Vec<String> = if req.selection.is_everything() {
        vec![MIRROR_REFSPEC.to_owned()]
    } else {
        wanted
            .keys()
            .map(|name| format!("+{name}:{name}"))
            .collect()
    };
    let tags = if req.selection.is_everything() {
        AutotagOption::All
    } else {
        AutotagOption::None
    };
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks(req, &auth_tries, ssh))
        .download_tags(tags);
    if !refspecs.is_empty() {
        conn.remote()
            .download(&refspecs, Some(&mut options))
            .map_err(fail)?;
    }
    if req.stop.is_stopped() {
        return Err(stopped(req.stop.reason()));
    }
    let branch = conn.default_branch().ok();
    let stats = conn.remote().stats();
    report.bytes_received = stats.received_bytes() as u64;
    report.objects_received = stats.received_objects() as u32;
    drop(conn);
    drop(options);

    // One transaction from the mirror's refs to upstream's: all of it or none, however
    // many refs it prunes. The stop flag was checked above; from here it runs whole.
    let before = local_refs(&repo, req.selection).map_err(fail)?;
    let changes = RefChanges::between(&before, &wanted);
    refs::apply(req.path, &changes, REF_UPDATE_TIMEOUT).map_err(|e| ref_update_failed(&e))?;
    // git wrote the refs behind this handle's back: read them afresh for HEAD
    let repo = Repository::open_bare(req.path).map_err(fail)?;
    report.default_branch = follow_default_branch(&repo, branch.as_ref());
    report.refs_created = changes.create.len() as u32;
    report.refs_updated = changes.update.len() as u32;
    report.refs_pruned = changes.delete.len() as u32;
    report.old_tips = before.values().filter(|o| !o.is_zero()).copied().collect();
    report.new_tips = changes
        .create
        .iter()
        .map(|(_, new)| *new)
        .chain(changes.update.iter().map(|(_, _, new)| *new))
        .collect();
    if report.refs_created + report.refs_updated > 0 {
        // Housekeeping: the refs are written either way, and loose ones still read right.
        if let Err(e) = super::pack_refs::pack_refs(req.path) {
            tracing::warn!(error = %e.message(), "could not pack the mirror's refs");
        }
    }
    report.fetch_time = fetching.elapsed();
    // the refs within the selection are now upstream's
    report.fingerprint = super::fingerprint::fingerprint(&wanted);
    Ok(report)
}

/// An ssh fetch's keys and the session its refusals are recorded in.
#[derive(Clone, Copy)]
struct Ssh<'a> {
    access: &'a SshAccess,
    session: &'a Session,
}

/// Credentials (answered once), the ssh host key check, the stop/deadline check and the
/// transfer's counts, for the ref listing and the fetch alike.
fn callbacks<'a>(
    req: &'a FetchRequest<'_>,
    auth_tries: &'a Cell<u32>,
    ssh: Option<Ssh<'a>>,
) -> RemoteCallbacks<'a> {
    let keep_going = move || !req.stop.is_stopped() && Instant::now() < req.deadline;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.transfer_progress(move |p| {
        req.progress.record(&p);
        keep_going()
    });
    callbacks.sideband_progress(move |_| keep_going());
    if let Some(ssh) = ssh {
        callbacks.certificate_check(move |cert, _host| {
            ssh_auth::check_host_key(ssh.access, ssh.session, cert)
        });
        callbacks.credentials(move |_url, user, allowed| {
            ssh_auth::credentials(ssh.access, ssh.session, auth_tries, user, allowed)
        });
        return callbacks;
    }
    callbacks.credentials(move |url, _user, allowed| {
        // libgit2 calls back again after a rejected answer: answer once, then give up.
        auth_tries.set(auth_tries.get() + 1);
        match http_credentials(url) {
            Some((user, pass))
                if auth_tries.get() == 1
                    && allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                Cred::userpass_plaintext(&user, &pass)
            }
            _ => Err(git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Http,
                "authentication required or rejected by upstream",
            )),
        }
    });
    callbacks
}

/// The mirror's refs within the selection, as name → object; a symbolic ref (which a
/// fetch never writes) makes the mirror differ from anything upstream advertises.
fn local_refs(
    repo: &Repository,
    selection: &RefSelection,
) -> Result<BTreeMap<String, Oid>, git2::Error> {
    let mut refs = BTreeMap::new();
    for reference in repo.references()? {
        let reference = reference?;
        let Some(name) = reference.name() else {
            continue;
        };
        if !name.starts_with("refs/") || !selection.selects(name) {
            continue;
        }
        // a zero id never matches an advertised object: the fetch rewrites it
        refs.insert(name.to_owned(), reference.target().unwrap_or(Oid::zero()));
    }
    Ok(refs)
}

/// Opens the bare mirror, creating it on first sync.
fn open_or_init(path: &Path) -> Result<(Repository, bool), git2::Error> {
    match Repository::open_bare(path) {
        Ok(repo) => Ok((repo, false)),
        Err(e) if e.code() == ErrorCode::NotFound => {
            let mut opts = RepositoryInitOptions::new();
            opts.bare(true).mkpath(true);
            Ok((Repository::init_opts(path, &opts)?, true))
        }
        Err(e) => Err(e),
    }
}

/// Points HEAD where upstream's HEAD points, so clones of the mirror check out the same
/// default branch. Best effort: an upstream without HEAD (empty) keeps ours.
fn follow_default_branch(repo: &Repository, branch: Option<&git2::Buf>) -> Option<String> {
    let name = branch?.as_str()?.to_owned();
    if repo.find_reference(&name).is_ok() {
        let current = repo.find_reference("HEAD").ok()?;
        if current.symbolic_target() != Some(name.as_str()) {
            repo.set_head(&name).ok()?;
        }
    }
    Some(name)
}

fn ref_update_failed(e: &RefUpdateError) -> FetchError {
    FetchError {
        kind: ErrorKind::Disk,
        message: format!("{e} ({})", ErrorKind::Disk),
    }
}

/// libgit2's socket timeouts are process-wide: set them once per worker process so a
/// silent upstream cannot hold a blocking thread beyond `sync.timeout`.
pub fn set_network_timeouts(timeout: std::time::Duration) {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: called once at start-up, before any fetch thread exists; libgit2 reads
    // these options without synchronisation.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms.min(30_000));
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
    }
}
