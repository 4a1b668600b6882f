//! The whole stack as operators run it: the scheduler, the API (idle) and the workers as
//! processes of their own, against the environment's Postgres and Redis, and what each
//! process spends (CPU, memory) read from `/proc`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use stasis_shared::config::Config;
use stasis_testkit::git::free_port;
use stasis_testkit::TestEnv;

use crate::cpu::Cpu;
use crate::sibling_binary;

/// One `stasis-*` process; killed when dropped.
pub struct Proc {
    pub group: Group,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Group {
    Workers,
    Scheduler,
    Api,
}

pub struct Stack {
    pub procs: Vec<Proc>,
}

/// How the stack is run: the product's defaults, with the schedule's clock scaled as the
/// interval is (a 30 s tick is to a 1 h interval what `tick` is to the benchmark's).
pub struct Shape {
    pub workers: usize,
    pub concurrency: usize,
    pub interval: Duration,
    pub tick: Duration,
}

impl Stack {
    pub fn start(env: &TestEnv, shape: &Shape) -> anyhow::Result<Self> {
        let defaults = Config::default();
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        // the test environment's short timings make its tests quick; a fleet runs on the
        // product's own
        let overrides: Vec<(&str, String)> = vec![
            (
                "STASIS_QUEUE_HEARTBEAT_INTERVAL",
                ms(defaults.queue.heartbeat_interval),
            ),
            (
                "STASIS_QUEUE_MISSED_HEARTBEATS",
                defaults.queue.missed_heartbeats.to_string(),
            ),
            (
                "STASIS_QUEUE_POLL_INTERVAL",
                ms(defaults.queue.poll_interval),
            ),
            ("STASIS_SYNC_LOCK_TTL", ms(defaults.sync.lock_ttl)),
            (
                "STASIS_SYNC_LOCK_RETRY_DELAY",
                ms(defaults.sync.lock_retry_delay),
            ),
            (
                "STASIS_SCHEDULER_LEASE_TTL",
                ms(defaults.scheduler.lease_ttl),
            ),
            ("STASIS_SCHEDULER_TICK", ms(shape.tick)),
            ("STASIS_MIRROR_SYNC_INTERVAL", ms(shape.interval)),
            ("STASIS_MIRROR_MIN_SYNC_INTERVAL", "1s".into()),
            // adaptive stretching off: every mirror is really checked every interval
            ("STASIS_MIRROR_MAX_SYNC_INTERVAL", ms(shape.interval)),
            ("STASIS_WORKER_CONCURRENCY", shape.concurrency.to_string()),
            ("STASIS_API_LISTEN", format!("127.0.0.1:{}", free_port())),
        ];
        let mut procs = Vec::new();
        let mut spawn = |name: &str, group: Group, log: String| -> anyhow::Result<()> {
            let log = std::fs::File::create(env.dir.path().join(log))?;
            let child = Command::new(sibling_binary(name)?)
                .envs(env.env_vars())
                .envs(overrides.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("start {name}"))?;
            procs.push(Proc { group, child });
            Ok(())
        };
        spawn("stasis-scheduler", Group::Scheduler, "scheduler.log".into())?;
        spawn("stasis-api", Group::Api, "api.log".into())?;
        for i in 0..shape.workers {
            spawn("stasis-worker", Group::Workers, format!("worker-{i}.log"))?;
        }
        Ok(Self { procs })
    }

    /// Fails, naming the process and the end of its log, if one has exited.
    pub fn check_running(&mut self, dir: &Path) -> anyhow::Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.child.try_wait()? {
                let logs: Vec<String> = std::fs::read_dir(dir)?
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect();
                let tail: String = logs
                    .join("\n")
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n");
                anyhow::bail!("{:?} exited with {status}: {tail}", p.group);
            }
        }
        Ok(())
    }

    /// CPU seconds so far of each group, with Postgres, Redis and the upstream (this
    /// process) beside them.
    pub fn cpu(&self) -> Spent {
        let machine = Cpu::now();
        let mut spent = Spent {
            postgres: machine.postgres,
            redis: machine.redis,
            upstream: machine.bench,
            ..Spent::default()
        };
        for p in &self.procs {
            let secs = proc_seconds(p.child.id());
            match p.group {
                Group::Workers => spent.workers += secs,
                Group::Scheduler => spent.scheduler += secs,
                Group::Api => spent.api += secs,
            }
        }
        spent
    }

    /// The workers' resident memory now and at its peak, in bytes (summed over workers).
    pub fn worker_rss(&self) -> (u64, u64) {
        self.procs
            .iter()
            .filter(|p| p.group == Group::Workers)
            .map(|p| memory(p.child.id()))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }
}

/// CPU seconds of each process group.
#[derive(Clone, Copy, Default, Debug)]
pub struct Spent {
    pub workers: f64,
    pub scheduler: f64,
    pub api: f64,
    pub postgres: f64,
    pub redis: f64,
    /// The simulated upstream: another machine in production, reported apart.
    pub upstream: f64,
}

impl Spent {
    pub fn since(&self, before: &Spent) -> Spent {
        Spent {
            workers: self.workers - before.workers,
            scheduler: self.scheduler - before.scheduler,
            api: self.api - before.api,
            postgres: self.postgres - before.postgres,
            redis: self.redis - before.redis,
            upstream: self.upstream - before.upstream,
        }
    }

    /// What the mirror host spends: everything but the upstream.
    pub fn host(&self) -> f64 {
        self.workers + self.scheduler + self.api + self.postgres + self.redis
    }
}

/// Own and reaped children's CPU seconds of a process (`git` children of a worker count
/// for it).
fn proc_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14–17; `rest` starts at field 3
    (14..=17)
        .filter_map(|i| fields.get(i - 3)?.parse::<f64>().ok())
        .sum::<f64>()
        / 100.0
}

/// VmRSS and VmHWM, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
