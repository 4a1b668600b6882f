//! `git pack-refs --all` for a mirror. libgit2 writes every ref a fetch creates or moves
//! as a loose file and, unlike git's gc, never packs them: a mirror's no-op sync then
//! opens and reads one file per ref to compare them with upstream's. Packed, that is one
//! read of `packed-refs`.

use std::ffi::CString;
use std::path::Path;
use std::ptr;

use libgit2_sys as raw;

/// Moves every loose ref of the repository at `path` into `packed-refs`. It opens the
/// repository again: git2 does not hand out the raw handle of the caller's `Repository`,
/// and this runs only after a fetch that wrote refs, never on a no-op sync. The caller
/// holds the repository's sync lock, so no other writer races the rewrite; readers see
/// either file (libgit2 renames the new `packed-refs` into place before removing the
/// loose copies).
pub(super) fn pack_refs(git_dir: &Path) -> Result<(), git2::Error> {
    let path = CString::new(git_dir.as_os_str().as_encoded_bytes())
        .map_err(|_| git2::Error::from_str("repository path contains a NUL byte"))?;
    // SAFETY: git2 has initialised libgit2 (the caller opened the repository through
    // it); every handle opened here is freed before returning, on every path.
    unsafe {
        let mut repo = ptr::null_mut();
        check(raw::git_repository_open_bare(&mut repo, path.as_ptr()))?;
        let mut refdb = ptr::null_mut();
        let opened = check(raw::git_repository_refdb(&mut refdb, repo));
        let packed = opened.and_then(|()| check(raw::git_refdb_compress(refdb)));
        if !refdb.is_null() {
            raw::git_refdb_free(refdb);
        }
        raw::git_repository_free(repo);
        packed?;
    }
    remove_empty_dirs(&git_dir.join("refs"), 0);
    Ok(())
}

/// libgit2 removes the loose ref files it packed but not the directories that held
/// them: a mirror with thousands of `refs/pull/<n>/head` kept thousands of empty
/// directories, 4 KiB of disk each. git's own `pack-refs --prune` removes them too.
/// `refs/` and its first level (`heads`, `tags`…) stay, as git expects them.
fn remove_empty_dirs(dir: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&entry.path(), depth + 1);
        }
    }
    if depth > 1 {
        // fails, as it should, while anything (a ref written meanwhile) is inside
        let _ = std::fs::remove_dir(dir);
    }
}

fn check(code: std::os::raw::c_int) -> Result<(), git2::Error> {
    if code < 0 {
        Err(git2::Error::last_error(code))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_leaves_no_empty_ref_directory_below_the_first_level() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let commit = repo.commit(None, &sig, &sig, "c", &tree, &[]).unwrap();
        for name in [
            "refs/pull/1/head",
            "refs/pull/2/head",
            "refs/heads/a/b/c",
            "refs/tags/v1",
        ] {
            repo.reference(name, commit, true, "test").unwrap();
        }

        pack_refs(dir.path()).unwrap();

        for gone in ["refs/pull/1", "refs/pull/2", "refs/heads/a"] {
            assert!(!dir.path().join(gone).exists(), "{gone} left behind");
        }
        for kept in ["refs", "refs/heads", "refs/tags", "refs/pull"] {
            assert!(dir.path().join(kept).exists(), "{kept} removed");
        }
        let reopened = git2::Repository::open_bare(dir.path()).unwrap();
        for name in ["refs/pull/1/head", "refs/heads/a/b/c", "refs/tags/v1"] {
            assert_eq!(reopened.refname_to_id(name).unwrap(), commit, "{name}");
        }
    }
}
