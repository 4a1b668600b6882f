//! CPU time per process group on this host, read from `/proc`. Throughput on a shared
//! 2-core host moves from run to run with the neighbours; the CPU each sync costs moves
//! far less, and says which process a saving must come from.

use std::fmt;
use std::fs;

/// Linux reports `/proc/*/stat` times in USER_HZ, fixed at 100 by the kernel ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// Cumulative CPU seconds of each group at one instant.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    /// This process: the in-process worker, its libgit2 client, the listing loop.
    pub bench: f64,
    /// `git-daemon` with the `upload-pack` processes it forked and reaped.
    pub daemon: f64,
    /// Every Postgres process, with the backends the postmaster reaped.
    pub postgres: f64,
    pub redis: f64,
}

impl Cpu {
    /// Children count once they are reaped, so a phase is read after its processes end.
    pub fn now() -> Self {
        let mut cpu = Self {
            bench: times("/proc/self/stat").map_or(0.0, |t| t.own + t.children),
            ..Self::default()
        };
        let Ok(dir) = fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Some(t) = times(&format!("/proc/{}/stat", name.to_string_lossy())) else {
                continue;
            };
            match t.comm.as_str() {
                "git-daemon" => cpu.daemon += t.own + t.children,
                c if c == "postgres" || c.starts_with("postgres:") => {
                    cpu.postgres += t.own + t.children
                }
                "redis-server" => cpu.redis += t.own,
                _ => {}
            }
        }
        cpu
    }

    /// Adds what each group spent from `before` to `after` (seconds).
    pub fn add_span(&mut self, before: &Cpu, after: &Cpu) {
        let spent = |now: f64, then: f64| (now - then).max(0.0);
        self.bench += spent(after.bench, before.bench);
        self.daemon += spent(after.daemon, before.daemon);
        self.postgres += spent(after.postgres, before.postgres);
        self.redis += spent(after.redis, before.redis);
    }

    /// Seconds spent, as milliseconds per operation.
    pub fn per_op(&self, count: usize) -> Cpu {
        let per = |secs: f64| secs * 1e3 / count.max(1) as f64;
        Cpu {
            bench: per(self.bench),
            daemon: per(self.daemon),
            postgres: per(self.postgres),
            redis: per(self.redis),
        }
    }

    /// Everything but the upstream: what a mirror host spends, the upstream being
    /// another machine in production.
    pub fn client(&self) -> f64 {
        self.bench + self.postgres + self.redis
    }

    pub fn total(&self) -> f64 {
        self.bench + self.daemon + self.postgres + self.redis
    }
}

impl fmt::Display for Cpu {
    /// Per-operation figures, as `per_op` makes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2} ms CPU (benchmark process {:.2}, git daemon {:.2}, Postgres {:.2}, Redis {:.2})",
            self.total(),
            self.bench,
            self.daemon,
            self.postgres,
            self.redis
        )
    }
}

/// CPU seconds one thread of this process has used (a thread pinned apart, such as the
/// latency proxy's, which stands for the network and not for the client).
pub fn thread_seconds(tid: u32) -> f64 {
    times(&format!("/proc/self/task/{tid}/stat")).map_or(0.0, |t| t.own)
}

struct Times {
    comm: String,
    own: f64,
    children: f64,
}

fn times(path: &str) -> Option<Times> {
    let stat = fs::read_to_string(path).ok()?;
    // comm may hold spaces and parentheses: it ends at the last ')'
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    // fields after comm, from field 3 (state); utime is field 14
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick =
        |i: usize| -> Option<f64> { Some(fields.get(i - 3)?.parse::<f64>().ok()? / TICKS_PER_SEC) };
    Some(Times {
        comm,
        own: tick(14)? + tick(15)?,
        children: tick(16)? + tick(17)?,
    })
}

/// Connections the host's kernel dropped because a listener's accept queue was full
/// (`TcpExtListenOverflows`). `git daemon` listens with a backlog of 5: a burst of
/// connects overflows it, and each dropped one costs its client a 1 s SYN retransmit,
/// a stall that lands on whichever side is running.
pub fn listen_overflows() -> u64 {
    let Ok(netstat) = fs::read_to_string("/proc/net/netstat") else {
        return 0;
    };
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let found = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "ListenOverflows");
        return found.and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    }
    0
}
