//! Repacking a mirror with the git binary (libgit2 has no repack). Every fetch that
//! receives objects adds a pack; without this a mirror holds one per change and every
//! later fetch and clone served from it searches them all.
//!
//! A geometric repack (`--geometric=2`) after each fetch that wrote keeps the pack count
//! logarithmic at a cost proportional to the new packs, not to the mirror. A full repack
//! now and then moves unreachable objects (left by pruned refs and force-pushes) into a
//! cruft pack and drops those older than the grace period. Both write a multi-pack
//! bitmap and a split commit-graph, which clones served from the mirror rely on.
//!
//! The caller holds the repository's lock: no fetch writes while git rewrites packs.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::process::{Command, Stdio};

use super::fetch::StopFlag;

/// Kept in the bare repository beside its packs, so the state moves, and goes, with
/// the mirror.
const STATE_FILE: &str = "stasis-housekeeping";
/// A failed pass to run again, beside the state and for the same reason.
const RETRY_FILE: &str = "stasis-housekeeping-retry";

/// How often a running git command is checked against the stop flag and the deadline.
const STOP_CHECK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepackKind {
    Geometric,
    Full,
}

impl RepackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RepackKind::Geometric => "geometric",
            RepackKind::Full => "full",
        }
    }

    fn parse(text: &str) -> Option<RepackKind> {
        match text {
            "geometric" => Some(RepackKind::Geometric),
            "full" => Some(RepackKind::Full),
            _ => None,
        }
    }

    /// Whether a pass of this kind does all a pass of `other` does: a full one repacks
    /// everything a geometric one would.
    pub fn covers(self, other: RepackKind) -> bool {
        self == RepackKind::Full || other == RepackKind::Geometric
    }
}

/// A pass that failed: run again by a sync after `not_before`, even one that fetched
/// nothing, instead of waiting for the mirror's next change (which may be months away,
/// its packs unrolled and its bitmap stale meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub kind: RepackKind,
    /// Failures in a row.
    pub failures: u32,
    pub not_before: SystemTime,
}

impl Retry {
    /// One read of a file that is almost always absent: cheap enough for every sync.
    pub fn read(path: &Path) -> Option<Retry> {
        let text = std::fs::read_to_string(path.join(RETRY_FILE)).ok()?;
        let mut words = text.split_whitespace();
        let kind = RepackKind::parse(words.next()?)?;
        let failures = words.next()?.parse().ok()?;
        let secs: u64 = words.next()?.parse().ok()?;
        Some(Retry {
            kind,
            failures,
            not_before: UNIX_EPOCH + Duration::from_secs(secs),
        })
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let secs = self
            .not_before
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let tmp = path.join(format!("{RETRY_FILE}.tmp"));
        std::fs::write(
            &tmp,
            format!("{} {} {secs}\n", self.kind.as_str(), self.failures),
        )?;
        std::fs::rename(tmp, path.join(RETRY_FILE))
    }

    pub fn clear(path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path.join(RETRY_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// When the last full repack ran and how many geometric ones followed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub last_full: SystemTime,
    pub geometric_since: u32,
}

impl State {
    pub fn read(path: &Path) -> Option<State> {
        let text = std::fs::read_to_string(path.join(STATE_FILE)).ok()?;
        let mut words = text.split_whitespace().map(str::parse::<u64>);
        let secs = words.next()?.ok()?;
        let since = words.next()?.ok()?;
        Some(State {
            last_full: UNIX_EPOCH + Duration::from_secs(secs),
            geometric_since: u32::try_from(since).unwrap_or(u32::MAX),
        })
    }

    fn write(&self, path: &Path) -> std::io::Result<()> {
        let secs = self
            .last_full
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // replaced whole by a rename: a crash leaves the old state, never half of one
        let tmp = path.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, format!("{secs} {}\n", self.geometric_since))?;
        std::fs::rename(tmp, path.join(STATE_FILE))
    }
}

/// What housekeeping a mirror is due, if any.
pub struct Policy {
    pub full_repack_interval: Duration,
    /// Geometric repacks after which a full one is due anyway (0: by age only).
    pub full_repack_every: u32,
    pub prune_grace: Duration,
    pub timeout: Duration,
}

impl Policy {
    /// `wrote_objects`: the fetch received a pack; `changed`: it changed refs at all
    /// (pruned refs leave garbage only a full repack removes).
    pub fn due(&self, path: &Path, wrote_objects: bool, changed: bool) -> Option<RepackKind> {
        let state = State::read(path);
        let full_due = state.is_some_and(|s| {
            let age = SystemTime::now()
                .duration_since(s.last_full)
                .unwrap_or_default();
            age >= self.full_repack_interval
                || (self.full_repack_every > 0 && s.geometric_since >= self.full_repack_every)
        });
        if changed && full_due {
            Some(RepackKind::Full)
        } else if wrote_objects {
            Some(RepackKind::Geometric)
        } else {
            None
        }
    }
}

/// Runs one housekeeping pass of `kind` on the bare repository at `path`, bounded by
/// `policy.timeout` and by `stop` (the lock lost, or the worker stopping hard). A
/// stopped or failed pass leaves the mirror readable: git replaces packs only once the
/// new ones are complete. Blocking: run it on a blocking thread. (Not tokio's process
/// API: its child reaping hangs in a process whose first runtime has ended, as tests'
/// runtimes do.)
pub fn housekeep(
    path: &Path,
    kind: RepackKind,
    policy: &Policy,
    stop: &StopFlag,
) -> Result<(), String> {
    let deadline = Instant::now() + policy.timeout;
    let bitmaps = ["--write-midx", "--write-bitmap-index"];
    let expiration = format!(
        "--cruft-expiration={}.seconds.ago",
        policy.prune_grace.as_secs()
    );
    let repack: Vec<&str> = match kind {
        RepackKind::Geometric => [&["repack", "-q", "-d", "--geometric=2"][..], &bitmaps].concat(),
        RepackKind::Full => [
            &["repack", "-q", "-a", "-d", "--cruft", expiration.as_str()][..],
            &bitmaps,
        ]
        .concat(),
    };
    if kind == RepackKind::Full {
        run(path, &["pack-refs", "--all", "--prune"], deadline, stop)?;
    }
    run(path, &repack, deadline, stop)?;
    run(
        path,
        &["commit-graph", "write", "--reachable", "--split"],
        deadline,
        stop,
    )?;
    let previous = State::read(path);
    let state = match (kind, previous) {
        (RepackKind::Geometric, Some(s)) => State {
            geometric_since: s.geometric_since.saturating_add(1),
            ..s
        },
        // a mirror's first pass counts as full: an import's single pack is one already
        _ => State {
            last_full: SystemTime::now(),
            geometric_since: 0,
        },
    };
    state
        .write(path)
        .map_err(|e| format!("writing {STATE_FILE}: {e}"))
}

fn run(path: &Path, args: &[&str], deadline: Instant, stop: &StopFlag) -> Result<(), String> {
    let mut command = Command::new("git");
    // the worker's own environment must not point git at another repository or config
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            command.env_remove(key);
        }
    }
    command
        .env("GIT_DIR", path)
        .args(["-c", "gc.auto=0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // its own group, so a timeout also ends the pack-objects it spawns
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting git {}: {e}", args[0]))?;
    let stderr = child.stderr.take();
    let (closed_tx, closed) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        let _ = closed_tx.send(());
        text
    });
    let mut exiting = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if stop.is_stopped() || Instant::now() >= deadline => {
                // SAFETY: plain kill(2) of the group this child leads.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                break Err(format!("git {} stopped: timed out or cancelled", args[0]));
            }
            Ok(None) if exiting => std::thread::sleep(Duration::from_millis(1)),
            // git's stderr closes as it (and the pack-objects it started) exits: wake then,
            // not at the next look at the stop flag and deadline. A pass is a few git
            // processes of a few ms each, and the mirror's lock is held throughout; a
            // plain 50 ms poll made one take 100 ms for 25 ms of work.
            Ok(None) => {
                exiting = !matches!(
                    closed.recv_timeout(STOP_CHECK),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                );
            }
            Err(e) => break Err(format!("git {}: {e}", args[0])),
        }
    };
    let stderr = reader.join().unwrap_or_default();
    let status = status?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "git {} failed ({status}): {}",
            args[0],
            stderr.trim().chars().take(500).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A git command still running at its deadline is killed with what it started (here
    /// a shell alias's `sleep`): were the `sleep` left running, it would hold stderr open
    /// and `run` would wait the 30 s for it.
    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let result = run(
            dir.path(),
            &["-c", "alias.nap=!sleep 30", "nap"],
            started + Duration::from_millis(300),
            &StopFlag::default(),
        );
        let err = result.unwrap_err();
        assert!(err.contains("timed out or cancelled"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited for the sleep"
        );
    }

    #[test]
    fn a_finished_command_reports_how_it_failed() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            dir.path(),
            &["rev-parse", "--verify", "refs/heads/none"],
            Instant::now() + Duration::from_secs(30),
            &StopFlag::default(),
        )
        .unwrap_err();
        assert!(err.starts_with("git rev-parse failed"), "{err}");
    }
}
