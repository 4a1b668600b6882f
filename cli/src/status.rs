//! `stasisctl queue`, `stasisctl workers` and `stasisctl scheduler`: the fleet at a glance.

use clap::Subcommand;
use stasis_shared::db::settings;
use stasis_shared::db::workers::{self, WorkerRow};
use stasis_shared::overview::{alive_window, queue_overview};

use crate::output::{self, table, time};
use crate::{out, Services};

#[derive(Subcommand)]
pub enum SchedulerCommand {
    /// Stop scheduled syncs (manual syncs still run) until `resume`.
    Pause,
    /// Resume scheduled syncs.
    Resume,
}

fn workers_table(workers: &[WorkerRow]) -> comfy_table::Table {
    let rows = workers.iter().map(|w| {
        vec![
            w.name.clone(),
            w.host.clone(),
            w.pid.to_string(),
            time(Some(w.started_at)),
            time(Some(w.last_heartbeat_at)),
            format!("{}/{}", w.jobs_in_flight, w.concurrency),
        ]
    });
    let header = [
        "WORKER",
        "HOST",
        "PID",
        "STARTED",
        "LAST HEARTBEAT",
        "IN FLIGHT",
    ];
    table(&header, rows)
}

pub async fn queue(svc: &Services, json: bool) -> anyhow::Result<()> {
    let redis = svc.redis().await?;
    let view = queue_overview(&svc.cfg, &svc.pool, &redis).await?;
    if json {
        return output::json(&view);
    }
    let states = view.jobs.iter().map(|(s, n)| {
        let estimated = view.jobs_estimated.iter().any(|e| e.as_str() == *s);
        vec![
            s.to_string(),
            format!("{}{n}", if estimated { "~" } else { "" }),
        ]
    });
    out!("{}", table(&["JOB STATE", "COUNT"], states));
    let r = view.redis;
    out!(
        "redis: {} scheduled, {} ready, {} in flight, {} dead",
        r.scheduled,
        r.active,
        r.inflight,
        r.dead
    );
    out!(
        "oldest pending: {}",
        view.oldest_pending_age_seconds
            .map_or("-".into(), |s| format!("{s:.0}s"))
    );
    out!(
        "throughput: {} attempts in the last minute, {} in the last hour",
        view.throughput.last_1m,
        view.throughput.last_1h
    );
    let s = &view.scheduler;
    out!(
        "scheduler: {}{}, leader {}, last tick {}, next tick {}, interval {} ({})",
        match s.enabled {
            Some(true) => "enabled",
            Some(false) => "disabled",
            None => "not running",
        },
        if s.paused { " but paused" } else { "" },
        s.leader.as_deref().unwrap_or("none"),
        time(s.last_tick_at),
        time(s.next_tick_at),
        s.sync_interval.human,
        s.sync_interval.source,
    );
    out!("workers alive: {}", view.workers.len());
    if !view.workers.is_empty() {
        out!("{}", workers_table(&view.workers));
    }
    Ok(())
}

pub async fn workers(svc: &Services, json: bool) -> anyhow::Result<()> {
    let alive = workers::alive(&svc.pool, alive_window(&svc.cfg)).await?;
    if json {
        return output::json(&serde_json::json!({ "workers": alive }));
    }
    out!("{}", workers_table(&alive));
    out!("{} workers alive", alive.len());
    Ok(())
}

pub async fn scheduler(svc: &Services, command: SchedulerCommand) -> anyhow::Result<()> {
    let paused = matches!(command, SchedulerCommand::Pause);
    settings::set_scheduler_paused(&svc.pool, paused).await?;
    out!(
        "scheduled syncs {}",
        if paused { "paused" } else { "resumed" }
    );
    Ok(())
}
