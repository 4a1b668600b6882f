//! What a failed sync tells its mirror's owner. The worker's log keeps an error as it
//! was raised; the run, the job and the mirror (`sync_error`, `lfs_error`) get it in
//! the owner's words: where and how this server keeps its mirrors (the storage root,
//! a mirror's directory, git's files inside it) is the operator's business, and the
//! operator reads it in the log.

use std::path::Path;

/// Local storage failures, by what the OS says, and how the owner is told.
const STORAGE: &[(&[&str], &str)] = &[
    (
        &["no space left on device", "os error 28"],
        "the mirror's storage is full (no space left on device)",
    ),
    (
        &["disk quota exceeded", "os error 122"],
        "the mirror's storage quota is used up (disk quota exceeded)",
    ),
    (
        &["read-only file system", "os error 30"],
        "the mirror's storage is read-only (read-only file system)",
    ),
];

/// Where a path in an error stood.
const IN_STORAGE: &str = "in the mirror's storage";

/// Names of git's and git-lfs's files inside a repository: a message naming one
/// (often relative to the repository, as git's own stderr does) is about our storage.
const INTERNAL_FILES: &[&str] = &[
    "objects/",
    "pack_git2_",
    "tmp_pack_",
    "tmp_obj_",
    "tmp_idx_",
    "packed-refs",
    ".lock",
    "lfs/tmp",
    "lfs/objects/",
];

/// `message` as the owner reads it. `storage_root` is `storage.root`: every path under
/// it (as configured, or as libgit2 reports it, with symlinks resolved) is replaced, and
/// so is any other path naming one of git's internal files. A message that comes from
/// the upstream ("remote: …") keeps its words: its paths are the upstream's.
pub fn for_owner(message: &str, storage_root: &Path) -> String {
    let lower = message.to_ascii_lowercase();
    if !lower.contains("remote") {
        for (signs, told) in STORAGE {
            if signs.iter().any(|s| lower.contains(s)) {
                return (*told).to_owned();
            }
        }
    }
    let real = std::fs::canonicalize(storage_root).ok();
    let roots: Vec<&str> = [Some(storage_root), real.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(Path::to_str)
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| r.len() > 1)
        .collect();
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((start, end)) = next_path(rest, &roots) {
        out.push_str(&rest[..start]);
        out.push_str(IN_STORAGE);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The next path of ours in `text`: its byte range, quotes included when it is quoted.
fn next_path(text: &str, roots: &[&str]) -> Option<(usize, usize)> {
    let mut from = 0;
    while from < text.len() {
        let (start, quote) = token_start(text, from)?;
        let end = token_end(text, start, quote);
        let token = &text[start..end];
        let inner = token.trim_matches(|c| c == '\'' || c == '"' || c == '`');
        if ours(inner, roots) {
            return Some((start, end));
        }
        from = end.max(start + 1);
    }
    None
}

/// The start of the next token at or after `from` (after whitespace or an opening
/// bracket), and the quote it opens with, if any.
fn token_start(text: &str, from: usize) -> Option<(usize, Option<char>)> {
    let mut at = from;
    for c in text[from..].chars() {
        if !(c.is_whitespace() || c == '(' || c == '[') {
            let quote = matches!(c, '\'' | '"' | '`').then_some(c);
            return Some((at, quote));
        }
        at += c.len_utf8();
    }
    None
}

/// Where the token at `start` ends: at its closing quote (included), or for a bare
/// token before whitespace or the punctuation that follows paths in messages.
fn token_end(text: &str, start: usize, quote: Option<char>) -> usize {
    if let Some(q) = quote {
        let open = start + q.len_utf8();
        return text[open..]
            .find(q)
            .map_or(text.len(), |i| open + i + q.len_utf8());
    }
    let tail = &text[start..];
    let mut end = start + tail.len();
    for (i, c) in tail.char_indices() {
        let stops = c.is_whitespace()
            || matches!(c, ',' | ';' | ')' | ']')
            || (c == ':' && tail[i + 1..].starts_with([' ', '\n']))
            || (c == ':' && i + 1 == tail.len());
        if stops {
            end = start + i;
            break;
        }
    }
    end
}

/// Whether `path` is under one of `roots`, or a path naming a file inside a repository.
fn ours(path: &str, roots: &[&str]) -> bool {
    let under = roots.iter().any(|root| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    // URLs and the LFS API's paths are the upstream's: the owner's own words
    let upstream = path.contains("://") || path.contains("info/lfs");
    under || (!upstream && INTERNAL_FILES.iter().any(|f| path.contains(f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "/srv/stasis/mirrors";

    fn owner(message: &str) -> String {
        for_owner(message, Path::new(ROOT))
    }

    #[test]
    fn a_full_disk_is_told_in_the_owners_words() {
        for message in [
            "cannot extend packfile '/srv/stasis/mirrors/alice/x.git/objects/pack/pack_git2_4b1f0c9a': No space left on device (disk)",
            "failed to write file '/srv/stasis/mirrors/alice/x.git/packed-refs.lock': No space left on device (disk)",
            "storing an LFS object: No space left on device (os error 28)",
            "git repack failed: fatal: sha1 file '/srv/stasis/mirrors/a/x.git/objects/pack/tmp_pack_q2': write error: No space left on device",
        ] {
            assert_eq!(
                owner(message),
                "the mirror's storage is full (no space left on device)",
                "{message}"
            );
        }
        assert_eq!(
            owner("failed to make directory '/srv/stasis/mirrors/alice': Disk quota exceeded"),
            "the mirror's storage quota is used up (disk quota exceeded)"
        );
        assert_eq!(
            owner("storing an LFS object: Read-only file system (os error 30)"),
            "the mirror's storage is read-only (read-only file system)"
        );
    }

    #[test]
    fn storage_paths_and_internal_files_are_replaced() {
        for (message, told) in [
            (
                "failed to create locked file '/srv/stasis/mirrors/alice/x.git/refs/heads/main.lock': File exists (disk)",
                "failed to create locked file in the mirror's storage: File exists (disk)",
            ),
            (
                "could not find repository at '/srv/stasis/mirrors/alice/x.git' (disk)",
                "could not find repository at in the mirror's storage (disk)",
            ),
            (
                "storing an LFS object: failed to persist /srv/stasis/mirrors/alice/x.git/lfs/tmp/4d7a: Permission denied (os error 13)",
                "storing an LFS object: failed to persist in the mirror's storage: Permission denied (os error 13)",
            ),
            (
                "git gc failed: fatal: Unable to create \"/srv/stasis/mirrors/a/x.git/gc.pid.lock\": File exists.",
                "git gc failed: fatal: Unable to create in the mirror's storage: File exists.",
            ),
            // git's stderr names files relative to the repository
            (
                "error: unable to open objects/pack/tmp_pack_Xy12: Input/output error",
                "error: unable to open in the mirror's storage: Input/output error",
            ),
            (
                "object file (/var/lib/other/x.git/objects/3f/1e2d) is empty",
                "object file (in the mirror's storage) is empty",
            ),
        ] {
            let shown = owner(message);
            assert_eq!(shown, told, "{message}");
            assert!(!shown.contains("/srv"), "{shown}");
        }
    }

    #[test]
    fn the_upstreams_words_stay() {
        for message in [
            "unexpected http status code: 404 (not_found)",
            "remote error: access denied or repository not exported: /srv/git/x.git (not_found)",
            "could not find repository at '/var/git/up.git' (not_found)",
            "failed to connect to https://git.example.com/srv/stasis/mirrors.git: refused (network)",
            "remote: fatal: No space left on device (network)",
            "invalid hex digit in length: 'zq' (git_protocol)",
            "sync timed out",
            "LFS batch API: POST /alice/x.git/info/lfs/objects/batch answered 500",
        ] {
            assert_eq!(owner(message), message);
        }
    }

    #[test]
    fn a_root_behind_a_symlink_is_replaced_in_both_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir_all(real.join("alice")).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let canonical = std::fs::canonicalize(&real).unwrap();
        for shown in [&link, &canonical] {
            let message = format!(
                "failed to open '{}/alice/x.git/HEAD': oops",
                shown.display()
            );
            let told = for_owner(&message, &link);
            assert_eq!(told, "failed to open in the mirror's storage: oops");
        }
    }
}
