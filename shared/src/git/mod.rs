//! What more than the worker knows of git: upstream URLs and their policy, ref
//! selection patterns, where a mirror lives on disk. Fetching is the worker's
//! (`stasis_worker::git`).

pub mod selection;
pub mod url;

use std::path::{Path, PathBuf};

/// `<storage.root>/<owner>/<name>.git`
pub fn mirror_path(root: &Path, owner: &str, name: &str) -> PathBuf {
    root.join(owner).join(format!("{name}.git"))
}
