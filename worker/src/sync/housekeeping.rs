//! Housekeeping after a sync that wrote: run while the sync still holds the repository's
//! lock and its permit (repacking is the heaviest git work a worker does), and never a
//! reason for the sync to fail. A pass that failed is remembered in the mirror
//! ([`Retry`]) and run again by a later sync once its backoff ends, whether or not that
//! sync wrote.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::git::fetch::{FetchReport, StopFlag};
use crate::git::housekeeping::{housekeep, Policy, RepackKind, Retry};
use crate::git::storage::disk_size;
use stasis_shared::Config;
use tracing::{info_span, warn, Instrument};

/// What a sync's housekeeping did, for its run row and the mirror's row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Housekept {
    /// The repack that succeeded, and how long it took.
    pub repack: Option<(RepackKind, Duration)>,
    /// The mirror's objects on disk afterwards; `None` when nothing was written.
    pub size_bytes: Option<u64>,
}

pub fn policy(cfg: &Config) -> Policy {
    let h = &cfg.housekeeping;
    Policy {
        full_repack_interval: h.full_repack_interval,
        full_repack_every: h.full_repack_every,
        prune_grace: h.prune_grace,
        timeout: h.timeout,
    }
}

/// The housekeeping a successful fetch calls for, and a failed pass due again. An
/// unchanged sync of a mirror whose last pass did not fail does nothing but look for
/// the retry file: that is the path almost every sync takes.
pub async fn after_sync(
    cfg: &Config,
    path: &Path,
    report: &FetchReport,
    stop: &Arc<StopFlag>,
) -> Housekept {
    match plan(cfg, path, report) {
        Some(plan) => run(cfg, path, plan, stop).await,
        None => Housekept::default(),
    }
}

/// What a sync's housekeeping is to do: a pass of `pass`'s kind, if one is due, and the
/// mirror's size afterwards.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub pass: Option<RepackKind>,
    /// The failed pass remembered before this one.
    retry: Option<Retry>,
}

/// `None`: nothing to do, not even a size to measure (the sync wrote nothing and no
/// failed pass is due). Reads the retry file, nothing else.
pub fn plan(cfg: &Config, path: &Path, report: &FetchReport) -> Option<Plan> {
    let changed = report.refs_changed() + report.refs_pruned > 0;
    let wrote = !report.unchanged && (changed || report.objects_received > 0);
    let retry = cfg
        .housekeeping
        .enabled
        .then(|| Retry::read(path))
        .flatten();
    let retry_due = retry.filter(|r| r.not_before <= SystemTime::now());
    if !wrote && retry_due.is_none() {
        return None;
    }
    let due = if wrote {
        policy(cfg).due(path, report.objects_received > 0, changed)
    } else {
        None
    };
    let due = match (due, retry_due) {
        (Some(kind), Some(r)) if !kind.covers(r.kind) => Some(r.kind),
        (None, Some(r)) => Some(r.kind),
        (due, _) => due,
    };
    Some(Plan {
        pass: due.filter(|_| cfg.housekeeping.enabled),
        retry,
    })
}

/// Runs the planned pass, if any, and measures the mirror. Before the pass starts it is
/// remembered as owed (a retry due at once, no failure counted) unless a failed one is
/// remembered already: a worker that dies during it, or after its sync's end was
/// recorded and before these figures were, leaves the next sync to run it again.
pub async fn run(cfg: &Config, path: &Path, plan: Plan, stop: &Arc<StopFlag>) -> Housekept {
    let mut done = Housekept::default();
    let policy = policy(cfg);
    let retry = plan.retry;
    if let Some(kind) = plan.pass {
        let span = info_span!("housekeeping", kind = kind.as_str());
        let owed = retry.is_none().then(|| {
            Retry {
                kind,
                failures: 0,
                not_before: SystemTime::now(),
            }
            .write(path)
        });
        if let Some(Err(e)) = &owed {
            span.in_scope(|| warn!(error = %e, "could not remember the pass as owed"));
        }
        let began = Instant::now();
        let (dir, stop) = (path.to_owned(), stop.clone());
        let result = tokio::task::spawn_blocking(move || housekeep(&dir, kind, &policy, &stop))
            .instrument(span.clone())
            .await
            .unwrap_or_else(|e| Err(format!("housekeeping thread failed: {e}")));
        let took = began.elapsed();
        let outcome = if result.is_ok() { "success" } else { "failure" };
        metrics::counter!("stasis_housekeeping_runs_total", "kind" => kind.as_str(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("stasis_housekeeping_duration_seconds", "kind" => kind.as_str())
            .record(took.as_secs_f64());
        match result {
            Ok(()) => {
                done.repack = Some((kind, took));
                if owed.is_some() || retry.is_some_and(|r| kind.covers(r.kind)) {
                    if let Err(e) = Retry::clear(path) {
                        span.in_scope(
                            || warn!(error = %e, "could not clear the housekeeping retry"),
                        );
                    }
                }
            }
            // the fetched refs stand; a later sync runs the pass again
            Err(e) => {
                let failures = retry.map_or(0, |r| r.failures).saturating_add(1);
                let h = &cfg.housekeeping;
                let wait = stasis_shared::domain::backoff::delay(
                    h.retry_base_delay,
                    h.retry_max_delay,
                    failures,
                    false,
                );
                // a full pass that failed stays owed even after a later geometric one
                let kind = match retry {
                    Some(r) if !kind.covers(r.kind) => r.kind,
                    _ => kind,
                };
                let again = Retry {
                    kind,
                    failures,
                    not_before: SystemTime::now() + wait,
                };
                let written = again.write(path);
                span.in_scope(|| {
                    warn!(error = %e, failures, retry_in_s = wait.as_secs(), "mirror housekeeping failed");
                    if let Err(e) = written {
                        warn!(error = %e, "could not remember the failed housekeeping");
                    }
                });
            }
        }
    }
    let dir = path.to_owned();
    done.size_bytes = tokio::task::spawn_blocking(move || disk_size(&dir))
        .await
        .ok();
    done
}
