//! Publishing a fetch's transfer progress while it runs (see [`stasis_shared::progress`]
//! for where it goes and why): sampled once a second and written only when it changed,
//! or, unchanged, often enough that it does not expire under a stalled download; removed
//! when the fetch ends. Best effort: Redis failing costs the readers the figures, never
//! the sync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use redis::aio::ConnectionManager;
use stasis_shared::progress::{self, Phase, SyncProgress};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::debug;
use uuid::Uuid;

use crate::context::WorkerContext;
use crate::git::progress::{TransferCounts, TransferProgress};

/// How often the counts are sampled: readers poll about as often.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// An unchanged value is written again after this, well within its expiry.
const REFRESH_AFTER: Duration = Duration::from_secs(5);
/// One Redis call of the publisher: a slow Redis delays the figures, not the sync's end.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The publishing task of one fetch; [`Publishing::finish`] stops it and removes the
/// value. Dropped without that (the fetch's future dropped), it stops and the value
/// expires on its own.
pub(crate) struct Publishing {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

struct Target {
    conn: ConnectionManager,
    namespace: String,
    repo_id: Uuid,
    job_id: Uuid,
}

impl Publishing {
    pub(crate) fn start(
        ctx: &WorkerContext,
        repo_id: Uuid,
        job_id: Uuid,
        counts: Arc<TransferProgress>,
    ) -> Self {
        let target = Target {
            conn: ctx.redis.clone(),
            namespace: ctx.cfg.queue.namespace.clone(),
            repo_id,
            job_id,
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(publish_until(target, counts, stopped));
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn publish_until(
    target: Target,
    counts: Arc<TransferProgress>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(TransferCounts, SyncProgress, Instant)> = None;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => {}
        }
        let now = counts.read();
        if now.is_empty() {
            continue;
        }
        let value = match &last {
            Some((seen, _, written)) if *seen == now && written.elapsed() < REFRESH_AFTER => {
                continue
            }
            // unchanged: written again as it was, with when it last changed
            Some((seen, value, _)) if *seen == now => value.clone(),
            _ => reading(&now),
        };
        let published = tokio::time::timeout(
            CALL_TIMEOUT,
            progress::publish(
                &target.conn,
                &target.namespace,
                target.repo_id,
                target.job_id,
                &value,
            ),
        )
        .await;
        match published {
            Ok(Ok(())) => last = Some((now, value, Instant::now())),
            Ok(Err(e)) => debug!(error = %e, "could not publish the sync's progress"),
            Err(_) => debug!("publishing the sync's progress timed out"),
        }
    }
    if last.is_some() {
        let cleared = tokio::time::timeout(
            CALL_TIMEOUT,
            progress::clear(
                &target.conn,
                &target.namespace,
                target.repo_id,
                target.job_id,
            ),
        )
        .await;
        if !matches!(cleared, Ok(Ok(()))) {
            debug!("could not remove the sync's progress; it expires on its own");
        }
    }
}

/// The counts as readers see them, with the phase they mean.
pub(crate) fn reading(c: &TransferCounts) -> SyncProgress {
    let received_all = c.total_objects > 0 && c.received_objects >= c.total_objects;
    let phase = if !received_all {
        Phase::ReceivingObjects
    } else if c.indexed_deltas < c.total_deltas {
        Phase::ResolvingDeltas
    } else {
        Phase::Done
    };
    SyncProgress {
        phase,
        received_objects: c.received_objects,
        total_objects: c.total_objects,
        indexed_deltas: c.indexed_deltas,
        total_deltas: c.total_deltas,
        received_bytes: c.received_bytes,
        updated_at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(received: u64, total: u64, indexed_deltas: u64, total_deltas: u64) -> TransferCounts {
        TransferCounts {
            received_objects: received,
            total_objects: total,
            indexed_deltas,
            total_deltas,
            received_bytes: 1000,
            ..TransferCounts::default()
        }
    }

    #[test]
    fn the_phase_follows_the_counts() {
        assert_eq!(reading(&counts(0, 0, 0, 0)).phase, Phase::ReceivingObjects);
        assert_eq!(reading(&counts(5, 10, 0, 0)).phase, Phase::ReceivingObjects);
        assert_eq!(reading(&counts(10, 10, 2, 6)).phase, Phase::ResolvingDeltas);
        assert_eq!(reading(&counts(10, 10, 6, 6)).phase, Phase::Done);
        assert_eq!(reading(&counts(10, 10, 0, 0)).phase, Phase::Done);
    }
}
