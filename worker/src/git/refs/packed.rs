//! The common case of a mirror's ref update, done as one rename: every ref it changes is
//! packed only (the housekeeping after each changed sync packs them all), so writing a
//! new `packed-refs` is the whole transaction.
//!
//! `git update-ref` locks each ref with a file of its own first, even a packed-only one;
//! on the worker's disks that is about 0.5 ms a file, 8 s for 10,000 pruned tags. Here
//! the same update takes one lock file and one rename, and is as all-or-nothing: readers
//! see the old file or the new one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};

use super::{RefChanges, RefUpdateError};

/// name → (object, what it peels to when it is a tag)
type Packed = BTreeMap<String, (Oid, Option<Oid>)>;

const HEADER: &str = "# pack-refs with: peeled fully-peeled sorted \n";

/// Applies `changes` by rewriting `packed-refs`; `Ok(false)`, having changed nothing,
/// when that alone cannot do it: a changed ref is loose, locked or in a directory/file
/// conflict, `packed-refs` is locked, or its peeled values are not complete. The caller
/// then goes through git, which locks and reports those cases as git does.
pub fn apply(git_dir: &Path, changes: &RefChanges) -> Result<bool, RefUpdateError> {
    let changed = changes
        .create
        .iter()
        .map(|(name, _)| name)
        .chain(changes.update.iter().map(|(name, _, _)| name))
        .chain(changes.delete.iter().map(|(name, _)| name));
    for name in changed {
        let loose = git_dir.join(name);
        if loose.symlink_metadata().is_ok() || lock_path(&loose).symlink_metadata().is_ok() {
            return Ok(false);
        }
    }
    let packed = git_dir.join("packed-refs");
    let lock = lock_path(&packed);
    let file = match OpenOptions::new().write(true).create_new(true).open(&lock) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io_error(&lock, e)),
    };
    let result = rewrite(git_dir, &packed, file, &lock, changes);
    if !matches!(result, Ok(true)) {
        let _ = fs::remove_file(&lock);
    }
    result
}

fn rewrite(
    git_dir: &Path,
    packed: &Path,
    file: File,
    lock: &Path,
    changes: &RefChanges,
) -> Result<bool, RefUpdateError> {
    let Some(mut refs) = read(packed)? else {
        return Ok(false);
    };
    let stale = |name: &str| RefUpdateError::Rejected(format!("{name} changed meanwhile"));
    for (name, old) in changes
        .update
        .iter()
        .map(|(name, old, _)| (name, old))
        .chain(changes.delete.iter().map(|(name, old)| (name, old)))
    {
        if refs.get(name).map(|(oid, _)| oid) != Some(old) {
            return Err(stale(name));
        }
    }
    if let Some((name, _)) = changes.create.iter().find(|(n, _)| refs.contains_key(n)) {
        return Err(stale(name));
    }
    for (name, _) in &changes.delete {
        refs.remove(name);
    }
    let repo = Repository::open_bare(git_dir).map_err(|e| git_error("open", &e))?;
    let written = changes
        .create
        .iter()
        .map(|(name, new)| (name, *new))
        .chain(changes.update.iter().map(|(name, _, new)| (name, *new)));
    for (name, new) in written {
        refs.insert(name.clone(), (new, peeled(&repo, new)?));
    }
    if changes
        .create
        .iter()
        .any(|(name, _)| conflicts(&refs, name))
    {
        return Ok(false);
    }

    let mut out = BufWriter::new(file);
    let write = |out: &mut BufWriter<File>| -> std::io::Result<()> {
        out.write_all(HEADER.as_bytes())?;
        for (name, (oid, peeled)) in &refs {
            writeln!(out, "{oid} {name}")?;
            if let Some(peeled) = peeled {
                writeln!(out, "^{peeled}")?;
            }
        }
        out.flush()?;
        out.get_ref().sync_all()
    };
    write(&mut out).map_err(|e| io_error(lock, e))?;
    drop(out);
    fs::rename(lock, packed).map_err(|e| io_error(packed, e))?;
    Ok(true)
}

/// The refs of `packed-refs`; `None` when the file's peeled
/// values cannot be trusted to be complete (not `fully-peeled`): rewriting it under that
/// header would hide tags from clients.
fn read(packed: &Path) -> Result<Option<Packed>, RefUpdateError> {
    let text = match fs::read_to_string(packed) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Some(BTreeMap::new())),
        Err(e) => return Err(io_error(packed, e)),
    };
    let mut refs: Packed = BTreeMap::new();
    let mut last: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if i == 0 && line.starts_with('#') {
            if !line.split(' ').any(|t| t == "fully-peeled") {
                return Ok(None);
            }
            continue;
        }
        let corrupt = || RefUpdateError::Rejected(format!("packed-refs line {} is corrupt", i + 1));
        if let Some(peeled) = line.strip_prefix('^') {
            let entry = last
                .as_ref()
                .and_then(|n| refs.get_mut(n))
                .ok_or_else(corrupt)?;
            let oid = Oid::from_str(peeled).map_err(|_| corrupt())?;
            *entry = (entry.0, Some(oid));
            continue;
        }
        let (oid, name) = line.split_once(' ').ok_or_else(corrupt)?;
        let oid = Oid::from_str(oid).map_err(|_| corrupt())?;
        refs.insert(name.to_owned(), (oid, None));
        last = Some(name.to_owned());
    }
    if text.lines().next().is_some_and(|l| !l.starts_with('#')) && !refs.is_empty() {
        return Ok(None);
    }
    Ok(Some(refs))
}

/// What a tag peels to, as `packed-refs` records it; `None` for other objects.
fn peeled(repo: &Repository, oid: Oid) -> Result<Option<Oid>, RefUpdateError> {
    let object = repo
        .find_object(oid, None)
        .map_err(|e| git_error("read object", &e))?;
    if object.kind() != Some(ObjectType::Tag) {
        return Ok(None);
    }
    let mut target = object;
    while let Some(tag) = target.as_tag() {
        target = tag.target().map_err(|e| git_error("peel tag", &e))?;
    }
    Ok(Some(target.id()))
}

/// Whether `name` and another ref would need the same path as a file and a directory.
fn conflicts(refs: &Packed, name: &str) -> bool {
    let parent = name
        .match_indices('/')
        .any(|(i, _)| refs.contains_key(&name[..i]));
    let prefix = format!("{name}/");
    parent
        || refs
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(n, _)| n.starts_with(&prefix))
}

fn lock_path(path: &Path) -> PathBuf {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

fn io_error(path: &Path, e: std::io::Error) -> RefUpdateError {
    RefUpdateError::Rejected(format!("{}: {e}", path.display()))
}

fn git_error(what: &str, e: &git2::Error) -> RefUpdateError {
    RefUpdateError::Rejected(format!("{what}: {}", e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare repository with one commit and `packed-refs` holding `refs/heads/a` and
    /// `refs/tags/t` at it.
    fn repo(name: &str) -> (PathBuf, Oid) {
        let dir = std::env::temp_dir().join(format!("stasis-packed-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let repo = Repository::init_bare(&dir).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let commit = repo.commit(None, &sig, &sig, "c", &tree, &[]).unwrap();
        fs::write(
            dir.join("packed-refs"),
            format!("{HEADER}{commit} refs/heads/a\n{commit} refs/tags/t\n"),
        )
        .unwrap();
        (dir, commit)
    }

    #[test]
    fn a_stale_old_value_changes_nothing() {
        let (dir, commit) = repo("stale");
        let before = fs::read_to_string(dir.join("packed-refs")).unwrap();
        let changes = RefChanges {
            create: vec![("refs/heads/b".into(), commit)],
            delete: vec![("refs/tags/t".into(), Oid::from_bytes(&[7; 20]).unwrap())],
            ..RefChanges::default()
        };
        assert!(apply(&dir, &changes).is_err());
        assert_eq!(fs::read_to_string(dir.join("packed-refs")).unwrap(), before);
        assert!(!dir.join("packed-refs.lock").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loose_refs_and_file_directory_conflicts_are_left_to_git() {
        let (dir, commit) = repo("fallback");
        let nested = RefChanges {
            create: vec![("refs/heads/a/b".into(), commit)],
            ..RefChanges::default()
        };
        assert!(!apply(&dir, &nested).unwrap(), "refs/heads/a is a file");
        fs::write(dir.join("refs/tags/t"), format!("{commit}\n")).unwrap();
        let loose = RefChanges {
            delete: vec![("refs/tags/t".into(), commit)],
            ..RefChanges::default()
        };
        assert!(!apply(&dir, &loose).unwrap(), "refs/tags/t is loose");
        assert!(!dir.join("packed-refs.lock").exists());

        fs::remove_file(dir.join("refs/tags/t")).unwrap();
        assert!(apply(&dir, &loose).unwrap());
        let text = fs::read_to_string(dir.join("packed-refs")).unwrap();
        assert_eq!(text, format!("{HEADER}{commit} refs/heads/a\n"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
