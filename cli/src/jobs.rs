//! `stasisctl jobs`: list, show, retry and discard sync jobs.

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use stasis_shared::db::jobs::{self, JobFilter};
use stasis_shared::db::runs;
use stasis_shared::domain::lifecycle::operator::Refused;
use stasis_shared::domain::names::split_repo;
use stasis_shared::domain::{JobState, RunOutcome, SyncReason};
use uuid::Uuid;

use crate::output::{self, table, text, time};
use crate::{out, Services};

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Jobs, newest first.
    List {
        /// pending, running, done, failed or dead.
        #[arg(long)]
        state: Option<JobState>,
        /// Only this repository's jobs, as OWNER/NAME.
        #[arg(long)]
        repo: Option<String>,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Jobs per page (1 to 1000).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000))]
        per_page: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One job with every attempt: times, worker, outcome, error, refs, bytes.
    Show {
        /// The job's id.
        id: Uuid,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send a failed or dead job back to the queue with a fresh allowance of attempts;
    /// or, with `--state`, every job that matches the filters.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "state"])))]
    Retry {
        /// The job's id.
        #[arg(conflicts_with_all = ["state", "reason", "older_than"])]
        id: Option<Uuid>,
        /// Retry every job in this state: failed or dead.
        #[arg(long)]
        state: Option<JobState>,
        /// Only jobs queued for this reason: import, manual, scheduled or webhook.
        #[arg(long, requires = "state")]
        reason: Option<SyncReason>,
        /// Only jobs that finished at least this long ago (e.g. `1h`, `30m`).
        #[arg(long, requires = "state", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
    },
    /// Give up a pending or failed job: it becomes dead and leaves the Redis queue.
    Discard {
        /// The job's id.
        id: Uuid,
    },
}

/// `attempt 2 of 5`: the job's allowance, `sync.max_attempts` when it was queued
/// (a retry extends it from where the job stopped).
fn attempt_of(attempt: i32, max: i32) -> String {
    format!("attempt {attempt} of {max}")
}

/// Every job in `state` matching the filters, through the single-job retry so each
/// keeps its locking and its delivery rollback. One refusal (the repository is busy
/// with another job) does not stop the rest.
async fn bulk_retry(
    svc: &Services,
    state: JobState,
    reason: Option<SyncReason>,
    older_than: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    if !matches!(state, JobState::Failed | JobState::Dead) {
        bail!("only failed or dead jobs can be retried, not {state}");
    }
    let cutoff = older_than
        .map(|d| chrono::Duration::from_std(d).map(|d| chrono::Utc::now() - d))
        .transpose()
        .context("--older-than is too long")?;
    let filter = JobFilter {
        state: Some(state),
        repo: None,
    };
    // Collected before retrying: retried jobs leave the state and would shift pages.
    let mut matching = Vec::new();
    let page = 500;
    for offset in (0..).step_by(page) {
        let (found, _) = jobs::list(&svc.pool, &filter, page as i64, offset as i64).await?;
        let done = found.len() < page;
        matching.extend(found.into_iter().filter(|j| {
            reason.is_none_or(|r| j.reason == r)
                && cutoff.is_none_or(|c| j.finished_at.is_some_and(|f| f <= c))
        }));
        if done {
            break;
        }
    }
    let job_service = svc.jobs().await?;
    let (mut queued, mut skipped) = (0, 0);
    for job in &matching {
        match job_service.retry(job.id).await? {
            Ok(()) => queued += 1,
            Err(r) => {
                skipped += 1;
                eprintln!("skipped: {}", refused(r, job.id, "retried"));
            }
        }
    }
    out!("{queued} jobs queued for retry, {skipped} skipped");
    Ok(())
}

fn refused(r: Refused, id: Uuid, action: &str) -> anyhow::Error {
    match r {
        Refused::NotFound => anyhow!("no job {id}"),
        Refused::State(state) => anyhow!("job {id} is {state}; it cannot be {action}"),
        Refused::Busy(other) => {
            anyhow!("the repository already has an active job {other}; it must finish first")
        }
    }
}

pub async fn run(svc: &Services, command: JobsCommand) -> anyhow::Result<()> {
    let pool = &svc.pool;
    match command {
        JobsCommand::List {
            state,
            repo,
            page,
            per_page,
            json,
        } => {
            let filter = JobFilter {
                state,
                repo: repo.as_deref().map(split_repo).transpose()?,
            };
            let limit = i64::from(per_page);
            let offset = i64::from(page.max(1) - 1) * limit;
            let (jobs, total) = jobs::list(pool, &filter, limit, offset).await?;
            if json {
                return output::json(&serde_json::json!({
                    "jobs": jobs, "page": page, "per_page": per_page,
                    "total": total.count, "total_exact": total.exact,
                }));
            }
            // The id and the error are what an operator acts on; the other columns
            // only fit a wide terminal (`jobs show` and `--json` have them all).
            let wide = output::width() >= 160;
            let rows = jobs.iter().map(|j| {
                let mut row = vec![j.id.to_string(), j.repo.clone()];
                if wide {
                    row.push(j.reason.to_string());
                }
                row.push(j.state.to_string());
                row.push(format!("{} of {}", j.attempts, j.max_attempts));
                if wide {
                    row.push(time(Some(j.enqueued_at)));
                    row.push(time(j.finished_at));
                    row.push(text(j.worker.as_deref()));
                }
                row.push(text(j.last_error.as_deref()));
                row
            });
            let header: &[&str] = if wide {
                &[
                    "ID",
                    "REPO",
                    "REASON",
                    "STATE",
                    "ATTEMPT",
                    "ENQUEUED",
                    "FINISHED",
                    "WORKER",
                    "LAST ERROR",
                ]
            } else {
                &["ID", "REPO", "STATE", "ATTEMPT", "LAST ERROR"]
            };
            out!("{}", table(header, rows));
            let at_least = if total.exact { "" } else { "at least " };
            out!(
                "{} of {at_least}{} jobs (page {page})",
                jobs.len(),
                total.count
            );
        }
        JobsCommand::Show { id, json } => {
            let job = jobs::find(pool, id)
                .await?
                .ok_or_else(|| anyhow!("no job {id}"))?;
            let attempts = runs::for_job(pool, id).await?;
            if json {
                let mut value = serde_json::to_value(&job)?;
                // `attempts` stays the count, as `jobs list --json` has it
                value["runs"] = serde_json::to_value(&attempts)?;
                return output::json(&value);
            }
            out!("job       {}", job.id);
            out!("repo      {}", job.repo);
            out!("reason    {}", job.reason);
            out!("state     {}", job.state);
            out!("attempts  {}", attempt_of(job.attempts, job.max_attempts));
            out!("enqueued  {}", time(Some(job.enqueued_at)));
            out!("started   {}", time(job.started_at));
            out!("finished  {}", time(job.finished_at));
            // In full: the table below holds each error to two lines.
            out!("error     {}", job.last_error.as_deref().unwrap_or("-"));
            let rows = attempts.iter().map(|r| {
                vec![
                    attempt_of(r.attempt, job.max_attempts),
                    time(Some(r.started_at)),
                    r.duration_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                    r.worker.clone(),
                    text(r.outcome.map(RunOutcome::as_str)),
                    output::refs(r),
                    r.bytes_received.to_string(),
                    text(r.error.as_deref()),
                ]
            });
            let header = [
                "#", "STARTED", "TOOK", "WORKER", "OUTCOME", "REFS", "BYTES", "ERROR",
            ];
            out!("{}", table(&header, rows));
            // The table cuts errors short; earlier attempts' errors, which the `error`
            // line above does not repeat, are printed whole.
            for r in &attempts {
                if let Some(error) = r.error.as_deref() {
                    if text(Some(error)) != error && job.last_error.as_deref() != Some(error) {
                        out!("attempt {} error: {error}", r.attempt);
                    }
                }
            }
        }
        JobsCommand::Retry { id: Some(id), .. } => {
            svc.jobs()
                .await?
                .retry(id)
                .await?
                .map_err(|r| refused(r, id, "retried"))?;
            out!("job {id} queued for retry");
        }
        JobsCommand::Retry {
            id: None,
            state,
            reason,
            older_than,
        } => {
            let state = state.context("--state or a job id is required")?;
            bulk_retry(svc, state, reason, older_than).await?;
        }
        JobsCommand::Discard { id } => {
            let (was, removed) = svc
                .jobs()
                .await?
                .discard(id)
                .await?
                .map_err(|r| refused(r, id, "discarded"))?;
            out!("job {id} discarded (was {was}; {removed} queued deliveries removed)");
        }
    }
    Ok(())
}
