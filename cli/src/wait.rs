//! `stasisctl mirrors sync --wait`: follows the job until it ends, with its download's
//! progress as the worker publishes it (objects and bytes against the total, then deltas):
//! a progress bar on a terminal, a plain line every few seconds otherwise (a log or a
//! pipe gets no control characters).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use redis::aio::ConnectionManager;
use stasis_shared::db::{jobs, repos};
use stasis_shared::domain::JobState;
use stasis_shared::progress::{self, Phase, SyncProgress};
use uuid::Uuid;

use crate::{out, Services};

/// How often the job and its progress are read: the worker publishes once a second.
const POLL: Duration = Duration::from_millis(500);
/// Plain output: one line per this much time at most, while the figures move.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Waits for `job_id` of `repo_id` to end; an error unless it ended done.
pub async fn wait(svc: &Services, repo: &str, repo_id: Uuid, job_id: Uuid) -> anyhow::Result<()> {
    let redis = svc.redis().await?;
    let namespace = &svc.cfg.queue.namespace;
    let mut shown = Shown::new(std::io::stdout().is_terminal());
    let job = loop {
        let Some(job) = jobs::find(&svc.pool, job_id).await? else {
            // while its mirror exists only a done job is deleted (once the mirror's next
            // run is written): a quick next sync may retire it between two looks
            if repos::find(&svc.pool, repo_id).await?.is_none() {
                bail!("job {job_id} is gone (its repository was deleted)");
            }
            shown.finish();
            out!("{repo} synced");
            return Ok(());
        };
        if !matches!(job.state, JobState::Pending | JobState::Running) {
            break job;
        }
        let now = if job.state == JobState::Running {
            read(&redis, namespace, repo_id, job_id).await
        } else {
            None
        };
        shown.update(&job.state, now.as_ref());
        tokio::time::sleep(POLL).await;
    };
    shown.finish();
    match job.state {
        JobState::Done => {
            out!("{repo} synced");
            Ok(())
        }
        state => bail!(
            "the sync of {repo} ended {state}: {}",
            job.last_error.as_deref().unwrap_or("no error recorded")
        ),
    }
}

/// The progress, or none when Redis does not answer in time: the wait goes on by the
/// job's state alone.
async fn read(
    redis: &ConnectionManager,
    namespace: &str,
    repo_id: Uuid,
    job_id: Uuid,
) -> Option<SyncProgress> {
    let read = progress::read(redis, namespace, repo_id, job_id);
    match tokio::time::timeout(POLL, read).await {
        Ok(Ok(found)) => found,
        _ => None,
    }
}

/// What is on screen: a bar on a terminal, or the last plain line and when it was said.
enum Shown {
    Bar(ProgressBar),
    Lines { last: Option<(String, Instant)> },
}

impl Shown {
    fn new(terminal: bool) -> Self {
        if !terminal {
            return Self::Lines { last: None };
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{wide_bar}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar(bar)
    }

    fn update(&mut self, state: &JobState, p: Option<&SyncProgress>) {
        match self {
            Self::Bar(bar) => {
                let Some(p) = p else {
                    bar.set_message(waiting(state).to_owned());
                    return;
                };
                let (done, of) = counts(p);
                bar.set_length(of);
                bar.set_position(done);
                bar.set_message(words(p));
            }
            Self::Lines { last } => {
                let said = p.map_or_else(|| waiting(state).to_owned(), line);
                let due = match last {
                    Some((text, at)) => *text != said && at.elapsed() >= LINE_EVERY,
                    None => true,
                };
                // a new phase is said at once
                let moved_on = last
                    .as_ref()
                    .is_some_and(|(text, _)| phase_of(text) != phase_of(&said));
                if due || moved_on {
                    out!("{said}");
                    *last = Some((said, Instant::now()));
                }
            }
        }
    }

    fn finish(self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn waiting(state: &JobState) -> &'static str {
    match state {
        JobState::Pending => "queued",
        _ => "syncing",
    }
}

/// What the bar counts: objects while they arrive, then deltas.
fn counts(p: &SyncProgress) -> (u64, u64) {
    match p.phase {
        Phase::ResolvingDeltas => (p.indexed_deltas, p.total_deltas),
        Phase::ReceivingObjects | Phase::Done => (p.received_objects, p.total_objects),
    }
}

/// The bar's message.
fn words(p: &SyncProgress) -> String {
    let size = bytesize::ByteSize(p.received_bytes);
    match p.phase {
        Phase::ReceivingObjects => format!("receiving objects, {size}"),
        Phase::ResolvingDeltas => format!("resolving deltas, {size} received"),
        Phase::Done => format!("writing refs, {size} received"),
    }
}

/// A plain line: "receiving objects: 1234 of 5678, 12.3 MB".
fn line(p: &SyncProgress) -> String {
    let (done, of) = counts(p);
    let what = match p.phase {
        Phase::ReceivingObjects => "receiving objects",
        Phase::ResolvingDeltas => "resolving deltas",
        Phase::Done => "writing refs",
    };
    format!(
        "{what}: {done} of {of}, {}",
        bytesize::ByteSize(p.received_bytes)
    )
}

/// The phase a plain line names, to say a new one at once.
fn phase_of(line: &str) -> &str {
    line.split(':').next().unwrap_or(line)
}
