//! The LFS step of a sync: after a fetch that created or moved refs, the mirror's new
//! LFS pointers are resolved to objects (`git::lfs`). Under the sync's lock and permit,
//! bounded by `lfs.timeout`, and never a reason for the sync to fail: what went wrong is
//! recorded on the run (`lfs_error`) and counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::git::fetch::{FetchReport, StopFlag, StopReason};
use crate::git::lfs::{mirror_lfs, LfsLimits, LfsReport, LfsRequest};
use crate::git::transport::NetworkPolicy;
use stasis_shared::db::repos::Repo;
use stasis_shared::git::mirror_path;
use tracing::{info, info_span, warn, Instrument};

use crate::context::WorkerContext;
use crate::fetch::upstream_url;

/// The LFS objects a successful fetch calls for; `None` when the step does not apply
/// (LFS off for the process or the mirror, or no ref created or moved).
pub(crate) async fn after_sync(
    ctx: &WorkerContext,
    repo: &Repo,
    report: &FetchReport,
    stop: &Arc<StopFlag>,
) -> Option<LfsReport> {
    if !ctx.cfg.lfs.enabled || !repo.lfs_enabled || report.unchanged || report.new_tips.is_empty() {
        return None;
    }
    // the fetch opened the same credentials a moment ago
    let url = upstream_url(ctx, repo).ok()?;
    let path = mirror_path(&ctx.cfg.storage.root, &repo.owner, &repo.name);
    let network = NetworkPolicy::from_config(&ctx.cfg);
    // A flag of its own: the LFS deadline stops the downloads, not the housekeeping
    // after them; a stop of the sync (lost lock, shutdown) is passed on.
    let lfs_stop = Arc::new(StopFlag::default());
    let forward = tokio::spawn(forward_stop(stop.clone(), lfs_stop.clone()));
    let request = LfsRequest {
        path: &path,
        url: &url,
        old_tips: &report.old_tips,
        new_tips: &report.new_tips,
        network: &network,
        limits: LfsLimits::from_config(&ctx.cfg),
        deadline: Instant::now() + ctx.cfg.lfs.timeout,
        stop: &lfs_stop,
    };
    let span = info_span!("lfs");
    let began = Instant::now();
    let lfs = mirror_lfs(&request).instrument(span.clone()).await;
    forward.abort();
    observe(&lfs);
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

fn observe(lfs: &LfsReport) {
    metrics::counter!("stasis_lfs_objects_total").increment(lfs.objects.into());
    metrics::counter!("stasis_lfs_bytes_total").increment(lfs.bytes);
    for error in &lfs.errors {
        metrics::counter!("stasis_lfs_failures_total", "kind" => error.kind()).increment(1);
    }
}
