//! `stasisctl jobs`: list, show, retry and discard sync jobs.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use stasis_shared::db::jobs::{self, JobFilter, Refused};
use stasis_shared::db::runs;
use stasis_shared::domain::JobState;
use uuid::Uuid;

use crate::output::{self, table, text, time};
use crate::Services;

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
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000))]
        per_page: u32,
        #[arg(long)]
        json: bool,
    },
    /// One job with every attempt: times, worker, outcome, error, refs, bytes.
    Show {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Send a failed or dead job back to the queue with a fresh allowance of attempts.
    Retry { id: Uuid },
    /// Give up a pending or failed job: it becomes dead and leaves the Redis queue.
    Discard { id: Uuid },
}

pub fn split_repo(full: &str) -> anyhow::Result<(String, String)> {
    match full.split_once('/') {
        Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => {
            Ok((o.to_owned(), n.to_owned()))
        }
        _ => bail!("`{full}` is not OWNER/NAME"),
    }
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
                    "jobs": jobs, "page": page, "per_page": per_page, "total": total,
                }));
            }
            let rows = jobs.iter().map(|j| {
                vec![
                    j.id.to_string(),
                    j.repo.clone(),
                    j.reason.clone(),
                    j.state.clone(),
                    format!("{}/{}", j.attempts, j.max_attempts),
                    time(Some(j.enqueued_at)),
                    time(j.finished_at),
                    text(j.worker.as_deref()),
                    text(j.last_error.as_deref()),
                ]
            });
            let header = [
                "ID",
                "REPO",
                "REASON",
                "STATE",
                "ATTEMPTS",
                "ENQUEUED",
                "FINISHED",
                "WORKER",
                "LAST ERROR",
            ];
            println!("{}", table(&header, rows));
            println!("{} of {total} jobs (page {page})", jobs.len());
        }
        JobsCommand::Show { id, json } => {
            let job = jobs::find(pool, id)
                .await?
                .ok_or_else(|| anyhow!("no job {id}"))?;
            let attempts = runs::for_job(pool, id).await?;
            if json {
                let mut value = serde_json::to_value(&job)?;
                value["attempts"] = serde_json::to_value(&attempts)?;
                return output::json(&value);
            }
            println!("job       {}", job.id);
            println!("repo      {}", job.repo);
            println!("reason    {}", job.reason);
            println!("state     {}", job.state);
            println!("attempts  {}/{}", job.attempts, job.max_attempts);
            println!("enqueued  {}", time(Some(job.enqueued_at)));
            println!("started   {}", time(job.started_at));
            println!("finished  {}", time(job.finished_at));
            println!("error     {}", text(job.last_error.as_deref()));
            let rows = attempts.iter().map(|r| {
                vec![
                    r.attempt.to_string(),
                    time(Some(r.started_at)),
                    r.duration_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                    r.worker.clone(),
                    text(r.outcome.as_deref()),
                    output::refs(r),
                    r.bytes_received.to_string(),
                    text(r.error.as_deref()),
                ]
            });
            let header = [
                "#", "STARTED", "TOOK", "WORKER", "OUTCOME", "REFS", "BYTES", "ERROR",
            ];
            println!("{}", table(&header, rows));
        }
        JobsCommand::Retry { id } => {
            svc.enqueuer()
                .await?
                .retry(id)
                .await?
                .map_err(|r| refused(r, id, "retried"))?;
            println!("job {id} queued for retry");
        }
        JobsCommand::Discard { id } => {
            let (was, removed) = svc
                .enqueuer()
                .await?
                .discard(id)
                .await?
                .map_err(|r| refused(r, id, "discarded"))?;
            println!("job {id} discarded (was {was}; {removed} queued deliveries removed)");
        }
    }
    Ok(())
}
