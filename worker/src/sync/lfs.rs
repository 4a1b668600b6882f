//! The LFS step of a sync: after a fetch that created or moved refs, the mirror's new
//! LFS pointers are resolved to objects (`git::lfs`). Under the sync's lock and permit,
//! bounded by `lfs.timeout`, and never a reason for the sync to fail: what went wrong is
//! recorded on the run (`lfs_error`) and counted.
//!
//! The objects a step could not store are remembered (`lfs_missing`): the scan looks at
//! new objects only, so nothing else would ever ask for them again. Any later successful
//! sync, with new commits or without, tries those that are due again
//! (`lfs.retry_base_delay`, doubling), and forgets each once it is stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::git::fetch::{FetchReport, StopFlag, StopReason};
use crate::git::lfs::pointer::Pointer;
use crate::git::lfs::{mirror_lfs, LfsLimits, LfsReport, LfsRequest};
use crate::git::transport::NetworkPolicy;
use stasis_shared::db::lfs_missing::{self, Backoff, StillMissing};
use stasis_shared::db::repos::Repo;
use tracing::{info, info_span, warn, Instrument};

use crate::context::WorkerContext;
use crate::sync::fetch::{ssh_access, upstream_url};

/// Remembered objects tried by one sync at most; the rest wait for the next.
const MAX_RETRIED: i64 = 10_000;

/// The LFS objects a successful fetch calls for, and the remembered ones due again;
/// `None` when the step does not apply (LFS off for the process or the mirror, or no ref
/// created or moved and no retry due).
pub(crate) async fn after_sync(
    ctx: &WorkerContext,
    repo: &Repo,
    path: &std::path::Path,
    report: &FetchReport,
    stop: &Arc<StopFlag>,
) -> Option<LfsReport> {
    if !ctx.cfg.lfs.enabled || !repo.lfs_enabled {
        // the fleet's switch was turned off (the mirror's own forgets them as it turns)
        if repo.lfs_retry_at.is_some() {
            if let Err(e) = lfs_missing::forget(&ctx.pool, repo.id).await {
                warn!(error = %e, "could not forget the mirror's missing LFS objects");
            }
        }
        return None;
    }
    let new_commits = !report.unchanged && !report.new_tips.is_empty();
    let retry_due = repo.lfs_retry_at.is_some_and(|at| at <= Utc::now());
    if !new_commits && !retry_due {
        return None;
    }
    let remembered = if retry_due {
        remembered(ctx, repo).await
    } else {
        Vec::new()
    };
    if !new_commits && remembered.is_empty() {
        // due, yet none was: the mirror's `lfs_retry_at` is brought back in line
        remember(ctx, repo, &LfsReport::default(), &[]).await;
        return None;
    }
    // the fetch opened the same credentials a moment ago
    let url = upstream_url(ctx, repo).ok()?;
    let ssh = ssh_access(ctx, repo, &url).ok()?;
    let network = NetworkPolicy::from_config(&ctx.cfg);
    // A flag of its own: the LFS deadline stops the downloads, not the housekeeping
    // after them; a stop of the sync (lost lock, shutdown) is passed on.
    let lfs_stop = Arc::new(StopFlag::default());
    let forward = tokio::spawn(forward_stop(stop.clone(), lfs_stop.clone()));
    let request = LfsRequest {
        path,
        url: &url,
        old_tips: &report.old_tips,
        new_tips: if new_commits { &report.new_tips } else { &[] },
        created: report.initialized,
        remembered: &remembered,
        network: &network,
        ssh: &ssh,
        limits: LfsLimits::from_config(&ctx.cfg),
        deadline: Instant::now() + ctx.cfg.lfs.timeout,
        stop: &lfs_stop,
    };
    let span = info_span!("lfs");
    let began = Instant::now();
    let lfs = mirror_lfs(&request).instrument(span.clone()).await;
    forward.abort();
    observe(&lfs, &remembered);
    remember(ctx, repo, &lfs, &remembered).await;
    span.in_scope(|| {
        if let Some(error) = lfs.error_text() {
            warn!(error = %error, objects = lfs.objects, "LFS objects missing after the sync");
        } else if lfs.objects > 0 {
            info!(
                objects = lfs.objects,
                bytes = lfs.bytes,
                ms = began.elapsed().as_millis() as u64,
                "LFS objects downloaded"
            );
        }
    });
    Some(lfs)
}

async fn forward_stop(from: Arc<StopFlag>, to: Arc<StopFlag>) {
    while !from.is_stopped() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    to.stop(StopReason::Cancelled);
}

/// The mirror's remembered objects due for a try; none when they cannot be read (the
/// next sync reads them again).
async fn remembered(ctx: &WorkerContext, repo: &Repo) -> Vec<Pointer> {
    match lfs_missing::due(&ctx.pool, repo.id, MAX_RETRIED).await {
        Ok(rows) => rows
            .into_iter()
            .map(|(oid, size)| Pointer {
                oid,
                size: size.max(0) as u64,
            })
            .collect(),
        Err(e) => {
            warn!(error = %e, "could not read the mirror's missing LFS objects");
            Vec::new()
        }
    }
}

/// Records what is still missing and forgets what arrived. Nothing is written when the
/// mirror remembered nothing and lacks nothing: the common case.
async fn remember(ctx: &WorkerContext, repo: &Repo, lfs: &LfsReport, remembered: &[Pointer]) {
    if repo.lfs_retry_at.is_none() && lfs.missing.is_empty() {
        return;
    }
    let missing: std::collections::HashSet<&str> =
        lfs.missing.iter().map(|(p, _)| p.oid.as_str()).collect();
    // stored now, or found stored already; a new pointer stored now may have been
    // remembered too (not yet due)
    let arrived: Vec<String> = remembered
        .iter()
        .map(|p| &p.oid)
        .chain(&lfs.stored)
        .filter(|oid| !missing.contains(oid.as_str()))
        .cloned()
        .collect();
    let still: Vec<StillMissing> = lfs
        .missing
        .iter()
        .map(|(p, why)| StillMissing {
            oid: p.oid.clone(),
            size: p.size,
            error: why.clone(),
        })
        .collect();
    let backoff = Backoff {
        base: ctx.cfg.lfs.retry_base_delay,
        max: ctx.cfg.lfs.retry_max_delay,
    };
    if let Err(e) = lfs_missing::record(&ctx.pool, repo.id, &arrived, &still, backoff).await {
        // the objects stay missing on disk; a later sync's scan will not see them, so
        // say which
        warn!(error = %e, missing = still.len(), "could not record the mirror's missing LFS objects");
    }
}

fn observe(lfs: &LfsReport, remembered: &[Pointer]) {
    if !remembered.is_empty() {
        let missing: std::collections::HashSet<&str> =
            lfs.missing.iter().map(|(p, _)| p.oid.as_str()).collect();
        let still = remembered
            .iter()
            .filter(|p| missing.contains(p.oid.as_str()))
            .count();
        let arrived = remembered.len() - still;
        metrics::counter!("stasis_lfs_retried_objects_total", "outcome" => "arrived")
            .increment(arrived as u64);
        metrics::counter!("stasis_lfs_retried_objects_total", "outcome" => "missing")
            .increment(still as u64);
    }
    metrics::counter!("stasis_lfs_objects_total").increment(lfs.objects.into());
    metrics::counter!("stasis_lfs_bytes_total").increment(lfs.bytes);
    for error in &lfs.errors {
        metrics::counter!("stasis_lfs_failures_total", "kind" => error.kind()).increment(1);
    }
}
