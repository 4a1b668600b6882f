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
pub(super) fn pack_refs(path: &Path) -> Result<(), git2::Error> {
    let path = CString::new(path.as_os_str().as_encoded_bytes())
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
        packed
    }
}

fn check(code: std::os::raw::c_int) -> Result<(), git2::Error> {
    if code < 0 {
        Err(git2::Error::last_error(code))
    } else {
        Ok(())
    }
}
