//! Finding the LFS pointers among the objects a fetch brought: `git rev-list` walks
//! only what is reachable from the new tips and not from the old ones, and its object
//! filter leaves out everything but blobs too small to be anything else than a pointer,
//! so a sync that added a thousand commits of large files reads a handful of objects.
//! An import needs no walk: everything in the mirror it created is new.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use git2::{ObjectType, Oid, Repository};

use super::pointer::{Pointer, MAX_POINTER_SIZE};
use super::LfsError;
use crate::git::stop::StopFlag;

/// The distinct pointers among the blobs new to the mirror: reachable from `new` and
/// not from `old`. A walk of a large import's whole history can take minutes: it ends
/// (its process killed) once `stop` is set or `deadline` passes.
pub fn new_pointers(
    path: &Path,
    old: &[Oid],
    new: &[Oid],
    stop: Arc<StopFlag>,
    deadline: Instant,
) -> Result<Vec<Pointer>, LfsError> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let mut command = Command::new("git");
    command.arg("-C").arg(path).args([
        "rev-list",
        "--objects",
        "--no-object-names",
        "--filter-provided-objects",
        &format!("--filter=combine:blob:limit={MAX_POINTER_SIZE}+object:type=blob"),
        "--stdin",
    ]);
    let tips: Vec<u8> = new
        .iter()
        .map(|o| format!("{o}\n"))
        .chain(old.iter().map(|o| format!("^{o}\n")))
        .collect::<String>()
        .into_bytes();
    pointers_listed(
        path,
        command,
        "git rev-list",
        tips,
        stop,
        deadline,
        |line| Oid::from_str(line.trim()).ok(),
    )
}

/// The distinct pointers among every blob the mirror holds. For a mirror its fetch
/// created, every object is new to it: the object store's own list says which are
/// small blobs without walking the history's trees, which on a large import costs
/// seconds where this costs a fraction of one.
pub fn all_pointers(
    path: &Path,
    stop: Arc<StopFlag>,
    deadline: Instant,
) -> Result<Vec<Pointer>, LfsError> {
    let mut command = Command::new("git");
    command.arg("-C").arg(path).args([
        "cat-file",
        "--batch-all-objects",
        "--unordered",
        "--batch-check=%(objectname) %(objecttype) %(objectsize)",
    ]);
    pointers_listed(
        path,
        command,
        "git cat-file",
        Vec::new(),
        stop,
        deadline,
        |line| {
            let mut words = line.split(' ');
            let (oid, kind, size) = (words.next()?, words.next()?, words.next()?);
            let small = size.trim().parse::<usize>().ok()? < MAX_POINTER_SIZE;
            (kind == "blob" && small).then(|| Oid::from_str(oid).ok())?
        },
    )
}

/// Runs `command` (fed `input`), reads from the mirror the blobs `pick` finds in its
/// lines and keeps the pointers among them. The command is killed once `stop` is set or
/// `deadline` passes.
fn pointers_listed(
    path: &Path,
    mut command: Command,
    what: &str,
    input: Vec<u8>,
    stop: Arc<StopFlag>,
    deadline: Instant,
    pick: impl Fn(&str) -> Option<Oid>,
) -> Result<Vec<Pointer>, LfsError> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LfsError::Scan(format!("{what}: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // fed on a thread: thousands of tips must not wait on a full stdout pipe
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let repo = Repository::open_bare(path).map_err(|e| LfsError::Scan(e.to_string()))?;
    let odb = repo.odb().map_err(|e| LfsError::Scan(e.to_string()))?;
    let mut found = BTreeSet::new();
    let stdout = child.stdout.take().expect("piped stdout");
    let watchdog = Watchdog::start(child.id(), stop, deadline);
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| LfsError::Scan(format!("{what}: {e}")))?;
        let Some(oid) = pick(&line) else {
            continue;
        };
        let object = odb.read(oid).map_err(|e| LfsError::Scan(e.to_string()))?;
        if object.kind() == ObjectType::Blob {
            if let Some(pointer) = Pointer::parse(object.data()) {
                found.insert(pointer);
            }
        }
    }
    let _ = feeder.join();
    // stopped before the child is reaped, so its pid cannot have been reused
    if watchdog.finish() {
        let _ = child.wait();
        return Err(LfsError::Stopped);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LfsError::Scan(format!("{what}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(LfsError::Scan(format!(
            "{what}: {}: {}",
            out.status,
            stderr.trim()
        )));
    }
    Ok(found.into_iter().collect())
}

/// Kills the walk once the sync is stopped or the LFS deadline passes: the walk may be
/// silent for minutes (few blobs pass its filter), so the reader cannot be the one to
/// look. Dropped without [`Watchdog::finish`] (an early return), it stops watching.
struct Watchdog {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<bool>>,
}

impl Watchdog {
    fn start(pid: u32, stop: Arc<StopFlag>, deadline: Instant) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let watching = done.clone();
        let thread = std::thread::spawn(move || loop {
            // a stop wins over an end seen at the same time: the sync is ending anyway
            if stop.is_stopped() || Instant::now() >= deadline {
                // SAFETY: a plain signal to our own child, which the caller does not
                // reap before this thread is joined (or ever, after an early return,
                // so its pid stays its own).
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                return true;
            }
            if watching.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        });
        Self {
            done,
            thread: Some(thread),
        }
    }

    /// Whether it killed the walk.
    fn finish(mut self) -> bool {
        self.done.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .is_some_and(|t| t.join().unwrap_or(false))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// The pointers whose object the mirror does not hold yet.
pub fn missing(path: &Path, pointers: Vec<Pointer>) -> Vec<Pointer> {
    pointers
        .into_iter()
        .filter(|p| !path.join(p.relative_path()).is_file())
        .collect()
}

/// Bytes of LFS objects the mirror holds.
pub fn stored_size(path: &Path) -> u64 {
    crate::git::storage::tree_size(&path.join("lfs").join("objects"))
}
