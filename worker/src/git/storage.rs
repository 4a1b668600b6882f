//! A mirror's footprint on disk: its size, and no leftover of an import that failed.

use std::path::Path;

use git2::Repository;

/// Bytes the mirror takes on disk (its objects: refs and config are noise).
pub fn disk_size(path: &Path) -> u64 {
    tree_size(&path.join("objects"))
}

/// Bytes of the files under `dir`, however deep; what cannot be read counts as nothing.
pub fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => tree_size(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// After a first fetch failed: removes the bare repository it created, if it holds no
/// ref (nothing of upstream's arrived), and the owner's directory if that is now empty.
/// Otherwise every failed import of a mistyped URL would leave an empty mirror behind.
pub(super) fn remove_failed_import(path: &Path) {
    let empty = Repository::open_bare(path)
        .and_then(|repo| repo.references().map(|mut refs| refs.next().is_none()))
        .unwrap_or(false);
    if !empty {
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(path) {
        tracing::warn!(error = %e, path = %path.display(), "could not remove a failed import's mirror");
        return;
    }
    if let Some(owner) = path.parent() {
        // fails, as it should, while the owner has other mirrors
        let _ = std::fs::remove_dir(owner);
    }
}
