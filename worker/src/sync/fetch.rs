//! The fetch itself: on a blocking thread, bounded by `sync.timeout`, from the stored
//! upstream with its sealed credentials opened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::git::fetch::{
    fetch_mirror, FetchError, FetchReport, FetchRequest, StopFlag, StopReason, TransferProgress,
};
use crate::git::gate::WriteGate;
use crate::git::ssh_auth::{DeployKeyPair, SshAccess};
use crate::git::transport::NetworkPolicy;
use stasis_shared::db::repos::Repo;
use stasis_shared::domain::ErrorKind;
use stasis_shared::git::selection::RefSelection;
use stasis_shared::git::url::{with_credentials, Scheme, UpstreamUrl};
use stasis_shared::ssh::deploy_key::public_fingerprint;
use stasis_shared::ssh::host_keys::host_port;
use std::path::PathBuf;

use uuid::Uuid;

use crate::context::WorkerContext;
use crate::sync::progress::Publishing;

/// Runs the fetch on a blocking thread, which `stop` stops, publishing its progress for
/// `job_id` while it downloads.
pub(crate) async fn fetch(
    ctx: &WorkerContext,
    repo: &Repo,
    path: PathBuf,
    job_id: Uuid,
    stop: Arc<StopFlag>,
    gate: Arc<WriteGate>,
) -> Result<FetchReport, FetchError> {
    let progress = Arc::new(TransferProgress::default());
    let publishing = Publishing::start(ctx, repo.id, job_id, progress.clone());
    let fetched = fetch_publishing(ctx, repo, path, stop, gate, progress).await;
    publishing.finish().await;
    fetched
}

async fn fetch_publishing(
    ctx: &WorkerContext,
    repo: &Repo,
    path: PathBuf,
    stop: Arc<StopFlag>,
    gate: Arc<WriteGate>,
    progress: Arc<TransferProgress>,
) -> Result<FetchReport, FetchError> {
    let url = upstream_url(ctx, repo)?;
    let ssh = ssh_access(ctx, repo, &url)?;
    // the upstream policy holds inside the fetch, where it connects
    let timeout = ctx.cfg.sync.timeout;
    let thread_stop = stop.clone();
    let deadline = Instant::now() + timeout;
    let selection = RefSelection {
        include: repo.include_refs.clone(),
        exclude: repo.exclude_refs.clone(),
    };
    let network = NetworkPolicy::from_config(&ctx.cfg);
    let mut fetch = tokio::task::spawn_blocking(move || {
        fetch_mirror(&FetchRequest {
            path: &path,
            url: &url,
            deadline,
            stop: &thread_stop,
            network: &network,
            selection: &selection,
            gate: &gate,
            progress: &progress,
            ssh: &ssh,
        })
    });
    // The fetch checks the deadline itself; this outer bound covers a thread stuck
    // where neither our transport nor a libgit2 callback looks at it. The sync's permit
    // is held until the thread has ended either way: a stopped fetch holds no memory
    // or connection beyond it.
    let joined = match tokio::time::timeout(timeout + Duration::from_secs(5), &mut fetch).await {
        Ok(joined) => joined,
        Err(_) => {
            stop.stop(StopReason::Timeout);
            let joined = fetch.await;
            if joined.is_ok() {
                return Err(FetchError {
                    kind: ErrorKind::Timeout,
                    message: "sync timed out".into(),
                });
            }
            joined
        }
    };
    joined.unwrap_or_else(|join| {
        Err(FetchError {
            kind: ErrorKind::Internal,
            message: format!("fetch thread failed: {join}"),
        })
    })
}

/// The URL to fetch: the stored one with its sealed credentials opened and put back.
pub(crate) fn upstream_url(ctx: &WorkerContext, repo: &Repo) -> Result<String, FetchError> {
    let Some(url) = repo.mirror_url.clone() else {
        return Err(FetchError {
            kind: ErrorKind::Internal,
            message: "repository has no upstream URL".into(),
        });
    };
    let Some(sealed) = &repo.mirror_credentials else {
        return Ok(url);
    };
    let opened = ctx.cipher.as_ref().map(|c| c.open(sealed));
    match opened {
        Some(Ok(userinfo)) => Ok(with_credentials(&url, &userinfo)),
        // Permanent: retrying cannot bring the key back.
        Some(Err(e @ stasis_shared::secrets::SecretError::UnknownKey(_))) => Err(FetchError {
            kind: ErrorKind::Auth,
            message: format!("the stored credentials cannot be opened: {e}"),
        }),
        _ => Err(FetchError {
            kind: ErrorKind::Auth,
            message: "the stored credentials cannot be opened: secrets.key is missing or not \
                      the key they were sealed with"
                .into(),
        }),
    }
}

/// The deploy key opened from its seal and the host keys confirmed for this upstream,
/// for an ssh upstream; nothing for others, which never see the key.
pub(crate) fn ssh_access(
    ctx: &WorkerContext,
    repo: &Repo,
    url: &str,
) -> Result<SshAccess, FetchError> {
    let Ok(upstream) = UpstreamUrl::parse(url) else {
        return Ok(SshAccess::default());
    };
    if upstream.scheme() != Scheme::Ssh {
        return Ok(SshAccess::default());
    }
    // keys confirmed for another host or port (the URL changed since) are not this
    // upstream's
    let host_keys = if repo.ssh_host_keys_for.as_deref() == Some(&host_port(&upstream)) {
        repo.ssh_host_keys
            .iter()
            .map(|k| k.fingerprint.clone())
            .collect()
    } else {
        Vec::new()
    };
    let key = match (&repo.ssh_private_key, &repo.ssh_public_key) {
        (Some(sealed), Some(public)) => match ctx.cipher.as_ref().map(|c| c.open(sealed)) {
            Some(Ok(private)) => Some(DeployKeyPair {
                fingerprint: public_fingerprint(public).unwrap_or_default(),
                public: public.clone(),
                private: zeroize::Zeroizing::new(private),
            }),
            _ => {
                return Err(FetchError {
                    kind: ErrorKind::Auth,
                    message: "the deploy key cannot be opened: secrets.key is missing or not the \
                              key it was sealed with"
                        .into(),
                })
            }
        },
        _ => None,
    };
    Ok(SshAccess { key, host_keys })
}
