//! Finding the LFS pointers among the objects a fetch brought: `git rev-list` walks
//! only what is reachable from the new tips and not from the old ones, and its object
//! filter leaves out everything but blobs too small to be anything else than a pointer,
//! so a sync that added a thousand commits of large files reads a handful of objects.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use git2::{ObjectType, Oid, Repository};

use super::pointer::{Pointer, MAX_POINTER_SIZE};
use super::LfsError;

/// The distinct pointers among the blobs new to the mirror: reachable from `new` and
/// not from `old`.
pub fn new_pointers(path: &Path, old: &[Oid], new: &[Oid]) -> Result<Vec<Pointer>, LfsError> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(path)
        .args([
            "rev-list",
            "--objects",
            "--no-object-names",
            "--filter-provided-objects",
            &format!("--filter=combine:blob:limit={MAX_POINTER_SIZE}+object:type=blob"),
            "--stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LfsError::Scan(format!("git rev-list: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let tips: Vec<u8> = new
        .iter()
        .map(|o| format!("{o}\n"))
        .chain(old.iter().map(|o| format!("^{o}\n")))
        .collect::<String>()
        .into_bytes();
    // fed on a thread: thousands of tips must not wait on a full stdout pipe
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&tips);
    });
    let repo = Repository::open_bare(path).map_err(|e| LfsError::Scan(e.to_string()))?;
    let odb = repo.odb().map_err(|e| LfsError::Scan(e.to_string()))?;
    let mut found = BTreeSet::new();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| LfsError::Scan(format!("git rev-list: {e}")))?;
        let Ok(oid) = Oid::from_str(line.trim()) else {
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
    let out = child
        .wait_with_output()
        .map_err(|e| LfsError::Scan(format!("git rev-list: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(LfsError::Scan(format!(
            "git rev-list: {}: {}",
            out.status,
            stderr.trim()
        )));
    }
    Ok(found.into_iter().collect())
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
    fn walk(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|entry| match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&entry.path()),
                Ok(_) => entry.metadata().map_or(0, |m| m.len()),
                Err(_) => 0,
            })
            .sum()
    }
    walk(&path.join("lfs").join("objects"))
}
