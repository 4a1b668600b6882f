//! Where each process runs during a benchmark. In production the upstream is another
//! machine; on a 2-core host it competes with the pipeline for the same CPU, so a ratio
//! would measure the daemon as much as us. Pinned, the upstream (`git daemon` and the
//! upload-pack processes it forks, which inherit its affinity) has the last CPU to
//! itself, and everything on the client side (this process with its threads and the git
//! processes it starts, Postgres, Redis) shares the others.

use std::process::Command;

use anyhow::{ensure, Context};

/// Pinned while alive; every process is given back every CPU when dropped.
pub struct Pinning {
    /// Every CPU, as taskset names them.
    all: String,
    /// The upstream's CPU.
    upstream: String,
}

/// The calling thread's id, as taskset takes it.
pub fn thread_id() -> u32 {
    // "/proc/thread-self" links to "<pid>/task/<tid>"
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

fn taskset(cpus: &str, pid: u32) -> anyhow::Result<()> {
    // -a: every thread of the process, not only its main one
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .context("run taskset (util-linux)")?;
    ensure!(
        out.status.success(),
        "taskset -apc {cpus} {pid}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Process ids whose command name is one of the client-side servers.
fn servers() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| {
                let c = c.trim();
                c == "postgres" || c.starts_with("postgres:") || c == "redis-server"
            })
        })
        .collect()
}

impl Pinning {
    /// The upstream `daemon` (`git daemon`, or another server process and the processes
    /// it forks) on the last CPU, the client side on the others; `None` on
    /// a single CPU, where there is nothing to separate.
    pub fn upstream_apart(daemon: u32) -> anyhow::Result<Option<Self>> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            return Ok(None);
        }
        let last = cpus - 1;
        let client = if last == 1 {
            "0".to_owned()
        } else {
            format!("0-{}", last - 1)
        };
        taskset(&last.to_string(), daemon)?;
        let mut pinned = 0;
        for pid in std::iter::once(std::process::id()).chain(servers()) {
            // a backend may exit between the listing and here
            if taskset(&client, pid).is_ok() {
                pinned += 1;
            }
        }
        println!(
            "pinned: the upstream to CPU {last}; this process, Postgres and Redis ({pinned} processes) to CPU {client}"
        );
        let pinning = Self {
            all: format!("0-{last}"),
            upstream: last.to_string(),
        };
        Ok(Some(pinning))
    }
}

impl Pinning {
    /// One more thread (a proxy standing for the network) on the upstream's CPU.
    pub fn to_upstream(&self, tid: u32) -> anyhow::Result<()> {
        let out = Command::new("taskset")
            .args(["-p", "-c", &self.upstream, &tid.to_string()])
            .output()
            .context("run taskset (util-linux)")?;
        ensure!(out.status.success(), "taskset -pc {} {tid}", self.upstream);
        Ok(())
    }
}

impl Drop for Pinning {
    fn drop(&mut self) {
        for pid in std::iter::once(std::process::id()).chain(servers()) {
            let _ = taskset(&self.all, pid);
        }
    }
}
