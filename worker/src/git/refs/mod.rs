//! Writes a mirror's refs after its download as one all-or-nothing transaction, with
//! `git update-ref --stdin`.
//!
//! libgit2 cannot: its `remote.prune` and `git2::Transaction` alike rewrite
//! `packed-refs` once per deleted ref (2,000 deletions took 2.1 s in a release build,
//! growing quadratically), and apply ref by ref, so a timeout in between leaves a
//! half-pruned mirror. git locks every ref first, then writes one `packed-refs` and
//! renames the loose refs into place, and aborts the whole transaction when any lock or
//! expected old value fails.
//!
//! When every changed ref is packed only (the usual case: changed syncs end by packing
//! refs), `packed` rewrites `packed-refs` alone, which is quicker still.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use git2::Oid;

mod packed;

/// What one sync changes in the mirror, each with the value it expects to replace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefChanges {
    pub create: Vec<(String, Oid)>,
    /// name, old, new
    pub update: Vec<(String, Oid, Oid)>,
    pub delete: Vec<(String, Oid)>,
}

impl RefChanges {
    /// From the mirror's refs within the selection to upstream's. A zero id in `current`
    /// is a symbolic ref: a fetch never writes one, neither to move nor to prune it.
    pub fn between(current: &BTreeMap<String, Oid>, wanted: &BTreeMap<String, Oid>) -> Self {
        let mut changes = Self::default();
        for (name, &new) in wanted {
            match current.get(name) {
                None => changes.create.push((name.clone(), new)),
                Some(old) if old.is_zero() => {}
                Some(&old) if old != new => changes.update.push((name.clone(), old, new)),
                Some(_) => {}
            }
        }
        for (name, &old) in current {
            if !old.is_zero() && !wanted.contains_key(name) {
                changes.delete.push((name.clone(), old));
            }
        }
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    /// The `update-ref --stdin -z` session: every change, with its expected old value so
    /// a concurrent writer makes the transaction fail rather than be overwritten.
    fn script(&self) -> Vec<u8> {
        let mut s = Vec::with_capacity(
            64 + 100 * (self.create.len() + self.update.len() + self.delete.len()),
        );
        s.extend_from_slice(b"start\0");
        for (name, new) in &self.create {
            s.extend_from_slice(format!("create {name}\0{new}\0").as_bytes());
        }
        for (name, old, new) in &self.update {
            s.extend_from_slice(format!("update {name}\0{new}\0{old}\0").as_bytes());
        }
        for (name, old) in &self.delete {
            s.extend_from_slice(format!("delete {name}\0{old}\0").as_bytes());
        }
        s.extend_from_slice(b"prepare\0");
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefUpdateError {
    #[error("could not run git update-ref: {0}")]
    Spawn(std::io::Error),
    #[error("ref update took longer than {0:?}; nothing was changed")]
    Timeout(Duration),
    #[error("ref update failed; nothing was changed: {0}")]
    Rejected(String),
    #[error("ref update ended without confirming its commit: {0}")]
    Unconfirmed(String),
}

/// Applies `changes` to the bare repository at `git_dir` as one transaction. Until every
/// ref is locked and checked (git's `prepare`), a timeout aborts it cleanly; the commit
/// that follows is left to finish, bounded by `timeout` again, since stopping it would be
/// the half-applied update this exists to prevent.
pub fn apply(
    git_dir: &Path,
    changes: &RefChanges,
    timeout: Duration,
) -> Result<(), RefUpdateError> {
    if changes.is_empty() || packed::apply(git_dir, changes)? {
        return Ok(());
    }
    let mut cmd = Command::new("git");
    // The caller's GIT_* variables (a test's or a hook's GIT_DIR, GIT_INDEX_FILE…) must
    // not redirect the update; hooks are not ours to run.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(&key);
        }
    }
    let mut child = cmd
        .env("GIT_DIR", git_dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // --no-deref: a ref that turned symbolic meanwhile is checked, never written through
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "update-ref",
            "--no-deref",
            "--stdin",
            "-z",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RefUpdateError::Spawn)?;
    let session = Session::start(&mut child);
    let result = run(&mut child, session, changes, timeout);
    if result.is_err() {
        stop(&mut child);
    }
    let _ = child.wait();
    result
}

/// An uncommitted transaction aborts when git's stdin closes; one stuck before reading it
/// gets SIGTERM, on which git removes its lock files (SIGKILL would leave them, and every
/// later sync would fail on them), and SIGKILL only if that does not end it.
fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: `child` has not been waited for, so its pid is still ours.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
}

struct Session {
    stdin: Option<ChildStdin>,
    /// Lines git prints to stdout (`start: ok`, `prepare: ok`, `commit: ok`).
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Session {
    fn start(child: &mut Child) -> Self {
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let (etx, stderr) = mpsc::channel();
        if let Some(mut err) = child.stderr.take() {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                let _ = etx.send(text);
            });
        }
        Self {
            stdin: child.stdin.take(),
            lines,
            stderr,
        }
    }

    /// Waits for `want` (e.g. `prepare: ok`) until `until`.
    fn expect(&self, want: &str, until: Instant) -> Result<(), Wait> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == want => return Ok(()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(Wait::TimedOut),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Wait::Ended),
            }
        }
    }

    fn stderr(&self, child: &mut Child) -> String {
        let status: Option<ExitStatus> = child.wait().ok();
        let text = self
            .stderr
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        let text = text.trim();
        match status {
            Some(s) if text.is_empty() => format!("git update-ref exited with {s}"),
            _ => text.to_owned(),
        }
    }
}

enum Wait {
    TimedOut,
    Ended,
}

fn run(
    child: &mut Child,
    mut session: Session,
    changes: &RefChanges,
    timeout: Duration,
) -> Result<(), RefUpdateError> {
    let until = Instant::now() + timeout;
    let mut stdin = session.stdin.take().ok_or_else(|| {
        RefUpdateError::Spawn(std::io::Error::other("git update-ref has no stdin"))
    })?;
    // Written from a thread: git answers `start: ok` while reading, and a full stdout pipe
    // must not block it while this one writes.
    let script = changes.script();
    let writer = std::thread::spawn(move || stdin.write_all(&script).map(|()| stdin));
    let prepared = session.expect("prepare: ok", until);
    if let Err(Wait::TimedOut) = prepared {
        // the writer may be blocked on a full pipe: end git before joining it
        stop(child);
        let _ = writer.join();
        return Err(RefUpdateError::Timeout(timeout));
    }
    let stdin = writer.join().ok().and_then(Result::ok);
    match (prepared, stdin) {
        (Ok(()), Some(mut stdin)) => {
            if let Err(e) = stdin.write_all(b"commit\0") {
                return Err(RefUpdateError::Rejected(format!(
                    "{e}: {}",
                    session.stderr(child)
                )));
            }
            drop(stdin);
            match session.expect("commit: ok", Instant::now() + timeout) {
                Ok(()) => Ok(()),
                Err(_) => Err(RefUpdateError::Unconfirmed(session.stderr(child))),
            }
        }
        _ => Err(RefUpdateError::Rejected(session.stderr(child))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    #[test]
    fn changes_leave_equal_and_symbolic_refs_alone() {
        let current = BTreeMap::from([
            ("refs/heads/same".to_owned(), oid(1)),
            ("refs/heads/moved".to_owned(), oid(1)),
            ("refs/heads/gone".to_owned(), oid(1)),
            ("refs/remotes/origin/HEAD".to_owned(), Oid::zero()),
            ("refs/heads/symbolic-gone".to_owned(), Oid::zero()),
        ]);
        let wanted = BTreeMap::from([
            ("refs/heads/same".to_owned(), oid(1)),
            ("refs/heads/moved".to_owned(), oid(2)),
            ("refs/heads/new".to_owned(), oid(3)),
            ("refs/remotes/origin/HEAD".to_owned(), oid(4)),
        ]);
        let changes = RefChanges::between(&current, &wanted);
        assert_eq!(changes.create, vec![("refs/heads/new".to_owned(), oid(3))]);
        assert_eq!(
            changes.update,
            vec![("refs/heads/moved".to_owned(), oid(1), oid(2))]
        );
        assert_eq!(changes.delete, vec![("refs/heads/gone".to_owned(), oid(1))]);
    }
}
