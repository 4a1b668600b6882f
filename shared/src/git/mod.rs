//! Git access: mirror fetches and upstream URL policy.

mod classify;
pub mod fetch;
pub mod gate;
pub mod housekeeping;
mod pack_refs;
pub mod refs;
pub mod selection;
pub mod stop;
pub mod storage;
pub mod transport;
pub mod url;

use std::path::{Path, PathBuf};

/// `<storage.root>/<owner>/<name>.git`
pub fn mirror_path(root: &Path, owner: &str, name: &str) -> PathBuf {
    root.join(owner).join(format!("{name}.git"))
}
