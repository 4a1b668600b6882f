//! What follows a successful fetch: the LFS step and housekeeping, side by side. The
//! LFS objects are part of a complete mirror (a `git lfs` clone of it needs them), so
//! its end waits for them; the serving indexes housekeeping writes are not, so a pass
//! still running when the LFS step ends is handed back to run on after the end is
//! recorded, under the same lease and permit.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use stasis_shared::db::repos::Repo;

use crate::context::WorkerContext;
use crate::git::fetch::{FetchReport, StopFlag};
use crate::git::lfs::LfsReport;
use crate::sync::housekeeping::{self, Housekept};
use crate::sync::lfs;

/// Housekeeping once the LFS step ended: done, or a pass still running (its figures
/// recorded after the sync's end).
pub(crate) enum Housekeeping<'a> {
    Done(Housekept),
    Running(Pin<Box<dyn Future<Output = Housekept> + Send + 'a>>),
}

/// Runs the LFS step with a due pass beside it from the start: both are mostly a
/// single git process each, and a pass that waited for the LFS step would keep the
/// mirror's lock that much longer. Without a pass, only the size is measured after.
pub(crate) async fn after_fetch<'a>(
    ctx: &'a WorkerContext,
    repo: &'a Repo,
    path: &'a Path,
    report: &'a FetchReport,
    stop: &'a Arc<StopFlag>,
) -> (Option<LfsReport>, Housekeeping<'a>) {
    let lfs = lfs::after_sync(ctx, repo, path, report, stop);
    let plan = housekeeping::plan(&ctx.cfg, path, report);
    let Some(plan) = plan.filter(|p| p.pass.is_some()) else {
        let lfs = lfs.await;
        let housekept = match plan {
            Some(plan) => housekeeping::run(&ctx.cfg, path, plan, stop).await,
            None => Housekept::default(),
        };
        return (lfs, Housekeeping::Done(housekept));
    };
    let mut pass = Box::pin(housekeeping::run(&ctx.cfg, path, plan, stop));
    tokio::pin!(lfs);
    tokio::select! {
        lfs = &mut lfs => (lfs, Housekeeping::Running(pass)),
        housekept = &mut pass => (lfs.await, Housekeeping::Done(housekept)),
    }
}
